/* SPDX-License-Identifier: MIT */
/*
 * mptable.c - Intel MP Specification 1.4 floating pointer + configuration
 * table builder (see mptable.h for the machine it describes).
 */
#include "mptable.h"

#include <errno.h>
#include <string.h>

#include "../../util/bytes.h"
#include "layout.h"

#define MP_SPEC_REV 4 /* 1.4 */
#define MPF_LEN 16
#define MPC_HEADER_LEN 44
#define MPC_PROCESSOR_LEN 20
#define MPC_ENTRY_LEN 8

/* Entry types (§4.3) */
#define MPC_PROCESSOR 0
#define MPC_BUS 1
#define MPC_IOAPIC 2
#define MPC_IOINT 3
#define MPC_LOCALINT 4

/* Interrupt types (§4.3.4, Table 4-8) */
#define MP_INT 0
#define MP_NMI 1
#define MP_EXTINT 3

/* I/O interrupt flags: [1:0] PO polarity, [3:2] EL trigger mode */
#define MP_IRQ_CONFORMS 0x0
#define MP_IRQ_ACTIVE_HIGH 0x1
#define MP_IRQ_LEVEL (0x3 << 2)

#define MP_CPU_ENABLED (1u << 0)
#define MP_CPU_BSP (1u << 1)
#define MP_IOAPIC_ENABLED (1u << 0)

/* Versions of the APICs KVM emulates: integrated local APIC, 82093AA-style
 * I/O APIC. */
#define LAPIC_VERSION 0x14
#define IOAPIC_VERSION 0x11

/* CPU signature (CPUID.1 EAX: [11:8] family, [7:4] model, [3:0] stepping)
 * and feature flags (CPUID.1 EDX: FPU, APIC) for the processor entries;
 * Linux does not use them on x86-64. */
#define MP_CPU_SIGNATURE 0x600
#define MP_CPU_FEATURES ((1u << 0) | (1u << 9))

#define ISA_BUS_ID 0
#define ISA_IRQS 16
#define NUM_IOINTS (ISA_IRQS - 1) /* IRQ 2, the cascade, has no entry */
#define NUM_LOCALINTS 2
#define IOAPIC_ID(ncpus) ((uint8_t)(ncpus))
#define ALL_LAPICS 0xff

size_t mptable_size(uint32_t ncpus)
{
	return MPF_LEN + MPC_HEADER_LEN + (size_t)ncpus * MPC_PROCESSOR_LEN +
	       MPC_ENTRY_LEN * (1 /* bus */ + 1 /* I/O APIC */ + NUM_IOINTS + NUM_LOCALINTS);
}

/*
 * I/O Interrupt Assignment Entry (§4.3.4) / Local Interrupt Assignment
 * Entry (§4.3.5), 8 bytes:
 *
 *   0 type (3/4)  1 interrupt type  2 flags (2: [1:0] PO, [3:2] EL)
 *   4 source bus ID  5 source bus IRQ  6 dest. APIC ID  7 dest. INTIN#/LINTIN#
 */
static uint8_t *put_int(uint8_t *p, uint8_t type, uint8_t int_type, uint16_t flags,
			uint8_t src_irq, uint8_t dst_apic, uint8_t dst_pin)
{
	p[0] = type;
	p[1] = int_type;
	put_le16(p + 2, flags);
	p[4] = ISA_BUS_ID;
	p[5] = src_irq;
	p[6] = dst_apic;
	p[7] = dst_pin;
	return p + MPC_ENTRY_LEN;
}

