/* SPDX-License-Identifier: MIT */
/* CPUID normalisation for N vCPUs. */
#include "../../src/arch/x86/cpuid.h"

#include "test.h"

static int host_table(struct kvm_cpuid_entry2 *e)
{
	int n = 0;
	e[n++] = (struct kvm_cpuid_entry2){.function = 0, .eax = 0xd};
	e[n++] = (struct kvm_cpuid_entry2){.function = 1, .ebx = 0x0a010800, .ecx = (1u << 3) | (1u << 15) | (1u << 24), .edx = 0};
	e[n++] = (struct kvm_cpuid_entry2){.function = 4, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 0x1c004121};
	e[n++] = (struct kvm_cpuid_entry2){.function = 4, .index = 3, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 0x1c03c163};
	e[n++] = (struct kvm_cpuid_entry2){.function = 6, .eax = 0x77, .ecx = 9};
	e[n++] = (struct kvm_cpuid_entry2){.function = 0xa, .eax = 0x07300805};
	e[n++] = (struct kvm_cpuid_entry2){.function = 0x80000008, .eax = 0x3030, .ecx = 0x7007};
	return n;
}

TEST(topology_and_ids)
{
	struct kvm_cpuid_entry2 e[32];
	int n = host_table(e);
	struct cpuid_opts o = {.vcpu_id = 3, .ncpus = 4, .tsc_deadline = false};
	n = cpuid_normalize(e, n, 32, &o);
	CHECK(n > 7);
	struct kvm_cpuid_entry2 *l1 = cpuid_find(e, n, 1, 0);
	CHECK_EQ(l1->ebx >> 24, 3);
	CHECK_EQ((l1->ebx >> 16) & 0xff, 4);
	CHECK_EQ(l1->ebx & 0xffff, 0x0800); /* clflush size kept */
	CHECK(l1->ecx & (1u << 31));        /* hypervisor */
	CHECK(!(l1->ecx & (1u << 3)));      /* no MONITOR */
	CHECK(!(l1->ecx & (1u << 24)));     /* no TSC deadline without KVM support */
	CHECK(l1->edx & (1u << 28));        /* HTT */
	struct kvm_cpuid_entry2 *l4 = cpuid_find(e, n, 4, 0);
	CHECK_EQ(l4->eax >> 26, 3);          /* 4 cores */
	struct kvm_cpuid_entry2 *b0 = cpuid_find(e, n, 0xb, 0), *b1 = cpuid_find(e, n, 0xb, 1);
	CHECK(b0 && b1);
	CHECK_EQ(b0->ebx, 1);
	CHECK_EQ(b1->ebx, 4);
	CHECK_EQ(b1->eax, 2);
	CHECK_EQ(b1->edx, 3);
	CHECK_EQ(cpuid_find(e, n, 0xa, 0)->eax, 0);            /* no PMU */
	CHECK_EQ(cpuid_find(e, n, 6, 0)->eax, 0x4);            /* only ARAT */
	CHECK_EQ(cpuid_find(e, n, 0x80000008, 0)->ecx & 0xff, 3);
	struct kvm_cpuid_entry2 *k = cpuid_find(e, n, 0x40000000, 0);
	CHECK(k != NULL);
	CHECK(memcmp(&k->ebx, "KVMK", 4) == 0);
	CHECK(cpuid_find(e, n, 0x40000001, 0) != NULL);
}

TEST(single_cpu_and_deadline)
{
	struct kvm_cpuid_entry2 e[32];
	int n = host_table(e);
	struct cpuid_opts o = {.vcpu_id = 0, .ncpus = 1, .tsc_deadline = true};
	n = cpuid_normalize(e, n, 32, &o);
	struct kvm_cpuid_entry2 *l1 = cpuid_find(e, n, 1, 0);
	CHECK(!(l1->edx & (1u << 28)));
	CHECK(l1->ecx & (1u << 24));
	CHECK_EQ(cpuid_find(e, n, 0xb, 1)->ebx, 1);
}

