/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: virtio-rng's request path (src/devices/virtio/
 * virtio_rng.c) driven by a hostile guest through the harness of
 * fuzz_virtio.h (read its header for the input format and the invariants
 * every device target checks).
 *
 * The input is fuzz_virtio.h's set-up and operations; requests are the
 * chains (writable buffers of any shape, readable ones that must be
 * refused).  DEV operations (byte, then arguments):
 *   0 cfg   rate limiter (bandwidth size/refill/burst, ops size/refill)
 *   1 t     the fake clock advances t microseconds, the limiter's timer fires
 * Checks beyond the harness's: a request comes back with at most
 * VIRTIO_RNG_MAX_PER_REQ bytes, none when it had readable buffers; a
 * held request exists only with a limiter.
 * Seeds: tests/fuzz/corpus-virtio_rng.
 */
#include "../../src/devices/virtio/virtio_rng.h"
#include "fuzz_virtio.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct virtio_rng rng;
static struct virtio_rng_state rst;

static void rng_op(struct fz *in)
{
	switch (fz_u8(in) % 2) {
	case 0: {
		struct rate_limiter_config c = {0};
		c.bandwidth.size = fz_u16(in);
		c.bandwidth.refill_time_ms = fz_u8(in);
		c.bandwidth.one_time_burst = fz_u16(in);
		c.ops.size = fz_u8(in) % 8;
		c.ops.refill_time_ms = fz_u8(in);
		(void)virtio_rng_set_rate_limiter(&rng, &c);
		break;
	}
	case 1:
		fzh.clock_ns += (uint64_t)fz_u32(in) * 1000;
		if (rng.limited)
			fz_loop_fd(rng.limiter.timer_fd);
		break;
	}
}

static void rng_check(void)
{
	FZ_CHECK(!rng.held || rng.limited);
}

static void rng_quiet(void)
{
	if (rng.limited) {
		struct rate_limiter_config none = {0};
		virtio_rng_set_rate_limiter(&rng, &none);
	}
}

static void rng_used(uint16_t q, const struct fz_chain *c, uint32_t len)
{
	(void)q;
	FZ_CHECK(len <= VIRTIO_RNG_MAX_PER_REQ);
	if (c->rlen)
		FZ_CHECK(len == 0);
}

static int rng_save(struct snap_writer *w)
{
	int r = virtio_rng_state_get(&rng, &rst);
	if (!r)
		virtio_rng_state_encode(&rst, w);
	return r;
}

static int rng_load(struct snap_cursor *c, const struct virtio_dev_state *core, char *err,
		    size_t errlen)
{
	int r = virtio_rng_state_decode(c, &rng, &rst, err, errlen);
	return r ? r : virtio_rng_state_check(&rst, core, err, errlen);
}

static int rng_put(void)
{
	return virtio_rng_state_put(&rng, &rst);
}

static uint32_t rng_budget(uint16_t q)
{
	(void)q;
	/* VIRTIO_RNG_BUDGET bytes, at least one byte per request */
	return VIRTIO_RNG_BUDGET;
}

static struct fz_dev dev = {
	.nq = 1,
	.op = rng_op,
	.check = rng_check,
	.quiet = rng_quiet,
	.save = rng_save,
	.load = rng_load,
	.put = rng_put,
	.on_used = rng_used,
	.budget = rng_budget,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_global_init();
	if (virtio_rng_init(&rng, &fzh.mem, &fzh.loop))
		abort();
	rng.limiter_clock = fz_clock;
	dev.d = &rng.vdev;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_run(&dev, data, size);
	return 0;
}
