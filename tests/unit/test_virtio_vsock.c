/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock tests: the device with a fake transport, a small in-test
 * "guest driver" (three queues; it posts RX buffers, sends TX packets,
 * reads RX packets and keeps per-connection credit like a real driver),
 * REAL Unix sockets in a temporary directory, and a real struct loop that
 * the test pumps one epoll round at a time on its own thread
 * (loop_run_once is one round of loop_run), so every step is deterministic.
 */
#include "../../src/devices/virtio/virtio_vsock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../src/event/loop.h"
#include "../../src/util/bytes.h"
#include "test.h"
#include "snap_test.h"
#include "virtio_fake.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define MEM_SIZE (64ull * MIB)
#define QSIZE 128
#define RING_AREA 0x10000ull /* 3 queues x 0x4000 from here, zeroed by g_up */
#define RXQ (RING_AREA + 0x0000)
#define TXQ (RING_AREA + 0x4000)
#define EVQ (RING_AREA + 0x8000)
#define RXBUF 0x100000ull
#define RX_STRIDE 0x11000ull /* 64 KiB + header */
#define TXBUF 0x1000000ull
#define TX_STRIDE 0x10400ull
#define EVBUF 0x2000000ull
#define CID 42u
#define HOST 2u
#define F(bit) (1ull << (bit))

/* ---- a packet header, encoded independently of the device ---- */

struct th {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

static void th_put(uint8_t *b, const struct th *h)
{
	put_le64(b + 0, h->src_cid);
	put_le64(b + 8, h->dst_cid);
	put_le32(b + 16, h->src_port);
	put_le32(b + 20, h->dst_port);
	put_le32(b + 24, h->len);
	put_le16(b + 28, h->type);
	put_le16(b + 30, h->op);
	put_le32(b + 32, h->flags);
	put_le32(b + 36, h->buf_alloc);
	put_le32(b + 40, h->fwd_cnt);
}

static void th_get(const uint8_t *b, struct th *h)
{
	h->src_cid = get_le64(b + 0);
	h->dst_cid = get_le64(b + 8);
	h->src_port = get_le32(b + 16);
	h->dst_port = get_le32(b + 20);
	h->len = get_le32(b + 24);
	h->type = get_le16(b + 28);
	h->op = get_le16(b + 30);
	h->flags = get_le32(b + 32);
	h->buf_alloc = get_le32(b + 36);
	h->fwd_cnt = get_le32(b + 40);
}

/* ---- the guest's view of one connection ---- */

struct gconn {
	bool used;
	uint32_t gport, hport;
	/* receive side (what the guest advertises) */
	uint32_t buf_alloc, fwd_cnt, rx_cnt, max_in_flight;
	unsigned credit_violations;
	/* send side (the device's credit) */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	/* received data: checked against a pattern, or stored */
	bool pattern;
	uint8_t seed;
	unsigned pattern_errors;
	uint8_t data[4096];
	uint32_t data_len;
	bool got_request, got_response, got_rst, got_shutdown;
	uint32_t shutdown_flags;
	unsigned credit_requests, credit_updates, rw_pkts;
};

#define MAXG 32
#define MAXMISC 256

struct tg {
	struct guest_mem mem;
	struct loop loop;
	struct virtio_vsock v;
	bool created;
	char dir[64], path[80];
	struct vf_drv rx, tx, ev;
	uint32_t rx_buf_size; /* whole RX chain, header included */
	bool rx_split;        /* header and payload in two descriptors */
	bool rx_auto;         /* re-post each RX buffer once read */
	uint16_t rx_seen, rx_posted;
	struct gconn gc[MAXG];
	struct th misc[MAXMISC]; /* packets for no known connection */
	unsigned nmisc, misc_rd;
};

static uint8_t pattern(uint8_t seed, uint64_t off)
{
	return (uint8_t)(off * 7 + (off >> 9) + seed);
}

static struct virtio_dev *dev(struct tg *t)
{
	return &t->v.vdev;
}

/* Dispatch until nothing is ready (bounded). */
static void pump(struct tg *t)
{
	for (int i = 0; i < 200 && loop_run_once(&t->loop, 0) > 0; i++)
		;
}

static void notify(struct tg *t, uint16_t q)
{
	pthread_mutex_lock(&dev(t)->lock);
	virtio_dev_queue_notify(dev(t), q);
	pthread_mutex_unlock(&dev(t)->lock);
}

static void set_status(struct tg *t, uint8_t s)
{
	pthread_mutex_lock(&dev(t)->lock);
	virtio_dev_set_status(dev(t), s);
	pthread_mutex_unlock(&dev(t)->lock);
}

/* ---- the guest driver ---- */

static void g_post_rx(struct tg *t, unsigned n)
{
	unsigned per = t->rx_split ? 2 : 1;
	for (unsigned i = 0; i < n && (t->rx_posted + 1u) * per <= QSIZE; i++) {
		uint16_t head = t->rx.next_desc;
		uint64_t base = RXBUF + (uint64_t)(head / per) * RX_STRIDE;
		struct vf_seg s[2] = {{base, t->rx_buf_size, true}};
		if (t->rx_split) {
			s[0].len = VIRTIO_VSOCK_HDR_SIZE;
			s[1] = (struct vf_seg){base + 64, t->rx_buf_size - VIRTIO_VSOCK_HDR_SIZE,
					       true};
		}
		vf_chain(&t->rx, s, (int)per);
		t->rx_posted++;
	}
	notify(t, VIRTIO_VSOCK_Q_RX);
}

/* Bring the driver up (rings zeroed) with @features and post @nrx RX
 * buffers. */
static void g_up_f(struct tg *t, uint64_t features, unsigned nrx)
{
	struct virtio_dev *d = dev(t);
	memset(vf_hva(&t->mem, RING_AREA, 0xc000), 0, 0xc000);
	vf_drv_init(&t->rx, &t->mem, d, QSIZE, RXQ, RXQ + 0x1000, RXQ + 0x2000);
	vf_drv_init(&t->tx, &t->mem, d, QSIZE, TXQ, TXQ + 0x1000, TXQ + 0x2000);
	vf_drv_init(&t->ev, &t->mem, d, QSIZE, EVQ, EVQ + 0x1000, EVQ + 0x2000);
	struct vf_drv *drv[3] = {&t->rx, &t->tx, &t->ev};
	pthread_mutex_lock(&d->lock);
	d->tops = &vf_tops;
	vf_negotiate(d, features);
	for (uint16_t q = 0; q < 3; q++) {
		d->queue_sel = q;
		struct virtq *vq = virtio_dev_selected_queue(d);
		vq->size = QSIZE;
		vq->desc_gpa = drv[q]->desc;
		vq->avail_gpa = drv[q]->avail;
		vq->used_gpa = drv[q]->used;
		vq->ready = true;
	}
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&d->lock);
	t->rx_seen = t->rx_posted = 0;
	t->nmisc = t->misc_rd = 0;
	memset(t->gc, 0, sizeof(t->gc));
	if (nrx)
		g_post_rx(t, nrx);
}

static void g_up(struct tg *t)
{
	g_up_f(t, F(VIRTIO_F_VERSION_1) | F(VIRTIO_VSOCK_F_STREAM), 64);
}

/* Everything but the driver: memory, loop, device at a fresh temp path. */
static void setup_nodrv(struct tg *t)
{
	memset(t, 0, sizeof(*t));
	if (guest_mem_init(&t->mem, MEM_SIZE, MEM_SIZE, MEM_SIZE) || loop_init(&t->loop))
		abort();
	snprintf(t->dir, sizeof(t->dir), "/tmp/visor-vsock-XXXXXX");
	if (!mkdtemp(t->dir))
		abort();
	snprintf(t->path, sizeof(t->path), "%s/v.sock", t->dir);
	char err[256];
	int r = virtio_vsock_create(&t->v, CID, t->path, &t->mem, &t->loop, err, sizeof(err));
	if (r) {
		printf("create: %s\n", err);
		abort();
	}
	t->created = true;
	t->rx_buf_size = 4096;
	t->rx_auto = true;
	vf_queue_signals = vf_config_signals = 0;
}

static void setup(struct tg *t)
{
	setup_nodrv(t);
	g_up(t);
}

