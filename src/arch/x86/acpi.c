/* SPDX-License-Identifier: MIT */
/*
 * acpi.c - ACPI 6.4 table builder (see acpi.h for what the tables say).
 *
 * All multi-byte fields are little-endian and written byte by byte, so the
 * output does not depend on host struct layout or alignment.
 */
#include "acpi.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../util/bytes.h"
#include "aml.h"
#include "layout.h"

/* ISA IRQ of the PS/2 keyboard (layout.h has no constant for it). */
#define IRQ_I8042_KBD 1
/* CMOS index of the RTC's century register (the RTC device's RTC_CENTURY,
 * the PC convention), for FADT.CENTURY. */
#define CMOS_CENTURY 0x32

#define ACPI_HEADER_LEN 36
#define RSDP_LEN 36
#define FACS_LEN 64
#define FADT_LEN 276
#define FADT_REVISION 6
#define FADT_MINOR_REVISION 4
#define DSDT_REVISION 2 /* 64-bit AML integers */
#define MADT_REVISION 5
#define XSDT_REVISION 1
#define RSDT_REVISION 1
#define MCFG_REVISION 1
#define MCFG_LEN (ACPI_HEADER_LEN + 8 + 16)
/* PC host bridges forward I/O ports 0-0xcf7 and 0xd00-0xffff downstream;
 * 0xcf8-0xcff are the config ports, 0xd00 is where the upper window
 * conventionally starts. */
#define PCI_IO_HIGH_START 0x0d00

/* GAS Address Space IDs and access sizes (§5.2.3.2) */
#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1
#define GAS_ACCESS_WORD 2
#define GAS_ACCESS_DWORD 3

/* FADT Fixed Feature Flags (§5.2.9, Table 5.10) */
#define FADT_F_WBINVD (1u << 0)
#define FADT_F_PROC_C1 (1u << 2)
#define FADT_F_PWR_BUTTON (1u << 4) /* 1 = no fixed-feature power button */
#define FADT_F_SLP_BUTTON (1u << 5) /* 1 = no fixed-feature sleep button */
#define FADT_F_FIX_RTC (1u << 6)    /* 1 = no RTC wake status in PM1 */
#define FADT_F_TMR_VAL_EXT (1u << 8)
#define FADT_F_RESET_REG_SUP (1u << 10)

/* FADT IA-PC Boot Architecture Flags (§5.2.9.3) */
#define FADT_BOOT_LEGACY_DEVICES (1u << 0)
#define FADT_BOOT_8042 (1u << 1)
#define FADT_BOOT_NO_VGA (1u << 2)

/* MADT (§5.2.12) */
#define MADT_PCAT_COMPAT (1u << 0)
#define MADT_TYPE_LAPIC 0
#define MADT_TYPE_IOAPIC 1
#define MADT_TYPE_ISO 2
#define MADT_TYPE_LAPIC_NMI 4
#define MADT_LAPIC_LEN 8
#define MADT_IOAPIC_LEN 12
#define MADT_ISO_LEN 10
#define MADT_LAPIC_NMI_LEN 6
#define MADT_LAPIC_ENABLED (1u << 0)
/* MPS INTI flags (§5.2.12.5, Table 5.50): [1:0] polarity, [3:2] trigger */
#define MPS_INTI_CONFORMS 0x0
#define MPS_INTI_ACTIVE_HIGH 0x1
#define MPS_INTI_LEVEL (0x3 << 2)
#define MADT_ALL_PROCESSORS 0xff

#define GPA_4G 0x100000000ULL

/* Notify value telling the VM generation ID driver the ID changed (the
 * specification's device-specific notification). */
#define VMGENID_NOTIFY 0x80

/* The IOAPIC's ID: the first one after the LAPIC IDs (as in the MP table). */
#define IOAPIC_ID(ncpus) ((uint8_t)(ncpus))

/* Bounded writer over the caller's buffer. */
struct out {
	uint8_t *buf;
	size_t size;
	size_t pos;
	uint64_t gpa; /* guest-physical address of buf[0] */
};

/* Reserve len bytes at the next guest-physical multiple of align (a power
 * of two) and zero them, padding included.  Returns 0 and the offset in
 * buf, or -ENOSPC. */
