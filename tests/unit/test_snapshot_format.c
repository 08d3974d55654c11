/* SPDX-License-Identifier: MIT */
/* snapshot/format: the state file container.  Round trips through the
 * writer and reader, and every refusal of docs/snapshot-format.md, both on
 * plainly damaged files and on "hostile but checksummed" ones (the test
 * recomputes the checksums after the damage, so each rule is shown to hold
 * on its own, not only through the checksum).  Every file handed to the
 * reader sits in a heap block of exactly its length, so a read past the
 * end is a sanitizer report. */
#include "../../src/snapshot/format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/util/bytes.h"
#include "test.h"

/* Offsets of the v1 layout (the documented ones; see the doc's table). */
enum {
	OFF_VERSION = 8,
	OFF_HLEN = 12,
	OFF_FLAGS = 16,
	OFF_COUNT = 20,
	OFF_TOTAL = 24,
	SEC_VERSION = 32,
	SEC_RES0 = 36,
	SEC_LEN = 40,
	SEC_CRC = 48,
	SEC_RES1 = 52,
};

struct file {
	uint8_t *buf;
	size_t len;
};

static const uint8_t blob13[13] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};

/* Three sections: fixed-width fields (24 bytes), 13 bytes (3 of padding),
 * and an empty one. */
static struct file small_file(void)
{
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "config", 1);
	snap_put_u8(&w, 0xa5);
	snap_put_u16(&w, 0xbeef);
	snap_put_u32(&w, 0xdeadbeef);
	snap_put_u64(&w, 0x0123456789abcdefULL);
	snap_put_bytes(&w, "visor", 5);
	snap_put_u32(&w, 7);
	snap_writer_section_end(&w);
	snap_writer_section_begin(&w, "vcpu.0", 2);
	snap_put_bytes(&w, blob13, sizeof(blob13));
	snap_writer_section_end(&w);
	snap_writer_section_begin(&w, "empty_-.Z9", 1);
	snap_writer_section_end(&w);
	struct file f;
	if (snap_writer_finish(&w, &f.buf, &f.len))
		abort();
	return f;
}

/* A copy in a heap block of exactly @len bytes (one byte when @len is 0). */
static uint8_t *exact_copy(const uint8_t *src, size_t len)
{
	uint8_t *b = malloc(len ? len : 1);
	if (!b)
		abort();
	if (len)
		memcpy(b, src, len);
	return b;
}

/* Offset of section @i's header in a well-formed file. */
static size_t section_off(const uint8_t *buf, uint32_t i)
{
	size_t off = 32;
	for (uint32_t k = 0; k < i; k++) {
		uint64_t l = get_le64(buf + off + SEC_LEN);
		off += 56 + (size_t)l + (size_t)((8 - l % 8) % 8);
	}
	return off;
}

/* Recompute the trailer checksum (the "hostile but checksummed" file). */
static void reseal(uint8_t *buf, size_t len)
{
	put_le32(buf + len - 16, snap_crc32(buf, len - 16));
}

/* Recompute section @i's payload checksum, then the trailer's. */
static void reseal_section(uint8_t *buf, size_t len, uint32_t i)
{
	size_t off = section_off(buf, i);
	uint64_t l = get_le64(buf + off + SEC_LEN);
	put_le32(buf + off + SEC_CRC, snap_crc32(buf + off + 56, (size_t)l));
	reseal(buf, len);
}

static char last_err[256];

/* The reader refuses buf[0..len) with @code and a message containing each
 * of the NULL-terminated strings. */
static bool refused(const uint8_t *buf, size_t len, int code, ...)
{
	uint8_t *b = exact_copy(buf, len);
	struct snap_reader r;
	memset(&r, 0xff, sizeof(r));
	int rc = snap_reader_open(b, len, &r, last_err, sizeof(last_err));
	free(b);
	bool ok = rc == code && last_err[0] && !strchr(last_err, '\n') && r.buf == NULL &&
		  r.count == 0;
	va_list ap;
	va_start(ap, code);
	const char *want;
	while ((want = va_arg(ap, const char *)) != NULL)
		ok &= strstr(last_err, want) != NULL;
	va_end(ap);
	if (!ok)
		printf("  refusal: rc %d (want %d), \"%s\"\n", rc, code, last_err);
	return ok;
}

static int open_ok(const uint8_t *buf, size_t len, struct snap_reader *r)
{
	int rc = snap_reader_open(buf, len, r, last_err, sizeof(last_err));
	if (rc)
		printf("  open: %d \"%s\"\n", rc, last_err);
	return rc;
}

