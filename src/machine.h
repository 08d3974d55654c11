/* SPDX-License-Identifier: MIT */
/*
 * machine.h - one assembled virtual machine: guest RAM, kernel, firmware
 * tables, KVM VM, devices (in a registry) and vCPU threads.
 *
 * The lifecycle around it (states, requests, the API) is vm.h; this is the
 * mechanism it drives, always from the event-loop thread:
 *
 *   machine_create()   validate host-side inputs and assemble everything in
 *                      a fixed order; no vCPU runs yet
 *   machine_start()    start one thread per vCPU
 *   machine_pause()    every vCPU leaves KVM_RUN (completing a pending I/O
 *                      instruction first) and parks at a rendezvous; the
 *                      guest's kvmclock is read; every device is paused
 *   machine_resume()   kvmclock written back (the guest does not see the
 *                      pause as elapsed time), devices resumed, vCPUs run
 *   machine_stop()     vCPU threads kicked and joined
 *   machine_destroy()  devices (registry, newest first), KVM, guest RAM
 *
 * When the guest decides the VM is over (power-off, reset, panic, crash)
 * or the user quits, the machine calls on_exit(ctx, code) once (first
 * reason wins) from whatever thread noticed; the owner then stops it.
 */
#ifndef VISOR_MACHINE_H
#define VISOR_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#include "action.h"
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

struct machine;
struct loop;
struct file_image;

/* The largest kernel image visor reads. */
#define MACHINE_MAX_KERNEL_SIZE (512ULL << 20)

struct machine_hooks {
	void (*on_exit)(void *ctx, int code); /* any thread, once */
	void *ctx;
};

/* Build the machine described by @cfg (already config_validate()d) on
 * @loop.  @kernel: the kernel image read ahead of time (when the boot
 * source was set), or NULL; it is used only if cfg->kernel still names
 * that unchanged file, and only during this call.  @start_ns: when visor
 * started (boot-time report).  On failure returns NULL with one clear
 * line in err. */
struct machine *machine_create(const struct vm_config *cfg, const struct file_image *kernel,
			       struct loop *loop, const struct machine_hooks *hooks, uint64_t start_ns,
			       char *err, size_t errlen);

struct snap_reader;
/* Build the machine a snapshot describes: @cfg is the snapshot's
 * configuration (snapshot/config_section.h) with the restoring process's
 * host settings and overrides, @rd the validated state file, @mem_fd its
 * memory file (mapped private, refused unless a regular file of exactly
 * cfg->mem_size bytes).  With @uffd_sock (the Uffd backend; @mem_fd
 * unused) guest memory is anonymous and served by the page-fault handler
 * listening on that socket (mem/uffd.h): the memory layout and the
 * userfaultfd are sent to it, and it has served a first fault, before
 * anything touches guest memory.  Every section is checked before the state is
 * applied.  The machine is paused: machine_start starts vCPU threads that
 * park at once, machine_resume runs them.  @clock_realtime: the guest's
 * kvmclock moves on by the wall-clock time since the snapshot (else it
 * resumes where it was).  NULL with one line in err. */
struct machine *machine_restore(const struct vm_config *cfg, const struct snap_reader *rd,
				int mem_fd, const char *uffd_sock, bool clock_realtime,
				struct loop *loop, const struct machine_hooks *hooks, uint64_t start_ns,
				char *err, size_t errlen);

/* Write a snapshot of a paused machine: the state file @state_path and
 * guest memory to @mem_path, each through a temporary file, fsynced, the
 * disks flushed, then renamed (the memory file first, the state file
 * last).  @diff (dirty tracking on): the memory file holds only the pages
 * written since the last snapshot taken or loaded, the rest are holes (a
 * VM with no snapshot since it booted gets a Full one).  With tracking on,
 * the dirty pages start over once either kind is written.  0, or -errno
 * with one line in err (-EINVAL: not paused, or @diff without tracking,
 * -ENOTSUP: a device cannot be saved, -ENOSPC/-EFBIG/-EIO: writing); on
 * error nothing new is left under either name, the machine is still
 * paused and resumable and no dirty page is forgotten. */
int machine_snapshot(struct machine *m, const char *state_path, const char *mem_path, bool diff,
		     char *err, size_t errlen);

