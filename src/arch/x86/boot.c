/* SPDX-License-Identifier: MIT */
#include "boot.h"

#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../../util/bytes.h"
#include "layout.h"

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return code;
}

/* End of the RAM region that starts at 0 (the low region all boot data lives in). */
static uint64_t low_ram_end(const struct guest_mem *mem)
{
	return guest_region_end(mem, 0);
}

/* ---- bzImage -------------------------------------------------------- */

static int load_bzimage(const uint8_t *f, size_t size, struct guest_mem *mem,
			struct boot_image *img, char *err, size_t errlen)
{
	if (size < 0x264)
		return fail(err, errlen, -EINVAL, "bzImage too small (%zu bytes)", size);
	uint16_t version = get_le16(f + BP_VERSION);
	if (version < 0x020c)
		return fail(err, errlen, -ENOTSUP,
			    "boot protocol %u.%02u is too old (need 2.12+ with a 64-bit entry)",
			    version >> 8, version & 0xff);
	if (!(f[BP_LOADFLAGS] & LOADFLAG_LOADED_HIGH))
		return fail(err, errlen, -ENOTSUP, "zImage (not loaded high) is not supported");
	if (!(get_le16(f + BP_XLOADFLAGS) & XLF_KERNEL_64))
		return fail(err, errlen, -ENOTSUP, "kernel has no 64-bit entry point (XLF_KERNEL_64)");
	uint32_t setup_sects = f[BP_SETUP_SECTS] ? f[BP_SETUP_SECTS] : 4;
	uint64_t setup_size = ((uint64_t)setup_sects + 1) * 512;
	if (setup_size >= size)
		return fail(err, errlen, -EINVAL, "bzImage truncated: setup (%llu bytes) fills the file",
			    (unsigned long long)setup_size);
	uint64_t kernel_size = size - setup_size;
	uint64_t syssize = (uint64_t)get_le32(f + BP_SYSSIZE) * 16;
	if (syssize == 0 || syssize > kernel_size)
		return fail(err, errlen, -EINVAL,
			    "bzImage truncated: header says %llu kernel bytes, file has %llu",
			    (unsigned long long)syssize, (unsigned long long)kernel_size);
	uint32_t payload_off = get_le32(f + BP_PAYLOAD_OFFSET);
	uint32_t payload_len = get_le32(f + BP_PAYLOAD_LENGTH);
	if ((uint64_t)payload_off + payload_len > kernel_size)
		return fail(err, errlen, -EINVAL, "bzImage truncated: compressed payload past end of file");

	uint32_t align = get_le32(f + BP_KERNEL_ALIGNMENT);
	uint64_t load = 0x100000;
	if (f[BP_RELOCATABLE]) {
		load = get_le64(f + BP_PREF_ADDRESS);
		if (align && (align & (align - 1)) == 0) {
			if (load > UINT64_MAX - align)
				return fail(err, errlen, -EINVAL, "bzImage has a bad pref_address");
			load = (load + align - 1) & ~(uint64_t)(align - 1);
		}
		if (load < 0x100000)
			load = 0x100000;
	}
	uint64_t init_size = get_le32(f + BP_INIT_SIZE);
	if (init_size < kernel_size)
		init_size = kernel_size;
	uint64_t lowend = low_ram_end(mem);
	if (load > lowend || init_size > lowend - load)
		return fail(err, errlen, -ENOSPC,
			    "guest memory too small for this kernel: it needs %llu MiB below %llu MiB",
			    (unsigned long long)((load + init_size + 0xfffff) >> 20),
			    (unsigned long long)(lowend >> 20));
	if (guest_write(mem, load, f + setup_size, kernel_size))
		return fail(err, errlen, -EFAULT, "kernel does not fit in guest RAM");

