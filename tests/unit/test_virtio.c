/* SPDX-License-Identifier: MIT */
/*
 * Common virtio device tests: status state machine, feature negotiation,
 * queue activation, the replay of notifications at DRIVER_OK, reset, the
 * broken state, deferred queue work, the pause gate and configuration
 * changes, with a fake device whose ops count their calls and a fake
 * transport.
 */
#include "../../src/devices/virtio/virtio.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../src/event/loop.h"
#include "../../src/util/log.h"
#include "test.h"
#include "loop_runner.h"
#include "virtio_fake.h"

#define ACK VIRTIO_STATUS_ACKNOWLEDGE
#define DRV VIRTIO_STATUS_DRIVER
#define FOK VIRTIO_STATUS_FEATURES_OK
#define DOK VIRTIO_STATUS_DRIVER_OK
#define NEEDS_RESET VIRTIO_STATUS_DEVICE_NEEDS_RESET
#define FAILED VIRTIO_STATUS_FAILED

#define DEV_FEATURES ((1ull << 0) | (1ull << 5))
#define F_VERSION_1 (1ull << VIRTIO_F_VERSION_1)
#define F_INDIRECT (1ull << VIRTIO_F_INDIRECT_DESC)
#define F_EVENT_IDX (1ull << VIRTIO_F_EVENT_IDX)
#define ALL_FEATURES (DEV_FEATURES | F_VERSION_1 | F_INDIRECT | F_EVENT_IDX)

#define NQ 2
#define QMAX 16

struct fake {
	struct virtio_dev dev;
	struct guest_mem mem;
	int features_calls, activate_calls, reset_calls, notify_calls;
	int signal_queue_calls, signal_config_calls;
	uint16_t last_notify, last_signal;
	int activate_ret, reset_ret;
	int replay_calls, replay_ret;
	uint32_t replay_mask;          /* queues the transport was asked to replay */
	int notify_calls_at_replay;    /* notify_calls when the last replay was asked */
	pthread_t notify_thread;       /* where queue_notify last ran */
	/* the pause gate */
	int quiesce_calls, unquiesce_calls;
	int notify_while_paused;       /* queue_notify calls that saw d->paused */
	int lock_held_in_hooks;        /* quiesce/unquiesce found d->lock taken */
	bool paused_in_quiesce, paused_in_unquiesce;
	int notify_calls_at_unquiesce;
	int unquiesce_kick;            /* queue unquiesce notifies, -1: none */
};

#ifndef container_of
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#endif

static struct fake *to_fake(struct virtio_dev *d)
{
	return container_of(d, struct fake, dev);
}

static uint64_t fake_features(struct virtio_dev *d)
{
	to_fake(d)->features_calls++;
	return DEV_FEATURES;
}

static int fake_activate(struct virtio_dev *d)
{
	to_fake(d)->activate_calls++;
	return to_fake(d)->activate_ret;
}

static int fake_reset(struct virtio_dev *d)
{
	to_fake(d)->reset_calls++;
	return to_fake(d)->reset_ret;
}

static void fake_notify(struct virtio_dev *d, uint16_t q)
{
	if (d->paused)
		to_fake(d)->notify_while_paused++;
	to_fake(d)->notify_calls++;
	to_fake(d)->last_notify = q;
	to_fake(d)->notify_thread = pthread_self();
}

static void fake_signal_queue(struct virtio_dev *d, uint16_t q)
{
	to_fake(d)->signal_queue_calls++;
	to_fake(d)->last_signal = q;
}

static void fake_signal_config(struct virtio_dev *d)
{
	to_fake(d)->signal_config_calls++;
}

static const struct virtio_dev_ops fake_ops = {
	.features = fake_features,
	.activate = fake_activate,
	.reset = fake_reset,
	.queue_notify = fake_notify,
};

/* d->lock is free (tests without a second thread: so the caller of the
 * hook does not hold it). */
static bool lock_free_here(struct virtio_dev *d)
{
	if (pthread_mutex_trylock(&d->lock) != 0)
		return false;
	pthread_mutex_unlock(&d->lock);
	return true;
}

static void fake_quiesce(struct virtio_dev *d)
{
	struct fake *f = to_fake(d);
	if (!lock_free_here(d))
		f->lock_held_in_hooks++;
	f->quiesce_calls++;
	f->paused_in_quiesce = d->paused;
}

static void fake_unquiesce(struct virtio_dev *d)
{
	struct fake *f = to_fake(d);
	if (!lock_free_here(d))
		f->lock_held_in_hooks++;
	f->unquiesce_calls++;
	f->paused_in_unquiesce = d->paused;
	f->notify_calls_at_unquiesce = f->notify_calls;
	if (f->unquiesce_kick >= 0) {
		/* "look at this queue again": recorded, handled after */
		pthread_mutex_lock(&d->lock);
		virtio_dev_queue_notify(d, (uint16_t)f->unquiesce_kick);
		pthread_mutex_unlock(&d->lock);
	}
}

/* The same device with the pause hooks. */
static const struct virtio_dev_ops fake_ops_pause = {
	.features = fake_features,
	.activate = fake_activate,
	.reset = fake_reset,
	.queue_notify = fake_notify,
	.quiesce = fake_quiesce,
	.unquiesce = fake_unquiesce,
};

static int fake_replay_notify(struct virtio_dev *d, uint16_t q)
{
	struct fake *f = to_fake(d);
	f->replay_calls++;
	f->replay_mask |= 1u << q;
	f->notify_calls_at_replay = f->notify_calls;
	return f->replay_ret;
}

static const struct virtio_transport_ops fake_tops = {
	.signal_queue = fake_signal_queue,
	.signal_config = fake_signal_config,
	.replay_notify = fake_replay_notify,
};

/* A transport without the (optional) replay op. */
static const struct virtio_transport_ops fake_tops_no_replay = {
	.signal_queue = fake_signal_queue,
	.signal_config = fake_signal_config,
};

static void fake_init_loop(struct fake *f, struct loop *l)
{
	log_set_level(LOG_ERROR); /* the tests provoke warnings on purpose */
	memset(f, 0, sizeof(*f));
	if (guest_mem_init(&f->mem, 1 << 20, 1 << 20, 1 << 20))
		abort();
	if (virtio_dev_init(&f->dev, &fake_ops, "fake", VIRTIO_ID_RNG, NQ, QMAX, &f->mem, l))
		abort();
	f->dev.tops = &fake_tops;
	f->unquiesce_kick = -1;
}

static void fake_init(struct fake *f)
{
	fake_init_loop(f, NULL);
}

