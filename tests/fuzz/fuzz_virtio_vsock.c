/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: virtio-vsock (src/devices/virtio/virtio_vsock.c) with
 * its real Unix-socket host side in a private directory: packets of every
 * op from the guest, host programs connecting ("CONNECT <port>") and
 * talking, guest connections to host ports 1 and 2 (the harness listens
 * on PATH_1 and PATH_2; any other port has no listener), credit, shutdown,
 * resets, through the harness of fuzz_virtio.h (read its header for the
 * input format and the invariants every device target checks).  Queues:
 * 0 RX, 1 TX, 2 event.  Guest CID 3.
 *
 *   byte 0     bit 0: handshakes time out at once (else after a minute);
 *              bits 1-3: the connection table holds 1 + that many
 *   the rest   fuzz_virtio.h's set-up and operations
 * DEV operations (byte, then arguments):
 *   0 m [..]   a host program connects to PATH and sends, by m & 3:
 *              "CONNECT <u8>\n", "CONNECT <u32>\n", n raw bytes, nothing
 *   1 s n ..   host peer s sends n bytes
 *   2 s        host peer s reads what is there
 *   3 s        host peer s shuts down its sending side
 *   4 s        host peer s closes
 *   5          the harness accepts the guest's connections to ports 1, 2
 *   6          the device's sockets are looked at (its loop callback)
 *   7          transport reset event (virtio_vsock_transport_reset)
 *   8 ...      the guest sends a packet (a well-formed chain built from
 *              op, ports, flags, credit, length and payload; bits of a
 *              "damage" byte make it malformed) and notifies TX
 *   9 n len    the guest posts n receive buffers and notifies RX
 * Checks beyond the harness's: every packet the guest receives has a
 * 44-byte header from CID 2 to CID 3, type STREAM, a known op, len the
 * payload that follows, the device's buf_alloc; TX chains come back with
 * 0 bytes, event buffers with 0 or 4 (TRANSPORT_RESET); the connection
 * table holds at most max_conns connections, which buffer at most
 * VIRTIO_VSOCK_CONN_BUF bytes each; the RST queue stays in bounds; a
 * held RX buffer is the only one in flight.
 * Seeds: tests/fuzz/corpus-virtio_vsock.
 */
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../src/util/bytes.h"
#include "../../src/devices/virtio/virtio_vsock.h"
#include "fuzz_virtio.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CID 3
#define NPORTS 2
#define NPEERS 16

static struct virtio_vsock vs;
static struct virtio_vsock_state vst;
static char dir[64], path[128];
static int lfd[NPORTS];
static int peer[NPEERS];
static uint8_t buf[64 * 1024];

static int unix_listen(const char *p)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", p);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 64))
		abort();
	return fd;
}

static void peer_add(int fd)
{
	for (int i = 0; i < NPEERS; i++)
		if (peer[i] < 0) {
			peer[i] = fd;
			return;
		}
	close(fd);
}

static void peer_close(int i)
{
	if (peer[i] >= 0)
		close(peer[i]);
	peer[i] = -1;
}

static void host_connect(struct fz *in)
{
	uint8_t m = fz_u8(in);
	char line[64];
	size_t n = 0;
	switch (m & 3) {
	case 0:
		n = (size_t)snprintf(line, sizeof(line), "CONNECT %u\n", fz_u8(in));
		break;
	case 1:
		n = (size_t)snprintf(line, sizeof(line), "CONNECT %u\n", fz_u32(in));
		break;
	case 2:
		n = fz_bytes(in, line, fz_u8(in) % sizeof(line));
		break;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd); /* the backlog is full */
		return;
	}
	if (n)
		(void)!send(fd, line, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	peer_add(fd);
}

