/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the decoders of a virtio device's snapshot section
 * (docs/snapshot-format.md, "virtio", "PCI and virtio transports", "virtio
 * devices"), which read a state file the user names, against live
 * transports and devices built as the machine builds them: virtio-pci on a
 * PCI bus (recording platform, tests/unit/msi_fake.h), virtio-mmio, the
 * virtio core with guest memory (so virtq_state_check runs), and
 * virtio-blk (in-memory disk), virtio-net (in-memory back end),
 * virtio-vsock, virtio-rng and virtio-balloon.
 *
 * The first byte selects what the rest (the payload) is:
 *
 *   sel & 7   payload                                     device
 *   0         virtio-pci transport part                   (sel >> 3) % 5
 *   1         virtio-mmio part, then the core's part      (sel >> 3) % 5
 *             (virtio_mmio_state_check between the two)
 *   2         the virtio core's part                      (sel >> 3) % 5
 *   3..7      a whole dev.N payload of virtio-blk, -net,  sel & 7
 *             -vsock, -rng, -balloon: transport, core,
 *             device, checked as machine.c loads it;
 *             transport MMIO, or PCI if sel & 8
 *
 * (devices: 0 blk, 1 net, 2 vsock, 3 rng, 4 balloon).  Beyond crashes,
 * sanitizer reports and leaks, these must hold:
 *   - a refusal is -EINVAL with a one-line message (every decoder and
 *     check documents -EINVAL only; a payload not consumed to its end is
 *     refused by snap_cursor_done, as the machine does);
 *   - an accepted payload has one encoding: every part's encoder gives the
 *     payload back byte for byte.  All parts are canonical: flags and
 *     reserved bytes must be 0/1 and 0, unused heads 0, an inactive
 *     queue's ring state 0, and variable parts (in-flight heads, MSI-X
 *     vectors, net's frame, balloon's bitmap) are sized by fields checked
 *     against the live device;
 *   - an accepted whole device applies to a fresh device of the same
 *     configuration over the guest memory of the session that made the
 *     seeds (what the memory file would hold), exactly as machine.c does
 *     (devices paused; transport, core and device put, each returning 0;
 *     restart; resume), and then takes a driver's notification of every
 *     queue through the transport, runs its event loop, and its state,
 *     taken out again (paused), decodes and checks.
 * Live objects are built once (LLVMFuzzerInitialize); a fresh device is
 * built only for an accepted whole device and destroyed after it.
 *
 * Seeds: tests/fuzz/corpus-virtio_state, written by this binary from the
 * states of its live devices after a short driver session (queues up,
 * chains held: a request the rate limiter holds, a frame half received,
 * a statistics buffer, an RX buffer; net's control queue used and, over
 * MMIO, ANNOUNCE set):
 *   VISOR_FUZZ_WRITE_SEEDS=tests/fuzz/corpus-virtio_state build/fuzz/fuzz_virtio_state
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/arch/x86/layout.h"
#include "../../src/backends/block.h"
#include "../../src/backends/net.h"
#include "../../src/devices/virtio/virtio_balloon.h"
#include "../../src/devices/virtio/virtio_blk.h"
#include "../../src/devices/virtio/virtio_mmio.h"
#include "../../src/devices/virtio/virtio_net.h"
#include "../../src/devices/virtio/virtio_pci.h"
#include "../../src/devices/virtio/virtio_rng.h"
#include "../../src/devices/virtio/virtio_vsock.h"
#include "../../src/event/loop.h"
#include "../../src/util/bytes.h"
#include "../../src/util/log.h"
#include "../unit/msi_fake.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum dev_kind { D_BLK, D_NET, D_VSOCK, D_RNG, D_BALLOON, NDEV };
static const char *const dev_name[NDEV] = {"blk", "net", "vsock", "rng", "balloon"};

/* Guest RAM: per queue q the rings at RING(q); every descriptor of every
 * queue starts as one device-writable buffer of its own (DEFBUF), so a
 * head a payload names usually passes virtq_pop's checks; the session's
 * chains use SBUF on. */
#define MEM_SIZE (2u << 20)
#define QSIZE 64
#define NQMAX 5
#define RING(q) (0x10000ull + (uint64_t)(q)*0x4000)
#define DESC(q) RING(q)
#define AVAIL(q) (RING(q) + 0x1000)
#define USED(q) (RING(q) + 0x2000)
#define DEFBUF(q, i) (0x40000ull + ((uint64_t)(q)*QSIZE + (i)) * 0x200)
#define SBUF 0x80000ull
#define INFLATE_PFN 0x100u /* pages the balloon session inflates: nothing lives there */
#define MMIO_BASE VIRTIO_MMIO_DEV_BASE(0)
#define MMIO_GSI VIRTIO_MMIO_DEV_GSI(0)
#define DISK_SIZE (64u << 10)
#define CID 3
#define HOUR_MS 3600000u
#define F(bit) (1ull << (bit))
#define COMMON(x) (VIRTIO_PCI_COMMON_OFF + VIRTIO_PCI_COMMON_##x)

