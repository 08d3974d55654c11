/* SPDX-License-Identifier: MIT */
/*
 * snaptime - timing harness for bench/snapshot: snapshot creation, restore
 * and clone fan-out of a VMM, visor (its REST API) or QEMU (QMP migration
 * to and from a file).
 *
 *   snaptime create  -k visor|qmp -s SOCK -d DIR [-n N] [OPTIONS] -- CMD...
 *   snaptime restore -k visor|qmp -s SOCK -d DIR [OPTIONS] -- CMD...
 *   snaptime clones  -k visor|qmp -n N -d DIR [-s SOCK] [OPTIONS] -- CMD...
 *
 * OPTIONS: -l LABEL (printed), -r RUN (printed), -t SECS (limit, default
 * 300), -e FILE (the VMM's stderr, default /dev/null), -q exec|fd (QEMU's
 * transport, default fd), -m MIB (guest memory, printed), -i MS (restore
 * and clones: also measure the idle guest's CPU cost over MS ms).
 *
 * The snapshot lives in DIR: visor's DIR/state and DIR/memory (what
 * `visor restore DIR` reads), QEMU's migration stream DIR/vmstate.
 * Times are CLOCK_MONOTONIC, t0 just before fork() of the VMM.
 *
 * create: start CMD (a VMM booting the guest appliance with
 *   visor.test=echo visor.hold=1, console on a pipe), wait for the guest's
 *   "ECHO-READY" (its shell then waits for a console line), then N times:
 *   pause (visor PATCH /vm Paused; QMP stop), create the snapshot (visor
 *   PUT /snapshot/create, Full; QMP migrate to DIR/vmstate, until the
 *   MIGRATION event says completed), and between two creates resume and let
 *   the guest run for 100 ms (QEMU refuses a second migration from its
 *   post-migration state). QEMU gets the "events" capability and a
 *   max-bandwidth of 1 TiB/s first (its default limit, 128 MiB/s in 7.2,
 *   is meant for live migration). Transport exec: "exec:cat > DIR/vmstate";
 *   fd: the file opened here and passed over QMP (getfd, SCM_RIGHTS),
 *   "fd:NAME".
 *   One line per create:
 *     SNAPTIME op=create label=L mem_mib=M run=I boot_us=.. create_us=..
 *              state_bytes=.. mem_bytes=.. mem_alloc_kb=.. rc=0
 *   (mem_bytes: the memory file's / stream's length; mem_alloc_kb: what the
 *   file system allocated for it, du)
 *
 * restore: start CMD (visor: `visor --api-sock SOCK`; QEMU: the same
 *   machine as the create, -incoming defer, QMP on SOCK), wait for the
 *   control socket, send the restore request (visor: PUT /snapshot/load,
 *   File backend, resume_vm true, until its 204; QEMU: migrate-incoming,
 *   the MIGRATION event "completed", then cont unless already running),
 *   then write "TOKEN\n" to the console and wait for the guest's
 *   "ECHO:TOKEN" (the guest's shell answered: its tty does not echo).
 *   Transport fd: DIR/vmstate is opened here and inherited as fd 3
 *   ("fd:3"). One line:
 *     SNAPTIME op=restore label=L mem_mib=M run=R sock_us=.. req_us=..
 *              running_us=.. answer_us=.. echo_us=.. run_rss_kb=..
 *              run_priv_kb=.. run_privdirty_kb=.. rss_kb=.. pss_kb=..
 *              priv_kb=.. privdirty_kb=.. rc=0
 *   sock_us: t0 to the control socket answering; req_us: request sent to
 *   running; running_us: t0 to running; run_cpu_us: the VMM's CPU time
 *   then (all threads, schedstat); idle_cpu_pm: with -i, the VMM's CPU
 *   time over that window, 1 s after the answer, in thousandths of a CPU;
 *   echo_us: token written to its
 *   answer; answer_us = running_us + echo_us (the harness reads the VMM's
 *   memory in between, which is not the VMM's time). Memory from
 *   /proc/PID/smaps_rollup once running (run_*) and after the answer;
 *   priv = Private_Clean + Private_Dirty.
 *
 * clones: visor: CMD is `visor restore DIR --clones N ...`; its exit (once
 *   all N run) ends the fan-out; the clones (their pids from its output)
 *   become this process's children (child subreaper), are measured and
 *   killed. QEMU: N copies of CMD started at once, "{n}" in an argument
 *   replaced by the clone's number (its QMP socket), each -incoming defer
 *   and driven as in restore (all at once, one poll loop); the fan-out ends
 *   when the last one runs. One line:
 *     SNAPTIME op=clones label=L mem_mib=M n=N run=R running=K all_us=..
 *              priv_kb_med=.. priv_kb_max=.. privdirty_kb_med=..
 *              privdirty_kb_max=.. pss_kb_med=.. rss_kb_med=..
 *              avail_drop_kb=.. cpu_us_med=.. cpu_us_sum=..
 *              idle_cpu_pm_med=.. rc=0
 *   (per-clone memory from smaps_rollup right after the fan-out; median and
 *   maximum over the clones; avail_drop_kb: the fall of MemAvailable from
 *   before the fan-out to after it, divided by N: what a clone costs the
 *   host, KVM's own allocations included; cpu_us: each clone's CPU time
 *   so far, all threads, guest mode included, from schedstat; with -i,
 *   idle_cpu_pm_med: each clone's CPU over the window that follows, in
 *   thousandths of a CPU, median)
 *
 * A value that could not be measured is -1; rc is 0 when everything
 * worked.  The exit status is rc.
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
#include <sys/prctl.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLONES 1024

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* options */
static const char *kind, *sock, *dir, *label = "vmm", *run = "0", *errlog = "/dev/null";
static const char *transport = "fd";
static long mem_mib = -1, count = 1, idle_ms;
static int64_t deadline;
static bool is_qmp;

