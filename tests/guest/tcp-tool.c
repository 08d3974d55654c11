/* SPDX-License-Identifier: MIT */
/*
 * tcp-tool: both ends of the virtio-net lab test (built into the guest
 * initrd by tools/mkguest and for the lab's L1 by the Makefile).
 *
 *   tcp-tool send HOST PORT BYTES   connect (retrying for up to 60 s), send
 *                                   BYTES pattern bytes, close; prints
 *                                   "SENT n sum=S"
 *   tcp-tool sink PORT              accept one connection (then stop
 *                                   listening), read to EOF;
 *                                   prints "SINK bytes=n sum=S"
 * S is the 32-bit FNV-1a of the bytes, so both ends can be compared.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stream.h"

int main(int argc, char **argv)
{
	uint32_t h = FNV_INIT;
	alarm(300);
	if (argc >= 5 && !strcmp(argv[1], "send")) {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
		inet_pton(AF_INET, argv[2], &a.sin_addr);
		int s = -1;
		for (int i = 0; i < 600; i++) {
			s = socket(AF_INET, SOCK_STREAM, 0);
			if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
				break;
			close(s);
			s = -1;
			usleep(100000);
		}
		if (s < 0) {
			perror("connect");
			return 2;
		}
		uint64_t total = strtoull(argv[4], NULL, 10);
		if (stream_send(s, total, &h)) {
			perror("write");
			return 1;
		}
		close(s);
		printf("SENT %llu sum=%08x\n", (unsigned long long)total, h);
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "sink")) {
		int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
		if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0) {
			perror("listen");
			return 2;
		}
		printf("LISTENING %s\n", argv[2]);
		fflush(stdout);
		int c = accept(l, NULL, NULL);
		/* One connection only: a sender's next connection (e.g. in a
		 * loop of transfers) must be refused and retried, not queued
		 * in the backlog and reset when this process exits. */
		close(l);
		uint64_t n;
		stream_recv(c, &n, &h, NULL);
		printf("SINK bytes=%llu sum=%08x\n", (unsigned long long)n, h);
		return 0;
	}
	fprintf(stderr, "usage: tcp-tool send HOST PORT BYTES | sink PORT\n");
	return 2;
}
