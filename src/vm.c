/* SPDX-License-Identifier: MIT */
#include "vm.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backends/block.h"
#include "event/loop.h"
#include "machine.h"
#include "metrics.h"
#include "migration/migrate.h"
#include "seccomp.h"
#include "snapshot/config_section.h"
#include "snapshot/format.h"
#include "snapshot/mem_section.h"
#include "util/file.h"
#include "util/log.h"
#include "util/str.h"

/* Firecracker's own words for requests in the wrong state, so tools that
 * match on them keep working. */
#define MSG_BEFORE_START "The requested operation is not supported before starting the microVM."
#define MSG_AFTER_START "The requested operation is not supported after starting the microVM."

/* A request handed over by another thread: an action, or (vm_call) a
 * function to run on the loop. */
struct pending {
	const struct vm_action *a;
	struct vm_reply *rep;
	void (*fn)(struct vm *vm, void *arg);
	void *arg;
	bool done;
	struct pending *next;
};

struct vm {
	enum vm_state state;
	struct vm_config cfg;
	struct vm_params p;
	char id[CONFIG_ID_MAX + 1];
	struct loop loop;
	bool loop_ready;
	struct machine *m;
	struct file_image kernel_pre; /* read when the boot source is set */
	uint64_t started_ns;
	_Atomic int exit_code;   /* -1 until the VM (or the process) ends */
	int exit_efd;            /* the machine says the guest is over */
	int act_efd;             /* vm_submit queued something */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	struct pending *head, **tail;
	bool loop_done;          /* no more actions are run */
	bool configured;         /* a boot resource was configured: no snapshot load */
	bool narrow_due;         /* narrow once the loop call that ran the guest returned */
	struct metrics metrics;
	bool metrics_ready;
	uint64_t act_count[ACT_KIND_COUNT], act_fails[ACT_KIND_COUNT];
	struct migration *mig;   /* the last migration started in this process, or NULL */
};

static const char *const state_names[] = {"Not started", "Running", "Paused", "Stopped"};

const char *vm_state_name(enum vm_state s)
{
	return (unsigned)s < 4 ? state_names[s] : "?";
}

enum vm_state vm_get_state(struct vm *vm)
{
	return vm->state;
}

struct loop *vm_loop(struct vm *vm)
{
	return &vm->loop;
}

__attribute__((format(printf, 3, 4))) static void refuse(struct vm_reply *rep, int status,
							  const char *fmt, ...)
{
	rep->status = status;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rep->fault, sizeof(rep->fault), fmt, ap);
	va_end(ap);
}

/* ---- the guest ends ------------------------------------------------------ */

static void on_machine_exit(void *ctx, int code)
{
	struct vm *vm = ctx;
	int expected = -1;
	atomic_compare_exchange_strong(&vm->exit_code, &expected, code);
	uint64_t one = 1;
	ssize_t r = write(vm->exit_efd, &one, sizeof(one));
	(void)r;
}

static void stop_vm(struct vm *vm)
{
	if (vm->m) {
		machine_stop(vm->m);
		vm->state = VM_STOPPED;
	}
}

static void on_exit_efd(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct vm *vm = ctx;
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
	stop_vm(vm);
	if (vm->p.exit_when_stopped || atomic_load(&vm->exit_code) >= 0)
		loop_stop(l);
}

void vm_shutdown(struct vm *vm, int code)
{
	on_machine_exit(vm, code);
}

/* ---- actions ------------------------------------------------------------- */

static bool before_start(struct vm *vm, struct vm_reply *rep)
{
	if (vm->state == VM_NOT_STARTED)
		return true;
	refuse(rep, 400, MSG_AFTER_START);
	return false;
}

static bool after_start(struct vm *vm, struct vm_reply *rep)
{
	if (vm->state == VM_RUNNING || vm->state == VM_PAUSED)
		return true;
	refuse(rep, 400, vm->state == VM_NOT_STARTED ? MSG_BEFORE_START : "The microVM has stopped.");
	return false;
}

/* Apply a config change on a copy; if the setter (@call, on c_ with e_)
 * accepts it, run @act on the running machine (non-zero: refused with err,
 * a char array in scope), and commit the copy only when both succeed. */
#define UPDATE_CONFIG_THEN(vm, rep, call, act)                                               \
	do {                                                                                \
		struct vm_config *tmp_ = malloc(sizeof(*tmp_));                             \
		struct config_err e_;                                                       \
		if (!tmp_) {                                                                \
			refuse(rep, 500, "out of memory");                                  \
			break;                                                              \
		}                                                                           \
		*tmp_ = (vm)->cfg;                                                          \
		struct vm_config *c_ = tmp_;                                                \
		if (call) {                                                                 \
			refuse(rep, 400, "%s", e_.msg);                                     \
		} else if (act) {                                                           \
			refuse(rep, 400, "%s", err);                                        \
		} else {                                                                    \
			(vm)->cfg = *tmp_;                                                  \
			rep->status = 204;                                                  \
		}                                                                           \
		free(tmp_);                                                                 \
	} while (0)
#define UPDATE_CONFIG(vm, rep, call) UPDATE_CONFIG_THEN(vm, rep, call, 0)

/* A PATCH of a rate limiter replaces the buckets it names and keeps the
 * others (Firecracker's BucketUpdate). */
static void merge_rl(struct rate_limiter_config *cur, const struct rate_limiter_config *upd,
		     uint8_t given)
{
	if (given & FC_RL_BANDWIDTH)
		cur->bandwidth = upd->bandwidth;
	if (given & FC_RL_OPS)
		cur->ops = upd->ops;
}

/* machine-config's dirty_ring_entries (visor's own field): a PATCH
 * changes it only when given; a PUT replaces the whole machine
 * configuration, so without it the ring is back to the default. */
