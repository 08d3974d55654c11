/* SPDX-License-Identifier: MIT */
/*
 * virtq.h - split virtqueues (virtio 1.2 §2.7), the device side.
 *
 * Everything here reads guest-controlled memory and must treat it as
 * hostile (../shared/docs/hostile-input-checklist.md section A):
 *   - ring addresses and sizes are validated once, at activation, through
 *     gpa_to_hva() over the WHOLE ring (alignment, RAM bounds, no overlap);
 *   - every descriptor is copied into host memory once and validated there
 *     (no double fetch), every buffer is translated with gpa_to_hva() over
 *     its whole length (so it can never point at a hole or a device window);
 *   - chains are bounded (at most queue-size hops, cycles detected),
 *     indirect tables are validated (VIRTQ_DESC_F_INDIRECT only if
 *     negotiated, len a non-zero multiple of 16, no nesting, not combined
 *     with NEXT), readable descriptors must come before writable ones;
 *   - avail->idx moving more than `size` past the last seen index, or a head
 *     that is still in flight, is an error.
 * Any violation returns -EIO: the caller marks the device broken
 * (virtio_dev_mark_broken) and stops processing; nothing is written to
 * guest memory for a rejected chain.
 *
 * Memory ordering follows §2.7.13: the avail index is read with acquire
 * semantics before the ring entries; used entries are written before the
 * used index is published with release semantics.
 *
 * Not thread-safe: the owning device serialises calls (its lock).
 */
#ifndef VISOR_DEVICES_VIRTIO_VIRTQ_H
#define VISOR_DEVICES_VIRTIO_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>

#include "../../mem/guest_mem.h"
#include "../../snapshot/format.h"

/* Largest queue a device may offer (spec maximum for split rings: 32768). */
#define VIRTQ_MAX_SIZE 1024
/* Most segments one chain may have (direct + indirect); longer -> -EIO. */
#define VIRTQ_MAX_SEGS 256

/* Descriptor flags (§2.7.5) */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
/* avail->flags / used->flags (§2.7.7, §2.7.8) */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Feature bits the queue code interprets */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29

/* One guest buffer of a chain, already translated and bounds-checked. */
struct virtq_seg {
	uint8_t *hva;
	uint32_t len;
};

/* A popped descriptor chain: segs[0..nread) are device-readable (driver ->
 * device), segs[nread..nsegs) device-writable (device -> driver). */
struct virtq_chain {
	uint16_t head;
	uint16_t nsegs;
	uint16_t nread;
	uint32_t read_len;  /* sum of readable lengths (<= 2^32-1, checked) */
	uint32_t write_len; /* sum of writable lengths */
	struct virtq_seg segs[VIRTQ_MAX_SEGS];
};

struct virtq {
	/* set by the transport before activation: the one place both
	 * transports keep a queue's geometry (virtio.c resets it to size
	 * max, not ready, addresses 0) */
	uint16_t size; /* queue size: power of two, 1..max; 0 (virtio-mmio
			* only) after an invalid QueueNum: cannot be enabled */
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;

	/* set by virtq_activate() */
	bool active;
	bool event_idx;
	bool indirect;
	const struct guest_mem *mem;
	uint8_t *desc;  /* size * 16 bytes */
	uint8_t *avail; /* 6 + 2 * size bytes (incl. used_event) */
	uint8_t *used;  /* 6 + 8 * size bytes (incl. avail_event) */
	uint16_t last_avail; /* next avail ring slot to consume */
	uint16_t used_idx;   /* next used ring slot to fill (shadow of used->idx) */
	uint16_t signalled_used; /* used_idx when we last interrupted the driver */
	bool signalled_valid;
	uint32_t inflight;   /* number of chains popped but not pushed */
	uint8_t inflight_map[VIRTQ_MAX_SIZE / 8]; /* heads popped, not yet pushed */
};

/* Check and map the rings of @q (size, alignment per §2.7: desc 16, avail 2,
 * used 4; each ring entirely in guest RAM; rings must not overlap) and
 * start from index 0.  @features: negotiated features (EVENT_IDX,
 * INDIRECT_DESC).  Returns 0 or -EINVAL (activation refused). */
int virtq_activate(struct virtq *q, const struct guest_mem *mem, uint64_t features);

/* Take the next available chain into @c.  Returns 1 (chain taken), 0 (none
 * available), or -EIO (the driver broke the rules; device must be marked
 * broken). */
int virtq_pop(struct virtq *q, struct virtq_chain *c);

/* Return chain @head to the driver with @written bytes written into its
 * writable part.  Returns 0, or -EINVAL if @head is not in flight. */
int virtq_push(struct virtq *q, uint16_t head, uint32_t written);

/* Return @n chains at once (heads[i] with lens[i] bytes written) and
 * publish them with a single used->idx update, so the driver never sees
 * part of the batch (a mergeable RX frame spanning several buffers).
 * Returns 0, or -EINVAL (nothing pushed) if a head is not in flight or
 * appears twice. */