static void rm_dir(const char *dir)
{
	DIR *dp = opendir(dir);
	if (!dp)
		return;
	struct dirent *e;
	char p[512];
	while ((e = readdir(dp))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(dp);
	rmdir(dir);
}

static void teardown(struct tg *t)
{
	if (t->created)
		virtio_vsock_destroy(&t->v);
	loop_destroy(&t->loop);
	guest_mem_destroy(&t->mem);
	rm_dir(t->dir);
}

static struct gconn *g_new(struct tg *t, uint32_t gport, uint32_t hport, uint32_t buf_alloc)
{
	for (int i = 0; i < MAXG; i++) {
		struct gconn *c = &t->gc[i];
		if (!c->used) {
			memset(c, 0, sizeof(*c));
			c->used = true;
			c->gport = gport;
			c->hport = hport;
			c->buf_alloc = buf_alloc;
			return c;
		}
	}
	abort();
}

static struct gconn *g_find(struct tg *t, uint32_t gport, uint32_t hport)
{
	for (int i = 0; i < MAXG; i++)
		if (t->gc[i].used && t->gc[i].gport == gport && t->gc[i].hport == hport)
			return &t->gc[i];
	return NULL;
}

/* Send one packet: header (and payload in a second descriptor). */
static void g_send_raw(struct tg *t, const struct th *h, const void *data, uint32_t n)
{
	uint16_t head = t->tx.next_desc;
	uint64_t base = TXBUF + (uint64_t)head * TX_STRIDE;
	th_put(vf_hva(&t->mem, base, VIRTIO_VSOCK_HDR_SIZE), h);
	if (n)
		memcpy(vf_hva(&t->mem, base + 64, n), data, n);
	struct vf_seg s[2] = {{base, VIRTIO_VSOCK_HDR_SIZE, false}, {base + 64, n, false}};
	vf_chain(&t->tx, s, n ? 2 : 1);
	notify(t, VIRTIO_VSOCK_Q_TX);
}

static struct th g_hdr(struct gconn *c, uint16_t op, uint32_t len, uint32_t flags)
{
	return (struct th){.src_cid = CID, .dst_cid = HOST, .src_port = c->gport,
			   .dst_port = c->hport, .len = len, .type = VIRTIO_VSOCK_TYPE_STREAM,
			   .op = op, .flags = flags, .buf_alloc = c->buf_alloc,
			   .fwd_cnt = c->fwd_cnt};
}

static void g_send(struct tg *t, struct gconn *c, uint16_t op, const void *data, uint32_t n,
		   uint32_t flags)
{
	struct th h = g_hdr(c, op, n, flags);
	g_send_raw(t, &h, data, n);
	if (op == VIRTIO_VSOCK_OP_RW)
		c->tx_cnt += n;
}

static uint32_t g_credit(const struct gconn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* One packet for connection @c: credit bookkeeping and checks. */
static void g_handle(struct tg *t, struct gconn *c, const struct th *h, const uint8_t *data)
{
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (h->op) {
	case VIRTIO_VSOCK_OP_REQUEST:
		c->got_request = true;
		break;
	case VIRTIO_VSOCK_OP_RESPONSE:
		c->got_response = true;
		break;
	case VIRTIO_VSOCK_OP_RST:
		c->got_rst = true;
		break;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		c->got_shutdown = true;
		c->shutdown_flags |= h->flags;
		break;
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		c->credit_updates++;
		break;
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		c->credit_requests++;
		g_send(t, c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0);
		break;
	case VIRTIO_VSOCK_OP_RW:
		c->rw_pkts++;
		/* §5.10.6.3: never more in flight than we advertised */
		c->rx_cnt += h->len;
		if (c->rx_cnt - c->fwd_cnt > c->max_in_flight)
			c->max_in_flight = c->rx_cnt - c->fwd_cnt;
		if (c->rx_cnt - c->fwd_cnt > c->buf_alloc)
			c->credit_violations++;
		if (c->pattern) {
			uint64_t off = c->rx_cnt - h->len;
			for (uint32_t i = 0; i < h->len; i++)
				if (data[i] != pattern(c->seed, off + i))
					c->pattern_errors++;
		} else {
			for (uint32_t i = 0; i < h->len && c->data_len < sizeof(c->data); i++)
				c->data[c->data_len++] = data[i];
		}
		break;
	}
}

static uint8_t rxdata[VIRTIO_VSOCK_MAX_PKT + 4096];

/* Read every used RX buffer; route packets to their connection (or to
 * misc).  Returns how many were read. */
static unsigned g_poll(struct tg *t)
{
	unsigned n = 0, per = t->rx_split ? 2 : 1;
	if (!t->rx.mem)
		return 0; /* no driver yet */
	while (t->rx_seen != vf_used_idx(&t->rx)) {
		uint32_t head = vf_used_id(&t->rx, t->rx_seen);
		uint32_t len = vf_used_len(&t->rx, t->rx_seen);
		t->rx_seen++;
		t->rx_posted--;
		n++;
		uint64_t base = RXBUF + (uint64_t)(head / per) * RX_STRIDE;
		struct th h;
		CHECK(len >= VIRTIO_VSOCK_HDR_SIZE && len <= t->rx_buf_size);
		th_get(vf_hva(&t->mem, base, VIRTIO_VSOCK_HDR_SIZE), &h);
		uint32_t plen = len - VIRTIO_VSOCK_HDR_SIZE;
		CHECK_EQ(h.len, plen);
		CHECK_EQ(h.src_cid, HOST);
		CHECK_EQ(h.dst_cid, CID);
		CHECK_EQ(h.type, VIRTIO_VSOCK_TYPE_STREAM);
		uint64_t pbase = t->rx_split ? base + 64 : base + VIRTIO_VSOCK_HDR_SIZE;
		if (plen)
			memcpy(rxdata, vf_hva(&t->mem, pbase, plen), plen);
		struct gconn *c = g_find(t, h.dst_port, h.src_port);
		if (c)
			g_handle(t, c, &h, rxdata);
		else if (t->nmisc < MAXMISC)
			t->misc[t->nmisc++] = h;
		if (t->rx_auto)
			g_post_rx(t, 1);
	}
	return n;
}

/* Pump the loop and the driver until @pred holds (5 s at most). */
typedef bool (*pred_fn)(struct tg *t, void *arg);

static bool wait_for(struct tg *t, pred_fn pred, void *arg)
{
	uint64_t end = now_ns() + 5000000000ull;
	for (;;) {
		pump(t);
		g_poll(t);
		if (pred(t, arg))
			return true;
		if (now_ns() > end)
			return false;
		loop_run_once(&t->loop, 5);
	}
}

static bool p_misc(struct tg *t, void *arg)
{
	return t->nmisc > t->misc_rd;
}

static bool p_flag(struct tg *t, void *arg)
{
	return *(bool *)arg;
}

/* The next packet for no known connection (waiting for it if needed). */
static bool g_expect_misc(struct tg *t, struct th *out)
{
	memset(out, 0, sizeof(*out));
	if (!wait_for(t, p_misc, NULL))
		return false;
	*out = t->misc[t->misc_rd++];
	return true;
}

/* ---- the host side ---- */

static int h_connect_path(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

static int h_connect(struct tg *t)
{
	return h_connect_path(t->path);
}

static void h_write(int fd, const char *s)
{
	size_t n = strlen(s);
	if (send(fd, s, n, MSG_NOSIGNAL) != (ssize_t)n)
		abort();
}

static int h_listen(struct tg *t, uint32_t port)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", t->path, port);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0)
		abort();
	return fd;
}

struct rd {
	int fd;
	char buf[8192];
	size_t len, want;
	bool eof;
};

static bool p_read(struct tg *t, void *arg)
{
	struct rd *r = arg;
	while (r->len < r->want && !r->eof) {
		ssize_t n = recv(r->fd, r->buf + r->len, r->want - r->len, 0);
		if (n > 0)
			r->len += (size_t)n;
		else if (n == 0 || (errno != EAGAIN && errno != EINTR))
			r->eof = true;
		else
			break;
	}
	return r->len >= r->want || r->eof;
}

/* Read exactly @want bytes (or up to EOF) from host socket @fd. */
static size_t h_read(struct tg *t, int fd, char *out, size_t want, bool *eof)
{
	static struct rd r;
	r = (struct rd){.fd = fd, .want = want < sizeof(r.buf) ? want : sizeof(r.buf)};
	wait_for(t, p_read, &r);
	memcpy(out, r.buf, r.len);
	if (eof)
		*eof = r.eof;
	return r.len;
}

/* Does the device close host socket @fd (EOF or error) within 5 s? */
static bool h_closed(struct tg *t, int fd)
{
	static struct rd r;
	r = (struct rd){.fd = fd, .want = sizeof(r.buf)};
	uint64_t end = now_ns() + 5000000000ull;
	while (now_ns() < end) {
		r.len = 0;
		p_read(t, &r);
		if (r.eof)
			return true;
		pump(t);
		g_poll(t);
		loop_run_once(&t->loop, 5);
	}
	return false;
}

static bool p_accept(struct tg *t, void *arg)
{
	int *fds = arg;
	fds[1] = accept4(fds[0], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	return fds[1] >= 0;
}

static int h_accept(struct tg *t, int lfd)
{
	int fds[2] = {lfd, -1};
	wait_for(t, p_accept, fds);
	return fds[1];
}

/* ---- connection set-up through both paths ---- */

/* Host connects to guest port @gport; the guest accepts with @buf_alloc.
 * Returns the host fd; *out the guest's connection. */
static int open_host_conn(struct tg *t, uint32_t gport, uint32_t buf_alloc, struct gconn **out)
{
	int fd = h_connect(t);
	char line[32];
	snprintf(line, sizeof(line), "CONNECT %u\n", gport);
	h_write(fd, line);
	struct th h;
	*out = NULL;
	if (!g_expect_misc(t, &h))
		return fd;
	CHECK_EQ(h.op, VIRTIO_VSOCK_OP_REQUEST);
	CHECK_EQ(h.dst_port, gport);
	CHECK(h.src_port >= VIRTIO_VSOCK_FIRST_HOST_PORT);
	CHECK_EQ(h.buf_alloc, VIRTIO_VSOCK_CONN_BUF);
	CHECK_EQ(h.fwd_cnt, 0);
	CHECK_EQ(h.len, 0);
	struct gconn *c = g_new(t, gport, h.src_port, buf_alloc);
	c->peer_buf_alloc = h.buf_alloc;
	g_send(t, c, VIRTIO_VSOCK_OP_RESPONSE, NULL, 0, 0);
	char ok[32] = {0}, want[32];
	int wl = snprintf(want, sizeof(want), "OK %u\n", h.src_port);
	size_t n = h_read(t, fd, ok, (size_t)wl, NULL);
	CHECK_EQ(n, (size_t)wl);
	CHECK_STR(ok, want);
	*out = c;
	return fd;
}

/* Guest connects from @gport to host port @hport, where @lfd listens.
 * Returns the accepted host fd (-1 on failure). */
static int open_guest_conn(struct tg *t, int lfd, uint32_t hport, uint32_t gport,
			   uint32_t buf_alloc, struct gconn **out)
{
	struct gconn *c = g_new(t, gport, hport, buf_alloc);
	g_send(t, c, VIRTIO_VSOCK_OP_REQUEST, NULL, 0, 0);
	CHECK(wait_for(t, p_flag, &c->got_response));
	CHECK(!c->got_rst);
	CHECK_EQ(c->peer_buf_alloc, VIRTIO_VSOCK_CONN_BUF);
	*out = c;
	return h_accept(t, lfd);
}

/* Wait until guest connection @c has received @n bytes. */
static bool g_wait_data(struct tg *t, struct gconn *c, uint32_t n)
{
	uint64_t end = now_ns() + 5000000000ull;
	while (c->data_len < n && !c->got_rst && now_ns() < end) {
		pump(t);
		g_poll(t);
		loop_run_once(&t->loop, 5);
	}
	return c->data_len >= n;
}

/* ---- tests ---- */

TEST(identity_and_config_space)
{
	struct tg t;
	setup_nodrv(&t);
	struct virtio_dev *d = dev(&t);
	CHECK_EQ(d->device_id, VIRTIO_ID_VSOCK);
	CHECK_EQ(d->num_queues, 3);
	CHECK(d->device_features & F(VIRTIO_VSOCK_F_STREAM));
	CHECK(!(d->device_features & F(VIRTIO_VSOCK_F_SEQPACKET)));
	CHECK(!(d->device_features & F(VIRTIO_VSOCK_F_NO_IMPLIED_STREAM)));
	virtio_vsock_destroy(&t.v);
	t.created = false;

	/* a CID that uses all four low bytes */
	const uint64_t cid = 0xfedcba98u;
	char err[256];
	CHECK_EQ(virtio_vsock_create(&t.v, cid, t.path, &t.mem, &t.loop, err, sizeof(err)), 0);
	t.created = true;
	uint8_t expect[24] = {0x98, 0xba, 0xdc, 0xfe};
	static const uint32_t widths[] = {1, 2, 4, 8};
	for (uint32_t off = 0; off < 12; off++) {
		for (int w = 0; w < 4; w++) {
			uint8_t b[8];
			memset(b, 0xa5, sizeof(b));
			d->ops->config_read(d, off, b, widths[w]);
			CHECK(memcmp(b, expect + off, widths[w]) == 0);
		}
	}
	/* far offsets, and the read-only field ignores writes */
	uint8_t b[8];
	memset(b, 0xa5, 8);
	d->ops->config_read(d, 0xfffffffcu, b, 8);
	CHECK_EQ(get_le64(b), 0);
	uint8_t w8[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	d->ops->config_write(d, 0, w8, 8);
	d->ops->config_read(d, 0, b, 8);
	CHECK_EQ(get_le64(b), cid);
	teardown(&t);
}

TEST(create_rejects_bad_cid_and_paths)
{
	struct tg t;
	setup_nodrv(&t);
	virtio_vsock_destroy(&t.v);
	t.created = false;
	struct virtio_vsock v;
	char err[256];
	static const uint64_t bad[] = {0, 1, 2, 0xffffffffull, 1ull << 32, UINT64_MAX};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		CHECK_EQ(virtio_vsock_create(&v, bad[i], t.path, &t.mem, &t.loop, err, sizeof(err)),
			 -EINVAL);
		CHECK(strstr(err, "cid") != NULL);
		virtio_vsock_destroy(&v); /* no-op after a failed create */
	}
	/* a regular file is never replaced */
	char p[96];
	snprintf(p, sizeof(p), "%s/file", t.dir);
	int fd = open(p, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, "x", 1), 1);
	close(fd);
	CHECK_EQ(virtio_vsock_create(&v, CID, p, &t.mem, &t.loop, err, sizeof(err)), -EEXIST);
	CHECK(strstr(err, "not a socket") != NULL);
	struct stat st;
	CHECK(stat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 1);
	/* nor a directory */
	snprintf(p, sizeof(p), "%s/subdir", t.dir);
	CHECK_EQ(mkdir(p, 0700), 0);
	CHECK_EQ(virtio_vsock_create(&v, CID, p, &t.mem, &t.loop, err, sizeof(err)), -EEXIST);
	rmdir(p);
	/* too long for PATH_<port> */
	char longp[200];
	snprintf(longp, sizeof(longp), "%s/%0100d", t.dir, 0);
	CHECK_EQ(virtio_vsock_create(&v, CID, longp, &t.mem, &t.loop, err, sizeof(err)),
		 -ENAMETOOLONG);
	/* a live socket is in use: refused and left alone */
	snprintf(p, sizeof(p), "%s/live", t.dir);
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p);
	CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(lfd, 4) == 0);
	CHECK_EQ(virtio_vsock_create(&v, CID, p, &t.mem, &t.loop, err, sizeof(err)), -EADDRINUSE);
	CHECK(strstr(err, "in use") != NULL);
	CHECK(lstat(p, &st) == 0 && S_ISSOCK(st.st_mode));
	/* once nobody listens it is stale and replaced */
	close(lfd);
	CHECK_EQ(virtio_vsock_create(&v, CID, p, &t.mem, &t.loop, err, sizeof(err)), 0);
	int c = h_connect_path(p);
	CHECK(c >= 0);
	close(c);
	/* destroy removes the socket file */
	virtio_vsock_destroy(&v);
	CHECK(lstat(p, &st) < 0 && errno == ENOENT);
	/* ... but not one that replaced ours */
	CHECK_EQ(virtio_vsock_create(&v, CID, p, &t.mem, &t.loop, err, sizeof(err)), 0);
	unlink(p);
	fd = open(p, O_CREAT | O_WRONLY, 0600);
	close(fd);
	virtio_vsock_destroy(&v);
	CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode));
	virtio_vsock_destroy(&v); /* twice is fine */
	teardown(&t);
}

