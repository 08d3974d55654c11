/* SPDX-License-Identifier: MIT */
/*
 * virtio-balloon tests: an in-test driver (virtio_fake.h) with one vf_drv
 * per queue, the fake transport counting interrupts, and madvise wrapped
 * through the device's madvise_fn so every discard is counted and checked
 * to lie inside guest RAM before the real madvise runs (residency is then
 * checked with mincore(2)).
 *
 * Guest RAM: 64 MiB as [0, 32 MiB) and [48 MiB, 80 MiB) with a "hole"
 * between, so that PFNs in the hole and past the end can be tried.
 */
#include "../../src/devices/virtio/virtio_balloon.h"

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../../src/event/loop.h"
#include "test.h"
#include "snap_test.h"
#include "loop_runner.h"
#include "virtio_fake.h"

#define MIB (1ull << 20)
#define PG 4096ull
#define MEM_SIZE (64 * MIB)
#define HOLE_START (32 * MIB)
#define HOLE_END (48 * MIB)
#define RAM_END (HOLE_END + MEM_SIZE - HOLE_START) /* 80 MiB */
#define RING_GPA(q) (0x10000ull + 0x4000ull * (q)) /* desc; avail +0x1000; used +0x2000 */
#define BUF_GPA 0x100000ull                         /* PFN arrays, stats: bump-allocated */
#define BUF_END (4 * MIB)
#define DATA_GPA (4 * MIB) /* pages the tests balloon live above this */
#define QSIZE 64
#define NQ VIRTIO_BALLOON_NUM_QUEUES

#define F(bit) (1ull << (bit))
#define F_STATS F(VIRTIO_BALLOON_F_STATS_VQ)
#define F_REPORT F(VIRTIO_BALLOON_F_PAGE_REPORTING)
#define F_OOM F(VIRTIO_BALLOON_F_DEFLATE_ON_OOM)

struct tb {
	struct guest_mem mem;
	struct virtio_balloon b;
	struct vf_drv q[NQ];
	uint64_t bump;
};

/* ---- madvise wrapper ---- */

#define MV_MAX 64
struct mv_range {
	uint8_t *p;
	size_t len;
};
static struct {
	const struct guest_mem *mem;
	int calls;
	uint64_t bytes;
	bool outside, bad_advice;
	struct mv_range r[MV_MAX];
} mv;

static int counting_madvise(void *addr, size_t len, int advice)
{
	uint8_t *p = addr;
	const struct guest_mem *m = mv.mem;
	if (!m || p < m->base || p + len > m->base + m->size || len == 0)
		mv.outside = true; /* never let it reach the real madvise */
	if (advice != MADV_DONTNEED)
		mv.bad_advice = true;
	if (mv.calls < MV_MAX)
		mv.r[mv.calls] = (struct mv_range){p, len};
	mv.calls++;
	mv.bytes += len;
	if (mv.outside)
		return -1;
	return madvise(addr, len, advice);
}

static void mv_reset(const struct guest_mem *m)
{
	memset(&mv, 0, sizeof(mv));
	mv.mem = m;
}

/* ---- driver ---- */

static struct virtio_dev *dev(struct tb *t)
{
	return &t->b.vdev;
}

static uint8_t *hva(struct tb *t, uint64_t gpa, uint64_t len)
{
	return vf_hva(&t->mem, gpa, len);
}

/* Negotiate @features (+VERSION_1) and make the queues in @ready_mask
 * ready at RING_GPA(q); no DRIVER_OK yet.  Device lock taken. */
static void drv_setup(struct tb *t, uint64_t features, uint32_t ready_mask)
{
	struct virtio_dev *d = dev(t);
	pthread_mutex_lock(&d->lock);
	d->tops = &vf_tops;
	vf_negotiate(d, features | F(VIRTIO_F_VERSION_1));
	for (uint16_t q = 0; q < NQ; q++) {
		vf_drv_init(&t->q[q], &t->mem, d, QSIZE, RING_GPA(q), RING_GPA(q) + 0x1000,
			    RING_GPA(q) + 0x2000);
		if (!(ready_mask & (1u << q)))
			continue;
		d->queue_sel = q;
		struct virtq *vq = virtio_dev_selected_queue(d);
		vq->size = QSIZE;
		vq->desc_gpa = t->q[q].desc;
		vq->avail_gpa = t->q[q].avail;
		vq->used_gpa = t->q[q].used;
		vq->ready = true;
	}
	pthread_mutex_unlock(&d->lock);
}

static void drv_ok(struct tb *t)
{
	struct virtio_dev *d = dev(t);
	pthread_mutex_lock(&d->lock);
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&d->lock);
}

/* drv_setup, then DRIVER_OK. */
static void drv_up(struct tb *t, uint64_t features, uint32_t ready_mask)
{
	drv_setup(t, features, ready_mask);
	drv_ok(t);
}

/* Device only (no driver yet). */
static void setup_dev(struct tb *t, uint64_t target, bool oom, unsigned period, struct loop *lp)
{
	memset(t, 0, sizeof(*t));
	if (guest_mem_init(&t->mem, MEM_SIZE, HOLE_START, HOLE_END))
		abort();
	if (virtio_balloon_create(&t->b, target, oom, period, &t->mem, lp))
		abort();
	mv_reset(&t->mem);
	t->b.madvise_fn = counting_madvise;
	t->bump = BUF_GPA;
	vf_queue_signals = vf_config_signals = vf_replays = 0;
	vf_replay_pending = 0;
}

/* Linux's layout: inflate, deflate, stats 2, reporting 3. */
static void setup(struct tb *t)
{
	setup_dev(t, 0, false, 0, NULL);
	drv_up(t, F_STATS | F_REPORT, 0xf);
}

static void teardown(struct tb *t)
{
	virtio_balloon_destroy(&t->b);
	guest_mem_destroy(&t->mem);
}

static uint64_t alloc_buf(struct tb *t, uint64_t len)
{
	uint64_t g = t->bump;
	t->bump += (len + 15) & ~15ull;
	if (t->bump > BUF_END)
		abort();
	return g;
}

/* A PFN array in guest memory (plus @extra junk bytes). */
static uint64_t put_pfns(struct tb *t, const uint32_t *pfns, uint32_t n, uint32_t extra)
{
	uint64_t g = alloc_buf(t, 4ull * n + extra);
	uint8_t *p = hva(t, g, 4ull * n + extra);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t le = htole32(pfns[i]);
		memcpy(p + 4ull * i, &le, 4);
	}
	memset(p + 4ull * n, 0xee, extra);
	return g;
}

static void notify(struct tb *t, uint16_t q)
{
	pthread_mutex_lock(&dev(t)->lock);
	virtio_dev_queue_notify(dev(t), q);
	pthread_mutex_unlock(&dev(t)->lock);
}

/* One readable buffer on queue @q, then a notification; returns the head. */
static uint16_t send(struct tb *t, uint16_t q, uint64_t gpa, uint32_t len)
{
	struct vf_seg s = {gpa, len, false};
	uint16_t h = vf_chain(&t->q[q], &s, 1);
	notify(t, q);
	return h;
}

static uint16_t send_pfns(struct tb *t, uint16_t q, const uint32_t *pfns, uint32_t n)
{
	return send(t, q, put_pfns(t, pfns, n, 0), 4 * n);
}

static uint32_t pfn(uint64_t gpa)
{
	return (uint32_t)(gpa >> 12);
}

static struct virtio_balloon_info info(struct tb *t)
{
	struct virtio_balloon_info i;
	virtio_balloon_get_info(&t->b, &i);
	return i;
}

static uint32_t cfg32(struct tb *t, uint32_t off)
{
	uint32_t v;
	pthread_mutex_lock(&dev(t)->lock);
	dev(t)->ops->config_read(dev(t), off, &v, 4);
	pthread_mutex_unlock(&dev(t)->lock);
	return le32toh(v);
}

static void cfg_write32(struct tb *t, uint32_t off, uint32_t v)
{
	v = htole32(v);
	pthread_mutex_lock(&dev(t)->lock);
	dev(t)->ops->config_write(dev(t), off, &v, 4);
	pthread_mutex_unlock(&dev(t)->lock);
}

/* Resident 4 KiB pages of guest [gpa, gpa+len). */
static uint64_t resident(struct tb *t, uint64_t gpa, uint64_t len)
{
	static unsigned char vec[(16 * MIB) / PG];
	if (len / PG > sizeof(vec))
		abort();
	if (mincore(hva(t, gpa, len), len, vec) < 0)
		abort();
	uint64_t n = 0;
	for (uint64_t i = 0; i < len / PG; i++)
		n += vec[i] & 1;
	return n;
}

static void reset_dev(struct tb *t)
{
	pthread_mutex_lock(&dev(t)->lock);
	virtio_dev_set_status(dev(t), 0);
	pthread_mutex_unlock(&dev(t)->lock);
}

/* ---- tests ---- */

