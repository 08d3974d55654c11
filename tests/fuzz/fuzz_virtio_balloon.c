/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the virtio memory balloon (src/devices/virtio/
 * virtio_balloon.c): inflate and deflate PFN arrays, statistics buffers,
 * free page reports, targets and statistics requests from the host,
 * through the harness of fuzz_virtio.h (read its header for the input
 * format and the invariants every device target checks).  Queues 0
 * inflate, 1 deflate, then statistics and reporting at the indices the
 * negotiated features give them (2, 3 or 4).
 *
 *   byte 0     which balloon: even: statistics only on request, with
 *              DEFLATE_ON_OOM; odd: a statistics timer (one hour: it
 *              never fires by itself), no free page reporting
 *   the rest   fuzz_virtio.h's set-up and operations; the chains are the
 *              requests (PFN arrays: 4-byte little-endian PFNs, gpa >> 12;
 *              statistics: 10-byte tag/value entries; reports: their
 *              buffers)
 * DEV operations (byte, then arguments):
 *   0 pages   the host sets the target (u32 pages; too many are refused)
 *   1         the host asks for statistics (virtio_balloon_request_stats)
 *   2         the statistics timer fires (virtio_balloon_stats_tick)
 *   3 s       a new statistics period (u16 seconds; 1-599 become 601-1199)
 *   4         discards fail from now on (toggle)
 * The device's madvise is replaced by one that checks every range (page
 * aligned, inside guest RAM, nothing else ever) and zeroes it, as
 * MADV_DONTNEED would; those bytes are the only ones the device may
 * change outside the used rings.  Beyond the harness's checks: no chain
 * comes back with a used length (the balloon writes into no buffer); the
 * device's inflated count is the number of bits in its bitmap and at most
 * the guest's pages; what get_info reports agrees with it.
 * Seeds: tests/fuzz/corpus-virtio_balloon.
 */
#include <sys/mman.h>

#include "../../src/devices/virtio/virtio_balloon.h"
#include "fuzz_virtio.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct virtio_balloon balloons[2];
static struct virtio_balloon *cur;
static struct virtio_balloon_state bst;
static bool discard_fails;

static int fake_madvise(void *addr, size_t len, int advice)
{
	uint8_t *p = addr;
	FZ_CHECK(advice == MADV_DONTNEED);
	FZ_CHECK(len && len % 4096 == 0 && (uintptr_t)p % 4096 == 0);
	FZ_CHECK(p >= fzh.mem.base && len <= FZ_MEM_SIZE &&
		 (uint64_t)(p - fzh.mem.base) <= FZ_MEM_SIZE - len);
	if (discard_fails) {
		errno = EINVAL;
		return -1;
	}
	/* the rings, or a table a chain in flight may still be read from */
	if ((uint64_t)(p - fzh.mem.base) < FZ_DATA_LO)
		fzh.rings_dirty = true;
	for (uint16_t q = 0; q < fzh.dev->nq; q++)
		for (unsigned h = 0; h < FZ_QMAX; h++)
			if (fzh.q[q].out[h] && fzh.q[q].ch[h].indirect)
				fzh.rings_dirty = true;
	fz_allow_hva(p, len);
	memset(p, 0, len);
	return 0;
}

static void balloon_op(struct fz *in)
{
	switch (fz_u8(in) % 5) {
	case 0:
		(void)virtio_balloon_set_target(cur, (uint64_t)fz_u32(in) * 4096);
		break;
	case 1:
		(void)virtio_balloon_request_stats(cur);
		break;
	case 2:
		virtio_balloon_stats_tick(cur);
		break;
	case 3: {
		/* never so short that the real timer fires during a run */
		uint32_t sec = fz_u16(in);
		(void)virtio_balloon_set_stats_period(cur, sec && sec < 600 ? sec + 600 : sec);
		break;
	}
	case 4:
		discard_fails = !discard_fails;
		break;
	}
}

static void balloon_check(void)
{
	uint64_t bits = 0;
	for (uint64_t i = 0; i < (cur->guest_pages + 7) / 8; i++)
		bits += (uint64_t)__builtin_popcount(cur->bitmap[i]);
	FZ_CHECK(bits == cur->inflated && cur->inflated <= cur->guest_pages);
	struct virtio_balloon_info info;
	virtio_balloon_get_info(cur, &info);
	FZ_CHECK(info.inflated_pages == cur->inflated && info.guest_pages == FZ_MEM_SIZE / 4096);
	FZ_CHECK(!cur->stats_held || cur->q_stats >= 0);
}

static void balloon_quiet(void)
{
	discard_fails = false;
	(void)virtio_balloon_set_target(cur, 0);
	if (cur->stats_period_s)
		(void)virtio_balloon_set_stats_period(cur, 3600);
}

static void balloon_used(uint16_t q, const struct fz_chain *c, uint32_t len)
{
	(void)q;
	(void)c;
	FZ_CHECK(len == 0);
}

static int balloon_save(struct snap_writer *w)
{
	int r = virtio_balloon_state_get(cur, &bst);
	if (!r)
		virtio_balloon_state_encode(&bst, w);
	return r;
}

static int balloon_load(struct snap_cursor *c, const struct virtio_dev_state *core, char *err,
			size_t errlen)
{
	int r = virtio_balloon_state_decode(c, cur, &bst, err, errlen);
	return r ? r : virtio_balloon_state_check(&bst, core, err, errlen);
}

static int balloon_put(void)
{
	return virtio_balloon_state_put(cur, &bst);
}

static uint32_t balloon_budget(uint16_t q)
{
	(void)q;
	return VIRTIO_BALLOON_BUDGET_PAGES; /* every chain is at least one unit */
}

static struct fz_dev dev = {
	.nq = VIRTIO_BALLOON_NUM_QUEUES,
	.op = balloon_op,
	.check = balloon_check,
	.quiet = balloon_quiet,
	.save = balloon_save,
	.load = balloon_load,
	.put = balloon_put,
	.on_used = balloon_used,
	.budget = balloon_budget,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_global_init();
	if (virtio_balloon_create(&balloons[0], 0, true, 0, &fzh.mem, &fzh.loop) ||
	    virtio_balloon_create(&balloons[1], 0, false, 3600, &fzh.mem, &fzh.loop))
		abort();
	virtio_balloon_disable_reporting(&balloons[1]);
	for (int i = 0; i < 2; i++)
		balloons[i].madvise_fn = fake_madvise;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct virtio_balloon *b = &balloons[data[0] & 1];
	if (cur && cur != b)
		fz_park(&dev);
	cur = b;
	dev.d = &b->vdev;
	fz_run(&dev, data + 1, size - 1);
	return 0;
}
