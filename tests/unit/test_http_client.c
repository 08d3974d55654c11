/* SPDX-License-Identifier: MIT */
/* The blocking CLI client: against the real server on a loop thread, and
 * against canned byte streams for the response cases the server never
 * produces. */
#include "../../src/api/http_client.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../src/api/http.h"
#include "../../src/event/loop.h"
#include "loop_runner.h"
#include "test.h"

/* ==== response head parser ================================================ */

TEST(parse_head)
{
	struct http_client_head h;
	const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
	CHECK_EQ(http_client_parse_head(s, strlen(s), &h), strlen(s) - 5);
	CHECK_EQ(h.status, 200);
	CHECK_EQ(h.version_minor, 1);
	CHECK(h.has_length);
	CHECK_EQ(h.content_length, 5);
	CHECK(h.close);
	CHECK(!h.chunked);
	/* every prefix is incomplete */
	for (size_t n = 0; n < strlen(s) - 5; n++)
		CHECK_EQ(http_client_parse_head(s, n, &h), 0);
	/* Firecracker's 204 (empty reason), LF-only lines, no reason at all */
	s = "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n";
	CHECK_EQ(http_client_parse_head(s, strlen(s), &h), strlen(s));
	CHECK_EQ(h.status, 204);
	CHECK(!h.close);
	CHECK(!h.has_length);
	s = "HTTP/1.0 404 Not Found\nContent-Length: 0\n\n";
	CHECK_EQ(http_client_parse_head(s, strlen(s), &h), strlen(s));
	CHECK_EQ(h.status, 404);
	CHECK_EQ(h.version_minor, 0);
	s = "HTTP/1.1 100\r\n\r\n";
	CHECK_EQ(http_client_parse_head(s, strlen(s), &h), strlen(s));
	CHECK_EQ(h.status, 100);
	s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	CHECK_EQ(http_client_parse_head(s, strlen(s), &h), strlen(s));
	CHECK(h.chunked);
	s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n";
	CHECK_EQ(http_client_parse_head(s, strlen(s), &h), strlen(s));
	/* malformed */
	const char *bad[] = {
		"SSH-2.0-OpenSSH_9.2\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 099 Odd\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 200 O\x01K\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
		"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: x\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = http_client_parse_head(bad[i], strlen(bad[i]), &h);
		if (r != -EPROTO)
			printf("  bad[%zu]: %d\n", i, r);
		CHECK_EQ(r, -EPROTO);
	}
	/* a head that never ends */
	static char big[HTTP_CLIENT_MAX_HEAD + 100];
	memset(big, 'x', sizeof(big));
	memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
	CHECK_EQ(http_client_parse_head(big, sizeof(big), &h), -EMSGSIZE);
	CHECK_EQ(http_client_parse_head(big, HTTP_CLIENT_MAX_HEAD - 1, &h), 0);
}

/* ==== against the server =================================================== */

struct seen {
	char method[8];
	char path[64];
	char ctype[64];
	char conn[32];
	char body[128];
	bool keep_alive;
};

static void handler(void *ctx, const struct http_request *req, struct http_response *resp)
{
	struct seen *s = ctx;
	snprintf(s->method, sizeof(s->method), "%s", http_method_name(req->method));
	snprintf(s->path, sizeof(s->path), "%s", req->path);
	const char *v = http_request_header(req, "Content-Type");
	snprintf(s->ctype, sizeof(s->ctype), "%s", v ? v : "");
	v = http_request_header(req, "Connection");
	snprintf(s->conn, sizeof(s->conn), "%s", v ? v : "");
	snprintf(s->body, sizeof(s->body), "%s", req->body);
	s->keep_alive = req->keep_alive;
	if (!strcmp(req->path, "/hello")) {
		http_response_printf(resp, "{\"hello\":\"world\"}");
	} else if (!strcmp(req->path, "/echo")) {
		http_response_append(resp, req->body, req->body_len);
	} else if (!strcmp(req->path, "/nocontent")) {
		resp->status = 204;
	} else if (!strcmp(req->path, "/mib")) {
		/* exactly the client's bound, or one byte more */
		size_t n = HTTP_CLIENT_MAX_BODY + (req->query[0] == '+' ? 1 : 0);
		char *b = malloc(n);
		memset(b, 'm', n);
		http_response_append(resp, b, n);
		free(b);
	} else {
		resp->status = 404;
		http_response_printf(resp, "{\"fault_message\":\"no route to %s\"}", req->path);
	}
}

struct fx {
	char dir[64];
	char path[100];
	struct loop loop;
	struct http_server s;
	struct loop_runner lr;
	struct seen seen;
};

