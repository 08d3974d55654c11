/* SPDX-License-Identifier: MIT */
/*
 * The live-migration stream (migration/stream.c): preamble, message
 * headers and payload checksums, page runs, and the destination's state
 * machine, which must refuse every malformed, out-of-order or out-of-range
 * message before it writes anything, write pages where their runs say,
 * and clear only pages it wrote earlier for a zero run.  Also the guest
 * memory's migration bitmap (mem/guest_mem.c).
 */
#include "../../src/migration/stream.h"

#include <errno.h>

#include "../../src/config.h"
#include "../../src/mem/guest_mem.h"
#include "../../src/snapshot/config_section.h"
#include "../../src/snapshot/format.h"
#include "../../src/util/bytes.h"
#include "test.h"

#define NPAGES 64u
#define MSIZE ((uint64_t)NPAGES * 4096u)

static char err[512];

TEST(preamble)
{
	uint8_t p[MIG_PREAMBLE_LEN];
	mig_preamble_encode(p);
	CHECK_EQ(mig_preamble_check(p, err, sizeof(err)), 0);
	p[0] ^= 1;
	CHECK_EQ(mig_preamble_check(p, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "VISORMIG") != NULL);
	mig_preamble_encode(p);
	put_le32(p + 8, MIG_VERSION + 1);
	CHECK_EQ(mig_preamble_check(p, err, sizeof(err)), -ENOTSUP);
	CHECK(strstr(err, "version") != NULL);
	mig_preamble_encode(p);
	put_le32(p + 12, 1);
	CHECK_EQ(mig_preamble_check(p, err, sizeof(err)), -EINVAL);
}

