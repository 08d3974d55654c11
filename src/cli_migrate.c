/* SPDX-License-Identifier: MIT */
#include "cli_migrate.h"

#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "api/fc_json.h"
#include "api/http_client.h"
#include "util/log.h"
#include "util/str.h"

#define MIG_CLIENT_TIMEOUT_MS 10000
/* GETs in a row that time out (the VM's process alive but not answering)
 * before the command gives up: about five minutes */
#define MIG_MAX_SILENT_POLLS 30

/* ---- the status object ---------------------------------------------------- */

/* A member that must be an unsigned integer when present (absent: *out
 * keeps its value).  0, or -EINVAL with @err. */
static int get_u64(struct json_object *o, const char *key, uint64_t max, uint64_t *out, char *err,
		   size_t errlen)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
	    json_object_get_uint64(v) > max)
		return err_set(err, errlen, -EINVAL,
			       "GET /migration: `%s` is not an unsigned integer up to %llu", key,
			       (unsigned long long)max);
	*out = json_object_get_uint64(v);
	return 0;
}

static int get_u32(struct json_object *o, const char *key, uint32_t *out, char *err, size_t errlen)
{
	uint64_t v = *out;
	int r = get_u64(o, key, UINT32_MAX, &v, err, errlen);
	*out = (uint32_t)v;
	return r;
}

static void get_string(struct json_object *o, const char *key, char *buf, size_t size)
{
	struct json_object *v;
	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		snprintf(buf, size, "%s", json_object_get_string(v));
}

int cli_mig_status_parse(const char *json, size_t len, struct mig_status *s, char *err,
			 size_t errlen)
{
	memset(s, 0, sizeof(*s));
	if (len > INT32_MAX)
		return err_set(err, errlen, -EINVAL, "GET /migration: the answer is too large");
	struct json_tokener *tok = json_tokener_new();
	if (!tok)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	struct json_object *o = json_tokener_parse_ex(tok, json ? json : "", (int)len);
	bool ok = json_tokener_get_error(tok) == json_tokener_success;
	json_tokener_free(tok);
	int r = -EINVAL;
	if (!ok || !json_object_is_type(o, json_type_object)) {
		err_set(err, errlen, -EINVAL, "GET /migration: the answer is not a JSON object");
		goto out;
	}
	struct json_object *v;
	if (!json_object_object_get_ex(o, "state", &v) || !json_object_is_type(v, json_type_string)) {
		err_set(err, errlen, -EINVAL, "GET /migration: the answer has no `state`");
		goto out;
	}
	int st = fc_mig_state_parse(json_object_get_string(v));
	if (st < 0) {
		err_set(err, errlen, -EINVAL, "GET /migration: unknown state `%.40s`",
			json_object_get_string(v));
		goto out;
	}
	s->state = (enum mig_state_kind)st;
	if (json_object_object_get_ex(o, "mode", &v) && json_object_is_type(v, json_type_string)) {
		int m = fc_mig_mode_parse(json_object_get_string(v));
		s->mode = m < 0 ? MIGP_PRECOPY : (enum mig_mode_param)m;
	}
	if (json_object_object_get_ex(o, "incoming", &v) && json_object_is_type(v, json_type_boolean))
		s->incoming = json_object_get_boolean(v);
	get_string(o, "url", s->url, sizeof(s->url));
	get_string(o, "error", s->error, sizeof(s->error));
	if (get_u32(o, "pass", &s->pass, err, errlen) ||
	    get_u64(o, "bytes", UINT64_MAX, &s->bytes, err, errlen) ||
	    get_u64(o, "pages_data", UINT64_MAX, &s->pages_data, err, errlen) ||
	    get_u64(o, "pages_zero", UINT64_MAX, &s->pages_zero, err, errlen) ||
	    get_u64(o, "remaining_bytes", UINT64_MAX, &s->remaining_bytes, err, errlen) ||
	    get_u64(o, "mem_bytes", UINT64_MAX, &s->mem_bytes, err, errlen) ||
	    get_u64(o, "dirty_rate_bps", UINT64_MAX, &s->dirty_rate, err, errlen) ||
	    get_u64(o, "bandwidth_bps", UINT64_MAX, &s->bandwidth, err, errlen) ||
	    get_u64(o, "expected_downtime_ms", UINT64_MAX, &s->expected_downtime_ms, err, errlen) ||
	    get_u32(o, "downtime_limit_ms", &s->downtime_limit_ms, err, errlen) ||
	    get_u32(o, "throttle_pct", &s->throttle_pct, err, errlen) ||
	    get_u64(o, "elapsed_ms", UINT64_MAX, &s->elapsed_ms, err, errlen) ||
	    get_u64(o, "downtime_ms", UINT64_MAX, &s->downtime_ms, err, errlen))
		goto out;
	r = 0;
out:
	json_object_put(o);
	if (r)
		memset(s, 0, sizeof(*s));
	return r;
}

