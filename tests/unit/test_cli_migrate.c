/* SPDX-License-Identifier: MIT */
/* `visor migrate` (cli_migrate.c): the request body, the status parser, the
 * progress and summary lines, the poll loop's decisions. */
#include "../../src/cli_migrate.h"

#include <errno.h>

#include "../../src/api/fc_json.h"
#include "test.h"

static struct vm_action A;
static struct vm_reply R;

/* GET /migration's body for @s, as the API writes it. */
static char *encode(const struct mig_status *s, size_t *len)
{
	struct vm_action a = {.kind = ACT_MIGRATION_GET};
	memset(&R, 0, sizeof(R));
	R.status = 200;
	R.mig = *s;
	return fc_format_reply(&a, &R, len);
}

static struct mig_status sample(void)
{
	struct mig_status s = {
		.state = MIGS_ACTIVE,
		.mode = MIGP_AUTO,
		.pass = 2,
		.bytes = 1843ULL << 20,
		.pages_data = 400000,
		.pages_zero = 600000,
		.remaining_bytes = 2253ULL << 20,
		.mem_bytes = 4096ULL << 20,
		.dirty_rate = 12ULL << 20,
		.bandwidth = 850ULL << 20,
		.expected_downtime_ms = 14,
		.downtime_limit_ms = 50,
		.throttle_pct = 20,
		.elapsed_ms = 12345,
	};
	snprintf(s.url, sizeof(s.url), "tcp:10.0.0.2:4444");
	return s;
}

TEST(status_round_trip)
{
	/* what the API writes, the CLI reads back field by field */
	struct mig_status in = sample(), out;
	in.incoming = true;
	in.downtime_ms = 9;
	snprintf(in.error, sizeof(in.error), "a \"quoted\" reason");
	size_t len;
	char *j = encode(&in, &len);
	char err[256];
	CHECK_EQ(cli_mig_status_parse(j, len, &out, err, sizeof(err)), 0);
	free(j);
	CHECK_EQ(out.state, MIGS_ACTIVE);
	CHECK(out.incoming);
	CHECK_EQ(out.mode, MIGP_AUTO);
	CHECK_STR(out.url, "tcp:10.0.0.2:4444");
	CHECK_EQ(out.pass, 2);
	CHECK_EQ(out.bytes, 1843ULL << 20);
	CHECK_EQ(out.pages_data, 400000);
	CHECK_EQ(out.pages_zero, 600000);
	CHECK_EQ(out.remaining_bytes, 2253ULL << 20);
	CHECK_EQ(out.mem_bytes, 4096ULL << 20);
	CHECK_EQ(out.dirty_rate, 12ULL << 20);
	CHECK_EQ(out.bandwidth, 850ULL << 20);
	CHECK_EQ(out.expected_downtime_ms, 14);
	CHECK_EQ(out.downtime_limit_ms, 50);
	CHECK_EQ(out.throttle_pct, 20);
	CHECK_EQ(out.elapsed_ms, 12345);
	CHECK_EQ(out.downtime_ms, 9);
	CHECK_STR(out.error, "a \"quoted\" reason");
	CHECK(memcmp(&in, &out, sizeof(in)) == 0);
	/* each state */
	for (int st = MIGS_NONE; st <= MIGS_CANCELLED; st++) {
		in.state = (enum mig_state_kind)st;
		j = encode(&in, &len);
		CHECK_EQ(cli_mig_status_parse(j, len, &out, err, sizeof(err)), 0);
		CHECK_EQ(out.state, st);
		free(j);
	}
}