/* The guest sends a packet on TX (DEV 8). */
static void guest_packet(struct fz *in)
{
	uint8_t op = fz_u8(in) % 8, sp = fz_u8(in), dp = fz_u8(in), flags = fz_u8(in);
	uint8_t credit = fz_u8(in), damage = fz_u8(in);
	uint32_t buf_alloc = credit & 3 ? (credit & 3) == 1   ? 4096
					  : (credit & 3) == 2 ? VIRTIO_VSOCK_CONN_BUF
							      : fz_u32(in)
					: 0;
	uint32_t fwd = (credit & 4) ? fz_u32(in) : 0;
	uint32_t len = fz_u16(in) % 4096;
	uint8_t hdr[VIRTIO_VSOCK_HDR_SIZE];
	put_le64(hdr, (damage & 1) ? 2 : CID);
	put_le64(hdr + 8, (damage & 2) ? CID : VIRTIO_VSOCK_HOST_CID);
	put_le32(hdr + 16, sp);
	/* host ports: 1, 2 have listeners; host-initiated ones start at 1024 */
	put_le32(hdr + 20, (dp & 0x80) ? VIRTIO_VSOCK_FIRST_HOST_PORT + (dp & 0x7f) : dp & 0x7f);
	put_le32(hdr + 24, (damage & 8) ? len + 1 : len);
	put_le16(hdr + 28, (damage & 4) ? VIRTIO_VSOCK_TYPE_SEQPACKET : VIRTIO_VSOCK_TYPE_STREAM);
	put_le16(hdr + 30, op);
	put_le32(hdr + 32, flags & 3);
	put_le32(hdr + 36, buf_alloc);
	put_le32(hdr + 40, fwd);
	uint32_t n = fz_u8(in);
	if (n > len)
		n = len;
	const uint8_t *payload = in->p;
	n = n < in->n ? n : (uint32_t)in->n;
	in->p += n;
	in->n -= n;

	struct fz_seg segs[4];
	const uint8_t *data[4];
	uint32_t dlen[4];
	unsigned k = 0;
	if (damage & 16) { /* the header in two buffers */
		segs[k] = (struct fz_seg){fz_alloc(20, false), 20, false};
		data[k] = hdr, dlen[k++] = 20;
		segs[k] = (struct fz_seg){fz_alloc(24, true), 24, false};
		data[k] = hdr + 20, dlen[k++] = 24;
	} else {
		segs[k] = (struct fz_seg){fz_alloc(sizeof(hdr), false), sizeof(hdr), false};
		data[k] = hdr, dlen[k++] = sizeof(hdr);
	}
	if (len) {
		segs[k] = (struct fz_seg){fz_alloc(len, (damage & 64) != 0), len, false};
		data[k] = payload, dlen[k++] = n;
	}
	if (damage & 32) { /* a device-writable buffer: malformed */
		segs[k] = (struct fz_seg){fz_alloc(16, false), 16, true};
		data[k] = NULL, dlen[k++] = 0;
	}
	if (fz_post(VIRTIO_VSOCK_Q_TX, segs, k, (damage & 128) ? FZ_SHAPE_INDIRECT : 0, data,
		    dlen, 0, false) >= 0)
		fz_kick(VIRTIO_VSOCK_Q_TX);
}

