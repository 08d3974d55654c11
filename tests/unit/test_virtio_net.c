/* SPDX-License-Identifier: MIT */
/*
 * virtio-net tests: the device on the in-memory back end (net_mem), the
 * fake transport of virtio_fake.h, two in-test "drivers" (receive and
 * transmit queue) and a real event loop that the tests pump by hand (one
 * epoll_wait with timeout 0, then the handlers, as loop_run does), so the
 * arming of the back end's fd is observable.
 *
 * The tap back end is tested at the end on a real tap interface; when
 * /dev/net/tun is missing or attaching is not permitted those tests print
 * "skipped" and count as passed.
 */
#include "../../src/devices/virtio/virtio_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../../src/config.h"
#include "../../src/event/loop.h"
#include "loop_runner.h"
#include "test.h"
#include "snap_test.h"
#include "virtio_fake.h"

#define MIB (1ull << 20)
#define MEM_SIZE (8 * MIB)
#define RX_DESC 0x10000ull
#define RX_AVAIL 0x12000ull
#define RX_USED 0x14000ull
#define TX_DESC 0x20000ull
#define TX_AVAIL 0x22000ull
#define TX_USED 0x24000ull
#define CTRL_DESC 0x30000ull
#define CTRL_AVAIL 0x32000ull
#define CTRL_USED 0x34000ull
#define BUF_GPA 0x100000ull /* bump-allocated buffers up to BUF_END */
#define BUF_END (7 * MIB)
#define QSIZE 256

#define F(bit) (1ull << (bit))
#define HDR NET_HDR_LEN

struct tnet {
	struct guest_mem mem;
	struct loop loop;
	struct net_mem m;
	struct virtio_net n;
	struct vf_drv rx, tx, ctrl;
	uint64_t bump;
};

static struct virtio_dev *dev(struct tnet *t)
{
	return &t->n.vdev;
}

/* Memory, loop, back end (offloads @rx_off/@tx_off) and device; nothing
 * negotiated yet. */
static void init_dev(struct tnet *t, unsigned rx_off, unsigned tx_off)
{
	memset(t, 0, sizeof(*t));
	if (guest_mem_init(&t->mem, MEM_SIZE, MEM_SIZE, MEM_SIZE) || loop_init(&t->loop) ||
	    net_mem_init(&t->m, rx_off, tx_off))
		abort();
	char err[160];
	static const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
	if (virtio_net_init(&t->n, &t->m.be, false, mac, &t->mem, &t->loop, err, sizeof(err))) {
		printf("init: %s\n", err);
		abort();
	}
	t->bump = BUF_GPA;
	vf_queue_signals = vf_config_signals = 0;
	vf_drv_init(&t->rx, &t->mem, dev(t), QSIZE, RX_DESC, RX_AVAIL, RX_USED);
	vf_drv_init(&t->tx, &t->mem, dev(t), QSIZE, TX_DESC, TX_AVAIL, TX_USED);
	vf_drv_init(&t->ctrl, &t->mem, dev(t), QSIZE, CTRL_DESC, CTRL_AVAIL, CTRL_USED);
}

/* The driver: negotiate exactly @features (+VERSION_1), both data queues
 * up and, with CTRL_VQ, the control queue (as Linux does), DRIVER_OK. */
static void drv_up_nq(struct tnet *t, uint64_t features, uint16_t nq)
{
	struct virtio_dev *d = dev(t);
	pthread_mutex_lock(&d->lock);
	d->tops = &vf_tops;
	vf_negotiate(d, features | F(VIRTIO_F_VERSION_1));
	struct vf_drv *v[3] = {&t->rx, &t->tx, &t->ctrl};
	for (uint16_t i = 0; i < nq; i++) {
		d->queue_sel = i;
		struct virtq *q = virtio_dev_selected_queue(d);
		q->size = v[i]->qsize;
		q->desc_gpa = v[i]->desc;
		q->avail_gpa = v[i]->avail;
		q->used_gpa = v[i]->used;
		q->ready = true;
		v[i]->avail_idx = 0;
		v[i]->next_desc = 0;
	}
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&d->lock);
}

static void drv_up(struct tnet *t, uint64_t features)
{
	drv_up_nq(t, features, features & F(VIRTIO_NET_F_CTRL_VQ) ? 3 : 2);
}

/* Everything offered except EVENT_IDX (so every push interrupts). */
static uint64_t all_features(struct tnet *t)
{
	return dev(t)->device_features & ~F(VIRTIO_F_EVENT_IDX);
}

static int pump(struct tnet *t);

/* Device up with @features (0: all_features), the loop settled (the
 * offloads applied). */
static void setup(struct tnet *t, uint64_t features)
{
	init_dev(t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	drv_up(t, features ? features : all_features(t));
	while (pump(t))
		;
}

static void teardown(struct tnet *t)
{
	virtio_net_destroy(&t->n);
	net_close(&t->m.be);
	loop_destroy(&t->loop);
	guest_mem_destroy(&t->mem);
}

static void dev_reset(struct tnet *t)
{
	pthread_mutex_lock(&dev(t)->lock);
	virtio_dev_set_status(dev(t), 0);
	pthread_mutex_unlock(&dev(t)->lock);
}

static void notify(struct tnet *t, uint16_t q)
{
	pthread_mutex_lock(&dev(t)->lock);
	virtio_dev_queue_notify(dev(t), q);
	pthread_mutex_unlock(&dev(t)->lock);
}

/* One round of the event loop without blocking; returns the handlers run. */
static int pump(struct tnet *t)
{
	struct epoll_event evs[16];
	int n = epoll_wait(t->loop.epfd, evs, 16, 0);
	for (int i = 0; i < n; i++) {
		struct loop_handler *h = evs[i].data.ptr;
		if (h->fd >= 0)
			h->cb(&t->loop, h->fd, evs[i].events, h->ctx);
	}
	return n < 0 ? 0 : n;
}

static uint64_t alloc_buf(struct tnet *t, uint32_t len)
{
	uint64_t g = t->bump;
	t->bump += (len + 63) & ~63u;
	if (t->bump > BUF_END)
		abort();
	return g;
}

static uint8_t *hva(struct tnet *t, uint64_t gpa, uint64_t len)
{
	return vf_hva(&t->mem, gpa, len ? len : 1);
}

/* A frame: header (flags, gso_type, gso_size) + @len payload bytes of a
 * pattern seeded by @seed.  Returns the total length. */
static size_t mk_frame(uint8_t *buf, uint8_t flags, uint8_t gso, uint32_t len, uint8_t seed)
{
	memset(buf, 0, HDR);
	buf[0] = flags;
	buf[1] = gso;
	if (gso) {
		buf[2] = 54;  /* hdr_len */
		buf[4] = 0xa8; /* gso_size 1448 */
		buf[5] = 0x05;
	}
	if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		buf[6] = 34; /* csum_start */
		buf[8] = 16; /* csum_offset */
	}
	for (uint32_t i = 0; i < len; i++)
		buf[HDR + i] = (uint8_t)(seed + i * 7 + (i >> 8));
	return HDR + len;
}

/* Post one receive buffer of @len bytes; returns its guest address. */
static uint64_t post_rx(struct tnet *t, uint32_t len)
{
	uint64_t g = alloc_buf(t, len);
	memset(hva(t, g, len), 0xcc, len);
	struct vf_seg s[] = {{g, len, true}};
	vf_chain(&t->rx, s, 1);
	return g;
}

/* Queue a frame for transmission in one descriptor; returns the head. */
static uint16_t post_tx1(struct tnet *t, const uint8_t *frame, uint32_t len)
{
	uint64_t g = alloc_buf(t, len);
	memcpy(hva(t, g, len), frame, len);
	struct vf_seg s[] = {{g, len, false}};
	return vf_chain(&t->tx, s, 1);
}

/* Queue a frame for transmission as the header alone, then the frame in
 * two pieces (as Linux may do); returns the head. */
static uint16_t post_tx(struct tnet *t, const uint8_t *frame, uint32_t len)
{
	uint64_t g = alloc_buf(t, len);
	memcpy(hva(t, g, len), frame, len);
	uint32_t a = len > HDR ? (len - HDR) / 2 : 0;
	struct vf_seg s[3];
	int n = 0;
	s[n++] = (struct vf_seg){g, len < HDR ? len : HDR, false};
	if (a)
		s[n++] = (struct vf_seg){g + HDR, a, false};
	if (len > HDR + a)
		s[n++] = (struct vf_seg){g + HDR + a, len - HDR - a, false};
	return vf_chain(&t->tx, s, n);
}

/* How many of @len guest bytes at @gpa are not 0xcc. */
static uint64_t count_not_cc(struct tnet *t, uint64_t gpa, uint64_t len)
{
	const uint8_t *p = hva(t, gpa, len);
	uint64_t n = 0;
	for (uint64_t i = 0; i < len; i++)
		n += p[i] != 0xcc;
	return n;
}

static uint8_t frame_buf[4 * (NET_HDR_LEN + NET_MAX_FRAME)];
static uint8_t got_buf[NET_HDR_LEN + NET_MAX_FRAME + 64];

/* ---- identity, features, config ---- */

TEST(identity_and_features)
{
	struct tnet t;
	init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	struct virtio_dev *d = dev(&t);
	CHECK_EQ(d->device_id, VIRTIO_ID_NET);
	CHECK_EQ(d->num_queues, 3); /* receive, transmit, control */
	CHECK_EQ(d->queue_max, 256);
	uint64_t ctrl = F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_GUEST_ANNOUNCE);
	uint64_t want = F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_MAC) |
			F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6) |
			F(VIRTIO_NET_F_GUEST_ECN) | F(VIRTIO_NET_F_HOST_TSO4) |
			F(VIRTIO_NET_F_HOST_TSO6) | F(VIRTIO_NET_F_HOST_ECN) |
			F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_NET_F_STATUS) | ctrl;
	uint64_t core = F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_INDIRECT_DESC) | F(VIRTIO_F_EVENT_IDX);
	CHECK_EQ(d->device_features, want | core);
	/* the offloads start off */
	CHECK_EQ(t.m.offloads, 0);
	teardown(&t);

	/* a back end that can only hand out partial checksums */
	init_dev(&t, NET_OFFLOAD_CSUM, NET_OFFLOAD_ALL);
	CHECK(dev(&t)->device_features & F(VIRTIO_NET_F_GUEST_CSUM));
	CHECK(!(dev(&t)->device_features & (F(VIRTIO_NET_F_GUEST_TSO4) |
					     F(VIRTIO_NET_F_GUEST_TSO6) |
					     F(VIRTIO_NET_F_GUEST_ECN))));
	teardown(&t);

	/* no offloads at all: MAC, STATUS, MRG_RXBUF and the control queue only */
	init_dev(&t, 0, 0);
	CHECK_EQ(dev(&t)->device_features, F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS) |
						   F(VIRTIO_NET_F_MRG_RXBUF) | ctrl | core);
	teardown(&t);
}

TEST(offloads_follow_the_guest_features)
{
	static const struct {
		uint64_t features;
		unsigned offloads;
	} cases[] = {
		{0, 0},
		{F(VIRTIO_NET_F_GUEST_CSUM), NET_OFFLOAD_CSUM},
		{F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO4),
		 NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4},
		{F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO6),
		 NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO6},
		{F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO4) |
			 F(VIRTIO_NET_F_GUEST_TSO6) | F(VIRTIO_NET_F_GUEST_ECN),
		 NET_OFFLOAD_ALL},
		/* prerequisites missing: less is handed out */
		{F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_ECN), 0},
		{F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_ECN), NET_OFFLOAD_CSUM},
		/* host-side (transmit) features do not change what we receive */
		{F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6), 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tnet t;
		init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
		struct virtio_dev *d = dev(&t);
		/* FEATURES_OK alone changes nothing yet */
		pthread_mutex_lock(&d->lock);
		d->tops = &vf_tops;
		vf_negotiate(d, cases[i].features | F(VIRTIO_F_VERSION_1));
		pthread_mutex_unlock(&d->lock);
		CHECK_EQ(t.m.offloads, 0);
		dev_reset(&t);
		drv_up(&t, cases[i].features);
		CHECK(!d->broken);
		CHECK_EQ(t.n.offload_want, cases[i].offloads);
		/* the ioctl is made on the loop thread, not in the status
		 * write */
		CHECK_EQ(t.m.offload_calls, 0);
		pump(&t);
		CHECK_EQ(t.m.offloads, cases[i].offloads);
		CHECK_EQ(t.n.offloads, cases[i].offloads);
		CHECK_EQ(t.m.offload_calls, cases[i].offloads ? 1 : 0);
		/* reset hands out nothing again */
		dev_reset(&t);
		CHECK_EQ(t.n.offload_want, 0);
		pump(&t);
		CHECK_EQ(t.m.offloads, 0);
		CHECK_EQ(t.n.offloads, 0);
		CHECK_EQ(t.m.offload_calls, cases[i].offloads ? 2 : 0);
		teardown(&t);
	}
}

TEST(config_mac_status_every_width)
{
	struct tnet t;
	setup(&t, 0);
	struct virtio_dev *d = dev(&t);
	uint8_t want[64] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55, VIRTIO_NET_S_LINK_UP, 0};
	static const uint32_t widths[] = {1, 2, 4, 8};
	for (uint32_t off = 0; off < 40; off++) {
		for (int w = 0; w < 4; w++) {
			uint8_t b[8];
			memset(b, 0xa5, sizeof(b));
			pthread_mutex_lock(&d->lock);
			d->ops->config_read(d, off, b, widths[w]);
			pthread_mutex_unlock(&d->lock);
			CHECK(memcmp(b, want + off, widths[w]) == 0);
		}
	}
	/* far past the end, and the offset + width overflow */
	uint8_t b[8];
	memset(b, 0xa5, sizeof(b));
	d->ops->config_read(d, 0xfffffffc, b, 8);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(b[i], 0);
	/* writes are ignored */
	static const uint8_t ones[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	for (uint32_t off = 0; off < 16; off++)
		d->ops->config_write(d, off, ones, 8);
	d->ops->config_read(d, 0, b, 8);
	CHECK(memcmp(b, want, 8) == 0);
	teardown(&t);
}

/* ---- MTU ---- */

/* Read @len config bytes at @off. */
static void cfg_read(struct tnet *t, uint32_t off, void *buf, uint32_t len)
{
	pthread_mutex_lock(&dev(t)->lock);
	dev(t)->ops->config_read(dev(t), off, buf, len);
	pthread_mutex_unlock(&dev(t)->lock);
}

TEST(mtu_offered_with_its_config_field)
{
	struct tnet t;
	init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	struct virtio_dev *d = dev(&t);
	/* without an MTU: no feature, 8 bytes of config */
	CHECK(!(d->device_features & F(VIRTIO_NET_F_MTU)));
	uint8_t b[8];
	cfg_read(&t, 8, b, 4);
	CHECK_EQ(b[0] | b[1] | b[2] | b[3], 0);
	uint64_t before = d->device_features;

	/* out of range: refused, nothing changes */
	CHECK_EQ(virtio_net_set_mtu(&t.n, 67), -EINVAL);
	CHECK_EQ(virtio_net_set_mtu(&t.n, 1), -EINVAL);
	CHECK_EQ(d->device_features, before);
	CHECK_EQ(t.n.mtu, 0);

	/* 1500: offered, max_virtqueue_pairs 1 at 8, mtu at 10 (le16) */
	CHECK_EQ(virtio_net_set_mtu(&t.n, 1500), 0);
	CHECK_EQ(d->device_features, before | F(VIRTIO_NET_F_MTU));
	uint8_t want[64] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55, VIRTIO_NET_S_LINK_UP, 0,
			    1,    0,    0xdc, 0x05};
	static const uint32_t widths[] = {1, 2, 4, 8};
	for (uint32_t off = 0; off < 40; off++) {
		for (int w = 0; w < 4; w++) {
			memset(b, 0xa5, sizeof(b));
			cfg_read(&t, off, b, widths[w]);
			CHECK(memcmp(b, want + off, widths[w]) == 0);
		}
	}
	/* the range ends */
	CHECK_EQ(virtio_net_set_mtu(&t.n, VIRTIO_NET_MTU_MIN), 0);
	cfg_read(&t, VIRTIO_NET_CFG_MTU, b, 2);
	CHECK_EQ(b[0] | b[1] << 8, 68);
	CHECK_EQ(virtio_net_set_mtu(&t.n, VIRTIO_NET_MTU_MAX), 0);
	cfg_read(&t, VIRTIO_NET_CFG_MTU, b, 2);
	CHECK_EQ(b[0] | b[1] << 8, 65535);
	/* 0: not offered any more, the config is 8 bytes again */
	CHECK_EQ(virtio_net_set_mtu(&t.n, 0), 0);
	CHECK_EQ(d->device_features, before);
	cfg_read(&t, 8, b, 4);
	CHECK_EQ(b[0] | b[1] | b[2] | b[3], 0);

	/* the driver negotiates it like any feature; once a driver is at
	 * work the MTU cannot change (the offer must not move under it) */
	CHECK_EQ(virtio_net_set_mtu(&t.n, 9000), 0);
	drv_up(&t, all_features(&t));
	CHECK(!d->broken);
	CHECK(d->driver_features & F(VIRTIO_NET_F_MTU));
	CHECK_EQ(virtio_net_set_mtu(&t.n, 1500), -EBUSY);
	CHECK_EQ(virtio_net_set_mtu(&t.n, 0), -EBUSY);
	cfg_read(&t, VIRTIO_NET_CFG_MTU, b, 2);
	CHECK_EQ(b[0] | b[1] << 8, 9000);
	/* after a reset (status 0) it may change again */
	dev_reset(&t);
	CHECK_EQ(virtio_net_set_mtu(&t.n, 1500), 0);
	cfg_read(&t, VIRTIO_NET_CFG_MTU, b, 2);
	CHECK_EQ(b[0] | b[1] << 8, 1500);
	teardown(&t);
}

