/* SPDX-License-Identifier: MIT */
/* util/file: the read-ahead file image and its "still the same file"
 * check (the kernel image read when the boot source is set and used at
 * InstanceStart); like every reader of user-named files, a FIFO never
 * blocks it. */
#include "../../src/util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

static char dir[] = "/tmp/visor-test-file.XXXXXX";

static const char *path_of(const char *name)
{
	static char bufs[4][128];
	static int i;
	return test_tmp_path(dir, bufs[i++ % 4], sizeof(bufs[0]), name);
}

static void write_file(const char *p, const char *data, size_t len)
{
	FILE *f = fopen(p, "wb");
	if (!f)
		abort();
	if (len && fwrite(data, 1, len, f) != len)
		abort();
	fclose(f);
}

TEST(image_load_and_current)
{
	const char *p = path_of("k");
	write_file(p, "kernel bytes", 12);
	struct file_image img = {0};
	CHECK_EQ(file_image_load(&img, p, 1 << 20), 0);
	CHECK_EQ(img.size, 12u);
	CHECK(!memcmp(img.data, "kernel bytes", 12));
	CHECK(file_image_current(&img, p));
	/* another path is not "current": the caller reads what it asked for */
	CHECK(!file_image_current(&img, path_of("other")));
	file_image_free(&img);
	CHECK(img.data == NULL);
	CHECK(!file_image_current(&img, p));
	file_image_free(&img); /* twice is fine */
}

TEST(image_stale_after_rewrite_or_replace)
{
	const char *p = path_of("k2");
	write_file(p, "version one", 11);
	struct file_image img = {0};
	CHECK_EQ(file_image_load(&img, p, 1 << 20), 0);
	/* the same size rewritten in place: the change time moves on */
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL);
	write_file(p, "version two", 11);
	CHECK(!file_image_current(&img, p));
	CHECK_EQ(file_image_load(&img, p, 1 << 20), 0);
	CHECK(!memcmp(img.data, "version two", 11));
	CHECK(file_image_current(&img, p));
	/* replaced by rename: another inode */
	const char *q = path_of("k2.new");
	write_file(q, "version two", 11);
	CHECK_EQ(rename(q, p), 0);
	CHECK(!file_image_current(&img, p));
	/* removed */
	CHECK_EQ(unlink(p), 0);
	CHECK(!file_image_current(&img, p));
	file_image_free(&img);
}

TEST(image_refuses_fifo_dir_empty_and_big)
{
	struct file_image img = {0};
	const char *fifo = path_of("fifo");
	CHECK_EQ(mkfifo(fifo, 0600), 0);
	CHECK_EQ(file_image_load(&img, fifo, 1 << 20), -EINVAL); /* and returns at once */
	CHECK_EQ(file_image_load(&img, dir, 1 << 20), -EINVAL);
	CHECK_EQ(file_image_load(&img, path_of("missing"), 1 << 20), -ENOENT);
	const char *e = path_of("empty");
	write_file(e, "", 0);
	CHECK_EQ(file_image_load(&img, e, 1 << 20), -EFBIG);
	const char *b = path_of("big");
	write_file(b, "0123456789", 10);
	CHECK_EQ(file_image_load(&img, b, 9), -EFBIG);
	CHECK_EQ(file_image_load(&img, b, 10), 0);
	/* a failed load leaves the image empty, not holding the old file */
	CHECK_EQ(file_image_load(&img, e, 1 << 20), -EFBIG);
	CHECK(img.data == NULL);
	CHECK(!file_image_current(&img, b));
	char longp[5000];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = 0;
	CHECK_EQ(file_image_load(&img, longp, 1 << 20), -ENAMETOOLONG);
	unlink(fifo);
	unlink(e);
	unlink(b);
	rmdir(dir);
}

TEST_MAIN()
