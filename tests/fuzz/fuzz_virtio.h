/* SPDX-License-Identifier: MIT */
/*
 * fuzz_virtio.h - the harness the virtio device targets share
 * (fuzz_virtio_blk, _net, _vsock, _balloon, _rng): a fake guest RAM, a
 * driver that builds descriptor chains from the input, a fake transport,
 * a real event loop driven one event at a time, and the invariants every
 * device must keep whatever the guest does.
 *
 * Guest RAM: 64 KiB in two regions, gpa [0, 0xc000) and [0x100000,
 * 0x104000) (a hole in between, so buffers can straddle it).  Queue q
 * (< FZ_NQ) has its rings at 0x1000 * q: descriptors +0, available ring
 * +0x800, used ring +0xa00 (sizes up to FZ_QMAX = 128).  Buffers are
 * bump-allocated in [0x5000, 0xc000) and [0x100000, 0x104000), or placed
 * at an address the input gives (hostile: out of RAM, in the hole, over
 * the rings).
 *
 * Input: a byte stream read by a cursor (reads past the end give 0):
 *   setup    (see fz_setup) queue-size exponent, ready-queue mask, flags,
 *            32 bits of device features (ANDed with the offer)
 *   then operations until the input ends, each an opcode byte (its value
 *   modulo 16 picks one of these, in this order; DEV has the last two):
 *     CHAIN q shape segs...   make a chain available (see fz_op_chain)
 *     KICK q                  notify queue q (as the transport would)
 *     CHAIN_KICK              both
 *     LOOP n                  dispatch up to n ready events of the loop,
 *                             one at a time (deferred work, back ends,
 *                             timers, the replays the core asked for)
 *     POKE off n bytes        the guest rewrites bytes of its buffers
 *     RAW_POKE gpa n bytes    ... anywhere (rings included: the ring
 *                             checks are off for the rest of the input)
 *     CFG_READ/CFG_WRITE      device configuration space, any offset/width
 *     RESET flags [setup]     status 0, optionally a new driver set-up
 *     STATUS v                any status byte (FAILED, out of order...)
 *     PAUSE / RESUME          the VM lifecycle gate
 *     SNAPSHOT flags          pause, save core + device state, decode and
 *                             check it against the device, optionally
 *                             restore it onto the device, resume
 *     AVAIL_FLAGS q v         avail->flags and used_event
 *     DEV ...                 the target's own operation (back-end events)
 *
 * Invariants (each a __builtin_trap):
 *   - used ring: entries appear only for heads that were made available
 *     and not yet used, at most as many as are outstanding, with a length
 *     no larger than the chain's writable bytes; the device's in-flight
 *     count never exceeds what the driver has outstanding;
 *   - guest RAM: between two operations the device writes only into the
 *     used rings and the writable buffers of outstanding chains (and of
 *     chains a reset left with an asynchronous back end, until it is
 *     idle, unless the rings were scribbled over: then anywhere until it
 *     is idle), plus what the target allows (balloon discards); nothing
 *     at all while the device is paused;
 *   - budgets: one pass (a kick, one loop event) takes at most the
 *     device's budget of chains from a queue;
 *   - a snapshot taken of any state the device reaches decodes and passes
 *     the restore checks of the same device;
 *   - no ERROR-level log line (those are internal errors, never the
 *     guest's doing);
 *   - the target's own checks after every operation.
 * FZ_TRACE=1 in the environment prints one line per operation.  Seeds:
 * tests/fuzz/mkseeds writes the targets' corpora from readable recipes.
 */
#ifndef VISOR_TESTS_FUZZ_VIRTIO_H
#define VISOR_TESTS_FUZZ_VIRTIO_H

#include <errno.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "../../src/devices/virtio/virtio.h"
#include "../../src/event/loop.h"
#include "../../src/snapshot/format.h"
#include "../../src/util/log.h"
#include "fuzz_input.h"

/* ---- guest memory layout ---------------------------------------------------- */

#define FZ_MEM_SIZE 0x10000u
#define FZ_LOW_END 0xc000u
#define FZ_HIGH_BASE 0x100000u
#define FZ_HIGH_END (FZ_HIGH_BASE + FZ_MEM_SIZE - FZ_LOW_END)
#define FZ_NQ 5
#define FZ_QMAX 128
#define FZ_DESC(q) (0x1000ull * (q))
#define FZ_AVAIL(q) (FZ_DESC(q) + 0x800)
#define FZ_USED(q) (FZ_DESC(q) + 0xa00)
#define FZ_DATA_LO 0x5000u
#define FZ_MAX_SEGS 8
#define FZ_SHORT_MAX 0x4000u /* longest buffer the bump allocator places */

struct fz_seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* A chain the driver made available and the device has not used yet. */
struct fz_chain {
	uint8_t nseg;
	bool indirect;
	uint8_t ndesc;
	uint16_t desc[FZ_MAX_SEGS]; /* ring descriptors it occupies */
	uint64_t rlen, wlen;
	struct fz_seg seg[FZ_MAX_SEGS];
};

struct fz_q {
	bool on;       /* set up by the driver and activated by the device */
	uint16_t size;
	uint16_t avail_idx, used_seen;
	uint16_t nout; /* chains outstanding */
	uint16_t dnext;
	bool out[FZ_QMAX];
	bool dbusy[FZ_QMAX];
	struct fz_chain ch[FZ_QMAX];
	uint16_t last_avail; /* the device's, before the current operation */
};

