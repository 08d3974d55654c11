/* SPDX-License-Identifier: MIT */
/*
 * Snapshot state of the PCI function model (pci_dev_state_*, pci_bus_state_*)
 * and of the two virtio transports (virtio_pci_state_*, virtio_mmio_state_*).
 * A transport is set up through its registers as a driver does, saved with
 * the virtio core into one section, restored into a fresh transport and
 * device, and then answers every register read the same, has its BAR where
 * the first one had it (ioeventfds following), keeps its MSI-X table and
 * pending bits, and delivers the next interrupt with the restored message.
 * Every rule of the decoders refuses its bad value, every truncated or
 * padded payload is refused, and a refused state changes nothing.
 */
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../src/arch/x86/layout.h"
#include "../../src/devices/virtio/virtio_mmio.h"
#include "../../src/devices/virtio/virtio_pci.h"
#include "../../src/event/loop.h"
#include "../../src/util/log.h"
#include "msi_fake.h"
#include "test.h"
#include "virtio_fake.h"

static char err[256];

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

/* ---- a payload through a real state file ---------------------------------- */

struct blob {
	uint8_t *buf;
	size_t len;
	const uint8_t *p;
	size_t plen;
};

static void section_begin(struct snap_writer *w)
{
	snap_writer_init(w);
	CHECK_EQ(snap_writer_section_begin(w, "x", 1), 0);
}

/* Close the section, build the file, read it back: b->p/plen is the
 * payload as a loader sees it. */
static void section_end(struct snap_writer *w, struct blob *b)
{
	memset(b, 0, sizeof(*b));
	CHECK_EQ(snap_writer_section_end(w), 0);
	CHECK_EQ(snap_writer_finish(w, &b->buf, &b->len), 0);
	struct snap_reader rd;
	CHECK_EQ(snap_reader_open(b->buf, b->len, &rd, err, sizeof(err)), 0);
	CHECK_EQ(snap_reader_find(&rd, "x", NULL, &b->p, &b->plen), 0);
}

/* A decoder of one payload: 0 or -EINVAL, the cursor checked at the end. */
typedef int (*decode_fn)(const uint8_t *p, size_t len, void *ctx);

/* Every proper prefix of @b's payload, and the payload plus a zero byte,
 * are refused with a message. */
static void check_lengths(const struct blob *b, decode_fn fn, void *ctx)
{
	CHECK_EQ(fn(b->p, b->plen, ctx), 0);
	for (size_t n = 0; n < b->plen; n++) {
		err[0] = 0;
		int rc = fn(b->p, n, ctx);
		if (rc != -EINVAL)
			printf("  prefix of %zu bytes (of %zu) not refused\n", n, b->plen);
		CHECK_EQ(rc, -EINVAL);
		CHECK(err[0] != 0);
	}
	uint8_t *big = calloc(1, b->plen + 1);
	memcpy(big, b->p, b->plen);
	err[0] = 0;
	CHECK_EQ(fn(big, b->plen + 1, ctx), -EINVAL);
	CHECK(err[0] != 0);
	free(big);
}

static void check_message(const char *what)
{
	if (!strstr(err, what))
		printf("  message \"%s\" does not name \"%s\"\n", err, what);
	CHECK(strstr(err, what) != NULL);
}

/* ---- virtio-pci rig --------------------------------------------------------- */

#define F_NQ 2
#define F_NVEC (F_NQ + 1)
#define F_QMAX 256
#define F_CFG_SIZE 24
#define F_FEATURE_BIT 5
#define F_FEATURES (1ull << F_FEATURE_BIT)
#define RING_DESC 0x10000
#define RING_AVAIL 0x20000
#define RING_USED 0x30000
#define PCI_MEM 0x200000
#define BAR_MOVED (GPA_PCI_MMIO32 + 0x10000)
#define MSG_ADDR(v) (0xfee00000u | ((uint32_t)(v) << 12))
#define MSG_DATA(v) (0x40u + (v))

struct prig {
	struct bus pio, mmio;
	struct pci_bus pb;
	struct fake_plat fp;
	struct guest_mem mem;
	struct loop loop;
	struct vf_dev f;
	struct virtio_pci vp;
	int slot;
	uint64_t bar;
};

/* A bus, a recording platform deferring set-up to a loop this thread
 * plays (fp_run_work), and a fake block device on virtio-pci in slot 1. */
