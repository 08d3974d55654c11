/* SPDX-License-Identifier: MIT */
/*
 * stream.h - the byte pattern and checksum that the stream test tools
 * (tests/guest/vsock-tool.c, tests/guest/tcp-tool.c, tests/lab/uds-tool.c)
 * share, so that data sent by one end can be verified at the other.
 */
#ifndef VISOR_TEST_STREAM_H
#define VISOR_TEST_STREAM_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define FNV_INIT 2166136261u

/* Byte @i of the test stream. */
static inline uint8_t stream_byte(uint64_t i)
{
	return (uint8_t)((i * 2654435761u) >> 13);
}

/* 32-bit FNV-1a over buf[0..n), continuing from @h. */
static inline uint32_t stream_fnv(uint32_t h, const uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ buf[i]) * 16777619u;
	return h;
}

/* Write @total stream bytes to @fd; *sum (if non-NULL) gets their FNV-1a.
 * 0 on success, -1 on a write error. */
static inline int stream_send(int fd, uint64_t total, uint32_t *sum)
{
	static uint8_t buf[65536];
	uint32_t h = FNV_INIT;
	for (uint64_t sent = 0; sent < total;) {
		size_t k = total - sent < sizeof(buf) ? (size_t)(total - sent) : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = stream_byte(sent + i);
		h = stream_fnv(h, buf, k);
		for (size_t o = 0; o < k;) {
			ssize_t w = write(fd, buf + o, k - o);
			if (w <= 0)
				return -1;
			o += (size_t)w;
		}
		sent += k;
	}
	if (sum)
		*sum = h;
	return 0;
}

/* Read @fd to EOF; *bytes gets the count, *sum the FNV-1a, *bad (if
 * non-NULL) how many bytes differ from the stream. */
static inline void stream_recv(int fd, uint64_t *bytes, uint32_t *sum, uint64_t *bad)
{
	static uint8_t buf[65536];
	uint64_t n = 0, wrong = 0;
	uint32_t h = FNV_INIT;
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r <= 0)
			break;
		h = stream_fnv(h, buf, (size_t)r);
		for (ssize_t i = 0; i < r; i++)
			wrong += buf[i] != stream_byte(n + (uint64_t)i);
		n += (uint64_t)r;
	}
	*bytes = n;
	*sum = h;
	if (bad)
		*bad = wrong;
}

/* Send @total stream bytes on the connected socket @fd from a child
 * process while reading the echo here; prints "ECHO-OK n" when the echo is
 * complete and identical ("ECHO-BAD ..." otherwise).  Returns the exit
 * status for main(): 0 or 1. */
static inline int stream_echo_check(int fd, uint64_t total)
{
	uint64_t got, bad;
	uint32_t sum;
	pid_t p = fork();
	if (p == 0) {
		int r = stream_send(fd, total, NULL);
		shutdown(fd, SHUT_WR);
		_exit(r != 0);
	}
	stream_recv(fd, &got, &sum, &bad);
	int st = 1;
	waitpid(p, &st, 0);
	if (got == total && !bad && st == 0) {
		printf("ECHO-OK %llu\n", (unsigned long long)got);
		return 0;
	}
	printf("ECHO-BAD got=%llu bad=%llu\n", (unsigned long long)got, (unsigned long long)bad);
	return 1;
}

#endif
