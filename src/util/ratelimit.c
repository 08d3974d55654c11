/* SPDX-License-Identifier: MIT */
/*
 * ratelimit.c - token-bucket rate limiter; see ratelimit.h.
 */
#include "ratelimit.h"

#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

typedef unsigned __int128 u128;

#define NS_PER_MS 1000000u
#define NS_PER_S 1000000000u

bool bucket_config_limits(const struct bucket_config *c)
{
	return c->size != 0 && c->refill_time_ms != 0;
}

bool rate_limiter_config_limits(const struct rate_limiter_config *c)
{
	return c && (bucket_config_limits(&c->bandwidth) || bucket_config_limits(&c->ops));
}

/* ---- token bucket ---- */

static bool tb_limits(const struct token_bucket *tb)
{
	return bucket_config_limits(&tb->cfg);
}

/* The refill period in ns: < 2^64 * 10^6 < 2^84. */
static u128 tb_period_ns(const struct token_bucket *tb)
{
	return (u128)tb->cfg.refill_time_ms * NS_PER_MS;
}

void token_bucket_reset(struct token_bucket *tb, const struct bucket_config *c, uint64_t now_ns)
{
	tb->cfg = *c;
	tb->budget = c->size;
	tb->burst = c->one_time_burst;
	tb->debt = 0;
	tb->last_ns = now_ns;
	tb->frac = 0;
}

void token_bucket_refill(struct token_bucket *tb, uint64_t now_ns)
{
	if (!tb_limits(tb) || now_ns <= tb->last_ns)
		return;
	u128 size = tb->cfg.size, period = tb_period_ns(tb);
	/* Time since the exact accounting point last_ns + frac / size, in
	 * units of 1/size ns: (now - last) * size < 2^128, and > frac. */
	u128 num = (u128)(now_ns - tb->last_ns) * size - tb->frac;
	u128 earned = num / period;
	u128 room = (u128)tb->debt + (size - tb->budget);
	if (earned >= room) {
		/* Full: time spent full earns nothing, so start counting now. */
		tb->debt = 0;
		tb->budget = tb->cfg.size;
		tb->last_ns = now_ns;
		tb->frac = 0;
		return;
	}
	if (earned == 0)
		return; /* the fraction keeps accruing */
	u128 left = earned;
	if (left <= tb->debt) {
		tb->debt -= (uint64_t)left;
		left = 0;
	} else {
		left -= tb->debt;
		tb->debt = 0;
	}
	tb->budget += (uint64_t)left; /* left < size - budget: no overflow */
	/* Move the accounting point by exactly the time the credited tokens
	 * represent: earned * period <= num, so t <= (now - last) * size. */
	u128 t = (u128)tb->frac + earned * period;
	tb->last_ns += (uint64_t)(t / size);
	tb->frac = (uint64_t)(t % size);
}

/* Regular tokens a request of @n must find in the bucket: what the burst
 * does not cover, at most a full bucket (the oversized rule). */
static uint64_t tb_want(const struct token_bucket *tb, uint64_t n)
{
	uint64_t rest = n - tb->burst;
	return rest < tb->cfg.size ? rest : tb->cfg.size;
}

bool token_bucket_can_take(const struct token_bucket *tb, uint64_t n)
{
	if (!tb_limits(tb) || n <= tb->burst)
		return true;
	return tb->debt == 0 && tb->budget >= tb_want(tb, n);
}

void token_bucket_take(struct token_bucket *tb, uint64_t n)
{
	if (!tb_limits(tb))
		return;
	if (n <= tb->burst) {
		tb->burst -= n;
		return;
	}
	uint64_t rest = n - tb->burst;
	tb->burst = 0;
	if (rest <= tb->budget) {
		tb->budget -= rest;
		return;
	}
	rest -= tb->budget;
	tb->budget = 0;
	tb->debt = rest > UINT64_MAX - tb->debt ? UINT64_MAX : tb->debt + rest;
}

/* Nanoseconds after last_ns until the refill has earned @tokens more:
 * the smallest x with x * size - frac >= tokens * period, i.e.
 * ceil((tokens * period + frac) / size), saturated at UINT64_MAX, without
 * a product beyond 2^128: with tokens = a * size + b (b < size) and
 * period = q * size + r (r < size) it is a * period + b * q +
 * ceil((b * r + frac) / size), where b * q < period < 2^84 and
 * b * r + frac < size^2. */
static uint64_t tb_ns_for(const struct token_bucket *tb, u128 tokens)
{
	u128 size = tb->cfg.size, period = tb_period_ns(tb);
	u128 a = tokens / size, b = tokens % size;
	u128 q = period / size, r = period % size;
	if (a && a > (u128)UINT64_MAX / period)
		return UINT64_MAX;
	u128 x = a * period + b * q + (b * r + tb->frac + size - 1) / size;
	return x > UINT64_MAX ? UINT64_MAX : (uint64_t)x;
}

