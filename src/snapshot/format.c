/* SPDX-License-Identifier: MIT */
#include "format.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../util/bytes.h"
#include "../util/file.h"
#include "../util/str.h"

/* Header fields (offsets from the start of the file). */
enum {
	H_MAGIC = 0,
	H_VERSION = 8,
	H_HEADER_LEN = 12,
	H_FLAGS = 16,
	H_COUNT = 20,
	H_TOTAL_LEN = 24,
};

/* Section header fields (offsets from the section's start). */
enum {
	S_ID = 0,
	S_VERSION = 32,
	S_RESERVED0 = 36,
	S_LEN = 40,
	S_CRC = 48,
	S_RESERVED1 = 52,
};

/* Trailer fields (offsets from the trailer's start). */
enum {
	T_CRC = 0,
	T_RESERVED = 4,
	T_MAGIC = 8,
};

_Static_assert(SNAP_HEADER_LEN == H_TOTAL_LEN + 8, "header layout");
_Static_assert(SNAP_SECTION_HEADER_LEN == S_RESERVED1 + 4, "section header layout");
_Static_assert(SNAP_TRAILER_LEN == T_MAGIC + SNAP_MAGIC_LEN, "trailer layout");
_Static_assert(SNAP_HEADER_LEN % SNAP_ALIGN == 0 && SNAP_SECTION_HEADER_LEN % SNAP_ALIGN == 0,
	       "payloads start 8-byte aligned");
_Static_assert(SNAP_MAX_FILE <= SIZE_MAX && SNAP_MAX_FILE <= UINT32_MAX, "caps fit");

static bool id_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

bool snap_id_valid(const char *id)
{
	size_t n = 0;
	for (; id[n]; n++)
		if (n >= SNAP_ID_MAX || !id_char((uint8_t)id[n]))
			return false;
	return n > 0;
}

uint32_t snap_crc32(const void *p, size_t n)
{
	const Bytef *b = p;
	uLong c = crc32(0L, Z_NULL, 0);
	/* crc32() takes a uInt length: feed it in pieces that surely fit */
	while (n) {
		uInt k = n > (1U << 30) ? (1U << 30) : (uInt)n;
		c = crc32(c, b, k);
		b += k;
		n -= k;
	}
	return (uint32_t)c;
}

/* Bytes of zero padding after a payload of @len bytes. */
static size_t pad_of(uint64_t len)
{
	return (size_t)((SNAP_ALIGN - len % SNAP_ALIGN) % SNAP_ALIGN);
}

/* ---- writer ------------------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static int wfail(struct snap_writer *w, int code,
							const char *fmt, ...)
{
	if (w->err)
		return w->err;
	va_list ap;
	va_start(ap, fmt);
	err_vset(w->msg, sizeof(w->msg), code, fmt, ap);
	va_end(ap);
	w->err = code;
	return code;
}

void snap_writer_init(struct snap_writer *w)
{
	memset(w, 0, sizeof(*w));
}

void snap_writer_free(struct snap_writer *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

const char *snap_writer_error(const struct snap_writer *w)
{
	return w->err ? w->msg : "";
}

/* Room kept after header and payload bytes: the largest padding and the
 * trailer, so a file that got this far can always be finished within
 * SNAP_MAX_FILE. */
#define KEEP_PAYLOAD ((size_t)(SNAP_ALIGN - 1 + SNAP_TRAILER_LEN))
#define KEEP_PADDING ((size_t)SNAP_TRAILER_LEN)

/* Make room for @n more bytes with @keep bytes to spare below
 * SNAP_MAX_FILE.  Returns the offset of the new bytes, or SIZE_MAX after
 * recording an error. */
static size_t grow(struct snap_writer *w, size_t n, size_t keep)
{
	if (w->err)
		return SIZE_MAX;
	size_t end;
	if (__builtin_add_overflow(w->len, n, &end) || end > SNAP_MAX_FILE - keep) {
		wfail(w, -EFBIG, "state file would exceed %llu bytes", (unsigned long long)SNAP_MAX_FILE);
		return SIZE_MAX;
	}
	if (end > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		while (cap < end)
			cap *= 2; /* end <= 1 GiB: no overflow */
		if (cap > SNAP_MAX_FILE)
			cap = SNAP_MAX_FILE;
		uint8_t *b = realloc(w->buf, cap);
		if (!b) {
			wfail(w, -ENOMEM, "out of memory building the state file (%zu bytes)", cap);
			return SIZE_MAX;
		}
		w->buf = b;
		w->cap = cap;
	}
	size_t at = w->len;
	w->len = end;
	return at;
}