static void fake_fini(struct fake *f)
{
	virtio_dev_destroy(&f->dev);
	guest_mem_destroy(&f->mem);
}

/* Program queue @i with valid rings and mark it ready. */
static void setup_queue(struct fake *f, uint16_t i)
{
	f->dev.queue_sel = i;
	struct virtq *q = virtio_dev_selected_queue(&f->dev);
	if (!q || !virtio_dev_queue_config_writable(&f->dev))
		abort();
	uint64_t base = 0x10000ull * (i + 1);
	q->size = 8;
	q->desc_gpa = base;
	q->avail_gpa = base + 0x1000;
	q->used_gpa = base + 0x2000;
	q->ready = true;
}

/* A live device with queue 0 set up (and queue 1 not ready). */
static void bring_up(struct fake *f, uint64_t features)
{
	if (vf_negotiate(&f->dev, features) != (ACK | DRV | FOK))
		abort();
	setup_queue(f, 0);
	virtio_dev_set_status(&f->dev, ACK | DRV | FOK | DOK);
}

TEST(init_offers_core_features)
{
	struct fake f;
	fake_init(&f);
	CHECK_EQ(f.features_calls, 1);
	CHECK_EQ(f.dev.device_features, ALL_FEATURES);
	CHECK_EQ(f.dev.status, 0);
	CHECK_EQ(f.dev.num_queues, NQ);
	for (int i = 0; i < NQ; i++) {
		CHECK_EQ(f.dev.vqs[i].size, QMAX);
		CHECK(!f.dev.vqs[i].ready && !f.dev.vqs[i].active);
	}
	f.dev.device_feature_sel = 0;
	CHECK_EQ(virtio_dev_read_device_features(&f.dev), (uint32_t)ALL_FEATURES);
	f.dev.device_feature_sel = 1;
	CHECK_EQ(virtio_dev_read_device_features(&f.dev), (uint32_t)(ALL_FEATURES >> 32));
	f.dev.device_feature_sel = 2;
	CHECK_EQ(virtio_dev_read_device_features(&f.dev), 0);
	f.dev.device_feature_sel = 0xffffffffu;
	CHECK_EQ(virtio_dev_read_device_features(&f.dev), 0);
	fake_fini(&f);

	struct virtio_dev d;
	static const uint16_t bad_max[] = {0, 3, 100, 2 * VIRTQ_MAX_SIZE};
	for (size_t i = 0; i < sizeof(bad_max) / sizeof(bad_max[0]); i++)
		CHECK_EQ(virtio_dev_init(&d, &fake_ops, "x", 1, 1, bad_max[i], NULL, NULL),
			 (unsigned long long)-EINVAL);
	CHECK_EQ(virtio_dev_init(&d, &fake_ops, "x", 1, VIRTIO_MAX_QUEUES + 1, 8, NULL, NULL),
		 (unsigned long long)-EINVAL);
	CHECK_EQ(virtio_dev_init(&d, NULL, "x", 1, 1, 8, NULL, NULL), (unsigned long long)-EINVAL);
}

TEST(normal_bring_up)
{
	struct fake f;
	fake_init(&f);
	CHECK_EQ(vf_negotiate(&f.dev, ALL_FEATURES), ACK | DRV | FOK);
	CHECK_EQ(f.dev.driver_features, ALL_FEATURES);
	CHECK(virtio_dev_queue_config_writable(&f.dev));
	setup_queue(&f, 0);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | DOK);
	CHECK_EQ(f.activate_calls, 1);
	CHECK(f.dev.vqs[0].active);
	CHECK(f.dev.vqs[0].event_idx && f.dev.vqs[0].indirect);
	CHECK(!f.dev.vqs[1].active); /* not ready: left alone */
	CHECK(!f.dev.broken);
	CHECK(!virtio_dev_queue_config_writable(&f.dev));
	virtio_dev_queue_notify(&f.dev, 0);
	CHECK_EQ(f.notify_calls, 1);
	CHECK_EQ(f.last_notify, 0);
	/* rewriting the same status does not activate again */
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK_EQ(f.activate_calls, 1);
	fake_fini(&f);
}

TEST(negotiated_subset_of_features)
{
	struct fake f;
	fake_init(&f);
	/* the driver may accept fewer features */
	CHECK_EQ(vf_negotiate(&f.dev, F_VERSION_1 | (1ull << 5)), ACK | DRV | FOK);
	setup_queue(&f, 0);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK(f.dev.vqs[0].active);
	CHECK(!f.dev.vqs[0].event_idx && !f.dev.vqs[0].indirect);
	fake_fini(&f);
}

TEST(status_order_enforced)
{
	struct fake f;
	fake_init(&f);
	virtio_dev_set_status(&f.dev, DRV); /* DRIVER without ACKNOWLEDGE */
	CHECK_EQ(virtio_dev_get_status(&f.dev), 0);
	virtio_dev_set_status(&f.dev, ACK);
	virtio_dev_set_status(&f.dev, ACK | FOK); /* FEATURES_OK without DRIVER */
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK);
	virtio_dev_set_status(&f.dev, ACK | DRV);
	vf_write_features(&f.dev, ALL_FEATURES);
	setup_queue(&f, 0);
	virtio_dev_set_status(&f.dev, ACK | DRV | DOK); /* DRIVER_OK without FEATURES_OK */
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV);
	CHECK_EQ(f.activate_calls, 0);
	CHECK(!f.dev.vqs[0].active);
	virtio_dev_queue_notify(&f.dev, 0);
	CHECK_EQ(f.notify_calls, 0);
	/* clearing bits without a reset */
	virtio_dev_set_status(&f.dev, ACK);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV);
	/* reserved bits */
	virtio_dev_set_status(&f.dev, ACK | DRV | 0x10);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV);
	virtio_dev_set_status(&f.dev, ACK | DRV | 0x20);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV);
	/* the proper order still works afterwards */
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | DOK);
	CHECK_EQ(f.activate_calls, 1);
	/* DRIVER_OK cleared */
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | DOK);
	fake_fini(&f);
}

TEST(several_steps_in_one_write)
{
	struct fake f;
	fake_init(&f);
	virtio_dev_set_status(&f.dev, ACK | DRV);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV);
	vf_write_features(&f.dev, ALL_FEATURES);
	setup_queue(&f, 0);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | DOK);
	CHECK_EQ(f.activate_calls, 1);
	fake_fini(&f);
}

