/* SPDX-License-Identifier: MIT */
/*
 * virtio-rng tests: an in-test "driver" posts writable buffers; the device
 * fills them from getrandom, capped per request, with a per-pass budget.
 */
#include "../../src/devices/virtio/virtio_rng.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "../../src/event/loop.h"
#include "loop_runner.h"
#include "test.h"
#include "snap_test.h"
#include "virtio_fake.h"

#define MIB (1ull << 20)
#define MEM_SIZE (32 * MIB)
#define DESC_GPA 0x10000ull
#define AVAIL_GPA 0x20000ull
#define USED_GPA 0x30000ull
#define BUF_GPA 0x100000ull
#define BIG_GPA (16 * MIB) /* a 16 MiB buffer many descriptors can point at */
#define QSIZE 64

struct tdrv {
	struct guest_mem mem;
	struct virtio_rng r;
	struct vf_drv drv;
};

static struct virtio_dev *dev(struct tdrv *t)
{
	return &t->r.vdev;
}

static void setup_f(struct tdrv *t, struct loop *loop, uint64_t features);

static void setup(struct tdrv *t, struct loop *loop)
{
	setup_f(t, loop, 1ull << VIRTIO_F_VERSION_1);
}

static void setup_f(struct tdrv *t, struct loop *loop, uint64_t features)
{
	memset(t, 0, sizeof(*t));
	if (guest_mem_init(&t->mem, MEM_SIZE, MEM_SIZE, MEM_SIZE))
		abort();
	if (virtio_rng_init(&t->r, &t->mem, loop))
		abort();
	vf_queue_signals = 0;
	vf_drv_init(&t->drv, &t->mem, dev(t), QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
	vf_drv_up(&t->drv, features);
}

static void teardown(struct tdrv *t)
{
	virtio_rng_destroy(&t->r);
	guest_mem_destroy(&t->mem);
}

/* How many of @len bytes differ from @v. */
static uint64_t count_not(const uint8_t *p, uint64_t len, uint8_t v)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < len; i++)
		n += p[i] != v;
	return n;
}

TEST(identity_and_config)
{
	struct tdrv t;
	setup(&t, NULL);
	struct virtio_dev *d = dev(&t);
	CHECK_EQ(d->device_id, VIRTIO_ID_RNG);
	CHECK_EQ(d->num_queues, 1);
	CHECK_EQ(d->device_features & 0xffffffffull & ~(1ull << VIRTIO_F_INDIRECT_DESC) &
			 ~(1ull << VIRTIO_F_EVENT_IDX),
		 0);
	CHECK(d->vqs[0].active);
	static const uint32_t widths[] = {1, 2, 4, 8};
	for (uint32_t off = 0; off < 16; off++)
		for (int w = 0; w < 4; w++) {
			uint8_t b[8];
			memset(b, 0xa5, sizeof(b));
			d->ops->config_read(d, off, b, widths[w]);
			CHECK_EQ(count_not(b, widths[w], 0), 0);
		}
	teardown(&t);
}

TEST(fills_writable_buffers)
{
	struct tdrv t;
	setup(&t, NULL);
	memset(vf_hva(&t.mem, BUF_GPA, 8192), 0xcc, 8192);
	struct vf_seg s[] = {{BUF_GPA, 100, true}, {BUF_GPA + 1000, 3000, true}};
	uint16_t h = vf_chain(&t.drv, s, 2);
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_idx(&t.drv), 1);
	CHECK_EQ(vf_used_id(&t.drv, 0), h);
	CHECK_EQ(vf_used_len(&t.drv, 0), 3100);
	CHECK_EQ(vf_queue_signals, 1);
	/* random bytes: a few may be 0xcc by chance, not hundreds */
	CHECK(count_not(vf_hva(&t.mem, BUF_GPA, 100), 100, 0xcc) > 80);
	CHECK(count_not(vf_hva(&t.mem, BUF_GPA + 1000, 3000), 3000, 0xcc) > 2900);
	CHECK_EQ(count_not(vf_hva(&t.mem, BUF_GPA + 100, 900), 900, 0xcc), 0); /* the gap */
	CHECK_EQ(count_not(vf_hva(&t.mem, BUF_GPA + 4000, 4192), 4192, 0xcc), 0);

	/* two requests get different bytes */
	memset(vf_hva(&t.mem, BUF_GPA, 8192), 0, 8192);
	struct vf_seg a[] = {{BUF_GPA, 64, true}};
	struct vf_seg b[] = {{BUF_GPA + 64, 64, true}};
	vf_chain(&t.drv, a, 1);
	vf_chain(&t.drv, b, 1);
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_idx(&t.drv), 3);
	CHECK(memcmp(vf_hva(&t.mem, BUF_GPA, 64), vf_hva(&t.mem, BUF_GPA + 64, 64), 64) != 0);
	CHECK_EQ(t.r.m.entropy_requests, 3);
	CHECK_EQ(t.r.m.entropy_bytes, 3100 + 128);
	teardown(&t);
}

