/* SPDX-License-Identifier: MIT */
/*
 * loop_runner.h - run a real event loop on its own thread in a unit test
 * (the VMM's loop thread), and stop it again:
 *
 *   struct loop_runner lr;
 *   CHECK_EQ(loop_runner_start(&lr, &loop), 0);
 *   ... this thread plays the vCPU; lr.thread is the loop thread ...
 *   CHECK_EQ(loop_runner_stop(&lr), 0);   (the loop has returned)
 *
 * or, without a thread, play the loop by hand: loop_dispatch(&loop, fd).
 */
#ifndef VISOR_TEST_LOOP_RUNNER_H
#define VISOR_TEST_LOOP_RUNNER_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../src/event/loop.h"

struct loop_runner {
	struct loop *l;
	pthread_t thread;
	int stop_fd;
};

static void loop_runner_on_stop(struct loop *l, int fd, uint32_t events, void *ctx)
{
	(void)events;
	(void)ctx;
	uint64_t v;
	(void)!read(fd, &v, sizeof(v));
	loop_stop(l);
}

static void *loop_runner_main(void *arg)
{
	loop_run(arg);
	return NULL;
}

/* 0, or -errno (nothing is left running then). */
static inline int loop_runner_start(struct loop_runner *r, struct loop *l)
{
	r->l = l;
	r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->stop_fd < 0)
		return -errno;
	int e = loop_add(l, r->stop_fd, EPOLLIN, loop_runner_on_stop, NULL);
	if (e == 0) {
		e = -pthread_create(&r->thread, NULL, loop_runner_main, l);
		if (e)
			loop_del(l, r->stop_fd);
	}
	if (e)
		close(r->stop_fd);
	return e;
}

/* Stop the loop and join its thread: 0, or -errno. */
static inline int loop_runner_stop(struct loop_runner *r)
{
	uint64_t one = 1;
	int e = write(r->stop_fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
	if (e == 0)
		e = -pthread_join(r->thread, NULL);
	loop_del(r->l, r->stop_fd);
	close(r->stop_fd);
	return e;
}

/* The handler registered for @fd on @l, or NULL (looks into the loop's
 * table without running it). */
static inline struct loop_handler *loop_handler_of(struct loop *l, int fd)
{
	for (int i = 0; i < LOOP_MAX_FDS; i++)
		if (l->h[i].fd == fd)
			return &l->h[i];
	return NULL;
}

/* Run the callback of @fd as the loop would after EPOLLIN, on this
 * thread; false if nothing is registered for @fd. */
static inline bool loop_dispatch(struct loop *l, int fd)
{
	struct loop_handler *h = loop_handler_of(l, fd);
	if (h)
		h->cb(l, fd, EPOLLIN, h->ctx);
	return h != NULL;
}

#endif
