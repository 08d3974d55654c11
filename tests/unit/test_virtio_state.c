/* SPDX-License-Identifier: MIT */
/*
 * Snapshot state of the virtio core and its queues (virtio_dev_state_*,
 * virtq_state_*): a live device with chains in flight is saved, its guest
 * memory copied, and restored into a fresh device, which then carries on
 * exactly where the first one was; every inconsistent or hostile state is
 * refused before anything is applied.
 */
#include <errno.h>

#include "../../src/devices/virtio/virtio.h"
#include "../../src/util/log.h"
#include "test.h"
#include "virtio_fake.h"

#define MEM_SIZE (1u << 20)
#define F_VERSION_1 (1ull << VIRTIO_F_VERSION_1)
#define F_EVENT_IDX (1ull << VIRTIO_F_EVENT_IDX)
#define F_INDIRECT (1ull << VIRTIO_F_INDIRECT_DESC)
#define DEV_FEATURES (1ull << 3)
#define NQ 2
#define QMAX 16
#define QSIZE 8
#define DESC 0x10000u
#define AVAIL 0x11000u
#define USED 0x12000u
#define BUF 0x20000u

static char err[256];

struct rig {
	struct guest_mem mem;
	struct vf_dev f;
	struct vf_drv v;
};

static void rig_init(struct rig *r, uint64_t features)
{
	log_set_level(LOG_ERROR);
	memset(r, 0, sizeof(*r));
	CHECK_EQ(guest_mem_init(&r->mem, MEM_SIZE, MEM_SIZE, MEM_SIZE), 0);
	CHECK_EQ(vf_dev_init(&r->f, features, 8, "fake", VIRTIO_ID_RNG, NQ, QMAX, &r->mem, NULL), 0);
	r->f.vd.tops = &vf_tops;
	vf_drv_init(&r->v, &r->mem, &r->f.vd, QSIZE, DESC, AVAIL, USED);
}

static void rig_fini(struct rig *r)
{
	virtio_dev_destroy(&r->f.vd);
	guest_mem_destroy(&r->mem);
}

/* Three chains made available; the device took two and returned the first. */
static void busy(struct rig *r)
{
	vf_drv_up(&r->v, F_VERSION_1 | F_EVENT_IDX | DEV_FEATURES);
	for (int i = 0; i < 3; i++) {
		struct vf_seg s = {.gpa = BUF + 0x100u * (unsigned)i, .len = 64, .write = true};
		vf_chain(&r->v, &s, 1);
	}
	struct virtq *q = &r->f.vd.vqs[0];
	static struct virtq_chain c;
	pthread_mutex_lock(&r->f.vd.lock);
	CHECK_EQ(virtq_pop(q, &c), 1);
	uint16_t first = c.head;
	CHECK_EQ(virtq_pop(q, &c), 1);
	CHECK_EQ(virtq_push(q, first, 11), 0);
	pthread_mutex_unlock(&r->f.vd.lock);
}

/* Save @d's core state into a one-section file and hand back its payload. */
struct blob {
	uint8_t *buf;
	size_t len;
	const uint8_t *p;
	size_t plen;
};

static void encode(const struct virtio_dev_state *st, struct blob *b)
{
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "x", 1);
	virtio_dev_state_encode(st, &w);
	snap_writer_section_end(&w);
	memset(b, 0, sizeof(*b));
	CHECK_EQ(snap_writer_finish(&w, &b->buf, &b->len), 0);
	struct snap_reader rd;
	CHECK_EQ(snap_reader_open(b->buf, b->len, &rd, err, sizeof(err)), 0);
	CHECK_EQ(snap_reader_find(&rd, "x", NULL, &b->p, &b->plen), 0);
}

static int decode(const struct blob *b, const struct virtio_dev *d, struct virtio_dev_state *st)
{
	struct snap_cursor c;
	snap_cursor_init(&c, b->p, b->plen);
	err[0] = 0;
	int rc = virtio_dev_state_decode(&c, d, st, err, sizeof(err));
	if (!rc)
		rc = snap_cursor_done(&c, "virtio", err, sizeof(err));
	return rc;
}

static struct virtio_dev_state st_a, st_b, st_c;