TEST(per_request_cap)
{
	struct tdrv t;
	setup(&t, NULL);
	const uint32_t len = 1 << 20;
	uint8_t *buf = vf_hva(&t.mem, BUF_GPA, len);
	memset(buf, 0xcc, len);
	struct vf_seg s[] = {{BUF_GPA, len, true}};
	vf_chain(&t.drv, s, 1);
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_len(&t.drv, 0), VIRTIO_RNG_MAX_PER_REQ);
	CHECK(count_not(buf, VIRTIO_RNG_MAX_PER_REQ, 0xcc) > VIRTIO_RNG_MAX_PER_REQ - 1024);
	CHECK_EQ(count_not(buf + VIRTIO_RNG_MAX_PER_REQ, len - VIRTIO_RNG_MAX_PER_REQ, 0xcc), 0);
	teardown(&t);
}

TEST(huge_request_is_bounded)
{
	/* 63 descriptors of 16 MiB each: the guest asks for ~1 GiB with
	 * 32 MiB of RAM.  The host writes 64 KiB and allocates nothing. */
	struct tdrv t;
	setup_f(&t, NULL, (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_INDIRECT_DESC));
	uint8_t *big = vf_hva(&t.mem, BIG_GPA, 16 * MIB);
	memset(big, 0xcc, VIRTIO_RNG_MAX_PER_REQ + 4096);
	struct vf_seg s[63];
	for (int i = 0; i < 63; i++)
		s[i] = (struct vf_seg){BIG_GPA, 16 * MIB, true};
	vf_chain(&t.drv, s, 63);
	uint64_t t0 = now_ns();
	vf_notify(&t.drv);
	uint64_t dt = now_ns() - t0;
	CHECK_EQ(vf_used_idx(&t.drv), 1);
	CHECK_EQ(vf_used_len(&t.drv, 0), VIRTIO_RNG_MAX_PER_REQ);
	CHECK_EQ(count_not(big + VIRTIO_RNG_MAX_PER_REQ, 4096, 0xcc), 0);
	CHECK(dt < 1000000000ull); /* well under a second */

	/* ~4 GiB through an indirect table: 255 x 16 MiB = 4080 MiB */
	memset(big, 0xcc, VIRTIO_RNG_MAX_PER_REQ + 4096);
	const uint64_t table = BUF_GPA;
	for (uint16_t i = 0; i < 255; i++) {
		uint16_t flags = VIRTQ_DESC_F_WRITE | (i < 254 ? VIRTQ_DESC_F_NEXT : 0);
		vf_desc(&t.mem, table, i, BIG_GPA, 16 * MIB, flags, (uint16_t)(i + 1));
	}
	uint16_t head = t.drv.next_desc;
	vf_desc(&t.mem, DESC_GPA, head, table, 255 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	vf_avail(&t.drv, head);
	t0 = now_ns();
	vf_notify(&t.drv);
	dt = now_ns() - t0;
	CHECK(!dev(&t)->broken);
	CHECK_EQ(vf_used_idx(&t.drv), 2);
	CHECK_EQ(vf_used_id(&t.drv, 1), head);
	CHECK_EQ(vf_used_len(&t.drv, 1), VIRTIO_RNG_MAX_PER_REQ);
	CHECK_EQ(count_not(big + VIRTIO_RNG_MAX_PER_REQ, 4096, 0xcc), 0);
	CHECK(dt < 1000000000ull);
	teardown(&t);
}

TEST(readable_buffers_get_nothing)
{
	struct tdrv t;
	setup(&t, NULL);
	memset(vf_hva(&t.mem, BUF_GPA, 4096), 0xcc, 4096);
	struct vf_seg s[] = {{BUF_GPA, 512, false}, {BUF_GPA + 512, 512, true}};
	vf_chain(&t.drv, s, 2);
	struct vf_seg r[] = {{BUF_GPA + 1024, 512, false}};
	vf_chain(&t.drv, r, 1);
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_idx(&t.drv), 2);
	CHECK_EQ(vf_used_len(&t.drv, 0), 0);
	CHECK_EQ(vf_used_len(&t.drv, 1), 0);
	CHECK_EQ(count_not(vf_hva(&t.mem, BUF_GPA, 4096), 4096, 0xcc), 0);
	CHECK_EQ(t.r.m.invalid_requests, 2);
	CHECK(!dev(&t)->broken);
	/* and a proper request still works */
	struct vf_seg w[] = {{BUF_GPA, 16, true}};
	vf_chain(&t.drv, w, 1);
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_len(&t.drv, 2), 16);
	teardown(&t);
}

