/* SPDX-License-Identifier: MIT */
/*
 * virtio_vsock.c - virtio socket device over Unix sockets; see virtio_vsock.h.
 *
 * Naming: from the device's point of view "rx" is host -> guest (the RX
 * queue) and "tx" is guest -> host.  Per connection:
 *   local_port  the host side's port (PATH_P's P, or the allocated port of
 *               a host-initiated connection);
 *   peer_port   the guest side's port.
 * Credit counters (§5.10.6.3), all wrapping u32:
 *   tx_cnt      bytes sent to the guest;  peer_buf_alloc, peer_fwd_cnt: the
 *               guest's last advertised values; the guest can take
 *               peer_buf_alloc - (tx_cnt - peer_fwd_cnt) more bytes;
 *   rx_cnt      bytes received from the guest;  fwd_cnt: bytes of them
 *               written to the Unix socket; rx_cnt - fwd_cnt == buf_len.
 */
#include "virtio_vsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../../event/loop.h"
#include "../../util/bytes.h"
#include "../../util/str.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#define HDR VIRTIO_VSOCK_HDR_SIZE
#define NONE 0xffffu
#define HASH_SIZE 2048u /* power of two, twice the connection limit */
#define ACCEPT_BATCH 16
#define EMFILE_PAUSE_NS 1000000000ull

_Static_assert(VIRTIO_VSOCK_MAX_CONNS < NONE, "slot indices are u16");

/* Tags of the inner epoll: slot | generation << 32 for connections; the
 * specials use slot values no connection has. */
#define TAG_LISTEN 0xffff0001u
#define TAG_KICK 0xffff0002u
#define TAG_TIMER 0xffff0003u

enum conn_state {
	CONN_FREE,
	CONN_HOST_LINE,        /* accepted on PATH, reading "CONNECT <port>\n" */
	CONN_HOST_REQ,         /* OP_REQUEST owed/sent to the guest, awaiting RESPONSE */
	CONN_GUEST_CONNECTING, /* non-blocking connect to PATH_P in progress */
	CONN_ESTABLISHED,
	CONN_CLOSING, /* host socket closed; OP_RST still to be delivered */
};

/* Packets a connection owes the guest, in the order they are sent. */
#define PEND_RST 0x01u
#define PEND_REQUEST 0x02u
#define PEND_RESPONSE 0x04u
#define PEND_SHUTDOWN 0x08u
#define PEND_CREDIT_UPDATE 0x10u
#define PEND_CREDIT_REQUEST 0x20u

struct vsock_conn {
	enum conn_state state;
	uint32_t gen; /* bumped when the slot is freed: stale epoll events */
	uint16_t idx, free_next, hash_next, pend_prev, pend_next;
	bool in_hash, in_pend;
	int fd;          /* host Unix socket, -1 once closed */
	uint32_t events; /* what the inner epoll watches (0: not registered) */
	uint32_t local_port, peer_port;
	uint8_t pending; /* PEND_* */
	bool host_initiated;
	bool guest_knows; /* the guest has seen the connection (REQUEST sent, or it asked) */
	bool host_eof, guest_shut_rcv, guest_shut_send, shut_wr_done;
	bool credit_requested;
	uint64_t deadline; /* ns: end of the handshake, 0 none */
	uint8_t line_len;
	char line[VIRTIO_VSOCK_LINE_MAX];
	uint8_t reply_len, reply_off;
	char reply[24]; /* "OK <port>\n" */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	uint32_t rx_cnt, fwd_cnt, last_fwd_sent;
	uint8_t *buf; /* ring of VIRTIO_VSOCK_CONN_BUF bytes, NULL when empty */
	uint32_t buf_head, buf_len;
};

/* A packet header (§5.10.6) in host order. */
struct pkt_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

static void hdr_get(const uint8_t *b, struct pkt_hdr *h)
{
	h->src_cid = get_le64(b);
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

static void hdr_put(uint8_t *b, const struct pkt_hdr *h)
{
	put_le64(b, h->src_cid);
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

static struct virtio_vsock *to_vsock(struct virtio_dev *d)
{
	return container_of(d, struct virtio_vsock, vdev);
}

/* Queues are processed and connections exist only while this holds. */
static bool dev_live(const struct virtio_vsock *v)
{
	const struct virtio_dev *d = &v->vdev;
	return (d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_FAILED) &&
	       !d->broken && !d->reset_pending && d->vqs[VIRTIO_VSOCK_Q_RX].active &&
	       d->vqs[VIRTIO_VSOCK_Q_TX].active;
}

static uint64_t conn_tag(const struct vsock_conn *c)
{
	return (uint64_t)c->gen << 32 | c->idx;
}

/* What the guest can still take on @c (§5.10.6.3.1); 0 if it lowered
 * buf_alloc below what is in flight or reports nonsense. */
static uint32_t peer_free(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static void kick(struct virtio_vsock *v)
{
	uint64_t one = 1;
	if (v->kicked)
		return;
	if (write(v->kick_fd, &one, sizeof(one)) == sizeof(one))
		v->kicked = true;
}

/* ---- connection table: slots, (local, peer) hash, pending list ---- */

static unsigned hash_of(uint32_t local, uint32_t peer)
{
	uint32_t h = local * 0x9e3779b1u ^ (peer + 0x7f4a7c15u) * 0x85ebca6bu;
	h ^= h >> 15;
	return h & (HASH_SIZE - 1);
}

static struct vsock_conn *lookup(struct virtio_vsock *v, uint32_t local, uint32_t peer)
{
	for (uint16_t i = v->hash[hash_of(local, peer)]; i != NONE; i = v->conns[i].hash_next) {
		struct vsock_conn *c = &v->conns[i];
		if (c->local_port == local && c->peer_port == peer)
			return c;
	}
	return NULL;
}

static void hash_add(struct virtio_vsock *v, struct vsock_conn *c)
{
	unsigned b = hash_of(c->local_port, c->peer_port);
	c->hash_next = v->hash[b];
	v->hash[b] = c->idx;
	c->in_hash = true;
}

static void hash_del(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (!c->in_hash)
		return;
	uint16_t *p = &v->hash[hash_of(c->local_port, c->peer_port)];
	while (*p != NONE && *p != c->idx)
		p = &v->conns[*p].hash_next;
	if (*p == c->idx)
		*p = c->hash_next;
	c->in_hash = false;
}

static void pend_add(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->in_pend)
		return;
	c->in_pend = true;
	c->pend_next = NONE;
	c->pend_prev = v->pend_tail;
	if (v->pend_tail != NONE)
		v->conns[v->pend_tail].pend_next = c->idx;
	else
		v->pend_head = c->idx;
	v->pend_tail = c->idx;
}

static void pend_del(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (!c->in_pend)
		return;
	if (c->pend_prev != NONE)
		v->conns[c->pend_prev].pend_next = c->pend_next;
	else
		v->pend_head = c->pend_next;
	if (c->pend_next != NONE)
		v->conns[c->pend_next].pend_prev = c->pend_prev;
	else
		v->pend_tail = c->pend_prev;
	c->in_pend = false;
}

static void queue_ctrl(struct virtio_vsock *v, struct vsock_conn *c, uint8_t bits)
{
	c->pending |= bits;
	pend_add(v, c);
}

/* A new connection in a free slot; the caller checked nconns < max_conns. */
static struct vsock_conn *conn_alloc(struct virtio_vsock *v)
{
	if (v->free_head == NONE)
		return NULL;
	struct vsock_conn *c = &v->conns[v->free_head];
	v->free_head = c->free_next;
	uint32_t gen = c->gen;
	uint16_t idx = c->idx;
	memset(c, 0, sizeof(*c));
	c->gen = gen;
	c->idx = idx;
	c->fd = -1;
	c->free_next = c->hash_next = c->pend_prev = c->pend_next = NONE;
	if (idx >= v->conn_end)
		v->conn_end = idx + 1u;
	v->nconns++;
	v->metrics.conns_added++;
	return c;
}

static void set_deadline(struct virtio_vsock *v, struct vsock_conn *c, uint64_t at)
{
	if (c->deadline != at)
		v->timer_at = UINT64_MAX; /* recompute in timer_update */
	c->deadline = at;
}

static void listen_update(struct virtio_vsock *v);

/* Close the host side of @c: socket (which leaves the inner epoll with it)
 * and buffer. */
static void conn_close_host(struct vsock_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->events = 0;
	free(c->buf);
	c->buf = NULL;
	c->buf_head = c->buf_len = 0;
}

/* Forget @c entirely; nothing more is sent to the guest about it. */
static void conn_free(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->state == CONN_FREE)
		return;
	v->metrics.conns_removed++;
	conn_close_host(c);
	hash_del(v, c);
	pend_del(v, c);
	set_deadline(v, c, 0);
	c->state = CONN_FREE;
	c->pending = 0;
	c->gen++;
	c->free_next = v->free_head;
	v->free_head = c->idx;
	if (!--v->nconns)
		v->conn_end = 0; /* every slot is free: scans start again from none */
	listen_update(v);
}

/* Abort @c: close the host socket and, if the guest knows the connection,
 * owe it an OP_RST (the slot is freed once that is delivered). */
static void conn_reset(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->state == CONN_CLOSING || c->state == CONN_FREE)
		return;
	if (!c->guest_knows) {
		conn_free(v, c);
		return;
	}
	conn_close_host(c);
	set_deadline(v, c, 0);
	c->state = CONN_CLOSING;
	c->pending = 0;
	queue_ctrl(v, c, PEND_RST);
}

