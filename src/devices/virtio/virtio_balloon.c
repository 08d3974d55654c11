/* SPDX-License-Identifier: MIT */
/*
 * virtio_balloon.c - traditional memory balloon; see virtio_balloon.h.
 */
#include "virtio_balloon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../../event/loop.h"
#include "../../util/bitmap.h"
#include "../../util/bytes.h"
#include "../../util/str.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#define F(bit) (1ull << (bit))
#define PAGE VIRTIO_BALLOON_PAGE_SIZE
/* PFNs read from guest memory per virtq_chain_read */
#define PFN_CHUNK 256u

_Static_assert(VIRTIO_BALLOON_NUM_QUEUES <= VIRTIO_MAX_QUEUES, "balloon queues");
_Static_assert(VIRTIO_BALLOON_S_NR <= 32, "stats valid mask");

enum role { ROLE_NONE, ROLE_INFLATE, ROLE_DEFLATE, ROLE_STATS, ROLE_REPORT };

static struct virtio_balloon *to_balloon(struct virtio_dev *d)
{
	return container_of(d, struct virtio_balloon, vdev);
}

/* ---- device ops ---- */

static uint64_t balloon_features(struct virtio_dev *d)
{
	struct virtio_balloon *b = to_balloon(d);
	uint64_t f = F(VIRTIO_BALLOON_F_STATS_VQ) | F(VIRTIO_BALLOON_F_PAGE_REPORTING);
	if (b->deflate_on_oom)
		f |= F(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
	return f;
}

static void balloon_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct virtio_balloon *b = to_balloon(d);
	uint8_t *out = data;
	for (uint32_t i = 0; i < len; i++) {
		uint64_t o = (uint64_t)off + i;
		out[i] = o < VIRTIO_BALLOON_CONFIG_SIZE ? b->config[o] : 0;
	}
}

static void balloon_config_write(struct virtio_dev *d, uint32_t off, const void *data,
				 uint32_t len)
{
	/* §5.5.4: only `actual` belongs to the driver; every byte of a write
	 * that falls on it is applied (modern drivers write it whole, a
	 * byte-wise writer converges on the last byte), the rest ignored. */
	struct virtio_balloon *b = to_balloon(d);
	const uint8_t *in = data;
	for (uint32_t i = 0; i < len; i++) {
		uint64_t o = (uint64_t)off + i;
		if (o >= VIRTIO_BALLOON_CFG_ACTUAL && o < VIRTIO_BALLOON_CFG_ACTUAL + 4)
			b->config[o] = in[i];
	}
}

/* The queue roles for negotiated features @f (header): *q_stats and
 * *q_report, -1 for none.  @active: bit q set if queue q is active. */
static void queue_roles(uint64_t f, uint32_t active, int *q_stats, int *q_report)
{
	int next = VIRTIO_BALLOON_Q_DEFLATE + 1;
	*q_stats = *q_report = -1;
	if (f & F(VIRTIO_BALLOON_F_STATS_VQ))
		*q_stats = next++;
	if (f & F(VIRTIO_BALLOON_F_FREE_PAGE_HINT))
		next++; /* never offered, so never negotiated; keeps the numbering honest */
	if (f & F(VIRTIO_BALLOON_F_PAGE_REPORTING)) {
		int q = next;
		if (!(active & (1u << q)) && (active & (1u << VIRTIO_BALLOON_Q_SPEC_REPORTING)))
			q = VIRTIO_BALLOON_Q_SPEC_REPORTING;
		*q_report = q;
	}
}

static uint32_t active_queues(const struct virtio_dev *d)
{
	uint32_t m = 0;
	for (uint16_t q = 0; q < d->num_queues; q++)
		if (d->vqs[q].active)
			m |= 1u << q;
	return m;
}

/* DRIVER_OK (or a restored device's restart): assign queue roles from the
 * negotiated features.  Nothing else: the held statistics buffer is
 * either none (fresh, or reset) or a restored one. */
static int balloon_activate(struct virtio_dev *d)
{
	struct virtio_balloon *b = to_balloon(d);
	queue_roles(d->driver_features, active_queues(d), &b->q_stats, &b->q_report);
	/* Buffers the driver queued before DRIVER_OK (Linux's first stats
	 * buffer) are found by the core's replay of every queue (virtio.h). */
	return 0;
}