TEST(mtu_limits_received_frames_once_negotiated)
{
	struct tnet t;
	init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	CHECK_EQ(virtio_net_set_mtu(&t.n, 1500), 0);
	drv_up(&t, all_features(&t));
	while (pump(&t))
		;
	for (int i = 0; i < 8; i++)
		post_rx(&t, 4096);
	size_t ok = mk_frame(frame_buf, 0, 0, 1514, 1);         /* mtu + 14 */
	size_t big = mk_frame(frame_buf + 8192, 0, 0, 1515, 2); /* one more */
	size_t vlan = mk_frame(frame_buf + 16384, 0, 0, 1518, 3);
	frame_buf[16384 + HDR + 12] = 0x81; /* 802.1Q tag: 18-byte header */
	frame_buf[16384 + HDR + 13] = 0x00;
	size_t vbig = mk_frame(frame_buf + 24576, 0, 0, 1519, 4);
	frame_buf[24576 + HDR + 12] = 0x81;
	frame_buf[24576 + HDR + 13] = 0x00;
	/* GSO frames are not limited by the MTU */
	size_t gso = mk_frame(frame_buf + 32768, VIRTIO_NET_HDR_F_NEEDS_CSUM,
			      VIRTIO_NET_HDR_GSO_TCPV4, 3000, 5);
	net_mem_inject(&t.m, frame_buf, ok);
	net_mem_inject(&t.m, frame_buf + 8192, big);
	net_mem_inject(&t.m, frame_buf + 16384, vlan);
	net_mem_inject(&t.m, frame_buf + 24576, vbig);
	net_mem_inject(&t.m, frame_buf + 32768, gso);
	pump(&t);
	CHECK_EQ(t.n.metrics.rx_fails, 2);
	CHECK_EQ(t.n.metrics.rx_packets_count, 3);
	CHECK_EQ(vf_used_idx(&t.rx), 3);
	CHECK_EQ(vf_used_len(&t.rx, 0), ok);
	CHECK_EQ(vf_used_len(&t.rx, 1), vlan);
	CHECK_EQ(vf_used_len(&t.rx, 2), gso);
	teardown(&t);

	/* offered, but the driver did not take it: no limit */
	init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	CHECK_EQ(virtio_net_set_mtu(&t.n, 1500), 0);
	drv_up(&t, all_features(&t) & ~F(VIRTIO_NET_F_MTU));
	while (pump(&t))
		;
	post_rx(&t, 4096);
	big = mk_frame(frame_buf, 0, 0, 1515, 2);
	net_mem_inject(&t.m, frame_buf, big);
	pump(&t);
	CHECK_EQ(t.n.metrics.rx_fails, 0);
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	CHECK_EQ(vf_used_len(&t.rx, 0), big);
	teardown(&t);
}

/* MAC strings are parsed by the one config parser (config_parse_mac);
 * the device formats and derives them. */
TEST(mac_helpers)
{
	uint8_t mac[6];
	CHECK_EQ(config_parse_mac("52:54:00:Ab:cD:ef", mac), 0);
	CHECK_EQ(mac[0], 0x52);
	CHECK_EQ(mac[3], 0xab);
	CHECK_EQ(mac[5], 0xef);
	char buf[18];
	net_format_mac(mac, buf);
	CHECK_STR(buf, "52:54:00:ab:cd:ef");
	static const char *bad[] = {
		"",
		"52:54:00:ab:cd",
		"52:54:00:ab:cd:ef:",
		"52-54-00-ab-cd-ef",
		"52:54:00:ab:cd:eg",
		"5:254:00:ab:cd:ef",
		" 2:54:00:ab:cd:ef",
		"01:00:5e:00:00:01", /* multicast */
		"ff:ff:ff:ff:ff:ff", /* broadcast */
		"00:00:00:00:00:00",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(mac, 0x77, sizeof(mac));
		CHECK_EQ(config_parse_mac(bad[i], mac), -EINVAL);
		CHECK_EQ(mac[0], 0x77); /* untouched */
	}
	CHECK_EQ(config_parse_mac(NULL, mac), -EINVAL);

	/* default: stable, locally administered unicast, differs by name
	 * and index */
	uint8_t a[6], a2[6], b[6], c[6];
	net_default_mac("tap0", 0, a);
	net_default_mac("tap0", 0, a2);
	net_default_mac("tap1", 0, b);
	net_default_mac("tap0", 1, c);
	CHECK(memcmp(a, a2, 6) == 0);
	CHECK(memcmp(a, b, 6) != 0);
	CHECK(memcmp(a, c, 6) != 0);
	CHECK_EQ(a[0] & 3, 2);
	CHECK_EQ(b[0] & 3, 2);
	CHECK_EQ(c[0] & 3, 2);
	net_format_mac(a, buf);
	uint8_t back[6];
	CHECK_EQ(config_parse_mac(buf, back), 0);
	CHECK(memcmp(a, back, 6) == 0);

	/* the device refuses an unusable MAC, and derives one without */
	struct guest_mem mem;
	struct net_mem m;
	struct virtio_net *n = calloc(1, sizeof(*n));
	CHECK_EQ(guest_mem_init(&mem, MIB, MIB, MIB), 0);
	CHECK_EQ(net_mem_init(&m, 0, 0), 0);
	char err[128] = "";
	static const uint8_t mcast[6] = {0x01, 0, 0x5e, 0, 0, 1};
	CHECK_EQ(virtio_net_init(n, &m.be, false, mcast, &mem, NULL, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "unicast") != NULL);
	CHECK_EQ(virtio_net_init(n, &m.be, false, NULL, &mem, NULL, err, sizeof(err)), 0);
	net_default_mac("net-mem", 0, a);
	CHECK(memcmp(n->mac, a, 6) == 0);
	CHECK(memcmp(n->config, a, 6) == 0);
	virtio_net_destroy(n);
	virtio_net_destroy(n); /* idempotent */
	net_close(&m.be);
	guest_mem_destroy(&mem);
	free(n);
}

/* ---- transmit ---- */

TEST(tx_passes_exact_bytes)
{
	struct tnet t;
	setup(&t, 0);
	size_t len = mk_frame(frame_buf, 0, 0, 100, 1);
	uint16_t h = post_tx(&t, frame_buf, (uint32_t)len);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(vf_used_idx(&t.tx), 1);
	CHECK_EQ(vf_used_id(&t.tx, 0), h);
	CHECK_EQ(vf_used_len(&t.tx, 0), 0);
	CHECK_EQ(vf_queue_signals, 1);
	CHECK_EQ(net_mem_take_sent(&t.m, got_buf, sizeof(got_buf)), (ssize_t)len);
	CHECK(memcmp(got_buf, frame_buf, len) == 0);

	/* checksum offload + TSO4 + ECN: the header goes through as is
	 * (num_buffers zeroed) */
	len = mk_frame(frame_buf, VIRTIO_NET_HDR_F_NEEDS_CSUM,
		       VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, 60000, 2);
	frame_buf[10] = 0x34; /* junk in num_buffers */
	post_tx(&t, frame_buf, (uint32_t)len);
	/* and a maximum-size one */
	size_t len2 = mk_frame(frame_buf + len + 16, VIRTIO_NET_HDR_F_NEEDS_CSUM,
			       VIRTIO_NET_HDR_GSO_TCPV6, NET_MAX_FRAME, 3);
	post_tx(&t, frame_buf + len + 16, (uint32_t)len2);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(vf_used_idx(&t.tx), 3);
	CHECK_EQ(net_mem_take_sent(&t.m, got_buf, sizeof(got_buf)), (ssize_t)len);
	frame_buf[10] = 0;
	CHECK(memcmp(got_buf, frame_buf, len) == 0);
	CHECK_EQ(net_mem_take_sent(&t.m, got_buf, sizeof(got_buf)), (ssize_t)len2);
	CHECK(memcmp(got_buf, frame_buf + len + 16, len2) == 0);
	CHECK_EQ(t.n.metrics.tx_packets_count, 3);
	CHECK_EQ(t.n.metrics.tx_malformed_frames, 0);
	CHECK_EQ(t.n.metrics.tx_fails, 0);
	CHECK_EQ(t.n.metrics.tx_bytes_count, 100 + 60000 + NET_MAX_FRAME);
	teardown(&t);
}

TEST(tx_bad_frames_are_dropped)
{
	struct tnet t;
	/* no HOST_TSO6, no HOST_ECN */
	setup(&t, F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_MRG_RXBUF));
	unsigned drops = 0;

	/* a writable descriptor in a transmit chain */
	size_t len = mk_frame(frame_buf, 0, 0, 100, 1);
	uint64_t g = alloc_buf(&t, (uint32_t)len + 64);
	memcpy(hva(&t, g, len), frame_buf, len);
	memset(hva(&t, g + len, 64), 0xcc, 64);
	struct vf_seg s1[] = {{g, (uint32_t)len, false}, {g + len, 64, true}};
	vf_chain(&t.tx, s1, 2);
	drops++;
	/* too long by one byte, too short by one byte */
	len = mk_frame(frame_buf, 0, 0, NET_MAX_FRAME + 1, 1);
	post_tx(&t, frame_buf, (uint32_t)len);
	drops++;
	len = mk_frame(frame_buf, 0, 0, NET_MIN_FRAME - 1, 1);
	post_tx(&t, frame_buf, (uint32_t)len);
	drops++;
	/* offloads the driver did not negotiate or may not use */
	static const uint8_t hdrs[][2] = {
		{0, VIRTIO_NET_HDR_GSO_TCPV6},
		{0, VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN},
		{0, VIRTIO_NET_HDR_GSO_UDP},
		{0, VIRTIO_NET_HDR_GSO_UDP_L4},
		{0, 0x42},
		{0, VIRTIO_NET_HDR_GSO_ECN},
		{VIRTIO_NET_HDR_F_DATA_VALID, 0},
		{VIRTIO_NET_HDR_F_RSC_INFO, 0},
		{0x80, 0},
	};
	for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
		len = mk_frame(frame_buf, hdrs[i][0], hdrs[i][1], 200, 1);
		post_tx(&t, frame_buf, (uint32_t)len);
		drops++;
	}
	/* followed by good ones: minimum size, and TSO4 with checksum */
	len = mk_frame(frame_buf, 0, 0, NET_MIN_FRAME, 5);
	post_tx(&t, frame_buf, (uint32_t)len);
	size_t len2 = mk_frame(frame_buf + 256, VIRTIO_NET_HDR_F_NEEDS_CSUM,
			       VIRTIO_NET_HDR_GSO_TCPV4, 3000, 6);
	post_tx(&t, frame_buf + 256, (uint32_t)len2);
	notify(&t, VIRTIO_NET_TXQ);

	CHECK(!dev(&t)->broken);
	CHECK_EQ(vf_used_idx(&t.tx), drops + 2);
	for (uint16_t i = 0; i < drops + 2; i++)
		CHECK_EQ(vf_used_len(&t.tx, i), 0);
	CHECK_EQ(t.n.metrics.tx_malformed_frames, drops);
	CHECK_EQ(t.n.metrics.tx_fails, 0);
	CHECK_EQ(t.n.metrics.tx_packets_count, 2);
	CHECK_EQ(t.m.tx_count, 2);
	CHECK_EQ(count_not_cc(&t, g + 100 + HDR, 64), 0);
	CHECK_EQ(net_mem_take_sent(&t.m, got_buf, sizeof(got_buf)), (ssize_t)len);
	CHECK(memcmp(got_buf, frame_buf, len) == 0);
	CHECK_EQ(net_mem_take_sent(&t.m, got_buf, sizeof(got_buf)), (ssize_t)len2);
	CHECK(memcmp(got_buf, frame_buf + 256, len2) == 0);

	/* NEEDS_CSUM without VIRTIO_NET_F_CSUM */
	teardown(&t);
	setup(&t, F(VIRTIO_NET_F_MRG_RXBUF));
	len = mk_frame(frame_buf, VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 100, 1);
	post_tx(&t, frame_buf, (uint32_t)len);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(vf_used_idx(&t.tx), 1);
	CHECK_EQ(t.n.metrics.tx_malformed_frames, 1);
	CHECK_EQ(t.m.tx_count, 0);

	/* a back-end error drops the frame, the device goes on */
	t.m.send_errno = EIO;
	len = mk_frame(frame_buf, 0, 0, 100, 1);
	post_tx(&t, frame_buf, (uint32_t)len);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(vf_used_idx(&t.tx), 2);
	CHECK_EQ(t.n.metrics.tx_malformed_frames, 1);
	CHECK_EQ(t.n.metrics.tx_fails, 1);
	t.m.send_errno = 0;
	post_tx(&t, frame_buf, (uint32_t)len);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(vf_used_idx(&t.tx), 3);
	CHECK_EQ(t.m.tx_count, 1);
	CHECK(!dev(&t)->broken);
	teardown(&t);
}

TEST(tx_ring_violation_breaks_device)
{
	struct tnet t;
	setup(&t, 0);
	struct vf_seg s[] = {{BUF_GPA, 0, false}}; /* zero-length descriptor */
	vf_chain(&t.tx, s, 1);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK(dev(&t)->broken);
	CHECK_EQ(vf_used_idx(&t.tx), 0);
	CHECK_EQ(vf_config_signals, 1);
	CHECK_EQ(t.m.send_calls, 0);
	teardown(&t);
}

TEST(tx_budget_yields_to_the_loop)
{
	struct tnet t;
	setup(&t, 0);
	const int n = 3 * VIRTIO_NET_TX_BUDGET + 5;
	size_t len = mk_frame(frame_buf, 0, 0, 60, 9);
	for (int i = 0; i < n; i++) {
		frame_buf[HDR] = (uint8_t)i;
		post_tx1(&t, frame_buf, (uint32_t)len);
	}
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(vf_used_idx(&t.tx), VIRTIO_NET_TX_BUDGET);
	CHECK_EQ(t.m.tx_count, VIRTIO_NET_TX_BUDGET);
	int rounds = 0;
	while (pump(&t) && rounds < 100)
		rounds++;
	CHECK_EQ(rounds, 3); /* three more passes, then nothing is pending */
	CHECK_EQ(vf_used_idx(&t.tx), n);
	for (int i = 0; i < n; i++) {
		CHECK_EQ(net_mem_take_sent(&t.m, got_buf, sizeof(got_buf)), (ssize_t)len);
		CHECK_EQ(got_buf[HDR], (uint8_t)i); /* in order */
	}
	/* a resume after a reset touches nothing */
	for (int i = 0; i < 2 * VIRTIO_NET_TX_BUDGET; i++)
		post_tx1(&t, frame_buf, (uint32_t)len);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(vf_used_idx(&t.tx), n + VIRTIO_NET_TX_BUDGET);
	dev_reset(&t);
	uint16_t used = vf_used_idx(&t.tx);
	while (pump(&t))
		;
	CHECK_EQ(vf_used_idx(&t.tx), used);
	CHECK_EQ(t.m.tx_count, VIRTIO_NET_TX_BUDGET);
	teardown(&t);
}

/* ---- receive ---- */

TEST(rx_single_buffer)
{
	struct tnet t;
	/* no MRG_RXBUF, no GUEST_CSUM */
	setup(&t, F(VIRTIO_NET_F_MAC));
	CHECK(t.n.rx_armed); /* DRIVER_OK: the loop looks for buffers */
	uint64_t b = post_rx(&t, 1526);
	uint16_t head = t.rx.next_desc - 1;
	/* DATA_VALID from the host, but the driver has no GUEST_CSUM: flags
	 * must read 0 */
	size_t len = mk_frame(frame_buf, VIRTIO_NET_HDR_F_DATA_VALID, 0, 1514, 4);
	frame_buf[10] = 0x55; /* the host's num_buffers is never trusted */
	CHECK_EQ(net_mem_inject(&t.m, frame_buf, len), 0);
	CHECK_EQ(pump(&t), 1);
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	CHECK_EQ(vf_used_id(&t.rx, 0), head);
	CHECK_EQ(vf_used_len(&t.rx, 0), len);
	CHECK_EQ(vf_queue_signals, 1);
	const uint8_t *p = hva(&t, b, 1526);
	CHECK_EQ(p[0], 0);    /* flags */
	CHECK_EQ(p[10], 1);   /* num_buffers = 1 without MRG_RXBUF */
	CHECK_EQ(p[11], 0);
	CHECK(memcmp(p + 2, frame_buf + 2, 8) == 0);
	CHECK(memcmp(p + HDR, frame_buf + HDR, 1514) == 0);
	CHECK_EQ(t.n.metrics.rx_packets_count, 1);
	CHECK_EQ(t.n.metrics.rx_bytes_count, 1514);
	/* no buffer left: the fd is already paused, the next frame waits in
	 * the back end */
	CHECK(!t.n.rx_armed);
	CHECK_EQ(net_mem_inject(&t.m, frame_buf, 100), 0);
	CHECK_EQ(pump(&t), 0);
	CHECK_EQ(t.m.rx_count, 1);
	teardown(&t);
}

TEST(rx_with_guest_offloads_keeps_the_header)
{
	struct tnet t;
	setup(&t, 0); /* everything, GUEST_CSUM/TSO included */
	uint64_t b = post_rx(&t, 4096);
	size_t len = mk_frame(frame_buf, VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID,
			      VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, 3000, 8);
	net_mem_inject(&t.m, frame_buf, len);
	pump(&t);
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	const uint8_t *p = hva(&t, b, 4096);
	CHECK(memcmp(p, frame_buf, 10) == 0);
	CHECK_EQ(p[10], 1);
	CHECK(memcmp(p + HDR, frame_buf + HDR, 3000) == 0);
	teardown(&t);

	/* the same frame to a driver without GUEST_TSO4 (a stale frame, as
	 * after a renegotiation) is dropped, the buffer kept for the next */
	setup(&t, F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_MRG_RXBUF));
	b = post_rx(&t, 4096);
	net_mem_inject(&t.m, frame_buf, len);
	size_t len2 = mk_frame(frame_buf + 4096, VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 500, 9);
	net_mem_inject(&t.m, frame_buf + 4096, len2);
	pump(&t);
	CHECK_EQ(t.n.metrics.rx_fails, 1);
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	CHECK_EQ(vf_used_len(&t.rx, 0), len2);
	CHECK(memcmp(hva(&t, b + HDR, 500), frame_buf + 4096 + HDR, 500) == 0);
	/* and NEEDS_CSUM to a driver without GUEST_CSUM */
	teardown(&t);
	setup(&t, F(VIRTIO_NET_F_MRG_RXBUF));
	post_rx(&t, 4096);
	net_mem_inject(&t.m, frame_buf + 4096, len2);
	pump(&t);
	CHECK_EQ(t.n.metrics.rx_fails, 1);
	CHECK_EQ(vf_used_idx(&t.rx), 0);
	teardown(&t);
}

