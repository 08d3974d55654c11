/* SPDX-License-Identifier: MIT */
/*
 * cpu.h - x86 vCPU set-up: CPUID, MSRs, FPU, LAPIC, and the register state
 * a kernel expects at its entry point; plus the host hardware check and the
 * crash diagnostic.
 */
#ifndef VISOR_ARCH_X86_CPU_H
#define VISOR_ARCH_X86_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../kvm/kvm.h"
#include "../../mem/guest_mem.h"
#include "boot.h"

/* Does the host CPU advertise VT-x or AMD-V?  *pvm is set when the kvm_pvm
 * software hypervisor module is loaded instead. */
bool x86_host_has_hw_virt(bool *pvm);

/* Create the in-kernel irqchip (PIC+IOAPIC+LAPIC) and PIT, and the
 * TSS/identity-map pages VT-x needs.  0 / -errno. */
int x86_vm_setup(struct kvm *k);

/* Write identity-mapping page tables (0-4 GiB, 2 MiB pages) and the boot
 * GDT into low guest memory.  0 / -EFAULT. */
int x86_write_boot_tables(struct guest_mem *mem);

/* Configure vCPU @v (id v->id of @ncpus): CPUID, MSRs, FPU, LAPIC LINT0/1.
 * 0 / -errno. */
int x86_vcpu_init(struct kvm *k, struct kvm_vcpu *v, uint32_t ncpus);

/* Set the boot vCPU's registers for entering @img. */
int x86_vcpu_set_boot_regs(struct kvm_vcpu *v, const struct boot_image *img);

/* True when @r/@s are the architectural reset state (real mode at
 * f000:fff0): what KVM on AMD leaves after a shutdown (triple fault). */
bool x86_regs_are_reset_state(const struct kvm_regs *r, const struct kvm_sregs *s);

/* Log registers and the instruction bytes at RIP (for crash reports), or,
 * when the vCPU is already in its reset state, say that instead. */
void x86_dump_vcpu(struct kvm_vcpu *v, const struct guest_mem *mem);

#endif