/* Close connections: all of them, or (@keep_lines) all but host
 * handshakes that have not reached the guest yet. */
static void close_all(struct virtio_vsock *v, bool keep_lines)
{
	for (unsigned i = 0; i < v->conn_end; i++) { /* 0 once the last is freed */
		struct vsock_conn *c = &v->conns[i];
		if (c->state != CONN_FREE && !(keep_lines && c->state == CONN_HOST_LINE))
			conn_free(v, c);
	}
	v->rst_head = v->rst_len = 0;
	v->tx_blocked = false;
}

/* ---- epoll interest ---- */

static int ep_update(struct virtio_vsock *v, int fd, uint64_t tag, uint32_t old, uint32_t want)
{
	if (old == want)
		return 0;
	struct epoll_event ev = {.events = want, .data.u64 = tag};
	int op = !old ? EPOLL_CTL_ADD : !want ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
	return epoll_ctl(v->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

static uint32_t conn_want(const struct virtio_vsock *v, const struct vsock_conn *c)
{
	switch (c->state) {
	case CONN_HOST_LINE:
		return EPOLLIN;
	case CONN_GUEST_CONNECTING:
		return EPOLLOUT;
	case CONN_ESTABLISHED: {
		uint32_t ev = 0;
		if (c->reply_off < c->reply_len || c->buf_len)
			ev |= EPOLLOUT;
		/* Read only what can go straight into a guest buffer: the
		 * guest has credit, the RX queue has buffers, and the
		 * guest has seen our RESPONSE (data must not overtake it). */
		if (!c->host_eof && !c->guest_shut_rcv && !v->rx_starved &&
		    !(c->pending & (PEND_RESPONSE | PEND_RST)) && peer_free(c) && dev_live(v))
			ev |= EPOLLIN;
		return ev;
	}
	default:
		return 0;
	}
}

/* Make the inner epoll watch what @c needs now.  A socket that needs
 * nothing is removed from epoll, so that a hung-up peer (EPOLLHUP is
 * reported whatever the mask) cannot make the loop spin.  Last thing a
 * caller does with @c (it may reset it). */
static void conn_arm(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->fd < 0)
		return;
	uint32_t want = conn_want(v, c);
	int r = ep_update(v, c->fd, conn_tag(c), c->events, want);
	if (r < 0) {
		v->metrics.conn_event_fails++;
		log_ratelimited(&v->rl, LOG_WARN, "virtio-vsock: epoll: %s; connection reset",
				strerror(-r));
		conn_reset(v, c);
		return;
	}
	c->events = want;
}

static void set_starved(struct virtio_vsock *v, bool starved)
{
	if (v->rx_starved == starved)
		return;
	v->rx_starved = starved;
	for (unsigned i = 0; i < v->conn_end; i++)
		if (v->conns[i].state == CONN_ESTABLISHED)
			conn_arm(v, &v->conns[i]);
}

static void listen_update(struct virtio_vsock *v)
{
	if (v->listen_fd < 0)
		return;
	bool want = v->nconns < v->max_conns && !v->listen_paused_until;
	if (want == v->listen_armed)
		return;
	int r = ep_update(v, v->listen_fd, TAG_LISTEN, v->listen_armed ? EPOLLIN : 0,
			  want ? EPOLLIN : 0);
	if (r < 0)
		log_ratelimited(&v->rl, LOG_WARN, "virtio-vsock: epoll (listening socket): %s",
				strerror(-r));
	else
		v->listen_armed = want;
}

/* Arm the timerfd for the earliest handshake deadline (or the end of an
 * accept pause).  Rescans only after a deadline changed. */
static void timer_update(struct virtio_vsock *v)
{
	if (v->timer_at != UINT64_MAX)
		return;
	uint64_t at = v->listen_paused_until;
	for (unsigned i = 0; i < v->conn_end; i++) {
		const struct vsock_conn *c = &v->conns[i];
		if (c->state != CONN_FREE && c->deadline && (!at || c->deadline < at))
			at = c->deadline;
	}
	struct itimerspec its = {0};
	if (at) {
		its.it_value.tv_sec = (time_t)(at / 1000000000ull);
		its.it_value.tv_nsec = (long)(at % 1000000000ull);
	}
	if (timerfd_settime(v->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
		log_ratelimited(&v->rl, LOG_WARN, "virtio-vsock: timerfd: %s", strerror(errno));
		return;
	}
	v->timer_at = at;
}

/* ---- to the guest: the RX queue ---- */

/* The RX buffer the next packet goes into, or NULL: none posted (the
 * device is then starved: sockets disarmed, the driver asked to notify),
 * or the device broke.  Chains with device-readable parts or no room for
 * data are returned unused. */
static struct virtq_chain *rx_chain(struct virtio_vsock *v)
{
	struct virtio_dev *d = &v->vdev;
	struct virtq *q = &d->vqs[VIRTIO_VSOCK_Q_RX];
	if (!dev_live(v))
		return NULL; /* FAILED, broken or reset: guest memory is off limits */
	if (v->rx_held)
		return &v->rxc;
	for (unsigned bad = 0; bad < q->size;) {
		int r = virtq_pop(q, &v->rxc);
		if (r < 0) {
			virtio_dev_mark_broken(d, "invalid descriptor chain on the RX queue");
			return NULL;
		}
		if (r == 0) {
			if (virtq_enable_notify(q))
				continue;
			set_starved(v, true);
			return NULL;
		}
		if (v->rxc.nread == 0 && v->rxc.write_len > HDR) {
			v->rx_held = true;
			return &v->rxc;
		}
		v->metrics.rx_bad_chains++;
		bad++;
		log_ratelimited(&v->rl, LOG_WARN,
				"virtio-vsock: RX buffer with device-readable parts or at most "
				"%u bytes returned unused",
				HDR);
		if (virtq_push(q, v->rxc.head, 0) < 0) {
			virtio_dev_mark_broken(d, "push of a head not in flight");
			return NULL;
		}
		v->pushed[VIRTIO_VSOCK_Q_RX] = true;
	}
	kick(v); /* a ring full of unusable buffers: go on from the loop */
	return NULL;
}

/* Put header @h in front of the @n payload bytes already in the held RX
 * buffer and give it to the driver. */
static void rx_emit(struct virtio_vsock *v, const struct pkt_hdr *h, uint32_t n)
{
	uint8_t raw[HDR];
	hdr_put(raw, h);
	virtq_chain_write(&v->rxc, 0, raw, HDR);
	v->rx_held = false;
	if (virtq_push(&v->vdev.vqs[VIRTIO_VSOCK_Q_RX], v->rxc.head, HDR + n) < 0) {
		virtio_dev_mark_broken(&v->vdev, "push of a head not in flight");
		return;
	}
	v->pushed[VIRTIO_VSOCK_Q_RX] = true;
	v->metrics.rx_packets_count++;
	if (h->op == VIRTIO_VSOCK_OP_RST)
		v->metrics.rst_sent++;
}

/* Header of a packet on @c; every packet carries our credit (§5.10.6.3). */
static void conn_hdr(const struct virtio_vsock *v, struct vsock_conn *c, uint16_t op,
		     uint32_t flags, uint32_t len, struct pkt_hdr *h)
{
	*h = (struct pkt_hdr){
		.src_cid = VIRTIO_VSOCK_HOST_CID,
		.dst_cid = v->cid,
		.src_port = c->local_port,
		.dst_port = c->peer_port,
		.len = len,
		.type = VIRTIO_VSOCK_TYPE_STREAM,
		.op = op,
		.flags = flags,
		.buf_alloc = VIRTIO_VSOCK_CONN_BUF,
		.fwd_cnt = c->fwd_cnt,
	};
	c->last_fwd_sent = c->fwd_cnt;
	c->pending &= (uint8_t)~PEND_CREDIT_UPDATE; /* this packet is one */
}

/* Owe the guest an RST for a packet that matches no connection.  The
 * caller made sure there is room (process_tx stops while the queue is
 * full). */
static void rst_orphan(struct virtio_vsock *v, uint32_t host_port, uint32_t guest_port)
{
	if (v->rst_len >= VIRTIO_VSOCK_RST_QUEUE)
		return;
	unsigned i = (v->rst_head + v->rst_len) % VIRTIO_VSOCK_RST_QUEUE;
	v->rst_q[i].src_port = host_port;
	v->rst_q[i].dst_port = guest_port;
	v->rst_len++;
}

/* Send the control packets owed to the guest while it has RX buffers:
 * orphan RSTs, then connections round robin, one packet each per turn. */
static void process_rx(struct virtio_vsock *v)
{
	while (v->rst_len || v->pend_head != NONE) {
		if (!rx_chain(v))
			return;
		struct pkt_hdr h;
		if (v->rst_len) {
			h = (struct pkt_hdr){
				.src_cid = VIRTIO_VSOCK_HOST_CID,
				.dst_cid = v->cid,
				.src_port = v->rst_q[v->rst_head].src_port,
				.dst_port = v->rst_q[v->rst_head].dst_port,
				.type = VIRTIO_VSOCK_TYPE_STREAM,
				.op = VIRTIO_VSOCK_OP_RST,
			};
			v->rst_head = (v->rst_head + 1) % VIRTIO_VSOCK_RST_QUEUE;
			v->rst_len--;
			rx_emit(v, &h, 0);
			if (v->vdev.broken)
				return;
			continue;
		}
		struct vsock_conn *c = &v->conns[v->pend_head];
		pend_del(v, c);
		uint8_t p = c->pending;
		if (p & PEND_RST) {
			conn_hdr(v, c, VIRTIO_VSOCK_OP_RST, 0, 0, &h);
			rx_emit(v, &h, 0);
			conn_free(v, c);
		} else if (p & PEND_REQUEST) {
			c->pending &= (uint8_t)~PEND_REQUEST;
			conn_hdr(v, c, VIRTIO_VSOCK_OP_REQUEST, 0, 0, &h);
			rx_emit(v, &h, 0);
			c->guest_knows = true;
		} else if (p & PEND_RESPONSE) {
			c->pending &= (uint8_t)~PEND_RESPONSE;
			conn_hdr(v, c, VIRTIO_VSOCK_OP_RESPONSE, 0, 0, &h);
			rx_emit(v, &h, 0);
		} else if (p & PEND_SHUTDOWN) {
			c->pending &= (uint8_t)~PEND_SHUTDOWN;
			conn_hdr(v, c, VIRTIO_VSOCK_OP_SHUTDOWN, VIRTIO_VSOCK_SHUTDOWN_F_SEND, 0,
				 &h);
			rx_emit(v, &h, 0);
		} else if (p & PEND_CREDIT_UPDATE) {
			conn_hdr(v, c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0, 0, &h);
			rx_emit(v, &h, 0);
		} else if (p & PEND_CREDIT_REQUEST) {
			c->pending &= (uint8_t)~PEND_CREDIT_REQUEST;
			conn_hdr(v, c, VIRTIO_VSOCK_OP_CREDIT_REQUEST, 0, 0, &h);
			rx_emit(v, &h, 0);
		} else {
			continue; /* satisfied meanwhile (a data packet carried the credit) */
		}
		if (v->vdev.broken)
			return;
		if (c->state == CONN_FREE)
			continue;
		if (c->pending)
			pend_add(v, c);
		conn_arm(v, c); /* after RESPONSE: reading may start */
	}
}

/* ---- host socket I/O ---- */

/* Send @iov to the socket: bytes taken (0 if it is full), or -errno. */
static ssize_t sock_send(int fd, struct iovec *iov, unsigned n)
{
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = n};
	for (;;) {
		ssize_t r = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -errno;
	}
}

/* iovecs over bytes [off, off+len) of the readable or writable part of a
 * chain.  Returns how many. */
static unsigned chain_iov(const struct virtq_chain *ch, bool writable, uint32_t off, uint32_t len,
			  struct iovec *iov)
{
	unsigned n = 0;
	unsigned first = writable ? ch->nread : 0, end = writable ? ch->nsegs : ch->nread;
	for (unsigned i = first; i < end && len; i++) {
		uint32_t sl = ch->segs[i].len;
		if (off >= sl) {
			off -= sl;
			continue;
		}
		uint32_t take = sl - off < len ? sl - off : len;
		iov[n].iov_base = ch->segs[i].hva + off;
		iov[n].iov_len = take;
		n++;
		len -= take;
		off = 0;
	}
	return n;
}

/* Everything the guest sent is written (or we stop waiting for it): apply
 * the guest's SHUTDOWN(SEND), and once both directions are over close the
 * connection with OP_RST (the guest waits for it, §5.10.6.5). */
static void conn_progress(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->state != CONN_ESTABLISHED)
		return;
	bool drained = !c->buf_len && c->reply_off == c->reply_len;
	if (drained && c->buf) {
		free(c->buf);
		c->buf = NULL;
		c->buf_head = 0;
	}
	if (drained && c->guest_shut_send) {
		if (!c->shut_wr_done) {
			shutdown(c->fd, SHUT_WR);
			c->shut_wr_done = true;
		}
		if (c->host_eof || c->guest_shut_rcv) {
			conn_reset(v, c);
			return;
		}
	}
	conn_arm(v, c);
}

