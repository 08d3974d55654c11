/* SPDX-License-Identifier: MIT */
/*
 * migration/transport.c - Unix and TCP stream sockets with optional mutual
 * TLS 1.3 (OpenSSL 3) for live migration.  See transport.h for the
 * contract and docs/migration-protocol.md, "Transport and TLS".
 *
 * Shape: every socket is non-blocking; a read or write tries the system
 * call (or the OpenSSL call) and, when it would block, waits in poll() for
 * at most the connection's inactivity timeout.  OpenSSL reaches the socket
 * only through the BIO below, which uses send(MSG_NOSIGNAL) and recv() and
 * records what TLS alone cannot tell us (the first byte the peer sent, an
 * end of stream, the errno of a failed system call), so a handshake that
 * fails can say "the peer does not speak TLS" or "the peer closed the
 * connection" instead of OpenSSL's "wrong version number".
 */
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "../util/str.h"

#define LISTEN_BACKLOG 16
#define TLS_FILE_MAX (1u << 20) /* a PEM file larger than this is not one */
/* What a TLS server writes once it has verified the client's certificate
 * (docs/migration-protocol.md): with TLS 1.3 the client's handshake ends
 * before the server has looked at the client's certificate, so without
 * this a refused client would learn it only at its first read. */
static const char tls_accepted[8] = {'V', 'M', 'I', 'G', 'T', 'L', 'S', '1'};

struct mig_conn {
	int fd;
	bool is_unix;
	SSL *ssl;		/* NULL: plain */
	pthread_mutex_t lock;	/* held for each OpenSSL call on ssl, and for errtext */
	atomic_int timeout_ms;	/* inactivity timeout of reads and writes, 0: none */
	atomic_int dead;	/* the error that made the connection unusable, 0: sound */
	_Atomic uint64_t out, in;
	/* the BIO's view of the socket (under lock once the connection is shared) */
	int rd_errno, wr_errno; /* errno of the last failed recv() / send() */
	bool rd_eof;		/* recv() returned 0 */
	int first_byte;		/* the first byte the peer sent, -1 before */
	char peer[80];
	char errtext[320];
};

/* ---- small helpers ----------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The deadline @timeout_ms from now, -1 for none (timeout_ms <= 0). */
static int64_t deadline_in(int timeout_ms)
{
	return timeout_ms > 0 ? now_ms() + timeout_ms : -1;
}

/* poll()'s timeout argument until @deadline: -1 for none, 0 once passed. */
static int ms_left(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	int64_t left = deadline - now_ms();
	return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* Wait until @fd has one of @events or @deadline passes.  The revents, or
 * -ETIMEDOUT, or -errno of poll(). */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = events};
		int r = poll(&pfd, 1, ms_left(deadline));
		if (r > 0)
			return pfd.revents;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* Up to 64 bytes of s[0..n) with anything unprintable as '?', for error
 * messages about input we refused. */
static const char *excerpt(char out[72], const char *s, size_t n)
{
	size_t i, k = n > 64 ? 64 : n;
	for (i = 0; i < k; i++)
		out[i] = (unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f ? '?' : s[i];
	if (k < n) {
		memcpy(out + k, "...", 3);
		k += 3;
	}
	out[k] = '\0';
	return out;
}

static bool has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* ---- URLs -------------------------------------------------------------- */

/* h[0..hlen) is a numeric address of family @af (AF_INET or AF_INET6). */
static bool numeric_addr(int af, const char *h, size_t hlen)
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr a; /* room for either */
	if (hlen >= sizeof(buf))
		return false;
	memcpy(buf, h, hlen);
	buf[hlen] = '\0';
	return inet_pton(af, buf, &a) == 1;
}

int mig_url_parse(const char *s, struct mig_url *u, char *err, size_t errlen)
{
	char ex[72];
	if (!s || !u)
		return err_set(err, errlen, -EINVAL, "no migration URL");
	struct mig_url t;
	memset(&t, 0, sizeof(t));
	if (!strncmp(s, "unix:", 5)) {
		const char *path = s + 5;
		size_t len = strlen(path);
		if (len == 0)
			return err_set(err, errlen, -EINVAL, "unix:PATH: the path is empty");
		if (len >= sizeof(t.path))
			return err_set(err, errlen, -EINVAL,
				       "unix:PATH: the path is %zu bytes; a Unix socket path is at "
				       "most %zu",
				       len, sizeof(t.path) - 1);
		if (has_control(path))
			return err_set(err, errlen, -EINVAL,
				       "unix:PATH: control character in the path '%s'",
				       excerpt(ex, path, len));
		t.kind = MIG_URL_UNIX;
		memcpy(t.path, path, len);
		*u = t;
		return 0;
	}
	if (strncmp(s, "tcp:", 4))
		return err_set(err, errlen, -EINVAL,
			       "migration URL '%s': expected unix:PATH or tcp:HOST:PORT",
			       excerpt(ex, s, strlen(s)));

	const char *h = s + 4, *port;
	size_t hlen;
	if (*h == '[') {
		const char *close = strchr(h, ']');
		if (!close)
			return err_set(err, errlen, -EINVAL, "tcp:[IPV6]:PORT: no ']' after '['");
		if (close[1] != ':')
			return err_set(err, errlen, -EINVAL,
				       "tcp:[IPV6]:PORT: expected ':PORT' after ']'");
		h++;
		hlen = (size_t)(close - h);
		port = close + 2;
		if (hlen == 0)
			return err_set(err, errlen, -EINVAL, "tcp:[IPV6]:PORT: the address is empty");
		if (memchr(h, '%', hlen))
			return err_set(err, errlen, -EINVAL,
				       "tcp:[IPV6]:PORT: '%s': scoped IPv6 addresses (%%zone) are "
				       "not supported",
				       excerpt(ex, h, hlen));
		if (!numeric_addr(AF_INET6, h, hlen)) {
			return err_set(err, errlen, -EINVAL,
				       "tcp:[IPV6]:PORT: '%s' is not an IPv6 address",
				       excerpt(ex, h, hlen));
		}
	} else {
		const char *colon = strrchr(h, ':');
		if (!colon)
			return err_set(err, errlen, -EINVAL,
				       "tcp:HOST:PORT: no ':PORT' in '%s'", excerpt(ex, h, strlen(h)));
		hlen = (size_t)(colon - h);
		port = colon + 1;
		if (hlen == 0)
			return err_set(err, errlen, -EINVAL,
				       "tcp:HOST:PORT: the host is empty (0.0.0.0 or [::] listens "
				       "on every address)");
		if (memchr(h, ':', hlen))
			return err_set(err, errlen, -EINVAL,
				       "tcp:HOST:PORT: '%s' has a ':': an IPv6 address goes in "
				       "brackets, tcp:[ADDRESS]:PORT",
				       excerpt(ex, h, hlen));
		if (!numeric_addr(AF_INET, h, hlen)) {
			return err_set(err, errlen, -EINVAL,
				       "tcp:HOST:PORT: '%s' is not a numeric IPv4 address (host "
				       "names are not resolved: visor is a static binary without "
				       "the C library's resolver; give A.B.C.D or [IPv6])",
				       excerpt(ex, h, hlen));
		}
	}

	size_t plen = strlen(port);
	unsigned long v = 0;
	bool ok = plen >= 1 && plen <= 5;
	for (size_t i = 0; ok && i < plen; i++) {
		if (port[i] < '0' || port[i] > '9')
			ok = false;
		else
			v = v * 10 + (unsigned long)(port[i] - '0');
	}
	if (!ok || v > 65535)
		return err_set(err, errlen, -EINVAL,
			       "tcp:HOST:PORT: port '%s' is not a number from 0 to 65535",
			       excerpt(ex, port, plen));
	t.kind = MIG_URL_TCP;
	memcpy(t.host, h, hlen);
	t.port = (uint16_t)v;
	*u = t;
	return 0;
}

