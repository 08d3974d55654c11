/* SPDX-License-Identifier: MIT */
/*
 * virtio_net.c - virtio network device; see virtio_net.h.
 */
#include "virtio_net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../../event/loop.h"
#include "../../util/bitmap.h"
#include "../../util/bytes.h"
#include "../../util/str.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#define F(bit) (1ull << (bit))

static struct virtio_net *to_net(struct virtio_dev *d)
{
	return container_of(d, struct virtio_net, vdev);
}

static bool has(const struct virtio_net *n, unsigned bit)
{
	return n->vdev.driver_features & F(bit);
}

static const char *be_name(const struct virtio_net *n)
{
	return n->be->name ? n->be->name : "net";
}

/* The queue is up and the device healthy: guest memory may be touched. */
static bool queue_live(const struct virtio_net *n, const struct virtq *q)
{
	const struct virtio_dev *d = &n->vdev;
	return q->active && !d->broken && !d->reset_pending &&
	       (d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_FAILED);
}

/* ---- MAC addresses ---- */

static bool mac_usable(const uint8_t mac[6])
{
	if (mac[0] & 1) /* multicast / broadcast */
		return false;
	for (int i = 0; i < 6; i++)
		if (mac[i])
			return true;
	return false; /* all zero */
}

void net_default_mac(const char *name, unsigned index, uint8_t mac[6])
{
	/* FNV-1a (64-bit) over the name, a separator and the index. */
	uint64_t h = 0xcbf29ce484222325ull;
	const uint64_t prime = 0x100000001b3ull;
	for (const char *p = name ? name : ""; *p; p++)
		h = (h ^ (uint8_t)*p) * prime;
	h = (h ^ 0xff) * prime;
	for (int i = 0; i < 4; i++)
		h = (h ^ (uint8_t)(index >> (8 * i))) * prime;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)(h >> (8 * i));
	/* IEEE 802: bit 1 of the first byte = locally administered, bit 0
	 * clear = unicast.  Never all zero as a result. */
	mac[0] = (uint8_t)((mac[0] & 0xfc) | 0x02);
}

void net_format_mac(const uint8_t mac[6], char *buf)
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
		 mac[4], mac[5]);
}

/* ---- features, configuration ---- */

static uint64_t net_features(struct virtio_dev *d)
{
	struct virtio_net *n = to_net(d);
	unsigned tx = n->be->tx_offloads, rx = n->be->rx_offloads;
	uint64_t f = F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS) | F(VIRTIO_NET_F_MRG_RXBUF) |
		     F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_GUEST_ANNOUNCE);
	if (n->mtu)
		f |= F(VIRTIO_NET_F_MTU);
	/* §5.1.3.1: the TSO features need the checksum one, ECN needs a TSO. */
	if (tx & NET_OFFLOAD_CSUM) {
		f |= F(VIRTIO_NET_F_CSUM);
		if (tx & NET_OFFLOAD_TSO4)
			f |= F(VIRTIO_NET_F_HOST_TSO4);
		if (tx & NET_OFFLOAD_TSO6)
			f |= F(VIRTIO_NET_F_HOST_TSO6);
		if ((tx & NET_OFFLOAD_TSO_ECN) && (tx & (NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6)))
			f |= F(VIRTIO_NET_F_HOST_ECN);
	}
	if (rx & NET_OFFLOAD_CSUM) {
		f |= F(VIRTIO_NET_F_GUEST_CSUM);
		if (rx & NET_OFFLOAD_TSO4)
			f |= F(VIRTIO_NET_F_GUEST_TSO4);
		if (rx & NET_OFFLOAD_TSO6)
			f |= F(VIRTIO_NET_F_GUEST_TSO6);
		if ((rx & NET_OFFLOAD_TSO_ECN) && (rx & (NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6)))
			f |= F(VIRTIO_NET_F_GUEST_ECN);
	}
	return f;
}

/* What the back end may hand to the driver, from the accepted GUEST_*
 * features (prerequisites enforced here, see virtio_net.h). */
static unsigned negotiated_rx_offloads(const struct virtio_net *n)
{
	if (!has(n, VIRTIO_NET_F_GUEST_CSUM))
		return 0;
	unsigned o = NET_OFFLOAD_CSUM;
	if (has(n, VIRTIO_NET_F_GUEST_TSO4))
		o |= NET_OFFLOAD_TSO4;
	if (has(n, VIRTIO_NET_F_GUEST_TSO6))
		o |= NET_OFFLOAD_TSO6;
	if (has(n, VIRTIO_NET_F_GUEST_ECN) && (o & (NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6)))
		o |= NET_OFFLOAD_TSO_ECN;
	return o & n->be->rx_offloads;
}

/* The status field from link_up and announce_pending. */
static uint16_t status_of(const struct virtio_net *n)
{
	return (uint16_t)((n->link_up ? VIRTIO_NET_S_LINK_UP : 0) |
			  (n->announce_pending ? VIRTIO_NET_S_ANNOUNCE : 0));
}

/* The config space from mac, the status and mtu: 8 bytes, or 12 with the
 * MTU (max_virtqueue_pairs, then mtu, §5.1.4). */
static void build_config(struct virtio_net *n)
{
	memset(n->config, 0, sizeof(n->config));
	memcpy(n->config + VIRTIO_NET_CFG_MAC, n->mac, 6);
	put_le16(n->config + VIRTIO_NET_CFG_STATUS, status_of(n));
	n->config_len = VIRTIO_NET_CONFIG_SIZE_BASE;
	if (n->mtu) {
		put_le16(n->config + VIRTIO_NET_CFG_MAX_VQ_PAIRS, 1);
		put_le16(n->config + VIRTIO_NET_CFG_MTU, n->mtu);
		n->config_len = VIRTIO_NET_CONFIG_SIZE;
	}
}

static void net_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct virtio_net *n = to_net(d);
	uint8_t *out = data;
	for (uint32_t i = 0; i < len; i++) {
		uint64_t o = (uint64_t)off + i;
		out[i] = o < n->config_len ? n->config[o] : 0;
	}
}

static void net_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	/* Every field is driver-read-only with VERSION_1 (§5.1.4). */
}

/* ---- the back end's fd on the loop ---- */

/* Make the loop watch the back end's fd exactly when the device wants it
 * and is not paused.  vdev.lock held. */
static void update_fd(struct virtio_net *n)
{
	bool on = n->rx_armed && !n->vdev.paused;
	if (n->fd_on == on)
		return;
	n->fd_on = on;
	if (n->be_watched) {
		int r = loop_mod(n->vdev.loop, n->be->fd, on ? EPOLLIN : 0);
		if (r < 0)
			log_ratelimited(&n->rl, LOG_WARN, "virtio-net: %s: cannot %s the fd: %s",
					be_name(n), on ? "watch" : "pause", strerror(-r));
	}
}

/* Watch (or stop watching) the back end's fd for EPOLLIN.  vdev.lock held. */
static void set_rx_armed(struct virtio_net *n, bool on)
{
	if (n->be_dead)
		on = false;
	n->rx_armed = on;
	update_fd(n);
}

/* The back end failed for good (the tap interface was deleted): stop
 * watching it, report the link down (§5.1.4: status, config interrupt).
 * vdev.lock held. */
static void be_gone(struct virtio_net *n, const char *why)
{
	struct virtio_dev *d = &n->vdev;
	if (n->be_dead)
		return;
	set_rx_armed(n, false);
	n->be_dead = true;
	if (n->be_watched) {
		loop_del(d->loop, n->be->fd);
		n->be_watched = false;
	}
	log_warn("virtio-net: %s: %s; link down", be_name(n), why);
	n->link_up = false;
	build_config(n);
	virtio_dev_config_changed(d);
}

/* ---- chains ---- */

/* iovecs for the bytes from @off of the readable (@writable false) or
 * writable part of @c; zero-length pieces skipped.  Returns the count
 * (at most c->nsegs). */
