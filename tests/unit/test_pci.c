/* SPDX-License-Identifier: MIT */
/*
 * PCI bus 0: configuration mechanism #1 (incl. the 0xcf9 forwarding), ECAM,
 * absent functions, write masks, BAR sizing and (re)mapping on the MMIO
 * bus, the capability list, MSI-X with a recording fake platform, and the
 * ACPI description (MCFG, PCI0, ECAM reservation).
 */
#include "../../src/devices/pci/pci.h"

#include <errno.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../src/arch/x86/acpi.h"
#include "../../src/arch/x86/aml.h"
#include "../../src/arch/x86/layout.h"
#include "le_read.h"
#include "msi_fake.h"
#include "test.h"

static uint64_t efd_count(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/* ---- a test device: BAR0 32-bit 4 KiB, BAR2 64-bit 16 KiB with MSI-X ------ */

#define T_VENDOR 0x1234
#define T_DEVICE 0x5678
#define T_BAR0_SIZE 0x1000
#define T_BAR2_SIZE 0x4000
#define T_TABLE 0x0
#define T_PBA 0x800
#define T_NVEC 5

struct tdev {
	struct pci_dev pd;
	struct pci_msix msix;
	uint8_t bar0[T_BAR0_SIZE];
	uint8_t vcap;
	/* recorded */
	int nmapped, map_bar[16];
	uint64_t map_old[16], map_new[16];
	int nbar_rw, last_bar;
	uint64_t last_off;
	uint32_t last_len;
};

static void t_bar_read(struct pci_dev *pd, int bar, uint64_t off, void *data, uint32_t len)
{
	struct tdev *t = container_of(pd, struct tdev, pd);
	t->nbar_rw++;
	t->last_bar = bar;
	t->last_off = off;
	t->last_len = len;
	if (bar == 0) {
		memcpy(data, &t->bar0[off], len);
	} else if (off >= T_PBA) {
		pci_msix_pba_read(&t->msix, off - T_PBA, data, len);
	} else {
		pci_msix_table_read(&t->msix, off - T_TABLE, data, len);
	}
}

static void t_bar_write(struct pci_dev *pd, int bar, uint64_t off, const void *data, uint32_t len)
{
	struct tdev *t = container_of(pd, struct tdev, pd);
	t->nbar_rw++;
	t->last_bar = bar;
	t->last_off = off;
	t->last_len = len;
	if (bar == 0)
		memcpy(&t->bar0[off], data, len);
	else if (off < T_PBA)
		pci_msix_table_write(&t->msix, off - T_TABLE, data, len);
}

static void t_bar_mapped(struct pci_dev *pd, int bar, uint64_t old_gpa, uint64_t new_gpa)
{
	struct tdev *t = container_of(pd, struct tdev, pd);
	if (t->nmapped < 16) {
		t->map_bar[t->nmapped] = bar;
		t->map_old[t->nmapped] = old_gpa;
		t->map_new[t->nmapped] = new_gpa;
	}
	t->nmapped++;
}

static const struct pci_dev_ops t_ops = {
	.bar_read = t_bar_read, .bar_write = t_bar_write, .bar_mapped = t_bar_mapped};

struct rig {
	struct bus pio, mmio;
	struct pci_bus pb;
	struct fake_plat fp;
	struct loop loop; /* with deferral only */
	bool with_loop;
	struct tdev t;
	int slot;
	int ncf9;
	uint8_t cf9_val;
};

static void on_cf9(void *ctx, uint8_t val)
{
	struct rig *r = ctx;
	r->ncf9++;
	r->cf9_val = val;
}

/* A bus, and with @with_dev the test device on it.  @fail_alloc: what
 * msi_alloc returns at init; @defer: set-up deferred to a loop that this
 * thread plays (fp_run_work), set-up calls elsewhere counted. */
static struct rig *rig_new_ex(bool with_dev, int fail_alloc, bool defer)
{
	struct rig *r = calloc(1, sizeof(*r));
	bus_init(&r->pio, "pio");
	bus_init(&r->mmio, "mmio");
	fp_init(&r->fp, &r->pio, &r->mmio);
	r->fp.fail_alloc = fail_alloc;
	if (defer) {
		CHECK_EQ(loop_init(&r->loop), 0);
		CHECK_EQ(fp_enable_defer(&r->fp, &r->loop), 0);
		r->with_loop = true;
	}
	CHECK_EQ(pci_bus_init(&r->pb, &r->mmio, GPA_PCI_MMIO32, PCI_MMIO32_SIZE, on_cf9, r), 0);
	CHECK_EQ(bus_register(&r->pio, &r->pb.pio_dev, PORT_PCI_CONFIG, PORT_PCI_CONFIG_LEN), 0);
	CHECK_EQ(bus_register(&r->mmio, &r->pb.ecam_dev, GPA_PCI_ECAM, PCI_ECAM_SIZE), 0);
	if (!with_dev)
		return r;
	struct tdev *t = &r->t;
	pci_dev_init(&t->pd, &t_ops, "tdev", T_VENDOR, T_DEVICE, 0xff0000, 3, 0xabcd, 0xef01);
	CHECK_EQ(pci_dev_add_bar(&t->pd, 0, PCI_BAR_MEM32, T_BAR0_SIZE, false), 0);
	CHECK_EQ(pci_dev_add_bar(&t->pd, 2, PCI_BAR_MEM64, T_BAR2_SIZE, true), 0);
	CHECK_EQ(pci_msix_init(&t->msix, &t->pd, &r->fp.p, T_NVEC, 2, T_TABLE, T_PBA), 0);
	/* a vendor capability with one writable byte */
	CHECK_EQ(pci_add_cap(&t->pd, PCI_CAP_ID_VNDR, 8, &t->vcap), 0);
	pci_set8(&t->pd, t->vcap + 2, 8);
	pci_set_wmask8(&t->pd, t->vcap + 4, 0xff);
	for (int i = 0; i < T_BAR0_SIZE; i++)
		t->bar0[i] = (uint8_t)(i * 7 + 1);
	r->slot = pci_bus_add(&r->pb, &t->pd, -1);
	CHECK_EQ(r->slot, 1);
	r->fp.fail_alloc = 0;
	return r;
}

static struct rig *rig_new(bool with_dev)
{
	return rig_new_ex(with_dev, 0, false);
}

static void rig_free(struct rig *r)
{
	if (r->t.msix.pd)
		pci_msix_destroy(&r->t.msix);
	pci_bus_destroy(&r->pb);
	fp_destroy(&r->fp);
	if (r->with_loop)
		loop_destroy(&r->loop);
	free(r);
}

/* ---- access helpers ------------------------------------------------------ */

static uint64_t pio_in(struct rig *r, uint16_t port, uint32_t len)
{
	uint64_t v = 0;
	bus_access(&r->pio, port, &v, len, false);
	return v;
}

static void pio_out(struct rig *r, uint16_t port, uint32_t len, uint64_t v)
{
	bus_access(&r->pio, port, &v, len, true);
}

static uint64_t mmio_rd(struct rig *r, uint64_t a, uint32_t len)
{
	uint64_t v = 0;
	bus_access(&r->mmio, a, &v, len, false);
	return v;
}

static void mmio_wr(struct rig *r, uint64_t a, uint32_t len, uint64_t v)
{
	bus_access(&r->mmio, a, &v, len, true);
}

static uint32_t cfg_addr(uint8_t bus, uint8_t dev, uint8_t fn, uint32_t reg)
{
	return 0x80000000u | (uint32_t)bus << 16 | (uint32_t)dev << 11 | (uint32_t)fn << 8 | (reg & 0xfc);
}

/* Config read through 0xcf8/0xcfc. */
static uint32_t cf8_read(struct rig *r, uint8_t dev, uint32_t reg, uint32_t len)
{
	pio_out(r, 0xcf8, 4, cfg_addr(0, dev, 0, reg));
	return (uint32_t)pio_in(r, (uint16_t)(0xcfc + (reg & 3)), len);
}

static void cf8_write(struct rig *r, uint8_t dev, uint32_t reg, uint32_t len, uint32_t v)
{
	pio_out(r, 0xcf8, 4, cfg_addr(0, dev, 0, reg));
	pio_out(r, (uint16_t)(0xcfc + (reg & 3)), len, v);
}

static uint64_t ecam(uint8_t bus, uint8_t dev, uint8_t fn, uint32_t reg)
{
	return GPA_PCI_ECAM + ((uint64_t)bus << 20 | (uint64_t)dev << 15 | (uint64_t)fn << 12 | reg);
}

static uint64_t bytes_le(const uint8_t *p, uint32_t len)
{
	uint64_t v = 0;
	for (uint32_t i = 0; i < len; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static uint64_t all_ones(uint32_t len)
{
	return len == 8 ? UINT64_MAX : (1ull << (8 * len)) - 1;
}

/* ---- tests: configuration mechanism #1 ------------------------------------ */

TEST(config_address_register)
{
	struct rig *r = rig_new(false);
	/* Linux's pci_check_type1: byte write to 0xcfb, then the dword probe */
	pio_out(r, 0xcf8, 4, 0x12345678);
	CHECK_EQ(pio_in(r, 0xcf8, 4), 0x12345678 & 0x80fffffc);
	pio_out(r, 0xcfb, 1, 0x01);
	CHECK_EQ(pio_in(r, 0xcf8, 4), 0x12345678 & 0x80fffffc);
	pio_out(r, 0xcf8, 4, 0x80000000);
	CHECK_EQ(pio_in(r, 0xcf8, 4), 0x80000000);
	/* byte and word accesses to 0xcf8-0xcfb are not address accesses */
	pio_out(r, 0xcf8, 1, 0xaa);
	pio_out(r, 0xcf8, 2, 0xbbbb);
	pio_out(r, 0xcfa, 2, 0xcccc);
	pio_out(r, 0xcfa, 1, 0xdd);
	CHECK_EQ(pio_in(r, 0xcf8, 4), 0x80000000);
	CHECK_EQ(pio_in(r, 0xcf8, 1), 0xff);
	CHECK_EQ(pio_in(r, 0xcf8, 2), 0xffff);
	CHECK_EQ(pio_in(r, 0xcfa, 2), 0xffff);
	CHECK_EQ(pio_in(r, 0xcfb, 1), 0xff);
	/* straddling 0xcfb/0xcfc: all-ones, ignored */
	CHECK_EQ(pio_in(r, 0xcf9, 4), 0xffffffff);
	CHECK_EQ(pio_in(r, 0xcfb, 2), 0xffff);
	pio_out(r, 0xcfa, 4, 0);
	CHECK_EQ(pio_in(r, 0xcf8, 4), 0x80000000);
	CHECK_EQ(r->ncf9, 0);
	rig_free(r);
}

TEST(cf9_forwarded_to_reset_register)
{
	struct rig *r = rig_new(false);
	CHECK_EQ(pio_in(r, 0xcf9, 1), 0); /* the reset register reads 0 */
	pio_out(r, 0xcf9, 1, 0x06);
	CHECK_EQ(r->ncf9, 1);
	CHECK_EQ(r->cf9_val, 0x06);
	pio_out(r, 0xcf9, 1, 0x0e);
	CHECK_EQ(r->ncf9, 2);
	CHECK_EQ(r->cf9_val, 0x0e);
	/* only byte writes at 0xcf9 */
	pio_out(r, 0xcf8, 2, 0x0600);
	pio_out(r, 0xcf9, 2, 0x0606);
	pio_out(r, 0xcf8, 4, 0x00000600);
	CHECK_EQ(r->ncf9, 2);
	/* the dword at 0xcf8 is CONFIG_ADDRESS, untouched by 0xcf9 writes */
	pio_out(r, 0xcf8, 4, 0x80000800);
	pio_out(r, 0xcf9, 1, 0x02);
	CHECK_EQ(pio_in(r, 0xcf8, 4), 0x80000800);
	CHECK_EQ(r->ncf9, 3);
	rig_free(r);

	/* without a callback: ignored, reads all-ones */
	struct bus mmio;
	bus_init(&mmio, "mmio");
	struct pci_bus *pb = calloc(1, sizeof(*pb));
	CHECK_EQ(pci_bus_init(pb, &mmio, GPA_PCI_MMIO32, PCI_MMIO32_SIZE, NULL, NULL), 0);
	uint8_t v = 0x06;
	pb->pio_dev.ops->write(&pb->pio_dev, 1, &v, 1);
	pb->pio_dev.ops->read(&pb->pio_dev, 1, &v, 1);
	CHECK_EQ(v, 0xff);
	pci_bus_destroy(pb);
	free(pb);
}

TEST(host_bridge_identity)
{
	struct rig *r = rig_new(false);
	CHECK_EQ(cf8_read(r, 0, PCI_VENDOR_ID, 2), PCI_HOST_BRIDGE_VENDOR);
	CHECK_EQ(cf8_read(r, 0, PCI_DEVICE_ID, 2), PCI_HOST_BRIDGE_DEVICE);
	/* pci_sanity_check reads PCI_CLASS_DEVICE as a word */
	CHECK_EQ(cf8_read(r, 0, PCI_CLASS_DEVICE, 2), 0x0600);
	CHECK_EQ(cf8_read(r, 0, PCI_CLASS_PROG, 1), 0);
	CHECK_EQ(cf8_read(r, 0, PCI_HEADER_TYPE, 1), 0);
	CHECK_EQ(cf8_read(r, 0, PCI_INTERRUPT_PIN, 1), 0);
	CHECK_EQ(cf8_read(r, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);
	for (uint32_t b = 0; b < 6; b++)
		CHECK_EQ(cf8_read(r, 0, PCI_BASE_ADDRESS_0 + 4 * b, 4), 0);
	rig_free(r);
}

/* Every width at every port offset of every dword, present and absent
 * functions, against the config bytes themselves. */
TEST(cf8_every_width_every_offset)
{
	struct rig *r = rig_new(true);
	struct pci_dev *devs[3] = {&r->pb.host, &r->t.pd, NULL};
	uint8_t slots[3] = {0, 1, 7};
	for (int d = 0; d < 3; d++) {
		for (uint32_t reg = 0; reg < 256; reg += 4) {
			for (uint32_t off = 0; off < 4; off++) {
				for (uint32_t len = 1; len <= 4; len *= 2) {
					if (off + len > 4)
						continue;
					pio_out(r, 0xcf8, 4, cfg_addr(0, slots[d], 0, reg));
					uint64_t got = pio_in(r, (uint16_t)(0xcfc + off), len);
					uint64_t want = devs[d] ? bytes_le(&devs[d]->cfg[reg + off], len)
								: all_ones(len);
					if (got != want)
						printf("  dev %d reg 0x%x off %u len %u\n", slots[d], reg,
						       off, len);
					CHECK_EQ(got, want);
				}
			}
		}
	}
	/* enable bit clear, other buses, other functions: all-ones */
	pio_out(r, 0xcf8, 4, 0x00000800);
	CHECK_EQ(pio_in(r, 0xcfc, 4), 0xffffffff);
	CHECK_EQ(pio_in(r, 0xcfe, 2), 0xffff);
	pio_out(r, 0xcf8, 4, cfg_addr(1, 1, 0, 0));
	CHECK_EQ(pio_in(r, 0xcfc, 4), 0xffffffff);
	for (uint8_t fn = 1; fn < 8; fn++) {
		pio_out(r, 0xcf8, 4, cfg_addr(0, 1, fn, 0));
		CHECK_EQ(pio_in(r, 0xcfc, 2), 0xffff); /* vendor 0xffff: absent */
	}
	/* writes there change nothing */
	pio_out(r, 0xcf8, 4, 0x00000800 | PCI_COMMAND);
	pio_out(r, 0xcfc, 2, PCI_COMMAND_MEMORY);
	CHECK_EQ(cf8_read(r, 1, PCI_COMMAND, 2), 0);
	pio_out(r, 0xcf8, 4, cfg_addr(0, 1, 3, PCI_COMMAND));
	pio_out(r, 0xcfc, 2, PCI_COMMAND_MEMORY);
	CHECK_EQ(cf8_read(r, 1, PCI_COMMAND, 2), 0);
	rig_free(r);
}

TEST(ecam_every_width_every_offset)
{
	struct rig *r = rig_new(true);
	struct pci_dev *devs[3] = {&r->pb.host, &r->t.pd, NULL};
	uint8_t slots[3] = {0, 1, 31};
	for (int d = 0; d < 3; d++) {
		for (uint32_t reg = 0; reg < PCI_ECAM_FN_SIZE; reg++) {
			for (uint32_t len = 1; len <= 8; len *= 2) {
				if (reg + len > PCI_ECAM_FN_SIZE)
					continue;
				uint64_t got = mmio_rd(r, ecam(0, slots[d], 0, reg), len);
				uint64_t want = all_ones(len);
				if (devs[d] && !(reg & (len - 1)) && reg + len <= PCI_CFG_SIZE)
					want = bytes_le(&devs[d]->cfg[reg], len);
				if (got != want)
					printf("  dev %d reg 0x%x len %u\n", slots[d], reg, len);
				CHECK_EQ(got, want);
			}
		}
	}
	/* function 1..7 absent */
	CHECK_EQ(mmio_rd(r, ecam(0, 1, 5, 0), 4), 0xffffffff);
	rig_free(r);
}

TEST(ecam_and_cf8_writes_agree)
{
	struct rig *r = rig_new(true);
	/* ECAM write, port read */
	mmio_wr(r, ecam(0, 1, 0, PCI_INTERRUPT_LINE), 1, 0x0b);
	CHECK_EQ(cf8_read(r, 1, PCI_INTERRUPT_LINE, 1), 0x0b);
	/* port write, ECAM read */
	cf8_write(r, 1, PCI_CACHE_LINE_SIZE, 1, 0x10);
	CHECK_EQ(mmio_rd(r, ecam(0, 1, 0, PCI_CACHE_LINE_SIZE), 1), 0x10);
	/* unaligned data-port word (0xcfd) */
	pio_out(r, 0xcf8, 4, cfg_addr(0, 1, 0, PCI_CACHE_LINE_SIZE));
	CHECK_EQ(pio_in(r, 0xcfd, 2), bytes_le(&r->t.pd.cfg[PCI_CACHE_LINE_SIZE + 1], 2));
	/* misaligned ECAM writes are ignored */
	mmio_wr(r, ecam(0, 1, 0, PCI_INTERRUPT_LINE - 1), 2, 0x2222);
	CHECK_EQ(cf8_read(r, 1, PCI_INTERRUPT_LINE, 1), 0x0b);
	/* 8-byte ECAM write = two dwords */
	mmio_wr(r, ecam(0, 1, 0, 0x38), 8, 0x000000ff00000000ull | 0x12345678);
	CHECK_EQ(cf8_read(r, 1, PCI_INTERRUPT_LINE, 1), 0xff);
	/* past 0x100: ignored, reads all-ones */
	mmio_wr(r, ecam(0, 1, 0, 0x100), 4, 0);
	CHECK_EQ(mmio_rd(r, ecam(0, 1, 0, 0x100), 4), 0xffffffff);
	rig_free(r);
}

TEST(read_only_fields_stay_read_only)
{
	struct rig *r = rig_new(true);
	uint8_t before[PCI_CFG_SIZE];
	memcpy(before, r->t.pd.cfg, sizeof(before));
	/* try to write all-ones everywhere except BARs, command, MSI-X control
	 * and the writable registers */
	for (uint32_t reg = 0; reg < 256; reg += 4) {
		if (reg >= PCI_BASE_ADDRESS_0 && reg < PCI_BASE_ADDRESS_0 + 24)
			continue;
		if (reg == PCI_COMMAND || reg == r->t.msix.cap)
			continue;
		cf8_write(r, 1, reg, 4, 0xffffffff);
	}
	for (uint32_t i = 0; i < 256; i++) {
		uint8_t want = before[i];
		if (i == PCI_CACHE_LINE_SIZE || i == PCI_INTERRUPT_LINE || i == r->t.vcap + 4u)
			want = 0xff;
		if (r->t.pd.cfg[i] != want)
			printf("  byte 0x%x: 0x%x\n", i, r->t.pd.cfg[i]);
		CHECK_EQ(r->t.pd.cfg[i], want);
	}
	/* command: only the documented bits */
	cf8_write(r, 1, PCI_COMMAND, 2, 0xffff);
	CHECK_EQ(cf8_read(r, 1, PCI_COMMAND, 2), PCI_COMMAND_WMASK);
	cf8_write(r, 1, PCI_COMMAND, 2, 0);
	/* status: nothing writable, write-1-to-clear does not clear CAP_LIST */
	cf8_write(r, 1, PCI_STATUS, 2, 0xffff);
	CHECK_EQ(cf8_read(r, 1, PCI_STATUS, 2), PCI_STATUS_CAP_LIST);
	/* ROM BAR sizing reads 0: no ROM */
	cf8_write(r, 1, PCI_ROM_ADDRESS, 4, 0xffffffff);
	CHECK_EQ(cf8_read(r, 1, PCI_ROM_ADDRESS, 4), 0);
	/* identity */
	CHECK_EQ(cf8_read(r, 1, PCI_VENDOR_ID, 4), T_VENDOR | T_DEVICE << 16);
	CHECK_EQ(cf8_read(r, 1, PCI_REVISION_ID, 4), 0xff000003);
	CHECK_EQ(cf8_read(r, 1, PCI_SUBSYSTEM_VENDOR_ID, 4), 0xabcd | 0xef01u << 16);
	CHECK_EQ(cf8_read(r, 1, PCI_INTERRUPT_PIN, 1), 0);
	rig_free(r);
}

/* ---- BARs ------------------------------------------------------------------ */

TEST(bar_preassignment_and_sizing)
{
	struct rig *r = rig_new(true);
	/* firmware-style pre-assignment, naturally aligned */
	CHECK_EQ(cf8_read(r, 1, 0x10, 4), GPA_PCI_MMIO32);
	CHECK_EQ(cf8_read(r, 1, 0x18, 4), (GPA_PCI_MMIO32 + 0x4000) | 0xc); /* 64-bit, prefetch */
	CHECK_EQ(cf8_read(r, 1, 0x1c, 4), 0);
	CHECK_EQ(pci_bar_address(&r->t.pd, 0), GPA_PCI_MMIO32);
	CHECK_EQ(pci_bar_address(&r->t.pd, 2), GPA_PCI_MMIO32 + 0x4000);
	/* unimplemented BARs are read-only 0 */
	for (uint32_t reg = 0x14; reg <= 0x24; reg += 4) {
		if (reg == 0x18 || reg == 0x1c)
			continue;
		cf8_write(r, 1, reg, 4, 0xffffffff);
		CHECK_EQ(cf8_read(r, 1, reg, 4), 0);
	}
	/* 32-bit sizing */
	uint32_t save = cf8_read(r, 1, 0x10, 4);
	cf8_write(r, 1, 0x10, 4, 0xffffffff);
	CHECK_EQ(cf8_read(r, 1, 0x10, 4), ~(uint32_t)(T_BAR0_SIZE - 1));
	cf8_write(r, 1, 0x10, 4, save);
	CHECK_EQ(cf8_read(r, 1, 0x10, 4), save);
	/* 64-bit sizing, both halves */
	uint32_t lo = cf8_read(r, 1, 0x18, 4), hi = cf8_read(r, 1, 0x1c, 4);
	cf8_write(r, 1, 0x18, 4, 0xffffffff);
	cf8_write(r, 1, 0x1c, 4, 0xffffffff);
	CHECK_EQ(cf8_read(r, 1, 0x18, 4), ~(uint32_t)(T_BAR2_SIZE - 1) | 0xc);
	CHECK_EQ(cf8_read(r, 1, 0x1c, 4), 0xffffffff);
	cf8_write(r, 1, 0x18, 4, lo);
	cf8_write(r, 1, 0x1c, 4, hi);
	CHECK_EQ(pci_bar_address(&r->t.pd, 2), GPA_PCI_MMIO32 + 0x4000);
	/* byte writes into a BAR obey the mask too */
	cf8_write(r, 1, 0x10, 1, 0xff);
	CHECK_EQ(cf8_read(r, 1, 0x10, 4), save);
	CHECK_EQ(r->t.nmapped, 0); /* decoding is off: nothing mapped */
	CHECK(bus_find(&r->mmio, GPA_PCI_MMIO32, 1) == NULL);
	rig_free(r);
}

TEST(bar_add_validation)
{
	struct pci_dev *pd = calloc(1, sizeof(*pd));
	pci_dev_init(pd, NULL, "x", 1, 2, 0xff0000, 0, 0, 0);
	CHECK_EQ(pci_dev_add_bar(pd, 0, PCI_BAR_MEM32, 8, false), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_dev_add_bar(pd, 0, PCI_BAR_MEM32, 0x3000, false), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_dev_add_bar(pd, 6, PCI_BAR_MEM32, 0x1000, false), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_dev_add_bar(pd, 5, PCI_BAR_MEM64, 0x1000, false), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_dev_add_bar(pd, 0, PCI_BAR_NONE, 0x1000, false), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_dev_add_bar(pd, 0, PCI_BAR_MEM64, 0x1000, false), 0);
	CHECK_EQ(pci_dev_add_bar(pd, 1, PCI_BAR_MEM32, 0x1000, false), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_dev_add_bar(pd, 0, PCI_BAR_MEM32, 0x1000, false), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_dev_add_bar(pd, 2, PCI_BAR_MEM32, 0x1000, false), 0);
	CHECK_EQ(pci_dev_add_bar(pd, 1, PCI_BAR_MEM64, 0x1000, false), (unsigned long long)-EINVAL);
	free(pd);
}

TEST(memory_enable_maps_and_unmaps_bars)
{
	struct rig *r = rig_new(true);
	struct tdev *t = &r->t;
	uint64_t b0 = GPA_PCI_MMIO32, b2 = GPA_PCI_MMIO32 + 0x4000;
	CHECK_EQ(mmio_rd(r, b0 + 0x10, 1), 0xff); /* not decoded yet */
	cf8_write(r, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	CHECK_EQ(t->nmapped, 2);
	CHECK_EQ(t->map_bar[0], 0);
	CHECK_EQ(t->map_old[0], PCI_BAR_UNMAPPED);
	CHECK_EQ(t->map_new[0], b0);
	CHECK_EQ(t->map_bar[1], 2);
	CHECK_EQ(t->map_new[1], b2);
	CHECK(bus_find(&r->mmio, b0, 4) == &t->pd.bars[0].bd);
	CHECK(bus_find(&r->mmio, b2 + T_BAR2_SIZE - 1, 1) == &t->pd.bars[2].bd);
	CHECK(bus_find(&r->mmio, b0 + T_BAR0_SIZE, 1) == NULL);
	/* accesses reach the device with the BAR index and offset */
	CHECK_EQ(mmio_rd(r, b0 + 0x10, 4), bytes_le(&t->bar0[0x10], 4));
	CHECK_EQ(t->last_bar, 0);
	CHECK_EQ(t->last_off, 0x10);
	CHECK_EQ(t->last_len, 4);
	mmio_wr(r, b0 + 0x20, 2, 0xbeef);
	CHECK_EQ(bytes_le(&t->bar0[0x20], 2), 0xbeef);
	/* rewriting the same command changes nothing */
	cf8_write(r, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	CHECK_EQ(t->nmapped, 2);
	/* decode off: both windows leave the bus */
	cf8_write(r, 1, PCI_COMMAND, 2, 0);
	CHECK_EQ(t->nmapped, 4);
	CHECK_EQ(t->map_old[2], b0);
	CHECK_EQ(t->map_new[2], PCI_BAR_UNMAPPED);
	CHECK(bus_find(&r->mmio, b0, 4) == NULL);
	CHECK(bus_find(&r->mmio, b2, 4) == NULL);
	int before = t->nbar_rw;
	CHECK_EQ(mmio_rd(r, b0 + 0x10, 4), 0xffffffff);
	CHECK_EQ(t->nbar_rw, before);
	/* and back on through ECAM (remapping from inside an MMIO dispatch) */
	mmio_wr(r, ecam(0, 1, 0, PCI_COMMAND), 2, PCI_COMMAND_MEMORY);
	CHECK_EQ(t->nmapped, 6);
	CHECK(bus_find(&r->mmio, b0, 4) == &t->pd.bars[0].bd);
	rig_free(r);
}

TEST(bar_remap_moves_the_window)
{
	struct rig *r = rig_new(true);
	struct tdev *t = &r->t;
	uint64_t b0 = GPA_PCI_MMIO32;
	cf8_write(r, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	int n = t->nmapped;
	uint64_t to = GPA_PCI_MMIO32 + 0x100000;
	cf8_write(r, 1, 0x10, 4, (uint32_t)to);
	CHECK_EQ(t->nmapped, n + 1);
	CHECK_EQ(t->map_old[n], b0);
	CHECK_EQ(t->map_new[n], to);
	CHECK(bus_find(&r->mmio, b0, 1) == NULL);
	CHECK(bus_find(&r->mmio, to, 1) == &t->pd.bars[0].bd);
	CHECK_EQ(mmio_rd(r, to + 4, 1), t->bar0[4]);
	CHECK_EQ(mmio_rd(r, b0 + 4, 1), 0xff);
	/* 64-bit BAR moved above 4 GiB, low half first */
	uint64_t hi = 0x100000000ull + 0x200000;
	cf8_write(r, 1, 0x18, 4, (uint32_t)hi);
	cf8_write(r, 1, 0x1c, 4, (uint32_t)(hi >> 32));
	CHECK_EQ(pci_bar_address(&t->pd, 2), hi);
	CHECK_EQ(t->pd.bars[2].mapped_gpa, hi);
	CHECK(bus_find(&r->mmio, hi + 8, 4) == &t->pd.bars[2].bd);
	CHECK(bus_find(&r->mmio, 0x200000, 4) == NULL); /* the transient placement is gone */
	CHECK_EQ(r->mmio.ndevs, 3);                     /* ECAM + two BARs */
	/* address 0 = unassigned: not mapped */
	cf8_write(r, 1, 0x10, 4, 0);
	CHECK_EQ(t->pd.bars[0].mapped_gpa, PCI_BAR_UNMAPPED);
	CHECK(bus_find(&r->mmio, to, 1) == NULL);
	/* a placement over another window is refused, the BAR stays off */
	cf8_write(r, 1, 0x10, 4, (uint32_t)GPA_PCI_ECAM);
	CHECK_EQ(t->pd.bars[0].mapped_gpa, PCI_BAR_UNMAPPED);
	CHECK(bus_find(&r->mmio, GPA_PCI_ECAM, 4) == &r->pb.ecam_dev);
	/* ... and is retried when reprogrammed somewhere free */
	cf8_write(r, 1, 0x10, 4, (uint32_t)to);
	CHECK_EQ(t->pd.bars[0].mapped_gpa, to);
	/* two BARs of one device over each other: the second one loses */
	cf8_write(r, 1, 0x18, 4, (uint32_t)to);
	cf8_write(r, 1, 0x1c, 4, 0);
	CHECK_EQ(t->pd.bars[2].mapped_gpa, PCI_BAR_UNMAPPED);
	CHECK_EQ(t->pd.bars[0].mapped_gpa, to);
	/* a 64-bit BAR at the very top of the address space ends at 2^64,
	 * which no bus window can: not mapped, like a wrapping one, and not
	 * a refused placement (that logged a warning the guest could repeat;
	 * found by fuzz_pci) */
	uint64_t top = 0ull - T_BAR2_SIZE;
	uint32_t logged = r->pb.rl.in_window;
	cf8_write(r, 1, 0x18, 4, (uint32_t)top);
	cf8_write(r, 1, 0x1c, 4, (uint32_t)(top >> 32));
	CHECK_EQ(pci_bar_address(&t->pd, 2), top);
	CHECK_EQ(t->pd.bars[2].mapped_gpa, PCI_BAR_UNMAPPED);
	CHECK_EQ(r->pb.rl.in_window, logged);
	/* one size lower it fits (and nothing else is there) */
	cf8_write(r, 1, 0x18, 4, (uint32_t)(top - T_BAR2_SIZE));
	CHECK_EQ(t->pd.bars[2].mapped_gpa, top - T_BAR2_SIZE);
	CHECK(bus_find(&r->mmio, top - 1, 1) == &t->pd.bars[2].bd);
	rig_free(r);
}

TEST(bus_add_slots_and_window)
{
	struct bus mmio;
	bus_init(&mmio, "mmio");
	struct pci_bus *pb = calloc(1, sizeof(*pb));
	CHECK_EQ(pci_bus_init(pb, NULL, 0, 1, NULL, NULL), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_bus_init(pb, &mmio, 0xfffff000, 0, NULL, NULL), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_bus_init(pb, &mmio, GPA_PCI_MMIO32, 0x10000, NULL, NULL), 0);
	struct pci_dev *d = calloc(40, sizeof(*d));
	for (int i = 0; i < 40; i++)
		pci_dev_init(&d[i], NULL, "d", 1, (uint16_t)i, 0xff0000, 0, 0, 0);
	CHECK_EQ(pci_bus_add(pb, &d[0], 0), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_bus_add(pb, &d[0], 32), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_bus_add(pb, &d[0], 5), 5);
	CHECK_EQ(pci_bus_add(pb, &d[0], 6), (unsigned long long)-EINVAL); /* already plugged */
	CHECK_EQ(pci_bus_add(pb, &d[1], 5), (unsigned long long)-EBUSY);
	CHECK_EQ(pci_bus_add(pb, &d[1], -1), 1);
	/* window exhaustion: 64 KiB window, a 32 KiB BAR fits once */
	CHECK_EQ(pci_dev_add_bar(&d[2], 0, PCI_BAR_MEM32, 0x8000, false), 0);
	CHECK_EQ(pci_dev_add_bar(&d[3], 0, PCI_BAR_MEM32, 0x8000, false), 0);
	CHECK_EQ(pci_dev_add_bar(&d[4], 0, PCI_BAR_MEM32, 0x8000, false), 0);
	CHECK_EQ(pci_bus_add(pb, &d[2], -1), 2);
	CHECK_EQ(pci_bus_add(pb, &d[3], -1), 3);
	CHECK_EQ(pci_bus_add(pb, &d[4], -1), (unsigned long long)-ENOSPC);
	CHECK(d[4].bus == NULL);
	int next = 4;
	for (int i = 5; i < 40; i++) {
		int s = pci_bus_add(pb, &d[i], -1);
		if (next < PCI_MAX_SLOTS) {
			if (next == 5)
				next++;
			CHECK_EQ(s, next);
			next++;
		} else {
			CHECK_EQ(s, (unsigned long long)-ENOSPC);
		}
	}
	/* remove frees the slot */
	pci_bus_remove(pb, &d[1]);
	CHECK(d[1].bus == NULL);
	CHECK_EQ(pci_cfg_read(pb, 0, PCI_DEVFN(1, 0), 0, 2), 0xffff);
	CHECK_EQ(pci_bus_add(pb, &d[5], -1), (unsigned long long)-EINVAL); /* plugged */
	CHECK_EQ(pci_bus_add(pb, &d[1], -1), 1);
	pci_bus_destroy(pb);
	free(d);
	free(pb);
}

/* ---- capabilities ---------------------------------------------------------- */

TEST(capability_list_walk)
{
	struct rig *r = rig_new(true);
	CHECK(cf8_read(r, 1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	uint8_t ids[8];
	int n = 0;
	uint32_t ptr = cf8_read(r, 1, PCI_CAPABILITY_LIST, 1);
	bool seen[256] = {false};
	for (int steps = 0; ptr && steps < 48; steps++) {
		CHECK(ptr >= PCI_CAP_START);
		CHECK_EQ(ptr & 3, 0);
		CHECK(ptr <= 256 - 2);
		CHECK(!seen[ptr]);
		seen[ptr] = true;
		if (n < 8)
			ids[n++] = (uint8_t)cf8_read(r, 1, ptr, 1);
		ptr = cf8_read(r, 1, ptr + 1, 1);
	}
	CHECK_EQ(ptr, 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(ids[0], PCI_CAP_ID_MSIX);
	CHECK_EQ(ids[1], PCI_CAP_ID_VNDR);
	/* the guest cannot rewire the list */
	uint8_t first = (uint8_t)cf8_read(r, 1, PCI_CAPABILITY_LIST, 1);
	cf8_write(r, 1, PCI_CAPABILITY_LIST, 1, 0x40);
	cf8_write(r, 1, first + 1u, 1, first);
	CHECK_EQ(cf8_read(r, 1, PCI_CAPABILITY_LIST, 1), first);
	CHECK_EQ(cf8_read(r, 1, first + 1u, 1), r->t.vcap);
	rig_free(r);
}

TEST(capability_space_exhaustion)
{
	struct pci_dev *pd = calloc(1, sizeof(*pd));
	pci_dev_init(pd, NULL, "x", 1, 2, 0xff0000, 0, 0, 0);
	uint8_t off = 0;
	CHECK_EQ(pci_add_cap(pd, 9, 1, &off), (unsigned long long)-EINVAL);
	int n = 0;
	while (pci_add_cap(pd, 9, 18, &off) == 0)
		n++;
	CHECK_EQ(n, (256 - 0x40) / 20); /* 18 bytes, dword aligned: 20 each */
	CHECK_EQ(pci_add_cap(pd, 9, 18, &off), (unsigned long long)-ENOSPC);
	/* the list still ends and every pointer is aligned */
	uint32_t p = pd->cfg[PCI_CAPABILITY_LIST];
	int walked = 0;
	while (p && walked < 64) {
		CHECK_EQ(p & 3, 0);
		p = pd->cfg[p + 1];
		walked++;
	}
	CHECK_EQ(walked, n);
	free(pd);
}

/* ---- MSI-X ------------------------------------------------------------------ */

static uint64_t table_gpa(struct rig *r, uint32_t vec, uint32_t field)
{
	return pci_bar_address(&r->t.pd, 2) + T_TABLE + vec * 16 + field;
}

static void msix_ctl(struct rig *r, uint16_t bits)
{
	cf8_write(r, 1, r->t.msix.cap + PCI_MSIX_FLAGS, 2, bits);
}

static void program_vec(struct rig *r, uint32_t v, uint64_t addr, uint32_t data, bool masked)
{
	mmio_wr(r, table_gpa(r, v, 0), 4, (uint32_t)addr);
	mmio_wr(r, table_gpa(r, v, 4), 4, (uint32_t)(addr >> 32));
	mmio_wr(r, table_gpa(r, v, 8), 4, data);
	mmio_wr(r, table_gpa(r, v, 12), 4, masked ? 1 : 0);
}

TEST(msix_capability_fields)
{
	struct rig *r = rig_new(true);
	uint8_t c = r->t.msix.cap;
	CHECK_EQ(cf8_read(r, 1, c, 1), PCI_CAP_ID_MSIX);
	CHECK_EQ(cf8_read(r, 1, c + PCI_MSIX_FLAGS, 2), T_NVEC - 1);
	CHECK_EQ(cf8_read(r, 1, c + PCI_MSIX_TABLE, 4), T_TABLE | 2);
	CHECK_EQ(cf8_read(r, 1, c + PCI_MSIX_PBA, 4), T_PBA | 2);
	/* only enable and function mask are writable */
	msix_ctl(r, 0xffff);
	CHECK_EQ(cf8_read(r, 1, c + PCI_MSIX_FLAGS, 2), 0xc000 | (T_NVEC - 1));
	CHECK(pci_msix_enabled(&r->t.msix));
	cf8_write(r, 1, c + PCI_MSIX_TABLE, 4, 0);
	CHECK_EQ(cf8_read(r, 1, c + PCI_MSIX_TABLE, 4), T_TABLE | 2);
	/* byte write to the upper control byte works too */
	cf8_write(r, 1, c + PCI_MSIX_FLAGS + 1, 1, 0);
	CHECK(!pci_msix_enabled(&r->t.msix));
	rig_free(r);
}

TEST(msix_table_and_pba_access_rules)
{
	struct rig *r = rig_new(true);
	cf8_write(r, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	/* reset state: address/data 0, every vector masked */
	for (uint32_t v = 0; v < T_NVEC; v++) {
		CHECK_EQ(mmio_rd(r, table_gpa(r, v, 0), 8), 0);
		CHECK_EQ(mmio_rd(r, table_gpa(r, v, 8), 8), 1ull << 32);
	}
	program_vec(r, 1, 0xfee01003, 0x4041, true); /* bits 1:0 of the address read 0 */
	CHECK_EQ(mmio_rd(r, table_gpa(r, 1, 0), 4), 0xfee01000);
	CHECK_EQ(mmio_rd(r, table_gpa(r, 1, 0), 8), 0xfee01000);
	CHECK_EQ(mmio_rd(r, table_gpa(r, 1, 8), 4), 0x4041);
	CHECK_EQ(mmio_rd(r, table_gpa(r, 1, 12), 4), 1);
	/* vector control: reserved bits read 0 */
	mmio_wr(r, table_gpa(r, 1, 12), 4, 0xfffffffe | 1);
	CHECK_EQ(mmio_rd(r, table_gpa(r, 1, 12), 4), 1);
	/* qword write of data + control */
	mmio_wr(r, table_gpa(r, 2, 8), 8, 0x0000000100005555ull);
	CHECK_EQ(mmio_rd(r, table_gpa(r, 2, 8), 4), 0x5555);
	CHECK_EQ(mmio_rd(r, table_gpa(r, 2, 12), 4), 1);
	/* every width at every offset of the table region: defined */
	for (uint32_t off = 0; off < 0x100; off++) {
		for (uint32_t len = 1; len <= 8; len *= 2) {
			uint64_t got = mmio_rd(r, pci_bar_address(&r->t.pd, 2) + off, len);
			bool ok = (len == 4 && !(off & 3)) || (len == 8 && !(off & 7));
			if (!ok || off >= T_NVEC * 16) {
				if (got != 0)
					printf("  table off 0x%x len %u\n", off, len);
				CHECK_EQ(got, 0);
			}
		}
	}
	/* bad widths / misaligned writes are ignored */
	mmio_wr(r, table_gpa(r, 1, 8), 1, 0xaa);
	mmio_wr(r, table_gpa(r, 1, 8), 2, 0xaaaa);
	mmio_wr(r, table_gpa(r, 1, 9), 4, 0xaaaaaaaa);
	mmio_wr(r, table_gpa(r, 1, 4), 8, UINT64_MAX); /* qword not qword-aligned */
	CHECK_EQ(mmio_rd(r, table_gpa(r, 1, 8), 4), 0x4041);
	CHECK_EQ(mmio_rd(r, table_gpa(r, 1, 4), 4), 0);
	mmio_wr(r, table_gpa(r, 1, 12), 1, 0); /* byte unmask: ignored */
	CHECK_EQ(mmio_rd(r, table_gpa(r, 1, 12), 4), 1);
	/* past the last entry: ignored */
	mmio_wr(r, table_gpa(r, T_NVEC, 8), 4, 0x1234);
	CHECK_EQ(mmio_rd(r, table_gpa(r, T_NVEC, 8), 4), 0);
	/* PBA: read-only, 4/8-byte aligned reads */
	uint64_t pba = pci_bar_address(&r->t.pd, 2) + T_PBA;
	mmio_wr(r, pba, 8, UINT64_MAX);
	CHECK_EQ(mmio_rd(r, pba, 8), 0);
	for (uint32_t off = 0; off < 0x40; off++)
		for (uint32_t len = 1; len <= 8; len *= 2)
			CHECK_EQ(mmio_rd(r, pba + off, len), 0);
	/* routes exist from init; none was programmed (MSI-X is off) */
	CHECK_EQ(r->fp.nalloc, T_NVEC);
	CHECK_EQ(r->fp.nsend + r->fp.nupdate, 0);
	rig_free(r);
}

TEST(msix_delivery_pending_and_routes)
{
	/* no loop: route updates happen on the calling thread */
	struct rig *r = rig_new(true);
	struct pci_msix *m = &r->t.msix;
	struct fake_plat *f = &r->fp;
	cf8_write(r, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	uint64_t pba = pci_bar_address(&r->t.pd, 2) + T_PBA;
	/* one route per vector, made at init, none programmed */
	CHECK_EQ(f->nalloc, T_NVEC);
	for (int v = 0; v < T_NVEC; v++) {
		CHECK_EQ(m->vec[v].handle, v);
		CHECK_EQ(m->vec[v].fd, f->fds[v]);
	}
	CHECK_EQ(f->nupdate, 0);

	/* disabled: dropped, nothing pending */
	CHECK_EQ(pci_msix_notify(m, 0), (unsigned long long)-ENODEV);
	CHECK_EQ(pci_msix_notify(m, T_NVEC), (unsigned long long)-EINVAL);
	CHECK_EQ(mmio_rd(r, pba, 8), 0);

	/* Linux's order: enable with the function masked, program, unmask */
	msix_ctl(r, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	program_vec(r, 0, 0xfee00000, 0x30, false);
	program_vec(r, 3, 0xfee02000, 0x33, true);
	CHECK_EQ(pci_msix_notify(m, 0), 0); /* function masked: pending */
	CHECK_EQ(mmio_rd(r, pba, 8), 1);
	CHECK_EQ(mmio_rd(r, pba, 4), 1);
	CHECK_EQ(f->nsend + f->nupdate, 0); /* nothing deliverable yet */
	/* unmask: the route gets the message, then the pending one goes out
	 * through it (no msi_send) */
	msix_ctl(r, PCI_MSIX_FLAGS_ENABLE);
	CHECK_EQ(f->nupdate, 1);
	CHECK_EQ(f->update_handle[0], 0);
	CHECK_EQ(f->update_addr[0], 0xfee00000);
	CHECK_EQ(f->update_data[0], 0x30);
	CHECK_EQ(efd_count(f->fds[0]), 1);
	CHECK_EQ(f->nsend, 0);
	CHECK_EQ(mmio_rd(r, pba, 8), 0);

	/* a current route: the irqfd is written, nothing else */
	CHECK_EQ(pci_msix_notify(m, 0), 0);
	CHECK_EQ(pci_msix_notify(m, 0), 0);
	CHECK_EQ(efd_count(f->fds[0]), 2);
	CHECK_EQ(f->nupdate, 1);
	CHECK_EQ(f->nsend, 0);

	/* the guest moves the vector: the route follows the write */
	mmio_wr(r, table_gpa(r, 0, 8), 4, 0x31);
	CHECK_EQ(f->nupdate, 2);
	CHECK_EQ(f->update_data[1], 0x31);
	CHECK_EQ(pci_msix_notify(m, 0), 0);
	CHECK_EQ(efd_count(f->fds[0]), 1);
	CHECK_EQ(f->route_data[0], 0x31);
	/* writing the same value again changes nothing */
	mmio_wr(r, table_gpa(r, 0, 8), 4, 0x31);
	CHECK_EQ(f->nupdate, 2);

	/* per-vector mask: pending, delivered through the route on unmask */
	CHECK_EQ(pci_msix_notify(m, 3), 0);
	CHECK_EQ(pci_msix_notify(m, 3), 0);
	CHECK_EQ(mmio_rd(r, pba, 8), 1u << 3);
	mmio_wr(r, table_gpa(r, 3, 12), 4, 0);
	CHECK_EQ(f->nupdate, 3);
	CHECK_EQ(f->update_data[2], 0x33);
	CHECK_EQ(efd_count(f->fds[3]), 1); /* one message for the pending bit */
	CHECK_EQ(mmio_rd(r, pba, 8), 0);

	/* pending survives a disable and is not sent while disabled */
	msix_ctl(r, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	CHECK_EQ(pci_msix_notify(m, 3), 0);
	msix_ctl(r, PCI_MSIX_FLAGS_MASKALL);
	CHECK_EQ(pci_msix_notify(m, 3), (unsigned long long)-ENODEV);
	msix_ctl(r, 0);
	CHECK_EQ(efd_count(f->fds[3]), 0);
	CHECK_EQ(mmio_rd(r, pba, 8), 1u << 3);
	msix_ctl(r, PCI_MSIX_FLAGS_ENABLE);
	CHECK_EQ(efd_count(f->fds[3]), 1);
	CHECK_EQ(mmio_rd(r, pba, 8), 0);

	/* the route cannot be updated: slow path, tried again only for a new
	 * message */
	f->fail_update = -EIO;
	program_vec(r, 4, 0xfee04000, 0x44, false);
	int updates = f->nupdate;
	CHECK_EQ(pci_msix_notify(m, 4), 0);
	CHECK_EQ(pci_msix_notify(m, 4), 0);
	CHECK_EQ(f->nupdate, updates);
	CHECK_EQ(f->nsend, 2);
	CHECK_EQ(f->send_addr[0], 0xfee04000);
	CHECK_EQ(f->send_data[0], 0x44);
	CHECK_EQ(efd_count(f->fds[4]), 0);
	f->fail_update = 0;
	mmio_wr(r, table_gpa(r, 4, 8), 4, 0x45);
	CHECK_EQ(f->nupdate, updates + 1);
	CHECK_EQ(pci_msix_notify(m, 4), 0);
	CHECK_EQ(efd_count(f->fds[4]), 1);
	CHECK_EQ(f->nsend, 2);
	CHECK_EQ(m->send_errors, 0);

	pci_msix_destroy(m);
	CHECK_EQ(f->nfree, T_NVEC);
	for (int v = 0; v < T_NVEC; v++)
		CHECK_EQ(f->freed[v], v);
	rig_free(r);
}

TEST(msix_without_routes_uses_the_slow_path)
{
	/* msi_alloc failed at init: the device still works, via msi_send */
	struct rig *r = rig_new_ex(true, -ENOSPC, false);
	struct pci_msix *m = &r->t.msix;
	struct fake_plat *f = &r->fp;
	CHECK_EQ(f->nalloc, 0);
	CHECK_EQ(m->vec[0].handle, -1);
	cf8_write(r, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	msix_ctl(r, PCI_MSIX_FLAGS_ENABLE);
	program_vec(r, 2, 0xfee04000, 0x42, false);
	CHECK_EQ(f->nupdate, 0);
	CHECK_EQ(pci_msix_notify(m, 2), 0);
	CHECK_EQ(f->nsend, 1);
	CHECK_EQ(f->send_data[0], 0x42);
	pci_msix_destroy(m);
	CHECK_EQ(f->nfree, 0);
	rig_free(r);
}

/* ---- MSI-X with deferral: vCPU threads make no set-up call --------------- */

/* Run fn(arg) on a new thread - the vCPU - and wait for it. */
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

static void on_vcpu(struct rig *r, void (*fn)(struct rig *r))
{
	struct vcpu_job j = {fn, r};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, vcpu_main, &j), 0);
	pthread_join(t, NULL);
}

#define MSG_A_ADDR 0xfee00000u
#define MSG_A_DATA 0x30u
#define MSG_B_ADDR 0xfee03000u
#define MSG_B_DATA 0x51u

static void vcpu_driver_setup(struct rig *r)
{
	cf8_write(r, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	msix_ctl(r, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	program_vec(r, 0, MSG_A_ADDR, MSG_A_DATA, false);
	program_vec(r, 1, 0xfee01000, 0x40, true);
	msix_ctl(r, PCI_MSIX_FLAGS_ENABLE);
}

static void vcpu_fire0(struct rig *r)
{
	CHECK_EQ(pci_msix_notify(&r->t.msix, 0), 0);
}

/* Linux's way of moving a vector: mask, rewrite, unmask - then the
 * device fires at once (e.g. a config interrupt from a status write). */
static void vcpu_move_and_fire0(struct rig *r)
{
	mmio_wr(r, table_gpa(r, 0, 12), 4, 1);
	mmio_wr(r, table_gpa(r, 0, 0), 4, MSG_B_ADDR);
	mmio_wr(r, table_gpa(r, 0, 8), 4, MSG_B_DATA);
	mmio_wr(r, table_gpa(r, 0, 12), 4, 0);
	CHECK_EQ(pci_msix_notify(&r->t.msix, 0), 0);
}

static void vcpu_rewrite_fire_mask0(struct rig *r)
{
	mmio_wr(r, table_gpa(r, 0, 8), 4, 0x52);
	CHECK_EQ(pci_msix_notify(&r->t.msix, 0), 0);
	mmio_wr(r, table_gpa(r, 0, 12), 4, 1);
}

static void vcpu_unmask0(struct rig *r)
{
	mmio_wr(r, table_gpa(r, 0, 12), 4, 0);
}

static void vcpu_rewrite_fire_disable0(struct rig *r)
{
	mmio_wr(r, table_gpa(r, 0, 8), 4, 0x53);
	CHECK_EQ(pci_msix_notify(&r->t.msix, 0), 0);
	msix_ctl(r, 0);
}

static void vcpu_pending_then_unmask1(struct rig *r)
{
	CHECK_EQ(pci_msix_notify(&r->t.msix, 1), 0); /* masked: pending */
	mmio_wr(r, table_gpa(r, 1, 12), 4, 0);
}

TEST(msix_route_updates_run_on_the_loop)
{
	struct rig *r = rig_new_ex(true, 0, true);
	struct fake_plat *f = &r->fp;
	struct pci_msix *m = &r->t.msix;
	CHECK_EQ(f->nalloc, T_NVEC); /* at init, on this (the loop's) thread */
	/* the driver programs and unmasks vector 0: the vCPU only defers */
	on_vcpu(r, vcpu_driver_setup);
	CHECK_EQ(f->nupdate, 0);
	CHECK(f->ndefer > 0);
	CHECK_EQ(fp_run_work(f), 1);
	CHECK_EQ(f->nupdate, 1);
	CHECK_EQ(f->update_handle[0], 0);
	CHECK_EQ(f->update_addr[0], MSG_A_ADDR);
	CHECK_EQ(f->update_data[0], MSG_A_DATA);
	CHECK(pthread_equal(f->update_thread[0], pthread_self()));
	CHECK_EQ(fp_run_work(f), 0);
	/* the route is current: a fire on the vCPU writes the irqfd */
	on_vcpu(r, vcpu_fire0);
	CHECK_EQ(efd_count(f->fds[0]), 1);
	CHECK_EQ(m->via_loop, 0);
	CHECK_EQ(fp_run_work(f), 0);
	CHECK_EQ(f->off_loop_calls, 0);
	CHECK_EQ(f->nsend, 0);
	rig_free(r);
}

TEST(msix_rewrite_then_fire_delivers_the_new_message)
{
	struct rig *r = rig_new_ex(true, 0, true);
	struct fake_plat *f = &r->fp;
	struct pci_msix *m = &r->t.msix;
	on_vcpu(r, vcpu_driver_setup);
	fp_run_work(f);
	CHECK_EQ(f->route_data[0], MSG_A_DATA);
	/* rewrite + fire before the loop has seen the rewrite: the stale
	 * route (message A) is not used */
	on_vcpu(r, vcpu_move_and_fire0);
	CHECK_EQ(efd_count(f->fds[0]), 0);
	CHECK_EQ(f->nupdate, 1);
	CHECK_EQ(m->via_loop, 1);
	CHECK_EQ(f->route_data[0], MSG_A_DATA);
	/* the loop updates the route first, then delivers through it: the
	 * message that reaches the guest is B */
	CHECK_EQ(fp_run_work(f), 1);
	CHECK_EQ(f->nupdate, 2);
	CHECK_EQ(f->update_addr[1], MSG_B_ADDR);
	CHECK_EQ(f->update_data[1], MSG_B_DATA);
	CHECK_EQ(f->route_addr[0], MSG_B_ADDR);
	CHECK_EQ(f->route_data[0], MSG_B_DATA);
	CHECK_EQ(efd_count(f->fds[0]), 1);
	CHECK_EQ(f->nsend, 0);
	/* from now on the fast path again */
	on_vcpu(r, vcpu_fire0);
	CHECK_EQ(efd_count(f->fds[0]), 1);
	CHECK_EQ(m->via_loop, 1);

	/* fired while stale, masked before the loop ran: pending, not sent;
	 * the unmask delivers it with the newest message */
	on_vcpu(r, vcpu_rewrite_fire_mask0);
	CHECK_EQ(fp_run_work(f), 1);
	CHECK_EQ(efd_count(f->fds[0]), 0);
	uint64_t pba = pci_bar_address(&r->t.pd, 2) + T_PBA;
	CHECK_EQ(mmio_rd(r, pba, 8), 1);
	CHECK_EQ(f->route_data[0], 0x52); /* the fired vector's route was updated */
	on_vcpu(r, vcpu_unmask0);
	CHECK_EQ(efd_count(f->fds[0]), 1);
	CHECK_EQ(mmio_rd(r, pba, 8), 0);

	/* fired while stale, MSI-X disabled before the loop ran: dropped */
	uint64_t dropped = m->dropped;
	on_vcpu(r, vcpu_rewrite_fire_disable0);
	fp_run_work(f);
	CHECK_EQ(efd_count(f->fds[0]), 0);
	CHECK_EQ(m->dropped, dropped + 1);
	CHECK_EQ(f->nsend, 0);
	CHECK_EQ(f->off_loop_calls, 0);
	rig_free(r);
}

TEST(msix_pending_on_unmask_needs_no_signal_msi)
{
	struct rig *r = rig_new_ex(true, 0, true);
	struct fake_plat *f = &r->fp;
	on_vcpu(r, vcpu_driver_setup);
	fp_run_work(f);
	/* vector 1 was programmed masked: its route is still empty */
	CHECK(!f->routed[1]);
	on_vcpu(r, vcpu_pending_then_unmask1);
	CHECK_EQ(efd_count(f->fds[1]), 0);
	CHECK_EQ(fp_run_work(f), 1);
	CHECK_EQ(f->route_data[1], 0x40);
	CHECK_EQ(efd_count(f->fds[1]), 1);
	CHECK_EQ(f->nsend, 0); /* no KVM_SIGNAL_MSI anywhere */
	CHECK_EQ(f->off_loop_calls, 0);
	/* destroy cancels queued work (on the loop thread) */
	on_vcpu(r, vcpu_rewrite_fire_mask0);
	CHECK(r->t.msix.work.queued);
	pci_msix_destroy(&r->t.msix);
	CHECK(!r->t.msix.work.queued);
	CHECK_EQ(fp_run_work(f), 0);
	rig_free(r);
}

TEST(msix_without_platform)
{
	struct rig *r = rig_new(true);
	struct pci_msix *m = &r->t.msix;
	m->p = NULL;
	cf8_write(r, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	msix_ctl(r, PCI_MSIX_FLAGS_ENABLE);
	program_vec(r, 0, 0xfee00000, 0x30, false);
	CHECK_EQ(pci_msix_notify(m, 0), (unsigned long long)-ENOSYS);
	CHECK_EQ(m->send_errors, 1);
	rig_free(r);
}

TEST(msix_init_validation)
{
	struct rig *r = rig_new(false);
	struct tdev *t = &r->t;
	pci_dev_init(&t->pd, &t_ops, "v", 1, 2, 0xff0000, 0, 0, 0);
	CHECK_EQ(pci_dev_add_bar(&t->pd, 0, PCI_BAR_MEM32, 0x100, false), 0);
	struct pci_msix *m = &t->msix;
	CHECK_EQ(pci_msix_init(m, &t->pd, NULL, 0, 0, 0, 0x80), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_msix_init(m, &t->pd, NULL, 65, 0, 0, 0x80), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_msix_init(m, &t->pd, NULL, 4, 1, 0, 0x80), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_msix_init(m, &t->pd, NULL, 4, 0, 4, 0x80), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_msix_init(m, &t->pd, NULL, 4, 0, 0, 0x38), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_msix_init(m, &t->pd, NULL, 16, 0, 0, 0x80), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_msix_init(m, &t->pd, NULL, 4, 0, 0, 0xfc), (unsigned long long)-EINVAL);
	CHECK_EQ(pci_msix_init(m, &t->pd, NULL, 4, 0, 0, 0x40), 0);
	pci_msix_destroy(m);
	rig_free(r);
}

/* ---- ACPI ------------------------------------------------------------------ */

static const uint8_t *find_bytes(const uint8_t *h, size_t hl, const void *n, size_t nl)
{
	for (size_t i = 0; i + nl <= hl; i++)
		if (!memcmp(h + i, n, nl))
			return h + i;
	return NULL;
}

static const uint8_t *table(const uint8_t *buf, size_t len, uint64_t gpa, uint64_t a)
{
	if (a < gpa || a - gpa + 36 > len)
		return NULL;
	const uint8_t *t = buf + (a - gpa);
	if (rd32(t + 4) > len - (a - gpa))
		return NULL;
	return t;
}

static const uint8_t *find_sdt(const uint8_t *buf, size_t len, uint64_t gpa, const char *sig)
{
	const uint8_t *xsdt = table(buf, len, gpa, bytes_le(buf + 24, 8));
	const uint8_t *rsdt = table(buf, len, gpa, rd32(buf + 16));
	if (!xsdt || !rsdt)
		return NULL;
	const uint8_t *found = NULL, *found32 = NULL;
	for (uint32_t i = 0; i < (rd32(xsdt + 4) - 36) / 8; i++) {
		const uint8_t *t = table(buf, len, gpa, bytes_le(xsdt + 36 + 8 * i, 8));
		if (t && !memcmp(t, sig, 4))
			found = t;
	}
	for (uint32_t i = 0; i < (rd32(rsdt + 4) - 36) / 4; i++) {
		const uint8_t *t = table(buf, len, gpa, rd32(rsdt + 36 + 4 * i));
		if (t && !memcmp(t, sig, 4))
			found32 = t;
	}
	return found == found32 ? found : NULL;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

TEST(acpi_mcfg_and_host_bridge)
{
	static uint8_t buf[0x20000];
	uint64_t gpa = GPA_ACPI_TABLES, rsdp = 0;
	struct acpi_config cfg = {.ncpus = 2, .pci = false};
	int n = acpi_build(buf, sizeof(buf), gpa, &cfg, &rsdp);
	CHECK(n > 0);
	CHECK(find_sdt(buf, (size_t)n, gpa, "MCFG") == NULL);
	const uint8_t *dsdt0 = find_bytes(buf, (size_t)n, "DSDT", 4);
	CHECK(dsdt0 && !find_bytes(dsdt0, rd32(dsdt0 + 4), "PCI0", 4));

	cfg.pci = true;
	n = acpi_build(buf, sizeof(buf), gpa, &cfg, &rsdp);
	CHECK(n > 0);
	if (n <= 0)
		return;
	const uint8_t *mcfg = find_sdt(buf, (size_t)n, gpa, "MCFG");
	CHECK(mcfg != NULL);
	if (mcfg) {
		CHECK_EQ(rd32(mcfg + 4), 60);
		CHECK_EQ(mcfg[8], 1);
		CHECK_EQ(sum(mcfg, 60), 0);
		CHECK_EQ(bytes_le(mcfg + 36, 8), 0); /* reserved */
		CHECK_EQ(bytes_le(mcfg + 44, 8), GPA_PCI_ECAM);
		CHECK_EQ(bytes_le(mcfg + 52, 2), 0);
		CHECK_EQ(mcfg[54], PCI_ECAM_BUS_FIRST);
		CHECK_EQ(mcfg[55], PCI_ECAM_BUS_LAST);
		CHECK_EQ(bytes_le(mcfg + 56, 4), 0);
	}
	const uint8_t *fadt = find_sdt(buf, (size_t)n, gpa, "FACP");
	CHECK(fadt != NULL);
	if (!fadt)
		return;
	const uint8_t *dsdt = table(buf, (size_t)n, gpa, bytes_le(fadt + 140, 8));
	CHECK(dsdt != NULL);
	if (!dsdt)
		return;
	uint32_t dl = rd32(dsdt + 4);
	CHECK_EQ(sum(dsdt, dl), 0);
	const uint8_t *pci0 = find_bytes(dsdt, dl, "PCI0", 4);
	const uint8_t *ecamdev = find_bytes(dsdt, dl, "ECAM", 4);
	CHECK(pci0 != NULL);
	CHECK(ecamdev != NULL);
	uint32_t id;
	uint8_t name_hid[9] = {AML_NAME_OP, '_', 'H', 'I', 'D', AML_DWORD_PREFIX};
	CHECK_EQ(aml_eisaid_value("PNP0A08", &id), 0);
	memcpy(name_hid + 6, &id, 3); /* first three bytes of the id suffice */
	CHECK(find_bytes(dsdt, dl, name_hid, 9));
	uint8_t name_cid[9] = {AML_NAME_OP, '_', 'C', 'I', 'D', AML_DWORD_PREFIX};
	CHECK_EQ(aml_eisaid_value("PNP0A03", &id), 0);
	memcpy(name_cid + 6, &id, 3);
	CHECK(find_bytes(dsdt, dl, name_cid, 9));
	CHECK_EQ(aml_eisaid_value("PNP0C02", &id), 0);
	memcpy(name_hid + 6, &id, 3);
	CHECK(find_bytes(dsdt, dl, name_hid, 9));
	CHECK(find_bytes(dsdt, dl, "_SEG", 4));
	CHECK(find_bytes(dsdt, dl, "_BBN", 4));
	/* WordBusNumber 0..0: producer, MinFixed|MaxFixed, len 1 */
	const uint8_t bus[] = {0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0};
	CHECK(find_bytes(dsdt, dl, bus, sizeof(bus)));
	/* IO (Decode16, 0xcf8, 0xcf8, 1, 8) */
	const uint8_t io[] = {0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08};
	CHECK(find_bytes(dsdt, dl, io, sizeof(io)));
	/* DWordIO 0-0xcf7 and 0xd00-0xffff */
	const uint8_t io1[] = {0x87, 0x17, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0, 0, 0, 0, 0, 0,
			       0xf7, 0x0c, 0, 0, 0, 0, 0, 0, 0xf8, 0x0c, 0, 0};
	CHECK(find_bytes(dsdt, dl, io1, sizeof(io1)));
	const uint8_t io2[] = {0x87, 0x17, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0, 0, 0x00, 0x0d, 0, 0,
			       0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x00, 0xf3, 0, 0};
	CHECK(find_bytes(dsdt, dl, io2, sizeof(io2)));
	/* DWordMemory window, non-cacheable read-write */
	const uint8_t mem[] = {0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00,
			       0xc0, 0xff, 0xff, 0xff, 0xdf, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x20};
	CHECK(find_bytes(dsdt, dl, mem, sizeof(mem)));
	/* the ECAM reservation: Memory32Fixed (ReadWrite, 0xe0000000, 1 MiB) */
	const uint8_t m32[] = {0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xe0,
			       0x00, 0x00, 0x10, 0x00};
	CHECK(find_bytes(dsdt, dl, m32, sizeof(m32)));
	/* the BAR window and ECAM sit in the hole and apart */
	CHECK(GPA_PCI_MMIO32 >= GPA_MMIO_HOLE);
	CHECK(GPA_PCI_MMIO32 + PCI_MMIO32_SIZE <= GPA_PCI_ECAM);
	CHECK(GPA_PCI_ECAM + PCI_ECAM_SIZE <= GPA_IOAPIC);
}

TEST_MAIN()