TEST(round_trip)
{
	struct file f = small_file();
	CHECK_EQ(f.len, 32 + (56 + 24) + (56 + 16) + (56 + 0) + 16);
	CHECK(!memcmp(f.buf, "VISORSNP", 8));
	CHECK(!memcmp(f.buf + f.len - 8, "VISOREND", 8));
	uint8_t *b = exact_copy(f.buf, f.len);
	struct snap_reader r;
	CHECK_EQ(open_ok(b, f.len, &r), 0);
	CHECK_EQ(r.version, 1);
	CHECK_EQ(r.count, 3);
	CHECK_EQ(r.len, f.len);

	/* iteration: file order, ids, versions, lengths, aligned payloads */
	static const struct {
		const char *id;
		uint32_t version;
		size_t len;
	} want[] = {{"config", 1, 24}, {"vcpu.0", 2, 13}, {"empty_-.Z9", 1, 0}};
	struct snap_iter it = {0};
	struct snap_section s;
	uint32_t n = 0;
	while (snap_reader_next(&r, &it, &s)) {
		CHECK(n < 3);
		if (n >= 3)
			break;
		CHECK_STR(s.id, want[n].id);
		CHECK_EQ(s.index, n);
		CHECK_EQ(s.version, want[n].version);
		CHECK_EQ(s.len, want[n].len);
		CHECK_EQ((size_t)(s.payload - b) % 8, 0);
		CHECK_EQ(s.crc, snap_crc32(s.payload, s.len));
		n++;
	}
	CHECK_EQ(n, 3);
	CHECK(!snap_reader_next(&r, &it, &s)); /* stays at the end */

	/* find and read the fields back */
	uint32_t version = 0;
	const uint8_t *p = NULL;
	size_t len = 0;
	CHECK_EQ(snap_reader_find(&r, "config", &version, &p, &len), 0);
	CHECK_EQ(version, 1);
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	CHECK_EQ(snap_get_u8(&c), 0xa5);
	CHECK_EQ(snap_get_u16(&c), 0xbeef);
	CHECK_EQ(snap_get_u32(&c), 0xdeadbeef);
	CHECK_EQ(snap_get_u64(&c), 0x0123456789abcdefULL);
	char name[5];
	snap_get_bytes(&c, name, sizeof(name));
	CHECK(!memcmp(name, "visor", 5));
	CHECK_EQ(snap_get_u32(&c), 7);
	char err[256] = "";
	CHECK_EQ(snap_cursor_done(&c, "config", err, sizeof(err)), 0);

	CHECK_EQ(snap_reader_find(&r, "vcpu.0", &version, &p, &len), 0);
	CHECK_EQ(version, 2);
	CHECK_EQ(len, 13);
	CHECK(!memcmp(p, blob13, 13));
	CHECK_EQ(snap_reader_find(&r, "empty_-.Z9", NULL, NULL, &len), 0);
	CHECK_EQ(len, 0);
	CHECK_EQ(snap_reader_find(&r, "missing", &version, &p, &len), -ENOENT);
	CHECK_EQ(snap_reader_find(&r, "vcpu", NULL, NULL, NULL), -ENOENT); /* a prefix is not a match */

	/* the documented checksum: zlib's CRC-32 */
	CHECK_EQ(snap_crc32("123456789", 9), 0xcbf43926);
	CHECK_EQ(snap_crc32(NULL, 0), 0);

	/* the writer is deterministic */
	struct file g = small_file();
	CHECK_EQ(g.len, f.len);
	CHECK(!memcmp(g.buf, f.buf, f.len));
	free(g.buf);
	free(b);
	free(f.buf);
}