static int balloon_reset(struct virtio_dev *d)
{
	struct virtio_balloon *b = to_balloon(d);
	/* Nothing is asynchronous: forget the balloon and the stats buffer
	 * (virtq_reset drops the in-flight head right after). */
	if (b->inflated)
		memset(b->bitmap, 0, (size_t)((b->guest_pages + 7) / 8));
	b->inflated = 0;
	put_le32(b->config + VIRTIO_BALLOON_CFG_ACTUAL, 0);
	b->q_stats = b->q_report = -1;
	virtio_deferred_cancel(&b->deferred);
	b->stats_held = false;
	memset(&b->stats, 0, sizeof(b->stats));
	return 0;
}

static enum role queue_role(const struct virtio_balloon *b, uint16_t q)
{
	if (q == VIRTIO_BALLOON_Q_INFLATE)
		return ROLE_INFLATE;
	if (q == VIRTIO_BALLOON_Q_DEFLATE)
		return ROLE_DEFLATE;
	if (b->q_stats >= 0 && q == b->q_stats)
		return ROLE_STATS;
	if (b->q_report >= 0 && q == b->q_report)
		return ROLE_REPORT;
	return ROLE_NONE;
}

/* ---- giving memory back ---- */

/* Discard host [p, p+len) (page-aligned, non-empty).  The range is checked
 * once more against the guest mapping: whatever the caller computed, the
 * host never discards anything but guest RAM (checklist E.35). */
static void discard(struct virtio_balloon *b, uint8_t *p, uint64_t len)
{
	const struct guest_mem *m = b->mem;
	if (!len || p < m->base || (uint64_t)(p - m->base) > m->size ||
	    len > m->size - (uint64_t)(p - m->base) || ((uintptr_t)p | len) % PAGE) {
		b->metrics.discard_errors++;
		log_ratelimited(&b->rl, LOG_ERROR,
				"virtio-balloon: internal error: discard outside guest RAM refused");
		return;
	}
	/* memfd-backed RAM (mem_shared): dropping the mapping's pages would
	 * keep the memfd's; MADV_REMOVE frees them (and they read as zeros) */
	if (b->madvise_fn(p, (size_t)len, m->shared ? MADV_REMOVE : MADV_DONTNEED) < 0) {
		b->metrics.discard_errors++;
		log_ratelimited(&b->rl, LOG_WARN, "virtio-balloon: madvise(%llu bytes): %s",
				(unsigned long long)len, strerror(errno));
	}
	/* the pages read as zeros (or as the memory file) from now on: a
	 * change of guest RAM the dirty log does not see */
	guest_mem_mark(m, p, len);
}

/* A run of host-contiguous pages waiting for one madvise. */
struct run {
	uint8_t *start;
	uint64_t pages;
};

static void run_flush(struct virtio_balloon *b, struct run *r)
{
	if (r->pages)
		discard(b, r->start, r->pages * PAGE);
	r->pages = 0;
}

/* Inflate or deflate the PFN array in the readable part of @c (§5.5.6
 * steps 2-3).  Returns the PFNs looked at (the work done). */
static uint64_t handle_pfns(struct virtio_balloon *b, const struct virtq_chain *c, bool inflate)
{
	uint32_t n = c->read_len / 4; /* trailing bytes are ignored */
	if (n > VIRTIO_BALLOON_MAX_PFNS_PER_REQ) {
		log_ratelimited(&b->rl, LOG_WARN,
				"virtio-balloon: %s request with %u PFNs, only the first %u used",
				inflate ? "inflate" : "deflate", n, VIRTIO_BALLOON_MAX_PFNS_PER_REQ);
		b->metrics.ignored_pfns += n - VIRTIO_BALLOON_MAX_PFNS_PER_REQ;
		n = VIRTIO_BALLOON_MAX_PFNS_PER_REQ;
	}
	struct run run = {0};
	uint32_t pfns[PFN_CHUNK];
	for (uint32_t i = 0; i < n;) {
		uint32_t k = n - i < PFN_CHUNK ? n - i : PFN_CHUNK;
		/* One copy out of guest memory, then only the copy is used. */
		virtq_chain_read(c, i * 4, pfns, k * 4);
		for (uint32_t j = 0; j < k; j++) {
			uint64_t gpa = (uint64_t)get_le32(&pfns[j]) << VIRTIO_BALLOON_PFN_SHIFT;
			uint8_t *p = gpa_to_hva(b->mem, gpa, PAGE);
			uint64_t idx = p ? (uint64_t)(p - b->mem->base) / PAGE : UINT64_MAX;
			/* Ignored: outside RAM, a duplicate inflate, a
			 * deflate of a page not in the balloon. */
			if (idx >= b->guest_pages || bitmap_test(b->bitmap, idx) == inflate) {
				b->metrics.ignored_pfns++;
				continue;
			}
			bitmap_set(b->bitmap, idx, inflate);
			if (!inflate) {
				/* Nothing to do on the host: the page faults
				 * back in, zero-filled, when the guest uses it. */
				b->inflated--;
				b->metrics.deflated_pages++;
				continue;
			}
			b->inflated++;
			b->metrics.inflated_pages++;
			if (run.pages && p == run.start + run.pages * PAGE) {
				run.pages++;
			} else {
				run_flush(b, &run);
				run.start = p;
				run.pages = 1;
			}
		}
		i += k;
	}
	run_flush(b, &run);
	return n;
}

