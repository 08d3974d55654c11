/* SPDX-License-Identifier: MIT */
#include "stream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mem/guest_mem.h"
#include "../snapshot/config_section.h"
#include "../snapshot/format.h"
#include "../util/bytes.h"
#include "../util/log.h"

static const char *const msg_names[] = {
	[MIG_MSG_HELLO] = "HELLO",	[MIG_MSG_HELLO_OK] = "HELLO_OK", [MIG_MSG_PAGES] = "PAGES",
	[MIG_MSG_ZERO] = "ZERO",	[MIG_MSG_PASS] = "PASS",	 [MIG_MSG_STATE] = "STATE",
	[MIG_MSG_READY] = "READY",	[MIG_MSG_GO] = "GO",		 [MIG_MSG_RUNNING] = "RUNNING",
	[MIG_MSG_ERROR] = "ERROR",	[MIG_MSG_POSTCOPY] = "POSTCOPY",
	[MIG_MSG_PAGE_REQ] = "PAGE_REQ", [MIG_MSG_POSTCOPY_END] = "POSTCOPY_END",
	[MIG_MSG_VERIFY] = "VERIFY",	[MIG_MSG_PASS_DONE] = "PASS_DONE",
	[MIG_MSG_DONE] = "DONE",
};

const char *mig_msg_name(uint32_t type)
{
	return type >= 1 && type <= MIG_MSG_TYPE_MAX ? msg_names[type] : "unknown";
}

__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, int rc,
						      const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

void mig_preamble_encode(uint8_t out[MIG_PREAMBLE_LEN])
{
	memcpy(out, MIG_MAGIC, MIG_MAGIC_LEN);
	put_le32(out + 8, MIG_VERSION);
	put_le32(out + 12, 0);
}

int mig_preamble_check(const uint8_t in[MIG_PREAMBLE_LEN], char *err, size_t errlen)
{
	if (memcmp(in, MIG_MAGIC, MIG_MAGIC_LEN))
		return fail(err, errlen, -EINVAL, "the peer does not speak visor's migration "
				  "protocol (no VISORMIG preamble)");
	uint32_t v = get_le32(in + 8), flags = get_le32(in + 12);
	if (v != MIG_VERSION)
		return fail(err, errlen, -ENOTSUP,
			    "the peer speaks migration protocol version %u, this visor %u", v,
			    MIG_VERSION);
	if (flags)
		return fail(err, errlen, -EINVAL, "unknown preamble flags 0x%x", flags);
	return 0;
}

void mig_hdr_encode(uint8_t out[MIG_HDR_LEN], uint32_t type, const void *p, uint32_t len)
{
	put_le32(out, type);
	put_le32(out + 4, len);
	put_le32(out + 8, snap_crc32(p, len));
	put_le32(out + 12, snap_crc32(out, 12));
}

int mig_hdr_decode(const uint8_t in[MIG_HDR_LEN], struct mig_hdr *h, char *err, size_t errlen)
{
	if (get_le32(in + 12) != snap_crc32(in, 12))
		return fail(err, errlen, -EBADMSG, "a message header's checksum does not match");
	h->type = get_le32(in);
	h->len = get_le32(in + 4);
	h->crc = get_le32(in + 8);
	if (h->type < 1 || h->type > MIG_MSG_TYPE_MAX)
		return fail(err, errlen, -EINVAL, "unknown message type %u", h->type);
	if (h->len > MIG_MAX_PAYLOAD)
		return fail(err, errlen, -EINVAL, "%s message of %u bytes (at most %u)",
			    mig_msg_name(h->type), h->len, MIG_MAX_PAYLOAD);
	return 0;
}

int mig_payload_check(const struct mig_hdr *h, const void *p, char *err, size_t errlen)
{
	if (snap_crc32(p, h->len) != h->crc)
		return fail(err, errlen, -EBADMSG, "%s message of %u bytes: checksum does not match",
			    mig_msg_name(h->type), h->len);
	return 0;
}

void mig_runs_encode(uint8_t *out, const struct mig_run *runs, uint32_t nruns)
{
	put_le32(out, nruns);
	put_le32(out + 4, 0);
	for (uint32_t i = 0; i < nruns; i++) {
		put_le64(out + 8 + 16 * (size_t)i, runs[i].first);
		put_le64(out + 16 + 16 * (size_t)i, runs[i].count);
	}
}