static int set_machine_ring(struct vm_config *c, const struct vm_action *a, bool put,
			    struct config_err *e)
{
	if (a->has_dirty_ring)
		return config_set_dirty_ring(c, a->u.machine.dirty_ring, e);
	if (put) {
		c->dirty_ring = CONFIG_DIRTY_RING_DEFAULT;
		c->dirty_ring_set = false;
	}
	return 0;
}

static void do_start(struct vm *vm, struct vm_reply *rep)
{
	struct config_err e;
	if (config_validate(&vm->cfg, &e)) {
		refuse(rep, 400, "Cannot start the microVM: %s", e.msg);
		return;
	}
	char err[512];
	struct machine_hooks h = {on_machine_exit, vm};
	uint64_t t0 = now_ns();
	struct machine *m = machine_create(&vm->cfg, &vm->kernel_pre, &vm->loop, &h, vm->p.start_ns,
					   err, sizeof(err));
	file_image_free(&vm->kernel_pre); /* the guest has its copy */
	if (!m) {
		refuse(rep, 400, "Cannot start the microVM: %s", err);
		return;
	}
	int r = machine_start(m);
	if (r) {
		machine_destroy(m);
		refuse(rep, 400, "Cannot start the microVM: %s", strerror(-r));
		return;
	}
	vm->m = m;
	vm->started_ns = now_ns();
	vm->state = VM_RUNNING;
	rep->status = 204;
	/* the InstanceStart-to-first-instruction cost (bench/api's start row) */
	log_info("InstanceStart: machine assembled and vCPUs started in %llu us",
		 (unsigned long long)((vm->started_ns - t0) / 1000));
}

/* PUT /snapshot/load on a fresh process.  Everything that can be checked
 * is checked before anything is built; a load that fails ends the process
 * once the reply is sent (Firecracker does the same). */
static void do_load(struct vm *vm, const struct snapshot_load *l, struct vm_reply *rep)
{
	char err[512];
	uint8_t *buf = NULL;
	size_t len = 0;
	struct snap_reader rd;
	struct vm_config *cfg = malloc(sizeof(*cfg));
	int mem_fd = -1;
	if (!cfg) {
		refuse(rep, 500, "out of memory");
		goto fail;
	}
	int r = snap_file_read(l->state_path, &buf, &len, err, sizeof(err));
	if (!r)
		r = snap_reader_open(buf, len, &rd, err, sizeof(err));
	if (r) {
		refuse(rep, 400, "Cannot load the snapshot: %s: %s", l->state_path, err);
		goto fail;
	}
	uint32_t version;
	const uint8_t *p;
	size_t plen;
	if (snap_reader_find(&rd, SNAP_CONFIG_ID, &version, &p, &plen)) {
		refuse(rep, 400, "Cannot load the snapshot: %s: no configuration section",
		       l->state_path);
		goto fail;
	}
	*cfg = vm->cfg; /* the host-side settings of this process */
	if (snap_config_read(p, plen, version, cfg, err, sizeof(err))) {
		refuse(rep, 400, "Cannot load the snapshot: %s: %s", l->state_path, err);
		goto fail;
	}
	/* a Diff's memory file is not guest RAM until merged onto its base */
	struct snap_mem_info mi;
	bool has_mem;
	if (snap_mem_find(&rd, &mi, &has_mem, err, sizeof(err))) {
		refuse(rep, 400, "Cannot load the snapshot: %s: %s", l->state_path, err);
		goto fail;
	}
	if (mi.kind == SNAP_MEM_DIFF) {
		char hex[2 * SNAP_MEM_ID_LEN + 1];
		snap_mem_id_hex(mi.base, hex);
		refuse(rep, 400,
		       "Cannot load the snapshot: %s is a Diff snapshot: its memory file holds only "
		       "the pages written since snapshot %s; merge it onto its base first (visor "
		       "snapshot merge BASE DIFF)",
		       l->state_path, hex);
		goto fail;
	}
	if (mi.kind == SNAP_MEM_MERGING) {
		refuse(rep, 400,
		       "Cannot load the snapshot: %s: a merge of a Diff snapshot onto it was "
		       "interrupted, so its memory file may be either; run visor snapshot merge "
		       "again",
		       l->state_path);
		goto fail;
	}
	if (has_mem && mi.size != cfg->mem_size) {
		refuse(rep, 400,
		       "Cannot load the snapshot: %s: its memory section says %llu bytes, its "
		       "configuration %llu MiB",
		       l->state_path, (unsigned long long)mi.size,
		       (unsigned long long)(cfg->mem_size >> 20));
		goto fail;
	}
	if (l->track_dirty_pages)
		cfg->track_dirty_pages = true;
	/* overrides: each names an interface the snapshot has */
	struct config_err e;
	for (uint32_t i = 0; i < l->nnet; i++) {
		int at = config_find_net(cfg, l->net[i].iface);
		if (at < 0) {
			refuse(rep, 400, "Cannot load the snapshot: network_overrides: the snapshot "
					 "has no interface '%s'", l->net[i].iface);
			goto fail;
		}
		struct net_config n = cfg->nics[at];
		snprintf(n.tap, sizeof(n.tap), "%s", l->net[i].tap);
		if (config_set_net(cfg, &n, &e)) {
			refuse(rep, 400, "Cannot load the snapshot: network_overrides: %s", e.msg);
			goto fail;
		}
	}
	if (l->has_vsock_uds) {
		if (!cfg->vsock.enabled) {
			refuse(rep, 400, "Cannot load the snapshot: vsock_override: the snapshot has "
					 "no vsock device");
			goto fail;
		}
		struct vsock_config v = cfg->vsock;
		snprintf(v.uds, sizeof(v.uds), "%s", l->vsock_uds);
		if (config_set_vsock(cfg, &v, &e)) {
			refuse(rep, 400, "Cannot load the snapshot: vsock_override: %s", e.msg);
			goto fail;
		}
	}
	uint64_t msize = cfg->mem_size;
	/* Uffd: the handler has the memory file; visor only knows its socket */
	mem_fd = l->uffd ? -1 : file_open_regular(l->mem_path, &msize);
	if (!l->uffd && mem_fd < 0) {
		refuse(rep, 400, "Cannot load the snapshot: memory file %s: %s", l->mem_path,
		       mem_fd == -EINVAL ? "not a regular file" : strerror(-mem_fd));
		goto fail;
	}
	if (msize != cfg->mem_size) {
		refuse(rep, 400,
		       "Cannot load the snapshot: memory file %s is %llu bytes, the snapshot's "
		       "memory is %llu",
		       l->mem_path, (unsigned long long)msize, (unsigned long long)cfg->mem_size);
		goto fail;
	}
	struct machine_hooks h = {on_machine_exit, vm};
	uint64_t t0 = now_ns();
	struct machine *m = machine_restore(cfg, &rd, mem_fd, l->uffd ? l->mem_path : NULL,
					    l->clock_realtime, &vm->loop, &h, vm->p.start_ns, err,
					    sizeof(err));
	if (mem_fd >= 0)
		close(mem_fd);
	mem_fd = -1;
	if (!m) {
		refuse(rep, 400, "Cannot load the snapshot: %s", err);
		goto fail;
	}
	r = machine_start(m);
	if (r) {
		machine_destroy(m);
		refuse(rep, 400, "Cannot load the snapshot: %s", strerror(-r));
		goto fail;
	}
	vm->cfg = *cfg;
	vm->m = m;
	vm->started_ns = now_ns();
	vm->state = VM_PAUSED;
	if (l->resume_vm) {
		r = machine_resume(m);
		if (r) {
			refuse(rep, 400, "The snapshot was loaded but the microVM cannot resume: %s",
			       strerror(-r));
			goto fail;
		}
		vm->state = VM_RUNNING;
	}
	log_info("snapshot %s loaded in %llu us%s", l->state_path,
		 (unsigned long long)((now_ns() - t0) / 1000), l->resume_vm ? " and resumed" : "");
	free(buf);
	free(cfg);
	return;
fail:
	if (mem_fd >= 0)
		close(mem_fd);
	free(buf);
	free(cfg);
	log_error("%s", rep->fault);
	rep->exit_after = true;
	rep->exit_code = VMM_EXIT_ERROR;
}

