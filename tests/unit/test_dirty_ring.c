/* SPDX-License-Identifier: MIT */
/*
 * KVM's dirty ring, harvested on a ring in ordinary memory (no KVM): the
 * entries KVM published are taken in order into both of guest_mem's
 * bitmaps, each set to RESET, the fetch index advanced and wrapped; an
 * entry naming no page of guest RAM is counted, ignored and still handed
 * back; the harvest stops at the first entry KVM has not published.  And
 * the ring size every front end validates.
 */
#include "../../src/kvm/dirty_ring.h"

#include <errno.h>

#include "../../src/config.h"
#include "test.h"

#define MIB (1ull << 20)
/* RAM 0-6 MiB (region 0, 1536 pages) and 8-10 MiB (region 1, 512 pages) */
#define SIZE (8 * MIB)
#define HOLE (6 * MIB)
#define HOLE_END (8 * MIB)

#define N 8 /* entries of the fake ring */

static struct kvm_dirty_gfn gfns[N];

/* KVM's side: fill entry @i (index mod N) and publish it */
static void push(uint32_t i, uint32_t slot, uint64_t off)
{
	struct kvm_dirty_gfn *e = &gfns[i % N];
	e->slot = slot;
	e->offset = off;
	__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
}

/* KVM_RESET_DIRTY_RINGS' effect on the entries: harvested ones free */
static uint32_t kvm_reset(void)
{
	uint32_t n = 0;
	for (int i = 0; i < N; i++)
		if (gfns[i].flags & KVM_DIRTY_GFN_F_RESET) {
			gfns[i].flags = 0;
			n++;
		}
	return n;
}

static void mem_up(struct guest_mem *m, bool track, bool mig)
{
	memset(gfns, 0, sizeof(gfns));
	CHECK_EQ(guest_mem_init(m, SIZE, HOLE, HOLE_END), 0);
	if (track)
		CHECK_EQ(guest_mem_track_dirty(m), 0);
	if (mig)
		CHECK_EQ(guest_mem_mig_start(m), 0);
}

static uint64_t mig_count(const struct guest_mem *m, uint64_t *bits)
{
	memset(bits, 0, guest_mem_bitmap_words(m) * sizeof(*bits));
	return guest_mem_mig_take(m, bits);
}

TEST(published_entries_mark_both_bitmaps_and_are_reset)
{
	struct guest_mem m;
	mem_up(&m, true, true);
	struct dirty_ring r = {.gfns = gfns, .entries = N};
	push(0, 0, 3);    /* region 0, page 3 */
	push(1, 0, 1535); /* the last page of region 0 */
	push(2, 1, 0);    /* region 1's first page: mapping page 1536 */
	push(3, 1, 511);  /* the last page of RAM */
	uint64_t ignored = 0;
	CHECK_EQ(dirty_ring_harvest(&r, &m, &ignored), 4);
	CHECK_EQ(ignored, 0);
	CHECK_EQ(r.fetch, 4);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(gfns[i].flags, KVM_DIRTY_GFN_F_RESET);
	CHECK_EQ(gfns[4].flags, 0);
	CHECK_EQ(guest_mem_dirty_count(&m), 4);
	CHECK(guest_mem_is_dirty(&m, 3) && guest_mem_is_dirty(&m, 1535));
	CHECK(guest_mem_is_dirty(&m, 1536) && guest_mem_is_dirty(&m, SIZE / 4096 - 1));
	CHECK(!guest_mem_is_dirty(&m, 4));
	static uint64_t bits[SIZE / 4096 / 64];
	CHECK_EQ(mig_count(&m, bits), 4);
	CHECK_EQ(bits[0], 1ull << 3);
	CHECK_EQ(bits[1535 / 64], 1ull << 63);
	CHECK_EQ(bits[1536 / 64], 1ull);
	/* nothing new: nothing taken, nothing touched */
	CHECK_EQ(dirty_ring_harvest(&r, &m, &ignored), 0);
	CHECK_EQ(r.fetch, 4);
	guest_mem_destroy(&m);
}

