/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the virtio-pci transport's register state machine
 * (src/devices/virtio/virtio_pci.c with the core, virtio.c): the common
 * configuration at any offset and width, device status transitions in any
 * order, feature negotiation out of order, queue set-up with hostile
 * sizes and ring addresses, resets in mid-operation, notifications, the
 * ISR, the device configuration window and the PCI_CFG access window, with
 * the MSI-X vectors the transport signals, on the rig of fuzz_pci_rig.h
 * (function 1 a fake device with 2 queues and 24 bytes of config space,
 * function 2 a virtio-rng whose queue runs in the rig's guest RAM).  Both
 * functions start with memory decoding on (BARs mapped), as a driver
 * leaves them.
 *
 * Input: 1 byte: n, then n * 256 bytes of guest RAM (at most 64 KiB: rings
 * and buffers the rng may find), then operations, each an opcode byte and
 * its arguments (reads past the end give 0):
 *   0 fn off w rw v        BAR0 access to the common configuration at off
 *                          (u8; bit 7 of the width byte: u16 offset, the
 *                          whole 4 KiB region), width 1/2/4/8
 *   1 fn field v           write one common-configuration field with its
 *                          own width (a 64-bit one in two halves when bit 7
 *                          of field is set), the driver's usual access
 *   2 fn                   read the ISR
 *   3 fn off w rw v        device configuration window (u16 offset)
 *   4 fn q w               notify queue q (one past the last: ignored) with
 *                          a write of width w
 *   5 fn bar off len rw v  program the PCI_CFG capability and access its
 *                          data window
 *   6 fn feat size desc avail used   a driver's whole set-up of queue 0 (and
 *                          1) with these features and hostile geometry,
 *                          then DRIVER_OK
 *   7 n                    up to n events of the loop (notifications,
 *                          deferred route and ioeventfd updates)
 *   8 fn bits              MSI-X enable/mask, every entry unmasked with an
 *                          address and data of its own (bits: enable,
 *                          function mask), and COMMAND.MEMORY (bit 2 clear:
 *                          BAR off)
 *   9 fn                   the device raises a configuration change
 *  10 flags                snapshot of both transports and cores, decoded
 *                          against the live ones (must pass); bit 0: put back
 *  11 off n bytes          the guest writes its RAM
 * Checks after every operation, beyond rig_check()'s: the status is one
 * the order allows (DRIVER_OK needs FEATURES_OK needs DRIVER needs
 * ACKNOWLEDGE), FEATURES_OK only with accepted features that were offered
 * and VERSION_1; queue sizes are powers of two up to the maximum; a queue
 * is active only while DRIVER_OK is set (or a reset is pending) and was
 * ready; once DRIVER_OK is set, no register changes a queue's geometry;
 * vectors are the device's or NO_VECTOR, the ISR has only its two bits;
 * reading the common configuration changes nothing; a notification
 * reaches the device only while it is live and the queue active.
 * Seeds: tests/fuzz/corpus-virtio_pci.
 */
#include "fuzz_pci_rig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The queue geometry each function's driver set before DRIVER_OK. */
static struct virtq geom[RIG_NFN][VIRTIO_MAX_QUEUES];
static bool frozen[RIG_NFN];

static struct virtio_dev *dev_of(int fn)
{
	return R.vp[fn]->d;
}

static uint64_t bar(int fn)
{
	return rig_bar(fn);
}

static void w_common(int fn, uint32_t off, uint32_t len, uint64_t v)
{
	rig_mmio(bar(fn) + VIRTIO_PCI_COMMON_OFF + off, &v, len, true);
}

/* What a register read may not change. */
struct core_view {
	uint8_t status;
	bool reset_pending, broken;
	uint64_t driver_features;
	uint32_t dsel, gsel, gen;
	uint16_t qsel, cvec, qvec[VIRTIO_MAX_QUEUES];
	struct {
		uint16_t size;
		bool ready, active;
		uint64_t d, a, u;
	} q[VIRTIO_MAX_QUEUES];
};