TEST(header_round_trip_and_refusals)
{
	uint8_t h[MIG_HDR_LEN], payload[100];
	for (int i = 0; i < 100; i++)
		payload[i] = (uint8_t)i;
	mig_hdr_encode(h, MIG_MSG_PASS, payload, sizeof(payload));
	struct mig_hdr d;
	CHECK_EQ(mig_hdr_decode(h, &d, err, sizeof(err)), 0);
	CHECK_EQ(d.type, MIG_MSG_PASS);
	CHECK_EQ(d.len, 100);
	CHECK_EQ(mig_payload_check(&d, payload, err, sizeof(err)), 0);
	payload[50] ^= 0x10; /* one flipped bit in the payload */
	CHECK_EQ(mig_payload_check(&d, payload, err, sizeof(err)), -EBADMSG);
	CHECK(strstr(err, "checksum") != NULL);
	/* every single-bit flip of a header is caught */
	for (int bit = 0; bit < MIG_HDR_LEN * 8; bit++) {
		uint8_t c[MIG_HDR_LEN];
		memcpy(c, h, sizeof(c));
		c[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		CHECK(mig_hdr_decode(c, &d, err, sizeof(err)) < 0);
	}
	/* well-formed headers with bad contents */
	mig_hdr_encode(h, 0, NULL, 0);
	CHECK_EQ(mig_hdr_decode(h, &d, err, sizeof(err)), -EINVAL);
	mig_hdr_encode(h, MIG_MSG_TYPE_MAX + 1, NULL, 0);
	CHECK_EQ(mig_hdr_decode(h, &d, err, sizeof(err)), -EINVAL);
	put_le32(h, MIG_MSG_STATE);
	put_le32(h + 4, MIG_MAX_PAYLOAD + 1);
	put_le32(h + 12, snap_crc32(h, 12));
	CHECK_EQ(mig_hdr_decode(h, &d, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "at most") != NULL);
	CHECK_STR(mig_msg_name(MIG_MSG_GO), "GO");
	CHECK_STR(mig_msg_name(999), "unknown");
}

/* A PAGES/ZERO payload: runs (and for PAGES @fill for each page's bytes). */
static size_t make_runs(uint8_t *out, const struct mig_run *r, uint32_t n, bool data, int fill)
{
	mig_runs_encode(out, r, n);
	size_t len = mig_runs_len(n);
	if (data)
		for (uint32_t i = 0; i < n; i++)
			for (uint64_t k = 0; k < r[i].count; k++) {
				memset(out + len, fill + (int)(r[i].first + k), 4096);
				len += 4096;
			}
	return len;
}

TEST(runs_decode)
{
	static uint8_t p[8 + 16 * 8 + 8 * 4096];
	static struct mig_run out[MIG_MAX_RUNS];
	uint32_t n;
	const uint8_t *data;
	struct mig_run r[2] = {{3, 2}, {10, 1}};
	size_t len = make_runs(p, r, 2, true, 1);
	CHECK_EQ(mig_runs_decode(p, len, true, NPAGES, out, &n, &data, err, sizeof(err)), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(out[1].first, 10);
	CHECK(data == p + mig_runs_len(2));
	/* one byte short or long */
	CHECK(mig_runs_decode(p, len - 1, true, NPAGES, out, &n, &data, err, sizeof(err)) < 0);
	CHECK(mig_runs_decode(p, len + 1, true, NPAGES, out, &n, &data, err, sizeof(err)) < 0);
	/* zero runs carry no data */
	len = make_runs(p, r, 2, false, 0);
	CHECK_EQ(mig_runs_decode(p, len, false, NPAGES, out, &n, NULL, err, sizeof(err)), 0);
	CHECK(mig_runs_decode(p, len, true, NPAGES, out, &n, &data, err, sizeof(err)) < 0);
	/* out of guest memory, overflow, empty runs, no runs, reserved */
	struct mig_run bad[][1] = {{{NPAGES, 1}},
				   {{NPAGES - 1, 2}},
				   {{1, UINT64_MAX}},
				   {{UINT64_MAX, 2}},
				   {{0, 0}}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		len = make_runs(p, bad[i], 1, false, 0);
		CHECK_EQ(mig_runs_decode(p, len, false, NPAGES, out, &n, NULL, err, sizeof(err)),
			 -EINVAL);
	}
	CHECK(strstr(err, "") != NULL);
	mig_runs_encode(p, r, 0);
	CHECK(mig_runs_decode(p, 8, false, NPAGES, out, &n, NULL, err, sizeof(err)) < 0);
	len = make_runs(p, r, 1, false, 0);
	put_le32(p + 4, 1);
	CHECK(mig_runs_decode(p, len, false, NPAGES, out, &n, NULL, err, sizeof(err)) < 0);
	put_le32(p + 4, 0);
	put_le32(p, MIG_MAX_RUNS + 1);
	CHECK(mig_runs_decode(p, len, false, NPAGES, out, &n, NULL, err, sizeof(err)) < 0);
	/* the same page twice in one message adds up past guest memory */
	struct mig_run many[2] = {{0, NPAGES}, {0, 1}};
	len = make_runs(p, many, 2, false, 0);
	CHECK(mig_runs_decode(p, len, false, NPAGES, out, &n, NULL, err, sizeof(err)) < 0);
}

TEST(page_is_zero)
{
	static uint8_t pg[4096];
	memset(pg, 0, sizeof(pg));
	CHECK(mig_page_is_zero(pg));
	for (int at = 0; at < 4096; at += 511) {
		pg[at] = 1;
		CHECK(!mig_page_is_zero(pg));
		pg[at] = 0;
	}
	pg[4095] = 0x80;
	CHECK(!mig_page_is_zero(pg));
}

/* HELLO's payload for @mem_size bytes, @mode; with or without sections. */
static uint8_t *hello(uint64_t mem_size, uint32_t mode, uint32_t page, bool cfg_sec, size_t *len)
{
	struct snap_writer w;
	snap_writer_init(&w);
	if (cfg_sec) {
		struct vm_config *c = calloc(1, sizeof(*c));
		config_init(c);
		c->mem_size = mem_size;
		snap_config_write(c, &w);
		free(c);
	}
	struct mig_hello h = {.mem_size = mem_size, .page_size = page, .mode = mode};
	mig_hello_write(&h, &w);
	uint8_t *buf;
	CHECK_EQ(snap_writer_finish(&w, &buf, len), 0);
	return buf;
}

static int feed(struct mig_rx *rx, uint32_t type, const uint8_t *p, size_t len)
{
	struct mig_hdr h = {.type = type, .len = (uint32_t)len};
	return mig_rx_msg(rx, &h, p);
}

static void rx_ready(struct mig_rx *rx, struct guest_mem *m, uint32_t mode)
{
	mig_rx_init(rx);
	size_t len;
	uint8_t *b = hello(MSIZE, mode, 4096, true, &len);
	CHECK_EQ(feed(rx, MIG_MSG_HELLO, b, len), MIG_RX_DO_BUILD);
	free(b);
	CHECK_EQ(guest_mem_init(m, MSIZE, 1ull << 32, 1ull << 32), 0);
	CHECK_EQ(mig_rx_built(rx, m), 0);
	CHECK_EQ(rx->phase, MIG_RX_MEMORY);
}

TEST(rx_hello_refusals)
{
	struct mig_rx rx;
	size_t len;
	uint8_t *b;
	/* wrong page size, unknown mode, no config, odd size */
	const struct {
		uint64_t size;
		uint32_t mode, page;
		bool cfg;
	} bad[] = {{MSIZE, 0, 8192, true},
		   {MSIZE, MIG_MODE_MAX, 4096, true},
		   {MSIZE, 0, 4096, false},
		   {MSIZE + 1, 0, 4096, true},
		   {0, 0, 4096, true}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mig_rx_init(&rx);
		b = hello(bad[i].size, bad[i].mode, bad[i].page, bad[i].cfg, &len);
		CHECK(feed(&rx, MIG_MSG_HELLO, b, len) < 0);
		CHECK_EQ(rx.phase, MIG_RX_FAILED);
		CHECK(rx.err[0]);
		free(b);
	}
	/* garbage instead of a container */
	mig_rx_init(&rx);
	uint8_t junk[64] = "not a state container";
	CHECK(feed(&rx, MIG_MSG_HELLO, junk, sizeof(junk)) < 0);
	/* anything but HELLO first */
	mig_rx_init(&rx);
	CHECK_EQ(feed(&rx, MIG_MSG_GO, NULL, 0), -EPROTO);
	CHECK(strstr(rx.err, "expected HELLO") != NULL);
	/* a machine of another size */
	mig_rx_init(&rx);
	b = hello(MSIZE, 0, 4096, true, &len);
	CHECK_EQ(feed(&rx, MIG_MSG_HELLO, b, len), MIG_RX_DO_BUILD);
	free(b);
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, MSIZE * 2, 1ull << 32, 1ull << 32), 0);
	CHECK(mig_rx_built(&rx, &m) < 0);
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
}

