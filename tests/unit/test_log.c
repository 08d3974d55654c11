/* SPDX-License-Identifier: MIT */
/* The logger: "visor: ..." lines on stderr, Firecracker's format on a file
 * or FIFO with each option, level filtering, and writes that never wait
 * for a reader (dropped and counted instead). */
#include "../../src/util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

/* A test that would block (the bug these tests look for) is killed by
 * SIGALRM instead of hanging the run. */
#define WATCHDOG_S 30

static char tmpdir[64];

/* A path in the test's directory (8 rotating buffers). */
static const char *tmp_path(const char *name)
{
	static char bufs[8][128];
	static unsigned next;
	char *p = bufs[next++ % 8];
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/visor-test-log-XXXXXX");
		if (!mkdtemp(tmpdir))
			abort();
	}
	snprintf(p, sizeof(bufs[0]), "%s/%s", tmpdir, name);
	return p;
}

/* The whole file (NUL-terminated, malloc'd) or NULL. */
static char *slurp(const char *path, size_t *len_out)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, len = 0;
	char *b = malloc(cap);
	for (;;) {
		if (len + 1 >= cap)
			b = realloc(b, cap *= 2);
		ssize_t n = read(fd, b + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	b[len] = 0;
	if (len_out)
		*len_out = len;
	return b;
}

/* Everything readable now from the non-blocking @fd. */
static char *drain(int fd, size_t *len_out)
{
	size_t cap = 4096, len = 0;
	char *b = malloc(cap);
	for (;;) {
		if (len + 1 >= cap)
			b = realloc(b, cap *= 2);
		ssize_t n = read(fd, b + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	b[len] = 0;
	if (len_out)
		*len_out = len;
	return b;
}

static bool matches(const char *s, const char *re)
{
	regex_t r;
	if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB))
		return false;
	bool ok = regexec(&r, s, 0, NULL, 0) == 0;
	regfree(&r);
	return ok;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

#define TS "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{9}"

static int configure(const char *path, enum log_level level, bool show_level, bool show_origin,
		     const char *id)
{
	struct log_options o = {.path = path,
				.level = level,
				.show_level = show_level,
				.show_origin = show_origin,
				.instance_id = id};
	char err[256] = "";
	int r = log_configure(&o, err, sizeof(err));
	if (r)
		printf("  log_configure(%s): %d %s\n", path ? path : "-", r, err);
	return r;
}

/* stderr redirected to a pipe for a test; restored by stderr_restore. */
struct stderr_redirect {
	int saved, rd;
};

static void stderr_to_pipe(struct stderr_redirect *sr)
{
	int p[2];
	if (pipe(p))
		abort();
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	sr->saved = dup(2);
	sr->rd = p[0];
	dup2(p[1], 2);
	close(p[1]);
	log_reopen_stderr();
}

static void stderr_restore(struct stderr_redirect *sr)
{
	dup2(sr->saved, 2);
	close(sr->saved);
	close(sr->rd);
	log_reopen_stderr();
}

/* ---- stderr ---------------------------------------------------------------- */

TEST(stderr_visor_lines)
{
	log_reset();
	struct stderr_redirect sr;
	stderr_to_pipe(&sr);
	log_info("hello %d", 42);
	log_warn("careful");
	log_error("broken: %s", "disk");
	log_debug("not shown at Info");
	log_msg(LOG_WARN, "no origin");
	char *s = drain(sr.rd, NULL);
	CHECK_STR(s, "visor: hello 42\nvisor: warning: careful\nvisor: error: broken: disk\n"
		     "visor: warning: no origin\n");
	free(s);

	log_set_raw(true);
	log_info("raw");
	log_set_raw(false);
	s = drain(sr.rd, NULL);
	CHECK_STR(s, "visor: raw\r\n");
	free(s);

	log_set_level(LOG_DEBUG);
	log_debug("now shown");
	s = drain(sr.rd, NULL);
	CHECK_STR(s, "visor: debug: now shown\n");
	free(s);
	stderr_restore(&sr);
	log_reset();
}

TEST(stderr_shared_description_stays_blocking)
{
	/* The non-blocking writes go through a private description: the
	 * one shared with the parent shell keeps its flags. */
	log_reset();
	struct stderr_redirect sr;
	stderr_to_pipe(&sr);
	log_info("x");
	CHECK_EQ(fcntl(2, F_GETFL) & O_NONBLOCK, 0);
	char *s = drain(sr.rd, NULL);
	CHECK_STR(s, "visor: x\n");
	free(s);
	stderr_restore(&sr);
}

TEST(stderr_pipe_nobody_reads_drops_and_counts)
{
	log_reset();
	struct stderr_redirect sr;
	stderr_to_pipe(&sr);
	alarm(WATCHDOG_S);
	uint64_t before = log_dropped_lines();
	char pad[200];
	memset(pad, 'p', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = 0;
	/* ~2000 * 220 bytes: far more than a pipe holds */
	for (int i = 0; i < 2000; i++)
		log_info("line %04d %s", i, pad);
	alarm(0);
	uint64_t dropped = log_dropped_lines() - before;
	CHECK(dropped > 0);
	size_t len;
	char *s = drain(sr.rd, &len);
	/* what got through is whole lines, and every line is accounted for */
	CHECK(len > 0 && s[len - 1] == '\n');
	CHECK_EQ(count_lines(s) + dropped, 2000);
	CHECK(matches(s, "^visor: line 0000 p+\n"));
	free(s);
	stderr_restore(&sr);
}

TEST(stderr_socket_nobody_reads_drops_and_counts)
{
	/* stderr a stream socket (a journal, a supervisor) that is not read */
	log_reset();
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	int one = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one));
	int saved = dup(2);
	dup2(sv[0], 2);
	close(sv[0]);
	log_reopen_stderr();
	alarm(WATCHDOG_S);
	uint64_t before = log_dropped_lines();
	for (int i = 0; i < 2000; i++)
		log_info("socket line %04d ........................................", i);
	alarm(0);
	dup2(saved, 2);
	close(saved);
	log_reopen_stderr();
	CHECK(log_dropped_lines() - before > 0);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	char *s = drain(sv[1], NULL);
	close(sv[1]);
	/* whatever got through starts each line afresh */
	bool ok = count_lines(s) > 0;
	char *save = NULL;
	for (char *ln = strtok_r(s, "\n", &save); ln && ok; ln = strtok_r(NULL, "\n", &save))
		ok = !strncmp(ln, "visor: socket line ", 19);
	CHECK(ok);
	free(s);
}

TEST(control_characters_do_not_split_lines)
{
	log_reset();
	struct stderr_redirect sr;
	stderr_to_pipe(&sr);
	log_warn("a\nb\rc\x1b[31md\te\x7f");
	char *s = drain(sr.rd, NULL);
	CHECK_STR(s, "visor: warning: a b c?[31md\te?\n");
	free(s);
	stderr_restore(&sr);
}

TEST(long_message_is_cut)
{
	log_reset();
	struct stderr_redirect sr;
	stderr_to_pipe(&sr);
	char *big = malloc(10000);
	memset(big, 'x', 9999);
	big[9999] = 0;
	log_info("%s", big);
	size_t len;
	char *s = drain(sr.rd, &len);
	CHECK_EQ(len, LOG_LINE_MAX);
	CHECK(len >= 4 && !memcmp(s + len - 4, "...\n", 4));
	CHECK(!strncmp(s, "visor: xxx", 10));
	free(s);
	free(big);
	stderr_restore(&sr);
}

TEST(die_prints_and_exits_1)
{
	int p[2];
	CHECK_EQ(pipe(p), 0);
	fflush(NULL); /* the child's exit must not print our buffered output again */
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		log_reopen_stderr();
		struct log_options o = {.level = LOG_ERROR, .off = true};
		log_configure(&o, NULL, 0); /* die() writes even when "Off" */
		die("cannot %s", "start");
	}
	close(p[1]);
	int st;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	char buf[256] = "";
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	CHECK(n > 0);
	CHECK_STR(buf, "visor: error: cannot start\n");
	close(p[0]);
}