TEST(rx_mergeable_across_buffers)
{
	struct tnet t;
	setup(&t, 0);
	uint64_t b[5];
	uint16_t heads[5];
	for (int i = 0; i < 5; i++) {
		heads[i] = t.rx.next_desc;
		b[i] = post_rx(&t, 1000);
	}
	size_t len = mk_frame(frame_buf, 0, 0, 3488, 11); /* 3500 bytes with the header */
	net_mem_inject(&t.m, frame_buf, len);
	pump(&t);
	CHECK(!dev(&t)->broken);
	CHECK_EQ(vf_used_idx(&t.rx), 4);
	static const uint32_t lens[] = {1000, 1000, 1000, 500};
	for (uint16_t i = 0; i < 4; i++) {
		CHECK_EQ(vf_used_id(&t.rx, i), heads[i]);
		CHECK_EQ(vf_used_len(&t.rx, i), lens[i]);
	}
	CHECK_EQ(vf_queue_signals, 1); /* one interrupt for the frame */
	const uint8_t *p0 = hva(&t, b[0], 1000);
	CHECK_EQ(p0[10], 4); /* num_buffers */
	CHECK_EQ(p0[11], 0);
	CHECK(memcmp(p0 + HDR, frame_buf + HDR, 1000 - HDR) == 0);
	for (int i = 1; i < 4; i++)
		CHECK(memcmp(hva(&t, b[i], lens[i]), frame_buf + 1000 * i, lens[i]) == 0);
	CHECK_EQ(count_not_cc(&t, b[3] + 500, 500), 0);
	CHECK_EQ(count_not_cc(&t, b[4], 1000), 0);

	/* a frame that fits the header's buffer exactly, into the 5th */
	len = mk_frame(frame_buf, 0, 0, 1000 - HDR, 12);
	net_mem_inject(&t.m, frame_buf, len);
	pump(&t);
	CHECK_EQ(vf_used_idx(&t.rx), 5);
	CHECK_EQ(vf_used_len(&t.rx, 4), 1000);
	CHECK_EQ(hva(&t, b[4], 1)[10], 1);

	/* a 64 KiB GSO frame over 1 KiB buffers: partial until enough come */
	len = mk_frame(frame_buf, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV6,
		       NET_MAX_FRAME, 13);
	net_mem_inject(&t.m, frame_buf, len);
	uint64_t first = post_rx(&t, 1000);
	for (int i = 0; i < 9; i++)
		post_rx(&t, 1000);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK_EQ(vf_used_idx(&t.rx), 5); /* nothing published for it yet */
	CHECK(t.n.rx_pending);
	CHECK(!t.n.rx_armed);
	int need = (int)((len + 999) / 1000);
	for (int i = 10; i < need; i++)
		post_rx(&t, 1000);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK(!t.n.rx_pending);
	CHECK_EQ(vf_used_idx(&t.rx), 5 + need);
	CHECK_EQ(hva(&t, first, 1)[10], need);
	CHECK(memcmp(hva(&t, first, 1000), frame_buf, 10) == 0);
	/* reassemble it as the driver would */
	uint32_t total = 0;
	bool same = true;
	for (int i = 0; i < need; i++) {
		uint16_t id = (uint16_t)vf_used_id(&t.rx, (uint16_t)(5 + i));
		uint32_t l = vf_used_len(&t.rx, (uint16_t)(5 + i));
		uint64_t addr;
		memcpy(&addr, hva(&t, RX_DESC + 16ull * id, 8), 8);
		if (i == 0)
			same &= memcmp(hva(&t, addr + HDR, l - HDR), frame_buf + HDR, l - HDR) == 0;
		else
			same &= memcmp(hva(&t, addr, l), frame_buf + total, l) == 0;
		total += l;
	}
	CHECK(same);
	CHECK_EQ(total, len);
	CHECK_EQ(t.n.metrics.rx_packets_count, 3);
	teardown(&t);
}

TEST(rx_too_big_without_mergeable_is_dropped)
{
	struct tnet t;
	setup(&t, F(VIRTIO_NET_F_MAC));
	uint16_t head = t.rx.next_desc;
	uint64_t b = post_rx(&t, 200);
	size_t big = mk_frame(frame_buf, 0, 0, 300, 1);
	net_mem_inject(&t.m, frame_buf, big);
	size_t small = mk_frame(frame_buf + 1024, 0, 0, 150, 2);
	net_mem_inject(&t.m, frame_buf + 1024, small);
	pump(&t);
	CHECK_EQ(t.n.metrics.rx_fails, 1);
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	CHECK_EQ(vf_used_id(&t.rx, 0), head); /* the same buffer, reused */
	CHECK_EQ(vf_used_len(&t.rx, 0), small);
	CHECK(memcmp(hva(&t, b + HDR, 150), frame_buf + 1024 + HDR, 150) == 0);
	/* frames longer than NET_MAX_FRAME never reach the guest */
	teardown(&t);
	setup(&t, 0);
	post_rx(&t, 65536);
	post_rx(&t, 65536);
	big = mk_frame(frame_buf, 0, 0, NET_MAX_FRAME + 1, 1);
	net_mem_inject(&t.m, frame_buf, big);
	net_mem_inject(&t.m, frame_buf, 11); /* shorter than a header */
	pump(&t);
	CHECK_EQ(t.n.metrics.rx_fails, 2);
	CHECK_EQ(vf_used_idx(&t.rx), 0);
	teardown(&t);
}

TEST(rx_disarmed_without_buffers_rearmed_on_notify)
{
	struct tnet t;
	setup(&t, 0);
	size_t len = mk_frame(frame_buf, 0, 0, 200, 3);
	net_mem_inject(&t.m, frame_buf, len);
	/* the fd fires once, finds no buffer, and is paused */
	CHECK_EQ(pump(&t), 1);
	CHECK(!t.n.rx_armed);
	CHECK_EQ(t.m.recv_calls, 0);
	CHECK_EQ(pump(&t), 0);
	CHECK_EQ(pump(&t), 0);
	/* the driver adds a buffer and notifies: delivered at once */
	uint64_t b = post_rx(&t, 2048);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	CHECK_EQ(vf_used_len(&t.rx, 0), len);
	CHECK(memcmp(hva(&t, b + HDR, 200), frame_buf + HDR, 200) == 0);
	/* a buffer left, nothing to read: armed and waiting */
	post_rx(&t, 2048);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK(t.n.rx_armed);
	CHECK_EQ(pump(&t), 0);
	net_mem_inject(&t.m, frame_buf, len);
	CHECK_EQ(pump(&t), 1);
	CHECK_EQ(vf_used_idx(&t.rx), 2);
	teardown(&t);
}

TEST(rx_notify_with_event_idx_asks_for_a_kick)
{
	struct tnet t;
	init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	drv_up(&t, all_features(&t) | F(VIRTIO_F_EVENT_IDX));
	post_rx(&t, 2048);
	size_t len = mk_frame(frame_buf, 0, 0, 200, 3);
	net_mem_inject(&t.m, frame_buf, len);
	net_mem_inject(&t.m, frame_buf, len);
	pump(&t);
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	CHECK(!t.n.rx_armed);
	/* avail_event = 1: the driver kicks when it adds buffer #1 */
	CHECK_EQ(vf_get16(&t.mem, RX_USED + 4 + 8ull * QSIZE), 1);
	post_rx(&t, 2048);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK_EQ(vf_used_idx(&t.rx), 2);
	teardown(&t);
}

TEST(rx_flood_without_buffers_is_bounded)
{
	struct tnet t;
	setup(&t, 0);
	const int flood = 10000;
	size_t len = mk_frame(frame_buf, 0, 0, 1500, 5);
	for (int i = 0; i < flood; i++)
		CHECK_EQ(net_mem_inject(&t.m, frame_buf, len), 0);
	/* no buffers at all: nothing is read, the fd goes quiet */
	int handled = 0;
	for (int i = 0; i < 1000; i++)
		handled += pump(&t);
	CHECK_EQ(handled, 1);
	CHECK_EQ(t.m.recv_frames, 0);
	CHECK(!t.n.rx_pending);

	/* one buffer too small for a frame: exactly one frame is held */
	post_rx(&t, 1000);
	notify(&t, VIRTIO_NET_RXQ);
	handled = 0;
	for (int i = 0; i < 1000; i++)
		handled += pump(&t);
	CHECK_EQ(handled, 0);
	CHECK_EQ(t.m.recv_frames, 1);
	CHECK(t.n.rx_pending);
	CHECK(!t.n.rx_armed);
	CHECK_EQ(vf_used_idx(&t.rx), 0);
	/* notifications without buffers do not read more */
	for (int i = 0; i < 100; i++)
		notify(&t, VIRTIO_NET_RXQ);
	CHECK_EQ(t.m.recv_frames, 1);

	/* buffers come: traffic resumes, at most a budget per wake-up */
	for (int i = 0; i < 200; i++)
		post_rx(&t, 2048);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK_EQ(t.n.metrics.rx_packets_count, VIRTIO_NET_RX_BUDGET);
	CHECK(t.n.rx_armed);
	CHECK_EQ(pump(&t), 1);
	CHECK_EQ(t.n.metrics.rx_packets_count, 2 * VIRTIO_NET_RX_BUDGET);
	handled = 0;
	for (int i = 0; i < 100; i++)
		handled += pump(&t);
	/* 201 buffers: the held frame took the small one and one more */
	CHECK_EQ(t.n.metrics.rx_packets_count, 200);
	CHECK(!t.n.rx_armed);
	CHECK_EQ(t.m.rx_count, (unsigned)(flood - 200));
	teardown(&t);
}

TEST(rx_tiny_buffers_cannot_wedge_the_queue)
{
	/* A driver posting only header-sized buffers can never take a big
	 * frame: once the whole ring is held it is dropped and the buffers
	 * returned, so the device does not sit on them forever. */
	struct tnet t;
	init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	t.rx.qsize = 16;
	drv_up(&t, all_features(&t));
	for (int i = 0; i < 16; i++)
		post_rx(&t, HDR);
	size_t len = mk_frame(frame_buf, 0, 0, 1000, 5);
	net_mem_inject(&t.m, frame_buf, len);
	size_t small = mk_frame(frame_buf + 2048, 0, 0, 0 + NET_MIN_FRAME, 6);
	net_mem_inject(&t.m, frame_buf + 2048, small);
	pump(&t);
	CHECK(!dev(&t)->broken);
	CHECK_EQ(t.n.metrics.rx_fails, 1);
	/* 15 returned unused; the first one kept, and already holding the
	 * header of the next frame, which waits for two more */
	CHECK_EQ(vf_used_idx(&t.rx), 15);
	for (uint16_t i = 0; i < 15; i++) {
		CHECK_EQ(vf_used_id(&t.rx, i), i + 1);
		CHECK_EQ(vf_used_len(&t.rx, i), 0);
	}
	CHECK(t.n.rx_pending);
	CHECK_EQ(t.n.rx_nheads, 1);
	CHECK_EQ(t.n.rx_heads[0], 0);
	/* the driver refills descriptors 1..15 (0 is still the device's) */
	for (uint16_t i = 1; i < 16; i++) {
		vf_desc(&t.mem, RX_DESC, i, BUF_GPA + 64ull * i, HDR, VIRTQ_DESC_F_WRITE, 0);
		vf_avail(&t.rx, i);
	}
	notify(&t, VIRTIO_NET_RXQ);
	CHECK(!dev(&t)->broken);
	CHECK_EQ(vf_used_idx(&t.rx), 18);
	CHECK_EQ(vf_used_id(&t.rx, 15), 0);
	CHECK_EQ(vf_used_len(&t.rx, 15), HDR);
	CHECK_EQ(vf_used_len(&t.rx, 16), HDR);
	CHECK_EQ(vf_used_len(&t.rx, 17), NET_MIN_FRAME - HDR);
	CHECK_EQ(hva(&t, BUF_GPA, HDR)[10], 3);
	CHECK(memcmp(hva(&t, BUF_GPA + 64, HDR), frame_buf + 2048 + HDR, HDR) == 0);
	CHECK_EQ(t.n.metrics.rx_packets_count, 1);
	teardown(&t);
}

TEST(rx_bad_buffers_break_the_device)
{
	struct tnet t;
	setup(&t, 0);
	uint64_t g = alloc_buf(&t, 2048);
	struct vf_seg s[] = {{g, 64, false}, {g + 64, 1500, true}};
	vf_chain(&t.rx, s, 2);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK(dev(&t)->broken);
	CHECK(!t.n.rx_armed);
	CHECK_EQ(vf_config_signals, 1);
	CHECK_EQ(vf_used_idx(&t.rx), 0);
	teardown(&t);

	setup(&t, 0);
	post_rx(&t, HDR - 1);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK(dev(&t)->broken);
	/* a broken device never reads the back end, even if it fires */
	net_mem_inject(&t.m, frame_buf, 100);
	virtio_net_backend_ready(&t.n, EPOLLIN);
	CHECK_EQ(t.m.recv_calls, 0);
	CHECK_EQ(pump(&t), 0);
	teardown(&t);
}

TEST(reset_with_a_pending_frame)
{
	struct tnet t;
	setup(&t, 0);
	uint64_t b0 = post_rx(&t, 1000);
	uint64_t b1 = post_rx(&t, 1000);
	size_t len = mk_frame(frame_buf, 0, 0, 5000, 7);
	net_mem_inject(&t.m, frame_buf, len);
	net_mem_inject(&t.m, frame_buf, len);
	pump(&t);
	CHECK(t.n.rx_pending);
	CHECK_EQ(t.n.rx_nheads, 2);
	CHECK_EQ(vf_used_idx(&t.rx), 0);
	CHECK_EQ(t.m.offloads, NET_OFFLOAD_ALL);

	dev_reset(&t);
	CHECK_EQ(dev(&t)->status, 0);
	CHECK(!t.n.rx_pending);
	CHECK(!t.n.rx_have_c0);
	CHECK(!t.n.rx_armed);
	/* after the reset nothing touches guest memory: not the buffers, not
	 * the used ring, whatever the loop or a late notify does */
	memset(hva(&t, b0, 1000), 0xcc, 1000);
	memset(hva(&t, b1, 1000), 0xcc, 1000);
	memset(hva(&t, RX_USED, 4 + 8 * QSIZE), 0xcc, 4 + 8 * QSIZE);
	net_mem_inject(&t.m, frame_buf, len);
	for (int i = 0; i < 10; i++)
		pump(&t);
	virtio_net_backend_ready(&t.n, EPOLLIN);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK_EQ(count_not_cc(&t, b0, 1000), 0);
	CHECK_EQ(count_not_cc(&t, b1, 1000), 0);
	CHECK_EQ(count_not_cc(&t, RX_USED, 4 + 8 * QSIZE), 0);
	CHECK_EQ(t.m.recv_frames, 1);
	CHECK_EQ(t.m.offloads, 0);

	/* the driver comes back: the held frame is gone, the next ones flow */
	memset(hva(&t, RX_USED, 4 + 8 * QSIZE), 0, 4 + 8 * QSIZE);
	t.bump = BUF_GPA;
	drv_up(&t, all_features(&t));
	for (int i = 0; i < 8; i++)
		post_rx(&t, 1000);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK_EQ(t.m.offloads, NET_OFFLOAD_ALL);
	CHECK_EQ(vf_used_idx(&t.rx), 6); /* one 5012-byte frame in 6 buffers */
	CHECK_EQ(t.n.metrics.rx_packets_count, 1);
	/* the last one is held in the remaining two, waiting for more */
	CHECK(t.n.rx_pending);
	CHECK_EQ(t.n.rx_nheads, 2);
	CHECK_EQ(t.m.rx_count, 0);
	teardown(&t);
}

TEST(backend_failure_takes_the_link_down)
{
	struct tnet t;
	setup(&t, 0);
	post_rx(&t, 2048);
	t.m.recv_errno = EBADFD;
	net_mem_inject(&t.m, frame_buf, 100);
	pump(&t);
	CHECK(t.n.be_dead);
	CHECK(!t.n.be_watched);
	CHECK_EQ(vf_config_signals, 1);
	uint8_t st[2];
	dev(&t)->ops->config_read(dev(&t), VIRTIO_NET_CFG_STATUS, st, 2);
	CHECK_EQ(st[0], 0);
	CHECK(!dev(&t)->broken);
	CHECK_EQ(pump(&t), 0); /* the fd is off the loop */
	/* transmit still completes (frames dropped by the back end) */
	t.m.send_errno = EBADFD;
	size_t len = mk_frame(frame_buf, 0, 0, 100, 1);
	post_tx(&t, frame_buf, (uint32_t)len);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(vf_used_idx(&t.tx), 1);
	teardown(&t);

	/* EPOLLERR from the fd (the tap was deleted) */
	setup(&t, 0);
	virtio_net_backend_ready(&t.n, EPOLLERR);
	CHECK(t.n.be_dead);
	CHECK_EQ(vf_config_signals, 1);
	dev(&t)->ops->config_read(dev(&t), VIRTIO_NET_CFG_STATUS, st, 2);
	CHECK_EQ(st[0], 0);
	virtio_net_backend_ready(&t.n, EPOLLERR); /* once */
	CHECK_EQ(vf_config_signals, 1);
	teardown(&t);

	/* a transmit that finds the interface gone (EBADFD: the tap was
	 * deleted while the fd was not watched, e.g. no receive buffers):
	 * the same, at once; the chain still completes */
	setup(&t, 0);
	t.m.send_errno = EBADFD;
	len = mk_frame(frame_buf, 0, 0, 100, 1);
	post_tx(&t, frame_buf, (uint32_t)len);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(vf_used_idx(&t.tx), 1);
	CHECK(t.n.be_dead);
	CHECK_EQ(vf_config_signals, 1);
	dev(&t)->ops->config_read(dev(&t), VIRTIO_NET_CFG_STATUS, st, 2);
	CHECK_EQ(st[0], 0);
	teardown(&t);
}

/* ---- pause / resume (VM lifecycle) ---- */

static void pause_dev(struct tnet *t)
{
	virtio_dev_pause(dev(t));
}

static void resume_dev(struct tnet *t)
{
	virtio_dev_resume(dev(t));
}

/* What the device may not touch while paused: both used rings (index and
 * elements) and the avail positions it consumed. */