static int chain_iov(const struct virtq_chain *c, bool writable, uint32_t off, struct iovec *iov)
{
	int n = 0;
	unsigned first = writable ? c->nread : 0, end = writable ? c->nsegs : c->nread;
	for (unsigned i = first; i < end; i++) {
		uint32_t sl = c->segs[i].len;
		if (off >= sl) {
			off -= sl;
			continue;
		}
		iov[n].iov_base = c->segs[i].hva + off;
		iov[n].iov_len = sl - off;
		n++;
		off = 0;
	}
	return n;
}

/* ---- receive offloads ---- */

/* Wake the loop thread (the work eventfd's handler, virtio_net_continue). */
static void kick_loop(struct virtio_net *n)
{
	uint64_t one = 1;
	if (write(n->work_fd, &one, sizeof(one)) < 0)
		log_ratelimited(&n->rl, LOG_WARN, "virtio-net: work eventfd: %s",
				strerror(errno));
}

/* Tell the back end the offloads the driver wants (TUNSETOFFLOAD takes
 * the rtnl lock, so it is done on the loop thread, not on the vCPU that
 * wrote the status register).  vdev.lock held.  A failure is not fatal:
 * frames with offloads the driver did not accept are dropped on receive
 * (rx_header_ok), fewer offloads than accepted cost only host CPU. */
static void apply_offloads(struct virtio_net *n)
{
	if (n->be_dead || n->offloads == n->offload_want)
		return;
	int r = n->be->ops->set_offload(n->be, n->offload_want);
	if (r == -EBADFD) { /* the tap interface was deleted */
		be_gone(n, "cannot set offloads: the interface is gone");
		return;
	}
	if (r < 0) {
		log_ratelimited(&n->rl, LOG_WARN, "virtio-net: %s: cannot set offloads 0x%x: %s",
				be_name(n), n->offload_want, strerror(-r));
		return;
	}
	n->offloads = n->offload_want;
}

/* Set the wanted offloads, applied now without a loop, else on it. */
static void want_offloads(struct virtio_net *n, unsigned o)
{
	n->offload_want = o;
	if (n->work_fd < 0)
		apply_offloads(n);
	else if (n->offloads != o)
		kick_loop(n);
}

/* ---- transmit ---- */

static void tx_drop(struct virtio_net *n, const char *why)
{
	n->metrics.tx_malformed_frames++;
	log_ratelimited(&n->rl, LOG_WARN, "virtio-net: %s: transmitted frame dropped: %s",
			be_name(n), why);
}

