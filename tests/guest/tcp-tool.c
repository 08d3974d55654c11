/* SPDX-License-Identifier: MIT */
/*
 * tcp-tool: both ends of the virtio-net lab tests (built into the guest
 * initrd by tools/mkguest and for the lab's L1 by the Makefile).
 *
 *   tcp-tool send HOST PORT BYTES   connect (retrying for up to 60 s), send
 *                                   BYTES pattern bytes, close; prints
 *                                   "SENT n sum=S"
 *   tcp-tool sink PORT              accept one connection (then stop
 *                                   listening), read to EOF;
 *                                   prints "SINK bytes=n sum=S"
 * S is the 32-bit FNV-1a of the bytes, so both ends can be compared.
 *
 * The live-migration tests and bench/migrate (issue 11) also use:
 *
 *   tcp-tool hold HOST PORT STOPFILE [MS]
 *        (guest) one TCP connection held for as long as the VM lives,
 *        whatever moves under it: connect once (retrying for up to 60 s),
 *        then every MS ms (default 10) send a 16-byte message (sequence
 *        number, CLOCK_MONOTONIC) and read the echoes, which must come
 *        back in order, each exactly once.  Never reconnects: any error
 *        ends it with "HOLD-FAILED ...".  "HOLD-PROGRESS sent=n echoed=n
 *        maxgap_ms=g maxrtt_ms=r" every second (g: the longest time
 *        between two echoes), and once STOPFILE exists: the write side
 *        shut down, the remaining echoes read to EOF, "HOLD-DONE sent=n
 *        echoed=n maxgap_ms=g maxrtt_ms=r stalls=s" (s: ticks skipped
 *        because the socket's send buffer was full), exit 0 when every
 *        message came back.
 *   tcp-tool serve PORT
 *        (peer) the other end: accept one connection, echo every byte,
 *        check that the messages' sequence numbers run 0, 1, 2, ...;
 *        "SERVE-CONNECTED from ADDR", "SERVE-PROGRESS msgs=n maxgap_ms=g"
 *        every second (g: the longest time between two messages, on this
 *        machine's clock: the outage as the network sees it), at EOF
 *        "SERVE-DONE msgs=n bad=b maxgap_ms=g" (exit 0 when b is 0); an
 *        error ends it with "SERVE-FAILED ...".
 *   tcp-tool timesrv PORT
 *        (peer) UDP time server for gapmeter -r (tests/guest/gapmeter.c):
 *        every 24-byte datagram goes back with its third 8-byte word set
 *        to this machine's CLOCK_MONOTONIC in ns.  Runs until killed.
 *   tcp-tool ping ADDR INTERVAL_US [SECS]
 *        (peer) ICMP echo requests to ADDR every INTERVAL_US us on an
 *        absolute schedule (a late send is counted, never made up in a
 *        burst) until SIGTERM/SIGINT or SECS s; 1 s for the last replies,
 *        then "PING sent=n recv=n lost=n dup=n late=n maxrun=k
 *        maxrun_ms=m maxrun_start_ms=t rtt_max_us=r rtt_med_us=q" (k: the
 *        longest run of consecutive requests without a reply; m: the time
 *        from the last request answered before that run to the first one
 *        answered after it, the outage as pings see it; t: when the run
 *        began, CLOCK_MONOTONIC in ms).  Needs CAP_NET_RAW.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "stream.h"

static int64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static volatile sig_atomic_t stop_sig;
static void on_stop(int sig)
{
	(void)sig;
	stop_sig = 1;
}

static void catch_stop(void)
{
	struct sigaction sa = {.sa_handler = on_stop};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

static bool addr_of(const char *host, const char *port, struct sockaddr_in *a)
{
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)atoi(port));
	return inet_pton(AF_INET, host, &a->sin_addr) == 1;
}

/* Connect to @a, retrying for up to 60 s; the socket or -1. */
static int connect_retry(const struct sockaddr_in *a)
{
	for (int i = 0; i < 600; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(s, (const struct sockaddr *)a, sizeof(*a)) == 0)
			return s;
		close(s);
		usleep(100000);
	}
	return -1;
}

/* A listening TCP socket on @port with a backlog of 1, or -1. */
static int listen_on(const char *port)
{
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0) {
		perror("listen");
		return -1;
	}
	return l;
}

/* ---- hold / serve: one long-lived connection ---- */

struct hold_msg {
	uint64_t seq, sent_ns;
};

