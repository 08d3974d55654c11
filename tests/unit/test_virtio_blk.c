/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk tests: the device on the in-memory back end, a fake transport
 * that counts interrupts, and a small in-test "driver" that writes
 * descriptors and avail entries into guest memory and reads the used ring.
 * Back-end completions are run explicitly (blk_mem_complete) to play the
 * event loop, so ordering and in-flight states are deterministic.
 */
#include "../../src/devices/virtio/virtio_blk.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sys/eventfd.h>

#include "../../src/event/loop.h"
#include "../../src/util/bytes.h"
#include "loop_runner.h"
#include "test.h"
#include "snap_test.h"
#include "virtio_fake.h"

#define MIB (1ull << 20)
#define MEM_SIZE (4 * MIB)
#define DESC_GPA 0x10000ull
#define AVAIL_GPA 0x20000ull
#define USED_GPA 0x30000ull
#define SMALL_GPA 0x100000ull /* headers, status bytes, payloads: bump-allocated */
#define DATA_GPA 0x200000ull  /* data buffers, chosen by each test */
#define DISK_SIZE (1 * MIB)   /* 2048 sectors */
#define QSIZE 128

#define F(bit) (1ull << (bit))

struct tdrv {
	struct guest_mem mem;
	struct blk_mem m;
	struct virtio_blk b;
	struct vf_drv drv;
	uint64_t bump;
};

static struct virtio_dev *dev(struct tdrv *t)
{
	return &t->b.vdev;
}

/* Negotiate @features (VERSION_1 added) and bring queue 0 up. */
static void drv_up(struct tdrv *t, uint64_t features)
{
	vf_drv_up(&t->drv, features | F(VIRTIO_F_VERSION_1));
}

static uint64_t default_features(struct tdrv *t)
{
	return dev(t)->device_features & ~F(VIRTIO_F_EVENT_IDX);
}

/* Guest memory, back end @be (NULL: the in-memory one, capacity @cap),
 * device on @loop (NULL: none, passes are not budgeted); queue up with
 * @features (0: everything offered except EVENT_IDX). */
static void setup_be(struct tdrv *t, struct blk_backend *be, bool ro, unsigned cap,
		     const char *id, uint64_t features, struct loop *loop)
{
	memset(t, 0, sizeof(*t));
	if (guest_mem_init(&t->mem, MEM_SIZE, MEM_SIZE, MEM_SIZE))
		abort();
	if (blk_mem_init(&t->m, DISK_SIZE, ro, cap))
		abort();
	char err[128];
	if (virtio_blk_init(&t->b, be ? be : &t->m.be, false, id, &t->mem, loop, err,
			    sizeof(err))) {
		printf("init: %s\n", err);
		abort();
	}
	t->bump = SMALL_GPA;
	vf_queue_signals = vf_config_signals = 0;
	vf_drv_init(&t->drv, &t->mem, dev(t), QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
	drv_up(t, features ? features : default_features(t));
}

static void setup_full(struct tdrv *t, bool ro, unsigned cap, const char *id, uint64_t features)
{
	setup_be(t, NULL, ro, cap, id, features, NULL);
}

static void setup(struct tdrv *t, bool ro)
{
	setup_full(t, ro, 64, "test-disk", 0);
}

static void teardown(struct tdrv *t)
{
	virtio_blk_destroy(&t->b);
	blk_destroy(&t->m.be);
	guest_mem_destroy(&t->mem);
}

static uint64_t alloc_small(struct tdrv *t, uint32_t len)
{
	uint64_t g = t->bump;
	t->bump += (len + 15) & ~15u;
	if (t->bump > DATA_GPA)
		abort();
	return g;
}

static unsigned run_io(struct tdrv *t)
{
	return blk_mem_complete(&t->m, UINT_MAX);
}

static uint64_t header(struct tdrv *t, uint32_t type, uint64_t sector)
{
	uint64_t g = alloc_small(t, 16);
	uint8_t h[16] = {0};
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
	memcpy(vf_hva(&t->mem, g, 16), h, 16);
	return g;
}

static uint64_t status_byte(struct tdrv *t)
{
	uint64_t g = alloc_small(t, 1);
	*vf_hva(&t->mem, g, 1) = 0xee;
	return g;
}

/* A standard 3-descriptor request: header, data (if @len), status.
 * *@st receives the status gpa. */
static uint16_t req(struct tdrv *t, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
		    bool data_write, uint64_t *st)
{
	struct vf_seg s[3];
	int n = 0;
	s[n++] = (struct vf_seg){header(t, type, sector), 16, false};
	if (len)
		s[n++] = (struct vf_seg){data, len, data_write};
	*st = status_byte(t);
	s[n++] = (struct vf_seg){*st, 1, true};
	return vf_chain(&t->drv, s, n);
}

static uint8_t status_at(struct tdrv *t, uint64_t st)
{
	return *vf_hva(&t->mem, st, 1);
}

/* One segment of a discard / write-zeroes payload. */
struct dwz {
	uint64_t sector;
	uint32_t num;
	uint32_t flags;
};

static uint16_t dwz_req(struct tdrv *t, uint32_t type, const struct dwz *segs, int n, uint32_t extra,
			uint64_t *st)
{
	uint32_t len = (uint32_t)n * 16 + extra;
	uint64_t g = alloc_small(t, len ? len : 1);
	uint8_t *p = vf_hva(&t->mem, g, len ? len : 1);
	memset(p, 0, len ? len : 1);
	for (int i = 0; i < n; i++) {
		memcpy(p + 16 * i, &segs[i].sector, 8);
		memcpy(p + 16 * i + 8, &segs[i].num, 4);
		memcpy(p + 16 * i + 12, &segs[i].flags, 4);
	}
	return req(t, type, 0, g, len, false, st);
}

static void fill_disk(struct tdrv *t, uint8_t v)
{
	memset(t->m.data, v, DISK_SIZE);
}

static bool disk_is(struct tdrv *t, uint64_t off, uint64_t len, uint8_t v)
{
	for (uint64_t i = 0; i < len; i++)
		if (t->m.data[off + i] != v)
			return false;
	return true;
}

/* ---- tests ---- */

TEST(features_and_identity)
{
	struct tdrv t;
	setup(&t, false);
	uint64_t f = dev(&t)->device_features;
	CHECK(f & F(VIRTIO_BLK_F_SEG_MAX));
	CHECK(f & F(VIRTIO_BLK_F_BLK_SIZE));
	CHECK(f & F(VIRTIO_BLK_F_FLUSH));
	CHECK(f & F(VIRTIO_BLK_F_DISCARD));
	CHECK(f & F(VIRTIO_BLK_F_WRITE_ZEROES));
	CHECK(!(f & F(VIRTIO_BLK_F_RO)));
	CHECK(!(f & F(VIRTIO_BLK_F_MQ)));
	CHECK(f & F(VIRTIO_F_VERSION_1));
	CHECK_EQ(dev(&t)->device_id, VIRTIO_ID_BLOCK);
	CHECK_EQ(dev(&t)->num_queues, 1);
	CHECK_EQ(dev(&t)->queue_max, 256);
	CHECK(dev(&t)->vqs[0].active);
	CHECK_EQ(t.b.capacity, DISK_SIZE / 512);
	teardown(&t);

	setup(&t, true);
	f = dev(&t)->device_features;
	CHECK(f & F(VIRTIO_BLK_F_RO));
	CHECK(f & F(VIRTIO_BLK_F_FLUSH));
	CHECK(!(f & F(VIRTIO_BLK_F_DISCARD)));
	CHECK(!(f & F(VIRTIO_BLK_F_WRITE_ZEROES)));
	teardown(&t);
}

TEST(init_rejects_bad_id)
{
	struct guest_mem mem;
	struct blk_mem m;
	struct virtio_blk b;
	char err[128] = "";
	CHECK_EQ(guest_mem_init(&mem, MEM_SIZE, MEM_SIZE, MEM_SIZE), 0);
	CHECK_EQ(blk_mem_init(&m, DISK_SIZE, false, 8), 0);
	CHECK_EQ(virtio_blk_init(&b, &m.be, false, "123456789012345678901", &mem, NULL, err,
				 sizeof(err)),
		 (unsigned long long)-EINVAL);
	CHECK(strstr(err, "longer than 20") != NULL);
	CHECK_EQ(virtio_blk_init(&b, &m.be, false, "bad\nid", &mem, NULL, err, sizeof(err)),
		 (unsigned long long)-EINVAL);
	CHECK(strstr(err, "printable") != NULL);
	/* exactly 20 is fine */
	CHECK_EQ(virtio_blk_init(&b, &m.be, false, "12345678901234567890", &mem, NULL, err,
				 sizeof(err)),
		 0);
	virtio_blk_destroy(&b);
	blk_destroy(&m.be);
	/* a disk smaller than a sector */
	CHECK_EQ(blk_mem_init(&m, 100, false, 8), 0);
	CHECK_EQ(virtio_blk_init(&b, &m.be, false, NULL, &mem, NULL, err, sizeof(err)),
		 (unsigned long long)-EINVAL);
	blk_destroy(&m.be);
	guest_mem_destroy(&mem);
}

TEST(write_then_read)
{
	struct tdrv t;
	setup(&t, false);
	/* OUT: 8 KiB at sector 8, data split over two descriptors */
	uint8_t *src = vf_hva(&t.mem, DATA_GPA, 8192);
	for (int i = 0; i < 8192; i++)
		src[i] = (uint8_t)(i * 7 + 1);
	uint64_t st = status_byte(&t);
	struct vf_seg s[] = {{header(&t, VIRTIO_BLK_T_OUT, 8), 16, false},
			     {DATA_GPA, 3000, false},
			     {DATA_GPA + 3000, 8192 - 3000, false},
			     {st, 1, true}};
	uint16_t head = vf_chain(&t.drv, s, 4);
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_idx(&t.drv), 0); /* not before the back end completes */
	CHECK_EQ(status_at(&t, st), 0xee);
	CHECK_EQ(t.m.outstanding, 1);
	CHECK_EQ(run_io(&t), 1);
	CHECK_EQ(vf_used_idx(&t.drv), 1);
	CHECK_EQ(vf_used_id(&t.drv, 0), head);
	CHECK_EQ(vf_used_len(&t.drv, 0), 1);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	CHECK(memcmp(t.m.data + 8 * 512, src, 8192) == 0);
	CHECK_EQ(vf_queue_signals, 1);

	/* IN: read it back; data and status share the last descriptor */
	uint64_t dst = DATA_GPA + 0x10000;
	memset(vf_hva(&t.mem, dst, 8193), 0xcc, 8193);
	struct vf_seg r[] = {{header(&t, VIRTIO_BLK_T_IN, 8), 16, false},
			     {dst, 100, true},
			     {dst + 100, 8193 - 100, true}};
	head = vf_chain(&t.drv, r, 3);
	vf_notify(&t.drv);
	CHECK_EQ(run_io(&t), 1);
	CHECK_EQ(vf_used_idx(&t.drv), 2);
	CHECK_EQ(vf_used_id(&t.drv, 1), head);
	CHECK_EQ(vf_used_len(&t.drv, 1), 8193);
	CHECK(memcmp(vf_hva(&t.mem, dst, 8192), src, 8192) == 0);
	CHECK_EQ(*vf_hva(&t.mem, dst + 8192, 1), VIRTIO_BLK_S_OK);

	/* OUT with header and data in one readable descriptor */
	uint64_t hd = DATA_GPA + 0x20000;
	uint8_t h[16] = {VIRTIO_BLK_T_OUT};
	uint64_t sec = 100;
	memcpy(h + 8, &sec, 8);
	memcpy(vf_hva(&t.mem, hd, 16), h, 16);
	memset(vf_hva(&t.mem, hd + 16, 512), 0x5a, 512);
	st = status_byte(&t);
	struct vf_seg w2[] = {{hd, 16 + 512, false}, {st, 1, true}};
	vf_chain(&t.drv, w2, 2);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	CHECK(disk_is(&t, 100 * 512, 512, 0x5a));
	/* the last sector is reachable */
	uint64_t st2;
	req(&t, VIRTIO_BLK_T_IN, DISK_SIZE / 512 - 1, DATA_GPA, 512, true, &st2);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK_EQ(status_at(&t, st2), VIRTIO_BLK_S_OK);
	/* zero-length IN completes without I/O */
	req(&t, VIRTIO_BLK_T_IN, 0, 0, 0, true, &st2);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 0);
	CHECK_EQ(status_at(&t, st2), VIRTIO_BLK_S_OK);
	CHECK(!dev(&t)->broken);
	CHECK_EQ(t.b.inflight, 0);
	teardown(&t);
}

