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
#include <signal.h>
#include <sys/resource.h>
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
	unlink(p);
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

/* No ".NAME.tmp-" file is left in the test directory. */
static bool no_temporaries(void)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "ls -a %s | grep -q '\\.tmp-'", dir);
	return system(cmd) != 0;
}

static bool file_holds(const char *p, const char *want)
{
	char buf[64] = {0};
	FILE *f = fopen(p, "rb");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	return n == strlen(want) && !memcmp(buf, want, n);
}

TEST(atomic_write_replaces_only_on_commit)
{
	const char *p = path_of("state");
	write_file(p, "old", 3);
	struct file_atomic a;
	CHECK_EQ(file_atomic_open(&a, p), 0);
	CHECK_EQ(file_write_all(a.fd, "new contents", 12), 0);
	CHECK(file_holds(p, "old")); /* not yet */
	CHECK_EQ(file_atomic_commit(&a), 0);
	CHECK(file_holds(p, "new contents"));
	CHECK(no_temporaries());
	/* an abort leaves the old file and no temporary */
	CHECK_EQ(file_atomic_open(&a, p), 0);
	CHECK_EQ(file_write_all(a.fd, "half", 4), 0);
	file_atomic_abort(&a);
	CHECK(file_holds(p, "new contents"));
	CHECK(no_temporaries());
	file_atomic_abort(&a); /* twice is harmless */
	/* a directory that does not exist */
	char missing[256];
	snprintf(missing, sizeof(missing), "%s/no/such/dir/file", dir);
	CHECK_EQ(file_atomic_open(&a, missing), -ENOENT);
	/* a relative name works in the current directory */
	char cwd[512];
	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	CHECK_EQ(chdir(dir), 0);
	CHECK_EQ(file_atomic_open(&a, "rel"), 0);
	CHECK_EQ(file_write_all(a.fd, "r", 1), 0);
	CHECK_EQ(file_atomic_commit(&a), 0);
	CHECK_EQ(chdir(cwd), 0);
	CHECK(file_holds(path_of("rel"), "r"));
	unlink(path_of("rel"));
	unlink(p);
}

TEST(atomic_write_out_of_space_keeps_the_old_file)
{
	const char *p = path_of("big-state");
	write_file(p, "old", 3);
	struct file_atomic a;
	CHECK_EQ(file_atomic_open(&a, p), 0);
	struct rlimit old, lim;
	CHECK_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim.rlim_cur = 4096;
	lim.rlim_max = old.rlim_max;
	void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
	CHECK_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
	static char block[8192];
	int r = file_write_all(a.fd, block, sizeof(block));
	CHECK_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, prev);
	CHECK_EQ(r, -EFBIG);
	file_atomic_abort(&a);
	CHECK(file_holds(p, "old"));
	CHECK(no_temporaries());
	unlink(p);
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