TEST(unknown_features_refused)
{
	struct fake f;
	fake_init(&f);
	CHECK_EQ(vf_negotiate(&f.dev, ALL_FEATURES | (1ull << 40)), ACK | DRV);
	CHECK_EQ(f.dev.status & FOK, 0);
	/* nor does DRIVER_OK get through */
	setup_queue(&f, 0);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV);
	CHECK_EQ(f.activate_calls, 0);
	CHECK(!f.dev.vqs[0].active);
	/* the driver may retry with a valid set (still negotiating) */
	vf_write_features(&f.dev, F_VERSION_1);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK);
	fake_fini(&f);

	fake_init(&f);
	/* bit 1 is not offered by the device */
	CHECK_EQ(vf_negotiate(&f.dev, F_VERSION_1 | (1ull << 1)), ACK | DRV);
	fake_fini(&f);

	fake_init(&f);
	/* packed rings are not offered */
	CHECK_EQ(vf_negotiate(&f.dev, F_VERSION_1 | (1ull << VIRTIO_F_RING_PACKED)), ACK | DRV);
	fake_fini(&f);
}

TEST(missing_version_1_refused)
{
	struct fake f;
	fake_init(&f);
	CHECK_EQ(vf_negotiate(&f.dev, ALL_FEATURES & ~F_VERSION_1), ACK | DRV);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV);
	CHECK_EQ(f.activate_calls, 0);
	fake_fini(&f);
}

TEST(feature_writes_outside_negotiation_ignored)
{
	struct fake f;
	fake_init(&f);
	/* before ACKNOWLEDGE|DRIVER */
	vf_write_features(&f.dev, ALL_FEATURES);
	CHECK_EQ(f.dev.driver_features, 0);
	virtio_dev_set_status(&f.dev, ACK);
	vf_write_features(&f.dev, ALL_FEATURES);
	CHECK_EQ(f.dev.driver_features, 0);
	virtio_dev_set_status(&f.dev, ACK | DRV);
	/* unknown selectors are ignored */
	f.dev.driver_feature_sel = 2;
	virtio_dev_write_driver_features(&f.dev, 0xffffffffu);
	f.dev.driver_feature_sel = 0xffffffffu;
	virtio_dev_write_driver_features(&f.dev, 0xffffffffu);
	CHECK_EQ(f.dev.driver_features, 0);
	vf_write_features(&f.dev, F_VERSION_1 | F_EVENT_IDX);
	CHECK_EQ(f.dev.driver_features, F_VERSION_1 | F_EVENT_IDX);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK);
	/* after FEATURES_OK */
	vf_write_features(&f.dev, ALL_FEATURES);
	CHECK_EQ(f.dev.driver_features, F_VERSION_1 | F_EVENT_IDX);
	setup_queue(&f, 0);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	/* after DRIVER_OK */
	vf_write_features(&f.dev, ALL_FEATURES);
	CHECK_EQ(f.dev.driver_features, F_VERSION_1 | F_EVENT_IDX);
	CHECK(f.dev.vqs[0].event_idx && !f.dev.vqs[0].indirect);
	fake_fini(&f);
}

TEST(failed_sticks_until_reset)
{
	struct fake f;
	fake_init(&f);
	virtio_dev_set_status(&f.dev, ACK | DRV);
	virtio_dev_set_status(&f.dev, ACK | DRV | FAILED);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FAILED);
	vf_write_features(&f.dev, ALL_FEATURES);
	CHECK_EQ(f.dev.driver_features, 0);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	virtio_dev_set_status(&f.dev, ACK | DRV);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FAILED);
	CHECK_EQ(f.activate_calls, 0);
	virtio_dev_set_status(&f.dev, 0);
	CHECK_EQ(virtio_dev_get_status(&f.dev), 0);
	CHECK_EQ(vf_negotiate(&f.dev, ALL_FEATURES), ACK | DRV | FOK);
	fake_fini(&f);

	/* FAILED on a live device stops queue processing */
	fake_init(&f);
	bring_up(&f, ALL_FEATURES);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK | FAILED);
	CHECK(virtio_dev_get_status(&f.dev) & FAILED);
	virtio_dev_queue_notify(&f.dev, 0);
	CHECK_EQ(f.notify_calls, 0);
	fake_fini(&f);
}

TEST(reset_clears_everything)
{
	struct fake f;
	fake_init(&f);
	bring_up(&f, ALL_FEATURES);
	f.dev.queue_sel = 1;
	f.dev.device_feature_sel = 1;
	f.dev.driver_feature_sel = 1;
	virtio_dev_mark_broken(&f.dev, "test");
	uint32_t gen = f.dev.config_generation;
	virtio_dev_set_status(&f.dev, 0);
	CHECK_EQ(f.reset_calls, 1);
	CHECK_EQ(virtio_dev_get_status(&f.dev), 0);
	CHECK(!f.dev.broken && !f.dev.reset_pending);
	CHECK_EQ(f.dev.driver_features, 0);
	CHECK_EQ(f.dev.device_features, ALL_FEATURES);
	CHECK_EQ(f.dev.device_feature_sel, 0);
	CHECK_EQ(f.dev.driver_feature_sel, 0);
	CHECK_EQ(f.dev.queue_sel, 0);
	CHECK_EQ(f.dev.config_generation, gen);
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		struct virtq *q = &f.dev.vqs[i];
		CHECK_EQ(q->size, QMAX);
		CHECK(!q->ready && !q->active);
		CHECK_EQ(q->desc_gpa | q->avail_gpa | q->used_gpa, 0);
		CHECK_EQ(q->inflight, 0);
		CHECK_EQ(q->last_avail, 0);
	}
	CHECK(virtio_dev_queue_config_writable(&f.dev));
	virtio_dev_queue_notify(&f.dev, 0);
	CHECK_EQ(f.notify_calls, 0);
	/* and the device can be brought up again */
	bring_up(&f, ALL_FEATURES);
	CHECK_EQ(f.activate_calls, 2);
	CHECK(f.dev.vqs[0].active);
	fake_fini(&f);
}

TEST(reset_pending)
{
	struct fake f;
	fake_init(&f);
	bring_up(&f, ALL_FEATURES);
	f.reset_ret = -EINPROGRESS;
	virtio_dev_set_status(&f.dev, 0);
	CHECK_EQ(f.reset_calls, 1);
	CHECK(f.dev.reset_pending);
	/* the driver keeps reading the old status until the reset is done */
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | DOK);
	/* nothing happens meanwhile */
	virtio_dev_queue_notify(&f.dev, 0);
	CHECK_EQ(f.notify_calls, 0);
	CHECK(!virtio_dev_queue_config_writable(&f.dev));
	virtio_dev_set_status(&f.dev, 0);
	CHECK_EQ(f.reset_calls, 1);
	virtio_dev_set_status(&f.dev, ACK);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | DOK);
	virtio_dev_reset_done(&f.dev);
	CHECK_EQ(virtio_dev_get_status(&f.dev), 0);
	CHECK(!f.dev.reset_pending);
	CHECK(!f.dev.vqs[0].active && !f.dev.vqs[0].ready);
	CHECK_EQ(f.dev.driver_features, 0);
	/* a stray completion later changes nothing */
	f.dev.status = ACK;
	virtio_dev_reset_done(&f.dev);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK);
	fake_fini(&f);
}

