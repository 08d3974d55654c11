/* SPDX-License-Identifier: MIT */
/*
 * http.c - HTTP/1.1 request parser and Unix-socket server; see http.h.
 */
#include "http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "../event/loop.h"
#include "../util/log.h"
#include "../util/str.h"

/* ==== limits ============================================================== */

void http_limits_fill(struct http_limits *out, const struct http_limits *in)
{
	static const struct http_limits zero;
	if (!in)
		in = &zero;
	*out = *in;
#define DEF(f, v)            \
	if (!out->f)         \
		out->f = (v)
	DEF(max_request_line, HTTP_DEFAULT_MAX_REQUEST_LINE);
	DEF(max_headers, HTTP_DEFAULT_MAX_HEADERS);
	DEF(max_header_bytes, HTTP_DEFAULT_MAX_HEADER_BYTES);
	DEF(max_body, HTTP_DEFAULT_MAX_BODY);
	DEF(max_response, HTTP_DEFAULT_MAX_RESPONSE);
	DEF(max_conns, HTTP_DEFAULT_MAX_CONNS);
	DEF(request_timeout_ms, HTTP_DEFAULT_REQUEST_TIMEOUT_MS);
	DEF(idle_timeout_ms, HTTP_DEFAULT_IDLE_TIMEOUT_MS);
	DEF(write_timeout_ms, HTTP_DEFAULT_WRITE_TIMEOUT_MS);
#undef DEF
}

/* ==== parser ============================================================== */

enum { S_LINE, S_HEADERS, S_BODY, S_DONE, S_ERROR };

static const char *const method_names[] = {
	[HTTP_GET] = "GET",	  [HTTP_PUT] = "PUT",	    [HTTP_PATCH] = "PATCH",
	[HTTP_POST] = "POST",	  [HTTP_DELETE] = "DELETE", [HTTP_HEAD] = "HEAD",
};

const char *http_method_name(enum http_method m)
{
	if ((unsigned)m < sizeof(method_names) / sizeof(method_names[0]))
		return method_names[m];
	return "?";
}

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_tchar((unsigned char)s[i]))
			return false;
	return true;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int fail(struct http_parser *p, int status, const char *msg)
{
	p->state = S_ERROR;
	p->status = status;
	p->error = msg;
	p->continue_pending = false;
	return HTTP_PARSE_ERROR;
}

void http_parser_init(struct http_parser *p, const struct http_limits *lim)
{
	memset(p, 0, sizeof(*p));
	http_limits_fill(&p->lim, lim);
	p->state = S_LINE;
}

static void free_request(struct http_parser *p)
{
	free(p->head);
	free(p->hdrs);
	free(p->body);
	p->head = NULL;
	p->hdrs = NULL;
	p->body = NULL;
}

void http_parser_free(struct http_parser *p)
{
	free_request(p);
	p->state = S_ERROR;
	p->status = 500;
	p->error = "parser freed";
}

void http_parser_next(struct http_parser *p)
{
	if (p->state != S_DONE)
		return;
	bool prev = p->prev_unsized;
	struct http_limits lim = p->lim;
	free_request(p);
	memset(p, 0, sizeof(*p));
	p->lim = lim;
	p->prev_unsized = prev;
	p->state = S_LINE;
}

bool http_parser_idle(const struct http_parser *p)
{
	return !p->started;
}

const char *http_request_header(const struct http_request *r, const char *name)
{
	for (unsigned i = 0; i < r->nheaders; i++)
		if (!strcasecmp(r->headers[i].name, name))
			return r->headers[i].value;
	return NULL;
}

/* Percent-decode the NUL-terminated path @s in place; checks the result. */
static int decode_path(struct http_parser *p, char *s, size_t *len)
{
	char *out = s;
	for (const char *in = s; *in;) {
		if (*in != '%') {
			*out++ = *in++;
			continue;
		}
		int hi = hexval((unsigned char)in[1]);
		int lo = hi < 0 ? -1 : hexval((unsigned char)in[2]);
		if (lo < 0)
			return fail(p, 400, "malformed percent-encoding in the path");
		unsigned char v = (unsigned char)(hi * 16 + lo);
		if (v < 0x20 || v == 0x7f)
			return fail(p, 400, "control byte in the path");
		if (v == '/')
			return fail(p, 400, "encoded '/' in the path");
		*out++ = (char)v;
		in += 3;
	}
	*out = 0;
	*len = (size_t)(out - s);
	/* no "." or ".." segments */
	for (const char *seg = s; *seg;) {
		seg++; /* past '/' */
		const char *end = strchr(seg, '/');
		size_t n = end ? (size_t)(end - seg) : strlen(seg);
		if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return fail(p, 400, "'.' or '..' segment in the path");
		seg += n;
	}
	return 0;
}

