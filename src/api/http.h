/* SPDX-License-Identifier: MIT */
/*
 * http.h - the HTTP/1.1 transport of the REST API: an incremental request
 * parser and a server on a Unix stream socket driven by the event loop.
 *
 * Only transport lives here; routes and JSON belong to the API layer,
 * which supplies one synchronous handler.  The dialect is what
 * Firecracker's API clients speak (its Go SDK, firectl, Kata, curl
 * --unix-socket, Python requests-unixsocket): HTTP/1.0 and 1.1 requests
 * with Content-Length bodies, keep-alive, pipelining, Expect: 100-continue.
 *
 * Parser policies (each violation is an error status, and the server
 * closes the connection after answering it: the byte stream can no longer
 * be trusted to be in sync):
 *   - Lines end in CRLF; a bare LF is accepted as well (RFC 9112 §2.2
 *     allows it; it also lets people type requests with socat/nc).  A CR
 *     anywhere else is a control byte: 400.  Empty lines before a request
 *     line are skipped (at most max_request_line bytes of them).
 *   - Request line "METHOD SP TARGET SP HTTP/x.y", single spaces, printable
 *     ASCII only; longer than max_request_line bytes (without CRLF): 414.
 *     Methods GET PUT PATCH POST DELETE HEAD (case-sensitive); any other
 *     token: 405; not a token: 400.  Versions HTTP/1.0 and HTTP/1.1; any
 *     other well-formed HTTP/d.d: 505.
 *   - Target: origin-form "/path[?query]" or absolute-form
 *     "http://authority/path[?query]".  The path is percent-decoded;
 *     malformed escapes, a decoded NUL or control byte, an encoded '/'
 *     (%2F: would make the decoded path ambiguous), "." or ".." segments
 *     and fragments ('#') are 400.  The query is kept raw (not decoded).
 *   - Headers: names are tokens (no space before ':'), matched without
 *     case; values trimmed of SP/HT and free of control bytes other than
 *     HT; obs-fold continuation lines are 400.  More than max_headers
 *     headers or more than max_header_bytes bytes of header section: 431.
 *     Host is not required (no virtual hosts on a Unix socket).
 *   - Content-Length: digits only; a list or repeated header must repeat
 *     the same value; anything else (sign, empty, overflow) is 400; larger
 *     than max_body is 413, answered as soon as the headers are complete,
 *     without reading the body.  Without Content-Length a request has no
 *     body (RFC 9112 §6.3), also PUT/PATCH/POST; if what follows such a
 *     request is not a request line, the error is 411 Length Required.
 *   - Transfer-Encoding (chunked or any other): 501; Firecracker's API
 *     does not take it either.
 *   - Expect: 100-continue is honoured (HTTP/1.1, non-empty body); other
 *     expectations are 417.
 *   - Connection: "close" / "keep-alive" tokens; HTTP/1.1 keeps the
 *     connection by default, HTTP/1.0 closes it unless keep-alive.
 *   - Memory: at most max_request_line + max_header_bytes + 2 bytes of
 *     head buffer, max_headers header slots and max_body + 1 body bytes
 *     per request in progress, whatever the input; nothing between
 *     requests.
 *
 * Server policies (details at http_server_init):
 *   - The socket file is created 0600 (umask 0177 around bind(): umask is
 *     process-wide, so create the server before other threads create
 *     files).  An existing socket that accepts connections is left alone
 *     (-EADDRINUSE), a stale one (ECONNREFUSED) is replaced, any other kind
 *     of file is refused (-EEXIST) and never unlinked.  destroy unlinks the
 *     path only while it still is the socket this server bound.
 *   - Everything is non-blocking; sends use MSG_NOSIGNAL.  A connection
 *     holds an 8 KiB read buffer, the parser's buffers of the request in
 *     progress, and at most one response (head + at most max_response
 *     bytes) in its output buffer: pipelined requests wait unread while it
 *     drains, so the output of a client that does not read stays bounded;
 *     a response not fully sent write_timeout_ms after it was queued gets
 *     the connection closed.
 *   - At most max_conns connections.  When full, the connection that has
 *     been idle (between keep-alive requests) the longest is closed to
 *     make room; if no connection is idle the newcomer gets 503 and is
 *     closed.  (A client may then find its idle connection closed, as with
 *     any idle timeout; Go's, curl's and urllib3's clients reconnect.)
 *   - Timeouts (one timerfd, armed for the earliest deadline): a request
 *     that is not complete request_timeout_ms after its first byte gets
 *     408 and the connection is closed (slowloris: trickling bytes does
 *     not extend it); an idle keep-alive connection is closed silently
 *     after idle_timeout_ms (longer than Go's 90 s IdleConnTimeout, so Go
 *     clients close first).
 *   - A client that disappears mid-request just has its state freed.
 *   - accept() failing for lack of fds or memory pauses accepting for
 *     100 ms instead of spinning on the readable listening socket.
 *   - Parse errors are answered with {"fault_message": "..."} (the
 *     Firecracker error body) and "Connection: close"; errors of the
 *     handler's own (404, 400 from JSON) keep the connection.
 *
 * Threads: a server lives on one loop; its callbacks and the handler run on
 * that loop's thread.  init and destroy run on that thread or while the
 * loop is not running.  http_server_stats() may be called from any thread.
 */
