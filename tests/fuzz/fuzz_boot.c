/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the kernel loader (bzImage / ELF / PVH parsing) with
 * arbitrary file contents.  Any crash, sanitizer report or write outside
 * guest RAM is a bug.  Seeds: tests/fuzz/corpus-boot (small valid headers).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/arch/x86/boot.h"
#include "../../src/arch/x86/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	if (!mem.base && guest_mem_init(&mem, 64ULL << 20, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END))
		return 0;
	struct boot_image img;
	char err[256];
	if (boot_load_kernel(data, size, &mem, &img, err, sizeof(err)) == 0) {
		/* a loaded image must describe memory inside guest RAM */
		if (img.load_end < img.load_addr || !gpa_to_hva(&mem, img.load_addr, 1))
			__builtin_trap();
		uint64_t gpa;
		(void)boot_place_initrd(&mem, &img, size, &gpa, err, sizeof(err));
		uint8_t bp[BP_SIZE];
		struct boot_params_in in = {.cmdline_gpa = GPA_CMDLINE};
		(void)boot_build_params(bp, &img, &mem, &in);
	}
	return 0;
}
