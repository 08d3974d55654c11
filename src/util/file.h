/* SPDX-License-Identifier: MIT */
/*
 * file.h - reading files the user names (kernel, initrd, config file)
 * without being stalled by what they turn out to be.
 */
#ifndef VISOR_UTIL_FILE_H
#define VISOR_UTIL_FILE_H

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

/* Read exactly @len bytes from @fd into @buf (retrying EINTR and short
 * reads).  0, -errno, or -EIO when the file ends early. */
int file_read_all(int fd, void *buf, size_t len);

#endif
