/* SPDX-License-Identifier: MIT */
/*
 * cpudump: what a guest sees of its virtual CPU, one "KEY: value" line per
 * field, so the same guest on two VMMs can be compared field by field
 * (tests/stress/run --diag).  Runs as root inside the guest (static).
 *
 *   CPUID l.s        every leaf and subleaf the CPU reports (basic,
 *                    hypervisor 0x4000xxxx, extended 0x8000xxxx)
 *   XCR0, XCR1       xgetbv (when OSXSAVE)
 *   MSR 0x...        a fixed list of architectural, AMD and KVM MSRs read
 *                    through /dev/cpu/0/msr ("#GP" when the read faults)
 *   KERNEL ...       what Linux made of it: flags, bugs, clocksource,
 *                    clock event devices, selected boot messages
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void cpuid2(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}

static void show(uint32_t leaf, uint32_t sub, const uint32_t r[4])
{
	printf("CPUID %08x.%02x: %08x %08x %08x %08x\n", leaf, sub, r[0], r[1], r[2], r[3]);
}

static void leaf_range(uint32_t base)
{
	uint32_t r[4];
	cpuid2(base, 0, r);
	uint32_t max = r[0];
	if (max < base || max > base + 0x40)
		max = base + (max < base ? 0 : 0x40);
	for (uint32_t l = base; l <= max; l++) {
		switch (l) {
		case 0x4: /* cache parameters: until type 0 */
		case 0x8000001d:
			for (uint32_t s = 0; s < 16; s++) {
				cpuid2(l, s, r);
				show(l, s, r);
				if ((r[0] & 0x1f) == 0)
					break;
			}
			break;
		case 0x7:
		case 0x14:
		case 0x17:
		case 0x18: {
			cpuid2(l, 0, r);
			show(l, 0, r);
			uint32_t n = r[0] > 8 ? 8 : r[0];
			for (uint32_t s = 1; s <= n; s++) {
				cpuid2(l, s, r);
				show(l, s, r);
			}
			break;
		}
		case 0xb:
		case 0x1f: /* topology: until level type 0 */
			for (uint32_t s = 0; s < 8; s++) {
				cpuid2(l, s, r);
				show(l, s, r);
				if (((r[2] >> 8) & 0xff) == 0)
					break;
			}
			break;
		case 0xd: /* XSAVE: every component */
			for (uint32_t s = 0; s < 64; s++) {
				cpuid2(l, s, r);
				if (s < 2 || r[0] || r[1] || r[2] || r[3])
					show(l, s, r);
			}
			break;
		default:
			cpuid2(l, 0, r);
			show(l, 0, r);
		}
	}
}

static void xcr(void)
{
	uint32_t r[4];
	cpuid2(1, 0, r);
	if (!(r[2] & (1u << 27))) {
		printf("XCR0: no OSXSAVE\n");
		return;
	}
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	printf("XCR0: %08x%08x\n", hi, lo);
	cpuid2(0xd, 1, r);
	if (r[0] & (1u << 2)) { /* XGETBV with ECX=1 */
		__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
		printf("XCR1 (XINUSE): %08x%08x\n", hi, lo);
	}
}

static const uint32_t msrs[] = {
	0x1b,	    0x3a,	0x48,	    0x8b,	0xfe,	    0x10a,	0x174,	    0x175,
	0x176,	    0x179,	0x17a,	    0x1a0,	0x1d9,	    0x200,	0x201,	    0x202,
	0x203,	    0x204,	0x205,	    0x206,	0x207,	    0x250,	0x258,	    0x259,
	0x268,	    0x269,	0x26a,	    0x26b,	0x26c,	    0x26d,	0x26e,	    0x26f,
	0x277,	    0x2ff,	0x6e0,	    0xc0000080, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084,
	0xc0000103, 0xc0010010, 0xc0010015, 0xc0010114, 0xc0010117, 0xc0011029, 0xc0010140,
	0xc0010141, 0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04, 0x4b564d05,
	0x4b564d06, 0x4b564d07, 0x4b564d08,
};

static void msr(void)
{
	int fd = open("/dev/cpu/0/msr", O_RDONLY);
	if (fd < 0) {
		printf("MSR: /dev/cpu/0/msr not available (msr module)\n");
		return;
	}
	for (size_t i = 0; i < sizeof(msrs) / sizeof(msrs[0]); i++) {
		uint64_t v;
		if (pread(fd, &v, 8, msrs[i]) == 8)
			printf("MSR %08x: %016llx\n", msrs[i], (unsigned long long)v);
		else
			printf("MSR %08x: #GP\n", msrs[i]);
	}
	close(fd);
}

/* Lines of @path as "KERNEL key: ...": with @prefix, the first line that
 * starts with it (after the prefix); with @substr, every line containing
 * it; with neither, every line. */
static void file_lines(const char *key, const char *path, const char *prefix, const char *substr)
{
	FILE *f = fopen(path, "r");
	char line[8192];
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (prefix && !strncmp(line, prefix, strlen(prefix))) {
			printf("KERNEL %s: %s", key, line + strlen(prefix));
			break;
		}
		if (!prefix && (!substr || strstr(line, substr)))
			printf("KERNEL %s: %s", key, line);
	}
	fclose(f);
}

int main(void)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);
	leaf_range(0);
	leaf_range(0x40000000);
	leaf_range(0x80000000);
	xcr();
	msr();
	const char *cs = "/sys/devices/system/clocksource/clocksource0/";
	char path[128];
	file_lines("flags", "/proc/cpuinfo", "flags\t\t: ", NULL);
	file_lines("bugs", "/proc/cpuinfo", "bugs\t\t: ", NULL);
	file_lines("model name", "/proc/cpuinfo", "model name\t: ", NULL);
	snprintf(path, sizeof(path), "%scurrent_clocksource", cs);
	file_lines("clocksource", path, NULL, NULL);
	snprintf(path, sizeof(path), "%savailable_clocksource", cs);
	file_lines("clocksources", path, NULL, NULL);
	file_lines("clockevent", "/proc/timer_list", NULL, "Clock Event Device:");
	file_lines("broadcast", "/proc/timer_list", NULL, "Broadcast device");
	fflush(stdout);
	return 0;
}
