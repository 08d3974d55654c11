/* SPDX-License-Identifier: MIT */
/* arch/x86 vcpu_state and vm_state: the snapshot sections of a vCPU's and
 * the VM's KVM state.  Round trips (field by field), one test per
 * validation rule (each on an otherwise valid state, through encode and
 * decode, and through validate, which get and set use), truncation at every
 * length, trailing bytes, and the byte layout pinned (offsets of the
 * documented layout, a CRC of the sample encodings, and the fuzz seeds in
 * tests/fuzz/corpus-vcpu_state).  get/set need /dev/kvm and are exercised
 * by the KVM-level tests, not here.  Every payload handed to a decoder sits
 * in a heap block of exactly its length, so a read past the end is a
 * sanitizer report. */
#include "../../src/arch/x86/vcpu_state.h"
#include "../../src/arch/x86/vm_state.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "../../src/util/bytes.h"
#include "test.h"

/* ---- samples ------------------------------------------------------------- */

static void seg(struct kvm_segment *g, uint64_t base, uint32_t limit, uint16_t sel, uint8_t type,
		uint8_t s, uint8_t l, uint8_t db)
{
	*g = (struct kvm_segment){.base = base, .limit = limit, .selector = sel, .type = type,
				  .present = 1, .dpl = (uint8_t)(sel & 3), .db = db, .s = s, .l = l,
				  .g = limit > 0xfffff ? 1 : 0};
}

static void cpuid_add(struct x86_vcpu_state *s, uint32_t fn, uint32_t idx, bool indexed,
		      uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
	s->cpuid[s->ncpuid++] = (struct kvm_cpuid_entry2){
		.function = fn, .index = idx,
		.flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0,
		.eax = a, .ebx = b, .ecx = c, .edx = d};
}

/* XSAVE image: a byte pattern with MXCSR, XSTATE_BV and the header set. */
static void xsave_fill(struct x86_vcpu_state *s, uint32_t len, uint64_t bv, uint8_t seed)
{
	s->xsave_len = len;
	for (uint32_t i = 0; i < len; i++)
		s->xsave[i] = (uint8_t)(i * 7 + seed);
	put_le32(s->xsave + 24, 0x1f80);  /* MXCSR */
	put_le32(s->xsave + 28, 0xffff);  /* MXCSR_MASK */
	memset(s->xsave + 512, 0, 64);    /* header */
	put_le64(s->xsave + 512, bv);
}

/* A vCPU in 64-bit mode with an interrupt and an exception in flight. */
static struct x86_vcpu_state *sample_long(void)
{
	struct x86_vcpu_state *s = calloc(1, sizeof(*s));
	if (!s)
		abort();
	s->vcpu_id = 1;
	struct kvm_regs *r = &s->regs;
	r->rax = 0x1111111111111111ULL;
	r->rbx = 0x2222222222222222ULL;
	r->rcx = 0x3333333333333333ULL;
	r->rdx = 0x4444444444444444ULL;
	r->rsi = 0xffff888000123000ULL;
	r->rdi = 0x0102030405060708ULL;
	r->rsp = 0xffffc90000013e80ULL;
	r->rbp = 0xffffc90000013ec0ULL;
	r->r8 = 8;
	r->r9 = 9;
	r->r10 = 0xa0a0a0a0a0a0a0a0ULL;
	r->r11 = 0x246;
	r->r12 = 12;
	r->r13 = 0x8000000000000000ULL;
	r->r14 = 14;
	r->r15 = 0xfedcba9876543210ULL;
	r->rip = 0xffffffff81e00a4eULL;
	r->rflags = 0x246;
	struct kvm_sregs *sr = &s->sregs;
	seg(&sr->cs, 0, 0xffffffff, 0x10, 0xb, 1, 1, 0);
	seg(&sr->ds, 0, 0xffffffff, 0x18, 0x3, 1, 0, 1);
	sr->es = sr->ss = sr->ds;
	seg(&sr->fs, 0x7f0012345000ULL, 0xffffffff, 0, 0x3, 1, 0, 1);
	seg(&sr->gs, 0xffff88803ec00000ULL, 0xffffffff, 0, 0x3, 1, 0, 1);
	seg(&sr->tr, 0xfffffe0000003000ULL, 0x4087, 0x40, 0xb, 0, 0, 0);
	sr->ldt = (struct kvm_segment){.unusable = 1};
	sr->gdt = (struct kvm_dtable){.base = 0xfffffe0000001000ULL, .limit = 0x7f};
	sr->idt = (struct kvm_dtable){.base = 0xfffffe0000000000ULL, .limit = 0xfff};
	sr->cr0 = 0x80050033;
	sr->cr2 = 0x7f00deadb000ULL;
	sr->cr3 = 0x10a005;
	sr->cr4 = 0x3706f0;
	sr->cr8 = 2;
	sr->efer = 0xd01;
	sr->apic_base = 0xfee00800;
	sr->interrupt_bitmap[0] = 1ULL << 49; /* vector 0x31 */
	s->xcrs.nr_xcrs = 1;
	s->xcrs.xcrs[0].value = 0x7;
	xsave_fill(s, 4096, 0x7, 3);
	for (int i = 0; i < 1024; i++)
		s->lapic.regs[i] = (char)(i * 13 + 1);
	static const struct kvm_msr_entry msrs[] = {
		{.index = 0x174, .data = 0x10},
		{.index = 0x10, .data = 0x123456789aULL},
		{.index = 0xc0000081, .data = 0x0023001000000000ULL},
		{.index = 0xc0000082, .data = 0xffffffff81e00080ULL},
		{.index = 0x4b564d01, .data = 0x2a001},
		{.index = 0x4b564d02, .data = 0x3b000 | 0x3},
		{.index = 0x6e0, .data = 0x1234567890ULL},
		{.index = 0x4b564d06, .data = 0xf3},
	};
	s->nmsrs = sizeof(msrs) / sizeof(msrs[0]);
	memcpy(s->msrs, msrs, sizeof(msrs));
	struct kvm_vcpu_events *e = &s->events;
	e->exception.injected = 1;
	e->exception.nr = 14;
	e->exception.has_error_code = 1;
	e->exception.error_code = 0x2;
	e->interrupt.injected = 1;
	e->interrupt.nr = 0x31;
	e->interrupt.shadow = KVM_X86_SHADOW_INT_STI;
	e->nmi.pending = 1;
	e->nmi.masked = 1;
	e->sipi_vector = 0x9a;
	e->flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
		   KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
	e->smi.latched_init = 1;
	s->mp_state.mp_state = KVM_MP_STATE_HALTED;
	s->debugregs = (struct kvm_debugregs){.db = {0x1000, 0x2000, 0x3000, 0x4000},
					      .dr6 = 0xffff0ff0, .dr7 = 0x400};
	s->tsc_khz = 2995200;
	cpuid_add(s, 0, 0, false, 0xd, 0x756e6547, 0x6c65746e, 0x49656e69);
	cpuid_add(s, 1, 0, false, 0x000906ea, 0x01020800, 0xf7fa3223, 0x0f8bfbff);
	cpuid_add(s, 7, 0, true, 0, 0x009c07ab, 0, 0xbc000400);
	cpuid_add(s, 0xd, 0, true, 0x7, 0x340, 0x340, 0);
	cpuid_add(s, 0xd, 1, true, 0x1, 0, 0, 0);
	cpuid_add(s, 0xd, 2, true, 0x100, 0x240, 0, 0);
	cpuid_add(s, 0x40000001, 0, false, 0x01007afb, 0, 0, 0);
	cpuid_add(s, 0x80000008, 0, false, 0x3027, 0, 0, 0);
	return s;
}

/* vCPU 0 in 32-bit PAE paging with cached PDPTRs, a pending #PF with its
 * payload, no MSRs. */
