/* SPDX-License-Identifier: MIT */
#include "vcpu_state.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../../util/bytes.h"
#include "../../util/str.h"

/* The byte layout depends on these uapi shapes (a header that changes them
 * must come with a new section version). */
_Static_assert(sizeof(struct kvm_lapic_state) == 1024, "LAPIC page");
_Static_assert(sizeof(((struct kvm_vcpu_events *)0)->reserved) == 26, "events reserved bytes");
_Static_assert(sizeof(((struct kvm_debugregs *)0)->reserved) == 9 * 8, "debugregs reserved");
_Static_assert(sizeof(((struct kvm_sregs *)0)->interrupt_bitmap) == 4 * 8, "interrupt bitmap");
_Static_assert(sizeof(struct kvm_xsave) == X86_XSAVE_MIN, "legacy XSAVE size");
_Static_assert(X86_XSAVE_MAX % 4 == 0 && X86_XSAVE_MAX <= UINT32_MAX, "xsave cap");
_Static_assert(sizeof(struct kvm_nested_state) == X86_NESTED_HDR, "nested state header");

#define NESTED_FLAGS_KNOWN                                                                   \
	(KVM_STATE_NESTED_GUEST_MODE | KVM_STATE_NESTED_RUN_PENDING | KVM_STATE_NESTED_EVMCS |   \
	 KVM_STATE_NESTED_MTF_PENDING | KVM_STATE_NESTED_GIF_SET)
#define MSR_IA32_FEATURE_CONTROL 0x3a

/* Architectural bits (Intel SDM vol. 3 2.5, AMD APM vol. 2 3.1). */
#define CR0_PE (1ULL << 0)
#define CR0_NW (1ULL << 29)
#define CR0_CD (1ULL << 30)
#define CR0_PG (1ULL << 31)
#define CR0_KNOWN 0xe005003fULL /* PE MP EM TS ET NE WP AM NW CD PG */
#define CR4_PAE (1ULL << 5)
/* What KVM lets a guest set: 0-13, FSGSBASE PCIDE OSXSAVE, SMEP SMAP PKE
 * CET PKS, LAM_SUP, FRED.  Never SMXE (14), KL (19), UINTR (25). */
#define CR4_KNOWN (0x3fffULL | 0x70000ULL | 0x1f00000ULL | (1ULL << 28) | (1ULL << 32))
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)
/* SCE LME LMA NXE SVME LMSLE FFXSR TCE AUTOIBRS */
#define EFER_KNOWN (0x1ULL | 0x100ULL | 0xfc00ULL | (1ULL << 21))
#define CR3_RESERVED 0x9ff0000000000000ULL /* 52-60, 63 (61/62 are LAM) */
#define APIC_BASE_RESERVED (0x2ffULL | 0xfff0000000000000ULL)
#define APIC_BASE_EXTD (1ULL << 10)
#define APIC_BASE_EN (1ULL << 11)
#define RFLAGS_FIXED (1ULL << 1)
#define RFLAGS_KNOWN 0x3f7fd7ULL
#define PDPTE_P 1ULL
#define PDPTE_RESERVED 0xfff00000000001e6ULL

/* XCR0 / XSTATE_BV feature bits */
#define XF_X87 (1ULL << 0)
#define XF_SSE (1ULL << 1)
#define XF_AVX (1ULL << 2)
#define XF_MPX (3ULL << 3)
#define XF_AVX512 (7ULL << 5)
#define XF_AMX (3ULL << 17)
/* user (XCR0) features: x87 SSE AVX MPX AVX-512 PKRU AMX APX */
#define XF_USER (0xffULL | (1ULL << 9) | XF_AMX | (1ULL << 19))

/* Offsets in the standard-format XSAVE image. */
enum {
	XS_MXCSR = 24,
	XS_XSTATE_BV = 512,
	XS_XCOMP_BV = 520,
	XS_HDR_RESERVED = 528,
	XS_HDR_END = 576,
};

#define EVENTS_KNOWN                                                                         \
	(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |                  \
	 KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD | \
	 KVM_VCPUEVENT_VALID_TRIPLE_FAULT)
#define SHADOW_KNOWN (KVM_X86_SHADOW_INT_MOV_SS | KVM_X86_SHADOW_INT_STI)
#define CPUID_FLAGS_KNOWN                                                \
	(KVM_CPUID_FLAG_SIGNIFCANT_INDEX | KVM_CPUID_FLAG_STATEFUL_FUNC | \
	 KVM_CPUID_FLAG_STATE_READ_NEXT)
#define NMI_VECTOR 2

/* MSR indices the restore order cares about */
#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MSR_KVM_ASYNC_PF_INT_ 0x4b564d06

/* Longest MSR index list taken from KVM (it lists a few hundred at most). */
#define MSR_LIST_CAP 4096
/* MSRs per KVM_GET_MSRS / KVM_SET_MSRS: KVM refuses 256 (MAX_IO_MSRS) or
 * more in one call with E2BIG. */
#define MSR_BATCH 128

static const char *const seg_names[8] = {"cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"};

#define SEGS(r) {&(r)->cs, &(r)->ds, &(r)->es, &(r)->fs, &(r)->gs, &(r)->ss, &(r)->tr, &(r)->ldt}

/* -EINVAL and "vcpu.ID: <message>" */
__attribute__((format(printf, 4, 5))) static int refuse(char *err, size_t errlen, uint32_t id,
							const char *fmt, ...)
{
	char msg[224];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(err, errlen, -EINVAL, "vcpu.%" PRIu32 ": %s", id, msg);
}

/* -errno of the failed @ioctl and "vcpu.ID: IOCTL failed: reason" */
static int sys_fail(char *err, size_t errlen, int id, const char *ioctl_name)
{
	int e = errno ? errno : EIO;
	return err_set(err, errlen, -e, "vcpu.%d: %s failed: %s", id, ioctl_name, strerror(e));
}

/* The entry for leaf @fn / subleaf @idx (subleaf ignored for entries
 * without the index flag), or NULL. */
static const struct kvm_cpuid_entry2 *leaf(const struct x86_vcpu_state *s, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < s->ncpuid && i < X86_CPUID_MAX; i++) {
		const struct kvm_cpuid_entry2 *e = &s->cpuid[i];
		if (e->function == fn &&
		    (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == idx))
			return e;
	}
	return NULL;
}

/* ---- validation ---------------------------------------------------------- */

static int check_bool(char *err, size_t errlen, uint32_t id, const char *name, uint8_t v)
{
	if (v > 1)
		return refuse(err, errlen, id, "%s is %u, must be 0 or 1", name, v);
	return 0;
}

static int check_segment(const struct kvm_segment *g, const char *name, uint32_t id, char *err,
			 size_t errlen)
{
	if (g->type > 15)
		return refuse(err, errlen, id, "segment %s: type %u exceeds 15", name, g->type);
	if (g->dpl > 3)
		return refuse(err, errlen, id, "segment %s: dpl %u exceeds 3", name, g->dpl);
	const struct {
		const char *n;
		uint8_t v;
	} flags[] = {{"present", g->present}, {"db", g->db}, {"s", g->s},
		     {"l", g->l}, {"g", g->g}, {"avl", g->avl}, {"unusable", g->unusable}};
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (flags[i].v > 1)
			return refuse(err, errlen, id, "segment %s: %s is %u, must be 0 or 1", name,
				      flags[i].n, flags[i].v);
	return 0;
}