static void fill_info(struct vm *vm, struct vm_reply *rep)
{
	rep->state = vm->state;
	snprintf(rep->id, sizeof(rep->id), "%s", vm->id);
	snprintf(rep->version, sizeof(rep->version), "%s", VISOR_VERSION);
	rep->uptime_ms = vm->started_ns ? (now_ns() - vm->started_ns) / 1000000ULL : 0;
}

/* Requests by kind, Firecracker's groups and names (get_api_requests, ...). */
static const struct {
	enum vm_action_kind kind;
	const char *group, *key;
} act_metric[] = {
	{ACT_GET_INFO, "get_api_requests", "instance_info"},
	{ACT_GET_VERSION, "get_api_requests", "vmm_version"},
	{ACT_GET_VM_CONFIG, "get_api_requests", "vm_config"},
	{ACT_GET_MACHINE_CONFIG, "get_api_requests", "machine_cfg"},
	{ACT_GET_BALLOON, "get_api_requests", "balloon"},
	{ACT_GET_BALLOON_STATS, "get_api_requests", "balloon_stats"},
	{ACT_INSTANCE_START, "put_api_requests", "actions"},
	{ACT_SEND_CTRL_ALT_DEL, "put_api_requests", "actions"},
	{ACT_FLUSH_METRICS, "put_api_requests", "actions"},
	{ACT_PUT_BOOT_SOURCE, "put_api_requests", "boot_source"},
	{ACT_PUT_DRIVE, "put_api_requests", "drive"},
	{ACT_PUT_LOGGER, "put_api_requests", "logger"},
	{ACT_PUT_MACHINE_CONFIG, "put_api_requests", "machine_cfg"},
	{ACT_PUT_METRICS, "put_api_requests", "metrics"},
	{ACT_PUT_NET, "put_api_requests", "network"},
	{ACT_PUT_VSOCK, "put_api_requests", "vsock"},
	{ACT_PUT_BALLOON, "put_api_requests", "balloon"},
	{ACT_PUT_ENTROPY, "put_api_requests", "entropy"},
	{ACT_PUT_SERIAL, "put_api_requests", "serial"},
	{ACT_PATCH_DRIVE, "patch_api_requests", "drive"},
	{ACT_PATCH_NET, "patch_api_requests", "network"},
	{ACT_PATCH_MACHINE_CONFIG, "patch_api_requests", "machine_cfg"},
	{ACT_PATCH_BALLOON, "patch_api_requests", "balloon"},
	{ACT_PATCH_BALLOON_STATS, "patch_api_requests", "balloon_stats"},
	{ACT_PAUSE, "patch_api_requests", "vm"},
	{ACT_RESUME, "patch_api_requests", "vm"},
};

