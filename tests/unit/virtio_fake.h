/* SPDX-License-Identifier: MIT */
/*
 * virtio_fake.h - the pieces the virtio unit tests share:
 *
 *   - guest-memory access that aborts on a bad address (a bug in the test);
 *   - a tiny in-test "driver" (struct vf_drv) that writes split-virtqueue
 *     descriptors and avail entries into guest memory, reads the used ring
 *     and brings a device up (feature negotiation, queue 0, DRIVER_OK);
 *   - a fake transport that counts the interrupts a device asks for and
 *     records the notifications the core asks it to replay on the loop
 *     (vf_run_replays plays the loop's part);
 *   - a fake virtio device (struct vf_dev) with a small config space whose
 *     ops count their calls (the pause hooks included), for the transport
 *     tests.
 *
 * Header-only, static inline, so that every tests/unit/test_*.c stays one
 * self-contained binary; a test uses what it needs.  Include after test.h.
 */
#ifndef VISOR_TEST_VIRTIO_FAKE_H
#define VISOR_TEST_VIRTIO_FAKE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/devices/virtio/virtio.h"

/* ---- guest memory ------------------------------------------------------- */

static inline uint8_t *vf_hva(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gpa_to_hva(mem, gpa, len);
	if (!p)
		abort();
	return p;
}

static inline void vf_put16(struct guest_mem *mem, uint64_t gpa, uint16_t v)
{
	memcpy(vf_hva(mem, gpa, 2), &v, 2);
}

static inline uint16_t vf_get16(struct guest_mem *mem, uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, vf_hva(mem, gpa, 2), 2);
	return v;
}

static inline uint32_t vf_get32(struct guest_mem *mem, uint64_t gpa)
{
	uint32_t v;
	memcpy(&v, vf_hva(mem, gpa, 4), 4);
	return v;
}

/* Write descriptor @i of the table at @table (a ring's or an indirect one). */
static inline void vf_desc(struct guest_mem *mem, uint64_t table, uint32_t i, uint64_t addr,
			   uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t raw[16];
	memcpy(raw, &addr, 8);
	memcpy(raw + 8, &len, 4);
	memcpy(raw + 12, &flags, 2);
	memcpy(raw + 14, &next, 2);
	memcpy(vf_hva(mem, table + 16ull * i, 16), raw, 16);
}

/* ---- the fake transport -------------------------------------------------- */

static __attribute__((unused)) int vf_queue_signals, vf_config_signals;

static inline void vf_signal_queue(struct virtio_dev *d, uint16_t q)
{
	vf_queue_signals++;
}

static inline void vf_signal_config(struct virtio_dev *d)
{
	vf_config_signals++;
}

/* Replays the core asked for (at DRIVER_OK): how many, and the queues not
 * yet handed to the device by vf_run_replays. */
static __attribute__((unused)) int vf_replays;
static __attribute__((unused)) uint32_t vf_replay_pending;

static inline int vf_replay_notify(struct virtio_dev *d, uint16_t q)
{
	vf_replays++;
	vf_replay_pending |= 1u << q;
	return 0;
}

/* What the event loop does with the replayed notifications: each pending
 * queue of @d is notified under d->lock (as the transport's eventfd
 * handler would). */
static inline void vf_run_replays(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	uint32_t m = vf_replay_pending;
	vf_replay_pending = 0;
	for (uint16_t q = 0; q < 32; q++)
		if (m & (1u << q))
			virtio_dev_queue_notify(d, q);
	pthread_mutex_unlock(&d->lock);
}

static const struct virtio_transport_ops vf_tops __attribute__((unused)) = {
	.signal_queue = vf_signal_queue,
	.signal_config = vf_signal_config,
	.replay_notify = vf_replay_notify,
};

/* ---- the driver ----------------------------------------------------------- */

/* One buffer of a chain. */
struct vf_seg {
	uint64_t gpa;
	uint32_t len;
	bool write; /* device-writable */
};

/* The driver's side of queue 0 of @dev. */
struct vf_drv {
	struct guest_mem *mem;
	struct virtio_dev *dev;
	uint16_t qsize;
	uint64_t desc, avail, used; /* ring addresses */
	uint16_t avail_idx;         /* the driver's shadow of avail->idx */
	uint16_t next_desc;         /* where the next chain starts */
};

static inline void vf_drv_init(struct vf_drv *v, struct guest_mem *mem, struct virtio_dev *dev,
			       uint16_t qsize, uint64_t desc, uint64_t avail, uint64_t used)
{
	*v = (struct vf_drv){.mem = mem, .dev = dev, .qsize = qsize,
			     .desc = desc, .avail = avail, .used = used};
}

