/* SPDX-License-Identifier: MIT */
/*
 * virtio_vsock.h - virtio socket device (virtio 1.2 §5.10), entirely in user
 * space, with host connections over Unix sockets (Firecracker's convention,
 * see src/backends/vsock_uds.h).
 *
 * Guest view: device ID 19, three queues (rx 0, tx 1, event 2), feature
 * VIRTIO_VSOCK_F_STREAM only (no SEQPACKET; a driver that negotiates no
 * feature bit gets stream sockets too, §5.10.3), config space le64
 * guest_cid (§5.10.4; read-only, 3 <= cid <= 0xfffffffe so the reserved
 * upper half is zero).  The host is CID 2 (VMADDR_CID_HOST).
 *
 * Host view: a listening socket at PATH.
 *   - host-initiated: a host program connects to PATH and writes
 *     "CONNECT <port>\n" (at most VIRTIO_VSOCK_LINE_MAX bytes, within
 *     handshake_ms; garbage, an overlong line, EOF or the timeout close the
 *     socket).  The device allocates a host port (from 1024 up, unique
 *     among the live connections), sends OP_REQUEST to the guest and, on
 *     OP_RESPONSE, writes "OK <host port>\n" to the socket; on OP_RST, or
 *     no answer within handshake_ms, it closes the socket.  A CONNECT while
 *     the driver is not up (no DRIVER_OK, broken) is closed at once.
 *   - guest-initiated: OP_REQUEST to CID 2 port P makes a non-blocking
 *     connect to "PATH_P": OP_RESPONSE on success, OP_RST on failure.
 *   - data: OP_RW both ways with credit-based flow control (§5.10.6.3).
 *
 * Flow control and resource bounds (checklist E.33, E.34):
 *   - Host -> guest: bytes are read from a Unix socket straight into a guest
 *     RX buffer; the device never buffers them.  A socket is read only
 *     while the guest has credit for the connection (peer buf_alloc minus
 *     bytes in flight, §5.10.6.3.1), and the RX queue has buffers.  When the
 *     RX queue runs dry every connection's socket is disarmed (removed from
 *     epoll) until the driver posts buffers and notifies: no busy loop, no
 *     buffering.  One packet (at most VIRTIO_VSOCK_MAX_PKT bytes) per socket
 *     per wake-up, so connections share the RX queue fairly.  At zero credit
 *     the device asks once with OP_CREDIT_REQUEST.
 *   - Guest -> host: each connection advertises buf_alloc =
 *     VIRTIO_VSOCK_CONN_BUF and fwd_cnt = bytes written to the Unix socket.
 *     Data is written to the socket directly; what the socket does not take
 *     is kept in a per-connection buffer of at most VIRTIO_VSOCK_CONN_BUF
 *     bytes, which is exactly the credit the guest sees (buffered = rx_cnt -
 *     fwd_cnt), so an honest driver never overflows it.  A driver that
 *     ignores the credit gets OP_RST for that connection (never a larger
 *     buffer).  OP_CREDIT_UPDATE is sent when fwd_cnt has advanced by
 *     VIRTIO_VSOCK_CREDIT_STEP since last advertised and in answer to
 *     OP_CREDIT_REQUEST; every packet to the guest carries fwd_cnt as well.
 *     Worst case host memory: max_conns * VIRTIO_VSOCK_CONN_BUF (allocated
 *     only while a socket is not draining, freed when empty).
 *   - Control packets the device owes the guest are per-connection bits
 *     (REQUEST, RESPONSE, SHUTDOWN, CREDIT_UPDATE/REQUEST, RST), sent round
 *     robin when RX buffers exist; RSTs for packets that match no
 *     connection go to a queue of VIRTIO_VSOCK_RST_QUEUE entries, and while
 *     it is full the TX queue is not processed (back-pressure, no drops).
 *   - At most max_conns connections (VIRTIO_VSOCK_MAX_CONNS; pending
 *     host handshakes included).  When the table is full the listening
 *     socket is disarmed (clients wait in the backlog) and guest
 *     OP_REQUESTs get OP_RST.  EMFILE on accept pauses accepting for 1 s.
 *   - TX processing is budgeted (VIRTIO_VSOCK_TX_BUDGET chains per pass,
 *     then it continues from the loop).
 *
 * Validation (§5.10.6): a TX chain must be device-readable only and hold a
 * 44-byte header; hdr.len must not exceed the bytes that follow it; type
 * STREAM, src_cid == guest_cid, dst_cid == 2, op 1..7.  A malformed packet
 * is answered with OP_RST to its ports (never an RST to an RST) and closes
 * the matching connection, if any; an unknown connection gets OP_RST.  An
 * RX chain must be device-writable only and larger than the header;
 * others are returned unused (0 bytes) and the device goes on.  Ring
 * violations (virtq_pop) break the device, which then closes every
 * connection.
 *
 * Shutdown (§5.10.6.5): guest SHUTDOWN(SEND) -> shutdown(SHUT_WR) of the
 * socket once the buffer is written; SHUTDOWN(RCV) -> the socket is no
 * longer read (shutdown(SHUT_RD), so the host writer gets EPIPE).  EOF from
 * the socket -> SHUTDOWN(SEND) to the guest after the last data.  When both
 * directions are finished the device sends OP_RST and closes the socket
 * (the guest waits for it after its own full SHUTDOWN).  A socket error
 * (EPIPE, ECONNRESET) -> OP_RST.  OP_RST from the guest closes the socket.
 *
 * Reset (driver writes 0, or VMM reset): every connection is closed (host
 * sockets too, pending handshakes included), nothing is sent to the guest;
 * the listening socket stays.  The event queue is implemented for
 * VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (§5.10.6.6, after migration):
 * virtio_vsock_transport_reset().
 *
 * Pause (virtio_dev_pause/resume, virtio.h): quiesce takes the device's
 * epoll fd off the main loop, so no host socket is read or written, no
 * client accepted and no timer handled, and the loop callback does
 * nothing while vdev.paused is set (an event fetched before the pause).
 * Host connections stay open; bytes the host sends meanwhile wait in the
 * socket buffers (and the peer blocks when they are full), bytes the
 * guest had sent and the device buffered stay buffered.  Neither the
 * rings nor guest memory are touched.  The held RX buffer (rx_held), the
 * connection table with its credit counters and the packets owed to the
 * guest are kept as they are (a VM resumed after a snapshot carries on
 * with them; a restored one does not, see "Snapshot state").  unquiesce
 * moves every handshake deadline by the time spent paused (a pause does
 * not time out a connection), re-arms the epoll fd and asks the core to
 * look at the RX and TX queues once the gate opens; level-triggered epoll then
 * reports every socket with data, so each stream continues from the byte
 * where it stopped: nothing lost, nothing duplicated.
 *
 * Threads: all host I/O runs on the event loop through ONE fd registered
 * with it (the device's own epoll instance, which holds the listening
 * socket, every connection, a kick eventfd and a timerfd), so the number
 * of connections does not depend on LOOP_MAX_FDS.  Its callback and the
 * ops run under vdev.lock; reset may run on a vCPU thread (closes fds,
 * never blocks).
 */
