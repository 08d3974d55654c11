/* SPDX-License-Identifier: MIT */
/* Kernel loading: bzImage and ELF parsing (valid, truncated, hostile),
 * initrd placement, e820, boot_params and PVH start info. */
#include "../../src/arch/x86/boot.h"

#include <elf.h>
#include <errno.h>

#include "../../src/arch/x86/layout.h"
#include "test.h"

#define MEM (64ULL << 20)

static void w16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void w32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void w64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* A minimal bzImage: 1 setup sector + boot sector, then `ksize` kernel bytes. */
static uint8_t *make_bzimage(size_t ksize, size_t *out)
{
	size_t size = 1024 + ksize;
	uint8_t *f = calloc(1, size);
	f[BP_SETUP_SECTS] = 1;
	w32(f + BP_SYSSIZE, (uint32_t)((ksize + 15) / 16));
	w16(f + BP_BOOT_FLAG, 0xaa55);
	f[BP_JUMP] = 0xeb;
	f[BP_JUMP + 1] = 0x66;
	memcpy(f + BP_HEADER, "HdrS", 4);
	w16(f + BP_VERSION, 0x020f);
	f[BP_LOADFLAGS] = LOADFLAG_LOADED_HIGH;
	w32(f + BP_INITRD_ADDR_MAX, 0x7fffffff);
	w32(f + BP_KERNEL_ALIGNMENT, 0x200000);
	f[BP_RELOCATABLE] = 1;
	w16(f + BP_XLOADFLAGS, XLF_KERNEL_64);
	w32(f + BP_CMDLINE_SIZE, 2047);
	w64(f + BP_PREF_ADDRESS, 0x1000000);
	w32(f + BP_INIT_SIZE, 0x400000);
	for (size_t i = 0; i < ksize; i++)
		f[1024 + i] = (uint8_t)(i * 7);
	*out = size;
	return f;
}

TEST(bzimage_loads_at_pref_address)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, MEM, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	size_t size;
	uint8_t *f = make_bzimage(8192, &size);
	struct boot_image img;
	char err[256] = "";
	CHECK_EQ(boot_load_kernel(f, size, &m, &img, err, sizeof(err)), 0);
	CHECK_EQ(img.kind, BOOT_BZIMAGE);
	CHECK_EQ(img.load_addr, 0x1000000);
	CHECK_EQ(img.entry, 0x1000200);
	CHECK_EQ(img.load_end, 0x1400000);
	CHECK_EQ(img.cmdline_max, 2047);
	CHECK(memcmp(gpa_to_hva(&m, 0x1000000, 8192), f + 1024, 8192) == 0);
	CHECK_EQ(img.setup_header_len, 0x268 - 0x1f1);
	free(f);
	guest_mem_destroy(&m);
}

TEST(bzimage_truncated_at_every_size_is_rejected)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, MEM, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	size_t size;
	uint8_t *f = make_bzimage(4096, &size);
	for (size_t n = 0; n < size; n += (n < 0x300 ? 1 : 97)) {
		uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees overreads */
		memcpy(copy, f, n);
		struct boot_image img;
		char err[256] = "";
		int r = boot_load_kernel(copy, n, &m, &img, err, sizeof(err));
		if (r == 0)
			printf("  accepted truncated size %zu\n", n);
		CHECK(r < 0);
		CHECK(err[0] != 0);
		free(copy);
	}
	free(f);
	guest_mem_destroy(&m);
}

