/* SPDX-License-Identifier: MIT */
/*
 * console.c - raw terminal, the escape sequence, and guest output that never
 * blocks a vCPU (see console.h for the model).
 */
#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "seccomp.h"

/* ---- terminal ------------------------------------------------------------ */

static struct termios saved_tio;
static volatile sig_atomic_t saved_valid;
static int saved_fd = -1;

void console_restore(void)
{
	if (saved_valid) {
		/* What TCSAFLUSH does, without its wait for pending output to
		 * be transmitted (a terminal nobody reads must not hold up the
		 * exit): discard unread input, then switch at once. */
		tcflush(saved_fd, TCIFLUSH);
		tcsetattr(saved_fd, TCSANOW, &saved_tio);
		saved_valid = 0;
		log_set_raw(false);
	}
}

static void on_fatal(int sig)
{
	console_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Switch the terminal @in_fd to raw mode.  0 / -errno. */
static int console_raw(struct console *c, int in_fd)
{
	struct termios t;
	if (tcgetattr(in_fd, &t) < 0)
		return -errno;
	saved_tio = t;
	saved_fd = in_fd;
	/* Restore on every way out: exit(), and signals that end the process. */
	static bool handlers;
	if (!handlers) {
		atexit(console_restore);
		static const int sigs[] = {SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGSEGV,
					   SIGBUS,  SIGFPE, SIGILL, SIGABRT};
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
			struct sigaction sa;
			memset(&sa, 0, sizeof(sa));
			sa.sa_handler = on_fatal;
			sa.sa_flags = SA_RESETHAND;
			sigaction(sigs[i], &sa, NULL);
		}
		handlers = true;
	}
	cfmakeraw(&t);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(in_fd, TCSANOW, &t) < 0)
		return -errno;
	saved_valid = 1;
	c->raw = true;
	log_set_raw(true);
	return 0;
}

size_t console_filter_input(struct console *c, const uint8_t *in, size_t n, uint8_t *out,
			    bool *quit)
{
	size_t o = 0;
	*quit = false;
	for (size_t i = 0; i < n; i++) {
		uint8_t b = in[i];
		if (c->escape_pending) {
			c->escape_pending = false;
			if (b == 'x' || b == 'X') {
				*quit = true;
				return o;
			}
			if (b != CONSOLE_ESCAPE)
				out[o++] = CONSOLE_ESCAPE;
			out[o++] = b;
			continue;
		}
		if (b == CONSOLE_ESCAPE) {
			c->escape_pending = true;
			continue;
		}
		out[o++] = b;
	}
	return o;
}

/* ---- guest output -------------------------------------------------------- */

enum out_kind {
	OUT_DIRECT,   /* regular file: write() at once; it never waits for a reader */
	OUT_NONBLOCK, /* a description of our own with O_NONBLOCK (pipe, FIFO, tty) */
	OUT_SOCKET,   /* a socket: send(MSG_DONTWAIT) */
	OUT_BLOCKING, /* a shared description: only the writer thread writes */
};

#define OUT_WRITER_STACK ((size_t)128 << 10)
#define NS_PER_MS 1000000ULL

struct console_out {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* ring drained (stop); data for a BLOCKING writer */
	enum out_kind kind;
	int fd;              /* owned; -1 while a FIFO has no reader */
	char *fifo_path;     /* FIFO from a path: reopened when a reader comes */
	uint64_t fifo_retry_ns;
	bool fifo_retry_wanted; /* output came while no reader: the writer reopens */
	bool broken;         /* the reader is gone for good: drop everything */
	int wake_efd;        /* wakes the writer's poll (NONBLOCK, SOCKET) */
	uint8_t *buf;        /* ring of CONSOLE_OUT_BUF_SIZE bytes (not DIRECT) */
	size_t head, len;
	bool writer_idle;    /* the writer waits for data: wake it on new data */
	bool writing;        /* BLOCKING: a write() runs outside the lock */
	bool gathering;      /* the writer lets output gather (CONSOLE_GATHER_MS) */
	bool nl_pending;     /* BLOCKING: a line end is in the ring (console_write
			      * sets it, the writer clears it once the ring is empty) */
	uint64_t gather_until; /* a write left recently: output that comes
				* before this time gathers in the ring */
	bool stopping;       /* set once by out_stop: the writer ends */
	bool has_thread;
	bool orphaned;       /* BLOCKING writer left stuck in write(): it frees */
	pthread_t thread;
	uint64_t dropped;    /* every byte dropped so far */
	uint64_t reported;   /* the part of dropped copied to a console */
	struct console_out *next; /* list of live outputs (exit fallback) */
};