int mig_runs_decode(const uint8_t *p, size_t len, bool with_data, uint64_t npages,
		    struct mig_run *out, uint32_t *nruns, const uint8_t **data, char *err,
		    size_t errlen)
{
	const char *what = with_data ? "PAGES" : "ZERO";
	if (len < 8)
		return fail(err, errlen, -EINVAL, "%s message of %zu bytes: too short", what, len);
	uint32_t n = get_le32(p);
	if (n == 0 || n > MIG_MAX_RUNS || get_le32(p + 4))
		return fail(err, errlen, -EINVAL, "%s message: %u runs (1..%u, reserved 0)", what, n,
			    MIG_MAX_RUNS);
	size_t head = mig_runs_len(n);
	if (len < head)
		return fail(err, errlen, -EINVAL, "%s message: %u runs do not fit in %zu bytes", what,
			    n, len);
	uint64_t total = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t first = get_le64(p + 8 + 16 * (size_t)i);
		uint64_t count = get_le64(p + 16 + 16 * (size_t)i);
		if (count == 0 || first >= npages || count > npages - first)
			return fail(err, errlen, -EINVAL,
				    "%s message: run %u (pages %llu+%llu) is not within guest "
				    "memory's %llu pages",
				    what, i, (unsigned long long)first, (unsigned long long)count,
				    (unsigned long long)npages);
		out[i].first = first;
		out[i].count = count;
		total += count; /* <= n * npages: no overflow for sane npages */
		if (total > npages)
			return fail(err, errlen, -EINVAL, "%s message: more pages than guest memory",
				    what);
	}
	size_t want = with_data ? head + (size_t)total * 4096u : head;
	if (len != want)
		return fail(err, errlen, -EINVAL,
			    "%s message: %zu bytes where its %u runs of %llu pages need %zu", what,
			    len, n, (unsigned long long)total, want);
	*nruns = n;
	if (data)
		*data = with_data ? p + head : NULL;
	return 0;
}

void mig_error_text(const uint8_t *p, size_t len, char *out, size_t size)
{
	size_t n = len < size - 1 ? len : size - 1;
	for (size_t i = 0; i < n; i++)
		out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
	out[n] = 0;
}

bool mig_page_is_zero(const void *p)
{
	const uint64_t *q = p;
	for (size_t i = 0; i < 4096 / 8; i += 8) {
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] | q[i + 6] |
		    q[i + 7])
			return false;
	}
	return true;
}

/* ---- HELLO's migration section --------------------------------------------- */

void mig_hello_write(const struct mig_hello *h, struct snap_writer *w)
{
	snap_writer_section_begin(w, MIG_SECTION_ID, MIG_SECTION_VERSION);
	snap_put_u64(w, h->mem_size);
	snap_put_u32(w, h->page_size);
	snap_put_u32(w, h->mode);
	snap_writer_section_end(w);
}

int mig_hello_read(const struct snap_reader *rd, struct mig_hello *h, char *err, size_t errlen)
{
	uint32_t v;
	const uint8_t *p;
	size_t len;
	if (snap_reader_find(rd, MIG_SECTION_ID, &v, &p, &len))
		return fail(err, errlen, -EINVAL, "HELLO has no \"%s\" section", MIG_SECTION_ID);
	if (v != MIG_SECTION_VERSION)
		return fail(err, errlen, -ENOTSUP, "HELLO's \"%s\" section is version %u (this visor "
				  "reads %u)", MIG_SECTION_ID, v, MIG_SECTION_VERSION);
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	h->mem_size = snap_get_u64(&c);
	h->page_size = snap_get_u32(&c);
	h->mode = snap_get_u32(&c);
	int r = snap_cursor_done(&c, MIG_SECTION_ID, err, errlen);
	if (r)
		return r;
	if (h->page_size != 4096)
		return fail(err, errlen, -EINVAL, "page size %u (visor migrates 4096-byte pages)",
			    h->page_size);
	if (!h->mem_size || h->mem_size % 4096)
		return fail(err, errlen, -EINVAL, "guest memory of %llu bytes",
			    (unsigned long long)h->mem_size);
	if (h->mode >= MIG_MODE_MAX)
		return fail(err, errlen, -EINVAL, "unknown migration mode %u", h->mode);
	return 0;
}

/* ---- the destination's state machine ------------------------------------- */

void mig_rx_init(struct mig_rx *rx)
{
	memset(rx, 0, sizeof(*rx));
	rx->phase = MIG_RX_HELLO;
}

void mig_rx_free(struct mig_rx *rx)
{
	free(rx->written);
	rx->written = NULL;
	free(rx->pending);
	rx->pending = NULL;
}