TEST(no_sections_and_many_sections)
{
	struct snap_writer w;
	snap_writer_init(&w);
	uint8_t *buf;
	size_t len;
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), 0);
	CHECK_EQ(len, 48);
	struct snap_reader r;
	CHECK_EQ(open_ok(buf, len, &r), 0);
	CHECK_EQ(r.count, 0);
	struct snap_iter it = {0};
	struct snap_section s;
	CHECK(!snap_reader_next(&r, &it, &s));
	CHECK_EQ(snap_reader_find(&r, "x", NULL, NULL, NULL), -ENOENT);
	free(buf);

	/* the cap: 4096 sections are fine, the 4097th is refused */
	snap_writer_init(&w);
	char id[32];
	for (int i = 0; i < SNAP_MAX_SECTIONS; i++) {
		snprintf(id, sizeof(id), "dev.%d", i);
		CHECK_EQ(snap_writer_section_begin(&w, id, (uint32_t)i), 0);
		snap_put_u32(&w, (uint32_t)i);
		CHECK_EQ(snap_writer_section_end(&w), 0);
	}
	CHECK_EQ(snap_writer_section_begin(&w, "one.more", 1), -EFBIG);
	CHECK(strstr(snap_writer_error(&w), "4096") != NULL);
	snap_writer_free(&w);

	snap_writer_init(&w);
	for (int i = 0; i < SNAP_MAX_SECTIONS; i++) {
		snprintf(id, sizeof(id), "dev.%d", i);
		snap_writer_section_begin(&w, id, (uint32_t)i);
		snap_put_u32(&w, (uint32_t)i);
		snap_writer_section_end(&w);
	}
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), 0);
	CHECK_EQ(open_ok(buf, len, &r), 0);
	CHECK_EQ(r.count, SNAP_MAX_SECTIONS);
	uint32_t v = 0;
	const uint8_t *p;
	size_t plen;
	CHECK_EQ(snap_reader_find(&r, "dev.4095", &v, &p, &plen), 0);
	CHECK_EQ(v, 4095);
	CHECK_EQ(plen, 4);
	CHECK_EQ(get_le32(p), 4095);
	/* the header claiming one more than the cap */
	put_le32(buf + OFF_COUNT, SNAP_MAX_SECTIONS + 1);
	reseal(buf, len);
	CHECK(refused(buf, len, -EINVAL, "4097 sections", "at most 4096", NULL));
	free(buf);
}

TEST(writer_refuses_misuse)
{
	struct snap_writer w;
	uint8_t *buf = (uint8_t *)1;
	size_t len = 1;
	static const char *const bad_ids[] = {
		"", "has space", "slash/", "colon:", "\x7f", "\xc3\xa9t\xc3\xa9",
		"0123456789012345678901234567890123", /* 34 */
		"0123456789012345678901234567890a",   /* 32: one too many */
	};
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		snap_writer_init(&w);
		CHECK_EQ(snap_writer_section_begin(&w, bad_ids[i], 1), -EINVAL);
		CHECK(strstr(snap_writer_error(&w), "invalid section id") != NULL);
		CHECK_EQ(snap_writer_finish(&w, &buf, &len), -EINVAL);
		CHECK(buf == NULL && len == 0);
	}
	CHECK(snap_id_valid("012345678901234567890123456789a")); /* 31 */
	CHECK(snap_id_valid("a"));

	/* duplicate id */
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "a", 1);
	snap_writer_section_end(&w);
	snap_writer_section_begin(&w, "ab", 1);
	snap_put_u8(&w, 1);
	snap_writer_section_end(&w);
	CHECK_EQ(snap_writer_section_begin(&w, "ab", 2), -EINVAL);
	CHECK(strstr(snap_writer_error(&w), "duplicate section id 'ab'") != NULL);
	/* sticky: nothing afterwards succeeds, the first message stays */
	CHECK_EQ(snap_writer_section_begin(&w, "c", 1), -EINVAL);
	CHECK(strstr(snap_writer_error(&w), "duplicate") != NULL);
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), -EINVAL);
	CHECK(buf == NULL);

	/* calls out of order */
	snap_writer_init(&w);
	snap_put_u32(&w, 1);
	CHECK(strstr(snap_writer_error(&w), "outside a section") != NULL);
	snap_writer_free(&w);
	snap_writer_init(&w);
	CHECK_EQ(snap_writer_section_end(&w), -EINVAL);
	snap_writer_free(&w);
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "a", 1);
	CHECK_EQ(snap_writer_section_begin(&w, "b", 1), -EINVAL);
	snap_writer_free(&w);
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "a", 1);
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), -EINVAL);
	CHECK(strstr(snap_writer_error(&w), "inside a section") != NULL);

	/* over the file cap: refused before a byte of the source is read */
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "big", 1);
	static const uint8_t one = 1;
	snap_put_bytes(&w, &one, SNAP_MAX_FILE);
	CHECK_EQ(w.err, -EFBIG);
	snap_put_bytes(&w, &one, SIZE_MAX); /* no overflow either */
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), -EFBIG);
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "big", 1);
	snap_put_bytes(&w, &one, SIZE_MAX);
	CHECK_EQ(w.err, -EFBIG);
	snap_writer_free(&w);
}