int mig_url_format(const struct mig_url *u, char *buf, size_t len)
{
	int n;
	if (u->kind == MIG_URL_UNIX)
		n = snprintf(buf, len, "unix:%s", u->path);
	else if (strchr(u->host, ':'))
		n = snprintf(buf, len, "tcp:[%s]:%u", u->host, (unsigned)u->port);
	else
		n = snprintf(buf, len, "tcp:%s:%u", u->host, (unsigned)u->port);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	return n;
}

/* A sockaddr for a parsed tcp URL. */
static int tcp_addr(const struct mig_url *u, struct sockaddr_storage *ss, socklen_t *sl)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(u->host, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(u->port);
		if (inet_pton(AF_INET6, u->host, &a->sin6_addr) != 1)
			return -EINVAL;
		*sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(u->port);
		if (inet_pton(AF_INET, u->host, &a->sin_addr) != 1)
			return -EINVAL;
		*sl = sizeof(*a);
	}
	return 0;
}

static int unix_addr(const struct mig_url *u, struct sockaddr_un *sa)
{
	size_t len = strnlen(u->path, sizeof(u->path));
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (len == 0 || len >= sizeof(sa->sun_path))
		return -EINVAL;
	memcpy(sa->sun_path, u->path, len);
	return 0;
}

/* A URL from a caller: the strings terminated, the kind known. */
static int url_check(const struct mig_url *u, char *err, size_t errlen)
{
	if (!u)
		return err_set(err, errlen, -EINVAL, "no migration URL");
	if (u->kind == MIG_URL_UNIX) {
		size_t len = strnlen(u->path, sizeof(u->path));
		if (len == 0 || len == sizeof(u->path) || has_control(u->path))
			return err_set(err, errlen, -EINVAL, "invalid unix: migration URL");
		return 0;
	}
	if (u->kind == MIG_URL_TCP) {
		struct sockaddr_storage ss;
		socklen_t sl;
		if (strnlen(u->host, sizeof(u->host)) == sizeof(u->host) || tcp_addr(u, &ss, &sl))
			return err_set(err, errlen, -EINVAL, "invalid tcp: migration URL");
		return 0;
	}
	return err_set(err, errlen, -EINVAL, "invalid migration URL kind %d", (int)u->kind);
}

/* ---- listening --------------------------------------------------------- */

/* Whether a process listens on the Unix socket @path: 1 yes, 0 no (the
 * connection is refused, or the file went away), -errno if we cannot
 * tell.  A listener sees our test as a connection closed before its first
 * byte, which mig_accept() skips. */
static int unix_live(const char *path)
{
	struct mig_url u = {.kind = MIG_URL_UNIX};
	struct sockaddr_un sa;
	str_copy(u.path, sizeof(u.path), path);
	if (unix_addr(&u, &sa))
		return -EINVAL;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int r;
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r && errno == EINTR);
	int e = r ? errno : 0;
	close(fd);
	if (!r || e == EAGAIN)
		return 1; /* accepted, or its backlog is full: alive either way */
	if (e == ECONNREFUSED || e == ENOENT)
		return 0;
	return -e;
}

static int unix_listen(const struct mig_url *u, int *lfd, char *err, size_t errlen)
{
	const char *path = u->path;
	struct sockaddr_un sa;
	struct stat st;
	unix_addr(u, &sa);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return err_set(err, errlen, -EEXIST,
				       "unix:%s: the path exists and is not a socket", path);
		int live = unix_live(path);
		if (live > 0)
			return err_set(err, errlen, -EADDRINUSE,
				       "unix:%s: another process listens on this socket", path);
		if (live < 0)
			return err_set(err, errlen, live,
				       "unix:%s: cannot tell whether the socket is in use: %s",
				       path, strerror(-live));
		if (unlink(path) && errno != ENOENT)
			return err_set(err, errlen, -errno,
				       "unix:%s: cannot remove the stale socket: %s", path,
				       strerror(errno));
	} else if (errno != ENOENT) {
		return err_set(err, errlen, -errno, "unix:%s: %s", path, strerror(errno));
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return err_set(err, errlen, -errno, "socket: %s", strerror(errno));
	/* Linux creates the socket file with the socket inode's mode (less the
	 * umask): 0600 from the first moment, nobody else can connect while we
	 * set up.  The chmod after bind() makes it so whatever the kernel. */
	if (fchmod(fd, 0600)) {
		int e = errno;
		close(fd);
		return err_set(err, errlen, -e, "unix:%s: fchmod: %s", path, strerror(e));
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = errno;
		close(fd);
		return err_set(err, errlen, -e, "unix:%s: bind: %s", path, strerror(e));
	}
	if (chmod(path, 0600) || listen(fd, LISTEN_BACKLOG)) {
		int e = errno;
		close(fd);
		unlink(path);
		return err_set(err, errlen, -e, "unix:%s: %s", path, strerror(e));
	}
	*lfd = fd;
	return 0;
}

static int tcp_listen(const struct mig_url *u, int *lfd, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	tcp_addr(u, &ss, &sl);
	char url[MIG_URL_TEXT_MAX];
	mig_url_format(u, url, sizeof(url));
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return err_set(err, errlen, -errno, "%s: socket: %s", url, strerror(errno));
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, LISTEN_BACKLOG)) {
		int e = errno;
		close(fd);
		return err_set(err, errlen, -e, "%s: cannot listen: %s%s", url, strerror(e),
			       e == EADDRINUSE	   ? " (another process has this port)"
			       : e == EADDRNOTAVAIL ? " (no local interface has this address)"
						    : "");
	}
	*lfd = fd;
	return 0;
}

