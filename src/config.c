/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char config_usage[] =
	"usage: visor run --kernel PATH [options]\n"
	"       visor --help | --version\n"
	"\n"
	"Boot a Linux guest under KVM.  The guest's serial console (COM1) is this\n"
	"terminal; type Ctrl-A x to quit, Ctrl-A Ctrl-A to send a Ctrl-A.\n"
	"\n"
	"options for run:\n"
	"  --kernel PATH        bzImage or ELF vmlinux (PVH entry used when present)\n"
	"  --initrd PATH        initial ramdisk\n"
	"  --cmdline STR        kernel command line (default: \"" CONFIG_DEFAULT_CMDLINE "\")\n"
	"  --cpus N             number of vCPUs (default 1)\n"
	"  --memory SIZE        guest RAM, e.g. 512M, 2G; a bare number is MiB (default 256M)\n"
	"  --disk PATH[,readonly][,id=NAME][,transport=pci|mmio]\n"
	"                       raw disk image as a virtio-blk device (repeatable, up to 8);\n"
	"                       id is the serial the guest sees (default: diskN)\n"
	"  --net tap=NAME[,mac=MAC][,transport=pci|mmio]\n"
	"                       virtio-net on host tap device NAME (repeatable, up to 4)\n"
	"  --vsock cid=N,uds=PATH[,transport=pci|mmio]\n"
	"                       virtio-vsock; host programs reach guest port P by connecting\n"
	"                       to PATH and sending \"CONNECT P\\n\"; guest connections to\n"
	"                       port P reach the Unix socket PATH_P\n"
	"  --balloon [size=SIZE][,deflate_on_oom][,stats_period=SECS][,reporting=on|off]\n"
	"            [,transport=pci|mmio]\n"
	"                       virtio-balloon with an initial target of SIZE (default 0);\n"
	"                       free page reporting returns freed guest pages (default on)\n"
	"  --control PATH       control socket: \"balloon SIZE\", \"balloon-stats\" (one per line)\n"
	"  --rng [transport=pci|mmio]\n"
	"                       virtio-rng entropy device fed from the host's getrandom()\n"
	"  --log-level LEVEL    debug, info, warn or error (default info)\n"
	"  --kvm PATH           KVM device (default /dev/kvm)\n"
	"  --allow-software-kvm run even when KVM has no VT-x/AMD-V behind it (e.g. PVM);\n"
	"                       guest kernel code then runs ~1000x slower\n"
	"\n"
	"exit status: 0 guest powered off, 1 visor error, 2 guest rebooted,\n"
	"             3 guest panicked, 4 guest crashed, 130 quit with Ctrl-A x\n";

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

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

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

int config_parse_disk(const char *val, struct disk_config *d, char *err, size_t errlen)
{
	memset(d, 0, sizeof(*d));
	d->transport = TRANSPORT_PCI;
	const char *comma = strchr(val, ',');
	size_t plen = comma ? (size_t)(comma - val) : strlen(val);
	if (plen == 0)
		return fail(err, errlen, "--disk: missing image path");
	if (plen >= sizeof(d->path))
		return fail(err, errlen, "--disk: path too long");
	memcpy(d->path, val, plen);
	while (comma) {
		const char *opt = comma + 1;
		comma = strchr(opt, ',');
		size_t olen = comma ? (size_t)(comma - opt) : strlen(opt);
		char o[64];
		if (olen >= sizeof(o))
			return fail(err, errlen, "--disk: option too long");
		memcpy(o, opt, olen);
		o[olen] = 0;
		if (!strcmp(o, "readonly") || !strcmp(o, "ro")) {
			d->readonly = true;
		} else if (!strncmp(o, "id=", 3)) {
			if (strlen(o + 3) == 0 || strlen(o + 3) > 20)
				return fail(err, errlen, "--disk: id must be 1 to 20 characters");
			for (const char *c = o + 3; *c; c++)
				if (!isprint((unsigned char)*c))
					return fail(err, errlen, "--disk: id must be printable");
			memcpy(d->id, o + 3, strlen(o + 3) + 1); /* <= 20 bytes + NUL, checked */
		} else if (!strncmp(o, "transport=", 10)) {
			if (parse_transport(o + 10, &d->transport))
				return fail(err, errlen, "--disk: transport must be pci or mmio");
		} else {
			return fail(err, errlen, "--disk: unknown option '%s'", o);
		}
	}
	return 0;
}

/* Split the next "key=value" or "flag" item off a comma-separated list.
 * Returns 1 with key/val (val NULL for a flag), 0 at the end, -1 if an
 * item does not fit the buffers. */
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

static int parse_u64(const char *v, uint64_t *out)
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

