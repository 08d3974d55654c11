/* SPDX-License-Identifier: MIT */
/* The HTTP transport of the API: the request parser (pure) and the server
 * on a real Unix socket in a temporary directory. */
#include "../../src/api/http.h"

#include <errno.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../src/api/http_client.h"
#include "../../src/event/loop.h"
#include "loop_runner.h"
#include "test.h"

/* ==== parser ============================================================== */

/* Parse @s (whole) with @lim; the HTTP status of the outcome: 0 for a
 * complete request, the error status otherwise, -1 if incomplete. */
static int status_of(const char *s, const struct http_limits *lim)
{
	struct http_parser p;
	http_parser_init(&p, lim);
	size_t used;
	int r = http_parser_feed(&p, s, strlen(s), &used);
	int st = r == HTTP_PARSE_DONE ? 0 : r == HTTP_PARSE_ERROR ? p.status : -1;
	http_parser_free(&p);
	return st;
}

TEST(parser_simple_get)
{
	const char *s = "GET /machine-config HTTP/1.1\r\nHost: localhost\r\n"
			"Accept:  application/json \r\n\r\n";
	struct http_parser p;
	http_parser_init(&p, NULL);
	CHECK(http_parser_idle(&p));
	size_t used;
	CHECK_EQ(http_parser_feed(&p, s, strlen(s), &used), HTTP_PARSE_DONE);
	CHECK_EQ(used, strlen(s));
	CHECK_EQ(p.req.method, HTTP_GET);
	CHECK_STR(p.req.path, "/machine-config");
	CHECK_EQ(p.req.path_len, 15);
	CHECK_STR(p.req.query, "");
	CHECK_EQ(p.req.version_minor, 1);
	CHECK(p.req.keep_alive);
	CHECK(!p.req.has_length);
	CHECK_EQ(p.req.nheaders, 2);
	CHECK_STR(http_request_header(&p.req, "host"), "localhost");
	CHECK_STR(http_request_header(&p.req, "ACCEPT"), "application/json");
	CHECK(http_request_header(&p.req, "Content-Type") == NULL);
	CHECK_EQ(p.req.body_len, 0);
	CHECK_STR(p.req.body, "");
	/* done is sticky until next */
	CHECK_EQ(http_parser_feed(&p, "GET", 3, &used), HTTP_PARSE_DONE);
	CHECK_EQ(used, 0);
	http_parser_next(&p);
	CHECK(http_parser_idle(&p));
	http_parser_free(&p);
	CHECK_STR(http_method_name(HTTP_PATCH), "PATCH");
	CHECK_STR(http_method_name((enum http_method)42), "?");
}

TEST(parser_put_body_byte_by_byte)
{
	const char *s = "PUT /drives/rootfs HTTP/1.1\r\nContent-Type: application/json\r\n"
			"Content-Length: 27\r\n\r\n{\"drive_id\": \"rootfs\", \"x\":1}";
	struct http_parser p;
	http_parser_init(&p, NULL);
	size_t n = strlen(s), used;
	int r = HTTP_PARSE_MORE;
	size_t i;
	for (i = 0; i < n && r == HTTP_PARSE_MORE; i++) {
		r = http_parser_feed(&p, s + i, 1, &used);
		CHECK_EQ(used, 1);
		CHECK(!http_parser_idle(&p));
	}
	CHECK_EQ(r, HTTP_PARSE_DONE);
	CHECK_EQ(i, n - 2); /* Content-Length 27 leaves the last two bytes */
	CHECK_EQ(p.req.method, HTTP_PUT);
	CHECK(p.req.has_length);
	CHECK_EQ(p.req.body_len, 27);
	CHECK_EQ(memcmp(p.req.body, "{\"drive_id\": \"rootfs\", \"x\":", 27), 0);
	CHECK_EQ(p.req.body[27], 0);
	CHECK(!p.continue_pending);
	http_parser_free(&p);
}

TEST(parser_unsized_patch_and_put_are_empty)
{
	CHECK_EQ(status_of("PATCH /vm HTTP/1.1\r\n\r\n", NULL), 0);
	CHECK_EQ(status_of("PUT /actions HTTP/1.1\r\nHost: x\r\n\r\n", NULL), 0);
	CHECK_EQ(status_of("DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", NULL), 0);
	/* a body without Content-Length shows up as the next "request": 411 */
	const char *s = "PUT /actions HTTP/1.1\r\n\r\n{\"action_type\": \"InstanceStart\"}\r\n";
	struct http_parser p;
	http_parser_init(&p, NULL);
	size_t used;
	CHECK_EQ(http_parser_feed(&p, s, strlen(s), &used), HTTP_PARSE_DONE);
	CHECK_EQ(p.req.body_len, 0);
	CHECK(!p.req.has_length);
	http_parser_next(&p);
	CHECK_EQ(http_parser_feed(&p, s + used, strlen(s) - used, &used), HTTP_PARSE_ERROR);
	CHECK_EQ(p.status, 411);
	/* errors are sticky */
	CHECK_EQ(http_parser_feed(&p, "GET / HTTP/1.1\r\n\r\n", 18, &used), HTTP_PARSE_ERROR);
	CHECK_EQ(used, 0);
	http_parser_free(&p);
	/* after a GET the same garbage is a plain 400 */
	http_parser_init(&p, NULL);
	s = "GET / HTTP/1.1\r\n\r\n{\"a\": 1}\r\n";
	CHECK_EQ(http_parser_feed(&p, s, strlen(s), &used), HTTP_PARSE_DONE);
	http_parser_next(&p);
	CHECK_EQ(http_parser_feed(&p, s + used, strlen(s) - used, &used), HTTP_PARSE_ERROR);
	CHECK_EQ(p.status, 400);
	http_parser_free(&p);
}

TEST(parser_pipelined_and_empty_lines)
{
	const char *s = "GET /a HTTP/1.1\r\n\r\nPUT /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
			"\r\n\r\nGET /c?x=1 HTTP/1.1\r\n\r\n";
	struct http_parser p;
	http_parser_init(&p, NULL);
	size_t off = 0, used;
	const char *paths[] = {"/a", "/b", "/c"};
	for (int k = 0; k < 3; k++) {
		CHECK_EQ(http_parser_feed(&p, s + off, strlen(s) - off, &used), HTTP_PARSE_DONE);
		off += used;
		CHECK_STR(p.req.path, paths[k]);
		if (k == 1)
			CHECK_STR(p.req.body, "hi");
		if (k == 2)
			CHECK_STR(p.req.query, "x=1");
		http_parser_next(&p);
	}
	CHECK_EQ(off, strlen(s));
	http_parser_free(&p);
	/* too many empty lines are not a request */
	struct http_limits lim = {.max_request_line = 16};
	CHECK_EQ(status_of("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n", &lim), 400);
	CHECK_EQ(status_of("\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", &lim), 0);
}

