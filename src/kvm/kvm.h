/* SPDX-License-Identifier: MIT */
/*
 * kvm.h - thin wrappers over the KVM ioctl API (Documentation/virt/kvm/api.rst).
 *
 * No policy lives here: these functions open /dev/kvm, create the VM and its
 * vCPUs, register memory and raise interrupt lines, and return 0 / -errno.
 */
#ifndef VISOR_KVM_KVM_H
#define VISOR_KVM_KVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kvm {
	int fd;            /* /dev/kvm */
	int vm_fd;
	int run_size;      /* size of the kvm_run mapping */
	int max_vcpus;
	bool immediate_exit;
};

struct kvm_vcpu {
	int fd;
	int id;
	struct kvm_run *run;
	int run_size;
};

/* Open @path (normally "/dev/kvm") and check the API version and the
 * capabilities visor relies on.  On failure returns -errno and writes a
 * user-facing explanation (what is wrong, what it means, what to do). */
int kvm_open(struct kvm *k, const char *path, char *err, size_t errlen);

/* Create the VM (KVM_CREATE_VM).  0 / -errno. */
int kvm_create_vm(struct kvm *k);

/* Map [hva, hva+size) at guest-physical @gpa as memory slot @slot. */
int kvm_set_memory(struct kvm *k, uint32_t slot, uint64_t gpa, uint64_t size, void *hva);

/* Set an interrupt line of the in-kernel irqchip (KVM_IRQ_LINE). */
int kvm_irq_line(struct kvm *k, uint32_t gsi, int level);

/* KVM_CHECK_EXTENSION on /dev/kvm; returns the value (0 = unsupported). */
int kvm_check_cap(struct kvm *k, long cap);

/* Create vCPU @id and map its kvm_run.  0 / -errno. */
int kvm_create_vcpu(struct kvm *k, int id, struct kvm_vcpu *v);
void kvm_destroy_vcpu(struct kvm_vcpu *v);

void kvm_close(struct kvm *k);

#endif
