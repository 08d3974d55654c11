/* SPDX-License-Identifier: MIT */
/*
 * pvpanic.h - the pvpanic ISA device (ACPI _HID "QEMU0001"; QEMU's pvpanic
 * specification), one byte at PORT_PVPANIC.
 *
 *   read   the events this device supports: PVPANIC_PANICKED |
 *          PVPANIC_CRASH_LOADED (0x03)
 *   write  bit 0 (PANICKED): the guest panicked and wants the host to act
 *          -> the panicked callback (the first time; later ones are
 *          only counted, so a guest writing in a loop cannot flood the
 *          machine - re-initialise the device for a new boot);
 *          bit 1 (CRASH_LOADED): the guest panicked but a crash kernel
 *          (kdump) takes over -> logged (rate limited), execution goes on;
 *          other bits are ignored.
 *
 * Wider accesses act on the byte at offset 0; other bytes read 0xff and
 * their writes are ignored.  The panicked callback runs with the lock not
 * held.
 */
#ifndef VISOR_DEVICES_PVPANIC_H
#define VISOR_DEVICES_PVPANIC_H

#include <pthread.h>
#include <stdint.h>

#include "../util/log.h"
#include "bus.h"

#define PVPANIC_PANICKED (1u << 0)
#define PVPANIC_CRASH_LOADED (1u << 1)
#define PVPANIC_EVENTS (PVPANIC_PANICKED | PVPANIC_CRASH_LOADED)

struct pvpanic {
	struct bus_dev bus; /* register at PORT_PVPANIC, length 1 */
	pthread_mutex_t lock;
	void (*panicked)(void *ctx);
	void *ctx;
	uint64_t panics, crash_loaded; /* events seen */
	bool panic_sent; /* the panicked callback already ran */
	struct ratelimit rl;
};

/* Initialise @p; @panicked (may be NULL) gets @ctx.  Returns 0 or -errno. */
int pvpanic_init(struct pvpanic *p, void (*panicked)(void *ctx), void *ctx);

/* Release what pvpanic_init acquired. */
void pvpanic_destroy(struct pvpanic *p);

#endif
