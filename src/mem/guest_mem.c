/* SPDX-License-Identifier: MIT */
#include "guest_mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

int guest_mem_init(struct guest_mem *m, uint64_t size, uint64_t hole_start, uint64_t hole_end)
{
	memset(m, 0, sizeof(*m));
	if (size == 0 || (size & 0xfff) || hole_end < hole_start || (hole_start & 0xfff) ||
	    (hole_end & 0xfff))
		return -EINVAL;
	uint64_t low = size < hole_start ? size : hole_start;
	uint64_t high = size - low;
	if (high && hole_end + high < hole_end)
		return -EINVAL;
	if (size > SIZE_MAX)
		return -ENOMEM;
	/* Start the mapping on a 2 MiB boundary (over-map by 2 MiB, trim both
	 * ends).  Guest-physical 2 MiB blocks then coincide with host 2 MiB
	 * blocks: transparent huge pages can back them and the nested page
	 * tables can use large pages, and a 2 MiB block the guest gives back
	 * (free page reporting, order 9) is one whole huge page that madvise
	 * frees at once instead of splitting it. */
	size_t align = size >= GUEST_MEM_ALIGN ? GUEST_MEM_ALIGN : 0;
	if ((size_t)size > SIZE_MAX - align)
		return -ENOMEM;
	uint8_t *raw = mmap(NULL, (size_t)size + align, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return -ENOMEM;
	uint8_t *p = raw;
	if (align) {
		size_t head = (align - ((uintptr_t)raw & (align - 1))) & (align - 1);
		p = raw + head;
		if (head)
			munmap(raw, head);
		if (align - head)
			munmap(p + size, align - head);
	}
	/* Guest RAM never ends up in a core file of the VMM (checklist F.41). */
	(void)madvise(p, (size_t)size, MADV_DONTDUMP);
	m->base = p;
	m->size = size;
	m->regions[m->nregions++] = (struct guest_region){.gpa = 0, .size = low, .hva = m->base};
	if (high)
		m->regions[m->nregions++] =
			(struct guest_region){.gpa = hole_end, .size = high, .hva = m->base + low};
	return 0;
}

void guest_mem_destroy(struct guest_mem *m)
{
	if (m->base)
		munmap(m->base, (size_t)m->size);
	memset(m, 0, sizeof(*m));
}

void *gpa_to_hva(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		len = 1;
	for (int i = 0; i < m->nregions; i++) {
		const struct guest_region *r = &m->regions[i];
		if (gpa < r->gpa)
			continue;
		uint64_t off = gpa - r->gpa;
		if (off >= r->size || len > r->size - off)
			continue;
		return r->hva + off;
	}
	return NULL;
}

int guest_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gpa_to_hva(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	return 0;
}

int guest_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = gpa_to_hva(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

uint64_t guest_region_end(const struct guest_mem *m, uint64_t gpa)
{
	for (int i = 0; i < m->nregions; i++)
		if (gpa >= m->regions[i].gpa && gpa - m->regions[i].gpa < m->regions[i].size)
			return m->regions[i].gpa + m->regions[i].size;
	return 0;
}
