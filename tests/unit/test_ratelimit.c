/* SPDX-License-Identifier: MIT */
/*
 * Token-bucket rate limiter tests.  Time comes from a fake clock the test
 * moves by hand, so every expectation is exact and nothing depends on how
 * fast the machine is.  The timerfd is real: the tests only look at whether
 * it is armed, never wait for it.
 */
#include "../../src/util/ratelimit.h"

#include <poll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "test.h"

#define MS 1000000ull
#define S (1000 * MS)

static uint64_t fake_now;

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return fake_now;
}

static struct rate_limiter_config cfg(uint64_t bw_size, uint64_t bw_burst, uint64_t bw_ms,
				      uint64_t ops_size, uint64_t ops_burst, uint64_t ops_ms)
{
	return (struct rate_limiter_config){
		.bandwidth = {.size = bw_size, .one_time_burst = bw_burst, .refill_time_ms = bw_ms},
		.ops = {.size = ops_size, .one_time_burst = ops_burst, .refill_time_ms = ops_ms},
	};
}

static void init(struct rate_limiter *rl, const struct rate_limiter_config *c, uint64_t start)
{
	fake_now = start;
	if (rate_limiter_init(rl, c, fake_clock, NULL))
		abort();
}

/* Is the timerfd armed (a relative time left, whatever its value)? */
static bool timer_armed(const struct rate_limiter *rl)
{
	struct itimerspec its;
	if (timerfd_gettime(rl->timer_fd, &its))
		abort();
	return its.it_value.tv_sec || its.it_value.tv_nsec;
}

TEST(zero_config_does_not_limit)
{
	struct rate_limiter rl;
	struct rate_limiter_config zero = {0};
	CHECK(!rate_limiter_config_limits(&zero));
	CHECK(!rate_limiter_config_limits(NULL));
	init(&rl, &zero, 5);
	CHECK(rl.timer_fd >= 0);
	for (int i = 0; i < 1000; i++)
		CHECK(rate_limiter_consume(&rl, UINT64_MAX, UINT64_MAX));
	CHECK_EQ(rl.throttled_events, 0);
	CHECK(!timer_armed(&rl));
	rate_limiter_destroy(&rl);
	rate_limiter_destroy(&rl); /* idempotent */
	CHECK_EQ(rl.timer_fd, -1);

	/* size 0 or refill time 0: that bucket does not limit */
	struct rate_limiter_config half = cfg(0, 0, 1000, 10, 0, 0);
	CHECK(!rate_limiter_config_limits(&half));
	init(&rl, &half, 0);
	for (int i = 0; i < 100; i++)
		CHECK(rate_limiter_consume(&rl, 1 << 20, 1));
	rate_limiter_destroy(&rl);

	/* NULL config: unlimited */
	init(&rl, NULL, 0);
	CHECK(rate_limiter_consume(&rl, UINT64_MAX, 1));
	rate_limiter_destroy(&rl);
}

TEST(refill_is_linear_and_exact)
{
	/* 1000 bytes per second: one token per ms */
	struct rate_limiter rl;
	struct rate_limiter_config c = cfg(1000, 0, 1000, 0, 0, 0);
	CHECK(rate_limiter_config_limits(&c));
	init(&rl, &c, 1000 * S);
	CHECK(rate_limiter_consume(&rl, 1000, 1)); /* starts full */
	CHECK_EQ(rl.bandwidth.budget, 0);
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.throttled_events, 1);
	CHECK(rate_limiter_is_blocked(&rl));
	CHECK_EQ(rl.wake_ns, 1000 * S + 1 * MS); /* exactly one token away */
	CHECK(timer_armed(&rl));

	/* before the wake time: refused without looking */
	fake_now = 1000 * S + MS - 1;
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.throttled_events, 2);
	/* the timer fires */
	fake_now = 1000 * S + MS;
	CHECK(rate_limiter_timer_fired(&rl));
	CHECK(!rate_limiter_is_blocked(&rl));
	CHECK(!rate_limiter_timer_fired(&rl));
	CHECK(rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.bandwidth.budget, 0);

	/* 2.5 ms later: 2 tokens, the half token keeps accruing */
	fake_now += 2 * MS + MS / 2;
	CHECK(rate_limiter_consume(&rl, 2, 1));
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.wake_ns, fake_now + MS / 2);
	fake_now += MS / 2;
	rate_limiter_timer_fired(&rl);
	CHECK(rate_limiter_consume(&rl, 1, 1));

	/* a long idle time fills the bucket, no more */
	fake_now += 3600 * S;
	CHECK(rate_limiter_consume(&rl, 1000, 1));
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	rate_limiter_destroy(&rl);
}

