/* SPDX-License-Identifier: MIT */
/*
 * config.h - what the user asked for, parsed from the command line.
 *
 * Parsing is pure (no I/O besides the strings) so it is unit-tested; checks
 * that need the host (files exist, memory fits, KVM vCPU limit) happen when
 * the machine is assembled.
 */
#ifndef VISOR_CONFIG_H
#define VISOR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/log.h"

enum config_action { ACTION_RUN, ACTION_HELP, ACTION_VERSION };

#define CONFIG_DEFAULT_MEM (256ULL << 20)
#define CONFIG_DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=1"
#define CONFIG_MIN_MEM (4ULL << 20)
/* xAPIC IDs in the MADT are 8-bit and 0xff is broadcast. */
#define CONFIG_MAX_CPUS 254

#define CONFIG_MAX_DISKS 8
#define CONFIG_MAX_NICS 4

enum virtio_transport_kind { TRANSPORT_PCI, TRANSPORT_MMIO };

struct disk_config {
	char path[4096];
	char id[21]; /* serial reported by GET_ID (<= 20 bytes) */
	bool readonly;
	enum virtio_transport_kind transport;
};

struct net_config {
	char tap[16];   /* IFNAMSIZ */
	char mac[18];   /* "aa:bb:cc:dd:ee:ff" or empty: derived */
	enum virtio_transport_kind transport;
};

struct vsock_config {
	bool enabled;
	uint64_t cid;
	char uds[108]; /* sun_path */
	enum virtio_transport_kind transport;
};

struct balloon_config {
	bool enabled;
	uint64_t size;  /* initial target, bytes */
	bool deflate_on_oom;
	uint32_t stats_period; /* seconds, 0 = off */
	bool no_reporting;     /* reporting=off: no free page reporting */
	enum virtio_transport_kind transport;
};

struct vm_config {
	enum config_action action;
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	uint32_t cpus;
	uint64_t mem_size;
	bool allow_software_kvm;
	const char *kvm_path;
	enum log_level log_level;
	uint32_t ndisks;
	struct disk_config disks[CONFIG_MAX_DISKS];
	bool rng;
	enum virtio_transport_kind rng_transport;
	uint32_t nnics;
	struct net_config nics[CONFIG_MAX_NICS];
	struct vsock_config vsock;
	struct balloon_config balloon;
	const char *control; /* control socket path or NULL */
};

/* Parse a --disk value "PATH[,readonly][,id=NAME][,transport=pci|mmio]".
 * 0 or -EINVAL with a message. */
int config_parse_disk(const char *val, struct disk_config *d, char *err, size_t errlen);
/* "tap=NAME[,mac=MAC][,transport=pci|mmio]" */
int config_parse_net(const char *val, struct net_config *n, char *err, size_t errlen);
/* "cid=N,uds=PATH[,transport=pci|mmio]" (cid 3 .. 2^32-2) */
int config_parse_vsock(const char *val, struct vsock_config *v, char *err, size_t errlen);
/* "[size=SIZE][,deflate_on_oom][,stats_period=SECONDS][,reporting=on|off]
 *  [,transport=pci|mmio]" */
int config_parse_balloon(const char *val, struct balloon_config *b, char *err, size_t errlen);

/* Parse "visor ARGS": argv[0] is the program, argv[1] the subcommand
 * ("run"; "--help"/"--version" also accepted alone).  Fills @cfg (strings
 * point into argv).  Returns 0, or -EINVAL with a one-line message in err. */
int config_parse_args(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen);

/* Parse a size: a number with an optional suffix K, M, G or T (binary
 * units, optional "iB"/"B"); a bare number means MiB.  0 / -EINVAL / -ERANGE. */
int parse_size(const char *s, uint64_t *out);

/* The --help text. */
extern const char config_usage[];

#endif