TEST(rx_pages_zero_and_order)
{
	struct mig_rx rx;
	struct guest_mem m;
	rx_ready(&rx, &m, MIG_MODE_PRECOPY);
	static uint8_t p[8 + 16 * 8 + 8 * 4096];
	struct mig_run r[2] = {{3, 2}, {NPAGES - 1, 1}};
	size_t len = make_runs(p, r, 2, true, 0x10);
	CHECK_EQ(feed(&rx, MIG_MSG_PAGES, p, len), MIG_RX_CONTINUE);
	CHECK_EQ(m.base[3 * 4096], 0x13);
	CHECK_EQ(m.base[4 * 4096 + 4095], 0x14);
	CHECK_EQ(m.base[(NPAGES - 1) * 4096], 0x10 + NPAGES - 1);
	CHECK_EQ(m.base[5 * 4096], 0);
	/* zero run over a written page and one never written */
	m.base[6 * 4096] = 0x77; /* not written by the stream: left alone */
	struct mig_run z[1] = {{3, 4}};
	len = make_runs(p, z, 1, false, 0);
	CHECK_EQ(feed(&rx, MIG_MSG_ZERO, p, len), MIG_RX_CONTINUE);
	CHECK_EQ(m.base[3 * 4096], 0);
	CHECK_EQ(m.base[4 * 4096 + 4095], 0);
	CHECK_EQ(m.base[6 * 4096], 0x77);
	CHECK_EQ(rx.pages_data, 3);
	CHECK_EQ(rx.pages_zero, 4);
	/* a run outside guest memory changes nothing and fails the stream */
	uint8_t before = m.base[(NPAGES - 1) * 4096];
	struct mig_run out[1] = {{NPAGES - 1, 2}};
	len = make_runs(p, out, 1, false, 0);
	CHECK(feed(&rx, MIG_MSG_ZERO, p, len) < 0);
	CHECK_EQ(m.base[(NPAGES - 1) * 4096], before);
	CHECK_EQ(rx.phase, MIG_RX_FAILED);
	/* nothing is accepted after a failure */
	CHECK(feed(&rx, MIG_MSG_PASS, p, 16) < 0);
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
}