static int hold(const char *host, const char *port, const char *stopfile, int ms)
{
	struct sockaddr_in a;
	if (!addr_of(host, port, &a) || ms <= 0) {
		fprintf(stderr, "tcp-tool hold: bad address or interval\n");
		return 2;
	}
	int s = connect_retry(&a);
	if (s < 0) {
		printf("HOLD-FAILED connect: %s\n", strerror(errno));
		return 1;
	}
	printf("HOLD-CONNECTED %s:%s\n", host, port);
	int64_t period = (int64_t)ms * 1000000, next = mono_ns(), last_echo = next, progress = next;
	int64_t maxgap = 0, maxrtt = 0;
	uint64_t sent = 0, echoed = 0, stalls = 0;
	size_t have = 0;
	union {
		struct hold_msg m[64];
		uint8_t b[64 * sizeof(struct hold_msg)];
	} in;
	bool closing = false;
	int64_t deadline = 0;
	for (;;) {
		int64_t now = mono_ns();
		if (!closing && access(stopfile, F_OK) == 0) {
			closing = true;
			deadline = now + 60000000000LL;
			shutdown(s, SHUT_WR);
		}
		if (closing && now > deadline) {
			printf("HOLD-FAILED no EOF within 60 s of the shutdown: sent=%llu echoed=%llu\n",
			       (unsigned long long)sent, (unsigned long long)echoed);
			return 1;
		}
		if (!closing && now >= next) {
			struct hold_msg m = {sent, (uint64_t)now};
			ssize_t w = send(s, &m, sizeof(m), MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w == (ssize_t)sizeof(m)) {
				sent++;
			} else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				stalls++;
			} else {
				/* (16 bytes go whole into a socket with room for one byte) */
				printf("HOLD-FAILED send of message %llu: %s\n", (unsigned long long)sent,
				       w < 0 ? strerror(errno) : "short send");
				return 1;
			}
			next += period;
			if (next < now)
				next = now + period; /* late: no burst to catch up */
		}
		if (now >= progress) {
			printf("HOLD-PROGRESS sent=%llu echoed=%llu maxgap_ms=%lld maxrtt_ms=%lld\n",
			       (unsigned long long)sent, (unsigned long long)echoed,
			       (long long)(maxgap / 1000000), (long long)(maxrtt / 1000000));
			fflush(stdout);
			progress = now + 1000000000LL;
		}
		int64_t wait = closing ? 100000000LL : next - now;
		if (wait < 0)
			wait = 0;
		struct pollfd p = {.fd = s, .events = POLLIN};
		struct timespec to = {wait / 1000000000LL, wait % 1000000000LL};
		if (ppoll(&p, 1, &to, NULL) < 0 && errno != EINTR) {
			printf("HOLD-FAILED poll: %s\n", strerror(errno));
			return 1;
		}
		if (!(p.revents & (POLLIN | POLLERR | POLLHUP)))
			continue;
		ssize_t r = recv(s, in.b + have, sizeof(in.b) - have, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r < 0) {
			printf("HOLD-FAILED receive after %llu echoes: %s\n", (unsigned long long)echoed,
			       strerror(errno));
			return 1;
		}
		if (r == 0) {
			if (!closing) {
				printf("HOLD-FAILED the peer closed the connection after %llu echoes\n",
				       (unsigned long long)echoed);
				return 1;
			}
			break;
		}
		have += (size_t)r;
		now = mono_ns();
		size_t n = have / sizeof(struct hold_msg);
		for (size_t i = 0; i < n; i++) {
			if (in.m[i].seq != echoed) {
				printf("HOLD-FAILED echo %llu carries sequence number %llu\n",
				       (unsigned long long)echoed, (unsigned long long)in.m[i].seq);
				return 1;
			}
			echoed++;
			if (now - (int64_t)in.m[i].sent_ns > maxrtt)
				maxrtt = now - (int64_t)in.m[i].sent_ns;
		}
		if (n) {
			if (now - last_echo > maxgap)
				maxgap = now - last_echo;
			last_echo = now;
			have -= n * sizeof(struct hold_msg);
			memmove(in.b, in.b + n * sizeof(struct hold_msg), have);
		}
	}
	close(s);
	printf("HOLD-DONE sent=%llu echoed=%llu maxgap_ms=%lld maxrtt_ms=%lld stalls=%llu\n",
	       (unsigned long long)sent, (unsigned long long)echoed, (long long)(maxgap / 1000000),
	       (long long)(maxrtt / 1000000), (unsigned long long)stalls);
	return echoed == sent && !have ? 0 : 1;
}

