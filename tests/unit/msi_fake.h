/* SPDX-License-Identifier: MIT */
/*
 * msi_fake.h - a recording struct platform for the PCI tests: MSI routes
 * (each one a real eventfd, so delivery can be observed), ioeventfds, one
 * irqfd for whatever GSI is asked (virtio-mmio) and, optionally, deferred
 * set-up on a real event loop (fp_enable_defer).
 * Every call is counted; the first MSI_FAKE_MAXREC (MSI) or
 * MSI_FAKE_MAXIOE (ioeventfd) calls also keep their arguments and the
 * thread that made them.
 *
 * Thread check: with f->loop_thread_set, every set-up call (msi_alloc,
 * msi_update, msi_free, msi_send, ioeventfd_add/del) made on a thread
 * other than f->loop_thread counts in f->off_loop_calls - the calls a
 * vCPU thread must never make (platform.h).
 *
 * Header-only, static inline, so that every tests/unit/test_*.c stays one
 * self-contained binary.
 */
#ifndef VISOR_TEST_MSI_FAKE_H
#define VISOR_TEST_MSI_FAKE_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../src/devices/platform.h"
#include "../../src/event/loop.h"

#define MSI_FAKE_MAXREC 64
#define MSI_FAKE_MAXIOE 32

struct fake_plat {
	struct platform p;
	/* MSI routes; handles are 0, 1, ... in allocation order */
	int nalloc, nupdate, nfree, nsend;
	int fail_alloc;  /* msi_alloc returns this if non-zero */
	int fail_update; /* msi_update returns this if non-zero */
	uint64_t update_addr[MSI_FAKE_MAXREC], send_addr[MSI_FAKE_MAXREC];
	uint32_t update_data[MSI_FAKE_MAXREC], send_data[MSI_FAKE_MAXREC];
	int update_handle[MSI_FAKE_MAXREC];
	pthread_t update_thread[MSI_FAKE_MAXREC];
	int fds[MSI_FAKE_MAXREC]; /* eventfd per handle, -1 if none */
	/* what each route delivers (the last successful msi_update) */
	bool routed[MSI_FAKE_MAXREC];
	uint64_t route_addr[MSI_FAKE_MAXREC];
	uint32_t route_data[MSI_FAKE_MAXREC];
	int freed[MSI_FAKE_MAXREC];
	/* ioeventfds (MMIO only: port I/O ones are refused with -EINVAL) */
	int nioe_add, nioe_del;
	int ioe_fail; /* ioeventfd_add returns this if non-zero */
	uint64_t ioe_add_addr[MSI_FAKE_MAXIOE], ioe_del_addr[MSI_FAKE_MAXIOE];
	uint32_t ioe_len[MSI_FAKE_MAXIOE];
	int ioe_fd[MSI_FAKE_MAXIOE];
	pthread_t ioe_add_thread[MSI_FAKE_MAXIOE], ioe_del_thread[MSI_FAKE_MAXIOE];
	/* thread check (see above) */
	bool loop_thread_set;
	pthread_t loop_thread;
	int off_loop_calls;
	/* deferred work (fp_enable_defer): FIFO, one eventfd on p.loop */
	pthread_mutex_t work_lock;
	struct platform_work *work_head, *work_tail;
	int work_efd; /* -1: defer refused (the caller works inline) */
	int ndefer;   /* defer calls */
	int irqfd;    /* irqfd_for_gsi's eventfd (any GSI), -1 until asked */
};

static inline struct fake_plat *fake_plat_of(struct platform *p)
{
	return (struct fake_plat *)p;
}

/* A set-up call: is it on the allowed thread? */
static inline void fp_check_thread(struct fake_plat *f)
{
	if (f->loop_thread_set && !pthread_equal(pthread_self(), f->loop_thread))
		__atomic_add_fetch(&f->off_loop_calls, 1, __ATOMIC_RELAXED);
}