TEST(identity_features_and_create_checks)
{
	struct tb t;
	setup_dev(&t, 16 * MIB, false, 0, NULL);
	struct virtio_dev *d = dev(&t);
	CHECK_EQ(d->device_id, VIRTIO_ID_BALLOON);
	CHECK_EQ(d->num_queues, NQ);
	uint64_t dev_bits = d->device_features & 0xffffffull; /* device-specific 0..23 */
	CHECK_EQ(dev_bits, F_STATS | F_REPORT);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_NUM_PAGES), 16 * MIB / PG);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_ACTUAL), 0);
	CHECK_EQ(info(&t).guest_pages, MEM_SIZE / PG);
	CHECK_EQ(t.b.timer_fd, -1);
	teardown(&t);

	setup_dev(&t, 0, true, 0, NULL);
	CHECK_EQ(dev(&t)->device_features & 0xffffffull, F_STATS | F_REPORT | F_OOM);
	drv_up(&t, F_STATS | F_OOM, 0x7);
	struct virtio_balloon_info i = info(&t);
	CHECK(i.stats_vq && i.deflate_on_oom && !i.page_reporting);
	teardown(&t);

	/* bad targets */
	struct guest_mem m;
	struct virtio_balloon b;
	CHECK_EQ(guest_mem_init(&m, MEM_SIZE, HOLE_START, HOLE_END), 0);
	CHECK_EQ(virtio_balloon_create(&b, 4095, false, 0, &m, NULL), -EINVAL);
	CHECK_EQ(virtio_balloon_create(&b, MEM_SIZE + PG, false, 0, &m, NULL), -EINVAL);
	CHECK_EQ(virtio_balloon_create(&b, MEM_SIZE, false, 0, &m, NULL), 0);
	virtio_balloon_destroy(&b);
	virtio_balloon_destroy(&b); /* idempotent */
	guest_mem_destroy(&m);
	CHECK_EQ(virtio_balloon_create(&b, 0, false, 0, &m, NULL), -EINVAL); /* no RAM */
}

TEST(config_space_every_width_and_offset)
{
	struct tb t;
	setup_dev(&t, 8 * MIB, false, 0, NULL);
	drv_up(&t, F_STATS, 0x7);
	struct virtio_dev *d = dev(&t);
	cfg_write32(&t, VIRTIO_BALLOON_CFG_ACTUAL, 0x11223344);
	uint8_t want[64] = {0};
	uint32_t np = htole32(8 * MIB / PG), act = htole32(0x11223344);
	memcpy(want + 0, &np, 4);
	memcpy(want + 4, &act, 4);
	static const uint32_t widths[] = {1, 2, 4, 8};
	for (uint32_t off = 0; off + 8 <= sizeof(want); off++) {
		for (int w = 0; w < 4; w++) {
			uint8_t buf[8];
			memset(buf, 0xa5, sizeof(buf));
			pthread_mutex_lock(&d->lock);
			d->ops->config_read(d, off, buf, widths[w]);
			pthread_mutex_unlock(&d->lock);
			CHECK(memcmp(buf, want + off, widths[w]) == 0);
			/* writes that miss `actual` change nothing */
			if (off + widths[w] <= VIRTIO_BALLOON_CFG_ACTUAL ||
			    off >= VIRTIO_BALLOON_CFG_ACTUAL + 4) {
				uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
				pthread_mutex_lock(&d->lock);
				d->ops->config_write(d, off, junk, widths[w]);
				pthread_mutex_unlock(&d->lock);
			}
		}
	}
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_NUM_PAGES), 8 * MIB / PG);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_ACTUAL), 0x11223344);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_FREE_PAGE_HINT_CMD_ID), 0);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_POISON_VAL), 0);

	/* an 8-byte write at 0 only lands on actual */
	uint8_t eight[8] = {0xff, 0xff, 0xff, 0xff, 0x05, 0x00, 0x00, 0x00};
	pthread_mutex_lock(&d->lock);
	d->ops->config_write(d, 0, eight, 8);
	pthread_mutex_unlock(&d->lock);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_NUM_PAGES), 8 * MIB / PG);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_ACTUAL), 5);
	/* byte-wise writes compose, a 2-byte write straddling the end too */
	static const uint8_t bytes[4] = {0x78, 0x56, 0x34, 0x12};
	pthread_mutex_lock(&d->lock);
	for (uint32_t i = 0; i < 4; i++)
		d->ops->config_write(d, VIRTIO_BALLOON_CFG_ACTUAL + i, &bytes[i], 1);
	pthread_mutex_unlock(&d->lock);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_ACTUAL), 0x12345678);
	uint8_t two[2] = {0x99, 0x77};
	pthread_mutex_lock(&d->lock);
	d->ops->config_write(d, 7, two, 2);
	pthread_mutex_unlock(&d->lock);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_ACTUAL), 0x99345678);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_FREE_PAGE_HINT_CMD_ID), 0);
	CHECK_EQ(info(&t).actual_pages, 0x99345678);

	/* far past the end, up to the top of the offset range */
	uint8_t buf[8];
	memset(buf, 0xa5, 8);
	pthread_mutex_lock(&d->lock);
	d->ops->config_read(d, 0xfffffffcu, buf, 8);
	d->ops->config_write(d, 0xfffffffcu, eight, 8);
	pthread_mutex_unlock(&d->lock);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(buf[i], 0);
	teardown(&t);
}

static void *target_thread(void *arg)
{
	struct tb *t = arg;
	for (int i = 0; i < 2000; i++)
		if (virtio_balloon_set_target(&t->b, (uint64_t)(i % 7) * MIB) != 0)
			return (void *)1;
	return NULL;
}

TEST(set_target_updates_config_and_signals)
{
	struct tb t;
	setup_dev(&t, 0, false, 0, NULL);
	struct virtio_dev *d = dev(&t);
	d->tops = &vf_tops;
	/* before DRIVER_OK: the value changes, no interrupt */
	CHECK_EQ(virtio_balloon_set_target(&t.b, 4 * MIB), 0);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_NUM_PAGES), 1024);
	CHECK_EQ(vf_config_signals, 0);
	drv_up(&t, F_STATS, 0x7);
	uint32_t gen = d->config_generation;
	CHECK_EQ(virtio_balloon_set_target(&t.b, 32 * MIB), 0);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_NUM_PAGES), 8192);
	CHECK_EQ(vf_config_signals, 1);
	CHECK(d->config_generation != gen);
	/* the same value again: nothing to tell */
	gen = d->config_generation;
	CHECK_EQ(virtio_balloon_set_target(&t.b, 32 * MIB), 0);
	CHECK_EQ(vf_config_signals, 1);
	CHECK_EQ(d->config_generation, gen);
	/* invalid: unchanged */
	CHECK_EQ(virtio_balloon_set_target(&t.b, 32 * MIB + 1), -EINVAL);
	CHECK_EQ(virtio_balloon_set_target(&t.b, MEM_SIZE + PG), -EINVAL);
	CHECK_EQ(virtio_balloon_set_target(&t.b, UINT64_MAX & ~(PG - 1)), -EINVAL);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_NUM_PAGES), 8192);
	CHECK_EQ(virtio_balloon_set_target(&t.b, MEM_SIZE), 0); /* all of RAM is allowed */
	CHECK_EQ(info(&t).target_pages, MEM_SIZE / PG);
	/* the driver cannot change num_pages */
	cfg_write32(&t, VIRTIO_BALLOON_CFG_NUM_PAGES, 1);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_NUM_PAGES), MEM_SIZE / PG);

	/* from another thread while the "guest" reads config */
	vf_config_signals = 0;
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, target_thread, &t), 0);
	for (int i = 0; i < 2000; i++) {
		uint32_t v = cfg32(&t, VIRTIO_BALLOON_CFG_NUM_PAGES);
		CHECK(v == MEM_SIZE / PG || (v % 256 == 0 && v <= 6 * 256)); /* never torn */
	}
	void *ret;
	CHECK_EQ(pthread_join(th, &ret), 0);
	CHECK(ret == NULL);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_NUM_PAGES), (1999 % 7) * 256);
	CHECK(vf_config_signals >= 1);
	teardown(&t);
}

TEST(inflate_deflate_accounting)
{
	struct tb t;
	setup(&t);
	uint32_t p[100];
	for (uint32_t i = 0; i < 100; i++)
		p[i] = pfn(DATA_GPA) + i;
	uint16_t h = send_pfns(&t, 0, p, 100);
	CHECK_EQ(vf_used_idx(&t.q[0]), 1);
	CHECK_EQ(vf_used_id(&t.q[0], 0), h);
	CHECK_EQ(vf_used_len(&t.q[0], 0), 0);
	CHECK_EQ(vf_queue_signals, 1);
	CHECK_EQ(info(&t).inflated_pages, 100);
	CHECK_EQ(mv.calls, 1); /* contiguous: one madvise */
	CHECK(mv.r[0].p == hva(&t, DATA_GPA, PG));
	CHECK_EQ(mv.r[0].len, 100 * PG);
	/* the driver reports its count; the device keeps its own */
	cfg_write32(&t, VIRTIO_BALLOON_CFG_ACTUAL, 12345);
	CHECK_EQ(info(&t).actual_pages, 12345);
	CHECK_EQ(info(&t).inflated_pages, 100);

	/* deflate half: no host work */
	h = send_pfns(&t, 1, p, 50);
	CHECK_EQ(vf_used_idx(&t.q[1]), 1);
	CHECK_EQ(vf_used_id(&t.q[1], 0), h);
	CHECK_EQ(vf_used_len(&t.q[1], 0), 0);
	CHECK_EQ(info(&t).inflated_pages, 50);
	CHECK_EQ(mv.calls, 1);
	/* re-inflate the deflated half, deflate everything */
	send_pfns(&t, 0, p, 50);
	CHECK_EQ(info(&t).inflated_pages, 100);
	CHECK_EQ(mv.calls, 2);
	send_pfns(&t, 1, p, 100);
	CHECK_EQ(info(&t).inflated_pages, 0);
	CHECK_EQ(info(&t).ignored_pfns, 0);
	CHECK(!mv.outside && !mv.bad_advice);
	CHECK_EQ(t.b.metrics.inflate_count, 2);
	CHECK_EQ(t.b.metrics.deflate_count, 2);
	CHECK(!dev(&t)->broken);
	teardown(&t);
}

