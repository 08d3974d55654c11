/* SPDX-License-Identifier: MIT */
/*
 * vm.h - the VM lifecycle: one state machine, typed actions, the loop.
 *
 *   NOT_STARTED --InstanceStart--> RUNNING <--Pause/Resume--> PAUSED
 *        |                            |                          |
 *        +----------------------------+--------------------------+--> STOPPED
 *                       (guest power-off/reset/panic/crash, Ctrl-A x, error)
 *
 * The state and the configuration are owned by the event-loop thread.
 * Every request (the API, the config file, `visor run`) is a struct
 * vm_action (action.h); vm_execute() checks it against the state and
 * either changes nothing (reply 400 with a fault message) or applies it.
 * Other threads hand actions over with vm_submit(), which queues the action,
 * wakes the loop through an eventfd and waits for the reply.
 */
#ifndef VISOR_VM_H
#define VISOR_VM_H

#include <stdbool.h>
#include <stdint.h>

#include "action.h"
#include "config.h"

struct vm;
struct loop;

struct vm_params {
	const char *id;                 /* instance id */
	uint64_t start_ns;              /* process start (boot-time report) */
	enum virtio_transport_kind api_transport; /* transport of devices the API adds */
	bool exit_when_stopped;         /* stop the loop when the guest ends */
};

/* A VM in NOT_STARTED with @cfg as its configuration (host settings such
 * as kvm_path come from it too).  NULL on failure (logged). */
struct vm *vm_create(const struct vm_config *cfg, const struct vm_params *p);
void vm_destroy(struct vm *vm);

/* The loop every part of the VM runs on. */
struct loop *vm_loop(struct vm *vm);

/* Run @a now (event-loop thread only) and fill @rep, which the caller
 * provides zeroed (calloc). */
void vm_execute(struct vm *vm, const struct vm_action *a, struct vm_reply *rep);

/* Run @a on the loop from another thread and wait for the reply.
 * Returns 0, or -ESHUTDOWN when the loop has ended (rep is then a 400). */
int vm_submit(struct vm *vm, const struct vm_action *a, struct vm_reply *rep);

/* Run the event loop until the VM stops (or vm_shutdown()).  Returns the
 * process exit status (enum vmm_exit; 0 when shut down before start). */
int vm_run(struct vm *vm);
/* Make vm_run return (any thread): stops a running guest with @code. */
void vm_shutdown(struct vm *vm, int code);

enum vm_state vm_get_state(struct vm *vm);

/* ---- for migration/migrate.c ----
 * vm_call runs @fn(vm, @arg) on the loop and waits for it; -ESHUTDOWN
 * (fn not run) once the loop has ended.  The rest run on the loop. */
int vm_call(struct vm *vm, void (*fn)(struct vm *vm, void *arg), void *arg);
struct machine *vm_machine(struct vm *vm);
/* An outgoing migration is in flight (state changes are refused). */
bool vm_mig_busy(struct vm *vm);
/* Pause for the switch-over (*was_running: it was running) / resume after
 * a failed or cancelled one.  0 / -errno (-ESHUTDOWN: the VM ended). */
int vm_mig_pause(struct vm *vm, bool *was_running);
int vm_mig_resume(struct vm *vm);
struct snap_reader;
struct guest_mem;
/* Destination: build the machine HELLO's configuration describes (this
 * process's host settings kept; disks opened without their locks; @memfd
 * >= 0: local mode, guest memory is that memfd), its guest memory in
 * *@mem; apply the state (vCPUs start parked; VM Paused); take the
 * disks' locks and run.  0 / -errno with one line in err. */
int vm_mig_incoming_build(struct vm *vm, const struct snap_reader *hello, int memfd,
			  struct guest_mem **mem, char *err, size_t errlen);
int vm_mig_incoming_apply(struct vm *vm, const struct snap_reader *rd, char *err, size_t errlen);
int vm_mig_incoming_run(struct vm *vm, char *err, size_t errlen);
const char *vm_state_name(enum vm_state s);

#endif