/* What a target provides (hooks may be NULL). */
struct fz_dev {
	struct virtio_dev *d;
	uint16_t nq;
	/* the target's operation, after the opcode DEV */
	void (*op)(struct fz *in);
	/* invariants after every operation */
	void (*check)(void);
	/* nothing asynchronous is left: chains a reset dropped can no longer
	 * be written (NULL: always) */
	bool (*idle)(void);
	/* start of an input: finish and forget what the last one left
	 * (called with the device reset, not paused) */
	void (*quiet)(void);
	/* snapshot: the device's own part (VM paused): get + encode into @w
	 * (0, or -EBUSY when it cannot be saved now); decode + check against
	 * the live device and @core (0, or -EINVAL with a message); put */
	int (*save)(struct snap_writer *w);
	int (*load)(struct snap_cursor *c, const struct virtio_dev_state *core, char *err,
		    size_t errlen);
	int (*put)(void);
	/* a used element of queue @q for chain @c, @len bytes */
	void (*on_used)(uint16_t q, const struct fz_chain *c, uint32_t len);
	/* most chains one pass may take from queue @q (0: no limit) */
	uint32_t (*budget)(uint16_t q);
	/* the VM pauses / resumes, as the machine does it for this device
	 * (NULL: virtio_dev_pause / virtio_dev_resume) */
	void (*pause)(void);
	void (*resume)(void);
	/* the driver's queues are gone (a reset): forget what the target
	 * tracks of them */
	void (*forget)(void);
};

/* ---- harness state ---------------------------------------------------------- */

/* A byte mask over guest RAM (host offsets) with the ranges set in it, so
 * that clearing it costs what was set rather than 64 KiB. */
#define FZ_MASK_RANGES 1024
struct fz_mask {
	uint8_t m[FZ_MEM_SIZE];
	uint32_t n; /* ranges set; past FZ_MASK_RANGES only counted (clear all) */
	uint32_t off[FZ_MASK_RANGES], len[FZ_MASK_RANGES];
};

struct fz_harness {
	struct guest_mem mem;
	struct loop loop;
	const struct fz_dev *dev;
	struct fz_q q[FZ_NQ];
	uint64_t bump_lo, bump_hi;
	bool rings_dirty; /* the guest scribbled over rings: ring checks off */
	uint64_t pokes;   /* POKE and RAW_POKE operations so far (this input) */
	bool zombie_unknown; /* a reset with I/O in flight and dirty rings: the
			      * device may still write anywhere the guest let it
			      * (RAM checks off until it is idle) */
	bool paused;      /* virtio_dev_pause'd by the harness */
	uint32_t replay;  /* queues the core asked to replay */
	uint64_t config_irqs, queue_irqs;
	/* guest RAM as the last check left it plus the driver's writes since
	 * (fz_wrote), when synced; else stale (fz_sync makes it a copy) */
	uint8_t shadow[FZ_MEM_SIZE] __attribute__((aligned(64)));
	bool synced;
	struct fz_mask allow;  /* built when RAM changed */
	struct fz_mask zombie; /* writable after a reset until idle */
	bool have_zombie;
	struct fz_mask extra;  /* the target's own allowances */
	struct virtio_dev_state st, st2;
	uint64_t clock_ns; /* a fake clock for rate limiters */
};

static struct fz_harness fzh;

/* FZ_TRACE=1 in the environment: one line per operation on stderr (to
 * read a crashing input). */
static bool fz_trace;
#define FZ_TRACE(...)                                                                      \
	do {                                                                               \
		if (fz_trace)                                                              \
			fprintf(stderr, __VA_ARGS__);                                      \
	} while (0)

static inline uint64_t fz_clock(void *ctx)
{
	(void)ctx;
	return fzh.clock_ns;
}

static inline uint8_t *fz_hva(uint64_t gpa, uint64_t len)
{
	return gpa_to_hva(&fzh.mem, gpa, len);
}

static inline uint16_t fz_get16(uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, fz_hva(gpa, 2), 2);
	return v;
}

static inline uint32_t fz_get32(uint64_t gpa)
{
	uint32_t v;
	memcpy(&v, fz_hva(gpa, 4), 4);
	return v;
}

/* Up to @n of the bytes the device wrote into chain @c, from the start,
 * gathered across its device-writable segments (a driver may split a
 * buffer anywhere: one byte, then three) into @out; returns how many. */
static inline uint32_t fz_chain_read(const struct fz_chain *c, uint8_t *out, uint32_t n)
{
	uint32_t got = 0;
	for (unsigned i = 0; i < c->nseg && got < n; i++) {
		if (!c->seg[i].write)
			continue;
		uint32_t k = c->seg[i].len < n - got ? c->seg[i].len : n - got;
		memcpy(out + got, fz_hva(c->seg[i].gpa, k), k);
		got += k;
	}
	return got;
}

static inline void fz_put16(uint64_t gpa, uint16_t v)
{
	memcpy(fz_hva(gpa, 2), &v, 2);
}

/* ---- the fake transport ------------------------------------------------------ */

static inline void fz_signal_queue(struct virtio_dev *d, uint16_t q)
{
	(void)d;
	FZ_CHECK(q < fzh.dev->nq);
	fzh.queue_irqs++;
}

static inline void fz_signal_config(struct virtio_dev *d)
{
	(void)d;
	fzh.config_irqs++;
}

static inline int fz_replay_notify(struct virtio_dev *d, uint16_t q)
{
	(void)d;
	FZ_CHECK(q < fzh.dev->nq);
	fzh.replay |= 1u << q;
	return 0;
}

static const struct virtio_transport_ops fz_tops = {
	.signal_queue = fz_signal_queue,
	.signal_config = fz_signal_config,
	.replay_notify = fz_replay_notify,
};

/* Guest memory and the loop, before the target makes its device(s). */
static inline void fz_global_init(void)
{
	log_set_level(LOG_ERROR);
	fz_trace = getenv("FZ_TRACE") != NULL;
	if (fz_trace)
		log_set_level(LOG_DEBUG);
	if (guest_mem_init(&fzh.mem, FZ_MEM_SIZE, FZ_LOW_END, FZ_HIGH_BASE) ||
	    loop_init(&fzh.loop))
		abort();
	fzh.clock_ns = 1000000000ull;
}

static inline void fz_pause(void)
{
	if (fzh.dev->pause)
		fzh.dev->pause();
	else
		virtio_dev_pause(fzh.dev->d);
	fzh.paused = true;
}

static inline void fz_resume(void)
{
	fzh.paused = false;
	if (fzh.dev->resume)
		fzh.dev->resume();
	else
		virtio_dev_resume(fzh.dev->d);
}