static inline void vf_write_features(struct virtio_dev *d, uint64_t features)
{
	d->driver_feature_sel = 0;
	virtio_dev_write_driver_features(d, (uint32_t)features);
	d->driver_feature_sel = 1;
	virtio_dev_write_driver_features(d, (uint32_t)(features >> 32));
}

/* §3.1.1 steps 1-5 with @features; returns the status read back. */
static inline uint8_t vf_negotiate(struct virtio_dev *d, uint64_t features)
{
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	vf_write_features(d, features);
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					 VIRTIO_STATUS_FEATURES_OK);
	return virtio_dev_get_status(d);
}

/* Put the fake transport under the device, negotiate exactly @features
 * and make queue 0 ready at the driver's rings (no DRIVER_OK yet: the
 * driver may already make buffers available and notify). */
static inline void vf_drv_setup(struct vf_drv *v, uint64_t features)
{
	struct virtio_dev *d = v->dev;
	pthread_mutex_lock(&d->lock);
	d->tops = &vf_tops;
	vf_negotiate(d, features);
	d->queue_sel = 0;
	struct virtq *q = virtio_dev_selected_queue(d);
	q->size = v->qsize;
	q->desc_gpa = v->desc;
	q->avail_gpa = v->avail;
	q->used_gpa = v->used;
	q->ready = true;
	pthread_mutex_unlock(&d->lock);
	v->avail_idx = 0;
	v->next_desc = 0;
}

/* §3.1.1 step 8: DRIVER_OK. */
static inline void vf_drv_ok(struct vf_drv *v)
{
	struct virtio_dev *d = v->dev;
	pthread_mutex_lock(&d->lock);
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&d->lock);
}

/* vf_drv_setup, then DRIVER_OK. */
static inline void vf_drv_up(struct vf_drv *v, uint64_t features)
{
	vf_drv_setup(v, features);
	vf_drv_ok(v);
}

/* Make the chain at @head available. */
static inline void vf_avail(struct vf_drv *v, uint16_t head)
{
	vf_put16(v->mem, v->avail + 4 + 2ull * (v->avail_idx % v->qsize), head);
	v->avail_idx++;
	vf_put16(v->mem, v->avail + 2, v->avail_idx);
}

/* Write a chain of @n descriptors from next_desc on (wrapping round the
 * table) and make it available; returns the head. */
