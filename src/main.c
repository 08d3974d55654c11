/* SPDX-License-Identifier: MIT */
/*
 * main.c - visor's command line: parse options, build the VM, run it.
 */
#include <signal.h>
#include <stdio.h>

#include "config.h"
#include "util/log.h"
#include "vmm.h"

int main(int argc, char **argv)
{
	/* Boot time is measured from here: exec-to-main of this static binary
	 * is well under a millisecond. */
	uint64_t start = now_ns();
	struct vm_config cfg;
	char err[256];
	if (config_parse_args(argc, argv, &cfg, err, sizeof(err))) {
		log_error("%s", err);
		return VMM_EXIT_ERROR;
	}
	if (cfg.action == ACTION_HELP) {
		fputs(config_usage, stdout);
		return 0;
	}
	if (cfg.action == ACTION_VERSION) {
		printf("visor %s\n", VISOR_VERSION);
		return 0;
	}
	log_set_level(cfg.log_level);
	/* A closed console must not kill the VMM: writes then fail with EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	struct vmm *vm = vmm_create(&cfg, start);
	if (!vm)
		return VMM_EXIT_ERROR;
	int code = vmm_run(vm);
	vmm_destroy(vm);
	return code;
}
