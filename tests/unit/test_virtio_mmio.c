/* SPDX-License-Identifier: MIT */
#include "../../src/devices/virtio/virtio_mmio.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../src/arch/x86/aml.h"
#include "../../src/event/loop.h"
#include "test.h"
#include "loop_runner.h"
#include "virtio_fake.h"

/* ---- fake platform -------------------------------------------------------- */

struct fake_ioev {
	bool active;
	bool pio;
	uint64_t addr;
	uint32_t len;
	uint64_t datamatch;
	int efd;
};

struct fake_platform {
	struct platform p;
	struct bus mmio;
	bool irqfd_fail;
	int irqfd; /* handed out by irqfd_for_gsi */
	uint32_t irqfd_gsi;
	int irqfd_calls;
	int set_irq_calls;
	int levels[16];
	uint32_t set_irq_gsi;
	struct fake_ioev ioev[VIRTIO_MAX_QUEUES * 2];
	int ioev_adds, ioev_dels;
	bool ioev_fail;
};

static struct fake_platform *fp_of(struct platform *p)
{
	return container_of(p, struct fake_platform, p);
}

static void fp_set_irq(struct platform *p, uint32_t gsi, int level)
{
	struct fake_platform *fp = fp_of(p);
	if (fp->set_irq_calls < 16)
		fp->levels[fp->set_irq_calls] = level;
	fp->set_irq_calls++;
	fp->set_irq_gsi = gsi;
}

static int fp_irqfd_for_gsi(struct platform *p, uint32_t gsi, int *fd)
{
	struct fake_platform *fp = fp_of(p);
	fp->irqfd_calls++;
	if (fp->irqfd_fail)
		return -ENOSYS;
	if (fp->irqfd < 0)
		fp->irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	fp->irqfd_gsi = gsi;
	*fd = fp->irqfd;
	return 0;
}

static int fp_ioev_add(struct platform *p, bool pio, uint64_t addr, uint32_t len, uint64_t dm, int efd)
{
	struct fake_platform *fp = fp_of(p);
	if (fp->ioev_fail)
		return -ENOSPC;
	for (int i = 0; i < VIRTIO_MAX_QUEUES * 2; i++) {
		if (!fp->ioev[i].active) {
			fp->ioev[i] = (struct fake_ioev){true, pio, addr, len, dm, efd};
			fp->ioev_adds++;
			return 0;
		}
	}
	return -ENOSPC;
}

static int fp_ioev_del(struct platform *p, bool pio, uint64_t addr, uint32_t len, uint64_t dm, int efd)
{
	struct fake_platform *fp = fp_of(p);
	for (int i = 0; i < VIRTIO_MAX_QUEUES * 2; i++) {
		struct fake_ioev *e = &fp->ioev[i];
		if (e->active && e->pio == pio && e->addr == addr && e->len == len &&
		    e->datamatch == dm && e->efd == efd) {
			e->active = false;
			fp->ioev_dels++;
			return 0;
		}
	}
	return -ENOENT;
}

static const struct platform_ops fp_ops_full = {
	.set_irq = fp_set_irq,
	.irqfd_for_gsi = fp_irqfd_for_gsi,
	.ioeventfd_add_datamatch = fp_ioev_add,
	.ioeventfd_del_datamatch = fp_ioev_del,
};

static const struct platform_ops fp_ops_min = {
	.set_irq = fp_set_irq,
};

static void fp_init(struct fake_platform *fp, const struct platform_ops *ops, struct loop *l)
{
	memset(fp, 0, sizeof(*fp));
	fp->irqfd = -1;
	bus_init(&fp->mmio, "mmio");
	fp->p.ops = ops;
	fp->p.mmio = &fp->mmio;
	fp->p.loop = l;
}

static void fp_destroy(struct fake_platform *fp)
{
	if (fp->irqfd >= 0)
		close(fp->irqfd);
	fp->irqfd = -1;
}

/* ---- fake virtio device --------------------------------------------------- */

#define FAKE_FEATURES ((1ull << 0) | (1ull << 5) | (1ull << 40))
#define FAKE_CONFIG_SIZE 12
#define NQ 2
#define QMAX 256
#define BASE VIRTIO_MMIO_DEV_BASE(3)
#define GSI VIRTIO_MMIO_DEV_GSI(3)

static int fake_init(struct vf_dev *f, const char *name, uint32_t id, uint16_t nq, uint16_t qmax,
		     struct guest_mem *mem, struct loop *l)
{
	return vf_dev_init(f, FAKE_FEATURES, FAKE_CONFIG_SIZE, name, id, nq, qmax, mem, l);
}

/* ---- fixture ----------------------------------------------------------------- */

struct fix {
	struct guest_mem mem;
	struct fake_platform fp;
	struct vf_dev f;
	struct virtio_mmio t;
};

static void fix_init_ops(struct fix *x, const struct platform_ops *ops, struct loop *l)
{
	memset(x, 0, sizeof(*x));
	CHECK_EQ(guest_mem_init(&x->mem, 1 << 20, 0xc0000000ULL, 0x100000000ULL), 0);
	fp_init(&x->fp, ops, l);
	CHECK_EQ(fake_init(&x->f, "fake", VIRTIO_ID_RNG, NQ, QMAX, &x->mem, l), 0);
	for (int i = 0; i < FAKE_CONFIG_SIZE; i++)
		x->f.config[i] = (uint8_t)(0x10 + i);
	CHECK_EQ(virtio_mmio_init(&x->t, &x->f.vd, &x->fp.p, BASE, GSI), 0);
}

static void fix_init(struct fix *x)
{
	fix_init_ops(x, &fp_ops_full, NULL);
}

static void fix_destroy(struct fix *x)
{
	virtio_mmio_destroy(&x->t);
	virtio_dev_destroy(&x->f.vd);
	fp_destroy(&x->fp);
	guest_mem_destroy(&x->mem);
}

