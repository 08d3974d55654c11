/* SPDX-License-Identifier: MIT */
/*
 * vsock-tool: guest-side helper for visor's vsock tests (static binary in
 * the guest initrd; busybox has no AF_VSOCK client or server).
 *
 *   vsock-tool listen PORT          accept one connection, echo everything
 *                                   back until EOF, then exit 0
 *   vsock-tool serve PORT N         accept N connections one after another,
 *                                   echo each (for concurrent host clients)
 *   vsock-tool send CID PORT BYTES  connect, send BYTES bytes of a
 *                                   deterministic pattern, then read the echo
 *                                   and print "ECHO-OK n" if identical
 *   vsock-tool sink CID PORT        connect, read until EOF, print
 *                                   "SINK bytes=N sum=S" (S: 32-bit FNV-1a)
 */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stream.h"

static int echo(int c)
{
	static char buf[65536];
	for (;;) {
		ssize_t n = read(c, buf, sizeof(buf));
		if (n <= 0)
			return n < 0;
		for (ssize_t o = 0; o < n;) {
			ssize_t w = write(c, buf + o, (size_t)(n - o));
			if (w <= 0)
				return 1;
			o += w;
		}
	}
}

static int listener(unsigned port)
{
	int s = socket(AF_VSOCK, SOCK_STREAM, 0);
	struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_ANY};
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 16) < 0) {
		perror("vsock listen");
		exit(2);
	}
	printf("LISTENING %u\n", port);
	fflush(stdout);
	return s;
}

static int connect_to(unsigned cid, unsigned port)
{
	int s = socket(AF_VSOCK, SOCK_STREAM, 0);
	struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_port = port, .svm_cid = cid};
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("vsock connect");
		exit(2);
	}
	return s;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "listen")) {
		int s = listener((unsigned)atoi(argv[2]));
		int c = accept(s, NULL, NULL);
		return c < 0 ? 2 : echo(c);
	}
	if (argc >= 4 && !strcmp(argv[1], "serve")) {
		int s = listener((unsigned)atoi(argv[2]));
		int n = atoi(argv[3]), rc = 0;
		for (int i = 0; i < n; i++) {
			int c = accept(s, NULL, NULL);
			if (c < 0)
				return 2;
			if (fork() == 0)
				_exit(echo(c));
			close(c);
		}
		while (n-- > 0) {
			int st;
			if (wait(&st) < 0 || st)
				rc = 1;
		}
		return rc;
	}
	if (argc >= 5 && !strcmp(argv[1], "send")) {
		int s = connect_to((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]));
		return stream_echo_check(s, strtoull(argv[4], NULL, 10));
	}
	if (argc >= 4 && !strcmp(argv[1], "sink")) {
		int s = connect_to((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]));
		uint64_t n_total;
		uint32_t h;
		stream_recv(s, &n_total, &h, NULL);
		printf("SINK bytes=%llu sum=%08x\n", (unsigned long long)n_total, h);
		return 0;
	}
	fprintf(stderr, "usage: vsock-tool listen PORT | serve PORT N | send CID PORT BYTES | sink CID PORT\n");
	return 2;
}
