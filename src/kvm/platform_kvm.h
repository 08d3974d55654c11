/* SPDX-License-Identifier: MIT */
/*
 * platform_kvm.h - struct platform (src/devices/platform.h) on top of KVM:
 * KVM_IRQ_LINE, irqfd, MSI GSI routes, KVM_SIGNAL_MSI and ioeventfd.
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
};

/* Set up @kp for VM @k with the loop and buses devices should use. */
void kvm_platform_init(struct kvm_platform *kp, struct kvm *k, struct loop *loop, struct bus *pio,
		       struct bus *mmio);
/* Close the eventfds it created. */
void kvm_platform_destroy(struct kvm_platform *kp);

#endif