TEST(bzimage_hostile_headers)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, MEM, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	size_t size;
	struct boot_image img;
	char err[256];
	uint8_t *f = make_bzimage(4096, &size);
	/* setup_sects pointing past the end */
	f[BP_SETUP_SECTS] = 0xff;
	CHECK(boot_load_kernel(f, size, &m, &img, err, sizeof(err)) < 0);
	f[BP_SETUP_SECTS] = 1;
	/* old protocol */
	w16(f + BP_VERSION, 0x0200);
	CHECK_EQ(boot_load_kernel(f, size, &m, &img, err, sizeof(err)), (unsigned long long)-ENOTSUP);
	w16(f + BP_VERSION, 0x020f);
	/* no 64-bit entry */
	w16(f + BP_XLOADFLAGS, 0);
	CHECK_EQ(boot_load_kernel(f, size, &m, &img, err, sizeof(err)), (unsigned long long)-ENOTSUP);
	w16(f + BP_XLOADFLAGS, XLF_KERNEL_64);
	/* huge pref_address / init_size: does not fit, no write outside RAM */
	w64(f + BP_PREF_ADDRESS, 0xfffffffffff00000ULL);
	CHECK(boot_load_kernel(f, size, &m, &img, err, sizeof(err)) < 0);
	w64(f + BP_PREF_ADDRESS, 0x1000000);
	w32(f + BP_INIT_SIZE, 0xffffffff);
	CHECK_EQ(boot_load_kernel(f, size, &m, &img, err, sizeof(err)), (unsigned long long)-ENOSPC);
	w32(f + BP_INIT_SIZE, 0x400000);
	/* payload offset/length past the end */
	w32(f + BP_PAYLOAD_OFFSET, 0xfffffff0);
	w32(f + BP_PAYLOAD_LENGTH, 0x100);
	CHECK(boot_load_kernel(f, size, &m, &img, err, sizeof(err)) < 0);
	free(f);
	/* garbage */
	uint8_t junk[4096];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 131 + 7);
	CHECK_EQ(boot_load_kernel(junk, sizeof(junk), &m, &img, err, sizeof(err)), (unsigned long long)-EINVAL);
	CHECK(strstr(err, "not a Linux kernel") != NULL);
	guest_mem_destroy(&m);
}

/* ELF with one PT_LOAD at paddr and an optional PVH note. */
static uint8_t *make_elf(uint64_t paddr, uint64_t entry, int pvh, size_t *out)
{
	size_t code = 256, note_sz = 12 + 4 + 8;
	size_t size = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr) + note_sz + code;
	uint8_t *f = calloc(1, size);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)f;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_entry = entry;
	eh->e_phoff = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 2;
	Elf64_Phdr *ph = (Elf64_Phdr *)(f + sizeof(Elf64_Ehdr));
	size_t note_off = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
	ph[0] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = note_off, .p_filesz = note_sz};
	ph[1] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = note_off + note_sz, .p_paddr = paddr,
			     .p_vaddr = paddr, .p_filesz = code, .p_memsz = code + 4096};
	uint8_t *n = f + note_off;
	w32(n, 4);
	w32(n + 4, 8);
	w32(n + 8, pvh ? 18 : 5);
	memcpy(n + 12, "Xen", 4);
	w64(n + 16, paddr + 0x10);
	memset(f + note_off + note_sz, 0x90, code);
	*out = size;
	return f;
}

TEST(elf_pvh_and_64bit_entries)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, MEM, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	size_t size;
	struct boot_image img;
	char err[256];
	uint8_t *f = make_elf(0x1000000, 0x1000020, 1, &size);
	CHECK_EQ(boot_load_kernel(f, size, &m, &img, err, sizeof(err)), 0);
	CHECK_EQ(img.kind, BOOT_PVH);
	CHECK_EQ(img.entry, 0x1000010);
	uint8_t *p = gpa_to_hva(&m, 0x1000000, 256 + 4096);
	CHECK_EQ(p[0], 0x90);
	CHECK_EQ(p[256], 0); /* bss zeroed */
	free(f);
	f = make_elf(0x1000000, 0x1000020, 0, &size);
	CHECK_EQ(boot_load_kernel(f, size, &m, &img, err, sizeof(err)), 0);
	CHECK_EQ(img.kind, BOOT_ELF64);
	CHECK_EQ(img.entry, 0x1000020);
	free(f);
	guest_mem_destroy(&m);
}