/* The metrics line (loop thread): requests, then the machine's groups. */
static void vm_collect_metrics(struct metrics_line *l, void *ctx)
{
	struct vm *vm = ctx;
	static const char *const groups[] = {"get_api_requests", "put_api_requests",
					     "patch_api_requests"};
	for (size_t g = 0; g < 3; g++) {
		metrics_group_begin(l, groups[g]);
		/* several kinds share one key (the actions): sum them */
		for (size_t i = 0; i < sizeof(act_metric) / sizeof(act_metric[0]); i++) {
			if (strcmp(act_metric[i].group, groups[g]))
				continue;
			bool first = true;
			for (size_t j = 0; j < i; j++)
				if (!strcmp(act_metric[j].group, groups[g]) &&
				    !strcmp(act_metric[j].key, act_metric[i].key))
					first = false;
			if (!first)
				continue;
			uint64_t n = 0, f = 0;
			for (size_t j = i; j < sizeof(act_metric) / sizeof(act_metric[0]); j++) {
				if (strcmp(act_metric[j].group, groups[g]) ||
				    strcmp(act_metric[j].key, act_metric[i].key))
					continue;
				n += vm->act_count[act_metric[j].kind];
				f += vm->act_fails[act_metric[j].kind];
			}
			char key[64];
			snprintf(key, sizeof(key), "%s_count", act_metric[i].key);
			metrics_add_counter(l, key, n);
			snprintf(key, sizeof(key), "%s_fails", act_metric[i].key);
			metrics_add_counter(l, key, f);
		}
		metrics_group_end(l);
	}
	if (vm->m)
		machine_collect_metrics(vm->m, l);
}

static void vm_execute_one(struct vm *vm, const struct vm_action *a, struct vm_reply *rep);

/* Requests that configure the VM to boot: after one of them succeeded a
 * snapshot can no longer be loaded into this process (Firecracker: only
 * the logger and metrics may come first; visor also lets the serial
 * output path, a host-side setting the restore keeps, come first). */
static bool configures_boot(enum vm_action_kind k)
{
	switch (k) {
	case ACT_PUT_MACHINE_CONFIG:
	case ACT_PATCH_MACHINE_CONFIG:
	case ACT_PUT_BOOT_SOURCE:
	case ACT_PUT_DRIVE:
	case ACT_PATCH_DRIVE:
	case ACT_PUT_NET:
	case ACT_PATCH_NET:
	case ACT_PUT_VSOCK:
	case ACT_PUT_ENTROPY:
	case ACT_PUT_BALLOON:
	case ACT_PATCH_BALLOON:
	case ACT_PATCH_BALLOON_STATS:
		return true;
	default:
		return false;
	}
}

/* Requests a migration in flight cannot allow: they would change what is
 * being moved (the run state, a disk's image, the saved state) under it. */
static bool blocked_by_migration(enum vm_action_kind k)
{
	switch (k) {
	case ACT_PAUSE:
	case ACT_RESUME:
	case ACT_SNAPSHOT_CREATE:
	case ACT_PATCH_DRIVE:
		return true;
	default:
		return false;
	}
}

/* Requests that run on the loop under its narrow filter once the guest
 * runs (docs/security.md, "Two stages"): they need no file, socket or
 * set-up call.  The others (a snapshot's files, a drive's new image, a
 * rate limiter's timer, a migration's start) run on a short-lived
 * thread with the set-up list while the loop waits. */
static bool runs_narrow(enum vm_action_kind k)
{
	switch (k) {
	case ACT_NONE:
	case ACT_GET_INFO:
	case ACT_GET_VERSION:
	case ACT_GET_VM_CONFIG:
	case ACT_GET_MACHINE_CONFIG:
	case ACT_GET_BALLOON:
	case ACT_GET_BALLOON_STATS:
	case ACT_PATCH_BALLOON:
	case ACT_PAUSE:
	case ACT_RESUME:
	case ACT_SEND_CTRL_ALT_DEL:
	case ACT_FLUSH_METRICS:
	case ACT_MIGRATION_GET:
		return true;
	default:
		return false;
	}
}

/* The guest runs: the loop's filter narrows (once; sec_loop_narrow). */
static void vm_narrow(struct vm *vm)
{
	if (vm->state != VM_RUNNING)
		return;
	int r = sec_loop_narrow(); /* nothing once narrowed, or with filters off */
	if (r) {
		/* fail closed, as a thread that cannot be confined */
		log_error("seccomp: cannot install the vmm filter: %s; stopping", strerror(-r));
		vm_shutdown(vm, VMM_EXIT_ERROR);
	}
}

struct wide_exec {
	struct vm *vm;
	const struct vm_action *a;
	struct vm_reply *rep;
};

static void wide_exec(void *p)
{
	struct wide_exec *w = p;
	vm_execute_one(w->vm, w->a, w->rep);
}

void vm_execute(struct vm *vm, const struct vm_action *a, struct vm_reply *rep)
{
	const char *why = NULL;
	if (blocked_by_migration(a->kind) && vm_mig_busy(vm))
		why = "A migration is in progress: cancel it first (PATCH /migration "
		      "{\"state\": \"Cancelled\"}).";
	/* a destination waiting for (or receiving) a migration: its
	 * configuration comes from the source */
	if (vm->state == VM_NOT_STARTED && vm->mig && mig_incoming(vm->mig) &&
	    (configures_boot(a->kind) || a->kind == ACT_INSTANCE_START ||
	     a->kind == ACT_SNAPSHOT_LOAD))
		why = "This microVM is receiving a live migration: its configuration comes from "
		      "the source.";
	if (why) {
		refuse(rep, 400, "%s", why);
		vm->act_count[a->kind]++;
		vm->act_fails[a->kind]++;
		return;
	}
	if (!runs_narrow(a->kind)) {
		/* in place until the loop narrowed */
		struct wide_exec w = {vm, a, rep};
		int e = sec_run_wide(wide_exec, &w);
		if (e)
			refuse(rep, 400, "Cannot run the request: no thread for it: %s", strerror(e));
	} else {
		vm_execute_one(vm, a, rep);
	}
	vm_narrow(vm);
	if (rep->status < 400 && vm->state == VM_NOT_STARTED && configures_boot(a->kind))
		vm->configured = true;
	if ((unsigned)a->kind < ACT_KIND_COUNT) {
		vm->act_count[a->kind]++;
		if (rep->status >= 400)
			vm->act_fails[a->kind]++;
	}
}