/* A transport and a device on their own memory, buses, platform and loop
 * (the transport's notifications go through the loop, as in the VMM). */
struct rig {
	struct fake_plat fp; /* msi_fake.h's recorder, no deferral */
	enum dev_kind kind;
	bool pci;
	struct guest_mem mem;
	struct loop loop;
	struct bus pio, mmio;
	struct pci_bus pb;
	struct virtio_pci vp;
	struct virtio_mmio mt;
	int slot;
	struct virtio_dev *d;
	struct blk_mem bm;
	struct virtio_blk blk;
	struct net_mem nm;
	struct virtio_net net;
	struct virtio_vsock vsock;
	struct virtio_rng rng;
	struct virtio_balloon balloon;
	/* the session's driver */
	uint16_t avail_idx[NQMAX], next_desc[NQMAX];
};

/* Everything of one device's section, decoded. */
struct whole {
	struct virtio_pci_state pci;
	struct virtio_mmio_state mmio;
	struct virtio_dev_state core;
	union {
		struct virtio_blk_state blk;
		struct virtio_net_state net;
		struct virtio_vsock_state vsock;
		struct virtio_rng_state rng;
		struct virtio_balloon_state balloon;
	} dev;
};

static struct rig *live[NDEV][2]; /* [device][pci] */
static char sock_dir[64] = "/tmp/visor-fuzz-virtio-XXXXXX";
static struct whole st_in, st_out; /* 100+ KiB each: not on the stack */
static char err[256];

/* The vsock devices' socket, in sock_dir: [live/fresh][mmio/pci]. */
static void sock_path(char *buf, size_t len, bool fresh, bool pci)
{
	snprintf(buf, len, "%s/%s%s.sock", sock_dir, fresh ? "f" : "l", pci ? "p" : "m");
}

/* A failing run ends without cleanup(): take the sockets away first. */
static void fail(const char *what)
{
	fprintf(stderr, "fuzz_virtio_state: %s%s%s\n", what, err[0] ? ": " : "", err);
	char path[128];
	for (int i = 0; i < 4; i++) {
		sock_path(path, sizeof(path), i & 1, i & 2);
		unlink(path);
	}
	rmdir(sock_dir);
	__builtin_trap();
}

static void refused(int rc)
{
	if (rc != -EINVAL || !err[0] || strchr(err, '\n'))
		fail("a refusal that is not -EINVAL with one line");
}

/* ---- rigs ------------------------------------------------------------------ */

/* Set-up failed: not the input's doing (fds or memory ran out, a leak of
 * an earlier run?), so nothing to go on with. */
static void setup_failed(const struct rig *r, const char *what)
{
	fprintf(stderr, "fuzz_virtio_state: cannot build %s over %s: %s\n", dev_name[r->kind],
		r->pci ? "PCI" : "MMIO", what);
	abort();
}

static void dev_create(struct rig *r, bool fresh)
{
	char e[256] = "", path[128];
	static const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
	switch (r->kind) {
	case D_BLK:
		if (blk_mem_init(&r->bm, DISK_SIZE, false, 8) ||
		    virtio_blk_init(&r->blk, &r->bm.be, false, "fuzz-disk", &r->mem, &r->loop, e,
				    sizeof(e)))
			setup_failed(r, e);
		r->d = &r->blk.vdev;
		break;
	case D_NET:
		if (net_mem_init(&r->nm, NET_OFFLOAD_ALL, NET_OFFLOAD_ALL) ||
		    virtio_net_init(&r->net, &r->nm.be, false, mac, &r->mem, &r->loop, e,
				    sizeof(e)) ||
		    virtio_net_set_mtu(&r->net, 1500))
			setup_failed(r, e);
		r->d = &r->net.vdev;
		break;
	case D_VSOCK:
		sock_path(path, sizeof(path), fresh, r->pci);
		if (virtio_vsock_create(&r->vsock, CID, path, &r->mem, &r->loop, e, sizeof(e)))
			setup_failed(r, e);
		r->d = &r->vsock.vdev;
		break;
	case D_RNG:
		if (virtio_rng_init(&r->rng, &r->mem, &r->loop))
			setup_failed(r, "virtio_rng_init");
		r->d = &r->rng.vdev;
		break;
	default:
		if (virtio_balloon_create(&r->balloon, 0, true, 1, &r->mem, &r->loop))
			setup_failed(r, "virtio_balloon_create");
		r->d = &r->balloon.vdev;
		break;
	}
}

