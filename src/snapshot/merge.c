/* SPDX-License-Identifier: MIT */
/*
 * snapshot/merge.c - `visor snapshot merge`; see merge.h.
 */
#include "merge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/file.h"
#include "../util/str.h"
#include "format.h"
#include "mem_section.h"

/* The file names of a snapshot directory (cli.h: CLI_SNAPSHOT_*). */
#define DIR_STATE "state"
#define DIR_MEMORY "memory"

/* ---- memory files ---- */

struct mem_pair {
	int base_fd, diff_fd;
	uint64_t size;
};

/* Open @path as a memory file: a regular file (never blocking on a FIFO).
 * @what names it in messages. */
static int open_mem(const char *path, const char *what, uint64_t *size, struct stat *sb,
		    char *err, size_t errlen)
{
	int fd = file_open_regular(path, size);
	if (fd < 0)
		return err_set(err, errlen, fd, "%s memory file %s: %s", what, path,
			       fd == -EINVAL ? "not a regular file" : strerror(-fd));
	if (fstat(fd, sb)) {
		int r = -errno;
		close(fd);
		return err_set(err, errlen, r, "%s memory file %s: %s", what, path, strerror(-r));
	}
	return fd;
}

/* Both memory files open and checked: regular, not the same file, the
 * same size (@expect too, when not 0), and the diff's holes visible. */
static int mem_open(const char *base, const char *diff, uint64_t expect, struct mem_pair *p,
		    char *err, size_t errlen)
{
	struct stat bs, ds;
	uint64_t bsize, dsize;
	p->base_fd = p->diff_fd = -1;
	int r = open_mem(base, "base", &bsize, &bs, err, errlen);
	if (r < 0)
		return r;
	p->base_fd = r;
	r = open_mem(diff, "diff", &dsize, &ds, err, errlen);
	if (r < 0)
		goto fail;
	p->diff_fd = r;
	r = -EINVAL;
	if (bs.st_dev == ds.st_dev && bs.st_ino == ds.st_ino) {
		err_set(err, errlen, r, "%s and %s are the same file", base, diff);
		goto fail;
	}
	if (bsize != dsize) {
		err_set(err, errlen, r,
			"the base memory file %s is %llu bytes, the diff %s %llu: not the same "
			"memory size",
			base, (unsigned long long)bsize, diff, (unsigned long long)dsize);
		goto fail;
	}
	if (expect && bsize != expect) {
		err_set(err, errlen, r, "the memory files are %llu bytes, the snapshots' memory %llu",
			(unsigned long long)bsize, (unsigned long long)expect);
		goto fail;
	}
	/* A file system that cannot report holes shows a sparse file as one
	 * extent of data: the diff's holes would overwrite the base with
	 * zeros.  Such a file has fewer blocks than its data extent. */
	off_t d = lseek(p->diff_fd, 0, SEEK_DATA);
	off_t h = d == 0 ? lseek(p->diff_fd, 0, SEEK_HOLE) : -1;
	if (d == 0 && h == (off_t)dsize && (uint64_t)ds.st_blocks * 512 < dsize) {
		err_set(err, errlen, -EOPNOTSUPP,
			"the file system of %s does not report holes (SEEK_HOLE), so the pages "
			"the diff holds cannot be told from the rest",
			diff);
		goto fail;
	}
	p->size = bsize;
	return 0;
fail:
	if (p->base_fd >= 0)
		close(p->base_fd);
	if (p->diff_fd >= 0)
		close(p->diff_fd);
	p->base_fd = p->diff_fd = -1;
	return r;
}

static void mem_close(struct mem_pair *p)
{
	if (p->base_fd >= 0)
		close(p->base_fd);
	if (p->diff_fd >= 0)
		close(p->diff_fd);
	p->base_fd = p->diff_fd = -1;
}

/* Copy [off, off+len) of @in to the same offset of @out: copy_file_range
 * (in the kernel; a reflink where the file system can), else read/write. */
static int copy_range(int in, int out, uint64_t off, uint64_t len)
{
	const size_t bufsize = 1 << 20;
	uint8_t *buf = NULL;
	int r = 0;
	while (len && !r) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
		ssize_t n;
		if (!buf) {
			loff_t io = (loff_t)off, oo = (loff_t)off;
			n = copy_file_range(in, &io, out, &oo, chunk, 0);
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				      errno == EOPNOTSUPP)) {
				/* not between these files: read and write */
				if (!(buf = malloc(bufsize)))
					r = -ENOMEM;
				continue;
			}
		} else {
			n = pread(in, buf, chunk < bufsize ? chunk : bufsize, (off_t)off);
			for (ssize_t done = 0; n > 0 && done < n;) {
				ssize_t w = pwrite(out, buf + done, (size_t)(n - done), (off_t)off + done);
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0) {
					r = w < 0 ? -errno : -EIO;
					break;
				}
				done += w;
			}
			if (r)
				break;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO; /* 0: the file shrank under us */
			break;
		}
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	free(buf);
	return r;
}

