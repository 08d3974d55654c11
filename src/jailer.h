/* SPDX-License-Identifier: MIT */
/*
 * jailer.h - `visor jailer` (also `jailer` through a symlink): Firecracker's
 * jailer command line.  It builds a chroot jail for one VMM process (the
 * exec file, normally visor itself, copied into it), puts the process in a
 * cgroup v2 group with the given limits, joins a network namespace, pivots
 * into the jail in a new mount namespace, creates the KVM/TUN/userfaultfd
 * device nodes there, sets resource limits, optionally starts a new PID
 * namespace and daemonizes, drops to the given uid/gid with no capability
 * left and execs the copy with Firecracker's --id and start-time arguments.
 * docs/security.md ("Jailer") describes every step.
 *
 * Independent of the VMM: parsing and checks (jailer_parse, jailer_check)
 * are pure or read-only and unit-tested; jailer_main does the work and
 * either execs or returns an exit status.
 */
#ifndef VISOR_JAILER_H
#define VISOR_JAILER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define JAIL_DEFAULT_BASE "/srv/jailer"
#define JAIL_ID_MAX 64
#define JAIL_MAX_CGROUPS 64
#define JAIL_DEFAULT_NO_FILE 2048
/* the device nodes a jail gets (those of them the host has) */
#define JAIL_NDEVICES 3
extern const char *const jail_devices[JAIL_NDEVICES]; /* "/dev/kvm", ... */

struct jail_cgroup {
	const char *key;   /* e.g. "cpu.max" (a file of the cgroup) */
	const char *value; /* e.g. "50000 100000" */
	char controller[32]; /* the key up to its first '.', e.g. "cpu" */
};

struct jail_opts {
	bool help, version;
	const char *id;
	const char *exec_file;   /* as given */
	char exec_name[NAME_MAX + 1]; /* its last path component */
	uint32_t uid, gid;
	const char *base_arg;    /* --chroot-base-dir as given (NULL: default) */
	char base[PATH_MAX];     /* the base, slashes tidied */
	char jail_dir[PATH_MAX]; /* BASE/EXEC_NAME/ID */
	char root_dir[PATH_MAX]; /* BASE/EXEC_NAME/ID/root: the jail's / */
	const char *netns;       /* --netns PATH or NULL */
	bool daemonize, new_pid_ns;
	int cgroup_version;      /* 1 (Firecracker's default) or 2 */
	struct jail_cgroup cgroups[JAIL_MAX_CGROUPS];
	int ncgroups;
	const char *parent_cgroup; /* --parent-cgroup or NULL */
	/* PARENT/ID: the VMM's cgroup, relative to the cgroup2 mount; PARENT
	 * is --parent-cgroup or EXEC_NAME */
	char cgroup_rel[PATH_MAX];
	/* the controllers the keys need, space-separated ("cpu memory") */
	char controllers[256];
	uint64_t no_file;        /* RLIMIT_NOFILE (default 2048) */
	bool has_fsize;
	uint64_t fsize;          /* RLIMIT_FSIZE when has_fsize */
	int nextra;              /* the arguments after "--" */
	char **extra;
};

/* What jailer_check found on the host (read-only) for jailer_main. */
struct jail_host {
	dev_t exec_dev;          /* the exec file checked: the copy must be it */
	ino_t exec_ino;
	char root_dir[PATH_MAX]; /* o->root_dir with the base's symlinks resolved */
	char cgroup_mnt[PATH_MAX]; /* the cgroup2 mount ("" when none is needed) */
};

/* Parse "jailer OPTIONS... [-- ARGS...]" (argv[0] is the command's name and
 * is not looked at) into @o, checking everything that needs no file:
 * required options, ids, numbers, KEY=VALUE forms, ".." in paths.  The
 * strings of @o point into @argv.  0, or -EINVAL with one line in @err. */
int jailer_parse(int argc, char **argv, struct jail_opts *o, char *err, size_t errlen);

/* Check the host against @o without changing anything: the exec file is a
 * regular file owned by root and not writable by others, the directories
 * of the jail that exist are root's (the jail's root also may be the
 * uid's), the network namespace exists, a cgroup2 hierarchy with the
 * controllers is mounted when cgroups are asked for, the caller is root.
 * Fills @h.  0, or -errno with one line in @err. */
int jailer_check(const struct jail_opts *o, struct jail_host *h, char *err, size_t errlen);

/* The times the jailer hands the VMM (microseconds; Firecracker calls them
 * opaque): CLOCK_MONOTONIC when the jailer started, this process's CPU
 * time at the exec, and with --new-pid-ns the CPU time of the jailer
 * process that forked (else 0). */
struct jail_times {
	uint64_t start_us, start_cpu_us, parent_cpu_us;
};

/* The VMM's argv: "/EXEC_NAME --id ID --start-time-us N --start-time-cpu-us N
 * --parent-cpu-time-us N" then the arguments after "--".  One allocation
 * (free() it), NULL-terminated; NULL when out of memory. */
char **jailer_exec_argv(const struct jail_opts *o, const struct jail_times *t);

/* The mount point of the first cgroup2 file system in @mounts (the text of
 * /proc/mounts, octal escapes undone) into @out.  0, -ENOENT (none) or
 * -ENAMETOOLONG (it does not fit @len bytes). */
int jailer_cgroup2_mount(const char *mounts, char *out, size_t len);

/* `visor jailer ...` / `jailer ...`: on success it does not return (the VMM
 * runs in this process; with --new-pid-ns this process exits 0 once the
 * child's pid is in the jail's EXEC_NAME.pid); else one "jailer: error:"
 * line on stderr and status 1. */
int jailer_main(int argc, char **argv);

extern const char jailer_usage[];

#endif