/* ---- RAM change tracking ------------------------------------------------------ *
 *
 * The shadow is kept across operations: fz_check_writes compares all of
 * guest RAM with it (a word-wise scan, 64-byte blocks), checks each byte
 * that changed and copies the changed blocks into it; the driver's own
 * writes go into it as they are made (fz_wrote).  So an operation costs a
 * read of RAM and shadow plus what changed, not a copy, a compare and a
 * 64 KiB mask.  Where the harness lets the device run unchecked (the
 * driver's set-up, the start of an input, the checks off) the shadow is
 * stale until the next checked operation copies it afresh (fz_sync). */

static inline void fz_mask_set(struct fz_mask *k, size_t off, size_t len)
{
	memset(k->m + off, 1, len);
	if (k->n < FZ_MASK_RANGES) {
		k->off[k->n] = (uint32_t)off;
		k->len[k->n] = (uint32_t)len;
	}
	if (k->n <= FZ_MASK_RANGES)
		k->n++;
}

static inline void fz_mask_clear(struct fz_mask *k)
{
	if (k->n > FZ_MASK_RANGES)
		memset(k->m, 0, sizeof(k->m));
	else
		for (uint32_t i = 0; i < k->n; i++)
			memset(k->m + k->off[i], 0, k->len[i]);
	k->n = 0;
}

static inline void fz_allow(uint64_t gpa, uint64_t len, struct fz_mask *mask)
{
	if (!len)
		return;
	uint8_t *p = fz_hva(gpa, len);
	if (!p)
		return;
	fz_mask_set(mask, (size_t)(p - fzh.mem.base), len);
}

/* The target allows a change of host range [p, p+len) (a discard). */
static inline void fz_allow_hva(const uint8_t *p, uint64_t len)
{
	if (p < fzh.mem.base || len > FZ_MEM_SIZE ||
	    (uint64_t)(p - fzh.mem.base) > FZ_MEM_SIZE - len)
		return;
	fz_mask_set(&fzh.extra, (size_t)(p - fzh.mem.base), len);
}

static inline void fz_chain_writable(const struct fz_chain *c, struct fz_mask *mask)
{
	for (unsigned i = 0; i < c->nseg; i++)
		if (c->seg[i].write)
			fz_allow(c->seg[i].gpa, c->seg[i].len, mask);
}

/* The harness (the driver) wrote guest bytes [gpa, gpa+len), between
 * operations or while a device action is being watched (a target's DEV
 * operation that makes chains available): not the device's doing.  Every
 * write of the driver to guest RAM outside fz_setup goes through here
 * (one that did not would be taken for the device's at the next check). */
static inline void fz_wrote(uint64_t gpa, uint64_t len)
{
	uint8_t *p = len ? fz_hva(gpa, len) : NULL;
	if (fzh.synced && p)
		memcpy(fzh.shadow + (p - fzh.mem.base), p, len);
}

/* The shadow becomes a copy of guest RAM. */
static inline void fz_sync(void)
{
	if (!fzh.synced)
		memcpy(fzh.shadow, fzh.mem.base, FZ_MEM_SIZE);
	fzh.synced = true;
}

/* The RAM checks are off for the operation about to run (until a reset). */
static inline bool fz_unchecked(void)
{
	return fzh.rings_dirty || (fzh.zombie_unknown && !fzh.paused);
}

FZ_QUIET static inline void fz_before(void)
{
	if (!fz_unchecked())
		fz_sync(); /* else left stale: nothing compares with it */
	if (fzh.extra.n)
		fz_mask_clear(&fzh.extra);
	for (uint16_t q = 0; q < fzh.dev->nq; q++)
		fzh.q[q].last_avail = fzh.dev->d->vqs[q].last_avail;
}

/* Host offset of the first 64-byte block from @b (a multiple of 64) on
 * where guest RAM and the shadow differ, or FZ_MEM_SIZE: 256 bytes a step
 * while nothing differs, 32 (AVX2) or 16 bytes a load, not instrumented
 * (the harness's own memory, always mapped). */
#define FZ_SCAN_ATTR __attribute__((no_sanitize("address", "undefined"))) FZ_QUIET

__attribute__((target("avx2"))) FZ_SCAN_ATTR static size_t fz_next_change_avx2(size_t b)
{
	const uint8_t *m = fzh.mem.base, *s = fzh.shadow;
#define FZ_X32(o)                                                                          \
	_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(m + (o))),                   \
			 _mm256_loadu_si256((const __m256i *)(s + (o))))
	for (; b < FZ_MEM_SIZE; b += 64) {
		if (b % 256 == 0) {
			__m256i x = _mm256_or_si256(_mm256_or_si256(FZ_X32(b), FZ_X32(b + 32)),
						    _mm256_or_si256(FZ_X32(b + 64), FZ_X32(b + 96)));
			__m256i y =
				_mm256_or_si256(_mm256_or_si256(FZ_X32(b + 128), FZ_X32(b + 160)),
						_mm256_or_si256(FZ_X32(b + 192), FZ_X32(b + 224)));
			x = _mm256_or_si256(x, y);
			if (_mm256_testz_si256(x, x)) {
				b += 192;
				continue;
			}
		}
		__m256i x = _mm256_or_si256(FZ_X32(b), FZ_X32(b + 32));
		if (!_mm256_testz_si256(x, x))
			return b;
	}
#undef FZ_X32
	return FZ_MEM_SIZE;
}

FZ_SCAN_ATTR static size_t fz_next_change_sse2(size_t b)
{
	const uint8_t *m = fzh.mem.base, *s = fzh.shadow;
#define FZ_X16(o)                                                                          \
	_mm_xor_si128(_mm_loadu_si128((const __m128i *)(m + (o))),                         \
		      _mm_loadu_si128((const __m128i *)(s + (o))))
	for (; b < FZ_MEM_SIZE; b += 64) {
		__m128i x = _mm_or_si128(_mm_or_si128(FZ_X16(b), FZ_X16(b + 16)),
					 _mm_or_si128(FZ_X16(b + 32), FZ_X16(b + 48)));
		if (_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_setzero_si128())) != 0xffff)
			return b;
	}