#ifndef VISOR_DEVICES_VIRTIO_VIRTIO_VSOCK_H
#define VISOR_DEVICES_VIRTIO_VIRTIO_VSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../backends/vsock_uds.h"
#include "../../util/log.h"
#include "virtio.h"

/* Feature bits (§5.10.3) */
#define VIRTIO_VSOCK_F_STREAM 0
#define VIRTIO_VSOCK_F_SEQPACKET 1
#define VIRTIO_VSOCK_F_NO_IMPLIED_STREAM 2

/* Queues (§5.10.2) */
#define VIRTIO_VSOCK_Q_RX 0
#define VIRTIO_VSOCK_Q_TX 1
#define VIRTIO_VSOCK_Q_EVENT 2
#define VIRTIO_VSOCK_NUM_QUEUES 3
#define VIRTIO_VSOCK_QUEUE_MAX 256

/* Config space (§5.10.4): le64 guest_cid */
#define VIRTIO_VSOCK_CFG_GUEST_CID 0
#define VIRTIO_VSOCK_CONFIG_SIZE 8

#define VIRTIO_VSOCK_HOST_CID 2
#define VIRTIO_VSOCK_CID_MIN 3u
#define VIRTIO_VSOCK_CID_MAX 0xfffffffeu

/* Packet header (§5.10.6), little-endian, 44 bytes:
 *   0 le64 src_cid    8 le64 dst_cid   16 le32 src_port  20 le32 dst_port
 *  24 le32 len       28 le16 type     30 le16 op        32 le32 flags
 *  36 le32 buf_alloc 40 le32 fwd_cnt */
#define VIRTIO_VSOCK_HDR_SIZE 44
#define VIRTIO_VSOCK_TYPE_STREAM 1
#define VIRTIO_VSOCK_TYPE_SEQPACKET 2
#define VIRTIO_VSOCK_OP_INVALID 0
#define VIRTIO_VSOCK_OP_REQUEST 1
#define VIRTIO_VSOCK_OP_RESPONSE 2
#define VIRTIO_VSOCK_OP_RST 3
#define VIRTIO_VSOCK_OP_SHUTDOWN 4
#define VIRTIO_VSOCK_OP_RW 5
#define VIRTIO_VSOCK_OP_CREDIT_UPDATE 6
#define VIRTIO_VSOCK_OP_CREDIT_REQUEST 7
#define VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE 1
#define VIRTIO_VSOCK_SHUTDOWN_F_SEND 2
/* struct virtio_vsock_event { le32 id; } (§5.10.6.6) */
#define VIRTIO_VSOCK_EVENT_TRANSPORT_RESET 0

