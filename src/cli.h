/* SPDX-License-Identifier: MIT */
/*
 * cli.h - visor's command lines (pure parsing, unit-tested).
 *
 *   visor run --kernel K [options]      quick path: boot a VM now (and serve the API)
 *   visor [--api-sock P] [--config-file F] ...
 *                                       Firecracker's command line: wait for the API
 *                                       (or boot from the config file); also when
 *                                       visor is invoked as "firecracker"
 *   visor ls | pause | resume | status | balloon | ctrl-alt-del | config ...
 *                                       drive running VMs (cli_client.c)
 *   visor migrate VM --to URL [options] live-migrate a running VM (cli_migrate.c)
 *   visor run --incoming URL [options]  receive a migrating VM
 *   visor --describe-snapshot FILE      print a snapshot state file's version and
 *                                       sections (snapshot/format.h)
 *   visor snapshot merge BASE DIFF      fold a Diff snapshot onto its base
 *                                       (snapshot/merge.h)
 *   visor jailer --id ID --exec-file F --uid U --gid G ...
 *                                       Firecracker's jailer (jailer.h); also when
 *                                       visor is invoked as "jailer"
 *
 * The VM options of `visor run` fill a struct vm_config through the same
 * setters (config.h) the API and the config file use.
 */
#ifndef VISOR_CLI_H
#define VISOR_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "action.h"
#include "config.h"

enum cli_cmd {
	CLI_RUN,         /* visor run */
	CLI_FIRECRACKER, /* Firecracker-compatible process */
	CLI_HELP,
	CLI_VERSION,
	CLI_CONTROL,     /* ls, pause, ... : see ctl_* */
	CLI_DESCRIBE_SNAPSHOT, /* --describe-snapshot FILE: see snapshot_path */
	CLI_PRINT_SECCOMP,     /* --print-seccomp: the built-in filters as a filter file */
	CLI_SNAPSHOT_MERGE,    /* snapshot merge BASE DIFF [--state FILE]: see merge_* */
	CLI_JAILER,            /* jailer ...: see jailer_first (jailer.h parses the rest) */
};

#define CLI_DEFAULT_MAX_PAYLOAD 51200

struct cli_opts {
	enum cli_cmd cmd;
	const char *help_topic; /* CLI_HELP: "run", "firecracker", "migrate" or NULL */
	const char *snapshot_path; /* CLI_DESCRIBE_SNAPSHOT: the state file */
	struct vm_config cfg;   /* CLI_RUN: the VM; CLI_FIRECRACKER: host settings */

	/* the process (both run and Firecracker modes) */
	char id[CONFIG_ID_MAX + 1];   /* --id (default "anonymous-instance"; run: "vm-PID") */
	char api_sock[108];           /* "" = default (see cli_default_socket) */
	bool api_sock_set;
	bool no_api;
	char config_file[CONFIG_PATH_MAX];
	char log_path[CONFIG_PATH_MAX];
	char metrics_path[CONFIG_PATH_MAX];
	enum log_level level;
	bool level_set;
	bool show_level, show_origin;
	bool boot_timer;
	bool enable_pci;              /* Firecracker mode: devices on PCI (default virtio-mmio) */
	uint64_t max_payload;         /* --http-api-max-payload-size */
	uint64_t mmds_size_limit;     /* accepted; MMDS is not implemented */
	uint64_t start_time_us, start_time_cpu_us, parent_cpu_time_us; /* from a jailer */
	bool no_seccomp;  /* --no-seccomp */
	bool seccomp_log; /* --seccomp-log */
	char seccomp_filter[CONFIG_PATH_MAX];
	char restore_dir[CONFIG_PATH_MAX]; /* run --restore DIR / restore DIR */
	/* with --restore: what PUT /snapshot/load's fields give the API */
	uint32_t clones;              /* --clones N: N processes (0: this one) */
	uint32_t nnet_override;       /* --net-override IFACE=TAP (network_overrides) */
	struct {
		char iface[CONFIG_ID_MAX + 1];
		char tap[24];         /* may hold {n}: checked by the clone */
	} net_override[CONFIG_MAX_NICS];
	char vsock_override[108];     /* --vsock-override PATH ("" none) */
	bool clock_realtime;          /* --clock-realtime */
	bool restore_paused;          /* --paused: resume_vm false */
	bool has_ready_fd;            /* --ready-fd FD: "ready ID\n" once running */
	int ready_fd;
	bool track_dirty_pages;       /* run --track-dirty-pages (boot or --restore) */
	/* run --incoming URL [--incoming-timeout S] [--tls-cert F --tls-key F
	 * --tls-ca F]: PUT /migration/receive's fields (url "": not given) */
	struct mig_recv_params incoming;

	/* CLI_CONTROL */
	const char *ctl_verb;   /* "ls", "pause", ... */
	const char *ctl_target; /* VM name or socket path */
	const char *ctl_arg;    /* balloon SIZE, snapshot DIR */
	bool ctl_json;
	bool ctl_diff;          /* snapshot --diff */
	/* ctl_verb "migrate": --to URL and its options (PUT /migration/send's
	 * fields, tls included), or --cancel, or --status */
	struct mig_send_params mig;
	bool mig_cancel, mig_status, mig_no_wait;

	/* CLI_SNAPSHOT_MERGE: two snapshot directories, or two memory files
	 * (and the Diff's state file, optional) */
	const char *merge_base, *merge_diff, *merge_state;

	/* CLI_JAILER: argv[jailer_first] is "jailer" (the command or the
	 * program's name), its options follow */
	int jailer_first;
};

/* Parse argv into @o, which must be all zero (calloc, or cleared by the
 * caller before each reuse).  @prog is the name visor was invoked as (basename of
 * argv[0]): "firecracker" selects Firecracker's command line.
 * 0, or -EINVAL with a one-line message in e. */
int cli_parse(int argc, char **argv, struct cli_opts *o, struct config_err *e);

/* The files of a snapshot directory (`visor snapshot VM DIR`, `visor
 * restore DIR`): DIR/state and DIR/memory. */
#define CLI_SNAPSHOT_STATE "state"
/* `visor restore DIR --clones N`: at most this many */
#define CLI_MAX_CLONES 1024
#define CLI_SNAPSHOT_MEMORY "memory"

/* Directory where `visor run` puts API sockets by default and `visor ls`
 * looks: $VISOR_RUN_DIR, else $XDG_RUNTIME_DIR/visor, else
 * /run/visor (root) or /tmp/visor-UID.  Writes into buf; 0 / -ENAMETOOLONG. */
int cli_socket_dir(char *buf, size_t len);

/* The API socket of VM @name: @name itself when it contains a '/' (a
 * path), else SOCKDIR/NAME.sock.  0 / -ENAMETOOLONG. */
int cli_socket_path(const char *name, char *buf, size_t len);

extern const char cli_usage[];
extern const char cli_usage_firecracker[];
extern const char cli_usage_migrate[];

#endif