TEST(bad_pfns_are_ignored_and_nothing_outside_ram_is_discarded)
{
	struct tb t;
	setup(&t);
	uint32_t good = pfn(DATA_GPA);
	uint32_t p[] = {
		pfn(HOLE_START),           /* first page of the hole */
		pfn(HOLE_END) - 1,         /* last page of the hole */
		pfn(RAM_END),              /* just past the end */
		pfn(4ull << 30),           /* 4 GiB */
		0xffffffffu,               /* gpa 16 TiB - 4 KiB */
		good, good, good + 1, good /* duplicates inside one buffer */
	};
	uint32_t n = sizeof(p) / 4;
	/* 3 trailing bytes: not a PFN */
	send(&t, 0, put_pfns(&t, p, n, 3), 4 * n + 3);
	CHECK_EQ(vf_used_idx(&t.q[0]), 1);
	CHECK_EQ(info(&t).inflated_pages, 2);
	CHECK_EQ(info(&t).ignored_pfns, 7);
	CHECK_EQ(mv.calls, 1);
	CHECK_EQ(mv.bytes, 2 * PG);
	/* already in the balloon from an earlier buffer */
	uint32_t again[] = {good + 1, good};
	send_pfns(&t, 0, again, 2);
	CHECK_EQ(info(&t).inflated_pages, 2);
	CHECK_EQ(info(&t).ignored_pfns, 9);
	CHECK_EQ(mv.calls, 1);
	/* deflating pages that are not in the balloon, or not RAM */
	uint32_t d[] = {good + 2, pfn(HOLE_START), 0xffffffffu, good, good};
	send_pfns(&t, 1, d, 5);
	CHECK_EQ(info(&t).inflated_pages, 1);
	CHECK_EQ(info(&t).ignored_pfns, 13);
	/* a buffer shorter than one PFN */
	send(&t, 0, put_pfns(&t, NULL, 0, 3), 3);
	CHECK_EQ(vf_used_idx(&t.q[0]), 3);
	CHECK_EQ(info(&t).inflated_pages, 1);
	/* the last page below the hole and the first above it are adjacent
	 * in the host mapping: one madvise, still inside guest RAM */
	mv_reset(&t.mem);
	uint32_t edge[] = {pfn(HOLE_START) - 1, pfn(HOLE_END)};
	send_pfns(&t, 0, edge, 2);
	CHECK_EQ(info(&t).inflated_pages, 3);
	CHECK_EQ(mv.calls, 1);
	CHECK(mv.r[0].p == hva(&t, HOLE_START - PG, PG));
	CHECK_EQ(mv.r[0].len, 2 * PG);
	/* the very last page of RAM */
	uint32_t last[] = {pfn(RAM_END) - 1};
	send_pfns(&t, 0, last, 1);
	CHECK_EQ(info(&t).inflated_pages, 4);
	CHECK(mv.r[1].p + mv.r[1].len == t.mem.base + t.mem.size);
	CHECK(!mv.outside && !mv.bad_advice);
	CHECK(!dev(&t)->broken);
	teardown(&t);
}

TEST(contiguous_pfns_are_batched)
{
	struct tb t;
	setup(&t);
	uint32_t p[114];
	uint32_t n = 0;
	for (uint32_t i = 0; i < 100; i++)
		p[n++] = pfn(DATA_GPA) + 1000 + i; /* one run */
	for (uint32_t i = 0; i < 10; i++)
		p[n++] = pfn(DATA_GPA) + 3000 + i; /* another */
	p[n++] = pfn(DATA_GPA) + 5000;             /* descending: separate calls */
	p[n++] = pfn(DATA_GPA) + 4999;
	p[n++] = pfn(DATA_GPA) + 1100; /* continues no run: the previous PFN was 4999 */
	p[n++] = pfn(DATA_GPA) + 1101;
	send_pfns(&t, 0, p, n);
	CHECK_EQ(info(&t).inflated_pages, n);
	CHECK_EQ(mv.calls, 5);
	CHECK_EQ(mv.r[0].len, 100 * PG);
	CHECK_EQ(mv.r[1].len, 10 * PG);
	CHECK_EQ(mv.r[2].len, PG);
	CHECK_EQ(mv.r[3].len, PG);
	CHECK_EQ(mv.r[4].len, 2 * PG);
	CHECK_EQ(mv.bytes, n * PG);
	teardown(&t);
}

TEST(per_request_cap)
{
	struct tb t;
	setup(&t);
	const uint32_t cap = VIRTIO_BALLOON_MAX_PFNS_PER_REQ;
	static uint32_t p[VIRTIO_BALLOON_MAX_PFNS_PER_REQ + 100];
	for (uint32_t i = 0; i < cap; i++)
		p[i] = 0xffffffffu; /* the first `cap` are junk */
	for (uint32_t i = 0; i < 100; i++)
		p[cap + i] = pfn(DATA_GPA) + i; /* valid, but past the cap */
	send_pfns(&t, 0, p, cap + 100);
	CHECK_EQ(vf_used_idx(&t.q[0]), 1);
	CHECK_EQ(info(&t).inflated_pages, 0);
	CHECK_EQ(info(&t).ignored_pfns, cap + 100);
	CHECK_EQ(mv.calls, 0);
	teardown(&t);
}

TEST(inflate_drops_rss_and_deflated_pages_read_zero)
{
	struct tb t;
	setup(&t);
	const uint64_t gpa = 8 * MIB, len = 8 * MIB;
	const uint32_t n = (uint32_t)(len / PG);
	memset(hva(&t, gpa, len), 0x5a, len);
	CHECK_EQ(resident(&t, gpa, len), n);
	static uint32_t p[(8 * MIB) / PG];
	for (uint32_t i = 0; i < n; i++)
		p[i] = pfn(gpa) + i;
	send_pfns(&t, 0, p, n);
	CHECK_EQ(info(&t).inflated_pages, n);
	CHECK_EQ(mv.calls, 1);
	CHECK_EQ(resident(&t, gpa, len), 0); /* gone from visor's RSS */
	/* untouched neighbours are still there */
	memset(hva(&t, gpa + len, PG), 0x5a, PG);
	CHECK_EQ(resident(&t, gpa + len, PG), 1);

	send_pfns(&t, 1, p, n);
	CHECK_EQ(info(&t).inflated_pages, 0);
	const uint8_t *q = hva(&t, gpa, len);
	uint64_t nonzero = 0;
	for (uint64_t i = 0; i < len; i++)
		nonzero += q[i] != 0;
	CHECK_EQ(nonzero, 0);
	CHECK_EQ(*hva(&t, gpa + len, 1), 0x5a);
	CHECK_EQ(info(&t).discard_errors, 0);
	teardown(&t);
}

TEST(free_page_reporting_discards_the_reported_ranges)
{
	struct tb t;
	setup(&t);
	const uint64_t base = 12 * MIB;
	memset(hva(&t, base, 4 * MIB), 0x77, 4 * MIB);
	CHECK_EQ(resident(&t, base, 4 * MIB), 4 * MIB / PG);
	/* Linux adds reported pages as device-writable buffers; a readable
	 * one is accepted as well. */
	struct vf_seg s[] = {
		{base + 3 * MIB + 512, 1000, false},        /* no whole page */
		{base, 2 * MIB, true},                      /* aligned */
		{base + 2 * MIB + 100, (uint32_t)MIB, true}, /* interior [+4K, +1M) */
	};
	uint16_t h = vf_chain(&t.q[3], s, 3);
	notify(&t, 3);
	CHECK_EQ(vf_used_idx(&t.q[3]), 1);
	CHECK_EQ(vf_used_id(&t.q[3], 0), h);
	CHECK_EQ(vf_used_len(&t.q[3], 0), 0);
	CHECK_EQ(mv.calls, 2);
	CHECK(mv.r[0].p == hva(&t, base, PG));
	CHECK_EQ(mv.r[0].len, 2 * MIB);
	CHECK(mv.r[1].p == hva(&t, base + 2 * MIB + PG, PG));
	CHECK_EQ(mv.r[1].len, MIB - PG);
	CHECK_EQ(resident(&t, base, 2 * MIB), 0);
	CHECK_EQ(resident(&t, base + 2 * MIB, PG), 1); /* partly reported: kept */
	CHECK_EQ(resident(&t, base + 2 * MIB + PG, MIB - PG), 0);
	CHECK_EQ(resident(&t, base + 3 * MIB, MIB), MIB / PG);
	CHECK_EQ(*hva(&t, base + 2 * MIB + 99, 1), 0x77);
	CHECK_EQ(*hva(&t, base + 3 * MIB + 600, 1), 0x77);
	struct virtio_balloon_info i = info(&t);
	CHECK_EQ(i.reported_bytes, 3 * MIB - PG);
	CHECK_EQ(i.inflated_pages, 0); /* reports are not the balloon */
	CHECK(i.page_reporting);
	CHECK(!mv.outside);
	/* a report reaching past RAM is a ring violation (virtq_pop): broken,
	 * and nothing discarded */
	struct vf_seg bad[] = {{RAM_END - PG, 2 * PG, true}};
	vf_chain(&t.q[3], bad, 1);
	notify(&t, 3);
	CHECK(dev(&t)->broken);
	CHECK_EQ(mv.calls, 2);
	teardown(&t);
}

