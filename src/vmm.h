/* SPDX-License-Identifier: MIT */
/*
 * vmm.h - one virtual machine: assembly, run, teardown.
 *
 * Life cycle: vmm_create() validates every input and assembles the machine
 * in a fixed order (guest RAM, kernel, initrd, command line, firmware
 * tables, KVM VM, devices, vCPUs); vmm_run() starts one thread per vCPU and
 * runs the event loop on the calling thread until the guest powers off,
 * resets, panics or crashes, or the user quits; it returns the exit status.
 */
#ifndef VISOR_VMM_H
#define VISOR_VMM_H

#include "config.h"

/* Process exit statuses (documented in --help and the README). */
enum vmm_exit {
	VMM_EXIT_POWEROFF = 0,
	VMM_EXIT_ERROR = 1,
	VMM_EXIT_REBOOT = 2,
	VMM_EXIT_PANIC = 3,
	VMM_EXIT_CRASH = 4,
	VMM_EXIT_QUIT = 130,
};

struct vmm;

/* Build the machine described by @cfg.  On failure returns NULL after
 * logging one clear error line.  @start_ns: when visor started (boot time). */
struct vmm *vmm_create(const struct vm_config *cfg, uint64_t start_ns);

/* Run until the VM stops; returns an enum vmm_exit value. */
int vmm_run(struct vmm *vm);

void vmm_destroy(struct vmm *vm);

#endif
