/* SPDX-License-Identifier: MIT */
/*
 * virtq.c - split virtqueues (virtio 1.2 §2.7), the device side.
 *
 * Guest ring layout (§2.7.5, §2.7.6, §2.7.8), all little-endian:
 *   descriptor table  size * {le64 addr; le32 len; le16 flags; le16 next}
 *   available ring    le16 flags; le16 idx; le16 ring[size]; le16 used_event
 *   used ring         le16 flags; le16 idx; {le32 id; le32 len}[size];
 *                     le16 avail_event
 * The host is assumed little-endian (x86): fields are used as read, no
 * byte swapping (checked at compile time below).
 *
 * Every guest field is read exactly once: single-copy loads for the ring
 * indices (__atomic builtins), memcpy into a local struct followed by a
 * compiler barrier for descriptors, so that the compiler cannot turn one
 * validated read into two fetches the guest could race with (checklist
 * A.12).  All validation happens on the local copy.
 */
#include "virtq.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "../../util/bitmap.h"
#include "../../util/str.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "virtq.c reads little-endian guest rings without conversion");

#define DESC_SIZE 16u
/* Offsets inside the available and used rings. */
#define RING_FLAGS 0u
#define RING_IDX 2u
#define RING_ENTRIES 4u
#define USED_ELEM_SIZE 8u

/* A descriptor after it was copied out of guest memory (§2.7.5). */
struct vdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
_Static_assert(sizeof(struct vdesc) == DESC_SIZE, "descriptor layout");

static uint64_t desc_bytes(uint16_t size)
{
	return (uint64_t)size * DESC_SIZE;
}

/* flags, idx, ring[size], used_event */
static uint64_t avail_bytes(uint16_t size)
{
	return RING_ENTRIES + 2ull * size + 2;
}

/* flags, idx, ring[size], avail_event */
static uint64_t used_bytes(uint16_t size)
{
	return RING_ENTRIES + (uint64_t)USED_ELEM_SIZE * size + 2;
}

/* Single-copy accessors for ring fields; the activation checks guarantee
 * their natural alignment (ring alignment + page-aligned regions). */
static uint16_t load16_acquire(const uint8_t *p)
{
	return __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE);
}

static uint16_t load16(const uint8_t *p)
{
	return __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED);
}

static void store16(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, v, __ATOMIC_RELAXED);
}

static void store16_release(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, v, __ATOMIC_RELEASE);
}

static void store32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)(void *)p, v, __ATOMIC_RELAXED);
}

/* Copy one descriptor out of guest memory.  @p may be unaligned (indirect
 * tables have no alignment requirement).  The barrier stops the compiler
 * from re-reading guest memory in place of the local copy. */
static void desc_fetch(const uint8_t *p, struct vdesc *d)
{
	memcpy(d, p, sizeof(*d));
	__asm__ __volatile__("" ::: "memory");
}

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	/* lengths are small and the ranges were checked to lie in RAM, so
	 * a + alen and b + blen cannot overflow */
	return a < b + blen && b < a + alen;
}

/* Map ring [gpa, gpa+len) if it is aligned to @align (a power of two) and
 * lies wholly inside one RAM region; NULL otherwise. */
static uint8_t *map_ring(const struct guest_mem *mem, uint64_t gpa, uint64_t len, uint64_t align)
{
	if (gpa & (align - 1))
		return NULL;
	uint8_t *p = gpa_to_hva(mem, gpa, len);
	/* Regions start page-aligned on both sides, so this holds whenever
	 * the gpa is aligned; checked anyway because the atomic accessors
	 * depend on it. */
	if (p && ((uintptr_t)p & (align - 1)))
		return NULL;
	return p;
}

static void clear_state(struct virtq *q)
{
	q->active = false;
	q->event_idx = false;
	q->indirect = false;
	q->mem = NULL;
	q->desc = q->avail = q->used = NULL;
	q->last_avail = 0;
	q->used_idx = 0;
	q->signalled_used = 0;
	q->signalled_valid = false;
	q->inflight = 0;
	memset(q->inflight_map, 0, sizeof(q->inflight_map));
}

