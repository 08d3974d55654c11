/* SPDX-License-Identifier: MIT */
/*
 * bus.h - guest address spaces (port I/O and MMIO) and the devices on them.
 *
 * A device embeds a struct bus_dev and recovers itself with container_of()
 * in its ops.  The bus dispatches an access to the one device whose window
 * contains it, passing the offset inside the window.  Registration rejects
 * overlapping windows.  Accesses that hit no device are logged (rate
 * limited) and reads return all-ones, as on a PC with nothing decoding the
 * address.
 *
 * Locking: windows may be added and removed while vCPU threads dispatch
 * (a PCI BAR moves when the guest reprograms it).  A per-bus rwlock keeps
 * the window table consistent: bus_register/bus_unregister take it for
 * writing, lookups for reading.  bus_access looks the window up and takes
 * the offset under the read lock, then RELEASES it and calls the device,
 * so a device op may itself (un)register windows on any bus (PCI config
 * writes through ECAM remap BARs on the same MMIO bus) without deadlock.
 * Consequence: an access that looked a window up just before it was
 * unregistered may still reach the device's ops once, with the offset of
 * the old placement - exactly what a guest racing its own reprogramming
 * gets on hardware.  So a bus_dev (and what its ops touch) must stay valid
 * until the machine stops dispatching - visor's devices live as long as
 * the VM.  Each device protects its own state (vCPU threads and the event
 * loop may call in concurrently).
 */
#ifndef VISOR_DEVICES_BUS_H
#define VISOR_DEVICES_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bus_dev;

struct bus_dev_ops {
	/* Fill data[0..len) for a read at @offset inside the window.
	 * len is 1, 2, 4 or 8.  Must always write all of data. */
	void (*read)(struct bus_dev *dev, uint64_t offset, void *data, uint32_t len);
	/* Handle a write of data[0..len) at @offset inside the window. */
	void (*write)(struct bus_dev *dev, uint64_t offset, const void *data, uint32_t len);
};

struct bus_dev {
	const struct bus_dev_ops *ops;
	const char *name;
	/* set by bus_register */
	uint64_t base;
	uint64_t len;
};

#define BUS_MAX_DEVS 64

struct bus {
	const char *name; /* "pio" or "mmio", for logs */
	pthread_rwlock_t lock; /* guards ndevs, devs[] and their base/len */
	size_t ndevs;
	struct bus_dev *devs[BUS_MAX_DEVS]; /* sorted by base */
	uint64_t unhandled;                 /* count of accesses nobody decoded */
};

/* Initialise an empty bus. */
void bus_init(struct bus *bus, const char *name);

/* Place @dev at [base, base+len).  Returns 0, -EINVAL (len 0 or wraps),
 * -EEXIST (overlaps a registered window, or @dev is already registered on
 * this bus: a bus_dev has one window at a time) or -ENOSPC. */
int bus_register(struct bus *bus, struct bus_dev *dev, uint64_t base, uint64_t len);

/* Remove @dev's window (registered with bus_register on this bus).  Its
 * base/len keep their last values.  Returns 0, -EINVAL (NULL argument) or
 * -ENOENT (not registered here).  An access already dispatched to @dev
 * may still complete after this returns (see Locking above). */
int bus_unregister(struct bus *bus, struct bus_dev *dev);

/* Find the device whose window holds [addr, addr+len), or NULL.  The
 * answer may be stale as soon as it is returned if windows move
 * concurrently. */
struct bus_dev *bus_find(struct bus *bus, uint64_t addr, uint32_t len);

/* Dispatch one access.  Returns true if a device handled it; otherwise a
 * read fills data with 0xff bytes and the miss is logged (rate limited). */
bool bus_access(struct bus *bus, uint64_t addr, void *data, uint32_t len, bool is_write);

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#endif
