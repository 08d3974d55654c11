/* SPDX-License-Identifier: MIT */
/*
 * gapmeter: downtime as the guest sees it (issue 11, bench/migrate and
 * tests/lab/migrate-tests.sh).  Built into the guest initrd as
 * /bin/gapmeter by tools/mkguest.
 *
 *   gapmeter [-r ADDR:PORT] [-p MS]
 *
 * A tight loop reads CLOCK_MONOTONIC and CLOCK_REALTIME and keeps the
 * largest gap between two consecutive reads of each: while the VM does not
 * run (a migration's switch-over, a pause) the loop cannot run either, so
 * the gap is the downtime as far as the guest's clocks show it.
 *
 * A VMM may hide a stop from the guest's clocks altogether (kvmclock and
 * the TSC set back to where they were at the stop, as visor does for a
 * pause): then no gap shows, and only an outside clock can tell.  With
 * -r the loop also sends a UDP probe every 10 ms to a time server at
 * ADDR:PORT (`tcp-tool timesrv PORT` on the peer, see tcp-tool.c), which
 * answers with its own CLOCK_MONOTONIC.  offset = peer time - guest time
 * at the probe's midpoint; a stop hidden from the guest's clock raises the
 * offset by the hidden time.  The report compares the offset at the
 * start of the window with the offset at the report (each the sample with
 * the shortest round trip among the first / the latest 32 replies): that
 * difference is the time the guest's clock lost (ref_lost_us, within
 * +- ref_err_us, half the two samples' round trips).
 *
 * Gaps caused by the guest itself (this task preempted by another guest
 * task) are told apart: at the end of every gap above 5 us the task's
 * /proc/thread-self/schedstat is read, and a gap during which the task
 * was not scheduled in again (its count of time slices unchanged) is one
 * where the vCPU, or the whole VM, did not run (or served interrupts):
 * vm_max_us is the largest of those, mono_max_us the largest of all.
 *
 * Signals: SIGUSR1 prints the report; SIGUSR2 prints it and starts a new
 * window (everything reset); SIGTERM/SIGINT print it and exit.  -p MS
 * prints it every MS ms of CLOCK_MONOTONIC as well.  One line each:
 *
 *   GAP seq=N window_ms=W loops=L mono_max_us=X mono_max_end_ms=E
 *       vm_max_us=V rt_max_us=R mono_back=0 rt_back=B over1ms=a
 *       over10ms=b over100ms=c top=E1:G1,E2:G2,... [ref_probes=P
 *       ref_replies=Q ref_lost_us=D ref_err_us=F ref_rtt_min_us=M
 *       ref_silence_ms=S ref_off0_us=O0 ref_off1_us=O1]
 *
 * mono_max_end_ms: CLOCK_MONOTONIC (ms) at the end of the largest gap;
 * mono_back / rt_back: reads that went backwards (CLOCK_MONOTONIC never
 * may); overNms: gaps longer than N ms; top: the 8 largest gaps, each as
 * CLOCK_MONOTONIC (ms) at its end and its length (us), in the order they
 * ended; ref_silence_ms: the longest time without a reply from the time
 * server; ref_off0_us / ref_off1_us: the offsets (peer's clock minus the
 * guest's) at the start and at the end of the window, with which a caller
 * places the guest's gaps on the peer's clock (to find the one at a
 * migration's switch-over among those the guest's own scheduling made).  A value that could not be
 * measured is -1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROBE_NS 10000000LL /* a time-server probe every 10 ms */
#define REF_KEEP 100	    /* samples considered at each end of the window: 1 s */
#define SCHED_GAP_NS 5000LL
#define TOP 8 /* the largest gaps, with when they ended */

static volatile sig_atomic_t want_report, want_reset, want_exit;

