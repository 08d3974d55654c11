/* SPDX-License-Identifier: MIT */
/*
 * virtio_mmio.c - virtio over MMIO, version 2 (virtio 1.2 §4.2).  See the
 * header for the register map and the rules applied to guest accesses.
 */
#include "virtio_mmio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../arch/x86/aml.h"
#include "../../event/loop.h"
#include "../../util/bytes.h"
#include "../../util/log.h"
#include "../../util/str.h"

static struct ratelimit bad_access_rl;
static struct ratelimit refuse_rl;

static uint64_t set_low(uint64_t v, uint32_t lo)
{
	return (v & 0xffffffff00000000ULL) | lo;
}

static uint64_t set_high(uint64_t v, uint32_t hi)
{
	return (v & 0xffffffffULL) | (uint64_t)hi << 32;
}

/* ---- interrupts -------------------------------------------------------- */

/* Fire one edge on the device's GSI.  d->lock held. */
static void fire_irq(struct virtio_mmio *t)
{
	t->irqs++;
	if (t->irqfd >= 0) {
		uint64_t one = 1;
		/* Only fails with EAGAIN when the counter is about to overflow,
		 * i.e. KVM has not consumed 2^64-2 edges: nothing to lose. */
		if (write(t->irqfd, &one, sizeof(one)) == (ssize_t)sizeof(one))
			return;
		static struct ratelimit rl;
		log_ratelimited(&rl, LOG_WARN, "%s: irqfd write: %s", t->bus.name, strerror(errno));
		return;
	}
	t->p->ops->set_irq(t->p, t->gsi, 1);
	t->p->ops->set_irq(t->p, t->gsi, 0);
}

/* Raise InterruptStatus @bit; an edge only when the bit was clear (see the
 * header for why re-raising a set bit needs no edge).  d->lock held. */
static void raise_status(struct virtio_mmio *t, uint32_t bit)
{
	uint32_t old = t->interrupt_status;
	t->interrupt_status |= bit;
	if (!(old & bit))
		fire_irq(t);
}

static void mmio_signal_queue(struct virtio_dev *d, uint16_t q)
{
	(void)q; /* one interrupt for all queues (§4.2.2 InterruptStatus) */
	raise_status(d->transport, VIRTIO_MMIO_INT_VRING);
}

static void mmio_signal_config(struct virtio_dev *d)
{
	raise_status(d->transport, VIRTIO_MMIO_INT_CONFIG);
}

/* ---- queues and reset --------------------------------------------------- */

/* The queue named by QueueSel, or NULL.  d->queue_sel mirrors t->queue_sel
 * (0xffff when out of range, so that virtio.c agrees). */
static struct virtq *selected_vq(struct virtio_mmio *t)
{
	if (t->queue_sel >= t->d->num_queues)
		return NULL;
	return virtio_dev_selected_queue(t->d);
}

/* Bits raised while a reset was still in progress (reset() returned
 * -EINPROGRESS, §2.4) belong to the old session: drop them once it has
 * completed.  Called at the start of every access.  d->lock held. */
static void reset_wait_check(struct virtio_mmio *t)
{
	if (t->reset_wait && !t->d->reset_pending) {
		t->interrupt_status = 0;
		t->reset_wait = false;
	}
}

/* The driver wrote Status = 0.  The driver-visible transport state is
 * reset now; the queues' geometry lives in the virtqs, which virtio.c has
 * reset already (size queue_max, not ready, addresses 0) or resets once
 * the device has quiesced: until then virtio_dev_queue_config_writable()
 * is false and QueueReady reads 0.  d->lock held. */
static void transport_reset(struct virtio_mmio *t)
{
	t->queue_sel = 0;
	t->d->queue_sel = 0;
	t->interrupt_status = 0;
	t->reset_wait = true;
	reset_wait_check(t);
}

/* May the driver change @vq's geometry now?  Not once the queue is ready,
 * nor after DRIVER_OK/FAILED or during a reset (virtio.c). */
static bool geometry_writable(struct virtio_mmio *t, const struct virtq *vq)
{
	return !vq->ready && virtio_dev_queue_config_writable(t->d);
}

static bool queue_num_valid(uint32_t num, uint32_t max)
{
	return num != 0 && (num & (num - 1)) == 0 && num <= max;
}

