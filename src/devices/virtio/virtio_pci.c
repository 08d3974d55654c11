/* SPDX-License-Identifier: MIT */
/*
 * virtio_pci.c - virtio 1.2 §4.1 PCI transport (see virtio_pci.h).
 */
#include "virtio_pci.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../event/loop.h"
#include "../../util/bytes.h"
#include "../../util/log.h"
#include "../../util/str.h"

static struct ratelimit vp_rl;

uint32_t virtio_pci_class(uint32_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_NET:
		return 0x020000; /* network controller, ethernet */
	case VIRTIO_ID_BLOCK:
		return 0x018000; /* mass storage, other */
	case VIRTIO_ID_CONSOLE:
		return 0x078000; /* simple communication, other */
	default:
		return 0xff0000; /* unassigned class */
	}
}

static uint16_t nvectors(const struct virtio_pci *vp)
{
	return (uint16_t)(vp->d->num_queues + 1);
}

static uint16_t vec_load(const uint16_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

static void vec_store(const struct virtio_pci *vp, uint16_t *v, uint64_t val)
{
	uint16_t x = val < nvectors(vp) ? (uint16_t)val : VIRTIO_MSI_NO_VECTOR;
	__atomic_store_n(v, x, __ATOMIC_RELAXED);
}

/* ---- common configuration (d->lock held) ------------------------------ */

/* Fields of struct virtio_pci_common_cfg in order; the reserved rest of
 * the capability (admin queue fields of later revisions) reads 0. */
static const struct virtio_pci_field common_fields[] = {
	{VIRTIO_PCI_COMMON_DFSELECT, 4}, {VIRTIO_PCI_COMMON_DF, 4},
	{VIRTIO_PCI_COMMON_GFSELECT, 4}, {VIRTIO_PCI_COMMON_GF, 4},
	{VIRTIO_PCI_COMMON_MSIX, 2},	 {VIRTIO_PCI_COMMON_NUMQ, 2},
	{VIRTIO_PCI_COMMON_STATUS, 1},	 {VIRTIO_PCI_COMMON_CFGGENERATION, 1},
	{VIRTIO_PCI_COMMON_Q_SELECT, 2}, {VIRTIO_PCI_COMMON_Q_SIZE, 2},
	{VIRTIO_PCI_COMMON_Q_MSIX, 2},	 {VIRTIO_PCI_COMMON_Q_ENABLE, 2},
	{VIRTIO_PCI_COMMON_Q_NOFF, 2},	 {VIRTIO_PCI_COMMON_Q_DESC, 8},
	{VIRTIO_PCI_COMMON_Q_DRIVER, 8}, {VIRTIO_PCI_COMMON_Q_DEVICE, 8},
	{VIRTIO_PCI_COMMON_Q_NDATA, 2},	 {VIRTIO_PCI_COMMON_Q_RESET, 2},
};
#define NFIELDS (sizeof(common_fields) / sizeof(common_fields[0]))

size_t virtio_pci_common_nfields(void)
{
	return NFIELDS;
}

const struct virtio_pci_field *virtio_pci_common_field(size_t i)
{
	return i < NFIELDS ? &common_fields[i] : NULL;
}

/* The field holding byte @off, or NULL (reserved: reads 0). */
static const struct virtio_pci_field *field_at(uint32_t off)
{
	for (size_t i = 0; i < NFIELDS; i++)
		if (off >= common_fields[i].off && off < common_fields[i].off + common_fields[i].len)
			return &common_fields[i];
	return NULL;
}

/* Current value of the field starting at @off (no side effects). */
static uint64_t common_get(struct virtio_pci *vp, uint32_t off)
{
	struct virtio_dev *d = vp->d;
	struct virtq *q = virtio_dev_selected_queue(d);
	uint16_t qi = d->queue_sel;
	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		return d->device_feature_sel;
	case VIRTIO_PCI_COMMON_DF:
		return virtio_dev_read_device_features(d);
	case VIRTIO_PCI_COMMON_GFSELECT:
		return d->driver_feature_sel;
	case VIRTIO_PCI_COMMON_GF:
		if (d->driver_feature_sel == 0)
			return (uint32_t)d->driver_features;
		if (d->driver_feature_sel == 1)
			return (uint32_t)(d->driver_features >> 32);
		return 0;
	case VIRTIO_PCI_COMMON_MSIX:
		return vec_load(&vp->config_vec);
	case VIRTIO_PCI_COMMON_NUMQ:
		return d->num_queues;
	case VIRTIO_PCI_COMMON_STATUS:
		return virtio_dev_get_status(d);
	case VIRTIO_PCI_COMMON_CFGGENERATION:
		return (uint8_t)d->config_generation;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		return d->queue_sel;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		return q ? q->size : 0;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		return q ? vec_load(&vp->queue_vec[qi]) : 0;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		return q ? q->ready : 0;
	case VIRTIO_PCI_COMMON_Q_NOFF:
		return q ? qi : 0;
	case VIRTIO_PCI_COMMON_Q_DESC:
		return q ? q->desc_gpa : 0;
	case VIRTIO_PCI_COMMON_Q_DRIVER:
		return q ? q->avail_gpa : 0;
	case VIRTIO_PCI_COMMON_Q_DEVICE:
		return q ? q->used_gpa : 0;
	default: /* queue_notify_data, queue_reset: features not offered */
		return 0;
	}
}

