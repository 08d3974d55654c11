/* SPDX-License-Identifier: MIT */
/* Command-line parsing and size suffixes. */
#include "../../src/config.h"

#include <errno.h>

#include <stdarg.h>

#include "test.h"

static int parse(struct vm_config *c, char *err, ...)
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
	return config_parse_args(argc, argv, c, err, 256);
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
	struct vm_config c;
	char err[256];
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", NULL), 0);
	CHECK_EQ(c.action, ACTION_RUN);
	CHECK_STR(c.kernel, "k");
	CHECK_EQ(c.cpus, 1);
	CHECK_EQ(c.mem_size, CONFIG_DEFAULT_MEM);
	CHECK_STR(c.cmdline, CONFIG_DEFAULT_CMDLINE);
	CHECK(c.initrd == NULL);
	CHECK_EQ(parse(&c, err, "run", "--kernel=k", "--initrd", "i", "--cmdline", "a b",
		       "--cpus", "4", "--memory", "1G", "--allow-software-kvm", "--log-level",
		       "debug", NULL), 0);
	CHECK_STR(c.initrd, "i");
	CHECK_STR(c.cmdline, "a b");
	CHECK_EQ(c.cpus, 4);
	CHECK_EQ(c.mem_size, 1ULL << 30);
	CHECK(c.allow_software_kvm);
	CHECK_EQ(c.log_level, LOG_DEBUG);
}

TEST(help_and_version)
{
	struct vm_config c;
	char err[256];
	CHECK_EQ(parse(&c, err, "--help", NULL), 0);
	CHECK_EQ(c.action, ACTION_HELP);
	CHECK_EQ(parse(&c, err, "--version", NULL), 0);
	CHECK_EQ(c.action, ACTION_VERSION);
	CHECK_EQ(parse(&c, err, "run", "--help", NULL), 0);
	CHECK_EQ(c.action, ACTION_HELP);
}

TEST(bad_input_is_a_clear_error)
{
	struct vm_config c;
	char err[256];
	struct {
		const char *a[6];
		const char *msg;
	} cases[] = {
		{{NULL}, "no command"},
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
		{{"run", "--kernel", "k", "--memory", "4194305B", NULL}, "multiple of 4 KiB"},
		{{"run", "--kernel", "k", "--log-level", "loud", NULL}, "not one of"},
		{{"run", "--kernel", "k", "--allow-software-kvm=1", NULL}, "takes no value"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[8] = {"visor"};
		int argc = 1;
		for (int k = 0; cases[i].a[k]; k++)
			argv[argc++] = (char *)cases[i].a[k];
		err[0] = 0;
		int r = config_parse_args(argc, argv, &c, err, sizeof(err));
		CHECK_EQ(r, (unsigned long long)-EINVAL);
		if (!strstr(err, cases[i].msg))
			printf("  case %zu: '%s' lacks '%s'\n", i, err, cases[i].msg);
		CHECK(strstr(err, cases[i].msg) != NULL);
		CHECK(strchr(err, '\n') == NULL);
	}
}

TEST(disks_and_rng)
{
	struct vm_config c;
	char err[256];
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--disk", "a.img", "--disk",
		       "b.img,readonly,id=serial-b,transport=mmio", "--rng", NULL), 0);
	CHECK_EQ(c.ndisks, 2);
	CHECK_STR(c.disks[0].path, "a.img");
	CHECK_STR(c.disks[0].id, "disk0");
	CHECK(!c.disks[0].readonly);
	CHECK_EQ(c.disks[0].transport, TRANSPORT_PCI);
	CHECK_STR(c.disks[1].path, "b.img");
	CHECK_STR(c.disks[1].id, "serial-b");
	CHECK(c.disks[1].readonly);
	CHECK_EQ(c.disks[1].transport, TRANSPORT_MMIO);
	CHECK(c.rng);
	CHECK_EQ(c.rng_transport, TRANSPORT_PCI);
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--rng", "transport=mmio", NULL), 0);
	CHECK_EQ(c.rng_transport, TRANSPORT_MMIO);
	static const char *const bad[] = {",readonly", "a,bogus", "a,id=", "a,id=123456789012345678901",
					  "a,transport=isa", NULL};
	for (int i = 0; bad[i]; i++) {
		err[0] = 0;
		CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--disk", bad[i], NULL), (unsigned long long)-EINVAL);
		CHECK(strstr(err, "--disk") != NULL);
	}
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--rng=transport=x", NULL), (unsigned long long)-EINVAL);
	char *argv[32] = {"visor", "run", "--kernel", "k"};
	int argc = 4;
	for (int i = 0; i < 9; i++) {
		argv[argc++] = "--disk";
		argv[argc++] = "x.img";
	}
	CHECK_EQ(config_parse_args(argc, argv, &c, err, sizeof(err)), (unsigned long long)-EINVAL);
	CHECK(strstr(err, "at most") != NULL);
}

TEST(net_vsock_balloon_control)
{
	struct vm_config c;
	char err[256];
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--net", "tap=tap0", "--net",
		       "tap=tap1,mac=52:54:00:12:34:56,transport=mmio", "--vsock", "cid=3,uds=/tmp/v.sock",
		       "--balloon", "size=64M,deflate_on_oom,stats_period=2", "--control", "/tmp/c.sock",
		       NULL), 0);
	CHECK_EQ(c.nnics, 2);
	CHECK_STR(c.nics[0].tap, "tap0");
	CHECK_STR(c.nics[0].mac, "");
	CHECK_STR(c.nics[1].mac, "52:54:00:12:34:56");
	CHECK_EQ(c.nics[1].transport, TRANSPORT_MMIO);
	CHECK(c.vsock.enabled);
	CHECK_EQ(c.vsock.cid, 3);
	CHECK_STR(c.vsock.uds, "/tmp/v.sock");
	CHECK(c.balloon.enabled);
	CHECK_EQ(c.balloon.size, 64ULL << 20);
	CHECK(c.balloon.deflate_on_oom);
	CHECK_EQ(c.balloon.stats_period, 2);
	CHECK(!c.balloon.no_reporting);
	CHECK_STR(c.control, "/tmp/c.sock");
	/* --balloon with no value */
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--balloon", NULL), 0);
	CHECK(c.balloon.enabled);
	CHECK_EQ(parse(&c, err, "run", "--kernel", "k", "--balloon", "reporting=off", NULL), 0);
	CHECK(c.balloon.no_reporting);
	CHECK_EQ(c.balloon.size, 0);
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
		{"--balloon", "size=1G", "smaller than --memory"},
		{"--balloon", "turbo", "unknown option"},
		{"--balloon", "reporting=maybe", "on or off"},
		{"--control", "", "1 to 107"},
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

TEST_MAIN()
