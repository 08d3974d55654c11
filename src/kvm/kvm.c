/* SPDX-License-Identifier: MIT */
#include "kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int kvm_open(struct kvm *k, const char *path, char *err, size_t errlen)
{
	memset(k, 0, sizeof(*k));
	k->fd = k->vm_fd = -1;
	k->fd = open(path, O_RDWR | O_CLOEXEC);
	if (k->fd < 0) {
		int e = errno;
		if (e == ENOENT || e == ENODEV || e == ENXIO)
			snprintf(err, errlen,
				 "%s does not exist: this host offers no KVM (the kvm-intel/kvm-amd "
				 "module is not loaded, or this is a VM without nested "
				 "virtualization). Load the module, enable VT-x/AMD-V, or run visor "
				 "in the test lab (`make run` does that automatically)",
				 path);
		else if (e == EACCES || e == EPERM)
			snprintf(err, errlen,
				 "cannot open %s: permission denied. Add your user to the 'kvm' group "
				 "(sudo usermod -aG kvm $USER, then log in again) or run as root",
				 path);
		else
			snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
		return -e;
	}
	int api = ioctl(k->fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		snprintf(err, errlen, "%s speaks KVM API %d, visor needs %d", path, api, KVM_API_VERSION);
		close(k->fd);
		k->fd = -1;
		return -ENOTSUP;
	}
	static const struct {
		long cap;
		const char *name;
	} need[] = {
		{KVM_CAP_USER_MEMORY, "USER_MEMORY"}, {KVM_CAP_IRQCHIP, "IRQCHIP"},
		{KVM_CAP_EXT_CPUID, "EXT_CPUID"},     {KVM_CAP_PIT2, "PIT2"},
		{KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR"},
	};
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		if (ioctl(k->fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0) {
			snprintf(err, errlen, "%s lacks the KVM capability %s that visor needs", path,
				 need[i].name);
			close(k->fd);
			k->fd = -1;
			return -ENOTSUP;
		}
	}
	k->run_size = ioctl(k->fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (k->run_size < (int)sizeof(struct kvm_run)) {
		snprintf(err, errlen, "KVM_GET_VCPU_MMAP_SIZE failed");
		close(k->fd);
		k->fd = -1;
		return -ENOTSUP;
	}
	k->max_vcpus = ioctl(k->fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (k->max_vcpus <= 0)
		k->max_vcpus = ioctl(k->fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (k->max_vcpus <= 0)
		k->max_vcpus = 4;
	k->immediate_exit = ioctl(k->fd, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) > 0;
	return 0;
}

int kvm_check_cap(struct kvm *k, long cap)
{
	int r = ioctl(k->fd, KVM_CHECK_EXTENSION, cap);
	return r < 0 ? 0 : r;
}

int kvm_create_vm(struct kvm *k)
{
	k->vm_fd = ioctl(k->fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0)
		return -errno;
	return 0;
}

int kvm_set_memory(struct kvm *k, uint32_t slot, uint64_t gpa, uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
	};
	return ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

int kvm_irq_line(struct kvm *k, uint32_t gsi, int level)
{
	struct kvm_irq_level l = {.irq = gsi, .level = (uint32_t)level};
	return ioctl(k->vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

int kvm_create_vcpu(struct kvm *k, int id, struct kvm_vcpu *v)
{
	memset(v, 0, sizeof(*v));
	v->id = id;
	v->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0)
		return -errno;
	void *p = mmap(NULL, (size_t)k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		close(v->fd);
		v->fd = -1;
		return -e;
	}
	v->run = p;
	v->run_size = k->run_size;
	return 0;
}

void kvm_destroy_vcpu(struct kvm_vcpu *v)
{
	if (v->run)
		munmap(v->run, (size_t)v->run_size);
	if (v->fd >= 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}

void kvm_close(struct kvm *k)
{
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->fd >= 0)
		close(k->fd);
	k->fd = k->vm_fd = -1;
}
