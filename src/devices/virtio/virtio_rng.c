/* SPDX-License-Identifier: MIT */
/*
 * virtio_rng.c - virtio entropy device; see virtio_rng.h.
 */
#include "virtio_rng.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>

#include "../../event/loop.h"
#include "../../util/str.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

static struct virtio_rng *to_rng(struct virtio_dev *d)
{
	return container_of(d, struct virtio_rng, vdev);
}

static uint64_t rng_features(struct virtio_dev *d)
{
	return 0; /* §5.4.3: none */
}

static void rng_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	memset(data, 0, len); /* §5.4.4: no config space */
}

static void rng_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
}

static int rng_activate(struct virtio_dev *d)
{
	return 0;
}

static int rng_reset(struct virtio_dev *d)
{
	struct virtio_rng *r = to_rng(d);
	virtio_deferred_cancel(&r->deferred);
	r->held = false; /* it belonged to the old ring */
	return 0;        /* nothing asynchronous */
}

/* Fill up to @max bytes of the writable part of @c from the kernel CSPRNG.
 * Returns the bytes written (a prefix of the writable part). */
static uint32_t fill_random(struct virtio_rng *r, const struct virtq_chain *c, uint32_t max)
{
	uint32_t done = 0;
	for (unsigned i = c->nread; i < c->nsegs && done < max; i++) {
		uint32_t want = c->segs[i].len < max - done ? c->segs[i].len : max - done;
		uint32_t got = 0;
		while (got < want) {
			ssize_t n = getrandom(c->segs[i].hva + got, want - got, GRND_NONBLOCK);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				/* EAGAIN: the host pool is not initialised yet. */
				r->m.host_rng_fails++;
				if (n < 0 && errno != EAGAIN)
					log_ratelimited(&r->rl, LOG_WARN, "virtio-rng: getrandom: %s",
							strerror(errno));
				return done + got;
			}
			got += (uint32_t)n;
		}
		done += got;
	}
	return done;
}

/* Bytes request @c will get: its writable part, capped per request; none
 * when it has device-readable buffers (refused, see virtio_rng.h). */
static uint32_t request_bytes(const struct virtq_chain *c)
{
	if (c->nread)
		return 0;
	return c->write_len < VIRTIO_RNG_MAX_PER_REQ ? c->write_len : VIRTIO_RNG_MAX_PER_REQ;
}

/* One request: fill its buffers (up to the per-request cap).  Returns the
 * byte count for the used ring.  d->lock held. */
static uint32_t rng_request(struct virtio_rng *r, const struct virtq_chain *c)
{
	uint32_t n = 0;
	if (c->nread) {
		r->m.invalid_requests++;
		log_ratelimited(&r->rl, LOG_WARN,
				"virtio-rng: request with device-readable buffers returned unfilled");
	} else {
		n = fill_random(r, c, request_bytes(c));
	}
	r->m.entropy_requests++;
	r->m.entropy_bytes += n;
	return n;
}

/*
 * One pass over the queue (d->lock held, device live, queue active): pop
 * each chain, ask the rate limiter, fill, push; at most VIRTIO_RNG_BUDGET
 * bytes (the loop continues the pass).  A chain the limiter refuses is
 * kept in r->chain (held) and the pass ends; the limiter's timer resumes
 * it.  (virtio_dev_drain cannot end a pass from its callback with the
 * chain kept, hence this loop of its own.)
 */
static void rng_pass(struct virtio_rng *r)
{
	struct virtio_dev *d = &r->vdev;
	struct virtq *q = &d->vqs[0];
	bool pushed = false;
	uint64_t spent = 0;
	r->m.entropy_event_count++;
	for (;;) {
		int rc = 1;
		for (;;) {
			if (!r->held) {
				rc = virtq_pop(q, &r->chain);
				if (rc <= 0)
					break;
			}
			if (r->limited &&
			    !rate_limiter_consume(&r->limiter, request_bytes(&r->chain), 1)) {
				r->held = true;
				r->m.entropy_rate_limiter_throttled++;
				goto out;
			}
			r->held = false;
			uint32_t n = rng_request(r, &r->chain);
			if (virtq_push(q, r->chain.head, n) < 0) {
				r->m.entropy_event_fails++;
				virtio_dev_mark_broken(d, "push of a head not in flight");
				return;
			}
			pushed = true;
			spent += 1 + n;
			if (virtio_deferred_yield(&r->deferred, 0, spent, VIRTIO_RNG_BUDGET))
				goto out;
		}
		if (rc < 0) {
			r->m.entropy_event_fails++;
			virtio_dev_mark_broken(d, "invalid descriptor chain");
			return;
		}
		if (!virtq_enable_notify(q))
			break;
	}
out:
	if (pushed)
		virtio_dev_signal_used(d, 0);
}

static void rng_queue_notify(struct virtio_dev *d, uint16_t q)
{
	if (q == 0)
		rng_pass(to_rng(d));
}

/* The rate limiter's timer fired (loop thread): retry the held request. */
static void limiter_cb(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct virtio_rng *r = ctx;
	pthread_mutex_lock(&r->vdev.lock);
	rate_limiter_timer_fired(&r->limiter);
	r->m.rate_limiter_event_count++;
	virtio_dev_queue_notify(&r->vdev, 0);
	pthread_mutex_unlock(&r->vdev.lock);
}