/* Bytes reached the socket: advertise the new credit every
 * VIRTIO_VSOCK_CREDIT_STEP bytes (an honest guest at zero credit always
 * gets one: it waits only when CONN_BUF bytes are unadvertised). */
static void conn_wrote(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->fwd_cnt - c->last_fwd_sent >= VIRTIO_VSOCK_CREDIT_STEP)
		queue_ctrl(v, c, PEND_CREDIT_UPDATE);
	conn_progress(v, c);
}

/* The socket is writable: the "OK" reply first, then buffered guest data
 * (one write per wake-up). */
static void conn_flush(struct virtio_vsock *v, struct vsock_conn *c)
{
	while (c->reply_off < c->reply_len) {
		ssize_t w = send(c->fd, c->reply + c->reply_off, c->reply_len - c->reply_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			conn_arm(v, c);
			return;
		}
		if (w <= 0) {
			v->metrics.tx_write_fails++;
			conn_reset(v, c);
			return;
		}
		c->reply_off = (uint8_t)(c->reply_off + w);
	}
	if (c->buf_len) {
		struct iovec iov[2];
		unsigned n = 1;
		uint32_t first = VIRTIO_VSOCK_CONN_BUF - c->buf_head;
		if (first > c->buf_len)
			first = c->buf_len;
		iov[0] = (struct iovec){c->buf + c->buf_head, first};
		if (first < c->buf_len)
			iov[n++] = (struct iovec){c->buf, c->buf_len - first};
		ssize_t w = sock_send(c->fd, iov, n);
		if (w < 0) {
			v->metrics.tx_write_fails++;
			conn_reset(v, c);
			return;
		}
		c->buf_head = (uint32_t)((c->buf_head + (uint64_t)w) % VIRTIO_VSOCK_CONN_BUF);
		c->buf_len -= (uint32_t)w;
		c->fwd_cnt += (uint32_t)w;
	}
	conn_wrote(v, c);
}

