/* SPDX-License-Identifier: MIT */
/*
 * mptable.h - Intel MultiProcessor Specification 1.4 tables, for guests
 * booted without ACPI (acpi=off, or kernels without CONFIG_ACPI).  They
 * describe the same machine as the MADT (acpi.h):
 *
 *   - one enabled processor per vCPU, local APIC IDs 0..ncpus-1, CPU 0 the
 *     bootstrap processor;
 *   - one ISA bus (ID 0);
 *   - one I/O APIC, ID ncpus, at GPA_IOAPIC;
 *   - ISA IRQ n -> I/O APIC pin n for n = 1 and 3..15, IRQ 0 (PIT) -> pin 2;
 *     IRQ 2 is the 8259 cascade and has no entry.  All edge/active-high
 *     ("conforms to bus") except the ACPI SCI, IRQ 9, level/active-high;
 *   - LINT0 = ExtINT (8259 virtual wire), LINT1 = NMI, on every CPU;
 *   - feature byte 2 IMCRP = 0: virtual wire mode, no IMCR to program.
 */
#ifndef VISOR_ARCH_X86_MPTABLE_H
#define VISOR_ARCH_X86_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

/* APIC IDs are 8 bits, 0xff is broadcast and the I/O APIC takes ID ncpus. */
#define MPTABLE_MAX_CPUS 254

/*
 * Bytes the floating pointer plus configuration table take for ncpus CPUs:
 * 16 + 44 + 20 * ncpus + 8 (bus) + 8 (I/O APIC) + 15 * 8 (I/O interrupts)
 * + 2 * 8 (local interrupts) = 212 + 20 * ncpus.
 */
size_t mptable_size(uint32_t ncpus);

/* The most CPUs whose tables fit in the 1 KiB EBDA at GPA_MPTABLE:
 * 212 + 20 * 40 = 1012 <= 1024. */
#define MPTABLE_EBDA_MAX_CPUS 40

/*
 * Build the MP floating pointer structure at buf[0] and the configuration
 * table right after it (buf[16]); the caller copies buf to guest-physical
 * address gpa (the floating pointer holds the table's guest-physical
 * address).  For Linux to find it, gpa must be in one of the areas the
 * spec says are searched: the first KiB of the EBDA (GPA_MPTABLE, with
 * room for MPTABLE_EBDA_MAX_CPUS CPUs), the last KiB of base memory or
 * 0xF0000-0xFFFFF.  Nothing is written at or past buf + size.
 *
 * Returns the number of bytes used (mptable_size(ncpus)), -ENOSPC if that
 * exceeds size, or -EINVAL for ncpus 0 or > MPTABLE_MAX_CPUS, gpa not
 * 16-byte aligned or the tables not below 4 GiB, or buf NULL with size > 0.
 */
int mptable_build(uint8_t *buf, size_t size, uint64_t gpa, uint32_t ncpus);

#endif
