/* SPDX-License-Identifier: MIT */
/* Command lines (cli.c), the config setters and validation (config.c). */
#include "../../src/cli.h"
#include "../../src/config.h"

#include <errno.h>

#include <stdarg.h>

#include "test.h"

static struct cli_opts opts;

/* Parse "visor ARGS..." into opts; c points at its config, err at its message. */
static int parse_args(int argc, char **argv, struct vm_config **c, char *err)
{
	struct config_err e;
	memset(&opts, 0, sizeof(opts));
	int r = cli_parse(argc, argv, &opts, &e);
	snprintf(err, 256, "%s", e.msg);
	*c = &opts.cfg;
	return r;
}

static int parse(struct vm_config **c, char *err, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	va_start(ap, err);
	argv[argc++] = "visor";
	char *a;
	while ((a = va_arg(ap, char *)) != NULL)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	return parse_args(argc, argv, c, err);
}

TEST(sizes)
{
	uint64_t v;
	CHECK_EQ(parse_size("512M", &v), 0);
	CHECK_EQ(v, 512ULL << 20);
	CHECK_EQ(parse_size("2G", &v), 0);
	CHECK_EQ(v, 2ULL << 30);
	CHECK_EQ(parse_size("2GiB", &v), 0);
	CHECK_EQ(v, 2ULL << 30);
	CHECK_EQ(parse_size("1t", &v), 0);
	CHECK_EQ(v, 1ULL << 40);
	CHECK_EQ(parse_size("64", &v), 0);
	CHECK_EQ(v, 64ULL << 20);
	CHECK_EQ(parse_size("4096K", &v), 0);
	CHECK_EQ(v, 4ULL << 20);
	CHECK_EQ(parse_size("", &v), (unsigned long long)-EINVAL);
	CHECK_EQ(parse_size("-1", &v), (unsigned long long)-EINVAL);
	CHECK_EQ(parse_size("12Q", &v), (unsigned long long)-EINVAL);
	CHECK_EQ(parse_size("1Gx", &v), (unsigned long long)-EINVAL);
	CHECK_EQ(parse_size("99999999999999999999", &v), (unsigned long long)-ERANGE);
	CHECK_EQ(parse_size("17179869184G", &v), (unsigned long long)-ERANGE);
}

TEST(run_defaults_and_values)
{
	struct vm_config *c;
	char err[256];
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", NULL), 0);
	CHECK_EQ(opts.cmd, CLI_RUN);
	CHECK_STR(c->kernel, "k");
	CHECK_EQ(c->cpus, 1);
	CHECK_EQ(c->mem_size, CONFIG_DEFAULT_MEM);
	CHECK_STR(c->cmdline, CONFIG_DEFAULT_CMDLINE);
	CHECK_STR(c->initrd, "");
	CHECK_EQ(parse(&c, err, "run", "--kernel=k", "--initrd", "i", "--cmdline", "a b",
		       "--cpus", "4", "--memory", "1G", "--allow-software-kvm", "--log-level",
		       "debug", NULL), 0);
	CHECK_STR(c->initrd, "i");
	CHECK_STR(c->cmdline, "a b");
	CHECK_EQ(c->cpus, 4);
	CHECK_EQ(c->mem_size, 1ULL << 30);
	CHECK(c->allow_software_kvm);
	CHECK_EQ(c->log_level, LOG_DEBUG);
}

TEST(help_and_version)
{
	struct vm_config *c;
	char err[256];
	CHECK_EQ(parse(&c, err, "--help", NULL), 0);
	CHECK_EQ(opts.cmd, CLI_HELP);
	CHECK_EQ(parse(&c, err, "--version", NULL), 0);
	CHECK_EQ(opts.cmd, CLI_VERSION);
	CHECK_EQ(parse(&c, err, "run", "--help", NULL), 0);
	CHECK_EQ(opts.cmd, CLI_HELP);
}

TEST(describe_snapshot)
{
	struct vm_config *c;
	char err[256];
	CHECK_EQ(parse(&c, err, "--describe-snapshot", "snap/state", NULL), 0);
	CHECK_EQ(opts.cmd, CLI_DESCRIBE_SNAPSHOT);
	CHECK_STR(opts.snapshot_path, "snap/state");
	CHECK_EQ(parse(&c, err, "--describe-snapshot=st", NULL), 0);
	CHECK_EQ(opts.cmd, CLI_DESCRIBE_SNAPSHOT);
	CHECK_STR(opts.snapshot_path, "st");
	/* through the firecracker name too */
	char *a[] = {"/bin/firecracker", "--describe-snapshot", "x", NULL};
	CHECK_EQ(parse_args(3, a, &c, err), 0);
	CHECK_EQ(opts.cmd, CLI_DESCRIBE_SNAPSHOT);
	CHECK_EQ(parse(&c, err, "--describe-snapshot", NULL), -EINVAL);
	CHECK(strstr(err, "needs a FILE") != NULL);
	CHECK_EQ(parse(&c, err, "--describe-snapshot=", NULL), -EINVAL);
	CHECK(strstr(err, "empty file name") != NULL);
	CHECK_EQ(parse(&c, err, "--describe-snapshot", "a", "b", NULL), -EINVAL);
	CHECK(strstr(err, "no other options") != NULL);
	CHECK_EQ(parse(&c, err, "--describe-snapshot", "a", "--no-api", NULL), -EINVAL);
	CHECK_EQ(parse(&c, err, "--api-sock", "/tmp/s", "--describe-snapshot", "a", NULL), -EINVAL);
	CHECK(strstr(err, "must be the only option") != NULL);
	/* a longer option is not this one */
	CHECK_EQ(parse(&c, err, "--describe-snapshots", "a", NULL), -EINVAL);
	CHECK(strstr(err, "unknown option") != NULL);
}