static struct x86_vcpu_state *sample_pae(void)
{
	struct x86_vcpu_state *s = calloc(1, sizeof(*s));
	if (!s)
		abort();
	s->regs.rip = 0xc1000000;
	s->regs.rsp = 0xc1400000;
	s->regs.rflags = 0x202;
	struct kvm_sregs *sr = &s->sregs;
	seg(&sr->cs, 0, 0xffffffff, 0x60, 0xb, 1, 0, 1);
	seg(&sr->ds, 0, 0xffffffff, 0x7b, 0x3, 1, 0, 1);
	sr->es = sr->fs = sr->gs = sr->ss = sr->ds;
	seg(&sr->tr, 0xc1800000, 0x206b, 0x80, 0xb, 0, 0, 0);
	seg(&sr->ldt, 0, 0xffff, 0, 0x2, 0, 0, 0);
	sr->gdt = (struct kvm_dtable){.base = 0xc1900000, .limit = 0xff};
	sr->idt = (struct kvm_dtable){.base = 0xc1a00000, .limit = 0x7ff};
	sr->cr0 = 0x80000011;
	sr->cr3 = 0x1a2b000;
	sr->cr4 = 0x20;
	sr->efer = 0x800;
	sr->apic_base = 0xfee00900;
	s->sregs2_flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
	s->pdptrs[0] = 0x2001;
	s->pdptrs[1] = 0x3001;
	s->pdptrs[3] = 0x5001 | 0x18;
	s->xcrs.nr_xcrs = 1;
	s->xcrs.xcrs[0].value = 0x3;
	xsave_fill(s, 4096, 0x3, 0x55);
	s->lapic.regs[0x20 + 3] = 0; /* APIC ID 0 */
	s->lapic.regs[0x30] = 0x14;
	struct kvm_vcpu_events *e = &s->events;
	e->exception.pending = 1;
	e->exception.nr = 14;
	e->exception.has_error_code = 1;
	e->exception.error_code = 6;
	e->exception_has_payload = 1;
	e->exception_payload = 0xdeadb000;
	e->flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW |
		   KVM_VCPUEVENT_VALID_PAYLOAD | KVM_VCPUEVENT_VALID_TRIPLE_FAULT;
	s->mp_state.mp_state = KVM_MP_STATE_RUNNABLE;
	s->debugregs.dr6 = 0xffff0ff0;
	s->debugregs.dr7 = 0x400;
	cpuid_add(s, 0, 0, false, 0xd, 1, 2, 3);
	cpuid_add(s, 0xd, 0, true, 0x3, 0x240, 0x240, 0);
	return s;
}

static void sample_vm(struct x86_vm_state *s)
{
	memset(s, 0, sizeof(*s));
	s->pic[0] = (struct kvm_pic_state){.last_irr = 0x01, .irr = 0x11, .imr = 0xb8,
					   .priority_add = 3, .irq_base = 0x30,
					   .read_reg_select = 1, .init4 = 1, .elcr_mask = 0xf8};
	s->pic[1] = (struct kvm_pic_state){.irr = 0x02, .imr = 0xef, .isr = 0x10,
					   .irq_base = 0x38, .auto_eoi = 1, .init4 = 1,
					   .elcr = 0x0c, .elcr_mask = 0xde};
	s->ioapic.base_address = 0xfec00000;
	s->ioapic.ioregsel = 0x10;
	s->ioapic.id = 0;
	s->ioapic.irr = 0x100;
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		s->ioapic.redirtbl[i].bits = i % 3 ? (0x10000ULL | (uint64_t)(0x20 + i))
						   : ((uint64_t)i << 56 | 0x8000 | (0x30 + i));
	s->pit.channels[0] = (struct kvm_pit_channel_state){
		.count = 0x10000, .latched_count = 0x1234, .count_latched = 1, .status_latched = 1,
		.status = 0x34, .read_state = 3, .write_state = 3, .write_latch = 0x9c,
		.rw_mode = 3, .mode = 2, .gate = 1, .count_load_time = 123456789};
	s->pit.channels[1] = (struct kvm_pit_channel_state){.count = 18, .mode = 0xff, .gate = 1,
							     .count_load_time = -5};
	s->pit.channels[2] = (struct kvm_pit_channel_state){
		.count = 1193, .read_state = 4, .write_state = 1, .rw_mode = 1, .mode = 3, .bcd = 1};
	s->pit.flags = KVM_PIT_FLAGS_SPEAKER_DATA_ON;
	s->clock = 123456789012ULL;
	s->clock_flags = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;
	s->clock_realtime = 1700000000123456789ULL;
	s->clock_host_tsc = 0x1234567890ULL;
}

/* ---- helpers ------------------------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t len;
};

/* The payload of one section written through the writer, in a heap block
 * of exactly its size (one byte when empty). */
static struct buf section_payload(void (*put)(const void *, struct snap_writer *), const void *st)
{
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "vcpu.0", 1);
	put(st, &w);
	snap_writer_section_end(&w);
	uint8_t *file;
	size_t flen;
	if (snap_writer_finish(&w, &file, &flen))
		abort();
	struct snap_reader r;
	char err[256];
	const uint8_t *p;
	size_t len;
	if (snap_reader_open(file, flen, &r, err, sizeof(err)) ||
	    snap_reader_find(&r, "vcpu.0", NULL, &p, &len))
		abort();
	struct buf b = {malloc(len ? len : 1), len};
	if (!b.p)
		abort();
	memcpy(b.p, p, len);
	free(file);
	return b;
}

static void put_vcpu(const void *s, struct snap_writer *w)
{
	x86_vcpu_state_encode(s, w);
}

static void put_vm(const void *s, struct snap_writer *w)
{
	x86_vm_state_encode(s, w);
}

static struct buf enc_vcpu(const struct x86_vcpu_state *s)
{
	return section_payload(put_vcpu, s);
}

static struct buf enc_vm(const struct x86_vm_state *s)
{
	return section_payload(put_vm, s);
}

static char last_err[256];

/* Decode p[0..len) from an exact-size copy. */
static int dec_vcpu(const uint8_t *p, size_t len, uint32_t version, struct x86_vcpu_state *s)
{
	uint8_t *b = malloc(len ? len : 1);
	if (!b)
		abort();
	if (len)
		memcpy(b, p, len);
	struct snap_cursor c;
	snap_cursor_init(&c, b, len);
	memset(s, 0xa5, sizeof(*s));
	last_err[0] = 0;
	int rc = x86_vcpu_state_decode(&c, version, s, last_err, sizeof(last_err));
	free(b);
	return rc;
}

static int dec_vm(const uint8_t *p, size_t len, uint32_t version, struct x86_vm_state *s)
{
	uint8_t *b = malloc(len ? len : 1);
	if (!b)
		abort();
	if (len)
		memcpy(b, p, len);
	struct snap_cursor c;
	snap_cursor_init(&c, b, len);
	memset(s, 0xa5, sizeof(*s));
	last_err[0] = 0;
	int rc = x86_vm_state_decode(&c, version, s, last_err, sizeof(last_err));
	free(b);
	return rc;
}

static bool one_line(const char *m)
{
	return m[0] && !strchr(m, '\n');
}

static bool has(const char *m, const char *want)
{
	if (strstr(m, want))
		return true;
	printf("  message \"%s\" lacks \"%s\"\n", m, want);
	return false;
}

static bool seg_eq(const struct kvm_segment *a, const struct kvm_segment *b)
{
	return a->base == b->base && a->limit == b->limit && a->selector == b->selector &&
	       a->type == b->type && a->present == b->present && a->dpl == b->dpl &&
	       a->db == b->db && a->s == b->s && a->l == b->l && a->g == b->g &&
	       a->avl == b->avl && a->unusable == b->unusable && a->padding == b->padding;
}