static void common_read(struct virtio_pci *vp, uint32_t off, void *data, uint32_t len)
{
	uint8_t *out = data;
	const struct virtio_pci_field *cached = NULL;
	uint64_t val = 0;
	for (uint32_t i = 0; i < len; i++) {
		const struct virtio_pci_field *f = field_at(off + i);
		if (!f) {
			out[i] = 0;
			continue;
		}
		if (f != cached) {
			val = common_get(vp, f->off);
			cached = f;
		}
		out[i] = (uint8_t)(val >> (8 * (off + i - f->off)));
	}
}

/* Driver-visible reset of the transport's own state (status 0 written). */
static void transport_reset(struct virtio_pci *vp)
{
	__atomic_store_n(&vp->config_vec, VIRTIO_MSI_NO_VECTOR, __ATOMIC_RELAXED);
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++)
		__atomic_store_n(&vp->queue_vec[i], VIRTIO_MSI_NO_VECTOR, __ATOMIC_RELAXED);
	__atomic_store_n(&vp->isr, 0, __ATOMIC_RELAXED);
}

/* May the selected queue's geometry change now? */
static struct virtq *geometry_queue(struct virtio_dev *d)
{
	struct virtq *q = virtio_dev_selected_queue(d);
	if (!q || q->ready || !virtio_dev_queue_config_writable(d))
		return NULL;
	return q;
}

/* Replace bytes [lo, lo+len) (len 4 or 8) of a 64-bit value. */
static uint64_t merge64(uint64_t old, uint32_t lo, uint32_t len, uint64_t v)
{
	if (len == 8)
		return v;
	uint64_t mask = 0xffffffffull << (8 * lo);
	return (old & ~mask) | ((v << (8 * lo)) & mask);
}

