/* SPDX-License-Identifier: MIT */
/*
 * virtio_mmio.h - the virtio over MMIO transport, version 2 ("modern",
 * virtio 1.2 §4.2), for one struct virtio_dev.
 *
 * Register window (§4.2.2, little-endian, offsets from the device's base):
 *
 *   0x000 MagicValue        R   0x74726976 ("virt")
 *   0x004 Version           R   2
 *   0x008 DeviceID          R   d->device_id
 *   0x00c VendorID          R   VIRTIO_MMIO_VENDOR_ID
 *   0x010 DeviceFeatures    R   32 bits selected by DeviceFeaturesSel
 *   0x014 DeviceFeaturesSel W
 *   0x020 DriverFeatures    W   32 bits selected by DriverFeaturesSel
 *   0x024 DriverFeaturesSel W
 *   0x030 QueueSel          W
 *   0x034 QueueNumMax       R   0 when QueueSel names no queue
 *   0x038 QueueNum          W
 *   0x044 QueueReady        RW
 *   0x050 QueueNotify       W   value = queue index
 *   0x060 InterruptStatus   R   bit 0 used buffer, bit 1 configuration change
 *   0x064 InterruptACK      W   clears the bits written as 1
 *   0x070 Status            RW  device status (§2.1); writing 0 resets
 *   0x080 QueueDescLow/High       W  (0x084)
 *   0x090 QueueDriverLow/High     W  (0x094)
 *   0x0a0 QueueDeviceLow/High     W  (0x0a4)
 *   0x0ac SHMSel            W
 *   0x0b0 SHMLenLow/High    R   all-ones: no shared memory regions (0x0b4)
 *   0x0b8 SHMBaseLow/High   R   all-ones (0x0bc)
 *   0x0c0 QueueReset        RW  0 (VIRTIO_F_RING_RESET is not offered)
 *   0x0fc ConfigGeneration  R   d->config_generation
 *   0x100 Config            RW  device configuration space, to the end of
 *                               the window, forwarded to ops->config_*
 *
 * Hostile-input rules (shared/docs/hostile-input-checklist.md, B):
 *   - registers (0x000-0x0ff) take aligned 32-bit accesses only (§4.2.2.2);
 *     any other width or alignment reads 0 and writes are ignored.  The
 *     config space takes 1/2/4/8-byte accesses at any offset.  Every other
 *     offset of the 4 KiB window (unimplemented, write-only, legacy v1
 *     registers) reads 0; the window never returns stale host bytes.
 *   - QueueSel is stored as written; when it names no queue (>= num_queues,
 *     0x7fffffff, 0xffffffff) QueueNumMax and QueueReady read 0 (the spec's
 *     "queue not available", which Linux probes) and queue writes are
 *     ignored.  QueueNotify with an out-of-range index is ignored.
 *   - Queue geometry has one home, the selected struct virtq (size,
 *     ready, desc/avail/used_gpa), as with virtio-pci: QueueNum and the
 *     ring address halves are written straight into it, QueueReady reads
 *     vq->ready (0 while a reset is in progress: the driver-visible reset
 *     happened at the Status write, virtio.c clears the virtq when the
 *     device has quiesced).  There is no second copy in the transport.
 *   - QueueNum must be a power of two in 1..queue_max.  Any other value
 *     (0, 3, > queue_max, >= 2^16) is logged (rate-limited, naming it) and
 *     leaves the queue without a size (vq->size = 0), so QueueReady = 1 is
 *     refused until a valid QueueNum is written: QueueReady stays 0 and
 *     the queue is not used at DRIVER_OK (virtio.c activates ready queues
 *     only).  Ring placement is validated by virtq_activate() at DRIVER_OK.
 *   - Reset (and init) leave every queue with size queue_max, the core's
 *     rule for both transports: a driver that enables a queue without
 *     writing QueueNum gets QueueNumMax elements.  §4.2.3.2 has the driver
 *     write QueueNum and the spec does not say what the device does
 *     without it; this is what virtio-pci does (queue_size reads the
 *     maximum after reset) and what a driver that sized its rings for
 *     QueueNumMax needs.  The rings are checked at activation whatever
 *     the size.
 *   - Geometry writes (QueueNum, QueueDesc/Driver/Device, QueueReady) are
 *     ignored once the queue is ready, after DRIVER_OK or FAILED and while
 *     a reset is in progress (virtio_dev_queue_config_writable),
 *     so in-flight requests keep the validated geometry.  Before DRIVER_OK
 *     QueueReady = 0 takes a ready queue back (geometry writable again).
 *   - Status and feature ordering is enforced by virtio.c
 *     (virtio_dev_set_status, virtio_dev_write_driver_features); a Status
 *     write with bits above bit 7 is ignored.
 *
 * Interrupts: one GSI per device, edge-triggered.  A raised InterruptStatus
 * bit that was clear fires the edge: the platform's irqfd for the GSI is
 * written (KVM injects without an exit), or, without an irqfd, set_irq
 * pulses the line 1 then 0.  Re-raising a bit that is still set fires
 * nothing: Linux's vm_interrupt() reads InterruptStatus, acknowledges what
 * it read and only then scans the rings, so a buffer used before the ACK is
 * seen by that scan and one used after it sets the bit anew (new edge).
 * Edge (not level) because it needs no work on InterruptACK and is what
 * irqfd delivers; ACPI therefore declares Interrupt(ResourceConsumer, Edge,
 * ActiveHigh, Exclusive).  Linux requests the line with IRQF_SHARED, which
 * is fine for an exclusive edge line.
 *
 * Notifications: each queue has an eventfd watched on the event loop; the
 * loop callback calls virtio_dev_queue_notify() under d->lock (device ops
 * run on the loop thread, as virtio.h requires).  Two ways in:
 *   - with platform ops ioeventfd_add_datamatch, one KVM ioeventfd per
 *     queue on QueueNotify (len 4, datamatch = queue index): the guest's
 *     write signals the eventfd without a VM exit;
 *   - always, an ordinary bus write to QueueNotify (no KVM, KVM without
 *     ioeventfds, or a value no ioeventfd matches) writes the eventfd.
 * Without an event loop (p->loop NULL: unit tests) the bus write calls
 * virtio_dev_queue_notify() directly on the writing thread.  The core's
 * replay at DRIVER_OK (virtio.h, tops->replay_notify) writes the queue's
 * eventfd like a QueueNotify write; without a loop nothing is replayed.
 * A single ioeventfd without datamatch would fire for any value and force
 * notifying every queue; datamatch keeps the queue index.
 *
 * Set-up happens once, in virtio_mmio_init (boot time): the window never
 * moves, so the GSI's irqfd, the notification eventfds, their place on
 * the loop and the ioeventfds are all made there and nothing is set up
 * later.  A register access on a vCPU thread does at most an eventfd
 * write (a QueueNotify no ioeventfd caught, the replay at DRIVER_OK, an
 * interrupt through the irqfd); the only other system call is the set_irq
 * fallback (KVM_IRQ_LINE, as legacy devices do) when the platform had no
 * irqfd for the GSI.
 *
 * Locking: every register and config access runs under d->lock; the
 * transport's own state (QueueSel, InterruptStatus, reset_wait) is
 * protected by it too.  The signal callbacks (tops) are called with
 * d->lock held.
 */
