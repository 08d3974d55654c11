/* SPDX-License-Identifier: MIT */
/*
 * apitime - time a VMM's control socket: from fork/exec to the socket
 * accepting (wall and CPU time of the VMM), the latency of a simple
 * request, and optionally from the start command to a console marker.
 *
 *   apitime -k visor|qmp -s SOCK [-n REQS] [-l LABEL] [-m MARKER -t SECS]
 *           [-r 'METHOD PATH BODY']... -- CMD ARGS...
 *
 *   visor: HTTP/1.1 on the Unix socket; "ready" = the first GET / answered;
 *          the request timed is GET /; -r requests are sent in order (the
 *          last one starts the VM), each must answer 2xx
 *   qmp:   QEMU's QMP; "ready" = the greeting read; then qmp_capabilities;
 *          the request timed is query-status; the start command is "cont"
 *
 * Prints one line:
 *   APITIME label=L ready_us=N ready_cpu_us=N lat_med_us=N lat_p90_us=N
 *           [start_us=N] rc=0
 * CPU time is the VMM's, summed over its threads from /proc/PID/task/
 * (schedstat: nanoseconds on CPU), sampled right when the socket is ready.
 *
 *   apitime -k exec [-l LABEL] -- CMD ARGS...
 *
 * measures the floor every process start pays on this host: fork/exec of
 * CMD (a static "hello") to its exit, wall and CPU time (rusage).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

static pid_t child; /* killed on every way out */

static void die(const char *m)
{
	if (child > 0)
		kill(child, SIGKILL);
	fprintf(stderr, "apitime: %s: %s\n", m, strerror(errno));
	exit(2);
}

/* CPU time of every thread of @pid, microseconds. */
static uint64_t cpu_us(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	uint64_t ns = 0;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[320];
		snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
		FILE *f = fopen(p, "r");
		unsigned long long v;
		if (f && fscanf(f, "%llu", &v) == 1)
			ns += v;
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return ns / 1000;
}

static int try_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		return fd;
	close(fd);
	return -1;
}

static char rbuf[65536];
static size_t rlen;

/* Read until @pred says a whole reply is in rbuf; returns its length. */
static size_t read_reply(int fd, size_t (*pred)(void), int timeout_ms)
{
	uint64_t end = now_us() + (uint64_t)timeout_ms * 1000;
	for (;;) {
		size_t n = pred();
		if (n)
			return n;
		struct pollfd p = {fd, POLLIN, 0};
		int left = (int)((end - now_us()) / 1000);
		if (now_us() >= end || poll(&p, 1, left < 1 ? 1 : left) <= 0) {
			errno = ETIMEDOUT;
			die("no reply");
		}
		ssize_t r = read(fd, rbuf + rlen, sizeof(rbuf) - 1 - rlen);
		if (r <= 0)
			die("connection closed");
		rlen += (size_t)r;
		rbuf[rlen] = 0;
	}
}

static void consume(size_t n)
{
	memmove(rbuf, rbuf + n, rlen - n);
	rlen -= n;
	rbuf[rlen] = 0;
}

/* One HTTP response (Content-Length framing). */
static size_t http_complete(void)
{
	char *h = strstr(rbuf, "\r\n\r\n");
	if (!h)
		return 0;
	size_t head = (size_t)(h - rbuf) + 4, body = 0;
	char *cl = strcasestr(rbuf, "Content-Length:");
	if (cl && cl < h)
		body = strtoul(cl + 15, NULL, 10);
	return rlen >= head + body ? head + body : 0;
}

/* One QMP line that is a reply ("return" or "error"), skipping events. */
static size_t qmp_line(void)
{
	for (;;) {
		char *nl = strchr(rbuf, '\n');
		if (!nl)
			return 0;
		size_t n = (size_t)(nl - rbuf) + 1;
		if (strstr(rbuf, "\"event\"") && strstr(rbuf, "\"event\"") < nl) {
			consume(n);
			continue;
		}
		return n;
	}
}

static void send_all(int fd, const char *s)
{
	size_t len = strlen(s);
	while (len) {
		ssize_t w = write(fd, s, len);
		if (w <= 0)
			die("write");
		s += w;
		len -= (size_t)w;
	}
}

static int http(int fd, const char *method, const char *path, const char *body)
{
	char req[8192];
	snprintf(req, sizeof(req),
		 "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
		 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		 method, path, strlen(body), body);
	send_all(fd, req);
	size_t n = read_reply(fd, http_complete, 10000);
	int status = atoi(rbuf + 9);
	if (status >= 300)
		fprintf(stderr, "apitime: %s %s -> %.*s\n", method, path, (int)n, rbuf);
	consume(n);
	return status;
}