struct frozen {
	uint8_t rx_used[4 + 8 * QSIZE], tx_used[4 + 8 * QSIZE];
	uint16_t rx_last_avail, tx_last_avail;
};

static void freeze(struct tnet *t, struct frozen *f)
{
	memcpy(f->rx_used, hva(t, RX_USED, sizeof(f->rx_used)), sizeof(f->rx_used));
	memcpy(f->tx_used, hva(t, TX_USED, sizeof(f->tx_used)), sizeof(f->tx_used));
	f->rx_last_avail = dev(t)->vqs[VIRTIO_NET_RXQ].last_avail;
	f->tx_last_avail = dev(t)->vqs[VIRTIO_NET_TXQ].last_avail;
}

static bool still_frozen(struct tnet *t, const struct frozen *f)
{
	return !memcmp(f->rx_used, hva(t, RX_USED, sizeof(f->rx_used)), sizeof(f->rx_used)) &&
	       !memcmp(f->tx_used, hva(t, TX_USED, sizeof(f->tx_used)), sizeof(f->tx_used)) &&
	       f->rx_last_avail == dev(t)->vqs[VIRTIO_NET_RXQ].last_avail &&
	       f->tx_last_avail == dev(t)->vqs[VIRTIO_NET_TXQ].last_avail;
}

TEST(pause_rx_frames_wait_in_the_backend_until_resume)
{
	struct tnet t;
	setup(&t, 0);
	uint64_t b[6];
	for (int i = 0; i < 4; i++)
		b[i] = post_rx(&t, 2048);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK(t.n.rx_armed && t.n.fd_on);
	pause_dev(&t);
	CHECK(!t.n.fd_on); /* off the loop: no wake-ups while paused */
	struct frozen fz;
	freeze(&t, &fz);
	int signals = vf_queue_signals;
	unsigned recvs = t.m.recv_calls;
	/* frames arrive, the driver adds buffers and kicks */
	size_t len[3];
	for (int i = 0; i < 3; i++) {
		len[i] = mk_frame(frame_buf + 2048 * i, 0, 0, 300 + 100 * i, (uint8_t)(10 + i));
		CHECK_EQ(net_mem_inject(&t.m, frame_buf + 2048 * i, len[i]), 0);
	}
	for (int i = 4; i < 6; i++)
		b[i] = post_rx(&t, 2048);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK_EQ(pump(&t), 0);
	/* an event the loop fetched before the pause changes nothing either */
	virtio_net_backend_ready(&t.n, EPOLLIN);
	CHECK_EQ(t.m.recv_calls, recvs);
	CHECK_EQ(t.m.rx_count, 3);
	CHECK(still_frozen(&t, &fz));
	CHECK_EQ(vf_queue_signals, signals);
	for (int i = 0; i < 6; i++)
		CHECK_EQ(count_not_cc(&t, b[i], 2048), 0);

	/* resume: every frame once, in order, into the buffers in order */
	resume_dev(&t);
	CHECK_EQ(vf_used_idx(&t.rx), 3);
	CHECK_EQ(t.m.rx_count, 0);
	CHECK_EQ(t.m.recv_frames, 3);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(vf_used_len(&t.rx, (uint16_t)i), len[i]);
		CHECK(memcmp(hva(&t, b[i] + HDR, len[i] - HDR), frame_buf + 2048 * i + HDR,
			     len[i] - HDR) == 0);
	}
	CHECK(vf_queue_signals > signals);
	CHECK_EQ(t.n.metrics.rx_packets_count, 3);
	/* buffers left: armed again, the next frame flows as before */
	CHECK(t.n.rx_armed && t.n.fd_on);
	net_mem_inject(&t.m, frame_buf, len[0]);
	CHECK_EQ(pump(&t), 1);
	CHECK_EQ(vf_used_idx(&t.rx), 4);
	CHECK_EQ(t.n.metrics.rx_fails, 0);
	teardown(&t);
}

TEST(pause_tx_waits_and_nothing_is_sent_twice)
{
	struct tnet t;
	setup(&t, 0);
	const int n = 2 * VIRTIO_NET_TX_BUDGET + 7;
	size_t len = mk_frame(frame_buf, 0, 0, 60, 9);
	for (int i = 0; i < n; i++) {
		frame_buf[HDR] = (uint8_t)i;
		frame_buf[HDR + 1] = (uint8_t)(i >> 8);
		post_tx1(&t, frame_buf, (uint32_t)len);
	}
	notify(&t, VIRTIO_NET_TXQ); /* one budget's worth, the rest continues on the loop */
	CHECK_EQ(t.m.tx_count, VIRTIO_NET_TX_BUDGET);
	pause_dev(&t);
	struct frozen fz;
	freeze(&t, &fz);
	/* the continuation fires, and the driver queues and kicks more */
	for (int i = 0; i < 5; i++)
		pump(&t);
	for (int i = n; i < n + 3; i++) {
		frame_buf[HDR] = (uint8_t)i;
		frame_buf[HDR + 1] = (uint8_t)(i >> 8);
		post_tx1(&t, frame_buf, (uint32_t)len);
	}
	notify(&t, VIRTIO_NET_TXQ);
	virtio_net_continue(&t.n);
	CHECK_EQ(t.m.tx_count, VIRTIO_NET_TX_BUDGET);
	CHECK_EQ(t.m.send_calls, VIRTIO_NET_TX_BUDGET);
	CHECK(still_frozen(&t, &fz));

	resume_dev(&t);
	while (pump(&t))
		;
	CHECK_EQ(vf_used_idx(&t.tx), n + 3);
	CHECK_EQ(t.m.tx_count, n + 3);
	for (int i = 0; i < n + 3; i++) {
		CHECK_EQ(net_mem_take_sent(&t.m, got_buf, sizeof(got_buf)), (ssize_t)len);
		CHECK_EQ(got_buf[HDR] | got_buf[HDR + 1] << 8, i); /* each once, in order */
	}
	CHECK_EQ(net_mem_take_sent(&t.m, got_buf, sizeof(got_buf)), -ENOENT);
	CHECK_EQ(t.n.metrics.tx_packets_count, n + 3);
	teardown(&t);
}

TEST(pause_keeps_a_frame_being_placed)
{
	struct tnet t;
	setup(&t, 0); /* MRG_RXBUF */
	uint64_t b0 = post_rx(&t, 1000);
	post_rx(&t, 1000);
	size_t len = mk_frame(frame_buf, 0, 0, 5000, 7);
	net_mem_inject(&t.m, frame_buf, len);
	pump(&t);
	CHECK(t.n.rx_pending);
	CHECK_EQ(t.n.rx_nheads, 2);
	pause_dev(&t);
	struct frozen fz;
	freeze(&t, &fz);
	uint64_t more[6];
	for (int i = 0; i < 6; i++)
		more[i] = post_rx(&t, 1000);
	notify(&t, VIRTIO_NET_RXQ);
	pump(&t);
	CHECK(still_frozen(&t, &fz));
	CHECK(t.n.rx_pending);
	CHECK_EQ(t.n.rx_nheads, 2);
	for (int i = 0; i < 6; i++)
		CHECK_EQ(count_not_cc(&t, more[i], 1000), 0);
	resume_dev(&t);
	CHECK(!t.n.rx_pending);
	CHECK_EQ(vf_used_idx(&t.rx), 6); /* 5012 bytes in six 1000-byte buffers */
	CHECK_EQ(hva(&t, b0, 12)[10], 6); /* num_buffers */
	CHECK(memcmp(hva(&t, b0 + HDR, 1000 - HDR), frame_buf + HDR, 1000 - HDR) == 0);
	CHECK(memcmp(hva(&t, more[2], 1000), frame_buf + 4000, 1000) == 0);
	CHECK(memcmp(hva(&t, more[3], 12), frame_buf + 5000, 12) == 0);
	CHECK_EQ(count_not_cc(&t, more[4], 1000), 0); /* the rest wait for the next */
	CHECK_EQ(t.n.metrics.rx_packets_count, 1);
	CHECK_EQ(t.m.recv_frames, 1);
	teardown(&t);
}

TEST(pause_reset_and_driver_ok_while_paused)
{
	struct tnet t;
	setup(&t, 0);
	CHECK_EQ(t.m.offloads, NET_OFFLOAD_ALL);
	pause_dev(&t);
	/* a reset while paused: the offloads go back on resume (the ioctl is
	 * the loop's, and the loop does nothing for a paused device) */
	dev_reset(&t);
	while (pump(&t))
		;
	CHECK_EQ(t.m.offloads, NET_OFFLOAD_ALL);
	resume_dev(&t);
	CHECK_EQ(t.m.offloads, 0);
	CHECK(!t.n.fd_on);

	/* DRIVER_OK while paused: the fd stays off until resume */
	pause_dev(&t);
	memset(hva(&t, RX_USED, 4 + 8 * QSIZE), 0, 4 + 8 * QSIZE);
	t.bump = BUF_GPA;
	drv_up(&t, all_features(&t));
	CHECK(t.n.rx_armed);
	CHECK(!t.n.fd_on);
	uint64_t b = post_rx(&t, 2048);
	size_t len = mk_frame(frame_buf, 0, 0, 400, 5);
	net_mem_inject(&t.m, frame_buf, len);
	unsigned recvs = t.m.recv_calls;
	while (pump(&t)) /* only the device's eventfd (offloads wanted) fires */
		;
	CHECK_EQ(t.m.recv_calls, recvs);
	CHECK_EQ(t.m.offloads, 0);
	CHECK_EQ(vf_used_idx(&t.rx), 0);
	resume_dev(&t);
	CHECK_EQ(t.m.offloads, NET_OFFLOAD_ALL);
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	CHECK(memcmp(hva(&t, b + HDR, 400), frame_buf + HDR, 400) == 0);
	teardown(&t);
}

TEST(pause_backend_failure_still_takes_the_link_down)
{
	struct tnet t;
	setup(&t, 0);
	post_rx(&t, 2048);
	pause_dev(&t);
	struct frozen fz;
	freeze(&t, &fz);
	virtio_net_backend_ready(&t.n, EPOLLERR);
	CHECK(t.n.be_dead);
	CHECK(!t.n.be_watched);
	CHECK_EQ(vf_config_signals, 1);
	CHECK(still_frozen(&t, &fz));
	resume_dev(&t);
	CHECK(!dev(&t)->broken);
	CHECK_EQ(vf_used_idx(&t.rx), 0);
	teardown(&t);
}

/* ---- metrics ---- */

TEST(metrics_count_frames_events_and_failures)
{
	struct tnet t;
	setup(&t, F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_MRG_RXBUF));
	struct virtio_net_metrics m;
	virtio_net_get_metrics(&t.n, &m);
	CHECK_EQ(m.rx_packets_count + m.tx_packets_count + m.rx_fails + m.tx_fails, 0);
	/* a frame with no buffer posted: it waits, counted once per wake-up */
	size_t len = mk_frame(frame_buf, 0, 0, 200, 1);
	net_mem_inject(&t.m, frame_buf, len);
	CHECK_EQ(pump(&t), 1);
	virtio_net_get_metrics(&t.n, &m);
	CHECK_EQ(m.rx_tap_event_count, 1);
	CHECK_EQ(m.no_rx_avail_buffer, 1);
	/* buffers: delivered; then one the driver did not accept (NEEDS_CSUM
	 * without GUEST_CSUM) and one too short */
	post_rx(&t, 2048);
	post_rx(&t, 2048);
	notify(&t, VIRTIO_NET_RXQ);
	size_t bad = mk_frame(frame_buf + 4096, VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 100, 2);
	net_mem_inject(&t.m, frame_buf + 4096, bad);
	net_mem_inject(&t.m, frame_buf, 11);
	pump(&t);
	virtio_net_get_metrics(&t.n, &m);
	CHECK_EQ(m.rx_packets_count, 1);
	CHECK_EQ(m.rx_bytes_count, 200);
	CHECK_EQ(m.rx_fails, 2);
	CHECK_EQ(m.rx_queue_event_count, 1);
	/* transmit: two good, one malformed, one the back end refuses */
	post_tx(&t, frame_buf, (uint32_t)len);
	post_tx(&t, frame_buf, (uint32_t)len);
	post_tx(&t, frame_buf, 13);
	notify(&t, VIRTIO_NET_TXQ);
	t.m.send_errno = ENOBUFS;
	post_tx(&t, frame_buf, (uint32_t)len);
	notify(&t, VIRTIO_NET_TXQ);
	virtio_net_get_metrics(&t.n, &m);
	CHECK_EQ(m.tx_packets_count, 2);
	CHECK_EQ(m.tx_bytes_count, 400);
	CHECK_EQ(m.tx_malformed_frames, 1);
	CHECK_EQ(m.tx_fails, 1);
	CHECK_EQ(m.tx_queue_event_count, 2);
	CHECK_EQ(m.tx_rate_limiter_throttled, 0);
	CHECK_EQ(m.rx_rate_limiter_throttled, 0);
	/* the back end fails for good */
	t.m.recv_errno = EBADFD;
	post_rx(&t, 2048);
	notify(&t, VIRTIO_NET_RXQ);
	net_mem_inject(&t.m, frame_buf, len);
	pump(&t);
	virtio_net_get_metrics(&t.n, &m);
	CHECK_EQ(m.tap_read_fails, 1);
	/* a reset keeps the counters */
	dev_reset(&t);
	virtio_net_get_metrics(&t.n, &m);
	CHECK_EQ(m.rx_packets_count, 1);
	CHECK_EQ(m.tx_packets_count, 2);
	teardown(&t);
}

/* ---- rate limiting ---- */

#define MS 1000000ull
/* Refill periods of hours: the real timerfd (armed for the time the fake
 * clock says) never fires during a test; the tests fire it by hand. */
#define HOUR_MS (3600ull * 1000)
#define HOUR_NS (HOUR_MS * MS)

static uint64_t fake_now;

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return fake_now;
}

/* setup() with the limiters on the fake clock (@rx/@tx as for
 * virtio_net_set_rate_limiters, set after DRIVER_OK). */
static void setup_limited(struct tnet *t, uint64_t features, const struct rate_limiter_config *rx,
			  const struct rate_limiter_config *tx)
{
	setup(t, features);
	fake_now = 1000 * MS;
	t->n.limiter_clock = fake_clock;
	CHECK_EQ(virtio_net_set_rate_limiters(&t->n, rx, tx), 0);
}

/* A limiter's timer fired: what the loop does. */
static void fire_rx(struct tnet *t)
{
	CHECK(loop_dispatch(&t->loop, t->n.rx_limiter.timer_fd));
}

static void fire_tx(struct tnet *t)
{
	CHECK(loop_dispatch(&t->loop, t->n.tx_limiter.timer_fd));
}

/* Queue @n frames of @len payload bytes, frame i numbered i + @first. */
static size_t post_numbered_tx(struct tnet *t, int first, int n, uint32_t len)
{
	size_t l = mk_frame(frame_buf, 0, 0, len, 9);
	for (int i = first; i < first + n; i++) {
		frame_buf[HDR] = (uint8_t)i;
		frame_buf[HDR + 1] = (uint8_t)(i >> 8);
		post_tx1(t, frame_buf, (uint32_t)l);
	}
	return l;
}

/* The back end got exactly frames @first..@first+@n-1, in order, each
 * once, and nothing else. */
static bool sent_are(struct tnet *t, int first, int n, size_t len)
{
	bool ok = true;
	for (int i = first; i < first + n; i++) {
		ssize_t r = net_mem_take_sent(&t->m, got_buf, sizeof(got_buf));
		ok = ok && r == (ssize_t)len && (got_buf[HDR] | got_buf[HDR + 1] << 8) == i;
	}
	return ok && net_mem_take_sent(&t->m, got_buf, sizeof(got_buf)) == -ENOENT;
}

/* Inject @n frames of @len payload bytes, numbered from @first. */
static size_t inject_numbered(struct tnet *t, int first, int n, uint32_t len)
{
	size_t l = mk_frame(frame_buf, 0, 0, len, 3);
	for (int i = first; i < first + n; i++) {
		frame_buf[HDR] = (uint8_t)i;
		frame_buf[HDR + 1] = (uint8_t)(i >> 8);
		CHECK_EQ(net_mem_inject(&t->m, frame_buf, l), 0);
	}
	return l;
}

/* Receive buffer @b holds frame number @i of length @len (with header). */
static bool rx_holds(struct tnet *t, uint64_t b, int i, size_t len)
{
	const uint8_t *p = hva(t, b, len);
	return (p[HDR] | p[HDR + 1] << 8) == i && p[10] == 1 && p[11] == 0;
}

TEST(tx_rate_limiter_holds_a_frame_until_the_timer)
{
	struct tnet t;
	/* 2 frames per hour */
	struct rate_limiter_config c = {.ops = {.size = 2, .refill_time_ms = HOUR_MS}};
	setup_limited(&t, 0, NULL, &c);
	CHECK(t.n.tx_limited);
	CHECK(!t.n.rx_limited);
	size_t len = post_numbered_tx(&t, 0, 5, 100);
	notify(&t, VIRTIO_NET_TXQ);
	/* two go, the third is popped and held, the rest stay in the ring */
	CHECK_EQ(t.m.tx_count, 2);
	CHECK_EQ(vf_used_idx(&t.tx), 2);
	CHECK(t.n.tx_held);
	CHECK_EQ(dev(&t)->vqs[VIRTIO_NET_TXQ].last_avail, 3);
	CHECK(rate_limiter_is_blocked(&t.n.tx_limiter));
	CHECK_EQ(t.n.tx_limiter.wake_ns, fake_now + HOUR_NS / 2);
	CHECK_EQ(t.n.metrics.tx_rate_limiter_throttled, 1);
	/* a kick meanwhile sends nothing (and is counted, as Firecracker
	 * does); the loop has nothing to do: no spinning */
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(t.m.tx_count, 2);
	CHECK_EQ(t.n.metrics.tx_rate_limiter_throttled, 2);
	CHECK_EQ(pump(&t), 0);
	/* a spurious wake-up before the time lets nothing through */
	fake_now += HOUR_NS / 2 - 1;
	fire_tx(&t);
	CHECK_EQ(t.m.tx_count, 2);
	CHECK(t.n.tx_held);
	/* the timer at its time: one more, the next held */
	fake_now += 1;
	fire_tx(&t);
	CHECK_EQ(t.m.tx_count, 3);
	CHECK_EQ(vf_used_idx(&t.tx), 3);
	CHECK(t.n.tx_held);
	CHECK_EQ(dev(&t)->vqs[VIRTIO_NET_TXQ].last_avail, 4);
	fake_now += HOUR_NS / 2;
	fire_tx(&t);
	fake_now += HOUR_NS / 2;
	fire_tx(&t);
	CHECK(!t.n.tx_held);
	CHECK_EQ(vf_used_idx(&t.tx), 5);
	CHECK(sent_are(&t, 0, 5, len));
	CHECK_EQ(t.n.metrics.tx_packets_count, 5);
	/* the RX side is untouched */
	CHECK_EQ(t.n.metrics.rx_rate_limiter_throttled, 0);
	CHECK(!dev(&t)->broken);
	teardown(&t);
}

