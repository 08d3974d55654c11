/* SPDX-License-Identifier: MIT */
/*
 * vm_state.h - the VM-wide KVM state of an x86 VM (snapshots, issue 10):
 * the in-kernel PICs and IOAPIC (KVM_GET_IRQCHIP, chips 0, 1 and 2), the
 * PIT (KVM_GET_PIT2) and the kvmclock (KVM_GET_CLOCK), read out of KVM and
 * written back, and their snapshot section.
 *
 * Not saved here: the GSI routing table.  visor keeps the master copy
 * (struct kvm's routes) and rebuilds it from the machine's device set on
 * restore: the PC wiring of x86_vm_setup, then every device's MSI routes
 * as its restored MSI-X/MSI state is applied; saving KVM's copy could only
 * disagree with that.
 *
 * Restore order: the VM and its irqchip and PIT exist (x86_vm_setup) and
 * guest memory is mapped.  The irqchips and PIT may be set before or after
 * the vCPUs; the kvmclock is best set last, right before the vCPUs run
 * (like resume after a pause), so the time spent restoring does not count
 * as guest time.  KVM_SET_PIT2 reloads each channel's count at the time of
 * the call (the saved count_load_time is host time and is not used by KVM).
 *
 * Section payload (suggested id X86_VM_STATE_ID, version
 * X86_VM_STATE_VERSION), little-endian, in this order:
 *   pic[0] (master), pic[1] (slave): last_irr irr imr isr priority_add
 *          irq_base read_reg_select poll special_mask init_state auto_eoi
 *          rotate_on_auto_eoi special_fully_nested_mode init4 elcr
 *          elcr_mask, u8 each (16)
 *   ioapic: base_address u64, ioregsel u32, id u32, irr u32, 24 x
 *          redirection entry u64 (212)
 *   pit: 3 x {count u32, latched_count u16, count_latched status_latched
 *          status read_state write_state write_latch rw_mode mode bcd gate
 *          u8, count_load_time s64} (24 each), flags u32, reserved 9 x u32
 *   clock: clock u64, flags u32, realtime u64, host_tsc u64
 * Not stored: kvm_ioapic_state.pad and kvm_clock_data's pad fields.
 */
#ifndef VISOR_ARCH_X86_VM_STATE_H
#define VISOR_ARCH_X86_VM_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "../../kvm/kvm.h"
#include "../../snapshot/format.h"

#define X86_VM_STATE_VERSION 1
#define X86_VM_STATE_ID "vm"

struct x86_vm_state {
	struct kvm_pic_state pic[2];    /* KVM_IRQCHIP_PIC_MASTER, _SLAVE */
	struct kvm_ioapic_state ioapic; /* KVM_IRQCHIP_IOAPIC */
	struct kvm_pit_state2 pit;
	uint64_t clock;          /* kvmclock, ns */
	uint32_t clock_flags;    /* KVM_CLOCK_* as KVM_GET_CLOCK reported them */
	uint64_t clock_realtime; /* host CLOCK_REALTIME at the read (KVM_CLOCK_REALTIME), else 0 */
	uint64_t clock_host_tsc; /* host TSC at the read (KVM_CLOCK_HOST_TSC), else 0 */
};

/* Read the VM's irqchips, PIT and kvmclock (vCPUs paused or not started).
 * The result is validated.  0, or -errno with a one-line message naming the
 * ioctl. */
int x86_vm_state_get(struct kvm *k, struct x86_vm_state *s, char *err, size_t errlen);

/* Write @s (validated first) into the VM: PIC master, PIC slave, IOAPIC,
 * PIT, then the kvmclock (KVM_SET_CLOCK with the saved value and no flags:
 * the time the snapshot spent on disk is not guest time).  0, or -errno
 * with a one-line message naming the ioctl. */
int x86_vm_state_set(struct kvm *k, const struct x86_vm_state *s, char *err, size_t errlen);

/*
 * Range rules ("vm: ..." messages, -EINVAL):
 *  - PIC: priority_add 0-7, irq_base a multiple of 8, init_state 0-3,
 *    read_reg_select poll special_mask auto_eoi rotate_on_auto_eoi
 *    special_fully_nested_mode init4 0 or 1, elcr within elcr_mask;
 *  - IOAPIC: base address 0xfec00000 (the one visor's layout and ACPI
 *    tables give; KVM decodes MMIO at the saved base), ioregsel 0-255, id
 *    0-15, irr only the 24 pins;
 *  - PIT channels: count 0-0x10000, count_latched 0-3, status_latched
 *    bcd gate 0 or 1, read_state write_state 0-4, rw_mode 0-3, mode 0-7
 *    or 0xff (never programmed); flags only HPET_LEGACY SPEAKER_DATA_ON;
 *    reserved 0;
 *  - kvmclock: flags only TSC_STABLE REALTIME HOST_TSC; realtime and
 *    host_tsc 0 unless their flag says they were read.
 * Not checked: IRR/IMR/ISR bytes, IOAPIC redirection entries (every bit
 * KVM does not own is guest-writable, reserved ones included), latched
 * counts and status bytes, the clock value.
 */
int x86_vm_state_validate(const struct x86_vm_state *s, char *err, size_t errlen);

void x86_vm_state_encode(const struct x86_vm_state *s, struct snap_writer *w);

/* Read a payload of @version into @s (zeroed first), consume it exactly
 * and validate it.  0 or -EINVAL with a one-line message. */
int x86_vm_state_decode(struct snap_cursor *c, uint32_t version, struct x86_vm_state *s,
			char *err, size_t errlen);

#endif