TEST(cursor_bounds)
{
	static const uint8_t p[7] = {1, 2, 3, 4, 5, 6, 7};
	uint8_t *b = exact_copy(p, sizeof(p));
	struct snap_cursor c;
	char err[256];
	snap_cursor_init(&c, b, 7);
	CHECK_EQ(snap_get_u32(&c), 0x04030201);
	CHECK_EQ(snap_get_u64(&c), 0); /* does not fit: nothing read */
	CHECK(c.overrun);
	CHECK_EQ(snap_get_u8(&c), 0); /* would fit, but the cursor is spent */
	uint8_t bytes[2] = {9, 9};
	snap_get_bytes(&c, bytes, 2);
	CHECK(bytes[0] == 0 && bytes[1] == 0);
	CHECK_EQ(snap_cursor_done(&c, "dev.x", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "dev.x") && strstr(err, "8-byte field at offset 4"));

	/* left-over bytes */
	snap_cursor_init(&c, b, 7);
	snap_get_u16(&c);
	CHECK_EQ(snap_cursor_done(&c, "dev.y", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "dev.y") && strstr(err, "5 unexpected bytes"));
	/* exactly consumed */
	snap_get_u32(&c);
	snap_get_u8(&c);
	CHECK_EQ(snap_cursor_done(&c, "dev.z", err, sizeof(err)), 0);
	/* zero-length reads are fine, also at the very end */
	snap_get_bytes(&c, NULL, 0);
	CHECK(!c.overrun);
	/* a length that would wrap the offset is refused */
	snap_cursor_init(&c, b, 7);
	snap_get_u8(&c);
	CHECK_EQ(snap_get_u64(&c), 0);
	CHECK(c.overrun && c.bad_off == 1 && c.bad_want == 8);
	/* empty payload */
	snap_cursor_init(&c, NULL, 0);
	CHECK_EQ(snap_cursor_done(&c, "e", err, sizeof(err)), 0);
	CHECK_EQ(snap_get_u16(&c), 0);
	CHECK_EQ(snap_cursor_done(&c, "e", err, sizeof(err)), -EINVAL);
	free(b);
}

TEST(truncated_at_every_offset)
{
	struct file f = small_file();
	for (size_t n = 0; n < f.len; n++) {
		int want = -EINVAL;
		bool ok = refused(f.buf, n, want, NULL);
		CHECK(ok);
		if (!ok) {
			printf("  (truncated to %zu bytes)\n", n);
			break;
		}
		/* messages say what is wrong */
		if (n < 32)
			CHECK(strstr(last_err, "truncated") != NULL);
	}
	/* truncated with the header's length patched to match and resealed:
	 * still refused, by the structure */
	for (size_t n = 48; n < f.len; n++) {
		uint8_t *b = exact_copy(f.buf, n);
		put_le64(b + OFF_TOTAL, n);
		memcpy(b + n - 8, "VISOREND", 8);
		memset(b + n - 12, 0, 4);
		reseal(b, n);
		CHECK(refused(b, n, -EINVAL, NULL));
		free(b);
	}
	free(f.buf);
}

TEST(every_bit_flip_refused)
{
	struct file f = small_file();
	/* payload ranges (not padding) of the three sections */
	size_t lo[3], hi[3];
	const char *ids[3] = {"'config'", "'vcpu.0'", "'empty_-.Z9'"};
	for (uint32_t i = 0; i < 3; i++) {
		size_t off = section_off(f.buf, i);
		lo[i] = off + 56;
		hi[i] = lo[i] + (size_t)get_le64(f.buf + off + SEC_LEN);
	}
	int in_payload = 0;
	for (size_t byte = 0; byte < f.len; byte++) {
		for (int bit = 0; bit < 8; bit++) {
			uint8_t *b = exact_copy(f.buf, f.len);
			b[byte] ^= (uint8_t)(1u << bit);
			struct snap_reader r;
			int rc = snap_reader_open(b, f.len, &r, last_err, sizeof(last_err));
			CHECK(rc < 0);
			CHECK(last_err[0] != 0);
			for (int i = 0; i < 3; i++) {
				if (byte >= lo[i] && byte < hi[i]) {
					/* only the section's checksum can see it */
					CHECK_EQ(rc, -EBADMSG);
					CHECK(strstr(last_err, "payload checksum mismatch") != NULL);
					CHECK(strstr(last_err, ids[i]) != NULL);
					in_payload++;
				}
			}
			if (rc >= 0)
				printf("  flip of bit %d of byte %zu accepted\n", bit, byte);
			free(b);
		}
	}
	CHECK_EQ(in_payload, (24 + 13) * 8);
	free(f.buf);
}