static void fx_start(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/visor-httpc-XXXXXX");
	CHECK(mkdtemp(f->dir) != NULL);
	snprintf(f->path, sizeof(f->path), "%s/api.sock", f->dir);
	CHECK_EQ(loop_init(&f->loop), 0);
	char err[256];
	struct http_limits lim = {.max_response = 2 << 20};
	CHECK_EQ(http_server_init(&f->s, f->path, &f->loop, &lim, handler, &f->seen, err,
				  sizeof(err)),
		 0);
	CHECK_EQ(loop_runner_start(&f->lr, &f->loop), 0);
}

static void fx_stop(struct fx *f)
{
	CHECK_EQ(loop_runner_stop(&f->lr), 0);
	http_server_destroy(&f->s);
	loop_destroy(&f->loop);
	rmdir(f->dir);
}

TEST(client_against_server)
{
	struct fx f;
	fx_start(&f);
	char err[256] = "";
	int status = 0;
	char *body = NULL;
	size_t len = 99;
	CHECK_EQ(http_client_request(f.path, "GET", "/hello", NULL, 5000, &status, &body, &len, err,
				     sizeof(err)),
		 0);
	CHECK_EQ(status, 200);
	CHECK_STR(body, "{\"hello\":\"world\"}");
	CHECK_EQ(len, 17);
	CHECK_STR(f.seen.method, "GET");
	CHECK_STR(f.seen.conn, "close");
	CHECK(!f.seen.keep_alive);
	free(body);

	CHECK_EQ(http_client_request(f.path, "PUT", "/echo", "{\"vcpu_count\": 2}", 5000, &status,
				     &body, &len, err, sizeof(err)),
		 0);
	CHECK_EQ(status, 200);
	CHECK_STR(body, "{\"vcpu_count\": 2}");
	CHECK_STR(f.seen.ctype, "application/json");
	free(body);

	CHECK_EQ(http_client_request(f.path, "PATCH", "/nocontent", "{}", 5000, &status, &body,
				     &len, err, sizeof(err)),
		 0);
	CHECK_EQ(status, 204);
	CHECK_STR(body, "");
	CHECK_EQ(len, 0);
	free(body);

	/* PUT without a body sends Content-Length: 0 */
	CHECK_EQ(http_client_request(f.path, "PUT", "/echo", NULL, 5000, &status, &body, &len, err,
				     sizeof(err)),
		 0);
	CHECK_EQ(status, 200);
	CHECK_EQ(len, 0);
	free(body);

	CHECK_EQ(http_client_request(f.path, "DELETE", "/missing", NULL, 5000, &status, &body, &len,
				     err, sizeof(err)),
		 0);
	CHECK_EQ(status, 404);
	CHECK_STR(body, "{\"fault_message\":\"no route to /missing\"}");
	free(body);

	/* HEAD: no body even though Content-Length says 17 */
	CHECK_EQ(http_client_request(f.path, "HEAD", "/hello", NULL, 5000, &status, &body, &len,
				     err, sizeof(err)),
		 0);
	CHECK_EQ(status, 200);
	CHECK_EQ(len, 0);
	free(body);

	/* the body is optional for the caller */
	status = 0;
	CHECK_EQ(http_client_request(f.path, "GET", "/hello", NULL, 5000, &status, NULL, NULL, err,
				     sizeof(err)),
		 0);
	CHECK_EQ(status, 200);

	/* the response bound: 1 MiB is fine, one byte more is not */
	CHECK_EQ(http_client_request(f.path, "GET", "/mib", NULL, 5000, &status, &body, &len, err,
				     sizeof(err)),
		 0);
	CHECK_EQ(len, HTTP_CLIENT_MAX_BODY);
	CHECK(body && body[0] == 'm' && body[len - 1] == 'm' && body[len] == 0);
	free(body);
	body = NULL;
	status = 0;
	CHECK_EQ(http_client_request(f.path, "GET", "/mib?+", NULL, 5000, &status, &body, &len, err,
				     sizeof(err)),
		 -EMSGSIZE);
	CHECK(strstr(err, "too large") != NULL);
	CHECK_EQ(status, 0);
	CHECK(body == NULL);

	/* a body over the server's limit: 413, however the server closes */
	static char big[60001];
	memset(big, '{', sizeof(big) - 1);
	CHECK_EQ(http_client_request(f.path, "PUT", "/echo", big, 5000, &status, &body, &len, err,
				     sizeof(err)),
		 0);
	CHECK_EQ(status, 413);
	CHECK(body && strstr(body, "fault_message"));
	free(body);

	/* every connection was closed (Connection: close) */
	for (int i = 0; i < 500 && http_server_conns(&f.s); i++)
		usleep(10000);
	CHECK_EQ(http_server_conns(&f.s), 0);
	fx_stop(&f);
}

