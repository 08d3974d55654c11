/* SPDX-License-Identifier: MIT */
/*
 * vcpu_state.h - the complete KVM state of one x86 vCPU, read out of KVM
 * and written back (snapshots, issue 10), and its snapshot section.
 *
 * struct x86_vcpu_state is plain data: fixed-width fields and KVM uapi
 * structs, no pointers or fds, so it can be copied by assignment.  It holds
 * everything issue 10 lists for a vCPU:
 *
 *   regs       KVM_GET_REGS
 *   sregs      KVM_GET_SREGS; with KVM_CAP_SREGS2 also the flags and PAE
 *              PDPTRs of KVM_GET_SREGS2 (a 32-bit PAE guest's cached PDPTRs
 *              need not match the page at CR3)
 *   xsave      FPU/SSE/AVX/... as KVM_GET_XSAVE2 (size from
 *              KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) on the VM fd) or
 *              KVM_GET_XSAVE (4096 bytes); xsave_len says which
 *   xcrs       KVM_GET_XCRS (nr_xcrs 0 when KVM has no KVM_CAP_XCRS)
 *   msrs       every MSR of KVM_GET_MSR_INDEX_LIST (msrs_to_save and the
 *              emulated ones) and KVM_GET_MSR_FEATURE_INDEX_LIST that the
 *              vCPU lets KVM_GET_MSRS read, in that order; MSRs KVM refuses
 *              to read (features the vCPU lacks, Hyper-V MSRs without
 *              Hyper-V enlightenments, ...) are skipped
 *   lapic      KVM_GET_LAPIC (register page as the guest sees it)
 *   events     KVM_GET_VCPU_EVENTS (pending/injected exception, interrupt,
 *              NMI, SIPI vector, SMM, triple fault)
 *   mp_state   KVM_GET_MP_STATE
 *   debugregs  KVM_GET_DEBUGREGS
 *   tsc_khz    KVM_GET_TSC_KHZ (0: unknown, e.g. the host TSC is unstable)
 *   cpuid      KVM_GET_CPUID2: the table the vCPU was given (restored
 *              with KVM_SET_CPUID2; an empty table is not set)
 *   nested     KVM_GET_NESTED_STATE (with KVM_CAP_NESTED_STATE), kept only
 *              when the guest itself runs a hypervisor: VMX on (vmxon_pa
 *              valid) or in guest mode; SVM in guest mode or with GIF
 *              clear.  Otherwise nested_len is 0, so a snapshot of an
 *              ordinary guest loads on an Intel and an AMD host alike.
 *
 * Read (x86_vcpu_state_get) order: MP state and events first, because
 * KVM_GET_MP_STATE lets KVM accept a pending INIT/SIPI (which changes the
 * registers) and KVM_GET_VCPU_EVENTS delivers a pending exception's payload
 * into CR2/DR6; then the registers and the rest.  KVM reports no SIPI
 * vector (it is consumed by KVM_GET_MP_STATE), so the SIPI flag stays clear.
 *
 * Restore (x86_vcpu_state_set) order, and why:
 *   1. TSC frequency (KVM_SET_TSC_KHZ, only when it differs): everything
 *      TSC-based below is then in the guest's frequency.
 *   2. CPUID: KVM checks CR4, XCR0, XSAVE features and many MSRs against it.
 *   3. sregs (KVM_SET_SREGS2 with the PDPTRs when they were valid and KVM
 *      has it, else KVM_SET_SREGS): APIC base (xAPIC/x2APIC mode, which the
 *      LAPIC format depends on), EFER, control registers.
 *   3b. nested state, when saved: after EFER (KVM wants EFER.SVME set for
 *      SVM) and IA32_FEATURE_CONTROL (written first when saved, for VMX);
 *      KVM checks the blob itself (it is made for migration).
 *   4. regs.
 *   5. xsave, 6. xcrs.
 *   7. LAPIC: before the MSRs, because KVM drops a write of
 *      IA32_TSC_DEADLINE unless the LAPIC timer is in TSC-deadline mode.
 *   8. MSRs in the saved order (KVM's own list order, which e.g. writes the
 *      old kvmclock MSRs before the new ones) with three moves: IA32_TSC
 *      and MSR_KVM_ASYNC_PF_INT first (the deadline is a TSC value; async
 *      #PF delivery needs its vector before it is enabled), and
 *      IA32_TSC_DEADLINE last.  A host-initiated write of IA32_TSC sets the
 *      guest TSC to the saved value (KVM matches the vCPUs' offsets when
 *      their values are within a second, so restored vCPUs stay in sync);
 *      a host-initiated write of IA32_TSC_ADJUST only stores the value and
 *      does not move the TSC, so the two do not depend on each other.
 *      (KVM_GET_MSRS/KVM_SET_MSRS take at most 255 MSRs a call: both go
 *      in batches of 128.)
 *   9. events (after the LAPIC and MSRs: pending interrupt and NMI state);
 *      a validity flag whose fields are all clear is dropped where KVM
 *      could refuse it (SMM without KVM_CAP_X86_SMM; PAYLOAD and
 *      TRIPLE_FAULT, which need VM capabilities visor does not enable):
 *      without the flag KVM assumes the same clear fields;
 *  10. mp_state, 11. debugregs.
 * Guest memory must be mapped (memory slots set) before set: SREGS reloads
 * PAE PDPTRs from guest memory and the kvmclock, steal-time and async #PF
 * MSRs map their guest pages.  An MSR KVM refuses to write fails the restore
 * (naming it): the guest would otherwise see it change.
 *
 * Section payload (section "vcpu.N", version X86_VCPU_STATE_VERSION), all
 * little-endian, in this order (sizes in bytes):
 *   vcpu_id u32
 *   regs: rax rbx rcx rdx rsi rdi rsp rbp r8-r15 rip rflags, u64 each (144)
 *   sregs: cs ds es fs gs ss tr ldt, each base u64, limit u32, selector
 *          u16, type present dpl db s l g avl unusable u8 (23 each);
 *          gdt, idt: base u64, limit u16; cr0 cr2 cr3 cr4 cr8 efer
 *          apic_base u64; interrupt_bitmap 4 x u64
 *   sregs2_flags u64, pdptrs 4 x u64
 *   xcrs: nr_xcrs u32, flags u32, nr_xcrs x {xcr u32, value u64}
 *   xsave_len u32, xsave_len bytes (the uabi XSAVE image, itself
 *          little-endian x86 memory)
 *   lapic 1024 bytes (the register page, little-endian)
 *   nmsrs u32, nmsrs x {index u32, data u64}
 *   events: exception {injected nr has_error_code pending u8, error_code
 *          u32}, interrupt {injected nr soft shadow u8}, nmi {injected
 *          pending masked u8}, sipi_vector u32, flags u32, smi {smm pending
 *          smm_inside_nmi latched_init u8}, triple_fault.pending u8,
 *          reserved 26 bytes, exception_has_payload u8, exception_payload u64
 *   mp_state u32
 *   debugregs: db[4] dr6 dr7 flags reserved[9], u64 each
 *   tsc_khz u32
 *   ncpuid u32, ncpuid x {function index flags eax ebx ecx edx u32}
 *   (version 2) nested_len u32, nested_len bytes (struct kvm_nested_state:
 *          flags u16, format u16, size u32, 120 header bytes, data; as KVM
 *          lays it out, little-endian x86)
 * Alignment padding of the uapi structs (kvm_segment.padding,
 * kvm_dtable.padding, kvm_msr_entry.reserved, kvm_xcr.reserved,
 * kvm_xcrs.padding, kvm_cpuid_entry2.padding, nmi.pad) carries nothing and
 * is not stored (x86_vcpu_state_get zeroes it).  Fields KVM reserves for
 * later use and checks (events.reserved, debugregs.flags and .reserved,
 * xcrs.flags, sregs2 flags) are stored and must be 0 / known flags.
 */