int mptable_build(uint8_t *buf, size_t size, uint64_t gpa, uint32_t ncpus)
{
	if (ncpus == 0 || ncpus > MPTABLE_MAX_CPUS)
		return -EINVAL;
	if (!buf && size)
		return -EINVAL;
	size_t total = mptable_size(ncpus);
	if ((gpa & 15) || gpa >= 0x100000000ULL || total > 0x100000000ULL - gpa)
		return -EINVAL;
	if (total > size)
		return -ENOSPC;
	memset(buf, 0, total);

	/*
	 * MP Floating Pointer Structure (§4.1), 16 bytes:
	 *   0 "_MP_"  4 physical address of the configuration table
	 *   8 length in 16-byte units (1)  9 spec rev  10 checksum
	 *   11 feature 1 (0: a configuration table is present)
	 *   12 feature 2 (bit 7 IMCRP = 0: virtual wire)  13..15 features 3-5
	 */
	uint8_t *mpf = buf;
	memcpy(mpf, "_MP_", 4);
	put_le32(mpf + 4, (uint32_t)(gpa + MPF_LEN));
	mpf[8] = 1;
	mpf[9] = MP_SPEC_REV;
	mpf[10] = checksum8(mpf, MPF_LEN);

	/*
	 * MP Configuration Table Header (§4.2), 44 bytes:
	 *   0 "PCMP"  4 base table length (2)  6 spec rev  7 checksum
	 *   8 OEM ID[8]  16 product ID[12]  28 OEM table pointer (4)
	 *   32 OEM table size (2)  34 entry count (2)  36 local APIC address
	 *   40 extended table length (2)  42 extended table checksum  43 reserved
	 * followed by the entries, sorted by type as §4.3 requires.
	 */
	uint8_t *mpc = buf + MPF_LEN;
	uint16_t base_len = (uint16_t)(total - MPF_LEN);
	uint16_t count = (uint16_t)(ncpus + 2 + NUM_IOINTS + NUM_LOCALINTS);
	memcpy(mpc, "PCMP", 4);
	put_le16(mpc + 4, base_len);
	mpc[6] = MP_SPEC_REV;
	memcpy(mpc + 8, "VISOR   ", 8);
	memcpy(mpc + 16, "VISORVM     ", 12);
	put_le16(mpc + 34, count);
	put_le32(mpc + 36, (uint32_t)GPA_LAPIC);

	uint8_t *p = mpc + MPC_HEADER_LEN;
	/*
	 * Processor Entry (§4.3.1), 20 bytes:
	 *   0 type=0  1 local APIC ID  2 local APIC version
	 *   3 CPU flags (bit 0 EN, bit 1 BP)  4 CPU signature (4)
	 *   8 feature flags (4)  12 reserved (8)
	 */
	for (uint32_t i = 0; i < ncpus; i++) {
		p[0] = MPC_PROCESSOR;
		p[1] = (uint8_t)i;
		p[2] = LAPIC_VERSION;
		p[3] = (uint8_t)(MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0));
		put_le32(p + 4, MP_CPU_SIGNATURE);
		put_le32(p + 8, MP_CPU_FEATURES);
		p += MPC_PROCESSOR_LEN;
	}

	/* Bus Entry (§4.3.2): 0 type=1  1 bus ID  2 bus type string[6] */
	p[0] = MPC_BUS;
	p[1] = ISA_BUS_ID;
	memcpy(p + 2, "ISA   ", 6);
	p += MPC_ENTRY_LEN;

	/* I/O APIC Entry (§4.3.3): 0 type=2  1 ID  2 version  3 flags (EN)
	 * 4 address (4) */
	p[0] = MPC_IOAPIC;
	p[1] = IOAPIC_ID(ncpus);
	p[2] = IOAPIC_VERSION;
	p[3] = MP_IOAPIC_ENABLED;
	put_le32(p + 4, (uint32_t)GPA_IOAPIC);
	p += MPC_ENTRY_LEN;

	for (uint8_t irq = 0; irq < ISA_IRQS; irq++) {
		if (irq == 2)
			continue;
		uint16_t flags = irq == IRQ_ACPI_SCI ? (MP_IRQ_LEVEL | MP_IRQ_ACTIVE_HIGH)
						     : MP_IRQ_CONFORMS;
		uint8_t pin = irq == 0 ? 2 : irq;
		p = put_int(p, MPC_IOINT, MP_INT, flags, irq, IOAPIC_ID(ncpus), pin);
	}

	p = put_int(p, MPC_LOCALINT, MP_EXTINT, MP_IRQ_CONFORMS, 0, ALL_LAPICS, 0);
	p = put_int(p, MPC_LOCALINT, MP_NMI, MP_IRQ_CONFORMS, 0, ALL_LAPICS, 1);

	mpc[7] = checksum8(mpc, base_len);
	return (int)total;
}
