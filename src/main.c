/* SPDX-License-Identifier: MIT */
/*
 * main.c - visor's command line: parse options, build the VM, run it.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>

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
	/* vsock connections, disks and taps each take descriptors: allow what
	 * the hard limit allows. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	struct vmm *vm = vmm_create(&cfg, start);
	if (!vm)
		return VMM_EXIT_ERROR;
	int code = vmm_run(vm);
	vmm_destroy(vm);
	return code;
}