static void vm_execute_one(struct vm *vm, const struct vm_action *a, struct vm_reply *rep)
{
	char err[512] = "";
	int r;
	/* @rep comes zeroed (callers calloc it); only the header is reset here,
	 * so a GET that reports no configuration never touches the 60 KiB of
	 * rep->config */
	rep->status = 204;
	rep->fault[0] = 0;
	switch (a->kind) {
	case ACT_NONE:
		refuse(rep, 400, "empty request");
		break;
	case ACT_GET_INFO:
	case ACT_GET_VERSION:
		fill_info(vm, rep);
		rep->status = 200;
		break;
	case ACT_GET_VM_CONFIG:
	case ACT_GET_MACHINE_CONFIG:
		fill_info(vm, rep);
		rep->config = vm->cfg;
		rep->status = 200;
		break;
	case ACT_GET_BALLOON:
		if (!vm->cfg.balloon.enabled) {
			refuse(rep, 400, "Invalid request method: no balloon device is configured.");
			break;
		}
		fill_info(vm, rep);
		rep->config = vm->cfg;
		if (vm->m && machine_balloon_stats(vm->m, &rep->balloon, err, sizeof(err)) == 0)
			rep->config.balloon.size = rep->balloon.target_pages << 12;
		rep->status = 200;
		break;
	case ACT_GET_BALLOON_STATS:
		if (!vm->cfg.balloon.enabled) {
			refuse(rep, 400, "Invalid request method: no balloon device is configured.");
		} else if (!vm->cfg.balloon.stats_period) {
			refuse(rep, 400, "Statistics for the balloon device are not enabled");
		} else if (!after_start(vm, rep)) {
		} else if (machine_balloon_stats(vm->m, &rep->balloon, err, sizeof(err))) {
			refuse(rep, 400, "%s", err);
		} else {
			rep->status = 200;
		}
		break;
	case ACT_PUT_MACHINE_CONFIG:
	case ACT_PATCH_MACHINE_CONFIG: {
		if (!before_start(vm, rep))
			break;
		bool put = a->kind == ACT_PUT_MACHINE_CONFIG;
		uint64_t cpus = put || a->has_cpus ? a->u.machine.cpus : vm->cfg.cpus;
		uint64_t mem = put || a->has_mem ? a->u.machine.mem_mib : vm->cfg.mem_size >> 20;
		bool smt = put ? a->u.machine.smt : a->has_smt ? a->u.machine.smt : vm->cfg.smt;
		bool track = put ? a->u.machine.track_dirty_pages
				 : a->has_track_dirty ? a->u.machine.track_dirty_pages
						      : vm->cfg.track_dirty_pages;
		UPDATE_CONFIG(vm, rep,
			      config_set_machine(c_, cpus, mem, smt, track, &e_) ||
				      set_machine_ring(c_, a, put, &e_));
		break;
	}
	case ACT_PUT_BOOT_SOURCE:
		if (!before_start(vm, rep))
			break;
		UPDATE_CONFIG(vm, rep,
			      config_set_boot(c_, a->u.boot.kernel,
					      a->u.boot.has_initrd ? a->u.boot.initrd : NULL,
					      a->u.boot.has_cmdline ? a->u.boot.cmdline
								    : CONFIG_FC_DEFAULT_CMDLINE,
					      &e_));
		/* Read the kernel now rather than in InstanceStart (Firecracker
		 * too opens it here).  Best effort: a file that cannot be read is
		 * reported by InstanceStart, as before. */
		if (rep->status == 204 && file_image_load(&vm->kernel_pre, vm->cfg.kernel,
							  MACHINE_MAX_KERNEL_SIZE))
			log_debug("kernel '%s' not read ahead; InstanceStart will try again",
				  vm->cfg.kernel);
		break;
	case ACT_PUT_DRIVE: {
		if (!before_start(vm, rep))
			break;
		struct disk_config d = a->u.disk;
		d.transport = vm->p.api_transport;
		UPDATE_CONFIG(vm, rep, config_set_disk(c_, &d, &e_));
		break;
	}
	case ACT_PATCH_DRIVE: {
		if (!after_start(vm, rep))
			break;
		int i = config_find_disk(&vm->cfg, a->u.disk.id);
		if (i < 0) {
			refuse(rep, 400, "Invalid block device ID: %s", a->u.disk.id);
			break;
		}
		struct disk_config d = vm->cfg.disks[i];
		if (a->has_path)
			snprintf(d.path, sizeof(d.path), "%s", a->u.disk.path);
		if (a->has_rl)
			merge_rl(&d.rl, &a->u.disk.rl, a->has_rl);
		UPDATE_CONFIG_THEN(vm, rep, config_set_disk(c_, &d, &e_),
				   machine_drive_update(vm->m, &d, a->has_path, a->has_rl, err,
							sizeof(err)));
		break;
	}
	case ACT_PUT_NET: {
		if (!before_start(vm, rep))
			break;
		struct net_config n = a->u.net;
		n.transport = vm->p.api_transport;
		UPDATE_CONFIG(vm, rep, config_set_net(c_, &n, &e_));
		break;
	}
	case ACT_PATCH_NET: {
		if (!after_start(vm, rep))
			break;
		int i = config_find_net(&vm->cfg, a->u.net.id);
		if (i < 0) {
			refuse(rep, 400, "Invalid network interface ID: %s", a->u.net.id);
			break;
		}
		struct net_config n = vm->cfg.nics[i];
		if (a->has_rx_rl)
			merge_rl(&n.rx_rl, &a->u.net.rx_rl, a->has_rx_rl);
		if (a->has_tx_rl)
			merge_rl(&n.tx_rl, &a->u.net.tx_rl, a->has_tx_rl);
		struct config_err e;
		if (config_check_rate_limiter("network interface", &n.rx_rl, &e) ||
		    config_check_rate_limiter("network interface", &n.tx_rl, &e)) {
			refuse(rep, 400, "%s", e.msg);
		} else if (machine_net_update(vm->m, &n, a->has_rx_rl, a->has_tx_rl, err, sizeof(err))) {
			refuse(rep, 400, "%s", err);
		} else {
			vm->cfg.nics[i] = n;
		}
		break;
	}
	case ACT_PUT_VSOCK: {
		if (!before_start(vm, rep))
			break;
		struct vsock_config v = a->u.vsock;
		v.transport = vm->p.api_transport;
		UPDATE_CONFIG(vm, rep, config_set_vsock(c_, &v, &e_));
		break;
	}
	case ACT_PUT_ENTROPY: {
		if (!before_start(vm, rep))
			break;
		struct rng_config g = a->u.rng;
		g.transport = vm->p.api_transport;
		UPDATE_CONFIG(vm, rep, config_set_rng(c_, &g, &e_));
		break;
	}
	case ACT_PUT_BALLOON: {
		if (!before_start(vm, rep))
			break;
		struct balloon_config b = a->u.balloon;
		b.transport = vm->p.api_transport;
		UPDATE_CONFIG(vm, rep, config_set_balloon(c_, &b, &e_));
		break;
	}
	case ACT_PATCH_BALLOON: {
		if (!vm->cfg.balloon.enabled) {
			refuse(rep, 400, "Invalid request method: no balloon device is configured.");
			break;
		}
		struct balloon_config b = vm->cfg.balloon;
		b.size = a->u.balloon.size;
		UPDATE_CONFIG_THEN(vm, rep, config_set_balloon(c_, &b, &e_),
				   vm->m && machine_balloon_target(vm->m, b.size, err, sizeof(err)));
		break;
	}
	case ACT_PATCH_BALLOON_STATS: {
		if (!vm->cfg.balloon.enabled) {
			refuse(rep, 400, "Invalid request method: no balloon device is configured.");
			break;
		}
		uint32_t s = a->u.balloon.stats_period;
		if (s > 86400) {
			refuse(rep, 400, "balloon: stats_polling_interval_s must be 0 to 86400");
		} else if (vm->m) {
			if (machine_balloon_stats_period(vm->m, s, err, sizeof(err)))
				refuse(rep, 400, "%s", err);
			else
				vm->cfg.balloon.stats_period = s;
		} else {
			vm->cfg.balloon.stats_period = s;
		}
		break;
	}
	case ACT_INSTANCE_START:
		if (!before_start(vm, rep))
			break;
		do_start(vm, rep);
		break;
	case ACT_SEND_CTRL_ALT_DEL:
		if (!after_start(vm, rep))
			break;
		if (machine_ctrl_alt_del(vm->m, err, sizeof(err)))
			refuse(rep, 400, "%s", err);
		break;
	case ACT_FLUSH_METRICS:
		if (!vm->metrics_ready)
			refuse(rep, 400, "The metrics system is not initialized.");
		else if ((r = metrics_flush(&vm->metrics)) && r != -EAGAIN)
			refuse(rep, 400, "Cannot flush the metrics: %s", strerror(-r));
		break;
	case ACT_PAUSE:
		if (!after_start(vm, rep))
			break;
		if (vm->state == VM_PAUSED)
			break;
		r = machine_pause(vm->m);
		if (r)
			refuse(rep, 400, "Failed to pause the microVM: %s", strerror(-r));
		else
			vm->state = VM_PAUSED;
		break;
	case ACT_RESUME:
		if (!after_start(vm, rep))
			break;
		if (vm->state == VM_RUNNING)
			break;
		r = machine_resume(vm->m);
		if (r)
			refuse(rep, 400, "Failed to resume the microVM: %s", strerror(-r));
		else
			vm->state = VM_RUNNING;
		break;
	case ACT_PUT_LOGGER: {
		if (!before_start(vm, rep))
			break;
		const struct logger_config *lc = &a->u.logger;
		struct log_options lo = {
			.path = lc->path[0] ? lc->path : NULL,
			.level = lc->level,
			.off = lc->off,
			.show_level = lc->show_level,
			.show_origin = lc->show_origin,
			.instance_id = vm->id,
		};
		if (log_configure(&lo, err, sizeof(err))) {
			refuse(rep, 400, "Cannot configure the logger: %s", err);
			break;
		}
		vm->cfg.logger = *lc;
		vm->cfg.logger.set = true;
		break;
	}
	case ACT_PUT_METRICS: {
		if (!before_start(vm, rep))
			break;
		if (vm->metrics_ready) {
			refuse(rep, 400, "Reinitialization of metrics not allowed.");
			break;
		}
		struct metrics_options mo = {
			.path = a->u.metrics.path,
			.loop = &vm->loop,
			.collect = vm_collect_metrics,
			.ctx = vm,
			.instance_id = vm->id,
		};
		if (metrics_init(&vm->metrics, &mo, err, sizeof(err))) {
			refuse(rep, 400, "Cannot initialize the metrics: %s", err);
			break;
		}
		vm->metrics_ready = true;
		vm->cfg.metrics = a->u.metrics;
		vm->cfg.metrics.set = true;
		break;
	}
	case ACT_PUT_SERIAL:
		if (!before_start(vm, rep))
			break;
		snprintf(vm->cfg.serial_out, sizeof(vm->cfg.serial_out), "%s", a->u.serial_out);
		break;
	case ACT_SNAPSHOT_CREATE:
		if (!after_start(vm, rep))
			break;
		/* Firecracker's refusal and wording (up to 1.12; later ones
		 * guess the dirty pages from mincore(2) instead) */
		if (a->u.snap.diff && !vm->cfg.track_dirty_pages) {
			refuse(rep, 400, "Diff snapshots are not allowed on uVMs with dirty page "
					 "tracking disabled.");
			break;
		}
		if (vm->state != VM_PAUSED) {
			refuse(rep, 400, "Cannot create a snapshot: the microVM must be paused first "
					 "(PATCH /vm {\"state\": \"Paused\"}).");
			break;
		}
		if (machine_snapshot(vm->m, a->u.snap.state_path, a->u.snap.mem_path, a->u.snap.diff,
				     err, sizeof(err)))
			refuse(rep, 400, "Cannot create the snapshot: %s", err);
		break;
	case ACT_SNAPSHOT_LOAD:
		if (!before_start(vm, rep))
			break;
		if (vm->configured) {
			refuse(rep, 400, "Loading a microVM snapshot not allowed after configuring "
					 "boot-specific resources.");
			break;
		}
		do_load(vm, &a->u.load, rep);
		break;
	case ACT_MIGRATION_SEND:
		if (!after_start(vm, rep))
			break;
		if (vm->mig && mig_in_flight(vm->mig)) {
			refuse(rep, 400, "A migration is already in progress.");
			break;
		}
		mig_destroy(vm->mig);
		vm->mig = NULL;
		if (mig_send_start(vm, &vm->cfg, &a->u.mig_send, &vm->mig, err, sizeof(err)))
			refuse(rep, 400, "Cannot start the migration: %s", err);
		break;
	case ACT_MIGRATION_RECEIVE:
		if (!before_start(vm, rep))
			break;
		if (vm->configured || vm->mig) {
			refuse(rep, 400, "An incoming migration needs a fresh process: nothing "
					 "configured and no migration received before.");
			break;
		}
		if (mig_recv_start(vm, &a->u.mig_recv, &vm->mig, err, sizeof(err)))
			refuse(rep, 400, "Cannot receive a migration: %s", err);
		break;
	case ACT_MIGRATION_GET:
		rep->status = 200;
		if (vm->mig)
			mig_get_status(vm->mig, &rep->mig);
		else
			rep->mig.state = MIGS_NONE;
		rep->mig.dirty_log = MIG_DIRTY_NONE;
		if (vm->m) {
			machine_dirty_log(vm->m, &rep->mig.dirty_ring_entries,
					  &rep->mig.dirty_ring_full_exits);
			rep->mig.dirty_log = rep->mig.dirty_ring_entries ? MIG_DIRTY_RING
									 : MIG_DIRTY_BITMAP;
		}
		break;
	case ACT_MIGRATION_CANCEL:
		if (!vm->mig || !mig_in_flight(vm->mig)) {
			refuse(rep, 400, "No migration is in progress.");
			break;
		}
		if (mig_cancel(vm->mig, err, sizeof(err)))
			refuse(rep, 400, "Cannot cancel the migration: %s", err);
		break;
	}
}

