/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the HTTP request parser (src/api/http.c) fed an
 * arbitrary byte stream in arbitrary chunks, and the CLI client's response
 * head parser on the same bytes.
 *
 *   byte 0     separator: the stream is cut into chunks after every
 *              occurrence of this byte
 *   byte 1     bit 0: small limits (request line 64, 4 headers, 128 header
 *              bytes, body 256) instead of the defaults
 *   the rest   the stream a client sends on one connection
 *
 * The stream is parsed three ways: in one piece, in the chunks above, and
 * (up to 16 KiB) one byte at a time.  Each parse records every request
 * (method, path, query, version, flags, headers, body, end offset) and the
 * final error (status, offset) in a running hash; all three must agree,
 * because the parser promises that chunking does not matter.  Every
 * request is checked against the parser's contract (path starts with '/',
 * has no control bytes and path_len bytes, the body is within max_body and
 * NUL-terminated, header counts within limits, ...).  A crash, sanitizer
 * report or broken invariant (__builtin_trap) is a bug.
 * Seeds: tests/fuzz/corpus-http.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/api/http.h"
#include "../../src/api/http_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct trace {
	uint64_t h;
	unsigned requests;
};

static void mix(struct trace *t, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		t->h ^= b[i];
		t->h *= 0x100000001b3ull;
	}
	t->h ^= n;
	t->h *= 0x100000001b3ull;
}

static void mix_str(struct trace *t, const char *s)
{
	mix(t, s, strlen(s));
}

static void mix_u64(struct trace *t, uint64_t v)
{
	mix(t, &v, sizeof(v));
}

static bool is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static void check_request(const struct http_request *r, const struct http_limits *lim)
{
	if ((unsigned)r->method > HTTP_HEAD)
		__builtin_trap();
	if (r->version_minor != 0 && r->version_minor != 1)
		__builtin_trap();
	if (!r->path || r->path[0] != '/' || strlen(r->path) != r->path_len)
		__builtin_trap();
	for (size_t i = 0; i < r->path_len; i++)
		if (is_ctl((unsigned char)r->path[i]))
			__builtin_trap();
	if (!r->query)
		__builtin_trap();
	for (const char *q = r->query; *q; q++)
		if (is_ctl((unsigned char)*q) || *q == ' ' || *q == '#')
			__builtin_trap();
	if (r->body_len > lim->max_body || !r->body || r->body[r->body_len] != 0)
		__builtin_trap();
	if (r->body_len && !r->has_length)
		__builtin_trap();
	if (r->nheaders > lim->max_headers || (r->nheaders && !r->headers))
		__builtin_trap();
	for (unsigned i = 0; i < r->nheaders; i++) {
		const char *n = r->headers[i].name, *v = r->headers[i].value;
		if (!n[0] || strchr(n, ':') || strchr(n, ' '))
			__builtin_trap();
		for (; *v; v++)
			if (*v == '\r' || *v == '\n')
				__builtin_trap();
		if (http_request_header(r, n) == NULL)
			__builtin_trap();
	}
	if (r->version_minor == 0 && r->keep_alive && !http_request_header(r, "connection"))
		__builtin_trap();
}

static void record_request(struct trace *t, const struct http_request *r, uint64_t end)
{
	t->requests++;
	mix_u64(t, r->method);
	mix_str(t, r->path);
	mix_str(t, r->query);
	mix_u64(t, (uint64_t)r->version_minor | (uint64_t)r->keep_alive << 8 |
			   (uint64_t)r->expect_continue << 9 | (uint64_t)r->has_length << 10);
	mix_u64(t, r->nheaders);
	for (unsigned i = 0; i < r->nheaders; i++) {
		mix_str(t, r->headers[i].name);
		mix_str(t, r->headers[i].value);
	}
	mix(t, r->body, r->body_len);
	mix_u64(t, end);
}

static bool valid_error(int st)
{
	switch (st) {
	case 400: case 405: case 411: case 413: case 414: case 417: case 431: case 500: case 501:
	case 505:
		return true;
	default:
		return false;
	}
}

/* Parse @s[0..n): chunk ends after each @sep byte (@mode 1), every byte
 * (@mode 2), or never (@mode 0). */
static struct trace run(const uint8_t *s, size_t n, const struct http_limits *lim, int mode,
			uint8_t sep)
{
	struct trace t = {.h = 0xcbf29ce484222325ull};
	struct http_parser p;
	http_parser_init(&p, lim);
	size_t off = 0;
	while (off < n) {
		size_t chunk = n - off;
		if (mode == 2) {
			chunk = 1;
		} else if (mode == 1) {
			const uint8_t *e = memchr(s + off, sep, n - off);
			if (e)
				chunk = (size_t)(e - (s + off)) + 1;
		}
		/* feed the chunk completely, request after request */
		size_t end = off + chunk;
		while (off < end) {
			size_t used = (size_t)-1;
			int r = http_parser_feed(&p, s + off, end - off, &used);
			if (used > end - off)
				__builtin_trap();
			off += used;
			if (r == HTTP_PARSE_DONE) {
				check_request(&p.req, &p.lim);
				record_request(&t, &p.req, off);
				http_parser_next(&p);
				if (!http_parser_idle(&p))
					__builtin_trap();
			} else if (r == HTTP_PARSE_ERROR) {
				if (!valid_error(p.status) || !p.error || !p.error[0])
					__builtin_trap();
				mix_u64(&t, (uint64_t)p.status << 32 | off);
				/* sticky */
				size_t u2 = 1;
				if (http_parser_feed(&p, s, n, &u2) != HTTP_PARSE_ERROR || u2 != 0)
					__builtin_trap();
				http_parser_free(&p);
				return t;
			} else if (off != end) {
				__builtin_trap(); /* MORE consumes everything */
			}
		}
	}
	mix_u64(&t, http_parser_idle(&p) ? 1 : 2);
	http_parser_free(&p);
	return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t sep = data[0];
	const struct http_limits small = {.max_request_line = 64, .max_headers = 4,
					  .max_header_bytes = 128, .max_body = 256};
	const struct http_limits *lim = (data[1] & 1) ? &small : NULL;
	const uint8_t *s = data + 2;
	size_t n = size - 2;

	struct trace whole = run(s, n, lim, 0, sep);
	struct trace split = run(s, n, lim, 1, sep);
	if (whole.h != split.h || whole.requests != split.requests)
		__builtin_trap();
	if (n <= 16384) {
		struct trace bytes = run(s, n, lim, 2, sep);
		if (whole.h != bytes.h || whole.requests != bytes.requests)
			__builtin_trap();
	}

	/* the client's response head parser on the same bytes */
	struct http_client_head h;
	int r = http_client_parse_head((const char *)s, n, &h);
	if (r > 0 && ((size_t)r > n || r > HTTP_CLIENT_MAX_HEAD || h.status < 100 ||
		      h.status > 999 || (h.version_minor < 0 || h.version_minor > 9)))
		__builtin_trap();
	if (r == 0 && n >= HTTP_CLIENT_MAX_HEAD)
		__builtin_trap();
	return 0;
}
