/* SPDX-License-Identifier: MIT */
/*
 * Guest memory and its snapshot file: the layout around the MMIO hole,
 * gpa_to_hva bounds, saving RAM to a sparse file and mapping it back
 * private (copy-on-write), and the refusals before mapping.
 */
#include "../../src/mem/guest_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

#define MIB (1ull << 20)
/* a small machine with a "hole" between 6 and 8 MiB: RAM 0-6 MiB and 8-10 MiB */
#define SIZE (8 * MIB)
#define HOLE (6 * MIB)
#define HOLE_END (8 * MIB)

static char dir[] = "/tmp/visor-test-mem-XXXXXX";

static int open_tmp(const char *name)
{
	char path[256];
	test_tmp_path(dir, path, sizeof(path), name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	return fd;
}

static void fill(struct guest_mem *m)
{
	/* a few scattered pages, one across the end of the low region, one
	 * at the very end of RAM */
	CHECK_EQ(guest_write(m, 0x1000, "low", 3), 0);
	CHECK_EQ(guest_write(m, HOLE - 4, "abcd", 4), 0);
	CHECK_EQ(guest_write(m, HOLE_END, "high", 4), 0);
	CHECK_EQ(guest_write(m, HOLE_END + 2 * MIB - 1, "z", 1), 0);
}

TEST(layout_and_bounds)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, SIZE, HOLE, HOLE_END), 0);
	CHECK_EQ(m.nregions, 2);
	CHECK(gpa_to_hva(&m, HOLE - 1, 1) != NULL);
	CHECK(gpa_to_hva(&m, HOLE - 1, 2) == NULL); /* into the hole */
	CHECK(gpa_to_hva(&m, HOLE, 1) == NULL);
	CHECK(gpa_to_hva(&m, HOLE_END + 2 * MIB - 1, 1) != NULL);
	CHECK(gpa_to_hva(&m, HOLE_END + 2 * MIB, 1) == NULL);
	CHECK(gpa_to_hva(&m, UINT64_MAX, 2) == NULL);
	guest_mem_destroy(&m);
	CHECK_EQ(guest_mem_init(&m, SIZE + 1, HOLE, HOLE_END), -EINVAL);
}

TEST(save_and_map_back_private)
{
	struct guest_mem m, r1, r2;
	CHECK_EQ(guest_mem_init(&m, SIZE, HOLE, HOLE_END), 0);
	fill(&m);
	int fd = open_tmp("mem");
	uint64_t written = 0;
	CHECK_EQ(guest_mem_save_file(&m, fd, &written), 0);
	struct stat sb;
	CHECK_EQ(fstat(fd, &sb), 0);
	CHECK_EQ(sb.st_size, SIZE);
	/* four touched pages, not 8 MiB */
	CHECK_EQ(written, 4 * 4096);
	CHECK((uint64_t)sb.st_blocks * 512 < 1 * MIB);

	CHECK_EQ(guest_mem_init_file(&r1, fd, SIZE, HOLE, HOLE_END), 0);
	CHECK_EQ(guest_mem_init_file(&r2, fd, SIZE, HOLE, HOLE_END), 0);
	close(fd);
	CHECK(!memcmp(r1.base, m.base, SIZE));
	char buf[8] = {0};
	CHECK_EQ(guest_read(&r1, HOLE_END, buf, 4), 0);
	CHECK(!memcmp(buf, "high", 4));
	/* a clone's write is its own: the other clone and the file keep the
	 * saved bytes */
	CHECK_EQ(guest_write(&r1, 0x1000, "CLN", 3), 0);
	CHECK_EQ(guest_read(&r2, 0x1000, buf, 3), 0);
	CHECK(!memcmp(buf, "low", 3));
	int fd2 = open(test_tmp_path(dir, (char[256]){0}, 256, "mem"), O_RDONLY | O_CLOEXEC);
	CHECK(fd2 >= 0);
	CHECK_EQ(pread(fd2, buf, 3, 0x1000), 3);
	CHECK(!memcmp(buf, "low", 3));
	close(fd2);
	guest_mem_destroy(&r1);
	guest_mem_destroy(&r2);
	guest_mem_destroy(&m);
}

TEST(a_memory_file_of_the_wrong_size_or_kind_is_refused_before_mapping)
{
	struct guest_mem m;
	int fd = open_tmp("short");
	CHECK_EQ(ftruncate(fd, SIZE - 4096), 0);
	CHECK_EQ(guest_mem_init_file(&m, fd, SIZE, HOLE, HOLE_END), -ERANGE);
	CHECK(m.base == NULL);
	CHECK_EQ(ftruncate(fd, SIZE + 4096), 0);
	CHECK_EQ(guest_mem_init_file(&m, fd, SIZE, HOLE, HOLE_END), -ERANGE);
	close(fd);
	char path[256];
	int dfd = open(test_tmp_path(dir, path, sizeof(path), ""), O_RDONLY | O_DIRECTORY);
	CHECK(dfd >= 0);
	CHECK_EQ(guest_mem_init_file(&m, dfd, SIZE, HOLE, HOLE_END), -EINVAL);
	close(dfd);
	int p[2];
	CHECK_EQ(pipe(p), 0);
	CHECK_EQ(guest_mem_init_file(&m, p[0], SIZE, HOLE, HOLE_END), -EINVAL);
	close(p[0]);
	close(p[1]);
	CHECK_EQ(guest_mem_init_file(&m, -1, SIZE, HOLE, HOLE_END), -EBADF);
}

TEST(a_file_size_limit_fails_the_save_with_efbig)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, SIZE, HOLE, HOLE_END), 0);
	fill(&m);
	int fd = open_tmp("limited");
	struct rlimit old, lim = {.rlim_cur = 1 * MIB, .rlim_max = RLIM_INFINITY};
	CHECK_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim.rlim_max = old.rlim_max;
	void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
	CHECK_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
	uint64_t written = 0;
	CHECK_EQ(guest_mem_save_file(&m, fd, &written), -EFBIG);
	CHECK_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, prev);
	close(fd);
	guest_mem_destroy(&m);
}

TEST(cleanup)
{
	char path[256];
	const char *names[] = {"mem", "short", "limited"};
	for (size_t i = 0; i < 3; i++)
		unlink(test_tmp_path(dir, path, sizeof(path), names[i]));
	rmdir(dir);
}

TEST_MAIN()