#undef FZ_X16
	return FZ_MEM_SIZE;
}

static size_t fz_next_change(size_t b)
{
	static int avx2 = -1;
	if (avx2 < 0)
		avx2 = __builtin_cpu_supports("avx2");
	return avx2 ? fz_next_change_avx2(b) : fz_next_change_sse2(b);
}

/* Every byte that changed since the last check (but for the driver's
 * writes) is one the device may write. */
FZ_QUIET static inline void fz_check_writes(void)
{
	if (fz_unchecked()) {
		fzh.synced = false;
		return;
	}
	if (!fzh.synced) {
		/* fz_before saw the checks off and left the shadow stale */
		fprintf(stderr, "fuzz: harness: a checked operation without a shadow\n");
		__builtin_trap();
	}
	size_t b = fz_next_change(0);
	if (b == FZ_MEM_SIZE)
		return;
	fz_mask_clear(&fzh.allow);
	if (!fzh.paused) {
		for (uint16_t q = 0; q < fzh.dev->nq; q++) {
			const struct fz_q *Q = &fzh.q[q];
			if (!Q->on)
				continue;
			fz_allow(FZ_USED(q), 6 + 8ull * Q->size, &fzh.allow);
			for (unsigned h = 0; h < Q->size; h++)
				if (Q->out[h])
					fz_chain_writable(&Q->ch[h], &fzh.allow);
		}
	}
	/* block by block: most of RAM did not change */
	for (; b < FZ_MEM_SIZE; b = fz_next_change(b + 64)) {
		for (size_t i = b; i < b + 64; i++) {
			if (fzh.shadow[i] == fzh.mem.base[i] || fzh.allow.m[i] ||
			    (fzh.extra.n && fzh.extra.m[i]) ||
			    (!fzh.paused && fzh.have_zombie && fzh.zombie.m[i]))
				continue;
			fprintf(stderr, "fuzz: device wrote host offset 0x%zx (paused %d)\n", i,
				fzh.paused);
			__builtin_trap();
		}
		memcpy(fzh.shadow + b, fzh.mem.base + b, 64);
	}
}

/* ---- the driver's side of the queues ------------------------------------------ */

static inline void fz_free_chain(struct fz_q *Q, uint16_t head)
{
	struct fz_chain *c = &Q->ch[head];
	for (unsigned i = 0; i < c->ndesc; i++)
		Q->dbusy[c->desc[i]] = false;
	Q->out[head] = false;
	Q->nout--;
}

static inline bool fz_any_out(void)
{
	for (uint16_t q = 0; q < FZ_NQ; q++)
		if (fzh.q[q].nout)
			return true;
	return fzh.have_zombie;
}

/* Used elements since the last look: each for a chain outstanding, no
 * longer than its writable part. */
FZ_QUIET static inline void fz_scan_used(void)
{
	if (fzh.rings_dirty)
		return;
	const struct fz_dev *D = fzh.dev;
	for (uint16_t q = 0; q < D->nq; q++) {
		struct fz_q *Q = &fzh.q[q];
		if (!Q->on)
			continue;
		uint16_t idx = fz_get16(FZ_USED(q) + 2);
		uint16_t n = (uint16_t)(idx - Q->used_seen);
		if (n)
			FZ_TRACE("  q%u used idx %u -> %u (%u outstanding)\n", q, Q->used_seen, idx,
				 Q->nout);
		FZ_CHECK(n <= Q->nout);
		for (uint16_t i = 0; i < n; i++) {
			uint16_t slot = (uint16_t)((Q->used_seen + i) % Q->size);
			uint32_t id = fz_get32(FZ_USED(q) + 4 + 8ull * slot);
			uint32_t len = fz_get32(FZ_USED(q) + 8 + 8ull * slot);
			FZ_TRACE("  used q%u slot %u: head %u len %u\n", q, slot, id, len);
			FZ_CHECK(id < Q->size && Q->out[id]);
			FZ_CHECK(len <= Q->ch[id].wlen);
			if (D->on_used)
				D->on_used(q, &Q->ch[id], len);
			fz_free_chain(Q, (uint16_t)id);
		}
		Q->used_seen = idx;
		const struct virtq *vq = &D->d->vqs[q];
		if (vq->active)
			FZ_CHECK(vq->inflight <= Q->nout);
	}
}

/* After a device action: RAM, used rings, budgets, the target's checks. */
FZ_QUIET static inline void fz_after(bool one_pass)
{
	const struct fz_dev *D = fzh.dev;
	fz_check_writes();
	fz_scan_used();
	if (one_pass && D->budget)
		for (uint16_t q = 0; q < D->nq; q++) {
			uint32_t b = D->budget(q);
			uint16_t took = (uint16_t)(D->d->vqs[q].last_avail - fzh.q[q].last_avail);
			FZ_CHECK(!b || !D->d->vqs[q].active || took <= b);
		}
	if ((fzh.have_zombie || fzh.zombie_unknown) && (!D->idle || D->idle())) {
		fz_mask_clear(&fzh.zombie);
		fzh.have_zombie = false;
		fzh.zombie_unknown = false;
	}
	if (D->check)
		D->check();
	FZ_CHECK(!log_last_error()[0]);
	if (!fz_any_out())
		fzh.bump_lo = FZ_DATA_LO, fzh.bump_hi = FZ_HIGH_BASE;
}

/* Forget the queues (the driver reset the device): chains a device with
 * asynchronous work may still fill stay writable until it is idle. */
FZ_QUIET static inline void fz_forget_queues(void)
{
	const struct fz_dev *D = fzh.dev;
	bool keep = D->idle && !D->idle();
	if (D->forget)
		D->forget();
	for (uint16_t q = 0; q < FZ_NQ; q++) {
		struct fz_q *Q = &fzh.q[q];
		if (keep && fzh.rings_dirty)
			fzh.zombie_unknown = true;
		if (keep && !fzh.rings_dirty)
			for (unsigned h = 0; h < FZ_QMAX; h++)
				if (Q->out[h]) {
					fz_chain_writable(&Q->ch[h], &fzh.zombie);
					fzh.have_zombie = true;
				}
		if (Q->size || Q->nout || Q->on || Q->dnext)
			memset(Q, 0, sizeof(*Q));
	}
}