static void qmp(int fd, const char *cmd)
{
	send_all(fd, cmd);
	consume(read_reply(fd, qmp_line, 10000));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *kind = NULL, *sock = NULL, *label = "vmm", *marker = NULL;
	int nreq = 200, tmo = 60, opt;
	const char *reqs[32];
	int nreqs = 0;
	while ((opt = getopt(argc, argv, "+k:s:n:l:m:t:r:")) != -1) {
		switch (opt) {
		case 'k': kind = optarg; break;
		case 's': sock = optarg; break;
		case 'n': nreq = atoi(optarg); break;
		case 'l': label = optarg; break;
		case 'm': marker = optarg; break;
		case 't': tmo = atoi(optarg); break;
		case 'r':
			if (nreqs < 32)
				reqs[nreqs++] = optarg;
			break;
		default: return 2;
		}
	}
	if (!kind || (!sock && strcmp(kind, "exec")) || optind >= argc || nreq < 1 || nreq > 100000) {
		fprintf(stderr, "usage: apitime -k visor|qmp -s SOCK [-n N] [-l LABEL] "
				"[-m MARKER -t SECS] [-r 'METHOD PATH BODY']... -- CMD...\n");
		return 2;
	}
	bool is_qmp = !strcmp(kind, "qmp");
	if (!strcmp(kind, "exec")) {
		uint64_t t = now_us();
		pid_t p = fork();
		if (p == 0) {
			int null = open("/dev/null", O_RDWR);
			dup2(null, 1);
			execvp(argv[optind], argv + optind);
			_exit(127);
		}
		int st;
		struct rusage ru;
		if (p < 0 || wait4(p, &st, 0, &ru) != p)
			die("wait4");
		uint64_t wall = now_us() - t;
		uint64_t cpu = (uint64_t)ru.ru_utime.tv_sec * 1000000ULL + (uint64_t)ru.ru_utime.tv_usec +
			       (uint64_t)ru.ru_stime.tv_sec * 1000000ULL + (uint64_t)ru.ru_stime.tv_usec;
		printf("APITIME label=%s ready_us=%llu ready_cpu_us=%llu rc=%d\n", label,
		       (unsigned long long)wall, (unsigned long long)cpu,
		       WIFEXITED(st) ? WEXITSTATUS(st) : 1);
		return 0;
	}
	unlink(sock);
	int out[2];
	if (pipe2(out, O_CLOEXEC))
		die("pipe");
	uint64_t t0 = now_us();
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	child = pid;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(out[1], 1);
		dup2(null, 2);
		execvp(argv[optind], argv + optind);
		_exit(127);
	}
	close(out[1]);
	int fd = -1;
	while ((fd = try_connect(sock)) < 0) {
		if (now_us() - t0 > 20000000ULL || waitpid(pid, NULL, WNOHANG) == pid) {
			fprintf(stderr, "apitime: %s never accepted on %s\n", label, sock);
			kill(pid, SIGKILL);
			return 1;
		}
		usleep(20);
	}
	/* ready: the socket answers (visor: a GET / reply; QMP: the greeting) */
	if (is_qmp)
		consume(read_reply(fd, qmp_line, 10000));
	else if (http(fd, "GET", "/", "") != 200)
		goto fail;
	uint64_t ready = now_us() - t0;
	uint64_t cpu = cpu_us(pid);
	if (is_qmp)
		qmp(fd, "{\"execute\": \"qmp_capabilities\"}\n");
	uint64_t *lat = calloc((size_t)nreq, sizeof(*lat));
	for (int i = 0; i < nreq; i++) {
		uint64_t s = now_us();
		if (is_qmp)
			qmp(fd, "{\"execute\": \"query-status\"}\n");
		else if (http(fd, "GET", "/", "") != 200)
			goto fail;
		lat[i] = now_us() - s;
	}
	qsort(lat, (size_t)nreq, sizeof(*lat), cmp_u64);
	printf("APITIME label=%s ready_us=%llu ready_cpu_us=%llu lat_med_us=%llu lat_p90_us=%llu",
	       label, (unsigned long long)ready, (unsigned long long)cpu,
	       (unsigned long long)lat[nreq / 2], (unsigned long long)lat[nreq * 9 / 10]);
	int rc = 0;
	if (marker) {
		/* configure (visor) and start; then wait for the console marker */
		uint64_t s = 0;
		for (int i = 0; i < nreqs; i++) {
			char m[16], p[256];
			int off = 0;
			if (sscanf(reqs[i], "%15s %255s %n", m, p, &off) < 2) {
				fprintf(stderr, "apitime: bad -r '%s'\n", reqs[i]);
				return 2;
			}
			if (i == nreqs - 1)
				s = now_us();
			if (http(fd, m, p, reqs[i] + off) >= 300) {
				rc = 1;
				break;
			}
		}
		if (is_qmp) {
			s = now_us();
			qmp(fd, "{\"execute\": \"cont\"}\n");
		}
		char con[8192];
		size_t cl = 0;
		bool seen = false;
		uint64_t end = now_us() + (uint64_t)tmo * 1000000ULL;
		while (rc == 0 && !seen && now_us() < end) {
			struct pollfd p = {out[0], POLLIN, 0};
			if (poll(&p, 1, 100) <= 0)
				continue;
			ssize_t r = read(out[0], con + cl, sizeof(con) - 1 - cl);
			if (r <= 0)
				break;
			cl += (size_t)r;
			con[cl] = 0;
			if (strstr(con, marker))
				seen = true;
			else if (cl > sizeof(con) / 2) {
				size_t keep = strlen(marker);
				memmove(con, con + cl - keep, keep);
				cl = keep;
			}
		}
		if (seen)
			printf(" start_us=%llu", (unsigned long long)(now_us() - s));
		else
			rc = 1;
	}
	printf(" rc=%d\n", rc);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(sock);
	return rc;
fail:
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(sock);
	return 1;
}
