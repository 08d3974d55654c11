/* SPDX-License-Identifier: MIT */
/*
 * block_mem.c - an in-memory block back end for unit tests; see block.h.
 *
 * Operations are queued on submit and executed (data copied, fault
 * injection applied) only when the test calls blk_mem_complete(), which
 * plays the event loop: completion order and timing are in the test's hands.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

static int mem_submit(struct blk_backend *be, struct blk_io *io)
{
	struct blk_mem *m = container_of(be, struct blk_mem, be);
	uint64_t len;
	int r = blk_check_io(be, io, &len);
	if (r)
		return r;
	if (m->outstanding >= be->capacity)
		return -EAGAIN;
	io->rw_len = len;
	io->done_bytes = 0;
	io->next = NULL;
	if (m->tail)
		m->tail->next = io;
	else
		m->head = io;
	m->tail = io;
	m->outstanding++;
	return 0;
}

static int64_t mem_execute(struct blk_mem *m, struct blk_io *io)
{
	m->ops_done[io->op]++;
	bool short_io = false;
	if (m->fail_count && (m->fail_ops & (1u << io->op))) {
		m->fail_count--;
		if (m->fail_errno)
			return -m->fail_errno;
		short_io = true;
	}
	uint64_t limit = short_io ? io->rw_len / 2 : io->rw_len;
	uint64_t off = io->offset, done = 0;
	switch (io->op) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		for (unsigned i = 0; i < io->iovcnt && done < limit; i++) {
			uint64_t n = io->iov[i].iov_len;
			if (n > limit - done)
				n = limit - done;
			if (io->op == BLK_OP_READ)
				memcpy(io->iov[i].iov_base, m->data + off + done, n);
			else
				memcpy(m->data + off + done, io->iov[i].iov_base, n);
			done += n;
		}
		return (int64_t)done;
	case BLK_OP_DISCARD:
	case BLK_OP_WRITE_ZEROES:
		if (m->discard_unsupported)
			return -EOPNOTSUPP;
		memset(m->data + io->offset, 0, io->len);
		return 0;
	case BLK_OP_FLUSH:
		return 0;
	}
	return -EINVAL;
}

unsigned blk_mem_complete(struct blk_mem *m, unsigned max)
{
	unsigned n = 0;
	while (n < max && m->head) {
		struct blk_io *io = m->head;
		m->head = io->next;
		if (!m->head)
			m->tail = NULL;
		m->outstanding--;
		int64_t r = mem_execute(m, io);
		io->done(io, r);
		n++;
	}
	return n;
}

static void mem_destroy(struct blk_backend *be)
{
	struct blk_mem *m = container_of(be, struct blk_mem, be);
	free(m->data);
	m->data = NULL;
	m->head = m->tail = NULL;
}

static int mem_poll(struct blk_backend *be, int timeout_ms)
{
	struct blk_mem *m = container_of(be, struct blk_mem, be);
	if (!m->head)
		return 0;
	if (!m->hang)
		return (int)blk_mem_complete(m, UINT_MAX);
	if (timeout_ms > 0) {
		struct timespec ts = {.tv_sec = timeout_ms / 1000,
				      .tv_nsec = (long)(timeout_ms % 1000) * 1000000};
		nanosleep(&ts, NULL);
	}
	return 0;
}

static const struct blk_backend_ops mem_ops = {
	.submit = mem_submit,
	.destroy = mem_destroy,
	.poll = mem_poll,
};

int blk_mem_init(struct blk_mem *m, uint64_t size, bool readonly, unsigned capacity)
{
	memset(m, 0, sizeof(*m));
	if (size == 0 || size > SIZE_MAX || capacity == 0)
		return -EINVAL;
	m->data = calloc(1, (size_t)size);
	if (!m->data)
		return -ENOMEM;
	m->be = (struct blk_backend){.ops = &mem_ops,
				     .size = size,
				     .readonly = readonly,
				     .capacity = capacity,
				     .name = "mem"};
	return 0;
}
