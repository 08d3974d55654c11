/* SPDX-License-Identifier: MIT */
/* The crash report's test for "these registers are the reset state": KVM on
 * AMD resets a vCPU at a triple fault before userspace sees the exit, and
 * the report must not present that state as the guest's. */
#include "../../src/arch/x86/cpu.h"

#include <string.h>

#include "test.h"

static void reset_state(struct kvm_regs *r, struct kvm_sregs *s)
{
	memset(r, 0, sizeof(*r));
	memset(s, 0, sizeof(*s));
	r->rip = 0xfff0;
	r->rflags = 2;
	s->cs.selector = 0xf000;
	s->cs.base = 0xffff0000ULL;
	s->cr0 = 0x60000010ULL;
}

TEST(reset_state_recognised)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	reset_state(&r, &s);
	CHECK(x86_regs_are_reset_state(&r, &s));
}

TEST(running_kernel_is_not_reset_state)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	reset_state(&r, &s);
	r.rip = 0xffffffff81e00000ULL; /* entry_SYSCALL_64, say */
	s.cs.selector = 0x10;
	s.cs.base = 0;
	s.cr0 = 0x80050033ULL;
	s.efer = 0xd01;
	CHECK(!x86_regs_are_reset_state(&r, &s));
}

TEST(near_misses_are_not_reset_state)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	reset_state(&r, &s);
	s.cr0 |= 1; /* protected mode at the same address */
	CHECK(!x86_regs_are_reset_state(&r, &s));
	reset_state(&r, &s);
	r.rip = 0x7c00; /* a real-mode boot sector */
	s.cs.selector = 0;
	s.cs.base = 0;
	CHECK(!x86_regs_are_reset_state(&r, &s));
	reset_state(&r, &s);
	s.cs.base = 0xf0000; /* f000:fff0 with a real-mode base, after a far jump */
	CHECK(!x86_regs_are_reset_state(&r, &s));
}

TEST_MAIN()