/* QueueNum: a valid size is the queue's size; any other value leaves the
 * queue without one (size 0) so that it cannot be enabled until the driver
 * writes a valid size (geometry writable). */
static void queue_num_write(struct virtio_mmio *t, struct virtq *vq, uint32_t val)
{
	struct virtio_dev *d = t->d;
	if (queue_num_valid(val, d->queue_max)) {
		vq->size = (uint16_t)val;
		return;
	}
	log_ratelimited(&refuse_rl, LOG_WARN,
			"%s: queue %u: size %" PRIu32 " invalid (a power of two up to %u), "
			"the queue cannot be enabled",
			t->bus.name, (unsigned)(vq - d->vqs), val, d->queue_max);
	vq->size = 0;
}

static void queue_ready_write(struct virtio_mmio *t, struct virtq *vq, uint32_t val)
{
	struct virtio_dev *d = t->d;
	if (val == 0) {
		/* Before DRIVER_OK the driver may take a queue back (Linux
		 * does on set-up errors); afterwards this is ignored like any
		 * geometry change: the queue stays as validated. */
		if (vq->ready && virtio_dev_queue_config_writable(d))
			vq->ready = false;
		return;
	}
	if (val != 1 || !geometry_writable(t, vq))
		return;
	/* the size is valid or 0 (queue_num_write; a restored state was
	 * checked alike), checked again all the same */
	if (!queue_num_valid(vq->size, d->queue_max)) {
		log_ratelimited(&refuse_rl, LOG_WARN,
				"%s: queue %u: no valid size (QueueNum), not enabled", t->bus.name,
				(unsigned)(vq - d->vqs));
		return;
	}
	vq->ready = true;
}

/* A notification for queue @q arrived (eventfd or bus write). */
static void notify_locked(struct virtio_mmio *t, uint16_t q)
{
	virtio_dev_queue_notify(t->d, q);
}

static void notify_cb(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct virtio_mmio_notify *n = ctx;
	uint64_t cnt;
	(void)l;
	(void)events;
	/* Drain (non-blocking): many kicks coalesce into one notify. */
	if (read(fd, &cnt, sizeof(cnt)) != (ssize_t)sizeof(cnt))
		return;
	struct virtio_dev *d = n->t->d;
	pthread_mutex_lock(&d->lock);
	notify_locked(n->t, n->q);
	pthread_mutex_unlock(&d->lock);
}

/* Hand a notification of @n's queue to the loop (n->efd >= 0). */
static void signal_efd(struct virtio_mmio *t, struct virtio_mmio_notify *n)
{
	uint64_t one = 1;
	/* EAGAIN only if the counter is saturated: a notify is pending
	 * anyway. */
	if (write(n->efd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
		static struct ratelimit rl;
		log_ratelimited(&rl, LOG_WARN, "%s: notify eventfd: %s", t->bus.name,
				strerror(errno));
	}
}

static void queue_notify_write(struct virtio_mmio *t, uint32_t val)
{
	if (val >= t->d->num_queues)
		return; /* out of range: ignored (checklist 13) */
	struct virtio_mmio_notify *n = &t->notify[val];
	if (n->efd >= 0) {
		signal_efd(t, n);
		return;
	}
	notify_locked(t, (uint16_t)val);
}

/* The core asks for a notification of queue @q on the loop (d->lock held,
 * a vCPU thread): the same eventfd as a QueueNotify write. */
static int mmio_replay_notify(struct virtio_dev *d, uint16_t q)
{
	struct virtio_mmio *t = d->transport;
	if (q >= d->num_queues)
		return -EINVAL;
	struct virtio_mmio_notify *n = &t->notify[q];
	if (n->efd < 0)
		return -ENOTCONN; /* no loop: notifications are synchronous */
	signal_efd(t, n);
	return 0;
}

static const struct virtio_transport_ops virtio_mmio_tops = {
	.signal_queue = mmio_signal_queue,
	.signal_config = mmio_signal_config,
	.replay_notify = mmio_replay_notify,
};

/* ---- register access ---------------------------------------------------- */

static uint32_t reg_read(struct virtio_mmio *t, uint64_t off)
{
	struct virtio_dev *d = t->d;
	struct virtq *vq;

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return VIRTIO_MMIO_VERSION_2;
	case VIRTIO_MMIO_DEVICE_ID:
		return d->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return virtio_dev_read_device_features(d);
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return selected_vq(t) ? d->queue_max : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		/* a reset in progress has cleared it for the driver already */
		vq = selected_vq(t);
		return vq && vq->ready && !d->reset_pending ? 1 : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return t->interrupt_status;
	case VIRTIO_MMIO_STATUS:
		return virtio_dev_get_status(d);
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
		return 0xffffffffu; /* length -1: no such region (§4.2.2) */
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return d->config_generation;
	default:
		/* write-only, reserved, legacy-only (v1) and QueueReset */
		return 0;
	}
}

