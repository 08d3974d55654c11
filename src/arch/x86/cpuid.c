/* SPDX-License-Identifier: MIT */
#include "cpuid.h"

#include <cpuid.h>

#include <errno.h>
#include <string.h>

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid_entry2 *e, int n, uint32_t fn, uint32_t idx)
{
	for (int i = 0; i < n; i++) {
		if (e[i].function != fn)
			continue;
		if ((e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e[i].index != idx)
			continue;
		return &e[i];
	}
	return NULL;
}

/* bits needed to number @n things (0 for n <= 1) */
static uint32_t order(uint32_t n)
{
	uint32_t b = 0;
	while ((1u << b) < n)
		b++;
	return b;
}

/* Replace every subleaf of topology leaf @fn (0xB or 0x1F) with: level 0
 * SMT (1 thread per core), level 1 core (@ncpus per package, x2APIC ID
 * shift @shift), level 2 invalid (the end).  EDX is the x2APIC ID on
 * every subleaf.  Without @present the leaf is only removed. */
static int set_topology(struct kvm_cpuid_entry2 *e, int n, int max, uint32_t fn, bool present,
			uint32_t id, uint32_t shift, uint32_t ncpus)
{
	int w = 0;
	for (int i = 0; i < n; i++)
		if (e[i].function != fn)
			e[w++] = e[i];
	n = w;
	if (!present)
		return n;
	if (n + 3 > max)
		return -ENOSPC;
	const uint32_t f = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
	e[n++] = (struct kvm_cpuid_entry2){.function = fn, .index = 0, .flags = f, .eax = 0,
					   .ebx = 1, .ecx = (1u << 8) | 0, .edx = id};
	e[n++] = (struct kvm_cpuid_entry2){.function = fn, .index = 1, .flags = f, .eax = shift,
					   .ebx = ncpus, .ecx = (2u << 8) | 1, .edx = id};
	e[n++] = (struct kvm_cpuid_entry2){.function = fn, .index = 2, .flags = f, .eax = 0,
					   .ebx = 0, .ecx = 2, .edx = id};
	return n;
}

#define KVM_CPUID_SIGNATURE 0x40000000
#define KVM_CPUID_FEATURES 0x40000001

int cpuid_normalize(struct kvm_cpuid_entry2 *e, int n, int max, const struct cpuid_opts *o)
{
	uint32_t ncpus = o->ncpus ? o->ncpus : 1;
	uint32_t id = o->vcpu_id;
	uint32_t shift = order(ncpus);
	bool have_kvm_sig = false;

	for (int i = 0; i < n; i++) {
		struct kvm_cpuid_entry2 *c = &e[i];
		switch (c->function) {
		case 0x1:
			/* EBX[31:24] initial APIC ID, [23:16] logical processors per package */
			c->ebx = (c->ebx & 0x0000ffffu) | (id << 24) |
				 ((ncpus > 255 ? 255 : ncpus) << 16);
			c->ecx |= 1u << 31;       /* hypervisor present */
			c->ecx &= ~(1u << 3);     /* MONITOR/MWAIT: not virtualised */
			c->ecx &= ~(1u << 15);    /* PDCM: no perf capabilities MSR */
			if (o->tsc_deadline)
				c->ecx |= 1u << 24;
			else
				c->ecx &= ~(1u << 24);
			if (ncpus > 1)
				c->edx |= 1u << 28; /* HTT: EBX[23:16] valid */
			else
				c->edx &= ~(1u << 28);
			break;
		case 0x4:
			/* EAX[31:26] cores per package - 1; [25:14] threads sharing this cache - 1 */
			if ((c->eax & 0x1f) != 0) {
				uint32_t share = 0;
				uint32_t level = (c->eax >> 5) & 7;
				if (level == 3)
					share = (1u << shift) - 1; /* L3 shared by the package */
				c->eax = (c->eax & 0x3fffu) | (((1u << shift) - 1) << 26) | (share << 14);
			}
			break;
		case 0x6: /* thermal and power management: none, keep ARAT (APIC timer always runs) */
			c->eax &= 1u << 2;
			c->ebx = c->ecx = c->edx = 0;
			break;
		case 0xa: /* architectural PMU: not offered */
			c->eax = c->ebx = c->ecx = c->edx = 0;
			break;
		case 0x80000008:
			/* AMD: ECX[7:0] cores per package - 1, [15:12] APIC ID size */
			c->ecx = (c->ecx & ~0xf0ffu) | (ncpus - 1) | (shift << 12);
			break;
		case 0x8000001e:
			/* AMD extended APIC ID / compute unit / node */
			c->eax = id;
			c->ebx = id & 0xff; /* compute unit id, 1 thread per unit */
			c->ecx = 0;
			break;
		case 0x80000002:
		case 0x80000003:
		case 0x80000004:
			if (o->brand) {
				const uint32_t *w = o->brand + 4 * (c->function - 0x80000002);
				c->eax = w[0];
				c->ebx = w[1];
				c->ecx = w[2];
				c->edx = w[3];
			}
			break;
		case KVM_CPUID_SIGNATURE:
			have_kvm_sig = true;
			break;
		default:
			break;
		}
	}
	/* Extended topology (0xB, and 0x1F where the CPU has it): always the
	 * whole description, whatever subset of subleaves KVM's table had (a
	 * table with only subleaf 0 made a guest with 2 vCPUs see 2 packages
	 * of 1 core while leaf 1 said 2 per package). */
	struct kvm_cpuid_entry2 *l0 = cpuid_find(e, n, 0, 0);
	uint32_t max_basic = l0 ? l0->eax : 0;
	bool had_1f = cpuid_find(e, n, 0x1f, 0) != NULL;
	n = set_topology(e, n, max, 0xb, max_basic >= 0xb, id, shift, ncpus);
	if (n >= 0)
		n = set_topology(e, n, max, 0x1f, had_1f && max_basic >= 0x1f, id, shift, ncpus);
	if (n < 0)
		return n;
	if (!have_kvm_sig) {
		/* KVM always supports these; supply them if the supported table lacks them. */
		if (n + 2 > max)
			return -ENOSPC;
		struct kvm_cpuid_entry2 sig = {.function = KVM_CPUID_SIGNATURE, .eax = KVM_CPUID_FEATURES};
		memcpy(&sig.ebx, "KVMK", 4);
		memcpy(&sig.ecx, "VMKV", 4);
		memcpy(&sig.edx, "M\0\0\0", 4);
		e[n++] = sig;
		e[n++] = (struct kvm_cpuid_entry2){.function = KVM_CPUID_FEATURES,
						   .eax = (1u << 3) /* CLOCKSOURCE2 */ |
							  (1u << 24) /* CLOCKSOURCE_STABLE */};
	}
	return n;
}

bool cpuid_host_brand(uint32_t w[12])
{
	unsigned a, b, c, d;
	__cpuid(0x80000000, a, b, c, d);
	if (a < 0x80000004)
		return false;
	for (unsigned i = 0; i < 3; i++) {
		__cpuid(0x80000002 + i, w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]);
	}
	(void)b;
	(void)c;
	(void)d;
	return w[0] != 0;
}
