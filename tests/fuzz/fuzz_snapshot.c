/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the snapshot state file reader (snapshot/format.c),
 * which reads a file the user names (`visor --describe-snapshot`, and
 * later snapshot loads).
 *
 * Each input is checked twice: as it is, and "resealed" (the header's
 * total length set to the input's length and every checksum that can be
 * located recomputed), so that mutations get past the checksums and reach
 * every structural rule, as a hostile but well-checksummed file would.
 * Beyond crashes, sanitizer reports and leaks, these must hold:
 *   - a refusal is -EINVAL, -ENOTSUP, -EBADMSG or -EFBIG with a one-line
 *     message, and leaves the reader empty;
 *   - an accepted file iterates to exactly its section count, each payload
 *     inside the file with its checksum right, each section found by id;
 *   - writing the accepted sections again gives the same bytes (the format
 *     has one encoding of a given content);
 *   - a cursor reading a payload in widths the payload itself chooses never
 *     reads outside it and reports success exactly when it read all of it.
 * Seeds: tests/fuzz/corpus-snapshot (valid files of the unit test).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/snapshot/format.h"
#include "../../src/util/bytes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read the payload field by field, widths chosen by its own bytes. */
static void read_fields(const struct snap_section *s)
{
	struct snap_cursor c;
	snap_cursor_init(&c, s->payload, s->len);
	size_t used = 0;
	bool over = false;
	uint8_t tmp[16];
	for (size_t k = 0; k < s->len + 2 && !over; k++) {
		uint8_t sel = k < s->len ? s->payload[k] : 0xff;
		static const size_t widths[8] = {1, 2, 4, 8, 0, 3, 16, 9};
		size_t w = widths[sel & 7];
		switch (sel & 7) {
		case 0: (void)snap_get_u8(&c); break;
		case 1: (void)snap_get_u16(&c); break;
		case 2: (void)snap_get_u32(&c); break;
		case 3: (void)snap_get_u64(&c); break;
		default: snap_get_bytes(&c, tmp, w); break;
		}
		if (w > s->len - used)
			over = true;
		else
			used += w;
		if (c.overrun != over || (!over && c.off != used))
			__builtin_trap();
	}
	char err[256];
	int r = snap_cursor_done(&c, s->id, err, sizeof(err));
	if ((r == 0) != (!over && used == s->len))
		__builtin_trap();
	if (r && (!err[0] || strchr(err, '\n')))
		__builtin_trap();
}

static void check(const uint8_t *data, size_t size)
{
	/* a block of exactly the file's size: reading past it is a report */
	uint8_t *b = malloc(size ? size : 1);
	if (!b)
		return;
	if (size)
		memcpy(b, data, size);
	struct snap_reader r;
	char err[256];
	int rc = snap_reader_open(b, size, &r, err, sizeof(err));
	if (rc) {
		if (rc != -EINVAL && rc != -ENOTSUP && rc != -EBADMSG && rc != -EFBIG && rc != -ENOMEM)
			__builtin_trap();
		if (!err[0] || strchr(err, '\n') || r.buf || r.count)
			__builtin_trap();
		free(b);
		return;
	}
	if (r.version != SNAP_FORMAT_VERSION || r.len != size || r.count > SNAP_MAX_SECTIONS)
		__builtin_trap();

	/* iterate; rebuild with the writer */
	struct snap_writer w;
	snap_writer_init(&w);
	struct snap_iter it = {0};
	struct snap_section s;
	uint32_t n = 0;
	while (snap_reader_next(&r, &it, &s)) {
		if (s.index != n || !snap_id_valid(s.id) || s.payload < b ||
		    s.len > (size_t)(b + size - s.payload) || (size_t)(s.payload - b) % SNAP_ALIGN ||
		    snap_crc32(s.payload, s.len) != s.crc)
			__builtin_trap();
		uint32_t v;
		const uint8_t *p;
		size_t len;
		if (snap_reader_find(&r, s.id, &v, &p, &len) || v != s.version || p != s.payload ||
		    len != s.len)
			__builtin_trap();
		read_fields(&s);
		snap_writer_section_begin(&w, s.id, s.version);
		snap_put_bytes(&w, s.payload, s.len);
		snap_writer_section_end(&w);
		n++;
	}
	if (n != r.count)
		__builtin_trap();
	uint8_t *again;
	size_t again_len;
	if (snap_writer_finish(&w, &again, &again_len) || again_len != size ||
	    memcmp(again, b, size))
		__builtin_trap();
	free(again);
	free(b);
}

/* Fix what a mutation breaks first: the total length and the checksums of
 * whatever sections can be located (bounds checked; the rest as it is). */
static void reseal(uint8_t *b, size_t size)
{
	if (size < SNAP_MIN_FILE)
		return;
	put_le64(b + 24, size);
	size_t end = size - SNAP_TRAILER_LEN, off = SNAP_HEADER_LEN;
	uint32_t count = get_le32(b + 20);
	for (uint32_t i = 0; i < count && end - off >= SNAP_SECTION_HEADER_LEN; i++) {
		uint64_t len = get_le64(b + off + 40);
		size_t room = end - off - SNAP_SECTION_HEADER_LEN;
		if (len > room)
			break;
		put_le32(b + off + 48, snap_crc32(b + off + SNAP_SECTION_HEADER_LEN, (size_t)len));
		size_t pad = (size_t)((SNAP_ALIGN - len % SNAP_ALIGN) % SNAP_ALIGN);
		if (pad > room - len)
			break;
		off += SNAP_SECTION_HEADER_LEN + (size_t)len + pad;
	}
	put_le32(b + end, snap_crc32(b, end));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check(data, size);
	if (size >= SNAP_MIN_FILE && size <= (1u << 20)) {
		uint8_t *copy = malloc(size);
		if (!copy)
			return 0;
		memcpy(copy, data, size);
		reseal(copy, size);
		check(copy, size);
		free(copy);
	}
	return 0;
}
