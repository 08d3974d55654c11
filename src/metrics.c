/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - Firecracker's metrics lines; see metrics.h.
 */
#include "metrics.h"
#include "util/str.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>


static uint64_t realtime_ms(void *ctx)
{
	(void)ctx;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the line buffer ---------------------------------------------------------- */

static void put(struct metrics_line *l, const char *s, size_t n)
{
	if (l->error)
		return;
	if (n > METRICS_LINE_MAX - l->len) {
		l->error = -EMSGSIZE;
		return;
	}
	if (l->len + n > l->cap) {
		size_t cap = l->cap ? l->cap : 4096;
		while (cap < l->len + n)
			cap *= 2;
		if (cap > METRICS_LINE_MAX)
			cap = METRICS_LINE_MAX;
		char *b = realloc(l->buf, cap);
		if (!b) {
			l->error = -ENOMEM;
			return;
		}
		l->buf = b;
		l->cap = cap;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void puts_(struct metrics_line *l, const char *s)
{
	put(l, s, strlen(s));
}

static void put_u64(struct metrics_line *l, uint64_t v)
{
	char b[24];
	int n = snprintf(b, sizeof(b), "%" PRIu64, v);
	put(l, b, (size_t)n);
}

/* A JSON string (RFC 8259 §7): quote, backslash and control characters
 * escaped; other bytes as they are. */
static void put_str(struct metrics_line *l, const char *s)
{
	put(l, "\"", 1);
	const char *run = s;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(l, run, (size_t)(s - run));
		char esc[8];
		if (c == '"' || c == '\\')
			snprintf(esc, sizeof(esc), "\\%c", c);
		else if (c == '\n')
			snprintf(esc, sizeof(esc), "\\n");
		else if (c == '\t')
			snprintf(esc, sizeof(esc), "\\t");
		else
			snprintf(esc, sizeof(esc), "\\u%04x", c);
		puts_(l, esc);
		run = s + 1;
	}
	put(l, run, (size_t)(s - run));
	put(l, "\"", 1);
}

/* "key": at the current depth, with the comma before it if needed. */
static void put_key(struct metrics_line *l, const char *key)
{
	if (l->need_comma[l->depth])
		put(l, ",", 1);
	l->need_comma[l->depth] = true;
	put_str(l, key);
	put(l, ":", 1);
}

/* The counter path of @key in the current group: "group.sub.key" in
 * @out.  false if it does not fit (the line fails). */
static bool key_path(struct metrics_line *l, const char *key, char *out, size_t outlen)
{
	size_t plen = l->path_len[l->depth];
	size_t klen = strlen(key);
	if (plen + 1 + klen + 1 > outlen) {
		if (!l->error)
			l->error = -EMSGSIZE;
		return false;
	}
	memcpy(out, l->path, plen);
	size_t n = plen;
	if (plen)
		out[n++] = '.';
	memcpy(out + n, key, klen + 1);
	return true;
}

/* ---- builder API ------------------------------------------------------------- */

void metrics_group_begin(struct metrics_line *l, const char *name)
{
	if (l->depth >= METRICS_DEPTH_MAX) {
		if (!l->error)
			l->error = -EMSGSIZE;
		return;
	}
	put_key(l, name);
	put(l, "{", 1);
	size_t plen = l->path_len[l->depth];
	size_t nlen = strlen(name);
	if (plen + 1 + nlen + 1 > sizeof(l->path)) {
		if (!l->error)
			l->error = -EMSGSIZE;
		return;
	}
	if (plen)
		l->path[plen++] = '.';
	memcpy(l->path + plen, name, nlen);
	plen += nlen;
	l->path[plen] = 0;
	l->depth++;
	l->path_len[l->depth] = plen;
	l->need_comma[l->depth] = false;
}

void metrics_group_end(struct metrics_line *l)
{
	if (l->depth == 0)
		return;
	put(l, "}", 1);
	l->depth--;
	l->path[l->path_len[l->depth]] = 0;
}

void metrics_add_gauge(struct metrics_line *l, const char *key, uint64_t value)
{
	put_key(l, key);
	put_u64(l, value);
}

/* The counter record of @path, made if new.  Most lines name the same
 * counters in the same order: look where the previous one was found first. */
static struct metrics_counter *counter_find(struct metrics *m, const char *path)
{
	if (m->cursor < m->nctr && !strcmp(m->ctr[m->cursor].path, path))
		return &m->ctr[m->cursor++];
	for (size_t i = 0; i < m->nctr; i++) {
		if (!strcmp(m->ctr[i].path, path)) {
			m->cursor = i + 1;
			return &m->ctr[i];
		}
	}
	if (m->nctr == m->ctr_cap) {
		size_t cap = m->ctr_cap ? m->ctr_cap * 2 : 64;
		struct metrics_counter *c = realloc(m->ctr, cap * sizeof(*c));
		if (!c)
			return NULL;
		m->ctr = c;
		m->ctr_cap = cap;
	}
	char *p = strdup(path);
	if (!p)
		return NULL;
	m->ctr[m->nctr] = (struct metrics_counter){.path = p};
	m->cursor = m->nctr + 1;
	return &m->ctr[m->nctr++];
}

void metrics_add_counter(struct metrics_line *l, const char *key, uint64_t total)
{
	char path[METRICS_PATH_MAX];
	if (!key_path(l, key, path, sizeof(path)))
		return;
	struct metrics_counter *c = counter_find(l->m, path);
	if (!c) {
		if (!l->error)
			l->error = -ENOMEM;
		return;
	}
	/* A total that went backwards restarted from zero. */
	uint64_t delta = total >= c->prev ? total - c->prev : total;
	c->pending = total;
	c->in_line = true;
	metrics_add_gauge(l, key, delta);
}

/* ---- flushing ------------------------------------------------------------------ */

static void line_start(struct metrics *m)
{
	struct metrics_line *l = &m->line;
	l->m = m;
	l->len = 0;
	l->error = 0;
	l->depth = 0;
	l->path[0] = 0;
	l->path_len[0] = 0;
	l->need_comma[0] = false;
	m->cursor = 0;
}

/* The line was written: counters advance.  Or not: they stay. */
static void counters_end(struct metrics *m, bool written)
{
	for (size_t i = 0; i < m->nctr; i++) {
		struct metrics_counter *c = &m->ctr[i];
		if (c->in_line && written)
			c->prev = c->pending;
		c->in_line = false;
	}
}

int metrics_flush(struct metrics *m)
{
	if (!m->ready)
		return -ENODEV;
	pthread_mutex_lock(&m->lock);
	struct metrics_line *l = &m->line;
	line_start(m);
	put(l, "{", 1);
	put_key(l, "utc_timestamp_ms");
	put_u64(l, m->clock(m->clock_ctx));
	if (m->id) {
		put_key(l, "id");
		put_str(l, m->id);
	}
	if (m->nprops) {
		put_key(l, "properties");
		put(l, "{", 1);
		for (size_t i = 0; i < m->nprops; i++) {
			if (i)
				put(l, ",", 1);
			put_str(l, m->props[i].key);
			put(l, ":", 1);
			put_str(l, m->props[i].value);
		}
		put(l, "}", 1);
	}
	if (m->collect)
		m->collect(l, m->ctx);
	while (l->depth > 0)
		metrics_group_end(l);
	metrics_group_begin(l, "logger");
	metrics_add_counter(l, "missed_metrics_count", atomic_load(&m->missed));
	metrics_add_counter(l, "metrics_fails", atomic_load(&m->fails));
	metrics_add_counter(l, "missed_log_count", log_dropped_lines());
	metrics_add_counter(l, "log_fails", log_write_errors());
	metrics_group_end(l);
	put(l, "}\n", 2);

	int r = l->error ? l->error : line_sink_write(&m->sink, l->buf, l->len);
	counters_end(m, r == 0);
	if (r) {
		atomic_fetch_add(&m->missed, 1);
		if (r != -EAGAIN)
			atomic_fetch_add(&m->fails, 1);
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

uint64_t metrics_dropped_lines(const struct metrics *m)
{
	return atomic_load(&m->missed);
}

uint64_t metrics_failures(const struct metrics *m)
{
	return atomic_load(&m->fails);
}

static void on_timer(struct loop *lp, int fd, uint32_t events, void *ctx)
{
	uint64_t expirations;
	ssize_t r = read(fd, &expirations, sizeof(expirations));
	(void)r;
	metrics_flush(ctx);
}

/* ---- set-up ---------------------------------------------------------------------- */

static void free_state(struct metrics *m)
{
	free(m->id);
	for (size_t i = 0; i < m->nprops; i++) {
		free((char *)m->props[i].key);
		free((char *)m->props[i].value);
	}
	free(m->props);
	for (size_t i = 0; i < m->nctr; i++)
		free(m->ctr[i].path);
	free(m->ctr);
	free(m->line.buf);
}

int metrics_init(struct metrics *m, const struct metrics_options *o, char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	m->timer_fd = -1;
	m->sink.fd = -1;
	if (!o || !o->path || !o->path[0]) {
		err_set(err, errlen, 0, "no metrics path");
		return -EINVAL;
	}
	if (o->emit_id && (!o->instance_id || !o->instance_id[0])) {
		err_set(err, errlen, 0, "emit_id needs an instance id");
		return -EINVAL;
	}
	for (size_t i = 0; i < o->nproperties; i++) {
		if (!o->properties || !o->properties[i].key || !o->properties[i].value) {
			err_set(err, errlen, 0, "metrics property %zu has no key or value", i);
			return -EINVAL;
		}
	}
	int r = -ENOMEM;
	if (o->emit_id && !(m->id = strdup(o->instance_id)))
		goto nomem;
	if (o->nproperties) {
		m->props = calloc(o->nproperties, sizeof(*m->props));
		if (!m->props)
			goto nomem;
		for (size_t i = 0; i < o->nproperties; i++) {
			m->props[i].key = strdup(o->properties[i].key);
			m->props[i].value = strdup(o->properties[i].value);
			m->nprops = i + 1;
			if (!m->props[i].key || !m->props[i].value)
				goto nomem;
		}
	}
	m->collect = o->collect;
	m->ctx = o->ctx;
	m->clock = o->clock ? o->clock : realtime_ms;
	m->clock_ctx = o->clock_ctx;

	r = line_sink_open_path(&m->sink, o->path, err, errlen);
	if (r)
		goto fail;
	if (o->loop) {
		uint32_t ms = o->interval_ms ? o->interval_ms : METRICS_FLUSH_INTERVAL_MS;
		m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (m->timer_fd < 0) {
			r = -errno;
			err_set(err, errlen, 0, "metrics timer: %s", strerror(-r));
			goto fail;
		}
		struct timespec every = {.tv_sec = ms / 1000,
					 .tv_nsec = (long)(ms % 1000) * 1000000};
		struct itimerspec its = {.it_interval = every, .it_value = every};
		if (timerfd_settime(m->timer_fd, 0, &its, NULL) < 0) {
			r = -errno;
			err_set(err, errlen, 0, "metrics timer: %s", strerror(-r));
			goto fail;
		}
		r = loop_add(o->loop, m->timer_fd, EPOLLIN, on_timer, m);
		if (r) {
			err_set(err, errlen, 0, "metrics timer: cannot watch it: %s", strerror(-r));
			goto fail;
		}
		m->loop = o->loop;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->ready = true;
	return 0;

nomem:
	err_set(err, errlen, 0, "out of memory");
fail:
	if (m->timer_fd >= 0)
		close(m->timer_fd);
	line_sink_close(&m->sink);
	free_state(m);
	memset(m, 0, sizeof(*m));
	m->timer_fd = -1;
	m->sink.fd = -1;
	return r;
}

void metrics_destroy(struct metrics *m)
{
	if (!m->ready)
		return;
	if (m->loop)
		loop_del(m->loop, m->timer_fd);
	if (m->timer_fd >= 0)
		close(m->timer_fd);
	line_sink_close(&m->sink);
	free_state(m);
	pthread_mutex_destroy(&m->lock);
	memset(m, 0, sizeof(*m));
	m->timer_fd = -1;
	m->sink.fd = -1;
}