TEST(no_drift_however_often_refilled)
{
	/* 3 tokens per ms: a token is 333333.33 ns.  Refilled every 7 ns
	 * for 10 ms, the bucket earns exactly 30 tokens. */
	struct token_bucket tb;
	struct bucket_config bc = {.size = 3000, .refill_time_ms = 1000};
	token_bucket_reset(&tb, &bc, 0);
	token_bucket_take(&tb, 3000);
	uint64_t got = 0, t = 0;
	while (t < 10 * MS) {
		t += 7;
		if (t > 10 * MS)
			t = 10 * MS;
		token_bucket_refill(&tb, t);
		got += tb.budget;
		token_bucket_take(&tb, tb.budget);
	}
	CHECK_EQ(got, 30);

	/* the same with irregular steps and a size that does not divide the
	 * period: floor(e * size / period) at every point */
	bc = (struct bucket_config){.size = 7, .refill_time_ms = 3};
	token_bucket_reset(&tb, &bc, 100);
	token_bucket_take(&tb, 7);
	got = 0;
	t = 100;
	uint64_t step = 1;
	for (int i = 0; i < 200000; i++) {
		step = step * 6364136223846793005ull + 1442695040888963407ull;
		t += (step >> 40) % 5000;
		token_bucket_refill(&tb, t);
		got += tb.budget;
		token_bucket_take(&tb, tb.budget);
		CHECK_EQ(got, (t - 100) * 7 / (3 * MS));
		if (got != (t - 100) * 7 / (3 * MS))
			break;
	}
}

TEST(wait_is_exact_and_never_zero)
{
	struct token_bucket tb;
	struct bucket_config bc = {.size = 3, .refill_time_ms = 1};
	token_bucket_reset(&tb, &bc, 0);
	token_bucket_take(&tb, 3);
	CHECK(!token_bucket_can_take(&tb, 1));
	/* one token: ceil(10^6 / 3) ns */
	CHECK_EQ(token_bucket_wait_ns(&tb, 1, 0), 333334);
	CHECK_EQ(token_bucket_wait_ns(&tb, 2, 0), 666667);
	CHECK_EQ(token_bucket_wait_ns(&tb, 3, 0), 1000000);
	token_bucket_refill(&tb, 333333);
	CHECK_EQ(tb.budget, 0);
	CHECK_EQ(token_bucket_wait_ns(&tb, 1, 333333), 1);
	token_bucket_refill(&tb, 333334);
	CHECK_EQ(tb.budget, 1);
	CHECK_EQ(token_bucket_wait_ns(&tb, 1, 333334), 0);
	/* the second token is due at 666667 exactly: the 2/3 ns carried over */
	token_bucket_take(&tb, 1);
	CHECK_EQ(token_bucket_wait_ns(&tb, 1, 333334), 666667 - 333334);
	token_bucket_refill(&tb, 666666);
	CHECK_EQ(tb.budget, 0);
	token_bucket_refill(&tb, 666667);
	CHECK_EQ(tb.budget, 1);
}

TEST(one_time_burst)
{
	/* 100 tokens per 100 ms, plus a burst of 250 */
	struct rate_limiter rl;
	struct rate_limiter_config c = cfg(100, 250, 100, 0, 0, 0);
	init(&rl, &c, 0);
	/* the burst goes first, the regular budget stays full */
	CHECK(rate_limiter_consume(&rl, 200, 1));
	CHECK_EQ(rl.bandwidth.burst, 50);
	CHECK_EQ(rl.bandwidth.budget, 100);
	/* burst remainder, then the budget */
	CHECK(rate_limiter_consume(&rl, 120, 1));
	CHECK_EQ(rl.bandwidth.burst, 0);
	CHECK_EQ(rl.bandwidth.budget, 30);
	/* refused requests take nothing */
	CHECK(!rate_limiter_consume(&rl, 31, 1));
	CHECK_EQ(rl.bandwidth.budget, 30);
	CHECK_EQ(rl.wake_ns, 1 * MS); /* one token per ms */
	fake_now = MS;
	rate_limiter_timer_fired(&rl);
	CHECK(rate_limiter_consume(&rl, 31, 1));
	/* the burst never comes back */
	fake_now += 10 * S;
	CHECK(rate_limiter_consume(&rl, 100, 1));
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.bandwidth.burst, 0);
	rate_limiter_destroy(&rl);

	/* a request the burst cannot cover alone is all or nothing */
	init(&rl, &c, 0);
	CHECK(rate_limiter_consume(&rl, 100, 1)); /* burst 150 left, budget 100 */
	CHECK(rate_limiter_consume(&rl, 60, 1));  /* burst 90 left */
	CHECK_EQ(rl.bandwidth.burst, 90);
	CHECK(rate_limiter_consume(&rl, 150, 1)); /* 90 + 60 */
	CHECK_EQ(rl.bandwidth.burst, 0);
	CHECK_EQ(rl.bandwidth.budget, 40);
	rate_limiter_destroy(&rl);
}

