/* SPDX-License-Identifier: MIT */
/*
 * The migration transport (migration/transport.c): URL parsing, Unix and
 * TCP connections with a thread on the other side, 64 MiB transfers
 * checked by checksum, descriptor passing, timeouts, cancellation from
 * another thread, and mutual TLS with certificates made here with the
 * OpenSSL API: success, a peer signed by another CA (both directions), a
 * client without a certificate, expired certificates, a wrong server
 * name, plain against TLS both ways, configuration errors.
 *
 * SIGPIPE keeps its default action: a write of the transport that raised
 * it would kill this test.
 */
#include "../../src/migration/transport.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "test.h"
#include "../certgen.h"

#define MIB (1u << 20)
#define BIG (64 * MIB)
#define GUARD_MS 60000 /* only so that a bug fails instead of hanging */

static char dir[] = "/tmp/visor-test-migtr-XXXXXX";

static const char *tmp(const char *name)
{
	static char bufs[8][256];
	static int k;
	char *b = bufs[k++ % 8];
	return test_tmp_path(dir, b, 256, name);
}

static struct mig_url url_of(const char *s)
{
	struct mig_url u;
	char err[256];
	if (mig_url_parse(s, &u, err, sizeof(err))) {
		printf("  bad URL %s: %s\n", s, err);
		abort();
	}
	return u;
}

/* A thread running fn(job). */
struct job {
	pthread_t t;
	void (*fn)(struct job *);
	/* in */
	int lfd;
	struct mig_url url;
	struct mig_tls tls;
	int timeout_ms;
	int hold[2]; /* a pipe: the job waits for its end before closing */
	/* out */
	int r, r2;
	char err[512];
	struct mig_conn *c;
	uint8_t got[16];
	_Atomic pid_t tid; /* set by the thread when it starts */
	uint64_t sum;
};

static void *job_main(void *arg)
{
	struct job *j = arg;
	j->tid = gettid();
	j->fn(j);
	return NULL;
}

static void job_start(struct job *j, void (*fn)(struct job *))
{
	j->fn = fn;
	if (pthread_create(&j->t, NULL, job_main, j))
		abort();
}

static void job_join(struct job *j)
{
	pthread_join(j->t, NULL);
}

static struct job *job_new(void)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		abort();
	j->lfd = -1;
	j->hold[0] = j->hold[1] = -1;
	return j;
}

static void job_free(struct job *j)
{
	if (j->hold[0] >= 0)
		close(j->hold[0]);
	if (j->hold[1] >= 0)
		close(j->hold[1]);
	mig_conn_close(j->c);
	free(j);
}

/* Wait (bounded) until the thread of @j sleeps in the kernel, so that a cancel
 * reaches it blocked rather than before it blocks.  Either way the result
 * must be the same; this only makes the test exercise the harder case. */
static void wait_sleeping(struct job *j)
{
	char path[64], buf[256];
	for (int i = 0; i < 5000 && !j->tid; i++)
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)j->tid);
	for (int i = 0; i < 5000; i++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (n > 0) {
				buf[n] = '\0';
				char *p = strrchr(buf, ')');
				if (p && p[1] == ' ' && p[2] == 'S')
					return;
			}
		}
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	printf("  note: thread %d not seen asleep; cancelling anyway\n", (int)j->tid);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (!d)
		abort();
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* ---- URLs -------------------------------------------------------------- */

TEST(url_good)
{
	struct mig_url u;
	char err[256], txt[MIG_URL_TEXT_MAX];
	CHECK_EQ(mig_url_parse("unix:/run/visor/mig.sock", &u, err, sizeof(err)), 0);
	CHECK_EQ(u.kind, MIG_URL_UNIX);
	CHECK_STR(u.path, "/run/visor/mig.sock");
	CHECK_EQ(mig_url_parse("unix:rel/x.sock", &u, err, sizeof(err)), 0);
	CHECK_STR(u.path, "rel/x.sock");
	CHECK_EQ(mig_url_parse("tcp:10.0.0.2:4444", &u, err, sizeof(err)), 0);
	CHECK_EQ(u.kind, MIG_URL_TCP);
	CHECK_STR(u.host, "10.0.0.2");
	CHECK_EQ(u.port, 4444);
	CHECK_EQ(mig_url_parse("tcp:0.0.0.0:0", &u, err, sizeof(err)), 0);
	CHECK_EQ(u.port, 0);
	CHECK_EQ(mig_url_parse("tcp:[::1]:65535", &u, err, sizeof(err)), 0);
	CHECK_STR(u.host, "::1");
	CHECK_EQ(u.port, 65535);
	CHECK_EQ(mig_url_format(&u, txt, sizeof(txt)), (int)strlen("tcp:[::1]:65535"));
	CHECK_STR(txt, "tcp:[::1]:65535");
	CHECK_EQ(mig_url_parse("tcp:[fe80::1:2]:00080", &u, err, sizeof(err)), 0);
	CHECK_EQ(u.port, 80);
	mig_url_format(&u, txt, sizeof(txt));
	CHECK_STR(txt, "tcp:[fe80::1:2]:80");
	CHECK_EQ(mig_url_format(&u, txt, 5), -ENOSPC);
	/* a path of 107 bytes fits, 108 does not */
	char s[128] = "unix:";
	memset(s + 5, 'a', 107);
	s[5 + 107] = '\0';
	CHECK_EQ(mig_url_parse(s, &u, err, sizeof(err)), 0);
	CHECK_EQ(strlen(u.path), 107);
}

