/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue tests: a fake guest memory with a tiny "driver" that
 * writes descriptors and avail entries, normal chains, and every hostile
 * case of checklist section A that the device side handles.
 */
#include "../../src/devices/virtio/virtq.h"

#include <errno.h>
#include <pthread.h>

#include "test.h"
#include "virtio_fake.h"

#define MIB (1ull << 20)
#define MEM_SIZE (4 * MIB)
#define DESC_GPA 0x10000ull
#define AVAIL_GPA 0x20000ull
#define USED_GPA 0x30000ull
#define BUF_GPA 0x100000ull

#define F_INDIRECT (1ull << VIRTIO_F_INDIRECT_DESC)
#define F_EVENT_IDX (1ull << VIRTIO_F_EVENT_IDX)

#define EIO_ (unsigned long long)-EIO
#define EINVAL_ (unsigned long long)-EINVAL

struct drv {
	struct guest_mem mem;
	struct virtq q;
	uint16_t avail_idx; /* driver's shadow of avail->idx */
};

/* Geometry only; activation is left to the caller. */
static void drv_geometry(struct drv *v, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
	memset(&v->q, 0, sizeof(v->q));
	v->q.size = size;
	v->q.ready = true;
	v->q.desc_gpa = desc;
	v->q.avail_gpa = avail;
	v->q.used_gpa = used;
	v->avail_idx = 0;
}

static int drv_init_mem(struct drv *v, uint64_t mem_size, uint64_t hole_start, uint64_t hole_end)
{
	memset(v, 0, sizeof(*v));
	return guest_mem_init(&v->mem, mem_size, hole_start, hole_end);
}

/* One 4 MiB region, rings at the default addresses, activated. */
static int drv_setup(struct drv *v, uint16_t size, uint64_t features)
{
	if (drv_init_mem(v, MEM_SIZE, MEM_SIZE, MEM_SIZE))
		return -ENOMEM;
	drv_geometry(v, size, DESC_GPA, AVAIL_GPA, USED_GPA);
	return virtq_activate(&v->q, &v->mem, features);
}

static void drv_fini(struct drv *v)
{
	guest_mem_destroy(&v->mem);
}

static void drv_desc(struct drv *v, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	vf_desc(&v->mem, v->q.desc_gpa, i, addr, len, flags, next);
}

static void drv_set_avail_idx(struct drv *v, uint16_t idx)
{
	v->avail_idx = idx;
	vf_put16(&v->mem, v->q.avail_gpa + 2, idx);
}

/* Make chain @head available. */
static void drv_avail(struct drv *v, uint16_t head)
{
	vf_put16(&v->mem, v->q.avail_gpa + 4 + 2ull * (v->avail_idx % v->q.size), head);
	drv_set_avail_idx(v, (uint16_t)(v->avail_idx + 1));
}

static uint16_t used_idx(struct drv *v)
{
	return vf_get16(&v->mem, v->q.used_gpa + 2);
}

static void used_elem(struct drv *v, uint16_t slot, uint32_t *id, uint32_t *len)
{
	uint64_t e = v->q.used_gpa + 4 + 8ull * (slot % v->q.size);
	*id = vf_get32(&v->mem, e);
	*len = vf_get32(&v->mem, e + 4);
}

static void set_used_event(struct drv *v, uint16_t val)
{
	vf_put16(&v->mem, v->q.avail_gpa + 4 + 2ull * v->q.size, val);
}

static uint16_t avail_event(struct drv *v)
{
	return vf_get16(&v->mem, v->q.used_gpa + 4 + 8ull * v->q.size);
}

static uint8_t *hva(struct drv *v, uint64_t gpa)
{
	return gpa_to_hva(&v->mem, gpa, 1);
}

/* One single-descriptor chain at @head, popped and pushed back. */
static int cycle_one(struct drv *v, struct virtq_chain *c, uint16_t head)
{
	drv_desc(v, head, BUF_GPA, 64, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(v, head);
	int r = virtq_pop(&v->q, c);
	if (r != 1)
		return -1;
	return virtq_push(&v->q, head, 0);
}

/* ---- activation (checklist A.11, B.14) ---- */

TEST(activate_sizes)
{
	struct drv v;
	CHECK_EQ(drv_setup(&v, 256, 0), 0);
	CHECK(v.q.active);
	static const uint16_t bad[] = {0, 3, 6, 1000, 2048, 0xffff};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		drv_geometry(&v, bad[i], DESC_GPA, AVAIL_GPA, USED_GPA);
		CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
		CHECK(!v.q.active);
		struct virtq_chain c;
		CHECK_EQ(virtq_pop(&v.q, &c), 0);
	}
	static const uint16_t good[] = {1, 2, 64, VIRTQ_MAX_SIZE};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		drv_geometry(&v, good[i], DESC_GPA, AVAIL_GPA, USED_GPA);
		CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), 0);
	}
	drv_fini(&v);
}

TEST(activate_alignment)
{
	struct drv v;
	CHECK_EQ(drv_setup(&v, 16, 0), 0);
	drv_geometry(&v, 16, DESC_GPA + 8, AVAIL_GPA, USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	drv_geometry(&v, 16, DESC_GPA, AVAIL_GPA + 1, USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	drv_geometry(&v, 16, DESC_GPA, AVAIL_GPA, USED_GPA + 2);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	/* the minimum alignments themselves are fine */
	drv_geometry(&v, 16, DESC_GPA + 16, AVAIL_GPA + 2, USED_GPA + 4);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), 0);
	drv_fini(&v);
}

TEST(activate_rings_outside_ram)
{
	struct drv v;
	uint16_t n = 64;
	CHECK_EQ(drv_setup(&v, n, 0), 0);
	/* descriptor table running past the end of RAM */
	drv_geometry(&v, n, MEM_SIZE - 16ull * n + 16, AVAIL_GPA, USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	drv_geometry(&v, n, MEM_SIZE - 16ull * n, AVAIL_GPA, USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), 0);
	/* avail ring whose used_event would be past the end */
	drv_geometry(&v, n, DESC_GPA, MEM_SIZE - (4 + 2ull * n), USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	drv_geometry(&v, n, DESC_GPA, MEM_SIZE - (6 + 2ull * n), USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), 0);
	/* used ring whose avail_event would be past the end (even without
	 * EVENT_IDX the whole ring is checked) */
	drv_geometry(&v, n, DESC_GPA, AVAIL_GPA, MEM_SIZE - (4 + 8ull * n));
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	drv_geometry(&v, n, DESC_GPA, AVAIL_GPA, MEM_SIZE - (8 + 8ull * n));
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), 0);
	/* entirely outside, and near 2^64 (no wrap) */
	drv_geometry(&v, n, 1ull << 40, AVAIL_GPA, USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	drv_geometry(&v, n, DESC_GPA, AVAIL_GPA, UINT64_MAX - 3);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	drv_geometry(&v, n, UINT64_MAX - 15, AVAIL_GPA, USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	drv_fini(&v);
}

TEST(activate_rings_straddling_hole)
{
	struct drv v;
	/* RAM [0, 2M) and [3M, 5M), hole [2M, 3M) */
	CHECK_EQ(drv_init_mem(&v, 4 * MIB, 2 * MIB, 3 * MIB), 0);
	CHECK_EQ(v.mem.nregions, 2);
	uint16_t n = 64;
	drv_geometry(&v, n, 2 * MIB - 512, AVAIL_GPA, USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	drv_geometry(&v, n, 2 * MIB + 0x1000, AVAIL_GPA, USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	drv_geometry(&v, n, DESC_GPA, 2 * MIB - 64, USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	drv_geometry(&v, n, DESC_GPA, AVAIL_GPA, 3 * MIB - 8);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	/* rings spread over both regions are fine */
	drv_geometry(&v, n, 3 * MIB, AVAIL_GPA, 3 * MIB + 0x1000);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), 0);
	drv_fini(&v);
}

TEST(activate_rings_overlapping)
{
	struct drv v;
	uint16_t n = 16; /* desc 256 bytes, avail 38, used 134 */
	CHECK_EQ(drv_setup(&v, n, 0), 0);
	drv_geometry(&v, n, 0x1000, 0x1000 + 240, 0x2000);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	drv_geometry(&v, n, 0x1000, 0x2000, 0x1000 + 252);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	/* used_event of the avail ring inside the used ring */
	drv_geometry(&v, n, 0x1000, 0x2000, 0x2000 + 36);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	/* avail_event of the used ring inside the avail ring */
	drv_geometry(&v, n, 0x1000, 0x2000 + 132, 0x2000);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	/* all three at one address */
	drv_geometry(&v, n, 0x1000, 0x1000, 0x1000);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), EINVAL_);
	/* back to back is fine: desc 0x1000..0x1100, avail ..0x1126, used 0x1128.. */
	drv_geometry(&v, n, 0x1000, 0x1100, 0x1128);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), 0);
	drv_fini(&v);
}

