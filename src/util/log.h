/* SPDX-License-Identifier: MIT */
/*
 * log.h - diagnostics: "visor: ..." lines on stderr, or Firecracker's logger.
 *
 * Two destinations, one at a time:
 *
 *  - stderr (the start-up state): lines are "visor: <message>", with
 *    "debug: ", "warning: " or "error: " before the message for those
 *    levels.  When the console is in raw mode a bare "\n" does not return
 *    the carriage, so every line ends in "\r\n" while log_set_raw(true).
 *
 *  - a file or named pipe configured with log_configure() (Firecracker's
 *    PUT /logger, --log-path): lines are Firecracker's
 *
 *        <timestamp> [<instance id>:<thread>[:<LEVEL>][:<file>:<line>]] <message>
 *        2024-05-01T12:34:56.123456789 [vm1:vcpu0:WARN:src/vcpu_exit.c:88] unhandled MSR 0x10
 *
 *    <timestamp> is the UTC time in Firecracker's layout
 *    YYYY-MM-DDTHH:MM:SS.nnnnnnnnn (Firecracker prints its local time in
 *    that layout without a zone; visor always prints UTC so lines from
 *    hosts in different zones compare).  <thread> is the thread's name:
 *    "vcpuN", "api", ... (pthread_setname_np), "main" for the main thread
 *    unless log_set_thread_name() says otherwise.  <LEVEL> (show_level) is
 *    ERROR, WARN, INFO or DEBUG; <file>:<line> (show_origin) is where the
 *    log_* macro was used.
 *
 * Writing a line never blocks the caller on a reader (a vCPU thread must
 * not stop because nobody reads a FIFO or the pipe behind stderr):
 *
 *  - every line is one write(2) (lines of several threads never
 *    interleave) of at most LOG_LINE_MAX bytes (<= PIPE_BUF, so a pipe
 *    takes a line whole or not at all);
 *  - a pipe or FIFO is written through its own non-blocking open file
 *    description (stderr: reopened through /proc/self/fd/2, so O_NONBLOCK
 *    never reaches the description shared with the parent shell); a socket
 *    with send(MSG_DONTWAIT); a regular file or a terminal with a plain
 *    write (they do not wait for a reader; when no private description can
 *    be made, stderr is written as it is);
 *  - a line the destination cannot take whole at once is dropped and
 *    counted (log_dropped_lines(): Firecracker's missed_log_count).
 *
 * Messages are single lines: control characters in a message are replaced
 * ('\n' and '\r' by a space, others by '?'), so neither a guest-supplied
 * string nor a mistake can forge or split lines.
 *
 * Writes to a pipe whose reader went away fail with EPIPE: the process must
 * ignore SIGPIPE (main.c does), the line is counted as dropped.
 *
 * All functions are thread-safe unless said otherwise.
 */
#ifndef VISOR_UTIL_LOG_H
#define VISOR_UTIL_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Longest line written, newline included; longer messages are cut and end
 * in "...".  Equal to PIPE_BUF on Linux: a pipe takes a line atomically. */
#define LOG_LINE_MAX 4096
/* Firecracker's default instance id. */
#define LOG_DEFAULT_INSTANCE_ID "anonymous-instance"
/* Longest instance id kept (Firecracker allows 1..64 characters). */
#define LOG_INSTANCE_ID_MAX 64

/* Show messages of @level and above (errors are always shown unless the
 * logger is configured "Off").  Any thread. */
void log_set_level(enum log_level level);

/* End stderr lines in "\r\n" (the console is in raw mode) or "\n".  Only
 * an atomic store: safe in a signal handler. */
void log_set_raw(bool raw);

/* Log a message without origin (file and line show as "?").  Prefer the
 * log_* macros, which pass their origin.  Any thread; never blocks on a
 * reader. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Log a message written at @file:@line (@file NULL or @line <= 0: "?").
 * What the log_* macros call.  Any thread; never blocks on a reader. */