static int serve(const char *port)
{
	int l = listen_on(port);
	if (l < 0)
		return 2;
	printf("LISTENING %s\n", port);
	fflush(stdout);
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	int c = accept(l, (struct sockaddr *)&from, &fl);
	close(l);
	if (c < 0) {
		printf("SERVE-FAILED accept: %s\n", strerror(errno));
		return 1;
	}
	char fa[INET_ADDRSTRLEN] = "?";
	inet_ntop(AF_INET, &from.sin_addr, fa, sizeof(fa));
	printf("SERVE-CONNECTED from %s\n", fa);
	fflush(stdout);
	union {
		struct hold_msg m[64];
		uint8_t b[64 * sizeof(struct hold_msg)];
	} buf;
	size_t have = 0; /* bytes of a partial message at the start of buf */
	uint64_t msgs = 0, bad = 0;
	int64_t last = mono_ns(), maxgap = 0, progress = last + 1000000000LL;
	for (;;) {
		int64_t now = mono_ns();
		if (now >= progress) {
			printf("SERVE-PROGRESS msgs=%llu maxgap_ms=%lld\n", (unsigned long long)msgs,
			       (long long)(maxgap / 1000000));
			fflush(stdout);
			progress = now + 1000000000LL;
		}
		struct pollfd p = {.fd = c, .events = POLLIN};
		int pr = poll(&p, 1, (int)((progress - now) / 1000000) + 1);
		if (pr < 0 && errno != EINTR) {
			printf("SERVE-FAILED poll: %s\n", strerror(errno));
			return 1;
		}
		if (pr <= 0)
			continue;
		ssize_t r = read(c, buf.b + have, sizeof(buf.b) - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			printf("SERVE-FAILED read after %llu messages: %s\n", (unsigned long long)msgs,
			       strerror(errno));
			return 1;
		}
		if (r == 0)
			break;
		now = mono_ns();
		size_t total = have + (size_t)r, n = total / sizeof(struct hold_msg);
		for (size_t i = 0; i < n; i++) {
			if (buf.m[i].seq != msgs + i && bad++ < 5)
				printf("SERVE-BAD message %llu carries sequence number %llu\n",
				       (unsigned long long)(msgs + i), (unsigned long long)buf.m[i].seq);
		}
		if (n) {
			msgs += n;
			if (now - last > maxgap)
				maxgap = now - last;
			last = now;
		}
		/* echo what came, whole messages or not: the stream is the stream */
		for (size_t o = have; o < total;) {
			ssize_t w = write(c, buf.b + o, total - o);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				printf("SERVE-FAILED write after %llu messages: %s\n",
				       (unsigned long long)msgs, w < 0 ? strerror(errno) : "closed");
				return 1;
			}
			o += (size_t)w;
		}
		have = total - n * sizeof(struct hold_msg);
		memmove(buf.b, buf.b + n * sizeof(struct hold_msg), have);
	}
	close(c);
	printf("SERVE-DONE msgs=%llu bad=%llu maxgap_ms=%lld%s\n", (unsigned long long)msgs,
	       (unsigned long long)bad, (long long)(maxgap / 1000000), have ? " (partial message at EOF)" : "");
	return bad || have ? 1 : 0;
}

static int timesrv(const char *port)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("bind");
		return 2;
	}
	printf("TIMESRV %s\n", port);
	fflush(stdout);
	for (;;) {
		uint64_t m[3];
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t r = recvfrom(s, m, sizeof(m), 0, (struct sockaddr *)&from, &fl);
		if (r != (ssize_t)sizeof(m))
			continue;
		m[2] = (uint64_t)mono_ns();
		sendto(s, m, sizeof(m), 0, (struct sockaddr *)&from, fl);
	}
}

/* ---- ping ---- */