TEST(parser_line_endings)
{
	/* bare LF is accepted (documented), bare CR is not */
	CHECK_EQ(status_of("GET / HTTP/1.1\nHost: x\n\n", NULL), 0);
	CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost: x\n\r\n", NULL), 0);
	CHECK_EQ(status_of("GET / HTTP/1.1\rHost: x\r\n\r\n", NULL), 400);
	CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", NULL), 400);
	CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", NULL), 400);
	CHECK_EQ(status_of("GET / HTTP/1.1\r\n\r\r\n", NULL), 400);
}

TEST(parser_target)
{
	struct http_parser p;
	size_t used;
	const char *s = "GET /drives/root%5Fdisk%c3%a9?x=%41&y HTTP/1.1\r\n\r\n";
	http_parser_init(&p, NULL);
	CHECK_EQ(http_parser_feed(&p, s, strlen(s), &used), HTTP_PARSE_DONE);
	CHECK_STR(p.req.path, "/drives/root_disk\xc3\xa9");
	CHECK_EQ(p.req.path_len, strlen("/drives/root_disk\xc3\xa9"));
	CHECK_STR(p.req.query, "x=%41&y");
	http_parser_free(&p);

	s = "PUT http://localhost/vm/config?q HTTP/1.1\r\n\r\n";
	http_parser_init(&p, NULL);
	CHECK_EQ(http_parser_feed(&p, s, strlen(s), &used), HTTP_PARSE_DONE);
	CHECK_STR(p.req.path, "/vm/config");
	CHECK_STR(p.req.query, "q");
	http_parser_free(&p);

	s = "GET HTTP://localhost HTTP/1.1\r\n\r\n";
	http_parser_init(&p, NULL);
	CHECK_EQ(http_parser_feed(&p, s, strlen(s), &used), HTTP_PARSE_DONE);
	CHECK_STR(p.req.path, "/");
	http_parser_free(&p);

	s = "GET http://h?only HTTP/1.1\r\n\r\n";
	http_parser_init(&p, NULL);
	CHECK_EQ(http_parser_feed(&p, s, strlen(s), &used), HTTP_PARSE_DONE);
	CHECK_STR(p.req.path, "/");
	CHECK_STR(p.req.query, "only");
	http_parser_free(&p);

	CHECK_EQ(status_of("GET /a.b/..c/.d/ HTTP/1.1\r\n\r\n", NULL), 0);
	const char *bad[] = {
		"/a%2Fb", "/a%2fb", "/a%00",  "/a%0a", "/a%7F", "/a%zz", "/a%4", "/a%",
		"/a/../b", "/./a", "/a/%2e%2e", "/a/.", "/a#frag", "*", "x", "ftp://h/x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char req[128];
		snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n\r\n", bad[i]);
		int st = status_of(req, NULL);
		if (st != 400)
			printf("  target %s: %d\n", bad[i], st);
		CHECK_EQ(st, 400);
	}
	/* raw control and non-ASCII bytes in the request line */
	CHECK_EQ(status_of("GET /a\tb HTTP/1.1\r\n\r\n", NULL), 400);
	CHECK_EQ(status_of("GET /a\x7f HTTP/1.1\r\n\r\n", NULL), 400);
	CHECK_EQ(status_of("GET /\xc3\xa9 HTTP/1.1\r\n\r\n", NULL), 400);
	struct http_parser q;
	http_parser_init(&q, NULL);
	CHECK_EQ(http_parser_feed(&q, "GET /a\0b HTTP/1.1\r\n\r\n", 21, &used), HTTP_PARSE_ERROR);
	CHECK_EQ(q.status, 400);
	http_parser_free(&q);
}

