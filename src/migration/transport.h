/* SPDX-License-Identifier: MIT */
/*
 * migration/transport.h - the connection a live migration runs over: a
 * stream socket (Unix or TCP) with optional mutual TLS (OpenSSL, TLS 1.3
 * only), read and written by one migration thread with poll()-based
 * timeouts.  docs/migration-protocol.md, "Transport and TLS", is the
 * user-facing description (URLs, certificates, errors).
 *
 *   destination                            source
 *   mig_url_parse("tcp:0.0.0.0:4444")      mig_url_parse("tcp:10.0.0.2:4444")
 *   mig_listen(&u, &lfd)
 *   mig_accept(lfd, &tls, 10000, &c)  <->  mig_connect(&u, &tls, 10000, &c)
 *   mig_conn_read(c, ...)             <--  mig_conn_write(c, ...)
 *   mig_conn_close(c); mig_listen_close(lfd, &u)
 *
 * Every socket is SOCK_CLOEXEC and O_NONBLOCK; reads and writes wait in
 * poll() with the connection's inactivity timeout, retry EINTR and never
 * raise SIGPIPE (MSG_NOSIGNAL; TLS goes through a BIO of our own that
 * sends with MSG_NOSIGNAL).  Plain writes hand the caller's buffer to the
 * kernel in one send() per wake-up: no copy, no per-byte work.
 *
 * Threads: one thread reads and one thread writes a connection (they may
 * be the same thread, or two threads at the same time, e.g. post-copy's
 * page requests against the page stream); mig_conn_shutdown() and the
 * byte counters may be called from any thread.  With TLS the SSL object
 * is locked only for the length of each OpenSSL call, never while a
 * thread waits in poll().
 *
 * Errors: functions return 0 (or a count) or -errno.  The one-line text of
 * the last error of a connection (what OpenSSL said, which certificate
 * check failed) is kept for mig_conn_last_error(); the set-up functions
 * write it into the caller's @err.
 */
#ifndef VISOR_MIGRATION_TRANSPORT_H
#define VISOR_MIGRATION_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- URLs -------------------------------------------------------------- */

enum mig_url_kind { MIG_URL_UNIX, MIG_URL_TCP };

struct mig_url {
	enum mig_url_kind kind;
	char path[108];  /* unix: the socket path (fits sockaddr_un.sun_path with its NUL) */
	char host[256];  /* tcp: the numeric address, IPv6 without its brackets */
	uint16_t port;   /* tcp: 0 only for a listener (the kernel picks one) */
};

/* Longest text mig_url_format() writes, with its NUL. */
#define MIG_URL_TEXT_MAX 384

/*
 * Parse a migration URL:
 *   unix:PATH         PATH absolute or relative, 1 to 107 bytes, no control
 *                     characters (abstract sockets are not supported)
 *   tcp:A.B.C.D:PORT  IPv4, dotted decimal
 *   tcp:[V6]:PORT     IPv6 in brackets (no %zone)
 * PORT is decimal, 0 to 65535 (0: only to listen).  Host names are not
 * accepted: visor is a static binary and does not use the C library's
 * resolver (NSS), so the error says to give a numeric address.
 * Pure.  0 and @u filled, or -EINVAL with one line in @err (@u unchanged).
 */
int mig_url_parse(const char *s, struct mig_url *u, char *err, size_t errlen);

/* @u as mig_url_parse() reads it ("unix:PATH", "tcp:HOST:PORT", IPv6 in
 * brackets), NUL-terminated in buf[0..len).  The length, or -ENOSPC if
 * @len is too small (MIG_URL_TEXT_MAX always suffices for a parsed URL). */
int mig_url_format(const struct mig_url *u, char *buf, size_t len);

/* ---- TLS options ------------------------------------------------------- */

/*
 * Mutual TLS.  cert/key: this side's PEM certificate (optionally followed
 * by its intermediate certificates) and unencrypted PEM private key; ca:
 * PEM certificates that must have signed the PEER's certificate (each one
 * is a trust anchor; the system's CAs are never used).  Both sides present
 * a certificate and both verify the other's.  server_name: the name (or
 * IP address) the client requires in the server's certificate; empty: the
 * URL's host for tcp, no name check for unix (the CA check still applies).
 * Every string is NUL-terminated within its array.
 */
struct mig_tls {
	bool enabled;
	char cert[4096];
	char key[4096];
	char ca[4096];
	char server_name[256];
};

/* Check @tls as mig_accept() (@server) or mig_connect() would use it: the
 * three files are regular, readable and hold what they should, the key
 * matches the certificate, server_name is a valid name or address.  So a
 * configuration error is reported when a migration is requested, not when
 * the peer connects.  0 (also when !enabled) or -errno with @err. */
int mig_tls_check(const struct mig_tls *tls, bool server, char *err, size_t errlen);

/* ---- listening --------------------------------------------------------- */

/*
 * A listening socket for @u (O_NONBLOCK, CLOEXEC) in *@lfd.
 *   unix: an existing socket file that nobody listens on (connect refused)
 *         is removed; a live one is refused with -EADDRINUSE, anything else
 *         at the path with -EEXIST.  The socket file is created mode 0600.
 *   tcp:  SO_REUSEADDR; port 0 picks a free port (see mig_listen_port()).
 * 0 or -errno with @err.
 */
int mig_listen(const struct mig_url *u, int *lfd, char *err, size_t errlen);

/* The TCP port @lfd is bound to, or -errno (-EINVAL for a Unix socket). */
int mig_listen_port(int lfd);

