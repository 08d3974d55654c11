/* SPDX-License-Identifier: MIT */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/fc_json.h"
#include "util/str.h"

const char cli_usage[] =
	"usage: visor run --kernel PATH [options]       boot a VM now\n"
	"       visor [Firecracker options]              Firecracker-compatible VMM (API socket)\n"
	"       visor ls [--json]                        running VMs\n"
	"       visor pause|resume|status|config|ctrl-alt-del VM [--json]\n"
	"       visor balloon VM SIZE\n"
	"       visor snapshot VM DIR [--diff]           save the VM to DIR/state and DIR/memory\n"
	"                                                (paused meanwhile, then resumed); --diff:\n"
	"                                                only the pages written since the last\n"
	"                                                snapshot (needs --track-dirty-pages)\n"
	"       visor snapshot merge BASE DIFF           fold the Diff snapshot DIFF onto BASE, the\n"
	"                                                snapshot it was taken after: BASE becomes\n"
	"                                                DIFF's point in time (directories, or\n"
	"                                                memory files with [--state DIFF_STATE])\n"
	"       visor restore DIR [options]              a new VM from the snapshot in DIR, running\n"
	"                                                (= visor run --restore DIR; host options only)\n"
	"       visor restore DIR --clones N [options]   N VMs from one snapshot, each its own\n"
	"                                                process in the background (ID-0 .. ID-N-1)\n"
	"       visor migrate VM --to URL [options]      move the running VM to a visor waiting with\n"
	"                                                `visor run --incoming URL` (live migration;\n"
	"                                                see visor migrate --help)\n"
	"       visor migrate VM --cancel | --status     stop / show the VM's migration\n"
	"       visor --describe-snapshot FILE           a snapshot state file's version and sections\n"
	"       visor --print-seccomp                    the built-in seccomp filters, as a filter file\n"
	"       visor jailer --id ID --exec-file FILE --uid UID --gid GID [options] [-- ARGS]\n"
	"                                                run FILE (visor) in a chroot jail as\n"
	"                                                UID:GID, as Firecracker's jailer does\n"
	"                                                (also as `jailer` through a symlink;\n"
	"                                                see visor jailer --help)\n"
	"       visor --help [run|firecracker|migrate|jailer] | --version\n"
	"\n"
	"VM is a name (the --id of `visor run`, its socket in the socket directory)\n"
	"or the path of an API socket.\n"
	"\n"
	"options for run:\n"
	"  --kernel PATH        bzImage or ELF vmlinux (PVH entry used when present)\n"
	"  --initrd PATH        initial ramdisk\n"
	"  --cmdline STR        kernel command line (default: \"" CONFIG_DEFAULT_CMDLINE "\")\n"
	"  --cpus N             number of vCPUs (default 1)\n"
	"  --memory SIZE        guest RAM, e.g. 512M, 2G; a bare number is MiB (default 256M)\n"
	"  --disk PATH[,readonly][,root][,id=NAME][,rate=SIZE][,iops=N][,transport=pci|mmio]\n"
	"                       raw disk image as a virtio-blk device (repeatable, up to 8);\n"
	"                       id is also the serial the guest sees (default: diskN);\n"
	"                       rate/iops limit bytes and requests per second\n"
	"  --net tap=NAME[,mac=MAC][,id=NAME][,transport=pci|mmio]\n"
	"                       virtio-net on host tap device NAME (repeatable, up to 4)\n"
	"  --vsock cid=N,uds=PATH[,transport=pci|mmio]\n"
	"                       virtio-vsock; host programs reach guest port P by connecting\n"
	"                       to PATH and sending \"CONNECT P\\n\"; guest connections to\n"
	"                       port P reach the Unix socket PATH_P\n"
	"  --balloon [size=SIZE][,deflate_on_oom][,stats_period=SECS][,reporting=on|off]\n"
	"            [,transport=pci|mmio]\n"
	"                       virtio-balloon with an initial target of SIZE (default 0);\n"
	"                       free page reporting returns freed guest pages (default on)\n"
	"  --rng [transport=pci|mmio]\n"
	"                       virtio-rng entropy device fed from the host's getrandom()\n"
	"  --id NAME            name of the VM (default vm-PID); its API socket is\n"
	"                       SOCKDIR/NAME.sock (see `visor ls`)\n"
	"  --api-sock PATH      serve the API on PATH instead;  --no-api: no API socket\n"
	"  --log-level LEVEL    debug, info, warn or error (default info)\n"
	"  --kvm PATH           KVM device (default /dev/kvm)\n"
	"  --allow-software-kvm run even when KVM has no VT-x/AMD-V behind it (e.g. PVM);\n"
	"                       guest kernel code then runs ~1000x slower\n"
	"  --no-seccomp         no seccomp filters (default: each thread runs under its kind's\n"
	"                       filter; a forbidden system call kills visor with SIGSYS)\n"
	"  --seccomp-log        log forbidden system calls (kernel log) instead of killing\n"
	"  --seccomp-filter F   use the filters of visor filter file F (JSON; see\n"
	"                       visor --print-seccomp and docs/security.md)\n"
	"  --mem-shared         guest memory in a memfd mapped shared, so `visor migrate\n"
	"                       --mode local` can hand it to a new visor without a copy\n"
	"  --dirty-ring N       track dirty pages (snapshots, migration) with KVM's dirty\n"
	"                       ring of N entries per vCPU, a power of two from 256 to\n"
	"                       65536 (default 4096 where the host has it); 0: KVM's\n"
	"                       dirty bitmap\n"
	"  --restore DIR        instead of booting, load the snapshot `visor snapshot` wrote\n"
	"                       to DIR and run it (no --kernel, --cpus, --memory or devices:\n"
	"                       the snapshot defines them)\n"
	"  --track-dirty-pages  track the pages the guest and visor write, for Diff snapshots\n"
	"                       (`visor snapshot VM DIR --diff`)\n"
	"  --incoming URL       instead of booting, wait on URL (unix:PATH or tcp:HOST:PORT) for\n"
	"                       a VM `visor migrate` sends, and run it once the source hands it\n"
	"                       over (no --kernel, --cpus, --memory or devices: the source\n"
	"                       defines them); exits 1 having run nothing if the migration fails\n"
	"  --incoming-timeout S give up after S seconds (1-86400, default 3600)\n"
	"  --tls-cert F --tls-key F --tls-ca F\n"
	"                       with --incoming: mutual TLS (this side's certificate and key,\n"
	"                       the CA the source's certificate must be signed by)\n"
	"options for a restore:\n"
	"  --net-override IFACE=TAP  interface IFACE on host tap TAP instead of the snapshot's\n"
	"  --vsock-override PATH     the vsock device's Unix socket at PATH instead\n"
	"  --clock-realtime     step the guest's wall clock to the host's\n"
	"  --paused             load but do not resume (`visor resume VM` later)\n"
	"  --clones N           start N clones (1-1024), each a background process with\n"
	"                       id ID-K (K = 0..N-1; ID from --id, default the directory's\n"
	"                       name), API socket SOCKDIR/ID-K.sock, console in\n"
	"                       SOCKDIR/ID-K.console, log in SOCKDIR/ID-K.log;\n"
	"                       \"{n}\" in an override becomes K\n"
	"                       (--net-override net0=tap{n}); returns once all run\n"
	"  --ready-fd FD        write \"ready ID\\n\" to FD and close it once the VM runs\n"
	"\n"
	"exit status: 0 guest powered off, 1 visor error, 2 guest rebooted,\n"
	"             3 guest panicked, 4 guest crashed, 130 quit with Ctrl-A x\n";