#ifndef VISOR_ARCH_X86_VCPU_STATE_H
#define VISOR_ARCH_X86_VCPU_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "../../kvm/kvm.h"
#include "../../snapshot/format.h"

#define X86_VCPU_STATE_VERSION 2 /* 2: nested state; 1 still loads (none) */

#define X86_VCPU_ID_LIMIT 4096  /* vcpu_id below this */
#define X86_XSAVE_MIN 4096      /* sizeof(struct kvm_xsave): KVM_GET_XSAVE's size */
#define X86_XSAVE_MAX 16384     /* largest KVM_CAP_XSAVE2 size taken (AMX needs ~11 KiB) */
#define X86_MSR_MAX 256
#define X86_CPUID_MAX 256       /* KVM's own limit (KVM_MAX_CPUID_ENTRIES) */
#define X86_TSC_KHZ_MIN 1000     /* 1 MHz .. */
#define X86_TSC_KHZ_MAX 50000000 /* .. 50 GHz, or 0 for unknown */
/* KVM_GET_NESTED_STATE: the 128-byte header plus VMX's vmcs12 and shadow
 * vmcs12 (4 KiB each) or SVM's vmcb12 (4 KiB), with room to spare */
#define X86_NESTED_HDR 128
#define X86_NESTED_MAX 16384