bool mig_rx_pending(const struct mig_rx *rx, uint64_t page)
{
	if (!rx->pending || page >= rx->npages)
		return false;
	return __atomic_load_n(&rx->pending[page / 8], __ATOMIC_ACQUIRE) & (1u << (page % 8));
}

__attribute__((format(printf, 3, 4))) static int rx_fail(struct mig_rx *rx, int rc,
							  const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rx->err, sizeof(rx->err), fmt, ap);
	va_end(ap);
	rx->phase = MIG_RX_FAILED;
	return rc;
}

static const char *phase_wants(enum mig_rx_phase ph)
{
	switch (ph) {
	case MIG_RX_HELLO:
		return "HELLO";
	case MIG_RX_BUILD:
		return "nothing until the machine is built";
	case MIG_RX_MEMORY:
		return "memory or STATE";
	case MIG_RX_STATE:
		return "nothing until the state is applied";
	case MIG_RX_GO:
		return "GO";
	case MIG_RX_DONE:
		return "nothing (done)";
	case MIG_RX_FAILED:
		break;
	}
	return "nothing (failed)";
}

static int rx_hello(struct mig_rx *rx, const uint8_t *p, uint32_t len)
{
	struct snap_reader rd;
	char e[256];
	if (snap_reader_open(p, len, &rd, e, sizeof(e)))
		return rx_fail(rx, -EINVAL, "HELLO: %s", e);
	if (snap_reader_find(&rd, SNAP_CONFIG_ID, NULL, NULL, NULL))
		return rx_fail(rx, -EINVAL, "HELLO has no \"%s\" section", SNAP_CONFIG_ID);
	struct mig_hello h;
	if (mig_hello_read(&rd, &h, e, sizeof(e)))
		return rx_fail(rx, -EINVAL, "HELLO: %s", e);
	rx->mem_size = h.mem_size;
	rx->npages = h.mem_size / 4096;
	rx->mode = h.mode;
	rx->phase = MIG_RX_BUILD;
	return MIG_RX_DO_BUILD;
}

int mig_rx_built(struct mig_rx *rx, struct guest_mem *mem)
{
	if (rx->phase != MIG_RX_BUILD)
		return rx_fail(rx, -EINVAL, "a machine was built out of turn");
	if (!mem || mem->size != rx->mem_size)
		return rx_fail(rx, -EINVAL, "the machine built has %llu bytes of memory, the "
				 "source %llu",
				 (unsigned long long)(mem ? mem->size : 0),
				 (unsigned long long)rx->mem_size);
	rx->written = calloc((size_t)((rx->npages + 7) / 8), 1);
	if (!rx->written)
		return rx_fail(rx, -ENOMEM, "out of memory");
	rx->mem = mem;
	rx->phase = MIG_RX_MEMORY;
	return 0;
}

void mig_rx_applied(struct mig_rx *rx)
{
	if (rx->phase == MIG_RX_STATE)
		rx->phase = MIG_RX_GO;
}

/* The guest address of byte @off of guest memory (its regions in order). */
static uint64_t off_gpa(const struct guest_mem *m, uint64_t off)
{
	for (int i = 0; i < m->nregions; i++) {
		uint64_t start = (uint64_t)(m->regions[i].hva - m->base);
		if (off >= start && off - start < m->regions[i].size)
			return m->regions[i].gpa + (off - start);
	}
	return off;
}

void mig_verify_crcs(const uint8_t *base, uint64_t first, uint32_t count, uint8_t *out)
{
	for (uint32_t i = 0; i < count; i++)
		put_le32(out + 4u * i, snap_crc32(base + (first + i) * 4096, 4096));
}

/* VERIFY: this side's copy of the pages must match the source's CRCs (the
 * source is paused, its last pass sent).  A difference is a bug in dirty
 * tracking or the stream: the VM must not run on a copy that differs. */
