/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the whole API request path, from the bytes a client
 * writes to the reply it reads, minus the socket: the HTTP parser
 * (api/http.c) cuts the stream into requests, each goes through what
 * api.c's handler does - fc_parse_request (api/fc_json.c) routes and
 * decodes method + path + body into an action, vm_execute (vm.c) checks it
 * against a VM that is not started and applies it to its configuration,
 * fc_format_reply encodes the reply into the response - one request after
 * the other on the same VM, so earlier requests shape what later ones
 * meet (drives and interfaces to patch, machine configuration after
 * devices, limits on counts, duplicate ids).  fuzz_http covers the parser
 * alone, fuzz_fc_json the decoder alone; this target their composition
 * and the VM's side.
 *
 * Actions with effects outside the process are not executed and get a
 * 204 as if they were: InstanceStart (KVM), the logger and metrics files,
 * a boot source's read-ahead of the kernel, snapshot load, migration send
 * and receive.  Everything else runs for real.
 *
 * Input: byte 0 bit 0: small parser limits (body 256 bytes, 4 headers);
 * the rest: the byte stream of one client connection.
 * Checks: a refused request is a 400 with a one-line fault and no action,
 * an accepted one an action; vm_execute answers 200, 204 or 400 (with a
 * fault), and the VM stays not started; every response body fits the
 * response limit and is strict JSON (none for 204); at the end GET
 * /vm/config is strict JSON and, given a boot source, a config file this
 * same decoder accepts.
 * Seeds: tests/fuzz/corpus-api.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "../../src/api/fc_json.h"
#include "../../src/api/http.h"
#include "../../src/config.h"
#include "../../src/util/log.h"
#include "../../src/vm.h"
#include "fuzz_input.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vm_action act;
static struct vm_reply rep;

static void check_json(const char *s, size_t len)
{
	FZ_CHECK(s && strlen(s) == len);
	struct json_tokener *tok = json_tokener_new_ex(FC_JSON_MAX_DEPTH);
	if (!tok)
		return;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	struct json_object *o = json_tokener_parse_ex(tok, s, (int)len);
	FZ_CHECK(json_tokener_get_error(tok) == json_tokener_success &&
		 json_object_is_type(o, json_type_object));
	json_object_put(o);
	json_tokener_free(tok);
}

/* Runs for real? (see above) */
static bool executable(enum vm_action_kind k)
{
	switch (k) {
	case ACT_INSTANCE_START:
	case ACT_PUT_LOGGER:
	case ACT_PUT_METRICS:
	case ACT_PUT_BOOT_SOURCE:
	case ACT_SNAPSHOT_LOAD:
	case ACT_MIGRATION_SEND:
	case ACT_MIGRATION_RECEIVE:
		return false;
	default:
		return true;
	}
}

/* What api.c's handler does with one request (vm_execute in place of
 * vm_submit: this thread is the VM's loop). */
static void handle(struct vm *vm, const struct http_request *req, const struct http_limits *lim)
{
	struct http_response resp = {.status = 200, .body_max = lim->max_response};
	char fault[512] = "";
	int status = -1;
	memset(&rep, 0, sizeof(rep));
	int r = fc_parse_request(http_method_name(req->method), req->path, req->body,
				 req->body_len, &act, &status, fault, sizeof(fault));
	if (r) {
		FZ_CHECK(r == -EINVAL && status == 400 && act.kind == ACT_NONE && fault[0] &&
			 !strchr(fault, '\n'));
		rep.status = status;
		snprintf(rep.fault, sizeof(rep.fault), "%s", fault);
	} else {
		FZ_CHECK(status == 0 && act.kind != ACT_NONE);
		if (executable(act.kind)) {
			vm_execute(vm, &act, &rep);
			FZ_CHECK(rep.status == 200 || rep.status == 204 || rep.status == 400);
			FZ_CHECK(rep.status != 400 || rep.fault[0]);
		} else {
			rep.status = 204;
		}
	}
	FZ_CHECK(vm_get_state(vm) == VM_NOT_STARTED);
	size_t len = 0;
	char *body = fc_format_reply(&act, &rep, &len);
	resp.status = rep.status;
	if (rep.status == 204)
		FZ_CHECK(!body && !len);
	else if (body)
		check_json(body, len);
	if (body && rep.status != 204)
		(void)http_response_append(&resp, body, len);
	FZ_CHECK(resp.body_len <= lim->max_response);
	free(body);
	free(resp.body);
}

/* GET /vm/config, and it as a config file. */
static void final_config(struct vm *vm)
{
	struct vm_action a = {.kind = ACT_GET_VM_CONFIG};
	memset(&rep, 0, sizeof(rep));
	vm_execute(vm, &a, &rep);
	FZ_CHECK(rep.status == 200);
	size_t len;
	char *s = fc_format_reply(&a, &rep, &len);
	check_json(s, len);
	free(s);
	/* the boot source was not executed: give it one to be a config file */
	snprintf(rep.config.kernel, sizeof(rep.config.kernel), "/fuzz/vmlinux");
	s = fc_format_reply(&a, &rep, &len);
	check_json(s, len);
	struct vm_action *acts = NULL;
	size_t n = 0;
	char err[512];
	int r = fc_config_file_actions(s, len, &acts, &n, err, sizeof(err));
	if (r)
		fprintf(stderr, "fuzz: GET /vm/config is not a config file: %s\n%s\n", err, s);
	FZ_CHECK(r == 0);
	free(acts);
	free(s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct http_limits lim = {0};
	if (data[0] & 1) {
		lim.max_body = 256;
		lim.max_headers = 4;
	}
	http_limits_fill(&lim, &lim);
	static struct vm_config cfg;
	config_init(&cfg);
	struct vm_params prm = {.id = "fuzz"};
	struct vm *vm = vm_create(&cfg, &prm);
	if (!vm)
		abort();
	struct http_parser p;
	http_parser_init(&p, &lim);
	const uint8_t *s = data + 1;
	size_t n = size - 1;
	for (int requests = 0; n && requests < 64; requests++) {
		size_t used = 0;
		int r = http_parser_feed(&p, s, n, &used);
		FZ_CHECK(used <= n);
		s += used;
		n -= used;
		if (r != HTTP_PARSE_DONE)
			break;
		handle(vm, &p.req, &lim);
		http_parser_next(&p);
	}
	http_parser_free(&p);
	final_config(vm);
	vm_destroy(vm);
	return 0;
}