static void view(int fn, struct core_view *v)
{
	struct virtio_dev *d = dev_of(fn);
	memset(v, 0, sizeof(*v));
	v->status = d->status;
	v->reset_pending = d->reset_pending;
	v->broken = d->broken;
	v->driver_features = d->driver_features;
	v->dsel = d->device_feature_sel;
	v->gsel = d->driver_feature_sel;
	v->gen = d->config_generation;
	v->qsel = d->queue_sel;
	v->cvec = R.vp[fn]->config_vec;
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		const struct virtq *vq = &d->vqs[q];
		v->qvec[q] = R.vp[fn]->queue_vec[q];
		v->q[q].size = vq->size;
		v->q[q].ready = vq->ready;
		v->q[q].active = vq->active;
		v->q[q].d = vq->desc_gpa;
		v->q[q].a = vq->avail_gpa;
		v->q[q].u = vq->used_gpa;
	}
}

FZ_QUIET static void check(void)
{
	rig_check();
	for (int fn = 1; fn < RIG_NFN; fn++) {
		struct virtio_dev *d = dev_of(fn);
		struct virtio_pci *vp = R.vp[fn];
		fz_check_status(d);
		FZ_CHECK(!(vp->isr & ~(VIRTIO_PCI_ISR_QUEUE | VIRTIO_PCI_ISR_CONFIG)));
		uint16_t nvec = (uint16_t)(d->num_queues + 1);
		FZ_CHECK(vp->config_vec == VIRTIO_MSI_NO_VECTOR || vp->config_vec < nvec);
		bool live = (d->status & VIRTIO_STATUS_DRIVER_OK) || d->reset_pending;
		for (uint16_t q = 0; q < d->num_queues; q++) {
			const struct virtq *vq = &d->vqs[q];
			FZ_CHECK(vq->size && vq->size <= d->queue_max && !(vq->size & (vq->size - 1)));
			FZ_CHECK(vp->queue_vec[q] == VIRTIO_MSI_NO_VECTOR || vp->queue_vec[q] < nvec);
			FZ_CHECK(!vq->active || (live && vq->ready));
		}
		fz_check_geometry(d, geom[fn], &frozen[fn]);
	}
}

static void check_cb(void *unused)
{
	(void)unused;
	check();
}

static void snapshot(uint8_t flags)
{
	static struct virtio_pci_state ps[RIG_NFN], pback[RIG_NFN];
	static struct virtio_dev_state cs[RIG_NFN], cback[RIG_NFN];
	static struct virtio_rng_state rs, rback;
	struct fz_snap s;
	fz_snap_begin(&s, "fuzz.vpci");
	for (int fn = 1; fn < RIG_NFN; fn++) {
		FZ_CHECK(virtio_pci_state_get(R.vp[fn], &ps[fn]) == 0);
		if (virtio_dev_state_get(dev_of(fn), &cs[fn]) == -EBUSY) {
			fz_snap_abandon(&s);
			return; /* a reset in progress cannot be saved */
		}
		virtio_pci_state_encode(&ps[fn], &s.w);
		virtio_dev_state_encode(&cs[fn], &s.w);
	}
	FZ_CHECK(virtio_rng_state_get(&R.rng, &rs) == 0);
	virtio_rng_state_encode(&rs, &s.w);
	fz_snap_reopen(&s);
	int r = 0;
	for (int fn = 1; fn < RIG_NFN && !r; fn++) {
		r = virtio_pci_state_decode(&s.c, R.vp[fn], &pback[fn], s.err, sizeof(s.err));
		if (!r)
			r = virtio_dev_state_decode(&s.c, dev_of(fn), &cback[fn], s.err, sizeof(s.err));
	}
	if (!r)
		r = virtio_rng_state_decode(&s.c, &R.rng, &rback, s.err, sizeof(s.err));
	if (!r)
		r = virtio_rng_state_check(&rback, &cback[2], s.err, sizeof(s.err));
	fz_snap_end(&s, r, "virtio-pci");
	if (flags & 1) {
		for (int fn = 1; fn < RIG_NFN; fn++) {
			FZ_CHECK(virtio_pci_state_put(R.vp[fn], &pback[fn]) == 0);
			FZ_CHECK(virtio_dev_state_put(dev_of(fn), &cback[fn]) == 0);
		}
		FZ_CHECK(virtio_rng_state_put(&R.rng, &rback) == 0);
		for (int fn = 1; fn < RIG_NFN; fn++)
			virtio_dev_state_restart(dev_of(fn));
	}
	fz_snap_free(&s);
}

