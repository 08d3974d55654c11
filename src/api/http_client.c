/* SPDX-License-Identifier: MIT */
/*
 * http_client.c - blocking one-shot HTTP client on a Unix socket; see
 * http_client.h.
 */
#include "http_client.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/str.h"

#define MAX_INTERIM 8 /* 1xx responses skipped before the final one */

static bool tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Content-Length value [s, e): 0 / -EPROTO. */
static int parse_length(const char *s, const char *e, struct http_client_head *h)
{
	if (s == e)
		return -EPROTO;
	uint64_t n = 0;
	for (; s < e; s++) {
		if (*s < '0' || *s > '9')
			return -EPROTO;
		unsigned d = (unsigned)(*s - '0');
		if (n > (UINT64_MAX - d) / 10)
			return -EPROTO;
		n = n * 10 + d;
	}
	if (h->has_length && h->content_length != n)
		return -EPROTO;
	h->has_length = true;
	h->content_length = n;
	return 0;
}

static int parse_status_line(const char *s, size_t n, struct http_client_head *h)
{
	/* HTTP/1.x SP 3DIGIT [SP reason] */
	if (n < 12 || memcmp(s, "HTTP/1.", 7) || s[7] < '0' || s[7] > '9' || s[8] != ' ' ||
	    (n > 12 && s[12] != ' '))
		return -EPROTO;
	int st = 0;
	for (int i = 9; i < 12; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EPROTO;
		st = st * 10 + (s[i] - '0');
	}
	if (st < 100)
		return -EPROTO;
	for (size_t i = 12; i < n; i++)
		if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
			return -EPROTO;
	h->status = st;
	h->version_minor = s[7] - '0';
	return 0;
}

static int parse_header_line(const char *s, size_t n, struct http_client_head *h)
{
	const char *colon = memchr(s, ':', n);
	if (!colon || colon == s)
		return -EPROTO;
	for (const char *c = s; c < colon; c++)
		if (!tchar((unsigned char)*c))
			return -EPROTO;
	size_t nl = (size_t)(colon - s);
	const char *v = colon + 1, *e = s + n;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (nl == 14 && !strncasecmp(s, "content-length", 14))
		return parse_length(v, e, h);
	if (nl == 17 && !strncasecmp(s, "transfer-encoding", 17))
		h->chunked = true;
	else if (nl == 10 && !strncasecmp(s, "connection", 10)) {
		for (const char *t = v; t + 5 <= e; t++)
			if (!strncasecmp(t, "close", 5))
				h->close = true;
	}
	return 0;
}

int http_client_parse_head(const char *buf, size_t len, struct http_client_head *h)
{
	memset(h, 0, sizeof(*h));
	size_t lim = len < HTTP_CLIENT_MAX_HEAD ? len : HTTP_CLIENT_MAX_HEAD;
	size_t pos = 0;
	for (int line = 0;; line++) {
		const char *lf = memchr(buf + pos, '\n', lim - pos);
		if (!lf)
			return len >= HTTP_CLIENT_MAX_HEAD ? -EMSGSIZE : 0;
		size_t end = (size_t)(lf - buf);
		const char *s = buf + pos;
		size_t n = end - pos;
		if (n && s[n - 1] == '\r')
			n--;
		pos = end + 1;
		int r;
		if (line == 0)
			r = parse_status_line(s, n, h);
		else if (n == 0)
			return (int)pos;
		else
			r = parse_header_line(s, n, h);
		if (r)
			return r;
	}
}


