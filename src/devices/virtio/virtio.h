/* SPDX-License-Identifier: MIT */
/*
 * virtio.h - a virtio device, independent of its transport (virtio 1.2 §2, §3).
 *
 * Two levels of ops:
 *   struct virtio_dev_ops        what a device type (blk, rng, ...) provides;
 *   struct virtio_transport_ops  what a transport (PCI, MMIO) provides to
 *                                deliver interrupts.
 * A device embeds struct virtio_dev and recovers itself with container_of.
 *
 * The common state machine lives in virtio.c and is driven by the
 * transports: feature selection and negotiation, device status
 * (§2.1, §3.1.1 order: ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK; FAILED;
 * writing 0 resets), queue activation on DRIVER_OK, reset, and "broken"
 * (DEVICE_NEEDS_RESET + config interrupt, §2.1.2).
 *
 * Notifications before DRIVER_OK: a driver may make buffers available and
 * notify a queue before it sets DRIVER_OK (Linux's balloon driver queues
 * its first statistics buffer in probe); such notifications are ignored,
 * the device is not live yet.  So once DRIVER_OK has activated the queues
 * and ops->activate succeeded, the core asks the transport to replay one
 * notification for every active queue (tops->replay_notify): the event
 * loop then runs ops->queue_notify as for a notification from the driver.
 * Every device therefore looks at each of its queues once after DRIVER_OK
 * and none needs a workaround of its own.  The status write arrives on a
 * vCPU thread, so the core never calls queue_notify from it.
 *
 * Deferred work (struct virtio_deferred): a device that bounds the work of
 * one pass over a queue (a budget) hands the rest to the event loop
 * through one eventfd; the loop calls virtio_dev_queue_notify() again for
 * the queues left over.
 *
 * Pause gate (VM lifecycle: running <-> paused): virtio_dev_pause() closes
 * the gate and then calls ops->quiesce; virtio_dev_resume() calls
 * ops->unquiesce, opens the gate and then handles every queue that was
 * notified meanwhile, once.  While the gate is closed (d->paused),
 * virtio_dev_queue_notify() - and with it the deferred-work handler and the
 * notifications the core replays at DRIVER_OK - only records the queue as
 * pending; ops->queue_notify is not called and virtio_dev_drain() does
 * nothing.  Everything a device does outside queue_notify (back-end fds,
 * timers, completions) is the device's to stop in quiesce, and every such
 * entry point checks d->paused under d->lock (an event the loop fetched
 * before the pause may still be dispatched after it).  After
 * virtio_dev_pause() returns, no device touches guest memory or its rings
 * until virtio_dev_resume().  Register accesses from vCPUs cannot happen
 * while paused (the vCPUs are parked); if one did, it would still be safe:
 * a reset resets the device and forgets the pending queues, DRIVER_OK
 * activates the device and marks its queues pending instead of replaying.
 * Interrupts are not gated: used-buffer interrupts of requests completed
 * while quiescing, and configuration interrupts the VMM raises while
 * paused (virtio_dev_config_changed), go to the transport at once.
 *
 * Threads and locking: transports call in from vCPU threads (register
 * accesses) and the event loop (queue notifications from ioeventfds); all
 * of it happens under d->lock.  Device ops are called with d->lock held,
 * except where noted.  Device I/O completions run on the event loop and
 * take d->lock themselves.
 */
#ifndef VISOR_DEVICES_VIRTIO_VIRTIO_H
#define VISOR_DEVICES_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../../mem/guest_mem.h"
#include "virtq.h"

/* Device status bits (§2.1) */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

/* Reserved feature bits (§6) */
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED 34

/* Device IDs (§5) */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK 19

#define VIRTIO_MAX_QUEUES 8

struct virtio_dev;
struct loop;

struct virtio_dev_ops {
	/* Device-specific feature bits (the core adds VERSION_1,
	 * INDIRECT_DESC and EVENT_IDX). */
	uint64_t (*features)(struct virtio_dev *d);
	/* Device configuration space (§2.5): read/write @len (1,2,4,8) bytes
	 * at @off.  Reads past the device's config size must return zeros;
	 * writes there are ignored. */
	void (*config_read)(struct virtio_dev *d, uint32_t off, void *data, uint32_t len);
	void (*config_write)(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len);
	/* DRIVER_OK was set and every ready queue is activated.  Return 0, or
	 * -errno to fail the device (it is then marked broken). */
	int (*activate)(struct virtio_dev *d);
	/* The driver wrote 0 to status (or the VMM resets the device).  Must
	 * stop touching guest memory: cancel/wait for in-flight I/O before
	 * returning, or return -EINPROGRESS and call virtio_dev_reset_done()
	 * later (the status then reads non-zero until done, §2.4). */
	int (*reset)(struct virtio_dev *d);
	/* The driver notified queue @q (on the event loop thread, d->lock held). */
	void (*queue_notify)(struct virtio_dev *d, uint16_t q);
	/* The VM is pausing (event-loop thread, vCPUs parked, d->lock NOT held): stop back-end work that touches guest memory and finish or account for in-flight requests before returning. */
	void (*quiesce)(struct virtio_dev *d);
	/* The VM resumes (loop thread, d->lock NOT held): restart what quiesce stopped. */
	void (*unquiesce)(struct virtio_dev *d);
	/* Optional: announce the device on its network after a restore or a
	 * migration (registry_announce_all; loop thread, d->lock NOT held).
	 * 0 or -errno. */
	int (*announce)(struct virtio_dev *d);
};

