/* SPDX-License-Identifier: MIT */
/*
 * vsock_uds.h - the Unix-socket side of the vsock device, following the
 * Firecracker convention (its docs/vsock.md):
 *
 *   host-initiated   host programs connect to the listening socket at PATH
 *                    and ask for a guest port with "CONNECT <port>\n";
 *   guest-initiated  a guest connection to host port P is forwarded to a
 *                    new connection to the socket "PATH_P".
 *
 * These helpers only deal with paths and sockets; the protocol is in
 * src/devices/virtio/virtio_vsock.c.
 *
 * Policies:
 *   - PATH is at most VSOCK_UDS_PATH_MAX bytes, so that "PATH_P" with any
 *     32-bit port (10 digits) always fits in sun_path (108 bytes with NUL).
 *   - An existing PATH is replaced only if it is a socket nobody listens on
 *     any more (connect() is refused: the leftover of a previous run).  A
 *     regular file, directory, FIFO, symlink or a socket that still accepts
 *     connections is an error with one clear line, and nothing is unlinked.
 *     (lstat and unlink are two steps: a path swapped by a racing process
 *     between them is that process's doing; the directory should not be
 *     writable by untrusted users.)
 *   - vsock_uds_unlink() removes PATH only while it still is the socket we
 *     bound (same st_dev/st_ino), so a later visor that took the path over
 *     keeps its socket.
 * All sockets are SOCK_NONBLOCK | SOCK_CLOEXEC.
 */
#ifndef VISOR_BACKENDS_VSOCK_UDS_H
#define VISOR_BACKENDS_VSOCK_UDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VSOCK_UDS_PATH_MAX 96
#define VSOCK_UDS_BACKLOG 128

/* Identity of the socket file we bound (for vsock_uds_unlink). */
struct vsock_uds_id {
	dev_t dev;
	ino_t ino;
	bool valid;
};

/* Bind and listen on @path (policy above).  Returns the listening fd or
 * -errno with one line in @err ("PATH: exists and is not a socket", ...).
 * @id receives the identity of the new socket file. */
int vsock_uds_listen(const char *path, struct vsock_uds_id *id, char *err, size_t errlen);

/* Remove @path if it is still the socket described by @id; no-op otherwise
 * (or if !id->valid).  Clears id->valid. */
void vsock_uds_unlink(const char *path, struct vsock_uds_id *id);

/* "@path_@port" into @buf.  0, or -ENAMETOOLONG if it does not fit in
 * @len or in sun_path. */
int vsock_uds_port_path(char *buf, size_t len, const char *path, uint32_t port);

/* Start a non-blocking connect to the Unix stream socket @path.  Returns
 * the fd (*in_progress set when the connect completes later: wait for
 * EPOLLOUT, then vsock_uds_connect_result) or -errno (ENOENT, ECONNREFUSED,
 * EAGAIN when the listener's backlog is full, ENAMETOOLONG, ...). */
int vsock_uds_connect(const char *path, bool *in_progress);

/* Outcome of a connect that was in progress: 0 or -errno (SO_ERROR). */
int vsock_uds_connect_result(int fd);

#endif
