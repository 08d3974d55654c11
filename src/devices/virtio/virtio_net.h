/* SPDX-License-Identifier: MIT */
/*
 * virtio_net.h - virtio network device (virtio 1.2 §5.1) on a net back end
 * (a Linux tap, src/backends/net.h).
 *
 * Queues: 0 receiveq1, 1 transmitq1, 2 controlq (no MQ), at most
 * VIRTIO_NET_QUEUE_MAX entries each.  Every frame carries the 12-byte
 * struct virtio_net_hdr_v1 (VERSION_1: num_buffers is always present).
 *
 * Features offered: MAC, STATUS (link up), MRG_RXBUF, CTRL_VQ and
 * GUEST_ANNOUNCE (the control queue and the announce below), and the offloads the
 * back end supports: CSUM, HOST_TSO4/6, HOST_ECN (guest -> host; a tap takes
 * them all), GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN (host -> guest; probed on
 * the tap).  No UFO/USO.  On DRIVER_OK the back end is told which offloads
 * the driver accepted for its receive side (set_offload / TUNSETOFFLOAD):
 * GUEST_CSUM -> CSUM, GUEST_TSO4/6 -> TSO4/6 (only with GUEST_CSUM),
 * GUEST_ECN -> TSO_ECN (only with a TSO); at reset they go back to none.
 * The ioctl is made on the loop thread (it takes the kernel's rtnl lock,
 * which a vCPU thread must not wait for): activate/reset only record the
 * wish and kick the loop; received frames are checked against what the
 * driver accepted in any case, so a frame produced under older settings
 * never reaches a driver that cannot take it.
 * A driver that accepts an offload without its prerequisite simply never
 * receives such frames (sending less is always safe).
 *
 * Config space (§5.1.4): mac[6] at 0, le16 status at 6 (LINK_UP while the
 * back end works; cleared with a config interrupt when the tap goes away;
 * ANNOUNCE while the device asks the driver to announce itself, below).
 * 8 bytes; with an MTU (virtio_net_set_mtu) 12: le16 max_virtqueue_pairs
 * at 8 (1: the only pair; the field "exists" only with MQ/RSS, which are
 * not offered, but the layout is fixed and 1 is the truth) and le16 mtu at
 * 10, and VIRTIO_NET_F_MTU is offered.  Reads beyond read 0, writes are
 * ignored.
 *
 * MTU (§5.1.4.2): once the driver accepted VIRTIO_NET_F_MTU, a received
 * frame with gso_type NONE longer than mtu + its link-level header (14
 * bytes, 18 with an 802.1Q/802.1ad tag) is dropped (rx_fails), as the spec
 * requires of the device.  Transmitted frames are not checked against it
 * (a larger one is the driver's fault and harmless to the host; the tap
 * takes up to NET_MAX_FRAME).  The MTU of the host's tap interface is the
 * host's business (it is not changed): set it to match.
 *
 * Data path, on the event loop under vdev.lock (§5.1.6):
 *
 * TX (transmitq notify): each chain's readable part is [header + frame].
 *   The header is copied to host memory once (no double fetch) and checked
 *   against the negotiated features (NEEDS_CSUM needs CSUM, GSO TCPv4/v6
 *   needs HOST_TSO4/6, the ECN bit HOST_ECN, UDP/UFO never; no other flag
 *   bits), the frame is written to the back end straight from guest memory
 *   (writev of [host header copy, guest segments]), and the chain is
 *   returned with used length 0.  Policy: a chain that is malformed for
 *   virtio-net - device-writable descriptors, a frame shorter than 14 or
 *   longer than NET_MAX_FRAME bytes, a header that asks for an offload not
 *   negotiated - is DROPPED (returned with length 0, counted in
 *   tx_malformed_frames, logged rate-limited); the device keeps working.
 *   So is a frame the back end refuses (host error, full; tx_fails).  Ring-level violations
 *   (virtq_pop -EIO) break the device.  At most VIRTIO_NET_TX_BUDGET
 *   frames per pass; then an eventfd on the loop continues the pass, so
 *   other handlers (and the other queue) run in between.
 *
 * RX (back-end fd readable, or receiveq notify): the tap fd is watched for
 *   EPOLLIN only while the device can take a frame (it has a receive
 *   buffer, or the driver may have added some); when the receive queue is
 *   empty the fd is disarmed (loop_mod 0) and the device waits for the
 *   next receiveq notification (checklist E.34: a guest that posts no
 *   buffers costs no host CPU, and at most ONE frame is held by the device
 *   however fast the host side floods; the rest waits in the tap's own
 *   bounded queue, where the kernel drops).
 *   A chain is popped first and the frame is read straight into it
 *   (readv: [host header copy, the chain's writable buffers after the
 *   12-byte header, a 64 KiB host bounce buffer]), so a frame that fits
 *   one buffer is copied only by the kernel; the rest of a larger frame
 *   lands in the bounce buffer and is copied into further chains
 *   (MRG_RXBUF).  The header is checked (a frame using an offload the
 *   driver did not accept is dropped; flags are zeroed without GUEST_CSUM,
 *   §5.1.6.4.1), num_buffers is set (always 1 without MRG_RXBUF), and it is
 *   written last.  All chains of a frame are published with ONE used-index
 *   update, so the driver never sees part of a merged frame.  Without
 *   MRG_RXBUF a frame larger than the one chain is dropped and the chain
 *   reused.  With MRG_RXBUF, a frame that still does not fit when every
 *   descriptor of the queue is held by the device is dropped and the held
 *   chains returned with length 0 (only a driver posting tiny buffers gets
 *   there).  A receive chain that is not purely device-writable or is
 *   shorter than the header violates §5.1.6.3.1 and breaks the device.
 *   At most VIRTIO_NET_RX_BUDGET frames per wake-up (the fd is level
 *   triggered: the loop comes back).
 *
 * Pause (virtio_dev_pause/resume, virtio.h): quiesce takes the back end's
 *   fd off the loop (frames that arrive meanwhile wait in the tap's own
 *   queue, where the kernel drops when it is full, as for a guest that
 *   posts no buffers) and the loop callbacks do nothing while vdev.paused
 *   is set, so no frame is read or sent and neither ring moves.  The
 *   receive state stays as it was: a chain taken for the next frame
 *   (rx_c0) or a frame being placed (rx_pending, its chains in rx_heads)
 *   is still held by the device when the pause returns - a snapshot must
 *   keep it.  unquiesce applies a pending offload change and asks the core
 *   to look at both queues, which happens right after the gate opens:
 *   the receive pass re-arms the fd (if there are buffers) and delivers
 *   what waited, the transmit pass sends what the driver queued.
 *   Nothing is lost or sent twice: a frame is either still in the tap or
 *   already in guest memory; a transmit chain is either still available
 *   or already used.  A back end that fails while paused (the tap
 *   deleted: EPOLLERR) still takes the link down at once.
 *
 * Rate limiting (virtio_net_set_rate_limiters, util/ratelimit.h;
 *   Firecracker's rx_rate_limiter / tx_rate_limiter): one limiter per
 *   direction; a frame costs one ops token and its Ethernet length (without
 *   the 12-byte header) in bandwidth tokens.  Nothing spins or sleeps: a
 *   refused frame is held, the limiter arms its timerfd (watched on the
 *   device's loop) and the direction stops until it fires.
 *   TX: the chain is popped first (its length is in the descriptors) and,
 *   if the limiter refuses it, HELD (tx_held, in tx_chain; not sent, not
 *   used, not lost): the pass ends, later chains stay in the avail ring,
 *   and the timer's handler (or a notification) retries the held chain
 *   first, so frames leave in order, each once.  Malformed chains are
 *   charged too (they cost the host work).
 *   RX: a frame's length is known only once it is read, so the frame just
 *   read is charged before it is published; if the limiter refuses it, it
 *   stays the pending frame (rx_pending, in its first chain, not yet in the
 *   used ring: the driver does not see it) and the tap fd is disarmed as
 *   when there are no buffers; further frames wait in the tap's kernel
 *   queue, and while the limiter waits for its timer no frame is read at
 *   all.  The timer's handler publishes the held frame and re-arms the fd.
 *   Frames dropped on receive (too long, offloads) are not charged.
 *   Changing the limits applies at once (a held frame is retried under the
 *   new limits).  A timer that fires while the device is paused only
 *   drains its timerfd (so the level-triggered loop does not spin);
 *   resume looks at both queues, which retries what is held.
 *
 * Control queue (§5.1.6.5; queue 2, used only once the driver accepted
 *   CTRL_VQ), on the loop under vdev.lock like the others: each chain is
 *   struct virtio_net_ctrl, a readable part [u8 class, u8 command,
 *   command data] and a writable part whose first byte takes the ack
 *   (VIRTIO_NET_OK or VIRTIO_NET_ERR); the chain is returned with used
 *   length 1.  Only the 2-byte header is ever copied.  Supported: class
 *   ANNOUNCE, command ACK, without data, once the driver accepted
 *   GUEST_ANNOUNCE (it clears ANNOUNCE in the status, §5.1.6.5.3); the
 *   device offers no other command's feature (CTRL_RX, CTRL_VLAN,
 *   CTRL_MAC_ADDR, MQ, CTRL_GUEST_OFFLOADS, NOTF_COAL), so everything else,
 *   every class and command Linux could send included, is answered ERR.
 *   Malformed chains: no device-writable byte (nowhere to put the ack) is
 *   returned with used length 0, a readable part shorter than the header
 *   is answered ERR; both are counted (ctrl_malformed) and logged
 *   rate-limited, and the device keeps working.  Ring-level violations
 *   (virtq_pop -EIO) break the device.  At most VIRTIO_NET_CTRL_BUDGET
 *   commands per pass; the work eventfd continues the pass.
 *
 * Announce (virtio_net_announce; issue 11: after a migration or a
 *   restore the VM may sit behind another switch port, and switches learn
 *   where its MAC is only from a frame it sends): VIRTIO_NET_ANNOUNCE_ROUNDS
 *   rounds, the first at once, the others announce_gap_ms apart (a timerfd
 *   on the device's loop, put there at the first announce; nothing
 *   sleeps).  In each round, if the driver is up and accepted
 *   GUEST_ANNOUNCE and CTRL_VQ with the control queue running, the device
 *   sets ANNOUNCE in the status and raises a configuration interrupt
 *   (§5.1.6.5.3: the driver sends its gratuitous ARPs and unsolicited
 *   neighbour advertisements, then acks); a round that finds ANNOUNCE
 *   still set (not acked yet) asks nothing more.  Otherwise (no such
 *   driver: not loaded, reset, or one without the feature) visor sends
 *   the frame itself from the guest's MAC: a broadcast RARP request
 *   (EtherType 0x8035, sender and target hardware address the MAC, both
 *   protocol addresses 0), padded to 60 bytes.  Not a gratuitous ARP:
 *   that needs the guest's IPv4 address, which visor does not know, and
 *   an ARP from 0.0.0.0 is a probe (RFC 5227) that hosts act on; nobody
 *   answers a RARP request today, and a switch learns the port from the
 *   source address of any frame.  The frame is host-made: it bypasses
 *   the TX rate limiter.  A pause suspends the rounds (a paused VM
 *   announces nothing: a migration's source stops for the switch-over),
 *   the resume carries on with the next round; a driver reset clears
 *   ANNOUNCE.  Counted in announce_count, announce_guest, announce_frames.
 *
 * Reset (ops->reset, vdev.lock held, any thread): the pending frame and
 * the held chains are forgotten, the fd is disarmed, the back end's
 * offloads go back to none; the rate limiters keep their state (tokens).
 * Everything touching guest memory runs under vdev.lock and checks that
 * the queue is still live, so nothing touches guest memory once reset
 * returns (a wake-up already on its way - the back end's fd, a limiter's
 * timer - finds the queues inactive).  Completes synchronously.
 */
