/* SPDX-License-Identifier: MIT */
/*
 * net_mem.c - an in-memory network back end for unit tests; see net.h.
 *
 * Frames to deliver are queued by the test (net_mem_inject) and taken by
 * recv(); frames sent are kept for the test to inspect (net_mem_take_sent).
 * The fd is an eventfd whose counter is non-zero exactly while frames are
 * pending, so the event loop sees it like a tap's fd.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

static struct net_mem *to_mem(struct net_backend *be)
{
	return container_of(be, struct net_mem, be);
}

static void fd_set_readable(struct net_mem *m, bool on)
{
	uint64_t v = 1;
	if (on)
		(void)!write(m->be.fd, &v, sizeof(v));
	else
		(void)!read(m->be.fd, &v, sizeof(v)); /* resets the counter; EAGAIN if 0 */
}

static void list_append(struct net_mem_frame **head, struct net_mem_frame **tail,
			struct net_mem_frame *f)
{
	f->next = NULL;
	if (*tail)
		(*tail)->next = f;
	else
		*head = f;
	*tail = f;
}

static struct net_mem_frame *list_pop(struct net_mem_frame **head, struct net_mem_frame **tail)
{
	struct net_mem_frame *f = *head;
	if (f) {
		*head = f->next;
		if (!*head)
			*tail = NULL;
	}
	return f;
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t n = 0;
	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

static ssize_t mem_send(struct net_backend *be, const struct iovec *iov, int iovcnt)
{
	struct net_mem *m = to_mem(be);
	m->send_calls++;
	if (m->send_errno)
		return -m->send_errno;
	size_t len = iov_total(iov, iovcnt);
	struct net_mem_frame *f = malloc(sizeof(*f) + len);
	if (!f)
		return -ENOMEM;
	f->len = len;
	size_t off = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(f->data + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	list_append(&m->tx_head, &m->tx_tail, f);
	m->tx_count++;
	return (ssize_t)len;
}

/* Like a tap: the frame is truncated to the iovecs, the full length is
 * returned. */
static ssize_t mem_recv(struct net_backend *be, const struct iovec *iov, int iovcnt)
{
	struct net_mem *m = to_mem(be);
	m->recv_calls++;
	if (m->recv_errno && m->recv_errno != EAGAIN)
		return -m->recv_errno;
	struct net_mem_frame *f = list_pop(&m->rx_head, &m->rx_tail);
	if (!f)
		return -EAGAIN;
	m->rx_count--;
	m->recv_frames++;
	if (!m->rx_head)
		fd_set_readable(m, false);
	size_t off = 0;
	for (int i = 0; i < iovcnt && off < f->len; i++) {
		size_t n = iov[i].iov_len < f->len - off ? iov[i].iov_len : f->len - off;
		if (n)
			memcpy(iov[i].iov_base, f->data + off, n);
		off += n;
	}
	ssize_t len = (ssize_t)f->len;
	free(f);
	return len;
}

static int mem_set_offload(struct net_backend *be, unsigned offloads)
{
	struct net_mem *m = to_mem(be);
	m->offload_calls++;
	if (offloads & ~be->rx_offloads)
		return -EINVAL;
	m->offloads = offloads;
	return 0;
}

static void free_list(struct net_mem_frame **head, struct net_mem_frame **tail)
{
	struct net_mem_frame *f;
	while ((f = list_pop(head, tail)))
		free(f);
}

static void mem_close(struct net_backend *be)
{
	struct net_mem *m = to_mem(be);
	free_list(&m->rx_head, &m->rx_tail);
	free_list(&m->tx_head, &m->tx_tail);
	m->rx_count = m->tx_count = 0;
	if (be->fd >= 0)
		close(be->fd);
	be->fd = -1;
}

static const struct net_backend_ops mem_ops = {
	.send = mem_send,
	.recv = mem_recv,
	.set_offload = mem_set_offload,
	.close = mem_close,
};

int net_mem_init(struct net_mem *m, unsigned rx_offloads, unsigned tx_offloads)
{
	memset(m, 0, sizeof(*m));
	m->be.ops = &mem_ops;
	m->be.rx_offloads = rx_offloads & NET_OFFLOAD_ALL;
	m->be.tx_offloads = tx_offloads & NET_OFFLOAD_ALL;
	m->be.name = "net-mem";
	m->be.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return m->be.fd < 0 ? -errno : 0;
}

int net_mem_inject(struct net_mem *m, const void *frame, size_t len)
{
	struct net_mem_frame *f = malloc(sizeof(*f) + len);
	if (!f)
		return -ENOMEM;
	f->len = len;
	if (len)
		memcpy(f->data, frame, len);
	bool was_empty = !m->rx_head;
	list_append(&m->rx_head, &m->rx_tail, f);
	m->rx_count++;
	if (was_empty)
		fd_set_readable(m, true);
	return 0;
}

ssize_t net_mem_take_sent(struct net_mem *m, void *buf, size_t max)
{
	struct net_mem_frame *f = list_pop(&m->tx_head, &m->tx_tail);
	if (!f)
		return -ENOENT;
	m->tx_count--;
	memcpy(buf, f->data, f->len < max ? f->len : max);
	ssize_t len = (ssize_t)f->len;
	free(f);
	return len;
}
