/* SPDX-License-Identifier: MIT */
/*
 * mig-proxy: a corrupting relay for the live-migration tests.
 *
 *   mig-proxy LISTEN_PATH TARGET_PATH OFFSET
 *
 * Listens on the Unix socket LISTEN_PATH, accepts one connection, connects
 * to TARGET_PATH and relays bytes both ways, except that the byte at
 * OFFSET of the client-to-target direction is XORed with 0x01 (one flipped
 * bit, as a bad link or disk would).  Prints "FLIPPED OFFSET" when it did,
 * and ends when either side closes.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int uds(const char *path, int listening)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (s < 0)
		return -1;
	if (listening) {
		unlink(path);
		if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 1))
			return -1;
		return s;
	}
	return connect(s, (struct sockaddr *)&a, sizeof(a)) ? -1 : s;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: mig-proxy LISTEN_PATH TARGET_PATH OFFSET\n");
		return 2;
	}
	unsigned long long flip = strtoull(argv[3], NULL, 0), seen = 0;
	signal(SIGPIPE, SIG_IGN); /* a side that went away is a write error here */
	int l = uds(argv[1], 1);
	if (l < 0) {
		perror("mig-proxy: listen");
		return 1;
	}
	int a = accept(l, NULL, NULL);
	int b = a < 0 ? -1 : uds(argv[2], 0);
	if (a < 0 || b < 0) {
		perror("mig-proxy: accept/connect");
		return 1;
	}
	static char buf[1 << 16];
	struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (int i = 0; i < 2; i++) {
			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0)
				return 0;
			if (i == 0) {
				if (flip >= seen && flip < seen + (unsigned long long)n) {
					buf[flip - seen] ^= 0x01;
					printf("FLIPPED %llu\n", flip);
					fflush(stdout);
				}
				seen += (unsigned long long)n;
			}
			if (write_all(p[1 - i].fd, buf, (size_t)n)) {
				/* the target gave up: pass on what it said last */
				if (i == 0)
					while ((n = read(b, buf, sizeof(buf))) > 0 &&
					       !write_all(a, buf, (size_t)n))
						;
				return 0;
			}
		}
	}
}
