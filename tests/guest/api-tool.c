/* SPDX-License-Identifier: MIT */
/*
 * api-tool: guest-side helpers of the API and lifecycle lab tests
 * (tests/lab/api-tests.sh, driven through tests/guest/api.sh).  Built into
 * the guest initrd as /bin/api-tool by tools/mkguest.
 *
 *   api-tool mono                  print CLOCK_MONOTONIC in ms
 *   api-tool ticker                every 100 ms (relative sleeps) print
 *                                  "TICK n ms": n counts from 1, ms is
 *                                  CLOCK_MONOTONIC; runs until killed
 *   api-tool cad                   play init's part for Ctrl-Alt-Del: turn
 *                                  the kernel's immediate restart off, make
 *                                  this process the kernel's cad_pid, print
 *                                  "CAD-ARMED pid", wait for SIGINT, print
 *                                  "GOT-CTRL-ALT-DEL", sync and reboot
 *   api-tool blkwrite DEV STOP MAX write numbered 64 KiB records to DEV from
 *                                  offset 0, each followed by fdatasync(),
 *                                  until the file STOP exists or MAX records
 *                                  are written; "WRITER-PROGRESS n" every 16
 *                                  records, "WRITER-DONE records=n" at the end
 *   api-tool blkverify DEV N       read records 0..N-1 with O_DIRECT and check
 *                                  number and content, and that record N was
 *                                  never written (all zero): "RECORDS-OK N" or
 *                                  "RECORDS-BAD index=i ..."
 *   api-tool blkreread DEV STOP    read DEV with O_DIRECT from start to end,
 *                                  again and again, into one 64 KiB buffer,
 *                                  until the file STOP exists: after the
 *                                  first read only the device (virtio-blk,
 *                                  i.e. the VMM) writes that buffer, this
 *                                  process only reads it.  Every pass's
 *                                  checksum must be the first's:
 *                                  "REREAD-PASS n" after pass 1 and every
 *                                  16th (and " BAD" after any that is
 *                                  not), "REREAD-DONE passes=n bad=m"
 *
 * A record: "VISORREC", its number (8 bytes little-endian), then bytes
 * 16..65535 of the test stream (stream.h) at offset number * 65536 + j.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stream.h"

#define REC_SIZE 65536

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One write(2) per line, so that lines of concurrent writers to the
 * console do not interleave. */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	for (int o = 0; o < n;) {
		ssize_t w = write(STDOUT_FILENO, buf + o, (size_t)(n - o));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		o += (int)w;
	}
}

__attribute__((noreturn)) static void ticker(void)
{
	struct timespec d = {0, 100 * 1000000L};
	for (unsigned n = 1;; n++) {
		say("TICK %u %llu\n", n, (unsigned long long)mono_ms());
		struct timespec rem = d;
		while (nanosleep(&rem, &rem) && errno == EINTR)
			;
	}
}

static volatile sig_atomic_t got_int;
static void on_int(int sig)
{
	(void)sig;
	got_int = 1;
}

static int cad(void)
{
	/* A background job of a non-interactive shell starts with SIGINT
	 * ignored: install the handler explicitly. */
	struct sigaction sa = {.sa_handler = on_int};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL)) {
		perror("sigaction");
		return 1;
	}
	/* What init does (sysvinit, systemd, busybox init): Ctrl-Alt-Del
	 * becomes SIGINT to cad_pid instead of an immediate kernel restart. */
	if (reboot(RB_DISABLE_CAD)) {
		say("CAD-FAILED reboot(RB_DISABLE_CAD): %s\n", strerror(errno));
		return 1;
	}
	FILE *f = fopen("/proc/sys/kernel/cad_pid", "w");
	if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f)) {
		say("CAD-FAILED cannot write /proc/sys/kernel/cad_pid: %s\n", strerror(errno));
		return 1;
	}
	say("CAD-ARMED %d\n", (int)getpid());
	while (!got_int)
		pause();
	say("GOT-CTRL-ALT-DEL\n");
	sync();
	reboot(RB_AUTOBOOT);
	say("CAD-REBOOT-FAILED %s\n", strerror(errno));
	return 1;
}

static void make_record(uint8_t *buf, uint64_t n)
{
	for (size_t j = 16; j < REC_SIZE; j++)
		buf[j] = stream_byte(n * REC_SIZE + j);
	memcpy(buf, "VISORREC", 8);
	for (int i = 0; i < 8; i++)
		buf[8 + i] = (uint8_t)(n >> (8 * i));
}