#ifndef VISOR_DEVICES_VIRTIO_VIRTIO_NET_H
#define VISOR_DEVICES_VIRTIO_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../backends/net.h"
#include "../../util/log.h"
#include "../../util/ratelimit.h"
#include "virtio.h"

/* Feature bits (§5.1.3) */
#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_CTRL_GUEST_OFFLOADS 2
#define VIRTIO_NET_F_MTU 3
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN 9
#define VIRTIO_NET_F_GUEST_UFO 10
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_ECN 13
#define VIRTIO_NET_F_HOST_UFO 14
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_CTRL_RX 18
#define VIRTIO_NET_F_CTRL_VLAN 19
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21
#define VIRTIO_NET_F_MQ 22
#define VIRTIO_NET_F_CTRL_MAC_ADDR 23

/* struct virtio_net_hdr_v1 (§5.1.6): offsets and values */
#define VIRTIO_NET_HDR_FLAGS 0
#define VIRTIO_NET_HDR_GSO_TYPE 1
#define VIRTIO_NET_HDR_HDR_LEN 2
#define VIRTIO_NET_HDR_GSO_SIZE 4
#define VIRTIO_NET_HDR_CSUM_START 6
#define VIRTIO_NET_HDR_CSUM_OFFSET 8
#define VIRTIO_NET_HDR_NUM_BUFFERS 10
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_F_RSC_INFO 4
#define VIRTIO_NET_HDR_GSO_NONE 0
#define VIRTIO_NET_HDR_GSO_TCPV4 1
#define VIRTIO_NET_HDR_GSO_UDP 3
#define VIRTIO_NET_HDR_GSO_TCPV6 4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#define VIRTIO_NET_HDR_GSO_ECN 0x80

