/* SPDX-License-Identifier: MIT */
/*
 * snapcmp A B: compare two visor snapshot state files field by field.
 *
 * For the state round trip of tests/kvm/run: a snapshot A is loaded into a
 * fresh process without running (resume_vm false) and saved again as B;
 * every vCPU register block and every device's state must come back
 * unchanged.  The only fields allowed to differ are the ones that count
 * host time while the VM exists, even paused:
 *   vcpu.N  IA32_TSC (MSR 0x10), Hyper-V's reference and run-time
 *           counters (MSRs 0x40000020, 0x40000010) and the LAPIC timer's
 *           current count (TMCCT, page offset 0x390)
 *   vm      each PIT channel's count_load_time, the kvmclock reading
 *           (value, flags, host realtime and TSC at the read)
 * (The PM timer stops while the VM is paused: it must be equal.)  Section
 * "memory" differs in its identity, which is new for every snapshot
 * taken; its kind, size and base must be equal.
 * A restore gives the VM a new generation ID: the vmgenid device's ID
 * must differ (its address must not), the ACPI PM device may have gained
 * the GPE status bit that notifies the guest (GPE0 bit 0), and with the
 * memory files given, `snapcmp A B MEMA MEMB`, the two must be equal byte
 * for byte but for the 16 bytes at the ID's address, which hold B's ID.
 * Each of those is printed with both values; anything else that differs
 * is printed as DIFF and makes the exit status 1 (2: a file cannot be
 * read).  Section payloads are decoded with visor's own decoders, so both
 * files are also fully validated.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/arch/x86/vcpu_state.h"
#include "../../src/arch/x86/vm_state.h"
#include "../../src/snapshot/format.h"
#include "../../src/snapshot/mem_section.h"
#include "../../src/util/bytes.h"

static int diffs;
static void diff(const char *sec, const char *what);
static bool have_genid;
static uint64_t genid_gpa;
static uint8_t genid_b[16];

/* Memory files: equal but for B's generation ID at genid_gpa (below 4 GiB:
 * its file offset is its address). */
static void cmp_mem(const char *ma, const char *mb)
{
	FILE *a = fopen(ma, "rb"), *b = fopen(mb, "rb");
	if (!a || !b) {
		printf("cannot open %s\n", !a ? ma : mb);
		exit(2);
	}
	static uint8_t x[1 << 20], y[1 << 20];
	uint64_t off = 0, first = UINT64_MAX, ndiff = 0;
	for (;;) {
		size_t na = fread(x, 1, sizeof(x), a), nb = fread(y, 1, sizeof(y), b);
		if (na != nb) {
			diff("memory", "the files differ in size");
			break;
		}
		if (!na)
			break;
		for (size_t i = 0; i < na; i++) {
			uint64_t at = off + i;
			bool in_id = have_genid && at >= genid_gpa && at < genid_gpa + 16;
			if (in_id && y[i] != genid_b[at - genid_gpa]) {
				diff("memory", "the generation ID in memory is not the device's");
			} else if (!in_id && x[i] != y[i]) {
				ndiff++;
				if (first == UINT64_MAX)
					first = at;
			}
		}
		off += na;
	}
	if (ndiff) {
		printf("memory: %" PRIu64 " bytes differ, the first at 0x%" PRIx64 "\n", ndiff, first);
		diff("memory", "guest memory");
	}
	fclose(a);
	fclose(b);
}

static void diff(const char *sec, const char *what)
{
	printf("DIFF %s: %s\n", sec, what);
	diffs++;
}

static void volatile_u64(const char *sec, const char *what, uint64_t a, uint64_t b)
{
	if (a != b)
		printf("time %s: %s %" PRIu64 " -> %" PRIu64 "\n", sec, what, a, b);
}