TEST(many_in_flight_complete_out_of_batch)
{
	struct tdrv t;
	setup(&t, false);
	uint64_t st[8];
	for (int i = 0; i < 8; i++) {
		memset(vf_hva(&t.mem, DATA_GPA + 512ull * i, 512), 0x10 + i, 512);
		req(&t, VIRTIO_BLK_T_OUT, (uint64_t)i, DATA_GPA + 512ull * i, 512, false, &st[i]);
	}
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 8);
	CHECK_EQ(t.b.inflight, 8);
	CHECK_EQ(blk_mem_complete(&t.m, 3), 3);
	CHECK_EQ(vf_used_idx(&t.drv), 3);
	CHECK_EQ(status_at(&t, st[3]), 0xee);
	CHECK_EQ(run_io(&t), 5);
	CHECK_EQ(vf_used_idx(&t.drv), 8);
	for (int i = 0; i < 8; i++) {
		CHECK_EQ(status_at(&t, st[i]), VIRTIO_BLK_S_OK);
		CHECK(disk_is(&t, 512ull * i, 512, (uint8_t)(0x10 + i)));
	}
	CHECK_EQ(t.b.inflight, 0);
	teardown(&t);
}

TEST(inflight_bounded_by_backend_capacity)
{
	struct tdrv t;
	setup_full(&t, false, 4, NULL, 0);
	CHECK_EQ(t.b.max_inflight, 4);
	uint64_t st[12];
	for (int i = 0; i < 12; i++)
		req(&t, VIRTIO_BLK_T_IN, (uint64_t)i, DATA_GPA + 512ull * i, 512, true, &st[i]);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 4);
	CHECK(t.b.slots_full);
	/* each completion frees a slot and the device takes the next chain
	 * without a new notification */
	unsigned done = 0;
	for (int round = 0; round < 20 && done < 12; round++) {
		done += blk_mem_complete(&t.m, 1);
		CHECK(t.m.outstanding <= 4);
	}
	CHECK_EQ(done, 12);
	CHECK_EQ(vf_used_idx(&t.drv), 12);
	for (int i = 0; i < 12; i++)
		CHECK_EQ(status_at(&t, st[i]), VIRTIO_BLK_S_OK);
	teardown(&t);
}

TEST(flush_waits_for_backend_and_errors_stick)
{
	struct tdrv t;
	setup(&t, false);
	uint64_t stw, stf;
	memset(vf_hva(&t.mem, DATA_GPA, 512), 0x77, 512);
	req(&t, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 512, false, &stw);
	uint16_t fh = req(&t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &stf);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 2);
	CHECK_EQ(blk_mem_complete(&t.m, 1), 1); /* the write */
	CHECK_EQ(status_at(&t, stw), VIRTIO_BLK_S_OK);
	CHECK_EQ(status_at(&t, stf), 0xee); /* flush not answered before fdatasync */
	CHECK_EQ(vf_used_idx(&t.drv), 1);
	CHECK_EQ(blk_mem_complete(&t.m, 1), 1);
	CHECK_EQ(status_at(&t, stf), VIRTIO_BLK_S_OK);
	CHECK_EQ(vf_used_id(&t.drv, 1), fh);
	CHECK_EQ(vf_used_len(&t.drv, 1), 1);
	CHECK_EQ(t.m.ops_done[BLK_OP_FLUSH], 1);

	/* a failed fdatasync fails this flush and every later one */
	t.m.fail_ops = 1u << BLK_OP_FLUSH;
	t.m.fail_errno = EIO;
	t.m.fail_count = 1;
	req(&t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &stf);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK_EQ(status_at(&t, stf), VIRTIO_BLK_S_IOERR);
	req(&t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &stf);
	vf_notify(&t.drv);
	CHECK_EQ(run_io(&t), 0);
	CHECK_EQ(status_at(&t, stf), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(t.m.ops_done[BLK_OP_FLUSH], 2);
	/* writes still work */
	req(&t, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 512, false, &stw);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK_EQ(status_at(&t, stw), VIRTIO_BLK_S_OK);
	/* a flush carrying data is malformed */
	req(&t, VIRTIO_BLK_T_FLUSH, 0, DATA_GPA, 512, false, &stf);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, stf), VIRTIO_BLK_S_IOERR);
	teardown(&t);
}

