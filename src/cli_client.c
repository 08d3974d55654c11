/* SPDX-License-Identifier: MIT */
#include "cli_client.h"

#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/http_client.h"
#include "cli_migrate.h"
#include "snapshot/format.h"
#include "snapshot/mem_section.h"
#include "util/log.h"

#define CLIENT_TIMEOUT_MS 10000
/* Writing a snapshot takes as long as the disk needs for guest memory
 * (seconds per GiB, more on a loaded host): the CLI waits this long. */
#define SNAPSHOT_TIMEOUT_MS (30 * 60 * 1000)

/* One request, answered within @timeout_ms; on success *out is the parsed
 * JSON body (or NULL for an empty one).  Errors are printed; returns 0 or
 * -1. */
static int call_within(const char *sock, const char *method, const char *path, const char *body,
		       struct json_object **out, bool quiet, int timeout_ms)
{
	int status = 0;
	char *resp = NULL;
	size_t rlen = 0;
	char err[256];
	*out = NULL;
	if (http_client_request(sock, method, path, body, timeout_ms, &status, &resp, &rlen, err,
				sizeof(err))) {
		if (!quiet)
			log_error("%s", err);
		free(resp);
		return -1;
	}
	struct json_object *j = resp && rlen ? json_tokener_parse(resp) : NULL;
	free(resp);
	if (status >= 300) {
		struct json_object *fm;
		if (!quiet)
			log_error("%s %s: %s", method, path,
				  j && json_object_object_get_ex(j, "fault_message", &fm)
					  ? json_object_get_string(fm)
					  : "request refused");
		json_object_put(j);
		return -1;
	}
	*out = j;
	return 0;
}

static int call(const char *sock, const char *method, const char *path, const char *body,
		struct json_object **out, bool quiet)
{
	return call_within(sock, method, path, body, out, quiet, CLIENT_TIMEOUT_MS);
}

static const char *jstr(struct json_object *o, const char *key, const char *dflt)
{
	struct json_object *v;
	return o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : dflt;
}

static int64_t jint(struct json_object *o, const char *key, int64_t dflt)
{
	struct json_object *v;
	return o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_int)
		       ? json_object_get_int64(v)
		       : dflt;
}

static struct json_object *jobj(struct json_object *o, const char *key)
{
	struct json_object *v;
	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static void fmt_uptime(int64_t ms, char *buf, size_t len)
{
	if (ms < 0) {
		snprintf(buf, len, "-");
		return;
	}
	int64_t s = ms / 1000;
	if (s < 60)
		snprintf(buf, len, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
	else if (s < 86400)
		snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s / 60 % 60));
	else
		snprintf(buf, len, "%lldd%02lldh", (long long)(s / 86400), (long long)(s / 3600 % 24));
}

/* GET / and GET /vm/config of one VM, as one JSON object
 * {"name", "socket", "state", "vcpus", "memory_mib", "uptime_ms"}. */
static struct json_object *describe(const char *sock, const char *name, bool quiet)
{
	struct json_object *info, *cfg;
	if (call(sock, "GET", "/", NULL, &info, quiet))
		return NULL;
	if (call(sock, "GET", "/vm/config", NULL, &cfg, quiet)) {
		json_object_put(info);
		return NULL;
	}
	struct json_object *mc = jobj(cfg, "machine-config");
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "name", json_object_new_string(jstr(info, "id", name)));
	json_object_object_add(d, "socket", json_object_new_string(sock));
	json_object_object_add(d, "state", json_object_new_string(jstr(info, "state", "?")));
	json_object_object_add(d, "vcpus", json_object_new_int64(jint(mc, "vcpu_count", 0)));
	json_object_object_add(d, "memory_mib", json_object_new_int64(jint(mc, "mem_size_mib", 0)));
	json_object_object_add(d, "uptime_ms", json_object_new_int64(jint(info, "uptime_ms", -1)));
	json_object_object_add(d, "vmm_version",
			       json_object_new_string(jstr(info, "vmm_version", "")));
	json_object_put(info);
	json_object_put(cfg);
	return d;
}