/* Wait for @events on @fd until @deadline (0: for ever).  0 / -ETIMEDOUT /
 * -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		int ms = -1;
		if (deadline) {
			uint64_t now = now_ns();
			if (now >= deadline)
				return -ETIMEDOUT;
			ms = (int)((deadline - now + 999999) / 1000000);
		}
		struct pollfd pfd = {.fd = fd, .events = events};
		int r = poll(&pfd, 1, ms);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

static int do_connect(int fd, const char *path, uint64_t deadline, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, path, strlen(path));
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return 0;
		int e = errno;
		if (e == EINTR)
			continue;
		if (e == EAGAIN) {
			/* the server's backlog is full: try again shortly */
			if (deadline && now_ns() >= deadline)
				return err_set(err, errlen, -ETIMEDOUT,
					      "%s: server busy (timed out)", path);
			struct timespec ts = {.tv_nsec = 5000000};
			nanosleep(&ts, NULL);
			continue;
		}
		if (e == EINPROGRESS) {
			int r = wait_fd(fd, POLLOUT, deadline);
			socklen_t sl = sizeof(e);
			if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) == 0 && e == 0)
				return 0;
			if (r)
				e = -r;
		}
		if (e == ENOENT)
			return err_set(err, errlen, -e, "%s: no such socket (is the VM running?)",
				      path);
		if (e == ECONNREFUSED)
			return err_set(err, errlen, -e, "%s: nobody is listening (stale socket)",
				      path);
		if (e == ETIMEDOUT)
			return err_set(err, errlen, -e, "%s: connect timed out", path);
		return err_set(err, errlen, -e, "%s: connect: %s", path, strerror(e));
	}
}

/* Send all of @buf.  0; 1 if the server closed its side (its response
 * may already be there); -errno. */
static int send_all(int fd, const char *buf, size_t len, uint64_t deadline)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int r = wait_fd(fd, POLLOUT, deadline);
			if (r)
				return r;
			continue;
		}
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return 1;
		return n < 0 ? -errno : -EIO;
	}
	return 0;
}

