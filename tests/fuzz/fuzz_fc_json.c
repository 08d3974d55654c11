/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the Firecracker API front end (api/fc_json.c), which
 * reads whatever a client sends over the API socket and the --config-file.
 *
 * Input: the first byte chooses.
 *   even: an API request "METHOD\nPATH\nBODY" (BODY is not NUL-terminated,
 *         as the HTTP layer hands it over)
 *   odd:  a config file (the rest of the input)
 * Beyond crashes, sanitizer reports and leaks, these must hold:
 *   - a refusal is status 400 with a one-line fault and no action; an
 *     acceptance is status 0 with an action;
 *   - every body fc_format_reply()/fc_format_fault() writes (faults with
 *     the fuzzed bytes in them, GET /, GET /vm/config and the others for
 *     the config the accepted actions build) is strict UTF-8 JSON;
 *   - GET /vm/config is a config file that rebuilds the same GET /vm/config;
 *   - an accepted /migration request holds what the decoder promises: a
 *     url with its prefix and something after it, values in their ranges,
 *     the three TLS files whenever TLS is on, no server name on the
 *     receiving side, `local` only over a Unix socket; and GET /migration's
 *     status object, with fuzzed bytes in its url and error and any state,
 *     is strict JSON.
 * Seeds: tests/fuzz/corpus-fc-json (first byte 'R' or 'C').
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "../../src/api/fc_json.h"
#include "../../src/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vm_config cfg, cfg2;
static struct vm_reply rep;
static struct vm_action act;

/* What vm.c does with the pre-boot actions (the part GET /vm/config shows). */
static void apply(struct vm_config *c, const struct vm_action *a)
{
	struct config_err e;
	switch (a->kind) {
	case ACT_PUT_MACHINE_CONFIG:
		config_set_machine(c, a->u.machine.cpus, a->u.machine.mem_mib, a->u.machine.smt,
				   a->u.machine.track_dirty_pages, &e);
		break;
	case ACT_PUT_BOOT_SOURCE:
		config_set_boot(c, a->u.boot.kernel, a->u.boot.has_initrd ? a->u.boot.initrd : NULL,
				a->u.boot.has_cmdline ? a->u.boot.cmdline : CONFIG_FC_DEFAULT_CMDLINE, &e);
		break;
	case ACT_PUT_DRIVE: config_set_disk(c, &a->u.disk, &e); break;
	case ACT_PUT_NET: config_set_net(c, &a->u.net, &e); break;
	case ACT_PUT_VSOCK: config_set_vsock(c, &a->u.vsock, &e); break;
	case ACT_PUT_BALLOON: config_set_balloon(c, &a->u.balloon, &e); break;
	case ACT_PUT_ENTROPY: config_set_rng(c, &a->u.rng, &e); break;
	case ACT_PUT_LOGGER:
		c->logger = a->u.logger;
		c->logger.set = true;
		break;
	case ACT_PUT_METRICS:
		c->metrics = a->u.metrics;
		c->metrics.set = true;
		break;
	default: break;
	}
}

/* The body must be one strict JSON object. */
static void check_json(const char *s, size_t len)
{
	if (!s || strlen(s) != len)
		__builtin_trap();
	struct json_tokener *tok = json_tokener_new_ex(FC_JSON_MAX_DEPTH);
	if (!tok)
		return;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	struct json_object *o = json_tokener_parse_ex(tok, s, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success || !json_object_is_type(o, json_type_object))
		__builtin_trap();
	json_object_put(o);
	json_tokener_free(tok);
}

static char *format(enum vm_action_kind kind, int status, size_t *len)
{
	struct vm_action a = {.kind = kind};
	rep.status = status;
	return fc_format_reply(&a, &rep, len);
}

/* Every reply body for @c, checked; returns GET /vm/config (malloc'd). */
static char *replies(const struct vm_config *c, const uint8_t *junk, size_t n)
{
	static const enum vm_action_kind gets[] = {ACT_GET_INFO,    ACT_GET_VERSION,       ACT_GET_MACHINE_CONFIG,
						   ACT_GET_BALLOON, ACT_GET_BALLOON_STATS, ACT_MIGRATION_GET};
	memset(&rep, 0, sizeof(rep));
	rep.config = *c;
	/* fuzzed bytes where a reply carries text the API did not check */
	if (n) {
		memcpy(rep.id, junk, n < sizeof(rep.id) - 1 ? n : sizeof(rep.id) - 1);
		memcpy(rep.version, junk, n < sizeof(rep.version) ? n : sizeof(rep.version));
		memcpy(rep.fault, junk, n < sizeof(rep.fault) ? n : sizeof(rep.fault));
		memcpy(rep.mig.url, junk, n < sizeof(rep.mig.url) ? n : sizeof(rep.mig.url));
		memcpy(rep.mig.error, junk, n < sizeof(rep.mig.error) ? n : sizeof(rep.mig.error));
	}
	if (n >= 2) {
		rep.state = (enum vm_state)(junk[0] & 3);
		rep.balloon.valid = (uint32_t)junk[0] << 8 | junk[1];
		rep.balloon.val[junk[1] & 15] = UINT64_MAX;
		rep.mig.state = (enum mig_state_kind)(junk[0] % 10);
		rep.mig.mode = (enum mig_mode_param)(junk[1] % 5);
		rep.mig.incoming = junk[1] & 0x80;
		rep.mig.bytes = UINT64_MAX;
	}
	size_t len;
	char *s;
	for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
		s = format(gets[i], 200, &len);
		check_json(s, len);
		free(s);
	}
	s = format(ACT_GET_INFO, 400, &len);
	check_json(s, len);
	free(s);
	s = format(ACT_PUT_VSOCK, 204, &len);
	if (s || len)
		__builtin_trap();
	s = format(ACT_GET_VM_CONFIG, 200, &len);
	check_json(s, len);
	return s;
}