/* The socket is readable: one packet straight into a guest RX buffer. */
static void conn_read(struct virtio_vsock *v, struct vsock_conn *c)
{
	uint32_t max = peer_free(c);
	if (max > VIRTIO_VSOCK_MAX_PKT)
		max = VIRTIO_VSOCK_MAX_PKT;
	if (!max) {
		conn_arm(v, c);
		return;
	}
	struct virtq_chain *ch = rx_chain(v);
	if (!ch)
		return; /* starved (everything disarmed) or broken */
	if (max > ch->write_len - HDR)
		max = ch->write_len - HDR;
	struct iovec iov[VIRTQ_MAX_SEGS];
	unsigned n = chain_iov(ch, true, HDR, max, iov);
	ssize_t r;
	do
		r = readv(c->fd, iov, (int)n);
	while (r < 0 && errno == EINTR);
	if (r > 0) {
		struct pkt_hdr h;
		conn_hdr(v, c, VIRTIO_VSOCK_OP_RW, 0, (uint32_t)r, &h);
		rx_emit(v, &h, (uint32_t)r);
		v->metrics.rx_bytes_count += (uint64_t)r;
		c->tx_cnt += (uint32_t)r;
		if (!peer_free(c) && !c->credit_requested) {
			/* §5.10.6.3: ask once; the guest's next packet (any
			 * op) carries its credit. */
			c->credit_requested = true;
			queue_ctrl(v, c, PEND_CREDIT_REQUEST);
		}
		conn_arm(v, c);
		return;
	}
	if (r == 0) {
		/* The host will send no more: after the last data (already
		 * delivered, reads are in order), SHUTDOWN(SEND). */
		c->host_eof = true;
		queue_ctrl(v, c, PEND_SHUTDOWN);
		conn_progress(v, c);
		return;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return; /* the buffer stays held for the next packet */
	v->metrics.rx_read_fails++;
	conn_reset(v, c);
}

/* ---- host-initiated handshake ---- */

/* "CONNECT <port>" (the '\n' already stripped): 1..10 decimal digits,
 * at most 2^32-1, nothing else. */
static bool parse_connect(const char *s, uint32_t *port)
{
	static const char kw[] = "CONNECT ";
	if (strncmp(s, kw, sizeof(kw) - 1))
		return false;
	s += sizeof(kw) - 1;
	uint64_t p = 0;
	unsigned digits = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || ++digits > 10)
			return false;
		p = p * 10 + (uint64_t)(*s - '0');
	}
	if (!digits || p > UINT32_MAX)
		return false;
	*port = (uint32_t)p;
	return true;
}

static bool local_port_used(const struct virtio_vsock *v, uint32_t port)
{
	for (unsigned i = 0; i < v->conn_end; i++) {
		const struct vsock_conn *c = &v->conns[i];
		if (c->state != CONN_FREE && c->host_initiated && c->in_hash &&
		    c->local_port == port)
			return true;
	}
	return false;
}

/* A host port for a connection to guest port @peer: from 1024 up
 * (wrapping before VMADDR_PORT_ANY), unique among host-initiated
 * connections and as a (host, guest) pair.  0 if none (cannot happen
 * with fewer than 2^32 - 1024 connections). */
static uint32_t alloc_port(struct virtio_vsock *v, uint32_t peer)
{
	for (unsigned i = 0; i <= VIRTIO_VSOCK_MAX_CONNS; i++) {
		uint32_t p = v->next_port;
		v->next_port = p >= 0xfffffffeu ? VIRTIO_VSOCK_FIRST_HOST_PORT : p + 1;
		if (!local_port_used(v, p) && !lookup(v, p, peer))
			return p;
	}
	return 0;
}

/* Read the CONNECT line byte by byte (nothing of what follows it is
 * consumed: it is the start of the data). */
static void host_line(struct virtio_vsock *v, struct vsock_conn *c)
{
	for (;;) {
		char ch;
		ssize_t r = recv(c->fd, &ch, 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			conn_free(v, c);
			return;
		}
		if (ch == '\n')
			break;
		if (c->line_len >= VIRTIO_VSOCK_LINE_MAX - 1) {
			log_ratelimited(&v->rl, LOG_WARN,
					"virtio-vsock: %s: CONNECT line longer than %d bytes, "
					"connection closed",
					v->path, VIRTIO_VSOCK_LINE_MAX - 1);
			conn_free(v, c);
			return;
		}
		c->line[c->line_len++] = ch;
	}
	c->line[c->line_len] = 0;
	uint32_t port;
	if (!parse_connect(c->line, &port)) {
		log_ratelimited(&v->rl, LOG_WARN,
				"virtio-vsock: %s: expected \"CONNECT <port>\", connection closed",
				v->path);
		conn_free(v, c);
		return;
	}
	if (!dev_live(v)) {
		log_ratelimited(&v->rl, LOG_INFO,
				"virtio-vsock: CONNECT %u before the guest driver is up, "
				"connection closed",
				port);
		conn_free(v, c);
		return;
	}
	uint32_t lp = alloc_port(v, port);
	if (!lp) {
		conn_free(v, c);
		return;
	}
	c->local_port = lp;
	c->peer_port = port;
	c->host_initiated = true;
	c->state = CONN_HOST_REQ;
	hash_add(v, c);
	set_deadline(v, c, now_ns() + (uint64_t)v->handshake_ms * 1000000ull);
	queue_ctrl(v, c, PEND_REQUEST);
	conn_arm(v, c); /* nothing is read until the guest answers */
}

static void accept_clients(struct virtio_vsock *v)
{
	for (int i = 0; i < ACCEPT_BATCH && v->nconns < v->max_conns; i++) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays
			 * in the backlog and the socket readable; pause rather
			 * than spin. */
			log_ratelimited(&v->rl, LOG_WARN,
					"virtio-vsock: %s: accept: %s; pausing for 1 s", v->path,
					strerror(errno));
			v->listen_paused_until = now_ns() + EMFILE_PAUSE_NS;
			v->timer_at = UINT64_MAX;
			break;
		}
		struct vsock_conn *c = conn_alloc(v);
		if (!c) {
			close(fd);
			break;
		}
		c->fd = fd;
		c->state = CONN_HOST_LINE;
		set_deadline(v, c, now_ns() + (uint64_t)v->handshake_ms * 1000000ull);
		conn_arm(v, c);
	}
	listen_update(v);
}

