/* SPDX-License-Identifier: MIT */
/*
 * virtio.c - the transport-independent part of a virtio device: feature
 * negotiation, the device status state machine (§2.1, §3.1.1), queue
 * activation and the replay of notifications at DRIVER_OK, reset (§2.4),
 * the "needs reset" state (§2.1.2), deferred queue work, and the pause
 * gate of the VM lifecycle.
 *
 * Everything except init/destroy/reset_done, pause/resume and the
 * deferred-work set-up and handler runs with d->lock held by the caller
 * (see virtio.h).
 */
#include "virtio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../event/loop.h"
#include "../../util/log.h"
#include "../../util/str.h"

#define STATUS_KNOWN                                                                       \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |      \
	 VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED)

/* One limiter for all devices: what a guest can trigger at will. */
static struct ratelimit virtio_rl;

static const char *dev_name(const struct virtio_dev *d)
{
	return d->name ? d->name : "virtio";
}

int virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops, const char *name,
		    uint32_t device_id, uint16_t num_queues, uint16_t queue_max,
		    const struct guest_mem *mem, struct loop *loop)
{
	if (!d || !ops || !ops->features || num_queues > VIRTIO_MAX_QUEUES || !queue_max ||
	    (queue_max & (queue_max - 1)) || queue_max > VIRTQ_MAX_SIZE)
		return -EINVAL;
	/* The transport sets tops/transport after init. */
	memset(d, 0, sizeof(*d));
	int r = pthread_mutex_init(&d->lock, NULL);
	if (r)
		return -r;
	d->ops = ops;
	d->name = name;
	d->device_id = device_id;
	d->num_queues = num_queues;
	d->queue_max = queue_max;
	d->mem = mem;
	d->loop = loop;
	d->device_features = ops->features(d) | (1ull << VIRTIO_F_VERSION_1) |
			     (1ull << VIRTIO_F_INDIRECT_DESC) | (1ull << VIRTIO_F_EVENT_IDX);
	for (uint16_t i = 0; i < VIRTIO_MAX_QUEUES; i++)
		d->vqs[i].size = queue_max;
	return 0;
}

void virtio_dev_destroy(struct virtio_dev *d)
{
	pthread_mutex_destroy(&d->lock);
}

uint32_t virtio_dev_read_device_features(struct virtio_dev *d)
{
	/* §4.1.4.3 / §4.2.2: selector 0 = bits 0..31, 1 = bits 32..63,
	 * anything else reads 0. */
	if (d->device_feature_sel == 0)
		return (uint32_t)d->device_features;
	if (d->device_feature_sel == 1)
		return (uint32_t)(d->device_features >> 32);
	return 0;
}

static bool negotiating(const struct virtio_dev *d)
{
	const uint8_t need = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
	const uint8_t past = VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK |
			     VIRTIO_STATUS_FAILED;
	return !d->reset_pending && (d->status & need) == need && !(d->status & past);
}

void virtio_dev_write_driver_features(struct virtio_dev *d, uint32_t val)
{
	/* §3.1.1 step 4: features are written after DRIVER and before
	 * FEATURES_OK; later (or earlier) writes are ignored. */
	if (!negotiating(d)) {
		log_ratelimited(&virtio_rl, LOG_WARN,
				"%s: driver features written in status 0x%x, ignored", dev_name(d),
				d->status);
		return;
	}
	if (d->driver_feature_sel == 0)
		d->driver_features = (d->driver_features & ~0xffffffffull) | val;
	else if (d->driver_feature_sel == 1)
		d->driver_features = (d->driver_features & 0xffffffffull) | ((uint64_t)val << 32);
	/* other selectors: no such feature bits, ignored */
}

uint8_t virtio_dev_get_status(struct virtio_dev *d)
{
	/* During a pending reset the old status is still visible: the driver
	 * waits for 0 (§2.4.2). */
	return d->status;
}

/* Forget everything the driver set up (the device has quiesced).  The
 * pause gate stays as it is: the VM is still paused. */