TEST(url_bad)
{
	static const struct {
		const char *s, *says;
	} bad[] = {
		{"", "expected unix:PATH or tcp:HOST:PORT"},
		{"http://x", "expected unix:PATH or tcp:HOST:PORT"},
		{"UNIX:/x", "expected unix:PATH"},
		{"unix:", "empty"},
		{"unix:/a\nb", "control character"},
		{"tcp:", "no ':PORT'"},
		{"tcp:1.2.3.4", "no ':PORT'"},
		{"tcp:1.2.3.4:", "port '' is not a number"},
		{"tcp::4444", "host is empty"},
		{"tcp:1.2.3.4:65536", "not a number from 0 to 65535"},
		{"tcp:1.2.3.4:-1", "not a number"},
		{"tcp:1.2.3.4:+80", "not a number"},
		{"tcp:1.2.3.4:123456", "not a number"},
		{"tcp:1.2.3.4: 80", "not a number"},
		{"tcp:1.2.3:80", "not a numeric IPv4 address"},
		{"tcp:01.2.3.4:80", "not a numeric IPv4 address"},
		{"tcp:256.1.1.1:80", "not a numeric IPv4 address"},
		{"tcp:example.com:80", "host names are not resolved"},
		{"tcp:localhost:80", "host names are not resolved"},
		{"tcp:::1:80", "goes in brackets"},
		{"tcp:[::1]", "expected ':PORT' after ']'"},
		{"tcp:[::1:80", "no ']'"},
		{"tcp:[]:80", "address is empty"},
		{"tcp:[1.2.3.4]:80", "not an IPv6 address"},
		{"tcp:[fe80::1%eth0]:80", "scoped"},
		{"tcp:[::1]x:80", "expected ':PORT'"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mig_url u = {.port = 7};
		char err[256] = "";
		int r = mig_url_parse(bad[i].s, &u, err, sizeof(err));
		if (r != -EINVAL || !strstr(err, bad[i].says) || strchr(err, '\n') ||
		    u.port != 7) {
			printf("  '%s': %d '%s' (want '%s')\n", bad[i].s, r, err, bad[i].says);
			test_failed_now_ = 1;
		}
	}
	char s[128] = "unix:";
	memset(s + 5, 'a', 108);
	s[5 + 108] = '\0';
	struct mig_url u;
	char err[256];
	CHECK_EQ(mig_url_parse(s, &u, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "at most 107") != NULL);
	CHECK_EQ(mig_url_parse(NULL, &u, err, sizeof(err)), -EINVAL);
}

TEST(looks_like_tls)
{
	CHECK(mig_looks_like_tls("\x16\x03\x01\x02\x00", 5));
	CHECK(!mig_looks_like_tls("\x16\x03", 2));
	CHECK(!mig_looks_like_tls("VISORMIG", 8));
	CHECK(!mig_looks_like_tls("\x16\x02\x01", 3));
}

/* ---- plain connections ------------------------------------------------- */

static void do_accept(struct job *j)
{
	j->r = mig_accept(j->lfd, &j->tls, j->timeout_ms, &j->c, j->err, sizeof(j->err));
}

/* A connected pair over @u (plain, or TLS with @stls / @ctls). */
static int pair(const char *url, const struct mig_tls *stls, const struct mig_tls *ctls,
		struct mig_conn **s, struct mig_conn **c)
{
	struct mig_url u = url_of(url);
	char err[512];
	int lfd;
	if (mig_listen(&u, &lfd, err, sizeof(err))) {
		printf("  listen %s: %s\n", url, err);
		return -1;
	}
	if (u.kind == MIG_URL_TCP && u.port == 0)
		u.port = (uint16_t)mig_listen_port(lfd);
	struct job *j = job_new();
	j->lfd = lfd;
	j->timeout_ms = GUARD_MS;
	if (stls)
		j->tls = *stls;
	job_start(j, do_accept);
	int r = mig_connect(&u, ctls, GUARD_MS, c, err, sizeof(err));
	if (r)
		printf("  connect %s: %s\n", url, err);
	/* a plain accept waits for the client's first byte */
	if (!r && !(ctls && ctls->enabled))
		r = mig_conn_write(*c, "H", 1);
	job_join(j);
	if (j->r)
		printf("  accept %s: %s\n", url, j->err);
	if (!r && !j->r && !(ctls && ctls->enabled)) {
		char h;
		r = mig_conn_read(j->c, &h, 1);
	}
	*s = j->c;
	j->c = NULL;
	r = r ? r : j->r;
	job_free(j);
	mig_listen_close(lfd, &u);
	return r;
}

TEST(unix_round_trip_and_counters)
{
	unlink(tmp("rt.sock"));
	char url[300];
	snprintf(url, sizeof(url), "unix:%s", tmp("rt.sock"));
	struct mig_conn *s = NULL, *c = NULL;
	CHECK_EQ(pair(url, NULL, NULL, &s, &c), 0);
	if (!s || !c)
		return;
	CHECK(!mig_conn_is_tls(s));
	CHECK(!mig_conn_pending(s));
	char peer[80];
	mig_conn_peer(s, peer, sizeof(peer));
	CHECK(strstr(peer, "unix peer (pid ") != NULL);
	CHECK_EQ(mig_conn_write(c, "hello", 5), 0);
	char buf[8] = "";
	CHECK_EQ(mig_conn_read(s, buf, 5), 0);
	CHECK(!memcmp(buf, "hello", 5));
	CHECK_EQ(mig_conn_write(s, "back", 4), 0);
	CHECK_EQ(mig_conn_read(c, buf, 4), 0);
	CHECK(!memcmp(buf, "back", 4));
	CHECK_EQ(mig_conn_bytes_out(c), 6); /* "H" + "hello" */
	CHECK_EQ(mig_conn_bytes_in(s), 6);
	CHECK_EQ(mig_conn_bytes_out(s), 4);
	CHECK_EQ(mig_conn_bytes_in(c), 4);
	CHECK_EQ(mig_conn_write(c, NULL, 0), 0);
	CHECK_EQ(mig_conn_read(c, NULL, 0), 0);
	int fl = fcntl(mig_conn_fd(s), F_GETFD);
	CHECK(fl >= 0 && (fl & FD_CLOEXEC));
	/* an end of stream before n bytes */
	CHECK_EQ(mig_conn_write(c, "abc", 3), 0);
	mig_conn_close(c);
	CHECK_EQ(mig_conn_read(s, buf, 8), -ECONNRESET);
	char e[320];
	mig_conn_last_error(s, e, sizeof(e));
	CHECK(strstr(e, "closed") != NULL);
	CHECK_EQ(mig_conn_read(s, buf, 1), -ECONNRESET); /* sticky */
	mig_conn_close(s);
}

TEST(unix_listen_rules)
{
	char err[512];
	int lfd, l2;
	const char *path = tmp("rules.sock");
	char url[300];
	snprintf(url, sizeof(url), "unix:%s", path);
	struct mig_url u = url_of(url);
	unlink(path);

	/* mode 0600 */
	CHECK_EQ(mig_listen(&u, &lfd, err, sizeof(err)), 0);
	struct stat st;
	CHECK_EQ(stat(path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0600);
	int fl = fcntl(lfd, F_GETFD);
	CHECK(fl >= 0 && (fl & FD_CLOEXEC));
	CHECK_EQ(mig_listen_port(lfd), -EINVAL);

	/* a live socket is not replaced, and the waiting listener does not
	 * notice the test connection */
	struct job *j = job_new();
	j->lfd = lfd;
	j->timeout_ms = GUARD_MS;
	job_start(j, do_accept);
	CHECK_EQ(mig_listen(&u, &l2, err, sizeof(err)), -EADDRINUSE);
	CHECK(strstr(err, "another process listens") != NULL);
	struct mig_conn *c = NULL;
	CHECK_EQ(mig_connect(&u, NULL, GUARD_MS, &c, err, sizeof(err)), 0);
	CHECK_EQ(mig_conn_write(c, "X", 1), 0);
	job_join(j);
	CHECK_EQ(j->r, 0);
	char b = 0;
	if (j->c)
		CHECK_EQ(mig_conn_read(j->c, &b, 1), 0);
	CHECK_EQ(b, 'X');
	mig_conn_close(c);
	job_free(j);

	/* closing removes the file; a stale socket file is replaced */
	mig_listen_close(lfd, &u);
	CHECK(lstat(path, &st) && errno == ENOENT);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, path, strlen(path));
	CHECK_EQ(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s); /* the file stays, nobody listens */
	CHECK_EQ(lstat(path, &st), 0);
	CHECK_EQ(mig_listen(&u, &lfd, err, sizeof(err)), 0);
	mig_listen_close(lfd, &u);

	/* anything else at the path is left alone */
	int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	close(fd);
	CHECK_EQ(mig_listen(&u, &lfd, err, sizeof(err)), -EEXIST);
	CHECK(strstr(err, "not a socket") != NULL);
	mig_listen_close(-1, &u);
	CHECK_EQ(lstat(path, &st), 0); /* still there: not a socket */
	unlink(path);

	/* connecting to nothing */
	CHECK_EQ(mig_connect(&u, NULL, 1000, &c, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "no socket there") != NULL);
	CHECK(c == NULL);
}

TEST(tcp_round_trip_port_zero)
{
	struct mig_url u = url_of("tcp:127.0.0.1:0");
	char err[512];
	int lfd;
	CHECK_EQ(mig_listen(&u, &lfd, err, sizeof(err)), 0);
	int port = mig_listen_port(lfd);
	CHECK(port > 0);
	u.port = (uint16_t)port;
	CHECK_EQ(mig_connect(&(struct mig_url){.kind = MIG_URL_TCP, .host = "127.0.0.1"}, NULL,
			     1000, &(struct mig_conn *){NULL}, err, sizeof(err)),
		 -EINVAL); /* port 0 */
	struct job *j = job_new();
	j->lfd = lfd;
	j->timeout_ms = GUARD_MS;
	job_start(j, do_accept);
	struct mig_conn *c = NULL;
	CHECK_EQ(mig_connect(&u, NULL, GUARD_MS, &c, err, sizeof(err)), 0);
	CHECK_EQ(mig_conn_write(c, "ping", 4), 0);
	job_join(j);
	CHECK_EQ(j->r, 0);
	if (c && j->c) {
		char b[4];
		CHECK_EQ(mig_conn_read(j->c, b, 4), 0);
		CHECK(!memcmp(b, "ping", 4));
		char peer[80];
		mig_conn_peer(j->c, peer, sizeof(peer));
		CHECK(!strncmp(peer, "127.0.0.1:", 10));
	}
	mig_conn_close(c);
	job_free(j);
	mig_listen_close(lfd, &u);

	/* nothing listens any more */
	CHECK_EQ(mig_connect(&u, NULL, 1000, &c, err, sizeof(err)), -ECONNREFUSED);
	CHECK(strstr(err, "nothing listens") != NULL);
}

TEST(tcp_ipv6)
{
	int s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	bool have = s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (s >= 0)
		close(s);
	if (!have) {
		printf("  skipped: no IPv6 loopback on this host\n");
		return;
	}
	struct mig_conn *sv = NULL, *c = NULL;
	CHECK_EQ(pair("tcp:[::1]:0", NULL, NULL, &sv, &c), 0);
	if (sv) {
		char peer[80];
		mig_conn_peer(sv, peer, sizeof(peer));
		CHECK(!strncmp(peer, "[::1]:", 6));
	}
	mig_conn_close(sv);
	mig_conn_close(c);
}

TEST(listen_errors)
{
	char err[512];
	int lfd, l2;
	struct mig_url u = url_of("tcp:127.0.0.1:0");
	CHECK_EQ(mig_listen(&u, &lfd, err, sizeof(err)), 0);
	u.port = (uint16_t)mig_listen_port(lfd);
	CHECK_EQ(mig_listen(&u, &l2, err, sizeof(err)), -EADDRINUSE);
	CHECK(strstr(err, "another process has this port") != NULL);
	mig_listen_close(lfd, &u);
	struct mig_url bad = u;
	bad.kind = 7;
	CHECK_EQ(mig_listen(&bad, &l2, err, sizeof(err)), -EINVAL);
	bad = u;
	memset(bad.host, 'x', sizeof(bad.host));
	CHECK_EQ(mig_listen(&bad, &l2, err, sizeof(err)), -EINVAL);
}

/* ---- 64 MiB transfers -------------------------------------------------- */

static uint64_t fill(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed | 1, h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i + 8 <= n; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
		h = (h ^ x) * 0x100000001b3ull;
	}
	return h;
}