TEST(entries_naming_no_guest_page_are_ignored_counted_and_handed_back)
{
	struct guest_mem m;
	mem_up(&m, true, true);
	struct dirty_ring r = {.gfns = gfns, .entries = N};
	push(0, 2, 0);                     /* no slot 2 */
	push(1, 0, 1536);                  /* one past region 0 */
	push(2, 1, 512);                   /* one past region 1 (past RAM) */
	push(3, 1u << 16, 5);              /* address space 1 (SMM): not visor's */
	push(4, 0xffffffffu, UINT64_MAX);  /* garbage */
	push(5, 0, UINT64_MAX / 4096 + 7); /* an offset whose byte address overflows */
	push(6, 1, 7);                     /* and one good entry among them */
	uint64_t ignored = 0;
	CHECK_EQ(dirty_ring_harvest(&r, &m, &ignored), 7);
	CHECK_EQ(ignored, 6);
	CHECK_EQ(guest_mem_dirty_count(&m), 1);
	CHECK(guest_mem_is_dirty(&m, 1536 + 7));
	for (int i = 0; i < 7; i++)
		CHECK_EQ(gfns[i].flags, KVM_DIRTY_GFN_F_RESET);
	static uint64_t bits[SIZE / 4096 / 64];
	CHECK_EQ(mig_count(&m, bits), 1);
	guest_mem_destroy(&m);
}

TEST(harvest_stops_at_the_first_unpublished_entry_and_keeps_order)
{
	struct guest_mem m;
	mem_up(&m, true, false);
	struct dirty_ring r = {.gfns = gfns, .entries = N};
	push(0, 0, 10);
	push(2, 0, 12); /* entry 1 not published yet: 2 must wait */
	uint64_t ignored = 0;
	CHECK_EQ(dirty_ring_harvest(&r, &m, &ignored), 1);
	CHECK_EQ(r.fetch, 1);
	CHECK(guest_mem_is_dirty(&m, 10) && !guest_mem_is_dirty(&m, 12));
	CHECK_EQ(gfns[2].flags, KVM_DIRTY_GFN_F_DIRTY);
	/* a harvested entry KVM has not reset yet (RESET, or RESET|DIRTY) is
	 * not taken again */
	gfns[1].flags = KVM_DIRTY_GFN_F_RESET | KVM_DIRTY_GFN_F_DIRTY;
	CHECK_EQ(dirty_ring_harvest(&r, &m, &ignored), 0);
	push(1, 0, 11);
	CHECK_EQ(dirty_ring_harvest(&r, &m, &ignored), 2);
	CHECK_EQ(r.fetch, 3);
	CHECK(guest_mem_is_dirty(&m, 11) && guest_mem_is_dirty(&m, 12));
	guest_mem_destroy(&m);
}

TEST(fetch_index_wraps_around_the_ring_and_32_bits)
{
	struct guest_mem m;
	mem_up(&m, true, false);
	/* start 3 entries before the end of the ring and of the 32-bit index */
	uint32_t start = UINT32_MAX - 2;
	struct dirty_ring r = {.gfns = gfns, .entries = N, .fetch = start};
	for (uint32_t k = 0; k < N; k++)
		push(start + k, 0, 100 + k);
	uint64_t ignored = 0;
	CHECK_EQ(dirty_ring_harvest(&r, &m, &ignored), N);
	CHECK_EQ(r.fetch, start + N); /* wrapped past 2^32 */
	CHECK_EQ(r.fetch, N - 3);
	CHECK_EQ(guest_mem_dirty_count(&m), N);
	for (uint32_t k = 0; k < N; k++)
		CHECK(guest_mem_is_dirty(&m, 100 + k));
	/* a full ring is taken in one call, never more than N: KVM may not
	 * reuse an entry before the reset */
	CHECK_EQ(kvm_reset(), N);
	for (uint32_t k = 0; k < N; k++)
		push(r.fetch + k, 1, k);
	CHECK_EQ(dirty_ring_harvest(&r, &m, &ignored), N);
	CHECK_EQ(dirty_ring_harvest(&r, &m, &ignored), 0);
	CHECK_EQ(guest_mem_dirty_count(&m), 2 * N);
	/* after the reset KVM refills the freed entries from where it was */
	CHECK_EQ(kvm_reset(), N);
	push(r.fetch, 0, 200);
	CHECK_EQ(dirty_ring_harvest(&r, &m, &ignored), 1);
	CHECK(guest_mem_is_dirty(&m, 200));
	CHECK_EQ(ignored, 0);
	guest_mem_destroy(&m);
}

