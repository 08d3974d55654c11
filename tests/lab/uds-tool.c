/* SPDX-License-Identifier: MIT */
/*
 * uds-tool: host-side helper for visor's vsock tests (the Firecracker
 * convention: host programs talk to the guest through Unix sockets).
 *
 *   uds-tool connect PATH PORT BYTES   connect to visor's vsock socket PATH,
 *                                      send "CONNECT PORT\n", expect "OK n\n",
 *                                      send BYTES pattern bytes, shut down the
 *                                      write side, read the echo; prints
 *                                      "ECHO-OK n" when identical
 *   uds-tool connect-raw PATH LINE     send LINE as is; print the reply line
 *                                      or "CLOSED"
 *   uds-tool serve PATH BYTES          listen on PATH (the guest connects to
 *                                      it as port P of cid 2), accept one
 *                                      connection, send BYTES pattern bytes,
 *                                      close; prints "SERVED n sum=S" (S:
 *                                      32-bit FNV-1a, as vsock-tool sink)
 *   uds-tool drop PATH BYTES           like serve, but close after sending
 *                                      BYTES without waiting (peer vanishes)
 * The pattern matches tests/guest/vsock-tool.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../guest/stream.h"

static int uds(const char *path, int listening)
{
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (listening) {
		unlink(path);
		if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 4) < 0) {
			perror("listen");
			exit(2);
		}
	} else if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("connect");
		exit(2);
	}
	return s;
}

static int read_line(int s, char *buf, size_t len)
{
	size_t n = 0;
	while (n + 1 < len) {
		ssize_t r = read(s, buf + n, 1);
		if (r <= 0)
			return -1;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = 0;
	return (int)n;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	alarm(240);
	if (argc >= 5 && !strcmp(argv[1], "connect")) {
		int s = uds(argv[2], 0);
		dprintf(s, "CONNECT %s\n", argv[3]);
		char line[64];
		if (read_line(s, line, sizeof(line)) < 0 || strncmp(line, "OK ", 3)) {
			printf("CONNECT-FAILED\n");
			return 1;
		}
		return stream_echo_check(s, strtoull(argv[4], NULL, 10));
	}
	if (argc >= 4 && !strcmp(argv[1], "connect-raw")) {
		int s = uds(argv[2], 0);
		dprintf(s, "%s", argv[3]);
		char line[256];
		if (read_line(s, line, sizeof(line)) < 0)
			printf("CLOSED\n");
		else
			printf("%s\n", line);
		return 0;
	}
	if (argc >= 4 && (!strcmp(argv[1], "serve") || !strcmp(argv[1], "drop"))) {
		int l = uds(argv[2], 1);
		printf("READY\n");
		fflush(stdout);
		int c = accept(l, NULL, NULL);
		if (c < 0)
			return 2;
		uint64_t total = strtoull(argv[3], NULL, 10);
		uint32_t fnv;
		int r = stream_send(c, total, &fnv);
		if (!strcmp(argv[1], "drop")) {
			/* vanish without a clean shutdown: RST if data is unread */
			struct linger lg = {1, 0};
			setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(c);
		printf("SERVED %llu sum=%08x\n", (unsigned long long)total, fnv);
		return r != 0;
	}
	fprintf(stderr, "usage: see the comment at the top of uds-tool.c\n");
	return 2;
}