TEST(queue_notify_gating)
{
	struct fake f;
	fake_init(&f);
	virtio_dev_queue_notify(&f.dev, 0); /* status 0 */
	CHECK_EQ(vf_negotiate(&f.dev, ALL_FEATURES), ACK | DRV | FOK);
	setup_queue(&f, 0);
	virtio_dev_queue_notify(&f.dev, 0); /* FEATURES_OK, no DRIVER_OK */
	CHECK_EQ(f.notify_calls, 0);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	virtio_dev_queue_notify(&f.dev, NQ); /* out of range */
	virtio_dev_queue_notify(&f.dev, VIRTIO_MAX_QUEUES);
	virtio_dev_queue_notify(&f.dev, 0xffff);
	virtio_dev_queue_notify(&f.dev, 1); /* exists but not ready */
	CHECK_EQ(f.notify_calls, 0);
	virtio_dev_queue_notify(&f.dev, 0);
	CHECK_EQ(f.notify_calls, 1);
	virtio_dev_mark_broken(&f.dev, "test");
	virtio_dev_queue_notify(&f.dev, 0);
	CHECK_EQ(f.notify_calls, 1);
	fake_fini(&f);
}

TEST(driver_ok_replays_active_queues)
{
	struct fake f;
	fake_init(&f);
	CHECK_EQ(vf_negotiate(&f.dev, ALL_FEATURES), ACK | DRV | FOK);
	setup_queue(&f, 0);
	/* the driver kicks before DRIVER_OK: ignored */
	virtio_dev_queue_notify(&f.dev, 0);
	CHECK_EQ(f.notify_calls, 0);
	CHECK_EQ(f.replay_calls, 0);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	/* one replay per active queue (1 is not ready), asked for after the
	 * device was activated, and the device itself not called */
	CHECK_EQ(f.activate_calls, 1);
	CHECK_EQ(f.replay_calls, 1);
	CHECK_EQ(f.replay_mask, 1);
	CHECK_EQ(f.notify_calls, 0);
	/* what the loop then does */
	virtio_dev_queue_notify(&f.dev, 0);
	CHECK_EQ(f.notify_calls, 1);
	/* rewriting DRIVER_OK does not replay again */
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK_EQ(f.replay_calls, 1);
	/* after a reset, the next DRIVER_OK replays again (both queues) */
	virtio_dev_set_status(&f.dev, 0);
	f.replay_mask = 0;
	CHECK_EQ(vf_negotiate(&f.dev, ALL_FEATURES), ACK | DRV | FOK);
	setup_queue(&f, 0);
	setup_queue(&f, 1);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK_EQ(f.replay_calls, 3);
	CHECK_EQ(f.replay_mask, 3);
	CHECK_EQ(f.notify_calls, 1);
	fake_fini(&f);
}

TEST(replay_only_for_a_device_that_came_up)
{
	struct fake f;
	/* device activation fails */
	fake_init(&f);
	f.activate_ret = -ENOMEM;
	bring_up(&f, ALL_FEATURES);
	CHECK(f.dev.broken);
	CHECK_EQ(f.replay_calls, 0);
	fake_fini(&f);
	/* queue activation fails */
	fake_init(&f);
	CHECK_EQ(vf_negotiate(&f.dev, ALL_FEATURES), ACK | DRV | FOK);
	setup_queue(&f, 0);
	f.dev.vqs[0].desc_gpa = 0x10001; /* misaligned */
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK(f.dev.broken);
	CHECK_EQ(f.activate_calls, 0);
	CHECK_EQ(f.replay_calls, 0);
	fake_fini(&f);
	/* FEATURES_OK refused: no DRIVER_OK, no replay */
	fake_init(&f);
	CHECK_EQ(vf_negotiate(&f.dev, DEV_FEATURES), ACK | DRV);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK_EQ(f.replay_calls, 0);
	fake_fini(&f);
}

TEST(replay_failure_and_absence_are_harmless)
{
	struct fake f;
	/* a transport that cannot reach a loop: the device is up anyway */
	fake_init(&f);
	f.replay_ret = -ENOTCONN;
	bring_up(&f, ALL_FEATURES);
	CHECK_EQ(f.replay_calls, 1);
	CHECK(!f.dev.broken);
	CHECK(virtio_dev_is_live(&f.dev));
	CHECK_EQ(f.notify_calls, 0);
	fake_fini(&f);
	/* a transport without the op, and no transport at all */
	fake_init(&f);
	f.dev.tops = &fake_tops_no_replay;
	bring_up(&f, ALL_FEATURES);
	CHECK(virtio_dev_is_live(&f.dev));
	CHECK_EQ(f.replay_calls, 0);
	fake_fini(&f);
	fake_init(&f);
	f.dev.tops = NULL;
	bring_up(&f, ALL_FEATURES);
	CHECK(virtio_dev_is_live(&f.dev));
	CHECK_EQ(f.notify_calls, 0);
	fake_fini(&f);
}

TEST(selected_queue_and_geometry_lock)
{
	struct fake f;
	fake_init(&f);
	f.dev.queue_sel = 0;
	CHECK(virtio_dev_selected_queue(&f.dev) == &f.dev.vqs[0]);
	f.dev.queue_sel = NQ - 1;
	CHECK(virtio_dev_selected_queue(&f.dev) == &f.dev.vqs[NQ - 1]);
	f.dev.queue_sel = NQ;
	CHECK(virtio_dev_selected_queue(&f.dev) == NULL);
	f.dev.queue_sel = 0xffff;
	CHECK(virtio_dev_selected_queue(&f.dev) == NULL);
	CHECK(virtio_dev_queue_config_writable(&f.dev));
	bring_up(&f, ALL_FEATURES);
	CHECK(!virtio_dev_queue_config_writable(&f.dev));
	fake_fini(&f);
}

