/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the virtio-mmio transport's register state machine
 * (src/devices/virtio/virtio_mmio.c with the core, virtio.c): every
 * register at any offset and width, status transitions in any order,
 * feature negotiation out of order, QueueSel naming no queue, QueueNum of
 * any value, ring addresses in halves, QueueReady taken back, resets in
 * mid-operation, notifications, InterruptStatus/ACK, the configuration
 * space, on a fresh MMIO bus per input with two devices: window 0 a fake
 * virtio device (tests/unit/virtio_fake.h: 2 queues, 24 bytes of config
 * space), window 1 a virtio-rng whose queue runs in a 64 KiB guest RAM;
 * notifications go through eventfds on an event loop, interrupts through
 * an irqfd (the recording platform of tests/unit/msi_fake.h).
 *
 * Input: 1 byte: n, then n * 256 bytes of guest RAM (at most 64 KiB),
 * then operations, each an opcode byte and its arguments (reads past the
 * end give 0):
 *   0 dev off w rw v       an access at off (u16 % 4 KiB) of window dev,
 *                          width 1/2/4/8
 *   1 dev reg v            a 32-bit write of register reg (an index into
 *                          the register table) with v
 *   2 dev feat num desc avail used   a driver's whole set-up of every
 *                          queue (QueueNum num, hostile ring addresses),
 *                          then DRIVER_OK
 *   3 n                    up to n events of the loop (notifications)
 *   4 dev                  the device raises a configuration change
 *   5 flags                snapshot of both transports and cores, decoded
 *                          and checked against the live ones (must pass);
 *                          bit 0: put back
 *   6 off n bytes          the guest writes its RAM
 *   7 dev                  the driver's interrupt handler: read
 *                          InterruptStatus, write it to InterruptACK
 * Checks after every operation: reads fill exactly their width; the
 * status is one the order allows and FEATURES_OK comes only with offered
 * features and VERSION_1; a ready queue has a valid size; a queue is
 * active only while DRIVER_OK is set (or a reset is pending) and was
 * ready; once DRIVER_OK is set no register changes a queue's geometry;
 * the core's queue select mirrors QueueSel; InterruptStatus has only its
 * two bits and every bit newly raised fired exactly one edge on the
 * irqfd (none otherwise); a notification reaches the device only while
 * it is live and the queue active.
 * Seeds: tests/fuzz/corpus-virtio_mmio.
 */
#include "../../src/devices/virtio/virtio_mmio.h"
#include "../../src/devices/virtio/virtio_rng.h"
#include "../unit/msi_fake.h"
#include "../unit/virtio_fake.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEM 0x10000u
#define NDEV 2

static struct guest_mem mem;
static struct loop lp;
static struct bus mmio;
static struct fake_plat fp;
static struct vf_dev fk;
static struct virtio_rng rng;
static struct virtio_mmio t[NDEV];
static struct virtio_dev *dv[NDEV];
static struct virtq geom[NDEV][VIRTIO_MAX_QUEUES];
static bool frozen[NDEV];
static uint64_t edges; /* read from the irqfd */
static bool several;   /* the operation was several register accesses */

static const uint16_t regs[] = {
	VIRTIO_MMIO_DEVICE_FEATURES_SEL, VIRTIO_MMIO_DRIVER_FEATURES,
	VIRTIO_MMIO_DRIVER_FEATURES_SEL, VIRTIO_MMIO_QUEUE_SEL,
	VIRTIO_MMIO_QUEUE_NUM,		 VIRTIO_MMIO_QUEUE_READY,
	VIRTIO_MMIO_QUEUE_NOTIFY,	 VIRTIO_MMIO_INTERRUPT_ACK,
	VIRTIO_MMIO_STATUS,		 VIRTIO_MMIO_QUEUE_DESC_LOW,
	VIRTIO_MMIO_QUEUE_DESC_HIGH,	 VIRTIO_MMIO_QUEUE_DRIVER_LOW,
	VIRTIO_MMIO_QUEUE_DRIVER_HIGH,	 VIRTIO_MMIO_QUEUE_DEVICE_LOW,
	VIRTIO_MMIO_QUEUE_DEVICE_HIGH,	 VIRTIO_MMIO_SHM_SEL,
	VIRTIO_MMIO_QUEUE_RESET,	 VIRTIO_MMIO_MAGIC_VALUE,
};
#define NREGS (sizeof(regs) / sizeof(regs[0]))

static void wreg(int dev, uint32_t off, uint32_t v)
{
	bus_access(&mmio, VIRTIO_MMIO_DEV_BASE(dev) + off, &v, 4, true);
}

