/* SPDX-License-Identifier: MIT */
/*
 * ratelimit.h - token-bucket rate limiter for device I/O, with Firecracker's
 * semantics.  (Not to be confused with struct ratelimit in log.h, which
 * limits log lines.)
 *
 * A limiter has two buckets: bandwidth (tokens are bytes) and ops (tokens
 * are requests).  A request of B bytes costs B bandwidth tokens and one (or
 * more) ops tokens, and proceeds only when both buckets can pay.
 *
 * A bucket (struct bucket_config):
 *   - holds at most `size` regular tokens and starts full;
 *   - refills linearly: `size` tokens per `refill_time_ms`, exactly (time
 *     in nanoseconds; the time the credited tokens represent is kept to a
 *     fraction of a nanosecond, so however often the bucket is refilled it
 *     earns floor(elapsed * size / refill_time) tokens, no drift);
 *   - has `one_time_burst` extra tokens, spent before the regular ones and
 *     never refilled (a fresh bucket may briefly go faster);
 *   - does not limit at all when `size` or `refill_time_ms` is 0.  An
 *     all-zero struct rate_limiter_config means "unlimited".
 *
 * Requests are all or nothing: when a bucket cannot pay, nothing is taken
 * from either bucket (not even the burst), so a refused request can be
 * retried later without having been charged twice.
 *
 * Oversized requests (more tokens than `size` + what is left of the burst):
 * such a request could never be paid, so the rule is "it proceeds once the
 * regular bucket is full, and the excess becomes debt".  It takes the whole
 * budget, and the refill repays the debt before the bucket holds tokens
 * again.  So it never deadlocks (a bucket always refills to full), and the
 * long-run rate stays size / refill_time, as Firecracker's over-consumption
 * (which blocks the limiter for the excess's refill time) does.
 *
 * Waiting: when a request is refused, the limiter computes when enough
 * tokens will be there (the later of the two buckets, exactly, rounded up
 * to the nanosecond) and arms its timerfd (CLOCK_MONOTONIC, non-blocking,
 * close-on-exec) for then, and stays "blocked": further requests are
 * refused without looking at the buckets until that time.  The device
 * holds the refused request, stops taking requests from that queue, watches
 * timer_fd on its event loop and, when it is readable, calls
 * rate_limiter_timer_fired() and retries.  Nothing spins or sleeps, and
 * other devices are not affected.  A limiter is never called concurrently:
 * the owning device serialises it (its lock).
 *
 * Arithmetic: every value may be anything up to UINT64_MAX (size, burst,
 * refill time in ms, hours or centuries of elapsed time).  With
 * R = refill_time_ms * 10^6 (< 2^84) the tokens earned over e ns are
 * floor(e * size / R), computed in unsigned __int128 (e * size < 2^128);
 * the time that n tokens take is ceil(n * R / size) with R split as
 * q * size + r so that no product exceeds 2^128, saturated at UINT64_MAX
 * ns (584 years).
 *
 * Time comes from a clock function (nanoseconds, monotonic); NULL means
 * CLOCK_MONOTONIC.  Tests pass their own clock and are deterministic.
 */
#ifndef VISOR_UTIL_RATELIMIT_H
#define VISOR_UTIL_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"

struct bucket_config {
	uint64_t size;
	uint64_t one_time_burst;
	uint64_t refill_time_ms;
};

struct rate_limiter_config {
	struct bucket_config bandwidth;
	struct bucket_config ops;
};

/* Current time in nanoseconds on a monotonic clock. */
typedef uint64_t (*rate_limiter_clock_fn)(void *ctx);

/* One bucket's state; see above.  All fields are read-only for users. */
struct token_bucket {
	struct bucket_config cfg;
	uint64_t budget;  /* regular tokens available, <= cfg.size */
	uint64_t burst;   /* one-time burst tokens left */
	uint64_t debt;    /* taken beyond the budget by an oversized request */
	uint64_t last_ns; /* refill accounted up to last_ns + frac / size */
	uint64_t frac;    /* < size: the part of a ns beyond last_ns, in 1/size ns */
};