static uint64_t sum(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull, x;
	for (size_t i = 0; i + 8 <= n; i += 8) {
		memcpy(&x, p + i, 8);
		h = (h ^ x) * 0x100000001b3ull;
	}
	return h;
}

struct big {
	struct mig_conn *c;
	uint64_t seed, sum;
	size_t n;
	int r;
};

/* Write n bytes in pieces of varying size. */
static void *big_writer(void *arg)
{
	struct big *b = arg;
	uint8_t *p = malloc(b->n);
	if (!p)
		abort();
	b->sum = fill(p, b->n, b->seed);
	static const size_t pieces[] = {3 * MIB + 5, 1, 65536, 7 * MIB, 100, 12345};
	size_t off = 0;
	for (int k = 0; off < b->n && !b->r; k++) {
		size_t m = pieces[k % 6];
		if (m > b->n - off)
			m = b->n - off;
		b->r = mig_conn_write(b->c, p + off, m);
		off += m;
	}
	free(p);
	return NULL;
}

/* Read n bytes in pieces of other sizes. */
static void *big_reader(void *arg)
{
	struct big *b = arg;
	uint8_t *p = malloc(b->n);
	if (!p)
		abort();
	static const size_t pieces[] = {65537, 2 * MIB, 3, 4096, 5 * MIB + 1};
	size_t off = 0;
	for (int k = 0; off < b->n && !b->r; k++) {
		size_t m = pieces[k % 5];
		if (m > b->n - off)
			m = b->n - off;
		b->r = mig_conn_read(b->c, p + off, m);
		off += m;
	}
	b->sum = sum(p, b->n);
	free(p);
	return NULL;
}

/* n bytes from @from to @to, the writer on a thread of its own. */
static void transfer(struct mig_conn *from, struct mig_conn *to, size_t n, uint64_t seed)
{
	struct big w = {.c = from, .seed = seed, .n = n}, r = {.c = to, .n = n};
	uint64_t out0 = mig_conn_bytes_out(from), in0 = mig_conn_bytes_in(to);
	pthread_t t;
	mig_conn_set_timeout(from, GUARD_MS);
	mig_conn_set_timeout(to, GUARD_MS);
	CHECK_EQ(pthread_create(&t, NULL, big_writer, &w), 0);
	big_reader(&r);
	pthread_join(t, NULL);
	CHECK_EQ(w.r, 0);
	CHECK_EQ(r.r, 0);
	CHECK_EQ(r.sum, w.sum);
	CHECK_EQ(mig_conn_bytes_out(from) - out0, n);
	CHECK_EQ(mig_conn_bytes_in(to) - in0, n);
}

TEST(unix_64mib)
{
	char url[300];
	unlink(tmp("big.sock"));
	snprintf(url, sizeof(url), "unix:%s", tmp("big.sock"));
	struct mig_conn *s = NULL, *c = NULL;
	CHECK_EQ(pair(url, NULL, NULL, &s, &c), 0);
	if (s && c) {
		transfer(c, s, BIG, 1);
		transfer(s, c, BIG, 2);
	}
	mig_conn_close(s);
	mig_conn_close(c);
}

TEST(tcp_64mib)
{
	struct mig_conn *s = NULL, *c = NULL;
	CHECK_EQ(pair("tcp:127.0.0.1:0", NULL, NULL, &s, &c), 0);
	if (s && c)
		transfer(c, s, BIG, 3);
	mig_conn_close(s);
	mig_conn_close(c);
}

/* ---- descriptors ------------------------------------------------------- */

