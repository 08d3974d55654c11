/* SPDX-License-Identifier: MIT */
/*
 * migration/migrate.h - live migration of a running VM to another visor
 * process (docs/migration-protocol.md, docs/architecture.md "Live
 * migration").
 *
 * Each migration has its own thread, which owns the connection; what must
 * happen on the event loop (dirty-log passes, the pause, the state, the
 * build and run of the destination's machine) it asks for with vm_call.
 * The loop starts, queries and cancels migrations (vm.c); nothing here
 * blocks the loop.
 *
 * Source (PUT /migration/send): connect, HELLO (configuration), then
 * pre-copy: all of memory, then passes over the pages dirtied meanwhile,
 * until the last pass is expected to fit in downtime_limit_ms at the
 * measured bandwidth (vCPUs throttled when the guest dirties faster than
 * the link carries); then pause, the last dirty pages, the state, and the
 * hand-over: READY from the destination, the disks' locks dropped, GO,
 * RUNNING.  Any failure or a cancel before GO leaves the source running
 * as before; after GO the source stays paused unless the destination said
 * it cannot run.  On success the process exits 0.
 *
 * Destination (PUT /migration/receive, visor run --incoming): listen,
 * accept one source, feed every message to the checked state machine of
 * stream.h, build the machine, fill memory, apply the state, run at GO.
 * Any failure ends the process with a non-zero status, having run
 * nothing.
 */
#ifndef VISOR_MIGRATION_MIGRATE_H
#define VISOR_MIGRATION_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include "../action.h"

struct vm;
struct migration;

/* Start migrating @vm (running or paused; loop thread).  @cfg is copied.
 * 0 and *out, or -errno with one line in err (bad URL, TLS files, local
 * mode without shared memory). */
int mig_send_start(struct vm *vm, const struct vm_config *cfg, const struct mig_send_params *p,
		   struct migration **out, char *err, size_t errlen);
/* Listen for an incoming migration into @vm (fresh; loop thread): the
 * socket is bound before this returns.  0 and *out, or -errno. */
int mig_recv_start(struct vm *vm, const struct mig_recv_params *p, struct migration **out,
		   char *err, size_t errlen);
void mig_get_status(struct migration *m, struct mig_status *out);
/* Setup, Active, Switchover or Postcopy. */
bool mig_in_flight(struct migration *m);
bool mig_incoming(struct migration *m);
/* Cancel (source): -EINVAL once the destination was told to run. */
int mig_cancel(struct migration *m, char *err, size_t errlen);
/* Cancel if in flight, wait for the thread, free.  NULL is fine. */
void mig_destroy(struct migration *m);

#endif