TEST(queue_activation_failure_breaks_device)
{
	struct fake f;
	fake_init(&f);
	CHECK_EQ(vf_negotiate(&f.dev, ALL_FEATURES), ACK | DRV | FOK);
	setup_queue(&f, 0);
	f.dev.queue_sel = 1;
	struct virtq *q = virtio_dev_selected_queue(&f.dev);
	q->size = 0; /* checklist B.14: size 0, then ready */
	q->ready = true;
	uint32_t gen = f.dev.config_generation;
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK(f.dev.broken);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | DOK | NEEDS_RESET);
	CHECK_EQ(f.signal_config_calls, 1);
	CHECK_EQ(f.dev.config_generation, gen + 1);
	CHECK_EQ(f.activate_calls, 0);
	virtio_dev_queue_notify(&f.dev, 0);
	CHECK_EQ(f.notify_calls, 0);
	fake_fini(&f);

	/* rings outside RAM */
	fake_init(&f);
	CHECK_EQ(vf_negotiate(&f.dev, ALL_FEATURES), ACK | DRV | FOK);
	setup_queue(&f, 0);
	f.dev.vqs[0].used_gpa = 1ull << 40;
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK(f.dev.broken);
	CHECK(virtio_dev_get_status(&f.dev) & NEEDS_RESET);
	CHECK_EQ(f.signal_config_calls, 1);
	CHECK_EQ(f.activate_calls, 0);
	/* a reset recovers */
	virtio_dev_set_status(&f.dev, 0);
	bring_up(&f, ALL_FEATURES);
	CHECK(!f.dev.broken);
	CHECK_EQ(f.activate_calls, 1);
	fake_fini(&f);
}

TEST(device_activation_failure_breaks_device)
{
	struct fake f;
	fake_init(&f);
	f.activate_ret = -ENOMEM;
	bring_up(&f, ALL_FEATURES);
	CHECK_EQ(f.activate_calls, 1);
	CHECK(f.dev.broken);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | DOK | NEEDS_RESET);
	CHECK_EQ(f.signal_config_calls, 1);
	fake_fini(&f);
}

TEST(mark_broken_idempotent)
{
	struct fake f;
	fake_init(&f);
	bring_up(&f, ALL_FEATURES);
	uint32_t gen = f.dev.config_generation;
	virtio_dev_mark_broken(&f.dev, "first");
	virtio_dev_mark_broken(&f.dev, "second");
	virtio_dev_mark_broken(&f.dev, NULL);
	CHECK(f.dev.broken);
	CHECK_EQ(f.signal_config_calls, 1);
	CHECK_EQ(f.dev.config_generation, gen + 1);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | DOK | NEEDS_RESET);
	/* the driver writing back what it read neither clears NEEDS_RESET
	 * nor re-activates anything */
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK | NEEDS_RESET);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | DOK | NEEDS_RESET);
	CHECK_EQ(f.activate_calls, 1);
	/* FAILED on top is still accepted */
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK | NEEDS_RESET | FAILED);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | DOK | NEEDS_RESET | FAILED);
	/* after a reset it can break (and signal) again */
	virtio_dev_set_status(&f.dev, 0);
	bring_up(&f, ALL_FEATURES);
	virtio_dev_mark_broken(&f.dev, "again");
	CHECK_EQ(f.signal_config_calls, 2);
	fake_fini(&f);
}

TEST(broken_before_driver_ok)
{
	struct fake f;
	fake_init(&f);
	CHECK_EQ(vf_negotiate(&f.dev, ALL_FEATURES), ACK | DRV | FOK);
	virtio_dev_mark_broken(&f.dev, "early");
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | NEEDS_RESET);
	/* §2.1.2: config notification only with DRIVER_OK */
	CHECK_EQ(f.signal_config_calls, 0);
	setup_queue(&f, 0);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK_EQ(virtio_dev_get_status(&f.dev), ACK | DRV | FOK | NEEDS_RESET);
	CHECK_EQ(f.activate_calls, 0);
	fake_fini(&f);
}

/* Make one single-descriptor chain available on queue 0, pop and push it. */
static void complete_one(struct fake *f, uint16_t head)
{
	struct virtq *q = &f->dev.vqs[0];
	uint8_t desc[16] = {0};
	uint64_t addr = 0x80000;
	uint32_t len = 16;
	uint16_t flags = VIRTQ_DESC_F_WRITE;
	memcpy(desc, &addr, 8);
	memcpy(desc + 8, &len, 4);
	memcpy(desc + 12, &flags, 2);
	if (guest_write(&f->mem, q->desc_gpa + 16ull * head, desc, 16))
		abort();
	uint16_t idx;
	if (guest_read(&f->mem, q->avail_gpa + 2, &idx, 2) ||
	    guest_write(&f->mem, q->avail_gpa + 4 + 2ull * (idx % q->size), &head, 2))
		abort();
	idx++;
	if (guest_write(&f->mem, q->avail_gpa + 2, &idx, 2))
		abort();
	struct virtq_chain c;
	if (virtq_pop(q, &c) != 1 || virtq_push(q, c.head, 16))
		abort();
}

TEST(signal_used)
{
	struct fake f;
	fake_init(&f);
	virtio_dev_signal_used(&f.dev, 0); /* not live */
	CHECK_EQ(f.signal_queue_calls, 0);
	bring_up(&f, F_VERSION_1); /* no EVENT_IDX */
	complete_one(&f, 0);
	virtio_dev_signal_used(&f.dev, 0);
	CHECK_EQ(f.signal_queue_calls, 1);
	CHECK_EQ(f.last_signal, 0);
	virtio_dev_signal_used(&f.dev, 0); /* nothing new */
	CHECK_EQ(f.signal_queue_calls, 1);
	uint16_t no_int = VIRTQ_AVAIL_F_NO_INTERRUPT;
	CHECK_EQ(guest_write(&f.mem, f.dev.vqs[0].avail_gpa, &no_int, 2), 0);
	complete_one(&f, 1);
	virtio_dev_signal_used(&f.dev, 0);
	CHECK_EQ(f.signal_queue_calls, 1);
	virtio_dev_signal_used(&f.dev, NQ); /* out of range */
	virtio_dev_signal_used(&f.dev, 0xffff);
	CHECK_EQ(f.signal_queue_calls, 1);
	/* without a transport attached nothing is called */
	no_int = 0;
	CHECK_EQ(guest_write(&f.mem, f.dev.vqs[0].avail_gpa, &no_int, 2), 0);
	f.dev.tops = NULL;
	virtio_dev_signal_used(&f.dev, 0);
	virtio_dev_mark_broken(&f.dev, "no transport");
	CHECK_EQ(f.signal_queue_calls, 1);
	fake_fini(&f);
}