TEST(round_trip_carries_on_with_chains_in_flight)
{
	static struct rig a, b;
	rig_init(&a, DEV_FEATURES);
	rig_init(&b, DEV_FEATURES);
	busy(&a);
	CHECK_EQ(virtio_dev_state_get(&a.f.vd, &st_a), 0);
	CHECK_EQ(st_a.vqs[0].last_avail, 2);
	CHECK_EQ(st_a.vqs[0].used_idx, 1);
	CHECK_EQ(st_a.vqs[0].ninflight, 1);
	CHECK(st_a.vqs[0].active && st_a.vqs[0].event_idx && !st_a.vqs[0].indirect);
	CHECK(!st_a.vqs[1].active);

	/* the memory file: guest RAM as it was */
	memcpy(vf_hva(&b.mem, 0, MEM_SIZE), vf_hva(&a.mem, 0, MEM_SIZE), MEM_SIZE);
	struct blob bl;
	encode(&st_a, &bl);
	CHECK_EQ(decode(&bl, &b.f.vd, &st_b), 0);
	CHECK(!memcmp(&st_a, &st_b, sizeof(st_a)));
	CHECK_EQ(virtio_dev_state_put(&b.f.vd, &st_b), 0);
	CHECK_EQ(b.f.activate_calls, 0);
	vf_queue_signals = 0;
	virtio_dev_state_restart(&b.f.vd);
	CHECK_EQ(b.f.activate_calls, 1);
	vf_run_replays(&b.f.vd); /* the loop looks at the queue once */
	CHECK_EQ(b.f.notify_calls[0], 1);

	/* both pop the same third chain, and return the one in flight */
	static struct virtq_chain ca, cb;
	struct virtq *qa = &a.f.vd.vqs[0], *qb = &b.f.vd.vqs[0];
	CHECK_EQ(virtq_pop(qa, &ca), 1);
	CHECK_EQ(virtq_pop(qb, &cb), 1);
	CHECK_EQ(ca.head, cb.head);
	CHECK_EQ(cb.segs[0].len, 64);
	CHECK_EQ(virtq_pop(qb, &cb), 0);
	uint16_t held = st_a.vqs[0].inflight[0];
	CHECK_EQ(virtq_push(qb, held, 22), 0);
	CHECK_EQ(virtq_push(qb, held, 22), -EINVAL); /* pushed once only */
	CHECK_EQ(virtq_push(qb, cb.head, 33), 0);
	CHECK_EQ(vf_used_idx(&b.v), 3);
	CHECK_EQ(vf_used_id(&b.v, 1), held);
	CHECK_EQ(vf_used_len(&b.v, 2), 33);
	/* and its state taken again is what the original's becomes */
	CHECK_EQ(virtq_push(qa, held, 22), 0);
	CHECK_EQ(virtq_push(qa, ca.head, 33), 0);
	CHECK_EQ(virtio_dev_state_get(&a.f.vd, &st_a), 0);
	CHECK_EQ(virtio_dev_state_get(&b.f.vd, &st_c), 0);
	CHECK(!memcmp(&st_a, &st_c, sizeof(st_a)));
	/* every shorter payload, and a longer one, is refused */
	for (size_t n = 0; n < bl.plen; n++) {
		struct blob cut = bl;
		cut.plen = n;
		CHECK(decode(&cut, &b.f.vd, &st_c) == -EINVAL);
		CHECK(err[0]);
	}
	uint8_t *big = calloc(1, bl.plen + 1);
	memcpy(big, bl.p, bl.plen);
	struct blob longer = bl;
	longer.p = big;
	longer.plen = bl.plen + 1;
	CHECK_EQ(decode(&longer, &b.f.vd, &st_c), -EINVAL);
	free(big);
	free(bl.buf);
	rig_fini(&a);
	rig_fini(&b);
}