struct virtio_transport_ops {
	/* Raise the used-buffer interrupt of queue @q (MSI-X vector of the
	 * queue, or the MMIO line with InterruptStatus bit 0). */
	void (*signal_queue)(struct virtio_dev *d, uint16_t q);
	/* Raise the configuration-change interrupt. */
	void (*signal_config)(struct virtio_dev *d);
	/* Have the event loop thread handle queue @q as if the driver had
	 * just notified it (virtio_dev_queue_notify under d->lock), e.g. by
	 * signalling the queue's notify eventfd.  Called with d->lock held,
	 * possibly on a vCPU thread: must neither call the device nor wait
	 * for the loop.  Returns 0, or -errno when the transport has no way
	 * to reach the loop for @q (no event loop).  Optional. */
	int (*replay_notify)(struct virtio_dev *d, uint16_t q);
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	const struct virtio_transport_ops *tops;
	void *transport; /* the transport's own state */
	const char *name;
	uint32_t device_id;
	uint16_t num_queues;
	uint16_t queue_max; /* largest queue size offered, power of two <= VIRTQ_MAX_SIZE */
	const struct guest_mem *mem;
	struct loop *loop;

	pthread_mutex_t lock;
	uint8_t status;
	bool reset_pending; /* reset() returned -EINPROGRESS */
	bool broken;
	uint64_t device_features;  /* offered */
	uint64_t driver_features;  /* accepted by the driver (valid after FEATURES_OK) */
	uint32_t device_feature_sel, driver_feature_sel;
	uint16_t queue_sel;
	uint32_t config_generation;
	/* Pause gate (virtio_dev_pause/resume): set from the start of
	 * virtio_dev_pause until the end of virtio_dev_resume's unquiesce;
	 * bit q of paused_pending: queue q was notified meanwhile.  Not
	 * touched by a reset (the VM stays paused). */
	bool paused;
	uint32_t paused_pending;
	struct virtq vqs[VIRTIO_MAX_QUEUES];
};

/* Initialise the common part.  @ops/@tops must outlive the device.
 * device_features = ops->features() | VERSION_1 | INDIRECT_DESC | EVENT_IDX.
 * Returns 0 or -errno. */
int virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops, const char *name,
		    uint32_t device_id, uint16_t num_queues, uint16_t queue_max,
		    const struct guest_mem *mem, struct loop *loop);
/* Release what virtio_dev_init set up (the lock), after the transport and
 * the device's loop handlers are gone. */
void virtio_dev_destroy(struct virtio_dev *d);

/* Transport helpers (d->lock held by the caller). */
uint32_t virtio_dev_read_device_features(struct virtio_dev *d); /* 32 bits at device_feature_sel */
void virtio_dev_write_driver_features(struct virtio_dev *d, uint32_t val); /* at driver_feature_sel; ignored unless status is ACK|DRIVER without FEATURES_OK */
uint8_t virtio_dev_get_status(struct virtio_dev *d);
/* Apply a status write: enforces order (FEATURES_OK only if the accepted
 * features are a subset of the offered ones and include VERSION_1;
 * DRIVER_OK only after FEATURES_OK, activating ready queues and the device;
 * 0 resets).  Out-of-order writes are ignored (logged, rate limited). */
void virtio_dev_set_status(struct virtio_dev *d, uint8_t status);
/* Queue geometry may be changed only while the device is not DRIVER_OK
 * (§2.6.1/4.x): returns the queue selected by queue_sel, or NULL if out
 * of range. */
struct virtq *virtio_dev_selected_queue(struct virtio_dev *d);
bool virtio_dev_queue_config_writable(struct virtio_dev *d);

/* Queue @q was notified by the driver: calls ops->queue_notify unless the
 * device is not live or the queue not active (ignored).  While the device
 * is paused the queue is only marked pending (virtio_dev_resume handles
 * it).  @q >= num_queues is ignored.  d->lock held, on the event loop
 * thread (only a transport without a loop, in unit tests, calls it on the
 * notifying thread). */
