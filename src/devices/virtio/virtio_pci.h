/* SPDX-License-Identifier: MIT */
/*
 * virtio_pci.h - the virtio 1.x "modern" PCI transport (virtio 1.2 §4.1)
 * for one struct virtio_dev, on the PCI bus of src/devices/pci/pci.h.
 *
 * PCI identity (§4.1.2): vendor 0x1af4, device 0x1040 + device_id,
 * revision 1 (non-transitional), subsystem vendor 0x1af4 and subsystem
 * device 0x1040 + device_id (>= 0x40 as §4.1.2.1 asks), header type 0, no
 * INTx pin.  Class: net 0x020000, block 0x018000, console 0x078000,
 * anything else 0xff0000 (unassigned).  Linux's virtio_pci matches on the
 * vendor ID only; the class is informational.
 *
 * One 64-bit, non-prefetchable memory BAR (BAR0/1, VIRTIO_PCI_BAR_SIZE =
 * 32 KiB; non-prefetchable because ISR reads have side effects), 4 KiB per
 * region:
 *
 *   0x0000 common configuration (VIRTIO_PCI_CAP_COMMON_CFG, cap length 0x40)
 *   0x1000 ISR status, 1 byte          (VIRTIO_PCI_CAP_ISR_CFG, length 1)
 *   0x2000 device configuration        (VIRTIO_PCI_CAP_DEVICE_CFG, 0x1000)
 *   0x3000 notifications: queue q at 0x3000 + 4 * q (VIRTIO_PCI_CAP_NOTIFY_CFG,
 *          notify_off_multiplier 4, queue_notify_off = q, length 4 * queues)
 *   0x4000 MSI-X table, num_queues + 1 vectors
 *   0x5000 MSI-X PBA
 *   0x6000-0x7fff reserved (read 0)
 *
 * Capabilities (config space): MSI-X at 0x40, then the vendor-specific
 * (0x09) virtio capabilities common, notify, ISR, device and PCI_CFG
 * (§4.1.4.9: cap.bar, cap.offset, cap.length and pci_cfg_data writable;
 * touching pci_cfg_data performs a cap.length-byte access of the BAR at
 * cap.offset - valid only for bar 0, length 1/2/4, offset aligned to
 * length and inside the BAR; otherwise a read of pci_cfg_data gives 0 and
 * a write is ignored).
 *
 * Register semantics (§4.1.4.3, hostile-input checklist B), under d->lock
 * with the virtio_dev_* helpers:
 *   - Reads at any offset of any width (1/2/4/8) are composed from the
 *     fields' current values and never have side effects; bytes past the
 *     last field (0x40..0xfff) read 0.  Writes take effect only when they
 *     exactly cover one field (a 64-bit queue address may also be written
 *     as two aligned 32-bit halves, as Linux does); all others are ignored.
 *   - device_feature(_select), driver_feature(_select), device_status,
 *     config_generation: virtio.c (driver features accepted only while
 *     negotiating; status order enforced; 0 resets).  A status write of 0
 *     also resets the transport: every MSI-X vector to NO_VECTOR, ISR 0.
 *   - queue_select is stored as written; when it names no queue (>=
 *     num_queues) every queue field reads 0 and queue writes are ignored.
 *   - queue_size: a write is taken only if it is a power of two in
 *     1..queue_max, the queue is not enabled and the device is not
 *     DRIVER_OK (virtio_dev_queue_config_writable); otherwise ignored.
 *     queue_desc/driver/device: same conditions (no value check here:
 *     virtq_activate validates the rings at DRIVER_OK).  queue_enable:
 *     writing 1 under the same conditions marks the queue ready; writing 0
 *     is ignored (no VIRTIO_F_RING_RESET).
 *   - config_msix_vector / queue_msix_vector: a value >= num_queues + 1
 *     (the vectors the device has) is stored as VIRTIO_MSI_NO_VECTOR
 *     (0xffff), which the driver reads back as the failure indication
 *     (§4.1.5.1.2).
 *   - queue_notify_off reads q; queue_notify_data, queue_reset (and
 *     everything after) read 0: NOTIF_CONFIG_DATA and RING_RESET are not
 *     offered.
 *   - ISR: reading the byte at 0x1000 (by any access that covers it)
 *     returns and clears it; bit 0 queue (set only while MSI-X is off, as
 *     there is no INTx line), bit 1 configuration change (always set on a
 *     config interrupt).  Other bytes read 0; writes are ignored.
 *   - Device configuration: forwarded to ops->config_read/config_write
 *     with the offset inside the region, any width.
 *   - Notify: a write of any width at 0x3000 + 4 * q (q < num_queues)
 *     notifies queue q, the value is not used; everything else there is
 *     ignored and reads 0.
 *   - MSI-X table/PBA: pci_msix_* semantics (pci.h).
 *   - An access crossing a 4 KiB region boundary reads 0, writes ignored.
 *
 * Notifications: each queue has an eventfd, made and put on p->loop at
 * creation (boot time).  Where the BAR is mapped, the eventfds are
 * registered with p->ops->ioeventfd_add as MMIO ioeventfds of any width
 * (length 0) at the queues' notify addresses; a BAR move (memory
 * decoding switched, BAR reprogrammed: a vCPU's config write) only
 * records the new address and queues the re-registration on the loop
 * (platform defer()), which removes the old ioeventfds and adds the new
 * ones.  Until it has, a notify write at the new address exits to visor
 * and reaches the BAR as an ordinary MMIO write, which signals the same
 * eventfd: no kick is lost.  The loop callback calls
 * virtio_dev_queue_notify under d->lock, so device ops run on the loop
 * thread.  A notify that arrives as an MMIO exit (other widths, no
 * ioeventfd support, or before the loop caught up) writes the same
 * eventfd; without a loop (unit tests) the queue is notified directly
 * on the calling thread and no ioeventfds are registered.  The core's
 * replay at DRIVER_OK (virtio.h, tops->replay_notify) writes the queue's
 * eventfd too, mapped BAR or not.  Without a loop nothing is replayed.
 * Without deferral (p->ops->defer missing or failing) the ioeventfds are
 * moved on the thread that moved the BAR.
 *
 * Interrupts: signal_queue(q) -> MSI-X vector queue_msix_vector[q];
 * signal_config -> config_msix_vector (both via pci_msix_notify: the
 * route's irqfd, the loop while the route is being updated, or pending
 * while masked; pci.h).  NO_VECTOR means no interrupt (§4.1.5.1.2).
 * The tops are called with d->lock held and take only the MSI-X lock;
 * on a vCPU thread (a config interrupt from a status write) they do at
 * most an eventfd write.
 *
 * Lock order: pb->lock -> d->lock -> msix lock.
 */