static int check_sregs(const struct x86_vcpu_state *s, char *err, size_t errlen)
{
	const uint32_t id = s->vcpu_id;
	const struct kvm_sregs *r = &s->sregs;
	const struct kvm_segment *segs[8] = SEGS(r);
	for (int i = 0; i < 8; i++) {
		int rc = check_segment(segs[i], seg_names[i], id, err, errlen);
		if (rc)
			return rc;
	}
	if (r->cr0 & ~CR0_KNOWN)
		return refuse(err, errlen, id, "cr0 0x%llx has undefined bits 0x%llx set",
			      (unsigned long long)r->cr0, (unsigned long long)(r->cr0 & ~CR0_KNOWN));
	if ((r->cr0 & CR0_PG) && !(r->cr0 & CR0_PE))
		return refuse(err, errlen, id, "cr0 0x%llx: paging (PG) without protected mode (PE)",
			      (unsigned long long)r->cr0);
	if ((r->cr0 & CR0_NW) && !(r->cr0 & CR0_CD))
		return refuse(err, errlen, id, "cr0 0x%llx: NW without CD",
			      (unsigned long long)r->cr0);
	if (r->cr4 & ~CR4_KNOWN)
		return refuse(err, errlen, id, "cr4 0x%llx has bits 0x%llx set that KVM never allows",
			      (unsigned long long)r->cr4, (unsigned long long)(r->cr4 & ~CR4_KNOWN));
	if (r->efer & ~EFER_KNOWN)
		return refuse(err, errlen, id, "efer 0x%llx has undefined bits 0x%llx set",
			      (unsigned long long)r->efer, (unsigned long long)(r->efer & ~EFER_KNOWN));
	if ((r->efer & EFER_LME) && (r->cr0 & CR0_PG)) {
		if (!(r->cr4 & CR4_PAE))
			return refuse(err, errlen, id, "long mode (efer.LME, cr0.PG) without cr4.PAE");
		if (!(r->efer & EFER_LMA))
			return refuse(err, errlen, id, "long mode (efer.LME, cr0.PG) without efer.LMA");
	} else {
		if (r->efer & EFER_LMA)
			return refuse(err, errlen, id, "efer.LMA set outside long mode (efer 0x%llx, "
				      "cr0 0x%llx)",
				      (unsigned long long)r->efer, (unsigned long long)r->cr0);
		if (r->cs.l)
			return refuse(err, errlen, id, "64-bit code segment (cs.l) outside long mode");
	}
	if (r->cr3 & CR3_RESERVED)
		return refuse(err, errlen, id, "cr3 0x%llx has reserved bits set",
			      (unsigned long long)r->cr3);
	if (r->cr8 > 15)
		return refuse(err, errlen, id, "cr8 %llu exceeds 15", (unsigned long long)r->cr8);
	if (r->apic_base & APIC_BASE_RESERVED)
		return refuse(err, errlen, id, "apic_base 0x%llx has reserved bits set",
			      (unsigned long long)r->apic_base);
	if ((r->apic_base & APIC_BASE_EXTD) && !(r->apic_base & APIC_BASE_EN))
		return refuse(err, errlen, id, "apic_base 0x%llx: x2APIC mode without the APIC "
			      "enabled",
			      (unsigned long long)r->apic_base);
	int vec = -1;
	for (int w = 0; w < 4; w++) {
		uint64_t b = r->interrupt_bitmap[w];
		if (!b)
			continue;
		if (vec >= 0 || (b & (b - 1)))
			return refuse(err, errlen, id, "interrupt_bitmap has more than one pending "
				      "interrupt");
		vec = w * 64 + __builtin_ctzll(b);
	}
	if (vec >= 0 && (!s->events.interrupt.injected || s->events.interrupt.nr != vec))
		return refuse(err, errlen, id, "interrupt_bitmap holds vector %d but events %s",
			      vec, s->events.interrupt.injected ? "inject another" : "inject none");

	/* sregs2: KVM_SET_SREGS2 takes PDPTRs only in PAE paging */
	if (s->sregs2_flags & ~(uint64_t)KVM_SREGS2_FLAGS_PDPTRS_VALID)
		return refuse(err, errlen, id, "sregs2 flags 0x%llx has unknown bits",
			      (unsigned long long)s->sregs2_flags);
	if (s->sregs2_flags & KVM_SREGS2_FLAGS_PDPTRS_VALID) {
		if (!(r->cr0 & CR0_PG) || !(r->cr4 & CR4_PAE) || (r->efer & EFER_LMA))
			return refuse(err, errlen, id, "PDPTRs marked valid outside PAE paging");
		for (int i = 0; i < 4; i++)
			if ((s->pdptrs[i] & PDPTE_P) && (s->pdptrs[i] & PDPTE_RESERVED))
				return refuse(err, errlen, id, "pdptr %d 0x%llx has reserved bits set",
					      i, (unsigned long long)s->pdptrs[i]);
	} else {
		for (int i = 0; i < 4; i++)
			if (s->pdptrs[i])
				return refuse(err, errlen, id, "pdptr %d is 0x%llx but not marked "
					      "valid",
					      i, (unsigned long long)s->pdptrs[i]);
	}
	return 0;
}

static int check_xcrs(const struct x86_vcpu_state *s, char *err, size_t errlen)
{
	const uint32_t id = s->vcpu_id;
	const struct kvm_xcrs *x = &s->xcrs;
	if (x->nr_xcrs > KVM_MAX_XCRS)
		return refuse(err, errlen, id, "xcr count %" PRIu32 " exceeds %d", x->nr_xcrs,
			      KVM_MAX_XCRS);
	if (x->flags)
		return refuse(err, errlen, id, "xcrs flags 0x%" PRIx32 ", must be 0", x->flags);
	const struct kvm_cpuid_entry2 *d = leaf(s, 0xd, 0);
	uint64_t allowed = XF_X87 | (d ? (uint64_t)d->eax | (uint64_t)d->edx << 32 : 0);
	for (uint32_t i = 0; i < x->nr_xcrs; i++) {
		uint64_t v = x->xcrs[i].value;
		if (x->xcrs[i].xcr != 0)
			return refuse(err, errlen, id, "xcr %" PRIu32 ": index %" PRIu32 " is not XCR0",
				      i, x->xcrs[i].xcr);
		if (i > 0)
			return refuse(err, errlen, id, "xcr %" PRIu32 ": XCR0 given twice", i);
		const char *why = NULL;
		if (!(v & XF_X87))
			why = "x87 state is not enabled";
		else if ((v & XF_AVX) && !(v & XF_SSE))
			why = "AVX without SSE";
		else if ((v & XF_MPX) && (v & XF_MPX) != XF_MPX)
			why = "only one of the two MPX bits";
		else if ((v & XF_AVX512) && ((v & XF_AVX512) != XF_AVX512 || !(v & XF_AVX)))
			why = "AVX-512 bits incomplete or without AVX";
		else if ((v & XF_AMX) && (v & XF_AMX) != XF_AMX)
			why = "only one of the two AMX bits";
		else if (v & ~allowed)
			why = "features beyond CPUID leaf 0xD";
		if (why)
			return refuse(err, errlen, id, "xcr0 0x%llx: %s", (unsigned long long)v, why);
	}
	return 0;
}

static int check_xsave(const struct x86_vcpu_state *s, char *err, size_t errlen)
{
	const uint32_t id = s->vcpu_id;
	uint32_t len = s->xsave_len;
	if (len < X86_XSAVE_MIN || len > X86_XSAVE_MAX)
		return refuse(err, errlen, id, "xsave length %" PRIu32 " is outside %d..%d", len,
			      X86_XSAVE_MIN, X86_XSAVE_MAX);
	if (len % 4)
		return refuse(err, errlen, id, "xsave length %" PRIu32 " is not a multiple of 4", len);
	uint32_t mxcsr = get_le32(s->xsave + XS_MXCSR);
	if (mxcsr & 0xffff0000u)
		return refuse(err, errlen, id, "xsave: mxcsr 0x%08" PRIx32 " has reserved bits set",
			      mxcsr);
	uint64_t bv = get_le64(s->xsave + XS_XSTATE_BV);
	if (bv & ~XF_USER)
		return refuse(err, errlen, id, "xsave: xstate_bv 0x%llx has non-user feature bits "
			      "0x%llx",
			      (unsigned long long)bv, (unsigned long long)(bv & ~XF_USER));
	uint64_t comp = get_le64(s->xsave + XS_XCOMP_BV);
	if (comp)
		return refuse(err, errlen, id, "xsave: xcomp_bv 0x%llx, must be 0 (standard format)",
			      (unsigned long long)comp);
	for (int off = XS_HDR_RESERVED; off < XS_HDR_END; off++)
		if (s->xsave[off])
			return refuse(err, errlen, id, "xsave: header reserved byte at offset %d is "
				      "0x%02x, must be 0",
				      off, s->xsave[off]);
	for (uint32_t f = 2; f < 64; f++) {
		if (!(bv & (1ULL << f)))
			continue;
		const struct kvm_cpuid_entry2 *e = leaf(s, 0xd, f);
		if (!e || !e->eax)
			continue;
		if (e->ebx < XS_HDR_END || (uint64_t)e->ebx + e->eax > len)
			return refuse(err, errlen, id, "xsave: feature %" PRIu32 " (offset %" PRIu32
				      ", %" PRIu32 " bytes by CPUID) is outside the %" PRIu32
				      "-byte area",
				      f, e->ebx, e->eax, len);
	}
	return 0;
}