const char cli_usage_migrate[] =
	"usage: visor migrate VM --to URL [options]    live-migrate VM to URL\n"
	"       visor migrate VM --cancel              stop the VM's migration (it keeps running here)\n"
	"       visor migrate VM --status [--json]     the VM's migration, as GET /migration says\n"
	"\n"
	"VM is a name (the --id of `visor run`) or the path of an API socket.  The\n"
	"destination is a visor started with `visor run --incoming URL` (or given\n"
	"PUT /migration/receive) with the same TLS set-up and access to the same disk\n"
	"images.  The VM must be running or paused.  The guest keeps running while\n"
	"its memory is copied, then pauses for the last pages and its device state\n"
	"and resumes on the destination; this process's VM then exits (status 0).\n"
	"If the migration fails or is cancelled, the VM keeps running here.\n"
	"\n"
	"  --to URL             unix:PATH (this host) or tcp:HOST:PORT (HOST numeric)\n"
	"  --downtime MS        longest pause to aim for, 1-60000 ms (default 50)\n"
	"  --bandwidth MIB      at most MIB MiB/s on the link (default 0: no limit)\n"
	"  --timeout S          give up after S seconds, 1-86400 (default 3600)\n"
	"  --mode MODE          precopy (default): copy memory while the guest runs, in passes;\n"
	"                       postcopy: run on the destination at once, pages follow on demand;\n"
	"                       auto: pre-copy, post-copy if the guest dirties memory too fast;\n"
	"                       local: hand guest memory to a visor on this host (unix: only),\n"
	"                       e.g. to upgrade visor under a running guest\n"
	"  --postcopy           the same as --mode postcopy\n"
	"  --tls-cert F --tls-key F --tls-ca F [--tls-server-name NAME]\n"
	"                       mutual TLS: this side's certificate and key, the CA the\n"
	"                       destination's certificate must be signed by, and the name it\n"
	"                       must carry (default: the HOST of a tcp: URL)\n"
	"  --no-wait            start the migration and return (follow it with --status)\n"
	"  --verify             at the switch-over the destination compares every page with\n"
	"                       the source's CRC-32 and refuses to run on a copy that\n"
	"                       differs (the VM then runs on here); precopy and auto only\n"
	"\n"
	"On a terminal a progress bar shows the pass, MiB sent and left, the rate,\n"
	"the guest's dirty rate, the ETA and any vCPU throttling; otherwise one line\n"
	"per pass.  At the end: \"migrated VM to URL in X s: N MiB sent in P passes,\n"
	"downtime D ms\" (status 0), or why it failed (status 1).  Ctrl-C cancels the\n"
	"migration.  Relative file names (--tls-*, unix:PATH) are made absolute: the\n"
	"VM's process opens them.\n";

const char cli_usage_firecracker[] =
	"usage: visor [--api-sock PATH] [--config-file PATH] [--no-api] [options]\n"
	"       (also as `firecracker ...` through a symlink)\n"
	"\n"
	"Firecracker's command line: serve Firecracker's REST API on PATH (default\n"
	"/run/firecracker.socket) and boot when it receives InstanceStart, or boot\n"
	"the VM described by the JSON config file at once.\n"
	"\n"
	"  --api-sock PATH                  API socket path\n"
	"  --config-file PATH               Firecracker JSON config (boot without API calls)\n"
	"  --no-api                         no API socket (needs --config-file)\n"
	"  --id ID                          instance id (default anonymous-instance)\n"
	"  --log-path PATH                  log to a file or named pipe\n"
	"  --level LEVEL                    Error, Warning, Info (default), Debug, Trace, Off\n"
	"  --show-level, --show-log-origin  add the level / source location to log lines\n"
	"  --metrics-path PATH              metrics (JSON lines) to a file or named pipe\n"
	"  --boot-timer                     log the guest's boot time (write to port 0x520)\n"
	"  --http-api-max-payload-size N    largest request body (default 51200 bytes)\n"
	"  --mmds-size-limit N              accepted (MMDS is not supported)\n"
	"  --enable-pci                     devices on PCI (default: virtio-mmio)\n"
	"  --no-seccomp                     no seccomp filters (default: one per thread kind;\n"
	"                                   a forbidden system call kills the process)\n"
	"  --seccomp-log                    log forbidden system calls instead of killing\n"
	"  --seccomp-filter F               the filters of a visor filter file (JSON; see\n"
	"                                   visor --print-seccomp and docs/security.md)\n"
	"  --start-time-us N, --start-time-cpu-us N, --parent-cpu-time-us N   (from a jailer)\n"
	"  --describe-snapshot FILE         print a snapshot state file's version and sections\n"
	"                                   (must be the only option)\n"
	"  --version, --help\n";

