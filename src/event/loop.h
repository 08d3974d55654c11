/* SPDX-License-Identifier: MIT */
/*
 * loop.h - the event loop: one epoll instance serving file descriptors.
 *
 * Runs on the main thread and owns host-side I/O (console input now; device
 * back ends, the API socket, snapshots and migration later).  Not
 * thread-safe: only the loop thread registers and changes handlers.  Other
 * threads talk to it through eventfds they write.
 */
#ifndef VISOR_EVENT_LOOP_H
#define VISOR_EVENT_LOOP_H

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
	bool stop;
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

/* Dispatch events until loop_stop().  0 / -errno. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);

#endif