/* ---- deferred queue work ---- */

static struct loop_handler *handler_of(struct loop *l, int fd)
{
	for (int i = 0; i < LOOP_MAX_FDS; i++)
		if (l->h[i].fd == fd)
			return &l->h[i];
	return NULL;
}

static bool readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) == 1;
}

TEST(deferred_without_loop)
{
	struct fake f;
	fake_init(&f);
	bring_up(&f, ALL_FEATURES);
	struct virtio_deferred df;
	memset(&df, 0xff, sizeof(df));
	CHECK_EQ(virtio_deferred_init(&df, &f.dev), 0);
	CHECK_EQ(df.fd, -1);
	CHECK_EQ(df.pending, 0);
	/* nobody to continue a pass: the budget does not apply */
	CHECK(!virtio_deferred_yield(&df, 0, 1000, 10));
	CHECK(!virtio_deferred_yield(&df, 0, 10, 10));
	CHECK_EQ(df.pending, 0);
	/* an explicit kick is remembered for virtio_deferred_run */
	virtio_deferred_kick(&df, 0);
	CHECK_EQ(df.pending, 1);
	virtio_deferred_run(&df);
	CHECK_EQ(df.pending, 0);
	CHECK_EQ(f.notify_calls, 1);
	virtio_deferred_fini(&df);
	virtio_deferred_fini(&df);
	CHECK_EQ(df.fd, -1);
	fake_fini(&f);
}

TEST(deferred_on_the_loop)
{
	struct loop l;
	CHECK_EQ(loop_init(&l), 0);
	struct fake f;
	fake_init_loop(&f, &l);
	struct virtio_deferred df;
	CHECK_EQ(virtio_deferred_init(&df, &f.dev), 0);
	CHECK(df.fd >= 0);
	struct loop_handler *h = handler_of(&l, df.fd);
	CHECK(h != NULL);
	if (!h)
		abort();
	bring_up(&f, ALL_FEATURES);
	/* under the budget: the pass goes on, nothing deferred */
	CHECK(!virtio_deferred_yield(&df, 0, 9, 10));
	CHECK(!readable(df.fd));
	CHECK_EQ(df.pending, 0);
	/* budget used: the pass ends and the loop is woken */
	CHECK(virtio_deferred_yield(&df, 0, 10, 10));
	CHECK_EQ(df.pending, 1);
	CHECK(readable(df.fd));
	CHECK(virtio_deferred_yield(&df, 0, 11, 10)); /* kicks coalesce */
	CHECK_EQ(f.notify_calls, 0);
	h->cb(&l, df.fd, EPOLLIN, h->ctx);
	CHECK(!readable(df.fd));
	CHECK_EQ(df.pending, 0);
	CHECK_EQ(f.notify_calls, 1);
	CHECK_EQ(f.last_notify, 0);
	/* an inactive or absent queue reaches nothing */
	virtio_deferred_kick(&df, 1);
	virtio_deferred_kick(&df, NQ);
	virtio_deferred_kick(&df, 0xffff);
	CHECK_EQ(df.pending, 2);
	h->cb(&l, df.fd, EPOLLIN, h->ctx);
	CHECK_EQ(f.notify_calls, 1);
	/* cancelled work is forgotten (device reset) */
	virtio_deferred_kick(&df, 0);
	virtio_deferred_cancel(&df);
	h->cb(&l, df.fd, EPOLLIN, h->ctx);
	CHECK_EQ(f.notify_calls, 1);
	/* pending work of a device that was reset meanwhile: dropped */
	virtio_deferred_kick(&df, 0);
	virtio_dev_set_status(&f.dev, 0);
	h->cb(&l, df.fd, EPOLLIN, h->ctx);
	CHECK_EQ(f.notify_calls, 1);
	CHECK_EQ(df.pending, 0);
	/* a spurious wake-up does nothing */
	h->cb(&l, df.fd, EPOLLIN, h->ctx);
	CHECK_EQ(f.notify_calls, 1);
	int fd = df.fd;
	virtio_deferred_fini(&df);
	CHECK_EQ(df.fd, -1);
	CHECK(handler_of(&l, fd) == NULL);
	virtio_deferred_fini(&df);
	fake_fini(&f);
	loop_destroy(&l);
}

TEST(deferred_work_runs_on_the_loop_thread)
{
	struct loop l;
	CHECK_EQ(loop_init(&l), 0);
	struct fake f;
	fake_init_loop(&f, &l);
	struct virtio_deferred df;
	CHECK_EQ(virtio_deferred_init(&df, &f.dev), 0);
	bring_up(&f, ALL_FEATURES);
	struct loop_runner lr;
	CHECK_EQ(loop_runner_start(&lr, &l), 0);
	pthread_mutex_lock(&f.dev.lock);
	CHECK(virtio_deferred_yield(&df, 0, 1, 1));
	pthread_mutex_unlock(&f.dev.lock);
	int calls = 0;
	for (int i = 0; i < 2000 && !calls; i++) {
		pthread_mutex_lock(&f.dev.lock);
		calls = f.notify_calls;
		pthread_mutex_unlock(&f.dev.lock);
		if (!calls)
			usleep(1000);
	}
	CHECK_EQ(loop_runner_stop(&lr), 0);
	CHECK_EQ(f.notify_calls, 1);
	CHECK(pthread_equal(f.notify_thread, lr.thread));
	virtio_deferred_fini(&df);
	fake_fini(&f);
	loop_destroy(&l);
}

/* ---- the pause gate ---- */

static void with_pause_hooks(struct fake *f)
{
	f->dev.ops = &fake_ops_pause;
}

static void notify_locked(struct fake *f, uint16_t q)
{
	pthread_mutex_lock(&f->dev.lock);
	virtio_dev_queue_notify(&f->dev, q);
	pthread_mutex_unlock(&f->dev.lock);
}