/* every VMM started here, killed on any way out */
static pid_t pids[MAX_CLONES + 1];
static int npids;

static void kill_all(void)
{
	for (int i = 0; i < npids; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGKILL);
	for (int i = 0; i < npids; i++)
		if (pids[i] > 0)
			waitpid(pids[i], NULL, 0);
	npids = 0;
}

static void fail(const char *what)
{
	fprintf(stderr, "snaptime: %s: %s\n", label, what);
}

static int left_ms(void)
{
	int64_t l = (deadline - now_us()) / 1000;
	return l < 0 ? 0 : l > 1000000 ? 1000000 : (int)l;
}

/* ---- the console: the VMM's stdout, kept whole ---- */
static struct {
	int fd;
	char *buf;
	size_t len, cap;
} con = {.fd = -1};

/* Read what the console has (non-blocking fd); false at EOF. */
static bool con_read(void)
{
	for (;;) {
		if (con.cap - con.len < 4097) {
			size_t nc = con.cap ? con.cap * 2 : 65536;
			char *nb = realloc(con.buf, nc);
			if (!nb)
				return false;
			con.buf = nb;
			con.cap = nc;
		}
		ssize_t n = read(con.fd, con.buf + con.len, 4096);
		if (n > 0) {
			con.len += (size_t)n;
			con.buf[con.len] = 0;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return true;
		return false;
	}
}

/* Wait until @marker appears on the console after offset @from. */
static bool con_wait(const char *marker, size_t from)
{
	for (;;) {
		if (con.buf && con.len > from && strstr(con.buf + from, marker))
			return true;
		struct pollfd p = {con.fd, POLLIN, 0};
		int ms = left_ms();
		if (ms == 0)
			return false;
		if (poll(&p, 1, ms) < 0 && errno != EINTR)
			return false;
		if ((p.revents & (POLLIN | POLLHUP)) && !con_read() &&
		    !(con.buf && con.len > from && strstr(con.buf + from, marker)))
			return false;
	}
}

/* ---- control connections: HTTP (visor) and QMP ---- */
struct conn {
	int fd;
	char buf[65536];
	size_t len;
	char mig[32];  /* QMP: status of the last MIGRATION event */
	bool greeted;  /* QMP: greeting seen */
};

static int try_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (fd < 0 || strlen(path) >= sizeof(a.sun_path)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	memcpy(a.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		return fd;
	close(fd);
	return -1;
}

/* An inotify watch on the directory of @path, set up before the VMM
 * starts: waiting for its control socket then takes no CPU, which on the
 * lab's single CPU would be taken from the VMM being measured. -1 if
 * inotify is not available (then waits poll every 10 ms). */
static int dir_watch(const char *path)
{
	char d[4096];
	snprintf(d, sizeof(d), "%s", path);
	char *slash = strrchr(d, '/');
	if (!slash)
		snprintf(d, sizeof(d), ".");
	else if (slash == d)
		slash[1] = 0;
	else
		*slash = 0;
	int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (fd >= 0 && inotify_add_watch(fd, d, IN_CREATE | IN_MOVED_TO | IN_ATTRIB) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Read and forget the watch's events. */
static void dir_drain(int wfd)
{
	char buf[4096];
	while (wfd >= 0 && read(wfd, buf, sizeof(buf)) > 0)
		;
}

/* Until something is created in the watched directory, or @ms. */
static void dir_wait(int wfd, int ms)
{
	if (wfd < 0) {
		usleep(10000);
		return;
	}
	struct pollfd p = {wfd, POLLIN, 0};
	if (poll(&p, 1, ms) > 0)
		dir_drain(wfd);
}

/* Connect to @path, retrying until the deadline or until @pid died; @wfd
 * watches its directory (dir_watch). */
static bool conn_open(struct conn *c, const char *path, pid_t pid, int wfd)
{
	memset(c, 0, sizeof(*c));
	while ((c->fd = try_connect(path)) < 0) {
		if (left_ms() == 0 || (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid))
			return false;
		struct stat st;
		if (stat(path, &st) == 0)
			usleep(100); /* bound, not listening yet: a short window */
		else
			dir_wait(wfd, 50);
	}
	return true;
}

static void consume(struct conn *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
	c->buf[c->len] = 0;
}

/* One read into @c's buffer (also draining the console while waiting). */
static bool conn_fill(struct conn *c)
{
	for (;;) {
		struct pollfd p[2] = {{c->fd, POLLIN, 0}, {con.fd, POLLIN, 0}};
		int ms = left_ms();
		if (ms == 0 || c->len >= sizeof(c->buf) - 1)
			return false;
		int n = poll(p, con.fd >= 0 ? 2 : 1, ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		if (con.fd >= 0 && (p[1].revents & (POLLIN | POLLHUP)) && !con_read())
			con.fd = -1; /* console closed: the VMM is going away */
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
			if (r <= 0)
				return false;
			c->len += (size_t)r;
			c->buf[c->len] = 0;
			return true;
		}
	}
}

static bool send_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t w = send(fd, s, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		s += w;
		len -= (size_t)w;
	}
	return true;
}

/* Length of one complete HTTP response in @c, 0 if not yet complete. */
static size_t http_complete(const struct conn *c)
{
	const char *h = strstr(c->buf, "\r\n\r\n");
	if (!h)
		return 0;
	size_t head = (size_t)(h - c->buf) + 4, body = 0;
	const char *cl = strcasestr(c->buf, "Content-Length:");
	if (cl && cl < h)
		body = strtoul(cl + 15, NULL, 10);
	return c->len >= head + body ? head + body : 0;
}

/* One request; returns the HTTP status (0: no response). */
static int http(struct conn *c, const char *method, const char *path, const char *body)
{
	char req[8192];
	int n = snprintf(req, sizeof(req),
			 "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			 method, path, strlen(body), body);
	if (n < 0 || (size_t)n >= sizeof(req) || !send_all(c->fd, req, (size_t)n))
		return 0;
	size_t len;
	while (!(len = http_complete(c)))
		if (!conn_fill(c))
			return 0;
	int status = c->len > 12 ? atoi(c->buf + 9) : 0;
	if (status >= 300)
		fprintf(stderr, "snaptime: %s: %s %s -> %.*s\n", label, method, path, (int)len, c->buf);
	consume(c, len);
	return status;
}

/* Handle the QMP lines in @c that are not replies (greeting, events);
 * returns the length of a complete reply line at the start of the buffer,
 * or 0. */
static size_t qmp_reply_ready(struct conn *c)
{
	for (;;) {
		char *nl = strchr(c->buf, '\n');
		if (!nl)
			return 0;
		size_t n = (size_t)(nl - c->buf) + 1;
		if (!strncmp(c->buf, "{\"return\"", 9) || !strncmp(c->buf, "{\"error\"", 8))
			return n;
		*nl = 0; /* (the searches stay within this line) */
		if (!strncmp(c->buf, "{\"QMP\"", 6))
			c->greeted = true;
		else if (strstr(c->buf, "\"event\": \"MIGRATION\"")) {
			const char *s = strstr(c->buf, "\"status\": \"");
			if (s) {
				s += 11;
				size_t l = strcspn(s, "\"");
				if (l >= sizeof(c->mig))
					l = sizeof(c->mig) - 1;
				memcpy(c->mig, s, l);
				c->mig[l] = 0;
			}
		}
		consume(c, n);
	}
}

/* Send @cmd (one line); wait for its reply. true on "return"; the reply
 * line is copied to @out when given. */
static bool qmp_fd(struct conn *c, const char *cmd, char *out, size_t outlen, int passfd)
{
	size_t len = strlen(cmd);
	if (passfd >= 0) {
		/* the fd travels with the command's first byte */
		char cbuf[CMSG_SPACE(sizeof(int))];
		memset(cbuf, 0, sizeof(cbuf));
		struct iovec iov = {(void *)cmd, len};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				   .msg_controllen = sizeof(cbuf)};
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &passfd, sizeof(int));
		ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
		if (w <= 0 || (size_t)w < len) {
			if (w <= 0 || !send_all(c->fd, cmd + w, len - (size_t)w))
				return false;
		}
	} else if (!send_all(c->fd, cmd, len)) {
		return false;
	}
	size_t n;
	while (!(n = qmp_reply_ready(c)))
		if (!conn_fill(c))
			return false;
	bool ok = !strncmp(c->buf, "{\"return\"", 9);
	if (!ok && !out) /* (a caller that wants the reply judges it) */
		fprintf(stderr, "snaptime: %s: %.*s -> %.*s", label, (int)len - 1, cmd, (int)n, c->buf);
	if (out) {
		size_t l = n < outlen ? n : outlen - 1;
		memcpy(out, c->buf, l);
		out[l] = 0;
	}
	consume(c, n);
	return ok;
}

static bool qmp(struct conn *c, const char *cmd)
{
	return qmp_fd(c, cmd, NULL, 0, -1);
}

/* Wait for the QMP greeting, then negotiate capabilities. */
static bool qmp_hello(struct conn *c)
{
	while (!c->greeted) {
		qmp_reply_ready(c);
		if (!c->greeted && !conn_fill(c))
			return false;
	}
	return qmp(c, "{\"execute\": \"qmp_capabilities\"}\n") &&
	       qmp(c, "{\"execute\": \"migrate-set-capabilities\", \"arguments\": "
		      "{\"capabilities\": [{\"capability\": \"events\", \"state\": true}]}}\n");
}

/* Wait for a MIGRATION event with a final status; true if "completed". */
static bool qmp_wait_migration(struct conn *c)
{
	for (;;) {
		qmp_reply_ready(c);
		if (!strcmp(c->mig, "completed"))
			return true;
		if (!strcmp(c->mig, "failed") || !strcmp(c->mig, "cancelled")) {
			fprintf(stderr, "snaptime: %s: migration %s\n", label, c->mig);
			return false;
		}
		if (!conn_fill(c))
			return false;
	}
}

/* ---- processes ---- */

/* Start @argv with stdin/stdout pipes (or /dev/null when the pointers are
 * NULL), stderr to @err_path (appended), and @fd3 (if >= 0) as fd 3. */
static pid_t spawn(char **argv, int *in_w, int *out_r, const char *err_path, int fd3)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1};
	if ((in_w && pipe2(in, O_CLOEXEC)) || (out_r && pipe2(out, O_CLOEXEC)))
		return -1;
	int errfd = open(err_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (errfd < 0 || null < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		/* out of the way of the pipes first, then fd 3 last */
		int hi = fd3 >= 0 ? fcntl(fd3, F_DUPFD_CLOEXEC, 64) : -1;
		if (fd3 >= 0 && hi < 0)
			_exit(127);
		dup2(in_w ? in[0] : null, 0);
		dup2(out_r ? out[1] : null, 1);
		dup2(errfd, 2);
		if (hi >= 0 && dup2(hi, 3) < 0)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], argv);
		dprintf(2, "snaptime: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(errfd);
	close(null);
	if (in_w) {
		close(in[0]);
		*in_w = in[1];
	}
	if (out_r) {
		close(out[1]);
		*out_r = out[0];
	}
	if (pid > 0 && npids < MAX_CLONES + 1)
		pids[npids++] = pid;
	return pid;
}

struct memuse {
	long long rss, pss, priv_clean, priv_dirty;
};

/* /proc/PID/smaps_rollup; false if unreadable. */
static bool memuse(pid_t pid, struct memuse *m)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	FILE *f = fopen(path, "re");
	memset(m, 0, sizeof(*m));
	if (!f)
		return false;
	int seen = 0;
	long long v;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Rss: %lld kB", &v) == 1)
			m->rss = v, seen++;
		else if (sscanf(line, "Pss: %lld kB", &v) == 1)
			m->pss = v, seen++;
		else if (sscanf(line, "Private_Clean: %lld kB", &v) == 1)
			m->priv_clean = v, seen++;
		else if (sscanf(line, "Private_Dirty: %lld kB", &v) == 1)
			m->priv_dirty = v, seen++;
	}
	fclose(f);
	return seen == 4;
}