/* Copy every data extent of @in (size @size) onto @out.  *@copied: bytes. */
static int copy_extents(int in, int out, uint64_t size, uint64_t *copied)
{
	uint64_t off = 0;
	while (off < size) {
		off_t d = lseek(in, (off_t)off, SEEK_DATA);
		if (d < 0)
			return errno == ENXIO ? 0 : -errno; /* ENXIO: only a hole is left */
		off_t h = lseek(in, d, SEEK_HOLE);
		if (h < 0)
			return -errno;
		if ((uint64_t)h > size)
			h = (off_t)size;
		if (h <= d)
			return -EIO;
		int r = copy_range(in, out, (uint64_t)d, (uint64_t)(h - d));
		if (r)
			return r;
		if (copied)
			*copied += (uint64_t)(h - d);
		off = (uint64_t)h;
	}
	return 0;
}

/* The merged memory under a temporary name beside @base_path, then renamed
 * over it. */
static int mem_merge(struct mem_pair *p, const char *base_path, uint64_t *copied, char *err,
		     size_t errlen)
{
	struct file_atomic a;
	int r = file_atomic_open(&a, base_path);
	if (r)
		return err_set(err, errlen, r, "cannot create a file beside %s: %s", base_path,
			       strerror(-r));
	const char *what = "the base";
	if (ftruncate(a.fd, (off_t)p->size)) {
		r = -errno;
	} else if (!(r = copy_extents(p->base_fd, a.fd, p->size, NULL))) {
		what = "the diff";
		r = copy_extents(p->diff_fd, a.fd, p->size, copied);
	}
	if (r) {
		file_atomic_abort(&a);
		return err_set(err, errlen, r, "merging %s into a copy of %s: %s", what, base_path,
			       strerror(-r));
	}
	if ((r = file_atomic_commit(&a)))
		return err_set(err, errlen, r, "cannot replace %s: %s", base_path, strerror(-r));
	return 0;
}

/* ---- state files ---- */

struct state {
	uint8_t *buf;
	size_t len;
	struct snap_reader rd;
	struct snap_mem_info mi;
	bool has_mem;
};

static int state_read(const char *path, struct state *s, char *err, size_t errlen)
{
	char e[512];
	memset(s, 0, sizeof(*s));
	int r = snap_file_read(path, &s->buf, &s->len, e, sizeof(e));
	if (!r)
		r = snap_reader_open(s->buf, s->len, &s->rd, e, sizeof(e));
	if (!r)
		r = snap_mem_find(&s->rd, &s->mi, &s->has_mem, e, sizeof(e));
	if (r) {
		free(s->buf);
		s->buf = NULL;
		return err_set(err, errlen, r, "%s: %s", path, e);
	}
	return 0;
}

/* Write @rd with memory section @mi to @path, atomically. */
static int state_write(const char *path, const struct snap_reader *rd,
		       const struct snap_mem_info *mi, char *err, size_t errlen)
{
	char e[256];
	uint8_t *buf;
	size_t len;
	int r = snap_mem_rewrite(rd, mi, &buf, &len, e, sizeof(e));
	if (r)
		return err_set(err, errlen, r, "%s: %s", path, e);
	struct file_atomic a;
	if (!(r = file_atomic_open(&a, path)) && !(r = file_write_all(a.fd, buf, len)))
		r = file_atomic_commit(&a);
	else
		file_atomic_abort(&a);
	free(buf);
	return r ? err_set(err, errlen, r, "cannot write %s: %s", path, strerror(-r)) : 0;
}

static int join(char *out, size_t size, const char *dir, const char *name, char *err,
		size_t errlen)
{
	int n = snprintf(out, size, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= size)
		return err_set(err, errlen, -ENAMETOOLONG, "%s: name too long", dir);
	return 0;
}