TEST(client_errors)
{
	char dir[] = "/tmp/visor-httpc-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[100];
	snprintf(path, sizeof(path), "%s/x.sock", dir);
	char err[256] = "";
	int status = -7;
	char *body = (char *)"untouched";

	CHECK_EQ(http_client_request(path, "GET", "/", NULL, 1000, &status, &body, NULL, err,
				     sizeof(err)),
		 -ENOENT);
	CHECK(strstr(err, "no such socket") != NULL);
	CHECK_EQ(status, -7);
	CHECK_STR(body, "untouched");

	/* stale socket: bound, nobody listening */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	CHECK_EQ(http_client_request(path, "GET", "/", NULL, 1000, &status, &body, NULL, err,
				     sizeof(err)),
		 -ECONNREFUSED);
	CHECK(strstr(err, "stale") != NULL);
	unlink(path);

	/* listening, never answering: the total timeout */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(fd, 4), 0);
	CHECK_EQ(http_client_request(path, "GET", "/", NULL, 100, &status, &body, NULL, err,
				     sizeof(err)),
		 -ETIMEDOUT);
	CHECK(strstr(err, "no response in time") != NULL);
	CHECK_EQ(status, -7);
	close(fd);
	unlink(path);

	/* bad arguments */
	CHECK_EQ(http_client_request(path, "GE T", "/", NULL, 100, &status, &body, NULL, err,
				     sizeof(err)),
		 -EINVAL);
	CHECK_EQ(http_client_request(path, "", "/", NULL, 100, &status, &body, NULL, NULL, 0),
		 -EINVAL);
	CHECK_EQ(http_client_request(path, "GET", "vm", NULL, 100, &status, &body, NULL, err,
				     sizeof(err)),
		 -EINVAL);
	CHECK_EQ(http_client_request(path, "GET", "/a b", NULL, 100, &status, &body, NULL, err,
				     sizeof(err)),
		 -EINVAL);
	CHECK_EQ(http_client_request(path, "GET", "/a\r\nX: y", NULL, 100, &status, &body, NULL,
				     err, sizeof(err)),
		 -EINVAL);
	char longp[200];
	memset(longp, 'p', sizeof(longp));
	longp[0] = '/';
	longp[sizeof(longp) - 1] = 0;
	CHECK_EQ(http_client_request(longp, "GET", "/", NULL, 100, &status, &body, NULL, err,
				     sizeof(err)),
		 -ENAMETOOLONG);
	CHECK_EQ(status, -7);
	CHECK_EQ(rmdir(dir), 0);
}

/* ==== canned responses ===================================================== */

struct canned {
	int lfd;
	const char *reply;
	size_t reply_len;
	bool bytewise;  /* write the reply one byte at a time */
	bool keep_open; /* wait for the client to close first */
	pthread_t t;
	char got[4096]; /* the request the client sent */
};