/* Config space (§5.1.4) */
#define VIRTIO_NET_CFG_MAC 0
#define VIRTIO_NET_CFG_STATUS 6
#define VIRTIO_NET_CFG_MAX_VQ_PAIRS 8
#define VIRTIO_NET_CFG_MTU 10
#define VIRTIO_NET_CONFIG_SIZE_BASE 8 /* mac, status */
#define VIRTIO_NET_CONFIG_SIZE 12     /* ... max_virtqueue_pairs, mtu (with an MTU) */
/* Firecracker's NetworkInterface.mtu range (IPv4's minimum; 16-bit field) */
#define VIRTIO_NET_MTU_MIN 68
#define VIRTIO_NET_MTU_MAX 65535
#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_S_ANNOUNCE 2

/* Control queue (§5.1.6.5): struct virtio_net_ctrl's header, classes and
 * commands, acks */
#define VIRTIO_NET_CTRL_HDR_LEN 2 /* u8 class, u8 command */
#define VIRTIO_NET_CTRL_RX 0
#define VIRTIO_NET_CTRL_MAC 1
#define VIRTIO_NET_CTRL_VLAN 2
#define VIRTIO_NET_CTRL_ANNOUNCE 3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0
#define VIRTIO_NET_CTRL_MQ 4
#define VIRTIO_NET_CTRL_GUEST_OFFLOADS 5
#define VIRTIO_NET_CTRL_NOTF_COAL 6
#define VIRTIO_NET_OK 0
#define VIRTIO_NET_ERR 1

