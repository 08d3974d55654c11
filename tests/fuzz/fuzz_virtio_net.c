/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: virtio-net's data path (src/devices/virtio/
 * virtio_net.c) on the in-memory back end: transmit chains, frames
 * arriving from the host into the guest's receive buffers (mergeable or
 * not, every offload header), the control queue, announces, rate limits,
 * through the harness of fuzz_virtio.h (read its header for the input
 * format and the invariants every device target checks).  Queues: 0
 * receive, 1 transmit, 2 control.
 *
 * DEV operations (byte, then arguments):
 *   0 len hdr[12] n bytes   a frame arrives from the host: length len
 *                           (u16; bit 15 adds 64 KiB: too long), its
 *                           virtio-net header, then n frame bytes (the
 *                           rest zero)
 *   1                       the back end's fd is readable (the loop's call)
 *   2 e                     the back end refuses sends (0, EAGAIN, EIO)
 *   3 cfg cfg               RX and TX rate limiters
 *   4 t                     the fake clock advances t microseconds, both
 *                           limiters' timers fire
 *   5                       announce (virtio_net_announce)
 *   6 mtu                   offer an MTU (refused unless the status is 0)
 *   7                       take the frames sent to the host, checking each
 *   8                       the work eventfd's handler (virtio_net_continue)
 * Checks beyond the harness's: transmit and control chains come back with
 * 0 and at most 1 byte used; a frame the host gets is a 12-byte header
 * with num_buffers 0 and 14 to NET_MAX_FRAME bytes; the receive state is
 * consistent (a pending frame's placed bytes within its length, at most
 * VIRTIO_NET_QUEUE_MAX chains held); the back end only ever gets offloads
 * it supports; a receive buffer used for a frame starts with a header
 * whose num_buffers is 1 without MRG_RXBUF; and a model of the receive
 * side: the buffers of a frame (the first one's num_buffers of them, in
 * the used ring in a row) hold exactly a frame the host sent, after every
 * earlier one the guest got (frames are dropped, never reordered or
 * changed), its header's offload fields as sent and only flags it had
 * (unless the guest itself wrote into its buffers meanwhile: POKE).
 * Seeds: tests/fuzz/corpus-virtio_net.
 */
#include <stdlib.h>

#include "../../src/backends/net.h"
#include "../../src/util/bytes.h"
#include "../../src/devices/virtio/virtio_net.h"
#include "fuzz_virtio.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The frames the host sent, oldest first, until the guest gets them (or
 * a later one: the ones before were dropped). */
#define MODEL_MAX 64
static struct {
	uint32_t len;
	uint8_t *data;
} model[MODEL_MAX];
static unsigned model_n;
/* a frame being reassembled from the used receive buffers */
static uint8_t got[NET_HDR_LEN + NET_MAX_FRAME];
static uint32_t got_len;
static unsigned got_left; /* buffers of it still to come */
static uint64_t pokes_seen; /* the guest's own writes into its buffers */

static struct net_mem nm;
static struct virtio_net net;
static struct virtio_net_state nst;
static uint8_t frame[NET_HDR_LEN + NET_MAX_FRAME + 64 * 1024];

static void limiter(struct fz *in, struct rate_limiter_config *c)
{
	memset(c, 0, sizeof(*c));
	c->bandwidth.size = fz_u16(in);
	c->bandwidth.refill_time_ms = fz_u8(in);
	c->bandwidth.one_time_burst = fz_u8(in);
	c->ops.size = fz_u8(in) % 8;
	c->ops.refill_time_ms = fz_u8(in);
}

static void take_sent(void)
{
	static uint8_t buf[NET_HDR_LEN + NET_MAX_FRAME];
	ssize_t n;
	while ((n = net_mem_take_sent(&nm, buf, sizeof(buf))) >= 0) {
		FZ_CHECK(n >= NET_HDR_LEN + NET_MIN_FRAME && n <= NET_HDR_LEN + NET_MAX_FRAME);
		FZ_CHECK(buf[VIRTIO_NET_HDR_NUM_BUFFERS] == 0 &&
			 buf[VIRTIO_NET_HDR_NUM_BUFFERS + 1] == 0);
	}
}