/* Place @len bytes in the data area (@high: the upper region). */
static inline uint64_t fz_alloc(uint32_t len, bool high)
{
	uint64_t *b = high ? &fzh.bump_hi : &fzh.bump_lo;
	uint64_t end = high ? FZ_HIGH_END : FZ_LOW_END;
	if (len > end - *b)
		return UINT64_MAX;
	uint64_t g = *b;
	*b += len;
	return g;
}

static inline void fz_desc(uint8_t *table, uint16_t i, uint64_t addr, uint32_t len,
			   uint16_t flags, uint16_t next)
{
	uint8_t *p = table + 16u * i;
	memcpy(p, &addr, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 12, &flags, 2);
	memcpy(p + 14, &next, 2);
}

/* Shape bits of a chain (fz_post): a hostile descriptor layout. */
#define FZ_SHAPE_INDIRECT 8   /* the segments behind an indirect table */
#define FZ_SHAPE_ZERO_LEN 16  /* the last segment has length 0 */
#define FZ_SHAPE_CYCLE 32     /* the last descriptor links back to the first */
#define FZ_SHAPE_IND_NEXT 64  /* the indirect descriptor also has NEXT */

/*
 * Make a chain of @n segments available on queue @q: segment i is
 * segs[i] (placed already: gpa, len, write), readable ones hold data[i]
 * (dlen[i] bytes, the rest of the buffer zero) unless @nofill bit i is
 * set.  @shape: FZ_SHAPE_*.  @dirty: the chain may cover rings (the ring
 * checks go off).  Returns the head, or -1 (queue not set up or full, no
 * free descriptors, no room for the indirect table).
 */
