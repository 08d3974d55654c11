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
#include "test.h"

#define MIB (1ull << 20)
#define MEM_SIZE (32 * MIB)
#define DESC_GPA 0x10000ull
#define AVAIL_GPA 0x20000ull
#define USED_GPA 0x30000ull
#define BUF_GPA 0x100000ull
#define BIG_GPA (16 * MIB) /* a 16 MiB buffer many descriptors can point at */
#define QSIZE 64

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

struct tdrv {
	struct guest_mem mem;
	struct virtio_rng r;
	uint16_t avail_idx, next_desc;
};

static int queue_signals;

static void fake_signal_queue(struct virtio_dev *d, uint16_t q)
{
	queue_signals++;
}

static void fake_signal_config(struct virtio_dev *d)
{
}

static const struct virtio_transport_ops fake_tops = {
	.signal_queue = fake_signal_queue,
	.signal_config = fake_signal_config,
};

static struct virtio_dev *dev(struct tdrv *t)
{
	return &t->r.vdev;
}

static uint8_t *hva(struct tdrv *t, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gpa_to_hva(&t->mem, gpa, len);
	if (!p)
		abort();
	return p;
}

static void put16(struct tdrv *t, uint64_t gpa, uint16_t v)
{
	memcpy(hva(t, gpa, 2), &v, 2);
}

static uint16_t get16(struct tdrv *t, uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, hva(t, gpa, 2), 2);
	return v;
}

static uint32_t get32(struct tdrv *t, uint64_t gpa)
{
	uint32_t v;
	memcpy(&v, hva(t, gpa, 4), 4);
	return v;
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
	queue_signals = 0;
	struct virtio_dev *d = dev(t);
	pthread_mutex_lock(&d->lock);
	d->tops = &fake_tops;
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	d->driver_feature_sel = 0;
	virtio_dev_write_driver_features(d, (uint32_t)features);
	d->driver_feature_sel = 1;
	virtio_dev_write_driver_features(d, (uint32_t)(features >> 32));
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					 VIRTIO_STATUS_FEATURES_OK);
	d->queue_sel = 0;
	struct virtq *q = virtio_dev_selected_queue(d);
	q->size = QSIZE;
	q->desc_gpa = DESC_GPA;
	q->avail_gpa = AVAIL_GPA;
	q->used_gpa = USED_GPA;
	q->ready = true;
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&d->lock);
}

static void teardown(struct tdrv *t)
{
	virtio_rng_destroy(&t->r);
	guest_mem_destroy(&t->mem);
}