TEST(a_device_never_started_restores_and_comes_up_normally)
{
	static struct rig a, b;
	rig_init(&a, DEV_FEATURES);
	rig_init(&b, DEV_FEATURES);
	CHECK_EQ(virtio_dev_state_get(&a.f.vd, &st_a), 0);
	struct blob bl;
	encode(&st_a, &bl);
	CHECK_EQ(decode(&bl, &b.f.vd, &st_b), 0);
	CHECK_EQ(virtio_dev_state_put(&b.f.vd, &st_b), 0);
	virtio_dev_state_restart(&b.f.vd);
	CHECK_EQ(b.f.activate_calls, 0);
	vf_drv_up(&b.v, F_VERSION_1 | DEV_FEATURES);
	CHECK_EQ(b.f.activate_calls, 1);
	CHECK(b.f.vd.vqs[0].active);
	free(bl.buf);
	rig_fini(&a);
	rig_fini(&b);
}

TEST(a_reset_in_progress_cannot_be_saved)
{
	static struct rig a;
	rig_init(&a, DEV_FEATURES);
	busy(&a);
	a.f.reset_ret = -EINPROGRESS;
	pthread_mutex_lock(&a.f.vd.lock);
	virtio_dev_set_status(&a.f.vd, 0);
	pthread_mutex_unlock(&a.f.vd.lock);
	CHECK_EQ(virtio_dev_state_get(&a.f.vd, &st_a), -EBUSY);
	rig_fini(&a);
}

/* Take the busy state of a fresh rig, let @mutate change it, and check the
 * decode against a fresh device refuses it naming @what. */
static void refused(void (*mutate)(struct virtio_dev_state *), const char *what)
{
	static struct rig a, b;
	rig_init(&a, DEV_FEATURES);
	rig_init(&b, DEV_FEATURES);
	busy(&a);
	CHECK_EQ(virtio_dev_state_get(&a.f.vd, &st_a), 0);
	mutate(&st_a);
	struct blob bl;
	encode(&st_a, &bl);
	CHECK_EQ(decode(&bl, &b.f.vd, &st_b), -EINVAL);
	if (!strstr(err, what))
		printf("  message \"%s\" does not name \"%s\"\n", err, what);
	CHECK(strstr(err, what) != NULL);
	CHECK_EQ(b.f.vd.status, 0); /* nothing applied */
	free(bl.buf);
	rig_fini(&a);
	rig_fini(&b);
}

static void m_offered(struct virtio_dev_state *s) { s->device_features |= 1ull << 7; }
static void m_accepted(struct virtio_dev_state *s) { s->driver_features |= 1ull << 9; }
static void m_status_reserved(struct virtio_dev_state *s) { s->status |= 0x10; }
static void m_status_order(struct virtio_dev_state *s) { s->status &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK; }
static void m_no_version_1(struct virtio_dev_state *s) { s->driver_features &= ~F_VERSION_1; }
static void m_broken_flag(struct virtio_dev_state *s) { s->broken = 2; }
static void m_queues(struct virtio_dev_state *s) { s->num_queues = 1; }
static void m_size(struct virtio_dev_state *s) { s->vqs[0].size = 12; }
static void m_size_max(struct virtio_dev_state *s) { s->vqs[1].size = 2 * QMAX; }
static void m_flag(struct virtio_dev_state *s) { s->vqs[0].ready = 3; }
static void m_active_not_ready(struct virtio_dev_state *s) { s->vqs[0].ready = 0; }
static void m_inactive_with_state(struct virtio_dev_state *s) { s->vqs[1].last_avail = 1; }
static void m_not_live(struct virtio_dev_state *s) { s->status &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK; }
static void m_ready_inactive(struct virtio_dev_state *s) { s->vqs[1].ready = 1; }
static void m_event_idx(struct virtio_dev_state *s) { s->vqs[0].event_idx = 0; }
static void m_popped(struct virtio_dev_state *s) { s->vqs[0].last_avail = 5; }
static void m_head_range(struct virtio_dev_state *s) { s->vqs[0].inflight[0] = QSIZE; }
static void m_heads_order(struct virtio_dev_state *s)
{
	s->vqs[0].last_avail = 3;
	s->vqs[0].ninflight = 2;
	s->vqs[0].inflight[1] = s->vqs[0].inflight[0];
}
static void m_too_many(struct virtio_dev_state *s) { s->vqs[0].ninflight = QSIZE + 1; }
static void m_ring_outside(struct virtio_dev_state *s) { s->vqs[0].used_gpa = MEM_SIZE - 8; }
static void m_ring_align(struct virtio_dev_state *s) { s->vqs[0].desc_gpa = DESC + 8; }
static void m_ring_overlap(struct virtio_dev_state *s) { s->vqs[0].avail_gpa = DESC; }