static struct prig *prig_new(void)
{
	log_set_level(LOG_ERROR);
	struct prig *r = calloc(1, sizeof(*r));
	bus_init(&r->pio, "pio");
	bus_init(&r->mmio, "mmio");
	fp_init(&r->fp, &r->pio, &r->mmio);
	CHECK_EQ(loop_init(&r->loop), 0);
	CHECK_EQ(fp_enable_defer(&r->fp, &r->loop), 0);
	CHECK_EQ(guest_mem_init(&r->mem, PCI_MEM, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	CHECK_EQ(pci_bus_init(&r->pb, &r->mmio, GPA_PCI_MMIO32, PCI_MMIO32_SIZE, NULL, NULL), 0);
	CHECK_EQ(bus_register(&r->pio, &r->pb.pio_dev, PORT_PCI_CONFIG, PORT_PCI_CONFIG_LEN), 0);
	CHECK_EQ(vf_dev_init(&r->f, F_FEATURES, F_CFG_SIZE, "fake", VIRTIO_ID_BLOCK, F_NQ, F_QMAX,
			     &r->mem, &r->loop),
		 0);
	for (int i = 0; i < F_CFG_SIZE; i++)
		r->f.config[i] = (uint8_t)(0xa0 + i);
	r->slot = virtio_pci_create(&r->vp, &r->pb, &r->f.vd, &r->fp.p, -1);
	CHECK_EQ(r->slot, 1);
	r->bar = pci_bar_address(&r->vp.pd, VIRTIO_PCI_BAR);
	return r;
}

static void prig_free(struct prig *r)
{
	virtio_pci_destroy(&r->vp);
	virtio_dev_destroy(&r->f.vd);
	bus_unregister(&r->pio, &r->pb.pio_dev);
	pci_bus_destroy(&r->pb);
	guest_mem_destroy(&r->mem);
	fp_destroy(&r->fp);
	loop_destroy(&r->loop);
	free(r);
}

static uint32_t cfgr(struct prig *r, uint32_t reg, uint32_t len)
{
	return pci_cfg_read(&r->pb, 0, PCI_DEVFN(r->slot, 0), reg, len);
}

static void cfgw(struct prig *r, uint32_t reg, uint32_t len, uint32_t v)
{
	pci_cfg_write(&r->pb, 0, PCI_DEVFN(r->slot, 0), reg, len, v);
}

static uint64_t rd(struct prig *r, uint64_t off, uint32_t len)
{
	uint64_t v = 0;
	bus_access(&r->mmio, r->bar + off, &v, len, false);
	return v;
}

static void wr(struct prig *r, uint64_t off, uint32_t len, uint64_t v)
{
	bus_access(&r->mmio, r->bar + off, &v, len, true);
}

#define C(x) (VIRTIO_PCI_COMMON_OFF + VIRTIO_PCI_COMMON_##x)
#define TABLE(v, field) (VIRTIO_PCI_MSIX_TABLE_OFF + 16u * (v) + (field))
#define STATUS_FEATURES_OK \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK)

/* What a driver does: the BAR moved and decoding on, scratch registers
 * and the PCI_CFG window set, MSI-X programmed (vector v at MSG_ADDR(v) /
 * MSG_DATA(v), vector 2 masked), features negotiated, queue 0 up with
 * vector 1, queue 1 sized with vector 2 but not enabled, DRIVER_OK; then
 * queue 1's interrupt (pending: its vector is masked) and a config change
 * (ISR bit 1, vector 0).  The loop has caught up at the end. */
static void pci_session(struct prig *r)
{
	cfgw(r, PCI_BASE_ADDRESS_0, 4, (uint32_t)BAR_MOVED | PCI_BAR_MEM_TYPE_64);
	cfgw(r, PCI_BASE_ADDRESS_0 + 4, 4, 0);
	cfgw(r, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	r->bar = BAR_MOVED;
	cfgw(r, PCI_CACHE_LINE_SIZE, 1, 0x10);
	cfgw(r, PCI_INTERRUPT_LINE, 1, 0x0b);
	uint8_t pc = r->vp.cap_pci_cfg;
	cfgw(r, pc + VIRTIO_PCI_CAP_BAR, 1, VIRTIO_PCI_BAR);
	cfgw(r, pc + VIRTIO_PCI_CAP_OFFSET, 4, C(STATUS));
	cfgw(r, pc + VIRTIO_PCI_CAP_LENGTH, 4, 1);
	uint8_t c = r->vp.msix.cap;
	cfgw(r, c + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	for (uint32_t v = 0; v < F_NVEC; v++) {
		wr(r, TABLE(v, PCI_MSIX_ENTRY_ADDR_LO), 4, MSG_ADDR(v));
		wr(r, TABLE(v, PCI_MSIX_ENTRY_ADDR_HI), 4, 0);
		wr(r, TABLE(v, PCI_MSIX_ENTRY_DATA), 4, MSG_DATA(v));
		wr(r, TABLE(v, PCI_MSIX_ENTRY_CTRL), 4, v == 2 ? PCI_MSIX_ENTRY_CTRL_MASK : 0);
	}
	cfgw(r, c + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);

	wr(r, C(STATUS), 1, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(r, C(STATUS), 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(r, C(GFSELECT), 4, 0);
	wr(r, C(GF), 4, 1u << F_FEATURE_BIT);
	wr(r, C(GFSELECT), 4, 1);
	wr(r, C(GF), 4, 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(r, C(STATUS), 1, STATUS_FEATURES_OK);
	wr(r, C(MSIX), 2, 0);
	wr(r, C(Q_SELECT), 2, 0);
	wr(r, C(Q_SIZE), 2, 128);
	wr(r, C(Q_DESC), 8, RING_DESC);
	wr(r, C(Q_DRIVER), 8, RING_AVAIL);
	wr(r, C(Q_DEVICE), 8, RING_USED);
	wr(r, C(Q_MSIX), 2, 1);
	wr(r, C(Q_ENABLE), 2, 1);
	wr(r, C(Q_SELECT), 2, 1);
	wr(r, C(Q_SIZE), 2, 64);
	wr(r, C(Q_MSIX), 2, 2);
	wr(r, C(STATUS), 1, STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);

	struct virtio_dev *d = &r->f.vd;
	pthread_mutex_lock(&d->lock);
	d->tops->signal_queue(d, 1);
	virtio_dev_config_changed(d);
	pthread_mutex_unlock(&d->lock);
	fp_run_work(&r->fp);
}

static struct virtio_pci_state pst_a, pst_b, pst_c;
static struct virtio_dev_state dst_a, dst_b;

/* Transport then core, as the machine writes them into one section. */
static void pci_save(struct prig *r, struct blob *b)
{
	CHECK_EQ(virtio_pci_state_get(&r->vp, &pst_a), 0);
	CHECK_EQ(virtio_dev_state_get(&r->f.vd, &dst_a), 0);
	struct snap_writer w;
	section_begin(&w);
	virtio_pci_state_encode(&pst_a, &w);
	virtio_dev_state_encode(&dst_a, &w);
	section_end(&w, b);
}

static int pci_load(const struct blob *b, struct prig *r)
{
	struct snap_cursor c;
	snap_cursor_init(&c, b->p, b->plen);
	err[0] = 0;
	int rc = virtio_pci_state_decode(&c, &r->vp, &pst_b, err, sizeof(err));
	if (!rc)
		rc = virtio_dev_state_decode(&c, &r->f.vd, &dst_b, err, sizeof(err));
	if (!rc)
		rc = snap_cursor_done(&c, "x", err, sizeof(err));
	return rc;
}

/* The same reads of config space and of the BAR (common configuration
 * for each queue, MSI-X table and PBA) give the same values. */
static void pci_same_reads(struct prig *a, struct prig *b)
{
	for (uint32_t reg = 0; reg < PCI_CFG_SIZE; reg += 4)
		CHECK_EQ(cfgr(a, reg, 4), cfgr(b, reg, 4));
	for (uint16_t q = 0; q <= F_NQ; q++) {
		wr(a, C(Q_SELECT), 2, q);
		wr(b, C(Q_SELECT), 2, q);
		for (uint32_t off = 0; off < VIRTIO_PCI_COMMON_LEN; off += 4)
			CHECK_EQ(rd(a, off, 4), rd(b, off, 4));
	}
	wr(a, C(Q_SELECT), 2, 1);
	wr(b, C(Q_SELECT), 2, 1);
	for (uint32_t off = 0; off < PCI_MSIX_TABLE_SIZE(F_NVEC); off += 4)
		CHECK_EQ(rd(a, VIRTIO_PCI_MSIX_TABLE_OFF + off, 4),
			 rd(b, VIRTIO_PCI_MSIX_TABLE_OFF + off, 4));
	CHECK_EQ(rd(a, VIRTIO_PCI_MSIX_PBA_OFF, 8), rd(b, VIRTIO_PCI_MSIX_PBA_OFF, 8));
}

TEST(virtio_pci_round_trip_same_registers_bar_and_interrupts)
{
	struct prig *a = prig_new(), *b = prig_new();
	pci_session(a);
	CHECK_EQ(rd(a, VIRTIO_PCI_MSIX_PBA_OFF, 8), 1u << 2);
	CHECK_EQ(a->vp.isr, VIRTIO_PCI_ISR_CONFIG);

	struct blob bl;
	pci_save(a, &bl);
	CHECK_EQ(pst_a.pci.nvec, F_NVEC);
	CHECK_EQ(pst_a.config_vec, 0);
	CHECK_EQ(pst_a.queue_vec[0], 1);
	CHECK_EQ(pst_a.queue_vec[1], 2);
	CHECK_EQ(pst_a.isr, VIRTIO_PCI_ISR_CONFIG);
	CHECK_EQ(pst_a.pci.pba[0], 1u << 2);
	CHECK_EQ(pst_a.pci.vec[1].data, MSG_DATA(1));
	/* the memory file: guest RAM as it was */
	memcpy(vf_hva(&b->mem, 0, PCI_MEM), vf_hva(&a->mem, 0, PCI_MEM), PCI_MEM);
	CHECK_EQ(pci_load(&bl, b), 0);
	CHECK(!memcmp(&pst_a, &pst_b, sizeof(pst_a)));
	CHECK_EQ(virtio_pci_state_put(&b->vp, &pst_b), 0);
	CHECK_EQ(virtio_dev_state_put(&b->f.vd, &dst_b), 0);
	virtio_dev_state_restart(&b->f.vd);
	/* the BAR is on the bus at once; the loop moves the ioeventfds there
	 * and programs the routes of the deliverable vectors */
	CHECK_EQ(pci_bar_address(&b->vp.pd, VIRTIO_PCI_BAR), BAR_MOVED);
	CHECK_EQ(b->vp.pd.bars[VIRTIO_PCI_BAR].mapped_gpa, BAR_MOVED);
	CHECK_EQ(b->vp.bar_gpa, BAR_MOVED);
	CHECK(bus_find(&b->mmio, BAR_MOVED, 1) != NULL);
	CHECK(bus_find(&b->mmio, GPA_PCI_MMIO32, 1) == NULL);
	b->bar = BAR_MOVED;
	CHECK_EQ(b->fp.nioe_add, 0);
	CHECK(fp_run_work(&b->fp) >= 1);
	CHECK_EQ(b->fp.nioe_add, F_NQ);
	for (uint16_t q = 0; q < F_NQ; q++) {
		CHECK_EQ(b->fp.ioe_add_addr[q], BAR_MOVED + VIRTIO_PCI_NOTIFY_OFF + 4u * q);
		CHECK_EQ(b->fp.ioe_fd[q], b->vp.notify[q].efd);
		CHECK(b->vp.notify[q].ioeventfd);
	}
	for (uint32_t v = 0; v < 2; v++) {
		CHECK(b->fp.routed[v]);
		CHECK_EQ(b->fp.route_addr[v], MSG_ADDR(v));
		CHECK_EQ(b->fp.route_data[v], MSG_DATA(v));
	}
	CHECK(!b->fp.routed[2]); /* masked: programmed when unmasked */
	CHECK_EQ(b->fp.off_loop_calls, 0);
	/* nothing fired at restore: the pending vector is still masked */
	for (int v = 0; v < F_NVEC; v++)
		CHECK(!readable(b->fp.fds[v]));
	CHECK(pci_msix_enabled(&b->vp.msix));
	CHECK(!b->vp.msix.masked);

	pci_same_reads(a, b);
	CHECK_EQ(rd(b, VIRTIO_PCI_MSIX_PBA_OFF, 8), 1u << 2);
	CHECK_EQ(rd(b, C(STATUS), 1), STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	CHECK_EQ(rd(b, C(MSIX), 2), 0);
	/* the ISR byte, read (and cleared) the same way */
	CHECK_EQ(rd(a, VIRTIO_PCI_ISR_OFF, 1), VIRTIO_PCI_ISR_CONFIG);
	CHECK_EQ(rd(b, VIRTIO_PCI_ISR_OFF, 1), VIRTIO_PCI_ISR_CONFIG);
	CHECK_EQ(rd(b, VIRTIO_PCI_ISR_OFF, 1), 0);

	/* queue 0's interrupt after restore: vector 1's restored message,
	 * through its route */
	pthread_mutex_lock(&b->f.vd.lock);
	b->f.vd.tops->signal_queue(&b->f.vd, 0);
	pthread_mutex_unlock(&b->f.vd.lock);
	CHECK_EQ(efd_read(b->fp.fds[1]), 1);
	/* the driver unmasks vector 2: its pending interrupt goes out (via
	 * the loop, which programs the route first) with its message */
	wr(b, TABLE(2, PCI_MSIX_ENTRY_CTRL), 4, 0);
	CHECK_EQ(rd(b, VIRTIO_PCI_MSIX_PBA_OFF, 8), 0);
	CHECK(fp_run_work(&b->fp) >= 1);
	CHECK(b->fp.routed[2]);
	CHECK_EQ(b->fp.route_addr[2], MSG_ADDR(2));
	CHECK_EQ(b->fp.route_data[2], MSG_DATA(2));
	CHECK_EQ(efd_read(b->fp.fds[2]), 1);
	CHECK_EQ(b->fp.nsend, 0);
	/* a notify at the restored BAR reaches queue 0 (an exit here: the
	 * same eventfd the ioeventfd signals) */
	efd_read(b->vp.notify[0].efd);
	wr(b, VIRTIO_PCI_NOTIFY_OFF, 2, 0);
	CHECK_EQ(efd_read(b->vp.notify[0].efd), 1);

	/* the original does the same and both end in the same state */
	pthread_mutex_lock(&a->f.vd.lock);
	a->f.vd.tops->signal_queue(&a->f.vd, 0);
	pthread_mutex_unlock(&a->f.vd.lock);
	wr(a, TABLE(2, PCI_MSIX_ENTRY_CTRL), 4, 0);
	fp_run_work(&a->fp);
	CHECK_EQ(virtio_pci_state_get(&a->vp, &pst_a), 0);
	CHECK_EQ(virtio_pci_state_get(&b->vp, &pst_c), 0);
	CHECK(!memcmp(&pst_a, &pst_c, sizeof(pst_a)));
	CHECK_EQ(b->fp.off_loop_calls, 0);
	free(bl.buf);
	prig_free(a);
	prig_free(b);
}

TEST(virtio_pci_fresh_device_round_trip_leaves_the_bar_unmapped)
{
	struct prig *a = prig_new(), *b = prig_new();
	struct blob bl;
	pci_save(a, &bl);
	CHECK_EQ(pst_a.config_vec, VIRTIO_MSI_NO_VECTOR);
	CHECK_EQ(pci_load(&bl, b), 0);
	CHECK_EQ(virtio_pci_state_put(&b->vp, &pst_b), 0);
	CHECK_EQ(virtio_dev_state_put(&b->f.vd, &dst_b), 0);
	fp_run_work(&b->fp);
	CHECK_EQ(b->vp.pd.bars[VIRTIO_PCI_BAR].mapped_gpa, PCI_BAR_UNMAPPED);
	CHECK_EQ(b->fp.nioe_add, 0);
	CHECK_EQ(b->fp.nupdate, 0);
	CHECK(!pci_msix_enabled(&b->vp.msix));
	pci_same_reads(a, b);
	free(bl.buf);
	prig_free(a);
	prig_free(b);
}

TEST(virtio_pci_interrupt_waiting_for_the_loop_is_delivered_after_restore)
{
	struct prig *a = prig_new(), *b = prig_new();
	pci_session(a);
	/* the driver retargets vector 1 and the device fires it before the
	 * loop has updated the route: the interrupt waits for the loop */
	wr(a, TABLE(1, PCI_MSIX_ENTRY_DATA), 4, 0x77);
	pthread_mutex_lock(&a->f.vd.lock);
	a->f.vd.tops->signal_queue(&a->f.vd, 0);
	pthread_mutex_unlock(&a->f.vd.lock);
	CHECK(a->vp.msix.deferred[0] & (1u << 1));
	CHECK(!readable(a->fp.fds[1]));
	/* saved as pending, since the loop has not run */
	struct blob bl;
	pci_save(a, &bl);
	CHECK_EQ(pst_a.pci.pba[0], (1u << 1) | (1u << 2));
	memcpy(vf_hva(&b->mem, 0, PCI_MEM), vf_hva(&a->mem, 0, PCI_MEM), PCI_MEM);
	CHECK_EQ(pci_load(&bl, b), 0);
	CHECK_EQ(virtio_pci_state_put(&b->vp, &pst_b), 0);
	CHECK_EQ(virtio_dev_state_put(&b->f.vd, &dst_b), 0);
	b->bar = BAR_MOVED;
	fp_run_work(&b->fp);
	/* delivered once, with the new message; vector 2 stays pending */
	CHECK_EQ(b->fp.route_data[1], 0x77);
	CHECK_EQ(efd_read(b->fp.fds[1]), 1);
	CHECK_EQ(rd(b, VIRTIO_PCI_MSIX_PBA_OFF, 8), 1u << 2);
	CHECK_EQ(b->fp.off_loop_calls, 0);
	free(bl.buf);
	prig_free(a);
	prig_free(b);
}

/* ---- virtio-pci refusals -------------------------------------------------- */

static struct prig *ref_a;

/* Mutate the state of a driven rig and check that a fresh rig refuses it
 * naming @what and is left as it was. */
static void pci_refused(void (*mutate)(struct virtio_pci_state *), const char *what)
{
	struct prig *b = prig_new();
	static uint8_t cfg_before[PCI_CFG_SIZE];
	CHECK_EQ(virtio_pci_state_get(&ref_a->vp, &pst_a), 0);
	mutate(&pst_a);
	struct snap_writer w;
	section_begin(&w);
	virtio_pci_state_encode(&pst_a, &w);
	struct blob bl;
	section_end(&w, &bl);
	memcpy(cfg_before, b->vp.pd.cfg, PCI_CFG_SIZE);
	struct snap_cursor c;
	snap_cursor_init(&c, bl.p, bl.plen);
	err[0] = 0;
	int rc = virtio_pci_state_decode(&c, &b->vp, &pst_b, err, sizeof(err));
	if (!rc)
		rc = snap_cursor_done(&c, "x", err, sizeof(err));
	CHECK_EQ(rc, -EINVAL);
	check_message(what);
	CHECK(!memcmp(cfg_before, b->vp.pd.cfg, PCI_CFG_SIZE));
	CHECK_EQ(b->vp.config_vec, VIRTIO_MSI_NO_VECTOR);
	CHECK_EQ(b->vp.msix.vec[0].data, 0);
	free(bl.buf);
	prig_free(b);
}

static uint8_t cap_of(uint8_t id)
{
	const struct pci_dev *pd = &ref_a->vp.pd;
	for (uint8_t p = pd->cfg[PCI_CAPABILITY_LIST]; p; p = pd->cfg[p + 1])
		if (pd->cfg[p] == id)
			return p;
	return 0;
}

static void m_vendor(struct virtio_pci_state *s) { s->pci.cfg[PCI_VENDOR_ID] ^= 1; }
static void m_device(struct virtio_pci_state *s) { s->pci.cfg[PCI_DEVICE_ID] ^= 1; }
static void m_class(struct virtio_pci_state *s) { s->pci.cfg[PCI_CLASS_DEVICE + 1] = 0x02; }
static void m_command_io(struct virtio_pci_state *s) { s->pci.cfg[PCI_COMMAND] |= PCI_COMMAND_IO; }
static void m_status(struct virtio_pci_state *s) { s->pci.cfg[PCI_STATUS] &= (uint8_t)~PCI_STATUS_CAP_LIST; }
static void m_header(struct virtio_pci_state *s) { s->pci.cfg[PCI_HEADER_TYPE] = 0x80; }
static void m_bar_type(struct virtio_pci_state *s) { s->pci.cfg[PCI_BASE_ADDRESS_0] &= (uint8_t)~PCI_BAR_MEM_TYPE_64; }
static void m_bar_prefetch(struct virtio_pci_state *s) { s->pci.cfg[PCI_BASE_ADDRESS_0] |= PCI_BAR_MEM_PREFETCH; }
static void m_bar_size(struct virtio_pci_state *s) { s->pci.cfg[PCI_BASE_ADDRESS_0 + 1] |= 0x10; }
static void m_bar2(struct virtio_pci_state *s) { s->pci.cfg[PCI_BASE_ADDRESS_0 + 8 + 3] = 0xd0; }
static void m_rom(struct virtio_pci_state *s) { s->pci.cfg[PCI_ROM_ADDRESS + 3] = 0xd0; }
static void m_cap_ptr(struct virtio_pci_state *s) { s->pci.cfg[PCI_CAPABILITY_LIST] = 0x50; }
static void m_int_pin(struct virtio_pci_state *s) { s->pci.cfg[PCI_INTERRUPT_PIN] = 1; }
static void m_msix_size(struct virtio_pci_state *s) { s->pci.cfg[cap_of(PCI_CAP_ID_MSIX) + PCI_MSIX_FLAGS] ^= 4; }
static void m_msix_bir(struct virtio_pci_state *s) { s->pci.cfg[cap_of(PCI_CAP_ID_MSIX) + PCI_MSIX_TABLE] |= 2; }
static void m_vcap_offset(struct virtio_pci_state *s) { s->pci.cfg[cap_of(PCI_CAP_ID_VNDR) + VIRTIO_PCI_CAP_OFFSET + 1] = 0x20; }
static void m_unused(struct virtio_pci_state *s) { s->pci.cfg[PCI_CFG_SIZE - 1] = 1; }
static void m_nvec(struct virtio_pci_state *s) { s->pci.nvec = F_NVEC - 1; }
static void m_nvec_more(struct virtio_pci_state *s) { s->pci.nvec = F_NVEC + 1; }
static void m_nvec_huge(struct virtio_pci_state *s) { s->pci.nvec = 0xffff; }
static void m_addr_lo(struct virtio_pci_state *s) { s->pci.vec[1].addr_lo |= 1; }
static void m_ctrl(struct virtio_pci_state *s) { s->pci.vec[2].ctrl |= 0x100; }
static void m_pba_above(struct virtio_pci_state *s) { s->pci.pba[0] |= 1ull << F_NVEC; }
static void m_pba_top(struct virtio_pci_state *s) { s->pci.pba[0] |= 1ull << 63; }
static void m_config_vec(struct virtio_pci_state *s) { s->config_vec = F_NVEC; }
static void m_queue_vec(struct virtio_pci_state *s) { s->queue_vec[1] = 0x8000; }
static void m_queues(struct virtio_pci_state *s) { s->num_queues = F_NQ - 1; }
static void m_isr(struct virtio_pci_state *s) { s->isr |= 4; }

TEST(virtio_pci_refuses_what_the_guest_could_not_have_written)
{
	ref_a = prig_new();
	pci_session(ref_a);
	pci_refused(m_vendor, "vendor ID");
	pci_refused(m_device, "device ID");
	pci_refused(m_class, "class code");
	pci_refused(m_command_io, "command");
	pci_refused(m_status, "status");
	pci_refused(m_header, "header type");
	pci_refused(m_bar_type, "BAR0");
	pci_refused(m_bar_prefetch, "BAR0");
	pci_refused(m_bar_size, "BAR0");
	pci_refused(m_bar2, "BAR2");
	pci_refused(m_rom, "expansion ROM");
	pci_refused(m_cap_ptr, "capability pointer");
	pci_refused(m_int_pin, "interrupt pin");
	pci_refused(m_msix_size, "capability 0x11");
	pci_refused(m_msix_bir, "capability 0x11");
	pci_refused(m_vcap_offset, "capability 0x09");
	pci_refused(m_unused, "unused");
	pci_refused(m_nvec, "vectors");
	pci_refused(m_nvec_more, "vectors");
	pci_refused(m_nvec_huge, "vectors");
	pci_refused(m_addr_lo, "address");
	pci_refused(m_ctrl, "vector control");
	pci_refused(m_pba_above, "PBA");
	pci_refused(m_pba_top, "PBA");
	pci_refused(m_config_vec, "config vector");
	pci_refused(m_queue_vec, "queue 1 vector");
	pci_refused(m_queues, "queues");
	pci_refused(m_isr, "ISR");
	prig_free(ref_a);
}

TEST(virtio_pci_accepts_every_value_the_guest_can_write)
{
	/* writable bits take any value, vectors may be NO_VECTOR or the last
	 * one, both ISR bits may be set */
	struct prig *a = prig_new(), *b = prig_new();
	pci_session(a);
	CHECK_EQ(virtio_pci_state_get(&a->vp, &pst_a), 0);
	for (uint32_t i = 0; i < PCI_CFG_SIZE; i++)
		pst_a.pci.cfg[i] = (uint8_t)((pst_a.pci.cfg[i] & ~a->vp.pd.wmask[i]) |
					     (0x5a & a->vp.pd.wmask[i]));
	pst_a.config_vec = F_NVEC - 1;
	pst_a.queue_vec[0] = VIRTIO_MSI_NO_VECTOR;
	pst_a.isr = VIRTIO_PCI_ISR_QUEUE | VIRTIO_PCI_ISR_CONFIG;
	pst_a.pci.vec[0].addr_hi = 0xffffffff;
	pst_a.pci.vec[0].data = 0xffffffff;
	pst_a.pci.pba[0] = (1u << F_NVEC) - 1;
	struct snap_writer w;
	section_begin(&w);
	virtio_pci_state_encode(&pst_a, &w);
	struct blob bl;
	section_end(&w, &bl);
	struct snap_cursor c;
	snap_cursor_init(&c, bl.p, bl.plen);
	CHECK_EQ(virtio_pci_state_decode(&c, &b->vp, &pst_b, err, sizeof(err)), 0);
	CHECK_EQ(snap_cursor_done(&c, "x", err, sizeof(err)), 0);
	CHECK(!memcmp(&pst_a, &pst_b, sizeof(pst_a)));
	free(bl.buf);
	prig_free(a);
	prig_free(b);
}

static int pci_decode_only(const uint8_t *p, size_t len, void *ctx)
{
	struct prig *r = ctx;
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	int rc = virtio_pci_state_decode(&c, &r->vp, &pst_b, err, sizeof(err));
	return rc ? rc : snap_cursor_done(&c, "x", err, sizeof(err));
}

TEST(virtio_pci_truncated_or_padded_payloads_are_refused)
{
	struct prig *a = prig_new(), *b = prig_new();
	pci_session(a);
	CHECK_EQ(virtio_pci_state_get(&a->vp, &pst_a), 0);
	struct snap_writer w;
	section_begin(&w);
	virtio_pci_state_encode(&pst_a, &w);
	struct blob bl;
	section_end(&w, &bl);
	/* cfg 256, nvec 2, 3 vectors x 16, PBA 8, config vector 2, queue
	 * count 2, 2 queue vectors x 2, ISR 1 */
	CHECK_EQ(bl.plen, 256 + 2 + F_NVEC * 16 + 8 + 2 + 2 + F_NQ * 2 + 1);
	check_lengths(&bl, pci_decode_only, b);
	free(bl.buf);
	prig_free(a);
	prig_free(b);
}

TEST(virtio_pci_put_refuses_a_state_of_another_shape)
{
	struct prig *a = prig_new();
	CHECK_EQ(virtio_pci_state_get(&a->vp, &pst_a), 0);
	pst_a.num_queues = F_NQ + 1;
	CHECK_EQ(virtio_pci_state_put(&a->vp, &pst_a), -EINVAL);
	CHECK_EQ(virtio_pci_state_get(&a->vp, &pst_a), 0);
	pst_a.pci.nvec = 1;
	CHECK_EQ(virtio_pci_state_put(&a->vp, &pst_a), -EINVAL);
	CHECK_EQ(pci_dev_state_put(&a->vp.pd, &pst_a.pci), -EINVAL);
	prig_free(a);
}

/* ---- the bus: CONFIG_ADDRESS and the host bridge --------------------------- */

static struct pci_bus_state bst_a, bst_b;

static void cf8_write(struct prig *r, uint32_t v)
{
	bus_access(&r->pio, PORT_PCI_CONFIG, &v, 4, true);
}

static uint32_t cf8_read(struct prig *r)
{
	uint32_t v = 0;
	bus_access(&r->pio, PORT_PCI_CONFIG, &v, 4, false);
	return v;
}

static void bus_encode(struct blob *bl)
{
	struct snap_writer w;
	section_begin(&w);
	pci_bus_state_encode(&bst_a, &w);
	section_end(&w, bl);
}

static int bus_decode(const uint8_t *p, size_t len, void *ctx)
{
	struct prig *r = ctx;
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	int rc = pci_bus_state_decode(&c, &r->pb, &bst_b, err, sizeof(err));
	return rc ? rc : snap_cursor_done(&c, "x", err, sizeof(err));
}

TEST(pci_bus_round_trip_config_address_and_host_bridge)
{
	struct prig *a = prig_new(), *b = prig_new();
	/* the guest set up an access to 00:01.0 register 0x10, and wrote the
	 * host bridge's writable registers */
	pci_cfg_write(&a->pb, 0, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	pci_cfg_write(&a->pb, 0, 0, PCI_INTERRUPT_LINE, 1, 0x0a);
	cf8_write(a, 0x80000810);
	pci_bus_state_get(&a->pb, &bst_a);
	CHECK_EQ(bst_a.config_address, 0x80000810);
	CHECK_EQ(bst_a.host.nvec, 0);
	struct blob bl;
	bus_encode(&bl);
	CHECK_EQ(bl.plen, 4 + 256 + 2);
	check_lengths(&bl, bus_decode, b);
	CHECK_EQ(bus_decode(bl.p, bl.plen, b), 0);
	CHECK_EQ(pci_bus_state_put(&b->pb, &bst_b), 0);
	CHECK_EQ(cf8_read(b), 0x80000810);
	for (uint32_t reg = 0; reg < PCI_CFG_SIZE; reg += 4)
		CHECK_EQ(pci_cfg_read(&a->pb, 0, 0, reg, 4), pci_cfg_read(&b->pb, 0, 0, reg, 4));
	/* the access the guest was making reads the same register */
	uint32_t va = 0, vb = 0;
	bus_access(&a->pio, PORT_PCI_CONFIG + 4, &va, 4, false);
	bus_access(&b->pio, PORT_PCI_CONFIG + 4, &vb, 4, false);
	CHECK_EQ(va, vb);
	CHECK_EQ(va & ~0xfu, GPA_PCI_MMIO32);
	free(bl.buf);

	/* refusals: bits CONFIG_ADDRESS keeps 0, a read-only host bridge byte */
	pci_bus_state_get(&a->pb, &bst_a);
	bst_a.config_address |= 1;
	bus_encode(&bl);
	CHECK_EQ(bus_decode(bl.p, bl.plen, b), -EINVAL);
	check_message("CONFIG_ADDRESS");
	free(bl.buf);
	pci_bus_state_get(&a->pb, &bst_a);
	bst_a.config_address |= 1u << 24;
	bus_encode(&bl);
	CHECK_EQ(bus_decode(bl.p, bl.plen, b), -EINVAL);
	check_message("CONFIG_ADDRESS");
	free(bl.buf);
	pci_bus_state_get(&a->pb, &bst_a);
	bst_a.host.cfg[PCI_DEVICE_ID] ^= 0x80;
	bus_encode(&bl);
	CHECK_EQ(bus_decode(bl.p, bl.plen, b), -EINVAL);
	check_message("device ID");
	free(bl.buf);
	/* compared eight bytes at a time: the byte named is the one that
	 * differs, inside its word (0x03) and in the last word (0xff), also
	 * beside a writable byte that differs too */
	pci_bus_state_get(&a->pb, &bst_a);
	bst_a.host.cfg[PCI_COMMAND] ^= PCI_COMMAND_IO;
	bst_a.host.cfg[PCI_DEVICE_ID + 1] ^= 0x01;
	bus_encode(&bl);
	CHECK_EQ(bus_decode(bl.p, bl.plen, b), -EINVAL);
	check_message("byte 0x03 (device ID)");
	free(bl.buf);
	pci_bus_state_get(&a->pb, &bst_a);
	bst_a.host.cfg[0xff] ^= 0x40;
	bus_encode(&bl);
	CHECK_EQ(bus_decode(bl.p, bl.plen, b), -EINVAL);
	check_message("byte 0xff (unused)");
	free(bl.buf);
	pci_bus_state_get(&a->pb, &bst_a);
	bst_a.host.nvec = 1;
	bus_encode(&bl);
	CHECK_EQ(bus_decode(bl.p, bl.plen, b), -EINVAL);
	check_message("vectors");
	free(bl.buf);
	prig_free(a);
	prig_free(b);
}

/* ---- virtio-mmio ----------------------------------------------------------------- */

#define M_FEATURES ((1ull << 0) | (1ull << 5))
#define M_CFG_SIZE 12
#define M_NQ 2
#define M_QMAX 256
#define M_MEM (1u << 20)
#define M_BASE VIRTIO_MMIO_DEV_BASE(3)
#define M_GSI VIRTIO_MMIO_DEV_GSI(3)
#define M_DESC1 0x40000
#define M_DRIVER1 0x41000
#define M_DEVICE1 0x42000

struct mplat {
	struct platform p;
	struct bus mmio;
	int irqfd;
};

static int mp_irqfd_for_gsi(struct platform *p, uint32_t gsi, int *fd)
{
	struct mplat *m = (struct mplat *)(void *)p;
	if (m->irqfd < 0)
		m->irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	*fd = m->irqfd;
	return m->irqfd < 0 ? -errno : 0;
}

static const struct platform_ops mp_ops = {
	.irqfd_for_gsi = mp_irqfd_for_gsi,
};

struct mrig {
	struct guest_mem mem;
	struct mplat mp;
	struct vf_dev f;
	struct virtio_mmio t;
};

static struct mrig *mrig_new(void)
{
	log_set_level(LOG_ERROR);
	struct mrig *r = calloc(1, sizeof(*r));
	CHECK_EQ(guest_mem_init(&r->mem, M_MEM, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	r->mp.irqfd = -1;
	bus_init(&r->mp.mmio, "mmio");
	r->mp.p.ops = &mp_ops;
	r->mp.p.mmio = &r->mp.mmio;
	CHECK_EQ(vf_dev_init(&r->f, M_FEATURES, M_CFG_SIZE, "fake", VIRTIO_ID_RNG, M_NQ, M_QMAX,
			     &r->mem, NULL),
		 0);
	for (int i = 0; i < M_CFG_SIZE; i++)
		r->f.config[i] = (uint8_t)(0x10 + i);
	CHECK_EQ(virtio_mmio_init(&r->t, &r->f.vd, &r->mp.p, M_BASE, M_GSI), 0);
	return r;
}

static void mrig_free(struct mrig *r)
{
	virtio_mmio_destroy(&r->t);
	virtio_dev_destroy(&r->f.vd);
	guest_mem_destroy(&r->mem);
	if (r->mp.irqfd >= 0)
		close(r->mp.irqfd);
	free(r);
}

static uint32_t mr(struct mrig *r, uint64_t off)
{
	uint32_t v = 0;
	bus_access(&r->mp.mmio, M_BASE + off, &v, 4, false);
	return v;
}

static void mw(struct mrig *r, uint64_t off, uint32_t v)
{
	bus_access(&r->mp.mmio, M_BASE + off, &v, 4, true);
}

static void mqueue(struct mrig *r, uint32_t q, uint32_t num, uint64_t desc, uint64_t drv,
		   uint64_t dev)
{
	mw(r, VIRTIO_MMIO_QUEUE_SEL, q);
	mw(r, VIRTIO_MMIO_QUEUE_NUM, num);
	mw(r, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	mw(r, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	mw(r, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)drv);
	mw(r, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(drv >> 32));
	mw(r, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)dev);
	mw(r, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(dev >> 32));
}

/* A driver half-way through set-up: features accepted, queue 0 enabled,
 * queue 1's registers written but not yet enabled, QueueSel 1. */
static void mmio_half_set_up(struct mrig *r)
{
	mw(r, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	mw(r, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mw(r, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mw(r, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)M_FEATURES);
	mw(r, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mw(r, VIRTIO_MMIO_DRIVER_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
	mw(r, VIRTIO_MMIO_STATUS, STATUS_FEATURES_OK);
	mqueue(r, 0, 128, RING_DESC, RING_AVAIL, RING_USED);
	mw(r, VIRTIO_MMIO_QUEUE_READY, 1);
	mqueue(r, 1, 64, M_DESC1, M_DRIVER1, M_DEVICE1);
	mw(r, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
}

static struct virtio_mmio_state mst_a, mst_b;

static void mmio_save(struct mrig *r, struct blob *b)
{
	CHECK_EQ(virtio_mmio_state_get(&r->t, &mst_a), 0);
	CHECK_EQ(virtio_dev_state_get(&r->f.vd, &dst_a), 0);
	struct snap_writer w;
	section_begin(&w);
	virtio_mmio_state_encode(&mst_a, &w);
	virtio_dev_state_encode(&dst_a, &w);
	section_end(&w, b);
}

static int mmio_load(const struct blob *b, struct mrig *r)
{
	struct snap_cursor c;
	snap_cursor_init(&c, b->p, b->plen);
	err[0] = 0;
	int rc = virtio_mmio_state_decode(&c, &r->t, &mst_b, err, sizeof(err));
	if (!rc)
		rc = virtio_dev_state_decode(&c, &r->f.vd, &dst_b, err, sizeof(err));
	if (!rc)
		rc = snap_cursor_done(&c, "x", err, sizeof(err));
	if (!rc)
		rc = virtio_mmio_state_check(&mst_b, &dst_b, err, sizeof(err));
	return rc;
}

static void mmio_restore(const struct blob *bl, struct mrig *a, struct mrig *b)
{
	memcpy(vf_hva(&b->mem, 0, M_MEM), vf_hva(&a->mem, 0, M_MEM), M_MEM);
	CHECK_EQ(mmio_load(bl, b), 0);
	CHECK(!memcmp(&mst_a, &mst_b, sizeof(mst_a)));
	CHECK_EQ(virtio_mmio_state_put(&b->t, &mst_b), 0);
	CHECK_EQ(virtio_dev_state_put(&b->f.vd, &dst_b), 0);
	virtio_dev_state_restart(&b->f.vd);
}

/* Every register of the window reads the same, for each QueueSel. */
static void mmio_same_reads(struct mrig *a, struct mrig *b)
{
	for (uint32_t off = 0; off < VIRTIO_MMIO_CONFIG; off += 4)
		CHECK_EQ(mr(a, off), mr(b, off));
	uint32_t sel = a->t.queue_sel;
	CHECK_EQ(sel, b->t.queue_sel);
	for (uint32_t q = 0; q <= M_NQ; q++) {
		mw(a, VIRTIO_MMIO_QUEUE_SEL, q);
		mw(b, VIRTIO_MMIO_QUEUE_SEL, q);
		CHECK_EQ(mr(a, VIRTIO_MMIO_QUEUE_NUM_MAX), mr(b, VIRTIO_MMIO_QUEUE_NUM_MAX));
		CHECK_EQ(mr(a, VIRTIO_MMIO_QUEUE_READY), mr(b, VIRTIO_MMIO_QUEUE_READY));
	}
	mw(a, VIRTIO_MMIO_QUEUE_SEL, sel);
	mw(b, VIRTIO_MMIO_QUEUE_SEL, sel);
}

/* Queue @q of both devices holds the same (geometry and ring state). */
static void same_queue(struct mrig *a, struct mrig *b, int q)
{
	static struct virtq_state x, y;
	virtq_state_get(&a->f.vd.vqs[q], &x);
	virtq_state_get(&b->f.vd.vqs[q], &y);
	CHECK(!memcmp(&x, &y, sizeof(x)));
}

TEST(virtio_mmio_round_trip_half_way_through_set_up_carries_on)
{
	struct mrig *a = mrig_new(), *b = mrig_new();
	mmio_half_set_up(a);
	struct blob bl;
	mmio_save(a, &bl);
	CHECK_EQ(mst_a.queue_sel, 1);
	/* the queues' registers are the core's queues, ready or not */
	CHECK_EQ(dst_a.vqs[0].ready, 1);
	CHECK_EQ(dst_a.vqs[0].size, 128);
	CHECK_EQ(dst_a.vqs[1].ready, 0);
	CHECK_EQ(dst_a.vqs[1].size, 64);
	CHECK_EQ(dst_a.vqs[1].desc_gpa, M_DESC1);
	CHECK_EQ(dst_a.vqs[1].avail_gpa, M_DRIVER1);
	CHECK_EQ(dst_a.vqs[1].used_gpa, M_DEVICE1);
	mmio_restore(&bl, a, b);
	CHECK_EQ(b->f.vd.queue_sel, 1);
	mmio_same_reads(a, b);
	CHECK_EQ(mr(b, VIRTIO_MMIO_QUEUE_READY), 0);
	same_queue(a, b, 1);
	/* the driver enables queue 1 with what it wrote before the snapshot,
	 * then DRIVER_OK: the restored device takes the same geometry */
	for (int i = 0; i < 2; i++) {
		struct mrig *r = i ? b : a;
		mw(r, VIRTIO_MMIO_QUEUE_READY, 1);
		mw(r, VIRTIO_MMIO_STATUS, STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	}
	CHECK(b->f.vd.vqs[1].active);
	CHECK_EQ(b->f.vd.vqs[1].size, 64);
	CHECK_EQ(b->f.vd.vqs[1].desc_gpa, M_DESC1);
	CHECK_EQ(b->f.vd.vqs[1].avail_gpa, M_DRIVER1);
	CHECK_EQ(b->f.vd.vqs[1].used_gpa, M_DEVICE1);
	CHECK_EQ(b->f.activate_calls, 1);
	mmio_same_reads(a, b);
	CHECK_EQ(virtio_dev_state_get(&a->f.vd, &dst_a), 0);
	CHECK_EQ(virtio_dev_state_get(&b->f.vd, &dst_b), 0);
	CHECK(!memcmp(&dst_a, &dst_b, sizeof(dst_a)));
	CHECK_EQ(virtio_mmio_state_get(&a->t, &mst_a), 0);
	CHECK_EQ(virtio_mmio_state_get(&b->t, &mst_b), 0);
	CHECK(!memcmp(&mst_a, &mst_b, sizeof(mst_a)));
	free(bl.buf);
	mrig_free(a);
	mrig_free(b);
}

TEST(virtio_mmio_round_trip_interrupt_status_and_edges)
{
	struct mrig *a = mrig_new(), *b = mrig_new();
	mmio_half_set_up(a);
	mw(a, VIRTIO_MMIO_STATUS, STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	mw(a, VIRTIO_MMIO_QUEUE_SEL, 0x7fffffff); /* names no queue */
	pthread_mutex_lock(&a->f.vd.lock);
	virtio_dev_config_changed(&a->f.vd);
	pthread_mutex_unlock(&a->f.vd.lock);
	CHECK_EQ(efd_read(a->mp.irqfd), 1);
	CHECK_EQ(mr(a, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	struct blob bl;
	mmio_save(a, &bl);
	CHECK_EQ(mst_a.queue_sel, 0x7fffffff);
	CHECK_EQ(dst_a.queue_sel, 0xffff);
	mmio_restore(&bl, a, b);
	/* no edge at restore: the one fired is in the saved interrupt
	 * controller state */
	CHECK(!readable(b->mp.irqfd));
	mmio_same_reads(a, b);
	CHECK_EQ(mr(b, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	CHECK_EQ(mr(b, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	/* a bit still set fires nothing; after the ACK the next one does */
	pthread_mutex_lock(&b->f.vd.lock);
	virtio_dev_config_changed(&b->f.vd);
	pthread_mutex_unlock(&b->f.vd.lock);
	CHECK(!readable(b->mp.irqfd));
	mw(b, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	CHECK_EQ(mr(b, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	pthread_mutex_lock(&b->f.vd.lock);
	b->f.vd.tops->signal_queue(&b->f.vd, 0);
	pthread_mutex_unlock(&b->f.vd.lock);
	CHECK_EQ(efd_read(b->mp.irqfd), 1);
	CHECK_EQ(mr(b, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	free(bl.buf);
	mrig_free(a);
	mrig_free(b);
}

TEST(virtio_mmio_reset_wait_restored_drops_old_bits_at_the_next_access)
{
	struct mrig *a = mrig_new(), *b = mrig_new();
	mmio_half_set_up(a);
	mw(a, VIRTIO_MMIO_STATUS, STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	/* a reset with I/O in flight: not saveable until it completes */
	a->f.reset_ret = -EINPROGRESS;
	mw(a, VIRTIO_MMIO_STATUS, 0);
	CHECK_EQ(virtio_mmio_state_get(&a->t, &mst_a), -EBUSY);
	/* an interrupt of the old session, then the reset completes; the
	 * snapshot is taken before the driver's next access */
	pthread_mutex_lock(&a->f.vd.lock);
	a->f.vd.tops->signal_queue(&a->f.vd, 0);
	pthread_mutex_unlock(&a->f.vd.lock);
	virtio_dev_reset_done(&a->f.vd);
	struct blob bl;
	mmio_save(a, &bl);
	CHECK_EQ(mst_a.reset_wait, 1);
	CHECK_EQ(mst_a.interrupt_status, VIRTIO_MMIO_INT_VRING);
	mmio_restore(&bl, a, b);
	CHECK_EQ(mr(a, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	CHECK_EQ(mr(b, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	CHECK(!b->t.reset_wait);
	free(bl.buf);
	mrig_free(a);
	mrig_free(b);
}

/* ---- virtio-mmio refusals ---------------------------------------------------- */

static struct mrig *mref_a;

static void mmio_refused(void (*mutate)(struct virtio_mmio_state *), const char *what)
{
	struct mrig *b = mrig_new();
	CHECK_EQ(virtio_mmio_state_get(&mref_a->t, &mst_a), 0);
	mutate(&mst_a);
	struct snap_writer w;
	section_begin(&w);
	virtio_mmio_state_encode(&mst_a, &w);
	struct blob bl;
	section_end(&w, &bl);
	struct snap_cursor c;
	snap_cursor_init(&c, bl.p, bl.plen);
	err[0] = 0;
	int rc = virtio_mmio_state_decode(&c, &b->t, &mst_b, err, sizeof(err));
	if (!rc)
		rc = snap_cursor_done(&c, "x", err, sizeof(err));
	CHECK_EQ(rc, -EINVAL);
	check_message(what);
	/* nothing applied */
	CHECK_EQ(b->t.queue_sel, 0);
	CHECK_EQ(b->t.interrupt_status, 0);
	CHECK(!b->t.reset_wait);
	free(bl.buf);
	mrig_free(b);
}

static void mm_int(struct virtio_mmio_state *s) { s->interrupt_status |= 4; }
static void mm_int_high(struct virtio_mmio_state *s) { s->interrupt_status |= 1u << 31; }
static void mm_reset_wait(struct virtio_mmio_state *s) { s->reset_wait = 2; }

TEST(virtio_mmio_refuses_what_the_transport_cannot_hold)
{
	mref_a = mrig_new();
	mmio_half_set_up(mref_a);
	mmio_refused(mm_int, "interrupt status");
	mmio_refused(mm_int_high, "interrupt status");
	mmio_refused(mm_reset_wait, "reset wait");
	mrig_free(mref_a);
}

/* The queue registers are the core's queues now: what the transport used
 * to refuse of them (a ready queue without a size a QueueNum write could
 * give it) the core's decode refuses, with the transport's part valid. */
static void mmio_core_refused(void (*mutate)(struct virtio_dev_state *), const char *what)
{
	struct mrig *b = mrig_new();
	CHECK_EQ(virtio_mmio_state_get(&mref_a->t, &mst_a), 0);
	CHECK_EQ(virtio_dev_state_get(&mref_a->f.vd, &dst_a), 0);
	mutate(&dst_a);
	struct snap_writer w;
	section_begin(&w);
	virtio_mmio_state_encode(&mst_a, &w);
	virtio_dev_state_encode(&dst_a, &w);
	struct blob bl;
	section_end(&w, &bl);
	CHECK_EQ(mmio_load(&bl, b), -EINVAL);
	check_message(what);
	CHECK_EQ(b->f.vd.vqs[0].size, M_QMAX); /* nothing applied */
	CHECK(!b->f.vd.vqs[0].ready);
	free(bl.buf);
	mrig_free(b);
}

static void mq_ready(struct virtio_dev_state *s) { s->vqs[1].ready = 2; }
static void mq_pow2(struct virtio_dev_state *s) { s->vqs[0].size = 96; }
static void mq_max(struct virtio_dev_state *s) { s->vqs[0].size = 2 * M_QMAX; }
static void mq_zero(struct virtio_dev_state *s) { s->vqs[0].size = 0; }

TEST(virtio_mmio_queue_registers_are_checked_as_the_core_queues)
{
	mref_a = mrig_new();
	mmio_half_set_up(mref_a);
	mmio_core_refused(mq_ready, "flag");
	mmio_core_refused(mq_pow2, "size 96");
	mmio_core_refused(mq_max, "size 512");
	mmio_core_refused(mq_zero, "ready with size 0");
	mrig_free(mref_a);
}

TEST(virtio_mmio_accepts_what_a_driver_can_write)
{
	/* any QueueSel, a queue not ready with any size, any addresses */
	struct mrig *a = mrig_new(), *b = mrig_new();
	mmio_half_set_up(a);
	mw(a, VIRTIO_MMIO_QUEUE_SEL, 1);
	mw(a, VIRTIO_MMIO_QUEUE_NUM, 0xffffffff);
	mw(a, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0xffffffff);
	mw(a, VIRTIO_MMIO_QUEUE_SEL, 0xffffffff);
	struct blob bl;
	mmio_save(a, &bl);
	CHECK_EQ(dst_a.vqs[1].size, 0); /* an invalid QueueNum: no size */
	CHECK_EQ(dst_a.vqs[1].desc_gpa, 0xffffffff00000000ULL | M_DESC1);
	mmio_restore(&bl, a, b);
	/* and the restored queue cannot be enabled either until the driver
	 * writes a valid size */
	for (int i = 0; i < 2; i++) {
		struct mrig *r = i ? b : a;
		mw(r, VIRTIO_MMIO_QUEUE_SEL, 1);
		mw(r, VIRTIO_MMIO_QUEUE_READY, 1);
		CHECK_EQ(mr(r, VIRTIO_MMIO_QUEUE_READY), 0);
		mw(r, VIRTIO_MMIO_QUEUE_NUM, 32);
		mw(r, VIRTIO_MMIO_QUEUE_READY, 1);
		CHECK_EQ(mr(r, VIRTIO_MMIO_QUEUE_READY), 1);
	}
	same_queue(a, b, 1);
	free(bl.buf);
	mrig_free(a);
	mrig_free(b);
}

static void mmio_check_refused(void (*mutate)(struct virtio_mmio_state *, struct virtio_dev_state *),
			       const char *what)
{
	CHECK_EQ(virtio_mmio_state_get(&mref_a->t, &mst_a), 0);
	CHECK_EQ(virtio_dev_state_get(&mref_a->f.vd, &dst_a), 0);
	CHECK_EQ(virtio_mmio_state_check(&mst_a, &dst_a, err, sizeof(err)), 0);
	mutate(&mst_a, &dst_a);
	err[0] = 0;
	CHECK_EQ(virtio_mmio_state_check(&mst_a, &dst_a, err, sizeof(err)), -EINVAL);
	check_message(what);
}

static void mc_sel(struct virtio_mmio_state *s, struct virtio_dev_state *c) { c->queue_sel = 0; }
static void mc_sel_none(struct virtio_mmio_state *s, struct virtio_dev_state *c) { s->queue_sel = M_NQ; }
static void mc_sel_alias(struct virtio_mmio_state *s, struct virtio_dev_state *c) { s->queue_sel = 0x10001; }

TEST(virtio_mmio_state_must_agree_with_the_core)
{
	mref_a = mrig_new();
	mmio_half_set_up(mref_a);
	mmio_check_refused(mc_sel, "queue select");
	mmio_check_refused(mc_sel_none, "queue select");
	mmio_check_refused(mc_sel_alias, "queue select");
	/* a QueueSel naming no queue is mirrored as 0xffff */
	mw(mref_a, VIRTIO_MMIO_QUEUE_SEL, 0x80000000);
	CHECK_EQ(virtio_mmio_state_get(&mref_a->t, &mst_a), 0);
	CHECK_EQ(virtio_dev_state_get(&mref_a->f.vd, &dst_a), 0);
	CHECK_EQ(virtio_mmio_state_check(&mst_a, &dst_a, err, sizeof(err)), 0);
	mrig_free(mref_a);
}

static int mmio_decode_only(const uint8_t *p, size_t len, void *ctx)
{
	struct mrig *r = ctx;
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	int rc = virtio_mmio_state_decode(&c, &r->t, &mst_b, err, sizeof(err));
	return rc ? rc : snap_cursor_done(&c, "x", err, sizeof(err));
}

TEST(virtio_mmio_truncated_or_padded_payloads_are_refused)
{
	struct mrig *a = mrig_new(), *b = mrig_new();
	mmio_half_set_up(a);
	CHECK_EQ(virtio_mmio_state_get(&a->t, &mst_a), 0);
	struct snap_writer w;
	section_begin(&w);
	virtio_mmio_state_encode(&mst_a, &w);
	struct blob bl;
	section_end(&w, &bl);
	/* QueueSel 4, InterruptStatus 4, reset_wait 1: no queue registers */
	CHECK_EQ(bl.plen, 4 + 4 + 1);
	check_lengths(&bl, mmio_decode_only, b);
	free(bl.buf);
	mrig_free(a);
	mrig_free(b);
}

TEST_MAIN()