struct x86_vcpu_state {
	uint32_t vcpu_id;                /* KVM vcpu id (= APIC ID) it was read from */
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint64_t sregs2_flags;           /* KVM_SREGS2_FLAGS_PDPTRS_VALID or 0 */
	uint64_t pdptrs[4];              /* valid with that flag, else 0 */
	struct kvm_xcrs xcrs;
	uint32_t xsave_len;              /* bytes of xsave used */
	_Alignas(8) uint8_t xsave[X86_XSAVE_MAX]; /* struct kvm_xsave image */
	struct kvm_lapic_state lapic;
	uint32_t nmsrs;
	struct kvm_msr_entry msrs[X86_MSR_MAX];
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_debugregs debugregs;
	uint32_t tsc_khz;                /* 0: unknown */
	uint32_t ncpuid;
	struct kvm_cpuid_entry2 cpuid[X86_CPUID_MAX];
	uint32_t nested_len;             /* 0: the guest was not using VMX/SVM */
	_Alignas(8) uint8_t nested[X86_NESTED_MAX]; /* struct kvm_nested_state image */
};

/*
 * Read vCPU @v's whole state (the vCPU must not be running: paused, or not
 * started).  The result is checked with x86_vcpu_state_validate, so a state
 * that reads back successfully can always be loaded again.  0, or -errno
 * with a one-line message naming the ioctl (or the check) that failed.
 */
int x86_vcpu_state_get(struct kvm *k, struct kvm_vcpu *v, struct x86_vcpu_state *s, char *err,
		       size_t errlen);

/*
 * Write @s into vCPU @v (created, not yet run; see the order above).  @s
 * is validated first and must have been read from a vCPU with v's id.
 * 0, or -errno with a one-line message naming the ioctl that failed; on
 * failure the vCPU is half-restored and must be discarded.
 */
int x86_vcpu_state_set(struct kvm *k, struct kvm_vcpu *v, const struct x86_vcpu_state *s,
		       char *err, size_t errlen);