/* ---- normal chains ---- */

TEST(pop_direct_mixed_chain_and_push)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	CHECK_EQ(virtq_pop(&v.q, &c), 0);
	drv_desc(&v, 5, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	drv_desc(&v, 2, BUF_GPA + 0x100, 8, VIRTQ_DESC_F_NEXT, 7);
	drv_desc(&v, 7, BUF_GPA + 0x200, 32, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	drv_desc(&v, 0, BUF_GPA + 0x300, 4, VIRTQ_DESC_F_WRITE, 0xffff /* ignored */);
	drv_avail(&v, 5);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.head, 5);
	CHECK_EQ(c.nsegs, 4);
	CHECK_EQ(c.nread, 2);
	CHECK_EQ(c.read_len, 24);
	CHECK_EQ(c.write_len, 36);
	CHECK(c.segs[0].hva == hva(&v, BUF_GPA) && c.segs[0].len == 16);
	CHECK(c.segs[1].hva == hva(&v, BUF_GPA + 0x100) && c.segs[1].len == 8);
	CHECK(c.segs[2].hva == hva(&v, BUF_GPA + 0x200) && c.segs[2].len == 32);
	CHECK(c.segs[3].hva == hva(&v, BUF_GPA + 0x300) && c.segs[3].len == 4);
	CHECK_EQ(v.q.inflight, 1);
	CHECK_EQ(virtq_pop(&v.q, &c), 0);

	CHECK_EQ(virtq_push(&v.q, 5, 36), 0);
	CHECK_EQ(used_idx(&v), 1);
	uint32_t id, len;
	used_elem(&v, 0, &id, &len);
	CHECK_EQ(id, 5);
	CHECK_EQ(len, 36);
	CHECK_EQ(v.q.inflight, 0);
	drv_fini(&v);
}

TEST(pop_several_in_order_and_out_of_order_push)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 4, 0), 0);
	for (uint16_t i = 0; i < 4; i++) {
		drv_desc(&v, i, BUF_GPA + 0x1000ull * i, 100 + i, VIRTQ_DESC_F_WRITE, 0);
		drv_avail(&v, i);
	}
	/* exactly size buffers outstanding is allowed */
	for (uint16_t i = 0; i < 4; i++) {
		CHECK_EQ(virtq_pop(&v.q, &c), 1);
		CHECK_EQ(c.head, i);
		CHECK_EQ(c.write_len, 100 + i);
	}
	CHECK_EQ(virtq_pop(&v.q, &c), 0);
	CHECK_EQ(v.q.inflight, 4);
	static const uint16_t order[] = {2, 0, 3, 1};
	for (int i = 0; i < 4; i++)
		CHECK_EQ(virtq_push(&v.q, order[i], order[i] * 10u), 0);
	CHECK_EQ(used_idx(&v), 4);
	for (int i = 0; i < 4; i++) {
		uint32_t id, len;
		used_elem(&v, (uint16_t)i, &id, &len);
		CHECK_EQ(id, order[i]);
		CHECK_EQ(len, order[i] * 10u);
	}
	drv_fini(&v);
}

TEST(pop_indirect_chain)
{
	struct drv v;
	struct virtq_chain c;
	uint64_t table = BUF_GPA + 0x10000;
	CHECK_EQ(drv_setup(&v, 8, F_INDIRECT), 0);
	/* the table is not in ring order; its WRITE flag is ignored */
	vf_desc(&v.mem, table, 0, BUF_GPA, 10, VIRTQ_DESC_F_NEXT, 2);
	vf_desc(&v.mem, table, 2, BUF_GPA + 0x100, 20, VIRTQ_DESC_F_NEXT, 1);
	vf_desc(&v.mem, table, 1, BUF_GPA + 0x200, 30, VIRTQ_DESC_F_WRITE, 0);
	drv_desc(&v, 3, table, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 3);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.head, 3);
	CHECK_EQ(c.nsegs, 3);
	CHECK_EQ(c.nread, 2);
	CHECK_EQ(c.read_len, 30);
	CHECK_EQ(c.write_len, 30);
	CHECK(c.segs[2].hva == hva(&v, BUF_GPA + 0x200));
	CHECK_EQ(virtq_push(&v.q, 3, 30), 0);
	drv_fini(&v);
}

