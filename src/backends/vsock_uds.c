/* SPDX-License-Identifier: MIT */
/*
 * vsock_uds.c - Unix sockets for the vsock device; see vsock_uds.h.
 */
#include "vsock_uds.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Fill @sa with @path; -ENAMETOOLONG if it does not fit (with its NUL). */
static int make_addr(struct sockaddr_un *sa, const char *path)
{
	size_t n = strlen(path);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (n == 0 || n >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memcpy(sa->sun_path, path, n);
	return 0;
}

/* Is somebody accepting connections on the socket file @path?  1 yes,
 * 0 no (stale: refused or gone), -errno if we cannot tell. */
static int socket_alive(const char *path)
{
	bool in_progress;
	int fd = vsock_uds_connect(path, &in_progress);
	if (fd >= 0) {
		close(fd);
		return 1; /* accepted (or being accepted): alive */
	}
	if (fd == -EAGAIN)
		return 1; /* a full backlog: alive */
	if (fd == -ECONNREFUSED || fd == -ENOENT)
		return 0;
	return fd;
}

int vsock_uds_listen(const char *path, struct vsock_uds_id *id, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	id->valid = false;
	if (strlen(path) > VSOCK_UDS_PATH_MAX || make_addr(&sa, path) < 0) {
		snprintf(err, errlen, "%s: socket path is empty or longer than %d bytes", path,
			 VSOCK_UDS_PATH_MAX);
		return -ENAMETOOLONG;
	}
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s: exists and is not a socket (not replaced)",
				 path);
			return -EEXIST;
		}
		int alive = socket_alive(path);
		if (alive != 0) {
			if (alive > 0)
				snprintf(err, errlen, "%s: socket is in use by another process",
					 path);
			else
				snprintf(err, errlen, "%s: cannot check the existing socket: %s",
					 path, strerror(-alive));
			return alive > 0 ? -EADDRINUSE : alive;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			int e = errno;
			snprintf(err, errlen, "%s: cannot remove the stale socket: %s", path,
				 strerror(e));
			return -e;
		}
	} else if (errno != ENOENT) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: socket: %s", path, strerror(e));
		return -e;
	}
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: bind: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	if (lstat(path, &st) == 0) {
		id->dev = st.st_dev;
		id->ino = st.st_ino;
		id->valid = true;
	}
	if (listen(fd, VSOCK_UDS_BACKLOG) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: listen: %s", path, strerror(e));
		close(fd);
		vsock_uds_unlink(path, id);
		return -e;
	}
	return fd;
}

void vsock_uds_unlink(const char *path, struct vsock_uds_id *id)
{
	struct stat st;
	if (!id->valid)
		return;
	id->valid = false;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == id->dev &&
	    st.st_ino == id->ino)
		unlink(path);
}

int vsock_uds_port_path(char *buf, size_t len, const char *path, uint32_t port)
{
	int n = snprintf(buf, len, "%s_%u", path, port);
	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

int vsock_uds_connect(const char *path, bool *in_progress)
{
	struct sockaddr_un sa;
	*in_progress = false;
	int r = make_addr(&sa, path);
	if (r < 0)
		return r;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	do
		r = connect(fd, (const struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return fd;
	int e = errno;
	if (e == EINPROGRESS) {
		*in_progress = true;
		return fd;
	}
	close(fd);
	return -e;
}

int vsock_uds_connect_result(int fd)
{
	int e = 0;
	socklen_t l = sizeof(e);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
		return -errno;
	return -e;
}