TEST(host_connect_ok_and_data_both_ways)
{
	struct tg t;
	setup(&t);
	struct gconn *c;
	int fd = open_host_conn(&t, 5000, 64 * KIB, &c);
	CHECK(c != NULL);
	if (!c) {
		teardown(&t);
		return;
	}
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 1);
	/* host -> guest */
	h_write(fd, "hello guest");
	CHECK(g_wait_data(&t, c, 11));
	CHECK(memcmp(c->data, "hello guest", 11) == 0);
	CHECK_EQ(c->rw_pkts >= 1, 1);
	/* guest -> host */
	g_send(&t, c, VIRTIO_VSOCK_OP_RW, "hello host", 10, 0);
	char buf[64] = {0};
	CHECK_EQ(h_read(&t, fd, buf, 10, NULL), 10);
	CHECK(memcmp(buf, "hello host", 10) == 0);
	/* a second connection to the same guest port gets another host port */
	struct gconn *c2;
	int fd2 = open_host_conn(&t, 5000, 64 * KIB, &c2);
	CHECK(c2 && c2->hport != c->hport);
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 2);
	/* guest closes the first: SHUTDOWN(both) -> the host reads EOF and the
	 * device finishes with RST (§5.10.6.5) */
	g_send(&t, c, VIRTIO_VSOCK_OP_SHUTDOWN, NULL, 0,
	       VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE | VIRTIO_VSOCK_SHUTDOWN_F_SEND);
	CHECK(h_closed(&t, fd));
	CHECK(wait_for(&t, p_flag, &c->got_rst));
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 1);
	/* the second still works */
	h_write(fd2, "two");
	CHECK(g_wait_data(&t, c2, 3));
	CHECK(!dev(&t)->broken);
	close(fd);
	close(fd2);
	teardown(&t);
}

TEST(host_connect_refused_by_guest)
{
	struct tg t;
	setup(&t);
	int fd = h_connect(&t);
	h_write(fd, "CONNECT 77\n");
	struct th h;
	CHECK(g_expect_misc(&t, &h));
	CHECK_EQ(h.op, VIRTIO_VSOCK_OP_REQUEST);
	struct th rst = {.src_cid = CID, .dst_cid = HOST, .src_port = 77, .dst_port = h.src_port,
			 .type = VIRTIO_VSOCK_TYPE_STREAM, .op = VIRTIO_VSOCK_OP_RST};
	g_send_raw(&t, &rst, NULL, 0);
	CHECK(h_closed(&t, fd));
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	/* no reply to an RST */
	pump(&t);
	g_poll(&t);
	CHECK_EQ(t.nmisc, 1);
	close(fd);
	teardown(&t);
}

TEST(connect_line_garbage_overlong_and_timeouts)
{
	struct tg t;
	setup(&t);
	t.v.handshake_ms = 200;
	static const char *bad[] = {
		"HELLO\n",
		"CONNECT\n",
		"CONNECT \n",
		"CONNECT 12a\n",
		"CONNECT -1\n",
		"CONNECT 4294967296\n",
		"CONNECT 00000000001\n",
		"connect 5\n",
		"CONNECT 5 \n",
		"CONNECT 1234567890123456789012345678901234567890", /* overlong, no newline */
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = h_connect(&t);
		h_write(fd, bad[i]);
		CHECK(h_closed(&t, fd));
		close(fd);
	}
	/* silence: closed by the timeout */
	uint64_t t0 = now_ns();
	int fd = h_connect(&t);
	CHECK(h_closed(&t, fd));
	CHECK(now_ns() - t0 >= 150000000ull);
	close(fd);
	/* nothing reached the guest */
	CHECK_EQ(t.nmisc, 0);
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	/* a guest that never answers: REQUEST, then RST after the timeout */
	fd = h_connect(&t);
	h_write(fd, "CONNECT 5\n");
	struct th h;
	CHECK(g_expect_misc(&t, &h));
	CHECK_EQ(h.op, VIRTIO_VSOCK_OP_REQUEST);
	CHECK(h_closed(&t, fd));
	CHECK(g_expect_misc(&t, &h));
	CHECK_EQ(h.op, VIRTIO_VSOCK_OP_RST);
	CHECK_EQ(h.dst_port, 5);
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	close(fd);
	/* and a good line still works afterwards */
	struct gconn *c;
	fd = open_host_conn(&t, 6, 4096, &c);
	CHECK(c != NULL);
	close(fd);
	teardown(&t);
}

static bool p_conns(struct tg *t, void *arg)
{
	return virtio_vsock_conn_count(&t->v) == *(unsigned *)arg;
}

/* Scans over the connections stop at conn_end, one past the highest slot
 * used since the last time there were none: a connection above slots
 * freed meanwhile is still found (its handshake times out), and with
 * every slot free the bound goes back to 0. */
TEST(scans_reach_a_connection_above_freed_slots)
{
	struct tg t;
	setup(&t);
	t.v.handshake_ms = 300;
	CHECK_EQ(t.v.conn_end, 0u);
	struct gconn *a, *b;
	int fa = open_host_conn(&t, 6, 4096, &a);
	int fb = open_host_conn(&t, 7, 4096, &b);
	CHECK(a && b);
	int fc = h_connect(&t); /* slot 2: never sends its CONNECT line */
	unsigned want = 3;
	CHECK(wait_for(&t, p_conns, &want));
	CHECK_EQ(t.v.conn_end, 3u);
	g_send(&t, a, VIRTIO_VSOCK_OP_RST, NULL, 0, 0);
	g_send(&t, b, VIRTIO_VSOCK_OP_RST, NULL, 0, 0);
	CHECK(h_closed(&t, fa) && h_closed(&t, fb));
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 1);
	CHECK_EQ(t.v.conn_end, 3u); /* slots 0 and 1 free, 2 still live */
	CHECK(h_closed(&t, fc));    /* the timer's scan reached slot 2 */
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	CHECK_EQ(t.v.conn_end, 0u);
	/* and slots are handed out again from the freed ones */
	struct gconn *d;
	int fd = open_host_conn(&t, 8, 4096, &d);
	CHECK(d != NULL);
	CHECK_EQ(t.v.conn_end, 3u); /* the LIFO free list: slot 2 came back first */
	close(fa);
	close(fb);
	close(fc);
	close(fd);
	teardown(&t);
}