/* Accesses go through the bus at guest-physical addresses. */
static uint32_t rd(struct fix *x, uint64_t off)
{
	uint8_t b[4];
	CHECK(bus_access(&x->fp.mmio, BASE + off, b, 4, false));
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void wr(struct fix *x, uint64_t off, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	CHECK(bus_access(&x->fp.mmio, BASE + off, b, 4, true));
}

#define ACK VIRTIO_STATUS_ACKNOWLEDGE
#define DRV VIRTIO_STATUS_DRIVER
#define FOK VIRTIO_STATUS_FEATURES_OK
#define DOK VIRTIO_STATUS_DRIVER_OK

/* ring addresses for queue i inside the 1 MiB of RAM */
static uint64_t desc_of(int i) { return 0x10000 + (uint64_t)i * 0x10000; }
static uint64_t avail_of(int i) { return desc_of(i) + 0x4000; }
static uint64_t used_of(int i) { return desc_of(i) + 0x8000; }

/* §3.1.1 steps 1-6 through the registers. */
static void negotiate(struct fix *x)
{
	wr(x, VIRTIO_MMIO_STATUS, 0);
	wr(x, VIRTIO_MMIO_STATUS, ACK);
	wr(x, VIRTIO_MMIO_STATUS, ACK | DRV);
	wr(x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = rd(x, VIRTIO_MMIO_DEVICE_FEATURES);
	wr(x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	uint32_t hi = rd(x, VIRTIO_MMIO_DEVICE_FEATURES);
	wr(x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(x, VIRTIO_MMIO_DRIVER_FEATURES, lo);
	wr(x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(x, VIRTIO_MMIO_DRIVER_FEATURES, hi);
	wr(x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK);
	CHECK_EQ(rd(x, VIRTIO_MMIO_STATUS), ACK | DRV | FOK);
}

static void setup_queue(struct fix *x, uint32_t q, uint32_t num)
{
	wr(x, VIRTIO_MMIO_QUEUE_SEL, q);
	CHECK_EQ(rd(x, VIRTIO_MMIO_QUEUE_READY), 0);
	CHECK_EQ(rd(x, VIRTIO_MMIO_QUEUE_NUM_MAX), QMAX);
	wr(x, VIRTIO_MMIO_QUEUE_NUM, num);
	wr(x, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc_of((int)q));
	wr(x, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	wr(x, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail_of((int)q));
	wr(x, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
	wr(x, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used_of((int)q));
	wr(x, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
	wr(x, VIRTIO_MMIO_QUEUE_READY, 1);
}

static void bring_up(struct fix *x)
{
	negotiate(x);
	for (uint32_t q = 0; q < NQ; q++) {
		setup_queue(x, q, 128);
		CHECK_EQ(rd(x, VIRTIO_MMIO_QUEUE_READY), 1);
	}
	wr(x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
	CHECK_EQ(rd(x, VIRTIO_MMIO_STATUS), ACK | DRV | FOK | DOK);
}

static void signal_q(struct fix *x, uint16_t q)
{
	pthread_mutex_lock(&x->f.vd.lock);
	x->f.vd.tops->signal_queue(&x->f.vd, q);
	pthread_mutex_unlock(&x->f.vd.lock);
}

static void signal_cfg(struct fix *x)
{
	pthread_mutex_lock(&x->f.vd.lock);
	x->f.vd.tops->signal_config(&x->f.vd);
	pthread_mutex_unlock(&x->f.vd.lock);
}

static uint64_t efd_count(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		return 0;
	return v;
}

/* ---- tests -------------------------------------------------------------------- */

TEST(ids)
{
	struct fix x;
	fix_init(&x);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_VERSION), 2);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
	/* magic is "virt" in memory order */
	uint8_t b[4];
	CHECK(bus_access(&x.fp.mmio, BASE, b, 4, false));
	CHECK(memcmp(b, "virt", 4) == 0);
	CHECK(x.f.vd.transport == &x.t);
	CHECK(x.f.vd.tops != NULL);
	CHECK_EQ(x.t.irqfd, x.fp.irqfd);
	CHECK_EQ(x.fp.irqfd_gsi, GSI);
	/* window is exactly 4 KiB */
	CHECK(bus_find(&x.fp.mmio, BASE + 0xffc, 4) == &x.t.bus);
	CHECK(bus_find(&x.fp.mmio, BASE + 0x1000, 1) == NULL);
	CHECK(bus_find(&x.fp.mmio, BASE - 1, 1) == NULL);
	/* SHM: none */
	CHECK_EQ(rd(&x, VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffff);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_SHM_LEN_HIGH), 0xffffffff);
	wr(&x, VIRTIO_MMIO_SHM_SEL, 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffff);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_SHM_BASE_LOW), 0xffffffff);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_SHM_BASE_HIGH), 0xffffffff);
	fix_destroy(&x);
}

TEST(features)
{
	struct fix x;
	fix_init(&x);
	uint64_t offered = FAKE_FEATURES | (1ull << VIRTIO_F_VERSION_1) |
			   (1ull << VIRTIO_F_INDIRECT_DESC) | (1ull << VIRTIO_F_EVENT_IDX);
	wr(&x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_DEVICE_FEATURES), (uint32_t)offered);
	wr(&x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_DEVICE_FEATURES), (uint32_t)(offered >> 32));
	wr(&x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_DEVICE_FEATURES), 0);
	wr(&x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0xffffffff);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_DEVICE_FEATURES), 0);
	/* the selectors are write-only: read 0 */
	CHECK_EQ(rd(&x, VIRTIO_MMIO_DEVICE_FEATURES_SEL), 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_DRIVER_FEATURES), 0);

	/* written outside negotiation (status 0): ignored */
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES, 1);
	CHECK_EQ(x.f.vd.driver_features, 0);

	/* negotiate a subset: bit 5 and VERSION_1 */
	wr(&x, VIRTIO_MMIO_STATUS, ACK);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV);
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES, 1u << 5);
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 7); /* no such word: ignored */
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
	CHECK_EQ(x.f.vd.driver_features, (1ull << 5) | (1ull << VIRTIO_F_VERSION_1));
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_STATUS), ACK | DRV | FOK);
	/* after FEATURES_OK: ignored */
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES, 1u << 0);
	CHECK_EQ(x.f.vd.driver_features, (1ull << 5) | (1ull << VIRTIO_F_VERSION_1));

	/* unoffered bit, or no VERSION_1: FEATURES_OK does not stick */
	wr(&x, VIRTIO_MMIO_STATUS, 0);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV);
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES, 1u << 3);
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_STATUS) & FOK, 0);
	wr(&x, VIRTIO_MMIO_STATUS, 0);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV);
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(&x, VIRTIO_MMIO_DRIVER_FEATURES, 1u << 5);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_STATUS) & FOK, 0);
	fix_destroy(&x);
}

TEST(init_sequence_to_driver_ok)
{
	struct fix x;
	fix_init(&x);
	bring_up(&x);
	CHECK_EQ(x.f.activate_calls, 1);
	for (int q = 0; q < NQ; q++) {
		struct virtq *vq = &x.f.vd.vqs[q];
		CHECK(vq->ready);
		CHECK(vq->active);
		CHECK_EQ(vq->size, 128);
		CHECK_EQ(vq->desc_gpa, desc_of(q));
		CHECK_EQ(vq->avail_gpa, avail_of(q));
		CHECK_EQ(vq->used_gpa, used_of(q));
	}
	CHECK(!x.f.vd.broken);
	/* notify through the bus (no loop: delivered synchronously) */
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	CHECK_EQ(x.f.notify_calls[0], 1);
	CHECK_EQ(x.f.notify_calls[1], 2);
	/* 64-bit ring addresses are assembled from both halves */
	wr(&x, VIRTIO_MMIO_STATUS, 0);
	negotiate(&x);
	wr(&x, VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(&x, VIRTIO_MMIO_QUEUE_NUM, 8);
	wr(&x, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0x12);
	wr(&x, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x345000);
	wr(&x, VIRTIO_MMIO_QUEUE_DRIVER_LOW, 0x1000);
	wr(&x, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0xab);
	wr(&x, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0xffffffff);
	wr(&x, VIRTIO_MMIO_QUEUE_DEVICE_LOW, 0xfffff000);
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 1);
	CHECK_EQ(x.f.vd.vqs[0].desc_gpa, 0x1200345000ULL);
	CHECK_EQ(x.f.vd.vqs[0].avail_gpa, 0xab00001000ULL);
	CHECK_EQ(x.f.vd.vqs[0].used_gpa, 0xfffffffffffff000ULL);
	/* rings outside RAM: DRIVER_OK marks the device broken, config irq */
	uint64_t irqs = x.t.irqs;
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
	CHECK(x.f.vd.broken);
	CHECK(rd(&x, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	CHECK_EQ(x.t.irqs, irqs + 1);
	fix_destroy(&x);
}

TEST(queue_sel_out_of_range)
{
	static const uint32_t bad[] = {NQ, VIRTIO_MAX_QUEUES, 0x10000, 0x10001, 0x7fffffff, 0xffffffff};
	struct fix x;
	fix_init(&x);
	negotiate(&x);
	setup_queue(&x, 0, 64);
	struct virtq before[NQ];
	memcpy(before, x.f.vd.vqs, sizeof(before));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		wr(&x, VIRTIO_MMIO_QUEUE_SEL, bad[i]);
		/* "queue not available" (§4.2.2), what Linux probes */
		CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
		CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
		wr(&x, VIRTIO_MMIO_QUEUE_NUM, 16);
		wr(&x, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
		wr(&x, VIRTIO_MMIO_QUEUE_DRIVER_LOW, 0x2000);
		wr(&x, VIRTIO_MMIO_QUEUE_DEVICE_LOW, 0x3000);
		wr(&x, VIRTIO_MMIO_QUEUE_READY, 1);
		wr(&x, VIRTIO_MMIO_QUEUE_READY, 0);
		CHECK(memcmp(before, x.f.vd.vqs, sizeof(before)) == 0);
		/* 0x10001 is not queue 1 (QueueSel is 32 bits) */
		CHECK_EQ(x.f.vd.vqs[1].size, QMAX);
		CHECK_EQ(x.f.vd.vqs[1].desc_gpa, 0);
	}
	/* a valid selection still works afterwards */
	wr(&x, VIRTIO_MMIO_QUEUE_SEL, 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 1);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_NUM_MAX), QMAX);
	setup_queue(&x, 1, 32);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 1);
	CHECK_EQ(x.f.vd.vqs[1].size, 32);
	fix_destroy(&x);
}

