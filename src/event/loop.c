/* SPDX-License-Identifier: MIT */
#include "loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

int loop_init(struct loop *l)
{
	memset(l, 0, sizeof(*l));
	for (int i = 0; i < LOOP_MAX_FDS; i++)
		l->h[i].fd = -1;
	pthread_mutex_init(&l->lock, NULL);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	return l->epfd < 0 ? -errno : 0;
}

void loop_destroy(struct loop *l)
{
	if (l->epfd >= 0) {
		close(l->epfd);
		pthread_mutex_destroy(&l->lock);
	}
	l->epfd = -1;
}

static struct loop_handler *find(struct loop *l, int fd)
{
	for (int i = 0; i < LOOP_MAX_FDS; i++)
		if (l->h[i].fd == fd)
			return &l->h[i];
	return NULL;
}

int loop_add(struct loop *l, int fd, uint32_t events, loop_cb cb, void *ctx)
{
	pthread_mutex_lock(&l->lock);
	struct loop_handler *h = find(l, -1);
	int r = 0;
	if (!h) {
		r = -ENOSPC;
	} else {
		h->cb = cb;
		h->ctx = ctx;
		h->fd = fd;
		struct epoll_event ev = {.events = events, .data.ptr = h};
		if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			r = -errno;
			h->fd = -1;
		}
	}
	pthread_mutex_unlock(&l->lock);
	return r;
}

int loop_mod(struct loop *l, int fd, uint32_t events)
{
	pthread_mutex_lock(&l->lock);
	struct loop_handler *h = fd < 0 ? NULL : find(l, fd);
	int r = -ENOENT;
	if (h) {
		struct epoll_event ev = {.events = events, .data.ptr = h};
		r = epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
	}
	pthread_mutex_unlock(&l->lock);
	return r;
}

int loop_del(struct loop *l, int fd)
{
	pthread_mutex_lock(&l->lock);
	struct loop_handler *h = fd < 0 ? NULL : find(l, fd);
	if (h) {
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
		h->fd = -1;
	}
	pthread_mutex_unlock(&l->lock);
	return h ? 0 : -ENOENT;
}

int loop_run_once(struct loop *l, int timeout_ms)
{
	struct epoll_event evs[16];
	int n = epoll_wait(l->epfd, evs, 16, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n && !l->stop; i++) {
		struct loop_handler *h = evs[i].data.ptr;
		pthread_mutex_lock(&l->lock);
		int fd = h->fd;
		loop_cb cb = h->cb;
		void *ctx = h->ctx;
		pthread_mutex_unlock(&l->lock);
		if (fd >= 0)
			cb(l, fd, evs[i].events, ctx);
	}
	return n;
}

int loop_run(struct loop *l)
{
	while (!l->stop) {
		int n = loop_run_once(l, -1);
		if (n < 0)
			return n;
	}
	return 0;
}

void loop_stop(struct loop *l)
{
	l->stop = true;
}
