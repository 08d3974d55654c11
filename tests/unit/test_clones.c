/* SPDX-License-Identifier: MIT */
/* `visor restore DIR --clones N` (clones.c): each clone's command line,
 * the id prefix, and the refusal of clone sets that would collide; the
 * restore options of the command line (cli.c). */
#include "../../src/clones.h"

#include <errno.h>

#include "test.h"

static struct cli_opts opts;

static int parse_argv(int argc, char **argv, char *err)
{
	struct config_err e;
	memset(&opts, 0, sizeof(opts));
	int r = cli_parse(argc, argv, &opts, &e);
	snprintf(err, 256, "%s", e.msg);
	return r;
}

static size_t count(char **av)
{
	size_t n = 0;
	while (av[n])
		n++;
	return n;
}

TEST(child_argv_drops_clones_and_id_and_numbers_overrides)
{
	char *argv[] = {"visor", "restore", "/s/warm", "--clones", "3", "--id=web",
			"--net-override", "net0=tap{n}", "--vsock-override", "/run/v{n}.sock{n}",
			"--clones=3", "--clock-realtime", NULL};
	char **av = clones_child_argv(12, argv, "web", 2, 3);
	CHECK(av != NULL);
	char *want[] = {"visor", "restore", "/s/warm", "--net-override", "net0=tap2",
			"--vsock-override", "/run/v2.sock2", "--clock-realtime", "--id", "web-2",
			"--ready-fd", "3"};
	CHECK_EQ(count(av), 12);
	for (size_t i = 0; i < 12 && av[i]; i++)
		CHECK_STR(av[i], want[i]);
	clones_argv_free(av);
	/* a clone's own command line parses, as the clone will parse it */
	char err[256];
	av = clones_child_argv(12, argv, "web", 17, 3);
	CHECK_EQ(parse_argv((int)count(av), av, err), 0);
	CHECK_EQ(opts.clones, 0);
	CHECK_STR(opts.id, "web-17");
	CHECK_STR(opts.net_override[0].tap, "tap17");
	CHECK_STR(opts.vsock_override, "/run/v17.sock17");
	CHECK(opts.has_ready_fd && opts.ready_fd == 3);
	CHECK(opts.clock_realtime);
	CHECK_STR(opts.restore_dir, "/s/warm");
	clones_argv_free(av);
}

TEST(prefix_from_id_or_directory)
{
	char p[CONFIG_ID_MAX + 1], err[256];
	char *a1[] = {"visor", "restore", "/snaps/warm-py/", "--clones", "2", NULL};
	CHECK_EQ(parse_argv(5, a1, err), 0);
	clones_prefix(&opts, p, sizeof(p));
	CHECK_STR(p, "warm-py");
	char *a2[] = {"visor", "restore", "/snaps/a b", "--clones", "2", NULL};
	CHECK_EQ(parse_argv(5, a2, err), 0);
	clones_prefix(&opts, p, sizeof(p));
	CHECK_STR(p, "clone");
	char *a3[] = {"visor", "restore", "..", "--clones", "2", NULL};
	CHECK_EQ(parse_argv(5, a3, err), 0);
	clones_prefix(&opts, p, sizeof(p));
	CHECK_STR(p, "clone");
	char *a4[] = {"visor", "restore", "x", "--clones", "2", "--id", "db", NULL};
	CHECK_EQ(parse_argv(7, a4, err), 0);
	clones_prefix(&opts, p, sizeof(p));
	CHECK_STR(p, "db");
	/* a 64-character id leaves room for "-1023" */
	char id[65];
	memset(id, 'a', 64);
	id[64] = 0;
	char *a5[] = {"visor", "restore", "x", "--clones", "2", "--id", id, NULL};
	CHECK_EQ(parse_argv(7, a5, err), 0);
	clones_prefix(&opts, p, sizeof(p));
	CHECK_EQ(strlen(p), CONFIG_ID_MAX - 5);
}

