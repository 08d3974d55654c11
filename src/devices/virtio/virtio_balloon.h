/* SPDX-License-Identifier: MIT */
/*
 * virtio_balloon.h - traditional memory balloon (virtio 1.2 §5.5).
 *
 * The host sets a target (config num_pages, 4 KiB pages); the guest driver
 * inflates the balloon by handing over 32-bit page frame numbers (PFN =
 * gpa >> 12, whatever the guest page size, §5.5.6 footnote) on inflateq and
 * takes pages back on deflateq.  The device gives inflated memory back to
 * the host with madvise(MADV_DONTNEED) on the guest RAM mapping: guest RAM
 * is one MAP_PRIVATE|MAP_ANONYMOUS mapping (guest_mem.h), so the pages leave
 * visor's RSS at once and read as zeros when touched again.  Deflating
 * needs no host action: a page faults back in (zero-filled) on access.
 *
 * Features offered (§5.5.3): STATS_VQ always, DEFLATE_ON_OOM when
 * configured, PAGE_REPORTING always.  Not offered: MUST_TELL_HOST (deflate
 * is a no-op on the host, so the guest may reuse pages before telling us),
 * FREE_PAGE_HINT (migration only) and PAGE_POISON (free_page_hint_cmd_id
 * and poison_val read as 0, writes to them are ignored).
 *
 * Virtqueues.  §5.5.2 numbers them inflateq 0, deflateq 1, statsq 2,
 * free_page_vq 3, reporting_vq 4, each "only exists if" its feature is set.
 * Linux (and QEMU) number only the queues that exist: the queues of
 * features that were not negotiated are skipped and the later ones move
 * down (Linux's find_vqs increments the queue index only for queues it
 * uses).  So, with the features this device offers:
 *     inflateq 0, deflateq 1,
 *     statsq 2 if STATS_VQ was negotiated,
 *     reporting_vq = the next index (2 or 3) if PAGE_REPORTING was
 *     negotiated - or 4, the spec's fixed slot, when the driver set up
 *     queue 4 and not that next index.
 * The roles are fixed at DRIVER_OK from the negotiated features and the
 * ready queues; the device offers VIRTIO_BALLOON_NUM_QUEUES (5) queues so
 * that both layouts fit.  Notifications of queues without a role are
 * ignored.
 *
 * Hostile input (../shared/docs/hostile-input-checklist.md A, E.33, E.35):
 *   - every PFN is checked with gpa_to_hva(mem, pfn << 12, 4096): PFNs
 *     outside guest RAM (past the end, in the MMIO hole, 0xffffffff) are
 *     ignored and counted; nothing is ever discarded outside guest RAM
 *     (every madvise range is also re-checked against the mapping);
 *   - a bitmap of ballooned pages (one bit per 4 KiB page of guest RAM,
 *     indexed by the offset in the mapping) ignores duplicate inflates
 *     and deflates of pages not in the balloon, so inflated_pages is the
 *     device's own count, whatever the driver writes into `actual`;
 *   - an inflate/deflate buffer is read as floor(len / 4) PFNs (trailing
 *     bytes ignored), at most VIRTIO_BALLOON_MAX_PFNS_PER_REQ of them
 *     (Linux sends at most 256); a stats buffer as floor(len / 10)
 *     entries, at most VIRTIO_BALLOON_MAX_STATS; a report discards at most
 *     VIRTIO_BALLOON_MAX_REPORT_BYTES.  The rest is ignored: no per-request
 *     allocation, bounded work (E.33);
 *   - one pass over a queue does at most VIRTIO_BALLOON_BUDGET_PAGES pages
 *     of work (with an event loop), then yields and is continued from the
 *     loop (struct virtio_deferred, virtio.h), like virtio-rng;
 *   - ring-level violations (virtq_pop -EIO) break the device; anything
 *     wrong inside a buffer is ignored and the buffer returned (used
 *     length 0: the device writes nothing into any buffer).
 * Pages the driver puts into the balloon that it still uses (its rings,
 * buffers in flight on other devices) are NOT detected: the guest loses
 * their contents (they read as zeros), which it is allowed to do to
 * itself.  The host is safe: the mapping stays in place (DONTNEED never
 * unmaps), rings are re-validated on every access by virtq.c, and I/O the
 * kernel does into a discarded page only lands in a page the guest gave
 * away.
 *
 * Free page reporting (§5.5.6.7): each reporting_vq chain's buffers ARE the
 * reported free memory (Linux adds them as device-writable buffers); each
 * buffer was validated by virtq_pop as lying in one RAM region, and its
 * 4 KiB-aligned interior is discarded; the chain is then returned.  Reports
 * do not touch the balloon bitmap.
 *
 * Statistics (§5.5.6.3): the driver keeps one buffer of 10-byte
 * {le16 tag; le64 val} entries on statsq.  (Linux queues the first one and
 * notifies before DRIVER_OK; the core looks at every queue once after
 * DRIVER_OK, see virtio.h, so it is not missed.)  The device parses it when
 * it arrives (the values become visible through virtio_balloon_get_stats and
 * the hook) and holds it; virtio_balloon_request_stats (called by the
 * stats_period timer on the loop, or by the VMM on demand) returns it to
 * the driver, which refills it and makes it available again.  Unknown tags
 * are ignored (§5.5.6.3.2); a later entry with the same tag wins.  If the
 * driver makes a second buffer available while one is held (it MUST NOT,
 * §5.5.6.3.1), the newer one is parsed and held and the older one returned.
 *
 * Reset: the device forgets the balloon (bitmap cleared, actual = 0: a
 * reset driver owns all of its RAM again; discarded pages simply read as
 * zero), the held stats buffer and the last statistics; the target stays.
 *
 * Limits of the host side: MADV_DONTNEED frees memory only for private
 * anonymous memory.  If guest RAM ever becomes shared or file/memfd backed
 * (vhost-user, snapshots by mapping a file), discarding must switch to
 * MADV_REMOVE / fallocate(PUNCH_HOLE); with mlock'ed guest RAM, DONTNEED
 * fails (counted in discard_errors, the page stays counted as inflated).
 * Requires 4 KiB host pages (x86): -ENOTSUP otherwise.
 *
 * Pause (virtio_dev_pause/resume, virtio.h): the core's gate keeps every
 * queue notification (and the continuation of a pass the budget cut
 * short) for the resume, so no inflate, deflate, statistics or report is
 * handled and no PFN discarded while paused; quiesce stops the statistics
 * timer (an expiry already fetched is ignored: the tick does nothing while
 * paused) and virtio_balloon_request_stats answers -EBUSY.  The held
 * statistics buffer stays held (a snapshot must keep stats_held and
 * stats_head).  unquiesce restarts the timer for a whole period; the core
 * then handles the queues the driver notified meanwhile, once.  A target
 * set while paused updates the config space and raises the configuration
 * interrupt at once; the driver acts on it when the guest runs again.
 *
 * Threads and locking: the device follows virtio.h (everything under
 * vdev.lock; queue work on the event loop thread).  The public functions
 * below take vdev.lock themselves and may be called from any thread except
 * with vdev.lock held (in particular not from the stats hook).  That
 * includes the event-loop thread while the guest runs - the control
 * socket and the API call them from loop handlers: vdev.lock is held by a
 * vCPU only for one register access and by the loop only inside its own
 * handlers (never between them), none of these functions waits for the
 * loop or calls back into its caller, and what they do under the lock is
 * bounded (copying the counters, a config-space store plus the config
 * interrupt through the transport, a timerfd_settime, returning one
 * held buffer).  The lock order is the core's: vdev.lock, then the
 * transport's MSI-X and platform locks.
 */
