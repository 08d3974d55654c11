/* SPDX-License-Identifier: MIT */
/*
 * net.h - network back ends: where a virtual NIC's frames go and come from.
 *
 * A back end moves whole Ethernet frames, each preceded by the 12-byte
 * virtio-net header (struct virtio_net_hdr_v1, virtio 1.2 §5.1.6,
 * little-endian): flags, gso_type, hdr_len, gso_size, csum_start,
 * csum_offset, num_buffers.  The header describes checksum and
 * segmentation offloads, so frames cross the back end without the host
 * computing checksums or segmenting (the Linux tap with IFF_VNET_HDR speaks
 * exactly this header).
 *
 * Contract:
 *   - send() takes one frame [header + Ethernet frame] as an iovec list and
 *     never blocks: it returns the bytes taken (the whole frame) or -errno
 *     (-EAGAIN: cannot take it now; the caller drops the frame - a network
 *     may lose frames).  The header may ask for offloads in @tx_offloads.
 *   - recv() stores the oldest pending frame [header + frame] into the
 *     iovecs and returns its FULL length, or -EAGAIN when nothing is
 *     pending, or another -errno when the back end failed for good (the
 *     tap was deleted).  A frame longer than the iovecs is truncated and
 *     then its length may be reported either as the full length or as the
 *     iovec capacity (the tap reports the full length): callers pass more
 *     room than the largest frame they accept (NET_MAX_FRAME) and treat a
 *     result >= the capacity as "too long".  Never blocks.
 *   - fd is readable (EPOLLIN) while recv() may return a frame; EPOLLERR
 *     or EPOLLHUP means the back end is gone.  -1 for back ends without
 *     an fd (the caller then polls recv()).
 *   - set_offload() chooses which offloads frames returned by recv() may
 *     use (NET_OFFLOAD_*, a subset of @rx_offloads): with 0, every frame
 *     comes fully checksummed and unsegmented.  0 / -errno.  A back end
 *     starts with 0.
 *   - Not thread-safe: the owning device serialises calls (its lock).
 *   - close() closes the fd and frees what the back end allocated
 *     (tap_open's allocation included).
 */
#ifndef VISOR_BACKENDS_NET_H
#define VISOR_BACKENDS_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* The virtio-net header with VIRTIO_F_VERSION_1 (§5.1.6): always 12 bytes. */
#define NET_HDR_LEN 12
/* Largest Ethernet frame (after the header) accepted either way: a 64 KiB
 * GSO packet plus the 14-byte Ethernet header. */
#define NET_MAX_FRAME 65550u
/* Smallest: an Ethernet header. */
#define NET_MIN_FRAME 14u

/* Offloads (the tap's TUN_F_* with the same meaning). */
#define NET_OFFLOAD_CSUM (1u << 0)    /* partially checksummed frames (NEEDS_CSUM) */
#define NET_OFFLOAD_TSO4 (1u << 1)    /* GSO TCPv4 */
#define NET_OFFLOAD_TSO6 (1u << 2)    /* GSO TCPv6 */
#define NET_OFFLOAD_TSO_ECN (1u << 3) /* GSO with the ECN bit (CWR) */
#define NET_OFFLOAD_ALL                                                                    \
	(NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 | NET_OFFLOAD_TSO_ECN)

struct net_backend;

struct net_backend_ops {
	ssize_t (*send)(struct net_backend *be, const struct iovec *iov, int iovcnt);
	ssize_t (*recv)(struct net_backend *be, const struct iovec *iov, int iovcnt);
	int (*set_offload)(struct net_backend *be, unsigned offloads);
	void (*close)(struct net_backend *be);
};

struct net_backend {
	const struct net_backend_ops *ops;
	int fd;                /* see the contract; -1: none */
	unsigned rx_offloads;  /* what set_offload() can enable (back end -> guest) */
	unsigned tx_offloads;  /* what send() accepts in headers (guest -> back end) */
	const char *name;      /* for messages */
};

static inline void net_close(struct net_backend *be)
{
	if (be && be->ops->close)
		be->ops->close(be);
}

/* ---- Linux tap device (tap.c) ---- */

/* Attach to tap interface @name (created if it does not exist and the
 * caller has CAP_NET_ADMIN; a new tap is down until configured, and
 * disappears when visor exits): /dev/net/tun opened O_RDWR | O_NONBLOCK |
 * O_CLOEXEC, TUNSETIFF with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
 * TUNSETVNETHDRSZ 12.  rx_offloads are probed with TUNSETOFFLOAD (then set
 * back to 0); tx_offloads are NET_OFFLOAD_ALL (a tap takes any header).
 * @name: 1..15 bytes, none of '/', ':', '%' or white space, not "." or "..".
 * On failure returns -errno and writes one line (no "error:" prefix, no
 * newline) into @err, saying what to do: no /dev/net/tun (tun module),
 * permission (CAP_NET_ADMIN, or a persistent tap owned by this user), busy
 * (attached by another process), not a tap, bad name. */
int tap_open(struct net_backend **out, const char *name, char *err, size_t errlen);
/* Local-mode migration: @fd (a tap the source had attached; taken over,
 * closed on failure) is what tap_open of its device name uses next,
 * instead of attaching again (a tap takes one attachment).  0, or -errno
 * (not a tap: TUNGETIFF fails; -ENOSPC: eight already).
 * tap_adopt_clear closes those no device took. */
int tap_adopt(int fd);
void tap_adopt_clear(void);

/* ---- in-memory back end for tests (net_mem.c) ---- */

struct net_mem_frame {
	struct net_mem_frame *next;
	size_t len;
	uint8_t data[]; /* header + frame */
};

struct net_mem {
	struct net_backend be;
	/* Frames the "host" sent to the guest, oldest first (recv takes them). */
	struct net_mem_frame *rx_head, *rx_tail;
	unsigned rx_count;
	/* Frames the guest sent (send appends), oldest first. */
	struct net_mem_frame *tx_head, *tx_tail;
	unsigned tx_count;
	/* Calls, for the tests' assertions. */
	unsigned recv_calls, recv_frames, send_calls, offload_calls;
	unsigned offloads; /* last value given to set_offload */
	int send_errno;    /* non-zero: send fails with -send_errno */
	int recv_errno;    /* non-zero: recv fails with -recv_errno (EAGAIN excepted) */
};

/* An empty back end whose fd is an eventfd readable while frames are
 * pending; @rx_offloads / @tx_offloads as in struct net_backend.  0 / -errno.
 * Release with net_close(&m->be). */
int net_mem_init(struct net_mem *m, unsigned rx_offloads, unsigned tx_offloads);
/* Queue a frame ([header + frame], @len bytes) for recv().  0 / -ENOMEM. */
int net_mem_inject(struct net_mem *m, const void *frame, size_t len);
/* Remove the oldest sent frame, copying up to @max bytes into @buf.
 * Returns its length, or -ENOENT if none. */
ssize_t net_mem_take_sent(struct net_mem *m, void *buf, size_t max);

#endif
