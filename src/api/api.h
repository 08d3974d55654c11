/* SPDX-License-Identifier: MIT */
/*
 * api.h - the Firecracker-compatible REST API of one VM.
 *
 * Threads: the API runs on its own thread with its own event loop and
 * HTTP server (api/http.h).  A request is parsed and decoded there into a
 * struct vm_action (api/fc_json.h), handed to the VM's event loop with
 * vm_submit(), which checks it against the VM's state and runs it; the
 * reply is encoded back on the API thread.  So a slow or hostile client
 * never holds up the VM's loop, and the loop never parses JSON.
 */
#ifndef VISOR_API_API_H
#define VISOR_API_API_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct api_server;

/* Serve the API for @vm on the Unix socket @path (created 0600; a live
 * socket of another process is never taken over).  @max_payload: largest
 * request body.  NULL with err on failure. */
struct api_server *api_start(struct vm *vm, const char *path, uint64_t max_payload, char *err,
			     size_t errlen);
/* Stop the API thread and remove the socket (NULL is fine). */
void api_stop(struct api_server *s);

/* Read Firecracker's JSON config file @path and apply it to @vm (not
 * started) through the same actions the API would run.  0 / -1 with err. */
int api_apply_config_file(struct vm *vm, const char *path, char *err, size_t errlen);

/* Create @dir (and its parent) with mode 0700 if missing.  0 / -errno. */
int api_ensure_dir(const char *dir);

#endif