/* Device @kind on virtio-pci (@pci) or virtio-mmio, as configured for
 * every rig of that kind (the vsock device at a live or a @fresh socket). */
static struct rig *rig_new(enum dev_kind kind, bool pci, bool fresh)
{
	struct rig *r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	r->kind = kind;
	r->pci = pci;
	bus_init(&r->pio, "pio");
	bus_init(&r->mmio, "mmio");
	fp_init(&r->fp, &r->pio, &r->mmio);
	if (guest_mem_init(&r->mem, MEM_SIZE, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END))
		setup_failed(r, "guest memory");
	if (loop_init(&r->loop))
		setup_failed(r, "event loop");
	r->fp.p.loop = &r->loop;
	if (pci && pci_bus_init(&r->pb, &r->mmio, GPA_PCI_MMIO32, PCI_MMIO32_SIZE, NULL, NULL))
		setup_failed(r, "PCI bus");
	dev_create(r, fresh);
	if (pci) {
		r->slot = virtio_pci_create(&r->vp, &r->pb, r->d, &r->fp.p, -1);
		if (r->slot < 0)
			setup_failed(r, "virtio_pci_create");
	} else if (virtio_mmio_init(&r->mt, r->d, &r->fp.p, MMIO_BASE, MMIO_GSI)) {
		setup_failed(r, "virtio_mmio_init");
	}
	return r;
}

/* The machine's teardown: transport, device, back end, the rest. */
static void rig_free(struct rig *r)
{
	if (!r)
		return;
	if (r->pci)
		virtio_pci_destroy(&r->vp);
	else
		virtio_mmio_destroy(&r->mt);
	switch (r->kind) {
	case D_BLK:
		virtio_blk_destroy(&r->blk);
		blk_destroy(&r->bm.be);
		break;
	case D_NET:
		virtio_net_destroy(&r->net);
		net_close(&r->nm.be);
		break;
	case D_VSOCK:
		virtio_vsock_destroy(&r->vsock);
		break;
	case D_RNG:
		virtio_rng_destroy(&r->rng);
		break;
	default:
		virtio_balloon_destroy(&r->balloon);
		break;
	}
	if (r->pci)
		pci_bus_destroy(&r->pb);
	fp_destroy(&r->fp);
	loop_destroy(&r->loop);
	guest_mem_destroy(&r->mem);
	free(r);
}

/* Run what the loop has ready (notifications, back ends, deferred work),
 * and complete the disk's requests, a bounded number of rounds. */
static void pump(struct rig *r)
{
	for (int i = 0; i < 8; i++) {
		unsigned done = r->kind == D_BLK ? blk_mem_complete(&r->bm, ~0u) : 0;
		if (loop_run_once(&r->loop, 0) <= 0 && !done)
			break;
	}
}

/* The machine's pause and resume of a device (registry_pause_all). */
static void rig_pause(struct rig *r)
{
	virtio_dev_pause(r->d);
	if (r->kind == D_BLK)
		virtio_blk_quiesce(&r->blk);
}

static void rig_resume(struct rig *r)
{
	if (r->kind == D_BLK)
		virtio_blk_unquiesce(&r->blk);
	virtio_dev_resume(r->d);
}

/* ---- the driver's side ------------------------------------------------------- */

static uint8_t *gp(struct rig *r, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gpa_to_hva(&r->mem, gpa, len);
	if (!p)
		abort();
	return p;
}

static void mmio_w(struct rig *r, uint64_t off, uint32_t v)
{
	bus_access(&r->mmio, MMIO_BASE + off, &v, 4, true);
}

static uint64_t bar(struct rig *r)
{
	return __atomic_load_n(&r->vp.bar_gpa, __ATOMIC_ACQUIRE);
}

static void bar_w(struct rig *r, uint64_t off, uint32_t len, uint64_t v)
{
	bus_access(&r->mmio, bar(r) + off, &v, len, true);
}

static void cfg_w(struct rig *r, uint32_t reg, uint32_t len, uint32_t v)
{
	pci_cfg_write(&r->pb, 0, PCI_DEVFN(r->slot, 0), reg, len, v);
}

static void drv_status(struct rig *r, uint8_t s)
{
	if (r->pci)
		bar_w(r, COMMON(STATUS), 1, s);
	else
		mmio_w(r, VIRTIO_MMIO_STATUS, s);
}