static int out_alloc(struct out *o, size_t len, size_t align, size_t *off)
{
	uint64_t here = o->gpa + o->pos;
	size_t start = o->pos + (size_t)(((here + align - 1) & ~(uint64_t)(align - 1)) - here);
	if (start > o->size || len > o->size - start)
		return -ENOSPC;
	memset(o->buf + o->pos, 0, start + len - o->pos);
	o->pos = start + len;
	*off = start;
	return 0;
}

/*
 * System Description Table Header (§5.2.6):
 *
 *   0 Signature[4]  4 Length  8 Revision  9 Checksum  10 OEMID[6]
 *   16 OEM Table ID[8]  24 OEM Revision  28 Creator ID[4]
 *   32 Creator Revision                                   (36 bytes)
 */
static void put_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put_le32(t + 4, len);
	put_le8(t + 8, rev);
	memcpy(t + 10, ACPI_OEM_ID, 6);
	memcpy(t + 16, ACPI_OEM_TABLE_ID, 8);
	put_le32(t + 24, ACPI_OEM_REVISION);
	memcpy(t + 28, ACPI_CREATOR_ID, 4);
	put_le32(t + 32, ACPI_CREATOR_REVISION);
}

/* Fill the header checksum once the whole table is written. */
static void finish_table(uint8_t *t, uint32_t len)
{
	t[9] = 0;
	t[9] = checksum8(t, len);
}

/*
 * Generic Address Structure (§5.2.3.2), 12 bytes:
 *   0 Space ID  1 Bit Width  2 Bit Offset  3 Access Size  4 Address (8)
 */
static void put_gas(uint8_t *p, uint8_t space, uint8_t bit_width, uint8_t access, uint64_t addr)
{
	p[0] = space;
	p[1] = bit_width;
	p[2] = 0;
	p[3] = access;
	put_le64(p + 4, addr);
}

/*
 * FACS (§5.2.10), 64 bytes, no checksum:
 *   0 "FACS"  4 Length  8 Hardware Signature  12 Firmware Waking Vector
 *   16 Global Lock  20 Flags  24 X_Firmware Waking Vector (8)
 *   32 Version  33 Reserved[3]  36 OSPM Flags  40 Reserved[24]
 * Everything zero but the signature, length and version: no S4BIOS, no
 * 64-bit wake, and the global lock is free.
 */
static void build_facs(uint8_t *t)
{
	memcpy(t, "FACS", 4);
	put_le32(t + 4, FACS_LEN);
	put_le8(t + 32, 2);
}

/*
 * The PCI host bridge and its ECAM reservation (see acpi.h), in ASL terms:
 *
 *   Device (PCI0) {
 *     Name (_HID, EisaId ("PNP0A08"))  Name (_CID, EisaId ("PNP0A03"))
 *     Name (_SEG, 0)  Name (_BBN, 0)  Name (_UID, 0)
 *     Name (_CRS, ResourceTemplate () {
 *       WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
 *                      0, first, last, 0, last - first + 1)
 *       IO (Decode16, 0x0cf8, 0x0cf8, 1, 8)
 *       DWordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
 *                0, 0x0000, 0x0cf7, 0, 0x0cf8)
 *       DWordIO (..., 0, 0x0d00, 0xffff, 0, 0xf300)
 *       DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed,
 *                    NonCacheable, ReadWrite, 0, mmio32, mmio32_end, 0, size)
 *     })
 *   }
 *   Device (ECAM) {
 *     Name (_HID, EisaId ("PNP0C02"))  Name (_UID, "ECAM")
 *     Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, ecam, size) })
 *   }
 */