static int parse_target(struct http_parser *p, char *t)
{
	static const char root[] = "/";
	if (strchr(t, '#'))
		return fail(p, 400, "fragment in the request target");
	char *path = NULL, *query = NULL;
	if (t[0] == '/') {
		path = t;
	} else if (!strncasecmp(t, "http://", 7) || !strncasecmp(t, "https://", 8)) {
		char *auth = strstr(t, "//") + 2;
		char *end = auth + strcspn(auth, "/?");
		if (*end == '/') {
			path = end;
		} else if (*end == '?') {
			query = end + 1;
		}
	} else {
		return fail(p, 400, "request target is not a path");
	}
	if (path) {
		char *q = strchr(path, '?');
		if (q) {
			*q = 0;
			query = q + 1;
		}
		size_t len;
		if (decode_path(p, path, &len))
			return HTTP_PARSE_ERROR;
		p->req.path = path;
		p->req.path_len = len;
	} else {
		p->req.path = root;
		p->req.path_len = 1;
	}
	p->req.query = query ? query : "";
	return 0;
}

/* The request line @s[0..len), NUL-terminated. */
static int parse_request_line(struct http_parser *p, char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x21 && c != ' ') || c >= 0x7f)
			return fail(p, 400, "invalid byte in the request line");
	}
	char *sp1 = memchr(s, ' ', len);
	char *sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - s)) : NULL;
	if (!sp2 || strchr(sp2 + 1, ' ') || sp1 == s || sp2 == sp1 + 1 || !sp2[1])
		return fail(p, 400, "malformed request line");
	*sp1 = 0;
	*sp2 = 0;
	const char *method = s, *ver = sp2 + 1;
	if (!is_token(method, (size_t)(sp1 - s)))
		return fail(p, 400, "malformed method");
	if (strlen(ver) != 8 || strncmp(ver, "HTTP/", 5) || ver[5] < '0' || ver[5] > '9' ||
	    ver[6] != '.' || ver[7] < '0' || ver[7] > '9')
		return fail(p, 400, "malformed HTTP version");
	if (ver[5] != '1' || (ver[7] != '0' && ver[7] != '1'))
		return fail(p, 505, "HTTP version not supported (HTTP/1.0 and HTTP/1.1 are)");
	p->req.version_minor = ver[7] - '0';
	int m = -1;
	for (unsigned i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++)
		if (!strcmp(method, method_names[i]))
			m = (int)i;
	if (m < 0)
		return fail(p, 405, "method not allowed");
	p->req.method = (enum http_method)m;
	return parse_target(p, sp1 + 1);
}

static const char *trim(char *s, char **end)
{
	while (*s == ' ' || *s == '\t')
		s++;
	char *e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*end = e;
	return s;
}

static int parse_content_length(struct http_parser *p, const char *v)
{
	/* a comma-separated list of identical values counts as one */
	const char *s = v;
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s < '0' || *s > '9')
			return fail(p, 400, "invalid Content-Length");
		uint64_t n = 0;
		while (*s >= '0' && *s <= '9') {
			unsigned d = (unsigned)(*s - '0');
			if (n > (UINT64_MAX - d) / 10)
				return fail(p, 400, "Content-Length overflows");
			n = n * 10 + d;
			s++;
		}
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s && *s != ',')
			return fail(p, 400, "invalid Content-Length");
		if (p->seen_length && n != p->content_length)
			return fail(p, 400, "conflicting Content-Length values");
		p->seen_length = true;
		p->content_length = n;
		if (!*s)
			return 0;
		s++;
	}
}

static void parse_connection(struct http_parser *p, const char *v)
{
	while (*v) {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		size_t n = strcspn(v, " \t,");
		if (n == 5 && !strncasecmp(v, "close", 5))
			p->close_token = true;
		else if (n == 10 && !strncasecmp(v, "keep-alive", 10))
			p->keep_alive_token = true;
		v += n;
	}
}

