/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/str.h"
#include <strings.h>

__attribute__((format(printf, 2, 3))) static int fail(struct config_err *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_vset(e ? e->msg : NULL, e ? sizeof(e->msg) : 0, -EINVAL, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Copy a string that must fit (the caller checked the length). */
#define COPY(dst, src) str_copy((dst), sizeof(dst), (src))

void config_init(struct vm_config *c)
{
	memset(c, 0, sizeof(*c));
	config_defaults(c);
}

void config_defaults(struct vm_config *c)
{
	c->cpus = 1;
	c->mem_size = CONFIG_DEFAULT_MEM;
	COPY(c->cmdline, CONFIG_DEFAULT_CMDLINE);
	COPY(c->kvm_path, "/dev/kvm");
	c->log_level = LOG_INFO;
	c->dirty_ring = CONFIG_DIRTY_RING_DEFAULT;
}

int parse_size(const char *s, uint64_t *out)
{
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	unsigned shift = 20; /* bare number: MiB */
	if (*end) {
		switch (toupper((unsigned char)*end)) {
		case 'K': shift = 10; break;
		case 'M': shift = 20; break;
		case 'G': shift = 30; break;
		case 'T': shift = 40; break;
		case 'B': shift = 0; break;
		default: return -EINVAL;
		}
		const char *rest = end + 1;
		if (shift && (!strcasecmp(rest, "iB") || !strcasecmp(rest, "B")))
			rest += strlen(rest);
		if (*rest)
			return -EINVAL;
	}
	if (v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

/* ---- single-field checks ---------------------------------------------- */

int config_check_id(const char *what, const char *id, struct config_err *e)
{
	size_t n = strlen(id);
	if (n == 0)
		return fail(e, "%s: the id is empty", what);
	if (n > CONFIG_ID_MAX)
		return fail(e, "%s: the id is longer than %d characters", what, CONFIG_ID_MAX);
	for (const char *p = id; *p; p++)
		if (!isascii((unsigned char)*p) || !(isalnum((unsigned char)*p) || *p == '_'))
			return fail(e, "%s: invalid id '%s': only ASCII letters, digits and '_' are allowed",
				    what, id);
	return 0;
}

static int check_path(const char *what, const char *path, size_t max, struct config_err *e)
{
	size_t n = strnlen(path, max);
	if (n == 0)
		return fail(e, "%s: the path is empty", what);
	if (n >= max)
		return fail(e, "%s: the path is longer than %zu bytes", what, max - 1);
	return 0;
}

static int check_bucket(const char *what, const char *name, const struct bucket_config *b,
			struct config_err *e)
{
	/* A bucket with a size must refill, or it would stop the device for
	 * ever once drained; a refill time without a size limits nothing. */
	if (b->size && !b->refill_time_ms)
		return fail(e, "%s: %s bucket has a size but refill_time 0", what, name);
	/* refill_time is milliseconds: beyond ~584 million years it would
	 * overflow nanoseconds; far beyond any sensible limit anyway. */
	if (b->refill_time_ms > UINT64_MAX / 1000000ULL)
		return fail(e, "%s: %s refill_time is out of range", what, name);
	return 0;
}

int config_check_rate_limiter(const char *what, const struct rate_limiter_config *rl,
			      struct config_err *e)
{
	int r = check_bucket(what, "bandwidth", &rl->bandwidth, e);
	return r ? r : check_bucket(what, "ops", &rl->ops, e);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int config_parse_mac(const char *s, uint8_t mac[6])
{
	uint8_t m[6];
	if (!s || strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);
		if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
			return -EINVAL;
		m[i] = (uint8_t)(hi << 4 | lo);
	}
	static const uint8_t zero[6];
	if ((m[0] & 1) || !memcmp(m, zero, 6)) /* multicast/broadcast or all zero */
		return -EINVAL;
	memcpy(mac, m, 6);
	return 0;
}

int config_find_disk(const struct vm_config *c, const char *id)
{
	for (uint32_t i = 0; i < c->ndisks; i++)
		if (!strcmp(c->disks[i].id, id))
			return (int)i;
	return -1;
}

int config_find_net(const struct vm_config *c, const char *id)
{
	for (uint32_t i = 0; i < c->nnics; i++)
		if (!strcmp(c->nics[i].id, id))
			return (int)i;
	return -1;
}

/* ---- item setters ------------------------------------------------------- */

int config_set_disk(struct vm_config *c, const struct disk_config *d, struct config_err *e)
{
	char what[CONFIG_ID_MAX + 16];
	snprintf(what, sizeof(what), "drive '%s'", d->id);
	int r;
	if ((r = config_check_id("drive", d->id, e)) || (r = check_path(what, d->path, sizeof(d->path), e)) ||
	    (r = config_check_rate_limiter(what, &d->rl, e)))
		return r;
	if (strnlen(d->partuuid, sizeof(d->partuuid)) >= sizeof(d->partuuid))
		return fail(e, "%s: partuuid is too long", what);
	for (const char *p = d->partuuid; *p; p++)
		if (!isxdigit((unsigned char)*p) && *p != '-')
			return fail(e, "%s: partuuid '%s' is not a partition UUID", what, d->partuuid);
	int at = config_find_disk(c, d->id);
	for (uint32_t i = 0; i < c->ndisks; i++) {
		if ((int)i == at)
			continue;
		if (d->root && c->disks[i].root)
			return fail(e, "%s: drive '%s' is already the root device", what, c->disks[i].id);
		if (!strcmp(c->disks[i].path, d->path))
			return fail(e, "%s: '%s' is already used by drive '%s'", what, d->path,
				    c->disks[i].id);
	}
	if (at < 0) {
		if (c->ndisks >= CONFIG_MAX_DISKS) {
			fail(e, "%s: at most %d drives", what, CONFIG_MAX_DISKS);
			return -ENOSPC;
		}
		at = (int)c->ndisks++;
	}
	c->disks[at] = *d;
	return 0;
}

int config_set_net(struct vm_config *c, const struct net_config *n, struct config_err *e)
{
	char what[CONFIG_ID_MAX + 32];
	snprintf(what, sizeof(what), "network interface '%s'", n->id);
	int r;
	if ((r = config_check_id("network interface", n->id, e)))
		return r;
	size_t tl = strnlen(n->tap, sizeof(n->tap));
	if (tl == 0 || tl >= sizeof(n->tap))
		return fail(e, "%s: host_dev_name must be 1 to %zu characters", what, sizeof(n->tap) - 1);
	for (const char *p = n->tap; *p; p++)
		if (*p == '/' || isspace((unsigned char)*p) || !isprint((unsigned char)*p))
			return fail(e, "%s: host_dev_name '%s' is not a valid interface name", what, n->tap);
	uint8_t mac[6];
	if (n->mac[0] && config_parse_mac(n->mac, mac))
		return fail(e, "%s: guest_mac '%s' is not a unicast MAC address (like 06:00:ac:10:00:02)",
			    what, n->mac);
	if (n->mtu && (n->mtu < 68 || n->mtu > 65535))
		return fail(e, "%s: mtu must be 68 to 65535", what);
	if ((r = config_check_rate_limiter(what, &n->rx_rl, e)) ||
	    (r = config_check_rate_limiter(what, &n->tx_rl, e)))
		return r;
	int at = config_find_net(c, n->id);
	for (uint32_t i = 0; i < c->nnics; i++) {
		if ((int)i == at)
			continue;
		if (!strcmp(c->nics[i].tap, n->tap))
			return fail(e, "%s: host_dev_name '%s' is already used by '%s'", what, n->tap,
				    c->nics[i].id);
		if (n->mac[0] && !strcasecmp(c->nics[i].mac, n->mac))
			return fail(e, "%s: guest_mac %s is already used by '%s'", what, n->mac,
				    c->nics[i].id);
	}
	if (at < 0) {
		if (c->nnics >= CONFIG_MAX_NICS) {
			fail(e, "%s: at most %d network interfaces", what, CONFIG_MAX_NICS);
			return -ENOSPC;
		}
		at = (int)c->nnics++;
	}
	c->nics[at] = *n;
	return 0;
}

int config_set_vsock(struct vm_config *c, const struct vsock_config *v, struct config_err *e)
{
	int r;
	if (v->id[0] && (r = config_check_id("vsock", v->id, e)))
		return r;
	if (v->cid < 3 || v->cid > 0xfffffffeULL)
		return fail(e, "vsock: guest_cid must be 3 to 4294967294");
	/* visor appends "_PORT" (up to 11 bytes) for guest-initiated connections */
	if ((r = check_path("vsock uds_path", v->uds, sizeof(v->uds) - 12, e)))
		return r;
	c->vsock = *v;
	c->vsock.enabled = true;
	return 0;
}

int config_set_balloon(struct vm_config *c, const struct balloon_config *b, struct config_err *e)
{
	if (b->size & 0xfff)
		return fail(e, "balloon: the target must be a multiple of 4 KiB");
	if (b->size >= c->mem_size)
		return fail(e, "balloon: the target (%llu MiB) must be smaller than guest memory (%llu MiB)",
			    (unsigned long long)(b->size >> 20), (unsigned long long)(c->mem_size >> 20));
	if (b->stats_period > 86400)
		return fail(e, "balloon: stats_polling_interval_s must be 0 to 86400");
	c->balloon = *b;
	c->balloon.enabled = true;
	return 0;
}

int config_set_rng(struct vm_config *c, const struct rng_config *r, struct config_err *e)
{
	int rc = config_check_rate_limiter("entropy", &r->rl, e);
	if (rc)
		return rc;
	c->rng = *r;
	c->rng.enabled = true;
	return 0;
}

int config_set_boot(struct vm_config *c, const char *kernel, const char *initrd,
		    const char *cmdline, struct config_err *e)
{
	int r;
	if ((r = check_path("boot source: kernel_image_path", kernel, sizeof(c->kernel), e)))
		return r;
	if (initrd && initrd[0] && (r = check_path("boot source: initrd_path", initrd, sizeof(c->initrd), e)))
		return r;
	if (cmdline && strnlen(cmdline, sizeof(c->cmdline)) >= sizeof(c->cmdline))
		return fail(e, "boot source: the kernel command line (boot_args) is longer than %zu bytes",
			    sizeof(c->cmdline) - 1);
	COPY(c->kernel, kernel);
	COPY(c->initrd, initrd ? initrd : "");
	COPY(c->cmdline, cmdline ? cmdline : CONFIG_DEFAULT_CMDLINE);
	return 0;
}

int config_set_machine(struct vm_config *c, uint64_t cpus, uint64_t mem_mib, bool smt,
		       bool track_dirty_pages, struct config_err *e)
{
	if (cpus < 1 || cpus > CONFIG_MAX_CPUS)
		return fail(e, "machine config: vcpu_count %llu is out of range (1-%d)",
			    (unsigned long long)cpus, CONFIG_MAX_CPUS);
	if (mem_mib < (CONFIG_MIN_MEM >> 20) || mem_mib > (1ULL << 24))
		return fail(e, "machine config: memory size (mem_size_mib) %llu MiB is out of range (%llu-%llu)",
			    (unsigned long long)mem_mib, CONFIG_MIN_MEM >> 20, 1ULL << 24);
	if (smt && cpus > 1 && (cpus & 1))
		return fail(e, "machine config: with smt the vcpu_count must be 1 or even");
	uint64_t mem = mem_mib << 20;
	if (c->balloon.enabled && c->balloon.size >= mem)
		return fail(e, "machine config: mem_size_mib %llu is not larger than the balloon target",
			    (unsigned long long)mem_mib);
	c->cpus = (uint32_t)cpus;
	c->mem_size = mem;
	c->smt = smt;
	c->track_dirty_pages = track_dirty_pages;
	return 0;
}

static int check_dirty_ring(uint64_t n, struct config_err *e)
{
	if (n && (n < CONFIG_DIRTY_RING_MIN || n > CONFIG_DIRTY_RING_MAX || (n & (n - 1))))
		return fail(e, "dirty ring: %llu entries is not a power of two from %u to %u (0: "
			       "KVM's dirty bitmap instead)",
			    (unsigned long long)n, CONFIG_DIRTY_RING_MIN, CONFIG_DIRTY_RING_MAX);
	return 0;
}

int config_set_dirty_ring(struct vm_config *c, uint64_t entries, struct config_err *e)
{
	if (check_dirty_ring(entries, e))
		return -EINVAL;
	c->dirty_ring = (uint32_t)entries;
	c->dirty_ring_set = true;
	return 0;
}

uint32_t config_mmio_devices(const struct vm_config *c)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->ndisks; i++)
		n += c->disks[i].transport == TRANSPORT_MMIO;
	for (uint32_t i = 0; i < c->nnics; i++)
		n += c->nics[i].transport == TRANSPORT_MMIO;
	n += c->vsock.enabled && c->vsock.transport == TRANSPORT_MMIO;
	n += c->rng.enabled && c->rng.transport == TRANSPORT_MMIO;
	n += c->balloon.enabled && c->balloon.transport == TRANSPORT_MMIO;
	return n;
}

int config_validate(const struct vm_config *c, struct config_err *e)
{
	if (!c->kernel[0])
		return fail(e, "no kernel: a boot source must be configured before the VM can start");
	if (c->cpus < 1 || c->cpus > CONFIG_MAX_CPUS)
		return fail(e, "vcpu_count %u is out of range (1-%d)", c->cpus, CONFIG_MAX_CPUS);
	if (c->mem_size < CONFIG_MIN_MEM || (c->mem_size & 0xfff))
		return fail(e, "memory size %llu is invalid", (unsigned long long)c->mem_size);
	if (c->balloon.enabled && c->balloon.size >= c->mem_size)
		return fail(e, "balloon: the target must be smaller than guest memory");
	uint32_t mmio = config_mmio_devices(c), roots = 0;
	for (uint32_t i = 0; i < c->ndisks; i++)
		roots += c->disks[i].root;
	if (mmio > CONFIG_MAX_MMIO_DEVS)
		return fail(e, "at most %d devices can use transport=mmio (%u requested)",
			    CONFIG_MAX_MMIO_DEVS, mmio);
	if (roots > 1)
		return fail(e, "more than one drive is the root device");
	return check_dirty_ring(c->dirty_ring, e);
}

/* ---- `visor run` option values ------------------------------------------ */

static int parse_transport(const char *v, enum virtio_transport_kind *t)
{
	if (!strcmp(v, "pci"))
		*t = TRANSPORT_PCI;
	else if (!strcmp(v, "mmio"))
		*t = TRANSPORT_MMIO;
	else
		return -EINVAL;
	return 0;
}

/* Split the next "key=value" or "flag" item off a comma-separated list.
 * Returns 1 with key/val (val "" for a flag), 0 at the end, -1 if an item
 * does not fit the buffers. */
static int next_item(const char **p, char *key, size_t klen, char *val, size_t vlen, bool *has_val)
{
	if (!*p || !**p)
		return 0;
	const char *item = *p;
	const char *comma = strchr(item, ',');
	size_t len = comma ? (size_t)(comma - item) : strlen(item);
	*p = comma ? comma + 1 : item + len;
	const char *eq = memchr(item, '=', len);
	size_t kl = eq ? (size_t)(eq - item) : len;
	if (kl >= klen)
		return -1;
	memcpy(key, item, kl);
	key[kl] = 0;
	*has_val = eq != NULL;
	val[0] = 0;
	if (eq) {
		size_t vl = len - kl - 1;
		if (vl >= vlen)
			return -1;
		memcpy(val, eq + 1, vl);
		val[vl] = 0;
	}
	return 1;
}

int config_parse_u64(const char *v, uint64_t *out)
{
	if (!isdigit((unsigned char)*v))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long x = strtoull(v, &end, 10);
	if (*end || errno)
		return -EINVAL;
	*out = x;
	return 0;
}

/* A rate given on the command line: N bytes (size suffixes) per second,
 * as a bucket of N tokens refilled every 1000 ms. */
static int parse_rate(const char *v, bool bytes, struct bucket_config *b)
{
	uint64_t n;
	if (bytes ? parse_size(v, &n) : config_parse_u64(v, &n))
		return -EINVAL;
	if (bytes && strspn(v, "0123456789") == strlen(v))
		n >>= 20; /* a bare number is bytes here, not MiB */
	b->size = n;
	b->refill_time_ms = n ? 1000 : 0;
	return 0;
}

int config_parse_disk(const char *val, struct disk_config *d, struct config_err *e)
{
	memset(d, 0, sizeof(*d));
	d->transport = TRANSPORT_PCI;
	d->cache = DRIVE_CACHE_WRITEBACK;
	d->io_engine = DRIVE_IO_ASYNC;
	const char *comma = strchr(val, ',');
	size_t plen = comma ? (size_t)(comma - val) : strlen(val);
	if (plen == 0)
		return fail(e, "--disk: missing image path");
	if (plen >= sizeof(d->path))
		return fail(e, "--disk: path too long");
	memcpy(d->path, val, plen);
	const char *p = comma ? comma + 1 : NULL;
	char key[32], v[128];
	bool has;
	int r;
	while ((r = next_item(&p, key, sizeof(key), v, sizeof(v), &has)) > 0) {
		if ((!strcmp(key, "readonly") || !strcmp(key, "ro")) && !has) {
			d->readonly = true;
		} else if (!strcmp(key, "root") && !has) {
			d->root = true;
		} else if (!strcmp(key, "id") && has) {
			if (!v[0] || strlen(v) > CONFIG_ID_MAX)
				return fail(e, "--disk: id must be 1 to %d characters", CONFIG_ID_MAX);
			COPY(d->id, v);
		} else if (!strcmp(key, "transport") && has) {
			if (parse_transport(v, &d->transport))
				return fail(e, "--disk: transport must be pci or mmio");
		} else if (!strcmp(key, "rate") && has) {
			if (parse_rate(v, true, &d->rl.bandwidth))
				return fail(e, "--disk: rate '%s' is not a size per second (e.g. rate=10M)", v);
		} else if (!strcmp(key, "iops") && has) {
			if (parse_rate(v, false, &d->rl.ops))
				return fail(e, "--disk: iops '%s' is not a number", v);
		} else {
			return fail(e, "--disk: unknown option '%s'", key);
		}
	}
	if (r < 0)
		return fail(e, "--disk: option too long");
	return 0;
}

int config_parse_net(const char *val, struct net_config *n, struct config_err *e)
{
	memset(n, 0, sizeof(*n));
	char key[32], v[256];
	bool has;
	int r;
	while ((r = next_item(&val, key, sizeof(key), v, sizeof(v), &has)) > 0) {
		if (!strcmp(key, "tap") && has) {
			if (!v[0] || strlen(v) >= sizeof(n->tap))
				return fail(e, "--net: tap name must be 1 to 15 characters");
			COPY(n->tap, v);
		} else if (!strcmp(key, "mac") && has) {
			if (strlen(v) != 17)
				return fail(e, "--net: mac must look like 52:54:00:12:34:56");
			COPY(n->mac, v);
		} else if (!strcmp(key, "id") && has) {
			if (!v[0] || strlen(v) > CONFIG_ID_MAX)
				return fail(e, "--net: id must be 1 to %d characters", CONFIG_ID_MAX);
			COPY(n->id, v);
		} else if (!strcmp(key, "transport") && has) {
			if (parse_transport(v, &n->transport))
				return fail(e, "--net: transport must be pci or mmio");
		} else {
			return fail(e, "--net: unknown option '%s'", key);
		}
	}
	if (r < 0)
		return fail(e, "--net: option too long");
	if (!n->tap[0])
		return fail(e, "--net: tap=NAME is required");
	return 0;
}

int config_parse_vsock(const char *val, struct vsock_config *vs, struct config_err *e)
{
	memset(vs, 0, sizeof(*vs));
	char key[32], v[256];
	bool has, have_cid = false;
	int r;
	while ((r = next_item(&val, key, sizeof(key), v, sizeof(v), &has)) > 0) {
		if (!strcmp(key, "cid") && has) {
			if (config_parse_u64(v, &vs->cid) || vs->cid < 3 || vs->cid > 0xfffffffeULL)
				return fail(e, "--vsock: cid must be a number from 3 to 4294967294");
			have_cid = true;
		} else if (!strcmp(key, "uds") && has) {
			if (!v[0] || strlen(v) >= sizeof(vs->uds) - 12)
				return fail(e, "--vsock: uds path must be 1 to %zu characters",
					    sizeof(vs->uds) - 13);
			COPY(vs->uds, v);
		} else if (!strcmp(key, "transport") && has) {
			if (parse_transport(v, &vs->transport))
				return fail(e, "--vsock: transport must be pci or mmio");
		} else {
			return fail(e, "--vsock: unknown option '%s'", key);
		}
	}
	if (r < 0)
		return fail(e, "--vsock: option too long");
	if (!have_cid || !vs->uds[0])
		return fail(e, "--vsock: cid=N and uds=PATH are required");
	vs->enabled = true;
	return 0;
}

int config_parse_balloon(const char *val, struct balloon_config *b, struct config_err *e)
{
	memset(b, 0, sizeof(*b));
	char key[32], v[64];
	bool has;
	int r;
	while ((r = next_item(&val, key, sizeof(key), v, sizeof(v), &has)) > 0) {
		if (!strcmp(key, "size") && has) {
			if (parse_size(v, &b->size))
				return fail(e, "--balloon: size '%s' is not a size", v);
		} else if (!strcmp(key, "reporting") && has) {
			if (strcmp(v, "on") && strcmp(v, "off"))
				return fail(e, "--balloon: reporting must be on or off");
			b->no_reporting = !strcmp(v, "off");
		} else if (!strcmp(key, "deflate_on_oom") && !has) {
			b->deflate_on_oom = true;
		} else if (!strcmp(key, "stats_period") && has) {
			uint64_t p;
			if (config_parse_u64(v, &p) || p > 86400)
				return fail(e, "--balloon: stats_period is 0 to 86400 seconds");
			b->stats_period = (uint32_t)p;
		} else if (!strcmp(key, "transport") && has) {
			if (parse_transport(v, &b->transport))
				return fail(e, "--balloon: transport must be pci or mmio");
		} else {
			return fail(e, "--balloon: unknown option '%s'", key);
		}
	}
	if (r < 0)
		return fail(e, "--balloon: option too long");
	b->enabled = true;
	return 0;
}
