/* SPDX-License-Identifier: MIT */
/*
 * block_uring.c - raw image back end on io_uring; see block.h.
 *
 * One ring per disk with @depth SQ entries (the CQ ring is twice that, and
 * at most @depth operations are in the kernel, so the CQ never overflows).
 * Operations beyond @depth wait in a FIFO backlog (intrusive list, no
 * allocation; bounded by @capacity).  Completions are signalled through an
 * eventfd registered with io_uring_register_eventfd() and watched by the
 * event loop, which reaps CQEs and calls io->done without the back-end lock.
 *
 * Nothing here waits for the disk: SQEs are submitted without waiting
 * (io_uring_submit: io_uring_enter with min_complete 0); buffered I/O that
 * would block is punted by the kernel to its io-wq workers, fsync and
 * fallocate always are.  If the kernel refuses a submission for lack of
 * resources (-EAGAIN/-EBUSY) the SQEs stay in the ring and a 1 ms timerfd
 * retries, so the queue cannot stall even with nothing else in flight.
 *
 * Short transfers are resumed (the iovecs are advanced past what was done);
 * end of file ends a transfer short.  WRITE_ZEROES uses ZERO_RANGE and falls
 * back to PUNCH_HOLE once the file system says EOPNOTSUPP.
 */
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../event/loop.h"
#include "../util/log.h"
#include "block.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

/* Transient per-operation errors (-EAGAIN, -EINTR) are retried this often. */
#define URING_MAX_RETRIES 16
/* CQEs reaped per batch before their done callbacks run. */
#define URING_REAP_BATCH 32

struct blk_uring {
	struct blk_backend be;
	char name[64];
	int fd;
	int efd; /* eventfd: the ring posted CQEs */
	int tfd; /* timerfd: retry a refused submission */
	struct loop *loop;
	struct io_uring ring;
	bool ring_ok;

	pthread_mutex_t lock; /* everything below, and the SQ ring */
	unsigned depth;
	unsigned in_kernel;   /* SQEs prepared and not yet reaped */
	unsigned outstanding; /* accepted and not yet done */
	struct blk_io *bl_head, *bl_tail;
	bool retry_armed;
	bool zero_range_unsupported;
	struct ratelimit rl;
	bool locked; /* holds its flock (see blk_uring_defer_locks) */
};

/* An incoming migration opens the images its source still holds locked:
 * while set, images open without their lock, taken at the switch-over. */
static _Atomic bool defer_locks;

void blk_uring_defer_locks(bool on)
{
	atomic_store(&defer_locks, on);
}

static struct blk_uring *to_uring(struct blk_backend *be)
{
	return container_of(be, struct blk_uring, be);
}

static void backlog_push_tail(struct blk_uring *u, struct blk_io *io)
{
	io->next = NULL;
	if (u->bl_tail)
		u->bl_tail->next = io;
	else
		u->bl_head = io;
	u->bl_tail = io;
}

static void backlog_push_head(struct blk_uring *u, struct blk_io *io)
{
	io->next = u->bl_head;
	u->bl_head = io;
	if (!u->bl_tail)
		u->bl_tail = io;
}

static struct blk_io *backlog_pop(struct blk_uring *u)
{
	struct blk_io *io = u->bl_head;
	if (io) {
		u->bl_head = io->next;
		if (!u->bl_head)
			u->bl_tail = NULL;
		io->next = NULL;
	}
	return io;
}

/* Put @io into an SQE.  Lock held, in_kernel < depth.  false: SQ full. */
static bool prep_locked(struct blk_uring *u, struct blk_io *io)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe)
		return false;
	switch (io->op) {
	case BLK_OP_READ:
		io_uring_prep_readv(sqe, u->fd, io->iov, io->iovcnt, io->offset + io->done_bytes);
		break;
	case BLK_OP_WRITE:
		io_uring_prep_writev(sqe, u->fd, io->iov, io->iovcnt, io->offset + io->done_bytes);
		break;
	case BLK_OP_FLUSH:
		io_uring_prep_fsync(sqe, u->fd, IORING_FSYNC_DATASYNC);
		break;
	case BLK_OP_DISCARD:
		io->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		io_uring_prep_fallocate(sqe, u->fd, io->mode, (off_t)io->offset, (off_t)io->len);
		break;
	case BLK_OP_WRITE_ZEROES:
		io->mode = (io->unmap || u->zero_range_unsupported)
				   ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
				   : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
		io_uring_prep_fallocate(sqe, u->fd, io->mode, (off_t)io->offset, (off_t)io->len);
		break;
	}
	io_uring_sqe_set_data(sqe, io);
	u->in_kernel++;
	return true;
}