TEST(ring_violation_breaks_device)
{
	struct tdrv t;
	setup(&t, NULL);
	struct vf_seg s[] = {{BUF_GPA, 0, true}}; /* zero-length descriptor */
	vf_chain(&t.drv, s, 1);
	vf_notify(&t.drv);
	CHECK(dev(&t)->broken);
	CHECK_EQ(vf_used_idx(&t.drv), 0);
	/* reset is immediate and the device comes back */
	pthread_mutex_lock(&dev(&t)->lock);
	virtio_dev_set_status(dev(&t), 0);
	pthread_mutex_unlock(&dev(&t)->lock);
	CHECK_EQ(dev(&t)->status, 0);
	CHECK(!dev(&t)->reset_pending);
	teardown(&t);
}

TEST(request_before_driver_ok_is_filled_after_it)
{
	/* A driver that posts and kicks before DRIVER_OK: the kick is
	 * ignored, and the core has the loop look at the queue once the
	 * device is live. */
	struct tdrv t;
	memset(&t, 0, sizeof(t));
	CHECK_EQ(guest_mem_init(&t.mem, MEM_SIZE, MEM_SIZE, MEM_SIZE), 0);
	CHECK_EQ(virtio_rng_init(&t.r, &t.mem, NULL), 0);
	vf_queue_signals = vf_replays = 0;
	vf_replay_pending = 0;
	vf_drv_init(&t.drv, &t.mem, dev(&t), QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
	vf_drv_setup(&t.drv, 1ull << VIRTIO_F_VERSION_1);
	struct vf_seg s = {BUF_GPA, 32, true};
	memset(vf_hva(&t.mem, BUF_GPA, 32), 0, 32);
	vf_chain(&t.drv, &s, 1);
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_idx(&t.drv), 0);
	vf_drv_ok(&t.drv);
	/* the status write only asked for the replay */
	CHECK_EQ(vf_replays, 1);
	CHECK_EQ(vf_replay_pending, 1);
	CHECK_EQ(vf_used_idx(&t.drv), 0);
	vf_run_replays(dev(&t));
	CHECK_EQ(vf_used_idx(&t.drv), 1);
	CHECK_EQ(vf_used_len(&t.drv, 0), 32);
	CHECK(count_not(vf_hva(&t.mem, BUF_GPA, 32), 32, 0) > 0);
	CHECK_EQ(vf_queue_signals, 1);
	teardown(&t);
}