void log_msg_at(enum log_level level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define log_debug(...) log_msg_at(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) log_msg_at(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_msg_at(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_error(...) log_msg_at(LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

/* The last error logged on this thread ("" if none since the last clear),
 * without prefix.  Recorded whatever the level filter and destination (the
 * API reports it as fault_message even when the logger is "Off"). */
const char *log_last_error(void);
/* Forget this thread's last error. */
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
				log_msg_at((level), __FILE__, __LINE__,                     \
					   fmt " (%u similar messages suppressed)",         \
					   ##__VA_ARGS__, supp_);                           \
			else                                                                \
				log_msg_at((level), __FILE__, __LINE__, fmt, ##__VA_ARGS__); \
		}                                                                           \
	} while (0)

/* Print a message for a set-up error (even when the logger is "Off") and
 * exit(1).  Only for start-up.  die(fmt, ...) passes its origin. */
void die_at(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));
#define die(...) die_at(__FILE__, __LINE__, __VA_ARGS__)

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

/* ---- Firecracker's logger ------------------------------------------------ */

/* What PUT /logger (or --log-path/--level/--show-level/--show-log-origin)
 * asks for.  Every field is applied; see log_configure(). */
struct log_options {
	const char *path;        /* file or FIFO; NULL or "": keep the destination */
	enum log_level level;    /* show this level and above; Trace is LOG_DEBUG */
	bool off;                /* Firecracker's "Off": write nothing at all */
	bool show_level;         /* ":<LEVEL>" in the prefix */
	bool show_origin;        /* ":<file>:<line>" in the prefix */
	const char *instance_id; /* NULL: unchanged (LOG_DEFAULT_INSTANCE_ID at start) */
};

/* Parse a Firecracker level name, case-insensitive: Error, Warning (or
 * Warn), Info, Debug, Trace (shown as debug), Off.  Sets *@level (and
 * *@off for "Off", where *@level becomes LOG_ERROR).  0, or -EINVAL for
 * another name (nothing set). */
int log_parse_level(const char *name, enum log_level *level, bool *off);

/* Configure the logger as Firecracker's.  With @o->path set, lines go from
 * now on to that file or FIFO in Firecracker's format (file comment):
 *
 *  - a regular file is opened O_WRONLY|O_APPEND|O_CREAT, mode 0600 when it
 *    is created; lines are appended;
 *  - a FIFO is opened O_WRONLY|O_NONBLOCK.  If it has no reader yet
 *    (ENXIO) it is opened O_RDWR|O_NONBLOCK instead, which never blocks or
 *    fails for want of a reader: lines wait in the pipe (up to its
 *    capacity, then they are dropped and counted) for a reader to come;
 *  - a character device (/dev/null, a terminal) is opened non-blocking on
 *    its own description; a directory (-EISDIR), a socket or a block
 *    device (-ENOTSUP) is refused.
 *
 * Symbolic links are followed and relative paths are relative to the
 * working directory, as Firecracker does.  The previous path, if any, is
 * closed.  Level, off, show_level, show_origin and (when not NULL) the
 * instance id apply to every later line; the "visor: ..." stderr format
 * stays in use until a path is configured.  Any thread (PUT /logger runs on
 * the loop thread while vCPUs log).  0, or -errno with a message in @err
 * (may be NULL) and nothing changed: -EINVAL (a level out of range, or an
 * instance id that is empty, longer than LOG_INSTANCE_ID_MAX or has a
 * character other than A-Z a-z 0-9 - _ .), -ENOTSUP (a socket or block
 * device), or the error of open(2) (-ENOENT, -EACCES, -EISDIR, ...). */
int log_configure(const struct log_options *o, char *err, size_t errlen);

/* Back to the start-up state: "visor: ..." lines on stderr, level Info,
 * not off, no level or origin shown, default instance id; a configured
 * path is closed.  The counters keep counting.  Any thread. */
void log_reset(void);

/* Name this thread for the log prefix (at most 15 characters are kept, as
 * the kernel does for thread names), instead of its kernel name; NULL or ""
 * goes back to the kernel name ("main" for the main thread).  Only affects
 * the calling thread. */
void log_set_thread_name(const char *name);

/* Look up what the log needs of the calling thread (whether it is the
 * main thread) now, before a seccomp filter takes the calls for it away
 * (sec_enter calls it). */
void log_thread_prime(void);

/* Look at file descriptor 2 again (after dup2() onto it): the next stderr
 * line is written as the new descriptor requires.  Any thread. */
/* Set up the stderr sink now (it is otherwise set up by the first line,
 * which may come from a thread whose seccomp filter allows no open). */
void log_prepare(void);
void log_reopen_stderr(void);

/* Lines dropped since the process started: not written whole because the
 * destination would have blocked (a full pipe, no reader) or failed
 * (Firecracker's missed_log_count; includes log_write_errors()). */
uint64_t log_dropped_lines(void);

/* Of the dropped lines, those whose write failed with an error other than
 * "would block" (EPIPE, EIO, ENOSPC, ...; Firecracker's log_fails). */
uint64_t log_write_errors(void);

/* ---- line sinks: non-blocking whole-line writes (logger and metrics) ---- */

enum line_sink_kind {
	LINE_SINK_NONE,   /* not open: lines are dropped */
	LINE_SINK_PLAIN,  /* regular file, terminal, character device: plain write */
	LINE_SINK_PIPE,   /* pipe or FIFO on a non-blocking description */
	LINE_SINK_SOCKET, /* socket: send(MSG_DONTWAIT | MSG_NOSIGNAL) */
};

/* A destination written one whole line per write.  Fields are private. */
struct line_sink {
	int fd;
	bool owned; /* close fd in line_sink_close */
	enum line_sink_kind kind;
	_Atomic uint64_t dropped; /* lines not written whole */
	_Atomic uint64_t errors;  /* of which: failed with an error other than EAGAIN */
};

/* Open @path for lines as log_configure() describes (file: append, create
 * 0600; FIFO: non-blocking, O_RDWR when it has no reader yet; character
 * device: non-blocking; directory: -EISDIR; socket, block device:
 * -ENOTSUP).  @s is
 * uninitialized storage.  0, or -errno with a message in @err (may be NULL)
 * and @s left closed (LINE_SINK_NONE, fd -1). */
int line_sink_open_path(struct line_sink *s, const char *path, char *err, size_t errlen);

/* Make @s write to @fd (not taken over): a pipe or FIFO through a private
 * non-blocking description reopened from /proc/self/fd/@fd, a socket with
 * send(MSG_DONTWAIT), anything else (and a pipe that cannot be reopened) as
 * it is.  @s is uninitialized storage.  0 (always usable), or -EBADF if
 * @fd is not open (@s left closed). */
int line_sink_open_fd(struct line_sink *s, int fd);

/* Write the line @buf (@len bytes, ending in '\n') with a single write
 * that does not wait for a reader.  A line the destination cannot take
 * whole is dropped and counted in s->dropped (an error other than EAGAIN
 * also in s->errors); should a destination take only part of it (a full
 * disk, a stream socket), a '\n' is attempted after the part so the next
 * line starts on its own.  A pipe takes a line longer than PIPE_BUF only
 * when it is empty and the line fits its capacity (the only way to know it
 * goes in whole).  Not thread-safe for one sink: callers serialize.
 * 0 written whole; -EAGAIN dropped because it would block (or was taken
 * only in part); -EBADF dropped by a closed sink; -EMSGSIZE a line longer
 * than the pipe can ever hold; -errno dropped on that write error.  Every
 * code but -EAGAIN also counts in s->errors. */
int line_sink_write(struct line_sink *s, const char *buf, size_t len);

/* Lines dropped by @s so far (any thread). */
uint64_t line_sink_dropped(const struct line_sink *s);
/* Lines dropped by @s on an error other than "would block" (any thread). */
uint64_t line_sink_errors(const struct line_sink *s);

/* Close @s (its fd if owned); it drops lines from now on.  Idempotent. */
void line_sink_close(struct line_sink *s);

#endif
