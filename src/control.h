/* SPDX-License-Identifier: MIT */
/*
 * control.h - a line-oriented control socket (until the REST API lands).
 *
 * A Unix stream socket at a path given with --control.  Each client sends
 * commands, one per line ("balloon 128M", "balloon-stats"); each gets one
 * reply line: "OK[ ...]" or "ERROR <reason>".  Runs on the event loop.
 * Bounded: at most CONTROL_MAX_CLIENTS clients, lines of at most
 * CONTROL_MAX_LINE bytes (a longer line gets an error and the client is
 * dropped), and a client that stops reading its replies is dropped rather
 * than buffered for.
 */
#ifndef VISOR_CONTROL_H
#define VISOR_CONTROL_H

#include <stddef.h>

#define CONTROL_MAX_CLIENTS 8
#define CONTROL_MAX_LINE 256

struct loop;

/* Handle one command line (without the newline); write the reply (without
 * newline) into reply[0..len).  Called on the loop thread. */
typedef void (*control_handler)(void *ctx, const char *line, char *reply, size_t len);

struct control_client {
	int fd; /* -1 when free */
	size_t used;
	char buf[CONTROL_MAX_LINE];
};

struct control {
	int listen_fd;
	char path[108];
	struct loop *loop;
	control_handler handler;
	void *ctx;
	struct control_client clients[CONTROL_MAX_CLIENTS];
};

/* Listen at @path (a stale socket file there is replaced; any other kind
 * of file is an error) and serve on @loop.  0 or -errno with a reason in
 * err. */
int control_init(struct control *c, const char *path, struct loop *loop, control_handler handler,
		 void *ctx, char *err, size_t errlen);

/* Close every client and the listening socket, and remove the socket file. */
void control_destroy(struct control *c);

#endif
