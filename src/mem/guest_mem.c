/* SPDX-License-Identifier: MIT */
#include "guest_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Map guest RAM: anonymous, or with @fd >= 0 a private (copy-on-write)
 * mapping of that file's first @size bytes (@shared: a shared mapping). */
static int mem_map(struct guest_mem *m, uint64_t size, uint64_t hole_start, uint64_t hole_end,
		   int fd, bool shared)
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
	if (fd >= 0) {
		/* the file replaces the anonymous pages in place: nothing is
		 * read now, pages come in on first touch and stay shared with
		 * the page cache (and every other clone) until written */
		void *f = mmap(p, (size_t)size, PROT_READ | PROT_WRITE,
			       (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED | MAP_NORESERVE, fd,
			       0);
		if (f == MAP_FAILED) {
			int r = -errno;
			munmap(p, (size_t)size);
			return r;
		}
	}
	/* Guest RAM never ends up in a core file of the VMM (checklist F.41). */
	(void)madvise(p, (size_t)size, MADV_DONTDUMP);
	m->base = p;
	m->size = size;
	m->memfd = -1;
	m->regions[m->nregions++] = (struct guest_region){.gpa = 0, .size = low, .hva = m->base};
	if (high)
		m->regions[m->nregions++] =
			(struct guest_region){.gpa = hole_end, .size = high, .hva = m->base + low};
	return 0;
}

int guest_mem_init(struct guest_mem *m, uint64_t size, uint64_t hole_start, uint64_t hole_end)
{
	return mem_map(m, size, hole_start, hole_end, -1, false);
}

/* @fd is a regular file of exactly @size bytes: 0, -EBADF, -EINVAL or
 * -ERANGE. */
static int check_file(int fd, uint64_t size)
{
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb))
		return -EBADF;
	if (!S_ISREG(sb.st_mode))
		return -EINVAL;
	return (uint64_t)sb.st_size == size ? 0 : -ERANGE;
}

int guest_mem_init_shared(struct guest_mem *m, int fd, uint64_t size, uint64_t hole_start,
			  uint64_t hole_end)
{
	memset(m, 0, sizeof(*m));
	int r0 = check_file(fd, size);
	if (r0)
		return r0;
	int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (own < 0)
		return -errno;
	int r = mem_map(m, size, hole_start, hole_end, own, true);
	if (r) {
		close(own);
		return r;
	}
	m->memfd = own;
	m->shared = true;
	return 0;
}

int guest_mem_init_memfd(struct guest_mem *m, uint64_t size, uint64_t hole_start,
			 uint64_t hole_end)
{
	int fd = memfd_create("visor-guest-ram", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size)) {
		int r = -errno;
		close(fd);
		return r;
	}
	int r = guest_mem_init_shared(m, fd, size, hole_start, hole_end);
	close(fd);
	return r;
}

int guest_mem_init_file(struct guest_mem *m, int fd, uint64_t size, uint64_t hole_start,
			uint64_t hole_end)
{
	memset(m, 0, sizeof(*m));
	int r = check_file(fd, size);
	return r ? r : mem_map(m, size, hole_start, hole_end, fd, false);
}

/* True if p[0..n) is all zero. */
static bool all_zero(const uint8_t *p, size_t n)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;
	for (size_t i = 0; i < n / 8; i++)
		if (w[i])
			return false;
	return true;
}

int guest_mem_save_file(const struct guest_mem *m, int fd, uint64_t *written)
{
	*written = 0;
	if (ftruncate(fd, 0) || ftruncate(fd, (off_t)m->size))
		return -errno;
	/* runs of non-zero pages; zero pages stay holes of the sparse file */
	const size_t page = 4096;
	uint64_t off = 0;
	while (off < m->size) {
		while (off < m->size && all_zero(m->base + off, page))
			off += page;
		uint64_t end = off;
		while (end < m->size && end - off < (64u << 20) && !all_zero(m->base + end, page))
			end += page;
		for (uint64_t done = off; done < end;) {
			ssize_t n = pwrite(fd, m->base + done, (size_t)(end - done), (off_t)done);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return n < 0 ? -errno : -EIO;
			done += (uint64_t)n;
			*written += (uint64_t)n;
		}
		off = end;
	}
	return 0;
}

/* ---- dirty tracking ---- */

static uint64_t npages(const struct guest_mem *m)
{
	return m->size / GUEST_PAGE_SIZE;
}

static uint64_t nwords(const struct guest_mem *m)
{
	return (npages(m) + 63) / 64;
}

int guest_mem_track_dirty(struct guest_mem *m)
{
	if (m->dirty)
		return 0;
	if (!m->base)
		return -EINVAL;
	_Atomic uint64_t *d = calloc((size_t)nwords(m), sizeof(*d));
	if (!d)
		return -ENOMEM;
	m->dirty = d;
	return 0;
}

/* Set bits [first, last] (inclusive page numbers) in @map. */
static void mark_map(_Atomic uint64_t *map, uint64_t first, uint64_t last)
{
	for (uint64_t w = first / 64; w <= last / 64; w++) {
		uint64_t lo = w == first / 64 ? first % 64 : 0;
		uint64_t hi = w == last / 64 ? last % 64 : 63;
		uint64_t bits = (hi == 63 ? ~0ull : (1ull << (hi + 1)) - 1) & ~((1ull << lo) - 1);
		atomic_fetch_or_explicit(&map[w], bits, memory_order_relaxed);
	}
}

/* ... in the dirty bitmap and, while a migration runs, in its bitmap. */
static void mark_pages(const struct guest_mem *m, uint64_t first, uint64_t last)
{
	if (m->dirty)
		mark_map(m->dirty, first, last);
	_Atomic uint64_t *mig = atomic_load_explicit(&m->mig, memory_order_acquire);
	if (mig)
		mark_map(mig, first, last);
}