static void on_timer(struct virtio_vsock *v)
{
	uint64_t exp;
	(void)!read(v->timer_fd, &exp, sizeof(exp));
	uint64_t now = now_ns();
	v->timer_at = UINT64_MAX;
	for (unsigned i = 0; i < v->conn_end; i++) {
		struct vsock_conn *c = &v->conns[i];
		if (c->state == CONN_FREE || !c->deadline || c->deadline > now)
			continue;
		v->metrics.handshake_timeouts++;
		log_ratelimited(&v->rl, LOG_INFO, "virtio-vsock: %s handshake timed out",
				c->state == CONN_HOST_LINE ? "CONNECT" : "connection");
		conn_reset(v, c); /* frees it when the guest never saw it */
	}
	if (v->listen_paused_until && v->listen_paused_until <= now) {
		v->listen_paused_until = 0;
		listen_update(v);
	}
}

/* ---- from the guest: the TX queue ---- */

/* The guest asks for host port h->dst_port: connect to PATH_<port>. */
static void guest_request(struct virtio_vsock *v, const struct pkt_hdr *h)
{
	char path[VSOCK_UDS_PATH_MAX + 16];
	struct vsock_conn *c = NULL;
	int fd = -1;
	bool in_progress = false;
	if (v->nconns >= v->max_conns) {
		log_ratelimited(&v->rl, LOG_WARN,
				"virtio-vsock: %u connections open, guest connection to port %u "
				"refused",
				v->nconns, h->dst_port);
		goto refuse;
	}
	if (vsock_uds_port_path(path, sizeof(path), v->path, h->dst_port) < 0)
		goto refuse;
	fd = vsock_uds_connect(path, &in_progress);
	if (fd < 0) {
		log_ratelimited(&v->rl, LOG_DEBUG, "virtio-vsock: guest connection to %s: %s", path,
				strerror(-fd));
		goto refuse;
	}
	c = conn_alloc(v);
	if (!c) {
		close(fd);
		goto refuse;
	}
	c->fd = fd;
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	c->guest_knows = true;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	hash_add(v, c);
	if (in_progress) {
		c->state = CONN_GUEST_CONNECTING;
		set_deadline(v, c, now_ns() + (uint64_t)v->handshake_ms * 1000000ull);
	} else {
		c->state = CONN_ESTABLISHED;
		queue_ctrl(v, c, PEND_RESPONSE);
	}
	conn_arm(v, c);
	return;
refuse:
	rst_orphan(v, h->dst_port, h->src_port);
}

static void guest_connected(struct virtio_vsock *v, struct vsock_conn *c)
{
	int r = vsock_uds_connect_result(c->fd);
	if (r < 0) {
		log_ratelimited(&v->rl, LOG_DEBUG, "virtio-vsock: guest connection to port %u: %s",
				c->local_port, strerror(-r));
		conn_reset(v, c);
		return;
	}
	c->state = CONN_ESTABLISHED;
	set_deadline(v, c, 0);
	queue_ctrl(v, c, PEND_RESPONSE);
	conn_arm(v, c);
}

/* OP_RW of @len bytes (validated against the chain) on an established
 * connection: to the socket, the rest into the bounded buffer. */
static void tx_data(struct virtio_vsock *v, struct vsock_conn *c, const struct virtq_chain *ch,
		    uint32_t len)
{
	if (!len) {
		conn_arm(v, c);
		return;
	}
	if (c->guest_shut_send) {
		log_ratelimited(&v->rl, LOG_WARN,
				"virtio-vsock: data after SHUTDOWN(SEND) on port %u; reset",
				c->local_port);
		conn_reset(v, c);
		return;
	}
	if (len > VIRTIO_VSOCK_CONN_BUF - c->buf_len) {
		/* More than the credit we gave (buffered == rx_cnt - fwd_cnt,
		 * at most buf_alloc): checklist E.33, never a bigger buffer. */
		v->metrics.credit_violations++;
		log_ratelimited(&v->rl, LOG_WARN,
				"virtio-vsock: guest exceeded its credit on port %u (%u bytes with "
				"%u buffered); reset",
				c->local_port, len, c->buf_len);
		conn_reset(v, c);
		return;
	}
	c->rx_cnt += len;
	v->metrics.tx_bytes_count += len;
	uint32_t off = HDR, left = len;
	if (!c->buf_len && c->reply_off == c->reply_len) {
		struct iovec iov[VIRTQ_MAX_SEGS];
		unsigned n = chain_iov(ch, false, off, left, iov);
		ssize_t w = sock_send(c->fd, iov, n);
		if (w < 0) {
			v->metrics.tx_write_fails++;
			conn_reset(v, c);
			return;
		}
		c->fwd_cnt += (uint32_t)w;
		off += (uint32_t)w;
		left -= (uint32_t)w;
	}
	if (left) {
		if (!c->buf && !(c->buf = malloc(VIRTIO_VSOCK_CONN_BUF))) {
			log_ratelimited(&v->rl, LOG_WARN, "virtio-vsock: out of memory; reset");
			conn_reset(v, c);
			return;
		}
		uint32_t tail =
			(uint32_t)(((uint64_t)c->buf_head + c->buf_len) % VIRTIO_VSOCK_CONN_BUF);
		uint32_t first = VIRTIO_VSOCK_CONN_BUF - tail;
		if (first > left)
			first = left;
		virtq_chain_read(ch, off, c->buf + tail, first);
		if (left > first)
			virtq_chain_read(ch, off + first, c->buf, left - first);
		c->buf_len += left;
	}
	conn_wrote(v, c);
}

static void guest_shutdown(struct virtio_vsock *v, struct vsock_conn *c, uint32_t flags)
{
	if ((flags & VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE) && !c->guest_shut_rcv) {
		/* The host writer gets EPIPE from now on. */
		c->guest_shut_rcv = true;
		shutdown(c->fd, SHUT_RD);
	}
	if (flags & VIRTIO_VSOCK_SHUTDOWN_F_SEND)
		c->guest_shut_send = true;
	conn_progress(v, c);
}

/* Why @h is malformed, or NULL (§5.10.6: header fields). */
static const char *hdr_invalid(const struct virtio_vsock *v, const struct pkt_hdr *h,
			       uint32_t payload)
{
	if (h->src_cid != v->cid)
		return "source CID is not the guest's";
	if (h->dst_cid != VIRTIO_VSOCK_HOST_CID)
		return "destination CID is not the host's";
	if (h->type != VIRTIO_VSOCK_TYPE_STREAM)
		return "type is not STREAM";
	if (h->op == VIRTIO_VSOCK_OP_INVALID || h->op > VIRTIO_VSOCK_OP_CREDIT_REQUEST)
		return "unknown op";
	if (h->len > payload)
		return "len larger than the buffer";
	return NULL;
}