static void common_write(struct virtio_pci *vp, uint32_t off, const void *data, uint32_t len)
{
	struct virtio_dev *d = vp->d;
	const struct virtio_pci_field *f = field_at(off);
	uint64_t v = get_le(data, len);
	if (!f)
		return;
	uint32_t inner = off - f->off;
	bool whole = inner == 0 && len == f->len;
	bool half = f->len == 8 && len == 4 && (inner == 0 || inner == 4);
	if (!whole && !half)
		return; /* partial or straddling write: ignored */
	struct virtq *q;
	switch (f->off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		d->device_feature_sel = (uint32_t)v;
		break;
	case VIRTIO_PCI_COMMON_GFSELECT:
		d->driver_feature_sel = (uint32_t)v;
		break;
	case VIRTIO_PCI_COMMON_GF:
		virtio_dev_write_driver_features(d, (uint32_t)v);
		break;
	case VIRTIO_PCI_COMMON_MSIX:
		vec_store(vp, &vp->config_vec, v);
		break;
	case VIRTIO_PCI_COMMON_STATUS:
		virtio_dev_set_status(d, (uint8_t)v);
		if ((uint8_t)v == 0)
			transport_reset(vp);
		break;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		d->queue_sel = (uint16_t)v;
		break;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		q = geometry_queue(d);
		if (q && v >= 1 && v <= d->queue_max && !(v & (v - 1)))
			q->size = (uint16_t)v;
		break;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		if (virtio_dev_selected_queue(d))
			vec_store(vp, &vp->queue_vec[d->queue_sel], v);
		break;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		q = geometry_queue(d);
		if (q && v == 1 && q->size)
			q->ready = true;
		break;
	case VIRTIO_PCI_COMMON_Q_DESC:
		if ((q = geometry_queue(d)))
			q->desc_gpa = merge64(q->desc_gpa, inner, len, v);
		break;
	case VIRTIO_PCI_COMMON_Q_DRIVER:
		if ((q = geometry_queue(d)))
			q->avail_gpa = merge64(q->avail_gpa, inner, len, v);
		break;
	case VIRTIO_PCI_COMMON_Q_DEVICE:
		if ((q = geometry_queue(d)))
			q->used_gpa = merge64(q->used_gpa, inner, len, v);
		break;
	default: /* read-only fields */
		break;
	}
}

/* ---- notifications ------------------------------------------------------- */

static void on_notify(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct virtio_pci_notify *n = ctx;
	uint64_t cnt;
	ssize_t r = read(fd, &cnt, sizeof(cnt));
	(void)r;
	struct virtio_dev *d = n->vp->d;
	pthread_mutex_lock(&d->lock);
	virtio_dev_queue_notify(d, n->q);
	pthread_mutex_unlock(&d->lock);
}

static void signal_efd(struct virtio_pci_notify *n)
{
	uint64_t one = 1;
	ssize_t r = write(n->efd, &one, sizeof(one));
	(void)r; /* EAGAIN: already signalled plenty */
}

/* The driver notified queue @q through an MMIO exit (or PCI_CFG): no
 * ioeventfd caught the write - none registered yet at this address (the
 * loop has not caught up with a BAR move), another width, or none at all.
 * Same eventfd as the ioeventfd, so the device still runs on the loop. */
static void notify_queue(struct virtio_pci *vp, uint16_t q)
{
	struct virtio_pci_notify *n = &vp->notify[q];
	if (n->watched) {
		signal_efd(n);
		return;
	}
	struct virtio_dev *d = vp->d;
	pthread_mutex_lock(&d->lock);
	virtio_dev_queue_notify(d, q);
	pthread_mutex_unlock(&d->lock);
}

/* Put the ioeventfds where the BAR is now (vp->bar_gpa): on the loop
 * thread (bar_work), or under pb->lock on the thread that moved the BAR
 * when the platform cannot defer. */
static void sync_ioeventfds(struct virtio_pci *vp)
{
	struct platform *p = vp->p;
	const struct platform_ops *ops = p ? p->ops : NULL;
	uint64_t bar = __atomic_load_n(&vp->bar_gpa, __ATOMIC_ACQUIRE);
	for (uint16_t q = 0; q < vp->d->num_queues; q++) {
		struct virtio_pci_notify *n = &vp->notify[q];
		uint64_t gpa = PCI_BAR_UNMAPPED;
		if (bar != PCI_BAR_UNMAPPED)
			gpa = bar + VIRTIO_PCI_NOTIFY_OFF + (uint64_t)q * VIRTIO_PCI_NOTIFY_MULT;
		if (n->ioeventfd && n->gpa != gpa) {
			if (ops && ops->ioeventfd_del)
				ops->ioeventfd_del(p, false, n->gpa, 0, n->efd);
			n->ioeventfd = false;
		}
		/* without a loop nobody reads the eventfd: writes exit instead */
		if (gpa == PCI_BAR_UNMAPPED || n->ioeventfd || !n->watched || !ops ||
		    !ops->ioeventfd_add)
			continue;
		int r = ops->ioeventfd_add(p, false, gpa, 0, n->efd);
		if (r) {
			log_ratelimited(&vp_rl, LOG_WARN, "%s: queue %u: ioeventfd at 0x%llx: %s",
					vp->pd.name, q, (unsigned long long)gpa, strerror(-r));
			continue;
		}
		n->ioeventfd = true;
		n->gpa = gpa;
	}
}