TEST(reporting_queue_numbering)
{
	/* REPORTING without STATS: Linux puts reporting_vq at index 2 */
	struct tb t;
	setup_dev(&t, 0, false, 0, NULL);
	drv_up(&t, F_REPORT, 0x7);
	struct vf_seg s = {DATA_GPA, 2 * PG, true};
	vf_chain(&t.q[2], &s, 1);
	notify(&t, 2);
	CHECK_EQ(vf_used_idx(&t.q[2]), 1);
	CHECK_EQ(mv.calls, 1);
	CHECK_EQ(virtio_balloon_request_stats(&t.b), -EOPNOTSUPP);
	teardown(&t);

	/* the spec's fixed slot: STATS + REPORTING, queue 4 set up, 3 not */
	setup_dev(&t, 0, false, 0, NULL);
	drv_up(&t, F_STATS | F_REPORT, 0x17);
	vf_chain(&t.q[4], &s, 1);
	notify(&t, 4);
	CHECK_EQ(vf_used_idx(&t.q[4]), 1);
	CHECK_EQ(mv.calls, 1);
	notify(&t, 3); /* not ready, no role: ignored */
	CHECK(!dev(&t)->broken);
	teardown(&t);

	/* REPORTING not negotiated: nothing on queues 2..4 is a report */
	setup_dev(&t, 0, false, 0, NULL);
	drv_up(&t, 0, 0x1f);
	vf_chain(&t.q[3], &s, 1);
	notify(&t, 3);
	vf_chain(&t.q[2], &s, 1);
	notify(&t, 2);
	CHECK_EQ(vf_used_idx(&t.q[3]), 0);
	CHECK_EQ(vf_used_idx(&t.q[2]), 0);
	CHECK_EQ(mv.calls, 0);
	teardown(&t);
}

/* A stats buffer of @n entries in guest memory. */
static uint64_t put_stats(struct tb *t, const uint16_t *tags, const uint64_t *vals, uint32_t n)
{
	uint64_t g = alloc_buf(t, 10ull * n);
	uint8_t *p = hva(t, g, 10ull * n);
	for (uint32_t i = 0; i < n; i++) {
		uint16_t tag = htole16(tags[i]);
		uint64_t val = htole64(vals[i]);
		memcpy(p + 10ull * i, &tag, 2);
		memcpy(p + 10ull * i + 2, &val, 8);
	}
	return g;
}

static int hook_calls;
static struct virtio_balloon_stats hook_last;

static void count_hook(void *ctx, const struct virtio_balloon_stats *s)
{
	hook_calls++;
	hook_last = *s;
	*(int *)ctx += 1;
}

TEST(stats_parse_hold_and_request)
{
	struct tb t;
	setup_dev(&t, 0, false, 0, NULL);
	struct virtio_balloon_stats st;
	CHECK_EQ(virtio_balloon_request_stats(&t.b), -ENODEV); /* not up */
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), -ENODATA);
	drv_up(&t, F_STATS | F_REPORT, 0xf);
	int ctx = 0;
	hook_calls = 0;
	virtio_balloon_set_stats_hook(&t.b, count_hook, &ctx);
	CHECK_EQ(virtio_balloon_request_stats(&t.b), -EAGAIN); /* no buffer yet */

	const uint16_t tags[] = {VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT, 77,
				 VIRTIO_BALLOON_S_MAJFLT, VIRTIO_BALLOON_S_MEMFREE,
				 VIRTIO_BALLOON_S_HTLB_PGFAIL};
	const uint64_t vals[] = {100, 1000, 5, 7, 200, 0xffffffffffffffffull};
	uint16_t h = send(&t, 2, put_stats(&t, tags, vals, 6), 60);
	CHECK_EQ(vf_used_idx(&t.q[2]), 0); /* held */
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), 0);
	CHECK_EQ(st.valid, (1u << VIRTIO_BALLOON_S_MEMFREE) | (1u << VIRTIO_BALLOON_S_MEMTOT) |
				   (1u << VIRTIO_BALLOON_S_MAJFLT) |
				   (1u << VIRTIO_BALLOON_S_HTLB_PGFAIL));
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_MEMFREE], 200); /* the later entry wins */
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_MEMTOT], 1000);
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_MAJFLT], 7);
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_HTLB_PGFAIL], 0xffffffffffffffffull);
	CHECK_EQ(st.updates, 1);
	CHECK(st.updated_ns != 0);
	CHECK_EQ(hook_calls, 1);
	CHECK_EQ(ctx, 1);
	CHECK_EQ(hook_last.val[VIRTIO_BALLOON_S_MEMFREE], 200);
	virtio_balloon_log_stats(NULL, &st); /* smoke: formats without trouble */

	/* on request the buffer goes back to the driver */
	vf_queue_signals = 0;
	CHECK_EQ(virtio_balloon_request_stats(&t.b), 0);
	CHECK_EQ(vf_used_idx(&t.q[2]), 1);
	CHECK_EQ(vf_used_id(&t.q[2], 0), h);
	CHECK_EQ(vf_used_len(&t.q[2], 0), 0);
	CHECK_EQ(vf_queue_signals, 1);
	CHECK_EQ(virtio_balloon_request_stats(&t.b), -EAGAIN); /* driver refilling */
	/* the driver refills it */
	const uint16_t t2[] = {VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT};
	const uint64_t v2[] = {300, 1000};
	send(&t, 2, put_stats(&t, t2, v2, 2), 20);
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), 0);
	CHECK_EQ(st.updates, 2);
	/* exactly what this buffer supplied */
	CHECK_EQ(st.valid, (1u << VIRTIO_BALLOON_S_MEMFREE) | (1u << VIRTIO_BALLOON_S_MEMTOT));
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_MEMFREE], 300);
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_MAJFLT], 0);
	CHECK_EQ(hook_calls, 2);
	virtio_balloon_set_stats_hook(&t.b, NULL, NULL);
	CHECK_EQ(virtio_balloon_request_stats(&t.b), 0);
	send(&t, 2, put_stats(&t, t2, v2, 2), 20);
	CHECK_EQ(hook_calls, 2);
	CHECK(!dev(&t)->broken);
	teardown(&t);
}

TEST(stats_buffer_is_bounded)
{
	struct tb t;
	setup(&t);
	/* 1 MiB of entries: only the first VIRTIO_BALLOON_MAX_STATS count */
	const uint32_t n = (uint32_t)(MIB / 10);
	uint64_t g = DATA_GPA;
	uint8_t *p = hva(&t, g, 10ull * n);
	for (uint32_t i = 0; i < n; i++) {
		uint16_t tag = htole16(VIRTIO_BALLOON_S_MEMFREE);
		uint64_t val = htole64(i);
		memcpy(p + 10ull * i, &tag, 2);
		memcpy(p + 10ull * i + 2, &val, 8);
	}
	uint64_t t0 = now_ns();
	send(&t, 2, g, 10 * n);
	CHECK(now_ns() - t0 < 100000000ull);
	struct virtio_balloon_stats st;
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), 0);
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_MEMFREE], VIRTIO_BALLOON_MAX_STATS - 1);

	/* 2 entries and 5 trailing bytes, split across two descriptors in
	 * the middle of an entry */
	CHECK_EQ(virtio_balloon_request_stats(&t.b), 0);
	const uint16_t tags[] = {VIRTIO_BALLOON_S_CACHES, VIRTIO_BALLOON_S_AVAIL, 1};
	const uint64_t vals[] = {11, 22, 33};
	uint64_t b = put_stats(&t, tags, vals, 3);
	struct vf_seg s[] = {{b, 13, false}, {b + 13, 12, false}};
	vf_chain(&t.q[2], s, 2);
	notify(&t, 2);
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), 0);
	CHECK_EQ(st.valid, (1u << VIRTIO_BALLOON_S_CACHES) | (1u << VIRTIO_BALLOON_S_AVAIL));
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_CACHES], 11);
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_AVAIL], 22);

	/* shorter than one entry: an update without values */
	CHECK_EQ(virtio_balloon_request_stats(&t.b), 0);
	send(&t, 2, b, 9);
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), 0);
	CHECK_EQ(st.valid, 0);
	CHECK_EQ(st.updates, 3);
	CHECK(!dev(&t)->broken);
	teardown(&t);
}

TEST(second_stats_buffer_returns_the_first)
{
	struct tb t;
	setup(&t);
	const uint16_t tag[] = {VIRTIO_BALLOON_S_MEMFREE};
	const uint64_t v1[] = {1}, v2[] = {2};
	uint16_t h1 = send(&t, 2, put_stats(&t, tag, v1, 1), 10);
	uint16_t h2 = send(&t, 2, put_stats(&t, tag, v2, 1), 10);
	CHECK(h1 != h2);
	CHECK_EQ(vf_used_idx(&t.q[2]), 1);
	CHECK_EQ(vf_used_id(&t.q[2], 0), h1);
	struct virtio_balloon_stats st;
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), 0);
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_MEMFREE], 2);
	CHECK_EQ(virtio_balloon_request_stats(&t.b), 0);
	CHECK_EQ(vf_used_idx(&t.q[2]), 2);
	CHECK_EQ(vf_used_id(&t.q[2], 1), h2);
	teardown(&t);
}

TEST(stats_buffer_queued_before_driver_ok)
{
	/* Linux's virtballoon_probe: the first stats buffer is queued and
	 * statsq kicked before DRIVER_OK.  The kick is ignored (not live);
	 * the core replays a notification of every active queue through the
	 * transport once the device is up, and the loop finds the buffer. */
	struct tb t;
	setup_dev(&t, 0, false, 0, NULL);
	drv_setup(&t, F_STATS | F_REPORT, 0xf);
	const uint16_t tag[] = {VIRTIO_BALLOON_S_MEMFREE};
	const uint64_t v[] = {7 * MIB};
	uint16_t h = send(&t, 2, put_stats(&t, tag, v, 1), 10);
	struct virtio_balloon_stats st;
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), -ENODATA);
	CHECK_EQ(vf_replays, 0);
	drv_ok(&t);
	/* the status write (a vCPU thread) only asked for the replays */
	CHECK_EQ(vf_replays, 4);
	CHECK_EQ(vf_replay_pending, 0xf);
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), -ENODATA);
	vf_run_replays(dev(&t)); /* the loop */
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), 0);
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_MEMFREE], 7 * MIB);
	/* held, as if it had arrived after DRIVER_OK */
	CHECK_EQ(vf_used_idx(&t.q[2]), 0);
	CHECK_EQ(virtio_balloon_request_stats(&t.b), 0);
	CHECK_EQ(vf_used_idx(&t.q[2]), 1);
	CHECK_EQ(vf_used_id(&t.q[2], 0), h);
	/* the other queues were looked at and had nothing */
	CHECK_EQ(info(&t).inflated_pages, 0);
	CHECK_EQ(mv.calls, 0);
	teardown(&t);
}