TEST(get_id)
{
	struct tdrv t;
	setup(&t, false);
	uint64_t st;
	memset(vf_hva(&t.mem, DATA_GPA, 64), 0xcc, 64);
	uint16_t h = req(&t, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, 20, true, &st);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 0); /* answered synchronously */
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	CHECK_EQ(vf_used_id(&t.drv, 0), h);
	CHECK_EQ(vf_used_len(&t.drv, 0), 21); /* the id and the status right after it */
	uint8_t want[20] = "test-disk";
	CHECK(memcmp(vf_hva(&t.mem, DATA_GPA, 20), want, 20) == 0);
	CHECK_EQ(*vf_hva(&t.mem, DATA_GPA + 20, 1), 0xcc);
	CHECK_EQ(vf_queue_signals, 1);

	/* shorter buffer: truncated, nothing beyond it written */
	memset(vf_hva(&t.mem, DATA_GPA, 64), 0xcc, 64);
	req(&t, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, 4, true, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	CHECK(memcmp(vf_hva(&t.mem, DATA_GPA, 4), "test", 4) == 0);
	CHECK_EQ(*vf_hva(&t.mem, DATA_GPA + 4, 1), 0xcc);
	/* huge buffer: only 20 bytes written */
	memset(vf_hva(&t.mem, DATA_GPA, 64), 0xcc, 64);
	req(&t, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, 1 << 20, true, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	CHECK_EQ(*vf_hva(&t.mem, DATA_GPA + 20, 1), 0xcc);
	/* no buffer, or a readable one: IOERR */
	req(&t, VIRTIO_BLK_T_GET_ID, 0, 0, 0, true, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	req(&t, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, 20, false, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	teardown(&t);

	/* default id */
	setup_full(&t, false, 8, NULL, 0);
	memset(vf_hva(&t.mem, DATA_GPA, 20), 0xcc, 20);
	req(&t, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, 20, true, &st);
	vf_notify(&t.drv);
	uint8_t def[20] = "visor-disk";
	CHECK(memcmp(vf_hva(&t.mem, DATA_GPA, 20), def, 20) == 0);
	teardown(&t);
}

TEST(discard_and_write_zeroes)
{
	struct tdrv t;
	setup(&t, false);
	const uint64_t cap = DISK_SIZE / 512;
	uint64_t st;
	fill_disk(&t, 0xaa);

	/* two discard segments */
	struct dwz d2[] = {{2, 3, 0}, {10, 1, 0}};
	dwz_req(&t, VIRTIO_BLK_T_DISCARD, d2, 2, 0, &st);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 1); /* segments run one after the other */
	CHECK_EQ(blk_mem_complete(&t.m, 1), 1);
	CHECK_EQ(status_at(&t, st), 0xee);
	CHECK_EQ(t.m.outstanding, 1);
	CHECK_EQ(blk_mem_complete(&t.m, 1), 1);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	CHECK(disk_is(&t, 0, 2 * 512, 0xaa));
	CHECK(disk_is(&t, 2 * 512, 3 * 512, 0));
	CHECK(disk_is(&t, 5 * 512, 5 * 512, 0xaa));
	CHECK(disk_is(&t, 10 * 512, 512, 0));
	CHECK(disk_is(&t, 11 * 512, 512, 0xaa));
	CHECK_EQ(t.m.ops_done[BLK_OP_DISCARD], 2);

	/* write zeroes, with and without unmap, up to the last sector */
	struct dwz z[] = {{cap - 4, 4, VIRTIO_BLK_WZ_F_UNMAP}, {20, 2, 0}};
	dwz_req(&t, VIRTIO_BLK_T_WRITE_ZEROES, z, 2, 0, &st);
	vf_notify(&t.drv);
	run_io(&t);
	run_io(&t);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	CHECK(disk_is(&t, (cap - 4) * 512, 4 * 512, 0));
	CHECK(disk_is(&t, 20 * 512, 2 * 512, 0));
	CHECK(disk_is(&t, 22 * 512, 512, 0xaa));

	fill_disk(&t, 0xaa);
	unsigned before = t.m.ops_done[BLK_OP_DISCARD] + t.m.ops_done[BLK_OP_WRITE_ZEROES];
	/* out of range: past the end, overflowing, empty, too large */
	struct dwz bad[][1] = {{{cap - 1, 2, 0}},
			       {{cap, 1, 0}},
			       {{UINT64_MAX, 1, 0}},
			       {{UINT64_MAX / 512 + 1, 1, 0}},
			       {{0, 0, 0}},
			       {{0, VIRTIO_BLK_DWZ_MAX_SECTORS + 1, 0}}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		dwz_req(&t, VIRTIO_BLK_T_DISCARD, bad[i], 1, 0, &st);
		vf_notify(&t.drv);
		CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
		dwz_req(&t, VIRTIO_BLK_T_WRITE_ZEROES, bad[i], 1, 0, &st);
		vf_notify(&t.drv);
		CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	}
	/* a bad segment after a good one: nothing is done at all */
	struct dwz mixed[] = {{0, 1, 0}, {cap, 1, 0}};
	dwz_req(&t, VIRTIO_BLK_T_WRITE_ZEROES, mixed, 2, 0, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	/* flags: unknown bits UNSUPP, unmap on discard UNSUPP (§5.2.6.2) */
	struct dwz fl[] = {{0, 1, 2}};
	dwz_req(&t, VIRTIO_BLK_T_WRITE_ZEROES, fl, 1, 0, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_UNSUPP);
	struct dwz um[] = {{0, 1, VIRTIO_BLK_WZ_F_UNMAP}};
	dwz_req(&t, VIRTIO_BLK_T_DISCARD, um, 1, 0, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_UNSUPP);
	/* too many segments, a partial segment, no segment */
	struct dwz many[VIRTIO_BLK_DWZ_MAX_SEG + 1];
	for (int i = 0; i <= VIRTIO_BLK_DWZ_MAX_SEG; i++)
		many[i] = (struct dwz){(uint64_t)i, 1, 0};
	dwz_req(&t, VIRTIO_BLK_T_DISCARD, many, VIRTIO_BLK_DWZ_MAX_SEG + 1, 0, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	struct dwz one[] = {{0, 1, 0}};
	dwz_req(&t, VIRTIO_BLK_T_DISCARD, one, 1, 8, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	dwz_req(&t, VIRTIO_BLK_T_DISCARD, one, 0, 0, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(run_io(&t), 0);
	CHECK_EQ(t.m.ops_done[BLK_OP_DISCARD] + t.m.ops_done[BLK_OP_WRITE_ZEROES], before);
	CHECK(disk_is(&t, 0, DISK_SIZE, 0xaa));

	/* exactly the maximum number of segments works */
	dwz_req(&t, VIRTIO_BLK_T_DISCARD, many, VIRTIO_BLK_DWZ_MAX_SEG, 0, &st);
	vf_notify(&t.drv);
	for (int i = 0; i < VIRTIO_BLK_DWZ_MAX_SEG; i++)
		CHECK_EQ(blk_mem_complete(&t.m, 1), 1);
	CHECK_EQ(t.m.outstanding, 0);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	CHECK(disk_is(&t, 0, VIRTIO_BLK_DWZ_MAX_SEG * 512, 0));

	/* the file system cannot punch holes: discard is only a hint,
	 * write-zeroes must fail */
	t.m.discard_unsupported = true;
	dwz_req(&t, VIRTIO_BLK_T_DISCARD, one, 1, 0, &st);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	dwz_req(&t, VIRTIO_BLK_T_WRITE_ZEROES, one, 1, 0, &st);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	/* a host error in the middle of a multi-segment request */
	t.m.discard_unsupported = false;
	t.m.fail_ops = 1u << BLK_OP_WRITE_ZEROES;
	t.m.fail_errno = EIO;
	t.m.fail_count = 1;
	dwz_req(&t, VIRTIO_BLK_T_WRITE_ZEROES, z, 2, 0, &st);
	vf_notify(&t.drv);
	CHECK_EQ(run_io(&t), 1); /* the second segment is not attempted */
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	CHECK(!dev(&t)->broken);
	CHECK_EQ(t.b.inflight, 0);
	teardown(&t);
}

/* The used length of a discard or write-zeroes is its status byte, also
 * in a request slot that last served a read (it once kept the read's
 * length: more than the chain's writable bytes; found by fuzz_virtio_blk). */
TEST(discard_used_length_is_the_status_byte)
{
	struct tdrv t;
	setup_full(&t, false, 1, "test-disk", 0); /* one slot: every request reuses it */
	uint64_t st;
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 4096, true, &st);
	vf_notify(&t.drv);
	CHECK_EQ(run_io(&t), 1);
	CHECK_EQ(vf_used_idx(&t.drv), 1);
	CHECK_EQ(vf_used_len(&t.drv, 0), 4097);
	struct dwz one[] = {{8, 8, 0}};
	for (uint32_t type = VIRTIO_BLK_T_DISCARD; type <= VIRTIO_BLK_T_WRITE_ZEROES; type += 2) {
		uint16_t used = vf_used_idx(&t.drv);
		dwz_req(&t, type, one, 1, 0, &st);
		vf_notify(&t.drv);
		CHECK_EQ(run_io(&t), 1);
		CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
		CHECK_EQ(vf_used_idx(&t.drv), used + 1);
		CHECK_EQ(vf_used_len(&t.drv, used), 1);
	}
	teardown(&t);
}

TEST(discard_not_negotiated_is_unsupported)
{
	struct tdrv t;
	setup_full(&t, false, 8, NULL, F(VIRTIO_BLK_F_FLUSH) | F(VIRTIO_BLK_F_BLK_SIZE));
	CHECK(dev(&t)->vqs[0].active);
	uint64_t st;
	struct dwz one[] = {{0, 1, 0}};
	dwz_req(&t, VIRTIO_BLK_T_DISCARD, one, 1, 0, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_UNSUPP);
	dwz_req(&t, VIRTIO_BLK_T_WRITE_ZEROES, one, 1, 0, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_UNSUPP);
	CHECK_EQ(t.m.outstanding, 0);
	teardown(&t);
}

TEST(read_only_disk)
{
	struct tdrv t;
	setup(&t, true);
	memset(t.m.data, 0x3c, DISK_SIZE);
	uint64_t st;
	memset(vf_hva(&t.mem, DATA_GPA, 4096), 0x99, 4096);
	req(&t, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 4096, false, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	struct dwz one[] = {{0, 8, 0}};
	dwz_req(&t, VIRTIO_BLK_T_DISCARD, one, 1, 0, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	dwz_req(&t, VIRTIO_BLK_T_WRITE_ZEROES, one, 1, 0, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(run_io(&t), 0);
	CHECK_EQ(t.m.ops_done[BLK_OP_WRITE] + t.m.ops_done[BLK_OP_DISCARD] +
			 t.m.ops_done[BLK_OP_WRITE_ZEROES],
		 0);
	CHECK(disk_is(&t, 0, DISK_SIZE, 0x3c));
	/* reads and flushes work */
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 4096, true, &st);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	CHECK_EQ(*vf_hva(&t.mem, DATA_GPA + 4095, 1), 0x3c);
	req(&t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &st);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	CHECK_EQ(vf_used_idx(&t.drv), 5);
	teardown(&t);
}

TEST(malformed_requests_get_ioerr)
{
	struct tdrv t;
	setup(&t, false);
	fill_disk(&t, 0x42);
	const uint64_t cap = DISK_SIZE / 512;
	uint64_t st;
	uint16_t ui = 0;

	/* header shorter than 16 bytes */
	st = status_byte(&t);
	struct vf_seg s1[] = {{header(&t, VIRTIO_BLK_T_IN, 0), 8, false}, {DATA_GPA, 512, true},
			      {st, 1, true}};
	vf_chain(&t.drv, s1, 3);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(vf_used_len(&t.drv, ui), 0); /* only the (non-leading) status written */
	ui++;

	/* no writable byte at all: returned untouched, used length 0 */
	struct vf_seg s2[] = {{header(&t, VIRTIO_BLK_T_IN, 0), 16, false}, {DATA_GPA, 512, false}};
	memset(vf_hva(&t.mem, DATA_GPA, 512), 0x11, 512);
	vf_chain(&t.drv, s2, 2);
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_idx(&t.drv), ++ui);
	CHECK_EQ(vf_used_len(&t.drv, ui - 1), 0);
	CHECK_EQ(*vf_hva(&t.mem, DATA_GPA + 511, 1), 0x11);

	/* IN with readable data after the header (wrong direction) */
	st = status_byte(&t);
	struct vf_seg s3[] = {{header(&t, VIRTIO_BLK_T_IN, 0), 16, false}, {DATA_GPA, 512, false},
			      {st, 1, true}};
	vf_chain(&t.drv, s3, 3);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	ui++;

	/* OUT whose data is writable (wrong direction) */
	req(&t, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 512, true, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	ui++;

	/* OUT whose status byte sits in a larger writable buffer */
	uint64_t big = alloc_small(&t, 2);
	memset(vf_hva(&t.mem, big, 2), 0xee, 2);
	struct vf_seg s5[] = {{header(&t, VIRTIO_BLK_T_OUT, 0), 16, false}, {DATA_GPA, 512, false},
			      {big, 2, true}};
	vf_chain(&t.drv, s5, 3);
	vf_notify(&t.drv);
	CHECK_EQ(*vf_hva(&t.mem, big + 1, 1), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(*vf_hva(&t.mem, big, 1), 0xee);
	ui++;

	/* length not a multiple of 512 */
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 511, true, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	req(&t, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 1000, false, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	ui += 2;

	/* sector ranges: past the end, straddling it, overflowing */
	static const uint64_t bad_sectors[] = {cap, cap - 1, UINT64_MAX, UINT64_MAX / 512 + 1,
					       UINT64_MAX / 512};
	for (size_t i = 0; i < sizeof(bad_sectors) / sizeof(bad_sectors[0]); i++) {
		req(&t, VIRTIO_BLK_T_IN, bad_sectors[i], DATA_GPA, 1024, true, &st);
		vf_notify(&t.drv);
		CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
		req(&t, VIRTIO_BLK_T_OUT, bad_sectors[i], DATA_GPA, 1024, false, &st);
		vf_notify(&t.drv);
		CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
		ui += 2;
	}

	/* unknown and unimplemented types */
	static const uint32_t types[] = {2, 3, VIRTIO_BLK_T_GET_LIFETIME,
					 VIRTIO_BLK_T_SECURE_ERASE, 0xffffffff};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		req(&t, types[i], 0, DATA_GPA, 512, true, &st);
		vf_notify(&t.drv);
		CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_UNSUPP);
		ui++;
	}
	CHECK_EQ(vf_used_idx(&t.drv), ui);
	CHECK_EQ(run_io(&t), 0);
	CHECK_EQ(t.m.ops_done[BLK_OP_READ] + t.m.ops_done[BLK_OP_WRITE], 0);
	CHECK(disk_is(&t, 0, DISK_SIZE, 0x42));
	CHECK(!dev(&t)->broken);
	CHECK_EQ(vf_config_signals, 0);

	/* the device still works */
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	teardown(&t);
}

TEST(ring_violation_breaks_device)
{
	struct tdrv t;
	setup(&t, false);
	/* head index out of range */
	vf_put16(&t.mem, AVAIL_GPA + 4, 0xffff);
	vf_put16(&t.mem, AVAIL_GPA + 2, 1);
	vf_notify(&t.drv);
	CHECK(dev(&t)->broken);
	CHECK(dev(&t)->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	CHECK_EQ(vf_config_signals, 1);
	CHECK_EQ(vf_used_idx(&t.drv), 0);
	CHECK_EQ(run_io(&t), 0);
	/* after a reset the device works again */
	pthread_mutex_lock(&dev(&t)->lock);
	virtio_dev_set_status(dev(&t), 0);
	pthread_mutex_unlock(&dev(&t)->lock);
	CHECK_EQ(dev(&t)->status, 0);
	memset(vf_hva(&t.mem, AVAIL_GPA, 0x1000), 0, 0x1000);
	memset(vf_hva(&t.mem, USED_GPA, 0x1000), 0, 0x1000);
	drv_up(&t, default_features(&t));
	uint64_t st;
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	teardown(&t);
}

TEST(host_errors_fail_only_that_request)
{
	struct tdrv t;
	setup(&t, false);
	uint64_t st[3];
	static const int errs[] = {EIO, ENOSPC, 0 /* short transfer */};
	for (int e = 0; e < 3; e++) {
		for (int i = 0; i < 3; i++) {
			memset(vf_hva(&t.mem, DATA_GPA + 512ull * i, 512), 0x20 + i, 512);
			req(&t, VIRTIO_BLK_T_OUT, (uint64_t)(8 * i), DATA_GPA + 512ull * i, 512,
			    false, &st[i]);
		}
		vf_notify(&t.drv);
		CHECK_EQ(blk_mem_complete(&t.m, 1), 1);
		t.m.fail_ops = 1u << BLK_OP_WRITE;
		t.m.fail_errno = errs[e];
		t.m.fail_count = 1;
		CHECK_EQ(run_io(&t), 2);
		CHECK_EQ(status_at(&t, st[0]), VIRTIO_BLK_S_OK);
		CHECK_EQ(status_at(&t, st[1]), VIRTIO_BLK_S_IOERR);
		CHECK_EQ(status_at(&t, st[2]), VIRTIO_BLK_S_OK);
	}
	/* read errors: EIO and a short read */
	for (int e = 0; e < 2; e++) {
		t.m.fail_ops = 1u << BLK_OP_READ;
		t.m.fail_errno = e ? 0 : EIO;
		t.m.fail_count = 1;
		req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 1024, true, &st[0]);
		req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA + 4096, 1024, true, &st[1]);
		vf_notify(&t.drv);
		run_io(&t);
		CHECK_EQ(status_at(&t, st[0]), VIRTIO_BLK_S_IOERR);
		CHECK_EQ(status_at(&t, st[1]), VIRTIO_BLK_S_OK);
		CHECK_EQ(vf_used_len(&t.drv, (uint16_t)(vf_used_idx(&t.drv) - 2)), 0);
		CHECK_EQ(vf_used_len(&t.drv, (uint16_t)(vf_used_idx(&t.drv) - 1)), 1025);
	}
	CHECK(!dev(&t)->broken);
	CHECK_EQ(t.b.m.execute_fails, 5);
	teardown(&t);
}

TEST(reset_with_requests_in_flight)
{
	struct tdrv t;
	setup(&t, false);
	fill_disk(&t, 0x61);
	uint64_t st[3];
	for (int i = 0; i < 2; i++)
		req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA + 4096ull * i, 4096, true, &st[i]);
	req(&t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &st[2]);
	vf_notify(&t.drv);
	CHECK_EQ(t.b.inflight, 3);
	CHECK_EQ(blk_mem_complete(&t.m, 1), 1); /* one completes before the reset */
	CHECK_EQ(vf_used_idx(&t.drv), 1);
	int signals_before = vf_queue_signals;

	pthread_mutex_lock(&dev(&t)->lock);
	virtio_dev_set_status(dev(&t), 0);
	pthread_mutex_unlock(&dev(&t)->lock);
	/* not done yet: the status still reads non-zero (§2.4) */
	CHECK(dev(&t)->reset_pending);
	CHECK(virtio_dev_get_status(dev(&t)) != 0);
	/* status writes are refused meanwhile */
	pthread_mutex_lock(&dev(&t)->lock);
	virtio_dev_set_status(dev(&t), VIRTIO_STATUS_ACKNOWLEDGE);
	pthread_mutex_unlock(&dev(&t)->lock);
	CHECK(dev(&t)->reset_pending);

	/* snapshot what the device may write: used ring and status bytes */
	uint8_t used_before[4 + 8 * QSIZE];
	memcpy(used_before, vf_hva(&t.mem, USED_GPA, sizeof(used_before)), sizeof(used_before));
	CHECK_EQ(blk_mem_complete(&t.m, 1), 1);
	CHECK(dev(&t)->reset_pending); /* one still in flight */
	CHECK_EQ(blk_mem_complete(&t.m, 1), 1);
	CHECK(!dev(&t)->reset_pending);
	CHECK_EQ(virtio_dev_get_status(dev(&t)), 0);
	CHECK(memcmp(used_before, vf_hva(&t.mem, USED_GPA, sizeof(used_before)),
		     sizeof(used_before)) == 0);
	CHECK_EQ(status_at(&t, st[1]), 0xee);
	CHECK_EQ(status_at(&t, st[2]), 0xee);
	CHECK_EQ(vf_queue_signals, signals_before);
	CHECK_EQ(t.b.inflight, 0);
	CHECK(!dev(&t)->vqs[0].active);

	/* a reset with nothing in flight is immediate, and the device
	 * comes back */
	memset(vf_hva(&t.mem, AVAIL_GPA, 0x1000), 0, 0x1000);
	memset(vf_hva(&t.mem, USED_GPA, 0x1000), 0, 0x1000);
	drv_up(&t, default_features(&t));
	pthread_mutex_lock(&dev(&t)->lock);
	virtio_dev_set_status(dev(&t), 0);
	pthread_mutex_unlock(&dev(&t)->lock);
	CHECK(!dev(&t)->reset_pending);
	CHECK_EQ(dev(&t)->status, 0);
	drv_up(&t, default_features(&t));
	uint64_t s;
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &s);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK_EQ(status_at(&t, s), VIRTIO_BLK_S_OK);
	CHECK_EQ(vf_used_idx(&t.drv), 1);
	teardown(&t);
}

TEST(reset_while_throttled)
{
	struct tdrv t;
	setup_full(&t, false, 2, NULL, 0);
	uint64_t st[6];
	for (int i = 0; i < 6; i++)
		req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA + 512ull * i, 512, true, &st[i]);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 2);
	pthread_mutex_lock(&dev(&t)->lock);
	virtio_dev_set_status(dev(&t), 0);
	pthread_mutex_unlock(&dev(&t)->lock);
	CHECK(dev(&t)->reset_pending);
	/* completions after the reset do not take further chains */
	CHECK_EQ(run_io(&t), 2);
	CHECK_EQ(t.m.outstanding, 0);
	CHECK(!dev(&t)->reset_pending);
	CHECK_EQ(vf_used_idx(&t.drv), 0);
	for (int i = 0; i < 6; i++)
		CHECK_EQ(status_at(&t, st[i]), 0xee);
	teardown(&t);
}

TEST(config_space_every_width_and_offset)
{
	struct tdrv t;
	setup(&t, false);
	uint8_t want[128] = {0};
	uint64_t cap = DISK_SIZE / 512;
	memcpy(want + 0, &cap, 8);
	uint32_t v = VIRTIO_BLK_SEG_MAX;
	memcpy(want + 12, &v, 4);
	v = 512;
	memcpy(want + 20, &v, 4);
	uint16_t nq = 1;
	memcpy(want + 34, &nq, 2);
	v = VIRTIO_BLK_DWZ_MAX_SECTORS;
	memcpy(want + 36, &v, 4);
	memcpy(want + 48, &v, 4);
	v = VIRTIO_BLK_DWZ_MAX_SEG;
	memcpy(want + 40, &v, 4);
	memcpy(want + 52, &v, 4);
	v = VIRTIO_BLK_DISCARD_ALIGNMENT;
	memcpy(want + 44, &v, 4);
	want[56] = 1;
	static const uint32_t widths[] = {1, 2, 4, 8};
	struct virtio_dev *d = dev(&t);
	for (uint32_t off = 0; off < 120; off++) {
		for (int w = 0; w < 4; w++) {
			uint8_t buf[8];
			memset(buf, 0xa5, sizeof(buf));
			d->ops->config_read(d, off, buf, widths[w]);
			CHECK(memcmp(buf, want + off, widths[w]) == 0);
			/* writes are ignored */
			uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
			d->ops->config_write(d, off, junk, widths[w]);
		}
	}
	for (uint32_t off = 0; off < 64; off++) {
		uint8_t b;
		d->ops->config_read(d, off, &b, 1);
		CHECK_EQ(b, want[off]);
	}
	/* far past the end, up to the top of the offset range */
	uint8_t buf[8];
	memset(buf, 0xa5, 8);
	d->ops->config_read(d, 0xfffffffcu, buf, 8);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(buf[i], 0);
	teardown(&t);

	/* read-only: no discard limits */
	setup(&t, true);
	d = dev(&t);
	for (uint32_t off = 36; off < 64; off++) {
		uint8_t b = 0xa5;
		d->ops->config_read(d, off, &b, 1);
		CHECK_EQ(b, 0);
	}
	uint64_t c;
	d->ops->config_read(d, 0, &c, 8);
	CHECK_EQ(c, DISK_SIZE / 512);
	teardown(&t);
}

TEST(notify_before_driver_ok_is_ignored)
{
	struct tdrv t;
	memset(&t, 0, sizeof(t));
	CHECK_EQ(guest_mem_init(&t.mem, MEM_SIZE, MEM_SIZE, MEM_SIZE), 0);
	CHECK_EQ(blk_mem_init(&t.m, DISK_SIZE, false, 8), 0);
	char err[128];
	CHECK_EQ(virtio_blk_init(&t.b, &t.m.be, false, NULL, &t.mem, NULL, err, sizeof(err)), 0);
	vf_drv_init(&t.drv, &t.mem, dev(&t), QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
	t.bump = SMALL_GPA;
	uint64_t st;
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 0);
	CHECK_EQ(status_at(&t, st), 0xee);
	teardown(&t);
}

/* ---- per-pass budget (regression: one notification, 42,326 requests) ---- */

/* A back end that refuses every operation at once (the host cannot take
 * it: the request completes with IOERR without any I/O), and calls @hook
 * first.  The hook plays a guest vCPU running concurrently with the
 * device: by the time the device submits this request it has seen the
 * used elements pushed so far and re-posted a request for each. */
struct refusing_be {
	struct blk_backend be;
	void (*hook)(void *ctx);
	void *ctx;
	unsigned submits;
};

static int refusing_submit(struct blk_backend *be, struct blk_io *io)
{
	struct refusing_be *r = (struct refusing_be *)be;
	r->submits++;
	if (r->hook)
		r->hook(r->ctx);
	return -EIO;
}

static const struct blk_backend_ops refusing_ops = {.submit = refusing_submit};

/* The storm driver: requests of three kinds that all complete during the
 * pass that pops them (IN refused by the host -> IOERR, GET_ID, an
 * unknown type -> UNSUPP), kept at STORM_OUTSTANDING in the ring: each
 * used element is answered with a new request of the same kind, until
 * @cap requests were posted. */
#define STORM_OUTSTANDING 42 /* 126 of the 128 descriptors */
struct storm {
	struct tdrv *t;
	unsigned posted, cap;
	uint16_t seen_used;
	uint64_t hdr[3], data, st;
};

static void storm_post(struct storm *s)
{
	struct tdrv *t = s->t;
	unsigned kind = s->posted % 3;
	struct vf_seg seg[3] = {{s->hdr[kind], 16, false},
				{s->data, kind == 1 ? 20 : 512, true},
				{s->st, 1, true}};
	vf_chain(&t->drv, seg, 3);
	s->posted++;
}

static void storm_hook(void *ctx)
{
	struct storm *s = ctx;
	uint16_t used = vf_used_idx(&s->t->drv);
	while (s->seen_used != used) {
		s->seen_used++;
		if (s->posted < s->cap)
			storm_post(s);
	}
}

static void storm_init(struct storm *s, struct tdrv *t, unsigned cap)
{
	*s = (struct storm){.t = t, .cap = cap};
	s->hdr[0] = header(t, VIRTIO_BLK_T_IN, 0);
	s->hdr[1] = header(t, VIRTIO_BLK_T_GET_ID, 0);
	s->hdr[2] = header(t, 0x7777, 0);
	s->data = DATA_GPA;
	s->st = status_byte(t);
	for (int i = 0; i < STORM_OUTSTANDING; i++)
		storm_post(s);
}

static int stop_events;

static void on_stop(struct loop *l, int fd, uint32_t events, void *ctx)
{
	uint64_t v;
	(void)!read(fd, &v, sizeof(v));
	stop_events++;
}

TEST(pass_is_budgeted_against_a_reposting_driver)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct refusing_be rb = {.be = {.ops = &refusing_ops,
					.size = DISK_SIZE,
					.capacity = 64,
					.name = "refusing"}};
	struct tdrv t;
	setup_be(&t, &rb.be, false, 64, NULL, 0, &lp);
	struct storm s;
	const unsigned cap = 3000;
	storm_init(&s, &t, cap);
	rb.hook = storm_hook;
	rb.ctx = &s;

	/* Another handler on the same loop (the VM's stop event). */
	int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(stop_fd >= 0);
	CHECK_EQ(loop_add(&lp, stop_fd, EPOLLIN, on_stop, NULL), 0);
	stop_events = 0;

	/* One notification: one bounded pass, and the rest is left to the
	 * loop (before the fix this pass processed all 3000 requests). */
	vf_notify(&t.drv);
	uint16_t done = vf_used_idx(&t.drv);
	CHECK(done > 0);
	CHECK(done <= VIRTIO_BLK_BUDGET);
	CHECK(s.posted < cap);
	CHECK(!dev(&t)->broken);

	/* The stop event fires now: the loop's next round serves it as well
	 * as the next pass of the disk. */
	uint64_t one = 1;
	CHECK_EQ(write(stop_fd, &one, sizeof(one)), sizeof(one));
	CHECK(loop_run_once(&lp, 0) >= 1);
	CHECK_EQ(stop_events, 1);
	uint16_t now = vf_used_idx(&t.drv);
	CHECK(now > done);
	CHECK(now - done <= VIRTIO_BLK_BUDGET);
	done = now;

	/* Each later round does at most one budget of work, until the
	 * driver stops re-posting and the ring runs dry. */
	int rounds = 1;
	while (vf_used_idx(&t.drv) != (uint16_t)cap && rounds < 1000) {
		CHECK(loop_run_once(&lp, 0) >= 1);
		rounds++;
		now = vf_used_idx(&t.drv);
		CHECK(now - done <= VIRTIO_BLK_BUDGET);
		done = now;
	}
	CHECK_EQ(vf_used_idx(&t.drv), (uint16_t)cap);
	CHECK(rounds >= (int)(cap / VIRTIO_BLK_BUDGET));
	CHECK_EQ(s.posted, cap);
	/* nothing left: no further wake-up, and the device still works */
	CHECK_EQ(loop_run_once(&lp, 0), 0);
	CHECK(!dev(&t)->broken);
	CHECK_EQ(*vf_hva(&t.mem, s.st, 1), VIRTIO_BLK_S_UNSUPP); /* the last was unknown */

	loop_del(&lp, stop_fd);
	close(stop_fd);
	teardown(&t);
	loop_destroy(&lp);
}

/* ---- rate limiting ---- */

#define MS 1000000ull

static uint64_t fake_now;

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return fake_now;
}