/* One header line @s[0..len) (without line end, NUL at s[len]). */
static int parse_header(struct http_parser *p, char *s, size_t len)
{
	if (s[0] == ' ' || s[0] == '\t')
		return fail(p, 400, "folded header line");
	if (p->req.nheaders >= p->lim.max_headers)
		return fail(p, 431, "too many header fields");
	char *colon = memchr(s, ':', len);
	if (!colon || !is_token(s, (size_t)(colon - s)))
		return fail(p, 400, "malformed header field");
	*colon = 0;
	char *vend;
	const char *v = trim(colon + 1, &vend);
	for (const char *c = v; c < vend; c++)
		if (*c != '\t' && ((unsigned char)*c < 0x20 || *c == 0x7f))
			return fail(p, 400, "control byte in a header value");
	*vend = 0;
	if (!p->hdrs) {
		p->hdrs = calloc(p->lim.max_headers, sizeof(*p->hdrs));
		if (!p->hdrs)
			return fail(p, 500, "out of memory");
	}
	p->hdrs[p->req.nheaders++] = (struct http_header){.name = s, .value = v};
	if (!strcasecmp(s, "content-length"))
		return parse_content_length(p, v);
	if (!strcasecmp(s, "transfer-encoding"))
		p->seen_te = true;
	else if (!strcasecmp(s, "connection"))
		parse_connection(p, v);
	else if (!strcasecmp(s, "expect")) {
		if (strcasecmp(v, "100-continue"))
			return fail(p, 417, "unsupported expectation");
		p->req.expect_continue = true;
	}
	return 0;
}

static int complete(struct http_parser *p)
{
	struct http_request *r = &p->req;
	r->body = p->body ? p->body : "";
	r->headers = p->hdrs;
	r->has_length = p->seen_length;
	p->continue_pending = false;
	bool sized_method =
		r->method == HTTP_PUT || r->method == HTTP_PATCH || r->method == HTTP_POST;
	p->prev_unsized = !p->seen_length && sized_method;
	p->state = S_DONE;
	return HTTP_PARSE_DONE;
}

/* The empty line after the headers. */
static int finish_head(struct http_parser *p)
{
	struct http_request *r = &p->req;
	if (p->seen_te)
		/* a client error (400), not 501: the server did not fail, the
		 * request is one this API does not accept */
		return fail(p, 400, "Transfer-Encoding is not supported (send Content-Length)");
	if (p->seen_length && p->content_length > p->lim.max_body)
		return fail(p, 413, "request body too large");
	if (r->version_minor == 1)
		r->keep_alive = !p->close_token;
	else
		r->keep_alive = p->keep_alive_token && !p->close_token;
	r->body_len = p->seen_length ? (size_t)p->content_length : 0;
	if (r->body_len == 0)
		return complete(p);
	p->body = malloc(r->body_len + 1);
	if (!p->body)
		return fail(p, 500, "out of memory");
	p->body[r->body_len] = 0;
	p->body_got = 0;
	p->continue_pending = r->expect_continue && r->version_minor == 1;
	p->state = S_BODY;
	return HTTP_PARSE_MORE;
}

/* A complete line of the head: head[line_start .. head_len), @raw bytes
 * without the LF. */
static int end_of_line(struct http_parser *p)
{
	char *s = p->head + p->line_start;
	size_t raw = p->head_len - p->line_start;
	size_t len = raw;
	if (len && s[len - 1] == '\r')
		len--;
	s[len] = 0;
	if (p->state == S_LINE) {
		if (len == 0) {
			/* an empty line before the request line */
			p->skipped += raw + 1;
			p->head_len = p->line_start = 0;
			if (p->skipped > p->lim.max_request_line)
				return fail(p, p->prev_unsized ? 411 : 400,
					    p->prev_unsized ? "Content-Length required"
							    : "too many empty lines");
			return HTTP_PARSE_MORE;
		}
		if (len > p->lim.max_request_line)
			return fail(p, p->prev_unsized ? 411 : 414,
				    p->prev_unsized ? "Content-Length required"
						    : "request line too long");
		if (parse_request_line(p, s, len)) {
			if (p->prev_unsized)
				return fail(p, 411, "Content-Length required");
			return HTTP_PARSE_ERROR;
		}
		p->prev_unsized = false;
		p->head_len = p->line_start + raw + 1;
		p->line_start = p->head_len;
		p->state = S_HEADERS;
		return HTTP_PARSE_MORE;
	}
	if (len == 0)
		return finish_head(p);
	if (parse_header(p, s, len))
		return HTTP_PARSE_ERROR;
	p->head_len = p->line_start + raw + 1;
	p->line_start = p->head_len;
	return HTTP_PARSE_MORE;
}

