/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the split virtqueue (device side) against an arbitrary
 * guest.  The input is the image of a 64 KiB guest RAM that holds a ring
 * at fixed addresses:
 *
 *   byte 0          queue size = 1 << (byte % 9)   (1..256)
 *   byte 1          bit 0: INDIRECT_DESC negotiated, bit 1: EVENT_IDX
 *   byte 2          push order: bit 0 reverse, bit 1 push everything twice,
 *                   bits 2-3: pushes per interrupt decision - 1
 *   0x0040          descriptor table (up to 256 * 16 bytes)
 *   0x1040          available ring
 *   0x1280          used ring
 *   the rest        whatever the descriptors point at
 *
 * The target activates the queue, pops chains until none is left or the
 * queue reports a violation, copies through chain_read/chain_write, checks
 * the chain invariants (every segment inside guest RAM, lengths add up),
 * pushes the chains back and runs the notification logic.  Dirty tracking
 * is on: a popped chain's writable buffers must be marked, and with every
 * chain in flight, virtq_mark_dirty (after the bitmap is cleared) must
 * mark exactly the used ring and those buffers again (checked in the
 * first round, before anything is written into the chains).  Any crash,
 * sanitizer report or broken invariant (__builtin_trap) is a bug.
 * Seeds: tests/fuzz/corpus-virtq.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/devices/virtio/virtq.h"

#define MEM_SIZE 0x10000u
#define DESC_GPA 0x0040u
#define AVAIL_GPA 0x1040u
#define USED_GPA 0x1280u
#define MAX_POPS 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_chain(const struct guest_mem *mem, const struct virtq_chain *c, uint16_t qsize)
{
	if (c->head >= qsize || c->nsegs == 0 || c->nsegs > VIRTQ_MAX_SEGS || c->nread > c->nsegs)
		__builtin_trap();
	uint64_t rd = 0, wr = 0;
	for (uint16_t i = 0; i < c->nsegs; i++) {
		const struct virtq_seg *s = &c->segs[i];
		if (s->len == 0 || s->hva < mem->base || s->hva >= mem->base + mem->size ||
		    s->len > (uint64_t)(mem->base + mem->size - s->hva))
			__builtin_trap();
		if (i < c->nread)
			rd += s->len;
		else
			wr += s->len;
	}
	if (rd != c->read_len || wr != c->write_len || rd + wr > UINT32_MAX)
		__builtin_trap();
}