#define VIRTIO_NET_RXQ 0
#define VIRTIO_NET_TXQ 1
#define VIRTIO_NET_CTRLQ 2
#define VIRTIO_NET_NUM_QUEUES 3
#define VIRTIO_NET_QUEUE_MAX 256
#define VIRTIO_NET_TX_BUDGET 64
#define VIRTIO_NET_RX_BUDGET 64
#define VIRTIO_NET_CTRL_BUDGET 64

/* Announce (virtio_net_announce): rounds, and the time between two */
#define VIRTIO_NET_ANNOUNCE_ROUNDS 3
#define VIRTIO_NET_ANNOUNCE_GAP_MS 100
/* The frame visor sends for a driver that cannot announce: a broadcast
 * RARP request padded to the minimum Ethernet frame (without FCS). */
#define VIRTIO_NET_RARP_LEN 60
#define VIRTIO_NET_ETH_P_RARP 0x8035
/* Host bounce buffer for the part of a received frame beyond its first
 * chain: a whole frame with its header. */
#define VIRTIO_NET_BOUNCE_SIZE (NET_HDR_LEN + NET_MAX_FRAME)

/* Counters (Firecracker's names where they fit), since the device was
 * created (a reset does not clear them).  Bytes are Ethernet frame bytes,
 * without the 12-byte virtio-net header. */
