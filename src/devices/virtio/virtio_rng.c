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

/* One request: fill its buffers (up to the per-request cap) and return it
 * with the byte count.  d->lock held. */
static uint64_t rng_request(void *ctx, const struct virtq_chain *c, uint32_t *ret_head,
			    uint32_t *ret_len)
{
	struct virtio_rng *r = ctx;
	uint32_t n = 0;
	(void)ret_head; /* this chain goes back */
	if (c->nread) {
		r->n_rejected++;
		log_ratelimited(&r->rl, LOG_WARN,
				"virtio-rng: request with device-readable buffers returned unfilled");
	} else {
		n = fill_random(r, c,
				c->write_len < VIRTIO_RNG_MAX_PER_REQ ? c->write_len
								      : VIRTIO_RNG_MAX_PER_REQ);
	}
	r->n_requests++;
	r->n_bytes += n;
	*ret_len = n;
	return n;
}

static void rng_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct virtio_rng *r = to_rng(d);
	/* The budget bounds the bytes of one pass; the loop continues it. */
	virtio_dev_drain(d, q, &r->chain, rng_request, r, &r->deferred, VIRTIO_RNG_BUDGET);
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