/* ---- levels ------------------------------------------------------------------ */

TEST(parse_level_names)
{
	enum log_level l;
	bool off;
	CHECK_EQ(log_parse_level("Error", &l, &off), 0);
	CHECK(l == LOG_ERROR && !off);
	CHECK_EQ(log_parse_level("Warning", &l, &off), 0);
	CHECK(l == LOG_WARN && !off);
	CHECK_EQ(log_parse_level("WARN", &l, &off), 0);
	CHECK(l == LOG_WARN);
	CHECK_EQ(log_parse_level("info", &l, &off), 0);
	CHECK(l == LOG_INFO);
	CHECK_EQ(log_parse_level("Debug", &l, &off), 0);
	CHECK(l == LOG_DEBUG);
	CHECK_EQ(log_parse_level("Trace", &l, &off), 0);
	CHECK(l == LOG_DEBUG && !off);
	CHECK_EQ(log_parse_level("Off", &l, &off), 0);
	CHECK(off);
	CHECK_EQ(log_parse_level("verbose", &l, &off), -EINVAL);
	CHECK_EQ(log_parse_level(NULL, &l, &off), -EINVAL);
}

TEST(level_filtering)
{
	log_reset();
	const char *path = tmp_path("levels.log");
	unlink(path);
	CHECK_EQ(configure(path, LOG_WARN, true, false, "lv"), 0);
	log_debug("d1");
	log_info("i1");
	log_warn("w1");
	log_error("e1");
	CHECK_EQ(configure(NULL, LOG_ERROR, true, false, NULL), 0);
	log_warn("w2");
	log_error("e2");
	CHECK_EQ(configure(NULL, LOG_DEBUG, true, false, NULL), 0);
	log_debug("d3");
	struct log_options off = {.level = LOG_ERROR, .off = true, .show_level = true};
	CHECK_EQ(log_configure(&off, NULL, 0), 0);
	log_clear_last_error();
	log_error("e4 not written");
	/* the API still learns why a request failed */
	CHECK_STR(log_last_error(), "e4 not written");
	log_warn("w4");
	log_reset();

	char *s = slurp(path, NULL);
	CHECK(s != NULL);
	if (s) {
		CHECK(matches(s, "^" TS " \\[lv:main:WARN\\] w1\n" TS " \\[lv:main:ERROR\\] e1\n" TS
				 " \\[lv:main:ERROR\\] e2\n" TS " \\[lv:main:DEBUG\\] d3\n$"));
		free(s);
	}
}