static void build_pci_aml(struct aml *a)
{
	size_t dev = aml_device_begin(a, "PCI0");
	aml_name_eisaid(a, "_HID", "PNP0A08");
	aml_name_eisaid(a, "_CID", "PNP0A03");
	aml_name_integer(a, "_SEG", 0);
	aml_name_integer(a, "_BBN", PCI_ECAM_BUS_FIRST);
	aml_name_integer(a, "_UID", 0);
	aml_name_decl(a, "_CRS");
	size_t rt = aml_restemplate_begin(a);
	aml_res_word_bus_number(a, PCI_ECAM_BUS_FIRST, PCI_ECAM_BUS_LAST);
	aml_res_io(a, PORT_PCI_CONFIG, PORT_PCI_CONFIG, 1, PORT_PCI_CONFIG_LEN);
	aml_res_dword_io(a, 0x0000, PORT_PCI_CONFIG - 1);
	aml_res_dword_io(a, PCI_IO_HIGH_START, 0xffff);
	aml_res_dword_memory(a, AML_MEM_NONCACHEABLE, (uint32_t)GPA_PCI_MMIO32,
			     (uint32_t)(GPA_PCI_MMIO32 + PCI_MMIO32_SIZE - 1));
	aml_restemplate_end(a, rt);
	aml_device_end(a, dev);

	dev = aml_device_begin(a, "ECAM");
	aml_name_eisaid(a, "_HID", "PNP0C02");
	aml_name_string(a, "_UID", "ECAM");
	aml_name_decl(a, "_CRS");
	rt = aml_restemplate_begin(a);
	aml_res_memory32_fixed(a, (uint32_t)GPA_PCI_ECAM, (uint32_t)PCI_ECAM_SIZE, true);
	aml_restemplate_end(a, rt);
	aml_device_end(a, dev);
}

/*
 * The VM generation ID device (Microsoft's "Virtual Machine Generation ID"
 * specification), in ASL terms:
 *
 *   Device (VGEN) {
 *     Name (_HID, "VMGENCTR")          // an ID Linux's vmgenid driver matches
 *     Name (_CID, "VM_Gen_Counter")    // the specification's compatible ID
 *     Name (_DDN, "VM_Gen_Counter")
 *     Method (ADDR, 0, NotSerialized) {
 *       Return (Package () { gpa & 0xffffffff, gpa >> 32 })
 *     }
 *   }
 *
 * ACPICA upper-cases _HID and _CID strings ("VM_GEN_COUNTER"), which is the
 * form Linux's driver lists; the _HID matches without that.
 */
static void build_vmgenid_aml(struct aml *a, uint64_t gpa)
{
	size_t dev = aml_device_begin(a, "VGEN");
	aml_name_string(a, "_HID", "VMGENCTR");
	aml_name_string(a, "_CID", "VM_Gen_Counter");
	aml_name_string(a, "_DDN", "VM_Gen_Counter");
	size_t m = aml_method_begin(a, "ADDR", 0, false);
	aml_return(a);
	size_t pkg = aml_package_begin(a);
	aml_integer(a, gpa & 0xffffffffu);
	aml_integer(a, gpa >> 32);
	aml_package_end(a, pkg, 2);
	aml_method_end(a, m);
	aml_device_end(a, dev);
}

/*
 * DSDT body (ACPI 6.4 §5.2.11.1), in ASL terms:
 *
 *   Name (_S5, Package () { SLP_TYP, SLP_TYP, 0, 0 })   // §7.4.2 \_Sx
 *   Scope (\_SB) {
 *     Device (COM1) { _HID EISAID("PNP0501"), _UID 1,
 *                     _CRS { IO (0x3f8, 8), IRQNoFlags {4} } }
 *     Device (RTC)  { _HID EISAID("PNP0B00"),
 *                     _CRS { IO (0x70, 2), IRQNoFlags {8} } }
 *     Device (KBD)  { _HID EISAID("PNP0303"),
 *                     _CRS { IO (0x60, 1), IO (0x64, 1), IRQNoFlags {1} } }
 *     Device (PEVT) { _HID "QEMU0001", _CRS { IO (0x505, 1) },
 *                     Method (_STA) { Return (0x0F) } }
 *     [PCI0, ECAM]  [VGEN]
 *     <cfg->sb_extra_aml>
 *   }
 *   [Scope (\_GPE) { Method (_E00) { Notify (\_SB.VGEN, 0x80) } }]
 */