TEST(tx_rate_limiter_bandwidth_counts_frame_bytes)
{
	struct tnet t;
	/* 1000 bytes per hour, a one-time burst of 500 */
	struct rate_limiter_config c = {
		.bandwidth = {.size = 1000, .one_time_burst = 500, .refill_time_ms = HOUR_MS}};
	setup_limited(&t, 0, NULL, &c);
	size_t len = post_numbered_tx(&t, 0, 4, 400); /* 400 frame bytes each */
	notify(&t, VIRTIO_NET_TXQ);
	/* burst 500 + budget 1000 = 1500: three frames (1200), 300 left */
	CHECK_EQ(t.m.tx_count, 3);
	CHECK(t.n.tx_held);
	CHECK_EQ(t.n.tx_limiter.bandwidth.budget, 300);
	/* the fourth needs 100 more bytes: a tenth of the period */
	CHECK_EQ(t.n.tx_limiter.wake_ns, fake_now + HOUR_NS / 10);
	fake_now = t.n.tx_limiter.wake_ns;
	fire_tx(&t);
	CHECK(!t.n.tx_held);
	CHECK_EQ(vf_used_idx(&t.tx), 4);
	CHECK(sent_are(&t, 0, 4, len));
	CHECK_EQ(t.n.tx_limiter.bandwidth.budget, 0);
	/* a malformed chain is charged too (and dropped as before) */
	fake_now += HOUR_NS;
	post_tx1(&t, frame_buf, HDR + 13);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(t.n.metrics.tx_malformed_frames, 1);
	CHECK_EQ(t.n.tx_limiter.bandwidth.budget, 1000 - 13);
	teardown(&t);
}

TEST(rx_rate_limiter_stops_reading_the_backend_until_the_timer)
{
	struct tnet t;
	/* 1 frame per hour */
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = HOUR_MS}};
	setup_limited(&t, 0, &c, NULL);
	uint64_t b[6];
	for (int i = 0; i < 6; i++)
		b[i] = post_rx(&t, 2048);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK(t.n.fd_on);
	size_t len = inject_numbered(&t, 0, 4, 300);
	CHECK_EQ(pump(&t), 1);
	/* one delivered; the second read, charged, refused: held (not in
	 * the used ring), the fd off the loop, the rest in the back end */
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	CHECK(rx_holds(&t, b[0], 0, len));
	CHECK(t.n.rx_pending);
	CHECK(!t.n.rx_armed);
	CHECK(!t.n.fd_on);
	CHECK_EQ(t.m.recv_frames, 2);
	CHECK_EQ(t.m.rx_count, 2);
	CHECK_EQ(t.n.metrics.rx_rate_limiter_throttled, 1);
	CHECK_EQ(t.n.metrics.rx_packets_count, 1);
	CHECK(rate_limiter_is_blocked(&t.n.rx_limiter));
	/* the loop stays quiet, and more buffers read nothing */
	CHECK_EQ(pump(&t), 0);
	unsigned recvs = t.m.recv_calls;
	notify(&t, VIRTIO_NET_RXQ);
	CHECK_EQ(t.m.recv_calls, recvs);
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	CHECK_EQ(t.n.metrics.rx_rate_limiter_throttled, 2);
	/* a spurious wake-up changes nothing */
	fire_rx(&t);
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	CHECK_EQ(t.m.recv_calls, recvs);
	/* each timer: the held frame goes, the next is read and held */
	for (int i = 1; i < 4; i++) {
		fake_now += HOUR_NS;
		fire_rx(&t);
		CHECK_EQ(vf_used_idx(&t.rx), i + 1);
		CHECK(rx_holds(&t, b[i], i, len));
		CHECK_EQ(vf_used_len(&t.rx, (uint16_t)i), len);
	}
	/* all four delivered, each once, in order; the back end is empty
	 * and, with buffers left, its fd is watched again */
	CHECK(!t.n.rx_pending);
	CHECK_EQ(t.m.rx_count, 0);
	CHECK_EQ(t.m.recv_frames, 4);
	CHECK(t.n.fd_on);
	CHECK_EQ(t.n.metrics.rx_packets_count, 4);
	CHECK_EQ(count_not_cc(&t, b[4], 2048), 0);
	teardown(&t);
}

TEST(rx_rate_limiter_charges_a_merged_frame_once)
{
	struct tnet t;
	/* 8000 bytes per hour */
	struct rate_limiter_config c = {.bandwidth = {.size = 8000, .refill_time_ms = HOUR_MS}};
	setup_limited(&t, 0, &c, NULL);
	post_rx(&t, 1000);
	post_rx(&t, 1000);
	size_t len = mk_frame(frame_buf, 0, 0, 5000, 7);
	net_mem_inject(&t.m, frame_buf, len);
	net_mem_inject(&t.m, frame_buf, len);
	pump(&t);
	/* paid, waiting for buffers (not throttled) */
	CHECK(t.n.rx_pending);
	CHECK(t.n.rx_charged);
	CHECK_EQ(t.n.rx_limiter.bandwidth.budget, 3000);
	for (int i = 0; i < 4; i++)
		post_rx(&t, 1000);
	notify(&t, VIRTIO_NET_RXQ);
	CHECK_EQ(vf_used_idx(&t.rx), 6);
	CHECK_EQ(t.n.metrics.rx_packets_count, 1);
	CHECK_EQ(t.n.metrics.rx_rate_limiter_throttled, 0);
	/* no buffers left: the second frame is not read yet */
	CHECK_EQ(t.n.rx_limiter.bandwidth.budget, 3000);
	for (int i = 0; i < 6; i++)
		post_rx(&t, 1000);
	notify(&t, VIRTIO_NET_RXQ);
	/* read, 5000 > 3000 left: held */
	CHECK_EQ(vf_used_idx(&t.rx), 6);
	CHECK(t.n.rx_pending && !t.n.rx_charged);
	CHECK_EQ(t.n.metrics.rx_rate_limiter_throttled, 1);
	fake_now = t.n.rx_limiter.wake_ns;
	fire_rx(&t);
	CHECK_EQ(vf_used_idx(&t.rx), 12);
	CHECK_EQ(t.n.rx_limiter.bandwidth.budget, 0);
	CHECK_EQ(t.n.metrics.rx_packets_count, 2);
	teardown(&t);
}

TEST(rate_limiter_update_from_limited_to_unlimited_releases_at_once)
{
	struct tnet t;
	struct rate_limiter_config slow = {.ops = {.size = 1, .refill_time_ms = HOUR_MS}};
	struct rate_limiter_config none = {0};
	setup_limited(&t, 0, &slow, &slow);
	size_t tlen = post_numbered_tx(&t, 0, 4, 60);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(t.m.tx_count, 1);
	CHECK(t.n.tx_held);
	uint64_t b[5];
	for (int i = 0; i < 5; i++)
		b[i] = post_rx(&t, 2048);
	notify(&t, VIRTIO_NET_RXQ);
	size_t rlen = inject_numbered(&t, 0, 4, 500);
	pump(&t);
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	CHECK(t.n.rx_pending && !t.n.fd_on);

	/* NULL: that direction stays as it is */
	CHECK_EQ(virtio_net_set_rate_limiters(&t.n, NULL, NULL), 0);
	CHECK(t.n.tx_held);
	CHECK(t.n.rx_pending);
	CHECK_EQ(t.m.tx_count, 1);

	/* TX unlimited: everything held or queued goes now, in order, once;
	 * RX still waits */
	CHECK_EQ(virtio_net_set_rate_limiters(&t.n, NULL, &none), 0);
	CHECK(!t.n.tx_held);
	CHECK_EQ(vf_used_idx(&t.tx), 4);
	CHECK(sent_are(&t, 0, 4, tlen));
	CHECK(t.n.rx_pending);
	CHECK_EQ(vf_used_idx(&t.rx), 1);

	/* RX unlimited: the held frame and the ones in the back end come
	 * now, and the fd is watched again */
	CHECK_EQ(virtio_net_set_rate_limiters(&t.n, &none, NULL), 0);
	CHECK(!t.n.rx_pending);
	CHECK_EQ(vf_used_idx(&t.rx), 4);
	for (int i = 0; i < 4; i++)
		CHECK(rx_holds(&t, b[i], i, rlen));
	CHECK_EQ(count_not_cc(&t, b[4], 2048), 0);
	CHECK_EQ(t.m.recv_frames, 4);
	CHECK(t.n.fd_on);
	/* the timers' late events are harmless */
	fire_rx(&t);
	fire_tx(&t);
	CHECK_EQ(vf_used_idx(&t.rx), 4);
	CHECK_EQ(vf_used_idx(&t.tx), 4);
	/* and traffic flows unlimited */
	post_numbered_tx(&t, 4, 3, 60);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK(sent_are(&t, 4, 3, tlen));
	inject_numbered(&t, 4, 1, 500);
	CHECK_EQ(pump(&t), 1);
	CHECK_EQ(vf_used_idx(&t.rx), 5);
	CHECK(rx_holds(&t, b[4], 4, rlen));

	/* limited again, faster: a changed bucket starts full */
	struct rate_limiter_config fast = {.ops = {.size = 2, .refill_time_ms = HOUR_MS}};
	CHECK_EQ(virtio_net_set_rate_limiters(&t.n, NULL, &fast), 0);
	post_numbered_tx(&t, 7, 3, 60);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(t.m.tx_count, 2);
	CHECK(t.n.tx_held);
	/* ... and a slower config retries the held frame under its limits */
	CHECK_EQ(virtio_net_set_rate_limiters(&t.n, NULL, &slow), 0);
	CHECK_EQ(t.m.tx_count, 3);
	CHECK(!t.n.tx_held);
	CHECK(sent_are(&t, 7, 3, tlen));
	teardown(&t);
}

TEST(rate_limiters_before_activation_and_across_reset)
{
	struct tnet t;
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = HOUR_MS}};
	/* no loop: refused, nothing changes */
	struct guest_mem mem;
	struct net_mem m;
	struct virtio_net *n = calloc(1, sizeof(*n));
	char err[128];
	CHECK_EQ(guest_mem_init(&mem, MIB, MIB, MIB), 0);
	CHECK_EQ(net_mem_init(&m, 0, 0), 0);
	CHECK_EQ(virtio_net_init(n, &m.be, false, NULL, &mem, NULL, err, sizeof(err)), 0);
	CHECK_EQ(virtio_net_set_rate_limiters(n, NULL, &c), -EINVAL);
	CHECK_EQ(virtio_net_set_rate_limiters(n, &c, NULL), -EINVAL);
	CHECK(!n->rx_limited && !n->tx_limited);
	struct rate_limiter_config none = {0};
	CHECK_EQ(virtio_net_set_rate_limiters(n, &none, &none), 0);
	virtio_net_destroy(n);
	net_close(&m.be);
	guest_mem_destroy(&mem);
	free(n);

	/* set before the driver is up: applies from the first frame */
	init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	fake_now = 1000 * MS;
	t.n.limiter_clock = fake_clock;
	CHECK_EQ(virtio_net_set_rate_limiters(&t.n, &c, &c), 0);
	CHECK(t.n.rx_limited && t.n.tx_limited);
	drv_up(&t, all_features(&t));
	while (pump(&t))
		;
	size_t len = post_numbered_tx(&t, 0, 3, 80);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(t.m.tx_count, 1);
	CHECK(t.n.tx_held);
	post_rx(&t, 2048);
	post_rx(&t, 2048);
	notify(&t, VIRTIO_NET_RXQ);
	inject_numbered(&t, 0, 2, 100);
	pump(&t);
	CHECK_EQ(vf_used_idx(&t.rx), 1);
	CHECK(t.n.rx_pending);

	/* a reset forgets the held chain and frame; the limiters stay */
	dev_reset(&t);
	CHECK(!t.n.tx_held);
	CHECK(!t.n.rx_pending);
	CHECK(t.n.rx_limited && t.n.tx_limited);
	/* the timers fire for a device without a driver: nothing */
	fake_now += HOUR_NS;
	fire_rx(&t);
	fire_tx(&t);
	CHECK_EQ(t.m.tx_count, 1);
	/* the driver comes back and starts over (the next frame sent is
	 * whatever it queues now) */
	memset(hva(&t, RX_AVAIL, 6 + 2 * QSIZE), 0, 6 + 2 * QSIZE);
	memset(hva(&t, TX_AVAIL, 6 + 2 * QSIZE), 0, 6 + 2 * QSIZE);
	memset(hva(&t, RX_USED, 6 + 8 * QSIZE), 0, 6 + 8 * QSIZE);
	memset(hva(&t, TX_USED, 6 + 8 * QSIZE), 0, 6 + 8 * QSIZE);
	drv_up(&t, all_features(&t));
	while (pump(&t))
		;
	CHECK(sent_are(&t, 0, 1, len));
	post_numbered_tx(&t, 10, 2, 80);
	notify(&t, VIRTIO_NET_TXQ);
	CHECK_EQ(vf_used_idx(&t.tx), 1);
	CHECK(t.n.tx_held);
	CHECK(sent_are(&t, 10, 1, len));
	teardown(&t);
}

TEST(pause_with_throttled_queues)
{
	struct tnet t;
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = HOUR_MS}};
	setup_limited(&t, 0, &c, &c);
	size_t tlen = post_numbered_tx(&t, 0, 3, 60);
	notify(&t, VIRTIO_NET_TXQ);
	uint64_t b[4];
	for (int i = 0; i < 4; i++)
		b[i] = post_rx(&t, 2048);
	notify(&t, VIRTIO_NET_RXQ);
	size_t rlen = inject_numbered(&t, 0, 3, 200);
	pump(&t);
	CHECK(t.n.tx_held);
	CHECK(t.n.rx_pending);
	CHECK_EQ(t.m.tx_count, 1);
	CHECK_EQ(vf_used_idx(&t.rx), 1);

	pause_dev(&t);
	struct frozen fz;
	freeze(&t, &fz);
	/* both timers fire while paused (and even a limits change comes):
	 * nothing moves, the timerfds are drained (the loop does not spin) */
	fake_now += HOUR_NS;
	fire_rx(&t);
	fire_tx(&t);
	CHECK(still_frozen(&t, &fz));
	CHECK_EQ(t.m.tx_count, 1);
	CHECK_EQ(t.m.recv_frames, 2);
	CHECK(t.n.tx_held);
	CHECK(t.n.rx_pending);
	CHECK_EQ(pump(&t), 0);
	struct rate_limiter_config two = {.ops = {.size = 2, .refill_time_ms = HOUR_MS}};
	CHECK_EQ(virtio_net_set_rate_limiters(&t.n, &two, &two), 0);
	CHECK(still_frozen(&t, &fz));
	CHECK_EQ(t.m.tx_count, 1);

	/* resume: what was held goes first, then what the new limits allow
	 * (2 each), each once, in order */
	resume_dev(&t);
	CHECK_EQ(vf_used_idx(&t.tx), 3);
	CHECK(sent_are(&t, 0, 3, tlen));
	CHECK(!t.n.tx_held);
	CHECK_EQ(vf_used_idx(&t.rx), 3);
	for (int i = 0; i < 3; i++)
		CHECK(rx_holds(&t, b[i], i, rlen));
	CHECK_EQ(count_not_cc(&t, b[3], 2048), 0);
	CHECK_EQ(t.m.rx_count, 0);
	CHECK(!t.n.rx_pending);
	CHECK(t.n.fd_on);
	teardown(&t);
}

TEST(rate_limiter_real_timer_resumes_on_the_loop)
{
	/* The real clock and timerfd: 1 frame per 5 ms; the loop sleeps
	 * until the timer (no spinning, no timing threshold). */
	struct tnet t;
	setup(&t, 0);
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = 5}};
	CHECK_EQ(virtio_net_set_rate_limiters(&t.n, NULL, &c), 0);
	size_t len = post_numbered_tx(&t, 0, 4, 60);
	notify(&t, VIRTIO_NET_TXQ);
	int rounds = 0;
	while (vf_used_idx(&t.tx) < 4 && rounds < 100) {
		CHECK_EQ(loop_run_once(&t.loop, 10000), 1); /* the timer, nothing else */
		rounds++;
	}
	CHECK_EQ(vf_used_idx(&t.tx), 4);
	CHECK_EQ(rounds, 3);
	CHECK_EQ(t.n.metrics.tx_rate_limiter_throttled, 3);
	CHECK(sent_are(&t, 0, 4, len));
	teardown(&t);
}

/* ---- control queue ---- */

static uint16_t cfg_status(struct tnet *t)
{
	uint8_t st[2];
	pthread_mutex_lock(&dev(t)->lock);
	dev(t)->ops->config_read(dev(t), VIRTIO_NET_CFG_STATUS, st, 2);
	pthread_mutex_unlock(&dev(t)->lock);
	return (uint16_t)(st[0] | st[1] << 8);
}

/* A buffer of @len bytes of 0xcc; its address. */
static uint64_t cc_buf(struct tnet *t, uint32_t len)
{
	uint64_t g = alloc_buf(t, len);
	memset(hva(t, g, len), 0xcc, len);
	return g;
}

/* A buffer holding the command header {@cls, @cmd}. */
static uint64_t ctrl_hdr(struct tnet *t, uint8_t cls, uint8_t cmd)
{
	uint64_t g = alloc_buf(t, 2);
	hva(t, g, 2)[0] = cls;
	hva(t, g, 2)[1] = cmd;
	return g;
}

/* Post a well-formed command as Linux does: the header, @data bytes of
 * data (0x5a) in a descriptor of their own, a 1-byte ack buffer (0xcc, at
 * *@ack).  Returns the head. */