TEST(rx_state_ready_go)
{
	struct mig_rx rx;
	struct guest_mem m;
	rx_ready(&rx, &m, MIG_MODE_PRECOPY);
	uint8_t pass[16] = {1};
	/* every pass but the last is answered (PASS_DONE) */
	CHECK_EQ(feed(&rx, MIG_MSG_PASS, pass, 16), MIG_RX_DO_PASS_DONE);
	CHECK_EQ(rx.passes, 1);
	CHECK_EQ(rx.last_pass, 1);
	uint8_t last[16] = {0xff, 0xff, 0xff, 0xff};
	CHECK_EQ(feed(&rx, MIG_MSG_PASS, last, 16), MIG_RX_CONTINUE);
	CHECK_EQ(rx.passes, 2);
	CHECK_EQ(rx.last_pass, UINT32_MAX);
	/* the destination's own message is not the source's to send */
	CHECK(feed(&rx, MIG_MSG_PASS_DONE, pass, 16) < 0);
	CHECK(feed(&rx, MIG_MSG_GO, NULL, 0) < 0); /* GO before the state */
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
	rx_ready(&rx, &m, MIG_MODE_PRECOPY);
	uint8_t junk[32] = {0};
	CHECK(feed(&rx, MIG_MSG_STATE, junk, sizeof(junk)) < 0);
	CHECK(strstr(rx.err, "STATE") != NULL);
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
	rx_ready(&rx, &m, MIG_MODE_PRECOPY);
	size_t len;
	uint8_t *b = hello(MSIZE, 0, 4096, true, &len); /* any valid container */
	CHECK_EQ(feed(&rx, MIG_MSG_STATE, b, len), MIG_RX_DO_APPLY);
	CHECK(feed(&rx, MIG_MSG_PASS, pass, 16) < 0); /* nothing until applied */
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
	rx_ready(&rx, &m, MIG_MODE_PRECOPY);
	CHECK_EQ(feed(&rx, MIG_MSG_STATE, b, len), MIG_RX_DO_APPLY);
	mig_rx_applied(&rx);
	CHECK_EQ(rx.phase, MIG_RX_GO);
	CHECK(feed(&rx, MIG_MSG_GO, pass, 1) < 0); /* GO carries nothing */
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
	rx_ready(&rx, &m, MIG_MODE_PRECOPY);
	CHECK_EQ(feed(&rx, MIG_MSG_STATE, b, len), MIG_RX_DO_APPLY);
	mig_rx_applied(&rx);
	CHECK_EQ(feed(&rx, MIG_MSG_GO, NULL, 0), MIG_RX_DO_RUN);
	CHECK_EQ(rx.phase, MIG_RX_DONE);
	free(b);
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
}