int http_parser_feed(struct http_parser *p, const void *data, size_t len, size_t *used)
{
	const char *d = data;
	size_t i = 0;
	int r = HTTP_PARSE_MORE;
	*used = 0;
	if (p->state == S_DONE)
		return HTTP_PARSE_DONE;
	if (p->state == S_ERROR)
		return HTTP_PARSE_ERROR;
	while (i < len && r == HTTP_PARSE_MORE) {
		if (p->state == S_BODY) {
			size_t n = p->req.body_len - p->body_got;
			if (n > len - i)
				n = len - i;
			memcpy(p->body + p->body_got, d + i, n);
			p->body_got += n;
			i += n;
			if (p->body_got == p->req.body_len)
				r = complete(p);
			break;
		}
		if (!p->head) {
			p->head = malloc(p->lim.max_request_line + 2 + p->lim.max_header_bytes);
			if (!p->head) {
				r = fail(p, 500, "out of memory");
				break;
			}
		}
		p->started = true;
		/* window: bytes this line may still take before the limit */
		size_t window, limit_status;
		const char *limit_msg;
		if (p->state == S_LINE) {
			/* raw line (CR included, LF not) up to max_request_line + 1 */
			window = p->lim.max_request_line + 1 - (p->head_len - p->line_start);
			limit_status = p->prev_unsized ? 411 : 414;
			limit_msg = p->prev_unsized ? "Content-Length required"
						    : "request line too long";
		} else {
			window = p->lim.max_header_bytes - p->header_bytes;
			limit_status = 431;
			limit_msg = "header section too large";
		}
		size_t n = len - i;
		/* in S_LINE the LF itself may follow a full window; in headers the
		 * LF counts against the window */
		size_t scan = p->state == S_LINE ? window + 1 : window;
		const char *lf = memchr(d + i, '\n', n < scan ? n : scan);
		if (!lf) {
			if (n >= scan) {
				i += p->state == S_LINE ? window : window;
				r = fail(p, (int)limit_status, limit_msg);
				break;
			}
			memcpy(p->head + p->head_len, d + i, n);
			p->head_len += n;
			if (p->state == S_HEADERS)
				p->header_bytes += n;
			i += n;
			break;
		}
		size_t k = (size_t)(lf - (d + i));
		memcpy(p->head + p->head_len, d + i, k);
		p->head_len += k;
		if (p->state == S_HEADERS)
			p->header_bytes += k + 1;
		i += k + 1;
		r = end_of_line(p);
	}
	*used = i;
	return r;
}

/* ==== responses ============================================================ */

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

static int reserve(struct http_response *r, size_t extra)
{
	if (r->body_err)
		return r->body_err;
	if (extra > r->body_max - r->body_len)
		return r->body_err = -EMSGSIZE;
	size_t need = r->body_len + extra + 1;
	if (need <= r->body_cap)
		return 0;
	size_t cap = r->body_cap ? r->body_cap : 256;
	while (cap < need)
		cap *= 2;
	if (cap > r->body_max + 1)
		cap = r->body_max + 1;
	char *b = realloc(r->body, cap);
	if (!b)
		return r->body_err = -ENOMEM;
	r->body = b;
	r->body_cap = cap;
	return 0;
}

int http_response_append(struct http_response *r, const void *data, size_t len)
{
	int e = reserve(r, len);
	if (e)
		return e;
	if (len)
		memcpy(r->body + r->body_len, data, len);
	r->body_len += len;
	r->body[r->body_len] = 0;
	return 0;
}

int http_response_printf(struct http_response *r, const char *fmt, ...)
{
	if (r->body_err)
		return r->body_err;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return r->body_err = -EINVAL;
	int e = reserve(r, (size_t)n);
	if (e)
		return e;
	va_start(ap, fmt);
	vsnprintf(r->body + r->body_len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	r->body_len += (size_t)n;
	return 0;
}

/* The bytes of a whole response in a new buffer; NULL if out of memory.
 * @extra: additional header lines (each ending in CRLF) or NULL. */
static char *format_response(int status, const char *ctype, const char *extra, const char *body,
			     size_t body_len, bool send_body, bool close, bool v10_keepalive,
			     size_t *out_len)
{
	char head[512];
	bool bodyless = status == 204 || status == 304 || status < 200;
	int n;
	if (bodyless) {
		body_len = 0;
		n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nServer: visor\r\n%s%s\r\n",
			     status, http_reason(status), extra ? extra : "",
			     close ? "Connection: close\r\n"
				   : (v10_keepalive ? "Connection: keep-alive\r\n" : ""));
	} else {
		char ct[256] = "";
		if (body_len)
			snprintf(ct, sizeof(ct), "Content-Type: %s\r\n", ctype);
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 %d %s\r\nServer: visor\r\n%s%sContent-Length: %zu\r\n%s\r\n",
			     status, http_reason(status), ct, extra ? extra : "", body_len,
			     close ? "Connection: close\r\n"
				   : (v10_keepalive ? "Connection: keep-alive\r\n" : ""));
	}
	if (n < 0 || (size_t)n >= sizeof(head))
		return NULL;
	size_t blen = send_body ? body_len : 0;
	char *out = malloc((size_t)n + blen);
	if (!out)
		return NULL;
	memcpy(out, head, (size_t)n);
	if (blen)
		memcpy(out + n, body, blen);
	*out_len = (size_t)n + blen;
	return out;
}

