/* SPDX-License-Identifier: MIT */
/*
 * snapshot/format.h - the container format of a snapshot's state file
 * (docs/snapshot-format.md): a header, named and versioned sections with a
 * checksum each, a trailer with a checksum over the whole file.  Guest
 * memory is never in this file (it has a file of its own).
 *
 * This layer knows nothing of vCPUs or devices: it builds a file from
 * sections (the writer), checks a whole file held in memory before any of
 * it is used (the reader), and gives device code little-endian field
 * helpers to serialise plain fixed-width state field by field (put_* on the
 * writer, get_* on a bounds-checked cursor over one section's payload).
 *
 *   struct snap_writer w;
 *   snap_writer_init(&w);
 *   snap_writer_section_begin(&w, "serial.com1", 1);
 *   snap_put_u8(&w, lcr); snap_put_u16(&w, divisor); ...
 *   snap_writer_section_end(&w);
 *   ...
 *   if (snap_writer_finish(&w, &buf, &len)) -> snap_writer_error(&w)
 *
 *   struct snap_reader r;
 *   if (snap_reader_open(buf, len, &r, err, sizeof(err))) -> refuse, say err
 *   snap_reader_find(&r, "serial.com1", &version, &payload, &plen);
 *   struct snap_cursor c;
 *   snap_cursor_init(&c, payload, plen);
 *   lcr = snap_get_u8(&c); divisor = snap_get_u16(&c); ...
 *   if (snap_cursor_done(&c, "serial.com1", err, sizeof(err))) -> refuse
 *
 * Everything is pure (no I/O) except snap_file_read(), and allocates only
 * the writer's buffer and, briefly, the reader's duplicate-id check.
 */
#ifndef VISOR_SNAPSHOT_FORMAT_H
#define VISOR_SNAPSHOT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SNAP_MAGIC "VISORSNP"     /* first 8 bytes of the file */
#define SNAP_END_MAGIC "VISOREND" /* last 8 bytes of the file */
#define SNAP_MAGIC_LEN 8
#define SNAP_FORMAT_VERSION 1     /* the only format version this code reads and writes */

/* Byte layout of format version 1 (all integers little-endian). */
#define SNAP_HEADER_LEN 32         /* magic, version, header length, flags, count, total length */
#define SNAP_SECTION_HEADER_LEN 56 /* id[32], version, reserved, length, checksum, reserved */
#define SNAP_TRAILER_LEN 16        /* checksum, reserved, end magic */
#define SNAP_MIN_FILE (SNAP_HEADER_LEN + SNAP_TRAILER_LEN)
#define SNAP_ALIGN 8               /* payloads are zero-padded to a multiple of this */

#define SNAP_ID_FIELD 32           /* bytes of the id field */
#define SNAP_ID_MAX 31             /* longest id: the field always holds a NUL */
#define SNAP_MAX_SECTIONS 4096
#define SNAP_MAX_FILE (1ULL << 30) /* 1 GiB, the whole file */

/* True if @id is a valid section id: 1 to SNAP_ID_MAX characters of
 * [A-Za-z0-9._-]. */
bool snap_id_valid(const char *id);

/* CRC-32 (zlib's crc32(), ISO-HDLC) of p[0..n). */
uint32_t snap_crc32(const void *p, size_t n);

/* ---- writer ----------------------------------------------------------- */

/*
 * Builds a state file in memory.  Errors are sticky: the first one (bad or
 * duplicate id, more than SNAP_MAX_SECTIONS sections, a file over
 * SNAP_MAX_FILE, out of memory, calls out of order) is recorded with a
 * message, every later call does nothing, and snap_writer_finish() returns
 * it.  So device code can put all its fields and check once.
 */
struct snap_writer {
	uint8_t *buf;
	size_t len, cap;
	uint32_t count;   /* sections begun */
	size_t sec_start; /* offset of the open section's header */
	bool open;        /* inside section_begin .. section_end */
	int err;          /* first error (negative errno), 0 if none */
	char msg[160];    /* its message */
};

void snap_writer_init(struct snap_writer *w);

/* Start section @id (see snap_id_valid; unique in the file) with its own
 * @version.  0 or the writer's (sticky) error. */
int snap_writer_section_begin(struct snap_writer *w, const char *id, uint32_t version);

/* Append to the open section's payload (little-endian fixed widths). */
void snap_put_u8(struct snap_writer *w, uint8_t v);
void snap_put_u16(struct snap_writer *w, uint16_t v);
void snap_put_u32(struct snap_writer *w, uint32_t v);
void snap_put_u64(struct snap_writer *w, uint64_t v);
void snap_put_bytes(struct snap_writer *w, const void *p, size_t n);
/* A string field: u16 length, then its first min(strlen, @max) bytes (at
 * most 65535), no NUL. */
