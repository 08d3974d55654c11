/* SPDX-License-Identifier: MIT */
/*
 * snapshot/config_section.c - section "config"; see config_section.h.
 *
 * Payload (version 1, little-endian; a string is u16 length + bytes, no
 * NUL, at most the size of its config field minus one):
 *   u32 cpus, u64 mem_mib, u8 smt, u8 track_dirty_pages, u16 reserved
 *   str kernel, str initrd, str cmdline
 *   u32 ndisks, per drive: str id, str path, u8 readonly, u8 root,
 *       u8 cache, u8 io_engine, u8 transport, u8 reserved[3], str partuuid,
 *       rate limiter (6 x u64: bandwidth size, burst, refill ms; ops same)
 *   u32 nnics, per interface: str id, str tap, str mac, u32 mtu,
 *       u8 transport, u8 reserved[3], rx rate limiter, tx rate limiter
 *   vsock: u8 enabled, u8 transport, u16 reserved, str id, u64 cid, str uds
 *   balloon: u8 enabled, u8 deflate_on_oom, u8 no_reporting, u8 transport,
 *       u64 size (bytes), u32 stats_period
 *   rng: u8 enabled, u8 transport, u16 reserved, rate limiter
 */
#include "config_section.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "../util/str.h"

static void put_rl(struct snap_writer *w, const struct rate_limiter_config *rl)
{
	const struct bucket_config *b[2] = {&rl->bandwidth, &rl->ops};
	for (int i = 0; i < 2; i++) {
		snap_put_u64(w, b[i]->size);
		snap_put_u64(w, b[i]->one_time_burst);
		snap_put_u64(w, b[i]->refill_time_ms);
	}
}

void snap_config_write(const struct vm_config *c, struct snap_writer *w)
{
	snap_writer_section_begin(w, SNAP_CONFIG_ID, SNAP_CONFIG_VERSION);
	snap_put_u32(w, c->cpus);
	snap_put_u64(w, c->mem_size >> 20);
	snap_put_u8(w, c->smt);
	snap_put_u8(w, c->track_dirty_pages);
	snap_put_u16(w, 0);
	snap_put_str(w, c->kernel, sizeof(c->kernel));
	snap_put_str(w, c->initrd, sizeof(c->initrd));
	snap_put_str(w, c->cmdline, sizeof(c->cmdline));
	snap_put_u32(w, c->ndisks);
	for (uint32_t i = 0; i < c->ndisks; i++) {
		const struct disk_config *d = &c->disks[i];
		snap_put_str(w, d->id, sizeof(d->id));
		snap_put_str(w, d->path, sizeof(d->path));
		const uint8_t b[8] = {d->readonly,	     d->root, (uint8_t)d->cache,
				      (uint8_t)d->io_engine, (uint8_t)d->transport};
		snap_put_bytes(w, b, sizeof(b));
		snap_put_str(w, d->partuuid, sizeof(d->partuuid));
		put_rl(w, &d->rl);
	}
	snap_put_u32(w, c->nnics);
	for (uint32_t i = 0; i < c->nnics; i++) {
		const struct net_config *n = &c->nics[i];
		snap_put_str(w, n->id, sizeof(n->id));
		snap_put_str(w, n->tap, sizeof(n->tap));
		snap_put_str(w, n->mac, sizeof(n->mac));
		snap_put_u32(w, n->mtu);
		const uint8_t b[4] = {(uint8_t)n->transport};
		snap_put_bytes(w, b, sizeof(b));
		put_rl(w, &n->rx_rl);
		put_rl(w, &n->tx_rl);
	}
	snap_put_u8(w, c->vsock.enabled);
	snap_put_u8(w, (uint8_t)c->vsock.transport);
	snap_put_u16(w, 0);
	snap_put_str(w, c->vsock.id, sizeof(c->vsock.id));
	snap_put_u64(w, c->vsock.cid);
	snap_put_str(w, c->vsock.uds, sizeof(c->vsock.uds));
	snap_put_u8(w, c->balloon.enabled);
	snap_put_u8(w, c->balloon.deflate_on_oom);
	snap_put_u8(w, c->balloon.no_reporting);
	snap_put_u8(w, (uint8_t)c->balloon.transport);
	snap_put_u64(w, c->balloon.size);
	snap_put_u32(w, c->balloon.stats_period);
	snap_put_u8(w, c->rng.enabled);
	snap_put_u8(w, (uint8_t)c->rng.transport);
	snap_put_u16(w, 0);
	put_rl(w, &c->rng.rl);
	snap_writer_section_end(w);
}

/* ---- decoding ---------------------------------------------------------------- */

