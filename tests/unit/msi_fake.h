/* SPDX-License-Identifier: MIT */
/*
 * msi_fake.h - a recording struct platform for the PCI tests: MSI routes
 * (each one a real eventfd, so delivery can be observed) and ioeventfds.
 * Every call is counted; the first MSI_FAKE_MAXREC (MSI) or
 * MSI_FAKE_MAXIOE (ioeventfd) calls also keep their arguments.
 *
 * Header-only, static inline, so that every tests/unit/test_*.c stays one
 * self-contained binary.
 */
#ifndef VISOR_TEST_MSI_FAKE_H
#define VISOR_TEST_MSI_FAKE_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../src/devices/platform.h"

#define MSI_FAKE_MAXREC 64
#define MSI_FAKE_MAXIOE 32

struct fake_plat {
	struct platform p;
	/* MSI routes; handles are 0, 1, ... in allocation order */
	int nalloc, nupdate, nfree, nsend;
	int fail_alloc; /* msi_alloc returns this if non-zero */
	uint64_t alloc_addr[MSI_FAKE_MAXREC], update_addr[MSI_FAKE_MAXREC];
	uint64_t send_addr[MSI_FAKE_MAXREC];
	uint32_t alloc_data[MSI_FAKE_MAXREC], update_data[MSI_FAKE_MAXREC];
	uint32_t send_data[MSI_FAKE_MAXREC];
	int fds[MSI_FAKE_MAXREC]; /* eventfd per handle, -1 if none */
	int freed[MSI_FAKE_MAXREC];
	/* ioeventfds (MMIO only: port I/O ones are refused with -EINVAL) */
	int nioe_add, nioe_del;
	int ioe_fail; /* ioeventfd_add returns this if non-zero */
	uint64_t ioe_add_addr[MSI_FAKE_MAXIOE], ioe_del_addr[MSI_FAKE_MAXIOE];
	uint32_t ioe_len[MSI_FAKE_MAXIOE];
	int ioe_fd[MSI_FAKE_MAXIOE];
};

static inline struct fake_plat *fake_plat_of(struct platform *p)
{
	return (struct fake_plat *)p;
}

static inline int fp_msi_alloc(struct platform *p, uint64_t addr, uint32_t data, int *handle,
			       int *fd)
{
	struct fake_plat *f = fake_plat_of(p);
	if (f->fail_alloc)
		return f->fail_alloc;
	if (f->nalloc >= MSI_FAKE_MAXREC)
		return -ENOSPC;
	int h = f->nalloc++;
	f->alloc_addr[h] = addr;
	f->alloc_data[h] = data;
	f->fds[h] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	*handle = h;
	*fd = f->fds[h];
	return 0;
}

static inline int fp_msi_update(struct platform *p, int handle, uint64_t addr, uint32_t data)
{
	struct fake_plat *f = fake_plat_of(p);
	if (f->nupdate < MSI_FAKE_MAXREC) {
		f->update_addr[f->nupdate] = addr;
		f->update_data[f->nupdate] = data;
	}
	f->nupdate++;
	return handle >= 0 && handle < f->nalloc ? 0 : -ENOENT;
}

static inline void fp_msi_free(struct platform *p, int handle)
{
	struct fake_plat *f = fake_plat_of(p);
	if (f->nfree < MSI_FAKE_MAXREC)
		f->freed[f->nfree] = handle;
	f->nfree++;
}

static inline int fp_msi_send(struct platform *p, uint64_t addr, uint32_t data)
{
	struct fake_plat *f = fake_plat_of(p);
	if (f->nsend < MSI_FAKE_MAXREC) {
		f->send_addr[f->nsend] = addr;
		f->send_data[f->nsend] = data;
	}
	f->nsend++;
	return 0;
}

static inline int fp_ioe_add(struct platform *p, bool pio, uint64_t addr, uint32_t len, int efd)
{
	struct fake_plat *f = fake_plat_of(p);
	if (f->ioe_fail)
		return f->ioe_fail;
	if (f->nioe_add < MSI_FAKE_MAXIOE) {
		f->ioe_add_addr[f->nioe_add] = addr;
		f->ioe_len[f->nioe_add] = len;
		f->ioe_fd[f->nioe_add] = efd;
	}
	f->nioe_add++;
	return pio ? -EINVAL : 0;
}

static inline int fp_ioe_del(struct platform *p, bool pio, uint64_t addr, uint32_t len, int efd)
{
	struct fake_plat *f = fake_plat_of(p);
	if (f->nioe_del < MSI_FAKE_MAXIOE)
		f->ioe_del_addr[f->nioe_del] = addr;
	f->nioe_del++;
	return 0;
}

static const struct platform_ops fp_ops __attribute__((unused)) = {
	.msi_alloc = fp_msi_alloc,
	.msi_update = fp_msi_update,
	.msi_free = fp_msi_free,
	.msi_send = fp_msi_send,
	.ioeventfd_add = fp_ioe_add,
	.ioeventfd_del = fp_ioe_del,
};

/* A fresh recorder on the given buses (no event loop). */
static inline void fp_init(struct fake_plat *f, struct bus *pio, struct bus *mmio)
{
	memset(f, 0, sizeof(*f));
	f->p.ops = &fp_ops;
	f->p.pio = pio;
	f->p.mmio = mmio;
	for (int i = 0; i < MSI_FAKE_MAXREC; i++)
		f->fds[i] = -1;
}

/* Close the routes' eventfds. */
static inline void fp_destroy(struct fake_plat *f)
{
	for (int i = 0; i < MSI_FAKE_MAXREC; i++)
		if (f->fds[i] >= 0)
			close(f->fds[i]);
}

#endif