static int check_events(const struct x86_vcpu_state *s, char *err, size_t errlen)
{
	const uint32_t id = s->vcpu_id;
	const struct kvm_vcpu_events *e = &s->events;
	if (e->flags & ~(uint32_t)EVENTS_KNOWN)
		return refuse(err, errlen, id, "events flags 0x%" PRIx32 " has unknown bits 0x%" PRIx32,
			      e->flags, e->flags & ~(uint32_t)EVENTS_KNOWN);
	const struct {
		const char *n;
		uint8_t v;
	} bools[] = {
		{"exception.injected", e->exception.injected},
		{"exception.has_error_code", e->exception.has_error_code},
		{"exception.pending", e->exception.pending},
		{"interrupt.injected", e->interrupt.injected},
		{"interrupt.soft", e->interrupt.soft},
		{"nmi.injected", e->nmi.injected},
		{"nmi.masked", e->nmi.masked},
		{"smi.smm", e->smi.smm},
		{"smi.pending", e->smi.pending},
		{"smi.smm_inside_nmi", e->smi.smm_inside_nmi},
		{"smi.latched_init", e->smi.latched_init},
		{"triple_fault.pending", e->triple_fault.pending},
		{"exception_has_payload", e->exception_has_payload},
	};
	for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
		int rc = check_bool(err, errlen, id, bools[i].n, bools[i].v);
		if (rc)
			return rc;
	}
	/* a field whose validity flag is clear carries nothing */
	const struct {
		uint32_t flag;
		const char *n;
		uint64_t v;
	} flagged[] = {
		{KVM_VCPUEVENT_VALID_NMI_PENDING, "nmi.pending", e->nmi.pending},
		{KVM_VCPUEVENT_VALID_SIPI_VECTOR, "sipi_vector", e->sipi_vector},
		{KVM_VCPUEVENT_VALID_SHADOW, "interrupt.shadow", e->interrupt.shadow},
		{KVM_VCPUEVENT_VALID_SMM, "smi",
		 (uint64_t)e->smi.smm | e->smi.pending | e->smi.smm_inside_nmi | e->smi.latched_init},
		{KVM_VCPUEVENT_VALID_PAYLOAD, "exception.pending", e->exception.pending},
		{KVM_VCPUEVENT_VALID_PAYLOAD, "exception payload",
		 e->exception_has_payload | e->exception_payload},
		{KVM_VCPUEVENT_VALID_TRIPLE_FAULT, "triple_fault.pending", e->triple_fault.pending},
	};
	for (size_t i = 0; i < sizeof(flagged) / sizeof(flagged[0]); i++)
		if (!(e->flags & flagged[i].flag) && flagged[i].v)
			return refuse(err, errlen, id, "events: %s is set but flag 0x%" PRIx32
				      " does not mark it valid",
				      flagged[i].n, flagged[i].flag);
	if ((e->exception.injected || e->exception.pending) &&
	    (e->exception.nr > 31 || e->exception.nr == NMI_VECTOR))
		return refuse(err, errlen, id, "events: exception vector %u is not an exception "
			      "(0-31 except 2)",
			      e->exception.nr);
	if (e->interrupt.shadow & ~SHADOW_KNOWN)
		return refuse(err, errlen, id, "events: interrupt.shadow 0x%x has unknown bits",
			      e->interrupt.shadow);
	if (e->nmi.pending > 2)
		return refuse(err, errlen, id, "events: %u pending NMIs, at most 2", e->nmi.pending);
	if (e->sipi_vector > 0xff)
		return refuse(err, errlen, id, "events: sipi_vector %" PRIu32 " exceeds 255",
			      e->sipi_vector);
	if (!e->exception_has_payload && e->exception_payload)
		return refuse(err, errlen, id, "events: exception payload 0x%llx without "
			      "has_payload",
			      (unsigned long long)e->exception_payload);
	for (size_t i = 0; i < sizeof(e->reserved); i++)
		if (e->reserved[i])
			return refuse(err, errlen, id, "events: reserved byte %zu is 0x%02x, must be 0",
				      i, e->reserved[i]);
	return 0;
}

int x86_vcpu_state_validate(const struct x86_vcpu_state *s, char *err, size_t errlen)
{
	const uint32_t id = s->vcpu_id;
	if (id >= X86_VCPU_ID_LIMIT)
		return refuse(err, errlen, id, "vcpu id %" PRIu32 " exceeds %d", id,
			      X86_VCPU_ID_LIMIT - 1);
	uint64_t fl = s->regs.rflags;
	if (!(fl & RFLAGS_FIXED))
		return refuse(err, errlen, id, "rflags 0x%llx: bit 1 (always 1) is clear",
			      (unsigned long long)fl);
	if (fl & ~RFLAGS_KNOWN)
		return refuse(err, errlen, id, "rflags 0x%llx has reserved bits 0x%llx set",
			      (unsigned long long)fl, (unsigned long long)(fl & ~RFLAGS_KNOWN));
	int rc;
	if ((rc = check_sregs(s, err, errlen)) || (rc = check_xcrs(s, err, errlen)) ||
	    (rc = check_xsave(s, err, errlen)))
		return rc;
	if (s->nmsrs > X86_MSR_MAX)
		return refuse(err, errlen, id, "msr count %" PRIu32 " exceeds %d", s->nmsrs,
			      X86_MSR_MAX);
	for (uint32_t i = 0; i < s->nmsrs; i++)
		for (uint32_t j = 0; j < i; j++)
			if (s->msrs[i].index == s->msrs[j].index)
				return refuse(err, errlen, id, "msr 0x%" PRIx32 " is saved twice "
					      "(entries %" PRIu32 " and %" PRIu32 ")",
					      s->msrs[i].index, j, i);
	if ((rc = check_events(s, err, errlen)))
		return rc;
	switch (s->mp_state.mp_state) {
	case KVM_MP_STATE_RUNNABLE:
	case KVM_MP_STATE_UNINITIALIZED:
	case KVM_MP_STATE_INIT_RECEIVED:
	case KVM_MP_STATE_HALTED:
	case KVM_MP_STATE_SIPI_RECEIVED:
		break;
	default:
		return refuse(err, errlen, id, "mp_state %" PRIu32 " is not an x86 state",
			      s->mp_state.mp_state);
	}
	const struct kvm_debugregs *d = &s->debugregs;
	if (d->flags)
		return refuse(err, errlen, id, "debugregs flags 0x%llx, must be 0",
			      (unsigned long long)d->flags);
	if (d->dr6 >> 32 || d->dr7 >> 32)
		return refuse(err, errlen, id, "%s 0x%llx has bits 32-63 set",
			      d->dr6 >> 32 ? "dr6" : "dr7",
			      (unsigned long long)(d->dr6 >> 32 ? d->dr6 : d->dr7));
	for (int i = 0; i < 9; i++)
		if (d->reserved[i])
			return refuse(err, errlen, id, "debugregs reserved[%d] is 0x%llx, must be 0", i,
				      (unsigned long long)d->reserved[i]);
	if (s->tsc_khz && (s->tsc_khz < X86_TSC_KHZ_MIN || s->tsc_khz > X86_TSC_KHZ_MAX))
		return refuse(err, errlen, id, "tsc_khz %" PRIu32 " is outside %d..%d", s->tsc_khz,
			      X86_TSC_KHZ_MIN, X86_TSC_KHZ_MAX);
	if (s->ncpuid > X86_CPUID_MAX)
		return refuse(err, errlen, id, "cpuid count %" PRIu32 " exceeds %d", s->ncpuid,
			      X86_CPUID_MAX);
	for (uint32_t i = 0; i < s->ncpuid; i++) {
		const struct kvm_cpuid_entry2 *a = &s->cpuid[i];
		if (a->flags & ~(uint32_t)CPUID_FLAGS_KNOWN)
			return refuse(err, errlen, id,
				      "cpuid %08" PRIx32 ".%" PRIu32 ": flags 0x%" PRIx32
				      " has unknown bits",
				      a->function, a->index, a->flags);
		/* duplicates are not refused: KVM accepts them (it uses the
		 * first match) and reports back exactly the table it was
		 * given, so a table a VM runs with must load again */
	}
	if (s->nested_len) {
		struct kvm_nested_state h;
		if (s->nested_len < X86_NESTED_HDR || s->nested_len > X86_NESTED_MAX)
			return refuse(err, errlen, id, "nested state of %" PRIu32 " bytes (0 or %d..%d)",
				      s->nested_len, X86_NESTED_HDR, X86_NESTED_MAX);
		memcpy(&h, s->nested, sizeof(h));
		if (h.size != s->nested_len)
			return refuse(err, errlen, id, "nested state header says %" PRIu32
				      " bytes, %" PRIu32 " saved", h.size, s->nested_len);
		if (h.format != KVM_STATE_NESTED_FORMAT_VMX && h.format != KVM_STATE_NESTED_FORMAT_SVM)
			return refuse(err, errlen, id, "nested state format %u is neither VMX nor SVM",
				      (unsigned)h.format);
		if (h.flags & ~(unsigned)NESTED_FLAGS_KNOWN)
			return refuse(err, errlen, id, "nested state flags 0x%x has unknown bits",
				      (unsigned)h.flags);
	}
	return 0;
}