static void build_dsdt_aml(struct aml *a, const struct acpi_config *cfg)
{
	aml_name_decl(a, "_S5");
	size_t pkg = aml_package_begin(a);
	aml_integer(a, ACPI_S5_SLP_TYP); /* SLP_TYPa */
	aml_integer(a, ACPI_S5_SLP_TYP); /* SLP_TYPb */
	aml_integer(a, 0);		 /* reserved */
	aml_integer(a, 0);		 /* reserved */
	aml_package_end(a, pkg, 4);

	size_t sb = aml_scope_begin(a, "\\_SB");

	size_t dev = aml_device_begin(a, "COM1");
	aml_name_eisaid(a, "_HID", "PNP0501");
	aml_name_integer(a, "_UID", 1);
	aml_name_decl(a, "_CRS");
	size_t rt = aml_restemplate_begin(a);
	aml_res_io(a, PORT_COM1, PORT_COM1, 1, PORT_COM1_LEN);
	aml_res_irq_noflags(a, IRQ_COM1);
	aml_restemplate_end(a, rt);
	aml_device_end(a, dev);

	dev = aml_device_begin(a, "RTC");
	aml_name_eisaid(a, "_HID", "PNP0B00");
	aml_name_decl(a, "_CRS");
	rt = aml_restemplate_begin(a);
	aml_res_io(a, PORT_RTC, PORT_RTC, 1, PORT_RTC_LEN);
	aml_res_irq_noflags(a, IRQ_RTC);
	aml_restemplate_end(a, rt);
	aml_device_end(a, dev);

	dev = aml_device_begin(a, "KBD");
	aml_name_eisaid(a, "_HID", "PNP0303");
	aml_name_decl(a, "_CRS");
	rt = aml_restemplate_begin(a);
	aml_res_io(a, PORT_I8042_DATA, PORT_I8042_DATA, 1, 1);
	aml_res_io(a, PORT_I8042_CMD, PORT_I8042_CMD, 1, 1);
	aml_res_irq_noflags(a, IRQ_I8042_KBD);
	aml_restemplate_end(a, rt);
	aml_device_end(a, dev);

	dev = aml_device_begin(a, "PEVT");
	aml_name_string(a, "_HID", "QEMU0001");
	aml_name_decl(a, "_CRS");
	rt = aml_restemplate_begin(a);
	aml_res_io(a, PORT_PVPANIC, PORT_PVPANIC, 1, 1);
	aml_restemplate_end(a, rt);
	aml_method_return_integer(a, "_STA", 0x0f);
	aml_device_end(a, dev);

	if (cfg->pci)
		build_pci_aml(a);
	if (cfg->vmgenid_gpa)
		build_vmgenid_aml(a, cfg->vmgenid_gpa);

	aml_raw(a, cfg->sb_extra_aml, cfg->sb_extra_aml_len);
	aml_scope_end(a, sb);

	if (cfg->vmgenid_gpa) {
		char gpe[8];
		snprintf(gpe, sizeof(gpe), "_E%02X", ACPI_GPE_VMGENID);
		size_t sc = aml_scope_begin(a, "\\_GPE");
		size_t m = aml_method_begin(a, gpe, 0, false);
		aml_notify(a, "\\_SB.VGEN", VMGENID_NOTIFY);
		aml_method_end(a, m);
		aml_scope_end(a, sc);
	}
}

/* DSDT = header + AML, built in place at o->pos. */
static int build_dsdt(struct out *o, const struct acpi_config *cfg, size_t *off)
{
	int err = out_alloc(o, ACPI_HEADER_LEN, 8, off);
	if (err)
		return err;
	struct aml a;
	aml_init(&a, o->buf + o->pos, o->size - o->pos);
	build_dsdt_aml(&a, cfg);
	if (a.err)
		return a.err;
	o->pos += a.len;
	size_t len = o->pos - *off;
	if (len > UINT32_MAX)
		return -E2BIG;
	put_header(o->buf + *off, "DSDT", (uint32_t)len, DSDT_REVISION);
	finish_table(o->buf + *off, (uint32_t)len);
	return 0;
}