TEST(pop_direct_then_indirect)
{
	struct drv v;
	struct virtq_chain c;
	/* unaligned indirect table: no alignment is required of it */
	uint64_t table = BUF_GPA + 0x10003;
	CHECK_EQ(drv_setup(&v, 8, F_INDIRECT), 0);
	drv_desc(&v, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(&v, 1, table, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	vf_desc(&v.mem, table, 0, BUF_GPA + 0x100, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	vf_desc(&v.mem, table, 1, BUF_GPA + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 0);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.nsegs, 3);
	CHECK_EQ(c.nread, 1);
	CHECK_EQ(c.read_len, 16);
	CHECK_EQ(c.write_len, 513);
	drv_fini(&v);
}

/* ---- hostile chains (checklist A.1-A.10) ---- */

/* Pop must fail with -EIO, without consuming the entry or writing
 * anything to the used ring. */
static void expect_eio(struct drv *v, const char *what)
{
	struct virtq_chain c;
	uint16_t last = v->q.last_avail, uidx = v->q.used_idx;
	uint32_t inflight = v->q.inflight;
	uint8_t used_before[64];
	memcpy(used_before, hva(v, v->q.used_gpa), sizeof(used_before));
	int r = virtq_pop(&v->q, &c);
	if (r != -EIO)
		printf("  expected -EIO for %s, got %d\n", what, r);
	CHECK_EQ(r, EIO_);
	CHECK_EQ(v->q.last_avail, last);
	CHECK_EQ(v->q.used_idx, uidx);
	CHECK_EQ(v->q.inflight, inflight);
	CHECK(memcmp(used_before, hva(v, v->q.used_gpa), sizeof(used_before)) == 0);
	/* stays rejected, no hang, no progress */
	CHECK_EQ(virtq_pop(&v->q, &c), EIO_);
}

TEST(hostile_cycle)
{
	struct drv v;
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	drv_desc(&v, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "self loop");
	drv_fini(&v);

	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	drv_desc(&v, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(&v, 1, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	drv_desc(&v, 2, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	drv_avail(&v, 0);
	expect_eio(&v, "cycle 1->2->1");
	drv_fini(&v);

	/* a chain using every descriptor exactly once is fine */
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	for (uint16_t i = 0; i < 8; i++)
		drv_desc(&v, i, BUF_GPA, 16, i < 7 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	drv_avail(&v, 0);
	struct virtq_chain c;
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.nsegs, 8);
	drv_fini(&v);
}

TEST(hostile_next_and_head_out_of_range)
{
	struct drv v;
	static const uint16_t bad[] = {8, 9, 0x8000, 0xffff};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* a valid-looking descriptor where the index would point
		 * if it were not range-checked (still guest RAM here) */
		CHECK_EQ(drv_setup(&v, 8, 0), 0);
		drv_desc(&v, bad[i], BUF_GPA, 16, 0, 0);
		drv_desc(&v, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, bad[i]);
		drv_avail(&v, 0);
		expect_eio(&v, "next out of range");
		drv_fini(&v);

		CHECK_EQ(drv_setup(&v, 8, 0), 0);
		drv_desc(&v, bad[i], BUF_GPA, 16, 0, 0);
		drv_avail(&v, bad[i]);
		expect_eio(&v, "head out of range");
		drv_fini(&v);
	}
}

TEST(hostile_avail_idx_jump)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	for (uint16_t i = 0; i < 8; i++)
		drv_desc(&v, i, BUF_GPA, 16, 0, 0);
	drv_set_avail_idx(&v, 9);
	expect_eio(&v, "avail idx + 9");
	drv_set_avail_idx(&v, 0xffff); /* "-1": far more than size ahead */
	expect_eio(&v, "avail idx - 1");
	drv_set_avail_idx(&v, 0x8000);
	expect_eio(&v, "avail idx + 0x8000");
	/* after legitimately consuming a few, the window moves with us */
	drv_set_avail_idx(&v, 0);
	for (uint16_t i = 0; i < 3; i++)
		drv_avail(&v, i);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(virtq_pop(&v.q, &c), 1);
		CHECK_EQ(virtq_push(&v.q, c.head, 0), 0);
	}
	drv_set_avail_idx(&v, 3 + 8);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(virtq_push(&v.q, c.head, 0), 0);
	drv_set_avail_idx(&v, 4 + 9);
	expect_eio(&v, "avail idx + 9 after progress");
	drv_fini(&v);
}

TEST(hostile_head_twice_in_flight)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	drv_desc(&v, 3, BUF_GPA, 16, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 3);
	drv_avail(&v, 3);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.head, 3);
	expect_eio(&v, "head 3 again while in flight");
	/* once pushed back the driver may reuse it */
	CHECK_EQ(virtq_push(&v.q, 3, 16), 0);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.head, 3);
	drv_fini(&v);
}

TEST(hostile_zero_length)
{
	struct drv v;
	CHECK_EQ(drv_setup(&v, 8, F_INDIRECT), 0);
	drv_desc(&v, 0, BUF_GPA, 0, 0, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "zero-length head");
	drv_fini(&v);

	CHECK_EQ(drv_setup(&v, 8, F_INDIRECT), 0);
	drv_desc(&v, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(&v, 1, BUF_GPA, 0, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "zero-length second descriptor");
	drv_fini(&v);

	CHECK_EQ(drv_setup(&v, 8, F_INDIRECT), 0);
	uint64_t table = BUF_GPA + 0x10000;
	vf_desc(&v.mem, table, 0, BUF_GPA, 0, 0, 0);
	drv_desc(&v, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "zero-length descriptor in an indirect table");
	drv_fini(&v);
}

TEST(hostile_address_wrap)
{
	struct drv v;
	CHECK_EQ(drv_setup(&v, 8, F_INDIRECT), 0);
	drv_desc(&v, 0, UINT64_MAX - 10, 100, 0, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "addr+len wraps 2^64");
	drv_fini(&v);

	CHECK_EQ(drv_setup(&v, 8, F_INDIRECT), 0);
	drv_desc(&v, 0, UINT64_MAX, 1, 0, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "last byte of the address space");
	drv_fini(&v);

	CHECK_EQ(drv_setup(&v, 8, F_INDIRECT), 0);
	drv_desc(&v, 0, UINT64_MAX - 15, 0xffffffffu & ~15u, VIRTQ_DESC_F_INDIRECT, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "indirect table wrapping 2^64");
	drv_fini(&v);
}

TEST(hostile_chain_total_over_4g)
{
	/* Needs RAM large enough for 2 GiB buffers (MAP_NORESERVE: nothing
	 * is touched but the rings). */
	struct drv v;
	uint64_t size = (2ull << 30) + MIB;
	if (drv_init_mem(&v, size, size, size)) {
		printf("  (skipped: cannot map 2 GiB)\n");
		return;
	}
	uint64_t top = 2ull << 30;
	drv_geometry(&v, 8, top, top + 0x1000, top + 0x2000);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, F_INDIRECT), 0);
	drv_desc(&v, 0, 0, 0x80000000u, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(&v, 1, 0, 0x80000000u, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "2^31 + 2^31");
	/* 2^32 - 1 in total is the limit */
	drv_desc(&v, 1, 0, 0x7fffffffu, VIRTQ_DESC_F_WRITE, 0);
	struct virtq_chain c;
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.read_len, 0x80000000u);
	CHECK_EQ(c.write_len, 0x7fffffffu);
	CHECK_EQ(virtq_push(&v.q, 0, 0), 0);
	/* the same through an indirect table */
	uint64_t table = top + 0x4000;
	vf_desc(&v.mem, table, 0, 0, 0x80000000u, VIRTQ_DESC_F_NEXT, 1);
	vf_desc(&v.mem, table, 1, 0, 0x80000000u, VIRTQ_DESC_F_WRITE, 0);
	drv_desc(&v, 2, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	drv_avail(&v, 2);
	expect_eio(&v, "indirect total 2^32");
	drv_fini(&v);
}