__attribute__((format(printf, 2, 3))) static int fail(struct config_err *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_vset(e->msg, sizeof(e->msg), -EINVAL, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

#define COPY(dst, src) str_copy((dst), sizeof(dst), (src))

int cli_socket_dir(char *buf, size_t len)
{
	const char *d = getenv("VISOR_RUN_DIR");
	int n;
	if (d && *d)
		n = snprintf(buf, len, "%s", d);
	else if ((d = getenv("XDG_RUNTIME_DIR")) && *d)
		n = snprintf(buf, len, "%s/visor", d);
	else if (geteuid() == 0)
		n = snprintf(buf, len, "/run/visor");
	else
		n = snprintf(buf, len, "/tmp/visor-%u", (unsigned)geteuid());
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int cli_socket_path(const char *name, char *buf, size_t len)
{
	if (strchr(name, '/'))
		return (size_t)snprintf(buf, len, "%s", name) >= len ? -ENAMETOOLONG : 0;
	char dir[96];
	if (cli_socket_dir(dir, sizeof(dir)))
		return -ENAMETOOLONG;
	return (size_t)snprintf(buf, len, "%s/%s.sock", dir, name) >= len ? -ENAMETOOLONG : 0;
}

/* Split "--opt=value" into name and value (value NULL if none). */
static void split_opt(const char *arg, char *name, size_t nlen, const char **val)
{
	const char *eq = strchr(arg, '=');
	*val = NULL;
	if (!strncmp(arg, "--", 2) && eq && (size_t)(eq - arg) < nlen) {
		memcpy(name, arg, (size_t)(eq - arg));
		name[eq - arg] = 0;
		*val = eq + 1;
	} else {
		snprintf(name, nlen, "%s", arg);
	}
}

/* @name is one of the NULL-terminated @list. */
static bool in_list(const char *name, const char *const *list)
{
	for (int k = 0; list[k]; k++)
		if (!strcmp(name, list[k]))
			return true;
	return false;
}

static int take_value(int argc, char **argv, int *i, const char *name, const char **val,
		      struct config_err *e)
{
	if (*val)
		return 0;
	if (*i + 1 >= argc)
		return fail(e, "option %s needs a value", name);
	*val = argv[++*i];
	return 0;
}

/* Options both `visor run` and Firecracker mode take.  1 if handled, 0 if
 * not this option, -EINVAL on error. */
static int common_opt(struct cli_opts *o, const char *name, int argc, char **argv, int *i,
		      const char *val, struct config_err *e)
{
	if (!strcmp(name, "--no-api")) {
		if (val)
			return fail(e, "option %s takes no value", name);
		o->no_api = true;
		return 1;
	}
	if (!strcmp(name, "--api-sock")) {
		if (take_value(argc, argv, i, name, &val, e))
			return -EINVAL;
		if (!val[0] || strlen(val) >= sizeof(o->api_sock))
			return fail(e, "--api-sock: socket path must be 1 to %zu characters",
				    sizeof(o->api_sock) - 1);
		COPY(o->api_sock, val);
		o->api_sock_set = true;
		return 1;
	}
	if (!strcmp(name, "--no-seccomp") || !strcmp(name, "--seccomp-log")) {
		if (val)
			return fail(e, "option %s takes no value", name);
		if (!strcmp(name, "--no-seccomp"))
			o->no_seccomp = true;
		else
			o->seccomp_log = true;
		return 1;
	}
	if (!strcmp(name, "--seccomp-filter")) {
		if (take_value(argc, argv, i, name, &val, e))
			return -EINVAL;
		if (!val[0] || strlen(val) >= sizeof(o->seccomp_filter))
			return fail(e, "--seccomp-filter: path must be 1 to %zu bytes",
				    sizeof(o->seccomp_filter) - 1);
		COPY(o->seccomp_filter, val);
		return 1;
	}
	if (!strcmp(name, "--id")) {
		if (take_value(argc, argv, i, name, &val, e))
			return -EINVAL;
		/* Firecracker's jailer: 1-64 of [A-Za-z0-9-] */
		size_t n = strlen(val);
		if (n == 0 || n > CONFIG_ID_MAX || strspn(val, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != n)
			return fail(e, "--id: '%s' must be 1 to %d letters, digits, '-' or '_'", val,
				    CONFIG_ID_MAX);
		COPY(o->id, val);
		return 1;
	}
	return 0;
}

static int parse_fc_level(const char *v, struct cli_opts *o, struct config_err *e)
{
	static const struct {
		const char *name;
		enum log_level l;
	} lv[] = {{"error", LOG_ERROR}, {"warning", LOG_WARN}, {"warn", LOG_WARN},
		  {"info", LOG_INFO},   {"debug", LOG_DEBUG},  {"trace", LOG_DEBUG},
		  {"off", LOG_ERROR}};
	for (size_t k = 0; k < sizeof(lv) / sizeof(lv[0]); k++) {
		if (!strcasecmp(v, lv[k].name)) {
			o->level = lv[k].l;
			o->level_set = true;
			o->cfg.logger.off = !strcasecmp(v, "off");
			return 0;
		}
	}
	return fail(e, "--level: '%s' is not one of Error, Warning, Info, Debug, Trace, Off", v);
}

static int parse_firecracker(int argc, char **argv, int first, struct cli_opts *o,
			     struct config_err *e)
{
	o->cmd = CLI_FIRECRACKER;
	COPY(o->api_sock, "/run/firecracker.socket");
	/* Firecracker's defaults: 1 vCPU, 128 MiB */
	o->cfg.mem_size = 128ULL << 20;
	for (int i = first; i < argc; i++) {
		char name[48];
		const char *val;
		split_opt(argv[i], name, sizeof(name), &val);
		int c = common_opt(o, name, argc, argv, &i, val, e);
		if (c < 0)
			return c;
		if (c)
			continue;
		if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
			o->cmd = CLI_HELP;
			o->help_topic = "firecracker";
			return 0;
		}
		if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
			o->cmd = CLI_VERSION;
			return 0;
		}
		if (!strcmp(name, "--describe-snapshot"))
			return fail(e, "--describe-snapshot must be the only option: "
				       "visor --describe-snapshot FILE");
		static const char *const flags[] = {"--show-level", "--show-log-origin", "--boot-timer",
						    "--enable-pci", NULL};
		bool is_flag = false;
		for (int k = 0; flags[k]; k++)
			is_flag |= !strcmp(name, flags[k]);
		if (is_flag) {
			if (val)
				return fail(e, "option %s takes no value", name);
			if (!strcmp(name, "--show-level"))
				o->show_level = true;
			else if (!strcmp(name, "--show-log-origin"))
				o->show_origin = true;
			else if (!strcmp(name, "--boot-timer"))
				o->boot_timer = true;
			else
				o->enable_pci = true;
			continue;
		}
		static const char *const with_val[] = {
			"--config-file",	"--log-path",	   "--level",	      "--metrics-path",
			"--http-api-max-payload-size", "--mmds-size-limit", "--start-time-us",
			"--start-time-cpu-us", "--parent-cpu-time-us", "--kvm",
			NULL};
		if (!in_list(name, with_val))
			return fail(e, "unknown option '%s' (try 'visor --help firecracker')", argv[i]);
		if (take_value(argc, argv, &i, name, &val, e))
			return -EINVAL;
		uint64_t n = 0;
		if (!strcmp(name, "--config-file") || !strcmp(name, "--log-path") ||
		    !strcmp(name, "--metrics-path") || !strcmp(name, "--kvm")) {
			if (!val[0] || strlen(val) >= CONFIG_PATH_MAX)
				return fail(e, "%s: path must be 1 to %d bytes", name, CONFIG_PATH_MAX - 1);
			if (!strcmp(name, "--config-file"))
				COPY(o->config_file, val);
			else if (!strcmp(name, "--log-path"))
				COPY(o->log_path, val);
			else if (!strcmp(name, "--metrics-path"))
				COPY(o->metrics_path, val);
			else
				COPY(o->cfg.kvm_path, val);
		} else if (!strcmp(name, "--level")) {
			if (parse_fc_level(val, o, e))
				return -EINVAL;
		} else if (config_parse_u64(val, &n)) {
			return fail(e, "%s: '%s' is not a number", name, val);
		} else if (!strcmp(name, "--http-api-max-payload-size")) {
			if (n < 1024 || n > (64ULL << 20))
				return fail(e, "%s: %llu is out of range (1024 to 67108864 bytes)", name,
					    (unsigned long long)n);
			o->max_payload = n;
		} else if (!strcmp(name, "--mmds-size-limit")) {
			o->mmds_size_limit = n;
		} else if (!strcmp(name, "--start-time-us")) {
			o->start_time_us = n;
		} else if (!strcmp(name, "--start-time-cpu-us")) {
			o->start_time_cpu_us = n;
		} else {
			o->parent_cpu_time_us = n;
		}
	}
	if (o->no_api && !o->config_file[0])
		return fail(e, "--no-api needs --config-file (nothing could start the VM otherwise)");
	return 0;
}

/* The options that give a restore what PUT /snapshot/load's fields give
 * the API (network_overrides, vsock_override), the clone count, and
 * --ready-fd.  A value may hold "{n}" (the clone number); a clone checks
 * the result through the API's own checks. */
static int restore_opt(struct cli_opts *o, const char *name, const char *val,
		       struct config_err *e)
{
	if (!strcmp(name, "--clones")) {
		uint64_t n;
		if (config_parse_u64(val, &n) || n < 1 || n > CLI_MAX_CLONES)
			return fail(e, "--clones: '%s' is not a number from 1 to %d", val,
				    CLI_MAX_CLONES);
		o->clones = (uint32_t)n;
	} else if (!strcmp(name, "--ready-fd")) {
		uint64_t n;
		if (config_parse_u64(val, &n) || n > 65535)
			return fail(e, "--ready-fd: '%s' is not a file descriptor number", val);
		o->ready_fd = (int)n;
		o->has_ready_fd = true;
	} else if (!strcmp(name, "--vsock-override")) {
		if (!val[0] || strlen(val) >= sizeof(o->vsock_override))
			return fail(e, "--vsock-override: path must be 1 to %zu bytes",
				    sizeof(o->vsock_override) - 1);
		COPY(o->vsock_override, val);
	} else {
		const char *eq = strchr(val, '=');
		if (o->nnet_override >= CONFIG_MAX_NICS)
			return fail(e, "--net-override: at most %d", CONFIG_MAX_NICS);
		if (!eq || eq == val || (size_t)(eq - val) > CONFIG_ID_MAX || !eq[1] ||
		    strlen(eq + 1) >= sizeof(o->net_override[0].tap))
			return fail(e, "--net-override: expected IFACE=TAP (e.g. net0=tap1), got '%s'",
				    val);
		uint32_t k = o->nnet_override;
		memcpy(o->net_override[k].iface, val, (size_t)(eq - val));
		o->net_override[k].iface[eq - val] = 0;
		for (uint32_t j = 0; j < k; j++)
			if (!strcmp(o->net_override[j].iface, o->net_override[k].iface))
				return fail(e, "--net-override: interface '%s' given twice",
					    o->net_override[k].iface);
		COPY(o->net_override[k].tap, eq + 1);
		o->nnet_override++;
	}
	return 0;
}

/* --tls-cert/--tls-key/--tls-ca (and, for the side that connects,
 * --tls-server-name) into @t.  1 if handled, 0 if not a TLS option,
 * -EINVAL on error. */
static int tls_opt(const char *name, int argc, char **argv, int *i, const char *val,
		   struct mig_tls_params *t, bool connects, struct config_err *e)
{
	char *dst;
	size_t size;
	if (!strcmp(name, "--tls-cert")) {
		dst = t->cert;
		size = sizeof(t->cert);
	} else if (!strcmp(name, "--tls-key")) {
		dst = t->key;
		size = sizeof(t->key);
	} else if (!strcmp(name, "--tls-ca")) {
		dst = t->ca;
		size = sizeof(t->ca);
	} else if (!strcmp(name, "--tls-server-name")) {
		if (!connects)
			return fail(e, "--tls-server-name: only for `visor migrate` (the side that "
				       "connects checks the destination's name)");
		dst = t->server_name;
		size = sizeof(t->server_name);
	} else {
		return 0;
	}
	if (take_value(argc, argv, i, name, &val, e))
		return -EINVAL;
	if (!val[0] || strlen(val) >= size)
		return fail(e, "%s: must be 1 to %zu bytes", name, size - 1);
	if (dst[0])
		return fail(e, "%s given twice", name);
	str_copy(dst, size, val);
	return 1;
}

/* TLS options given: all three files (docs/api.md: cert, key and ca). */
static int tls_finish(struct mig_tls_params *t, struct config_err *e)
{
	if (!t->cert[0] && !t->key[0] && !t->ca[0] && !t->server_name[0])
		return 0;
	const char *missing = !t->cert[0]  ? "--tls-cert"
			      : !t->key[0] ? "--tls-key"
			      : !t->ca[0]  ? "--tls-ca"
					   : NULL;
	if (missing)
		return fail(e, "TLS needs --tls-cert, --tls-key and --tls-ca together (%s is missing)",
			    missing);
	t->enabled = true;
	return 0;
}

/* A migration URL (--incoming, --to): the API's loose check. */
static int mig_url_opt(const char *name, const char *val, char *buf, size_t size,
		       struct config_err *e)
{
	char why[128];
	if (fc_mig_url_check(val, why, sizeof(why)))
		return fail(e, "%s: %s", name, why);
	if (strlen(val) >= size)
		return fail(e, "%s: longer than %zu bytes", name, size - 1);
	if (buf[0])
		return fail(e, "%s given twice", name);
	str_copy(buf, size, val);
	return 0;
}

/* A number from @min to @max for option @name. */
static int num_opt(const char *name, const char *val, uint64_t min, uint64_t max, uint64_t *out,
		   struct config_err *e)
{
	if (config_parse_u64(val, out) || *out < min || *out > max)
		return fail(e, "%s: '%s' is not a number from %llu to %llu", name, val,
			    (unsigned long long)min, (unsigned long long)max);
	return 0;
}

static int parse_run(int argc, char **argv, struct cli_opts *o, struct config_err *e)
{
	struct vm_config *cfg = &o->cfg;
	o->cmd = CLI_RUN;
	bool have_kernel = false;
	const char *kernel = NULL, *initrd = NULL, *cmdline = NULL;
	uint64_t cpus = 1, mem = CONFIG_DEFAULT_MEM;
	struct disk_config disks[CONFIG_MAX_DISKS];
	uint32_t ndisks = 0;
	struct net_config nics[CONFIG_MAX_NICS];
	uint32_t nnics = 0;
	const char *restore_only = NULL; /* the first option that needs --restore */
	const char *tls_given = NULL;    /* the first --tls-* option */
	for (int i = 2; i < argc; i++) {
		char name[32];
		const char *val, *opt_arg = argv[i];
		split_opt(argv[i], name, sizeof(name), &val);
		if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
			o->cmd = CLI_HELP;
			o->help_topic = "run";
			return 0;
		}
		int c = common_opt(o, name, argc, argv, &i, val, e);
		if (c < 0)
			return c;
		if (c)
			continue;
		if (!strcmp(name, "--balloon")) {
			/* optional value */
			if (!val && i + 1 < argc && strncmp(argv[i + 1], "--", 2))
				val = argv[++i];
			if (cfg->balloon.enabled)
				return fail(e, "--balloon: only one balloon device");
			if (config_parse_balloon(val ? val : "", &cfg->balloon, e))
				return -EINVAL;
			continue; /* checked against --memory at the end */
		}
		if (!strcmp(name, "--rng")) {
			if (!val && i + 1 < argc && !strncmp(argv[i + 1], "transport=", 10))
				val = argv[++i];
			cfg->rng.enabled = true;
			cfg->rng.transport = TRANSPORT_PCI;
			if (val && strcmp(val, "transport=pci") && strcmp(val, "transport=mmio"))
				return fail(e, "--rng: expected transport=pci or transport=mmio");
			if (val && !strcmp(val, "transport=mmio"))
				cfg->rng.transport = TRANSPORT_MMIO;
			continue;
		}
		if (!strcmp(name, "--clock-realtime") || !strcmp(name, "--paused")) {
			if (val)
				return fail(e, "option %s takes no value", name);
			if (!strcmp(name, "--paused"))
				o->restore_paused = true;
			else
				o->clock_realtime = true;
			restore_only = restore_only ? restore_only : argv[i];
			continue;
		}
		if (!strcmp(name, "--clones") || !strcmp(name, "--net-override") ||
		    !strcmp(name, "--vsock-override") || !strcmp(name, "--ready-fd")) {
			if (take_value(argc, argv, &i, name, &val, e))
				return -EINVAL;
			int r = restore_opt(o, name, val, e);
			if (r)
				return r;
			if (strcmp(name, "--ready-fd"))
				restore_only = restore_only ? restore_only : opt_arg;
			continue;
		}
		if (!strcmp(name, "--allow-software-kvm")) {
			if (val)
				return fail(e, "option %s takes no value", name);
			cfg->allow_software_kvm = true;
			continue;
		}
		if (!strcmp(name, "--mem-shared")) {
			if (val)
				return fail(e, "option %s takes no value", name);
			cfg->mem_shared = true;
			continue;
		}
		int t = tls_opt(name, argc, argv, &i, val, &o->incoming.tls, false, e);
		if (t < 0)
			return t;
		if (t) {
			tls_given = tls_given ? tls_given : opt_arg;
			continue;
		}
		if (!strcmp(name, "--incoming") || !strcmp(name, "--incoming-timeout")) {
			if (take_value(argc, argv, &i, name, &val, e))
				return -EINVAL;
			if (!strcmp(name, "--incoming")) {
				if (mig_url_opt(name, val, o->incoming.url, sizeof(o->incoming.url), e))
					return -EINVAL;
			} else {
				uint64_t n;
				if (num_opt(name, val, 1, FC_MIG_MAX_TIMEOUT_S, &n, e))
					return -EINVAL;
				o->incoming.timeout_s = (uint32_t)n;
			}
			continue;
		}
		if (!strcmp(name, "--track-dirty-pages")) {
			if (val)
				return fail(e, "option %s takes no value", name);
			o->track_dirty_pages = true;
			continue;
		}
		if (!strcmp(name, "--control"))
			return fail(e, "--control was replaced by the API: `visor balloon VM SIZE`, "
				       "`visor status VM` (see visor --help)");
		static const char *const with_val[] = {"--kernel", "--initrd", "--cmdline", "--cpus",
						       "--memory", "--log-level", "--kvm", "--disk", "--net",
						       "--vsock", "--restore", "--dirty-ring", NULL};
		if (!in_list(name, with_val))
			return fail(e, "unknown option '%s' (try 'visor --help')", argv[i]);
		if (take_value(argc, argv, &i, name, &val, e))
			return -EINVAL;
		if (!strcmp(name, "--net")) {
			if (nnics >= CONFIG_MAX_NICS)
				return fail(e, "--net: at most %d network devices", CONFIG_MAX_NICS);
			if (config_parse_net(val, &nics[nnics], e))
				return -EINVAL;
			if (!nics[nnics].id[0])
				snprintf(nics[nnics].id, sizeof(nics[nnics].id), "net%u", nnics);
			nnics++;
		} else if (!strcmp(name, "--vsock")) {
			if (cfg->vsock.enabled)
				return fail(e, "--vsock: only one vsock device");
			struct vsock_config v;
			if (config_parse_vsock(val, &v, e) || config_set_vsock(cfg, &v, e))
				return -EINVAL;
		} else if (!strcmp(name, "--disk")) {
			if (ndisks >= CONFIG_MAX_DISKS)
				return fail(e, "--disk: at most %d disks", CONFIG_MAX_DISKS);
			if (config_parse_disk(val, &disks[ndisks], e))
				return -EINVAL;
			if (!disks[ndisks].id[0])
				snprintf(disks[ndisks].id, sizeof(disks[ndisks].id), "disk%u", ndisks);
			ndisks++;
		} else if (!strcmp(name, "--restore")) {
			if (!val[0] || strlen(val) >= sizeof(o->restore_dir) - 16)
				return fail(e, "--restore: directory name must be 1 to %zu bytes",
					    sizeof(o->restore_dir) - 17);
			COPY(o->restore_dir, val);
		} else if (!strcmp(name, "--kernel")) {
			kernel = val;
			have_kernel = true;
		} else if (!strcmp(name, "--initrd")) {
			initrd = val;
		} else if (!strcmp(name, "--cmdline")) {
			cmdline = val;
		} else if (!strcmp(name, "--dirty-ring")) {
			uint64_t n;
			if (config_parse_u64(val, &n))
				return fail(e, "--dirty-ring: '%s' is not a number", val);
			if (config_set_dirty_ring(cfg, n, e))
				return -EINVAL;
		} else if (!strcmp(name, "--kvm")) {
			if (!val[0] || strlen(val) >= sizeof(cfg->kvm_path))
				return fail(e, "--kvm: path must be 1 to %zu bytes", sizeof(cfg->kvm_path) - 1);
			COPY(cfg->kvm_path, val);
		} else if (!strcmp(name, "--cpus")) {
			if (config_parse_u64(val, &cpus))
				return fail(e, "--cpus: '%s' is not a number", val);
			if (cpus == 0 || cpus > CONFIG_MAX_CPUS)
				return fail(e, "--cpus: %s is out of range (1-%d)", val, CONFIG_MAX_CPUS);
		} else if (!strcmp(name, "--memory")) {
			if (parse_size(val, &mem))
				return fail(e, "--memory: '%s' is not a size (examples: 512M, 2G)", val);
			if (mem < CONFIG_MIN_MEM)
				return fail(e, "--memory: %s is too small (minimum 4M)", val);
			if (mem & ((1ULL << 20) - 1))
				return fail(e, "--memory: %s is not a whole number of MiB", val);
		} else if (!strcmp(name, "--log-level")) {
			static const char *const lv[] = {"debug", "info", "warn", "error"};
			int found = -1;
			for (int k = 0; k < 4; k++)
				if (!strcmp(val, lv[k]))
					found = k;
			if (found < 0)
				return fail(e, "--log-level: '%s' is not one of debug, info, warn, error",
					    val);
			cfg->log_level = (enum log_level)found;
			o->level = cfg->log_level;
			o->level_set = true;
		}
	}
	if (o->incoming.url[0]) {
		/* the source's HELLO defines the machine, as a snapshot does */
		if (o->restore_dir[0])
			return fail(e, "--incoming and --restore: the VM comes either from a migration "
				       "or from a snapshot");
		if (have_kernel || initrd || cmdline || cpus != 1 || mem != CONFIG_DEFAULT_MEM ||
		    ndisks || nnics || cfg->balloon.enabled || cfg->rng.enabled || cfg->vsock.enabled)
			return fail(e, "--incoming: the source defines the machine (kernel, vCPUs, "
				       "memory, devices); give only host options such as --id, "
				       "--api-sock, --log-level");
		if (restore_only)
			return fail(e, "%s: only with a snapshot, not with --incoming", restore_only);
		if (o->has_ready_fd)
			return fail(e, "--ready-fd: not with --incoming (follow the destination with "
				       "GET /migration)");
		if (o->track_dirty_pages)
			return fail(e, "--track-dirty-pages: not with --incoming (the source's "
				       "configuration says whether pages are tracked)");
		if (!o->incoming.timeout_s)
			o->incoming.timeout_s = MIG_DEFAULT_TIMEOUT_S;
		return tls_finish(&o->incoming.tls, e);
	}
	if (tls_given || o->incoming.timeout_s)
		return fail(e, "%s: only with --incoming URL", tls_given ? tls_given : "--incoming-timeout");
	if (o->restore_dir[0]) {
		/* the snapshot defines the machine: nothing may redefine it */
		if (have_kernel || initrd || cmdline || cpus != 1 || mem != CONFIG_DEFAULT_MEM ||
		    ndisks || nnics || cfg->balloon.enabled || cfg->rng.enabled || cfg->vsock.enabled)
			return fail(e, "--restore: the snapshot defines the machine (kernel, vCPUs, "
				       "memory, devices); give only host options such as --id, "
				       "--api-sock, --log-level");
		return 0;
	}
	if (restore_only)
		return fail(e, "%s: only with a snapshot (visor restore DIR, visor run --restore DIR)",
			    restore_only);
	if (!have_kernel)
		return fail(e, "run: --kernel PATH is required");
	/* Everything through the setters the API uses: same checks, same
	 * messages.  The balloon is checked once the memory size is known. */
	struct balloon_config b = cfg->balloon;
	cfg->balloon.enabled = false;
	if (config_set_machine(cfg, cpus, mem >> 20, false, o->track_dirty_pages, e) ||
	    config_set_boot(cfg, kernel, initrd, cmdline, e))
		return -EINVAL;
	if (b.enabled && config_set_balloon(cfg, &b, e))
		return -EINVAL;
	for (uint32_t k = 0; k < ndisks; k++)
		if (config_set_disk(cfg, &disks[k], e))
			return -EINVAL;
	for (uint32_t k = 0; k < nnics; k++)
		if (config_set_net(cfg, &nics[k], e))
			return -EINVAL;
	if (cfg->rng.enabled) {
		struct rng_config r = cfg->rng;
		if (config_set_rng(cfg, &r, e))
			return -EINVAL;
	}
	return config_validate(cfg, e);
}

/* `visor --describe-snapshot FILE` (or =FILE): nothing else on the line. */
static int parse_describe(int argc, char **argv, struct cli_opts *o, struct config_err *e)
{
	char name[32];
	const char *val;
	int i = 1;
	split_opt(argv[1], name, sizeof(name), &val);
	if (take_value(argc, argv, &i, name, &val, e))
		return fail(e, "--describe-snapshot needs a FILE: visor --describe-snapshot FILE");
	if (!val[0])
		return fail(e, "--describe-snapshot: empty file name");
	if (i + 1 < argc)
		return fail(e, "--describe-snapshot takes one FILE and no other options ('%s')",
			    argv[i + 1]);
	o->cmd = CLI_DESCRIBE_SNAPSHOT;
	o->snapshot_path = val;
	return 0;
}

static bool is_describe(const char *arg)
{
	static const char opt[] = "--describe-snapshot";
	return !strncmp(arg, opt, sizeof(opt) - 1) &&
	       (arg[sizeof(opt) - 1] == 0 || arg[sizeof(opt) - 1] == '=');
}

/* `visor snapshot merge BASE DIFF [--state FILE] [--json]` */
static int parse_merge(int argc, char **argv, struct cli_opts *o, struct config_err *e)
{
	static const char usage[] = "snapshot merge: usage: visor snapshot merge BASE DIFF "
				    "[--state DIFF_STATE] (snapshot directories, or memory files)";
	o->cmd = CLI_SNAPSHOT_MERGE;
	int pos = 0;
	for (int i = 3; i < argc; i++) {
		char name[32];
		const char *val;
		if (!strncmp(argv[i], "--", 2)) {
			split_opt(argv[i], name, sizeof(name), &val);
			if (!strcmp(name, "--json") && !val) {
				o->ctl_json = true;
				continue;
			}
			if (strcmp(name, "--state"))
				return fail(e, "snapshot merge: unknown option '%s'", argv[i]);
			if (take_value(argc, argv, &i, name, &val, e))
				return -EINVAL;
			if (!val[0])
				return fail(e, "snapshot merge: --state: empty file name");
			if (o->merge_state)
				return fail(e, "snapshot merge: --state given twice");
			o->merge_state = val;
		} else if (!argv[i][0]) {
			return fail(e, "snapshot merge: empty path");
		} else if (pos == 0) {
			o->merge_base = argv[i];
			pos++;
		} else if (pos == 1) {
			o->merge_diff = argv[i];
			pos++;
		} else {
			return fail(e, "snapshot merge: too many arguments ('%s'); %s", argv[i],
				    usage + sizeof("snapshot merge: ") - 1);
		}
	}
	if (pos < 2)
		return fail(e, "%s", usage);
	return 0;
}

/* `visor migrate VM --to URL [options] | --cancel | --status [--json]` */
static int parse_migrate(int argc, char **argv, struct cli_opts *o, struct config_err *e)
{
	static const char usage[] = "migrate: usage: visor migrate VM --to URL [options], "
				    "visor migrate VM --cancel, visor migrate VM --status (see visor "
				    "migrate --help)";
	struct mig_send_params *p = &o->mig;
	o->cmd = CLI_CONTROL;
	o->ctl_verb = "migrate";
	p->downtime_limit_ms = MIG_DEFAULT_DOWNTIME_MS;
	p->timeout_s = MIG_DEFAULT_TIMEOUT_S;
	p->mode = MIGP_PRECOPY;
	const char *send_opt = NULL; /* the first option of a migration to start */
	const char *mode = NULL;
	bool postcopy = false;
	for (int i = 2; i < argc; i++) {
		char name[32];
		const char *val, *arg = argv[i];
		if (argv[i][0] != '-') {
			if (o->ctl_target)
				return fail(e, "migrate: one VM at a time ('%s' and '%s')", o->ctl_target,
					    argv[i]);
			if (!argv[i][0])
				return fail(e, "migrate: empty VM name");
			o->ctl_target = argv[i];
			continue;
		}
		split_opt(argv[i], name, sizeof(name), &val);
		if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
			o->cmd = CLI_HELP;
			o->help_topic = "migrate";
			return 0;
		}
		static const char *const flags[] = {"--cancel", "--status", "--json", "--no-wait",
						    "--postcopy", "--verify", NULL};
		bool is_flag = false;
		for (int k = 0; flags[k]; k++)
			is_flag |= !strcmp(name, flags[k]);
		if (is_flag) {
			if (val)
				return fail(e, "option %s takes no value", name);
			if (!strcmp(name, "--cancel")) {
				o->mig_cancel = true;
			} else if (!strcmp(name, "--status")) {
				o->mig_status = true;
			} else if (!strcmp(name, "--json")) {
				o->ctl_json = true;
			} else {
				if (!strcmp(name, "--no-wait"))
					o->mig_no_wait = true;
				else if (!strcmp(name, "--verify"))
					p->verify = true;
				else
					postcopy = true;
				send_opt = send_opt ? send_opt : arg;
			}
			continue;
		}
		int t = tls_opt(name, argc, argv, &i, val, &p->tls, true, e);
		if (t < 0)
			return t;
		if (t) {
			send_opt = send_opt ? send_opt : arg;
			continue;
		}
		static const char *const with_val[] = {"--to",	    "--downtime", "--bandwidth",
						       "--timeout", "--mode",	  NULL};
		if (!in_list(name, with_val))
			return fail(e, "migrate: unknown option '%s' (try 'visor migrate --help')", argv[i]);
		if (take_value(argc, argv, &i, name, &val, e))
			return -EINVAL;
		send_opt = send_opt ? send_opt : arg;
		uint64_t n;
		if (!strcmp(name, "--to")) {
			if (mig_url_opt(name, val, p->url, sizeof(p->url), e))
				return -EINVAL;
		} else if (!strcmp(name, "--downtime")) {
			if (num_opt(name, val, 1, FC_MIG_MAX_DOWNTIME_MS, &n, e))
				return -EINVAL;
			p->downtime_limit_ms = (uint32_t)n;
		} else if (!strcmp(name, "--bandwidth")) {
			if (num_opt(name, val, 0, FC_MIG_MAX_BANDWIDTH_MIB, &n, e))
				return -EINVAL;
			p->max_bandwidth_mib = n;
		} else if (!strcmp(name, "--timeout")) {
			if (num_opt(name, val, 1, FC_MIG_MAX_TIMEOUT_S, &n, e))
				return -EINVAL;
			p->timeout_s = (uint32_t)n;
		} else {
			int m = fc_mig_mode_parse(val);
			if (m < 0)
				return fail(e, "--mode: '%s' is not one of precopy, postcopy, auto, local",
					    val);
			if (mode && strcmp(mode, val))
				return fail(e, "--mode given twice ('%s' and '%s')", mode, val);
			mode = val;
			p->mode = (enum mig_mode_param)m;
		}
	}
	if (!o->ctl_target)
		return fail(e, "migrate: which VM? (a name from `visor ls` or a socket path)");
	if (o->mig_cancel || o->mig_status) {
		if (o->mig_cancel && o->mig_status)
			return fail(e, "migrate: --cancel or --status, not both");
		if (send_opt)
			return fail(e, "migrate: %s takes no other options ('%s')",
				    o->mig_cancel ? "--cancel" : "--status", send_opt);
		if (o->mig_cancel && o->ctl_json)
			return fail(e, "migrate: --json is for --status");
		return 0;
	}
	if (o->ctl_json)
		return fail(e, "migrate: --json is for --status");
	if (!p->url[0])
		return fail(e, "%s", usage);
	if (postcopy) {
		if (mode && p->mode != MIGP_POSTCOPY)
			return fail(e, "migrate: --postcopy and --mode %s contradict each other", mode);
		p->mode = MIGP_POSTCOPY;
	}
	if (p->verify && (p->mode == MIGP_POSTCOPY || p->mode == MIGP_LOCAL))
		return fail(e, "migrate: --verify compares memory after pre-copy's last pass: not "
			       "with --mode %s", p->mode == MIGP_LOCAL ? "local" : "postcopy");
	if (p->mode == MIGP_LOCAL && strncmp(p->url, "unix:", 5))
		return fail(e, "migrate: --mode local hands guest memory over a Unix socket: it needs "
			       "--to unix:PATH");
	return tls_finish(&p->tls, e);
}