/* ---- live migration's steps on the loop (migration/migrate.c) --------------- */

struct machine *vm_machine(struct vm *vm)
{
	return vm->m;
}

bool vm_mig_busy(struct vm *vm)
{
	return vm->mig && mig_in_flight(vm->mig) && !mig_incoming(vm->mig);
}

int vm_mig_pause(struct vm *vm, bool *was_running)
{
	*was_running = false;
	if (!vm->m || (vm->state != VM_RUNNING && vm->state != VM_PAUSED))
		return -ESHUTDOWN;
	if (vm->state == VM_PAUSED)
		return 0;
	int r = machine_pause(vm->m);
	if (r)
		return r;
	vm->state = VM_PAUSED;
	*was_running = true;
	return 0;
}

int vm_mig_resume(struct vm *vm)
{
	if (!vm->m || vm->state != VM_PAUSED)
		return vm->state == VM_RUNNING ? 0 : -ESHUTDOWN;
	int r = machine_resume(vm->m);
	if (!r)
		vm->state = VM_RUNNING;
	return r;
}

int vm_mig_incoming_build(struct vm *vm, const struct snap_reader *hello, int memfd,
			  struct guest_mem **mem, char *err, size_t errlen)
{
	if (vm->state != VM_NOT_STARTED || vm->m)
		return err_set(err, errlen, -EINVAL, "the destination is not a fresh VM");
	struct vm_config *cfg = malloc(sizeof(*cfg));
	if (!cfg)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	uint32_t version;
	const uint8_t *p;
	size_t plen;
	char e[512];
	int r = snap_reader_find(hello, SNAP_CONFIG_ID, &version, &p, &plen);
	*cfg = vm->cfg; /* this process's host-side settings */
	if (!r && (r = snap_config_read(p, plen, version, cfg, e, sizeof(e)))) {
		err_set(err, errlen, r, "the source's configuration: %s", e);
		free(cfg);
		return r;
	}
	/* the source holds the disks' locks until the switch-over */
	blk_uring_defer_locks(true);
	struct machine_hooks h = {on_machine_exit, vm};
	struct machine *m = machine_incoming(cfg, memfd, &vm->loop, &h, vm->p.start_ns, e,
					     sizeof(e));
	blk_uring_defer_locks(false);
	if (!m) {
		free(cfg);
		return err_set(err, errlen, -EINVAL, "cannot build the VM: %s", e);
	}
	vm->cfg = *cfg;
	free(cfg);
	vm->m = m;
	*mem = machine_guest_mem(m);
	return 0;
}