int virtq_activate(struct virtq *q, const struct guest_mem *mem, uint64_t features)
{
	clear_state(q);
	/* §2.7: queue size is a power of two; 0 means "unused". */
	if (!is_pow2(q->size) || q->size > VIRTQ_MAX_SIZE || !mem)
		return -EINVAL;
	uint64_t dlen = desc_bytes(q->size), alen = avail_bytes(q->size),
		 ulen = used_bytes(q->size);
	/* §2.7 alignment table: descriptor table 16, available ring 2, used
	 * ring 4.  The event fields (used_event, avail_event) are included
	 * whether or not EVENT_IDX was negotiated. */
	uint8_t *desc = map_ring(mem, q->desc_gpa, dlen, 16);
	uint8_t *avail = map_ring(mem, q->avail_gpa, alen, 2);
	uint8_t *used = map_ring(mem, q->used_gpa, ulen, 4);
	if (!desc || !avail || !used)
		return -EINVAL;
	/* The device writes the used ring: it must not alias what it reads,
	 * and the driver-written parts must not alias each other either. */
	if (ranges_overlap(q->desc_gpa, dlen, q->avail_gpa, alen) ||
	    ranges_overlap(q->desc_gpa, dlen, q->used_gpa, ulen) ||
	    ranges_overlap(q->avail_gpa, alen, q->used_gpa, ulen))
		return -EINVAL;
	q->mem = mem;
	q->desc = desc;
	q->avail = avail;
	q->used = used;
	q->event_idx = features & (1ull << VIRTIO_F_EVENT_IDX);
	q->indirect = features & (1ull << VIRTIO_F_INDIRECT_DESC);
	q->active = true;
	/* the device writes the used ring whenever it likes: dirty for as
	 * long as the queue is active (guest_mem.h) */
	guest_mem_mark(mem, used, ulen);
	return 0;
}

void virtq_reset(struct virtq *q)
{
	clear_state(q);
}

/* Validate one buffer descriptor (not INDIRECT) and append it to @c. */
static int chain_add(const struct virtq *q, struct virtq_chain *c, const struct vdesc *d,
		     bool *seen_write)
{
	/* Zero-length buffers are rejected: no driver needs them, and
	 * accepting them would let a chain make progress without consuming
	 * anything (checklist A.5). */
	if (d->len == 0)
		return -EIO;
	/* [addr, addr+len) must not wrap 2^64 (gpa_to_hva checks it too). */
	if (d->addr > UINT64_MAX - (d->len - 1))
		return -EIO;
	bool write = d->flags & VIRTQ_DESC_F_WRITE;
	/* §2.7.4.2: device-readable descriptors come before writable ones. */
	if (!write && *seen_write)
		return -EIO;
	if (c->nsegs >= VIRTQ_MAX_SEGS)
		return -EIO;
	/* The chain as a whole must stay below 2^32 bytes (§2.7.5.2);
	 * 64-bit sums of 32-bit lengths cannot overflow here. */
	if ((uint64_t)c->read_len + c->write_len + d->len > UINT32_MAX)
		return -EIO;
	/* The whole buffer lies in one RAM region: never a hole, a device
	 * window or past the end of RAM (checklist A.7/A.8). */
	uint8_t *hva = gpa_to_hva(q->mem, d->addr, d->len);
	if (!hva)
		return -EIO;
	c->segs[c->nsegs++] = (struct virtq_seg){.hva = hva, .len = d->len};
	if (write) {
		*seen_write = true;
		c->write_len += d->len;
	} else {
		c->nread++;
		c->read_len += d->len;
	}
	return 0;
}