TEST(wrong_magic_version_flags_header_length)
{
	struct file f = small_file();
	uint8_t *b = exact_copy(f.buf, f.len);
	b[0] = 'X';
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "wrong magic", "not a visor state file", NULL));
	memcpy(b, f.buf, f.len);
	memcpy(b, "VISORSN\0", 8);
	CHECK(refused(b, f.len, -EINVAL, "wrong magic", NULL));

	memcpy(b, f.buf, f.len);
	put_le32(b + OFF_VERSION, 2);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -ENOTSUP, "unsupported format version 2", "reads version 1", NULL));
	put_le32(b + OFF_VERSION, 0);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -ENOTSUP, "version 0", NULL));

	memcpy(b, f.buf, f.len);
	put_le32(b + OFF_FLAGS, 1);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "flags 0x00000001", "must be 0", NULL));
	put_le32(b + OFF_FLAGS, 0x80000000u);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "flags 0x80000000", NULL));

	memcpy(b, f.buf, f.len);
	put_le32(b + OFF_HLEN, 40);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "header length 40", "32 bytes", NULL));
	put_le32(b + OFF_HLEN, 0);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "header length 0", NULL));
	free(b);
	free(f.buf);
}

TEST(total_length_and_trailing_garbage)
{
	struct file f = small_file();
	uint8_t *b = exact_copy(f.buf, f.len);
	/* the header says more than there is */
	put_le64(b + OFF_TOTAL, f.len + 1);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "truncated", "header says", NULL));
	put_le64(b + OFF_TOTAL, UINT64_MAX);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "truncated", NULL));
	/* ... or less */
	put_le64(b + OFF_TOTAL, f.len - 8);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "8 bytes of trailing garbage", NULL));
	put_le64(b + OFF_TOTAL, 0);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "trailing garbage", NULL));
	free(b);

	/* bytes appended after the trailer */
	b = malloc(f.len + 5);
	memcpy(b, f.buf, f.len);
	memset(b + f.len, 0, 5);
	CHECK(refused(b, f.len + 5, -EINVAL, "5 bytes of trailing garbage", NULL));
	/* ... with the length patched: the end magic is not at the end */
	put_le64(b + OFF_TOTAL, f.len + 5);
	CHECK(refused(b, f.len + 5, -EINVAL, "end magic", NULL));
	free(b);

	/* 8 zero bytes between the last section and the trailer, header patched, resealed */
	size_t n = f.len + 8;
	b = malloc(n);
	memcpy(b, f.buf, f.len - 16);
	memset(b + f.len - 16, 0, 8);
	memcpy(b + f.len - 8, f.buf + f.len - 16, 16);
	put_le64(b + OFF_TOTAL, n);
	reseal(b, n);
	CHECK(refused(b, n, -EINVAL, "8 bytes of garbage between the last section", NULL));
	free(b);

	/* a header and trailer too short for the length they claim */
	uint8_t tiny[40];
	memcpy(tiny, f.buf, 32);
	put_le64(tiny + OFF_TOTAL, sizeof(tiny));
	CHECK(refused(tiny, sizeof(tiny), -EINVAL, "no room for the 16-byte trailer", NULL));

	/* the trailer: end magic, reserved field, checksum */
	b = exact_copy(f.buf, f.len);
	b[f.len - 1] ^= 0x20;
	CHECK(refused(b, f.len, -EINVAL, "wrong end magic", NULL));
	memcpy(b, f.buf, f.len);
	put_le32(b + f.len - 12, 1);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "trailer", "reserved", NULL));
	memcpy(b, f.buf, f.len);
	b[f.len - 16] ^= 1;
	CHECK(refused(b, f.len, -EBADMSG, "file checksum mismatch", NULL));
	free(b);
	free(f.buf);
}

TEST(section_count_and_bounds)
{
	struct file f = small_file();
	uint8_t *b = exact_copy(f.buf, f.len);
	/* more sections than the file can hold (each needs a 56-byte header) */
	put_le32(b + OFF_COUNT, 4);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "says 4 sections", "hold at most 3", NULL));
	put_le32(b + OFF_COUNT, UINT32_MAX);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "4294967295 sections", "at most 4096", NULL));
	/* fewer than there are: the rest is garbage before the trailer */
	put_le32(b + OFF_COUNT, 2);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "garbage between the last section", NULL));
	/* a count the headers fit but the payloads do not */
	memcpy(b, f.buf, f.len);
	put_le32(b + OFF_COUNT, 3);
	size_t s1 = section_off(b, 1);
	put_le64(b + s1 + SEC_LEN, 13 + 56); /* swallows the third section's header */
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "section 2: header at offset", "runs past", NULL));

	/* payload lengths running past the end, including ones that would wrap */
	static const uint64_t lens[] = {57, 1000, 1ULL << 31, UINT64_MAX - 2, UINT64_MAX};
	size_t s2 = section_off(f.buf, 2);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		memcpy(b, f.buf, f.len);
		put_le64(b + s2 + SEC_LEN, lens[i]);
		reseal(b, f.len);
		CHECK(refused(b, f.len, -EINVAL, "section 2 'empty_-.Z9'", "runs past the end", NULL));
	}
	free(b);
	/* the length fits but its padding does not: a file whose size is not
	 * a multiple of 8, one section taking all of it */
	size_t n = f.len + 4;
	b = malloc(n);
	memcpy(b, f.buf, f.len - 16);
	memset(b + f.len - 16, 0, 4);
	memcpy(b + n - 16, f.buf + f.len - 16, 16);
	put_le64(b + OFF_TOTAL, n);
	put_le32(b + OFF_COUNT, 1);
	put_le64(b + section_off(f.buf, 0) + SEC_LEN, n - 16 - 32 - 56);
	reseal(b, n);
	CHECK(refused(b, n, -EINVAL, "section 0 'config'", "payload of 156 bytes", "runs past the end",
		      NULL));
	free(b);
	free(f.buf);
}

