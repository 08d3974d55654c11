/* SPDX-License-Identifier: MIT */
/*
 * main.c - visor's entry: parse the command line, then either drive a
 * running VM (ls, pause, ...) or be a VMM: create the VM (NOT_STARTED),
 * configure it (options of `visor run`, or Firecracker's config file),
 * serve the API, start it, run the event loop until it ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "cli.h"
#include "seccomp.h"
#include "cli_client.h"
#include "jailer.h"
#include "machine.h"
#include "clones.h"
#include "snapshot/format.h"
#include "snapshot/mem_section.h"
#include "snapshot/merge.h"
#include "util/file.h"
#include "util/log.h"
#include "vm.h"

/* What visor may have open at once: every vsock connection
 * (VIRTIO_VSOCK_MAX_CONNS) plus devices, disks, taps, the API's clients,
 * files and the loop's own fds with room to spare. */
#define VISOR_FD_LIMIT 2048

/* The soft limit on open files set to what visor needs: lowered from a
 * larger one (a compromised visor gets no more fds than it can use),
 * raised from a smaller one as far as the hard limit allows. */
static void set_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	rlim_t want = VISOR_FD_LIMIT;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
		want = rl.rlim_max;
	if (rl.rlim_cur != want) {
		rl.rlim_cur = want;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Run one action on the not-yet-running loop (this thread is the loop
 * thread); log and fail on refusal. */
static int apply(struct vm *vm, const struct vm_action *a, const char *what)
{
	struct vm_reply *rep = calloc(1, sizeof(*rep));
	if (!rep)
		return -1;
	vm_execute(vm, a, rep);
	int ok = rep->status < 300;
	/* a failed start was already explained by whoever failed */
	const char *last = log_last_error();
	if (!ok && !(last[0] && strstr(rep->fault, last)))
		log_error("%s: %s", what, rep->fault);
	free(rep);
	return ok ? 0 : -1;
}

/* --ready-fd: "ready ID\n" once the VM runs (or, --paused, is loaded),
 * then the descriptor is closed (`visor restore --clones` waits on it). */
static void signal_ready(struct cli_opts *o)
{
	if (!o->has_ready_fd)
		return;
	char line[CONFIG_ID_MAX + 16];
	int n = snprintf(line, sizeof(line), "ready %s\n", o->id);
	if (write(o->ready_fd, line, (size_t)n) != n)
		log_warn("--ready-fd %d: %s", o->ready_fd, strerror(errno));
	close(o->ready_fd);
	o->has_ready_fd = false;
}

/* The filters (seccomp.h): the filter file, the mode, the spawner.  Before
 * any other thread exists. */
static int seccomp_setup(const struct cli_opts *o)
{
	char err[256] = "";
	if (o->no_seccomp && (o->seccomp_filter[0] || o->seccomp_log)) {
		log_error("--no-seccomp goes with neither --seccomp-filter nor --seccomp-log");
		return -1;
	}
	if (o->seccomp_filter[0]) {
		size_t len = 0;
		char *buf = file_read_small(o->seccomp_filter, 1 << 20, &len, err, sizeof(err));
		if (!buf) {
			log_error("--seccomp-filter %s: %s", o->seccomp_filter, err);
			return -1;
		}
		int r = sec_load_filter_json(buf, len, err, sizeof(err));
		free(buf);
		if (r) {
			log_error("--seccomp-filter %s: %s", o->seccomp_filter, err);
			return -1;
		}
	}
	log_prepare();
	enum sec_mode m = o->no_seccomp ? SEC_MODE_OFF : o->seccomp_log ? SEC_MODE_LOG : SEC_MODE_KILL;
#ifdef VISOR_SECCOMP_LEARN
	/* a build for finding what the lists miss (docs/security.md): log
	 * unless told otherwise */
	if (m == SEC_MODE_KILL)
		m = SEC_MODE_LOG;
#endif
	if (sec_init(m, err, sizeof(err))) {
		log_error("%s", err);
		return -1;
	}
	return 0;
}

struct teardown {
	struct api_server *api;
	struct vm *vm;
};

static void teardown(void *p)
{
	struct teardown *t = p;
	api_stop(t->api);
	vm_destroy(t->vm);
}

static int run_vmm(struct cli_opts *o, uint64_t start)
{
	/* the event loop's filter, before any input is handled (the
	 * configuration, a snapshot, the API) */
	if (sec_enter(SEC_SETUP)) {
		log_error("seccomp: cannot install the setup filter");
		return VMM_EXIT_ERROR;
	}
	bool fc = o->cmd == CLI_FIRECRACKER;
	char sock[128] = "";
	if (!o->no_api) {
		if (o->api_sock[0]) {
			snprintf(sock, sizeof(sock), "%s", o->api_sock);
		} else {
			/* `visor run`: SOCKDIR/ID.sock, so `visor ls` finds it */
			char dir[96];
			if (cli_socket_dir(dir, sizeof(dir)) || api_ensure_dir(dir)) {
				log_warn("no API socket: cannot use the socket directory (set VISOR_RUN_DIR or --api-sock)");
			} else if (cli_socket_path(o->id, sock, sizeof(sock))) {
				sock[0] = 0;
			}
		}
	}
	struct vm_params p = {
		.id = o->id,
		.start_ns = start,
		.api_transport = fc && !o->enable_pci ? TRANSPORT_MMIO : TRANSPORT_PCI,
		.exit_when_stopped = true,
	};
	struct vm *vm = vm_create(&o->cfg, &p);
	if (!vm)
		return VMM_EXIT_ERROR;
	int code = VMM_EXIT_ERROR;
	struct api_server *api = NULL;
	/* The logger and metrics flags are the same actions as PUT /logger and
	 * PUT /metrics. */
	if (o->log_path[0] || o->level_set || o->show_level || o->show_origin) {
		struct vm_action *a = calloc(1, sizeof(*a));
		if (!a)
			goto out;
		a->kind = ACT_PUT_LOGGER;
		snprintf(a->u.logger.path, sizeof(a->u.logger.path), "%s", o->log_path);
		a->u.logger.level = o->level;
		a->u.logger.off = o->cfg.logger.off;
		a->u.logger.show_level = o->show_level;
		a->u.logger.show_origin = o->show_origin;
		int r = apply(vm, a, "--log-path");
		free(a);
		if (r)
			goto out;
	}
	if (o->metrics_path[0]) {
		struct vm_action *a = calloc(1, sizeof(*a));
		if (!a)
			goto out;
		a->kind = ACT_PUT_METRICS;
		snprintf(a->u.metrics.path, sizeof(a->u.metrics.path), "%s", o->metrics_path);
		int r = apply(vm, a, "--metrics-path");
		free(a);
		if (r)
			goto out;
	}
	if (fc)
		log_info("Running visor %s (Firecracker API %s)", VISOR_VERSION, "1.17.0");
	if (fc && o->config_file[0]) {
		char err[512];
		if (api_apply_config_file(vm, o->config_file, err, sizeof(err))) {
			log_error("--config-file %s: %s", o->config_file, err);
			goto out;
		}
	}
	if (sock[0]) {
		char err[512];
		api = api_start(vm, sock, o->max_payload, err, sizeof(err));
		if (!api) {
			log_error("--api-sock %s: %s", sock, err);
			goto out;
		}
	}
	if (o->restore_dir[0]) {
		/* `visor run --restore DIR`: PUT /snapshot/load with DIR's files */
		struct vm_action *a = calloc(1, sizeof(*a));
		if (!a)
			goto out;
		a->kind = ACT_SNAPSHOT_LOAD;
		int w1 = snprintf(a->u.load.state_path, sizeof(a->u.load.state_path), "%s/%s",
				  o->restore_dir, CLI_SNAPSHOT_STATE);
		int w2 = snprintf(a->u.load.mem_path, sizeof(a->u.load.mem_path), "%s/%s",
				  o->restore_dir, CLI_SNAPSHOT_MEMORY);
		if (w1 < 0 || w2 < 0 || (size_t)w1 >= sizeof(a->u.load.state_path) ||
		    (size_t)w2 >= sizeof(a->u.load.mem_path)) {
			log_error("--restore: directory name too long");
			free(a);
			goto out;
		}
		a->u.load.resume_vm = !o->restore_paused;
		a->u.load.clock_realtime = o->clock_realtime;
		a->u.load.track_dirty_pages = o->track_dirty_pages;
		a->u.load.nnet = o->nnet_override;
		bool bad = false;
		for (uint32_t i = 0; i < o->nnet_override; i++) {
			snprintf(a->u.load.net[i].iface, sizeof(a->u.load.net[i].iface), "%s",
				 o->net_override[i].iface);
			if (strlen(o->net_override[i].tap) >= sizeof(a->u.load.net[i].tap)) {
				log_error("--net-override %s=%s: a tap name is at most %zu characters",
					  o->net_override[i].iface, o->net_override[i].tap,
					  sizeof(a->u.load.net[i].tap) - 1);
				bad = true;
			}
			snprintf(a->u.load.net[i].tap, sizeof(a->u.load.net[i].tap), "%s",
				 o->net_override[i].tap);
		}
		if (o->vsock_override[0]) {
			a->u.load.has_vsock_uds = true;
			snprintf(a->u.load.vsock_uds, sizeof(a->u.load.vsock_uds), "%s",
				 o->vsock_override);
		}
		int r = bad ? -1 : apply(vm, a, "--restore");
		free(a);
		if (r)
			goto out;
		signal_ready(o);
	} else if (o->incoming.url[0]) {
		/* `visor run --incoming URL`: PUT /migration/receive.  The VM
		 * runs once the source hands it over; the API stays up meanwhile
		 * (GET /migration) */
		struct vm_action *a = calloc(1, sizeof(*a));
		if (!a)
			goto out;
		a->kind = ACT_MIGRATION_RECEIVE;
		a->u.mig_recv = o->incoming;
		int r = apply(vm, a, "--incoming");
		free(a);
		if (r)
			goto out;
	} else if (!fc || o->config_file[0]) {
		struct vm_action a = {.kind = ACT_INSTANCE_START};
		if (apply(vm, &a, fc ? "InstanceStart" : "cannot start the VM"))
			goto out;
		signal_ready(o);
	}
	code = vm_run(vm);
out:;
	/* the teardown removes the API and vsock sockets' files: with the
	 * set-up list once the loop was narrowed */
	struct teardown td = {api, vm};
	int e = sec_run_wide(teardown, &td);
	if (e)
		log_warn("no thread for the teardown (%s): the sockets' files stay", strerror(e));
	return code;
}

/* visor --describe-snapshot FILE: 0 and the description for a valid state
 * file, else 1 and one error line saying what is wrong with it. */
static int describe_snapshot(const char *path)
{
	uint8_t *buf;
	size_t len;
	char err[256];
	if (snap_file_read(path, &buf, &len, err, sizeof(err))) {
		log_error("%s: %s", path, err);
		return VMM_EXIT_ERROR;
	}
	struct snap_reader r;
	int code = 0;
	if (snap_reader_open(buf, len, &r, err, sizeof(err))) {
		log_error("%s: %s", path, err);
		code = VMM_EXIT_ERROR;
	} else {
		printf("%s: ", path);
		snap_describe(&r, stdout);
		struct snap_mem_info mi;
		bool present;
		if (snap_mem_find(&r, &mi, &present, err, sizeof(err))) {
			log_error("%s: %s", path, err);
			code = VMM_EXIT_ERROR;
		} else if (present) {
			char id[2 * SNAP_MEM_ID_LEN + 1], base[2 * SNAP_MEM_ID_LEN + 1];
			snap_mem_id_hex(mi.id, id);
			snap_mem_id_hex(mi.base, base);
			printf("memory: %s, %llu MiB, identity %s", snap_mem_kind_name(mi.kind),
			       (unsigned long long)(mi.size >> 20), id);
			if (mi.kind == SNAP_MEM_DIFF)
				printf(", the pages written since snapshot %s", base);
			else if (mi.kind == SNAP_MEM_MERGING)
				printf(" being merged onto snapshot %s (interrupted: merge again)",
				       base);
			printf("\n");
		}
		if (fflush(stdout))
			code = VMM_EXIT_ERROR;
	}
	free(buf);
	return code;
}

/* visor snapshot merge BASE DIFF [--state FILE]: 0, or 1 with one error
 * line (nothing changed when a check failed). */
static int snapshot_merge(const struct cli_opts *o)
{
	struct stat bs, ds;
	const char *bad = stat(o->merge_base, &bs) ? o->merge_base
			  : stat(o->merge_diff, &ds) ? o->merge_diff
						     : NULL;
	if (bad) {
		log_error("snapshot merge: %s: %s", bad, strerror(errno));
		return VMM_EXIT_ERROR;
	}
	bool dirs = S_ISDIR(bs.st_mode);
	if (dirs != S_ISDIR(ds.st_mode)) {
		log_error("snapshot merge: BASE and DIFF must both be snapshot directories (`visor "
			  "snapshot VM DIR`) or both memory files");
		return VMM_EXIT_ERROR;
	}
	if (dirs && o->merge_state) {
		log_error("snapshot merge: --state is for memory files; a snapshot directory has "
			  "its state file");
		return VMM_EXIT_ERROR;
	}
	char err[1024];
	uint64_t copied = 0;
	uint64_t t0 = now_ns();
	int r = dirs ? snap_merge_dirs(o->merge_base, o->merge_diff, &copied, err, sizeof(err))
		     : snap_merge_files(o->merge_base, o->merge_diff, o->merge_state, &copied, err,
					sizeof(err));
	if (r) {
		log_error("snapshot merge: %s", err);
		return VMM_EXIT_ERROR;
	}
	unsigned long long ms = (unsigned long long)((now_ns() - t0) / 1000000);
	if (o->ctl_json)
		printf("{\"ok\": true, \"copied_bytes\": %llu, \"ms\": %llu}\n",
		       (unsigned long long)copied, ms);
	else if (dirs)
		printf("merged %s onto %s (%llu KiB of pages, %llu ms); %s is now the later "
		       "snapshot: visor restore %s\n",
		       o->merge_diff, o->merge_base, (unsigned long long)(copied >> 10), ms,
		       o->merge_base, o->merge_base);
	else if (o->merge_state)
		printf("merged %s onto %s (%llu KiB of pages, %llu ms); load %s with memory file "
		       "%s\n",
		       o->merge_diff, o->merge_base, (unsigned long long)(copied >> 10), ms,
		       o->merge_state, o->merge_base);
	else
		printf("merged %s onto %s (%llu KiB of pages, %llu ms); the Diff's state file "
		       "still says Diff: merge with --state FILE to have it load with %s\n",
		       o->merge_diff, o->merge_base, (unsigned long long)(copied >> 10), ms,
		       o->merge_base);
	return fflush(stdout) ? VMM_EXIT_ERROR : 0;
}

int main(int argc, char **argv)
{
	/* Boot time is measured from here: exec-to-main of this static binary
	 * is well under a millisecond. */
	uint64_t start = now_ns();
	struct cli_opts *o = calloc(1, sizeof(*o));
	struct config_err e;
	if (!o)
		return VMM_EXIT_ERROR;
	if (cli_parse(argc, argv, o, &e)) {
		log_error("%s", e.msg);
		free(o);
		return VMM_EXIT_ERROR;
	}
	int code = 0;
	switch (o->cmd) {
	case CLI_HELP:
		fputs(!o->help_topic			       ? cli_usage
		      : !strcmp(o->help_topic, "firecracker") ? cli_usage_firecracker
		      : !strcmp(o->help_topic, "migrate")     ? cli_usage_migrate
		      : !strcmp(o->help_topic, "jailer")      ? jailer_usage
							       : cli_usage,
		      stdout);
		break;
	case CLI_VERSION:
		printf("visor %s\n", VISOR_VERSION);
		break;
	case CLI_CONTROL:
		code = cli_client_main(o);
		break;
	case CLI_DESCRIBE_SNAPSHOT:
		code = describe_snapshot(o->snapshot_path);
		break;
	case CLI_PRINT_SECCOMP:
		code = sec_print_builtin() ? VMM_EXIT_ERROR : 0;
		break;
	case CLI_SNAPSHOT_MERGE:
		code = snapshot_merge(o);
		break;
	case CLI_JAILER:
		/* returns only on failure (or as the --new-pid-ns parent) */
		code = jailer_main(argc - o->jailer_first, argv + o->jailer_first);
		break;
	case CLI_RUN:
		if (o->clones) {
			code = clones_run(argc, argv, o);
			break;
		}
		if (o->has_ready_fd) {
			/* checked now, and kept from the guest's devices' children */
			if (fcntl(o->ready_fd, F_SETFD, FD_CLOEXEC) < 0) {
				log_error("--ready-fd %d: not an open file descriptor", o->ready_fd);
				code = VMM_EXIT_ERROR;
				break;
			}
		}
		if (!o->id[0])
			snprintf(o->id, sizeof(o->id), "vm-%d", (int)getpid());
		/* fall through */
	case CLI_FIRECRACKER:
		/* A closed console or API peer must not kill the VMM. */
		signal(SIGPIPE, SIG_IGN);
		/* A file-size limit fails a snapshot or disk write with EFBIG
		 * (reported, the VM kept) instead of killing the process. */
		signal(SIGXFSZ, SIG_IGN);
		set_fd_limit();
		if (seccomp_setup(o)) {
			code = VMM_EXIT_ERROR;
			break;
		}
		code = run_vmm(o, start);
		break;
	}
	free(o);
	return code;
}