/* Move backlog entries into free SQ slots.  Lock held. */
static void fill_locked(struct blk_uring *u)
{
	while (u->bl_head && u->in_kernel < u->depth) {
		struct blk_io *io = backlog_pop(u);
		if (!prep_locked(u, io)) {
			backlog_push_head(u, io);
			break;
		}
	}
}

static void arm_retry_locked(struct blk_uring *u)
{
	if (u->retry_armed || u->tfd < 0)
		return;
	struct itimerspec its = {.it_value = {.tv_sec = 0, .tv_nsec = 1000000}};
	if (timerfd_settime(u->tfd, 0, &its, NULL) == 0)
		u->retry_armed = true;
}

/* Hand prepared SQEs to the kernel without waiting.  Lock held. */
static void submit_locked(struct blk_uring *u)
{
	for (int tries = 0; io_uring_sq_ready(&u->ring) > 0 && tries < 4; tries++) {
		int r = io_uring_submit(&u->ring);
		if (r >= 0)
			continue;
		if (r == -EINTR)
			continue;
		/* -EAGAIN / -EBUSY (kernel short of resources or CQ backlog),
		 * or anything unexpected: the SQEs stay queued; try later. */
		log_ratelimited(&u->rl, LOG_WARN, "%s: io_uring submit: %s (retrying)", u->name,
				strerror(-r));
		arm_retry_locked(u);
		return;
	}
}

/* Advance @io's iovecs past @n bytes just transferred. */
static void iov_advance(struct blk_io *io, uint64_t n)
{
	while (io->iovcnt && n >= io->iov[0].iov_len) {
		n -= io->iov[0].iov_len;
		io->iov++;
		io->iovcnt--;
	}
	if (io->iovcnt && n) {
		io->iov[0].iov_base = (uint8_t *)io->iov[0].iov_base + n;
		io->iov[0].iov_len -= n;
	}
}

/* A CQE for @io with result @res.  Returns true if @io is complete (*out is
 * its result), false if it was queued again.  Lock held. */
static bool handle_cqe_locked(struct blk_uring *u, struct blk_io *io, int res, int64_t *out)
{
	if ((res == -EAGAIN || res == -EINTR) && io->retries < URING_MAX_RETRIES) {
		io->retries++;
		backlog_push_head(u, io);
		return false;
	}
	if (io->op == BLK_OP_WRITE_ZEROES && (res == -EOPNOTSUPP || res == -EINVAL) &&
	    (io->mode & FALLOC_FL_ZERO_RANGE)) {
		/* The file system cannot ZERO_RANGE: a punched hole reads as
		 * zeroes too. */
		u->zero_range_unsupported = true;
		backlog_push_head(u, io);
		return false;
	}
	if ((io->op == BLK_OP_READ || io->op == BLK_OP_WRITE) && res > 0) {
		io->done_bytes += (uint64_t)res;
		if (io->done_bytes < io->rw_len) {
			iov_advance(io, (uint64_t)res);
			io->retries = 0;
			backlog_push_head(u, io);
			return false;
		}
		*out = (int64_t)io->done_bytes;
		return true;
	}
	if ((io->op == BLK_OP_READ || io->op == BLK_OP_WRITE) && res == 0) {
		*out = (int64_t)io->done_bytes; /* end of file: short */
		return true;
	}
	*out = res < 0 ? res : 0;
	return true;
}

struct reaped {
	struct blk_io *io;
	int64_t res;
};

/* Reap CQEs, refill and submit; run done callbacks without the lock.
 * Returns the number of operations completed. */
static int uring_process(struct blk_uring *u)
{
	int total = 0;
	for (;;) {
		struct reaped batch[URING_REAP_BATCH];
		unsigned n = 0, seen = 0;
		pthread_mutex_lock(&u->lock);
		struct io_uring_cqe *cqe;
		while (n < URING_REAP_BATCH && io_uring_peek_cqe(&u->ring, &cqe) == 0) {
			struct blk_io *io = io_uring_cqe_get_data(cqe);
			int res = cqe->res;
			io_uring_cqe_seen(&u->ring, cqe);
			seen++;
			u->in_kernel--;
			int64_t out;
			if (handle_cqe_locked(u, io, res, &out)) {
				u->outstanding--;
				batch[n++] = (struct reaped){io, out};
			}
		}
		fill_locked(u);
		submit_locked(u);
		pthread_mutex_unlock(&u->lock);
		for (unsigned i = 0; i < n; i++)
			batch[i].io->done(batch[i].io, batch[i].res);
		total += (int)n;
		if (seen == 0)
			break;
	}
	return total;
}

static void on_eventfd(struct loop *l, int fd, uint32_t events, void *ctx)
{
	uint64_t v;
	/* Clear first: a CQE posted after the drain below signals again. */
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("%s: eventfd read: %s", to_uring(ctx)->name, strerror(errno));
	uring_process(ctx);
}

