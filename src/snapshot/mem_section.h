/* SPDX-License-Identifier: MIT */
/*
 * snapshot/mem_section.h - section "memory": what the memory file that goes
 * with a state file holds (docs/snapshot-format.md, "Memory").
 *
 * A snapshot's memory is Full (the memory file is all of guest RAM) or a
 * Diff (only the pages written since an earlier snapshot, every other page
 * a hole, to be merged onto that snapshot's memory before it can be
 * loaded).  Each snapshot's memory has an identity, 16 random bytes, and a
 * Diff names the identity of the snapshot it was taken after (its base),
 * so `visor snapshot merge` can refuse a diff laid onto the wrong base.
 * A third kind, Merging, marks a base whose merge was interrupted: it is
 * loaded by nobody until the merge is run again.
 *
 * State files written before Diff snapshots existed have no such section:
 * they are Full, with no identity.
 */
#ifndef VISOR_SNAPSHOT_MEM_SECTION_H
#define VISOR_SNAPSHOT_MEM_SECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"

#define SNAP_MEMORY_ID "memory"
#define SNAP_MEMORY_VERSION 1
#define SNAP_MEMORY_LEN 48 /* payload bytes of version 1 */
#define SNAP_MEM_ID_LEN 16

enum snap_mem_kind {
	SNAP_MEM_FULL = 0,    /* all of guest RAM */
	SNAP_MEM_DIFF = 1,    /* the pages written since snapshot @base */
	SNAP_MEM_MERGING = 2, /* a merge of diff @id onto this snapshot (@base) was interrupted */
};

struct snap_mem_info {
	uint8_t kind;                  /* enum snap_mem_kind */
	uint64_t size;                 /* bytes of guest RAM: the memory file's size */
	uint8_t id[SNAP_MEM_ID_LEN];   /* this memory's identity (never all zero) */
	uint8_t base[SNAP_MEM_ID_LEN]; /* Diff: the base's identity; Merging: the base's
					* identity before the merge; Full: zero */
};

/* Write section "memory" for @m. */
void snap_mem_write(const struct snap_mem_info *m, struct snap_writer *w);

/* Decode a "memory" payload: 0, or -EINVAL with a one-line message (an
 * unknown version, a wrong length, a kind, reserved byte, size or identity
 * that is not one a writer produces). */
int snap_mem_decode(const uint8_t *p, size_t len, uint32_t version, struct snap_mem_info *out,
		    char *err, size_t errlen);

/* The memory section of a validated state file: 0 with *@out (a file
 * without one: Full with no identity, *@present false), or -EINVAL with a
 * message.  @present may be NULL. */
int snap_mem_find(const struct snap_reader *rd, struct snap_mem_info *out, bool *present,
		  char *err, size_t errlen);

/* A fresh identity from getrandom (never all zero).  0 or -errno. */
int snap_mem_new_id(uint8_t id[SNAP_MEM_ID_LEN]);
bool snap_mem_id_zero(const uint8_t id[SNAP_MEM_ID_LEN]);
/* @id as 32 lower-case hex digits. */
void snap_mem_id_hex(const uint8_t id[SNAP_MEM_ID_LEN], char out[2 * SNAP_MEM_ID_LEN + 1]);
/* "Full", "Diff" or "Merging". */
const char *snap_mem_kind_name(uint8_t kind);

/* A copy of the validated state file @rd with its memory section replaced
 * by (or, when it has none, added after section "config" as) @m; every
 * other section keeps its id, version, payload and place.  *@buf (free it)
 * / *@len; 0 or -errno with a message. */
int snap_mem_rewrite(const struct snap_reader *rd, const struct snap_mem_info *m, uint8_t **buf,
		     size_t *len, char *err, size_t errlen);

#endif