TEST(hostile_buffer_outside_ram)
{
	struct drv v;
	struct virtq_chain c;
	/* RAM [0, 2M) and [3M, 5M), hole [2M, 3M) */
	CHECK_EQ(drv_init_mem(&v, 4 * MIB, 2 * MIB, 3 * MIB), 0);
	drv_geometry(&v, 8, DESC_GPA, AVAIL_GPA, USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), 0);
	static const struct {
		uint64_t addr;
		uint32_t len;
		const char *what;
	} bad[] = {
		{2 * MIB - 8, 16, "straddles the start of the hole"},
		{2 * MIB + 0x100, 16, "inside the hole (device window)"},
		{3 * MIB - 8, 16, "straddles the end of the hole"},
		{5 * MIB - 8, 16, "straddles the end of RAM"},
		{5 * MIB, 1, "just past the end of RAM"},
		{0, 5 * MIB, "from 0 across the hole"},
		{1ull << 40, 16, "far outside"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		drv_desc(&v, 0, bad[i].addr, bad[i].len, VIRTQ_DESC_F_WRITE, 0);
		drv_set_avail_idx(&v, 0);
		drv_avail(&v, 0);
		expect_eio(&v, bad[i].what);
	}
	/* the last byte of each region is fine */
	drv_desc(&v, 0, 2 * MIB - 16, 16, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(&v, 1, 5 * MIB - 16, 16, VIRTQ_DESC_F_WRITE, 0);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK(c.segs[1].hva == (uint8_t *)gpa_to_hva(&v.mem, 5 * MIB - 16, 16));
	drv_fini(&v);
}

TEST(hostile_indirect)
{
	struct drv v;
	uint64_t table = BUF_GPA + 0x10000;

	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	vf_desc(&v.mem, table, 0, BUF_GPA, 16, 0, 0);
	drv_desc(&v, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "INDIRECT not negotiated");
	drv_fini(&v);

	CHECK_EQ(drv_setup(&v, 8, F_INDIRECT), 0);
	vf_desc(&v.mem, table, 0, BUF_GPA, 16, 0, 0);
	drv_desc(&v, 0, table, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	drv_desc(&v, 1, BUF_GPA, 16, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "INDIRECT with NEXT");

	static const uint32_t bad_len[] = {0, 8, 24, 17, 0xfffffff8u};
	for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) {
		drv_desc(&v, 0, table, bad_len[i], VIRTQ_DESC_F_INDIRECT, 0);
		expect_eio(&v, "indirect length");
	}

	vf_desc(&v.mem, table, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	vf_desc(&v.mem, table, 1, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	drv_desc(&v, 0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	expect_eio(&v, "nested INDIRECT");

	/* valid-looking entries just past the table and at 0xffff */
	vf_desc(&v.mem, table, 2, BUF_GPA, 16, 0, 0);
	vf_desc(&v.mem, table, 0xffff, BUF_GPA, 16, 0, 0);
	vf_desc(&v.mem, table, 1, BUF_GPA, 16, 0, 0);
	vf_desc(&v.mem, table, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	expect_eio(&v, "next outside the indirect table");
	vf_desc(&v.mem, table, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 0xffff);
	expect_eio(&v, "next 0xffff in the indirect table");

	vf_desc(&v.mem, table, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	vf_desc(&v.mem, table, 1, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 0);
	expect_eio(&v, "cycle in the indirect table");

	drv_desc(&v, 0, MEM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	expect_eio(&v, "indirect table past the end of RAM");

	/* the table itself is fine once fixed */
	vf_desc(&v.mem, table, 1, BUF_GPA, 16, VIRTQ_DESC_F_WRITE, 0);
	drv_desc(&v, 0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	struct virtq_chain c;
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.nsegs, 2);
	drv_fini(&v);
}

TEST(hostile_readable_after_writable)
{
	struct drv v;
	CHECK_EQ(drv_setup(&v, 8, F_INDIRECT), 0);
	drv_desc(&v, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	drv_desc(&v, 1, BUF_GPA + 0x100, 16, 0, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "readable after writable");

	/* direct writable, then an indirect table starting readable */
	uint64_t table = BUF_GPA + 0x10000;
	vf_desc(&v.mem, table, 0, BUF_GPA + 0x200, 16, 0, 0);
	drv_desc(&v, 1, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	expect_eio(&v, "readable (indirect) after writable (direct)");

	/* inside one indirect table */
	vf_desc(&v.mem, table, 0, BUF_GPA + 0x200, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	vf_desc(&v.mem, table, 1, BUF_GPA + 0x300, 16, 0, 0);
	drv_desc(&v, 0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	expect_eio(&v, "readable after writable in a table");
	drv_fini(&v);
}

TEST(hostile_too_many_segments)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, VIRTQ_MAX_SIZE, F_INDIRECT), 0);
	for (uint16_t i = 0; i <= VIRTQ_MAX_SEGS; i++)
		drv_desc(&v, i, BUF_GPA + i, 1, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	/* VIRTQ_MAX_SEGS descriptors: accepted */
	drv_desc(&v, VIRTQ_MAX_SEGS - 1, BUF_GPA, 1, 0, 0);
	drv_avail(&v, 0);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.nsegs, VIRTQ_MAX_SEGS);
	CHECK_EQ(c.read_len, VIRTQ_MAX_SEGS);
	CHECK_EQ(virtq_push(&v.q, 0, 0), 0);
	/* one more: rejected */
	drv_desc(&v, VIRTQ_MAX_SEGS - 1, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, VIRTQ_MAX_SEGS);
	drv_desc(&v, VIRTQ_MAX_SEGS, BUF_GPA, 1, 0, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "VIRTQ_MAX_SEGS + 1 direct");
	drv_fini(&v);

	/* a huge indirect table: bounded by the segment limit */
	CHECK_EQ(drv_setup(&v, 8, F_INDIRECT), 0);
	uint64_t table = 2 * MIB;
	uint32_t n = 4096;
	for (uint32_t i = 0; i < n; i++)
		vf_desc(&v.mem, table, i, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	drv_desc(&v, 0, table, n * 16, VIRTQ_DESC_F_INDIRECT, 0);
	drv_avail(&v, 0);
	expect_eio(&v, "4096-entry indirect chain");
	drv_fini(&v);
}

/* Checklist A.12: the chain reflects one snapshot of each descriptor. */
TEST(descriptors_copied_once)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	drv_desc(&v, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(&v, 1, BUF_GPA + 0x100, 32, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 0);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	/* the guest rewrites the table after the pop: the chain the device
	 * holds keeps the validated values */
	drv_desc(&v, 0, MEM_SIZE - 1, 0xffffffffu, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 0xffff);
	drv_desc(&v, 1, 0, 0, VIRTQ_DESC_F_INDIRECT, 0);
	CHECK_EQ(c.nsegs, 2);
	CHECK_EQ(c.nread, 1);
	CHECK(c.segs[0].hva == hva(&v, BUF_GPA) && c.segs[0].len == 16);
	CHECK(c.segs[1].hva == hva(&v, BUF_GPA + 0x100) && c.segs[1].len == 32);
	uint8_t buf[64];
	CHECK_EQ(virtq_chain_read(&c, 0, buf, sizeof(buf)), 16);
	CHECK_EQ(virtq_chain_write(&c, 0, buf, sizeof(buf)), 32);
	CHECK_EQ(virtq_push(&v.q, 0, 32), 0);
	drv_fini(&v);
}

struct flipper {
	uint8_t *desc; /* host view of descriptor 0 */
	uint64_t good_addr, bad_addr;
	volatile int stop;
};

static void *flip(void *arg)
{
	struct flipper *f = arg;
	uint64_t *addr = (uint64_t *)(void *)f->desc;
	uint32_t *len = (uint32_t *)(void *)(f->desc + 8);
	for (unsigned i = 0; !__atomic_load_n(&f->stop, __ATOMIC_RELAXED); i++) {
		bool good = i & 1;
		__atomic_store_n(addr, good ? f->good_addr : f->bad_addr, __ATOMIC_RELAXED);
		__atomic_store_n(len, good ? 16u : 0xffffffffu, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* A guest thread rewriting descriptor 0 between a valid and an invalid
 * value while the device pops: whatever the device accepts must be a
 * validated value, never a mix of a checked and an unchecked read. */
TEST(descriptor_race_never_yields_unchecked_values)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	drv_desc(&v, 0, BUF_GPA, 16, 0, 0);
	struct flipper f = {.desc = hva(&v, DESC_GPA), .good_addr = BUF_GPA,
			    .bad_addr = MEM_SIZE - 8};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, flip, &f), 0);
	int ok = 0, bad = 0, wrong = 0;
	for (int i = 0; i < 100000; i++) {
		drv_avail(&v, 0);
		int r = virtq_pop(&v.q, &c);
		if (r == 1) {
			ok++;
			if (c.nsegs != 1 || c.segs[0].len != 16 ||
			    c.segs[0].hva != hva(&v, BUF_GPA))
				wrong++;
			if (virtq_push(&v.q, 0, 0))
				wrong++;
		} else if (r == -EIO) {
			bad++;
			/* skip the rejected entry, as a reset would */
			drv_geometry(&v, 8, DESC_GPA, AVAIL_GPA, USED_GPA);
			if (virtq_activate(&v.q, &v.mem, 0))
				wrong++;
		} else {
			wrong++;
		}
	}
	__atomic_store_n(&f.stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	CHECK_EQ(wrong, 0);
	CHECK(ok + bad > 0);
	drv_fini(&v);
}

/* ---- push, notification suppression, reset ---- */

TEST(push_rejects_heads_not_in_flight)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	CHECK_EQ(virtq_push(&v.q, 0, 0), EINVAL_);
	CHECK_EQ(virtq_push(&v.q, 8, 0), EINVAL_);
	CHECK_EQ(virtq_push(&v.q, 0xffff, 0), EINVAL_);
	drv_desc(&v, 1, BUF_GPA, 16, 0, 0);
	drv_avail(&v, 1);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(virtq_push(&v.q, 2, 0), EINVAL_);
	CHECK_EQ(virtq_push(&v.q, 1, 0), 0);
	CHECK_EQ(virtq_push(&v.q, 1, 0), EINVAL_); /* twice */
	CHECK_EQ(used_idx(&v), 1);
	CHECK_EQ(v.q.inflight, 0);
	drv_fini(&v);
}

TEST(push_batch_is_all_or_nothing)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	for (uint16_t h = 0; h < 3; h++) {
		drv_desc(&v, h, BUF_GPA + 64u * h, 16, VIRTQ_DESC_F_WRITE, 0);
		drv_avail(&v, h);
		CHECK_EQ(virtq_pop(&v.q, &c), 1);
	}
	uint16_t dup[2] = {0, 0}, bad[3] = {0, 1, 5}, good[3] = {2, 0, 1};
	uint32_t lens[3] = {10, 20, 30};
	/* a duplicate or a head not in flight: nothing is pushed */
	CHECK_EQ(virtq_push_batch(&v.q, dup, lens, 2), EINVAL_);
	CHECK_EQ(virtq_push_batch(&v.q, bad, lens, 3), EINVAL_);
	CHECK_EQ(virtq_push_batch(&v.q, good, lens, 4), EINVAL_); /* more than in flight */
	CHECK_EQ(used_idx(&v), 0);
	CHECK_EQ(v.q.inflight, 3);
	/* one index update covers the whole batch, in order */
	CHECK_EQ(virtq_push_batch(&v.q, good, lens, 3), 0);
	CHECK_EQ(used_idx(&v), 3);
	CHECK_EQ(v.q.inflight, 0);
	for (uint16_t i = 0; i < 3; i++) {
		uint32_t id, len;
		used_elem(&v, i, &id, &len);
		CHECK_EQ(id, good[i]);
		CHECK_EQ(len, lens[i]);
	}
	CHECK_EQ(virtq_push_batch(&v.q, good, lens, 1), EINVAL_); /* already returned */
	drv_fini(&v);
}

TEST(signal_without_event_idx)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	CHECK_EQ(cycle_one(&v, &c, 0), 0);
	CHECK(virtq_should_signal(&v.q));
	CHECK(!virtq_should_signal(&v.q)); /* nothing new */
	vf_put16(&v.mem, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	CHECK_EQ(cycle_one(&v, &c, 1), 0);
	CHECK(!virtq_should_signal(&v.q));
	vf_put16(&v.mem, AVAIL_GPA, 0);
	CHECK(virtq_should_signal(&v.q));
	/* used_event is ignored without EVENT_IDX */
	set_used_event(&v, 100);
	CHECK_EQ(cycle_one(&v, &c, 2), 0);
	CHECK(virtq_should_signal(&v.q));
	drv_fini(&v);
}

TEST(signal_with_event_idx)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 8, F_EVENT_IDX), 0);
	/* first push: always signal (no previous state) */
	CHECK_EQ(cycle_one(&v, &c, 0), 0);
	CHECK(virtq_should_signal(&v.q));
	CHECK(!virtq_should_signal(&v.q));
	/* NO_INTERRUPT is ignored with EVENT_IDX: only used_event counts */
	vf_put16(&v.mem, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	set_used_event(&v, 1); /* interrupt when entry 1 is used: idx 1 -> 2 */
	CHECK_EQ(cycle_one(&v, &c, 1), 0); /* used idx 2 */
	CHECK(virtq_should_signal(&v.q));
	set_used_event(&v, 4);
	CHECK_EQ(cycle_one(&v, &c, 2), 0); /* 3 */
	CHECK(!virtq_should_signal(&v.q));
	CHECK_EQ(cycle_one(&v, &c, 3), 0); /* 4 */
	CHECK(!virtq_should_signal(&v.q));
	CHECK_EQ(cycle_one(&v, &c, 4), 0); /* 5: entry 4 used */
	CHECK(virtq_should_signal(&v.q));
	CHECK_EQ(cycle_one(&v, &c, 5), 0); /* 6 */
	CHECK(!virtq_should_signal(&v.q)); /* event behind */
	/* several pushes in one batch crossing used_event */
	set_used_event(&v, 7);
	CHECK_EQ(cycle_one(&v, &c, 6), 0);
	CHECK_EQ(cycle_one(&v, &c, 7), 0);
	CHECK_EQ(cycle_one(&v, &c, 0), 0); /* 9 */
	CHECK(virtq_should_signal(&v.q));
	drv_fini(&v);
}

TEST(signal_with_event_idx_wraps)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 4, F_EVENT_IDX), 0);
	/* run the indices up to 0xfffe (the driver wants no interrupts) */
	set_used_event(&v, 0xffff);
	int fails = 0;
	for (uint32_t i = 0; i < 0xfffe; i++)
		if (cycle_one(&v, &c, (uint16_t)(i & 3)))
			fails++;
	CHECK_EQ(fails, 0);
	CHECK_EQ(v.q.used_idx, 0xfffe);
	CHECK_EQ(v.q.last_avail, 0xfffe);
	CHECK(virtq_should_signal(&v.q)); /* first check ever */
	/* used_event 0xffff: signal when idx goes 0xffff -> 0x0000 */
	CHECK_EQ(cycle_one(&v, &c, 2), 0); /* 0xffff */
	CHECK(!virtq_should_signal(&v.q));
	CHECK_EQ(cycle_one(&v, &c, 3), 0); /* 0x0000 */
	CHECK_EQ(v.q.used_idx, 0);
	CHECK(virtq_should_signal(&v.q));
	/* a batch across the wrap: 0x0000 -> 0x0003 with used_event 0x0001 */
	set_used_event(&v, 1);
	for (uint16_t i = 0; i < 3; i++)
		CHECK_EQ(cycle_one(&v, &c, i), 0);
	CHECK(virtq_should_signal(&v.q));
	/* used_event far behind (just below the wrap) never signals */
	set_used_event(&v, 0xfff0);
	CHECK_EQ(cycle_one(&v, &c, 3), 0);
	CHECK(!virtq_should_signal(&v.q));
	drv_fini(&v);
}

TEST(enable_notify)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 8, F_EVENT_IDX), 0);
	vf_put16(&v.mem, USED_GPA + 4 + 8 * 8, 0x1234);
	CHECK(!virtq_enable_notify(&v.q));
	CHECK_EQ(avail_event(&v), 0);
	CHECK_EQ(cycle_one(&v, &c, 0), 0);
	CHECK_EQ(cycle_one(&v, &c, 1), 0);
	CHECK(!virtq_enable_notify(&v.q));
	CHECK_EQ(avail_event(&v), 2);
	drv_desc(&v, 2, BUF_GPA, 16, 0, 0);
	drv_avail(&v, 2);
	CHECK(virtq_enable_notify(&v.q)); /* raced: pop again */
	drv_fini(&v);

	/* without EVENT_IDX avail_event is not written */
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	vf_put16(&v.mem, USED_GPA + 4 + 8 * 8, 0x1234);
	CHECK_EQ(cycle_one(&v, &c, 0), 0);
	CHECK(!virtq_enable_notify(&v.q));
	CHECK_EQ(avail_event(&v), 0x1234);
	drv_avail(&v, 0);
	CHECK(virtq_enable_notify(&v.q));
	drv_fini(&v);
}