int config_parse_net(const char *val, struct net_config *n, char *err, size_t errlen)
{
	memset(n, 0, sizeof(*n));
	char key[32], v[256];
	bool has;
	int r;
	while ((r = next_item(&val, key, sizeof(key), v, sizeof(v), &has)) > 0) {
		if (!strcmp(key, "tap") && has) {
			if (!v[0] || strlen(v) >= sizeof(n->tap) || strchr(v, '/'))
				return fail(err, errlen, "--net: tap name must be 1 to 15 characters");
			memcpy(n->tap, v, strlen(v) + 1);
		} else if (!strcmp(key, "mac") && has) {
			if (strlen(v) != 17)
				return fail(err, errlen, "--net: mac must look like 52:54:00:12:34:56");
			memcpy(n->mac, v, 18);
		} else if (!strcmp(key, "transport") && has) {
			if (parse_transport(v, &n->transport))
				return fail(err, errlen, "--net: transport must be pci or mmio");
		} else {
			return fail(err, errlen, "--net: unknown option '%s'", key);
		}
	}
	if (r < 0)
		return fail(err, errlen, "--net: option too long");
	if (!n->tap[0])
		return fail(err, errlen, "--net: tap=NAME is required");
	return 0;
}

int config_parse_vsock(const char *val, struct vsock_config *vs, char *err, size_t errlen)
{
	memset(vs, 0, sizeof(*vs));
	char key[32], v[256];
	bool has, have_cid = false;
	int r;
	while ((r = next_item(&val, key, sizeof(key), v, sizeof(v), &has)) > 0) {
		if (!strcmp(key, "cid") && has) {
			if (parse_u64(v, &vs->cid) || vs->cid < 3 || vs->cid > 0xfffffffeULL)
				return fail(err, errlen, "--vsock: cid must be a number from 3 to 4294967294");
			have_cid = true;
		} else if (!strcmp(key, "uds") && has) {
			if (!v[0] || strlen(v) >= sizeof(vs->uds) - 12)
				return fail(err, errlen, "--vsock: uds path must be 1 to %zu characters",
					    sizeof(vs->uds) - 13);
			memcpy(vs->uds, v, strlen(v) + 1);
		} else if (!strcmp(key, "transport") && has) {
			if (parse_transport(v, &vs->transport))
				return fail(err, errlen, "--vsock: transport must be pci or mmio");
		} else {
			return fail(err, errlen, "--vsock: unknown option '%s'", key);
		}
	}
	if (r < 0)
		return fail(err, errlen, "--vsock: option too long");
	if (!have_cid || !vs->uds[0])
		return fail(err, errlen, "--vsock: cid=N and uds=PATH are required");
	vs->enabled = true;
	return 0;
}

int config_parse_balloon(const char *val, struct balloon_config *b, char *err, size_t errlen)
{
	memset(b, 0, sizeof(*b));
	char key[32], v[64];
	bool has;
	int r;
	while ((r = next_item(&val, key, sizeof(key), v, sizeof(v), &has)) > 0) {
		if (!strcmp(key, "size") && has) {
			if (parse_size(v, &b->size))
				return fail(err, errlen, "--balloon: size '%s' is not a size", v);
		} else if (!strcmp(key, "reporting") && has) {
			if (strcmp(v, "on") && strcmp(v, "off"))
				return fail(err, errlen, "--balloon: reporting must be on or off");
			b->no_reporting = !strcmp(v, "off");
		} else if (!strcmp(key, "deflate_on_oom") && !has) {
			b->deflate_on_oom = true;
		} else if (!strcmp(key, "stats_period") && has) {
			uint64_t p;
			if (parse_u64(v, &p) || p > 86400)
				return fail(err, errlen, "--balloon: stats_period is 0 to 86400 seconds");
			b->stats_period = (uint32_t)p;
		} else if (!strcmp(key, "transport") && has) {
			if (parse_transport(v, &b->transport))
				return fail(err, errlen, "--balloon: transport must be pci or mmio");
		} else {
			return fail(err, errlen, "--balloon: unknown option '%s'", key);
		}
	}
	if (r < 0)
		return fail(err, errlen, "--balloon: option too long");
	b->enabled = true;
	return 0;
}

