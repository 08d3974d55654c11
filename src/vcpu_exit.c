/* SPDX-License-Identifier: MIT */
#include "vcpu_exit.h"

#include "util/log.h"

const char *vcpu_exit_name(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_UNKNOWN: return "UNKNOWN";
	case KVM_EXIT_EXCEPTION: return "EXCEPTION";
	case KVM_EXIT_IO: return "IO";
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_MMIO: return "MMIO";
	case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
	case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
	case KVM_EXIT_INTR: return "INTR";
	case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
	case KVM_EXIT_SYSTEM_EVENT: return "SYSTEM_EVENT";
	case KVM_EXIT_DIRTY_RING_FULL: return "DIRTY_RING_FULL";
	default: return "?";
	}
}

static enum vcpu_exit_action handle_io(struct kvm_run *run, size_t run_size, struct bus *pio)
{
	uint32_t size = run->io.size;
	uint64_t off = run->io.data_offset;
	uint64_t total = (uint64_t)run->io.count * size;
	if ((size != 1 && size != 2 && size != 4) || off > run_size || total > run_size - off) {
		log_error("malformed I/O exit (port 0x%x size %u count %u)", run->io.port, size,
			  run->io.count);
		return VCPU_CRASH;
	}
	uint8_t *data = (uint8_t *)run + off;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	for (uint32_t i = 0; i < run->io.count; i++)
		bus_access(pio, run->io.port, data + (size_t)i * size, size, is_write);
	return VCPU_CONTINUE;
}

enum vcpu_exit_action vcpu_handle_exit(struct kvm_run *run, size_t run_size, struct bus *pio,
				       struct bus *mmio)
{
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		return handle_io(run, run_size, pio);
	case KVM_EXIT_MMIO: {
		uint32_t len = run->mmio.len;
		if (len == 0 || len > sizeof(run->mmio.data))
			return VCPU_CRASH;
		bus_access(mmio, run->mmio.phys_addr, run->mmio.data, len, run->mmio.is_write);
		return VCPU_CONTINUE;
	}
	case KVM_EXIT_INTR:
	case KVM_EXIT_HLT: /* only without an in-kernel LAPIC: nothing to do */
		return VCPU_CONTINUE;
	case KVM_EXIT_SHUTDOWN:
		return VCPU_SHUTDOWN;
	case KVM_EXIT_DIRTY_RING_FULL:
		return VCPU_DIRTY_RING_FULL;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_SHUTDOWN: return VCPU_POWEROFF;
		case KVM_SYSTEM_EVENT_RESET: return VCPU_RESET;
		default: return VCPU_CRASH;
		}
	default:
		return VCPU_CRASH;
	}
}