void virtio_dev_queue_notify(struct virtio_dev *d, uint16_t q);

/* Pause the device (VM pause; event-loop thread, d->lock NOT held): close
 * the gate (queue notifications are recorded, not handled), then call
 * ops->quiesce, which stops the device's other work and finishes or
 * accounts for in-flight requests.  When it returns the device touches
 * neither guest memory nor its rings until virtio_dev_resume.  Pausing a
 * paused device does nothing (quiesce is not called twice). */
void virtio_dev_pause(struct virtio_dev *d);

/* Resume a paused device (event-loop thread, d->lock NOT held): call
 * ops->unquiesce, open the gate, then notify every queue recorded as
 * pending while paused once, under d->lock, as for a notification from
 * the driver (ignored if the device is not live or the queue inactive).
 * Resuming a device that is not paused does nothing. */
void virtio_dev_resume(struct virtio_dev *d);

/* The device changed its configuration space (d->lock held; e.g. from the
 * loop thread for a balloon target or a drive swap): bump
 * config_generation and, if the driver is up (DRIVER_OK, no reset in
 * progress), raise the configuration-change interrupt (§2.5.1, §4.1.4.5).
 * A driver that is not up yet reads the new values when it starts. */
void virtio_dev_config_changed(struct virtio_dev *d);

/* The device processes queues: DRIVER_OK, not FAILED, not broken, no reset
 * in progress (d->lock held). */
bool virtio_dev_is_live(const struct virtio_dev *d);

/* For device code: interrupt the driver for queue @q if virtq_should_signal. */
void virtio_dev_signal_used(struct virtio_dev *d, uint16_t q);

/* The driver broke the rules: set DEVICE_NEEDS_RESET, stop processing
 * (queue_notify no longer called), raise the config interrupt, log once. */
void virtio_dev_mark_broken(struct virtio_dev *d, const char *why);

/* Complete a reset that returned -EINPROGRESS (takes d->lock). */
void virtio_dev_reset_done(struct virtio_dev *d);

/* Dirty tracking (mem/guest_mem.h): mark what a live device may still
 * write in guest RAM, its active queues' used rings and the writable
 * buffers of its chains in flight (virtq_mark_dirty), after a snapshot
 * cleared the dirty bitmap (event-loop thread, takes d->lock).  A device
 * that is not live writes nothing more.  -ENOMEM marks all of RAM. */
void virtio_dev_mark_dirty(struct virtio_dev *d);

/*
 * Deferred queue work, for devices that bound one pass over a queue:
 *
 *	if (virtio_deferred_yield(&dev->deferred, q, spent, BUDGET))
 *		break;  (end the pass; the loop continues it later)
 *
 * One eventfd on d->loop per device.  yield/kick mark the queue pending and
 * signal the eventfd; the loop's handler takes d->lock and calls
 * virtio_dev_queue_notify() for each pending queue (so nothing runs once
 * the device is reset, broken or the queue inactive), on the loop thread
 * like any notification.  Without a loop (d->loop NULL: unit tests) there
 * is nobody to continue: yield never stops a pass and the budget does not
 * apply.  All fields are under d->lock except fd (fixed between init and
 * fini).
 */
struct virtio_deferred {
	struct virtio_dev *d;
	int fd;           /* eventfd watched by d->loop, -1 without a loop */
	uint32_t pending; /* bit q: look at queue q again */
};

/* Bind @df to @d (after virtio_dev_init) and, when d->loop is set, create
 * the eventfd and put it on the loop.  Call it in any case (it sets fd to
 * -1 first), so that virtio_deferred_fini is always safe afterwards.
 * 0 / -errno (nothing stays registered on failure). */
int virtio_deferred_init(struct virtio_deferred *df, struct virtio_dev *d);
/* Off the loop and closed (after the transport is gone); idempotent. */
void virtio_deferred_fini(struct virtio_deferred *df);
/* Have the loop look at queue @q again (d->lock held).  Without a loop
 * the queue is only marked pending (virtio_deferred_run handles it). */
void virtio_deferred_kick(struct virtio_deferred *df, uint16_t q);
/* A pass over queue @q has done @spent units of work (d->lock held): if
 * there is a loop and @spent >= @budget, kick @q and return true, and the
 * caller ends its pass; otherwise return false. */
bool virtio_deferred_yield(struct virtio_deferred *df, uint16_t q, uint64_t spent,
			   uint64_t budget);