static uint16_t drv_chain(struct tdrv *t, const struct seg *s, int n)
{
	uint16_t head = t->next_desc;
	for (int i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % QSIZE);
		uint16_t next = (uint16_t)((head + i + 1) % QSIZE);
		uint16_t flags = (uint16_t)((s[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		uint8_t raw[16];
		memcpy(raw, &s[i].gpa, 8);
		memcpy(raw + 8, &s[i].len, 4);
		memcpy(raw + 12, &flags, 2);
		memcpy(raw + 14, &next, 2);
		memcpy(hva(t, DESC_GPA + 16ull * idx, 16), raw, 16);
	}
	t->next_desc = (uint16_t)((head + n) % QSIZE);
	put16(t, AVAIL_GPA + 4 + 2ull * (t->avail_idx % QSIZE), head);
	t->avail_idx++;
	put16(t, AVAIL_GPA + 2, t->avail_idx);
	return head;
}

static void notify(struct tdrv *t)
{
	pthread_mutex_lock(&dev(t)->lock);
	virtio_dev_queue_notify(dev(t), 0);
	pthread_mutex_unlock(&dev(t)->lock);
}

static uint16_t used_idx(struct tdrv *t)
{
	return get16(t, USED_GPA + 2);
}

static uint32_t used_id(struct tdrv *t, uint16_t i)
{
	return get32(t, USED_GPA + 4 + 8ull * (i % QSIZE));
}

static uint32_t used_len(struct tdrv *t, uint16_t i)
{
	return get32(t, USED_GPA + 4 + 8ull * (i % QSIZE) + 4);
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
	memset(hva(&t, BUF_GPA, 8192), 0xcc, 8192);
	struct seg s[] = {{BUF_GPA, 100, true}, {BUF_GPA + 1000, 3000, true}};
	uint16_t h = drv_chain(&t, s, 2);
	notify(&t);
	CHECK_EQ(used_idx(&t), 1);
	CHECK_EQ(used_id(&t, 0), h);
	CHECK_EQ(used_len(&t, 0), 3100);
	CHECK_EQ(queue_signals, 1);
	/* random bytes: a few may be 0xcc by chance, not hundreds */
	CHECK(count_not(hva(&t, BUF_GPA, 100), 100, 0xcc) > 80);
	CHECK(count_not(hva(&t, BUF_GPA + 1000, 3000), 3000, 0xcc) > 2900);
	CHECK_EQ(count_not(hva(&t, BUF_GPA + 100, 900), 900, 0xcc), 0); /* the gap */
	CHECK_EQ(count_not(hva(&t, BUF_GPA + 4000, 4192), 4192, 0xcc), 0);

	/* two requests get different bytes */
	memset(hva(&t, BUF_GPA, 8192), 0, 8192);
	struct seg a[] = {{BUF_GPA, 64, true}};
	struct seg b[] = {{BUF_GPA + 64, 64, true}};
	drv_chain(&t, a, 1);
	drv_chain(&t, b, 1);
	notify(&t);
	CHECK_EQ(used_idx(&t), 3);
	CHECK(memcmp(hva(&t, BUF_GPA, 64), hva(&t, BUF_GPA + 64, 64), 64) != 0);
	CHECK_EQ(t.r.n_requests, 3);
	CHECK_EQ(t.r.n_bytes, 3100 + 128);
	teardown(&t);
}

TEST(per_request_cap)
{
	struct tdrv t;
	setup(&t, NULL);
	const uint32_t len = 1 << 20;
	memset(hva(&t, BUF_GPA, len), 0xcc, len);
	struct seg s[] = {{BUF_GPA, len, true}};
	drv_chain(&t, s, 1);
	notify(&t);
	CHECK_EQ(used_len(&t, 0), VIRTIO_RNG_MAX_PER_REQ);
	CHECK(count_not(hva(&t, BUF_GPA, VIRTIO_RNG_MAX_PER_REQ), VIRTIO_RNG_MAX_PER_REQ, 0xcc) >
	      VIRTIO_RNG_MAX_PER_REQ - 1024);
	CHECK_EQ(count_not(hva(&t, BUF_GPA + VIRTIO_RNG_MAX_PER_REQ, len - VIRTIO_RNG_MAX_PER_REQ),
			   len - VIRTIO_RNG_MAX_PER_REQ, 0xcc),
		 0);
	teardown(&t);
}

TEST(huge_request_is_bounded)
{
	/* 63 descriptors of 16 MiB each: the guest asks for ~1 GiB with
	 * 32 MiB of RAM.  The host writes 64 KiB and allocates nothing. */
	struct tdrv t;
	setup_f(&t, NULL, (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_INDIRECT_DESC));
	uint8_t *big = hva(&t, BIG_GPA, 16 * MIB);
	memset(big, 0xcc, VIRTIO_RNG_MAX_PER_REQ + 4096);
	struct seg s[63];
	for (int i = 0; i < 63; i++)
		s[i] = (struct seg){BIG_GPA, 16 * MIB, true};
	drv_chain(&t, s, 63);
	uint64_t t0 = now_ns();
	notify(&t);
	uint64_t dt = now_ns() - t0;
	CHECK_EQ(used_idx(&t), 1);
	CHECK_EQ(used_len(&t, 0), VIRTIO_RNG_MAX_PER_REQ);
	CHECK_EQ(count_not(big + VIRTIO_RNG_MAX_PER_REQ, 4096, 0xcc), 0);
	CHECK(dt < 1000000000ull); /* well under a second */

	/* ~4 GiB through an indirect table: 255 x 16 MiB = 4080 MiB */
	memset(big, 0xcc, VIRTIO_RNG_MAX_PER_REQ + 4096);
	const uint64_t table = BUF_GPA;
	for (uint16_t i = 0; i < 255; i++) {
		uint8_t raw[16];
		uint64_t addr = BIG_GPA;
		uint32_t len = 16 * MIB;
		uint16_t flags = VIRTQ_DESC_F_WRITE | (i < 254 ? VIRTQ_DESC_F_NEXT : 0);
		uint16_t next = (uint16_t)(i + 1);
		memcpy(raw, &addr, 8);
		memcpy(raw + 8, &len, 4);
		memcpy(raw + 12, &flags, 2);
		memcpy(raw + 14, &next, 2);
		memcpy(hva(&t, table + 16ull * i, 16), raw, 16);
	}
	uint16_t head = t.next_desc;
	uint8_t raw[16];
	uint64_t addr = table;
	uint32_t tlen = 255 * 16;
	uint16_t flags = VIRTQ_DESC_F_INDIRECT, next = 0;
	memcpy(raw, &addr, 8);
	memcpy(raw + 8, &tlen, 4);
	memcpy(raw + 12, &flags, 2);
	memcpy(raw + 14, &next, 2);
	memcpy(hva(&t, DESC_GPA + 16ull * head, 16), raw, 16);
	put16(&t, AVAIL_GPA + 4 + 2ull * (t.avail_idx % QSIZE), head);
	t.avail_idx++;
	put16(&t, AVAIL_GPA + 2, t.avail_idx);
	t0 = now_ns();
	notify(&t);
	dt = now_ns() - t0;
	CHECK(!dev(&t)->broken);
	CHECK_EQ(used_idx(&t), 2);
	CHECK_EQ(used_id(&t, 1), head);
	CHECK_EQ(used_len(&t, 1), VIRTIO_RNG_MAX_PER_REQ);
	CHECK_EQ(count_not(big + VIRTIO_RNG_MAX_PER_REQ, 4096, 0xcc), 0);
	CHECK(dt < 1000000000ull);
	teardown(&t);
}

TEST(readable_buffers_get_nothing)
{
	struct tdrv t;
	setup(&t, NULL);
	memset(hva(&t, BUF_GPA, 4096), 0xcc, 4096);
	struct seg s[] = {{BUF_GPA, 512, false}, {BUF_GPA + 512, 512, true}};
	drv_chain(&t, s, 2);
	struct seg r[] = {{BUF_GPA + 1024, 512, false}};
	drv_chain(&t, r, 1);
	notify(&t);
	CHECK_EQ(used_idx(&t), 2);
	CHECK_EQ(used_len(&t, 0), 0);
	CHECK_EQ(used_len(&t, 1), 0);
	CHECK_EQ(count_not(hva(&t, BUF_GPA, 4096), 4096, 0xcc), 0);
	CHECK_EQ(t.r.n_rejected, 2);
	CHECK(!dev(&t)->broken);
	/* and a proper request still works */
	struct seg w[] = {{BUF_GPA, 16, true}};
	drv_chain(&t, w, 1);
	notify(&t);
	CHECK_EQ(used_len(&t, 2), 16);
	teardown(&t);
}

TEST(ring_violation_breaks_device)
{
	struct tdrv t;
	setup(&t, NULL);
	struct seg s[] = {{BUF_GPA, 0, true}}; /* zero-length descriptor */
	drv_chain(&t, s, 1);
	notify(&t);
	CHECK(dev(&t)->broken);
	CHECK_EQ(used_idx(&t), 0);
	/* reset is immediate and the device comes back */
	pthread_mutex_lock(&dev(&t)->lock);
	virtio_dev_set_status(dev(&t), 0);
	pthread_mutex_unlock(&dev(&t)->lock);
	CHECK_EQ(dev(&t)->status, 0);
	CHECK(!dev(&t)->reset_pending);
	teardown(&t);
}

TEST(budget_yields_to_the_loop)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	struct tdrv t;
	setup(&t, &lp);
	CHECK(t.r.resume_fd >= 0);
	/* 20 requests of 64 KiB = 1.25 MiB, more than one pass may do */
	const int n = 20;
	for (int i = 0; i < n; i++) {
		struct seg s[] = {{BUF_GPA + (uint64_t)i * VIRTIO_RNG_MAX_PER_REQ,
				   VIRTIO_RNG_MAX_PER_REQ, true}};
		drv_chain(&t, s, 1);
	}
	notify(&t);
	uint16_t first = used_idx(&t);
	CHECK_EQ(first, VIRTIO_RNG_BUDGET / VIRTIO_RNG_MAX_PER_REQ);
	struct pollfd p = {.fd = t.r.resume_fd, .events = POLLIN};
	CHECK_EQ(poll(&p, 1, 0), 1); /* the loop will call us back */
	uint64_t v;
	CHECK_EQ(read(t.r.resume_fd, &v, sizeof(v)), sizeof(v));
	virtio_rng_resume(&t.r);
	CHECK_EQ(used_idx(&t), n);
	CHECK_EQ(t.r.n_bytes, (uint64_t)n * VIRTIO_RNG_MAX_PER_REQ);
	/* nothing more to do: no further wake-up */
	CHECK_EQ(poll(&p, 1, 0), 0);
	/* a resume after a reset does nothing */
	pthread_mutex_lock(&dev(&t)->lock);
	virtio_dev_set_status(dev(&t), 0);
	pthread_mutex_unlock(&dev(&t)->lock);
	virtio_rng_resume(&t.r);
	CHECK_EQ(used_idx(&t), n);
	teardown(&t);
	loop_destroy(&lp);
}

TEST_MAIN()
