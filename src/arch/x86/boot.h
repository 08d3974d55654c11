/* SPDX-License-Identifier: MIT */
/*
 * boot.h - loading a Linux kernel into guest memory (x86-64).
 *
 * Two formats (Documentation/arch/x86/boot.rst, "THE LINUX/x86 BOOT PROTOCOL"):
 *
 *  bzImage:  [ boot sector | setup header @0x1f1 ... | setup code ]
 *            [ protected-mode kernel: (setup_sects+1)*512 .. end   ]
 *            loaded at pref_address (relocatable) or 0x100000, entered at
 *            load address + 0x200 in 64-bit mode (XLF_KERNEL_64), with
 *            RSI = boot_params ("zero page").
 *
 *  ELF vmlinux: PT_LOAD segments copied to their physical addresses.  When a
 *            Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY) is present the kernel is
 *            entered there in 32-bit protected mode with EBX = hvm_start_info
 *            (xen/include/public/arch-x86/hvm/start_info.h); otherwise at
 *            e_entry in 64-bit mode with RSI = boot_params.
 *
 * Every offset and length taken from the file is validated against the file
 * size and against guest RAM; errors are reported as text in @err.
 */
#ifndef VISOR_ARCH_X86_BOOT_H
#define VISOR_ARCH_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "../../mem/guest_mem.h"

enum boot_kind { BOOT_BZIMAGE, BOOT_ELF64, BOOT_PVH };

struct boot_image {
	enum boot_kind kind;
	uint64_t entry;          /* guest-physical entry point */
	uint64_t load_addr;      /* lowest guest-physical byte of the kernel */
	uint64_t load_end;       /* exclusive end of memory the kernel claims (incl. init_size) */
	uint32_t cmdline_max;    /* longest command line (bytes, without NUL) the kernel takes */
	uint64_t initrd_addr_max; /* highest address an initrd byte may occupy */
	uint16_t protocol;       /* boot protocol version (bzImage), 0 otherwise */
	uint8_t setup_header[0x290 - 0x1f1]; /* bzImage setup header bytes for the zero page */
	size_t setup_header_len;
};

/* Boot-protocol field offsets inside boot_params / the setup header. */
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_SETUP_SECTS 0x1f1
#define BP_SYSSIZE 0x1f4
#define BP_VID_MODE 0x1fa
#define BP_BOOT_FLAG 0x1fe
#define BP_JUMP 0x200
#define BP_HEADER 0x202
#define BP_VERSION 0x206
#define BP_TYPE_OF_LOADER 0x210
#define BP_LOADFLAGS 0x211
#define BP_CODE32_START 0x214
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_HEAP_END_PTR 0x224
#define BP_CMD_LINE_PTR 0x228
#define BP_INITRD_ADDR_MAX 0x22c
#define BP_KERNEL_ALIGNMENT 0x230
#define BP_RELOCATABLE 0x234
#define BP_XLOADFLAGS 0x236
#define BP_CMDLINE_SIZE 0x238
#define BP_PAYLOAD_OFFSET 0x248
#define BP_PAYLOAD_LENGTH 0x24c
#define BP_PREF_ADDRESS 0x258
#define BP_INIT_SIZE 0x260
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define BP_SIZE 4096

#define LOADFLAG_LOADED_HIGH 0x01
#define LOADFLAG_CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x01
#define XLF_CAN_BE_LOADED_ABOVE_4G 0x02

/* Parse @file (a bzImage or ELF vmlinux of @size bytes) and copy the kernel
 * into guest memory.  Returns 0, or -errno with a one-line reason in err. */
int boot_load_kernel(const uint8_t *file, size_t size, struct guest_mem *mem,
		     struct boot_image *img, char *err, size_t errlen);

/* Choose where an initrd of @size bytes goes: the highest 4 KiB-aligned
 * address below img->initrd_addr_max and the end of low RAM, above the
 * kernel.  Returns 0 and *gpa, or -ENOSPC with a reason in err. */
int boot_place_initrd(const struct guest_mem *mem, const struct boot_image *img, uint64_t size,
		      uint64_t *gpa, char *err, size_t errlen);

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));
#define E820_RAM 1
#define E820_RESERVED 2

/* The guest's physical memory map: RAM below the EBDA, the EBDA and BIOS
 * area reserved, RAM from 1 MiB to the hole, RAM above 4 GiB.  Returns the
 * number of entries written (<= max) or -ENOSPC. */
int e820_build(const struct guest_mem *mem, struct e820_entry *out, int max);

struct boot_params_in {
	uint64_t cmdline_gpa;
	uint32_t cmdline_len;    /* without NUL */
	uint64_t initrd_gpa;
	uint64_t initrd_size;
	uint64_t rsdp_gpa;
};

/* Build the zero page (BP_SIZE bytes) for a 64-bit entry. */
int boot_build_params(uint8_t *bp, const struct boot_image *img, const struct guest_mem *mem,
		      const struct boot_params_in *in);

/* Build the PVH hvm_start_info, its memory map and module list at
 * GPA_PVH_START_INFO.  Returns 0 or -errno. */
int boot_build_pvh(const struct guest_mem *mem, const struct boot_params_in *in);

#define PVH_START_MAGIC 0x336ec578u

#endif