/* Outputs not stopped yet: stopped at exit by out_atexit. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct console_out *live_outs;

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* Copy as much of p[0..n) as fits to the ring's tail; returns how much. */
static size_t ring_put(struct console_out *o, const uint8_t *p, size_t n)
{
	n = min_size(n, CONSOLE_OUT_BUF_SIZE - o->len);
	size_t tail = (o->head + o->len) % CONSOLE_OUT_BUF_SIZE;
	size_t first = min_size(n, CONSOLE_OUT_BUF_SIZE - tail);
	memcpy(o->buf + tail, p, first);
	memcpy(o->buf, p + first, n - first);
	o->len += n;
	return n;
}

/* The contiguous buffered bytes at the head. */
static size_t ring_chunk(const struct console_out *o)
{
	return min_size(o->len, CONSOLE_OUT_BUF_SIZE - o->head);
}

static void ring_consume(struct console_out *o, size_t n)
{
	o->head = (o->head + n) % CONSOLE_OUT_BUF_SIZE;
	o->len -= n;
	if (!o->len)
		o->head = 0;
	pthread_cond_broadcast(&o->cond);
}

static void ring_drop(struct console_out *o)
{
	o->dropped += o->len;
	o->head = o->len = 0;
	pthread_cond_broadcast(&o->cond);
}

/* A write failed with errno @err: what was buffered is lost.  A FIFO from a
 * path is closed and reopened later (a new reader may come); a reader that
 * went away or a descriptor that cannot be written ends the output. */
static void out_fail(struct console_out *o, int err)
{
	ring_drop(o);
	if (o->fifo_path) {
		if (o->fd >= 0)
			close(o->fd);
		o->fd = -1;
		o->fifo_retry_ns = now_ns() + CONSOLE_FIFO_RETRY_MS * NS_PER_MS;
	} else if (err == EPIPE || err == EBADF || err == EINVAL || err == EIO) {
		o->broken = true;
	}
}

/* One write that never waits.  Returns bytes written (0: it would block)
 * or -errno. */
static ssize_t out_write_nb(struct console_out *o, const uint8_t *p, size_t n)
{
	for (;;) {
		ssize_t w = o->kind == OUT_SOCKET ? send(o->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL)
						  : write(o->fd, p, n);
		if (w >= 0)
			return w;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -errno;
	}
}

/* Write buffered bytes until the ring is empty or the descriptor would
 * block (lock held: these writes never wait). */
static void out_flush_nb(struct console_out *o)
{
	while (o->len && o->fd >= 0 && !o->broken) {
		ssize_t w = out_write_nb(o, o->buf + o->head, ring_chunk(o));
		if (w < 0) {
			out_fail(o, (int)-w);
			return;
		}
		if (w == 0)
			return;
		ring_consume(o, (size_t)w);
	}
}

static void out_wake(struct console_out *o)
{
	uint64_t one = 1;
	ssize_t r = write(o->wake_efd, &one, sizeof(one));
	(void)r;
}

/* A FIFO without reader got output (lock held): ask the writer thread to
 * open it again, at most every CONSOLE_FIFO_RETRY_MS.  The writer opens,
 * not the caller: a vCPU thread (the serial port) opens no files, and its
 * seccomp filter does not let it. */
static void out_fifo_want(struct console_out *o)
{
	if (o->fd >= 0 || !o->fifo_path || o->fifo_retry_wanted || now_ns() < o->fifo_retry_ns)
		return;
	o->fifo_retry_wanted = true;
	out_wake(o);
}

