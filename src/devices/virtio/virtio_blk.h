/* SPDX-License-Identifier: MIT */
/*
 * virtio_blk.h - virtio block device (virtio 1.2 §5.2), one request queue.
 *
 * Features offered: SEG_MAX, BLK_SIZE (512), FLUSH, and either RO (read-only
 * disk) or DISCARD + WRITE_ZEROES.  Requests (§5.2.6): IN, OUT, FLUSH,
 * GET_ID, DISCARD, WRITE_ZEROES; any other type gets VIRTIO_BLK_S_UNSUPP.
 *
 * Every request is validated before anything reaches the back end
 * (checklist A, G): a 16-byte readable header, a writable status byte at the
 * very end, the data in the right direction (IN: writable only, OUT:
 * readable only), a length that is a multiple of 512, the sector range
 * inside the disk (overflow-safe), discard/write-zeroes segments (count,
 * size, flags, range).  A malformed request gets VIRTIO_BLK_S_IOERR (a chain
 * without any writable byte is returned with used length 0); only ring-level
 * violations reported by virtq_pop break the device.  A read-only disk
 * answers OUT/DISCARD/WRITE_ZEROES with IOERR and nothing reaches the file.
 * A host error (EIO, ENOSPC, short transfer) fails that request only.
 *
 * FLUSH completes only after the back end's fdatasync has returned, and a
 * failed flush is sticky: every later FLUSH fails too (the page cache may
 * have dropped the dirty data together with the error, so a later
 * successful fdatasync would be a lie; checklist G.43).
 *
 * Asynchronous I/O: requests are handed to the back end on the loop thread
 * (queue_notify) and complete there (the back end's callback takes d->lock,
 * writes the status, pushes the used element, signals).  In flight at most
 * min(queue size, back-end capacity) requests; when that many are out the
 * device stops taking chains from the ring and resumes on a completion.
 *
 * Fairness: one pass over the queue takes at most VIRTIO_BLK_BUDGET chains,
 * then yields to the loop (struct virtio_deferred, virtio.h), which
 * continues it on a later round.  Requests that complete during the pass
 * (GET_ID, unsupported or malformed ones, those the host refuses) would
 * otherwise let a driver that re-posts them as fast as they complete keep
 * the loop thread, with the device lock held, in one pass for ever.
 *
 * Rate limiting (virtio_blk_set_rate_limiter, util/ratelimit.h): every
 * request costs one ops token and, for IN and OUT, its data length in
 * bandwidth tokens.  The device pops a chain, asks the limiter, and if it
 * refuses keeps that chain (held, not yet validated or started) and stops
 * taking chains from the queue; the limiter's timerfd, on the device's
 * loop, fires when the tokens are there, and its handler retries the held
 * chain and continues the pass.  Nothing waits: the device lock is only
 * held for the pass, and other devices and queues are unaffected.
 *
 * Reset (ops->reset, called with d->lock held, possibly on a vCPU thread):
 * with nothing in flight it completes at once; otherwise it returns
 * -EINPROGRESS, the requests still run to completion in the back end (a
 * read may still be filling its guest buffers), but their completions write
 * neither status nor used ring, and the last one calls
 * virtio_dev_reset_done().  So once the reset is done nothing touches guest
 * memory, and the reset never waits while holding d->lock.
 */
#ifndef VISOR_DEVICES_VIRTIO_VIRTIO_BLK_H
#define VISOR_DEVICES_VIRTIO_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../backends/block.h"
#include "../../util/log.h"
#include "../../util/ratelimit.h"
#include "virtio.h"

/* Feature bits (§5.2.3) */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_GEOMETRY 4
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_CONFIG_WCE 11
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types (§5.2.6) */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_GET_LIFETIME 10
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_T_SECURE_ERASE 14

/* Status byte values */
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

/* struct virtio_blk_discard_write_zeroes flags */
#define VIRTIO_BLK_WZ_F_UNMAP 1

#define VIRTIO_BLK_SECTOR 512u
#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_QUEUE_MAX 256
/* Chains one pass over the queue may take before it yields to the loop. */
#define VIRTIO_BLK_BUDGET 256
/* How long quiescing waits for a disk before giving up (generous: a
 * loaded host disk may take seconds for a flush). */
#define VIRTIO_BLK_QUIESCE_TIMEOUT_MS 60000
/* Data segments per request: a chain is at most VIRTQ_MAX_SEGS long and
 * needs one for the header and one for the status. */