static void clear_state(struct virtio_dev *d)
{
	d->status = 0;
	d->paused_pending = 0;
	d->reset_pending = false;
	d->broken = false;
	d->driver_features = 0;
	d->device_feature_sel = 0;
	d->driver_feature_sel = 0;
	d->queue_sel = 0;
	for (uint16_t i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		struct virtq *q = &d->vqs[i];
		virtq_reset(q);
		q->size = d->queue_max;
		q->ready = false;
		q->desc_gpa = q->avail_gpa = q->used_gpa = 0;
	}
}

static void do_reset(struct virtio_dev *d)
{
	int r = d->ops->reset ? d->ops->reset(d) : 0;
	if (r == -EINPROGRESS) {
		/* status keeps reading non-zero until virtio_dev_reset_done() */
		d->reset_pending = true;
		return;
	}
	if (r)
		log_warn("%s: device reset failed (%d), resetting anyway", dev_name(d), r);
	clear_state(d);
}

void virtio_dev_reset_done(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	if (d->reset_pending)
		clear_state(d);
	pthread_mutex_unlock(&d->lock);
}

static void ignore_status(struct virtio_dev *d, uint8_t val, const char *why)
{
	log_ratelimited(&virtio_rl, LOG_WARN, "%s: status 0x%x -> 0x%x ignored: %s", dev_name(d),
			d->status, val, why);
}

static bool features_acceptable(const struct virtio_dev *d)
{
	return !(d->driver_features & ~d->device_features) &&
	       (d->driver_features & (1ull << VIRTIO_F_VERSION_1));
}

/* The device just went live: notifications the driver sent before
 * DRIVER_OK were ignored, so every active queue is looked at once, on the
 * loop thread through the transport (see virtio.h).  Never ops->queue_notify
 * from here: this is a status write on a vCPU thread. */
static void replay_notifications(struct virtio_dev *d)
{
	if (d->paused) {
		/* Nothing runs now anyway: virtio_dev_resume looks at them. */
		for (uint16_t i = 0; i < d->num_queues; i++)
			if (d->vqs[i].active)
				d->paused_pending |= 1u << i;
		return;
	}
	if (!d->tops || !d->tops->replay_notify)
		return;
	for (uint16_t i = 0; i < d->num_queues; i++) {
		if (!d->vqs[i].active)
			continue;
		int r = d->tops->replay_notify(d, i);
		if (r)
			log_ratelimited(&virtio_rl, LOG_DEBUG,
					"%s: queue %u: no notification replayed at DRIVER_OK: %s",
					dev_name(d), i, strerror(-r));
	}
}

/* DRIVER_OK was just set: bring the queues and the device up. */
static void go_live(struct virtio_dev *d)
{
	for (uint16_t i = 0; i < d->num_queues; i++) {
		struct virtq *q = &d->vqs[i];
		if (!q->ready)
			continue;
		if (virtq_activate(q, d->mem, d->driver_features)) {
			log_ratelimited(&virtio_rl, LOG_WARN,
					"%s: queue %u: bad geometry (size %u, desc 0x%llx, avail "
					"0x%llx, used 0x%llx)",
					dev_name(d), i, q->size, (unsigned long long)q->desc_gpa,
					(unsigned long long)q->avail_gpa,
					(unsigned long long)q->used_gpa);
			virtio_dev_mark_broken(d, "queue activation refused");
			return;
		}
	}
	if (d->ops->activate) {
		int r = d->ops->activate(d);
		if (r) {
			virtio_dev_mark_broken(d, "device activation failed");
			return;
		}
	}
	replay_notifications(d);
}