static void vp_bar_work(struct platform_work *w)
{
	sync_ioeventfds(container_of(w, struct virtio_pci, bar_work));
}

/* BAR moved (pb->lock held; normally a vCPU's config write).  The window
 * is on the bus at @new_gpa already; the ioeventfds follow on the loop.
 * Until then a notify write at the new address exits and reaches
 * vp_bar_write, which signals the same eventfd (notify_queue); a write
 * at the old address may still be caught by the old registration: a
 * spurious kick of the queue, harmless. */
static void vp_bar_mapped(struct pci_dev *pd, int bar, uint64_t old_gpa, uint64_t new_gpa)
{
	struct virtio_pci *vp = container_of(pd, struct virtio_pci, pd);
	(void)old_gpa;
	if (bar != VIRTIO_PCI_BAR)
		return;
	__atomic_store_n(&vp->bar_gpa, new_gpa, __ATOMIC_RELEASE);
	if (platform_defer(vp->p, &vp->bar_work))
		sync_ioeventfds(vp);
}

/* ---- the BAR ------------------------------------------------------------- */

static void vp_bar_read(struct pci_dev *pd, int bar, uint64_t off, void *data, uint32_t len)
{
	struct virtio_pci *vp = container_of(pd, struct virtio_pci, pd);
	struct virtio_dev *d = vp->d;
	uint32_t in = (uint32_t)(off % VIRTIO_PCI_REGION_SIZE);
	memset(data, 0, len);
	if (bar != VIRTIO_PCI_BAR || off >= VIRTIO_PCI_BAR_SIZE || in + len > VIRTIO_PCI_REGION_SIZE)
		return;
	switch (off - in) {
	case VIRTIO_PCI_COMMON_OFF:
		pthread_mutex_lock(&d->lock);
		common_read(vp, in, data, len);
		pthread_mutex_unlock(&d->lock);
		break;
	case VIRTIO_PCI_ISR_OFF:
		if (in == 0)
			*(uint8_t *)data = __atomic_exchange_n(&vp->isr, 0, __ATOMIC_ACQ_REL);
		break;
	case VIRTIO_PCI_DEVICE_OFF:
		if (d->ops->config_read) {
			pthread_mutex_lock(&d->lock);
			d->ops->config_read(d, in, data, len);
			pthread_mutex_unlock(&d->lock);
		}
		break;
	case VIRTIO_PCI_MSIX_TABLE_OFF:
		pci_msix_table_read(&vp->msix, in, data, len);
		break;
	case VIRTIO_PCI_MSIX_PBA_OFF:
		pci_msix_pba_read(&vp->msix, in, data, len);
		break;
	default: /* notify region and reserved: 0 */
		break;
	}
}

static void vp_bar_write(struct pci_dev *pd, int bar, uint64_t off, const void *data,
			 uint32_t len)
{
	struct virtio_pci *vp = container_of(pd, struct virtio_pci, pd);
	struct virtio_dev *d = vp->d;
	uint32_t in = (uint32_t)(off % VIRTIO_PCI_REGION_SIZE);
	if (bar != VIRTIO_PCI_BAR || off >= VIRTIO_PCI_BAR_SIZE || in + len > VIRTIO_PCI_REGION_SIZE)
		return;
	switch (off - in) {
	case VIRTIO_PCI_COMMON_OFF:
		pthread_mutex_lock(&d->lock);
		common_write(vp, in, data, len);
		pthread_mutex_unlock(&d->lock);
		break;
	case VIRTIO_PCI_DEVICE_OFF:
		if (d->ops->config_write) {
			pthread_mutex_lock(&d->lock);
			d->ops->config_write(d, in, data, len);
			pthread_mutex_unlock(&d->lock);
		}
		break;
	case VIRTIO_PCI_NOTIFY_OFF:
		if (in % VIRTIO_PCI_NOTIFY_MULT == 0 && in / VIRTIO_PCI_NOTIFY_MULT < d->num_queues)
			notify_queue(vp, (uint16_t)(in / VIRTIO_PCI_NOTIFY_MULT));
		break;
	case VIRTIO_PCI_MSIX_TABLE_OFF:
		pci_msix_table_write(&vp->msix, in, data, len);
		break;
	default: /* ISR, PBA, reserved: read-only */
		break;
	}
}

