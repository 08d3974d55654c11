/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: PCI configuration space and MSI-X (src/devices/pci/
 * pci.c) as a guest reaches them: configuration mechanism #1 (ports
 * 0xcf8-0xcff) and ECAM with every width and offset, BAR sizing and
 * moving, the MSI-X table and PBA through the BAR, enable and mask bits,
 * and the devices raising vectors, on the rig of fuzz_pci_rig.h (read it
 * for the functions and the invariants checked after every operation).
 *
 * Input: a sequence of operations, each an opcode byte and its arguments
 * (reads past the end give 0):
 *   0 port w rw v      port 0xcf8 + (port % 8) (bit 3: 0xcf4 + port % 16,
 *                      around the window), width 1/2/4, read or write v
 *   1 dev reg          CONFIG_ADDRESS = enable | slot (dev % 4) | reg
 *   2 dev reg w rw v   ECAM: slot dev % 4 (bit 2: devfn = the next byte),
 *                      register u16 % 4096, width 1/2/4/8
 *   3 fn off w rw v    BAR0 of function fn (1 fake, 2 rng) at its address
 *                      + off (u16), width 1/2/4/8
 *   4 fn vec field v   MSI-X table entry field through the BAR
 *   5 fn bits          COMMAND (MEMORY, MASTER by bits 0, 1) and the MSI-X
 *                      control word (enable, function mask by bits 2, 3)
 *   6 fn vec           the device raises vector vec (pci_msix_notify)
 *   7 n                up to n events of the loop (deferred route updates,
 *                      notifications)
 *   8 e                msi_update fails with -EIO from now on (e odd) or not
 *   9 flags            snapshot: every function's state and the bus's,
 *                      encoded and decoded against the live ones (must
 *                      pass); bit 0: put back
 *  10 fn addr          BAR0 moved to addr (u64; bit 0 of the next byte:
 *                      aligned to 32 KiB)
 *  11 bus devfn reg len rw v   pci_cfg_read/write as device code calls them
 * Seeds: tests/fuzz/corpus-pci.
 */
#include "fuzz_pci_rig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void guest_access(bool pio, uint64_t addr, uint32_t len, bool write, uint64_t v)
{
	if (write) {
		if (pio)
			rig_pio((uint16_t)addr, &v, len, true);
		else
			rig_mmio(addr, &v, len, true);
	} else {
		(void)rig_read_checked(pio, addr, len);
	}
}

static void snapshot(uint8_t flags)
{
	static struct pci_dev_state st[RIG_NFN], back[RIG_NFN];
	static struct pci_bus_state bst, bback;
	struct fz_snap s;
	fz_snap_begin(&s, "fuzz.pci");
	pci_bus_state_get(&R.pb, &bst);
	pci_bus_state_encode(&bst, &s.w);
	for (int f = 1; f < RIG_NFN; f++) {
		pci_dev_state_get(R.fn[f], &st[f]);
		pci_dev_state_encode(&st[f], &s.w);
	}
	fz_snap_reopen(&s);
	int r = pci_bus_state_decode(&s.c, &R.pb, &bback, s.err, sizeof(s.err));
	for (int f = 1; f < RIG_NFN && !r; f++)
		r = pci_dev_state_decode(&s.c, R.fn[f], &back[f], s.err, sizeof(s.err));
	fz_snap_end(&s, r, "PCI");
	if (flags & 1) {
		FZ_CHECK(pci_bus_state_put(&R.pb, &bback) == 0);
		for (int f = 1; f < RIG_NFN; f++)
			FZ_CHECK(pci_dev_state_put(R.fn[f], &back[f]) == 0);
		for (int f = 1; f < RIG_NFN; f++) {
			struct pci_dev_state again;
			pci_dev_state_get(R.fn[f], &again);
			FZ_CHECK(!memcmp(again.cfg, st[f].cfg, PCI_CFG_SIZE));
		}
	}
	fz_snap_free(&s);
}

