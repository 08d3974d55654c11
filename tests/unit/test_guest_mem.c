/* SPDX-License-Identifier: MIT */
/*
 * Guest memory and its snapshot file: the layout around the MMIO hole,
 * gpa_to_hva bounds, saving RAM to a sparse file and mapping it back
 * private (copy-on-write), and the refusals before mapping; dirty-page
 * tracking (the VMM's bitmap, KVM's log folded in) and a Diff's memory
 * file (dirty pages as data, zero ones too, the rest holes).
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

/* The pages marked, as a list of page numbers (at most @max). */
static int dirty_pages(const struct guest_mem *m, uint64_t *out, int max)
{
	int n = 0;
	for (uint64_t p = 0; p < m->size / 4096; p++)
		if (guest_mem_is_dirty(m, p) && n < max)
			out[n++] = p;
	return n;
}

TEST(tracking_off_marks_nothing_and_costs_no_bitmap)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, SIZE, HOLE, HOLE_END), 0);
	CHECK(!guest_mem_tracking(&m));
	fill(&m);
	guest_mem_mark(&m, m.base, 4096);
	guest_mem_mark_all(&m);
	CHECK_EQ(guest_mem_dirty_count(&m), 0);
	CHECK(!guest_mem_is_dirty(&m, 1));
	int fd = open_tmp("diff");
	uint64_t written = 1;
	CHECK_EQ(guest_mem_save_dirty(&m, fd, &written), -EINVAL);
	CHECK_EQ(written, 0);
	close(fd);
	guest_mem_destroy(&m);
}

TEST(guest_write_and_mark_set_exactly_the_pages_touched)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, SIZE, HOLE, HOLE_END), 0);
	CHECK_EQ(guest_mem_track_dirty(&m), 0);
	CHECK(guest_mem_tracking(&m));
	CHECK_EQ(guest_mem_dirty_count(&m), 0);
	/* 3 bytes in page 1; 4 bytes across pages 1535/1536 (the end of the
	 * low region is not the end of a page run: the next region follows
	 * in the mapping) */
	CHECK_EQ(guest_write(&m, 0x1000, "low", 3), 0);
	CHECK_EQ(guest_write(&m, HOLE - 2, "abcd", 4), -EFAULT); /* crosses the hole: refused */
	CHECK_EQ(guest_write(&m, HOLE - 4, "abcd", 4), 0);
	uint64_t got[16];
	CHECK_EQ(dirty_pages(&m, got, 16), 2);
	CHECK_EQ(got[0], 1);
	CHECK_EQ(got[1], HOLE / 4096 - 1);
	/* high RAM: gpa HOLE_END is mapping offset HOLE, page HOLE/4096 */
	CHECK_EQ(guest_write(&m, HOLE_END + 4095, "xy", 2), 0);
	CHECK_EQ(dirty_pages(&m, got, 16), 4);
	CHECK_EQ(got[2], HOLE / 4096);
	CHECK_EQ(got[3], HOLE / 4096 + 1);
	/* a range over a word boundary of the bitmap (pages 60..130) */
	guest_mem_dirty_clear(&m);
	CHECK_EQ(guest_mem_dirty_count(&m), 0);
	guest_mem_mark(&m, m.base + 60 * 4096 + 100, 70 * 4096);
	CHECK_EQ(guest_mem_dirty_count(&m), 71);
	CHECK(!guest_mem_is_dirty(&m, 59) && guest_mem_is_dirty(&m, 60));
	CHECK(guest_mem_is_dirty(&m, 130) && !guest_mem_is_dirty(&m, 131));
	/* clipped to guest RAM; nothing for a range outside or of length 0 */
	guest_mem_dirty_clear(&m);
	guest_mem_mark(&m, m.base - 4096, 4097);
	guest_mem_mark(&m, m.base + SIZE - 1, 4096);
	guest_mem_mark(&m, m.base + SIZE, 4096);
	guest_mem_mark(&m, m.base + 5 * 4096, 0);
	CHECK_EQ(dirty_pages(&m, got, 16), 2);
	CHECK_EQ(got[0], 0);
	CHECK_EQ(got[1], SIZE / 4096 - 1);
	guest_mem_mark_all(&m);
	CHECK_EQ(guest_mem_dirty_count(&m), SIZE / 4096);
	guest_mem_destroy(&m);
	CHECK(m.dirty == NULL);
}