/* ---- the request ------------------------------------------------------------ */

char *cli_mig_send_body(const struct mig_send_params *p)
{
	struct json_object *b = json_object_new_object();
	if (!b)
		return NULL;
	json_object_object_add(b, "url", json_object_new_string(p->url));
	json_object_object_add(b, "downtime_limit_ms", json_object_new_int64(p->downtime_limit_ms));
	json_object_object_add(b, "max_bandwidth_mib", json_object_new_int64((int64_t)p->max_bandwidth_mib));
	json_object_object_add(b, "timeout_s", json_object_new_int64(p->timeout_s));
	json_object_object_add(b, "mode", json_object_new_string(fc_mig_mode_name(p->mode)));
	if (p->verify)
		json_object_object_add(b, "verify", json_object_new_boolean(1));
	if (p->tls.enabled) {
		struct json_object *t = json_object_new_object();
		json_object_object_add(t, "cert", json_object_new_string(p->tls.cert));
		json_object_object_add(t, "key", json_object_new_string(p->tls.key));
		json_object_object_add(t, "ca", json_object_new_string(p->tls.ca));
		if (p->tls.server_name[0])
			json_object_object_add(t, "server_name", json_object_new_string(p->tls.server_name));
		json_object_object_add(b, "tls", t);
	}
	const char *s = json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN |
							     JSON_C_TO_STRING_NOSLASHESCAPE);
	char *r = s ? strdup(s) : NULL;
	json_object_put(b);
	return r;
}

int cli_mig_abs_path(const char *path, const char *cwd, char *out, size_t len)
{
	int n = path[0] == '/' ? snprintf(out, len, "%s", path)
			       : snprintf(out, len, "%s%s%s", cwd,
					  cwd[0] && cwd[strlen(cwd) - 1] == '/' ? "" : "/", path);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int cli_mig_abs_url(const char *url, const char *cwd, char *out, size_t len)
{
	if (strncmp(url, "unix:", 5) || url[5] == '/') {
		int n = snprintf(out, len, "%s", url);
		return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
	}
	if (len < 6)
		return -ENAMETOOLONG;
	memcpy(out, "unix:", 5);
	return cli_mig_abs_path(url + 5, cwd, out + 5, len - 5);
}

/* ---- formatting ----------------------------------------------------------------- */

/* "0.3 MiB" below 10 MiB, "1843 MiB" above */
static void fmt_mib(uint64_t bytes, char *buf, size_t len)
{
	if (bytes < (10ULL << 20))
		snprintf(buf, len, "%.1f MiB", (double)bytes / (1 << 20));
	else
		snprintf(buf, len, "%llu MiB", (unsigned long long)(bytes >> 20));
}

static void fmt_rate(uint64_t bps, char *buf, size_t len)
{
	snprintf(buf, len, "%.1f MiB/s", (double)bps / (1 << 20));
}

static void fmt_secs(uint64_t s, char *buf, size_t len)
{
	if (s < 60)
		snprintf(buf, len, "%llu s", (unsigned long long)s);
	else if (s < 3600)
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60), (unsigned long long)(s % 60));
	else
		snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60));
}

/* Memory still to send.  During the first pass (Active, pass 0) the
 * engine has no dirty count yet: what the pass has not reached, guest
 * memory less the pages sent so far. */