#ifndef VISOR_DEVICES_VIRTIO_VIRTIO_MMIO_H
#define VISOR_DEVICES_VIRTIO_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../bus.h"
#include "../platform.h"
#include "virtio.h"

struct aml;

/* Register offsets (§4.2.2, table "MMIO Device Register Layout") */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_SHM_SEL 0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW 0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH 0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW 0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH 0x0bc
#define VIRTIO_MMIO_QUEUE_RESET 0x0c0
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100

/* Register values */
#define VIRTIO_MMIO_MAGIC 0x74726976u /* "virt" in memory order */
#define VIRTIO_MMIO_VERSION_2 2u
/* VendorID: "VISR" in memory order.  Any value is allowed (§4.2.2); Linux
 * drivers match VIRTIO_DEV_ANY_ID. */
#define VIRTIO_MMIO_VENDOR 0x52534956u
/* InterruptStatus bits (§4.2.2) */
#define VIRTIO_MMIO_INT_VRING (1u << 0)
#define VIRTIO_MMIO_INT_CONFIG (1u << 1)

/* Each device's window: 4 KiB (registers + config space; the spec needs
 * 0x100 + config size, a page keeps windows page-aligned and mappable). */
#define VIRTIO_MMIO_WINDOW 0x1000ULL

/*
 * Address and interrupt plan (x86).  Defined here, not in layout.h, while
 * the PCI work owns that file; to be moved there.
 *
 *   0xf000_0000 + i * 4 KiB   device i's window, i < VIRTIO_MMIO_SLOTS
 *                             (0xf000_0000 - 0xf001_ffff reserved: above the
 *                             ECAM at 0xe000_0000 (256 MiB), below the
 *                             IOAPIC at 0xfec0_0000; the PCI host bridge's
 *                             32-bit window must not include it)
 *   GSI 16 + i                IOAPIC pins 16..23 (IOAPIC_NUM_PINS is 24;
 *                             0..15 are ISA), one unshared pin per device
 *
 * So at most VIRTIO_MMIO_MAX_DEVS (8) devices, limited by the GSIs.  More
 * would have to share pins (edge sharing works with Linux's IRQF_SHARED,
 * every handler checks its own InterruptStatus) or use virtio-pci + MSI-X.
 */