TEST(reset_forgets_state)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 8, F_EVENT_IDX | F_INDIRECT), 0);
	drv_desc(&v, 0, BUF_GPA, 16, 0, 0);
	drv_avail(&v, 0);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	virtq_reset(&v.q);
	CHECK(!v.q.active);
	CHECK(!v.q.event_idx && !v.q.indirect);
	CHECK_EQ(v.q.inflight, 0);
	CHECK_EQ(v.q.last_avail, 0);
	CHECK_EQ(v.q.used_idx, 0);
	CHECK(v.q.desc == NULL && v.q.avail == NULL && v.q.used == NULL);
	/* geometry is the transport's */
	CHECK_EQ(v.q.size, 8);
	CHECK_EQ(v.q.desc_gpa, DESC_GPA);
	CHECK_EQ(v.q.used_gpa, USED_GPA);
	CHECK_EQ(virtq_pop(&v.q, &c), 0);
	CHECK_EQ(virtq_push(&v.q, 0, 0), EINVAL_);
	CHECK(!virtq_should_signal(&v.q));
	CHECK(!virtq_enable_notify(&v.q));
	/* reactivated it starts from index 0 again */
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), 0);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.head, 0);
	drv_fini(&v);
}

/* ---- copy helpers ---- */

TEST(chain_read_write_across_segments)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	uint8_t *g = hva(&v, BUF_GPA);
	for (int i = 0; i < 0x400; i++)
		g[i] = (uint8_t)i;
	/* readable: [0x000, 3) [0x100, 5) [0x200, 1); writable: [0x300, 4) [0x380, 6) */
	drv_desc(&v, 0, BUF_GPA, 3, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(&v, 1, BUF_GPA + 0x100, 5, VIRTQ_DESC_F_NEXT, 2);
	drv_desc(&v, 2, BUF_GPA + 0x200, 1, VIRTQ_DESC_F_NEXT, 3);
	drv_desc(&v, 3, BUF_GPA + 0x300, 4, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 4);
	drv_desc(&v, 4, BUF_GPA + 0x380, 6, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 0);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.read_len, 9);
	CHECK_EQ(c.write_len, 10);

	uint8_t buf[32];
	memset(buf, 0xee, sizeof(buf));
	CHECK_EQ(virtq_chain_read(&c, 0, buf, sizeof(buf)), 9);
	static const uint8_t all[9] = {0x00, 0x01, 0x02, 0x00, 0x01, 0x02, 0x03, 0x04, 0x00};
	CHECK(memcmp(buf, all, 9) == 0);
	CHECK_EQ(buf[9], 0xee);
	memset(buf, 0xee, sizeof(buf));
	CHECK_EQ(virtq_chain_read(&c, 2, buf, 4), 4); /* spans segments 0 and 1 */
	CHECK(memcmp(buf, all + 2, 4) == 0);
	CHECK_EQ(buf[4], 0xee);
	CHECK_EQ(virtq_chain_read(&c, 8, buf, 4), 1);
	CHECK_EQ(buf[0], 0x00);
	CHECK_EQ(virtq_chain_read(&c, 9, buf, 4), 0);
	CHECK_EQ(virtq_chain_read(&c, 0xffffffffu, buf, 4), 0);
	CHECK_EQ(virtq_chain_read(&c, 3, buf, 0), 0);

	static const uint8_t src[12] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5,
					0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab};
	CHECK_EQ(virtq_chain_write(&c, 2, src, 3), 3); /* spans both writable segs */
	CHECK(memcmp(g + 0x300, "\x00\x01\xa0\xa1", 4) == 0);
	CHECK_EQ(g[0x380], 0xa2);
	CHECK_EQ(g[0x381], 0x81);
	CHECK_EQ(virtq_chain_write(&c, 0, src, sizeof(src)), 10);
	CHECK(memcmp(g + 0x300, src, 4) == 0);
	CHECK(memcmp(g + 0x380, src + 4, 6) == 0);
	CHECK_EQ(g[0x386], 0x86); /* nothing past the segment */
	CHECK_EQ(g[0x304], 0x04);
	CHECK_EQ(virtq_chain_write(&c, 10, src, 1), 0);
	/* readable buffers are never written */
	CHECK_EQ(g[0x000], 0x00);
	CHECK_EQ(g[0x100], 0x00);
	CHECK_EQ(g[0x200], 0x00);
	drv_fini(&v);
}