static uint16_t post_cmd(struct tnet *t, uint8_t cls, uint8_t cmd, uint32_t data, uint64_t *ack)
{
	struct vf_seg s[3];
	int n = 0;
	s[n++] = (struct vf_seg){ctrl_hdr(t, cls, cmd), 2, false};
	if (data) {
		uint64_t g = alloc_buf(t, data);
		memset(hva(t, g, data), 0x5a, data);
		s[n++] = (struct vf_seg){g, data, false};
	}
	*ack = cc_buf(t, 1);
	s[n++] = (struct vf_seg){*ack, 1, true};
	return vf_chain(&t->ctrl, s, n);
}

static uint8_t byte_at(struct tnet *t, uint64_t gpa)
{
	return hva(t, gpa, 1)[0];
}

TEST(announce_asks_the_driver_and_its_ack_clears_it)
{
	struct tnet t;
	setup(&t, 0);
	t.n.announce_gap_ms = 1;
	uint32_t gen = dev(&t)->config_generation;
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP);
	CHECK_EQ(virtio_net_announce(&t.n), 0);
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
	CHECK_EQ(vf_config_signals, 1);
	CHECK_EQ(dev(&t)->config_generation, gen + 1);
	CHECK_EQ(t.n.metrics.announce_count, 1);
	CHECK_EQ(t.n.metrics.announce_guest, 1);
	CHECK_EQ(t.m.tx_count, 0); /* the driver announces, not visor */
	/* round 2 finds ANNOUNCE not acked yet: no second request */
	CHECK_EQ(loop_run_once(&t.loop, 10000), 1); /* the timer, nothing else */
	CHECK_EQ(vf_config_signals, 1);
	CHECK_EQ(t.n.metrics.announce_guest, 1);
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
	/* the driver's ack: OK, ANNOUNCE cleared before the chain is used,
	 * a new config generation but no interrupt */
	uint64_t ack;
	uint16_t h = post_cmd(&t, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, 0, &ack);
	notify(&t, VIRTIO_NET_CTRLQ);
	CHECK_EQ(vf_used_idx(&t.ctrl), 1);
	CHECK_EQ(vf_used_id(&t.ctrl, 0), h);
	CHECK_EQ(vf_used_len(&t.ctrl, 0), 1);
	CHECK_EQ(byte_at(&t, ack), VIRTIO_NET_OK);
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP);
	CHECK_EQ(dev(&t)->config_generation, gen + 2);
	CHECK_EQ(vf_config_signals, 1);
	CHECK_EQ(vf_queue_signals, 1); /* the used control chain */
	CHECK_EQ(t.n.metrics.ctrl_cmds, 1);
	CHECK_EQ(t.n.metrics.ctrl_queue_event_count, 1);
	/* round 3 asks again; it is the last one */
	CHECK(t.n.announce_armed);
	CHECK_EQ(loop_run_once(&t.loop, 10000), 1);
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
	CHECK_EQ(vf_config_signals, 2);
	CHECK_EQ(t.n.metrics.announce_guest, 2);
	CHECK_EQ(t.n.announce_left, 0);
	CHECK(!t.n.announce_armed);
	struct itimerspec its;
	CHECK_EQ(timerfd_gettime(t.n.announce_fd, &its), 0);
	CHECK(!its.it_value.tv_sec && !its.it_value.tv_nsec);
	/* two acks: the second finds nothing set and is OK as well */
	uint64_t ack2;
	post_cmd(&t, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, 0, &ack);
	post_cmd(&t, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, 0, &ack2);
	notify(&t, VIRTIO_NET_CTRLQ);
	CHECK_EQ(vf_used_idx(&t.ctrl), 3);
	CHECK_EQ(byte_at(&t, ack), VIRTIO_NET_OK);
	CHECK_EQ(byte_at(&t, ack2), VIRTIO_NET_OK);
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP);
	CHECK_EQ(dev(&t)->config_generation, gen + 4); /* round 3, one ack that cleared */
	CHECK_EQ(t.n.metrics.ctrl_cmds, 3);
	CHECK_EQ(t.n.metrics.ctrl_fails, 0);
	CHECK_EQ(t.m.tx_count, 0);
	CHECK(!dev(&t)->broken);
	teardown(&t);
}

TEST(ctrl_answers_err_to_every_other_command)
{
	/* what Linux may send for features this device does not offer, and
	 * what no driver should */
	static const struct {
		uint8_t cls, cmd;
		uint32_t data;
	} cmds[] = {
		{VIRTIO_NET_CTRL_RX, 0, 1},	       /* PROMISC */
		{VIRTIO_NET_CTRL_RX, 1, 1},	       /* ALLMULTI */
		{VIRTIO_NET_CTRL_RX, 5, 1},	       /* NOBCAST */
		{VIRTIO_NET_CTRL_MAC, 0, 8},	       /* MAC_TABLE_SET, two empty tables */
		{VIRTIO_NET_CTRL_MAC, 1, 6},	       /* MAC_ADDR_SET */
		{VIRTIO_NET_CTRL_VLAN, 0, 2},	       /* ADD */
		{VIRTIO_NET_CTRL_VLAN, 1, 2},	       /* DEL */
		{VIRTIO_NET_CTRL_ANNOUNCE, 1, 0},      /* no such command */
		{VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, 1}, /* the ack has no data */
		{VIRTIO_NET_CTRL_MQ, 0, 2},	       /* VQ_PAIRS_SET */
		{VIRTIO_NET_CTRL_MQ, 1, 64},	       /* RSS_CONFIG */
		{VIRTIO_NET_CTRL_GUEST_OFFLOADS, 0, 8}, /* SET */
		{VIRTIO_NET_CTRL_NOTF_COAL, 0, 8},     /* TX_SET */
		{7, 0, 0},
		{0xff, 0xff, 4},
	};
	const unsigned n = sizeof(cmds) / sizeof(cmds[0]);
	struct tnet t;
	setup(&t, 0);
	uint64_t ack[sizeof(cmds) / sizeof(cmds[0])];
	uint16_t head[sizeof(cmds) / sizeof(cmds[0])];
	for (unsigned i = 0; i < n; i++)
		head[i] = post_cmd(&t, cmds[i].cls, cmds[i].cmd, cmds[i].data, &ack[i]);
	notify(&t, VIRTIO_NET_CTRLQ);
	CHECK_EQ(vf_used_idx(&t.ctrl), n);
	for (unsigned i = 0; i < n; i++) {
		CHECK_EQ(vf_used_id(&t.ctrl, (uint16_t)i), head[i]);
		CHECK_EQ(vf_used_len(&t.ctrl, (uint16_t)i), 1);
		CHECK_EQ(byte_at(&t, ack[i]), VIRTIO_NET_ERR);
	}
	CHECK_EQ(t.n.metrics.ctrl_fails, n);
	CHECK_EQ(t.n.metrics.ctrl_cmds, 0);
	CHECK_EQ(t.n.metrics.ctrl_malformed, 0);
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP);
	CHECK(!dev(&t)->broken);
	teardown(&t);
}

TEST(ctrl_hostile_chains_are_answered_or_returned_and_the_device_goes_on)
{
	struct tnet t;
	setup(&t, 0);
	t.n.announce_gap_ms = HOUR_MS;
	CHECK_EQ(virtio_net_announce(&t.n), 0); /* ANNOUNCE set: only a real ack clears it */
	uint64_t h, a, b, big;
	/* 0: no device-writable byte: returned unanswered */
	h = ctrl_hdr(&t, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK);
	struct vf_seg s0[] = {{h, 2, false}};
	vf_chain(&t.ctrl, s0, 1);
	/* 1: the ack byte read-only */
	a = cc_buf(&t, 1);
	struct vf_seg s1[] = {{h, 2, false}, {a, 1, false}};
	vf_chain(&t.ctrl, s1, 2);
	/* 2: a header of one byte: ERR */
	uint64_t a2 = cc_buf(&t, 1);
	struct vf_seg s2[] = {{h, 1, false}, {a2, 1, true}};
	vf_chain(&t.ctrl, s2, 2);
	/* 3: the header in a device-writable buffer (nothing readable): ERR
	 * into its first byte, the rest untouched */
	b = ctrl_hdr(&t, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK);
	hva(&t, b, 4)[2] = 0xcc;
	hva(&t, b, 4)[3] = 0xcc;
	struct vf_seg s3[] = {{b, 4, true}};
	vf_chain(&t.ctrl, s3, 1);
	/* 4: an ack with 1 MiB of data: ERR, not a byte of it read or written */
	big = cc_buf(&t, 1u << 20);
	uint64_t a4 = cc_buf(&t, 1);
	struct vf_seg s4[] = {{h, 2, false}, {big, 1u << 20, false}, {a4, 1, true}};
	vf_chain(&t.ctrl, s4, 3);
	/* 5: a real ack with a 16-byte writable part: OK in its first byte */
	uint64_t a5 = cc_buf(&t, 16);
	struct vf_seg s5[] = {{h, 2, false}, {a5, 16, true}};
	vf_chain(&t.ctrl, s5, 2);
	notify(&t, VIRTIO_NET_CTRLQ);
	CHECK(!dev(&t)->broken);
	CHECK_EQ(vf_used_idx(&t.ctrl), 6);
	static const uint32_t used_len[6] = {0, 0, 1, 1, 1, 1};
	for (uint16_t i = 0; i < 6; i++)
		CHECK_EQ(vf_used_len(&t.ctrl, i), used_len[i]);
	CHECK_EQ(byte_at(&t, a), 0xcc);
	CHECK_EQ(byte_at(&t, a2), VIRTIO_NET_ERR);
	CHECK_EQ(byte_at(&t, b), VIRTIO_NET_ERR);
	CHECK_EQ(hva(&t, b, 4)[1], VIRTIO_NET_CTRL_ANNOUNCE_ACK);
	CHECK_EQ(hva(&t, b, 4)[2] & hva(&t, b, 4)[3], 0xcc);
	CHECK_EQ(byte_at(&t, a4), VIRTIO_NET_ERR);
	CHECK_EQ(count_not_cc(&t, big, 1u << 20), 0);
	CHECK_EQ(byte_at(&t, a5), VIRTIO_NET_OK);
	CHECK_EQ(count_not_cc(&t, a5 + 1, 15), 0);
	CHECK_EQ(t.n.metrics.ctrl_malformed, 4); /* 0, 1, 2, 3 */
	CHECK_EQ(t.n.metrics.ctrl_fails, 3);     /* 2, 3, 4 */
	CHECK_EQ(t.n.metrics.ctrl_cmds, 1);      /* 5 */
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP); /* cleared by 5 only */
	/* a ring violation (a buffer outside guest RAM) breaks the device */
	struct vf_seg s6[] = {{MEM_SIZE, 2, false}, {a2, 1, true}};
	vf_chain(&t.ctrl, s6, 2);
	notify(&t, VIRTIO_NET_CTRLQ);
	CHECK(dev(&t)->broken);
	CHECK_EQ(vf_used_idx(&t.ctrl), 6);
	teardown(&t);
}

TEST(ctrl_budget_yields_to_the_loop)
{
	struct tnet t;
	setup(&t, 0);
	for (int i = 0; i < 100; i++) {
		uint64_t ack;
		post_cmd(&t, VIRTIO_NET_CTRL_RX, 0, 1, &ack);
	}
	notify(&t, VIRTIO_NET_CTRLQ);
	CHECK_EQ(vf_used_idx(&t.ctrl), VIRTIO_NET_CTRL_BUDGET);
	CHECK(t.n.ctrl_more);
	while (pump(&t))
		;
	CHECK_EQ(vf_used_idx(&t.ctrl), 100);
	CHECK(!t.n.ctrl_more);
	CHECK_EQ(t.n.metrics.ctrl_fails, 100);
	teardown(&t);
}

TEST(ctrl_queue_follows_the_features)
{
	struct tnet t;
	/* CTRL_VQ without GUEST_ANNOUNCE: the ack is refused, and an
	 * announce sends the frame itself */
	init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	drv_up(&t, all_features(&t) & ~F(VIRTIO_NET_F_GUEST_ANNOUNCE));
	while (pump(&t))
		;
	uint64_t ack;
	post_cmd(&t, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, 0, &ack);
	notify(&t, VIRTIO_NET_CTRLQ);
	CHECK_EQ(vf_used_idx(&t.ctrl), 1);
	CHECK_EQ(byte_at(&t, ack), VIRTIO_NET_ERR);
	CHECK_EQ(virtio_net_announce(&t.n), 0);
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP);
	CHECK_EQ(vf_config_signals, 0);
	CHECK_EQ(t.m.tx_count, 1);
	CHECK_EQ(t.n.metrics.announce_frames, 1);
	teardown(&t);
	/* GUEST_ANNOUNCE but its control queue not set up: the driver could
	 * not ack, visor sends the frame */
	init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	drv_up_nq(&t, all_features(&t), 2);
	CHECK_EQ(virtio_net_announce(&t.n), 0);
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP);
	CHECK_EQ(t.m.tx_count, 1);
	teardown(&t);
	/* no CTRL_VQ, yet the driver made queue 2 ready: it does not exist
	 * for that driver, nothing on it is looked at */
	init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	drv_up_nq(&t, all_features(&t) & ~(F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_GUEST_ANNOUNCE)),
		  3);
	post_cmd(&t, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, 0, &ack);
	notify(&t, VIRTIO_NET_CTRLQ);
	vf_run_replays(dev(&t));
	CHECK_EQ(vf_used_idx(&t.ctrl), 0);
	CHECK_EQ(byte_at(&t, ack), 0xcc);
	CHECK(!dev(&t)->broken);
	teardown(&t);
}

/* ---- announce by visor: RARP ---- */

/* Take the next frame the back end got and check it is the RARP request
 * for @mac: the 12-byte header (no offload), then RFC 903's request. */
static bool sent_rarp(struct tnet *t, const uint8_t mac[6])
{
	uint8_t want[HDR + 60];
	memset(want, 0, sizeof(want));
	uint8_t *e = want + HDR;
	memset(e, 0xff, 6);			/* to everyone */
	memcpy(e + 6, mac, 6);			/* from the guest's MAC */
	e[12] = 0x80, e[13] = 0x35;		/* RARP */
	e[14] = 0x00, e[15] = 0x01;		/* Ethernet */
	e[16] = 0x08, e[17] = 0x00;		/* IPv4 */
	e[18] = 6, e[19] = 4;			/* address lengths */
	e[20] = 0x00, e[21] = 0x03;		/* request reverse */
	memcpy(e + 22, mac, 6);			/* sender MAC, IPv4 0.0.0.0 */
	memcpy(e + 32, mac, 6);			/* target MAC, IPv4 0.0.0.0 */
	ssize_t l = net_mem_take_sent(&t->m, got_buf, sizeof(got_buf));
	return l == (ssize_t)sizeof(want) && !memcmp(got_buf, want, sizeof(want));
}

TEST(announce_without_a_driver_sends_rarp_from_the_guest_mac)
{
	static const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
	struct tnet t;
	init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL); /* no driver */
	t.n.announce_gap_ms = 1;
	CHECK_EQ(t.n.announce_fd, -1); /* no timer before the first announce */
	CHECK_EQ(virtio_net_announce(&t.n), 0);
	CHECK(t.n.announce_fd >= 0);
	CHECK_EQ(t.m.tx_count, 1); /* the first round at once */
	CHECK(sent_rarp(&t, mac));
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(loop_run_once(&t.loop, 10000), 1);
		CHECK(sent_rarp(&t, mac));
	}
	CHECK_EQ(net_mem_take_sent(&t.m, got_buf, sizeof(got_buf)), -ENOENT);
	CHECK(!t.n.announce_armed);
	CHECK_EQ(t.n.metrics.announce_count, 1);
	CHECK_EQ(t.n.metrics.announce_frames, VIRTIO_NET_ANNOUNCE_ROUNDS);
	CHECK_EQ(t.n.metrics.announce_guest, 0);
	CHECK_EQ(t.n.metrics.tx_packets_count, 0); /* not the guest's frames */
	CHECK_EQ(vf_config_signals, 0);
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP);
	/* a back end that refuses: counted; a dead one: nothing is sent */
	t.m.send_errno = ENOBUFS;
	t.n.announce_gap_ms = HOUR_MS;
	CHECK_EQ(virtio_net_announce(&t.n), 0);
	CHECK_EQ(t.n.metrics.announce_fails, 1);
	t.m.send_errno = 0;
	virtio_net_backend_ready(&t.n, EPOLLERR);
	CHECK_EQ(virtio_net_announce(&t.n), 0);
	CHECK_EQ(t.m.send_calls, VIRTIO_NET_ANNOUNCE_ROUNDS + 1);
	CHECK_EQ(t.n.metrics.announce_count, 3);
	teardown(&t);
}