TEST(bad_input_is_a_clear_error)
{
	struct vm_config *c;
	char err[256];
	struct {
		const char *a[6];
		const char *msg;
	} cases[] = {
				{{"frobnicate", NULL}, "unknown command"},
		{{"run", NULL}, "--kernel PATH is required"},
		{{"run", "--kernel", NULL}, "needs a value"},
		{{"run", "--kernel", "k", "--bogus", NULL}, "unknown option '--bogus'"},
		{{"run", "--kernel", "k", "--cpus", "0", NULL}, "out of range"},
		{{"run", "--kernel", "k", "--cpus", "1000", NULL}, "out of range"},
		{{"run", "--kernel", "k", "--cpus", "2x", NULL}, "not a number"},
		{{"run", "--kernel", "k", "--cpus", "-1", NULL}, "not a number"},
		{{"run", "--kernel", "k", "--memory", "0", NULL}, "too small"},
		{{"run", "--kernel", "k", "--memory", "lots", NULL}, "not a size"},
		{{"run", "--kernel", "k", "--memory", "4194305B", NULL}, "whole number of MiB"},
		{{"run", "--kernel", "k", "--log-level", "loud", NULL}, "not one of"},
		{{"run", "--kernel", "k", "--allow-software-kvm=1", NULL}, "takes no value"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[8] = {"visor"};
		int argc = 1;
		for (int k = 0; cases[i].a[k]; k++)
			argv[argc++] = (char *)cases[i].a[k];
		err[0] = 0;
		int r = parse_args(argc, argv, &c, err);
		CHECK_EQ(r, (unsigned long long)-EINVAL);
		if (!strstr(err, cases[i].msg))
			printf("  case %zu: '%s' lacks '%s'\n", i, err, cases[i].msg);
		CHECK(strstr(err, cases[i].msg) != NULL);
		CHECK(strchr(err, '\n') == NULL);
	}
}

TEST(disks_and_rng)
{
	struct vm_config *c;
	char err[256];
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--disk", "a.img", "--disk",
		       "b.img,readonly,id=serial_b,transport=mmio", "--rng", NULL), 0);
	CHECK_EQ(c->ndisks, 2);
	CHECK_STR(c->disks[0].path, "a.img");
	CHECK_STR(c->disks[0].id, "disk0");
	CHECK(!c->disks[0].readonly);
	CHECK_EQ(c->disks[0].transport, TRANSPORT_PCI);
	CHECK_STR(c->disks[1].path, "b.img");
	CHECK_STR(c->disks[1].id, "serial_b");
	CHECK(c->disks[1].readonly);
	CHECK_EQ(c->disks[1].transport, TRANSPORT_MMIO);
	CHECK(c->rng.enabled);
	CHECK_EQ(c->rng.transport, TRANSPORT_PCI);
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--rng", "transport=mmio", NULL), 0);
	CHECK_EQ(c->rng.transport, TRANSPORT_MMIO);
	static const char *const bad[] = {",readonly", "a,bogus", "a,id=", "a,id=bad-id", "a,id=12345678901234567890123456789012345678901234567890123456789012345",
					  "a,transport=isa", NULL};
	for (int i = 0; bad[i]; i++) {
		err[0] = 0;
		CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--disk", bad[i], NULL), (unsigned long long)-EINVAL);
		if (!strstr(err, "--disk") && !strstr(err, "drive"))
			printf("  '%s': %s\n", bad[i], err);
		CHECK(strstr(err, "--disk") != NULL || strstr(err, "drive") != NULL);
	}
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--rng=transport=x", NULL), (unsigned long long)-EINVAL);
	char *argv[32] = {"visor", "run", "--kernel", "k"};
	int argc = 4;
	for (int i = 0; i < 9; i++) {
		argv[argc++] = "--disk";
		argv[argc++] = "x.img";
	}
	CHECK_EQ(parse_args(argc, argv, &c, err), (unsigned long long)-EINVAL);
	CHECK(strstr(err, "at most") != NULL);
}

TEST(net_vsock_balloon_control)
{
	struct vm_config *c;
	char err[256];
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--net", "tap=tap0", "--net",
		       "tap=tap1,mac=52:54:00:12:34:56,transport=mmio", "--vsock", "cid=3,uds=/tmp/v.sock",
		       "--balloon", "size=64M,deflate_on_oom,stats_period=2", 
		       NULL), 0);
	CHECK_EQ(c->nnics, 2);
	CHECK_STR(c->nics[0].tap, "tap0");
	CHECK_STR(c->nics[0].mac, "");
	CHECK_STR(c->nics[1].mac, "52:54:00:12:34:56");
	CHECK_EQ(c->nics[1].transport, TRANSPORT_MMIO);
	CHECK(c->vsock.enabled);
	CHECK_EQ(c->vsock.cid, 3);
	CHECK_STR(c->vsock.uds, "/tmp/v.sock");
	CHECK(c->balloon.enabled);
	CHECK_EQ(c->balloon.size, 64ULL << 20);
	CHECK(c->balloon.deflate_on_oom);
	CHECK_EQ(c->balloon.stats_period, 2);
	CHECK(!c->balloon.no_reporting);
	/* --balloon with no value */
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--balloon", NULL), 0);
	CHECK(c->balloon.enabled);
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--balloon", "reporting=off", NULL), 0);
	CHECK(c->balloon.no_reporting);
	CHECK_EQ(c->balloon.size, 0);
	struct {
		const char *opt, *val, *msg;
	} bad[] = {
		{"--net", "mac=52:54:00:12:34:56", "tap=NAME is required"},
		{"--net", "tap=", "1 to 15"},
		{"--net", "tap=averyveryverylongname", "1 to 15"},
		{"--net", "tap=t,mac=1:2", "mac must"},
		{"--net", "tap=t,speed=10", "unknown option"},
		{"--vsock", "cid=2,uds=/x", "cid must"},
		{"--vsock", "cid=99999999999,uds=/x", "cid must"},
		{"--vsock", "cid=3", "required"},
		{"--vsock", "uds=/x", "required"},
		{"--balloon", "size=lots", "not a size"},
		{"--balloon", "stats_period=-1", "stats_period"},
		{"--balloon", "size=1G", "smaller than guest memory"},
		{"--balloon", "turbo", "unknown option"},
		{"--balloon", "reporting=maybe", "on or off"},
		{"--control", "/x", "replaced by the API"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		CHECK_EQ(parse(&c, err, "run", "--kernel", "k", bad[i].opt, bad[i].val, NULL),
			 (unsigned long long)-EINVAL);
		if (!strstr(err, bad[i].msg))
			printf("  case %zu: '%s' lacks '%s'\n", i, err, bad[i].msg);
		CHECK(strstr(err, bad[i].msg) != NULL);
	}
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--vsock", "cid=3,uds=/a", "--vsock",
		       "cid=4,uds=/b", NULL), (unsigned long long)-EINVAL);
}