TEST(chain_helpers_on_one_direction_chains)
{
	struct drv v;
	struct virtq_chain c;
	uint8_t buf[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	drv_desc(&v, 0, BUF_GPA, 8, 0, 0);
	drv_avail(&v, 0);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(virtq_chain_write(&c, 0, buf, 8), 0); /* no writable part */
	CHECK_EQ(hva(&v, BUF_GPA)[0], 0);
	drv_desc(&v, 1, BUF_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 1);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(virtq_chain_read(&c, 0, buf, 8), 0); /* no readable part */
	CHECK_EQ(virtq_chain_write(&c, 0, buf, 8), 8);
	CHECK_EQ(hva(&v, BUF_GPA)[7], 8);
	drv_fini(&v);
}

/* ---- re-reading a held chain at restore (virtq_chain_reread) ---- */

/* Everything of @q a re-read must leave as it was. */
struct q_marks {
	uint16_t last_avail, used_idx, signalled_used;
	uint32_t inflight;
	uint8_t map[VIRTQ_MAX_SIZE / 8];
	uint8_t used[64];
};

static void q_mark(struct drv *v, struct q_marks *m)
{
	memset(m, 0, sizeof(*m)); /* padding too: compared whole */
	m->last_avail = v->q.last_avail;
	m->used_idx = v->q.used_idx;
	m->signalled_used = v->q.signalled_used;
	m->inflight = v->q.inflight;
	memcpy(m->map, v->q.inflight_map, sizeof(m->map));
	memcpy(m->used, hva(v, v->q.used_gpa), sizeof(m->used));
}

static bool q_unchanged(struct drv *v, const struct q_marks *m)
{
	struct q_marks now;
	q_mark(v, &now);
	return !memcmp(m, &now, sizeof(now));
}

static bool same_chain(const struct virtq_chain *a, const struct virtq_chain *b)
{
	if (a->head != b->head || a->nsegs != b->nsegs || a->nread != b->nread ||
	    a->read_len != b->read_len || a->write_len != b->write_len)
		return false;
	for (uint16_t i = 0; i < a->nsegs; i++)
		if (a->segs[i].hva != b->segs[i].hva || a->segs[i].len != b->segs[i].len)
			return false;
	return true;
}

TEST(chain_reread_gives_the_popped_chain_and_moves_nothing)
{
	struct drv v;
	struct virtq_chain c, again;
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	drv_desc(&v, 1, BUF_GPA + 0x800, 4, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 1);
	drv_desc(&v, 5, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	drv_desc(&v, 2, BUF_GPA + 0x100, 8, VIRTQ_DESC_F_NEXT, 7);
	drv_desc(&v, 7, BUF_GPA + 0x200, 32, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 5);
	drv_desc(&v, 3, BUF_GPA + 0x400, 64, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 3); /* available, not popped */
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.head, 5);
	/* the slot the chain came from means nothing to a re-read */
	vf_put16(&v.mem, AVAIL_GPA + 4 + 2, 6);
	struct q_marks m;
	q_mark(&v, &m);
	memset(&again, 0xa5, sizeof(again));
	CHECK_EQ(virtq_chain_reread(&v.q, 5, &again), 0);
	CHECK(same_chain(&c, &again));
	CHECK_EQ(again.nsegs, 3);
	CHECK_EQ(again.nread, 2);
	CHECK_EQ(again.read_len, 24);
	CHECK_EQ(again.write_len, 32);
	CHECK(q_unchanged(&v, &m));
	/* again, and the other chain in flight: same answers, still nothing moved */
	CHECK_EQ(virtq_chain_reread(&v.q, 5, &again), 0);
	CHECK(same_chain(&c, &again));
	CHECK_EQ(virtq_chain_reread(&v.q, 1, &again), 0);
	CHECK_EQ(again.head, 1);
	CHECK_EQ(again.write_len, 4);
	CHECK(q_unchanged(&v, &m));
	/* the queue carries on where it was: chain 3 is next, then both push */
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(c.head, 3);
	CHECK_EQ(virtq_push(&v.q, 5, 0), 0);
	CHECK_EQ(virtq_push(&v.q, 1, 0), 0);
	CHECK_EQ(virtq_push(&v.q, 3, 0), 0);
	CHECK_EQ(v.q.inflight, 0);
	drv_fini(&v);
}

/* The chain the next tests hold: head 0, readable 0 -> writable 1. */
static void two_seg_chain(struct drv *v)
{
	drv_desc(v, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(v, 1, BUF_GPA + 0x100, 16, VIRTQ_DESC_F_WRITE, 0);
}

/* A queue of 8 holding chain 0 (two_seg_chain), popped into @c; the queue
 * as it is then in @m. */
static int hold_two_seg_chain(struct drv *v, struct virtq_chain *c, struct q_marks *m)
{
	if (drv_setup(v, 8, 0))
		return -1;
	two_seg_chain(v);
	drv_avail(v, 0);
	if (virtq_pop(&v->q, c) != 1)
		return -1;
	q_mark(v, m);
	return 0;
}

TEST(chain_reread_refuses_heads_not_held)
{
	struct drv v;
	struct virtq_chain c;
	struct q_marks m;
	CHECK_EQ(hold_two_seg_chain(&v, &c, &m), 0);
	/* out of range, then valid but never popped */
	static const uint16_t bad[] = {8, 9, 0xff, VIRTQ_MAX_SIZE, 0xffff, 1, 7};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_EQ(virtq_chain_reread(&v.q, bad[i], &c), EINVAL_);
	CHECK(q_unchanged(&v, &m));
	CHECK_EQ(virtq_chain_reread(&v.q, 0, &c), 0);
	/* pushed: no longer held */
	CHECK_EQ(virtq_push(&v.q, 0, 0), 0);
	CHECK_EQ(virtq_chain_reread(&v.q, 0, &c), EINVAL_);
	/* a queue that is not active has nothing in flight */
	virtq_reset(&v.q);
	CHECK_EQ(virtq_chain_reread(&v.q, 0, &c), EINVAL_);
	drv_fini(&v);
}

TEST(chain_reread_refuses_a_chain_the_guest_rewrote)
{
	struct drv v;
	struct virtq_chain c;
	struct q_marks m;
	CHECK_EQ(hold_two_seg_chain(&v, &c, &m), 0);
	struct {
		uint16_t i;
		uint64_t addr;
		uint32_t len;
		uint16_t flags, next;
		const char *what;
	} bad[] = {
		{1, BUF_GPA + 0x100, 0, VIRTQ_DESC_F_WRITE, 0, "zero length"},
		{1, MEM_SIZE - 8, 16, VIRTQ_DESC_F_WRITE, 0, "past the end of RAM"},
		{1, UINT64_MAX - 7, 16, VIRTQ_DESC_F_WRITE, 0, "wrapping 2^64"},
		{1, BUF_GPA + 0x100, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0, "a cycle"},
		{1, BUF_GPA + 0x100, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 8, "next out of range"},
		{0, BUF_GPA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1,
		 "readable after writable"},
		{1, BUF_GPA + 0x10000, 16, VIRTQ_DESC_F_INDIRECT, 0, "INDIRECT not negotiated"},
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		/* the good chain with one descriptor broken (for the
		 * writable head, the one after it made readable) */
		two_seg_chain(&v);
		if (bad[k].i == 0)
			drv_desc(&v, 1, BUF_GPA + 0x100, 16, 0, 0);
		drv_desc(&v, bad[k].i, bad[k].addr, bad[k].len, bad[k].flags, bad[k].next);
		int r = virtq_chain_reread(&v.q, 0, &c);
		if (r != -EIO)
			printf("  expected -EIO for %s, got %d\n", bad[k].what, r);
		CHECK_EQ(r, EIO_);
		CHECK(q_unchanged(&v, &m));
	}
	/* put back as it was: it passes again */
	two_seg_chain(&v);
	CHECK_EQ(virtq_chain_reread(&v.q, 0, &c), 0);
	CHECK_EQ(c.nsegs, 2);
	CHECK_EQ(c.read_len, 16);
	CHECK_EQ(c.write_len, 16);
	CHECK(q_unchanged(&v, &m));
	drv_fini(&v);
}

TEST(chain_reread_follows_indirect_tables_only_if_negotiated)
{
	struct drv v;
	struct virtq_chain c, again;
	uint64_t table = BUF_GPA + 0x10000;
	CHECK_EQ(drv_setup(&v, 8, F_INDIRECT), 0);
	drv_desc(&v, 4, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 6);
	drv_desc(&v, 6, table, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	vf_desc(&v.mem, table, 0, BUF_GPA + 0x100, 20, VIRTQ_DESC_F_NEXT, 1);
	vf_desc(&v.mem, table, 1, BUF_GPA + 0x200, 30, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 4);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	struct q_marks m;
	q_mark(&v, &m);
	CHECK_EQ(virtq_chain_reread(&v.q, 4, &again), 0);
	CHECK(same_chain(&c, &again));
	CHECK_EQ(again.nsegs, 3);
	CHECK_EQ(again.read_len, 36);
	CHECK_EQ(again.write_len, 30);
	/* the table checked as pop checks it */
	vf_desc(&v.mem, table, 1, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	CHECK_EQ(virtq_chain_reread(&v.q, 4, &again), EIO_); /* nested */
	vf_desc(&v.mem, table, 1, BUF_GPA + 0x200, 30, VIRTQ_DESC_F_NEXT, 0);
	CHECK_EQ(virtq_chain_reread(&v.q, 4, &again), EIO_); /* a cycle */
	vf_desc(&v.mem, table, 1, BUF_GPA + 0x200, 30, VIRTQ_DESC_F_WRITE, 0);
	CHECK_EQ(virtq_chain_reread(&v.q, 4, &again), 0);
	CHECK(q_unchanged(&v, &m));
	/* the same queue restored as one that did not negotiate INDIRECT_DESC */
	struct virtq_state st;
	virtq_state_get(&v.q, &st);
	CHECK_EQ(st.indirect, 1);
	st.indirect = 0;
	CHECK_EQ(virtq_state_put(&v.q, &st, &v.mem), 0);
	CHECK_EQ(v.q.inflight, 1);
	CHECK_EQ(virtq_chain_reread(&v.q, 4, &again), EIO_);
	st.indirect = 1;
	CHECK_EQ(virtq_state_put(&v.q, &st, &v.mem), 0);
	CHECK_EQ(virtq_chain_reread(&v.q, 4, &again), 0);
	CHECK(same_chain(&c, &again));
	drv_fini(&v);
}

/* ---- dirty tracking (guest_mem.h) ---- */

/* Page numbers marked dirty, at most @max. */
static int dirty_list(const struct drv *v, uint64_t *out, int max)
{
	int n = 0;
	for (uint64_t p = 0; p < MEM_SIZE / 4096; p++)
		if (guest_mem_is_dirty(&v->mem, p) && n < max)
			out[n++] = p;
	return n;
}

TEST(dirty_activation_marks_the_used_ring_pop_the_writable_buffers)
{
	struct drv v;
	struct virtq_chain c;
	CHECK_EQ(drv_init_mem(&v, MEM_SIZE, MEM_SIZE, MEM_SIZE), 0);
	CHECK_EQ(guest_mem_track_dirty(&v.mem), 0);
	/* 256 entries: the used ring is 6 + 8 * 256 bytes, over a page */
	drv_geometry(&v, 256, DESC_GPA, AVAIL_GPA, USED_GPA + 0xff0);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), 0);
	uint64_t got[8];
	CHECK_EQ(dirty_list(&v, got, 8), 2);
	CHECK_EQ(got[0], (USED_GPA >> 12));
	CHECK_EQ(got[1], (USED_GPA >> 12) + 1);
	/* readable 64 bytes, writable 200 across a page boundary, writable
	 * 8 more in another page */
	drv_desc(&v, 0, BUF_GPA, 64, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(&v, 1, 0x200000 - 100, 200, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
	drv_desc(&v, 2, 0x280008, 8, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 0);
	guest_mem_dirty_clear(&v.mem);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(dirty_list(&v, got, 8), 3);
	CHECK_EQ(got[0], 0x1ff);
	CHECK_EQ(got[1], 0x200);
	CHECK_EQ(got[2], 0x280);
	/* a chain refused by the checks marks nothing */
	guest_mem_dirty_clear(&v.mem);
	drv_desc(&v, 3, 0x300000, 0, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 3);
	CHECK_EQ(virtq_pop(&v.q, &c), EIO_);
	CHECK_EQ(guest_mem_dirty_count(&v.mem), 0);
	drv_fini(&v);
}

TEST(dirty_mark_covers_the_used_ring_and_only_chains_still_in_flight)
{
	struct drv v;
	struct virtq_chain c, scratch;
	CHECK_EQ(drv_init_mem(&v, MEM_SIZE, MEM_SIZE, MEM_SIZE), 0);
	CHECK_EQ(guest_mem_track_dirty(&v.mem), 0);
	drv_geometry(&v, 8, DESC_GPA, AVAIL_GPA, USED_GPA);
	/* inactive: nothing */
	virtq_mark_dirty(&v.q, &scratch);
	CHECK_EQ(guest_mem_dirty_count(&v.mem), 0);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), 0);
	drv_desc(&v, 0, 0x200000, 16, VIRTQ_DESC_F_WRITE, 0);
	drv_desc(&v, 1, 0x210000, 16, VIRTQ_DESC_F_WRITE, 0);
	drv_desc(&v, 2, 0x220000, 16, 0, 0); /* readable only */
	drv_avail(&v, 0);
	drv_avail(&v, 1);
	drv_avail(&v, 2);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(virtq_pop(&v.q, &c), 1);
	CHECK_EQ(virtq_push(&v.q, 0, 16), 0);
	guest_mem_dirty_clear(&v.mem);
	virtq_mark_dirty(&v.q, &scratch);
	uint64_t got[8];
	CHECK_EQ(dirty_list(&v, got, 8), 2);
	CHECK_EQ(got[0], USED_GPA >> 12);
	CHECK_EQ(got[1], 0x210); /* chain 1; chain 0 was pushed, chain 2 writes nothing */
	CHECK_EQ(v.q.inflight, 2);
	/* the guest rewrote a chain it lent the device: everything */
	drv_desc(&v, 1, 0x210000, 0, VIRTQ_DESC_F_WRITE, 0);
	guest_mem_dirty_clear(&v.mem);
	virtq_mark_dirty(&v.q, &scratch);
	CHECK_EQ(guest_mem_dirty_count(&v.mem), MEM_SIZE / 4096);
	drv_fini(&v);
	/* tracking off: nothing to mark, nothing breaks */
	CHECK_EQ(drv_setup(&v, 8, 0), 0);
	drv_desc(&v, 0, 0x200000, 16, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 0);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	virtq_mark_dirty(&v.q, &scratch);
	CHECK_EQ(guest_mem_dirty_count(&v.mem), 0);
	drv_fini(&v);
}

/* A migration without track_dirty_pages: only its own bitmap is on, and
 * pops and the re-marks at each pass must reach it (they did not: the
 * checks asked for snapshot tracking, so a migrated guest lost what the
 * devices wrote after the first pass, its used rings among them). */
TEST(dirty_marks_reach_a_migration_without_snapshot_tracking)
{
	struct drv v;
	struct virtq_chain c, scratch;
	CHECK_EQ(drv_init_mem(&v, MEM_SIZE, MEM_SIZE, MEM_SIZE), 0);
	CHECK(!guest_mem_tracking(&v.mem));
	CHECK_EQ(guest_mem_mig_start(&v.mem), 0);
	CHECK(guest_mem_marking(&v.mem));
	drv_geometry(&v, 8, DESC_GPA, AVAIL_GPA, USED_GPA);
	CHECK_EQ(virtq_activate(&v.q, &v.mem, 0), 0);
	uint64_t words = guest_mem_bitmap_words(&v.mem);
	uint64_t *bits = calloc((size_t)words, sizeof(*bits));
	CHECK(bits != NULL);
	CHECK_EQ(guest_mem_mig_take(&v.mem, bits), 1); /* the used ring, at activation */
	CHECK(bits[(USED_GPA >> 12) / 64] & (1ull << ((USED_GPA >> 12) % 64)));
	drv_desc(&v, 0, 0x200000, 16, VIRTQ_DESC_F_WRITE, 0);
	drv_avail(&v, 0);
	CHECK_EQ(virtq_pop(&v.q, &c), 1);
	memset(bits, 0, (size_t)words * sizeof(*bits));
	CHECK_EQ(guest_mem_mig_take(&v.mem, bits), 1); /* the popped buffer */
	CHECK(bits[0x200 / 64] & (1ull << (0x200 % 64)));
	/* a pass: the used ring and the chain in flight again */
	virtq_mark_dirty(&v.q, &scratch);
	memset(bits, 0, (size_t)words * sizeof(*bits));
	CHECK_EQ(guest_mem_mig_take(&v.mem, bits), 2);
	CHECK(bits[0x200 / 64] & (1ull << (0x200 % 64)));
	CHECK(bits[(USED_GPA >> 12) / 64] & (1ull << ((USED_GPA >> 12) % 64)));
	guest_mem_mig_stop(&v.mem);
	CHECK(!guest_mem_marking(&v.mem));
	free(bits);
	drv_fini(&v);
}

TEST_MAIN()