static inline int fz_post(uint16_t q, const struct fz_seg *segs, unsigned n, uint8_t shape,
			  const uint8_t *const *data, const uint32_t *dlen, uint32_t nofill,
			  bool dirty)
{
	struct fz_q *Q = &fzh.q[q];
	if (!n || n > FZ_MAX_SEGS || !Q->on || Q->nout >= Q->size)
		return -1;
	struct fz_chain c = {.nseg = (uint8_t)n, .indirect = shape & FZ_SHAPE_INDIRECT};
	for (unsigned i = 0; i < n; i++) {
		c.seg[i] = segs[i];
		if (segs[i].gpa == UINT64_MAX)
			return -1;
		if (segs[i].write)
			c.wlen += segs[i].len;
		else
			c.rlen += segs[i].len;
	}
	uint64_t table = 0;
	if (c.indirect && (table = fz_alloc(16u * n, false)) == UINT64_MAX)
		return -1;
	c.ndesc = c.indirect ? 1 : (uint8_t)n;
	unsigned got = 0;
	for (unsigned k = 0; k < Q->size && got < c.ndesc; k++) {
		uint16_t i = (uint16_t)((Q->dnext + k) % Q->size);
		if (!Q->dbusy[i])
			c.desc[got++] = i;
	}
	if (got < c.ndesc)
		return -1;
	Q->dnext = (uint16_t)((c.desc[got - 1] + 1) % Q->size);
	for (unsigned i = 0; i < n; i++) {
		const struct fz_seg *sg = &c.seg[i];
		uint8_t *p = sg->len ? fz_hva(sg->gpa, sg->len) : NULL;
		if (p && !sg->write && !(nofill & (1u << i))) {
			memset(p, 0, sg->len);
			if (data && data[i])
				memcpy(p, data[i], dlen[i] < sg->len ? dlen[i] : sg->len);
			fz_wrote(sg->gpa, sg->len);
		}
	}
	uint8_t *ring = fz_hva(FZ_DESC(q), 16u * Q->size);
	uint8_t *t = c.indirect ? fz_hva(table, 16u * n) : ring;
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = c.indirect ? (uint16_t)i : c.desc[i];
		uint16_t fl = (uint16_t)((c.seg[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					 (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		uint16_t next = i + 1 < n ? (c.indirect ? (uint16_t)(i + 1) : c.desc[i + 1]) : 0;
		if ((shape & FZ_SHAPE_CYCLE) && i + 1 == n) {
			fl |= VIRTQ_DESC_F_NEXT;
			next = c.indirect ? 0 : c.desc[0];
		}
		fz_desc(t, idx, c.seg[i].gpa, c.seg[i].len, fl, next);
		fz_wrote((c.indirect ? table : FZ_DESC(q)) + 16u * idx, 16);
	}
	if (c.indirect) {
		fz_desc(ring, c.desc[0], table, 16u * n,
			VIRTQ_DESC_F_INDIRECT | ((shape & FZ_SHAPE_IND_NEXT) ? VIRTQ_DESC_F_NEXT : 0),
			c.desc[0]);
		fz_wrote(FZ_DESC(q) + 16u * c.desc[0], 16);
	}
	for (unsigned i = 0; i < c.ndesc; i++)
		Q->dbusy[c.desc[i]] = true;
	uint16_t head = c.desc[0];
	FZ_TRACE("  chain q%u head %u: %u segs%s, r %llu w %llu%s\n", q, head, c.nseg,
		 c.indirect ? " indirect" : "", (unsigned long long)c.rlen,
		 (unsigned long long)c.wlen, dirty ? " (rings dirty)" : "");
	Q->ch[head] = c;
	Q->out[head] = true;
	Q->nout++;
	fz_put16(FZ_AVAIL(q) + 4 + 2ull * (Q->avail_idx % Q->size), head);
	Q->avail_idx++;
	__atomic_store_n((uint16_t *)fz_hva(FZ_AVAIL(q) + 2, 2), Q->avail_idx, __ATOMIC_RELEASE);
	fz_wrote(FZ_AVAIL(q), 4 + 2ull * Q->size);
	if (dirty)
		fzh.rings_dirty = true;
	return head;
}

/* @n device-writable buffers of @len bytes each on queue @q (receive
 * buffers); how many were made available. */
static inline unsigned fz_post_writable(uint16_t q, unsigned n, uint32_t len)
{
	unsigned k = 0;
	for (; k < n; k++) {
		struct fz_seg s = {fz_alloc(len, k & 1), len, true};
		if (fz_post(q, &s, 1, 0, NULL, NULL, 0, false) < 0)
			break;
	}
	return k;
}

/*
 * CHAIN: q, shape, then per segment: kind, length, [gpa], [fill, bytes].
 *   shape  bits 0-2: segments - 1; bits 3-6: FZ_SHAPE_*
 *   kind   bit 0: device-writable; bits 1-2: where (0 low data area,
 *          1 high data area, 2 the u32 gpa that follows, 3 straddling
 *          the end of the low region); bit 3: u16 length (else u8).
 *          A writable buffer at a gpa of the input turns the ring
 *          checks off (it may cover rings); a readable one is not filled
 *   fill   readable segments: this many input bytes are copied to the
 *          buffer's start (the rest of it is zero)
 * Nothing is made available when the queue is not set up or full, or
 * the descriptors or data area are exhausted (the input is consumed all
 * the same).  Returns the queue, or -1.
 */
static inline int fz_op_chain(struct fz *in)
{
	const struct fz_dev *D = fzh.dev;
	uint16_t q = (uint16_t)(fz_u8(in) % D->nq);
	uint8_t shape = fz_u8(in);
	unsigned n = 1 + (shape & 7);
	struct fz_seg segs[FZ_MAX_SEGS];
	const uint8_t *data[FZ_MAX_SEGS];
	uint32_t dlen[FZ_MAX_SEGS], nofill = 0;
	bool dirty = false;
	for (unsigned i = 0; i < n; i++) {
		struct fz_seg *sg = &segs[i];
		uint8_t kind = fz_u8(in);
		sg->write = kind & 1;
		sg->len = (kind & 8) ? 1u + fz_u16(in) % FZ_SHORT_MAX : 1u + fz_u8(in);
		if ((shape & FZ_SHAPE_ZERO_LEN) && i == n - 1)
			sg->len = 0;
		switch ((kind >> 1) & 3) {
		case 0:
			sg->gpa = fz_alloc(sg->len, false);
			break;
		case 1:
			sg->gpa = fz_alloc(sg->len, true);
			break;
		case 2:
			sg->gpa = fz_u32(in);
			nofill |= 1u << i;
			if (sg->write && sg->gpa < FZ_HIGH_END)
				dirty = true; /* it may land on rings or tables */
			break;
		default:
			sg->gpa = FZ_LOW_END - sg->len / 2;
			break;
		}
		data[i] = NULL;
		dlen[i] = 0;
		if (!sg->write) {
			uint32_t k = fz_u8(in);
			data[i] = in->p;
			dlen[i] = k < in->n ? k : (uint32_t)in->n;
			in->p += dlen[i];
			in->n -= dlen[i];
		}
	}
	return fz_post(q, segs, n, shape & 0x78, data, dlen, nofill, dirty) < 0 ? -1 : q;
}

/* ---- driver set-up, reset ----------------------------------------------------- */

/*
 * Set-up: u8 queue-size exponent (size 1 << (e % 8), at most the device's
 * maximum), u8 mask of the queues made ready, u8 flags (bit 0
 * INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 leave VERSION_1 out, bit 3 stop
 * before DRIVER_OK, bit 4 sizes from the device's maximum instead), u32
 * device features wanted (ANDed with the offer).  Only from status 0.
 */
static inline void fz_setup(struct fz *in)
{
	const struct fz_dev *D = fzh.dev;
	struct virtio_dev *d = D->d;
	uint8_t e = fz_u8(in), ready = fz_u8(in), fl = fz_u8(in);
	uint64_t want = fz_u32(in);
	if (!(fl & 4))
		want |= 1ull << VIRTIO_F_VERSION_1;
	if (fl & 1)
		want |= 1ull << VIRTIO_F_INDIRECT_DESC;
	if (fl & 2)
		want |= 1ull << VIRTIO_F_EVENT_IDX;
	uint16_t size = (uint16_t)(1u << (e % 8));
	pthread_mutex_lock(&d->lock);
	if (d->status || d->reset_pending) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	uint64_t f = d->device_features & want;
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	d->driver_feature_sel = 0;
	virtio_dev_write_driver_features(d, (uint32_t)f);
	d->driver_feature_sel = 1;
	virtio_dev_write_driver_features(d, (uint32_t)(f >> 32));
	virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					 VIRTIO_STATUS_FEATURES_OK);
	for (uint16_t q = 0; q < D->nq; q++) {
		struct virtq *vq = &d->vqs[q];
		struct fz_q *Q = &fzh.q[q];
		if (Q->size || Q->nout || Q->on || Q->dnext)
			memset(Q, 0, sizeof(*Q));
		memset(fz_hva(FZ_DESC(q), 0x1000), 0, 0x1000);
		if (!(ready & (1u << q)))
			continue;
		uint16_t s = (fl & 16) ? d->queue_max : size;
		if (s > d->queue_max)
			s = d->queue_max;
		if (s > FZ_QMAX)
			s = FZ_QMAX;
		d->queue_sel = q;
		if (!virtio_dev_queue_config_writable(d) || virtio_dev_selected_queue(d) != vq)
			continue;
		vq->size = s;
		vq->desc_gpa = FZ_DESC(q);
		vq->avail_gpa = FZ_AVAIL(q);
		vq->used_gpa = FZ_USED(q);
		vq->ready = true;
		Q->size = s;
	}
	FZ_TRACE("  setup: size %u ready %#x flags %#x features %#llx\n", size, ready, fl,
		 (unsigned long long)f);
	if (!(fl & 8))
		virtio_dev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
						 VIRTIO_STATUS_FEATURES_OK |
						 VIRTIO_STATUS_DRIVER_OK);
	for (uint16_t q = 0; q < D->nq; q++)
		fzh.q[q].on = d->vqs[q].active;
	pthread_mutex_unlock(&d->lock);
	fzh.synced = false; /* the rings zeroed, the device unchecked */
}

static inline void fz_reset(void)
{
	struct virtio_dev *d = fzh.dev->d;
	pthread_mutex_lock(&d->lock);
	virtio_dev_set_status(d, 0);
	pthread_mutex_unlock(&d->lock);
	fz_forget_queues();
	fzh.rings_dirty = false;
	fzh.replay = 0;
}

/* ---- the loop, one event at a time ----------------------------------------------- */

/* Dispatch one ready event of the loop (or the replays the core asked
 * for, which a real transport delivers through the loop); false if
 * nothing was ready. */
static inline bool fz_loop_one(void)
{
	struct virtio_dev *d = fzh.dev->d;
	if (fzh.replay) {
		uint16_t q = (uint16_t)__builtin_ctz(fzh.replay);
		fzh.replay &= fzh.replay - 1;
		pthread_mutex_lock(&d->lock);
		virtio_dev_queue_notify(d, q);
		pthread_mutex_unlock(&d->lock);
		return true;
	}
	struct epoll_event ev;
	int n = epoll_wait(fzh.loop.epfd, &ev, 1, 0);
	if (n != 1)
		return false;
	struct loop_handler *h = ev.data.ptr;
	if (h->fd >= 0)
		h->cb(&fzh.loop, h->fd, ev.events, h->ctx);
	return true;
}

/* Run the handler registered for @fd now (a timer the fake clock made
 * due), as the loop would. */
static inline void fz_loop_fd(int fd)
{
	for (int i = 0; i < LOOP_MAX_FDS; i++)
		if (fzh.loop.h[i].fd == fd && fd >= 0) {
			fzh.loop.h[i].cb(&fzh.loop, fd, EPOLLIN, fzh.loop.h[i].ctx);
			return;
		}
}

/* ---- snapshot round trip ----------------------------------------------------------- */

static inline void fz_snapshot(uint8_t flags)
{
	const struct fz_dev *D = fzh.dev;
	struct virtio_dev *d = D->d;
	bool was = fzh.paused;
	if (!was)
		fz_pause();
	int r = virtio_dev_state_get(d, &fzh.st);
	if (r == -EBUSY)
		goto out; /* a reset is in progress */
	FZ_CHECK(r == 0);
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "fuzz.dev", 1);
	virtio_dev_state_encode(&fzh.st, &w);
	r = D->save ? D->save(&w) : 0;
	if (r == -EBUSY) {
		snap_writer_free(&w);
		goto out;
	}
	FZ_CHECK(r == 0);
	snap_writer_section_end(&w);
	uint8_t *buf;
	size_t len;
	FZ_CHECK(snap_writer_finish(&w, &buf, &len) == 0);
	struct snap_reader rd;
	char err[256];
	const uint8_t *p;
	size_t plen;
	FZ_CHECK(snap_reader_open(buf, len, &rd, err, sizeof(err)) == 0);
	FZ_CHECK(snap_reader_find(&rd, "fuzz.dev", NULL, &p, &plen) == 0);
	struct snap_cursor c;
	snap_cursor_init(&c, p, plen);
	err[0] = 0;
	r = virtio_dev_state_decode(&c, d, &fzh.st2, err, sizeof(err));
	if (!r && D->load)
		r = D->load(&c, &fzh.st2, err, sizeof(err));
	if (!r)
		r = snap_cursor_done(&c, "fuzz.dev", err, sizeof(err));
	if (r)
		fprintf(stderr, "fuzz: a state the device reached is refused: %s\n", err);
	FZ_CHECK(r == 0);
	if (flags & 1) {
		/* onto the device itself: what it holds is read back from
		 * guest memory; the driver's view does not change */
		FZ_CHECK(virtio_dev_state_put(d, &fzh.st2) == 0);
		if (D->put)
			FZ_CHECK(D->put() == 0);
		virtio_dev_state_restart(d);
	}
	free(buf);
out:
	if (!was)
		fz_resume();
}