int snap_writer_section_begin(struct snap_writer *w, const char *id, uint32_t version)
{
	if (w->err)
		return w->err;
	if (w->open)
		return wfail(w, -EINVAL, "section '%.*s' begun inside another section", SNAP_ID_MAX,
			     id);
	if (!snap_id_valid(id))
		return wfail(w, -EINVAL,
			     "invalid section id '%.*s' (1 to %d of letters, digits, '.', '_', '-')",
			     SNAP_ID_MAX, id, SNAP_ID_MAX);
	if (w->count >= SNAP_MAX_SECTIONS)
		return wfail(w, -EFBIG, "more than %d sections", SNAP_MAX_SECTIONS);
	/* the writer's own buffer: every earlier section is well formed */
	size_t n = strlen(id);
	for (size_t off = SNAP_HEADER_LEN; off < w->len;) {
		const uint8_t *s = w->buf + off;
		if (!memcmp(s + S_ID, id, n) && !s[S_ID + n])
			return wfail(w, -EINVAL, "duplicate section id '%s'", id);
		uint64_t plen = get_le64(s + S_LEN);
		off += SNAP_SECTION_HEADER_LEN + (size_t)plen + pad_of(plen);
	}
	if (w->len == 0 && grow(w, SNAP_HEADER_LEN, KEEP_PAYLOAD) == SIZE_MAX)
		return w->err;
	size_t at = grow(w, SNAP_SECTION_HEADER_LEN, KEEP_PAYLOAD);
	if (at == SIZE_MAX)
		return w->err;
	uint8_t *s = w->buf + at;
	memset(s, 0, SNAP_SECTION_HEADER_LEN);
	memcpy(s + S_ID, id, n);
	put_le32(s + S_VERSION, version);
	w->sec_start = at;
	w->open = true;
	w->count++;
	return 0;
}

void snap_put_bytes(struct snap_writer *w, const void *p, size_t n)
{
	if (w->err)
		return;
	if (!w->open) {
		wfail(w, -EINVAL, "payload written outside a section");
		return;
	}
	size_t at = grow(w, n, KEEP_PAYLOAD);
	if (at != SIZE_MAX && n)
		memcpy(w->buf + at, p, n);
}

void snap_put_str(struct snap_writer *w, const char *s, size_t max)
{
	size_t n = strnlen(s, max < 65535 ? max : 65535);
	snap_put_u16(w, (uint16_t)n);
	snap_put_bytes(w, s, n);
}

void snap_put_u8(struct snap_writer *w, uint8_t v)
{
	snap_put_bytes(w, &v, 1);
}

void snap_put_u16(struct snap_writer *w, uint16_t v)
{
	uint8_t b[2];
	put_le16(b, v);
	snap_put_bytes(w, b, sizeof(b));
}

void snap_put_u32(struct snap_writer *w, uint32_t v)
{
	uint8_t b[4];
	put_le32(b, v);
	snap_put_bytes(w, b, sizeof(b));
}

void snap_put_u64(struct snap_writer *w, uint64_t v)
{
	uint8_t b[8];
	put_le64(b, v);
	snap_put_bytes(w, b, sizeof(b));
}

int snap_writer_section_end(struct snap_writer *w)
{
	if (w->err)
		return w->err;
	if (!w->open)
		return wfail(w, -EINVAL, "section ended without one begun");
	size_t payload = w->sec_start + SNAP_SECTION_HEADER_LEN;
	size_t plen = w->len - payload;
	size_t pad = pad_of(plen);
	size_t at = grow(w, pad, KEEP_PADDING);
	if (at == SIZE_MAX)
		return w->err;
	memset(w->buf + at, 0, pad);
	uint8_t *s = w->buf + w->sec_start;
	put_le64(s + S_LEN, plen);
	put_le32(s + S_CRC, snap_crc32(w->buf + payload, plen));
	w->open = false;
	return 0;
}