static void handle_tx(struct virtio_vsock *v, const struct virtq_chain *ch)
{
	v->metrics.tx_packets_count++;
	if (ch->nread != ch->nsegs || ch->read_len < HDR) {
		v->metrics.tx_malformed_packets++;
		log_ratelimited(&v->rl, LOG_WARN,
				"virtio-vsock: TX buffer without a %u-byte header or with "
				"device-writable parts dropped",
				HDR);
		return;
	}
	uint8_t raw[HDR];
	struct pkt_hdr h;
	virtq_chain_read(ch, 0, raw, HDR); /* copied once (no double fetch) */
	hdr_get(raw, &h);
	struct vsock_conn *c = lookup(v, h.dst_port, h.src_port);
	if (c && c->state == CONN_CLOSING)
		return; /* our RST is on its way */
	const char *why = hdr_invalid(v, &h, ch->read_len - HDR);
	if (why) {
		v->metrics.tx_malformed_packets++;
		log_ratelimited(&v->rl, LOG_WARN,
				"virtio-vsock: bad packet (op %u, ports %u -> %u): %s", h.op,
				h.src_port, h.dst_port, why);
		if (h.op == VIRTIO_VSOCK_OP_RST) {
			if (c)
				conn_free(v, c);
		} else if (c) {
			conn_reset(v, c);
		} else {
			rst_orphan(v, h.dst_port, h.src_port);
		}
		return;
	}
	if (h.op == VIRTIO_VSOCK_OP_REQUEST) {
		if (c)
			conn_reset(v, c); /* the guest reused a live pair */
		else
			guest_request(v, &h);
		return;
	}
	if (!c) {
		if (h.op != VIRTIO_VSOCK_OP_RST)
			rst_orphan(v, h.dst_port, h.src_port);
		return;
	}
	if (h.op == VIRTIO_VSOCK_OP_RST) {
		conn_free(v, c);
		return;
	}
	/* Every header carries the sender's credit (§5.10.6.3). */
	if (c->peer_buf_alloc != h.buf_alloc || c->peer_fwd_cnt != h.fwd_cnt)
		c->credit_requested = false;
	c->peer_buf_alloc = h.buf_alloc;
	c->peer_fwd_cnt = h.fwd_cnt;
	if (c->state == CONN_HOST_REQ && h.op == VIRTIO_VSOCK_OP_RESPONSE && c->guest_knows) {
		int n = snprintf(c->reply, sizeof(c->reply), "OK %u\n", c->local_port);
		c->reply_len = (uint8_t)n;
		c->reply_off = 0;
		c->state = CONN_ESTABLISHED;
		set_deadline(v, c, 0);
		conn_arm(v, c);
		return;
	}
	if (c->state != CONN_ESTABLISHED) {
		/* anything but the answer we wait for */
		conn_reset(v, c);
		return;
	}
	switch (h.op) {
	case VIRTIO_VSOCK_OP_RESPONSE:
		conn_reset(v, c);
		return;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		guest_shutdown(v, c, h.flags);
		return;
	case VIRTIO_VSOCK_OP_RW:
		tx_data(v, c, ch, h.len);
		return;
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		queue_ctrl(v, c, PEND_CREDIT_UPDATE);
		break;
	default: /* CREDIT_UPDATE: nothing but the credit */
		break;
	}
	conn_arm(v, c);
}

/* Take TX chains (budgeted; stops while the RST queue is full). */
static void process_tx(struct virtio_vsock *v)
{
	struct virtio_dev *d = &v->vdev;
	struct virtq *q = &d->vqs[VIRTIO_VSOCK_Q_TX];
	unsigned budget = VIRTIO_VSOCK_TX_BUDGET;
	if (!dev_live(v))
		return;
	for (;;) {
		while (budget) {
			if (v->rst_len >= VIRTIO_VSOCK_RST_QUEUE) {
				v->tx_blocked = true; /* resumed when RSTs drain */
				return;
			}
			int r = virtq_pop(q, &v->txc);
			if (r < 0) {
				virtio_dev_mark_broken(d,
						       "invalid descriptor chain on the TX queue");
				return;
			}
			if (r == 0)
				break;
			handle_tx(v, &v->txc);
			if (virtq_push(q, v->txc.head, 0) < 0) {
				virtio_dev_mark_broken(d, "push of a head not in flight");
				return;
			}
			v->pushed[VIRTIO_VSOCK_Q_TX] = true;
			budget--;
		}
		if (!budget) {
			kick(v); /* let other handlers run; continue from the loop */
			return;
		}
		if (!virtq_enable_notify(q))
			return;
	}
}

/* ---- entry points ---- */

/* After any work: owed packets out, TX resumed, timer, interrupts.  With
 * the device not live, connections to the guest are closed (no fd may
 * stay armed for a device that does not process). */
static void settle(struct virtio_vsock *v)
{
	struct virtio_dev *d = &v->vdev;
	if (!dev_live(v)) {
		if (v->nconns || v->rst_len)
			close_all(v, true);
	} else {
		process_rx(v);
		if (v->tx_blocked && v->rst_len < VIRTIO_VSOCK_RST_QUEUE) {
			v->tx_blocked = false;
			kick(v);
		}
		if (d->broken)
			close_all(v, true);
	}
	timer_update(v);
	for (uint16_t q = 0; q < VIRTIO_VSOCK_NUM_QUEUES; q++) {
		if (v->pushed[q] && !d->broken)
			virtio_dev_signal_used(d, q);
		v->pushed[q] = false;
	}
}

static void conn_event(struct virtio_vsock *v, struct vsock_conn *c, uint32_t events)
{
	if (c->state != CONN_HOST_LINE && !dev_live(v))
		return; /* settle() closes it */
	switch (c->state) {
	case CONN_HOST_LINE:
		host_line(v, c);
		return;
	case CONN_GUEST_CONNECTING:
		guest_connected(v, c);
		return;
	case CONN_ESTABLISHED:
		/* EPOLLHUP/EPOLLERR: the read or write below reports it. */
		if ((c->events & EPOLLOUT) && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
			conn_flush(v, c);
		if (c->state == CONN_ESTABLISHED && (c->events & EPOLLIN) &&
		    (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			conn_read(v, c);
		return;
	default:
		return;
	}
}

static void dispatch(struct virtio_vsock *v, uint64_t tag, uint32_t events)
{
	uint32_t slot = (uint32_t)tag;
	v->metrics.muxer_event_count++;
	if (slot == TAG_LISTEN) {
		if (v->listen_armed)
			accept_clients(v);
	} else if (slot == TAG_KICK) {
		uint64_t n;
		(void)!read(v->kick_fd, &n, sizeof(n));
		v->kicked = false;
		process_tx(v);
	} else if (slot == TAG_TIMER) {
		on_timer(v);
	} else if (slot < VIRTIO_VSOCK_MAX_CONNS) {
		struct vsock_conn *c = &v->conns[slot];
		/* stale: freed (or reused) earlier in this batch, or disarmed */
		if (c->gen == (uint32_t)(tag >> 32) && c->state != CONN_FREE && c->events)
			conn_event(v, c, events);
	}
}

/* The loop callback for the device's epoll fd. */
static void on_event(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct virtio_vsock *v = ctx;
	struct epoll_event evs[64];
	pthread_mutex_lock(&v->vdev.lock);
	if (v->vdev.paused) {
		/* fetched before quiesce took the fd off the loop: nothing
		 * runs until resume (the events are level-triggered) */
		pthread_mutex_unlock(&v->vdev.lock);
		return;
	}
	int n = epoll_wait(v->epfd, evs, 64, 0);
	for (int i = 0; i < n; i++)
		dispatch(v, evs[i].data.u64, evs[i].events);
	settle(v);
	pthread_mutex_unlock(&v->vdev.lock);
}

/* ---- device ops (vdev.lock held) ---- */

static uint64_t vsock_features(struct virtio_dev *d)
{
	return 1ull << VIRTIO_VSOCK_F_STREAM;
}

static void vsock_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct virtio_vsock *v = to_vsock(d);
	uint8_t cfg[VIRTIO_VSOCK_CONFIG_SIZE];
	uint8_t *out = data;
	put_le64(cfg + VIRTIO_VSOCK_CFG_GUEST_CID, v->cid);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t o = (uint64_t)off + i;
		out[i] = o < sizeof(cfg) ? cfg[o] : 0;
	}
}

static void vsock_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	/* guest_cid is read-only (§5.10.4) */
}

static int vsock_activate(struct virtio_dev *d)
{
	/* The device is fresh (created, or reset: vsock_reset cleared what
	 * it held) or restored from a snapshot, whose held RX buffer
	 * virtio_vsock_state_put has just taken again: keep it. */
	struct virtio_vsock *v = to_vsock(d);
	v->rx_starved = v->tx_blocked = false;
	return 0;
}

static int vsock_reset(struct virtio_dev *d)
{
	/* Nothing is asynchronous: sockets are closed, the guest is told
	 * nothing (its driver is gone); virtio.c then drops the queues and
	 * with them the RX buffer we held. */
	struct virtio_vsock *v = to_vsock(d);
	close_all(v, false);
	v->rx_held = v->rx_starved = false;
	v->reset_event_pending = false; /* no driver to tell any more */
	return 0;
}

static int transport_reset_locked(struct virtio_vsock *v);

