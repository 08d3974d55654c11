/* SPDX-License-Identifier: MIT */
/*
 * platform.h - services the machine offers to devices that need more than
 * a bus window and an IRQ line (PCI with MSI-X, virtio transports), so that
 * device code never calls KVM directly and is unit-tested with a fake.
 *
 * Implemented by the VMM on top of KVM (GSI routing, irqfd, ioeventfd,
 * KVM_SIGNAL_MSI) in src/kvm/platform_kvm.c.  All functions return 0 or
 * -errno.
 *
 * Which thread may call what
 * --------------------------
 * vCPU threads do only vCPU work, so that a seccomp filter for them stays
 * small: KVM_RUN, eventfd writes (to an irqfd or to wake the loop) and
 * what a device register access strictly needs.  Hence:
 *
 *   any thread, vCPUs included:   set_irq (KVM_IRQ_LINE: legacy devices
 *                                 raise their lines from register accesses),
 *                                 defer, and writing the eventfds the
 *                                 platform handed out (irqfds, MSI routes);
 *   boot (device creation) and
 *   teardown, or the loop thread: everything else - irqfd_for_gsi,
 *                                 msi_alloc/update/free/send,
 *                                 ioeventfd_*, defer_cancel.
 *
 * A device whose guest-visible state changes on a vCPU thread in a way
 * that needs set-up (a BAR moved: ioeventfds; an MSI-X entry rewritten: a
 * route) records the change and hands the set-up to the loop with defer().
 * Deferred work is not device I/O: it is not behind the virtio pause gate
 * and runs while the VM is paused, too.
 *
 * Without deferral (p->loop NULL, or defer NULL or failing: unit tests
 * without a loop, or a platform that could not set it up) the device does
 * the set-up on the calling thread, as it must then.
 */
#ifndef VISOR_DEVICES_PLATFORM_H
#define VISOR_DEVICES_PLATFORM_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

struct platform;
struct loop;
struct bus;

/*
 * A piece of set-up work a device hands to the loop thread (see above).
 * The device embeds it, sets fn once and keeps it valid until it has
 * called defer_cancel (or the platform is gone).  next and queued belong
 * to the platform (under its own lock).
 */
struct platform_work {
	/* Runs on the loop thread, without platform locks held; reads the
	 * device's current state (so one run serves every request made
	 * before it started). */
	void (*fn)(struct platform_work *w);
	struct platform_work *next;
	bool queued;
};

struct platform_ops {
	/* Drive interrupt line @gsi (level semantics, as struct irq_line). */
	void (*set_irq)(struct platform *p, uint32_t gsi, int level);
	/* Get an eventfd that injects an edge on @gsi whenever 1 is written to
	 * it (KVM irqfd).  *fd receives the eventfd, owned by the platform. */
	int (*irqfd_for_gsi)(struct platform *p, uint32_t gsi, int *fd);
	/* Allocate an MSI route: an eventfd that, once msi_update has given
	 * the route a message, delivers that message whenever it is written
	 * (KVM: a reserved GSI with an irqfd bound to it).  Until the first
	 * msi_update a write delivers nothing.  *handle names the route for
	 * msi_update/msi_free; *fd is the eventfd (platform-owned).  Made at
	 * device creation, never on a vCPU thread. */
	int (*msi_alloc)(struct platform *p, int *handle, int *fd);
	/* Make route @handle deliver (addr, data) (KVM_SET_GSI_ROUTING).
	 * When it returns 0, every later write of the route's eventfd
	 * delivers the new message. */
	int (*msi_update)(struct platform *p, int handle, uint64_t addr, uint32_t data);
	void (*msi_free)(struct platform *p, int handle);
	/* Deliver one MSI now (slow path: a vector without a usable route). */
	int (*msi_send)(struct platform *p, uint64_t addr, uint32_t data);
	/* Have guest writes of @len bytes to @addr (MMIO, or port I/O if
	 * @pio) signal @efd instead of exiting to the VMM (KVM ioeventfd, no
	 * datamatch); @len 0: MMIO writes of any width (the platform's fastest
	 * path; at least 2-byte writes).  The caller watches @efd on the
	 * event loop. */
	int (*ioeventfd_add)(struct platform *p, bool pio, uint64_t addr, uint32_t len, int efd);
	int (*ioeventfd_del)(struct platform *p, bool pio, uint64_t addr, uint32_t len, int efd);
	/* As ioeventfd_add/del, but only writes of exactly @datamatch signal
	 * @efd (KVM_IOEVENTFD_FLAG_DATAMATCH); other values still exit to the
	 * VMM and reach the bus.  Needed where one register carries a value
	 * that selects the target, e.g. virtio-mmio QueueNotify (the queue
	 * index).  Del must be given the same @datamatch.  May be NULL (not
	 * supported): callers then rely on ordinary bus writes. */
	int (*ioeventfd_add_datamatch)(struct platform *p, bool pio, uint64_t addr, uint32_t len,
				       uint64_t datamatch, int efd);
	int (*ioeventfd_del_datamatch)(struct platform *p, bool pio, uint64_t addr, uint32_t len,
				       uint64_t datamatch, int efd);
	/* Run @w->fn once on the loop thread, after the work queued before
	 * it (FIFO).  Work already queued and not yet started stays queued
	 * once (its run will see the newest state); work queued while its fn
	 * runs runs again.  Only takes a lock and writes an eventfd: allowed
	 * on vCPU threads.  0, or -errno (nothing queued: the caller does the
	 * work itself).  May be NULL: likewise. */
	int (*defer)(struct platform *p, struct platform_work *w);
	/* Take @w off the queue if it is there.  On the loop thread (not from
	 * a work fn) or with the loop stopped, so @w->fn is not running. */
	void (*defer_cancel)(struct platform *p, struct platform_work *w);
};

struct platform {
	const struct platform_ops *ops;
	struct loop *loop;  /* the event loop (owner of device back ends) */
	struct bus *pio;
	struct bus *mmio;
};

/* defer() through @p, or -EOPNOTSUPP when the platform cannot defer (no
 * platform, no loop, no op): the caller does the work itself then. */
static inline int platform_defer(struct platform *p, struct platform_work *w)
{
	if (!p || !p->loop || !p->ops || !p->ops->defer)
		return -EOPNOTSUPP;
	return p->ops->defer(p, w);
}

/* defer_cancel() through @p, if it has one. */
static inline void platform_defer_cancel(struct platform *p, struct platform_work *w)
{
	if (p && p->ops && p->ops->defer_cancel)
		p->ops->defer_cancel(p, w);
}

#endif
