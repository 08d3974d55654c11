/* SPDX-License-Identifier: MIT */
/*
 * The virtio PCI transport, driven through its BAR and config space the
 * way a driver does, with a fake virtio device and a recording platform.
 */
#include "../../src/devices/virtio/virtio_pci.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../src/arch/x86/layout.h"
#include "../../src/event/loop.h"
#include "msi_fake.h"
#include "test.h"
#include "loop_runner.h"
#include "virtio_fake.h"

/* ---- fake virtio device -------------------------------------------------------- */

#define F_NQ 2
#define F_QMAX 256
#define F_CFG_SIZE 24
#define F_FEATURE_BIT 5
#define F_FEATURES (1ull << F_FEATURE_BIT)

/* ---- rig ----------------------------------------------------------------------- */

struct rig {
	struct bus pio, mmio;
	struct pci_bus pb;
	struct fake_plat fp;
	struct guest_mem mem;
	struct loop loop;
	bool with_loop;
	struct vf_dev f;
	struct virtio_pci vp;
	int slot;
	uint64_t bar;
};

static uint32_t cfgr(struct rig *r, uint32_t reg, uint32_t len)
{
	return pci_cfg_read(&r->pb, 0, PCI_DEVFN(r->slot, 0), reg, len);
}

static void cfgw(struct rig *r, uint32_t reg, uint32_t len, uint32_t v)
{
	pci_cfg_write(&r->pb, 0, PCI_DEVFN(r->slot, 0), reg, len, v);
}

/* @with_loop: notification eventfds on a loop; @defer: set-up deferred
 * to it too, this thread playing the loop (fp_run_work) and set-up calls
 * on other threads counted (msi_fake.h). */