int mig_listen(const struct mig_url *u, int *lfd, char *err, size_t errlen)
{
	int r = url_check(u, err, errlen);
	if (r)
		return r;
	if (!lfd)
		return err_set(err, errlen, -EINVAL, "mig_listen: no place for the socket");
	return u->kind == MIG_URL_UNIX ? unix_listen(u, lfd, err, errlen)
				       : tcp_listen(u, lfd, err, errlen);
}

int mig_listen_port(int lfd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(lfd, (struct sockaddr *)&ss, &sl))
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EINVAL;
}

void mig_listen_shutdown(int lfd)
{
	shutdown(lfd, SHUT_RDWR);
}

void mig_listen_close(int lfd, const struct mig_url *u)
{
	if (lfd >= 0)
		close(lfd);
	if (!u || u->kind != MIG_URL_UNIX || url_check(u, NULL, 0))
		return;
	struct stat st;
	if (lstat(u->path, &st) == 0 && S_ISSOCK(st.st_mode) && unix_live(u->path) == 0)
		unlink(u->path);
}

/* ---- TLS set-up -------------------------------------------------------- */

static BIO_METHOD *bio_method;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

/* The BIO between OpenSSL and the socket (struct mig_conn as its data). */
static int bio_write_ex(BIO *b, const char *buf, size_t len, size_t *done)
{
	struct mig_conn *c = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	*done = 0;
	for (;;) {
		ssize_t w = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (w > 0 || (w == 0 && len == 0)) {
			*done = (size_t)w;
			return 1;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w == 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
			BIO_set_retry_write(b);
			return 0;
		}
		c->wr_errno = errno;
		return 0;
	}
}

static int bio_read_ex(BIO *b, char *buf, size_t len, size_t *done)
{
	struct mig_conn *c = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	*done = 0;
	if (len == 0)
		return 0;
	for (;;) {
		ssize_t r = recv(c->fd, buf, len, 0);
		if (r > 0) {
			if (c->first_byte < 0)
				c->first_byte = (unsigned char)buf[0];
			*done = (size_t)r;
			return 1;
		}
		if (r == 0) {
			c->rd_eof = true;
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			BIO_set_retry_read(b);
			return 0;
		}
		c->rd_errno = errno;
		return 0;
	}
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct mig_conn *c = BIO_get_data(b);
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* nothing is buffered here */
	case BIO_CTRL_EOF:
		return c && c->rd_eof;
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int bio_destroy(BIO *b)
{
	return 1;
}

static void tls_init(void)
{
	/* Never read openssl.cnf: what TLS does depends on visor alone, not on
	 * the host's configuration (and a static binary loads no modules). */
	OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				     "visor migration socket");
	if (!m)
		return;
	if (!BIO_meth_set_write_ex(m, bio_write_ex) || !BIO_meth_set_read_ex(m, bio_read_ex) ||
	    !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create) ||
	    !BIO_meth_set_destroy(m, bio_destroy)) {
		BIO_meth_free(m);
		return;
	}
	bio_method = m;
}

/* OpenSSL's error queue of this thread, drained into one line: the
 * reasons, with their detail in parentheses, separated by "; ". */
static void ssl_errors(char *buf, size_t len)
{
	size_t off = 0;
	unsigned long e;
	const char *data;
	int flags;
	buf[0] = '\0';
	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		if (off + 1 >= len)
			continue;
		const char *reason = ERR_reason_error_string(e);
		int n;
		if (reason && off && strstr(buf, reason))
			continue; /* the same reason again, from another layer */
		if (reason)
			n = snprintf(buf + off, len - off, "%s%s", off ? "; " : "", reason);
		else
			n = snprintf(buf + off, len - off, "%serror 0x%lx", off ? "; " : "", e);
		if (n > 0)
			off += (size_t)n < len - off ? (size_t)n : len - off - 1;
		if ((flags & ERR_TXT_STRING) && data && *data && off + 1 < len) {
			n = snprintf(buf + off, len - off, " (%s)", data);
			if (n > 0)
				off += (size_t)n < len - off ? (size_t)n : len - off - 1;
		}
	}
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
}

