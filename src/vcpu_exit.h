/* SPDX-License-Identifier: MIT */
/*
 * vcpu_exit.h - what to do with one KVM_RUN exit.
 *
 * A plain function of the kvm_run page and the two buses, so it is
 * unit-tested with fabricated exits (no KVM needed).
 */
#ifndef VISOR_VCPU_EXIT_H
#define VISOR_VCPU_EXIT_H

#include <linux/kvm.h>
#include <stddef.h>

#include "devices/bus.h"

enum vcpu_exit_action {
	VCPU_CONTINUE,      /* handled: run the vCPU again */
	VCPU_SHUTDOWN,      /* triple fault / KVM_EXIT_SHUTDOWN */
	VCPU_RESET,         /* guest asked for a reset (system event) */
	VCPU_POWEROFF,      /* guest asked to power off (system event) */
	VCPU_CRASH,         /* internal error, failed entry, unknown exit */
	VCPU_DIRTY_RING_FULL, /* KVM's dirty ring is full: harvest it, then run again */
};

/* Handle the exit described by @run (a mapping of @run_size bytes).
 * I/O and MMIO exits are dispatched to @pio / @mmio; string I/O with a
 * count is replayed element by element.  An exit whose data does not lie
 * inside the kvm_run mapping is a crash, not a wild access. */
enum vcpu_exit_action vcpu_handle_exit(struct kvm_run *run, size_t run_size, struct bus *pio,
				       struct bus *mmio);

/* Human-readable name of a KVM exit reason. */
const char *vcpu_exit_name(uint32_t reason);

#endif