struct rd {
	struct snap_cursor c;
	char *err;
	size_t errlen;
	int rc; /* first error */
};

__attribute__((format(printf, 2, 3))) static void bad(struct rd *r, const char *fmt, ...)
{
	if (r->rc)
		return;
	va_list ap;
	va_start(ap, fmt);
	char msg[256];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* the message may quote the file's bytes (an id, a path): keep it one
	 * printable line whatever they are */
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	r->rc = err_set(r->err, r->errlen, -EINVAL, "config: %s", msg);
}

/* A string into out[size] (at most size - 1 bytes, no NUL inside). */
static void get_str(struct rd *r, char *out, size_t size, const char *what)
{
	int n = snap_get_str(&r->c, out, size);
	if (n == -E2BIG)
		bad(r, "%s is longer than %zu bytes", what, size - 1);
	else if (n == -EINVAL)
		bad(r, "%s has a NUL byte inside", what);
}

static uint8_t get_flag(struct rd *r, const char *what)
{
	uint8_t v = snap_get_u8(&r->c);
	if (v > 1)
		bad(r, "%s is %u, not 0 or 1", what, v);
	return v;
}

static enum virtio_transport_kind get_transport(struct rd *r, const char *what)
{
	uint8_t v = snap_get_u8(&r->c);
	if (v != TRANSPORT_PCI && v != TRANSPORT_MMIO)
		bad(r, "%s: transport %u is neither PCI nor MMIO", what, v);
	return v == TRANSPORT_MMIO ? TRANSPORT_MMIO : TRANSPORT_PCI;
}

static void get_reserved(struct rd *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (snap_get_u8(&r->c))
			bad(r, "a reserved byte is not 0");
}

static void get_rl(struct rd *r, struct rate_limiter_config *rl)
{
	struct bucket_config *b[2] = {&rl->bandwidth, &rl->ops};
	for (int i = 0; i < 2; i++) {
		b[i]->size = snap_get_u64(&r->c);
		b[i]->one_time_burst = snap_get_u64(&r->c);
		b[i]->refill_time_ms = snap_get_u64(&r->c);
	}
}

static void setter(struct rd *r, int rc, const struct config_err *e)
{
	if (rc)
		bad(r, "%s", e->msg);
}