/*
 * FADT (§5.2.9, revision 6.4, 276 bytes).  Offsets of the fields set:
 *
 *    36 FIRMWARE_CTRL (FACS, 32-bit; X_FIRMWARE_CTRL stays 0 as required
 *       when this is set)     40 DSDT
 *    45 Preferred_PM_Profile  46 SCI_INT (2)   48 SMI_CMD (4) = 0
 *    56 PM1a_EVT_BLK  64 PM1a_CNT_BLK  76 PM_TMR_BLK  80 GPE0_BLK  (4 each)
 *    88 PM1_EVT_LEN  89 PM1_CNT_LEN  91 PM_TMR_LEN  92 GPE0_BLK_LEN  (1 each;
 *       GPE1_BLK_LEN and GPE1_BASE stay 0: no GPE1 block)
 *    96 P_LVL2_LAT (2) = 101: no C2   98 P_LVL3_LAT (2) = 1001: no C3
 *   108 CENTURY: CMOS index of the century register
 *   109 IAPC_BOOT_ARCH (2)   112 Flags (4)
 *   116 RESET_REG (GAS)      128 RESET_VALUE
 *   131 FADT Minor Version   140 X_DSDT (8)
 *   148 X_PM1a_EVT_BLK  172 X_PM1a_CNT_BLK  208 X_PM_TMR_BLK  220 X_GPE0_BLK
 *       (GAS each)
 *   268 Hypervisor Vendor Identity (8)
 */
static void build_fadt(uint8_t *t, uint64_t facs_gpa, uint64_t dsdt_gpa)
{
	put_header(t, "FACP", FADT_LEN, FADT_REVISION);
	put_le32(t + 36, (uint32_t)facs_gpa);
	put_le32(t + 40, (uint32_t)dsdt_gpa);
	put_le8(t + 45, 0); /* PM profile: unspecified */
	put_le16(t + 46, IRQ_ACPI_SCI);
	put_le32(t + 48, 0); /* no SMI_CMD: hardware is always in ACPI mode */
	put_le32(t + 56, PORT_ACPI_PM1A_EVT);
	put_le32(t + 64, PORT_ACPI_PM1A_CNT);
	put_le32(t + 76, PORT_ACPI_PM_TMR);
	put_le32(t + 80, PORT_ACPI_GPE0);
	put_le8(t + 88, PORT_ACPI_PM1A_EVT_LEN);
	put_le8(t + 89, PORT_ACPI_PM1A_CNT_LEN);
	put_le8(t + 91, PORT_ACPI_PM_TMR_LEN);
	put_le8(t + 92, PORT_ACPI_GPE0_LEN);
	put_le16(t + 96, 101);
	put_le16(t + 98, 1001);
	put_le8(t + 108, CMOS_CENTURY);
	put_le16(t + 109, FADT_BOOT_LEGACY_DEVICES | FADT_BOOT_8042 | FADT_BOOT_NO_VGA);
	put_le32(t + 112, FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON | FADT_F_FIX_RTC |
				  FADT_F_TMR_VAL_EXT | FADT_F_RESET_REG_SUP);
	put_gas(t + 116, GAS_SYSTEM_IO, 8, GAS_ACCESS_BYTE, PORT_ACPI_RESET);
	put_le8(t + 128, ACPI_RESET_VALUE);
	put_le8(t + 131, FADT_MINOR_REVISION);
	put_le64(t + 140, dsdt_gpa);
	put_gas(t + 148, GAS_SYSTEM_IO, PORT_ACPI_PM1A_EVT_LEN * 8, GAS_ACCESS_WORD,
		PORT_ACPI_PM1A_EVT);
	put_gas(t + 172, GAS_SYSTEM_IO, PORT_ACPI_PM1A_CNT_LEN * 8, GAS_ACCESS_WORD,
		PORT_ACPI_PM1A_CNT);
	put_gas(t + 208, GAS_SYSTEM_IO, PORT_ACPI_PM_TMR_LEN * 8, GAS_ACCESS_DWORD,
		PORT_ACPI_PM_TMR);
	put_gas(t + 220, GAS_SYSTEM_IO, PORT_ACPI_GPE0_LEN * 8, GAS_ACCESS_BYTE, PORT_ACPI_GPE0);
	memcpy(t + 268, "VISOR\0\0\0", 8);
	finish_table(t, FADT_LEN);
}

static size_t madt_len(uint32_t ncpus)
{
	return ACPI_HEADER_LEN + 8 + ncpus * MADT_LAPIC_LEN + MADT_IOAPIC_LEN + 2 * MADT_ISO_LEN +
	       MADT_LAPIC_NMI_LEN;
}

