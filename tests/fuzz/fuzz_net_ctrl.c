/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: virtio-net's control queue (virtio 1.2 §5.1.6.5), the
 * parser of the commands a guest driver sends, against an arbitrary guest.
 * The input is the image of a 64 KiB guest RAM holding the control queue
 * at fixed addresses (the layout of fuzz_virtq):
 *
 *   byte 0          queue size = 1 << (byte % 9)   (1..256)
 *   byte 1          bit 0: GUEST_ANNOUNCE accepted, bit 1: INDIRECT_DESC,
 *                   bit 2: EVENT_IDX, bit 3: an announce before the
 *                   commands (ANNOUNCE set when the driver can ack it)
 *   0x0040          descriptor table
 *   0x1040          available ring
 *   0x1280          used ring
 *   the rest        whatever the descriptors point at
 *
 * The device (CTRL_VQ accepted, only the control queue set up, on an
 * in-memory back end, no event loop: no budget) handles two notifications
 * of the queue.  Beside it, a reference model runs on a copy of the same
 * RAM: its own virtqueue over the copy pops each chain, writes the ack the
 * specification asks for (VIRTIO_NET_OK for ANNOUNCE_ACK without data when
 * GUEST_ANNOUNCE was accepted, VIRTIO_NET_ERR for anything else, into the
 * first device-writable byte; nothing without one) and returns it with
 * used length 1 (0 without a writable byte), as many chains as the device
 * handles, in the same order.  Whatever the guest aliased (acks written
 * over descriptors, headers, rings), both memories must end byte for byte
 * equal, the device must be broken exactly when the model's queue found a
 * violation, hold no chain, have counted each answer, and have cleared
 * ANNOUNCE exactly when an ack was answered OK.  Any crash, sanitizer
 * report or difference (__builtin_trap) is a bug.
 * Seeds: tests/fuzz/corpus-net_ctrl.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/backends/net.h"
#include "../../src/devices/virtio/virtio_net.h"
#include "../../src/util/log.h"
#include "../unit/virtio_fake.h"

#define MEM_SIZE 0x10000u
#define DESC_GPA 0x0040u
#define AVAIL_GPA 0x1040u
#define USED_GPA 0x1280u
#define F(bit) (1ull << (bit))

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct guest_mem mem, model_mem;
static struct net_mem nm;
static struct virtio_net net;
static struct virtq model;
static struct virtq_chain chain;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	static const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
	char e[160];
	if (guest_mem_init(&mem, MEM_SIZE, MEM_SIZE, MEM_SIZE) ||
	    guest_mem_init(&model_mem, MEM_SIZE, MEM_SIZE, MEM_SIZE) ||
	    net_mem_init(&nm, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL) ||
	    virtio_net_init(&net, &nm.be, false, mac, &mem, NULL, e, sizeof(e)))
		abort();
	net.vdev.tops = &vf_tops;
	return 0;
}

/* What the specification asks of the device for chain @c (the model):
 * returns the used length and writes the ack into the model's RAM. */
static uint32_t model_answer(const struct virtq_chain *c, bool announce_ok, unsigned *ok,
			     unsigned *err)
{
	if (!c->write_len)
		return 0;
	uint8_t hdr[2] = {0xff, 0xff};
	uint8_t ack = VIRTIO_NET_ERR;
	if (c->read_len == 2 && virtq_chain_read(c, 0, hdr, 2) == 2 &&
	    hdr[0] == VIRTIO_NET_CTRL_ANNOUNCE && hdr[1] == VIRTIO_NET_CTRL_ANNOUNCE_ACK &&
	    announce_ok)
		ack = VIRTIO_NET_OK;
	if (ack == VIRTIO_NET_OK)
		(*ok)++;
	else
		(*err)++;
	if (virtq_chain_write(c, 0, &ack, 1) != 1)
		__builtin_trap();
	return 1;
}

/* One pass of the model over its queue, as a device pass goes: pop until
 * empty, re-enable notifications and look again.  false on a violation. */