TEST(status_parse_refusals)
{
	struct mig_status s;
	char err[256];
	static const struct {
		const char *json, *want;
	} bad[] = {
		{"", "not a JSON object"},
		{"[1]", "not a JSON object"},
		{"{\"state\": \"Active\"", "not a JSON object"},
		{"{}", "has no `state`"},
		{"{\"state\": 3}", "has no `state`"},
		{"{\"state\": \"Running\"}", "unknown state `Running`"},
		{"{\"state\": \"Active\", \"pass\": -1}", "`pass` is not an unsigned integer up to 4294967295"},
		{"{\"state\": \"Active\", \"pass\": 4294967296}", "`pass` is not an unsigned integer"},
		{"{\"state\": \"Active\", \"bytes\": \"12\"}", "`bytes` is not an unsigned integer"},
		{"{\"state\": \"Active\", \"throttle_pct\": 1.5}", "`throttle_pct` is not an unsigned integer"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s.state = MIGS_COMPLETED;
		err[0] = 0;
		CHECK_EQ(cli_mig_status_parse(bad[i].json, strlen(bad[i].json), &s, err, sizeof(err)),
			 (unsigned long long)-EINVAL);
		if (!strstr(err, bad[i].want))
			printf("  case %zu: '%s' lacks '%s'\n", i, err, bad[i].want);
		CHECK(strstr(err, bad[i].want) != NULL);
		/* nothing half-read is left behind */
		CHECK_EQ(s.state, MIGS_NONE);
	}
	/* fields a newer visor adds are ignored; missing ones are zero */
	const char *j = "{\"state\": \"Postcopy\", \"future_field\": [1, 2], \"bytes\": 7, "
			"\"mode\": \"warp\"}";
	CHECK_EQ(cli_mig_status_parse(j, strlen(j), &s, err, sizeof(err)), 0);
	CHECK_EQ(s.state, MIGS_POSTCOPY);
	CHECK_EQ(s.bytes, 7);
	CHECK_EQ(s.pass, 0);
	CHECK_EQ(s.mode, MIGP_PRECOPY);
	CHECK_STR(s.url, "");
	/* the largest numbers */
	j = "{\"state\": \"Active\", \"bytes\": 18446744073709551615, \"pass\": 4294967295}";
	CHECK_EQ(cli_mig_status_parse(j, strlen(j), &s, err, sizeof(err)), 0);
	CHECK_EQ(s.bytes, UINT64_MAX);
	CHECK_EQ(s.pass, UINT32_MAX);
}

TEST(send_body_is_what_the_api_decodes)
{
	/* the body the CLI sends decodes, through the API's own decoder, to
	 * the same parameters */
	struct mig_send_params p = {
		.downtime_limit_ms = 20, .max_bandwidth_mib = 1000, .timeout_s = 600, .mode = MIGP_POSTCOPY};
	snprintf(p.url, sizeof(p.url), "unix:/run/a \"b\"\\c.sock");
	int st;
	char fault[512];
	for (int tls = 0; tls < 3; tls++) {
		p.tls.enabled = tls > 0;
		if (tls) {
			snprintf(p.tls.cert, sizeof(p.tls.cert), "/pki/src.pem");
			snprintf(p.tls.key, sizeof(p.tls.key), "/pki/src.key");
			snprintf(p.tls.ca, sizeof(p.tls.ca), "/pki/ca.pem");
		}
		if (tls == 2)
			snprintf(p.tls.server_name, sizeof(p.tls.server_name), "dst.example");
		char *body = cli_mig_send_body(&p);
		CHECK(body != NULL);
		int r = fc_parse_request("PUT", "/migration/send", body, strlen(body), &A, &st, fault,
					 sizeof(fault));
		if (r)
			printf("  refused: %s (%s)\n", fault, body);
		CHECK_EQ(r, 0);
		CHECK_EQ(A.kind, ACT_MIGRATION_SEND);
		CHECK(memcmp(&A.u.mig_send, &p, sizeof(p)) == 0);
		CHECK_EQ(strstr(body, "server_name") != NULL, tls == 2);
		CHECK_EQ(strstr(body, "\"tls\"") != NULL, tls > 0);
		free(body);
	}
	/* every mode by its name */
	for (int m = MIGP_PRECOPY; m <= MIGP_LOCAL; m++) {
		memset(&p, 0, sizeof(p));
		snprintf(p.url, sizeof(p.url), "unix:/d");
		p.downtime_limit_ms = 50;
		p.timeout_s = 3600;
		p.mode = (enum mig_mode_param)m;
		char *body = cli_mig_send_body(&p);
		CHECK_EQ(fc_parse_request("PUT", "/migration/send", body, strlen(body), &A, &st, fault,
					  sizeof(fault)),
			 0);
		CHECK_EQ(A.u.mig_send.mode, m);
		free(body);
	}
}

TEST(absolute_names)
{
	char out[64];
	CHECK_EQ(cli_mig_abs_path("/etc/ca.pem", "/home/u", out, sizeof(out)), 0);
	CHECK_STR(out, "/etc/ca.pem");
	CHECK_EQ(cli_mig_abs_path("pki/ca.pem", "/home/u", out, sizeof(out)), 0);
	CHECK_STR(out, "/home/u/pki/ca.pem");
	CHECK_EQ(cli_mig_abs_path("ca.pem", "/", out, sizeof(out)), 0);
	CHECK_STR(out, "/ca.pem");
	CHECK_EQ(cli_mig_abs_url("unix:dst.sock", "/run/x", out, sizeof(out)), 0);
	CHECK_STR(out, "unix:/run/x/dst.sock");
	CHECK_EQ(cli_mig_abs_url("unix:/abs.sock", "/run/x", out, sizeof(out)), 0);
	CHECK_STR(out, "unix:/abs.sock");
	CHECK_EQ(cli_mig_abs_url("tcp:10.0.0.2:4444", "/run/x", out, sizeof(out)), 0);
	CHECK_STR(out, "tcp:10.0.0.2:4444");
	/* never truncated */
	char small[16];
	CHECK_EQ(cli_mig_abs_path("a-long-name.pem", "/home/u", small, sizeof(small)),
		 (unsigned long long)-ENAMETOOLONG);
	CHECK_EQ(cli_mig_abs_url("unix:d.sock", "/home/user", small, sizeof(small)),
		 (unsigned long long)-ENAMETOOLONG);
	CHECK_EQ(cli_mig_abs_url("unix:d", "/h", small, sizeof(small)), 0);
	CHECK_STR(small, "unix:/h/d");
	CHECK_EQ(cli_mig_abs_url("tcp:10.0.0.2:4444", "/", small, sizeof(small)),
		 (unsigned long long)-ENAMETOOLONG);
	CHECK_EQ(cli_mig_abs_url("unix:d", "/h", small, 4), (unsigned long long)-ENAMETOOLONG);
}

TEST(progress_bar)
{
	struct mig_status s = sample();
	char line[512];
	/* 2253 of 4096 MiB left: 44% done; 2253 MiB at 850 MiB/s: 3 s */
	cli_mig_progress(&s, 160, line, sizeof(line));
	CHECK_STR(line, "pass 2 [#############-----------------]  44%  sent 1843 MiB, left 2253 MiB, "
			"850.0 MiB/s, dirty 12.0 MiB/s, ETA 3 s, throttle 20%");
	CHECK(strlen(line) <= 159);
	/* a narrow terminal: a bar of 10 cells, the line cut to fit (a
	 * wrapped line could not be redrawn in place) */
	cli_mig_progress(&s, 80, line, sizeof(line));
	CHECK_EQ(strlen(line), 79);
	CHECK(!strncmp(line, "pass 2 [####------]  44%  sent 1843 MiB", 38));
	/* between: 20 cells; the bar's width depends on the terminal's only */
	cli_mig_progress(&s, 130, line, sizeof(line));
	CHECK_EQ(strlen(line), 118);
	CHECK(!strncmp(line, "pass 2 [########------------]  44%", 34));
	CHECK(strstr(line, "throttle 20%") != NULL);
	s.throttle_pct = 0;
	cli_mig_progress(&s, 130, line, sizeof(line));
	CHECK(!strncmp(line, "pass 2 [########------------]  44%", 34));
	s.throttle_pct = 20;
	/* the first pass: no dirty count and no pass bandwidth yet; what is
	 * left is what the pass has not reached, the rate the average so far */
	s.throttle_pct = 0;
	s.bandwidth = 0;
	s.pass = 0;
	s.remaining_bytes = 0;
	s.pages_data = 100;
	s.pages_zero = 156;
	s.bytes = 300 << 10;
	s.elapsed_ms = 3000;
	cli_mig_progress(&s, 200, line, sizeof(line));
	CHECK_STR(line, "pass 0 [------------------------------]   0%  sent 0.3 MiB, left 4095 MiB, "
			"0.1 MiB/s, dirty 12.0 MiB/s, ETA 11h38m");
	s.pages_data = (3072ULL << 20) / 4096 - 156;
	s.bytes = 2048ULL << 20;
	s.elapsed_ms = 2000;
	cli_mig_progress(&s, 200, line, sizeof(line));
	CHECK_STR(line, "pass 0 [######################--------]  75%  sent 2048 MiB, left 1024 MiB, "
			"1024.0 MiB/s, dirty 12.0 MiB/s, ETA 1 s");
	/* nothing measured at all */
	s.elapsed_ms = 0;
	s.bytes = 0;
	cli_mig_progress(&s, 200, line, sizeof(line));
	CHECK(strstr(line, "0.0 MiB/s") != NULL);
	CHECK(strstr(line, "ETA -") != NULL);
	/* pages beyond memory (a racing count) leave nothing, never negative */
	s.pages_data = UINT64_MAX / 2;
	cli_mig_progress(&s, 200, line, sizeof(line));
	CHECK(strstr(line, " 100%  ") != NULL);
	CHECK(strstr(line, "left 0.0 MiB") != NULL);
	s.pages_data = 100;
	s.bandwidth = 850ULL << 20;
	s.elapsed_ms = 12345;
	/* the switch-over and post-copy */
	s.state = MIGS_SWITCHOVER;
	s.remaining_bytes = 0;
	cli_mig_progress(&s, 200, line, sizeof(line));
	CHECK(!strncmp(line, "switch-over [##############################] 100%", 48));
	CHECK(strstr(line, "ETA") == NULL);
	s.state = MIGS_POSTCOPY;
	s.remaining_bytes = 1024ULL << 20;
	s.bandwidth = 100ULL << 20;
	cli_mig_progress(&s, 200, line, sizeof(line));
	CHECK(!strncmp(line, "post-copy [######################--------]  75%", 47));
	CHECK(strstr(line, "ETA 11 s") != NULL);
	/* ETA in minutes and hours */
	s.remaining_bytes = 125ULL * (100ULL << 20);
	cli_mig_progress(&s, 200, line, sizeof(line));
	CHECK(strstr(line, "ETA 2m05s") != NULL);
	s.remaining_bytes = 3700ULL * (100ULL << 20);
	s.mem_bytes = UINT64_MAX;
	cli_mig_progress(&s, 200, line, sizeof(line));
	CHECK(strstr(line, "ETA 1h01m") != NULL);
	/* nothing known yet */
	struct mig_status z = {.state = MIGS_SETUP};
	cli_mig_progress(&z, 80, line, sizeof(line));
	CHECK(!strncmp(line, "setting up [", 12));
	CHECK(strstr(line, "  0%") != NULL);
	/* remaining beyond memory (a dirty count racing a smaller size) is 0%,
	 * never negative */
	z.state = MIGS_ACTIVE;
	z.pass = 1;
	z.mem_bytes = 100;
	z.remaining_bytes = 200;
	cli_mig_progress(&z, 80, line, sizeof(line));
	CHECK(strstr(line, "   0%") != NULL);
	/* a tiny buffer or width never overflows */
	char tiny[8];
	cli_mig_progress(&s, 200, tiny, sizeof(tiny));
	CHECK_EQ(strlen(tiny), 7);
	cli_mig_progress(&s, 0, line, sizeof(line));
	CHECK(strlen(line) <= 1);
}

TEST(pass_lines)
{
	struct mig_status s = sample();
	char line[512];
	cli_mig_pass_line(&s, line, sizeof(line));
	CHECK_STR(line, "pass 2: sent 1843 MiB, left 2253 MiB, 850.0 MiB/s, dirty 12.0 MiB/s, "
			"expected downtime 14 ms, throttle 20%");
	s.throttle_pct = 0;
	s.expected_downtime_ms = 0;
	s.pass = 1;
	cli_mig_pass_line(&s, line, sizeof(line));
	CHECK_STR(line, "pass 1: sent 1843 MiB, left 2253 MiB, 850.0 MiB/s, dirty 12.0 MiB/s");
	/* the first pass: left is what it has not reached yet */
	s.pass = 0;
	s.pages_data = (1024ULL << 20) / 4096;
	s.pages_zero = (1024ULL << 20) / 4096;
	cli_mig_pass_line(&s, line, sizeof(line));
	CHECK_STR(line, "pass 0: sent 1843 MiB, left 2048 MiB, 850.0 MiB/s, dirty 12.0 MiB/s");
	s.state = MIGS_SWITCHOVER;
	s.remaining_bytes = 3 << 20;
	cli_mig_pass_line(&s, line, sizeof(line));
	CHECK_STR(line, "switch-over (guest paused): sent 1843 MiB, left 3.0 MiB, 850.0 MiB/s, "
			"dirty 12.0 MiB/s");
	s.state = MIGS_POSTCOPY;
	cli_mig_pass_line(&s, line, sizeof(line));
	CHECK(!strncmp(line, "post-copy (destination runs): sent", 34));
	s.state = MIGS_SETUP;
	cli_mig_pass_line(&s, line, sizeof(line));
	CHECK(!strncmp(line, "setting up: sent", 16));
}

TEST(summaries)
{
	struct mig_status s = sample();
	char line[512];
	s.state = MIGS_COMPLETED;
	/* pass counts the passes made before the switch-over */
	s.pass = 4;
	s.bytes = 5000ULL << 20;
	s.elapsed_ms = 12345;
	s.downtime_ms = 17;
	cli_mig_summary("web", "tcp:10.0.0.2:4444", &s, false, line, sizeof(line));
	CHECK_STR(line, "migrated web to tcp:10.0.0.2:4444 in 12.3 s: 5000 MiB sent in 4 passes, "
			"downtime 17 ms");
	s.pass = 1;
	s.bytes = 512 << 10;
	s.elapsed_ms = 99;
	s.downtime_ms = 0;
	cli_mig_summary("web", "unix:/d", &s, false, line, sizeof(line));
	CHECK_STR(line, "migrated web to unix:/d in 0.0 s: 0.5 MiB sent in 1 pass, downtime 0 ms");
	/* local mode sends no pages */
	s.mode = MIGP_LOCAL;
	s.pass = 0;
	s.bytes = 70 << 10;
	s.elapsed_ms = 40;
	s.downtime_ms = 3;
	cli_mig_summary("web", "unix:/d", &s, false, line, sizeof(line));
	CHECK_STR(line, "migrated web to unix:/d in 0.0 s: guest memory handed over, 0.1 MiB sent, "
			"downtime 3 ms");
	s.mode = MIGP_AUTO;
	cli_mig_summary("web", "unix:/d", &s, true, line, sizeof(line));
	CHECK_STR(line, "migrated web to unix:/d: completed (the source exited before its final "
			"status was read)");
	s.state = MIGS_FAILED;
	s.elapsed_ms = 2500;
	snprintf(s.error, sizeof(s.error), "destination: connection refused");
	cli_mig_summary("web", "unix:/d", &s, false, line, sizeof(line));
	CHECK_STR(line, "migration of web to unix:/d failed after 2.5 s: destination: connection refused");
	s.state = MIGS_CANCELLED;
	s.error[0] = 0;
	cli_mig_summary("web", "unix:/d", &s, false, line, sizeof(line));
	CHECK_STR(line, "migration of web to unix:/d was cancelled after 2.5 s");
	s.state = MIGS_NONE;
	cli_mig_summary("web", "unix:/d", &s, false, line, sizeof(line));
	CHECK_STR(line, "migration of web to unix:/d failed: the VM reports no migration");
}

TEST(poll_decisions)
{
	CHECK_EQ(cli_mig_next(MIGS_SETUP), CLI_MIG_WAIT);
	CHECK_EQ(cli_mig_next(MIGS_ACTIVE), CLI_MIG_WAIT);
	CHECK_EQ(cli_mig_next(MIGS_SWITCHOVER), CLI_MIG_WAIT);
	CHECK_EQ(cli_mig_next(MIGS_POSTCOPY), CLI_MIG_WAIT);
	CHECK_EQ(cli_mig_next(MIGS_COMPLETED), CLI_MIG_DONE);
	CHECK_EQ(cli_mig_next(MIGS_FAILED), CLI_MIG_FAILED);
	CHECK_EQ(cli_mig_next(MIGS_CANCELLED), CLI_MIG_FAILED);
	CHECK_EQ(cli_mig_next(MIGS_NONE), CLI_MIG_FAILED);
	/* the source exits 0 only once it handed the VM over */
	CHECK_EQ(cli_mig_after_gone(MIGS_SWITCHOVER), CLI_MIG_DONE);
	CHECK_EQ(cli_mig_after_gone(MIGS_COMPLETED), CLI_MIG_DONE);
	CHECK_EQ(cli_mig_after_gone(MIGS_SETUP), CLI_MIG_FAILED);
	CHECK_EQ(cli_mig_after_gone(MIGS_ACTIVE), CLI_MIG_FAILED);
	CHECK_EQ(cli_mig_after_gone(MIGS_POSTCOPY), CLI_MIG_FAILED);
	CHECK_EQ(cli_mig_after_gone(MIGS_NONE), CLI_MIG_FAILED);
}

TEST_MAIN()