TEST(queue_notify_out_of_range)
{
	static const uint32_t bad[] = {NQ, VIRTIO_MAX_QUEUES, 0x10000, 0x7fffffff, 0xffffffff};
	struct fix x;
	fix_init(&x);
	/* before DRIVER_OK: nothing reaches the device */
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	CHECK_EQ(x.f.notify_calls[0], 0);
	bring_up(&x);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, bad[i]);
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++)
		CHECK_EQ(x.f.notify_calls[q], 0);
	/* a broken device is not notified */
	pthread_mutex_lock(&x.f.vd.lock);
	virtio_dev_mark_broken(&x.f.vd, "test");
	pthread_mutex_unlock(&x.f.vd.lock);
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	CHECK_EQ(x.f.notify_calls[0], 0);
	fix_destroy(&x);
}

TEST(queue_num_invalid_refused)
{
	static const uint32_t bad[] = {0, 3, 100, QMAX + 1, QMAX * 2, 0x10000 + 8, 0x80000000,
				       0xffffffff};
	struct fix x;
	fix_init(&x);
	negotiate(&x);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setup_queue(&x, 0, bad[i]);
		CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
		CHECK(!x.f.vd.vqs[0].ready);
	}
	/* QueueReady values other than 0/1 are ignored */
	wr(&x, VIRTIO_MMIO_QUEUE_NUM, 64);
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 2);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 0xffffffff);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
	/* queue 1 valid (size 1 is a power of two), queue 0 left refused */
	setup_queue(&x, 1, 1);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 1);
	setup_queue(&x, 0, 3);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
	/* the refused queue is skipped at activation, the device runs */
	CHECK_EQ(rd(&x, VIRTIO_MMIO_STATUS), ACK | DRV | FOK | DOK);
	CHECK(!x.f.vd.broken);
	CHECK_EQ(x.f.activate_calls, 1);
	CHECK(!x.f.vd.vqs[0].active);
	CHECK(x.f.vd.vqs[1].active);
	CHECK_EQ(x.f.vd.vqs[1].size, 1);
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	CHECK_EQ(x.f.notify_calls[0], 0);
	CHECK_EQ(x.f.notify_calls[1], 1);
	/* the maximum itself is fine */
	wr(&x, VIRTIO_MMIO_STATUS, 0);
	negotiate(&x);
	setup_queue(&x, 0, QMAX);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 1);
	CHECK_EQ(x.f.vd.vqs[0].size, QMAX);
	fix_destroy(&x);
}

/* The registers write the virtq itself: there is no copy to get out of
 * step with it (issue 10, "both transports keep queue addresses in one
 * place"). */
TEST(queue_registers_write_the_virtq)
{
	struct fix x;
	fix_init(&x);
	negotiate(&x);
	struct virtq *vq = &x.f.vd.vqs[0];
	wr(&x, VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(&x, VIRTIO_MMIO_QUEUE_NUM, 32);
	CHECK_EQ(vq->size, 32);
	wr(&x, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
	wr(&x, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0x2);
	wr(&x, VIRTIO_MMIO_QUEUE_DRIVER_LOW, 0x3000);
	wr(&x, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0x4);
	CHECK_EQ(vq->desc_gpa, 0x200001000ULL);
	CHECK_EQ(vq->avail_gpa, 0x3000);
	CHECK_EQ(vq->used_gpa, 0x400000000ULL);
	CHECK(!vq->ready);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 1);
	CHECK(vq->ready);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 1);
	/* QueueReady reads the virtq: what the core does to it shows */
	vq->ready = false;
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
	vq->ready = true;
	/* taken back before DRIVER_OK: the geometry stays, and is writable */
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 0);
	CHECK(!vq->ready);
	CHECK_EQ(vq->size, 32);
	CHECK_EQ(vq->desc_gpa, 0x200001000ULL);
	wr(&x, VIRTIO_MMIO_QUEUE_NUM, 16);
	CHECK_EQ(vq->size, 16);
	/* the last QueueNum decides: valid then invalid cannot be enabled */
	wr(&x, VIRTIO_MMIO_QUEUE_NUM, 3);
	CHECK_EQ(vq->size, 0);
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 1);
	CHECK(!vq->ready);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
	/* a size of 2^16 + 8 is not 8 (the virtq's size is 16 bits) */
	wr(&x, VIRTIO_MMIO_QUEUE_NUM, 0x10000 + 8);
	CHECK_EQ(vq->size, 0);
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 1);
	CHECK(!vq->ready);
	/* invalid then valid can */
	wr(&x, VIRTIO_MMIO_QUEUE_NUM, 8);
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 1);
	CHECK(vq->ready);
	CHECK_EQ(vq->size, 8);
	/* the other queue was never touched */
	CHECK_EQ(x.f.vd.vqs[1].size, QMAX);
	CHECK(!x.f.vd.vqs[1].ready);
	CHECK_EQ(x.f.vd.vqs[1].desc_gpa, 0);
	fix_destroy(&x);
}

/* A driver that enables a queue without writing QueueNum gets the maximum
 * (QueueNumMax), as on virtio-pci: the core resets every queue to
 * queue_max.  The choice is documented in virtio_mmio.h. */
TEST(queue_enabled_without_queue_num_has_the_maximum_size)
{
	struct fix x;
	fix_init(&x);
	negotiate(&x);
	for (uint32_t q = 0; q < NQ; q++) {
		wr(&x, VIRTIO_MMIO_QUEUE_SEL, q);
		CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_NUM_MAX), QMAX);
		wr(&x, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc_of((int)q));
		wr(&x, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail_of((int)q));
		wr(&x, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used_of((int)q));
		wr(&x, VIRTIO_MMIO_QUEUE_READY, 1);
		CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 1);
	}
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
	CHECK(!x.f.vd.broken);
	for (int q = 0; q < NQ; q++) {
		CHECK(x.f.vd.vqs[q].active);
		CHECK_EQ(x.f.vd.vqs[q].size, QMAX);
	}
	/* a size written in one session does not outlive the reset */
	wr(&x, VIRTIO_MMIO_STATUS, 0);
	negotiate(&x);
	setup_queue(&x, 0, 16);
	CHECK_EQ(x.f.vd.vqs[0].size, 16);
	wr(&x, VIRTIO_MMIO_STATUS, 0);
	negotiate(&x);
	wr(&x, VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 1);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 1);
	CHECK_EQ(x.f.vd.vqs[0].size, QMAX);
	CHECK_EQ(x.f.vd.vqs[0].desc_gpa, 0);
	fix_destroy(&x);
}

TEST(geometry_locked_when_ready_or_live)
{
	struct fix x;
	fix_init(&x);
	negotiate(&x);
	setup_queue(&x, 0, 64);
	struct virtq v0 = x.f.vd.vqs[0];
	/* ready: geometry writes ignored */
	wr(&x, VIRTIO_MMIO_QUEUE_NUM, 128);
	wr(&x, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x50000);
	wr(&x, VIRTIO_MMIO_QUEUE_DESC_HIGH, 1);
	wr(&x, VIRTIO_MMIO_QUEUE_DRIVER_LOW, 0x60000);
	wr(&x, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 1);
	wr(&x, VIRTIO_MMIO_QUEUE_DEVICE_LOW, 0x70000);
	wr(&x, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 1);
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 1);
	CHECK(memcmp(&v0, &x.f.vd.vqs[0], sizeof(v0)) == 0);
	/* before DRIVER_OK the driver may take the queue back and redo it */
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
	CHECK(!x.f.vd.vqs[0].ready);
	setup_queue(&x, 0, 32);
	CHECK_EQ(x.f.vd.vqs[0].size, 32);
	setup_queue(&x, 1, 16);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
	CHECK(x.f.vd.vqs[0].active);
	/* after DRIVER_OK: every geometry write ignored, QueueReady = 0 too */
	v0 = x.f.vd.vqs[0];
	wr(&x, VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 0);
	wr(&x, VIRTIO_MMIO_QUEUE_NUM, 256);
	wr(&x, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x90000);
	wr(&x, VIRTIO_MMIO_QUEUE_DRIVER_LOW, 0x90000);
	wr(&x, VIRTIO_MMIO_QUEUE_DEVICE_LOW, 0x90000);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 1);
	CHECK(memcmp(&v0, &x.f.vd.vqs[0], sizeof(v0)) == 0);
	/* a queue that was not set up cannot be added after DRIVER_OK */
	wr(&x, VIRTIO_MMIO_STATUS, 0);
	negotiate(&x);
	setup_queue(&x, 0, 32);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
	setup_queue(&x, 1, 32);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
	CHECK(!x.f.vd.vqs[1].ready);
	CHECK(!x.f.vd.vqs[1].active);
	fix_destroy(&x);
}