TEST(firecracker_command_line)
{
	struct vm_config *c;
	char err[256];
	char *a1[] = {"firecracker", "--api-sock", "/tmp/fc.sock", "--id", "vm-1", "--level",
		      "Debug", "--show-level", "--show-log-origin", "--boot-timer",
		      "--http-api-max-payload-size", "102400", "--start-time-us", "12",
		      "--start-time-cpu-us", "3", "--no-seccomp", NULL};
	CHECK_EQ(parse_args(17, a1, &c, err), 0);
	CHECK_EQ(opts.cmd, CLI_FIRECRACKER);
	CHECK_STR(opts.api_sock, "/tmp/fc.sock");
	CHECK_STR(opts.id, "vm-1");
	CHECK_EQ(opts.level, LOG_DEBUG);
	CHECK(opts.show_level && opts.show_origin && opts.boot_timer && opts.no_seccomp);
	CHECK_EQ(opts.max_payload, 102400);
	CHECK_EQ(opts.start_time_us, 12);
	/* bare visor with Firecracker's flags; defaults */
	char *a2[] = {"/usr/bin/visor", "--config-file", "vm.json", "--no-api", NULL};
	CHECK_EQ(parse_args(4, a2, &c, err), 0);
	CHECK_EQ(opts.cmd, CLI_FIRECRACKER);
	CHECK_STR(opts.config_file, "vm.json");
	CHECK(opts.no_api);
	CHECK_STR(opts.api_sock, "/run/firecracker.socket");
	CHECK_STR(opts.id, "anonymous-instance");
	CHECK_EQ(opts.max_payload, CLI_DEFAULT_MAX_PAYLOAD);
	char *a3[] = {"firecracker", "--version", NULL};
	CHECK_EQ(parse_args(2, a3, &c, err), 0);
	CHECK_EQ(opts.cmd, CLI_VERSION);
	struct {
		char *a[5];
		int n;
		const char *msg;
	} bad[] = {
		{{"firecracker", "--frob", NULL}, 2, "unknown option '--frob'"},
		{{"firecracker", "--no-api", NULL}, 2, "--no-api needs --config-file"},
		{{"firecracker", "--api-sock", NULL}, 2, "needs a value"},
		{{"firecracker", "--level", "loud", NULL}, 3, "not one of"},
		{{"firecracker", "--id", "a/b", NULL}, 3, "--id"},
		{{"firecracker", "--http-api-max-payload-size", "12", NULL}, 3, "out of range"},
		{{"firecracker", "--show-level=1", NULL}, 2, "takes no value"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ(parse_args(bad[i].n, bad[i].a, &c, err), (unsigned long long)-EINVAL);
		if (!strstr(err, bad[i].msg))
			printf("  case %zu: '%s' lacks '%s'\n", i, err, bad[i].msg);
		CHECK(strstr(err, bad[i].msg) != NULL);
	}
}

TEST(control_verbs)
{
	struct vm_config *c;
	char err[256];
	char *a1[] = {"visor", "ls", "--json", NULL};
	CHECK_EQ(parse_args(3, a1, &c, err), 0);
	CHECK_EQ(opts.cmd, CLI_CONTROL);
	CHECK_STR(opts.ctl_verb, "ls");
	CHECK(opts.ctl_json);
	char *a2[] = {"visor", "balloon", "vm-1", "256M", NULL};
	CHECK_EQ(parse_args(4, a2, &c, err), 0);
	CHECK_STR(opts.ctl_target, "vm-1");
	CHECK_STR(opts.ctl_arg, "256M");
	char *a3[] = {"visor", "pause", NULL};
	CHECK_EQ(parse_args(2, a3, &c, err), (unsigned long long)-EINVAL);
	CHECK(strstr(err, "which VM") != NULL);
	char *a4[] = {"visor", "balloon", "vm", NULL};
	CHECK_EQ(parse_args(3, a4, &c, err), (unsigned long long)-EINVAL);
	char *a5[] = {"visor", "pause", "vm", "extra", NULL};
	CHECK_EQ(parse_args(4, a5, &c, err), (unsigned long long)-EINVAL);
}

TEST(snapshot_diff_merge_and_dirty_tracking)
{
	struct vm_config *c;
	char err[256];
	/* visor snapshot VM DIR [--diff] */
	CHECK_EQ(parse(&c, err, "snapshot", "vm1", "/s/dir", "--diff", NULL), 0);
	CHECK_EQ(opts.cmd, CLI_CONTROL);
	CHECK_STR(opts.ctl_verb, "snapshot");
	CHECK_STR(opts.ctl_target, "vm1");
	CHECK_STR(opts.ctl_arg, "/s/dir");
	CHECK(opts.ctl_diff);
	CHECK_EQ(parse(&c, err, "snapshot", "vm1", "/s/dir", NULL), 0);
	CHECK(!opts.ctl_diff);
	CHECK_EQ(parse(&c, err, "snapshot", "vm1", "--diff", NULL), -EINVAL);
	CHECK(strstr(err, "usage: visor snapshot VM DIR [--diff]") != NULL);
	CHECK_EQ(parse(&c, err, "pause", "vm1", "--diff", NULL), -EINVAL); /* snapshot's only */
	CHECK(strstr(err, "unknown option '--diff'") != NULL);
	/* visor snapshot merge BASE DIFF [--state FILE] [--json] */
	CHECK_EQ(parse(&c, err, "snapshot", "merge", "a", "b", NULL), 0);
	CHECK_EQ(opts.cmd, CLI_SNAPSHOT_MERGE);
	CHECK_STR(opts.merge_base, "a");
	CHECK_STR(opts.merge_diff, "b");
	CHECK(opts.merge_state == NULL && !opts.ctl_json);
	CHECK_EQ(parse(&c, err, "snapshot", "merge", "--state", "d.state", "a.mem", "b.mem", "--json",
		       NULL),
		 0);
	CHECK_STR(opts.merge_state, "d.state");
	CHECK_STR(opts.merge_base, "a.mem");
	CHECK_STR(opts.merge_diff, "b.mem");
	CHECK(opts.ctl_json);
	CHECK_EQ(parse(&c, err, "snapshot", "merge", "a", "b", "--state=s", NULL), 0);
	CHECK_STR(opts.merge_state, "s");
	CHECK_EQ(parse(&c, err, "snapshot", "merge", "a", NULL), -EINVAL);
	CHECK(strstr(err, "usage: visor snapshot merge BASE DIFF") != NULL);
	CHECK_EQ(parse(&c, err, "snapshot", "merge", NULL), -EINVAL);
	CHECK_EQ(parse(&c, err, "snapshot", "merge", "a", "b", "c", NULL), -EINVAL);
	CHECK(strstr(err, "too many arguments ('c')") != NULL);
	CHECK_EQ(parse(&c, err, "snapshot", "merge", "a", "b", "--state", NULL), -EINVAL);
	CHECK(strstr(err, "needs a value") != NULL);
	CHECK_EQ(parse(&c, err, "snapshot", "merge", "a", "b", "--state=", NULL), -EINVAL);
	CHECK_EQ(parse(&c, err, "snapshot", "merge", "a", "b", "--state", "x", "--state", "y", NULL),
		 -EINVAL);
	CHECK(strstr(err, "twice") != NULL);
	CHECK_EQ(parse(&c, err, "snapshot", "merge", "a", "b", "--diff", NULL), -EINVAL);
	CHECK(strstr(err, "unknown option '--diff'") != NULL);
	CHECK_EQ(parse(&c, err, "snapshot", "merge", "", "b", NULL), -EINVAL);
	/* visor run --track-dirty-pages: boot, or with --restore */
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--track-dirty-pages", NULL), 0);
	CHECK(c->track_dirty_pages && opts.track_dirty_pages);
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", NULL), 0);
	CHECK(!c->track_dirty_pages);
	CHECK_EQ(parse(&c, err, "restore", "/s/dir", "--track-dirty-pages", NULL), 0);
	CHECK(opts.track_dirty_pages);
	CHECK_STR(opts.restore_dir, "/s/dir");
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--track-dirty-pages=yes", NULL), -EINVAL);
	CHECK(strstr(err, "takes no value") != NULL);
}

/* --dirty-ring N: KVM's dirty ring size per vCPU (0: the bitmap), checked
 * by config_set_dirty_ring (the message every front end gives); a host
 * option, so also with --restore and --incoming. */
TEST(dirty_ring_option)
{
	struct vm_config *c;
	char err[256];
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", NULL), 0);
	CHECK_EQ(c->dirty_ring, CONFIG_DIRTY_RING_DEFAULT);
	CHECK(!c->dirty_ring_set);
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--dirty-ring", "256", NULL), 0);
	CHECK_EQ(c->dirty_ring, 256);
	CHECK(c->dirty_ring_set);
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--dirty-ring=0", NULL), 0);
	CHECK_EQ(c->dirty_ring, 0);
	CHECK(c->dirty_ring_set);
	CHECK_EQ(parse(&c, err, "restore", "/s/dir", "--dirty-ring", "1024", NULL), 0);
	CHECK_EQ(c->dirty_ring, 1024);
	CHECK_EQ(parse(&c, err, "run", "--incoming", "unix:/a", "--dirty-ring", "65536", NULL), 0);
	CHECK_EQ(c->dirty_ring, 65536);
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--dirty-ring", "1000", NULL), -EINVAL);
	CHECK_STR(err, "dirty ring: 1000 entries is not a power of two from 256 to 65536 (0: KVM's "
		       "dirty bitmap instead)");
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--dirty-ring", "128", NULL), -EINVAL);
	CHECK(strstr(err, "128 entries is not a power of two from 256") != NULL);
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--dirty-ring", "131072", NULL), -EINVAL);
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--dirty-ring", "4k", NULL), -EINVAL);
	CHECK_STR(err, "--dirty-ring: '4k' is not a number");
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--dirty-ring", NULL), -EINVAL);
	CHECK(strstr(err, "needs a value") != NULL);
}

/* The setters every front end uses: one message per mistake, nothing
 * changed on refusal, a second PUT of an id updates it. */
TEST(config_setters)
{
	static struct vm_config c, before;
	struct config_err e;
	config_init(&c);
	struct disk_config d = {.id = "rootfs", .path = "/img/a", .root = true};
	CHECK_EQ(config_set_disk(&c, &d, &e), 0);
	CHECK_EQ(c.ndisks, 1);
	d.readonly = true;
	CHECK_EQ(config_set_disk(&c, &d, &e), 0); /* update, not a second drive */
	CHECK_EQ(c.ndisks, 1);
	CHECK(c.disks[0].readonly);
	before = c;
	struct disk_config d2 = {.id = "data", .path = "/img/a"};
	CHECK_EQ(config_set_disk(&c, &d2, &e), (unsigned long long)-EINVAL); /* same file */
	CHECK(strstr(e.msg, "already used") != NULL);
	snprintf(d2.path, sizeof(d2.path), "/img/b");
	d2.root = true;
	CHECK_EQ(config_set_disk(&c, &d2, &e), (unsigned long long)-EINVAL); /* second root */
	CHECK(strstr(e.msg, "root") != NULL);
	snprintf(d2.id, sizeof(d2.id), "bad id");
	d2.root = false;
	CHECK_EQ(config_set_disk(&c, &d2, &e), (unsigned long long)-EINVAL);
	CHECK(strstr(e.msg, "invalid id") != NULL);
	CHECK(memcmp(&c, &before, sizeof(c)) == 0);
	snprintf(d2.id, sizeof(d2.id), "data");
	d2.rl.bandwidth.size = 100;
	CHECK_EQ(config_set_disk(&c, &d2, &e), (unsigned long long)-EINVAL); /* no refill time */
	CHECK(strstr(e.msg, "refill_time") != NULL);
	d2.rl.bandwidth.refill_time_ms = 1000;
	CHECK_EQ(config_set_disk(&c, &d2, &e), 0);
	for (int i = 2; i < CONFIG_MAX_DISKS; i++) {
		struct disk_config dx = {.path = "/img/x"};
		snprintf(dx.id, sizeof(dx.id), "d%d", i);
		dx.path[6] = (char)('0' + i);
		CHECK_EQ(config_set_disk(&c, &dx, &e), 0);
	}
	struct disk_config full = {.id = "onemore", .path = "/img/z"};
	CHECK_EQ(config_set_disk(&c, &full, &e), (unsigned long long)-ENOSPC);

	struct net_config n = {.id = "eth0", .tap = "tap0", .mac = "06:00:ac:10:00:02"};
	CHECK_EQ(config_set_net(&c, &n, &e), 0);
	struct net_config n2 = {.id = "eth1", .tap = "tap0"};
	CHECK_EQ(config_set_net(&c, &n2, &e), (unsigned long long)-EINVAL);
	CHECK(strstr(e.msg, "already used") != NULL);
	struct net_config n3 = {.id = "eth1", .tap = "tap1", .mac = "01:00:00:00:00:01"};
	CHECK_EQ(config_set_net(&c, &n3, &e), (unsigned long long)-EINVAL); /* multicast */
	CHECK(strstr(e.msg, "guest_mac") != NULL);
	snprintf(n3.mac, sizeof(n3.mac), "zz:00:00:00:00:01");
	CHECK_EQ(config_set_net(&c, &n3, &e), (unsigned long long)-EINVAL);
	n3.mac[0] = 0;
	n3.mtu = 20;
	CHECK_EQ(config_set_net(&c, &n3, &e), (unsigned long long)-EINVAL);
	CHECK(strstr(e.msg, "mtu") != NULL);

	CHECK_EQ(config_set_machine(&c, 0, 128, false, false, &e), (unsigned long long)-EINVAL);
	CHECK_EQ(config_set_machine(&c, 1000000, 128, false, false, &e), (unsigned long long)-EINVAL);
	CHECK_EQ(config_set_machine(&c, 2, 0, false, false, &e), (unsigned long long)-EINVAL);
	CHECK_EQ(config_set_machine(&c, 2, UINT64_MAX, false, false, &e), (unsigned long long)-EINVAL);
	CHECK_EQ(config_set_machine(&c, 3, 128, true, false, &e), (unsigned long long)-EINVAL);
	CHECK_EQ(config_set_machine(&c, 2, 128, true, false, &e), 0);
	CHECK_EQ(c.mem_size, 128ULL << 20);
	struct balloon_config b = {.size = 128ULL << 20};
	CHECK_EQ(config_set_balloon(&c, &b, &e), (unsigned long long)-EINVAL);
	b.size = 64ULL << 20;
	CHECK_EQ(config_set_balloon(&c, &b, &e), 0);
	/* memory may not shrink below the balloon afterwards */
	CHECK_EQ(config_set_machine(&c, 2, 64, false, false, &e), (unsigned long long)-EINVAL);
	struct vsock_config v = {.cid = 2, .uds = "/tmp/v"};
	CHECK_EQ(config_set_vsock(&c, &v, &e), (unsigned long long)-EINVAL);
	v.cid = 3;
	CHECK_EQ(config_set_vsock(&c, &v, &e), 0);

	CHECK_EQ(config_validate(&c, &e), (unsigned long long)-EINVAL); /* no kernel */
	CHECK(strstr(e.msg, "boot source") != NULL);
	CHECK_EQ(config_set_boot(&c, "", NULL, NULL, &e), (unsigned long long)-EINVAL);
	CHECK_EQ(config_set_boot(&c, "/k", NULL, NULL, &e), 0);
	CHECK_STR(c.cmdline, CONFIG_DEFAULT_CMDLINE);
	CHECK_EQ(config_validate(&c, &e), 0);
	for (uint32_t i = 0; i < c.ndisks; i++)
		c.disks[i].transport = TRANSPORT_MMIO;
	c.nics[0].transport = TRANSPORT_MMIO;
	CHECK_EQ(config_validate(&c, &e), (unsigned long long)-EINVAL); /* 9 on MMIO */
	CHECK(strstr(e.msg, "transport=mmio") != NULL);
}

/* The same mistake through `visor run` and through the setter the API
 * uses gives the same message. */
TEST(same_mistake_same_message)
{
	struct vm_config *c;
	char err[256];
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--net", "tap=t0,mac=01:02:03:04:05:06", NULL),
		 (unsigned long long)-EINVAL);
	static struct vm_config c2;
	struct config_err e;
	config_init(&c2);
	struct net_config n = {.id = "net0", .tap = "t0", .mac = "01:02:03:04:05:06"};
	CHECK_EQ(config_set_net(&c2, &n, &e), (unsigned long long)-EINVAL);
	CHECK_STR(err, e.msg);
}