/* CPU time of every thread of @pid (schedstat: time on a CPU, guest mode
 * included), microseconds; -1 if unreadable. */
static long long cpu_us(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	unsigned long long ns = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[320];
		snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
		FILE *f = fopen(p, "re");
		unsigned long long v;
		if (f && fscanf(f, "%llu", &v) == 1)
			ns += v;
		if (f)
			fclose(f);
	}
	closedir(d);
	return (long long)(ns / 1000);
}

static long long mem_available_kb(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	long long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %lld kB", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static void path_in_dir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

/* ---- create ---- */
static int do_create(char **argv)
{
	int in_w, out_r;
	char state[4096], memf[4096], stream[4096];
	path_in_dir(state, sizeof(state), "state");
	path_in_dir(memf, sizeof(memf), "memory");
	path_in_dir(stream, sizeof(stream), "vmstate");
	unlink(sock);
	int64_t t0 = now_us();
	pid_t pid = spawn(argv, &in_w, &out_r, errlog, -1);
	if (pid < 0) {
		fail("cannot start the VMM");
		return 1;
	}
	con.fd = out_r;
	fcntl(out_r, F_SETFL, O_NONBLOCK);
	if (!con_wait("ECHO-READY", 0)) {
		fail("the guest never printed ECHO-READY");
		return 1;
	}
	int64_t boot = now_us() - t0;
	struct conn *c = calloc(1, sizeof(*c));
	if (!c || !conn_open(c, sock, pid, -1)) {
		fail("no control socket");
		return 1;
	}
	if (is_qmp) {
		if (!qmp_hello(c) ||
		    !qmp(c, "{\"execute\": \"migrate-set-parameters\", \"arguments\": "
			    "{\"max-bandwidth\": 1099511627776}}\n"))
			return 1;
	} else if (http(c, "GET", "/", "") != 200) {
		return 1;
	}
	for (long i = 1; i <= count; i++) {
		if (i > 1) {
			/* resume, let the guest run a moment, pause again */
			if (is_qmp) {
				/* with exec:, QEMU finalizes the migration (reaps
				 * the command) after its "completed" event and
				 * refuses cont until then */
				char r[512];
				while (!qmp_fd(c, "{\"execute\": \"cont\"}\n", r, sizeof(r), -1)) {
					if (!strstr(r, "not finalized") || left_ms() == 0) {
						fprintf(stderr, "snaptime: %s: cont -> %s", label, r);
						return 1;
					}
					usleep(1000);
				}
			} else if (http(c, "PATCH", "/vm", "{\"state\": \"Resumed\"}") != 204) {
				return 1;
			}
			usleep(100000);
		}
		if (is_qmp ? !qmp(c, "{\"execute\": \"stop\"}\n")
			   : http(c, "PATCH", "/vm", "{\"state\": \"Paused\"}") != 204)
			return 1;
		int64_t s;
		if (is_qmp) {
			char cmd[8300];
			c->mig[0] = 0;
			if (!strcmp(transport, "fd")) {
				int fd = open(stream, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
				if (fd < 0) {
					fail("cannot create the stream file");
					return 1;
				}
				s = now_us();
				bool ok = qmp_fd(c, "{\"execute\": \"getfd\", \"arguments\": "
						    "{\"fdname\": \"snap\"}}\n",
						 NULL, 0, fd);
				close(fd);
				if (!ok || !qmp(c, "{\"execute\": \"migrate\", \"arguments\": "
						   "{\"uri\": \"fd:snap\"}}\n"))
					return 1;
			} else {
				snprintf(cmd, sizeof(cmd),
					 "{\"execute\": \"migrate\", \"arguments\": "
					 "{\"uri\": \"exec:cat > %s\"}}\n", stream);
				s = now_us();
				if (!qmp(c, cmd))
					return 1;
			}
			if (!qmp_wait_migration(c))
				return 1;
		} else {
			char body[8400];
			snprintf(body, sizeof(body),
				 "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"%s\", "
				 "\"mem_file_path\": \"%s\"}", state, memf);
			s = now_us();
			if (http(c, "PUT", "/snapshot/create", body) != 204)
				return 1;
		}
		int64_t dt = now_us() - s;
		struct stat ss = {0}, ms = {0};
		long long sbytes = is_qmp ? 0 : (stat(state, &ss) ? -1 : (long long)ss.st_size);
		int mr = stat(is_qmp ? stream : memf, &ms);
		printf("SNAPTIME op=create label=%s mem_mib=%ld run=%ld boot_us=%lld create_us=%lld "
		       "state_bytes=%lld mem_bytes=%lld mem_alloc_kb=%lld rc=0\n",
		       label, mem_mib, i, (long long)boot, (long long)dt, sbytes,
		       mr ? -1LL : (long long)ms.st_size, mr ? -1LL : (long long)ms.st_blocks / 2);
		fflush(stdout);
	}
	close(c->fd);
	free(c);
	return 0;
}

/* ---- restore ---- */
static int do_restore(char **argv)
{
	char state[4096], memf[4096], stream[4096], token[64];
	path_in_dir(state, sizeof(state), "state");
	path_in_dir(memf, sizeof(memf), "memory");
	path_in_dir(stream, sizeof(stream), "vmstate");
	snprintf(token, sizeof(token), "tok-%s-%d", run, (int)getpid());
	int fd3 = -1;
	if (is_qmp && !strcmp(transport, "fd") && (fd3 = open(stream, O_RDONLY | O_CLOEXEC)) < 0) {
		fail("cannot open the stream file");
		return 1;
	}
	unlink(sock);
	int wfd = dir_watch(sock);
	int in_w, out_r;
	int64_t t0 = now_us();
	pid_t pid = spawn(argv, &in_w, &out_r, errlog, fd3);
	if (pid < 0) {
		fail("cannot start the VMM");
		return 1;
	}
	if (fd3 >= 0)
		close(fd3);
	con.fd = out_r;
	fcntl(out_r, F_SETFL, O_NONBLOCK);
	struct conn *c = calloc(1, sizeof(*c));
	if (!c || !conn_open(c, sock, pid, wfd)) {
		fail("no control socket");
		return 1;
	}
	if (wfd >= 0)
		close(wfd);
	if (is_qmp ? !qmp_hello(c) : http(c, "GET", "/", "") != 200)
		return 1;
	int64_t t_sock = now_us(), t_req, t_run;
	if (is_qmp) {
		char cmd[8300], st[512];
		if (!strcmp(transport, "fd"))
			snprintf(cmd, sizeof(cmd), "{\"execute\": \"migrate-incoming\", \"arguments\": "
						   "{\"uri\": \"fd:3\"}}\n");
		else
			snprintf(cmd, sizeof(cmd), "{\"execute\": \"migrate-incoming\", \"arguments\": "
						   "{\"uri\": \"exec:cat %s\"}}\n", stream);
		t_req = now_us();
		if (!qmp(c, cmd) || !qmp_wait_migration(c) ||
		    !qmp_fd(c, "{\"execute\": \"query-status\"}\n", st, sizeof(st), -1))
			return 1;
		if (!strstr(st, "\"status\": \"running\"") && !qmp(c, "{\"execute\": \"cont\"}\n"))
			return 1;
		t_run = now_us();
	} else {
		char body[8400];
		snprintf(body, sizeof(body),
			 "{\"snapshot_path\": \"%s\", \"mem_backend\": {\"backend_type\": \"File\", "
			 "\"backend_path\": \"%s\"}, \"resume_vm\": true}", state, memf);
		t_req = now_us();
		if (http(c, "PUT", "/snapshot/load", body) != 204)
			return 1;
		t_run = now_us();
	}
	/* the VMM's memory once the guest runs again (before it does
	 * anything for us) */
	long long cpu0 = cpu_us(pid);
	struct memuse m0;
	bool m0ok = memuse(pid, &m0);
	size_t from = con.len;
	char line[80], want[80];
	int n = snprintf(line, sizeof(line), "%s\n", token);
	snprintf(want, sizeof(want), "ECHO:%s", token);
	int64_t t_tok = now_us();
	if (write(in_w, line, (size_t)n) != n) {
		fail("cannot write to the console");
		return 1;
	}
	if (!con_wait(want, from)) {
		fail("the restored guest did not answer on its console");
		return 1;
	}
	int64_t t_ans = now_us();
	struct memuse m;
	bool mok = memuse(pid, &m);
	/* the idle guest's cost: CPU over -i ms, after 1 s for the guest to
	 * settle (its shell goes on to start a sleep) */
	long long idle = -1;
	if (idle_ms > 0) {
		usleep(1000000);
		long long a = cpu_us(pid);
		usleep((useconds_t)idle_ms * 1000);
		long long b = cpu_us(pid);
		if (a >= 0 && b >= a)
			idle = (b - a) / idle_ms;
	}
	/* (the time spent here reading smaps_rollup between the two is not
	 * the VMM's: answer_us = running_us + the console round trip) */
	printf("SNAPTIME op=restore label=%s mem_mib=%ld run=%s sock_us=%lld req_us=%lld "
	       "running_us=%lld answer_us=%lld echo_us=%lld run_cpu_us=%lld idle_cpu_pm=%lld "
	       "run_rss_kb=%lld run_priv_kb=%lld "
	       "run_privdirty_kb=%lld rss_kb=%lld pss_kb=%lld priv_kb=%lld privdirty_kb=%lld rc=0\n",
	       label, mem_mib, run, (long long)(t_sock - t0), (long long)(t_run - t_req),
	       (long long)(t_run - t0), (long long)(t_run - t0 + t_ans - t_tok),
	       (long long)(t_ans - t_tok), cpu0, idle, m0ok ? m0.rss : -1,
	       m0ok ? m0.priv_clean + m0.priv_dirty : -1, m0ok ? m0.priv_dirty : -1,
	       mok ? m.rss : -1, mok ? m.pss : -1, mok ? m.priv_clean + m.priv_dirty : -1,
	       mok ? m.priv_dirty : -1);
	close(c->fd);
	free(c);
	close(in_w);
	return 0;
}

/* ---- clones ---- */
static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

static long long median(long long *v, int n)
{
	if (n <= 0)
		return -1;
	qsort(v, (size_t)n, sizeof(*v), cmp_ll);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* @argv with "{n}" in every argument replaced by @k (static storage) */
static char **subst_argv(char **argv, int k)
{
	static char *out[256];
	static char store[256][512];
	int i;
	for (i = 0; argv[i] && i < 255; i++) {
		const char *p = strstr(argv[i], "{n}");
		if (!p) {
			out[i] = argv[i];
			continue;
		}
		snprintf(store[i], sizeof(store[i]), "%.*s%d%s", (int)(p - argv[i]), argv[i], k, p + 3);
		out[i] = store[i];
	}
	out[i] = NULL;
	return out;
}

/* a QEMU clone's progress: each state waits for the reply to what the
 * previous one sent (Q_MIGRATING for the MIGRATION event) */
enum qstate {
	Q_CONNECT, Q_HELLO, Q_CAPS, Q_EVENTS, Q_INCOMING, Q_MIGRATING, Q_STATUS, Q_CONT, Q_RUNNING
};

struct qclone {
	pid_t pid;
	enum qstate st;
	struct conn c;
	char sock[512];
	int64_t t_run;
};

/* Send one QMP command without waiting. */
static bool qsend(struct qclone *q, const char *cmd)
{
	return send_all(q->c.fd, cmd, strlen(cmd));
}

/* Advance one QEMU clone as far as its buffered input allows. */
static bool qstep(struct qclone *q, const char *incoming)
{
	for (;;) {
		size_t n = 0;
		if (q->st != Q_HELLO && q->st != Q_MIGRATING && q->st != Q_RUNNING &&
		    !(n = qmp_reply_ready(&q->c)))
			return true;
		switch (q->st) {
		case Q_HELLO:
			qmp_reply_ready(&q->c);
			if (!q->c.greeted)
				return true;
			q->st = Q_CAPS;
			if (!qsend(q, "{\"execute\": \"qmp_capabilities\"}\n"))
				return false;
			continue;
		case Q_CAPS:
			q->st = Q_EVENTS;
			if (!qsend(q, "{\"execute\": \"migrate-set-capabilities\", \"arguments\": "
				      "{\"capabilities\": [{\"capability\": \"events\", \"state\": true}]}}\n"))
				return false;
			break;
		case Q_EVENTS:
			q->st = Q_INCOMING;
			if (!qsend(q, incoming))
				return false;
			break;
		case Q_INCOMING:
			q->st = Q_MIGRATING;
			break;
		case Q_MIGRATING:
			qmp_reply_ready(&q->c);
			if (!strcmp(q->c.mig, "completed")) {
				q->st = Q_STATUS;
				if (!qsend(q, "{\"execute\": \"query-status\"}\n"))
					return false;
				continue;
			}
			if (!strcmp(q->c.mig, "failed") || !strcmp(q->c.mig, "cancelled"))
				return false;
			return true;
		case Q_STATUS:
			if (strstr(q->c.buf, "\"status\": \"running\"") &&
			    strstr(q->c.buf, "\"status\": \"running\"") < q->c.buf + n) {
				q->st = Q_RUNNING;
				q->t_run = now_us();
			} else {
				q->st = Q_CONT;
				if (!qsend(q, "{\"execute\": \"cont\"}\n"))
					return false;
			}
			break;
		case Q_CONT:
			q->st = Q_RUNNING;
			q->t_run = now_us();
			break;
		case Q_RUNNING:
			return true;
		case Q_CONNECT:
			return true;
		}
		bool ok = !strncmp(q->c.buf, "{\"return\"", 9);
		if (!ok)
			fprintf(stderr, "snaptime: %s: clone %d: %.*s", label, (int)q->pid, (int)n, q->c.buf);
		consume(&q->c, n);
		if (!ok)
			return false;
	}
}

static int do_clones(char **argv)
{
	int n = (int)count;
	char stream[4096];
	path_in_dir(stream, sizeof(stream), "vmstate");
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	long long avail0 = mem_available_kb();
	pid_t cl[MAX_CLONES];
	int ncl = 0, rc = 0;
	int64_t t0 = now_us(), t_all = -1;
	if (!is_qmp) {
		int out_r;
		pid_t pid = spawn(argv, NULL, &out_r, errlog, -1);
		if (pid < 0) {
			fail("cannot start visor restore --clones");
			return 1;
		}
		/* its report: "ID\tpid P\trunning\tLOG" per clone */
		FILE *f = fdopen(out_r, "r");
		char line[1024];
		while (f && fgets(line, sizeof(line), f)) {
			int p;
			char *t = strstr(line, "\tpid ");
			if (t && sscanf(t, "\tpid %d", &p) == 1 && ncl < MAX_CLONES) {
				cl[ncl++] = p;
				if (npids < MAX_CLONES + 1)
					pids[npids++] = p;
				if (!strstr(t, "\trunning\t")) {
					fprintf(stderr, "snaptime: %s: %s", label, line);
					rc = 1;
				}
			}
		}
		int st;
		waitpid(pid, &st, 0);
		t_all = now_us() - t0;
		if (f)
			fclose(f);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			rc = 1;
	} else {
		static struct qclone q[MAX_CLONES];
		char incoming[8300];
		if (!strcmp(transport, "fd"))
			snprintf(incoming, sizeof(incoming), "{\"execute\": \"migrate-incoming\", "
							     "\"arguments\": {\"uri\": \"fd:3\"}}\n");
		else
			snprintf(incoming, sizeof(incoming), "{\"execute\": \"migrate-incoming\", "
							     "\"arguments\": {\"uri\": \"exec:cat %s\"}}\n", stream);
		int sock_arg = -1;
		for (int i = 0; argv[i]; i++)
			if (strstr(argv[i], "{n}"))
				sock_arg = i;
		if (sock_arg < 0 || !sock) {
			fail("QEMU clones need -s SOCK and {n} in it (and in the command)");
			return 2;
		}
		int wfd = dir_watch(sock);
		for (int k = 0; k < n; k++) {
			char **av = subst_argv(argv, k);
			const char *p = strstr(sock, "{n}");
			snprintf(q[k].sock, sizeof(q[k].sock), "%.*s%d%s", (int)(p ? p - sock : (long)strlen(sock)),
				 sock, k, p ? p + 3 : "");
			unlink(q[k].sock);
			int fd3 = -1;
			if (!strcmp(transport, "fd") && (fd3 = open(stream, O_RDONLY | O_CLOEXEC)) < 0) {
				fail("cannot open the stream file");
				return 1;
			}
			q[k].pid = spawn(av, NULL, NULL, errlog, fd3);
			if (fd3 >= 0)
				close(fd3);
			if (q[k].pid < 0) {
				fail("cannot start QEMU");
				return 1;
			}
			q[k].st = Q_CONNECT;
			q[k].c.fd = -1;
			cl[ncl++] = q[k].pid;
		}
		int running = 0;
		while (running < n && left_ms() > 0 && rc == 0) {
			struct pollfd p[MAX_CLONES + 1];
			int idx[MAX_CLONES], np = 0;
			bool connecting = false, bound = false;
			for (int k = 0; k < n; k++) {
				if (q[k].st == Q_CONNECT) {
					int fd = try_connect(q[k].sock);
					if (fd < 0) {
						struct stat st;
						if (waitpid(q[k].pid, NULL, WNOHANG) == q[k].pid) {
							fprintf(stderr, "snaptime: %s: clone %d exited\n", label, k);
							q[k].pid = 0;
							rc = 1;
						}
						connecting = true;
						bound |= stat(q[k].sock, &st) == 0;
						continue;
					}
					memset(&q[k].c, 0, sizeof(q[k].c));
					q[k].c.fd = fd;
					q[k].st = Q_HELLO;
				}
				if (q[k].st == Q_RUNNING)
					continue;
				p[np] = (struct pollfd){q[k].c.fd, POLLIN, 0};
				idx[np++] = k;
			}
			/* sockets still to come: wake on their creation (a socket
			 * bound but not yet listening: again in 1 ms) */
			int tmo = left_ms();
			if (connecting) {
				tmo = bound ? 1 : wfd >= 0 ? 50 : 10;
				if (wfd >= 0)
					p[np] = (struct pollfd){wfd, POLLIN, 0};
			}
			int pr = poll(p, (nfds_t)(np + (connecting && wfd >= 0)), tmo);
			if (pr < 0 && errno != EINTR)
				break;
			if (connecting && wfd >= 0 && pr > 0 && (p[np].revents & POLLIN)) {
				dir_drain(wfd);
				pr--;
			}
			for (int j = 0; j < np && pr > 0; j++) {
				struct qclone *c = &q[idx[j]];
				if (!(p[j].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				ssize_t r = read(c->c.fd, c->c.buf + c->c.len, sizeof(c->c.buf) - 1 - c->c.len);
				if (r <= 0) {
					fprintf(stderr, "snaptime: %s: clone %d closed QMP\n", label, idx[j]);
					rc = 1;
					break;
				}
				c->c.len += (size_t)r;
				c->c.buf[c->c.len] = 0;
				if (!qstep(c, incoming)) {
					fprintf(stderr, "snaptime: %s: clone %d failed\n", label, idx[j]);
					rc = 1;
					break;
				}
				if (c->st == Q_RUNNING)
					running++;
			}
		}
		if (running < n)
			rc = 1;
		int64_t last = 0;
		for (int k = 0; k < n; k++)
			if (q[k].t_run > last)
				last = q[k].t_run;
		t_all = running == n ? last - t0 : -1;
		if (wfd >= 0)
			close(wfd);
		for (int k = 0; k < n; k++)
			if (q[k].c.fd >= 0 && q[k].st != Q_CONNECT)
				close(q[k].c.fd);
	}
	/* memory of every clone, right after the fan-out */
	long long avail1 = mem_available_kb();
	static long long priv[MAX_CLONES], pdirty[MAX_CLONES], pss[MAX_CLONES], rss[MAX_CLONES];
	static long long cpu[MAX_CLONES];
	long long cpu_sum = 0;
	int nm = 0, nc = 0;
	for (int k = 0; k < ncl; k++) {
		long long x = cpu_us(cl[k]);
		if (x >= 0) {
			cpu[nc++] = x;
			cpu_sum += x;
		}
	}
	long long pmax = -1, dmax = -1;
	for (int k = 0; k < ncl; k++) {
		struct memuse m;
		if (!memuse(cl[k], &m))
			continue;
		priv[nm] = m.priv_clean + m.priv_dirty;
		if (priv[nm] > pmax)
			pmax = priv[nm];
		pdirty[nm] = m.priv_dirty;
		if (m.priv_dirty > dmax)
			dmax = m.priv_dirty;
		pss[nm] = m.pss;
		rss[nm] = m.rss;
		nm++;
	}
	if (nm != n)
		rc = 1;
	long long drop = (avail0 >= 0 && avail1 >= 0 && n > 0) ? (avail0 - avail1) / n : -1;
	/* what the running, idle clones cost: CPU over -i ms */
	static long long idle[MAX_CLONES];
	int ni = 0;
	if (idle_ms > 0 && nc == ncl) {
		static long long a[MAX_CLONES];
		for (int k = 0; k < ncl; k++)
			a[k] = cpu_us(cl[k]);
		usleep((useconds_t)idle_ms * 1000);
		for (int k = 0; k < ncl; k++) {
			long long b = cpu_us(cl[k]);
			if (a[k] >= 0 && b >= a[k])
				idle[ni++] = (b - a[k]) / idle_ms;
		}
	}
	long long pm = median(priv, nm), dm = median(pdirty, nm), sm = median(pss, nm),
		  rm = median(rss, nm);
	printf("SNAPTIME op=clones label=%s mem_mib=%ld n=%d run=%s running=%d all_us=%lld "
	       "priv_kb_med=%lld priv_kb_max=%lld privdirty_kb_med=%lld privdirty_kb_max=%lld "
	       "pss_kb_med=%lld rss_kb_med=%lld avail_drop_kb=%lld cpu_us_med=%lld cpu_us_sum=%lld "
	       "idle_cpu_pm_med=%lld rc=%d\n",
	       label, mem_mib, n, run, nm, (long long)(rc ? -1 : t_all), pm, pmax, dm, dmax, sm, rm,
	       drop, median(cpu, nc), nc == ncl ? cpu_sum : -1, ni ? median(idle, ni) : -1, rc);
	fflush(stdout);
	/* the clones that are not our children yet (visor's were orphaned to
	 * us) are killed and reaped by kill_all */
	return rc;
}

static _Noreturn void usage(void)
{
	fprintf(stderr, "usage: snaptime create|restore|clones -k visor|qmp -d DIR [-s SOCK] [-n N] "
			"[-l LABEL] [-r RUN] [-t SECS] [-e FILE] [-q exec|fd] [-m MIB] [-i MS] -- CMD...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *op = argv[1];
	long tmo = 300;
	int opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "+k:s:d:n:l:r:t:e:q:m:i:")) != -1) {
		switch (opt) {
		case 'k': kind = optarg; break;
		case 's': sock = optarg; break;
		case 'd': dir = optarg; break;
		case 'n': count = strtol(optarg, NULL, 10); break;
		case 'l': label = optarg; break;
		case 'r': run = optarg; break;
		case 't': tmo = strtol(optarg, NULL, 10); break;
		case 'e': errlog = optarg; break;
		case 'q': transport = optarg; break;
		case 'm': mem_mib = strtol(optarg, NULL, 10); break;
		case 'i': idle_ms = strtol(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (!kind || !dir || optind >= argc || count < 1 || count > MAX_CLONES || tmo < 1 ||
	    idle_ms < 0 || idle_ms > 60000 ||
	    (strcmp(kind, "visor") && strcmp(kind, "qmp")) ||
	    (strcmp(transport, "fd") && strcmp(transport, "exec")))
		usage();
	is_qmp = !strcmp(kind, "qmp");
	signal(SIGPIPE, SIG_IGN);
	deadline = now_us() + (int64_t)tmo * 1000000;
	int rc = 2;
	if (!strcmp(op, "create") && sock)
		rc = do_create(argv + optind);
	else if (!strcmp(op, "restore") && sock)
		rc = do_restore(argv + optind);
	else if (!strcmp(op, "clones"))
		rc = do_clones(argv + optind);
	else
		usage();
	if (rc && strcmp(op, "clones")) {
		/* the reason, and the console's last lines */
		printf("SNAPTIME op=%s label=%s mem_mib=%ld run=%s rc=%d\n", op, label, mem_mib, run, rc);
		if (con.buf) {
			size_t from = con.len > 600 ? con.len - 600 : 0;
			fprintf(stderr, "snaptime: %s: console ends with:\n%s\n", label, con.buf + from);
		}
	}
	fflush(stdout);
	kill_all();
	return rc;
}