uint64_t token_bucket_wait_ns(const struct token_bucket *tb, uint64_t n, uint64_t now_ns)
{
	if (token_bucket_can_take(tb, n))
		return 0;
	/* The refill must bring budget - debt up to want. */
	u128 deficit = (u128)tb->debt + tb_want(tb, n) - tb->budget;
	uint64_t need = tb_ns_for(tb, deficit);
	uint64_t since = now_ns > tb->last_ns ? now_ns - tb->last_ns : 0;
	/* After a refill at now_ns what accrued since last_ns is worth less
	 * than one token, so need > since; never return 0 anyway (a timer
	 * armed with 0 would be disarmed). */
	return need > since ? need - since : 1;
}

/* ---- limiter ---- */

static uint64_t clock_now(const struct rate_limiter *rl)
{
	return rl->clock ? rl->clock(rl->clock_ctx) : now_ns();
}

int rate_limiter_init(struct rate_limiter *rl, const struct rate_limiter_config *c,
		      rate_limiter_clock_fn clock, void *clock_ctx)
{
	memset(rl, 0, sizeof(*rl));
	rl->clock = clock;
	rl->clock_ctx = clock_ctx;
	rl->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (rl->timer_fd < 0)
		return -errno;
	static const struct rate_limiter_config none;
	if (!c)
		c = &none;
	uint64_t now = clock_now(rl);
	token_bucket_reset(&rl->bandwidth, &c->bandwidth, now);
	token_bucket_reset(&rl->ops, &c->ops, now);
	return 0;
}

void rate_limiter_destroy(struct rate_limiter *rl)
{
	if (rl->timer_fd >= 0)
		close(rl->timer_fd);
	rl->timer_fd = -1;
	rl->blocked = false;
}

static int arm(struct rate_limiter *rl, uint64_t ns)
{
	struct itimerspec its = {
		.it_value = {.tv_sec = (time_t)(ns / NS_PER_S), .tv_nsec = (long)(ns % NS_PER_S)},
	};
	return timerfd_settime(rl->timer_fd, 0, &its, NULL) < 0 ? -errno : 0;
}

static bool bucket_same(const struct bucket_config *a, const struct bucket_config *b)
{
	return a->size == b->size && a->one_time_burst == b->one_time_burst &&
	       a->refill_time_ms == b->refill_time_ms;
}

void rate_limiter_update(struct rate_limiter *rl, const struct rate_limiter_config *c)
{
	static const struct rate_limiter_config none;
	if (!c)
		c = &none;
	uint64_t now = clock_now(rl);
	if (!bucket_same(&rl->bandwidth.cfg, &c->bandwidth))
		token_bucket_reset(&rl->bandwidth, &c->bandwidth, now);
	if (!bucket_same(&rl->ops.cfg, &c->ops))
		token_bucket_reset(&rl->ops, &c->ops, now);
	if (rl->timer_fd >= 0)
		arm(rl, 0); /* 0 disarms */
	rl->blocked = false;
}

bool rate_limiter_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t ops)
{
	if (!tb_limits(&rl->bandwidth) && !tb_limits(&rl->ops))
		return true;
	uint64_t now = clock_now(rl);
	if (rl->blocked) {
		if (now < rl->wake_ns) {
			rl->throttled_events++;
			return false;
		}
		/* Due already (the timer's event is not handled yet). */
		rl->blocked = false;
	}
	token_bucket_refill(&rl->bandwidth, now);
	token_bucket_refill(&rl->ops, now);
	if (token_bucket_can_take(&rl->bandwidth, bytes) && token_bucket_can_take(&rl->ops, ops)) {
		token_bucket_take(&rl->bandwidth, bytes);
		token_bucket_take(&rl->ops, ops);
		return true;
	}
	uint64_t wb = token_bucket_wait_ns(&rl->bandwidth, bytes, now);
	uint64_t wo = token_bucket_wait_ns(&rl->ops, ops, now);
	uint64_t wait = wb > wo ? wb : wo;
	int r = arm(rl, wait);
	if (r < 0) {
		log_ratelimited(&rl->log_rl, LOG_WARN,
				"rate limiter: cannot arm its timer (%s); request not limited",
				strerror(-r));
		token_bucket_take(&rl->bandwidth, bytes);
		token_bucket_take(&rl->ops, ops);
		return true;
	}
	rl->blocked = true;
	rl->wake_ns = wait > UINT64_MAX - now ? UINT64_MAX : now + wait;
	rl->throttled_events++;
	return false;
}

bool rate_limiter_timer_fired(struct rate_limiter *rl)
{
	uint64_t v;
	if (rl->timer_fd >= 0)
		(void)!read(rl->timer_fd, &v, sizeof(v)); /* EAGAIN: not expired, fine */
	bool was = rl->blocked;
	rl->blocked = false;
	return was;
}

bool rate_limiter_is_blocked(const struct rate_limiter *rl)
{
	return rl->blocked;
}