struct virtio_net_metrics {
	/* receive: back end -> guest */
	uint64_t rx_bytes_count;       /* bytes of the frames delivered */
	uint64_t rx_packets_count;     /* frames delivered (published in the used ring) */
	uint64_t rx_fails;             /* frames read from the back end and dropped: too short or
					* long, an offload the driver did not accept, larger
					* than the receive buffers */
	uint64_t rx_queue_event_count; /* receive queue notifications handled */
	uint64_t rx_tap_event_count;   /* wake-ups from the back end's fd */
	uint64_t no_rx_avail_buffer;   /* the back end had a frame and the driver no (or not
					* enough) receive buffers: the fd is paused */
	uint64_t tap_read_fails;       /* receive errors of the back end (it is then gone) */
	uint64_t rx_rate_limiter_throttled; /* receive stopped by the RX limiter: a frame it
					     * refused, or a look at the queue while it
					     * waits for its timer */
	/* transmit: guest -> back end */
	uint64_t tx_bytes_count;       /* bytes of the frames the back end took */
	uint64_t tx_packets_count;     /* frames the back end took */
	uint64_t tx_fails;             /* well-formed frames the back end refused (dropped) */
	uint64_t tx_malformed_frames;  /* chains dropped as malformed (see TX above) */
	uint64_t tx_queue_event_count; /* transmit queue notifications handled */
	uint64_t tx_rate_limiter_throttled; /* frames the TX limiter refused (held; a retry
					     * refused again counts again) */
	/* control queue */
	uint64_t ctrl_queue_event_count; /* control queue notifications handled */
	uint64_t ctrl_cmds;              /* commands answered VIRTIO_NET_OK */
	uint64_t ctrl_fails;             /* commands answered VIRTIO_NET_ERR (unsupported or
					  * malformed) */
	uint64_t ctrl_malformed;         /* chains without an ack byte (returned unanswered)
					  * or shorter than the header (answered ERR) */
	/* announce (virtio_net_announce) */
	uint64_t announce_count;  /* announces asked for */
	uint64_t announce_guest;  /* rounds that asked the driver (ANNOUNCE, config interrupt) */
	uint64_t announce_frames; /* RARP frames visor sent for the guest */
	uint64_t announce_fails;  /* RARP frames the back end refused */
};

struct virtio_net {
	struct virtio_dev vdev; /* hand &vdev to a transport */
	struct net_backend *be;
	bool own_be;      /* close the back end with the device */
	bool be_watched;  /* be->fd is on the loop */
	int work_fd;      /* eventfd on the loop (TX budget, offloads), -1 without a loop */
	uint8_t mac[6];
	/* The limiters' clock (NULL: CLOCK_MONOTONIC); tests set it before
	 * the first virtio_net_set_rate_limiters. */
	rate_limiter_clock_fn limiter_clock;
	void *limiter_clock_ctx;