/* Free page reporting (§5.5.6.7): discard the page-aligned interior of
 * every buffer of @c.  Returns the pages of work. */
static uint64_t handle_report(struct virtio_balloon *b, const struct virtq_chain *c)
{
	uint64_t done = 0, errors = b->metrics.discard_errors;
	for (uint16_t i = 0; i < c->nsegs && done < VIRTIO_BALLOON_MAX_REPORT_BYTES; i++) {
		/* virtq_pop checked that the buffer lies in one RAM region. */
		uintptr_t s = (uintptr_t)c->segs[i].hva, e = s + c->segs[i].len;
		uintptr_t as = (s + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
		uintptr_t ae = e & ~(uintptr_t)(PAGE - 1);
		if (as >= ae)
			continue;
		uint64_t len = ae - as;
		if (len > VIRTIO_BALLOON_MAX_REPORT_BYTES - done)
			len = VIRTIO_BALLOON_MAX_REPORT_BYTES - done;
		discard(b, (uint8_t *)as, len);
		done += len;
	}
	b->metrics.free_page_report_count++;
	b->metrics.free_page_report_freed += done;
	b->metrics.free_page_report_fails += b->metrics.discard_errors - errors;
	return done / PAGE;
}

/* Parse the statistics in the readable part of @c (§5.5.6.3). */
static void parse_stats(struct virtio_balloon *b, const struct virtq_chain *c)
{
	uint32_t n = c->read_len / VIRTIO_BALLOON_STAT_SIZE;
	if (n > VIRTIO_BALLOON_MAX_STATS)
		n = VIRTIO_BALLOON_MAX_STATS;
	struct virtio_balloon_stats s = {.updates = b->stats.updates + 1};
	for (uint32_t i = 0; i < n; i++) {
		uint8_t raw[VIRTIO_BALLOON_STAT_SIZE];
		virtq_chain_read(c, i * VIRTIO_BALLOON_STAT_SIZE, raw, sizeof(raw));
		uint16_t tag = get_le16(raw);
		if (tag >= VIRTIO_BALLOON_S_NR)
			continue; /* §5.5.6.3.2: unknown tags are ignored */
		s.val[tag] = get_le64(raw + 2);
		s.valid |= 1u << tag;
	}
	s.updated_ns = now_ns();
	b->stats = s;
	b->metrics.stats_updates_count++;
	if (b->hook)
		b->hook(b->hook_ctx, &b->stats);
}

/* What one request of queue @qi does; returns the pages it handled (for
 * the pass budget).  The device writes nothing into any balloon buffer.
 * vdev.lock held. */
struct balloon_req {
	struct virtio_balloon *b;
	enum role role;
};

static uint64_t balloon_request(void *ctx, const struct virtq_chain *c, uint32_t *ret_head,
				uint32_t *ret_len)
{
	const struct balloon_req *rq = ctx;
	struct virtio_balloon *b = rq->b;
	(void)ret_len; /* 0: nothing written */
	switch (rq->role) {
	case ROLE_INFLATE:
		b->metrics.inflate_count++;
		return handle_pfns(b, c, true);
	case ROLE_DEFLATE:
		b->metrics.deflate_count++;
		return handle_pfns(b, c, false);
	case ROLE_REPORT:
		return handle_report(b, c);
	case ROLE_STATS:
		parse_stats(b, c);
		if (!b->stats_held) {
			b->stats_held = true;
			b->stats_head = c->head;
			*ret_head = VIRTIO_HOLD; /* held until the next request */
		} else {
			/* a second buffer: return the older one */
			*ret_head = b->stats_head;
			b->stats_head = c->head;
		}
		return 0;
	case ROLE_NONE:
		break;
	}
	return 0;
}

static void balloon_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct virtio_balloon *b = to_balloon(d);
	struct balloon_req rq = {b, queue_role(b, q)};
	if (rq.role != ROLE_NONE)
		virtio_dev_drain(d, q, &b->chain, balloon_request, &rq, &b->deferred,
				 VIRTIO_BALLOON_BUDGET_PAGES);
}