/* VERIFY: the CRCs of this side's pages must be the source's */
TEST(rx_verify)
{
	struct mig_rx rx;
	struct guest_mem m;
	rx_ready(&rx, &m, MIG_MODE_PRECOPY);
	static uint8_t p[MIG_VERIFY_HDR + 4 * NPAGES + 8];
	memset(m.base + 2 * 4096, 0x5a, 4096);
	put_le64(p, 0);
	put_le32(p + 8, NPAGES);
	put_le32(p + 12, 0);
	mig_verify_crcs(m.base, 0, NPAGES, p + MIG_VERIFY_HDR);
	size_t len = MIG_VERIFY_HDR + 4 * NPAGES;
	CHECK_EQ(feed(&rx, MIG_MSG_VERIFY, p, len), MIG_RX_CONTINUE);
	CHECK_EQ(rx.verified, NPAGES);
	CHECK_EQ(rx.verify_bad, 0);
	/* a tail only */
	put_le64(p, NPAGES - 2);
	put_le32(p + 8, 2);
	mig_verify_crcs(m.base, NPAGES - 2, 2, p + MIG_VERIFY_HDR);
	CHECK_EQ(feed(&rx, MIG_MSG_VERIFY, p, MIG_VERIFY_HDR + 8), MIG_RX_CONTINUE);
	/* malformed: wrong length, past the end, zero count, flags set */
	const struct {
		uint64_t first;
		uint32_t count, flags;
		size_t len;
	} bad[] = {{0, 2, 0, MIG_VERIFY_HDR + 4},
		   {NPAGES - 1, 2, 0, MIG_VERIFY_HDR + 8},
		   {UINT64_MAX, 1, 0, MIG_VERIFY_HDR + 4},
		   {0, 0, 0, MIG_VERIFY_HDR},
		   {0, 1, 1, MIG_VERIFY_HDR + 4},
		   {0, 1, 0, 8}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		guest_mem_destroy(&m);
		mig_rx_free(&rx);
		rx_ready(&rx, &m, MIG_MODE_PRECOPY);
		put_le64(p, bad[i].first);
		put_le32(p + 8, bad[i].count);
		put_le32(p + 12, bad[i].flags);
		CHECK_EQ(feed(&rx, MIG_MSG_VERIFY, p, bad[i].len), -EINVAL);
		CHECK_EQ(rx.phase, MIG_RX_FAILED);
	}
	/* one page differs: refused, with its address */
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
	rx_ready(&rx, &m, MIG_MODE_PRECOPY);
	put_le64(p, 0);
	put_le32(p + 8, NPAGES);
	put_le32(p + 12, 0);
	mig_verify_crcs(m.base, 0, NPAGES, p + MIG_VERIFY_HDR);
	m.base[5 * 4096 + 17] = 1;
	CHECK_EQ(feed(&rx, MIG_MSG_VERIFY, p, len), -EIO);
	CHECK_EQ(rx.verify_bad, 1);
	CHECK(strstr(rx.err, "differs") != NULL);
	CHECK(strstr(rx.err, "1 of") != NULL);
	CHECK(strstr(rx.err, "0x5000") != NULL);
	/* not after the state, not in post-copy */
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
	rx_ready(&rx, &m, MIG_MODE_PRECOPY);
	size_t hl;
	uint8_t *b = hello(MSIZE, 0, 4096, true, &hl);
	CHECK_EQ(feed(&rx, MIG_MSG_STATE, b, hl), MIG_RX_DO_APPLY);
	mig_rx_applied(&rx);
	mig_verify_crcs(m.base, 0, NPAGES, p + MIG_VERIFY_HDR);
	CHECK_EQ(feed(&rx, MIG_MSG_VERIFY, p, len), -EPROTO);
	free(b);
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
}

TEST(rx_peer_error_is_sanitised)
{
	struct mig_rx rx;
	struct guest_mem m;
	rx_ready(&rx, &m, MIG_MODE_PRECOPY);
	const uint8_t msg[] = "disk\x1b[2J full\n";
	CHECK_EQ(feed(&rx, MIG_MSG_ERROR, msg, sizeof(msg) - 1), MIG_RX_PEER_ERROR);
	CHECK_STR(rx.err, "disk?[2J full?");
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
}

TEST(rx_local_mode_takes_no_pages)
{
	struct mig_rx rx;
	struct guest_mem m;
	rx_ready(&rx, &m, MIG_MODE_LOCAL);
	static uint8_t p[8 + 16 + 4096];
	struct mig_run r[1] = {{0, 1}};
	size_t len = make_runs(p, r, 1, true, 1);
	CHECK_EQ(feed(&rx, MIG_MSG_PAGES, p, len), -EPROTO);
	CHECK_EQ(m.base[0], 0);
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
}

static int installs, zero_installs;
static uint64_t last_install;
static int fake_install(void *ctx, uint64_t pg, const uint8_t *data)
{
	struct guest_mem *m = ctx;
	last_install = pg;
	if (data) {
		memcpy(m->base + pg * 4096, data, 4096);
		installs++;
	} else {
		memset(m->base + pg * 4096, 0, 4096);
		zero_installs++;
	}
	return 0;
}

/* POSTCOPY's payload: count, then the bitmap of NPAGES pages. */
static size_t postcopy_msg(uint8_t *p, uint64_t count, const uint64_t *pages, int n)
{
	memset(p, 0, 8 + NPAGES / 8);
	put_le64(p, count);
	for (int i = 0; i < n; i++)
		p[8 + pages[i] / 8] |= (uint8_t)(1u << (pages[i] % 8));
	return 8 + NPAGES / 8;
}

