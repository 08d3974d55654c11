/* SPDX-License-Identifier: MIT */
/*
 * virtio_rng.c - virtio entropy device; see virtio_rng.h.
 */
#include "virtio_rng.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

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
	virtio_deferred_cancel(&to_rng(d)->deferred);
	return 0; /* nothing asynchronous */
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

/* One pass over the ring.  d->lock held. */
static void process_queue(struct virtio_rng *r)
{
	struct virtio_dev *d = &r->vdev;
	struct virtq *q = &d->vqs[0];
	bool pushed = false;
	uint64_t spent = 0;
	if (!q->active || d->broken || !(d->status & VIRTIO_STATUS_DRIVER_OK))
		return;
	for (;;) {
		int rc;
		while ((rc = virtq_pop(q, &r->chain)) == 1) {
			const struct virtq_chain *c = &r->chain;
			uint32_t n = 0;
			if (c->nread) {
				r->n_rejected++;
				log_ratelimited(&r->rl, LOG_WARN,
						"virtio-rng: request with device-readable buffers "
						"returned unfilled");
			} else {
				n = fill_random(r, c,
						c->write_len < VIRTIO_RNG_MAX_PER_REQ
							? c->write_len
							: VIRTIO_RNG_MAX_PER_REQ);
			}
			if (virtq_push(q, c->head, n) < 0) {
				virtio_dev_mark_broken(d, "push of a head not in flight");
				return;
			}
			pushed = true;
			r->n_requests++;
			r->n_bytes += n;
			spent += n;
			/* Let other handlers run; continue from the loop. */
			if (virtio_deferred_yield(&r->deferred, 0, spent, VIRTIO_RNG_BUDGET))
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
		virtio_dev_signal_used(d, 0);
}

static void rng_queue_notify(struct virtio_dev *d, uint16_t q)
{
	if (q == 0)
		process_queue(to_rng(d));
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

void virtio_rng_destroy(struct virtio_rng *r)
{
	virtio_deferred_fini(&r->deferred);
	virtio_dev_destroy(&r->vdev);
}