TEST(connect_before_driver_ok_is_closed)
{
	struct tg t;
	setup_nodrv(&t);
	int fd = h_connect(&t);
	h_write(fd, "CONNECT 5\n");
	CHECK(h_closed(&t, fd));
	close(fd);
	g_up(&t);
	struct gconn *c;
	fd = open_host_conn(&t, 5, 4096, &c);
	CHECK(c != NULL);
	close(fd);
	teardown(&t);
}

TEST(guest_initiated_both_ways_and_refused)
{
	struct tg t;
	setup(&t);
	int lfd = h_listen(&t, 6000);
	struct gconn *c;
	int fd = open_guest_conn(&t, lfd, 6000, 40000, 64 * KIB, &c);
	CHECK(fd >= 0);
	g_send(&t, c, VIRTIO_VSOCK_OP_RW, "ping", 4, 0);
	char buf[16] = {0};
	CHECK_EQ(h_read(&t, fd, buf, 4, NULL), 4);
	CHECK(memcmp(buf, "ping", 4) == 0);
	h_write(fd, "pong!");
	CHECK(g_wait_data(&t, c, 5));
	CHECK(memcmp(c->data, "pong!", 5) == 0);
	/* nobody listens on 6001: RST to the right ports */
	struct gconn *r = g_new(&t, 40001, 6001, 4096);
	g_send(&t, r, VIRTIO_VSOCK_OP_REQUEST, NULL, 0, 0);
	CHECK(wait_for(&t, p_flag, &r->got_rst));
	CHECK(!r->got_response);
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 1);
	/* guest RST closes the host socket, no answer */
	unsigned before = vf_used_idx(&t.rx);
	g_send(&t, c, VIRTIO_VSOCK_OP_RST, NULL, 0, 0);
	CHECK(h_closed(&t, fd));
	CHECK_EQ(vf_used_idx(&t.rx), before);
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	close(fd);
	close(lfd);
	teardown(&t);
}

TEST(concurrent_connections)
{
	struct tg t;
	setup(&t);
	enum { N = 8 };
	int hfd[2 * N], lfd[N];
	struct gconn *gc[2 * N];
	for (int i = 0; i < N; i++) {
		hfd[i] = open_host_conn(&t, 7000 + (uint32_t)i, 64 * KIB, &gc[i]);
		lfd[i] = h_listen(&t, 8000 + (uint32_t)i);
		hfd[N + i] = open_guest_conn(&t, lfd[i], 8000 + (uint32_t)i, 30000 + (uint32_t)i,
					     64 * KIB, &gc[N + i]);
		CHECK(gc[i] && hfd[N + i] >= 0);
	}
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 2 * N);
	/* everyone writes at once, both ways */
	for (int i = 0; i < 2 * N; i++) {
		char m[32];
		int n = snprintf(m, sizeof(m), "host->guest #%02d", i);
		h_write(hfd[i], m);
		n = snprintf(m, sizeof(m), "guest->host #%02d", i);
		g_send(&t, gc[i], VIRTIO_VSOCK_OP_RW, m, (uint32_t)n, 0);
	}
	for (int i = 0; i < 2 * N; i++) {
		char m[32], got[32] = {0};
		int n = snprintf(m, sizeof(m), "host->guest #%02d", i);
		CHECK(g_wait_data(&t, gc[i], (uint32_t)n));
		CHECK(memcmp(gc[i]->data, m, (size_t)n) == 0);
		n = snprintf(m, sizeof(m), "guest->host #%02d", i);
		CHECK_EQ(h_read(&t, hfd[i], got, (size_t)n, NULL), (size_t)n);
		CHECK(memcmp(got, m, (size_t)n) == 0);
	}
	for (int i = 0; i < 2 * N; i++)
		close(hfd[i]);
	for (int i = 0; i < N; i++)
		close(lfd[i]);
	teardown(&t);
}

/* 4 MiB each way on one connection, byte-identical, with a guest that
 * advertises 64 KiB and consumes slowly, and a host that reads slowly: the
 * device must keep both credits and its own bound. */
static void big_transfer(bool guest_initiated)
{
	struct tg t;
	setup_nodrv(&t);
	t.rx_split = true;
	t.rx_buf_size = VIRTIO_VSOCK_HDR_SIZE + 4096;
	g_up_f(&t, F(VIRTIO_F_VERSION_1) | F(VIRTIO_VSOCK_F_STREAM) | F(VIRTIO_F_EVENT_IDX), 64);
	const uint32_t total = 4 * MIB, gbuf = 64 * KIB;
	struct gconn *c;
	int fd, lfd = -1;
	if (guest_initiated) {
		lfd = h_listen(&t, 9000);
		fd = open_guest_conn(&t, lfd, 9000, 50000, gbuf, &c);
	} else {
		fd = open_host_conn(&t, 9000, gbuf, &c);
	}
	CHECK(c && fd >= 0);
	if (!c || fd < 0) {
		teardown(&t);
		return;
	}
	c->pattern = true;
	c->seed = 0x11;
	static uint8_t chunk[64 * 1024];
	uint64_t h_sent = 0, h_recv = 0;
	uint64_t max_buffered = 0;
	unsigned recv_errors = 0, iter = 0;
	uint64_t end = now_ns() + 60000000000ull;
	while ((c->rx_cnt < total || h_recv < total) && now_ns() < end && !c->got_rst) {
		iter++;
		/* host writes as much as the socket takes */
		if (h_sent < total) {
			uint32_t n = (uint32_t)(total - h_sent < sizeof(chunk) ? total - h_sent
									 : sizeof(chunk));
			for (uint32_t i = 0; i < n; i++)
				chunk[i] = pattern(0x11, h_sent + i);
			ssize_t w = send(fd, chunk, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0)
				h_sent += (uint64_t)w;
		}
		/* host reads slowly: 16 KiB every other round */
		if (iter % 2 == 0) {
			ssize_t r = recv(fd, chunk, 16 * KIB, MSG_DONTWAIT);
			for (ssize_t i = 0; i < r; i++)
				if (chunk[i] != pattern(0x22, h_recv + (uint64_t)i))
					recv_errors++;
			if (r > 0)
				h_recv += (uint64_t)r;
		}
		/* the device runs */
		loop_run_once(&t.loop, 1);
		pump(&t);
		g_poll(&t);
		/* guest consumes every 4th round, then tells the device */
		if (iter % 4 == 0 && c->fwd_cnt != c->rx_cnt) {
			c->fwd_cnt = c->rx_cnt;
			g_send(&t, c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0);
		}
		/* guest sends within the device's credit, 16 KiB at most */
		uint32_t cr = g_credit(c);
		uint32_t n = total - c->tx_cnt < 16 * KIB ? total - c->tx_cnt : 16 * KIB;
		if (n > cr)
			n = cr;
		if (n) {
			for (uint32_t i = 0; i < n; i++)
				chunk[i] = pattern(0x22, c->tx_cnt + i);
			g_send(&t, c, VIRTIO_VSOCK_OP_RW, chunk, n, 0);
		}
		uint64_t b = virtio_vsock_buffered(&t.v);
		if (b > max_buffered)
			max_buffered = b;
	}
	CHECK(!c->got_rst);
	CHECK_EQ(c->rx_cnt, total);
	CHECK_EQ(h_recv, total);
	CHECK_EQ(c->pattern_errors, 0);
	CHECK_EQ(recv_errors, 0);
	CHECK_EQ(c->credit_violations, 0);
	CHECK(c->max_in_flight <= gbuf);
	CHECK(c->max_in_flight > gbuf / 2); /* the credit was actually used */
	CHECK(max_buffered <= VIRTIO_VSOCK_CONN_BUF);
	CHECK_EQ(t.v.metrics.credit_violations, 0);
	CHECK(!dev(&t)->broken);
	close(fd);
	if (lfd >= 0)
		close(lfd);
	teardown(&t);
}

TEST(large_transfer_host_initiated)
{
	big_transfer(false);
}

TEST(large_transfer_guest_initiated)
{
	big_transfer(true);
}

TEST(peer_disappears_mid_stream)
{
	struct tg t;
	setup(&t);
	/* host sends 100 KB and closes: the guest gets all of it, then
	 * SHUTDOWN(SEND); its next write gets RST */
	struct gconn *c;
	int fd = open_host_conn(&t, 100, 1 * MIB, &c);
	CHECK(c != NULL);
	if (!c) {
		teardown(&t);
		return;
	}
	c->pattern = true;
	static uint8_t big[100000];
	for (unsigned i = 0; i < sizeof(big); i++)
		big[i] = pattern(0, i);
	size_t off = 0;
	while (off < sizeof(big)) {
		ssize_t w = send(fd, big + off, sizeof(big) - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0)
			off += (size_t)w;
		pump(&t);
		g_poll(&t);
	}
	close(fd);
	CHECK(wait_for(&t, p_flag, &c->got_shutdown));
	CHECK_EQ(c->rx_cnt, sizeof(big));
	CHECK_EQ(c->pattern_errors, 0);
	CHECK(c->shutdown_flags & VIRTIO_VSOCK_SHUTDOWN_F_SEND);
	CHECK(!c->got_rst);
	g_send(&t, c, VIRTIO_VSOCK_OP_RW, "late", 4, 0);
	CHECK(wait_for(&t, p_flag, &c->got_rst));
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);

	/* guest streaming into a host reader that vanishes: RST */
	int lfd = h_listen(&t, 101);
	struct gconn *g;
	int hfd = open_guest_conn(&t, lfd, 101, 4242, 64 * KIB, &g);
	CHECK(hfd >= 0);
	close(hfd);
	for (int i = 0; i < 64 && !g->got_rst; i++) {
		uint32_t n = g_credit(g) < 4096 ? g_credit(g) : 4096;
		if (n)
			g_send(&t, g, VIRTIO_VSOCK_OP_RW, big, n, 0);
		pump(&t);
		g_poll(&t);
	}
	CHECK(wait_for(&t, p_flag, &g->got_rst));
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	CHECK(!dev(&t)->broken);
	close(lfd);
	teardown(&t);
}

TEST(guest_half_close)
{
	struct tg t;
	setup(&t);
	struct gconn *c;
	int fd = open_host_conn(&t, 300, 64 * KIB, &c);
	CHECK(c != NULL);
	if (!c) {
		teardown(&t);
		return;
	}
	/* data then SHUTDOWN(SEND): the host reads it all, then EOF */
	g_send(&t, c, VIRTIO_VSOCK_OP_RW, "request", 7, 0);
	g_send(&t, c, VIRTIO_VSOCK_OP_SHUTDOWN, NULL, 0, VIRTIO_VSOCK_SHUTDOWN_F_SEND);
	char buf[32] = {0};
	bool eof = false;
	CHECK_EQ(h_read(&t, fd, buf, 32, &eof), 7);
	CHECK(eof);
	CHECK(memcmp(buf, "request", 7) == 0);
	/* the host can still answer */
	h_write(fd, "response");
	CHECK(g_wait_data(&t, c, 8));
	CHECK(memcmp(c->data, "response", 8) == 0);
	CHECK(!c->got_rst);
	/* host closes: both directions are over -> RST, socket gone */
	close(fd);
	CHECK(wait_for(&t, p_flag, &c->got_rst));
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	teardown(&t);
}

