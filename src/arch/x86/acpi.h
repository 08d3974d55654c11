/* SPDX-License-Identifier: MIT */
/*
 * acpi.h - the ACPI tables visor hands an x86 guest (ACPI 6.4): RSDP, XSDT
 * (+ RSDT), FADT, FACS, DSDT and MADT.  They describe a legacy-free-ish PC:
 *
 *   - CPUs: one enabled xAPIC per vCPU, APIC IDs and ACPI processor UIDs
 *     0..ncpus-1 (MADT only: there are no Processor objects in the DSDT).
 *   - One IOAPIC at GPA_IOAPIC, GSIs 0..23; ISA IRQ0 is overridden to GSI 2
 *     and the SCI (IRQ 9) is level-triggered, active-high.
 *   - Fixed ACPI hardware at PORT_ACPI_PM1A_EVT / _CNT / _TMR (layout.h);
 *     the machine starts in ACPI mode (SMI_CMD = 0), so the PM device must
 *     read PM1_CNT.SCI_EN as 1.  The PM timer is declared 32 bits wide
 *     (FADT TMR_VAL_EXT = 1): the PM device must count through all 32 bits.
 *   - S5 (soft off) via \_S5 = {ACPI_S5_SLP_TYP, ...}: the guest writes
 *     SLP_TYP = ACPI_S5_SLP_TYP with SLP_EN to PM1a_CNT.
 *   - Reset: FADT RESET_REG = I/O port PORT_ACPI_RESET, value
 *     ACPI_RESET_VALUE.
 *   - Power button: fixed-feature (PWR_BUTTON = 0, PM1 PWRBTN_STS/EN), so a
 *     PM device that sets PWRBTN_STS and raises the SCI asks for an orderly
 *     shutdown.  No sleep button, no RTC wake.
 *   - GPE0_BLK at PORT_ACPI_GPE0, PORT_ACPI_GPE0_LEN bytes (GPEs 0-15, base
 *     0; FADT GPE0_BLK, GPE0_BLK_LEN and X_GPE0_BLK), no GPE1 block.
 *   - FADT IAPC_BOOT_ARCH: legacy devices + 8042 present, no VGA;
 *     CENTURY = CMOS 0x32 (the RTC device keeps the century there).
 *   - DSDT devices in \_SB: COM1 (PNP0501), RTC (PNP0B00), PS/2 keyboard
 *     controller (PNP0303), pvpanic (QEMU0001), with cfg->pci the PCI host
 *     bridge PCI0 and the ECAM reservation ECAM (below), with
 *     cfg->vmgenid_gpa the VM generation ID device VGEN (below), then
 *     cfg->sb_extra_aml.
 *   - With cfg->vmgenid_gpa (Microsoft's "Virtual Machine Generation ID"
 *     specification; Linux's drivers/virt/vmgenid.c):
 *       Device (VGEN) { _HID "VMGENCTR", _CID "VM_Gen_Counter",
 *         _DDN "VM_Gen_Counter",
 *         Method (ADDR) { Return (Package () { low 32 bits, high 32 bits
 *           of vmgenid_gpa }) } }
 *       Scope (\_GPE) { Method (_Exx) { Notify (\_SB.VGEN, 0x80) } } with
 *         xx = ACPI_GPE_VMGENID in hex: an edge GPE (the status bit
 *         latches the event; OSPM clears it, then runs the method).
 *   - With cfg->pci (the PCI bus of src/devices/pci, layout.h GPA_PCI_*):
 *       MCFG (PCI Firmware 3.2 §4.1.2) in the XSDT/RSDT: one allocation,
 *         segment 0, buses PCI_ECAM_BUS_FIRST..LAST at GPA_PCI_ECAM;
 *       Device (PCI0) { _HID PNP0A08, _CID PNP0A03, _SEG 0, _BBN 0, _UID 0,
 *         _CRS: WordBusNumber 0..PCI_ECAM_BUS_LAST; IO 0xcf8 len 8 (the
 *         config ports, consumed by the bridge); DWordIO windows
 *         0x0000-0x0cf7 and 0x0d00-0xffff; DWordMemory (non-cacheable,
 *         read-write) GPA_PCI_MMIO32 .. + PCI_MMIO32_SIZE - 1 }.
 *         No _PRT (devices have no INTx pin: MSI-X only; Linux accepts a
 *         root bridge without it) and no _OSC (Linux then keeps native
 *         PCIe services off, which visor does not have anyway).
 *       Device (ECAM) { _HID PNP0C02, _UID "ECAM", _CRS Memory32Fixed
 *         (ReadWrite, GPA_PCI_ECAM, PCI_ECAM_SIZE) }: the motherboard
 *         resource reservation Linux requires before it trusts MCFG
 *         ("MMCONFIG at ... reserved as ACPI motherboard resource").
 */