TEST(inflate_before_driver_ok_happens_after_it)
{
	struct tb t;
	setup_dev(&t, 0, false, 0, NULL);
	drv_setup(&t, F_STATS, 0x7);
	uint32_t p[4];
	for (uint32_t i = 0; i < 4; i++)
		p[i] = pfn(DATA_GPA) + i;
	send_pfns(&t, 0, p, 4);
	CHECK_EQ(info(&t).inflated_pages, 0);
	drv_ok(&t);
	CHECK_EQ(vf_replays, 3);
	vf_run_replays(dev(&t));
	CHECK_EQ(info(&t).inflated_pages, 4);
	CHECK_EQ(vf_used_idx(&t.q[0]), 1);
	/* a device that fails to come up replays nothing */
	reset_dev(&t);
	memset(hva(&t, RING_GPA(0), 0x4000 * NQ), 0, 0x4000 * NQ);
	vf_replays = 0;
	drv_setup(&t, F_STATS, 0x7);
	pthread_mutex_lock(&dev(&t)->lock);
	dev(&t)->vqs[1].desc_gpa = 1; /* misaligned: activation refused */
	pthread_mutex_unlock(&dev(&t)->lock);
	drv_ok(&t);
	CHECK(dev(&t)->broken);
	CHECK_EQ(vf_replays, 0);
	teardown(&t);
}

TEST(stats_timer)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct tb t;
	setup_dev(&t, 0, false, 1, &lp);
	CHECK(t.b.timer_fd >= 0);
	struct itimerspec its;
	CHECK_EQ(timerfd_gettime(t.b.timer_fd, &its), 0);
	CHECK_EQ(its.it_interval.tv_sec, 1);
	CHECK_EQ(its.it_interval.tv_nsec, 0);
	virtio_balloon_stats_tick(&t.b); /* nothing to do before the driver is up */
	drv_up(&t, F_STATS, 0x7);
	virtio_balloon_stats_tick(&t.b); /* nor before it gave a buffer */
	const uint16_t tag[] = {VIRTIO_BALLOON_S_MEMFREE};
	const uint64_t v[] = {42};
	uint64_t g = put_stats(&t, tag, v, 1);
	uint16_t h = send(&t, 2, g, 10);
	CHECK_EQ(vf_used_idx(&t.q[2]), 0);
	/* the timer callback, driven directly */
	virtio_balloon_stats_tick(&t.b);
	CHECK_EQ(vf_used_idx(&t.q[2]), 1);
	CHECK_EQ(vf_used_id(&t.q[2], 0), h);

	/* and for real: the loop's timer returns the next buffer within a
	 * period or two */
	send(&t, 2, g, 10);
	struct loop_runner lr;
	CHECK_EQ(loop_runner_start(&lr, &lp), 0);
	uint64_t t0 = now_ns();
	while (vf_used_idx(&t.q[2]) < 2 && now_ns() - t0 < 3000000000ull)
		usleep(10000);
	CHECK_EQ(loop_runner_stop(&lr), 0);
	CHECK_EQ(vf_used_idx(&t.q[2]), 2);
	teardown(&t);
	loop_destroy(&lp);
}

TEST(reset_forgets_the_balloon)
{
	struct tb t;
	setup_dev(&t, 16 * MIB, false, 0, NULL);
	drv_up(&t, F_STATS | F_REPORT, 0xf);
	uint32_t p[10];
	for (uint32_t i = 0; i < 10; i++)
		p[i] = pfn(DATA_GPA) + i;
	send_pfns(&t, 0, p, 10);
	cfg_write32(&t, VIRTIO_BALLOON_CFG_ACTUAL, 10);
	const uint16_t tag[] = {VIRTIO_BALLOON_S_MEMFREE};
	const uint64_t v[] = {1};
	send(&t, 2, put_stats(&t, tag, v, 1), 10);
	CHECK_EQ(info(&t).inflated_pages, 10);

	reset_dev(&t);
	CHECK_EQ(dev(&t)->status, 0);
	struct virtio_balloon_info i = info(&t);
	CHECK_EQ(i.inflated_pages, 0);
	CHECK_EQ(i.actual_pages, 0);
	CHECK_EQ(i.target_pages, 16 * MIB / PG); /* the host's target stays */
	CHECK(!i.stats_vq);
	struct virtio_balloon_stats st;
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), -ENODATA);
	CHECK_EQ(virtio_balloon_request_stats(&t.b), -ENODEV);

	/* up again: the same pages can be inflated anew */
	memset(hva(&t, RING_GPA(0), 0x4000 * NQ), 0, 0x4000 * NQ);
	vf_queue_signals = 0;
	drv_up(&t, F_STATS, 0x7);
	mv_reset(&t.mem);
	send_pfns(&t, 0, p, 10);
	CHECK_EQ(info(&t).inflated_pages, 10);
	CHECK_EQ(mv.calls, 1);
	CHECK_EQ(virtio_balloon_request_stats(&t.b), -EAGAIN);
	teardown(&t);
}

TEST(ring_violation_breaks_device)
{
	struct tb t;
	setup(&t);
	struct vf_seg s = {BUF_GPA, 0, false}; /* zero-length descriptor */
	vf_chain(&t.q[0], &s, 1);
	notify(&t, 0);
	CHECK(dev(&t)->broken);
	CHECK_EQ(vf_used_idx(&t.q[0]), 0);
	CHECK_EQ(vf_config_signals, 1);
	CHECK_EQ(mv.calls, 0);
	CHECK_EQ(virtio_balloon_request_stats(&t.b), -ENODEV);
	/* the target can still be set */
	CHECK_EQ(virtio_balloon_set_target(&t.b, MIB), 0);
	reset_dev(&t);
	CHECK_EQ(dev(&t)->status, 0);
	teardown(&t);
}

TEST(inflating_its_own_rings_is_host_safe)
{
	/* E.35: the driver balloons the pages holding inflateq's rings and
	 * the PFN buffer itself.  The guest loses them (zeros); the host only
	 * discards guest RAM, and at worst the device breaks. */
	struct tb t;
	setup(&t);
	uint64_t buf = alloc_buf(&t, 16);
	uint32_t p[] = {pfn(RING_GPA(0)), pfn(RING_GPA(0) + 0x1000), pfn(RING_GPA(0) + 0x2000),
			pfn(buf)};
	for (uint32_t i = 0; i < 4; i++) {
		uint32_t le = htole32(p[i]);
		memcpy(hva(&t, buf + 4 * i, 4), &le, 4);
	}
	send(&t, 0, buf, 16);
	CHECK(!mv.outside);
	CHECK(mv.calls >= 1);
	CHECK_EQ(info(&t).inflated_pages, 4);
	/* the next notification finds zeroed rings */
	notify(&t, 0);
	reset_dev(&t);
	CHECK_EQ(dev(&t)->status, 0);
	teardown(&t);
}

TEST(budget_yields_to_the_loop)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct tb t;
	setup_dev(&t, 0, false, 0, &lp);
	drv_up(&t, F_STATS, 0x7);
	CHECK(t.b.deferred.fd >= 0);
	CHECK_EQ(t.b.timer_fd, -1);
	/* 6 requests of 16384 PFNs (4096 distinct pages, each 4 times): one
	 * pass may do 65536 pages of work, i.e. 4 of them */
	const uint32_t n = VIRTIO_BALLOON_MAX_PFNS_PER_REQ;
	static uint32_t p[VIRTIO_BALLOON_MAX_PFNS_PER_REQ];
	for (uint32_t i = 0; i < n; i++)
		p[i] = pfn(16 * MIB) + i % 4096;
	uint64_t g = put_pfns(&t, p, n, 0);
	for (int i = 0; i < 6; i++) {
		struct vf_seg s = {g, 4 * n, false};
		vf_chain(&t.q[0], &s, 1);
	}
	notify(&t, 0);
	CHECK_EQ(vf_used_idx(&t.q[0]), 4);
	CHECK_EQ(info(&t).inflated_pages, 4096);
	struct pollfd pf = {.fd = t.b.deferred.fd, .events = POLLIN};
	CHECK_EQ(poll(&pf, 1, 0), 1);
	uint64_t v;
	CHECK_EQ(read(t.b.deferred.fd, &v, sizeof(v)), sizeof(v));
	virtio_deferred_run(&t.b.deferred);
	CHECK_EQ(vf_used_idx(&t.q[0]), 6);
	CHECK_EQ(poll(&pf, 1, 0), 0);
	/* a resume after a reset does nothing */
	reset_dev(&t);
	virtio_deferred_run(&t.b.deferred);
	CHECK_EQ(vf_used_idx(&t.q[0]), 6);
	teardown(&t);
	loop_destroy(&lp);
}

/* ---- pause / resume (VM lifecycle) ---- */

/* The used rings and consumed avail positions of every queue. */
struct frozen {
	uint8_t used[NQ][4 + 8 * QSIZE];
	uint16_t last_avail[NQ];
};

static void freeze(struct tb *t, struct frozen *f)
{
	for (int q = 0; q < NQ; q++) {
		memcpy(f->used[q], hva(t, t->q[q].used, sizeof(f->used[q])), sizeof(f->used[q]));
		f->last_avail[q] = dev(t)->vqs[q].last_avail;
	}
}

static bool still_frozen(struct tb *t, const struct frozen *f)
{
	for (int q = 0; q < NQ; q++)
		if (memcmp(f->used[q], hva(t, t->q[q].used, sizeof(f->used[q])),
			   sizeof(f->used[q])) ||
		    f->last_avail[q] != dev(t)->vqs[q].last_avail)
			return false;
	return true;
}

