/* SPDX-License-Identifier: MIT */
/*
 * metrics.h - Firecracker's metrics: one JSON object per line, written to a
 * file or named pipe every 60 s (a timerfd on the event loop) and on demand
 * (PUT /actions FlushMetrics).
 *
 * A line (one write(2), no spaces, ends in '\n'):
 *
 *   {"utc_timestamp_ms":1714566896123,["id":"vm1",]["properties":{"k":"v"},]
 *    <groups of the collect callback>,
 *    "logger":{"missed_metrics_count":0,"metrics_fails":0,"missed_log_count":2,"log_fails":0}}
 *
 * "id" and "properties" appear when configured (PUT /metrics emit_id and
 * properties).  The rest comes from the collect callback, which builds the
 * body with metrics_group_begin/end and metrics_add_counter/gauge:
 *
 *   static void collect(struct metrics_line *l, void *ctx) {
 *           metrics_group_begin(l, "block_drive0");
 *           metrics_add_counter(l, "read_count", blk->reads_total);
 *           metrics_group_end(l);
 *   }
 *
 * Counters and gauges, as Firecracker reports them:
 *  - metrics_add_counter(l, key, total): the caller hands in a monotonic
 *    total (e.g. an atomic counter it only ever increments); the line shows
 *    the change since the last line that was written (Firecracker's
 *    SharedIncMetric).  The previous total is kept per (group path, key).
 *    It is only advanced when a line is written whole: when a line is
 *    dropped, the next one covers both periods, so no event is lost.  The
 *    first line shows the total.  A total smaller than the previous one (a
 *    device re-created, its counter restarted) shows the new total.
 *  - metrics_add_gauge(l, key, value): the value as it is
 *    (SharedStoreMetric: sizes, times, states).
 *
 * The metrics system counts its own troubles in the "logger" group, with
 * Firecracker's names, as counters: missed_metrics_count (metrics lines not
 * written: the destination would have blocked or failed, or the line could
 * not be built), metrics_fails (of those, the ones not due to "would
 * block": write errors, a line too long or out of memory),
 * missed_log_count and log_fails (log_dropped_lines() and
 * log_write_errors() of the logger).  "logger" is therefore reserved: the
 * callback must not open a group of that name.
 *
 * Destination: as the logger's (log.h: line_sink_open_path): a regular
 * file is appended to (created 0600); a FIFO is opened non-blocking
 * (O_RDWR when it has no reader yet, so lines wait for one); a line the
 * destination cannot take whole at once is dropped and counted, never
 * waited for.  A line longer than PIPE_BUF goes into a FIFO only when the
 * pipe is empty (the reader took the previous line): the only way to know
 * it goes in whole.
 *
 * Threads: metrics_flush may be called from any thread (the timer runs it
 * on the loop thread; FlushMetrics is an action, run on the loop thread
 * too); flushes are serialized by the struct's lock, and the collect
 * callback runs under it on the flushing thread, so it must only read
 * counters (atomics) and must not call metrics_flush.
 */
#ifndef VISOR_METRICS_H
#define VISOR_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event/loop.h"
#include "util/log.h"

/* Firecracker flushes every 60 s. */
#define METRICS_FLUSH_INTERVAL_MS 60000u
/* A longer line is not written (counted in metrics_fails). */
#define METRICS_LINE_MAX ((size_t)1 << 20)
/* Nesting of groups inside the top-level object. */
#define METRICS_DEPTH_MAX 4
/* Longest group path + key used to find a counter's previous total. */
#define METRICS_PATH_MAX 256

struct metrics;
struct metrics_line;

/* Fills @l with the groups of one line (see the file comment). */
typedef void (*metrics_collect_fn)(struct metrics_line *l, void *ctx);
/* Wall-clock time for "utc_timestamp_ms": milliseconds since the epoch. */
typedef uint64_t (*metrics_clock_fn)(void *ctx);

/* A PUT /metrics "properties" entry: a top-level "properties" object of
 * string values. */
struct metrics_property {
	const char *key;
	const char *value;
};

struct metrics_options {
	const char *path;            /* file or FIFO (required) */
	struct loop *loop;           /* flush periodically on it; NULL: only metrics_flush */
	uint32_t interval_ms;        /* 0: METRICS_FLUSH_INTERVAL_MS */
	metrics_collect_fn collect;  /* NULL: only the top-level fields and "logger" */
	void *ctx;                   /* for collect */
	bool emit_id;                /* top-level "id": instance_id */
	const char *instance_id;     /* copied; required when emit_id */
	const struct metrics_property *properties; /* copied */
	size_t nproperties;
	metrics_clock_fn clock;      /* NULL: CLOCK_REALTIME (tests inject one) */
	void *clock_ctx;
};