/* An error response of the transport: {"fault_message": msg}, as
 * Firecracker's API reports errors. */
static char *format_error(int status, const char *msg, bool close, size_t *out_len)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "{\"fault_message\":\"%s\"}", msg);
	if (n < 0 || (size_t)n >= sizeof(body))
		n = snprintf(body, sizeof(body), "{\"fault_message\":\"error\"}");
	const char *extra = status == 405 ? "Allow: GET, HEAD, PUT, PATCH, POST, DELETE\r\n" : NULL;
	return format_response(status, "application/json", extra, body, (size_t)n, true, close,
			       false, out_len);
}

/* ==== server =============================================================== */

#define HTTP_READ_BUF 8192
#define ACCEPT_BURST 16
#define READ_ROUNDS 64
#define ACCEPT_PAUSE_NS 100000000ull

struct http_conn {
	struct http_server *srv;
	int fd; /* -1: free slot */
	uint32_t mask;
	bool closing; /* no more requests: close once the output is sent */
	struct http_parser p;
	size_t in_off, in_len;
	char *out;
	size_t out_off, out_len;
	uint64_t t_idle, t_req, t_out;
	/* HTTP_READ_BUF bytes, allocated when the connection is accepted (the
	 * slot table itself stays small: an idle server touches a few KiB) */
	char *in;
	void (*after)(void *ctx); /* the last response's after-close hook */
	void *after_ctx;
};

enum { K_IDLE, K_REQ, K_OUT };

#define STAT_INC(s, f) __atomic_fetch_add(&(s)->stats.f, 1, __ATOMIC_RELAXED)

static uint64_t ms_ns(unsigned ms)
{
	return (uint64_t)ms * 1000000ull;
}

static bool conn_is_idle(const struct http_conn *c)
{
	return c->out_off == c->out_len && c->in_off == c->in_len && http_parser_idle(&c->p) &&
	       !c->closing;
}

static uint64_t conn_deadline(const struct http_conn *c, int *kind)
{
	const struct http_limits *l = &c->srv->lim;
	if (c->out_off < c->out_len) {
		*kind = K_OUT;
		return c->t_out + ms_ns(l->write_timeout_ms);
	}
	if (!http_parser_idle(&c->p) || c->in_off < c->in_len) {
		*kind = K_REQ;
		return c->t_req + ms_ns(l->request_timeout_ms);
	}
	*kind = K_IDLE;
	return c->t_idle + ms_ns(l->idle_timeout_ms);
}