static uint32_t rreg(int dev, uint32_t off)
{
	uint32_t v = 0;
	bus_access(&mmio, VIRTIO_MMIO_DEV_BASE(dev) + off, &v, 4, false);
	return v;
}

static uint64_t read_edges(void)
{
	uint64_t n = 0;
	if (fp.irqfd >= 0 && read(fp.irqfd, &n, sizeof(n)) != sizeof(n))
		n = 0;
	return n;
}

FZ_QUIET static void check(uint32_t before_status[NDEV])
{
	uint64_t e = read_edges();
	uint64_t want = 0;
	bool cleared = false;
	for (int i = 0; i < NDEV; i++) {
		struct virtio_dev *d = dv[i];
		uint32_t is = t[i].interrupt_status;
		FZ_CHECK(!(is & ~(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG)));
		want += (uint64_t)__builtin_popcount(is & ~before_status[i]);
		cleared = cleared || (before_status[i] & ~is);
		fz_check_status(d);
		FZ_CHECK(d->queue_sel == (t[i].queue_sel < d->num_queues ? t[i].queue_sel : 0xffff) ||
			 (d->queue_sel == 0 && t[i].queue_sel == 0));
		bool up = (d->status & VIRTIO_STATUS_DRIVER_OK) || d->reset_pending;
		for (uint16_t q = 0; q < d->num_queues; q++) {
			const struct virtq *vq = &d->vqs[q];
			FZ_CHECK(vq->size <= d->queue_max && !(vq->size & (vq->size - 1)));
			FZ_CHECK(!vq->ready || vq->size);
			FZ_CHECK(!vq->active || (up && vq->ready));
		}
		fz_check_geometry(d, geom[i], &frozen[i]);
		before_status[i] = is;
	}
	/* every bit raised fired one edge; without a bit cleared (a reset,
	 * an ACK) on the way, nothing else */
	FZ_CHECK(e >= want && (cleared || several || e == want));
	edges += e;
}

static void check_cb(void *st)
{
	check(st);
}

static void snapshot(uint8_t flags)
{
	static struct virtio_mmio_state ms[NDEV], mback[NDEV];
	static struct virtio_dev_state cs[NDEV], cback[NDEV];
	static struct virtio_rng_state rs, rback;
	struct fz_snap s;
	fz_snap_begin(&s, "fuzz.mmio");
	for (int i = 0; i < NDEV; i++) {
		if (virtio_mmio_state_get(&t[i], &ms[i]) == -EBUSY ||
		    virtio_dev_state_get(dv[i], &cs[i]) == -EBUSY) {
			fz_snap_abandon(&s);
			return; /* a reset in progress */
		}
		virtio_mmio_state_encode(&ms[i], &s.w);
		virtio_dev_state_encode(&cs[i], &s.w);
	}
	FZ_CHECK(virtio_rng_state_get(&rng, &rs) == 0);
	virtio_rng_state_encode(&rs, &s.w);
	fz_snap_reopen(&s);
	int r = 0;
	for (int i = 0; i < NDEV && !r; i++) {
		r = virtio_mmio_state_decode(&s.c, &t[i], &mback[i], s.err, sizeof(s.err));
		if (!r)
			r = virtio_dev_state_decode(&s.c, dv[i], &cback[i], s.err, sizeof(s.err));
		if (!r)
			r = virtio_mmio_state_check(&mback[i], &cback[i], s.err, sizeof(s.err));
	}
	if (!r)
		r = virtio_rng_state_decode(&s.c, &rng, &rback, s.err, sizeof(s.err));
	if (!r)
		r = virtio_rng_state_check(&rback, &cback[1], s.err, sizeof(s.err));
	fz_snap_end(&s, r, "virtio-mmio");
	if (flags & 1) {
		for (int i = 0; i < NDEV; i++) {
			FZ_CHECK(virtio_dev_state_put(dv[i], &cback[i]) == 0);
			FZ_CHECK(virtio_mmio_state_put(&t[i], &mback[i]) == 0);
		}
		FZ_CHECK(virtio_rng_state_put(&rng, &rback) == 0);
		for (int i = 0; i < NDEV; i++)
			virtio_dev_state_restart(dv[i]);
	}
	fz_snap_free(&s);
}