/* ---- Firecracker's format ------------------------------------------------------- */

TEST(format_plain)
{
	log_reset();
	const char *path = tmp_path("plain.log");
	unlink(path);
	/* the same clock the logger reads (time() may use a coarser one that
	 * lags it by a tick, which made this test flaky) */
	struct timespec r0, r1;
	clock_gettime(CLOCK_REALTIME, &r0);
	CHECK_EQ(configure(path, LOG_INFO, false, false, "vm1"), 0);
	log_info("hello %s", "world");
	clock_gettime(CLOCK_REALTIME, &r1);
	time_t t0 = r0.tv_sec, t1 = r1.tv_sec;
	log_reset();
	char *s = slurp(path, NULL);
	CHECK(s && matches(s, "^" TS " \\[vm1:main\\] hello world\n$"));
	/* the timestamp is UTC: between the times taken around the call */
	if (s) {
		struct tm tm = {0};
		CHECK(strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) != NULL);
		time_t ts = timegm(&tm);
		CHECK(ts >= t0 && ts <= t1);
	}
	free(s);
}

TEST(format_default_instance_id)
{
	log_reset();
	const char *path = tmp_path("anon.log");
	unlink(path);
	CHECK_EQ(configure(path, LOG_INFO, false, false, NULL), 0);
	log_info("x");
	log_reset();
	char *s = slurp(path, NULL);
	CHECK(s && matches(s, "^" TS " \\[anonymous-instance:main\\] x\n$"));
	free(s);
}