static void update_timer(struct http_server *s)
{
	uint64_t next = s->accept_resume_ns;
	for (unsigned i = 0; i < s->lim.max_conns; i++) {
		struct http_conn *c = &s->conns[i];
		if (c->fd < 0)
			continue;
		int kind;
		uint64_t d = conn_deadline(c, &kind);
		if (!next || d < next)
			next = d;
	}
	if (next == s->timer_armed_ns)
		return;
	struct itimerspec its = {0};
	its.it_value.tv_sec = (time_t)(next / 1000000000ull);
	its.it_value.tv_nsec = (long)(next % 1000000000ull);
	if (timerfd_settime(s->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		s->timer_armed_ns = next;
}

static void conn_close(struct http_conn *c)
{
	struct http_server *s = c->srv;
	if (c->fd < 0)
		return;
	loop_del(s->loop, c->fd);
	close(c->fd);
	c->fd = -1;
	if (c->after) {
		void (*after)(void *) = c->after;
		c->after = NULL;
		after(c->after_ctx);
	}
	http_parser_free(&c->p);
	free(c->out);
	c->out = NULL;
	c->out_off = c->out_len = 0;
	free(c->in);
	c->in = NULL;
	__atomic_store_n(&s->nconns, s->nconns - 1, __ATOMIC_RELAXED);
}

static void conn_set_mask(struct http_conn *c, uint32_t mask)
{
	if (c->mask == mask)
		return;
	if (loop_mod(c->srv->loop, c->fd, mask) == 0)
		c->mask = mask;
}

/* Queue @buf (taken over) for sending. */
static void conn_queue(struct http_conn *c, char *buf, size_t len)
{
	if (c->out_off == c->out_len) {
		free(c->out);
		c->out = buf;
		c->out_off = 0;
		c->out_len = len;
		c->t_out = now_ns();
		return;
	}
	/* not reached by the server's flow (it queues only when drained) */
	size_t pending = c->out_len - c->out_off;
	char *n = malloc(pending + len);
	if (!n) {
		free(buf);
		c->closing = true;
		return;
	}
	memcpy(n, c->out + c->out_off, pending);
	memcpy(n + pending, buf, len);
	free(buf);
	free(c->out);
	c->out = n;
	c->out_off = 0;
	c->out_len = pending + len;
}

/* 0 all sent, 1 some left (socket full), -1 the connection is gone. */
static int conn_flush(struct http_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (n <= 0)
			return -1;
		c->out_off += (size_t)n;
	}
	free(c->out);
	c->out = NULL;
	c->out_off = c->out_len = 0;
	return 0;
}

static void conn_error(struct http_conn *c, int status, const char *msg)
{
	struct http_server *s = c->srv;
	size_t len;
	char *buf = format_error(status, msg, true, &len);
	STAT_INC(s, errors);
	log_debug("api: answering %d to a client: %s", status, msg);
	c->closing = true;
	if (buf)
		conn_queue(c, buf, len);
}

static bool valid_content_type(const char *t)
{
	size_t n = 0;
	for (; t[n]; n++)
		if ((unsigned char)t[n] < 0x20 || t[n] == 0x7f)
			return false;
	return n > 0 && n < 200;
}

static void conn_respond(struct http_conn *c)
{
	struct http_server *s = c->srv;
	const struct http_request *req = &c->p.req;
	struct http_response resp = {.status = 200, .body_max = s->lim.max_response};
	s->handler(s->ctx, req, &resp);
	STAT_INC(s, requests);
	const char *ctype = resp.content_type ? resp.content_type : "application/json";
	bool close = !req->keep_alive || resp.close || resp.after;
	if (resp.after) {
		c->after = resp.after;
		c->after_ctx = resp.after_ctx;
	}
	if (resp.body_err || resp.status < 200 || resp.status > 599 || !valid_content_type(ctype)) {
		static struct ratelimit rl;
		log_ratelimited(&rl, LOG_WARN,
				"api: the handler of %s %s gave an invalid response "
				"(status %d, %s)",
				http_method_name(req->method), req->path, resp.status,
				resp.body_err ? strerror(-resp.body_err)
					      : "bad status or content type");
		free(resp.body);
		size_t len;
		char *buf = format_error(500, "internal error: invalid response", close, &len);
		STAT_INC(s, errors);
		if (buf)
			conn_queue(c, buf, len);
		else
			close = true;
		c->closing = close;
		return;
	}
	size_t len;
	char *buf = format_response(resp.status, ctype, NULL, resp.body, resp.body_len,
				    req->method != HTTP_HEAD, close,
				    req->version_minor == 0 && !close, &len);
	free(resp.body);
	if (buf)
		conn_queue(c, buf, len);
	else
		close = true;
	c->closing = close;
}

/* Read, parse, answer and send until the socket has nothing more for us
 * (or the client has to read first). */
static void conn_run(struct http_conn *c)
{
	int reads = 0;
	for (;;) {
		if (c->out_off < c->out_len) {
			int r = conn_flush(c);
			if (r < 0) {
				conn_close(c);
				return;
			}
			if (r > 0) {
				conn_set_mask(c, EPOLLOUT);
				return;
			}
			c->t_idle = now_ns();
		}
		if (c->closing) {
			conn_close(c);
			return;
		}
		if (c->in_off == c->in_len) {
			if (reads++ == READ_ROUNDS) {
				/* let others run; epoll reports the rest */
				conn_set_mask(c, EPOLLIN);
				return;
			}
			ssize_t n = recv(c->fd, c->in, HTTP_READ_BUF, MSG_DONTWAIT);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				conn_set_mask(c, EPOLLIN);
				return;
			}
			if (n <= 0) {
				/* gone (mid-request or between requests): free it all */
				conn_close(c);
				return;
			}
			c->in_off = 0;
			c->in_len = (size_t)n;
		}
		if (http_parser_idle(&c->p))
			c->t_req = now_ns();
		size_t used;
		int r = http_parser_feed(&c->p, c->in + c->in_off, c->in_len - c->in_off, &used);
		c->in_off += used;
		if (r == HTTP_PARSE_MORE) {
			if (c->p.continue_pending) {
				static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
				c->p.continue_pending = false;
				char *b = malloc(sizeof(cont) - 1);
				if (b) {
					memcpy(b, cont, sizeof(cont) - 1);
					conn_queue(c, b, sizeof(cont) - 1);
				}
			}
		} else if (r == HTTP_PARSE_DONE) {
			conn_respond(c);
			http_parser_next(&c->p);
			c->t_idle = now_ns();
		} else {
			conn_error(c, c->p.status, c->p.error);
		}
	}
}