/*
 * Every range and consistency rule of a vCPU state (what decode checks;
 * "vcpu.N: ..." messages, -EINVAL):
 *  - vcpu_id below X86_VCPU_ID_LIMIT;
 *  - RFLAGS: bit 1 set, reserved bits (3, 5, 15, 22-63) clear;
 *  - segments: type 0-15, dpl 0-3, present/db/s/l/g/avl/unusable 0 or 1;
 *  - CR0: only architectural bits (PE MP EM TS ET NE WP AM NW CD PG), PG
 *    needs PE, NW needs CD; CR4: only bits KVM can set; EFER: only SCE LME
 *    LMA NXE SVME LMSLE FFXSR TCE AUTOIBRS; long mode as KVM_SET_SREGS
 *    checks it: with EFER.LME and CR0.PG, CR4.PAE and EFER.LMA are set,
 *    otherwise EFER.LMA and CS.L are clear; CR3 bits 52-60 and 63 clear;
 *    CR8 0-15; APIC base reserved bits (0-7, 9, 52-63) clear, x2APIC
 *    (EXTD) only with EN;
 *  - interrupt_bitmap: at most one bit, and then the same vector as an
 *    injected interrupt in events;
 *  - sregs2 flags: only PDPTRS_VALID, and only in PAE paging (CR0.PG,
 *    CR4.PAE, not EFER.LMA); PDPTRs 0 without it; a present PDPTR without
 *    reserved bits (1, 2, 5-8, 52-63);
 *  - XCRs: nr_xcrs <= KVM_MAX_XCRS, flags 0, only XCR0 and once; XCR0 has
 *    x87, AVX needs SSE, MPX's two bits together, AVX-512's three together
 *    and with AVX, AMX's two together, and is within the CPUID table's
 *    leaf 0xD.0 EDX:EAX (when the table has it, else x87 only);
 *  - XSAVE: X86_XSAVE_MIN <= xsave_len <= X86_XSAVE_MAX, a multiple of 4;
 *    MXCSR bits 16-31 clear; XSTATE_BV only user features (x87 SSE AVX MPX
 *    AVX-512 PKRU AMX APX); XCOMP_BV 0 (standard format) and the header's
 *    reserved bytes 0 (as KVM_SET_XSAVE checks); each feature in XSTATE_BV
 *    that CPUID leaf 0xD describes lies inside xsave_len;
 *  - MSRs: nmsrs <= X86_MSR_MAX, no index twice;
 *  - events: flags only NMI_PENDING SIPI_VECTOR SHADOW SMM PAYLOAD
 *    TRIPLE_FAULT; a field whose flag is clear is 0 (nmi.pending,
 *    sipi_vector, interrupt.shadow, smi, exception.pending and the
 *    payload, triple_fault); boolean fields 0 or 1; an injected or pending
 *    exception has a vector below 32 and not 2 (NMI); shadow only MOV SS /
 *    STI; at most 2 pending NMIs; SIPI vector 0-255; payload 0 without
 *    has_payload; reserved bytes 0;
 *  - mp_state: RUNNABLE, UNINITIALIZED, INIT_RECEIVED, HALTED or
 *    SIPI_RECEIVED (not AP_RESET_HOLD: SEV-ES only, which visor does not
 *    run; nor the states of other architectures);
 *  - debugregs: flags 0, DR6 and DR7 bits 32-63 clear, reserved 0;
 *  - tsc_khz 0 or X86_TSC_KHZ_MIN..X86_TSC_KHZ_MAX;
 *  - CPUID: ncpuid <= X86_CPUID_MAX, flags only KVM_CPUID_FLAG_* (a leaf
 *    given twice is accepted, as KVM accepts it: the first one counts);
 *  - nested: nested_len 0 or X86_NESTED_HDR..X86_NESTED_MAX, equal to the
 *    header's size; format VMX or SVM; flags only GUEST_MODE RUN_PENDING
 *    EVMCS MTF_PENDING GIF_SET (the rest KVM_SET_NESTED_STATE checks).
 * Not checked: general-purpose registers, segment bases/limits, the LAPIC
 * register page (KVM_SET_LAPIC checks what it depends on) and MSR values
 * (KVM_SET_MSRS refuses what the vCPU cannot hold; the restore fails).
 */
int x86_vcpu_state_validate(const struct x86_vcpu_state *s, char *err, size_t errlen);

/* Append @s to the open section of @w (field by field, the layout above). */
void x86_vcpu_state_encode(const struct x86_vcpu_state *s, struct snap_writer *w);

/*
 * Read a section payload of @version into @s (zeroed first) and validate
 * it.  The payload must be consumed exactly.  0, or -EINVAL with a
 * one-line message naming the field ("vcpu.0: msr count 900 exceeds 256").
 */
int x86_vcpu_state_decode(struct snap_cursor *c, uint32_t version, struct x86_vcpu_state *s,
			  char *err, size_t errlen);

#endif
