/* SPDX-License-Identifier: MIT */
/*
 * block.h - block back ends: where a virtual disk's bytes live.
 *
 * A back end executes byte-addressed operations asynchronously:
 *   READ / WRITE     a list of iovecs at a byte offset (preadv/pwritev);
 *   FLUSH            fdatasync: completes only once the data written by
 *                    every operation completed before the flush is stable;
 *   DISCARD          deallocate a range (fallocate PUNCH_HOLE|KEEP_SIZE);
 *                    reads of the range return zeroes afterwards;
 *   WRITE_ZEROES     make a range read as zeroes (fallocate ZERO_RANGE, or
 *                    PUNCH_HOLE when @unmap is set or ZERO_RANGE is not
 *                    supported), the size never changes.
 *
 * Contract:
 *   - submit() either refuses the operation synchronously (returns -errno:
 *     -EROFS on a read-only back end, -EINVAL for a malformed operation,
 *     -EAGAIN when the caller exceeds the capacity it was promised) and then
 *     never calls io->done, or accepts it (returns 0) and later calls
 *     io->done(io, result) exactly once.
 *   - io->done is NEVER called from inside submit() or commit(): it runs on
 *     the event-loop thread (the back end's loop callback), with no back-end
 *     lock held, so it may take device locks and submit new operations.
 *     Lock order: device lock -> back-end lock.
 *   - result: READ/WRITE the number of bytes transferred (a short count only
 *     at end of file or on an error after partial progress; back ends retry
 *     short transfers themselves), 0 for the others, or -errno.
 *   - submit() may only queue the operation; the caller calls commit() (if
 *     non-NULL) after a batch to start everything queued.
 *   - The caller owns @io and the memory the iovecs point at until done()
 *     runs; the back end may modify io->iov/io->iovcnt (to resume a short
 *     transfer) and uses the fields under "back-end private".
 *   - At most `capacity` operations are outstanding at once (submitted and
 *     not yet done); the caller bounds itself by it.  Back ends never block
 *     the calling thread on disk I/O.
 *   - submit()/commit() are thread-safe (a back end has its own lock).
 */
#ifndef VISOR_BACKENDS_BLOCK_H
#define VISOR_BACKENDS_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct loop;
struct blk_backend;
struct blk_io;

enum blk_op {
	BLK_OP_READ,
	BLK_OP_WRITE,
	BLK_OP_FLUSH,
	BLK_OP_DISCARD,
	BLK_OP_WRITE_ZEROES,
};

typedef void (*blk_done_fn)(struct blk_io *io, int64_t result);

struct blk_io {
	/* set by the caller */
	enum blk_op op;
	uint64_t offset;     /* bytes (READ, WRITE, DISCARD, WRITE_ZEROES) */
	uint64_t len;        /* bytes (DISCARD, WRITE_ZEROES) */
	struct iovec *iov;   /* READ, WRITE */
	unsigned iovcnt;     /* 1..IOV_MAX for READ/WRITE */
	bool unmap;          /* WRITE_ZEROES: deallocating is allowed */
	blk_done_fn done;
	/* back-end private */
	struct blk_io *next;
	uint64_t rw_len;     /* READ/WRITE: sum of the iovec lengths */
	uint64_t done_bytes; /* READ/WRITE: transferred so far */
	unsigned retries;
	int mode;
};

struct blk_backend_ops {
	/* See the contract above.  0 / -errno. */
	int (*submit)(struct blk_backend *be, struct blk_io *io);
	/* Start what submit() queued (may be NULL: submit starts at once). */
	void (*commit)(struct blk_backend *be);
	/* Register the back end's fds with @loop (completions are delivered
	 * from there).  May be NULL for back ends without fds.  0 / -errno. */
	int (*attach)(struct blk_backend *be, struct loop *loop);
	/* Close everything.  Only when nothing is outstanding (or the loop is
	 * no longer running: outstanding operations are then waited for and
	 * dropped without calling done). */
	void (*destroy)(struct blk_backend *be);
	/* Re-read the image's size into be->size (the file was grown or
	 * shrunk in place).  0, or -errno with be->size unchanged (-EINVAL if
	 * it is now smaller than one 512-byte sector).  Only while nothing is
	 * outstanding.  NULL: the size cannot change. */
	int (*refresh_size)(struct blk_backend *be);
	/* For a caller on the loop thread that must wait for its I/O and so
	 * cannot return to the loop (pausing a device, swapping its image):
	 * start what is queued, wait up to @timeout_ms for completions and
	 * deliver them on the calling thread (done runs here, with no back-end
	 * lock held, exactly as from the loop; the loop may later find nothing
	 * to do).  Returns the number of operations completed (0 on timeout,
	 * at once if nothing is outstanding), or -errno.  NULL: the back end
	 * cannot be waited for. */
	int (*poll)(struct blk_backend *be, int timeout_ms);
	/* Take (@take) or drop the image's lock (a live migration hands it
	 * from the source to the destination).  0, -EBUSY (another process
	 * holds it) or -errno.  NULL: the back end has no lock. */
	int (*lock)(struct blk_backend *be, bool take);
};