/* Interrupt Source Override (§5.2.12.5), 10 bytes:
 *   0 type=2  1 len=10  2 bus=0 (ISA)  3 source IRQ  4 GSI (4)  8 flags (2) */
static uint8_t *put_iso(uint8_t *p, uint8_t irq, uint32_t gsi, uint16_t flags)
{
	p[0] = MADT_TYPE_ISO;
	p[1] = MADT_ISO_LEN;
	p[2] = 0;
	p[3] = irq;
	put_le32(p + 4, gsi);
	put_le16(p + 8, flags);
	return p + MADT_ISO_LEN;
}

/*
 * MADT (§5.2.12): header, 36 Local Interrupt Controller Address (4),
 * 40 Flags (4), then the interrupt controller structures:
 *
 *   Processor Local APIC (§5.2.12.2), per CPU:
 *     0 type=0  1 len=8  2 ACPI Processor UID  3 APIC ID  4 flags (4)
 *   I/O APIC (§5.2.12.3):
 *     0 type=1  1 len=12  2 I/O APIC ID  3 reserved  4 address (4)  8 GSI base (4)
 *   Interrupt Source Overrides: IRQ0 -> GSI 2 (conforming: edge, high),
 *     IRQ9 (SCI) -> GSI 9 level, active-high
 *   Local APIC NMI (§5.2.12.7):
 *     0 type=4  1 len=6  2 UID (0xff = all)  3 flags (2)  5 LINT#
 */
static void build_madt(uint8_t *t, uint32_t ncpus)
{
	uint32_t len = (uint32_t)madt_len(ncpus);
	put_header(t, "APIC", len, MADT_REVISION);
	put_le32(t + 36, (uint32_t)GPA_LAPIC);
	put_le32(t + 40, MADT_PCAT_COMPAT);
	uint8_t *p = t + 44;
	for (uint32_t i = 0; i < ncpus; i++) {
		p[0] = MADT_TYPE_LAPIC;
		p[1] = MADT_LAPIC_LEN;
		p[2] = (uint8_t)i; /* ACPI Processor UID */
		p[3] = (uint8_t)i; /* APIC ID */
		put_le32(p + 4, MADT_LAPIC_ENABLED);
		p += MADT_LAPIC_LEN;
	}
	p[0] = MADT_TYPE_IOAPIC;
	p[1] = MADT_IOAPIC_LEN;
	p[2] = IOAPIC_ID(ncpus);
	p[3] = 0;
	put_le32(p + 4, (uint32_t)GPA_IOAPIC);
	put_le32(p + 8, 0);
	p += MADT_IOAPIC_LEN;
	p = put_iso(p, 0, 2, MPS_INTI_CONFORMS);
	p = put_iso(p, IRQ_ACPI_SCI, IRQ_ACPI_SCI, MPS_INTI_LEVEL | MPS_INTI_ACTIVE_HIGH);
	p[0] = MADT_TYPE_LAPIC_NMI;
	p[1] = MADT_LAPIC_NMI_LEN;
	p[2] = MADT_ALL_PROCESSORS;
	put_le16(p + 3, MPS_INTI_CONFORMS);
	p[5] = 1; /* LINT1 */
	finish_table(t, len);
}

/*
 * MCFG (PCI Firmware Specification 3.2 §4.1.2), 60 bytes: header, 8 reserved
 * bytes, then one Configuration Space Base Address Allocation Structure:
 *   44 base address (8)  52 PCI segment group (2)  54 start bus  55 end bus
 *   56 reserved (4)
 */
static void build_mcfg(uint8_t *t)
{
	put_header(t, "MCFG", MCFG_LEN, MCFG_REVISION);
	put_le64(t + 44, GPA_PCI_ECAM);
	put_le16(t + 52, 0);
	put_le8(t + 54, PCI_ECAM_BUS_FIRST);
	put_le8(t + 55, PCI_ECAM_BUS_LAST);
	finish_table(t, MCFG_LEN);
}