/* A device on a loop (not running: the test dispatches by hand) with a
 * limiter on the fake clock. */
static void setup_limited(struct tdrv *t, struct loop *lp, const struct rate_limiter_config *c)
{
	if (loop_init(lp))
		abort();
	setup_be(t, NULL, false, 64, NULL, 0, lp);
	fake_now = 1000 * MS;
	t->b.limiter_clock = fake_clock;
	CHECK_EQ(virtio_blk_set_rate_limiter(&t->b, c), 0);
	CHECK(t->b.limited);
}

static void teardown_limited(struct tdrv *t, struct loop *lp)
{
	teardown(t);
	loop_destroy(lp);
}

/* The limiter's timer fired: what the loop does. */
static void fire(struct tdrv *t, struct loop *lp)
{
	CHECK(loop_dispatch(lp, t->b.limiter.timer_fd));
}

TEST(rate_limiter_ops_hold_the_queue_until_the_timer)
{
	struct loop lp;
	struct tdrv t;
	struct rate_limiter_config c = {.ops = {.size = 2, .refill_time_ms = 1000}};
	setup_limited(&t, &lp, &c);
	uint64_t st[5];
	for (int i = 0; i < 5; i++)
		req(&t, VIRTIO_BLK_T_IN, (uint64_t)i, DATA_GPA + 512ull * i, 512, true, &st[i]);
	vf_notify(&t.drv);
	/* two go, the third is popped and held, the rest stay in the ring */
	CHECK_EQ(t.m.outstanding, 2);
	CHECK(t.b.held);
	CHECK_EQ(dev(&t)->vqs[0].last_avail, 3);
	CHECK(rate_limiter_is_blocked(&t.b.limiter));
	CHECK_EQ(t.b.limiter.wake_ns, fake_now + 500 * MS);
	CHECK_EQ(t.b.limiter.throttled_events, 1);
	CHECK_EQ(run_io(&t), 2);
	CHECK_EQ(vf_used_idx(&t.drv), 2);
	/* kicks meanwhile change nothing (the device lock is free) */
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 0);
	CHECK_EQ(dev(&t)->vqs[0].last_avail, 3);
	CHECK(pthread_mutex_trylock(&dev(&t)->lock) == 0);
	pthread_mutex_unlock(&dev(&t)->lock);
	/* a wake-up before the time (spurious) does not let it through */
	fake_now += 499 * MS;
	fire(&t, &lp);
	CHECK_EQ(t.m.outstanding, 0);
	CHECK(t.b.held);
	/* the timer at the right time: one more request */
	fake_now += 1 * MS;
	fire(&t, &lp);
	CHECK_EQ(t.m.outstanding, 1);
	CHECK(t.b.held);
	CHECK_EQ(dev(&t)->vqs[0].last_avail, 4);
	fake_now += 500 * MS;
	fire(&t, &lp);
	fake_now += 500 * MS;
	fire(&t, &lp);
	CHECK(!t.b.held);
	CHECK_EQ(run_io(&t), 3);
	CHECK_EQ(vf_used_idx(&t.drv), 5);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(status_at(&t, st[i]), VIRTIO_BLK_S_OK);
	CHECK(!dev(&t)->broken);
	teardown_limited(&t, &lp);
}

