/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: virtio-blk's request path (src/devices/virtio/
 * virtio_blk.c) on the in-memory back end, driven by a hostile guest
 * through the harness of fuzz_virtio.h (read its header for the input
 * format and the invariants every device target checks).
 *
 *   byte 0     which disk: 0 read-write, 64 KiB, back end taking up to 256
 *              requests; 1 the same taking 2 (the device runs out of
 *              slots); 2 read-only, 8 KiB + 300 bytes (a partial sector)
 *   the rest   fuzz_virtio.h's set-up and operations; requests are
 *              whatever the chains hold: the 16-byte header (type 0 IN,
 *              1 OUT, 4 FLUSH, 8 GET_ID, 11 DISCARD, 13 WRITE_ZEROES, any
 *              other), sectors in and out of range, data in both
 *              directions, discard/write-zeroes segments
 * DEV operations (byte, then arguments):
 *   0 n     complete up to n back-end operations (the loop's part)
 *   1 m e c fail the next c operations whose op is in mask m with errno
 *           e (0 short transfer, EIO, ENOSPC, EOPNOTSUPP)
 *   2       discards and write-zeroes unsupported by the back end (toggle)
 *   3 cfg   rate limiter (bandwidth size/refill/burst, ops size/refill)
 *   4 t     the fake clock advances t microseconds, the limiter's timer fires
 *   5       swap to the other image of the disk (another size) and back
 *   6       flush (virtio_blk_sync), while paused
 * Checks beyond the harness's: the device's requests in flight are
 * exactly the back end's outstanding operations and never more than its
 * slots; a chain with a writable byte comes back with a status byte of
 * 0, 1 or 2 at its end; a reset still in progress is the device's
 * (resetting) and the core's (reset_pending) alike.
 * Seeds: tests/fuzz/corpus-virtio_blk.
 */
#include <limits.h>

#include "../../src/backends/block.h"
#include "../../src/devices/virtio/virtio_blk.h"
#include "fuzz_virtio.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NDISKS 3

struct disk {
	struct blk_mem m[2]; /* the image, and the one a swap puts in */
	struct virtio_blk b;
};

static struct disk disks[NDISKS];
static struct disk *cur;
static struct virtio_blk_state bst;

static struct blk_mem *mem_of(struct disk *k)
{
	return k->b.be == &k->m[0].be ? &k->m[0] : &k->m[1];
}

static void complete(unsigned n)
{
	blk_mem_complete(mem_of(cur), n);
}

static void blk_op(struct fz *in)
{
	struct virtio_blk *b = &cur->b;
	struct blk_mem *m = mem_of(cur);
	uint8_t sub = fz_u8(in) % 7;
	FZ_TRACE("  blk op %u (inflight %u, backend %u, held %d)\n", sub, b->inflight,
		 m->outstanding, b->held);
	switch (sub) {
	case 0:
		complete(1 + fz_u8(in) % 8);
		break;
	case 1: {
		static const int errs[4] = {0, EIO, ENOSPC, EOPNOTSUPP};
		m->fail_ops = fz_u8(in) & 0x1f;
		m->fail_errno = errs[fz_u8(in) % 4];
		m->fail_count = fz_u8(in) % 4;
		break;
	}
	case 2:
		m->discard_unsupported = !m->discard_unsupported;
		break;
	case 3: {
		struct rate_limiter_config c = {0};
		c.bandwidth.size = fz_u16(in);
		c.bandwidth.refill_time_ms = fz_u8(in);
		c.bandwidth.one_time_burst = fz_u8(in);
		c.ops.size = fz_u8(in) % 8;
		c.ops.refill_time_ms = fz_u8(in);
		(void)virtio_blk_set_rate_limiter(b, &c);
		break;
	}
	case 4:
		fzh.clock_ns += (uint64_t)fz_u32(in) * 1000;
		if (b->limited)
			fz_loop_fd(b->limiter.timer_fd);
		break;
	case 5: {
		char err[160];
		struct blk_mem *other = m == &cur->m[0] ? &cur->m[1] : &cur->m[0];
		(void)virtio_blk_swap_backend(b, &other->be, false, err, sizeof(err));
		break;
	}
	case 6:
		if (fzh.paused)
			(void)virtio_blk_sync(b);
		break;
	}
}

static void blk_check(void)
{
	struct virtio_blk *b = &cur->b;
	FZ_CHECK(b->inflight <= b->max_inflight);
	FZ_CHECK(b->inflight == mem_of(cur)->outstanding);
	FZ_CHECK(!b->resetting || b->vdev.reset_pending);
	FZ_CHECK(b->capacity == b->be->size / VIRTIO_BLK_SECTOR);
}

static bool blk_idle(void)
{
	return cur->b.inflight == 0;
}

static void blk_quiet(void)
{
	struct virtio_blk *b = &cur->b;
	for (int i = 0; i < 64 && mem_of(cur)->outstanding; i++)
		complete(UINT_MAX);
	for (int i = 0; i < 2; i++) {
		cur->m[i].fail_count = 0;
		cur->m[i].discard_unsupported = false;
		/* what the last input wrote: every input starts from a blank disk */
		memset(cur->m[i].data, 0, (size_t)cur->m[i].be.size);
	}
	if (b->limited) {
		struct rate_limiter_config none = {0};
		virtio_blk_set_rate_limiter(b, &none);
	}
	if (b->be != &cur->m[0].be) {
		char err[160];
		if (virtio_blk_swap_backend(b, &cur->m[0].be, false, err, sizeof(err)))
			abort();
	}
	b->flush_failed = false; /* sticky by design: not across inputs */
}

static void blk_used(uint16_t q, const struct fz_chain *c, uint32_t len)
{
	(void)len;
	for (int i = c->nseg - 1; i >= 0; i--) {
		const struct fz_seg *s = &c->seg[i];
		if (!s->write || !s->len)
			continue;
		uint8_t st = *fz_hva(s->gpa + s->len - 1, 1);
		FZ_CHECK(st <= VIRTIO_BLK_S_UNSUPP);
		return;
	}
}

static int blk_save(struct snap_writer *w)
{
	int r = virtio_blk_state_get(&cur->b, &bst);
	if (!r)
		virtio_blk_state_encode(&bst, w);
	return r;
}

static int blk_load(struct snap_cursor *c, const struct virtio_dev_state *core, char *err,
		    size_t errlen)
{
	int r = virtio_blk_state_decode(c, &cur->b, &bst, err, errlen);
	return r ? r : virtio_blk_state_check(&bst, core, err, errlen);
}

static int blk_put(void)
{
	return virtio_blk_state_put(&cur->b, &bst);
}

static uint32_t blk_budget(uint16_t q)
{
	(void)q;
	return VIRTIO_BLK_BUDGET;
}

/* as machine.c pauses a disk */
static void blk_pause(void)
{
	virtio_dev_pause(&cur->b.vdev);
	virtio_blk_quiesce(&cur->b);
}

static void blk_resume(void)
{
	virtio_blk_unquiesce(&cur->b);
	virtio_dev_resume(&cur->b.vdev);
}

static struct fz_dev dev = {
	.nq = 1,
	.op = blk_op,
	.check = blk_check,
	.idle = blk_idle,
	.quiet = blk_quiet,
	.save = blk_save,
	.load = blk_load,
	.put = blk_put,
	.on_used = blk_used,
	.budget = blk_budget,
	.pause = blk_pause,
	.resume = blk_resume,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_global_init();
	static const struct {
		uint64_t size, other;
		bool ro;
		unsigned cap;
	} cfg[NDISKS] = {
		{64 << 10, 8 << 10, false, 256},
		{64 << 10, 32 << 10, false, 2},
		{(8 << 10) + 300, 4 << 10, true, 8},
	};
	for (int i = 0; i < NDISKS; i++) {
		char err[160];
		struct disk *k = &disks[i];
		if (blk_mem_init(&k->m[0], cfg[i].size, cfg[i].ro, cfg[i].cap) ||
		    blk_mem_init(&k->m[1], cfg[i].other, cfg[i].ro, cfg[i].cap) ||
		    virtio_blk_init(&k->b, &k->m[0].be, false, i ? "fuzz-disk" : NULL, &fzh.mem,
				    &fzh.loop, err, sizeof(err)))
			abort();
		k->b.limiter_clock = fz_clock;
		k->b.quiesce_timeout_ms = 1000;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct disk *k = &disks[data[0] % NDISKS];
	if (cur && cur != k)
		fz_park(&dev); /* the previous disk: reset and idle */
	cur = k;
	dev.d = &k->b.vdev;
	fz_run(&dev, data + 1, size - 1);
	return 0;
}