/* XSDT (§5.2.8) / RSDT (§5.2.7): header + one 8- / 4-byte pointer per table. */
static int build_sdt(struct out *o, const char *sig, size_t ptr_size, const uint64_t *tables,
		     size_t n, size_t *off)
{
	size_t len = ACPI_HEADER_LEN + ptr_size * n;
	int err = out_alloc(o, len, 8, off);
	if (err)
		return err;
	uint8_t *t = o->buf + *off;
	put_header(t, sig, (uint32_t)len, ptr_size == 8 ? XSDT_REVISION : RSDT_REVISION);
	for (size_t i = 0; i < n; i++) {
		if (ptr_size == 8)
			put_le64(t + ACPI_HEADER_LEN + 8 * i, tables[i]);
		else
			put_le32(t + ACPI_HEADER_LEN + 4 * i, (uint32_t)tables[i]);
	}
	finish_table(t, (uint32_t)len);
	return 0;
}

/*
 * RSDP (§5.2.5.3), 36 bytes:
 *   0 "RSD PTR "  8 Checksum (bytes 0..19)  9 OEMID[6]  15 Revision = 2
 *   16 RsdtAddress (4)  20 Length = 36  24 XsdtAddress (8)
 *   32 Extended Checksum (all 36 bytes)  33 Reserved[3]
 */
static void build_rsdp(uint8_t *p, uint64_t rsdt_gpa, uint64_t xsdt_gpa)
{
	memcpy(p, "RSD PTR ", 8);
	memcpy(p + 9, ACPI_OEM_ID, 6);
	p[15] = 2;
	put_le32(p + 16, (uint32_t)rsdt_gpa);
	put_le32(p + 20, RSDP_LEN);
	put_le64(p + 24, xsdt_gpa);
	p[8] = 0;
	p[8] = checksum8(p, 20);
	p[32] = 0;
	p[32] = checksum8(p, RSDP_LEN);
}

int acpi_build(uint8_t *buf, size_t size, uint64_t gpa, const struct acpi_config *cfg,
	       uint64_t *rsdp_gpa)
{
	if (!cfg || cfg->ncpus == 0 || cfg->ncpus > ACPI_MAX_CPUS)
		return -EINVAL;
	if (!buf && size)
		return -EINVAL;
	if (!cfg->sb_extra_aml && cfg->sb_extra_aml_len)
		return -EINVAL;
	if (gpa & 15)
		return -EINVAL;
	if (gpa >= GPA_4G)
		return -EINVAL;
	if (cfg->vmgenid_gpa & 7)
		return -EINVAL;

	struct out o = {.buf = buf, .size = size, .pos = 0, .gpa = gpa};
	size_t rsdp, facs, dsdt, fadt, madt, xsdt, rsdt;
	uint64_t tables[ACPI_MAX_TABLES];
	size_t ntables = 0;
	int err;

	if ((err = out_alloc(&o, RSDP_LEN, 16, &rsdp)))
		return err;
	if ((err = out_alloc(&o, FACS_LEN, 64, &facs)))
		return err;
	build_facs(buf + facs);
	if ((err = build_dsdt(&o, cfg, &dsdt)))
		return err;
	if ((err = out_alloc(&o, FADT_LEN, 8, &fadt)))
		return err;
	build_fadt(buf + fadt, gpa + facs, gpa + dsdt);
	tables[ntables++] = gpa + fadt;
	if ((err = out_alloc(&o, madt_len(cfg->ncpus), 8, &madt)))
		return err;
	build_madt(buf + madt, cfg->ncpus);
	tables[ntables++] = gpa + madt;
	if (cfg->pci) {
		size_t mcfg;
		if ((err = out_alloc(&o, MCFG_LEN, 8, &mcfg)))
			return err;
		build_mcfg(buf + mcfg);
		tables[ntables++] = gpa + mcfg;
	}

	if ((err = build_sdt(&o, "XSDT", 8, tables, ntables, &xsdt)))
		return err;
	if ((err = build_sdt(&o, "RSDT", 4, tables, ntables, &rsdt)))
		return err;
	build_rsdp(buf + rsdp, gpa + rsdt, gpa + xsdt);

	/* Every table must sit below 4 GiB (32-bit RSDT / FIRMWARE_CTRL). */
	if (o.pos > GPA_4G - gpa)
		return -EINVAL;
	if (o.pos > INT32_MAX)
		return -E2BIG;
	if (rsdp_gpa)
		*rsdp_gpa = gpa + rsdp;
	return (int)o.pos;
}