/* A whole regular file of at most TLS_FILE_MAX bytes as a memory BIO. */
static int read_pem(const char *what, const char *path, BIO **out, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return err_set(err, errlen, -errno, "TLS %s '%s': %s", what, path, strerror(errno));
	struct stat st;
	int r = 0;
	char *buf = NULL;
	size_t got = 0;
	if (fstat(fd, &st)) {
		r = err_set(err, errlen, -errno, "TLS %s '%s': %s", what, path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = err_set(err, errlen, -EINVAL, "TLS %s '%s': not a regular file", what, path);
		goto out;
	}
	if (st.st_size > (off_t)TLS_FILE_MAX) {
		r = err_set(err, errlen, -EFBIG, "TLS %s '%s': larger than %u bytes", what, path,
			    TLS_FILE_MAX);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		r = err_set(err, errlen, -ENOMEM, "TLS %s '%s': out of memory", what, path);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = err_set(err, errlen, -errno, "TLS %s '%s': %s", what, path,
				    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	BIO *b = BIO_new(BIO_s_mem());
	if (!b || BIO_write(b, buf, (int)got) != (int)got) {
		BIO_free(b);
		r = err_set(err, errlen, -ENOMEM, "TLS %s '%s': out of memory", what, path);
		goto out;
	}
	*out = b;
out:
	free(buf);
	close(fd);
	return r;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1; /* an encrypted key is refused: nobody could type its passphrase */
}

/* A server name to check: an IP address or a DNS name (letters, digits,
 * '-', '.', labels of 1 to 63). */
static bool name_valid(const char *s)
{
	unsigned char a[16];
	if (inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1)
		return true;
	size_t label = 0, len = strlen(s);
	if (len == 0 || len > 253)
		return false;
	for (const char *p = s; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '-';
		if (!ok || ++label > 63)
			return false;
	}
	return label > 0;
}

static bool is_ip(const char *s)
{
	unsigned char a[16];
	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

static int tls_field(const char *what, const char *s, size_t size, bool need, char *err,
		     size_t errlen)
{
	size_t len = strnlen(s, size);
	if (len == size)
		return err_set(err, errlen, -EINVAL, "TLS %s: not terminated within %zu bytes",
			       what, size);
	if (need && len == 0)
		return err_set(err, errlen, -EINVAL,
			       "TLS %s: missing (mutual TLS needs a certificate, its key and "
			       "the CA of the peer on both sides)",
			       what);
	if (has_control(s))
		return err_set(err, errlen, -EINVAL, "TLS %s: control character in the path",
			       what);
	return 0;
}

/* An SSL_CTX for one side of a migration from @t (enabled): TLS 1.3 only,
 * our certificate and key, the peer's CA as the only trust anchors, peer
 * verification (a client certificate required on the server). */
static int tls_ctx_new(const struct mig_tls *t, bool server, SSL_CTX **out, char *err,
		       size_t errlen)
{
	char why[256];
	int r;
	if ((r = tls_field("certificate", t->cert, sizeof(t->cert), true, err, errlen)) ||
	    (r = tls_field("key", t->key, sizeof(t->key), true, err, errlen)) ||
	    (r = tls_field("CA", t->ca, sizeof(t->ca), true, err, errlen)))
		return r;
	size_t nlen = strnlen(t->server_name, sizeof(t->server_name));
	if (nlen == sizeof(t->server_name) || (nlen && !name_valid(t->server_name))) {
		char ex[72];
		return err_set(err, errlen, -EINVAL,
			       "TLS server name '%s': not a host name or IP address",
			       excerpt(ex, t->server_name, nlen));
	}

	pthread_once(&tls_once, tls_init);
	if (!bio_method)
		return err_set(err, errlen, -ENOMEM, "TLS: cannot initialise OpenSSL");
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	BIO *cb = NULL, *kb = NULL, *ab = NULL;
	X509 *leaf = NULL, *x;
	EVP_PKEY *pkey = NULL;
	if (!ctx) {
		ssl_errors(why, sizeof(why));
		return err_set(err, errlen, -ENOMEM, "TLS: SSL_CTX_new: %s", why);
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
		ssl_errors(why, sizeof(why));
		r = err_set(err, errlen, -ENOTSUP, "TLS: this OpenSSL has no TLS 1.3: %s", why);
		goto fail;
	}
	SSL_CTX_set_security_level(ctx, 2);
	/* one connection per migration: no tickets, no resumption */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* partial writes: a write returns after each record, so a reader thread
	 * waiting for the lock waits one record at most */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);

	if ((r = read_pem("certificate", t->cert, &cb, err, errlen)) ||
	    (r = read_pem("key", t->key, &kb, err, errlen)) ||
	    (r = read_pem("CA", t->ca, &ab, err, errlen)))
		goto fail;

	leaf = PEM_read_bio_X509(cb, NULL, no_passphrase, NULL);
	if (!leaf) {
		ssl_errors(why, sizeof(why));
		r = err_set(err, errlen, -EINVAL, "TLS certificate '%s': no PEM certificate (%s)",
			    t->cert, why);
		goto fail;
	}
	if (!SSL_CTX_use_certificate(ctx, leaf)) {
		ssl_errors(why, sizeof(why));
		r = err_set(err, errlen, -EINVAL, "TLS certificate '%s': refused: %s", t->cert,
			    why);
		goto fail;
	}
	/* the intermediate certificates that may follow it */
	while ((x = PEM_read_bio_X509(cb, NULL, no_passphrase, NULL)) != NULL) {
		if (!SSL_CTX_add0_chain_cert(ctx, x)) {
			X509_free(x);
			ssl_errors(why, sizeof(why));
			r = err_set(err, errlen, -EINVAL,
				    "TLS certificate '%s': chain certificate refused: %s",
				    t->cert, why);
			goto fail;
		}
	}
	ERR_clear_error(); /* the end of the file */

	char *kdata;
	long klen = BIO_get_mem_data(kb, &kdata);
	if (klen > 0 && memmem(kdata, (size_t)klen, "ENCRYPTED", 9)) {
		r = err_set(err, errlen, -EINVAL,
			    "TLS key '%s' is encrypted: give it unencrypted (visor cannot ask for "
			    "a passphrase)",
			    t->key);
		goto fail;
	}
	pkey = PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, NULL);
	if (!pkey) {
		ssl_errors(why, sizeof(why));
		r = err_set(err, errlen, -EINVAL,
			    "TLS key '%s': no unencrypted PEM private key (%s)", t->key, why);
		goto fail;
	}
	if (!X509_check_private_key(leaf, pkey)) {
		ERR_clear_error();
		r = err_set(err, errlen, -EINVAL,
			    "TLS key '%s' does not belong to the certificate '%s'", t->key,
			    t->cert);
		goto fail;
	}
	if (!SSL_CTX_use_PrivateKey(ctx, pkey)) {
		ssl_errors(why, sizeof(why));
		r = err_set(err, errlen, -EINVAL, "TLS key '%s': refused: %s", t->key, why);
		goto fail;
	}

	/* The CA file's certificates are the only trust anchors (the default
	 * paths are never loaded); PARTIAL_CHAIN makes an intermediate CA in
	 * the file an anchor too. */
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	int nca = 0;
	while ((x = PEM_read_bio_X509(ab, NULL, no_passphrase, NULL)) != NULL) {
		int ok = X509_STORE_add_cert(store, x);
		X509_free(x);
		if (!ok) {
			ssl_errors(why, sizeof(why));
			r = err_set(err, errlen, -EINVAL, "TLS CA '%s': certificate refused: %s",
				    t->ca, why);
			goto fail;
		}
		nca++;
	}
	if (nca == 0) {
		ssl_errors(why, sizeof(why));
		r = err_set(err, errlen, -EINVAL, "TLS CA '%s': no PEM certificate (%s)", t->ca,
			    why);
		goto fail;
	}
	ERR_clear_error();
	X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
	SSL_CTX_set_verify(ctx,
			   SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
			   NULL);
	X509_free(leaf);
	EVP_PKEY_free(pkey);
	BIO_free(cb);
	BIO_free(kb);
	BIO_free(ab);
	*out = ctx;
	return 0;
fail:
	X509_free(leaf);
	EVP_PKEY_free(pkey);
	BIO_free(cb);
	BIO_free(kb);
	BIO_free(ab);
	SSL_CTX_free(ctx);
	return r;
}

int mig_tls_check(const struct mig_tls *tls, bool server, char *err, size_t errlen)
{
	if (!tls || !tls->enabled)
		return 0;
	SSL_CTX *ctx;
	int r = tls_ctx_new(tls, server, &ctx, err, errlen);
	if (!r)
		SSL_CTX_free(ctx);
	return r;
}

/* ---- connections ------------------------------------------------------- */

static struct mig_conn *conn_new(int fd)
{
	struct mig_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	c->first_byte = -1;
	pthread_mutex_init(&c->lock, NULL);

	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_UNIX) {
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		c->is_unix = true;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
			snprintf(c->peer, sizeof(c->peer), "unix peer (pid %d, uid %u)",
				 (int)cr.pid, (unsigned)cr.uid);
		else
			snprintf(c->peer, sizeof(c->peer), "unix peer");
		return c;
	}
	int one = 1; /* small control messages must not wait (downtime) */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	snprintf(c->peer, sizeof(c->peer), "peer");
	sl = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		char a[INET6_ADDRSTRLEN] = "?";
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
			snprintf(c->peer, sizeof(c->peer), "%s:%u", a, ntohs(s4->sin_port));
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
			snprintf(c->peer, sizeof(c->peer), "[%s]:%u", a, ntohs(s6->sin6_port));
		}
	}
	return c;
}