TEST(colliding_clone_sets_refused)
{
	static struct vm_config snap;
	char err[256];
	config_init(&snap);
	snap.nnics = 1;
	snprintf(snap.nics[0].id, sizeof(snap.nics[0].id), "net0");
	snprintf(snap.nics[0].tap, sizeof(snap.nics[0].tap), "tap0");
	char *a1[] = {"visor", "restore", "d", "--clones", "2", NULL};
	CHECK_EQ(parse_argv(5, a1, err), 0);
	CHECK_EQ(clones_check(&opts, &snap, err, sizeof(err)), (unsigned long long)-EINVAL);
	CHECK(strstr(err, "--net-override net0=TAP{n}") != NULL);
	char *a2[] = {"visor", "restore", "d", "--clones", "2", "--net-override", "net0=t1", NULL};
	CHECK_EQ(parse_argv(7, a2, err), 0);
	CHECK_EQ(clones_check(&opts, &snap, err, sizeof(err)), (unsigned long long)-EINVAL);
	CHECK(strstr(err, "for every clone") != NULL);
	char *a3[] = {"visor", "restore", "d", "--clones", "2", "--net-override", "net0=t{n}", NULL};
	CHECK_EQ(parse_argv(7, a3, err), 0);
	CHECK_EQ(clones_check(&opts, &snap, err, sizeof(err)), 0);
	/* one clone may keep the snapshot's tap */
	char *a4[] = {"visor", "restore", "d", "--clones", "1", NULL};
	CHECK_EQ(parse_argv(5, a4, err), 0);
	CHECK_EQ(clones_check(&opts, &snap, err, sizeof(err)), 0);
	/* an override naming no interface of the snapshot */
	char *a5[] = {"visor", "restore", "d", "--clones", "1", "--net-override", "eth9=t", NULL};
	CHECK_EQ(parse_argv(7, a5, err), 0);
	CHECK_EQ(clones_check(&opts, &snap, err, sizeof(err)), (unsigned long long)-EINVAL);
	CHECK(strstr(err, "no interface 'eth9'") != NULL);
	/* vsock and the API socket */
	snap.nnics = 0;
	snap.vsock.enabled = true;
	snprintf(snap.vsock.uds, sizeof(snap.vsock.uds), "/run/v.sock");
	char *a6[] = {"visor", "restore", "d", "--clones", "4", NULL};
	CHECK_EQ(parse_argv(5, a6, err), 0);
	CHECK_EQ(clones_check(&opts, &snap, err, sizeof(err)), (unsigned long long)-EINVAL);
	CHECK(strstr(err, "/run/v.sock") != NULL);
	char *a7[] = {"visor", "restore", "d", "--clones", "4", "--vsock-override", "/v{n}",
		      "--api-sock", "/a.sock", NULL};
	CHECK_EQ(parse_argv(9, a7, err), 0);
	CHECK_EQ(clones_check(&opts, &snap, err, sizeof(err)), (unsigned long long)-EINVAL);
	CHECK(strstr(err, "--api-sock /a.sock") != NULL);
	char *a8[] = {"visor", "restore", "d", "--clones", "4", "--vsock-override", "/v{n}",
		      "--api-sock", "/a{n}.sock", NULL};
	CHECK_EQ(parse_argv(9, a8, err), 0);
	CHECK_EQ(clones_check(&opts, &snap, err, sizeof(err)), 0);
}

TEST(restore_options_parse_and_are_refused_without_a_snapshot)
{
	char err[256];
	char *a1[] = {"visor", "run", "--restore", "d", "--net-override", "net0=tap7",
		      "--net-override", "net1=tap8", "--paused", "--vsock-override", "/v",
		      "--ready-fd=5", NULL};
	CHECK_EQ(parse_argv(12, a1, err), 0);
	CHECK_EQ(opts.nnet_override, 2);
	CHECK_STR(opts.net_override[1].iface, "net1");
	CHECK_STR(opts.net_override[1].tap, "tap8");
	CHECK(opts.restore_paused && !opts.clock_realtime);
	CHECK(opts.has_ready_fd && opts.ready_fd == 5);
	static const char *const bad[][3] = {
		{"--clones", "0", "not a number from 1 to 1024"},
		{"--clones", "1025", "not a number from 1 to 1024"},
		{"--clones", "x", "not a number"},
		{"--net-override", "net0", "expected IFACE=TAP"},
		{"--net-override", "=tap", "expected IFACE=TAP"},
		{"--net-override", "net0=", "expected IFACE=TAP"},
		{"--net-override", "net0=a-much-too-long-tap-name-here", "expected IFACE=TAP"},
		{"--ready-fd", "-1", "not a file descriptor"},
		{"--vsock-override", "", "path must be"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *av[] = {"visor", "restore", "d", (char *)bad[i][0], (char *)bad[i][1], NULL};
		CHECK_EQ(parse_argv(5, av, err), (unsigned long long)-EINVAL);
		CHECK(strstr(err, bad[i][2]) != NULL);
	}
	char *a2[] = {"visor", "restore", "d", "--net-override", "n=a", "--net-override", "n=b",
		      NULL};
	CHECK_EQ(parse_argv(7, a2, err), (unsigned long long)-EINVAL);
	CHECK(strstr(err, "given twice") != NULL);
	/* booting, not restoring: the restore options are refused, --ready-fd is not */
	static const char *const only[] = {"--clones=2", "--net-override=n=t", "--paused",
					   "--clock-realtime", "--vsock-override=/v"};
	for (size_t i = 0; i < sizeof(only) / sizeof(only[0]); i++) {
		char *av[] = {"visor", "run", "--kernel", "k", (char *)only[i], NULL};
		CHECK_EQ(parse_argv(5, av, err), (unsigned long long)-EINVAL);
		CHECK(strstr(err, "only with a snapshot") != NULL);
	}
	char *a3[] = {"visor", "run", "--kernel", "k", "--ready-fd", "4", NULL};
	CHECK_EQ(parse_argv(6, a3, err), 0);
	CHECK(opts.has_ready_fd && opts.ready_fd == 4);
}

TEST_MAIN()
