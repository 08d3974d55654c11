/* SPDX-License-Identifier: MIT */
/*
 * log.c - diagnostics on stderr or Firecracker's logger; see log.h.
 */
#include "log.h"
#include "str.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- line sinks ----------------------------------------------------------- */

static void sink_count(struct line_sink *s, int r)
{
	atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
	if (r != -EAGAIN)
		atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed);
}

static void sink_init(struct line_sink *s)
{
	s->fd = -1;
	s->owned = false;
	s->kind = LINE_SINK_NONE;
	atomic_init(&s->dropped, 0);
	atomic_init(&s->errors, 0);
}


int line_sink_open_path(struct line_sink *s, const char *path, char *err, size_t errlen)
{
	sink_init(s);
	if (!path || !path[0]) {
		err_set(err, errlen, 0, "empty path");
		return -EINVAL;
	}
	/* One open serves files (O_APPEND, O_CREAT) and FIFOs (O_NONBLOCK:
	 * neither the open nor the writes wait for a reader). */
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC | O_NOCTTY,
		      0600);
	if (fd < 0 && errno == ENXIO) {
		/* A FIFO without a reader (or a Unix socket).  Opening the FIFO
		 * for reading too never waits and never fails for want of a
		 * reader: lines queue in the pipe until one comes. */
		struct stat st;
		if (stat(path, &st) == 0 && S_ISFIFO(st.st_mode))
			fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		else
			errno = ENXIO;
	}
	if (fd < 0) {
		int e = errno;
		err_set(err, errlen, 0, "cannot open '%s': %s", path,
			e == ENXIO ? "not a file or named pipe" : strerror(e));
		return e == ENXIO ? -ENOTSUP : -e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		err_set(err, errlen, 0, "cannot stat '%s': %s", path, strerror(e));
		return -e;
	}
	if (S_ISFIFO(st.st_mode)) {
		s->kind = LINE_SINK_PIPE;
	} else if (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode)) {
		s->kind = LINE_SINK_PLAIN;
	} else {
		close(fd);
		err_set(err, errlen, 0, "'%s' is not a file or named pipe", path);
		return -ENOTSUP;
	}
	s->fd = fd;
	s->owned = true;
	return 0;
}

int line_sink_open_fd(struct line_sink *s, int fd)
{
	sink_init(s);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return -EBADF;
	if (S_ISSOCK(st.st_mode)) {
		s->kind = LINE_SINK_SOCKET;
		s->fd = fd;
		return 0;
	}
	if (S_ISFIFO(st.st_mode)) {
		/* A private open file description of the same pipe: O_NONBLOCK
		 * on it does not reach the one shared with other processes. */
		char p[32];
		snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
		int nfd = open(p, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (nfd >= 0) {
			s->kind = LINE_SINK_PIPE;
			s->fd = nfd;
			s->owned = true;
			return 0;
		}
	}
	/* A regular file or a terminal (writes do not wait for a reader), or
	 * a pipe that cannot be reopened: written as it is. */
	s->kind = LINE_SINK_PLAIN;
	s->fd = fd;
	return 0;
}

static ssize_t sink_write1(const struct line_sink *s, const char *buf, size_t len)
{
	for (;;) {
		ssize_t w = s->kind == LINE_SINK_SOCKET
				    ? send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL)
				    : write(s->fd, buf, len);
		if (w >= 0 || errno != EINTR)
			return w;
	}
}

/* Can the pipe take @len (> PIPE_BUF) bytes whole?  Only an empty pipe is
 * known to: pipe space is counted in pages, and how full the pages are is
 * not visible from here.  0, -EAGAIN (not now) or -EMSGSIZE (never). */
static int pipe_room(const struct line_sink *s, size_t len)
{
	int unread = 0;
	if (ioctl(s->fd, FIONREAD, &unread) < 0)
		return -errno;
	int cap = fcntl(s->fd, F_GETPIPE_SZ);
	if (cap >= 0 && (size_t)cap < len) {
		if (len > INT_MAX)
			return -EMSGSIZE;
		cap = fcntl(s->fd, F_SETPIPE_SZ, (int)len);
		if (cap < 0 || (size_t)cap < len)
			return -EMSGSIZE;
	}
	return unread > 0 ? -EAGAIN : 0;
}