#ifndef VISOR_API_HTTP_H
#define VISOR_API_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct loop;

/* Limits and timeouts; a field left 0 takes the default in brackets. */
struct http_limits {
	size_t max_request_line;     /* [4096] bytes of request line, without CRLF */
	unsigned max_headers;        /* [64] header lines per request */
	size_t max_header_bytes;     /* [16384] bytes of header section, line ends included */
	size_t max_body;             /* [51200] request body bytes (Content-Length) */
	size_t max_response;         /* [1 MiB] response body bytes a handler may set */
	unsigned max_conns;          /* [32] simultaneous connections (at most HTTP_MAX_CONNS) */
	unsigned request_timeout_ms; /* [10000] first byte to complete request */
	unsigned idle_timeout_ms;    /* [300000] keep-alive connection without a request */
	unsigned write_timeout_ms;   /* [10000] a response the client does not read */
};

#define HTTP_DEFAULT_MAX_REQUEST_LINE 4096
#define HTTP_DEFAULT_MAX_HEADERS 64
#define HTTP_DEFAULT_MAX_HEADER_BYTES 16384
#define HTTP_DEFAULT_MAX_BODY 51200
#define HTTP_DEFAULT_MAX_RESPONSE (1u << 20)
#define HTTP_DEFAULT_MAX_CONNS 32
#define HTTP_DEFAULT_REQUEST_TIMEOUT_MS 10000
#define HTTP_DEFAULT_IDLE_TIMEOUT_MS 300000
#define HTTP_DEFAULT_WRITE_TIMEOUT_MS 10000
/* Upper bound of max_conns: the event loop's table (LOOP_MAX_FDS) also
 * holds the listening socket, the timer and the API thread's own fds. */
#define HTTP_MAX_CONNS 48

/* @out = @in (may be NULL) with every 0 field replaced by its default. */
void http_limits_fill(struct http_limits *out, const struct http_limits *in);

enum http_method { HTTP_GET, HTTP_PUT, HTTP_PATCH, HTTP_POST, HTTP_DELETE, HTTP_HEAD };

/* "GET", "PUT", ... for a method, "?" for anything else. */
const char *http_method_name(enum http_method m);

struct http_header {
	const char *name;  /* as sent (case preserved), NUL-terminated */
	const char *value; /* OWS-trimmed, NUL-terminated */
};

/* A complete request.  All pointers point into the parser and stay valid
 * until http_parser_next() or http_parser_free(). */
struct http_request {
	enum http_method method;
	int version_minor;  /* 0 (HTTP/1.0) or 1 (HTTP/1.1) */
	const char *path;   /* percent-decoded, starts with '/', no NUL or control bytes */
	size_t path_len;    /* strlen(path) */
	const char *query;  /* raw text after '?' ("" when none) */
	bool keep_alive;    /* the client lets the connection live on after the response */
	bool expect_continue; /* the client sent Expect: 100-continue */
	bool has_length;    /* a Content-Length header was present */
	const struct http_header *headers;
	unsigned nheaders;
	const char *body;   /* body_len bytes followed by a NUL ("" when empty) */
	size_t body_len;
};

/* First value of header @name (case-insensitive), or NULL. */
const char *http_request_header(const struct http_request *r, const char *name);

/* ---- parser -------------------------------------------------------------- */

enum http_parse_result {
	HTTP_PARSE_ERROR = -1, /* p->status / p->error say why; stays in error */
	HTTP_PARSE_MORE = 0,   /* everything consumed, request not complete yet */
	HTTP_PARSE_DONE = 1,   /* p->req is complete; bytes after it not consumed */
};

struct http_parser {
	struct http_limits lim; /* filled (no zero fields) */
	int state;              /* private */
	/* head buffer: request line then header lines, NUL-terminated in place */
	char *head;
	size_t head_len;
	size_t line_start;   /* offset of the line being received */
	size_t skipped;      /* bytes of empty lines before the request line */
	size_t header_bytes; /* bytes of header section received */
	struct http_header *hdrs;
	uint64_t content_length;
	bool seen_length, seen_te, close_token, keep_alive_token;
	bool prev_unsized;   /* the previous request was PUT/PATCH/POST without Content-Length */
	char *body;
	size_t body_got;
	bool started;        /* at least one byte of this request was consumed */
	/* Set when the head of a request that expects 100-continue is complete
	 * and its body still has to come; the server answers 100 Continue if
	 * the feed ends without the body, and clears the flag. */
	bool continue_pending;
	struct http_request req; /* valid after HTTP_PARSE_DONE */
	int status;              /* after HTTP_PARSE_ERROR: 400, 405, 411, 413, 414, 417, 431,
				    500 (no memory), 501, 505 */
	const char *error;       /* after HTTP_PARSE_ERROR: static text for the client */
};

/* Prepare @p with @lim (NULL or zero fields: defaults).  Allocates nothing
 * yet; every buffer is allocated when a request needs it and within the
 * limits.  Cannot fail. */