TEST(oversized_request_progresses_and_pays_debt)
{
	/* bucket of 100 per 100 ms; a request of 350 */
	struct rate_limiter rl;
	struct rate_limiter_config c = cfg(100, 0, 100, 0, 0, 0);
	init(&rl, &c, 0);
	CHECK(rate_limiter_consume(&rl, 10, 1));
	/* not full: wait until it is (10 tokens = 10 ms) */
	CHECK(!rate_limiter_consume(&rl, 350, 1));
	CHECK_EQ(rl.wake_ns, 10 * MS);
	fake_now = 10 * MS;
	rate_limiter_timer_fired(&rl);
	/* full: it goes, and 250 tokens of debt follow it */
	CHECK(rate_limiter_consume(&rl, 350, 1));
	CHECK_EQ(rl.bandwidth.budget, 0);
	CHECK_EQ(rl.bandwidth.debt, 250);
	/* the next byte waits for the debt and itself: 251 ms */
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.wake_ns, 10 * MS + 251 * MS);
	fake_now = 10 * MS + 200 * MS;
	rate_limiter_timer_fired(&rl); /* early (a spurious wake-up) */
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.bandwidth.debt, 50);
	CHECK_EQ(rl.wake_ns, 10 * MS + 251 * MS);
	fake_now = 10 * MS + 251 * MS;
	rate_limiter_timer_fired(&rl);
	CHECK(rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.bandwidth.debt, 0);
	rate_limiter_destroy(&rl);

	init(&rl, &c, 0);
	uint64_t sent = 0;
	for (int i = 0; i < 100000 && sent < 100 * 350; i++) {
		if (rate_limiter_consume(&rl, 350, 1)) {
			sent += 350;
			continue;
		}
		fake_now = rl.wake_ns;
		rate_limiter_timer_fired(&rl);
	}
	CHECK_EQ(sent, 100 * 350);
	/* over a long run the rate holds: the first request took the full
	 * bucket, each later one needs 350 new tokens (250 of debt and a
	 * full bucket of 100), one per ms: the 100th goes at 99 * 350 ms */
	CHECK_EQ(fake_now, 99 * 350 * MS);
	rate_limiter_destroy(&rl);
}

TEST(ops_and_bandwidth_together)
{
	/* 1 MiB/s and 10 ops/s */
	struct rate_limiter rl;
	struct rate_limiter_config c = cfg(1 << 20, 0, 1000, 10, 0, 1000);
	init(&rl, &c, 0);
	for (int i = 0; i < 10; i++)
		CHECK(rate_limiter_consume(&rl, 64 << 10, 1));
	/* ops exhausted, bandwidth not: 100 ms for one op */
	CHECK(!rate_limiter_consume(&rl, 64 << 10, 1));
	CHECK_EQ(rl.wake_ns, 100 * MS);
	CHECK_EQ(rl.bandwidth.budget, (1 << 20) - (640 << 10)); /* nothing taken */
	fake_now = 100 * MS;
	rate_limiter_timer_fired(&rl);
	/* now bandwidth is short: the later of the two waits counts.  A full
	 * MiB after 640 KiB means 640 KiB of refill since the start: 625 ms */
	CHECK(!rate_limiter_consume(&rl, 1 << 20, 1));
	CHECK_EQ(rl.ops.budget, 1); /* refilled, not taken */
	CHECK_EQ(rl.wake_ns, 625 * MS);
	fake_now = rl.wake_ns;
	rate_limiter_timer_fired(&rl);
	CHECK(rate_limiter_consume(&rl, 1 << 20, 1));
	CHECK_EQ(rl.bandwidth.budget, 0);
	CHECK_EQ(rl.ops.budget, 5); /* 1 + 5.25 earned since 100 ms, 1 taken */
	/* several ops in one call */
	fake_now += S;
	CHECK(rate_limiter_consume(&rl, 0, 10));
	CHECK(!rate_limiter_consume(&rl, 0, 1));
	rate_limiter_destroy(&rl);
}