static void *canned_main(void *arg)
{
	struct canned *c = arg;
	struct pollfd pfd = {.fd = c->lfd, .events = POLLIN};
	if (poll(&pfd, 1, 5000) != 1)
		return NULL;
	int fd = accept(c->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	size_t n = 0;
	while (n + 1 < sizeof(c->got) && !strstr(c->got, "\r\n\r\n")) {
		ssize_t r = recv(fd, c->got + n, sizeof(c->got) - 1 - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
		c->got[n] = 0;
	}
	if (c->bytewise) {
		for (size_t i = 0; i < c->reply_len; i++)
			if (send(fd, c->reply + i, 1, MSG_NOSIGNAL) != 1)
				break;
	} else {
		size_t off = 0;
		while (off < c->reply_len) {
			ssize_t w = send(fd, c->reply + off, c->reply_len - off, MSG_NOSIGNAL);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	if (c->keep_open) {
		char b[64];
		while (recv(fd, b, sizeof(b), 0) > 0)
			;
	}
	close(fd);
	return NULL;
}

/* Run one client request against a canned reply; the client's result. */
static int against(const char *reply, size_t len, bool bytewise, bool keep_open, int *status,
		   char **body, size_t *blen, char *err, size_t errlen)
{
	char dir[] = "/tmp/visor-httpc-XXXXXX";
	if (!mkdtemp(dir))
		return -999;
	char path[100];
	snprintf(path, sizeof(path), "%s/c.sock", dir);
	struct canned c = {.reply = reply, .reply_len = len, .bytewise = bytewise,
			   .keep_open = keep_open};
	c.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (bind(c.lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(c.lfd, 4))
		return -998;
	pthread_create(&c.t, NULL, canned_main, &c);
	int r = http_client_request(path, "GET", "/x", NULL, 3000, status, body, blen, err, errlen);
	pthread_join(c.t, NULL);
	close(c.lfd);
	unlink(path);
	rmdir(dir);
	return r;
}

static int against_s(const char *reply, int *status, char **body, char *err)
{
	size_t blen;
	return against(reply, strlen(reply), false, false, status, body, &blen, err, 256);
}

TEST(client_canned_responses)
{
	int status = 0;
	char *body = NULL;
	char err[256];
	size_t blen;

	/* interim responses are skipped */
	const char *s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	CHECK_EQ(against_s(s, &status, &body, err), 0);
	CHECK_EQ(status, 200);
	CHECK_STR(body, "ok");
	free(body);
	/* the same, one byte per write */
	CHECK_EQ(against(s, strlen(s), true, false, &status, &body, &blen, err, sizeof(err)), 0);
	CHECK_STR(body, "ok");
	free(body);
	/* no Content-Length: up to the end of the connection */
	CHECK_EQ(against_s("HTTP/1.0 200 OK\r\n\r\nuntil eof", &status, &body, err), 0);
	CHECK_STR(body, "until eof");
	free(body);
	/* Firecracker's 204 on a connection it keeps open: no waiting for EOF */
	s = "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n";
	CHECK_EQ(against(s, strlen(s), false, true, &status, &body, &blen, err, sizeof(err)), 0);
	CHECK_EQ(status, 204);
	CHECK_EQ(blen, 0);
	free(body);
	/* Content-Length response on a kept connection: no waiting either */
	s = "HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\nnope";
	CHECK_EQ(against(s, strlen(s), false, true, &status, &body, &blen, err, sizeof(err)), 0);
	CHECK_EQ(status, 400);
	CHECK_STR(body, "nope");
	free(body);

	body = NULL;
	status = 0;
	CHECK_EQ(against_s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			   "2\r\nok\r\n0\r\n\r\n",
			   &status, &body, err),
		 -EPROTO);
	CHECK(strstr(err, "chunked") != NULL);
	CHECK_EQ(against_s("HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n", &status, &body,
			   err),
		 -EMSGSIZE);
	CHECK_EQ(against_s("SSH-2.0-OpenSSH_9.2\r\n", &status, &body, err), -EPROTO);
	CHECK(strstr(err, "malformed") != NULL);
	CHECK_EQ(against_s("", &status, &body, err), -EPROTO);
	CHECK(strstr(err, "without a response") != NULL);
	CHECK_EQ(against_s("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", &status, &body, err),
		 -EPROTO);
	CHECK(strstr(err, "middle") != NULL);
	CHECK_EQ(against_s("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
			   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
			   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
			   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
			   "HTTP/1.1 100 Continue\r\n\r\n",
			   &status, &body, err),
		 -EPROTO);
	/* until EOF, but more than the bound */
	size_t n = 19 + HTTP_CLIENT_MAX_BODY + 1;
	char *big = malloc(n);
	memcpy(big, "HTTP/1.0 200 OK\r\n\r\n", 19);
	memset(big + 19, 'b', n - 19);
	CHECK_EQ(against(big, n, false, false, &status, &body, &blen, err, sizeof(err)), -EMSGSIZE);
	free(big);
	CHECK(body == NULL);
	CHECK_EQ(status, 0);
}

TEST(client_request_bytes)
{
	/* what goes on the wire */
	char dir[] = "/tmp/visor-httpc-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[100];
	snprintf(path, sizeof(path), "%s/c.sock", dir);
	const char *reply = "HTTP/1.1 204 No Content\r\n\r\n";
	struct canned c = {.reply = reply, .reply_len = strlen(reply)};
	c.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	CHECK_EQ(bind(c.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(c.lfd, 4), 0);
	pthread_create(&c.t, NULL, canned_main, &c);
	int status;
	CHECK_EQ(http_client_request(path, "PUT", "/actions", "{\"action_type\":\"Pause\"}", 3000,
				     &status, NULL, NULL, NULL, 0),
		 0);
	pthread_join(c.t, NULL);
	CHECK_EQ(status, 204);
	CHECK(strstr(c.got, "PUT /actions HTTP/1.1\r\n") == c.got);
	CHECK(strstr(c.got, "\r\nHost: localhost\r\n") != NULL);
	CHECK(strstr(c.got, "\r\nConnection: close\r\n") != NULL);
	CHECK(strstr(c.got, "\r\nContent-Type: application/json\r\n") != NULL);
	CHECK(strstr(c.got, "\r\nContent-Length: 23\r\n\r\n{\"action_type\":\"Pause\"}") != NULL);
	close(c.lfd);
	unlink(path);
	rmdir(dir);
}

TEST_MAIN()