	/* under vdev.lock */
	uint16_t mtu;        /* 0: VIRTIO_NET_F_MTU not offered */
	uint32_t config_len; /* VIRTIO_NET_CONFIG_SIZE_BASE, or _SIZE with an MTU */
	uint8_t config[VIRTIO_NET_CONFIG_SIZE];
	bool link_up;
	bool be_dead;     /* the back end failed for good (tap deleted) */
	bool rx_armed;    /* the device wants be->fd watched for EPOLLIN */
	bool fd_on;       /* ... and it is: rx_armed and not paused */
	unsigned offloads;     /* last given to be->set_offload */
	unsigned offload_want; /* what the driver accepted (0 after reset) */
	/* receive state: a chain taken for the next frame, and the frame
	 * being placed (at most one) */
	bool rx_have_c0;
	bool rx_pending;
	uint32_t rx_len;    /* frame length with the header */
	uint32_t rx_c0_cap; /* writable bytes of the first chain */
	uint32_t rx_placed; /* bytes of the frame in guest chains so far */
	uint16_t rx_nheads;
	uint8_t rx_hdr[NET_HDR_LEN];
	uint8_t *rx_bounce; /* frame bytes [rx_c0_cap, rx_len) */
	uint16_t rx_heads[VIRTIO_NET_QUEUE_MAX];
	uint32_t rx_lens[VIRTIO_NET_QUEUE_MAX];
	struct virtq_chain rx_c0, rx_chain, tx_chain;
	/* rate limiting */
	bool rx_limited, tx_limited; /* limiter set up, its timer_fd on the loop */
	bool rx_charged;   /* the pending frame was paid for */
	bool rx_throttled; /* receive stopped because of the RX limiter */
	bool tx_held;      /* tx_chain is popped, waiting for the TX limiter */
	bool cfg_restored; /* a restore changed the link status the driver saw */
	bool ctrl_more;    /* a control queue pass stopped at its budget */
	struct virtq_chain ctrl_chain;
	/* announce: ANNOUNCE set in the status (until the driver's ack or a
	 * reset), rounds still to do, the timer between rounds (-1 until the
	 * first announce puts it on the loop) and whether it is armed */
	bool announce_pending;
	unsigned announce_left;
	int announce_fd;
	bool announce_armed;
	uint32_t announce_gap_ms; /* VIRTIO_NET_ANNOUNCE_GAP_MS; tests may set it */
	struct rate_limiter rx_limiter, tx_limiter;
	struct ratelimit rl;
	struct virtio_net_metrics metrics;
};

/* Build the device on back end @be.  @mac: the address the guest gets;
 * NULL: net_default_mac(be->name, 0).  With a @loop, be->fd (if >= 0) and
 * an eventfd are registered there (2 loop slots, 1 more per rate-limited
 * direction, virtio_net_set_rate_limiters, and 1 from the first announce
 * on, virtio_net_announce); without one (tests) the TX and control passes
 * are not budgeted, an announce has one round, and the caller drives RX with
 * virtio_net_backend_ready().  @own_be: virtio_net_destroy closes @be.
 * Returns 0 or -errno with one line in @err. */
int virtio_net_init(struct virtio_net *n, struct net_backend *be, bool own_be, const uint8_t *mac,
		    const struct guest_mem *mem, struct loop *loop, char *err, size_t errlen);

/* Open tap @tap_name (tap_open) and build the device on it.  @mac_or_null
 * as for virtio_net_init.  Returns 0 or -errno with one line in @err
 * (tap_open's messages). */
int virtio_net_create(struct virtio_net *n, const char *tap_name, const uint8_t *mac_or_null,
		      const struct guest_mem *mem, struct loop *loop, char *err, size_t errlen);

/* Tear down (after the transport is gone, the vCPUs and the loop stopped).
 * A no-op on a device whose init failed or that was destroyed. */
void virtio_net_destroy(struct virtio_net *n);

/* What the loop callback of the back end's fd does (takes vdev.lock):
 * @events EPOLLIN: receive (nothing while the device is paused);
 * EPOLLERR/EPOLLHUP: the back end is gone, the link goes down (also while
 * paused).  Loop thread (tests call it directly). */
void virtio_net_backend_ready(struct virtio_net *n, uint32_t events);

/* What the loop callback of the device's eventfd does (takes vdev.lock):
 * apply a pending offload change and continue a TX pass the budget cut
 * short.  Nothing while the device is paused (unquiesce does it).  Loop
 * thread.  (Continuing a TX pass, not resuming a paused VM: that is
 * virtio_dev_resume.) */
void virtio_net_continue(struct virtio_net *n);

/* Set Firecracker's rx_rate_limiter (@rx) and tx_rate_limiter (@tx) of the
 * interface: bandwidth tokens are Ethernet frame bytes, ops tokens frames.
 * NULL leaves that direction as it is; an all-zero config makes it
 * unlimited.  Loop thread (takes vdev.lock), before or after the driver
 * activated the device, paused or not; effective at once: a frame held
 * under the old limits is retried now (when paused: on resume).  The
 * first limiting config of a direction creates its limiter (full buckets)
 * and puts its timerfd on the device's loop; later changes follow
 * rate_limiter_update (a bucket whose config changed starts full).
 * Returns 0; -EINVAL if a limit is asked for and the device has no loop
 * (nothing could resume a throttled queue); -errno from creating a timer
 * or registering it.  On failure nothing changed (neither direction). */