/* ---- live migration: visor run --incoming, visor migrate ---------------------------------- */

static int parse_list(const char *const *a)
{
	char *argv[40] = {"visor"};
	int argc = 1;
	for (int k = 0; a[k] && argc < 39; k++)
		argv[argc++] = (char *)a[k];
	argv[argc] = NULL;
	struct vm_config *c;
	char err[256];
	return parse_args(argc, argv, &c, err);
}

static struct config_err last_err(const char *const *a)
{
	struct config_err e;
	char *argv[40] = {"visor"};
	int argc = 1;
	for (int k = 0; a[k] && argc < 39; k++)
		argv[argc++] = (char *)a[k];
	memset(&opts, 0, sizeof(opts));
	e.msg[0] = 0;
	if (!cli_parse(argc, argv, &opts, &e))
		snprintf(e.msg, sizeof(e.msg), "(accepted)");
	return e;
}

TEST(run_incoming)
{
	static const char *const a1[] = {"run", "--incoming", "unix:/run/in.sock", "--id", "dst", NULL};
	CHECK_EQ(parse_list(a1), 0);
	CHECK_EQ(opts.cmd, CLI_RUN);
	CHECK_STR(opts.incoming.url, "unix:/run/in.sock");
	CHECK_EQ(opts.incoming.timeout_s, MIG_DEFAULT_TIMEOUT_S);
	CHECK(!opts.incoming.tls.enabled);
	CHECK_STR(opts.id, "dst");
	CHECK_STR(opts.restore_dir, "");
	static const char *const a2[] = {"run", "--incoming=tcp:0.0.0.0:4444", "--incoming-timeout", "30",
					 "--tls-cert", "d.pem", "--tls-key=d.key", "--tls-ca", "ca.pem",
					 "--api-sock", "/tmp/d.sock", "--log-level", "debug", NULL};
	CHECK_EQ(parse_list(a2), 0);
	CHECK_STR(opts.incoming.url, "tcp:0.0.0.0:4444");
	CHECK_EQ(opts.incoming.timeout_s, 30);
	CHECK(opts.incoming.tls.enabled);
	CHECK_STR(opts.incoming.tls.cert, "d.pem");
	CHECK_STR(opts.incoming.tls.key, "d.key");
	CHECK_STR(opts.incoming.tls.ca, "ca.pem");
	CHECK_STR(opts.api_sock, "/tmp/d.sock");
	/* host options only, as for --restore */
	static const char *const a3[] = {"run", "--incoming", "unix:s", "--kvm", "/dev/kvm2",
					 "--allow-software-kvm", "--no-api", NULL};
	CHECK_EQ(parse_list(a3), 0);
	CHECK(opts.no_api);
	/* a plain run has no incoming url */
	static const char *const a4[] = {"run", "--kernel", "k", NULL};
	CHECK_EQ(parse_list(a4), 0);
	CHECK_STR(opts.incoming.url, "");

	static const struct {
		const char *a[12];
		const char *msg;
	} bad[] = {
		{{"run", "--incoming", NULL}, "--incoming needs a value"},
		{{"run", "--incoming", "", NULL}, "--incoming: expected `unix:PATH` or `tcp:HOST:PORT`, found ``"},
		{{"run", "--incoming", "/run/in.sock", NULL}, "found `/run/in.sock`"},
		{{"run", "--incoming", "tcp:", NULL}, "found `tcp:`"},
		{{"run", "--incoming", "unix:a", "--incoming", "unix:b", NULL}, "--incoming given twice"},
		{{"run", "--incoming", "unix:a", "--kernel", "k", NULL}, "--incoming: the source defines the machine"},
		{{"run", "--incoming", "unix:a", "--memory", "1G", NULL}, "the source defines the machine"},
		{{"run", "--incoming", "unix:a", "--cpus", "2", NULL}, "the source defines the machine"},
		{{"run", "--incoming", "unix:a", "--disk", "d.img", NULL}, "the source defines the machine"},
		{{"run", "--incoming", "unix:a", "--rng", NULL}, "the source defines the machine"},
		{{"run", "--incoming", "unix:a", "--restore", "/snap", NULL},
		 "--incoming and --restore: the VM comes either from a migration or from a snapshot"},
		{{"run", "--restore", "/snap", "--incoming", "unix:a", NULL}, "--incoming and --restore"},
		{{"run", "--incoming", "unix:a", "--paused", NULL}, "--paused: only with a snapshot, not with --incoming"},
		{{"run", "--incoming", "unix:a", "--net-override", "eth0=tap1", NULL},
		 "--net-override: only with a snapshot, not with --incoming"},
		{{"run", "--incoming", "unix:a", "--clones", "2", NULL}, "not with --incoming"},
		{{"run", "--incoming", "unix:a", "--ready-fd", "3", NULL}, "--ready-fd: not with --incoming"},
		{{"run", "--incoming", "unix:a", "--track-dirty-pages", NULL},
		 "--track-dirty-pages: not with --incoming"},
		{{"run", "--incoming", "unix:a", "--config-file", "vm.json", NULL}, "unknown option '--config-file'"},
		{{"run", "--incoming", "unix:a", "--incoming-timeout", "0", NULL},
		 "--incoming-timeout: '0' is not a number from 1 to 86400"},
		{{"run", "--incoming", "unix:a", "--incoming-timeout", "86401", NULL}, "from 1 to 86400"},
		{{"run", "--incoming", "unix:a", "--tls-cert", "c", NULL},
		 "TLS needs --tls-cert, --tls-key and --tls-ca together (--tls-key is missing)"},
		{{"run", "--incoming", "unix:a", "--tls-cert", "c", "--tls-key", "k", NULL}, "(--tls-ca is missing)"},
		{{"run", "--incoming", "unix:a", "--tls-key", "k", "--tls-ca", "a", NULL}, "(--tls-cert is missing)"},
		{{"run", "--incoming", "unix:a", "--tls-cert", "", NULL}, "--tls-cert: must be 1 to 4095 bytes"},
		{{"run", "--incoming", "unix:a", "--tls-cert", "c", "--tls-cert", "d", NULL}, "--tls-cert given twice"},
		{{"run", "--incoming", "unix:a", "--tls-server-name", "n", NULL},
		 "--tls-server-name: only for `visor migrate`"},
		{{"run", "--kernel", "k", "--tls-cert", "c", NULL}, "--tls-cert: only with --incoming URL"},
		{{"run", "--kernel", "k", "--incoming-timeout", "5", NULL}, "--incoming-timeout: only with --incoming URL"},
		{{"run", "--restore", "/snap", "--tls-ca", "a", NULL}, "--tls-ca: only with --incoming URL"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config_err e = last_err(bad[i].a);
		if (!strstr(e.msg, bad[i].msg))
			printf("  case %zu: '%s' lacks '%s'\n", i, e.msg, bad[i].msg);
		CHECK(strstr(e.msg, bad[i].msg) != NULL);
		CHECK(strchr(e.msg, '\n') == NULL);
	}
}

TEST(migrate_command)
{
	static const char *const a1[] = {"migrate", "web", "--to", "unix:/run/dst.sock", NULL};
	CHECK_EQ(parse_list(a1), 0);
	CHECK_EQ(opts.cmd, CLI_CONTROL);
	CHECK_STR(opts.ctl_verb, "migrate");
	CHECK_STR(opts.ctl_target, "web");
	CHECK_STR(opts.mig.url, "unix:/run/dst.sock");
	CHECK_EQ(opts.mig.downtime_limit_ms, MIG_DEFAULT_DOWNTIME_MS);
	CHECK_EQ(opts.mig.max_bandwidth_mib, 0);
	CHECK_EQ(opts.mig.timeout_s, MIG_DEFAULT_TIMEOUT_S);
	CHECK_EQ(opts.mig.mode, MIGP_PRECOPY);
	CHECK(!opts.mig.tls.enabled);
	CHECK(!opts.mig_cancel && !opts.mig_status && !opts.mig_no_wait);
	/* every option, in any order, the VM anywhere */
	static const char *const a2[] = {"migrate", "--to=tcp:10.0.0.2:4444", "--downtime", "20",
					 "--bandwidth=500", "/run/visor/web.sock", "--timeout", "600",
					 "--mode", "auto", "--tls-cert", "s.pem", "--tls-key", "s.key",
					 "--tls-ca", "ca.pem", "--tls-server-name", "dst.example",
					 "--no-wait", NULL};
	CHECK_EQ(parse_list(a2), 0);
	CHECK_STR(opts.ctl_target, "/run/visor/web.sock");
	CHECK_STR(opts.mig.url, "tcp:10.0.0.2:4444");
	CHECK_EQ(opts.mig.downtime_limit_ms, 20);
	CHECK_EQ(opts.mig.max_bandwidth_mib, 500);
	CHECK_EQ(opts.mig.timeout_s, 600);
	CHECK_EQ(opts.mig.mode, MIGP_AUTO);
	CHECK(opts.mig.tls.enabled);
	CHECK_STR(opts.mig.tls.cert, "s.pem");
	CHECK_STR(opts.mig.tls.key, "s.key");
	CHECK_STR(opts.mig.tls.ca, "ca.pem");
	CHECK_STR(opts.mig.tls.server_name, "dst.example");
	CHECK(opts.mig_no_wait);
	/* --postcopy, and --mode postcopy with it */
	static const char *const a3[] = {"migrate", "web", "--to", "unix:d", "--postcopy", NULL};
	CHECK_EQ(parse_list(a3), 0);
	CHECK_EQ(opts.mig.mode, MIGP_POSTCOPY);
	static const char *const a4[] = {"migrate", "web", "--postcopy", "--mode", "postcopy", "--to",
					 "unix:d", NULL};
	CHECK_EQ(parse_list(a4), 0);
	CHECK_EQ(opts.mig.mode, MIGP_POSTCOPY);
	static const char *const a5[] = {"migrate", "web", "--to", "unix:d", "--mode", "local", NULL};
	CHECK_EQ(parse_list(a5), 0);
	CHECK_EQ(opts.mig.mode, MIGP_LOCAL);
	/* the ends of the ranges */
	static const char *const a6[] = {"migrate", "web", "--to", "unix:d", "--downtime", "60000",
					 "--timeout", "1", "--bandwidth", "1048576", NULL};
	CHECK_EQ(parse_list(a6), 0);
	CHECK_EQ(opts.mig.downtime_limit_ms, 60000);
	CHECK_EQ(opts.mig.timeout_s, 1);
	CHECK_EQ(opts.mig.max_bandwidth_mib, 1048576);
	/* --cancel and --status */
	static const char *const a7[] = {"migrate", "web", "--cancel", NULL};
	CHECK_EQ(parse_list(a7), 0);
	CHECK(opts.mig_cancel);
	CHECK_STR(opts.mig.url, "");
	static const char *const a8[] = {"migrate", "--status", "--json", "web", NULL};
	CHECK_EQ(parse_list(a8), 0);
	CHECK(opts.mig_status);
	CHECK(opts.ctl_json);
	/* help */
	static const char *const a9[] = {"migrate", "--help", NULL};
	CHECK_EQ(parse_list(a9), 0);
	CHECK_EQ(opts.cmd, CLI_HELP);
	CHECK_STR(opts.help_topic, "migrate");
	static const char *const a10[] = {"--help", "migrate", NULL};
	CHECK_EQ(parse_list(a10), 0);
	CHECK_EQ(opts.cmd, CLI_HELP);
	CHECK_STR(opts.help_topic, "migrate");

	static const struct {
		const char *a[12];
		const char *msg;
	} bad[] = {
		{{"migrate", NULL}, "migrate: which VM?"},
		{{"migrate", "--to", "unix:d", NULL}, "migrate: which VM?"},
		{{"migrate", "web", NULL}, "migrate: usage: visor migrate VM --to URL"},
		{{"migrate", "web", "--downtime", "20", NULL}, "migrate: usage"},
		{{"migrate", "web", "other", "--to", "unix:d", NULL}, "one VM at a time ('web' and 'other')"},
		{{"migrate", "", "--to", "unix:d", NULL}, "empty VM name"},
		{{"migrate", "web", "--to", NULL}, "--to needs a value"},
		{{"migrate", "web", "--to", "dst:4444", NULL},
		 "--to: expected `unix:PATH` or `tcp:HOST:PORT`, found `dst:4444`"},
		{{"migrate", "web", "--to", "unix:a", "--to", "unix:b", NULL}, "--to given twice"},
		{{"migrate", "web", "--to", "unix:d", "--downtime", "0", NULL},
		 "--downtime: '0' is not a number from 1 to 60000"},
		{{"migrate", "web", "--to", "unix:d", "--downtime", "50ms", NULL}, "--downtime: '50ms' is not a number"},
		{{"migrate", "web", "--to", "unix:d", "--timeout", "86401", NULL}, "--timeout: '86401' is not a number from 1 to 86400"},
		{{"migrate", "web", "--to", "unix:d", "--bandwidth", "-1", NULL}, "--bandwidth: '-1' is not a number from 0 to 1048576"},
		{{"migrate", "web", "--to", "unix:d", "--mode", "fast", NULL},
		 "--mode: 'fast' is not one of precopy, postcopy, auto, local"},
		{{"migrate", "web", "--to", "unix:d", "--mode", "auto", "--mode", "local", NULL}, "--mode given twice"},
		{{"migrate", "web", "--to", "unix:d", "--mode", "precopy", "--postcopy", NULL},
		 "--postcopy and --mode precopy contradict each other"},
		{{"migrate", "web", "--to", "unix:d", "--verify", "--postcopy", NULL},
		 "--verify compares memory after pre-copy's last pass: not with --mode postcopy"},
		{{"migrate", "web", "--to", "unix:d", "--verify=yes", NULL}, "option --verify takes no value"},
		{{"migrate", "web", "--to", "tcp:1.2.3.4:5", "--mode", "local", NULL},
		 "--mode local hands guest memory over a Unix socket: it needs --to unix:PATH"},
		{{"migrate", "web", "--to", "unix:d", "--tls-cert", "c", "--tls-ca", "a", NULL},
		 "TLS needs --tls-cert, --tls-key and --tls-ca together (--tls-key is missing)"},
		{{"migrate", "web", "--to", "unix:d", "--tls-server-name", "n", NULL}, "(--tls-cert is missing)"},
		{{"migrate", "web", "--cancel", "--to", "unix:d", NULL}, "--cancel takes no other options ('--to')"},
		{{"migrate", "web", "--cancel", "--postcopy", NULL}, "--cancel takes no other options ('--postcopy')"},
		{{"migrate", "web", "--status", "--downtime=5", NULL}, "--status takes no other options ('--downtime=5')"},
		{{"migrate", "web", "--cancel", "--status", NULL}, "--cancel or --status, not both"},
		{{"migrate", "web", "--cancel", "--json", NULL}, "--json is for --status"},
		{{"migrate", "web", "--to", "unix:d", "--json", NULL}, "--json is for --status"},
		{{"migrate", "web", "--to", "unix:d", "--postcopy=yes", NULL}, "option --postcopy takes no value"},
		{{"migrate", "web", "--to", "unix:d", "--incoming", "unix:x", NULL},
		 "migrate: unknown option '--incoming'"},
		{{"migrate", "web", "--to", "unix:d", "-x", NULL}, "migrate: unknown option '-x'"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config_err e = last_err(bad[i].a);
		if (!strstr(e.msg, bad[i].msg))
			printf("  case %zu: '%s' lacks '%s'\n", i, e.msg, bad[i].msg);
		CHECK(strstr(e.msg, bad[i].msg) != NULL);
		CHECK(strchr(e.msg, '\n') == NULL);
	}
}

TEST_MAIN()