TEST(rx_postcopy)
{
	struct mig_rx rx;
	struct guest_mem m;
	static uint8_t p[8 + 16 * 8 + 8 * 4096];
	uint8_t pc[8 + NPAGES / 8];
	uint64_t want[2] = {3, 5};
	size_t len;
	/* a pre-copy stream takes no POSTCOPY */
	rx_ready(&rx, &m, MIG_MODE_PRECOPY);
	len = postcopy_msg(pc, 2, want, 2);
	CHECK_EQ(feed(&rx, MIG_MSG_POSTCOPY, pc, len), -EPROTO);
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
	/* count that is not the bitmap's, a bit past memory, a short bitmap */
	for (int k = 0; k < 3; k++) {
		rx_ready(&rx, &m, MIG_MODE_POSTCOPY);
		len = postcopy_msg(pc, k == 0 ? 3 : 2, want, 2);
		if (k == 1)
			len--;
		if (k == 2) {
			/* NPAGES is a multiple of 8: make the map one page
			 * short instead and check the rule on a count */
			put_le64(pc, 1);
		}
		CHECK(feed(&rx, MIG_MSG_POSTCOPY, pc, len) < 0);
		CHECK_EQ(rx.phase, MIG_RX_FAILED);
		guest_mem_destroy(&m);
		mig_rx_free(&rx);
	}
	/* the whole post-copy: page 3 came in pre-copy (stale now), 5 never */
	rx_ready(&rx, &m, MIG_MODE_POSTCOPY);
	struct mig_run r3[1] = {{3, 1}};
	len = make_runs(p, r3, 1, true, 0x40);
	CHECK_EQ(feed(&rx, MIG_MSG_PAGES, p, len), MIG_RX_CONTINUE);
	len = postcopy_msg(pc, 2, want, 2);
	CHECK_EQ(feed(&rx, MIG_MSG_POSTCOPY, pc, len), MIG_RX_DO_POSTCOPY);
	CHECK(rx.postcopy && rx.npending == 2);
	CHECK(mig_rx_pending(&rx, 3) && mig_rx_pending(&rx, 5) && !mig_rx_pending(&rx, 4));
	CHECK(feed(&rx, MIG_MSG_POSTCOPY, pc, len) < 0); /* only once */
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
	rx_ready(&rx, &m, MIG_MODE_AUTO);
	len = postcopy_msg(pc, 2, want, 2);
	CHECK_EQ(feed(&rx, MIG_MSG_POSTCOPY, pc, len), MIG_RX_DO_POSTCOPY);
	rx.install = fake_install;
	rx.install_ctx = &m;
	installs = zero_installs = 0;
	len = make_runs(p, r3, 1, true, 0x50);
	CHECK_EQ(feed(&rx, MIG_MSG_PAGES, p, len), MIG_RX_CONTINUE);
	CHECK_EQ(installs, 1);
	CHECK_EQ(last_install, 3);
	CHECK_EQ(m.base[3 * 4096], 0x53);
	CHECK(!mig_rx_pending(&rx, 3));
	/* sent twice (pushed and asked for): the second is skipped */
	CHECK_EQ(feed(&rx, MIG_MSG_PAGES, p, len), MIG_RX_CONTINUE);
	CHECK_EQ(installs, 1);
	/* the end before every page is in is refused later; the state now */
	size_t slen;
	uint8_t *st = hello(MSIZE, 0, 4096, true, &slen);
	CHECK_EQ(feed(&rx, MIG_MSG_STATE, st, slen), MIG_RX_DO_APPLY);
	free(st);
	/* pages keep coming while the state is applied and after GO */
	struct mig_run r5[1] = {{5, 1}};
	len = make_runs(p, r5, 1, false, 0);
	mig_rx_applied(&rx);
	CHECK_EQ(feed(&rx, MIG_MSG_GO, NULL, 0), MIG_RX_DO_RUN);
	CHECK_EQ(feed(&rx, MIG_MSG_POSTCOPY_END, NULL, 0), -EPROTO); /* page 5 missing */
	CHECK(strstr(rx.err, "never sent") != NULL);
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
	/* again, with page 5 in before the end */
	rx_ready(&rx, &m, MIG_MODE_POSTCOPY);
	len = postcopy_msg(pc, 2, want, 2);
	CHECK_EQ(feed(&rx, MIG_MSG_POSTCOPY, pc, len), MIG_RX_DO_POSTCOPY);
	rx.install = fake_install;
	rx.install_ctx = &m;
	st = hello(MSIZE, 0, 4096, true, &slen);
	CHECK_EQ(feed(&rx, MIG_MSG_STATE, st, slen), MIG_RX_DO_APPLY);
	free(st);
	zero_installs = 0;
	len = make_runs(p, r5, 1, false, 0);
	CHECK_EQ(feed(&rx, MIG_MSG_ZERO, p, len), MIG_RX_CONTINUE); /* while applying */
	CHECK_EQ(zero_installs, 1);
	mig_rx_applied(&rx);
	CHECK_EQ(feed(&rx, MIG_MSG_GO, NULL, 0), MIG_RX_DO_RUN);
	len = make_runs(p, r3, 1, true, 0x60);
	CHECK_EQ(feed(&rx, MIG_MSG_PAGES, p, len), MIG_RX_CONTINUE);
	CHECK_EQ(rx.npending, 0);
	CHECK_EQ(feed(&rx, MIG_MSG_POSTCOPY_END, NULL, 0), MIG_RX_DO_FINISH);
	CHECK(feed(&rx, MIG_MSG_POSTCOPY_END, NULL, 0) < 0); /* once */
	guest_mem_destroy(&m);
	mig_rx_free(&rx);
}