int line_sink_write(struct line_sink *s, const char *buf, size_t len)
{
	int r;
	if (s->fd < 0 || s->kind == LINE_SINK_NONE) {
		r = -EBADF;
		goto drop;
	}
	if (s->kind == LINE_SINK_PIPE && len > PIPE_BUF) {
		r = pipe_room(s, len);
		if (r)
			goto drop;
	}
	ssize_t w = sink_write1(s, buf, len);
	if (w >= 0 && (size_t)w == len)
		return 0;
	if (w < 0) {
		r = (errno == EAGAIN || errno == EWOULDBLOCK) ? -EAGAIN : -errno;
		goto drop;
	}
	/* Taken in part (a full disk, a stream socket's buffer): end the
	 * fragment so the next line starts on a line of its own. */
	if (w > 0 && buf[w - 1] != '\n')
		(void)sink_write1(s, "\n", 1);
	r = -EAGAIN;
drop:
	sink_count(s, r);
	return r;
}

uint64_t line_sink_dropped(const struct line_sink *s)
{
	return atomic_load_explicit(&s->dropped, memory_order_relaxed);
}

uint64_t line_sink_errors(const struct line_sink *s)
{
	return atomic_load_explicit(&s->errors, memory_order_relaxed);
}

void line_sink_close(struct line_sink *s)
{
	if (s->owned && s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->owned = false;
	s->kind = LINE_SINK_NONE;
}

/* ---- the logger ----------------------------------------------------------- */

static _Atomic int min_level = LOG_INFO;
static atomic_bool log_off;
/* read by every line, set from a signal handler too (console_restore) */
static atomic_bool raw_mode;
static _Atomic uint64_t dropped_lines, write_errors;
/* the last error message of this thread (without prefix), for requests
 * that must report why they failed (the API's fault_message) */
static _Thread_local char last_error[512];
/* log_set_thread_name(); "" = the kernel's name */
static _Thread_local char thread_name[16];

/* Destination and format; lock held while a line is formatted and written
 * (the writes do not wait for readers, so the lock is held briefly). */
static struct {
	pthread_mutex_t lock;
	struct line_sink err;  /* stderr, made on first use */
	struct line_sink path; /* log_configure()'s path */
	bool err_ready, have_path;
	bool show_level, show_origin;
	char id[LOG_INSTANCE_ID_MAX + 1];
} lg = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.err = {.fd = -1},
	.path = {.fd = -1},
	.id = LOG_DEFAULT_INSTANCE_ID,
};

void log_set_level(enum log_level level)
{
	atomic_store(&min_level, (int)level);
}

void log_set_raw(bool raw)
{
	atomic_store(&raw_mode, raw);
}

const char *log_last_error(void)
{
	return last_error;
}

void log_clear_last_error(void)
{
	last_error[0] = 0;
}

void log_set_thread_name(const char *name)
{
	snprintf(thread_name, sizeof(thread_name), "%s", name ? name : "");
}

static _Thread_local bool main_known, is_main;

static void get_thread_name(char out[16])
{
	if (thread_name[0]) {
		memcpy(out, thread_name, 16);
		return;
	}
	/* asked once per thread (two system calls the event loop's narrow
	 * seccomp filter does not have; log_thread_prime) */
	if (!main_known) {
		is_main = gettid() == getpid();
		main_known = true;
	}
	if (is_main) {
		/* The main thread runs the VM's event loop; its kernel name
		 * is the program's and stays so (ps, top). */
		snprintf(out, 16, "main");
		return;
	}
	char n[17] = {0};
	if (prctl(PR_GET_NAME, n) < 0 || !n[0])
		snprintf(n, sizeof(n), "-");
	memcpy(out, n, 16);
	out[15] = 0;
}

void log_thread_prime(void)
{
	char n[16];
	get_thread_name(n);
}

/* Firecracker's timestamp layout, in UTC: 2024-05-01T12:34:56.123456789 */
static void format_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%09ld", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
}