TEST(kvm_dirty_logs_fold_in_per_region)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, SIZE, HOLE, HOLE_END), 0);
	CHECK_EQ(guest_mem_track_dirty(&m), 0);
	/* region 0: pages 0-1535, region 1: 512 pages at mapping page 1536 */
	uint64_t low[24] = {0}, high[8] = {0};
	low[0] = 1ull << 3;
	low[23] = 1ull << 63; /* page 1535, the last of region 0 */
	high[0] = 1ull;       /* its page 0: mapping page 1536 */
	high[7] = 1ull << 63; /* page 511: the last of RAM */
	guest_mem_dirty_add(&m, 0, low);
	guest_mem_dirty_add(&m, 1, high);
	guest_mem_dirty_add(&m, 2, high); /* no such region: ignored */
	uint64_t got[8];
	CHECK_EQ(dirty_pages(&m, got, 8), 4);
	CHECK_EQ(got[0], 3);
	CHECK_EQ(got[1], 1535);
	CHECK_EQ(got[2], 1536);
	CHECK_EQ(got[3], SIZE / 4096 - 1);
	guest_mem_destroy(&m);
}

TEST(a_diff_memory_file_holds_the_dirty_pages_zero_ones_too)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, SIZE, HOLE, HOLE_END), 0);
	fill(&m); /* before tracking: not in the diff */
	CHECK_EQ(guest_mem_track_dirty(&m), 0);
	CHECK_EQ(guest_write(&m, 0x5000, "five", 4), 0);
	static const uint8_t zero[4096];
	CHECK_EQ(guest_write(&m, 0x7000, zero, sizeof(zero)), 0); /* dirty, all zero */
	CHECK_EQ(guest_write(&m, HOLE_END, "HIGH", 4), 0);        /* over "high" */
	int fd = open_tmp("diff");
	uint64_t written = 0;
	CHECK_EQ(guest_mem_save_dirty(&m, fd, &written), 0);
	CHECK_EQ(written, 3 * 4096);
	struct stat sb;
	CHECK_EQ(fstat(fd, &sb), 0);
	CHECK_EQ(sb.st_size, SIZE);
	/* data exactly at the three pages: the zero page is data, the page
	 * written before tracking is a hole */
	uint64_t want[3] = {0x5000, 0x7000, HOLE}, off = 0;
	for (int i = 0; i < 3; i++) {
		off_t d = lseek(fd, (off_t)off, SEEK_DATA);
		CHECK_EQ(d, want[i]);
		off_t h = lseek(fd, d, SEEK_HOLE);
		CHECK_EQ(h, want[i] + 4096);
		off = (uint64_t)h;
	}
	CHECK_EQ(lseek(fd, (off_t)off, SEEK_DATA), -1);
	char buf[4];
	CHECK_EQ(pread(fd, buf, 4, HOLE), 4);
	CHECK(!memcmp(buf, "HIGH", 4));
	CHECK_EQ(pread(fd, buf, 3, 0x1000), 3);
	CHECK(!memcmp(buf, "\0\0\0", 3));
	/* saving does not clear the bitmap: that is the snapshot's call once
	 * both files are in place */
	CHECK_EQ(guest_mem_dirty_count(&m), 3);
	close(fd);
	guest_mem_destroy(&m);
}

TEST(cleanup)
{
	char path[256];
	const char *names[] = {"mem", "short", "limited", "diff"};
	for (size_t i = 0; i < 4; i++)
		unlink(test_tmp_path(dir, path, sizeof(path), names[i]));
	rmdir(dir);
}

TEST_MAIN()