TEST(migration_bitmap)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, MSIZE, 1ull << 32, 1ull << 32), 0);
	uint64_t bits[1] = {0};
	/* off: marks go nowhere */
	guest_mem_mark(&m, m.base + 4096, 1);
	CHECK(!guest_mem_mig_on(&m));
	CHECK_EQ(guest_mem_mig_take(&m, bits), 0);
	CHECK_EQ(guest_mem_mig_start(&m), 0);
	CHECK(guest_mem_mig_on(&m));
	guest_mem_mark(&m, m.base + 4096, 1);
	guest_mem_mark(&m, m.base + 10 * 4096 - 1, 2); /* pages 9 and 10 */
	CHECK(guest_write(&m, 20 * 4096, "x", 1) == 0);
	uint64_t kvm[1] = {1ull << 30}; /* KVM's log of region 0: page 30 */
	guest_mem_dirty_add(&m, 0, kvm);
	CHECK_EQ(guest_mem_mig_take(&m, bits), 5);
	CHECK_EQ(bits[0], (1ull << 1) | (1ull << 9) | (1ull << 10) | (1ull << 20) | (1ull << 30));
	/* taken means cleared; the snapshot bitmap (off) was never touched */
	uint64_t again[1] = {0};
	CHECK_EQ(guest_mem_mig_take(&m, again), 0);
	CHECK(!guest_mem_tracking(&m));
	/* with snapshot tracking on, both bitmaps get every mark */
	CHECK_EQ(guest_mem_track_dirty(&m), 0);
	guest_mem_mark(&m, m.base + 2 * 4096, 1);
	CHECK(guest_mem_is_dirty(&m, 2));
	CHECK_EQ(guest_mem_mig_take(&m, again), 1);
	CHECK(guest_mem_is_dirty(&m, 2)); /* the migration's take keeps the snapshot's */
	guest_mem_mig_stop(&m);
	CHECK(!guest_mem_mig_on(&m));
	guest_mem_mark(&m, m.base + 3 * 4096, 1);
	CHECK(guest_mem_is_dirty(&m, 3));
	guest_mem_destroy(&m);
}

TEST(memfd_backed_memory_is_shared)
{
	struct guest_mem a, b;
	CHECK_EQ(guest_mem_init_memfd(&a, MSIZE, 1ull << 32, 1ull << 32), 0);
	CHECK(a.shared);
	CHECK_EQ(guest_mem_init_shared(&b, a.memfd, MSIZE, 1ull << 32, 1ull << 32), 0);
	a.base[5 * 4096] = 0x42;
	CHECK_EQ(b.base[5 * 4096], 0x42);
	b.base[7] = 0x24;
	CHECK_EQ(a.base[7], 0x24);
	guest_mem_destroy(&a);
	CHECK_EQ(b.base[5 * 4096], 0x42); /* b holds its own reference */
	struct guest_mem c;
	CHECK_EQ(guest_mem_init_shared(&c, b.memfd, MSIZE * 2, 1ull << 32, 1ull << 32), -ERANGE);
	CHECK_EQ(guest_mem_init_shared(&c, -1, MSIZE, 1ull << 32, 1ull << 32), -EBADF);
	guest_mem_destroy(&b);
}

TEST_MAIN()