TEST(budget_yields_to_the_loop)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct tdrv t;
	setup(&t, &lp);
	CHECK(t.r.deferred.fd >= 0);
	/* 20 requests of 64 KiB = 1.25 MiB, more than one pass may do */
	const int n = 20;
	for (int i = 0; i < n; i++) {
		struct vf_seg s[] = {{BUF_GPA + (uint64_t)i * VIRTIO_RNG_MAX_PER_REQ,
				      VIRTIO_RNG_MAX_PER_REQ, true}};
		vf_chain(&t.drv, s, 1);
	}
	vf_notify(&t.drv);
	uint16_t first = vf_used_idx(&t.drv);
	CHECK_EQ(first, VIRTIO_RNG_BUDGET / VIRTIO_RNG_MAX_PER_REQ);
	struct pollfd p = {.fd = t.r.deferred.fd, .events = POLLIN};
	CHECK_EQ(poll(&p, 1, 0), 1); /* the loop will call us back */
	uint64_t v;
	CHECK_EQ(read(t.r.deferred.fd, &v, sizeof(v)), sizeof(v));
	virtio_deferred_run(&t.r.deferred);
	CHECK_EQ(vf_used_idx(&t.drv), n);
	CHECK_EQ(t.r.m.entropy_bytes, (uint64_t)n * VIRTIO_RNG_MAX_PER_REQ);
	/* nothing more to do: no further wake-up */
	CHECK_EQ(poll(&p, 1, 0), 0);
	/* a resume after a reset does nothing */
	pthread_mutex_lock(&dev(&t)->lock);
	virtio_dev_set_status(dev(&t), 0);
	pthread_mutex_unlock(&dev(&t)->lock);
	virtio_deferred_run(&t.r.deferred);
	CHECK_EQ(vf_used_idx(&t.drv), n);
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

static void post(struct tdrv *t, int i, uint32_t len)
{
	struct vf_seg s[] = {{BUF_GPA + (uint64_t)i * VIRTIO_RNG_MAX_PER_REQ, len, true}};
	vf_chain(&t->drv, s, 1);
}

TEST(rate_limiter_bytes_hold_the_queue_until_the_timer)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct tdrv t;
	setup(&t, &lp);
	fake_now = 7 * MS;
	t.r.limiter_clock = fake_clock;
	/* 1000 bytes per second */
	struct rate_limiter_config c = {.bandwidth = {.size = 1000, .refill_time_ms = 1000}};
	CHECK_EQ(virtio_rng_set_rate_limiter(&t.r, &c), 0);
	post(&t, 0, 600);
	post(&t, 1, 400);
	post(&t, 2, 100);
	post(&t, 3, 5000); /* more than the bucket: goes when it is full */
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_idx(&t.drv), 2);
	CHECK(t.r.held);
	CHECK_EQ(dev(&t)->vqs[0].last_avail, 3);
	CHECK_EQ(t.r.limiter.wake_ns, fake_now + 100 * MS);
	CHECK_EQ(t.r.limiter.throttled_events, 1);
	/* kicks meanwhile: nothing */
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_idx(&t.drv), 2);
	/* the timer */
	fake_now += 100 * MS;
	CHECK(loop_dispatch(&lp, t.r.limiter.timer_fd));
	CHECK_EQ(vf_used_idx(&t.drv), 3);
	CHECK_EQ(vf_used_len(&t.drv, 2), 100);
	CHECK(t.r.held);
	CHECK_EQ(t.r.limiter.wake_ns, fake_now + 1000 * MS); /* a full bucket */
	fake_now += 1000 * MS;
	CHECK(loop_dispatch(&lp, t.r.limiter.timer_fd));
	CHECK_EQ(vf_used_idx(&t.drv), 4);
	CHECK_EQ(vf_used_len(&t.drv, 3), 5000);
	CHECK(!t.r.held);
	CHECK_EQ(t.r.m.entropy_bytes, 6100);
	teardown(&t);
	loop_destroy(&lp);
}