static void on_sig(int sig)
{
	if (sig == SIGUSR1)
		want_report = 1;
	else if (sig == SIGUSR2)
		want_reset = want_report = 1;
	else
		want_exit = want_report = 1;
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

/* A time-server sample: offset = peer - guest midpoint, and its round trip. */
struct sample {
	int64_t offset, rtt;
};

struct window {
	int64_t start_ns, loops;
	int64_t mono_max, mono_max_end, vm_max, rt_max;
	int64_t mono_back, rt_back, over1, over10, over100;
	struct {
		int64_t end, gap;
	} top[TOP];
	/* time server */
	int64_t probes, replies, silence_max, last_reply;
	struct sample first[REF_KEEP], last[REF_KEEP];
	int nfirst, nlast, ilast;
};

static struct window w;
static unsigned seq;
static int sched = -1; /* /proc/thread-self/schedstat */

static void reset(int64_t now)
{
	memset(&w, 0, sizeof(w));
	w.start_ns = now;
	w.last_reply = now;
}

/* The sample with the shortest round trip among @n, or NULL. */
static const struct sample *best(const struct sample *s, int n)
{
	const struct sample *b = NULL;
	for (int i = 0; i < n; i++)
		if (!b || s[i].rtt < b->rtt)
			b = &s[i];
	return b;
}

static void report(int64_t now, bool ref)
{
	char line[1024];
	int n = snprintf(line, sizeof(line),
			 "GAP seq=%u window_ms=%lld loops=%lld mono_max_us=%lld mono_max_end_ms=%lld "
			 "vm_max_us=%lld rt_max_us=%lld mono_back=%lld rt_back=%lld over1ms=%lld "
			 "over10ms=%lld over100ms=%lld",
			 seq++, (long long)((now - w.start_ns) / 1000000), (long long)w.loops,
			 (long long)(w.mono_max / 1000), (long long)(w.mono_max_end / 1000000),
			 sched < 0 ? -1LL : (long long)(w.vm_max / 1000), (long long)(w.rt_max / 1000),
			 (long long)w.mono_back, (long long)w.rt_back, (long long)w.over1,
			 (long long)w.over10, (long long)w.over100);
	/* the largest gaps in the order they ended: "end_ms:gap_us" */
	bool done[TOP] = {false};
	for (int k = 0; k < TOP && n > 0 && (size_t)n < sizeof(line); k++) {
		int e = -1;
		for (int i = 0; i < TOP; i++)
			if (!done[i] && w.top[i].gap && (e < 0 || w.top[i].end < w.top[e].end))
				e = i;
		if (e < 0)
			break;
		done[e] = true;
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%s%lld:%lld", k ? "," : " top=",
			      (long long)(w.top[e].end / 1000000), (long long)(w.top[e].gap / 1000));
	}
	if (ref && n > 0 && (size_t)n < sizeof(line)) {
		const struct sample *a = best(w.first, w.nfirst), *b = best(w.last, w.nlast);
		int64_t silence = now - w.last_reply;
		if (silence < w.silence_max)
			silence = w.silence_max;
		long long lost = -1, err = -1, rmin = -1, off0 = -1, off1 = -1;
		if (a && b) {
			lost = (b->offset - a->offset) / 1000;
			err = (a->rtt + b->rtt) / 2000;
			rmin = (a->rtt < b->rtt ? a->rtt : b->rtt) / 1000;
			off0 = a->offset / 1000;
			off1 = b->offset / 1000;
		}
		n += snprintf(line + n, sizeof(line) - (size_t)n,
			      " ref_probes=%lld ref_replies=%lld ref_lost_us=%lld ref_err_us=%lld "
			      "ref_rtt_min_us=%lld ref_silence_ms=%lld ref_off0_us=%lld ref_off1_us=%lld",
			      (long long)w.probes, (long long)w.replies, lost, err, rmin,
			      (long long)(silence / 1000000), off0, off1);
	}
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* one write(2): the line does not interleave with other writers */
	for (int o = 0; o < n;) {
		ssize_t r = write(STDOUT_FILENO, line + o, (size_t)(n - o));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		o += (int)r;
	}
}

/* The number of time slices this thread has had (schedstat's third
 * field), or -1. */
static long long slices(void)
{
	char buf[128];
	if (sched < 0 || lseek(sched, 0, SEEK_SET) < 0)
		return -1;
	ssize_t r = read(sched, buf, sizeof(buf) - 1);
	if (r <= 0)
		return -1;
	buf[r] = 0;
	unsigned long long run, wait, count;
	if (sscanf(buf, "%llu %llu %llu", &run, &wait, &count) != 3)
		return -1;
	return (long long)count;
}