TEST(rate_limiter_bandwidth_counts_data_bytes)
{
	struct loop lp;
	struct tdrv t;
	/* 8 KiB per 100 ms, a one-time burst of 4 KiB */
	struct rate_limiter_config c = {
		.bandwidth = {.size = 8192, .one_time_burst = 4096, .refill_time_ms = 100}};
	setup_limited(&t, &lp, &c);
	uint64_t st[4];
	req(&t, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 4096, false, &st[0]); /* burst */
	req(&t, VIRTIO_BLK_T_IN, 8, DATA_GPA, 8192, true, &st[1]);   /* the budget */
	req(&t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &st[2]);         /* no bytes */
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st[3]);    /* waits */
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 3);
	CHECK(t.b.held);
	CHECK_EQ(t.b.limiter.wake_ns, fake_now + 100 * MS * 512 / 8192);
	run_io(&t);
	fake_now = t.b.limiter.wake_ns;
	fire(&t, &lp);
	CHECK(!t.b.held);
	run_io(&t);
	CHECK_EQ(vf_used_idx(&t.drv), 4);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(status_at(&t, st[i]), VIRTIO_BLK_S_OK);
	/* a request larger than the bucket goes once it is full */
	fake_now += 1000 * MS;
	uint64_t big;
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 64 * 1024, true, &big);
	vf_notify(&t.drv);
	CHECK_EQ(run_io(&t), 1);
	CHECK_EQ(status_at(&t, big), VIRTIO_BLK_S_OK);
	CHECK_EQ(t.b.limiter.bandwidth.debt, 64 * 1024 - 8192);
	teardown_limited(&t, &lp);
}

TEST(rate_limiter_update_takes_effect_at_once)
{
	struct loop lp;
	struct tdrv t;
	struct rate_limiter_config slow = {.ops = {.size = 1, .refill_time_ms = 3600 * 1000}};
	setup_limited(&t, &lp, &slow);
	uint64_t st[4];
	for (int i = 0; i < 4; i++)
		req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st[i]);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 1);
	CHECK(t.b.held);
	/* faster: the held request goes now, the next waits 10 ms */
	struct rate_limiter_config fast = {.ops = {.size = 2, .refill_time_ms = 20}};
	CHECK_EQ(virtio_blk_set_rate_limiter(&t.b, &fast), 0);
	CHECK_EQ(t.m.outstanding, 3);
	CHECK(t.b.held);
	CHECK_EQ(t.b.limiter.wake_ns, fake_now + 10 * MS);
	/* no limits at all: everything */
	struct rate_limiter_config none = {0};
	CHECK_EQ(virtio_blk_set_rate_limiter(&t.b, &none), 0);
	CHECK(!t.b.held);
	CHECK_EQ(t.m.outstanding, 4);
	CHECK_EQ(run_io(&t), 4);
	CHECK_EQ(vf_used_idx(&t.drv), 4);
	/* a spurious timer event afterwards is harmless */
	fire(&t, &lp);
	CHECK_EQ(vf_used_idx(&t.drv), 4);
	CHECK_EQ(virtio_blk_set_rate_limiter(&t.b, NULL), 0);
	teardown_limited(&t, &lp);
}

TEST(rate_limiter_needs_a_loop_and_survives_reset)
{
	struct tdrv t;
	setup(&t, false);
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = 1000}};
	struct rate_limiter_config none = {0};
	CHECK_EQ(virtio_blk_set_rate_limiter(&t.b, &c), (unsigned long long)-EINVAL);
	CHECK(!t.b.limited);
	CHECK_EQ(virtio_blk_set_rate_limiter(&t.b, &none), 0);
	teardown(&t);

	struct loop lp;
	setup_limited(&t, &lp, &c);
	uint64_t st[2];
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st[0]);
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st[1]);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK(t.b.held);
	/* a reset forgets the held chain; the driver starts over */
	pthread_mutex_lock(&dev(&t)->lock);
	virtio_dev_set_status(dev(&t), 0);
	pthread_mutex_unlock(&dev(&t)->lock);
	CHECK(!t.b.held);
	CHECK_EQ(status_at(&t, st[1]), 0xee);
	memset(vf_hva(&t.mem, AVAIL_GPA, 0x1000), 0, 0x1000);
	memset(vf_hva(&t.mem, USED_GPA, 0x1000), 0, 0x1000);
	drv_up(&t, default_features(&t));
	fake_now += 1000 * MS;
	fire(&t, &lp);
	uint64_t s2;
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &s2);
	vf_notify(&t.drv);
	run_io(&t);
	CHECK_EQ(status_at(&t, s2), VIRTIO_BLK_S_OK);
	CHECK_EQ(vf_used_idx(&t.drv), 1);
	teardown_limited(&t, &lp);
}

TEST(rate_limiter_real_timer_resumes_on_the_loop)
{
	/* The real clock and the real timerfd: 1 op per 5 ms; the loop
	 * waits for the timer, nothing spins (no timing threshold). */
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct tdrv t;
	setup_be(&t, NULL, false, 64, NULL, 0, &lp);
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = 5}};
	CHECK_EQ(virtio_blk_set_rate_limiter(&t.b, &c), 0);
	uint64_t st[4];
	for (int i = 0; i < 4; i++)
		req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st[i]);
	vf_notify(&t.drv);
	int rounds = 0;
	while (vf_used_idx(&t.drv) < 4 && rounds < 100) {
		run_io(&t);
		if (vf_used_idx(&t.drv) == 4)
			break;
		CHECK_EQ(loop_run_once(&lp, 10000), 1); /* the timer, nothing else */
		rounds++;
	}
	CHECK_EQ(vf_used_idx(&t.drv), 4);
	CHECK_EQ(rounds, 3);
	CHECK_EQ(t.b.limiter.throttled_events, 3);
	teardown(&t);
	loop_destroy(&lp);
}

/* ---- pause: quiesce / unquiesce ---- */

/* The used ring holds exactly the heads @want[0..n) from index @from on,
 * in that order, each once. */
static bool used_are(struct tdrv *t, uint16_t from, const uint16_t *want, int n)
{
	if ((uint16_t)(vf_used_idx(&t->drv) - from) != n)
		return false;
	for (int i = 0; i < n; i++)
		if (vf_used_id(&t->drv, (uint16_t)(from + i)) != want[i])
			return false;
	return true;
}

TEST(quiesce_completes_requests_in_flight_once)
{
	struct tdrv t;
	setup(&t, false);
	fill_disk(&t, 0x5d);
	uint64_t st[4];
	uint16_t h[4];
	for (int i = 0; i < 3; i++)
		h[i] = req(&t, VIRTIO_BLK_T_IN, (uint64_t)i, DATA_GPA + 512ull * i, 512, true, &st[i]);
	h[3] = req(&t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &st[3]);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 4);
	int signals = vf_queue_signals;
	virtio_blk_quiesce(&t.b);
	/* all four completed, pushed, signalled, on this thread */
	CHECK_EQ(t.m.outstanding, 0);
	CHECK_EQ(t.b.inflight, 0);
	CHECK(used_are(&t, 0, h, 4));
	for (int i = 0; i < 4; i++)
		CHECK_EQ(status_at(&t, st[i]), VIRTIO_BLK_S_OK);
	CHECK(*vf_hva(&t.mem, DATA_GPA + 1023, 1) == 0x5d);
	CHECK(vf_queue_signals > signals);
	/* nothing left to complete twice */
	CHECK_EQ(run_io(&t), 0);
	CHECK_EQ(vf_used_idx(&t.drv), 4);
	virtio_blk_unquiesce(&t.b);
	CHECK_EQ(vf_used_idx(&t.drv), 4);
	CHECK_EQ(t.m.outstanding, 0);
	/* quiescing an idle device returns at once */
	virtio_blk_quiesce(&t.b);
	virtio_blk_unquiesce(&t.b);
	teardown(&t);
}

TEST(requests_posted_while_quiesced_run_after_unquiesce)
{
	struct tdrv t;
	setup_full(&t, false, 2, NULL, 0); /* two slots: some wait in the ring */
	uint64_t st[6];
	uint16_t h[6];
	for (int i = 0; i < 3; i++)
		h[i] = req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA + 512ull * i, 512, true, &st[i]);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 2);
	CHECK(t.b.slots_full);
	virtio_blk_quiesce(&t.b);
	/* the two in flight completed; the third was not started */
	CHECK(used_are(&t, 0, h, 2));
	CHECK_EQ(t.m.outstanding, 0);
	CHECK_EQ(status_at(&t, st[2]), 0xee);
	/* the guest keeps posting and kicking (as a vCPU could have just
	 * before it was parked): nothing happens */
	for (int i = 3; i < 6; i++)
		h[i] = req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA + 512ull * i, 512, true, &st[i]);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 0);
	CHECK_EQ(vf_used_idx(&t.drv), 2);
	virtio_blk_unquiesce(&t.b);
	CHECK_EQ(t.m.outstanding, 2);
	for (int round = 0; round < 10 && vf_used_idx(&t.drv) < 6; round++)
		run_io(&t);
	CHECK(used_are(&t, 0, h, 6));
	for (int i = 0; i < 6; i++)
		CHECK_EQ(status_at(&t, st[i]), VIRTIO_BLK_S_OK);
	CHECK_EQ(run_io(&t), 0);
	teardown(&t);
}