TEST(credit_request_and_update)
{
	struct tg t;
	setup(&t);
	struct gconn *c;
	int fd = open_host_conn(&t, 400, 1000, &c); /* the guest offers 1000 bytes */
	CHECK(c != NULL);
	if (!c) {
		teardown(&t);
		return;
	}
	/* the host sends 5000: exactly 1000 reach the guest, then the
	 * device asks for credit once */
	static char five[5000];
	memset(five, 'x', sizeof(five));
	CHECK_EQ(send(fd, five, sizeof(five), MSG_NOSIGNAL), (ssize_t)sizeof(five));
	CHECK(g_wait_data(&t, c, 1000));
	for (int i = 0; i < 20; i++) {
		pump(&t);
		g_poll(&t);
		loop_run_once(&t.loop, 2);
	}
	CHECK_EQ(c->rx_cnt, 1000);
	CHECK_EQ(c->credit_requests, 1);
	CHECK_EQ(c->credit_violations, 0);
	/* the guest consumes: 1000 more */
	c->fwd_cnt = c->rx_cnt;
	g_send(&t, c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0);
	uint64_t end = now_ns() + 2000000000ull;
	while (c->rx_cnt < 2000 && now_ns() < end) {
		pump(&t);
		g_poll(&t);
		loop_run_once(&t.loop, 2);
	}
	CHECK_EQ(c->rx_cnt, 2000);
	/* the guest asks for our credit: CREDIT_UPDATE with fwd_cnt */
	g_send(&t, c, VIRTIO_VSOCK_OP_RW, "abc", 3, 0);
	char got[3];
	CHECK_EQ(h_read(&t, fd, got, 3, NULL), 3);
	unsigned before = c->credit_updates;
	g_send(&t, c, VIRTIO_VSOCK_OP_CREDIT_REQUEST, NULL, 0, 0);
	pump(&t);
	g_poll(&t);
	CHECK_EQ(c->credit_updates, before + 1);
	CHECK_EQ(c->peer_buf_alloc, VIRTIO_VSOCK_CONN_BUF);
	CHECK_EQ(c->peer_fwd_cnt, 3);
	close(fd);
	teardown(&t);
}

TEST(credit_violation_resets_with_bounded_buffer)
{
	struct tg t;
	setup(&t);
	int lfd = h_listen(&t, 500);
	struct gconn *c;
	int fd = open_guest_conn(&t, lfd, 500, 5555, 64 * KIB, &c);
	CHECK(fd >= 0);
	/* the host never reads; the guest ignores the credit */
	static uint8_t blob[64 * 1024];
	for (int i = 0; i < 64 && !c->got_rst; i++) {
		g_send(&t, c, VIRTIO_VSOCK_OP_RW, blob, sizeof(blob), 0);
		CHECK(virtio_vsock_buffered(&t.v) <= VIRTIO_VSOCK_CONN_BUF);
		pump(&t);
		g_poll(&t);
	}
	CHECK(wait_for(&t, p_flag, &c->got_rst));
	CHECK_EQ(t.v.metrics.credit_violations, 1);
	CHECK_EQ(virtio_vsock_buffered(&t.v), 0);
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	CHECK(!dev(&t)->broken);
	close(fd);
	close(lfd);
	teardown(&t);
}

TEST(bad_packets_get_rst_not_broken)
{
	struct tg t;
	setup(&t);
	int lfd = h_listen(&t, 600);
	struct gconn *c;
	int fd = open_guest_conn(&t, lfd, 600, 6666, 64 * KIB, &c);
	CHECK(fd >= 0);
	struct th h, got;
	struct th base = {.src_cid = CID, .dst_cid = HOST, .src_port = 1111, .dst_port = 2222,
			  .type = VIRTIO_VSOCK_TYPE_STREAM, .op = VIRTIO_VSOCK_OP_RW};
	/* RW to an unknown connection */
	h = base;
	h.len = 3;
	g_send_raw(&t, &h, "abc", 3);
	CHECK(g_expect_misc(&t, &got));
	CHECK_EQ(got.op, VIRTIO_VSOCK_OP_RST);
	CHECK_EQ(got.src_port, 2222);
	CHECK_EQ(got.dst_port, 1111);
	/* wrong source CID, wrong destination, SEQPACKET, unknown ops */
	struct th variants[5];
	for (int i = 0; i < 5; i++)
		variants[i] = base;
	variants[0].src_cid = CID + 1;
	variants[1].dst_cid = 3;
	variants[2].type = VIRTIO_VSOCK_TYPE_SEQPACKET;
	variants[3].op = 0;
	variants[4].op = 99;
	for (int i = 0; i < 5; i++) {
		g_send_raw(&t, &variants[i], NULL, 0);
		CHECK(g_expect_misc(&t, &got));
		CHECK_EQ(got.op, VIRTIO_VSOCK_OP_RST);
		CHECK_EQ(got.dst_port, 1111);
	}
	/* RST to an unknown connection: nothing (no RST storm) */
	h = base;
	h.op = VIRTIO_VSOCK_OP_RST;
	g_send_raw(&t, &h, NULL, 0);
	/* a 20-byte "header" and a chain with a writable part: dropped */
	uint16_t head = t.tx.next_desc;
	uint64_t b = TXBUF + (uint64_t)head * TX_STRIDE;
	struct vf_seg s1[] = {{b, 20, false}};
	vf_chain(&t.tx, s1, 1);
	head = t.tx.next_desc;
	b = TXBUF + (uint64_t)head * TX_STRIDE;
	th_put(vf_hva(&t.mem, b, 44), &base);
	struct vf_seg s2[] = {{b, 44, false}, {b + 64, 16, true}};
	vf_chain(&t.tx, s2, 2);
	notify(&t, VIRTIO_VSOCK_Q_TX);
	pump(&t);
	g_poll(&t);
	CHECK_EQ(t.nmisc, 6);
	CHECK(!dev(&t)->broken);
	CHECK_EQ(vf_used_idx(&t.tx), t.tx.avail_idx); /* every chain returned */
	/* the connection is untouched by all of that */
	g_send(&t, c, VIRTIO_VSOCK_OP_RW, "ok", 2, 0);
	char buf[4];
	CHECK_EQ(h_read(&t, fd, buf, 2, NULL), 2);
	/* len larger than the payload on a live connection: it is reset */
	h = g_hdr(c, VIRTIO_VSOCK_OP_RW, 100, 0);
	g_send_raw(&t, &h, "short", 5);
	CHECK(wait_for(&t, p_flag, &c->got_rst));
	CHECK(h_closed(&t, fd));
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	CHECK(t.v.metrics.tx_malformed_packets >= 8);
	CHECK(!dev(&t)->broken);
	close(fd);
	close(lfd);
	teardown(&t);
}

static bool p_starved(struct tg *t, void *arg)
{
	return t->v.rx_starved;
}

TEST(no_rx_buffers_host_flood_is_bounded)
{
	struct tg t;
	setup_nodrv(&t);
	g_up_f(&t, F(VIRTIO_F_VERSION_1) | F(VIRTIO_VSOCK_F_STREAM) | F(VIRTIO_F_EVENT_IDX), 8);
	struct gconn *c;
	int fd = open_host_conn(&t, 700, 16 * MIB, &c);
	CHECK(c != NULL);
	if (!c) {
		teardown(&t);
		return;
	}
	c->pattern = true;
	/* the guest stops posting buffers; the host floods */
	t.rx_auto = false;
	static uint8_t chunk[64 * 1024];
	uint64_t sent = 0;
	bool full = false;
	for (int i = 0; i < 2000 && !full; i++) {
		for (uint32_t k = 0; k < sizeof(chunk); k++)
			chunk[k] = pattern(0, sent + k);
		ssize_t w = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0)
			sent += (uint64_t)w;
		else
			full = true; /* the host's socket is full: back-pressure */
		pump(&t);
	}
	CHECK(full);
	CHECK(wait_for(&t, p_starved, NULL));
	g_poll(&t);
	uint32_t got_before = c->rx_cnt;
	CHECK(got_before > 0 && got_before < sent);
	/* nothing buffered on the host for the guest, and the loop is
	 * quiet: no busy polling of the readable socket */
	CHECK_EQ(virtio_vsock_buffered(&t.v), 0);
	uint64_t ev0 = t.v.metrics.muxer_event_count;
	int rounds = 0;
	for (int i = 0; i < 10; i++)
		rounds += loop_run_once(&t.loop, 20);
	CHECK_EQ(rounds, 0);
	CHECK_EQ(t.v.metrics.muxer_event_count, ev0);
	/* a new host connection meanwhile: its REQUEST waits as well */
	int fd2 = h_connect(&t);
	h_write(fd2, "CONNECT 701\n");
	for (int i = 0; i < 10; i++)
		loop_run_once(&t.loop, 5);
	g_poll(&t);
	CHECK_EQ(t.nmisc, t.misc_rd); /* nothing new */
	/* buffers again: everything flows, byte-identical */
	t.rx_auto = true;
	g_post_rx(&t, 32);
	uint64_t end = now_ns() + 10000000000ull;
	while (c->rx_cnt < sent && now_ns() < end) {
		pump(&t);
		g_poll(&t);
		loop_run_once(&t.loop, 2);
	}
	CHECK_EQ(c->rx_cnt, sent);
	CHECK_EQ(c->pattern_errors, 0);
	struct th h;
	CHECK(g_expect_misc(&t, &h));
	CHECK_EQ(h.op, VIRTIO_VSOCK_OP_REQUEST);
	CHECK_EQ(h.dst_port, 701);
	CHECK(!dev(&t)->broken);
	close(fd);
	close(fd2);
	teardown(&t);
}