/* ---- the operations ------------------------------------------------------------------- */

enum {
	FZ_OP_CHAIN,
	FZ_OP_KICK,
	FZ_OP_CHAIN_KICK,
	FZ_OP_LOOP,
	FZ_OP_POKE,
	FZ_OP_RAW_POKE,
	FZ_OP_CFG_READ,
	FZ_OP_CFG_WRITE,
	FZ_OP_RESET,
	FZ_OP_STATUS,
	FZ_OP_PAUSE,
	FZ_OP_RESUME,
	FZ_OP_SNAPSHOT,
	FZ_OP_AVAIL_FLAGS,
	FZ_OP_DEV,
	FZ_OP_DEV2, /* the target's operations are the most varied: twice as likely */
	FZ_NOPS
};

static inline void fz_kick(uint16_t q)
{
	struct virtio_dev *d = fzh.dev->d;
	pthread_mutex_lock(&d->lock);
	virtio_dev_queue_notify(d, q);
	pthread_mutex_unlock(&d->lock);
}

static inline void fz_op(struct fz *in)
{
	const struct fz_dev *D = fzh.dev;
	struct virtio_dev *d = D->d;
	uint8_t op = fz_u8(in) % FZ_NOPS;
	static const char *const names[FZ_NOPS] = {
		"CHAIN", "KICK",  "CHAIN_KICK", "LOOP",     "POKE",        "RAW_POKE",
		"CFG_READ", "CFG_WRITE", "RESET", "STATUS", "PAUSE", "RESUME",
		"SNAPSHOT", "AVAIL_FLAGS", "DEV", "DEV"};
	FZ_TRACE("op %s\n", names[op]);
	switch (op) {
	case FZ_OP_CHAIN:
		fz_op_chain(in);
		return;
	case FZ_OP_KICK: {
		uint16_t q = (uint16_t)(fz_u8(in) % (D->nq + 1)); /* one past: ignored */
		fz_before();
		fz_kick(q);
		fz_after(true);
		return;
	}
	case FZ_OP_CHAIN_KICK: {
		int q = fz_op_chain(in);
		if (q < 0)
			return;
		fz_before();
		fz_kick((uint16_t)q);
		fz_after(true);
		return;
	}
	case FZ_OP_LOOP: {
		unsigned n = 1 + fz_u8(in) % 8;
		for (unsigned i = 0; i < n; i++) {
			fz_before();
			bool any = fz_loop_one();
			fz_after(true);
			if (!any)
				break;
		}
		return;
	}
	case FZ_OP_POKE:
	case FZ_OP_RAW_POKE: {
		uint64_t gpa = op == FZ_OP_POKE ? FZ_DATA_LO + fz_u16(in) % (FZ_LOW_END - FZ_DATA_LO)
						: fz_u32(in) % FZ_HIGH_END;
		uint8_t buf[64];
		size_t n = fz_bytes(in, buf, 1 + fz_u8(in) % sizeof(buf));
		uint8_t *p = fz_hva(gpa, n);
		if (!p)
			return;
		memcpy(p, buf, n);
		fz_wrote(gpa, n);
		fzh.pokes++;
		if (gpa < FZ_DATA_LO)
			fzh.rings_dirty = true;
		else
			for (uint16_t q = 0; q < D->nq; q++)
				for (unsigned h = 0; h < FZ_QMAX; h++)
					if (fzh.q[q].out[h] && fzh.q[q].ch[h].indirect)
						fzh.rings_dirty = true; /* perhaps a table */
		return;
	}
	case FZ_OP_CFG_READ:
	case FZ_OP_CFG_WRITE: {
		static const uint32_t widths[4] = {1, 2, 4, 8};
		uint8_t sel = fz_u8(in);
		uint32_t off = sel & 0x80 ? fz_u32(in) : fz_u8(in);
		uint32_t len = widths[sel & 3];
		uint8_t a[8], b[8];
		fz_before();
		pthread_mutex_lock(&d->lock);
		if (op == FZ_OP_CFG_READ) {
			memset(a, 0xa5, 8);
			memset(b, 0x5a, 8);
			d->ops->config_read(d, off, a, len);
			d->ops->config_read(d, off, b, len);
			for (uint32_t i = 0; i < len; i++)
				FZ_CHECK(!(a[i] == 0xa5 && b[i] == 0x5a)); /* every byte read */
			for (uint32_t i = len; i < 8; i++)
				FZ_CHECK(a[i] == 0xa5 && b[i] == 0x5a); /* and none past */
		} else {
			uint64_t v = fz_u64(in);
			memcpy(a, &v, 8);
			d->ops->config_write(d, off, a, len);
		}
		pthread_mutex_unlock(&d->lock);
		fz_after(false);
		return;
	}
	case FZ_OP_RESET: {
		uint8_t fl = fz_u8(in);
		fz_sync(); /* the reset may turn the checks back on */
		fz_before();
		fz_reset();
		fz_after(false);
		if (fl & 1)
			fz_setup(in); /* the harness's writes: not checked */
		return;
	}
	case FZ_OP_STATUS: {
		uint8_t v = fz_u8(in);
		fz_before();
		pthread_mutex_lock(&d->lock);
		if (v) /* 0 is RESET's */
			virtio_dev_set_status(d, v);
		/* DRIVER_OK now (the set-up stopped before it) activates the
		 * queues the driver made ready, and only those */
		for (uint16_t q = 0; q < D->nq && !d->reset_pending; q++) {
			FZ_CHECK(!d->vqs[q].active || fzh.q[q].size);
			if (d->vqs[q].active)
				fzh.q[q].on = true;
		}
		pthread_mutex_unlock(&d->lock);
		fz_after(false);
		return;
	}
	case FZ_OP_PAUSE:
		if (fzh.paused)
			return;
		fzh.synced = false; /* what pausing writes is not checked */
		fz_pause();
		fz_before();
		fz_after(false);
		return;
	case FZ_OP_RESUME:
		if (!fzh.paused)
			return;
		fz_before();
		fz_resume();
		fz_after(false);
		return;
	case FZ_OP_SNAPSHOT: {
		uint8_t fl = fz_u8(in);
		fz_before();
		fz_snapshot(fl);
		fz_after(false);
		return;
	}
	case FZ_OP_AVAIL_FLAGS: {
		uint16_t q = (uint16_t)(fz_u8(in) % D->nq);
		uint16_t flags = fz_u16(in), ev = fz_u16(in);
		if (!fzh.q[q].on)
			return;
		fz_put16(FZ_AVAIL(q), flags);
		fz_put16(FZ_AVAIL(q) + 4 + 2ull * fzh.q[q].size, ev);
		fz_wrote(FZ_AVAIL(q), 2);
		fz_wrote(FZ_AVAIL(q) + 4 + 2ull * fzh.q[q].size, 2);
		return;
	}
	default:
		if (D->op) {
			fz_before();
			D->op(in);
			fz_after(false);
		}
		return;
	}
}