/* ---- VIRTIO_PCI_CAP_PCI_CFG window (pb->lock held) ----------------------- */

/* The BAR access the PCI_CFG capability describes, if valid. */
static bool cfg_window(struct virtio_pci *vp, uint32_t *off, uint32_t *len)
{
	uint8_t c = vp->cap_pci_cfg;
	uint8_t bar = pci_get8(&vp->pd, c + VIRTIO_PCI_CAP_BAR);
	*off = pci_get32(&vp->pd, c + VIRTIO_PCI_CAP_OFFSET);
	*len = pci_get32(&vp->pd, c + VIRTIO_PCI_CAP_LENGTH);
	return bar == VIRTIO_PCI_BAR && (*len == 1 || *len == 2 || *len == 4) &&
	       !(*off & (*len - 1)) && *off < VIRTIO_PCI_BAR_SIZE &&
	       *len <= VIRTIO_PCI_BAR_SIZE - *off;
}

static bool touches_cfg_data(struct virtio_pci *vp, uint32_t reg, uint32_t len)
{
	uint32_t data = vp->cap_pci_cfg + VIRTIO_PCI_CFG_CAP_DATA;
	return reg < data + 4 && data < reg + len;
}

static void vp_cfg_read(struct pci_dev *pd, uint32_t reg, uint32_t len)
{
	struct virtio_pci *vp = container_of(pd, struct virtio_pci, pd);
	if (!touches_cfg_data(vp, reg, len))
		return;
	uint32_t off, n;
	uint8_t buf[4] = {0};
	if (cfg_window(vp, &off, &n))
		vp_bar_read(pd, VIRTIO_PCI_BAR, off, buf, n);
	for (uint32_t i = 0; i < 4; i++)
		pci_set8(pd, vp->cap_pci_cfg + VIRTIO_PCI_CFG_CAP_DATA + i, buf[i]);
}

static void vp_cfg_write(struct pci_dev *pd, uint32_t reg, uint32_t len)
{
	struct virtio_pci *vp = container_of(pd, struct virtio_pci, pd);
	if (!touches_cfg_data(vp, reg, len))
		return;
	uint32_t off, n;
	if (!cfg_window(vp, &off, &n))
		return;
	uint8_t buf[4];
	for (uint32_t i = 0; i < 4; i++)
		buf[i] = pci_get8(pd, vp->cap_pci_cfg + VIRTIO_PCI_CFG_CAP_DATA + i);
	vp_bar_write(pd, VIRTIO_PCI_BAR, off, buf, n);
}

static const struct pci_dev_ops vp_pci_ops = {
	.bar_read = vp_bar_read,
	.bar_write = vp_bar_write,
	.cfg_read = vp_cfg_read,
	.cfg_write = vp_cfg_write,
	.bar_mapped = vp_bar_mapped,
};

/* ---- interrupts (d->lock held by the caller) ------------------------------ */

static void vp_signal_queue(struct virtio_dev *d, uint16_t q)
{
	struct virtio_pci *vp = d->transport;
	if (q >= d->num_queues)
		return;
	uint16_t vec = vec_load(&vp->queue_vec[q]);
	int r = vec == VIRTIO_MSI_NO_VECTOR ? (pci_msix_enabled(&vp->msix) ? 0 : -ENODEV)
					    : pci_msix_notify(&vp->msix, vec);
	if (r == -ENODEV) /* MSI-X off: ISR only (there is no INTx line) */
		__atomic_or_fetch(&vp->isr, VIRTIO_PCI_ISR_QUEUE, __ATOMIC_RELEASE);
}