/* A driver's whole set-up (op 6). */
static void driver_setup(struct fz *in)
{
	int fn = 1 + fz_u8(in) % 2;
	uint32_t feat = fz_u32(in);
	uint16_t size = fz_u16(in);
	uint64_t ring[3] = {fz_u32(in), fz_u32(in), fz_u32(in)};
	w_common(fn, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	frozen[fn] = false; /* a new driver: its geometry is new */
	w_common(fn, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	w_common(fn, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	w_common(fn, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	w_common(fn, VIRTIO_PCI_COMMON_GF, 4, feat);
	w_common(fn, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	w_common(fn, VIRTIO_PCI_COMMON_GF, 4, 1u << (VIRTIO_F_VERSION_1 - 32));
	w_common(fn, VIRTIO_PCI_COMMON_STATUS, 1,
		 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	for (uint16_t q = 0; q < dev_of(fn)->num_queues; q++) {
		w_common(fn, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
		w_common(fn, VIRTIO_PCI_COMMON_Q_SIZE, 2, size);
		w_common(fn, VIRTIO_PCI_COMMON_Q_DESC, 8, ring[0] + 0x1000u * q);
		w_common(fn, VIRTIO_PCI_COMMON_Q_DRIVER, 8, ring[1] + 0x1000u * q);
		w_common(fn, VIRTIO_PCI_COMMON_Q_DEVICE, 8, ring[2] + 0x1000u * q);
		w_common(fn, VIRTIO_PCI_COMMON_Q_MSIX, 2, q + 1);
		w_common(fn, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	}
	w_common(fn, VIRTIO_PCI_COMMON_MSIX, 2, 0);
	w_common(fn, VIRTIO_PCI_COMMON_STATUS, 1,
		 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			 VIRTIO_STATUS_DRIVER_OK);
}

static void op(struct fz *in)
{
	uint8_t o = fz_u8(in) % 12;
	switch (o) {
	case 0: {
		int fn = 1 + fz_u8(in) % 2;
		uint8_t sel = fz_u8(in);
		uint32_t off = (sel & 0x80) ? fz_u16(in) % VIRTIO_PCI_REGION_SIZE : fz_u8(in);
		uint32_t len = fz_widths[sel % 4];
		uint64_t a = bar(fn) + VIRTIO_PCI_COMMON_OFF + off;
		if (sel & 4) {
			uint64_t v = fz_u64(in);
			rig_mmio(a, &v, len, true);
		} else {
			struct core_view before, after;
			view(fn, &before);
			(void)rig_read_checked(false, a, len);
			view(fn, &after);
			FZ_CHECK(!memcmp(&before, &after, sizeof(before)));
		}
		break;
	}
	case 1: {
		int fn = 1 + fz_u8(in) % 2;
		uint8_t f = fz_u8(in);
		uint64_t v = fz_u64(in);
		const struct virtio_pci_field *fd =
			virtio_pci_common_field((f & 0x7fu) % virtio_pci_common_nfields());
		if ((f & 0x80) && fd->len == 8) {
			w_common(fn, fd->off, 4, (uint32_t)v);
			w_common(fn, fd->off + 4u, 4, v >> 32);
		} else {
			w_common(fn, fd->off, fd->len, v);
		}
		break;
	}
	case 2:
		(void)rig_read_checked(false, bar(1 + fz_u8(in) % 2) + VIRTIO_PCI_ISR_OFF, 1);
		break;
	case 3: {
		int fn = 1 + fz_u8(in) % 2;
		uint32_t off = fz_u16(in) % VIRTIO_PCI_REGION_SIZE;
		uint8_t sel = fz_u8(in);
		uint64_t a = bar(fn) + VIRTIO_PCI_DEVICE_OFF + off;
		if (sel & 4) {
			uint64_t v = fz_u64(in);
			rig_mmio(a, &v, fz_widths[sel % 4], true);
		} else {
			(void)rig_read_checked(false, a, fz_widths[sel % 4]);
		}
		break;
	}
	case 4: {
		int fn = 1 + fz_u8(in) % 2;
		uint32_t q = fz_u8(in) % (dev_of(fn)->num_queues + 1u);
		uint64_t v = q;
		rig_mmio(bar(fn) + VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * q, &v,
			 fz_widths[fz_u8(in) % 4], true);
		break;
	}
	case 5: {
		int fn = 1 + fz_u8(in) % 2;
		struct virtio_pci *vp = R.vp[fn];
		uint8_t devfn = vp->pd.devfn, c = vp->cap_pci_cfg;
		uint8_t b = fz_u8(in) % 2;
		uint32_t off = fz_u16(in), len = fz_u8(in) % 5;
		uint8_t sel = fz_u8(in);
		pci_cfg_write(&R.pb, 0, devfn, c + VIRTIO_PCI_CAP_BAR, 1, b);
		pci_cfg_write(&R.pb, 0, devfn, c + VIRTIO_PCI_CAP_OFFSET, 4, off);
		pci_cfg_write(&R.pb, 0, devfn, c + VIRTIO_PCI_CAP_LENGTH, 4, len);
		uint32_t w = fz_widths[sel % 3];
		uint32_t reg = c + VIRTIO_PCI_CFG_CAP_DATA + ((sel >> 2) & 3) / w * w;
		if (sel & 0x10)
			pci_cfg_write(&R.pb, 0, devfn, reg, w, fz_u32(in));
		else
			(void)pci_cfg_read(&R.pb, 0, devfn, reg, w);
		break;
	}
	case 6:
		driver_setup(in);
		break;
	case 7:
		fz_loop_notify(&rig_loop, &R.f, 1 + fz_u8(in) % 8u, check_cb, NULL);
		break;
	case 8: {
		int fn = 1 + fz_u8(in) % 2;
		uint8_t bits = fz_u8(in);
		struct pci_dev *pd = R.fn[fn];
		pci_cfg_write(&R.pb, 0, pd->devfn, PCI_COMMAND, 2,
			      PCI_COMMAND_MASTER | (bits & 4 ? PCI_COMMAND_MEMORY : 0));
		for (uint16_t v = 0; v < pd->msix->nvec; v++) {
			uint32_t e[4] = {0xfee00000u + 0x1000u * v, 0, 0x40u + v, 0};
			for (int k = 0; k < 4; k++)
				rig_mmio(bar(fn) + VIRTIO_PCI_MSIX_TABLE_OFF + 16u * v + 4u * k, &e[k], 4,
					 true);
		}
		pci_cfg_write(&R.pb, 0, pd->devfn, pd->msix->cap + PCI_MSIX_FLAGS, 2,
			      (bits & 1 ? PCI_MSIX_FLAGS_ENABLE : 0) |
				      (bits & 2 ? PCI_MSIX_FLAGS_MASKALL : 0));
		break;
	}
	case 9:
		fz_config_changed(dev_of(1 + fz_u8(in) % 2));
		break;
	case 10:
		snapshot(fz_u8(in));
		break;
	case 11:
		fz_guest_write(in, rig_mem.base, RIG_MEM);
		break;
	}
	check();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = {data, size};
	struct fz ram = fz_take(&in, (size_t)fz_u8(&in) * 256);
	rig_new(ram.p, ram.n);
	memset(frozen, 0, sizeof(frozen));
	for (int fn = 1; fn < RIG_NFN; fn++)
		pci_cfg_write(&R.pb, 0, R.fn[fn]->devfn, PCI_COMMAND, 2,
			      PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	check();
	while (in.n)
		op(&in);
	if (getenv("FZ_TRACE"))
		fprintf(stderr, "fake: status %#x notify %d/%d; rng: status %#x requests %llu; "
			"isr %#x/%#x; msix delivered %llu/%llu sends %d\n",
			R.f.vd.status, R.f.notify_calls[0], R.f.notify_calls[1], R.rng.vdev.status,
			(unsigned long long)R.rng.m.entropy_requests, R.vpf.isr, R.vpr.isr,
			(unsigned long long)R.vpf.msix.delivered,
			(unsigned long long)R.vpr.msix.delivered, R.fp.nsend);
	rig_free();
	return 0;
}