#ifndef VISOR_DEVICES_VIRTIO_VIRTIO_BALLOON_H
#define VISOR_DEVICES_VIRTIO_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../util/log.h"
#include "virtio.h"

/* Feature bits (§5.5.3) */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ 1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT 3
#define VIRTIO_BALLOON_F_PAGE_POISON 4
#define VIRTIO_BALLOON_F_PAGE_REPORTING 5

/* Config space layout (§5.5.4), little-endian.  num_pages is written by
 * the device only, actual by the driver only; the two others are not
 * offered and read 0.  Reads past the end return zeros. */
#define VIRTIO_BALLOON_CFG_NUM_PAGES 0
#define VIRTIO_BALLOON_CFG_ACTUAL 4
#define VIRTIO_BALLOON_CFG_FREE_PAGE_HINT_CMD_ID 8
#define VIRTIO_BALLOON_CFG_POISON_VAL 12
#define VIRTIO_BALLOON_CONFIG_SIZE 16

/* Memory statistics tags (§5.5.6.4); values are bytes except the fault
 * and hugetlb counts.  Tags >= VIRTIO_BALLOON_S_NR are ignored. */
#define VIRTIO_BALLOON_S_SWAP_IN 0
#define VIRTIO_BALLOON_S_SWAP_OUT 1
#define VIRTIO_BALLOON_S_MAJFLT 2
#define VIRTIO_BALLOON_S_MINFLT 3
#define VIRTIO_BALLOON_S_MEMFREE 4
#define VIRTIO_BALLOON_S_MEMTOT 5
#define VIRTIO_BALLOON_S_AVAIL 6
#define VIRTIO_BALLOON_S_CACHES 7
#define VIRTIO_BALLOON_S_HTLB_PGALLOC 8
#define VIRTIO_BALLOON_S_HTLB_PGFAIL 9
#define VIRTIO_BALLOON_S_NR 10
#define VIRTIO_BALLOON_STAT_SIZE 10 /* packed {le16 tag; le64 val} */