static void vp_signal_config(struct virtio_dev *d)
{
	struct virtio_pci *vp = d->transport;
	__atomic_or_fetch(&vp->isr, VIRTIO_PCI_ISR_CONFIG, __ATOMIC_RELEASE);
	uint16_t vec = vec_load(&vp->config_vec);
	if (vec != VIRTIO_MSI_NO_VECTOR)
		pci_msix_notify(&vp->msix, vec);
}

/* The core asks for a notification of queue @q on the loop (d->lock
 * held, a vCPU thread).  The queue's eventfd has been on the loop since
 * creation, whether the BAR is mapped or not. */
static int vp_replay_notify(struct virtio_dev *d, uint16_t q)
{
	struct virtio_pci *vp = d->transport;
	if (q >= d->num_queues)
		return -EINVAL;
	struct virtio_pci_notify *n = &vp->notify[q];
	if (!n->watched)
		return -ENOTCONN; /* no loop: notifications are synchronous */
	signal_efd(n);
	return 0;
}

static const struct virtio_transport_ops vp_tops = {
	.signal_queue = vp_signal_queue,
	.signal_config = vp_signal_config,
	.replay_notify = vp_replay_notify,
};

/* ---- set-up -------------------------------------------------------------- */

/* Append a struct virtio_pci_cap (§4.1.4) of @size bytes. */
static int add_vcap(struct virtio_pci *vp, uint8_t type, uint32_t size, uint32_t offset,
		    uint32_t length, uint8_t *off)
{
	int r = pci_add_cap(&vp->pd, PCI_CAP_ID_VNDR, size, off);
	if (r)
		return r;
	pci_set8(&vp->pd, *off + VIRTIO_PCI_CAP_CAP_LEN, (uint8_t)size);
	pci_set8(&vp->pd, *off + VIRTIO_PCI_CAP_CFG_TYPE, type);
	pci_set8(&vp->pd, *off + VIRTIO_PCI_CAP_BAR, VIRTIO_PCI_BAR);
	pci_set32(&vp->pd, *off + VIRTIO_PCI_CAP_OFFSET, offset);
	pci_set32(&vp->pd, *off + VIRTIO_PCI_CAP_LENGTH, length);
	return 0;
}

static void close_notify(struct virtio_pci *vp)
{
	platform_defer_cancel(vp->p, &vp->bar_work);
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		struct virtio_pci_notify *n = &vp->notify[q];
		if (n->ioeventfd && vp->p && vp->p->ops && vp->p->ops->ioeventfd_del)
			vp->p->ops->ioeventfd_del(vp->p, false, n->gpa, 0, n->efd);
		n->ioeventfd = false;
		if (n->watched && vp->p && vp->p->loop)
			loop_del(vp->p->loop, n->efd);
		n->watched = false;
		if (n->efd >= 0)
			close(n->efd);
		n->efd = -1;
	}
}