/*
 * One budgeted pass over queue @qi (d->lock held), the loop every simple
 * device runs: pop each available chain into @chain and hand it to @fn,
 * return the chain @fn names (*ret_head, *ret_len; *ret_head may be
 * another chain the device held, or VIRTIO_HOLD to keep this one) to the
 * used ring, until the ring is empty (notifications re-enabled and checked
 * once more) or @df says the budget is spent (1 + what @fn returns per
 * chain).  A bad chain or an unknown head marks the device broken.  Used
 * buffers are signalled once at the end.  Does nothing unless the device
 * is live and the queue active; while the device is paused it only marks
 * the queue pending for virtio_dev_resume.
 */
#define VIRTIO_HOLD UINT32_MAX
typedef uint64_t (*virtio_chain_fn)(void *ctx, const struct virtq_chain *c,
				    uint32_t *ret_head, uint32_t *ret_len);
void virtio_dev_drain(struct virtio_dev *d, uint16_t qi, struct virtq_chain *chain,
		      virtio_chain_fn fn, void *ctx, struct virtio_deferred *df,
		      uint64_t budget);

/* Forget the pending queues (device reset; d->lock held). */
void virtio_deferred_cancel(struct virtio_deferred *df);
/* What the loop's handler does (takes d->lock): notify every pending
 * queue, clearing its bit first (a pass may kick it again).  While the
 * device is paused the notification is recorded for virtio_dev_resume
 * (see virtio_dev_queue_notify). */
void virtio_deferred_run(struct virtio_deferred *df);

/*
 * Snapshot state of the transport-independent part (docs/snapshot-format.md,
 * "virtio"): status, the features offered and accepted, the selectors, the
 * config generation, whether the device is broken, and every queue
 * (virtq.h).  Taken with the VM paused and the device quiesced; a device
 * whose reset is still in progress cannot be saved (-EBUSY).
 *
 * On load the offered features must equal what this device offers (the
 * same device built from the same configuration): a snapshot cannot give a
 * device features it does not have.  Once FEATURES_OK is set the accepted
 * ones must be a subset, with VERSION_1 (before it they are whatever the
 * negotiating driver wrote); the status a value the status
 * machine can reach; each queue consistent (virtq_state_decode) and, when
 * active, where activation would allow it (virtq_state_check) and with the
 * negotiated EVENT_IDX/INDIRECT_DESC.
 */
/*
 * A virtio device's snapshot section holds the transport's part
 * (virtio_pci_state_*, virtio_mmio_state_*), this core part and the
 * device's own, under one section version (VIRTIO_<TYPE>_STATE_VERSION).
 * That version is VIRTIO_SHARED_STATE_VERSION, the version of the parts
 * all devices share, plus the number of times the device's own part
 * changed: a change to either bumps it, and no two layouts of a device's
 * section share a version.  Shared version 2: the virtio-mmio part no
 * longer repeats the queue registers the core saves (version 1 had them;
 * this visor reads only the current version).
 */
#define VIRTIO_SHARED_STATE_VERSION 2

struct virtio_dev_state {
	uint8_t status, broken;
	uint64_t device_features, driver_features;
	uint32_t device_feature_sel, driver_feature_sel;
	uint16_t queue_sel, num_queues;
	uint32_t config_generation;
	struct virtq_state vqs[VIRTIO_MAX_QUEUES];
};
int virtio_dev_state_get(struct virtio_dev *d, struct virtio_dev_state *st);
void virtio_dev_state_encode(const struct virtio_dev_state *st, struct snap_writer *w);
/* Read from @c (the caller checks the cursor at the end) and check against
 * device @d (its offered features, queue count and maximum, its guest
 * memory).  Touches nothing of @d.  0 or -EINVAL with a message. */
int virtio_dev_state_decode(struct snap_cursor *c, const struct virtio_dev *d,
			    struct virtio_dev_state *st, char *err, size_t errlen);
/* Whether @st is a live device's, as virtio_dev_is_live has it: DRIVER_OK,
 * neither FAILED (the driver gave up) nor broken.  Only a live device
 * holds chains; one that is not keeps its queues and their heads in
 * flight (active queues stay active) until the driver's reset drops them,
 * so the devices' X_state_check accept whatever is in flight then. */
bool virtio_dev_state_is_live(const struct virtio_dev_state *st);
/* Make @d hold @st (decoded against it): status, features, selectors and
 * queues, rings mapped.  The device's own state comes next, then
 * virtio_dev_state_restart.  0 or -EINVAL. */
int virtio_dev_state_put(struct virtio_dev *d, const struct virtio_dev_state *st);
/* After everything of the device was restored: a live device is activated
 * (ops->activate, as at DRIVER_OK) and every active queue looked at once,
 * so requests the driver made before the snapshot are served.  A device
 * whose activation fails is marked broken, as at DRIVER_OK. */
void virtio_dev_state_restart(struct virtio_dev *d);

#endif