#define VIRTIO_MMIO_REGION_BASE 0xf0000000ULL
#define VIRTIO_MMIO_SLOTS 32
#define VIRTIO_MMIO_REGION_END (VIRTIO_MMIO_REGION_BASE + VIRTIO_MMIO_SLOTS * VIRTIO_MMIO_WINDOW)
#define VIRTIO_MMIO_GSI_BASE 16
#define VIRTIO_MMIO_MAX_DEVS 8
#define VIRTIO_MMIO_DEV_BASE(i) (VIRTIO_MMIO_REGION_BASE + (uint64_t)(i)*VIRTIO_MMIO_WINDOW)
#define VIRTIO_MMIO_DEV_GSI(i) ((uint32_t)(VIRTIO_MMIO_GSI_BASE + (i)))

struct virtio_mmio;

/* One queue's notification path (ctx of its loop callback). */
struct virtio_mmio_notify {
	struct virtio_mmio *t;
	uint16_t q;
	int efd;              /* eventfd watched on the loop, -1 without a loop */
	bool ioeventfd;       /* a datamatch ioeventfd is registered on it */
};

struct virtio_mmio {
	struct bus_dev bus;
	struct virtio_dev *d;
	struct platform *p;
	uint64_t base;
	uint32_t gsi;
	int irqfd; /* platform-owned eventfd for gsi, -1: use set_irq */

	/* under d->lock */
	uint32_t queue_sel;        /* as written, may name no queue */
	uint32_t interrupt_status; /* VIRTIO_MMIO_INT_* */
	bool reset_wait;           /* Status = 0 written, reset may be pending */

	struct virtio_mmio_notify notify[VIRTIO_MAX_QUEUES];

	/* statistics */
	uint64_t irqs;         /* edges fired (under d->lock) */
	uint64_t bad_accesses; /* wrong width/alignment on registers (atomic) */
};

/*
 * Attach transport @t to device @d (already set up by virtio_dev_init) and
 * place its 4 KiB window at @base on p->mmio, interrupting through @gsi.
 * Sets d->tops and d->transport.  Uses p->ops->irqfd_for_gsi when present
 * (else set_irq pulses), p->loop for notification eventfds (none if NULL),
 * and p->ops->ioeventfd_add_datamatch when present (a failure there is
 * logged and notifications fall back to bus writes).  @t must stay at its
 * address for the VM's lifetime.
 * Returns 0, -EINVAL (NULL argument, base not 4 KiB aligned, more queues
 * than VIRTIO_MAX_QUEUES, no way to raise the interrupt), bus_register's
 * errors (-EEXIST overlap, -ENOSPC), or -errno from eventfd/loop_add.
 * On failure nothing stays registered.
 */
int virtio_mmio_init(struct virtio_mmio *t, struct virtio_dev *d, struct platform *p, uint64_t base,
		     uint32_t gsi);