TEST(fd_passing)
{
	char url[300];
	unlink(tmp("fds.sock"));
	snprintf(url, sizeof(url), "unix:%s", tmp("fds.sock"));
	struct mig_conn *s = NULL, *c = NULL;
	CHECK_EQ(pair(url, NULL, NULL, &s, &c), 0);
	if (!s || !c)
		return;
	int p[3][2];
	for (int i = 0; i < 3; i++)
		CHECK_EQ(pipe2(p[i], O_CLOEXEC), 0);
	int send[3] = {p[0][1], p[1][1], p[2][1]};
	int before = count_fds();

	/* three descriptors with 100 bytes; all received, close-on-exec */
	char msg[100], got[100];
	memset(msg, 'm', sizeof(msg));
	CHECK_EQ(mig_conn_send_fds(c, msg, sizeof(msg), send, 3), 0);
	int fds[4] = {-1, -1, -1, -1}, n = -1;
	CHECK_EQ(mig_conn_recv_fds(s, got, sizeof(got), fds, 4, &n), 0);
	CHECK_EQ(n, 3);
	CHECK(!memcmp(got, msg, sizeof(msg)));
	CHECK_EQ(count_fds(), before + 3);
	for (int i = 0; i < n; i++) {
		int fl = fcntl(fds[i], F_GETFD);
		CHECK(fl >= 0 && (fl & FD_CLOEXEC));
		/* the same pipe: what we write arrives at the original read end */
		char x = (char)('a' + i), y = 0;
		CHECK_EQ(write(fds[i], &x, 1), 1);
		CHECK_EQ(read(p[i][0], &y, 1), 1);
		CHECK_EQ(y, x);
		close(fds[i]);
	}

	/* more descriptors than wanted: the extra ones are closed */
	CHECK_EQ(mig_conn_send_fds(c, "z", 1, send, 3), 0);
	CHECK_EQ(mig_conn_recv_fds(s, got, 1, fds, 1, &n), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(count_fds(), before + 1);
	close(fds[0]);

	/* descriptors arriving at a plain read are dropped by the kernel */
	CHECK_EQ(mig_conn_send_fds(c, "q", 1, send, 2), 0);
	CHECK_EQ(mig_conn_read(s, got, 1), 0);
	CHECK_EQ(got[0], 'q');
	CHECK_EQ(count_fds(), before);

	/* bad arguments */
	CHECK_EQ(mig_conn_send_fds(c, "q", 1, send, MIG_MAX_FDS + 1), -EINVAL);
	CHECK_EQ(mig_conn_send_fds(c, NULL, 0, send, 1), -EINVAL);
	CHECK_EQ(mig_conn_send_fds(c, "q", 1, (int[]){-1}, 1), -EBADF);
	CHECK_EQ(mig_conn_recv_fds(s, got, 1, fds, MIG_MAX_FDS + 1, &n), -EINVAL);

	/* an end of stream in the middle: nothing leaks */
	CHECK_EQ(mig_conn_send_fds(c, "ab", 2, send, 2), 0);
	mig_conn_close(c);
	CHECK_EQ(mig_conn_recv_fds(s, got, 10, fds, 4, &n), -ECONNRESET);
	CHECK_EQ(n, 0);
	CHECK_EQ(count_fds(), before - 1); /* c's socket is gone */
	mig_conn_close(s);
	for (int i = 0; i < 3; i++) {
		close(p[i][0]);
		close(p[i][1]);
	}

	/* TCP has no descriptors */
	CHECK_EQ(pair("tcp:127.0.0.1:0", NULL, NULL, &s, &c), 0);
	if (s && c) {
		CHECK_EQ(mig_conn_send_fds(c, "q", 1, (int[]){0}, 1), -ENOTSUP);
		CHECK_EQ(mig_conn_recv_fds(s, got, 1, fds, 1, &n), -ENOTSUP);
	}
	mig_conn_close(s);
	mig_conn_close(c);
}

/* ---- timeouts and cancelling ------------------------------------------- */

TEST(read_timeout_keeps_connection)
{
	struct mig_conn *s = NULL, *c = NULL;
	CHECK_EQ(pair("tcp:127.0.0.1:0", NULL, NULL, &s, &c), 0);
	if (!s || !c)
		return;
	char b[4];
	CHECK_EQ(mig_conn_set_timeout(s, -1), -EINVAL);
	CHECK_EQ(mig_conn_set_timeout(s, 50), 0);
	CHECK_EQ(mig_conn_read(s, b, 4), -ETIMEDOUT);
	/* nothing was read: the connection is still good */
	CHECK_EQ(mig_conn_write(c, "abcd", 4), 0);
	CHECK_EQ(mig_conn_read(s, b, 4), 0);
	CHECK(!memcmp(b, "abcd", 4));
	/* half a read and then silence: unusable */
	CHECK_EQ(mig_conn_write(c, "ab", 2), 0);
	CHECK_EQ(mig_conn_read(s, b, 4), -ETIMEDOUT);
	CHECK_EQ(mig_conn_write(c, "cd", 2), 0);
	CHECK_EQ(mig_conn_read(s, b, 2), -ETIMEDOUT);
	mig_conn_close(s);
	mig_conn_close(c);
}

TEST(write_timeout_when_peer_does_not_read)
{
	struct mig_conn *s = NULL, *c = NULL;
	CHECK_EQ(pair("tcp:127.0.0.1:0", NULL, NULL, &s, &c), 0);
	if (!s || !c)
		return;
	size_t n = BIG;
	uint8_t *p = calloc(1, n);
	CHECK_EQ(mig_conn_set_timeout(c, 50), 0);
	CHECK_EQ(mig_conn_write(c, p, n), -ETIMEDOUT);
	CHECK(mig_conn_bytes_out(c) < n);
	char e[320];
	mig_conn_last_error(c, e, sizeof(e));
	CHECK(strstr(e, "no progress for 50 ms") != NULL);
	CHECK_EQ(mig_conn_write(c, p, 1), -ETIMEDOUT); /* sticky */
	free(p);
	mig_conn_close(s);
	mig_conn_close(c);
}

TEST(accept_timeout_and_cancel)
{
	struct mig_url u = url_of("tcp:127.0.0.1:0");
	char err[512];
	int lfd;
	struct mig_conn *c = NULL;
	CHECK_EQ(mig_listen(&u, &lfd, err, sizeof(err)), 0);
	CHECK_EQ(mig_accept(lfd, NULL, 50, &c, err, sizeof(err)), -ETIMEDOUT);
	CHECK(strstr(err, "no connection within 50 ms") != NULL);
	CHECK(c == NULL);

	/* a client that connects and says nothing */
	u.port = (uint16_t)mig_listen_port(lfd);
	struct mig_conn *quiet = NULL;
	CHECK_EQ(mig_connect(&u, NULL, 1000, &quiet, err, sizeof(err)), 0);
	CHECK_EQ(mig_accept(lfd, NULL, 50, &c, err, sizeof(err)), -ETIMEDOUT);
	CHECK(strstr(err, "sent nothing") != NULL);
	mig_conn_close(quiet);

	/* cancelled from another thread */
	struct job *j = job_new();
	j->lfd = lfd;
	job_start(j, do_accept); /* no time limit */
	wait_sleeping(j);
	mig_listen_shutdown(lfd);
	job_join(j);
	CHECK_EQ(j->r, -ECANCELED);
	job_free(j);
	mig_listen_close(lfd, &u);

	/* the same for a Unix listener */
	char url[300];
	unlink(tmp("cancel.sock"));
	snprintf(url, sizeof(url), "unix:%s", tmp("cancel.sock"));
	u = url_of(url);
	CHECK_EQ(mig_listen(&u, &lfd, err, sizeof(err)), 0);
	j = job_new();
	j->lfd = lfd;
	job_start(j, do_accept);
	wait_sleeping(j);
	mig_listen_shutdown(lfd);
	job_join(j);
	CHECK_EQ(j->r, -ECANCELED);
	job_free(j);
	mig_listen_close(lfd, &u);
}

static void do_read4(struct job *j)
{
	j->r = mig_conn_read(j->c, j->got, 4);
}

static void do_write_big(struct job *j)
{
	uint8_t *p = calloc(1, BIG);
	j->r = mig_conn_write(j->c, p, BIG);
	free(p);
}

/* A read blocked without a timeout in one thread is released by
 * mig_conn_shutdown() from another, and so is a write on another pair
 * (the peer does not read).  Both stay cancelled. */
static void cancel_blocked_read(struct mig_conn *s)
{
	struct job *rd = job_new();
	rd->c = s;
	job_start(rd, do_read4);
	wait_sleeping(rd);
	mig_conn_shutdown(s);
	job_join(rd);
	CHECK_EQ(rd->r, -ECANCELED);
	char e[320];
	mig_conn_last_error(s, e, sizeof(e));
	CHECK_STR(e, "cancelled");
	CHECK_EQ(mig_conn_read(s, rd->got, 1), -ECANCELED);
	CHECK_EQ(mig_conn_write(s, "x", 1), -ECANCELED);
	rd->c = NULL;
	job_free(rd);
}

static void cancel_blocked_write(struct mig_conn *c)
{
	struct job *wr = job_new();
	wr->c = c;
	job_start(wr, do_write_big);
	wait_sleeping(wr);
	mig_conn_shutdown(c);
	job_join(wr);
	CHECK_EQ(wr->r, -ECANCELED);
	CHECK_EQ(mig_conn_write(c, "x", 1), -ECANCELED);
	wr->c = NULL;
	job_free(wr);
}

static void cancel_tests(const char *url, const struct mig_tls *st, const struct mig_tls *ct)
{
	struct mig_conn *s = NULL, *c = NULL;
	CHECK_EQ(pair(url, st, ct, &s, &c), 0);
	if (s && c)
		cancel_blocked_read(s);
	mig_conn_close(s);
	mig_conn_close(c);
	s = c = NULL;
	CHECK_EQ(pair(url, st, ct, &s, &c), 0);
	if (s && c)
		cancel_blocked_write(c);
	mig_conn_close(s);
	mig_conn_close(c);
}

TEST(shutdown_unblocks_plain)
{
	char url[300];
	unlink(tmp("shut.sock"));
	snprintf(url, sizeof(url), "unix:%s", tmp("shut.sock"));
	cancel_tests(url, NULL, NULL);
	cancel_tests("tcp:127.0.0.1:0", NULL, NULL);
}

TEST(write_to_closed_peer_no_sigpipe)
{
	struct mig_conn *s = NULL, *c = NULL;
	CHECK_EQ(pair("tcp:127.0.0.1:0", NULL, NULL, &s, &c), 0);
	if (!s || !c)
		return;
	mig_conn_close(s);
	uint8_t *p = calloc(1, BIG);
	int r = mig_conn_write(c, p, BIG);
	CHECK(r == -EPIPE || r == -ECONNRESET);
	free(p);
	mig_conn_close(c);
}

/* ---- TLS: certificates ------------------------------------------------- */

static struct {
	bool made;
	char why[256];
} pki_state;

/* Make one leaf: NAME.pem and NAME.key. */
static bool leaf(const char *name, const char *cn, X509 *ca, EVP_PKEY *cakey, long from, long to,
		 const char *san)
{
	char p[64];
	EVP_PKEY *k = new_key();
	X509 *x = k ? new_cert(k, cn, ca, cakey, from, to, san) : NULL;
	snprintf(p, sizeof(p), "%s.pem", name);
	bool ok = x && write_cert(tmp(p), x);
	snprintf(p, sizeof(p), "%s.key", name);
	ok = ok && write_key(tmp(p), k, NULL);
	X509_free(x);
	EVP_PKEY_free(k);
	return ok;
}

/*
 * ca.pem       the CA of both sides
 * ca2.pem      another CA
 * srv.*        server: IP 127.0.0.1 and ::1, DNS dest.test; by ca
 * cli.*        client: DNS src.test; by ca
 * rogue.*      signed by ca2 (IP 127.0.0.1, DNS dest.test)
 * old.*        by ca, expired yesterday (IP 127.0.0.1)
 * enc.key      srv's key, encrypted
 */
static bool pki(void)
{
	if (pki_state.made)
		return true;
	if (pki_state.why[0])
		return false;
	OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
	EVP_PKEY *k1 = new_key(), *k2 = new_key();
	X509 *ca = k1 ? new_cert(k1, "visor test CA", NULL, NULL, -3600, 86400, NULL) : NULL;
	X509 *ca2 = k2 ? new_cert(k2, "other CA", NULL, NULL, -3600, 86400, NULL) : NULL;
	bool ok = ca && ca2 && write_cert(tmp("ca.pem"), ca) && write_cert(tmp("ca2.pem"), ca2) &&
		  leaf("srv", "dest", ca, k1, -3600, 86400,
		       "IP:127.0.0.1,IP:::1,DNS:dest.test") &&
		  leaf("cli", "src", ca, k1, -3600, 86400, "DNS:src.test") &&
		  leaf("rogue", "rogue", ca2, k2, -3600, 86400, "IP:127.0.0.1,DNS:dest.test") &&
		  leaf("old", "old", ca, k1, -2 * 86400, -86400, "IP:127.0.0.1");
	if (ok) {
		/* srv's key again, encrypted */
		FILE *f = fopen(tmp("srv.key"), "r");
		EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
		if (f)
			fclose(f);
		ok = k && write_key(tmp("enc.key"), k, "secret");
		EVP_PKEY_free(k);
	}
	X509_free(ca);
	X509_free(ca2);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	if (!ok) {
		unsigned long e = ERR_get_error();
		snprintf(pki_state.why, sizeof(pki_state.why),
			 "cannot make test certificates with OpenSSL: %s",
			 e ? ERR_reason_error_string(e) : "?");
		printf("  skipped: %s\n", pki_state.why);
		return false;
	}
	pki_state.made = true;
	return true;
}

static struct mig_tls tls_of(const char *name, const char *ca)
{
	struct mig_tls t = {.enabled = true};
	char p[64];
	snprintf(p, sizeof(p), "%s.pem", name);
	snprintf(t.cert, sizeof(t.cert), "%s", tmp(p));
	snprintf(p, sizeof(p), "%s.key", name);
	snprintf(t.key, sizeof(t.key), "%s", tmp(p));
	snprintf(t.ca, sizeof(t.ca), "%s", tmp(ca));
	return t;
}

/* A TLS attempt: server @st accepting on a fresh listener for @url, client
 * @ct connecting.  Both results and messages; the connections closed. */
struct attempt {
	int sr, cr;
	char serr[512], cerr[512];
};

static struct attempt try_tls(const char *url, const struct mig_tls *st, const struct mig_tls *ct)
{
	struct attempt a = {0};
	struct mig_url u = url_of(url);
	int lfd;
	if (mig_listen(&u, &lfd, a.serr, sizeof(a.serr))) {
		a.sr = a.cr = -999;
		return a;
	}
	if (u.kind == MIG_URL_TCP && u.port == 0)
		u.port = (uint16_t)mig_listen_port(lfd);
	struct job *j = job_new();
	j->lfd = lfd;
	j->timeout_ms = GUARD_MS;
	if (st)
		j->tls = *st;
	job_start(j, do_accept);
	struct mig_conn *c = NULL;
	a.cr = mig_connect(&u, ct, GUARD_MS, &c, a.cerr, sizeof(a.cerr));
	if (!a.cr && !(ct && ct->enabled))
		mig_conn_write(c, "VISORMIG", 8); /* a plain client's first words */
	job_join(j);
	a.sr = j->r;
	memcpy(a.serr, j->err, sizeof(a.serr));
	if (!a.sr && !a.cr) {
		/* both think they are connected: show that data flows */
		uint8_t b[5];
		a.cr = mig_conn_write(c, "hello", 5);
		a.sr = mig_conn_read(j->c, b, 5);
		if (!a.sr && memcmp(b, "hello", 5))
			a.sr = -EBADMSG;
	}
	mig_conn_close(c);
	job_free(j);
	mig_listen_close(lfd, &u);
	return a;
}

static void expect(const char *what, int r, const char *msg, int want, const char *says)
{
	if (r != want || (says && !strstr(msg, says)) || strchr(msg, '\n')) {
		printf("  %s: %d '%s' (want %d '%s')\n", what, r, msg, want, says ? says : "");
		test_failed_now_ = 1;
	}
}

#define NEED_PKI()                  \
	do {                        \
		if (!pki())         \
			return;     \
	} while (0)

TEST(tls_config_errors)
{
	NEED_PKI();
	char err[512];
	struct mig_tls t = tls_of("srv", "ca.pem");
	CHECK_EQ(mig_tls_check(&t, true, err, sizeof(err)), 0);
	CHECK_EQ(mig_tls_check(&t, false, err, sizeof(err)), 0);
	CHECK_EQ(mig_tls_check(NULL, false, err, sizeof(err)), 0);
	struct mig_tls off = {.enabled = false};
	CHECK_EQ(mig_tls_check(&off, false, err, sizeof(err)), 0);

	t = tls_of("srv", "ca.pem");
	snprintf(t.cert, sizeof(t.cert), "%s", tmp("missing.pem"));
	expect("missing cert", mig_tls_check(&t, true, err, sizeof(err)), err, -ENOENT,
	       "TLS certificate '");
	CHECK(strstr(err, "missing.pem': No such file") != NULL);

	t = tls_of("srv", "ca.pem");
	snprintf(t.key, sizeof(t.key), "%s", tmp("cli.key"));
	expect("key of another cert", mig_tls_check(&t, true, err, sizeof(err)), err, -EINVAL,
	       "does not belong to the certificate");

	t = tls_of("srv", "ca.pem");
	snprintf(t.key, sizeof(t.key), "%s", tmp("enc.key"));
	expect("encrypted key", mig_tls_check(&t, true, err, sizeof(err)), err, -EINVAL,
	       "is encrypted: give it unencrypted");

	t = tls_of("srv", "ca.pem");
	snprintf(t.key, sizeof(t.key), "%s", tmp("srv.pem"));
	expect("cert as key", mig_tls_check(&t, true, err, sizeof(err)), err, -EINVAL,
	       "no unencrypted PEM private key");

	t = tls_of("srv", "ca.pem");
	snprintf(t.cert, sizeof(t.cert), "%s", tmp("srv.key"));
	expect("key as cert", mig_tls_check(&t, true, err, sizeof(err)), err, -EINVAL,
	       "no PEM certificate");

	t = tls_of("srv", "ca.pem");
	snprintf(t.ca, sizeof(t.ca), "%s", tmp(""));
	expect("directory as CA", mig_tls_check(&t, true, err, sizeof(err)), err, -EINVAL,
	       "not a regular file");

	t = tls_of("srv", "ca.pem");
	unlink(tmp("fifo"));
	CHECK_EQ(mkfifo(tmp("fifo"), 0600), 0);
	snprintf(t.cert, sizeof(t.cert), "%s", tmp("fifo"));
	expect("FIFO as cert", mig_tls_check(&t, true, err, sizeof(err)), err, -EINVAL,
	       "not a regular file");
	unlink(tmp("fifo"));

	t = tls_of("srv", "ca.pem");
	snprintf(t.ca, sizeof(t.ca), "%s", tmp("srv.key"));
	expect("key as CA", mig_tls_check(&t, true, err, sizeof(err)), err, -EINVAL,
	       "TLS CA '");

	t = tls_of("srv", "ca.pem");
	t.key[0] = '\0';
	expect("no key", mig_tls_check(&t, false, err, sizeof(err)), err, -EINVAL,
	       "TLS key: missing");
	t = tls_of("srv", "ca.pem");
	t.cert[0] = '\0';
	expect("no cert", mig_tls_check(&t, false, err, sizeof(err)), err, -EINVAL,
	       "TLS certificate: missing");

	t = tls_of("srv", "ca.pem");
	snprintf(t.server_name, sizeof(t.server_name), "bad name!");
	expect("bad server name", mig_tls_check(&t, false, err, sizeof(err)), err, -EINVAL,
	       "not a host name");
	t = tls_of("srv", "ca.pem");
	memset(t.ca, 'a', sizeof(t.ca));
	expect("unterminated", mig_tls_check(&t, false, err, sizeof(err)), err, -EINVAL,
	       "not terminated");

	/* mig_accept refuses a bad configuration before waiting */
	struct mig_url u = url_of("tcp:127.0.0.1:0");
	int lfd;
	struct mig_conn *c = NULL;
	CHECK_EQ(mig_listen(&u, &lfd, err, sizeof(err)), 0);
	t = tls_of("srv", "missing.pem");
	expect("accept with missing CA", mig_accept(lfd, &t, 0, &c, err, sizeof(err)), err,
	       -ENOENT, "TLS CA '");
	CHECK(c == NULL);
	mig_listen_close(lfd, &u);
}

TEST(tls_success_tcp_and_unix)
{
	NEED_PKI();
	struct mig_tls st = tls_of("srv", "ca.pem"), ct = tls_of("cli", "ca.pem");
	struct attempt a = try_tls("tcp:127.0.0.1:0", &st, &ct);
	expect("tcp server", a.sr, a.serr, 0, NULL);
	expect("tcp client", a.cr, a.cerr, 0, NULL);

	/* by name over a Unix socket; and without any name check */
	char url[300];
	unlink(tmp("tls.sock"));
	snprintf(url, sizeof(url), "unix:%s", tmp("tls.sock"));
	snprintf(ct.server_name, sizeof(ct.server_name), "dest.test");
	a = try_tls(url, &st, &ct);
	expect("unix server", a.sr, a.serr, 0, NULL);
	expect("unix client", a.cr, a.cerr, 0, NULL);
	ct.server_name[0] = '\0';
	a = try_tls(url, &st, &ct);
	expect("unix server, no name", a.sr, a.serr, 0, NULL);
	expect("unix client, no name", a.cr, a.cerr, 0, NULL);
}

TEST(tls_64mib_pending_and_counters)
{
	NEED_PKI();
	struct mig_tls st = tls_of("srv", "ca.pem"), ct = tls_of("cli", "ca.pem");
	struct mig_conn *s = NULL, *c = NULL;
	CHECK_EQ(pair("tcp:127.0.0.1:0", &st, &ct, &s, &c), 0);
	if (!s || !c)
		goto out;
	CHECK(mig_conn_is_tls(s) && mig_conn_is_tls(c));
	/* the set-up's confirmation is not payload */
	CHECK_EQ(mig_conn_bytes_out(s), 0);
	CHECK_EQ(mig_conn_bytes_in(c), 0);
	transfer(c, s, BIG, 4);
	transfer(s, c, BIG, 5);

	/* one record of 100 bytes, 10 read: 90 wait inside TLS, not in the socket */
	char b[100];
	memset(b, 7, sizeof(b));
	CHECK(!mig_conn_pending(c));
	CHECK_EQ(mig_conn_write(s, b, 100), 0);
	CHECK_EQ(mig_conn_read(c, b, 10), 0);
	CHECK(mig_conn_pending(c));
	struct pollfd pfd = {.fd = mig_conn_fd(c), .events = POLLIN};
	CHECK_EQ(poll(&pfd, 1, 0), 0);
	CHECK_EQ(mig_conn_read(c, b, 90), 0);
	CHECK(!mig_conn_pending(c));
	CHECK_EQ(mig_conn_send_fds(c, "x", 1, (int[]){0}, 1), -ENOTSUP);
out:
	mig_conn_close(s);
	mig_conn_close(c);
}

struct duplex {
	struct mig_conn *c;
	size_t n;
	uint64_t wsum, rsum;
	int wr, rr;
};

static void *duplex_writer(void *arg)
{
	struct duplex *d = arg;
	struct big b = {.c = d->c, .seed = (uint64_t)(uintptr_t)d, .n = d->n};
	big_writer(&b);
	d->wsum = b.sum;
	d->wr = b.r;
	return NULL;
}

static void *duplex_reader(void *arg)
{
	struct duplex *d = arg;
	struct big b = {.c = d->c, .n = d->n};
	big_reader(&b);
	d->rsum = b.sum;
	d->rr = b.r;
	return NULL;
}

/* Post-copy's shape: each side reads and writes at the same time from two
 * threads on one TLS connection. */
TEST(tls_full_duplex_two_threads)
{
	NEED_PKI();
	struct mig_tls st = tls_of("srv", "ca.pem"), ct = tls_of("cli", "ca.pem");
	struct mig_conn *s = NULL, *c = NULL;
	CHECK_EQ(pair("tcp:127.0.0.1:0", &st, &ct, &s, &c), 0);
	if (s && c) {
		struct duplex ds = {.c = s, .n = 16 * MIB}, dc = {.c = c, .n = 16 * MIB};
		pthread_t t[4];
		mig_conn_set_timeout(s, GUARD_MS);
		mig_conn_set_timeout(c, GUARD_MS);
		pthread_create(&t[0], NULL, duplex_writer, &ds);
		pthread_create(&t[1], NULL, duplex_reader, &ds);
		pthread_create(&t[2], NULL, duplex_writer, &dc);
		pthread_create(&t[3], NULL, duplex_reader, &dc);
		for (int i = 0; i < 4; i++)
			pthread_join(t[i], NULL);
		CHECK_EQ(ds.wr, 0);
		CHECK_EQ(ds.rr, 0);
		CHECK_EQ(dc.wr, 0);
		CHECK_EQ(dc.rr, 0);
		CHECK_EQ(ds.wsum, dc.rsum);
		CHECK_EQ(dc.wsum, ds.rsum);
		CHECK(ds.wsum != dc.wsum);
	}
	mig_conn_close(s);
	mig_conn_close(c);
}

TEST(tls_shutdown_unblocks)
{
	NEED_PKI();
	struct mig_tls st = tls_of("srv", "ca.pem"), ct = tls_of("cli", "ca.pem");
	cancel_tests("tcp:127.0.0.1:0", &st, &ct);
}

TEST(tls_peer_signed_by_another_ca)
{
	NEED_PKI();
	/* the server's certificate: the client refuses it */
	struct mig_tls st = tls_of("rogue", "ca.pem"), ct = tls_of("cli", "ca.pem");
	struct attempt a = try_tls("tcp:127.0.0.1:0", &st, &ct);
	expect("client", a.cr, a.cerr, -EPROTO, "certificate is not signed by the CA in '");
	CHECK(strstr(a.cerr, "ca.pem") != NULL);
	expect("server", a.sr, a.serr, -EPROTO, "does not trust the CA of our certificate");

	/* the client's certificate: the server refuses it, and the client
	 * learns it in mig_connect although TLS 1.3 ended its handshake */
	st = tls_of("srv", "ca.pem");
	ct = tls_of("rogue", "ca.pem");
	a = try_tls("tcp:127.0.0.1:0", &st, &ct);
	expect("server", a.sr, a.serr, -EPROTO, "certificate is not signed by the CA");
	expect("client", a.cr, a.cerr, -EPROTO, "does not trust the CA of our certificate");

	/* the client trusts only the other CA */
	st = tls_of("srv", "ca.pem");
	ct = tls_of("cli", "ca2.pem");
	a = try_tls("tcp:127.0.0.1:0", &st, &ct);
	expect("client, other CA", a.cr, a.cerr, -EPROTO, "not signed by the CA in '");
	CHECK(a.sr != 0);
}

TEST(tls_expired)
{
	NEED_PKI();
	struct mig_tls st = tls_of("old", "ca.pem"), ct = tls_of("cli", "ca.pem");
	struct attempt a = try_tls("tcp:127.0.0.1:0", &st, &ct);
	expect("client", a.cr, a.cerr, -EPROTO, "the peer's certificate has expired");
	expect("server", a.sr, a.serr, -EPROTO, "our certificate has expired");

	st = tls_of("srv", "ca.pem");
	ct = tls_of("old", "ca.pem");
	a = try_tls("tcp:127.0.0.1:0", &st, &ct);
	expect("server", a.sr, a.serr, -EPROTO, "the peer's certificate has expired");
	expect("client", a.cr, a.cerr, -EPROTO, "our certificate has expired");
}

TEST(tls_wrong_server_name)
{
	NEED_PKI();
	struct mig_tls st = tls_of("srv", "ca.pem"), ct = tls_of("cli", "ca.pem");
	snprintf(ct.server_name, sizeof(ct.server_name), "other.test");
	struct attempt a = try_tls("tcp:127.0.0.1:0", &st, &ct);
	expect("client", a.cr, a.cerr, -EPROTO, "certificate is not for 'other.test'");
	CHECK(a.sr != 0);

	/* the default name is the URL's address: cli's certificate has no IP */
	st = tls_of("cli", "ca.pem");
	ct = tls_of("srv", "ca.pem");
	a = try_tls("tcp:127.0.0.1:0", &st, &ct);
	expect("client, by address", a.cr, a.cerr, -EPROTO, "certificate is not for '127.0.0.1'");
	CHECK(a.sr != 0);

	/* an address given as the name */
	st = tls_of("srv", "ca.pem");
	ct = tls_of("cli", "ca.pem");
	snprintf(ct.server_name, sizeof(ct.server_name), "10.9.8.7");
	a = try_tls("tcp:127.0.0.1:0", &st, &ct);
	expect("client, other address", a.cr, a.cerr, -EPROTO, "certificate is not for '10.9.8.7'");
}

/* A client with TLS but no certificate: made with OpenSSL directly, since
 * mig_connect refuses to go without one. */
static void raw_client_without_cert(struct job *j)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE); /* this client writes with write(2) */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(j->url.port)};
	a.sin_addr.s_addr = htonl(0x7f000001);
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;
	j->r = -1;
	if (fd >= 0 && ssl && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    SSL_set_fd(ssl, fd)) {
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
		int r = SSL_connect(ssl); /* TLS 1.3: succeeds before the server decides */
		char b;
		if (r == 1)
			r = SSL_read(ssl, &b, 1); /* the server's alert */
		j->r = r;
	}
	ERR_clear_error();
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
}

