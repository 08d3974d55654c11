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
						       "--memory", "--log-level", "--kvm", "--disk", NULL};
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
		if (!strcmp(name, "--disk")) {
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
	return 0;
}