void http_parser_init(struct http_parser *p, const struct http_limits *lim);

/* Free every buffer; @p may be re-initialised. */
void http_parser_free(struct http_parser *p);

/* Consume bytes of @data[0..@len) (any chunking of the stream gives the
 * same requests and errors).  *@used receives the number of bytes taken:
 * all of them for HTTP_PARSE_MORE, up to the end of the request for
 * HTTP_PARSE_DONE (feed the rest after http_parser_next()), up to where
 * the error was found for HTTP_PARSE_ERROR.  After DONE or ERROR, further
 * feeds return the same result and consume nothing. */
int http_parser_feed(struct http_parser *p, const void *data, size_t len, size_t *used);

/* After HTTP_PARSE_DONE: forget the request (its buffers are freed) and
 * expect the next one. */
void http_parser_next(struct http_parser *p);

/* True while no byte of the next request has been consumed. */
bool http_parser_idle(const struct http_parser *p);

/* ---- responses ------------------------------------------------------------ */

/* What a handler answers.  The server initialises it (status 200, no body,
 * JSON content type) before calling the handler. */
struct http_response {
	int status;               /* 200..599 (1xx is not allowed: 500 is sent instead) */
	const char *content_type; /* NULL: "application/json"; must stay valid until the
				     handler returns; no control bytes */
	bool close;               /* close the connection after this response */
	/* Called once (on the server's thread) when the connection this
	 * response went out on closes, i.e. after it was sent (or the client
	 * went away); implies close.  Optional. */
	void (*after)(void *ctx);
	void *after_ctx;
	/* private: the body, set with http_response_append/_printf */
	char *body;
	size_t body_len, body_cap, body_max;
	int body_err; /* first append error: the server sends 500 instead */
};

/* Append @len bytes to the body.  0, -EMSGSIZE past max_response, -ENOMEM.
 * On failure the response becomes a 500 (the handler may carry on). */
int http_response_append(struct http_response *r, const void *data, size_t len);

/* Append printf-formatted text to the body.  0 / -EMSGSIZE / -ENOMEM /
 * -EINVAL (format error); as http_response_append on failure. */
int http_response_printf(struct http_response *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Standard reason phrase of @status ("OK", "Not Found", ...), or "Unknown". */
const char *http_reason(int status);

/* ---- server --------------------------------------------------------------- */

/* Handle one request, synchronously, on the loop thread: set resp->status,
 * optionally a body and content type.  HEAD requests reach the handler
 * like any other (the server drops the body, keeping its length); a 204
 * response never carries a body.  The handler must not destroy the
 * server; it may call loop_stop(). */
typedef void (*http_handler)(void *ctx, const struct http_request *req,
			     struct http_response *resp);

struct http_stats {
	uint64_t requests;       /* requests handed to the handler */
	uint64_t errors;         /* error responses by the transport (parse errors, 408, 500) */
	uint64_t conns_accepted; /* connections served */
	uint64_t conns_refused;  /* connections answered 503 (limit reached, nothing idle) */
	uint64_t conns_evicted;  /* idle keep-alive connections closed to make room */
	uint64_t timeouts;       /* connections closed by a timeout */
};

struct http_conn; /* private, in http.c */

struct http_server {
	struct loop *loop;
	http_handler handler;
	void *ctx;
	struct http_limits lim;
	int listen_fd;
	int timer_fd;
	uint64_t timer_armed_ns; /* absolute deadline armed, 0: disarmed */
	uint64_t accept_resume_ns; /* accept paused (EMFILE...) until then, 0: not paused */
	char path[108];
	dev_t dev; /* identity of the socket file we bound */
	ino_t ino;
	bool own_file;
	struct http_conn *conns; /* lim.max_conns slots */
	unsigned nconns;
	struct http_stats stats; /* updated with relaxed atomics */
};

/* Listen on the Unix socket @path and serve it on @loop with @h(@ctx).
 * @lim may be NULL (defaults).  Checks, in order: @path fits in sun_path
 * (-ENAMETOOLONG); max_conns <= HTTP_MAX_CONNS (-EINVAL); an existing
 * @path: not a socket -> -EEXIST (left in place), a socket that accepts a
 * connection -> -EADDRINUSE ("another process is serving PATH"), a socket
 * that refuses -> stale, unlinked and replaced.  The new socket file has
 * mode 0600.  0, or -errno with one line in @err (which may be NULL);
 * nothing is left behind on failure. */
int http_server_init(struct http_server *s, const char *path, struct loop *loop,
		     const struct http_limits *lim, http_handler h, void *ctx, char *err,
		     size_t errlen);

/* Close every connection and the listening socket, remove the socket file
 * if it is still the one init created (same st_dev/st_ino), free
 * everything.  Safe on a server whose init failed or that was destroyed. */
void http_server_destroy(struct http_server *s);

/* A snapshot of the counters (any thread). */
void http_server_stats(const struct http_server *s, struct http_stats *out);

/* Connections open right now (any thread; a snapshot). */
unsigned http_server_conns(const struct http_server *s);

#endif
