/* SPDX-License-Identifier: MIT */
/*
 * cli_migrate.h - `visor migrate VM --to URL [options]`, `--cancel` and
 * `--status`: start a live migration through the VM's API socket
 * (PUT /migration/send), follow it (GET /migration every
 * CLI_MIG_POLL_MS) with a progress bar on a terminal or a line per pass
 * otherwise, and end with a one-line summary (docs/api.md, "Live
 * migration").
 *
 * The formatting, the status parser and the decisions of the poll loop
 * are pure functions, unit-tested; cli_migrate_main() does the I/O.
 */
#ifndef VISOR_CLI_MIGRATE_H
#define VISOR_CLI_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include "action.h"
#include "cli.h"

/* GET /migration while a migration runs: often enough to see the
 * source's final "Completed" (it answers for about 2 s before it exits). */
#define CLI_MIG_POLL_MS 150

/* Run `visor migrate` as @o says (ctl_verb "migrate") against the API
 * socket @sock; returns the exit status (0 migrated / cancelled as asked,
 * 1 failed or refused). */
int cli_migrate_main(const char *sock, const struct cli_opts *o);

/* GET /migration's body (docs/api.md) -> *@s (zeroed first; fields it
 * does not know are ignored, so a newer visor's status still reads).
 * "state" is required and must be one of the known names.  0, or -EINVAL
 * with one line in @err. */
int cli_mig_status_parse(const char *json, size_t len, struct mig_status *s, char *err,
			 size_t errlen);

/* PUT /migration/send's body for @p: url and every option (the TLS
 * object only when p->tls.enabled, server_name only when set), strings
 * escaped.  malloc'd; NULL when memory runs out. */
char *cli_mig_send_body(const struct mig_send_params *p);

/* @path made absolute against @cwd (the VM's process resolves names
 * against its own working directory, not this command's); "unix:PATH"
 * URLs likewise (other URLs are copied).  0, or -ENAMETOOLONG when the
 * result does not fit in @len bytes. */
int cli_mig_abs_path(const char *path, const char *cwd, char *out, size_t len);
int cli_mig_abs_url(const char *url, const char *cwd, char *out, size_t len);

/* The progress bar for a terminal @width columns wide: one line without
 * newline or escape codes, at most @width - 1 characters, e.g.
 * "pass 2 [#######-------]  45%  sent 1843 MiB, left 2253 MiB, 850.3 MiB/s,
 * dirty 12.0 MiB/s, ETA 3 s, throttle 20%". */
void cli_mig_progress(const struct mig_status *s, unsigned width, char *buf, size_t len);

/* The line printed for each pass (and each change of state) when stderr
 * is not a terminal, e.g. "pass 2: sent 1843 MiB, left 2253 MiB, 850.3
 * MiB/s, dirty 12.0 MiB/s, expected downtime 14 ms, throttle 20%". */
void cli_mig_pass_line(const struct mig_status *s, char *buf, size_t len);

/* The last line.  Completed: "migrated VM to URL in X.Y s: N MiB sent in
 * P passes, downtime D ms"; @gone (the source's API went away after it
 * said Switchover or Completed, before the final status was read):
 * "migrated VM to URL: completed (the source exited before its final
 * status was read)"; Failed or Cancelled: "migration of VM to URL failed
 * after X.Y s: ERROR" ("was cancelled after ..."). */
void cli_mig_summary(const char *vm, const char *url, const struct mig_status *s, bool gone,
		     char *buf, size_t len);

/* What the poll loop does next. */
enum cli_mig_next {
	CLI_MIG_WAIT,    /* in flight: poll again */
	CLI_MIG_DONE,    /* Completed: exit 0 */
	CLI_MIG_FAILED,  /* Failed, Cancelled, or no migration at all: exit 1 */
};

/* After reading a status in state @st. */
enum cli_mig_next cli_mig_next(enum mig_state_kind st);

/* The API socket went away (no socket file, nobody listening, the
 * connection closed mid-answer) after the last status read said @last:
 * the source exits 0 once it has handed the VM over, so Switchover or
 * Completed means done; anything earlier means the source died. */
enum cli_mig_next cli_mig_after_gone(enum mig_state_kind last);

#endif