#define SAME(sec, a, b, field)                                                  \
	do {                                                                    \
		if (memcmp(&(a)->field, &(b)->field, sizeof((a)->field)))       \
			diff(sec, #field);                                      \
	} while (0)

/* MSRs that count host time: IA32_TSC; Hyper-V's partition reference
 * counter (HV_X64_MSR_TIME_REF_COUNT) and the vCPU's run time
 * (HV_X64_MSR_VP_RUNTIME), which KVM lists among its emulated MSRs */
static bool time_msr(uint32_t index)
{
	return index == 0x10 || index == 0x40000020 || index == 0x40000010;
}

static void cmp_vcpu(const char *sec, const uint8_t *pa, size_t la, uint32_t va,
		     const uint8_t *pb, size_t lb, uint32_t vb)
{
	struct x86_vcpu_state *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	char err[256];
	struct snap_cursor c;
	if (!a || !b)
		exit(2);
	snap_cursor_init(&c, pa, la);
	if (x86_vcpu_state_decode(&c, va, a, err, sizeof(err))) {
		printf("A %s: %s\n", sec, err);
		exit(2);
	}
	snap_cursor_init(&c, pb, lb);
	if (x86_vcpu_state_decode(&c, vb, b, err, sizeof(err))) {
		printf("B %s: %s\n", sec, err);
		exit(2);
	}
	SAME(sec, a, b, vcpu_id);
	SAME(sec, a, b, regs);
	SAME(sec, a, b, sregs);
	SAME(sec, a, b, sregs2_flags);
	SAME(sec, a, b, pdptrs);
	SAME(sec, a, b, xcrs);
	if (a->xsave_len != b->xsave_len || memcmp(a->xsave, b->xsave, a->xsave_len))
		diff(sec, "xsave");
	/* the LAPIC page but its timer's current count */
	for (size_t off = 0; off < sizeof(a->lapic.regs); off += 4) {
		uint32_t x = get_le32((const uint8_t *)a->lapic.regs + off);
		uint32_t y = get_le32((const uint8_t *)b->lapic.regs + off);
		if (off == 0x390) {
			volatile_u64(sec, "lapic TMCCT", x, y);
		} else if (x != y) {
			char w[48];
			snprintf(w, sizeof(w), "lapic register 0x%03zx", off);
			diff(sec, w);
		}
	}
	if (a->nmsrs != b->nmsrs) {
		diff(sec, "number of MSRs");
	} else {
		for (uint32_t i = 0; i < a->nmsrs; i++) {
			char w[48];
			snprintf(w, sizeof(w), "msr 0x%" PRIx32, a->msrs[i].index);
			if (a->msrs[i].index != b->msrs[i].index)
				diff(sec, "MSR order");
			else if (time_msr(a->msrs[i].index))
				volatile_u64(sec, w, a->msrs[i].data, b->msrs[i].data);
			else if (a->msrs[i].data != b->msrs[i].data)
				diff(sec, w);
		}
	}
	SAME(sec, a, b, events);
	SAME(sec, a, b, mp_state);
	SAME(sec, a, b, debugregs);
	SAME(sec, a, b, tsc_khz);
	SAME(sec, a, b, ncpuid);
	if (a->ncpuid == b->ncpuid && memcmp(a->cpuid, b->cpuid, a->ncpuid * sizeof(a->cpuid[0])))
		diff(sec, "cpuid");
	if (a->nested_len != b->nested_len || memcmp(a->nested, b->nested, a->nested_len))
		diff(sec, "nested state");
	free(a);
	free(b);
}

static void cmp_vm(const char *sec, const uint8_t *pa, size_t la, uint32_t va, const uint8_t *pb,
		   size_t lb, uint32_t vb)
{
	struct x86_vm_state a, b;
	char err[256];
	struct snap_cursor c;
	snap_cursor_init(&c, pa, la);
	if (x86_vm_state_decode(&c, va, &a, err, sizeof(err))) {
		printf("A %s: %s\n", sec, err);
		exit(2);
	}
	snap_cursor_init(&c, pb, lb);
	if (x86_vm_state_decode(&c, vb, &b, err, sizeof(err))) {
		printf("B %s: %s\n", sec, err);
		exit(2);
	}
	SAME(sec, &a, &b, pic);
	SAME(sec, &a, &b, ioapic);
	for (int i = 0; i < 3; i++) {
		struct kvm_pit_channel_state x = a.pit.channels[i], y = b.pit.channels[i];
		char w[48];
		snprintf(w, sizeof(w), "pit channel %d count_load_time", i);
		volatile_u64(sec, w, (uint64_t)x.count_load_time, (uint64_t)y.count_load_time);
		x.count_load_time = y.count_load_time = 0;
		if (memcmp(&x, &y, sizeof(x))) {
			snprintf(w, sizeof(w), "pit channel %d", i);
			diff(sec, w);
		}
	}
	SAME(sec, &a, &b, pit.flags);
	volatile_u64(sec, "kvmclock", a.clock, b.clock);
}

/* "devices": the type of device N (for dev.N), or "" */
static void device_type(const struct snap_reader *r, unsigned n, char *out, size_t len)
{
	uint32_t v;
	const uint8_t *p;
	size_t l;
	out[0] = 0;
	if (snap_reader_find(r, "devices", &v, &p, &l))
		return;
	struct snap_cursor c;
	snap_cursor_init(&c, p, l);
	uint32_t count = snap_get_u32(&c);
	for (uint32_t i = 0; i < count && !c.overrun; i++) {
		char type[80], id[80];
		snap_get_u8(&c);
		snap_get_u8(&c);
		snap_get_u8(&c);
		snap_get_u8(&c);
		if (snap_get_str(&c, type, sizeof(type)) < 0 || snap_get_str(&c, id, sizeof(id)) < 0)
			return;
		if (i == n) {
			snprintf(out, len, "%s", type);
			return;
		}
	}
}

static int load(const char *path, uint8_t **buf, struct snap_reader *r)
{
	size_t len;
	char err[256];
	if (snap_file_read(path, buf, &len, err, sizeof(err)) ||
	    snap_reader_open(*buf, len, r, err, sizeof(err))) {
		printf("%s: %s\n", path, err);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 5) {
		fprintf(stderr, "usage: snapcmp A B [MEMA MEMB] (visor snapshot state files and "
				"their memory files)\n");
		return 2;
	}
	uint8_t *ba, *bb;
	struct snap_reader ra, rb;
	if (load(argv[1], &ba, &ra) || load(argv[2], &bb, &rb))
		return 2;
	if (ra.count != rb.count)
		diff("file", "number of sections");
	struct snap_iter it = {0};
	struct snap_section s;
	unsigned same = 0;
	while (snap_reader_next(&ra, &it, &s)) {
		uint32_t vb;
		const uint8_t *pb;
		size_t lb;
		if (snap_reader_find(&rb, s.id, &vb, &pb, &lb)) {
			diff(s.id, "missing in B");
			continue;
		}
		int before = diffs;
		if (!strncmp(s.id, "vcpu.", 5)) {
			cmp_vcpu(s.id, s.payload, s.len, s.version, pb, lb, vb);
		} else if (!strcmp(s.id, "vm")) {
			cmp_vm(s.id, s.payload, s.len, s.version, pb, lb, vb);
		} else if (!strcmp(s.id, SNAP_MEMORY_ID)) {
			struct snap_mem_info ma, mb;
			char e[256], ia[2 * SNAP_MEM_ID_LEN + 1], ib[2 * SNAP_MEM_ID_LEN + 1];
			if (snap_mem_decode(s.payload, s.len, s.version, &ma, e, sizeof(e)) ||
			    snap_mem_decode(pb, lb, vb, &mb, e, sizeof(e))) {
				diff(s.id, e);
			} else {
				if (ma.kind != mb.kind || ma.size != mb.size ||
				    memcmp(ma.base, mb.base, SNAP_MEM_ID_LEN))
					diff(s.id, "kind, size or base");
				snap_mem_id_hex(ma.id, ia);
				snap_mem_id_hex(mb.id, ib);
				printf("new %s: identity %s -> %s\n", s.id, ia, ib);
			}
		} else if (s.version != vb || s.len != lb) {
			diff(s.id, "version or length");
		} else {
			char type[80] = "";
			if (!strncmp(s.id, "dev.", 4))
				device_type(&ra, (unsigned)strtoul(s.id + 4, NULL, 10), type, sizeof(type));
			if (!strcmp(type, "vmgenid") && s.len == 8 + 16) {
				if (memcmp(s.payload, pb, 8))
					diff(s.id, "vmgenid address");
				else if (!memcmp(s.payload + 8, pb + 8, 16))
					diff(s.id, "vmgenid: the restored VM kept the old generation ID");
				else
					printf("restore %s: a new generation ID\n", s.id);
				genid_gpa = get_le64(s.payload);
				memcpy(genid_b, pb + 8, 16);
				have_genid = true;
			} else if (!strcmp(type, "acpi-pm") && s.len >= 16) {
				/* timer_ns at 8 in every version; it stops while the VM
				 * is paused, so it must be equal too.  Version 2: GPE0
				 * status at 16, where a restore may add bit 0 */
				uint8_t x[64], y[64];
				size_t n = s.len < sizeof(x) ? s.len : sizeof(x);
				memcpy(x, s.payload, n);
				memcpy(y, pb, n);
				if (n >= 18 && (y[16] & 1) && !(x[16] & 1)) {
					printf("restore %s: GPE0 status bit 0 (generation ID notify)\n", s.id);
					y[16] &= (uint8_t)~1;
				}
				if (memcmp(x, y, 8) || memcmp(x + 16, y + 16, n - 16))
					diff(s.id, "acpi-pm registers");
				if (get_le64(s.payload + 8) != get_le64(pb + 8)) {
					printf("  acpi-pm timer_ns %" PRIu64 " -> %" PRIu64 "\n",
					       get_le64(s.payload + 8), get_le64(pb + 8));
					diff(s.id, "acpi-pm timer (it must not run while paused)");
				}
			} else if (memcmp(s.payload, pb, s.len)) {
				diff(s.id, type[0] ? type : "payload");
			}
		}
		same += diffs == before;
	}
	if (argc == 5)
		cmp_mem(argv[3], argv[4]);
	printf("snapcmp: %u of %" PRIu32 " sections equal but for host time, %d difference%s\n",
	       same, ra.count, diffs, diffs == 1 ? "" : "s");
	free(ba);
	free(bb);
	return diffs ? 1 : 0;
}