static void exercise_copies(const struct virtq_chain *c)
{
	static uint8_t buf[8192];
	/* whole-buffer, middle and tail copies, including offsets past the end */
	const uint32_t offs[] = {0, c->read_len / 2, c->read_len ? c->read_len - 1 : 0,
				 c->read_len, c->read_len + 1, UINT32_MAX};
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		uint32_t n = virtq_chain_read(c, offs[i], buf, sizeof(buf));
		uint32_t avail = offs[i] < c->read_len ? c->read_len - offs[i] : 0;
		if (n != (avail < sizeof(buf) ? avail : sizeof(buf)))
			__builtin_trap();
	}
	memset(buf, 0xa5, sizeof(buf));
	const uint32_t woffs[] = {0, c->write_len / 2, c->write_len, UINT32_MAX};
	for (size_t i = 0; i < sizeof(woffs) / sizeof(woffs[0]); i++) {
		uint32_t n = virtq_chain_write(c, woffs[i], buf, sizeof(buf));
		uint32_t room = woffs[i] < c->write_len ? c->write_len - woffs[i] : 0;
		if (n != (room < sizeof(buf) ? room : sizeof(buf)))
			__builtin_trap();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	static struct virtq q;
	static struct virtq_chain c;
	static uint16_t heads[MAX_POPS];
	static uint32_t written[MAX_POPS];
	static struct virtq_chain held[MAX_POPS], scratch;
	static uint8_t want[MEM_SIZE / 4096];
	if (!mem.base && (guest_mem_init(&mem, MEM_SIZE, MEM_SIZE, MEM_SIZE) ||
			  guest_mem_track_dirty(&mem)))
		return 0;
	if (size < 3)
		return 0;
	memset(mem.base, 0, MEM_SIZE);
	memcpy(mem.base, data, size < MEM_SIZE ? size : MEM_SIZE);
	guest_mem_dirty_clear(&mem);

	uint16_t qsize = (uint16_t)(1u << (data[0] % 9));
	uint64_t features = 0;
	if (data[1] & 1)
		features |= 1ull << VIRTIO_F_INDIRECT_DESC;
	if (data[1] & 2)
		features |= 1ull << VIRTIO_F_EVENT_IDX;
	uint8_t mode = data[2];

	memset(&q, 0, sizeof(q));
	q.size = qsize;
	q.ready = true;
	q.desc_gpa = DESC_GPA;
	q.avail_gpa = AVAIL_GPA;
	q.used_gpa = USED_GPA;
	if (virtq_activate(&q, &mem, features) != 0)
		__builtin_trap(); /* the fixed geometry is always valid */

	/* Two rounds: pop everything available (keeping it all in flight),
	 * then give it back; the second round sees the guest's ring again
	 * after our used-ring writes. */
	for (int round = 0; round < 2; round++) {
		int n = 0, r = 0;
		while (n < MAX_POPS && (r = virtq_pop(&q, &c)) == 1) {
			check_chain(&mem, &c, qsize);
			for (uint16_t i = c.nread; i < c.nsegs; i++)
				if (!guest_mem_is_dirty(&mem, (uint64_t)(c.segs[i].hva - mem.base) / 4096) ||
				    !guest_mem_is_dirty(&mem, (uint64_t)(c.segs[i].hva + c.segs[i].len - 1 -
									mem.base) / 4096))
					__builtin_trap(); /* a writable buffer not marked */
			held[n] = c;
			/* round 0 copies after the check below: writable
			 * buffers may overlap the rings the check walks */
			if (round)
				exercise_copies(&c);
			heads[n] = c.head;
			written[n] = c.write_len;
			n++;
		}
		if (q.inflight != (uint32_t)n || n > qsize)
			__builtin_trap();
		/* a snapshot now: the used ring and what is in flight, nothing else */
		memset(want, 0, sizeof(want));
		for (uint32_t p = USED_GPA / 4096; p <= (USED_GPA + 6 + 8u * qsize - 1) / 4096; p++)
			want[p] = 1;
		for (int k = 0; k < n; k++)
			for (uint16_t i = held[k].nread; i < held[k].nsegs; i++)
				for (uint64_t off = (uint64_t)(held[k].segs[i].hva - mem.base) / 4096;
				     off <= (uint64_t)(held[k].segs[i].hva + held[k].segs[i].len - 1 -
						       mem.base) / 4096;
				     off++)
					want[off] = 1;
		guest_mem_dirty_clear(&mem);
		virtq_mark_dirty(&q, &scratch);
		for (uint64_t p = 0; round == 0 && p < MEM_SIZE / 4096; p++)
			if (guest_mem_is_dirty(&mem, p) != want[p])
				__builtin_trap();
		for (int k = 0; round == 0 && k < n; k++)
			exercise_copies(&held[k]);
		for (int i = 0; i < n; i++) {
			int k = (mode & 1) ? n - 1 - i : i;
			if (virtq_push(&q, heads[k], written[k]) != 0)
				__builtin_trap();
			if ((mode & 2) && virtq_push(&q, heads[k], 0) == 0)
				__builtin_trap(); /* no longer in flight */
			/* batches of 1..4 pushes per interrupt decision */
			if (((unsigned)i + mode / 4u) % ((mode >> 2 & 3) + 1u) == 0)
				(void)virtq_should_signal(&q);
		}
		if (q.inflight != 0)
			__builtin_trap();
		(void)virtq_should_signal(&q);
		(void)virtq_enable_notify(&q);
		if (r < 0)
			break;
	}
	virtq_reset(&q);
	return 0;
}
