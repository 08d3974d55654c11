/* SPDX-License-Identifier: MIT */
/*
 * snap_test.h - what the snapshot-state unit tests share: a section
 * written with the real writer, read back with the real reader, so every
 * test decodes exactly the payload a state file would hold.
 *
 * Header-only, static inline; include after test.h (it uses CHECK_EQ).
 */
#ifndef VISOR_TEST_SNAP_TEST_H
#define VISOR_TEST_SNAP_TEST_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/snapshot/format.h"

struct snapfile {
	uint8_t *buf;      /* the whole file (free() it) */
	size_t len;
	const uint8_t *p;  /* the section's payload, in buf */
	size_t plen;
	size_t part;       /* for the caller: where its own part starts */
};

/* Finish @w (one open section already ended) into @f and find section @id
 * in it again through the reader. */
static inline void snapfile_from(struct snap_writer *w, const char *id, struct snapfile *f)
{
	char e[256];
	memset(f, 0, sizeof(*f));
	CHECK_EQ(snap_writer_finish(w, &f->buf, &f->len), 0);
	struct snap_reader r;
	CHECK_EQ(snap_reader_open(f->buf, f->len, &r, e, sizeof(e)), 0);
	CHECK_EQ(snap_reader_find(&r, id, NULL, &f->p, &f->plen), 0);
}

#endif