static uint64_t left_bytes(const struct mig_status *s)
{
	if (s->state != MIGS_ACTIVE || s->pass || !s->mem_bytes)
		return s->remaining_bytes;
	uint64_t pages = s->pages_data + s->pages_zero, total = s->mem_bytes / 4096;
	return pages < total ? (total - pages) * 4096 : 0;
}

/* The link's rate: the last pass's, or during the first pass the average
 * so far. */
static uint64_t rate_bps(const struct mig_status *s)
{
	if (s->bandwidth || !s->elapsed_ms)
		return s->bandwidth;
	return s->bytes > UINT64_MAX / 1000 ? s->bytes / s->elapsed_ms * 1000
					    : s->bytes * 1000 / s->elapsed_ms;
}

/* Percent of guest memory no longer waiting to be sent. */
static unsigned done_pct(const struct mig_status *s)
{
	if (!s->mem_bytes)
		return 0;
	uint64_t left = left_bytes(s);
	if (left > s->mem_bytes)
		left = s->mem_bytes;
	uint64_t done = s->mem_bytes - left;
	uint64_t pct = s->mem_bytes > UINT64_MAX / 100 ? done / (s->mem_bytes / 100)
						       : done * 100 / s->mem_bytes;
	return pct > 100 ? 100 : (unsigned)pct;
}

/* "sent 1843 MiB, left 2253 MiB, 850.3 MiB/s, dirty 12.0 MiB/s" */
static void fmt_amounts(const struct mig_status *s, char *buf, size_t len)
{
	char sent[32], left[32], rate[32], dirty[32];
	fmt_mib(s->bytes, sent, sizeof(sent));
	fmt_mib(left_bytes(s), left, sizeof(left));
	fmt_rate(rate_bps(s), rate, sizeof(rate));
	fmt_rate(s->dirty_rate, dirty, sizeof(dirty));
	snprintf(buf, len, "sent %s, left %s, %s, dirty %s", sent, left, rate, dirty);
}

/* What a state is doing, for the states that are not memory passes. */
static const char *phase(const struct mig_status *s)
{
	switch (s->state) {
	case MIGS_NONE: return "waiting";
	case MIGS_SETUP: return "setting up";
	case MIGS_ACTIVE: return NULL;
	case MIGS_SWITCHOVER: return "switch-over (guest paused)";
	case MIGS_POSTCOPY: return "post-copy (destination runs)";
	case MIGS_COMPLETED: return "completed";
	case MIGS_FAILED: return "failed";
	case MIGS_CANCELLED: return "cancelled";
	}
	return "?";
}

void cli_mig_progress(const struct mig_status *s, unsigned width, char *buf, size_t len)
{
	if (!len)
		return;
	char head[48], amounts[160], tail[64] = "", line[512];
	const char *ph = phase(s);
	if (ph && s->state != MIGS_SWITCHOVER && s->state != MIGS_POSTCOPY)
		snprintf(head, sizeof(head), "%s", ph);
	else if (ph)
		snprintf(head, sizeof(head), "%s", s->state == MIGS_SWITCHOVER ? "switch-over" : "post-copy");
	else
		snprintf(head, sizeof(head), "pass %u", s->pass);
	fmt_amounts(s, amounts, sizeof(amounts));
	if (s->state == MIGS_ACTIVE || s->state == MIGS_POSTCOPY) {
		char eta[24] = "-";
		uint64_t rate = rate_bps(s), left = left_bytes(s);
		if (rate)
			fmt_secs(left / rate + (left % rate != 0), eta, sizeof(eta));
		snprintf(tail, sizeof(tail), ", ETA %s", eta);
	}
	if (s->throttle_pct) {
		size_t n = strlen(tail);
		snprintf(tail + n, sizeof(tail) - n, ", throttle %u%%", s->throttle_pct);
	}
	unsigned pct = done_pct(s);
	/* a bar of a width that depends on the terminal only, so it does not
	 * jump when the text beside it changes length */
	char text[256];
	snprintf(text, sizeof(text), " %3u%%  %s%s", pct, amounts, tail);
	int cells = width >= 140 ? 30 : width >= 110 ? 20 : 10;
	char bar[32];
	int full = cells * (int)pct / 100;
	for (int i = 0; i < cells; i++)
		bar[i] = i < full ? '#' : '-';
	bar[cells] = 0;
	snprintf(line, sizeof(line), "%s [%s]%s", head, bar, text);
	size_t max = width > 1 ? width - 1 : 1;
	if (max > len - 1)
		max = len - 1;
	snprintf(buf, max + 1, "%s", line);
}