/* The first field in which @a and @b differ, or NULL. */
static const char *vcpu_diff(const struct x86_vcpu_state *a, const struct x86_vcpu_state *b)
{
#define F(x)                  \
	if (a->x != b->x)     \
		return #x
	F(vcpu_id);
	F(regs.rax); F(regs.rbx); F(regs.rcx); F(regs.rdx); F(regs.rsi); F(regs.rdi);
	F(regs.rsp); F(regs.rbp); F(regs.r8); F(regs.r9); F(regs.r10); F(regs.r11);
	F(regs.r12); F(regs.r13); F(regs.r14); F(regs.r15); F(regs.rip); F(regs.rflags);
	const struct kvm_segment *sa[8] = {&a->sregs.cs, &a->sregs.ds, &a->sregs.es, &a->sregs.fs,
					   &a->sregs.gs, &a->sregs.ss, &a->sregs.tr, &a->sregs.ldt};
	const struct kvm_segment *sb[8] = {&b->sregs.cs, &b->sregs.ds, &b->sregs.es, &b->sregs.fs,
					   &b->sregs.gs, &b->sregs.ss, &b->sregs.tr, &b->sregs.ldt};
	for (int i = 0; i < 8; i++)
		if (!seg_eq(sa[i], sb[i]))
			return "sregs segment";
	F(sregs.gdt.base); F(sregs.gdt.limit); F(sregs.idt.base); F(sregs.idt.limit);
	if (memcmp(a->sregs.gdt.padding, b->sregs.gdt.padding, sizeof(a->sregs.gdt.padding)) ||
	    memcmp(a->sregs.idt.padding, b->sregs.idt.padding, sizeof(a->sregs.idt.padding)))
		return "dtable padding";
	F(sregs.cr0); F(sregs.cr2); F(sregs.cr3); F(sregs.cr4); F(sregs.cr8); F(sregs.efer);
	F(sregs.apic_base);
	for (int i = 0; i < 4; i++) {
		F(sregs.interrupt_bitmap[i]);
		F(pdptrs[i]);
	}
	F(sregs2_flags);
	F(xcrs.nr_xcrs); F(xcrs.flags);
	/* arrays: the part in use (the rest is not state) */
	for (uint32_t i = 0; i < a->xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++) {
		F(xcrs.xcrs[i].xcr); F(xcrs.xcrs[i].reserved); F(xcrs.xcrs[i].value);
	}
	for (int i = 0; i < 16; i++)
		F(xcrs.padding[i]);
	F(xsave_len);
	if (memcmp(a->xsave, b->xsave, a->xsave_len < X86_XSAVE_MAX ? a->xsave_len : X86_XSAVE_MAX))
		return "xsave";
	if (memcmp(a->lapic.regs, b->lapic.regs, sizeof(a->lapic.regs)))
		return "lapic";
	F(nmsrs);
	for (uint32_t i = 0; i < a->nmsrs && i < X86_MSR_MAX; i++) {
		F(msrs[i].index); F(msrs[i].reserved); F(msrs[i].data);
	}
	F(events.exception.injected); F(events.exception.nr); F(events.exception.has_error_code);
	F(events.exception.pending); F(events.exception.error_code);
	F(events.interrupt.injected); F(events.interrupt.nr); F(events.interrupt.soft);
	F(events.interrupt.shadow);
	F(events.nmi.injected); F(events.nmi.pending); F(events.nmi.masked); F(events.nmi.pad);
	F(events.sipi_vector); F(events.flags);
	F(events.smi.smm); F(events.smi.pending); F(events.smi.smm_inside_nmi);
	F(events.smi.latched_init); F(events.triple_fault.pending);
	if (memcmp(a->events.reserved, b->events.reserved, sizeof(a->events.reserved)))
		return "events.reserved";
	F(events.exception_has_payload); F(events.exception_payload);
	F(mp_state.mp_state);
	for (int i = 0; i < 4; i++)
		F(debugregs.db[i]);
	F(debugregs.dr6); F(debugregs.dr7); F(debugregs.flags);
	for (int i = 0; i < 9; i++)
		F(debugregs.reserved[i]);
	F(tsc_khz);
	F(ncpuid);
	for (uint32_t i = 0; i < a->ncpuid && i < X86_CPUID_MAX; i++) {
		F(cpuid[i].function); F(cpuid[i].index); F(cpuid[i].flags); F(cpuid[i].eax);
		F(cpuid[i].ebx); F(cpuid[i].ecx); F(cpuid[i].edx);
		for (int k = 0; k < 3; k++)
			F(cpuid[i].padding[k]);
	}
	F(nested_len);
	if (a->nested_len <= X86_NESTED_MAX && memcmp(a->nested, b->nested, a->nested_len))
		return "nested";
	return NULL;
#undef F
}

static const char *vm_diff(const struct x86_vm_state *a, const struct x86_vm_state *b)
{
#define F(x)                  \
	if (a->x != b->x)     \
		return #x
	for (int i = 0; i < 2; i++) {
		F(pic[i].last_irr); F(pic[i].irr); F(pic[i].imr); F(pic[i].isr);
		F(pic[i].priority_add); F(pic[i].irq_base); F(pic[i].read_reg_select);
		F(pic[i].poll); F(pic[i].special_mask); F(pic[i].init_state); F(pic[i].auto_eoi);
		F(pic[i].rotate_on_auto_eoi); F(pic[i].special_fully_nested_mode);
		F(pic[i].init4); F(pic[i].elcr); F(pic[i].elcr_mask);
	}
	F(ioapic.base_address); F(ioapic.ioregsel); F(ioapic.id); F(ioapic.irr); F(ioapic.pad);
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		F(ioapic.redirtbl[i].bits);
	for (int i = 0; i < 3; i++) {
		F(pit.channels[i].count); F(pit.channels[i].latched_count);
		F(pit.channels[i].count_latched); F(pit.channels[i].status_latched);
		F(pit.channels[i].status); F(pit.channels[i].read_state);
		F(pit.channels[i].write_state); F(pit.channels[i].write_latch);
		F(pit.channels[i].rw_mode); F(pit.channels[i].mode); F(pit.channels[i].bcd);
		F(pit.channels[i].gate); F(pit.channels[i].count_load_time);
	}
	F(pit.flags);
	for (int i = 0; i < 9; i++)
		F(pit.reserved[i]);
	F(clock); F(clock_flags); F(clock_realtime); F(clock_host_tsc);
	return NULL;
#undef F
}

/* ---- layout of the vCPU payload (docs in vcpu_state.h) ------------------- */

enum {
	O_ID = 0,
	O_REGS = 4,
	O_RFLAGS = O_REGS + 17 * 8,
	O_SEGS = O_REGS + 18 * 8, /* 148 */
	SEG_LEN = 23,
	O_GDT = O_SEGS + 8 * SEG_LEN, /* 332 */
	O_CR0 = O_GDT + 20,           /* 352 */
	O_APIC_BASE = O_CR0 + 6 * 8,
	O_BITMAP = O_CR0 + 7 * 8,
	O_SREGS2 = O_BITMAP + 32,     /* 440 */
	O_XCRS = O_SREGS2 + 40,       /* 480 */
	EVENTS_LEN = 63,
	DEBUGREGS_LEN = 16 * 8,
	CPUID_LEN = 28,
};

static size_t o_xsave(const struct x86_vcpu_state *s)
{
	return O_XCRS + 8 + 12 * (size_t)s->xcrs.nr_xcrs;
}
static size_t o_lapic(const struct x86_vcpu_state *s)
{
	return o_xsave(s) + 4 + s->xsave_len;
}
static size_t o_msrs(const struct x86_vcpu_state *s)
{
	return o_lapic(s) + 1024;
}
static size_t o_events(const struct x86_vcpu_state *s)
{
	return o_msrs(s) + 4 + 12 * (size_t)s->nmsrs;
}
static size_t o_mp(const struct x86_vcpu_state *s)
{
	return o_events(s) + EVENTS_LEN;
}
static size_t o_debug(const struct x86_vcpu_state *s)
{
	return o_mp(s) + 4;
}
static size_t o_tsc(const struct x86_vcpu_state *s)
{
	return o_debug(s) + DEBUGREGS_LEN;
}
static size_t o_cpuid(const struct x86_vcpu_state *s)
{
	return o_tsc(s) + 4;
}
static size_t o_nested(const struct x86_vcpu_state *s)
{
	return o_cpuid(s) + 4 + CPUID_LEN * (size_t)s->ncpuid;
}
static size_t vcpu_len(const struct x86_vcpu_state *s)
{
	return o_nested(s) + 4 + s->nested_len;
}