TEST(padding_reserved_and_ids)
{
	struct file f = small_file();
	uint8_t *b = exact_copy(f.buf, f.len);
	size_t s1 = section_off(f.buf, 1), s2 = section_off(f.buf, 2);
	/* non-zero padding (vcpu.0 has 13 bytes + 3 of padding), checksummed */
	for (size_t k = 0; k < 3; k++) {
		memcpy(b, f.buf, f.len);
		b[s1 + 56 + 13 + k] = 0x80;
		reseal(b, f.len);
		char at[32];
		snprintf(at, sizeof(at), "offset %zu", s1 + 56 + 13 + k);
		CHECK(refused(b, f.len, -EINVAL, "section 1 'vcpu.0'", "padding", at, NULL));
	}
	/* reserved fields */
	static const size_t res[] = {SEC_RES0, SEC_RES1};
	for (size_t k = 0; k < 2; k++) {
		memcpy(b, f.buf, f.len);
		put_le32(b + s2 + res[k], 0x100);
		reseal(b, f.len);
		CHECK(refused(b, f.len, -EINVAL, "section 2 'empty_-.Z9'", "reserved", "0x00000100",
			      NULL));
	}
	/* duplicate ids: section 2 renamed to section 0's id */
	memcpy(b, f.buf, f.len);
	memset(b + s2, 0, 32);
	memcpy(b + s2, "config", 6);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "sections 0 and 2", "'config'", NULL));
	/* bad characters, anywhere in the id */
	static const uint8_t bad[] = {' ', '/', ':', '\n', 0x7f, 0x80, 0xff, '%'};
	for (size_t k = 0; k < sizeof(bad); k++) {
		memcpy(b, f.buf, f.len);
		b[s1 + (k % 6)] = bad[k];
		reseal(b, f.len);
		char want[64];
		snprintf(want, sizeof(want), "id has byte 0x%02x at position %zu", bad[k], k % 6);
		CHECK(refused(b, f.len, -EINVAL, "section 1", want, NULL));
	}
	/* empty id */
	memcpy(b, f.buf, f.len);
	memset(b + s1, 0, 32);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "section 1: empty id", NULL));
	/* no NUL in the 32 bytes */
	memcpy(b, f.buf, f.len);
	memset(b + s1, 'a', 32);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "not NUL-terminated", NULL));
	/* 31 characters are fine (checksummed again) */
	memcpy(b, f.buf, f.len);
	memset(b + s1, 'a', 31);
	reseal(b, f.len);
	struct snap_reader r;
	CHECK_EQ(open_ok(b, f.len, &r), 0);
	CHECK_EQ(snap_reader_find(&r, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL, NULL, NULL), 0);
	/* garbage after the NUL */
	memcpy(b, f.buf, f.len);
	b[s1 + 20] = 'x';
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EINVAL, "'vcpu.0' is not NUL-padded", "position 20", NULL));
	free(b);
	free(f.buf);
}