int vm_mig_incoming_apply(struct vm *vm, const struct snap_reader *rd, char *err, size_t errlen)
{
	if (!vm->m || vm->state != VM_NOT_STARTED)
		return err_set(err, errlen, -EINVAL, "no incoming machine");
	int r = machine_mig_apply(vm->m, rd, err, errlen);
	if (r)
		return r;
	r = machine_start(vm->m); /* vCPU threads park until the resume */
	if (r)
		return err_set(err, errlen, r, "cannot start the vCPU threads: %s", strerror(-r));
	vm->state = VM_PAUSED;
	vm->started_ns = now_ns();
	return 0;
}

int vm_mig_incoming_run(struct vm *vm, char *err, size_t errlen)
{
	if (!vm->m || vm->state != VM_PAUSED)
		return err_set(err, errlen, -EINVAL, "no incoming machine ready to run");
	int r = machine_disks_lock(vm->m, true, err, errlen);
	if (r)
		return r;
	r = machine_resume(vm->m);
	if (r) {
		(void)machine_disks_lock(vm->m, false, NULL, 0);
		return err_set(err, errlen, r, "cannot resume: %s", strerror(-r));
	}
	vm->state = VM_RUNNING;
	/* the loop narrows right after this call has returned to the
	 * migration's thread (on_act_efd), before it handles anything else:
	 * the source hears RUNNING without waiting for the filter's build */
	vm->narrow_due = true;
	return 0;
}