#define VIRTIO_BLK_SEG_MAX (VIRTQ_MAX_SEGS - 2)
/* Discard / write-zeroes limits (config space and enforced). */
#define VIRTIO_BLK_DWZ_MAX_SEG 32
#define VIRTIO_BLK_DWZ_MAX_SECTORS (1u << 22) /* 2 GiB per segment */
#define VIRTIO_BLK_DISCARD_ALIGNMENT 8        /* sectors (4 KiB) */

/* Config space layout (§5.2.4), little-endian; 60 bytes are implemented
 * (up to and including unused1), reads beyond return zeroes. */
#define VIRTIO_BLK_CFG_CAPACITY 0
#define VIRTIO_BLK_CFG_SIZE_MAX 8
#define VIRTIO_BLK_CFG_SEG_MAX 12
#define VIRTIO_BLK_CFG_GEOMETRY 16
#define VIRTIO_BLK_CFG_BLK_SIZE 20
#define VIRTIO_BLK_CFG_TOPOLOGY 24
#define VIRTIO_BLK_CFG_WRITEBACK 32
#define VIRTIO_BLK_CFG_NUM_QUEUES 34
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS 36
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG 40
#define VIRTIO_BLK_CFG_DISCARD_ALIGNMENT 44
#define VIRTIO_BLK_CFG_MAX_WZ_SECTORS 48
#define VIRTIO_BLK_CFG_MAX_WZ_SEG 52
#define VIRTIO_BLK_CFG_WZ_MAY_UNMAP 56
#define VIRTIO_BLK_CONFIG_SIZE 60

struct virtio_blk_req;

/* Counters since creation (Firecracker's names where it has one; resets
 * of the device do not clear them).  Kept under the device lock;
 * virtio_blk_get_metrics takes a consistent snapshot. */
struct virtio_blk_metrics {
	uint64_t activate_fails;         /* activation refused by the device */
	uint64_t cfg_fails;              /* config-space writes (every field is read-only) */
	uint64_t no_avail_buffer;        /* passes that found no request in the ring */
	uint64_t event_fails;            /* ring violations: the device was marked broken */
	uint64_t queue_event_count;      /* passes over the queue (kick, continuation, resume) */
	uint64_t execute_fails;          /* requests the host failed: refused, I/O error, short */
	uint64_t invalid_reqs_count;     /* malformed requests (IOERR, nothing reached the disk) */
	uint64_t unsupported_reqs_count; /* unknown or not negotiated types (UNSUPP) */
	uint64_t read_count, read_bytes;   /* completed reads */
	uint64_t write_count, write_bytes; /* completed writes */
	uint64_t flush_count;            /* completed flushes */
	uint64_t discard_count, write_zeroes_count, get_id_count;
	uint64_t rate_limiter_event_count;      /* limiter timer events handled */
	uint64_t rate_limiter_throttled_events; /* requests the limiter held back */
	uint64_t io_engine_throttled_events;    /* passes stopped: the back end had no room */
	uint64_t budget_yields;          /* passes cut short by VIRTIO_BLK_BUDGET */
	uint64_t update_count, update_fails; /* image swaps/resizes and limiter changes */
	uint64_t quiesce_timeouts;       /* quiesces that gave up on the disk */
	uint64_t inflight;               /* (snapshot) requests started, not completed */
};

/* The flush of an image being swapped out (see virtio_blk_swap_backend). */
struct virtio_blk_flush {
	struct blk_io io;
	int64_t res;
	bool pending;
};

struct virtio_blk {
	struct virtio_dev vdev; /* hand &vdev to a transport */
	struct virtio_deferred deferred; /* passes cut short by the budget */
	struct blk_backend *be;
	bool own_be; /* destroy the back end with the device */
	uint64_t capacity; /* 512-byte sectors */
	uint8_t serial[VIRTIO_BLK_ID_BYTES]; /* zero-padded */
	uint8_t config[VIRTIO_BLK_CONFIG_SIZE];