	img->kind = BOOT_BZIMAGE;
	img->protocol = version;
	img->load_addr = load;
	img->load_end = load + init_size;
	img->entry = load + 0x200; /* 64-bit entry: startup_64 */
	uint32_t cmax = get_le32(f + BP_CMDLINE_SIZE);
	img->cmdline_max = cmax ? cmax : 255;
	img->initrd_addr_max = get_le32(f + BP_INITRD_ADDR_MAX);
	if (img->initrd_addr_max == 0)
		img->initrd_addr_max = 0x37ffffff;
	/* The header runs from 0x1f1 to the end given by the jump at 0x200. */
	size_t hdr_end = (size_t)BP_HEADER + f[BP_JUMP + 1];
	if (f[BP_JUMP] != 0xeb || hdr_end > 0x290)
		hdr_end = 0x290;
	if (hdr_end > size)
		hdr_end = size;
	img->setup_header_len = hdr_end - BP_SETUP_SECTS;
	memcpy(img->setup_header, f + BP_SETUP_SECTS, img->setup_header_len);
	return 0;
}

/* ---- ELF vmlinux ---------------------------------------------------- */

#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* Scan [p, p+len) for the Xen PVH entry note.  Returns 0 if found. */
static int find_pvh_note(const uint8_t *p, uint64_t len, uint64_t *entry)
{
	uint64_t off = 0;
	while (len - off >= 12) {
		uint32_t namesz = get_le32(p + off), descsz = get_le32(p + off + 4);
		uint32_t type = get_le32(p + off + 8);
		uint64_t name_off = off + 12;
		uint64_t desc_off = name_off + (((uint64_t)namesz + 3) & ~3ULL);
		uint64_t next = desc_off + (((uint64_t)descsz + 3) & ~3ULL);
		if (desc_off > len || next > len || next <= off)
			return -1;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 && !memcmp(p + name_off, "Xen", 4)) {
			if (descsz == 4)
				*entry = get_le32(p + desc_off);
			else if (descsz == 8)
				*entry = get_le64(p + desc_off);
			else
				return -1;
			return 0;
		}
		off = next;
	}
	return -1;
}

static int load_elf(const uint8_t *f, size_t size, struct guest_mem *mem, struct boot_image *img,
		    char *err, size_t errlen)
{
	if (size < sizeof(Elf64_Ehdr))
		return fail(err, errlen, -EINVAL, "ELF file truncated (%zu bytes)", size);
	Elf64_Ehdr eh;
	memcpy(&eh, f, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
		return fail(err, errlen, -ENOTSUP, "ELF kernel is not 64-bit little-endian");
	if (eh.e_machine != EM_X86_64 || (eh.e_type != ET_EXEC && eh.e_type != ET_DYN))
		return fail(err, errlen, -ENOTSUP, "ELF kernel is not an x86-64 executable");
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64)
		return fail(err, errlen, -EINVAL, "ELF kernel has a bad program header table");
	uint64_t ph_end = eh.e_phoff + (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr);
	if (eh.e_phoff > size || ph_end > size || ph_end < eh.e_phoff)
		return fail(err, errlen, -EINVAL, "ELF truncated: program headers past end of file");

	uint64_t lo = UINT64_MAX, hi = 0, pvh_entry = 0;
	int have_pvh = 0, nload = 0;
	uint64_t entry_ok = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, f + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_offset > size || ph.p_filesz > size - ph.p_offset)
			return fail(err, errlen, -EINVAL, "ELF truncated: segment %u past end of file", i);
		if (ph.p_type == PT_NOTE && !have_pvh)
			have_pvh = find_pvh_note(f + ph.p_offset, ph.p_filesz, &pvh_entry) == 0;
		if (ph.p_type != PT_LOAD)
			continue;
		if (ph.p_filesz > ph.p_memsz || ph.p_paddr + ph.p_memsz < ph.p_paddr)
			return fail(err, errlen, -EINVAL, "ELF segment %u has bad sizes", i);
		if (ph.p_memsz == 0)
			continue;
		uint8_t *dst = gpa_to_hva(mem, ph.p_paddr, ph.p_memsz);
		if (!dst || ph.p_paddr < GPA_HIGH_MEMORY)
			return fail(err, errlen, -ENOSPC,
				    "ELF segment %u (0x%llx-0x%llx) is outside guest RAM above 1 MiB", i,
				    (unsigned long long)ph.p_paddr,
				    (unsigned long long)(ph.p_paddr + ph.p_memsz));
		memcpy(dst, f + ph.p_offset, ph.p_filesz);
		memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
		if (ph.p_paddr < lo)
			lo = ph.p_paddr;
		if (ph.p_paddr + ph.p_memsz > hi)
			hi = ph.p_paddr + ph.p_memsz;
		if (eh.e_entry >= ph.p_paddr && eh.e_entry - ph.p_paddr < ph.p_memsz)
			entry_ok = 1;
		/* the PVH entry is a physical address too */
		nload++;
	}
	if (nload == 0)
		return fail(err, errlen, -EINVAL, "ELF kernel has no loadable segments");
	if (have_pvh && (pvh_entry < lo || pvh_entry >= hi))
		return fail(err, errlen, -EINVAL, "PVH entry 0x%llx is outside the loaded kernel",
			    (unsigned long long)pvh_entry);
	if (!have_pvh && !entry_ok)
		return fail(err, errlen, -EINVAL, "ELF entry point 0x%llx is outside the loaded kernel",
			    (unsigned long long)eh.e_entry);
	img->kind = have_pvh ? BOOT_PVH : BOOT_ELF64;
	img->entry = have_pvh ? pvh_entry : eh.e_entry;
	img->load_addr = lo;
	img->load_end = hi;
	img->cmdline_max = 2047; /* x86 COMMAND_LINE_SIZE - 1 */
	img->initrd_addr_max = 0xffffffff;
	img->protocol = 0;
	img->setup_header_len = 0;
	return 0;
}