/* Messages are single lines: no control character reaches the output. */
static void sanitize(char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\n' || c == '\r')
			*s = ' ';
		else if ((c < 0x20 && c != '\t') || c == 0x7f)
			*s = '?';
	}
}

static const char *file_or_q(const char *file)
{
	return file && file[0] ? file : "?";
}

/* printf at @line + *@n, never past LOG_LINE_MAX - 1 (a very long origin
 * only cuts the prefix). */
__attribute__((format(printf, 3, 4))) static void append(char *line, size_t *n, const char *fmt,
							 ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vsnprintf(line + *n, LOG_LINE_MAX - *n, fmt, ap);
	va_end(ap);
	if (r > 0)
		*n += (size_t)r;
	if (*n > LOG_LINE_MAX - 1)
		*n = LOG_LINE_MAX - 1;
}

/* Build the line for @msg in @line (LOG_LINE_MAX bytes).  Lock held. */
static size_t build_line(char *line, enum log_level level, const char *file, int lineno,
			 const char *msg, bool fc_format, bool raw)
{
	static const char *const stderr_prefix[] = {"debug: ", "", "warning: ", "error: "};
	static const char *const fc_level[] = {"DEBUG", "INFO", "WARN", "ERROR"};
	const size_t cap = LOG_LINE_MAX;
	size_t n = 0;
	if (fc_format) {
		char tname[16];
		get_thread_name(tname);
		format_time(line, cap);
		n = strlen(line);
		append(line, &n, " [%s:%s", lg.id, tname);
		if (lg.show_level)
			append(line, &n, ":%s", fc_level[level]);
		if (lg.show_origin) {
			if (lineno > 0)
				append(line, &n, ":%s:%d", file_or_q(file), lineno);
			else
				append(line, &n, ":%s:?", file_or_q(file));
		}
		append(line, &n, "] ");
	} else {
		append(line, &n, "visor: %s", stderr_prefix[level]);
	}
	size_t tail = raw ? 2 : 1; /* "\r\n" or "\n" */
	if (n > cap - tail - 3)
		n = cap - tail - 3; /* only with an absurdly long origin */
	size_t mlen = strlen(msg);
	if (mlen > cap - tail - n) {
		/* cut, and say so */
		mlen = cap - tail - n - 3;
		memcpy(line + n, msg, mlen);
		memcpy(line + n + mlen, "...", 3);
		n += mlen + 3;
	} else {
		memcpy(line + n, msg, mlen);
		n += mlen;
	}
	if (raw)
		line[n++] = '\r';
	line[n++] = '\n';
	return n;
}

__attribute__((format(printf, 5, 0))) static void vlog(enum log_level level, const char *file,
						      int lineno, bool force, const char *fmt,
						      va_list ap)
{
	if ((unsigned)level > LOG_ERROR)
		level = LOG_ERROR;
	/* errors are formatted even when not shown: last_error keeps them */
	bool shown = force || (!atomic_load(&log_off) &&
			       (level == LOG_ERROR || (int)level >= atomic_load(&min_level)));
	if (!shown && level != LOG_ERROR)
		return;
	char msg[LOG_LINE_MAX];
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		return;
	sanitize(msg);
	if (level == LOG_ERROR) {
		size_t n = strnlen(msg, sizeof(last_error) - 1);
		memcpy(last_error, msg, n);
		last_error[n] = 0;
	}
	if (!shown)
		return;

	char line[LOG_LINE_MAX];
	pthread_mutex_lock(&lg.lock);
	struct line_sink *s;
	bool fc = lg.have_path;
	if (fc) {
		s = &lg.path;
	} else {
		if (!lg.err_ready) {
			line_sink_open_fd(&lg.err, STDERR_FILENO);
			lg.err_ready = true;
		}
		s = &lg.err;
	}
	size_t len = build_line(line, level, file, lineno, msg, fc, !fc && atomic_load(&raw_mode));
	int r = line_sink_write(s, line, len);
	pthread_mutex_unlock(&lg.lock);
	if (r) {
		atomic_fetch_add_explicit(&dropped_lines, 1, memory_order_relaxed);
		if (r != -EAGAIN)
			atomic_fetch_add_explicit(&write_errors, 1, memory_order_relaxed);
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(level, NULL, 0, false, fmt, ap);
	va_end(ap);
}

void log_msg_at(enum log_level level, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(level, file, line, false, fmt, ap);
	va_end(ap);
}

void die_at(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_ERROR, file, line, true, fmt, ap);
	va_end(ap);
	exit(1);
}