/* (Re)start the stats timer (@on) with the current period, a whole period
 * from now, or stop it.  vdev.lock held.  0 / -errno. */
static int timer_arm(struct virtio_balloon *b, bool on)
{
	if (b->timer_fd < 0)
		return 0;
	time_t s = on ? (time_t)b->stats_period_s : 0;
	struct itimerspec its = {.it_interval = {.tv_sec = s}, .it_value = {.tv_sec = s}};
	return timerfd_settime(b->timer_fd, 0, &its, NULL) < 0 ? -errno : 0;
}

/* The gate is closed, so no request is handled; stop the stats timer (its
 * callback also does nothing while paused, for an expiry fetched before). */
static void balloon_quiesce(struct virtio_dev *d)
{
	struct virtio_balloon *b = to_balloon(d);
	pthread_mutex_lock(&d->lock);
	int r = timer_arm(b, false);
	if (r < 0)
		log_warn("virtio-balloon: cannot stop the statistics timer: %s", strerror(-r));
	pthread_mutex_unlock(&d->lock);
}

/* A full period from now to the next statistics request; the queues
 * notified meanwhile are the core's (virtio_dev_resume). */
static void balloon_unquiesce(struct virtio_dev *d)
{
	struct virtio_balloon *b = to_balloon(d);
	pthread_mutex_lock(&d->lock);
	int r = timer_arm(b, true);
	if (r < 0)
		log_warn("virtio-balloon: cannot restart the statistics timer: %s", strerror(-r));
	pthread_mutex_unlock(&d->lock);
}

static const struct virtio_dev_ops balloon_ops = {
	.features = balloon_features,
	.config_read = balloon_config_read,
	.config_write = balloon_config_write,
	.activate = balloon_activate,
	.reset = balloon_reset,
	.queue_notify = balloon_queue_notify,
	.quiesce = balloon_quiesce,
	.unquiesce = balloon_unquiesce,
};

/* ---- public ---- */

