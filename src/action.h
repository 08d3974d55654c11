/* SPDX-License-Identifier: MIT */
/*
 * action.h - typed requests to a VM and their replies (plain data).
 *
 * Every way of driving a VM (the REST API, the config file, `visor run`
 * options, the CLI for people) turns what it was given into a struct
 * vm_action.  vm_submit() (vm.h) runs it on the event loop, where it is
 * checked against the VM's state before anything changes, and fills a
 * struct vm_reply.  Front ends only translate: api/fc_json.c turns HTTP
 * method + path + JSON body into an action and the reply into JSON.
 *
 * No pointers in either struct: an action can be copied between threads
 * and a reply carries copies of what it reports.
 */
#ifndef VISOR_ACTION_H
#define VISOR_ACTION_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#define FC_RL_GIVEN 1
#define FC_RL_BANDWIDTH 2
#define FC_RL_OPS 4

enum vm_state { VM_NOT_STARTED, VM_RUNNING, VM_PAUSED, VM_STOPPED };

enum vm_action_kind {
	ACT_NONE,
	ACT_GET_INFO,           /* GET /              -> reply.info */
	ACT_GET_VERSION,        /* GET /version       -> reply.info */
	ACT_GET_VM_CONFIG,      /* GET /vm/config     -> reply.config (+ info) */
	ACT_GET_MACHINE_CONFIG, /* GET /machine-config -> reply.config */
	ACT_PUT_MACHINE_CONFIG, /* PUT /machine-config   a.machine (all fields) */
	ACT_PATCH_MACHINE_CONFIG, /* PATCH /machine-config a.machine (has_* say which) */
	ACT_PUT_BOOT_SOURCE,    /* a.boot */
	ACT_PUT_DRIVE,          /* a.disk (full) */
	ACT_PATCH_DRIVE,        /* a.disk.id + has_path / has_rl */
	ACT_PUT_NET,            /* a.net (full) */
	ACT_PATCH_NET,          /* a.net.id + has_rx_rl / has_tx_rl */
	ACT_PUT_VSOCK,          /* a.vsock */
	ACT_PUT_ENTROPY,        /* a.rng */
	ACT_PUT_BALLOON,        /* a.balloon (full) */
	ACT_PATCH_BALLOON,      /* a.balloon.size (amount_mib) */
	ACT_GET_BALLOON,        /* -> reply.config.balloon */
	ACT_GET_BALLOON_STATS,  /* -> reply.balloon */
	ACT_PATCH_BALLOON_STATS, /* a.balloon.stats_period */
	ACT_INSTANCE_START,
	ACT_SEND_CTRL_ALT_DEL,
	ACT_FLUSH_METRICS,
	ACT_PAUSE,              /* PATCH /vm {"state": "Paused"} */
	ACT_RESUME,             /* PATCH /vm {"state": "Resumed"} */
	ACT_PUT_LOGGER,         /* a.logger */
	ACT_PUT_METRICS,        /* a.metrics */
	ACT_PUT_SERIAL,         /* a.serial_out */
	ACT_SNAPSHOT_CREATE,    /* a.snap: PUT /snapshot/create (paused VM) */
	ACT_SNAPSHOT_LOAD,      /* a.load: PUT /snapshot/load (fresh process) */
};
#define ACT_KIND_COUNT (ACT_SNAPSHOT_LOAD + 1)

/* PUT /snapshot/load: where the snapshot is and how to bring it back. */
struct snapshot_load {
	char state_path[CONFIG_PATH_MAX];
	char mem_path[CONFIG_PATH_MAX]; /* the memory file (backend File), or */
	bool uffd;                      /* the page-fault handler's socket (Uffd) */
	bool track_dirty_pages, resume_vm, clock_realtime;
	uint32_t nnet;                  /* network_overrides */
	struct {
		char iface[CONFIG_ID_MAX + 1];
		char tap[16];
	} net[CONFIG_MAX_NICS];
	bool has_vsock_uds;             /* vsock_override */
	char vsock_uds[108];
};

struct vm_action {
	enum vm_action_kind kind;
	/* which optional fields a PATCH (or a PUT with optional members) set */
	bool has_cpus, has_mem, has_smt, has_track_dirty;
	bool has_path;
	/* rate limiters a body gave: 0, or FC_RL_GIVEN plus FC_RL_BANDWIDTH
	 * and/or FC_RL_OPS for the buckets it named (a PATCH replaces only
	 * those, as Firecracker does) */
	uint8_t has_rl, has_rx_rl, has_tx_rl;
	union {
		struct {
			uint64_t cpus, mem_mib; /* unchecked: config_set_machine checks */
			bool smt, track_dirty_pages;
		} machine;
		struct {
			char kernel[CONFIG_PATH_MAX];
			char initrd[CONFIG_PATH_MAX];
			char cmdline[CONFIG_CMDLINE_MAX];
			bool has_initrd, has_cmdline;
		} boot;
		struct disk_config disk;
		struct net_config net;
		struct vsock_config vsock;
		struct rng_config rng;
		struct balloon_config balloon;
		struct logger_config logger;
		struct metrics_config metrics;
		char serial_out[CONFIG_PATH_MAX];
		struct {
			char state_path[CONFIG_PATH_MAX];
			char mem_path[CONFIG_PATH_MAX];
			bool diff; /* snapshot_type Diff */
		} snap;
		struct snapshot_load load;
	} u;
};

/* Balloon statistics as Firecracker reports them (BalloonStats). */
struct balloon_stats_reply {
	uint64_t target_pages, actual_pages;
	uint64_t target_mib, actual_mib;
	/* guest statistics; bit i of @valid set when tag i was reported
	 * (virtio 1.2 §5.5.6.3 tags: 0 swap_in ... 9 hugetlb_failures, and the
	 * Linux tags after them) */
	uint32_t valid;
	uint64_t val[16];
};

struct vm_reply {
	/* HTTP-style status: 200 (GET with a body), 204 (done), 400 (refused:
	 * fault holds why; nothing changed), 500 (failed while acting). */
	int status;
	char fault[512];
	/* for GETs */
	enum vm_state state;
	char id[CONFIG_ID_MAX + 1]; /* instance id (--id) */
	char version[64];
	uint64_t uptime_ms;          /* since InstanceStart, 0 before */
	struct vm_config config;     /* GET /vm/config, /machine-config, /balloon */
	struct balloon_stats_reply balloon;
	/* end the process with @exit_code once this reply has been sent (a
	 * failed snapshot load leaves nothing worth keeping, as in
	 * Firecracker) */
	bool exit_after;
	int exit_code;
};

#endif
