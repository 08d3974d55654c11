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
	ACT_MIGRATION_SEND,     /* a.mig_send: PUT /migration/send (running or paused VM) */
	ACT_MIGRATION_RECEIVE,  /* a.mig_recv: PUT /migration/receive (fresh process) */
	ACT_MIGRATION_GET,      /* GET /migration -> reply.mig */
	ACT_MIGRATION_CANCEL,   /* PATCH /migration {"state": "Cancelled"} */
};
#define ACT_KIND_COUNT (ACT_MIGRATION_CANCEL + 1)

/* ---- live migration (visor's own endpoints, docs/api.md) ---- */

#define MIG_URL_MAX 300
/* TLS of a migration (both sides): this side's certificate and key, the
 * CA the peer's certificate must be signed by, and (client) the name the
 * server's certificate must carry.  enabled false: plain stream. */
struct mig_tls_params {
	bool enabled;
	char cert[CONFIG_PATH_MAX];
	char key[CONFIG_PATH_MAX];
	char ca[CONFIG_PATH_MAX];
	char server_name[256];
};

/* "mode" of PUT /migration/send (same numbers as migration/stream.h's
 * enum mig_mode). */
enum mig_mode_param { MIGP_PRECOPY, MIGP_POSTCOPY, MIGP_AUTO, MIGP_LOCAL };

#define MIG_DEFAULT_DOWNTIME_MS 50
#define MIG_DEFAULT_TIMEOUT_S 3600

struct mig_send_params {
	char url[MIG_URL_MAX];        /* "unix:PATH" or "tcp:HOST:PORT" */
	uint32_t downtime_limit_ms;   /* default MIG_DEFAULT_DOWNTIME_MS */
	uint64_t max_bandwidth_mib;   /* MiB/s; 0: unlimited */
	uint32_t timeout_s;           /* default MIG_DEFAULT_TIMEOUT_S */
	enum mig_mode_param mode;     /* default precopy */
	bool verify;                  /* pre-copy: the destination checks every page's CRC */
	struct mig_tls_params tls;
};

struct mig_recv_params {
	char url[MIG_URL_MAX];
	uint32_t timeout_s;           /* for the source to connect and finish; default 3600 */
	struct mig_tls_params tls;
};

/* GET /migration */
enum mig_state_kind {
	MIGS_NONE,       /* no migration was started in this process */
	MIGS_SETUP,      /* connecting / the destination builds the machine */
	MIGS_ACTIVE,     /* copying memory while the guest runs (pre-copy passes) */
	MIGS_SWITCHOVER, /* the guest is paused: last pages, device state, hand-over */
	MIGS_POSTCOPY,   /* destination runs; pages follow on demand */
	MIGS_COMPLETED,
	MIGS_FAILED,
	MIGS_CANCELLED,
};

struct mig_status {
	enum mig_state_kind state;
	bool incoming;                /* this process is the destination */
	enum mig_mode_param mode;
	char url[MIG_URL_MAX];
	uint32_t pass;                /* memory passes so far (0: the first, all of memory) */
	uint64_t bytes;               /* sent (source) / received (destination) */
	uint64_t pages_data, pages_zero; /* pages sent with data / as zero markers */
	uint64_t remaining_bytes;     /* dirty memory left to send (last count) */
	uint64_t mem_bytes;           /* guest memory */
	uint64_t dirty_rate;          /* bytes/s the guest dirtied in the last pass */
	uint64_t bandwidth;           /* bytes/s the link carried in the last pass */
	uint64_t expected_downtime_ms;
	uint32_t downtime_limit_ms;
	uint32_t throttle_pct;        /* vCPU time taken away (auto-converge) */
	uint64_t elapsed_ms;          /* since the migration started */
	uint64_t downtime_ms;         /* measured, once completed (guest paused to
				       * destination running) */
	/* how this process's VM tracks dirty pages: no VM yet (none), KVM's
	 * dirty bitmap, or KVM's dirty ring of dirty_ring_entries per vCPU,
	 * which vCPUs found full dirty_ring_full_exits times */
	enum mig_dirty_log { MIG_DIRTY_NONE, MIG_DIRTY_BITMAP, MIG_DIRTY_RING } dirty_log;
	uint32_t dirty_ring_entries;
	uint64_t dirty_ring_full_exits;
	char error[512];              /* failed / cancelled: why */
};

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
	bool has_cpus, has_mem, has_smt, has_track_dirty, has_dirty_ring;
	bool has_path;
	/* rate limiters a body gave: 0, or FC_RL_GIVEN plus FC_RL_BANDWIDTH
	 * and/or FC_RL_OPS for the buckets it named (a PATCH replaces only
	 * those, as Firecracker does) */
	uint8_t has_rl, has_rx_rl, has_tx_rl;
	union {
		struct {
			uint64_t cpus, mem_mib; /* unchecked: config_set_machine checks */
			bool smt, track_dirty_pages;
			uint64_t dirty_ring; /* unchecked: config_set_dirty_ring checks */
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
		struct mig_send_params mig_send;
		struct mig_recv_params mig_recv;
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
	struct mig_status mig;       /* GET /migration */
	/* end the process with @exit_code once this reply has been sent (a
	 * failed snapshot load leaves nothing worth keeping, as in
	 * Firecracker) */
	bool exit_after;
	int exit_code;
};

#endif