static void vsock_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct virtio_vsock *v = to_vsock(d);
	if (v->reset_event_pending) {
		/* A transport reset owed to the driver (asked for while
		 * paused, or a restored snapshot's) goes first, whichever
		 * queue is looked at: what follows belongs to the new
		 * transport. */
		v->reset_event_pending = false;
		int r = transport_reset_locked(v);
		if (r < 0)
			log_ratelimited(&v->rl, LOG_WARN, "virtio-vsock: owed transport reset: %s",
					strerror(-r));
	}
	if (q == VIRTIO_VSOCK_Q_RX) {
		v->metrics.rx_queue_event_count++;
		/* New buffers: re-arm the sockets if one is really there. */
		if (rx_chain(v))
			set_starved(v, false);
	} else if (q == VIRTIO_VSOCK_Q_TX) {
		v->metrics.tx_queue_event_count++;
		process_tx(v);
	} else if (q == VIRTIO_VSOCK_Q_EVENT) {
		/* Buffers wait for virtio_vsock_transport_reset. */
		v->metrics.ev_queue_event_count++;
	}
	settle(v);
}

/* The gate is closed: take the device's epoll fd off the loop (the
 * callback also checks vdev.paused, for an event fetched before). */
static void vsock_quiesce(struct virtio_dev *d)
{
	struct virtio_vsock *v = to_vsock(d);
	pthread_mutex_lock(&d->lock);
	v->paused_at = now_ns();
	int r = loop_mod(d->loop, v->epfd, 0);
	if (r < 0)
		log_warn("virtio-vsock: cannot pause its sockets: %s", strerror(-r));
	pthread_mutex_unlock(&d->lock);
}

/* Handshake deadlines move by the pause; the sockets go back on the
 * loop; the core looks at RX (buffers posted meanwhile) and TX (packets
 * queued meanwhile) once the gate opens, and at the event queue for a
 * transport reset asked for meanwhile. */
static void vsock_unquiesce(struct virtio_dev *d)
{
	struct virtio_vsock *v = to_vsock(d);
	pthread_mutex_lock(&d->lock);
	uint64_t now = now_ns();
	uint64_t delta = now > v->paused_at ? now - v->paused_at : 0;
	for (unsigned i = 0; i < v->conn_end; i++) {
		struct vsock_conn *c = &v->conns[i];
		if (c->state != CONN_FREE && c->deadline)
			set_deadline(v, c, c->deadline + delta);
	}
	v->timer_at = UINT64_MAX; /* re-arm for the moved deadlines */
	timer_update(v);
	int r = loop_mod(d->loop, v->epfd, EPOLLIN);
	if (r < 0)
		log_warn("virtio-vsock: cannot resume its sockets: %s", strerror(-r));
	virtio_dev_queue_notify(d, VIRTIO_VSOCK_Q_RX);
	virtio_dev_queue_notify(d, VIRTIO_VSOCK_Q_TX);
	if (v->reset_event_pending) {
		if (dev_live(v) && d->vqs[VIRTIO_VSOCK_Q_EVENT].active)
			virtio_dev_queue_notify(d, VIRTIO_VSOCK_Q_EVENT);
		else
			v->reset_event_pending = false; /* nobody to tell */
	}
	pthread_mutex_unlock(&d->lock);
}

static const struct virtio_dev_ops vsock_ops = {
	.features = vsock_features,
	.config_read = vsock_config_read,
	.config_write = vsock_config_write,
	.activate = vsock_activate,
	.reset = vsock_reset,
	.queue_notify = vsock_queue_notify,
	.quiesce = vsock_quiesce,
	.unquiesce = vsock_unquiesce,
};

/* ---- life cycle ---- */

static void release(struct virtio_vsock *v, bool dev_inited)
{
	if (v->conns) {
		for (unsigned i = 0; i < v->conn_end; i++)
			if (v->conns[i].state != CONN_FREE)
				conn_close_host(&v->conns[i]);
	}
	if (v->listen_fd >= 0) {
		close(v->listen_fd);
		vsock_uds_unlink(v->path, &v->path_id);
	}
	if (v->timer_fd >= 0)
		close(v->timer_fd);
	if (v->kick_fd >= 0)
		close(v->kick_fd);
	if (v->epfd >= 0)
		close(v->epfd);
	v->listen_fd = v->timer_fd = v->kick_fd = v->epfd = -1;
	free(v->conns);
	free(v->hash);
	v->conns = NULL;
	v->hash = NULL;
	if (dev_inited)
		virtio_dev_destroy(&v->vdev);
}

int virtio_vsock_create(struct virtio_vsock *v, uint64_t cid, const char *uds_path,
			const struct guest_mem *mem, struct loop *loop, char *err, size_t errlen)
{
	memset(v, 0, sizeof(*v));
	v->listen_fd = v->epfd = v->kick_fd = v->timer_fd = -1;
	if (cid < VIRTIO_VSOCK_CID_MIN || cid > VIRTIO_VSOCK_CID_MAX) {
		snprintf(err, errlen, "vsock cid %llu is reserved or too large (use %u..%u)",
			 (unsigned long long)cid, VIRTIO_VSOCK_CID_MIN, VIRTIO_VSOCK_CID_MAX);
		return -EINVAL;
	}
	if (!loop || !uds_path) {
		snprintf(err, errlen, "vsock: no event loop or socket path");
		return -EINVAL;
	}
	size_t plen = strlen(uds_path);
	if (plen == 0 || plen > VSOCK_UDS_PATH_MAX) {
		snprintf(err, errlen, "vsock uds path is empty or longer than %d bytes",
			 VSOCK_UDS_PATH_MAX);
		return -ENAMETOOLONG;
	}
	memcpy(v->path, uds_path, plen + 1);
	v->cid = cid;
	v->max_conns = VIRTIO_VSOCK_MAX_CONNS;
	v->handshake_ms = VIRTIO_VSOCK_HANDSHAKE_MS;
	v->next_port = VIRTIO_VSOCK_FIRST_HOST_PORT;
	v->pend_head = v->pend_tail = NONE;
	v->timer_at = UINT64_MAX;
	v->conns = calloc(VIRTIO_VSOCK_MAX_CONNS, sizeof(*v->conns));
	v->hash = malloc(HASH_SIZE * sizeof(*v->hash));
	if (!v->conns || !v->hash) {
		snprintf(err, errlen, "vsock: out of memory");
		release(v, false);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < HASH_SIZE; i++)
		v->hash[i] = NONE;
	for (unsigned i = 0; i < VIRTIO_VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &v->conns[i];
		c->idx = (uint16_t)i;
		c->fd = -1;
		c->free_next = i + 1 < VIRTIO_VSOCK_MAX_CONNS ? (uint16_t)(i + 1) : NONE;
	}
	v->free_head = 0;
	int r = virtio_dev_init(&v->vdev, &vsock_ops, "virtio-vsock", VIRTIO_ID_VSOCK,
				VIRTIO_VSOCK_NUM_QUEUES, VIRTIO_VSOCK_QUEUE_MAX, mem, loop);
	if (r < 0) {
		snprintf(err, errlen, "virtio-vsock: init: %s", strerror(-r));
		release(v, false);
		return r;
	}
	const char *what = "epoll";
	v->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (v->epfd >= 0) {
		what = "eventfd";
		v->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	}
	if (v->kick_fd >= 0) {
		what = "timerfd";
		v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	}
	if (v->timer_fd < 0 || ep_update(v, v->kick_fd, TAG_KICK, 0, EPOLLIN) < 0 ||
	    ep_update(v, v->timer_fd, TAG_TIMER, 0, EPOLLIN) < 0) {
		r = -errno;
		snprintf(err, errlen, "virtio-vsock: %s: %s", what, strerror(errno));
		release(v, true);
		return r;
	}
	r = vsock_uds_listen(v->path, &v->path_id, err, errlen);
	if (r < 0) {
		release(v, true);
		return r;
	}
	v->listen_fd = r;
	listen_update(v);
	r = loop_add(loop, v->epfd, EPOLLIN, on_event, v);
	if (r < 0) {
		snprintf(err, errlen, "virtio-vsock: cannot watch its sockets: %s", strerror(-r));
		release(v, true);
		return r;
	}
	return 0;
}