/* Free @c without any goodbye (set-up failed). */
static void conn_free(struct mig_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static void set_errtext(struct mig_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_errtext(struct mig_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&c->lock);
	vsnprintf(c->errtext, sizeof(c->errtext), fmt, ap);
	pthread_mutex_unlock(&c->lock);
	va_end(ap);
}

/* Mark @c unusable with @code and the text @fmt, and wake a thread waiting
 * on the other direction.  The first reason wins (a cancel, a failure in
 * the other direction): its code is returned and its text kept. */
static int conn_fail(struct mig_conn *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int conn_fail(struct mig_conn *c, int code, const char *fmt, ...)
{
	int expect = 0;
	if (!atomic_compare_exchange_strong(&c->dead, &expect, code))
		return expect;
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&c->lock);
	vsnprintf(c->errtext, sizeof(c->errtext), fmt, ap);
	pthread_mutex_unlock(&c->lock);
	va_end(ap);
	shutdown(c->fd, SHUT_RDWR);
	return code;
}

/* A failed wait (conn_wait's code) during a write: unusable. */
static int write_wait_failed(struct mig_conn *c, int code)
{
	if (code == -ETIMEDOUT)
		return conn_fail(c, code, "write: no progress for %d ms",
				 atomic_load(&c->timeout_ms));
	return conn_fail(c, code, "write: poll: %s", strerror(-code));
}

/* Wait for the socket to be ready for @events for at most the inactivity
 * timeout.  0, -ETIMEDOUT, -ECANCELED or another -errno. */
static int conn_wait(struct mig_conn *c, short events)
{
	int t = atomic_load(&c->timeout_ms);
	int r = wait_fd(c->fd, events, t > 0 ? now_ms() + t : -1);
	int d = atomic_load(&c->dead);
	if (d)
		return d;
	return r < 0 ? r : 0;
}

/* What went wrong in an OpenSSL call on @c that returned SSL_get_error()
 * @e (not a WANT_*), as a -errno and one line in buf.  Called with the
 * lock held (or before the connection is shared).  @ca and @name add
 * detail to a failed certificate check during the handshake. */
static int tls_describe(struct mig_conn *c, int e, const char *ca, const char *name, char *buf,
			size_t len)
{
	char q[256];
	unsigned long last = ERR_peek_last_error();
	ssl_errors(q, sizeof(q));
	long vr = SSL_get_verify_result(c->ssl);
	int lib = ERR_GET_LIB(last), reason = ERR_GET_REASON(last);

	if (c->first_byte >= 0 && c->first_byte != 0x16 && c->first_byte != 0x15 &&
	    c->first_byte != 0x17 && !SSL_is_init_finished(c->ssl)) {
		snprintf(buf, len,
			 "the peer does not speak TLS (its first byte is 0x%02x): is TLS "
			 "configured on both sides?",
			 c->first_byte);
		return -EPROTO;
	}
	if (vr != X509_V_OK) {
		const char *what = X509_verify_cert_error_string(vr);
		switch (vr) {
		case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
		case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
		case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
		case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		case X509_V_ERR_CERT_SIGNATURE_FAILURE:
			snprintf(buf, len,
				 "the peer's certificate is not signed by the CA in '%s' (%s)",
				 ca ? ca : "?", what);
			break;
		case X509_V_ERR_CERT_HAS_EXPIRED:
			snprintf(buf, len, "the peer's certificate has expired");
			break;
		case X509_V_ERR_CERT_NOT_YET_VALID:
			snprintf(buf, len, "the peer's certificate is not valid yet");
			break;
		case X509_V_ERR_HOSTNAME_MISMATCH:
		case X509_V_ERR_IP_ADDRESS_MISMATCH:
			snprintf(buf, len, "the server's certificate is not for '%s' (%s)",
				 name ? name : "?", what);
			break;
		default:
			snprintf(buf, len, "the peer's certificate was refused: %s", what);
		}
		return -EPROTO;
	}
	if (lib == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET) {
		/* the peer sent an alert: it refused us */
		const char *hint = "";
		switch (reason - SSL_AD_REASON_OFFSET) {
		case SSL_AD_UNKNOWN_CA:
			hint = ": it does not trust the CA of our certificate";
			break;
		case SSL_AD_CERTIFICATE_EXPIRED:
			hint = ": our certificate has expired";
			break;
		case SSL_AD_BAD_CERTIFICATE:
		case SSL_AD_CERTIFICATE_UNKNOWN:
			hint = ": it refused our certificate";
			break;
		case TLS13_AD_CERTIFICATE_REQUIRED:
			hint = ": it requires a certificate from us";
			break;
		case SSL_AD_PROTOCOL_VERSION:
			hint = ": no common protocol version (visor speaks TLS 1.3 only)";
			break;
		}
		snprintf(buf, len, "the peer refused the connection (%s)%s", q, hint);
		return -EPROTO;
	}
	if (lib == ERR_LIB_SSL && reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		snprintf(buf, len, "the peer presented no certificate (mutual TLS: the client "
				   "needs one too)");
		return -EPROTO;
	}
	if (e == SSL_ERROR_ZERO_RETURN) {
		snprintf(buf, len, "the peer closed the TLS session");
		return -ECONNRESET;
	}
	if (c->rd_eof || c->rd_errno == ECONNRESET) {
		snprintf(buf, len, "the peer closed the connection%s",
			 SSL_is_init_finished(c->ssl)
				 ? ""
				 : " during the TLS handshake (does it use TLS, and with "
				   "certificates we accept?)");
		return -ECONNRESET;
	}
	if (c->rd_errno || c->wr_errno) {
		int x = c->rd_errno ? c->rd_errno : c->wr_errno;
		snprintf(buf, len, "%s", strerror(x));
		return -x;
	}
	snprintf(buf, len, "%s", q[0] ? q : "unknown TLS error");
	return e == SSL_ERROR_SYSCALL ? -EIO : -EPROTO;
}

static int tls_handshake(struct mig_conn *c, int64_t deadline, int timeout_ms, const char *ca,
			 const char *name, char *err, size_t errlen)
{
	char why[400];
	for (;;) {
		ERR_clear_error();
		int r = SSL_do_handshake(c->ssl);
		if (r == 1)
			return 0;
		int e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			int code = tls_describe(c, e, ca, name, why, sizeof(why));
			return err_set(err, errlen, code, "TLS handshake with %s failed: %s",
				       c->peer, why);
		}
		int w = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
		if (w == -ETIMEDOUT)
			return err_set(err, errlen, -ETIMEDOUT,
				       "TLS handshake with %s: no answer within %d ms%s", c->peer,
				       timeout_ms,
				       c->first_byte < 0 ? " (the peer sent nothing: does it use "
							   "TLS?)"
							 : "");
		if (w < 0)
			return err_set(err, errlen, w, "poll: %s", strerror(-w));
	}
}