TEST(announce_waits_while_paused_and_restarts_when_asked_again)
{
	static const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
	struct tnet t;
	init_dev(&t, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	t.n.announce_gap_ms = HOUR_MS;
	pause_dev(&t);
	CHECK_EQ(virtio_net_announce(&t.n), 0);
	CHECK_EQ(t.m.tx_count, 0); /* a paused VM announces nothing */
	CHECK(!t.n.announce_armed);
	resume_dev(&t); /* the first round */
	CHECK(sent_rarp(&t, mac));
	CHECK(t.n.announce_armed);
	CHECK_EQ(t.n.announce_left, VIRTIO_NET_ANNOUNCE_ROUNDS - 1);
	pause_dev(&t); /* the timer stops */
	CHECK(!t.n.announce_armed);
	struct itimerspec its;
	CHECK_EQ(timerfd_gettime(t.n.announce_fd, &its), 0);
	CHECK(!its.it_value.tv_sec && !its.it_value.tv_nsec);
	/* a wake-up fetched before the pause does nothing */
	CHECK(loop_dispatch(&t.loop, t.n.announce_fd));
	CHECK_EQ(t.m.send_calls, 1);
	resume_dev(&t); /* the next round at once */
	CHECK(sent_rarp(&t, mac));
	CHECK_EQ(t.n.announce_left, VIRTIO_NET_ANNOUNCE_ROUNDS - 2);
	/* asked again with a round left: all rounds again */
	CHECK_EQ(virtio_net_announce(&t.n), 0);
	CHECK(sent_rarp(&t, mac));
	CHECK_EQ(t.n.announce_left, VIRTIO_NET_ANNOUNCE_ROUNDS - 1);
	CHECK_EQ(t.n.metrics.announce_count, 2);
	teardown(&t);
}

TEST(announce_after_a_driver_reset_sends_the_frame)
{
	static const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
	struct tnet t;
	setup(&t, 0);
	t.n.announce_gap_ms = HOUR_MS;
	CHECK_EQ(virtio_net_announce(&t.n), 0);
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
	dev_reset(&t); /* the driver goes away: ANNOUNCE with it */
	CHECK_EQ(cfg_status(&t), VIRTIO_NET_S_LINK_UP);
	CHECK(loop_dispatch(&t.loop, t.n.announce_fd)); /* the next round */
	CHECK(sent_rarp(&t, mac));
	CHECK_EQ(t.n.metrics.announce_guest, 1);
	CHECK_EQ(t.n.metrics.announce_frames, 1);
	teardown(&t);
}

TEST(announce_without_a_loop_has_one_round)
{
	static const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
	static struct tnet t;
	memset(&t, 0, sizeof(t));
	if (guest_mem_init(&t.mem, MEM_SIZE, MEM_SIZE, MEM_SIZE) ||
	    net_mem_init(&t.m, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL))
		abort();
	char err[160];
	CHECK_EQ(virtio_net_init(&t.n, &t.m.be, false, mac, &t.mem, NULL, err, sizeof(err)), 0);
	CHECK_EQ(virtio_net_announce(&t.n), 0);
	CHECK(sent_rarp(&t, mac));
	CHECK_EQ(t.n.announce_left, 0);
	CHECK_EQ(t.n.announce_fd, -1);
	virtio_net_destroy(&t.n);
	net_close(&t.m.be);
	guest_mem_destroy(&t.mem);
}

/* ---- snapshot state ---- */

/* The device's section as the machine writes it: the core's state, then
 * the device's own, in one payload. */
static char serr[256];
static struct virtio_net_state net_st; /* 66 KiB: not on the stack */

static void snap_save(struct tnet *t, struct snapfile *f)
{
	static struct virtio_dev_state core;
	CHECK_EQ(virtio_dev_state_get(dev(t), &core), 0);
	CHECK_EQ(virtio_net_state_get(&t->n, &net_st), 0);
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "dev.0", VIRTIO_NET_STATE_VERSION);
	virtio_dev_state_encode(&core, &w);
	size_t before = w.len;
	virtio_net_state_encode(&net_st, &w);
	size_t part_len = w.len - before;
	snap_writer_section_end(&w);
	snapfile_from(&w, "dev.0", f);
	f->part = f->plen - part_len;
}

/* Decode and check p[0..len) against @t's device (nothing applied); if
 * accepted and @apply, put the core's state and the device's, restart. */
static int snap_load(struct tnet *t, const uint8_t *p, size_t len, bool apply)
{
	static struct virtio_dev_state core;
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	serr[0] = 0;
	int rc = virtio_dev_state_decode(&c, dev(t), &core, serr, sizeof(serr));
	if (!rc)
		rc = virtio_net_state_decode(&c, &t->n, &net_st, serr, sizeof(serr));
	if (!rc)
		rc = snap_cursor_done(&c, "dev.0", serr, sizeof(serr));
	if (!rc)
		rc = virtio_net_state_check(&net_st, &core, serr, sizeof(serr));
	if (rc || !apply)
		return rc;
	CHECK_EQ(virtio_dev_state_put(dev(t), &core), 0);
	rc = virtio_net_state_put(&t->n, &net_st);
	virtio_dev_state_restart(dev(t));
	return rc;
}

/* The payload with @n bytes at offset @off (of the device's part if
 * @part, else of the payload) replaced by @v (little-endian), loaded (not
 * applied) into @t. */
static int snap_load_patched(struct tnet *t, const struct snapfile *f, bool part, size_t off,
			     unsigned n, uint64_t v)
{
	uint8_t *copy = malloc(f->plen);
	memcpy(copy, f->p, f->plen);
	for (unsigned i = 0; i < n; i++)
		copy[(part ? f->part : 0) + off + i] = (uint8_t)(v >> (8 * i));
	int rc = snap_load(t, copy, f->plen, false);
	free(copy);
	return rc;
}

/* A fresh device (nothing negotiated) on its own back end and loop, the
 * MAC its back end's name gives, over a copy of @from's guest memory,
 * the driver's shadows where @from's are. */
static void setup_restored(struct tnet *t, struct tnet *from)
{
	memset(t, 0, sizeof(*t));
	if (guest_mem_init(&t->mem, MEM_SIZE, MEM_SIZE, MEM_SIZE) || loop_init(&t->loop) ||
	    net_mem_init(&t->m, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL))
		abort();
	char err[160];
	if (virtio_net_init(&t->n, &t->m.be, false, NULL, &t->mem, &t->loop, err, sizeof(err)))
		abort();
	dev(t)->tops = &vf_tops;
	memcpy(hva(t, 0, MEM_SIZE), hva(from, 0, MEM_SIZE), MEM_SIZE);
	t->rx = from->rx;
	t->tx = from->tx;
	t->ctrl = from->ctrl;
	t->rx.mem = t->tx.mem = t->ctrl.mem = &t->mem;
	t->rx.dev = t->tx.dev = t->ctrl.dev = dev(t);
	t->bump = from->bump;
	vf_replay_pending = 0;
	vf_queue_signals = vf_config_signals = 0;
}

static void cfg_mac(struct tnet *t, uint8_t mac[6])
{
	pthread_mutex_lock(&dev(t)->lock);
	dev(t)->ops->config_read(dev(t), VIRTIO_NET_CFG_MAC, mac, 6);
	pthread_mutex_unlock(&dev(t)->lock);
}

/* @a up with every feature (MRG_RXBUF) and a TX limiter of one frame an
 * hour: frame 0 sent, frame 1 held; a 5012-byte frame received into two
 * 1000-byte buffers (*@b0 the first), waiting for more; then paused.
 * *@rx_heads the two receive chains, *@len the transmitted frames' length. */
static void snap_busy(struct tnet *a, uint16_t rx_heads[2], size_t *len, uint64_t *b0)
{
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = HOUR_MS}};
	setup_limited(a, 0, NULL, &c);
	*len = post_numbered_tx(a, 0, 2, 100);
	notify(a, VIRTIO_NET_TXQ);
	CHECK(a->n.tx_held);
	rx_heads[0] = a->rx.next_desc;
	*b0 = post_rx(a, 1000);
	rx_heads[1] = a->rx.next_desc;
	post_rx(a, 1000);
	size_t l = mk_frame(frame_buf, 0, 0, 5000, 7);
	net_mem_inject(&a->m, frame_buf, l);
	pump(a);
	CHECK(a->n.rx_pending);
	CHECK_EQ(a->n.rx_nheads, 2);
	pause_dev(a);
}

TEST(snapshot_round_trip_keeps_held_frames_both_ways)
{
	static struct tnet a, b;
	uint16_t rxh[2];
	size_t txlen;
	uint64_t b0;
	snap_busy(&a, rxh, &txlen, &b0);
	CHECK(sent_are(&a, 0, 1, txlen));
	struct snapfile f;
	snap_save(&a, &f);
	/* the part: 16 bytes, the frame's 10, two chains of 6, the header,
	 * the 5012 - 2000 bytes not placed */
	CHECK_EQ(f.plen - f.part, 16 + 10 + 12 + HDR + 3012);

	setup_restored(&b, &a);
	uint8_t mac_a[6], mac_b[6];
	cfg_mac(&a, mac_a);
	cfg_mac(&b, mac_b);
	CHECK(memcmp(mac_a, mac_b, 6) != 0);
	for (size_t n = 0; n < f.plen; n++)
		CHECK_EQ(snap_load(&b, f.p, n, false), -EINVAL);
	uint8_t *longer = calloc(1, f.plen + 1);
	memcpy(longer, f.p, f.plen);
	CHECK_EQ(snap_load(&b, longer, f.plen + 1, false), -EINVAL);
	free(longer);
	CHECK_EQ(dev(&b)->status, 0);

	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	cfg_mac(&b, mac_b);
	CHECK(!memcmp(mac_a, mac_b, 6)); /* the guest's MAC, not the new tap's */
	uint8_t st[2];
	dev(&b)->ops->config_read(dev(&b), VIRTIO_NET_CFG_STATUS, st, 2);
	CHECK_EQ(st[0], VIRTIO_NET_S_LINK_UP);
	CHECK(b.n.tx_held);
	CHECK(b.n.rx_pending);
	CHECK_EQ(b.n.rx_nheads, 2);
	CHECK_EQ(vf_config_signals, 0); /* the link did not change */
	/* the restart: offloads onto the new back end, then both queues */
	while (pump(&b))
		;
	CHECK_EQ(b.m.offloads, a.m.offloads);
	CHECK(b.m.offloads != 0);
	vf_run_replays(dev(&b));
	CHECK(!b.n.tx_held);
	CHECK(sent_are(&b, 1, 1, txlen)); /* the held frame, once */
	CHECK(b.n.rx_pending);          /* still waiting for buffers */
	uint64_t more[6];
	for (int i = 0; i < 6; i++)
		more[i] = post_rx(&b, 1000);
	notify(&b, VIRTIO_NET_RXQ);
	CHECK(!b.n.rx_pending);
	CHECK_EQ(vf_used_idx(&b.rx), 6);
	CHECK_EQ(vf_used_id(&b.rx, 0), rxh[0]);
	CHECK_EQ(vf_used_id(&b.rx, 1), rxh[1]);
	CHECK_EQ(hva(&b, b0, 12)[10], 6); /* num_buffers */
	size_t l = mk_frame(frame_buf, 0, 0, 5000, 7);
	CHECK(memcmp(hva(&b, b0 + HDR, 1000 - HDR), frame_buf + HDR, 1000 - HDR) == 0);
	CHECK(memcmp(hva(&b, more[2], 1000), frame_buf + 4000, 1000) == 0);
	CHECK(memcmp(hva(&b, more[3], 12), frame_buf + 5000, 12) == 0);
	CHECK_EQ(vf_used_len(&b.rx, 5), l - 5000);
	CHECK_EQ(count_not_cc(&b, more[4], 1000), 0);
	CHECK_EQ(b.m.recv_frames, 0); /* from the snapshot, not the new tap */
	CHECK_EQ(b.n.metrics.rx_packets_count, 1);
	CHECK(!dev(&b)->broken);
	/* the original still has both after its resume */
	resume_dev(&a);
	CHECK(a.n.tx_held);
	CHECK(a.n.rx_pending);
	free(f.buf);
	teardown(&b);
	teardown(&a);
}

TEST(snapshot_round_trip_of_a_buffer_taken_and_a_link_that_came_back)
{
	static struct tnet a, b;
	setup(&a, 0);
	uint16_t h = a.rx.next_desc;
	uint64_t g = post_rx(&a, 2048);
	notify(&a, VIRTIO_NET_RXQ);
	CHECK(a.n.rx_have_c0);
	virtio_net_backend_ready(&a.n, EPOLLERR); /* the tap went away */
	CHECK(!a.n.link_up);
	pause_dev(&a);
	struct snapfile f;
	snap_save(&a, &f);
	CHECK_EQ(f.plen - f.part, 16);
	setup_restored(&b, &a);
	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	CHECK(b.n.rx_have_c0);
	/* the new tap works: the driver is told at the restart */
	CHECK_EQ(vf_config_signals, 1);
	uint8_t st[2];
	dev(&b)->ops->config_read(dev(&b), VIRTIO_NET_CFG_STATUS, st, 2);
	CHECK_EQ(st[0], VIRTIO_NET_S_LINK_UP);
	CHECK_EQ(dev(&b)->config_generation, dev(&a)->config_generation + 1);
	while (pump(&b))
		;
	vf_run_replays(dev(&b));
	CHECK(b.n.rx_armed);
	/* a frame from the new tap lands in the buffer the device held */
	size_t len = mk_frame(frame_buf, 0, 0, 600, 5);
	CHECK_EQ(net_mem_inject(&b.m, frame_buf, len), 0);
	while (pump(&b))
		;
	CHECK_EQ(vf_used_idx(&b.rx), 1);
	CHECK_EQ(vf_used_id(&b.rx, 0), h);
	CHECK(memcmp(hva(&b, g + HDR, 600), frame_buf + HDR, 600) == 0);
	free(f.buf);
	teardown(&b);
	teardown(&a);
}

TEST(snapshot_refusals)
{
	static struct tnet a, b;
	uint16_t rxh[2];
	size_t txlen;
	uint64_t b0;
	snap_busy(&a, rxh, &txlen, &b0);
	uint16_t txh = a.n.tx_chain.head;
	struct snapfile f;
	snap_save(&a, &f);
	setup_restored(&b, &a);
	CHECK_EQ(snap_load_patched(&b, &f, true, 0, 1, 0x03), -EINVAL);
	CHECK(strstr(serr, "multicast") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 0, 6, 0), -EINVAL);
	CHECK(strstr(serr, "zero") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 6, 2, 4), -EINVAL);
	CHECK(strstr(serr, "status") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 6, 2, 0), 0); /* link down: fine */
	/* ANNOUNCE waiting for the driver's ack: fine, it accepted
	 * GUEST_ANNOUNCE */
	CHECK_EQ(snap_load_patched(&b, &f, true, 6, 2, 3), 0);
	CHECK_EQ(snap_load_patched(&b, &f, true, 8, 2, 1500), -EINVAL);
	CHECK(strstr(serr, "MTU") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 10, 1, 2), -EINVAL);
	CHECK(strstr(serr, "TX held") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 11, 1, 3), -EINVAL);
	CHECK(strstr(serr, "RX state") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 12, 2, QSIZE), -EINVAL);
	CHECK(strstr(serr, "TX head") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 14, 2, 1), -EINVAL); /* RX head with a frame */
	CHECK(strstr(serr, "RX head") != NULL);
	/* the frame */
	CHECK_EQ(snap_load_patched(&b, &f, true, 16, 4, 20), -EINVAL);
	CHECK(strstr(serr, "frame length") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 20, 4, 8), -EINVAL);
	CHECK(strstr(serr, "shorter than the header") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 24, 2, 0), -EINVAL);
	CHECK(strstr(serr, "chain count") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 24, 2, QSIZE + 1), -EINVAL);
	CHECK(strstr(serr, "chains") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 28, 4, 999), -EINVAL);
	CHECK(strstr(serr, "first chain") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 34, 4, 0), -EINVAL);
	CHECK(strstr(serr, "further chain") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 32, 2, rxh[0]), -EINVAL);
	CHECK(strstr(serr, "twice") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 32, 2, QSIZE), -EINVAL);
	CHECK(strstr(serr, "out of range") != NULL);
	/* against the queues: heads not in flight, in flight but not held */
	CHECK_EQ(snap_load_patched(&b, &f, true, 12, 2, (uint16_t)(txh + 1)), -EINVAL);
	CHECK(strstr(serr, "transmit queue") != NULL);
	CHECK_EQ(snap_load_patched(&b, &f, true, 10, 4, 0x02u << 8), -EINVAL); /* TX not held */
	CHECK(strstr(serr, "transmit queue") != NULL);
	/* the driver gave up (FAILED) with three chains in flight: not live,
	 * the device holds none, and that loads (the fuzzer's find: refused) */
	uint8_t *failed = vf_failed_payload(f.p, f.part + 16);
	memset(failed + f.part + 10, 0, 6); /* nothing held, no frame */
	CHECK_EQ(snap_load(&b, failed, f.part + 16, false), 0);
	free(failed);
	CHECK_EQ(snap_load_patched(&b, &f, true, 32, 2, (uint16_t)(rxh[1] + 1)), -EINVAL);
	CHECK(strstr(serr, "receive queue") != NULL);
	/* a frame in two chains for a driver without MRG_RXBUF (the core's
	 * accepted features at offset 16 of the payload) */
	uint64_t drv = dev(&a)->driver_features & ~F(VIRTIO_NET_F_MRG_RXBUF);
	CHECK_EQ(snap_load_patched(&b, &f, false, 16, 8, drv), -EINVAL);
	CHECK(strstr(serr, "MRG_RXBUF") != NULL);
	CHECK_EQ(dev(&b)->status, 0);
	/* the frame's first buffer changed size in guest memory: broken */
	vf_desc(&b.mem, RX_DESC, rxh[0], b0, 900, VIRTQ_DESC_F_WRITE, 0);
	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	CHECK(dev(&b)->broken);
	CHECK(!b.n.rx_pending);
	/* broken so, with three chains in flight, it holds none and saves a
	 * state that loads (was refused: "1 chains in flight on the transmit
	 * queue, the device holds 0"); restored broken, it sends and receives
	 * nothing until the driver resets it */
	static struct tnet c;
	struct snapfile g;
	snap_save(&b, &g);
	CHECK_EQ(g.plen - g.part, 16); /* TX held 0, RX state 0: no frame */
	CHECK_EQ(g.p[g.part + 10] | g.p[g.part + 11], 0);
	setup_restored(&c, &b);
	CHECK_EQ(snap_load(&c, g.p, g.plen, true), 0);
	CHECK(!c.n.tx_held && !c.n.rx_pending && !c.n.rx_have_c0);
	CHECK_EQ(dev(&c)->vqs[VIRTIO_NET_TXQ].inflight, 1);
	notify(&c, VIRTIO_NET_TXQ);
	while (pump(&c))
		;
	CHECK(sent_are(&c, 0, 0, 0));
	CHECK(vf_broken_until_reset(dev(&c), &c.rx, VIRTIO_NET_RXQ, 2));
	free(g.buf);
	teardown(&c);
	free(f.buf);
	teardown(&b);
	teardown(&a);
}

