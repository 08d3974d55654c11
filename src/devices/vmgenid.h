/* SPDX-License-Identifier: MIT */
/*
 * vmgenid.h - the VM generation ID (Microsoft's "Virtual Machine Generation
 * ID" specification, which Linux 5.18+ implements in drivers/virt/vmgenid.c):
 * 16 random bytes in guest memory that change whenever the VM starts again
 * from a saved state, so that a guest can tell two runs of one snapshot
 * apart.  Linux mixes the ID into its random pool when the driver probes and
 * reseeds its generator when it changes ("random: crng reseeded due to
 * virtual machine fork"), so clones of one snapshot stop producing the same
 * random numbers.
 *
 * The machine places the ID in reserved guest memory (layout.h
 * GPA_VMGENID), describes it in the DSDT (\_SB.VGEN, whose ADDR method
 * returns the address; arch/x86/acpi.h) and tells the guest about a new one
 * with ACPI Notify (\_SB.VGEN, 0x80) from a GPE method: the device's
 * @notify callback raises that GPE (acpi_pm_raise_gpe).
 *
 * The ID is drawn from getrandom(2): once at boot (vmgenid_new_id before
 * any vCPU runs) and again on every restore, where it is never the one the
 * snapshot holds.  The ID is not a secret (the guest credits it no
 * entropy), only unique.
 *
 * Locking: none; the device is used on the event-loop thread while no vCPU
 * runs (boot, restore), and the guest only reads the bytes.
 */
#ifndef VISOR_DEVICES_VMGENID_H
#define VISOR_DEVICES_VMGENID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../snapshot/format.h"

#define VMGENID_ID_LEN 16

struct vmgenid {
	uint8_t *hva; /* VMGENID_ID_LEN bytes of guest memory at gpa */
	uint64_t gpa;
	uint8_t id[VMGENID_ID_LEN]; /* the ID last written */
	bool notify_pending;	    /* a restored ID the guest has not been told about */
	void (*notify)(void *ctx);  /* raise the "ID changed" event */
	void *ctx;
	/* Fill a buffer with random bytes: 0 or -errno (default: getrandom
	 * without GRND_NONBLOCK, 16 bytes never block once the host's pool
	 * is initialised).  Tests may replace it after vmgenid_init. */
	int (*random)(void *buf, size_t len);
	uint64_t generations; /* IDs written (statistics) */
	/* The state comes from a live migration: the same VM carries on, so
	 * vmgenid_state_put keeps the saved ID (no new generation). */
	bool keep_on_restore;
};

/* Initialise @g for the 16 bytes at @hva (guest-physical @gpa, 8-byte
 * aligned: -EINVAL otherwise, or for a NULL @hva).  Writes nothing: the
 * first ID comes from vmgenid_new_id (boot) or the snapshot (restore).
 * @notify (may be NULL) tells the guest the ID changed. */
int vmgenid_init(struct vmgenid *g, uint8_t *hva, uint64_t gpa, void (*notify)(void *ctx),
		 void *ctx);

/* Draw a new ID, different from the current one, and write it into guest
 * memory (no notification).  0, or -errno when no random bytes could be
 * had (nothing written then). */
int vmgenid_new_id(struct vmgenid *g);

/* After a restore, once every interrupt controller and vCPU holds its
 * restored state (their state would overwrite an interrupt raised
 * earlier) and before any vCPU runs: if vmgenid_state_put wrote a new ID,
 * call @notify.  Returns whether it did. */
bool vmgenid_notify_restored(struct vmgenid *g);

/*
 * Snapshot state (the pattern of serial.h): the ID's guest-physical address
 * and the ID the guest had.  _decode checks the address against @gpa, the
 * one this machine uses (the guest's driver mapped that address when it
 * probed; an ID elsewhere would never be read), and accepts any ID.
 * _put writes a NEW ID (never the saved one) into guest memory and leaves
 * the notification pending for vmgenid_notify_restored; it fails only when
 * no random bytes can be had.
 */
#define VMGENID_STATE_VERSION 1
struct vmgenid_state {
	uint64_t gpa;
	uint8_t id[VMGENID_ID_LEN];
};
void vmgenid_state_get(const struct vmgenid *g, struct vmgenid_state *st);
void vmgenid_state_encode(const struct vmgenid_state *st, struct snap_writer *w);
int vmgenid_state_decode(const uint8_t *p, size_t len, uint32_t version, uint64_t gpa,
			 struct vmgenid_state *st, char *err, size_t errlen);
int vmgenid_state_put(struct vmgenid *g, const struct vmgenid_state *st);

#endif