int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t bytes)
{
	if (bytes % PAGE || bytes > b->mem->size || bytes / PAGE > UINT32_MAX)
		return -EINVAL;
	struct virtio_dev *d = &b->vdev;
	uint32_t pages = (uint32_t)(bytes / PAGE);
	pthread_mutex_lock(&d->lock);
	if (get_le32(b->config + VIRTIO_BALLOON_CFG_NUM_PAGES) != pages) {
		put_le32(b->config + VIRTIO_BALLOON_CFG_NUM_PAGES, pages);
		virtio_dev_config_changed(d); /* §2.5 */
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* virtio_balloon_request_stats with vdev.lock held. */
static int request_stats_locked(struct virtio_balloon *b)
{
	struct virtio_dev *d = &b->vdev;
	int r;
	if (d->paused) {
		r = -EBUSY; /* the rings are off limits until resume */
	} else if (!virtio_dev_is_live(d)) {
		r = -ENODEV;
	} else if (b->q_stats < 0) {
		r = -EOPNOTSUPP;
	} else if (!b->stats_held) {
		r = -EAGAIN;
	} else {
		uint16_t q = (uint16_t)b->q_stats;
		b->stats_held = false;
		/* §5.5.6.3 step 1: using the buffer asks for a refresh. */
		if (virtq_push(&d->vqs[q], b->stats_head, 0) < 0) {
			virtio_dev_mark_broken(d, "push of a head not in flight");
			r = -EIO;
		} else {
			virtio_dev_signal_used(d, q);
			r = 0;
		}
	}
	return r;
}

int virtio_balloon_request_stats(struct virtio_balloon *b)
{
	pthread_mutex_lock(&b->vdev.lock);
	int r = request_stats_locked(b);
	pthread_mutex_unlock(&b->vdev.lock);
	return r;
}

void virtio_balloon_stats_tick(struct virtio_balloon *b)
{
	if (b->timer_fd >= 0) {
		uint64_t expirations;
		(void)!read(b->timer_fd, &expirations, sizeof(expirations));
	}
	pthread_mutex_lock(&b->vdev.lock);
	/* -EBUSY (paused: an expiry fetched before the pause), -ENODEV (not
	 * up), -EOPNOTSUPP: nothing to ask.  -EAGAIN (the driver has not
	 * given the last buffer back) or -EIO: this refresh failed. */
	int r = request_stats_locked(b);
	if (r == -EAGAIN || r == -EIO)
		b->metrics.stats_update_fails++;
	pthread_mutex_unlock(&b->vdev.lock);
}

int virtio_balloon_set_stats_period(struct virtio_balloon *b, uint32_t seconds)
{
	struct virtio_dev *d = &b->vdev;
	int r = 0;
	pthread_mutex_lock(&d->lock);
	if ((b->stats_period_s == 0) != (seconds == 0)) {
		r = -EINVAL; /* statistics cannot be turned on or off after creation */
	} else if (b->stats_period_s != seconds) {
		unsigned old = b->stats_period_s;
		b->stats_period_s = seconds;
		r = timer_arm(b, !d->paused);
		if (r < 0)
			b->stats_period_s = old;
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

void virtio_balloon_get_metrics(struct virtio_balloon *b, struct virtio_balloon_metrics *out)
{
	pthread_mutex_lock(&b->vdev.lock);
	*out = b->metrics;
	pthread_mutex_unlock(&b->vdev.lock);
}

static void on_stats_timer(struct loop *l, int fd, uint32_t events, void *ctx)
{
	virtio_balloon_stats_tick(ctx);
}

int virtio_balloon_get_stats(struct virtio_balloon *b, struct virtio_balloon_stats *out)
{
	pthread_mutex_lock(&b->vdev.lock);
	*out = b->stats;
	pthread_mutex_unlock(&b->vdev.lock);
	if (out->updates == 0) {
		memset(out, 0, sizeof(*out));
		return -ENODATA;
	}
	return 0;
}

void virtio_balloon_set_stats_hook(struct virtio_balloon *b, virtio_balloon_stats_hook fn,
				   void *ctx)
{
	pthread_mutex_lock(&b->vdev.lock);
	b->hook = fn;
	b->hook_ctx = ctx;
	pthread_mutex_unlock(&b->vdev.lock);
}

void virtio_balloon_log_stats(void *ctx, const struct virtio_balloon_stats *s)
{
	static const char *const names[VIRTIO_BALLOON_S_NR] = {
		"swap-in", "swap-out", "major-faults", "minor-faults", "free",
		"total",   "available", "caches",     "hugetlb-allocs", "hugetlb-fails",
	};
	/* byte-valued tags are shown in KiB */
	const uint32_t bytes = (1u << VIRTIO_BALLOON_S_SWAP_IN) | (1u << VIRTIO_BALLOON_S_SWAP_OUT) |
			       (1u << VIRTIO_BALLOON_S_MEMFREE) | (1u << VIRTIO_BALLOON_S_MEMTOT) |
			       (1u << VIRTIO_BALLOON_S_AVAIL) | (1u << VIRTIO_BALLOON_S_CACHES);
	char line[512];
	size_t len = 0;
	line[0] = 0;
	for (unsigned t = 0; t < VIRTIO_BALLOON_S_NR && len < sizeof(line); t++) {
		if (!(s->valid & (1u << t)))
			continue;
		bool kib = bytes & (1u << t);
		int w = snprintf(line + len, sizeof(line) - len, " %s=%llu%s", names[t],
				 (unsigned long long)(kib ? s->val[t] >> 10 : s->val[t]),
				 kib ? "K" : "");
		if (w < 0)
			break;
		len += (size_t)w;
	}
	log_info("virtio-balloon: guest memory:%s", s->valid ? line : " (no statistics)");
}

int virtio_balloon_get_info(struct virtio_balloon *b, struct virtio_balloon_info *out)
{
	struct virtio_dev *d = &b->vdev;
	pthread_mutex_lock(&d->lock);
	bool up = (d->status & VIRTIO_STATUS_FEATURES_OK) != 0;
	*out = (struct virtio_balloon_info){
		.target_pages = get_le32(b->config + VIRTIO_BALLOON_CFG_NUM_PAGES),
		.actual_pages = get_le32(b->config + VIRTIO_BALLOON_CFG_ACTUAL),
		.inflated_pages = b->inflated,
		.guest_pages = b->guest_pages,
		.reported_bytes = b->metrics.free_page_report_freed,
		.ignored_pfns = b->metrics.ignored_pfns,
		.discard_errors = b->metrics.discard_errors,
		.stats_period_s = b->stats_period_s,
		.stats_vq = up && (d->driver_features & F(VIRTIO_BALLOON_F_STATS_VQ)),
		.deflate_on_oom = up && (d->driver_features & F(VIRTIO_BALLOON_F_DEFLATE_ON_OOM)),
		.page_reporting = up && (d->driver_features & F(VIRTIO_BALLOON_F_PAGE_REPORTING)),
	};
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* Every region must be a slice of the one mapping: the bitmap is indexed
 * by the offset in it. */
static bool mem_ok(const struct guest_mem *m)
{
	if (!m || !m->base || !m->size || m->size % PAGE || m->nregions < 1 ||
	    m->nregions > GUEST_MEM_MAX_REGIONS)
		return false;
	for (int i = 0; i < m->nregions; i++) {
		const struct guest_region *r = &m->regions[i];
		if (r->hva < m->base || (uint64_t)(r->hva - m->base) > m->size ||
		    r->size > m->size - (uint64_t)(r->hva - m->base))
			return false;
	}
	return true;
}

static void close_fds(struct virtio_balloon *b, struct loop *loop)
{
	if (b->timer_fd >= 0) {
		if (loop)
			loop_del(loop, b->timer_fd);
		close(b->timer_fd);
		b->timer_fd = -1;
	}
	virtio_deferred_fini(&b->deferred);
}

/* The budget's eventfd (with a loop) and the stats timer. */
static int setup_fds(struct virtio_balloon *b, struct loop *loop)
{
	int r = virtio_deferred_init(&b->deferred, &b->vdev);
	if (r < 0 || !loop || !b->stats_period_s)
		return r;
	b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (b->timer_fd < 0)
		return -errno;
	r = timer_arm(b, true);
	if (r < 0)
		return r;
	r = loop_add(loop, b->timer_fd, EPOLLIN, on_stats_timer, b);
	if (r < 0) {
		close(b->timer_fd);
		b->timer_fd = -1;
	}
	return r;
}

int virtio_balloon_create(struct virtio_balloon *b, uint64_t target_bytes, bool deflate_on_oom,
			  unsigned stats_period_s, const struct guest_mem *mem, struct loop *loop)
{
	memset(b, 0, sizeof(*b));
	b->timer_fd = -1;
	b->q_stats = b->q_report = -1;
	if (!mem_ok(mem) || target_bytes % PAGE || target_bytes > mem->size)
		return -EINVAL;
	/* Discarding works on host pages; the balloon's are 4 KiB. */
	if (sysconf(_SC_PAGESIZE) != PAGE)
		return -ENOTSUP;
	b->mem = mem;
	b->deflate_on_oom = deflate_on_oom;
	b->stats_period_s = stats_period_s;
	b->madvise_fn = madvise;
	b->guest_pages = mem->size / PAGE;
	b->bitmap = calloc((size_t)((b->guest_pages + 7) / 8), 1);
	if (!b->bitmap)
		return -ENOMEM;
	put_le32(b->config + VIRTIO_BALLOON_CFG_NUM_PAGES, (uint32_t)(target_bytes / PAGE));
	int r = virtio_dev_init(&b->vdev, &balloon_ops, "virtio-balloon", VIRTIO_ID_BALLOON,
				VIRTIO_BALLOON_NUM_QUEUES, VIRTIO_BALLOON_QUEUE_MAX, mem, loop);
	if (r < 0) {
		free(b->bitmap);
		b->bitmap = NULL;
		return r;
	}
	r = setup_fds(b, loop);
	if (r < 0) {
		close_fds(b, loop);
		virtio_dev_destroy(&b->vdev);
		free(b->bitmap);
		b->bitmap = NULL;
		return r;
	}
	return 0;
}

void virtio_balloon_destroy(struct virtio_balloon *b)
{
	if (!b->bitmap)
		return;
	close_fds(b, b->vdev.loop);
	virtio_dev_destroy(&b->vdev);
	free(b->bitmap);
	b->bitmap = NULL;
}

void virtio_balloon_disable_reporting(struct virtio_balloon *b)
{
	pthread_mutex_lock(&b->vdev.lock);
	b->vdev.device_features &= ~F(VIRTIO_BALLOON_F_PAGE_REPORTING);
	pthread_mutex_unlock(&b->vdev.lock);
}

/* ---- snapshot state ------------------------------------------------------ */

static uint64_t bitmap_bytes(uint64_t pages)
{
	return (pages + 7) / 8;
}

int virtio_balloon_state_get(struct virtio_balloon *b, struct virtio_balloon_state *st)
{
	struct virtio_dev *d = &b->vdev;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&d->lock);
	st->num_pages = get_le32(b->config + VIRTIO_BALLOON_CFG_NUM_PAGES);
	st->actual = get_le32(b->config + VIRTIO_BALLOON_CFG_ACTUAL);
	if (b->stats_held && virtio_dev_is_live(d) && b->q_stats >= 0 &&
	    d->vqs[b->q_stats].active) {
		st->stats_held = 1;
		st->stats_head = b->stats_head;
	}
	st->stats_valid = b->stats.valid;
	st->stats_updates = b->stats.updates;
	memcpy(st->stats_val, b->stats.val, sizeof(st->stats_val));
	st->guest_pages = b->guest_pages;
	st->inflated = b->inflated;
	st->bitmap = b->inflated ? b->bitmap : NULL;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void virtio_balloon_state_encode(const struct virtio_balloon_state *st, struct snap_writer *w)
{
	snap_put_u32(w, st->num_pages);
	snap_put_u32(w, st->actual);
	snap_put_u8(w, st->stats_held);
	snap_put_u8(w, 0); /* reserved */
	snap_put_u16(w, st->stats_head);
	snap_put_u32(w, st->stats_valid);
	snap_put_u64(w, st->stats_updates);
	for (unsigned t = 0; t < VIRTIO_BALLOON_S_NR; t++)
		snap_put_u64(w, st->stats_val[t]);
	snap_put_u64(w, st->guest_pages);
	snap_put_u64(w, st->inflated);
	if (st->inflated && st->bitmap)
		snap_put_bytes(w, st->bitmap, bitmap_bytes(st->guest_pages));
}

/* The next @n bytes of @c, in place (NULL, and the cursor overrun, if
 * there are not that many). */
static const uint8_t *cursor_view(struct snap_cursor *c, uint64_t n)
{
	if (c->overrun)
		return NULL;
	if (n > c->len - c->off) {
		c->overrun = true;
		c->bad_off = c->off;
		c->bad_want = n > SIZE_MAX ? SIZE_MAX : (size_t)n;
		return NULL;
	}
	const uint8_t *p = c->p + c->off;
	c->off += (size_t)n;
	return p;
}

int virtio_balloon_state_decode(struct snap_cursor *c, const struct virtio_balloon *live,
				struct virtio_balloon_state *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	st->num_pages = snap_get_u32(c);
	st->actual = snap_get_u32(c);
	st->stats_held = snap_get_u8(c);
	uint8_t reserved = snap_get_u8(c);
	st->stats_head = snap_get_u16(c);
	st->stats_valid = snap_get_u32(c);
	st->stats_updates = snap_get_u64(c);
	for (unsigned t = 0; t < VIRTIO_BALLOON_S_NR; t++)
		st->stats_val[t] = snap_get_u64(c);
	st->guest_pages = snap_get_u64(c);
	st->inflated = snap_get_u64(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "virtio-balloon state truncated");
	if (st->guest_pages != live->guest_pages)
		return err_set(err, errlen, -EINVAL,
			       "virtio-balloon: %llu guest pages saved, this guest has %llu",
			       (unsigned long long)st->guest_pages,
			       (unsigned long long)live->guest_pages);
	if (st->num_pages > live->guest_pages)
		return err_set(err, errlen, -EINVAL,
			       "virtio-balloon: target of %u pages, more than guest RAM",
			       st->num_pages);
	if (st->stats_held > 1 || reserved)
		return err_set(err, errlen, -EINVAL, "virtio-balloon: held flag %u, reserved byte %u",
			       st->stats_held, reserved);
	if (st->stats_head >= live->vdev.queue_max || (!st->stats_held && st->stats_head))
		return err_set(err, errlen, -EINVAL, "virtio-balloon: statistics head %u%s",
			       st->stats_head, st->stats_held ? " out of range" : " without a buffer");
	if (st->stats_valid >> VIRTIO_BALLOON_S_NR || (st->stats_valid && !st->stats_updates))
		return err_set(err, errlen, -EINVAL,
			       "virtio-balloon: statistics tags %#x after %llu updates",
			       st->stats_valid, (unsigned long long)st->stats_updates);
	for (unsigned t = 0; t < VIRTIO_BALLOON_S_NR; t++)
		if (!(st->stats_valid & (1u << t)) && st->stats_val[t])
			return err_set(err, errlen, -EINVAL,
				       "virtio-balloon: a value for statistics tag %u, not supplied",
				       t);
	if (st->inflated > st->guest_pages)
		return err_set(err, errlen, -EINVAL,
			       "virtio-balloon: %llu pages inflated, more than guest RAM",
			       (unsigned long long)st->inflated);
	if (!st->inflated)
		return 0;
	uint64_t nbytes = bitmap_bytes(st->guest_pages);
	st->bitmap = cursor_view(c, nbytes);
	if (!st->bitmap)
		return err_set(err, errlen, -EINVAL, "virtio-balloon state truncated (bitmap)");
	uint64_t set = 0;
	for (uint64_t i = 0; i < nbytes; i++)
		set += (uint64_t)__builtin_popcount(st->bitmap[i]);
	if (st->guest_pages % 8 && st->bitmap[nbytes - 1] >> (st->guest_pages % 8))
		return err_set(err, errlen, -EINVAL,
			       "virtio-balloon: bitmap has pages past the end of guest RAM");
	if (set != st->inflated)
		return err_set(err, errlen, -EINVAL,
			       "virtio-balloon: %llu pages inflated but %llu in the bitmap",
			       (unsigned long long)st->inflated, (unsigned long long)set);
	return 0;
}

int virtio_balloon_state_check(const struct virtio_balloon_state *st,
			       const struct virtio_dev_state *core, char *err, size_t errlen)
{
	bool live = virtio_dev_state_is_live(core);
	uint32_t active = 0;
	for (uint16_t q = 0; q < core->num_queues && q < VIRTIO_MAX_QUEUES; q++)
		if (core->vqs[q].active)
			active |= 1u << q;
	int q_stats, q_report;
	queue_roles(core->driver_features, active, &q_stats, &q_report);
	if (st->stats_held && (!live || q_stats < 0 || !(active & (1u << q_stats))))
		return err_set(err, errlen, -EINVAL,
			       "virtio-balloon: a statistics buffer is held but the statistics "
			       "queue is not running");
	/* a device that is not live holds nothing; its queues' chains in flight
	 * die at the driver's reset (see virtio_blk_state_check) */
	for (uint16_t q = 0; live && q < core->num_queues && q < VIRTIO_MAX_QUEUES; q++) {
		const struct virtq_state *vq = &core->vqs[q];
		bool held = st->stats_held && q == q_stats;
		if (vq->ninflight != held || (held && vq->inflight[0] != st->stats_head))
			return err_set(err, errlen, -EINVAL,
				       "virtio-balloon: %u chains in flight on queue %u, the device "
				       "holds %u",
				       vq->ninflight, q, held);
	}
	return 0;
}

int virtio_balloon_state_put(struct virtio_balloon *b, const struct virtio_balloon_state *st)
{
	struct virtio_dev *d = &b->vdev;
	int rc = 0;
	pthread_mutex_lock(&d->lock);
	put_le32(b->config + VIRTIO_BALLOON_CFG_NUM_PAGES, st->num_pages);
	put_le32(b->config + VIRTIO_BALLOON_CFG_ACTUAL, st->actual);
	memset(&b->stats, 0, sizeof(b->stats));
	b->stats.valid = st->stats_valid;
	b->stats.updates = st->stats_updates;
	memcpy(b->stats.val, st->stats_val, sizeof(b->stats.val));
	/* The roles as activate will assign them (restart), so that the held
	 * buffer can be checked against its queue. */
	queue_roles(d->driver_features, active_queues(d), &b->q_stats, &b->q_report);
	b->stats_held = false;
	if (st->stats_held) {
		const struct virtq *q = b->q_stats >= 0 ? &d->vqs[b->q_stats] : NULL;
		if (!q || !q->active || st->stats_head >= q->size ||
		    !bitmap_test(q->inflight_map, st->stats_head)) {
			rc = -EINVAL;
		} else {
			b->stats_held = true;
			b->stats_head = st->stats_head;
		}
	}
	uint64_t nbytes = bitmap_bytes(b->guest_pages);
	if (st->inflated && st->bitmap && st->guest_pages == b->guest_pages)
		memcpy(b->bitmap, st->bitmap, nbytes);
	else
		memset(b->bitmap, 0, nbytes);
	b->inflated = st->bitmap ? st->inflated : 0;
	pthread_mutex_unlock(&d->lock);
	return rc;
}
