/* SPDX-License-Identifier: MIT */
/*
 * file.h - reading files the user names (kernel, initrd, config file)
 * without being stalled by what they turn out to be.
 */
#ifndef VISOR_UTIL_FILE_H
#define VISOR_UTIL_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Open @path read-only if it is a regular file.  The open itself is
 * O_NONBLOCK: opening a FIFO for reading blocks until a writer appears, so
 * a FIFO would hang the caller before any check; with O_NONBLOCK it returns
 * at once and fstat refuses it (for a regular file the flag changes
 * nothing, and it is cleared).  Returns the fd (close-on-exec), -errno
 * from open, or -EINVAL when @path is not a regular file.  *@size receives
 * its size. */
int file_open_regular(const char *path, uint64_t *size);

/* A small regular file (never a FIFO, at most @max bytes) read whole into
 * a malloc'd buffer with a NUL after its @len bytes; NULL with the reason
 * in @err ("not a regular file", "larger than N bytes", "cannot open: ..."). */
char *file_read_small(const char *path, size_t max, size_t *len, char *err, size_t errlen);

/* Read exactly @len bytes from @fd into @buf (retrying EINTR and short
 * reads).  0, -errno, or -EIO when the file ends early. */
int file_read_all(int fd, void *buf, size_t len);

/* A whole file read into memory ahead of use, with the identity of what
 * was read (device, inode, size, modification and change times), so a
 * later user can tell whether the path still names the same, unchanged
 * file.  The kernel image is read this way when the boot source is set,
 * before InstanceStart needs it.  Zero-initialise; file_image_free()
 * makes it empty again. */
struct file_image {
	uint8_t *data; /* NULL when empty */
	size_t size;
	uint64_t dev, ino;
	int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
	char path[4096];
};

/* Read regular file @path (1..@max bytes) into @img, replacing what it
 * held.  0, or -errno (-EINVAL: not a regular file, -EFBIG: size 0 or
 * over @max, -EIO: it shrank while being read); @img is empty on error. */
int file_image_load(struct file_image *img, const char *path, uint64_t max);

/* True when @img holds @path and @path still names that same file with
 * the same size and times. */
bool file_image_current(const struct file_image *img, const char *path);

void file_image_free(struct file_image *img);

/*
 * Writing a file so that its final name only ever holds a complete file:
 * the data goes to a temporary file beside @path (".NAME.tmp-XXXXXX" in
 * the same directory, so the rename cannot cross file systems),
 * file_atomic_commit makes it durable (fsync), renames it over @path and
 * syncs the directory; file_atomic_abort removes it.  On any error nothing
 * new appears under @path.
 */
struct file_atomic {
	int fd;
	char tmp[4096 + 32];
	char path[4096];
};
/* 0 (a->fd open for writing) or -errno (-ENAMETOOLONG, open's errors). */
int file_atomic_open(struct file_atomic *a, const char *path);
/* Write all of buf[0..len) at the current offset; 0 or -errno (-ENOSPC,
 * -EFBIG, -EIO, ...). */
int file_write_all(int fd, const void *buf, size_t len);
/* fsync, close, rename over the final name, fsync the directory.  0 or
 * -errno; on error the temporary file is removed. */
int file_atomic_commit(struct file_atomic *a);
/* Close and remove the temporary file (safe after a failed commit). */
void file_atomic_abort(struct file_atomic *a);

#endif