TEST(quiesce_waits_for_every_segment_of_a_discard)
{
	struct tdrv t;
	setup(&t, false);
	fill_disk(&t, 0xaa);
	uint64_t st;
	struct dwz segs[] = {{0, 1, 0}, {8, 1, 0}, {16, 1, 0}};
	uint16_t h = dwz_req(&t, VIRTIO_BLK_T_DISCARD, segs, 3, 0, &st);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 1);
	virtio_blk_quiesce(&t.b);
	CHECK(used_are(&t, 0, &h, 1));
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	CHECK_EQ(t.m.ops_done[BLK_OP_DISCARD], 3);
	CHECK(disk_is(&t, 16 * 512, 512, 0));
	virtio_blk_unquiesce(&t.b);
	teardown(&t);
}

TEST(quiesce_gives_up_on_a_hung_disk)
{
	struct tdrv t;
	setup(&t, false);
	uint64_t st[2];
	uint16_t h[2];
	for (int i = 0; i < 2; i++)
		h[i] = req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st[i]);
	vf_notify(&t.drv);
	t.m.hang = true;
	t.b.quiesce_timeout_ms = 30;
	virtio_blk_quiesce(&t.b); /* returns (after ~30 ms) */
	CHECK_EQ(t.b.inflight, 2);
	CHECK_EQ(vf_used_idx(&t.drv), 0);
	/* the disk answers later: completed once each, from the "loop" */
	t.m.hang = false;
	CHECK_EQ(run_io(&t), 2);
	CHECK(used_are(&t, 0, h, 2));
	CHECK_EQ(run_io(&t), 0);
	virtio_blk_unquiesce(&t.b);
	CHECK_EQ(vf_used_idx(&t.drv), 2);
	teardown(&t);
}

TEST(quiesce_stops_deferred_passes_and_limiter_timers)
{
	/* a pass cut short by the budget: its continuation waits */
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct refusing_be rb = {.be = {.ops = &refusing_ops,
					.size = DISK_SIZE,
					.capacity = 64,
					.name = "refusing"}};
	struct tdrv t;
	setup_be(&t, &rb.be, false, 64, NULL, 0, &lp);
	struct storm s;
	storm_init(&s, &t, 1000);
	rb.hook = storm_hook;
	rb.ctx = &s;
	vf_notify(&t.drv);
	uint16_t before = vf_used_idx(&t.drv);
	CHECK_EQ(before, VIRTIO_BLK_BUDGET);
	virtio_blk_quiesce(&t.b);
	while (loop_run_once(&lp, 0) > 0)
		;
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_idx(&t.drv), before);
	virtio_blk_unquiesce(&t.b);
	CHECK_EQ(vf_used_idx(&t.drv), 2 * VIRTIO_BLK_BUDGET);
	for (int i = 0; i < 100 && vf_used_idx(&t.drv) < 1000; i++)
		loop_run_once(&lp, 0);
	CHECK_EQ(vf_used_idx(&t.drv), 1000);
	teardown(&t);
	loop_destroy(&lp);

	/* a chain held by the rate limiter stays held while quiesced */
	struct rate_limiter_config c = {.ops = {.size = 2, .refill_time_ms = 1000}};
	setup_limited(&t, &lp, &c);
	uint64_t st[5];
	uint16_t h[5];
	for (int i = 0; i < 5; i++)
		h[i] = req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA + 512ull * i, 512, true, &st[i]);
	vf_notify(&t.drv);
	CHECK(t.b.held);
	virtio_blk_quiesce(&t.b);
	CHECK(used_are(&t, 0, h, 2));
	fake_now += 10 * 1000 * MS;
	fire(&t, &lp); /* the limiter's timer while paused: nothing */
	CHECK(t.b.held);
	CHECK_EQ(t.m.outstanding, 0);
	virtio_blk_unquiesce(&t.b);
	CHECK_EQ(t.m.outstanding, 2); /* the held one and the next */
	CHECK(t.b.held);
	run_io(&t);
	fake_now += 1000 * MS;
	fire(&t, &lp);
	run_io(&t);
	CHECK(used_are(&t, 0, h, 5));
	CHECK(!t.b.held);
	teardown_limited(&t, &lp);
}

/* ---- drive swap ---- */

static uint64_t cfg_capacity(struct tdrv *t)
{
	uint64_t c;
	dev(t)->ops->config_read(dev(t), VIRTIO_BLK_CFG_CAPACITY, &c, 8);
	return c;
}

TEST(swap_backend_completes_old_requests_then_switches)
{
	struct tdrv t;
	setup(&t, false);
	fill_disk(&t, 0xaa);
	struct blk_mem nm;
	CHECK_EQ(blk_mem_init(&nm, 2 * DISK_SIZE, false, 64), 0);
	memset(nm.data, 0xbb, 2 * DISK_SIZE);
	/* two requests in flight on the old image, one posted but not yet
	 * noticed by the device */
	uint64_t st[3];
	uint16_t h[3];
	memset(vf_hva(&t.mem, DATA_GPA, 512), 0x11, 512);
	h[0] = req(&t, VIRTIO_BLK_T_OUT, 4, DATA_GPA, 512, false, &st[0]);
	h[1] = req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA + 4096, 512, true, &st[1]);
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 2);
	h[2] = req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA + 8192, 512, true, &st[2]);
	uint32_t gen = dev(&t)->config_generation;
	int cfg_sig = vf_config_signals;
	char err[256] = "";
	CHECK_EQ(virtio_blk_swap_backend(&t.b, &nm.be, false, err, sizeof(err)), 0);
	/* the old requests completed on the old image, once, and it was
	 * flushed; the new capacity is announced */
	CHECK(used_are(&t, 0, h, 2));
	CHECK(disk_is(&t, 4 * 512, 512, 0x11));
	CHECK(*vf_hva(&t.mem, DATA_GPA + 4096, 1) == 0xaa);
	CHECK_EQ(t.m.ops_done[BLK_OP_FLUSH], 1);
	CHECK(t.b.be == &nm.be);
	CHECK_EQ(t.b.capacity, 2 * DISK_SIZE / 512);
	CHECK_EQ(cfg_capacity(&t), 2 * DISK_SIZE / 512);
	CHECK_EQ(dev(&t)->config_generation, gen + 1);
	CHECK_EQ(vf_config_signals, cfg_sig + 1);
	CHECK(!t.b.quiesced);
	/* the request posted meanwhile runs on the new image (the swap
	 * looked at the queue again) */
	CHECK_EQ(nm.outstanding, 1);
	CHECK_EQ(blk_mem_complete(&nm, UINT_MAX), 1);
	CHECK(used_are(&t, 0, h, 3));
	CHECK(*vf_hva(&t.mem, DATA_GPA + 8192, 1) == 0xbb);
	/* the whole new disk is reachable, the old image is untouched */
	uint64_t s2;
	req(&t, VIRTIO_BLK_T_OUT, 2 * DISK_SIZE / 512 - 1, DATA_GPA, 512, false, &s2);
	vf_notify(&t.drv);
	CHECK_EQ(blk_mem_complete(&nm, UINT_MAX), 1);
	CHECK_EQ(status_at(&t, s2), VIRTIO_BLK_S_OK);
	CHECK_EQ(nm.data[2 * DISK_SIZE - 1], 0x11);
	CHECK_EQ(run_io(&t), 0);
	CHECK_EQ(t.b.m.update_count, 1);
	teardown(&t);
	blk_destroy(&nm.be);
}

TEST(swap_backend_failure_keeps_the_old_image)
{
	struct tdrv t;
	setup(&t, false);
	struct blk_mem nm;
	CHECK_EQ(blk_mem_init(&nm, 2 * DISK_SIZE, false, 64), 0);
	char err[256] = "";
	uint32_t gen = dev(&t)->config_generation;
	int cfg_sig = vf_config_signals;

	/* the old image's flush fails */
	t.m.fail_ops = 1u << BLK_OP_FLUSH;
	t.m.fail_errno = EIO;
	t.m.fail_count = 1;
	CHECK_EQ(virtio_blk_swap_backend(&t.b, &nm.be, false, err, sizeof(err)),
		 (unsigned long long)-EIO);
	CHECK(strstr(err, "flush") != NULL);
	/* the old disk hangs */
	uint64_t st;
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st);
	vf_notify(&t.drv);
	t.m.hang = true;
	t.b.quiesce_timeout_ms = 20;
	CHECK_EQ(virtio_blk_swap_backend(&t.b, &nm.be, false, err, sizeof(err)),
		 (unsigned long long)-ETIMEDOUT);
	CHECK(strstr(err, "did not complete") != NULL);
	t.m.hang = false;
	CHECK_EQ(run_io(&t), 1);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	/* a back end that is no disk, or the one in use */
	struct blk_mem tiny;
	CHECK_EQ(blk_mem_init(&tiny, 100, false, 8), 0);
	CHECK_EQ(virtio_blk_swap_backend(&t.b, &tiny.be, false, err, sizeof(err)),
		 (unsigned long long)-EINVAL);
	CHECK_EQ(virtio_blk_swap_backend(&t.b, &t.m.be, false, err, sizeof(err)),
		 (unsigned long long)-EINVAL);
	blk_destroy(&tiny.be);

	/* nothing changed, and the device still works on the old image */
	CHECK(t.b.be == &t.m.be);
	CHECK_EQ(t.b.capacity, DISK_SIZE / 512);
	CHECK_EQ(cfg_capacity(&t), DISK_SIZE / 512);
	CHECK_EQ(dev(&t)->config_generation, gen);
	CHECK_EQ(vf_config_signals, cfg_sig);
	CHECK(!t.b.quiesced);
	CHECK_EQ(t.b.m.update_fails, 4);
	fill_disk(&t, 0x3e);
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st);
	vf_notify(&t.drv);
	CHECK_EQ(run_io(&t), 1);
	CHECK_EQ(*vf_hva(&t.mem, DATA_GPA, 1), 0x3e);
	CHECK_EQ(nm.outstanding, 0);
	CHECK_EQ(nm.ops_done[BLK_OP_READ], 0);
	teardown(&t);
	blk_destroy(&nm.be);
}