enum { VM_LEN = 384, VO_IOAPIC = 32, VO_PIT = 244, VO_CLOCK = 356 };

/* ---- round trips --------------------------------------------------------- */

static void roundtrip_vcpu(const struct x86_vcpu_state *s)
{
	char err[256];
	CHECK_EQ(x86_vcpu_state_validate(s, err, sizeof(err)), 0);
	struct buf b = enc_vcpu(s);
	CHECK_EQ(b.len, vcpu_len(s));
	struct x86_vcpu_state *d = malloc(sizeof(*d));
	if (!d)
		abort();
	int rc = dec_vcpu(b.p, b.len, X86_VCPU_STATE_VERSION, d);
	CHECK_EQ(rc, 0);
	if (rc)
		printf("  %s\n", last_err);
	const char *diff = vcpu_diff(s, d);
	if (diff)
		printf("  differs in %s\n", diff);
	CHECK(diff == NULL);
	struct buf again = enc_vcpu(d);
	CHECK(again.len == b.len && !memcmp(again.p, b.p, b.len));
	free(again.p);
	free(b.p);
	free(d);
}

TEST(vcpu_roundtrip_long_mode)
{
	struct x86_vcpu_state *s = sample_long();
	roundtrip_vcpu(s);
	free(s);
}

TEST(vcpu_roundtrip_pae_with_pdptrs_and_payload)
{
	struct x86_vcpu_state *s = sample_pae();
	roundtrip_vcpu(s);
	free(s);
}

TEST(vcpu_roundtrip_limits)
{
	/* the largest counts, the largest XSAVE area, edge values accepted */
	struct x86_vcpu_state *s = sample_long();
	s->vcpu_id = X86_VCPU_ID_LIMIT - 1;
	xsave_fill(s, X86_XSAVE_MAX, 0x7, 9);
	s->nmsrs = X86_MSR_MAX;
	for (uint32_t i = 0; i < X86_MSR_MAX; i++)
		s->msrs[i] = (struct kvm_msr_entry){.index = 0xc0010000 + i, .data = ~(uint64_t)i};
	s->ncpuid = 0;
	cpuid_add(s, 0xd, 0, true, 0x7, 0x340, 0x340, 0);
	for (uint32_t i = 1; i < X86_CPUID_MAX; i++)
		cpuid_add(s, 0x80000000 + i, i, i % 2, i, ~i, i * 3, i << 8);
	s->events.nmi.pending = 2;
	s->events.interrupt.shadow = KVM_X86_SHADOW_INT_MOV_SS | KVM_X86_SHADOW_INT_STI;
	s->events.sipi_vector = 0xff;
	s->mp_state.mp_state = KVM_MP_STATE_SIPI_RECEIVED;
	s->tsc_khz = X86_TSC_KHZ_MAX;
	s->sregs.cr8 = 15;
	s->debugregs.dr6 = 0xffffffff;
	s->debugregs.dr7 = 0xffffffff;
	roundtrip_vcpu(s);
	s->tsc_khz = 0; /* unknown */
	s->nmsrs = 0;
	s->ncpuid = 0;
	s->xcrs.xcrs[0].value = 1; /* without CPUID leaf 0xD only x87 */
	put_le64(s->xsave + 512, 1);
	roundtrip_vcpu(s);
	free(s);
}

TEST(vm_roundtrip)
{
	struct x86_vm_state s, d;
	sample_vm(&s);
	char err[256];
	CHECK_EQ(x86_vm_state_validate(&s, err, sizeof(err)), 0);
	struct buf b = enc_vm(&s);
	CHECK_EQ(b.len, VM_LEN);
	CHECK_EQ(dec_vm(b.p, b.len, X86_VM_STATE_VERSION, &d), 0);
	const char *diff = vm_diff(&s, &d);
	if (diff)
		printf("  differs in %s\n", diff);
	CHECK(diff == NULL);
	struct buf again = enc_vm(&d);
	CHECK(again.len == b.len && !memcmp(again.p, b.p, b.len));
	free(again.p);
	free(b.p);
	/* edges: unprogrammed PIT channel, no clock flags */
	s.pit.channels[2].mode = 0xff;
	s.pit.channels[2].count = 0;
	s.clock_flags = 0;
	s.clock_realtime = s.clock_host_tsc = 0;
	b = enc_vm(&s);
	CHECK_EQ(dec_vm(b.p, b.len, X86_VM_STATE_VERSION, &d), 0);
	CHECK(vm_diff(&s, &d) == NULL);
	free(b.p);
}

/* ---- the layout ---------------------------------------------------------- */

TEST(vcpu_layout_offsets)
{
	struct x86_vcpu_state *s = sample_long();
	struct buf b = enc_vcpu(s);
	CHECK_EQ(b.len, vcpu_len(s));
	CHECK_EQ(get_le32(b.p + O_ID), 1);
	CHECK_EQ(get_le64(b.p + O_REGS), s->regs.rax);
	CHECK_EQ(get_le64(b.p + O_RFLAGS), 0x246);
	/* cs: base, limit, selector, type present dpl db s l g avl unusable */
	CHECK_EQ(get_le64(b.p + O_SEGS), 0);
	CHECK_EQ(get_le32(b.p + O_SEGS + 8), 0xffffffff);
	CHECK_EQ(get_le16(b.p + O_SEGS + 12), 0x10);
	static const uint8_t cs_bits[9] = {0xb, 1, 0, 0, 1, 1, 1, 0, 0};
	CHECK(!memcmp(b.p + O_SEGS + 14, cs_bits, 9));
	CHECK_EQ(get_le64(b.p + O_SEGS + 3 * SEG_LEN), s->sregs.fs.base);
	CHECK_EQ(b.p[O_SEGS + 7 * SEG_LEN + 22], 1); /* ldt unusable */
	CHECK_EQ(get_le64(b.p + O_GDT), s->sregs.gdt.base);
	CHECK_EQ(get_le16(b.p + O_GDT + 8), 0x7f);
	CHECK_EQ(get_le16(b.p + O_GDT + 18), 0xfff);
	CHECK_EQ(get_le64(b.p + O_CR0), 0x80050033);
	CHECK_EQ(get_le64(b.p + O_APIC_BASE), 0xfee00800);
	CHECK_EQ(get_le64(b.p + O_BITMAP), 1ULL << 49);
	CHECK_EQ(get_le32(b.p + O_XCRS), 1);
	CHECK_EQ(get_le64(b.p + O_XCRS + 12), 7);
	CHECK_EQ(get_le32(b.p + o_xsave(s)), 4096);
	CHECK_EQ(get_le32(b.p + o_xsave(s) + 4 + 24), 0x1f80);
	CHECK_EQ(b.p[o_lapic(s) + 5], (uint8_t)(5 * 13 + 1));
	CHECK_EQ(get_le32(b.p + o_msrs(s)), 8);
	CHECK_EQ(get_le32(b.p + o_msrs(s) + 4 + 12), 0x10);
	CHECK_EQ(get_le64(b.p + o_msrs(s) + 4 + 12 + 4), 0x123456789aULL);
	CHECK_EQ(b.p[o_events(s) + 1], 14);                  /* exception.nr */
	CHECK_EQ(get_le32(b.p + o_events(s) + 4), 2);        /* error_code */
	CHECK_EQ(b.p[o_events(s) + 9], 0x31);                /* interrupt.nr */
	CHECK_EQ(get_le32(b.p + o_events(s) + 15), 0x9a);    /* sipi_vector */
	CHECK_EQ(get_le32(b.p + o_events(s) + 19), s->events.flags);
	CHECK_EQ(b.p[o_events(s) + 26], 1);                  /* smi.latched_init */
	CHECK_EQ(get_le32(b.p + o_mp(s)), KVM_MP_STATE_HALTED);
	CHECK_EQ(get_le64(b.p + o_debug(s) + 4 * 8), 0xffff0ff0);
	CHECK_EQ(get_le32(b.p + o_tsc(s)), 2995200);
	CHECK_EQ(get_le32(b.p + o_cpuid(s)), 8);
	CHECK_EQ(get_le32(b.p + o_cpuid(s) + 4 + 2 * CPUID_LEN), 7);            /* function */
	CHECK_EQ(get_le32(b.p + o_cpuid(s) + 4 + 2 * CPUID_LEN + 8), 1);        /* flags */
	free(b.p);
	free(s);
}