TEST(inconsistent_or_hostile_state_is_refused_before_anything_is_applied)
{
	refused(m_offered, "offered");
	refused(m_accepted, "never offered");
	refused(m_status_reserved, "status");
	refused(m_status_order, "status");
	refused(m_no_version_1, "VERSION_1");
	refused(m_broken_flag, "broken");
	refused(m_queues, "queues");
	refused(m_size, "size");
	refused(m_size_max, "size");
	refused(m_flag, "flag");
	refused(m_active_not_ready, "not ready");
	refused(m_inactive_with_state, "inactive");
	refused(m_not_live, "not live");
	refused(m_ready_inactive, "not activated");
	refused(m_event_idx, "EVENT_IDX");
	refused(m_popped, "in flight");
	refused(m_head_range, "head");
	refused(m_heads_order, "head");
	refused(m_too_many, "in flight");
	refused(m_ring_outside, "rings");
	refused(m_ring_align, "rings");
	refused(m_ring_overlap, "rings");
}

/* A driver half-way through negotiating may have written features the
 * device never offered (FEATURES_OK would refuse them): that state is
 * saved like any other and must load (it was refused; found by
 * fuzz_virtio_pci).  Once FEATURES_OK is set they are a subset (the
 * refusal above). */
TEST(a_driver_negotiating_with_unoffered_features_round_trips)
{
	static struct rig a, b;
	rig_init(&a, DEV_FEATURES);
	rig_init(&b, DEV_FEATURES);
	struct virtio_dev *d = &a.f.vd;
	pthread_mutex_lock(&d->lock);
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	vf_write_features(d, F_VERSION_1 | DEV_FEATURES | (1ull << 9));
	pthread_mutex_unlock(&d->lock);
	CHECK_EQ(virtio_dev_state_get(d, &st_a), 0);
	CHECK(st_a.driver_features & ~st_a.device_features);
	struct blob bl;
	encode(&st_a, &bl);
	CHECK_EQ(decode(&bl, &b.f.vd, &st_b), 0);
	CHECK_EQ(virtio_dev_state_put(&b.f.vd, &st_b), 0);
	free(bl.buf);
	/* and the restored device refuses FEATURES_OK as the first would */
	pthread_mutex_lock(&b.f.vd.lock);
	virtio_dev_set_status(&b.f.vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					       VIRTIO_STATUS_FEATURES_OK);
	CHECK(!(virtio_dev_get_status(&b.f.vd) & VIRTIO_STATUS_FEATURES_OK));
	pthread_mutex_unlock(&b.f.vd.lock);
	/* so does a driver that gave up (FAILED) in the middle */
	pthread_mutex_lock(&d->lock);
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					 VIRTIO_STATUS_FAILED);
	pthread_mutex_unlock(&d->lock);
	CHECK_EQ(virtio_dev_state_get(d, &st_a), 0);
	encode(&st_a, &bl);
	CHECK_EQ(decode(&bl, &b.f.vd, &st_b), 0);
	free(bl.buf);
	rig_fini(&a);
	rig_fini(&b);
}

/* A device the driver broke after DRIVER_OK keeps its active queues: its
 * state must load, and the restored device stays broken (nothing is
 * processed, no activation) until the driver resets it. */