TEST(swap_backend_read_only_paused_and_before_driver_ok)
{
	/* a read-only image behind a driver that negotiated a writable disk:
	 * writes fail, nothing reaches the file */
	struct tdrv t;
	setup(&t, false);
	struct blk_mem ro;
	CHECK_EQ(blk_mem_init(&ro, DISK_SIZE, true, 64), 0);
	char err[256];
	/* paused by the VM: the swap leaves it paused */
	virtio_blk_quiesce(&t.b);
	CHECK_EQ(virtio_blk_swap_backend(&t.b, &ro.be, false, err, sizeof(err)), 0);
	CHECK(t.b.quiesced);
	CHECK_EQ(t.m.ops_done[BLK_OP_FLUSH], 1);
	uint64_t st;
	req(&t, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 512, false, &st);
	vf_notify(&t.drv);
	CHECK_EQ(status_at(&t, st), 0xee);
	virtio_blk_unquiesce(&t.b);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(ro.outstanding, 0);
	/* and back to a writable one: the read-only image is not flushed */
	struct blk_mem rw;
	CHECK_EQ(blk_mem_init(&rw, DISK_SIZE, false, 64), 0);
	CHECK_EQ(virtio_blk_swap_backend(&t.b, &rw.be, false, err, sizeof(err)), 0);
	CHECK_EQ(ro.ops_done[BLK_OP_FLUSH], 0);
	teardown(&t);
	blk_destroy(&ro.be);
	blk_destroy(&rw.be);

	/* before DRIVER_OK: the new capacity is there when the driver looks,
	 * no interrupt */
	memset(&t, 0, sizeof(t));
	CHECK_EQ(guest_mem_init(&t.mem, MEM_SIZE, MEM_SIZE, MEM_SIZE), 0);
	CHECK_EQ(blk_mem_init(&t.m, DISK_SIZE, false, 8), 0);
	CHECK_EQ(virtio_blk_init(&t.b, &t.m.be, false, NULL, &t.mem, NULL, err, sizeof(err)), 0);
	struct blk_mem big;
	CHECK_EQ(blk_mem_init(&big, 4 * DISK_SIZE, false, 8), 0);
	vf_config_signals = 0;
	CHECK_EQ(virtio_blk_swap_backend(&t.b, &big.be, false, err, sizeof(err)), 0);
	CHECK_EQ(vf_config_signals, 0);
	CHECK_EQ(cfg_capacity(&t), 4 * DISK_SIZE / 512);
	teardown(&t);
	blk_destroy(&big.be);
}

/* ---- metrics ---- */

TEST(metrics_count_every_kind_of_request)
{
	struct tdrv t;
	setup_full(&t, false, 2, NULL, 0); /* two slots */
	struct virtio_blk_metrics m;
	virtio_blk_get_metrics(&t.b, &m);
	CHECK_EQ(m.queue_event_count, 0);
	/* an empty ring */
	vf_notify(&t.drv);
	virtio_blk_get_metrics(&t.b, &m);
	CHECK_EQ(m.queue_event_count, 1);
	CHECK_EQ(m.no_avail_buffer, 1);

	uint64_t st;
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st);
	req(&t, VIRTIO_BLK_T_IN, 8, DATA_GPA, 1024, true, &st);
	req(&t, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 4096, false, &st); /* waits for a slot */
	vf_notify(&t.drv);
	virtio_blk_get_metrics(&t.b, &m);
	CHECK_EQ(m.inflight, 2);
	CHECK_EQ(m.io_engine_throttled_events, 1);
	CHECK_EQ(m.read_count, 0); /* counted when done */
	while (run_io(&t))
		;
	req(&t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &st);
	req(&t, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, 20, true, &st);
	req(&t, 0x4242, 0, DATA_GPA, 20, true, &st);               /* unsupported */
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 511, true, &st);     /* malformed */
	req(&t, VIRTIO_BLK_T_IN, 0, 0, 0, true, &st);              /* empty read */
	vf_notify(&t.drv);
	while (run_io(&t))
		;
	struct dwz one[] = {{0, 1, 0}};
	dwz_req(&t, VIRTIO_BLK_T_DISCARD, one, 1, 0, &st);
	dwz_req(&t, VIRTIO_BLK_T_WRITE_ZEROES, one, 1, 0, &st);
	vf_notify(&t.drv);
	while (run_io(&t))
		;
	t.m.fail_ops = 1u << BLK_OP_READ;
	t.m.fail_errno = EIO;
	t.m.fail_count = 1;
	req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st); /* host error */
	vf_notify(&t.drv);
	run_io(&t);
	uint8_t junk = 1;
	dev(&t)->ops->config_write(dev(&t), 0, &junk, 1);

	virtio_blk_get_metrics(&t.b, &m);
	CHECK_EQ(m.read_count, 3);
	CHECK_EQ(m.read_bytes, 512 + 1024);
	CHECK_EQ(m.write_count, 1);
	CHECK_EQ(m.write_bytes, 4096);
	CHECK_EQ(m.flush_count, 1);
	CHECK_EQ(m.get_id_count, 1);
	CHECK_EQ(m.discard_count, 1);
	CHECK_EQ(m.write_zeroes_count, 1);
	CHECK_EQ(m.unsupported_reqs_count, 1);
	CHECK_EQ(m.invalid_reqs_count, 1);
	CHECK_EQ(m.execute_fails, 1);
	CHECK_EQ(m.cfg_fails, 1);
	CHECK_EQ(m.inflight, 0);
	CHECK_EQ(m.event_fails, 0);
	CHECK_EQ(m.activate_fails, 0);
	CHECK_EQ(m.rate_limiter_throttled_events, 0);
	CHECK_EQ(m.budget_yields, 0); /* no loop: passes are not budgeted */
	/* a ring violation */
	vf_put16(&t.mem, AVAIL_GPA + 4 + 2 * (t.drv.avail_idx % QSIZE), 0xffff);
	t.drv.avail_idx++;
	vf_put16(&t.mem, AVAIL_GPA + 2, t.drv.avail_idx);
	vf_notify(&t.drv);
	virtio_blk_get_metrics(&t.b, &m);
	CHECK_EQ(m.event_fails, 1);
	CHECK(dev(&t)->broken);
	teardown(&t);
}

TEST(metrics_of_budget_limiter_and_updates)
{
	/* the storm: budget yields */
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct refusing_be rb = {.be = {.ops = &refusing_ops,
					.size = DISK_SIZE,
					.capacity = 64,
					.name = "refusing"}};
	struct tdrv t;
	setup_be(&t, &rb.be, false, 64, NULL, 0, &lp);
	struct storm s;
	storm_init(&s, &t, 1024);
	rb.hook = storm_hook;
	rb.ctx = &s;
	vf_notify(&t.drv);
	while (loop_run_once(&lp, 0) > 0)
		;
	struct virtio_blk_metrics m;
	virtio_blk_get_metrics(&t.b, &m);
	CHECK_EQ(vf_used_idx(&t.drv), 1024);
	CHECK_EQ(m.budget_yields, 1024 / VIRTIO_BLK_BUDGET);
	CHECK_EQ(m.queue_event_count, 1024 / VIRTIO_BLK_BUDGET + 1);
	CHECK_EQ(m.execute_fails, (1024 + 2) / 3);  /* the refused reads */
	CHECK_EQ(m.get_id_count, (1024 + 1) / 3);
	CHECK_EQ(m.unsupported_reqs_count, 1024 / 3);
	teardown(&t);
	loop_destroy(&lp);

	/* the limiter */
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = 1000}};
	setup_limited(&t, &lp, &c);
	uint64_t st;
	for (int i = 0; i < 3; i++)
		req(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true, &st);
	vf_notify(&t.drv);
	vf_notify(&t.drv);
	fake_now += 1000 * MS;
	fire(&t, &lp);
	virtio_blk_get_metrics(&t.b, &m);
	CHECK_EQ(m.rate_limiter_throttled_events, 3);
	CHECK_EQ(m.rate_limiter_event_count, 1);
	CHECK_EQ(m.update_count, 1); /* setting the limiter */
	struct rate_limiter_config none = {0};
	CHECK_EQ(virtio_blk_set_rate_limiter(&t.b, &none), 0);
	struct blk_mem nm;
	CHECK_EQ(blk_mem_init(&nm, DISK_SIZE, false, 64), 0);
	char err[128];
	CHECK_EQ(virtio_blk_swap_backend(&t.b, &nm.be, false, err, sizeof(err)), 0);
	CHECK(virtio_blk_swap_backend(&t.b, &nm.be, false, err, sizeof(err)) < 0);
	virtio_blk_get_metrics(&t.b, &m);
	CHECK_EQ(m.update_count, 3);
	CHECK_EQ(m.update_fails, 1);
	/* lifting the limit started the third; the swap completed all three
	 * on the old disk */
	CHECK_EQ(m.read_count, 3);
	CHECK_EQ(m.inflight, 0);
	CHECK_EQ(nm.outstanding, 0);
	teardown_limited(&t, &lp);
	blk_destroy(&nm.be);
}

/* ---- snapshot state ---- */

/* The device's section as the machine writes it: the core's state, then
 * the device's own, in one payload. */
static char serr[256];

static void snap_save(struct tdrv *t, struct snapfile *f)
{
	static struct virtio_dev_state core;
	struct virtio_blk_state st;
	CHECK_EQ(virtio_dev_state_get(dev(t), &core), 0);
	CHECK_EQ(virtio_blk_state_get(&t->b, &st), 0);
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "dev.0", VIRTIO_BLK_STATE_VERSION);
	virtio_dev_state_encode(&core, &w);
	virtio_blk_state_encode(&st, &w);
	snap_writer_section_end(&w);
	snapfile_from(&w, "dev.0", f);
}

/* Decode and check p[0..len) against @t's device (nothing applied); if
 * accepted and @apply, put the core's state and the device's, restart. */
static int snap_load(struct tdrv *t, const uint8_t *p, size_t len, bool apply)
{
	static struct virtio_dev_state core;
	struct virtio_blk_state st;
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	serr[0] = 0;
	int rc = virtio_dev_state_decode(&c, dev(t), &core, serr, sizeof(serr));
	if (!rc)
		rc = virtio_blk_state_decode(&c, &t->b, &st, serr, sizeof(serr));
	if (!rc)
		rc = snap_cursor_done(&c, "dev.0", serr, sizeof(serr));
	if (!rc)
		rc = virtio_blk_state_check(&st, &core, serr, sizeof(serr));
	if (rc || !apply)
		return rc;
	CHECK_EQ(virtio_dev_state_put(dev(t), &core), 0);
	rc = virtio_blk_state_put(&t->b, &st);
	virtio_dev_state_restart(dev(t));
	return rc;
}

/* @p with byte @off (from the end of the payload when negative) set to @v,
 * loaded (not applied) into @t. */
static int snap_load_patched(struct tdrv *t, const struct snapfile *f, long off, uint8_t v)
{
	uint8_t *copy = malloc(f->plen);
	memcpy(copy, f->p, f->plen);
	copy[off < 0 ? (long)f->plen + off : off] = v;
	int rc = snap_load(t, copy, f->plen, false);
	free(copy);
	return rc;
}

/* A fresh device (nothing negotiated) on a disk of @disk_size bytes, over
 * a copy of @from's guest memory and disk (as far as it goes), its driver
 * shadow where @from's is: what a restore starts from. */
static void setup_restored(struct tdrv *t, const struct tdrv *from, uint64_t disk_size)
{
	memset(t, 0, sizeof(*t));
	if (guest_mem_init(&t->mem, MEM_SIZE, MEM_SIZE, MEM_SIZE) ||
	    blk_mem_init(&t->m, disk_size, false, 64))
		abort();
	char err[128];
	if (virtio_blk_init(&t->b, &t->m.be, false, "test-disk", &t->mem, NULL, err, sizeof(err)))
		abort();
	dev(t)->tops = &vf_tops;
	memcpy(vf_hva(&t->mem, 0, MEM_SIZE), vf_hva((struct guest_mem *)&from->mem, 0, MEM_SIZE),
	       MEM_SIZE);
	memcpy(t->m.data, from->m.data, disk_size < DISK_SIZE ? disk_size : DISK_SIZE);
	t->drv = from->drv;
	t->drv.mem = &t->mem;
	t->drv.dev = dev(t);
	t->bump = from->bump;
	vf_replay_pending = 0;
}

/* Two writes; the rate limiter lets the first through and holds the
 * second; the VM pauses (the first completes); @t is left paused. */
static void snap_busy(struct tdrv *t, struct loop *lp, uint64_t st[2], uint16_t h[2])
{
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = 60000}};
	setup_limited(t, lp, &c);
	memset(vf_hva(&t->mem, DATA_GPA, 1024), 0xab, 512);
	memset(vf_hva(&t->mem, DATA_GPA + 512, 512), 0xcd, 512);
	h[0] = req(t, VIRTIO_BLK_T_OUT, 1, DATA_GPA, 512, false, &st[0]);
	h[1] = req(t, VIRTIO_BLK_T_OUT, 2, DATA_GPA + 512, 512, false, &st[1]);
	vf_notify(&t->drv);
	CHECK_EQ(t->m.outstanding, 1);
	CHECK(t->b.held);
	virtio_dev_pause(dev(t)); /* the machine's pause of a virtio-blk */
	virtio_blk_quiesce(&t->b);
	CHECK_EQ(t->m.outstanding, 0);
	CHECK_EQ(vf_used_idx(&t->drv), 1);
}

