/* SPDX-License-Identifier: MIT */
/* Firecracker's metrics: JSON lines (parsed back with json-c), counters as
 * changes since the last line written, gauges as they are, the "logger"
 * group, and a destination that never makes a flush wait. */
#include "../../src/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/event/loop.h"
#include "../../src/util/log.h"
#include "test.h"

/* A flush that would block (the bug looked for) is killed by SIGALRM
 * instead of hanging the run. */
#define WATCHDOG_S 30

static char tmpdir[64];

static const char *tmp_path(const char *name)
{
	static char bufs[8][128];
	static unsigned next;
	char *p = bufs[next++ % 8];
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/visor-test-metrics-XXXXXX");
		if (!mkdtemp(tmpdir))
			abort();
	}
	snprintf(p, sizeof(bufs[0]), "%s/%s", tmpdir, name);
	return p;
}

static char *read_all(int fd, size_t *len_out)
{
	size_t cap = 4096, len = 0;
	char *b = malloc(cap);
	for (;;) {
		if (len + 1 >= cap)
			b = realloc(b, cap *= 2);
		ssize_t n = read(fd, b + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	b[len] = 0;
	if (len_out)
		*len_out = len;
	return b;
}

static char *slurp(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	char *s = read_all(fd, NULL);
	close(fd);
	return s;
}

/* Line @i (0-based) of @s, without its '\n', strictly parsed: the whole
 * line must be one JSON object.  NULL if there is no such line or it does
 * not parse. */
static struct json_object *parse_line(const char *s, int i)
{
	for (; i > 0 && s; i--) {
		s = strchr(s, '\n');
		if (s)
			s++;
	}
	if (!s || !*s)
		return NULL;
	const char *end = strchr(s, '\n');
	if (!end)
		return NULL;
	struct json_tokener *tok = json_tokener_new();
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	int len = (int)(end - s);
	struct json_object *o = json_tokener_parse_ex(tok, s, len);
	bool ok = o && json_tokener_get_error(tok) == json_tokener_success &&
		  json_tokener_get_parse_end(tok) == (size_t)len &&
		  json_object_is_type(o, json_type_object);
	json_tokener_free(tok);
	if (!ok) {
		printf("  not a JSON object: %.*s\n", len, s);
		json_object_put(o);
		return NULL;
	}
	return o;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

/* The value at "a.b.c" in @o, or -1 when absent or not a number. */
static int64_t get(struct json_object *o, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	char *save = NULL;
	for (char *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
		struct json_object *v;
		if (!o || !json_object_object_get_ex(o, k, &v))
			return -1;
		o = v;
	}
	if (!o || !json_object_is_type(o, json_type_int))
		return -1;
	return json_object_get_int64(o);
}

static const char *get_str(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static uint64_t fake_clock(void *ctx)
{
	return *(uint64_t *)ctx;
}

/* What a device would have: monotonic totals and a current value. */
struct fake_dev {
	uint64_t reads, writes, size;
	uint64_t net_rx;
	int extra_depth;   /* >0: nest this many groups (too deep fails the line) */
	int wide;          /* add this many gauges (a long line) */
};

static void collect(struct metrics_line *l, void *ctx)
{
	struct fake_dev *d = ctx;
	metrics_group_begin(l, "block_drive0");
	metrics_add_counter(l, "read_count", d->reads);
	metrics_add_counter(l, "write_count", d->writes);
	metrics_add_gauge(l, "size_bytes", d->size);
	metrics_group_end(l);
	metrics_group_begin(l, "net_eth0");
	/* same key as in block_drive0: its own previous total */
	metrics_add_counter(l, "read_count", d->net_rx);
	metrics_group_begin(l, "rx_agg");
	metrics_add_gauge(l, "max_us", 17);
	metrics_group_end(l);
	metrics_group_end(l);
	for (int i = 0; i < d->extra_depth; i++)
		metrics_group_begin(l, "deep");
	if (d->wide) {
		metrics_group_begin(l, "wide");
		for (int i = 0; i < d->wide; i++) {
			char k[32];
			snprintf(k, sizeof(k), "gauge_%05d", i);
			metrics_add_gauge(l, k, (uint64_t)i);
		}
		metrics_group_end(l);
	}
	/* groups left open are closed by metrics_flush */
}

static int init(struct metrics *m, const char *path, struct fake_dev *d, uint64_t *clock)
{
	struct metrics_options o = {.path = path,
				    .collect = collect,
				    .ctx = d,
				    .clock = fake_clock,
				    .clock_ctx = clock};
	char err[256] = "";
	int r = metrics_init(m, &o, err, sizeof(err));
	if (r)
		printf("  metrics_init(%s): %d %s\n", path, r, err);
	return r;
}

TEST(line_is_valid_json_with_groups)
{
	const char *path = tmp_path("basic.json");
	unlink(path);
	struct fake_dev d = {.reads = 5, .writes = 2, .size = 1 << 20, .net_rx = 9};
	uint64_t clock = 1714566896123ULL;
	struct metrics m;
	CHECK_EQ(init(&m, path, &d, &clock), 0);
	CHECK_EQ(metrics_flush(&m), 0);
	metrics_destroy(&m);

	char *s = slurp(path);
	CHECK_EQ(count_lines(s), 1);
	struct json_object *o = parse_line(s, 0);
	CHECK(o != NULL);
	CHECK_EQ(get(o, "utc_timestamp_ms"), 1714566896123LL);
	CHECK_EQ(get(o, "block_drive0.read_count"), 5);
	CHECK_EQ(get(o, "block_drive0.write_count"), 2);
	CHECK_EQ(get(o, "block_drive0.size_bytes"), 1 << 20);
	CHECK_EQ(get(o, "net_eth0.read_count"), 9);
	CHECK_EQ(get(o, "net_eth0.rx_agg.max_us"), 17);
	CHECK_EQ(get(o, "logger.missed_metrics_count"), 0);
	CHECK_EQ(get(o, "logger.metrics_fails"), 0);
	CHECK(get(o, "logger.missed_log_count") >= 0);
	CHECK(get(o, "logger.log_fails") >= 0);
	CHECK(!json_object_object_get_ex(o, "id", NULL));
	CHECK(!json_object_object_get_ex(o, "properties", NULL));
	/* the first field, as Firecracker writes it; no spaces */
	CHECK(!strncmp(s, "{\"utc_timestamp_ms\":1714566896123,", 34));
	CHECK(strchr(s, ' ') == NULL);
	json_object_put(o);
	free(s);
}

TEST(counters_are_deltas_gauges_are_values)
{
	const char *path = tmp_path("deltas.json");
	unlink(path);
	struct fake_dev d = {.reads = 5, .writes = 0, .size = 100, .net_rx = 1};
	uint64_t clock = 1000;
	struct metrics m;
	CHECK_EQ(init(&m, path, &d, &clock), 0);
	CHECK_EQ(metrics_flush(&m), 0);
	d.reads = 12;
	d.writes = 3;
	d.size = 50;
	d.net_rx = 1;
	clock = 61000;
	CHECK_EQ(metrics_flush(&m), 0);
	clock = 121000;
	CHECK_EQ(metrics_flush(&m), 0);
	d.reads = 4; /* the counter restarted (device re-created) */
	CHECK_EQ(metrics_flush(&m), 0);
	metrics_destroy(&m);

	char *s = slurp(path);
	CHECK_EQ(count_lines(s), 4);
	struct json_object *l0 = parse_line(s, 0), *l1 = parse_line(s, 1), *l2 = parse_line(s, 2),
			   *l3 = parse_line(s, 3);
	CHECK(l0 && l1 && l2 && l3);
	CHECK_EQ(get(l0, "block_drive0.read_count"), 5);
	CHECK_EQ(get(l1, "block_drive0.read_count"), 7);
	CHECK_EQ(get(l2, "block_drive0.read_count"), 0);
	CHECK_EQ(get(l3, "block_drive0.read_count"), 4);
	CHECK_EQ(get(l0, "block_drive0.write_count"), 0);
	CHECK_EQ(get(l1, "block_drive0.write_count"), 3);
	CHECK_EQ(get(l2, "block_drive0.write_count"), 0);
	CHECK_EQ(get(l0, "net_eth0.read_count"), 1);
	CHECK_EQ(get(l1, "net_eth0.read_count"), 0);
	CHECK_EQ(get(l0, "block_drive0.size_bytes"), 100);
	CHECK_EQ(get(l1, "block_drive0.size_bytes"), 50);
	CHECK_EQ(get(l2, "block_drive0.size_bytes"), 50);
	CHECK_EQ(get(l1, "utc_timestamp_ms"), 61000);
	CHECK_EQ(get(l2, "utc_timestamp_ms"), 121000);
	json_object_put(l0);
	json_object_put(l1);
	json_object_put(l2);
	json_object_put(l3);
	free(s);
}

TEST(file_gets_appended_lines)
{
	const char *path = tmp_path("append.json");
	unlink(path);
	struct fake_dev d = {.reads = 1};
	uint64_t clock = 1;
	struct metrics m;
	CHECK_EQ(init(&m, path, &d, &clock), 0);
	CHECK_EQ(metrics_flush(&m), 0);
	metrics_destroy(&m);
	/* a second instance on the same file appends */
	clock = 2;
	CHECK_EQ(init(&m, path, &d, &clock), 0);
	CHECK_EQ(metrics_flush(&m), 0);
	CHECK_EQ(metrics_flush(&m), 0);
	metrics_destroy(&m);
	char *s = slurp(path);
	CHECK_EQ(count_lines(s), 3);
	for (int i = 0; i < 3; i++) {
		struct json_object *o = parse_line(s, i);
		CHECK(o != NULL);
		CHECK_EQ(get(o, "utc_timestamp_ms"), i == 0 ? 1 : 2);
		json_object_put(o);
	}
	free(s);
	struct stat st;
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_mode & 0077, 0); /* created 0600 (less with a umask) */
}

TEST(id_properties_and_escaping)
{
	const char *path = tmp_path("props.json");
	unlink(path);
	struct metrics_property props[] = {
		{"team", "vm \"blue\""},
		{"path\\key", "line\nbreak\ttab\x01"},
		{"utf8", "caf\xc3\xa9"},
	};
	uint64_t clock = 5;
	struct metrics_options o = {.path = path,
				    .emit_id = true,
				    .instance_id = "vm-42",
				    .properties = props,
				    .nproperties = 3,
				    .clock = fake_clock,
				    .clock_ctx = &clock};
	struct metrics m;
	CHECK_EQ(metrics_init(&m, &o, NULL, 0), 0);
	CHECK_EQ(metrics_flush(&m), 0);
	metrics_destroy(&m);
	char *s = slurp(path);
	struct json_object *j = parse_line(s, 0);
	CHECK(j != NULL);
	CHECK_STR(get_str(j, "id"), "vm-42");
	struct json_object *p = NULL;
	CHECK(json_object_object_get_ex(j, "properties", &p));
	CHECK_STR(get_str(p, "team"), "vm \"blue\"");
	CHECK_STR(get_str(p, "path\\key"), "line\nbreak\ttab\x01");
	CHECK_STR(get_str(p, "utf8"), "caf\xc3\xa9");
	CHECK(!strncmp(s, "{\"utc_timestamp_ms\":5,\"id\":\"vm-42\",\"properties\":{", 48));
	json_object_put(j);
	free(s);
}

TEST(fifo_without_reader_drops_and_counts)
{
	const char *path = tmp_path("noreader.fifo");
	unlink(path);
	CHECK_EQ(mkfifo(path, 0600), 0);
	alarm(WATCHDOG_S);
	struct fake_dev d = {0};
	uint64_t clock = 0;
	struct metrics m;
	/* no reader: opening neither waits nor fails */
	CHECK_EQ(init(&m, path, &d, &clock), 0);
	/* flush (one read more each time) until the pipe is full */
	int r = 0, written = 0;
	for (int i = 0; i < 100000 && r == 0; i++) {
		d.reads++;
		clock++;
		r = metrics_flush(&m);
		written += r == 0;
	}
	CHECK_EQ(r, -EAGAIN);
	CHECK(written > 0);
	CHECK_EQ(metrics_dropped_lines(&m), 1);
	CHECK_EQ(metrics_failures(&m), 0); /* "would block" is not a failure */

	/* a reader comes: it finds the whole lines that fit */
	int rd = open(path, O_RDONLY | O_NONBLOCK);
	CHECK(rd >= 0);
	char *s = read_all(rd, NULL);
	CHECK_EQ(count_lines(s), (size_t)written);
	bool all_ok = true;
	for (int i = 0; i < written && all_ok; i++) {
		struct json_object *o = parse_line(s, i);
		all_ok = o && get(o, "block_drive0.read_count") == 1;
		json_object_put(o);
	}
	CHECK(all_ok);
	free(s);

	/* the next line covers the dropped one: 2 reads, 1 missed line */
	d.reads++;
	CHECK_EQ(metrics_flush(&m), 0);
	s = read_all(rd, NULL);
	struct json_object *o = parse_line(s, 0);
	CHECK(o != NULL);
	CHECK_EQ(get(o, "block_drive0.read_count"), 2);
	CHECK_EQ(get(o, "logger.missed_metrics_count"), 1);
	CHECK_EQ(get(o, "logger.metrics_fails"), 0);
	json_object_put(o);
	free(s);
	/* and the one after that starts from there */
	CHECK_EQ(metrics_flush(&m), 0);
	s = read_all(rd, NULL);
	o = parse_line(s, 0);
	CHECK_EQ(get(o, "block_drive0.read_count"), 0);
	CHECK_EQ(get(o, "logger.missed_metrics_count"), 0);
	json_object_put(o);
	free(s);
	alarm(0);
	metrics_destroy(&m);
	close(rd);
	unlink(path);
}

TEST(fifo_long_line_only_into_empty_pipe)
{
	const char *path = tmp_path("long.fifo");
	unlink(path);
	CHECK_EQ(mkfifo(path, 0600), 0);
	alarm(WATCHDOG_S);
	int rd = open(path, O_RDONLY | O_NONBLOCK);
	CHECK(rd >= 0);
	struct fake_dev d = {.wide = 1000}; /* ~20 KB: more than PIPE_BUF */
	uint64_t clock = 7;
	struct metrics m;
	CHECK_EQ(init(&m, path, &d, &clock), 0);
	CHECK_EQ(metrics_flush(&m), 0);
	/* the reader has not taken it yet: the next long line waits for
	 * nothing, it is dropped */
	CHECK_EQ(metrics_flush(&m), -EAGAIN);
	size_t len;
	char *s = read_all(rd, &len);
	CHECK(len > 4096);
	CHECK_EQ(count_lines(s), 1);
	struct json_object *o = parse_line(s, 0);
	CHECK(o != NULL);
	CHECK_EQ(get(o, "wide.gauge_00999"), 999);
	json_object_put(o);
	free(s);
	/* taken: the next goes in, whole */
	CHECK_EQ(metrics_flush(&m), 0);
	s = read_all(rd, NULL);
	o = parse_line(s, 0);
	CHECK(o != NULL);
	CHECK_EQ(get(o, "logger.missed_metrics_count"), 1);
	json_object_put(o);
	free(s);
	alarm(0);
	metrics_destroy(&m);
	close(rd);
	unlink(path);
}

TEST(fifo_reader_gone_is_a_failure)
{
	signal(SIGPIPE, SIG_IGN); /* as main.c does */
	const char *path = tmp_path("gone.fifo");
	unlink(path);
	CHECK_EQ(mkfifo(path, 0600), 0);
	int rd = open(path, O_RDONLY | O_NONBLOCK);
	struct fake_dev d = {0};
	uint64_t clock = 0;
	struct metrics m;
	CHECK_EQ(init(&m, path, &d, &clock), 0);
	close(rd);
	CHECK_EQ(metrics_flush(&m), -EPIPE);
	CHECK_EQ(metrics_dropped_lines(&m), 1);
	CHECK_EQ(metrics_failures(&m), 1);
	metrics_destroy(&m);
	unlink(path);
}

TEST(line_that_cannot_be_built_is_counted_and_keeps_deltas)
{
	const char *path = tmp_path("deep.json");
	unlink(path);
	struct fake_dev d = {.reads = 3};
	uint64_t clock = 0;
	struct metrics m;
	CHECK_EQ(init(&m, path, &d, &clock), 0);
	CHECK_EQ(metrics_flush(&m), 0);
	d.reads = 10;
	d.extra_depth = METRICS_DEPTH_MAX + 1; /* one level too deep */
	CHECK_EQ(metrics_flush(&m), -EMSGSIZE);
	d.extra_depth = METRICS_DEPTH_MAX; /* deepest allowed */
	CHECK_EQ(metrics_flush(&m), 0);
	metrics_destroy(&m);
	char *s = slurp(path);
	CHECK_EQ(count_lines(s), 2);
	struct json_object *o = parse_line(s, 1);
	CHECK(o != NULL);
	CHECK_EQ(get(o, "block_drive0.read_count"), 7);
	CHECK_EQ(get(o, "logger.missed_metrics_count"), 1);
	CHECK_EQ(get(o, "logger.metrics_fails"), 1);
	CHECK(json_object_object_get_ex(o, "deep", NULL));
	json_object_put(o);
	free(s);
}

TEST(logger_group_counts_dropped_log_lines)
{
	/* the logger writes to a FIFO nobody reads, until it drops lines */
	const char *lpath = tmp_path("log.fifo");
	unlink(lpath);
	CHECK_EQ(mkfifo(lpath, 0600), 0);
	alarm(WATCHDOG_S);
	struct log_options lo = {.path = lpath, .level = LOG_INFO};
	CHECK_EQ(log_configure(&lo, NULL, 0), 0);

	const char *path = tmp_path("logger.json");
	unlink(path);
	uint64_t clock = 0;
	struct metrics m;
	struct metrics_options o = {.path = path, .clock = fake_clock, .clock_ctx = &clock};
	CHECK_EQ(metrics_init(&m, &o, NULL, 0), 0);
	CHECK_EQ(metrics_flush(&m), 0);
	uint64_t before = log_dropped_lines();
	for (int i = 0; i < 2000; i++)
		log_info("filler line %d %s", i, "........................................");
	uint64_t dropped = log_dropped_lines() - before;
	CHECK(dropped > 0);
	CHECK_EQ(metrics_flush(&m), 0);
	CHECK_EQ(metrics_flush(&m), 0);
	metrics_destroy(&m);
	log_reset();
	alarm(0);
	unlink(lpath);

	char *s = slurp(path);
	struct json_object *l1 = parse_line(s, 1), *l2 = parse_line(s, 2);
	CHECK_EQ(get(l1, "logger.missed_log_count"), (int64_t)dropped);
	CHECK_EQ(get(l1, "logger.log_fails"), 0);
	CHECK_EQ(get(l2, "logger.missed_log_count"), 0);
	json_object_put(l1);
	json_object_put(l2);
	free(s);
}

TEST(timer_on_the_loop_flushes)
{
	struct loop lp;
	CHECK_EQ(loop_init(&lp), 0);
	const char *path = tmp_path("timer.json");
	unlink(path);
	struct fake_dev d = {.reads = 1};
	uint64_t clock = 99;
	struct metrics_options o = {.path = path,
				    .loop = &lp,
				    .interval_ms = 10,
				    .collect = collect,
				    .ctx = &d,
				    .clock = fake_clock,
				    .clock_ctx = &clock};
	struct metrics m;
	CHECK_EQ(metrics_init(&m, &o, NULL, 0), 0);
	/* the timer fires (no bound on when, only that it does) */
	int n = 0;
	for (int i = 0; i < 100 && n == 0; i++)
		n = loop_run_once(&lp, 1000);
	CHECK_EQ(n, 1);
	char *s = slurp(path);
	CHECK(count_lines(s) >= 1);
	struct json_object *j = parse_line(s, 0);
	CHECK_EQ(get(j, "utc_timestamp_ms"), 99);
	CHECK_EQ(get(j, "block_drive0.read_count"), 1);
	json_object_put(j);
	free(s);
	int tfd = m.timer_fd;
	CHECK(tfd >= 0);
	metrics_destroy(&m);
	/* the timer is gone from the loop */
	CHECK_EQ(loop_del(&lp, tfd), -ENOENT);
	loop_destroy(&lp);
}

TEST(init_errors)
{
	struct metrics m;
	char err[256];
	struct metrics_options o = {0};
	CHECK_EQ(metrics_init(&m, &o, err, sizeof(err)), -EINVAL);
	CHECK_EQ(metrics_flush(&m), -ENODEV);
	metrics_destroy(&m); /* harmless */
	o.path = tmpdir;
	CHECK_EQ(metrics_init(&m, &o, err, sizeof(err)), -EISDIR);
	CHECK(strstr(err, tmpdir) != NULL);
	o.path = tmp_path("no/such/dir.json");
	CHECK_EQ(metrics_init(&m, &o, err, sizeof(err)), -ENOENT);
	o.path = tmp_path("ok.json");
	o.emit_id = true;
	CHECK_EQ(metrics_init(&m, &o, err, sizeof(err)), -EINVAL);
	o.emit_id = false;
	struct metrics_property bad = {"k", NULL};
	o.properties = &bad;
	o.nproperties = 1;
	CHECK_EQ(metrics_init(&m, &o, err, sizeof(err)), -EINVAL);
	CHECK_EQ(metrics_flush(&m), -ENODEV);

	struct metrics zero = {0};
	CHECK_EQ(metrics_flush(&zero), -ENODEV);
	metrics_destroy(&zero);
}

TEST(cleanup)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (tmpdir[0])
		CHECK_EQ(system(cmd), 0);
}

TEST_MAIN()