/* Any thread: make a mig_accept() waiting on @lfd return -ECANCELED soon
 * (shutdown(2) of the listener; @lfd accepts nothing afterwards). */
void mig_listen_shutdown(int lfd);

/* Close @lfd; for a unix URL also remove the socket file, unless another
 * process listens there by now.  @u may be NULL (then only close). */
void mig_listen_close(int lfd, const struct mig_url *u);

/* ---- connections ------------------------------------------------------- */

struct mig_conn;

/*
 * Wait for one connection on @lfd (from mig_listen) and, if @tls is
 * enabled, complete the TLS handshake as the server: the client must
 * present a certificate signed by tls->ca.  @timeout_ms bounds the whole
 * call (wait and handshake); <= 0 waits without limit.  The TLS files are
 * read first, so a configuration error returns at once.  @tls may be
 * NULL (plain).  0 and *@out (inactivity timeout 0: none), or -errno with
 * @err: -ETIMEDOUT, -ECANCELED (mig_listen_shutdown), -EPROTO (handshake
 * failed: the text says why), ...
 */
int mig_accept(int lfd, const struct mig_tls *tls, int timeout_ms, struct mig_conn **out,
	       char *err, size_t errlen);

/*
 * Connect to @u (tcp port must not be 0) and, if @tls is enabled, complete
 * the TLS handshake as the client and wait for the server's confirmation
 * that it accepted our certificate.  @timeout_ms bounds the whole call;
 * <= 0 waits without limit.  0 and *@out, or -errno with @err.
 */
int mig_connect(const struct mig_url *u, const struct mig_tls *tls, int timeout_ms,
		struct mig_conn **out, char *err, size_t errlen);

/*
 * Write all @n bytes.  0, or -errno: -ETIMEDOUT (no progress for the
 * inactivity timeout), -EPIPE / -ECONNRESET (peer gone), -EPROTO (TLS
 * error), -ECANCELED (mig_conn_shutdown).  After a failed write the
 * connection is unusable: every later read or write returns that error;
 * except -EPIPE on a plain connection (the peer closed its end): what
 * the peer sent before it closed, its reason say, can still be read.
 */
int mig_conn_write(struct mig_conn *c, const void *p, size_t n);

/*
 * Read exactly @n bytes.  0, or -errno: -ECONNRESET also for an orderly
 * end of stream before @n bytes, -ETIMEDOUT, -EPROTO, -ECANCELED.  A read
 * that timed out before its first byte arrived may be repeated; any other
 * failure makes the connection unusable as for writes.
 */
int mig_conn_read(struct mig_conn *c, void *p, size_t n);

/* Inactivity timeout of each later read or write: the longest wait for
 * the socket to become readable or writable; 0: none.  0 or -EINVAL. */
int mig_conn_set_timeout(struct mig_conn *c, int ms);

/* The socket, for poll() by a caller that waits for several things; read
 * and write only through mig_conn_read/write (and see mig_conn_pending). */
int mig_conn_fd(const struct mig_conn *c);

/* True if bytes are already buffered inside TLS, so that the next read
 * returns data although a poll() on the fd would not say readable. */
bool mig_conn_pending(const struct mig_conn *c);

/* Largest number of fds per mig_conn_send_fds / mig_conn_recv_fds. */
#define MIG_MAX_FDS 64

/*
 * Write all @n bytes (n >= 1 when nfds > 0) with @nfds descriptors
 * attached to the first of them (SCM_RIGHTS).  Unix connections without
 * TLS only: -ENOTSUP otherwise.  -EINVAL for nfds outside 0..MIG_MAX_FDS.
 * Errors as for mig_conn_write.
 */
int mig_conn_send_fds(struct mig_conn *c, const void *p, size_t n, const int *fds, int nfds);

/*
 * Read exactly @n bytes and the descriptors that arrive with them
 * (received close-on-exec).  At most @maxfds (<= MIG_MAX_FDS) are stored
 * in fds[] and counted in *@nfds; further ones are closed.  The caller
 * checks *@nfds against what it expects.  On error every received fd is
 * closed and *@nfds is 0.  -ENOTSUP on TCP or TLS; errors as for
 * mig_conn_read.
 */
int mig_conn_recv_fds(struct mig_conn *c, void *p, size_t n, int *fds, int maxfds, int *nfds);

/* Any thread: cancel.  A read or write blocked in another thread (and
 * every later one) returns -ECANCELED soon: shutdown(2) of the socket. */
void mig_conn_shutdown(struct mig_conn *c);

/* Payload bytes written / read so far (without TLS framing); any thread. */
uint64_t mig_conn_bytes_out(const struct mig_conn *c);
uint64_t mig_conn_bytes_in(const struct mig_conn *c);

/* Whether the connection is TLS. */
bool mig_conn_is_tls(const struct mig_conn *c);

/* The peer as text ("unix", "10.0.0.1:52044", "[::1]:52044") in buf. */
void mig_conn_peer(const struct mig_conn *c, char *buf, size_t len);

/* One line describing the last failed read or write (empty if none): the
 * TLS alert or OpenSSL's reason, or the system error. */
void mig_conn_last_error(struct mig_conn *c, char *buf, size_t len);

/* Close the connection (a TLS close_notify first, if it is still sound)
 * and free it.  NULL is ignored.  Not concurrent with other calls on @c. */
void mig_conn_close(struct mig_conn *c);

/* True if @p (the first @n >= 3 bytes a peer sent) looks like a TLS
 * handshake record: so a plain receiver can say "the peer speaks TLS"
 * instead of "bad magic". */
bool mig_looks_like_tls(const void *p, size_t n);

#endif