/* ---- encoding ------------------------------------------------------------ */

static void put_segment(struct snap_writer *w, const struct kvm_segment *g)
{
	snap_put_u64(w, g->base);
	snap_put_u32(w, g->limit);
	snap_put_u16(w, g->selector);
	snap_put_u8(w, g->type);
	snap_put_u8(w, g->present);
	snap_put_u8(w, g->dpl);
	snap_put_u8(w, g->db);
	snap_put_u8(w, g->s);
	snap_put_u8(w, g->l);
	snap_put_u8(w, g->g);
	snap_put_u8(w, g->avl);
	snap_put_u8(w, g->unusable);
}

static void get_segment(struct snap_cursor *c, struct kvm_segment *g)
{
	g->base = snap_get_u64(c);
	g->limit = snap_get_u32(c);
	g->selector = snap_get_u16(c);
	g->type = snap_get_u8(c);
	g->present = snap_get_u8(c);
	g->dpl = snap_get_u8(c);
	g->db = snap_get_u8(c);
	g->s = snap_get_u8(c);
	g->l = snap_get_u8(c);
	g->g = snap_get_u8(c);
	g->avl = snap_get_u8(c);
	g->unusable = snap_get_u8(c);
}

/* The general-purpose registers in layout order. */
#define REGS(r)                                                                                \
	{&(r)->rax, &(r)->rbx, &(r)->rcx, &(r)->rdx, &(r)->rsi, &(r)->rdi, &(r)->rsp, &(r)->rbp, \
	 &(r)->r8, &(r)->r9, &(r)->r10, &(r)->r11, &(r)->r12, &(r)->r13, &(r)->r14, &(r)->r15,  \
	 &(r)->rip, &(r)->rflags}

void x86_vcpu_state_encode(const struct x86_vcpu_state *s, struct snap_writer *w)
{
	snap_put_u32(w, s->vcpu_id);
	const __u64 *regs[18] = REGS(&s->regs);
	for (int i = 0; i < 18; i++)
		snap_put_u64(w, *regs[i]);

	const struct kvm_sregs *r = &s->sregs;
	const struct kvm_segment *segs[8] = SEGS(r);
	for (int i = 0; i < 8; i++)
		put_segment(w, segs[i]);
	snap_put_u64(w, r->gdt.base);
	snap_put_u16(w, r->gdt.limit);
	snap_put_u64(w, r->idt.base);
	snap_put_u16(w, r->idt.limit);
	snap_put_u64(w, r->cr0);
	snap_put_u64(w, r->cr2);
	snap_put_u64(w, r->cr3);
	snap_put_u64(w, r->cr4);
	snap_put_u64(w, r->cr8);
	snap_put_u64(w, r->efer);
	snap_put_u64(w, r->apic_base);
	for (int i = 0; i < 4; i++)
		snap_put_u64(w, r->interrupt_bitmap[i]);
	snap_put_u64(w, s->sregs2_flags);
	for (int i = 0; i < 4; i++)
		snap_put_u64(w, s->pdptrs[i]);

	uint32_t nx = s->xcrs.nr_xcrs < KVM_MAX_XCRS ? s->xcrs.nr_xcrs : KVM_MAX_XCRS;
	snap_put_u32(w, nx);
	snap_put_u32(w, s->xcrs.flags);
	for (uint32_t i = 0; i < nx; i++) {
		snap_put_u32(w, s->xcrs.xcrs[i].xcr);
		snap_put_u64(w, s->xcrs.xcrs[i].value);
	}

	uint32_t xl = s->xsave_len < X86_XSAVE_MAX ? s->xsave_len : X86_XSAVE_MAX;
	snap_put_u32(w, xl);
	snap_put_bytes(w, s->xsave, xl);
	snap_put_bytes(w, s->lapic.regs, sizeof(s->lapic.regs));

	uint32_t nm = s->nmsrs < X86_MSR_MAX ? s->nmsrs : X86_MSR_MAX;
	snap_put_u32(w, nm);
	for (uint32_t i = 0; i < nm; i++) {
		snap_put_u32(w, s->msrs[i].index);
		snap_put_u64(w, s->msrs[i].data);
	}

	const struct kvm_vcpu_events *e = &s->events;
	snap_put_u8(w, e->exception.injected);
	snap_put_u8(w, e->exception.nr);
	snap_put_u8(w, e->exception.has_error_code);
	snap_put_u8(w, e->exception.pending);
	snap_put_u32(w, e->exception.error_code);
	snap_put_u8(w, e->interrupt.injected);
	snap_put_u8(w, e->interrupt.nr);
	snap_put_u8(w, e->interrupt.soft);
	snap_put_u8(w, e->interrupt.shadow);
	snap_put_u8(w, e->nmi.injected);
	snap_put_u8(w, e->nmi.pending);
	snap_put_u8(w, e->nmi.masked);
	snap_put_u32(w, e->sipi_vector);
	snap_put_u32(w, e->flags);
	snap_put_u8(w, e->smi.smm);
	snap_put_u8(w, e->smi.pending);
	snap_put_u8(w, e->smi.smm_inside_nmi);
	snap_put_u8(w, e->smi.latched_init);
	snap_put_u8(w, e->triple_fault.pending);
	snap_put_bytes(w, e->reserved, sizeof(e->reserved));
	snap_put_u8(w, e->exception_has_payload);
	snap_put_u64(w, e->exception_payload);

	snap_put_u32(w, s->mp_state.mp_state);

	const struct kvm_debugregs *d = &s->debugregs;
	for (int i = 0; i < 4; i++)
		snap_put_u64(w, d->db[i]);
	snap_put_u64(w, d->dr6);
	snap_put_u64(w, d->dr7);
	snap_put_u64(w, d->flags);
	for (int i = 0; i < 9; i++)
		snap_put_u64(w, d->reserved[i]);

	snap_put_u32(w, s->tsc_khz);

	uint32_t nc = s->ncpuid < X86_CPUID_MAX ? s->ncpuid : X86_CPUID_MAX;
	snap_put_u32(w, nc);
	for (uint32_t i = 0; i < nc; i++) {
		const struct kvm_cpuid_entry2 *c = &s->cpuid[i];
		snap_put_u32(w, c->function);
		snap_put_u32(w, c->index);
		snap_put_u32(w, c->flags);
		snap_put_u32(w, c->eax);
		snap_put_u32(w, c->ebx);
		snap_put_u32(w, c->ecx);
		snap_put_u32(w, c->edx);
	}
	uint32_t nl = s->nested_len <= X86_NESTED_MAX ? s->nested_len : 0;
	snap_put_u32(w, nl);
	snap_put_bytes(w, s->nested, nl);
}

