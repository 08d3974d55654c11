/* SPDX-License-Identifier: MIT */
/*
 * cpuid.h - the CPUID table a vCPU sees.
 *
 * Starts from KVM_GET_SUPPORTED_CPUID (only features both the host CPU and
 * KVM can provide) and normalises it for one vCPU of an N-vCPU machine:
 * APIC IDs, topology (leaf 1, 4, 0xB, 0x1F, 0x80000008, 0x8000001E), the
 * hypervisor bit, the KVM paravirt leaves (0x40000000: "KVMKVMKVM", 0x40000001
 * features incl. kvmclock), the host's processor brand string (0x80000002-4),
 * and features visor does not virtualise removed (PMU, thermal/power
 * management, MONITOR/MWAIT).
 */
#ifndef VISOR_ARCH_X86_CPUID_H
#define VISOR_ARCH_X86_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

struct cpuid_opts {
	uint32_t vcpu_id;   /* == APIC ID */
	uint32_t ncpus;
	bool tsc_deadline;  /* KVM_CAP_TSC_DEADLINE_TIMER */
	/* The processor brand string for leaves 0x80000002-4 (KVM's supported
	 * table has them zeroed; the guest would show a family name such as
	 * "Hammer").  48 bytes as the host's CPUID returns them, or NULL. */
	const uint32_t *brand;
};

/* Read the host CPU's brand string leaves (12 words) into @w; false if the
 * CPU has none. */
bool cpuid_host_brand(uint32_t w[12]);

/* Normalise @n entries of @e in place (entries may be added, up to @max).
 * Returns the new count, or -ENOSPC. */
int cpuid_normalize(struct kvm_cpuid_entry2 *e, int n, int max, const struct cpuid_opts *o);

/* Find leaf/subleaf (subleaf ignored for entries without the INDEX flag). */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid_entry2 *e, int n, uint32_t fn, uint32_t idx);

#endif
