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

enum virtio_transport_kind { TRANSPORT_PCI, TRANSPORT_MMIO };

struct disk_config {
	char path[4096];
	char id[21]; /* serial reported by GET_ID (<= 20 bytes) */
	bool readonly;
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
};

/* Parse a --disk value "PATH[,readonly][,id=NAME][,transport=pci|mmio]".
 * 0 or -EINVAL with a message. */
int config_parse_disk(const char *val, struct disk_config *d, char *err, size_t errlen);

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