/* ---- reading and writing ----------------------------------------------- */

static int plain_write(struct mig_conn *c, const uint8_t *p, size_t n)
{
	size_t off = 0;
	while (off < n) {
		int d = atomic_load(&c->dead);
		if (d)
			return d;
		ssize_t w = send(c->fd, p + off, n - off, MSG_NOSIGNAL);
		if (w > 0) {
			off += (size_t)w;
			atomic_fetch_add_explicit(&c->out, (uint64_t)w, memory_order_relaxed);
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w == 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
			int r = conn_wait(c, POLLOUT);
			if (r)
				return write_wait_failed(c, r);
			continue;
		}
		int e = errno;
		if (e == EPIPE) {
			/* the peer closed its end: what it sent before (its
			 * reason, say) can still be read */
			c->wr_errno = e;
			return -e;
		}
		return conn_fail(c, -e, "write: %s", strerror(e));
	}
	return 0;
}

/* A read error: a timeout before the first byte of this read leaves the
 * connection usable, anything else makes it unusable. */
static int read_failed(struct mig_conn *c, int code, size_t got)
{
	if (code == -ETIMEDOUT) {
		int t = atomic_load(&c->timeout_ms);
		if (got == 0) {
			set_errtext(c, "read: nothing for %d ms", t);
			return code;
		}
		return conn_fail(c, code, "read: nothing for %d ms", t);
	}
	return conn_fail(c, code, "read: poll: %s", strerror(-code));
}

static int plain_read(struct mig_conn *c, uint8_t *p, size_t n)
{
	size_t off = 0;
	while (off < n) {
		int d = atomic_load(&c->dead);
		if (d)
			return d;
		ssize_t r = recv(c->fd, p + off, n - off, 0);
		if (r > 0) {
			off += (size_t)r;
			atomic_fetch_add_explicit(&c->in, (uint64_t)r, memory_order_relaxed);
			continue;
		}
		if (r == 0)
			return conn_fail(c, -ECONNRESET, "the peer closed the connection");
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int w = conn_wait(c, POLLIN);
			if (w)
				return read_failed(c, w, off);
			continue;
		}
		int e = errno;
		return conn_fail(c, -e, "read: %s", strerror(e));
	}
	return 0;
}

/* One direction of TLS I/O: SSL_write_ex or SSL_read_ex until @n bytes. */
static int tls_io(struct mig_conn *c, bool write, uint8_t *p, size_t n)
{
	size_t off = 0;
	char why[320];
	while (off < n) {
		int d = atomic_load(&c->dead);
		if (d)
			return d;
		size_t done = 0;
		int code = 0;
		pthread_mutex_lock(&c->lock);
		ERR_clear_error();
		if (write)
			c->wr_errno = 0;
		else
			c->rd_errno = 0;
		int ok = write ? SSL_write_ex(c->ssl, p + off, n - off, &done)
			       : SSL_read_ex(c->ssl, p + off, n - off, &done);
		int e = ok ? SSL_ERROR_NONE : SSL_get_error(c->ssl, 0);
		if (!ok && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			code = tls_describe(c, e, NULL, NULL, why, sizeof(why));
		pthread_mutex_unlock(&c->lock);
		if (ok) {
			off += done;
			atomic_fetch_add_explicit(write ? &c->out : &c->in, (uint64_t)done,
						  memory_order_relaxed);
			continue;
		}
		if (code)
			return conn_fail(c, code, "%s", why);
		int w = conn_wait(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT);
		if (w)
			return write ? write_wait_failed(c, w) : read_failed(c, w, off);
	}
	return 0;
}

int mig_conn_write(struct mig_conn *c, const void *p, size_t n)
{
	if (!c || (!p && n))
		return -EINVAL;
	if (c->ssl)
		return tls_io(c, true, (uint8_t *)p, n);
	return plain_write(c, p, n);
}

int mig_conn_read(struct mig_conn *c, void *p, size_t n)
{
	if (!c || (!p && n))
		return -EINVAL;
	if (c->ssl)
		return tls_io(c, false, p, n);
	return plain_read(c, p, n);
}

int mig_conn_set_timeout(struct mig_conn *c, int ms)
{
	if (!c || ms < 0)
		return -EINVAL;
	atomic_store(&c->timeout_ms, ms);
	return 0;
}

int mig_conn_fd(const struct mig_conn *c)
{
	return c->fd;
}

bool mig_conn_pending(const struct mig_conn *c)
{
	if (!c->ssl)
		return false;
	struct mig_conn *m = (struct mig_conn *)c; /* the lock only */
	pthread_mutex_lock(&m->lock);
	bool r = SSL_pending(c->ssl) > 0 || SSL_has_pending(c->ssl);
	pthread_mutex_unlock(&m->lock);
	return r;
}

bool mig_conn_is_tls(const struct mig_conn *c)
{
	return c->ssl != NULL;
}

int mig_conn_send_fds(struct mig_conn *c, const void *p, size_t n, const int *fds, int nfds)
{
	if (!c || (!p && n) || nfds < 0 || nfds > MIG_MAX_FDS || (nfds && (!fds || n == 0)))
		return -EINVAL;
	if (c->ssl || !c->is_unix)
		return -ENOTSUP;
	if (nfds == 0)
		return plain_write(c, p, n);
	for (int i = 0; i < nfds; i++)
		if (fds[i] < 0)
			return -EBADF;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * MIG_MAX_FDS)];
	} cm;
	memset(&cm, 0, sizeof(cm));
	struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = cm.buf,
			     .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds)};
	struct cmsghdr *h = CMSG_FIRSTHDR(&msg);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
	memcpy(CMSG_DATA(h), fds, sizeof(int) * (size_t)nfds);
	for (;;) {
		int d = atomic_load(&c->dead);
		if (d)
			return d;
		ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (w > 0) {
			/* the descriptors went with the first byte; the rest is data */
			atomic_fetch_add_explicit(&c->out, (uint64_t)w, memory_order_relaxed);
			return plain_write(c, (const uint8_t *)p + w, n - (size_t)w);
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w == 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
			int r = conn_wait(c, POLLOUT);
			if (r)
				return write_wait_failed(c, r);
			continue;
		}
		int e = errno;
		return conn_fail(c, -e, "sendmsg: %s", strerror(e));
	}
}

/* Keep the descriptors of every SCM_RIGHTS message in @msg: the first
 * ones in fds[*kept..maxfds), the others closed. */