void virtio_vsock_destroy(struct virtio_vsock *v)
{
	if (!v->conns)
		return;
	if (v->epfd >= 0 && v->vdev.loop)
		loop_del(v->vdev.loop, v->epfd);
	release(v, true);
}

/* virtio_vsock_transport_reset for a running device (vdev.lock held; the
 * caller settles). */
static int transport_reset_locked(struct virtio_vsock *v)
{
	struct virtio_dev *d = &v->vdev;
	struct virtq *q = &d->vqs[VIRTIO_VSOCK_Q_EVENT];
	if (!dev_live(v) || !q->active)
		return -ENODEV;
	/* §5.10.6.6: the driver drops every connection on this event; so do
	 * we (host sockets closed, nothing owed to the guest any more). */
	close_all(v, true);
	int p = virtq_pop(q, &v->evc);
	if (p < 0) {
		virtio_dev_mark_broken(d, "invalid descriptor chain on the event queue");
		return -EIO;
	}
	if (p == 0)
		return -EAGAIN;
	int r = 0;
	uint8_t ev[4];
	uint32_t n = 0;
	if (v->evc.nread == 0 && v->evc.write_len >= sizeof(ev)) {
		put_le32(ev, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
		n = virtq_chain_write(&v->evc, 0, ev, sizeof(ev));
	} else {
		log_ratelimited(&v->rl, LOG_WARN, "virtio-vsock: unusable event buffer returned");
		r = -EINVAL;
	}
	if (virtq_push(q, v->evc.head, n) < 0) {
		virtio_dev_mark_broken(d, "push of a head not in flight");
		return -EIO;
	}
	v->pushed[VIRTIO_VSOCK_Q_EVENT] = true;
	return r;
}

int virtio_vsock_transport_reset(struct virtio_vsock *v)
{
	struct virtio_dev *d = &v->vdev;
	int r;
	pthread_mutex_lock(&d->lock);
	if (d->paused) {
		v->reset_event_pending = true; /* see vsock_unquiesce */
		r = -EINPROGRESS;
	} else {
		r = transport_reset_locked(v);
		settle(v);
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

void virtio_vsock_get_metrics(struct virtio_vsock *v, struct virtio_vsock_metrics *out)
{
	pthread_mutex_lock(&v->vdev.lock);
	*out = v->metrics;
	pthread_mutex_unlock(&v->vdev.lock);
}

uint64_t virtio_vsock_buffered(struct virtio_vsock *v)
{
	uint64_t n = 0;
	pthread_mutex_lock(&v->vdev.lock);
	for (unsigned i = 0; v->conns && i < v->conn_end; i++)
		if (v->conns[i].state != CONN_FREE)
			n += v->conns[i].buf_len;
	pthread_mutex_unlock(&v->vdev.lock);
	return n;
}

unsigned virtio_vsock_conn_count(struct virtio_vsock *v)
{
	pthread_mutex_lock(&v->vdev.lock);
	unsigned n = v->nconns;
	pthread_mutex_unlock(&v->vdev.lock);
	return n;
}

/* ---- snapshot state ------------------------------------------------------ */

int virtio_vsock_state_get(struct virtio_vsock *v, struct virtio_vsock_state *st)
{
	struct virtio_dev *d = &v->vdev;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&d->lock);
	st->guest_cid = v->cid;
	if (v->rx_held && dev_live(v)) {
		st->rx_held = 1;
		st->rx_head = v->rxc.head;
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void virtio_vsock_state_encode(const struct virtio_vsock_state *st, struct snap_writer *w)
{
	snap_put_u64(w, st->guest_cid);
	snap_put_u8(w, st->rx_held);
	snap_put_u8(w, 0); /* reserved */
	snap_put_u16(w, st->rx_head);
}

int virtio_vsock_state_decode(struct snap_cursor *c, const struct virtio_vsock *live,
			      struct virtio_vsock_state *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	st->guest_cid = snap_get_u64(c);
	st->rx_held = snap_get_u8(c);
	uint8_t reserved = snap_get_u8(c);
	st->rx_head = snap_get_u16(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "virtio-vsock state truncated");
	if (st->guest_cid != live->cid)
		return err_set(err, errlen, -EINVAL,
			       "virtio-vsock: the guest had CID %llu, this device has %llu",
			       (unsigned long long)st->guest_cid, (unsigned long long)live->cid);
	if (st->rx_held > 1 || reserved)
		return err_set(err, errlen, -EINVAL, "virtio-vsock: held flag %u, reserved byte %u",
			       st->rx_held, reserved);
	if (st->rx_head >= live->vdev.queue_max || (!st->rx_held && st->rx_head))
		return err_set(err, errlen, -EINVAL, "virtio-vsock: RX head %u%s", st->rx_head,
			       st->rx_held ? " out of range" : " without a held buffer");
	return 0;
}

int virtio_vsock_state_check(const struct virtio_vsock_state *st,
			     const struct virtio_dev_state *core, char *err, size_t errlen)
{
	bool live = virtio_dev_state_is_live(core);
	const struct virtq_state *rx = &core->vqs[VIRTIO_VSOCK_Q_RX];
	/* the device runs (takes RX buffers, dev_live) only with RX and TX up */
	if (st->rx_held && (!live || !rx->active || !core->vqs[VIRTIO_VSOCK_Q_TX].active))
		return err_set(err, errlen, -EINVAL,
			       "virtio-vsock: an RX buffer is held but the queues are not running");
	/* a device that is not live holds nothing; its queues' chains in flight
	 * die at the driver's reset (see virtio_blk_state_check) */
	if (!live)
		return 0;
	if (rx->ninflight != st->rx_held || (st->rx_held && rx->inflight[0] != st->rx_head))
		return err_set(err, errlen, -EINVAL,
			       "virtio-vsock: %u RX buffers in flight, the device holds %u",
			       rx->ninflight, st->rx_held);
	for (uint16_t q = VIRTIO_VSOCK_Q_TX; q < VIRTIO_VSOCK_NUM_QUEUES; q++)
		if (core->vqs[q].ninflight)
			return err_set(err, errlen, -EINVAL,
				       "virtio-vsock: %u chains in flight on queue %u, the device "
				       "holds none",
				       core->vqs[q].ninflight, q);
	return 0;
}

int virtio_vsock_state_put(struct virtio_vsock *v, const struct virtio_vsock_state *st)
{
	struct virtio_dev *d = &v->vdev;
	struct virtq *rx = &d->vqs[VIRTIO_VSOCK_Q_RX];
	int rc = 0;
	pthread_mutex_lock(&d->lock);
	/* Connections are not restored (the host ends of the snapshot's
	 * are gone): nothing is open, nothing owed to the guest. */
	close_all(v, true);
	v->rx_held = v->rx_starved = v->tx_blocked = false;
	v->reset_event_pending = false;
	if (d->paused)
		v->paused_at = now_ns();
	if (st->rx_held) {
		rc = virtq_chain_reread(rx, st->rx_head, &v->rxc);
		if (rc == -EIO || (!rc && (v->rxc.nread || v->rxc.write_len <= HDR))) {
			virtio_dev_mark_broken(d, "the held RX buffer no longer passes at restore");
			rc = 0;
		} else if (!rc) {
			v->rx_held = true;
		}
	}
	/* The guest's connections died with the snapshot's host side: tell
	 * it (§5.10.6.6), at the first look at a queue (restart's). */
	if (!rc && dev_live(v) && d->vqs[VIRTIO_VSOCK_Q_EVENT].active)
		v->reset_event_pending = true;
	pthread_mutex_unlock(&d->lock);
	return rc;
}