TEST(snapshot_round_trip_keeps_the_held_request)
{
	struct loop lp;
	static struct tdrv a, b;
	uint64_t st[2];
	uint16_t h[2];
	snap_busy(&a, &lp, st, h);
	struct snapfile f;
	snap_save(&a, &f);
	/* the device's part: capacity, flush_failed, held, head */
	const uint8_t *part = f.p + f.plen - 12;
	CHECK_EQ(get_le64(part), DISK_SIZE / 512);
	CHECK_EQ(part[8], 0);
	CHECK_EQ(part[9], 1);
	CHECK_EQ(get_le16(part + 10), h[1]);

	setup_restored(&b, &a, DISK_SIZE);
	/* every shorter payload, and a longer one, is refused */
	for (size_t n = 0; n < f.plen; n++) {
		CHECK_EQ(snap_load(&b, f.p, n, false), -EINVAL);
		CHECK(serr[0]);
	}
	uint8_t *longer = calloc(1, f.plen + 1);
	memcpy(longer, f.p, f.plen);
	CHECK_EQ(snap_load(&b, longer, f.plen + 1, false), -EINVAL);
	free(longer);
	CHECK_EQ(dev(&b)->status, 0);

	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	CHECK(b.b.held);
	CHECK_EQ(b.b.chain.head, h[1]);
	CHECK_EQ(b.m.outstanding, 0);
	/* the restart's look at the queue (the loop's part) submits it */
	vf_run_replays(dev(&b));
	CHECK(!b.b.held);
	CHECK_EQ(b.m.outstanding, 1);
	CHECK_EQ(run_io(&b), 1);
	CHECK_EQ(vf_used_idx(&b.drv), 2);
	CHECK_EQ(vf_used_id(&b.drv, 1), h[1]);
	CHECK_EQ(status_at(&b, st[1]), VIRTIO_BLK_S_OK);
	CHECK(disk_is(&b, 1024, 512, 0xcd));
	CHECK(disk_is(&b, 512, 512, 0xab));
	CHECK_EQ(dev(&b)->vqs[0].inflight, 0);
	/* and it goes on: a read of what was written */
	uint64_t rs;
	uint16_t rh = req(&b, VIRTIO_BLK_T_IN, 2, DATA_GPA + 4096, 512, true, &rs);
	vf_notify(&b.drv);
	CHECK_EQ(run_io(&b), 1);
	CHECK_EQ(vf_used_id(&b.drv, 2), rh);
	CHECK(*vf_hva(&b.mem, DATA_GPA + 4096 + 511, 1) == 0xcd);
	CHECK(!dev(&b)->broken);
	/* the original resumes as if nothing happened */
	virtio_blk_unquiesce(&a.b);
	virtio_dev_resume(dev(&a));
	CHECK(a.b.held);
	fake_now += 60000 * MS;
	fire(&a, &lp);
	CHECK_EQ(run_io(&a), 1);
	CHECK_EQ(vf_used_idx(&a.drv), 2);
	free(f.buf);
	teardown(&b);
	teardown_limited(&a, &lp);
}

TEST(snapshot_of_an_idle_device_and_a_failed_flush)
{
	static struct tdrv a, b;
	setup(&a, false);
	uint64_t st;
	req(&a, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &st);
	a.m.fail_ops = 1u << BLK_OP_FLUSH;
	a.m.fail_errno = EIO;
	a.m.fail_count = 1;
	vf_notify(&a.drv);
	run_io(&a);
	CHECK(a.b.flush_failed);
	virtio_dev_pause(dev(&a));
	virtio_blk_quiesce(&a.b);
	struct snapfile f;
	snap_save(&a, &f);
	setup_restored(&b, &a, DISK_SIZE);
	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	CHECK(b.b.flush_failed);
	CHECK(!b.b.held);
	vf_run_replays(dev(&b));
	/* the failed flush stays failed on the restored device */
	uint64_t st2;
	uint16_t h2 = req(&b, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &st2);
	vf_notify(&b.drv);
	CHECK_EQ(vf_used_id(&b.drv, 1), h2);
	CHECK_EQ(status_at(&b, st2), VIRTIO_BLK_S_IOERR);
	free(f.buf);
	/* a device the driver never started */
	static struct tdrv c, d;
	setup_restored(&c, &b, DISK_SIZE);
	snap_save(&c, &f);
	setup_restored(&d, &c, DISK_SIZE);
	CHECK_EQ(snap_load(&d, f.p, f.plen, true), 0);
	CHECK_EQ(dev(&d)->status, 0);
	CHECK(!d.b.held && !d.b.flush_failed);
	free(f.buf);
	teardown(&d);
	teardown(&c);
	teardown(&b);
	teardown(&a);
}

TEST(snapshot_refusals)
{
	struct loop lp;
	static struct tdrv a, b;
	uint64_t st[2];
	uint16_t h[2];
	snap_busy(&a, &lp, st, h);
	struct snapfile f;
	snap_save(&a, &f);
	/* another disk: a different capacity */
	setup_restored(&b, &a, 2 * DISK_SIZE);
	CHECK_EQ(snap_load(&b, f.p, f.plen, false), -EINVAL);
	CHECK(strstr(serr, "another disk") != NULL);
	CHECK_EQ(dev(&b)->status, 0);
	teardown(&b);
	setup_restored(&b, &a, DISK_SIZE);
	/* the device's part is the last 12 bytes: capacity 8, flags 2, head 2 */
	CHECK_EQ(snap_load_patched(&b, &f, -4, 2), -EINVAL); /* flush_failed */
	CHECK(strstr(serr, "not 0 or 1") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, -3, 2), -EINVAL); /* held */
	CHECK(strstr(serr, "not 0 or 1") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, -1, 0x01), -EINVAL); /* head 256 + ... */
	CHECK(strstr(serr, "out of range") != NULL);
	/* the held head is not the one in flight on the queue */
	CHECK_EQ(snap_load_patched(&b, &f, -2, (uint8_t)(h[1] + 1)), -EINVAL);
	CHECK(strstr(serr, "in flight") != NULL);
	/* the device holds nothing but the queue has a chain in flight */
	uint8_t *copy = malloc(f.plen);
	memcpy(copy, f.p, f.plen);
	memset(copy + f.plen - 3, 0, 3);
	CHECK_EQ(snap_load(&b, copy, f.plen, false), -EINVAL);
	CHECK(strstr(serr, "1 chains in flight") != NULL);
	/* ... as a device its driver gave up on (FAILED) has it: not live, it
	 * holds nothing, whatever is in flight (the fuzzer's find: refused) */
	copy[0] |= VIRTIO_STATUS_FAILED;
	CHECK_EQ(snap_load(&b, copy, f.plen, false), 0);
	copy[0] = f.p[0];
	/* a head without a held chain */
	copy[f.plen - 2] = 5;
	CHECK_EQ(snap_load(&b, copy, f.plen, false), -EINVAL);
	CHECK(strstr(serr, "without a held chain") != NULL);
	free(copy);
	CHECK_EQ(dev(&b)->status, 0);
	CHECK(!b.b.held);
	/* the held chain's descriptor no longer passes (guest memory of
	 * another snapshot): the restored device is broken, as by a bad pop */
	vf_desc(&b.mem, DESC_GPA, h[1], 0, 0, VIRTQ_DESC_F_NEXT, 0);
	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	CHECK(dev(&b)->broken);
	CHECK(!b.b.held);
	/* ... and, broken with the chain in flight, it saves a state that
	 * loads (it was refused: "1 chains in flight on the queue, the device
	 * holds 0"), restores broken and waits for the driver's reset */
	static struct tdrv c;
	struct snapfile g;
	snap_save(&b, &g);
	CHECK_EQ(get_le16(g.p + g.plen - 4), 0); /* flush_failed, held */
	setup_restored(&c, &b, DISK_SIZE);
	CHECK_EQ(snap_load(&c, g.p, g.plen, true), 0);
	CHECK(vf_broken_until_reset(dev(&c), &c.drv, 0, 1));
	CHECK_EQ(c.m.outstanding, 0);
	free(g.buf);
	teardown(&c);
	free(f.buf);
	teardown(&b);
	/* requests in flight (a disk that did not answer): no snapshot */
	virtio_blk_unquiesce(&a.b);
	virtio_dev_resume(dev(&a));
	fake_now += 60000 * MS;
	fire(&a, &lp);
	CHECK_EQ(a.m.outstanding, 1);
	struct virtio_blk_state bs;
	CHECK_EQ(virtio_blk_state_get(&a.b, &bs), -EBUSY);
	CHECK_EQ(run_io(&a), 1);
	CHECK_EQ(virtio_blk_state_get(&a.b, &bs), 0);
	teardown_limited(&a, &lp);
}

/* Pages marked dirty, at most @max. */
static int dirty_list(struct tdrv *t, uint64_t *out, int max)
{
	int n = 0;
	for (uint64_t p = 0; p < MEM_SIZE / 4096; p++)
		if (guest_mem_is_dirty(&t->mem, p) && n < max)
			out[n++] = p;
	return n;
}

TEST(dirty_tracking_a_read_marks_its_buffers_also_across_a_snapshot)
{
	/* A disk read is the VMM writing guest RAM behind KVM's back: the
	 * buffers are marked when the request is popped, and marked again
	 * when a snapshot starts a new dirty epoch while it is in flight. */
	struct tdrv t;
	setup(&t, false);
	CHECK_EQ(guest_mem_track_dirty(&t.mem), 0);
	fill_disk(&t, 0x77);
	uint64_t st;
	req(&t, VIRTIO_BLK_T_IN, 4, DATA_GPA + 0x3000, 8192, true, &st);
	guest_mem_dirty_clear(&t.mem); /* what the fake driver wrote */
	vf_notify(&t.drv);
	CHECK_EQ(t.m.outstanding, 1);
	uint64_t got[8];
	CHECK_EQ(dirty_list(&t, got, 8), 3);
	CHECK_EQ(got[0], st >> 12); /* the status byte */
	CHECK_EQ(got[1], (DATA_GPA >> 12) + 3);
	CHECK_EQ(got[2], (DATA_GPA >> 12) + 4);
	/* a snapshot here: the bitmap starts over, the request in flight
	 * and the used ring are what the device may still write */
	guest_mem_dirty_clear(&t.mem);
	virtio_dev_mark_dirty(dev(&t));
	CHECK_EQ(dirty_list(&t, got, 8), 4);
	CHECK_EQ(got[0], USED_GPA >> 12);
	CHECK_EQ(got[1], st >> 12);
	CHECK_EQ(got[2], (DATA_GPA >> 12) + 3);
	CHECK_EQ(run_io(&t), 1);
	CHECK_EQ(status_at(&t, st), VIRTIO_BLK_S_OK);
	CHECK_EQ(*vf_hva(&t.mem, DATA_GPA + 0x3000, 1), 0x77);
	/* a write only reads its data: only the status byte is the device's */
	guest_mem_dirty_clear(&t.mem);
	req(&t, VIRTIO_BLK_T_OUT, 4, DATA_GPA + 0x8000, 4096, false, &st);
	guest_mem_dirty_clear(&t.mem);
	vf_notify(&t.drv);
	CHECK_EQ(run_io(&t), 1);
	CHECK_EQ(dirty_list(&t, got, 8), 1);
	CHECK_EQ(got[0], st >> 12);
	/* nothing in flight any more: a new epoch holds only the used ring */
	guest_mem_dirty_clear(&t.mem);
	virtio_dev_mark_dirty(dev(&t));
	CHECK_EQ(dirty_list(&t, got, 8), 1);
	CHECK_EQ(got[0], USED_GPA >> 12);
	teardown(&t);
}

TEST_MAIN()