TEST(elf_hostile)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, MEM, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	size_t size;
	struct boot_image img;
	char err[256];
	/* segment outside RAM, wrapping, below 1 MiB, entry outside */
	uint8_t *f = make_elf(MEM - 16, MEM - 16, 0, &size);
	CHECK_EQ(boot_load_kernel(f, size, &m, &img, err, sizeof(err)), (unsigned long long)-ENOSPC);
	free(f);
	f = make_elf(0xfffffffffffff000ULL, 0, 0, &size);
	CHECK(boot_load_kernel(f, size, &m, &img, err, sizeof(err)) < 0);
	free(f);
	f = make_elf(0x1000, 0x1000, 0, &size);
	CHECK(boot_load_kernel(f, size, &m, &img, err, sizeof(err)) < 0);
	free(f);
	f = make_elf(0x1000000, 0x5000000, 0, &size);
	CHECK(boot_load_kernel(f, size, &m, &img, err, sizeof(err)) < 0);
	free(f);
	/* file offsets past the end, truncated everywhere */
	f = make_elf(0x1000000, 0x1000020, 1, &size);
	Elf64_Phdr *ph = (Elf64_Phdr *)(f + sizeof(Elf64_Ehdr));
	ph[1].p_offset = 0xffffffffffffff00ULL;
	CHECK(boot_load_kernel(f, size, &m, &img, err, sizeof(err)) < 0);
	free(f);
	f = make_elf(0x1000000, 0x1000020, 1, &size);
	for (size_t n = 0; n < size; n++) {
		uint8_t *c = malloc(n ? n : 1);
		memcpy(c, f, n);
		CHECK(boot_load_kernel(c, n, &m, &img, err, sizeof(err)) < 0);
		free(c);
	}
	/* a note with a huge size must not be followed past the segment */
	f[sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr) + 4] = 0xff;
	f[sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr) + 7] = 0xff;
	CHECK_EQ(boot_load_kernel(f, size, &m, &img, err, sizeof(err)), 0);
	CHECK_EQ(img.kind, BOOT_ELF64);
	free(f);
	guest_mem_destroy(&m);
}

TEST(initrd_placement)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, MEM, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	struct boot_image img = {.load_end = 0x1400000, .initrd_addr_max = 0x7fffffff};
	uint64_t gpa;
	char err[256];
	CHECK_EQ(boot_place_initrd(&m, &img, 1000000, &gpa, err, sizeof(err)), 0);
	CHECK_EQ(gpa & 0xfff, 0);
	CHECK(gpa + 1000000 <= MEM);
	CHECK(gpa >= 0x1400000);
	/* honour initrd_addr_max */
	img.initrd_addr_max = 0x1ffffff;
	CHECK_EQ(boot_place_initrd(&m, &img, 4096, &gpa, err, sizeof(err)), 0);
	CHECK(gpa + 4096 <= 0x2000000);
	/* too big */
	img.initrd_addr_max = 0x7fffffff;
	CHECK_EQ(boot_place_initrd(&m, &img, MEM, &gpa, err, sizeof(err)), (unsigned long long)-ENOSPC);
	CHECK(strstr(err, "does not fit") != NULL);
	CHECK_EQ(boot_place_initrd(&m, &img, UINT64_MAX, &gpa, err, sizeof(err)), (unsigned long long)-ENOSPC);
	guest_mem_destroy(&m);
}

