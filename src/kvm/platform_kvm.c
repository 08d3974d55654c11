/* SPDX-License-Identifier: MIT */
#include "platform_kvm.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../util/log.h"

#define KP(p) ((struct kvm_platform *)(p))

static void kp_set_irq(struct platform *p, uint32_t gsi, int level)
{
	int r = kvm_irq_line(KP(p)->kvm, gsi, level);
	if (r) {
		static struct ratelimit rl;
		log_ratelimited(&rl, LOG_WARN, "KVM_IRQ_LINE %u: %s", gsi, strerror(-r));
	}
}

static int kp_irqfd_for_gsi(struct platform *p, uint32_t gsi, int *fd)
{
	struct kvm_platform *kp = KP(p);
	if (gsi >= KVM_PLATFORM_MAX_GSI)
		return -EINVAL;
	pthread_mutex_lock(&kp->lock);
	int r = 0;
	if (kp->gsi_fd[gsi] < 0) {
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (efd < 0) {
			r = -errno;
		} else if ((r = kvm_irqfd(kp->kvm, efd, gsi, true))) {
			close(efd);
		} else {
			kp->gsi_fd[gsi] = efd;
		}
	}
	if (!r)
		*fd = kp->gsi_fd[gsi];
	pthread_mutex_unlock(&kp->lock);
	return r;
}

static int kp_msi_alloc(struct platform *p, uint64_t addr, uint32_t data, int *handle, int *fd)
{
	struct kvm_platform *kp = KP(p);
	pthread_mutex_lock(&kp->lock);
	int r = -ENOSPC;
	for (int i = 0; i < KVM_PLATFORM_MAX_MSI; i++) {
		if (kp->msi[i].used)
			continue;
		uint32_t gsi;
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (efd < 0) {
			r = -errno;
			break;
		}
		if ((r = kvm_msi_route_alloc(kp->kvm, addr, data, &gsi))) {
			close(efd);
			break;
		}
		if ((r = kvm_irqfd(kp->kvm, efd, gsi, true))) {
			kvm_msi_route_free(kp->kvm, gsi);
			close(efd);
			break;
		}
		kp->msi[i].used = true;
		kp->msi[i].fd = efd;
		kp->msi[i].gsi = gsi;
		*handle = i;
		*fd = efd;
		break;
	}
	pthread_mutex_unlock(&kp->lock);
	return r;
}

static int kp_msi_update(struct platform *p, int handle, uint64_t addr, uint32_t data)
{
	struct kvm_platform *kp = KP(p);
	if (handle < 0 || handle >= KVM_PLATFORM_MAX_MSI)
		return -EINVAL;
	pthread_mutex_lock(&kp->lock);
	int r = kp->msi[handle].used ? kvm_msi_route_update(kp->kvm, kp->msi[handle].gsi, addr, data)
				     : -ENOENT;
	pthread_mutex_unlock(&kp->lock);
	return r;
}

static void kp_msi_free(struct platform *p, int handle)
{
	struct kvm_platform *kp = KP(p);
	if (handle < 0 || handle >= KVM_PLATFORM_MAX_MSI)
		return;
	pthread_mutex_lock(&kp->lock);
	if (kp->msi[handle].used) {
		kvm_irqfd(kp->kvm, kp->msi[handle].fd, kp->msi[handle].gsi, false);
		kvm_msi_route_free(kp->kvm, kp->msi[handle].gsi);
		close(kp->msi[handle].fd);
		kp->msi[handle].used = false;
	}
	pthread_mutex_unlock(&kp->lock);
}

static int kp_msi_send(struct platform *p, uint64_t addr, uint32_t data)
{
	return kvm_signal_msi(KP(p)->kvm, addr, data);
}

static int kp_ioeventfd_add(struct platform *p, bool pio, uint64_t addr, uint32_t len, int efd)
{
	return kvm_ioeventfd(KP(p)->kvm, efd, addr, len, pio, false, 0, true);
}

static int kp_ioeventfd_del(struct platform *p, bool pio, uint64_t addr, uint32_t len, int efd)
{
	return kvm_ioeventfd(KP(p)->kvm, efd, addr, len, pio, false, 0, false);
}

static int kp_ioeventfd_add_dm(struct platform *p, bool pio, uint64_t addr, uint32_t len,
			       uint64_t datamatch, int efd)
{
	return kvm_ioeventfd(KP(p)->kvm, efd, addr, len, pio, true, datamatch, true);
}

static int kp_ioeventfd_del_dm(struct platform *p, bool pio, uint64_t addr, uint32_t len,
			       uint64_t datamatch, int efd)
{
	return kvm_ioeventfd(KP(p)->kvm, efd, addr, len, pio, true, datamatch, false);
}

static const struct platform_ops kvm_platform_ops = {
	.set_irq = kp_set_irq,
	.irqfd_for_gsi = kp_irqfd_for_gsi,
	.msi_alloc = kp_msi_alloc,
	.msi_update = kp_msi_update,
	.msi_free = kp_msi_free,
	.msi_send = kp_msi_send,
	.ioeventfd_add = kp_ioeventfd_add,
	.ioeventfd_del = kp_ioeventfd_del,
	.ioeventfd_add_datamatch = kp_ioeventfd_add_dm,
	.ioeventfd_del_datamatch = kp_ioeventfd_del_dm,
};

void kvm_platform_init(struct kvm_platform *kp, struct kvm *k, struct loop *loop, struct bus *pio,
		       struct bus *mmio)
{
	memset(kp, 0, sizeof(*kp));
	kp->p.ops = &kvm_platform_ops;
	kp->p.loop = loop;
	kp->p.pio = pio;
	kp->p.mmio = mmio;
	kp->kvm = k;
	pthread_mutex_init(&kp->lock, NULL);
	for (int i = 0; i < KVM_PLATFORM_MAX_GSI; i++)
		kp->gsi_fd[i] = -1;
}

void kvm_platform_destroy(struct kvm_platform *kp)
{
	if (!kp->kvm)
		return;
	for (int i = 0; i < KVM_PLATFORM_MAX_GSI; i++)
		if (kp->gsi_fd[i] >= 0)
			close(kp->gsi_fd[i]);
	for (int i = 0; i < KVM_PLATFORM_MAX_MSI; i++)
		if (kp->msi[i].used)
			close(kp->msi[i].fd);
	pthread_mutex_destroy(&kp->lock);
	kp->kvm = NULL;
}