TEST(status_out_of_order)
{
	struct fix x;
	fix_init(&x);
	/* DRIVER_OK without FEATURES_OK */
	wr(&x, VIRTIO_MMIO_STATUS, ACK);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | DOK);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_STATUS), ACK | DRV);
	CHECK_EQ(x.f.activate_calls, 0);
	/* DRIVER without ACKNOWLEDGE (from reset) */
	wr(&x, VIRTIO_MMIO_STATUS, 0);
	wr(&x, VIRTIO_MMIO_STATUS, DRV);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_STATUS), 0);
	/* bits above the 8-bit status: whole write ignored */
	wr(&x, VIRTIO_MMIO_STATUS, 0x100 | ACK);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_STATUS), 0);
	wr(&x, VIRTIO_MMIO_STATUS, 0xffffff00);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_STATUS), 0);
	CHECK_EQ(x.f.reset_calls, 1); /* only the explicit 0 above */
	/* FAILED then DRIVER_OK */
	negotiate(&x);
	setup_queue(&x, 0, 64);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | VIRTIO_STATUS_FAILED);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | VIRTIO_STATUS_FAILED | DOK);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_STATUS) & DOK, 0);
	CHECK(rd(&x, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FAILED);
	CHECK_EQ(x.f.activate_calls, 0);
	/* FAILED: no geometry changes either */
	wr(&x, VIRTIO_MMIO_QUEUE_SEL, 1);
	wr(&x, VIRTIO_MMIO_QUEUE_NUM, 64);
	wr(&x, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
	CHECK_EQ(x.f.vd.vqs[1].size, QMAX);
	CHECK_EQ(x.f.vd.vqs[1].desc_gpa, 0);
	/* reset recovers */
	wr(&x, VIRTIO_MMIO_STATUS, 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_STATUS), 0);
	bring_up(&x);
	CHECK_EQ(x.f.activate_calls, 1);
	fix_destroy(&x);
}

TEST(interrupts_irqfd)
{
	struct fix x;
	fix_init(&x);
	bring_up(&x);
	int fd = x.fp.irqfd;
	CHECK(fd >= 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	signal_q(&x, 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	CHECK_EQ(efd_count(fd), 1);
	/* still set: no new edge */
	signal_q(&x, 1);
	signal_q(&x, 0);
	CHECK_EQ(efd_count(fd), 0);
	/* a new bit: new edge */
	signal_cfg(&x);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
	CHECK_EQ(efd_count(fd), 1);
	/* ACK clears what is written */
	wr(&x, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	wr(&x, VIRTIO_MMIO_INTERRUPT_ACK, 0xfffffff0); /* unknown bits: no effect */
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	signal_q(&x, 0);
	CHECK_EQ(efd_count(fd), 1);
	wr(&x, VIRTIO_MMIO_INTERRUPT_ACK, 0xffffffff);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	CHECK_EQ(efd_count(fd), 0);
	/* InterruptACK is write-only, InterruptStatus read-only */
	signal_q(&x, 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_ACK), 0);
	wr(&x, VIRTIO_MMIO_INTERRUPT_STATUS, 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	CHECK_EQ(x.fp.set_irq_calls, 0);
	CHECK_EQ(x.t.irqs, 4);
	/* reset clears the status */
	wr(&x, VIRTIO_MMIO_STATUS, 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	fix_destroy(&x);
}

TEST(interrupts_set_irq_fallback)
{
	struct fix x;
	fix_init_ops(&x, &fp_ops_min, NULL);
	CHECK_EQ(x.t.irqfd, -1);
	bring_up(&x);
	signal_q(&x, 0);
	CHECK_EQ(x.fp.set_irq_calls, 2);
	CHECK_EQ(x.fp.levels[0], 1);
	CHECK_EQ(x.fp.levels[1], 0);
	CHECK_EQ(x.fp.set_irq_gsi, GSI);
	signal_q(&x, 0);
	CHECK_EQ(x.fp.set_irq_calls, 2);
	wr(&x, VIRTIO_MMIO_INTERRUPT_ACK, 1);
	signal_q(&x, 0);
	CHECK_EQ(x.fp.set_irq_calls, 4);
	fix_destroy(&x);

	/* irqfd_for_gsi failing: fall back too */
	memset(&x, 0, sizeof(x));
	CHECK_EQ(guest_mem_init(&x.mem, 1 << 20, 0xc0000000ULL, 0x100000000ULL), 0);
	fp_init(&x.fp, &fp_ops_full, NULL);
	x.fp.irqfd_fail = true;
	CHECK_EQ(fake_init(&x.f, "fake", VIRTIO_ID_RNG, NQ, QMAX, &x.mem, NULL), 0);
	CHECK_EQ(virtio_mmio_init(&x.t, &x.f.vd, &x.fp.p, BASE, GSI), 0);
	CHECK_EQ(x.t.irqfd, -1);
	bring_up(&x);
	signal_cfg(&x);
	CHECK_EQ(x.fp.set_irq_calls, 2);
	fix_destroy(&x);
}

TEST(config_generation_and_space)
{
	struct fix x;
	fix_init(&x);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_CONFIG_GENERATION), 0);
	pthread_mutex_lock(&x.f.vd.lock);
	x.f.vd.config_generation = 7;
	pthread_mutex_unlock(&x.f.vd.lock);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_CONFIG_GENERATION), 7);
	wr(&x, VIRTIO_MMIO_CONFIG_GENERATION, 0); /* read-only */
	CHECK_EQ(rd(&x, VIRTIO_MMIO_CONFIG_GENERATION), 7);

	/* reads of each width, forwarded with the config-relative offset */
	uint8_t b[8];
	memset(b, 0xee, sizeof(b));
	CHECK(bus_access(&x.fp.mmio, BASE + 0x101, b, 1, false));
	CHECK_EQ(b[0], 0x11);
	CHECK_EQ(b[1], 0xee);
	CHECK_EQ(x.f.last_cfg_off, 1);
	CHECK_EQ(x.f.last_cfg_len, 1);
	CHECK(bus_access(&x.fp.mmio, BASE + 0x102, b, 2, false));
	CHECK_EQ(b[0], 0x12);
	CHECK_EQ(b[1], 0x13);
	CHECK(bus_access(&x.fp.mmio, BASE + 0x104, b, 4, false));
	CHECK_EQ(b[0], 0x14);
	CHECK_EQ(b[3], 0x17);
	CHECK(bus_access(&x.fp.mmio, BASE + 0x108, b, 8, false));
	CHECK_EQ(b[0], 0x18);
	CHECK_EQ(b[3], 0x1b);
	CHECK_EQ(b[4], 0); /* past the config size */
	CHECK_EQ(b[7], 0);
	CHECK_EQ(x.f.last_cfg_off, 8);
	CHECK_EQ(x.f.last_cfg_len, 8);
	/* end of the window */
	memset(b, 0xee, sizeof(b));
	CHECK(bus_access(&x.fp.mmio, BASE + 0xff8, b, 8, false));
	for (int i = 0; i < 8; i++)
		CHECK_EQ(b[i], 0);
	CHECK_EQ(x.f.last_cfg_off, 0xef8);

	/* writes */
	int writes = x.f.cfg_writes;
	uint8_t v1 = 0xa1;
	CHECK(bus_access(&x.fp.mmio, BASE + 0x100, &v1, 1, true));
	uint16_t v2 = 0xb2c3;
	CHECK(bus_access(&x.fp.mmio, BASE + 0x102, &v2, 2, true));
	uint64_t v8 = 0x0102030405060708ULL;
	CHECK(bus_access(&x.fp.mmio, BASE + 0x104, &v8, 8, true));
	CHECK_EQ(x.f.cfg_writes, writes + 3);
	CHECK_EQ(x.f.config[0], 0xa1);
	CHECK_EQ(x.f.config[2], 0xc3);
	CHECK_EQ(x.f.config[3], 0xb2);
	CHECK_EQ(x.f.config[4], 0x08);
	CHECK_EQ(x.f.config[11], 0x01);
	CHECK_EQ(x.f.last_cfg_off, 4);
	CHECK_EQ(x.f.last_cfg_len, 8);

	/* device broken after DRIVER_OK: generation bumped, config interrupt */
	bring_up(&x);
	uint32_t gen = rd(&x, VIRTIO_MMIO_CONFIG_GENERATION);
	pthread_mutex_lock(&x.f.vd.lock);
	virtio_dev_mark_broken(&x.f.vd, "test");
	pthread_mutex_unlock(&x.f.vd.lock);
	CHECK(rd(&x, VIRTIO_MMIO_CONFIG_GENERATION) != gen);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	CHECK_EQ(efd_count(x.fp.irqfd), 1);
	fix_destroy(&x);
}

