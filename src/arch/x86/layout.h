/* SPDX-License-Identifier: MIT */
/*
 * layout.h - the x86 machine visor presents to a guest: guest-physical memory
 * map, I/O ports and IRQ numbers.  Every module that places something in the
 * guest's address spaces takes the address from here, so the whole map can
 * be read in one place.
 *
 * Guest-physical memory (low 1 MiB follows the PC conventions Linux expects):
 *
 *   0x0000_0000 - 0x0000_0fff   real-mode IVT / BDA (RAM, left zero)
 *   0x0000_6000                 PVH hvm_start_info + memmap + modlist
 *   0x0000_7000                 Linux boot_params ("zero page")
 *   0x0000_9000 - 0x0000_efff   identity page tables for 64-bit entry
 *                               (PML4, PDPT, 4 PDs of 2 MiB pages: 0-4 GiB)
 *   0x0000_f000                 GDT used at entry
 *   0x0002_0000                 kernel command line (up to 64 KiB)
 *   0x0009_fc00 - 0x0009_ffff   EBDA (reserved): MP floating pointer + table
 *   0x000a_0000 - 0x000d_ffff   VGA/option-ROM hole (not RAM)
 *   0x000e_0000 - 0x000f_ffff   "BIOS" area (reserved in the e820 map):
 *     0x000e_0000 - 0x000e_efff   ACPI RSDP + tables
 *     0x000e_f000 - 0x000e_ffff   VM generation ID (16 bytes at the start)
 *   0x0010_0000 - low_end       RAM (kernel loaded at its preferred address)
 *   0xc000_0000 - 0xffff_ffff   32-bit MMIO hole (PCI, IOAPIC, LAPIC):
 *     0xc000_0000 - 0xdfff_ffff   PCI 32-bit memory window: BARs (host
 *                                 bridge _CRS producer window)
 *     0xe000_0000 - 0xe00f_ffff   PCI ECAM (MCFG), bus 0 only: 4 KiB of
 *                                 config space per device/function
 *     0xfec0_0000                 IOAPIC
 *     0xfee0_0000                 LAPIC
 *   0x1_0000_0000 - ...         RAM above 4 GiB for large guests
 */
#ifndef VISOR_ARCH_X86_LAYOUT_H
#define VISOR_ARCH_X86_LAYOUT_H

#define GPA_PVH_START_INFO 0x6000ULL
#define GPA_ZERO_PAGE 0x7000ULL
#define GPA_PAGE_TABLES 0x9000ULL
#define GPA_PAGE_TABLES_END 0xf000ULL
#define GPA_GDT 0xf000ULL
#define GPA_CMDLINE 0x20000ULL
#define CMDLINE_AREA_MAX 0x10000ULL
#define GPA_EBDA 0x9fc00ULL
#define GPA_EBDA_END 0xa0000ULL
#define GPA_MPTABLE GPA_EBDA
#define GPA_VGA_HOLE 0xa0000ULL
#define GPA_BIOS_AREA 0xe0000ULL
#define GPA_BIOS_AREA_END 0x100000ULL
#define GPA_ACPI_TABLES GPA_BIOS_AREA
#define ACPI_TABLES_MAX (GPA_VMGENID - GPA_ACPI_TABLES)
/* The VM generation ID (Microsoft's "Virtual Machine Generation ID"
 * specification, src/devices/vmgenid.h): 16 bytes, 8-byte aligned, in
 * cacheable memory the e820 map reserves (neither RAM nor ACPI), kept apart
 * from everything the OS uses.  A page of its own in the E segment after the
 * ACPI tables: the RSDP at 0xe0000 is found before any scan reaches it, and
 * the F segment (MP and SMBIOS scans) never holds its random bytes. */
#define GPA_VMGENID 0xef000ULL
#define VMGENID_LEN 16
#define GPA_HIGH_MEMORY 0x100000ULL

/* 32-bit MMIO hole: RAM never sits here. */
#define GPA_MMIO_HOLE 0xc0000000ULL
#define GPA_MMIO_HOLE_END 0x100000000ULL
#define GPA_IOAPIC 0xfec00000ULL
#define GPA_LAPIC 0xfee00000ULL

/* PCI (src/devices/pci/pci.h): one segment, bus 0 only.  The BAR window
 * and the ECAM must stay inside the hole and apart from everything else
 * on the MMIO bus. */
#define GPA_PCI_MMIO32 0xc0000000ULL
#define PCI_MMIO32_SIZE 0x20000000ULL /* up to 0xdfff_ffff */
#define GPA_PCI_ECAM 0xe0000000ULL
#define PCI_ECAM_BUS_FIRST 0
#define PCI_ECAM_BUS_LAST 0
/* 1 MiB per bus decoded (PCIe ECAM: bus << 20 | dev << 15 | fn << 12 | reg) */
#define PCI_ECAM_SIZE ((PCI_ECAM_BUS_LAST - PCI_ECAM_BUS_FIRST + 1ULL) << 20)

/* I/O ports */
#define PORT_COM1 0x3f8
#define PORT_COM1_LEN 8
#define PORT_I8042_DATA 0x60
#define PORT_I8042_CMD 0x64
#define PORT_RTC 0x70
#define PORT_RTC_LEN 2
/* ACPI fixed hardware (FADT): PM1a event block, PM1a control, PM timer. */
#define PORT_ACPI_PM1A_EVT 0x600
#define PORT_ACPI_PM1A_EVT_LEN 4
#define PORT_ACPI_PM1A_CNT 0x604
#define PORT_ACPI_PM1A_CNT_LEN 2
#define PORT_ACPI_PM_TMR 0x608
#define PORT_ACPI_PM_TMR_LEN 4
/* GPE0_BLK: 2 bytes of GPE0_STS, then 2 bytes of GPE0_EN (GPEs 0-15). */
#define PORT_ACPI_GPE0 0x60c
#define PORT_ACPI_GPE0_LEN 4
/* General-purpose events the machine raises (\_GPE._Exx methods). */
#define ACPI_GPE_VMGENID 0 /* a new VM generation ID: Notify (\_SB.VGEN, 0x80) */
/* FADT RESET_REG: writing ACPI_RESET_VALUE here resets the machine. */
#define PORT_ACPI_RESET 0xcf9
#define ACPI_RESET_VALUE 0x06
/* SLP_TYP visor's DSDT gives \_S5; PM1a_CNT.SLP_TYP == this with SLP_EN = off. */
#define ACPI_S5_SLP_TYP 5
/* PCI configuration mechanism #1: CONFIG_ADDRESS (32-bit) at 0xcf8,
 * CONFIG_DATA at 0xcfc-0xcff.  The PCI port device covers all 8 ports and
 * forwards byte writes at PORT_ACPI_RESET (0xcf9) to the ACPI PM device. */
#define PORT_PCI_CONFIG 0xcf8
#define PORT_PCI_CONFIG_LEN 8
/* pvpanic (ACPI _HID "QEMU0001"), one byte: bit0 = guest panicked. */
#define PORT_PVPANIC 0x505
/* Boot-time device: the guest writes BOOTDEV_MAGIC (one byte) when its
 * init starts; visor logs the time since visor's process start. */
#define PORT_BOOTDEV 0x520
#define BOOTDEV_MAGIC 0x7b

/* Legacy IRQs (ISA numbering, GSI == IRQ except IRQ0 -> GSI 2 override) */
#define IRQ_KBD 1
#define IRQ_COM1 4
#define IRQ_AUX 12
#define IRQ_RTC 8
#define IRQ_ACPI_SCI 9
#define IOAPIC_NUM_PINS 24

#endif
