/* SPDX-License-Identifier: MIT */
/*
 * Per-thread seccomp filters (libseccomp).
 *
 * Every thread of a running visor belongs to one kind and runs under that
 * kind's filter from before it handles any guest or API input: the event
 * loop ("vmm", the main thread), each vCPU, the API server, the console
 * writer, the migration connection threads and the post-copy threads.
 * The default action kills the process (SIGSYS); --seccomp-log logs
 * instead.  docs/security.md lists each kind's system calls and why.
 *
 * A seccomp filter is inherited by the threads a thread creates, and a
 * thread can only narrow what it inherited.  So threads are not created by
 * the thread that wants them but by the "spawner", a thread started before
 * any filter whose own filter allows what every kind needs plus clone; it
 * handles no input, only requests from sec_thread_create.  The new thread
 * installs its kind's filter before it runs its function, so each thread's
 * effective filter is its kind's.
 */
#ifndef VISOR_SECCOMP_H
#define VISOR_SECCOMP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

enum sec_kind {
	SEC_VMM,	/* the event loop (main thread) once the guest runs */
	SEC_VCPU,	/* a vCPU */
	SEC_API,	/* the API server */
	SEC_CONSOLE,	/* the console writer */
	SEC_MIGRATION,	/* a migration's connection thread (either side) */
	SEC_POSTCOPY,	/* post-copy's fault and loop-step threads */
	SEC_MIG_RUN,	/* a migration's connection thread once connected:
			 * added on top of SEC_MIGRATION (sec_enter) before
			 * the first byte of the stream is read */
	SEC_SPAWNER,	/* creates the others */
	SEC_SETUP,	/* the event loop until the guest first runs; then the
			 * short-lived threads that run the API's control
			 * operations needing more than SEC_VMM (sec_run_wide) */
	SEC_NKINDS
};

enum sec_mode {
	SEC_MODE_KILL,	/* default: a forbidden system call kills the process */
	SEC_MODE_LOG,	/* --seccomp-log: it is logged and allowed */
	SEC_MODE_OFF,	/* --no-seccomp */
};

/* The name of @k in filter files and messages ("vmm", "vcpu", ...); NULL
 * if out of range. */
const char *sec_kind_name(enum sec_kind k);

/* Parse a filter file (docs/security.md, "Filter files") from @json:
 * replaces the rules of the kinds it names.  0, or -EINVAL with a message
 * in @err.  The parsed rules stay in use until sec_reset. */
int sec_load_filter_json(const char *json, size_t len, char *err, size_t errlen);

/* Set the mode and, unless it is off, start the spawner (with the filter
 * file's rules, if one was loaded).  Call once, before any other thread
 * exists.  0, or -errno with a message in @err. */
int sec_init(enum sec_mode mode, char *err, size_t errlen);

/* Install the filter of kind @k on the calling thread (nothing when off).
 * 0, or -errno. */
int sec_enter(enum sec_kind k);

/* pthread_create, through the spawner when filters are on: the thread
 * installs @k's filter, then runs @fn(@arg).  @attr may be NULL.  The
 * caller's signal mask is the new thread's, as with pthread_create.
 * Returns 0 or an error number, as pthread_create does. */
int sec_thread_create(enum sec_kind k, pthread_t *t, const pthread_attr_t *attr,
		      void *(*fn)(void *), void *arg);

/* The event loop's filters come in two stages.  From start-up (before
 * any input) the main thread runs under SEC_SETUP: configuration, the
 * kernel, devices, a snapshot's load, an incoming migration's build.
 * When the guest first runs, sec_loop_narrow() adds SEC_VMM's filter on
 * top (the kernel applies both: the thread keeps only what both allow),
 * so the code a guest drives on the loop (device emulation, rings, I/O
 * completions) runs under the short list.  Call it on the main thread;
 * once is enough (later calls do nothing).  0, or -errno. */
int sec_loop_narrow(void);

/* Whether sec_loop_narrow() ran (and filters are on). */
bool sec_loop_narrowed(void);

/* Run @fn(@arg) with the setup list: directly while the loop is not
 * narrowed (or filters are off), else on a new thread of kind SEC_SETUP
 * while the caller waits for it (every signal blocked there).  For the
 * API's control operations after the guest runs that need files or
 * set-up calls (a snapshot's files, a drive's new image, a migration's
 * start, the teardown).  0, or an error number if the thread could not
 * be made (then @fn did not run). */
int sec_run_wide(void (*fn)(void *arg), void *arg);

/* Print the built-in rules of every kind as a filter file (JSON). */
int sec_print_builtin(void);

/* Whether filters are installed (mode not off, sec_init done). */
bool sec_active(void);

/* Testing: forget the filter file's rules and the mode. */
void sec_reset(void);

/* Testing: build kind @k's filter (nothing installed) and return the
 * number of rules in it, or -errno. */
int sec_rule_count(enum sec_kind k);

/* Testing: whether kind @k's rules allow system call @nr with arguments
 * @args (6 values), evaluated by visor's own reading of the rules. */
bool sec_allows(enum sec_kind k, int nr, const unsigned long long *args);

#endif