TEST(rst_queue_full_holds_tx_back)
{
	struct tg t;
	setup_nodrv(&t);
	g_up_f(&t, F(VIRTIO_F_VERSION_1) | F(VIRTIO_VSOCK_F_STREAM), 0);
	/* no RX buffers; 100 packets for unknown connections, each owed an
	 * RST: the device queues 64 and leaves the rest in the TX ring */
	const int n = 100;
	for (int i = 0; i < n; i++) {
		struct th h = {.src_cid = CID, .dst_cid = HOST, .src_port = 3000 + (uint32_t)i,
			       .dst_port = 4000, .type = VIRTIO_VSOCK_TYPE_STREAM,
			       .op = VIRTIO_VSOCK_OP_CREDIT_UPDATE};
		g_send_raw(&t, &h, NULL, 0);
	}
	pump(&t);
	CHECK_EQ(vf_used_idx(&t.tx), VIRTIO_VSOCK_RST_QUEUE);
	CHECK(t.v.tx_blocked);
	int rounds = 0;
	for (int i = 0; i < 5; i++)
		rounds += loop_run_once(&t.loop, 10);
	CHECK_EQ(rounds, 0); /* quiet while blocked */
	/* buffers: every RST arrives, in order, and TX completes */
	g_post_rx(&t, 64);
	uint64_t end = now_ns() + 5000000000ull;
	while (t.nmisc < (unsigned)n && now_ns() < end) {
		pump(&t);
		g_poll(&t);
		loop_run_once(&t.loop, 2);
	}
	CHECK_EQ(t.nmisc, n);
	for (int i = 0; i < n && i < (int)t.nmisc; i++) {
		CHECK_EQ(t.misc[i].op, VIRTIO_VSOCK_OP_RST);
		CHECK_EQ(t.misc[i].dst_port, 3000 + (uint32_t)i);
		CHECK_EQ(t.misc[i].src_port, 4000);
	}
	CHECK_EQ(vf_used_idx(&t.tx), n);
	CHECK(!t.v.tx_blocked);
	CHECK(!dev(&t)->broken);
	teardown(&t);
}

TEST(reset_closes_everything_and_sends_nothing)
{
	struct tg t;
	setup(&t);
	struct gconn *a, *b, *g;
	int fa = open_host_conn(&t, 800, 64 * KIB, &a);
	int fb = open_host_conn(&t, 801, 64 * KIB, &b);
	int lfd = h_listen(&t, 802);
	int fg = open_guest_conn(&t, lfd, 802, 12345, 64 * KIB, &g);
	/* pending: a CONNECT still being typed, one waiting for the guest,
	 * and unsent data both ways */
	int fl = h_connect(&t);
	h_write(fl, "CONN");
	int fr = h_connect(&t);
	h_write(fr, "CONNECT 803\n");
	h_write(fa, "unsent");
	g_send(&t, b, VIRTIO_VSOCK_OP_RW, "to host", 7, 0);
	pump(&t);
	uint16_t used_rx = vf_used_idx(&t.rx);
	CHECK(virtio_vsock_conn_count(&t.v) >= 4);
	set_status(&t, 0);
	CHECK_EQ(dev(&t)->status, 0);
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	CHECK_EQ(virtio_vsock_buffered(&t.v), 0);
	int fds[] = {fa, fb, fg, fl, fr};
	for (unsigned i = 0; i < 5; i++) {
		CHECK(h_closed(&t, fds[i]));
		close(fds[i]);
	}
	CHECK_EQ(vf_used_idx(&t.rx), used_rx); /* nothing was sent */
	/* the driver comes back: the device works again */
	g_up(&t);
	struct gconn *n;
	int fn = open_host_conn(&t, 804, 4096, &n);
	CHECK(n != NULL);
	close(fn);
	close(lfd);
	teardown(&t);
}

TEST(connection_limit)
{
	struct tg t;
	setup(&t);
	t.v.max_conns = 3;
	int lfd = h_listen(&t, 900);
	struct gconn *c[3];
	int fd[3];
	for (int i = 0; i < 3; i++) {
		fd[i] = open_guest_conn(&t, lfd, 900, 100 + (uint32_t)i, 4096, &c[i]);
		CHECK(fd[i] >= 0);
	}
	/* a fourth guest connection is refused */
	struct gconn *x = g_new(&t, 200, 900, 4096);
	g_send(&t, x, VIRTIO_VSOCK_OP_REQUEST, NULL, 0, 0);
	CHECK(wait_for(&t, p_flag, &x->got_rst));
	/* a host client waits in the backlog, unaccepted */
	int h = h_connect(&t);
	h_write(h, "CONNECT 901\n");
	for (int i = 0; i < 10; i++) {
		pump(&t);
		g_poll(&t);
		loop_run_once(&t.loop, 5);
	}
	CHECK_EQ(t.nmisc, 0);
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 3);
	/* one closes: the client gets its turn */
	g_send(&t, c[0], VIRTIO_VSOCK_OP_RST, NULL, 0, 0);
	struct th r;
	CHECK(g_expect_misc(&t, &r));
	CHECK_EQ(r.op, VIRTIO_VSOCK_OP_REQUEST);
	CHECK_EQ(r.dst_port, 901);
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	close(h);
	close(lfd);
	teardown(&t);
}

TEST(event_queue_transport_reset)
{
	struct tg t;
	setup(&t);
	struct gconn *c;
	int fd = open_host_conn(&t, 1000, 4096, &c);
	CHECK(c != NULL);
	/* no event buffer: -EAGAIN, connections closed anyway */
	CHECK_EQ(virtio_vsock_transport_reset(&t.v), -EAGAIN);
	CHECK(h_closed(&t, fd));
	close(fd);
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	/* with a buffer: id 0 (TRANSPORT_RESET), 4 bytes */
	memset(vf_hva(&t.mem, EVBUF, 8), 0xaa, 8);
	struct vf_seg s[] = {{EVBUF, 8, true}};
	uint16_t head = vf_chain(&t.ev, s, 1);
	notify(&t, VIRTIO_VSOCK_Q_EVENT);
	int sig = vf_queue_signals;
	CHECK_EQ(virtio_vsock_transport_reset(&t.v), 0);
	CHECK_EQ(vf_used_idx(&t.ev), 1);
	CHECK_EQ(vf_used_id(&t.ev, 0), head);
	CHECK_EQ(vf_used_len(&t.ev, 0), 4);
	CHECK_EQ(get_le32(vf_hva(&t.mem, EVBUF, 4)), VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	CHECK_EQ(*vf_hva(&t.mem, EVBUF + 4, 1), 0xaa);
	CHECK(vf_queue_signals > sig);
	/* a device that is not live */
	set_status(&t, 0);
	CHECK_EQ(virtio_vsock_transport_reset(&t.v), -ENODEV);
	teardown(&t);
}

TEST(ring_violation_breaks_and_closes)
{
	struct tg t;
	setup(&t);
	struct gconn *c;
	int fd = open_host_conn(&t, 1100, 4096, &c);
	CHECK(c != NULL);
	/* a zero-length descriptor on the TX queue */
	struct vf_seg s[] = {{TXBUF, 0, false}};
	vf_chain(&t.tx, s, 1);
	notify(&t, VIRTIO_VSOCK_Q_TX);
	CHECK(dev(&t)->broken);
	CHECK(dev(&t)->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	CHECK_EQ(vf_config_signals, 1);
	CHECK(h_closed(&t, fd));
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	close(fd);
	/* host connections are refused while broken */
	fd = h_connect(&t);
	h_write(fd, "CONNECT 1\n");
	CHECK(h_closed(&t, fd));
	close(fd);
	/* reset brings it back */
	set_status(&t, 0);
	g_up(&t);
	fd = open_host_conn(&t, 1101, 4096, &c);
	CHECK(c != NULL);
	close(fd);
	teardown(&t);
}

TEST(unusable_rx_buffers_are_returned)
{
	struct tg t;
	setup_nodrv(&t);
	g_up_f(&t, F(VIRTIO_F_VERSION_1) | F(VIRTIO_VSOCK_F_STREAM), 0);
	/* a read-only buffer and one with no room beyond the header */
	struct vf_seg r1[] = {{RXBUF, 4096, false}};
	struct vf_seg r2[] = {{RXBUF + RX_STRIDE, VIRTIO_VSOCK_HDR_SIZE, true}};
	vf_chain(&t.rx, r1, 1);
	vf_chain(&t.rx, r2, 1);
	notify(&t, VIRTIO_VSOCK_Q_RX);
	CHECK_EQ(vf_used_idx(&t.rx), 2);
	CHECK_EQ(vf_used_len(&t.rx, 0), 0);
	CHECK_EQ(vf_used_len(&t.rx, 1), 0);
	CHECK_EQ(t.v.metrics.rx_bad_chains, 2);
	CHECK(!dev(&t)->broken);
	/* good buffers after them work */
	t.rx_seen = 2;
	g_post_rx(&t, 8);
	struct gconn *c;
	int fd = open_host_conn(&t, 1200, 4096, &c);
	CHECK(c != NULL);
	close(fd);
	teardown(&t);
}

/* ---- pause / resume (VM lifecycle) ---- */

/* What the device may not touch while paused: the used rings of all three
 * queues and the avail positions it consumed. */
struct frozen {
	uint8_t used[3][4 + 8 * QSIZE];
	uint16_t last_avail[3];
};

static void freeze(struct tg *t, struct frozen *f)
{
	struct vf_drv *q[3] = {&t->rx, &t->tx, &t->ev};
	for (int i = 0; i < 3; i++) {
		memcpy(f->used[i], vf_hva(&t->mem, q[i]->used, sizeof(f->used[i])),
		       sizeof(f->used[i]));
		f->last_avail[i] = dev(t)->vqs[i].last_avail;
	}
}

static bool still_frozen(struct tg *t, const struct frozen *f)
{
	struct vf_drv *q[3] = {&t->rx, &t->tx, &t->ev};
	for (int i = 0; i < 3; i++)
		if (memcmp(f->used[i], vf_hva(&t->mem, q[i]->used, sizeof(f->used[i])),
			   sizeof(f->used[i])) ||
		    f->last_avail[i] != dev(t)->vqs[i].last_avail)
			return false;
	return true;
}

/* Run the loop (and the guest) for about @ms milliseconds. */
static void spin(struct tg *t, int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;
	while (now_ns() < end) {
		pump(t);
		g_poll(t);
		loop_run_once(&t->loop, 2);
	}
}

/* The loop callback of the device's epoll fd, as if its event had been
 * fetched before the pause. */
static void stale_event(struct tg *t)
{
	for (int i = 0; i < LOOP_MAX_FDS; i++)
		if (t->loop.h[i].fd == t->v.epfd)
			t->loop.h[i].cb(&t->loop, t->v.epfd, EPOLLIN, t->loop.h[i].ctx);
}

static bool p_rx_cnt(struct tg *t, void *arg)
{
	const struct gconn *c = arg;
	return c->rx_cnt >= 150000 || c->got_rst;
}

TEST(pause_streams_continue_after_resume)
{
	struct tg t;
	setup(&t);
	struct gconn *c;
	int fd = open_host_conn(&t, 6000, VIRTIO_VSOCK_CONN_BUF, &c);
	CHECK(c != NULL);
	if (!c) {
		teardown(&t);
		return;
	}
	c->pattern = true;
	c->seed = 3;
	/* the first 50000 bytes before the pause */
	static uint8_t out[150000];
	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = pattern(3, i);
	CHECK_EQ(send(fd, out, 50000, MSG_NOSIGNAL), 50000);
	uint64_t end = now_ns() + 5000000000ull;
	while (c->rx_cnt < 50000 && now_ns() < end)
		spin(&t, 5);
	CHECK_EQ(c->rx_cnt, 50000);

	virtio_dev_pause(dev(&t));
	struct frozen fz;
	freeze(&t, &fz);
	int signals = vf_queue_signals;
	/* the host goes on writing, the guest sends and posts buffers */
	CHECK_EQ(send(fd, out + 50000, 100000, MSG_NOSIGNAL), 100000);
	g_send(&t, c, VIRTIO_VSOCK_OP_RW, "while paused", 12, 0);
	g_post_rx(&t, 4);
	spin(&t, 50);
	stale_event(&t);
	CHECK(still_frozen(&t, &fz));
	CHECK_EQ(vf_queue_signals, signals);
	CHECK_EQ(c->rx_cnt, 50000);
	char buf[64];
	CHECK_EQ(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), -1); /* nothing reached the host */
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 1);

	virtio_dev_resume(dev(&t));
	CHECK(wait_for(&t, p_rx_cnt, c));
	CHECK_EQ(c->rx_cnt, 150000); /* every byte once, in order (pattern) */
	CHECK_EQ(c->pattern_errors, 0);
	CHECK(!c->got_rst);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(h_read(&t, fd, buf, 12, NULL), 12);
	CHECK(memcmp(buf, "while paused", 12) == 0);
	spin(&t, 20);
	CHECK_EQ(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), -1); /* and only once */
	CHECK_EQ(c->rx_cnt, 150000);
	CHECK(!dev(&t)->broken);

	struct virtio_vsock_metrics m;
	virtio_vsock_get_metrics(&t.v, &m);
	CHECK_EQ(m.rx_bytes_count, 150000);
	CHECK_EQ(m.tx_bytes_count, 12);
	CHECK_EQ(m.conns_added, 1);
	CHECK_EQ(m.conns_removed, 0);
	close(fd);
	teardown(&t);
}