int virtio_pci_create(struct virtio_pci *vp, struct pci_bus *pb, struct virtio_dev *d,
		      struct platform *p, int slot)
{
	if (!vp || !pb || !d || !d->ops || d->num_queues > VIRTIO_MAX_QUEUES ||
	    d->num_queues + 1 > PCI_MSIX_MAX_VECTORS)
		return -EINVAL;
	memset(vp, 0, sizeof(*vp));
	vp->d = d;
	vp->p = p;
	vp->bar_gpa = PCI_BAR_UNMAPPED;
	vp->bar_work.fn = vp_bar_work;
	transport_reset(vp);
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		vp->notify[q].vp = vp;
		vp->notify[q].q = (uint16_t)q;
		vp->notify[q].efd = -1;
	}
	uint16_t devid = (uint16_t)(VIRTIO_PCI_DEVICE_BASE + d->device_id);
	pci_dev_init(&vp->pd, &vp_pci_ops, d->name ? d->name : "virtio-pci", VIRTIO_PCI_VENDOR,
		     devid, virtio_pci_class(d->device_id), VIRTIO_PCI_REVISION, VIRTIO_PCI_VENDOR,
		     devid);
	uint32_t notify_len = (d->num_queues ? d->num_queues : 1u) * VIRTIO_PCI_NOTIFY_MULT;
	int r = pci_dev_add_bar(&vp->pd, VIRTIO_PCI_BAR, PCI_BAR_MEM64, VIRTIO_PCI_BAR_SIZE, false);
	if (!r)
		r = pci_msix_init(&vp->msix, &vp->pd, p, nvectors(vp), VIRTIO_PCI_BAR,
				  VIRTIO_PCI_MSIX_TABLE_OFF, VIRTIO_PCI_MSIX_PBA_OFF);
	if (r)
		return r;
	if ((r = add_vcap(vp, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_SIZE, VIRTIO_PCI_COMMON_OFF,
			  VIRTIO_PCI_COMMON_LEN, &vp->cap_common)) ||
	    (r = add_vcap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_CAP_SIZE,
			  VIRTIO_PCI_NOTIFY_OFF, notify_len, &vp->cap_notify)) ||
	    (r = add_vcap(vp, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_CAP_SIZE, VIRTIO_PCI_ISR_OFF,
			  VIRTIO_PCI_ISR_LEN, &vp->cap_isr)) ||
	    (r = add_vcap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_SIZE, VIRTIO_PCI_DEVICE_OFF,
			  VIRTIO_PCI_DEVICE_LEN, &vp->cap_device)) ||
	    (r = add_vcap(vp, VIRTIO_PCI_CAP_PCI_CFG, VIRTIO_PCI_CFG_CAP_SIZE, 0, 0,
			  &vp->cap_pci_cfg)))
		goto fail;
	pci_set32(&vp->pd, vp->cap_notify + VIRTIO_PCI_NOTIFY_CAP_MULT, VIRTIO_PCI_NOTIFY_MULT);
	/* PCI_CFG: bar, offset, length and the data window are the driver's */
	pci_set_wmask8(&vp->pd, vp->cap_pci_cfg + VIRTIO_PCI_CAP_BAR, 0xff);
	pci_set_wmask32(&vp->pd, vp->cap_pci_cfg + VIRTIO_PCI_CAP_OFFSET, 0xffffffffu);
	pci_set_wmask32(&vp->pd, vp->cap_pci_cfg + VIRTIO_PCI_CAP_LENGTH, 0xffffffffu);
	pci_set_wmask32(&vp->pd, vp->cap_pci_cfg + VIRTIO_PCI_CFG_CAP_DATA, 0xffffffffu);

	/* Every eventfd now and on the loop now (boot time): nothing of
	 * this is left for a vCPU's config write to do. */
	for (uint16_t q = 0; q < d->num_queues; q++) {
		struct virtio_pci_notify *n = &vp->notify[q];
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (efd < 0) {
			r = -errno;
			goto fail;
		}
		n->efd = efd;
		if (p && p->loop) {
			if ((r = loop_add(p->loop, efd, EPOLLIN, on_notify, n)))
				goto fail;
			n->watched = true;
		}
	}
	pthread_mutex_lock(&d->lock);
	d->transport = vp;
	d->tops = &vp_tops;
	pthread_mutex_unlock(&d->lock);
	r = pci_bus_add(pb, &vp->pd, slot);
	if (r < 0) {
		pthread_mutex_lock(&d->lock);
		d->transport = NULL;
		d->tops = NULL;
		pthread_mutex_unlock(&d->lock);
		goto fail;
	}
	return r;
fail:
	close_notify(vp);
	pci_msix_destroy(&vp->msix);
	return r;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	if (!vp || !vp->d)
		return;
	if (vp->pd.bus)
		pci_bus_remove(vp->pd.bus, &vp->pd);
	close_notify(vp);
	pci_msix_destroy(&vp->msix);
	vp->d = NULL;
}

/* ---- snapshot state ---------------------------------------------------------- */