TEST(update_takes_effect_at_once)
{
	struct rate_limiter rl;
	struct rate_limiter_config slow = cfg(100, 0, 1000, 10, 0, 1000);
	init(&rl, &slow, 0);
	CHECK(rate_limiter_consume(&rl, 100, 1));
	CHECK(!rate_limiter_consume(&rl, 100, 1));
	CHECK(rate_limiter_is_blocked(&rl));
	CHECK(timer_armed(&rl));
	CHECK_EQ(rl.wake_ns, S);

	/* a faster bandwidth bucket: unblocked and disarmed, a fresh full
	 * bucket; the unchanged ops bucket keeps its state */
	struct rate_limiter_config fast = cfg(1000, 0, 1000, 10, 0, 1000);
	fake_now = 1;
	rate_limiter_update(&rl, &fast);
	CHECK(!rate_limiter_is_blocked(&rl));
	CHECK(!timer_armed(&rl));
	CHECK_EQ(rl.bandwidth.budget, 1000);
	CHECK_EQ(rl.ops.budget, 9);
	CHECK(rate_limiter_consume(&rl, 100, 1));
	CHECK_EQ(rl.ops.budget, 8);
	/* re-evaluated and re-armed under the new config */
	CHECK(!rate_limiter_consume(&rl, 1000, 1));
	CHECK(timer_armed(&rl));
	CHECK_EQ(rl.wake_ns, 1 + 100 * MS);

	/* removing the limits lets everything through at once */
	struct rate_limiter_config none = {0};
	rate_limiter_update(&rl, &none);
	CHECK(!timer_armed(&rl));
	CHECK(rate_limiter_consume(&rl, UINT64_MAX, 1000));
	/* and adding them back starts full, with the burst */
	struct rate_limiter_config burst = cfg(10, 5, 1000, 0, 0, 0);
	rate_limiter_update(&rl, &burst);
	CHECK(rate_limiter_consume(&rl, 15, 1));
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	/* the same config again changes nothing (no second burst) */
	rate_limiter_update(&rl, &burst);
	CHECK(!rate_limiter_is_blocked(&rl));
	CHECK_EQ(rl.bandwidth.burst, 0);
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	rate_limiter_destroy(&rl);
}

TEST(throttled_events_are_counted)
{
	struct rate_limiter rl;
	struct rate_limiter_config c = cfg(0, 0, 0, 1, 0, 1000);
	init(&rl, &c, 0);
	CHECK(rate_limiter_consume(&rl, 0, 1));
	for (int i = 0; i < 5; i++)
		CHECK(!rate_limiter_consume(&rl, 0, 1));
	CHECK_EQ(rl.throttled_events, 5);
	fake_now = S;
	rate_limiter_timer_fired(&rl);
	CHECK(rate_limiter_consume(&rl, 0, 1));
	CHECK_EQ(rl.throttled_events, 5);
	/* due while still marked blocked (the timer's event not handled
	 * yet): re-evaluated, not refused */
	CHECK(!rate_limiter_consume(&rl, 0, 1));
	CHECK_EQ(rl.throttled_events, 6);
	fake_now = 2 * S;
	CHECK(rate_limiter_is_blocked(&rl));
	CHECK(rate_limiter_consume(&rl, 0, 1));
	CHECK(!rate_limiter_is_blocked(&rl));
	rate_limiter_destroy(&rl);
}

TEST(timer_really_fires)
{
	/* The one test with the real clock: a 1 ms wait makes the timerfd
	 * readable (poll waits for it, no threshold on how long it took). */
	struct rate_limiter rl;
	struct rate_limiter_config c = cfg(1000, 0, 1, 0, 0, 0);
	CHECK_EQ(rate_limiter_init(&rl, &c, NULL, NULL), 0);
	CHECK(rate_limiter_consume(&rl, 1000, 1));
	CHECK(!rate_limiter_consume(&rl, 1000, 1));
	struct pollfd p = {.fd = rl.timer_fd, .events = POLLIN};
	CHECK_EQ(poll(&p, 1, 10000), 1);
	CHECK(rate_limiter_timer_fired(&rl));
	CHECK(rate_limiter_consume(&rl, 1000, 1));
	CHECK_EQ(poll(&p, 1, 0), 0); /* drained */
	rate_limiter_destroy(&rl);
}