#ifndef VISOR_ARCH_X86_ACPI_H
#define VISOR_ARCH_X86_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Header identification of every table (ACPI 6.4 §5.2.6). */
#define ACPI_OEM_ID "VISOR "	    /* 6 bytes */
#define ACPI_OEM_TABLE_ID "VISORVM " /* 8 bytes */
#define ACPI_OEM_REVISION 1
#define ACPI_CREATOR_ID "VISR" /* 4 bytes */
#define ACPI_CREATOR_REVISION 1

/* xAPIC IDs are 8 bits and 0xff is the broadcast ID: at most 254 CPUs
 * (x2APIC entries would be needed beyond). */
#define ACPI_MAX_CPUS 254

/* Most tables the XSDT may list (FADT, MADT, MCFG and room for later ones). */
#define ACPI_MAX_TABLES 8

struct acpi_config {
	uint32_t ncpus; /* 1..ACPI_MAX_CPUS; APIC IDs 0..ncpus-1 */
	/* Extra AML appended inside the DSDT's \_SB scope (e.g. a PCI host
	 * bridge, virtio-mmio devices); NULL/0 for none. */
	const uint8_t *sb_extra_aml;
	size_t sb_extra_aml_len;
	/* Describe the PCI host bridge: MCFG + \_SB.PCI0 + \_SB.ECAM (see
	 * above). */
	bool pci;
	/* Guest-physical address of the 16-byte VM generation ID, 8-byte
	 * aligned (\_SB.VGEN and its GPE method, see above); 0 for none. */
	uint64_t vmgenid_gpa;
};

/*
 * Build the tables into buf[0..size), which the caller copies to
 * guest-physical address gpa (tables point at each other by guest-physical
 * address).  The RSDP is at buf[0] so that the BIOS-area scan of
 * 0xE0000-0xFFFFF finds it when gpa is GPA_ACPI_TABLES; *rsdp_gpa (if not
 * NULL) receives its address, gpa.  Layout (offsets from gpa):
 *
 *   0x000  RSDP  36 bytes, revision 2
 *   0x040  FACS  64 bytes at the next 64-byte aligned guest address
 *          (0x040 when gpa is 64-byte aligned)
 *   ...    DSDT  36-byte header + AML
 *   ...    FADT (276 bytes), MADT, [MCFG (60 bytes) with cfg->pci], XSDT,
 *          RSDT, each 8-byte aligned
 *
 * Nothing is written at or past buf + size.  Returns the number of bytes
 * used (everything the guest must see), -ENOSPC if they do not fit in size,
 * or -EINVAL for a bad argument: ncpus 0 or > ACPI_MAX_CPUS, gpa not 16-byte
 * aligned, vmgenid_gpa not 8-byte aligned, the tables not entirely below 4 GiB (RSDT and FACS pointers are
 * 32-bit), buf NULL with size > 0, or sb_extra_aml NULL with a length.
 */
int acpi_build(uint8_t *buf, size_t size, uint64_t gpa, const struct acpi_config *cfg,
	       uint64_t *rsdp_gpa);

#endif
