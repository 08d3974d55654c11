/* SPDX-License-Identifier: MIT */
#include "dirty_ring.h"

uint32_t dirty_ring_harvest(struct dirty_ring *r, const struct guest_mem *m, uint64_t *ignored)
{
	if (!r->gfns || !r->entries || (r->entries & (r->entries - 1)))
		return 0;
	uint32_t n = 0;
	while (n < r->entries) {
		struct kvm_dirty_gfn *e = &r->gfns[r->fetch & (r->entries - 1)];
		/* KVM writes slot and offset, then sets DIRTY: the acquire
		 * load orders the reads of the entry after the flag */
		uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
		if ((flags & (KVM_DIRTY_GFN_F_DIRTY | KVM_DIRTY_GFN_F_RESET)) != KVM_DIRTY_GFN_F_DIRTY)
			break;
		uint32_t slot = __atomic_load_n(&e->slot, __ATOMIC_RELAXED);
		uint64_t off = __atomic_load_n(&e->offset, __ATOMIC_RELAXED);
		/* slot: address space << 16 | slot id; visor has address
		 * space 0 only (no SMM), and slot i is guest_mem region i */
		if ((slot >> 16) || guest_mem_dirty_add_page(m, slot & 0xffff, off))
			(*ignored)++;
		/* harvested: the release store orders the reads above (and the
		 * mark) before KVM may see the entry as free to reuse */
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		r->fetch++;
		n++;
	}
	return n;
}