int x86_vcpu_state_decode(struct snap_cursor *c, uint32_t version, struct x86_vcpu_state *s,
			  char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	if (err && errlen)
		err[0] = 0;
	if (version != 1 && version != X86_VCPU_STATE_VERSION)
		return err_set(err, errlen, -EINVAL,
			       "vcpu: state version %" PRIu32 " (this visor reads 1 and %d)", version,
			       X86_VCPU_STATE_VERSION);
	s->vcpu_id = snap_get_u32(c);
	bool have_id = !c->overrun;
	const uint32_t id = s->vcpu_id;
	__u64 *regs[18] = REGS(&s->regs);
	for (int i = 0; i < 18; i++)
		*regs[i] = snap_get_u64(c);

	struct kvm_sregs *r = &s->sregs;
	struct kvm_segment *segs[8] = SEGS(r);
	for (int i = 0; i < 8; i++)
		get_segment(c, segs[i]);
	r->gdt.base = snap_get_u64(c);
	r->gdt.limit = snap_get_u16(c);
	r->idt.base = snap_get_u64(c);
	r->idt.limit = snap_get_u16(c);
	r->cr0 = snap_get_u64(c);
	r->cr2 = snap_get_u64(c);
	r->cr3 = snap_get_u64(c);
	r->cr4 = snap_get_u64(c);
	r->cr8 = snap_get_u64(c);
	r->efer = snap_get_u64(c);
	r->apic_base = snap_get_u64(c);
	for (int i = 0; i < 4; i++)
		r->interrupt_bitmap[i] = snap_get_u64(c);
	s->sregs2_flags = snap_get_u64(c);
	for (int i = 0; i < 4; i++)
		s->pdptrs[i] = snap_get_u64(c);

	/* counts are checked as soon as they are read: they size the reads */
	s->xcrs.nr_xcrs = snap_get_u32(c);
	if (s->xcrs.nr_xcrs > KVM_MAX_XCRS)
		return refuse(err, errlen, id, "xcr count %" PRIu32 " exceeds %d", s->xcrs.nr_xcrs,
			      KVM_MAX_XCRS);
	s->xcrs.flags = snap_get_u32(c);
	for (uint32_t i = 0; i < s->xcrs.nr_xcrs; i++) {
		s->xcrs.xcrs[i].xcr = snap_get_u32(c);
		s->xcrs.xcrs[i].value = snap_get_u64(c);
	}

	s->xsave_len = snap_get_u32(c);
	if (s->xsave_len > X86_XSAVE_MAX)
		return refuse(err, errlen, id, "xsave length %" PRIu32 " exceeds %d", s->xsave_len,
			      X86_XSAVE_MAX);
	snap_get_bytes(c, s->xsave, s->xsave_len);
	snap_get_bytes(c, s->lapic.regs, sizeof(s->lapic.regs));

	s->nmsrs = snap_get_u32(c);
	if (s->nmsrs > X86_MSR_MAX)
		return refuse(err, errlen, id, "msr count %" PRIu32 " exceeds %d", s->nmsrs,
			      X86_MSR_MAX);
	for (uint32_t i = 0; i < s->nmsrs; i++) {
		s->msrs[i].index = snap_get_u32(c);
		s->msrs[i].data = snap_get_u64(c);
	}

	struct kvm_vcpu_events *e = &s->events;
	e->exception.injected = snap_get_u8(c);
	e->exception.nr = snap_get_u8(c);
	e->exception.has_error_code = snap_get_u8(c);
	e->exception.pending = snap_get_u8(c);
	e->exception.error_code = snap_get_u32(c);
	e->interrupt.injected = snap_get_u8(c);
	e->interrupt.nr = snap_get_u8(c);
	e->interrupt.soft = snap_get_u8(c);
	e->interrupt.shadow = snap_get_u8(c);
	e->nmi.injected = snap_get_u8(c);
	e->nmi.pending = snap_get_u8(c);
	e->nmi.masked = snap_get_u8(c);
	e->sipi_vector = snap_get_u32(c);
	e->flags = snap_get_u32(c);
	e->smi.smm = snap_get_u8(c);
	e->smi.pending = snap_get_u8(c);
	e->smi.smm_inside_nmi = snap_get_u8(c);
	e->smi.latched_init = snap_get_u8(c);
	e->triple_fault.pending = snap_get_u8(c);
	snap_get_bytes(c, e->reserved, sizeof(e->reserved));
	e->exception_has_payload = snap_get_u8(c);
	e->exception_payload = snap_get_u64(c);

	s->mp_state.mp_state = snap_get_u32(c);

	struct kvm_debugregs *d = &s->debugregs;
	for (int i = 0; i < 4; i++)
		d->db[i] = snap_get_u64(c);
	d->dr6 = snap_get_u64(c);
	d->dr7 = snap_get_u64(c);
	d->flags = snap_get_u64(c);
	for (int i = 0; i < 9; i++)
		d->reserved[i] = snap_get_u64(c);

	s->tsc_khz = snap_get_u32(c);

	s->ncpuid = snap_get_u32(c);
	if (s->ncpuid > X86_CPUID_MAX)
		return refuse(err, errlen, id, "cpuid count %" PRIu32 " exceeds %d", s->ncpuid,
			      X86_CPUID_MAX);
	for (uint32_t i = 0; i < s->ncpuid; i++) {
		struct kvm_cpuid_entry2 *ce = &s->cpuid[i];
		ce->function = snap_get_u32(c);
		ce->index = snap_get_u32(c);
		ce->flags = snap_get_u32(c);
		ce->eax = snap_get_u32(c);
		ce->ebx = snap_get_u32(c);
		ce->ecx = snap_get_u32(c);
		ce->edx = snap_get_u32(c);
	}
	if (version >= 2) {
		s->nested_len = snap_get_u32(c);
		if (s->nested_len > X86_NESTED_MAX)
			return refuse(err, errlen, id, "nested state of %" PRIu32 " bytes exceeds %d",
				      s->nested_len, X86_NESTED_MAX);
		snap_get_bytes(c, s->nested, s->nested_len);
	}

	char what[32];
	if (have_id)
		snprintf(what, sizeof(what), "vcpu.%" PRIu32, id);
	else
		snprintf(what, sizeof(what), "vcpu");
	int rc = snap_cursor_done(c, what, err, errlen);
	if (rc)
		return rc;
	return x86_vcpu_state_validate(s, err, errlen);
}

/* ---- KVM ----------------------------------------------------------------- */

/* KVM_CHECK_EXTENSION on the VM fd (some answers, e.g. KVM_CAP_XSAVE2's
 * size, are per VM), falling back to /dev/kvm on kernels without
 * KVM_CAP_CHECK_EXTENSION_VM. */