int virtio_net_set_rate_limiters(struct virtio_net *n, const struct rate_limiter_config *rx,
				 const struct rate_limiter_config *tx);

/* Offer VIRTIO_NET_F_MTU with @mtu (VIRTIO_NET_MTU_MIN..MAX) in the config
 * space, or stop offering it (@mtu 0: the config space is 8 bytes again).
 * Only while no driver is negotiating (device status 0: before the guest
 * found the device, or after a reset), since the offered features must not
 * change under a driver: -EBUSY otherwise.  -EINVAL for an @mtu out of
 * range (nothing changed).  0 on success.  Any thread (takes vdev.lock). */
int virtio_net_set_mtu(struct virtio_net *n, uint16_t mtu);

/* Announce the interface (see "Announce" above): VIRTIO_NET_ANNOUNCE_ROUNDS
 * rounds, the first now unless the device is paused (then at its
 * resume); asking again while rounds are left starts them over.  Loop
 * thread (takes vdev.lock).  0; -errno if the timer for the later rounds
 * cannot be made (the first round is done anyway, the others are not). */
int virtio_net_announce(struct virtio_net *n);

/* Copy the counters into @out (consistent: taken under vdev.lock, so not
 * from a context that holds it).  Any thread. */
void virtio_net_get_metrics(struct virtio_net *n, struct virtio_net_metrics *out);

/* A stable locally administered unicast address for NIC @index on tap
 * @name (a hash of both; the same arguments always give the same MAC). */
void net_default_mac(const char *name, unsigned index, uint8_t mac[6]);

/* "aa:bb:cc:dd:ee:ff" into @buf (at least 18 bytes). */
void net_format_mac(const uint8_t mac[6], char *buf);

/*
 * Snapshot state (docs/snapshot-format.md, "virtio devices"): what the
 * device holds beyond the virtio core (virtio_dev_state_*, saved beside
 * it).  The back end is a host resource and is not saved: the restored
 * device runs on the tap the configuration names (reopened by name, or
 * another one given at load), and the offloads the driver accepted are
 * applied to it at the restart.  The rate limiters are host state too
 * (full buckets after a restore).  Saved:
 *   - the config space the driver read: MAC (the restored device takes
 *     it, whatever address its tap would have given: the guest's driver
 *     uses the old one), link status and ANNOUNCE (a request the driver
 *     had not acked yet), MTU (the configured one);
 *   - the transmit chain held for the TX limiter (its head);
 *   - the receive side: nothing, a chain taken for the next frame (its
 *     head), or a frame being placed: its length, header, the chains it
 *     occupies (heads and bytes placed in each) and the bytes of it not yet
 *     in guest memory.  Chains are kept by their heads: their descriptors
 *     and the bytes already placed are in guest memory.
 * The control queue is the core's third queue; the device never holds a
 * control chain (each is answered in the pass that pops it).  The
 * announce rounds still to do are host timing, not saved: the machine
 * announces a restored VM anyway (registry_announce_all at its first
 * resume).
 * If the link status the driver saw is not the new back end's (a tap that
 * had gone away, a new one that works), the driver gets a configuration
 * change interrupt when the device restarts.
 *
 *   virtio_net_state_get     VM paused, device quiesced (takes vdev.lock); 0.
 *   virtio_net_state_encode  6 bytes MAC, u16 status, u16 MTU, u8 TX held,
 *                            u8 RX state (0 nothing, 1 a buffer, 2 a frame),
 *                            u16 TX head, u16 RX head (16 bytes); with RX
 *                            state 2: u32 frame length (header included),
 *                            u32 capacity of its first chain, u16 chain
 *                            count, per chain u16 head and u32 bytes placed,
 *                            12 bytes header, the rest of the frame (length
 *                            minus the bytes placed).
 *   virtio_net_state_decode  against @live, built from the same
 *                            configuration: MAC unicast and not zero, status
 *                            only LINK_UP and ANNOUNCE, MTU @live's, flags and RX state
 *                            in range, heads below the queue maximum (0 when
 *                            unused) and distinct, a frame as the receive
 *                            path builds one (length within the frame
 *                            limits, a first chain of at least the header
 *                            holding min(length, capacity) bytes, further
 *                            chains holding at least one byte each and only
 *                            when the first one is full, no more than the
 *                            length placed).
 *   virtio_net_state_check   with the core's state from the same snapshot:
 *                            each queue's heads in flight are exactly the
 *                            chains the device holds on it, held only on
 *                            active queues of a live device, a frame in
 *                            several chains only with MRG_RXBUF, nothing in
 *                            flight on the control queue, ANNOUNCE only if
 *                            the driver accepted GUEST_ANNOUNCE.  A device
 *                            that is not live (virtio_dev_state_is_live)
 *                            holds nothing, whatever is in flight.
 *   virtio_net_state_put     between virtio_dev_state_put and
 *                            virtio_dev_state_restart: MAC and status; the
 *                            held chains are read again from guest memory
 *                            (virtq_pop's checks, and a receive chain's as
 *                            the receive path checks it: a failure breaks
 *                            the device) and held, so restart's look at both
 *                            queues sends the held frame and completes the
 *                            one being received.  0 or -EINVAL (a head not
 *                            in flight).
 */