int snap_writer_finish(struct snap_writer *w, uint8_t **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	if (!w->err && w->open)
		wfail(w, -EINVAL, "file finished inside a section");
	if (!w->err && w->len == 0)
		grow(w, SNAP_HEADER_LEN, KEEP_PAYLOAD);
	size_t at = grow(w, SNAP_TRAILER_LEN, 0);
	if (at == SIZE_MAX) {
		snap_writer_free(w);
		return w->err;
	}
	uint8_t *h = w->buf;
	memcpy(h + H_MAGIC, SNAP_MAGIC, SNAP_MAGIC_LEN);
	put_le32(h + H_VERSION, SNAP_FORMAT_VERSION);
	put_le32(h + H_HEADER_LEN, SNAP_HEADER_LEN);
	put_le32(h + H_FLAGS, 0);
	put_le32(h + H_COUNT, w->count);
	put_le64(h + H_TOTAL_LEN, w->len);
	uint8_t *t = w->buf + at;
	put_le32(t + T_CRC, snap_crc32(w->buf, at));
	put_le32(t + T_RESERVED, 0);
	memcpy(t + T_MAGIC, SNAP_END_MAGIC, SNAP_MAGIC_LEN);
	*buf = w->buf;
	*len = w->len;
	w->buf = NULL;
	w->len = w->cap = 0;
	w->count = 0;
	return 0;
}

/* ---- reader ------------------------------------------------------------ */

/* A section header's id field: 0 if valid (the id copied to out), else
 * -EINVAL with what is wrong. */
static int check_id(const uint8_t *f, char out[SNAP_ID_FIELD], char *err, size_t errlen,
		    uint32_t index)
{
	size_t n = 0;
	while (n < SNAP_ID_FIELD && f[n])
		n++;
	if (n == 0)
		return err_set(err, errlen, -EINVAL, "section %" PRIu32 ": empty id", index);
	if (n == SNAP_ID_FIELD)
		return err_set(err, errlen, -EINVAL,
			       "section %" PRIu32 ": id is not NUL-terminated (at most %d characters)",
			       index, SNAP_ID_MAX);
	for (size_t i = 0; i < n; i++)
		if (!id_char(f[i]))
			return err_set(err, errlen, -EINVAL,
				       "section %" PRIu32 ": id has byte 0x%02x at position %zu "
				       "(allowed: letters, digits, '.', '_', '-')",
				       index, f[i], i);
	for (size_t i = n + 1; i < SNAP_ID_FIELD; i++)
		if (f[i])
			return err_set(err, errlen, -EINVAL,
				       "section %" PRIu32 ": id '%.*s' is not NUL-padded "
				       "(byte 0x%02x at position %zu)",
				       index, (int)n, (const char *)f, f[i], i);
	memcpy(out, f, n);
	out[n] = 0;
	return 0;
}

struct id_ref {
	const uint8_t *id;
	uint32_t index;
};