static void reg_write(struct virtio_mmio *t, uint64_t off, uint32_t val)
{
	struct virtio_dev *d = t->d;
	struct virtq *vq;

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		d->device_feature_sel = val;
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		virtio_dev_write_driver_features(d, val);
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		d->driver_feature_sel = val;
		return;
	case VIRTIO_MMIO_QUEUE_SEL:
		t->queue_sel = val;
		d->queue_sel = val < d->num_queues ? (uint16_t)val : 0xffff;
		return;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		queue_notify_write(t, val);
		return;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		t->interrupt_status &= ~val;
		return;
	case VIRTIO_MMIO_STATUS:
		if (val > 0xff) {
			log_ratelimited(&bad_access_rl, LOG_DEBUG, "%s: status 0x%" PRIx32 " ignored",
					t->bus.name, val);
			return;
		}
		virtio_dev_set_status(d, (uint8_t)val);
		if (val == 0)
			transport_reset(t);
		return;
	default:
		break;
	}

	/* queue geometry */
	vq = selected_vq(t);
	if (!vq)
		return;
	if (off == VIRTIO_MMIO_QUEUE_READY) {
		queue_ready_write(t, vq, val);
		return;
	}
	switch (off) {
	case VIRTIO_MMIO_QUEUE_NUM:
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
		break;
	default:
		return; /* read-only, reserved, SHMSel, QueueReset, legacy */
	}
	if (!geometry_writable(t, vq))
		return; /* checklist 15 */
	switch (off) {
	case VIRTIO_MMIO_QUEUE_NUM:
		queue_num_write(t, vq, val);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		vq->desc_gpa = set_low(vq->desc_gpa, val);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		vq->desc_gpa = set_high(vq->desc_gpa, val);
		break;
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
		vq->avail_gpa = set_low(vq->avail_gpa, val);
		break;
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
		vq->avail_gpa = set_high(vq->avail_gpa, val);
		break;
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
		vq->used_gpa = set_low(vq->used_gpa, val);
		break;
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
		vq->used_gpa = set_high(vq->used_gpa, val);
		break;
	}
}

static bool reg_access_ok(struct virtio_mmio *t, uint64_t off, uint32_t len, bool is_write)
{
	if (len == 4 && (off & 3) == 0)
		return true;
	__atomic_add_fetch(&t->bad_accesses, 1, __ATOMIC_RELAXED);
	log_ratelimited(&bad_access_rl, LOG_DEBUG,
			"%s: %u-byte %s at register offset 0x%" PRIx64 " ignored", t->bus.name, len,
			is_write ? "write" : "read", off);
	return false;
}

static void mmio_read(struct bus_dev *bd, uint64_t off, void *data, uint32_t len)
{
	struct virtio_mmio *t = container_of(bd, struct virtio_mmio, bus);
	struct virtio_dev *d = t->d;
	memset(data, 0, len);
	if (len > 8 || off >= VIRTIO_MMIO_WINDOW || len > VIRTIO_MMIO_WINDOW - off)
		return;
	if (off >= VIRTIO_MMIO_CONFIG) {
		pthread_mutex_lock(&d->lock);
		reset_wait_check(t);
		if (d->ops->config_read)
			d->ops->config_read(d, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data, len);
		pthread_mutex_unlock(&d->lock);
		return;
	}
	if (!reg_access_ok(t, off, len, false))
		return;
	pthread_mutex_lock(&d->lock);
	reset_wait_check(t);
	uint32_t v = reg_read(t, off);
	pthread_mutex_unlock(&d->lock);
	put_le32(data, v);
}