TEST(parser_versions_and_keep_alive)
{
	struct http_parser p;
	size_t used;
	struct {
		const char *req;
		int minor;
		bool keep;
	} cases[] = {
		{"GET / HTTP/1.1\r\n\r\n", 1, true},
		{"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 1, false},
		{"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n", 1, false},
		{"GET / HTTP/1.0\r\n\r\n", 0, false},
		{"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0, true},
		{"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		http_parser_init(&p, NULL);
		CHECK_EQ(http_parser_feed(&p, cases[i].req, strlen(cases[i].req), &used),
			 HTTP_PARSE_DONE);
		CHECK_EQ(p.req.version_minor, cases[i].minor);
		CHECK_EQ(p.req.keep_alive, cases[i].keep);
		http_parser_free(&p);
	}
	CHECK_EQ(status_of("GET / HTTP/2.0\r\n\r\n", NULL), 505);
	CHECK_EQ(status_of("GET / HTTP/1.2\r\n\r\n", NULL), 505);
	CHECK_EQ(status_of("GET / HTTP/0.9\r\n\r\n", NULL), 505);
	CHECK_EQ(status_of("GET / HTTP/1\r\n\r\n", NULL), 400);
	CHECK_EQ(status_of("GET / HTTP/1.1x\r\n\r\n", NULL), 400);
	CHECK_EQ(status_of("GET / http/1.1\r\n\r\n", NULL), 400);
	CHECK_EQ(status_of("GET /\r\n\r\n", NULL), 400);
}

TEST(parser_methods)
{
	const char *ok[] = {"GET", "PUT", "PATCH", "POST", "DELETE", "HEAD"};
	for (size_t i = 0; i < 6; i++) {
		char req[64];
		snprintf(req, sizeof(req), "%s / HTTP/1.1\r\n\r\n", ok[i]);
		struct http_parser p;
		size_t used;
		http_parser_init(&p, NULL);
		CHECK_EQ(http_parser_feed(&p, req, strlen(req), &used), HTTP_PARSE_DONE);
		CHECK_EQ(p.req.method, (enum http_method)i);
		http_parser_free(&p);
	}
	CHECK_EQ(status_of("OPTIONS / HTTP/1.1\r\n\r\n", NULL), 405);
	CHECK_EQ(status_of("get / HTTP/1.1\r\n\r\n", NULL), 405);
	CHECK_EQ(status_of("CONNECT / HTTP/1.1\r\n\r\n", NULL), 405);
	CHECK_EQ(status_of("G(T / HTTP/1.1\r\n\r\n", NULL), 400);
	CHECK_EQ(status_of("GET  / HTTP/1.1\r\n\r\n", NULL), 400);
	CHECK_EQ(status_of(" GET / HTTP/1.1\r\n\r\n", NULL), 400);
	CHECK_EQ(status_of("GET / HTTP/1.1 \r\n\r\n", NULL), 400);
}

TEST(parser_request_line_limit)
{
	struct http_limits lim = {.max_request_line = 32};
	/* "GET /" + path + " HTTP/1.1" = 14 + path bytes */
	char req[256];
	char path[64];
	memset(path, 'a', sizeof(path));
	snprintf(req, sizeof(req), "GET /%.*s HTTP/1.1\r\n\r\n", 18, path); /* exactly 32 */
	CHECK_EQ(status_of(req, &lim), 0);
	snprintf(req, sizeof(req), "GET /%.*s HTTP/1.1\n\n", 18, path);
	CHECK_EQ(status_of(req, &lim), 0);
	snprintf(req, sizeof(req), "GET /%.*s HTTP/1.1\r\n\r\n", 19, path); /* 33 */
	CHECK_EQ(status_of(req, &lim), 414);
	snprintf(req, sizeof(req), "GET /%.*s HTTP/1.1\n\n", 19, path);
	CHECK_EQ(status_of(req, &lim), 414);
	/* detected before any line end arrives, with bounded consumption */
	struct http_parser p;
	http_parser_init(&p, NULL);
	static char big[10000];
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /", 5);
	size_t used;
	CHECK_EQ(http_parser_feed(&p, big, sizeof(big), &used), HTTP_PARSE_ERROR);
	CHECK_EQ(p.status, 414);
	CHECK(used <= HTTP_DEFAULT_MAX_REQUEST_LINE + 2);
	http_parser_free(&p);
	/* the default: 4096 bytes fit, 4097 do not */
	static char line[5000];
	memset(line, 'b', sizeof(line));
	memcpy(line, "GET /", 5);
	memcpy(line + 4096 - 9, " HTTP/1.1\r\n\r\n", 14);
	CHECK_EQ(status_of(line, NULL), 0);
	memset(line, 'b', sizeof(line));
	memcpy(line, "GET /", 5);
	memcpy(line + 4097 - 9, " HTTP/1.1\r\n\r\n", 14);
	CHECK_EQ(status_of(line, NULL), 414);
}

TEST(parser_header_limits)
{
	/* 64 headers fit, 65 do not */
	static char req[1 << 20];
	for (int count = 64; count <= 65; count++) {
		size_t n = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n");
		for (int i = 0; i < count; i++)
			n += (size_t)snprintf(req + n, sizeof(req) - n, "X-H%d: v\r\n", i);
		snprintf(req + n, sizeof(req) - n, "\r\n");
		CHECK_EQ(status_of(req, NULL), count == 64 ? 0 : 431);
	}
	/* 10^4 headers: 431, consuming no more than the header bytes limit */
	size_t n = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n");
	for (int i = 0; i < 10000; i++)
		n += (size_t)snprintf(req + n, sizeof(req) - n, "X: %d\r\n", i);
	struct http_parser p;
	size_t used;
	http_parser_init(&p, NULL);
	CHECK_EQ(http_parser_feed(&p, req, n, &used), HTTP_PARSE_ERROR);
	CHECK_EQ(p.status, 431);
	CHECK(used < 16384 + 4096);
	http_parser_free(&p);
	/* one enormous header: 431 by the byte limit */
	n = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-Big: ");
	memset(req + n, 'v', 20000);
	memcpy(req + n + 20000, "\r\n\r\n", 5);
	CHECK_EQ(status_of(req, NULL), 431);
	/* the byte limit counts line ends: exactly at the limit is fine */
	struct http_limits lim = {.max_header_bytes = 10};
	CHECK_EQ(status_of("GET / HTTP/1.1\r\nA: 123\r\n\r\n", &lim), 0); /* 8 + 2 = 10 */
	CHECK_EQ(status_of("GET / HTTP/1.1\r\nA: 1234\r\n\r\n", &lim), 431);
	CHECK_EQ(status_of("GET / HTTP/1.1\nA: 12345\n\n", &lim), 0);
	CHECK_EQ(status_of("GET / HTTP/1.1\nA: 123456\n\n", &lim), 431);
}

TEST(parser_content_length)
{
	struct {
		const char *hdrs;
		int status;
	} cases[] = {
		{"Content-Length: abc\r\n", 400},
		{"Content-Length: -1\r\n", 400},
		{"Content-Length: +1\r\n", 400},
		{"Content-Length:\r\n", 400},
		{"Content-Length: 1 2\r\n", 400},
		{"Content-Length: 0x10\r\n", 400},
		{"Content-Length: 99999999999999999999999\r\n", 400},
		{"Content-Length: 18446744073709551616\r\n", 400},
		{"Content-Length: 18446744073709551615\r\n", 413},
		{"Content-Length: 1000000000000\r\n", 413},
		{"Content-Length: 51201\r\n", 413},
		{"Content-Length: 3\r\nContent-Length: 4\r\n", 400},
		{"Content-Length: 3, 4\r\n", 400},
		{"Content-Length: 3,\r\n", 400},
		{"Content-Length: 3\r\ncontent-length: 3\r\n", 0},
		{"Content-Length: 3 , 3\r\n", 0},
		{"Content-Length: 003\r\n", 0},
		{"Transfer-Encoding: chunked\r\n", 400},
		{"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", 400},
		{"Content-Length: 3\r\nTransfer-Encoding: gzip\r\n", 400},
		{"Expect: 100-continue\r\nContent-Length: 3\r\n", 0},
		{"Expect: something-else\r\n", 417},
		{"Host : x\r\n", 400},
		{" folded: x\r\n", 400},
		{"X: a\r\n  folded\r\n", 400},
		{"NoColon\r\n", 400},
		{": empty-name\r\n", 400},
		{"X: a\x01z\r\n", 400},
		{"X: a\tz\xff\r\n", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char req[256];
		snprintf(req, sizeof(req), "PUT /x HTTP/1.1\r\n%s\r\nabc", cases[i].hdrs);
		int st = status_of(req, NULL);
		if (st != cases[i].status)
			printf("  case %zu (%s): %d\n", i, cases[i].hdrs, st);
		CHECK_EQ(st, cases[i].status);
	}
	/* the exact body limit is fine */
	static char req[60000];
	int n = snprintf(req, sizeof(req), "PUT /x HTTP/1.1\r\nContent-Length: 51200\r\n\r\n");
	memset(req + n, '{', 51200);
	req[n + 51200] = 0;
	CHECK_EQ(status_of(req, NULL), 0);
	struct http_limits lim = {.max_body = 10};
	CHECK_EQ(status_of("PUT /x HTTP/1.1\r\nContent-Length: 11\r\n\r\n", &lim), 413);
	CHECK_EQ(status_of("PUT /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", &lim), 0);
	/* 413 is decided when the head ends, before any body byte */
	struct http_parser p;
	size_t used;
	const char *s = "PUT /x HTTP/1.1\r\nContent-Length: 11\r\n\r\n01234567890";
	http_parser_init(&p, &lim);
	CHECK_EQ(http_parser_feed(&p, s, strlen(s), &used), HTTP_PARSE_ERROR);
	CHECK_EQ(used, strlen(s) - 11);
	http_parser_free(&p);
}

TEST(parser_expect_continue)
{
	struct http_parser p;
	size_t used;
	const char *s = "PUT /x HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
	http_parser_init(&p, NULL);
	CHECK_EQ(http_parser_feed(&p, s, strlen(s), &used), HTTP_PARSE_MORE);
	CHECK(p.continue_pending);
	CHECK(p.req.expect_continue);
	CHECK_EQ(http_parser_feed(&p, "abc", 3, &used), HTTP_PARSE_DONE);
	CHECK(!p.continue_pending);
	http_parser_free(&p);
	/* not for HTTP/1.0, nor without a body */
	s = "PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
	http_parser_init(&p, NULL);
	CHECK_EQ(http_parser_feed(&p, s, strlen(s), &used), HTTP_PARSE_MORE);
	CHECK(!p.continue_pending);
	http_parser_free(&p);
	s = "PUT /x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n";
	http_parser_init(&p, NULL);
	CHECK_EQ(http_parser_feed(&p, s, strlen(s), &used), HTTP_PARSE_DONE);
	CHECK(!p.continue_pending);
	http_parser_free(&p);
}

TEST(parser_any_chunking_same_result)
{
	const char *inputs[] = {
		("GET /a%41?q HTTP/1.1\r\nHost: h\r\n\r\nPUT /b HTTP/1.0\r\nContent-Length: 5\r\n"
		 "Connection: keep-alive\r\n\r\nhello\nGET /c HTTP/1.1\n\n"),
		"PATCH /vm HTTP/1.1\r\n\r\n{}\r\n",
		"GET / HTTP/1.1\r\nX: \x01\r\n\r\n",
		"\r\n\nDELETE /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nabGET /y HTTP/3.0\r\n\r\n",
	};
	for (size_t k = 0; k < sizeof(inputs) / sizeof(inputs[0]); k++) {
		const char *s = inputs[k];
		size_t n = strlen(s);
		char whole[1024] = "", bytes[1024] = "";
		for (int mode = 0; mode < 2; mode++) {
			char *out = mode ? bytes : whole;
			struct http_parser p;
			http_parser_init(&p, NULL);
			size_t off = 0;
			while (off < n) {
				size_t used;
				size_t chunk = mode ? 1 : n - off;
				int r = http_parser_feed(&p, s + off, chunk, &used);
				off += used;
				if (r == HTTP_PARSE_DONE) {
					size_t l = strlen(out);
					snprintf(out + l, 1024 - l, "[%d %s ?%s %zu:%s ka%d]",
						 p.req.method, p.req.path, p.req.query,
						 p.req.body_len, p.req.body, p.req.keep_alive);
					http_parser_next(&p);
				} else if (r == HTTP_PARSE_ERROR) {
					size_t l = strlen(out);
					snprintf(out + l, 1024 - l, "[error %d]", p.status);
					break;
				}
			}
			http_parser_free(&p);
		}
		CHECK_STR(whole, bytes);
	}
}

/* ==== responses ============================================================ */

TEST(response_body_helpers)
{
	struct http_response r = {.status = 200, .body_max = 16};
	CHECK_EQ(http_response_append(&r, "{\"a\":", 5), 0);
	CHECK_EQ(http_response_printf(&r, "%d}", 42), 0);
	CHECK_EQ(r.body_len, 8);
	CHECK_EQ(memcmp(r.body, "{\"a\":42}", 8), 0);
	CHECK_EQ(http_response_printf(&r, "%s", "0123456789"), -EMSGSIZE);
	CHECK_EQ(r.body_err, -EMSGSIZE);
	CHECK_EQ(http_response_append(&r, "x", 1), -EMSGSIZE);
	free(r.body);
	CHECK_STR(http_reason(404), "Not Found");
	CHECK_STR(http_reason(431), "Request Header Fields Too Large");
	CHECK_STR(http_reason(799), "Unknown");
	struct http_limits l;
	http_limits_fill(&l, NULL);
	CHECK_EQ(l.max_body, 51200);
	CHECK_EQ(l.max_conns, 32);
	CHECK_EQ(l.idle_timeout_ms, 300000);
	struct http_limits in = {.max_body = 7};
	http_limits_fill(&l, &in);
	CHECK_EQ(l.max_body, 7);
	CHECK_EQ(l.max_request_line, 4096);
}

/* ==== server =============================================================== */

struct counter {
	int requests;
};

/* Routes of the test server:
 *   GET  /hello       200 {"hello":"world"}
 *   *    /echo        200 "<METHOD> <path> ?<query> <body>" (text/plain)
 *   *    /nocontent   204 (with a body the server must drop)
 *   GET  /big?N       200, N bytes of 'x'
 *   GET  /close       200, asks for the connection to be closed
 *   GET  /bad         status 99 (invalid: the server sends 500)
 *   else              404 */
static void handler(void *ctx, const struct http_request *req, struct http_response *resp)
{
	struct counter *c = ctx;
	c->requests++;
	if (!strcmp(req->path, "/hello")) {
		http_response_printf(resp, "{\"hello\":\"world\"}");
	} else if (!strcmp(req->path, "/echo")) {
		resp->content_type = "text/plain";
		http_response_printf(resp, "%s %s ?%s ", http_method_name(req->method), req->path,
				     req->query);
		http_response_append(resp, req->body, req->body_len);
	} else if (!strcmp(req->path, "/nocontent")) {
		resp->status = 204;
		http_response_printf(resp, "dropped");
	} else if (!strcmp(req->path, "/big")) {
		size_t n = strtoul(req->query, NULL, 10);
		char chunk[4096];
		memset(chunk, 'x', sizeof(chunk));
		while (n) {
			size_t k = n < sizeof(chunk) ? n : sizeof(chunk);
			if (http_response_append(resp, chunk, k))
				break;
			n -= k;
		}
	} else if (!strcmp(req->path, "/close")) {
		resp->close = true;
		http_response_printf(resp, "{}");
	} else if (!strcmp(req->path, "/bad")) {
		resp->status = 99;
	} else {
		resp->status = 404;
		http_response_printf(resp, "{\"fault_message\":\"no route\"}");
	}
}

struct fx {
	char dir[64];
	char path[128];
	struct loop loop;
	struct http_server s;
	struct loop_runner lr;
	bool threaded;
	struct counter count;
};

/* Start a server in a fresh directory; @threaded: on a loop thread,
 * otherwise the test pumps the loop itself. */
static void fx_start(struct fx *f, const struct http_limits *lim, bool threaded)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/visor-http-XXXXXX");
	CHECK(mkdtemp(f->dir) != NULL);
	snprintf(f->path, sizeof(f->path), "%s/api.sock", f->dir);
	CHECK_EQ(loop_init(&f->loop), 0);
	char err[256] = "";
	int r = http_server_init(&f->s, f->path, &f->loop, lim, handler, &f->count, err,
				 sizeof(err));
	if (r)
		printf("  http_server_init: %s\n", err);
	CHECK_EQ(r, 0);
	f->threaded = threaded;
	if (threaded)
		CHECK_EQ(loop_runner_start(&f->lr, &f->loop), 0);
}

static void fx_stop(struct fx *f)
{
	if (f->threaded)
		CHECK_EQ(loop_runner_stop(&f->lr), 0);
	http_server_destroy(&f->s);
	struct stat st;
	CHECK(lstat(f->path, &st) < 0); /* destroy removed the socket file */
	loop_destroy(&f->loop);
	rmdir(f->dir);
}

/* Dispatch everything that is ready now (un-threaded fixtures). */
static void pump(struct fx *f)
{
	for (int idle = 0; idle < 2;)
		idle = loop_run_once(&f->loop, 20) > 0 ? 0 : idle + 1;
}

static int connect_to(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Write all of @s; false if the server closed (expected in some tests). */
static bool put(int fd, const void *s, size_t n)
{
	const char *p = s;
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static bool puts_(int fd, const char *s)
{
	return put(fd, s, strlen(s));
}

/* A client connection with a receive buffer (responses may arrive
 * together). */
struct tc {
	int fd;
	size_t len;
	char buf[1 << 16];
};

struct resp {
	int status;
	char head[2048];
	char body[8192];
	size_t body_len;
};

/* Read one response (the head of a HEAD request's response: @no_body).
 * true on success. */
static bool read_resp(struct tc *c, struct resp *r, bool no_body)
{
	memset(r, 0, sizeof(*r));
	for (;;) {
		struct http_client_head h;
		int hl = http_client_parse_head(c->buf, c->len, &h);
		if (hl < 0)
			return false;
		if (hl > 0) {
			size_t blen = no_body || h.status == 204 ? 0 : (size_t)h.content_length;
			if (c->len >= (size_t)hl + blen) {
				r->status = h.status;
				snprintf(r->head, sizeof(r->head), "%.*s", hl, c->buf);
				if (blen >= sizeof(r->body))
					return false;
				memcpy(r->body, c->buf + hl, blen);
				r->body_len = blen;
				memmove(c->buf, c->buf + hl + blen, c->len - (size_t)hl - blen);
				c->len -= (size_t)hl + blen;
				return true;
			}
		}
		if (c->len == sizeof(c->buf))
			return false;
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n <= 0)
			return false;
		c->len += (size_t)n;
	}
}

/* Eventually closed by the server (EOF or reset), within the 5 s receive
 * timeout; buffered response bytes are skipped. */
static bool closed_by_server(int fd)
{
	char b[4096];
	for (;;) {
		ssize_t n = recv(fd, b, sizeof(b), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0)
			return false;
	}
}

static struct tc *tc_open(const char *path)
{
	struct tc *c = calloc(1, sizeof(*c));
	c->fd = connect_to(path);
	return c;
}

static void tc_close(struct tc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

/* One request, one response on @c. */
static bool roundtrip(struct tc *c, const char *req, struct resp *r)
{
	return puts_(c->fd, req) && read_resp(c, r, false);
}

TEST(server_get_put_patch_head)
{
	struct fx f;
	fx_start(&f, NULL, true);
	struct tc *c = tc_open(f.path);
	CHECK(c->fd >= 0);
	struct resp r;
	CHECK(roundtrip(c, "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n", &r));
	CHECK_EQ(r.status, 200);
	CHECK(strstr(r.head, "HTTP/1.1 200 OK\r\n") == r.head);
	CHECK(strstr(r.head, "\r\nServer: visor\r\n") != NULL);
	CHECK(strstr(r.head, "\r\nContent-Type: application/json\r\n") != NULL);
	CHECK(strstr(r.head, "\r\nContent-Length: 17\r\n") != NULL);
	CHECK(strstr(r.head, "Connection") == NULL);
	CHECK_EQ(r.body_len, 17);
	CHECK_EQ(memcmp(r.body, "{\"hello\":\"world\"}", 17), 0);

	CHECK(roundtrip(c, "PUT /echo?a=b HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"x\": \"put\"}!",
			&r));
	CHECK_EQ(r.status, 200);
	CHECK(strstr(r.head, "\r\nContent-Type: text/plain\r\n") != NULL);
	CHECK_STR(r.body, "PUT /echo ?a=b {\"x\": \"put\"}!");

	CHECK(roundtrip(c, "PATCH /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", &r));
	CHECK_STR(r.body, "PATCH /echo ? {}");
	/* PUT and PATCH without Content-Length: empty body */
	CHECK(roundtrip(c, "PUT /echo HTTP/1.1\r\n\r\n", &r));
	CHECK_STR(r.body, "PUT /echo ? ");
	CHECK(roundtrip(c, "PATCH /echo HTTP/1.1\r\n\r\n", &r));
	CHECK_STR(r.body, "PATCH /echo ? ");

	/* 204: no body, no Content-Length */
	CHECK(roundtrip(c, "PATCH /nocontent HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", &r));
	CHECK_EQ(r.status, 204);
	CHECK(strstr(r.head, "HTTP/1.1 204 No Content\r\n") == r.head);
	CHECK(strstr(r.head, "Content-Length") == NULL);
	CHECK(strstr(r.head, "Content-Type") == NULL);

	/* HEAD: the length of the body, not the body */
	CHECK(puts_(c->fd, "HEAD /hello HTTP/1.1\r\n\r\n"));
	CHECK(read_resp(c, &r, true));
	CHECK_EQ(r.status, 200);
	CHECK(strstr(r.head, "\r\nContent-Length: 17\r\n") != NULL);
	/* the next response starts right after the head */
	CHECK(roundtrip(c, "GET /nowhere HTTP/1.1\r\n\r\n", &r));
	CHECK_EQ(r.status, 404);
	CHECK_STR(r.body, "{\"fault_message\":\"no route\"}");

	/* an invalid response of the handler becomes 500 */
	CHECK(roundtrip(c, "GET /bad HTTP/1.1\r\n\r\n", &r));
	CHECK_EQ(r.status, 500);
	CHECK(strstr(r.body, "fault_message") != NULL);
	/* a response larger than max_response too */
	CHECK(roundtrip(c, "GET /big?2000000 HTTP/1.1\r\n\r\n", &r));
	CHECK_EQ(r.status, 500);
	CHECK(roundtrip(c, "GET /hello HTTP/1.1\r\n\r\n", &r));
	CHECK_EQ(r.status, 200);
	tc_close(c);
	fx_stop(&f);
	CHECK_EQ(f.count.requests, 11);
}

TEST(server_keep_alive_and_pipelining)
{
	struct fx f;
	fx_start(&f, NULL, true);
	struct tc *c = tc_open(f.path);
	struct resp r;
	for (int i = 0; i < 5; i++) {
		CHECK(roundtrip(c, "GET /hello HTTP/1.1\r\n\r\n", &r));
		CHECK_EQ(r.status, 200);
	}
	/* three requests in one write, answered in order */
	CHECK(puts_(c->fd, "GET /echo?1 HTTP/1.1\r\n\r\n"
			   "PUT /echo?2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
			   "DELETE /echo?3 HTTP/1.1\r\n\r\n"));
	CHECK(read_resp(c, &r, false));
	CHECK_STR(r.body, "GET /echo ?1 ");
	CHECK(read_resp(c, &r, false));
	CHECK_STR(r.body, "PUT /echo ?2 abc");
	CHECK(read_resp(c, &r, false));
	CHECK_STR(r.body, "DELETE /echo ?3 ");
	/* many pipelined requests with large responses: the server waits
	 * for us to read (bounded output) and answers them all */
	char many[64 * 40];
	size_t n = 0;
	for (int i = 0; i < 64; i++)
		n += (size_t)snprintf(many + n, sizeof(many) - n, "GET /big?6000 HTTP/1.1\r\n\r\n");
	CHECK(put(c->fd, many, n));
	for (int i = 0; i < 64; i++) {
		CHECK(read_resp(c, &r, false));
		CHECK_EQ(r.body_len, 6000);
	}
	struct http_stats st;
	http_server_stats(&f.s, &st);
	CHECK_EQ(st.conns_accepted, 1);
	CHECK_EQ(st.requests, 5 + 3 + 64);
	CHECK_EQ(st.errors, 0);
	tc_close(c);
	fx_stop(&f);
}

TEST(server_connection_close_semantics)
{
	struct fx f;
	fx_start(&f, NULL, true);
	struct resp r;
	/* HTTP/1.0: closed after the response */
	struct tc *c = tc_open(f.path);
	CHECK(roundtrip(c, "GET /hello HTTP/1.0\r\n\r\n", &r));
	CHECK_EQ(r.status, 200);
	CHECK(strstr(r.head, "\r\nConnection: close\r\n") != NULL);
	CHECK(closed_by_server(c->fd));
	tc_close(c);
	/* HTTP/1.0 keep-alive: kept */
	c = tc_open(f.path);
	CHECK(roundtrip(c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r));
	CHECK(strstr(r.head, "\r\nConnection: keep-alive\r\n") != NULL);
	CHECK(roundtrip(c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r));
	CHECK_EQ(r.status, 200);
	tc_close(c);
	/* HTTP/1.1 Connection: close; what follows it is ignored */
	c = tc_open(f.path);
	CHECK(roundtrip(c,
			"GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n"
			"GET /hello HTTP/1.1\r\n\r\n",
			&r));
	CHECK(strstr(r.head, "\r\nConnection: close\r\n") != NULL);
	CHECK(closed_by_server(c->fd));
	tc_close(c);
	/* the handler asks for close */
	c = tc_open(f.path);
	CHECK(roundtrip(c, "GET /close HTTP/1.1\r\n\r\n", &r));
	CHECK(strstr(r.head, "\r\nConnection: close\r\n") != NULL);
	CHECK(closed_by_server(c->fd));
	tc_close(c);
	fx_stop(&f);
	CHECK_EQ(f.count.requests, 5);
}

/* Send @req on a fresh connection: the server answers @status and closes. */
static void expect_error(struct fx *f, const void *req, size_t len, int status)
{
	struct tc *c = tc_open(f->path);
	put(c->fd, req, len); /* may fail once the server has closed */
	struct resp r;
	bool got = read_resp(c, &r, false);
	CHECK(got);
	if (got && r.status != status)
		printf("  expected %d, got %d (%s)\n", status, r.status, r.body);
	CHECK_EQ(r.status, status);
	CHECK(strstr(r.head, "\r\nConnection: close\r\n") != NULL);
	CHECK(strstr(r.body, "{\"fault_message\":\"") == r.body);
	CHECK(closed_by_server(c->fd));
	tc_close(c);
}

TEST(server_limits)
{
	struct fx f;
	fx_start(&f, NULL, true);
	static char big[300000];
	/* long request line */
	memset(big, 'a', 8000);
	memcpy(big, "GET /", 5);
	memcpy(big + 8000, " HTTP/1.1\r\n\r\n", 13);
	expect_error(&f, big, 8013, 414);
	/* 10^4 headers */
	size_t n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n");
	for (int i = 0; i < 10000; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "X-%d: y\r\n", i);
	n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
	expect_error(&f, big, n, 431);
	/* Content-Length: huge, bad, conflicting */
	const char *s = "PUT /echo HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n";
	expect_error(&f, s, strlen(s), 413);
	s = "PUT /echo HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n";
	expect_error(&f, s, strlen(s), 400);
	s = "PUT /echo HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc";
	expect_error(&f, s, strlen(s), 400);
	s = "PUT /echo HTTP/1.1\r\nContent-Length: -5\r\n\r\n";
	expect_error(&f, s, strlen(s), 400);
	/* chunked */
	s = "PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
	expect_error(&f, s, strlen(s), 400);
	/* a body over the limit, sent in full: 413 without reading it */
	n = (size_t)snprintf(big, sizeof(big),
			     "PUT /echo HTTP/1.1\r\nContent-Length: 200000\r\n\r\n");
	memset(big + n, '{', 200000);
	expect_error(&f, big, n + 200000, 413);
	/* others */
	s = "BREW /pot HTTP/1.1\r\n\r\n";
	expect_error(&f, s, strlen(s), 405);
	s = "GET / HTTP/2.0\r\n\r\n";
	expect_error(&f, s, strlen(s), 505);
	s = "GET /a%2fb HTTP/1.1\r\n\r\n";
	expect_error(&f, s, strlen(s), 400);
	s = "GET / HTTP/1.1\r\nExpect: tea\r\n\r\n";
	expect_error(&f, s, strlen(s), 417);
	s = "\x16\x03\x01\x02\x01\x01\xfc\x03\x03\r\n"; /* TLS, say */
	expect_error(&f, s, strlen(s), 400);
	/* an error after a good request on the same connection */
	struct tc *c = tc_open(f.path);
	struct resp r;
	CHECK(roundtrip(c, "GET /hello HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\nBad Header: x\r\n\r\n",
			&r));
	CHECK_EQ(r.status, 200);
	CHECK(read_resp(c, &r, false));
	CHECK_EQ(r.status, 400);
	CHECK(closed_by_server(c->fd));
	tc_close(c);
	/* the server is still fine */
	c = tc_open(f.path);
	CHECK(roundtrip(c, "GET /hello HTTP/1.1\r\n\r\n", &r));
	CHECK_EQ(r.status, 200);
	tc_close(c);
	struct http_stats st;
	http_server_stats(&f.s, &st);
	CHECK_EQ(st.errors, 14);
	CHECK_EQ(st.requests, 2);
	fx_stop(&f);
}

TEST(server_expect_continue)
{
	struct fx f;
	fx_start(&f, NULL, true);
	struct tc *c = tc_open(f.path);
	CHECK(puts_(c->fd,
		    "PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
	struct resp r;
	CHECK(read_resp(c, &r, true));
	CHECK_EQ(r.status, 100);
	CHECK_STR(r.head, "HTTP/1.1 100 Continue\r\n\r\n");
	CHECK(puts_(c->fd, "hello"));
	CHECK(read_resp(c, &r, false));
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, "PUT /echo ? hello");
	/* body sent at once with the head: no 100 needed (none sent) */
	CHECK(roundtrip(c,
			"PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
			&r));
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, "PUT /echo ? ok");
	/* too large with Expect: the final answer, no 100 */
	CHECK(puts_(c->fd, "PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\n"
			   "Content-Length: 99999\r\n\r\n"));
	CHECK(read_resp(c, &r, false));
	CHECK_EQ(r.status, 413);
	CHECK(closed_by_server(c->fd));
	tc_close(c);
	fx_stop(&f);
}

/* Wait until the server has @n connections (a thread runs the loop). */
static bool wait_conns(struct fx *f, unsigned n)
{
	for (int i = 0; i < 500; i++) {
		if (http_server_conns(&f->s) == n)
			return true;
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	return false;
}

/* Wait until the server has counted @n timeouts. */
static bool wait_timeouts(struct fx *f, uint64_t n)
{
	for (int i = 0; i < 500; i++) {
		struct http_stats st;
		http_server_stats(&f->s, &st);
		if (st.timeouts >= n)
			return true;
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	return false;
}

TEST(server_client_vanishes)
{
	struct fx f;
	fx_start(&f, NULL, true);
	/* partial head, partial body, nothing at all: each just goes away */
	const char *partial[] = {
		"GET /hel",
		"PUT /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"half\":",
		"",
		"PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
	};
	for (int round = 0; round < 20; round++) {
		int fd = connect_to(f.path);
		CHECK(fd >= 0);
		puts_(fd, partial[round % 4]);
		close(fd);
	}
	CHECK(wait_conns(&f, 0));
	struct tc *c = tc_open(f.path);
	struct resp r;
	CHECK(roundtrip(c, "GET /hello HTTP/1.1\r\n\r\n", &r));
	CHECK_EQ(r.status, 200);
	tc_close(c);
	CHECK(wait_conns(&f, 0));
	struct http_stats st;
	http_server_stats(&f.s, &st);
	CHECK_EQ(st.conns_accepted, 21);
	CHECK_EQ(st.requests, 1);
	fx_stop(&f);
	CHECK_EQ(f.count.requests, 1);
}

TEST(server_timeouts)
{
	struct http_limits lim = {.request_timeout_ms = 100, .idle_timeout_ms = 100,
				  .write_timeout_ms = 100, .max_response = 8 << 20};
	struct fx f;
	fx_start(&f, &lim, true);
	/* slowloris: a request that never completes gets 408, then closed */
	struct tc *c = tc_open(f.path);
	CHECK(puts_(c->fd, "GET /hello HTTP/1.1\r\nHost: x"));
	struct resp r;
	CHECK(read_resp(c, &r, false));
	CHECK_EQ(r.status, 408);
	CHECK(closed_by_server(c->fd));
	tc_close(c);
	/* a body that never completes, trickled */
	c = tc_open(f.path);
	CHECK(puts_(c->fd, "PUT /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n"));
	for (int i = 0; i < 3; i++)
		puts_(c->fd, "x");
	CHECK(closed_by_server(c->fd));
	tc_close(c);
	/* idle keep-alive connection: closed without a word */
	c = tc_open(f.path);
	CHECK(roundtrip(c, "GET /hello HTTP/1.1\r\n\r\n", &r));
	char b[64];
	ssize_t n = recv(c->fd, b, sizeof(b), 0);
	CHECK(n == 0);
	tc_close(c);
	/* a client that does not read a large response: dropped */
	int fd = connect_to(f.path);
	CHECK(puts_(fd, "GET /big?4000000 HTTP/1.1\r\n\r\n"));
	CHECK(wait_timeouts(&f, 4));
	close(fd);
	struct http_stats st;
	http_server_stats(&f.s, &st);
	CHECK_EQ(st.timeouts, 4);
	CHECK_EQ(st.errors, 2); /* the two 408 */
	CHECK_EQ(http_server_conns(&f.s), 0);
	fx_stop(&f);
}

TEST(server_connection_limit)
{
	struct http_limits lim = {.max_conns = 2};
	struct fx f;
	fx_start(&f, &lim, false); /* the test pumps the loop: deterministic order */
	struct resp r;
	/* A and B idle after one request each (A first) */
	struct tc *a = tc_open(f.path), *b = tc_open(f.path);
	puts_(a->fd, "GET /hello HTTP/1.1\r\n\r\n");
	pump(&f);
	CHECK(read_resp(a, &r, false));
	puts_(b->fd, "GET /hello HTTP/1.1\r\n\r\n");
	pump(&f);
	CHECK(read_resp(b, &r, false));
	CHECK_EQ(http_server_conns(&f.s), 2);
	/* C: the longest idle (A) makes room */
	struct tc *c = tc_open(f.path);
	puts_(c->fd, "GET /hello HTTP/1.1\r\n\r\n");
	pump(&f);
	CHECK(read_resp(c, &r, false));
	CHECK_EQ(r.status, 200);
	CHECK(closed_by_server(a->fd));
	puts_(b->fd, "GET /hello HTTP/1.1\r\n\r\n");
	pump(&f);
	CHECK(read_resp(b, &r, false));
	CHECK_EQ(r.status, 200);
	tc_close(a);
	/* B and C busy with partial requests: D is refused with 503 */
	puts_(b->fd, "GET /hel");
	puts_(c->fd, "PUT /echo HTTP/1.1\r\nContent-Length: 4\r\n\r\nab");
	pump(&f);
	struct tc *d = tc_open(f.path);
	pump(&f);
	CHECK(read_resp(d, &r, false));
	CHECK_EQ(r.status, 503);
	CHECK(closed_by_server(d->fd));
	tc_close(d);
	/* B and C finish normally */
	puts_(b->fd, "lo HTTP/1.1\r\n\r\n");
	puts_(c->fd, "cd");
	pump(&f);
	CHECK(read_resp(b, &r, false));
	CHECK_EQ(r.status, 200);
	CHECK(read_resp(c, &r, false));
	CHECK_STR(r.body, "PUT /echo ? abcd");
	tc_close(b);
	tc_close(c);
	pump(&f);
	CHECK_EQ(http_server_conns(&f.s), 0);
	struct http_stats st;
	http_server_stats(&f.s, &st);
	CHECK_EQ(st.conns_accepted, 3);
	CHECK_EQ(st.conns_evicted, 1);
	CHECK_EQ(st.conns_refused, 1);
	fx_stop(&f);
}

TEST(server_many_connections)
{
	struct fx f;
	fx_start(&f, NULL, true);
	struct tc *c[HTTP_DEFAULT_MAX_CONNS];
	struct resp r;
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < HTTP_DEFAULT_MAX_CONNS; i++) {
			c[i] = tc_open(f.path);
			CHECK(roundtrip(c[i], "GET /hello HTTP/1.1\r\n\r\n", &r));
		}
		for (int i = 0; i < HTTP_DEFAULT_MAX_CONNS; i++) {
			CHECK(roundtrip(c[i], "GET /hello HTTP/1.1\r\n\r\n", &r));
			CHECK_EQ(r.status, 200);
			tc_close(c[i]);
		}
	}
	CHECK(wait_conns(&f, 0));
	struct http_stats st;
	http_server_stats(&f.s, &st);
	CHECK_EQ(st.conns_evicted, 0);
	CHECK_EQ(st.requests, 3 * 2 * HTTP_DEFAULT_MAX_CONNS);
	fx_stop(&f);
}

TEST(server_accept_out_of_fds)
{
	struct fx f;
	fx_start(&f, NULL, false);
	struct tc *c = tc_open(f.path);
	CHECK(puts_(c->fd, "GET /hello HTTP/1.1\r\n\r\n"));
	/* no fd left for accept(): EMFILE */
	struct rlimit old, low;
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
	int next = dup(0);
	close(next);
	low = old;
	low.rlim_cur = (rlim_t)next;
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
	pump(&f);
	/* accepting pauses (the pending connection would make a level-triggered
	 * listening socket spin) */
	CHECK(f.s.accept_resume_ns != 0);
	CHECK_EQ(http_server_conns(&f.s), 0);
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
	/* and resumes by itself: the connection is served eventually */
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
	for (int i = 0; i < 100 && poll(&pfd, 1, 0) == 0; i++)
		loop_run_once(&f.loop, 50);
	struct resp r;
	CHECK(read_resp(c, &r, false));
	CHECK_EQ(r.status, 200);
	CHECK_EQ(f.s.accept_resume_ns, 0);
	tc_close(c);
	pump(&f);
	fx_stop(&f);
}

TEST(socket_file_safety)
{
	char dir[] = "/tmp/visor-http-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[100];
	snprintf(path, sizeof(path), "%s/api.sock", dir);
	struct loop l;
	CHECK_EQ(loop_init(&l), 0);
	struct counter cnt = {0};
	char err[256] = "";
	struct http_server s, s2;

	/* 0600 whatever the umask, and the umask is restored */
	mode_t old = umask(0);
	CHECK_EQ(http_server_init(&s, path, &l, NULL, handler, &cnt, err, sizeof(err)), 0);
	CHECK_EQ(umask(old), 0);
	struct stat st;
	CHECK_EQ(lstat(path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0600);

	/* a live socket is refused and left alone */
	CHECK_EQ(http_server_init(&s2, path, &l, NULL, handler, &cnt, err, sizeof(err)),
		 -EADDRINUSE);
	CHECK(strstr(err, "another process is serving") != NULL);
	CHECK(strstr(err, path) != NULL);
	http_server_destroy(&s2); /* harmless after a failed init */
	struct stat st2;
	CHECK_EQ(lstat(path, &st2), 0);
	CHECK_EQ(st2.st_ino, st.st_ino);
	/* ... and still serves (the probe connection is harmless) */
	struct loop_runner lr;
	CHECK_EQ(loop_runner_start(&lr, &l), 0);
	char *body = NULL;
	int status = 0;
	CHECK_EQ(http_client_request(path, "GET", "/hello", NULL, 5000, &status, &body, NULL, err,
				     sizeof(err)),
		 0);
	CHECK_EQ(status, 200);
	free(body);
	CHECK_EQ(loop_runner_stop(&lr), 0);
	http_server_destroy(&s);
	CHECK(lstat(path, &st) < 0);
	http_server_destroy(&s); /* twice is fine */

	/* a stale socket (nobody listening) is replaced */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	CHECK_EQ(lstat(path, &st), 0);
	CHECK_EQ(http_server_init(&s, path, &l, NULL, handler, &cnt, err, sizeof(err)), 0);
	int probe = connect_to(path); /* the stale one refused connections */
	CHECK(probe >= 0);
	close(probe);

	/* destroy unlinks only its own socket: someone replaced it */
	char moved[160];
	snprintf(moved, sizeof(moved), "%s/moved.sock", dir);
	CHECK_EQ(rename(path, moved), 0);
	FILE *fp = fopen(path, "w");
	fputs("precious", fp);
	fclose(fp);
	http_server_destroy(&s);
	CHECK_EQ(lstat(path, &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_EQ(lstat(moved, &st), 0); /* not ours to remove either: renamed away */
	unlink(moved);

	/* a regular file is refused and never unlinked */
	CHECK_EQ(http_server_init(&s, path, &l, NULL, handler, &cnt, err, sizeof(err)), -EEXIST);
	CHECK(strstr(err, "not a socket") != NULL);
	fp = fopen(path, "r");
	char buf[16] = "";
	CHECK(fp && fgets(buf, sizeof(buf), fp));
	if (fp)
		fclose(fp);
	CHECK_STR(buf, "precious");
	unlink(path);
	/* nor a directory, nor a symlink to a socket */
	CHECK_EQ(mkdir(path, 0700), 0);
	CHECK_EQ(http_server_init(&s, path, &l, NULL, handler, &cnt, err, sizeof(err)), -EEXIST);
	rmdir(path);
	CHECK_EQ(symlink(moved, path), 0);
	CHECK_EQ(http_server_init(&s, path, &l, NULL, handler, &cnt, err, sizeof(err)), -EEXIST);
	unlink(path);

	/* path length against sun_path; bad limits */
	char longp[200];
	memset(longp, 'p', sizeof(longp));
	longp[0] = '/';
	longp[sizeof(longp) - 1] = 0;
	CHECK_EQ(http_server_init(&s, longp, &l, NULL, handler, &cnt, err, sizeof(err)),
		 -ENAMETOOLONG);
	CHECK_EQ(http_server_init(&s, "", &l, NULL, handler, &cnt, NULL, 0), -ENAMETOOLONG);
	struct http_limits lim = {.max_conns = HTTP_MAX_CONNS + 1};
	CHECK_EQ(http_server_init(&s, path, &l, &lim, handler, &cnt, err, sizeof(err)), -EINVAL);
	CHECK(lstat(path, &st) < 0);
	/* a directory that does not exist */
	char nodir[160];
	snprintf(nodir, sizeof(nodir), "%s/no/such.sock", dir);
	CHECK_EQ(http_server_init(&s, nodir, &l, NULL, handler, &cnt, err, sizeof(err)), -ENOENT);
	loop_destroy(&l);
	CHECK_EQ(rmdir(dir), 0);
}

TEST_MAIN()