static bool marking(const struct guest_mem *m)
{
	return guest_mem_marking(m);
}

int guest_mem_mig_start(struct guest_mem *m)
{
	if (!m->base)
		return -EINVAL;
	if (!m->mig_alloc) {
		m->mig_alloc = calloc((size_t)nwords(m), sizeof(*m->mig_alloc));
		if (!m->mig_alloc)
			return -ENOMEM;
	}
	for (uint64_t w = 0; w < nwords(m); w++)
		atomic_store_explicit(&m->mig_alloc[w], 0, memory_order_relaxed);
	atomic_store_explicit(&m->mig, m->mig_alloc, memory_order_release);
	return 0;
}

void guest_mem_mig_stop(struct guest_mem *m)
{
	atomic_store_explicit(&m->mig, NULL, memory_order_release);
}

uint64_t guest_mem_mig_take(const struct guest_mem *m, uint64_t *bits)
{
	_Atomic uint64_t *mig = atomic_load_explicit(&m->mig, memory_order_acquire);
	uint64_t n = 0;
	for (uint64_t w = 0; mig && w < nwords(m); w++) {
		uint64_t v = atomic_exchange_explicit(&mig[w], 0, memory_order_relaxed);
		bits[w] |= v;
		n += (uint64_t)__builtin_popcountll(v);
	}
	return n;
}

void guest_mem_mark_range(const struct guest_mem *m, const void *hva, uint64_t len)
{
	uintptr_t b = (uintptr_t)m->base, p = (uintptr_t)hva;
	if (!marking(m) || !len || p >= b + m->size || len > UINTPTR_MAX - p || p + len <= b)
		return;
	uint64_t start = p < b ? 0 : p - b;
	uint64_t end = p + len - b; /* exclusive */
	if (end > m->size)
		end = m->size;
	mark_pages(m, start / GUEST_PAGE_SIZE, (end - 1) / GUEST_PAGE_SIZE);
}

void guest_mem_mark_all(const struct guest_mem *m)
{
	if (marking(m) && m->size)
		mark_pages(m, 0, npages(m) - 1);
}

void guest_mem_dirty_add(const struct guest_mem *m, int region, const uint64_t *bits)
{
	if (!marking(m) || region < 0 || region >= m->nregions)
		return;
	const struct guest_region *r = &m->regions[region];
	uint64_t first = (uint64_t)(r->hva - m->base) / GUEST_PAGE_SIZE;
	uint64_t n = r->size / GUEST_PAGE_SIZE;
	for (uint64_t w = 0; w < (n + 63) / 64; w++) {
		uint64_t v = bits[w];
		while (v) {
			uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(v);
			v &= v - 1;
			if (i < n)
				mark_pages(m, first + i, first + i);
		}
	}
}

int guest_mem_dirty_add_page(const struct guest_mem *m, uint32_t region, uint64_t page)
{
	if (region >= (uint32_t)m->nregions)
		return -ERANGE;
	const struct guest_region *r = &m->regions[region];
	if (page >= r->size / GUEST_PAGE_SIZE)
		return -ERANGE;
	uint64_t p = (uint64_t)(r->hva - m->base) / GUEST_PAGE_SIZE + page;
	if (marking(m))
		mark_pages(m, p, p);
	return 0;
}

bool guest_mem_is_dirty(const struct guest_mem *m, uint64_t page)
{
	if (!m->dirty || page >= npages(m))
		return false;
	return atomic_load_explicit(&m->dirty[page / 64], memory_order_relaxed) &
	       (1ull << (page % 64));
}

uint64_t guest_mem_dirty_count(const struct guest_mem *m)
{
	uint64_t n = 0;
	for (uint64_t w = 0; m->dirty && w < nwords(m); w++)
		n += (uint64_t)__builtin_popcountll(
			atomic_load_explicit(&m->dirty[w], memory_order_relaxed));
	return n;
}

void guest_mem_dirty_clear(const struct guest_mem *m)
{
	for (uint64_t w = 0; m->dirty && w < nwords(m); w++)
		atomic_store_explicit(&m->dirty[w], 0, memory_order_relaxed);
}

int guest_mem_save_dirty(const struct guest_mem *m, int fd, uint64_t *written)
{
	*written = 0;
	if (!m->dirty)
		return -EINVAL;
	if (ftruncate(fd, 0) || ftruncate(fd, (off_t)m->size))
		return -errno;
	/* runs of dirty pages, each one pwrite; clean pages stay holes */
	uint64_t n = npages(m), page = 0;
	while (page < n) {
		while (page < n && !guest_mem_is_dirty(m, page))
			page++;
		uint64_t end = page;
		while (end < n && end - page < (64u << 20) / GUEST_PAGE_SIZE &&
		       guest_mem_is_dirty(m, end))
			end++;
		uint64_t done = page * GUEST_PAGE_SIZE, stop = end * GUEST_PAGE_SIZE;
		while (done < stop) {
			ssize_t k = pwrite(fd, m->base + done, (size_t)(stop - done), (off_t)done);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				return k < 0 ? -errno : -EIO;
			done += (uint64_t)k;
			*written += (uint64_t)k;
		}
		page = end;
	}
	return 0;
}

void guest_mem_destroy(struct guest_mem *m)
{
	if (m->base)
		munmap(m->base, (size_t)m->size);
	free((void *)m->dirty);
	free((void *)m->mig_alloc);
	if (m->shared)
		close(m->memfd);
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
	guest_mem_mark(m, p, len);
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
