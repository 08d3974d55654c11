/* SPDX-License-Identifier: MIT */
/*
 * migtime - the QMP side of bench/migrate: one live migration between two
 * running QEMU processes, timed, and QEMU's own account of it.
 *
 *   migtime qemu -s SRC_QMP -d DST_QMP -u URI [-l DOWNTIME_MS] [-b BYTES_PER_S]
 *                [-a] [-t SECS] [-L LABEL]
 *   migtime visor -s SRC_SOCK -d DST_SOCK -u URL [-l DOWNTIME_MS] [-m MODE]
 *                 [-t SECS] [-L LABEL]
 *   migtime qmp SOCK JSON...      send each command, print each reply line
 *
 * qemu: connects to both QMP sockets (waiting up to -t for them), turns
 * the "events" capability on at the source (and "auto-converge" with -a),
 * sets migrate-set-parameters downtime-limit (-l, default 50 ms: the limit
 * visor's migration uses by default) and max-bandwidth (-b, default 1 TiB/s,
 * i.e. no limit: QEMU 7.2's default of 128 MiB/s is a throttle, and
 * visor's default max_bandwidth_mib 0 means none), then sends migrate URI
 * and waits for the source's MIGRATION event "completed" (or "failed";
 * after -t seconds, default 600, migrate_cancel).  Meanwhile it polls
 * query-migrate every 250 ms and prints a progress line on stderr:
 *
 *   MIGPROGRESS label=L t_ms=.. status=.. passes=.. transferred=..
 *               remaining=.. dirty_rate=.. mbps=..
 *
 * Then query-migrate once more, and query-status on the destination until
 * it says "running".  One line on stdout:
 *
 *   MIGTIME label=L vmm=qemu rc=0 status=completed t0_mono_ms=.. wall_ms=.. dst_running_ms=..
 *           total_ms=.. downtime_ms=.. setup_ms=.. transferred=.. ram_total=..
 *           normal_pages=.. zero_pages=.. passes=.. mbps=.. dirty_pages_rate=..
 *
 * t0_mono_ms: CLOCK_MONOTONIC (ms) when migrate was sent (the times below
 * count from there); wall_ms: from sending migrate to the "completed" event; dst_running_ms:
 * from sending migrate to the destination answering "running" (the
 * destination starts the guest by itself: no -S); total_ms, downtime_ms
 * (QEMU's: from stopping the source to the end of the migration, as the
 * source sees it), setup_ms, transferred (bytes of RAM sent), normal and
 * zero (duplicate) pages and passes (dirty-sync-count) from the source's
 * query-migrate; dirty_pages_rate: the last non-zero dirty-pages-rate
 * (pages/s) of the progress polls, QEMU's measure of the guest's dirtying
 * during the migration.  A value QEMU did not give is -1.  Exit status 0 when the
 * migration completed and the destination runs. *
 * visor: the same over visor's REST API (docs/api.md, "Live migration"),
 * one kept-alive HTTP connection to the source's API socket: PUT
 * /migration/send {url, downtime_limit_ms (-l), max_bandwidth_mib 0 (no
 * limit), timeout_s (-t), mode (-m, default precopy)}, then GET
 * /migration every 50 ms (visor has no event: the poll bounds when the end
 * is seen) until a final state, a MIGPROGRESS line every 250 ms and at
 * each change of state or pass (the same keys: passes = pass, transferred
 * = bytes, remaining = remaining_bytes, dirty_rate = dirty_rate_bps in
 * pages/s, mbps = bandwidth_bps), MIGFINAL with the last answer (a
 * completed source answers "Completed" once, then exits), then GET / on
 * the destination's socket until its state is "Running".  MIGTIME as
 * above with vmm=visor: status is visor's state, total_ms its elapsed_ms
 * (the request to the destination running, as the source saw it),
 * downtime_ms its downtime_ms (the guest's pause on the source to its run
 * on the destination), transferred its bytes (the whole stream, not only
 * RAM), normal_pages / zero_pages its pages_data / pages_zero, passes its
 * pass (passes before the switch-over), setup_ms -1.  A migration that has
 * not ended -t seconds (+60) after the request is cancelled (PATCH
 * /migration).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *label = "-";

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

struct qmp {
	int fd;
	char buf[65536];
	size_t len;
	char mig[32]; /* the last MIGRATION event's status */
};