#ifndef VISOR_DEVICES_VIRTIO_VIRTIO_PCI_H
#define VISOR_DEVICES_VIRTIO_VIRTIO_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../pci/pci.h"
#include "../platform.h"
#include "virtio.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040
#define VIRTIO_PCI_REVISION 1

/* virtio_pci_cap.cfg_type (§4.1.4) */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

/* struct virtio_pci_cap byte offsets (from the capability start) */
#define VIRTIO_PCI_CAP_CAP_LEN 2
#define VIRTIO_PCI_CAP_CFG_TYPE 3
#define VIRTIO_PCI_CAP_BAR 4
#define VIRTIO_PCI_CAP_ID 5
#define VIRTIO_PCI_CAP_OFFSET 8
#define VIRTIO_PCI_CAP_LENGTH 12
#define VIRTIO_PCI_CAP_SIZE 16
#define VIRTIO_PCI_NOTIFY_CAP_MULT 16 /* notify_off_multiplier */
#define VIRTIO_PCI_NOTIFY_CAP_SIZE 20
#define VIRTIO_PCI_CFG_CAP_DATA 16    /* pci_cfg_data[4] */
#define VIRTIO_PCI_CFG_CAP_SIZE 20

/* BAR layout */
#define VIRTIO_PCI_BAR 0
#define VIRTIO_PCI_BAR_SIZE 0x8000
#define VIRTIO_PCI_REGION_SIZE 0x1000
#define VIRTIO_PCI_COMMON_OFF 0x0000
#define VIRTIO_PCI_COMMON_LEN 0x40
#define VIRTIO_PCI_ISR_OFF 0x1000
#define VIRTIO_PCI_ISR_LEN 1
#define VIRTIO_PCI_DEVICE_OFF 0x2000
#define VIRTIO_PCI_DEVICE_LEN 0x1000
#define VIRTIO_PCI_NOTIFY_OFF 0x3000
#define VIRTIO_PCI_NOTIFY_MULT 4
#define VIRTIO_PCI_MSIX_TABLE_OFF 0x4000
#define VIRTIO_PCI_MSIX_PBA_OFF 0x5000