static void mmio_write(struct bus_dev *bd, uint64_t off, const void *data, uint32_t len)
{
	struct virtio_mmio *t = container_of(bd, struct virtio_mmio, bus);
	struct virtio_dev *d = t->d;
	if (len > 8 || off >= VIRTIO_MMIO_WINDOW || len > VIRTIO_MMIO_WINDOW - off)
		return;
	if (off >= VIRTIO_MMIO_CONFIG) {
		pthread_mutex_lock(&d->lock);
		reset_wait_check(t);
		if (d->ops->config_write)
			d->ops->config_write(d, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data, len);
		pthread_mutex_unlock(&d->lock);
		return;
	}
	if (!reg_access_ok(t, off, len, true))
		return;
	uint32_t v = get_le32(data);
	pthread_mutex_lock(&d->lock);
	reset_wait_check(t);
	reg_write(t, off, v);
	pthread_mutex_unlock(&d->lock);
}

static const struct bus_dev_ops virtio_mmio_bus_ops = {
	.read = mmio_read,
	.write = mmio_write,
};

/* ---- set-up --------------------------------------------------------------- */

static void notify_teardown(struct virtio_mmio *t)
{
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		struct virtio_mmio_notify *n = &t->notify[i];
		if (n->efd < 0)
			continue;
		if (n->ioeventfd)
			t->p->ops->ioeventfd_del_datamatch(t->p, false,
							   t->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4,
							   n->q, n->efd);
		n->ioeventfd = false;
		if (t->p->loop)
			loop_del(t->p->loop, n->efd);
		close(n->efd);
		n->efd = -1;
	}
}

int virtio_mmio_init(struct virtio_mmio *t, struct virtio_dev *d, struct platform *p, uint64_t base,
		     uint32_t gsi)
{
	if (!t || !d || !d->ops || !p || !p->ops || !p->mmio)
		return -EINVAL;
	if ((base & (VIRTIO_MMIO_WINDOW - 1)) || d->num_queues > VIRTIO_MAX_QUEUES)
		return -EINVAL;

	memset(t, 0, sizeof(*t));
	t->d = d;
	t->p = p;
	t->base = base;
	t->gsi = gsi;
	t->irqfd = -1;
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		t->notify[i].t = t;
		t->notify[i].q = (uint16_t)i;
		t->notify[i].efd = -1;
	}
	t->bus.ops = &virtio_mmio_bus_ops;
	t->bus.name = d->name ? d->name : "virtio-mmio";

	if (p->ops->irqfd_for_gsi) {
		int fd = -1;
		int r = p->ops->irqfd_for_gsi(p, gsi, &fd);
		if (r == 0 && fd >= 0)
			t->irqfd = fd;
		else
			log_debug("%s: no irqfd for GSI %" PRIu32 " (%s), using the IRQ line",
				  t->bus.name, gsi, strerror(r ? -r : EBADF));
	}
	if (t->irqfd < 0 && !p->ops->set_irq)
		return -EINVAL;

	int r = 0;
	for (uint16_t i = 0; p->loop && i < d->num_queues; i++) {
		struct virtio_mmio_notify *n = &t->notify[i];
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (efd < 0) {
			r = -errno;
			goto fail;
		}
		if ((r = loop_add(p->loop, efd, EPOLLIN, notify_cb, n))) {
			close(efd);
			goto fail;
		}
		n->efd = efd;
		if (p->ops->ioeventfd_add_datamatch && p->ops->ioeventfd_del_datamatch) {
			int e = p->ops->ioeventfd_add_datamatch(p, false, base + VIRTIO_MMIO_QUEUE_NOTIFY,
								4, i, efd);
			if (e)
				log_warn("%s: queue %u: ioeventfd: %s; notifications exit to visor",
					 t->bus.name, i, strerror(-e));
			else
				n->ioeventfd = true;
		}
	}

	if ((r = bus_register(p->mmio, &t->bus, base, VIRTIO_MMIO_WINDOW)))
		goto fail;
	d->transport = t;
	d->tops = &virtio_mmio_tops;
	return 0;

fail:
	notify_teardown(t);
	return r;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
	if (!t || !t->p)
		return;
	if (t->d && t->d->transport == t) {
		bus_unregister(t->p->mmio, &t->bus);
		t->d->transport = NULL;
		t->d->tops = NULL;
	}
	notify_teardown(t);
}

/* ---- guest-visible descriptions ----------------------------------------- */