int cli_parse(int argc, char **argv, struct cli_opts *o, struct config_err *e)
{
	/* @o arrives zeroed (see cli.h): clearing its ~90 KiB again would
	 * fault in every page of it at start-up */
	config_defaults(&o->cfg);
	o->level = LOG_INFO;
	o->max_payload = CLI_DEFAULT_MAX_PAYLOAD;
	e->msg[0] = 0;
	const char *prog = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
	prog = prog ? prog + 1 : (argc > 0 && argv[0] ? argv[0] : "visor");
	/* Firecracker's jailer: `visor jailer ...` or a symlink named jailer */
	if (!strcmp(prog, "jailer") || (argc >= 2 && !strcmp(argv[1], "jailer"))) {
		o->cmd = CLI_JAILER;
		o->jailer_first = strcmp(prog, "jailer") ? 1 : 0;
		return 0;
	}
	/* also through the firecracker symlink, as Firecracker had the option */
	if (argc >= 2 && is_describe(argv[1]))
		return parse_describe(argc, argv, o, e);
	if (argc >= 2 && !strcmp(argv[1], "--print-seccomp")) {
		if (argc > 2)
			return fail(e, "--print-seccomp takes no other options ('%s')", argv[2]);
		o->cmd = CLI_PRINT_SECCOMP;
		return 0;
	}
	if (!strcmp(prog, "firecracker") || argc < 2 || !strncmp(argv[1], "--", 2)) {
		/* bare `visor` and `visor --help`/`--version` are ours too */
		if (strcmp(prog, "firecracker") && argc >= 2 &&
		    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "--version"))) {
			if (!strcmp(argv[1], "--version")) {
				o->cmd = CLI_VERSION;
				return 0;
			}
			o->cmd = CLI_HELP;
			o->help_topic = argc >= 3 ? argv[2] : NULL;
			return 0;
		}
		if (strcmp(prog, "firecracker") && argc < 2) {
			return fail(e, "no command given (try 'visor --help')");
		}
		COPY(o->id, "anonymous-instance");
		return parse_firecracker(argc, argv, 1, o, e);
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		o->cmd = CLI_HELP;
		o->help_topic = argc >= 3 ? argv[2] : NULL;
		return 0;
	}
	if (!strcmp(cmd, "-V") || !strcmp(cmd, "version")) {
		o->cmd = CLI_VERSION;
		return 0;
	}
	if (!strcmp(cmd, "run"))
		return parse_run(argc, argv, o, e);
	if (!strcmp(cmd, "restore")) {
		/* `visor restore DIR [options]` is `visor run --restore DIR [options]` */
		if (argc < 3 || !strncmp(argv[2], "--", 2))
			return fail(e, "restore: usage: visor restore DIR [--id NAME] [options]");
		char **av = calloc((size_t)argc + 2, sizeof(*av));
		if (!av)
			return fail(e, "out of memory");
		av[0] = argv[0];
		av[1] = "run";
		av[2] = "--restore";
		for (int i = 2; i < argc; i++)
			av[i + 1] = argv[i];
		int r = parse_run(argc + 1, av, o, e);
		free(av);
		return r;
	}
	if (!strcmp(cmd, "snapshot") && argc >= 3 && !strcmp(argv[2], "merge"))
		return parse_merge(argc, argv, o, e);
	if (!strcmp(cmd, "migrate"))
		return parse_migrate(argc, argv, o, e);
	static const char *const verbs[] = {"ls",	"pause",   "resume",	   "status",
					    "balloon",	"config",  "ctrl-alt-del", "snapshot", NULL};
	for (int k = 0; verbs[k]; k++) {
		if (strcmp(cmd, verbs[k]))
			continue;
		o->cmd = CLI_CONTROL;
		o->ctl_verb = verbs[k];
		int pos = 0;
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--json")) {
				o->ctl_json = true;
			} else if (!strcmp(argv[i], "--diff") && !strcmp(cmd, "snapshot")) {
				o->ctl_diff = true;
			} else if (!strncmp(argv[i], "--", 2)) {
				return fail(e, "%s: unknown option '%s'", cmd, argv[i]);
			} else if (pos == 0) {
				o->ctl_target = argv[i];
				pos++;
			} else if (pos == 1) {
				o->ctl_arg = argv[i];
				pos++;
			} else {
				return fail(e, "%s: too many arguments", cmd);
			}
		}
		bool is_ls = !strcmp(cmd, "ls"), is_balloon = !strcmp(cmd, "balloon") ||
							  !strcmp(cmd, "snapshot");
		if (is_ls && pos)
			return fail(e, "ls takes no arguments");
		if (!is_ls && !o->ctl_target)
			return fail(e, "%s: which VM? (a name from `visor ls` or a socket path)", cmd);
		if (is_balloon && !o->ctl_arg)
			return fail(e, !strcmp(cmd, "snapshot")
					       ? "snapshot: usage: visor snapshot VM DIR [--diff]"
					       : "balloon: usage: visor balloon VM SIZE (e.g. 256M)");
		if (!is_balloon && o->ctl_arg)
			return fail(e, "%s: too many arguments", cmd);
		return 0;
	}
	return fail(e, "unknown command '%s' (try 'visor --help')", cmd);
}
