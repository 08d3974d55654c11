/* SPDX-License-Identifier: MIT */
/*
 * bootdev.h - boot-time marker port, one byte at PORT_BOOTDEV.
 *
 * The guest's init writes BOOTDEV_MAGIC when it starts; the first such
 * write calls the booted callback (the machine logs the boot time).  Later
 * magic writes and any other value are ignored; reads return 0.  The
 * device logs nothing itself.  Wider accesses act on the byte at offset 0;
 * other bytes read 0xff and their writes are ignored.
 *
 * Locking: the only state, "already fired", is an atomic flag, so no mutex
 * (and no destroy function) is needed.  The callback runs on the writing
 * vCPU thread.
 */
#ifndef VISOR_DEVICES_BOOTDEV_H
#define VISOR_DEVICES_BOOTDEV_H

#include <stdatomic.h>

#include "bus.h"

struct bootdev {
	struct bus_dev bus; /* register at PORT_BOOTDEV, length 1 */
	atomic_bool fired;
	void (*booted)(void *ctx);
	void *ctx;
};

/* Initialise @b; @booted (may be NULL) gets @ctx.  Returns 0. */
int bootdev_init(struct bootdev *b, void (*booted)(void *ctx), void *ctx);

#endif
