/* SPDX-License-Identifier: MIT */
/*
 * registry.h - every device of a machine as one record.
 *
 * A record names a device (id, type, class, transport) and carries its
 * ops.  The machine creates devices from the config by walking a table of
 * device types (machine.c: dev_types[]), adds a record for each, and from
 * then on pauses, resumes, saves, restores and destroys them by iterating
 * the registry, never per-type arrays.  Adding a device
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
#include "../snapshot/format.h"

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
	/* Tell the network where the device is now: the VM may run behind
	 * another switch port after a restore or a migration (a NIC sends
	 * or has its guest send a frame from its MAC, virtio_net_announce).
	 * Optional; event-loop thread, the VM resumed or about to be.
	 * 0 or -errno.  A virtio device needs no entry here: without one,
	 * registry_announce_all calls its type's virtio op
	 * (struct virtio_dev_ops.announce), so the machine's per-type
	 * records need no wiring for it. */
	int (*announce)(struct dev_record *r);

	/*
	 * Snapshot (optional: a device without guest-visible state, such as
	 * pvpanic, has none).  Its state is one section "dev.<index>" of
	 * version @state_version.
	 *  save   write the state as the open section's payload (event-loop
	 *         thread, VM paused and the device quiesced).  0 or -errno.
	 *  load   decode a saved payload into @state (@state_size bytes,
	 *         zeroed), checking every field, without touching the device:
	 *         every device is loaded before any is changed.  0 or -EINVAL
	 *         with a message.
	 *  apply  make the device hold a state @load accepted (VM not running).
	 */
	uint32_t state_version;
	size_t state_size;
	/* Make what the device wrote on the host durable (a disk image's
	 * fdatasync) before a snapshot is declared complete.  Optional;
	 * 0 or -errno. */
	int (*sync)(struct dev_record *r);
	int (*save)(struct dev_record *r, struct snap_writer *w);
	int (*load)(struct dev_record *r, const uint8_t *p, size_t len, uint32_t version,
		    void *state, char *err, size_t errlen);
	int (*apply)(struct dev_record *r, const void *state, char *err, size_t errlen);
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
/* Announce every device that can (dev_ops.announce, else a virtio
 * device's virtio_dev_ops.announce), in creation order; a failure is
 * logged and the others still announce.  The number of devices asked. */
unsigned registry_announce_all(struct dev_registry *reg);

/*
 * Snapshot sections of the devices (docs/snapshot-format.md, "Devices"):
 * a manifest "devices" listing every record (class, transport, type, id,
 * whether it has state) in registry order, then "dev.<index>" for each
 * device with state.
 *
 * registry_save_all: append them to @w.  0, or -errno with a message.
 * registry_restore_all: check the manifest in @rd against this registry
 * (same devices, same order: a snapshot of another machine is refused),
 * load every device's section, and only when all were accepted apply them
 * in order.  0, or -EINVAL/-ENOENT/-ENOMEM with a message; on any error
 * before the apply step no device was changed.
 */
/* Run every device's sync op; the first error (-errno), or 0. */
int registry_sync_all(struct dev_registry *reg);

#define REGISTRY_MANIFEST_ID "devices"
#define REGISTRY_MANIFEST_VERSION 1
int registry_save_all(struct dev_registry *reg, struct snap_writer *w, char *err, size_t errlen);
int registry_restore_all(struct dev_registry *reg, const struct snap_reader *rd, char *err,
			 size_t errlen);

#endif
