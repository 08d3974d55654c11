/* SPDX-License-Identifier: MIT */
/*
 * fuzz_pci_rig.h - what fuzz_pci and fuzz_virtio_pci share: a PCI bus as
 * the machine builds it (ports 0xcf8-0xcff on a port bus, ECAM and the
 * BAR window on an MMIO bus), a recording platform with deferred set-up
 * on an event loop (tests/unit/msi_fake.h), and two virtio-pci functions:
 * slot 1 a fake virtio device (tests/unit/virtio_fake.h: 2 queues, 24
 * bytes of config space) and slot 2 a virtio-rng, whose queue runs in a
 * 64 KiB guest RAM.  A rig is made fresh for every input and torn down
 * after it (so every input starts from the boot state).
 *
 * Guest accesses go through the buses as a vCPU's exits would:
 *   pio     bus_access on the port bus (0xcf8-0xcff and around)
 *   ecam    bus_access at GPA_PCI_ECAM + (devfn << 12 | reg)
 *   bar     bus_access at a function's BAR0 as programmed (+ offset)
 * and one event of the loop at a time (notifications, deferred route and
 * ioeventfd updates).
 *
 * rig_check(): the invariants of the PCI layer, after every operation
 * (no system call but a poll(2) of the route eventfds after a delivery):
 *   - read-only configuration bytes (write mask 0) never change;
 *   - a BAR is on the MMIO bus exactly where its registers say, only with
 *     COMMAND.MEMORY set and an address that is not 0 and a window that
 *     ends below 2^64; when such a BAR is not mapped another window is in
 *     the way, or was when it was placed, and the guest's next write of
 *     COMMAND maps it;
 *   - the MMIO bus's windows do not overlap;
 *   - CONFIG_ADDRESS keeps only its defined bits;
 *   - MSI-X: every interrupt that reached the platform went through a
 *     route programmed with exactly the vector's current message (or was
 *     sent with it), for a vector that is deliverable; no pending bit at or
 *     beyond the vector count; an interrupt waiting for the loop always has
 *     the loop's work queued (none is ever stranded);
 *   - the platform's set-up calls all happen on the loop's thread.
 */
#ifndef VISOR_TESTS_FUZZ_PCI_RIG_H
#define VISOR_TESTS_FUZZ_PCI_RIG_H

#include <poll.h>
#include <stdio.h>

#include "../../src/arch/x86/layout.h"
#include "../../src/devices/pci/pci.h"
#include "../../src/devices/virtio/virtio_pci.h"
#include "../../src/devices/virtio/virtio_rng.h"
#include "../unit/msi_fake.h"
#include "../unit/virtio_fake.h"
#include "fuzz_common.h"

#define RIG_MEM 0x10000u
#define RIG_NFN 3 /* host bridge, fake, rng */

struct rig {
	struct bus pio, mmio;
	struct pci_bus pb;
	struct fake_plat fp;
	struct vf_dev f;
	struct virtio_rng rng;
	struct virtio_pci vpf, vpr;
	struct pci_dev *fn[RIG_NFN];
	struct virtio_pci *vp[RIG_NFN]; /* NULL for the host bridge */
	uint8_t cfg0[RIG_NFN][PCI_CFG_SIZE];
	int nsend_seen;
	uint64_t delivered_seen[RIG_NFN]; /* m->delivered at the last check */
	int cf9;
};

static struct guest_mem rig_mem;
static struct loop rig_loop;
static struct rig R;

static void rig_cf9(void *ctx, uint8_t v)
{
	(void)v;
	((struct rig *)ctx)->cf9++;
}