/* Common configuration layout (§4.1.4.3, struct virtio_pci_common_cfg) */
#define VIRTIO_PCI_COMMON_DFSELECT 0x00
#define VIRTIO_PCI_COMMON_DF 0x04
#define VIRTIO_PCI_COMMON_GFSELECT 0x08
#define VIRTIO_PCI_COMMON_GF 0x0c
#define VIRTIO_PCI_COMMON_MSIX 0x10
#define VIRTIO_PCI_COMMON_NUMQ 0x12
#define VIRTIO_PCI_COMMON_STATUS 0x14
#define VIRTIO_PCI_COMMON_CFGGENERATION 0x15
#define VIRTIO_PCI_COMMON_Q_SELECT 0x16
#define VIRTIO_PCI_COMMON_Q_SIZE 0x18
#define VIRTIO_PCI_COMMON_Q_MSIX 0x1a
#define VIRTIO_PCI_COMMON_Q_ENABLE 0x1c
#define VIRTIO_PCI_COMMON_Q_NOFF 0x1e
#define VIRTIO_PCI_COMMON_Q_DESC 0x20
#define VIRTIO_PCI_COMMON_Q_DRIVER 0x28
#define VIRTIO_PCI_COMMON_Q_DEVICE 0x30
#define VIRTIO_PCI_COMMON_Q_NDATA 0x38
#define VIRTIO_PCI_COMMON_Q_RESET 0x3a

/* A field of the common configuration: its offset and width in bytes. */
struct virtio_pci_field {
	uint16_t off;
	uint8_t len;
};

/* The common configuration's fields in order (the table the transport
 * decodes accesses with): field @i (NULL past the last), and how many. */
const struct virtio_pci_field *virtio_pci_common_field(size_t i);
size_t virtio_pci_common_nfields(void);

#define VIRTIO_MSI_NO_VECTOR 0xffff

/* ISR bits (§4.1.4.5) */
#define VIRTIO_PCI_ISR_QUEUE 0x1
#define VIRTIO_PCI_ISR_CONFIG 0x2

struct virtio_pci;

/* One queue's notification path (ctx of its loop callback). */
struct virtio_pci_notify {
	struct virtio_pci *vp;
	uint16_t q;
	int efd;         /* eventfd, -1 if none could be made */
	bool watched;    /* efd is on p->loop (set at creation) */
	bool ioeventfd;  /* registered with the platform at gpa (loop thread) */
	uint64_t gpa;
};

struct virtio_pci {
	struct pci_dev pd;
	struct pci_msix msix;
	struct virtio_dev *d;
	struct platform *p;
	/* capability offsets in config space */
	uint8_t cap_common, cap_notify, cap_isr, cap_device, cap_pci_cfg;
	/* MSI-X vectors as the driver set them (atomic accesses; written
	 * under d->lock) */
	uint16_t config_vec;
	uint16_t queue_vec[VIRTIO_MAX_QUEUES];
	uint8_t isr; /* VIRTIO_PCI_ISR_* (atomic) */
	struct virtio_pci_notify notify[VIRTIO_MAX_QUEUES];
	/* where the BAR is mapped (PCI_BAR_UNMAPPED: nowhere), as the bus
	 * last said (atomic; written under pb->lock); bar_work makes the
	 * ioeventfds follow it on the loop */
	uint64_t bar_gpa;
	struct platform_work bar_work;
};