TEST(vm_layout_offsets)
{
	struct x86_vm_state s;
	sample_vm(&s);
	struct buf b = enc_vm(&s);
	CHECK_EQ(b.len, VM_LEN);
	static const uint8_t pic0[16] = {0x01, 0x11, 0xb8, 0, 3, 0x30, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0xf8};
	CHECK(!memcmp(b.p, pic0, 16));
	CHECK_EQ(b.p[16 + 14], 0x0c);
	CHECK_EQ(get_le64(b.p + VO_IOAPIC), 0xfec00000);
	CHECK_EQ(get_le32(b.p + VO_IOAPIC + 8), 0x10);
	CHECK_EQ(get_le32(b.p + VO_IOAPIC + 16), 0x100);
	CHECK_EQ(get_le64(b.p + VO_IOAPIC + 20 + 8), s.ioapic.redirtbl[1].bits);
	CHECK_EQ(get_le32(b.p + VO_PIT), 0x10000);
	CHECK_EQ(get_le16(b.p + VO_PIT + 4), 0x1234);
	CHECK_EQ(b.p[VO_PIT + 13], 2); /* mode */
	CHECK_EQ(get_le64(b.p + VO_PIT + 16), 123456789);
	CHECK_EQ(get_le64(b.p + VO_PIT + 24 + 16), (uint64_t)-5);
	CHECK_EQ(get_le32(b.p + VO_PIT + 72), KVM_PIT_FLAGS_SPEAKER_DATA_ON);
	CHECK_EQ(get_le64(b.p + VO_CLOCK), 123456789012ULL);
	CHECK_EQ(get_le32(b.p + VO_CLOCK + 8), 0xe);
	CHECK_EQ(get_le64(b.p + VO_CLOCK + 12), 1700000000123456789ULL);
	CHECK_EQ(get_le64(b.p + VO_CLOCK + 20), 0x1234567890ULL);
	free(b.p);
}

/* ---- framing: version, truncation, trailing bytes ------------------------ */

TEST(vcpu_unknown_version_refused)
{
	struct x86_vcpu_state *s = sample_long(), *d = malloc(sizeof(*d));
	struct buf b = enc_vcpu(s);
	CHECK_EQ(dec_vcpu(b.p, b.len, 3, d), -EINVAL);
	CHECK(has(last_err, "version 3") && one_line(last_err));
	CHECK_EQ(dec_vcpu(b.p, b.len, 0, d), -EINVAL);
	free(b.p);
	free(s);
	free(d);
}

/* A nested state (a guest running its own VMs) rides along as KVM's blob;
 * a version 1 section (no nested field) still loads, with none. */
static void nested_fill(struct x86_vcpu_state *s, uint16_t format, uint16_t flags, uint32_t len)
{
	memset(s->nested, 0, sizeof(s->nested));
	struct kvm_nested_state h = {.flags = flags, .format = format, .size = len};
	memcpy(s->nested, &h, sizeof(h));
	for (uint32_t i = sizeof(h); i < len; i++)
		s->nested[i] = (uint8_t)(i * 7 + 3);
	s->nested_len = len;
}

TEST(vcpu_nested_state_roundtrip_and_version_1)
{
	struct x86_vcpu_state *s = sample_long(), *d = malloc(sizeof(*d));
	nested_fill(s, KVM_STATE_NESTED_FORMAT_SVM,
		    KVM_STATE_NESTED_GUEST_MODE | KVM_STATE_NESTED_GIF_SET, 128 + 4096);
	roundtrip_vcpu(s);
	struct buf b = enc_vcpu(s);
	CHECK_EQ(get_le32(b.p + o_nested(s)), 128 + 4096);
	CHECK_EQ(get_le32(b.p + o_nested(s) + 4 + 4), 128 + 4096); /* header.size */
	CHECK_EQ(b.p[o_nested(s) + 4 + 200], (uint8_t)(200 * 7 + 3));
	/* the same payload without the nested field is version 1 */
	CHECK_EQ(dec_vcpu(b.p, o_nested(s), 1, d), 0);
	CHECK_EQ(d->nested_len, 0);
	CHECK_EQ(d->regs.rax, s->regs.rax);
	/* ... and version 2 wants the field */
	CHECK_EQ(dec_vcpu(b.p, o_nested(s), 2, d), -EINVAL);
	free(b.p);
	free(s);
	free(d);
}