int main(int argc, char **argv)
{
	const char *ref = NULL;
	int64_t period_ns = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-r") && i + 1 < argc)
			ref = argv[++i];
		else if (!strcmp(argv[i], "-p") && i + 1 < argc)
			period_ns = strtoll(argv[++i], NULL, 10) * 1000000LL;
		else {
			fprintf(stderr, "usage: gapmeter [-r ADDR:PORT] [-p MS]\n");
			return 2;
		}
	}
	int sock = -1;
	if (ref) {
		char host[64];
		const char *colon = strrchr(ref, ':');
		struct sockaddr_in a = {.sin_family = AF_INET};
		if (!colon || (size_t)(colon - ref) >= sizeof(host)) {
			fprintf(stderr, "gapmeter: -r ADDR:PORT\n");
			return 2;
		}
		memcpy(host, ref, (size_t)(colon - ref));
		host[colon - ref] = 0;
		a.sin_port = htons((uint16_t)atoi(colon + 1));
		sock = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		if (sock < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
		    connect(sock, (struct sockaddr *)&a, sizeof(a))) {
			perror("gapmeter: time server");
			return 2;
		}
	}
	struct sigaction sa = {.sa_handler = on_sig};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sched = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);

	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	int64_t prev = ts_ns(&t);
	clock_gettime(CLOCK_REALTIME, &t);
	int64_t rprev = ts_ns(&t);
	reset(prev);
	long long pcount = slices();
	int64_t next_probe = prev, next_print = period_ns ? prev + period_ns : INT64_MAX;
	uint64_t probe_seq = 0;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		int64_t now = ts_ns(&t);
		clock_gettime(CLOCK_REALTIME, &t);
		int64_t rnow = ts_ns(&t);
		int64_t d = now - prev, rd = rnow - rprev;
		w.loops++;
		if (d < 0) {
			w.mono_back++;
		} else if (d > SCHED_GAP_NS) {
			long long pc = slices();
			if (d > w.mono_max) {
				w.mono_max = d;
				w.mono_max_end = now;
			}
			int small = 0;
			for (int i = 1; i < TOP; i++)
				if (w.top[i].gap < w.top[small].gap)
					small = i;
			if (d > w.top[small].gap) {
				w.top[small].gap = d;
				w.top[small].end = now;
			}
			/* not scheduled in again: the vCPU or the VM stopped */
			if (pc >= 0 && pc == pcount && d > w.vm_max)
				w.vm_max = d;
			pcount = pc;
			w.over1 += d > 1000000;
			w.over10 += d > 10000000;
			w.over100 += d > 100000000;
			/* the gap's end, not its start (the read above took time) */
			clock_gettime(CLOCK_MONOTONIC, &t);
			now = ts_ns(&t);
			clock_gettime(CLOCK_REALTIME, &t);
			rnow = ts_ns(&t);
		}
		if (rd < 0)
			w.rt_back++;
		else if (rd > w.rt_max)
			w.rt_max = rd;
		prev = now;
		rprev = rnow;

		if (sock >= 0) {
			uint64_t msg[3];
			ssize_t r;
			while ((r = recv(sock, msg, sizeof(msg), MSG_DONTWAIT)) == (ssize_t)sizeof(msg)) {
				clock_gettime(CLOCK_MONOTONIC, &t);
				int64_t got = ts_ns(&t), sent = (int64_t)msg[1];
				if (sent < w.start_ns || sent > got)
					continue; /* a probe of an earlier window */
				struct sample s = {(int64_t)msg[2] - (sent + (got - sent) / 2), got - sent};
				if (w.nfirst < REF_KEEP)
					w.first[w.nfirst++] = s;
				w.last[w.ilast] = s;
				w.ilast = (w.ilast + 1) % REF_KEEP;
				if (w.nlast < REF_KEEP)
					w.nlast++;
				if (got - w.last_reply > w.silence_max)
					w.silence_max = got - w.last_reply;
				w.last_reply = got;
				w.replies++;
			}
			if (now >= next_probe) {
				msg[0] = probe_seq++;
				msg[1] = (uint64_t)now;
				msg[2] = 0;
				if (send(sock, msg, sizeof(msg), MSG_DONTWAIT) == (ssize_t)sizeof(msg))
					w.probes++;
				next_probe = now + PROBE_NS;
			}
		}
		if (now >= next_print) {
			want_report = 1;
			next_print = now + period_ns;
		}
		if (want_report) {
			want_report = 0;
			report(now, sock >= 0);
			if (want_exit)
				return 0;
			if (want_reset) {
				want_reset = 0;
				reset(now);
			}
			clock_gettime(CLOCK_MONOTONIC, &t);
			prev = ts_ns(&t);
			clock_gettime(CLOCK_REALTIME, &t);
			rprev = ts_ns(&t);
			pcount = slices();
		}
	}
}