static const struct virtio_dev_ops rng_ops = {
	.features = rng_features,
	.config_read = rng_config_read,
	.config_write = rng_config_write,
	.activate = rng_activate,
	.reset = rng_reset,
	.queue_notify = rng_queue_notify,
};

int virtio_rng_init(struct virtio_rng *r, const struct guest_mem *mem, struct loop *loop)
{
	memset(r, 0, sizeof(*r));
	int rc = virtio_dev_init(&r->vdev, &rng_ops, "virtio-rng", VIRTIO_ID_RNG, 1,
				 VIRTIO_RNG_QUEUE_MAX, mem, loop);
	if (rc < 0)
		return rc;
	rc = virtio_deferred_init(&r->deferred, &r->vdev);
	if (rc < 0) {
		virtio_dev_destroy(&r->vdev);
		return rc;
	}
	return 0;
}

int virtio_rng_set_rate_limiter(struct virtio_rng *r, const struct rate_limiter_config *c)
{
	struct virtio_dev *d = &r->vdev;
	int rc = 0;
	pthread_mutex_lock(&d->lock);
	if (r->limited) {
		rate_limiter_update(&r->limiter, c);
	} else if (rate_limiter_config_limits(c)) {
		/* Without a loop nobody would resume a throttled queue. */
		rc = d->loop ? rate_limiter_init(&r->limiter, c, r->limiter_clock,
						 r->limiter_clock_ctx)
			     : -EINVAL;
		if (rc == 0) {
			rc = loop_add(d->loop, r->limiter.timer_fd, EPOLLIN, limiter_cb, r);
			if (rc < 0)
				rate_limiter_destroy(&r->limiter);
			else
				r->limited = true;
		}
	}
	/* At once: a request held under the old limits is looked at again. */
	if (rc == 0 && r->held)
		virtio_dev_queue_notify(d, 0);
	pthread_mutex_unlock(&d->lock);
	return rc;
}

void virtio_rng_get_metrics(struct virtio_rng *r, struct virtio_rng_metrics *out)
{
	pthread_mutex_lock(&r->vdev.lock);
	*out = r->m;
	pthread_mutex_unlock(&r->vdev.lock);
}

void virtio_rng_destroy(struct virtio_rng *r)
{
	if (r->limited) {
		loop_del(r->vdev.loop, r->limiter.timer_fd);
		rate_limiter_destroy(&r->limiter);
		r->limited = false;
	}
	virtio_deferred_fini(&r->deferred);
	virtio_dev_destroy(&r->vdev);
}

/* ---- snapshot state ------------------------------------------------------ */

int virtio_rng_state_get(struct virtio_rng *r, struct virtio_rng_state *st)
{
	struct virtio_dev *d = &r->vdev;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&d->lock);
	if (r->held && virtio_dev_is_live(d) && d->vqs[0].active) {
		st->held = 1;
		st->held_head = r->chain.head;
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void virtio_rng_state_encode(const struct virtio_rng_state *st, struct snap_writer *w)
{
	snap_put_u8(w, st->held);
	snap_put_u8(w, 0); /* reserved */
	snap_put_u16(w, st->held_head);
}

int virtio_rng_state_decode(struct snap_cursor *c, const struct virtio_rng *live,
			    struct virtio_rng_state *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	st->held = snap_get_u8(c);
	uint8_t reserved = snap_get_u8(c);
	st->held_head = snap_get_u16(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "virtio-rng state truncated");
	if (st->held > 1 || reserved)
		return err_set(err, errlen, -EINVAL, "virtio-rng: held flag %u, reserved byte %u",
			       st->held, reserved);
	if (st->held_head >= live->vdev.queue_max || (!st->held && st->held_head))
		return err_set(err, errlen, -EINVAL, "virtio-rng: held head %u%s", st->held_head,
			       st->held ? " out of range" : " without a held request");
	return 0;
}

int virtio_rng_state_check(const struct virtio_rng_state *st, const struct virtio_dev_state *core,
			   char *err, size_t errlen)
{
	const struct virtq_state *q = &core->vqs[0];
	bool live = virtio_dev_state_is_live(core);
	if (st->held && (!live || !q->active))
		return err_set(err, errlen, -EINVAL,
			       "virtio-rng: a request is held but the queue is not running");
	/* a device that is not live holds nothing; its queue's chains in flight
	 * die at the driver's reset (see virtio_blk_state_check) */
	if (live && (q->ninflight != st->held || (st->held && q->inflight[0] != st->held_head)))
		return err_set(err, errlen, -EINVAL,
			       "virtio-rng: %u requests in flight on the queue, the device holds %u",
			       q->ninflight, st->held);
	return 0;
}

int virtio_rng_state_put(struct virtio_rng *r, const struct virtio_rng_state *st)
{
	struct virtio_dev *d = &r->vdev;
	struct virtq *q = &d->vqs[0];
	int rc = 0;
	pthread_mutex_lock(&d->lock);
	r->held = false;
	if (st->held) {
		rc = virtq_chain_reread(q, st->held_head, &r->chain);
		if (rc == -EIO) {
			r->m.entropy_event_fails++;
			virtio_dev_mark_broken(d, "the held request no longer passes at restore");
			rc = 0;
		} else if (!rc) {
			r->held = true;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}