static int id_ref_cmp(const void *a, const void *b)
{
	const struct id_ref *x = a, *y = b;
	int c = memcmp(x->id, y->id, SNAP_ID_FIELD);
	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Parse the (already bounds-checked) section header at @off. */
static void section_at(const uint8_t *buf, size_t off, uint32_t index, struct snap_section *s)
{
	const uint8_t *h = buf + off;
	memcpy(s->id, h + S_ID, SNAP_ID_FIELD);
	s->id[SNAP_ID_FIELD - 1] = 0;
	s->index = index;
	s->version = get_le32(h + S_VERSION);
	s->len = (size_t)get_le64(h + S_LEN);
	s->crc = get_le32(h + S_CRC);
	s->payload = h + SNAP_SECTION_HEADER_LEN;
}

static int reader_check(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	/* sizes first: nothing beyond what was just checked is ever read */
	if (len > SNAP_MAX_FILE)
		return err_set(err, errlen, -EFBIG, "file is %zu bytes, over the %llu-byte (1 GiB) limit",
			       len, (unsigned long long)SNAP_MAX_FILE);
	if (len < SNAP_HEADER_LEN)
		return err_set(err, errlen, -EINVAL,
			       "truncated: %zu bytes, shorter than the %d-byte header", len,
			       SNAP_HEADER_LEN);
	if (memcmp(buf + H_MAGIC, SNAP_MAGIC, SNAP_MAGIC_LEN))
		return err_set(err, errlen, -EINVAL,
			       "wrong magic %02x%02x%02x%02x%02x%02x%02x%02x: not a visor state file "
			       "(it starts with \"%s\")",
			       buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7],
			       SNAP_MAGIC);
	uint32_t version = get_le32(buf + H_VERSION);
	if (version != SNAP_FORMAT_VERSION)
		return err_set(err, errlen, -ENOTSUP,
			       "unsupported format version %" PRIu32 " (this visor reads version %d only)",
			       version, SNAP_FORMAT_VERSION);
	uint32_t hlen = get_le32(buf + H_HEADER_LEN);
	if (hlen != SNAP_HEADER_LEN)
		return err_set(err, errlen, -EINVAL,
			       "header length %" PRIu32 ", but a version %d header is %d bytes", hlen,
			       SNAP_FORMAT_VERSION, SNAP_HEADER_LEN);
	uint32_t flags = get_le32(buf + H_FLAGS);
	if (flags)
		return err_set(err, errlen, -EINVAL,
			       "header flags 0x%08" PRIx32 " set; version %d defines none (must be 0)",
			       flags, SNAP_FORMAT_VERSION);
	uint64_t total = get_le64(buf + H_TOTAL_LEN);
	if (total > len)
		return err_set(err, errlen, -EINVAL,
			       "truncated: the header says %" PRIu64 " bytes, the file has %zu", total,
			       len);
	if (total < len)
		return err_set(err, errlen, -EINVAL,
			       "%" PRIu64 " bytes of trailing garbage: the header says %" PRIu64
			       " bytes, the file has %zu",
			       (uint64_t)len - total, total, len);
	if (len < SNAP_MIN_FILE)
		return err_set(err, errlen, -EINVAL,
			       "truncated: %zu bytes leave no room for the %d-byte trailer", len,
			       SNAP_TRAILER_LEN);
	size_t end = len - SNAP_TRAILER_LEN; /* where the trailer starts */
	const uint8_t *t = buf + end;
	if (memcmp(t + T_MAGIC, SNAP_END_MAGIC, SNAP_MAGIC_LEN))
		return err_set(err, errlen, -EINVAL,
			       "wrong end magic at offset %zu (truncated or damaged file)",
			       end + T_MAGIC);
	if (get_le32(t + T_RESERVED))
		return err_set(err, errlen, -EINVAL,
			       "trailer: reserved field at offset %zu is 0x%08" PRIx32 ", must be 0",
			       end + T_RESERVED, get_le32(t + T_RESERVED));
	uint32_t count = get_le32(buf + H_COUNT);
	if (count > SNAP_MAX_SECTIONS)
		return err_set(err, errlen, -EINVAL, "%" PRIu32 " sections, at most %d are allowed",
			       count, SNAP_MAX_SECTIONS);
	size_t room = end - SNAP_HEADER_LEN, need;
	if (__builtin_mul_overflow((size_t)count, (size_t)SNAP_SECTION_HEADER_LEN, &need) ||
	    need > room)
		return err_set(err, errlen, -EINVAL,
			       "the header says %" PRIu32 " sections, but %zu bytes hold at most %zu",
			       count, len, room / SNAP_SECTION_HEADER_LEN);

	/* walk the sections: bounds, ids, reserved fields, padding */
	size_t off = SNAP_HEADER_LEN;
	for (uint32_t i = 0; i < count; i++) {
		if (end - off < SNAP_SECTION_HEADER_LEN)
			return err_set(err, errlen, -EINVAL,
				       "section %" PRIu32 ": header at offset %zu runs past the end of "
				       "the sections (offset %zu)",
				       i, off, end);
		const uint8_t *h = buf + off;
		char id[SNAP_ID_FIELD];
		int r = check_id(h + S_ID, id, err, errlen, i);
		if (r)
			return r;
		static const size_t reserved[] = {S_RESERVED0, S_RESERVED1};
		for (size_t k = 0; k < 2; k++)
			if (get_le32(h + reserved[k]))
				return err_set(err, errlen, -EINVAL,
					       "section %" PRIu32 " '%s': reserved field at offset %zu "
					       "is 0x%08" PRIx32 ", must be 0",
					       i, id, off + reserved[k], get_le32(h + reserved[k]));
		uint64_t plen = get_le64(h + S_LEN);
		size_t avail = end - off - SNAP_SECTION_HEADER_LEN;
		size_t pad = pad_of(plen);
		uint64_t padded;
		if (__builtin_add_overflow(plen, (uint64_t)pad, &padded) || padded > avail)
			return err_set(err, errlen, -EINVAL,
				       "section %" PRIu32 " '%s': payload of %" PRIu64 " bytes at offset "
				       "%zu runs past the end of the sections (%zu bytes left)",
				       i, id, plen, off + SNAP_SECTION_HEADER_LEN, avail);
		size_t p = off + SNAP_SECTION_HEADER_LEN + (size_t)plen;
		for (size_t k = 0; k < pad; k++)
			if (buf[p + k])
				return err_set(err, errlen, -EINVAL,
					       "section %" PRIu32 " '%s': padding byte at offset %zu is "
					       "0x%02x, must be 0",
					       i, id, p + k, buf[p + k]);
		off = p + pad;
	}
	if (off != end)
		return err_set(err, errlen, -EINVAL,
			       "%zu bytes of garbage between the last section (ends at offset %zu) and "
			       "the trailer",
			       end - off, off);

	/* duplicate ids: sorted references, equal neighbours */
	if (count > 1) {
		struct id_ref *ids = calloc(count, sizeof(*ids));
		if (!ids)
			return err_set(err, errlen, -ENOMEM, "out of memory checking section ids");
		off = SNAP_HEADER_LEN;
		for (uint32_t i = 0; i < count; i++) {
			struct snap_section s;
			section_at(buf, off, i, &s);
			ids[i] = (struct id_ref){buf + off + S_ID, i};
			off += SNAP_SECTION_HEADER_LEN + s.len + pad_of(s.len);
		}
		qsort(ids, count, sizeof(*ids), id_ref_cmp);
		int r = 0;
		for (uint32_t i = 1; i < count && !r; i++)
			if (!memcmp(ids[i - 1].id, ids[i].id, SNAP_ID_FIELD))
				r = err_set(err, errlen, -EINVAL,
					    "sections %" PRIu32 " and %" PRIu32 " have the same id '%s'",
					    ids[i - 1].index, ids[i].index, (const char *)ids[i].id);
		free(ids);
		if (r)
			return r;
	}

	/* checksums: each payload, then the whole file */
	off = SNAP_HEADER_LEN;
	for (uint32_t i = 0; i < count; i++) {
		struct snap_section s;
		section_at(buf, off, i, &s);
		uint32_t c = snap_crc32(s.payload, s.len);
		if (c != s.crc)
			return err_set(err, errlen, -EBADMSG,
				       "section %" PRIu32 " '%s': payload checksum mismatch (stored "
				       "0x%08" PRIx32 ", computed 0x%08" PRIx32 ")",
				       i, s.id, s.crc, c);
		off += SNAP_SECTION_HEADER_LEN + s.len + pad_of(s.len);
	}
	uint32_t stored = get_le32(t + T_CRC), c = snap_crc32(buf, end);
	if (stored != c)
		return err_set(err, errlen, -EBADMSG,
			       "file checksum mismatch (stored 0x%08" PRIx32 ", computed 0x%08" PRIx32
			       "): the file is damaged",
			       stored, c);
	return 0;
}