struct rate_limiter {
	struct token_bucket bandwidth, ops;
	int timer_fd;     /* watch for EPOLLIN on the device's loop; -1 before init */
	bool blocked;     /* waiting for wake_ns: requests are refused */
	uint64_t wake_ns; /* when (limiter clock) the timer is due, while blocked */
	uint64_t throttled_events; /* requests refused */
	rate_limiter_clock_fn clock;
	void *clock_ctx;
	struct ratelimit log_rl;
};

/* True if @c limits anything (a bucket with non-zero size and refill time). */
bool rate_limiter_config_limits(const struct rate_limiter_config *c);
/* True if the bucket @c limits (size and refill_time_ms both non-zero). */
bool bucket_config_limits(const struct bucket_config *c);

/* Set up @rl with @c (NULL: unlimited) and create its timerfd; @clock NULL
 * means CLOCK_MONOTONIC.  Both buckets start full, with their burst.
 * 0 / -errno (nothing to clean up then; rl->timer_fd is -1). */
int rate_limiter_init(struct rate_limiter *rl, const struct rate_limiter_config *c,
		      rate_limiter_clock_fn clock, void *clock_ctx);
/* Close the timerfd (the caller took it off its loop first); idempotent,
 * also after a failed init. */
void rate_limiter_destroy(struct rate_limiter *rl);

/* Replace the configuration, effective at once: a bucket whose config
 * changed starts afresh (full, with its new burst; disabled if the new
 * config does not limit), an unchanged one keeps its state.  The timer is
 * disarmed and the limiter unblocked, so the device's next
 * rate_limiter_consume() re-evaluates under the new config (and re-arms if
 * the request must still wait): the caller retries its held request. */
void rate_limiter_update(struct rate_limiter *rl, const struct rate_limiter_config *c);

/* May a request of @bytes bandwidth tokens and @ops ops tokens proceed now?
 * True: both buckets paid.  False: nothing was taken, the event is counted
 * in throttled_events, and the timer is armed for when the request can be
 * paid (or already was, while blocked); the caller holds the request and
 * retries after the timer fired.  Never blocks.  If the timer cannot be
 * armed (which would leave the queue stalled for ever) the request proceeds
 * (logged): the limiter fails open rather than deadlocking. */
bool rate_limiter_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t ops);

/* The device saw timer_fd readable (or wants to retry at once): drain the
 * timerfd and unblock.  Returns true if the limiter was blocked (a request
 * is waiting to be retried). */
bool rate_limiter_timer_fired(struct rate_limiter *rl);

/* Waiting for the timer: requests are refused until it fires. */
bool rate_limiter_is_blocked(const struct rate_limiter *rl);

/* ---- the token bucket on its own (pure arithmetic, for tests) ---- */

/* A full bucket with its burst, configured by @c, at time @now_ns. */
void token_bucket_reset(struct token_bucket *tb, const struct bucket_config *c, uint64_t now_ns);
/* Credit the tokens earned up to @now_ns (repaying debt first; capped at
 * size).  A clock that did not advance credits nothing. */
void token_bucket_refill(struct token_bucket *tb, uint64_t now_ns);
/* Can @n tokens be taken now (after a refill)?  Burst first, then the
 * budget; an oversized request needs a full bucket and no debt.  Always
 * true for a bucket that does not limit. */
bool token_bucket_can_take(const struct token_bucket *tb, uint64_t n);
/* Take @n tokens: burst, then budget, the rest becomes debt (saturating). */
void token_bucket_take(struct token_bucket *tb, uint64_t n);
/* Nanoseconds from @now_ns (the time of the last refill) until @n tokens
 * can be taken: 0 if they can now, otherwise at least 1, saturated at
 * UINT64_MAX. */
uint64_t token_bucket_wait_ns(const struct token_bucket *tb, uint64_t n, uint64_t now_ns);

#endif