/* Connect to @path, retrying until @deadline (ms). */
static bool qmp_open(struct qmp *q, const char *path, int64_t deadline)
{
	memset(q, 0, sizeof(*q));
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return false;
	strcpy(a.sun_path, path);
	for (;;) {
		q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (q->fd >= 0 && connect(q->fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return true;
		close(q->fd);
		if (now_ms() > deadline) {
			fprintf(stderr, "migtime: %s: cannot connect to %s: %s\n", label, path, strerror(errno));
			return false;
		}
		usleep(50000);
	}
}

/* Read more into the buffer, waiting up to @ms; false on EOF/error. */
static bool qmp_fill(struct qmp *q, int ms)
{
	struct pollfd p = {.fd = q->fd, .events = POLLIN};
	int r = poll(&p, 1, ms);
	if (r <= 0)
		return r == 0; /* (a timeout is not an error) */
	if (q->len >= sizeof(q->buf) - 1)
		q->len = 0; /* a line this long is not one we need */
	ssize_t n = read(q->fd, q->buf + q->len, sizeof(q->buf) - 1 - q->len);
	if (n <= 0)
		return false;
	q->len += (size_t)n;
	q->buf[q->len] = 0;
	return true;
}

/* Take one complete line out of the buffer into @line; false if none. */
static bool qmp_line(struct qmp *q, char *line, size_t size)
{
	char *nl = memchr(q->buf, '\n', q->len);
	if (!nl)
		return false;
	size_t n = (size_t)(nl - q->buf) + 1, c = n < size ? n : size - 1;
	memcpy(line, q->buf, c);
	line[c] = 0;
	memmove(q->buf, q->buf + n, q->len - n);
	q->len -= n;
	q->buf[q->len] = 0;
	return true;
}

/* An event line: note a MIGRATION status. */
static void qmp_event(struct qmp *q, const char *line)
{
	if (!strstr(line, "\"event\": \"MIGRATION\""))
		return;
	const char *s = strstr(line, "\"status\": \"");
	if (!s)
		return;
	s += 11;
	size_t l = strcspn(s, "\"");
	if (l >= sizeof(q->mig))
		l = sizeof(q->mig) - 1;
	memcpy(q->mig, s, l);
	q->mig[l] = 0;
}

/* Send @cmd (a JSON object, no newline needed) and wait up to 60 s for its
 * reply, which goes to @out; true on "return". */
static bool qmp_cmd(struct qmp *q, const char *cmd, char *out, size_t size)
{
	size_t len = strlen(cmd);
	if (write(q->fd, cmd, len) != (ssize_t)len || write(q->fd, "\n", 1) != 1)
		return false;
	int64_t deadline = now_ms() + 60000;
	char line[65536];
	for (;;) {
		while (qmp_line(q, line, sizeof(line))) {
			if (!strncmp(line, "{\"return\"", 9) || !strncmp(line, "{\"error\"", 8)) {
				snprintf(out, size, "%s", line);
				if (strncmp(line, "{\"return\"", 9))
					fprintf(stderr, "migtime: %s: %s -> %s", label, cmd, line);
				return !strncmp(line, "{\"return\"", 9);
			}
			qmp_event(q, line);
		}
		if (now_ms() > deadline || !qmp_fill(q, 1000))
			return false;
	}
}

/* Greeting, then qmp_capabilities. */
static bool qmp_hello(struct qmp *q)
{
	char line[65536], out[4096];
	int64_t deadline = now_ms() + 60000;
	for (;;) {
		if (qmp_line(q, line, sizeof(line)) && !strncmp(line, "{\"QMP\"", 6))
			break;
		if (now_ms() > deadline || !qmp_fill(q, 1000))
			return false;
	}
	return qmp_cmd(q, "{\"execute\": \"qmp_capabilities\"}", out, sizeof(out));
}

/* The number after "KEY": in @json (first occurrence), or -1. */
static long long jnum(const char *json, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(json, k);
	if (!p)
		return -1;
	p += strlen(k);
	while (*p == ' ')
		p++;
	char *end;
	double v = strtod(p, &end);
	return end == p ? -1 : (long long)v;
}

/* The string after "KEY": in @json, into @out. */
static void jstr(const char *json, const char *key, char *out, size_t size)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(json, k);
	out[0] = 0;
	if (!p)
		return;
	p += strlen(k);
	while (*p == ' ')
		p++;
	if (*p++ != '"')
		return;
	size_t l = strcspn(p, "\"");
	if (l >= size)
		l = size - 1;
	memcpy(out, p, l);
	out[l] = 0;
}

/* What a query-migrate reply's "ram" part holds (the first "ram" object;
 * "transferred" etc. also appear under other keys only with features this
 * tool does not turn on). */
static const char *ram_of(const char *json)
{
	const char *r = strstr(json, "\"ram\":");
	return r ? r : json;
}

static int do_qemu(int argc, char **argv)
{
	const char *src = NULL, *dst = NULL, *uri = NULL;
	long long downtime = 50, bw = 1LL << 40, tmo = 600;
	bool autoconv = false;
	int o;
	while ((o = getopt(argc, argv, "s:d:u:l:b:at:L:")) != -1) {
		switch (o) {
		case 's': src = optarg; break;
		case 'd': dst = optarg; break;
		case 'u': uri = optarg; break;
		case 'l': downtime = atoll(optarg); break;
		case 'b': bw = atoll(optarg); break;
		case 'a': autoconv = true; break;
		case 't': tmo = atoll(optarg); break;
		case 'L': label = optarg; break;
		default: return 2;
		}
	}
	if (!src || !dst || !uri) {
		fprintf(stderr, "migtime qemu: -s SRC_QMP -d DST_QMP -u URI needed\n");
		return 2;
	}
	static struct qmp s, d;
	static char out[65536];
	char cmd[512], status[32] = "none";
	int64_t start = now_ms();
	int rc = 1;
	long long wall = -1, running = -1, dirty_rate = -1, t0_abs = -1;
	if (!qmp_open(&s, src, start + tmo * 1000) || !qmp_open(&d, dst, start + tmo * 1000) ||
	    !qmp_hello(&s) || !qmp_hello(&d)) {
		fprintf(stderr, "migtime: %s: QMP set-up failed\n", label);
		goto report;
	}
	snprintf(cmd, sizeof(cmd),
		 "{\"execute\": \"migrate-set-capabilities\", \"arguments\": {\"capabilities\": ["
		 "{\"capability\": \"events\", \"state\": true}, "
		 "{\"capability\": \"auto-converge\", \"state\": %s}]}}",
		 autoconv ? "true" : "false");
	if (!qmp_cmd(&s, cmd, out, sizeof(out)))
		goto report;
	snprintf(cmd, sizeof(cmd),
		 "{\"execute\": \"migrate-set-parameters\", \"arguments\": "
		 "{\"downtime-limit\": %lld, \"max-bandwidth\": %lld}}",
		 downtime, bw);
	if (!qmp_cmd(&s, cmd, out, sizeof(out)))
		goto report;
	snprintf(cmd, sizeof(cmd), "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"%s\"}}", uri);
	int64_t t0 = now_ms();
	t0_abs = t0;
	if (!qmp_cmd(&s, cmd, out, sizeof(out)))
		goto report;
	int64_t next_poll = t0, deadline = t0 + tmo * 1000;
	bool cancelled = false;
	while (strcmp(s.mig, "completed") && strcmp(s.mig, "failed") && strcmp(s.mig, "cancelled")) {
		int64_t now = now_ms();
		if (now >= next_poll) {
			if (!qmp_cmd(&s, "{\"execute\": \"query-migrate\"}", out, sizeof(out)))
				goto report;
			const char *r = ram_of(out);
			jstr(out, "status", status, sizeof(status));
			if (jnum(r, "dirty-pages-rate") > 0)
				dirty_rate = jnum(r, "dirty-pages-rate");
			fprintf(stderr,
				"MIGPROGRESS label=%s t_ms=%lld status=%s passes=%lld transferred=%lld "
				"remaining=%lld dirty_rate=%lld mbps=%lld expected_downtime_ms=%lld\n",
				label, (long long)(now - t0), status, jnum(r, "dirty-sync-count"),
				jnum(r, "transferred"), jnum(r, "remaining"), jnum(r, "dirty-pages-rate"),
				jnum(r, "mbps"), jnum(out, "expected-downtime"));
			next_poll = now + 250;
		}
		if (!cancelled && now > deadline) {
			fprintf(stderr, "migtime: %s: no end after %lld s: migrate_cancel\n", label, tmo);
			qmp_cmd(&s, "{\"execute\": \"migrate_cancel\"}", out, sizeof(out));
			cancelled = true;
			deadline = now + 60000;
		} else if (cancelled && now > deadline) {
			goto report;
		}
		char line[65536];
		while (qmp_line(&s, line, sizeof(line)))
			qmp_event(&s, line);
		if (!strcmp(s.mig, "completed") || !strcmp(s.mig, "failed") || !strcmp(s.mig, "cancelled"))
			break;
		if (!qmp_fill(&s, 50))
			goto report;
	}
	wall = now_ms() - t0;
	snprintf(status, sizeof(status), "%s", s.mig);
	/* QEMU announces "completed" before it has filled in total-time and
	 * downtime (migration_calculate_complete comes after): wait for them */
	for (int i = 0; i < 100; i++) {
		if (!qmp_cmd(&s, "{\"execute\": \"query-migrate\"}", out, sizeof(out)))
			goto report;
		if (strcmp(s.mig, "completed") || jnum(out, "total-time") > 0)
			break;
		usleep(50000);
	}
	fprintf(stderr, "MIGFINAL label=%s %s", label, out);
	if (strcmp(s.mig, "completed"))
		goto report;
	/* the destination runs the guest by itself once the stream is in */
	for (;;) {
		static char st[4096];
		if (!qmp_cmd(&d, "{\"execute\": \"query-status\"}", st, sizeof(st)))
			break;
		char dstat[32];
		jstr(st, "status", dstat, sizeof(dstat));
		if (!strcmp(dstat, "running")) {
			running = now_ms() - t0;
			rc = 0;
			break;
		}
		if (now_ms() > t0 + tmo * 1000 + 60000) {
			fprintf(stderr, "migtime: %s: the destination is '%s', not running\n", label, dstat);
			break;
		}
		usleep(5000);
	}
report:;
	const char *r = ram_of(out);
	printf("MIGTIME label=%s vmm=qemu rc=%d status=%s t0_mono_ms=%lld wall_ms=%lld dst_running_ms=%lld total_ms=%lld "
	       "downtime_ms=%lld setup_ms=%lld transferred=%lld ram_total=%lld normal_pages=%lld "
	       "zero_pages=%lld passes=%lld mbps=%lld dirty_pages_rate=%lld\n",
	       label, rc, status, t0_abs, wall, running, jnum(out, "total-time"), jnum(out, "downtime"),
	       jnum(out, "setup-time"), jnum(r, "transferred"), jnum(r, "total"), jnum(r, "normal"),
	       jnum(r, "duplicate"), jnum(r, "dirty-sync-count"), jnum(r, "mbps"), dirty_rate);
	return rc;
}

/* One HTTP request on @c, a kept-alive connection to visor's API; the
 * response's body into @out.  Returns the HTTP status, 0 when no complete
 * response came (the connection closed, or 60 s passed). */
static int http_req(struct qmp *c, const char *method, const char *path, const char *body,
		    char *out, size_t size)
{
	char req[4096];
	size_t blen = body ? strlen(body) : 0;
	int n = snprintf(req, sizeof(req),
			 "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			 method, path, blen, body ? body : "");
	out[0] = 0;
	if (n < 0 || (size_t)n >= sizeof(req) || send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
		return 0;
	int64_t deadline = now_ms() + 60000;
	for (;;) {
		const char *h = strstr(c->buf, "\r\n\r\n");
		if (h) {
			size_t head = (size_t)(h - c->buf) + 4, clen = 0;
			const char *cl = strcasestr(c->buf, "Content-Length:");
			if (cl && cl < h)
				clen = strtoul(cl + 15, NULL, 10);
			if (c->len >= head + clen) {
				int status = c->len > 12 ? atoi(c->buf + 9) : 0;
				size_t k = clen < size ? clen : size - 1;
				memcpy(out, c->buf + head, k);
				out[k] = 0;
				memmove(c->buf, c->buf + head + clen, c->len - head - clen);
				c->len -= head + clen;
				c->buf[c->len] = 0;
				return status;
			}
		}
		if (now_ms() > deadline || !qmp_fill(c, 1000))
			return 0;
	}
}

/* A state of visor's GET /migration in which the migration has ended. */
static bool visor_final(const char *state)
{
	return strcmp(state, "Setup") && strcmp(state, "Active") && strcmp(state, "Switchover") &&
	       strcmp(state, "Postcopy");
}

static int do_visor(int argc, char **argv)
{
	const char *src = NULL, *dst = NULL, *url = NULL, *mode = "precopy";
	long long downtime = 50, tmo = 600;
	bool verify = false;
	int o;
	while ((o = getopt(argc, argv, "s:d:u:l:m:t:L:V")) != -1) {
		switch (o) {
		case 's': src = optarg; break;
		case 'd': dst = optarg; break;
		case 'u': url = optarg; break;
		case 'l': downtime = atoll(optarg); break;
		case 'm': mode = optarg; break;
		case 't': tmo = atoll(optarg); break;
		case 'L': label = optarg; break;
		case 'V': verify = true; break;
		default: return 2;
		}
	}
	if (!src || !dst || !url) {
		fprintf(stderr, "migtime visor: -s SRC_SOCK -d DST_SOCK -u URL needed\n");
		return 2;
	}
	static struct qmp s, d;
	static char out[65536], fin[65536], body[1024];
	char state[32] = "none", last[32] = "";
	int64_t start = now_ms();
	int rc = 1;
	long long wall = -1, running = -1, dirty_rate = -1, t0_abs = -1, last_pass = -2;
	if (!qmp_open(&s, src, start + tmo * 1000))
		goto report;
	snprintf(body, sizeof(body),
		 "{\"url\": \"%s\", \"downtime_limit_ms\": %lld, \"max_bandwidth_mib\": 0, "
		 "\"timeout_s\": %lld, \"mode\": \"%s\"%s}",
		 url, downtime, tmo, mode, verify ? ", \"verify\": true" : "");
	int64_t t0 = now_ms();
	t0_abs = t0;
	int st = http_req(&s, "PUT", "/migration/send", body, out, sizeof(out));
	if (st != 204) {
		fprintf(stderr, "migtime: %s: PUT /migration/send %s -> %d %s\n", label, body, st, out);
		goto report;
	}
	int64_t next_print = t0, deadline = t0 + tmo * 1000 + 60000;
	bool cancelled = false;
	for (;;) {
		st = http_req(&s, "GET", "/migration", NULL, out, sizeof(out));
		int64_t now = now_ms();
		if (st != 200) {
			fprintf(stderr, "migtime: %s: GET /migration -> %d after %lld ms (last state %s)\n",
				label, st, (long long)(now - t0), state);
			snprintf(state, sizeof(state), "gone");
			goto report;
		}
		snprintf(fin, sizeof(fin), "%s", out);
		jstr(out, "state", state, sizeof(state));
		long long pass = jnum(out, "pass"), rate = jnum(out, "dirty_rate_bps");
		if (rate > 0)
			dirty_rate = rate / 4096;
		if (now >= next_print || pass != last_pass || strcmp(state, last)) {
			long long bw = jnum(out, "bandwidth_bps");
			fprintf(stderr,
				"MIGPROGRESS label=%s t_ms=%lld status=%s passes=%lld transferred=%lld "
				"remaining=%lld dirty_rate=%lld mbps=%lld expected_downtime_ms=%lld "
				"throttle_pct=%lld\n",
				label, (long long)(now - t0), state, pass, jnum(out, "bytes"),
				jnum(out, "remaining_bytes"), rate < 0 ? -1 : rate / 4096,
				bw < 0 ? -1 : bw * 8 / 1000000, jnum(out, "expected_downtime_ms"),
				jnum(out, "throttle_pct"));
			next_print = now + 250;
			last_pass = pass;
			snprintf(last, sizeof(last), "%s", state);
		}
		if (visor_final(state)) {
			wall = now - t0;
			break;
		}
		if (now > deadline) {
			if (cancelled)
				goto report;
			fprintf(stderr, "migtime: %s: no end after %lld s: cancel\n", label, tmo + 60);
			char r[4096];
			http_req(&s, "PATCH", "/migration", "{\"state\": \"Cancelled\"}", r, sizeof(r));
			cancelled = true;
			deadline = now + 60000;
		}
		usleep(50000);
	}
	fprintf(stderr, "MIGFINAL label=%s %s\n", label, fin);
	if (strcmp(state, "Completed"))
		goto report;
	/* the destination runs the guest once the source has handed it over */
	if (!qmp_open(&d, dst, now_ms() + 10000))
		goto report;
	for (;;) {
		static char info[4096];
		char dstat[32];
		st = http_req(&d, "GET", "/", NULL, info, sizeof(info));
		jstr(info, "state", dstat, sizeof(dstat));
		if (!strcmp(dstat, "Running")) {
			running = now_ms() - t0;
			rc = 0;
			break;
		}
		if (!st || now_ms() > t0 + tmo * 1000 + 60000) {
			fprintf(stderr, "migtime: %s: the destination is '%s' (HTTP %d), not running\n", label,
				dstat, st);
			break;
		}
		usleep(5000);
	}
report:;
	long long bwf = jnum(fin, "bandwidth_bps");
	printf("MIGTIME label=%s vmm=visor rc=%d status=%s t0_mono_ms=%lld wall_ms=%lld dst_running_ms=%lld "
	       "total_ms=%lld downtime_ms=%lld setup_ms=-1 transferred=%lld ram_total=%lld "
	       "normal_pages=%lld zero_pages=%lld passes=%lld mbps=%lld dirty_pages_rate=%lld\n",
	       label, rc, state, t0_abs, wall, running, jnum(fin, "elapsed_ms"), jnum(fin, "downtime_ms"),
	       jnum(fin, "bytes"), jnum(fin, "mem_bytes"), jnum(fin, "pages_data"),
	       jnum(fin, "pages_zero"), jnum(fin, "pass"), bwf < 0 ? -1 : bwf * 8 / 1000000, dirty_rate);
	return rc;
}

static int do_qmp(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	static struct qmp q;
	static char out[65536];
	if (!qmp_open(&q, argv[1], now_ms() + 10000) || !qmp_hello(&q))
		return 1;
	int rc = 0;
	for (int i = 2; i < argc; i++) {
		bool ok = qmp_cmd(&q, argv[i], out, sizeof(out));
		fputs(out, stdout);
		if (!ok) {
			rc = 1;
			break;
		}
	}
	return rc;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "qemu"))
		return do_qemu(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "visor"))
		return do_visor(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "qmp"))
		return do_qmp(argc - 1, argv + 1);
	fprintf(stderr, "usage: migtime qemu -s SRC_QMP -d DST_QMP -u URI [-l MS] [-b BYTES] [-a] [-t SECS] [-L LABEL]\n"
			"       migtime visor -s SRC_SOCK -d DST_SOCK -u URL [-l MS] [-m MODE] [-t SECS] [-L LABEL]\n"
			"       migtime qmp SOCK JSON...\n");
	return 2;
}