TEST(pause_holds_every_request_until_resume)
{
	struct tb t;
	setup(&t); /* inflate 0, deflate 1, stats 2, reporting 3 */
	const uint16_t tag[] = {VIRTIO_BALLOON_S_MEMFREE};
	const uint64_t v1[] = {111};
	uint16_t sh = send(&t, 2, put_stats(&t, tag, v1, 1), 10); /* held by the device */
	uint32_t p[64];
	for (uint32_t i = 0; i < 64; i++)
		p[i] = pfn(DATA_GPA) + i;
	send_pfns(&t, 0, p, 64);
	CHECK_EQ(info(&t).inflated_pages, 64);
	int calls = mv.calls;

	virtio_dev_pause(dev(&t));
	struct frozen fz;
	freeze(&t, &fz);
	int signals = vf_queue_signals;
	/* everything the driver does meanwhile waits */
	uint32_t p2[32];
	for (uint32_t i = 0; i < 32; i++)
		p2[i] = pfn(DATA_GPA) + 64 + i;
	send_pfns(&t, 0, p2, 32);
	send_pfns(&t, 1, p, 16);
	const uint64_t v2[] = {222};
	send(&t, 2, put_stats(&t, tag, v2, 1), 10); /* a second buffer (not allowed, handled) */
	struct vf_seg rs = {12 * MIB, (uint32_t)MIB, true};
	vf_chain(&t.q[3], &rs, 1);
	notify(&t, 3);
	CHECK_EQ(virtio_balloon_request_stats(&t.b), -EBUSY);
	virtio_balloon_stats_tick(&t.b);
	CHECK(still_frozen(&t, &fz));
	CHECK_EQ(vf_queue_signals, signals);
	CHECK_EQ(mv.calls, calls);
	struct virtio_balloon_info i = info(&t);
	CHECK_EQ(i.inflated_pages, 64);
	CHECK_EQ(i.reported_bytes, 0);
	struct virtio_balloon_stats st;
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), 0);
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_MEMFREE], 111);
	/* the target may change while paused: config space and interrupt */
	CHECK_EQ(virtio_balloon_set_target(&t.b, 8 * MIB), 0);
	CHECK_EQ(cfg32(&t, VIRTIO_BALLOON_CFG_NUM_PAGES), 2048);
	CHECK_EQ(vf_config_signals, 1);
	CHECK(still_frozen(&t, &fz));

	/* resume: each request once */
	virtio_dev_resume(dev(&t));
	i = info(&t);
	CHECK_EQ(vf_used_idx(&t.q[0]), 2);
	CHECK_EQ(vf_used_idx(&t.q[1]), 1);
	CHECK_EQ(vf_used_idx(&t.q[3]), 1);
	CHECK_EQ(i.inflated_pages, 64 + 32 - 16);
	CHECK_EQ(i.reported_bytes, MIB);
	CHECK_EQ(i.ignored_pfns, 0);
	CHECK_EQ(vf_used_idx(&t.q[2]), 1); /* the older stats buffer came back */
	CHECK_EQ(vf_used_id(&t.q[2], 0), sh);
	CHECK_EQ(virtio_balloon_get_stats(&t.b, &st), 0);
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_MEMFREE], 222);
	CHECK_EQ(st.updates, 2);
	CHECK(vf_queue_signals > signals);
	CHECK(!dev(&t)->broken);
	teardown(&t);
}

TEST(pause_holds_a_pass_the_budget_cut_short)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct tb t;
	setup_dev(&t, 0, false, 0, &lp);
	drv_up(&t, F_STATS, 0x7);
	const uint32_t n = VIRTIO_BALLOON_MAX_PFNS_PER_REQ;
	static uint32_t p[VIRTIO_BALLOON_MAX_PFNS_PER_REQ];
	for (uint32_t i = 0; i < n; i++)
		p[i] = pfn(16 * MIB) + i % 4096;
	uint64_t g = put_pfns(&t, p, n, 0);
	for (int i = 0; i < 6; i++) {
		struct vf_seg s = {g, 4 * n, false};
		vf_chain(&t.q[0], &s, 1);
	}
	notify(&t, 0);
	CHECK_EQ(vf_used_idx(&t.q[0]), 4);
	virtio_dev_pause(dev(&t));
	struct frozen fz;
	freeze(&t, &fz);
	/* the loop continues the pass: not while paused */
	uint64_t v;
	CHECK_EQ(read(t.b.deferred.fd, &v, sizeof(v)), sizeof(v));
	virtio_deferred_run(&t.b.deferred);
	CHECK(still_frozen(&t, &fz));
	CHECK_EQ(t.b.metrics.inflate_count, 4);
	virtio_dev_resume(dev(&t));
	CHECK_EQ(vf_used_idx(&t.q[0]), 6);
	CHECK_EQ(t.b.metrics.inflate_count, 6);
	CHECK_EQ(info(&t).inflated_pages, 4096);
	teardown(&t);
	loop_destroy(&lp);
}

static time_t timer_interval(struct tb *t, time_t *value)
{
	struct itimerspec its;
	if (timerfd_gettime(t->b.timer_fd, &its) < 0)
		abort();
	*value = its.it_value.tv_sec + (its.it_value.tv_nsec ? 1 : 0);
	return its.it_interval.tv_sec;
}

TEST(pause_stops_the_stats_timer)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct tb t;
	setup_dev(&t, 0, false, 1, &lp);
	drv_up(&t, F_STATS, 0x7);
	const uint16_t tag[] = {VIRTIO_BALLOON_S_MEMFREE};
	const uint64_t v[] = {42};
	send(&t, 2, put_stats(&t, tag, v, 1), 10);
	time_t value;
	CHECK_EQ(timer_interval(&t, &value), 1);
	virtio_dev_pause(dev(&t));
	CHECK_EQ(timer_interval(&t, &value), 0);
	CHECK_EQ(value, 0); /* disarmed */
	virtio_balloon_stats_tick(&t.b); /* an expiry fetched before: ignored */
	CHECK_EQ(vf_used_idx(&t.q[2]), 0);
	/* a new period while paused applies from the resume */
	CHECK_EQ(virtio_balloon_set_stats_period(&t.b, 3), 0);
	CHECK_EQ(timer_interval(&t, &value), 0);
	CHECK_EQ(virtio_balloon_set_stats_period(&t.b, 0), -EINVAL);
	virtio_dev_resume(dev(&t));
	CHECK_EQ(timer_interval(&t, &value), 3);
	CHECK(value >= 1 && value <= 3);
	CHECK_EQ(info(&t).stats_period_s, 3);
	virtio_balloon_stats_tick(&t.b);
	CHECK_EQ(vf_used_idx(&t.q[2]), 1);
	struct virtio_balloon_metrics m;
	virtio_balloon_get_metrics(&t.b, &m);
	CHECK_EQ(m.stats_update_fails, 0);
	teardown(&t);
	loop_destroy(&lp);
}

TEST(set_stats_period_keeps_firecrackers_rule)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct tb t;
	/* statistics off: they cannot be switched on */
	setup_dev(&t, 0, false, 0, &lp);
	CHECK_EQ(virtio_balloon_set_stats_period(&t.b, 5), -EINVAL);
	CHECK_EQ(virtio_balloon_set_stats_period(&t.b, 0), 0);
	CHECK_EQ(info(&t).stats_period_s, 0);
	CHECK_EQ(t.b.timer_fd, -1);
	teardown(&t);
	/* statistics on: another period, but not off */
	setup_dev(&t, 0, false, 2, &lp);
	time_t value;
	CHECK_EQ(timer_interval(&t, &value), 2);
	CHECK_EQ(virtio_balloon_set_stats_period(&t.b, 0), -EINVAL);
	CHECK_EQ(timer_interval(&t, &value), 2);
	CHECK_EQ(virtio_balloon_set_stats_period(&t.b, 7), 0);
	CHECK_EQ(timer_interval(&t, &value), 7);
	CHECK(value >= 6 && value <= 7); /* a whole period from now */
	CHECK_EQ(info(&t).stats_period_s, 7);
	CHECK_EQ(virtio_balloon_set_stats_period(&t.b, 7), 0);
	CHECK_EQ(virtio_balloon_set_stats_period(&t.b, UINT32_MAX), 0);
	CHECK_EQ(timer_interval(&t, &value), (time_t)UINT32_MAX);
	teardown(&t);
	/* without a loop (no timer) the period is only recorded */
	setup_dev(&t, 0, false, 1, NULL);
	CHECK_EQ(virtio_balloon_set_stats_period(&t.b, 4), 0);
	CHECK_EQ(info(&t).stats_period_s, 4);
	CHECK_EQ(virtio_balloon_set_stats_period(&t.b, 0), -EINVAL);
	teardown(&t);
	loop_destroy(&lp);
}