TEST(a_broken_device_restores_broken)
{
	static struct rig a, b;
	rig_init(&a, DEV_FEATURES);
	rig_init(&b, DEV_FEATURES);
	busy(&a);
	pthread_mutex_lock(&a.f.vd.lock);
	virtio_dev_mark_broken(&a.f.vd, "test");
	pthread_mutex_unlock(&a.f.vd.lock);
	CHECK_EQ(virtio_dev_state_get(&a.f.vd, &st_a), 0);
	CHECK(st_a.broken && st_a.vqs[0].active);
	memcpy(vf_hva(&b.mem, 0, MEM_SIZE), vf_hva(&a.mem, 0, MEM_SIZE), MEM_SIZE);
	struct blob bl;
	encode(&st_a, &bl);
	CHECK_EQ(decode(&bl, &b.f.vd, &st_b), 0);
	CHECK_EQ(virtio_dev_state_put(&b.f.vd, &st_b), 0);
	virtio_dev_state_restart(&b.f.vd);
	CHECK(b.f.vd.broken);
	CHECK_EQ(b.f.activate_calls, 0);
	CHECK(!virtio_dev_is_live(&b.f.vd));
	/* the driver's reset brings it back */
	pthread_mutex_lock(&b.f.vd.lock);
	virtio_dev_set_status(&b.f.vd, 0);
	pthread_mutex_unlock(&b.f.vd.lock);
	CHECK(!b.f.vd.broken);
	free(bl.buf);
	rig_fini(&a);
	rig_fini(&b);
}

/* Before DRIVER_OK a queue's geometry is all a transport wrote: the core's
 * state is its only copy (virtio-mmio keeps none of its own), so a queue
 * set up but not live, and one written but not enabled, come back as they
 * were; a ready queue without a size is one no transport can enable. */
TEST(queue_geometry_before_driver_ok_round_trips)
{
	static struct rig a, b;
	rig_init(&a, DEV_FEATURES);
	rig_init(&b, DEV_FEATURES);
	vf_drv_setup(&a.v, F_VERSION_1 | DEV_FEATURES); /* queue 0 ready */
	struct virtq *q1 = &a.f.vd.vqs[1];
	q1->size = 4; /* queue 1 written, not enabled */
	q1->desc_gpa = 0x30000;
	q1->avail_gpa = 0xffffffff00000000ull; /* any value until enabled */
	CHECK_EQ(virtio_dev_state_get(&a.f.vd, &st_a), 0);
	CHECK(st_a.vqs[0].ready && !st_a.vqs[0].active);
	CHECK_EQ(st_a.vqs[1].size, 4);
	struct blob bl;
	encode(&st_a, &bl);
	CHECK_EQ(decode(&bl, &b.f.vd, &st_b), 0);
	CHECK_EQ(virtio_dev_state_put(&b.f.vd, &st_b), 0);
	for (int i = 0; i < NQ; i++) {
		struct virtq *x = &a.f.vd.vqs[i], *y = &b.f.vd.vqs[i];
		CHECK_EQ(x->size, y->size);
		CHECK_EQ(x->ready, y->ready);
		CHECK_EQ(x->desc_gpa, y->desc_gpa);
		CHECK_EQ(x->avail_gpa, y->avail_gpa);
		CHECK_EQ(x->used_gpa, y->used_gpa);
	}
	free(bl.buf);

	/* ready with size 0: refused, whatever the device's status */
	st_a.vqs[0].size = 0;
	encode(&st_a, &bl);
	CHECK_EQ(decode(&bl, &b.f.vd, &st_c), -EINVAL);
	CHECK(strstr(err, "queue 0: ready with size 0") != NULL);
	free(bl.buf);
	/* not ready with size 0 (an invalid QueueNum on virtio-mmio): fine */
	st_a.vqs[0].ready = 0;
	encode(&st_a, &bl);
	CHECK_EQ(decode(&bl, &b.f.vd, &st_c), 0);
	free(bl.buf);
	rig_fini(&a);
	rig_fini(&b);
}

TEST(the_reserved_byte_of_a_queue_is_checked)
{
	static struct rig a, b;
	rig_init(&a, DEV_FEATURES);
	rig_init(&b, DEV_FEATURES);
	busy(&a);
	CHECK_EQ(virtio_dev_state_get(&a.f.vd, &st_a), 0);
	struct blob bl;
	encode(&st_a, &bl);
	/* queue 0 starts after 34 bytes of core state; its byte 7 is reserved */
	uint8_t *copy = malloc(bl.plen);
	memcpy(copy, bl.p, bl.plen);
	copy[34 + 7] = 1;
	struct blob bad = bl;
	bad.p = copy;
	CHECK_EQ(decode(&bad, &b.f.vd, &st_b), -EINVAL);
	CHECK(strstr(err, "reserved") != NULL);
	free(copy);
	free(bl.buf);
	rig_fini(&a);
	rig_fini(&b);
}

TEST_MAIN()