int snap_merge_dirs(const char *base_dir, const char *diff_dir, uint64_t *copied, char *err,
		    size_t errlen)
{
	char bstate[4096], bmem[4096], dstate[4096], dmem[4096];
	*copied = 0;
	int r;
	if ((r = join(bstate, sizeof(bstate), base_dir, DIR_STATE, err, errlen)) ||
	    (r = join(bmem, sizeof(bmem), base_dir, DIR_MEMORY, err, errlen)) ||
	    (r = join(dstate, sizeof(dstate), diff_dir, DIR_STATE, err, errlen)) ||
	    (r = join(dmem, sizeof(dmem), diff_dir, DIR_MEMORY, err, errlen)))
		return r;
	struct state b, d;
	if ((r = state_read(bstate, &b, err, errlen)))
		return r;
	if ((r = state_read(dstate, &d, err, errlen))) {
		free(b.buf);
		return r;
	}
	char bid[2 * SNAP_MEM_ID_LEN + 1], dbase[2 * SNAP_MEM_ID_LEN + 1];
	snap_mem_id_hex(b.mi.id, bid);
	snap_mem_id_hex(d.mi.base, dbase);
	struct mem_pair p = {-1, -1, 0};
	r = -EINVAL;
	if (d.mi.kind != SNAP_MEM_DIFF) {
		err_set(err, errlen, r, "%s is not a Diff snapshot (%s): nothing to merge", diff_dir,
			snap_mem_kind_name(d.mi.kind));
		goto out;
	}
	if (!b.has_mem) {
		err_set(err, errlen, r,
			"%s has no memory identity (written before Diff snapshots existed), so no "
			"Diff can be matched to it",
			base_dir);
		goto out;
	}
	if (b.mi.kind == SNAP_MEM_DIFF) {
		err_set(err, errlen, r, "%s is a Diff snapshot itself: merge it onto its own base first",
			base_dir);
		goto out;
	}
	bool resume = b.mi.kind == SNAP_MEM_MERGING;
	if (resume && (memcmp(b.mi.id, d.mi.id, SNAP_MEM_ID_LEN) ||
		       memcmp(b.mi.base, d.mi.base, SNAP_MEM_ID_LEN))) {
		err_set(err, errlen, r,
			"%s: the merge of another Diff snapshot (%s) onto it was interrupted: run "
			"that merge again first",
			base_dir, bid);
		goto out;
	}
	if (!resume && memcmp(b.mi.id, d.mi.base, SNAP_MEM_ID_LEN)) {
		err_set(err, errlen, r,
			"%s is not the base of %s: the diff was taken after snapshot %s, the base "
			"is snapshot %s",
			base_dir, diff_dir, dbase, bid);
		goto out;
	}
	if (b.mi.size != d.mi.size) {
		err_set(err, errlen, r, "%s has %llu bytes of memory, %s %llu", base_dir,
			(unsigned long long)b.mi.size, diff_dir, (unsigned long long)d.mi.size);
		goto out;
	}
	/* every check passed (the memory files too) before anything changes */
	if ((r = mem_open(bmem, dmem, b.mi.size, &p, err, errlen)))
		goto out;
	if (!resume) {
		/* BASE loads for nobody until the merge is complete */
		struct snap_mem_info merging = b.mi;
		merging.kind = SNAP_MEM_MERGING;
		memcpy(merging.id, d.mi.id, SNAP_MEM_ID_LEN);
		memcpy(merging.base, b.mi.id, SNAP_MEM_ID_LEN);
		if ((r = state_write(bstate, &b.rd, &merging, err, errlen)))
			goto out;
	}
	if ((r = mem_merge(&p, bmem, copied, err, errlen)))
		goto out;
	struct snap_mem_info full = d.mi;
	full.kind = SNAP_MEM_FULL;
	memset(full.base, 0, SNAP_MEM_ID_LEN);
	r = state_write(bstate, &d.rd, &full, err, errlen);
out:
	mem_close(&p);
	free(b.buf);
	free(d.buf);
	return r;
}

int snap_merge_files(const char *base_mem, const char *diff_mem, const char *diff_state,
		     uint64_t *copied, char *err, size_t errlen)
{
	*copied = 0;
	struct state d = {0};
	int r;
	if (diff_state) {
		if ((r = state_read(diff_state, &d, err, errlen)))
			return r;
		if (d.mi.kind != SNAP_MEM_DIFF) {
			err_set(err, errlen, -EINVAL, "%s is not the state file of a Diff snapshot (%s)",
				diff_state, snap_mem_kind_name(d.mi.kind));
			free(d.buf);
			return -EINVAL;
		}
	}
	struct mem_pair p;
	if ((r = mem_open(base_mem, diff_mem, diff_state ? d.mi.size : 0, &p, err, errlen)) == 0 &&
	    (r = mem_merge(&p, base_mem, copied, err, errlen)) == 0 && diff_state) {
		struct snap_mem_info full = d.mi;
		full.kind = SNAP_MEM_FULL;
		memset(full.base, 0, SNAP_MEM_ID_LEN);
		r = state_write(diff_state, &d.rd, &full, err, errlen);
	}
	mem_close(&p);
	free(d.buf);
	return r;
}