TEST(pause_does_not_time_out_handshakes)
{
	struct tg t;
	setup_nodrv(&t);
	t.v.handshake_ms = 1000;
	g_up(&t);
	int fd = h_connect(&t);
	h_write(fd, "CONNECT 700\n");
	struct th h;
	CHECK(g_expect_misc(&t, &h));
	CHECK_EQ(h.op, VIRTIO_VSOCK_OP_REQUEST);
	virtio_dev_pause(dev(&t));
	/* a second host program connects while paused: it waits in the
	 * backlog, its line unread */
	int fd2 = h_connect(&t);
	h_write(fd2, "CONNECT 701\n");
	spin(&t, 1500); /* longer than the handshake time */
	CHECK_EQ(t.nmisc, t.misc_rd);
	virtio_dev_resume(dev(&t));
	/* the guest answers a little after the resume: the deadline moved by
	 * the time spent paused, the handshake did not time out */
	spin(&t, 100);
	struct gconn *c = g_new(&t, 700, h.src_port, 4096);
	g_send(&t, c, VIRTIO_VSOCK_OP_RESPONSE, NULL, 0, 0);
	CHECK(!c->got_rst);
	char ok[32] = {0}, want[32];
	int wl = snprintf(want, sizeof(want), "OK %u\n", h.src_port);
	CHECK_EQ(h_read(&t, fd, ok, (size_t)wl, NULL), (size_t)wl);
	CHECK_STR(ok, want);
	/* the one that waited goes through now */
	struct th h2;
	CHECK(g_expect_misc(&t, &h2));
	CHECK_EQ(h2.op, VIRTIO_VSOCK_OP_REQUEST);
	CHECK_EQ(h2.dst_port, 701);
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 2);
	struct virtio_vsock_metrics m;
	virtio_vsock_get_metrics(&t.v, &m);
	CHECK_EQ(m.handshake_timeouts, 0);
	close(fd);
	close(fd2);
	teardown(&t);
}

TEST(pause_transport_reset_happens_at_resume)
{
	struct tg t;
	setup(&t);
	struct gconn *c;
	int fd = open_host_conn(&t, 1000, 4096, &c);
	CHECK(c != NULL);
	memset(vf_hva(&t.mem, EVBUF, 8), 0xaa, 8);
	struct vf_seg s[] = {{EVBUF, 8, true}};
	uint16_t head = vf_chain(&t.ev, s, 1);
	notify(&t, VIRTIO_VSOCK_Q_EVENT);
	virtio_dev_pause(dev(&t));
	struct frozen fz;
	freeze(&t, &fz);
	CHECK_EQ(virtio_vsock_transport_reset(&t.v), -EINPROGRESS);
	spin(&t, 20);
	CHECK(still_frozen(&t, &fz));
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 1);
	virtio_dev_resume(dev(&t));
	CHECK_EQ(vf_used_idx(&t.ev), 1);
	CHECK_EQ(vf_used_id(&t.ev, 0), head);
	CHECK_EQ(get_le32(vf_hva(&t.mem, EVBUF, 4)), VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	CHECK_EQ(virtio_vsock_conn_count(&t.v), 0);
	CHECK(h_closed(&t, fd));
	close(fd);
	/* once: the next event buffer waits */
	uint16_t head2 = vf_chain(&t.ev, s, 1);
	notify(&t, VIRTIO_VSOCK_Q_EVENT);
	CHECK_EQ(vf_used_idx(&t.ev), 1);
	(void)head2;
	/* asked for while paused, but the driver resets the device: nothing */
	virtio_dev_pause(dev(&t));
	CHECK_EQ(virtio_vsock_transport_reset(&t.v), -EINPROGRESS);
	set_status(&t, 0);
	virtio_dev_resume(dev(&t));
	CHECK(!t.v.reset_event_pending);
	teardown(&t);
}

TEST(metrics_count_packets_connections_and_errors)
{
	struct tg t;
	setup(&t);
	struct virtio_vsock_metrics m;
	virtio_vsock_get_metrics(&t.v, &m);
	CHECK_EQ(m.conns_added, 0);
	CHECK_EQ(m.rx_queue_event_count, 1); /* g_up posted RX buffers and kicked */
	struct gconn *c;
	int fd = open_host_conn(&t, 5000, 64 * KIB, &c);
	CHECK(c != NULL);
	if (!c) {
		teardown(&t);
		return;
	}
	h_write(fd, "0123456789");
	CHECK(g_wait_data(&t, c, 10));
	g_send(&t, c, VIRTIO_VSOCK_OP_RW, "abcde", 5, 0);
	char buf[8];
	CHECK_EQ(h_read(&t, fd, buf, 5, NULL), 5);
	/* a malformed packet: RST back */
	struct th bad = g_hdr(c, VIRTIO_VSOCK_OP_RW, 0, 0);
	bad.type = 9;
	g_send_raw(&t, &bad, NULL, 0);
	CHECK(wait_for(&t, p_flag, &c->got_rst));
	CHECK(h_closed(&t, fd));
	close(fd);
	virtio_vsock_get_metrics(&t.v, &m);
	CHECK_EQ(m.conns_added, 1);
	CHECK_EQ(m.conns_removed, 1);
	CHECK_EQ(m.rx_bytes_count, 10);
	CHECK_EQ(m.tx_bytes_count, 5);
	CHECK_EQ(m.tx_packets_count, 3); /* RESPONSE, RW, the bad one */
	CHECK_EQ(m.tx_malformed_packets, 1);
	CHECK_EQ(m.rst_sent, 1);
	CHECK(m.rx_packets_count >= 3); /* REQUEST, data, RST */
	CHECK(m.tx_queue_event_count >= 3);
	CHECK(m.muxer_event_count > 0);
	CHECK_EQ(m.credit_violations, 0);
	teardown(&t);
}

/* ---- snapshot state ---- */

/* The device's section as the machine writes it: the core's state, then
 * the device's own, in one payload. */
static char serr[256];

static void snap_save(struct tg *t, struct snapfile *f)
{
	static struct virtio_dev_state core;
	struct virtio_vsock_state st;
	CHECK_EQ(virtio_dev_state_get(dev(t), &core), 0);
	CHECK_EQ(virtio_vsock_state_get(&t->v, &st), 0);
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "dev.0", VIRTIO_VSOCK_STATE_VERSION);
	virtio_dev_state_encode(&core, &w);
	virtio_vsock_state_encode(&st, &w);
	snap_writer_section_end(&w);
	snapfile_from(&w, "dev.0", f);
}

/* Decode and check p[0..len) against @t's device (nothing applied); if
 * accepted and @apply, put the core's state and the device's, restart. */
static int snap_load(struct tg *t, const uint8_t *p, size_t len, bool apply)
{
	static struct virtio_dev_state core;
	struct virtio_vsock_state st;
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	serr[0] = 0;
	int rc = virtio_dev_state_decode(&c, dev(t), &core, serr, sizeof(serr));
	if (!rc)
		rc = virtio_vsock_state_decode(&c, &t->v, &st, serr, sizeof(serr));
	if (!rc)
		rc = snap_cursor_done(&c, "dev.0", serr, sizeof(serr));
	if (!rc)
		rc = virtio_vsock_state_check(&st, &core, serr, sizeof(serr));
	if (rc || !apply)
		return rc;
	CHECK_EQ(virtio_dev_state_put(dev(t), &core), 0);
	rc = virtio_vsock_state_put(&t->v, &st);
	virtio_dev_state_restart(dev(t));
	return rc;
}

/* The payload with the device's part after the CID (held, reserved, RX
 * head: its last four bytes) replaced, loaded (not applied) into @t. */
