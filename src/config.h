/* SPDX-License-Identifier: MIT */
/*
 * config.h - the one configuration model of a VM.
 *
 * struct vm_config describes everything a user can ask for, however they
 * ask: `visor run` options (config_parse_args), Firecracker's JSON config
 * file and REST API bodies (api/fc_json.c).  It owns its strings (fixed
 * arrays, no pointers), so it can be copied by assignment: an update is made
 * on a copy, validated, and committed only if valid, so a rejected request
 * changes nothing.
 *
 * Validation lives here only: config_set_*() check one item (id syntax,
 * ranges, MAC syntax, duplicates against the rest of the config) and
 * config_validate() the whole; the CLI, the config file and the API call
 * the same functions, so the same mistake gets the same message.  Checks
 * that need the host (files exist and are regular, memory fits, KVM's vCPU
 * limit) happen when the machine is built.
 *
 * Parsing and validation are pure (no I/O), unit-tested.
 */
#ifndef VISOR_CONFIG_H
#define VISOR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/log.h"
#include "util/ratelimit.h"

#define CONFIG_DEFAULT_MEM (256ULL << 20)
#define CONFIG_DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=1"
/* Firecracker's default boot_args when a boot source gives none. */
#define CONFIG_FC_DEFAULT_CMDLINE "reboot=k panic=1 pci=off nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd swiotlb=noforce"
#define CONFIG_MIN_MEM (4ULL << 20)
/* xAPIC IDs in the MADT are 8-bit and 0xff is broadcast. */
#define CONFIG_MAX_CPUS 254

#define CONFIG_MAX_DISKS 8
#define CONFIG_MAX_NICS 4
/* virtio-mmio devices: one GSI each (16..23) */
#define CONFIG_MAX_MMIO_DEVS 8
#define CONFIG_PATH_MAX 4096
#define CONFIG_CMDLINE_MAX 4096
/* Resource ids (drive_id, iface_id, ...): Firecracker allows ASCII
 * alphanumerics and '_'; visor also caps the length. */
#define CONFIG_ID_MAX 64
/* KVM's dirty ring (dirty_ring): entries per vCPU ring.  A ring is a
 * power of two of 16-byte entries, at least one 4 KiB page (256 entries)
 * and at most KVM_DIRTY_RING_MAX_ENTRIES (65536); a host may ask for more
 * (Intel's PML reserves entries: its smallest ring is 1024), which KVM
 * refuses when the VM is built.  0 = KVM's dirty bitmap. */
#define CONFIG_DIRTY_RING_DEFAULT 4096u
#define CONFIG_DIRTY_RING_MIN 256u
#define CONFIG_DIRTY_RING_MAX 65536u

enum virtio_transport_kind { TRANSPORT_PCI, TRANSPORT_MMIO };

/* struct rate_limiter_config (Firecracker's RateLimiter: bandwidth and ops
 * token buckets) is defined with the token bucket in util/ratelimit.h. */

enum drive_cache { DRIVE_CACHE_UNSAFE, DRIVE_CACHE_WRITEBACK };
enum drive_io_engine { DRIVE_IO_SYNC, DRIVE_IO_ASYNC };

struct disk_config {
	char id[CONFIG_ID_MAX + 1]; /* drive_id; the guest reads its first 20 bytes as serial */
	char path[CONFIG_PATH_MAX]; /* path_on_host */
	bool readonly;              /* is_read_only */
	bool root;                  /* is_root_device */
	char partuuid[64];          /* root=PARTUUID=... when root */
	enum drive_cache cache;     /* Unsafe: FLUSH not offered; Writeback (default) */
	enum drive_io_engine io_engine; /* accepted; visor always uses io_uring */
	struct rate_limiter_config rl;
	enum virtio_transport_kind transport;
};

struct net_config {
	char id[CONFIG_ID_MAX + 1]; /* iface_id */
	char tap[16];               /* host_dev_name, IFNAMSIZ */
	char mac[18];               /* guest_mac "aa:bb:cc:dd:ee:ff" or empty: derived */
	uint32_t mtu;               /* 0: not advertised */
	struct rate_limiter_config rx_rl, tx_rl;
	enum virtio_transport_kind transport;
};

struct vsock_config {
	bool enabled;
	char id[CONFIG_ID_MAX + 1]; /* vsock_id (optional, deprecated in Firecracker) */
	uint64_t cid;
	char uds[108]; /* sun_path; visor appends _PORT, so at most 95 here */
	enum virtio_transport_kind transport;
};

struct balloon_config {
	bool enabled;
	uint64_t size;         /* target, bytes (amount_mib << 20) */
	bool deflate_on_oom;
	uint32_t stats_period; /* stats_polling_interval_s, 0 = off */
	bool no_reporting;     /* free_page_reporting false / reporting=off */
	enum virtio_transport_kind transport;
};

struct rng_config {
	bool enabled;
	struct rate_limiter_config rl;
	enum virtio_transport_kind transport;
};

/* Firecracker's logger levels, plus Off. */
enum fc_log_level { FC_LOG_OFF, FC_LOG_ERROR, FC_LOG_WARN, FC_LOG_INFO, FC_LOG_DEBUG, FC_LOG_TRACE };

struct logger_config {
	bool set;
	char path[CONFIG_PATH_MAX]; /* file or FIFO */
	enum log_level level;
	bool off;
	bool show_level, show_origin;
};

struct metrics_config {
	bool set;
	char path[CONFIG_PATH_MAX];
};