TEST(rate_limiter_ops_update_and_reset)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct tdrv t;
	setup(&t, &lp);
	fake_now = 0;
	t.r.limiter_clock = fake_clock;
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = 60000}};
	CHECK_EQ(virtio_rng_set_rate_limiter(&t.r, &c), 0);
	for (int i = 0; i < 4; i++)
		post(&t, i, 16);
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_idx(&t.drv), 1);
	CHECK(t.r.held);
	/* lifting the limit takes effect at once */
	struct rate_limiter_config none = {0};
	CHECK_EQ(virtio_rng_set_rate_limiter(&t.r, &none), 0);
	CHECK_EQ(vf_used_idx(&t.drv), 4);
	CHECK(!t.r.held);
	/* limited again (a fresh bucket of one), then a reset while held */
	CHECK_EQ(virtio_rng_set_rate_limiter(&t.r, &c), 0);
	post(&t, 0, 16);
	post(&t, 1, 16);
	vf_notify(&t.drv);
	CHECK_EQ(vf_used_idx(&t.drv), 5);
	CHECK(t.r.held);
	pthread_mutex_lock(&dev(&t)->lock);
	virtio_dev_set_status(dev(&t), 0);
	pthread_mutex_unlock(&dev(&t)->lock);
	CHECK(!t.r.held);
	/* without a loop a limit cannot be set */
	struct tdrv u;
	setup(&u, NULL);
	CHECK_EQ(virtio_rng_set_rate_limiter(&u.r, &c), (unsigned long long)-EINVAL);
	CHECK_EQ(virtio_rng_set_rate_limiter(&u.r, &none), 0);
	teardown(&u);
	teardown(&t);
	loop_destroy(&lp);
}

TEST(metrics)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct tdrv t;
	setup(&t, &lp);
	fake_now = 0;
	t.r.limiter_clock = fake_clock;
	struct virtio_rng_metrics m;
	virtio_rng_get_metrics(&t.r, &m);
	CHECK_EQ(m.entropy_requests, 0);
	post(&t, 0, 100);
	post(&t, 1, 200);
	struct vf_seg bad[] = {{BUF_GPA, 16, false}};
	vf_chain(&t.drv, bad, 1);
	vf_notify(&t.drv);
	virtio_rng_get_metrics(&t.r, &m);
	CHECK_EQ(m.entropy_requests, 3);
	CHECK_EQ(m.entropy_bytes, 300);
	CHECK_EQ(m.invalid_requests, 1);
	CHECK_EQ(m.entropy_event_count, 1);
	CHECK_EQ(m.host_rng_fails, 0);
	/* throttled */
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = 1000}};
	CHECK_EQ(virtio_rng_set_rate_limiter(&t.r, &c), 0);
	post(&t, 0, 10);
	post(&t, 1, 10);
	vf_notify(&t.drv);
	fake_now += 1000 * MS;
	CHECK(loop_dispatch(&lp, t.r.limiter.timer_fd));
	virtio_rng_get_metrics(&t.r, &m);
	CHECK_EQ(m.entropy_rate_limiter_throttled, 1);
	CHECK_EQ(m.rate_limiter_event_count, 1);
	CHECK_EQ(m.entropy_requests, 5);
	CHECK_EQ(m.entropy_bytes, 320);
	CHECK_EQ(m.entropy_event_count, 3);
	/* a ring violation */
	struct vf_seg zero[] = {{BUF_GPA, 0, true}};
	vf_chain(&t.drv, zero, 1);
	fake_now += 1000 * MS;
	vf_notify(&t.drv);
	virtio_rng_get_metrics(&t.r, &m);
	CHECK_EQ(m.entropy_event_fails, 1);
	CHECK_EQ(m.activate_fails, 0);
	teardown(&t);
	loop_destroy(&lp);
}

/* ---- snapshot state ---- */

/* The device's section as the machine writes it: the core's state, then
 * the device's own, in one payload. */
static char serr[256];

static void snap_save(struct tdrv *t, struct snapfile *f)
{
	static struct virtio_dev_state core;
	struct virtio_rng_state st;
	CHECK_EQ(virtio_dev_state_get(dev(t), &core), 0);
	CHECK_EQ(virtio_rng_state_get(&t->r, &st), 0);
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "dev.0", VIRTIO_RNG_STATE_VERSION);
	virtio_dev_state_encode(&core, &w);
	virtio_rng_state_encode(&st, &w);
	snap_writer_section_end(&w);
	snapfile_from(&w, "dev.0", f);
}

/* Decode and check p[0..len) against @t's device (nothing applied); if
 * accepted and @apply, put the core's state and the device's, restart. */