int snap_config_read(const uint8_t *p, size_t len, uint32_t version, struct vm_config *out,
		     char *err, size_t errlen)
{
	if (version != SNAP_CONFIG_VERSION)
		return err_set(err, errlen, -EINVAL, "config: version %u (this visor reads %u)",
			       version, SNAP_CONFIG_VERSION);
	/* a fresh configuration with the caller's host-side settings */
	static struct vm_config c; /* large (paths): not on the stack */
	static struct disk_config d;
	static struct net_config n;
	config_init(&c);
	c.logger = out->logger;
	c.metrics = out->metrics;
	memcpy(c.serial_out, out->serial_out, sizeof(c.serial_out));
	c.allow_software_kvm = out->allow_software_kvm;
	c.mem_shared = out->mem_shared;
	c.dirty_ring = out->dirty_ring;
	c.dirty_ring_set = out->dirty_ring_set;
	memcpy(c.kvm_path, out->kvm_path, sizeof(c.kvm_path));
	c.log_level = out->log_level;

	struct rd r = {.err = err, .errlen = errlen};
	snap_cursor_init(&r.c, p, len);
	struct config_err e = {{0}};
	uint32_t cpus = snap_get_u32(&r.c);
	uint64_t mem_mib = snap_get_u64(&r.c);
	bool smt = get_flag(&r, "smt"), track = get_flag(&r, "track_dirty_pages");
	get_reserved(&r, 2);
	static char kernel[CONFIG_PATH_MAX], initrd[CONFIG_PATH_MAX], cmdline[CONFIG_CMDLINE_MAX];
	get_str(&r, kernel, sizeof(kernel), "kernel path");
	get_str(&r, initrd, sizeof(initrd), "initrd path");
	get_str(&r, cmdline, sizeof(cmdline), "command line");
	if (!r.rc && !r.c.overrun) {
		setter(&r, config_set_machine(&c, cpus, mem_mib, smt, track, &e), &e);
		setter(&r, config_set_boot(&c, kernel, initrd, cmdline, &e), &e);
	}
	uint32_t ndisks = snap_get_u32(&r.c);
	if (ndisks > CONFIG_MAX_DISKS)
		bad(&r, "%u drives (at most %d)", ndisks, CONFIG_MAX_DISKS);
	for (uint32_t i = 0; i < ndisks && !r.rc && !r.c.overrun; i++) {
		memset(&d, 0, sizeof(d));
		get_str(&r, d.id, sizeof(d.id), "drive id");
		get_str(&r, d.path, sizeof(d.path), "drive path");
		d.readonly = get_flag(&r, "drive read-only");
		d.root = get_flag(&r, "drive root");
		uint8_t cache = snap_get_u8(&r.c), eng = snap_get_u8(&r.c);
		if (cache > DRIVE_CACHE_WRITEBACK || eng > DRIVE_IO_ASYNC)
			bad(&r, "drive: cache %u or io engine %u unknown", cache, eng);
		d.cache = cache == DRIVE_CACHE_UNSAFE ? DRIVE_CACHE_UNSAFE : DRIVE_CACHE_WRITEBACK;
		d.io_engine = eng == DRIVE_IO_SYNC ? DRIVE_IO_SYNC : DRIVE_IO_ASYNC;
		d.transport = get_transport(&r, "drive");
		get_reserved(&r, 3);
		get_str(&r, d.partuuid, sizeof(d.partuuid), "drive partuuid");
		get_rl(&r, &d.rl);
		if (!r.rc && !r.c.overrun) {
			if (config_find_disk(&c, d.id) >= 0)
				bad(&r, "drive '%s' appears twice", d.id);
			else
				setter(&r, config_set_disk(&c, &d, &e), &e);
		}
	}
	uint32_t nnics = snap_get_u32(&r.c);
	if (nnics > CONFIG_MAX_NICS)
		bad(&r, "%u network interfaces (at most %d)", nnics, CONFIG_MAX_NICS);
	for (uint32_t i = 0; i < nnics && !r.rc && !r.c.overrun; i++) {
		memset(&n, 0, sizeof(n));
		get_str(&r, n.id, sizeof(n.id), "interface id");
		get_str(&r, n.tap, sizeof(n.tap), "interface tap");
		get_str(&r, n.mac, sizeof(n.mac), "interface MAC");
		n.mtu = snap_get_u32(&r.c);
		n.transport = get_transport(&r, "network interface");
		get_reserved(&r, 3);
		get_rl(&r, &n.rx_rl);
		get_rl(&r, &n.tx_rl);
		if (!r.rc && !r.c.overrun) {
			if (config_find_net(&c, n.id) >= 0)
				bad(&r, "network interface '%s' appears twice", n.id);
			else
				setter(&r, config_set_net(&c, &n, &e), &e);
		}
	}
	static struct vsock_config v;
	memset(&v, 0, sizeof(v));
	v.enabled = get_flag(&r, "vsock enabled");
	v.transport = get_transport(&r, "vsock");
	get_reserved(&r, 2);
	get_str(&r, v.id, sizeof(v.id), "vsock id");
	v.cid = snap_get_u64(&r.c);
	get_str(&r, v.uds, sizeof(v.uds), "vsock socket path");
	if (!v.enabled && (v.id[0] || v.cid || v.uds[0]))
		bad(&r, "a disabled vsock with settings");
	if (v.enabled && !r.rc && !r.c.overrun)
		setter(&r, config_set_vsock(&c, &v, &e), &e);
	struct balloon_config b;
	memset(&b, 0, sizeof(b));
	b.enabled = get_flag(&r, "balloon enabled");
	b.deflate_on_oom = get_flag(&r, "balloon deflate_on_oom");
	b.no_reporting = get_flag(&r, "balloon free page reporting");
	b.transport = get_transport(&r, "balloon");
	b.size = snap_get_u64(&r.c);
	b.stats_period = snap_get_u32(&r.c);
	if (!b.enabled && (b.deflate_on_oom || b.no_reporting || b.size || b.stats_period))
		bad(&r, "a disabled balloon with settings");
	if (b.enabled && !r.rc && !r.c.overrun)
		setter(&r, config_set_balloon(&c, &b, &e), &e);
	struct rng_config g;
	memset(&g, 0, sizeof(g));
	g.enabled = get_flag(&r, "entropy enabled");
	g.transport = get_transport(&r, "entropy");
	get_reserved(&r, 2);
	get_rl(&r, &g.rl);
	if (!g.enabled && memcmp(&g.rl, &(struct rate_limiter_config){0}, sizeof(g.rl)))
		bad(&r, "a disabled entropy device with a rate limiter");
	if (g.enabled && !r.rc && !r.c.overrun)
		setter(&r, config_set_rng(&c, &g, &e), &e);
	if (r.rc)
		return r.rc;
	int rc = snap_cursor_done(&r.c, "config", err, errlen);
	if (rc)
		return rc;
	if (config_validate(&c, &e))
		return err_set(err, errlen, -EINVAL, "config: %s", e.msg);
	*out = c;
	return 0;
}