TEST(format_show_level)
{
	log_reset();
	const char *path = tmp_path("level.log");
	unlink(path);
	CHECK_EQ(configure(path, LOG_DEBUG, true, false, "vm1"), 0);
	log_debug("d");
	log_info("i");
	log_warn("w");
	log_error("e");
	log_reset();
	char *s = slurp(path, NULL);
	CHECK(s && matches(s, "^" TS " \\[vm1:main:DEBUG\\] d\n" TS " \\[vm1:main:INFO\\] i\n" TS
			      " \\[vm1:main:WARN\\] w\n" TS " \\[vm1:main:ERROR\\] e\n$"));
	free(s);
}

TEST(format_show_origin)
{
	log_reset();
	const char *path = tmp_path("origin.log");
	unlink(path);
	CHECK_EQ(configure(path, LOG_INFO, false, true, "vm1"), 0);
	log_info("here");
	int line = __LINE__ - 1;
	log_msg(LOG_INFO, "nowhere");
	log_reset();
	char *s = slurp(path, NULL);
	char pre[256];
	snprintf(pre, sizeof(pre), " [vm1:main:%s:%d] here\n", __FILE__, line);
	CHECK(s && strstr(s, pre) != NULL);
	CHECK(s && strstr(s, " [vm1:main:?:?] nowhere\n") != NULL);
	CHECK(s && count_lines(s) == 2);
	free(s);
}

TEST(format_show_level_and_origin)
{
	log_reset();
	const char *path = tmp_path("both.log");
	unlink(path);
	CHECK_EQ(configure(path, LOG_INFO, true, true, "vm-7"), 0);
	log_warn("both %d", 2);
	int line = __LINE__ - 1;
	log_reset();
	char *s = slurp(path, NULL);
	char want[256];
	snprintf(want, sizeof(want), " [vm-7:main:WARN:%s:%d] both 2\n", __FILE__, line);
	CHECK(s && matches(s, "^" TS " \\[") && strstr(s, want) && count_lines(s) == 1);
	free(s);
}

static void *named_thread(void *arg)
{
	pthread_setname_np(pthread_self(), (const char *)arg);
	log_info("from a thread");
	return NULL;
}

TEST(format_thread_names)
{
	log_reset();
	const char *path = tmp_path("threads.log");
	unlink(path);
	CHECK_EQ(configure(path, LOG_INFO, false, false, "vm1"), 0);
	pthread_t t;
	pthread_create(&t, NULL, named_thread, "vcpu3");
	pthread_join(t, NULL);
	pthread_create(&t, NULL, named_thread, "api");
	pthread_join(t, NULL);
	log_set_thread_name("vmm");
	log_info("renamed");
	log_set_thread_name(NULL);
	log_info("back");
	log_reset();
	char *s = slurp(path, NULL);
	CHECK(s && matches(s, "^" TS " \\[vm1:vcpu3\\] from a thread\n" TS
			      " \\[vm1:api\\] from a thread\n" TS " \\[vm1:vmm\\] renamed\n" TS
			      " \\[vm1:main\\] back\n$"));
	free(s);
}

/* ---- destinations -------------------------------------------------------------- */