/* ---- live migration (migration/migrate.c; event-loop thread) ----
 * The destination builds a machine from the source's configuration with
 * anonymous guest memory (or, local mode, the source's memfd mapped
 * shared) and its disks opened but not locked (blk_uring_defer_locks);
 * the stream fills memory, machine_mig_apply applies the state (the VM
 * generation ID is kept: the same VM carries on), machine_start parks the
 * vCPUs, and machine_disks_lock + machine_resume run it. */
struct machine *machine_incoming(const struct vm_config *cfg, int memfd, struct loop *loop,
				 const struct machine_hooks *hooks, uint64_t start_ns, char *err,
				 size_t errlen);
int machine_mig_apply(struct machine *m, const struct snap_reader *rd, char *err, size_t errlen);
struct guest_mem *machine_guest_mem(struct machine *m);
bool machine_paused(const struct machine *m);
/* How dirty pages are tracked: KVM's dirty ring of *@ring_entries per
 * vCPU, or KVM's bitmap (0); and how often a vCPU found its ring full
 * (KVM_EXIT_DIRTY_RING_FULL) since the machine was built. */
void machine_dirty_log(const struct machine *m, uint32_t *ring_entries, uint64_t *full_exits);
/* Source: dirty pages from here on (KVM's log on every slot, the VMM's
 * marks) go into the migration's bitmap.  0 / -errno. */
int machine_mig_begin(struct machine *m, char *err, size_t errlen);
/* The bitmap of pages dirtied since the last call (or since begin) ORed
 * into @bits (guest_mem_bitmap_words words), their number in *@pages.
 * Pages devices hold in flight are marked again for the next pass. */
int machine_mig_collect(struct machine *m, uint64_t *bits, uint64_t *pages, char *err,
			size_t errlen);
/* Dirty logging back to what track_dirty_pages asks; throttle off. */
void machine_mig_end(struct machine *m);
/* The state container of a paused machine (config, memory section without
 * an identity, VM, vCPUs, devices).  *buf: free() it. */
int machine_mig_state(struct machine *m, uint8_t **buf, size_t *len, char *err, size_t errlen);
/* The fds of the taps the NICs have attached (at most @max): a local-mode
 * migration hands them over with guest memory (tap_adopt).  How many. */
int machine_tap_fds(struct machine *m, int *fds, int max);
/* Take or drop every disk image's lock (all or none).  0 / -errno. */
int machine_disks_lock(struct machine *m, bool take, char *err, size_t errlen);
/* Take @pct percent (0..99) of every vCPU's time away: the guest dirties
 * memory slower (auto-converge). */
void machine_set_throttle(struct machine *m, unsigned pct);
unsigned machine_throttle(const struct machine *m);

/* Start the vCPU threads and the console.  0 / -errno. */
int machine_start(struct machine *m);
/* Park every vCPU and pause every device.  0 / -errno (then nothing is
 * paused). */
int machine_pause(struct machine *m);
int machine_resume(struct machine *m);
/* Kick and join the vCPU threads (idempotent); restores the terminal. */
void machine_stop(struct machine *m);
void machine_destroy(struct machine *m);

/* The exit code once on_exit fired, else -1. */
int machine_exit_code(struct machine *m);
/* Request the VM's end as if the guest had (e.g. Ctrl-A x).  Any thread. */
void machine_request_exit(struct machine *m, int code);

struct metrics_line;
/* Add the machine's groups (vcpu, uart, i8042, each device, block/net
 * totals) to a metrics line (event-loop thread, from the metrics collect
 * callback). */
void machine_collect_metrics(struct machine *m, struct metrics_line *l);

/* ---- run-time requests (event-loop thread) ----
 * Each returns 0 or -errno with a message in err. */
int machine_ctrl_alt_del(struct machine *m, char *err, size_t errlen);
int machine_balloon_target(struct machine *m, uint64_t bytes, char *err, size_t errlen);
int machine_balloon_stats_period(struct machine *m, uint32_t seconds, char *err, size_t errlen);
int machine_balloon_stats(struct machine *m, struct balloon_stats_reply *out, char *err,
			  size_t errlen);
/* PATCH /drives/{id}: new backing file and/or rate limiter. */
int machine_drive_update(struct machine *m, const struct disk_config *d, bool path, bool rl,
			 char *err, size_t errlen);
/* PATCH /network-interfaces/{id}: rate limiters. */
int machine_net_update(struct machine *m, const struct net_config *n, bool rx, bool tx, char *err,
		       size_t errlen);
#endif
