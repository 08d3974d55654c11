/* SPDX-License-Identifier: MIT */
/*
 * http_client.h - a tiny blocking HTTP/1.1 client over a Unix socket, for
 * visor's own command line (`visor ls`, `visor pause VM`) talking to a
 * VM's API socket.
 *
 * One request per connection (Connection: close), a body only with
 * Content-Length, a response read up to its Content-Length (or to the end
 * of the connection when it has none), bounded in size and in time.
 * Interim 1xx responses are skipped.  Chunked responses are not supported
 * (visor's and Firecracker's servers never send them).
 */
#ifndef VISOR_API_HTTP_CLIENT_H
#define VISOR_API_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_CLIENT_MAX_HEAD 16384     /* bytes of a response's status line and headers */
#define HTTP_CLIENT_MAX_BODY (1u << 20) /* bytes of a response body */

/* Send @method @path with @body (NULL: none; PUT/PATCH/POST then send
 * Content-Length: 0) as application/json to the server on the Unix socket
 * @sock_path, and read the response within @timeout_ms in total (connect,
 * send and receive; <= 0: no limit).
 *
 * @status must not be NULL.
 * 0 when a response arrived, whatever its status: *@status holds it and,
 * if @resp_body is not NULL, *@resp_body a malloc'ed, NUL-terminated copy
 * of the body (the caller frees it; "" when empty) and *@resp_len (may be
 * NULL) its length.  Otherwise -errno with one line in @err (may be NULL):
 * -EINVAL bad method/path, -ENAMETOOLONG path does not fit sun_path,
 * -ENOENT no socket there, -ECONNREFUSED nobody listens (stale socket),
 * -ETIMEDOUT, -EMSGSIZE response larger than the bounds above, -EPROTO
 * malformed or truncated response, other connect/send/recv errors.
 * *@status and *@resp_body are untouched on failure. */
int http_client_request(const char *sock_path, const char *method, const char *path,
			const char *body, int timeout_ms, int *status, char **resp_body,
			size_t *resp_len, char *err, size_t errlen);

/* A parsed response head. */
struct http_client_head {
	int status;              /* 100..999 */
	int version_minor;       /* HTTP/1.x */
	bool has_length;         /* Content-Length present ... */
	uint64_t content_length; /* ... with this value */
	bool chunked;            /* a Transfer-Encoding header is present */
	bool close;              /* Connection: close */
};

/* Parse the response head at the start of @buf[0..@len) (exposed for tests
 * and fuzzing).  Returns the head's length in bytes (through its empty
 * line) and fills @h; 0 if @buf holds only part of a head; -EMSGSIZE if no
 * head ends within HTTP_CLIENT_MAX_HEAD bytes; -EPROTO if malformed. */
int http_client_parse_head(const char *buf, size_t len, struct http_client_head *h);

#endif
