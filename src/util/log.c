/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
/* the last error message of this thread (without prefix), for requests
 * that must report why they failed (the API's fault_message) */
static _Thread_local char last_error[512];
static volatile bool raw_mode;

void log_set_level(enum log_level level)
{
	min_level = level;
}

void log_set_raw(bool raw)
{
	raw_mode = raw;
}

__attribute__((format(printf, 2, 0))) static void vlog(enum log_level level, const char *fmt,
						      va_list ap)
{
	static const char *const prefix[] = {"debug: ", "", "warning: ", "error: "};
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "visor: %s", prefix[level]);
	if (n < 0)
		return;
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	if (m < 0)
		return;
	if (level == LOG_ERROR)
		snprintf(last_error, sizeof(last_error), "%s", buf + n);
	size_t len = strnlen(buf, sizeof(buf));
	if (len > sizeof(buf) - 3)
		len = sizeof(buf) - 3;
	if (raw_mode)
		buf[len++] = '\r';
	buf[len++] = '\n';
	/* One write(2) per line so lines from several threads do not interleave. */
	ssize_t r = write(STDERR_FILENO, buf, len);
	(void)r;
}

const char *log_last_error(void)
{
	return last_error;
}

void log_clear_last_error(void)
{
	last_error[0] = 0;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level < min_level && level != LOG_ERROR)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

bool ratelimit_ok(struct ratelimit *rl, uint32_t *suppressed_out)
{
	uint64_t now = now_ns();
	*suppressed_out = 0;
	if (now - rl->window_start_ns > RATELIMIT_INTERVAL_NS) {
		rl->window_start_ns = now;
		rl->in_window = 0;
	}
	if (rl->in_window < RATELIMIT_BURST) {
		rl->in_window++;
		*suppressed_out = rl->suppressed;
		rl->suppressed = 0;
		return true;
	}
	rl->suppressed++;
	return false;
}