/* Walk an indirect table (§2.7.5.3) described by descriptor @d. */
static int walk_indirect(const struct virtq *q, struct virtq_chain *c, const struct vdesc *d,
			 bool *seen_write)
{
	/* INDIRECT only if negotiated, never together with NEXT (so it ends
	 * the direct chain), a non-empty table of whole descriptors. */
	if (!q->indirect || (d->flags & VIRTQ_DESC_F_NEXT) || d->len == 0 ||
	    d->len % DESC_SIZE)
		return -EIO;
	const uint8_t *table = gpa_to_hva(q->mem, d->addr, d->len);
	if (!table)
		return -EIO;
	/* The WRITE flag of the descriptor pointing at the table is ignored
	 * (§2.7.5.3.2). */
	uint32_t n = d->len / DESC_SIZE;
	uint32_t i = 0;
	for (uint32_t hops = 0;; hops++) {
		/* n entries can form a chain of at most n hops; more is a
		 * cycle.  Every hop adds a segment, so VIRTQ_MAX_SEGS bounds
		 * the work for huge tables as well. */
		if (hops >= n)
			return -EIO;
		struct vdesc e;
		desc_fetch(table + (uint64_t)i * DESC_SIZE, &e);
		/* no nested tables */
		if (e.flags & VIRTQ_DESC_F_INDIRECT)
			return -EIO;
		int r = chain_add(q, c, &e, seen_write);
		if (r)
			return r;
		if (!(e.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (e.next >= n)
			return -EIO;
		i = e.next;
	}
}

/* Build chain @head (below q->size) of active queue @q into @c: every
 * descriptor copied once and checked (chain_add, walk_indirect), at most
 * size hops.  Nothing of @q changes.  0 or -EIO. */
static int walk_chain(const struct virtq *q, uint16_t head, struct virtq_chain *c)
{
	c->head = head;
	c->nsegs = 0;
	c->nread = 0;
	c->read_len = 0;
	c->write_len = 0;
	bool seen_write = false;
	uint16_t i = head;
	for (uint32_t hops = 0;; hops++) {
		/* A chain visits at most size descriptors; more is a cycle
		 * (§2.7.5.2 forbids loops). */
		if (hops >= q->size)
			return -EIO;
		struct vdesc d;
		desc_fetch(q->desc + (uint64_t)i * DESC_SIZE, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			/* zero or more direct descriptors followed by one
			 * indirect one (§2.7.5.3.2) */
			int r = walk_indirect(q, c, &d, &seen_write);
			if (r)
				return r;
			break;
		}
		int r = chain_add(q, c, &d, &seen_write);
		if (r)
			return r;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= q->size)
			return -EIO;
		i = d.next;
	}
	return 0;
}

/* Dirty tracking: the device may fill @c's writable buffers at any time
 * until it pushes the chain, so they are marked when it gets it. */
static void mark_writable(const struct virtq *q, const struct virtq_chain *c)
{
	if (!guest_mem_marking(q->mem))
		return;
	for (uint16_t i = c->nread; i < c->nsegs; i++)
		guest_mem_mark_range(q->mem, c->segs[i].hva, c->segs[i].len);
}

int virtq_pop(struct virtq *q, struct virtq_chain *c)
{
	if (!q->active)
		return 0;
	/* §2.7.13.3 / §2.7.6: acquire on avail->idx orders the ring-entry
	 * and descriptor reads after it. */
	uint16_t avail_idx = load16_acquire(q->avail + RING_IDX);
	uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
	if (pending == 0)
		return 0;
	/* The driver cannot have more than size buffers outstanding. */
	if (pending > q->size)
		return -EIO;
	uint16_t slot = q->last_avail & (uint16_t)(q->size - 1);
	uint16_t head = load16(q->avail + RING_ENTRIES + 2u * slot);
	if (head >= q->size || bitmap_test(q->inflight_map, head))
		return -EIO;
	int r = walk_chain(q, head, c);
	if (r)
		return r;
	mark_writable(q, c);
	bitmap_set(q->inflight_map, head, true);
	q->inflight++;
	q->last_avail++;
	return 1;
}

int virtq_push_batch(struct virtq *q, const uint16_t *heads, const uint32_t *lens, uint16_t n)
{
	if (!q->active || n > q->inflight)
		return -EINVAL;
	/* Every head must be in flight, once: take them out of the map as
	 * they are checked, and put them back if one is not. */
	for (uint16_t i = 0; i < n; i++) {
		if (heads[i] >= q->size || !bitmap_test(q->inflight_map, heads[i])) {
			for (uint16_t k = 0; k < i; k++)
				bitmap_set(q->inflight_map, heads[k], true);
			return -EINVAL;
		}
		bitmap_set(q->inflight_map, heads[i], false);
	}
	for (uint16_t i = 0; i < n; i++) {
		uint16_t slot = (uint16_t)(q->used_idx + i) & (uint16_t)(q->size - 1);
		uint8_t *elem = q->used + RING_ENTRIES + (uint32_t)USED_ELEM_SIZE * slot;
		store32(elem, heads[i]);
		store32(elem + 4, lens[i]);
	}
	q->used_idx = (uint16_t)(q->used_idx + n);
	/* §2.7.8.2: the elements are visible before the index that covers
	 * them; one index update publishes the whole batch. */
	store16_release(q->used + RING_IDX, q->used_idx);
	q->inflight -= n;
	return 0;
}

int virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
	return virtq_push_batch(q, &head, &written, 1);
}

