/* SPDX-License-Identifier: MIT */
/*
 * clones.h - `visor restore DIR --clones N`: N VMs from one snapshot.
 *
 * Each clone is its own visor process (a failure in one brings down no
 * other), started as `visor run --restore DIR ... --id ID-K --ready-fd 3`
 * in its own session, with its console in SOCKDIR/ID-K.console and visor's
 * log in SOCKDIR/ID-K.log.  They
 * all map the one memory file copy-on-write, so a clone costs only the
 * pages it writes.  The command returns once every clone has written
 * "ready ID-K" to the shared pipe (or has died, which is reported with its
 * exit status and the last line of its log); the clones keep running,
 * managed with `visor ls`, `visor pause ID-K`, ...
 *
 * Before anything starts, the snapshot's configuration is read and a set
 * that would collide is refused: with N > 1 every network interface and
 * the vsock socket need an override holding "{n}" (replaced by K), as two
 * VMs cannot share a tap or a socket path.
 */
#ifndef VISOR_CLONES_H
#define VISOR_CLONES_H

#include <stddef.h>

#include "cli.h"
#include "config.h"

/* Clone @k's command line: @argv without --clones and --id (and their
 * values), "{n}" replaced by @k in every argument, then "--id PREFIX-K"
 * and "--ready-fd FD".  A NULL-terminated vector (free with
 * clones_argv_free), or NULL when out of memory. */
char **clones_child_argv(int argc, char *const *argv, const char *prefix, unsigned k,
			 int ready_fd);
void clones_argv_free(char **av);

/* The id prefix: --id, else the snapshot directory's last component when
 * it is a valid id, else "clone".  @out holds CONFIG_ID_MAX + 1 bytes; the
 * prefix is short enough for "-K" of @n clones. */
void clones_prefix(const struct cli_opts *o, char *out, size_t len);

/* 0, or -EINVAL with a message: N clones of a snapshot configured as @snap
 * (its NICs and vsock) with @o's overrides would share a tap, a vsock
 * socket or an API socket. */
int clones_check(const struct cli_opts *o, const struct vm_config *snap, char *err, size_t len);

/* Start o->clones clones of o->restore_dir; @argv is visor's command line.
 * Returns the process exit status: 0 when all run, 1 otherwise. */
int clones_run(int argc, char **argv, const struct cli_opts *o);

#endif