static int vm_cap(struct kvm *k, long cap)
{
	int r = ioctl(k->vm_fd, KVM_CHECK_EXTENSION, cap);
	if (r < 0)
		r = kvm_check_cap(k, cap);
	return r < 0 ? 0 : r;
}

/* Append KVM's MSR list @req (a system ioctl) to idx[*n..], skipping
 * indices already there.  0 or -errno. */
static int add_msr_list(struct kvm *k, unsigned long req, uint32_t **idx, uint32_t *n)
{
	struct kvm_msr_list probe = {.nmsrs = 0};
	if (ioctl(k->fd, req, &probe) < 0 && errno != E2BIG)
		return -errno;
	uint32_t cnt = probe.nmsrs;
	if (!cnt)
		return 0;
	if (cnt > MSR_LIST_CAP)
		return -E2BIG;
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + (size_t)cnt * sizeof(uint32_t));
	uint32_t *grown = realloc(*idx, ((size_t)*n + cnt) * sizeof(uint32_t));
	if (!l || !grown) {
		free(l);
		if (grown)
			*idx = grown;
		return -ENOMEM;
	}
	*idx = grown;
	l->nmsrs = cnt;
	if (ioctl(k->fd, req, l) < 0) {
		int e = errno;
		free(l);
		return -e;
	}
	uint32_t have = *n;
	for (uint32_t i = 0; i < l->nmsrs && i < cnt; i++) {
		bool dup = false;
		for (uint32_t j = 0; j < *n && !dup; j++)
			dup = grown[j] == l->indices[i];
		if (!dup && *n < have + cnt)
			grown[(*n)++] = l->indices[i];
	}
	free(l);
	return 0;
}

/* Read every MSR KVM lists that the vCPU lets it read. */
static int get_msrs(struct kvm *k, struct kvm_vcpu *v, struct x86_vcpu_state *s, char *err,
		    size_t errlen)
{
	uint32_t *idx = NULL, n = 0;
	int r = add_msr_list(k, KVM_GET_MSR_INDEX_LIST, &idx, &n);
	if (r) {
		free(idx);
		return err_set(err, errlen, r, "vcpu.%d: KVM_GET_MSR_INDEX_LIST failed: %s", v->id,
			       strerror(-r));
	}
	if (kvm_check_cap(k, KVM_CAP_GET_MSR_FEATURES) > 0 &&
	    (r = add_msr_list(k, KVM_GET_MSR_FEATURE_INDEX_LIST, &idx, &n))) {
		free(idx);
		return err_set(err, errlen, r, "vcpu.%d: KVM_GET_MSR_FEATURE_INDEX_LIST failed: %s",
			       v->id, strerror(-r));
	}
	struct kvm_msrs *m = calloc(1, sizeof(*m) + (size_t)(n ? n : 1) * sizeof(struct kvm_msr_entry));
	if (!m) {
		free(idx);
		return err_set(err, errlen, -ENOMEM, "vcpu.%d: out of memory reading MSRs", v->id);
	}
	/* KVM_GET_MSRS stops at the first MSR it cannot read and returns how
	 * many it read: keep those, skip that one, ask again for the rest. */
	uint32_t at = 0;
	s->nmsrs = 0;
	r = 0;
	while (at < n && !r) {
		uint32_t want = n - at < MSR_BATCH ? n - at : MSR_BATCH;
		memset(m, 0, sizeof(*m) + (size_t)want * sizeof(struct kvm_msr_entry));
		m->nmsrs = want;
		for (uint32_t i = 0; i < want; i++)
			m->entries[i].index = idx[at + i];
		int got = ioctl(v->fd, KVM_GET_MSRS, m);
		if (got < 0) {
			r = sys_fail(err, errlen, v->id, "KVM_GET_MSRS");
			break;
		}
		if ((uint32_t)got > want)
			got = (int)want;
		for (int i = 0; i < got; i++) {
			if (s->nmsrs >= X86_MSR_MAX) {
				r = err_set(err, errlen, -E2BIG,
					    "vcpu.%d: KVM reads more than %d MSRs; visor keeps at most "
					    "%d",
					    v->id, X86_MSR_MAX, X86_MSR_MAX);
				break;
			}
			s->msrs[s->nmsrs].index = m->entries[i].index;
			s->msrs[s->nmsrs].reserved = 0;
			s->msrs[s->nmsrs].data = m->entries[i].data;
			s->nmsrs++;
		}
		at += (uint32_t)got;
		if ((uint32_t)got < want)
			at++; /* past the refused one */
	}
	free(m);
	free(idx);
	return r;
}

/* The nested state, when the guest uses VMX or SVM itself (see the
 * header); nested_len stays 0 otherwise or without KVM_CAP_NESTED_STATE. */
static int get_nested(struct kvm *k, struct kvm_vcpu *v, struct x86_vcpu_state *s, char *err,
		      size_t errlen)
{
	int max = vm_cap(k, KVM_CAP_NESTED_STATE);
	if (max <= 0)
		return 0;
	if (max < X86_NESTED_HDR || max > X86_NESTED_MAX)
		return err_set(err, errlen, -ENOTSUP,
			       "vcpu.%d: KVM's nested state takes up to %d bytes, visor keeps %d",
			       v->id, max, X86_NESTED_MAX);
	struct kvm_nested_state *h = (struct kvm_nested_state *)(void *)s->nested;
	memset(s->nested, 0, sizeof(s->nested));
	h->size = (uint32_t)max;
	if (ioctl(v->fd, KVM_GET_NESTED_STATE, h) < 0)
		return sys_fail(err, errlen, v->id, "KVM_GET_NESTED_STATE");
	bool in_use;
	if (h->format == KVM_STATE_NESTED_FORMAT_VMX)
		in_use = h->hdr.vmx.vmxon_pa != (uint64_t)-1 ||
			 (h->flags & KVM_STATE_NESTED_GUEST_MODE);
	else
		in_use = (h->flags & KVM_STATE_NESTED_GUEST_MODE) ||
			 !(h->flags & KVM_STATE_NESTED_GIF_SET);
	if (!in_use || h->size < X86_NESTED_HDR || h->size > (uint32_t)max) {
		memset(s->nested, 0, sizeof(s->nested));
		return 0;
	}
	s->nested_len = h->size;
	return 0;
}