static uint16_t icmp_sum(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t s = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (n & 1)
		s += (uint32_t)b[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int ping(const char *host, long interval_us, long secs)
{
	struct sockaddr_in a;
	if (!addr_of(host, "0", &a) || interval_us <= 0) {
		fprintf(stderr, "tcp-tool ping: bad address or interval\n");
		return 2;
	}
	int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	if (s < 0) {
		perror("tcp-tool ping: raw socket");
		return 2;
	}
	catch_stop();
	size_t cap = 1 << 16;
	int64_t *sent_at = malloc(cap * sizeof(*sent_at)); /* send time of request k */
	int64_t *rtt = malloc(cap * sizeof(*rtt));	    /* -1: no reply */
	if (!sent_at || !rtt)
		return 2;
	uint16_t id = (uint16_t)getpid();
	int64_t period = interval_us * 1000LL, start = mono_ns(), next = start;
	int64_t end = secs > 0 ? start + secs * 1000000000LL : INT64_MAX, drain_end = 0;
	uint64_t n = 0, late = 0, dup = 0;
	for (;;) {
		int64_t now = mono_ns();
		if (!drain_end && (stop_sig || now >= end))
			drain_end = now + 1000000000LL;
		if (drain_end && now >= drain_end)
			break;
		if (!drain_end && now >= next) {
			if (n == cap) {
				cap *= 2;
				int64_t *x = realloc(sent_at, cap * sizeof(*x)), *y = x ? realloc(rtt, cap * sizeof(*y)) : NULL;
				if (!x || !y) {
					fprintf(stderr, "tcp-tool ping: out of memory\n");
					return 2;
				}
				sent_at = x;
				rtt = y;
			}
			struct {
				uint8_t type, code;
				uint16_t sum, id, seq;
				uint64_t k;
				int64_t t;
			} __attribute__((packed)) req = {8, 0, 0, htons(id), htons((uint16_t)n), n, now};
			req.sum = htons(icmp_sum(&req, sizeof(req)));
			sent_at[n] = now;
			rtt[n] = -1;
			if (sendto(s, &req, sizeof(req), 0, (struct sockaddr *)&a, sizeof(a)) == (ssize_t)sizeof(req))
				n++;
			next += period;
			if (next <= now) {
				late++;
				next = now + period;
			}
		}
		int64_t wait = (drain_end ? drain_end : next) - mono_ns();
		if (wait < 0)
			wait = 0;
		struct pollfd p = {.fd = s, .events = POLLIN};
		struct timespec to = {wait / 1000000000LL, wait % 1000000000LL};
		if (ppoll(&p, 1, &to, NULL) <= 0)
			continue;
		uint8_t buf[256];
		ssize_t r;
		while ((r = recv(s, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
			int64_t got = mono_ns();
			size_t ihl = (size_t)(buf[0] & 15) * 4;
			if ((size_t)r < ihl + 24 || buf[ihl] != 0 /* echo reply */)
				continue;
			uint16_t rid;
			uint64_t k;
			memcpy(&rid, buf + ihl + 4, 2);
			memcpy(&k, buf + ihl + 8, 8);
			if (ntohs(rid) != id || k >= n)
				continue;
			if (rtt[k] >= 0)
				dup++;
			else
				rtt[k] = got - sent_at[k];
		}
	}
	/* the longest run of unanswered requests, and the outage around it */
	uint64_t recv_n = 0, maxrun = 0, run = 0, run_start = 0, best_start = 0;
	int64_t maxrun_ns = 0;
	for (uint64_t k = 0; k <= n; k++) {
		if (k < n && rtt[k] < 0) {
			if (!run++)
				run_start = k;
			continue;
		}
		if (run > maxrun) {
			maxrun = run;
			best_start = run_start;
			/* from the last answered request before to the first after */
			int64_t from = run_start ? sent_at[run_start - 1] : start;
			int64_t to = k < n ? sent_at[k] : mono_ns();
			maxrun_ns = to - from;
		}
		run = 0;
		if (k < n)
			recv_n++;
	}
	int64_t *r2 = malloc((recv_n + 1) * sizeof(*r2)), rmax = -1, rmed = -1;
	if (r2 && recv_n) {
		uint64_t j = 0;
		for (uint64_t k = 0; k < n; k++)
			if (rtt[k] >= 0)
				r2[j++] = rtt[k];
		qsort(r2, j, sizeof(*r2), cmp_i64);
		rmax = r2[j - 1];
		rmed = r2[j / 2];
	}
	printf("PING sent=%llu recv=%llu lost=%llu dup=%llu late=%llu maxrun=%llu maxrun_ms=%lld "
	       "maxrun_start_ms=%lld rtt_max_us=%lld rtt_med_us=%lld\n",
	       (unsigned long long)n, (unsigned long long)recv_n, (unsigned long long)(n - recv_n),
	       (unsigned long long)dup, (unsigned long long)late, (unsigned long long)maxrun,
	       (long long)(maxrun_ns / 1000000),
	       maxrun ? (long long)(sent_at[best_start] / 1000000) : -1LL,
	       rmax < 0 ? -1LL : (long long)(rmax / 1000), rmed < 0 ? -1LL : (long long)(rmed / 1000));
	return 0;
}

int main(int argc, char **argv)
{
	uint32_t h = FNV_INIT;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 5 && !strcmp(argv[1], "hold"))
		return hold(argv[2], argv[3], argv[4], argc >= 6 ? atoi(argv[5]) : 10);
	if (argc >= 3 && !strcmp(argv[1], "serve"))
		return serve(argv[2]);
	if (argc >= 3 && !strcmp(argv[1], "timesrv"))
		return timesrv(argv[2]);
	if (argc >= 4 && !strcmp(argv[1], "ping"))
		return ping(argv[2], atol(argv[3]), argc >= 5 ? atol(argv[4]) : 0);
	alarm(300);
	if (argc >= 5 && !strcmp(argv[1], "send")) {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
		inet_pton(AF_INET, argv[2], &a.sin_addr);
		int s = connect_retry(&a);
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
		int l = listen_on(argv[2]);
		if (l < 0)
			return 2;
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
	fprintf(stderr, "usage: tcp-tool send HOST PORT BYTES | sink PORT | hold HOST PORT STOPFILE [MS] | "
			"serve PORT | timesrv PORT | ping ADDR INTERVAL_US [SECS]\n");
	return 2;
}
