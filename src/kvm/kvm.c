/* SPDX-License-Identifier: MIT */
#include "kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int kvm_open(struct kvm *k, const char *path, char *err, size_t errlen)
{
	memset(k, 0, sizeof(*k));
	k->fd = k->vm_fd = -1;
	pthread_mutex_init(&k->route_lock, NULL);
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
	k->ioeventfd_any_len = ioctl(k->fd, KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD_ANY_LENGTH) > 0;
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

int kvm_set_memory(struct kvm *k, uint32_t slot, uint64_t gpa, uint64_t size, void *hva,
		   bool log_dirty)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
	};
	return ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

int kvm_get_dirty_log(struct kvm *k, uint32_t slot, uint64_t *bitmap)
{
	struct kvm_dirty_log d = {.slot = slot};
	d.dirty_bitmap = bitmap;
	return ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &d) < 0 ? -errno : 0;
}

uint64_t kvm_dirty_ring_max(struct kvm *k, long *cap)
{
	int r = kvm_check_cap(k, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
	*cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
	if (r <= 0) {
		r = kvm_check_cap(k, KVM_CAP_DIRTY_LOG_RING);
		*cap = KVM_CAP_DIRTY_LOG_RING;
	}
	return r > 0 ? (uint64_t)r : 0;
}

int kvm_dirty_ring_enable(struct kvm *k, long cap, uint32_t entries)
{
	if (!entries || (entries & (entries - 1)))
		return -EINVAL;
	struct kvm_enable_cap ec = {.cap = (uint32_t)cap};
	ec.args[0] = (uint64_t)entries * sizeof(struct kvm_dirty_gfn);
	if (ioctl(k->vm_fd, KVM_ENABLE_CAP, &ec) < 0)
		return -errno;
	k->dirty_ring_entries = entries;
	return 0;
}

int kvm_reset_dirty_rings(struct kvm *k)
{
	int r = ioctl(k->vm_fd, KVM_RESET_DIRTY_RINGS, 0);
	return r < 0 ? -errno : r;
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
	if (k->dirty_ring_entries) {
		long page = sysconf(_SC_PAGESIZE);
		size_t bytes = (size_t)k->dirty_ring_entries * sizeof(struct kvm_dirty_gfn);
		void *ring = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd,
				  (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * (page > 0 ? page : 4096));
		if (ring == MAP_FAILED) {
			int e = errno;
			kvm_destroy_vcpu(v);
			return -e;
		}
		v->ring = ring;
		v->ring_bytes = bytes;
	}
	return 0;
}

void kvm_destroy_vcpu(struct kvm_vcpu *v)
{
	if (v->ring)
		munmap(v->ring, v->ring_bytes);
	v->ring = NULL;
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

int kvm_route_irqchip(struct kvm *k, uint32_t gsi, uint32_t chip, uint32_t pin)
{
	pthread_mutex_lock(&k->route_lock);
	int r = -ENOSPC;
	if (k->nroutes < KVM_MAX_ROUTES) {
		struct kvm_irq_routing_entry *e = &k->routes[k->nroutes++];
		memset(e, 0, sizeof(*e));
		e->gsi = gsi;
		e->type = KVM_IRQ_ROUTING_IRQCHIP;
		e->u.irqchip.irqchip = chip;
		e->u.irqchip.pin = pin;
		r = 0;
	}
	pthread_mutex_unlock(&k->route_lock);
	return r;
}

/* route_lock held */
static int commit_locked(struct kvm *k)
{
	size_t sz = sizeof(struct kvm_irq_routing) + k->nroutes * sizeof(struct kvm_irq_routing_entry);
	struct kvm_irq_routing *rt = calloc(1, sz);
	if (!rt)
		return -ENOMEM;
	rt->nr = k->nroutes;
	memcpy(rt->entries, k->routes, k->nroutes * sizeof(struct kvm_irq_routing_entry));
	int r = ioctl(k->vm_fd, KVM_SET_GSI_ROUTING, rt) < 0 ? -errno : 0;
	free(rt);
	return r;
}

int kvm_routes_commit(struct kvm *k)
{
	pthread_mutex_lock(&k->route_lock);
	int r = commit_locked(k);
	pthread_mutex_unlock(&k->route_lock);
	return r;
}

static struct kvm_irq_routing_entry *find_msi(struct kvm *k, uint32_t gsi)
{
	for (uint32_t i = 0; i < k->nroutes; i++)
		if (k->routes[i].gsi == gsi && k->routes[i].type == KVM_IRQ_ROUTING_MSI)
			return &k->routes[i];
	return NULL;
}

int kvm_msi_gsi_reserve(struct kvm *k, uint32_t *gsi)
{
	pthread_mutex_lock(&k->route_lock);
	int r = -ENOSPC;
	for (uint32_t i = 0; i < KVM_MAX_ROUTES - KVM_FIRST_MSI_GSI; i++) {
		if (k->msi_gsi_used[i])
			continue;
		k->msi_gsi_used[i] = 1;
		*gsi = KVM_FIRST_MSI_GSI + i;
		r = 0;
		break;
	}
	pthread_mutex_unlock(&k->route_lock);
	return r;
}

static bool msi_gsi_reserved(struct kvm *k, uint32_t gsi)
{
	uint32_t i = gsi - KVM_FIRST_MSI_GSI;
	return gsi >= KVM_FIRST_MSI_GSI && i < KVM_MAX_ROUTES - KVM_FIRST_MSI_GSI &&
	       k->msi_gsi_used[i];
}

int kvm_msi_route_update(struct kvm *k, uint32_t gsi, uint64_t addr, uint32_t data)
{
	pthread_mutex_lock(&k->route_lock);
	struct kvm_irq_routing_entry *e = find_msi(k, gsi);
	int r = 0;
	if (!msi_gsi_reserved(k, gsi)) {
		r = -ENOENT;
	} else if (!e) {
		/* the route's first message: add the entry */
		if (k->nroutes >= KVM_MAX_ROUTES) {
			r = -ENOSPC;
		} else {
			e = &k->routes[k->nroutes++];
			memset(e, 0, sizeof(*e));
			e->gsi = gsi;
			e->type = KVM_IRQ_ROUTING_MSI;
			e->u.msi.address_lo = (uint32_t)addr;
			e->u.msi.address_hi = (uint32_t)(addr >> 32);
			e->u.msi.data = data;
			r = commit_locked(k);
			if (r)
				k->nroutes--;
		}
	} else if (e->u.msi.address_lo != (uint32_t)addr ||
		   e->u.msi.address_hi != (uint32_t)(addr >> 32) || e->u.msi.data != data) {
		struct kvm_irq_routing_entry old = *e;
		e->u.msi.address_lo = (uint32_t)addr;
		e->u.msi.address_hi = (uint32_t)(addr >> 32);
		e->u.msi.data = data;
		r = commit_locked(k);
		if (r)
			*e = old; /* the master copy stays what KVM has */
	} /* else unchanged: skip the (costly) table reload */
	pthread_mutex_unlock(&k->route_lock);
	return r;
}

void kvm_msi_route_free(struct kvm *k, uint32_t gsi)
{
	pthread_mutex_lock(&k->route_lock);
	struct kvm_irq_routing_entry *e = find_msi(k, gsi);
	if (e) {
		*e = k->routes[--k->nroutes];
		commit_locked(k);
	}
	if (msi_gsi_reserved(k, gsi))
		k->msi_gsi_used[gsi - KVM_FIRST_MSI_GSI] = 0;
	pthread_mutex_unlock(&k->route_lock);
}

int kvm_irqfd(struct kvm *k, int fd, uint32_t gsi, bool assign)
{
	struct kvm_irqfd f = {.fd = (uint32_t)fd, .gsi = gsi, .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN};
	return ioctl(k->vm_fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

int kvm_ioeventfd(struct kvm *k, int fd, uint64_t addr, uint32_t len, bool pio, bool datamatch,
		  uint64_t match, bool assign)
{
	if (len == 0 && (pio || datamatch || !k->ioeventfd_any_len))
		len = 2;
	struct kvm_ioeventfd e = {
		.datamatch = match,
		.addr = addr,
		.len = len,
		.fd = fd,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
			 (datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) |
			 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};
	return ioctl(k->vm_fd, KVM_IOEVENTFD, &e) < 0 ? -errno : 0;
}

int kvm_signal_msi(struct kvm *k, uint64_t addr, uint32_t data)
{
	struct kvm_msi m = {.address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32), .data = data};
	int r = ioctl(k->vm_fd, KVM_SIGNAL_MSI, &m);
	return r < 0 ? -errno : 0;
}

int kvm_get_clock(struct kvm *k, uint64_t *ns)
{
	struct kvm_clock_data cd;
	memset(&cd, 0, sizeof(cd));
	if (ioctl(k->vm_fd, KVM_GET_CLOCK, &cd) < 0)
		return -errno;
	*ns = cd.clock;
	return 0;
}

int kvm_set_clock(struct kvm *k, uint64_t ns)
{
	struct kvm_clock_data cd;
	memset(&cd, 0, sizeof(cd));
	cd.clock = ns;
	return ioctl(k->vm_fd, KVM_SET_CLOCK, &cd) < 0 ? -errno : 0;
}

int kvm_kvmclock_ctrl(struct kvm_vcpu *v)
{
	return ioctl(v->fd, KVM_KVMCLOCK_CTRL, 0) < 0 ? -errno : 0;
}