/* ---- requests from other threads ------------------------------------------ */

static void on_act_efd(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct vm *vm = ctx;
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
	for (;;) {
		pthread_mutex_lock(&vm->qlock);
		struct pending *p = vm->head;
		if (p) {
			vm->head = p->next;
			if (!vm->head)
				vm->tail = &vm->head;
		}
		pthread_mutex_unlock(&vm->qlock);
		if (!p)
			break;
		if (p->fn)
			p->fn(vm, p->arg);
		else
			vm_execute(vm, p->a, p->rep);
		pthread_mutex_lock(&vm->qlock);
		p->done = true;
		pthread_cond_broadcast(&vm->qcond);
		pthread_mutex_unlock(&vm->qlock);
		if (vm->narrow_due) {
			vm->narrow_due = false;
			vm_narrow(vm);
		}
	}
}

/* Queue @p for the loop and wait until it ran.  -ESHUTDOWN (not queued)
 * once the loop has ended. */
static int run_on_loop(struct vm *vm, struct pending *p)
{
	pthread_mutex_lock(&vm->qlock);
	if (vm->loop_done) {
		pthread_mutex_unlock(&vm->qlock);
		return -ESHUTDOWN;
	}
	*vm->tail = p;
	vm->tail = &p->next;
	pthread_mutex_unlock(&vm->qlock);
	uint64_t one = 1;
	ssize_t w = write(vm->act_efd, &one, sizeof(one));
	(void)w;
	pthread_mutex_lock(&vm->qlock);
	while (!p->done)
		pthread_cond_wait(&vm->qcond, &vm->qlock);
	pthread_mutex_unlock(&vm->qlock);
	return 0;
}

int vm_call(struct vm *vm, void (*fn)(struct vm *vm, void *arg), void *arg)
{
	struct pending p = {NULL, NULL, fn, arg, false, NULL};
	return run_on_loop(vm, &p);
}

int vm_submit(struct vm *vm, const struct vm_action *a, struct vm_reply *rep)
{
	struct pending p = {a, rep, NULL, NULL, false, NULL};
	if (run_on_loop(vm, &p)) {
		refuse(rep, 400, "The microVM has stopped.");
		return -ESHUTDOWN;
	}
	return p.rep->status == 400 && vm->loop_done ? -ESHUTDOWN : 0;
}

/* ---- life ------------------------------------------------------------------ */

struct vm *vm_create(const struct vm_config *cfg, const struct vm_params *p)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return NULL;
	vm->cfg = *cfg;
	vm->p = *p;
	snprintf(vm->id, sizeof(vm->id), "%s", p->id ? p->id : "anonymous-instance");
	vm->state = VM_NOT_STARTED;
	atomic_store(&vm->exit_code, -1);
	pthread_mutex_init(&vm->qlock, NULL);
	pthread_cond_init(&vm->qcond, NULL);
	vm->tail = &vm->head;
	vm->exit_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vm->act_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int r = loop_init(&vm->loop);
	if (vm->exit_efd < 0 || vm->act_efd < 0 || r) {
		log_error("cannot create the event loop: %s", strerror(r ? -r : errno));
		goto fail;
	}
	vm->loop_ready = true;
	if ((r = loop_add(&vm->loop, vm->exit_efd, EPOLLIN, on_exit_efd, vm)) ||
	    (r = loop_add(&vm->loop, vm->act_efd, EPOLLIN, on_act_efd, vm))) {
		log_error("cannot set up the event loop: %s", strerror(-r));
		goto fail;
	}
	return vm;
fail:
	vm_destroy(vm);
	return NULL;
}

int vm_run(struct vm *vm)
{
	int r = loop_run(&vm->loop);
	if (r)
		on_machine_exit(vm, VMM_EXIT_ERROR);
	/* Nothing more runs on the loop: answer whoever is still waiting. */
	pthread_mutex_lock(&vm->qlock);
	vm->loop_done = true;
	pthread_mutex_unlock(&vm->qlock);
	on_act_efd(&vm->loop, vm->act_efd, 0, vm);
	stop_vm(vm);
	int code = atomic_load(&vm->exit_code);
	return code < 0 ? 0 : code;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	/* its thread reads guest memory: it ends before the machine goes */
	mig_destroy(vm->mig);
	vm->mig = NULL;
	if (vm->metrics_ready) {
		/* the last line covers the time since the previous one */
		(void)metrics_flush(&vm->metrics);
		metrics_destroy(&vm->metrics);
		vm->metrics_ready = false;
	}
	if (vm->m) {
		machine_destroy(vm->m);
		vm->m = NULL;
	}
	file_image_free(&vm->kernel_pre);
	if (vm->loop_ready)
		loop_destroy(&vm->loop);
	if (vm->exit_efd >= 0)
		close(vm->exit_efd);
	if (vm->act_efd >= 0)
		close(vm->act_efd);
	pthread_mutex_destroy(&vm->qlock);
	pthread_cond_destroy(&vm->qcond);
	free(vm);
}
