/* SPDX-License-Identifier: MIT */
#include "platform_kvm.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../event/loop.h"
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

static int kp_msi_alloc(struct platform *p, int *handle, int *fd)
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
		/* no routing entry yet: the irqfd delivers nothing until the
		 * first msi_update gives the GSI a message */
		if ((r = kvm_msi_gsi_reserve(kp->kvm, &gsi))) {
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

/* ---- deferred set-up ------------------------------------------------------ */

static int kp_defer(struct platform *p, struct platform_work *w)
{
	struct kvm_platform *kp = KP(p);
	if (kp->work_efd < 0)
		return -ENOTCONN;
	pthread_mutex_lock(&kp->work_lock);
	bool wake = false;
	if (!w->queued) {
		w->queued = true;
		w->next = NULL;
		wake = !kp->work_head;
		if (kp->work_tail)
			kp->work_tail->next = w;
		else
			kp->work_head = w;
		kp->work_tail = w;
	}
	pthread_mutex_unlock(&kp->work_lock);
	if (wake) {
		/* a non-empty queue has a wake-up on its way already */
		uint64_t one = 1;
		if (write(kp->work_efd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
			static struct ratelimit rl;
			log_ratelimited(&rl, LOG_WARN, "deferred set-up eventfd: %s",
					strerror(errno));
		}
	}
	return 0;
}

static void kp_defer_cancel(struct platform *p, struct platform_work *w)
{
	struct kvm_platform *kp = KP(p);
	pthread_mutex_lock(&kp->work_lock);
	struct platform_work **pp = &kp->work_head, *prev = NULL;
	while (*pp && *pp != w) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (*pp) {
		*pp = w->next;
		if (kp->work_tail == w)
			kp->work_tail = prev;
		w->queued = false;
		w->next = NULL;
	}
	pthread_mutex_unlock(&kp->work_lock);
}

/* Run what is queued now, in order (the loop thread). */
static void run_queue(struct kvm_platform *kp)
{
	pthread_mutex_lock(&kp->work_lock);
	struct platform_work *w = kp->work_head;
	kp->work_head = kp->work_tail = NULL;
	pthread_mutex_unlock(&kp->work_lock);
	while (w) {
		/* still marked queued until its turn: a defer() of it now is
		 * served by the run below */
		pthread_mutex_lock(&kp->work_lock);
		struct platform_work *next = w->next;
		w->next = NULL;
		w->queued = false;
		pthread_mutex_unlock(&kp->work_lock);
		w->fn(w);
		w = next;
	}
}

static void on_work(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct kvm_platform *kp = ctx;
	uint64_t cnt;
	(void)l;
	(void)events;
	/* consume the wake-up before taking the queue: a defer() after this
	 * point finds the queue empty and writes again */
	if (read(fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		return;
	run_queue(kp);
}

void kvm_platform_drain(struct kvm_platform *kp)
{
	/* work may queue more work: run until the queue stays empty */
	for (int i = 0; i < 16; i++) {
		pthread_mutex_lock(&kp->work_lock);
		bool empty = !kp->work_head;
		pthread_mutex_unlock(&kp->work_lock);
		if (empty)
			return;
		run_queue(kp);
	}
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
	.defer = kp_defer,
	.defer_cancel = kp_defer_cancel,
};

int kvm_platform_init(struct kvm_platform *kp, struct kvm *k, struct loop *loop, struct bus *pio,
		      struct bus *mmio)
{
	memset(kp, 0, sizeof(*kp));
	kp->p.ops = &kvm_platform_ops;
	kp->p.loop = loop;
	kp->p.pio = pio;
	kp->p.mmio = mmio;
	kp->kvm = k;
	pthread_mutex_init(&kp->lock, NULL);
	pthread_mutex_init(&kp->work_lock, NULL);
	for (int i = 0; i < KVM_PLATFORM_MAX_GSI; i++)
		kp->gsi_fd[i] = -1;
	kp->work_efd = -1;
	if (!loop)
		return 0; /* nothing to defer to: devices work inline */
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int r = efd < 0 ? -errno : loop_add(loop, efd, EPOLLIN, on_work, kp);
	if (r) {
		if (efd >= 0)
			close(efd);
		log_warn("no deferred set-up (%s): vCPU threads will set up ioeventfds and "
			 "MSI routes themselves",
			 strerror(-r));
		return r;
	}
	kp->work_efd = efd;
	return 0;
}

void kvm_platform_destroy(struct kvm_platform *kp)
{
	if (!kp->kvm)
		return;
	if (kp->work_efd >= 0) {
		loop_del(kp->p.loop, kp->work_efd);
		close(kp->work_efd);
		kp->work_efd = -1;
	}
	kp->work_head = kp->work_tail = NULL;
	for (int i = 0; i < KVM_PLATFORM_MAX_GSI; i++)
		if (kp->gsi_fd[i] >= 0)
			close(kp->gsi_fd[i]);
	for (int i = 0; i < KVM_PLATFORM_MAX_MSI; i++)
		if (kp->msi[i].used)
			close(kp->msi[i].fd);
	pthread_mutex_destroy(&kp->work_lock);
	pthread_mutex_destroy(&kp->lock);
	kp->kvm = NULL;
}