/*
 * Undo virtio_mmio_init: remove the window from p->mmio, detach from the
 * device (d->tops/transport NULL), drop the ioeventfds, loop registrations
 * and eventfds.  Call with the vCPUs and the loop stopped: an access
 * already dispatched may still reach the ops (bus.h), so @t and the device
 * must stay valid until nothing dispatches any more.  Safe on a zeroed
 * struct and twice.
 */
void virtio_mmio_destroy(struct virtio_mmio *t);

/*
 * Append to @a, for inclusion in the DSDT's \_SB scope:
 *
 *	Device (VRxx)                   // xx = index, two hex digits
 *	{
 *		Name (_HID, "LNRO0005")  // Linux's virtio_mmio ACPI match
 *		Name (_UID, index)
 *		Name (_CRS, ResourceTemplate () {
 *			Memory32Fixed (ReadWrite, base, 0x1000)
 *			Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi }
 *		})
 *	}
 *
 * No _CCA: x86 Linux assumes coherent DMA without it.  Returns a->err
 * semantics (0 or the builder's sticky error), -EINVAL for index > 255 or
 * a window that does not fit below 4 GiB.
 */
int virtio_mmio_acpi_aml(struct aml *a, int index, uint64_t base, uint32_t gsi);

/*
 * Write "virtio_mmio.device=4K@0xBASE:GSI" (Linux
 * CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES syntax <size>@<base>:<irq>) into
 * buf[0..len), NUL-terminated.  Returns the string length, -ENOSPC if it
 * does not fit, -EINVAL for a NULL buffer.
 * Only for guests booted without ACPI (acpi=off): with ACPI the DSDT
 * already describes the device (a second description fails with -EBUSY),
 * and Linux has no IRQ for GSI >= 16 unless the firmware tables (MP table
 * I/O interrupt entries, or the ACPI _CRS) map it.
 */
int virtio_mmio_cmdline(char *buf, size_t len, uint64_t base, uint32_t gsi);

/*
 * Snapshot state of the transport (docs/snapshot-format.md, "PCI and virtio
 * transports"): QueueSel as written, InterruptStatus, and whether a reset's
 * completion is still to be noticed (reset_wait).  The queues' geometry is
 * the virtio core's (virtio_dev_state_*: size, ready and ring addresses of
 * every queue, ready or not), saved beside it with the device's own state;
 * the machine writes transport, core and device state into one section.
 * The window's place and GSI come from the configuration; the irqfd,
 * eventfds and ioeventfds are host resources: none is saved.
 *
 *   virtio_mmio_state_get     under d->lock; -EBUSY while the device's reset
 *                             is in progress (as virtio_dev_state_get);
 *   virtio_mmio_state_encode  u32 QueueSel, u32 InterruptStatus, u8
 *                             reset_wait (9 bytes);
 *   virtio_mmio_state_decode  read and check (pure; the caller checks the
 *                             cursor at the end): InterruptStatus has only
 *                             VRING and CONFIG, reset_wait is 0 or 1.
 *                             QueueSel may hold anything a driver can write;
 *   virtio_mmio_state_check   with the core's state decoded from the same
 *                             snapshot: the core's queue select mirrors
 *                             QueueSel (0xffff when that names no queue);
 *   virtio_mmio_state_put     make @t hold it (no vCPU running; under
 *                             d->lock).  Fires no interrupt: an edge fired
 *                             before the snapshot is in the interrupt
 *                             controller's saved state, and a bit still set
 *                             needs no new edge (see "Interrupts").
 */
struct virtio_mmio_state {
	uint32_t queue_sel;
	uint32_t interrupt_status;
	uint8_t reset_wait;
};

int virtio_mmio_state_get(struct virtio_mmio *t, struct virtio_mmio_state *st);
void virtio_mmio_state_encode(const struct virtio_mmio_state *st, struct snap_writer *w);
int virtio_mmio_state_decode(struct snap_cursor *c, const struct virtio_mmio *t,
			     struct virtio_mmio_state *st, char *err, size_t errlen);
int virtio_mmio_state_check(const struct virtio_mmio_state *st,
			    const struct virtio_dev_state *core, char *err, size_t errlen);
int virtio_mmio_state_put(struct virtio_mmio *t, const struct virtio_mmio_state *st);

#endif