/* The balloon's unit, independent of the guest page size (§5.5.6). */
#define VIRTIO_BALLOON_PFN_SHIFT 12
#define VIRTIO_BALLOON_PAGE_SIZE (1u << VIRTIO_BALLOON_PFN_SHIFT)

/* Queue slots (see the numbering above). */
#define VIRTIO_BALLOON_Q_INFLATE 0
#define VIRTIO_BALLOON_Q_DEFLATE 1
#define VIRTIO_BALLOON_Q_SPEC_REPORTING 4
#define VIRTIO_BALLOON_NUM_QUEUES 5
/* Linux refuses free page reporting on a reporting_vq smaller than 32. */
#define VIRTIO_BALLOON_QUEUE_MAX 128

/* Bounds (E.33). */
#define VIRTIO_BALLOON_MAX_PFNS_PER_REQ 16384u            /* 64 MiB of guest RAM */
#define VIRTIO_BALLOON_MAX_REPORT_BYTES (256ull << 20)     /* per reporting request */
#define VIRTIO_BALLOON_MAX_STATS 64u                       /* entries per stats buffer */
#define VIRTIO_BALLOON_BUDGET_PAGES 65536u                 /* 256 MiB of work per pass */

/* The latest guest memory statistics. */
struct virtio_balloon_stats {
	uint32_t valid;                      /* bit t: val[t] was supplied by the driver */
	uint64_t val[VIRTIO_BALLOON_S_NR];   /* indexed by tag */
	uint64_t updated_ns;                 /* now_ns() when received */
	uint64_t updates;                    /* stats buffers parsed since create/reset */
};

/* Called on the loop thread each time a stats buffer was parsed, with
 * vdev.lock held: must be short (log, copy) and must not call any
 * virtio_balloon_* function. */
typedef void (*virtio_balloon_stats_hook)(void *ctx, const struct virtio_balloon_stats *s);

/* Counters and state for the VMM / control socket. */
struct virtio_balloon_info {
	uint32_t target_pages;    /* config num_pages */
	uint32_t actual_pages;    /* config actual, as written by the driver */
	uint64_t inflated_pages;  /* pages in the balloon by the device's count */
	uint64_t guest_pages;     /* guest RAM / 4 KiB */
	uint64_t reported_bytes;  /* discarded through free page reporting (total) */
	uint64_t ignored_pfns;    /* out of RAM, duplicate, not in balloon, over the cap */
	uint64_t discard_errors;  /* failed madvise calls */
	uint32_t stats_period_s;  /* statistics period, 0: only on request */
	bool stats_vq, deflate_on_oom, page_reporting; /* negotiated */
};

/* Counters (Firecracker's names where they fit), since the device was
 * created (a reset does not clear them). */
struct virtio_balloon_metrics {
	uint64_t inflate_count;          /* inflate requests (buffers) handled */
	uint64_t deflate_count;          /* deflate requests handled */
	uint64_t inflated_pages;         /* 4 KiB pages that entered the balloon */
	uint64_t deflated_pages;         /* 4 KiB pages that left it */
	uint64_t stats_updates_count;    /* statistics buffers parsed */
	uint64_t stats_update_fails;     /* timer refreshes that failed: the driver had not
					  * returned the last buffer yet, or it broke the ring */
	uint64_t free_page_report_count; /* free page reports handled */
	uint64_t free_page_report_freed; /* bytes discarded through them */
	uint64_t free_page_report_fails; /* failed discards within reports */
	uint64_t ignored_pfns;           /* out of RAM, duplicate, not in balloon, over the cap */
	uint64_t discard_errors;         /* failed discards (madvise), reports included */
};

struct virtio_balloon {
	struct virtio_dev vdev; /* hand &vdev to a transport */
	const struct guest_mem *mem;
	bool deflate_on_oom;    /* offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM */
	int timer_fd;           /* stats timerfd on the loop, -1 if none */
	struct virtio_deferred deferred; /* passes cut short by the budget */
	/* How memory is given back: madvise(2) unless a test swaps it (set
	 * before the device runs).  Only ever called on ranges inside guest
	 * RAM, page-aligned, with MADV_DONTNEED. */
	int (*madvise_fn)(void *addr, size_t len, int advice);