TEST(snapshot_keeps_announce_and_the_control_queue)
{
	static struct tnet a, b;
	setup(&a, 0);
	a.n.announce_gap_ms = HOUR_MS;
	/* one command answered (the control queue's indices moved), then
	 * ANNOUNCE set and not acked yet */
	uint64_t ack;
	post_cmd(&a, VIRTIO_NET_CTRL_RX, 0, 1, &ack);
	notify(&a, VIRTIO_NET_CTRLQ);
	CHECK_EQ(vf_used_idx(&a.ctrl), 1);
	CHECK_EQ(virtio_net_announce(&a.n), 0);
	pause_dev(&a);
	struct snapfile f;
	snap_save(&a, &f);
	CHECK_EQ(f.plen - f.part, 16);
	CHECK_EQ(f.p[f.part + 6], VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
	setup_restored(&b, &a);
	CHECK_EQ(snap_load(&b, f.p, f.plen, true), 0);
	CHECK_EQ(cfg_status(&b), VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
	const struct virtq *q = &dev(&b)->vqs[VIRTIO_NET_CTRLQ];
	CHECK(q->active);
	CHECK_EQ(q->last_avail, 1);
	CHECK_EQ(q->used_idx, 1);
	CHECK_EQ(vf_config_signals, 0); /* the driver had its interrupt */
	while (pump(&b))
		;
	vf_run_replays(dev(&b));
	/* the restored driver acks on the restored queue */
	uint16_t h = post_cmd(&b, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, 0, &ack);
	notify(&b, VIRTIO_NET_CTRLQ);
	CHECK_EQ(vf_used_idx(&b.ctrl), 2);
	CHECK_EQ(vf_used_id(&b.ctrl, 1), h);
	CHECK_EQ(byte_at(&b, ack), VIRTIO_NET_OK);
	CHECK_EQ(cfg_status(&b), VIRTIO_NET_S_LINK_UP);
	/* refused: ANNOUNCE for a driver that did not accept GUEST_ANNOUNCE
	 * (the core's accepted features at offset 16 of the payload) */
	uint64_t drv = dev(&a)->driver_features & ~F(VIRTIO_NET_F_GUEST_ANNOUNCE);
	CHECK_EQ(snap_load_patched(&b, &f, false, 16, 8, drv), -EINVAL);
	CHECK(strstr(serr, "ANNOUNCE") != NULL);
	/* refused: a control chain in flight (the device never holds one) */
	static struct virtio_dev_state core;
	struct snap_cursor c;
	snap_cursor_init(&c, f.p, f.plen);
	CHECK_EQ(virtio_dev_state_decode(&c, dev(&b), &core, serr, sizeof(serr)), 0);
	CHECK_EQ(virtio_net_state_decode(&c, &b.n, &net_st, serr, sizeof(serr)), 0);
	CHECK_EQ(virtio_net_state_check(&net_st, &core, serr, sizeof(serr)), 0);
	core.vqs[VIRTIO_NET_CTRLQ].ninflight = 1;
	CHECK_EQ(virtio_net_state_check(&net_st, &core, serr, sizeof(serr)), -EINVAL);
	CHECK(strstr(serr, "control queue") != NULL);
	free(f.buf);
	teardown(&b);
	teardown(&a);
}

TEST(snapshot_of_the_two_queue_layout_is_refused)
{
	/* A section of the version before (VIRTIO_SHARED_STATE_VERSION + 0)
	 * came from a device with two queues that offered neither CTRL_VQ nor
	 * GUEST_ANNOUNCE; its device part has today's layout.  The machine
	 * refuses its version (machine.c's VIRTIO_STATE_OPS); should one get
	 * past that, its core part does not fit this device either. */
	CHECK_EQ(VIRTIO_NET_STATE_VERSION, VIRTIO_SHARED_STATE_VERSION + 1);
	static struct tnet a, b;
	init_dev(&a, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL);
	const uint64_t ctrl = F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_GUEST_ANNOUNCE);
	drv_up(&a, all_features(&a) & ~ctrl);
	while (pump(&a))
		;
	uint64_t g = post_rx(&a, 2048);
	notify(&a, VIRTIO_NET_RXQ);
	CHECK(a.n.rx_have_c0);
	pause_dev(&a);
	/* that payload, as such a device wrote it */
	static struct virtio_dev_state core;
	CHECK_EQ(virtio_dev_state_get(dev(&a), &core), 0);
	CHECK_EQ(virtio_net_state_get(&a.n, &net_st), 0);
	core.num_queues = 2;
	core.device_features &= ~ctrl;
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "dev.0", VIRTIO_SHARED_STATE_VERSION);
	virtio_dev_state_encode(&core, &w);
	virtio_net_state_encode(&net_st, &w);
	snap_writer_section_end(&w);
	struct snapfile f;
	snapfile_from(&w, "dev.0", &f);
	setup_restored(&b, &a);
	CHECK_EQ(snap_load(&b, f.p, f.plen, false), -EINVAL);
	CHECK(strstr(serr, "2 queues saved, this device has 3") != NULL);
	/* today's section of the same device loads */
	struct snapfile f3;
	snap_save(&a, &f3);
	CHECK_EQ(snap_load(&b, f3.p, f3.plen, true), 0);
	CHECK(b.n.rx_have_c0);
	CHECK_EQ(b.n.rx_c0.segs[0].hva, hva(&b, g, 2048));
	free(f3.buf);
	free(f.buf);
	teardown(&b);
	teardown(&a);
}

/* ---- the tap back end ---- */

/* Open tap @name or say why the test is skipped (false). */
static bool tap_or_skip(const char *test, const char *name, struct net_backend **be)
{
	char err[256];
	int r = tap_open(be, name, err, sizeof(err));
	if (r == 0)
		return true;
	if (r == -ENOENT || r == -ENODEV || r == -ENXIO || r == -EPERM || r == -EACCES) {
		printf("  %s: skipped: %s\n", test, err);
		return false;
	}
	printf("  %s: tap_open: %s\n", test, err);
	CHECK(0);
	return false;
}

static void tap_name(char *buf, const char *tag)
{
	snprintf(buf, IFNAMSIZ, "vsr%s%d", tag, (int)(getpid() % 100000));
}

TEST(tap_rejects_bad_names)
{
	static const char *bad[] = {"", "0123456789abcdef", "a/b", "a:b", "tap%d", "a b",
				    "a\tb", ".", ".."};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct net_backend *be = (void *)1;
		char err[256] = "";
		CHECK_EQ(tap_open(&be, bad[i], err, sizeof(err)), -EINVAL);
		CHECK(be == NULL);
		CHECK(strstr(err, "tap name") != NULL);
	}
	/* through the device */
	struct virtio_net *n = calloc(1, sizeof(*n));
	struct guest_mem mem;
	CHECK_EQ(guest_mem_init(&mem, MIB, MIB, MIB), 0);
	char err[256] = "";
	CHECK_EQ(virtio_net_create(n, "bad/name", NULL, &mem, NULL, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "bad/name") != NULL);
	virtio_net_destroy(n); /* harmless after a failed create */
	guest_mem_destroy(&mem);
	free(n);
}

TEST(tap_open_probe_and_busy)
{
	char name[IFNAMSIZ];
	tap_name(name, "a");
	struct net_backend *be;
	if (!tap_or_skip("tap_open_probe_and_busy", name, &be))
		return;
	CHECK(be->fd >= 0);
	CHECK_STR(be->name, name);
	CHECK_EQ(be->tx_offloads, NET_OFFLOAD_ALL);
	CHECK(be->rx_offloads & NET_OFFLOAD_CSUM);
	CHECK_EQ(be->ops->set_offload(be, be->rx_offloads), 0);
	CHECK_EQ(be->ops->set_offload(be, 0), 0);
	CHECK_EQ(be->ops->set_offload(be, 1u << 7), -EINVAL);
	/* nothing to read on a fresh tap */
	uint8_t buf[128];
	struct iovec iov = {buf, sizeof(buf)};
	CHECK_EQ(be->ops->recv(be, &iov, 1), -EAGAIN);
	/* a second attach to the same tap: busy, with a clear message */
	struct net_backend *be2;
	char err[256] = "";
	CHECK_EQ(tap_open(&be2, name, err, sizeof(err)), -EBUSY);
	CHECK(strstr(err, name) != NULL);
	CHECK(strstr(err, "another process") != NULL);
	net_close(be);
	/* an existing non-tap interface */
	CHECK_EQ(tap_open(&be2, "lo", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "not a single-queue tap") != NULL);
}

/* Bring @name up; false if not permitted. */
static bool link_up(const char *name)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return false;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	bool ok = ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
	ifr.ifr_flags |= IFF_UP;
	ok = ok && ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
	close(s);
	return ok;
}

#define TEST_ETHERTYPE 0x88b5 /* IEEE 802 local experimental */

TEST(tap_moves_frames_both_ways)
{
	char name[IFNAMSIZ];
	tap_name(name, "b");
	struct net_backend *be;
	if (!tap_or_skip("tap_moves_frames_both_ways", name, &be))
		return;
	unsigned idx = if_nametoindex(name);
	int ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(TEST_ETHERTYPE));
	struct sockaddr_ll sll = {.sll_family = AF_PACKET,
				  .sll_protocol = htons(TEST_ETHERTYPE),
				  .sll_ifindex = (int)idx};
	if (!idx || ps < 0 || !link_up(name) ||
	    bind(ps, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		printf("  tap_moves_frames_both_ways: skipped: no packet socket or link "
		       "control here\n");
		if (ps >= 0)
			close(ps);
		net_close(be);
		return;
	}
	/* guest -> host: our frame appears on the interface */
	uint8_t f[HDR + 64];
	memset(f, 0, sizeof(f));
	memset(f + HDR, 0xff, 6);                                   /* dst: broadcast */
	memcpy(f + HDR + 6, (uint8_t[]){0x02, 1, 2, 3, 4, 5}, 6);  /* src */
	f[HDR + 12] = TEST_ETHERTYPE >> 8;
	f[HDR + 13] = TEST_ETHERTYPE & 0xff;
	for (int i = 14; i < 64; i++)
		f[HDR + i] = (uint8_t)i;
	struct iovec iov[2] = {{f, HDR}, {f + HDR, 64}};
	CHECK_EQ(be->ops->send(be, iov, 2), (ssize_t)sizeof(f));
	struct pollfd p = {.fd = ps, .events = POLLIN};
	uint8_t got[256];
	CHECK_EQ(poll(&p, 1, 2000), 1);
	CHECK_EQ(recv(ps, got, sizeof(got), MSG_DONTWAIT), 64);
	CHECK(memcmp(got, f + HDR, 64) == 0);

	/* host -> guest: a frame sent on the interface comes out of the fd
	 * with a (plain) virtio-net header */
	uint8_t out[64];
	memcpy(out, f + HDR, 64);
	out[20] = 0x5a;
	struct sockaddr_ll to = sll;
	to.sll_halen = 6;
	memset(to.sll_addr, 0xff, 6);
	CHECK_EQ(sendto(ps, out, sizeof(out), 0, (struct sockaddr *)&to, sizeof(to)), 64);
	struct pollfd pt = {.fd = be->fd, .events = POLLIN};
	bool found = false;
	for (int tries = 0; tries < 50 && !found; tries++) {
		if (poll(&pt, 1, 100) != 1)
			continue;
		uint8_t hdr[HDR], data[2048];
		struct iovec riov[2] = {{hdr, HDR}, {data, sizeof(data)}};
		ssize_t n;
		while ((n = be->ops->recv(be, riov, 2)) > 0) {
			/* the kernel may send its own frames (IPv6 etc.) */
			if (n == HDR + 64 && !memcmp(data, out, 64)) {
				found = true;
				CHECK_EQ(hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM, 0);
				CHECK_EQ(hdr[1], VIRTIO_NET_HDR_GSO_NONE);
			}
		}
	}
	CHECK(found);
	/* a frame longer than the iovecs: reported with its full length */
	CHECK_EQ(sendto(ps, out, sizeof(out), 0, (struct sockaddr *)&to, sizeof(to)), 64);
	found = false;
	for (int tries = 0; tries < 50 && !found; tries++) {
		if (poll(&pt, 1, 100) != 1)
			continue;
		uint8_t small[HDR + 20];
		struct iovec siov = {small, sizeof(small)};
		ssize_t n;
		while ((n = be->ops->recv(be, &siov, 1)) > 0)
			if (!memcmp(small + HDR, out, 20) && n >= (ssize_t)sizeof(small))
				found = true;
	}
	CHECK(found);
	close(ps);
	net_close(be);
}

TEST(virtio_net_on_a_tap)
{
	char name[IFNAMSIZ];
	tap_name(name, "c");
	struct net_backend *probe;
	if (!tap_or_skip("virtio_net_on_a_tap", name, &probe))
		return;
	net_close(probe); /* the tap (not persistent) is gone again */
	struct tnet *t = calloc(1, sizeof(*t));
	CHECK_EQ(guest_mem_init(&t->mem, MEM_SIZE, MEM_SIZE, MEM_SIZE), 0);
	CHECK_EQ(loop_init(&t->loop), 0);
	char err[256] = "";
	CHECK_EQ(virtio_net_create(&t->n, name, NULL, &t->mem, &t->loop, err, sizeof(err)), 0);
	CHECK(t->n.be_watched);
	uint8_t mac[6];
	net_default_mac(name, 0, mac);
	CHECK(memcmp(t->n.mac, mac, 6) == 0);
	CHECK(dev(t)->device_features & F(VIRTIO_NET_F_GUEST_CSUM));
	CHECK(dev(t)->device_features & F(VIRTIO_NET_F_HOST_TSO4));

	/* a driver with every offload: TUNSETOFFLOAD on the loop */
	t->bump = BUF_GPA;
	vf_queue_signals = vf_config_signals = 0;
	vf_drv_init(&t->rx, &t->mem, dev(t), QSIZE, RX_DESC, RX_AVAIL, RX_USED);
	vf_drv_init(&t->tx, &t->mem, dev(t), QSIZE, TX_DESC, TX_AVAIL, TX_USED);
	vf_drv_init(&t->ctrl, &t->mem, dev(t), QSIZE, CTRL_DESC, CTRL_AVAIL, CTRL_USED);
	drv_up(t, all_features(t));
	while (pump(t))
		;
	CHECK(!dev(t)->broken);
	CHECK_EQ(t->n.offloads, t->n.be->rx_offloads);

	unsigned idx = if_nametoindex(name);
	int ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(TEST_ETHERTYPE));
	struct sockaddr_ll sll = {.sll_family = AF_PACKET,
				  .sll_protocol = htons(TEST_ETHERTYPE),
				  .sll_ifindex = (int)idx};
	if (!idx || ps < 0 || !link_up(name) ||
	    bind(ps, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		printf("  virtio_net_on_a_tap: data path skipped: no packet socket or link "
		       "control here\n");
		goto out;
	}
	/* host -> guest */
	uint8_t eth[64];
	memset(eth, 0xff, 6);
	memcpy(eth + 6, t->n.mac, 6);
	eth[12] = TEST_ETHERTYPE >> 8;
	eth[13] = TEST_ETHERTYPE & 0xff;
	for (int i = 14; i < 64; i++)
		eth[i] = (uint8_t)(i * 3);
	for (int i = 0; i < 16; i++)
		post_rx(t, 2048);
	notify(t, VIRTIO_NET_RXQ);
	struct sockaddr_ll to = sll;
	to.sll_halen = 6;
	memset(to.sll_addr, 0xff, 6);
	CHECK_EQ(sendto(ps, eth, sizeof(eth), 0, (struct sockaddr *)&to, sizeof(to)), 64);
	bool found = false;
	uint16_t seen = 0;
	for (int tries = 0; tries < 200 && !found; tries++) {
		struct pollfd p = {.fd = t->loop.epfd, .events = POLLIN};
		poll(&p, 1, 10);
		pump(t);
		/* the kernel may deliver its own frames (IPv6) as well */
		for (; seen != vf_used_idx(&t->rx); seen++) {
			uint16_t id = (uint16_t)vf_used_id(&t->rx, seen);
			uint32_t l = vf_used_len(&t->rx, seen);
			uint64_t addr;
			memcpy(&addr, hva(t, RX_DESC + 16ull * id, 8), 8);
			const uint8_t *b = hva(t, addr, 2048);
			if (l == HDR + 64 && !memcmp(b + HDR, eth, 64)) {
				found = true;
				CHECK_EQ(b[10], 1); /* num_buffers */
			}
		}
	}
	CHECK(found);
	/* guest -> host */
	size_t len = HDR + 64;
	memset(frame_buf, 0, HDR);
	memcpy(frame_buf + HDR, eth, 64);
	frame_buf[HDR + 40] = 0x77;
	post_tx(t, frame_buf, (uint32_t)len);
	notify(t, VIRTIO_NET_TXQ);
	CHECK_EQ(vf_used_idx(&t->tx), 1);
	CHECK_EQ(t->n.metrics.tx_packets_count, 1);
	found = false;
	for (int tries = 0; tries < 20 && !found; tries++) {
		struct pollfd p = {.fd = ps, .events = POLLIN};
		if (poll(&p, 1, 100) != 1)
			continue;
		uint8_t got[256];
		while (recv(ps, got, sizeof(got), MSG_DONTWAIT) == 64)
			if (!memcmp(got, frame_buf + HDR, 64))
				found = true;
	}
	CHECK(found);
	/* an announce with the driver gone: visor's RARP from the guest's
	 * MAC reaches the host side of the tap */
	int pr = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(VIRTIO_NET_ETH_P_RARP));
	struct sockaddr_ll rl = {.sll_family = AF_PACKET,
				 .sll_protocol = htons(VIRTIO_NET_ETH_P_RARP),
				 .sll_ifindex = (int)idx};
	CHECK(pr >= 0 && bind(pr, (struct sockaddr *)&rl, sizeof(rl)) == 0);
	dev_reset(t);
	t->n.announce_gap_ms = HOUR_MS;
	CHECK_EQ(virtio_net_announce(&t->n), 0);
	CHECK_EQ(t->n.metrics.announce_frames, 1);
	found = false;
	for (int tries = 0; tries < 20 && !found && pr >= 0; tries++) {
		struct pollfd p = {.fd = pr, .events = POLLIN};
		if (poll(&p, 1, 100) != 1)
			continue;
		uint8_t got[128];
		ssize_t l;
		while ((l = recv(pr, got, sizeof(got), MSG_DONTWAIT)) > 0)
			if (l == VIRTIO_NET_RARP_LEN && !memcmp(got + 6, t->n.mac, 6) &&
			    !memcmp(got + 22, t->n.mac, 6) && got[21] == 3)
				found = true;
	}
	CHECK(found);
	if (pr >= 0)
		close(pr);
out:
	if (ps >= 0)
		close(ps);
	virtio_net_destroy(&t->n);
	loop_destroy(&t->loop);
	guest_mem_destroy(&t->mem);
	free(t);
}

TEST_MAIN()