int virtio_pci_state_get(struct virtio_pci *vp, struct virtio_pci_state *st)
{
	if (!vp || !vp->d)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	pci_dev_state_get(&vp->pd, &st->pci);
	struct virtio_dev *d = vp->d;
	pthread_mutex_lock(&d->lock);
	st->num_queues = d->num_queues;
	st->config_vec = vec_load(&vp->config_vec);
	for (uint16_t q = 0; q < d->num_queues; q++)
		st->queue_vec[q] = vec_load(&vp->queue_vec[q]);
	st->isr = __atomic_load_n(&vp->isr, __ATOMIC_ACQUIRE);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void virtio_pci_state_encode(const struct virtio_pci_state *st, struct snap_writer *w)
{
	pci_dev_state_encode(&st->pci, w);
	snap_put_u16(w, st->config_vec);
	snap_put_u16(w, st->num_queues);
	for (uint16_t q = 0; q < st->num_queues && q < VIRTIO_MAX_QUEUES; q++)
		snap_put_u16(w, st->queue_vec[q]);
	snap_put_u8(w, st->isr);
}

/* A vector the driver could have left in a vector register: one of the
 * device's, or NO_VECTOR (vec_store). */
static bool vec_valid(const struct virtio_pci *vp, uint16_t v)
{
	return v == VIRTIO_MSI_NO_VECTOR || v < nvectors(vp);
}

int virtio_pci_state_decode(struct snap_cursor *c, const struct virtio_pci *vp,
			    struct virtio_pci_state *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	int rc = pci_dev_state_decode(c, &vp->pd, &st->pci, err, errlen);
	if (rc)
		return rc;
	st->config_vec = snap_get_u16(c);
	st->num_queues = snap_get_u16(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "virtio-pci state truncated");
	if (st->num_queues != vp->d->num_queues)
		return err_set(err, errlen, -EINVAL,
			       "virtio-pci: %u queue vectors saved, this device has %u queues",
			       st->num_queues, vp->d->num_queues);
	for (uint16_t q = 0; q < st->num_queues; q++)
		st->queue_vec[q] = snap_get_u16(c);
	st->isr = snap_get_u8(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "virtio-pci state truncated");
	if (!vec_valid(vp, st->config_vec))
		return err_set(err, errlen, -EINVAL,
			       "virtio-pci: config vector %u (the device has %u vectors; 0x%x: none)",
			       st->config_vec, nvectors(vp), VIRTIO_MSI_NO_VECTOR);
	for (uint16_t q = 0; q < st->num_queues; q++)
		if (!vec_valid(vp, st->queue_vec[q]))
			return err_set(err, errlen, -EINVAL,
				       "virtio-pci: queue %u vector %u (the device has %u vectors; "
				       "0x%x: none)",
				       q, st->queue_vec[q], nvectors(vp), VIRTIO_MSI_NO_VECTOR);
	if (st->isr & ~(VIRTIO_PCI_ISR_QUEUE | VIRTIO_PCI_ISR_CONFIG))
		return err_set(err, errlen, -EINVAL, "virtio-pci: ISR 0x%02x has undefined bits set",
			       st->isr);
	return 0;
}

int virtio_pci_state_put(struct virtio_pci *vp, const struct virtio_pci_state *st)
{
	if (!vp || !vp->d || st->num_queues != vp->d->num_queues || st->pci.nvec != nvectors(vp))
		return -EINVAL; /* not decoded against @vp: change nothing */
	struct virtio_dev *d = vp->d;
	pthread_mutex_lock(&d->lock);
	vec_store(vp, &vp->config_vec, st->config_vec);
	for (uint16_t q = 0; q < d->num_queues; q++)
		vec_store(vp, &vp->queue_vec[q], st->queue_vec[q]);
	__atomic_store_n(&vp->isr, st->isr & (VIRTIO_PCI_ISR_QUEUE | VIRTIO_PCI_ISR_CONFIG),
			 __ATOMIC_RELEASE);
	pthread_mutex_unlock(&d->lock);
	/* the BAR goes where the config space says: vp_bar_mapped records it
	 * and queues bar_work when the mapping changes */
	int rc = pci_dev_state_put(&vp->pd, &st->pci);
	if (rc)
		return rc;
	/* and the ioeventfds follow it in any case (sync_ioeventfds only
	 * changes what differs), as vp_bar_mapped would have them */
	struct pci_bus *pb = vp->pd.bus;
	if (pb)
		pthread_mutex_lock(&pb->lock);
	if (platform_defer(vp->p, &vp->bar_work))
		sync_ioeventfds(vp);
	if (pb)
		pthread_mutex_unlock(&pb->lock);
	return 0;
}
