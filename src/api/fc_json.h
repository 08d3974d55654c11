/* SPDX-License-Identifier: MIT */
/*
 * fc_json.h - Firecracker's REST API and --config-file, as JSON <-> typed
 * actions (action.h).
 *
 * The HTTP layer hands over method, path and body; fc_parse_request()
 * routes and decodes them into one struct vm_action (or a 400 fault), the
 * action runs on the VM's loop (vm.h), and fc_format_reply() turns the
 * struct vm_reply into the response body.  fc_config_file_actions() turns
 * a Firecracker config file into the same actions, decoded by the same
 * per-object decoders, so the same mistake gets the same message whichever
 * way it arrives.
 *
 * What is checked here is JSON shape only: valid strict JSON (RFC 8259,
 * UTF-8, nesting at most FC_JSON_MAX_DEPTH), an object, no unknown or
 * duplicate fields (serde's deny_unknown_fields), required fields present,
 * types, integer ranges the field's type implies (no negative, fractional
 * or oversized numbers, nothing truncated), strings that fit visor's config
 * arrays, resource ids (config_check_id) and path/body id agreement.  Values
 * are validated by the config_set_*() setters (config.h) when the action
 * runs.  A JSON null for an optional field means "absent" (as serde's
 * Option does), so Firecracker's own GET /vm/config output, nulls
 * included, is a valid config file.
 *
 * Pure functions: no I/O, no globals, thread-safe.
 */
#ifndef VISOR_API_FC_JSON_H
#define VISOR_API_FC_JSON_H

#include <stddef.h>

#include "../action.h"

/* The Firecracker API level visor implements (docs/firecracker-api.yaml),
 * reported by GET /version as "firecracker_version".  visor's own version
 * is GET /'s "vmm_version". */
#define FC_API_VERSION "1.17.0"
/* GET /'s "app_name". */
#define FC_APP_NAME "visor"
/* Deepest JSON nesting accepted (the deepest valid document needs 5). */
#define FC_JSON_MAX_DEPTH 32

/*
 * Route and decode one API request.
 *
 * @method: "GET", "PUT" or "PATCH" (case-sensitive, NUL-terminated).
 * @path: the request path without query string, e.g. "/drives/rootfs"
 *   (NUL-terminated; a single trailing '/' is ignored).
 * @body, @body_len: the request body (need not be NUL-terminated; may be
 *   NULL when @body_len is 0).  A GET with a body is refused ("GET request
 *   cannot have a body.", as Firecracker does); a PUT/PATCH without one is
 *   refused ("Empty PUT request." / "Empty PATCH request.").
 *
 * On success returns 0, sets *@status to 0 and fills @a (zeroed first) with
 * the action to run.  Otherwise returns -EINVAL, sets *@status to 400 and
 * writes the reason (one line, NUL-terminated, truncated to @faultlen) to
 * @fault; the HTTP layer answers {"fault_message": ...} (fc_format_fault).
 * Unknown paths and methods a path does not have are 400 "Invalid request
 * method and/or path: METHOD PATH." (Firecracker answers 400, not 404/405);
 * Firecracker endpoints of features visor lacks (MMDS, pmem, memory
 * hotplug, CPU configuration, balloon hinting) are 400 naming
 * the feature.  Besides Firecracker's paths, visor's own /migration
 * endpoints (below).
 */
int fc_parse_request(const char *method, const char *path, const char *body, size_t body_len,
		     struct vm_action *a, int *status, char *fault, size_t faultlen);

/*
 * The response body for @r, the reply to @a.
 *
 * r->status 204: no body, returns NULL with *@len = 0.
 * r->status 200: the JSON document of a->kind (InstanceInfo for GET /,
 *   FirecrackerVersion, FullVmConfiguration, MachineConfiguration, Balloon,
 *   BalloonStats, and visor's migration status for GET /migration); NULL with *@len = 0 for a kind that has no body.
 * any other status: {"fault_message": r->fault}.
 * Returns a malloc'd NUL-terminated string the caller frees, its length in
 * *@len; NULL with errno ENOMEM when memory runs out.  Strings are escaped
 * (quotes, backslashes, control characters) and bytes that are not UTF-8
 * become U+FFFD, so the output is always valid JSON.
 */
char *fc_format_reply(const struct vm_action *a, const struct vm_reply *r, size_t *len);

/*
 * {"fault_message": @msg} as a malloc'd NUL-terminated string (the caller
 * frees it), its length in *@len; NULL with errno ENOMEM when memory runs
 * out.  For the HTTP layer's own errors and fc_parse_request's faults.
 */
char *fc_format_fault(const char *msg, size_t *len);

/*
 * Live migration (visor's own endpoints; docs/api.md, "Live migration"):
 * PUT /migration/send (ACT_MIGRATION_SEND), PUT /migration/receive
 * (ACT_MIGRATION_RECEIVE), GET /migration (ACT_MIGRATION_GET, its reply
 * the status object), PATCH /migration {"state": "Cancelled"}
 * (ACT_MIGRATION_CANCEL).  The ranges of the request fields:
 */
#define FC_MIG_MAX_DOWNTIME_MS 60000      /* downtime_limit_ms: 1 to this */
#define FC_MIG_MAX_TIMEOUT_S 86400        /* timeout_s: 1 to this */
#define FC_MIG_MAX_BANDWIDTH_MIB (1u << 20) /* max_bandwidth_mib: 0 (no limit) to this */

/* The status's "state" ("None", "Setup", ..., "Cancelled") and "mode"
 * ("precopy", "postcopy", "auto", "local") names, and back (-1: unknown). */
const char *fc_mig_state_name(enum mig_state_kind s);
int fc_mig_state_parse(const char *name);
const char *fc_mig_mode_name(enum mig_mode_param m);
int fc_mig_mode_parse(const char *name);

/* The loose check of a migration URL both front ends make (the API's
 * "url", the CLI's --to/--incoming): "unix:" or "tcp:" and something
 * after it; the engine parses the rest.  0, or -EINVAL with the reason
 * ("expected `unix:PATH` or `tcp:HOST:PORT`, found `...`") in @err. */
int fc_mig_url_check(const char *url, char *err, size_t errlen);

/*
 * Decode a Firecracker --config-file (a FullVmConfiguration object) into
 * the actions the equivalent API calls would make, in the order they must
 * run: logger, metrics, machine-config (before the balloon, whose target is
 * checked against memory), boot-source, drives, network-interfaces, vsock,
 * balloon, entropy.  "boot-source" is required; the others are optional
 * (absent, or null).  Unknown top-level keys are refused, and so are keys
 * of features visor lacks ("mmds-config", "cpu-config", "pmem",
 * "memory-hotplug") unless null (or, for "pmem", an empty array).  The
 * caller runs the actions in order (stopping at the first refusal) and
 * then InstanceStart.
 *
 * @json, @len: the file contents (need not be NUL-terminated).
 * Returns 0 with *@acts a malloc'd array of *@n actions (the caller frees
 * it), or -EINVAL (-ENOMEM) with *@acts NULL, *@n 0 and a one-line message
 * in @err naming the section, e.g. "drives[1]: missing field `drive_id`".
 */
int fc_config_file_actions(const char *json, size_t len, struct vm_action **acts, size_t *n,
			   char *err, size_t errlen);

#endif