static void take_fds(struct msghdr *msg, int *fds, int maxfds, int *kept)
{
	for (struct cmsghdr *h = CMSG_FIRSTHDR(msg); h; h = CMSG_NXTHDR(msg, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS ||
		    h->cmsg_len < CMSG_LEN(0))
			continue;
		size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
			if (*kept < maxfds)
				fds[(*kept)++] = fd;
			else
				close(fd);
		}
	}
}

int mig_conn_recv_fds(struct mig_conn *c, void *p, size_t n, int *fds, int maxfds, int *nfds)
{
	if (!c || !p || n == 0 || !nfds || maxfds < 0 || maxfds > MIG_MAX_FDS ||
	    (maxfds && !fds))
		return -EINVAL;
	*nfds = 0;
	if (c->ssl || !c->is_unix)
		return -ENOTSUP;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * MIG_MAX_FDS)];
	} cm;
	size_t off = 0;
	int kept = 0, r = 0;
	while (off < n) {
		int d = atomic_load(&c->dead);
		if (d) {
			r = d;
			break;
		}
		struct iovec iov = {.iov_base = (uint8_t *)p + off, .iov_len = n - off};
		struct msghdr msg = {.msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = cm.buf,
				     .msg_controllen = sizeof(cm.buf)};
		ssize_t got = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC);
		if (got >= 0)
			take_fds(&msg, fds, maxfds, &kept);
		if (got > 0) {
			off += (size_t)got;
			atomic_fetch_add_explicit(&c->in, (uint64_t)got, memory_order_relaxed);
			continue;
		}
		if (got == 0) {
			r = conn_fail(c, -ECONNRESET, "the peer closed the connection");
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int w = conn_wait(c, POLLIN);
			if (w) {
				r = read_failed(c, w, off);
				break;
			}
			continue;
		}
		int e = errno;
		r = conn_fail(c, -e, "recvmsg: %s", strerror(e));
		break;
	}
	if (r) {
		for (int i = 0; i < kept; i++)
			close(fds[i]);
		return r;
	}
	*nfds = kept;
	return 0;
}

void mig_conn_shutdown(struct mig_conn *c)
{
	if (!c)
		return;
	conn_fail(c, -ECANCELED, "cancelled");
	shutdown(c->fd, SHUT_RDWR); /* also if it had failed before */
}

uint64_t mig_conn_bytes_out(const struct mig_conn *c)
{
	return atomic_load_explicit(&c->out, memory_order_relaxed);
}

uint64_t mig_conn_bytes_in(const struct mig_conn *c)
{
	return atomic_load_explicit(&c->in, memory_order_relaxed);
}

void mig_conn_peer(const struct mig_conn *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s", c->peer);
}

void mig_conn_last_error(struct mig_conn *c, char *buf, size_t len)
{
	pthread_mutex_lock(&c->lock);
	snprintf(buf, len, "%s", c->errtext);
	pthread_mutex_unlock(&c->lock);
}

void mig_conn_close(struct mig_conn *c)
{
	if (!c)
		return;
	if (c->ssl && !atomic_load(&c->dead)) {
		/* close_notify, so the peer can tell an end from a cut; the
		 * socket is non-blocking, this never waits */
		ERR_clear_error();
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	conn_free(c);
}

bool mig_looks_like_tls(const void *p, size_t n)
{
	const uint8_t *b = p;
	/* a TLS record: type 22 (handshake), legacy version 3.x */
	return n >= 3 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04;
}

/* ---- accept and connect ------------------------------------------------ */

/* Wait for the first byte of a new connection (peeked, not read).  1 when
 * it is there, 0 if the peer closed without sending (a connect test of
 * mig_listen, a port scanner: skip it), -ETIMEDOUT or -errno. */
static int wait_first_byte(int fd, int64_t deadline)
{
	for (;;) {
		char b;
		ssize_t r = recv(fd, &b, 1, MSG_PEEK);
		if (r == 1)
			return 1;
		if (r == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET)
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int w = wait_fd(fd, POLLIN, deadline);
		if (w < 0)
			return w;
	}
}

static int tls_start(struct mig_conn *c, SSL_CTX *ctx, char *err, size_t errlen)
{
	c->ssl = SSL_new(ctx);
	BIO *b = c->ssl ? BIO_new(bio_method) : NULL;
	if (!b) {
		char why[256];
		ssl_errors(why, sizeof(why));
		return err_set(err, errlen, -ENOMEM, "TLS: SSL_new: %s", why);
	}
	BIO_set_data(b, c);
	SSL_set_bio(c->ssl, b, b);
	return 0;
}

int mig_accept(int lfd, const struct mig_tls *tls, int timeout_ms, struct mig_conn **out,
	       char *err, size_t errlen)
{
	if (!out)
		return err_set(err, errlen, -EINVAL, "mig_accept: no place for the connection");
	*out = NULL;
	SSL_CTX *ctx = NULL;
	bool use_tls = tls && tls->enabled;
	int r;
	if (use_tls && (r = tls_ctx_new(tls, true, &ctx, err, errlen)))
		return r;
	int64_t deadline = deadline_in(timeout_ms);
	int fd;
	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			int f = wait_first_byte(fd, deadline);
			if (f == 1)
				break;
			close(fd);
			if (f == 0)
				continue;
			if (f == -ETIMEDOUT)
				r = err_set(err, errlen, -ETIMEDOUT,
					    "a client connected but sent nothing within %d ms%s",
					    timeout_ms,
					    use_tls ? " (no TLS handshake: does it use TLS?)" : "");
			else
				r = err_set(err, errlen, f, "reading from a new connection: %s",
					    strerror(-f));
			goto fail;
		}
		int e = errno;
		if (e == EINTR || e == ECONNABORTED)
			continue;
		if (e == EINVAL) {
			r = err_set(err, errlen, -ECANCELED, "stopped waiting for a connection");
			goto fail;
		}
		if (e != EAGAIN && e != EWOULDBLOCK) {
			r = err_set(err, errlen, -e, "accept: %s", strerror(e));
			goto fail;
		}
		int w = wait_fd(lfd, POLLIN, deadline);
		if (w == -ETIMEDOUT) {
			r = err_set(err, errlen, -ETIMEDOUT, "no connection within %d ms",
				    timeout_ms);
			goto fail;
		}
		if (w < 0) {
			r = err_set(err, errlen, w, "poll: %s", strerror(-w));
			goto fail;
		}
		if (w & (POLLHUP | POLLERR | POLLNVAL)) {
			r = err_set(err, errlen, w & POLLNVAL ? -EBADF : -ECANCELED,
				    "stopped waiting for a connection");
			goto fail;
		}
	}
	struct mig_conn *c = conn_new(fd);
	if (!c) {
		close(fd);
		r = err_set(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	if (use_tls) {
		if ((r = tls_start(c, ctx, err, errlen)))
			goto fail_conn;
		SSL_set_accept_state(c->ssl);
		if ((r = tls_handshake(c, deadline, timeout_ms, tls->ca, NULL, err, errlen)))
			goto fail_conn;
		/* the client's certificate is verified: tell it */
		atomic_store(&c->timeout_ms, deadline < 0 ? 0 : ms_left(deadline) + 1);
		if ((r = tls_io(c, true, (uint8_t *)tls_accepted, sizeof(tls_accepted)))) {
			r = err_set(err, errlen, r, "TLS with %s: %s", c->peer, c->errtext);
			goto fail_conn;
		}
		atomic_store(&c->out, 0);
		atomic_store(&c->timeout_ms, 0);
		SSL_CTX_free(ctx);
	}
	*out = c;
	return 0;
fail_conn:
	conn_free(c);
fail:
	SSL_CTX_free(ctx);
	return r;
}

static int connect_socket(const struct mig_url *u, int64_t deadline, int timeout_ms, int *out,
			  char *err, size_t errlen)
{
	char url[MIG_URL_TEXT_MAX];
	mig_url_format(u, url, sizeof(url));
	struct sockaddr_storage ss;
	socklen_t sl;
	if (u->kind == MIG_URL_UNIX) {
		unix_addr(u, (struct sockaddr_un *)&ss);
		sl = sizeof(struct sockaddr_un);
	} else {
		tcp_addr(u, &ss, &sl);
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return err_set(err, errlen, -errno, "%s: socket: %s", url, strerror(errno));
	int r = connect(fd, (struct sockaddr *)&ss, sl), e = r ? errno : 0;
	if (r && (e == EINPROGRESS || e == EINTR)) {
		/* connecting in the background: wait, then ask how it ended */
		int w = wait_fd(fd, POLLOUT, deadline);
		if (w == -ETIMEDOUT) {
			close(fd);
			return err_set(err, errlen, -ETIMEDOUT, "%s: no answer within %d ms", url,
				       timeout_ms);
		}
		socklen_t el = sizeof(e);
		if (w < 0)
			e = -w;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el))
			e = errno;
	}
	if (e) {
		close(fd);
		return err_set(err, errlen, -e, "cannot connect to %s: %s%s", url, strerror(e),
			       e == ECONNREFUSED ? " (nothing listens there)"
			       : e == ENOENT	 ? " (no socket there)"
			       : e == EAGAIN	 ? " (the listener's backlog is full)"
						 : "");
	}
	*out = fd;
	return 0;
}