/* What an aligned 32-bit read at @off must return in the state bring_up()
 * + one used-buffer interrupt leaves. */
static uint32_t expected_reg(struct fix *x, uint32_t off)
{
	switch (off) {
	case 0x000: return 0x74726976;
	case 0x004: return 2;
	case 0x008: return VIRTIO_ID_RNG;
	case 0x00c: return VIRTIO_MMIO_VENDOR;
	case 0x010: return (uint32_t)(FAKE_FEATURES | (1ull << VIRTIO_F_INDIRECT_DESC) |
				      (1ull << VIRTIO_F_EVENT_IDX)); /* sel 0 */
	case 0x034: return QMAX;
	case 0x044: return 1;
	case 0x060: return VIRTIO_MMIO_INT_VRING;
	case 0x070: return ACK | DRV | FOK | DOK;
	case 0x0b0: case 0x0b4: case 0x0b8: case 0x0bc: return 0xffffffff;
	case 0x0fc: return x->f.vd.config_generation;
	default: return 0;
	}
}

TEST(every_width_every_offset)
{
	static const uint32_t widths[] = {1, 2, 4, 8};
	struct fix x;
	fix_init(&x);
	bring_up(&x);
	wr(&x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	wr(&x, VIRTIO_MMIO_QUEUE_SEL, 0);
	signal_q(&x, 0);
	(void)efd_count(x.fp.irqfd);

	uint64_t bad0 = x.t.bad_accesses;
	uint64_t nbad = 0;
	for (uint32_t off = 0; off < VIRTIO_MMIO_WINDOW; off++) {
		for (size_t w = 0; w < 4; w++) {
			uint32_t len = widths[w];
			uint8_t buf[16];
			memset(buf, 0xa5, sizeof(buf));
			bool hit = bus_access(&x.fp.mmio, BASE + off, buf, len, false);
			if (off + len > VIRTIO_MMIO_WINDOW) {
				CHECK(!hit); /* the bus does not split accesses */
				continue;
			}
			CHECK(hit);
			uint8_t want[8] = {0};
			if (off >= VIRTIO_MMIO_CONFIG) {
				for (uint32_t i = 0; i < len; i++)
					want[i] = off - 0x100 + i < FAKE_CONFIG_SIZE
							  ? x.f.config[off - 0x100 + i]
							  : 0;
			} else if (len == 4 && off % 4 == 0) {
				uint32_t v = expected_reg(&x, off);
				for (int i = 0; i < 4; i++)
					want[i] = (uint8_t)(v >> (8 * i));
			} else {
				nbad++;
			}
			if (memcmp(buf, want, len) != 0) {
				printf("  offset 0x%x len %u: %02x %02x %02x %02x\n", off, len, buf[0],
				       buf[1], buf[2], buf[3]);
				CHECK(0);
			}
			for (size_t i = len; i < sizeof(buf); i++)
				CHECK_EQ(buf[i], 0xa5); /* nothing written past len */
		}
	}
	CHECK_EQ(x.t.bad_accesses, bad0 + nbad);

	/* register writes of the wrong width/alignment change nothing: all
	 * ones everywhere (Status = 0xff, QueueSel, ACK, Notify...) */
	struct virtq vqs[NQ];
	memcpy(vqs, x.f.vd.vqs, sizeof(vqs));
	int resets = x.f.reset_calls;
	for (uint32_t off = 0; off < VIRTIO_MMIO_CONFIG; off++) {
		for (size_t w = 0; w < 4; w++) {
			uint32_t len = widths[w];
			if (len == 4 && off % 4 == 0)
				continue;
			uint8_t ones[8];
			memset(ones, 0xff, sizeof(ones));
			CHECK(bus_access(&x.fp.mmio, BASE + off, ones, len, true));
			memset(ones, 0, sizeof(ones));
			CHECK(bus_access(&x.fp.mmio, BASE + off, ones, len, true));
		}
	}
	CHECK(memcmp(vqs, x.f.vd.vqs, sizeof(vqs)) == 0);
	CHECK_EQ(x.f.reset_calls, resets);
	for (uint32_t off = 0; off < VIRTIO_MMIO_CONFIG; off += 4)
		CHECK_EQ(rd(&x, off), expected_reg(&x, off));
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++)
		CHECK_EQ(x.f.notify_calls[q], 0);

	/* aligned 32-bit writes to read-only/unimplemented offsets: no effect */
	static const uint32_t ro[] = {0x000, 0x004, 0x008, 0x00c, 0x010, 0x018, 0x01c, 0x028,
				      0x02c, 0x034, 0x03c, 0x040, 0x048, 0x04c, 0x054, 0x060,
				      0x068, 0x0a8, 0x0ac, 0x0b0, 0x0b4, 0x0b8, 0x0bc, 0x0c0,
				      0x0c4, 0x0f0, 0x0fc};
	for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); i++) {
		wr(&x, ro[i], 0xffffffff);
		wr(&x, ro[i], 0);
	}
	CHECK(memcmp(vqs, x.f.vd.vqs, sizeof(vqs)) == 0);
	for (uint32_t off = 0; off < VIRTIO_MMIO_CONFIG; off += 4)
		CHECK_EQ(rd(&x, off), expected_reg(&x, off));

	/* defensive: the device's own handlers given an access past the
	 * window (the bus never does this) zero-fill and ignore */
	uint8_t b8[8];
	memset(b8, 0xa5, sizeof(b8));
	x.t.bus.ops->read(&x.t.bus, VIRTIO_MMIO_WINDOW - 4, b8, 8);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(b8[i], 0);
	x.t.bus.ops->write(&x.t.bus, 0xffffffffffffffffULL, b8, 8);
	fix_destroy(&x);
}