int config_parse_args(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cpus = 1;
	cfg->mem_size = CONFIG_DEFAULT_MEM;
	cfg->cmdline = CONFIG_DEFAULT_CMDLINE;
	cfg->kvm_path = "/dev/kvm";
	cfg->log_level = LOG_INFO;
	if (argc < 2)
		return fail(err, errlen, "no command given (try 'visor --help')");
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		cfg->action = ACTION_HELP;
		return 0;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V") || !strcmp(cmd, "version")) {
		cfg->action = ACTION_VERSION;
		return 0;
	}
	if (strcmp(cmd, "run"))
		return fail(err, errlen, "unknown command '%s' (try 'visor --help')", cmd);
	cfg->action = ACTION_RUN;
	for (int i = 2; i < argc; i++) {
		const char *opt = argv[i];
		const char *val = NULL;
		char name[32];
		/* accept both "--opt value" and "--opt=value" */
		const char *eq = strchr(opt, '=');
		if (!strncmp(opt, "--", 2) && eq && (size_t)(eq - opt) < sizeof(name)) {
			memcpy(name, opt, (size_t)(eq - opt));
			name[eq - opt] = 0;
			val = eq + 1;
		} else {
			snprintf(name, sizeof(name), "%s", opt);
		}
		if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
			cfg->action = ACTION_HELP;
			return 0;
		}
		if (!strcmp(name, "--balloon")) {
			/* optional value */
			if (!val && i + 1 < argc && strncmp(argv[i + 1], "--", 2))
				val = argv[++i];
			int r = config_parse_balloon(val ? val : "", &cfg->balloon, err, errlen);
			if (r)
				return r;
			continue; /* size is checked against --memory at the end */
		}
		if (!strcmp(name, "--rng")) {
			/* optional value: --rng transport=mmio or --rng=transport=mmio */
			if (!val && i + 1 < argc && !strncmp(argv[i + 1], "transport=", 10))
				val = argv[++i];
			cfg->rng = true;
			cfg->rng_transport = TRANSPORT_PCI;
			if (val && (strncmp(val, "transport=", 10) ||
				    parse_transport(val + 10, &cfg->rng_transport)))
				return fail(err, errlen, "--rng: expected transport=pci or transport=mmio");
			continue;
		}
		if (!strcmp(name, "--allow-software-kvm")) {
			if (val)
				return fail(err, errlen, "option %s takes no value", name);
			cfg->allow_software_kvm = true;
			continue;
		}
		static const char *const with_val[] = {"--kernel", "--initrd", "--cmdline", "--cpus",
						       "--memory", "--log-level", "--kvm", "--disk", "--net",
						       "--vsock", "--control", NULL};
		int known = 0;
		for (int k = 0; with_val[k]; k++)
			known |= !strcmp(name, with_val[k]);
		if (!known)
			return fail(err, errlen, "unknown option '%s' (try 'visor --help')", opt);
		if (!val) {
			if (i + 1 >= argc)
				return fail(err, errlen, "option %s needs a value", name);
			val = argv[++i];
		}
		if (!strcmp(name, "--net")) {
			if (cfg->nnics >= CONFIG_MAX_NICS)
				return fail(err, errlen, "--net: at most %d network devices", CONFIG_MAX_NICS);
			int r = config_parse_net(val, &cfg->nics[cfg->nnics], err, errlen);
			if (r)
				return r;
			cfg->nnics++;
		} else if (!strcmp(name, "--vsock")) {
			if (cfg->vsock.enabled)
				return fail(err, errlen, "--vsock: only one vsock device");
			int r = config_parse_vsock(val, &cfg->vsock, err, errlen);
			if (r)
				return r;
		} else if (!strcmp(name, "--control")) {
			if (!val[0] || strlen(val) >= 108)
				return fail(err, errlen, "--control: socket path must be 1 to 107 characters");
			cfg->control = val;
		} else if (!strcmp(name, "--disk")) {
			if (cfg->ndisks >= CONFIG_MAX_DISKS)
				return fail(err, errlen, "--disk: at most %d disks", CONFIG_MAX_DISKS);
			struct disk_config *d = &cfg->disks[cfg->ndisks];
			int r = config_parse_disk(val, d, err, errlen);
			if (r)
				return r;
			if (!d->id[0])
				snprintf(d->id, sizeof(d->id), "disk%u", cfg->ndisks % 100u);
			cfg->ndisks++;
		} else if (!strcmp(name, "--kernel")) {
			cfg->kernel = val;
		} else if (!strcmp(name, "--initrd")) {
			cfg->initrd = val;
		} else if (!strcmp(name, "--cmdline")) {
			cfg->cmdline = val;
		} else if (!strcmp(name, "--kvm")) {
			cfg->kvm_path = val;
		} else if (!strcmp(name, "--cpus")) {
			char *end;
			errno = 0;
			unsigned long n = strtoul(val, &end, 10);
			if (!isdigit((unsigned char)*val) || *end || errno)
				return fail(err, errlen, "--cpus: '%s' is not a number", val);
			if (n == 0 || n > CONFIG_MAX_CPUS) {
				snprintf(err, errlen, "--cpus: %s is out of range (1-%d)", val,
					 CONFIG_MAX_CPUS);
				return -EINVAL;
			}
			cfg->cpus = (uint32_t)n;
		} else if (!strcmp(name, "--memory")) {
			uint64_t sz;
			if (parse_size(val, &sz))
				return fail(err, errlen,
					    "--memory: '%s' is not a size (examples: 512M, 2G)", val);
			if (sz < CONFIG_MIN_MEM)
				return fail(err, errlen, "--memory: %s is too small (minimum 4M)", val);
			if (sz & 0xfff)
				return fail(err, errlen,
					    "--memory: %s is not a multiple of 4 KiB", val);
			cfg->mem_size = sz;
		} else if (!strcmp(name, "--log-level")) {
			static const char *const lv[] = {"debug", "info", "warn", "error"};
			int found = -1;
			for (int k = 0; k < 4; k++)
				if (!strcmp(val, lv[k]))
					found = k;
			if (found < 0)
				return fail(err, errlen,
					    "--log-level: '%s' is not one of debug, info, warn, error",
					    val);
			cfg->log_level = (enum log_level)found;
		}
	}
	if (!cfg->kernel)
		return fail(err, errlen, "run: --kernel PATH is required");
	if (cfg->balloon.enabled && cfg->balloon.size >= cfg->mem_size)
		return fail(err, errlen, "--balloon: size must be smaller than --memory");
	return 0;
}