static void print_row(struct json_object *d)
{
	char up[32];
	fmt_uptime(jint(d, "uptime_ms", -1), up, sizeof(up));
	printf("%-20s %-12s %5lld %8lldM %9s  %s\n", jstr(d, "name", "?"), jstr(d, "state", "?"),
	       (long long)jint(d, "vcpus", 0), (long long)jint(d, "memory_mib", 0), up,
	       jstr(d, "socket", ""));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int do_ls(const struct cli_opts *o)
{
	char dir[96];
	if (cli_socket_dir(dir, sizeof(dir)))
		return 1;
	struct json_object *arr = json_object_new_array();
	DIR *dp = opendir(dir);
	char *names[1024];
	size_t n = 0;
	if (dp) {
		struct dirent *de;
		while ((de = readdir(dp)) && n < 1024) {
			size_t l = strlen(de->d_name);
			if (l > 5 && !strcmp(de->d_name + l - 5, ".sock") &&
			    (names[n] = strdup(de->d_name)))
				n++;
		}
		closedir(dp);
	}
	qsort(names, n, sizeof(names[0]), cmp_str);
	for (size_t i = 0; i < n; i++) {
		char sock[256], name[256];
		snprintf(sock, sizeof(sock), "%s/%s", dir, names[i]);
		snprintf(name, sizeof(name), "%.*s", (int)(strlen(names[i]) - 5), names[i]);
		free(names[i]);
		struct stat st;
		if (stat(sock, &st) || !S_ISSOCK(st.st_mode))
			continue;
		/* a socket nobody answers on is left over from a killed visor */
		struct json_object *d = describe(sock, name, true);
		if (d)
			json_object_array_add(arr, d);
	}
	if (o->ctl_json) {
		printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
								   JSON_C_TO_STRING_NOSLASHESCAPE));
	} else if (json_object_array_length(arr) == 0) {
		printf("no running VMs in %s\n", dir);
	} else {
		printf("%-20s %-12s %5s %9s %9s  %s\n", "NAME", "STATE", "VCPUS", "MEMORY", "UPTIME",
		       "SOCKET");
		for (size_t i = 0; i < json_object_array_length(arr); i++)
			print_row(json_object_array_get_idx(arr, i));
	}
	json_object_put(arr);
	return 0;
}

static int simple(const char *sock, const char *method, const char *path, const char *body,
		  const struct cli_opts *o, const char *done)
{
	struct json_object *j;
	if (call(sock, method, path, body, &j, false))
		return 1;
	json_object_put(j);
	if (o->ctl_json)
		printf("{\"ok\": true}\n");
	else
		printf("%s: %s\n", o->ctl_target, done);
	return 0;
}