TEST(reset)
{
	struct fix x;
	fix_init(&x);
	bring_up(&x);
	signal_q(&x, 0);
	wr(&x, VIRTIO_MMIO_QUEUE_SEL, 1);
	int resets = x.f.reset_calls;
	wr(&x, VIRTIO_MMIO_STATUS, 0);
	CHECK_EQ(x.f.reset_calls, resets + 1);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_STATUS), 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	CHECK_EQ(x.t.queue_sel, 0);
	for (int q = 0; q < NQ; q++) {
		wr(&x, VIRTIO_MMIO_QUEUE_SEL, (uint32_t)q);
		CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
		CHECK(!x.f.vd.vqs[q].ready);
		CHECK(!x.f.vd.vqs[q].active);
		/* the core's reset: every queue back to the maximum size, no
		 * rings */
		CHECK_EQ(x.f.vd.vqs[q].size, QMAX);
		CHECK_EQ(x.f.vd.vqs[q].desc_gpa, 0);
		CHECK_EQ(x.f.vd.vqs[q].avail_gpa, 0);
		CHECK_EQ(x.f.vd.vqs[q].used_gpa, 0);
	}
	CHECK_EQ(x.f.vd.driver_features, 0);
	/* notifications after reset reach nothing */
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	CHECK_EQ(x.f.notify_calls[0], 0);
	/* and the device comes up again */
	bring_up(&x);
	CHECK_EQ(x.f.activate_calls, 2);

	/* asynchronous reset: status stays non-zero, nothing can be set up
	 * until the device reports completion */
	x.f.reset_ret = -EINPROGRESS;
	signal_cfg(&x);
	wr(&x, VIRTIO_MMIO_STATUS, 0);
	CHECK(rd(&x, VIRTIO_MMIO_STATUS) != 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	wr(&x, VIRTIO_MMIO_QUEUE_SEL, 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
	struct virtq v0 = x.f.vd.vqs[0];
	wr(&x, VIRTIO_MMIO_QUEUE_NUM, 4);
	wr(&x, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
	wr(&x, VIRTIO_MMIO_QUEUE_READY, 1);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
	CHECK(memcmp(&v0, &x.f.vd.vqs[0], sizeof(v0)) == 0); /* in-flight geometry kept */
	CHECK(v0.ready && v0.active); /* what QueueReady did not show */
	/* a completion signalled during the reset is dropped */
	signal_cfg(&x);
	virtio_dev_reset_done(&x.f.vd);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_STATUS), 0);
	CHECK_EQ(rd(&x, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* the core cleared the queues when the reset completed */
	for (int q = 0; q < NQ; q++) {
		CHECK(!x.f.vd.vqs[q].ready && !x.f.vd.vqs[q].active);
		CHECK_EQ(x.f.vd.vqs[q].size, QMAX);
		CHECK_EQ(x.f.vd.vqs[q].desc_gpa, 0);
	}
	CHECK_EQ(rd(&x, VIRTIO_MMIO_QUEUE_READY), 0);
	x.f.reset_ret = 0;
	bring_up(&x);
	CHECK_EQ(x.f.activate_calls, 3);
	fix_destroy(&x);
}

TEST(notify_eventfds_and_ioeventfds)
{
	struct loop l;
	CHECK_EQ(loop_init(&l), 0);
	struct fix x;
	fix_init_ops(&x, &fp_ops_full, &l);
	/* one datamatch ioeventfd per queue on QueueNotify */
	CHECK_EQ(x.fp.ioev_adds, NQ);
	for (int q = 0; q < NQ; q++) {
		struct fake_ioev *e = &x.fp.ioev[q];
		CHECK(e->active);
		CHECK(!e->pio);
		CHECK_EQ(e->addr, BASE + VIRTIO_MMIO_QUEUE_NOTIFY);
		CHECK_EQ(e->len, 4);
		CHECK_EQ(e->datamatch, q);
		CHECK_EQ(e->efd, x.t.notify[q].efd);
		CHECK(x.t.notify[q].ioeventfd);
		CHECK(loop_handler_of(&l, e->efd) != NULL);
	}
	bring_up(&x);
	/* a bus write (no KVM) signals the queue's eventfd, not the device */
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	CHECK_EQ(x.f.notify_calls[1], 0);
	CHECK(loop_dispatch(&l, x.t.notify[1].efd));
	CHECK_EQ(x.f.notify_calls[1], 1);
	CHECK_EQ(x.f.notify_calls[0], 0);
	/* KVM signalling the eventfd (several kicks coalesce) */
	uint64_t one = 1;
	CHECK_EQ(write(x.t.notify[0].efd, &one, 8), 8);
	CHECK_EQ(write(x.t.notify[0].efd, &one, 8), 8);
	CHECK(loop_dispatch(&l, x.t.notify[0].efd));
	CHECK_EQ(x.f.notify_calls[0], 1);
	/* spurious wake-up: nothing to read, nothing notified */
	CHECK(loop_dispatch(&l, x.t.notify[0].efd));
	CHECK_EQ(x.f.notify_calls[0], 1);
	/* out of range: no eventfd touched */
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, NQ);
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, 0xffffffff);
	for (int q = 0; q < NQ; q++)
		CHECK_EQ(efd_count(x.t.notify[q].efd), 0);

	int efds[NQ];
	for (int q = 0; q < NQ; q++)
		efds[q] = x.t.notify[q].efd;
	virtio_mmio_destroy(&x.t);
	CHECK_EQ(x.fp.ioev_dels, NQ);
	for (int q = 0; q < NQ; q++) {
		CHECK(!x.fp.ioev[q].active);
		CHECK(loop_handler_of(&l, efds[q]) == NULL);
		CHECK_EQ(x.t.notify[q].efd, -1);
	}
	/* the window is gone and the device detached */
	CHECK(bus_find(&x.fp.mmio, BASE, 4) == NULL);
	CHECK(x.f.vd.transport == NULL);
	CHECK(x.f.vd.tops == NULL);
	virtio_mmio_destroy(&x.t); /* twice is harmless */
	CHECK_EQ(x.fp.ioev_dels, NQ);
	/* the slot can be used again */
	CHECK_EQ(virtio_mmio_init(&x.t, &x.f.vd, &x.fp.p, BASE, GSI), 0);
	CHECK(bus_find(&x.fp.mmio, BASE, 4) == &x.t.bus);
	fix_destroy(&x);
	loop_destroy(&l);
}