void virtio_dev_set_status(struct virtio_dev *d, uint8_t val)
{
	if (d->reset_pending) {
		ignore_status(d, val, "reset in progress");
		return;
	}
	if (val == 0) {
		do_reset(d);
		return;
	}
	uint8_t old = d->status;
	/* DEVICE_NEEDS_RESET belongs to the device; drivers write back what
	 * they read, so the bit is neither set nor cleared by a write. */
	uint8_t needs_reset = old & VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	val &= (uint8_t)~VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	old &= (uint8_t)~VIRTIO_STATUS_DEVICE_NEEDS_RESET;

	if (old & VIRTIO_STATUS_FAILED) {
		ignore_status(d, val, "FAILED is set until reset");
		return;
	}
	if (val & VIRTIO_STATUS_FAILED) {
		/* §2.1: the driver gave up; it sticks until reset.  Other
		 * bits in the same write are not applied. */
		d->status = old | needs_reset | VIRTIO_STATUS_FAILED;
		return;
	}
	if (val & ~STATUS_KNOWN) {
		ignore_status(d, val, "reserved bits");
		return;
	}
	if (old & ~val) {
		ignore_status(d, val, "bits cleared without reset");
		return;
	}
	/* §3.1.1 order: each bit needs the one before it (several may be
	 * set in one write). */
	if (((val & VIRTIO_STATUS_DRIVER) && !(val & VIRTIO_STATUS_ACKNOWLEDGE)) ||
	    ((val & VIRTIO_STATUS_FEATURES_OK) && !(val & VIRTIO_STATUS_DRIVER)) ||
	    ((val & VIRTIO_STATUS_DRIVER_OK) && !(val & VIRTIO_STATUS_FEATURES_OK))) {
		ignore_status(d, val, "out of order");
		return;
	}
	uint8_t added = val & (uint8_t)~old;
	if ((added & VIRTIO_STATUS_DRIVER_OK) && d->broken) {
		ignore_status(d, val, "device needs reset");
		return;
	}
	if ((added & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(d)) {
		/* §3.1.1 step 5/6: the driver re-reads status and finds
		 * FEATURES_OK clear, so it knows negotiation failed. */
		log_ratelimited(&virtio_rl, LOG_WARN,
				"%s: driver features 0x%llx not acceptable (offered 0x%llx, "
				"VERSION_1 required)",
				dev_name(d), (unsigned long long)d->driver_features,
				(unsigned long long)d->device_features);
		val &= (uint8_t)~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
		d->status = val | needs_reset;
		return;
	}
	d->status = val | needs_reset;
	if (added & VIRTIO_STATUS_DRIVER_OK)
		go_live(d);
}

struct virtq *virtio_dev_selected_queue(struct virtio_dev *d)
{
	return d->queue_sel < d->num_queues ? &d->vqs[d->queue_sel] : NULL;
}

bool virtio_dev_queue_config_writable(struct virtio_dev *d)
{
	/* Geometry is fixed from DRIVER_OK until reset (checklist B.15). */
	return !d->reset_pending && !(d->status & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FAILED));
}