struct vm_config {
	char kernel[CONFIG_PATH_MAX];   /* empty: no boot source yet */
	char initrd[CONFIG_PATH_MAX];   /* empty: none */
	char cmdline[CONFIG_CMDLINE_MAX];
	uint32_t cpus;
	uint64_t mem_size;
	bool smt;                       /* accepted (topology: 1 thread per core) */
	bool track_dirty_pages;         /* accepted; used by snapshots later */
	uint32_t ndisks;
	struct disk_config disks[CONFIG_MAX_DISKS];
	uint32_t nnics;
	struct net_config nics[CONFIG_MAX_NICS];
	struct vsock_config vsock;
	struct balloon_config balloon;
	struct rng_config rng;
	char serial_out[CONFIG_PATH_MAX]; /* PUT /serial: console output to this file; empty: stdout */
	struct logger_config logger;
	struct metrics_config metrics;
	/* host-side settings (not guest-visible) */
	bool allow_software_kvm;
	/* guest RAM in a memfd mapped shared (--mem-shared, machine-config
	 * "mem_shared"): a local-mode migration hands it to the next visor */
	bool mem_shared;
	/* dirty-page tracking through KVM's dirty ring of this many entries
	 * per vCPU (--dirty-ring, machine-config "dirty_ring_entries"); 0:
	 * KVM's dirty bitmap.  A host without the ring uses the bitmap.
	 * @dirty_ring_set: given explicitly (a size the host refuses is then
	 * an error; the default falls back to the bitmap) */
	uint32_t dirty_ring;
	bool dirty_ring_set;
	char kvm_path[CONFIG_PATH_MAX];
	enum log_level log_level;
};

/* Defaults: 1 vCPU, 256 MiB, visor's default command line, /dev/kvm. */
void config_init(struct vm_config *c);
/* The same defaults on a config that is already all zero (no clearing:
 * the untouched path buffers stay untouched). */
void config_defaults(struct vm_config *c);

/* Error text for every config_* function: one line, no trailing period. */
struct config_err {
	char msg[256];
};

/*
 * Item setters, used by every front end.  Each validates @item on its own
 * and against @c (duplicate ids, tap names, paths, slots), then inserts it
 * or, when an item with the same id exists, replaces it (Firecracker: "a
 * PUT on an existing id is an update").  0, or -EINVAL/-ENOSPC with
 * e->msg set and @c unchanged.
 */
int config_set_disk(struct vm_config *c, const struct disk_config *d, struct config_err *e);
int config_set_net(struct vm_config *c, const struct net_config *n, struct config_err *e);
int config_set_vsock(struct vm_config *c, const struct vsock_config *v, struct config_err *e);
int config_set_balloon(struct vm_config *c, const struct balloon_config *b, struct config_err *e);
int config_set_rng(struct vm_config *c, const struct rng_config *r, struct config_err *e);
/* kernel must be non-empty; initrd/cmdline may be NULL (none / default). */
int config_set_boot(struct vm_config *c, const char *kernel, const char *initrd,
		    const char *cmdline, struct config_err *e);
int config_set_machine(struct vm_config *c, uint64_t cpus, uint64_t mem_mib, bool smt,
		       bool track_dirty_pages, struct config_err *e);
/* The dirty ring's entries per vCPU: 0 (the bitmap) or a power of two from
 * CONFIG_DIRTY_RING_MIN to CONFIG_DIRTY_RING_MAX; marks it as given. */
int config_set_dirty_ring(struct vm_config *c, uint64_t entries, struct config_err *e);

/* Single-field checks shared by the setters and the API's path ids. */
int config_check_id(const char *what, const char *id, struct config_err *e);
int config_check_rate_limiter(const char *what, const struct rate_limiter_config *rl,
			      struct config_err *e);
/* "aa:bb:cc:dd:ee:ff", unicast; 0 / -EINVAL */
int config_parse_mac(const char *s, uint8_t mac[6]);

int config_find_disk(const struct vm_config *c, const char *id);  /* index or -1 */
int config_find_net(const struct vm_config *c, const char *id);   /* index or -1 */

/* How many devices the config puts on virtio-mmio. */
uint32_t config_mmio_devices(const struct vm_config *c);

/* The whole config is bootable: a kernel is set, the balloon fits in
 * memory, at most 8 devices on virtio-mmio, at most one root drive, a
 * dirty ring size config_set_dirty_ring takes.
 * 0 / -EINVAL with e->msg. */
int config_validate(const struct vm_config *c, struct config_err *e);

/* ---- `visor run` options ---- */

/* Parse a --disk value "PATH[,readonly][,id=NAME][,transport=pci|mmio]
 * [,rate=BYTES/s][,iops=N]" into @d (defaults filled in; id "" = derive). */
int config_parse_disk(const char *val, struct disk_config *d, struct config_err *e);
/* "tap=NAME[,mac=MAC][,id=NAME][,transport=pci|mmio]" */
int config_parse_net(const char *val, struct net_config *n, struct config_err *e);
/* "cid=N,uds=PATH[,transport=pci|mmio]" (cid 3 .. 2^32-2) */
int config_parse_vsock(const char *val, struct vsock_config *v, struct config_err *e);
/* "[size=SIZE][,deflate_on_oom][,stats_period=SECONDS][,reporting=on|off]
 *  [,transport=pci|mmio]" */
int config_parse_balloon(const char *val, struct balloon_config *b, struct config_err *e);

/* A decimal number (digits only, no sign, no suffix) that fits 64 bits.
 * 0 / -EINVAL. */
int config_parse_u64(const char *v, uint64_t *out);

/* Parse a size: a number with an optional suffix K, M, G or T (binary
 * units, optional "iB"/"B"); a bare number means MiB.  0 / -EINVAL / -ERANGE. */
int parse_size(const char *s, uint64_t *out);

#endif