TEST(e820_small_and_large_guests)
{
	struct guest_mem m;
	struct e820_entry e[16];
	CHECK_EQ(guest_mem_init(&m, MEM, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	int n = e820_build(&m, e, 16);
	CHECK_EQ(n, 5);
	CHECK_EQ(e[0].addr, 0);
	CHECK_EQ(e[0].size, GPA_EBDA);
	CHECK_EQ(e[0].type, E820_RAM);
	CHECK_EQ(e[1].type, E820_RESERVED);
	CHECK_EQ(e[2].addr, GPA_BIOS_AREA);
	CHECK_EQ(e[3].addr, 0x100000);
	CHECK_EQ(e[3].addr + e[3].size, MEM);
	CHECK_EQ(e[4].addr, GPA_PCI_ECAM);
	CHECK_EQ(e[4].type, E820_RESERVED);
	CHECK_EQ(e820_build(&m, e, 2), (unsigned long long)-ENOSPC);
	guest_mem_destroy(&m);
	/* 4 GiB guest: split around the hole */
	CHECK_EQ(guest_mem_init(&m, 4ULL << 30, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	n = e820_build(&m, e, 16);
	CHECK_EQ(n, 6);
	CHECK_EQ(e[3].addr + e[3].size, GPA_MMIO_HOLE);
	CHECK_EQ(e[5].addr, GPA_MMIO_HOLE_END);
	CHECK_EQ(e[5].size, (4ULL << 30) - GPA_MMIO_HOLE);
	guest_mem_destroy(&m);
}

TEST(boot_params_fields)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, MEM, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	size_t size;
	uint8_t *f = make_bzimage(4096, &size);
	struct boot_image img;
	char err[256];
	CHECK_EQ(boot_load_kernel(f, size, &m, &img, err, sizeof(err)), 0);
	uint8_t bp[BP_SIZE];
	struct boot_params_in in = {.cmdline_gpa = GPA_CMDLINE, .cmdline_len = 10,
				    .initrd_gpa = 0x3000000, .initrd_size = 12345, .rsdp_gpa = 0xe0000};
	CHECK_EQ(boot_build_params(bp, &img, &m, &in), 0);
	uint32_t v32;
	uint64_t v64;
	memcpy(&v32, bp + BP_CMD_LINE_PTR, 4);
	CHECK_EQ(v32, GPA_CMDLINE);
	memcpy(&v32, bp + BP_RAMDISK_IMAGE, 4);
	CHECK_EQ(v32, 0x3000000);
	memcpy(&v32, bp + BP_RAMDISK_SIZE, 4);
	CHECK_EQ(v32, 12345);
	memcpy(&v64, bp + BP_ACPI_RSDP_ADDR, 8);
	CHECK_EQ(v64, 0xe0000);
	CHECK_EQ(bp[BP_TYPE_OF_LOADER], 0xff);
	CHECK_EQ(bp[BP_E820_ENTRIES], 5);
	CHECK(memcmp(bp + BP_HEADER, "HdrS", 4) == 0);
	/* PVH start info */
	CHECK_EQ(boot_build_pvh(&m, &in), 0);
	uint8_t *si = gpa_to_hva(&m, GPA_PVH_START_INFO, 56);
	memcpy(&v32, si, 4);
	CHECK_EQ(v32, PVH_START_MAGIC);
	memcpy(&v32, si + 0x0c, 4);
	CHECK_EQ(v32, 1); /* one module: the initrd */
	memcpy(&v32, si + 0x30, 4);
	CHECK_EQ(v32, 5);
	free(f);
	guest_mem_destroy(&m);
}

TEST(real_debian_kernel_if_built)
{
	/* When tools/mkguest has run, parse the real bzImage and vmlinux. */
	static const char *const files[] = {"build/guest/vmlinuz", "build/guest/vmlinux"};
	for (int i = 0; i < 2; i++) {
		FILE *fp = fopen(files[i], "rb");
		if (!fp)
			continue;
		fseek(fp, 0, SEEK_END);
		long sz = ftell(fp);
		fseek(fp, 0, SEEK_SET);
		uint8_t *buf = malloc((size_t)sz);
		CHECK_EQ(fread(buf, 1, (size_t)sz, fp), (size_t)sz);
		fclose(fp);
		struct guest_mem m;
		CHECK_EQ(guest_mem_init(&m, 256ULL << 20, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
		struct boot_image img;
		char err[256] = "";
		int r = boot_load_kernel(buf, (size_t)sz, &m, &img, err, sizeof(err));
		if (r)
			printf("  %s: %s\n", files[i], err);
		CHECK_EQ(r, 0);
		CHECK_EQ(img.kind, i == 0 ? BOOT_BZIMAGE : BOOT_PVH);
		free(buf);
		guest_mem_destroy(&m);
	}
}

TEST(guest_mem_checked_door)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, 0, 0, 0), (unsigned long long)-EINVAL);
	CHECK_EQ(guest_mem_init(&m, 4097, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), (unsigned long long)-EINVAL);
	CHECK_EQ(guest_mem_init(&m, (3ULL << 30) + (1ULL << 20), GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	CHECK_EQ(m.nregions, 2);
	CHECK(gpa_to_hva(&m, 0, 1) != NULL);
	CHECK(gpa_to_hva(&m, GPA_MMIO_HOLE - 4, 4) != NULL);
	CHECK(gpa_to_hva(&m, GPA_MMIO_HOLE - 4, 8) == NULL); /* straddles into the hole */
	CHECK(gpa_to_hva(&m, GPA_MMIO_HOLE, 1) == NULL);
	CHECK(gpa_to_hva(&m, GPA_MMIO_HOLE_END, 1ULL << 20) != NULL);
	CHECK(gpa_to_hva(&m, GPA_MMIO_HOLE_END, (1ULL << 20) + 1) == NULL);
	CHECK(gpa_to_hva(&m, UINT64_MAX, 2) == NULL);     /* wraps */
	CHECK(gpa_to_hva(&m, 16, UINT64_MAX) == NULL);
	uint8_t b = 1;
	CHECK_EQ(guest_write(&m, GPA_MMIO_HOLE, &b, 1), (unsigned long long)-EFAULT);
	CHECK_EQ(guest_write(&m, 0x1000, &b, 1), 0);
	CHECK_EQ(guest_read(&m, 0x1000, &b, 1), 0);
	CHECK_EQ(b, 1);
	guest_mem_destroy(&m);
	guest_mem_destroy(&m);
}

TEST(guest_mem_is_huge_page_aligned)
{
	/* Several sizes and several mappings in a row (so the kernel's
	 * choice of address varies): RAM starts on a 2 MiB boundary, every
	 * page of it is usable, and the high region lies 2 MiB-congruent too. */
	static const uint64_t sizes[] = {2ULL << 20, (2ULL << 20) + 4096, 64ULL << 20, 5ULL << 20};
	struct guest_mem ms[8];
	for (int i = 0; i < 8; i++) {
		struct guest_mem *m = &ms[i];
		uint64_t sz = sizes[i % 4];
		CHECK_EQ(guest_mem_init(m, sz, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
		CHECK_EQ((uintptr_t)m->base % GUEST_MEM_ALIGN, 0);
		uint8_t *first = gpa_to_hva(m, 0, 1), *last = gpa_to_hva(m, sz - 1, 1);
		CHECK(first && last);
		*first = 1;
		*last = 2; /* the trimmed tail must not cut into RAM */
		CHECK_EQ(*first + *last, 3);
		CHECK(gpa_to_hva(m, sz, 1) == NULL);
	}
	for (int i = 0; i < 8; i++)
		guest_mem_destroy(&ms[i]);
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, 8192, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0); /* small: no alignment needed */
	*(uint8_t *)gpa_to_hva(&m, 8191, 1) = 1;
	guest_mem_destroy(&m);
	CHECK_EQ(guest_mem_init(&m, (3ULL << 30) + (2ULL << 20), GPA_MMIO_HOLE, GPA_MMIO_HOLE_END), 0);
	CHECK_EQ((uintptr_t)gpa_to_hva(&m, GPA_MMIO_HOLE_END, 1) % GUEST_MEM_ALIGN, 0);
	guest_mem_destroy(&m);
}

TEST_MAIN()