int x86_vcpu_state_get(struct kvm *k, struct kvm_vcpu *v, struct x86_vcpu_state *s, char *err,
		       size_t errlen)
{
	memset(s, 0, sizeof(*s));
	if (err && errlen)
		err[0] = 0;
	if (v->id < 0 || v->id >= X86_VCPU_ID_LIMIT)
		return err_set(err, errlen, -EINVAL, "vcpu.%d: id out of range", v->id);
	s->vcpu_id = (uint32_t)v->id;
	errno = 0;
	/* These two first: reading the MP state makes KVM accept a pending
	 * INIT or SIPI (which resets or moves the registers), and reading the
	 * events delivers a pending exception's payload into CR2 or DR6
	 * (without KVM_CAP_EXCEPTION_PAYLOAD).  The registers read afterwards
	 * are then consistent with them. */
	if (ioctl(v->fd, KVM_GET_MP_STATE, &s->mp_state) < 0)
		return sys_fail(err, errlen, v->id, "KVM_GET_MP_STATE");
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &s->events) < 0)
		return sys_fail(err, errlen, v->id, "KVM_GET_VCPU_EVENTS");
	s->events.nmi.pad = 0;
	if (ioctl(v->fd, KVM_GET_REGS, &s->regs) < 0)
		return sys_fail(err, errlen, v->id, "KVM_GET_REGS");
	if (ioctl(v->fd, KVM_GET_SREGS, &s->sregs) < 0)
		return sys_fail(err, errlen, v->id, "KVM_GET_SREGS");
	if (kvm_check_cap(k, KVM_CAP_SREGS2) > 0) {
		struct kvm_sregs2 s2;
		memset(&s2, 0, sizeof(s2));
		if (ioctl(v->fd, KVM_GET_SREGS2, &s2) < 0)
			return sys_fail(err, errlen, v->id, "KVM_GET_SREGS2");
		if (s2.flags & KVM_SREGS2_FLAGS_PDPTRS_VALID) {
			s->sregs2_flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
			memcpy(s->pdptrs, s2.pdptrs, sizeof(s->pdptrs));
		}
	}
	/* alignment padding carries nothing; keep it 0 */
	struct kvm_segment *segs[8] = SEGS(&s->sregs);
	for (int i = 0; i < 8; i++)
		segs[i]->padding = 0;
	memset(s->sregs.gdt.padding, 0, sizeof(s->sregs.gdt.padding));
	memset(s->sregs.idt.padding, 0, sizeof(s->sregs.idt.padding));

	/* KVM_GET_XSAVE works on every x86-64 KVM (the legacy FXSAVE area
	 * and header when the host has no XSAVE); KVM_GET_XSAVE2 when the
	 * state can be larger than 4096 bytes */
	int xs = vm_cap(k, KVM_CAP_XSAVE2);
	if (xs > 0) {
		if (xs > X86_XSAVE_MAX)
			return err_set(err, errlen, -E2BIG,
				       "vcpu.%d: the XSAVE state is %d bytes (KVM_CAP_XSAVE2), visor "
				       "keeps at most %d",
				       v->id, xs, X86_XSAVE_MAX);
		if (xs < X86_XSAVE_MIN)
			xs = X86_XSAVE_MIN;
		/* KVM writes exactly xs bytes, all inside s->xsave */
		if (ioctl(v->fd, KVM_GET_XSAVE2, s->xsave) < 0)
			return sys_fail(err, errlen, v->id, "KVM_GET_XSAVE2");
		s->xsave_len = (uint32_t)xs;
	} else {
		if (ioctl(v->fd, KVM_GET_XSAVE, s->xsave) < 0)
			return sys_fail(err, errlen, v->id, "KVM_GET_XSAVE");
		s->xsave_len = X86_XSAVE_MIN;
	}
	if (kvm_check_cap(k, KVM_CAP_XCRS) > 0) {
		if (ioctl(v->fd, KVM_GET_XCRS, &s->xcrs) < 0)
			return sys_fail(err, errlen, v->id, "KVM_GET_XCRS");
		for (int i = 0; i < KVM_MAX_XCRS; i++)
			s->xcrs.xcrs[i].reserved = 0;
		memset(s->xcrs.padding, 0, sizeof(s->xcrs.padding));
	}
	if (ioctl(v->fd, KVM_GET_LAPIC, &s->lapic) < 0)
		return sys_fail(err, errlen, v->id, "KVM_GET_LAPIC");
	int r = get_msrs(k, v, s, err, errlen);
	if (r)
		return r;
	if (ioctl(v->fd, KVM_GET_DEBUGREGS, &s->debugregs) < 0)
		return sys_fail(err, errlen, v->id, "KVM_GET_DEBUGREGS");
	if (kvm_check_cap(k, KVM_CAP_GET_TSC_KHZ) > 0) {
		int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
		if (khz > 0)
			s->tsc_khz = (uint32_t)khz;
		else if (khz < 0 && errno != EIO) /* EIO: unstable host TSC, rate unknown */
			return sys_fail(err, errlen, v->id, "KVM_GET_TSC_KHZ");
	}

	struct kvm_cpuid2 *cp =
		calloc(1, sizeof(*cp) + X86_CPUID_MAX * sizeof(struct kvm_cpuid_entry2));
	if (!cp)
		return err_set(err, errlen, -ENOMEM, "vcpu.%d: out of memory reading CPUID", v->id);
	cp->nent = X86_CPUID_MAX;
	if (ioctl(v->fd, KVM_GET_CPUID2, cp) < 0) {
		r = sys_fail(err, errlen, v->id, "KVM_GET_CPUID2");
		free(cp);
		return r;
	}
	s->ncpuid = cp->nent < X86_CPUID_MAX ? cp->nent : X86_CPUID_MAX;
	for (uint32_t i = 0; i < s->ncpuid; i++) {
		s->cpuid[i] = cp->entries[i];
		memset(s->cpuid[i].padding, 0, sizeof(s->cpuid[i].padding));
	}
	free(cp);

	if ((r = get_nested(k, v, s, err, errlen)))
		return r;

	/* what visor cannot load again must not be saved */
	r = x86_vcpu_state_validate(s, err, errlen);
	if (r && err && errlen) {
		size_t l = strlen(err);
		snprintf(err + l, errlen - l, " (as read from KVM)");
	}
	return r;
}

/* Restore rank of an MSR: lower first, equal ranks keep KVM's order. */
static int msr_rank(uint32_t index)
{
	switch (index) {
	case MSR_IA32_TSC:          /* the deadline below is a TSC value */
	case MSR_KVM_ASYNC_PF_INT_: /* the vector before MSR_KVM_ASYNC_PF_EN enables delivery */
		return 0;
	case MSR_IA32_TSC_DEADLINE:
		return 2;
	default:
		return 1;
	}
}

static int set_msrs(struct kvm_vcpu *v, const struct x86_vcpu_state *s, char *err,
		    size_t errlen)
{
	/* the restore order: by rank, KVM's order within a rank */
	struct kvm_msr_entry ord[X86_MSR_MAX];
	uint32_t n = 0;
	for (int rank = 0; rank <= 2; rank++)
		for (uint32_t i = 0; i < s->nmsrs && i < X86_MSR_MAX; i++)
			if (msr_rank(s->msrs[i].index) == rank)
				ord[n++] = (struct kvm_msr_entry){.index = s->msrs[i].index,
								  .data = s->msrs[i].data};
	struct kvm_msrs *m = calloc(1, sizeof(*m) + MSR_BATCH * sizeof(struct kvm_msr_entry));
	if (!m)
		return err_set(err, errlen, -ENOMEM, "vcpu.%d: out of memory writing MSRs", v->id);
	int r = 0;
	for (uint32_t at = 0; at < n && !r; at += MSR_BATCH) {
		uint32_t cnt = n - at < MSR_BATCH ? n - at : MSR_BATCH;
		m->nmsrs = cnt;
		memcpy(m->entries, ord + at, cnt * sizeof(ord[0]));
		errno = 0;
		int got = ioctl(v->fd, KVM_SET_MSRS, m);
		if (got < 0)
			r = sys_fail(err, errlen, v->id, "KVM_SET_MSRS");
		else if ((uint32_t)got < cnt)
			r = err_set(err, errlen, -EINVAL,
				    "vcpu.%d: KVM_SET_MSRS refused MSR 0x%" PRIx32 " = 0x%llx (%" PRIu32
				    " of %" PRIu32 " written)",
				    v->id, m->entries[got].index,
				    (unsigned long long)m->entries[got].data, at + (uint32_t)got, n);
	}
	free(m);
	return r;
}

static int set_xsave(struct kvm *k, struct kvm_vcpu *v, const struct x86_vcpu_state *s,
		     char *err, size_t errlen)
{
	/* KVM_SET_XSAVE reads as many bytes as KVM_CAP_XSAVE2 says (4096
	 * without it): give it that much, the saved image zero-extended. */
	int xs = vm_cap(k, KVM_CAP_XSAVE2);
	size_t host = xs > X86_XSAVE_MIN ? (size_t)xs : X86_XSAVE_MIN;
	for (size_t i = host; i < s->xsave_len; i++)
		if (s->xsave[i])
			return err_set(err, errlen, -E2BIG,
				       "vcpu.%d: the saved XSAVE state has %" PRIu32 " bytes, this "
				       "host's KVM holds %zu",
				       v->id, s->xsave_len, host);
	uint8_t *buf = calloc(1, host);
	if (!buf)
		return err_set(err, errlen, -ENOMEM, "vcpu.%d: out of memory writing XSAVE", v->id);
	memcpy(buf, s->xsave, s->xsave_len < host ? s->xsave_len : host);
	errno = 0;
	int r = ioctl(v->fd, KVM_SET_XSAVE, buf) < 0 ? sys_fail(err, errlen, v->id, "KVM_SET_XSAVE")
						       : 0;
	free(buf);
	return r;
}