	/* under vdev.lock */
	struct virtio_blk_req *reqs; /* pool of max_inflight */
	struct virtio_blk_req *free_reqs;
	unsigned pool_size;    /* entries of reqs */
	unsigned max_inflight; /* min(pool_size, back-end capacity) */
	unsigned inflight;
	uint32_t gen;     /* bumped by reset: older completions are dropped */
	bool resetting;   /* reset returned -EINPROGRESS */
	bool slots_full;  /* stopped popping at max_inflight */
	bool flush_failed; /* sticky, see above */
	bool held;        /* chain is popped, waiting for the rate limiter */
	struct virtq_chain chain; /* scratch for virtq_pop; the held chain */
	bool quiesced;    /* paused: take no chains from the ring */
	unsigned quiesce_timeout_ms; /* VIRTIO_BLK_QUIESCE_TIMEOUT_MS; tests lower it */
	bool limited;     /* limiter is set up and its timer_fd on the loop */
	struct rate_limiter limiter;
	/* The limiter's clock (NULL: CLOCK_MONOTONIC); tests set it before
	 * the first virtio_blk_set_rate_limiter. */
	rate_limiter_clock_fn limiter_clock;
	void *limiter_clock_ctx;
	struct virtio_blk_flush swap_flush; /* loop thread only */
	struct ratelimit rl;
	struct virtio_blk_metrics m; /* under vdev.lock (inflight unused) */
};

/* Build the device on back end @be (which must have been attached to
 * @loop's thread, or be driven by the caller, as the fake is).  @loop may
 * be NULL (tests): then a pass is not budgeted.  @id: the
 * serial reported by GET_ID, printable ASCII, at most 20 bytes; NULL for
 * "visor-disk".  @own_be: virtio_blk_destroy destroys @be.  Returns 0 or
 * -errno with one line in @err. */
int virtio_blk_init(struct virtio_blk *b, struct blk_backend *be, bool own_be, const char *id,
		    const struct guest_mem *mem, struct loop *loop, char *err, size_t errlen);

/* Open @path with the io_uring back end (attached to @loop) and build the
 * device.  Returns 0 or -errno with one line in @err ("disk.img: No such
 * file or directory", "...: is a directory, not a disk image",
 * "...: Permission denied (opening read-write; ...)", bad id, ...). */
int virtio_blk_create(struct virtio_blk *b, const char *path, bool readonly, const char *id,
		      const struct guest_mem *mem, struct loop *loop, char *err, size_t errlen);

/* Limit the disk's bandwidth and request rate (@c NULL or all zero:
 * unlimited), on the loop thread, before or after the driver activated
 * the device; effective at once: a request held under the old limits is
 * looked at again now.  The first limiting config creates the limiter and
 * puts its timerfd on the device's loop; changing it later follows
 * rate_limiter_update (a changed bucket starts full).  Returns 0, -EINVAL
 * if the device has no loop (nothing could resume a throttled queue), or
 * -errno from creating the timer (the device is then left unlimited). */
int virtio_blk_set_rate_limiter(struct virtio_blk *b, const struct rate_limiter_config *c);

/* Swap the disk's image for @path after boot (PATCH /drives/{id}
 * path_on_host), on the event-loop thread, d->lock not held.  @path is
 * opened and checked exactly as virtio_blk_create does (regular file or
 * block device, never a FIFO: opened O_NONBLOCK, then fstat; flock shared
 * for @readonly, else exclusive; at least one sector).  Then requests in
 * flight on the old image complete (as in virtio_blk_quiesce), the old
 * image is flushed (fdatasync; skipped if it is read-only), the device
 * switches to the new one and announces the new capacity (config space,
 * config_generation + 1, configuration-change interrupt if the driver is
 * up), and the old image is closed.  Requests the guest posted meanwhile
 * run on the new image.  If @path is the image already in use (same file),
 * it is not reopened: its size is re-read and announced (@readonly must
 * match, else -EBUSY).  A device paused by the VM stays paused.  Returns 0,
 * or -errno with one line in @err, and then the old image stays in use,
 * unchanged (open errors, -EBUSY locked, -ETIMEDOUT if the old disk does
 * not answer in quiesce_timeout_ms, the old image's flush error...). */
int virtio_blk_swap_backing(struct virtio_blk *b, const char *path, bool readonly, char *err,
			    size_t errlen);

/* The same with a back end the caller opened (and attached nowhere yet:
 * it is attached to the device's loop here): @be replaces the current
 * one, which is destroyed if the device owned it; @own_be: the device
 * destroys @be later.  On error (-errno, one line in @err) nothing
 * changed and the caller still owns @be (destroying it detaches it). */
int virtio_blk_swap_backend(struct virtio_blk *b, struct blk_backend *be, bool own_be, char *err,
			    size_t errlen);

/* Pause the device (event-loop thread, d->lock not held, every vCPU
 * parked): stop taking chains from the ring and wait until every request
 * in flight has completed and been pushed to the used ring (its interrupt
 * signalled), delivering back-end completions on this thread.  Gives up
 * after quiesce_timeout_ms with a warning (the remaining requests complete
 * later, from the loop, still exactly once).  Nothing else is flushed. */