static void model_drop(unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(model[i].data);
	memmove(model, model + n, (model_n - n) * sizeof(model[0]));
	model_n -= n;
}

static void net_forget(void)
{
	got_len = 0;
	got_left = 0;
	pokes_seen = fzh.pokes;
}

static void net_op(struct fz *in)
{
	switch (fz_u8(in) % 9) {
	case 0: {
		uint16_t l = fz_u16(in);
		size_t len = (l & 0x7fff) + ((l & 0x8000) ? 64 * 1024 : 0);
		if (len > sizeof(frame))
			len = sizeof(frame);
		memset(frame, 0, len);
		uint8_t hdr[NET_HDR_LEN] = {0};
		fz_bytes(in, hdr, sizeof(hdr));
		memcpy(frame, hdr, len < sizeof(hdr) ? len : sizeof(hdr));
		size_t n = fz_u8(in);
		if (n > len - (len < NET_HDR_LEN ? len : NET_HDR_LEN))
			n = len - (len < NET_HDR_LEN ? len : NET_HDR_LEN);
		fz_bytes(in, frame + NET_HDR_LEN, n);
		if (nm.rx_count < 64 && model_n < MODEL_MAX && !net_mem_inject(&nm, frame, len)) {
			model[model_n].len = (uint32_t)len;
			model[model_n].data = malloc(len ? len : 1);
			if (!model[model_n].data)
				abort();
			memcpy(model[model_n].data, frame, len);
			model_n++;
		}
		break;
	}
	case 1:
		virtio_net_backend_ready(&net, EPOLLIN);
		break;
	case 2: {
		static const int errs[3] = {0, EAGAIN, EIO};
		nm.send_errno = errs[fz_u8(in) % 3];
		break;
	}
	case 3: {
		struct rate_limiter_config rx, tx;
		limiter(in, &rx);
		limiter(in, &tx);
		(void)virtio_net_set_rate_limiters(&net, &rx, &tx);
		break;
	}
	case 4:
		fzh.clock_ns += (uint64_t)fz_u32(in) * 1000;
		if (net.rx_limited)
			fz_loop_fd(net.rx_limiter.timer_fd);
		if (net.tx_limited)
			fz_loop_fd(net.tx_limiter.timer_fd);
		break;
	case 5:
		(void)virtio_net_announce(&net);
		break;
	case 6:
		(void)virtio_net_set_mtu(&net, fz_u16(in));
		break;
	case 7:
		take_sent();
		break;
	case 8:
		virtio_net_continue(&net);
		break;
	}
}

static void net_check(void)
{
	FZ_CHECK(net.rx_nheads <= VIRTIO_NET_QUEUE_MAX);
	if (net.rx_pending) {
		FZ_CHECK(net.rx_nheads >= 1);
		FZ_CHECK(net.rx_placed <= net.rx_len);
		FZ_CHECK(net.rx_len <= NET_HDR_LEN + NET_MAX_FRAME);
		FZ_CHECK(!net.rx_have_c0);
	}
	FZ_CHECK(!(nm.offloads & ~nm.be.rx_offloads));
	FZ_CHECK(!net.tx_held || net.tx_limited);
	FZ_CHECK(net.config_len == VIRTIO_NET_CONFIG_SIZE_BASE ||
		 (net.mtu && net.config_len == VIRTIO_NET_CONFIG_SIZE));
}

static void net_quiet(void)
{
	struct iovec iov = {frame, sizeof(frame)};
	while (nm.be.ops->recv(&nm.be, &iov, 1) >= 0)
		;
	model_drop(model_n);
	net_forget();
	take_sent();
	nm.send_errno = 0;
	if (net.rx_limited || net.tx_limited) {
		struct rate_limiter_config none = {0};
		virtio_net_set_rate_limiters(&net, &none, &none);
	}
	(void)virtio_net_set_mtu(&net, 0);
	/* announce rounds left run out on the loop (gap 0) */
	for (int i = 0; i < 16 && net.announce_left; i++)
		fz_loop_fd(net.announce_fd);
	take_sent();
}

/* The writable bytes [0, len) of chain @c into got[got_len...]. */
static void gather(const struct fz_chain *c, uint32_t len)
{
	uint32_t room = (uint32_t)(sizeof(got) - got_len);
	got_len += fz_chain_read(c, got + got_len, len < room ? len : room);
}

