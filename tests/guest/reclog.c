/* SPDX-License-Identifier: MIT */
/*
 * reclog: numbered records appended to a file, and their check (issue 11:
 * a guest appending to a file on its disk while it is migrated: no record
 * lost, none doubled; tests/lab/migrate-tests.sh).  Built into the guest
 * initrd as /bin/reclog by tools/mkguest.
 *
 *   reclog append FILE STOPFILE [MS]
 *                                 truncate FILE, then append record 0, 1,
 *                                 2, ... (O_APPEND, fsync after each; MS ms
 *                                 of sleep after each, default 0) until
 *                                 STOPFILE exists; "RECLOG-PROGRESS n"
 *                                 after every 16th record, then
 *                                 "RECLOG-DONE records=n" (after
 *                                 "RECLOG-FAILED ..." if a write failed:
 *                                 exit status 1)
 *   reclog check FILE N           FILE holds exactly N records, record k at
 *                                 position k carrying number k and its
 *                                 pattern: "RECLOG-OK N", else
 *                                 "RECLOG-BAD ..." naming the first wrong
 *                                 record (a lost record shows as number k+1
 *                                 at position k, a doubled one as k-1, a
 *                                 torn one as a wrong pattern)
 *
 *   reclog raw DEV ROUND         the kill -9 durability test (issue 12;
 *                                 tests/lab/guest-tests.sh): raw records
 *                                 written to the block device DEV with
 *                                 O_DIRECT from offset 0, 8 at a time, then
 *                                 fdatasync (a virtio-blk FLUSH); after
 *                                 each flush "DUR-ACK k": records 0..k are
 *                                 acknowledged (then 1 ms of sleep).  Until the device is full
 *                                 (then "DUR-FULL k"), or the VMM is killed
 *   reclog check-raw FILE ROUND N  records 0..N of ROUND at the start of
 *                                 FILE (an image or a device): "DUR-OK N",
 *                                 else "DUR-BAD ..." naming the first
 *                                 record that is not what was acknowledged
 *
 * A record is 4096 bytes: "VISORLOG", its number (8 bytes, little
 * endian), then bytes 16..4095 of the test stream (stream.h) at offset
 * number * 4096 + j.  Where the records sit on the disk is the file
 * system's business: what counts is the file the guest reads back.  A raw
 * record is "VISORDUR", its number, its round (8 bytes each), then the
 * stream at (round << 40) + number * 4096 + j, so a record left by an
 * earlier round never passes for this one's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stream.h"

#define REC 4096

static void make(uint8_t *b, uint64_t n)
{
	memcpy(b, "VISORLOG", 8);
	for (int i = 0; i < 8; i++)
		b[8 + i] = (uint8_t)(n >> (8 * i));
	for (size_t j = 16; j < REC; j++)
		b[j] = stream_byte(n * REC + j);
}

static int append(const char *file, const char *stopfile, long ms)
{
	static uint8_t b[REC];
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (fd < 0 || fsync(fd)) {
		printf("RECLOG-FAILED open %s: %s\n", file, strerror(errno));
		return 1;
	}
	uint64_t n = 0;
	int rc = 0;
	while (access(stopfile, F_OK) != 0) {
		make(b, n);
		ssize_t w = write(fd, b, REC);
		if (w != REC || fsync(fd)) {
			printf("RECLOG-FAILED record %llu: %s\n", (unsigned long long)n,
			       w < 0 ? strerror(errno) : w != REC ? "short write" : strerror(errno));
			rc = 1;
			break;
		}
		n++;
		if (n % 16 == 0)
			printf("RECLOG-PROGRESS %llu\n", (unsigned long long)n);
		if (ms > 0)
			usleep((useconds_t)(ms * 1000));
	}
	close(fd);
	printf("RECLOG-DONE records=%llu\n", (unsigned long long)n);
	return rc;
}

static int check(const char *file, uint64_t count)
{
	static uint8_t b[REC], want[REC];
	int fd = open(file, O_RDONLY);
	if (fd < 0) {
		printf("RECLOG-BAD open %s: %s\n", file, strerror(errno));
		return 1;
	}
	for (uint64_t k = 0;; k++) {
		ssize_t r = pread(fd, b, REC, (off_t)(k * REC));
		if (r == 0 && k == count)
			break;
		if (r == 0) {
			printf("RECLOG-BAD the file ends after %llu records, %llu written\n",
			       (unsigned long long)k, (unsigned long long)count);
			return 1;
		}
		if (r != REC) {
			printf("RECLOG-BAD record %llu: read returned %zd (%s)\n", (unsigned long long)k, r,
			       r < 0 ? strerror(errno) : "a partial record");
			return 1;
		}
		if (k == count) {
			printf("RECLOG-BAD the file has records after the %llu written\n",
			       (unsigned long long)count);
			return 1;
		}
		make(want, k);
		if (memcmp(b, want, REC)) {
			uint64_t num = 0;
			for (int i = 0; i < 8; i++)
				num |= (uint64_t)b[8 + i] << (8 * i);
			size_t off = 0;
			while (off < REC && b[off] == want[off])
				off++;
			printf("RECLOG-BAD record %llu: header %.8s number %llu, first difference at byte %zu\n",
			       (unsigned long long)k, (const char *)b, (unsigned long long)num, off);
			return 1;
		}
	}
	close(fd);
	printf("RECLOG-OK %llu\n", (unsigned long long)count);
	return 0;
}

static void make_raw(uint8_t *b, uint64_t n, uint64_t round)
{
	memcpy(b, "VISORDUR", 8);
	for (int i = 0; i < 8; i++) {
		b[8 + i] = (uint8_t)(n >> (8 * i));
		b[16 + i] = (uint8_t)(round >> (8 * i));
	}
	for (size_t j = 24; j < REC; j++)
		b[j] = stream_byte((round << 40) + n * REC + j);
}

#define RAW_BATCH 8

static int raw(const char *dev, uint64_t round)
{
	uint8_t *b = aligned_alloc(4096, RAW_BATCH * REC);
	int fd = open(dev, O_WRONLY | O_DIRECT);
	off_t size = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
	if (!b || fd < 0 || size < RAW_BATCH * REC) {
		printf("DUR-FAILED open %s: %s\n", dev, fd < 0 ? strerror(errno) : "too small");
		return 1;
	}
	uint64_t total = (uint64_t)size / REC / RAW_BATCH * RAW_BATCH;
	for (uint64_t n = 0; n < total; n += RAW_BATCH) {
		for (int i = 0; i < RAW_BATCH; i++)
			make_raw(b + i * REC, n + i, round);
		ssize_t w = pwrite(fd, b, RAW_BATCH * REC, (off_t)(n * REC));
		if (w != RAW_BATCH * REC || fdatasync(fd)) {
			printf("DUR-FAILED record %llu: %s\n", (unsigned long long)n,
			       w < 0 ? strerror(errno) : w != RAW_BATCH * REC ? "short write" : strerror(errno));
			return 1;
		}
		printf("DUR-ACK %llu\n", (unsigned long long)(n + RAW_BATCH - 1));
		usleep(1000); /* at most 32 MiB/s: a fast host does not fill the disk */
	}
	printf("DUR-FULL %llu\n", (unsigned long long)(total - 1));
	return 0;
}