static inline int fp_msi_alloc(struct platform *p, int *handle, int *fd)
{
	struct fake_plat *f = fake_plat_of(p);
	fp_check_thread(f);
	if (f->fail_alloc)
		return f->fail_alloc;
	if (f->nalloc >= MSI_FAKE_MAXREC)
		return -ENOSPC;
	int h = f->nalloc++;
	f->fds[h] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	*handle = h;
	*fd = f->fds[h];
	return 0;
}

static inline int fp_msi_update(struct platform *p, int handle, uint64_t addr, uint32_t data)
{
	struct fake_plat *f = fake_plat_of(p);
	fp_check_thread(f);
	if (f->nupdate < MSI_FAKE_MAXREC) {
		f->update_addr[f->nupdate] = addr;
		f->update_data[f->nupdate] = data;
		f->update_handle[f->nupdate] = handle;
		f->update_thread[f->nupdate] = pthread_self();
	}
	f->nupdate++;
	if (handle < 0 || handle >= f->nalloc)
		return -ENOENT;
	if (f->fail_update)
		return f->fail_update;
	f->routed[handle] = true;
	f->route_addr[handle] = addr;
	f->route_data[handle] = data;
	return 0;
}

static inline void fp_msi_free(struct platform *p, int handle)
{
	struct fake_plat *f = fake_plat_of(p);
	fp_check_thread(f);
	if (f->nfree < MSI_FAKE_MAXREC)
		f->freed[f->nfree] = handle;
	f->nfree++;
}

static inline int fp_msi_send(struct platform *p, uint64_t addr, uint32_t data)
{
	struct fake_plat *f = fake_plat_of(p);
	fp_check_thread(f);
	if (f->nsend < MSI_FAKE_MAXREC) {
		f->send_addr[f->nsend] = addr;
		f->send_data[f->nsend] = data;
	}
	f->nsend++;
	return 0;
}

static inline int fp_ioe_add(struct platform *p, bool pio, uint64_t addr, uint32_t len, int efd)
{
	struct fake_plat *f = fake_plat_of(p);
	fp_check_thread(f);
	if (f->ioe_fail)
		return f->ioe_fail;
	if (f->nioe_add < MSI_FAKE_MAXIOE) {
		f->ioe_add_addr[f->nioe_add] = addr;
		f->ioe_len[f->nioe_add] = len;
		f->ioe_fd[f->nioe_add] = efd;
		f->ioe_add_thread[f->nioe_add] = pthread_self();
	}
	f->nioe_add++;
	return pio ? -EINVAL : 0;
}

static inline int fp_ioe_del(struct platform *p, bool pio, uint64_t addr, uint32_t len, int efd)
{
	struct fake_plat *f = fake_plat_of(p);
	fp_check_thread(f);
	if (f->nioe_del < MSI_FAKE_MAXIOE) {
		f->ioe_del_addr[f->nioe_del] = addr;
		f->ioe_del_thread[f->nioe_del] = pthread_self();
	}
	f->nioe_del++;
	return 0;
}

static inline int fp_irqfd_for_gsi(struct platform *p, uint32_t gsi, int *fd)
{
	struct fake_plat *f = fake_plat_of(p);
	(void)gsi;
	if (f->irqfd < 0)
		f->irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	*fd = f->irqfd;
	return f->irqfd < 0 ? -errno : 0;
}

static inline int fp_defer(struct platform *p, struct platform_work *w)
{
	struct fake_plat *f = fake_plat_of(p);
	if (f->work_efd < 0)
		return -ENOTCONN;
	pthread_mutex_lock(&f->work_lock);
	f->ndefer++;
	bool wake = false;
	if (!w->queued) {
		w->queued = true;
		w->next = NULL;
		wake = !f->work_head;
		if (f->work_tail)
			f->work_tail->next = w;
		else
			f->work_head = w;
		f->work_tail = w;
	}
	pthread_mutex_unlock(&f->work_lock);
	uint64_t one = 1;
	if (wake && write(f->work_efd, &one, sizeof(one)) != sizeof(one))
		return -errno;
	return 0;
}