struct blk_backend {
	const struct blk_backend_ops *ops;
	uint64_t size;     /* bytes */
	bool readonly;
	unsigned capacity; /* most operations outstanding at once */
	const char *name;  /* for messages */
	/* Which file this is (st_dev, st_ino of the open image), to recognise
	 * the same image under another name; both 0 for back ends without a
	 * file. */
	uint64_t dev, ino;
};

/* For back ends' submit(): check @io against the contract and @be before
 * accepting it.  Returns -EINVAL (unknown op; READ/WRITE without iovecs,
 * with more than IOV_MAX or with lengths whose sum overflows; DISCARD or
 * WRITE_ZEROES of 0 bytes or more than INT64_MAX; any range not inside the
 * disk), -EROFS (anything but READ/FLUSH on a read-only back end), in that
 * order of precedence, or 0 with the operation's length in bytes in *@len
 * (sum of the iovecs, io->len, or 0 for FLUSH). */
int blk_check_io(const struct blk_backend *be, const struct blk_io *io, uint64_t *len);

static inline int blk_submit(struct blk_backend *be, struct blk_io *io)
{
	return be->ops->submit(be, io);
}

static inline void blk_commit(struct blk_backend *be)
{
	if (be->ops->commit)
		be->ops->commit(be);
}

static inline void blk_destroy(struct blk_backend *be)
{
	if (be && be->ops->destroy)
		be->ops->destroy(be);
}

/* ---- io_uring back end on a raw image file or block device (block_uring.c) ---- */

/* Default number of operations in the kernel at once (SQ ring entries). */
#define BLK_URING_DEPTH 64

/* Open @path as a raw image: O_RDWR (O_RDONLY if @readonly) | O_CLOEXEC,
 * O_NONBLOCK until fstat has shown a disk (a FIFO must not hang the open).
 * Regular files and block devices only; size from fstat / BLKGETSIZE64; a
 * shared flock for a read-only user, an exclusive one for a writer (taken
 * without waiting: -EBUSY "in use by another process").
 * @depth operations go to the kernel at once (0: BLK_URING_DEPTH); up to
 * @capacity may be outstanding, the rest waiting in a FIFO backlog.
 * On failure returns -errno and writes one line (no "error:" prefix, no
 * newline) into @err, e.g. "disk.img: No such file or directory".
 * Call ops->attach(be, loop) before submitting. */
int blk_uring_open(struct blk_backend **out, const char *path, bool readonly, unsigned depth,
		   unsigned capacity, char *err, size_t errlen);

/* While @on, blk_uring_open opens images without taking their lock (an
 * incoming migration: the source holds them until the switch-over, when
 * ops->lock moves them).  Process-wide. */
void blk_uring_defer_locks(bool on);

/* ---- in-memory back end for tests (block_mem.c) ---- */

struct blk_mem {
	struct blk_backend be;
	uint8_t *data;
	/* Outstanding operations (FIFO); executed when completed. */
	struct blk_io *head, *tail;
	unsigned outstanding;
	/* Fault injection: the next @fail_count operations whose op is in
	 * @fail_ops (mask of 1 << enum blk_op) complete with -@fail_errno
	 * (0: with a short count, half the bytes, for READ/WRITE). */
	uint32_t fail_ops;
	int fail_errno;
	unsigned fail_count;
	/* Counters per op (executed, failed included). */
	unsigned ops_done[5];
	bool discard_unsupported; /* DISCARD/WRITE_ZEROES complete -EOPNOTSUPP */
	bool hang; /* ops->poll completes nothing (a disk that stopped answering) */
};

/* A zero-filled disk of @size bytes.  0 / -errno. */
int blk_mem_init(struct blk_mem *m, uint64_t size, bool readonly, unsigned capacity);
/* Execute and complete up to @max outstanding operations in FIFO order on
 * the calling thread (the tests' "event loop").  Returns how many.
 * ops->poll does the same with every outstanding operation, unless @hang
 * is set: then it sleeps @timeout_ms and completes nothing. */
unsigned blk_mem_complete(struct blk_mem *m, unsigned max);

#endif