static int snap_load(struct tdrv *t, const uint8_t *p, size_t len, bool apply)
{
	static struct virtio_dev_state core;
	struct virtio_rng_state st;
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	serr[0] = 0;
	int rc = virtio_dev_state_decode(&c, dev(t), &core, serr, sizeof(serr));
	if (!rc)
		rc = virtio_rng_state_decode(&c, &t->r, &st, serr, sizeof(serr));
	if (!rc)
		rc = snap_cursor_done(&c, "dev.0", serr, sizeof(serr));
	if (!rc)
		rc = virtio_rng_state_check(&st, &core, serr, sizeof(serr));
	if (rc || !apply)
		return rc;
	CHECK_EQ(virtio_dev_state_put(dev(t), &core), 0);
	rc = virtio_rng_state_put(&t->r, &st);
	virtio_dev_state_restart(dev(t));
	return rc;
}

/* The payload with its last four bytes (the device's part: held,
 * reserved, head) replaced, loaded (not applied) into @t. */
static int snap_load_part(struct tdrv *t, const struct snapfile *f, uint8_t held,
			  uint8_t reserved, uint16_t head)
{
	uint8_t *copy = malloc(f->plen);
	memcpy(copy, f->p, f->plen);
	copy[f->plen - 4] = held;
	copy[f->plen - 3] = reserved;
	copy[f->plen - 2] = (uint8_t)head;
	copy[f->plen - 1] = (uint8_t)(head >> 8);
	int rc = snap_load(t, copy, f->plen, false);
	free(copy);
	return rc;
}

/* A fresh device (nothing negotiated, no loop) over a copy of @from's
 * guest memory, its driver shadow where @from's is. */
static void setup_restored(struct tdrv *t, const struct tdrv *from)
{
	memset(t, 0, sizeof(*t));
	if (guest_mem_init(&t->mem, MEM_SIZE, MEM_SIZE, MEM_SIZE) ||
	    virtio_rng_init(&t->r, &t->mem, NULL))
		abort();
	dev(t)->tops = &vf_tops;
	memcpy(vf_hva(&t->mem, 0, MEM_SIZE), vf_hva((struct guest_mem *)&from->mem, 0, MEM_SIZE),
	       MEM_SIZE);
	t->drv = from->drv;
	t->drv.mem = &t->mem;
	t->drv.dev = dev(t);
	vf_replay_pending = 0;
}

/* @a up on loop @lp (initialised here) with a limiter of one request a
 * minute: a 32-byte request served, a 48-byte one held.  Its head. */
static uint16_t snap_busy(struct tdrv *a, struct loop *lp)
{
	CHECK_EQ(loop_init(lp), 0);
	setup(a, lp);
	fake_now = 0;
	a->r.limiter_clock = fake_clock;
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = 60000}};
	CHECK_EQ(virtio_rng_set_rate_limiter(&a->r, &c), 0);
	post(a, 0, 32);
	post(a, 1, 48);
	vf_notify(&a->drv);
	CHECK_EQ(vf_used_idx(&a->drv), 1);
	CHECK(a->r.held);
	return a->r.chain.head;
}