TEST(tls_client_without_certificate)
{
	NEED_PKI();
	char err[512];
	struct mig_url u = url_of("tcp:127.0.0.1:0");
	int lfd;
	CHECK_EQ(mig_listen(&u, &lfd, err, sizeof(err)), 0);
	u.port = (uint16_t)mig_listen_port(lfd);

	/* mig_connect itself needs a certificate */
	struct mig_tls ct = tls_of("cli", "ca.pem");
	ct.cert[0] = ct.key[0] = '\0';
	struct mig_conn *c = NULL;
	expect("mig_connect", mig_connect(&u, &ct, 1000, &c, err, sizeof(err)), err, -EINVAL,
	       "mutual TLS needs a certificate");

	struct job *j = job_new();
	j->url = u;
	job_start(j, raw_client_without_cert);
	struct mig_tls st = tls_of("srv", "ca.pem");
	expect("server", mig_accept(lfd, &st, GUARD_MS, &c, err, sizeof(err)), err, -EPROTO,
	       "the peer presented no certificate");
	CHECK(c == NULL);
	job_join(j);
	CHECK(j->r <= 0); /* the client got no data, only the alert */
	job_free(j);
	mig_listen_close(lfd, &u);
}

TEST(tls_server_plain_client)
{
	NEED_PKI();
	/* the plain client talks first: the server says it is not TLS */
	struct mig_tls st = tls_of("srv", "ca.pem");
	struct attempt a = try_tls("tcp:127.0.0.1:0", &st, NULL);
	expect("server", a.sr, a.serr, -EPROTO, "the peer does not speak TLS (its first byte is 0x56)");
	CHECK_EQ(a.cr, 0); /* a plain connect has nothing to check */

	/* the plain client says nothing: bounded by the timeout */
	struct mig_url u = url_of("tcp:127.0.0.1:0");
	char err[512];
	int lfd;
	CHECK_EQ(mig_listen(&u, &lfd, err, sizeof(err)), 0);
	u.port = (uint16_t)mig_listen_port(lfd);
	struct mig_conn *c = NULL, *s = NULL;
	CHECK_EQ(mig_connect(&u, NULL, 1000, &c, err, sizeof(err)), 0);
	expect("server", mig_accept(lfd, &st, 100, &s, err, sizeof(err)), err, -ETIMEDOUT,
	       "does it use TLS?");
	/* and the plain client sees the end */
	char b;
	mig_conn_set_timeout(c, GUARD_MS);
	CHECK_EQ(mig_conn_read(c, &b, 1), -ECONNRESET);
	mig_conn_close(c);

	/* a handshake that stops half-way: bounded by the timeout */
	CHECK_EQ(mig_connect(&u, NULL, 1000, &c, err, sizeof(err)), 0);
	CHECK_EQ(mig_conn_write(c, "\x16\x03\x01", 3), 0);
	expect("server", mig_accept(lfd, &st, 100, &s, err, sizeof(err)), err, -ETIMEDOUT,
	       "no answer within 100 ms");
	CHECK(s == NULL);
	mig_conn_close(c);
	mig_listen_close(lfd, &u);
}