static inline uint16_t vf_chain(struct vf_drv *v, const struct vf_seg *s, int n)
{
	uint16_t head = v->next_desc;
	for (int i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % v->qsize);
		uint16_t next = (uint16_t)((head + i + 1) % v->qsize);
		uint16_t flags = (uint16_t)((s[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		vf_desc(v->mem, v->desc, idx, s[i].gpa, s[i].len, flags, next);
	}
	v->next_desc = (uint16_t)((head + n) % v->qsize);
	vf_avail(v, head);
	return head;
}

/* The device breaks, as when the driver hands it a bad chain (takes the
 * lock). */
static inline void vf_break(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	virtio_dev_mark_broken(d, "test");
	pthread_mutex_unlock(&d->lock);
}

/* A copy of a device section's payload p[0..len) (the core's state first,
 * status its first byte) in which the driver gave up on the device:
 * FAILED set.  free() it. */
static inline uint8_t *vf_failed_payload(const uint8_t *p, size_t len)
{
	uint8_t *c = malloc(len ? len : 1);
	if (!c)
		abort();
	memcpy(c, p, len);
	c[0] |= VIRTIO_STATUS_FAILED;
	return c;
}

/* The driver resets the device (status 0; takes the lock). */
static inline void vf_reset(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	virtio_dev_set_status(d, 0);
	pthread_mutex_unlock(&d->lock);
}

/* The guest's queue notification, as the transport delivers it. */
static inline void vf_notify(struct vf_drv *v)
{
	pthread_mutex_lock(&v->dev->lock);
	virtio_dev_queue_notify(v->dev, 0);
	pthread_mutex_unlock(&v->dev->lock);
}

static inline uint16_t vf_used_idx(struct vf_drv *v)
{
	return vf_get16(v->mem, v->used + 2);
}

/* Used element @i: id and len. */
static inline uint32_t vf_used_id(struct vf_drv *v, uint16_t i)
{
	return vf_get32(v->mem, v->used + 4 + 8ull * (i % v->qsize));
}

static inline uint32_t vf_used_len(struct vf_drv *v, uint16_t i)
{
	return vf_get32(v->mem, v->used + 4 + 8ull * (i % v->qsize) + 4);
}

/* @d, restored broken with @n chains in flight on queue @q (driven by
 * @v): true if a replay and a kick of the queue leave its used ring alone
 * and the driver's reset then drops the chains and mends the device. */
static inline bool vf_broken_until_reset(struct virtio_dev *d, struct vf_drv *v, uint16_t q,
					 uint32_t n)
{
	if (!d->broken || d->vqs[q].inflight != n)
		return false;
	uint16_t used = vf_used_idx(v);
	vf_run_replays(d);
	pthread_mutex_lock(&d->lock);
	virtio_dev_queue_notify(d, q);
	pthread_mutex_unlock(&d->lock);
	bool idle = vf_used_idx(v) == used;
	vf_reset(d);
	return idle && !d->broken && !d->vqs[q].inflight;
}

/* ---- a fake device for the transport tests -------------------------------- */

#define VF_CONFIG_MAX 32

struct vf_dev {
	struct virtio_dev vd;
	uint64_t features;    /* offered */
	uint32_t config_size; /* <= VF_CONFIG_MAX; reads beyond it give 0 */
	uint8_t config[VF_CONFIG_MAX];
	int activate_calls, reset_calls, cfg_reads, cfg_writes;
	int quiesce_calls, unquiesce_calls;
	int notify_while_paused; /* queue_notify calls that found d->paused set */
	int notify_calls[VIRTIO_MAX_QUEUES];
	pthread_t notify_thread; /* where queue_notify last ran */
	int reset_ret; /* what reset returns */
	uint32_t last_cfg_off, last_cfg_len;
};

static inline struct vf_dev *vf_dev_of(struct virtio_dev *d)
{
	return (struct vf_dev *)(void *)((char *)d - offsetof(struct vf_dev, vd));
}

static inline uint64_t vf_dev_features(struct virtio_dev *d)
{
	return vf_dev_of(d)->features;
}

static inline void vf_dev_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct vf_dev *f = vf_dev_of(d);
	uint8_t *out = data;
	f->cfg_reads++;
	f->last_cfg_off = off;
	f->last_cfg_len = len;
	for (uint32_t i = 0; i < len; i++)
		out[i] = off + i < f->config_size ? f->config[off + i] : 0;
}

static inline void vf_dev_config_write(struct virtio_dev *d, uint32_t off, const void *data,
				       uint32_t len)
{
	struct vf_dev *f = vf_dev_of(d);
	const uint8_t *in = data;
	f->cfg_writes++;
	f->last_cfg_off = off;
	f->last_cfg_len = len;
	for (uint32_t i = 0; i < len; i++)
		if (off + i < f->config_size)
			f->config[off + i] = in[i];
}

static inline int vf_dev_activate(struct virtio_dev *d)
{
	vf_dev_of(d)->activate_calls++;
	return 0;
}

static inline int vf_dev_reset(struct virtio_dev *d)
{
	struct vf_dev *f = vf_dev_of(d);
	f->reset_calls++;
	return f->reset_ret;
}

static inline void vf_dev_queue_notify(struct virtio_dev *d, uint16_t q)
{
	if (d->paused)
		vf_dev_of(d)->notify_while_paused++;
	if (q < VIRTIO_MAX_QUEUES)
		vf_dev_of(d)->notify_calls[q]++;
	vf_dev_of(d)->notify_thread = pthread_self();
}

static inline void vf_dev_quiesce(struct virtio_dev *d)
{
	vf_dev_of(d)->quiesce_calls++;
}

static inline void vf_dev_unquiesce(struct virtio_dev *d)
{
	vf_dev_of(d)->unquiesce_calls++;
}

static const struct virtio_dev_ops vf_dev_ops __attribute__((unused)) = {
	.features = vf_dev_features,
	.config_read = vf_dev_config_read,
	.config_write = vf_dev_config_write,
	.activate = vf_dev_activate,
	.reset = vf_dev_reset,
	.queue_notify = vf_dev_queue_notify,
	.quiesce = vf_dev_quiesce,
	.unquiesce = vf_dev_unquiesce,
};

/* A zeroed fake offering @features, with @config_size bytes of config
 * space, initialised as a virtio device.  virtio_dev_init's result. */
static inline int vf_dev_init(struct vf_dev *f, uint64_t features, uint32_t config_size,
			      const char *name, uint32_t device_id, uint16_t nq, uint16_t qmax,
			      struct guest_mem *mem, struct loop *loop)
{
	memset(f, 0, sizeof(*f));
	f->features = features;
	f->config_size = config_size;
	return virtio_dev_init(&f->vd, &vf_dev_ops, name, device_id, nq, qmax, mem, loop);
}

#endif
