/* SPDX-License-Identifier: MIT */
/*
 * MP tables, checked by searching for and walking them the way a guest
 * kernel does (Intel MP spec 1.4 §4).
 */
#include "../../src/arch/x86/mptable.h"
#include "../../src/arch/x86/layout.h"

#include <errno.h>
#include <stdbool.h>

#include "le_read.h"
#include "test.h"

#define EBDA_SIZE (GPA_EBDA_END - GPA_MPTABLE)

/* Scan len bytes at 16-byte steps for a floating pointer with a valid
 * checksum; returns its offset or -1. */
static long scan_mpf(const uint8_t *b, size_t len)
{
	for (size_t off = 0; off + 16 <= len; off += 16)
		if (!memcmp(b + off, "_MP_", 4) && b[off + 8] == 1 && sum8(b + off, 16) == 0)
			return (long)off;
	return -1;
}

struct walk {
	unsigned nproc, nbsp, nbus, nioapic, nioint, nlint;
	int ioapic_id;
	bool proc_seen[256];
	bool irq_seen[16];
	int irq_pin[16];
	uint16_t irq_flags[16];
	bool lint_extint0, lint_nmi1;
	bool order_ok;
};

static void check_mptable(uint32_t ncpus, uint64_t gpa, size_t size)
{
	uint8_t *buf = malloc(size);
	memset(buf, 0xee, size);
	int n = mptable_build(buf, size, gpa, ncpus);
	CHECK_EQ(n, mptable_size(ncpus));
	CHECK_EQ(n, 212 + 20 * ncpus);
	if (n <= 0) {
		free(buf);
		return;
	}
	/* floating pointer at buf[0], found by a 16-byte-step scan */
	CHECK_EQ(scan_mpf(buf, (size_t)n), 0);
	const uint8_t *mpf = buf;
	CHECK(!memcmp(mpf, "_MP_", 4));
	CHECK_EQ(sum8(mpf, 16), 0);
	CHECK_EQ(mpf[8], 1);
	CHECK_EQ(mpf[9], 4);
	CHECK_EQ(mpf[11], 0); /* configuration table present */
	CHECK_EQ(mpf[12], 0); /* virtual wire, no IMCR */
	uint32_t mpc_gpa = rd32(mpf + 4);
	CHECK(mpc_gpa >= gpa && mpc_gpa + 44 <= gpa + (uint64_t)n);
	const uint8_t *mpc = buf + (mpc_gpa - gpa);

	/* configuration table header */
	CHECK(!memcmp(mpc, "PCMP", 4));
	uint16_t base_len = rd16(mpc + 4);
	CHECK(mpc_gpa + base_len <= gpa + (uint64_t)n);
	CHECK_EQ(mpc[6], 4);
	CHECK_EQ(sum8(mpc, base_len), 0);
	CHECK(!memcmp(mpc + 8, "VISOR   ", 8));
	CHECK_EQ(rd32(mpc + 36), GPA_LAPIC);
	CHECK_EQ(rd16(mpc + 40), 0); /* no extended table */
	uint16_t count = rd16(mpc + 34);

	struct walk w;
	memset(&w, 0, sizeof(w));
	w.ioapic_id = -1;
	w.order_ok = true;
	for (int i = 0; i < 16; i++)
		w.irq_pin[i] = -1;
	int last_type = -1;
	uint32_t off = 44;
	for (unsigned e = 0; e < count; e++) {
		const uint8_t *p = mpc + off;
		unsigned elen = p[0] == 0 ? 20 : 8;
		CHECK(p[0] <= 4);
		CHECK(off + elen <= base_len);
		if (p[0] > 4 || off + elen > base_len)
			break;
		if (p[0] < last_type)
			w.order_ok = false;
		last_type = p[0];
		switch (p[0]) {
		case 0: /* processor */
			CHECK_EQ(p[1], w.nproc);
			CHECK(!w.proc_seen[p[1]]);
			w.proc_seen[p[1]] = true;
			CHECK(p[3] & 1); /* enabled */
			if (p[3] & 2) {
				w.nbsp++;
				CHECK_EQ(p[1], 0);
			}
			w.nproc++;
			break;
		case 1: /* bus */
			CHECK_EQ(p[1], 0);
			CHECK(!memcmp(p + 2, "ISA   ", 6));
			w.nbus++;
			break;
		case 2: /* I/O APIC */
			CHECK_EQ(p[3] & 1, 1);
			CHECK_EQ(rd32(p + 4), GPA_IOAPIC);
			w.ioapic_id = p[1];
			w.nioapic++;
			break;
		case 3: /* I/O interrupt */
			CHECK_EQ(p[1], 0); /* INT */
			CHECK_EQ(p[4], 0); /* ISA bus */
			CHECK(p[5] < 16);
			CHECK_EQ(p[6], w.ioapic_id);
			if (p[5] < 16) {
				CHECK(!w.irq_seen[p[5]]);
				w.irq_seen[p[5]] = true;
				w.irq_pin[p[5]] = p[7];
				w.irq_flags[p[5]] = rd16(p + 2);
			}
			w.nioint++;
			break;
		case 4: /* local interrupt */
			CHECK_EQ(p[6], 0xff);
			if (p[1] == 3 && p[7] == 0)
				w.lint_extint0 = true;
			if (p[1] == 1 && p[7] == 1)
				w.lint_nmi1 = true;
			w.nlint++;
			break;
		}
		off += elen;
	}
	CHECK_EQ(off, base_len);
	CHECK(w.order_ok);
	CHECK_EQ(w.nproc, ncpus);
	for (uint32_t i = 0; i < ncpus; i++)
		CHECK(w.proc_seen[i]);
	CHECK_EQ(w.nbsp, 1);
	CHECK_EQ(w.nbus, 1);
	CHECK_EQ(w.nioapic, 1);
	CHECK(w.ioapic_id >= 0 && w.ioapic_id < 255 && !w.proc_seen[w.ioapic_id]);
	CHECK_EQ(w.nioint, 15);
	CHECK_EQ(w.irq_pin[0], 2);
	CHECK(!w.irq_seen[2]); /* cascade */
	for (int irq = 1; irq < 16; irq++)
		if (irq != 2)
			CHECK_EQ(w.irq_pin[irq], irq);
	CHECK_EQ(w.irq_flags[0], 0);
	CHECK_EQ(w.irq_flags[4], 0);
	CHECK_EQ(w.irq_flags[IRQ_ACPI_SCI], 0xd); /* level, active-high */
	CHECK_EQ(w.nlint, 2);
	CHECK(w.lint_extint0);
	CHECK(w.lint_nmi1);
	/* nothing written past the tables */
	for (size_t i = (size_t)n; i < size; i++)
		if (buf[i] != 0xee) {
			CHECK_EQ(i, ~0ULL);
			break;
		}
	free(buf);
}