int snap_reader_open(const uint8_t *buf, size_t len, struct snap_reader *r, char *err,
		     size_t errlen)
{
	memset(r, 0, sizeof(*r));
	if (err && errlen)
		err[0] = 0;
	if (!buf && len)
		return err_set(err, errlen, -EINVAL, "no buffer");
	int rc = reader_check(buf, len, err, errlen);
	if (rc)
		return rc;
	r->buf = buf;
	r->len = len;
	r->version = get_le32(buf + H_VERSION);
	r->count = get_le32(buf + H_COUNT);
	return 0;
}

bool snap_reader_next(const struct snap_reader *r, struct snap_iter *it, struct snap_section *s)
{
	if (!r->buf || it->index >= r->count)
		return false;
	if (it->index == 0)
		it->off = SNAP_HEADER_LEN;
	section_at(r->buf, it->off, it->index, s);
	it->off += SNAP_SECTION_HEADER_LEN + s->len + pad_of(s->len);
	it->index++;
	return true;
}

int snap_reader_find(const struct snap_reader *r, const char *id, uint32_t *version,
		     const uint8_t **payload, size_t *len)
{
	struct snap_iter it = {0};
	struct snap_section s;
	while (snap_reader_next(r, &it, &s)) {
		if (strcmp(s.id, id))
			continue;
		if (version)
			*version = s.version;
		if (payload)
			*payload = s.payload;
		if (len)
			*len = s.len;
		return 0;
	}
	return -ENOENT;
}

/* ---- cursor ------------------------------------------------------------ */

void snap_cursor_init(struct snap_cursor *c, const uint8_t *p, size_t len)
{
	memset(c, 0, sizeof(*c));
	c->p = p;
	c->len = len;
}

