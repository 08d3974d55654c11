/* SPDX-License-Identifier: MIT */
/*
 * cli_client.h - `visor ls|pause|resume|status|balloon|ctrl-alt-del|config|
 * snapshot|migrate`: drive running VMs through their API sockets, for
 * people (tables and sentences) or scripts (--json).
 */
#ifndef VISOR_CLI_CLIENT_H
#define VISOR_CLI_CLIENT_H

#include "cli.h"

/* Run the control command in @o (cmd CLI_CONTROL); returns the exit status. */
int cli_client_main(const struct cli_opts *o);

#endif
