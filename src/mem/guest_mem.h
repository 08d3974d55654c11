/* SPDX-License-Identifier: MIT */
/*
 * guest_mem.h - guest RAM and the one checked door into it.
 *
 * Guest RAM is a single anonymous MAP_NORESERVE mapping (pages are only
 * backed once touched), starting on a 2 MiB host boundary, marked MADV_DONTDUMP so a core dump of visor never
 * contains guest data.  It is presented to the guest as up to
 * GUEST_MEM_MAX_REGIONS guest-physical regions (on x86: below the 32-bit MMIO
 * hole and above 4 GiB); all regions are slices of that one mapping.
 *
 * Every VMM access to guest memory goes through gpa_to_hva(), which checks
 * the WHOLE range [gpa, gpa+len) (overflow, region bounds, holes) and never
 * returns a pointer for a range that is not entirely RAM.
 */
#ifndef VISOR_MEM_GUEST_MEM_H
#define VISOR_MEM_GUEST_MEM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 4
/* Guest RAM of at least this size starts on a host address aligned to it
 * (the x86-64 huge page size). */
#define GUEST_MEM_ALIGN ((size_t)2 << 20)
/* The unit of dirty tracking and of the memory file's holes. */
#define GUEST_PAGE_SIZE 4096u

struct guest_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct guest_mem {
	uint8_t *base;   /* the mapping */
	uint64_t size;   /* total RAM bytes */
	int nregions;
	struct guest_region regions[GUEST_MEM_MAX_REGIONS];
	/* Dirty tracking (track_dirty_pages), NULL when off: bit i for the
	 * 4 KiB page at byte i * 4096 of the mapping, which is also its
	 * offset in a memory file.  Set from any thread (atomic OR). */
	_Atomic uint64_t *dirty;
	/* A live migration's own bitmap (same layout), published while one
	 * runs: every mark and KVM log ORed into the dirty bitmap above also
	 * goes here, and the migration takes (clears) it pass by pass.  Never
	 * freed before guest_mem_destroy, so a thread that loaded the pointer
	 * just before it was unpublished writes into valid memory. */
	_Atomic uint64_t *_Atomic mig;
	_Atomic uint64_t *mig_alloc;
	/* guest RAM is this memfd, mapped shared (guest_mem_init_memfd /
	 * _shared: a local-mode migration hands it to the next visor) when
	 * @shared */
	int memfd;
	bool shared;
};

/* Map @size bytes of guest RAM (a multiple of 4 KiB) and lay it out as RAM
 * from 0 up to @hole_start and the rest from @hole_end upwards.  The
 * mapping is anonymous and private: also what a snapshot restored through
 * a page-fault handler (uffd.h) registers, so that every page is the
 * handler's to fill.
 * Returns 0, -EINVAL (size 0, unaligned, overflow) or -ENOMEM. */
int guest_mem_init(struct guest_mem *m, uint64_t size, uint64_t hole_start, uint64_t hole_end);

/* The same layout from a memory file (a snapshot's): @fd is mapped
 * private (copy-on-write), so nothing is read until the guest touches a
 * page, pages stay shared with the page cache and with every other VM
 * restored from the file until written, and the file never changes.
 * Refused before mapping: -EBADF, -EINVAL (not a regular file), -ERANGE
 * (its size is not @size); else guest_mem_init's errors.  @fd may be
 * closed afterwards. */
int guest_mem_init_file(struct guest_mem *m, int fd, uint64_t size, uint64_t hole_start,
			uint64_t hole_end);

/* The same layout in a memfd mapped shared (machine-config "mem_shared":
 * a local-mode migration hands the memfd to a new visor process instead
 * of copying memory).  m->memfd is it.  0 or -errno. */
int guest_mem_init_memfd(struct guest_mem *m, uint64_t size, uint64_t hole_start,
			 uint64_t hole_end);
/* Map @fd (a memfd or regular file of exactly @size bytes) shared: the
 * destination of a local-mode migration.  A duplicate of @fd is kept in
 * m->memfd.  -EBADF, -EINVAL (not a regular file), -ERANGE (size), or
 * mapping errors. */
int guest_mem_init_shared(struct guest_mem *m, int fd, uint64_t size, uint64_t hole_start,
			  uint64_t hole_end);

/* Write guest RAM to @fd (truncated to exactly m->size bytes; all-zero
 * 4 KiB pages are left as holes, so untouched memory costs no disk).
 * *@written: bytes actually written.  0 or -errno (e.g. -ENOSPC, -EFBIG,
 * -EIO); the caller fsyncs. */
int guest_mem_save_file(const struct guest_mem *m, int fd, uint64_t *written);

/*
 * Dirty-page tracking for Diff snapshots.  KVM logs the pages the guest
 * writes (KVM_MEM_LOG_DIRTY_PAGES); what the VMM itself writes into guest
 * RAM through the host mapping KVM never sees, so every such write marks
 * the pages here.  The rule for anything that writes guest RAM:
 *   - guest_write() marks what it writes;
 *   - the virtqueue code marks the writable buffers of every chain it
 *     hands a device (virtq_pop) and the used ring of every active queue
 *     (at activation), and both again whenever the bitmap is cleared
 *     (virtq_mark_dirty, after each snapshot), so a device may fill a
 *     chain's writable buffers at any time until it pushes it;
 *   - anything else that changes guest RAM (the balloon's discards, a
 *     new device writing through gpa_to_hva) calls guest_mem_mark().
 * With tracking off every mark is one test of a NULL pointer.
 */