static void plain_server_reads_hello(struct job *j)
{
	struct mig_conn *c = NULL;
	j->r = mig_accept(j->lfd, NULL, GUARD_MS, &c, j->err, sizeof(j->err));
	if (!j->r)
		j->r2 = mig_conn_read(c, j->got, 5);
	mig_conn_close(c);
}

static void plain_server_talks(struct job *j)
{
	struct mig_conn *c = NULL;
	j->r = mig_accept(j->lfd, NULL, GUARD_MS, &c, j->err, sizeof(j->err));
	if (!j->r) {
		j->r2 = mig_conn_write(c, "VISORMIG", 8);
		char b;
		mig_conn_set_timeout(c, GUARD_MS);
		mig_conn_read(c, &b, 1); /* until the client gives up */
	}
	mig_conn_close(c);
}

static void plain_server_silent(struct job *j)
{
	struct mig_conn *c = NULL;
	j->r = mig_accept(j->lfd, NULL, GUARD_MS, &c, j->err, sizeof(j->err));
	char b;
	if (!j->r && read(j->hold[0], &b, 1) < 0) /* until the test lets go */
		j->r2 = -errno;
	mig_conn_close(c);
}

TEST(tls_client_plain_server)
{
	NEED_PKI();
	struct mig_tls ct = tls_of("cli", "ca.pem");
	char err[512];
	struct mig_url u = url_of("tcp:127.0.0.1:0");
	int lfd;
	struct mig_conn *c = NULL;
	CHECK_EQ(mig_listen(&u, &lfd, err, sizeof(err)), 0);
	u.port = (uint16_t)mig_listen_port(lfd);

	/* the plain server reads a ClientHello and hangs up */
	struct job *j = job_new();
	j->lfd = lfd;
	job_start(j, plain_server_reads_hello);
	expect("client", mig_connect(&u, &ct, GUARD_MS, &c, err, sizeof(err)), err, -ECONNRESET,
	       "closed the connection during the TLS handshake");
	job_join(j);
	CHECK_EQ(j->r, 0);
	CHECK_EQ(j->r2, 0);
	CHECK(mig_looks_like_tls(j->got, 5));
	job_free(j);

	/* the plain server talks first */
	j = job_new();
	j->lfd = lfd;
	job_start(j, plain_server_talks);
	expect("client", mig_connect(&u, &ct, GUARD_MS, &c, err, sizeof(err)), err, -EPROTO,
	       "the peer does not speak TLS (its first byte is 0x56)");
	job_join(j);
	CHECK_EQ(j->r, 0);
	job_free(j);

	/* the plain server says nothing: bounded by the timeout */
	j = job_new();
	j->lfd = lfd;
	CHECK_EQ(pipe2(j->hold, O_CLOEXEC), 0);
	job_start(j, plain_server_silent);
	expect("client", mig_connect(&u, &ct, 100, &c, err, sizeof(err)), err, -ETIMEDOUT,
	       "no answer within 100 ms");
	close(j->hold[1]);
	j->hold[1] = -1;
	job_join(j);
	CHECK_EQ(j->r, 0);
	job_free(j);
	CHECK(c == NULL);
	mig_listen_close(lfd, &u);
}

TEST(zz_cleanup)
{
	static const char *names[] = {"ca.pem",	  "ca2.pem",   "srv.pem", "srv.key",
				      "cli.pem",  "cli.key",   "rogue.pem", "rogue.key",
				      "old.pem",  "old.key",   "enc.key", "rt.sock",
				      "rules.sock", "big.sock", "fds.sock", "shut.sock",
				      "cancel.sock", "tls.sock"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(tmp(names[i]));
	CHECK_EQ(rmdir(dir), 0);
}

TEST_MAIN()