/* Is the driver allowed to send this header (§5.1.6.2.1)?  NULL if so. */
static const char *tx_header_problem(const struct virtio_net *n, const uint8_t *hdr)
{
	uint8_t flags = hdr[VIRTIO_NET_HDR_FLAGS], gso = hdr[VIRTIO_NET_HDR_GSO_TYPE];
	if (flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return "header flags other than NEEDS_CSUM";
	if ((flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !has(n, VIRTIO_NET_F_CSUM))
		return "NEEDS_CSUM without VIRTIO_NET_F_CSUM";
	switch (gso & ~VIRTIO_NET_HDR_GSO_ECN) {
	case VIRTIO_NET_HDR_GSO_NONE:
		if (gso & VIRTIO_NET_HDR_GSO_ECN)
			return "GSO ECN bit without a GSO type";
		break;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		if (!has(n, VIRTIO_NET_F_HOST_TSO4))
			return "GSO TCPv4 without VIRTIO_NET_F_HOST_TSO4";
		break;
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if (!has(n, VIRTIO_NET_F_HOST_TSO6))
			return "GSO TCPv6 without VIRTIO_NET_F_HOST_TSO6";
		break;
	default:
		return "unsupported GSO type";
	}
	if ((gso & VIRTIO_NET_HDR_GSO_ECN) && !has(n, VIRTIO_NET_F_HOST_ECN))
		return "GSO ECN without VIRTIO_NET_F_HOST_ECN";
	return NULL;
}

/* Send the frame of one transmit chain, or drop it. */
static void tx_frame(struct virtio_net *n, const struct virtq_chain *c)
{
	if (c->write_len) {
		tx_drop(n, "transmit chain with device-writable buffers");
		return;
	}
	if (c->read_len < NET_HDR_LEN + NET_MIN_FRAME ||
	    c->read_len - NET_HDR_LEN > NET_MAX_FRAME) {
		tx_drop(n, "frame length out of range");
		return;
	}
	/* The header is read once into host memory; the tap gets this copy,
	 * so what was checked is what is sent. */
	uint8_t hdr[NET_HDR_LEN];
	virtq_chain_read(c, 0, hdr, sizeof(hdr));
	const char *bad = tx_header_problem(n, hdr);
	if (bad) {
		tx_drop(n, bad);
		return;
	}
	put_le16(hdr + VIRTIO_NET_HDR_NUM_BUFFERS, 0); /* unused on transmit */
	struct iovec iov[1 + VIRTQ_MAX_SEGS];
	iov[0].iov_base = hdr;
	iov[0].iov_len = sizeof(hdr);
	int cnt = 1 + chain_iov(c, false, NET_HDR_LEN, iov + 1);
	ssize_t r = n->be->ops->send(n->be, iov, cnt);
	if (r == -EBADFD) { /* the tap interface was deleted */
		n->metrics.tx_fails++;
		be_gone(n, "send failed: the interface is gone");
		return;
	}
	if (r < 0) {
		n->metrics.tx_fails++;
		log_ratelimited(&n->rl, r == -EAGAIN ? LOG_DEBUG : LOG_WARN,
				"virtio-net: %s: send: %s (frame dropped)", be_name(n),
				strerror((int)-r));
		return;
	}
	n->metrics.tx_packets_count++;
	n->metrics.tx_bytes_count += c->read_len - NET_HDR_LEN;
}

/* What the TX limiter charges for a chain: its frame bytes (the readable
 * part after the header; malformed chains too, they cost host work). */
static uint64_t tx_cost(const struct virtq_chain *c)
{
	return c->read_len > NET_HDR_LEN ? c->read_len - NET_HDR_LEN : 0;
}

/* One budgeted pass over the transmit queue, starting with the chain the
 * TX limiter held, if any; a chain the limiter refuses is held (tx_held)
 * and ends the pass (its timer resumes it).  vdev.lock held. */
static void tx_process(struct virtio_net *n)
{
	struct virtio_dev *d = &n->vdev;
	struct virtq *q = &d->vqs[VIRTIO_NET_TXQ];
	bool pushed = false;
	unsigned frames = 0;
	if (!queue_live(n, q))
		return;
	for (;;) {
		int r = 1;
		for (;;) {
			if (!n->tx_held) {
				r = virtq_pop(q, &n->tx_chain);
				if (r != 1)
					break;
			}
			if (n->tx_limited &&
			    !rate_limiter_consume(&n->tx_limiter, tx_cost(&n->tx_chain), 1)) {
				/* Held: popped, neither sent nor used. */
				n->tx_held = true;
				n->metrics.tx_rate_limiter_throttled++;
				goto out;
			}
			n->tx_held = false;
			tx_frame(n, &n->tx_chain);
			if (virtq_push(q, n->tx_chain.head, 0) < 0) {
				virtio_dev_mark_broken(d, "push of a head not in flight");
				goto out;
			}
			pushed = true;
			if (++frames >= VIRTIO_NET_TX_BUDGET && n->work_fd >= 0) {
				/* Budget spent: let the loop run the others, then
				 * go on from the work eventfd. */
				kick_loop(n);
				goto out;
			}
		}
		if (r < 0) {
			virtio_dev_mark_broken(d, "invalid descriptor chain on the transmit queue");
			goto out;
		}
		if (!virtq_enable_notify(q))
			break;
	}
out:
	if (pushed)
		virtio_dev_signal_used(d, VIRTIO_NET_TXQ);
}

/* ---- receive ---- */

enum rx_result { RX_FRAME, RX_EMPTY, RX_DROPPED, RX_STOP };

static void rx_drop(struct virtio_net *n, const char *why, uint64_t len)
{
	n->metrics.rx_fails++;
	log_ratelimited(&n->rl, LOG_DEBUG,
			"virtio-net: %s: received frame of %llu bytes dropped: %s", be_name(n),
			(unsigned long long)len, why);
}

/* Take the next receive buffer into @c: 1, 0 if there is none (driver
 * notification enabled), -1 if the device broke. */
static int rx_take(struct virtio_net *n, struct virtq_chain *c)
{
	struct virtio_dev *d = &n->vdev;
	struct virtq *q = &d->vqs[VIRTIO_NET_RXQ];
	int r = 0;
	/* Pop, and if empty ask for a kick and look once more (a buffer
	 * added in between would otherwise go unnoticed). */
	for (int tries = 0; tries < 2; tries++) {
		r = virtq_pop(q, c);
		if (r != 0 || !virtq_enable_notify(q))
			break;
	}
	if (r < 0) {
		virtio_dev_mark_broken(d, "invalid descriptor chain on the receive queue");
		return -1;
	}
	if (r == 0)
		return 0;
	if (c->nread || c->write_len < NET_HDR_LEN) {
		/* §5.1.6.3.1: receive buffers are device-writable and hold at
		 * least the header. */
		virtio_dev_mark_broken(d, "receive buffer not device-writable or shorter than "
					  "the 12-byte header");
		return -1;
	}
	return 1;
}

/* Check the header the back end gave (in rx_hdr) against what the driver
 * accepted, and adjust it (§5.1.6.4.1).  False: drop the frame. */
static bool rx_header_ok(struct virtio_net *n)
{
	uint8_t *h = n->rx_hdr;
	uint8_t flags = h[VIRTIO_NET_HDR_FLAGS], gso = h[VIRTIO_NET_HDR_GSO_TYPE];
	/* What the driver accepted, whatever the back end was told last (a
	 * change is applied on the loop, frames read before it may be
	 * stale). */
	unsigned o = negotiated_rx_offloads(n);
	if ((flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !(o & NET_OFFLOAD_CSUM))
		return false;
	switch (gso & ~VIRTIO_NET_HDR_GSO_ECN) {
	case VIRTIO_NET_HDR_GSO_NONE:
		if (gso & VIRTIO_NET_HDR_GSO_ECN)
			return false;
		break;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		if (!(o & NET_OFFLOAD_TSO4))
			return false;
		break;
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if (!(o & NET_OFFLOAD_TSO6))
			return false;
		break;
	default:
		return false;
	}
	if ((gso & VIRTIO_NET_HDR_GSO_ECN) && !(o & NET_OFFLOAD_TSO_ECN))
		return false;
	/* Without GUEST_CSUM flags MUST be zero; RSC_INFO is never ours. */
	h[VIRTIO_NET_HDR_FLAGS] =
		has(n, VIRTIO_NET_F_GUEST_CSUM)
			? flags & (VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID)
			: 0;
	return true;
}

/* Byte @off (>= NET_HDR_LEN) of the frame just read: in the writable
 * part of rx_c0 or, beyond it, in the bounce buffer (rx_read's layout). */
static uint8_t rx_byte(const struct virtio_net *n, uint32_t off)
{
	const struct virtq_chain *c = &n->rx_c0;
	if (off >= c->write_len)
		return n->rx_bounce[off - c->write_len];
	for (unsigned i = c->nread; i < c->nsegs; i++) {
		if (off < c->segs[i].len)
			return c->segs[i].hva[off];
		off -= c->segs[i].len;
	}
	return 0; /* not reached: off < write_len */
}

/* Longer than the negotiated MTU allows (§5.1.4.2: gso_type NONE frames
 * up to mtu plus the link-level header, 14 bytes or 18 with a VLAN tag)?
 * @len: frame length with the virtio-net header. */
static bool rx_over_mtu(const struct virtio_net *n, uint32_t len)
{
	uint8_t gso = n->rx_hdr[VIRTIO_NET_HDR_GSO_TYPE] & ~VIRTIO_NET_HDR_GSO_ECN;
	if (!n->mtu || !has(n, VIRTIO_NET_F_MTU) || gso != VIRTIO_NET_HDR_GSO_NONE)
		return false;
	uint32_t l2 = 14;
	uint16_t type = (uint16_t)(rx_byte(n, NET_HDR_LEN + 12) << 8 |
				   rx_byte(n, NET_HDR_LEN + 13)); /* EtherType */
	if (type == 0x8100 || type == 0x88a8) /* 802.1Q, 802.1ad */
		l2 += 4;
	return len - NET_HDR_LEN > (uint32_t)n->mtu + l2;
}

/* Read the next frame into the held first chain (rx_c0) and the bounce
 * buffer. */
static enum rx_result rx_read(struct virtio_net *n)
{
	struct iovec iov[VIRTQ_MAX_SEGS + 2];
	iov[0].iov_base = n->rx_hdr;
	iov[0].iov_len = NET_HDR_LEN;
	int cnt = 1 + chain_iov(&n->rx_c0, true, NET_HDR_LEN, iov + 1);
	iov[cnt].iov_base = n->rx_bounce;
	iov[cnt].iov_len = VIRTIO_NET_BOUNCE_SIZE;
	cnt++;
	uint64_t cap = (uint64_t)n->rx_c0.write_len + VIRTIO_NET_BOUNCE_SIZE;
	ssize_t r = n->be->ops->recv(n->be, iov, cnt);
	if (r == -EAGAIN || r == -EINTR)
		return RX_EMPTY;
	if (r < 0) {
		char why[96];
		n->metrics.tap_read_fails++;
		snprintf(why, sizeof(why), "receive failed: %s", strerror((int)-r));
		be_gone(n, why);
		return RX_STOP;
	}
	if ((uint64_t)r >= cap || (uint64_t)r > NET_HDR_LEN + NET_MAX_FRAME) {
		rx_drop(n, "too long", (uint64_t)r);
		return RX_DROPPED;
	}
	if (r < NET_HDR_LEN + NET_MIN_FRAME) {
		rx_drop(n, "too short", (uint64_t)r);
		return RX_DROPPED;
	}
	if (!rx_header_ok(n)) {
		rx_drop(n, "offload the driver did not accept", (uint64_t)r);
		return RX_DROPPED;
	}
	uint32_t len = (uint32_t)r;
	if (rx_over_mtu(n, len)) {
		rx_drop(n, "longer than the MTU", len);
		return RX_DROPPED;
	}
	if (!has(n, VIRTIO_NET_F_MRG_RXBUF) && len > n->rx_c0.write_len) {
		/* §5.1.6.3.1: without MRG_RXBUF a frame needs one buffer. */
		rx_drop(n, "larger than the receive buffer", len);
		return RX_DROPPED; /* the chain is kept for the next frame */
	}
	n->rx_pending = true;
	n->rx_charged = false; /* the RX limiter is asked before it is placed */
	n->rx_have_c0 = false; /* it belongs to the frame now */
	n->rx_len = len;
	n->rx_c0_cap = n->rx_c0.write_len;
	n->rx_placed = len < n->rx_c0_cap ? len : n->rx_c0_cap;
	n->rx_heads[0] = n->rx_c0.head;
	n->rx_lens[0] = n->rx_placed;
	n->rx_nheads = 1;
	return RX_FRAME;
}

/* The pending frame cannot be completed: every descriptor of the queue is
 * held.  Keep the first chain for the next frame, return the others
 * unused. */
static int rx_drop_pending(struct virtio_net *n, bool *pushed)
{
	struct virtq *q = &n->vdev.vqs[VIRTIO_NET_RXQ];
	rx_drop(n, "receive buffers too small for it", n->rx_len);
	for (uint16_t i = 1; i < n->rx_nheads; i++)
		n->rx_lens[i] = 0;
	if (n->rx_nheads > 1) {
		if (virtq_push_batch(q, n->rx_heads + 1, n->rx_lens + 1,
				    (uint16_t)(n->rx_nheads - 1)) < 0) {
			virtio_dev_mark_broken(&n->vdev, "push of a head not in flight");
			return -1;
		}
		*pushed = true;
	}
	n->rx_pending = false;
	n->rx_have_c0 = true;
	return 1;
}

/* Place the rest of the pending frame into further buffers and publish
 * it.  1: done (delivered or dropped), 0: waiting for buffers, -1: broken. */
static int rx_place(struct virtio_net *n, bool *pushed)
{
	struct virtq *q = &n->vdev.vqs[VIRTIO_NET_RXQ];
	while (n->rx_placed < n->rx_len) {
		int r = n->rx_nheads < VIRTIO_NET_QUEUE_MAX ? rx_take(n, &n->rx_chain) : 0;
		if (r < 0)
			return -1;
		if (r == 0) {
			if (q->inflight < q->size)
				return 0; /* the driver can still add buffers */
			return rx_drop_pending(n, pushed);
		}
		uint32_t k = n->rx_len - n->rx_placed;
		if (k > n->rx_chain.write_len)
			k = n->rx_chain.write_len;
		virtq_chain_write(&n->rx_chain, 0, n->rx_bounce + (n->rx_placed - n->rx_c0_cap), k);
		n->rx_heads[n->rx_nheads] = n->rx_chain.head;
		n->rx_lens[n->rx_nheads] = k;
		n->rx_nheads++;
		n->rx_placed += k;
	}
	/* The header goes in last (§5.1.6.4: num_buffers; 1 without
	 * MRG_RXBUF). */
	put_le16(n->rx_hdr + VIRTIO_NET_HDR_NUM_BUFFERS, n->rx_nheads);
	virtq_chain_write(&n->rx_c0, 0, n->rx_hdr, NET_HDR_LEN);
	if (virtq_push_batch(q, n->rx_heads, n->rx_lens, n->rx_nheads) < 0) {
		virtio_dev_mark_broken(&n->vdev, "push of a head not in flight");
		return -1;
	}
	*pushed = true;
	n->rx_pending = false;
	n->metrics.rx_packets_count++;
	n->metrics.rx_bytes_count += n->rx_len - NET_HDR_LEN;
	return 1;
}

/* May the pending frame be published?  Asks the RX limiter once per
 * frame (its Ethernet bytes, one op). */
static bool rx_pay(struct virtio_net *n)
{
	if (n->rx_charged || !n->rx_limited ||
	    rate_limiter_consume(&n->rx_limiter, n->rx_len - NET_HDR_LEN, 1)) {
		n->rx_charged = true;
		return true;
	}
	return false;
}

/* Receive stops until the RX limiter's timer: the fd off the loop. */
static void rx_throttle(struct virtio_net *n)
{
	n->rx_throttled = true;
	n->metrics.rx_rate_limiter_throttled++;
	set_rx_armed(n, false);
}

/* Deliver frames while there are frames and buffers and the RX limiter
 * lets them through, at most VIRTIO_NET_RX_BUDGET; leave the fd armed
 * exactly when more may be delivered without a new buffer notification or
 * the limiter's timer.  @tap_ready: the back end said it has a frame (for
 * no_rx_avail_buffer).  vdev.lock held. */
static void rx_process(struct virtio_net *n, bool tap_ready)
{
	struct virtio_dev *d = &n->vdev;
	struct virtq *q = &d->vqs[VIRTIO_NET_RXQ];
	bool pushed = false;
	apply_offloads(n);
	n->rx_throttled = false;
	if (!queue_live(n, q)) {
		set_rx_armed(n, false);
		return;
	}
	for (unsigned frames = 0; frames < VIRTIO_NET_RX_BUDGET;) {
		if (n->rx_pending) {
			if (!rx_pay(n)) {
				/* Held (not yet in the used ring) until the
				 * limiter's timer. */
				rx_throttle(n);
				goto out;
			}
			int r = rx_place(n, &pushed);
			if (r < 0)
				goto out;
			if (r == 0) {
				/* Holding one frame; wait for the driver. */
				n->metrics.no_rx_avail_buffer++;
				set_rx_armed(n, false);
				goto out;
			}
			frames++;
			continue;
		}
		if (n->be_dead)
			goto out;
		if (n->rx_limited && rate_limiter_is_blocked(&n->rx_limiter)) {
			/* Waiting for the timer: read nothing. */
			rx_throttle(n);
			goto out;
		}
		if (!n->rx_have_c0) {
			int r = rx_take(n, &n->rx_c0);
			if (r < 0)
				goto out;
			if (r == 0) {
				/* No buffers: stop reading until the driver adds some. */
				if (tap_ready)
					n->metrics.no_rx_avail_buffer++;
				set_rx_armed(n, false);
				goto out;
			}
			n->rx_have_c0 = true;
		}
		switch (rx_read(n)) {
		case RX_FRAME:
			break; /* placed and counted on the next round */
		case RX_DROPPED:
			frames++;
			break;
		case RX_EMPTY:
			set_rx_armed(n, true);
			goto out;
		case RX_STOP:
			goto out;
		}
	}
	/* Budget spent with buffers left: the loop calls again. */
	set_rx_armed(n, true);
out:
	if (d->broken)
		set_rx_armed(n, false);
	if (pushed)
		virtio_dev_signal_used(d, VIRTIO_NET_RXQ);
}

/* ---- control queue ---- */

static void ctrl_malformed(struct virtio_net *n, const char *why)
{
	n->metrics.ctrl_malformed++;
	log_ratelimited(&n->rl, LOG_WARN, "virtio-net: %s: control command: %s", be_name(n), why);
}

/* Answer control chain @c (§5.1.6.5): the ack goes into the first
 * device-writable byte.  Returns the used length: 1, or 0 for a chain
 * without a writable byte.  vdev.lock held. */
static uint32_t ctrl_command(struct virtio_net *n, const struct virtq_chain *c)
{
	if (!c->write_len) {
		ctrl_malformed(n, "no device-writable byte for the ack (returned unanswered)");
		return 0;
	}
	uint8_t ack = VIRTIO_NET_ERR;
	if (c->read_len < VIRTIO_NET_CTRL_HDR_LEN) {
		ctrl_malformed(n, "shorter than its 2-byte header (answered ERR)");
	} else {
		/* The header is all that is ever read: no command taken
		 * here has data. */
		uint8_t hdr[VIRTIO_NET_CTRL_HDR_LEN];
		virtq_chain_read(c, 0, hdr, sizeof(hdr));
		uint32_t data = c->read_len - VIRTIO_NET_CTRL_HDR_LEN;
		if (hdr[0] == VIRTIO_NET_CTRL_ANNOUNCE && hdr[1] == VIRTIO_NET_CTRL_ANNOUNCE_ACK &&
		    !data && has(n, VIRTIO_NET_F_GUEST_ANNOUNCE)) {
			/* §5.1.6.5.3: cleared before the buffer is used.  The
			 * driver asked for it: no configuration interrupt. */
			if (n->announce_pending) {
				n->announce_pending = false;
				build_config(n);
				n->vdev.config_generation++;
			}
			ack = VIRTIO_NET_OK;
		} else {
			log_ratelimited(&n->rl, LOG_DEBUG,
					"virtio-net: %s: control class %u command %u (%u bytes of "
					"data) not supported",
					be_name(n), hdr[0], hdr[1], data);
		}
	}
	if (ack == VIRTIO_NET_OK)
		n->metrics.ctrl_cmds++;
	else
		n->metrics.ctrl_fails++;
	virtq_chain_write(c, 0, &ack, 1);
	return 1;
}

/* One budgeted pass over the control queue (only once the driver accepted
 * CTRL_VQ: without it the queue does not exist, §5.1.2).  vdev.lock held. */
static void ctrl_process(struct virtio_net *n)
{
	struct virtio_dev *d = &n->vdev;
	struct virtq *q = &d->vqs[VIRTIO_NET_CTRLQ];
	bool pushed = false;
	unsigned cmds = 0;
	n->ctrl_more = false;
	if (!queue_live(n, q) || !has(n, VIRTIO_NET_F_CTRL_VQ))
		return;
	for (;;) {
		int r;
		while ((r = virtq_pop(q, &n->ctrl_chain)) == 1) {
			uint32_t len = ctrl_command(n, &n->ctrl_chain);
			if (virtq_push(q, n->ctrl_chain.head, len) < 0) {
				virtio_dev_mark_broken(d, "push of a head not in flight");
				goto out;
			}
			pushed = true;
			if (++cmds >= VIRTIO_NET_CTRL_BUDGET && n->work_fd >= 0) {
				/* the work eventfd carries on (virtio_net_continue) */
				n->ctrl_more = true;
				kick_loop(n);
				goto out;
			}
		}
		if (r < 0) {
			virtio_dev_mark_broken(d, "invalid descriptor chain on the control queue");
			goto out;
		}
		if (!virtq_enable_notify(q))
			break;
	}
out:
	if (pushed)
		virtio_dev_signal_used(d, VIRTIO_NET_CTRLQ);
}

/* ---- announce ---- */

/* Can the driver announce itself (§5.1.6.5.3)?  It accepted both features
 * and its control queue runs (the ack needs it).  vdev.lock held. */
static bool guest_announces(const struct virtio_net *n)
{
	return has(n, VIRTIO_NET_F_GUEST_ANNOUNCE) && has(n, VIRTIO_NET_F_CTRL_VQ) &&
	       queue_live(n, &n->vdev.vqs[VIRTIO_NET_CTRLQ]);
}

/* The guest cannot announce itself: a broadcast RARP request from its MAC
 * (see virtio_net.h).  vdev.lock held. */
static void announce_frame(struct virtio_net *n)
{
	uint8_t f[NET_HDR_LEN + VIRTIO_NET_RARP_LEN];
	memset(f, 0, sizeof(f)); /* the virtio-net header: no offload */
	uint8_t *e = f + NET_HDR_LEN;
	memset(e, 0xff, 6); /* broadcast */
	memcpy(e + 6, n->mac, 6);
	e[12] = VIRTIO_NET_ETH_P_RARP >> 8;
	e[13] = VIRTIO_NET_ETH_P_RARP & 0xff;
	uint8_t *a = e + 14; /* RFC 903: ARP's layout, opcode 3 */
	a[1] = 1;	     /* hardware type: Ethernet */
	a[2] = 0x08;	     /* protocol type: IPv4 */
	a[4] = 6;	     /* hardware address length */
	a[5] = 4;	     /* protocol address length */
	a[7] = 3;	     /* request reverse */
	memcpy(a + 8, n->mac, 6);  /* sender hardware address; sender IPv4 0 */
	memcpy(a + 18, n->mac, 6); /* target hardware address; target IPv4 0 */
	struct iovec iov = {.iov_base = f, .iov_len = sizeof(f)};
	ssize_t r = n->be->ops->send(n->be, &iov, 1);
	if (r < 0) {
		n->metrics.announce_fails++;
		log_ratelimited(&n->rl, LOG_WARN, "virtio-net: %s: announce frame: %s", be_name(n),
				strerror((int)-r));
		return;
	}
	n->metrics.announce_frames++;
}

/* One round of the announce.  vdev.lock held. */
static void announce_round(struct virtio_net *n)
{
	struct virtio_dev *d = &n->vdev;
	n->announce_left--;
	if (guest_announces(n)) {
		/* still set: the driver has not handled the last request */
		if (n->announce_pending)
			return;
		n->announce_pending = true;
		build_config(n);
		virtio_dev_config_changed(d);
		n->metrics.announce_guest++;
		return;
	}
	if (!n->be_dead)
		announce_frame(n);
}

static void announce_disarm(struct virtio_net *n)
{
	if (!n->announce_armed)
		return;
	struct itimerspec off = {0};
	(void)timerfd_settime(n->announce_fd, 0, &off, NULL);
	n->announce_armed = false;
}

/* A round now and, while rounds are left, the timer for the next one (no
 * timer: no more rounds).  Not while paused.  vdev.lock held. */
static void announce_next(struct virtio_net *n)
{
	if (!n->announce_left)
		return;
	announce_round(n);
	if (!n->announce_left)
		return;
	uint64_t ns = (uint64_t)n->announce_gap_ms * 1000000u;
	struct itimerspec its = {.it_value = {.tv_sec = (time_t)(ns / 1000000000u),
					      .tv_nsec = (long)(ns % 1000000000u)}};
	if (!ns)
		its.it_value.tv_nsec = 1; /* 0 would disarm */
	if (n->announce_fd < 0 || timerfd_settime(n->announce_fd, 0, &its, NULL) < 0) {
		if (n->announce_fd >= 0)
			log_ratelimited(&n->rl, LOG_WARN, "virtio-net: %s: announce timer: %s",
					be_name(n), strerror(errno));
		n->announce_left = 0;
		return;
	}
	n->announce_armed = true;
}

static void on_announce(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct virtio_net *n = ctx;
	uint64_t v;
	(void)!read(fd, &v, sizeof(v));
	pthread_mutex_lock(&n->vdev.lock);
	n->announce_armed = false;
	/* while paused nothing is announced: the resume carries on */
	if (!n->vdev.paused)
		announce_next(n);
	pthread_mutex_unlock(&n->vdev.lock);
}

/* The announce timer, on the loop from the first announce on.  vdev.lock
 * held.  0 / -errno (no timer then). */
static int announce_timer_start(struct virtio_net *n)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = loop_add(n->vdev.loop, fd, EPOLLIN, on_announce, n);
	if (r < 0) {
		close(fd);
		return r;
	}
	n->announce_fd = fd;
	return 0;
}

int virtio_net_announce(struct virtio_net *n)
{
	struct virtio_dev *d = &n->vdev;
	int r = 0;
	pthread_mutex_lock(&d->lock);
	n->metrics.announce_count++;
	if (n->announce_fd < 0 && d->loop) {
		r = announce_timer_start(n);
		if (r < 0)
			log_warn("virtio-net: %s: no announce timer (%s): one round only",
				 be_name(n), strerror(-r));
	}
	announce_disarm(n);
	n->announce_left = n->announce_fd >= 0 ? VIRTIO_NET_ANNOUNCE_ROUNDS : 1;
	if (!d->paused)
		announce_next(n);
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* ---- device ops ---- */

static int net_activate(struct virtio_dev *d)
{
	/* The device holds no chain (it is fresh, or net_reset dropped
	 * them), or holds what virtio_net_state_put restored, which the
	 * first look at the queues completes: nothing to forget here. */
	struct virtio_net *n = to_net(d);
	n->rx_throttled = false;
	if (n->cfg_restored) {
		/* the link changed under the restored driver */
		n->cfg_restored = false;
		virtio_dev_config_changed(d);
	}
	want_offloads(n, negotiated_rx_offloads(n));
	/* Whether there are buffers is found out on the loop. */
	set_rx_armed(n, true);
	return 0;
}

static int net_reset(struct virtio_dev *d)
{
	struct virtio_net *n = to_net(d);
	/* The held chains and the pending frame die with the queues (the
	 * limiters keep their tokens: a reset does not refill them). */
	n->rx_have_c0 = n->rx_pending = false;
	n->rx_throttled = n->tx_held = false;
	n->rx_nheads = 0;
	n->cfg_restored = false;
	n->ctrl_more = false;
	/* the driver's ANNOUNCE goes with it (rounds left find no driver
	 * that can announce and send the frame themselves) */
	if (n->announce_pending) {
		n->announce_pending = false;
		build_config(n);
	}
	set_rx_armed(n, false);
	want_offloads(n, 0);
	return 0;
}

static void net_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct virtio_net *n = to_net(d);
	if (q == VIRTIO_NET_RXQ) {
		n->metrics.rx_queue_event_count++;
		rx_process(n, false);
	} else if (q == VIRTIO_NET_TXQ) {
		n->metrics.tx_queue_event_count++;
		tx_process(n);
	} else if (q == VIRTIO_NET_CTRLQ) {
		n->metrics.ctrl_queue_event_count++;
		ctrl_process(n);
	}
}

/* The gate is closed (vdev.paused): take the fd off the loop and stop the
 * announce timer (the rounds left wait for the resume).  The callbacks
 * check vdev.paused as well, for an event fetched before. */
static void net_quiesce(struct virtio_dev *d)
{
	struct virtio_net *n = to_net(d);
	pthread_mutex_lock(&d->lock);
	update_fd(n);
	announce_disarm(n);
	pthread_mutex_unlock(&d->lock);
}

/* Apply what the loop was asked to apply while paused, carry on with an
 * announce (its next round now), and have the core look at every queue
 * once the gate opens (re-arming the fd, sending what was queued,
 * answering commands). */
static void net_unquiesce(struct virtio_dev *d)
{
	struct virtio_net *n = to_net(d);
	pthread_mutex_lock(&d->lock);
	apply_offloads(n);
	announce_next(n);
	virtio_dev_queue_notify(d, VIRTIO_NET_RXQ);
	virtio_dev_queue_notify(d, VIRTIO_NET_TXQ);
	virtio_dev_queue_notify(d, VIRTIO_NET_CTRLQ);
	pthread_mutex_unlock(&d->lock);
}

static int net_announce(struct virtio_dev *d)
{
	return virtio_net_announce(to_net(d));
}

static const struct virtio_dev_ops net_ops = {
	.features = net_features,
	.config_read = net_config_read,
	.config_write = net_config_write,
	.activate = net_activate,
	.reset = net_reset,
	.queue_notify = net_queue_notify,
	.quiesce = net_quiesce,
	.unquiesce = net_unquiesce,
	.announce = net_announce,
};

/* ---- loop callbacks ---- */

void virtio_net_backend_ready(struct virtio_net *n, uint32_t events)
{
	pthread_mutex_lock(&n->vdev.lock);
	n->metrics.rx_tap_event_count++;
	/* A dead back end is dealt with even while paused: EPOLLERR is
	 * reported whatever the mask, the loop would spin on it. */
	if (events & (EPOLLERR | EPOLLHUP))
		be_gone(n, "the back end reported an error (interface deleted?)");
	else if (!n->vdev.paused)
		rx_process(n, true);
	pthread_mutex_unlock(&n->vdev.lock);
}

void virtio_net_continue(struct virtio_net *n)
{
	pthread_mutex_lock(&n->vdev.lock);
	if (!n->vdev.paused) {
		apply_offloads(n);
		tx_process(n);
		if (n->ctrl_more)
			ctrl_process(n);
	}
	pthread_mutex_unlock(&n->vdev.lock);
}

void virtio_net_get_metrics(struct virtio_net *n, struct virtio_net_metrics *out)
{
	pthread_mutex_lock(&n->vdev.lock);
	*out = n->metrics;
	pthread_mutex_unlock(&n->vdev.lock);
}

/* The RX limiter's timer fired: drain it (also while paused, or the
 * level-triggered loop would come back at once) and, unless paused (resume
 * looks at the queues), publish the held frame and read on. */
static void on_rx_limiter(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct virtio_net *n = ctx;
	pthread_mutex_lock(&n->vdev.lock);
	rate_limiter_timer_fired(&n->rx_limiter);
	if (!n->vdev.paused)
		rx_process(n, false);
	pthread_mutex_unlock(&n->vdev.lock);
}

/* The TX limiter's timer fired: the same for the held transmit chain. */
static void on_tx_limiter(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct virtio_net *n = ctx;
	pthread_mutex_lock(&n->vdev.lock);
	rate_limiter_timer_fired(&n->tx_limiter);
	if (!n->vdev.paused)
		tx_process(n);
	pthread_mutex_unlock(&n->vdev.lock);
}

/* Create a limiter with @c and put its timer on the loop.  vdev.lock held.
 * 0 / -errno (nothing left behind). */
static int limiter_start(struct virtio_net *n, struct rate_limiter *rl,
			 const struct rate_limiter_config *c, loop_cb cb)
{
	struct loop *loop = n->vdev.loop;
	if (!loop)
		return -EINVAL; /* nobody would resume a throttled queue */
	int r = rate_limiter_init(rl, c, n->limiter_clock, n->limiter_clock_ctx);
	if (r < 0)
		return r;
	r = loop_add(loop, rl->timer_fd, EPOLLIN, cb, n);
	if (r < 0)
		rate_limiter_destroy(rl);
	return r;
}

static void limiter_stop(struct virtio_net *n, struct rate_limiter *rl)
{
	loop_del(n->vdev.loop, rl->timer_fd);
	rate_limiter_destroy(rl);
}

int virtio_net_set_rate_limiters(struct virtio_net *n, const struct rate_limiter_config *rx,
				 const struct rate_limiter_config *tx)
{
	struct virtio_dev *d = &n->vdev;
	int r = 0;
	pthread_mutex_lock(&d->lock);
	bool new_rx = rx && !n->rx_limited && rate_limiter_config_limits(rx);
	bool new_tx = tx && !n->tx_limited && rate_limiter_config_limits(tx);
	/* What can fail first, so that a failure changes nothing. */
	if (new_rx && (r = limiter_start(n, &n->rx_limiter, rx, on_rx_limiter)) < 0)
		goto out;
	if (new_tx && (r = limiter_start(n, &n->tx_limiter, tx, on_tx_limiter)) < 0) {
		if (new_rx)
			limiter_stop(n, &n->rx_limiter);
		goto out;
	}
	if (rx && n->rx_limited)
		rate_limiter_update(&n->rx_limiter, rx);
	if (tx && n->tx_limited)
		rate_limiter_update(&n->tx_limiter, tx);
	n->rx_limited |= new_rx;
	n->tx_limited |= new_tx;
	/* At once: what the old limits held is looked at again (and held
	 * again, with a new timer, if it must still wait).  While paused
	 * resume does it. */
	if (!d->paused) {
		if (rx && n->rx_throttled)
			rx_process(n, false);
		if (tx && n->tx_held)
			tx_process(n);
	}
out:
	pthread_mutex_unlock(&d->lock);
	return r;
}

int virtio_net_set_mtu(struct virtio_net *n, uint16_t mtu)
{
	struct virtio_dev *d = &n->vdev;
	if (mtu && mtu < VIRTIO_NET_MTU_MIN)
		return -EINVAL; /* VIRTIO_NET_MTU_MAX is the type's limit */
	int r = 0;
	pthread_mutex_lock(&d->lock);
	if (d->status != 0 || d->reset_pending) {
		r = -EBUSY; /* a driver may have read the features */
	} else {
		n->mtu = mtu;
		build_config(n);
		if (mtu)
			d->device_features |= F(VIRTIO_NET_F_MTU);
		else
			d->device_features &= ~F(VIRTIO_NET_F_MTU);
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

static void on_backend(struct loop *l, int fd, uint32_t events, void *ctx)
{
	virtio_net_backend_ready(ctx, events);
}

static void on_work(struct loop *l, int fd, uint32_t events, void *ctx)
{
	uint64_t v;
	(void)!read(fd, &v, sizeof(v));
	virtio_net_continue(ctx);
}

/* ---- life cycle ---- */

int virtio_net_init(struct virtio_net *n, struct net_backend *be, bool own_be, const uint8_t *mac,
		    const struct guest_mem *mem, struct loop *loop, char *err, size_t errlen)
{
	memset(n, 0, sizeof(*n));
	n->work_fd = -1;
	n->announce_fd = -1;
	n->announce_gap_ms = VIRTIO_NET_ANNOUNCE_GAP_MS;
	n->be = be;
	if (mac) {
		if (!mac_usable(mac)) {
			snprintf(err, errlen, "%s: MAC address must be unicast and not all zero",
				 be_name(n));
			return -EINVAL;
		}
		memcpy(n->mac, mac, 6);
	} else {
		net_default_mac(be->name, 0, n->mac);
	}
	n->link_up = true;
	build_config(n);
	n->rx_bounce = malloc(VIRTIO_NET_BOUNCE_SIZE);
	if (!n->rx_bounce) {
		snprintf(err, errlen, "virtio-net: out of memory");
		return -ENOMEM;
	}
	int r = virtio_dev_init(&n->vdev, &net_ops, "virtio-net", VIRTIO_ID_NET,
				VIRTIO_NET_NUM_QUEUES, VIRTIO_NET_QUEUE_MAX, mem, loop);
	if (r < 0) {
		snprintf(err, errlen, "virtio-net: init: %s", strerror(-r));
		goto fail_bounce;
	}
	if (loop) {
		n->work_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (n->work_fd < 0) {
			r = -errno;
			snprintf(err, errlen, "virtio-net: eventfd: %s", strerror(-r));
			goto fail_dev;
		}
		r = loop_add(loop, n->work_fd, EPOLLIN, on_work, n);
		if (r < 0) {
			snprintf(err, errlen, "virtio-net: cannot watch the eventfd: %s",
				 strerror(-r));
			goto fail_efd;
		}
		if (be->fd >= 0) {
			/* Registered paused: armed once the driver is up. */
			r = loop_add(loop, be->fd, 0, on_backend, n);
			if (r < 0) {
				snprintf(err, errlen, "%s: cannot watch the back end: %s",
					 be_name(n), strerror(-r));
				loop_del(loop, n->work_fd);
				goto fail_efd;
			}
			n->be_watched = true;
		}
	}
	n->own_be = own_be;
	return 0;

fail_efd:
	close(n->work_fd);
	n->work_fd = -1;
fail_dev:
	virtio_dev_destroy(&n->vdev);
fail_bounce:
	free(n->rx_bounce);
	n->rx_bounce = NULL;
	return r;
}

int virtio_net_create(struct virtio_net *n, const char *tap_name, const uint8_t *mac_or_null,
		      const struct guest_mem *mem, struct loop *loop, char *err, size_t errlen)
{
	struct net_backend *be;
	memset(n, 0, sizeof(*n)); /* virtio_net_destroy is a no-op on failure */
	int r = tap_open(&be, tap_name, err, errlen);
	if (r < 0)
		return r;
	r = virtio_net_init(n, be, true, mac_or_null, mem, loop, err, errlen);
	if (r < 0)
		net_close(be);
	return r;
}

void virtio_net_destroy(struct virtio_net *n)
{
	if (!n->rx_bounce)
		return;
	struct loop *loop = n->vdev.loop;
	if (n->rx_limited) {
		limiter_stop(n, &n->rx_limiter);
		n->rx_limited = false;
	}
	if (n->tx_limited) {
		limiter_stop(n, &n->tx_limiter);
		n->tx_limited = false;
	}
	if (n->be_watched) {
		loop_del(loop, n->be->fd);
		n->be_watched = false;
	}
	if (n->work_fd >= 0) {
		loop_del(loop, n->work_fd);
		close(n->work_fd);
		n->work_fd = -1;
	}
	if (n->announce_fd >= 0) {
		loop_del(loop, n->announce_fd);
		close(n->announce_fd);
		n->announce_fd = -1;
	}
	if (n->own_be)
		net_close(n->be);
	n->be = NULL;
	virtio_dev_destroy(&n->vdev);
	free(n->rx_bounce);
	n->rx_bounce = NULL;
}

/* ---- snapshot state ------------------------------------------------------ */

static uint32_t rx_placed_of(const struct virtio_net_state *st)
{
	uint64_t sum = 0;
	for (uint16_t i = 0; i < st->rx_nheads && i < VIRTIO_NET_QUEUE_MAX; i++)
		sum += st->rx_lens[i];
	return sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
}

int virtio_net_state_get(struct virtio_net *n, struct virtio_net_state *st)
{
	struct virtio_dev *d = &n->vdev;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&d->lock);
	memcpy(st->mac, n->mac, sizeof(st->mac));
	st->status = status_of(n);
	st->mtu = n->mtu;
	/* A device that is not live holds nothing a restore could use. */
	if (n->tx_held && queue_live(n, &d->vqs[VIRTIO_NET_TXQ])) {
		st->tx_held = 1;
		st->tx_head = n->tx_chain.head;
	}
	if (queue_live(n, &d->vqs[VIRTIO_NET_RXQ])) {
		if (n->rx_have_c0) {
			st->rx_state = VIRTIO_NET_RX_BUFFER;
			st->rx_head = n->rx_c0.head;
		} else if (n->rx_pending) {
			st->rx_state = VIRTIO_NET_RX_FRAME;
			st->rx_len = n->rx_len;
			st->rx_c0_cap = n->rx_c0_cap;
			st->rx_nheads = n->rx_nheads;
			memcpy(st->rx_heads, n->rx_heads, n->rx_nheads * sizeof(n->rx_heads[0]));
			memcpy(st->rx_lens, n->rx_lens, n->rx_nheads * sizeof(n->rx_lens[0]));
			memcpy(st->rx_hdr, n->rx_hdr, NET_HDR_LEN);
			/* what is not in guest memory yet is in the bounce
			 * buffer, from the first chain's capacity on */
			if (n->rx_placed < n->rx_len)
				memcpy(st->rx_rest, n->rx_bounce + (n->rx_placed - n->rx_c0_cap),
				       n->rx_len - n->rx_placed);
		}
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void virtio_net_state_encode(const struct virtio_net_state *st, struct snap_writer *w)
{
	snap_put_bytes(w, st->mac, sizeof(st->mac));
	snap_put_u16(w, st->status);
	snap_put_u16(w, st->mtu);
	snap_put_u8(w, st->tx_held);
	snap_put_u8(w, st->rx_state);
	snap_put_u16(w, st->tx_head);
	snap_put_u16(w, st->rx_head);
	if (st->rx_state != VIRTIO_NET_RX_FRAME)
		return;
	snap_put_u32(w, st->rx_len);
	snap_put_u32(w, st->rx_c0_cap);
	snap_put_u16(w, st->rx_nheads);
	for (uint16_t i = 0; i < st->rx_nheads && i < VIRTIO_NET_QUEUE_MAX; i++) {
		snap_put_u16(w, st->rx_heads[i]);
		snap_put_u32(w, st->rx_lens[i]);
	}
	snap_put_bytes(w, st->rx_hdr, NET_HDR_LEN);
	uint32_t placed = rx_placed_of(st);
	if (placed < st->rx_len && st->rx_len - placed <= sizeof(st->rx_rest))
		snap_put_bytes(w, st->rx_rest, st->rx_len - placed);
}

/* The frame fields of @st (RX_FRAME, heads and lengths read) as the
 * receive path builds them (rx_read, rx_place).  NULL if so, else why not. */
static const char *frame_problem(const struct virtio_net_state *st, uint16_t qmax)
{
	if (st->rx_len < NET_HDR_LEN + NET_MIN_FRAME || st->rx_len > NET_HDR_LEN + NET_MAX_FRAME)
		return "frame length out of range";
	if (st->rx_c0_cap < NET_HDR_LEN)
		return "first chain shorter than the header";
	if (!st->rx_nheads || st->rx_nheads > qmax)
		return "chain count out of range";
	uint32_t first = st->rx_len < st->rx_c0_cap ? st->rx_len : st->rx_c0_cap;
	if (st->rx_lens[0] != first)
		return "bytes in the first chain";
	uint64_t placed = first;
	for (uint16_t i = 1; i < st->rx_nheads; i++) {
		if (!st->rx_lens[i] || st->rx_lens[i] > st->rx_len - placed)
			return "bytes in a further chain";
		placed += st->rx_lens[i];
	}
	for (uint16_t i = 0; i < st->rx_nheads; i++) {
		if (st->rx_heads[i] >= qmax)
			return "head out of range";
		for (uint16_t k = 0; k < i; k++)
			if (st->rx_heads[k] == st->rx_heads[i])
				return "a head twice";
	}
	return NULL;
}

int virtio_net_state_decode(struct snap_cursor *c, const struct virtio_net *live,
			    struct virtio_net_state *st, char *err, size_t errlen)
{
	uint16_t qmax = live->vdev.queue_max;
	memset(st, 0, sizeof(*st));
	snap_get_bytes(c, st->mac, sizeof(st->mac));
	st->status = snap_get_u16(c);
	st->mtu = snap_get_u16(c);
	st->tx_held = snap_get_u8(c);
	st->rx_state = snap_get_u8(c);
	st->tx_head = snap_get_u16(c);
	st->rx_head = snap_get_u16(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "virtio-net state truncated");
	if (!mac_usable(st->mac))
		return err_set(err, errlen, -EINVAL,
			       "virtio-net: MAC address is multicast or all zero");
	if (st->status & ~(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE))
		return err_set(err, errlen, -EINVAL, "virtio-net: status %#x has unknown bits",
			       st->status);
	if (st->mtu != live->mtu)
		return err_set(err, errlen, -EINVAL, "virtio-net: MTU %u saved, this interface has %u",
			       st->mtu, live->mtu);
	if (st->tx_held > 1 || st->rx_state > VIRTIO_NET_RX_FRAME)
		return err_set(err, errlen, -EINVAL, "virtio-net: TX held %u, RX state %u",
			       st->tx_held, st->rx_state);
	if (st->tx_head >= qmax || (!st->tx_held && st->tx_head) || st->rx_head >= qmax ||
	    (st->rx_state != VIRTIO_NET_RX_BUFFER && st->rx_head))
		return err_set(err, errlen, -EINVAL, "virtio-net: TX head %u, RX head %u",
			       st->tx_head, st->rx_head);
	if (st->rx_state != VIRTIO_NET_RX_FRAME)
		return 0;
	st->rx_len = snap_get_u32(c);
	st->rx_c0_cap = snap_get_u32(c);
	st->rx_nheads = snap_get_u16(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "virtio-net state truncated");
	if (st->rx_nheads > qmax || st->rx_nheads > VIRTIO_NET_QUEUE_MAX)
		return err_set(err, errlen, -EINVAL, "virtio-net: a frame in %u chains",
			       st->rx_nheads);
	for (uint16_t i = 0; i < st->rx_nheads; i++) {
		st->rx_heads[i] = snap_get_u16(c);
		st->rx_lens[i] = snap_get_u32(c);
	}
	snap_get_bytes(c, st->rx_hdr, NET_HDR_LEN);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "virtio-net state truncated");
	const char *why = frame_problem(st, qmax);
	if (why)
		return err_set(err, errlen, -EINVAL, "virtio-net: received frame: %s", why);
	uint32_t rest = st->rx_len - rx_placed_of(st);
	snap_get_bytes(c, st->rx_rest, rest);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "virtio-net state truncated");
	return 0;
}

/* Are the heads in flight of queue @q exactly @heads[0..n)? */
static bool inflight_is(const struct virtq_state *q, const uint16_t *heads, uint16_t n)
{
	if (q->ninflight != n)
		return false;
	for (uint16_t i = 0; i < n; i++) {
		bool found = false;
		for (uint16_t k = 0; k < q->ninflight && !found; k++)
			found = q->inflight[k] == heads[i];
		if (!found)
			return false;
	}
	return true;
}

int virtio_net_state_check(const struct virtio_net_state *st, const struct virtio_dev_state *core,
			   char *err, size_t errlen)
{
	bool live = virtio_dev_state_is_live(core);
	const struct virtq_state *rx = &core->vqs[VIRTIO_NET_RXQ], *tx = &core->vqs[VIRTIO_NET_TXQ];
	const uint64_t announce = F(VIRTIO_NET_F_GUEST_ANNOUNCE) | F(VIRTIO_NET_F_CTRL_VQ);
	if ((st->status & VIRTIO_NET_S_ANNOUNCE) && (core->driver_features & announce) != announce)
		return err_set(err, errlen, -EINVAL,
			       "virtio-net: ANNOUNCE is set but the driver did not accept "
			       "GUEST_ANNOUNCE and CTRL_VQ");
	if ((st->tx_held && (!live || !tx->active)) ||
	    (st->rx_state != VIRTIO_NET_RX_IDLE && (!live || !rx->active)))
		return err_set(err, errlen, -EINVAL,
			       "virtio-net: chains are held but the queues are not running");
	/* a device that is not live holds nothing; its queues' chains in flight
	 * die at the driver's reset (see virtio_blk_state_check) */
	if (!live)
		return 0;
	if (core->vqs[VIRTIO_NET_CTRLQ].ninflight)
		return err_set(err, errlen, -EINVAL,
			       "virtio-net: %u chains in flight on the control queue, the device "
			       "holds none",
			       core->vqs[VIRTIO_NET_CTRLQ].ninflight);
	if (!inflight_is(tx, &st->tx_head, st->tx_held))
		return err_set(err, errlen, -EINVAL,
			       "virtio-net: %u chains in flight on the transmit queue, the device "
			       "holds %u",
			       tx->ninflight, st->tx_held);
	const uint16_t *heads = st->rx_state == VIRTIO_NET_RX_FRAME ? st->rx_heads : &st->rx_head;
	uint16_t n = st->rx_state == VIRTIO_NET_RX_FRAME ? st->rx_nheads
			 : st->rx_state == VIRTIO_NET_RX_BUFFER ? 1
								  : 0;
	if (!inflight_is(rx, heads, n))
		return err_set(err, errlen, -EINVAL,
			       "virtio-net: %u chains in flight on the receive queue, the device "
			       "holds %u",
			       rx->ninflight, n);
	if (st->rx_state == VIRTIO_NET_RX_FRAME &&
	    !(core->driver_features & F(VIRTIO_NET_F_MRG_RXBUF)) &&
	    (st->rx_nheads > 1 || st->rx_len > st->rx_c0_cap))
		return err_set(err, errlen, -EINVAL,
			       "virtio-net: a received frame larger than its buffer without "
			       "MRG_RXBUF");
	return 0;
}

/* Take chain @head of queue @qi again into @c (d->lock held), a receive
 * chain checked as rx_take checks it: 1, 0 if it no longer passes (the
 * device is then broken), -EINVAL if it is not in flight. */
static int retake(struct virtio_net *n, uint16_t qi, uint16_t head, struct virtq_chain *c)
{
	int r = virtq_chain_reread(&n->vdev.vqs[qi], head, c);
	if (r == -EINVAL)
		return r;
	if (r || (qi == VIRTIO_NET_RXQ && (c->nread || c->write_len < NET_HDR_LEN))) {
		virtio_dev_mark_broken(&n->vdev, "a held chain no longer passes at restore");
		return 0;
	}
	return 1;
}

int virtio_net_state_put(struct virtio_net *n, const struct virtio_net_state *st)
{
	struct virtio_dev *d = &n->vdev;
	int rc = 0, r;
	pthread_mutex_lock(&d->lock);
	memcpy(n->mac, st->mac, sizeof(n->mac));
	n->cfg_restored = (st->status & VIRTIO_NET_S_LINK_UP) != n->link_up;
	n->announce_pending = st->status & VIRTIO_NET_S_ANNOUNCE;
	build_config(n);
	n->ctrl_more = false;
	n->tx_held = n->rx_have_c0 = n->rx_pending = false;
	n->rx_throttled = n->rx_charged = false;
	n->rx_nheads = 0;
	if (st->tx_held) {
		r = retake(n, VIRTIO_NET_TXQ, st->tx_head, &n->tx_chain);
		if (r < 0)
			rc = r;
		n->tx_held = r > 0;
	}
	if (!rc && st->rx_state == VIRTIO_NET_RX_BUFFER) {
		r = retake(n, VIRTIO_NET_RXQ, st->rx_head, &n->rx_c0);
		if (r < 0)
			rc = r;
		n->rx_have_c0 = r > 0;
	} else if (!rc && st->rx_state == VIRTIO_NET_RX_FRAME) {
		struct virtq *q = &d->vqs[VIRTIO_NET_RXQ];
		for (uint16_t i = 1; i < st->rx_nheads && !rc; i++)
			if (st->rx_heads[i] >= q->size || !bitmap_test(q->inflight_map, st->rx_heads[i]))
				rc = -EINVAL;
		r = rc ? rc : retake(n, VIRTIO_NET_RXQ, st->rx_heads[0], &n->rx_c0);
		if (r < 0) {
			rc = r;
		} else if (r > 0 && n->rx_c0.write_len != st->rx_c0_cap) {
			virtio_dev_mark_broken(d, "the received frame's first buffer changed size");
		} else if (r > 0) {
			n->rx_pending = true;
			n->rx_len = st->rx_len;
			n->rx_c0_cap = st->rx_c0_cap;
			n->rx_placed = rx_placed_of(st);
			n->rx_nheads = st->rx_nheads;
			memcpy(n->rx_heads, st->rx_heads, st->rx_nheads * sizeof(n->rx_heads[0]));
			memcpy(n->rx_lens, st->rx_lens, st->rx_nheads * sizeof(n->rx_lens[0]));
			memcpy(n->rx_hdr, st->rx_hdr, NET_HDR_LEN);
			if (n->rx_placed < n->rx_len)
				memcpy(n->rx_bounce + (n->rx_placed - n->rx_c0_cap), st->rx_rest,
				       n->rx_len - n->rx_placed);
		}
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}