static void on_conn(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct http_conn *c = ctx;
	if (c->fd != fd)
		return; /* a stale event for a closed connection */
	struct http_server *s = c->srv;
	conn_run(c);
	update_timer(s);
}

/* Best effort: a short response on a socket we are about to close. */
static void send_and_forget(int fd, int status, const char *msg)
{
	size_t len;
	char *buf = format_error(status, msg, true, &len);
	if (buf) {
		ssize_t w = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)w;
		free(buf);
	}
}

static struct http_conn *evict_idle(struct http_server *s)
{
	struct http_conn *oldest = NULL;
	for (unsigned i = 0; i < s->lim.max_conns; i++) {
		struct http_conn *c = &s->conns[i];
		if (c->fd >= 0 && conn_is_idle(c) && (!oldest || c->t_idle < oldest->t_idle))
			oldest = c;
	}
	if (oldest) {
		conn_close(oldest);
		STAT_INC(s, conns_evicted);
	}
	return oldest;
}

static void on_accept(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct http_server *s = ctx;
	static struct ratelimit rl;
	for (int i = 0; i < ACCEPT_BURST; i++) {
		int cfd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			int e = errno;
			if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
				/* the backlog stays readable: pause instead of spinning */
				log_ratelimited(&rl, LOG_WARN, "api: accept: %s (pausing 100 ms)",
						strerror(e));
				loop_mod(s->loop, s->listen_fd, 0);
				s->accept_resume_ns = now_ns() + ACCEPT_PAUSE_NS;
			}
			break;
		}
		struct http_conn *c = NULL;
		for (unsigned k = 0; k < s->lim.max_conns && !c; k++)
			if (s->conns[k].fd < 0)
				c = &s->conns[k];
		if (!c)
			c = evict_idle(s);
		char *in = c ? malloc(HTTP_READ_BUF) : NULL;
		if (c && !in)
			c = NULL;
		if (c) {
			memset(c, 0, sizeof(*c));
			c->in = in;
			c->srv = s;
			c->fd = cfd;
			c->mask = EPOLLIN;
			http_parser_init(&c->p, &s->lim);
			c->t_idle = now_ns();
			if (loop_add(s->loop, cfd, EPOLLIN, on_conn, c) == 0) {
				__atomic_store_n(&s->nconns, s->nconns + 1, __ATOMIC_RELAXED);
				STAT_INC(s, conns_accepted);
				continue;
			}
			c->fd = -1;
			free(c->in);
			c->in = NULL;
		}
		send_and_forget(cfd, 503, "too many connections");
		close(cfd);
		STAT_INC(s, conns_refused);
	}
	update_timer(s);
}

static void on_timer(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct http_server *s = ctx;
	uint64_t ticks;
	ssize_t r = read(s->timer_fd, &ticks, sizeof(ticks));
	(void)r;
	s->timer_armed_ns = 0;
	uint64_t now = now_ns();
	for (unsigned i = 0; i < s->lim.max_conns; i++) {
		struct http_conn *c = &s->conns[i];
		if (c->fd < 0)
			continue;
		int kind;
		if (conn_deadline(c, &kind) > now)
			continue;
		if (kind == K_REQ) {
			send_and_forget(c->fd, 408, "request not complete in time");
			STAT_INC(s, errors);
		}
		log_debug("api: closing a connection: %s",
			  kind == K_IDLE ? "idle" : kind == K_REQ ? "request timeout"
								  : "client does not read");
		STAT_INC(s, timeouts);
		conn_close(c);
	}
	if (s->accept_resume_ns && now >= s->accept_resume_ns) {
		s->accept_resume_ns = 0;
		loop_mod(s->loop, s->listen_fd, EPOLLIN);
	}
	update_timer(s);
}


static void make_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, strlen(path));
}

/* What is at @path before we bind: 0 nothing (or a stale socket, removed
 * now), -errno otherwise. */
static int clear_path(const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		int e = errno;
		return err_set(err, errlen, -e, "%s: %s", path, strerror(e));
	}
	if (!S_ISSOCK(st.st_mode))
		return err_set(err, errlen, -EEXIST, "%s exists and is not a socket (not replaced)",
			      path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		return err_set(err, errlen, -e, "socket: %s", strerror(e));
	}
	struct sockaddr_un sa;
	make_addr(&sa, path);
	int r;
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	int e = r < 0 ? errno : 0;
	close(fd);
	if (r == 0 || e == EAGAIN || e == EINPROGRESS)
		return err_set(err, errlen, -EADDRINUSE, "another process is serving %s", path);
	if (e == ENOENT)
		return 0; /* gone meanwhile */
	if (e != ECONNREFUSED)
		return err_set(err, errlen, -e, "%s: cannot check the existing socket: %s", path,
			      strerror(e));
	/* stale: nobody listens any more */
	if (unlink(path) < 0 && errno != ENOENT) {
		e = errno;
		return err_set(err, errlen, -e, "%s: cannot remove the stale socket: %s", path,
			      strerror(e));
	}
	log_debug("api: replaced the stale socket %s", path);
	return 0;
}