void cli_mig_pass_line(const struct mig_status *s, char *buf, size_t len)
{
	char amounts[160], extra[96] = "";
	fmt_amounts(s, amounts, sizeof(amounts));
	if (s->state == MIGS_ACTIVE && s->expected_downtime_ms)
		snprintf(extra, sizeof(extra), ", expected downtime %llu ms",
			 (unsigned long long)s->expected_downtime_ms);
	if (s->throttle_pct) {
		size_t n = strlen(extra);
		snprintf(extra + n, sizeof(extra) - n, ", throttle %u%%", s->throttle_pct);
	}
	const char *ph = phase(s);
	if (ph)
		snprintf(buf, len, "%s: %s%s", ph, amounts, extra);
	else
		snprintf(buf, len, "pass %u: %s%s", s->pass, amounts, extra);
}

void cli_mig_summary(const char *vm, const char *url, const struct mig_status *s, bool gone,
		     char *buf, size_t len)
{
	if (gone) {
		snprintf(buf, len, "migrated %s to %s: completed (the source exited before its final "
				   "status was read)",
			 vm, url);
		return;
	}
	unsigned long long ds = s->elapsed_ms / 100;
	if (s->state == MIGS_COMPLETED) {
		char sent[32];
		fmt_mib(s->bytes, sent, sizeof(sent));
		if (s->mode == MIGP_LOCAL)
			snprintf(buf, len, "migrated %s to %s in %llu.%llu s: guest memory handed over, "
					   "%s sent, downtime %llu ms",
				 vm, url, ds / 10, ds % 10, sent, (unsigned long long)s->downtime_ms);
		else
			snprintf(buf, len, "migrated %s to %s in %llu.%llu s: %s sent in %u pass%s, "
					   "downtime %llu ms",
				 vm, url, ds / 10, ds % 10, sent, s->pass, s->pass == 1 ? "" : "es",
				 (unsigned long long)s->downtime_ms);
		return;
	}
	const char *how = s->state == MIGS_CANCELLED ? "was cancelled" : "failed";
	if (s->state == MIGS_NONE)
		snprintf(buf, len, "migration of %s to %s failed: the VM reports no migration", vm, url);
	else
		snprintf(buf, len, "migration of %s to %s %s after %llu.%llu s%s%s", vm, url, how, ds / 10,
			 ds % 10, s->error[0] ? ": " : "", s->error);
}

enum cli_mig_next cli_mig_next(enum mig_state_kind st)
{
	switch (st) {
	case MIGS_SETUP:
	case MIGS_ACTIVE:
	case MIGS_SWITCHOVER:
	case MIGS_POSTCOPY: return CLI_MIG_WAIT;
	case MIGS_COMPLETED: return CLI_MIG_DONE;
	case MIGS_NONE:
	case MIGS_FAILED:
	case MIGS_CANCELLED: return CLI_MIG_FAILED;
	}
	return CLI_MIG_FAILED;
}

enum cli_mig_next cli_mig_after_gone(enum mig_state_kind last)
{
	return last == MIGS_SWITCHOVER || last == MIGS_COMPLETED ? CLI_MIG_DONE : CLI_MIG_FAILED;
}

/* ---- the command ------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) && errno == EINTR && !interrupted)
		;
}

/* One request; the answer's status and body.  0, or -errno (the request
 * got no answer) with @err. */
static int request(const char *sock, const char *method, const char *path, const char *body,
		   int *status, char **resp, size_t *rlen, char *err, size_t errlen)
{
	*resp = NULL;
	*rlen = 0;
	return http_client_request(sock, method, path, body, MIG_CLIENT_TIMEOUT_MS, status, resp, rlen,
				   err, errlen);
}

/* The fault_message of a refusal, or a generic text. */
static void fault_of(const char *resp, size_t rlen, char *buf, size_t len)
{
	struct json_object *j = resp && rlen ? json_tokener_parse(resp) : NULL, *fm;
	snprintf(buf, len, "%s",
		 j && json_object_object_get_ex(j, "fault_message", &fm) &&
				 json_object_is_type(fm, json_type_string)
			 ? json_object_get_string(fm)
			 : "request refused");
	json_object_put(j);
}