TEST(metrics_count_requests_pages_stats_and_reports)
{
	struct tb t;
	setup(&t);
	struct virtio_balloon_metrics m;
	virtio_balloon_get_metrics(&t.b, &m);
	CHECK_EQ(m.inflate_count + m.deflate_count + m.stats_updates_count, 0);
	uint32_t p[10];
	for (uint32_t i = 0; i < 10; i++)
		p[i] = pfn(DATA_GPA) + i;
	send_pfns(&t, 0, p, 10);
	send_pfns(&t, 0, p, 10); /* duplicates: ignored */
	send_pfns(&t, 1, p, 4);
	struct vf_seg rs = {12 * MIB, (uint32_t)(2 * MIB), true};
	vf_chain(&t.q[3], &rs, 1);
	notify(&t, 3);
	virtio_balloon_stats_tick(&t.b); /* no stats buffer held: a failed refresh */
	const uint16_t tag[] = {VIRTIO_BALLOON_S_MEMFREE};
	const uint64_t v[] = {1};
	send(&t, 2, put_stats(&t, tag, v, 1), 10);
	virtio_balloon_stats_tick(&t.b); /* returned */
	send(&t, 2, put_stats(&t, tag, v, 1), 10);
	virtio_balloon_get_metrics(&t.b, &m);
	CHECK_EQ(m.inflate_count, 2);
	CHECK_EQ(m.deflate_count, 1);
	CHECK_EQ(m.inflated_pages, 10);
	CHECK_EQ(m.deflated_pages, 4);
	CHECK_EQ(m.ignored_pfns, 10);
	CHECK_EQ(m.free_page_report_count, 1);
	CHECK_EQ(m.free_page_report_freed, 2 * MIB);
	CHECK_EQ(m.free_page_report_fails, 0);
	CHECK_EQ(m.stats_updates_count, 2);
	CHECK_EQ(m.stats_update_fails, 1);
	CHECK_EQ(m.discard_errors, 0);
	/* a failing discard inside a report */
	mv.mem = NULL; /* counting_madvise refuses everything now */
	vf_chain(&t.q[3], &rs, 1);
	notify(&t, 3);
	virtio_balloon_get_metrics(&t.b, &m);
	CHECK_EQ(m.free_page_report_fails, 1);
	CHECK_EQ(m.discard_errors, 1);
	/* a reset keeps them */
	reset_dev(&t);
	virtio_balloon_get_metrics(&t.b, &m);
	CHECK_EQ(m.inflate_count, 2);
	CHECK_EQ(m.free_page_report_count, 2);
	teardown(&t);
}

/* ---- the run-time controls on the event-loop thread ---- */

struct ctl {
	struct tb *t;
	pthread_t thread;      /* where the handler ran */
	int rounds, bad;       /* handled; results that were wrong */
	uint32_t last_target;  /* pages */
};

/* An API request handled on the loop thread: every control once. */
static void on_control(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct ctl *c = ctx;
	uint64_t n;
	(void)!read(fd, &n, sizeof(n));
	for (uint64_t k = 0; k < n; k++) {
		int i = __atomic_load_n(&c->rounds, __ATOMIC_RELAXED);
		uint32_t pages = (uint32_t)((i % 9) * 256);
		if (virtio_balloon_set_target(&c->t->b, (uint64_t)pages * PG))
			c->bad++;
		struct virtio_balloon_info bi;
		if (virtio_balloon_get_info(&c->t->b, &bi) || bi.target_pages != pages)
			c->bad++;
		struct virtio_balloon_stats st;
		int r = virtio_balloon_get_stats(&c->t->b, &st);
		if (r && r != -ENODATA)
			c->bad++;
		if (virtio_balloon_set_stats_period(&c->t->b, 1 + (uint32_t)(i % 3)))
			c->bad++;
		if (virtio_balloon_set_stats_period(&c->t->b, 0) != -EINVAL)
			c->bad++;
		r = virtio_balloon_request_stats(&c->t->b);
		if (r && r != -EAGAIN)
			c->bad++;
		struct virtio_balloon_metrics m;
		virtio_balloon_get_metrics(&c->t->b, &m);
		c->last_target = pages;
		c->thread = pthread_self();
		__atomic_store_n(&c->rounds, i + 1, __ATOMIC_RELEASE);
	}
}

TEST(controls_are_safe_on_the_loop_thread_while_the_guest_runs)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct tb t;
	setup_dev(&t, 0, false, 1, &lp);
	drv_up(&t, F_STATS | F_REPORT, 0xf);
	struct ctl c = {.t = &t};
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(efd >= 0);
	CHECK_EQ(loop_add(&lp, efd, EPOLLIN, on_control, &c), 0);
	struct loop_runner lr;
	CHECK_EQ(loop_runner_start(&lr, &lp), 0);
	/* this thread is the guest: config reads and writes (vCPU register
	 * accesses) and requests on every queue, while the loop serves the
	 * controls */
	const uint16_t tag[] = {VIRTIO_BALLOON_S_MEMFREE};
	const uint64_t v[] = {5};
	uint32_t p[8];
	int want = 300;
	for (int i = 0; i < want; i++) {
		uint64_t one = 1;
		CHECK_EQ(write(efd, &one, sizeof(one)), sizeof(one));
		uint32_t np = cfg32(&t, VIRTIO_BALLOON_CFG_NUM_PAGES);
		CHECK(np % 256 == 0 && np <= 8 * 256);
		cfg_write32(&t, VIRTIO_BALLOON_CFG_ACTUAL, np);
		for (uint32_t k = 0; k < 8; k++)
			p[k] = pfn(DATA_GPA) + (uint32_t)(i % 16) * 8 + k;
		if (i % 2 == 0) {
			if (t.bump + 4096 > BUF_END)
				t.bump = BUF_GPA; /* every request is done when sent */
			send_pfns(&t, (uint16_t)(i % 4 == 0 ? 0 : 1), p, 8);
			send(&t, 2, put_stats(&t, tag, v, 1), 10);
		}
	}
	for (int k = 0; k < 5000 && __atomic_load_n(&c.rounds, __ATOMIC_ACQUIRE) < want; k++)
		usleep(1000);
	CHECK_EQ(loop_runner_stop(&lr), 0);
	CHECK_EQ(c.rounds, want);
	CHECK_EQ(c.bad, 0);
	CHECK(pthread_equal(c.thread, lr.thread));
	CHECK_EQ(info(&t).target_pages, c.last_target);
	CHECK(!dev(&t)->broken);
	loop_del(&lp, efd);
	close(efd);
	teardown(&t);
	loop_destroy(&lp);
}

/* ---- snapshot state ---- */

/* The device's section as the machine writes it: the core's state, then
 * the device's own, in one payload. */
#define PART_FIXED 120 /* the device's part without the bitmap */

static char serr[256];

static void snap_save(struct tb *t, struct snapfile *f)
{
	static struct virtio_dev_state core;
	struct virtio_balloon_state st;
	CHECK_EQ(virtio_dev_state_get(dev(t), &core), 0);
	CHECK_EQ(virtio_balloon_state_get(&t->b, &st), 0);
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "dev.0", VIRTIO_BALLOON_STATE_VERSION);
	virtio_dev_state_encode(&core, &w);
	size_t before = w.len;
	virtio_balloon_state_encode(&st, &w);
	size_t part_len = w.len - before;
	snap_writer_section_end(&w);
	snapfile_from(&w, "dev.0", f);
	f->part = f->plen - part_len;
}

/* Decode and check p[0..len) against @t's device (nothing applied); if
 * accepted and @apply, put the core's state and the device's, restart. */
static int snap_load(struct tb *t, const uint8_t *p, size_t len, bool apply)
{
	static struct virtio_dev_state core;
	struct virtio_balloon_state st;
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	serr[0] = 0;
	int rc = virtio_dev_state_decode(&c, dev(t), &core, serr, sizeof(serr));
	if (!rc)
		rc = virtio_balloon_state_decode(&c, &t->b, &st, serr, sizeof(serr));
	if (!rc)
		rc = snap_cursor_done(&c, "dev.0", serr, sizeof(serr));
	if (!rc)
		rc = virtio_balloon_state_check(&st, &core, serr, sizeof(serr));
	if (rc || !apply)
		return rc;
	CHECK_EQ(virtio_dev_state_put(dev(t), &core), 0);
	rc = virtio_balloon_state_put(&t->b, &st);
	virtio_dev_state_restart(dev(t));
	return rc;
}

/* The payload with @n bytes at offset @off of the device's part replaced
 * by @v (little-endian), loaded (not applied) into @t. */
static int snap_load_patched(struct tb *t, const struct snapfile *f, size_t off, unsigned n,
			     uint64_t v)
{
	uint8_t *copy = malloc(f->plen);
	memcpy(copy, f->p, f->plen);
	for (unsigned i = 0; i < n; i++)
		copy[f->part + off + i] = (uint8_t)(v >> (8 * i));
	int rc = snap_load(t, copy, f->plen, false);
	free(copy);
	return rc;
}

/* A fresh device (target @target, nothing negotiated) over a copy of
 * @from's guest memory, the driver's shadows where @from's are. */
static void setup_restored(struct tb *t, struct tb *from, uint64_t target)
{
	setup_dev(t, target, false, 0, NULL);
	dev(t)->tops = &vf_tops;
	memcpy(t->mem.base, from->mem.base, MEM_SIZE);
	for (uint16_t q = 0; q < NQ; q++) {
		t->q[q] = from->q[q];
		t->q[q].mem = &t->mem;
		t->q[q].dev = dev(t);
	}
	t->bump = from->bump;
	mv_reset(&t->mem);
}

/* @a up: a target, the driver's actual, three pages inflated (one in the
 * upper RAM region), a statistics buffer held; then paused.  *@stats_head
 * the held buffer. */
static void snap_busy(struct tb *a, uint16_t *stats_head)
{
	setup(a);
	CHECK_EQ(virtio_balloon_set_target(&a->b, 16 * MIB), 0);
	cfg_write32(a, VIRTIO_BALLOON_CFG_ACTUAL, 3);
	const uint32_t pfns[] = {pfn(DATA_GPA), pfn(DATA_GPA) + 1, pfn(HOLE_END) + 5};
	send_pfns(a, VIRTIO_BALLOON_Q_INFLATE, pfns, 3);
	const uint16_t tags[] = {VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT};
	const uint64_t vals[] = {123456, 999999};
	*stats_head = send(a, 2, put_stats(a, tags, vals, 2), 20);
	CHECK_EQ(info(a).inflated_pages, 3);
	CHECK(a->b.stats_held);
	virtio_dev_pause(dev(a));
}