/* Leave device @D reset and quiet (a target with several devices switches
 * to another one). */
static inline void fz_park(const struct fz_dev *D)
{
	fzh.dev = D;
	if (fzh.paused)
		fz_resume();
	fz_reset();
	if (D->quiet)
		D->quiet();
	for (int i = 0; i < 256 && fz_loop_one(); i++)
		;
	fz_reset();
}

/* One input: the device reset and quiet, RAM zeroed, the driver set up,
 * then the operations. */
static inline void fz_run(const struct fz_dev *D, const uint8_t *data, size_t size)
{
	struct virtio_dev *d = D->d;
	d->tops = &fz_tops;
	fzh.pokes = 0;
	fz_park(D); /* what the last input left behind */
	fz_mask_clear(&fzh.zombie);
	fzh.have_zombie = false;
	fzh.zombie_unknown = false;
	memset(fzh.mem.base, 0, FZ_MEM_SIZE);
	fzh.synced = false;
	fzh.bump_lo = FZ_DATA_LO;
	fzh.bump_hi = FZ_HIGH_BASE;
	fzh.config_irqs = fzh.queue_irqs = 0;
	log_clear_last_error();

	struct fz in = {data, size};
	fz_setup(&in);
	while (in.n)
		fz_op(&in);
}

#endif