/* Limits */
#define VIRTIO_VSOCK_MAX_CONNS 1024
#define VIRTIO_VSOCK_CONN_BUF (256u * 1024)              /* our buf_alloc per connection */
#define VIRTIO_VSOCK_CREDIT_STEP (VIRTIO_VSOCK_CONN_BUF / 4)
#define VIRTIO_VSOCK_MAX_PKT (64u * 1024)                /* payload per packet to the guest */
#define VIRTIO_VSOCK_LINE_MAX 32                         /* "CONNECT 4294967295\n" is 19 */
#define VIRTIO_VSOCK_RST_QUEUE 64
#define VIRTIO_VSOCK_TX_BUDGET 256
#define VIRTIO_VSOCK_HANDSHAKE_MS 5000
#define VIRTIO_VSOCK_FIRST_HOST_PORT 1024

struct vsock_conn;

/* Counters (Firecracker's names where they fit), since the device was
 * created (a reset does not clear them).  "rx" is host -> guest (the RX
 * queue), "tx" guest -> host. */
struct virtio_vsock_metrics {
	uint64_t rx_bytes_count;       /* payload bytes read from host sockets into the guest */
	uint64_t rx_packets_count;     /* packets placed in the RX queue (data and control) */
	uint64_t tx_bytes_count;       /* OP_RW payload bytes accepted from the guest */
	uint64_t tx_packets_count;     /* TX chains taken (well-formed or not) */
	uint64_t rx_queue_event_count; /* RX queue notifications handled */
	uint64_t tx_queue_event_count; /* TX queue notifications handled */
	uint64_t ev_queue_event_count; /* event queue notifications handled */
	uint64_t muxer_event_count;    /* host-side events handled (sockets, timer, kicks) */
	uint64_t conns_added;          /* connections created (host CONNECTs, guest REQUESTs) */
	uint64_t conns_removed;        /* connections freed */
	uint64_t conn_event_fails;     /* epoll failures that reset a connection */
	uint64_t rx_read_fails;        /* host socket read errors (connection reset) */
	uint64_t tx_write_fails;       /* host socket write errors (connection reset) */
	uint64_t tx_malformed_packets; /* TX packets refused as malformed (answered with RST) */
	uint64_t rst_sent;             /* OP_RST packets sent to the guest */
	uint64_t credit_violations;    /* guest sent more than its credit (connection reset) */
	uint64_t rx_bad_chains;        /* unusable RX buffers returned unused */
	uint64_t handshake_timeouts;   /* CONNECT lines or guest answers that did not come */
};

struct virtio_vsock {
	struct virtio_dev vdev; /* hand &vdev to a transport */
	uint64_t cid;
	char path[VSOCK_UDS_PATH_MAX + 1];
	struct vsock_uds_id path_id;
	int listen_fd, epfd, kick_fd, timer_fd;

	/* Tunables: may be lowered after create, before the device is used
	 * (tests).  max_conns <= VIRTIO_VSOCK_MAX_CONNS. */
	unsigned max_conns;
	uint32_t handshake_ms;

	/* under vdev.lock */
	struct vsock_conn *conns; /* VIRTIO_VSOCK_MAX_CONNS slots */
	unsigned nconns;
	/* One past the highest slot allocated since nconns was last 0: every
	 * slot from here up is free, so scans over the connections stop here
	 * (the free list is LIFO, so this is about the peak count, not 1024). */
	unsigned conn_end;
	uint16_t free_head;
	uint16_t *hash; /* bucket heads, by (host port, guest port) */
	uint16_t pend_head, pend_tail; /* connections owing the guest a packet */
	struct {
		uint32_t src_port, dst_port; /* as sent to the guest */
	} rst_q[VIRTIO_VSOCK_RST_QUEUE];
	unsigned rst_head, rst_len;
	uint32_t next_port;
	bool listen_armed;
	uint64_t listen_paused_until; /* ns, after EMFILE */
	uint64_t timer_at;            /* ns the timerfd is armed for, 0 none */
	bool rx_starved; /* no RX buffer: sockets disarmed until the driver posts */
	bool rx_held;    /* rxc popped and not used yet */
	bool tx_blocked; /* RST queue full: TX waits */
	bool kicked;
	bool reset_event_pending; /* transport_reset asked for while paused */
	uint64_t paused_at;       /* ns, when quiesce ran */
	bool pushed[VIRTIO_VSOCK_NUM_QUEUES];
	struct virtq_chain rxc, txc, evc;
	struct ratelimit rl;
	struct virtio_vsock_metrics metrics;
};

