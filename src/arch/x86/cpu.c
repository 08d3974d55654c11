/* SPDX-License-Identifier: MIT */
#include "cpu.h"

#include <cpuid.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../../util/log.h"
#include "cpuid.h"
#include "layout.h"

bool x86_host_has_hw_virt(bool *pvm)
{
	unsigned a, b, c, d;
	bool hw = false;
	if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 5)))
		hw = true; /* VMX */
	if (__get_cpuid(0x80000001, &a, &b, &c, &d) && (c & (1u << 2)))
		hw = true; /* SVM */
	*pvm = access("/sys/module/kvm_pvm", F_OK) == 0;
	return hw;
}

int x86_vm_setup(struct kvm *k)
{
	/* Three pages below the LAPIC that VT-x uses for the real-mode TSS and
	 * identity map; they sit in the MMIO hole, never in RAM. */
	if (ioctl(k->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0)
		return -errno;
	uint64_t idmap = 0xfffbc000ULL;
	if (kvm_check_cap(k, KVM_CAP_SET_IDENTITY_MAP_ADDR) &&
	    ioctl(k->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		return -errno;
	if (ioctl(k->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return -errno;
	/* Interrupt wiring of a PC (matches the MADT / MP table): ISA IRQs
	 * go to both 8259s (IRQ2 is the cascade) and the IOAPIC pin of the
	 * same number, except IRQ0 (the PIT) which reaches IOAPIC pin 2 --
	 * the "IRQ0 -> GSI2" interrupt source override. */
	int r = 0;
	for (uint32_t irq = 0; irq < 16 && !r; irq++)
		if (irq != 2)
			r = kvm_route_irqchip(k, irq,
					      irq < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
					      irq % 8);
	for (uint32_t gsi = 0; gsi < IOAPIC_NUM_PINS && !r; gsi++)
		if (gsi != 2)
			r = kvm_route_irqchip(k, gsi, KVM_IRQCHIP_IOAPIC, gsi == 0 ? 2 : gsi);
	if (r || (r = kvm_routes_commit(k)))
		return r;
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	if (ioctl(k->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return -errno;
	return 0;
}

/* Page-table entry bits */
#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define PTE_US 0x4ULL
#define PTE_PS 0x80ULL

int x86_write_boot_tables(struct guest_mem *mem)
{
	/* PML4[0] -> PDPT; PDPT[0..3] -> PD0..PD3; PDn[i] -> 2 MiB page.
	 * User-accessible (US) so synthetic test guests can work at CPL3. */
	uint64_t pml4 = GPA_PAGE_TABLES, pdpt = pml4 + 0x1000, pd = pdpt + 0x1000;
	uint64_t *p = gpa_to_hva(mem, pml4, GPA_PAGE_TABLES_END - GPA_PAGE_TABLES);
	if (!p)
		return -EFAULT;
	memset(p, 0, GPA_PAGE_TABLES_END - GPA_PAGE_TABLES);
	uint64_t *l4 = p, *l3 = p + 512, *l2 = p + 1024;
	l4[0] = pdpt | PTE_P | PTE_RW | PTE_US;
	for (int i = 0; i < 4; i++)
		l3[i] = (pd + (uint64_t)i * 0x1000) | PTE_P | PTE_RW | PTE_US;
	for (uint64_t i = 0; i < 4 * 512; i++)
		l2[i] = (i << 21) | PTE_P | PTE_RW | PTE_US | PTE_PS;
	/* GDT: 0 null, 1 null, 2 (0x10) code64, 3 (0x18) data, 4 (0x20) tss,
	 * 5 (0x28) code32 -- flat segments (Intel SDM Vol. 3 3.4.5). */
	uint64_t gdt[6] = {
		0, 0, 0x00af9b000000ffffULL, 0x00cf93000000ffffULL, 0x00008b0000000067ULL,
		0x00cf9b000000ffffULL,
	};
	return guest_write(mem, GPA_GDT, gdt, sizeof(gdt));
}

/* MSR indices */
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_IA32_TSC 0x10
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff

static int set_cpuid(struct kvm *k, struct kvm_vcpu *v, uint32_t ncpus)
{
	const int max = 256;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)max * sizeof(struct kvm_cpuid_entry2));
	if (!c)
		return -ENOMEM;
	c->nent = (uint32_t)max - 8; /* room for entries normalisation adds */
	if (ioctl(k->fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		int e = errno;
		free(c);
		return -e;
	}
	uint32_t brand[12];
	struct cpuid_opts o = {
		.vcpu_id = (uint32_t)v->id,
		.ncpus = ncpus,
		.tsc_deadline = kvm_check_cap(k, KVM_CAP_TSC_DEADLINE_TIMER) > 0,
		.brand = cpuid_host_brand(brand) ? brand : NULL,
	};
	int n = cpuid_normalize(c->entries, (int)c->nent, max, &o);
	int r = 0;
	if (n < 0) {
		r = n;
	} else {
		c->nent = (uint32_t)n;
		if (v->id == 0)
			for (int i = 0; i < n; i++)
				log_debug("cpuid %08x.%u: %08x %08x %08x %08x", c->entries[i].function,
					  c->entries[i].index, c->entries[i].eax, c->entries[i].ebx,
					  c->entries[i].ecx, c->entries[i].edx);
		if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
			r = -errno;
	}
	free(c);
	return r;
}

static int set_msrs(struct kvm_vcpu *v)
{
	static const struct {
		uint32_t idx;
		uint64_t val;
	} init[] = {
		{MSR_IA32_SYSENTER_CS, 0}, {MSR_IA32_SYSENTER_ESP, 0}, {MSR_IA32_SYSENTER_EIP, 0},
		{MSR_STAR, 0}, {MSR_CSTAR, 0}, {MSR_KERNEL_GS_BASE, 0}, {MSR_SYSCALL_MASK, 0},
		{MSR_LSTAR, 0}, {MSR_IA32_TSC, 0},
		{MSR_IA32_MISC_ENABLE, 1}, /* fast strings */
		{MSR_MTRR_DEF_TYPE, (1u << 11) | 6}, /* MTRRs on, default write-back */
	};
	const size_t n = sizeof(init) / sizeof(init[0]);
	_Alignas(struct kvm_msrs) uint8_t buf[sizeof(struct kvm_msrs) +
					     sizeof(init) / sizeof(init[0]) * sizeof(struct kvm_msr_entry)];
	memset(buf, 0, sizeof(buf));
	struct kvm_msrs *m = (struct kvm_msrs *)buf;
	m->nmsrs = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		m->entries[i].index = init[i].idx;
		m->entries[i].data = init[i].val;
	}
	int r = ioctl(v->fd, KVM_SET_MSRS, m);
	if (r < 0)
		return -errno;
	if ((size_t)r != n)
		log_debug("vcpu %d: KVM accepted %d of %zu MSRs", v->id, r, n);
	return 0;
}

static int set_fpu(struct kvm_vcpu *v)
{
	struct kvm_fpu fpu;
	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f; /* FNINIT state */
	fpu.mxcsr = 0x1f80;
	return ioctl(v->fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0;
}

/* LAPIC registers (Intel SDM Vol. 3 10.5.1) */
#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_EXTINT 0x7
#define APIC_MODE_NMI 0x4

static int set_lapic(struct kvm_vcpu *v)
{
	struct kvm_lapic_state l;
	if (ioctl(v->fd, KVM_GET_LAPIC, &l) < 0)
		return -errno;
	/* As a PC BIOS leaves it: LINT0 = ExtINT (the 8259), LINT1 = NMI. */
	uint32_t lvt0, lvt1;
	memcpy(&lvt0, &l.regs[APIC_LVT0], 4);
	memcpy(&lvt1, &l.regs[APIC_LVT1], 4);
	lvt0 = (lvt0 & ~0x700u & ~0x10000u) | (APIC_MODE_EXTINT << 8);
	lvt1 = (lvt1 & ~0x700u & ~0x10000u) | (APIC_MODE_NMI << 8);
	memcpy(&l.regs[APIC_LVT0], &lvt0, 4);
	memcpy(&l.regs[APIC_LVT1], &lvt1, 4);
	return ioctl(v->fd, KVM_SET_LAPIC, &l) < 0 ? -errno : 0;
}

int x86_vcpu_init(struct kvm *k, struct kvm_vcpu *v, uint32_t ncpus)
{
	int r = set_cpuid(k, v, ncpus);
	if (r)
		return r;
	if ((r = set_msrs(v)) || (r = set_fpu(v)) || (r = set_lapic(v)))
		return r;
	if (kvm_check_cap(k, KVM_CAP_XCRS)) {
		/* XCR0 at its architectural reset value (x87 only); the guest
		 * enables SSE/AVX/... itself with XSETBV. */
		struct kvm_xcrs x;
		memset(&x, 0, sizeof(x));
		x.nr_xcrs = 1;
		x.xcrs[0].xcr = 0;
		x.xcrs[0].value = 1;
		if (ioctl(v->fd, KVM_SET_XCRS, &x) < 0)
			return -errno;
	}
	return 0;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool l, bool db)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->base = 0;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->dpl = 0;
	s->db = db;
	s->s = 1;
	s->l = l;
	s->g = 1;
}

#define CR0_PE 0x1ULL
#define CR0_ET 0x10ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

int x86_vcpu_set_boot_regs(struct kvm_vcpu *v, const struct boot_image *img)
{
	struct kvm_sregs sr;
	if (ioctl(v->fd, KVM_GET_SREGS, &sr) < 0)
		return -errno;
	bool pvh = img->kind == BOOT_PVH;
	sr.gdt.base = GPA_GDT;
	sr.gdt.limit = 6 * 8 - 1;
	sr.idt.base = 0;
	sr.idt.limit = 0;
	if (pvh) {
		/* PVH: 32-bit protected mode, paging off (x86/boot/pvh docs). */
		seg(&sr.cs, 0x28, 0xb, false, true);
		sr.cr0 = CR0_PE | CR0_ET;
		sr.cr4 = 0;
		sr.efer = 0;
	} else {
		seg(&sr.cs, 0x10, 0xb, true, false);
		sr.cr0 = CR0_PE | CR0_ET | CR0_PG;
		sr.cr3 = GPA_PAGE_TABLES;
		sr.cr4 = CR4_PAE;
		sr.efer = EFER_LME | EFER_LMA;
	}
	seg(&sr.ds, 0x18, 0x3, false, true);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	memset(&sr.tr, 0, sizeof(sr.tr));
	sr.tr.selector = 0x20;
	sr.tr.limit = 0x67;
	sr.tr.type = 0xb; /* busy 32/64-bit TSS */
	sr.tr.present = 1;
	if (ioctl(v->fd, KVM_SET_SREGS, &sr) < 0)
		return -errno;
	struct kvm_regs r;
	memset(&r, 0, sizeof(r));
	r.rflags = 0x2;
	r.rip = img->entry;
	if (pvh)
		r.rbx = GPA_PVH_START_INFO;
	else
		r.rsi = GPA_ZERO_PAGE;
	return ioctl(v->fd, KVM_SET_REGS, &r) < 0 ? -errno : 0;
}

bool x86_regs_are_reset_state(const struct kvm_regs *r, const struct kvm_sregs *s)
{
	/* The architectural state after RESET/INIT (SDM vol. 3 table 9-1, APM
	 * vol. 2 table 14-1): CS 0xf000 based at 0xffff0000, RIP 0xfff0, real
	 * mode.  No running Linux guest is ever there. */
	return r->rip == 0xfff0 && s->cs.selector == 0xf000 && s->cs.base == 0xffff0000ULL &&
	       !(s->cr0 & 1);
}

void x86_dump_vcpu(struct kvm_vcpu *v, const struct guest_mem *mem)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		log_error("vcpu %d: cannot read registers", v->id);
		return;
	}
	if (x86_regs_are_reset_state(&r, &s)) {
		/* KVM on AMD (SVM) reinitialises the vCPU when it reports a
		 * shutdown: the registers are gone before userspace can read
		 * them.  Say so instead of printing them as if they meant
		 * something. */
		log_error("vcpu %d: its registers are already the reset state (rip=fff0 cs=f000), "
			  "not the guest's at the fault: KVM reset the vCPU before reporting the "
			  "exit (as KVM on AMD SVM does at a triple fault). The guest's console "
			  "above, or kvm_exit tracepoints on the host (tests/stress/run --trace), "
			  "show where it was",
			  v->id);
		return;
	}
	log_error("vcpu %d: rip=%016llx rsp=%016llx rflags=%08llx cs=%04x cpl=%u", v->id,
		  (unsigned long long)r.rip, (unsigned long long)r.rsp, (unsigned long long)r.rflags,
		  s.cs.selector, s.cs.dpl);
	log_error("  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx", (unsigned long long)r.rax,
		  (unsigned long long)r.rbx, (unsigned long long)r.rcx, (unsigned long long)r.rdx);
	log_error("  rsi=%016llx rdi=%016llx rbp=%016llx r8=%016llx", (unsigned long long)r.rsi,
		  (unsigned long long)r.rdi, (unsigned long long)r.rbp, (unsigned long long)r.r8);
	log_error("  cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx efer=%llx",
		  (unsigned long long)s.cr0, (unsigned long long)s.cr2, (unsigned long long)s.cr3,
		  (unsigned long long)s.cr4, (unsigned long long)s.efer);
	struct kvm_translation t = {.linear_address = s.cs.base + r.rip};
	if (ioctl(v->fd, KVM_TRANSLATE, &t) == 0 && t.valid) {
		const uint8_t *p = gpa_to_hva(mem, t.physical_address, 16);
		if (p) {
			char hex[16 * 3 + 1];
			for (int i = 0; i < 16; i++)
				snprintf(hex + i * 3, 4, "%02x ", p[i]);
			log_error("  code at rip (gpa 0x%llx): %s", (unsigned long long)t.physical_address,
				  hex);
		}
	}
}
