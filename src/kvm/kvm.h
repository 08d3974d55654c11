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
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* GSI routing table (KVM_SET_GSI_ROUTING replaces the whole table, so
 * visor keeps the master copy).  GSIs below KVM_FIRST_MSI_GSI are the
 * irqchip pins; MSI routes get GSIs from there up. */
#define KVM_MAX_ROUTES 512
#define KVM_FIRST_MSI_GSI 24

struct kvm {
	int fd;            /* /dev/kvm */
	int vm_fd;
	int run_size;      /* size of the kvm_run mapping */
	int max_vcpus;
	bool immediate_exit;
	bool ioeventfd_any_len; /* KVM_CAP_IOEVENTFD_ANY_LENGTH */
	/* KVM's dirty ring (kvm_dirty_ring_enable): entries per vCPU, 0 when
	 * the VM logs dirty pages into KVM's bitmap */
	uint32_t dirty_ring_entries;

	pthread_mutex_t route_lock;
	uint32_t nroutes;
	struct kvm_irq_routing_entry routes[KVM_MAX_ROUTES];
	uint8_t msi_gsi_used[KVM_MAX_ROUTES]; /* by GSI - KVM_FIRST_MSI_GSI */
};

struct kvm_vcpu {
	int fd;
	int id;
	struct kvm_run *run;
	int run_size;
	/* the vCPU's dirty ring (k->dirty_ring_entries entries), NULL without */
	struct kvm_dirty_gfn *ring;
	size_t ring_bytes;
};

/* Open @path (normally "/dev/kvm") and check the API version and the
 * capabilities visor relies on.  On failure returns -errno and writes a
 * user-facing explanation (what is wrong, what it means, what to do). */
int kvm_open(struct kvm *k, const char *path, char *err, size_t errlen);

/* Create the VM (KVM_CREATE_VM).  0 / -errno. */
int kvm_create_vm(struct kvm *k);

/* Map [hva, hva+size) at guest-physical @gpa as memory slot @slot; with
 * @log_dirty KVM logs the pages the guest writes (KVM_MEM_LOG_DIRTY_PAGES). */
int kvm_set_memory(struct kvm *k, uint32_t slot, uint64_t gpa, uint64_t size, void *hva,
		   bool log_dirty);
/* KVM_GET_DIRTY_LOG: the pages of slot @slot written since the last call
 * (or since the slot was made), bit i for page i, into @bitmap (room for
 * the slot's pages rounded up to 64 bits); KVM clears its log.  0 / -errno.
 * Not with the dirty ring (KVM refuses it then, -ENXIO on x86). */
int kvm_get_dirty_log(struct kvm *k, uint32_t slot, uint64_t *bitmap);

/*
 * KVM's dirty ring (api.rst, KVM_CAP_DIRTY_LOG_RING): each vCPU logs the
 * pages the guest writes in slots with KVM_MEM_LOG_DIRTY_PAGES into a ring
 * of struct kvm_dirty_gfn it shares with user space (mapped from the vCPU
 * fd at KVM_DIRTY_LOG_PAGE_OFFSET pages), instead of the slot's bitmap.
 * kvm_dirty_ring_max: the largest ring in bytes the host allows (the
 * capability's value; 0 without the ring) and in *@cap the capability to
 * enable: KVM_CAP_DIRTY_LOG_RING_ACQ_REL where the host has it, else
 * KVM_CAP_DIRTY_LOG_RING.
 * kvm_dirty_ring_enable: rings of @entries (a power of two) per vCPU, on
 * the VM before any vCPU exists; every vCPU created afterwards maps its
 * ring (kvm_vcpu.ring).  0 / -errno (-EINVAL: KVM refused the size).
 * kvm_reset_dirty_rings: KVM_RESET_DIRTY_RINGS, re-protecting the pages of
 * every entry user space marked harvested; the number reset / -errno.
 */
uint64_t kvm_dirty_ring_max(struct kvm *k, long *cap);
int kvm_dirty_ring_enable(struct kvm *k, long cap, uint32_t entries);
int kvm_reset_dirty_rings(struct kvm *k);

/* Set an interrupt line of the in-kernel irqchip (KVM_IRQ_LINE). */
int kvm_irq_line(struct kvm *k, uint32_t gsi, int level);

/* KVM_CHECK_EXTENSION on /dev/kvm; returns the value (0 = unsupported). */
int kvm_check_cap(struct kvm *k, long cap);

/* Create vCPU @id and map its kvm_run.  0 / -errno. */
int kvm_create_vcpu(struct kvm *k, int id, struct kvm_vcpu *v);
void kvm_destroy_vcpu(struct kvm_vcpu *v);

void kvm_close(struct kvm *k);

/* Add an irqchip route (GSI -> PIC/IOAPIC pin) to the table; takes effect
 * at the next kvm_routes_commit().  0 / -ENOSPC. */
int kvm_route_irqchip(struct kvm *k, uint32_t gsi, uint32_t chip, uint32_t pin);
/* Push the routing table to KVM.  0 / -errno. */
int kvm_routes_commit(struct kvm *k);

/* Reserve a GSI for an MSI route without giving it a routing entry yet
 * (nothing is committed: an irqfd bound to it delivers nothing until the
 * first kvm_msi_route_update).  Thread-safe.  0 / -ENOSPC. */
int kvm_msi_gsi_reserve(struct kvm *k, uint32_t *gsi);
/* Route reserved GSI @gsi to the MSI message (addr, data) and commit
 * (KVM_SET_GSI_ROUTING; skipped when the message is unchanged).  On
 * failure the route stays as it was.  Thread-safe.  0 / -ENOENT (not
 * reserved) / -ENOSPC / -errno. */
int kvm_msi_route_update(struct kvm *k, uint32_t gsi, uint64_t addr, uint32_t data);
/* Remove @gsi's entry (committing if it had one) and release the
 * reservation. */
void kvm_msi_route_free(struct kvm *k, uint32_t gsi);

/* Bind (assign) or unbind eventfd @fd to @gsi (KVM_IRQFD). */
int kvm_irqfd(struct kvm *k, int fd, uint32_t gsi, bool assign);
/* Bind or unbind eventfd @fd to guest writes of @len bytes at @addr in
 * MMIO or port space (KVM_IOEVENTFD), optionally only for value @match.
 * @len 0 (MMIO, no datamatch) means a write of any width; KVM then puts it
 * on its fast MMIO bus, where (on VMX) a write signals the eventfd without
 * decoding the instruction.  Without KVM_CAP_IOEVENTFD_ANY_LENGTH it falls
 * back to 2-byte writes. */
int kvm_ioeventfd(struct kvm *k, int fd, uint64_t addr, uint32_t len, bool pio, bool datamatch,
		  uint64_t match, bool assign);
/* The VM's kvmclock (KVM_GET_CLOCK / KVM_SET_CLOCK): read when the VM
 * pauses and written back on resume, so the guest's clock does not count
 * the time it was paused.  0 / -errno. */
int kvm_get_clock(struct kvm *k, uint64_t *ns);
int kvm_set_clock(struct kvm *k, uint64_t ns);
/* Tell the guest (PVCLOCK_GUEST_STOPPED) that vCPU @v was stopped by the
 * host, so its soft-lockup watchdog does not fire (KVM_KVMCLOCK_CTRL).
 * -EINVAL when the guest has no kvmclock: harmless. */
int kvm_kvmclock_ctrl(struct kvm_vcpu *v);

/* Inject one MSI (KVM_SIGNAL_MSI). */
int kvm_signal_msi(struct kvm *k, uint64_t addr, uint32_t data);

#endif