static inline void fp_defer_cancel(struct platform *p, struct platform_work *w)
{
	struct fake_plat *f = fake_plat_of(p);
	if (f->work_efd < 0)
		return;
	pthread_mutex_lock(&f->work_lock);
	struct platform_work **pp = &f->work_head, *prev = NULL;
	while (*pp && *pp != w) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (*pp) {
		*pp = w->next;
		if (f->work_tail == w)
			f->work_tail = prev;
		w->queued = false;
		w->next = NULL;
	}
	pthread_mutex_unlock(&f->work_lock);
}

/* The loop's handler: run the queued work in order (as platform_kvm.c). */
static inline void fp_on_work(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct fake_plat *f = ctx;
	uint64_t cnt;
	(void)l;
	(void)events;
	if (read(fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&f->work_lock);
	struct platform_work *w = f->work_head;
	f->work_head = f->work_tail = NULL;
	pthread_mutex_unlock(&f->work_lock);
	while (w) {
		pthread_mutex_lock(&f->work_lock);
		struct platform_work *next = w->next;
		w->next = NULL;
		w->queued = false;
		pthread_mutex_unlock(&f->work_lock);
		w->fn(w);
		w = next;
	}
}

static const struct platform_ops fp_ops __attribute__((unused)) = {
	.irqfd_for_gsi = fp_irqfd_for_gsi,
	.msi_alloc = fp_msi_alloc,
	.msi_update = fp_msi_update,
	.msi_free = fp_msi_free,
	.msi_send = fp_msi_send,
	.ioeventfd_add = fp_ioe_add,
	.ioeventfd_del = fp_ioe_del,
	.defer = fp_defer,
	.defer_cancel = fp_defer_cancel,
};

/* A fresh recorder on the given buses (no event loop, no deferral). */
static inline void fp_init(struct fake_plat *f, struct bus *pio, struct bus *mmio)
{
	memset(f, 0, sizeof(*f));
	f->p.ops = &fp_ops;
	f->p.pio = pio;
	f->p.mmio = mmio;
	f->work_efd = -1;
	f->irqfd = -1;
	pthread_mutex_init(&f->work_lock, NULL);
	for (int i = 0; i < MSI_FAKE_MAXREC; i++)
		f->fds[i] = -1;
}

/*
 * Defer set-up to loop @l (also made f->p.loop) and only allow set-up
 * calls on this thread, which plays the loop: it runs the queued work
 * with fp_run_work (or a loop_run_once of @l).  0 or -errno.
 */
static inline int fp_enable_defer(struct fake_plat *f, struct loop *l)
{
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0)
		return -errno;
	int r = loop_add(l, efd, EPOLLIN, fp_on_work, f);
	if (r) {
		close(efd);
		return r;
	}
	f->p.loop = l;
	f->work_efd = efd;
	f->loop_thread = pthread_self();
	f->loop_thread_set = true;
	return 0;
}

/* Play the loop: run the deferred work now queued.  The number of work
 * items that ran. */
static inline int fp_run_work(struct fake_plat *f)
{
	int n = 0;
	pthread_mutex_lock(&f->work_lock);
	for (struct platform_work *w = f->work_head; w; w = w->next)
		n++;
	pthread_mutex_unlock(&f->work_lock);
	fp_on_work(f->p.loop, f->work_efd, EPOLLIN, f);
	return n;
}

/* Close the routes' eventfds, the irqfd and the work eventfd. */
static inline void fp_destroy(struct fake_plat *f)
{
	for (int i = 0; i < MSI_FAKE_MAXREC; i++)
		if (f->fds[i] >= 0)
			close(f->fds[i]);
	if (f->irqfd >= 0)
		close(f->irqfd);
	if (f->work_efd >= 0) {
		if (f->p.loop)
			loop_del(f->p.loop, f->work_efd);
		close(f->work_efd);
		f->work_efd = -1;
	}
	pthread_mutex_destroy(&f->work_lock);
}

#endif