int mig_connect(const struct mig_url *u, const struct mig_tls *tls, int timeout_ms,
		struct mig_conn **out, char *err, size_t errlen)
{
	int r = url_check(u, err, errlen);
	if (r)
		return r;
	if (!out)
		return err_set(err, errlen, -EINVAL, "mig_connect: no place for the connection");
	*out = NULL;
	if (u->kind == MIG_URL_TCP && u->port == 0)
		return err_set(err, errlen, -EINVAL, "tcp:%s:0: cannot connect to port 0", u->host);
	SSL_CTX *ctx = NULL;
	bool use_tls = tls && tls->enabled;
	if (use_tls && (r = tls_ctx_new(tls, false, &ctx, err, errlen)))
		return r;
	int64_t deadline = deadline_in(timeout_ms);
	int fd;
	if ((r = connect_socket(u, deadline, timeout_ms, &fd, err, errlen))) {
		SSL_CTX_free(ctx);
		return r;
	}
	struct mig_conn *c = conn_new(fd);
	if (!c) {
		close(fd);
		SSL_CTX_free(ctx);
		return err_set(err, errlen, -ENOMEM, "out of memory");
	}
	if (use_tls) {
		const char *name = tls->server_name[0] ? tls->server_name
				   : u->kind == MIG_URL_TCP ? u->host
							    : NULL;
		if ((r = tls_start(c, ctx, err, errlen)))
			goto fail;
		if (name && is_ip(name)) {
			if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name))
				r = -EINVAL;
		} else if (name) {
			SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (!SSL_set_tlsext_host_name(c->ssl, name) || !SSL_set1_host(c->ssl, name))
				r = -EINVAL;
		}
		if (r) {
			r = err_set(err, errlen, r, "TLS: cannot check the server name '%s'", name);
			goto fail;
		}
		SSL_set_connect_state(c->ssl);
		if ((r = tls_handshake(c, deadline, timeout_ms, tls->ca, name, err, errlen)))
			goto fail;
		/* with TLS 1.3 the server checks our certificate after our side of
		 * the handshake is done: wait for its word that it accepted it */
		char word[sizeof(tls_accepted)];
		atomic_store(&c->timeout_ms, deadline < 0 ? 0 : ms_left(deadline) + 1);
		r = tls_io(c, false, (uint8_t *)word, sizeof(word));
		if (r == -ETIMEDOUT)
			snprintf(c->errtext, sizeof(c->errtext),
				 "no confirmation from the server within %d ms", timeout_ms);
		if (!r && memcmp(word, tls_accepted, sizeof(word))) {
			r = -EPROTO;
			snprintf(c->errtext, sizeof(c->errtext),
				 "the server did not confirm the TLS session (not a visor "
				 "migration listener?)");
		}
		if (r) {
			r = err_set(err, errlen, r, "TLS with %s: %s", c->peer, c->errtext);
			goto fail;
		}
		atomic_store(&c->in, 0);
		atomic_store(&c->timeout_ms, 0);
		SSL_CTX_free(ctx);
	}
	*out = c;
	return 0;
fail:
	conn_free(c);
	SSL_CTX_free(ctx);
	return r;
}

/* ---- the static binary ------------------------------------------------- */

/*
 * visor is linked with -static (docs/architecture.md, "Static binary").
 * libcrypto.a contains code that calls dlopen() (loadable providers and
 * engines), getaddrinfo() and gethostbyname() (BIO_lookup, BIO_s_connect):
 * functions a static glibc can only offer by loading the host's shared
 * libraries at run time, and the linker warns about each.  visor uses
 * none of them (no modules: openssl.cnf is not read, see tls_init(); no
 * names: URLs are numeric).  The Makefile links the static binary with
 * --wrap for the three, so libcrypto's references land here: they fail
 * cleanly instead of pulling glibc's dynamic loader and NSS into the
 * binary.  Unit tests and fuzzers are linked dynamically without --wrap,
 * and these definitions are unused there.
 */
void *__wrap_dlopen(const char *file, int mode);
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res);
struct hostent *__wrap_gethostbyname(const char *name);

void *__wrap_dlopen(const char *file, int mode)
{
	return NULL;
}

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res)
{
	*res = NULL;
	errno = ENOSYS;
	return EAI_SYSTEM;
}

struct hostent *__wrap_gethostbyname(const char *name)
{
	return NULL;
}