void virtio_blk_quiesce(struct virtio_blk *b);

/* Restart after virtio_blk_quiesce (event-loop thread, d->lock not held):
 * take chains again and look at the queue now, since notifications that
 * arrived meanwhile were not acted on. */
void virtio_blk_unquiesce(struct virtio_blk *b);

/* A consistent snapshot of the counters into @out (any thread; takes the
 * device lock briefly, copies, nothing else). */
void virtio_blk_get_metrics(struct virtio_blk *b, struct virtio_blk_metrics *out);

/* Tear down (after the transport is gone and the vCPUs stopped).  Waits
 * for I/O still in the kernel. */
void virtio_blk_destroy(struct virtio_blk *b);

/*
 * Snapshot state (docs/snapshot-format.md, "virtio devices"): what the
 * device holds beyond the virtio core (virtio_dev_state_*, saved beside
 * it).  The disk image is not in it: its path is in the VM's
 * configuration and its bytes on disk.  The capacity is, and a restore on
 * an image of another size is refused (another disk).  A failed flush
 * stays failed (see above).  A chain held for the rate limiter is kept by
 * its head: its descriptors are in guest memory.  The limiter itself is
 * host state (its configuration is the VM's): a restored device starts
 * with full buckets.
 *
 *   virtio_blk_state_get     VM paused, device quiesced (takes d->lock):
 *                            -EBUSY while a request is in flight or a reset
 *                            in progress (quiesce completes every request;
 *                            a disk that did not answer leaves some).
 *   virtio_blk_state_encode  u64 capacity (sectors), u8 flush_failed, u8
 *                            held, u16 held head (12 bytes).
 *   virtio_blk_state_decode  read from @c and check against @live, built
 *                            from the same configuration (pure; the caller
 *                            checks the cursor at the end): the capacity is
 *                            @live's, flags are 0 or 1, the held head is
 *                            below the queue maximum (0 when nothing held).
 *   virtio_blk_state_check   against the core's state decoded from the same
 *                            snapshot: the queue's heads in flight are
 *                            exactly the held chain (none without one), a
 *                            chain is held only on an active queue of a
 *                            live device.  A device that is not live
 *                            (broken or FAILED: queues still active) holds
 *                            nothing, whatever is in flight: the driver's
 *                            reset drops it (virtio_dev_state_is_live).
 *   virtio_blk_state_put     after virtio_dev_state_put, before
 *                            virtio_dev_state_restart (takes d->lock): the
 *                            held chain is read again from guest memory
 *                            with every check of virtq_pop (one that no
 *                            longer passes breaks the device, as a bad
 *                            chain would) and held; restart's look at the
 *                            queue handles it first.  0, or -EINVAL if the
 *                            queue does not have it in flight (a state
 *                            virtio_blk_state_check refuses).
 */
/* Make every write the guest completed durable (fdatasync of the image,
 * through the back end), waiting at most the quiesce time-out: before a
 * snapshot is declared complete.  Loop thread, d->lock not held, nothing
 * in flight (the device quiesced).  0, -EBUSY (an earlier flush still
 * pending), -ETIMEDOUT or the back end's error. */
int virtio_blk_sync(struct virtio_blk *b);
/* Take or drop the image's lock (a live migration's hand-over of the
 * disk: blk_uring_defer_locks).  Loop thread, VM paused.  0 / -errno. */
int virtio_blk_lock(struct virtio_blk *b, bool take);

/* its own part never changed (virtio.h) */
#define VIRTIO_BLK_STATE_VERSION (VIRTIO_SHARED_STATE_VERSION + 0)

struct virtio_blk_state {
	uint64_t capacity;    /* 512-byte sectors */
	uint8_t flush_failed; /* 0 or 1 */
	uint8_t held;         /* 0 or 1: a chain waits for the rate limiter */
	uint16_t held_head;   /* its head (0 when none) */
};

int virtio_blk_state_get(struct virtio_blk *b, struct virtio_blk_state *st);
void virtio_blk_state_encode(const struct virtio_blk_state *st, struct snap_writer *w);
int virtio_blk_state_decode(struct snap_cursor *c, const struct virtio_blk *live,
			    struct virtio_blk_state *st, char *err, size_t errlen);
int virtio_blk_state_check(const struct virtio_blk_state *st, const struct virtio_dev_state *core,
			   char *err, size_t errlen);
int virtio_blk_state_put(struct virtio_blk *b, const struct virtio_blk_state *st);

#endif
