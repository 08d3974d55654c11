/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the seccomp filter file parser (seccomp.c,
 * sec_load_filter_json) on arbitrary bytes.  A file it accepts must give
 * rules libseccomp can build (sec_rule_count >= 0 for every kind); a file
 * it refuses must leave the built-in rules in place (the vCPU still may
 * write).  Any crash, sanitizer report or trap is a bug.  Seeds:
 * tests/fuzz/corpus-seccomp_filter.
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>

#include "../../src/seccomp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	sec_reset();
	int r = sec_load_filter_json((const char *)data, size, err, sizeof(err));
	if (r == 0) {
		for (int k = 0; k < SEC_NKINDS; k++)
			if (sec_rule_count((enum sec_kind)k) < 0)
				__builtin_trap();
	} else {
		unsigned long long a[6] = {1, 0, 0, 0, 0, 0};
		if (!sec_allows(SEC_VCPU, __NR_write, a))
			__builtin_trap();
		if (!err[0])
			__builtin_trap();
	}
	sec_reset();
	return 0;
}
