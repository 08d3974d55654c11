/* SPDX-License-Identifier: MIT */
/*
 * platform_kvm.h - struct platform (src/devices/platform.h) on top of KVM:
 * KVM_IRQ_LINE, irqfd, MSI GSI routes, KVM_SIGNAL_MSI, ioeventfd, and the
 * deferred set-up queue (one eventfd on the event loop).
 *
 * MSI routes: msi_alloc reserves a GSI and binds a fresh eventfd to it
 * (KVM_IRQFD) without a routing entry, so a write delivers nothing;
 * msi_update adds or changes the entry (KVM_SET_GSI_ROUTING).  Both are
 * for boot time and the loop thread (platform.h).
 *
 * Deferred work: defer() appends to a FIFO under work_lock and writes
 * work_efd when the queue was empty; the loop's handler takes the whole
 * queue and runs each fn in order (work queued meanwhile waits for the
 * next wake-up, so a guest that keeps re-queueing cannot hold the loop).
 */
#ifndef VISOR_KVM_PLATFORM_KVM_H
#define VISOR_KVM_PLATFORM_KVM_H

#include <pthread.h>

#include "../devices/platform.h"
#include "kvm.h"

#define KVM_PLATFORM_MAX_MSI 256
#define KVM_PLATFORM_MAX_GSI 24

struct kvm_platform {
	struct platform p; /* handed to devices */
	struct kvm *kvm;
	pthread_mutex_t lock;
	int gsi_fd[KVM_PLATFORM_MAX_GSI]; /* irqfds per legacy GSI, -1 if none */
	struct {
		bool used;
		int fd;
		uint32_t gsi;
	} msi[KVM_PLATFORM_MAX_MSI];
	/* deferred set-up (platform.h) */
	pthread_mutex_t work_lock;
	struct platform_work *work_head, *work_tail;
	int work_efd; /* on p.loop; -1: no deferral (devices work inline) */
};

/*
 * Set up @kp for VM @k with the loop and buses devices should use, and
 * put the deferred-work eventfd on @loop.  Returns 0, or -errno when the
 * eventfd could not be made or watched: @kp is still usable then, but
 * without deferral devices do their set-up on the calling thread (vCPUs
 * included), so the caller should treat it as an error.
 */
int kvm_platform_init(struct kvm_platform *kp, struct kvm *k, struct loop *loop, struct bus *pio,
		      struct bus *mmio);
/* Close the eventfds it created (work still queued is dropped).  On the
 * loop thread or with the loop stopped. */
void kvm_platform_destroy(struct kvm_platform *kp);

/* Run the deferred set-up queued so far (and what it queues) now, on the
 * loop thread: before a snapshot, so the state saved is the state the
 * guest asked for (MSI routes, ioeventfds after a BAR move). */
void kvm_platform_drain(struct kvm_platform *kp);

#endif