TEST(snapshot_round_trip_keeps_the_held_request)
{
	struct loop lp;
	static struct tdrv a, b;
	uint16_t held = snap_busy(&a, &lp);
	virtio_dev_pause(dev(&a));
	struct snapfile f;
	snap_save(&a, &f);
	CHECK_EQ(f.p[f.plen - 4], 1);
	CHECK_EQ((uint16_t)(f.p[f.plen - 2] | f.p[f.plen - 1] << 8), held);

	setup_restored(&b, &a);
	for (size_t n = 0; n < f.plen; n++)
		CHECK_EQ(snap_load(&b, f.p, n, false), -EINVAL);
	uint8_t *longer = calloc(1, f.plen + 1);
	memcpy(longer, f.p, f.plen);
	CHECK_EQ(snap_load(&b, longer, f.plen + 1, false), -EINVAL);
	free(longer);
	CHECK_EQ(dev(&b)->status, 0);
	memset(vf_hva(&b.mem, BUF_GPA + VIRTIO_RNG_MAX_PER_REQ, 48), 0xcc, 48);
	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	CHECK(b.r.held);
	vf_run_replays(dev(&b));
	/* served first, without a limiter */
	CHECK(!b.r.held);
	CHECK_EQ(vf_used_idx(&b.drv), 2);
	CHECK_EQ(vf_used_id(&b.drv, 1), held);
	CHECK_EQ(vf_used_len(&b.drv, 1), 48);
	CHECK(count_not(vf_hva(&b.mem, BUF_GPA + VIRTIO_RNG_MAX_PER_REQ, 48), 48, 0xcc) > 40);
	CHECK_EQ(dev(&b)->vqs[0].inflight, 0);
	/* and goes on */
	post(&b, 2, 16);
	vf_notify(&b.drv);
	CHECK_EQ(vf_used_idx(&b.drv), 3);
	CHECK(!dev(&b)->broken);
	/* the original still holds its request */
	virtio_dev_resume(dev(&a));
	CHECK(a.r.held);
	CHECK_EQ(vf_used_idx(&a.drv), 1);
	free(f.buf);
	teardown(&b);
	teardown(&a);
	loop_destroy(&lp);
}

TEST(snapshot_refusals)
{
	struct loop lp;
	static struct tdrv a, b;
	uint16_t held = snap_busy(&a, &lp);
	struct snapfile f, f2;
	snap_save(&a, &f);
	setup_restored(&b, &a);
	CHECK_EQ(snap_load_part(&b, &f, 1, 0, held), 0);
	CHECK_EQ(snap_load_part(&b, &f, 2, 0, held), -EINVAL);
	CHECK(strstr(serr, "held flag") != NULL);
	CHECK_EQ(snap_load_part(&b, &f, 1, 1, held), -EINVAL);
	CHECK(strstr(serr, "reserved") != NULL);
	CHECK_EQ(snap_load_part(&b, &f, 1, 0, VIRTIO_RNG_QUEUE_MAX), -EINVAL);
	CHECK(strstr(serr, "out of range") != NULL);
	CHECK_EQ(snap_load_part(&b, &f, 0, 0, held ? held : 1), -EINVAL);
	CHECK(strstr(serr, "without a held request") != NULL);
	/* not the head in flight; nothing held with one in flight */
	CHECK_EQ(snap_load_part(&b, &f, 1, 0, (uint16_t)(held + 1)), -EINVAL);
	CHECK(strstr(serr, "in flight") != NULL);
	CHECK_EQ(snap_load_part(&b, &f, 0, 0, 0), -EINVAL);
	CHECK(strstr(serr, "1 requests in flight") != NULL);
	/* the driver gave up (FAILED): not live, the device holds nothing,
	 * whatever is in flight (the fuzzer's find: that was refused) */
	struct snapfile failed = f;
	failed.p = vf_failed_payload(f.p, f.plen);
	CHECK_EQ(snap_load_part(&b, &failed, 0, 0, 0), 0);
	CHECK_EQ(snap_load_part(&b, &failed, 1, 0, held), -EINVAL);
	free((void *)failed.p);
	CHECK_EQ(dev(&b)->status, 0);
	/* the held chain's descriptor no longer passes: broken */
	vf_desc(&b.mem, DESC_GPA, held, BUF_GPA, 0, VIRTQ_DESC_F_WRITE, 0);
	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	CHECK(dev(&b)->broken);
	CHECK(!b.r.held);
	/* so broken, with the request in flight, it holds nothing, and its
	 * state loads (was refused: "1 requests in flight, the device holds
	 * 0"); the restored device is broken until the driver's reset */
	static struct tdrv c;
	snap_save(&b, &f2);
	setup_restored(&c, &b);
	CHECK_EQ(snap_load_part(&c, &f2, 1, 0, held), -EINVAL);
	CHECK_EQ(snap_load(&c, f2.p, f2.plen, true), 0);
	CHECK(!c.r.held && vf_broken_until_reset(dev(&c), &c.drv, 0, 1));
	free(f2.buf);
	teardown(&c);
	free(f.buf);
	teardown(&b);
	teardown(&a);
	loop_destroy(&lp);
}

TEST_MAIN()