static bool model_pass(bool announce_ok, unsigned *ok, unsigned *err)
{
	for (;;) {
		int r;
		while ((r = virtq_pop(&model, &chain)) == 1) {
			uint32_t len = model_answer(&chain, announce_ok, ok, err);
			if (virtq_push(&model, chain.head, len))
				__builtin_trap();
		}
		if (r < 0)
			return false;
		if (!virtq_enable_notify(&model))
			return true;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct virtio_dev *d = &net.vdev;
	memset(mem.base, 0, MEM_SIZE);
	memcpy(mem.base, data, size < MEM_SIZE ? size : MEM_SIZE);
	uint16_t qsize = (uint16_t)(1u << (data[0] % 9));
	bool announce_ok = data[1] & 1;
	uint64_t features = F(VIRTIO_F_VERSION_1) | F(VIRTIO_NET_F_CTRL_VQ);
	if (announce_ok)
		features |= F(VIRTIO_NET_F_GUEST_ANNOUNCE);
	if (data[1] & 2)
		features |= F(VIRTIO_F_INDIRECT_DESC);
	if (data[1] & 4)
		features |= F(VIRTIO_F_EVENT_IDX);

	/* the driver: reset, negotiate, the control queue only, DRIVER_OK */
	pthread_mutex_lock(&d->lock);
	virtio_dev_set_status(d, 0);
	if (vf_negotiate(d, features) & VIRTIO_STATUS_FEATURES_OK) {
		struct virtq *q = &d->vqs[VIRTIO_NET_CTRLQ];
		q->size = qsize;
		q->desc_gpa = DESC_GPA;
		q->avail_gpa = AVAIL_GPA;
		q->used_gpa = USED_GPA;
		q->ready = true;
		virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
						 VIRTIO_STATUS_FEATURES_OK |
						 VIRTIO_STATUS_DRIVER_OK);
	}
	bool up = virtio_dev_is_live(d) && d->vqs[VIRTIO_NET_CTRLQ].active;
	pthread_mutex_unlock(&d->lock);
	if (!up)
		__builtin_trap(); /* the fixed geometry is always valid */
	vf_replay_pending = 0;
	if (data[1] & 8) {
		virtio_net_announce(&net);
		uint8_t frame[128];
		while (net_mem_take_sent(&nm, frame, sizeof(frame)) >= 0)
			;
	}
	bool announcing = net.announce_pending;
	if (announcing != ((data[1] & 8) && announce_ok))
		__builtin_trap();

	/* the model, on a copy of the RAM as the device finds it */
	memcpy(model_mem.base, mem.base, MEM_SIZE);
	memset(&model, 0, sizeof(model));
	model.size = qsize;
	model.ready = true;
	model.desc_gpa = DESC_GPA;
	model.avail_gpa = AVAIL_GPA;
	model.used_gpa = USED_GPA;
	if (virtq_activate(&model, &model_mem, features))
		__builtin_trap();

	struct virtio_net_metrics m0 = net.metrics;
	unsigned ok = 0, err = 0;
	bool model_ok = true;
	for (int round = 0; round < 2; round++) {
		pthread_mutex_lock(&d->lock);
		virtio_dev_queue_notify(d, VIRTIO_NET_CTRLQ);
		pthread_mutex_unlock(&d->lock);
		if (model_ok)
			model_ok = model_pass(announce_ok, &ok, &err);
	}
	if (memcmp(mem.base, model_mem.base, MEM_SIZE))
		__builtin_trap(); /* another answer, length, order or a stray write */
	if (d->broken != !model_ok || d->vqs[VIRTIO_NET_CTRLQ].inflight)
		__builtin_trap();
	if (net.metrics.ctrl_cmds - m0.ctrl_cmds != ok ||
	    net.metrics.ctrl_fails - m0.ctrl_fails != err)
		__builtin_trap();
	if (net.announce_pending != (announcing && !ok))
		__builtin_trap();
	uint8_t st[2];
	pthread_mutex_lock(&d->lock);
	d->ops->config_read(d, VIRTIO_NET_CFG_STATUS, st, 2);
	pthread_mutex_unlock(&d->lock);
	if (st[0] != (VIRTIO_NET_S_LINK_UP | (net.announce_pending ? VIRTIO_NET_S_ANNOUNCE : 0)) ||
	    st[1])
		__builtin_trap();
	virtq_reset(&model);
	return 0;
}