static void on_timer(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct blk_uring *u = to_uring(ctx);
	uint64_t v;
	(void)!read(fd, &v, sizeof(v));
	pthread_mutex_lock(&u->lock);
	u->retry_armed = false;
	pthread_mutex_unlock(&u->lock);
	uring_process(u);
}

static int uring_submit(struct blk_backend *be, struct blk_io *io)
{
	struct blk_uring *u = to_uring(be);
	uint64_t len;
	int r = blk_check_io(be, io, &len);
	if (r)
		return r;
	io->rw_len = len;
	io->done_bytes = 0;
	io->retries = 0;
	io->next = NULL;

	pthread_mutex_lock(&u->lock);
	if (u->outstanding >= be->capacity) {
		pthread_mutex_unlock(&u->lock);
		return -EAGAIN;
	}
	u->outstanding++;
	if (u->bl_head || u->in_kernel >= u->depth || !prep_locked(u, io))
		backlog_push_tail(u, io);
	pthread_mutex_unlock(&u->lock);
	return 0;
}

static void uring_commit(struct blk_backend *be)
{
	struct blk_uring *u = to_uring(be);
	pthread_mutex_lock(&u->lock);
	fill_locked(u);
	submit_locked(u);
	pthread_mutex_unlock(&u->lock);
}

static int uring_poll(struct blk_backend *be, int timeout_ms)
{
	struct blk_uring *u = to_uring(be);
	uint64_t v;
	uring_commit(be); /* also retries a submission the kernel refused */
	/* Clear the eventfd before reaping (as on_eventfd does), so that the
	 * wait below only returns for CQEs posted after the reaping. */
	(void)!read(u->efd, &v, sizeof(v));
	int n = uring_process(u);
	if (n)
		return n;
	pthread_mutex_lock(&u->lock);
	bool idle = u->outstanding == 0;
	pthread_mutex_unlock(&u->lock);
	if (idle)
		return 0;
	/* The ring signals its eventfd for every CQE: wait on it without
	 * holding the lock (and without an SQE of our own). */
	struct pollfd p = {.fd = u->efd, .events = POLLIN};
	int r = poll(&p, 1, timeout_ms);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	if (r == 0)
		return 0;
	(void)!read(u->efd, &v, sizeof(v));
	return uring_process(u);
}

static int uring_attach(struct blk_backend *be, struct loop *loop)
{
	struct blk_uring *u = to_uring(be);
	if (u->loop)
		return -EBUSY;
	int r = loop_add(loop, u->efd, EPOLLIN, on_eventfd, be);
	if (r < 0)
		return r;
	r = loop_add(loop, u->tfd, EPOLLIN, on_timer, be);
	if (r < 0) {
		loop_del(loop, u->efd);
		return r;
	}
	u->loop = loop;
	return 0;
}