/* §2.7.10: true if used_event lies in [old, new) modulo 2^16, i.e. the
 * driver asked to be interrupted when the entry at used_event is used. */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq_should_signal(struct virtq *q)
{
	if (!q->active)
		return false;
	/* Nothing used since the last interrupt: nothing to report. */
	if (q->signalled_valid && q->signalled_used == q->used_idx)
		return false;
	/* Order the used->idx store before the reads of the driver's
	 * suppression fields (store -> load: needs a full fence). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	bool sig;
	if (q->event_idx) {
		uint16_t used_event = load16(q->avail + RING_ENTRIES + 2u * q->size);
		sig = !q->signalled_valid || need_event(used_event, q->used_idx, q->signalled_used);
	} else {
		/* §2.7.7: without EVENT_IDX the driver may ask for no
		 * interrupts with VIRTQ_AVAIL_F_NO_INTERRUPT. */
		sig = !(load16(q->avail + RING_FLAGS) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	}
	if (sig) {
		q->signalled_used = q->used_idx;
		q->signalled_valid = true;
	}
	return sig;
}

bool virtq_enable_notify(struct virtq *q)
{
	if (!q->active)
		return false;
	/* §2.7.10: avail_event asks the driver to notify once it makes the
	 * buffer at this index available.  Without EVENT_IDX notifications
	 * are never suppressed (VIRTQ_USED_F_NO_NOTIFY is not used). */
	if (q->event_idx)
		store16(q->used + RING_ENTRIES + USED_ELEM_SIZE * q->size, q->last_avail);
	/* The avail_event store must be visible before avail->idx is read
	 * again, or a kick could be lost (store -> load). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return load16_acquire(q->avail + RING_IDX) != q->last_avail;
}

/* Copy up to @len bytes between a buffer and segments [first, end) of @c,
 * starting at byte @off of those segments: out of the chain into @out, or
 * (@out NULL) from @in into the chain.  Returns bytes copied. */
static uint32_t chain_copy(const struct virtq_chain *c, uint16_t first, uint16_t end,
			   uint32_t off, uint8_t *out, const uint8_t *in, uint32_t len)
{
	uint32_t done = 0;
	for (uint16_t i = first; i < end && done < len; i++) {
		uint32_t slen = c->segs[i].len;
		if (off >= slen) {
			off -= slen;
			continue;
		}
		uint32_t n = slen - off;
		if (n > len - done)
			n = len - done;
		if (out)
			memcpy(out + done, c->segs[i].hva + off, n);
		else
			memcpy(c->segs[i].hva + off, in + done, n);
		done += n;
		off = 0;
	}
	return done;
}

uint32_t virtq_chain_read(const struct virtq_chain *c, uint32_t off, void *dst, uint32_t len)
{
	uint16_t nread = c->nread <= c->nsegs ? c->nread : c->nsegs;
	return chain_copy(c, 0, nread, off, dst, NULL, len);
}

uint32_t virtq_chain_write(const struct virtq_chain *c, uint32_t off, const void *src, uint32_t len)
{
	uint16_t nsegs = c->nsegs <= VIRTQ_MAX_SEGS ? c->nsegs : VIRTQ_MAX_SEGS;
	return chain_copy(c, c->nread, nsegs, off, NULL, src, len);
}

/* ---- snapshot state ---------------------------------------------------------- */

void virtq_state_get(const struct virtq *q, struct virtq_state *st)
{
	memset(st, 0, sizeof(*st));
	st->size = q->size;
	st->ready = q->ready;
	st->active = q->active;
	st->desc_gpa = q->desc_gpa;
	st->avail_gpa = q->avail_gpa;
	st->used_gpa = q->used_gpa;
	if (!q->active)
		return;
	st->event_idx = q->event_idx;
	st->indirect = q->indirect;
	st->last_avail = q->last_avail;
	st->used_idx = q->used_idx;
	st->signalled_used = q->signalled_used;
	st->signalled_valid = q->signalled_valid;
	for (uint32_t h = 0; h < q->size; h++)
		if (bitmap_test(q->inflight_map, h))
			st->inflight[st->ninflight++] = (uint16_t)h;
}

void virtq_state_encode(const struct virtq_state *st, struct snap_writer *w)
{
	snap_put_u16(w, st->size);
	snap_put_u8(w, st->ready);
	snap_put_u8(w, st->active);
	snap_put_u8(w, st->event_idx);
	snap_put_u8(w, st->indirect);
	snap_put_u8(w, st->signalled_valid);
	snap_put_u8(w, 0); /* reserved */
	snap_put_u64(w, st->desc_gpa);
	snap_put_u64(w, st->avail_gpa);
	snap_put_u64(w, st->used_gpa);
	snap_put_u16(w, st->last_avail);
	snap_put_u16(w, st->used_idx);
	snap_put_u16(w, st->signalled_used);
	snap_put_u16(w, st->ninflight);
	for (uint16_t i = 0; i < st->ninflight && i < VIRTQ_MAX_SIZE; i++)
		snap_put_u16(w, st->inflight[i]);
}

int virtq_state_decode(struct snap_cursor *c, uint16_t qi, uint16_t max_size,
		       struct virtq_state *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	st->size = snap_get_u16(c);
	st->ready = snap_get_u8(c);
	st->active = snap_get_u8(c);
	st->event_idx = snap_get_u8(c);
	st->indirect = snap_get_u8(c);
	st->signalled_valid = snap_get_u8(c);
	uint8_t reserved = snap_get_u8(c);
	st->desc_gpa = snap_get_u64(c);
	st->avail_gpa = snap_get_u64(c);
	st->used_gpa = snap_get_u64(c);
	st->last_avail = snap_get_u16(c);
	st->used_idx = snap_get_u16(c);
	st->signalled_used = snap_get_u16(c);
	st->ninflight = snap_get_u16(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "queue %u: state truncated", qi);
	if (st->ninflight > st->size || st->ninflight > VIRTQ_MAX_SIZE)
		return err_set(err, errlen, -EINVAL, "queue %u: %u heads in flight in a queue of %u",
			       qi, st->ninflight, st->size);
	for (uint16_t i = 0; i < st->ninflight; i++)
		st->inflight[i] = snap_get_u16(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "queue %u: state truncated", qi);
	if (reserved)
		return err_set(err, errlen, -EINVAL, "queue %u: reserved byte is %#x, not 0", qi,
			       reserved);
	if (st->size > max_size || (st->size && !is_pow2(st->size)))
		return err_set(err, errlen, -EINVAL,
			       "queue %u: size %u (a power of two up to %u, or 0)", qi, st->size,
			       max_size);
	const uint8_t flags[] = {st->ready, st->active, st->event_idx, st->indirect,
				 st->signalled_valid};
	for (size_t i = 0; i < sizeof(flags); i++)
		if (flags[i] > 1)
			return err_set(err, errlen, -EINVAL, "queue %u: flag %zu is %u, not 0 or 1",
				       qi, i, flags[i]);
	if (st->ready && !st->size)
		return err_set(err, errlen, -EINVAL,
			       "queue %u: ready with size 0 (enabling a queue needs a size)", qi);
	if (st->active && (!st->ready || !st->size))
		return err_set(err, errlen, -EINVAL, "queue %u: active but not ready (size %u)", qi,
			       st->size);
	if (!st->active) {
		if (st->event_idx || st->indirect || st->signalled_valid || st->last_avail ||
		    st->used_idx || st->signalled_used || st->ninflight)
			return err_set(err, errlen, -EINVAL,
				       "queue %u: an inactive queue with ring state", qi);
		return 0;
	}
	uint16_t popped = (uint16_t)(st->last_avail - st->used_idx);
	if (popped != st->ninflight)
		return err_set(err, errlen, -EINVAL,
			       "queue %u: %u chains popped (avail %u, used %u) but %u heads in flight",
			       qi, popped, st->last_avail, st->used_idx, st->ninflight);
	for (uint16_t i = 0; i < st->ninflight; i++) {
		if (st->inflight[i] >= st->size || (i && st->inflight[i] <= st->inflight[i - 1]))
			return err_set(err, errlen, -EINVAL,
				       "queue %u: in-flight head %u out of range or out of order", qi,
				       st->inflight[i]);
	}
	return 0;
}

int virtq_state_check(const struct virtq_state *st, uint16_t qi, const struct guest_mem *mem,
		      char *err, size_t errlen)
{
	if (!st->active)
		return 0;
	struct virtq q;
	memset(&q, 0, sizeof(q));
	q.size = st->size;
	q.desc_gpa = st->desc_gpa;
	q.avail_gpa = st->avail_gpa;
	q.used_gpa = st->used_gpa;
	if (virtq_activate(&q, mem, 0))
		return err_set(err, errlen, -EINVAL,
			       "queue %u: rings (size %u, desc %#llx, avail %#llx, used %#llx) are "
			       "not where activation allows them",
			       qi, st->size, (unsigned long long)st->desc_gpa,
			       (unsigned long long)st->avail_gpa, (unsigned long long)st->used_gpa);
	return 0;
}

int virtq_chain_reread(const struct virtq *q, uint16_t head, struct virtq_chain *c)
{
	if (!q->active || head >= q->size || !bitmap_test(q->inflight_map, head))
		return -EINVAL;
	return walk_chain(q, head, c);
}

void virtq_mark_dirty(const struct virtq *q, struct virtq_chain *scratch)
{
	if (!q->active || !guest_mem_marking(q->mem))
		return;
	guest_mem_mark_range(q->mem, q->used, used_bytes(q->size));
	for (uint16_t h = 0; h < q->size; h++) {
		if (!bitmap_test(q->inflight_map, h))
			continue;
		if (walk_chain(q, h, scratch)) {
			/* the guest rewrote a chain it lent the device: which
			 * pages the device writes can no longer be told */
			guest_mem_mark_all(q->mem);
			return;
		}
		mark_writable(q, scratch);
	}
}

int virtq_state_put(struct virtq *q, const struct virtq_state *st, const struct guest_mem *mem)
{
	clear_state(q);
	q->size = st->size;
	q->ready = st->ready;
	q->desc_gpa = st->desc_gpa;
	q->avail_gpa = st->avail_gpa;
	q->used_gpa = st->used_gpa;
	if (!st->active)
		return 0;
	uint64_t features = (st->event_idx ? 1ull << VIRTIO_F_EVENT_IDX : 0) |
			    (st->indirect ? 1ull << VIRTIO_F_INDIRECT_DESC : 0);
	if (virtq_activate(q, mem, features))
		return -EINVAL;
	q->last_avail = st->last_avail;
	q->used_idx = st->used_idx;
	q->signalled_used = st->signalled_used;
	q->signalled_valid = st->signalled_valid;
	for (uint16_t i = 0; i < st->ninflight; i++)
		bitmap_set(q->inflight_map, st->inflight[i], true);
	q->inflight = st->ninflight;
	return 0;
}