/* GET /vm/config, read back as a config file, gives the same config. */
static void round_trip(const struct vm_config *c, const char *json)
{
	if (!c->kernel[0])
		return; /* a config file needs a boot source */
	struct vm_action *acts;
	size_t n;
	char err[512];
	if (fc_config_file_actions(json, strlen(json), &acts, &n, err, sizeof(err)))
		__builtin_trap();
	config_init(&cfg2);
	for (size_t i = 0; i < n; i++)
		apply(&cfg2, &acts[i]);
	free(acts);
	char *again = replies(&cfg2, NULL, 0);
	if (strcmp(json, again))
		__builtin_trap();
	free(again);
}

static bool tls_ok(const struct mig_tls_params *t, bool sender)
{
	if (!t->enabled)
		return !t->cert[0] && !t->key[0] && !t->ca[0] && !t->server_name[0];
	return t->cert[0] && t->key[0] && t->ca[0] && (sender || !t->server_name[0]);
}

/* What an accepted /migration request must hold. */
static void check_migration(const struct vm_action *a)
{
	char err[128];
	switch (a->kind) {
	case ACT_MIGRATION_SEND: {
		const struct mig_send_params *p = &a->u.mig_send;
		if (fc_mig_url_check(p->url, err, sizeof(err)) || strlen(p->url) >= sizeof(p->url) ||
		    p->downtime_limit_ms < 1 || p->downtime_limit_ms > FC_MIG_MAX_DOWNTIME_MS ||
		    p->timeout_s < 1 || p->timeout_s > FC_MIG_MAX_TIMEOUT_S ||
		    p->max_bandwidth_mib > FC_MIG_MAX_BANDWIDTH_MIB || (unsigned)p->mode > MIGP_LOCAL ||
		    (p->mode == MIGP_LOCAL && strncmp(p->url, "unix:", 5)) || !tls_ok(&p->tls, true))
			__builtin_trap();
		break;
	}
	case ACT_MIGRATION_RECEIVE: {
		const struct mig_recv_params *p = &a->u.mig_recv;
		if (fc_mig_url_check(p->url, err, sizeof(err)) || p->timeout_s < 1 ||
		    p->timeout_s > FC_MIG_MAX_TIMEOUT_S || !tls_ok(&p->tls, false))
			__builtin_trap();
		break;
	}
	default: break;
	}
}

static void fuzz_request(const uint8_t *data, size_t size)
{
	const uint8_t *nl1 = memchr(data, '\n', size);
	if (!nl1)
		return;
	const uint8_t *p = nl1 + 1;
	const uint8_t *nl2 = memchr(p, '\n', size - (size_t)(p - data));
	if (!nl2)
		return;
	char *method = strndup((const char *)data, (size_t)(nl1 - data));
	char *path = strndup((const char *)p, (size_t)(nl2 - p));
	const char *body = (const char *)nl2 + 1;
	size_t body_len = size - (size_t)(nl2 + 1 - data);
	/* the body as its own allocation: reading past it is a report */
	char *b = body_len ? malloc(body_len) : NULL;
	if (!method || !path || (body_len && !b))
		goto out;
	if (body_len)
		memcpy(b, body, body_len);
	char fault[512];
	int status = -1;
	int r = fc_parse_request(method, path, b, body_len, &act, &status, fault, sizeof(fault));
	if (r) {
		if (r != -EINVAL || status != 400 || act.kind != ACT_NONE || !fault[0] ||
		    strlen(fault) >= sizeof(fault) || strchr(fault, '\n'))
			__builtin_trap();
		size_t len;
		char *s = fc_format_fault(fault, &len);
		check_json(s, len);
		free(s);
	} else {
		if (status != 0 || act.kind == ACT_NONE)
			__builtin_trap();
		check_migration(&act);
		config_init(&cfg);
		apply(&cfg, &act);
		char *s = replies(&cfg, (const uint8_t *)path, strlen(path));
		round_trip(&cfg, s);
		free(s);
	}
out:
	free(method);
	free(path);
	free(b);
}

static void fuzz_config_file(const uint8_t *data, size_t size)
{
	char *text = size ? malloc(size) : NULL;
	if (size && !text)
		return;
	if (size)
		memcpy(text, data, size);
	struct vm_action *acts = (struct vm_action *)1;
	size_t n = 1;
	char err[512];
	if (fc_config_file_actions(text, size, &acts, &n, err, sizeof(err))) {
		if (acts || n || !err[0])
			__builtin_trap();
	} else {
		config_init(&cfg);
		for (size_t i = 0; i < n; i++) {
			if (acts[i].kind == ACT_NONE)
				__builtin_trap();
			apply(&cfg, &acts[i]);
		}
		free(acts);
		char *s = replies(&cfg, data, size);
		round_trip(&cfg, s);
		free(s);
	}
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		fuzz_config_file(data + 1, size - 1);
	else
		fuzz_request(data + 1, size - 1);
	return 0;
}