static int blkwrite(const char *dev, const char *stop, uint64_t max)
{
	static uint8_t buf[REC_SIZE];
	int fd = open(dev, O_WRONLY);
	if (fd < 0) {
		say("WRITER-FAILED open %s: %s\n", dev, strerror(errno));
		return 1;
	}
	uint64_t n = 0;
	int rc = 0;
	for (; n < max; n++) {
		if (access(stop, F_OK) == 0)
			break;
		make_record(buf, n);
		ssize_t w = pwrite(fd, buf, REC_SIZE, (off_t)(n * REC_SIZE));
		if (w != REC_SIZE || fdatasync(fd)) {
			say("WRITER-FAILED record %llu: %s\n", (unsigned long long)n,
			    w < 0 ? strerror(errno) : w != REC_SIZE ? "short write" : strerror(errno));
			rc = 1;
			break;
		}
		if ((n + 1) % 16 == 0)
			say("WRITER-PROGRESS %llu\n", (unsigned long long)(n + 1));
	}
	close(fd);
	say("WRITER-DONE records=%llu%s\n", (unsigned long long)n, n == max ? " (limit)" : "");
	return rc;
}

static int blkverify(const char *dev, uint64_t count)
{
	uint8_t *buf, want[REC_SIZE];
	if (posix_memalign((void **)&buf, 4096, REC_SIZE))
		return 1;
	int fd = open(dev, O_RDONLY | O_DIRECT);
	if (fd < 0) {
		say("RECORDS-BAD open %s: %s\n", dev, strerror(errno));
		return 1;
	}
	for (uint64_t n = 0; n <= count; n++) {
		ssize_t r = pread(fd, buf, REC_SIZE, (off_t)(n * REC_SIZE));
		if (n == count) {
			/* the record after the last one: never written */
			if (r <= 0)
				break;
			for (ssize_t i = 0; i < r; i++) {
				if (buf[i]) {
					say("RECORDS-BAD index=%llu: data after the last record\n",
					    (unsigned long long)n);
					return 1;
				}
			}
			break;
		}
		if (r != REC_SIZE) {
			say("RECORDS-BAD index=%llu: read returned %zd (%s)\n", (unsigned long long)n, r,
			    r < 0 ? strerror(errno) : "short");
			return 1;
		}
		make_record(want, n);
		if (memcmp(buf, want, REC_SIZE)) {
			uint64_t got = 0;
			for (int i = 0; i < 8; i++)
				got |= (uint64_t)buf[8 + i] << (8 * i);
			size_t off = 0;
			while (off < REC_SIZE && buf[off] == want[off])
				off++;
			say("RECORDS-BAD index=%llu: header %.8s number %llu, first difference at byte %zu\n",
			    (unsigned long long)n, (const char *)buf, (unsigned long long)got, off);
			return 1;
		}
	}
	close(fd);
	free(buf);
	say("RECORDS-OK %llu\n", (unsigned long long)count);
	return 0;
}

static int blkreread(const char *dev, const char *stop)
{
	uint8_t *buf;
	if (posix_memalign((void **)&buf, 4096, REC_SIZE))
		return 1;
	int fd = open(dev, O_RDONLY | O_DIRECT);
	if (fd < 0) {
		say("REREAD-FAILED open %s: %s\n", dev, strerror(errno));
		return 1;
	}
	uint64_t passes = 0, bad = 0, first = 0;
	while (access(stop, F_OK) != 0) {
		uint64_t sum = 14695981039346656037ull; /* FNV-1a */
		for (off_t off = 0;; off += REC_SIZE) {
			ssize_t r = pread(fd, buf, REC_SIZE, off);
			if (r < 0) {
				say("REREAD-FAILED at %lld: %s\n", (long long)off, strerror(errno));
				return 1;
			}
			for (ssize_t i = 0; i < r; i++)
				sum = (sum ^ buf[i]) * 1099511628211ull;
			if (r < REC_SIZE)
				break;
		}
		if (++passes == 1)
			first = sum;
		else if (sum != first)
			bad++;
		if (passes == 1 || passes % 16 == 0 || sum != first)
			say("REREAD-PASS %llu%s\n", (unsigned long long)passes,
			    sum == first ? "" : " BAD");
	}
	close(fd);
	free(buf);
	say("REREAD-DONE passes=%llu bad=%llu\n", (unsigned long long)passes,
	    (unsigned long long)bad);
	return bad != 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc == 2 && !strcmp(argv[1], "mono")) {
		say("%llu\n", (unsigned long long)mono_ms());
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "ticker"))
		ticker();
	if (argc == 2 && !strcmp(argv[1], "cad"))
		return cad();
	if (argc == 5 && !strcmp(argv[1], "blkwrite"))
		return blkwrite(argv[2], argv[3], strtoull(argv[4], NULL, 10));
	if (argc == 4 && !strcmp(argv[1], "blkverify"))
		return blkverify(argv[2], strtoull(argv[3], NULL, 10));
	if (argc == 4 && !strcmp(argv[1], "blkreread"))
		return blkreread(argv[2], argv[3]);
	fprintf(stderr, "usage: api-tool mono | ticker | cad | blkwrite DEV STOP MAX | blkverify DEV N | "
			"blkreread DEV STOP\n");
	return 2;
}