TEST(snapshot_round_trip_keeps_target_actual_balloon_and_stats)
{
	static struct tb a, b;
	uint16_t sh;
	snap_busy(&a, &sh);
	struct snapfile f;
	snap_save(&a, &f);
	CHECK_EQ(f.plen - f.part, PART_FIXED + (MEM_SIZE / PG) / 8);

	setup_restored(&b, &a, 0);
	for (size_t n = 0; n < f.plen; n++)
		CHECK_EQ(snap_load(&b, f.p, n, false), -EINVAL);
	uint8_t *longer = calloc(1, f.plen + 1);
	memcpy(longer, f.p, f.plen);
	CHECK_EQ(snap_load(&b, longer, f.plen + 1, false), -EINVAL);
	free(longer);
	CHECK_EQ(dev(&b)->status, 0);
	CHECK_EQ(info(&b).target_pages, 0);

	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	struct virtio_balloon_info ia = info(&a), ib = info(&b);
	CHECK_EQ(ib.target_pages, 16 * MIB / PG);
	CHECK_EQ(ib.target_pages, ia.target_pages);
	CHECK_EQ(ib.actual_pages, 3);
	CHECK_EQ(ib.inflated_pages, 3);
	CHECK(ib.stats_vq && ib.page_reporting);
	CHECK_EQ(cfg32(&b, VIRTIO_BALLOON_CFG_NUM_PAGES), 4096);
	struct virtio_balloon_stats st;
	CHECK_EQ(virtio_balloon_get_stats(&b.b, &st), 0);
	CHECK_EQ(st.updates, 1);
	CHECK_EQ(st.valid, (1u << VIRTIO_BALLOON_S_MEMFREE) | (1u << VIRTIO_BALLOON_S_MEMTOT));
	CHECK_EQ(st.val[VIRTIO_BALLOON_S_MEMFREE], 123456);
	CHECK_EQ(b.b.q_stats, 2);
	CHECK_EQ(b.b.q_report, 3);
	CHECK_EQ(mv.calls, 0); /* nothing discarded at restore */
	vf_run_replays(dev(&b));
	CHECK_EQ(vf_used_idx(&b.q[2]), 0); /* still held */
	/* the held statistics buffer goes back on request */
	CHECK_EQ(virtio_balloon_request_stats(&b.b), 0);
	CHECK_EQ(vf_used_idx(&b.q[2]), 1);
	CHECK_EQ(vf_used_id(&b.q[2], 0), sh);
	/* the balloon's pages are known: deflating one counts, inflating a
	 * page already in it does not */
	const uint32_t d1[] = {pfn(HOLE_END) + 5};
	send_pfns(&b, VIRTIO_BALLOON_Q_DEFLATE, d1, 1);
	const uint32_t i1[] = {pfn(DATA_GPA) + 1, pfn(DATA_GPA) + 2};
	send_pfns(&b, VIRTIO_BALLOON_Q_INFLATE, i1, 2);
	ib = info(&b);
	CHECK_EQ(ib.inflated_pages, 3);
	CHECK_EQ(ib.ignored_pfns, 1);
	CHECK(!dev(&b)->broken);
	/* the original resumes holding its buffer */
	virtio_dev_resume(dev(&a));
	CHECK(a.b.stats_held);
	CHECK_EQ(vf_used_idx(&a.q[2]), 0);
	free(f.buf);
	teardown(&b);
	teardown(&a);

	/* an empty balloon, no statistics: no bitmap in the payload */
	static struct tb c, d;
	setup(&c);
	snap_save(&c, &f);
	CHECK_EQ(f.plen - f.part, PART_FIXED);
	setup_restored(&d, &c, 0);
	CHECK_EQ(snap_load(&d, f.p, f.plen, true), 0);
	CHECK_EQ(info(&d).inflated_pages, 0);
	CHECK_EQ(virtio_balloon_get_stats(&d.b, &st), -ENODATA);
	free(f.buf);
	teardown(&d);
	teardown(&c);
}

TEST(snapshot_refusals)
{
	static struct tb a, b;
	uint16_t sh;
	snap_busy(&a, &sh);
	struct snapfile f;
	snap_save(&a, &f);
	setup_restored(&b, &a, 0);
	CHECK_EQ(snap_load_patched(&b, &f, 0, 4, MEM_SIZE / PG + 1), -EINVAL);
	CHECK(strstr(serr, "more than guest RAM") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, 4, 4, 0xffffffffu), 0); /* actual: the driver's */
	CHECK_EQ(snap_load_patched(&b, &f, 8, 1, 2), -EINVAL);
	CHECK(strstr(serr, "held flag") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, 9, 1, 1), -EINVAL);
	CHECK(strstr(serr, "reserved") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, 10, 2, VIRTIO_BALLOON_QUEUE_MAX), -EINVAL);
	CHECK(strstr(serr, "out of range") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, 12, 4, 1u << VIRTIO_BALLOON_S_NR | 1u << 4), -EINVAL);
	CHECK(strstr(serr, "tags") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, 16, 8, 0), -EINVAL); /* tags without an update */
	CHECK(strstr(serr, "tags") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, 24 + 8 * VIRTIO_BALLOON_S_MAJFLT, 8, 5), -EINVAL);
	CHECK(strstr(serr, "not supplied") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, 104, 8, MEM_SIZE / PG / 2), -EINVAL);
	CHECK(strstr(serr, "guest pages") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, 112, 8, MEM_SIZE / PG + 1), -EINVAL);
	CHECK(strstr(serr, "more than guest RAM") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, 112, 8, 4), -EINVAL);
	CHECK(strstr(serr, "in the bitmap") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, PART_FIXED + 100, 1, 0x10), -EINVAL);
	CHECK(strstr(serr, "in the bitmap") != NULL);
	/* the held buffer: not the head in flight, or none held with one */
	CHECK_EQ(snap_load_patched(&b, &f, 10, 2, (uint16_t)(sh + 1)), -EINVAL);
	CHECK(strstr(serr, "in flight") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, 8, 4, 0), -EINVAL);
	CHECK(strstr(serr, "1 chains in flight on queue 2") != NULL);
	/* unless the driver gave up (FAILED): a device that is not live holds
	 * nothing, whatever is in flight (the fuzzer's find: refused) */
	struct snapfile failed = f;
	failed.p = vf_failed_payload(f.p, f.plen);
	CHECK_EQ(snap_load_patched(&b, &failed, 8, 4, 0), 0);
	free((void *)failed.p);
	CHECK_EQ(snap_load_patched(&b, &f, 8, 4, 5u << 16), -EINVAL); /* head 5, none held */
	CHECK(strstr(serr, "without a buffer") != NULL);
	CHECK_EQ(dev(&b)->status, 0);
	CHECK_EQ(info(&b).inflated_pages, 0);
	teardown(&b);
	/* another memory size */
	memset(&b, 0, sizeof(b));
	if (guest_mem_init(&b.mem, MEM_SIZE / 2, MEM_SIZE / 4, MEM_SIZE / 4 + 16 * MIB) ||
	    virtio_balloon_create(&b.b, 0, false, 0, &b.mem, NULL))
		abort();
	CHECK_EQ(snap_load(&b, f.p, f.plen, false), -EINVAL);
	CHECK(serr[0]);
	virtio_balloon_destroy(&b.b);
	guest_mem_destroy(&b.mem);
	free(f.buf);
	teardown(&a);
}

/* A device broken with its statistics buffer in flight (its snapshot was
 * refused: "1 chains in flight on queue 2, the device holds 0"): it holds
 * nothing, the state loads with the balloon's pages, and the restored
 * device gives nothing back until the driver's reset drops the buffer. */
TEST(snapshot_of_a_broken_device_with_a_buffer_in_flight)
{
	static struct tb a, b;
	uint16_t sh;
	snap_busy(&a, &sh);
	vf_break(dev(&a));
	struct snapfile f;
	snap_save(&a, &f);
	setup_restored(&b, &a, 0);
	CHECK_EQ(snap_load_patched(&b, &f, 8, 1, 1), -EINVAL); /* held: not by a broken one */
	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	CHECK_EQ(info(&b).inflated_pages, 3);
	CHECK(!b.b.stats_held);
	CHECK_EQ(virtio_balloon_request_stats(&b.b), -ENODEV);
	CHECK(vf_broken_until_reset(dev(&b), &b.q[2], 2, 1));
	free(f.buf);
	teardown(&b);
	teardown(&a);
}

TEST(discarded_pages_are_dirty_for_a_diff_snapshot)
{
	/* an inflated page reads as zeros from then on: a change of guest RAM
	 * KVM's dirty log never sees, so the discard marks it */
	struct tb t;
	setup(&t);
	CHECK_EQ(guest_mem_track_dirty(&t.mem), 0);
	uint32_t p[40];
	for (uint32_t i = 0; i < 40; i++)
		p[i] = pfn(DATA_GPA) + (i < 20 ? i : 100 + i); /* two runs */
	send_pfns(&t, 0, p, 40);
	CHECK_EQ(mv.calls, 2);
	CHECK_EQ(guest_mem_dirty_count(&t.mem), 40);
	uint64_t base = (uint64_t)(hva(&t, DATA_GPA, PG) - t.mem.base) / PG;
	CHECK(guest_mem_is_dirty(&t.mem, base) && guest_mem_is_dirty(&t.mem, base + 19));
	CHECK(!guest_mem_is_dirty(&t.mem, base + 20));
	CHECK(guest_mem_is_dirty(&t.mem, base + 120) && guest_mem_is_dirty(&t.mem, base + 139));
	/* a deflate changes nothing in RAM: nothing more is marked */
	guest_mem_dirty_clear(&t.mem);
	send_pfns(&t, 1, p, 40);
	CHECK_EQ(guest_mem_dirty_count(&t.mem), 0);
	teardown(&t);
}

TEST_MAIN()
