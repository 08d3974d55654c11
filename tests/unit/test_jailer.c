/* SPDX-License-Identifier: MIT */
/* `visor jailer` (jailer.c): the command line, its refusals, the paths it
 * computes, the VMM's arguments, and the read-only checks of the host. */
#include "../../src/jailer.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static struct jail_opts o;
static char err[1024];

/* jailer_parse of "jailer ARGS..." (NULL-terminated) */
static int parse(const char *first, ...)
{
	static char *argv[64]; /* o.extra points into it */
	int argc = 0;
	argv[argc++] = "jailer";
	va_list ap;
	va_start(ap, first);
	for (const char *a = first; a; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	return jailer_parse(argc, argv, &o, err, sizeof(err));
}

/* the four required options, then ARGS */
#define REQ "--id", "vm-1", "--exec-file", "/usr/bin/visor", "--uid", "123", "--gid", "100"

/* parse fails with -EINVAL and a message containing @want */
#define REFUSED(want, ...)                                                                  \
	do {                                                                                \
		int r_ = parse(__VA_ARGS__, NULL);                                          \
		CHECK_EQ(r_, (unsigned long long)-EINVAL);                                  \
		if (!strstr(err, want)) {                                                   \
			printf("  %s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, err, \
			       want);                                                       \
			test_failed_now_ = 1;                                               \
		}                                                                           \
	} while (0)

TEST(defaults_and_computed_paths)
{
	CHECK_EQ(parse(REQ, NULL), 0);
	CHECK_STR(err, "");
	CHECK_STR(o.id, "vm-1");
	CHECK_STR(o.exec_file, "/usr/bin/visor");
	CHECK_STR(o.exec_name, "visor");
	CHECK_EQ(o.uid, 123);
	CHECK_EQ(o.gid, 100);
	CHECK_STR(o.base, "/srv/jailer");
	CHECK_STR(o.jail_dir, "/srv/jailer/visor/vm-1");
	CHECK_STR(o.root_dir, "/srv/jailer/visor/vm-1/root");
	CHECK_EQ(o.cgroup_version, 1);
	CHECK_EQ(o.ncgroups, 0);
	CHECK(o.parent_cgroup == NULL);
	CHECK_STR(o.cgroup_rel, "visor/vm-1");
	CHECK_STR(o.controllers, "");
	CHECK_EQ(o.no_file, 2048);
	CHECK(!o.has_fsize);
	CHECK(!o.daemonize);
	CHECK(!o.new_pid_ns);
	CHECK(o.netns == NULL);
	CHECK_EQ(o.nextra, 0);
	CHECK(!o.help && !o.version);
	/* a relative exec file: its name is the last component */
	CHECK_EQ(parse("--id", "a", "--exec-file", "firecracker", "--uid", "0", "--gid", "0", NULL), 0);
	CHECK_STR(o.exec_name, "firecracker");
	CHECK_STR(o.root_dir, "/srv/jailer/firecracker/a/root");
	CHECK_EQ(o.uid, 0);
	/* the largest ids */
	CHECK_EQ(parse("--id", "a", "--exec-file", "./build/visor", "--uid", "4294967294", "--gid",
		       "007", NULL), 0);
	CHECK_EQ(o.uid, 4294967294u);
	CHECK_EQ(o.gid, 7);
	CHECK_STR(o.exec_name, "visor");
}

TEST(every_option)
{
	CHECK_EQ(parse("--id=abc-DEF-123", "--exec-file=/opt/fc/visor", "--uid=1000", "--gid", "1001",
		       "--chroot-base-dir", "/var//lib/./jails/", "--netns", "/var/run/netns/ns1",
		       "--daemonize", "--new-pid-ns", "--cgroup-version", "2", "--cgroup",
		       "cpu.max=50000 100000", "--cgroup=memory.max=1G", "--cgroup", "cpu.weight=50",
		       "--cgroup", "io.max=8:0 rbps=1000", "--parent-cgroup", "all_uvms/external",
		       "--resource-limit", "fsize=1048576", "--resource-limit=no-file=512", "--",
		       "--api-sock", "/api.sock", "--level", "Debug", NULL),
		 0);
	CHECK_STR(o.id, "abc-DEF-123");
	CHECK_STR(o.exec_name, "visor");
	CHECK_EQ(o.uid, 1000);
	CHECK_EQ(o.gid, 1001);
	CHECK_STR(o.base, "/var/lib/jails");
	CHECK_STR(o.root_dir, "/var/lib/jails/visor/abc-DEF-123/root");
	CHECK_STR(o.netns, "/var/run/netns/ns1");
	CHECK(o.daemonize);
	CHECK(o.new_pid_ns);
	CHECK_EQ(o.cgroup_version, 2);
	CHECK_EQ(o.ncgroups, 4);
	CHECK_STR(o.cgroups[0].controller, "cpu");
	CHECK_STR(o.cgroups[0].value, "50000 100000");
	CHECK(!strncmp(o.cgroups[0].key, "cpu.max=", 8));
	CHECK_STR(o.cgroups[1].controller, "memory");
	CHECK_STR(o.cgroups[1].value, "1G");
	CHECK_STR(o.cgroups[3].controller, "io");
	CHECK_STR(o.cgroups[3].value, "8:0 rbps=1000"); /* split at the first '=' */
	CHECK_STR(o.controllers, "cpu memory io"); /* each once, in order */
	CHECK_STR(o.parent_cgroup, "all_uvms/external");
	CHECK_STR(o.cgroup_rel, "all_uvms/external/abc-DEF-123");
	CHECK(o.has_fsize);
	CHECK_EQ(o.fsize, 1048576);
	CHECK_EQ(o.no_file, 512);
	CHECK_EQ(o.nextra, 4);
	CHECK_STR(o.extra[0], "--api-sock");
	CHECK_STR(o.extra[3], "Debug");
	/* the base "/" */
	CHECK_EQ(parse(REQ, "--chroot-base-dir", "/", NULL), 0);
	CHECK_STR(o.root_dir, "/visor/vm-1/root");
	/* "--" with nothing after it; repeated resource limits: the last wins */
	CHECK_EQ(parse(REQ, "--resource-limit", "no-file=10", "--resource-limit", "no-file=20", "--",
		       NULL), 0);
	CHECK_EQ(o.no_file, 20);
	CHECK_EQ(o.nextra, 0);
	/* cgroup v2 with only a parent cgroup; v1 with no cgroup at all */
	CHECK_EQ(parse(REQ, "--cgroup-version", "2", "--parent-cgroup", "fc", NULL), 0);
	CHECK_STR(o.cgroup_rel, "fc/vm-1");
	CHECK_EQ(parse(REQ, "--cgroup-version", "1", NULL), 0);
	CHECK_EQ(o.cgroup_version, 1);
}

TEST(help_and_version)
{
	CHECK_EQ(parse("--help", NULL), 0);
	CHECK(o.help);
	CHECK_EQ(parse("--id", "x", "-h", NULL), 0);
	CHECK(o.help);
	CHECK_EQ(parse("--version", NULL), 0);
	CHECK(o.version);
	CHECK(strstr(jailer_usage, "--exec-file"));
	CHECK(strstr(jailer_usage, "--new-pid-ns"));
}

TEST(bad_ids_are_refused)
{
	const char *bad[] = {"", "a_b", "a b", "a/b", "../x", "..", "a.b", "\xc3\xa4", "x\n",
			     "0123456789012345678901234567890123456789012345678901234567890123X"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		REFUSED("is not a valid id", "--id", bad[i], "--exec-file", "/v", "--uid", "1",
			"--gid", "1");
	/* 64 characters is the most */
	CHECK_EQ(parse("--id", "0123456789012345678901234567890123456789012345678901234567890123",
		       "--exec-file", "/v", "--uid", "1", "--gid", "1", NULL), 0);
}

TEST(dotdot_and_bad_paths_are_refused)
{
	REFUSED("--exec-file: '../visor' has a '..' component", "--id", "a", "--exec-file",
		"../visor", "--uid", "1", "--gid", "1");
	REFUSED("'..' component", "--id", "a", "--exec-file", "/usr/../bin/visor", "--uid", "1",
		"--gid", "1");
	REFUSED("'..' component", "--id", "a", "--exec-file", "/usr/bin/..", "--uid", "1",
		"--gid", "1");
	REFUSED("--chroot-base-dir: '/srv/../etc' has a '..' component", REQ,
		"--chroot-base-dir", "/srv/../etc");
	REFUSED("'..' component", REQ, "--chroot-base-dir", "/srv/jailer/..");
	REFUSED("is not an absolute path", REQ, "--chroot-base-dir", "srv/jailer");
	REFUSED("is not an absolute path", REQ, "--chroot-base-dir", "");
	REFUSED("--netns: '/var/run/netns/../../x' has a '..' component", REQ, "--netns",
		"/var/run/netns/../../x");
	REFUSED("--netns: the path must be", REQ, "--netns", "");
	REFUSED("names a directory", "--id", "a", "--exec-file", "/usr/bin/", "--uid", "1",
		"--gid", "1");
	REFUSED("no usable file name", "--id", "a", "--exec-file", "/usr/bin/.", "--uid", "1",
		"--gid", "1");
	REFUSED("the path must be", "--id", "a", "--exec-file", "", "--uid", "1", "--gid", "1");
	REFUSED("taken by the jail's own /dev", "--id", "a", "--exec-file", "/x/dev", "--uid", "1",
		"--gid", "1");
	REFUSED("taken by the jail's own /run", "--id", "a", "--exec-file", "run", "--uid", "1",
		"--gid", "1");
	/* ".." inside a name is not a component */
	CHECK_EQ(parse("--id", "a", "--exec-file", "/opt/v..1/visor..x", "--uid", "1", "--gid", "1",
		       NULL), 0);
	CHECK_STR(o.exec_name, "visor..x");
}

TEST(uid_gid_must_be_numbers)
{
	const char *bad[] = {"", "abc", "-1", "+1", " 1", "1 ", "1.5", "0x10", "4294967295",
			     "99999999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		REFUSED("--uid: ", "--id", "a", "--exec-file", "/v", "--uid", bad[i], "--gid", "1");
		REFUSED("is not a numeric user id", "--id", "a", "--exec-file", "/v", "--uid", bad[i],
			"--gid", "1");
		REFUSED("is not a numeric group id", "--id", "a", "--exec-file", "/v", "--uid", "1",
			"--gid", bad[i]);
	}
	REFUSED("--uid: 'root' is not a numeric user id", "--id", "a", "--exec-file", "/v", "--uid",
		"root", "--gid", "1");
}

TEST(unknown_missing_and_repeated_options_are_refused)
{
	REFUSED("unknown option '--frob'", REQ, "--frob");
	REFUSED("unknown option '--node'", REQ, "--node", "0");
	REFUSED("unknown option '--seccomp-level'", REQ, "--seccomp-level=2");
	REFUSED("unknown option '--idx'", "--idx", "a", "--exec-file", "/v", "--uid", "1", "--gid",
		"1");
	REFUSED("unexpected argument '-x'", REQ, "-x");
	REFUSED("unexpected argument 'vm.json' (the VMM's own arguments go after '--')", REQ,
		"vm.json");
	REFUSED("--id is required", "--exec-file", "/v", "--uid", "1", "--gid", "1");
	REFUSED("--exec-file is required", "--id", "a", "--uid", "1", "--gid", "1");
	REFUSED("--uid is required", "--id", "a", "--exec-file", "/v", "--gid", "1");
	REFUSED("--gid is required", "--id", "a", "--exec-file", "/v", "--uid", "1");
	REFUSED("--id is required", "--daemonize");
	/* the required options only count before "--" */
	REFUSED("--gid is required", "--id", "a", "--exec-file", "/v", "--uid", "1", "--", "--gid",
		"1");
	REFUSED("option --gid needs a value", "--id", "a", "--exec-file", "/v", "--uid", "1",
		"--gid");
	REFUSED("option --daemonize takes no value", REQ, "--daemonize=yes");
	REFUSED("option --new-pid-ns takes no value", REQ, "--new-pid-ns=1");
	REFUSED("option --id given twice", REQ, "--id", "b");
	REFUSED("option --chroot-base-dir given twice", REQ, "--chroot-base-dir", "/a",
		"--chroot-base-dir", "/b");
	REFUSED("option --daemonize given twice", REQ, "--daemonize", "--daemonize");
	REFUSED("option --netns given twice", REQ, "--netns", "/a", "--netns", "/b");
}

TEST(cgroup_forms_are_checked)
{
#define V2 "--cgroup-version", "2"
	REFUSED("--cgroup: expected FILE=VALUE", REQ, V2, "--cgroup", "cpu.max");
	REFUSED("the FILE is empty", REQ, V2, "--cgroup", "=1");
	REFUSED("the VALUE is empty", REQ, V2, "--cgroup", "cpu.max=");
	REFUSED("(no '/' allowed)", REQ, V2, "--cgroup", "../cpu.max=1");
	REFUSED("(no '/' allowed)", REQ, V2, "--cgroup", "cpu/max=1");
	REFUSED("(no '/' allowed)", REQ, V2, "--cgroup", "a/../b=1");
	REFUSED("(no '..' allowed)", REQ, V2, "--cgroup", "cpu..max=1");
	REFUSED("(no '..' allowed)", REQ, V2, "--cgroup", "..=1");
	REFUSED("is not a controller's file", REQ, V2, "--cgroup", "cpumax=1");
	REFUSED("is not a controller's file", REQ, V2, "--cgroup", ".max=1");
	REFUSED("is not a controller's file", REQ, V2, "--cgroup", "cpu.=1");
	REFUSED("letters, digits", REQ, V2, "--cgroup", "cpu max=1");
	REFUSED("one of the cgroup's own files", REQ, V2, "--cgroup", "cgroup.procs=1");
	REFUSED("one of the cgroup's own files", REQ, V2, "--cgroup", "cgroup.subtree_control=+cpu");
	REFUSED("control characters", REQ, V2, "--cgroup", "memory.max=1\n2");
	/* v1 is refused when it would be used; other versions always */
	REFUSED("cgroup v1 is not supported: --cgroup needs --cgroup-version 2", REQ, "--cgroup",
		"cpu.max=1");
	REFUSED("cgroup v1 is not supported: --cgroup needs --cgroup-version 2", REQ,
		"--cgroup-version", "1", "--cgroup", "cpu.max=1");
	REFUSED("cgroup v1 is not supported: --parent-cgroup needs", REQ, "--parent-cgroup", "fc");
	REFUSED("--cgroup-version: '3' is not 1 or 2", REQ, "--cgroup-version", "3");
	REFUSED("--cgroup-version: 'v2' is not 1 or 2", REQ, "--cgroup-version", "v2");
	/* the parent cgroup: a relative path of names */
	REFUSED("must be relative", REQ, V2, "--parent-cgroup", "/sys/fs/cgroup/x");
	REFUSED("has a '..' component", REQ, V2, "--parent-cgroup", "a/../b");
	REFUSED("has a '..' component", REQ, V2, "--parent-cgroup", "..");
	REFUSED("empty or '.' component", REQ, V2, "--parent-cgroup", "a//b");
	REFUSED("empty or '.' component", REQ, V2, "--parent-cgroup", ".");
	REFUSED("ends with '/'", REQ, V2, "--parent-cgroup", "a/");
	REFUSED("a cgroup name has letters", REQ, V2, "--parent-cgroup", "a b");
	REFUSED("--parent-cgroup: empty path", REQ, V2, "--parent-cgroup", "");
	/* the usual keys */
	CHECK_EQ(parse(REQ, V2, "--cgroup", "pids.max=64", "--cgroup", "cpuset.cpus=0-1", "--cgroup",
		       "hugetlb.2MB.max=0", "--cgroup", "memory.swap.max=0", NULL), 0);
	CHECK_STR(o.controllers, "pids cpuset hugetlb memory");
	CHECK_STR(o.cgroups[2].controller, "hugetlb");
#undef V2
}

TEST(resource_limits_are_checked)
{
	REFUSED("expected RESOURCE=VALUE", REQ, "--resource-limit", "fsize");
	REFUSED("unknown resource 'nofile'", REQ, "--resource-limit", "nofile=1");
	REFUSED("unknown resource 'cpu'", REQ, "--resource-limit", "cpu=1");
	REFUSED("not a decimal number", REQ, "--resource-limit", "no-file=abc");
	REFUSED("not a decimal number", REQ, "--resource-limit", "fsize=-1");
	REFUSED("not a decimal number", REQ, "--resource-limit", "fsize=");
	REFUSED("not a decimal number", REQ, "--resource-limit", "fsize=99999999999999999999");
	REFUSED("no-file=0 would leave", REQ, "--resource-limit", "no-file=0");
	CHECK_EQ(parse(REQ, "--resource-limit", "fsize=0", NULL), 0);
	CHECK(o.has_fsize);
	CHECK_EQ(o.fsize, 0);
	CHECK_EQ(o.no_file, 2048);
}

TEST(vmm_arguments)
{
	REFUSED("'--id' after '--': the jailer passes --id", REQ, "--", "--id", "x");
	REFUSED("'--start-time-us=5' after '--'", REQ, "--", "--start-time-us=5");
	REFUSED("'--parent-cpu-time-us' after '--'", REQ, "--", "--parent-cpu-time-us", "1");
	REFUSED("'--start-time-cpu-us' after '--'", REQ, "--", "--start-time-cpu-us", "1");

	CHECK_EQ(parse(REQ, "--", "--api-sock", "/run/api.sock", "--idle", NULL), 0);
	struct jail_times t = {.start_us = 123456789, .start_cpu_us = 4242, .parent_cpu_us = 0};
	char **v = jailer_exec_argv(&o, &t);
	CHECK(v != NULL);
	if (!v)
		return;
	const char *want[] = {"/visor",
			      "--id",
			      "vm-1",
			      "--start-time-us",
			      "123456789",
			      "--start-time-cpu-us",
			      "4242",
			      "--parent-cpu-time-us",
			      "0",
			      "--api-sock",
			      "/run/api.sock",
			      "--idle",
			      NULL};
	for (int i = 0; want[i]; i++)
		CHECK_STR(v[i], want[i]);
	CHECK(v[12] == NULL);
	free(v);
	/* nothing after "--" */
	CHECK_EQ(parse("--id", "z", "--exec-file", "fc", "--uid", "1", "--gid", "1", NULL), 0);
	t.parent_cpu_us = 18446744073709551615ull;
	v = jailer_exec_argv(&o, &t);
	CHECK(v != NULL);
	if (!v)
		return;
	CHECK_STR(v[0], "/fc");
	CHECK_STR(v[2], "z");
	CHECK_STR(v[8], "18446744073709551615");
	CHECK(v[9] == NULL);
	free(v);
}

TEST(cgroup2_mount_point)
{
	char m[256];
	const char *v1 = "sysfs /sys sysfs rw 0 0\n"
			 "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
			 "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n";
	CHECK_EQ(jailer_cgroup2_mount(v1, m, sizeof(m)), (unsigned long long)-ENOENT);
	CHECK_EQ(jailer_cgroup2_mount("", m, sizeof(m)), (unsigned long long)-ENOENT);
	const char *v2 = "proc /proc proc rw 0 0\n"
			 "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec 0 0\n"
			 "cgroup2 /other cgroup2 rw 0 0\n";
	CHECK_EQ(jailer_cgroup2_mount(v2, m, sizeof(m)), 0);
	CHECK_STR(m, "/sys/fs/cgroup");
	/* hybrid: the unified hierarchy among v1 ones; an escaped space */
	const char *hy = "cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"
			 "none /run/my\\040cg cgroup2 rw 0 0";
	CHECK_EQ(jailer_cgroup2_mount(hy, m, sizeof(m)), 0);
	CHECK_STR(m, "/run/my cg");
	/* not a path: ignored */
	CHECK_EQ(jailer_cgroup2_mount("none none cgroup2 rw 0 0\n", m, sizeof(m)),
		 (unsigned long long)-ENOENT);
	/* too long for the buffer: not some later one instead */
	CHECK_EQ(jailer_cgroup2_mount(v2, m, 8), (unsigned long long)-ENAMETOOLONG);
}

/* ---- the host checks (jailer_check) ----------------------------------------- */

static char dir[] = "/tmp/visor-test-jailer-XXXXXX";
static char p_exec[256], p_base[256];

/* a scratch directory with an exec file "visor" (0755) and a base path */
static void host_setup(void)
{
	if (strstr(dir, "XXXXXX") && !mkdtemp(dir))
		abort();
	chmod(dir, 0755);
	snprintf(p_exec, sizeof(p_exec), "%s/visor", dir);
	snprintf(p_base, sizeof(p_base), "%s/base", dir);
	int fd = open(p_exec, O_WRONLY | O_CREAT | O_TRUNC, 0755);
	if (fd < 0 || write(fd, "#!/bin/sh\n", 10) != 10)
		abort();
	close(fd);
	chmod(p_exec, 0755);
}

static struct jail_host h;

static int check_with(const char *exec, const char *base, const char *netns)
{
	char *argv[16];
	int argc = 0;
	argv[argc++] = "jailer";
	argv[argc++] = "--id";
	argv[argc++] = "vm-1";
	argv[argc++] = "--exec-file";
	argv[argc++] = (char *)exec;
	argv[argc++] = "--uid";
	argv[argc++] = "123";
	argv[argc++] = "--gid";
	argv[argc++] = "100";
	argv[argc++] = "--chroot-base-dir";
	argv[argc++] = (char *)base;
	if (netns) {
		argv[argc++] = "--netns";
		argv[argc++] = (char *)netns;
	}
	argv[argc] = NULL;
	int r = jailer_parse(argc, argv, &o, err, sizeof(err));
	if (r)
		return r;
	return jailer_check(&o, &h, err, sizeof(err));
}

#define CHECK_ERR(want)                                                                    \
	do {                                                                               \
		if (!strstr(err, want)) {                                                  \
			printf("  %s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, err, \
			       want);                                                      \
			test_failed_now_ = 1;                                              \
		}                                                                          \
	} while (0)

/* an accepted set-up: 0 as root; otherwise the last check's refusal */
#define CHECK_ACCEPTED(r)                                                           \
	do {                                                                        \
		if (geteuid() == 0) {                                               \
			CHECK_EQ((r), 0);                                           \
			CHECK_STR(err, "");                                         \
		} else {                                                            \
			CHECK((r) != 0);                                            \
			CHECK_ERR("the jailer must run as root");                   \
		}                                                                   \
	} while (0)

TEST(host_exec_file_checks)
{
	host_setup();
	char p[300];
	struct stat st;
	if (geteuid() == 0) {
		CHECK_ACCEPTED(check_with(p_exec, p_base, NULL));
		CHECK(stat(p_exec, &st) == 0 && h.exec_ino == st.st_ino && h.exec_dev == st.st_dev);
		/* the base's symlinks resolved, the rest as computed */
		snprintf(p, sizeof(p), "%s/visor/vm-1/root", p_base);
		CHECK_STR(h.root_dir, p);
		CHECK_STR(h.cgroup_mnt, ""); /* no cgroup asked for */
	}
	/* nothing was made */
	CHECK(stat(p_base, &st) != 0 && errno == ENOENT);

	snprintf(p, sizeof(p), "%s/none", dir);
	CHECK(check_with(p, p_base, NULL) == -ENOENT);
	CHECK_ERR("No such file or directory");
	CHECK(check_with(dir, p_base, NULL) == -EINVAL);
	CHECK_ERR("is not a regular file");
	snprintf(p, sizeof(p), "%s/fifo", dir);
	CHECK(mkfifo(p, 0755) == 0);
	CHECK(check_with(p, p_base, NULL) == -EINVAL);
	CHECK_ERR("is not a regular file");
	chmod(p_exec, 0775);
	if (geteuid() == 0) {
		CHECK(check_with(p_exec, p_base, NULL) == -EINVAL);
		CHECK_ERR("is writable by group or others (mode 0775)");
		chmod(p_exec, 0757);
		CHECK(check_with(p_exec, p_base, NULL) == -EINVAL);
		CHECK_ERR("is writable by group or others");
		chmod(p_exec, 0644);
		CHECK(check_with(p_exec, p_base, NULL) == -EINVAL);
		CHECK_ERR("is not executable");
		chmod(p_exec, 0755);
		CHECK(chown(p_exec, 4242, 0) == 0);
		CHECK(check_with(p_exec, p_base, NULL) == -EINVAL);
		CHECK_ERR("is owned by uid 4242, not root");
		CHECK(chown(p_exec, 0, 0) == 0);
		/* a symlink to a good file is fine; its name in the jail is the link's */
		snprintf(p, sizeof(p), "%s/firecracker", dir);
		CHECK(symlink(p_exec, p) == 0);
		CHECK_ACCEPTED(check_with(p, p_base, NULL));
		CHECK_STR(o.exec_name, "firecracker");
	} else {
		/* a file of this (non-root) user */
		chmod(p_exec, 0755);
		CHECK(check_with(p_exec, p_base, NULL) == -EINVAL);
		CHECK_ERR("not root");
	}
	CHECK(stat(p_base, &st) != 0 && errno == ENOENT);
}

TEST(host_jail_directory_checks)
{
	host_setup();
	if (geteuid() != 0) {
		/* a base this user owns is someone else's for the jailer */
		CHECK(mkdir(p_base, 0755) == 0 || errno == EEXIST);
		printf("  (not root: only the non-root refusals)\n");
		return;
	}
	char p[300], q[400];
	/* base, NAME and ID exist, root's */
	snprintf(p, sizeof(p), "%s/visor/vm-1", p_base);
	CHECK(mkdir(p_base, 0755) == 0 || errno == EEXIST);
	snprintf(q, sizeof(q), "%s/visor", p_base);
	CHECK(mkdir(q, 0755) == 0 || errno == EEXIST);
	CHECK(mkdir(p, 0755) == 0 || errno == EEXIST);
	CHECK_ACCEPTED(check_with(p_exec, p_base, NULL));
	/* NAME owned by someone else */
	CHECK(chown(q, 1000, 0) == 0);
	CHECK(check_with(p_exec, p_base, NULL) == -EINVAL);
	CHECK_ERR("jail directory ");
	CHECK_ERR("/base/visor is owned by uid 1000: it must be root's; refusing");
	CHECK(chown(q, 0, 0) == 0);
	/* the jail's root: root's or the jail uid's, nobody else's */
	snprintf(q, sizeof(q), "%s/root", p);
	CHECK(mkdir(q, 0700) == 0 || errno == EEXIST);
	CHECK_ACCEPTED(check_with(p_exec, p_base, NULL));
	CHECK(chown(q, 123, 100) == 0);
	CHECK_ACCEPTED(check_with(p_exec, p_base, NULL));
	CHECK(chown(q, 124, 100) == 0);
	CHECK(check_with(p_exec, p_base, NULL) == -EINVAL);
	CHECK_ERR("/root is owned by uid 124: it must be root's (or the jail's uid)");
	CHECK(chown(q, 0, 0) == 0);
	/* writable by others */
	CHECK(chmod(p, 0777) == 0);
	CHECK(check_with(p_exec, p_base, NULL) == -EINVAL);
	CHECK_ERR("/visor/vm-1 is writable by group or others (mode 0777)");
	/* (the sticky bit helps only above the jail) */
	CHECK(chmod(p, 01777) == 0);
	CHECK(check_with(p_exec, p_base, NULL) == -EINVAL);
	CHECK(chmod(p, 0755) == 0);
	CHECK(chmod(p_base, 01777) == 0);
	CHECK_ACCEPTED(check_with(p_exec, p_base, NULL));
	CHECK(chmod(p_base, 0777) == 0);
	CHECK(check_with(p_exec, p_base, NULL) == -EINVAL);
	CHECK_ERR("/base is writable by group or others (mode 0777)");
	CHECK(chmod(p_base, 0755) == 0);
	/* a symlink inside the jail path, and a file where a directory should be */
	CHECK(rmdir(q) == 0);
	CHECK(symlink("/", q) == 0);
	CHECK(check_with(p_exec, p_base, NULL) == -EINVAL);
	CHECK_ERR("/root is a symbolic link: refusing");
	CHECK(unlink(q) == 0);
	int fd = open(q, O_WRONLY | O_CREAT, 0600);
	close(fd);
	CHECK(check_with(p_exec, p_base, NULL) == -EINVAL);
	CHECK_ERR("/root exists and is not a directory");
	CHECK(unlink(q) == 0);
	/* a symlink in the base is resolved: the jail is where it points */
	snprintf(q, sizeof(q), "%s/link", dir);
	CHECK(symlink(p_base, q) == 0);
	CHECK_ACCEPTED(check_with(p_exec, q, NULL));
	snprintf(p, sizeof(p), "%s/visor/vm-1/root", p_base);
	CHECK_STR(h.root_dir, p);
	CHECK_STR(o.root_dir, strcat(q, "/visor/vm-1/root"));
}

TEST(host_netns_checks)
{
	host_setup();
	/* (not root: a root-owned exec file and a base under root's "/") */
	const char *x = geteuid() == 0 ? p_exec : "/bin/sh";
	const char *b = geteuid() == 0 ? p_base : "/nonexistent-visor-jailer-test";
	CHECK(check_with(x, b, p_exec) == -EINVAL);
	CHECK_ERR("is not a namespace file");
	CHECK(check_with(x, b, "/proc/self/ns/pid") == -EINVAL);
	CHECK_ERR("is a namespace, but not a network namespace");
	CHECK(check_with(x, b, "/proc/self/ns/none") == -ENOENT);
	CHECK_ERR("--netns /proc/self/ns/none: No such file");
	CHECK_ACCEPTED(check_with(x, b, "/proc/self/ns/net"));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

TEST(cleanup)
{
	if (!strstr(dir, "XXXXXX"))
		CHECK(nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
}

TEST_MAIN()