/* The writer thread (lock held): the reopen out_fifo_want asked for. */
static void out_fifo_retry(struct console_out *o)
{
	if (!o->fifo_retry_wanted)
		return;
	o->fifo_retry_wanted = false;
	if (o->fd >= 0 || !o->fifo_path)
		return;
	o->fifo_retry_ns = now_ns() + CONSOLE_FIFO_RETRY_MS * NS_PER_MS;
	o->fd = open(o->fifo_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
}

/* Writer of NONBLOCK and SOCKET outputs: waits for buffered data and for
 * the descriptor to take it; never blocks in a write.  Until
 * CONSOLE_GATHER_MS after the last write it waits, not idle (console_write
 * does not wake it), for output to gather, unless the ring is half full. */
static void *out_writer_poll(void *arg)
{
	struct console_out *o = arg;
	pthread_mutex_lock(&o->lock);
	while (!o->stopping) {
		out_fifo_retry(o);
		uint64_t now = now_ns();
		/* (also with nothing buffered yet: what comes while the time
		 * runs needs no wake-up) */
		bool gather = o->len < CONSOLE_OUT_BUF_SIZE / 2 && now < o->gather_until;
		int timeout = -1;
		if (gather) {
			timeout = (int)((o->gather_until - now + NS_PER_MS - 1) / NS_PER_MS);
		} else {
			size_t before = o->len;
			out_flush_nb(o);
			if (o->len < before)
				o->gather_until = now + CONSOLE_GATHER_MS * NS_PER_MS;
		}
		bool want_out = !gather && o->len && o->fd >= 0 && !o->broken;
		o->gathering = gather;
		o->writer_idle = !want_out && !gather;
		struct pollfd p[2] = {{.fd = o->wake_efd, .events = POLLIN},
				      {.fd = want_out ? o->fd : -1, .events = POLLOUT}};
		pthread_mutex_unlock(&o->lock);
		if (poll(p, 2, timeout) > 0 && (p[0].revents & POLLIN)) {
			uint64_t v;
			ssize_t r = read(o->wake_efd, &v, sizeof(v));
			(void)r;
		}
		pthread_mutex_lock(&o->lock);
		o->writer_idle = false;
		o->gathering = false;
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

static void out_free(struct console_out *o)
{
	if (o->fd >= 0)
		close(o->fd);
	if (o->wake_efd >= 0)
		close(o->wake_efd);
	free(o->buf);
	free(o->fifo_path);
	pthread_cond_destroy(&o->cond);
	pthread_mutex_destroy(&o->lock);
	free(o);
}

/* A BLOCKING writer that has just written (lock held): lets more output
 * gather for CONSOLE_GATHER_MS before it writes again.  It is not idle
 * meanwhile, so console_write() only appends to the ring, without waking
 * it: output that comes a byte at a time (the UART, one exit per byte)
 * costs a wake-up and a write per line or CONSOLE_GATHER_MS instead of two
 * thread switches and a write per byte.  The stop, a broken output, and
 * console_write (at the end of a line, a ring half full, or output that
 * comes after the time is up: the flush does not depend on the timer
 * alone) end the wait early. */
static void out_gather(struct console_out *o)
{
	uint64_t end = now_ns() + CONSOLE_GATHER_MS * NS_PER_MS;
	struct timespec ts = {.tv_sec = (time_t)(end / 1000000000ULL),
			      .tv_nsec = (long)(end % 1000000000ULL)};
	if (o->nl_pending)
		return; /* a line ended while the writer wrote: write it now */
	o->gather_until = end;
	o->gathering = true;
	/* (console_write clears gathering when the wait should end; the time
	 * is checked before each wait: a wait whose deadline has passed would
	 * still sleep until the next timer interrupt) */
	while (o->gathering && !o->stopping && !o->broken && o->len < CONSOLE_OUT_BUF_SIZE / 2 &&
	       now_ns() < end && pthread_cond_timedwait(&o->cond, &o->lock, &ts) != ETIMEDOUT)
		;
	o->gathering = false;
}

/* Writer of a BLOCKING output: the only one that writes the shared
 * descriptor, with plain (possibly blocking) writes, the lock dropped.
 * If out_stop gave up on it while it was stuck, it frees the output when
 * (if ever) the write returns. */
static void *out_writer_blocking(void *arg)
{
	struct console_out *o = arg;
	pthread_mutex_lock(&o->lock);
	for (;;) {
		while (!o->len && !o->stopping) {
			o->writer_idle = true;
			pthread_cond_wait(&o->cond, &o->lock);
		}
		o->writer_idle = false;
		if (o->stopping || o->broken)
			break;
		const uint8_t *p = o->buf + o->head;
		size_t n = ring_chunk(o);
		o->writing = true;
		pthread_mutex_unlock(&o->lock);
		/* console_write only appends behind the tail and out_stop
		 * leaves the buffer alone while we write: p stays valid. */
		ssize_t w = write(o->fd, p, n);
		int err = w < 0 ? errno : 0;
		if (err == EAGAIN || err == EWOULDBLOCK) {
			/* somebody made the shared description non-blocking */
			struct pollfd pf = {.fd = o->fd, .events = POLLOUT};
			poll(&pf, 1, CONSOLE_STOP_FLUSH_MS);
		}
		pthread_mutex_lock(&o->lock);
		o->writing = false;
		if (o->stopping)
			break; /* out_stop already accounted for the ring */
		if (w > 0)
			ring_consume(o, (size_t)w);
		else if (w < 0 && err != EINTR && err != EAGAIN && err != EWOULDBLOCK)
			out_fail(o, err);
		if (!o->len)
			o->nl_pending = false;
		pthread_cond_broadcast(&o->cond);
		if (w > 0)
			out_gather(o);
	}
	bool free_it = o->orphaned;
	pthread_mutex_unlock(&o->lock);
	if (free_it)
		out_free(o);
	return NULL;
}

static void out_atexit(void);

/* A new output of @kind on @fd (owned from now on, also on failure;
 * may be -1 for a FIFO without reader).  NULL with *err = errno value. */
static struct console_out *out_new(enum out_kind kind, int fd, const char *fifo_path, int *err)
{
	struct console_out *o = calloc(1, sizeof(*o));
	if (!o) {
		if (fd >= 0)
			close(fd);
		*err = ENOMEM;
		return NULL;
	}
	o->kind = kind;
	o->fd = fd;
	o->wake_efd = -1;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->cond, &ca);
	pthread_condattr_destroy(&ca);
	*err = 0;
	if (fifo_path && !(o->fifo_path = strdup(fifo_path)))
		*err = ENOMEM;
	if (fifo_path && fd < 0)
		o->fifo_retry_ns = now_ns() + CONSOLE_FIFO_RETRY_MS * NS_PER_MS;
	if (!*err && kind != OUT_DIRECT && !(o->buf = malloc(CONSOLE_OUT_BUF_SIZE)))
		*err = ENOMEM;
	if (!*err && (kind == OUT_NONBLOCK || kind == OUT_SOCKET) &&
	    (o->wake_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		*err = errno;
	if (!*err && kind != OUT_DIRECT) {
		/* A small stack (no 2 MiB huge page for it) and every signal
		 * blocked: process signals go to the main thread. */
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setstacksize(&a, OUT_WRITER_STACK);
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		int r = sec_thread_create(SEC_CONSOLE, &o->thread, &a,
					  kind == OUT_BLOCKING ? out_writer_blocking : out_writer_poll,
					  o);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&a);
		if (r)
			*err = r;
		else {
			o->has_thread = true;
			pthread_setname_np(o->thread, "console-out");
		}
	}
	if (*err) {
		out_free(o);
		return NULL;
	}
	pthread_mutex_lock(&live_lock);
	static bool atexit_done;
	if (!atexit_done) {
		atexit(out_atexit);
		atexit_done = true;
	}
	o->next = live_outs;
	live_outs = o;
	pthread_mutex_unlock(&live_lock);
	return o;
}

static uint64_t ms_left(uint64_t deadline)
{
	uint64_t now = now_ns();
	return now >= deadline ? 0 : (deadline - now + NS_PER_MS - 1) / NS_PER_MS;
}

/* Stop @o: bounded flush, writer ended, the rest dropped.  Returns the
 * bytes dropped that no console has counted yet.  Frees @o if @free_it; a
 * BLOCKING writer stuck in write() is left behind, detached, and then frees
 * @o itself if (ever) the write returns (with !@free_it nobody frees it). */
static uint64_t out_stop(struct console_out *o, bool free_it)
{
	pthread_mutex_lock(&live_lock);
	for (struct console_out **pp = &live_outs; *pp; pp = &(*pp)->next)
		if (*pp == o) {
			*pp = o->next;
			break;
		}
	pthread_mutex_unlock(&live_lock);

	uint64_t deadline = now_ns() + CONSOLE_STOP_FLUSH_MS * NS_PER_MS;
	uint64_t unreported;
	pthread_mutex_lock(&o->lock);
	bool has_thread = o->has_thread;
	pthread_t thread = o->thread;
	if (o->kind == OUT_BLOCKING) {
		/* The writer drains the ring; wait for it, but not for long. */
		struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000ULL),
				      .tv_nsec = (long)(deadline % 1000000000ULL)};
		while ((o->len || o->writing) && !o->broken &&
		       pthread_cond_timedwait(&o->cond, &o->lock, &ts) != ETIMEDOUT)
			;
		o->stopping = true;
		ring_drop(o);
		if (o->writing) {
			/* Stuck in write(): whoever reads may never come. */
			o->orphaned = free_it;
			o->has_thread = false;
			unreported = o->dropped - o->reported;
			o->reported = o->dropped;
			pthread_mutex_unlock(&o->lock);
			pthread_detach(thread); /* @o may be gone already */
			return unreported;
		}
		pthread_cond_broadcast(&o->cond);
		pthread_mutex_unlock(&o->lock);
		if (has_thread)
			pthread_join(thread, NULL);
		pthread_mutex_lock(&o->lock);
	} else if (o->kind != OUT_DIRECT) {
		o->stopping = true;
		pthread_mutex_unlock(&o->lock);
		if (has_thread) {
			out_wake(o);
			pthread_join(thread, NULL);
		}
		pthread_mutex_lock(&o->lock);
		/* The writer is gone: flush here, waiting for room until the
		 * deadline at most. */
		for (;;) {
			out_flush_nb(o);
			uint64_t left = ms_left(deadline);
			if (!o->len || o->fd < 0 || o->broken || !left)
				break;
			struct pollfd pf = {.fd = o->fd, .events = POLLOUT};
			pthread_mutex_unlock(&o->lock);
			poll(&pf, 1, (int)left);
			pthread_mutex_lock(&o->lock);
		}
		ring_drop(o);
	}
	o->stopping = true;
	o->has_thread = false;
	unreported = o->dropped - o->reported;
	o->reported = o->dropped;
	pthread_mutex_unlock(&o->lock);
	if (free_it)
		out_free(o);
	return unreported;
}

/* exit() without console_stop(): output written just before the end still
 * gets its chance, the drops get reported.  The outputs are not freed (a
 * vCPU thread of a process that exits from elsewhere may still use one). */
static void out_atexit(void)
{
	for (;;) {
		pthread_mutex_lock(&live_lock);
		struct console_out *o = live_outs;
		pthread_mutex_unlock(&live_lock);
		if (!o)
			break;
		uint64_t lost = out_stop(o, false);
		if (lost)
			log_warn("%llu bytes of console output were dropped", (unsigned long long)lost);
	}
}

/* Install @o as the output of @c, stopping the previous one. */
static void console_install(struct console *c, struct console_out *o)
{
	console_stop(c);
	c->out = o;
}

int console_set_output_fd(struct console *c, int fd, unsigned flags)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	enum out_kind kind;
	int nfd = -1;
	if (S_ISREG(st.st_mode)) {
		kind = OUT_DIRECT;
	} else if (S_ISSOCK(st.st_mode)) {
		kind = OUT_SOCKET;
	} else {
		kind = OUT_BLOCKING;
		if (!(flags & CONSOLE_OUT_SHARED)) {
			/* A description of our own: its O_NONBLOCK concerns
			 * nobody else (a pipe, FIFO or terminal shared with the
			 * shell keeps its flags). */
			char path[64];
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			nfd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
			if (nfd >= 0)
				kind = OUT_NONBLOCK;
		}
	}
	if (nfd < 0 && (nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
		return -errno;
	int err;
	struct console_out *o = out_new(kind, nfd, NULL, &err);
	if (!o)
		return -err;
	console_install(c, o);
	return 0;
}

int console_set_output_path(struct console *c, const char *path, char *err, size_t errlen)
{
	/* O_NONBLOCK: opening a FIFO must not wait for a reader. */
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0600);
	struct stat st;
	int e = 0;
	if (fd < 0) {
		e = errno;
		if (e == ENXIO && stat(path, &st) == 0 && S_ISFIFO(st.st_mode))
			e = 0; /* a FIFO nobody reads yet */
	} else if (fstat(fd, &st) < 0) {
		e = errno;
		close(fd);
	}
	if (e) {
		snprintf(err, errlen, "serial output %s: %s", path, strerror(e));
		return -e;
	}
	enum out_kind kind = S_ISREG(st.st_mode) ? OUT_DIRECT : OUT_NONBLOCK;
	struct console_out *o = out_new(kind, fd, S_ISFIFO(st.st_mode) ? path : NULL, &e);
	if (!o) {
		snprintf(err, errlen, "serial output %s: %s", path, strerror(e));
		return -e;
	}
	console_install(c, o);
	return 0;
}

void console_stop(struct console *c)
{
	struct console_out *o = c->out;
	if (!o)
		return;
	c->out = NULL;
	__atomic_fetch_add(&c->out_dropped, out_stop(o, true), __ATOMIC_RELAXED);
}

int console_init(struct console *c, int in_fd, int out_fd)
{
	memset(c, 0, sizeof(*c));
	c->in_fd = in_fd;
	c->out_fd = out_fd;
	int rc = 0;
	if (isatty(in_fd))
		rc = console_raw(c, in_fd);
	int r = console_set_output_fd(c, out_fd, 0);
	if (r) {
		/* Last resort: the old direct writes (which may block). */
		int fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
		int e;
		if (fd >= 0)
			c->out = out_new(OUT_DIRECT, fd, NULL, &e);
		if (!rc)
			rc = r;
	}
	return rc;
}

void console_write(struct console *c, const uint8_t *buf, size_t len)
{
	struct console_out *o = c->out;
	if (!o) {
		__atomic_fetch_add(&c->out_dropped, len, __ATOMIC_RELAXED);
		return;
	}
	size_t done = 0;
	pthread_mutex_lock(&o->lock);
	if (o->stopping || o->broken)
		goto out;
	if (o->fd < 0) {
		out_fifo_want(o);
		goto out;
	}
	switch (o->kind) {
	case OUT_DIRECT:
		while (done < len) {
			ssize_t w = write(o->fd, buf + done, len - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				if (w < 0)
					out_fail(o, errno);
				break;
			}
			done += (size_t)w;
		}
		break;
	case OUT_NONBLOCK:
	case OUT_SOCKET: {
		/* Straight out (after what waits in the ring: order) when no
		 * write left in the last CONSOLE_GATHER_MS, at the end of a
		 * line, or when the ring would fill past half (never a drop
		 * the descriptor could have taken); else into the ring, for
		 * the writer to send with what follows. */
		uint64_t now = now_ns();
		if (now >= o->gather_until || memchr(buf, '\n', len) ||
		    o->len + len > CONSOLE_OUT_BUF_SIZE / 2) {
			out_flush_nb(o);
			if (o->broken || o->fd < 0)
				goto out; /* (out_fail dropped the ring) */
			while (!o->len && done < len) {
				ssize_t w = out_write_nb(o, buf + done, len - done);
				if (w < 0) {
					out_fail(o, (int)-w);
					goto out;
				}
				if (w == 0)
					break;
				done += (size_t)w;
			}
			/* (also after a try the descriptor refused: the
			 * writer waits for it, the next byte need not try) */
			o->gather_until = now + CONSOLE_GATHER_MS * NS_PER_MS;
		}
		if (done < len) {
			done += ring_put(o, buf + done, len - done);
			if (o->writer_idle && o->len) {
				o->writer_idle = false;
				out_wake(o);
			} else if (o->gathering && o->len >= CONSOLE_OUT_BUF_SIZE / 2) {
				out_wake(o);
			}
		}
		break;
	}
	case OUT_BLOCKING: {
		bool nl = memchr(buf, '\n', len) != NULL;
		done = ring_put(o, buf, len);
		if (nl && done)
			o->nl_pending = true;
		if (o->writer_idle && o->len) {
			o->writer_idle = false;
			pthread_cond_broadcast(&o->cond);
		} else if (o->gathering &&
			   (nl || o->len >= CONSOLE_OUT_BUF_SIZE / 2 || now_ns() >= o->gather_until)) {
			/* the end of a line, or time is up (output that keeps
			 * coming leaves on time even if the writer's timer is
			 * late) */
			o->gathering = false;
			pthread_cond_broadcast(&o->cond);
		}
		break;
	}
	}
out:
	/* this call's drops and the writer's since the last call */
	o->dropped += len - done;
	__atomic_fetch_add(&c->out_dropped, o->dropped - o->reported, __ATOMIC_RELAXED);
	o->reported = o->dropped;
	pthread_mutex_unlock(&o->lock);
}