static struct rig *rig_new_ex(bool with_loop, bool defer)
{
	struct rig *r = calloc(1, sizeof(*r));
	bus_init(&r->pio, "pio");
	bus_init(&r->mmio, "mmio");
	fp_init(&r->fp, &r->pio, &r->mmio);
	if (with_loop || defer) {
		CHECK_EQ(loop_init(&r->loop), 0);
		r->fp.p.loop = &r->loop;
		r->with_loop = true;
		if (defer)
			CHECK_EQ(fp_enable_defer(&r->fp, &r->loop), 0);
	}
	CHECK_EQ(guest_mem_init(&r->mem, 0x200000, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	CHECK_EQ(pci_bus_init(&r->pb, &r->mmio, GPA_PCI_MMIO32, PCI_MMIO32_SIZE, NULL, NULL), 0);
	CHECK_EQ(vf_dev_init(&r->f, F_FEATURES, F_CFG_SIZE, "fake", VIRTIO_ID_BLOCK, F_NQ, F_QMAX,
			     &r->mem, r->fp.p.loop),
		 0);
	for (int i = 0; i < F_CFG_SIZE; i++)
		r->f.config[i] = (uint8_t)(0xa0 + i);
	r->slot = virtio_pci_create(&r->vp, &r->pb, &r->f.vd, &r->fp.p, -1);
	CHECK_EQ(r->slot, 1);
	r->bar = pci_bar_address(&r->vp.pd, VIRTIO_PCI_BAR);
	return r;
}

static struct rig *rig_new(bool with_loop)
{
	return rig_new_ex(with_loop, false);
}

static void enable_bar(struct rig *r)
{
	cfgw(r, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

static void rig_free(struct rig *r)
{
	virtio_pci_destroy(&r->vp);
	virtio_dev_destroy(&r->f.vd);
	pci_bus_destroy(&r->pb);
	guest_mem_destroy(&r->mem);
	fp_destroy(&r->fp);
	if (r->with_loop)
		loop_destroy(&r->loop);
	free(r);
}

static uint64_t rd(struct rig *r, uint64_t off, uint32_t len)
{
	uint64_t v = 0;
	bus_access(&r->mmio, r->bar + off, &v, len, false);
	return v;
}

static void wr(struct rig *r, uint64_t off, uint32_t len, uint64_t v)
{
	bus_access(&r->mmio, r->bar + off, &v, len, true);
}

#define C(x) (VIRTIO_PCI_COMMON_OFF + VIRTIO_PCI_COMMON_##x)

static void set_status(struct rig *r, uint8_t s)
{
	wr(r, C(STATUS), 1, s);
}

/* ACK, DRIVER, features (VERSION_1 + what is offered), FEATURES_OK. */
static void negotiate(struct rig *r)
{
	set_status(r, VIRTIO_STATUS_ACKNOWLEDGE);
	set_status(r, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(r, C(GFSELECT), 4, 0);
	wr(r, C(GF), 4, 1u << F_FEATURE_BIT);
	wr(r, C(GFSELECT), 4, 1);
	wr(r, C(GF), 4, 1u << (VIRTIO_F_VERSION_1 - 32));
	set_status(r, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			      VIRTIO_STATUS_FEATURES_OK);
}

#define RING_DESC 0x10000
#define RING_AVAIL 0x20000
#define RING_USED 0x30000

static void setup_queue(struct rig *r, uint16_t q, uint16_t size)
{
	wr(r, C(Q_SELECT), 2, q);
	wr(r, C(Q_SIZE), 2, size);
	wr(r, C(Q_DESC), 4, RING_DESC + q * 0x1000u);
	wr(r, C(Q_DESC) + 4, 4, 0);
	wr(r, C(Q_DRIVER), 4, RING_AVAIL + q * 0x1000u);
	wr(r, C(Q_DRIVER) + 4, 4, 0);
	wr(r, C(Q_DEVICE), 8, RING_USED + q * 0x1000u);
	wr(r, C(Q_ENABLE), 2, 1);
}

static void go_live(struct rig *r)
{
	negotiate(r);
	setup_queue(r, 0, 128);
	set_status(r, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			      VIRTIO_STATUS_DRIVER_OK);
}

/* ---- tests ------------------------------------------------------------------------ */

TEST(pci_identity_and_bar)
{
	struct rig *r = rig_new(false);
	CHECK_EQ(cfgr(r, PCI_VENDOR_ID, 2), 0x1af4);
	CHECK_EQ(cfgr(r, PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_BLOCK);
	CHECK_EQ(cfgr(r, PCI_REVISION_ID, 1), 1);
	CHECK_EQ(cfgr(r, PCI_CLASS_PROG, 1), 0x00);
	CHECK_EQ(cfgr(r, PCI_CLASS_DEVICE, 2), 0x0180);
	CHECK_EQ(cfgr(r, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
	CHECK(cfgr(r, PCI_SUBSYSTEM_ID, 2) >= 0x40);
	CHECK_EQ(cfgr(r, PCI_HEADER_TYPE, 1), 0);
	CHECK_EQ(cfgr(r, PCI_INTERRUPT_PIN, 1), 0);
	CHECK_EQ(virtio_pci_class(VIRTIO_ID_NET), 0x020000);
	CHECK_EQ(virtio_pci_class(VIRTIO_ID_RNG), 0xff0000);
	/* BAR0/1: 64-bit memory, non-prefetchable, 32 KiB */
	uint32_t lo = cfgr(r, 0x10, 4), hi = cfgr(r, 0x14, 4);
	CHECK_EQ(lo & 0xf, PCI_BAR_MEM_TYPE_64);
	CHECK_EQ(lo & ~0xfu, GPA_PCI_MMIO32);
	CHECK_EQ(hi, 0);
	cfgw(r, 0x10, 4, 0xffffffff);
	cfgw(r, 0x14, 4, 0xffffffff);
	CHECK_EQ(cfgr(r, 0x10, 4), ~(uint32_t)(VIRTIO_PCI_BAR_SIZE - 1) | PCI_BAR_MEM_TYPE_64);
	CHECK_EQ(cfgr(r, 0x14, 4), 0xffffffff);
	cfgw(r, 0x10, 4, lo);
	cfgw(r, 0x14, 4, hi);
	for (uint32_t reg = 0x18; reg <= 0x24; reg += 4)
		CHECK_EQ(cfgr(r, reg, 4), 0);
	rig_free(r);
}

TEST(capabilities)
{
	struct rig *r = rig_new(false);
	CHECK(cfgr(r, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	uint32_t p = cfgr(r, PCI_CAPABILITY_LIST, 1);
	int n = 0, types = 0;
	bool msix = false;
	for (int steps = 0; p && steps < 48; steps++, n++) {
		CHECK(p >= 0x40 && p <= 0xfc && !(p & 3));
		uint32_t id = cfgr(r, p, 1);
		if (id == PCI_CAP_ID_MSIX) {
			msix = true;
			CHECK_EQ(cfgr(r, p + PCI_MSIX_FLAGS, 2), F_NQ); /* F_NQ + 1 vectors */
			CHECK_EQ(cfgr(r, p + PCI_MSIX_TABLE, 4), VIRTIO_PCI_MSIX_TABLE_OFF | 0);
			CHECK_EQ(cfgr(r, p + PCI_MSIX_PBA, 4), VIRTIO_PCI_MSIX_PBA_OFF | 0);
		} else {
			CHECK_EQ(id, PCI_CAP_ID_VNDR);
			uint32_t type = cfgr(r, p + VIRTIO_PCI_CAP_CFG_TYPE, 1);
			uint32_t len = cfgr(r, p + VIRTIO_PCI_CAP_CAP_LEN, 1);
			uint32_t bar = cfgr(r, p + VIRTIO_PCI_CAP_BAR, 1);
			uint32_t off = cfgr(r, p + VIRTIO_PCI_CAP_OFFSET, 4);
			uint32_t length = cfgr(r, p + VIRTIO_PCI_CAP_LENGTH, 4);
			types |= 1 << type;
			switch (type) {
			case VIRTIO_PCI_CAP_COMMON_CFG:
				CHECK_EQ(len, 16);
				CHECK_EQ(bar, 0);
				CHECK_EQ(off, VIRTIO_PCI_COMMON_OFF);
				CHECK(length >= 0x38);
				break;
			case VIRTIO_PCI_CAP_NOTIFY_CFG:
				CHECK_EQ(len, 20);
				CHECK_EQ(off, VIRTIO_PCI_NOTIFY_OFF);
				CHECK_EQ(cfgr(r, p + VIRTIO_PCI_NOTIFY_CAP_MULT, 4), 4);
				/* §4.1.4.4: covers every queue's notify address + 2 */
				CHECK(length >= (F_NQ - 1) * 4 + 2);
				break;
			case VIRTIO_PCI_CAP_ISR_CFG:
				CHECK_EQ(off, VIRTIO_PCI_ISR_OFF);
				CHECK(length >= 1);
				break;
			case VIRTIO_PCI_CAP_DEVICE_CFG:
				CHECK_EQ(off, VIRTIO_PCI_DEVICE_OFF);
				CHECK(length >= F_CFG_SIZE);
				break;
			case VIRTIO_PCI_CAP_PCI_CFG:
				CHECK_EQ(len, 20);
				break;
			default:
				CHECK(0);
			}
			if (type != VIRTIO_PCI_CAP_PCI_CFG)
				CHECK(off + length <= VIRTIO_PCI_BAR_SIZE);
		}
		p = cfgr(r, p + 1, 1);
	}
	CHECK_EQ(p, 0);
	CHECK(msix);
	CHECK_EQ(n, 6);
	CHECK_EQ(types, 0x3e);
	rig_free(r);
}

TEST(feature_negotiation)
{
	struct rig *r = rig_new(false);
	enable_bar(r);
	uint64_t want = (1ull << F_FEATURE_BIT) | (1ull << VIRTIO_F_VERSION_1) |
			(1ull << VIRTIO_F_INDIRECT_DESC) | (1ull << VIRTIO_F_EVENT_IDX);
	wr(r, C(DFSELECT), 4, 0);
	CHECK_EQ(rd(r, C(DFSELECT), 4), 0);
	CHECK_EQ(rd(r, C(DF), 4), (uint32_t)want);
	wr(r, C(DFSELECT), 4, 1);
	CHECK_EQ(rd(r, C(DF), 4), (uint32_t)(want >> 32));
	wr(r, C(DFSELECT), 4, 0x12345);
	CHECK_EQ(rd(r, C(DF), 4), 0);
	wr(r, C(DF), 4, 0xffffffff); /* read-only */
	/* driver features outside negotiation: ignored */
	wr(r, C(GF), 4, 0xffffffff);
	CHECK_EQ(rd(r, C(GF), 4), 0);
	negotiate(r);
	CHECK_EQ(rd(r, C(STATUS), 1), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					     VIRTIO_STATUS_FEATURES_OK);
	wr(r, C(GFSELECT), 4, 0);
	CHECK_EQ(rd(r, C(GF), 4), 1u << F_FEATURE_BIT);
	wr(r, C(GFSELECT), 4, 1);
	CHECK_EQ(rd(r, C(GF), 4), 1);
	CHECK_EQ(r->f.vd.driver_features, (1ull << F_FEATURE_BIT) | (1ull << VIRTIO_F_VERSION_1));
	/* after FEATURES_OK: frozen */
	wr(r, C(GF), 4, 0);
	CHECK_EQ(rd(r, C(GF), 4), 1);
	/* a feature that is not offered: FEATURES_OK refused */
	set_status(r, 0);
	CHECK_EQ(rd(r, C(STATUS), 1), 0);
	set_status(r, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(r, C(GFSELECT), 4, 0);
	wr(r, C(GF), 4, 1u << 7);
	wr(r, C(GFSELECT), 4, 1);
	wr(r, C(GF), 4, 1);
	set_status(r, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	CHECK_EQ(rd(r, C(STATUS), 1) & VIRTIO_STATUS_FEATURES_OK, 0);
	/* partial writes of a feature word are ignored */
	set_status(r, 0);
	set_status(r, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(r, C(GFSELECT), 4, 0);
	wr(r, C(GF), 2, 0xffff);
	wr(r, C(GF) + 1, 1, 0xff);
	CHECK_EQ(rd(r, C(GF), 4), 0);
	rig_free(r);
}

TEST(num_queues_and_queue_select_out_of_range)
{
	struct rig *r = rig_new(false);
	enable_bar(r);
	CHECK_EQ(rd(r, C(NUMQ), 2), F_NQ);
	wr(r, C(NUMQ), 2, 7);
	CHECK_EQ(rd(r, C(NUMQ), 2), F_NQ);
	negotiate(r);
	const uint16_t bad[] = {F_NQ, 7, 0x7fff, 0xffff};
	for (int i = 0; i < 4; i++) {
		wr(r, C(Q_SELECT), 2, bad[i]);
		CHECK_EQ(rd(r, C(Q_SELECT), 2), bad[i]);
		CHECK_EQ(rd(r, C(Q_SIZE), 2), 0);
		CHECK_EQ(rd(r, C(Q_MSIX), 2), 0);
		CHECK_EQ(rd(r, C(Q_ENABLE), 2), 0);
		CHECK_EQ(rd(r, C(Q_NOFF), 2), 0);
		CHECK_EQ(rd(r, C(Q_DESC), 8), 0);
		CHECK_EQ(rd(r, C(Q_DRIVER), 8), 0);
		CHECK_EQ(rd(r, C(Q_DEVICE), 8), 0);
		wr(r, C(Q_SIZE), 2, 64);
		wr(r, C(Q_MSIX), 2, 1);
		wr(r, C(Q_DESC), 8, 0x1000);
		wr(r, C(Q_ENABLE), 2, 1);
		CHECK_EQ(rd(r, C(Q_SIZE), 2), 0);
		CHECK_EQ(rd(r, C(Q_ENABLE), 2), 0);
	}
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		CHECK_EQ(r->f.vd.vqs[q].size, F_QMAX);
		CHECK(!r->f.vd.vqs[q].ready);
		CHECK_EQ(r->f.vd.vqs[q].desc_gpa, 0);
	}
	/* queue 1: notify offset 1 */
	wr(r, C(Q_SELECT), 2, 1);
	CHECK_EQ(rd(r, C(Q_NOFF), 2), 1);
	rig_free(r);
}

TEST(queue_size_validation)
{
	struct rig *r = rig_new(false);
	enable_bar(r);
	negotiate(r);
	wr(r, C(Q_SELECT), 2, 0);
	CHECK_EQ(rd(r, C(Q_SIZE), 2), F_QMAX); /* reset value: the maximum */
	const uint16_t bad[] = {0, 3, 100, 255, F_QMAX * 2, 0x8000, 0xffff};
	for (int i = 0; i < 7; i++) {
		wr(r, C(Q_SIZE), 2, bad[i]);
		CHECK_EQ(rd(r, C(Q_SIZE), 2), F_QMAX);
	}
	wr(r, C(Q_SIZE), 2, 128);
	CHECK_EQ(rd(r, C(Q_SIZE), 2), 128);
	wr(r, C(Q_SIZE), 2, 1);
	CHECK_EQ(rd(r, C(Q_SIZE), 2), 1);
	wr(r, C(Q_SIZE), 1, 64); /* wrong width: ignored */
	wr(r, C(Q_SIZE), 4, 64);
	CHECK_EQ(rd(r, C(Q_SIZE), 2), 1);
	wr(r, C(Q_SIZE), 2, F_QMAX);
	CHECK_EQ(rd(r, C(Q_SIZE), 2), F_QMAX);
	/* once enabled, the size is fixed */
	wr(r, C(Q_ENABLE), 2, 1);
	CHECK_EQ(rd(r, C(Q_ENABLE), 2), 1);
	wr(r, C(Q_SIZE), 2, 64);
	CHECK_EQ(rd(r, C(Q_SIZE), 2), F_QMAX);
	/* enable 0 is ignored (no RING_RESET) */
	wr(r, C(Q_ENABLE), 2, 0);
	CHECK_EQ(rd(r, C(Q_ENABLE), 2), 1);
	rig_free(r);
}

TEST(geometry_after_driver_ok_ignored)
{
	struct rig *r = rig_new(false);
	enable_bar(r);
	go_live(r);
	CHECK(rd(r, C(STATUS), 1) & VIRTIO_STATUS_DRIVER_OK);
	CHECK_EQ(r->f.activate_calls, 1);
	CHECK(r->f.vd.vqs[0].active);
	wr(r, C(Q_SELECT), 2, 0);
	CHECK_EQ(rd(r, C(Q_DESC), 8), RING_DESC);
	CHECK_EQ(rd(r, C(Q_DRIVER), 8), RING_AVAIL);
	CHECK_EQ(rd(r, C(Q_DEVICE), 4), RING_USED);
	CHECK_EQ(rd(r, C(Q_DEVICE) + 4, 4), 0);
	wr(r, C(Q_SIZE), 2, 64);
	wr(r, C(Q_DESC), 8, 0x40000);
	wr(r, C(Q_DRIVER), 4, 0x40000);
	wr(r, C(Q_DEVICE) + 4, 4, 1);
	CHECK_EQ(rd(r, C(Q_SIZE), 2), 128);
	CHECK_EQ(rd(r, C(Q_DESC), 8), RING_DESC);
	CHECK_EQ(rd(r, C(Q_DRIVER), 8), RING_AVAIL);
	CHECK_EQ(rd(r, C(Q_DEVICE), 8), RING_USED);
	/* queue 1 was never enabled: it cannot be brought up now */
	wr(r, C(Q_SELECT), 2, 1);
	wr(r, C(Q_SIZE), 2, 64);
	wr(r, C(Q_ENABLE), 2, 1);
	CHECK_EQ(rd(r, C(Q_SIZE), 2), F_QMAX);
	CHECK_EQ(rd(r, C(Q_ENABLE), 2), 0);
	/* reset: geometry and vectors back to reset values */
	wr(r, C(MSIX), 2, 0);
	set_status(r, 0);
	CHECK_EQ(r->f.reset_calls, 1);
	CHECK_EQ(rd(r, C(STATUS), 1), 0);
	CHECK_EQ(rd(r, C(MSIX), 2), VIRTIO_MSI_NO_VECTOR);
	wr(r, C(Q_SELECT), 2, 0);
	CHECK_EQ(rd(r, C(Q_SIZE), 2), F_QMAX);
	CHECK_EQ(rd(r, C(Q_ENABLE), 2), 0);
	CHECK_EQ(rd(r, C(Q_DESC), 8), 0);
	CHECK_EQ(rd(r, C(Q_MSIX), 2), VIRTIO_MSI_NO_VECTOR);
	rig_free(r);
}

TEST(msix_vector_range)
{
	struct rig *r = rig_new(false);
	enable_bar(r);
	CHECK_EQ(rd(r, C(MSIX), 2), VIRTIO_MSI_NO_VECTOR);
	const struct {
		uint16_t in, out;
	} cases[] = {{0, 0}, {2, 2}, {F_NQ + 1, 0xffff}, {0x7ff, 0xffff}, {0xffff, 0xffff}, {1, 1}};
	for (int i = 0; i < 6; i++) {
		wr(r, C(MSIX), 2, cases[i].in);
		CHECK_EQ(rd(r, C(MSIX), 2), cases[i].out);
		for (uint16_t q = 0; q < F_NQ; q++) {
			wr(r, C(Q_SELECT), 2, q);
			wr(r, C(Q_MSIX), 2, cases[i].in);
			CHECK_EQ(rd(r, C(Q_MSIX), 2), cases[i].out);
		}
	}
	wr(r, C(MSIX), 1, 0); /* wrong width */
	CHECK_EQ(rd(r, C(MSIX), 2), 1);
	rig_free(r);
}

TEST(notify_by_mmio_write)
{
	struct rig *r = rig_new(false);
	enable_bar(r);
	/* before DRIVER_OK: nothing reaches the device */
	wr(r, VIRTIO_PCI_NOTIFY_OFF, 2, 0);
	CHECK_EQ(r->f.notify_calls[0], 0);
	go_live(r);
	wr(r, VIRTIO_PCI_NOTIFY_OFF, 2, 0);
	CHECK_EQ(r->f.notify_calls[0], 1);
	wr(r, VIRTIO_PCI_NOTIFY_OFF, 4, 0); /* other widths work too */
	wr(r, VIRTIO_PCI_NOTIFY_OFF, 1, 0);
	CHECK_EQ(r->f.notify_calls[0], 3);
	/* queue 1 is not active; odd offsets and absent queues are ignored */
	wr(r, VIRTIO_PCI_NOTIFY_OFF + 4, 2, 1);
	wr(r, VIRTIO_PCI_NOTIFY_OFF + 2, 2, 0);
	wr(r, VIRTIO_PCI_NOTIFY_OFF + 4 * F_NQ, 2, F_NQ);
	wr(r, VIRTIO_PCI_NOTIFY_OFF + 0xffe, 2, 0);
	CHECK_EQ(r->f.notify_calls[0], 3);
	CHECK_EQ(r->f.notify_calls[1], 0);
	CHECK_EQ(rd(r, VIRTIO_PCI_NOTIFY_OFF, 4), 0);
	rig_free(r);
}

TEST(ioeventfds_follow_the_bar)
{
	/* without deferral: the ioeventfds move on the writing thread */
	struct rig *r = rig_new(true);
	struct fake_plat *f = &r->fp;
	CHECK_EQ(f->nioe_add, 0);
	enable_bar(r);
	CHECK_EQ(f->nioe_add, F_NQ);
	for (int q = 0; q < F_NQ; q++) {
		CHECK_EQ(f->ioe_add_addr[q], r->bar + VIRTIO_PCI_NOTIFY_OFF + 4u * q);
		CHECK_EQ(f->ioe_len[q], 0); /* any width: the fast MMIO path */
		CHECK_EQ(f->ioe_fd[q], r->vp.notify[q].efd);
		CHECK(r->vp.notify[q].watched);
	}
	/* DRIVER_OK replays a notification of queue 0 through its eventfd */
	go_live(r);
	uint64_t cnt = 0;
	CHECK_EQ(read(r->vp.notify[0].efd, &cnt, sizeof(cnt)), (ssize_t)sizeof(cnt));
	CHECK_EQ(cnt, 1);
	/* an MMIO-exit notify goes through the same eventfd (loop thread) */
	wr(r, VIRTIO_PCI_NOTIFY_OFF, 4, 0);
	CHECK_EQ(read(r->vp.notify[0].efd, &cnt, sizeof(cnt)), (ssize_t)sizeof(cnt));
	CHECK_EQ(cnt, 1);
	CHECK_EQ(r->f.notify_calls[0], 0);
	/* move the BAR: old ioeventfds removed, new ones added */
	uint64_t to = GPA_PCI_MMIO32 + 0x10000;
	cfgw(r, 0x10, 4, (uint32_t)to | PCI_BAR_MEM_TYPE_64);
	CHECK_EQ(f->nioe_del, F_NQ);
	CHECK_EQ(f->ioe_del_addr[0], r->bar + VIRTIO_PCI_NOTIFY_OFF);
	CHECK_EQ(f->nioe_add, 2 * F_NQ);
	CHECK_EQ(f->ioe_add_addr[F_NQ + 1], to + VIRTIO_PCI_NOTIFY_OFF + 4);
	r->bar = to;
	CHECK_EQ(rd(r, C(NUMQ), 2), F_NQ);
	/* decoding off: removed */
	cfgw(r, PCI_COMMAND, 2, 0);
	CHECK_EQ(f->nioe_del, 2 * F_NQ);
	CHECK_EQ(f->ioe_del_addr[2 * F_NQ - 1], to + VIRTIO_PCI_NOTIFY_OFF + 4);
	/* on again, then destroy removes them */
	enable_bar(r);
	CHECK_EQ(f->nioe_add, 3 * F_NQ);
	virtio_pci_destroy(&r->vp);
	CHECK_EQ(f->nioe_del, 3 * F_NQ);
	CHECK_EQ(pci_cfg_read(&r->pb, 0, PCI_DEVFN(r->slot, 0), 0, 2), 0xffff);
	CHECK(bus_find(&r->mmio, to, 1) == NULL);
	rig_free(r);
}

static bool readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) == 1;
}

/* The eventfd's count, consumed (0 if none). */
static uint64_t efd_read(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

TEST(notify_before_driver_ok_is_replayed)
{
	struct rig *r = rig_new(true);
	enable_bar(r);
	negotiate(r);
	setup_queue(r, 0, 128);
	/* the driver kicks queue 0 before DRIVER_OK: the loop drops it */
	wr(r, VIRTIO_PCI_NOTIFY_OFF, 2, 0);
	CHECK(loop_dispatch(&r->loop, r->vp.notify[0].efd));
	CHECK_EQ(r->f.notify_calls[0], 0);
	set_status(r, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	/* the status write (a vCPU) only signalled the eventfd of the active
	 * queue; the loop notifies the device */
	CHECK_EQ(r->f.notify_calls[0], 0);
	CHECK(readable(r->vp.notify[0].efd));
	CHECK(!readable(r->vp.notify[1].efd)); /* not enabled */
	CHECK(loop_dispatch(&r->loop, r->vp.notify[0].efd));
	CHECK_EQ(r->f.notify_calls[0], 1);
	CHECK_EQ(r->f.notify_calls[1], 0);
	rig_free(r);
}

TEST(replay_before_the_bar_is_mapped)
{
	/* DRIVER_OK before the BAR was ever mapped (e.g. through the PCI_CFG
	 * window): the eventfds have been on the loop since creation */
	struct rig *r = rig_new(true);
	struct virtio_dev *d = &r->f.vd;
	for (int q = 0; q < F_NQ; q++) {
		CHECK(r->vp.notify[q].watched);
		CHECK(loop_handler_of(&r->loop, r->vp.notify[q].efd) != NULL);
	}
	CHECK_EQ(r->fp.nioe_add, 0);
	pthread_mutex_lock(&d->lock);
	CHECK_EQ(vf_negotiate(d, (1ull << F_FEATURE_BIT) | (1ull << VIRTIO_F_VERSION_1)),
		 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	d->queue_sel = 0;
	struct virtq *q = virtio_dev_selected_queue(d);
	q->size = 128;
	q->desc_gpa = RING_DESC;
	q->avail_gpa = RING_AVAIL;
	q->used_gpa = RING_USED;
	q->ready = true;
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&d->lock);
	CHECK(virtio_dev_is_live(d));
	CHECK_EQ(r->f.notify_calls[0], 0);
	CHECK(readable(r->vp.notify[0].efd));
	CHECK(loop_dispatch(&r->loop, r->vp.notify[0].efd));
	CHECK_EQ(r->f.notify_calls[0], 1);
	rig_free(r);
}

TEST(no_replay_without_a_loop)
{
	struct rig *r = rig_new(false);
	enable_bar(r);
	go_live(r);
	CHECK_EQ(r->f.notify_calls[0], 0);
	CHECK(!readable(r->vp.notify[0].efd));
	pthread_mutex_lock(&r->f.vd.lock);
	CHECK_EQ(r->f.vd.tops->replay_notify(&r->f.vd, 0), (unsigned long long)-ENOTCONN);
	CHECK_EQ(r->f.vd.tops->replay_notify(&r->f.vd, F_NQ), (unsigned long long)-EINVAL);
	pthread_mutex_unlock(&r->f.vd.lock);
	CHECK(virtio_dev_is_live(&r->f.vd));
	rig_free(r);
}

TEST(ioeventfd_failure_falls_back_to_exits)
{
	struct rig *r = rig_new(true);
	r->fp.ioe_fail = -ENOSYS;
	enable_bar(r);
	CHECK(!r->vp.notify[0].ioeventfd);
	CHECK(r->vp.notify[0].watched);
	go_live(r);
	wr(r, VIRTIO_PCI_NOTIFY_OFF, 2, 0);
	uint64_t cnt = 0;
	CHECK_EQ(read(r->vp.notify[0].efd, &cnt, sizeof(cnt)), (ssize_t)sizeof(cnt));
	rig_free(r);
}

/* ---- deferred set-up: vCPU threads make no set-up call ------------------------ */

struct vcpu_job {
	void (*fn)(struct rig *r);
	struct rig *r;
};

static void *vcpu_main(void *a)
{
	struct vcpu_job *j = a;
	j->fn(j->r);
	return NULL;
}

/* Run fn(r) on a new thread - the vCPU - and wait for it. */
static void on_vcpu(struct rig *r, void (*fn)(struct rig *r))
{
	struct vcpu_job j = {fn, r};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, vcpu_main, &j), 0);
	pthread_join(t, NULL);
}

#define BAR_MOVED (GPA_PCI_MMIO32 + 0x10000)
#define BAR_MOVED2 (GPA_PCI_MMIO32 + 0x20000)

static void vcpu_enable_bar_and_go_live(struct rig *r)
{
	enable_bar(r);
	go_live(r);
}

static void vcpu_kick_q0(struct rig *r)
{
	wr(r, VIRTIO_PCI_NOTIFY_OFF, 2, 0);
}

static void vcpu_move_bar(struct rig *r)
{
	cfgw(r, 0x10, 4, (uint32_t)BAR_MOVED | PCI_BAR_MEM_TYPE_64);
	r->bar = BAR_MOVED;
}

static void vcpu_move_bar_twice(struct rig *r)
{
	cfgw(r, 0x10, 4, (uint32_t)BAR_MOVED2 | PCI_BAR_MEM_TYPE_64);
	cfgw(r, 0x10, 4, (uint32_t)GPA_PCI_MMIO32 | PCI_BAR_MEM_TYPE_64);
	r->bar = GPA_PCI_MMIO32;
}

static void vcpu_decoding_off(struct rig *r)
{
	cfgw(r, PCI_COMMAND, 2, 0);
}

TEST(bar_move_handled_by_the_loop)
{
	struct rig *r = rig_new_ex(true, true);
	struct fake_plat *f = &r->fp;
	/* the notify eventfds are on the loop from creation */
	for (int q = 0; q < F_NQ; q++)
		CHECK(loop_handler_of(&r->loop, r->vp.notify[q].efd) != NULL);
	/* the guest enables decoding: the vCPU registers nothing itself */
	on_vcpu(r, vcpu_enable_bar_and_go_live);
	CHECK_EQ(f->nioe_add, 0);
	CHECK(r->vp.bar_work.queued);
	/* ordering (1): before the loop has registered the ioeventfds, a kick
	 * at the new address is an MMIO exit that reaches the same eventfd */
	CHECK(loop_dispatch(&r->loop, r->vp.notify[0].efd)); /* DRIVER_OK replay */
	CHECK_EQ(r->f.notify_calls[0], 1);
	on_vcpu(r, vcpu_kick_q0);
	CHECK_EQ(r->f.notify_calls[0], 1);
	CHECK(readable(r->vp.notify[0].efd));
	CHECK(loop_dispatch(&r->loop, r->vp.notify[0].efd));
	CHECK_EQ(r->f.notify_calls[0], 2);
	CHECK(pthread_equal(r->f.notify_thread, pthread_self()));
	/* the loop registers them */
	CHECK_EQ(fp_run_work(f), 1);
	CHECK_EQ(f->nioe_add, F_NQ);
	for (int q = 0; q < F_NQ; q++) {
		CHECK_EQ(f->ioe_add_addr[q], r->bar + VIRTIO_PCI_NOTIFY_OFF + 4u * q);
		CHECK_EQ(f->ioe_len[q], 0);
		CHECK_EQ(f->ioe_fd[q], r->vp.notify[q].efd);
		CHECK(pthread_equal(f->ioe_add_thread[q], pthread_self()));
		CHECK(r->vp.notify[q].ioeventfd);
	}
	/* the guest moves the BAR: the window moves at once, the ioeventfds
	 * when the loop runs */
	uint64_t old = r->bar;
	on_vcpu(r, vcpu_move_bar);
	CHECK_EQ(f->nioe_del, 0);
	CHECK_EQ(f->nioe_add, F_NQ);
	CHECK_EQ(rd(r, C(NUMQ), 2), F_NQ);
	CHECK_EQ(fp_run_work(f), 1);
	CHECK_EQ(f->nioe_del, F_NQ);
	CHECK_EQ(f->ioe_del_addr[0], old + VIRTIO_PCI_NOTIFY_OFF);
	CHECK(pthread_equal(f->ioe_del_thread[0], pthread_self()));
	CHECK_EQ(f->nioe_add, 2 * F_NQ);
	CHECK_EQ(f->ioe_add_addr[F_NQ + 1], BAR_MOVED + VIRTIO_PCI_NOTIFY_OFF + 4);
	CHECK(pthread_equal(f->ioe_add_thread[F_NQ + 1], pthread_self()));
	/* two moves before the loop runs: one re-registration, at the end */
	on_vcpu(r, vcpu_move_bar_twice);
	CHECK_EQ(fp_run_work(f), 1);
	CHECK_EQ(f->nioe_del, 2 * F_NQ);
	CHECK_EQ(f->nioe_add, 3 * F_NQ);
	CHECK_EQ(f->ioe_add_addr[2 * F_NQ], GPA_PCI_MMIO32 + VIRTIO_PCI_NOTIFY_OFF);
	/* decoding off */
	on_vcpu(r, vcpu_decoding_off);
	CHECK_EQ(f->nioe_del, 2 * F_NQ);
	CHECK_EQ(fp_run_work(f), 1);
	CHECK_EQ(f->nioe_del, 3 * F_NQ);
	CHECK(!r->vp.notify[0].ioeventfd);
	CHECK_EQ(f->off_loop_calls, 0);
	rig_free(r);
}

TEST(deferred_setup_runs_while_paused)
{
	/* set-up is not device I/O: the pause gate does not hold it back */
	struct rig *r = rig_new_ex(true, true);
	struct fake_plat *f = &r->fp;
	virtio_dev_pause(&r->f.vd);
	on_vcpu(r, vcpu_enable_bar_and_go_live);
	CHECK_EQ(fp_run_work(f), 1);
	CHECK_EQ(f->nioe_add, F_NQ);
	/* the replayed notification waits behind the gate */
	CHECK(loop_dispatch(&r->loop, r->vp.notify[0].efd));
	CHECK_EQ(r->f.notify_calls[0], 0);
	virtio_dev_resume(&r->f.vd);
	CHECK_EQ(r->f.notify_calls[0], 1);
	CHECK_EQ(f->off_loop_calls, 0);
	rig_free(r);
}

static void vcpu_msix_config_vector(struct rig *r)
{
	uint8_t c = r->vp.msix.cap;
	enable_bar(r);
	cfgw(r, c + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
	wr(r, VIRTIO_PCI_MSIX_TABLE_OFF, 4, 0xfee00000);
	wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 8, 4, 0x40);
	wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 12, 4, 0);
	wr(r, C(MSIX), 2, 0);
}

/* The guest retargets the config vector and, in the same breath, a status
 * write makes the device raise a config interrupt on this vCPU thread:
 * a queue whose ring lies outside RAM refuses activation at DRIVER_OK
 * and virtio.c marks the device broken (DEVICE_NEEDS_RESET). */
static void vcpu_retarget_then_config_irq(struct rig *r)
{
	wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 12, 4, 1);
	wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 4, 4, 0);
	wr(r, VIRTIO_PCI_MSIX_TABLE_OFF, 4, 0xfee01000);
	wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 8, 4, 0x47);
	wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 12, 4, 0);
	negotiate(r);
	wr(r, C(Q_SELECT), 2, 0);
	wr(r, C(Q_SIZE), 2, 128);
	wr(r, C(Q_DESC), 8, 0x7fff0000); /* not RAM */
	wr(r, C(Q_DRIVER), 8, RING_AVAIL);
	wr(r, C(Q_DEVICE), 8, RING_USED);
	wr(r, C(Q_ENABLE), 2, 1);
	set_status(r, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			      VIRTIO_STATUS_DRIVER_OK);
}

TEST(config_interrupt_from_a_vcpu_uses_the_new_message)
{
	struct rig *r = rig_new_ex(true, true);
	struct fake_plat *f = &r->fp;
	on_vcpu(r, vcpu_msix_config_vector);
	CHECK_EQ(f->nupdate, 0);
	fp_run_work(f);
	CHECK_EQ(f->nupdate, 1);
	CHECK_EQ(f->route_data[0], 0x40);
	on_vcpu(r, vcpu_retarget_then_config_irq);
	CHECK(virtio_dev_get_status(&r->f.vd) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	/* not through the stale route */
	CHECK(!readable(f->fds[0]));
	CHECK_EQ(r->vp.msix.via_loop, 1);
	fp_run_work(f);
	CHECK_EQ(f->route_addr[0], 0xfee01000);
	CHECK_EQ(f->route_data[0], 0x47);
	uint64_t cnt = 0;
	CHECK_EQ(read(f->fds[0], &cnt, sizeof(cnt)), (ssize_t)sizeof(cnt));
	CHECK_EQ(cnt, 1);
	CHECK_EQ(f->nsend, 0);
	CHECK_EQ(f->off_loop_calls, 0);
	rig_free(r);
}

TEST(driver_session_makes_no_setup_call_on_the_vcpu)
{
	/* end to end: this thread is the vCPU, a real loop runs beside it */
	struct rig *r = rig_new_ex(true, true);
	struct fake_plat *f = &r->fp;
	struct loop_runner lr;
	CHECK_EQ(loop_runner_start(&lr, &r->loop), 0);
	f->loop_thread = lr.thread;
	uint8_t c = r->vp.msix.cap;
	enable_bar(r);
	cfgw(r, c + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	for (uint32_t v = 0; v < F_NQ + 1; v++) {
		wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 16 * v, 8, 0xfee00000);
		wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 16 * v + 8, 4, 0x40 + v);
		wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 16 * v + 12, 4, 0);
	}
	cfgw(r, c + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
	wr(r, C(MSIX), 2, 0);
	negotiate(r);
	setup_queue(r, 0, 128);
	wr(r, C(Q_MSIX), 2, 1);
	set_status(r, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			      VIRTIO_STATUS_DRIVER_OK);
	/* wait for the loop: ioeventfds registered, routes programmed, the
	 * DRIVER_OK replay handled */
	bool done = false;
	for (int i = 0; i < 2000 && !done; i++) {
		pthread_mutex_lock(&r->f.vd.lock);
		done = r->f.notify_calls[0] == 1;
		pthread_mutex_unlock(&r->f.vd.lock);
		done = done && __atomic_load_n(&f->nioe_add, __ATOMIC_ACQUIRE) == F_NQ &&
		       __atomic_load_n(&f->nupdate, __ATOMIC_ACQUIRE) == F_NQ + 1;
		if (!done)
			usleep(1000);
	}
	CHECK(done);
	/* the routes are current: a queue and a config interrupt raised here
	 * only write their eventfds */
	pthread_mutex_lock(&r->f.vd.lock);
	r->f.vd.tops->signal_queue(&r->f.vd, 0);
	r->f.vd.tops->signal_config(&r->f.vd);
	pthread_mutex_unlock(&r->f.vd.lock);
	CHECK_EQ(loop_runner_stop(&lr), 0);
	CHECK(pthread_equal(r->f.notify_thread, lr.thread));
	CHECK_EQ(efd_read(f->fds[1]), 1);
	CHECK_EQ(efd_read(f->fds[0]), 1);
	for (int q = 0; q < F_NQ; q++)
		CHECK(pthread_equal(f->ioe_add_thread[q], lr.thread));
	for (int i = 0; i < F_NQ + 1; i++)
		CHECK(pthread_equal(f->update_thread[i], lr.thread));
	CHECK_EQ(f->nsend, 0);
	CHECK_EQ(f->off_loop_calls, 0);
	rig_free(r);
}

TEST(device_config_window)
{
	struct rig *r = rig_new(false);
	enable_bar(r);
	for (uint32_t off = 0; off < 0x40; off++) {
		for (uint32_t len = 1; len <= 8; len *= 2) {
			uint64_t want = 0;
			for (uint32_t i = 0; i < len; i++)
				if (off + i < F_CFG_SIZE)
					want |= (uint64_t)r->f.config[off + i] << (8 * i);
			CHECK_EQ(rd(r, VIRTIO_PCI_DEVICE_OFF + off, len), want);
		}
	}
	wr(r, VIRTIO_PCI_DEVICE_OFF + 4, 4, 0x11223344);
	CHECK_EQ(rd(r, VIRTIO_PCI_DEVICE_OFF + 4, 4), 0x11223344);
	CHECK_EQ(r->f.config[4], 0x44);
	/* the region's last bytes; crossing into the notify region: 0, ignored */
	CHECK_EQ(rd(r, VIRTIO_PCI_DEVICE_OFF + 0xfff, 1), 0);
	int writes = r->f.cfg_writes;
	wr(r, VIRTIO_PCI_DEVICE_OFF + 0xffc, 8, UINT64_MAX);
	CHECK_EQ(r->f.cfg_writes, writes);
	CHECK_EQ(rd(r, VIRTIO_PCI_DEVICE_OFF + 0xffc, 8), 0);
	rig_free(r);
}

/* Every width at every offset of every region is defined: common config
 * reads equal the composition of its byte reads; reserved bytes are 0. */
TEST(common_field_table)
{
	/* the table the transport decodes with: the fields of struct
	 * virtio_pci_common_cfg in order, back to back, none past the end */
	size_t n = virtio_pci_common_nfields();
	CHECK_EQ(n, 18);
	uint32_t next = 0;
	for (size_t i = 0; i < n; i++) {
		const struct virtio_pci_field *f = virtio_pci_common_field(i);
		CHECK(f != NULL);
		if (!f)
			return;
		CHECK_EQ(f->off, next);
		CHECK(f->len == 1 || f->len == 2 || f->len == 4 || f->len == 8);
		next = f->off + f->len;
	}
	CHECK_EQ(next, VIRTIO_PCI_COMMON_Q_RESET + 2);
	CHECK(next <= VIRTIO_PCI_COMMON_LEN);
	CHECK(virtio_pci_common_field(n) == NULL);
	CHECK_EQ(virtio_pci_common_field(13)->off, VIRTIO_PCI_COMMON_Q_DESC);
	CHECK_EQ(virtio_pci_common_field(13)->len, 8);
}

TEST(every_width_every_offset)
{
	struct rig *r = rig_new(false);
	enable_bar(r);
	negotiate(r);
	wr(r, C(Q_SELECT), 2, 1);
	wr(r, C(Q_DESC), 8, 0x123456789abcdef0ull & ~0xfull);
	wr(r, C(MSIX), 2, 1);
	uint8_t bytes[0x1000];
	for (uint32_t i = 0; i < 0x1000; i++)
		bytes[i] = (uint8_t)rd(r, C(DFSELECT) + i, 1);
	for (uint32_t i = VIRTIO_PCI_COMMON_LEN; i < 0x1000; i++)
		CHECK_EQ(bytes[i], 0);
	CHECK_EQ(bytes[VIRTIO_PCI_COMMON_NUMQ], F_NQ);
	for (uint32_t off = 0; off < 0x1000; off++) {
		for (uint32_t len = 1; len <= 8; len *= 2) {
			uint64_t want = 0;
			if (off + len <= 0x1000)
				for (uint32_t i = 0; i < len; i++)
					want |= (uint64_t)bytes[off + i] << (8 * i);
			uint64_t got = rd(r, off, len);
			if (got != want)
				printf("  common off 0x%x len %u\n", off, len);
			CHECK_EQ(got, want);
		}
	}
	/* ISR region: only byte 0 is non-zero (and it is 0 now) */
	for (uint32_t off = 0; off < 0x1000; off += 1)
		for (uint32_t len = 1; len <= 8; len *= 2)
			CHECK_EQ(rd(r, VIRTIO_PCI_ISR_OFF + off, len), 0);
	/* notify region and the reserved tail read 0 */
	for (uint32_t off = 0; off < 0x1000; off++)
		for (uint32_t len = 1; len <= 8; len *= 2) {
			CHECK_EQ(rd(r, VIRTIO_PCI_NOTIFY_OFF + off, len), 0);
			CHECK_EQ(rd(r, 0x6000 + off, len), 0);
			/* past the BAR's end the bus decodes nothing: all-ones */
			CHECK_EQ(rd(r, 0x7000 + off, len),
				 off + len <= 0x1000 ? 0 : (len == 8 ? UINT64_MAX : (1ull << (8 * len)) - 1));
		}
	/* MSI-X table: masked entries; unaligned reads 0 */
	CHECK_EQ(rd(r, VIRTIO_PCI_MSIX_TABLE_OFF + 12, 4), 1);
	CHECK_EQ(rd(r, VIRTIO_PCI_MSIX_TABLE_OFF + 13, 1), 0);
	CHECK_EQ(rd(r, VIRTIO_PCI_MSIX_TABLE_OFF + 16 * (F_NQ + 1) + 12, 4), 0);
	CHECK_EQ(rd(r, VIRTIO_PCI_MSIX_PBA_OFF, 8), 0);
	/* writes of every width at every common offset never crash and only
	 * exact-field writes land: write garbage everywhere but status */
	for (uint32_t off = 0; off < 0x40; off++) {
		if (off == VIRTIO_PCI_COMMON_STATUS)
			continue;
		for (uint32_t len = 1; len <= 8; len *= 2)
			if ((off & (len - 1)) || len == 1)
				wr(r, off, len, UINT64_MAX);
	}
	CHECK_EQ(rd(r, C(MSIX), 2), 1);
	CHECK_EQ(rd(r, C(Q_SELECT), 2), 1);
	CHECK_EQ(rd(r, C(STATUS), 1), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					     VIRTIO_STATUS_FEATURES_OK);
	rig_free(r);
}

TEST(interrupts_and_isr)
{
	struct rig *r = rig_new(false);
	struct fake_plat *f = &r->fp;
	struct virtio_dev *d = &r->f.vd;
	enable_bar(r);
	go_live(r);
	uint8_t c = r->vp.msix.cap;
	/* MSI-X off: the queue interrupt only sets ISR bit 0 */
	pthread_mutex_lock(&d->lock);
	d->tops->signal_queue(d, 0);
	pthread_mutex_unlock(&d->lock);
	CHECK_EQ(rd(r, VIRTIO_PCI_ISR_OFF, 1), VIRTIO_PCI_ISR_QUEUE);
	CHECK_EQ(rd(r, VIRTIO_PCI_ISR_OFF, 1), 0); /* read clears */
	/* MSI-X on, vectors: config 0, queue 0 -> 1 */
	cfgw(r, c + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
	for (uint32_t v = 0; v < 2; v++) {
		wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 16 * v, 4, 0xfee00000);
		wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 16 * v + 8, 4, 0x40 + v);
		wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 16 * v + 12, 4, 0);
	}
	/* a route per vector since creation, programmed on unmask (no loop
	 * here: on this thread) */
	CHECK_EQ(f->nalloc, F_NQ + 1);
	CHECK_EQ(f->nupdate, 2);
	CHECK_EQ(f->route_data[0], 0x40);
	CHECK_EQ(f->route_data[1], 0x41);
	wr(r, C(MSIX), 2, 0);
	wr(r, C(Q_SELECT), 2, 0);
	wr(r, C(Q_MSIX), 2, 1);
	pthread_mutex_lock(&d->lock);
	d->tops->signal_queue(d, 0);
	pthread_mutex_unlock(&d->lock);
	uint64_t cnt = 0;
	CHECK_EQ(read(f->fds[1], &cnt, sizeof(cnt)), (ssize_t)sizeof(cnt));
	CHECK_EQ(cnt, 1);
	CHECK_EQ(rd(r, VIRTIO_PCI_ISR_OFF, 1), 0); /* no ISR bit with MSI-X */
	/* config change: ISR bit 1 and the config vector */
	pthread_mutex_lock(&d->lock);
	d->tops->signal_config(d);
	pthread_mutex_unlock(&d->lock);
	CHECK_EQ(read(f->fds[0], &cnt, sizeof(cnt)), (ssize_t)sizeof(cnt));
	CHECK_EQ(cnt, 1);
	CHECK_EQ(rd(r, VIRTIO_PCI_ISR_OFF, 4), VIRTIO_PCI_ISR_CONFIG);
	CHECK_EQ(rd(r, VIRTIO_PCI_ISR_OFF, 4), 0);
	/* masked vector: pending, delivered through its route on unmask */
	wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 16 + 12, 4, 1);
	pthread_mutex_lock(&d->lock);
	d->tops->signal_queue(d, 0);
	pthread_mutex_unlock(&d->lock);
	CHECK_EQ(rd(r, VIRTIO_PCI_MSIX_PBA_OFF, 8), 2);
	CHECK(!readable(f->fds[1]));
	wr(r, VIRTIO_PCI_MSIX_TABLE_OFF + 16 + 12, 4, 0);
	CHECK_EQ(read(f->fds[1], &cnt, sizeof(cnt)), (ssize_t)sizeof(cnt));
	CHECK_EQ(cnt, 1);
	CHECK_EQ(rd(r, VIRTIO_PCI_MSIX_PBA_OFF, 8), 0);
	CHECK_EQ(f->nsend, 0);
	/* NO_VECTOR: nothing at all */
	wr(r, C(Q_MSIX), 2, VIRTIO_MSI_NO_VECTOR);
	pthread_mutex_lock(&d->lock);
	d->tops->signal_queue(d, 0);
	pthread_mutex_unlock(&d->lock);
	CHECK(!readable(f->fds[1]));
	CHECK_EQ(f->nsend, 0);
	CHECK_EQ(rd(r, VIRTIO_PCI_ISR_OFF, 1), 0);
	/* reset clears ISR and vectors */
	pthread_mutex_lock(&d->lock);
	d->tops->signal_config(d);
	pthread_mutex_unlock(&d->lock);
	set_status(r, 0);
	CHECK_EQ(rd(r, VIRTIO_PCI_ISR_OFF, 1), 0);
	CHECK_EQ(rd(r, C(MSIX), 2), VIRTIO_MSI_NO_VECTOR);
	/* ISR is read-only */
	pthread_mutex_lock(&d->lock);
	d->tops->signal_config(d);
	pthread_mutex_unlock(&d->lock);
	wr(r, VIRTIO_PCI_ISR_OFF, 1, 0);
	CHECK_EQ(rd(r, VIRTIO_PCI_ISR_OFF + 1, 1), 0); /* not byte 0: no clear */
	CHECK_EQ(rd(r, VIRTIO_PCI_ISR_OFF, 2), VIRTIO_PCI_ISR_CONFIG);
	rig_free(r);
}

TEST(pci_cfg_access_capability)
{
	struct rig *r = rig_new(false);
	uint8_t c = r->vp.cap_pci_cfg;
	/* works with the BAR unmapped (that is its purpose) */
	cfgw(r, c + VIRTIO_PCI_CAP_BAR, 1, 0);
	cfgw(r, c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_COMMON_NUMQ);
	cfgw(r, c + VIRTIO_PCI_CAP_LENGTH, 4, 2);
	CHECK_EQ(cfgr(r, c + VIRTIO_PCI_CFG_CAP_DATA, 2), F_NQ);
	CHECK_EQ(cfgr(r, c + VIRTIO_PCI_CAP_OFFSET, 4), VIRTIO_PCI_COMMON_NUMQ);
	/* a write: device status ACKNOWLEDGE */
	cfgw(r, c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_COMMON_STATUS);
	cfgw(r, c + VIRTIO_PCI_CAP_LENGTH, 4, 1);
	cfgw(r, c + VIRTIO_PCI_CFG_CAP_DATA, 4, VIRTIO_STATUS_ACKNOWLEDGE);
	CHECK_EQ(virtio_dev_get_status(&r->f.vd), VIRTIO_STATUS_ACKNOWLEDGE);
	CHECK_EQ(cfgr(r, c + VIRTIO_PCI_CFG_CAP_DATA, 1), VIRTIO_STATUS_ACKNOWLEDGE);
	/* device config through the window */
	cfgw(r, c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_DEVICE_OFF + 4);
	cfgw(r, c + VIRTIO_PCI_CAP_LENGTH, 4, 4);
	CHECK_EQ(cfgr(r, c + VIRTIO_PCI_CFG_CAP_DATA, 4),
		 r->f.config[4] | r->f.config[5] << 8 | r->f.config[6] << 16 |
			 (uint32_t)r->f.config[7] << 24);
	/* invalid windows: data reads 0, writes do nothing */
	const struct {
		uint8_t bar;
		uint32_t off, len;
	} bad[] = {{1, VIRTIO_PCI_DEVICE_OFF, 4},  {0, VIRTIO_PCI_DEVICE_OFF + 1, 4},
		   {0, VIRTIO_PCI_DEVICE_OFF, 3},  {0, VIRTIO_PCI_DEVICE_OFF, 8},
		   {0, VIRTIO_PCI_BAR_SIZE, 4},    {0, 0xfffffffc, 4},
		   {0, VIRTIO_PCI_DEVICE_OFF, 0}};
	for (int i = 0; i < 7; i++) {
		cfgw(r, c + VIRTIO_PCI_CAP_BAR, 1, bad[i].bar);
		cfgw(r, c + VIRTIO_PCI_CAP_OFFSET, 4, bad[i].off);
		cfgw(r, c + VIRTIO_PCI_CAP_LENGTH, 4, bad[i].len);
		CHECK_EQ(cfgr(r, c + VIRTIO_PCI_CFG_CAP_DATA, 4), 0);
		int w = r->f.cfg_writes;
		cfgw(r, c + VIRTIO_PCI_CFG_CAP_DATA, 4, 0xdeadbeef);
		CHECK_EQ(r->f.cfg_writes, w);
	}
	/* the rest of the capability is read-only */
	cfgw(r, c + VIRTIO_PCI_CAP_CFG_TYPE, 1, 1);
	CHECK_EQ(cfgr(r, c + VIRTIO_PCI_CAP_CFG_TYPE, 1), VIRTIO_PCI_CAP_PCI_CFG);
	rig_free(r);
}

TEST(create_validation)
{
	struct rig *r = rig_new(false);
	struct virtio_pci *vp2 = calloc(1, sizeof(*vp2));
	CHECK_EQ(virtio_pci_create(vp2, NULL, &r->f.vd, &r->fp.p, -1), (unsigned long long)-EINVAL);
	CHECK_EQ(virtio_pci_create(vp2, &r->pb, NULL, &r->fp.p, -1), (unsigned long long)-EINVAL);
	/* slot taken: fails, leaves nothing behind */
	struct vf_dev *f2 = calloc(1, sizeof(*f2));
	CHECK_EQ(vf_dev_init(f2, F_FEATURES, F_CFG_SIZE, "f2", VIRTIO_ID_RNG, 1, 64, &r->mem, NULL),
		 0);
	CHECK_EQ(virtio_pci_create(vp2, &r->pb, &f2->vd, &r->fp.p, r->slot),
		 (unsigned long long)-EBUSY);
	CHECK(f2->vd.tops == NULL);
	CHECK_EQ(virtio_pci_create(vp2, &r->pb, &f2->vd, &r->fp.p, -1), 2);
	CHECK_EQ(pci_cfg_read(&r->pb, 0, PCI_DEVFN(2, 0), PCI_DEVICE_ID, 2), 0x1044);
	CHECK_EQ(pci_cfg_read(&r->pb, 0, PCI_DEVFN(2, 0), PCI_CLASS_DEVICE, 2), 0xff00);
	/* its BAR follows the first device's in the window */
	CHECK_EQ(pci_bar_address(&vp2->pd, 0), GPA_PCI_MMIO32 + VIRTIO_PCI_BAR_SIZE);
	virtio_pci_destroy(vp2);
	virtio_pci_destroy(vp2); /* idempotent */
	virtio_dev_destroy(&f2->vd);
	free(f2);
	free(vp2);
	rig_free(r);
}

TEST_MAIN()
