/* SPDX-License-Identifier: MIT */
/*
 * dirty_ring.h - harvesting one vCPU's KVM dirty ring into guest_mem's
 * dirty bitmaps (api.rst, "KVM_CAP_DIRTY_LOG_RING").
 *
 * The ring is an array of struct kvm_dirty_gfn shared with KVM: KVM fills
 * an entry (slot, page offset) and then sets its DIRTY flag; user space
 * takes the entries in order from its own fetch index, marks each one
 * harvested (RESET), and later calls KVM_RESET_DIRTY_RINGS, which
 * re-protects those pages and gives the entries back to KVM.  The index
 * is free-running (masked by the size, a power of two), as KVM's are.
 *
 * Everything KVM put in the ring is treated as untrusted: an entry whose
 * slot or offset names no page of guest RAM is counted and ignored (and
 * still handed back), never used to index anything.  No KVM calls here:
 * unit-tested on a ring in ordinary memory.
 */
#ifndef VISOR_KVM_DIRTY_RING_H
#define VISOR_KVM_DIRTY_RING_H

#include <linux/kvm.h>
#include <stdint.h>

#include "../mem/guest_mem.h"

struct dirty_ring {
	struct kvm_dirty_gfn *gfns; /* the vCPU's mapping of its ring */
	uint32_t entries;           /* a power of two; 0: no ring */
	uint32_t fetch;             /* the next entry to look at (free-running) */
};

/* Take every entry KVM has published from the fetch index on, in order,
 * at most one ring's worth: mark its page in @m's bitmaps
 * (guest_mem_dirty_add_page), set it to RESET (a store-release, after the
 * entry was read) and advance the fetch index.  Stops at the first entry
 * that is not (DIRTY without RESET).  Returns the entries taken; adds the
 * ones that named no page of guest RAM to *@ignored.  The caller then
 * calls KVM_RESET_DIRTY_RINGS (before reading the pages' contents). */
uint32_t dirty_ring_harvest(struct dirty_ring *r, const struct guest_mem *m, uint64_t *ignored);

#endif