TEST(extreme_values)
{
	struct rate_limiter rl;
	/* everything UINT64_MAX */
	struct rate_limiter_config max = cfg(UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX,
					     UINT64_MAX, UINT64_MAX);
	init(&rl, &max, UINT64_MAX - 10 * S);
	CHECK(rate_limiter_consume(&rl, UINT64_MAX, UINT64_MAX)); /* the burst */
	CHECK(rate_limiter_consume(&rl, UINT64_MAX, UINT64_MAX)); /* the budget */
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	/* one token of 2^64-1 per 2^64-1 ms: one ms */
	CHECK_EQ(rl.wake_ns, UINT64_MAX - 10 * S + MS);
	fake_now = UINT64_MAX; /* the clock at its very end */
	rate_limiter_timer_fired(&rl);
	CHECK(rate_limiter_consume(&rl, 10 * 1000, 10 * 1000)); /* 10 s worth */
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.wake_ns, UINT64_MAX); /* saturated */
	rate_limiter_destroy(&rl);

	/* refill 1 ms with size 2^64-1: 2^64-1 tokens per ms */
	struct rate_limiter_config huge = cfg(UINT64_MAX, 0, 1, 0, 0, 0);
	init(&rl, &huge, 0);
	CHECK(rate_limiter_consume(&rl, UINT64_MAX, 1));
	CHECK(!rate_limiter_consume(&rl, UINT64_MAX, 1));
	CHECK_EQ(rl.wake_ns, MS);
	fake_now = 1; /* 1 ns: floor((2^64-1) / 10^6) tokens */
	rate_limiter_timer_fired(&rl);
	CHECK(rate_limiter_consume(&rl, UINT64_MAX / MS, 1));
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.wake_ns, 2);
	/* hours of elapsed time: full, exactly */
	fake_now = 5 * 3600 * S;
	rate_limiter_timer_fired(&rl);
	CHECK(rate_limiter_consume(&rl, UINT64_MAX, 1));
	CHECK_EQ(rl.bandwidth.budget, 0);
	rate_limiter_destroy(&rl);

	/* a bucket of one token per 2^64-1 ms: the wait saturates */
	struct rate_limiter_config glacial = cfg(1, 0, UINT64_MAX, 0, 0, 0);
	init(&rl, &glacial, 0);
	CHECK(rate_limiter_consume(&rl, 1, 1));
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.wake_ns, UINT64_MAX);
	CHECK(timer_armed(&rl));
	/* and an oversized request into a tiny bucket: debt of 2^64-2 */
	struct rate_limiter_config tiny = cfg(1, 0, 1, 0, 0, 0);
	rate_limiter_update(&rl, &tiny);
	CHECK(rate_limiter_consume(&rl, UINT64_MAX, 1));
	CHECK_EQ(rl.bandwidth.debt, UINT64_MAX - 1);
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.wake_ns, UINT64_MAX); /* (2^64-1) ms: saturated */
	/* hours later part of the debt is paid, exactly one token per ms */
	fake_now = 3 * 3600 * S;
	rate_limiter_timer_fired(&rl);
	CHECK(!rate_limiter_consume(&rl, 1, 1));
	CHECK_EQ(rl.bandwidth.debt, UINT64_MAX - 1 - 3 * 3600 * 1000);
	rate_limiter_destroy(&rl);

	/* the pure bucket at its limits */
	struct token_bucket tb;
	struct bucket_config bc = {.size = UINT64_MAX, .refill_time_ms = UINT64_MAX};
	token_bucket_reset(&tb, &bc, 0);
	token_bucket_take(&tb, UINT64_MAX);
	token_bucket_refill(&tb, UINT64_MAX); /* 2^64-1 ns: floor(.../10^6) tokens */
	CHECK_EQ(tb.budget, UINT64_MAX / MS);
	CHECK(tb.last_ns <= UINT64_MAX);
	/* the time a full bucket takes saturates at 2^64-1 ns after last_ns */
	CHECK_EQ(token_bucket_wait_ns(&tb, UINT64_MAX, UINT64_MAX), tb.last_ns);
	token_bucket_take(&tb, UINT64_MAX);
	CHECK_EQ(tb.debt, UINT64_MAX - UINT64_MAX / MS);
	token_bucket_take(&tb, UINT64_MAX); /* the debt saturates */
	CHECK_EQ(tb.debt, UINT64_MAX);
	/* a clock that goes backwards credits nothing */
	bc = (struct bucket_config){.size = 10, .refill_time_ms = 10};
	token_bucket_reset(&tb, &bc, 1000 * S);
	token_bucket_take(&tb, 10);
	token_bucket_refill(&tb, 0);
	CHECK_EQ(tb.budget, 0);
	CHECK_EQ(tb.last_ns, 1000 * S);
}

TEST_MAIN()
