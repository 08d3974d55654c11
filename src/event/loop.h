/* SPDX-License-Identifier: MIT */
/*
 * loop.h - the event loop: one epoll instance serving file descriptors.
 *
 * Runs on the main thread and owns host-side I/O (console input, device
 * back ends; the API socket, snapshots and migration later).  loop_add,
 * loop_mod and loop_del may be called from any thread (a device activated
 * by a vCPU's register write registers its fds); callbacks always run on
 * the loop thread.  A handler's ctx must stay valid until loop_del returns
 * and the loop is between dispatches (devices live as long as the VM).
 */
#ifndef VISOR_EVENT_LOOP_H
#define VISOR_EVENT_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct loop;
typedef void (*loop_cb)(struct loop *l, int fd, uint32_t events, void *ctx);

#define LOOP_MAX_FDS 64

struct loop_handler {
	int fd; /* -1: free */
	loop_cb cb;
	void *ctx;
};

struct loop {
	int epfd;
	volatile bool stop;
	pthread_mutex_t lock;
	struct loop_handler h[LOOP_MAX_FDS];
};

/* 0 / -errno */
int loop_init(struct loop *l);
void loop_destroy(struct loop *l);

/* Watch @fd for @events (EPOLLIN...).  -EPERM if the fd cannot be polled
 * (a regular file), -ENOSPC if the table is full. */
int loop_add(struct loop *l, int fd, uint32_t events, loop_cb cb, void *ctx);
/* Change the events of a watched fd (0 pauses it). */
int loop_mod(struct loop *l, int fd, uint32_t events);
int loop_del(struct loop *l, int fd);

/* One round: wait up to @timeout_ms (-1: for ever) and dispatch what is
 * ready (stopping early after loop_stop()).  The number of events, 0 on
 * timeout or EINTR, -errno on failure.  Tests drive a loop with it. */
int loop_run_once(struct loop *l, int timeout_ms);
/* Dispatch events until loop_stop().  0 / -errno. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);

#endif