/* Once per process: guest RAM and the loop (the rig's targets' libFuzzer
 * initialization). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_process_init(&rig_mem, RIG_MEM, &rig_loop);
	return 0;
}

/* A fresh rig (guest RAM filled with @ram, the rest zero). */
static inline void rig_new(const uint8_t *ram, size_t n)
{
	struct rig *r = &R;
	memset(r, 0, sizeof(*r));
	fz_ram_load(rig_mem.base, RIG_MEM, ram, n);
	bus_init(&r->pio, "pio");
	bus_init(&r->mmio, "mmio");
	fp_init(&r->fp, &r->pio, &r->mmio);
	if (fp_enable_defer(&r->fp, &rig_loop) ||
	    pci_bus_init(&r->pb, &r->mmio, GPA_PCI_MMIO32, PCI_MMIO32_SIZE, rig_cf9, r) ||
	    bus_register(&r->pio, &r->pb.pio_dev, PORT_PCI_CONFIG, PORT_PCI_CONFIG_LEN) ||
	    bus_register(&r->mmio, &r->pb.ecam_dev, GPA_PCI_ECAM, PCI_ECAM_SIZE) ||
	    vf_dev_init(&r->f, 1ull << 5, 24, "fake", VIRTIO_ID_BLOCK, 2, 256, &rig_mem,
			&rig_loop) ||
	    virtio_rng_init(&r->rng, &rig_mem, NULL) ||
	    virtio_pci_create(&r->vpf, &r->pb, &r->f.vd, &r->fp.p, 1) != 1 ||
	    virtio_pci_create(&r->vpr, &r->pb, &r->rng.vdev, &r->fp.p, 2) != 2)
		abort();
	for (int i = 0; i < 24; i++)
		r->f.config[i] = (uint8_t)(0xa0 + i);
	r->fn[0] = &r->pb.host;
	r->fn[1] = &r->vpf.pd;
	r->fn[2] = &r->vpr.pd;
	r->vp[1] = &r->vpf;
	r->vp[2] = &r->vpr;
	for (int i = 0; i < RIG_NFN; i++)
		memcpy(r->cfg0[i], r->fn[i]->cfg, PCI_CFG_SIZE);
}

static inline void rig_free(void)
{
	struct rig *r = &R;
	/* what the loop still has for this rig */
	for (int i = 0; i < 64 && fp_run_work(&r->fp); i++)
		;
	virtio_pci_destroy(&r->vpf);
	virtio_pci_destroy(&r->vpr);
	virtio_dev_destroy(&r->f.vd);
	virtio_rng_destroy(&r->rng);
	pci_bus_destroy(&r->pb);
	fp_destroy(&r->fp);
	fz_loop_drain(&rig_loop);
}

/* One ready event of the loop; false if none. */
static inline bool rig_loop_one(void)
{
	return fz_loop_one(&rig_loop);
}

/* ---- guest accesses -------------------------------------------------------- */

static inline void rig_pio(uint16_t port, void *data, uint32_t len, bool write)
{
	bus_access(&R.pio, port, data, len, write);
}

static inline void rig_mmio(uint64_t addr, void *data, uint32_t len, bool write)
{
	bus_access(&R.mmio, addr, data, len, write);
}

/* A read of @len bytes fills exactly @len bytes. */
static inline uint64_t rig_read_checked(bool pio, uint64_t addr, uint32_t len)
{
	return fz_read_checked(pio ? &R.pio : &R.mmio, pio ? (uint16_t)addr : addr, len);
}

static inline uint64_t rig_bar(int fn)
{
	return pci_bar_address(R.fn[fn], VIRTIO_PCI_BAR);
}

/* ---- invariants ---------------------------------------------------------------- */

FZ_QUIET static inline void rig_check_bars(struct pci_dev *pd)
{
	bool mem_on = pci_get16(pd, PCI_COMMAND) & PCI_COMMAND_MEMORY;
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &pd->bars[i];
		if (!b->size) {
			FZ_CHECK(b->mapped_gpa == PCI_BAR_UNMAPPED || !b->mapped_gpa);
			continue;
		}
		uint64_t a = pci_bar_address(pd, i);
		FZ_CHECK(!(a & (b->size - 1))); /* the size's bits read 0 */
		bool want = mem_on && a && a + b->size > a; /* ends below 2^64 */
		if (b->mapped_gpa != PCI_BAR_UNMAPPED) {
			FZ_CHECK(want && b->mapped_gpa == a);
			FZ_CHECK(bus_find(&R.mmio, a, 1) == &b->bd);
			FZ_CHECK(b->bd.base == a && b->bd.len == b->size);
		} else if (want) {
			/* refused: something else is there, or was when this BAR
			 * was last evaluated (pci.h: it stays off until the guest
			 * reprograms it) - and rewriting COMMAND maps it then */
			bool taken = false;
			for (size_t k = 0; k < R.mmio.ndevs; k++) {
				const struct bus_dev *o = R.mmio.devs[k];
				if (o->base <= a + (b->size - 1) && a <= o->base + (o->len - 1))
					taken = true;
			}
			if (!taken) {
				pci_cfg_write(&R.pb, 0, pd->devfn, PCI_COMMAND, 2,
					      pci_get16(pd, PCI_COMMAND));
				FZ_CHECK(b->mapped_gpa == a);
			}
		}
	}
}