TEST(a_ring_is_consumed_even_when_nothing_tracks)
{
	struct guest_mem m;
	mem_up(&m, false, false);
	struct dirty_ring r = {.gfns = gfns, .entries = N};
	push(0, 0, 1);
	push(1, 9, 1);
	uint64_t ignored = 0;
	CHECK_EQ(dirty_ring_harvest(&r, &m, &ignored), 2);
	CHECK_EQ(ignored, 1); /* still validated */
	CHECK_EQ(gfns[0].flags, KVM_DIRTY_GFN_F_RESET);
	CHECK(!guest_mem_tracking(&m));
	guest_mem_destroy(&m);
}

TEST(no_ring_or_a_bad_size_harvests_nothing)
{
	struct guest_mem m;
	mem_up(&m, true, false);
	push(0, 0, 1);
	uint64_t ignored = 0;
	struct dirty_ring none = {0};
	CHECK_EQ(dirty_ring_harvest(&none, &m, &ignored), 0);
	struct dirty_ring odd = {.gfns = gfns, .entries = 6};
	CHECK_EQ(dirty_ring_harvest(&odd, &m, &ignored), 0);
	CHECK_EQ(gfns[0].flags, KVM_DIRTY_GFN_F_DIRTY);
	CHECK_EQ(guest_mem_dirty_count(&m), 0);
	guest_mem_destroy(&m);
}

TEST(dirty_ring_size_validation)
{
	static struct vm_config c;
	struct config_err e;
	config_init(&c);
	CHECK_EQ(c.dirty_ring, CONFIG_DIRTY_RING_DEFAULT);
	CHECK(!c.dirty_ring_set);
	CHECK_EQ(config_set_dirty_ring(&c, 0, &e), 0); /* the bitmap */
	CHECK_EQ(c.dirty_ring, 0);
	CHECK(c.dirty_ring_set);
	CHECK_EQ(config_set_dirty_ring(&c, 256, &e), 0);
	CHECK_EQ(config_set_dirty_ring(&c, 65536, &e), 0);
	CHECK_EQ(c.dirty_ring, 65536);
	static const uint64_t bad[] = {1, 128, 255, 257, 1000, 4095, 131072, 1ull << 32,
				       (1ull << 32) + 4096, UINT64_MAX};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ(config_set_dirty_ring(&c, bad[i], &e), (unsigned long long)-EINVAL);
		CHECK(strstr(e.msg, "is not a power of two from 256 to 65536") != NULL);
		CHECK_EQ(c.dirty_ring, 65536); /* unchanged */
	}
	/* config_validate: the same check on the whole */
	CHECK_EQ(config_set_boot(&c, "/k", NULL, NULL, &e), 0);
	CHECK_EQ(config_validate(&c, &e), 0);
	c.dirty_ring = 3000;
	CHECK_EQ(config_validate(&c, &e), (unsigned long long)-EINVAL);
	CHECK(strstr(e.msg, "dirty ring: 3000 entries") != NULL);
	c.dirty_ring = 0;
	CHECK_EQ(config_validate(&c, &e), 0);
}

TEST_MAIN()