/* ---- private state (embed struct metrics; use the functions) ---- */

struct metrics_counter {
	char *path;       /* "group.sub.key" */
	uint64_t prev;    /* total shown by the last line written */
	uint64_t pending; /* total in the line being built */
	bool in_line;     /* pending belongs to the line being built */
};

struct metrics_line {
	struct metrics *m;
	char *buf;
	size_t len, cap;
	int error;   /* -ENOMEM, -EMSGSIZE (too long, too deep): the line is not written */
	int depth;   /* open groups */
	bool need_comma[METRICS_DEPTH_MAX + 1];
	size_t path_len[METRICS_DEPTH_MAX + 1]; /* path length at each depth */
	char path[METRICS_PATH_MAX];
};

struct metrics {
	bool ready;
	pthread_mutex_t lock;
	struct line_sink sink;
	struct loop *loop;
	int timer_fd;
	metrics_collect_fn collect;
	void *ctx;
	metrics_clock_fn clock;
	void *clock_ctx;
	char *id; /* NULL: no "id" */
	struct metrics_property *props;
	size_t nprops;
	struct metrics_counter *ctr;
	size_t nctr, ctr_cap, cursor;
	struct metrics_line line;
	_Atomic uint64_t missed; /* lines not written */
	_Atomic uint64_t fails;  /* of which: not because it would block */
};

/* Start the metrics system: open @o->path (see the file comment) and, with
 * @o->loop, register a timerfd on it that flushes every @o->interval_ms
 * (the first flush one interval from now).  @m is uninitialized storage;
 * @o and what it points to may go away after the call (strings are
 * copied).  Call it on the loop thread or before the loop runs.  0, or
 * -errno with a message in @err (may be NULL) and nothing left open:
 * -EINVAL (no path, emit_id without instance id, a NULL property), the
 * error of opening the path (as log_configure: -ENOENT, -EISDIR, -ENOTSUP
 * for a socket or block device, ...), of timerfd_create or of loop_add,
 * -ENOMEM. */
int metrics_init(struct metrics *m, const struct metrics_options *o, char *err, size_t errlen);

/* Build one line (top-level fields, the collect callback's groups, the
 * "logger" group) and write it whole or not at all, without waiting for a
 * reader.  Counter totals advance only when the line is written.  Any
 * thread, not from the collect callback.  0 written; -EAGAIN dropped
 * because the destination would have blocked (a full pipe, a FIFO whose
 * reader has not taken the previous long line); -EMSGSIZE or -ENOMEM the
 * line could not be built (too long, too deep, out of memory); -ENODEV
 * @m is zeroed storage never initialized (or destroyed); another -errno: the
 * write failed (EPIPE: the FIFO's reader went away).  Every failure counts
 * in missed_metrics_count, all but -EAGAIN also in metrics_fails
 * (-ENODEV: neither). */
int metrics_flush(struct metrics *m);

/* Lines not written since metrics_init (Firecracker's
 * missed_metrics_count, as a total).  Any thread. */
uint64_t metrics_dropped_lines(const struct metrics *m);
/* Of those, the ones not due to "would block" (metrics_fails). */
uint64_t metrics_failures(const struct metrics *m);

/* Stop the timer (loop_del), close the destination, free everything.  No
 * final flush: call metrics_flush first to write one.  On the loop thread
 * or while the loop does not run (loop.h), not concurrently with
 * metrics_flush.  A zeroed or already destroyed @m is left alone. */
void metrics_destroy(struct metrics *m);

/* ---- building a line: only inside a collect callback -------------------- */

/* Open the object @name (JSON-escaped) inside the current one.  More than
 * METRICS_DEPTH_MAX levels, or a group path longer than METRICS_PATH_MAX,
 * fails the line (not written, counted in metrics_fails). */
void metrics_group_begin(struct metrics_line *l, const char *name);
/* Close the innermost open object (nothing at the top level).  Groups left
 * open by the callback are closed after it returns. */
void metrics_group_end(struct metrics_line *l);
/* "@key": the change of the monotonic @total since the last line written
 * (see the file comment). */
void metrics_add_counter(struct metrics_line *l, const char *key, uint64_t total);
/* "@key": @value as it is. */
void metrics_add_gauge(struct metrics_line *l, const char *key, uint64_t value);

#endif
