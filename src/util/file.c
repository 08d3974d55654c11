/* SPDX-License-Identifier: MIT */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int file_open_regular(const char *path, uint64_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		(void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	*size = (uint64_t)st.st_size;
	return fd;
}

int file_read_all(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = read(fd, (char *)buf + got, len - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		got += (size_t)r;
	}
	return 0;
}

static void identity(struct file_image *img, const struct stat *st)
{
	img->dev = (uint64_t)st->st_dev;
	img->ino = (uint64_t)st->st_ino;
	img->mtime_s = (int64_t)st->st_mtim.tv_sec;
	img->mtime_ns = (int64_t)st->st_mtim.tv_nsec;
	img->ctime_s = (int64_t)st->st_ctim.tv_sec;
	img->ctime_ns = (int64_t)st->st_ctim.tv_nsec;
}

void file_image_free(struct file_image *img)
{
	if (img->data)
		munmap(img->data, img->size);
	img->data = NULL;
	img->size = 0;
	img->path[0] = 0;
}

int file_image_load(struct file_image *img, const char *path, uint64_t max)
{
	file_image_free(img);
	if (strlen(path) >= sizeof(img->path))
		return -ENAMETOOLONG;
	uint64_t size;
	int fd = file_open_regular(path, &size);
	if (fd < 0)
		return fd;
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : 0;
	if (!r && (size == 0 || size > max || size > SIZE_MAX))
		r = -EFBIG;
	uint8_t *buf = NULL;
	if (!r) {
		/* mmap'd so the pages come in one call (MAP_POPULATE) and go
		 * back to the system at once when freed */
		buf = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (buf == MAP_FAILED) {
			buf = NULL;
			r = -ENOMEM;
		}
	}
	if (!r)
		r = file_read_all(fd, buf, (size_t)size);
	close(fd);
	if (r) {
		if (buf)
			munmap(buf, (size_t)size);
		return r;
	}
	img->data = buf;
	img->size = (size_t)size;
	identity(img, &st);
	memcpy(img->path, path, strlen(path) + 1);
	return 0;
}

bool file_image_current(const struct file_image *img, const char *path)
{
	if (!img->data || strcmp(img->path, path))
		return false;
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != img->size)
		return false;
	struct file_image now;
	identity(&now, &st);
	return now.dev == img->dev && now.ino == img->ino && now.mtime_s == img->mtime_s &&
	       now.mtime_ns == img->mtime_ns && now.ctime_s == img->ctime_s &&
	       now.ctime_ns == img->ctime_ns;
}

/* ---- atomic replacement ------------------------------------------------------ */

int file_atomic_open(struct file_atomic *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	a->fd = -1;
	size_t n = strlen(path);
	if (!n || n >= sizeof(a->path))
		return -ENAMETOOLONG;
	memcpy(a->path, path, n + 1);
	const char *slash = strrchr(path, '/');
	int dlen = slash ? (int)(slash - path + 1) : 0;
	int w = snprintf(a->tmp, sizeof(a->tmp), "%.*s.%s.tmp-XXXXXX", dlen, path,
			 slash ? slash + 1 : path);
	if (w < 0 || (size_t)w >= sizeof(a->tmp))
		return -ENAMETOOLONG;
	a->fd = mkostemp(a->tmp, O_CLOEXEC);
	if (a->fd < 0) {
		int r = -errno;
		a->tmp[0] = 0;
		return r;
	}
	return 0;
}

int file_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* fsync the directory holding @path, so a rename in it is durable. */
static int sync_dir_of(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) ? -errno : 0;
	close(fd);
	/* some file systems cannot sync a directory: the rename happened */
	return r == -EINVAL ? 0 : r;
}

int file_atomic_commit(struct file_atomic *a)
{
	int r = 0;
	if (a->fd < 0)
		return -EBADF;
	if (fsync(a->fd))
		r = -errno;
	if (close(a->fd) && !r)
		r = -errno;
	a->fd = -1;
	if (!r && rename(a->tmp, a->path))
		r = -errno;
	if (r) {
		unlink(a->tmp);
		a->tmp[0] = 0;
		return r;
	}
	a->tmp[0] = 0;
	return sync_dir_of(a->path);
}

void file_atomic_abort(struct file_atomic *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	if (a->tmp[0])
		unlink(a->tmp);
	a->tmp[0] = 0;
}

char *file_read_small(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
	uint64_t size;
	int fd = file_open_regular(path, &size);
	if (fd < 0) {
		if (fd == -EINVAL)
			snprintf(err, errlen, "not a regular file");
		else
			snprintf(err, errlen, "cannot open: %s", strerror(-fd));
		return NULL;
	}
	if (size > max) {
		snprintf(err, errlen, "larger than %zu bytes", max);
		close(fd);
		return NULL;
	}
	char *buf = malloc((size_t)size + 1);
	int r = buf ? file_read_all(fd, buf, (size_t)size) : -ENOMEM;
	close(fd);
	if (r) {
		snprintf(err, errlen, "cannot read: %s", strerror(-r));
		free(buf);
		return NULL;
	}
	buf[size] = 0;
	*len = (size_t)size;
	return buf;
}