TEST(vcpu_nested_state_refusals)
{
	struct x86_vcpu_state *s = sample_long();
	char err[256];
	static const struct {
		uint16_t format, flags;
		uint32_t len, hdr_size;
		const char *want;
	} bad[] = {
		{1, 0, 64, 64, "nested state of 64 bytes"},
		{1, 0, X86_NESTED_MAX + 8, X86_NESTED_MAX + 8, "nested state of"},
		{1, 0, 4224, 4096, "header says 4096 bytes, 4224 saved"},
		{2, 0, 256, 256, "format 2 is neither VMX nor SVM"},
		{0, 0x10, 256, 256, "flags 0x10 has unknown bits"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint32_t fill = bad[i].len <= X86_NESTED_MAX ? bad[i].len : 128;
		nested_fill(s, bad[i].format, bad[i].flags, fill);
		s->nested_len = bad[i].len;
		struct kvm_nested_state h;
		memcpy(&h, s->nested, sizeof(h));
		h.size = bad[i].hdr_size;
		memcpy(s->nested, &h, sizeof(h));
		CHECK_EQ(x86_vcpu_state_validate(s, err, sizeof(err)), -EINVAL);
		CHECK(has(err, bad[i].want) && one_line(err));
		if (!has(err, bad[i].want))
			printf("  case %zu: %s\n", i, err);
	}
	/* an oversized length in a file is refused before any byte is read */
	nested_fill(s, 0, 0, 256);
	struct buf b = enc_vcpu(s);
	b.p[o_nested(s) + 2] = 0x10; /* length 0x100100 */
	struct x86_vcpu_state *d = malloc(sizeof(*d));
	CHECK_EQ(dec_vcpu(b.p, b.len, 2, d), -EINVAL);
	CHECK(has(last_err, "exceeds"));
	free(d);
	free(b.p);
	free(s);
}

TEST(vm_unknown_version_refused)
{
	struct x86_vm_state s, d;
	sample_vm(&s);
	struct buf b = enc_vm(&s);
	CHECK_EQ(dec_vm(b.p, b.len, 7, &d), -EINVAL);
	CHECK(has(last_err, "version 7") && one_line(last_err));
	free(b.p);
}

TEST(vcpu_truncated_at_every_length)
{
	struct x86_vcpu_state *samples[2] = {sample_long(), sample_pae()};
	struct x86_vcpu_state *d = malloc(sizeof(*d));
	for (int k = 0; k < 2; k++) {
		struct buf b = enc_vcpu(samples[k]);
		int bad = 0;
		for (size_t n = 0; n < b.len; n++) {
			int rc = dec_vcpu(b.p, n, X86_VCPU_STATE_VERSION, d);
			if (rc != -EINVAL || !strstr(last_err, "too short") || !one_line(last_err)) {
				if (!bad++)
					printf("  length %zu: rc %d \"%s\"\n", n, rc, last_err);
			}
		}
		CHECK_EQ(bad, 0);
		free(b.p);
		free(samples[k]);
	}
	free(d);
}

TEST(vm_truncated_at_every_length)
{
	struct x86_vm_state s, d;
	sample_vm(&s);
	struct buf b = enc_vm(&s);
	int bad = 0;
	for (size_t n = 0; n < b.len; n++) {
		int rc = dec_vm(b.p, n, X86_VM_STATE_VERSION, &d);
		if (rc != -EINVAL || !strstr(last_err, "too short") || !one_line(last_err))
			bad++;
	}
	CHECK_EQ(bad, 0);
	free(b.p);
}

TEST(trailing_bytes_refused)
{
	struct x86_vcpu_state *s = sample_long(), *d = malloc(sizeof(*d));
	struct buf b = enc_vcpu(s);
	uint8_t *longer = malloc(b.len + 3);
	memcpy(longer, b.p, b.len);
	memset(longer + b.len, 0, 3);
	for (size_t extra = 1; extra <= 3; extra++) {
		CHECK_EQ(dec_vcpu(longer, b.len + extra, X86_VCPU_STATE_VERSION, d), -EINVAL);
		CHECK(has(last_err, "unexpected bytes") && has(last_err, "vcpu.1"));
	}
	free(longer);
	free(b.p);
	struct x86_vm_state v, vd;
	sample_vm(&v);
	b = enc_vm(&v);
	longer = malloc(b.len + 1);
	memcpy(longer, b.p, b.len);
	longer[b.len] = 0;
	CHECK_EQ(dec_vm(longer, b.len + 1, X86_VM_STATE_VERSION, &vd), -EINVAL);
	CHECK(has(last_err, "unexpected bytes") && has(last_err, "vm"));
	free(longer);
	free(b.p);
	free(s);
	free(d);
}

/* ---- counts, checked before they size a read ----------------------------- */

/* The long sample's payload with the u32 at @off replaced by @v is
 * refused with a message containing @want. */
static bool patched_refused(size_t (*off)(const struct x86_vcpu_state *), size_t fixed,
			    uint32_t v, const char *want)
{
	struct x86_vcpu_state *s = sample_long(), *d = malloc(sizeof(*d));
	struct buf b = enc_vcpu(s);
	size_t at = off ? off(s) : fixed;
	put_le32(b.p + at, v);
	int rc = dec_vcpu(b.p, b.len, X86_VCPU_STATE_VERSION, d);
	bool ok = rc == -EINVAL && one_line(last_err) && has(last_err, want);
	free(b.p);
	free(s);
	free(d);
	return ok;
}

TEST(vcpu_refuses_xcr_count)
{
	CHECK(patched_refused(NULL, O_XCRS, 17, "vcpu.1: xcr count 17 exceeds 16"));
	CHECK(patched_refused(NULL, O_XCRS, 0xffffffff, "xcr count 4294967295 exceeds 16"));
}

TEST(vcpu_refuses_xsave_length_over_max)
{
	CHECK(patched_refused(o_xsave, 0, X86_XSAVE_MAX + 4, "xsave length 16388 exceeds 16384"));
}

TEST(vcpu_refuses_msr_count)
{
	CHECK(patched_refused(o_msrs, 0, 900, "vcpu.1: msr count 900 exceeds 256"));
}

TEST(vcpu_refuses_cpuid_count)
{
	CHECK(patched_refused(o_cpuid, 0, 257, "cpuid count 257 exceeds 256"));
}

/* ---- one test per vCPU rule ---------------------------------------------- */

/* @s (a mutated sample) is refused by validate and by decode, with -EINVAL
 * and one line naming "vcpu.N" and containing @want. */
static bool vcpu_refused(struct x86_vcpu_state *s, const char *want)
{
	char err[256], pre[32];
	snprintf(pre, sizeof(pre), "vcpu.%u: ", s->vcpu_id);
	int v = x86_vcpu_state_validate(s, err, sizeof(err));
	bool ok = v == -EINVAL && one_line(err) && has(err, want) && has(err, pre);
	struct x86_vcpu_state *d = malloc(sizeof(*d));
	struct buf b = enc_vcpu(s);
	int rc = dec_vcpu(b.p, b.len, X86_VCPU_STATE_VERSION, d);
	ok = ok && rc == -EINVAL && !strcmp(err, last_err);
	if (rc != -EINVAL)
		printf("  decode gave %d\n", rc);
	free(b.p);
	free(d);
	return ok;
}

#define VCPU_RULE(name, sample, want, ...)                      \
	TEST(vcpu_refuses_##name)                               \
	{                                                       \
		struct x86_vcpu_state *s = sample();            \
		__VA_ARGS__;                                    \
		CHECK(vcpu_refused(s, want));                   \
		free(s);                                        \
	}

VCPU_RULE(vcpu_id, sample_long, "vcpu id 4096 exceeds 4095", s->vcpu_id = X86_VCPU_ID_LIMIT)
VCPU_RULE(rflags_fixed_bit, sample_long, "bit 1", s->regs.rflags = 0x244)
VCPU_RULE(rflags_reserved, sample_long, "rflags 0x400246 has reserved bits 0x400000",
	  s->regs.rflags = 0x400246)
VCPU_RULE(segment_type, sample_long, "segment ds: type 16", s->sregs.ds.type = 16)
VCPU_RULE(segment_dpl, sample_long, "segment ss: dpl 4", s->sregs.ss.dpl = 4)
VCPU_RULE(segment_present, sample_long, "segment tr: present is 2", s->sregs.tr.present = 2)
VCPU_RULE(segment_flag, sample_long, "segment ldt: unusable is 7", s->sregs.ldt.unusable = 7)
VCPU_RULE(cr0_undefined_bits, sample_long, "cr0 0x80050073 has undefined bits 0x40",
	  s->sregs.cr0 |= 0x40)
VCPU_RULE(cr0_high_bits, sample_long, "undefined bits 0x100000000", s->sregs.cr0 |= 1ULL << 32)
VCPU_RULE(cr0_pg_without_pe, sample_pae, "paging (PG) without protected mode (PE)",
	  s->sregs.cr0 &= ~1ULL)
VCPU_RULE(cr0_nw_without_cd, sample_long, "NW without CD", s->sregs.cr0 |= 1ULL << 29)
VCPU_RULE(cr4_reserved, sample_long, "cr4 0x3746f0 has bits 0x4000 set that KVM never allows",
	  s->sregs.cr4 |= 1ULL << 14)
VCPU_RULE(efer_undefined, sample_long, "efer 0xd03 has undefined bits 0x2", s->sregs.efer |= 2)
VCPU_RULE(long_mode_without_pae, sample_long, "without cr4.PAE", s->sregs.cr4 &= ~0x20ULL)
VCPU_RULE(long_mode_without_lma, sample_long, "without efer.LMA", s->sregs.efer &= ~0x400ULL)
VCPU_RULE(lma_outside_long_mode, sample_pae, "efer.LMA set outside long mode",
	  s->sregs.efer |= 0x400)
VCPU_RULE(cs_l_outside_long_mode, sample_pae, "cs.l", s->sregs.cs.l = 1, s->sregs.cs.db = 0)
VCPU_RULE(cr3_reserved, sample_long, "cr3 0x800000000010a005 has reserved bits",
	  s->sregs.cr3 |= 1ULL << 63)
VCPU_RULE(cr8_range, sample_long, "cr8 16 exceeds 15", s->sregs.cr8 = 16)
VCPU_RULE(apic_base_reserved, sample_long, "apic_base 0xfee00a00 has reserved bits",
	  s->sregs.apic_base |= 0x200)
VCPU_RULE(apic_base_x2apic_disabled, sample_long, "x2APIC mode without the APIC enabled",
	  s->sregs.apic_base = 0xfee00400)
VCPU_RULE(interrupt_bitmap_two_bits, sample_long, "more than one pending interrupt",
	  s->sregs.interrupt_bitmap[3] = 1)
VCPU_RULE(interrupt_bitmap_vs_events, sample_long, "interrupt_bitmap holds vector 49 but events",
	  s->events.interrupt.nr = 0x32)
VCPU_RULE(sregs2_flags, sample_pae, "sregs2 flags 0x3 has unknown bits", s->sregs2_flags = 3)
VCPU_RULE(pdptrs_outside_pae, sample_long, "PDPTRs marked valid outside PAE paging",
	  s->sregs2_flags = KVM_SREGS2_FLAGS_PDPTRS_VALID)
VCPU_RULE(pdptr_reserved, sample_pae, "pdptr 2 0x4007 has reserved bits", s->pdptrs[2] = 0x4007)
VCPU_RULE(pdptrs_not_valid, sample_pae, "pdptr 0 is 0x2001 but not marked valid",
	  s->sregs2_flags = 0)
VCPU_RULE(xcrs_flags, sample_long, "xcrs flags 0x1, must be 0", s->xcrs.flags = 1)
VCPU_RULE(xcr_index, sample_long, "xcr 0: index 1 is not XCR0", s->xcrs.xcrs[0].xcr = 1)
VCPU_RULE(xcr_twice, sample_long, "xcr 1: XCR0 given twice", s->xcrs.nr_xcrs = 2,
	  s->xcrs.xcrs[1].value = 3)
VCPU_RULE(xcr0_without_x87, sample_long, "xcr0 0x6: x87 state is not enabled",
	  s->xcrs.xcrs[0].value = 6)
VCPU_RULE(xcr0_avx_without_sse, sample_long, "xcr0 0x5: AVX without SSE",
	  s->xcrs.xcrs[0].value = 5)
VCPU_RULE(xcr0_mpx_half, sample_long, "only one of the two MPX bits",
	  s->xcrs.xcrs[0].value = 0xf)
VCPU_RULE(xcr0_avx512_partial, sample_long, "AVX-512 bits incomplete",
	  s->xcrs.xcrs[0].value = 0x67)
VCPU_RULE(xcr0_avx512_without_avx, sample_long, "AVX-512 bits incomplete or without AVX",
	  s->xcrs.xcrs[0].value = 0xe3)
VCPU_RULE(xcr0_amx_half, sample_long, "only one of the two AMX bits",
	  s->xcrs.xcrs[0].value = 0x20007)
VCPU_RULE(xcr0_beyond_cpuid, sample_pae, "xcr0 0x7: features beyond CPUID leaf 0xD",
	  s->xcrs.xcrs[0].value = 7)
VCPU_RULE(xsave_length_short, sample_long, "xsave length 4092 is outside 4096..16384",
	  s->xsave_len = 4092)
VCPU_RULE(xsave_length_unaligned, sample_long, "xsave length 4098 is not a multiple of 4",
	  s->xsave_len = 4098)
VCPU_RULE(xsave_mxcsr, sample_long, "mxcsr 0x00011f80 has reserved bits",
	  put_le32(s->xsave + 24, 0x11f80))
VCPU_RULE(xsave_supervisor_bits, sample_long, "non-user feature bits 0x100",
	  put_le64(s->xsave + 512, 0x107))
VCPU_RULE(xsave_compacted, sample_long, "xcomp_bv 0x8000000000000007, must be 0",
	  put_le64(s->xsave + 520, 0x8000000000000007ULL))
VCPU_RULE(xsave_header_reserved, sample_long, "header reserved byte at offset 575",
	  s->xsave[575] = 1)
VCPU_RULE(xsave_feature_outside, sample_long,
	  "feature 2 (offset 3900, 256 bytes by CPUID) is outside the 4096-byte area",
	  s->cpuid[5].ebx = 3900)
VCPU_RULE(msr_twice, sample_long, "msr 0x10 is saved twice (entries 1 and 5)",
	  s->msrs[5].index = 0x10)
VCPU_RULE(events_flags, sample_long, "events flags 0x4f has unknown bits 0x40",
	  s->events.flags |= 0x40)
VCPU_RULE(events_bool, sample_long, "exception.injected is 2, must be 0 or 1",
	  s->events.exception.injected = 2)
VCPU_RULE(events_shadow_without_flag, sample_long, "interrupt.shadow is set but flag 0x4",
	  s->events.flags &= ~(uint32_t)KVM_VCPUEVENT_VALID_SHADOW)
VCPU_RULE(events_smi_without_flag, sample_long, "smi is set but flag 0x8",
	  s->events.flags &= ~(uint32_t)KVM_VCPUEVENT_VALID_SMM)
VCPU_RULE(events_nmi_without_flag, sample_long, "nmi.pending is set but flag 0x1",
	  s->events.flags &= ~(uint32_t)KVM_VCPUEVENT_VALID_NMI_PENDING)
VCPU_RULE(events_sipi_without_flag, sample_long, "sipi_vector is set but flag 0x2",
	  s->events.flags &= ~(uint32_t)KVM_VCPUEVENT_VALID_SIPI_VECTOR)
VCPU_RULE(events_pending_without_payload_flag, sample_pae, "exception.pending is set but flag 0x10",
	  s->events.flags &= ~(uint32_t)KVM_VCPUEVENT_VALID_PAYLOAD)
VCPU_RULE(events_triple_fault_without_flag, sample_long, "triple_fault.pending is set but flag 0x20",
	  s->events.triple_fault.pending = 1)
VCPU_RULE(events_exception_vector, sample_long, "exception vector 32 is not an exception",
	  s->events.exception.nr = 32)
VCPU_RULE(events_exception_nmi_vector, sample_pae, "exception vector 2 is not an exception",
	  s->events.exception.nr = 2)
VCPU_RULE(events_shadow_bits, sample_long, "interrupt.shadow 0x4 has unknown bits",
	  s->events.interrupt.shadow = 4)
VCPU_RULE(events_nmi_count, sample_long, "3 pending NMIs, at most 2", s->events.nmi.pending = 3)
VCPU_RULE(events_sipi_vector, sample_long, "sipi_vector 256 exceeds 255",
	  s->events.sipi_vector = 256)
VCPU_RULE(events_payload_without_has_payload, sample_pae,
	  "exception payload 0xdeadb000 without has_payload",
	  s->events.exception_has_payload = 0)
VCPU_RULE(events_reserved, sample_long, "events: reserved byte 25 is 0x80, must be 0",
	  s->events.reserved[25] = 0x80)
VCPU_RULE(mp_state, sample_long, "mp_state 9 is not an x86 state", s->mp_state.mp_state = 9)
VCPU_RULE(debugregs_flags, sample_long, "debugregs flags 0x1, must be 0", s->debugregs.flags = 1)
VCPU_RULE(dr6_high, sample_long, "dr6 0x1ffff0ff0 has bits 32-63 set",
	  s->debugregs.dr6 |= 1ULL << 32)
VCPU_RULE(dr7_high, sample_long, "dr7 0x8000000000000400 has bits 32-63 set",
	  s->debugregs.dr7 |= 1ULL << 63)
VCPU_RULE(debugregs_reserved, sample_long, "debugregs reserved[8] is 0x1, must be 0",
	  s->debugregs.reserved[8] = 1)
VCPU_RULE(tsc_khz_low, sample_long, "tsc_khz 999 is outside 1000..50000000", s->tsc_khz = 999)
VCPU_RULE(tsc_khz_high, sample_long, "tsc_khz 50000001 is outside", s->tsc_khz = X86_TSC_KHZ_MAX + 1)
VCPU_RULE(cpuid_flags, sample_long, "cpuid 00000007.0: flags 0x9 has unknown bits",
	  s->cpuid[2].flags |= 8)

/* A leaf given twice is what KVM handed back in the lab (its table for a
 * QEMU-TCG L1 CPU): KVM accepts such a table, so the state must load. */
TEST(vcpu_cpuid_leaf_twice_is_accepted)
{
	struct x86_vcpu_state *s = sample_long();
	cpuid_add(s, 0, 0, false, 0xd, 0, 0, 0);
	char e[256] = "";
	CHECK_EQ(x86_vcpu_state_validate(s, e, sizeof(e)), 0);
	if (e[0])
		printf("  %s\n", e);
	free(s);
}

/* ---- one test per VM rule ------------------------------------------------ */

static bool vm_refused(const struct x86_vm_state *s, const char *want)
{
	char err[256];
	int v = x86_vm_state_validate(s, err, sizeof(err));
	bool ok = v == -EINVAL && one_line(err) && has(err, want) && has(err, "vm: ");
	struct x86_vm_state d;
	struct buf b = enc_vm(s);
	int rc = dec_vm(b.p, b.len, X86_VM_STATE_VERSION, &d);
	ok = ok && rc == -EINVAL && !strcmp(err, last_err);
	free(b.p);
	return ok;
}

#define VM_RULE(name, want, ...)                \
	TEST(vm_refuses_##name)                 \
	{                                       \
		struct x86_vm_state s;          \
		sample_vm(&s);                  \
		__VA_ARGS__;                    \
		CHECK(vm_refused(&s, want));    \
	}

VM_RULE(pic_priority_add, "pic master: priority_add 8 exceeds 7", s.pic[0].priority_add = 8)
VM_RULE(pic_irq_base, "pic slave: irq_base 0x3c is not a multiple of 8", s.pic[1].irq_base = 0x3c)
VM_RULE(pic_init_state, "pic master: init_state 4 exceeds 3", s.pic[0].init_state = 4)
VM_RULE(pic_bool, "pic slave: special_fully_nested_mode is 2, must be 0 or 1",
	s.pic[1].special_fully_nested_mode = 2)
VM_RULE(pic_elcr, "pic master: elcr 0x01 outside elcr_mask 0xf8", s.pic[0].elcr = 1)
VM_RULE(ioapic_base, "ioapic: base address 0xfed00000 is not 0xfec00000",
	s.ioapic.base_address = 0xfed00000)
VM_RULE(ioapic_ioregsel, "ioapic: ioregsel 0x100 exceeds 0xff", s.ioapic.ioregsel = 0x100)
VM_RULE(ioapic_id, "ioapic: id 16 exceeds 15", s.ioapic.id = 16)
VM_RULE(ioapic_irr, "ioapic: irr 0x1000000 names pins beyond 23", s.ioapic.irr = 1u << 24)
VM_RULE(pit_count, "pit channel 0: count 65537 exceeds 65536", s.pit.channels[0].count = 0x10001)
VM_RULE(pit_count_latched, "pit channel 1: count_latched 4 exceeds 3",
	s.pit.channels[1].count_latched = 4)
VM_RULE(pit_status_latched, "pit channel 2: status_latched 2 exceeds 1",
	s.pit.channels[2].status_latched = 2)
VM_RULE(pit_read_state, "pit channel 0: read_state 5 exceeds 4", s.pit.channels[0].read_state = 5)
VM_RULE(pit_write_state, "pit channel 2: write_state 9 exceeds 4",
	s.pit.channels[2].write_state = 9)
VM_RULE(pit_rw_mode, "pit channel 1: rw_mode 4 exceeds 3", s.pit.channels[1].rw_mode = 4)
VM_RULE(pit_mode, "pit channel 0: mode 8 exceeds 7", s.pit.channels[0].mode = 8)
VM_RULE(pit_bcd, "pit channel 2: bcd 2 exceeds 1", s.pit.channels[2].bcd = 2)
VM_RULE(pit_gate, "pit channel 1: gate 3 exceeds 1", s.pit.channels[1].gate = 3)
VM_RULE(pit_flags, "pit: flags 0x6 has unknown bits", s.pit.flags = 6)
VM_RULE(pit_reserved, "pit: reserved[4] is 0x1, must be 0", s.pit.reserved[4] = 1)
VM_RULE(clock_flags, "kvmclock: flags 0x1e has unknown bits", s.clock_flags |= 0x10)
VM_RULE(clock_realtime, "kvmclock: realtime set without KVM_CLOCK_REALTIME",
	s.clock_flags &= ~(uint32_t)KVM_CLOCK_REALTIME)
VM_RULE(clock_host_tsc, "kvmclock: host_tsc set without KVM_CLOCK_HOST_TSC",
	s.clock_flags = KVM_CLOCK_REALTIME)

/* ---- pinned encodings ---------------------------------------------------- */

/*
 * The seeds of tests/fuzz/corpus-vcpu_state are the encodings of the
 * samples (one with a nested state); comparing them (and their CRC-32, also
 * when the corpus is not found) pins the version-2 byte layout: a change
 * that alters it must come with a new section version.
 * VISOR_VCPU_STATE_SEEDS=DIR writes them.
 */
TEST(seeds_are_the_v2_layout)
{
	struct x86_vcpu_state *sl = sample_long(), *sp = sample_pae(), *sn = sample_long();
	nested_fill(sn, KVM_STATE_NESTED_FORMAT_VMX, KVM_STATE_NESTED_GUEST_MODE, 128 + 8192);
	struct x86_vm_state vm;
	sample_vm(&vm);
	struct {
		const char *name;
		struct buf b;
		size_t len;
		uint32_t crc;
	} seeds[] = {
		{"vcpu-long", enc_vcpu(sl), 6155, 0xd5902294u},
		{"vcpu-pae", enc_vcpu(sp), 5891, 0x01532f8fu},
		{"vcpu-nested", enc_vcpu(sn), 6155 + 128 + 8192, 0x1efe48d1u},
		{"vm", enc_vm(&vm), VM_LEN, 0x64ef5db5u},
	};
	const char *out = getenv("VISOR_VCPU_STATE_SEEDS");
	const char *corpus = "tests/fuzz/corpus-vcpu_state";
	struct stat st;
	bool have = stat(corpus, &st) == 0 && S_ISDIR(st.st_mode);
	if (!out && !have)
		printf("  note: %s not found (not run from the repository root): not compared\n",
		       corpus);
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		struct buf b = seeds[i].b;
		uint32_t crc = snap_crc32(b.p, b.len);
		if (b.len != seeds[i].len || crc != seeds[i].crc)
			printf("  %s: %zu bytes, crc32 0x%08x\n", seeds[i].name, b.len, crc);
		CHECK_EQ(b.len, seeds[i].len);
		CHECK_EQ(crc, seeds[i].crc);
		char p[256];
		snprintf(p, sizeof(p), "%s/%s", out ? out : corpus, seeds[i].name);
		if (out) {
			FILE *o = fopen(p, "wb");
			CHECK(o != NULL);
			if (o) {
				CHECK_EQ(fwrite(b.p, 1, b.len, o), b.len);
				fclose(o);
			}
		} else if (have) {
			uint8_t *fb = NULL;
			size_t flen = 0;
			char err[256];
			int rc = snap_file_read(p, &fb, &flen, err, sizeof(err));
			CHECK_EQ(rc, 0);
			if (rc)
				printf("  %s: %s\n", p, err);
			CHECK(fb && flen == b.len && !memcmp(fb, b.p, b.len));
			free(fb);
		}
		free(b.p);
	}
	free(sl);
	free(sp);
	free(sn);
}

TEST_MAIN()