static int snap_load_part(struct tg *t, const struct snapfile *f, uint8_t held, uint8_t reserved,
			  uint16_t head)
{
	uint8_t *copy = malloc(f->plen);
	memcpy(copy, f->p, f->plen);
	copy[f->plen - 4] = held;
	copy[f->plen - 3] = reserved;
	put_le16(copy + f->plen - 2, head);
	int rc = snap_load(t, copy, f->plen, false);
	free(copy);
	return rc;
}

/* A fresh device for guest CID @cid at a new socket path (nothing
 * negotiated), over a copy of @from's guest memory, the guest driver's
 * shadows where @from's are, its connections forgotten. */
static void setup_restored(struct tg *t, struct tg *from, uint64_t cid)
{
	setup_nodrv(t);
	if (cid != CID) {
		virtio_vsock_destroy(&t->v);
		char err[256];
		if (virtio_vsock_create(&t->v, cid, t->path, &t->mem, &t->loop, err, sizeof(err)))
			abort();
	}
	dev(t)->tops = &vf_tops;
	memcpy(vf_hva(&t->mem, 0, MEM_SIZE), vf_hva(&from->mem, 0, MEM_SIZE), MEM_SIZE);
	struct vf_drv *to[3] = {&t->rx, &t->tx, &t->ev}, *fr[3] = {&from->rx, &from->tx, &from->ev};
	for (int i = 0; i < 3; i++) {
		*to[i] = *fr[i];
		to[i]->mem = &t->mem;
		to[i]->dev = dev(t);
	}
	t->rx_seen = from->rx_seen;
	t->rx_posted = from->rx_posted;
	t->rx_buf_size = from->rx_buf_size;
	t->rx_split = from->rx_split;
	t->rx_auto = from->rx_auto;
	vf_replay_pending = 0;
}

/* @a up with an established connection (host fd *@fd, guest *@c) and two
 * event buffers posted, then paused; *@rxh the RX buffer it holds. */
static void snap_busy(struct tg *a, int *fd, struct gconn **c, uint16_t evh[2], uint16_t *rxh)
{
	setup(a);
	*fd = open_host_conn(a, 1000, 4096, c);
	CHECK(*c != NULL);
	struct vf_seg s0[] = {{EVBUF, 8, true}}, s1[] = {{EVBUF + 64, 8, true}};
	evh[0] = vf_chain(&a->ev, s0, 1);
	evh[1] = vf_chain(&a->ev, s1, 1);
	notify(a, VIRTIO_VSOCK_Q_EVENT);
	pump(a);
	g_poll(a);
	CHECK(a->v.rx_held);
	*rxh = a->v.rxc.head;
	virtio_dev_pause(dev(a));
}

TEST(snapshot_restore_drops_connections_and_resets_the_transport_once)
{
	static struct tg a, b;
	int fd;
	struct gconn *c;
	uint16_t evh[2], rxh;
	snap_busy(&a, &fd, &c, evh, &rxh);
	struct snapfile f;
	snap_save(&a, &f);
	CHECK_EQ(get_le64(f.p + f.plen - 12), CID);
	CHECK_EQ(f.p[f.plen - 4], 1);
	CHECK_EQ(get_le16(f.p + f.plen - 2), rxh);

	setup_restored(&b, &a, CID);
	for (size_t n = 0; n < f.plen; n++)
		CHECK_EQ(snap_load(&b, f.p, n, false), -EINVAL);
	uint8_t *longer = calloc(1, f.plen + 1);
	memcpy(longer, f.p, f.plen);
	CHECK_EQ(snap_load(&b, longer, f.plen + 1, false), -EINVAL);
	free(longer);
	CHECK_EQ(dev(&b)->status, 0);

	memset(vf_hva(&b.mem, EVBUF, 8), 0xaa, 8);
	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	CHECK(b.v.rx_held);
	CHECK_EQ(b.v.rxc.head, rxh);
	CHECK_EQ(vf_used_idx(&b.ev), 0); /* told at the first look at a queue */
	vf_run_replays(dev(&b));
	CHECK_EQ(vf_used_idx(&b.ev), 1);
	CHECK_EQ(vf_used_id(&b.ev, 0), evh[0]);
	CHECK_EQ(vf_used_len(&b.ev, 0), 4);
	CHECK_EQ(get_le32(vf_hva(&b.mem, EVBUF, 4)), VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	CHECK_EQ(*vf_hva(&b.mem, EVBUF + 4, 1), 0xaa);
	CHECK_EQ(virtio_vsock_conn_count(&b.v), 0);
	/* exactly once, whatever is looked at later */
	for (uint16_t q = 0; q < VIRTIO_VSOCK_NUM_QUEUES; q++)
		notify(&b, q);
	pump(&b);
	CHECK_EQ(vf_used_idx(&b.ev), 1);
	CHECK(!dev(&b)->broken);

	/* the restored device takes new connections; the first packet goes
	 * into the RX buffer it held */
	uint16_t seen = b.rx_seen;
	struct gconn *c2;
	int fd2 = open_host_conn(&b, 1001, 4096, &c2);
	CHECK(c2 != NULL);
	CHECK_EQ(vf_used_id(&b.rx, seen), rxh);
	h_write(fd2, "hello");
	CHECK(c2 && g_wait_data(&b, c2, 5));
	CHECK_EQ(virtio_vsock_conn_count(&b.v), 1);

	/* the original carries on with its connection after the snapshot */
	virtio_dev_resume(dev(&a));
	h_write(fd, "abc");
	CHECK(g_wait_data(&a, c, 3));
	CHECK(!memcmp(c->data, "abc", 3));
	CHECK_EQ(vf_used_idx(&a.ev), 0);
	close(fd);
	close(fd2);
	free(f.buf);
	teardown(&b);
	teardown(&a);
}

TEST(snapshot_refusals)
{
	static struct tg a, b;
	int fd;
	struct gconn *c;
	uint16_t evh[2], rxh;
	snap_busy(&a, &fd, &c, evh, &rxh);
	struct snapfile f;
	snap_save(&a, &f);
	/* another CID */
	setup_restored(&b, &a, CID + 1);
	CHECK_EQ(snap_load(&b, f.p, f.plen, false), -EINVAL);
	CHECK(strstr(serr, "CID") != NULL);
	teardown(&b);
	setup_restored(&b, &a, CID);
	CHECK_EQ(snap_load_part(&b, &f, 1, 0, rxh), 0);
	CHECK_EQ(snap_load_part(&b, &f, 2, 0, rxh), -EINVAL);
	CHECK(strstr(serr, "held flag") != NULL);
	CHECK_EQ(snap_load_part(&b, &f, 1, 1, rxh), -EINVAL);
	CHECK(strstr(serr, "reserved") != NULL);
	CHECK_EQ(snap_load_part(&b, &f, 1, 0, VIRTIO_VSOCK_QUEUE_MAX), -EINVAL);
	CHECK(strstr(serr, "out of range") != NULL);
	CHECK_EQ(snap_load_part(&b, &f, 0, 0, 7), -EINVAL);
	CHECK(strstr(serr, "without a held buffer") != NULL);
	CHECK_EQ(snap_load_part(&b, &f, 1, 0, (uint16_t)(rxh + 1)), -EINVAL);
	CHECK(strstr(serr, "in flight") != NULL);
	CHECK_EQ(snap_load_part(&b, &f, 0, 0, 0), -EINVAL);
	CHECK(strstr(serr, "1 RX buffers in flight") != NULL);
	/* a device its driver gave up on (FAILED) is not live and holds
	 * nothing, whatever is in flight (the fuzzer's find: refused) */
	struct snapfile gave_up = f;
	gave_up.p = vf_failed_payload(f.p, f.plen);
	CHECK_EQ(snap_load_part(&b, &gave_up, 1, 0, rxh), -EINVAL);
	CHECK(strstr(serr, "not running") != NULL);
	CHECK_EQ(snap_load_part(&b, &gave_up, 0, 0, 0), 0);
	free((void *)gave_up.p);
	CHECK_EQ(dev(&b)->status, 0);
	/* TX not enabled: the device runs nothing (it takes RX buffers only
	 * with RX and TX up), so it cannot hold one (the fuzzer's find: that
	 * loaded, and the restored device's own snapshot was refused) */
	pthread_mutex_lock(&dev(&a)->lock);
	virtq_reset(&dev(&a)->vqs[VIRTIO_VSOCK_Q_TX]);
	dev(&a)->vqs[VIRTIO_VSOCK_Q_TX].ready = false;
	pthread_mutex_unlock(&dev(&a)->lock);
	struct snapfile tx_off;
	snap_save(&a, &tx_off);
	CHECK_EQ(snap_load_part(&b, &tx_off, 1, 0, rxh), -EINVAL);
	CHECK(strstr(serr, "not running") != NULL);
	free(tx_off.buf);
	CHECK_EQ(dev(&b)->status, 0);
	/* the held buffer no longer passes (made device-readable): broken,
	 * and nobody to tell about the transport */
	vf_desc(&b.mem, RXQ, rxh, RXBUF, 4096, 0, 0);
	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	CHECK(dev(&b)->broken);
	CHECK(!b.v.rx_held);
	CHECK(!b.v.reset_event_pending);
	vf_run_replays(dev(&b));
	CHECK_EQ(vf_used_idx(&b.ev), 0);
	/* that broken device, its buffer in flight, saves a state that loads
	 * (was refused: "1 RX buffers in flight, the device holds 0"): held
	 * nothing, it restores broken, owing nobody a transport reset, until
	 * the driver resets it */
	static struct tg r;
	struct snapfile rf;
	snap_save(&b, &rf);
	setup_restored(&r, &b, CID);
	CHECK_EQ(snap_load_part(&r, &rf, 1, 0, rxh), -EINVAL);
	CHECK_EQ(snap_load(&r, rf.p, rf.plen, true), 0);
	CHECK(!r.v.rx_held && !r.v.reset_event_pending);
	CHECK(vf_broken_until_reset(dev(&r), &r.rx, VIRTIO_VSOCK_Q_RX, 1));
	CHECK_EQ(vf_used_idx(&r.ev), 0);
	free(rf.buf);
	teardown(&r);
	teardown(&b);

	/* a device the driver never started: nothing to tell */
	static struct tg n, m;
	setup_nodrv(&n);
	struct snapfile g;
	snap_save(&n, &g);
	setup_restored(&m, &n, CID);
	CHECK_EQ(snap_load(&m, g.p, g.plen, true), 0);
	CHECK(!m.v.reset_event_pending);
	CHECK_EQ(dev(&m)->status, 0);
	free(g.buf);
	teardown(&m);
	teardown(&n);
	close(fd);
	free(f.buf);
	teardown(&a);
}

TEST_MAIN()