/*
 * Attach the PCI transport @vp to @d (already set up by virtio_dev_init)
 * and plug it into @pb at @slot (1..31, or -1 for the first free one).
 * Sets d->tops and d->transport.  @p provides MSI routes, ioeventfds and
 * the loop (any may be missing: see above).  @vp must stay at its address
 * for the VM's lifetime.  Makes the notification eventfds (on p->loop)
 * and the MSI routes now: call it at boot, not on a vCPU thread.
 * Returns the slot used, or -EINVAL (NULL argument, too many queues),
 * -errno from eventfd or loop_add, or pci_bus_add's errors.  On failure
 * nothing stays registered.
 */
int virtio_pci_create(struct virtio_pci *vp, struct pci_bus *pb, struct virtio_dev *d,
		      struct platform *p, int slot);

/* Unplug from the PCI bus (unmapping the BAR), cancel deferred work,
 * remove ioeventfds and loop registrations, close the eventfds, free the
 * MSI routes.  On the loop thread or with the loop stopped, no vCPU
 * running.  Safe on a zeroed struct. */
void virtio_pci_destroy(struct virtio_pci *vp);

/* The PCI class code this transport uses for virtio device type @id. */
uint32_t virtio_pci_class(uint32_t device_id);

/*
 * Snapshot state of the transport (docs/snapshot-format.md, "PCI and virtio
 * transports"): the PCI function (config space, MSI-X table and pending
 * bits: pci_dev_state), the MSI-X vector the driver chose for the config
 * change interrupt and for each queue, and the ISR byte.  The virtio core's
 * state (virtio_dev_state_*) and the device's own are separate; the
 * machine writes transport, core and device state into one section.
 * Eventfds, ioeventfds and MSI routes are host resources: not saved.
 *
 *   virtio_pci_state_get     under pb->lock and the MSI-X lock (the
 *                            function), then d->lock (vectors, ISR);
 *   virtio_pci_state_encode  pci_dev_state, then u16 config vector, u16
 *                            queue count, one u16 vector per queue, u8 ISR;
 *   virtio_pci_state_decode  read and check against the live transport @vp
 *                            (pure; the caller checks the cursor at the end):
 *                            the function as pci_dev_state_decode (same
 *                            identity, BAR, capabilities and MSI-X vector
 *                            count as @vp's), the queue count is the
 *                            device's, every vector is one of the device's
 *                            (< num_queues + 1) or VIRTIO_MSI_NO_VECTOR,
 *                            and the ISR has only its two defined bits;
 *   virtio_pci_state_put     make @vp hold it (no vCPU running): the vectors
 *                            and ISR, then pci_dev_state_put (BAR mapped as
 *                            the config space says, through vp_bar_mapped;
 *                            MSI-X as after the guest's writes), and the
 *                            ioeventfds are made to follow the BAR (bar_work
 *                            on the loop, or here without deferral) even if
 *                            the mapping did not change.  0 or -EINVAL.
 */
struct virtio_pci_state {
	struct pci_dev_state pci;
	uint16_t config_vec;
	uint16_t num_queues;
	uint16_t queue_vec[VIRTIO_MAX_QUEUES];
	uint8_t isr;
};

int virtio_pci_state_get(struct virtio_pci *vp, struct virtio_pci_state *st);
void virtio_pci_state_encode(const struct virtio_pci_state *st, struct snap_writer *w);
int virtio_pci_state_decode(struct snap_cursor *c, const struct virtio_pci *vp,
			    struct virtio_pci_state *st, char *err, size_t errlen);
int virtio_pci_state_put(struct virtio_pci *vp, const struct virtio_pci_state *st);

#endif
