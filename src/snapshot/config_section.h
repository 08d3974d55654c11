/* SPDX-License-Identifier: MIT */
/*
 * snapshot/config_section.h - the VM's configuration in a snapshot: section
 * "config", what a restore needs to build the same machine (vCPUs, memory,
 * boot source, drives, network interfaces, vsock, balloon, entropy, each
 * with its transport), docs/snapshot-format.md "Configuration".
 *
 * Decoding does not fill a struct vm_config directly: it reads each item
 * and hands it to the same setters the command line, the config file and
 * the API use (config_set_machine, config_set_disk, ...), and runs
 * config_validate, so a snapshot's configuration passes exactly the checks
 * any other configuration passes.  Host-side settings (logger, metrics,
 * serial output, the KVM device) are not in the snapshot: the restoring
 * process keeps its own.
 */
#ifndef VISOR_SNAPSHOT_CONFIG_SECTION_H
#define VISOR_SNAPSHOT_CONFIG_SECTION_H

#include <stddef.h>
#include <stdint.h>

#include "../config.h"
#include "format.h"

#define SNAP_CONFIG_ID "config"
#define SNAP_CONFIG_VERSION 1

/* Write section "config" for @c. */
void snap_config_write(const struct vm_config *c, struct snap_writer *w);

/* Decode a "config" payload onto @out, which holds the restoring process's
 * configuration: its host-side settings are kept, everything the snapshot
 * defines is replaced.  0, or -EINVAL with a one-line message (a malformed
 * payload, an unknown version, or what the setter refused); @out is
 * unchanged on error. */
int snap_config_read(const uint8_t *p, size_t len, uint32_t version, struct vm_config *out,
		     char *err, size_t errlen);

#endif
