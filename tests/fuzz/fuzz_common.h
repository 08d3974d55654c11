/* SPDX-License-Identifier: MIT */
/*
 * fuzz_common.h - what the transport harnesses (fuzz_pci, fuzz_virtio_pci,
 * fuzz_virtio_mmio) share beyond fuzz_input.h:
 *   fz_process_init  once per process: quiet logs, guest RAM, a loop
 *   fz_widths        the access widths an opcode's selector picks from
 *   fz_ram_load      guest RAM from the input's prefix, the rest zero
 *   fz_guest_write   the guest writes its RAM (an operation's arguments)
 *   fz_config_changed  the device raises a configuration change
 *   fz_read_checked  a bus read that must fill exactly its width
 *   fz_loop_one      one ready event of an event loop
 *   fz_loop_drain    forget the loop's ready events (after a teardown)
 *   fz_loop_notify   events of the loop, a notification reaching the fake
 *                    device only for a queue that could take it
 *   fz_snap_*        a snapshot round trip through one section, as the
 *                    machine writes and reads them
 *   fz_check_status  the order of the virtio status bits and the features
 *                    FEATURES_OK accepts
 *   fz_check_geometry  once DRIVER_OK is set, no register changes a
 *                    queue's geometry
 */
#ifndef VISOR_TESTS_FUZZ_COMMON_H
#define VISOR_TESTS_FUZZ_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "../../src/devices/bus.h"
#include "../../src/devices/virtio/virtio.h"
#include "../../src/event/loop.h"
#include "../../src/mem/guest_mem.h"
#include "../../src/snapshot/format.h"
#include "../../src/util/log.h"
#include "../unit/virtio_fake.h"
#include "fuzz_input.h"

static const uint32_t fz_widths[4] = {1, 2, 4, 8};

/* Once per process: errors only in the log, @size bytes of guest RAM in
 * @m, the event loop @lp. */
static inline void fz_process_init(struct guest_mem *m, size_t size, struct loop *lp)
{
	log_set_level(LOG_ERROR);
	if (guest_mem_init(m, size, size, size) || loop_init(lp))
		abort();
}

/* Guest RAM of @size bytes at @base: the bytes of @ram, the rest 0. */
static inline void fz_ram_load(uint8_t *base, size_t size, const uint8_t *ram, size_t n)
{
	memset(base, 0, size);
	if (n)
		memcpy(base, ram, n < size ? n : size);
}

/* The guest writes its RAM (@size bytes at @base): offset u16, count u8
 * (1 to 64), the bytes; nothing if it would not fit. */
static inline void fz_guest_write(struct fz *in, uint8_t *base, size_t size)
{
	uint16_t off = fz_u16(in);
	uint8_t b[64];
	size_t n = fz_bytes(in, b, 1 + fz_u8(in) % sizeof(b));
	if (off + n <= size)
		memcpy(base + off, b, n);
}

/* The device raises a configuration change (as its own code does: under
 * its lock). */
static inline void fz_config_changed(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	virtio_dev_config_changed(d);
	pthread_mutex_unlock(&d->lock);
}

/* A read of @len bytes at @addr on @b fills exactly @len bytes (twice,
 * from two different fillers); returns what it read. */
static inline uint64_t fz_read_checked(struct bus *b, uint64_t addr, uint32_t len)
{
	uint8_t x[8], y[8];
	memset(x, 0xa5, 8);
	memset(y, 0x5a, 8);
	bus_access(b, addr, x, len, false);
	bus_access(b, addr, y, len, false);
	for (uint32_t i = len; i < 8; i++)
		FZ_CHECK(x[i] == 0xa5 && y[i] == 0x5a);
	uint64_t v = 0;
	memcpy(&v, x, len);
	return v;
}

/* One ready event of @lp, run on this thread; false if none. */
static inline bool fz_loop_one(struct loop *lp)
{
	struct epoll_event ev;
	if (epoll_wait(lp->epfd, &ev, 1, 0) != 1)
		return false;
	struct loop_handler *h = ev.data.ptr;
	if (h->fd >= 0)
		h->cb(lp, h->fd, ev.events, h->ctx);
	return true;
}

/* Drain the events of closed fds (epoll forgets them with the close). */
static inline void fz_loop_drain(struct loop *lp)
{
	struct epoll_event ev[16];
	while (epoll_wait(lp->epfd, ev, 16, 0) > 0)
		;
}

/* Up to @n events of @lp, one at a time; after each, the fake device @f
 * was notified of a queue only if the queue was active on a live,
 * running device before the event, and @check(@ctx) holds.  Stops early
 * when no event is ready (after checking). */
