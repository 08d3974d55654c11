/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the live-migration stream as the destination reads it
 * (migration/stream.c): message headers, payload checksums, and the
 * receiving state machine that writes pages into guest memory.  The bytes
 * come from another host, so every one is hostile.
 *
 * The input is the stream after the preamble.  Its first byte chooses
 * whether the checksums are taken as they are or "resealed" (every header
 * and payload checksum recomputed as the input is walked), so mutations
 * also reach the structural rules behind the checksums, as a hostile but
 * well-checksummed stream would.  When HELLO asks for a machine, a guest
 * memory of the size it names is made (up to 4 MiB; larger ends the
 * input), as the real destination would build one.  Beyond crashes,
 * sanitizer reports and leaks, these must hold:
 *   - a refused message leaves the receiver FAILED with a message, and it
 *     accepts nothing afterwards;
 *   - no page outside guest memory is ever touched (the memory is exactly
 *     the size HELLO gave: ASan sees any write past it);
 *   - a zero run never leaves a page it names non-zero.
 * Seeds: tests/fuzz/corpus-migration.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/mem/guest_mem.h"
#include "../../src/migration/stream.h"
#include "../../src/snapshot/format.h"
#include "../../src/util/bytes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Post-copy's page installation, as UFFDIO_COPY / ZEROPAGE would do it:
 * the page must be inside guest memory and still missing (pending). */
static struct guest_mem *fz_mem;
static int fz_install(void *ctx, uint64_t pg, const uint8_t *src)
{
	struct mig_rx *rx = ctx;
	if (pg >= rx->npages || !mig_rx_pending(rx, pg))
		__builtin_trap();
	if (src)
		memcpy(fz_mem->base + pg * 4096, src, 4096);
	else
		memset(fz_mem->base + pg * 4096, 0, 4096);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool reseal = data[0] & 1;
	data++;
	size--;
	struct mig_rx rx;
	mig_rx_init(&rx);
	struct guest_mem m;
	memset(&m, 0, sizeof(m));
	bool have_mem = false;
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	size_t off = 0;
	while (size - off >= MIG_HDR_LEN) {
		uint8_t *hb = copy + off;
		uint32_t len = get_le32(hb + 4);
		size_t plen = len <= size - off - MIG_HDR_LEN ? len : size - off - MIG_HDR_LEN;
		if (reseal) {
			put_le32(hb + 4, (uint32_t)plen);
			put_le32(hb + 8, snap_crc32(hb + MIG_HDR_LEN, plen));
			put_le32(hb + 12, snap_crc32(hb, 12));
		}
		struct mig_hdr h;
		char err[256];
		if (mig_hdr_decode(hb, &h, err, sizeof(err)))
			break;
		if (h.len > size - off - MIG_HDR_LEN)
			break; /* the stream ends inside the payload: a read error */
		const uint8_t *p = hb + MIG_HDR_LEN;
		if (mig_payload_check(&h, p, err, sizeof(err)))
			break;
		off += MIG_HDR_LEN + h.len;
		enum mig_rx_phase before = rx.phase;
		int a = mig_rx_msg(&rx, &h, p);
		if (a < 0) {
			if (rx.phase != MIG_RX_FAILED || !rx.err[0])
				__builtin_trap();
			struct mig_hdr again = {.type = MIG_MSG_PASS, .len = 16};
			uint8_t z[16] = {0};
			if (mig_rx_msg(&rx, &again, z) >= 0 && rx.phase != MIG_RX_FAILED)
				__builtin_trap();
			break;
		}
		if (a == MIG_RX_PEER_ERROR)
			break;
		if (a == MIG_RX_DO_BUILD) {
			if (rx.mem_size > (4u << 20) || have_mem)
				break;
			if (guest_mem_init(&m, rx.mem_size, 1ull << 32, 1ull << 32))
				break;
			have_mem = true;
			if (mig_rx_built(&rx, &m))
				break;
		} else if (a == MIG_RX_DO_POSTCOPY) {
			fz_mem = &m;
			rx.install = fz_install;
			rx.install_ctx = &rx;
		} else if (a == MIG_RX_DO_FINISH) {
			if (rx.npending)
				__builtin_trap();
			break;
		} else if (a == MIG_RX_DO_APPLY) {
			mig_rx_applied(&rx);
		} else if (a == MIG_RX_DO_RUN) {
			break;
		}
		if (h.type == MIG_MSG_ZERO && a == MIG_RX_CONTINUE && before == MIG_RX_MEMORY &&
		    !rx.postcopy) {
			/* every page a zero run named reads zero now */
			uint32_t n = get_le32(p);
			for (uint32_t i = 0; i < n; i++) {
				uint64_t first = get_le64(p + 8 + 16 * (size_t)i);
				uint64_t count = get_le64(p + 16 + 16 * (size_t)i);
				for (uint64_t pg = first; pg < first + count; pg++)
					for (size_t b = 0; b < 4096; b += 512)
						if (m.base[pg * 4096 + b])
							__builtin_trap();
			}
		}
	}
	free(copy);
	mig_rx_free(&rx);
	if (have_mem)
		guest_mem_destroy(&m);
	return 0;
}