/* Build the device for guest CID @cid, listening on @uds_path (policy in
 * vsock_uds.h), its host I/O on @loop (required).  Returns 0 or -errno with
 * one line in @err ("vsock cid 2 is reserved (use 3..4294967294)",
 * "PATH: exists and is not a socket (not replaced)", ...). */
int virtio_vsock_create(struct virtio_vsock *v, uint64_t cid, const char *uds_path,
			const struct guest_mem *mem, struct loop *loop, char *err, size_t errlen);

/* Tear down after the transport is gone (and the vCPUs stopped): closes
 * every connection and the listening socket, removes PATH if it is still
 * ours, unregisters from the loop.  Safe on a device whose create failed
 * or that was already destroyed. */
void virtio_vsock_destroy(struct virtio_vsock *v);

/* Tell the driver its transport was reset (§5.10.6.6, e.g. after
 * migration): closes every connection and places
 * VIRTIO_VSOCK_EVENT_TRANSPORT_RESET in the next event-queue buffer.
 * Takes vdev.lock.  0, -EAGAIN (no event buffer posted; connections are
 * closed anyway), -ENODEV (the device is not live) or -EIO (bad chain:
 * device broken).  While the device is paused: -EINPROGRESS, and all of
 * it happens when the device resumes (before the guest runs again; a
 * failure then is logged), unless the driver resets the device first. */
int virtio_vsock_transport_reset(struct virtio_vsock *v);

/* Copy the counters into @out (consistent: taken under vdev.lock, so not
 * with it held).  Any thread. */
void virtio_vsock_get_metrics(struct virtio_vsock *v, struct virtio_vsock_metrics *out);

/* Bytes buffered guest -> host over all connections (takes vdev.lock). */
uint64_t virtio_vsock_buffered(struct virtio_vsock *v);

/* Live connections, pending handshakes included (takes vdev.lock). */
unsigned virtio_vsock_conn_count(struct virtio_vsock *v);

/*
 * Snapshot state (docs/snapshot-format.md, "virtio devices").  As in
 * Firecracker, connections are not restored: the host ends of a
 * snapshot's connections belong to the process that took it, so a
 * restored device starts with none and tells the driver its transport was
 * reset (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET in an event-queue buffer),
 * which makes the guest drop every connection of its own; listening
 * sockets in the guest stay and take new connections.  The device itself
 * keeps going after a snapshot (the source VM, if resumed, keeps its
 * connections).  Saved beyond the virtio core (virtio_dev_state_*): the
 * guest CID and the RX buffer held for the next packet (its head; the
 * descriptors are in guest memory).  Not saved: connections, packets
 * owed to the guest, the RST queue, the host port counter.
 *
 *   virtio_vsock_state_get     VM paused, device quiesced (takes vdev.lock); 0.
 *   virtio_vsock_state_encode  u64 guest CID, u8 RX held, u8 reserved (0),
 *                              u16 RX head (12 bytes).
 *   virtio_vsock_state_decode  the CID is @live's (the configured one),
 *                              flags 0 or 1, reserved 0, the head below the
 *                              queue maximum (0 when nothing is held).
 *   virtio_vsock_state_check   with the core's state from the same snapshot:
 *                              the RX queue's heads in flight are exactly
 *                              the held buffer, TX and event queues have
 *                              none (a device that is not live: holds
 *                              nothing, whatever is in flight, see
 *                              virtio_dev_state_is_live); a buffer is held
 *                              only while RX and TX are both active (the
 *                              device runs only then).
 *   virtio_vsock_state_put     between virtio_dev_state_put and
 *                              virtio_dev_state_restart: closes whatever the
 *                              device had open, takes the held RX buffer
 *                              again (re-read with virtq_pop's checks; a
 *                              failure breaks the device) and, if the driver
 *                              is up, owes it a transport reset: the first
 *                              look at any queue (restart's) delivers it,
 *                              before anything else.  0 or -EINVAL (the
 *                              buffer is not in flight).
 */
/* its own part never changed (virtio.h) */
#define VIRTIO_VSOCK_STATE_VERSION (VIRTIO_SHARED_STATE_VERSION + 0)

struct virtio_vsock_state {
	uint64_t guest_cid;
	uint8_t rx_held;  /* 0 or 1 */
	uint16_t rx_head; /* 0 when none */
};

int virtio_vsock_state_get(struct virtio_vsock *v, struct virtio_vsock_state *st);
void virtio_vsock_state_encode(const struct virtio_vsock_state *st, struct snap_writer *w);
int virtio_vsock_state_decode(struct snap_cursor *c, const struct virtio_vsock *live,
			      struct virtio_vsock_state *st, char *err, size_t errlen);
int virtio_vsock_state_check(const struct virtio_vsock_state *st,
			     const struct virtio_dev_state *core, char *err, size_t errlen);
int virtio_vsock_state_put(struct virtio_vsock *v, const struct virtio_vsock_state *st);

#endif