static int check_raw(const char *file, uint64_t round, uint64_t last)
{
	static uint8_t b[REC], want[REC];
	int fd = open(file, O_RDONLY);
	if (fd < 0) {
		printf("DUR-BAD open %s: %s\n", file, strerror(errno));
		return 1;
	}
	for (uint64_t k = 0; k <= last; k++) {
		ssize_t r = pread(fd, b, REC, (off_t)(k * REC));
		make_raw(want, k, round);
		if (r != REC || memcmp(b, want, REC)) {
			uint64_t num = 0, rnd = 0;
			for (int i = 0; i < 8 && r == REC; i++) {
				num |= (uint64_t)b[8 + i] << (8 * i);
				rnd |= (uint64_t)b[16 + i] << (8 * i);
			}
			printf("DUR-BAD record %llu of %llu acknowledged: %s (header %.8s, number %llu, "
			       "round %llu, want round %llu)\n",
			       (unsigned long long)k, (unsigned long long)last,
			       r != REC ? "short read" : "not what was written", r == REC ? (const char *)b : "-",
			       (unsigned long long)num, (unsigned long long)rnd, (unsigned long long)round);
			close(fd);
			return 1;
		}
	}
	close(fd);
	printf("DUR-OK %llu\n", (unsigned long long)last);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "append"))
		return append(argv[2], argv[3], argc == 5 ? atol(argv[4]) : 0);
	if (argc == 4 && !strcmp(argv[1], "check"))
		return check(argv[2], strtoull(argv[3], NULL, 10));
	if (argc == 4 && !strcmp(argv[1], "raw"))
		return raw(argv[2], strtoull(argv[3], NULL, 10));
	if (argc == 5 && !strcmp(argv[1], "check-raw"))
		return check_raw(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
	fprintf(stderr, "usage: reclog append FILE STOPFILE [MS] | check FILE N | raw DEV ROUND | "
			"check-raw FILE ROUND LAST\n");
	return 2;
}