TEST(checksums)
{
	struct file f = small_file();
	uint8_t *b = exact_copy(f.buf, f.len);
	size_t s0 = section_off(f.buf, 0), s1 = section_off(f.buf, 1);
	/* a changed payload with the trailer recomputed: the section's checksum */
	b[s1 + 56 + 12] ^= 0x40;
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EBADMSG, "section 1 'vcpu.0'", "payload checksum mismatch", NULL));
	/* a wrong stored checksum */
	memcpy(b, f.buf, f.len);
	put_le32(b + s0 + SEC_CRC, get_le32(b + s0 + SEC_CRC) + 1);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EBADMSG, "section 0 'config'", "checksum", NULL));
	/* the empty section's checksum is that of no bytes (0) */
	size_t s2 = section_off(f.buf, 2);
	CHECK_EQ(get_le32(f.buf + s2 + SEC_CRC), 0);
	memcpy(b, f.buf, f.len);
	put_le32(b + s2 + SEC_CRC, 1);
	reseal(b, f.len);
	CHECK(refused(b, f.len, -EBADMSG, "section 2", "checksum", NULL));
	/* a payload change with both checksums recomputed is (of course) accepted:
	 * the checksum is no authentication, range checks of the contents are
	 * the device code's */
	memcpy(b, f.buf, f.len);
	b[s1 + 56] = 0xee;
	reseal_section(b, f.len, 1);
	struct snap_reader r;
	CHECK_EQ(open_ok(b, f.len, &r), 0);
	/* header fields are under the file checksum */
	memcpy(b, f.buf, f.len);
	put_le32(b + s1 + SEC_VERSION, 3);
	CHECK(refused(b, f.len, -EBADMSG, "file checksum mismatch", NULL));
	free(b);
	free(f.buf);
}

TEST(size_cap)
{
	/* over 1 GiB: refused before anything is read (the mapping is never
	 * touched, so costs no memory) */
	size_t n = (size_t)SNAP_MAX_FILE + 1;
	uint8_t *big = mmap(NULL, n, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	CHECK(big != MAP_FAILED);
	if (big != MAP_FAILED) {
		struct snap_reader r;
		CHECK_EQ(snap_reader_open(big, n, &r, last_err, sizeof(last_err)), -EFBIG);
		CHECK(strstr(last_err, "1 GiB") != NULL);
		munmap(big, n);
	}
	struct snap_reader r;
	CHECK_EQ(snap_reader_open(NULL, 0, &r, last_err, sizeof(last_err)), -EINVAL);
	CHECK(strstr(last_err, "truncated: 0 bytes") != NULL);
	CHECK_EQ(snap_reader_open(NULL, 5, &r, last_err, sizeof(last_err)), -EINVAL);
	/* a reader that failed is empty */
	struct snap_iter it = {0};
	struct snap_section s;
	CHECK(!snap_reader_next(&r, &it, &s));
}

/* Files: regular files only, the cap checked before reading; describe. */
static char dir[] = "/tmp/visor-test-snap.XXXXXX";

/* DIR/NAME in @b (the directory made on first use). */
static const char *path_of(char b[128], const char *name)
{
	return test_tmp_path(dir, b, 128, name);
}

TEST(file_read_and_describe)
{
	struct file f = small_file();
	char pb[128], fb[128], mb[128], bb[128], eb[128];
	const char *p = path_of(pb, "state");
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, f.buf, f.len), (ssize_t)f.len);
	close(fd);
	uint8_t *buf;
	size_t len;
	char err[256];
	CHECK_EQ(snap_file_read(p, &buf, &len, err, sizeof(err)), 0);
	CHECK_EQ(len, f.len);
	CHECK(!memcmp(buf, f.buf, f.len));
	struct snap_reader r;
	CHECK_EQ(open_ok(buf, len, &r), 0);
	char *text = NULL;
	size_t tlen = 0;
	FILE *out = open_memstream(&text, &tlen);
	snap_describe(&r, out);
	fclose(out);
	CHECK(strstr(text, "format version 1, 256 bytes, 3 sections\n") != NULL);
	CHECK(strstr(text, "SECTION") != NULL);
	char line[128];
	snprintf(line, sizeof(line), "%-31s %8u %12u  crc32 0x%08x ok\n", "vcpu.0", 2u, 13u,
		 snap_crc32(blob13, 13));
	CHECK(strstr(text, line) != NULL);
	CHECK(strstr(text, "empty_-.Z9") != NULL);
	free(text);
	free(buf);

	/* not regular files: refused without blocking (a FIFO) */
	const char *fifo = path_of(fb, "fifo");
	CHECK_EQ(mkfifo(fifo, 0600), 0);
	CHECK_EQ(snap_file_read(fifo, &buf, &len, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "not a regular file");
	CHECK_EQ(snap_file_read(dir, &buf, &len, err, sizeof(err)), -EINVAL);
	CHECK_EQ(snap_file_read(path_of(mb, "missing"), &buf, &len, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "cannot open") != NULL);
	/* over the cap: refused from its size (a sparse file, never read) */
	const char *big = path_of(bb, "big");
	fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, (off_t)SNAP_MAX_FILE + 1), 0);
	close(fd);
	CHECK_EQ(snap_file_read(big, &buf, &len, err, sizeof(err)), -EFBIG);
	CHECK(strstr(err, "1073741825 bytes") && strstr(err, "1 GiB"));
	CHECK(buf == NULL && len == 0);
	/* empty: read, then refused by the reader */
	const char *empty = path_of(eb, "empty");
	fd = open(empty, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	close(fd);
	CHECK_EQ(snap_file_read(empty, &buf, &len, err, sizeof(err)), 0);
	CHECK_EQ(len, 0);
	CHECK(refused(buf, len, -EINVAL, "truncated", NULL));
	free(buf);
	unlink(p);
	unlink(fifo);
	unlink(big);
	unlink(empty);
	rmdir(dir);
	free(f.buf);
}