TEST(pause_records_notifications_and_resume_handles_them_once)
{
	struct fake f;
	fake_init(&f);
	with_pause_hooks(&f);
	bring_up(&f, ALL_FEATURES);
	notify_locked(&f, 0);
	CHECK_EQ(f.notify_calls, 1);

	virtio_dev_pause(&f.dev);
	CHECK(f.dev.paused);
	CHECK_EQ(f.quiesce_calls, 1);
	CHECK(f.paused_in_quiesce); /* the gate closes before quiesce */
	/* kicks while paused: recorded, the device is not called; several
	 * kicks of one queue are one pending look */
	for (int i = 0; i < 5; i++)
		notify_locked(&f, 0);
	notify_locked(&f, 1);    /* exists, not ready: recorded, ignored later */
	notify_locked(&f, NQ);   /* out of range: not even recorded */
	notify_locked(&f, 0xffff);
	CHECK_EQ(f.notify_calls, 1);
	CHECK_EQ(f.dev.paused_pending, 3);
	/* pausing again changes nothing */
	virtio_dev_pause(&f.dev);
	CHECK_EQ(f.quiesce_calls, 1);

	virtio_dev_resume(&f.dev);
	CHECK(!f.dev.paused);
	CHECK_EQ(f.unquiesce_calls, 1);
	CHECK(f.paused_in_unquiesce);            /* the gate opens after unquiesce */
	CHECK_EQ(f.notify_calls_at_unquiesce, 1); /* and the queues are looked at after */
	CHECK_EQ(f.notify_calls, 2);             /* queue 0 once; queue 1 is not active */
	CHECK_EQ(f.last_notify, 0);
	CHECK_EQ(f.dev.paused_pending, 0);
	CHECK_EQ(f.notify_while_paused, 0);
	CHECK_EQ(f.lock_held_in_hooks, 0);
	/* resuming again changes nothing; the gate is open */
	virtio_dev_resume(&f.dev);
	CHECK_EQ(f.unquiesce_calls, 1);
	CHECK_EQ(f.notify_calls, 2);
	notify_locked(&f, 0);
	CHECK_EQ(f.notify_calls, 3);

	/* a pause without notifications: resume looks at nothing */
	virtio_dev_pause(&f.dev);
	virtio_dev_resume(&f.dev);
	CHECK_EQ(f.quiesce_calls, 2);
	CHECK_EQ(f.unquiesce_calls, 2);
	CHECK_EQ(f.notify_calls, 3);
	fake_fini(&f);
}

TEST(pause_without_hooks_and_before_the_driver)
{
	struct fake f;
	/* a device without quiesce/unquiesce (virtio-rng): the gate alone */
	fake_init(&f);
	bring_up(&f, ALL_FEATURES);
	virtio_dev_pause(&f.dev);
	notify_locked(&f, 0);
	CHECK_EQ(f.notify_calls, 0);
	virtio_dev_resume(&f.dev);
	CHECK_EQ(f.notify_calls, 1);
	fake_fini(&f);
	/* a device the driver has not started: hooks run, nothing is handled */
	fake_init(&f);
	with_pause_hooks(&f);
	virtio_dev_pause(&f.dev);
	notify_locked(&f, 0);
	virtio_dev_resume(&f.dev);
	CHECK_EQ(f.quiesce_calls, 1);
	CHECK_EQ(f.unquiesce_calls, 1);
	CHECK_EQ(f.notify_calls, 0);
	fake_fini(&f);
}

TEST(unquiesce_kicks_are_handled_after_the_gate_opens)
{
	struct fake f;
	fake_init(&f);
	with_pause_hooks(&f);
	bring_up(&f, ALL_FEATURES);
	f.unquiesce_kick = 0;
	virtio_dev_pause(&f.dev);
	notify_locked(&f, 0); /* the guest's kick and the device's: one look */
	virtio_dev_resume(&f.dev);
	CHECK_EQ(f.notify_calls, 1);
	CHECK_EQ(f.notify_while_paused, 0);
	fake_fini(&f);
}

static uint64_t complete_chain(void *ctx, const struct virtq_chain *c, uint32_t *ret_head,
			       uint32_t *ret_len)
{
	(*(int *)ctx)++;
	*ret_len = 0;
	return 0;
}

/* Make one single-descriptor chain available on queue 0 (not popped). */
static void offer_one(struct fake *f, uint16_t head)
{
	struct virtq *q = &f->dev.vqs[0];
	uint8_t desc[16] = {0};
	uint64_t addr = 0x80000;
	uint32_t len = 16;
	memcpy(desc, &addr, 8);
	memcpy(desc + 8, &len, 4);
	if (guest_write(&f->mem, q->desc_gpa + 16ull * head, desc, 16))
		abort();
	uint16_t idx;
	if (guest_read(&f->mem, q->avail_gpa + 2, &idx, 2) ||
	    guest_write(&f->mem, q->avail_gpa + 4 + 2ull * (idx % q->size), &head, 2))
		abort();
	idx++;
	if (guest_write(&f->mem, q->avail_gpa + 2, &idx, 2))
		abort();
}

static uint16_t used_idx(struct fake *f)
{
	uint16_t idx;
	if (guest_read(&f->mem, f->dev.vqs[0].used_gpa + 2, &idx, 2))
		abort();
	return idx;
}

TEST(pause_gates_deferred_work_and_drain)
{
	struct loop l;
	CHECK_EQ(loop_init(&l), 0);
	struct fake f;
	fake_init_loop(&f, &l);
	with_pause_hooks(&f);
	struct virtio_deferred df;
	CHECK_EQ(virtio_deferred_init(&df, &f.dev), 0);
	struct loop_handler *h = handler_of(&l, df.fd);
	if (!h)
		abort();
	bring_up(&f, F_VERSION_1);
	virtio_dev_pause(&f.dev);
	/* a pass the budget cut short: its continuation waits for resume */
	pthread_mutex_lock(&f.dev.lock);
	virtio_deferred_kick(&df, 0);
	pthread_mutex_unlock(&f.dev.lock);
	h->cb(&l, df.fd, EPOLLIN, h->ctx);
	CHECK(!readable(df.fd));
	CHECK_EQ(df.pending, 0);
	CHECK_EQ(f.notify_calls, 0);
	CHECK_EQ(f.dev.paused_pending, 1);
	/* a device that drains directly touches nothing either */
	offer_one(&f, 3);
	int calls = 0;
	struct virtq_chain chain;
	pthread_mutex_lock(&f.dev.lock);
	virtio_dev_drain(&f.dev, 0, &chain, complete_chain, &calls, &df, 100);
	pthread_mutex_unlock(&f.dev.lock);
	CHECK_EQ(calls, 0);
	CHECK_EQ(used_idx(&f), 0);
	CHECK_EQ(f.signal_queue_calls, 0);
	virtio_dev_resume(&f.dev);
	CHECK_EQ(f.notify_calls, 1);
	CHECK_EQ(f.notify_while_paused, 0);
	/* and now the same drain works */
	pthread_mutex_lock(&f.dev.lock);
	virtio_dev_drain(&f.dev, 0, &chain, complete_chain, &calls, &df, 100);
	pthread_mutex_unlock(&f.dev.lock);
	CHECK_EQ(calls, 1);
	CHECK_EQ(used_idx(&f), 1);
	CHECK_EQ(f.signal_queue_calls, 1);
	virtio_deferred_fini(&df);
	fake_fini(&f);
	loop_destroy(&l);
}