/* Queues are processed only while the device is up and healthy. */
bool virtio_dev_is_live(const struct virtio_dev *d)
{
	return !d->reset_pending && !d->broken && (d->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(d->status & VIRTIO_STATUS_FAILED);
}

void virtio_dev_queue_notify(struct virtio_dev *d, uint16_t q)
{
	if (q >= d->num_queues)
		return;
	if (d->paused) {
		/* Whether it matters is decided at resume, by the same test. */
		d->paused_pending |= 1u << q;
		return;
	}
	if (!virtio_dev_is_live(d) || !d->vqs[q].active)
		return;
	if (d->ops->queue_notify)
		d->ops->queue_notify(d, q);
}

void virtio_dev_pause(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	bool was = d->paused;
	d->paused = true;
	pthread_mutex_unlock(&d->lock);
	/* Gate first: from here on no notification reaches the device, so
	 * quiesce only has to stop what the device started itself. */
	if (!was && d->ops->quiesce)
		d->ops->quiesce(d);
}

void virtio_dev_resume(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	bool was = d->paused;
	pthread_mutex_unlock(&d->lock);
	if (!was)
		return;
	/* The gate stays closed while the device restarts: what it kicks
	 * now is recorded and handled below, once. */
	if (d->ops->unquiesce)
		d->ops->unquiesce(d);
	pthread_mutex_lock(&d->lock);
	d->paused = false;
	uint32_t pending = d->paused_pending;
	d->paused_pending = 0;
	for (uint16_t q = 0; q < d->num_queues; q++)
		if (pending & (1u << q))
			virtio_dev_queue_notify(d, q);
	pthread_mutex_unlock(&d->lock);
}

void virtio_dev_config_changed(struct virtio_dev *d)
{
	d->config_generation++;
	if (!d->reset_pending && (d->status & VIRTIO_STATUS_DRIVER_OK) && d->tops &&
	    d->tops->signal_config)
		d->tops->signal_config(d);
}

void virtio_dev_signal_used(struct virtio_dev *d, uint16_t q)
{
	/* §2.1.2: no used buffer notifications before DRIVER_OK.  A broken
	 * device may still report buffers it completed. */
	if (q >= d->num_queues || d->reset_pending || !(d->status & VIRTIO_STATUS_DRIVER_OK))
		return;
	if (virtq_should_signal(&d->vqs[q]) && d->tops && d->tops->signal_queue)
		d->tops->signal_queue(d, q);
}

void virtio_dev_mark_dirty(struct virtio_dev *d)
{
	if (!guest_mem_marking(d->mem))
		return;
	struct virtq_chain *c = malloc(sizeof(*c));
	pthread_mutex_lock(&d->lock);
	if (!c)
		guest_mem_mark_all(d->mem);
	else if (virtio_dev_is_live(d))
		for (uint16_t i = 0; i < d->num_queues; i++)
			virtq_mark_dirty(&d->vqs[i], c);
	pthread_mutex_unlock(&d->lock);
	free(c);
}

void virtio_dev_mark_broken(struct virtio_dev *d, const char *why)
{
	if (d->broken)
		return;
	d->broken = true;
	d->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	d->config_generation++;
	log_ratelimited(&virtio_rl, LOG_WARN, "%s: %s; device needs reset", dev_name(d),
			why ? why : "driver error");
	/* §2.1.2: with DRIVER_OK set the device MUST send a configuration
	 * change notification; before DRIVER_OK the driver reads status. */
	if ((d->status & VIRTIO_STATUS_DRIVER_OK) && d->tops && d->tops->signal_config)
		d->tops->signal_config(d);
}

/* ---- deferred queue work ------------------------------------------------- */

_Static_assert(VIRTIO_MAX_QUEUES <= 32,
	       "virtio_deferred.pending and virtio_dev.paused_pending have a bit per queue");

static void deferred_cb(struct loop *l, int fd, uint32_t events, void *ctx)
{
	uint64_t cnt;
	(void)!read(fd, &cnt, sizeof(cnt)); /* drain: kicks coalesce */
	virtio_deferred_run(ctx);
}

int virtio_deferred_init(struct virtio_deferred *df, struct virtio_dev *d)
{
	*df = (struct virtio_deferred){.d = d, .fd = -1};
	if (!d->loop)
		return 0;
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	int r = loop_add(d->loop, fd, EPOLLIN, deferred_cb, df);
	if (r < 0) {
		close(fd);
		return r;
	}
	df->fd = fd;
	return 0;
}

void virtio_deferred_fini(struct virtio_deferred *df)
{
	if (df->fd < 0)
		return;
	loop_del(df->d->loop, df->fd);
	close(df->fd);
	df->fd = -1;
}

void virtio_deferred_kick(struct virtio_deferred *df, uint16_t q)
{
	if (q >= df->d->num_queues)
		return;
	df->pending |= 1u << q;
	if (df->fd < 0)
		return;
	uint64_t one = 1;
	/* EAGAIN only when the counter is saturated: a wake-up is pending. */
	if (write(df->fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_ratelimited(&virtio_rl, LOG_WARN, "%s: deferred work eventfd: %s",
				dev_name(df->d), strerror(errno));
}

bool virtio_deferred_yield(struct virtio_deferred *df, uint16_t q, uint64_t spent,
			   uint64_t budget)
{
	if (df->fd < 0 || spent < budget)
		return false;
	virtio_deferred_kick(df, q);
	return true;
}

void virtio_dev_drain(struct virtio_dev *d, uint16_t qi, struct virtq_chain *chain,
		      virtio_chain_fn fn, void *ctx, struct virtio_deferred *df,
		      uint64_t budget)
{
	if (qi >= d->num_queues)
		return;
	if (d->paused) {
		d->paused_pending |= 1u << qi; /* never touch a paused device's rings */
		return;
	}
	if (!virtio_dev_is_live(d) || !d->vqs[qi].active)
		return;
	struct virtq *q = &d->vqs[qi];
	bool pushed = false;
	uint64_t spent = 0;
	for (;;) {
		int rc;
		while ((rc = virtq_pop(q, chain)) == 1) {
			uint32_t head = chain->head, len = 0;
			spent += 1 + fn(ctx, chain, &head, &len);
			if (head == VIRTIO_HOLD)
				continue;
			if (virtq_push(q, (uint16_t)head, len) < 0) {
				virtio_dev_mark_broken(d, "push of a head not in flight");
				return;
			}
			pushed = true;
			if (virtio_deferred_yield(df, qi, spent, budget))
				goto out;
		}
		if (rc < 0) {
			virtio_dev_mark_broken(d, "invalid descriptor chain");
			return;
		}
		if (!virtq_enable_notify(q))
			break;
	}
out:
	if (pushed)
		virtio_dev_signal_used(d, qi);
}

void virtio_deferred_cancel(struct virtio_deferred *df)
{
	df->pending = 0;
}

void virtio_deferred_run(struct virtio_deferred *df)
{
	struct virtio_dev *d = df->d;
	pthread_mutex_lock(&d->lock);
	for (uint16_t q = 0; q < d->num_queues; q++) {
		if (!(df->pending & (1u << q)))
			continue;
		df->pending &= ~(1u << q);
		virtio_dev_queue_notify(d, q);
	}
	pthread_mutex_unlock(&d->lock);
}

/* ---- snapshot state ---------------------------------------------------------- */

int virtio_dev_state_get(struct virtio_dev *d, struct virtio_dev_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&d->lock);
	if (d->reset_pending) {
		pthread_mutex_unlock(&d->lock);
		return -EBUSY;
	}
	st->status = d->status;
	st->broken = d->broken;
	st->device_features = d->device_features;
	st->driver_features = d->driver_features;
	st->device_feature_sel = d->device_feature_sel;
	st->driver_feature_sel = d->driver_feature_sel;
	st->queue_sel = d->queue_sel;
	st->num_queues = d->num_queues;
	st->config_generation = d->config_generation;
	for (uint16_t i = 0; i < d->num_queues; i++)
		virtq_state_get(&d->vqs[i], &st->vqs[i]);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void virtio_dev_state_encode(const struct virtio_dev_state *st, struct snap_writer *w)
{
	snap_put_u8(w, st->status);
	snap_put_u8(w, st->broken);
	snap_put_u16(w, st->queue_sel);
	snap_put_u32(w, st->config_generation);
	snap_put_u64(w, st->device_features);
	snap_put_u64(w, st->driver_features);
	snap_put_u32(w, st->device_feature_sel);
	snap_put_u32(w, st->driver_feature_sel);
	snap_put_u16(w, st->num_queues);
	for (uint16_t i = 0; i < st->num_queues && i < VIRTIO_MAX_QUEUES; i++)
		virtq_state_encode(&st->vqs[i], w);
}

int virtio_dev_state_decode(struct snap_cursor *c, const struct virtio_dev *d,
			    struct virtio_dev_state *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	st->status = snap_get_u8(c);
	st->broken = snap_get_u8(c);
	st->queue_sel = snap_get_u16(c);
	st->config_generation = snap_get_u32(c);
	st->device_features = snap_get_u64(c);
	st->driver_features = snap_get_u64(c);
	st->device_feature_sel = snap_get_u32(c);
	st->driver_feature_sel = snap_get_u32(c);
	st->num_queues = snap_get_u16(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "virtio state truncated");
	if (st->num_queues != d->num_queues)
		return err_set(err, errlen, -EINVAL, "%u queues saved, this device has %u",
			       st->num_queues, d->num_queues);
	for (uint16_t i = 0; i < st->num_queues; i++) {
		int rc = virtq_state_decode(c, i, d->queue_max, &st->vqs[i], err, errlen);
		if (rc)
			return rc;
	}
	if (st->device_features != d->device_features)
		return err_set(err, errlen, -EINVAL,
			       "offered features %#llx saved, this device offers %#llx",
			       (unsigned long long)st->device_features,
			       (unsigned long long)d->device_features);
	uint8_t s = st->status;
	bool order_ok = (!(s & VIRTIO_STATUS_DRIVER) || (s & VIRTIO_STATUS_ACKNOWLEDGE)) &&
			(!(s & VIRTIO_STATUS_FEATURES_OK) || (s & VIRTIO_STATUS_DRIVER)) &&
			(!(s & VIRTIO_STATUS_DRIVER_OK) || (s & VIRTIO_STATUS_FEATURES_OK));
	if ((s & ~STATUS_KNOWN) || !order_ok)
		return err_set(err, errlen, -EINVAL, "status %#x is not one a driver can reach", s);
	/* Until FEATURES_OK the accepted features are whatever the driver
	 * wrote while negotiating (any bits: FEATURES_OK is what refuses
	 * those never offered), and a snapshot of that moment must load. */
	if ((s & VIRTIO_STATUS_FEATURES_OK) && (st->driver_features & ~st->device_features))
		return err_set(err, errlen, -EINVAL, "accepted features %#llx were never offered",
			       (unsigned long long)st->driver_features);
	if ((s & VIRTIO_STATUS_FEATURES_OK) &&
	    !(st->driver_features & (1ull << VIRTIO_F_VERSION_1)))
		return err_set(err, errlen, -EINVAL, "FEATURES_OK without VERSION_1");
	if (st->broken > 1)
		return err_set(err, errlen, -EINVAL, "broken flag %u is not 0 or 1", st->broken);
	/* a device that went broken after DRIVER_OK keeps its queues active
	 * (nothing is processed until the driver resets it) */
	bool up = s & VIRTIO_STATUS_DRIVER_OK;
	bool live = up && !st->broken;
	bool ev = st->driver_features & (1ull << VIRTIO_F_EVENT_IDX);
	bool ind = st->driver_features & (1ull << VIRTIO_F_INDIRECT_DESC);
	for (uint16_t i = 0; i < st->num_queues; i++) {
		const struct virtq_state *q = &st->vqs[i];
		if (q->active && !up)
			return err_set(err, errlen, -EINVAL,
				       "queue %u is active but the device is not live", i);
		if (live && q->ready && !q->active)
			return err_set(err, errlen, -EINVAL,
				       "queue %u is ready but was not activated at DRIVER_OK", i);
		if (q->active && (q->event_idx != ev || q->indirect != ind))
			return err_set(err, errlen, -EINVAL,
				       "queue %u: EVENT_IDX/INDIRECT_DESC differ from the features", i);
		int rc = virtq_state_check(q, i, d->mem, err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

bool virtio_dev_state_is_live(const struct virtio_dev_state *st)
{
	return (st->status & VIRTIO_STATUS_DRIVER_OK) && !(st->status & VIRTIO_STATUS_FAILED) &&
	       !st->broken;
}

int virtio_dev_state_put(struct virtio_dev *d, const struct virtio_dev_state *st)
{
	pthread_mutex_lock(&d->lock);
	d->status = st->status;
	d->broken = st->broken;
	d->reset_pending = false;
	d->driver_features = st->driver_features;
	d->device_feature_sel = st->device_feature_sel;
	d->driver_feature_sel = st->driver_feature_sel;
	d->queue_sel = st->queue_sel;
	d->config_generation = st->config_generation;
	int rc = 0;
	for (uint16_t i = 0; i < d->num_queues && !rc; i++)
		rc = virtq_state_put(&d->vqs[i], &st->vqs[i], d->mem);
	pthread_mutex_unlock(&d->lock);
	return rc;
}

void virtio_dev_state_restart(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	if (virtio_dev_is_live(d)) {
		if (d->ops->activate && d->ops->activate(d))
			virtio_dev_mark_broken(d, "device activation failed at restore");
		else
			replay_notifications(d);
	}
	pthread_mutex_unlock(&d->lock);
}