/*
 * The seed corpus of the fuzz target (tests/fuzz/corpus-snapshot) is what
 * this writer produces for three fixed files; comparing them pins the v1
 * byte layout (a change that alters it must come with a new format
 * version).  VISOR_SNAPSHOT_SEEDS=DIR writes the three files into DIR.
 */
static struct file devices_file(void)
{
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "machine", 1);
	snap_put_u32(&w, 2);         /* vCPUs */
	snap_put_u64(&w, 256 << 20); /* memory */
	snap_writer_section_end(&w);
	for (int i = 0; i < 2; i++) {
		char id[32];
		snprintf(id, sizeof(id), "vcpu.%d", i);
		snap_writer_section_begin(&w, id, 1);
		for (int k = 0; k < 18; k++)
			snap_put_u64(&w, (uint64_t)(i * 100 + k) * 0x0101010101ULL);
		snap_writer_section_end(&w);
	}
	snap_writer_section_begin(&w, "serial.com1", 1);
	static const uint8_t regs[10] = {0, 0x0f, 0xc1, 0x03, 0x0b, 0x60, 0xb0, 0, 0x0c, 0};
	snap_put_bytes(&w, regs, sizeof(regs));
	snap_put_u16(&w, 3);
	snap_put_bytes(&w, "ok\n", 3);
	snap_writer_section_end(&w);
	snap_writer_section_begin(&w, "rtc", 2);
	for (int k = 0; k < 128; k++)
		snap_put_u8(&w, (uint8_t)(k * 7));
	snap_writer_section_end(&w);
	snap_writer_section_begin(&w, "virtio-blk.disk0", 1);
	snap_put_u64(&w, 0x130000000ULL); /* features */
	snap_put_u8(&w, 0x0f);            /* status */
	snap_put_u16(&w, 256);            /* queue size */
	snap_put_u16(&w, 17);             /* last avail */
	snap_writer_section_end(&w);
	struct file f;
	if (snap_writer_finish(&w, &f.buf, &f.len))
		abort();
	return f;
}

static struct file empty_file(void)
{
	struct snap_writer w;
	snap_writer_init(&w);
	struct file f;
	if (snap_writer_finish(&w, &f.buf, &f.len))
		abort();
	return f;
}

TEST(seed_corpus_is_the_v1_layout)
{
	static const struct {
		const char *name;
		struct file (*make)(void);
	} seeds[] = {{"small", small_file}, {"devices", devices_file}, {"empty", empty_file}};
	const char *out = getenv("VISOR_SNAPSHOT_SEEDS");
	const char *corpus = "tests/fuzz/corpus-snapshot";
	struct stat st;
	bool have = stat(corpus, &st) == 0 && S_ISDIR(st.st_mode);
	if (!out && !have)
		printf("  note: %s not found (not run from the repository root): not compared\n",
		       corpus);
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		struct file f = seeds[i].make();
		struct snap_reader r;
		CHECK_EQ(open_ok(f.buf, f.len, &r), 0);
		char p[256];
		if (out) {
			snprintf(p, sizeof(p), "%s/%s", out, seeds[i].name);
			FILE *o = fopen(p, "wb");
			CHECK(o != NULL);
			if (o) {
				CHECK_EQ(fwrite(f.buf, 1, f.len, o), f.len);
				fclose(o);
			}
		} else if (have) {
			snprintf(p, sizeof(p), "%s/%s", corpus, seeds[i].name);
			uint8_t *buf = NULL;
			size_t len = 0;
			char err[256];
			int rc = snap_file_read(p, &buf, &len, err, sizeof(err));
			CHECK_EQ(rc, 0);
			if (rc)
				printf("  %s: %s\n", p, err);
			CHECK_EQ(len, f.len);
			CHECK(buf && len == f.len && !memcmp(buf, f.buf, f.len));
			free(buf);
		}
		free(f.buf);
	}
}

TEST_MAIN()