static void uring_destroy(struct blk_backend *be)
{
	struct blk_uring *u = to_uring(be);
	if (u->loop) {
		loop_del(u->loop, u->efd);
		loop_del(u->loop, u->tfd);
	}
	if (u->ring_ok) {
		/* Operations still in the kernel may write into their buffers:
		 * wait for them (dropped, done is not called). */
		pthread_mutex_lock(&u->lock);
		if (u->in_kernel)
			log_warn("%s: %u operations in flight at close; waiting", u->name,
				 u->in_kernel);
		while (u->in_kernel) {
			io_uring_submit(&u->ring);
			struct io_uring_cqe *cqe;
			int r = io_uring_wait_cqe(&u->ring, &cqe);
			if (r == -EINTR)
				continue;
			if (r < 0)
				break;
			io_uring_cqe_seen(&u->ring, cqe);
			u->in_kernel--;
		}
		pthread_mutex_unlock(&u->lock);
		io_uring_queue_exit(&u->ring);
	}
	if (u->efd >= 0)
		close(u->efd);
	if (u->tfd >= 0)
		close(u->tfd);
	if (u->fd >= 0)
		close(u->fd);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

/* The size of the image open as @fd, described by @st: 0 or -errno. */
static int image_size(int fd, const struct stat *st, uint64_t *size)
{
	if (S_ISREG(st->st_mode)) {
		*size = (uint64_t)st->st_size;
		return 0;
	}
	if (S_ISBLK(st->st_mode))
		return ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
	return -EINVAL;
}

static int uring_refresh_size(struct blk_backend *be)
{
	struct blk_uring *u = to_uring(be);
	struct stat st;
	uint64_t size;
	if (fstat(u->fd, &st) < 0)
		return -errno;
	int r = image_size(u->fd, &st, &size);
	if (r < 0)
		return r;
	if (size < 512)
		return -EINVAL;
	be->size = size;
	return 0;
}

static int uring_lock(struct blk_backend *be, bool take)
{
	struct blk_uring *u = to_uring(be);
	if (take == u->locked)
		return 0;
	if (flock(u->fd, (take ? (be->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB : LOCK_UN)) < 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	u->locked = take;
	return 0;
}

static const struct blk_backend_ops uring_ops = {
	.lock = uring_lock,
	.submit = uring_submit,
	.commit = uring_commit,
	.attach = uring_attach,
	.destroy = uring_destroy,
	.poll = uring_poll,
	.refresh_size = uring_refresh_size,
};

static int open_error(int err, const char *path, bool readonly, char *buf, size_t len)
{
	const char *hint = "";
	if (!readonly && (err == EACCES || err == EPERM || err == EROFS))
		hint = " (opening read-write; a read-only disk needs the ro option)";
	snprintf(buf, len, "%s: %s%s", path, strerror(err), hint);
	return -err;
}

int blk_uring_open(struct blk_backend **out, const char *path, bool readonly, unsigned depth,
		   unsigned capacity, char *err, size_t errlen)
{
	*out = NULL;
	if (depth == 0)
		depth = BLK_URING_DEPTH;
	if (depth > 4096 || capacity == 0) {
		snprintf(err, errlen, "%s: bad queue depth %u / capacity %u", path, depth, capacity);
		return -EINVAL;
	}
	/* O_NONBLOCK: opening a FIFO must not hang waiting for a writer; it
	 * is cleared again once the file is known to be a disk. */
	int fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return open_error(errno, path, readonly, err, errlen);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return open_error(e, path, readonly, err, errlen);
	}
	uint64_t size;
	if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
		int r = image_size(fd, &st, &size);
		if (r < 0) {
			close(fd);
			snprintf(err, errlen, "%s: cannot get the block device size: %s", path,
				 strerror(-r));
			return r;
		}
	} else {
		close(fd);
		snprintf(err, errlen, "%s: %s", path,
			 S_ISDIR(st.st_mode) ? "is a directory, not a disk image"
					     : "not a regular file or block device");
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int e = errno;
		close(fd);
		snprintf(err, errlen, "%s: fcntl: %s", path, strerror(e));
		return -e;
	}
	if (size < 512) {
		close(fd);
		snprintf(err, errlen, "%s: disk image too small (%llu bytes, at least 512)", path,
			 (unsigned long long)size);
		return -EINVAL;
	}
	/* Two writers on one image corrupt it: shared lock for read-only
	 * users, exclusive for a writer (advisory, local only). */
	bool lock = !atomic_load(&defer_locks);
	if (lock && flock(fd, (readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK) {
			snprintf(err, errlen, "%s: in use by another process (locked)", path);
			return -EBUSY;
		}
		snprintf(err, errlen, "%s: cannot lock: %s", path, strerror(e));
		return -e;
	}

	struct blk_uring *u = calloc(1, sizeof(*u));
	if (!u) {
		close(fd);
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	u->fd = fd;
	u->locked = lock;
	u->efd = u->tfd = -1;
	pthread_mutex_init(&u->lock, NULL);
	snprintf(u->name, sizeof(u->name), "%s", path);
	u->be = (struct blk_backend){.ops = &uring_ops,
				     .size = size,
				     .readonly = readonly,
				     .capacity = capacity,
				     .name = u->name,
				     .dev = (uint64_t)st.st_dev,
				     .ino = (uint64_t)st.st_ino};
	u->depth = depth;
	int r = io_uring_queue_init(depth, &u->ring, 0);
	if (r < 0) {
		if (r == -ENOSYS)
			snprintf(err, errlen, "%s: io_uring is not available in this kernel", path);
		else if (r == -EPERM || r == -EACCES)
			snprintf(err, errlen,
				 "%s: io_uring is not permitted here (kernel.io_uring_disabled, "
				 "seccomp or a container policy)",
				 path);
		else if (r == -ENOMEM)
			snprintf(err, errlen,
				 "%s: io_uring setup: out of memory (RLIMIT_MEMLOCK too low?)",
				 path);
		else
			snprintf(err, errlen, "%s: io_uring setup: %s", path, strerror(-r));
		uring_destroy(&u->be);
		return r;
	}
	u->ring_ok = true;
	u->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	u->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (u->efd < 0 || u->tfd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: eventfd/timerfd: %s", path, strerror(-r));
		uring_destroy(&u->be);
		return r;
	}
	r = io_uring_register_eventfd(&u->ring, u->efd);
	if (r < 0) {
		snprintf(err, errlen, "%s: io_uring_register_eventfd: %s", path, strerror(-r));
		uring_destroy(&u->be);
		return r;
	}
	*out = &u->be;
	return 0;
}