/* The next @n bytes, or NULL (and the error recorded) if they do not fit. */
static const uint8_t *take(struct snap_cursor *c, size_t n)
{
	if (c->overrun)
		return NULL;
	if (n > c->len - c->off) {
		c->overrun = true;
		c->bad_off = c->off;
		c->bad_want = n;
		return NULL;
	}
	const uint8_t *p = c->p + c->off;
	c->off += n;
	return p;
}

uint8_t snap_get_u8(struct snap_cursor *c)
{
	const uint8_t *p = take(c, 1);
	return p ? p[0] : 0;
}

uint16_t snap_get_u16(struct snap_cursor *c)
{
	const uint8_t *p = take(c, 2);
	return p ? get_le16(p) : 0;
}

uint32_t snap_get_u32(struct snap_cursor *c)
{
	const uint8_t *p = take(c, 4);
	return p ? get_le32(p) : 0;
}

uint64_t snap_get_u64(struct snap_cursor *c)
{
	const uint8_t *p = take(c, 8);
	return p ? get_le64(p) : 0;
}

void snap_get_bytes(struct snap_cursor *c, void *dst, size_t n)
{
	const uint8_t *p = take(c, n);
	if (!n)
		return;
	if (p)
		memcpy(dst, p, n);
	else
		memset(dst, 0, n);
}

int snap_get_str(struct snap_cursor *c, char *out, size_t size)
{
	out[0] = 0;
	uint16_t n = snap_get_u16(c);
	if (c->overrun)
		return -EIO;
	if (n >= size)
		return -E2BIG;
	snap_get_bytes(c, out, n);
	out[n] = 0;
	if (c->overrun) {
		out[0] = 0;
		return -EIO;
	}
	if (strlen(out) != n) {
		out[0] = 0;
		return -EINVAL;
	}
	return n;
}

int snap_cursor_done(const struct snap_cursor *c, const char *what, char *err, size_t errlen)
{
	if (c->overrun)
		return err_set(err, errlen, -EINVAL,
			       "%s: payload too short: %zu bytes, a %zu-byte field at offset %zu does "
			       "not fit",
			       what, c->len, c->bad_want, c->bad_off);
	if (c->off != c->len)
		return err_set(err, errlen, -EINVAL,
			       "%s: %zu unexpected bytes after the last field (payload %zu bytes, "
			       "%zu used)",
			       what, c->len - c->off, c->len, c->off);
	return 0;
}

/* ---- files ------------------------------------------------------------- */

int snap_file_read(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
	*buf = NULL;
	*len = 0;
	uint64_t size;
	int fd = file_open_regular(path, &size);
	if (fd == -EINVAL)
		return err_set(err, errlen, -EINVAL, "not a regular file");
	if (fd < 0)
		return err_set(err, errlen, fd, "cannot open: %s", strerror(-fd));
	if (size > SNAP_MAX_FILE) {
		close(fd);
		return err_set(err, errlen, -EFBIG,
			       "%" PRIu64 " bytes, over the %llu-byte (1 GiB) limit of a state file",
			       size, (unsigned long long)SNAP_MAX_FILE);
	}
	uint8_t *b = malloc(size ? (size_t)size : 1);
	int r = b ? file_read_all(fd, b, (size_t)size) : -ENOMEM;
	close(fd);
	if (r) {
		free(b);
		if (r == -EIO)
			return err_set(err, errlen, r, "cannot read: the file shrank while being read");
		return err_set(err, errlen, r, "cannot read: %s", strerror(-r));
	}
	*buf = b;
	*len = (size_t)size;
	return 0;
}

void snap_describe(const struct snap_reader *r, FILE *out)
{
	fprintf(out, "visor state file, format version %" PRIu32 ", %zu bytes, %" PRIu32 " section%s\n",
		r->version, r->len, r->count, r->count == 1 ? "" : "s");
	if (!r->count)
		return;
	fprintf(out, "%-*s %8s %12s  %s\n", SNAP_ID_MAX, "SECTION", "VERSION", "LENGTH", "CHECKSUM");
	struct snap_iter it = {0};
	struct snap_section s;
	while (snap_reader_next(r, &it, &s))
		fprintf(out, "%-*s %8" PRIu32 " %12zu  crc32 0x%08" PRIx32 " ok\n", SNAP_ID_MAX, s.id,
			s.version, s.len, s.crc);
}