FZ_QUIET static inline void rig_check_msix(int f, struct pci_msix *m)
{
	/* Which route eventfds have a count: one poll(2) for all of them,
	 * and only when the function wrote one since the last check (pci.c
	 * writes a route eventfd in one place, write_route, which counts
	 * every write in m->delivered).  A read of each eventfd in every
	 * check cost a system call per vector per operation, most of the
	 * time of the PCI targets. */
	struct pollfd pfd[PCI_MSIX_MAX_VECTORS];
	uint16_t nfd = 0;
	bool look = m->delivered != R.delivered_seen[f];
	R.delivered_seen[f] = m->delivered;
	for (uint16_t v = 0; look && v < m->nvec; v++)
		if (m->vec[v].handle >= 0 && m->vec[v].fd >= 0)
			pfd[nfd++] = (struct pollfd){.fd = m->vec[v].fd, .events = POLLIN};
	int ready = nfd ? poll(pfd, nfd, 0) : 0;
	FZ_CHECK(ready >= 0);
	nfd = 0;
	for (uint16_t v = 0; v < PCI_MSIX_MAX_VECTORS; v++) {
		if (v >= m->nvec) {
			FZ_CHECK(!((m->pba[v / 64] >> (v % 64)) & 1));
			continue;
		}
		const struct pci_msix_vector *e = &m->vec[v];
		uint64_t addr = (uint64_t)e->addr_hi << 32 | e->addr_lo;
		FZ_CHECK(!(e->addr_lo & 3) && !(e->ctrl & ~PCI_MSIX_ENTRY_CTRL_MASK));
		if (e->handle < 0 || e->fd < 0)
			continue;
		if (!look)
			continue;
		FZ_CHECK(pfd[nfd].fd == e->fd);
		if (!(pfd[nfd++].revents & POLLIN))
			continue; /* the count is 0: nothing was delivered */
		uint64_t cnt = 0;
		if (read(e->fd, &cnt, sizeof(cnt)) == sizeof(cnt) && cnt) {
			/* delivered through the route: exactly this message */
			bool ok = m->enabled && !m->masked && !(e->ctrl & PCI_MSIX_ENTRY_CTRL_MASK);
			FZ_CHECK(ok);
			FZ_CHECK(R.fp.routed[e->handle] && R.fp.route_addr[e->handle] == addr &&
				  R.fp.route_data[e->handle] == e->data);
		}
	}
	bool queued = false;
	for (struct platform_work *w = R.fp.work_head; w; w = w->next)
		queued = queued || w == &m->work;
	for (unsigned i = 0; i < sizeof(m->deferred) / sizeof(m->deferred[0]); i++)
		FZ_CHECK(!m->deferred[i] || queued);
}

FZ_QUIET static inline void rig_check(void)
{
	struct rig *r = &R;
	for (int f = 0; f < RIG_NFN; f++) {
		struct pci_dev *pd = r->fn[f];
		/* 8 bytes at a time: only a word that changed has its bytes
		 * looked at (most of configuration space never does) */
		for (unsigned w = 0; w < PCI_CFG_SIZE; w += 8) {
			uint64_t now, then;
			memcpy(&now, pd->cfg + w, 8);
			memcpy(&then, r->cfg0[f] + w, 8);
			if (now == then)
				continue;
			for (unsigned i = w; i < w + 8; i++)
				FZ_CHECK(pd->wmask[i] || pd->cfg[i] == r->cfg0[f][i]);
		}
		rig_check_bars(pd);
		if (pd->msix)
			rig_check_msix(f, pd->msix);
	}
	/* messages sent the slow way: a deliverable vector's message */
	for (; r->nsend_seen < r->fp.nsend && r->nsend_seen < MSI_FAKE_MAXREC; r->nsend_seen++) {
		bool found = false;
		for (int f = 1; f < RIG_NFN && !found; f++) {
			struct pci_msix *m = r->fn[f]->msix;
			for (uint16_t v = 0; v < m->nvec && !found; v++) {
				const struct pci_msix_vector *e = &m->vec[v];
				found = m->enabled && !m->masked &&
					!(e->ctrl & PCI_MSIX_ENTRY_CTRL_MASK) &&
					((uint64_t)e->addr_hi << 32 | e->addr_lo) ==
						r->fp.send_addr[r->nsend_seen] &&
					e->data == r->fp.send_data[r->nsend_seen];
			}
		}
		FZ_CHECK(found);
	}
	for (size_t k = 0; k + 1 < r->mmio.ndevs; k++) {
		const struct bus_dev *a = r->mmio.devs[k], *b = r->mmio.devs[k + 1];
		FZ_CHECK(a->base + (a->len - 1) < b->base);
	}
	FZ_CHECK(!(r->pb.config_address & 0x7f000003u));
	FZ_CHECK(r->fp.off_loop_calls == 0);
}

#endif