	/* under vdev.lock */
	unsigned stats_period_s;
	uint8_t config[VIRTIO_BALLOON_CONFIG_SIZE];
	uint8_t *bitmap;        /* one bit per 4 KiB page of the guest mapping */
	uint64_t guest_pages;
	uint64_t inflated;
	int q_stats, q_report;  /* queue index of the role, -1: none */
	bool stats_held;
	uint16_t stats_head;
	struct virtio_balloon_stats stats;
	virtio_balloon_stats_hook hook;
	void *hook_ctx;
	struct virtq_chain chain; /* scratch for virtq_pop */
	struct ratelimit rl;
	struct virtio_balloon_metrics metrics;
};

/* Build the device.  @target_bytes: initial target (a multiple of 4 KiB,
 * at most guest RAM); @deflate_on_oom: offer DEFLATE_ON_OOM;
 * @stats_period_s: 0 = statistics only on request, else a timerfd on
 * @loop asks the driver for fresh statistics every that many seconds.
 * @loop may be NULL (tests): no timer, no budget.  Returns 0, -EINVAL (bad
 * target or guest memory), -ENOTSUP (host page size not 4 KiB), -ENOMEM,
 * or the error of the eventfd/timerfd set-up. */
int virtio_balloon_create(struct virtio_balloon *b, uint64_t target_bytes, bool deflate_on_oom,
			  unsigned stats_period_s, const struct guest_mem *mem, struct loop *loop);

/* Tear down (after the transport is gone and the vCPUs stopped). */
void virtio_balloon_destroy(struct virtio_balloon *b);

/* Stop offering VIRTIO_BALLOON_F_PAGE_REPORTING (free page reporting).
 * Only before the device is attached to a transport (the driver has not
 * read the features yet).  Useful to measure inflation alone. */
void virtio_balloon_disable_reporting(struct virtio_balloon *b);

/* Change the target while the guest runs: num_pages = @bytes / 4 KiB, and
 * if it changed, bump the config generation and raise the configuration
 * change interrupt (virtio_dev_config_changed: when DRIVER_OK is set; a
 * driver that is not up yet reads num_pages when it starts).  Also while
 * paused.  Thread-safe, loop thread included (see Threads above).
 * Returns 0 or -EINVAL (@bytes not a multiple of 4 KiB, or more than
 * guest RAM). */
int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t bytes);

/* Ask the driver for fresh statistics: return the held stats buffer.
 * The new values arrive asynchronously (watch get_stats' `updates`, or
 * the hook).  Thread-safe, loop thread included.  Returns 0, -EBUSY (the
 * device is paused), -ENODEV (device not running or broken), -EOPNOTSUPP
 * (STATS_VQ not negotiated), -EAGAIN (no buffer held: the driver has not
 * refilled the previous one yet), or -EIO (the held buffer could not be
 * returned; the device is then broken). */
int virtio_balloon_request_stats(struct virtio_balloon *b);

/* What the stats timer does on each expiry (drain @b->timer_fd, then
 * request_stats ignoring "nothing to do"; nothing while paused; -EAGAIN
 * and -EIO count as stats_update_fails).  Exposed for tests. */
void virtio_balloon_stats_tick(struct virtio_balloon *b);

/* Change the statistics period (Firecracker's PATCH /balloon/statistics)
 * to @seconds; the next request comes a whole new period from now.
 * Statistics cannot be switched on or off after creation (Firecracker's
 * rule): a change between 0 and non-zero is refused with -EINVAL.  The
 * same period again changes nothing.  While paused the new period applies
 * from the resume.  Thread-safe, loop thread included.  0, -EINVAL, or
 * -errno from timerfd_settime (the period is then unchanged). */
int virtio_balloon_set_stats_period(struct virtio_balloon *b, uint32_t seconds);

/* Copy the counters into @out (consistent: under vdev.lock).  Thread-safe,
 * loop thread included. */
void virtio_balloon_get_metrics(struct virtio_balloon *b, struct virtio_balloon_metrics *out);

/* Copy the latest statistics.  Returns 0, or -ENODATA if none arrived
 * since creation or the last reset (@out is then zeroed).  Thread-safe,
 * loop thread included. */
int virtio_balloon_get_stats(struct virtio_balloon *b, struct virtio_balloon_stats *out);