static int set_sregs(struct kvm *k, struct kvm_vcpu *v, const struct x86_vcpu_state *s,
		     char *err, size_t errlen)
{
	if ((s->sregs2_flags & KVM_SREGS2_FLAGS_PDPTRS_VALID) &&
	    kvm_check_cap(k, KVM_CAP_SREGS2) > 0) {
		/* the PDPTRs as the guest had them cached; the pending
		 * interrupt of interrupt_bitmap comes back with the events */
		const struct kvm_sregs *r = &s->sregs;
		struct kvm_sregs2 s2;
		memset(&s2, 0, sizeof(s2));
		s2.cs = r->cs;
		s2.ds = r->ds;
		s2.es = r->es;
		s2.fs = r->fs;
		s2.gs = r->gs;
		s2.ss = r->ss;
		s2.tr = r->tr;
		s2.ldt = r->ldt;
		s2.gdt = r->gdt;
		s2.idt = r->idt;
		s2.cr0 = r->cr0;
		s2.cr2 = r->cr2;
		s2.cr3 = r->cr3;
		s2.cr4 = r->cr4;
		s2.cr8 = r->cr8;
		s2.efer = r->efer;
		s2.apic_base = r->apic_base;
		s2.flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
		memcpy(s2.pdptrs, s->pdptrs, sizeof(s2.pdptrs));
		if (ioctl(v->fd, KVM_SET_SREGS2, &s2) < 0)
			return sys_fail(err, errlen, v->id, "KVM_SET_SREGS2");
		return 0;
	}
	/* KVM loads the PDPTRs from guest memory at CR3 */
	struct kvm_sregs sr = s->sregs;
	if (ioctl(v->fd, KVM_SET_SREGS, &sr) < 0)
		return sys_fail(err, errlen, v->id, "KVM_SET_SREGS");
	return 0;
}

int x86_vcpu_state_set(struct kvm *k, struct kvm_vcpu *v, const struct x86_vcpu_state *s,
		       char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = 0;
	int r = x86_vcpu_state_validate(s, err, errlen);
	if (r)
		return r;
	if (v->id < 0 || s->vcpu_id != (uint32_t)v->id)
		return refuse(err, errlen, s->vcpu_id, "this state cannot be loaded into vcpu %d",
			      v->id);
	errno = 0;

	/* 1. TSC frequency, when it differs from what the vCPU runs at */
	if (s->tsc_khz) {
		int cur = kvm_check_cap(k, KVM_CAP_GET_TSC_KHZ) > 0 ? ioctl(v->fd, KVM_GET_TSC_KHZ, 0)
								      : -1;
		if ((cur <= 0 || (uint32_t)cur != s->tsc_khz) &&
		    ioctl(v->fd, KVM_SET_TSC_KHZ, (unsigned long)s->tsc_khz) < 0) {
			int e = errno ? errno : EIO;
			return err_set(err, errlen, -e,
				       "vcpu.%d: KVM_SET_TSC_KHZ %" PRIu32 " kHz failed (the vCPU "
				       "runs at %d kHz; without TSC scaling only a faster guest TSC "
				       "can be emulated): %s",
				       v->id, s->tsc_khz, cur, strerror(e));
		}
	}

	/* 2. CPUID (an empty table: the vCPU keeps the one it has) */
	if (s->ncpuid) {
		struct kvm_cpuid2 *cp =
			calloc(1, sizeof(*cp) + (size_t)s->ncpuid * sizeof(struct kvm_cpuid_entry2));
		if (!cp)
			return err_set(err, errlen, -ENOMEM, "vcpu.%d: out of memory writing CPUID",
				       v->id);
		cp->nent = s->ncpuid;
		for (uint32_t i = 0; i < s->ncpuid; i++)
			cp->entries[i] = s->cpuid[i];
		r = ioctl(v->fd, KVM_SET_CPUID2, cp) < 0 ? sys_fail(err, errlen, v->id,
								    "KVM_SET_CPUID2")
							 : 0;
		free(cp);
		if (r)
			return r;
	}

	/* 3. sregs, 3b. nested state, 4. regs */
	if ((r = set_sregs(k, v, s, err, errlen)))
		return r;
	if (s->nested_len) {
		for (uint32_t i = 0; i < s->nmsrs; i++) {
			if (s->msrs[i].index != MSR_IA32_FEATURE_CONTROL)
				continue;
			_Alignas(8) uint8_t one[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
			struct kvm_msrs *m = (struct kvm_msrs *)(void *)one;
			memset(one, 0, sizeof(one));
			m->nmsrs = 1;
			m->entries[0] = s->msrs[i];
			if (ioctl(v->fd, KVM_SET_MSRS, m) != 1)
				return refuse(err, errlen, s->vcpu_id,
					      "KVM refused IA32_FEATURE_CONTROL before the nested state");
		}
		if (ioctl(v->fd, KVM_SET_NESTED_STATE, s->nested) < 0)
			return sys_fail(err, errlen, v->id,
					"KVM_SET_NESTED_STATE (a guest running its own VMs; this "
					"host's KVM must offer the same nested virtualization)");
	}
	struct kvm_regs regs = s->regs;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return sys_fail(err, errlen, v->id, "KVM_SET_REGS");

	/* 5. xsave, 6. xcrs */
	if ((r = set_xsave(k, v, s, err, errlen)))
		return r;
	if (s->xcrs.nr_xcrs) {
		struct kvm_xcrs x = s->xcrs;
		if (ioctl(v->fd, KVM_SET_XCRS, &x) < 0)
			return sys_fail(err, errlen, v->id, "KVM_SET_XCRS");
	}

	/* 7. LAPIC (before IA32_TSC_DEADLINE), 8. MSRs */
	struct kvm_lapic_state lapic = s->lapic;
	if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
		return sys_fail(err, errlen, v->id, "KVM_SET_LAPIC");
	if ((r = set_msrs(v, s, err, errlen)))
		return r;

	/* 9. events: a validity flag whose fields are all clear says nothing
	 * KVM would not assume anyway; dropping it lets the state load where
	 * KVM lacks (or has not enabled) the feature behind the flag */
	struct kvm_vcpu_events ev = s->events;
	if ((ev.flags & KVM_VCPUEVENT_VALID_SMM) &&
	    !(ev.smi.smm | ev.smi.pending | ev.smi.smm_inside_nmi | ev.smi.latched_init) &&
	    kvm_check_cap(k, KVM_CAP_X86_SMM) <= 0)
		ev.flags &= ~(uint32_t)KVM_VCPUEVENT_VALID_SMM;
	if ((ev.flags & KVM_VCPUEVENT_VALID_PAYLOAD) && !ev.exception.pending)
		ev.flags &= ~(uint32_t)KVM_VCPUEVENT_VALID_PAYLOAD;
	if ((ev.flags & KVM_VCPUEVENT_VALID_TRIPLE_FAULT) && !ev.triple_fault.pending)
		ev.flags &= ~(uint32_t)KVM_VCPUEVENT_VALID_TRIPLE_FAULT;
	if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		return sys_fail(err, errlen, v->id, "KVM_SET_VCPU_EVENTS");

	/* 10. mp_state, 11. debug registers */
	struct kvm_mp_state mp = s->mp_state;
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		return sys_fail(err, errlen, v->id, "KVM_SET_MP_STATE");
	struct kvm_debugregs dr = s->debugregs;
	if (ioctl(v->fd, KVM_SET_DEBUGREGS, &dr) < 0)
		return sys_fail(err, errlen, v->id, "KVM_SET_DEBUGREGS");
	return 0;
}