/* A request that must answer 2xx; errors logged.  0 or -1. */
static int call(const char *sock, const char *method, const char *path, const char *body,
		char **resp, size_t *rlen)
{
	int status = 0;
	char err[256];
	if (request(sock, method, path, body, &status, resp, rlen, err, sizeof(err))) {
		log_error("%s", err);
		return -1;
	}
	if (status >= 300) {
		char fault[512];
		fault_of(*resp, *rlen, fault, sizeof(fault));
		log_error("%s %s: %s", method, path, fault);
		free(*resp);
		*resp = NULL;
		return -1;
	}
	return 0;
}

static bool connection_gone(int r)
{
	return r == -ENOENT || r == -ECONNREFUSED || r == -ECONNRESET || r == -EPIPE || r == -EPROTO;
}

static unsigned term_width(void)
{
	struct winsize ws;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

static int do_status(const char *sock, const struct cli_opts *o)
{
	char *resp;
	size_t rlen;
	if (call(sock, "GET", "/migration", NULL, &resp, &rlen))
		return 1;
	struct mig_status s;
	char err[256], line[512];
	int r = cli_mig_status_parse(resp, rlen, &s, err, sizeof(err));
	if (r) {
		log_error("%s", err);
	} else if (o->ctl_json) {
		printf("%s\n", resp);
	} else if (s.state == MIGS_NONE) {
		printf("%s: no migration\n", o->ctl_target);
	} else {
		cli_mig_pass_line(&s, line, sizeof(line));
		printf("%s: migration %s%s%s%s: %s\n", o->ctl_target, fc_mig_state_name(s.state),
		       s.url[0] ? (s.incoming ? " from " : " to ") : "", s.url,
		       s.error[0] ? " (error)" : "", line);
		if (s.error[0])
			printf("%s: %s\n", o->ctl_target, s.error);
	}
	free(resp);
	return r ? 1 : 0;
}

/* The request's options with the file names made absolute. */
static int send_params(const struct cli_opts *o, struct mig_send_params *p)
{
	char cwd[2048];
	*p = o->mig;
	if (!getcwd(cwd, sizeof(cwd))) {
		log_error("migrate: cannot tell the current directory: %s", strerror(errno));
		return -1;
	}
	if (cli_mig_abs_url(o->mig.url, cwd, p->url, sizeof(p->url))) {
		log_error("migrate: --to %s: the socket's absolute path is too long", o->mig.url);
		return -1;
	}
	if (!strncmp(p->url, "unix:", 5) && strlen(p->url + 5) > 107) {
		log_error("migrate: --to %s: a Unix socket path is at most 107 bytes (here %zu, "
			  "made absolute: the VM's process resolves it from its own directory)",
			  o->mig.url, strlen(p->url + 5));
		return -1;
	}
	if (p->tls.enabled &&
	    (cli_mig_abs_path(o->mig.tls.cert, cwd, p->tls.cert, sizeof(p->tls.cert)) ||
	     cli_mig_abs_path(o->mig.tls.key, cwd, p->tls.key, sizeof(p->tls.key)) ||
	     cli_mig_abs_path(o->mig.tls.ca, cwd, p->tls.ca, sizeof(p->tls.ca)))) {
		log_error("migrate: a TLS file's absolute path is too long");
		return -1;
	}
	return 0;
}

static int follow(const char *sock, const char *vm, const char *url)
{
	bool tty = isatty(STDERR_FILENO);
	bool drawn = false;
	struct mig_status s, last = {.state = MIGS_SETUP};
	bool have_last = false, gone = false, cancel_sent = false;
	unsigned silent = 0;
	uint64_t t0 = now_ns();
	enum cli_mig_next next = CLI_MIG_WAIT;
	char line[512], err[256];
	while (next == CLI_MIG_WAIT) {
		if (interrupted && !cancel_sent) {
			/* Ctrl-C: cancel the migration and report how it ended */
			char *resp;
			size_t rlen;
			if (drawn)
				fputs("\n", stderr);
			drawn = false;
			fprintf(stderr, "cancelling the migration (Ctrl-C again: stop waiting for its end)\n");
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			if (call(sock, "PATCH", "/migration", "{\"state\": \"Cancelled\"}", &resp, &rlen) == 0)
				free(resp);
			cancel_sent = true;
		}
		int status = 0;
		char *resp;
		size_t rlen;
		int r = request(sock, "GET", "/migration", NULL, &status, &resp, &rlen, err, sizeof(err));
		if (r && connection_gone(r)) {
			next = cli_mig_after_gone(last.state);
			gone = true;
			if (next == CLI_MIG_FAILED) {
				if (drawn)
					fputs("\n", stderr);
				log_error("migration of %s to %s: the VM's API went away during %s (%s)", vm,
					  url, fc_mig_state_name(last.state), err);
				return 1;
			}
			break;
		}
		if (r) {
			/* no answer in time: the process is there but busy */
			if (++silent >= MIG_MAX_SILENT_POLLS) {
				if (drawn)
					fputs("\n", stderr);
				log_error("migration of %s to %s: the VM does not answer: %s", vm, url, err);
				return 1;
			}
			sleep_ms(CLI_MIG_POLL_MS);
			continue;
		}
		silent = 0;
		if (status >= 300) {
			char fault[512];
			fault_of(resp, rlen, fault, sizeof(fault));
			free(resp);
			if (drawn)
				fputs("\n", stderr);
			log_error("GET /migration: %s", fault);
			return 1;
		}
		r = cli_mig_status_parse(resp, rlen, &s, err, sizeof(err));
		free(resp);
		if (r) {
			if (drawn)
				fputs("\n", stderr);
			log_error("%s", err);
			return 1;
		}
		if (!s.elapsed_ms)
			s.elapsed_ms = (now_ns() - t0) / 1000000;
		next = cli_mig_next(s.state);
		if (tty) {
			cli_mig_progress(&s, term_width(), line, sizeof(line));
			fprintf(stderr, "\r%s\033[K", line);
			drawn = true;
		} else if (!have_last || s.pass != last.pass || s.state != last.state) {
			cli_mig_pass_line(&s, line, sizeof(line));
			fprintf(stderr, "%s\n", line);
		}
		fflush(stderr);
		last = s;
		have_last = true;
		if (next == CLI_MIG_WAIT)
			sleep_ms(CLI_MIG_POLL_MS);
	}
	if (drawn)
		fputs("\n", stderr);
	cli_mig_summary(vm, url, &last, gone, line, sizeof(line));
	if (next == CLI_MIG_DONE) {
		printf("%s\n", line);
		return fflush(stdout) ? 1 : 0;
	}
	log_error("%s", line);
	return 1;
}

int cli_migrate_main(const char *sock, const struct cli_opts *o)
{
	if (o->mig_cancel) {
		char *resp;
		size_t rlen;
		if (call(sock, "PATCH", "/migration", "{\"state\": \"Cancelled\"}", &resp, &rlen))
			return 1;
		free(resp);
		printf("%s: migration cancelled (the VM keeps running here)\n", o->ctl_target);
		return 0;
	}
	if (o->mig_status)
		return do_status(sock, o);
	struct mig_send_params *p = calloc(1, sizeof(*p));
	if (!p)
		return 1;
	char *body = NULL, *resp = NULL;
	size_t rlen;
	int code = 1;
	if (send_params(o, p))
		goto out;
	body = cli_mig_send_body(p);
	if (!body) {
		log_error("out of memory");
		goto out;
	}
	if (call(sock, "PUT", "/migration/send", body, &resp, &rlen))
		goto out;
	free(resp);
	if (o->mig_no_wait) {
		printf("%s: migrating to %s (follow: visor migrate %s --status; stop: visor migrate %s "
		       "--cancel)\n",
		       o->ctl_target, o->mig.url, o->ctl_target, o->ctl_target);
		code = 0;
		goto out;
	}
	struct sigaction sa = {.sa_handler = on_interrupt};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	code = follow(sock, o->ctl_target, o->mig.url);
out:
	free(body);
	free(p);
	return code;
}
