/* SPDX-License-Identifier: MIT */
/*
 * snapshot/merge.h - `visor snapshot merge BASE DIFF`: fold a Diff
 * snapshot's memory onto the memory of the snapshot it was taken after
 * (docs/snapshot-format.md, "Diff snapshots and merging").
 *
 * The merged memory file is built beside the base's as a temporary file
 * (the base's data extents, then the diff's on top, found with
 * SEEK_DATA/SEEK_HOLE and copied with copy_file_range), made durable and
 * renamed over the base's: the base's name never holds a half-merged
 * file, and a VM running from the old file (mapped private) keeps it.
 * Everything is checked before anything is written.
 */
#ifndef VISOR_SNAPSHOT_MERGE_H
#define VISOR_SNAPSHOT_MERGE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Snapshot directories (DIR/state + DIR/memory, as `visor snapshot`
 * writes them): DIFF must be a Diff taken right after BASE (its base
 * identity is BASE's), both of the same memory size.  Afterwards BASE
 * holds the later snapshot: BASE/memory merged, BASE/state DIFF's state
 * marked Full.  DIFF is not changed.  In between, BASE/state is marked
 * Merging (nobody loads it); a merge that was interrupted is finished by
 * running it again (copying the diff's pages again changes nothing).
 * *@copied: bytes of the diff copied.  0, or -errno with one line in err
 * (nothing changed when a check fails).
 */
int snap_merge_dirs(const char *base_dir, const char *diff_dir, uint64_t *copied, char *err,
		    size_t errlen);

/*
 * Memory files of any names (Firecracker's users keep their own): the
 * merged memory replaces @base_mem.  With @diff_state (may be NULL), the
 * Diff snapshot's state file: checked first (a Diff of this memory size),
 * and once the memory is merged rewritten as Full, so it loads with
 * @base_mem.  No identity check is possible here: which snapshot a bare
 * memory file belongs to is not recorded in it.  0 or -errno with a
 * message.
 */
int snap_merge_files(const char *base_mem, const char *diff_mem, const char *diff_state,
		     uint64_t *copied, char *err, size_t errlen);

#endif
