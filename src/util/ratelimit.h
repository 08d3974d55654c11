/* SPDX-License-Identifier: MIT */
/* placeholder until the token bucket lands (branch dev-blk) */
#ifndef VISOR_UTIL_RATELIMIT_H
#define VISOR_UTIL_RATELIMIT_H
#include <stdint.h>
struct bucket_config {
	uint64_t size;
	uint64_t one_time_burst;
	uint64_t refill_time_ms;
};
struct rate_limiter_config {
	struct bucket_config bandwidth;
	struct bucket_config ops;
};
#endif
