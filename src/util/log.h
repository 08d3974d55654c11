/* SPDX-License-Identifier: MIT */
/*
 * log.h - diagnostics on stderr.
 *
 * Lines are prefixed "visor: " (and the level for warnings/errors).  When the
 * console is in raw mode a bare "\n" does not return the carriage, so every
 * line ends in "\r\n" while log_set_raw(true).
 */
#ifndef VISOR_UTIL_LOG_H
#define VISOR_UTIL_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
void log_set_raw(bool raw);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* The last error logged on this thread ("" if none since the last clear). */
const char *log_last_error(void);
void log_clear_last_error(void);

/* Rate limiting for messages a guest can trigger at will: at most
 * burst messages, then one per interval; suppressed ones are counted and
 * reported with the next message that passes. */
struct ratelimit {
	uint64_t window_start_ns;
	uint32_t in_window;
	uint32_t suppressed;
};
#define RATELIMIT_BURST 10
#define RATELIMIT_INTERVAL_NS 5000000000ULL

/* Returns true if a message may be printed now; thread-safe enough for
 * logging (a lost update only changes how many lines get printed). */
bool ratelimit_ok(struct ratelimit *rl, uint32_t *suppressed_out);

#define log_ratelimited(rl, level, fmt, ...)                                                \
	do {                                                                                \
		uint32_t supp_;                                                             \
		if (ratelimit_ok((rl), &supp_)) {                                           \
			if (supp_)                                                          \
				log_msg((level), fmt " (%u similar messages suppressed)",    \
					##__VA_ARGS__, supp_);                              \
			else                                                                \
				log_msg((level), fmt, ##__VA_ARGS__);                       \
		}                                                                           \
	} while (0)

/* Print a message for a set-up error and exit(1).  Only for start-up. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

#endif