TEST(layout_for_cpu_counts)
{
	check_mptable(1, GPA_MPTABLE, EBDA_SIZE);
	check_mptable(2, GPA_MPTABLE, EBDA_SIZE);
	check_mptable(8, GPA_MPTABLE, EBDA_SIZE);
	check_mptable(MPTABLE_EBDA_MAX_CPUS, GPA_MPTABLE, EBDA_SIZE);
	/* more CPUs need more room than the EBDA (e.g. 0xF0000 area) */
	check_mptable(MPTABLE_MAX_CPUS, 0xf0000, 0x10000);
}

TEST(ebda_limit)
{
	CHECK(mptable_size(MPTABLE_EBDA_MAX_CPUS) <= EBDA_SIZE);
	CHECK(mptable_size(MPTABLE_EBDA_MAX_CPUS + 1) > EBDA_SIZE);
	static uint8_t ebda[EBDA_SIZE];
	CHECK_EQ(mptable_build(ebda, sizeof(ebda), GPA_MPTABLE, MPTABLE_EBDA_MAX_CPUS + 1),
		 -ENOSPC);
	CHECK_EQ(mptable_build(ebda, sizeof(ebda), GPA_MPTABLE, MPTABLE_MAX_CPUS), -ENOSPC);
	int n = mptable_build(ebda, sizeof(ebda), GPA_MPTABLE, MPTABLE_EBDA_MAX_CPUS);
	CHECK(n > 0);
	/* Linux searches the first KiB of the EBDA */
	CHECK_EQ(scan_mpf(ebda, sizeof(ebda)), 0);
}

TEST(bad_args)
{
	static uint8_t buf[8192];
	CHECK_EQ(mptable_build(buf, sizeof(buf), GPA_MPTABLE, 0), -EINVAL);
	CHECK_EQ(mptable_build(buf, sizeof(buf), GPA_MPTABLE, 255), -EINVAL);
	CHECK_EQ(mptable_build(buf, sizeof(buf), GPA_MPTABLE, UINT32_MAX), -EINVAL);
	CHECK_EQ(mptable_build(buf, sizeof(buf), GPA_MPTABLE + 4, 1), -EINVAL);
	CHECK_EQ(mptable_build(buf, sizeof(buf), 0x100000000ULL, 1), -EINVAL);
	CHECK_EQ(mptable_build(buf, sizeof(buf), 0xfffffff0ULL, 2), -EINVAL);
	CHECK_EQ(mptable_build(NULL, 16, GPA_MPTABLE, 1), -EINVAL);
	CHECK_EQ(mptable_build(NULL, 0, GPA_MPTABLE, 1), -ENOSPC);
}

TEST(enospc_at_every_size)
{
	static const uint32_t counts[] = {1, 40, MPTABLE_MAX_CPUS};
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		uint32_t ncpus = counts[c];
		size_t need = mptable_size(ncpus);
		uint8_t *ref = malloc(need);
		CHECK_EQ(mptable_build(ref, need, GPA_MPTABLE, ncpus), need);
		for (size_t size = 0; size < need; size++) {
			/* exactly size bytes: ASan flags any write past the end */
			uint8_t *buf = malloc(size ? size : 1);
			int ret = mptable_build(buf, size, GPA_MPTABLE, ncpus);
			free(buf);
			if (ret != -ENOSPC) {
				CHECK_EQ(ret, -ENOSPC);
				break;
			}
		}
		uint8_t *buf = malloc(need);
		CHECK_EQ(mptable_build(buf, need, GPA_MPTABLE, ncpus), need);
		CHECK(!memcmp(buf, ref, need));
		free(buf);
		free(ref);
	}
}

TEST_MAIN()