static bool valid_path(const char *p)
{
	if (p[0] != '/')
		return false;
	for (; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return false;
	return true;
}

int http_client_request(const char *sock_path, const char *method, const char *path,
			const char *body, int timeout_ms, int *status, char **resp_body,
			size_t *resp_len, char *err, size_t errlen)
{
	size_t mlen = method ? strlen(method) : 0;
	bool method_ok = mlen > 0 && mlen <= 16;
	for (size_t i = 0; method_ok && i < mlen; i++)
		method_ok = tchar((unsigned char)method[i]);
	if (!method_ok || !path || !valid_path(path) || strlen(path) > 4000)
		return err_set(err, errlen, -EINVAL, "invalid HTTP method or path");
	if (!sock_path || !*sock_path ||
	    strlen(sock_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return err_set(err, errlen, -ENAMETOOLONG, "socket path is empty or too long");
	uint64_t deadline = timeout_ms > 0 ? now_ns() + (uint64_t)timeout_ms * 1000000ull : 0;
	bool is_head = !strcmp(method, "HEAD");
	bool want_length = body || !strcmp(method, "PUT") || !strcmp(method, "PATCH") ||
			   !strcmp(method, "POST");
	size_t blen = body ? strlen(body) : 0;

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		return err_set(err, errlen, -e, "socket: %s", strerror(e));
	}
	char *req = NULL, *buf = NULL;
	int r = do_connect(fd, sock_path, deadline, err, errlen);
	if (r)
		goto out;

	char head[4200];
	int hn;
	if (want_length)
		hn = snprintf(head, sizeof(head),
			      "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
			      "Connection: close\r\nContent-Type: application/json\r\n"
			      "Content-Length: %zu\r\n\r\n",
			      method, path, blen);
	else
		hn = snprintf(head, sizeof(head),
			      "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
			      "Connection: close\r\n\r\n",
			      method, path);
	if (hn < 0 || (size_t)hn >= sizeof(head)) {
		r = err_set(err, errlen, -EINVAL, "request too long");
		goto out;
	}
	req = malloc((size_t)hn + blen);
	if (!req) {
		r = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	memcpy(req, head, (size_t)hn);
	if (blen)
		memcpy(req + hn, body, blen);
	r = send_all(fd, req, (size_t)hn + blen, deadline);
	if (r < 0) {
		err_set(err, errlen, r, "%s: send: %s", sock_path,
		       r == -ETIMEDOUT ? "timed out" : strerror(-r));
		goto out;
	}

	/* the response: head, then Content-Length bytes or up to EOF */
	const size_t cap_max = HTTP_CLIENT_MAX_HEAD + HTTP_CLIENT_MAX_BODY + 1;
	size_t cap = 4096, have = 0, need = 0;
	int hlen = 0, interim = 0;
	bool until_eof = false;
	struct http_client_head h;
	buf = malloc(cap);
	if (!buf) {
		r = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		if (!hlen) {
			int pr = http_client_parse_head(buf, have, &h);
			if (pr < 0) {
				r = err_set(err, errlen, pr, "%s: %s", sock_path,
					   pr == -EMSGSIZE ? "response head too large"
							   : "malformed response");
				goto out;
			}
			if (pr > 0 && h.status < 200) {
				/* 100 Continue and friends: skip */
				if (++interim > MAX_INTERIM) {
					r = err_set(err, errlen, -EPROTO,
						   "%s: too many interim responses", sock_path);
					goto out;
				}
				memmove(buf, buf + pr, have - (size_t)pr);
				have -= (size_t)pr;
				continue;
			}
			if (pr > 0) {
				hlen = pr;
				if (is_head || h.status == 204 || h.status == 304) {
					need = (size_t)hlen;
				} else if (h.chunked) {
					r = err_set(err, errlen, -EPROTO,
						   "%s: chunked responses are not supported",
						   sock_path);
					goto out;
				} else if (h.has_length) {
					if (h.content_length > HTTP_CLIENT_MAX_BODY) {
						unsigned long long cl = h.content_length;
						r = err_set(err, errlen, -EMSGSIZE,
							   "%s: response body too large "
							   "(%llu bytes)",
							   sock_path, cl);
						goto out;
					}
					need = (size_t)hlen + (size_t)h.content_length;
				} else {
					until_eof = true;
				}
			}
		}
		if (hlen && !until_eof && have >= need)
			break;
		if (until_eof && have - (size_t)hlen > HTTP_CLIENT_MAX_BODY) {
			r = err_set(err, errlen, -EMSGSIZE, "%s: response body too large",
				   sock_path);
			goto out;
		}
		if (have == cap) {
			size_t ncap = cap * 2 > cap_max ? cap_max : cap * 2;
			char *nb = ncap > cap ? realloc(buf, ncap) : NULL;
			if (!nb) {
				r = err_set(err, errlen, ncap > cap ? -ENOMEM : -EMSGSIZE,
					   "%s: response too large", sock_path);
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		ssize_t n = recv(fd, buf + have, cap - have, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			r = wait_fd(fd, POLLIN, deadline);
			if (r) {
				err_set(err, errlen, r, "%s: %s", sock_path,
				       r == -ETIMEDOUT ? "no response in time" : strerror(-r));
				goto out;
			}
			continue;
		}
		if (n < 0 && errno == ECONNRESET && have)
			n = 0; /* the server closed with our request unread: what we have counts */
		if (n < 0) {
			int e = errno;
			r = err_set(err, errlen, -e, "%s: recv: %s", sock_path, strerror(e));
			goto out;
		}
		if (n == 0) {
			if (hlen && until_eof)
				break;
			r = err_set(err, errlen, -EPROTO, "%s: connection closed %s", sock_path,
				   have ? "in the middle of the response" : "without a response");
			goto out;
		}
		have += (size_t)n;
	}
	size_t body_len = until_eof ? have - (size_t)hlen : need - (size_t)hlen;
	if (resp_body) {
		char *b = malloc(body_len + 1);
		if (!b) {
			r = err_set(err, errlen, -ENOMEM, "out of memory");
			goto out;
		}
		memcpy(b, buf + hlen, body_len);
		b[body_len] = 0;
		*resp_body = b;
	}
	if (resp_len)
		*resp_len = body_len;
	*status = h.status;
	r = 0;
out:
	free(req);
	free(buf);
	close(fd);
	return r;
}