TEST(file_gets_appended_lines)
{
	log_reset();
	const char *path = tmp_path("append.log");
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK_EQ(write(fd, "earlier\n", 8), 8);
	close(fd);
	CHECK_EQ(configure(path, LOG_INFO, false, false, "a"), 0);
	log_info("one");
	log_info("two");
	/* configured again (the file reopened): still appended */
	CHECK_EQ(configure(path, LOG_INFO, false, false, "a"), 0);
	log_info("three");
	log_reset();
	char *s = slurp(path, NULL);
	CHECK(s && matches(s, "^earlier\n" TS " \\[a:main\\] one\n" TS " \\[a:main\\] two\n" TS
			      " \\[a:main\\] three\n$"));
	free(s);

	/* a new file is created 0600 */
	const char *fresh = tmp_path("fresh.log");
	unlink(fresh);
	mode_t old = umask(0);
	CHECK_EQ(configure(fresh, LOG_INFO, false, false, "a"), 0);
	umask(old);
	log_reset();
	struct stat st;
	CHECK_EQ(stat(fresh, &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0600);
}

TEST(fifo_without_reader_drops_and_counts)
{
	log_reset();
	const char *path = tmp_path("noreader.fifo");
	unlink(path);
	CHECK_EQ(mkfifo(path, 0600), 0);
	alarm(WATCHDOG_S);
	/* no reader: opening does not wait (nor fail) */
	CHECK_EQ(configure(path, LOG_INFO, false, false, "f"), 0);
	uint64_t before = log_dropped_lines(), errs = log_write_errors();
	char pad[300];
	memset(pad, 'q', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = 0;
	for (int i = 0; i < 1000; i++) /* ~350 KB: more than the pipe holds */
		log_info("%04d %s", i, pad);
	uint64_t dropped = log_dropped_lines() - before;
	CHECK(dropped > 0);
	CHECK_EQ(log_write_errors(), errs); /* "would block" is not an error */

	/* a reader that comes later finds the lines that fit, whole */
	int rd = open(path, O_RDONLY | O_NONBLOCK);
	CHECK(rd >= 0);
	size_t len;
	char *s = drain(rd, &len);
	alarm(0);
	CHECK(len > 0 && s[len - 1] == '\n');
	CHECK_EQ(count_lines(s) + dropped, 1000);
	CHECK(matches(s, "^" TS " \\[f:main\\] 0000 q+\n" TS " \\[f:main\\] 0001 q+\n"));
	free(s);
	close(rd);
	log_reset();
	unlink(path);
}

struct writer_arg {
	int id;
	int n;
};

static void *writer(void *p)
{
	struct writer_arg *a = p;
	char name[16];
	snprintf(name, sizeof(name), "vcpu%d", a->id);
	pthread_setname_np(pthread_self(), name);
	for (int i = 0; i < a->n; i++)
		log_info("t%d line %03d %s", a->id, i, "................................");
	return NULL;
}

TEST(fifo_with_reader_gets_whole_lines)
{
	log_reset();
	const char *path = tmp_path("reader.fifo");
	unlink(path);
	CHECK_EQ(mkfifo(path, 0600), 0);
	alarm(WATCHDOG_S);
	int rd = open(path, O_RDONLY | O_NONBLOCK);
	CHECK(rd >= 0);
	CHECK_EQ(configure(path, LOG_INFO, true, false, "r"), 0);
	uint64_t before = log_dropped_lines();
	/* 4 threads * 80 lines * ~90 bytes: fits the pipe, nothing dropped */
	enum { NT = 4, NL = 80 };
	pthread_t t[NT];
	struct writer_arg a[NT];
	for (int i = 0; i < NT; i++) {
		a[i] = (struct writer_arg){i, NL};
		pthread_create(&t[i], NULL, writer, &a[i]);
	}
	for (int i = 0; i < NT; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(log_dropped_lines(), before);
	size_t len;
	char *s = drain(rd, &len);
	alarm(0);
	CHECK_EQ(count_lines(s), NT * NL);
	/* every line whole, and each thread's lines in order */
	int next[NT] = {0};
	bool ok = true;
	char *save = NULL;
	for (char *ln = strtok_r(s, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
		int id, n;
		if (!matches(ln, "^" TS " \\[r:vcpu[0-3]:INFO\\] t[0-3] line [0-9]{3} \\.{32}$") ||
		    sscanf(strstr(ln, "] t") + 3, "%d line %d", &id, &n) != 2 || id < 0 ||
		    id >= NT || n != next[id]) {
			printf("  bad line: %s\n", ln);
			ok = false;
			break;
		}
		next[id]++;
	}
	CHECK(ok);
	free(s);
	close(rd);
	log_reset();
	unlink(path);
}

TEST(fifo_reader_gone_counts_errors)
{
	signal(SIGPIPE, SIG_IGN); /* as main.c does */
	log_reset();
	const char *path = tmp_path("gone.fifo");
	unlink(path);
	CHECK_EQ(mkfifo(path, 0600), 0);
	int rd = open(path, O_RDONLY | O_NONBLOCK);
	CHECK_EQ(configure(path, LOG_INFO, false, false, "g"), 0);
	log_info("read");
	char *s = drain(rd, NULL);
	CHECK(matches(s, "^" TS " \\[g:main\\] read\n$"));
	free(s);
	close(rd);
	uint64_t d = log_dropped_lines(), e = log_write_errors();
	log_info("nobody");
	CHECK_EQ(log_dropped_lines(), d + 1);
	CHECK_EQ(log_write_errors(), e + 1);
	log_reset();
	unlink(path);
}

TEST(configure_errors_change_nothing)
{
	log_reset();
	const char *good = tmp_path("kept.log");
	unlink(good);
	CHECK_EQ(configure(good, LOG_INFO, false, false, "k"), 0);

	char err[256];
	struct log_options o = {.path = tmpdir, .level = LOG_DEBUG, .show_level = true};
	CHECK_EQ(log_configure(&o, err, sizeof(err)), -EISDIR);
	CHECK(strstr(err, tmpdir) != NULL);
	o.path = tmp_path("no/such/dir.log");
	CHECK_EQ(log_configure(&o, err, sizeof(err)), -ENOENT);
	o.path = good;
	o.instance_id = "bad id]";
	CHECK_EQ(log_configure(&o, err, sizeof(err)), -EINVAL);
	o.instance_id = "";
	CHECK_EQ(log_configure(&o, err, sizeof(err)), -EINVAL);
	char longid[LOG_INSTANCE_ID_MAX + 2];
	memset(longid, 'a', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = 0;
	o.instance_id = longid;
	CHECK_EQ(log_configure(&o, err, sizeof(err)), -EINVAL);
	o.instance_id = NULL;
	o.level = (enum log_level)9;
	CHECK_EQ(log_configure(&o, err, sizeof(err)), -EINVAL);

	/* a Unix socket is not a log destination */
	const char *sp = tmp_path("sock");
	unlink(sp);
	int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sp);
	CHECK_EQ(bind(sfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	o.path = sp;
	o.level = LOG_DEBUG;
	CHECK_EQ(log_configure(&o, err, sizeof(err)), -ENOTSUP);
	close(sfd);
	unlink(sp);

	/* still the first configuration: Info, no level shown, id k */
	log_debug("hidden");
	log_info("kept");
	log_reset();
	char *s = slurp(good, NULL);
	CHECK(s && matches(s, "^" TS " \\[k:main\\] kept\n$"));
	free(s);
}

TEST(character_device_is_a_destination)
{
	log_reset();
	CHECK_EQ(configure("/dev/null", LOG_INFO, true, true, "n"), 0);
	uint64_t d = log_dropped_lines();
	log_info("into the void");
	CHECK_EQ(log_dropped_lines(), d);
	log_reset();
}

TEST(last_error_per_thread)
{
	log_reset();
	struct stderr_redirect sr;
	stderr_to_pipe(&sr);
	log_clear_last_error();
	CHECK_STR(log_last_error(), "");
	log_warn("not an error");
	CHECK_STR(log_last_error(), "");
	log_error("disk %d failed", 3);
	CHECK_STR(log_last_error(), "disk 3 failed");
	log_clear_last_error();
	CHECK_STR(log_last_error(), "");
	free(drain(sr.rd, NULL));
	stderr_restore(&sr);
}

TEST(ratelimited_passes_origin_and_counts)
{
	log_reset();
	const char *path = tmp_path("rl.log");
	unlink(path);
	CHECK_EQ(configure(path, LOG_INFO, false, true, "rl"), 0);
	struct ratelimit rl = {0};
	for (int i = 0; i < RATELIMIT_BURST + 5; i++)
		log_ratelimited(&rl, LOG_WARN, "guest did %d", i);
	log_reset();
	char *s = slurp(path, NULL);
	CHECK(s && count_lines(s) == RATELIMIT_BURST);
	char want[128];
	snprintf(want, sizeof(want), ":%s:", __FILE__);
	CHECK(s && strstr(s, want));
	free(s);
}

TEST(cleanup)
{
	log_reset();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (tmpdir[0])
		CHECK_EQ(system(cmd), 0);
}

TEST_MAIN()