TEST(notify_before_driver_ok_is_replayed)
{
	struct loop l;
	CHECK_EQ(loop_init(&l), 0);
	struct fix x;
	fix_init_ops(&x, &fp_ops_full, &l);
	negotiate(&x);
	setup_queue(&x, 0, 128); /* queue 1 stays off */
	/* a kick before DRIVER_OK reaches the loop, which drops it */
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	CHECK(loop_dispatch(&l, x.t.notify[0].efd));
	CHECK_EQ(x.f.notify_calls[0], 0);
	wr(&x, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
	/* the status write only signalled the active queue's eventfd */
	CHECK_EQ(x.f.notify_calls[0], 0);
	CHECK_EQ(efd_count(x.t.notify[1].efd), 0);
	CHECK(loop_dispatch(&l, x.t.notify[0].efd));
	CHECK_EQ(x.f.notify_calls[0], 1);
	CHECK_EQ(x.f.notify_calls[1], 0);
	fix_destroy(&x);
	loop_destroy(&l);
}

TEST(replay_runs_on_the_loop_thread)
{
	/* end to end: this thread is the vCPU, a real loop runs beside it */
	struct loop l;
	CHECK_EQ(loop_init(&l), 0);
	struct fix x;
	fix_init_ops(&x, &fp_ops_full, &l);
	struct loop_runner lr;
	CHECK_EQ(loop_runner_start(&lr, &l), 0);
	bring_up(&x);
	int n0 = 0, n1 = 0;
	for (int i = 0; i < 2000 && !(n0 && n1); i++) {
		pthread_mutex_lock(&x.f.vd.lock);
		n0 = x.f.notify_calls[0];
		n1 = x.f.notify_calls[1];
		pthread_mutex_unlock(&x.f.vd.lock);
		if (!(n0 && n1))
			usleep(1000);
	}
	CHECK_EQ(loop_runner_stop(&lr), 0);
	CHECK_EQ(x.f.notify_calls[0], 1);
	CHECK_EQ(x.f.notify_calls[1], 1);
	CHECK(pthread_equal(x.f.notify_thread, lr.thread));
	fix_destroy(&x);
	loop_destroy(&l);
}

static void *vcpu_session(void *arg)
{
	struct fix *x = arg;
	bring_up(x);
	wr(x, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	wr(x, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	signal_cfg(x); /* as a status write that breaks the device would */
	CHECK_EQ(rd(x, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	wr(x, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	wr(x, VIRTIO_MMIO_STATUS, 0);
	bring_up(x);
	return NULL;
}

TEST(register_accesses_set_nothing_up)
{
	/* everything is made at init: a whole driver session on a vCPU-like
	 * thread (reset included) asks the platform for nothing and only
	 * writes eventfds */
	struct loop l;
	CHECK_EQ(loop_init(&l), 0);
	struct fix x;
	fix_init_ops(&x, &fp_ops_full, &l);
	int adds = x.fp.ioev_adds, irqfds = x.fp.irqfd_calls;
	CHECK_EQ(adds, NQ);
	CHECK_EQ(irqfds, 1);
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, vcpu_session, &x), 0);
	pthread_join(t, NULL);
	CHECK_EQ(x.fp.ioev_adds, adds);
	CHECK_EQ(x.fp.ioev_dels, 0);
	CHECK_EQ(x.fp.irqfd_calls, irqfds);
	CHECK_EQ(x.fp.set_irq_calls, 0);
	CHECK(efd_count(x.fp.irqfd) >= 1);
	CHECK_EQ(x.f.notify_calls[0] + x.f.notify_calls[1], 0); /* all on the loop */
	fix_destroy(&x);
	loop_destroy(&l);
}

TEST(no_replay_without_a_loop)
{
	struct fix x;
	fix_init(&x);
	bring_up(&x);
	CHECK_EQ(x.f.notify_calls[0], 0);
	CHECK_EQ(x.f.notify_calls[1], 0);
	pthread_mutex_lock(&x.f.vd.lock);
	CHECK_EQ(x.f.vd.tops->replay_notify(&x.f.vd, 0), (unsigned long long)-ENOTCONN);
	CHECK_EQ(x.f.vd.tops->replay_notify(&x.f.vd, NQ), (unsigned long long)-EINVAL);
	pthread_mutex_unlock(&x.f.vd.lock);
	fix_destroy(&x);
}

TEST(ioeventfd_failure_falls_back)
{
	struct loop l;
	CHECK_EQ(loop_init(&l), 0);
	struct fix x;
	memset(&x, 0, sizeof(x));
	CHECK_EQ(guest_mem_init(&x.mem, 1 << 20, 0xc0000000ULL, 0x100000000ULL), 0);
	fp_init(&x.fp, &fp_ops_full, &l);
	x.fp.ioev_fail = true;
	CHECK_EQ(fake_init(&x.f, "fake", VIRTIO_ID_RNG, NQ, QMAX, &x.mem, &l), 0);
	CHECK_EQ(virtio_mmio_init(&x.t, &x.f.vd, &x.fp.p, BASE, GSI), 0);
	CHECK(!x.t.notify[0].ioeventfd);
	bring_up(&x);
	wr(&x, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	CHECK(loop_dispatch(&l, x.t.notify[0].efd));
	CHECK_EQ(x.f.notify_calls[0], 1);
	virtio_mmio_destroy(&x.t);
	CHECK_EQ(x.fp.ioev_dels, 0);
	fix_destroy(&x);
	loop_destroy(&l);
}

TEST(init_errors)
{
	struct loop l;
	CHECK_EQ(loop_init(&l), 0);
	struct fix x;
	fix_init_ops(&x, &fp_ops_full, &l);
	struct vf_dev f2;
	struct virtio_mmio t2;
	CHECK_EQ(fake_init(&f2, "fake2", VIRTIO_ID_BLOCK, 1, 64, &x.mem, &l), 0);
	/* NULLs, unaligned base */
	CHECK_EQ(virtio_mmio_init(NULL, &f2.vd, &x.fp.p, BASE + 0x1000, GSI), -EINVAL);
	CHECK_EQ(virtio_mmio_init(&t2, NULL, &x.fp.p, BASE + 0x1000, GSI), -EINVAL);
	CHECK_EQ(virtio_mmio_init(&t2, &f2.vd, NULL, BASE + 0x1000, GSI), -EINVAL);
	CHECK_EQ(virtio_mmio_init(&t2, &f2.vd, &x.fp.p, BASE + 0x800, GSI), -EINVAL);
	/* overlapping window: refused, nothing left behind */
	int adds = x.fp.ioev_adds;
	CHECK_EQ(virtio_mmio_init(&t2, &f2.vd, &x.fp.p, BASE, GSI + 1), -EEXIST);
	CHECK_EQ(x.fp.ioev_adds - x.fp.ioev_dels, adds);
	int used = 0;
	for (int i = 0; i < LOOP_MAX_FDS; i++)
		used += l.h[i].fd >= 0;
	CHECK_EQ(used, NQ);
	CHECK(f2.vd.transport == NULL);
	/* no way to interrupt */
	static const struct platform_ops none = {0};
	struct fake_platform fp2;
	fp_init(&fp2, &none, NULL);
	CHECK_EQ(virtio_mmio_init(&t2, &f2.vd, &fp2.p, BASE, GSI), -EINVAL);
	/* next slot is fine */
	CHECK_EQ(virtio_mmio_init(&t2, &f2.vd, &x.fp.p, BASE + VIRTIO_MMIO_WINDOW, GSI + 1), 0);
	CHECK_EQ(x.fp.mmio.ndevs, 2);
	virtio_mmio_destroy(&t2);
	virtio_dev_destroy(&f2.vd);
	fix_destroy(&x);
	loop_destroy(&l);
	/* destroy on a zeroed struct */
	struct virtio_mmio z;
	memset(&z, 0, sizeof(z));
	virtio_mmio_destroy(&z);
	virtio_mmio_destroy(NULL);
}

/* ---- ACPI and command line ------------------------------------------------- */

/* Decode a PkgLength at p (§20.2.4): returns its byte count, *val the value. */
static size_t pkglen(const uint8_t *p, size_t *val)
{
	size_t n = (size_t)(p[0] >> 6) + 1;
	if (n == 1) {
		*val = p[0] & 0x3f;
		return 1;
	}
	size_t v = p[0] & 0x0f;
	for (size_t i = 1; i < n; i++)
		v |= (size_t)p[i] << (4 + 8 * (i - 1));
	*val = v;
	return n;
}

static const uint8_t *find(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
	for (size_t i = 0; i + m <= n; i++)
		if (memcmp(hay + i, needle, m) == 0)
			return hay + i;
	return NULL;
}

static void check_device_aml(const uint8_t *b, size_t n, const char *name, uint64_t uid,
			     uint32_t base, uint32_t gsi)
{
	/* DefDevice := ExtOpPrefix DeviceOp PkgLength NameString TermList */
	CHECK(n > 8);
	CHECK_EQ(b[0], AML_EXT_OP_PREFIX);
	CHECK_EQ(b[1], AML_DEVICE_OP);
	size_t plen;
	size_t pl = pkglen(b + 2, &plen);
	CHECK_EQ(2 + plen, n); /* PkgLength covers everything after the opcode */
	CHECK(memcmp(b + 2 + pl, name, 4) == 0);

	/* Name (_HID, "LNRO0005"): a String, not an EisaId */
	static const uint8_t hid[] = {AML_NAME_OP, '_', 'H', 'I', 'D', AML_STRING_PREFIX,
				      'L', 'N', 'R', 'O', '0', '0', '0', '5', 0};
	CHECK(find(b, n, hid, sizeof(hid)) != NULL);

	/* Name (_UID, uid) */
	const uint8_t *u = find(b, n, "_UID", 4);
	CHECK(u != NULL);
	if (u) {
		CHECK_EQ(u[-1], AML_NAME_OP);
		if (uid == 0)
			CHECK_EQ(u[4], AML_ZERO_OP);
		else if (uid == 1)
			CHECK_EQ(u[4], AML_ONE_OP);
		else {
			CHECK_EQ(u[4], AML_BYTE_PREFIX);
			CHECK_EQ(u[5], uid);
		}
	}

	/* Name (_CRS, Buffer) with a resource template */
	const uint8_t *c = find(b, n, "_CRS", 4);
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_EQ(c[-1], AML_NAME_OP);
	const uint8_t *p = c + 4;
	CHECK_EQ(p[0], AML_BUFFER_OP);
	size_t blen;
	size_t bpl = pkglen(p + 1, &blen);
	const uint8_t *bend = p + 1 + blen;
	CHECK(bend == b + n); /* _CRS is the last object of the device */
	const uint8_t *q = p + 1 + bpl;
	size_t size;
	if (q[0] == AML_BYTE_PREFIX) {
		size = q[1];
		q += 2;
	} else {
		CHECK_EQ(q[0], AML_WORD_PREFIX);
		size = (size_t)q[1] | (size_t)q[2] << 8;
		q += 3;
	}
	CHECK(q + size == bend);
	CHECK_EQ(size, 12 + 9 + 2);
	if (q + size != bend || size != 23)
		return;
	/* Memory32Fixed: 0x86, length 9, RW, base, length */
	CHECK_EQ(q[0], 0x86);
	CHECK_EQ(q[1] | q[2] << 8, 9);
	CHECK_EQ(q[3], 1);
	CHECK_EQ((uint32_t)q[4] | (uint32_t)q[5] << 8 | (uint32_t)q[6] << 16 | (uint32_t)q[7] << 24, base);
	CHECK_EQ((uint32_t)q[8] | (uint32_t)q[9] << 8 | (uint32_t)q[10] << 16 | (uint32_t)q[11] << 24,
		 0x1000);
	/* Extended Interrupt: 0x89, length 6, consumer|edge (active-high,
	 * exclusive), one interrupt, the GSI */
	const uint8_t *e = q + 12;
	CHECK_EQ(e[0], 0x89);
	CHECK_EQ(e[1] | e[2] << 8, 6);
	CHECK_EQ(e[3], AML_INT_CONSUMER | AML_INT_EDGE);
	CHECK_EQ(e[4], 1);
	CHECK_EQ((uint32_t)e[5] | (uint32_t)e[6] << 8 | (uint32_t)e[7] << 16 | (uint32_t)e[8] << 24, gsi);
	/* End Tag with a checksum making the template sum to 0 */
	CHECK_EQ(e[9], 0x79);
	uint8_t sum = 0;
	for (size_t i = 0; i < size; i++)
		sum = (uint8_t)(sum + q[i]);
	CHECK_EQ(sum, 0);
}

TEST(acpi_aml)
{
	uint8_t buf[256];
	struct aml a;
	aml_init(&a, buf, sizeof(buf));
	CHECK_EQ(virtio_mmio_acpi_aml(&a, 0, VIRTIO_MMIO_DEV_BASE(0), VIRTIO_MMIO_DEV_GSI(0)), 0);
	CHECK_EQ(a.err, 0);
	check_device_aml(buf, a.len, "VR00", 0, 0xf0000000u, 16);

	aml_init(&a, buf, sizeof(buf));
	CHECK_EQ(virtio_mmio_acpi_aml(&a, 7, VIRTIO_MMIO_DEV_BASE(7), VIRTIO_MMIO_DEV_GSI(7)), 0);
	check_device_aml(buf, a.len, "VR07", 7, 0xf0007000u, 23);

	aml_init(&a, buf, sizeof(buf));
	CHECK_EQ(virtio_mmio_acpi_aml(&a, 0xab, 0xfebff000ULL, 100), 0);
	check_device_aml(buf, a.len, "VRAB", 0xab, 0xfebff000u, 100);

	/* several devices back to back, inside a scope */
	aml_init(&a, buf, sizeof(buf));
	size_t sb = aml_scope_begin(&a, "\\_SB");
	for (int i = 0; i < 3; i++)
		virtio_mmio_acpi_aml(&a, i, VIRTIO_MMIO_DEV_BASE(i), VIRTIO_MMIO_DEV_GSI(i));
	CHECK_EQ(aml_scope_end(&a, sb), 0);
	CHECK(find(buf, a.len, "VR02", 4) != NULL);

	/* invalid arguments */
	aml_init(&a, buf, sizeof(buf));
	CHECK_EQ(virtio_mmio_acpi_aml(&a, -1, VIRTIO_MMIO_DEV_BASE(0), 16), -EINVAL);
	CHECK_EQ(a.err, -EINVAL);
	aml_init(&a, buf, sizeof(buf));
	CHECK_EQ(virtio_mmio_acpi_aml(&a, 256, VIRTIO_MMIO_DEV_BASE(0), 16), -EINVAL);
	aml_init(&a, buf, sizeof(buf));
	CHECK_EQ(virtio_mmio_acpi_aml(&a, 0, 0xfffff001ULL, 16), -EINVAL);
	aml_init(&a, buf, sizeof(buf));
	CHECK_EQ(virtio_mmio_acpi_aml(&a, 0, 0x100000000ULL, 16), -EINVAL);
	CHECK_EQ(virtio_mmio_acpi_aml(NULL, 0, 0, 16), -EINVAL);
	/* too small a buffer: sticky -ENOSPC, nothing written past it */
	uint8_t small[20];
	memset(small, 0x5a, sizeof(small));
	aml_init(&a, small, 16);
	CHECK_EQ(virtio_mmio_acpi_aml(&a, 0, VIRTIO_MMIO_DEV_BASE(0), 16), -ENOSPC);
	for (int i = 16; i < 20; i++)
		CHECK_EQ(small[i], 0x5a);
}

TEST(cmdline)
{
	char buf[64];
	int n = virtio_mmio_cmdline(buf, sizeof(buf), VIRTIO_MMIO_DEV_BASE(0), VIRTIO_MMIO_DEV_GSI(0));
	CHECK_STR(buf, "virtio_mmio.device=4K@0xf0000000:16");
	CHECK_EQ(n, strlen(buf));
	n = virtio_mmio_cmdline(buf, sizeof(buf), VIRTIO_MMIO_DEV_BASE(5), VIRTIO_MMIO_DEV_GSI(5));
	CHECK_STR(buf, "virtio_mmio.device=4K@0xf0005000:21");
	CHECK_EQ(virtio_mmio_cmdline(buf, 10, 0xf0000000ULL, 16), -ENOSPC);
	CHECK_EQ(virtio_mmio_cmdline(buf, 0, 0xf0000000ULL, 16), -ENOSPC);
	CHECK_EQ(virtio_mmio_cmdline(NULL, 10, 0xf0000000ULL, 16), -EINVAL);
	/* exactly fitting */
	size_t need = strlen("virtio_mmio.device=4K@0xf0000000:16");
	CHECK_EQ(virtio_mmio_cmdline(buf, need + 1, 0xf0000000ULL, 16), need);
	CHECK_EQ(virtio_mmio_cmdline(buf, need, 0xf0000000ULL, 16), -ENOSPC);
}

TEST(address_plan)
{
	/* windows inside the MMIO hole, clear of the IOAPIC/LAPIC, no overlap */
	CHECK(VIRTIO_MMIO_REGION_BASE >= 0xc0000000ULL);
	CHECK(VIRTIO_MMIO_REGION_END <= 0xfec00000ULL);
	CHECK(VIRTIO_MMIO_DEV_GSI(VIRTIO_MMIO_MAX_DEVS - 1) < 24);
	CHECK(VIRTIO_MMIO_DEV_GSI(0) >= 16);
	CHECK(VIRTIO_MMIO_MAX_DEVS <= VIRTIO_MMIO_SLOTS);
	struct bus b;
	bus_init(&b, "mmio");
	struct bus_dev devs[VIRTIO_MMIO_SLOTS];
	for (int i = 0; i < VIRTIO_MMIO_SLOTS; i++) {
		devs[i] = (struct bus_dev){0};
		CHECK_EQ(bus_register(&b, &devs[i], VIRTIO_MMIO_DEV_BASE(i), VIRTIO_MMIO_WINDOW), 0);
	}
	CHECK_EQ(VIRTIO_MMIO_DEV_BASE(VIRTIO_MMIO_SLOTS), VIRTIO_MMIO_REGION_END);
}

TEST_MAIN()