/* A whole frame was delivered: the oldest frame the host sent with these
 * bytes (those before it were dropped), its header's offload fields as
 * sent, only the flags the driver may see. */
static void frame_delivered(void)
{
	for (unsigned i = 0; i < model_n; i++) {
		const uint8_t *m = model[i].data;
		if (model[i].len != got_len ||
		    memcmp(m + NET_HDR_LEN, got + NET_HDR_LEN, got_len - NET_HDR_LEN) ||
		    memcmp(m + 1, got + 1, VIRTIO_NET_HDR_NUM_BUFFERS - 1) ||
		    (got[VIRTIO_NET_HDR_FLAGS] & ~m[VIRTIO_NET_HDR_FLAGS]))
			continue;
		model_drop(i + 1);
		pokes_seen = fzh.pokes;
		return;
	}
	/* unless the guest rewrote bytes of its buffers meanwhile */
	if (pokes_seen != fzh.pokes) {
		pokes_seen = fzh.pokes;
		return;
	}
	fprintf(stderr, "fuzz: the guest got a frame of %u bytes the host never sent\n", got_len);
	FZ_CHECK(!"delivered frame");
}

static void net_used(uint16_t q, const struct fz_chain *c, uint32_t len)
{
	if (q == VIRTIO_NET_RXQ && (got_left || len)) {
		if (!got_left) {
			/* the first buffer of a frame: its header says how many */
			FZ_CHECK(len >= NET_HDR_LEN);
			got_len = 0;
			gather(c, len);
			got_left = get_le16(got + VIRTIO_NET_HDR_NUM_BUFFERS);
			FZ_CHECK(got_left >= 1);
		} else {
			FZ_CHECK(len >= 1);
			gather(c, len);
		}
		if (--got_left == 0)
			frame_delivered();
	}
	if (q == VIRTIO_NET_TXQ)
		FZ_CHECK(len == 0);
	else if (q == VIRTIO_NET_CTRLQ)
		FZ_CHECK(len <= 1);
	else if (len >= NET_HDR_LEN && !(net.vdev.driver_features & (1ull << VIRTIO_NET_F_MRG_RXBUF)) &&
		 c->nseg && c->seg[0].len >= NET_HDR_LEN && c->seg[0].write) {
		/* a frame in one buffer: num_buffers 1 */
		uint16_t nb = fz_get16(c->seg[0].gpa + VIRTIO_NET_HDR_NUM_BUFFERS);
		FZ_CHECK(nb == 1);
	}
}

static int net_save(struct snap_writer *w)
{
	int r = virtio_net_state_get(&net, &nst);
	if (!r)
		virtio_net_state_encode(&nst, w);
	return r;
}

static int net_load(struct snap_cursor *c, const struct virtio_dev_state *core, char *err,
		    size_t errlen)
{
	int r = virtio_net_state_decode(c, &net, &nst, err, errlen);
	return r ? r : virtio_net_state_check(&nst, core, err, errlen);
}

static int net_put(void)
{
	return virtio_net_state_put(&net, &nst);
}

static uint32_t net_budget(uint16_t q)
{
	if (q == VIRTIO_NET_TXQ)
		return VIRTIO_NET_TX_BUDGET;
	if (q == VIRTIO_NET_CTRLQ)
		return VIRTIO_NET_CTRL_BUDGET;
	return 0; /* receive: budgeted in frames, a frame may take many chains */
}

static struct fz_dev dev = {
	.nq = VIRTIO_NET_NUM_QUEUES,
	.op = net_op,
	.check = net_check,
	.quiet = net_quiet,
	.save = net_save,
	.load = net_load,
	.put = net_put,
	.on_used = net_used,
	.budget = net_budget,
	.forget = net_forget,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_global_init();
	static const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
	char err[160];
	if (net_mem_init(&nm, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL) ||
	    virtio_net_init(&net, &nm.be, false, mac, &fzh.mem, &fzh.loop, err, sizeof(err)))
		abort();
	net.limiter_clock = fz_clock;
	net.announce_gap_ms = 0;
	dev.d = &net.vdev;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_run(&dev, data, size);
	return 0;
}