static void op(struct fz *in)
{
	uint8_t o = fz_u8(in) % 12;
	switch (o) {
	case 0: {
		uint8_t port = fz_u8(in), sel = fz_u8(in);
		uint16_t a = (port & 8) ? (uint16_t)(0xcf4 + port % 16) : (uint16_t)(0xcf8 + port % 8);
		guest_access(true, a, fz_widths[sel % 3], sel & 4, fz_u32(in));
		break;
	}
	case 1: {
		uint8_t dev = fz_u8(in) % 4, reg = fz_u8(in);
		uint32_t ca = 0x80000000u | (uint32_t)dev << 11 | (reg & 0xfcu);
		rig_pio(0xcf8, &ca, 4, true);
		break;
	}
	case 2: {
		uint8_t dev = fz_u8(in);
		uint32_t devfn = (dev & 4) ? fz_u8(in) : (uint32_t)(dev % 4) << 3;
		uint32_t reg = fz_u16(in) % PCI_ECAM_FN_SIZE;
		uint8_t sel = fz_u8(in);
		guest_access(false, GPA_PCI_ECAM + ((uint64_t)devfn << 12 | reg), fz_widths[sel % 4], sel & 4,
		       fz_u64(in));
		break;
	}
	case 3: {
		int fn = 1 + fz_u8(in) % 2;
		uint16_t off = fz_u16(in);
		uint8_t sel = fz_u8(in);
		guest_access(false, rig_bar(fn) + off, fz_widths[sel % 4], sel & 4, fz_u64(in));
		break;
	}
	case 4: {
		int fn = 1 + fz_u8(in) % 2;
		uint8_t vec = fz_u8(in) % 8, field = fz_u8(in);
		uint32_t v = fz_u32(in);
		rig_mmio(rig_bar(fn) + VIRTIO_PCI_MSIX_TABLE_OFF + 16u * vec + 4u * (field % 4), &v, 4,
			 true);
		break;
	}
	case 5: {
		int fn = fz_u8(in) % RIG_NFN;
		uint8_t bits = fz_u8(in);
		uint8_t devfn = R.fn[fn]->devfn;
		pci_cfg_write(&R.pb, 0, devfn, PCI_COMMAND, 2,
			      (bits & 1 ? PCI_COMMAND_MEMORY : 0) | (bits & 2 ? PCI_COMMAND_MASTER : 0));
		if (R.fn[fn]->msix)
			pci_cfg_write(&R.pb, 0, devfn, R.fn[fn]->msix->cap + PCI_MSIX_FLAGS, 2,
				      (bits & 4 ? PCI_MSIX_FLAGS_ENABLE : 0) |
					      (bits & 8 ? PCI_MSIX_FLAGS_MASKALL : 0));
		break;
	}
	case 6: {
		int fn = 1 + fz_u8(in) % 2;
		struct pci_msix *m = R.fn[fn]->msix;
		uint16_t v = fz_u8(in) % (m->nvec + 1); /* one past: refused */
		bool enabled = m->enabled;
		bool deliverable = enabled && v < m->nvec && !m->masked &&
				   !(m->vec[v].ctrl & PCI_MSIX_ENTRY_CTRL_MASK);
		uint64_t pended = m->pended, dropped = m->dropped;
		int r = pci_msix_notify(m, v);
		if (v >= m->nvec)
			FZ_CHECK(r == -EINVAL);
		else if (!enabled)
			FZ_CHECK(r == -ENODEV && m->dropped == dropped + 1);
		else if (!deliverable)
			FZ_CHECK(r == 0 && m->pended == pended + 1 &&
				  ((m->pba[v / 64] >> (v % 64)) & 1));
		break;
	}
	case 7: {
		unsigned n = 1 + fz_u8(in) % 8;
		for (unsigned i = 0; i < n && rig_loop_one(); i++)
			rig_check();
		break;
	}
	case 8:
		R.fp.fail_update = (fz_u8(in) & 1) ? -EIO : 0;
		break;
	case 9:
		snapshot(fz_u8(in));
		break;
	case 10: {
		int fn = 1 + fz_u8(in) % 2;
		uint64_t a = fz_u64(in);
		if (fz_u8(in) & 1)
			a &= ~(uint64_t)(VIRTIO_PCI_BAR_SIZE - 1);
		uint8_t devfn = R.fn[fn]->devfn;
		pci_cfg_write(&R.pb, 0, devfn, PCI_BASE_ADDRESS_0, 4, (uint32_t)a);
		pci_cfg_write(&R.pb, 0, devfn, PCI_BASE_ADDRESS_0 + 4, 4, (uint32_t)(a >> 32));
		break;
	}
	case 11: {
		uint8_t bus = fz_u8(in) & 1 ? 1 : 0, devfn = fz_u8(in);
		uint16_t reg = fz_u16(in);
		uint8_t sel = fz_u8(in);
		uint32_t len = sel % 5; /* 0 and 3: refused */
		if (sel & 8)
			pci_cfg_write(&R.pb, bus, devfn, reg, len, fz_u32(in));
		else
			(void)pci_cfg_read(&R.pb, bus, devfn, reg, len);
		break;
	}
	}
	rig_check();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rig_new(NULL, 0);
	rig_check();
	struct fz in = {data, size};
	while (in.n)
		op(&in);
	rig_free();
	return 0;
}