static inline void fz_loop_notify(struct loop *lp, struct vf_dev *f, unsigned n,
				  void (*check)(void *), void *ctx)
{
	for (unsigned i = 0; i < n; i++) {
		struct virtio_dev *d = &f->vd;
		int calls[2] = {f->notify_calls[0], f->notify_calls[1]};
		bool ok[2];
		for (int q = 0; q < 2; q++)
			ok[q] = virtio_dev_is_live(d) && d->vqs[q].active && !d->paused;
		bool any = fz_loop_one(lp);
		for (int q = 0; q < 2; q++)
			FZ_CHECK(f->notify_calls[q] == calls[q] || ok[q]);
		check(ctx);
		if (!any)
			break;
	}
}

/*
 * A snapshot round trip through one section:
 *   struct fz_snap s;
 *   fz_snap_begin(&s, "fuzz.x");      then encode into s.w
 *                                     (fz_snap_abandon(&s) to give up)
 *   fz_snap_reopen(&s);               then decode from s.c, errors in s.err
 *   fz_snap_end(&s, r, "X");          r: the decoders' result, which must
 *                                     be 0 (a state the guest reached is
 *                                     accepted), as must the section's end
 *   ... put back ...
 *   fz_snap_free(&s);
 */
struct fz_snap {
	const char *id;
	struct snap_writer w;
	uint8_t *img;
	size_t len;
	struct snap_cursor c;
	char err[256];
};

static inline void fz_snap_begin(struct fz_snap *s, const char *id)
{
	s->id = id;
	s->img = NULL;
	s->len = 0;
	s->err[0] = 0;
	snap_writer_init(&s->w);
	snap_writer_section_begin(&s->w, id, 1);
}

static inline void fz_snap_abandon(struct fz_snap *s)
{
	snap_writer_free(&s->w);
}

static inline void fz_snap_reopen(struct fz_snap *s)
{
	snap_writer_section_end(&s->w);
	FZ_CHECK(snap_writer_finish(&s->w, &s->img, &s->len) == 0);
	struct snap_reader rd;
	const uint8_t *p;
	size_t plen;
	FZ_CHECK(snap_reader_open(s->img, s->len, &rd, s->err, sizeof(s->err)) == 0);
	FZ_CHECK(snap_reader_find(&rd, s->id, NULL, &p, &plen) == 0);
	snap_cursor_init(&s->c, p, plen);
}

static inline void fz_snap_end(struct fz_snap *s, int r, const char *what)
{
	if (!r)
		r = snap_cursor_done(&s->c, s->id, s->err, sizeof(s->err));
	if (r)
		fprintf(stderr, "fuzz: a %s state the guest reached is refused: %s\n", what, s->err);
	FZ_CHECK(r == 0);
}

static inline void fz_snap_free(struct fz_snap *s)
{
	free(s->img);
	s->img = NULL;
}

/* The status is one the order allows (DRIVER_OK needs FEATURES_OK needs
 * DRIVER needs ACKNOWLEDGE); FEATURES_OK only with accepted features that
 * were offered, VERSION_1 among them. */
FZ_QUIET static inline void fz_check_status(const struct virtio_dev *d)
{
	uint8_t s = d->status;
	FZ_CHECK(!(s & VIRTIO_STATUS_DRIVER) || (s & VIRTIO_STATUS_ACKNOWLEDGE));
	FZ_CHECK(!(s & VIRTIO_STATUS_FEATURES_OK) || (s & VIRTIO_STATUS_DRIVER));
	FZ_CHECK(!(s & VIRTIO_STATUS_DRIVER_OK) || (s & VIRTIO_STATUS_FEATURES_OK));
	if (s & VIRTIO_STATUS_FEATURES_OK)
		FZ_CHECK(!(d->driver_features & ~d->device_features) &&
			 (d->driver_features & (1ull << VIRTIO_F_VERSION_1)));
}

/* Once DRIVER_OK is set no register changes a queue's geometry: @geom is
 * the queues as they were when DRIVER_OK was first seen set (*@frozen),
 * forgotten when it is clear. */
FZ_QUIET static inline void fz_check_geometry(const struct virtio_dev *d,
					      struct virtq geom[VIRTIO_MAX_QUEUES], bool *frozen)
{
	if (!(d->status & VIRTIO_STATUS_DRIVER_OK)) {
		*frozen = false;
		return;
	}
	if (!*frozen) {
		memcpy(geom, d->vqs, sizeof(struct virtq) * VIRTIO_MAX_QUEUES);
		*frozen = true;
		return;
	}
	for (uint16_t q = 0; q < d->num_queues; q++) {
		const struct virtq *vq = &d->vqs[q];
		FZ_CHECK(vq->size == geom[q].size && vq->ready == geom[q].ready &&
			 vq->desc_gpa == geom[q].desc_gpa && vq->avail_gpa == geom[q].avail_gpa &&
			 vq->used_gpa == geom[q].used_gpa);
	}
}

#endif