/* Install (or with @fn NULL remove) the stats hook.  Thread-safe. */
void virtio_balloon_set_stats_hook(struct virtio_balloon *b, virtio_balloon_stats_hook fn,
				   void *ctx);

/* A ready-made hook: one log_info line with the supplied values. */
void virtio_balloon_log_stats(void *ctx, const struct virtio_balloon_stats *s);

/* Snapshot of the state and counters.  Thread-safe, loop thread
 * included.  Always 0. */
int virtio_balloon_get_info(struct virtio_balloon *b, struct virtio_balloon_info *out);

/*
 * Snapshot state (docs/snapshot-format.md, "virtio devices"): what the
 * device holds beyond the virtio core (virtio_dev_state_*, saved beside
 * it): the config space's target (num_pages, set at run time) and actual
 * (the driver's), the held statistics buffer (its head: the device only
 * ever returns it) and the latest statistics, and the balloon itself (the
 * device's count and its bitmap of inflated pages, so that deflating
 * after a restore is counted as before).  Inflated pages read as zeros in
 * the memory file; nothing is discarded at restore.  Free page reporting
 * holds nothing between requests.  Not saved: the statistics period and
 * the deflate-on-OOM choice (configuration), the time the statistics
 * arrived (a host clock reading), the counters.
 *
 * The bitmap can be large (one bit per 4 KiB of guest RAM: 32 KiB for
 * 1 GiB), so the state does not copy it: @bitmap is borrowed, from the
 * device (virtio_balloon_state_get: valid while the device stays paused)
 * or from the payload (virtio_balloon_state_decode: valid while the
 * snapshot's buffer is).
 *
 *   virtio_balloon_state_get     VM paused, device quiesced (takes vdev.lock); 0.
 *   virtio_balloon_state_encode  u32 num_pages, u32 actual, u8 stats held,
 *                                u8 reserved (0), u16 stats head, u32 valid
 *                                tags, u64 statistics updates, 10 x u64
 *                                values (by tag), u64 guest pages, u64
 *                                inflated pages (120 bytes); then, when
 *                                inflated pages is not 0, the bitmap:
 *                                (guest pages + 7) / 8 bytes, bit i%8 of
 *                                byte i/8 for the page at offset i * 4 KiB
 *                                of the guest RAM mapping.
 *   virtio_balloon_state_decode  against @live, built from the same
 *                                configuration: num_pages at most guest RAM,
 *                                flags 0 or 1, reserved 0, the stats head
 *                                below the queue maximum (0 when none held),
 *                                only known tags, values only for them, no
 *                                statistics without an update, guest pages
 *                                @live's, as many bits set as pages inflated
 *                                and none past the last page.
 *   virtio_balloon_state_check   with the core's state from the same
 *                                snapshot: a held statistics buffer is the
 *                                only head in flight on the statistics queue
 *                                (STATS_VQ negotiated, the queue active, the
 *                                device live); no other queue has one.  A
 *                                device that is not live (broken, FAILED)
 *                                holds nothing, whatever is in flight.
 *   virtio_balloon_state_put     between virtio_dev_state_put and
 *                                virtio_dev_state_restart: config space,
 *                                statistics, the held buffer, the bitmap and
 *                                count.  0 or -EINVAL (the buffer is not in
 *                                flight).
 */
/* its own part never changed (virtio.h) */
#define VIRTIO_BALLOON_STATE_VERSION (VIRTIO_SHARED_STATE_VERSION + 0)

struct virtio_balloon_state {
	uint32_t num_pages;  /* target, 4 KiB pages */
	uint32_t actual;     /* as the driver wrote it */
	uint8_t stats_held;  /* 0 or 1 */
	uint16_t stats_head; /* 0 when none */
	uint32_t stats_valid;
	uint64_t stats_updates;
	uint64_t stats_val[VIRTIO_BALLOON_S_NR];
	uint64_t guest_pages;
	uint64_t inflated;
	const uint8_t *bitmap; /* borrowed, see above; NULL when inflated is 0 */
};

int virtio_balloon_state_get(struct virtio_balloon *b, struct virtio_balloon_state *st);
void virtio_balloon_state_encode(const struct virtio_balloon_state *st, struct snap_writer *w);
int virtio_balloon_state_decode(struct snap_cursor *c, const struct virtio_balloon *live,
				struct virtio_balloon_state *st, char *err, size_t errlen);
int virtio_balloon_state_check(const struct virtio_balloon_state *st,
			       const struct virtio_dev_state *core, char *err, size_t errlen);
int virtio_balloon_state_put(struct virtio_balloon *b, const struct virtio_balloon_state *st);

#endif
