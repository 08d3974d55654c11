/* SPDX-License-Identifier: MIT */
/*
 * virtio_rng.h - virtio entropy device (virtio 1.2 §5.4), one request queue.
 *
 * Each request's writable buffers are filled straight from getrandom(2)
 * (GRND_NONBLOCK) into guest memory: the host allocates nothing per
 * request, and at most VIRTIO_RNG_MAX_PER_REQ bytes are generated for one
 * request however large its buffers (checklist E.33: a 4 GiB request costs
 * 64 KiB of work; §5.4.6.2 lets the device use less than the whole buffer).
 *
 * Policy choices:
 *   - A request with device-readable descriptors violates §5.4.6.1; it is
 *     returned with 0 bytes used (not filled), logged rate-limited, and the
 *     device keeps working (it is a request-level, not ring-level, error).
 *   - If the host pool is not initialised yet (GRND_NONBLOCK -> EAGAIN, only
 *     in the first seconds of a host's boot), the request is returned with
 *     the bytes produced so far, possibly 0: the guest driver asks again.
 *     Never blocks the loop, never hands out non-cryptographic bytes.
 *   - Fairness: one pass over the ring generates at most
 *     VIRTIO_RNG_BUDGET bytes on the loop thread; if more may be waiting the
 *     rest is deferred to the loop (struct virtio_deferred, virtio.h) so
 *     other handlers run in between.  getrandom draws on the kernel
 *     CSPRNG, so a greedy guest costs CPU time (bounded per pass) but never
 *     depletes or blocks host entropy.
 *   - Rate limiting (virtio_rng_set_rate_limiter, util/ratelimit.h): a
 *     request costs one ops token and the bytes it will get (its writable
 *     length, capped per request) in bandwidth tokens.  A request the
 *     limiter refuses is kept (popped, held) and the queue is not looked at
 *     until the limiter's timerfd, watched on the device's loop, fires;
 *     nothing waits or spins.  Without a limiter no bytes-per-second cap
 *     is imposed.
 */
#ifndef VISOR_DEVICES_VIRTIO_VIRTIO_RNG_H
#define VISOR_DEVICES_VIRTIO_VIRTIO_RNG_H

#include <stdint.h>

#include "../../util/log.h"
#include "../../util/ratelimit.h"
#include "virtio.h"

#define VIRTIO_RNG_QUEUE_MAX 64
#define VIRTIO_RNG_MAX_PER_REQ (64u * 1024)
#define VIRTIO_RNG_BUDGET (1024u * 1024)

/* Counters since creation (Firecracker's names where it has one), under
 * the device lock; virtio_rng_get_metrics takes a consistent snapshot. */
struct virtio_rng_metrics {
	uint64_t activate_fails;       /* activation refused by the device */
	uint64_t entropy_event_count;  /* passes over the queue (kick, continuation, timer) */
	uint64_t entropy_event_fails;  /* ring violations: the device was marked broken */
	uint64_t entropy_requests;     /* requests returned to the driver */
	uint64_t entropy_bytes;        /* random bytes handed out */
	uint64_t host_rng_fails;       /* getrandom failed or had no entropy yet */
	uint64_t invalid_requests;     /* device-readable buffers: returned unfilled */
	uint64_t entropy_rate_limiter_throttled; /* requests the limiter held back */
	uint64_t rate_limiter_event_count;       /* limiter timer events handled */
};

struct virtio_rng {
	struct virtio_dev vdev; /* hand &vdev to a transport */
	struct virtio_deferred deferred; /* passes cut short by the budget */
	/* under vdev.lock */
	struct virtq_chain chain; /* scratch for virtq_pop; the held chain */
	bool held;                /* chain is popped, waiting for the limiter */
	bool limited;             /* limiter set up, its timer_fd on the loop */
	struct rate_limiter limiter;
	/* The limiter's clock (NULL: CLOCK_MONOTONIC); tests set it before
	 * the first virtio_rng_set_rate_limiter. */
	rate_limiter_clock_fn limiter_clock;
	void *limiter_clock_ctx;
	struct ratelimit rl;
	struct virtio_rng_metrics m;
};

/* 0 / -errno.  @loop may be NULL (tests): then a pass is not budgeted. */
int virtio_rng_init(struct virtio_rng *r, const struct guest_mem *mem, struct loop *loop);

/* Limit the entropy rate (@c NULL or all zero: unlimited), on the loop
 * thread, before or after the driver activated the device; effective at
 * once (a request held under the old limits is looked at again now).  The
 * first limiting config creates the limiter and puts its timerfd on the
 * device's loop; later changes follow rate_limiter_update.  Returns 0,
 * -EINVAL if the device has no loop, or -errno from creating the timer
 * (the device then stays unlimited). */
int virtio_rng_set_rate_limiter(struct virtio_rng *r, const struct rate_limiter_config *c);

/* A consistent snapshot of the counters into @out (any thread; takes the
 * device lock briefly). */
void virtio_rng_get_metrics(struct virtio_rng *r, struct virtio_rng_metrics *out);

/* Tear down (after the transport is gone). */
void virtio_rng_destroy(struct virtio_rng *r);

/*
 * Snapshot state (docs/snapshot-format.md, "virtio devices"): beyond the
 * virtio core (virtio_dev_state_*, saved beside it) the device holds only
 * the request the rate limiter refused, kept by its head (its descriptors
 * are in guest memory).  The limiter is host state: a restored device
 * starts with full buckets.  Same contract as virtio_blk_state_*:
 *
 *   virtio_rng_state_get     VM paused (takes d->lock); 0.
 *   virtio_rng_state_encode  u8 held, u8 reserved (0), u16 held head (4 bytes).
 *   virtio_rng_state_decode  flags 0 or 1, reserved 0, the held head below
 *                            the queue maximum (0 when nothing is held).
 *   virtio_rng_state_check   with the core's state from the same snapshot:
 *                            the queue's heads in flight are exactly the
 *                            held request (none without one); a device
 *                            that is not live (virtio_dev_state_is_live)
 *                            holds nothing, whatever is in flight.
 *   virtio_rng_state_put     between virtio_dev_state_put and
 *                            virtio_dev_state_restart: the held request is
 *                            read again from guest memory (virtq_pop's
 *                            checks; a failure breaks the device) and held,
 *                            and served first when restart looks at the
 *                            queue.  0 or -EINVAL (not in flight).
 */
/* its own part never changed (virtio.h) */
#define VIRTIO_RNG_STATE_VERSION (VIRTIO_SHARED_STATE_VERSION + 0)

struct virtio_rng_state {
	uint8_t held;       /* 0 or 1 */
	uint16_t held_head; /* 0 when none */
};

int virtio_rng_state_get(struct virtio_rng *r, struct virtio_rng_state *st);
void virtio_rng_state_encode(const struct virtio_rng_state *st, struct snap_writer *w);
int virtio_rng_state_decode(struct snap_cursor *c, const struct virtio_rng *live,
			    struct virtio_rng_state *st, char *err, size_t errlen);
int virtio_rng_state_check(const struct virtio_rng_state *st, const struct virtio_dev_state *core,
			   char *err, size_t errlen);
int virtio_rng_state_put(struct virtio_rng *r, const struct virtio_rng_state *st);

#endif