void snap_put_str(struct snap_writer *w, const char *s, size_t max);

/* Close the open section (length, checksum, padding). */
int snap_writer_section_end(struct snap_writer *w);

/* Complete the file.  On success *@buf (free() it) and *@len receive it
 * and 0 is returned; otherwise the writer's error (-EINVAL: misuse or bad
 * id, -EFBIG: over a cap, -ENOMEM), with snap_writer_error() saying what.
 * Either way the writer holds no buffer afterwards. */
int snap_writer_finish(struct snap_writer *w, uint8_t **buf, size_t *len);

/* The recorded error's message ("" if none). */
const char *snap_writer_error(const struct snap_writer *w);

/* Drop whatever the writer holds (after an error, or instead of finish). */
void snap_writer_free(struct snap_writer *w);

/* ---- reader ----------------------------------------------------------- */

/* A validated state file: a view of the caller's buffer, which must stay
 * alive and unchanged while the reader is used.  Nothing to free. */
struct snap_reader {
	const uint8_t *buf;
	size_t len;
	uint32_t version; /* format version */
	uint32_t count;   /* sections */
};

struct snap_section {
	char id[SNAP_ID_FIELD]; /* NUL-terminated */
	uint32_t index;         /* position in the file, from 0 */
	uint32_t version;       /* the section's own version */
	const uint8_t *payload; /* into the reader's buffer (8-byte offset) */
	size_t len;
	uint32_t crc;           /* CRC-32 of the payload (verified) */
};

/*
 * Check the whole file buf[0..len) (every rule of docs/snapshot-format.md:
 * sizes, magics, version, flags and reserved fields, section bounds, ids,
 * padding, checksums) and on success make @r a view of it.  Returns 0, or
 * -EINVAL (malformed), -ENOTSUP (a format version this code does not
 * read), -EBADMSG (a checksum does not match), -EFBIG (over SNAP_MAX_FILE),
 * -ENOMEM; with a one-line message in err that names what is wrong.  @r is
 * all zero on error.  Nothing past buf[len) is ever read.
 */
int snap_reader_open(const uint8_t *buf, size_t len, struct snap_reader *r, char *err,
		     size_t errlen);

/* Iterate over the sections in file order:
 *   struct snap_iter it = {0};
 *   while (snap_reader_next(&r, &it, &s)) ... */
struct snap_iter {
	size_t off;
	uint32_t index;
};
bool snap_reader_next(const struct snap_reader *r, struct snap_iter *it, struct snap_section *s);

/* Section @id: 0 and its version, payload and length (any output may be
 * NULL), or -ENOENT. */
int snap_reader_find(const struct snap_reader *r, const char *id, uint32_t *version,
		     const uint8_t **payload, size_t *len);

/* ---- cursor: reading fields of one payload ---------------------------- */

/*
 * Reads fields in order from p[0..len).  A read that does not fit sets
 * the error and returns 0 (bytes: zero-filled) without reading; so does
 * every later read, so a caller may read all its fields and check once
 * with snap_cursor_done().
 */
struct snap_cursor {
	const uint8_t *p;
	size_t len, off;
	bool overrun;
	size_t bad_off, bad_want; /* the first read that did not fit */
};

void snap_cursor_init(struct snap_cursor *c, const uint8_t *p, size_t len);
uint8_t snap_get_u8(struct snap_cursor *c);
uint16_t snap_get_u16(struct snap_cursor *c);
uint32_t snap_get_u32(struct snap_cursor *c);
uint64_t snap_get_u64(struct snap_cursor *c);
void snap_get_bytes(struct snap_cursor *c, void *dst, size_t n);
/* A string field (snap_put_str) into out[size], NUL-terminated.  Its
 * length, or -E2BIG (it would not fit: nothing more is read), -EINVAL (a
 * NUL byte inside), -EIO (the payload ended; the cursor's error is set);
 * out is "" on error. */
int snap_get_str(struct snap_cursor *c, char *out, size_t size);

/* 0 if every read fitted and the payload was consumed exactly; else
 * -EINVAL with a message naming @what (e.g. the section id). */
int snap_cursor_done(const struct snap_cursor *c, const char *what, char *err, size_t errlen);

/* ---- files ------------------------------------------------------------- */

/* Read the state file @path into memory (malloc'd *@buf, free() it).  The
 * path is opened O_NONBLOCK|O_CLOEXEC and refused before any read unless it
 * is a regular file of at most SNAP_MAX_FILE bytes.  0, or -errno with a
 * message (without the path) in err.  The contents are not checked:
 * that is snap_reader_open(). */
int snap_file_read(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen);

/* Print what `visor --describe-snapshot` shows of a validated file. */
void snap_describe(const struct snap_reader *r, FILE *out);

#endif