int http_server_init(struct http_server *s, const char *path, struct loop *loop,
		     const struct http_limits *lim, http_handler h, void *ctx, char *err,
		     size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->listen_fd = s->timer_fd = -1;
	s->loop = loop;
	s->handler = h;
	s->ctx = ctx;
	http_limits_fill(&s->lim, lim);
	struct sockaddr_un sa;
	size_t plen = path ? strlen(path) : 0;
	if (plen == 0 || plen >= sizeof(sa.sun_path) || plen >= sizeof(s->path))
		return err_set(err, errlen, -ENAMETOOLONG,
			      "API socket path is empty or longer than %zu bytes",
			      sizeof(sa.sun_path) - 1);
	if (s->lim.max_conns > HTTP_MAX_CONNS)
		return err_set(err, errlen, -EINVAL, "at most %d API connections", HTTP_MAX_CONNS);
	memcpy(s->path, path, plen + 1);
	s->conns = calloc(s->lim.max_conns, sizeof(*s->conns));
	if (!s->conns)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < s->lim.max_conns; i++)
		s->conns[i].fd = -1;
	int r;
	s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->timer_fd < 0) {
		r = -errno;
		err_set(err, errlen, r, "timerfd: %s", strerror(-r));
		goto fail;
	}
	r = clear_path(path, err, errlen);
	if (r)
		goto fail;
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0) {
		r = -errno;
		err_set(err, errlen, r, "socket: %s", strerror(-r));
		goto fail;
	}
	make_addr(&sa, path);
	/* owner-only from the start: no window in which others may connect */
	mode_t old = umask(0177);
	r = bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	umask(old);
	if (r) {
		err_set(err, errlen, r, "%s: bind: %s", path, strerror(-r));
		goto fail;
	}
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
		s->own_file = true;
		if (st.st_mode & 077)
			chmod(path, 0600); /* another thread changed the umask meanwhile */
	}
	if (listen(s->listen_fd, 64) < 0) {
		r = -errno;
		err_set(err, errlen, r, "%s: listen: %s", path, strerror(-r));
		goto fail;
	}
	r = loop_add(loop, s->listen_fd, EPOLLIN, on_accept, s);
	if (r == 0) {
		r = loop_add(loop, s->timer_fd, EPOLLIN, on_timer, s);
		if (r)
			loop_del(loop, s->listen_fd);
	}
	if (r) {
		err_set(err, errlen, r, "cannot watch the API socket: %s", strerror(-r));
		goto fail;
	}
	return 0;
fail:
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->timer_fd >= 0)
		close(s->timer_fd);
	s->listen_fd = s->timer_fd = -1;
	http_server_destroy(s);
	return r;
}

void http_server_destroy(struct http_server *s)
{
	if (s->conns) {
		for (unsigned i = 0; i < s->lim.max_conns; i++)
			if (s->conns[i].fd >= 0)
				conn_close(&s->conns[i]);
		free(s->conns);
		s->conns = NULL;
	}
	if (s->listen_fd >= 0) {
		loop_del(s->loop, s->listen_fd);
		close(s->listen_fd);
		s->listen_fd = -1;
	}
	if (s->timer_fd >= 0) {
		loop_del(s->loop, s->timer_fd);
		close(s->timer_fd);
		s->timer_fd = -1;
	}
	if (s->own_file) {
		struct stat st;
		if (lstat(s->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == s->dev &&
		    st.st_ino == s->ino)
			unlink(s->path);
		s->own_file = false;
	}
}

void http_server_stats(const struct http_server *s, struct http_stats *out)
{
	out->requests = __atomic_load_n(&s->stats.requests, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&s->stats.errors, __ATOMIC_RELAXED);
	out->conns_accepted = __atomic_load_n(&s->stats.conns_accepted, __ATOMIC_RELAXED);
	out->conns_refused = __atomic_load_n(&s->stats.conns_refused, __ATOMIC_RELAXED);
	out->conns_evicted = __atomic_load_n(&s->stats.conns_evicted, __ATOMIC_RELAXED);
	out->timeouts = __atomic_load_n(&s->stats.timeouts, __ATOMIC_RELAXED);
}

unsigned http_server_conns(const struct http_server *s)
{
	return __atomic_load_n(&s->nconns, __ATOMIC_RELAXED);
}
