/* SPDX-License-Identifier: MIT */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "event/loop.h"

static void drop_client(struct control *c, struct control_client *cl)
{
	loop_del(c->loop, cl->fd);
	close(cl->fd);
	cl->fd = -1;
	cl->used = 0;
}

static void reply(struct control *c, struct control_client *cl, const char *msg)
{
	char out[CONTROL_MAX_LINE + 2];
	int n = snprintf(out, sizeof(out), "%s\n", msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(out))
		n = (int)sizeof(out) - 1;
	/* non-blocking, MSG_NOSIGNAL: a client that does not read is dropped */
	ssize_t w = send(cl->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w != n)
		drop_client(c, cl);
}

static void on_client(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct control *c = ctx;
	struct control_client *cl = NULL;
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->clients[i].fd == fd)
			cl = &c->clients[i];
	if (!cl)
		return;
	ssize_t n = recv(fd, cl->buf + cl->used, sizeof(cl->buf) - cl->used, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		drop_client(c, cl);
		return;
	}
	cl->used += (size_t)n;
	for (;;) {
		char *nl = memchr(cl->buf, '\n', cl->used);
		if (!nl) {
			if (cl->used == sizeof(cl->buf)) {
				reply(c, cl, "ERROR line too long");
				if (cl->fd >= 0)
					drop_client(c, cl);
			}
			return;
		}
		*nl = 0;
		if (nl > cl->buf && nl[-1] == '\r')
			nl[-1] = 0;
		char out[CONTROL_MAX_LINE];
		out[0] = 0;
		c->handler(c->ctx, cl->buf, out, sizeof(out));
		size_t consumed = (size_t)(nl - cl->buf) + 1;
		memmove(cl->buf, nl + 1, cl->used - consumed);
		cl->used -= consumed;
		reply(c, cl, out[0] ? out : "ERROR no reply");
		if (cl->fd < 0)
			return;
	}
}

static void on_accept(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct control *c = ctx;
	int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (cfd < 0)
		return;
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		if (c->clients[i].fd >= 0)
			continue;
		c->clients[i].fd = cfd;
		c->clients[i].used = 0;
		if (loop_add(l, cfd, EPOLLIN, on_client, c)) {
			c->clients[i].fd = -1;
			break;
		}
		return;
	}
	static const char busy[] = "ERROR too many clients\n";
	ssize_t w = send(cfd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)w;
	close(cfd);
}

int control_init(struct control *c, const char *path, struct loop *loop, control_handler handler,
		 void *ctx, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->listen_fd = -1;
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		c->clients[i].fd = -1;
	if (strlen(path) >= sizeof(c->path)) {
		snprintf(err, errlen, "control socket path too long");
		return -ENAMETOOLONG;
	}
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket", path);
			return -EEXIST;
		}
		unlink(path);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	c->listen_fd = fd;
	memcpy(c->path, path, strlen(path) + 1);
	c->loop = loop;
	c->handler = handler;
	c->ctx = ctx;
	int r = loop_add(loop, fd, EPOLLIN, on_accept, c);
	if (r) {
		snprintf(err, errlen, "cannot watch the control socket: %s", strerror(-r));
		control_destroy(c);
		return r;
	}
	return 0;
}

void control_destroy(struct control *c)
{
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->clients[i].fd >= 0)
			drop_client(c, &c->clients[i]);
	if (c->listen_fd >= 0) {
		loop_del(c->loop, c->listen_fd);
		close(c->listen_fd);
		unlink(c->path);
		c->listen_fd = -1;
	}
}