/* Start tracking: an all-clear bitmap.  0 or -ENOMEM. */
int guest_mem_track_dirty(struct guest_mem *m);
/* Snapshot tracking (track_dirty_pages) is on. */
static inline bool guest_mem_tracking(const struct guest_mem *m)
{
	return m->dirty != NULL;
}
/* Anybody wants marks: snapshot tracking or a migration in flight.  What
 * decides whether a writer marks is this, never guest_mem_tracking: a
 * migration without track_dirty_pages needs every VMM write too. */
static inline bool guest_mem_marking(const struct guest_mem *m)
{
	return m->dirty || atomic_load_explicit(&m->mig, memory_order_relaxed);
}
/* Mark the pages of host range [hva, hva+len) (clipped to guest RAM). */
void guest_mem_mark_range(const struct guest_mem *m, const void *hva, uint64_t len);
static inline void guest_mem_mark(const struct guest_mem *m, const void *hva, uint64_t len)
{
	if (guest_mem_marking(m))
		guest_mem_mark_range(m, hva, len);
}
/* Mark every page (when what was written cannot be told). */
void guest_mem_mark_all(const struct guest_mem *m);
/* OR in KVM's dirty log of region @region (KVM_GET_DIRTY_LOG's bitmap for
 * its slot: bit i for the region's page i, in 64-bit words). */
void guest_mem_dirty_add(const struct guest_mem *m, int region, const uint64_t *bits);
/* The same for one page: page @page of region @region (KVM's dirty ring
 * names a page by slot and page offset; slot i is region i).  -ERANGE,
 * marking nothing, when no such page exists; 0 otherwise (also when
 * nothing tracks: the page is valid, there is just nowhere to mark it). */
int guest_mem_dirty_add_page(const struct guest_mem *m, uint32_t region, uint64_t page);
bool guest_mem_is_dirty(const struct guest_mem *m, uint64_t page);
uint64_t guest_mem_dirty_count(const struct guest_mem *m);
void guest_mem_dirty_clear(const struct guest_mem *m);

/*
 * A live migration's bitmap (migration/migrate.c): published by
 * guest_mem_mig_start (all clear), it receives every mark and every KVM
 * log folded in with guest_mem_dirty_add, like the dirty bitmap, whether
 * or not track_dirty_pages is on; guest_mem_mig_take moves its bits into
 * a caller's bitmap (atomic exchange per word: a mark made meanwhile is
 * either taken now or left for the next pass, never lost) and returns how
 * many pages it took.  guest_mem_mig_stop unpublishes it.  0 / -ENOMEM.
 */
int guest_mem_mig_start(struct guest_mem *m);
void guest_mem_mig_stop(struct guest_mem *m);
uint64_t guest_mem_mig_take(const struct guest_mem *m, uint64_t *bits);
static inline bool guest_mem_mig_on(const struct guest_mem *m)
{
	return atomic_load_explicit(&m->mig, memory_order_relaxed) != NULL;
}
/* Pages and 64-bit words of a bitmap of all guest RAM. */
static inline uint64_t guest_mem_pages(const struct guest_mem *m)
{
	return m->size / GUEST_PAGE_SIZE;
}
static inline uint64_t guest_mem_bitmap_words(const struct guest_mem *m)
{
	return (guest_mem_pages(m) + 63) / 64;
}

/* A Diff snapshot's memory file: @fd truncated to m->size bytes, every
 * dirty page written as data (all-zero pages too: a merge copies them
 * onto the base), every other page a hole.  *@written: bytes written.
 * 0 or -errno; -EINVAL when tracking is off. */
int guest_mem_save_dirty(const struct guest_mem *m, int fd, uint64_t *written);

/* Unmap guest RAM.  Safe on a zeroed or already-destroyed struct. */
void guest_mem_destroy(struct guest_mem *m);

/* Host pointer for guest-physical [gpa, gpa+len) when the whole range lies
 * in ONE RAM region; NULL otherwise (len 0 is treated as 1). */
void *gpa_to_hva(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copy into / out of guest RAM through gpa_to_hva.  0 or -EFAULT.
 * guest_write marks what it wrote dirty. */
int guest_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len);
int guest_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len);

/* End (exclusive) of the region that contains @gpa, or 0 if none. */
uint64_t guest_region_end(const struct guest_mem *m, uint64_t gpa);

/* Where region @i's bytes are in a memory file: the regions are
 * consecutive slices of the one mapping, saved back to back in
 * guest-physical order (guest_mem_save_file), so the offset is the
 * region's place in the mapping.  The Uffd backend (uffd.h) sends it to
 * the page-fault handler. */
static inline uint64_t guest_region_file_offset(const struct guest_mem *m, int i)
{
	return (uint64_t)(m->regions[i].hva - m->base);
}

#endif