static void drv_features(struct rig *r, uint64_t f)
{
	for (uint32_t sel = 0; sel < 2; sel++) {
		uint32_t v = (uint32_t)(f >> (32 * sel));
		if (r->pci) {
			bar_w(r, COMMON(GFSELECT), 4, sel);
			bar_w(r, COMMON(GF), 4, v);
		} else {
			mmio_w(r, VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
			mmio_w(r, VIRTIO_MMIO_DRIVER_FEATURES, v);
		}
	}
}

static void drv_queue(struct rig *r, uint16_t q)
{
	if (r->pci) {
		bar_w(r, COMMON(Q_SELECT), 2, q);
		bar_w(r, COMMON(Q_SIZE), 2, QSIZE);
		bar_w(r, COMMON(Q_DESC), 8, DESC(q));
		bar_w(r, COMMON(Q_DRIVER), 8, AVAIL(q));
		bar_w(r, COMMON(Q_DEVICE), 8, USED(q));
		bar_w(r, COMMON(Q_MSIX), 2, q + 1u);
		bar_w(r, COMMON(Q_ENABLE), 2, 1);
		return;
	}
	const uint64_t a[3] = {DESC(q), AVAIL(q), USED(q)};
	static const uint32_t reg[3] = {VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_DRIVER_LOW,
					VIRTIO_MMIO_QUEUE_DEVICE_LOW};
	mmio_w(r, VIRTIO_MMIO_QUEUE_SEL, q);
	mmio_w(r, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
	for (int i = 0; i < 3; i++) {
		mmio_w(r, reg[i], (uint32_t)a[i]);
		mmio_w(r, reg[i] + 4, (uint32_t)(a[i] >> 32));
	}
	mmio_w(r, VIRTIO_MMIO_QUEUE_READY, 1);
}

/* The driver kicks queue @q: QueueNotify, or the queue's notify address
 * in the BAR (nothing to write to while the BAR is not mapped). */
static void drv_notify(struct rig *r, uint16_t q)
{
	if (!r->pci) {
		mmio_w(r, VIRTIO_MMIO_QUEUE_NOTIFY, q);
	} else if (bar(r) != PCI_BAR_UNMAPPED) {
		uint64_t v = q, at = VIRTIO_PCI_NOTIFY_OFF + (uint64_t)q * VIRTIO_PCI_NOTIFY_MULT;
		bus_access(&r->mmio, bar(r) + at, &v, 2, true);
	}
}

static void drv_desc(struct rig *r, uint16_t q, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t *p = gp(r, DESC(q) + 16ull * i, 16);
	put_le64(p, addr);
	put_le32(p + 8, len);
	put_le16(p + 12, flags);
	put_le16(p + 14, next);
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Write a chain from the queue's next free descriptor on and make it
 * available; its head. */
static uint16_t drv_post(struct rig *r, uint16_t q, const struct seg *s, int n)
{
	uint16_t head = r->next_desc[q];
	for (int i = 0; i < n; i++)
		drv_desc(r, q, (uint16_t)((head + i) % QSIZE), s[i].gpa, s[i].len,
			 (uint16_t)((s[i].write ? VIRTQ_DESC_F_WRITE : 0) |
				    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
			 (uint16_t)((head + i + 1) % QSIZE));
	r->next_desc[q] = (uint16_t)((head + n) % QSIZE);
	put_le16(gp(r, AVAIL(q) + 4 + 2ull * (r->avail_idx[q] % QSIZE), 2), head);
	r->avail_idx[q]++;
	put_le16(gp(r, AVAIL(q) + 2, 2), r->avail_idx[q]);
	return head;
}

/* §3.1.1 through the transport's registers: MSI-X programmed (PCI),
 * @features negotiated, queues 0..@nq-1 up, DRIVER_OK. */
static void drv_up(struct rig *r, uint64_t features, uint16_t nq)
{
	for (uint16_t q = 0; q < nq; q++)
		for (uint16_t i = 0; i < QSIZE; i++)
			drv_desc(r, q, i, DEFBUF(q, i), 0x200, VIRTQ_DESC_F_WRITE, 0);
	if (r->pci) {
		cfg_w(r, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
		uint8_t cap = r->vp.msix.cap;
		cfg_w(r, cap + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
		for (uint32_t v = 0; v <= r->d->num_queues; v++) {
			uint64_t e = VIRTIO_PCI_MSIX_TABLE_OFF + (uint64_t)PCI_MSIX_ENTRY_SIZE * v;
			bar_w(r, e + PCI_MSIX_ENTRY_ADDR_LO, 4, 0xfee00000u | (v << 12));
			bar_w(r, e + PCI_MSIX_ENTRY_ADDR_HI, 4, 0);
			bar_w(r, e + PCI_MSIX_ENTRY_DATA, 4, 0x40 + v);
			bar_w(r, e + PCI_MSIX_ENTRY_CTRL, 4, 0);
		}
	}
	uint8_t s = VIRTIO_STATUS_ACKNOWLEDGE;
	drv_status(r, s);
	drv_status(r, s |= VIRTIO_STATUS_DRIVER);
	drv_features(r, features | F(VIRTIO_F_VERSION_1));
	drv_status(r, s |= VIRTIO_STATUS_FEATURES_OK);
	if (r->pci)
		bar_w(r, COMMON(MSIX), 2, 0);
	for (uint16_t q = 0; q < nq; q++)
		drv_queue(r, q);
	drv_status(r, s | VIRTIO_STATUS_DRIVER_OK);
	pump(r);
}

/* ---- sessions: the live devices' states behind the seeds ------------------- */

static void session_blk(struct rig *r)
{
	drv_up(r, r->d->device_features, 1);
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = HOUR_MS}};
	virtio_blk_set_rate_limiter(&r->blk, &c);
	for (int i = 0; i < 2; i++) {
		uint64_t h = SBUF + 0x1000ull * i;
		put_le32(gp(r, h, 16), VIRTIO_BLK_T_OUT);
		put_le64(gp(r, h, 16) + 8, 1 + (uint64_t)i);
		memset(gp(r, h + 0x100, 512), 0xab + i, 512);
		struct seg s[] = {{h, 16, false}, {h + 0x100, 512, false}, {h + 0x400, 1, true}};
		drv_post(r, 0, s, 3);
	}
	drv_notify(r, 0); /* one goes to the disk, the limiter holds the other */
	pump(r);
}

static void session_net(struct rig *r)
{
	drv_up(r, r->d->device_features, VIRTIO_NET_NUM_QUEUES);
	/* a command answered on the control queue (its indices move) */
	uint8_t *cmd = gp(r, SBUF + 0x3000, 3);
	cmd[0] = VIRTIO_NET_CTRL_RX;
	cmd[1] = 0;
	cmd[2] = 1;
	struct seg cs[] = {{SBUF + 0x3000, 2, false}, {SBUF + 0x3002, 1, false},
			  {SBUF + 0x3010, 1, true}};
	drv_post(r, VIRTIO_NET_CTRLQ, cs, 3);
	drv_notify(r, VIRTIO_NET_CTRLQ);
	pump(r);
	if (r->pci) {
		/* a receive buffer taken for the next frame */
		struct seg s[] = {{SBUF, 2048, true}};
		drv_post(r, VIRTIO_NET_RXQ, s, 1);
		drv_notify(r, VIRTIO_NET_RXQ);
		pump(r);
		return;
	}
	/* one frame sent, the next held by the limiter; a 1412-byte frame
	 * (MTU 1500) received into two 500-byte buffers (MRG_RXBUF), waiting
	 * for more */
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = HOUR_MS}};
	virtio_net_set_rate_limiters(&r->net, NULL, &c);
	for (int i = 0; i < 2; i++) {
		uint64_t g = SBUF + 0x1000ull * i;
		memset(gp(r, g, NET_HDR_LEN + 100), 0, NET_HDR_LEN);
		memset(gp(r, g, NET_HDR_LEN + 100) + NET_HDR_LEN, 0x30 + i, 100);
		struct seg s[] = {{g, NET_HDR_LEN + 100, false}};
		drv_post(r, VIRTIO_NET_TXQ, s, 1);
	}
	drv_notify(r, VIRTIO_NET_TXQ);
	for (int i = 0; i < 2; i++) {
		struct seg s[] = {{SBUF + 0x2000 + 0x400ull * i, 500, true}};
		drv_post(r, VIRTIO_NET_RXQ, s, 1);
	}
	drv_notify(r, VIRTIO_NET_RXQ);
	static uint8_t frame[NET_HDR_LEN + 1400];
	for (size_t i = NET_HDR_LEN; i < sizeof(frame); i++)
		frame[i] = (uint8_t)(i * 7);
	net_mem_inject(&r->nm, frame, sizeof(frame));
	pump(r);
	/* and the driver asked to announce itself, not acked yet */
	r->net.announce_gap_ms = HOUR_MS;
	virtio_net_announce(&r->net);
}

static void session_vsock(struct rig *r)
{
	drv_up(r, F(VIRTIO_VSOCK_F_STREAM), VIRTIO_VSOCK_NUM_QUEUES);
	for (int i = 0; i < 4; i++) {
		struct seg s[] = {{SBUF + 0x1000ull * i, 0x1000, true}};
		drv_post(r, VIRTIO_VSOCK_Q_RX, s, 1);
	}
	for (int i = 0; i < 2; i++) {
		struct seg s[] = {{SBUF + 0x8000 + 0x40ull * i, 8, true}};
		drv_post(r, VIRTIO_VSOCK_Q_EVENT, s, 1);
	}
	for (uint16_t q = 0; q < VIRTIO_VSOCK_NUM_QUEUES; q++)
		drv_notify(r, q);
	pump(r);
}

static void session_rng(struct rig *r)
{
	drv_up(r, 0, 1);
	struct rate_limiter_config c = {.ops = {.size = 1, .refill_time_ms = HOUR_MS}};
	virtio_rng_set_rate_limiter(&r->rng, &c);
	for (int i = 0; i < 2; i++) {
		struct seg s[] = {{SBUF + 0x100ull * i, 32 + 16u * i, true}};
		drv_post(r, 0, s, 1);
	}
	drv_notify(r, 0); /* one served, the limiter holds the other */
	pump(r);
}

static void session_balloon(struct rig *r)
{
	/* inflate, deflate, statistics (2), reporting (3) */
	drv_up(r, r->d->device_features, 4);
	virtio_balloon_set_target(&r->balloon, 16 * 4096);
	uint8_t *pfns = gp(r, SBUF, 16);
	for (uint32_t i = 0; i < 4; i++)
		put_le32(pfns + 4 * i, INFLATE_PFN + i);
	struct seg in[] = {{SBUF, 16, false}};
	drv_post(r, VIRTIO_BALLOON_Q_INFLATE, in, 1);
	drv_notify(r, VIRTIO_BALLOON_Q_INFLATE);
	uint8_t *stats = gp(r, SBUF + 0x100, 2 * VIRTIO_BALLOON_STAT_SIZE);
	put_le16(stats, 4); /* free memory */
	put_le64(stats + 2, 1u << 20);
	put_le16(stats + 10, 5); /* total memory */
	put_le64(stats + 12, MEM_SIZE);
	struct seg st[] = {{SBUF + 0x100, 2 * VIRTIO_BALLOON_STAT_SIZE, false}};
	drv_post(r, 2, st, 1);
	drv_notify(r, 2);
	uint32_t actual = 4;
	if (r->pci)
		bar_w(r, VIRTIO_PCI_DEVICE_OFF + 4, 4, actual);
	else
		mmio_w(r, VIRTIO_MMIO_CONFIG + 4, actual);
	pump(r);
}

/* ---- parts: get, encode, decode, check, put ------------------------------------ */

/* Device type T's virtio_T_state_* on the rig's device r->T and the
 * section's w->dev.T. */
struct state_ops {
	int (*get)(struct rig *r, struct whole *w);
	void (*encode)(const struct whole *w, struct snap_writer *sw);
	int (*decode)(struct rig *r, struct snap_cursor *c, struct whole *w);
	int (*check)(const struct whole *w);
	int (*put)(struct rig *r, const struct whole *w);
};

#define STATE_OPS(T)                                                                        \
	static int st_##T##_get(struct rig *r, struct whole *w)                             \
	{                                                                                   \
		return virtio_##T##_state_get(&r->T, &w->dev.T);                            \
	}                                                                                   \
	static void st_##T##_encode(const struct whole *w, struct snap_writer *sw)          \
	{                                                                                   \
		virtio_##T##_state_encode(&w->dev.T, sw);                                   \
	}                                                                                   \
	static int st_##T##_decode(struct rig *r, struct snap_cursor *c, struct whole *w)   \
	{                                                                                   \
		return virtio_##T##_state_decode(c, &r->T, &w->dev.T, err, sizeof(err));    \
	}                                                                                   \
	static int st_##T##_check(const struct whole *w)                                    \
	{                                                                                   \
		return virtio_##T##_state_check(&w->dev.T, &w->core, err, sizeof(err));     \
	}                                                                                   \
	static int st_##T##_put(struct rig *r, const struct whole *w)                       \
	{                                                                                   \
		return virtio_##T##_state_put(&r->T, &w->dev.T);                            \
	}                                                                                   \
	static const struct state_ops st_##T##_ops = {st_##T##_get, st_##T##_encode,        \
						     st_##T##_decode, st_##T##_check, st_##T##_put}

STATE_OPS(blk);
STATE_OPS(net);
STATE_OPS(vsock);
STATE_OPS(rng);
STATE_OPS(balloon);
static const struct state_ops *const dev_ops[NDEV] = {&st_blk_ops, &st_net_ops, &st_vsock_ops,
						     &st_rng_ops, &st_balloon_ops};

/* The whole section of paused rig @r into @w; 0 or the getter's error. */
static int whole_get(struct rig *r, struct whole *w)
{
	int rc = r->pci ? virtio_pci_state_get(&r->vp, &w->pci)
			: virtio_mmio_state_get(&r->mt, &w->mmio);
	if (!rc)
		rc = virtio_dev_state_get(r->d, &w->core);
	if (!rc)
		rc = dev_ops[r->kind]->get(r, w);
	return rc;
}

/* Which parts a payload holds, in section order. */
enum { P_PCI = 1, P_MMIO = 2, P_CORE = 4, P_DEV = 8 };

static void encode_parts(enum dev_kind k, unsigned parts, const struct whole *w,
			 struct snap_writer *sw)
{
	if (parts & P_PCI)
		virtio_pci_state_encode(&w->pci, sw);
	if (parts & P_MMIO)
		virtio_mmio_state_encode(&w->mmio, sw);
	if (parts & P_CORE)
		virtio_dev_state_encode(&w->core, sw);
	if (parts & P_DEV)
		dev_ops[k]->encode(w, sw);
}

/* Decode @parts of p[0..len) against @r, as machine.c loads a section:
 * each part, the cursor at the end, then the cross-checks.  0 or the
 * refusal (message in err). */
static int decode_parts(struct rig *r, unsigned parts, const uint8_t *p, size_t len,
			struct whole *w)
{
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	err[0] = 0;
	int rc = 0;
	if (!rc && (parts & P_PCI))
		rc = virtio_pci_state_decode(&c, &r->vp, &w->pci, err, sizeof(err));
	if (!rc && (parts & P_MMIO))
		rc = virtio_mmio_state_decode(&c, &r->mt, &w->mmio, err, sizeof(err));
	if (!rc && (parts & P_CORE))
		rc = virtio_dev_state_decode(&c, r->d, &w->core, err, sizeof(err));
	if (!rc && (parts & P_DEV))
		rc = dev_ops[r->kind]->decode(r, &c, w);
	if (!rc)
		rc = snap_cursor_done(&c, "virtio state", err, sizeof(err));
	if (!rc && (parts & P_MMIO) && (parts & P_CORE))
		rc = virtio_mmio_state_check(&w->mmio, &w->core, err, sizeof(err));
	if (!rc && (parts & P_DEV))
		rc = dev_ops[r->kind]->check(w);
	return rc;
}

/* The payload's bytes of @w's @parts (snap_writer_free them). */
static void payload_of(enum dev_kind k, unsigned parts, const struct whole *w,
		       struct snap_writer *sw, const uint8_t **p, size_t *len)
{
	snap_writer_init(sw);
	snap_writer_section_begin(sw, "x", 1);
	encode_parts(k, parts, w, sw);
	if (sw->err)
		fail("encoding failed");
	*p = sw->buf + SNAP_HEADER_LEN + SNAP_SECTION_HEADER_LEN;
	*len = sw->len - SNAP_HEADER_LEN - SNAP_SECTION_HEADER_LEN;
}

static void same_bytes(enum dev_kind k, unsigned parts, const struct whole *w, const uint8_t *p,
		       size_t len)
{
	struct snap_writer sw;
	const uint8_t *q;
	size_t qlen;
	payload_of(k, parts, w, &sw, &q, &qlen);
	if (qlen != len || (len && memcmp(q, p, len)))
		fail("an accepted payload does not encode back to itself");
	snap_writer_free(&sw);
}

/* Apply accepted @w (decoded against @from) to a fresh device of the same
 * configuration over @from's guest memory, as machine.c restores. */
static void apply(struct rig *from, const struct whole *w)
{
	struct rig *r = rig_new(from->kind, from->pci, true);
	memcpy(gp(r, 0, MEM_SIZE), gp(from, 0, MEM_SIZE), MEM_SIZE);
	rig_pause(r);
	err[0] = 0;
	if (r->pci ? virtio_pci_state_put(&r->vp, &w->pci)
		   : virtio_mmio_state_put(&r->mt, &w->mmio))
		fail("an accepted transport state was not put");
	if (virtio_dev_state_put(r->d, &w->core))
		fail("an accepted core state was not put");
	if (dev_ops[r->kind]->put(r, w))
		fail("an accepted device state was not put");
	virtio_dev_state_restart(r->d);
	rig_resume(r);
	pump(r);
	/* the driver carries on: every queue kicked */
	for (uint16_t q = 0; q < r->d->num_queues; q++)
		drv_notify(r, q);
	pump(r);
	/* and what the device holds now is a state a restore accepts */
	rig_pause(r);
	int rc = whole_get(r, &st_out);
	if (rc && rc != -EBUSY)
		fail("state_get failed after a restore");
	if (!rc) {
		unsigned parts = (r->pci ? P_PCI : P_MMIO) | P_CORE | P_DEV;
		struct snap_writer sw;
		const uint8_t *p;
		size_t len;
		payload_of(r->kind, parts, &st_out, &sw, &p, &len);
		if (decode_parts(r, parts, p, len, &st_out))
			fail("the state of a restored device does not load again");
		snap_writer_free(&sw);
	}
	rig_free(r);
}

/* ---- set-up and seeds ----------------------------------------------------------- */

static void cleanup(void)
{
	for (int k = 0; k < NDEV; k++)
		for (int t = 0; t < 2; t++) {
			rig_free(live[k][t]);
			live[k][t] = NULL;
		}
	rmdir(sock_dir);
}

/* Seed @name: selector @sel, then @w's @parts, which must load against
 * @r (the rig the selector picks). */
static void write_seed(const char *dir, const char *name, uint8_t sel, struct rig *r,
		       unsigned parts, const struct whole *w)
{
	struct snap_writer sw;
	const uint8_t *p;
	size_t len;
	payload_of(r->kind, parts, w, &sw, &p, &len);
	if (decode_parts(r, parts, p, len, &st_out))
		fail("a seed does not load");
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(&sel, 1, 1, f) != 1 || fwrite(p, 1, len, f) != len || fclose(f)) {
		fprintf(stderr, "%s: cannot write\n", path);
		exit(1);
	}
	fprintf(stderr, "%s: %zu bytes; heads in flight per queue:", path, len + 1);
	for (uint16_t q = 0; q < w->core.num_queues; q++)
		fprintf(stderr, " %u", w->core.vqs[q].ninflight);
	fprintf(stderr, "\n");
	snap_writer_free(&sw);
}

/* One seed per part and device (the PCI part from device k's PCI rig, the
 * others from its MMIO rig) and per device and transport (whole
 * sections). */
static void write_seeds(const char *dir)
{
	for (int k = 0; k < NDEV; k++) {
		for (int t = 0; t < 2; t++) {
			struct rig *r = live[k][t];
			if (whole_get(r, &st_in))
				fail("a live device's state cannot be taken");
			char name[64];
			unsigned tp = t ? P_PCI : P_MMIO;
			const unsigned pick[3][2] = {{(unsigned)t, P_PCI},
						     {(unsigned)!t, P_MMIO | P_CORE},
						     {(unsigned)!t, P_CORE}};
			for (unsigned part = 0; part < 3; part++) {
				if (!pick[part][0])
					continue;
				static const char *const pname[3] = {"pci", "mmio", "core"};
				snprintf(name, sizeof(name), "%s-%s", pname[part], dev_name[k]);
				write_seed(dir, name, (uint8_t)(part | k << 3), r, pick[part][1],
					   &st_in);
			}
			snprintf(name, sizeof(name), "%s-%s", dev_name[k], t ? "pci" : "mmio");
			write_seed(dir, name, (uint8_t)((3 + k) | t << 3), r, tp | P_CORE | P_DEV,
				   &st_in);
		}
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	if (!mkdtemp(sock_dir))
		abort();
	atexit(cleanup);
	void (*const session[NDEV])(struct rig *) = {session_blk, session_net, session_vsock,
						     session_rng, session_balloon};
	for (int k = 0; k < NDEV; k++)
		for (int t = 0; t < 2; t++) {
			struct rig *r = rig_new((enum dev_kind)k, t, false);
			session[k](r);
			rig_pause(r);
			live[k][t] = r;
		}
	const char *dir = getenv("VISOR_FUZZ_WRITE_SEEDS");
	if (dir) {
		write_seeds(dir);
		exit(0);
	}
	return 0;
}

/* ---- the target ----------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	const uint8_t *p = data + 1;
	size_t len = size - 1;
	unsigned what = sel & 7;
	struct rig *r;
	unsigned parts;
	if (what < 3) {
		static const unsigned part_of[3] = {P_PCI, P_MMIO | P_CORE, P_CORE};
		r = live[(sel >> 3) % NDEV][what == 0];
		parts = part_of[what];
	} else {
		r = live[what - 3][(sel >> 3) & 1];
		parts = (r->pci ? P_PCI : P_MMIO) | P_CORE | P_DEV;
	}
	int rc = decode_parts(r, parts, p, len, &st_in);
	if (rc) {
		refused(rc);
		return 0;
	}
	same_bytes(r->kind, parts, &st_in, p, len);
	if (parts & P_DEV)
		apply(r, &st_in);
	return 0;
}