static int do_status(const char *sock, const struct cli_opts *o)
{
	struct json_object *d = describe(sock, o->ctl_target, false);
	if (!d)
		return 1;
	if (o->ctl_json) {
		printf("%s\n", json_object_to_json_string_ext(d, JSON_C_TO_STRING_PRETTY |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		char up[32];
		fmt_uptime(jint(d, "uptime_ms", -1), up, sizeof(up));
		printf("name:    %s\nstate:   %s\nvcpus:   %lld\nmemory:  %lld MiB\nuptime:  %s\n"
		       "socket:  %s\nvmm:     %s\n",
		       jstr(d, "name", "?"), jstr(d, "state", "?"), (long long)jint(d, "vcpus", 0),
		       (long long)jint(d, "memory_mib", 0), up, jstr(d, "socket", ""),
		       jstr(d, "vmm_version", ""));
		struct json_object *b;
		if (call(sock, "GET", "/balloon/statistics", NULL, &b, true) == 0 && b) {
			printf("balloon: target %lld MiB, actual %lld MiB", (long long)jint(b, "target_mib", 0),
			       (long long)jint(b, "actual_mib", 0));
			int64_t fr = jint(b, "free_memory", -1), tot = jint(b, "total_memory", -1);
			if (fr >= 0 && tot > 0)
				printf(", guest free %lld of %lld MiB", (long long)(fr >> 20),
				       (long long)(tot >> 20));
			printf("\n");
			json_object_put(b);
		}
	}
	json_object_put(d);
	return 0;
}

static int do_config(const char *sock, const struct cli_opts *o)
{
	struct json_object *j;
	if (call(sock, "GET", "/vm/config", NULL, &j, false))
		return 1;
	if (o->ctl_json) {
		printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(j);
		return 0;
	}
	struct json_object *bs = jobj(j, "boot-source"), *mc = jobj(j, "machine-config");
	printf("kernel:   %s\n", jstr(bs, "kernel_image_path", "-"));
	printf("initrd:   %s\n", jstr(bs, "initrd_path", "-"));
	printf("cmdline:  %s\n", jstr(bs, "boot_args", "-"));
	printf("vcpus:    %lld\nmemory:   %lld MiB\n", (long long)jint(mc, "vcpu_count", 0),
	       (long long)jint(mc, "mem_size_mib", 0));
	struct json_object *drives = jobj(j, "drives"), *nics = jobj(j, "network-interfaces");
	for (size_t i = 0; drives && i < json_object_array_length(drives); i++) {
		struct json_object *d = json_object_array_get_idx(drives, i);
		struct json_object *ro = jobj(d, "is_read_only"), *root = jobj(d, "is_root_device");
		printf("drive:    %s %s%s%s\n", jstr(d, "drive_id", "?"), jstr(d, "path_on_host", "?"),
		       ro && json_object_get_boolean(ro) ? " (read-only)" : "",
		       root && json_object_get_boolean(root) ? " (root)" : "");
	}
	for (size_t i = 0; nics && i < json_object_array_length(nics); i++) {
		struct json_object *d = json_object_array_get_idx(nics, i);
		printf("net:      %s tap %s mac %s\n", jstr(d, "iface_id", "?"),
		       jstr(d, "host_dev_name", "?"), jstr(d, "guest_mac", "(derived)"));
	}
	struct json_object *vs = jobj(j, "vsock"), *bal = jobj(j, "balloon"), *ent = jobj(j, "entropy");
	if (vs && !json_object_is_type(vs, json_type_null))
		printf("vsock:    cid %lld at %s\n", (long long)jint(vs, "guest_cid", 0),
		       jstr(vs, "uds_path", "?"));
	if (bal && !json_object_is_type(bal, json_type_null))
		printf("balloon:  %lld MiB\n", (long long)jint(bal, "amount_mib", 0));
	if (ent && !json_object_is_type(ent, json_type_null))
		printf("entropy:  yes\n");
	json_object_put(j);
	return 0;
}

/* Whether DIR/state is a Diff snapshot's (a VM without an earlier
 * snapshot gets a Full one when it asks for a Diff). */
static bool snapshot_is_diff(const char *dir)
{
	char path[CONFIG_PATH_MAX + 16], err[256];
	snprintf(path, sizeof(path), "%s/%s", dir, CLI_SNAPSHOT_STATE);
	uint8_t *buf;
	size_t len;
	struct snap_reader rd;
	struct snap_mem_info mi = {0};
	if (snap_file_read(path, &buf, &len, err, sizeof(err)))
		return false;
	if (snap_reader_open(buf, len, &rd, err, sizeof(err)) ||
	    snap_mem_find(&rd, &mi, NULL, err, sizeof(err)))
		mi.kind = SNAP_MEM_FULL;
	free(buf);
	return mi.kind == SNAP_MEM_DIFF;
}

/* `visor snapshot VM DIR [--diff]`: pause if running, PUT /snapshot/create
 * with DIR/state and DIR/memory (snapshot_type Diff with --diff), resume
 * what was running (also when the snapshot failed). */
static int do_snapshot(const char *sock, const struct cli_opts *o)
{
	char dir[CONFIG_PATH_MAX - 16];
	if (o->ctl_arg[0] == '/') {
		snprintf(dir, sizeof(dir), "%s", o->ctl_arg);
	} else {
		char cwd[2048];
		if (!getcwd(cwd, sizeof(cwd))) {
			log_error("snapshot: cannot tell the current directory: %s", strerror(errno));
			return 1;
		}
		snprintf(dir, sizeof(dir), "%s/%s", cwd, o->ctl_arg);
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		log_error("snapshot: cannot create %s: %s", dir, strerror(errno));
		return 1;
	}
	struct json_object *info;
	if (call(sock, "GET", "/", NULL, &info, false))
		return 1;
	bool was_running = !strcmp(jstr(info, "state", ""), "Running");
	json_object_put(info);
	struct json_object *j;
	if (was_running && call(sock, "PATCH", "/vm", "{\"state\": \"Paused\"}", &j, false))
		return 1;
	if (was_running)
		json_object_put(j);
	/* the paths as JSON strings (escaped by json-c) */
	struct json_object *body = json_object_new_object();
	char path[CONFIG_PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, CLI_SNAPSHOT_STATE);
	json_object_object_add(body, "snapshot_path", json_object_new_string(path));
	snprintf(path, sizeof(path), "%s/%s", dir, CLI_SNAPSHOT_MEMORY);
	json_object_object_add(body, "mem_file_path", json_object_new_string(path));
	if (o->ctl_diff)
		json_object_object_add(body, "snapshot_type", json_object_new_string("Diff"));
	uint64_t t0 = now_ns();
	int rc = call_within(sock, "PUT", "/snapshot/create", json_object_to_json_string(body), &j,
			     false, SNAPSHOT_TIMEOUT_MS);
	uint64_t ms = (now_ns() - t0) / 1000000;
	json_object_put(body);
	if (!rc)
		json_object_put(j);
	if (was_running && call(sock, "PATCH", "/vm", "{\"state\": \"Resumed\"}", &j, false) == 0)
		json_object_put(j);
	if (rc)
		return 1;
	if (o->ctl_json)
		printf("{\"ok\": true, \"dir\": \"%s\", \"ms\": %llu}\n", dir,
		       (unsigned long long)ms);
	else if (o->ctl_diff && snapshot_is_diff(dir))
		printf("%s: Diff snapshot in %s (%llu ms; merge it onto the snapshot it follows "
		       "with: visor snapshot merge BASE %s)\n",
		       o->ctl_target, dir, (unsigned long long)ms, dir);
	else
		printf("%s: snapshot in %s (%llu ms; restore with: visor restore %s)\n", o->ctl_target,
		       dir, (unsigned long long)ms, dir);
	return 0;
}

int cli_client_main(const struct cli_opts *o)
{
	if (!strcmp(o->ctl_verb, "ls"))
		return do_ls(o);
	char sock[256];
	if (cli_socket_path(o->ctl_target, sock, sizeof(sock))) {
		log_error("%s: name too long", o->ctl_target);
		return 1;
	}
	if (!strcmp(o->ctl_verb, "pause"))
		return simple(sock, "PATCH", "/vm", "{\"state\": \"Paused\"}", o, "paused");
	if (!strcmp(o->ctl_verb, "resume"))
		return simple(sock, "PATCH", "/vm", "{\"state\": \"Resumed\"}", o, "resumed");
	if (!strcmp(o->ctl_verb, "ctrl-alt-del"))
		return simple(sock, "PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}", o,
			      "sent Ctrl-Alt-Del");
	if (!strcmp(o->ctl_verb, "balloon")) {
		uint64_t bytes;
		if (parse_size(o->ctl_arg, &bytes) || (bytes & ((1ULL << 20) - 1))) {
			log_error("balloon: '%s' is not a whole number of MiB (e.g. 256M, 1G)", o->ctl_arg);
			return 1;
		}
		char body[64], done[64];
		snprintf(body, sizeof(body), "{\"amount_mib\": %llu}", (unsigned long long)(bytes >> 20));
		snprintf(done, sizeof(done), "balloon target %llu MiB", (unsigned long long)(bytes >> 20));
		return simple(sock, "PATCH", "/balloon", body, o, done);
	}
	if (!strcmp(o->ctl_verb, "status"))
		return do_status(sock, o);
	if (!strcmp(o->ctl_verb, "config"))
		return do_config(sock, o);
	if (!strcmp(o->ctl_verb, "snapshot"))
		return do_snapshot(sock, o);
	if (!strcmp(o->ctl_verb, "migrate"))
		return cli_migrate_main(sock, o);
	log_error("unknown command '%s'", o->ctl_verb);
	return 1;
}
