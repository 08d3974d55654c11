/* SPDX-License-Identifier: MIT */
/*
 * platform.h - services the machine offers to devices that need more than
 * a bus window and an IRQ line (PCI with MSI-X, virtio transports), so that
 * device code never calls KVM directly and is unit-tested with a fake.
 *
 * Implemented by the VMM on top of KVM (GSI routing, irqfd, ioeventfd,
 * KVM_SIGNAL_MSI).  All functions return 0 or -errno and may be called from
 * any thread.
 */
#ifndef VISOR_DEVICES_PLATFORM_H
#define VISOR_DEVICES_PLATFORM_H

#include <stdbool.h>
#include <stdint.h>

struct platform;
struct loop;
struct bus;

struct platform_ops {
	/* Drive interrupt line @gsi (level semantics, as struct irq_line). */
	void (*set_irq)(struct platform *p, uint32_t gsi, int level);
	/* Get an eventfd that injects an edge on @gsi whenever 1 is written to
	 * it (KVM irqfd).  *fd receives the eventfd, owned by the platform. */
	int (*irqfd_for_gsi)(struct platform *p, uint32_t gsi, int *fd);
	/* Allocate an MSI route: an eventfd that, when written, delivers the
	 * MSI message (addr, data) (KVM GSI route + irqfd).  *handle names the
	 * route for msi_update/msi_free; *fd is the eventfd (platform-owned). */
	int (*msi_alloc)(struct platform *p, uint64_t addr, uint32_t data, int *handle, int *fd);
	/* Reprogram route @handle (the guest rewrote the MSI-X table entry). */
	int (*msi_update)(struct platform *p, int handle, uint64_t addr, uint32_t data);
	void (*msi_free)(struct platform *p, int handle);
	/* Deliver one MSI now (slow path, e.g. a pending bit on unmask). */
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
};

struct platform {
	const struct platform_ops *ops;
	struct loop *loop;  /* the event loop (owner of device back ends) */
	struct bus *pio;
	struct bus *mmio;
};

#endif
