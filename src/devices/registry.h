/* SPDX-License-Identifier: MIT */
/*
 * registry.h - every device of a machine as one record.
 *
 * A record names a device (id, type, class, transport) and carries its
 * ops.  The machine creates devices from the config by walking a table of
 * device types (machine.c: dev_types[]), adds a record for each, and from
 * then on pauses, resumes and destroys them (and, next, saves and restores
 * them) by iterating the registry, never per-type arrays.  Adding a device
 * type means its own file plus one entry in that table.
 *
 * The registry is plain data owned by the machine; it is only changed while
 * the machine is built or torn down (event-loop thread), so lookups need no
 * lock.
 */
#ifndef VISOR_DEVICES_REGISTRY_H
#define VISOR_DEVICES_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "../config.h"

struct dev_record;
struct virtio_dev;

enum dev_class { DEV_LEGACY, DEV_VIRTIO };

struct dev_ops {
	/* The VM is pausing: vCPUs are parked; stop touching guest memory
	 * and finish in-flight work (event-loop thread).  Optional. */
	void (*pause)(struct dev_record *r);
	/* The VM resumes (event-loop thread).  Optional. */
	void (*resume)(struct dev_record *r);
	/* Tear the device down (transport first, then the device).  Called
	 * once, in reverse order of creation, after the vCPUs stopped. */
	void (*destroy)(struct dev_record *r);
};

#define REGISTRY_MAX 48

struct dev_record {
	char id[CONFIG_ID_MAX + 1];     /* "com1", "rtc", a drive_id, an iface_id, "rng", ... */
	const char *type;               /* "serial", "virtio-blk", ... */
	enum dev_class cls;
	enum virtio_transport_kind transport; /* virtio only */
	const struct dev_ops *ops;
	void *dev;                      /* struct serial *, struct virtio_blk *, ... */
	struct virtio_dev *vdev;        /* virtio only */
	void *tdev;                     /* virtio only: struct virtio_pci / virtio_mmio */
	bool paused;
};

struct dev_registry {
	uint32_t n;
	struct dev_record r[REGISTRY_MAX];
};

/* Append a record (copied).  Returns it, or NULL when full or when @id is
 * already used by a device of the same type. */
struct dev_record *registry_add(struct dev_registry *reg, const struct dev_record *rec);
/* The record of type @type and id @id, or NULL. */
struct dev_record *registry_find(struct dev_registry *reg, const char *type, const char *id);
/* Pause / resume every device (creation order / reverse order). */
void registry_pause_all(struct dev_registry *reg);
void registry_resume_all(struct dev_registry *reg);
/* Destroy every device, newest first, and empty the registry. */
void registry_destroy_all(struct dev_registry *reg);

#endif