static void driver_setup(struct fz *in)
{
	int dev = fz_u8(in) % NDEV;
	uint32_t feat = fz_u32(in), num = fz_u32(in);
	uint64_t ring[3] = {fz_u64(in), fz_u64(in), fz_u64(in)};
	wreg(dev, VIRTIO_MMIO_STATUS, 0);
	frozen[dev] = false; /* a new driver: its geometry is new */
	wreg(dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wreg(dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wreg(dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wreg(dev, VIRTIO_MMIO_DRIVER_FEATURES, feat);
	wreg(dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wreg(dev, VIRTIO_MMIO_DRIVER_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
	wreg(dev, VIRTIO_MMIO_STATUS,
	     VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	for (uint32_t q = 0; q < dv[dev]->num_queues; q++) {
		wreg(dev, VIRTIO_MMIO_QUEUE_SEL, q);
		if (rreg(dev, VIRTIO_MMIO_QUEUE_READY))
			continue;
		wreg(dev, VIRTIO_MMIO_QUEUE_NUM, num);
		uint64_t a[3] = {ring[0] + 0x1000u * q, ring[1] + 0x1000u * q, ring[2] + 0x1000u * q};
		wreg(dev, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)a[0]);
		wreg(dev, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(a[0] >> 32));
		wreg(dev, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)a[1]);
		wreg(dev, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(a[1] >> 32));
		wreg(dev, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)a[2]);
		wreg(dev, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(a[2] >> 32));
		wreg(dev, VIRTIO_MMIO_QUEUE_READY, 1);
	}
	wreg(dev, VIRTIO_MMIO_STATUS,
	     VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		     VIRTIO_STATUS_DRIVER_OK);
}

static void op(struct fz *in, uint32_t st[NDEV])
{
	uint8_t o = fz_u8(in) % 8;
	several = o == 2 || o == 7;
	switch (o) {
	case 0: {
		int dev = fz_u8(in) % NDEV;
		uint32_t off = fz_u16(in) % VIRTIO_MMIO_WINDOW;
		uint8_t sel = fz_u8(in);
		uint32_t len = fz_widths[sel % 4];
		uint64_t a = VIRTIO_MMIO_DEV_BASE(dev) + off;
		if (sel & 4) {
			uint64_t v = fz_u64(in);
			bus_access(&mmio, a, &v, len, true);
		} else {
			(void)fz_read_checked(&mmio, a, len);
		}
		break;
	}
	case 1: {
		int dev = fz_u8(in) % NDEV;
		uint8_t r = fz_u8(in);
		wreg(dev, regs[r % NREGS], fz_u32(in));
		break;
	}
	case 2:
		driver_setup(in);
		break;
	case 3:
		fz_loop_notify(&lp, &fk, 1 + fz_u8(in) % 8u, check_cb, st);
		break;
	case 4:
		fz_config_changed(dv[fz_u8(in) % NDEV]);
		break;
	case 5:
		snapshot(fz_u8(in));
		break;
	case 6:
		fz_guest_write(in, mem.base, MEM);
		break;
	case 7: {
		int dev = fz_u8(in) % NDEV;
		wreg(dev, VIRTIO_MMIO_INTERRUPT_ACK, rreg(dev, VIRTIO_MMIO_INTERRUPT_STATUS));
		break;
	}
	}
	check(st);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_process_init(&mem, MEM, &lp);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = {data, size};
	struct fz ram = fz_take(&in, (size_t)fz_u8(&in) * 256);
	fz_ram_load(mem.base, MEM, ram.p, ram.n);

	bus_init(&mmio, "mmio");
	fp_init(&fp, NULL, &mmio);
	fp.p.loop = &lp;
	if (vf_dev_init(&fk, 1ull << 5, 24, "fake", VIRTIO_ID_BLOCK, 2, 256, &mem, &lp) ||
	    virtio_rng_init(&rng, &mem, NULL) ||
	    virtio_mmio_init(&t[0], &fk.vd, &fp.p, VIRTIO_MMIO_DEV_BASE(0), VIRTIO_MMIO_DEV_GSI(0)) ||
	    virtio_mmio_init(&t[1], &rng.vdev, &fp.p, VIRTIO_MMIO_DEV_BASE(1),
			     VIRTIO_MMIO_DEV_GSI(1)))
		abort();
	for (int i = 0; i < 24; i++)
		fk.config[i] = (uint8_t)(0xa0 + i);
	dv[0] = &fk.vd;
	dv[1] = &rng.vdev;
	memset(frozen, 0, sizeof(frozen));
	uint32_t st[NDEV] = {0, 0};
	while (in.n)
		op(&in, st);
	if (getenv("FZ_TRACE"))
		fprintf(stderr, "fake: status %#x notify %d/%d; rng: status %#x requests %llu; "
			"edges %llu\n",
			fk.vd.status, fk.notify_calls[0], fk.notify_calls[1], rng.vdev.status,
			(unsigned long long)rng.m.entropy_requests, (unsigned long long)edges);
	virtio_mmio_destroy(&t[0]);
	virtio_mmio_destroy(&t[1]);
	virtio_dev_destroy(&fk.vd);
	virtio_rng_destroy(&rng);
	fp_destroy(&fp);
	fz_loop_drain(&lp);
	return 0;
}