int boot_load_kernel(const uint8_t *file, size_t size, struct guest_mem *mem,
		     struct boot_image *img, char *err, size_t errlen)
{
	memset(img, 0, sizeof(*img));
	if (size >= 4 && !memcmp(file, ELFMAG, SELFMAG))
		return load_elf(file, size, mem, img, err, errlen);
	if (size >= 0x206 && get_le16(file + BP_BOOT_FLAG) == 0xaa55 &&
	    !memcmp(file + BP_HEADER, "HdrS", 4))
		return load_bzimage(file, size, mem, img, err, errlen);
	return fail(err, errlen, -EINVAL, "not a Linux kernel (neither a bzImage nor an ELF vmlinux)");
}

int boot_place_initrd(const struct guest_mem *mem, const struct boot_image *img, uint64_t size,
		      uint64_t *gpa, char *err, size_t errlen)
{
	uint64_t top = low_ram_end(mem);
	if (img->initrd_addr_max < UINT64_MAX && img->initrd_addr_max + 1 < top)
		top = img->initrd_addr_max + 1;
	uint64_t bottom = (img->load_end + 0xfff) & ~0xfffULL;
	if (size == 0 || size > top || ((top - size) & ~0xfffULL) < bottom)
		return fail(err, errlen, -ENOSPC,
			    "initrd (%llu KiB) does not fit in guest memory: %llu KiB free between the "
			    "kernel and 0x%llx; give the guest more --memory",
			    (unsigned long long)(size >> 10),
			    (unsigned long long)(top > bottom ? (top - bottom) >> 10 : 0),
			    (unsigned long long)top);
	*gpa = (top - size) & ~0xfffULL;
	return 0;
}

int e820_build(const struct guest_mem *mem, struct e820_entry *out, int max)
{
	struct e820_entry tmp[8];
	int n = 0;
	uint64_t low = low_ram_end(mem);
	tmp[n++] = (struct e820_entry){0, low < GPA_EBDA ? low : GPA_EBDA, E820_RAM};
	tmp[n++] = (struct e820_entry){GPA_EBDA, GPA_EBDA_END - GPA_EBDA, E820_RESERVED};
	tmp[n++] = (struct e820_entry){GPA_BIOS_AREA, GPA_BIOS_AREA_END - GPA_BIOS_AREA, E820_RESERVED};
	if (low > GPA_HIGH_MEMORY)
		tmp[n++] = (struct e820_entry){GPA_HIGH_MEMORY, low - GPA_HIGH_MEMORY, E820_RAM};
	/* The PCI ECAM window, so Linux trusts the MCFG early (PCI Firmware
	 * spec 3.0 §4.1.2: the range must be reserved). */
	tmp[n++] = (struct e820_entry){GPA_PCI_ECAM, PCI_ECAM_SIZE, E820_RESERVED};
	for (int i = 0; i < mem->nregions; i++)
		if (mem->regions[i].gpa >= GPA_MMIO_HOLE_END)
			tmp[n++] = (struct e820_entry){mem->regions[i].gpa, mem->regions[i].size, E820_RAM};
	if (n > max)
		return -ENOSPC;
	memcpy(out, tmp, (size_t)n * sizeof(tmp[0]));
	return n;
}