int log_parse_level(const char *name, enum log_level *level, bool *off)
{
	static const struct {
		const char *name;
		enum log_level level;
		bool off;
	} lv[] = {
		{"error", LOG_ERROR, false}, {"warning", LOG_WARN, false},
		{"warn", LOG_WARN, false},   {"info", LOG_INFO, false},
		{"debug", LOG_DEBUG, false}, {"trace", LOG_DEBUG, false},
		{"off", LOG_ERROR, true},
	};
	for (size_t i = 0; name && i < sizeof(lv) / sizeof(lv[0]); i++) {
		if (!strcasecmp(name, lv[i].name)) {
			*level = lv[i].level;
			if (off)
				*off = lv[i].off;
			return 0;
		}
	}
	return -EINVAL;
}

/* Firecracker's instance ids: 1 to 64 of [A-Za-z0-9-]; '_' and '.' are
 * accepted too.  Nothing that could end the prefix or the line. */
static bool valid_id(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > LOG_INSTANCE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

int log_configure(const struct log_options *o, char *err, size_t errlen)
{
	if (!o) {
		err_set(err, errlen, 0, "no logger options");
		return -EINVAL;
	}
	if ((unsigned)o->level > LOG_ERROR) {
		err_set(err, errlen, 0, "invalid log level %d", (int)o->level);
		return -EINVAL;
	}
	if (o->instance_id && !valid_id(o->instance_id)) {
		err_set(err, errlen, 0,
			"invalid instance id '%.80s': 1 to %d characters among A-Z a-z 0-9 - _ .",
			o->instance_id, LOG_INSTANCE_ID_MAX);
		return -EINVAL;
	}
	struct line_sink ns;
	bool new_path = o->path && o->path[0];
	if (new_path) {
		int r = line_sink_open_path(&ns, o->path, err, errlen);
		if (r)
			return r;
	}
	pthread_mutex_lock(&lg.lock);
	if (new_path) {
		line_sink_close(&lg.path);
		lg.path.fd = ns.fd;
		lg.path.owned = ns.owned;
		lg.path.kind = ns.kind;
		lg.have_path = true;
	}
	lg.show_level = o->show_level;
	lg.show_origin = o->show_origin;
	if (o->instance_id)
		snprintf(lg.id, sizeof(lg.id), "%s", o->instance_id);
	atomic_store(&min_level, (int)o->level);
	atomic_store(&log_off, o->off);
	pthread_mutex_unlock(&lg.lock);
	return 0;
}

void log_reset(void)
{
	pthread_mutex_lock(&lg.lock);
	line_sink_close(&lg.path);
	lg.have_path = false;
	lg.show_level = lg.show_origin = false;
	snprintf(lg.id, sizeof(lg.id), "%s", LOG_DEFAULT_INSTANCE_ID);
	atomic_store(&min_level, (int)LOG_INFO);
	atomic_store(&log_off, false);
	pthread_mutex_unlock(&lg.lock);
}

void log_prepare(void)
{
	pthread_mutex_lock(&lg.lock);
	/* also with a log path: lines go to stderr again when it is reset */
	if (!lg.err_ready) {
		line_sink_open_fd(&lg.err, STDERR_FILENO);
		lg.err_ready = true;
	}
	pthread_mutex_unlock(&lg.lock);
}

void log_reopen_stderr(void)
{
	pthread_mutex_lock(&lg.lock);
	line_sink_close(&lg.err);
	lg.err_ready = false;
	pthread_mutex_unlock(&lg.lock);
}

uint64_t log_dropped_lines(void)
{
	return atomic_load_explicit(&dropped_lines, memory_order_relaxed);
}

uint64_t log_write_errors(void)
{
	return atomic_load_explicit(&write_errors, memory_order_relaxed);
}

/* ---- time, rate limits ------------------------------------------------------ */

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