static void vsock_op(struct fz *in)
{
	uint8_t sub = fz_u8(in) % 10;
	FZ_TRACE("  vsock op %u (conns %u)\n", sub, vs.nconns);
	switch (sub) {
	case 0:
		host_connect(in);
		break;
	case 1: {
		int s = fz_u8(in) % NPEERS;
		size_t n = fz_bytes(in, buf, fz_u8(in));
		if (peer[s] >= 0 && n)
			(void)!send(peer[s], buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		break;
	}
	case 2: {
		int s = fz_u8(in) % NPEERS;
		while (peer[s] >= 0 && recv(peer[s], buf, sizeof(buf), MSG_DONTWAIT) > 0)
			;
		break;
	}
	case 3: {
		int s = fz_u8(in) % NPEERS;
		if (peer[s] >= 0)
			shutdown(peer[s], SHUT_WR);
		break;
	}
	case 4:
		peer_close(fz_u8(in) % NPEERS);
		break;
	case 5:
		for (int i = 0; i < NPORTS; i++) {
			int fd;
			while ((fd = accept4(lfd[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
				peer_add(fd);
		}
		break;
	case 6:
		fz_loop_fd(vs.epfd);
		break;
	case 7:
		(void)virtio_vsock_transport_reset(&vs);
		break;
	case 8:
		guest_packet(in);
		break;
	case 9: {
		unsigned n = 1 + fz_u8(in) % 8;
		uint32_t len = 1 + fz_u16(in) % 4096;
		if (fz_post_writable(VIRTIO_VSOCK_Q_RX, n, len))
			fz_kick(VIRTIO_VSOCK_Q_RX);
		break;
	}
	}
}

static void vsock_check(void)
{
	/* (the connections themselves are the device's private business) */
	FZ_CHECK(vs.nconns <= vs.max_conns && vs.rst_len <= VIRTIO_VSOCK_RST_QUEUE);
	FZ_CHECK(virtio_vsock_buffered(&vs) <= (uint64_t)vs.nconns * VIRTIO_VSOCK_CONN_BUF);
	FZ_CHECK(!vs.rx_held || vs.vdev.vqs[VIRTIO_VSOCK_Q_RX].inflight == 1);
}

static void vsock_used(uint16_t q, const struct fz_chain *c, uint32_t len)
{
	if (q == VIRTIO_VSOCK_Q_TX) {
		FZ_CHECK(len == 0);
		return;
	}
	if (q == VIRTIO_VSOCK_Q_EVENT) {
		FZ_CHECK(len == 0 || len == 4);
		if (len == 4) {
			uint8_t ev[4];
			FZ_CHECK(fz_chain_read(c, ev, sizeof(ev)) == sizeof(ev));
			FZ_CHECK(get_le32(ev) == VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
		}
		return;
	}
	if (!len)
		return; /* an unusable buffer given back */
	FZ_CHECK(len >= VIRTIO_VSOCK_HDR_SIZE);
	uint8_t h[VIRTIO_VSOCK_HDR_SIZE];
	FZ_CHECK(fz_chain_read(c, h, sizeof(h)) == sizeof(h));
	uint16_t op = get_le16(h + 30);
	FZ_CHECK(get_le64(h) == VIRTIO_VSOCK_HOST_CID && get_le64(h + 8) == CID);
	FZ_CHECK(get_le16(h + 28) == VIRTIO_VSOCK_TYPE_STREAM);
	FZ_CHECK(op >= VIRTIO_VSOCK_OP_REQUEST && op <= VIRTIO_VSOCK_OP_CREDIT_REQUEST);
	FZ_CHECK(get_le32(h + 24) == len - VIRTIO_VSOCK_HDR_SIZE);
	FZ_CHECK(op == VIRTIO_VSOCK_OP_RW || len == VIRTIO_VSOCK_HDR_SIZE);
	if (op != VIRTIO_VSOCK_OP_RST || get_le32(h + 36))
		FZ_CHECK(get_le32(h + 36) == VIRTIO_VSOCK_CONN_BUF);
}

static void vsock_quiet(void)
{
	for (int i = 0; i < NPEERS; i++)
		peer_close(i);
	for (int i = 0; i < NPORTS; i++) {
		int fd;
		while ((fd = accept4(lfd[i], NULL, NULL, SOCK_CLOEXEC)) >= 0)
			close(fd);
	}
}

static int vsock_save(struct snap_writer *w)
{
	int r = virtio_vsock_state_get(&vs, &vst);
	if (!r)
		virtio_vsock_state_encode(&vst, w);
	return r;
}

static int vsock_load(struct snap_cursor *c, const struct virtio_dev_state *core, char *err,
		      size_t errlen)
{
	int r = virtio_vsock_state_decode(c, &vs, &vst, err, errlen);
	return r ? r : virtio_vsock_state_check(&vst, core, err, errlen);
}

static int vsock_put(void)
{
	return virtio_vsock_state_put(&vs, &vst);
}

static uint32_t vsock_budget(uint16_t q)
{
	return q == VIRTIO_VSOCK_Q_TX ? VIRTIO_VSOCK_TX_BUDGET : 0;
}

static struct fz_dev dev = {
	.nq = VIRTIO_VSOCK_NUM_QUEUES,
	.op = vsock_op,
	.check = vsock_check,
	.quiet = vsock_quiet,
	.save = vsock_save,
	.load = vsock_load,
	.put = vsock_put,
	.on_used = vsock_used,
	.budget = vsock_budget,
};

static void cleanup(void)
{
	char p[160];
	virtio_vsock_destroy(&vs);
	for (int i = 0; i < NPORTS; i++) {
		snprintf(p, sizeof(p), "%s_%d", path, i + 1);
		unlink(p);
	}
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_global_init();
	snprintf(dir, sizeof(dir), "/tmp/visor-fuzz-vsock-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/v.sock", dir);
	char err[256], p[160];
	if (virtio_vsock_create(&vs, CID, path, &fzh.mem, &fzh.loop, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	for (int i = 0; i < NPORTS; i++) {
		snprintf(p, sizeof(p), "%s_%d", path, i + 1);
		lfd[i] = unix_listen(p);
	}
	for (int i = 0; i < NPEERS; i++)
		peer[i] = -1;
	atexit(cleanup);
	dev.d = &vs.vdev;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* between inputs, with the device reset (fz_run resets it first) */
	fz_park(&dev);
	vs.handshake_ms = (data[0] & 1) ? 0 : 60000;
	vs.max_conns = 1 + ((data[0] >> 1) & 7);
	fz_run(&dev, data + 1, size - 1);
	return 0;
}