TEST(status_writes_while_paused_are_safe)
{
	struct fake f;
	fake_init(&f);
	with_pause_hooks(&f);
	bring_up(&f, ALL_FEATURES);
	virtio_dev_pause(&f.dev);
	notify_locked(&f, 0);
	/* a reset while paused: the device resets, the pending look is
	 * forgotten, the VM stays paused */
	virtio_dev_set_status(&f.dev, 0);
	CHECK_EQ(f.reset_calls, 1);
	CHECK_EQ(virtio_dev_get_status(&f.dev), 0);
	CHECK(f.dev.paused);
	CHECK_EQ(f.dev.paused_pending, 0);
	/* DRIVER_OK while paused: activated, no replay through the transport;
	 * the queues are looked at on resume instead */
	f.replay_calls = 0;
	CHECK_EQ(vf_negotiate(&f.dev, ALL_FEATURES), ACK | DRV | FOK);
	setup_queue(&f, 0);
	setup_queue(&f, 1);
	virtio_dev_set_status(&f.dev, ACK | DRV | FOK | DOK);
	CHECK_EQ(f.activate_calls, 2);
	CHECK_EQ(f.replay_calls, 0);
	CHECK_EQ(f.dev.paused_pending, 3);
	CHECK_EQ(f.notify_calls, 0);
	virtio_dev_resume(&f.dev);
	CHECK_EQ(f.notify_calls, 2);
	CHECK_EQ(f.notify_while_paused, 0);
	/* a reset pending over a pause: nothing handled at resume */
	f.reset_ret = -EINPROGRESS;
	virtio_dev_pause(&f.dev);
	notify_locked(&f, 0);
	virtio_dev_set_status(&f.dev, 0);
	CHECK(f.dev.reset_pending);
	virtio_dev_resume(&f.dev);
	CHECK_EQ(f.notify_calls, 2);
	virtio_dev_reset_done(&f.dev);
	CHECK_EQ(virtio_dev_get_status(&f.dev), 0);
	fake_fini(&f);
}

struct race {
	struct fake *f;
	bool stop; /* atomic */
	int kicks;
};

static void *kicker(void *arg)
{
	struct race *r = arg;
	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		notify_locked(r->f, 0);
		r->kicks++;
	}
	return NULL;
}

static void pause_cb(struct loop *l, int fd, uint32_t events, void *ctx)
{
	uint64_t v;
	(void)!read(fd, &v, sizeof(v));
	struct fake *f = ctx;
	if (v & 1)
		virtio_dev_pause(&f->dev);
	else
		virtio_dev_resume(&f->dev);
}

TEST(pause_and_resume_on_the_loop_while_the_guest_kicks)
{
	struct loop l;
	CHECK_EQ(loop_init(&l), 0);
	struct fake f;
	fake_init_loop(&f, &l);
	with_pause_hooks(&f);
	bring_up(&f, ALL_FEATURES);
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(efd >= 0);
	CHECK_EQ(loop_add(&l, efd, EPOLLIN, pause_cb, &f), 0);
	struct loop_runner lr;
	CHECK_EQ(loop_runner_start(&lr, &l), 0);
	struct race r = {.f = &f};
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, kicker, &r), 0);
	for (int i = 0; i < 200; i++) {
		uint64_t v = (i & 1) ? 2 : 1; /* pause, resume, pause, ... */
		CHECK_EQ(write(efd, &v, sizeof(v)), sizeof(v));
		for (int k = 0; k < 1000; k++) {
			pthread_mutex_lock(&f.dev.lock);
			bool done = f.dev.paused == !(i & 1);
			pthread_mutex_unlock(&f.dev.lock);
			if (done)
				break;
			usleep(100);
		}
	}
	__atomic_store_n(&r.stop, true, __ATOMIC_RELAXED);
	CHECK_EQ(pthread_join(th, NULL), 0);
	CHECK_EQ(loop_runner_stop(&lr), 0);
	CHECK(!f.dev.paused);
	CHECK_EQ(f.quiesce_calls, 100);
	CHECK_EQ(f.unquiesce_calls, 100);
	CHECK_EQ(f.notify_while_paused, 0);
	CHECK(r.kicks > 0);
	loop_del(&l, efd);
	close(efd);
	fake_fini(&f);
	loop_destroy(&l);
}

/* ---- configuration changes ---- */

TEST(config_changed_bumps_the_generation_and_interrupts_a_live_driver)
{
	struct fake f;
	fake_init(&f);
	/* before DRIVER_OK: a new generation, no interrupt */
	uint32_t gen = f.dev.config_generation;
	virtio_dev_config_changed(&f.dev);
	CHECK_EQ(f.dev.config_generation, gen + 1);
	CHECK_EQ(f.signal_config_calls, 0);
	bring_up(&f, ALL_FEATURES);
	virtio_dev_config_changed(&f.dev);
	CHECK_EQ(f.dev.config_generation, gen + 2);
	CHECK_EQ(f.signal_config_calls, 1);
	/* a broken device still tells its driver (it may be resetting it) */
	virtio_dev_mark_broken(&f.dev, "test");
	CHECK_EQ(f.signal_config_calls, 2);
	virtio_dev_config_changed(&f.dev);
	CHECK_EQ(f.signal_config_calls, 3);
	/* during a pending reset, or without a transport: only the
	 * generation */
	f.reset_ret = -EINPROGRESS;
	virtio_dev_set_status(&f.dev, 0);
	gen = f.dev.config_generation;
	virtio_dev_config_changed(&f.dev);
	CHECK_EQ(f.dev.config_generation, gen + 1);
	CHECK_EQ(f.signal_config_calls, 3);
	virtio_dev_reset_done(&f.dev);
	f.reset_ret = 0;
	bring_up(&f, ALL_FEATURES);
	f.dev.tops = NULL;
	virtio_dev_config_changed(&f.dev);
	CHECK_EQ(f.dev.config_generation, gen + 2);
	CHECK_EQ(f.signal_config_calls, 3);
	/* the generation wraps */
	f.dev.tops = &fake_tops;
	f.dev.config_generation = UINT32_MAX;
	virtio_dev_config_changed(&f.dev);
	CHECK_EQ(f.dev.config_generation, 0);
	CHECK_EQ(f.signal_config_calls, 4);
	fake_fini(&f);
}

TEST_MAIN()