/*
 * Version (virtio.h): the shared parts' version plus the changes of the
 * device's own: 1, the control queue (three queues in the core's part;
 * ANNOUNCE may be set in the status).  A section of the version before
 * (VIRTIO_SHARED_STATE_VERSION + 0, two queues) is refused with both
 * versions named: its device had two queues and, over PCI, three MSI-X
 * vectors and an 8-byte notify window, which the restored driver has
 * mapped, and the device this visor builds from the configuration has
 * three queues (docs/snapshot-format.md, "Changes").
 */
#define VIRTIO_NET_STATE_VERSION (VIRTIO_SHARED_STATE_VERSION + 1)

#define VIRTIO_NET_RX_IDLE 0   /* the device holds no receive chain */
#define VIRTIO_NET_RX_BUFFER 1 /* a chain taken for the next frame */
#define VIRTIO_NET_RX_FRAME 2  /* a frame being placed */

struct virtio_net_state {
	uint8_t mac[6];
	uint16_t status;  /* config status: VIRTIO_NET_S_LINK_UP, VIRTIO_NET_S_ANNOUNCE */
	uint16_t mtu;     /* 0: VIRTIO_NET_F_MTU not offered */
	uint8_t tx_held;  /* 0 or 1 */
	uint8_t rx_state; /* VIRTIO_NET_RX_* */
	uint16_t tx_head; /* the held transmit chain (0 when none) */
	uint16_t rx_head; /* RX_BUFFER: the chain taken (0 otherwise) */
	/* RX_FRAME */
	uint32_t rx_len;    /* frame length with the header */
	uint32_t rx_c0_cap; /* writable bytes of its first chain */
	uint16_t rx_nheads;
	uint16_t rx_heads[VIRTIO_NET_QUEUE_MAX]; /* rx_heads[0]: the first chain */
	uint32_t rx_lens[VIRTIO_NET_QUEUE_MAX];  /* frame bytes placed in each */
	uint8_t rx_hdr[NET_HDR_LEN];
	uint8_t rx_rest[VIRTIO_NET_BOUNCE_SIZE]; /* frame bytes not placed yet */
};

int virtio_net_state_get(struct virtio_net *n, struct virtio_net_state *st);
void virtio_net_state_encode(const struct virtio_net_state *st, struct snap_writer *w);
int virtio_net_state_decode(struct snap_cursor *c, const struct virtio_net *live,
			    struct virtio_net_state *st, char *err, size_t errlen);
int virtio_net_state_check(const struct virtio_net_state *st, const struct virtio_dev_state *core,
			   char *err, size_t errlen);
int virtio_net_state_put(struct virtio_net *n, const struct virtio_net_state *st);

#endif