int virtq_push_batch(struct virtq *q, const uint16_t *heads, const uint32_t *lens, uint16_t n);

/* After one or more pushes: should the driver be interrupted?  Implements
 * VIRTQ_AVAIL_F_NO_INTERRUPT and, with EVENT_IDX, used_event (§2.7.10).
 * Updates the "last signalled" state when it returns true. */
bool virtq_should_signal(struct virtq *q);

/* With EVENT_IDX, publish avail_event = last_avail so the driver kicks on
 * the next buffer; call before sleeping on the queue.  Returns true if
 * more buffers became available meanwhile (caller should pop again). */
bool virtq_enable_notify(struct virtq *q);

/* Forget all state (device reset).  Leaves size/addresses for the
 * transport to reset.  In-flight chains are dropped (the device must have
 * quiesced its I/O before). */
void virtq_reset(struct virtq *q);

/* Copy helpers over a chain's segments: gather up to @len readable bytes
 * starting at byte @off of the readable part into @dst; scatter @len
 * bytes into the writable part at byte @off.  Return bytes copied. */
uint32_t virtq_chain_read(const struct virtq_chain *c, uint32_t off, void *dst, uint32_t len);
uint32_t virtq_chain_write(const struct virtq_chain *c, uint32_t off, const void *src, uint32_t len);

/*
 * Snapshot state of one queue: its geometry as the driver set it and, for
 * an active queue, the device's side of the rings (next avail slot, next
 * used slot, the event-idx bookkeeping, the heads in flight).  Guest
 * memory holds the rings themselves and travels separately.
 *
 * The geometry is saved for every queue, ready or not: it is the only copy
 * of what the driver wrote (both transports write into struct virtq), so a
 * driver half-way through setting a queue up carries on after a restore.
 *
 * A restore checks the state for consistency (size 0 or a power of two
 * within the device's maximum, not 0 when ready, indices 0 unless active, in-flight heads distinct,
 * below the size and exactly last_avail - used_idx of them) and, for an
 * active queue, the geometry against guest memory exactly as activation
 * does (virtq_state_check), before anything is applied.  What the guest
 * may have scribbled into the rings is not trusted at restore either: the
 * first pop checks it as always.
 */
struct virtq_state {
	uint16_t size;               /* 0 or a power of two <= the device's max;
				      * not 0 when ready */
	uint8_t ready, active;       /* 0 or 1; active only if ready */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint8_t event_idx, indirect; /* active: as negotiated */
	uint16_t last_avail, used_idx, signalled_used;
	uint8_t signalled_valid;
	uint16_t ninflight;
	uint16_t inflight[VIRTQ_MAX_SIZE]; /* heads popped, not pushed, ascending */
};
void virtq_state_get(const struct virtq *q, struct virtq_state *st);
void virtq_state_encode(const struct virtq_state *st, struct snap_writer *w);
/* Read one queue's state from @c (the caller checks the cursor at the end);
 * 0 or -EINVAL with a message naming queue @qi. */
int virtq_state_decode(struct snap_cursor *c, uint16_t qi, uint16_t max_size,
		       struct virtq_state *st, char *err, size_t errlen);
/* An active queue's rings checked against @mem as virtq_activate checks
 * them (0 for an inactive queue), or -EINVAL with a message. */
int virtq_state_check(const struct virtq_state *st, uint16_t qi, const struct guest_mem *mem,
		      char *err, size_t errlen);
/* Make @q hold @st (checked by the two above): geometry, and for an active
 * queue the mapped rings and indices.  0, or -EINVAL if activation fails
 * after all (the state was not checked against @mem). */
int virtq_state_put(struct virtq *q, const struct virtq_state *st, const struct guest_mem *mem);
/* A chain a device held when it was saved (popped, not pushed), read again
 * into @c after virtq_state_put: chain @head is rebuilt from the descriptor
 * table with every check virtq_pop makes of a chain (no double fetch,
 * bounded walk, buffers in RAM, readable before writable, indirect tables
 * only if @q negotiated INDIRECT_DESC), from @head rather than the next
 * available slot, so nothing of @q changes (indices, in-flight heads).
 * Returns 0; -EINVAL if @q is not active or @head is not below its size or
 * not in flight (a state the restore should have refused: nothing is read);
 * -EIO if the chain no longer passes (the guest rewrote it: the caller
 * marks the device broken, as after a failed pop). */
int virtq_chain_reread(const struct virtq *q, uint16_t head, struct virtq_chain *c);

/* Dirty tracking (mem/guest_mem.h): mark @q's used ring and the writable
 * buffers of every chain in flight, as when the queue was activated and
 * the chains popped.  Called when the dirty bitmap was cleared (after a
 * snapshot, device paused) so that what the device writes later is in the
 * next Diff.  @scratch holds each chain as it is walked again with
 * virtq_pop's checks; a chain that no longer passes them (the guest
 * rewrote descriptors it had lent the device) marks all of guest RAM.
 * Nothing when @q is inactive or tracking is off. */
void virtq_mark_dirty(const struct virtq *q, struct virtq_chain *scratch);

#endif