int virtio_mmio_acpi_aml(struct aml *a, int index, uint64_t base, uint32_t gsi)
{
	if (!a)
		return -EINVAL;
	if (index < 0 || index > 0xff || base > 0x100000000ULL - VIRTIO_MMIO_WINDOW) {
		if (!a->err)
			a->err = -EINVAL;
		return -EINVAL;
	}
	char name[5];
	snprintf(name, sizeof(name), "VR%02X", (unsigned)index);
	size_t dev = aml_device_begin(a, name);
	aml_name_string(a, "_HID", "LNRO0005");
	aml_name_integer(a, "_UID", (uint64_t)index);
	aml_name_decl(a, "_CRS");
	size_t rt = aml_restemplate_begin(a);
	aml_res_memory32_fixed(a, (uint32_t)base, (uint32_t)VIRTIO_MMIO_WINDOW, true);
	aml_res_interrupt(a, AML_INT_CONSUMER | AML_INT_EDGE, gsi);
	aml_restemplate_end(a, rt);
	return aml_device_end(a, dev);
}

int virtio_mmio_cmdline(char *buf, size_t len, uint64_t base, uint32_t gsi)
{
	if (!buf)
		return -EINVAL;
	int n = snprintf(buf, len, "virtio_mmio.device=4K@0x%" PRIx64 ":%" PRIu32, base, gsi);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= len)
		return -ENOSPC;
	return n;
}

/* ---- snapshot state ---------------------------------------------------------- */

#define INT_DEFINED (VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG)

int virtio_mmio_state_get(struct virtio_mmio *t, struct virtio_mmio_state *st)
{
	if (!t || !t->d)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	struct virtio_dev *d = t->d;
	pthread_mutex_lock(&d->lock);
	if (d->reset_pending) {
		pthread_mutex_unlock(&d->lock);
		return -EBUSY;
	}
	st->queue_sel = t->queue_sel;
	st->interrupt_status = t->interrupt_status;
	st->reset_wait = t->reset_wait;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void virtio_mmio_state_encode(const struct virtio_mmio_state *st, struct snap_writer *w)
{
	snap_put_u32(w, st->queue_sel);
	snap_put_u32(w, st->interrupt_status);
	snap_put_u8(w, st->reset_wait);
}

int virtio_mmio_state_decode(struct snap_cursor *c, const struct virtio_mmio *t,
			     struct virtio_mmio_state *st, char *err, size_t errlen)
{
	(void)t; /* nothing of the transport's own state depends on the device */
	memset(st, 0, sizeof(*st));
	st->queue_sel = snap_get_u32(c);
	st->interrupt_status = snap_get_u32(c);
	st->reset_wait = snap_get_u8(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "virtio-mmio state truncated");
	if (st->interrupt_status & ~INT_DEFINED)
		return err_set(err, errlen, -EINVAL,
			       "virtio-mmio: interrupt status 0x%" PRIx32 " has undefined bits set",
			       st->interrupt_status);
	if (st->reset_wait > 1)
		return err_set(err, errlen, -EINVAL, "virtio-mmio: reset wait flag %u is not 0 or 1",
			       st->reset_wait);
	return 0;
}

int virtio_mmio_state_check(const struct virtio_mmio_state *st,
			    const struct virtio_dev_state *core, char *err, size_t errlen)
{
	uint16_t sel = st->queue_sel < core->num_queues ? (uint16_t)st->queue_sel : 0xffff;
	if (core->queue_sel != sel)
		return err_set(err, errlen, -EINVAL,
			       "virtio-mmio: queue select %" PRIu32 " but the core's is %u",
			       st->queue_sel, core->queue_sel);
	return 0;
}

int virtio_mmio_state_put(struct virtio_mmio *t, const struct virtio_mmio_state *st)
{
	if (!t || !t->d)
		return -EINVAL;
	struct virtio_dev *d = t->d;
	pthread_mutex_lock(&d->lock);
	t->queue_sel = st->queue_sel;
	d->queue_sel = st->queue_sel < d->num_queues ? (uint16_t)st->queue_sel : 0xffff;
	t->interrupt_status = st->interrupt_status & INT_DEFINED;
	t->reset_wait = st->reset_wait;
	pthread_mutex_unlock(&d->lock);
	return 0;
}