static int rx_verify(struct mig_rx *rx, const uint8_t *p, uint32_t len)
{
	if (len < MIG_VERIFY_HDR)
		return rx_fail(rx, -EINVAL, "VERIFY message of %u bytes", len);
	uint64_t first = get_le64(p);
	uint32_t count = get_le32(p + 8);
	if (get_le32(p + 12) || !count || count > MIG_VERIFY_PAGES ||
	    len != MIG_VERIFY_HDR + 4ull * count || first > rx->npages || count > rx->npages - first)
		return rx_fail(rx, -EINVAL, "VERIFY of %u pages from page %llu (of %llu) in %u bytes",
			       count, (unsigned long long)first, (unsigned long long)rx->npages, len);
	uint8_t crc[4];
	uint64_t bad = 0, first_bad = 0;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t pg = first + i;
		mig_verify_crcs(rx->mem->base, pg, 1, crc);
		if (!memcmp(crc, p + MIG_VERIFY_HDR + 4u * i, 4))
			continue;
		if (!bad++)
			first_bad = pg;
		if (bad <= 16)
			log_error("migration verify: the page at guest address 0x%llx differs "
				  "(source CRC %08x, here %08x%s)",
				  (unsigned long long)off_gpa(rx->mem, pg * 4096),
				  get_le32(p + MIG_VERIFY_HDR + 4u * i), get_le32(crc),
				  rx->written[pg / 8] & (1u << (pg % 8)) ? "" : ", never sent with data");
	}
	rx->verified += count;
	rx->verify_bad += bad;
	if (bad)
		return rx_fail(rx, -EIO,
			       "verify: guest memory here differs from the source's in %llu of "
			       "%u pages (the first at guest address 0x%llx)",
			       (unsigned long long)bad, count,
			       (unsigned long long)off_gpa(rx->mem, first_bad * 4096));
	return MIG_RX_CONTINUE;
}

static int rx_pages(struct mig_rx *rx, const uint8_t *p, uint32_t len, bool data)
{
	struct mig_run *runs = malloc(MIG_MAX_RUNS * sizeof(*runs));
	if (!runs)
		return rx_fail(rx, -ENOMEM, "out of memory");
	uint32_t n;
	const uint8_t *d;
	char e[256];
	if (mig_runs_decode(p, len, data, rx->npages, runs, &n, &d, e, sizeof(e))) {
		free(runs);
		return rx_fail(rx, -EINVAL, "%s", e);
	}
	uint8_t *base = rx->mem->base;
	if (rx->postcopy) {
		int r = 0;
		for (uint32_t i = 0; i < n && !r; i++) {
			for (uint64_t pg = runs[i].first;
			     pg < runs[i].first + runs[i].count && !r; pg++) {
				const uint8_t *src = data ? d : NULL;
				if (data)
					d += 4096;
				if (!mig_rx_pending(rx, pg))
					continue; /* in already: pushed and asked for */
				if ((r = rx->install(rx->install_ctx, pg, src)))
					break;
				/* installed first, then no longer pending: a fault
				 * thread that sees it clear finds the page there */
				__atomic_fetch_and(&rx->pending[pg / 8], (uint8_t)~(1u << (pg % 8)),
						   __ATOMIC_RELEASE);
				rx->npending--;
				if (data)
					rx->pages_data++;
				else
					rx->pages_zero++;
			}
		}
		free(runs);
		if (r)
			return rx_fail(rx, r, "post-copy: cannot install a page: %s", strerror(-r));
		return MIG_RX_CONTINUE;
	}
	for (uint32_t i = 0; i < n; i++) {
		for (uint64_t pg = runs[i].first; pg < runs[i].first + runs[i].count; pg++) {
			uint8_t *dst = base + pg * 4096;
			uint8_t bit = (uint8_t)(1u << (pg % 8));
			if (data) {
				memcpy(dst, d, 4096);
				d += 4096;
				rx->written[pg / 8] |= bit;
				rx->pages_data++;
			} else {
				/* fresh anonymous memory reads as zero: only a page
				 * written earlier needs clearing */
				if (rx->written[pg / 8] & bit) {
					memset(dst, 0, 4096);
					rx->written[pg / 8] &= (uint8_t)~bit;
				}
				rx->pages_zero++;
			}
		}
	}
	free(runs);
	return MIG_RX_CONTINUE;
}

/* POSTCOPY: u64 count, then (npages + 7) / 8 bytes of bitmap. */
static int rx_postcopy(struct mig_rx *rx, const uint8_t *p, uint32_t len)
{
	size_t bytes = (size_t)((rx->npages + 7) / 8);
	if (len != 8 + bytes)
		return rx_fail(rx, -EINVAL, "POSTCOPY of %u bytes (%zu for %llu pages)", len,
			       8 + bytes, (unsigned long long)rx->npages);
	uint64_t count = get_le64(p), set = 0;
	const uint8_t *b = p + 8;
	for (size_t i = 0; i < bytes; i++)
		set += (uint64_t)__builtin_popcount(b[i]);
	if (rx->npages % 8 && (b[bytes - 1] >> (rx->npages % 8)))
		return rx_fail(rx, -EINVAL, "POSTCOPY names pages past guest memory");
	if (set != count)
		return rx_fail(rx, -EINVAL, "POSTCOPY says %llu pages, its bitmap %llu",
			       (unsigned long long)count, (unsigned long long)set);
	rx->pending = malloc(bytes ? bytes : 1);
	if (!rx->pending)
		return rx_fail(rx, -ENOMEM, "out of memory");
	memcpy(rx->pending, b, bytes);
	rx->npending = count;
	rx->postcopy = true;
	return MIG_RX_DO_POSTCOPY;
}

