/* SPDX-License-Identifier: MIT */
/*
 * dirtier: a guest workload that dirties memory at a set rate, for
 * migrating a busy guest (issue 11: "a 1 GiB guest dirtying 64 MiB/s";
 * bench/migrate, tests/lab/migrate-tests.sh).  Built into the guest
 * initrd as /bin/dirtier by tools/mkguest.
 *
 *   dirtier MIB RATE STOPFILE [full]
 *
 * Allocates MIB MiB, writes every 4 KiB page of it once (so all of it is
 * resident and not zero: a migration has to send it all), prints
 * "DIRTIER-READY mib=M rate=R prefault_ms=T", then every 10 ms (absolute
 * schedule) dirties the next RATE MiB/s x 10 ms worth of pages, going
 * round the buffer: one 8-byte word per page (a new value every time), or
 * the whole page with "full".  A migration has to send a page again
 * whichever part of it changed, so one word per page is the cheapest way
 * to dirty RATE MiB/s.  A tick that comes late is not made up (no bursts):
 * the rate actually reached is reported.  "DIRTIER-PROGRESS rate_mib_s=X"
 * every second (the last second), and when STOPFILE exists or on SIGTERM
 * "DIRTIER-DONE pages=N secs=S rate_mib_s=X late_ticks=L".
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define TICK_NS 10000000LL

static volatile sig_atomic_t stop_sig;
static void on_term(int sig)
{
	(void)sig;
	stop_sig = 1;
}

static int64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 4 || (argc > 4 && strcmp(argv[4], "full"))) {
		fprintf(stderr, "usage: dirtier MIB RATE_MIB_PER_S STOPFILE [full]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	long mib = atol(argv[1]), rate = atol(argv[2]);
	const char *stopfile = argv[3];
	int full = argc > 4;
	if (mib <= 0 || rate < 0) {
		fprintf(stderr, "dirtier: bad size or rate\n");
		return 2;
	}
	struct sigaction sa = {.sa_handler = on_term};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	size_t pages = (size_t)mib * (1048576 / PAGE);
	volatile uint8_t *buf = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		printf("DIRTIER-FAILED mmap %ld MiB: %s\n", mib, strerror(errno));
		return 1;
	}
	madvise((void *)buf, pages * PAGE, MADV_HUGEPAGE);
	uint64_t value = 1;
	int64_t t0 = mono_ns();
	for (size_t p = 0; p < pages; p++)
		*(volatile uint64_t *)(buf + p * PAGE) = value;
	printf("DIRTIER-READY mib=%ld rate=%ld prefault_ms=%lld\n", mib, rate,
	       (long long)((mono_ns() - t0) / 1000000));

	/* pages due per tick, in 1/1000 of a page to keep the fraction */
	uint64_t due_milli = (uint64_t)rate * 1048576 / PAGE * 1000 * (uint64_t)TICK_NS / 1000000000ULL;
	uint64_t owed = 0, total = 0, sec_pages = 0, late = 0;
	size_t at = 0;
	int64_t start = mono_ns(), next = start, sec_start = start;
	while (!stop_sig && access(stopfile, F_OK) != 0) {
		owed += due_milli;
		uint64_t n = owed / 1000;
		owed %= 1000;
		value++;
		for (uint64_t i = 0; i < n; i++) {
			volatile uint8_t *pg = buf + at * PAGE;
			if (full)
				for (size_t j = 0; j < PAGE; j += 8)
					*(volatile uint64_t *)(pg + j) = value + j;
			else
				*(volatile uint64_t *)pg = value;
			if (++at == pages)
				at = 0;
		}
		total += n;
		sec_pages += n;
		int64_t now = mono_ns();
		if (now - sec_start >= 1000000000LL) {
			printf("DIRTIER-PROGRESS rate_mib_s=%.1f\n",
			       (double)sec_pages * PAGE / 1048576.0 / ((double)(now - sec_start) / 1e9));
			sec_pages = 0;
			sec_start = now;
		}
		next += TICK_NS;
		if (next <= now) {
			late++;
			next = now + TICK_NS;
		}
		struct timespec ts = {next / 1000000000LL, next % 1000000000LL};
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !stop_sig)
			;
	}
	double secs = (double)(mono_ns() - start) / 1e9;
	printf("DIRTIER-DONE pages=%llu secs=%.1f rate_mib_s=%.1f late_ticks=%llu\n", (unsigned long long)total,
	       secs, secs > 0 ? (double)total * PAGE / 1048576.0 / secs : 0.0, (unsigned long long)late);
	return 0;
}