int boot_build_params(uint8_t *bp, const struct boot_image *img, const struct guest_mem *mem,
		      const struct boot_params_in *in)
{
	memset(bp, 0, BP_SIZE);
	if (img->kind == BOOT_BZIMAGE) {
		memcpy(bp + BP_SETUP_SECTS, img->setup_header, img->setup_header_len);
	} else {
		/* A vmlinux has no setup header: write the fields the kernel reads. */
		put_le16(bp + BP_BOOT_FLAG, 0xaa55);
		memcpy(bp + BP_HEADER, "HdrS", 4);
		put_le16(bp + BP_VERSION, 0x020f);
		put_le32(bp + BP_KERNEL_ALIGNMENT, 0x1000000);
	}
	put_le16(bp + BP_VID_MODE, 0xffff); /* "normal" */
	bp[BP_TYPE_OF_LOADER] = 0xff;   /* undefined boot loader */
	bp[BP_LOADFLAGS] |= LOADFLAG_LOADED_HIGH;
	put_le32(bp + BP_CMD_LINE_PTR, (uint32_t)in->cmdline_gpa);
	put_le32(bp + BP_EXT_CMD_LINE_PTR, (uint32_t)(in->cmdline_gpa >> 32));
	put_le32(bp + BP_CMDLINE_SIZE, img->cmdline_max);
	if (in->initrd_size) {
		put_le32(bp + BP_RAMDISK_IMAGE, (uint32_t)in->initrd_gpa);
		put_le32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(in->initrd_gpa >> 32));
		put_le32(bp + BP_RAMDISK_SIZE, (uint32_t)in->initrd_size);
		put_le32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)(in->initrd_size >> 32));
	}
	if (in->rsdp_gpa)
		put_le64(bp + BP_ACPI_RSDP_ADDR, in->rsdp_gpa);
	struct e820_entry e[BP_E820_MAX];
	int n = e820_build(mem, e, BP_E820_MAX);
	if (n < 0)
		return n;
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	memcpy(bp + BP_E820_TABLE, e, (size_t)n * sizeof(e[0]));
	return 0;
}

/* hvm_start_info v1 and its tables, little-endian (start_info.h):
 *
 *   0x00 magic  0x04 version  0x08 flags  0x0c nr_modules
 *   0x10 modlist_paddr  0x18 cmdline_paddr  0x20 rsdp_paddr
 *   0x28 memmap_paddr   0x30 memmap_entries 0x34 reserved      (56 bytes)
 *   modlist entry: paddr, size, cmdline_paddr, reserved        (32 bytes)
 *   memmap entry:  addr, size, type(u32), reserved(u32)        (24 bytes)
 */
int boot_build_pvh(const struct guest_mem *mem, const struct boot_params_in *in)
{
	struct e820_entry e[16];
	int n = e820_build(mem, e, 16);
	if (n < 0)
		return n;
	uint8_t buf[56 + 32 + 16 * 24];
	memset(buf, 0, sizeof(buf));
	uint64_t base = GPA_PVH_START_INFO;
	uint64_t mod = base + 56, map = mod + 32;
	put_le32(buf + 0x00, PVH_START_MAGIC);
	put_le32(buf + 0x04, 1);
	put_le32(buf + 0x0c, in->initrd_size ? 1 : 0);
	put_le64(buf + 0x10, in->initrd_size ? mod : 0);
	put_le64(buf + 0x18, in->cmdline_gpa);
	put_le64(buf + 0x20, in->rsdp_gpa);
	put_le64(buf + 0x28, map);
	put_le32(buf + 0x30, (uint32_t)n);
	put_le64(buf + 56 + 0, in->initrd_gpa);
	put_le64(buf + 56 + 8, in->initrd_size);
	for (int i = 0; i < n; i++) {
		uint8_t *p = buf + 56 + 32 + i * 24;
		put_le64(p, e[i].addr);
		put_le64(p + 8, e[i].size);
		put_le32(p + 16, e[i].type);
	}
	return guest_write(mem, base, buf, 56 + 32 + (uint64_t)n * 24);
}