int mig_rx_msg(struct mig_rx *rx, const struct mig_hdr *h, const uint8_t *p)
{
	rx->msgs++;
	if (h->type == MIG_MSG_ERROR) {
		mig_error_text(p, h->len, rx->err, sizeof(rx->err));
		rx->phase = MIG_RX_FAILED;
		return MIG_RX_PEER_ERROR;
	}
	bool ok = false, page_msg = h->type == MIG_MSG_PAGES || h->type == MIG_MSG_ZERO;
	switch (rx->phase) {
	case MIG_RX_HELLO:
		ok = h->type == MIG_MSG_HELLO;
		break;
	case MIG_RX_MEMORY:
		ok = h->type == MIG_MSG_PASS || h->type == MIG_MSG_STATE ||
		     (h->type == MIG_MSG_VERIFY && !rx->postcopy) ||
		     (page_msg && rx->mode != MIG_MODE_LOCAL) ||
		     (h->type == MIG_MSG_POSTCOPY && !rx->postcopy &&
		      (rx->mode == MIG_MODE_POSTCOPY || rx->mode == MIG_MODE_AUTO));
		break;
	case MIG_RX_STATE:
		ok = page_msg && rx->postcopy;
		break;
	case MIG_RX_GO:
		ok = h->type == MIG_MSG_GO || (page_msg && rx->postcopy);
		break;
	case MIG_RX_DONE:
		ok = rx->postcopy && !rx->end_seen && (page_msg || h->type == MIG_MSG_POSTCOPY_END);
		break;
	default:
		break;
	}
	if (!ok)
		return rx_fail(rx, -EPROTO, "unexpected %s message (expected %s)",
			       mig_msg_name(h->type), phase_wants(rx->phase));
	switch (h->type) {
	case MIG_MSG_HELLO:
		return rx_hello(rx, p, h->len);
	case MIG_MSG_PAGES:
		return rx_pages(rx, p, h->len, true);
	case MIG_MSG_ZERO:
		return rx_pages(rx, p, h->len, false);
	case MIG_MSG_PASS:
		if (h->len != 16)
			return rx_fail(rx, -EINVAL, "PASS message of %u bytes (16)", h->len);
		rx->passes++;
		rx->last_pass = get_le32(p);
		/* every pass but the last (whose end is the state) is answered:
		 * the source measures what this side takes, not what its socket
		 * buffers hold, and switches over with nothing queued */
		return rx->last_pass == UINT32_MAX ? MIG_RX_CONTINUE : MIG_RX_DO_PASS_DONE;
	case MIG_MSG_STATE: {
		struct snap_reader rd;
		char e[256];
		if (snap_reader_open(p, h->len, &rd, e, sizeof(e)))
			return rx_fail(rx, -EINVAL, "STATE: %s", e);
		rx->phase = MIG_RX_STATE;
		return MIG_RX_DO_APPLY;
	}
	case MIG_MSG_GO:
		if (h->len)
			return rx_fail(rx, -EINVAL, "GO with a payload");
		rx->phase = MIG_RX_DONE;
		return MIG_RX_DO_RUN;
	case MIG_MSG_POSTCOPY:
		return rx_postcopy(rx, p, h->len);
	case MIG_MSG_VERIFY:
		return rx_verify(rx, p, h->len);
	case MIG_MSG_POSTCOPY_END:
		if (h->len)
			return rx_fail(rx, -EINVAL, "POSTCOPY_END with a payload");
		if (rx->npending)
			return rx_fail(rx, -EPROTO, "post-copy ended with %llu pages never sent",
				       (unsigned long long)rx->npending);
		rx->end_seen = true;
		return MIG_RX_DO_FINISH;
	default:
		return rx_fail(rx, -EPROTO, "unexpected %s message", mig_msg_name(h->type));
	}
}