TEST(brand_string_from_the_host)
{
	struct kvm_cpuid_entry2 e[32];
	int n = host_table(e);
	for (uint32_t f = 0x80000002; f <= 0x80000004; f++)
		e[n++] = (struct kvm_cpuid_entry2){.function = f}; /* KVM zeroes them */
	uint32_t w[12];
	char name[49] = "AMD EPYC Example Processor 64-Core";
	memcpy(w, name, 48);
	struct cpuid_opts o = {.vcpu_id = 0, .ncpus = 1, .brand = w};
	n = cpuid_normalize(e, n, 32, &o);
	char got[49] = {0};
	for (uint32_t i = 0; i < 3; i++) {
		struct kvm_cpuid_entry2 *c = cpuid_find(e, n, 0x80000002 + i, 0);
		CHECK(c != NULL);
		memcpy(got + 16 * i, &c->eax, 4);
		memcpy(got + 16 * i + 4, &c->ebx, 4);
		memcpy(got + 16 * i + 8, &c->ecx, 4);
		memcpy(got + 16 * i + 12, &c->edx, 4);
	}
	CHECK(memcmp(got, name, 48) == 0);
	/* Without a brand the leaves stay as KVM gave them. */
	n = host_table(e);
	e[n++] = (struct kvm_cpuid_entry2){.function = 0x80000003, .eax = 7};
	struct cpuid_opts o2 = {.vcpu_id = 0, .ncpus = 1};
	n = cpuid_normalize(e, n, 32, &o2);
	CHECK_EQ(cpuid_find(e, n, 0x80000003, 0)->eax, 7);
	/* The host reader returns a printable name on x86-64 hosts that have one. */
	if (cpuid_host_brand(w)) {
		memcpy(got, w, 48);
		got[48] = 0;
		CHECK(got[0] != 0);
	}
}

/* What KVM gave on an AMD host (the lab): leaf 0xB with subleaf 0 only.
 * The guest must still see one package of N cores, as leaf 1 says. */
TEST(topology_completed_when_kvm_has_subleaf_0_only)
{
	struct kvm_cpuid_entry2 e[32];
	int n = host_table(e);
	e[n++] = (struct kvm_cpuid_entry2){.function = 0xb, .index = 0,
					   .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
					   .ebx = 1, .ecx = 0x100};
	struct cpuid_opts o = {.vcpu_id = 1, .ncpus = 2};
	n = cpuid_normalize(e, n, 32, &o);
	CHECK(n > 0);
	struct kvm_cpuid_entry2 *b0 = cpuid_find(e, n, 0xb, 0), *b1 = cpuid_find(e, n, 0xb, 1),
				*b2 = cpuid_find(e, n, 0xb, 2);
	CHECK(b0 && b1 && b2);
	CHECK_EQ(b0->ecx, 0x100u);               /* SMT level, */
	CHECK_EQ(b0->ebx, 1u);                   /* one thread per core */
	CHECK_EQ(b1->ecx, 0x201u);               /* core level, */
	CHECK_EQ(b1->ebx, 2u);                   /* two per package */
	CHECK_EQ(b1->eax, 1u);                   /* x2APIC ID shift to the package */
	CHECK_EQ((b2->ecx >> 8) & 0xff, 0u);     /* then the end */
	CHECK_EQ(b0->edx, 1u);
	CHECK_EQ(b2->edx, 1u);
	int count = 0;
	for (int i = 0; i < n; i++)
		count += e[i].function == 0xb;
	CHECK_EQ(count, 3);                      /* the old subleaf 0 replaced, not kept twice */
	/* leaf 0x1F only where the CPU has it, then with the same shape */
	CHECK(cpuid_find(e, n, 0x1f, 0) == NULL);
	n = host_table(e);
	e[0].eax = 0x1f;
	e[n++] = (struct kvm_cpuid_entry2){.function = 0x1f, .index = 0,
					   .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX};
	n = cpuid_normalize(e, n, 32, &o);
	CHECK(cpuid_find(e, n, 0x1f, 1) && cpuid_find(e, n, 0x1f, 1)->ebx == 2);
}

TEST(no_room_is_an_error)
{
	struct kvm_cpuid_entry2 e[8];
	int n = host_table(e);
	struct cpuid_opts o = {.vcpu_id = 0, .ncpus = 2};
	CHECK(cpuid_normalize(e, n, n, &o) < 0);
}

TEST_MAIN()
