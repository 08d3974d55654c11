/* SPDX-License-Identifier: MIT */
/* Firecracker API / config-file JSON: routing, decoding, replies. */
#include "../../src/api/fc_json.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdlib.h>

#include "../../src/config.h"
#include "test.h"

static struct vm_action A;
static char F[512];
static int ST;
/* the config-file side (below) */
static char E[512];
static int cfile(const char *json);

static int parse(const char *m, const char *p, const char *body)
{
	return fc_parse_request(m, p, body, body ? strlen(body) : 0, &A, &ST, F, sizeof(F));
}

/* refused with status 400, nothing decoded, and a fault containing @want */
#define REFUSED(m, p, body, want)                                                                  \
	do {                                                                                       \
		int r_ = parse(m, p, body);                                                        \
		CHECK_EQ(r_, -EINVAL);                                                             \
		CHECK_EQ(ST, 400);                                                                 \
		CHECK_EQ(A.kind, ACT_NONE);                                                        \
		if (!strstr(F, (want))) {                                                          \
			printf("  %s:%d: fault \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, F, (want)); \
			test_failed_now_ = 1;                                                      \
		}                                                                                  \
	} while (0)

#define ACCEPTED(m, p, body, k)                                                          \
	do {                                                                             \
		int r_ = parse(m, p, body);                                              \
		if (r_)                                                                  \
			printf("  %s:%d: refused: %s\n", __FILE__, __LINE__, F);         \
		CHECK_EQ(r_, 0);                                                         \
		CHECK_EQ(ST, 0);                                                         \
		CHECK_EQ(A.kind, (k));                                                   \
	} while (0)

/* a string of @n copies of @c (static buffer, one at a time) */
static const char *rep(char c, size_t n)
{
	static char buf[8192];
	memset(buf, c, n);
	buf[n] = 0;
	return buf;
}

/* printf into a static buffer */
__attribute__((format(printf, 1, 2))) static const char *fmt(const char *f, ...)
{
	static char buf[16384];
	va_list ap;
	va_start(ap, f);
	vsnprintf(buf, sizeof(buf), f, ap);
	va_end(ap);
	return buf;
}

/* ---- routing ---------------------------------------------------------------- */

TEST(routes_get)
{
	ACCEPTED("GET", "/", NULL, ACT_GET_INFO);
	ACCEPTED("GET", "/version", NULL, ACT_GET_VERSION);
	ACCEPTED("GET", "/vm/config", NULL, ACT_GET_VM_CONFIG);
	ACCEPTED("GET", "/machine-config", NULL, ACT_GET_MACHINE_CONFIG);
	ACCEPTED("GET", "/machine-config/", NULL, ACT_GET_MACHINE_CONFIG);
	ACCEPTED("GET", "/balloon", NULL, ACT_GET_BALLOON);
	ACCEPTED("GET", "/balloon/statistics", NULL, ACT_GET_BALLOON_STATS);
}

TEST(routes_unknown_path_or_method)
{
	REFUSED("GET", "/foo", NULL, "Invalid request method and/or path: GET /foo.");
	CHECK_STR(F, "Invalid request method and/or path: GET /foo.");
	REFUSED("DELETE", "/", NULL, "Invalid request method and/or path: DELETE /.");
	REFUSED("POST", "/actions", "{}", "Invalid request method and/or path: POST /actions.");
	REFUSED("GET", "/actions", NULL, "Invalid request method and/or path: GET /actions.");
	REFUSED("PUT", "/vm/config", "{}", "Invalid request method and/or path");
	REFUSED("GET", "/vm", NULL, "Invalid request method and/or path");
	REFUSED("put", "/vsock", "{}", "Invalid request method and/or path: put /vsock.");
	REFUSED("PUT", "/drives/a/b", "{}", "Invalid request method and/or path");
	REFUSED("PUT", "/a/b/c/d/e", "{}", "Invalid request method and/or path");
	REFUSED("GET", "machine-config", NULL, "Invalid request method and/or path");
	REFUSED("GET", "", NULL, "Invalid request method and/or path");
	REFUSED("GET", "/machine-config?x=1", NULL, "Invalid request method and/or path");
	REFUSED("PATCH", "/boot-source", "{}", "Invalid request method and/or path");
	REFUSED("GET", "/drives/a", NULL, "Invalid request method and/or path");
	/* a long path is cut in the message, and the buffer never overflows */
	REFUSED("GET", fmt("/%s", rep('x', 5000)), NULL, "...");
	CHECK(strlen(F) < sizeof(F));
}

TEST(routes_bodies)
{
	REFUSED("GET", "/", "{}", "GET request cannot have a body.");
	CHECK_STR(F, "GET request cannot have a body.");
	REFUSED("PUT", "/machine-config", NULL, "Empty PUT request.");
	REFUSED("PATCH", "/machine-config", NULL, "Empty PATCH request.");
	REFUSED("PUT", "/machine-config", "", "Empty PUT request.");
	REFUSED("PUT", "/machine-config", "   ", "invalid JSON");
}

TEST(routes_unsupported_features)
{
	REFUSED("PUT", "/mmds", "{}", "visor does not support MMDS yet");
	REFUSED("GET", "/mmds", NULL, "visor does not support MMDS yet");
	REFUSED("PATCH", "/mmds", "{}", "visor does not support MMDS yet");
	REFUSED("PUT", "/mmds/config", "{}", "visor does not support MMDS yet");
	REFUSED("PUT", "/pmem/p0", "{}", "pmem");
	REFUSED("PATCH", "/pmem/p0", "{}", "pmem");
	REFUSED("PUT", "/hotplug/memory", "{}", "memory hotplug");
	REFUSED("GET", "/hotplug/memory", NULL, "memory hotplug");
	REFUSED("PUT", "/cpu-config", "{}", "CPU templates");
	REFUSED("PATCH", "/balloon/hinting/start", "{}", "free page hinting");
	REFUSED("PATCH", "/balloon/hinting/start", NULL, "free page hinting");
	REFUSED("GET", "/balloon/hinting/status", NULL, "free page hinting");
	REFUSED("PATCH", "/balloon/hinting/stop", NULL, "free page hinting");
	/* a method the endpoint never had is still a bad method */
	REFUSED("GET", "/snapshot/create", NULL, "Invalid request method and/or path");
}

/* ---- JSON syntax -------------------------------------------------------------- */

TEST(json_syntax)
{
	REFUSED("PUT", "/vsock", "{", "invalid JSON");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": 3,}", "invalid JSON");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": 3} x", "invalid JSON");
	REFUSED("PUT", "/vsock", "{} {}", "invalid JSON");
	REFUSED("PUT", "/vsock", "/* c */ {}", "invalid JSON");
	REFUSED("PUT", "/vsock", "{'guest_cid': 3}", "invalid JSON");
	REFUSED("PUT", "/vsock", "{guest_cid: 3}", "invalid JSON");
	REFUSED("PUT", "/vsock", "{\"uds_path\": \"\xff\"}", "invalid JSON");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": TRUE}", "invalid JSON");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": 01}", "invalid JSON");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": +1}", "invalid JSON");
	/* json-c's strict mode lets these through; RFC 8259 does not */
	REFUSED("PUT", "/vsock", "{\"uds_path\": 'x'}", "invalid JSON");
	REFUSED("PUT", "/vsock", "{\"uds_path\": \"a\tb\"}", "invalid JSON at byte 15: control character in a string");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": Infinity}", "invalid JSON at byte 14: unexpected character");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": -Infinity}", "invalid number");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": NaN}", "invalid JSON");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": 1.}", "invalid number");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": .5}", "invalid JSON");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": 1e}", "invalid number");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": 0x10}", "invalid JSON");
	REFUSED("PUT", "/vsock", "{\"uds_path\": \"\\x\"}", "invalid escape");
	REFUSED("PUT", "/vsock", "{\"uds_path\": \"\\u12\"}", "invalid \\u escape");
	REFUSED("PUT", "/vsock", "{\"uds_path\": \"abc", "unterminated string");
	REFUSED("PUT", "/vsock", "{\"uds_path\" \"x\"}", "':' expected");
	REFUSED("PUT", "/vsock", "{\"uds_path\": \"x\" \"y\"}", "',' or '}' expected");
	REFUSED("PUT", "/vsock", "{\"a\": [1 2]}", "',' or ']' expected");
	REFUSED("PUT", "/vsock", "{\"a\": tru}", "unexpected character");
	REFUSED("PUT", "/vsock", "{\"a\": [}", "unexpected character");
	REFUSED("PUT", "/vsock", "{\"uds_path\": \"\xed\xa0\x80\"}", "invalid UTF-8"); /* a surrogate */
	REFUSED("PUT", "/vsock", "{\"uds_path\": \"\xc0\xaf\"}", "invalid UTF-8");    /* overlong */
	REFUSED("PUT", "/vsock", "\xef\xbb\xbf{}", "unexpected character");              /* BOM */
	ACCEPTED("PUT", "/vsock", "{\"guest_cid\": 3, \"uds_path\": \"\\/v\\u00e9\\ud83d\\ude00\\\"\\b\\f\\n\\r\\t\"}",
		 ACT_PUT_VSOCK);
	CHECK_STR(A.u.vsock.uds, "/v\xc3\xa9\xf0\x9f\x98\x80\"\b\f\n\r\t");
	/* a NUL byte inside the body */
	static const char nul[] = "{\"uds_path\": \"a\0b\"}";
	CHECK_EQ(fc_parse_request("PUT", "/vsock", nul, sizeof(nul) - 1, &A, &ST, F, sizeof(F)), -EINVAL);
	CHECK(strstr(F, "NUL") != NULL);
	/* trailing whitespace is fine */
	ACCEPTED("PUT", "/vsock", "{\"guest_cid\": 3, \"uds_path\": \"/v\"} \r\n\t", ACT_PUT_VSOCK);
	/* a body that is not NUL-terminated: only body_len bytes are read */
	static const char cut[] = "{\"guest_cid\": 3, \"uds_path\": \"/v\"}GARBAGE";
	CHECK_EQ(fc_parse_request("PUT", "/vsock", cut, sizeof(cut) - 1 - 7, &A, &ST, F, sizeof(F)), 0);
}

TEST(json_not_an_object)
{
	REFUSED("PUT", "/vsock", "[]", "expected an object, found an array");
	REFUSED("PUT", "/vsock", "3", "expected an object, found an integer");
	REFUSED("PUT", "/vsock", "null", "expected an object, found null");
	REFUSED("PUT", "/vsock", "\"x\"", "expected an object, found a string");
	REFUSED("PUT", "/vsock", "true", "expected an object, found a boolean");
}

TEST(json_depth)
{
	/* 10^5 levels: refused by the tokenizer's depth limit, not the stack */
	static char deep[200002];
	memset(deep, '[', 100000);
	memset(deep + 100000, ']', 100000);
	deep[200000] = 0;
	REFUSED("PUT", "/vsock", deep, "invalid JSON");
	CHECK(strstr(F, "nesting too deep") != NULL);
	/* 10^5 nested objects */
	static char deep2[600002];
	for (int i = 0; i < 100000; i++)
		memcpy(deep2 + 5 * i, "{\"a\":", 5);
	memset(deep2 + 500000, '}', 100000);
	deep2[600000] = 0;
	deep2[499999] = '1'; /* "...{"a":1}}}" */
	REFUSED("PUT", "/vsock", deep2, "invalid JSON");
	/* FC_JSON_MAX_DEPTH levels parse (and json-c agrees), one more does not */
	char edge[2 * FC_JSON_MAX_DEPTH + 16];
	for (int levels = FC_JSON_MAX_DEPTH - 1; levels <= FC_JSON_MAX_DEPTH; levels++) {
		/* the object is the first level */
		strcpy(edge, "{\"a\":");
		memset(edge + 5, '[', (size_t)levels);
		memset(edge + 5 + levels, ']', (size_t)levels);
		strcpy(edge + 5 + 2 * levels, "}");
		if (levels < FC_JSON_MAX_DEPTH)
			REFUSED("PUT", "/vsock", edge, "unknown field `a`");
		else
			REFUSED("PUT", "/vsock", edge, "nesting too deep");
	}
	/* a modest nesting inside a known field is a type error, not a crash */
	REFUSED("PUT", "/vsock", "{\"guest_cid\": [[[[[[[[1]]]]]]]], \"uds_path\": \"/v\"}",
		"invalid type for `guest_cid`");
}

TEST(json_duplicate_fields)
{
	REFUSED("PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"vcpu_count\": 2}",
		"duplicate field `vcpu_count`");
	REFUSED("PUT", "/machine-config", "{\"vcpu_count\": 1, \"vcpu_count\": 2, \"mem_size_mib\": 128}",
		"duplicate field `vcpu_count`");
	/* the same name spelt with an escape */
	REFUSED("PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"vcpu_\\u0063ount\": 2}",
		"duplicate field `vcpu_count`");
	/* nested */
	REFUSED("PUT", "/entropy",
		"{\"rate_limiter\": {\"ops\": {\"size\": 1, \"refill_time\": 1, \"size\": 2}}}",
		"duplicate field `size`");
	/* a discarded duplicate that was itself an object */
	REFUSED("PUT", "/entropy",
		"{\"rate_limiter\": {\"ops\": {\"size\": 1, \"refill_time\": 1}}, \"rate_limiter\": {}}",
		"duplicate field `rate_limiter`");
	/* same names in different objects are fine */
	ACCEPTED("PUT", "/entropy",
		 "{\"rate_limiter\": {\"ops\": {\"size\": 1, \"refill_time\": 1}, "
		 "\"bandwidth\": {\"size\": 2, \"refill_time\": 3}}}",
		 ACT_PUT_ENTROPY);
	CHECK_EQ(A.u.rng.rl.ops.size, 1);
	CHECK_EQ(A.u.rng.rl.bandwidth.refill_time_ms, 3);
	/* names with NUL characters */
	REFUSED("PUT", "/machine-config", "{\"vcpu_count\\u0000x\": 1, \"mem_size_mib\": 128}",
		"contains a NUL character");
	/* "\\u0000" is a backslash and "u0000", not a NUL */
	REFUSED("PUT", "/machine-config", "{\"a\\\\u0000\": 1}", "unknown field `a\\u0000`");
}

/* ---- integers ------------------------------------------------------------------ */

TEST(integers)
{
	const char *put = "/machine-config";
	REFUSED("PUT", put, "{\"vcpu_count\": -1, \"mem_size_mib\": 128}",
		"invalid value for `vcpu_count`: expected an unsigned integer, found -1");
	REFUSED("PUT", put, "{\"vcpu_count\": 1.0, \"mem_size_mib\": 128}",
		"invalid value for `vcpu_count`: expected an unsigned integer, found 1.0");
	REFUSED("PUT", put, "{\"vcpu_count\": 1e3, \"mem_size_mib\": 128}", "found 1e3");
	REFUSED("PUT", put, "{\"vcpu_count\": 2.5, \"mem_size_mib\": 128}", "found 2.5");
	REFUSED("PUT", put, "{\"vcpu_count\": \"2\", \"mem_size_mib\": 128}",
		"invalid type for `vcpu_count`: expected an unsigned integer, found a string");
	REFUSED("PUT", put, "{\"vcpu_count\": 18446744073709551616, \"mem_size_mib\": 128}",
		"invalid value for `vcpu_count`: 18446744073709551616 is out of range");
	REFUSED("PUT", put, "{\"vcpu_count\": 99999999999999999999999, \"mem_size_mib\": 128}",
		"is out of range");
	REFUSED("PUT", put, "{\"vcpu_count\": -9223372036854775809, \"mem_size_mib\": 128}",
		"is out of range");
	/* the largest u64 decodes; config_set_machine() judges it */
	ACCEPTED("PUT", put, "{\"vcpu_count\": 18446744073709551615, \"mem_size_mib\": 18446744073709551615}",
		 ACT_PUT_MACHINE_CONFIG);
	CHECK_EQ(A.u.machine.cpus, UINT64_MAX);
	CHECK_EQ(A.u.machine.mem_mib, UINT64_MAX);
	ACCEPTED("PUT", put, "{\"vcpu_count\": -0, \"mem_size_mib\": 0}", ACT_PUT_MACHINE_CONFIG);
	CHECK_EQ(A.u.machine.cpus, 0);
	/* a field of 32 bits */
	REFUSED("PUT", "/balloon", "{\"amount_mib\": 4294967296, \"deflate_on_oom\": false}",
		"invalid value for `amount_mib`: expected an integer from 0 to 4294967295, found 4294967296");
	ACCEPTED("PUT", "/balloon", "{\"amount_mib\": 4294967295, \"deflate_on_oom\": false}", ACT_PUT_BALLOON);
	CHECK_EQ(A.u.balloon.size, 4294967295ULL << 20);
}

/* ---- machine-config ------------------------------------------------------------ */

TEST(machine_config_put)
{
	const char *p = "/machine-config";
	ACCEPTED("PUT", p,
		 "{\"vcpu_count\": 2, \"mem_size_mib\": 1024, \"smt\": true, \"track_dirty_pages\": true, "
		 "\"cpu_template\": \"None\", \"huge_pages\": \"None\"}",
		 ACT_PUT_MACHINE_CONFIG);
	CHECK_EQ(A.u.machine.cpus, 2);
	CHECK_EQ(A.u.machine.mem_mib, 1024);
	CHECK(A.u.machine.smt && A.u.machine.track_dirty_pages);
	CHECK(A.has_cpus && A.has_mem && A.has_smt && A.has_track_dirty);
	ACCEPTED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128}", ACT_PUT_MACHINE_CONFIG);
	CHECK(!A.u.machine.smt && !A.u.machine.track_dirty_pages && !A.has_smt);
	CHECK(!A.has_dirty_ring);
	/* visor's own dirty_ring_entries: decoded as given, checked by
	 * config_set_dirty_ring when applied */
	ACCEPTED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"dirty_ring_entries\": 0}",
		 ACT_PUT_MACHINE_CONFIG);
	CHECK(A.has_dirty_ring);
	CHECK_EQ(A.u.machine.dirty_ring, 0);
	ACCEPTED("PATCH", p, "{\"dirty_ring_entries\": 1000}", ACT_PATCH_MACHINE_CONFIG);
	CHECK(A.has_dirty_ring && !A.has_cpus);
	CHECK_EQ(A.u.machine.dirty_ring, 1000);
	REFUSED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"dirty_ring_entries\": -1}",
		"invalid value for `dirty_ring_entries`");
	REFUSED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"dirty_ring_entries\": \"4096\"}",
		"invalid type for `dirty_ring_entries`");
	REFUSED("PUT", p, "{\"mem_size_mib\": 128}", "missing field `vcpu_count`");
	CHECK_STR(F, "missing field `vcpu_count`");
	REFUSED("PUT", p, "{\"vcpu_count\": 1}", "missing field `mem_size_mib`");
	REFUSED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"smt\": 1}",
		"invalid type for `smt`: expected a boolean, found an integer");
	REFUSED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"track_dirty_pages\": \"yes\"}",
		"invalid type for `track_dirty_pages`");
	REFUSED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"ht_enabled\": true}",
		"unknown field `ht_enabled`, expected one of `vcpu_count`, `mem_size_mib`");
	REFUSED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"cpu_template\": \"T2\"}",
		"visor does not support CPU templates yet (cpu_template `T2`)");
	REFUSED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"cpu_template\": \"T9\"}",
		"invalid value for `cpu_template`: expected one of `None`, `C3`");
	REFUSED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"cpu_template\": 0}",
		"invalid type for `cpu_template`: expected a string");
	REFUSED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"huge_pages\": \"2M\"}",
		"visor does not support huge pages yet (huge_pages `2M`)");
	REFUSED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"huge_pages\": \"Transparent\"}",
		"huge pages");
	REFUSED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"huge_pages\": \"1G\"}",
		"invalid value for `huge_pages`");
	/* null is "absent" for optional fields, a type error for required ones */
	ACCEPTED("PUT", p, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"smt\": null, \"cpu_template\": null}",
		 ACT_PUT_MACHINE_CONFIG);
	REFUSED("PUT", p, "{\"vcpu_count\": null, \"mem_size_mib\": 128}",
		"invalid type for `vcpu_count`: expected an unsigned integer, found null");
}

TEST(machine_config_patch)
{
	const char *p = "/machine-config";
	ACCEPTED("PATCH", p, "{\"vcpu_count\": 4}", ACT_PATCH_MACHINE_CONFIG);
	CHECK(A.has_cpus && !A.has_mem && !A.has_smt && !A.has_track_dirty);
	CHECK_EQ(A.u.machine.cpus, 4);
	ACCEPTED("PATCH", p, "{\"track_dirty_pages\": false}", ACT_PATCH_MACHINE_CONFIG);
	CHECK(A.has_track_dirty && !A.has_cpus);
	ACCEPTED("PATCH", p, "{\"cpu_template\": \"None\"}", ACT_PATCH_MACHINE_CONFIG);
	REFUSED("PATCH", p, "{}", "Empty PATCH request.");
	REFUSED("PATCH", p, "{\"smt\": null}", "Empty PATCH request.");
	REFUSED("PATCH", p, "{\"vcpu_count\": -4}", "invalid value for `vcpu_count`");
	REFUSED("PATCH", p, "{\"foo\": 1}", "unknown field `foo`");
}

/* ---- boot-source --------------------------------------------------------------- */

TEST(boot_source)
{
	const char *p = "/boot-source";
	ACCEPTED("PUT", p, "{\"kernel_image_path\": \"/k\"}", ACT_PUT_BOOT_SOURCE);
	CHECK_STR(A.u.boot.kernel, "/k");
	CHECK(!A.u.boot.has_initrd && !A.u.boot.has_cmdline);
	ACCEPTED("PUT", p, "{\"kernel_image_path\": \"/k\", \"initrd_path\": \"/i\", \"boot_args\": \"console=ttyS0 \\\"q\\\"\"}",
		 ACT_PUT_BOOT_SOURCE);
	CHECK(A.u.boot.has_initrd && A.u.boot.has_cmdline);
	CHECK_STR(A.u.boot.initrd, "/i");
	CHECK_STR(A.u.boot.cmdline, "console=ttyS0 \"q\"");
	ACCEPTED("PUT", p, "{\"kernel_image_path\": \"/k\", \"initrd_path\": null, \"boot_args\": null}",
		 ACT_PUT_BOOT_SOURCE);
	CHECK(!A.u.boot.has_initrd && !A.u.boot.has_cmdline);
	REFUSED("PUT", p, "{\"initrd_path\": \"/i\"}", "missing field `kernel_image_path`");
	REFUSED("PUT", p, "{\"kernel_image_path\": 1}", "invalid type for `kernel_image_path`: expected a string");
	REFUSED("PUT", p, "{\"kernel_image_path\": \"/k\", \"cmdline\": \"x\"}", "unknown field `cmdline`");
	REFUSED("PUT", p, "{\"kernel_image_path\": \"/k\\u0000/etc/shadow\"}",
		"invalid value for `kernel_image_path`: contains a NUL character");
	/* the config arrays hold 4095 bytes: longer is refused, never cut */
	ACCEPTED("PUT", p, fmt("{\"kernel_image_path\": \"/%s\"}", rep('k', 4094)), ACT_PUT_BOOT_SOURCE);
	CHECK_EQ(strlen(A.u.boot.kernel), 4095);
	REFUSED("PUT", p, fmt("{\"kernel_image_path\": \"/%s\"}", rep('k', 4095)),
		"invalid value for `kernel_image_path`: longer than 4095 bytes");
	REFUSED("PUT", p, fmt("{\"kernel_image_path\": \"/k\", \"boot_args\": \"%s\"}", rep('a', 4096)),
		"invalid value for `boot_args`: longer than 4095 bytes");
	/* multi-byte UTF-8 counts in bytes */
	ACCEPTED("PUT", p, "{\"kernel_image_path\": \"/k\\u00e9\xc3\xa9\"}", ACT_PUT_BOOT_SOURCE);
	CHECK_STR(A.u.boot.kernel, "/k\xc3\xa9\xc3\xa9");
}

/* ---- drives ---------------------------------------------------------------------- */

#define DRIVE \
	"{\"drive_id\": \"rootfs\", \"path_on_host\": \"/img\", \"is_root_device\": true, \"is_read_only\": false%s}"

TEST(drive_put)
{
	const char *p = "/drives/rootfs";
	ACCEPTED("PUT", p, fmt(DRIVE, ""), ACT_PUT_DRIVE);
	CHECK_STR(A.u.disk.id, "rootfs");
	CHECK_STR(A.u.disk.path, "/img");
	CHECK(A.u.disk.root && !A.u.disk.readonly);
	CHECK_EQ(A.u.disk.cache, DRIVE_CACHE_UNSAFE); /* Firecracker's defaults */
	CHECK_EQ(A.u.disk.io_engine, DRIVE_IO_SYNC);
	CHECK_EQ(A.u.disk.rl.bandwidth.size, 0);
	ACCEPTED("PUT", p,
		 fmt(DRIVE, ", \"partuuid\": \"0eaa91a0-01\", \"cache_type\": \"Writeback\", \"io_engine\": \"Async\", "
			    "\"rate_limiter\": {\"bandwidth\": {\"size\": 1048576, \"one_time_burst\": 7, "
			    "\"refill_time\": 1000}, \"ops\": {\"size\": 100, \"refill_time\": 10}}"),
		 ACT_PUT_DRIVE);
	CHECK_STR(A.u.disk.partuuid, "0eaa91a0-01");
	CHECK_EQ(A.u.disk.cache, DRIVE_CACHE_WRITEBACK);
	CHECK_EQ(A.u.disk.io_engine, DRIVE_IO_ASYNC);
	CHECK_EQ(A.u.disk.rl.bandwidth.size, 1048576);
	CHECK_EQ(A.u.disk.rl.bandwidth.one_time_burst, 7);
	CHECK_EQ(A.u.disk.rl.bandwidth.refill_time_ms, 1000);
	CHECK_EQ(A.u.disk.rl.ops.size, 100);
	CHECK_EQ(A.u.disk.rl.ops.one_time_burst, 0);
	CHECK_EQ(A.u.disk.rl.ops.refill_time_ms, 10);

	REFUSED("PUT", "/drives/other", fmt(DRIVE, ""), "The id from the path does not match the id from the body!");
	REFUSED("PUT", p, "{\"path_on_host\": \"/img\", \"is_root_device\": true, \"is_read_only\": false}",
		"missing field `drive_id`");
	REFUSED("PUT", p, "{\"drive_id\": \"rootfs\", \"is_root_device\": true, \"is_read_only\": false}",
		"missing field `path_on_host`");
	REFUSED("PUT", p, "{\"drive_id\": \"rootfs\", \"path_on_host\": \"/img\", \"is_read_only\": false}",
		"missing field `is_root_device`");
	REFUSED("PUT", p, "{\"drive_id\": \"rootfs\", \"path_on_host\": \"/img\", \"is_root_device\": false}",
		"missing field `is_read_only`");
	REFUSED("PUT", p, fmt(DRIVE, ", \"socket\": \"/vhost.sock\""), "vhost-user");
	REFUSED("PUT", p, "{\"drive_id\": \"rootfs\", \"socket\": \"/s\", \"is_root_device\": true}", "vhost-user");
	REFUSED("PUT", p, fmt(DRIVE, ", \"cache_type\": \"None\""),
		"invalid value for `cache_type`: expected one of `Unsafe`, `Writeback`, found `None`");
	REFUSED("PUT", p, fmt(DRIVE, ", \"io_engine\": \"sync\""), "invalid value for `io_engine`");
	REFUSED("PUT", p, fmt(DRIVE, ", \"is_readonly\": true"), "unknown field `is_readonly`");
	REFUSED("PUT", p, fmt(DRIVE, ", \"rate_limiter\": {\"bandwidth\": {\"refill_time\": 1}}"),
		"missing field `rate_limiter.bandwidth.size`");
	REFUSED("PUT", p, fmt(DRIVE, ", \"rate_limiter\": {\"ops\": {\"size\": 1}}"),
		"missing field `rate_limiter.ops.refill_time`");
	REFUSED("PUT", p, fmt(DRIVE, ", \"rate_limiter\": {\"ops\": {\"size\": 1, \"refill_time\": -1}}"),
		"invalid value for `rate_limiter.ops.refill_time`");
	REFUSED("PUT", p, fmt(DRIVE, ", \"rate_limiter\": {\"ops\": {\"size\": 1, \"refill_time\": 1, \"x\": 1}}"),
		"unknown field `rate_limiter.ops.x`, expected one of `size`, `one_time_burst`, `refill_time`");
	REFUSED("PUT", p, fmt(DRIVE, ", \"rate_limiter\": {\"iops\": {}}"), "unknown field `rate_limiter.iops`");
	REFUSED("PUT", p, fmt(DRIVE, ", \"rate_limiter\": []"),
		"invalid type for `rate_limiter`: expected an object, found an array");
	REFUSED("PUT", p, fmt(DRIVE, ", \"rate_limiter\": {\"ops\": 5}"),
		"invalid type for `rate_limiter.ops`: expected an object, found an integer");
	/* partuuid[64] */
	char extra[8300];
	snprintf(extra, sizeof(extra), ", \"partuuid\": \"%s\"", rep('a', 63));
	ACCEPTED("PUT", p, fmt(DRIVE, extra), ACT_PUT_DRIVE);
	snprintf(extra, sizeof(extra), ", \"partuuid\": \"%s\"", rep('a', 64));
	REFUSED("PUT", p, fmt(DRIVE, extra), "invalid value for `partuuid`: longer than 63 bytes");
	/* rate limiter of null: no limit */
	ACCEPTED("PUT", p, fmt(DRIVE, ", \"rate_limiter\": null"), ACT_PUT_DRIVE);
	ACCEPTED("PUT", p, fmt(DRIVE, ", \"rate_limiter\": {\"bandwidth\": null, \"ops\": null}"), ACT_PUT_DRIVE);
}

TEST(drive_ids)
{
	struct config_err e;
	/* the same checks and words as config_check_id() */
	config_check_id("drive", "a-b", &e);
	REFUSED("PUT", "/drives/a-b", "{}", e.msg);
	REFUSED("PUT", "/drives/a%20b", "{}", "only ASCII letters, digits and '_' are allowed");
	REFUSED("PUT", "/drives", "{}", "drive: the id is empty");
	REFUSED("PUT", "/drives/", "{}", "drive: the id is empty");
	REFUSED("PATCH", "/drives", "{}", "drive: the id is empty");
	const char *long_id = rep('d', 65);
	char path[8300];
	snprintf(path, sizeof(path), "/drives/%s", long_id);
	REFUSED("PUT", path, "{}", "drive: the id is longer than 64 characters");
	/* the path is fine, the body's id is not: same message */
	config_check_id("drive", "r\xc3\xa9", &e);
	REFUSED("PUT", "/drives/rootfs",
		"{\"drive_id\": \"r\\u00e9\", \"path_on_host\": \"/img\", \"is_root_device\": true, \"is_read_only\": false}",
		e.msg);
	REFUSED("PUT", "/drives/rootfs",
		fmt("{\"drive_id\": \"%s\", \"path_on_host\": \"/img\", \"is_root_device\": true, \"is_read_only\": false}",
		    long_id),
		"drive: the id is longer than 64 characters");
	/* 64 characters fit */
	const char *id64 = rep('d', 64);
	snprintf(path, sizeof(path), "/drives/%s", id64);
	ACCEPTED("PUT", path,
		 fmt("{\"drive_id\": \"%s\", \"path_on_host\": \"/img\", \"is_root_device\": true, \"is_read_only\": false}",
		     rep('d', 64)),
		 ACT_PUT_DRIVE);
	CHECK_EQ(strlen(A.u.disk.id), 64);
	ACCEPTED("PUT", "/drives/Disk_01/",
		 "{\"drive_id\": \"Disk_01\", \"path_on_host\": \"/img\", \"is_root_device\": true, \"is_read_only\": false}",
		 ACT_PUT_DRIVE);
}

TEST(drive_patch)
{
	const char *p = "/drives/scratch";
	ACCEPTED("PATCH", p, "{\"drive_id\": \"scratch\"}", ACT_PATCH_DRIVE);
	CHECK(!A.has_path && !A.has_rl);
	CHECK_STR(A.u.disk.id, "scratch");
	ACCEPTED("PATCH", p, "{\"drive_id\": \"scratch\", \"path_on_host\": \"/new\"}", ACT_PATCH_DRIVE);
	CHECK(A.has_path && !A.has_rl);
	CHECK_STR(A.u.disk.path, "/new");
	ACCEPTED("PATCH", p, "{\"drive_id\": \"scratch\", \"rate_limiter\": {\"ops\": {\"size\": 5, \"refill_time\": 100}}}",
		 ACT_PATCH_DRIVE);
	CHECK(!A.has_path && A.has_rl);
	CHECK_EQ(A.u.disk.rl.ops.size, 5);
	REFUSED("PATCH", p, "{\"drive_id\": \"other\"}", "The id from the path does not match the id from the body!");
	REFUSED("PATCH", p, "{\"path_on_host\": \"/new\"}", "missing field `drive_id`");
	REFUSED("PATCH", p, "{\"drive_id\": \"scratch\", \"is_read_only\": true}", "unknown field `is_read_only`");
	REFUSED("PATCH", p, "{\"drive_id\": \"scratch\", \"path_on_host\": true}", "invalid type for `path_on_host`");
	REFUSED("PATCH", "/drives/a.b", "{\"drive_id\": \"a.b\"}", "only ASCII letters");
}

/* ---- network interfaces ------------------------------------------------------------- */

TEST(net_put)
{
	const char *p = "/network-interfaces/eth0";
	ACCEPTED("PUT", p, "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\"}", ACT_PUT_NET);
	CHECK_STR(A.u.net.id, "eth0");
	CHECK_STR(A.u.net.tap, "tap0");
	CHECK_STR(A.u.net.mac, "");
	CHECK_EQ(A.u.net.mtu, 0);
	ACCEPTED("PUT", p,
		 "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"06:00:AC:10:00:02\", "
		 "\"mtu\": 9000, \"rx_rate_limiter\": {\"bandwidth\": {\"size\": 1, \"refill_time\": 2}}, "
		 "\"tx_rate_limiter\": {\"ops\": {\"size\": 3, \"refill_time\": 4}}}",
		 ACT_PUT_NET);
	CHECK_STR(A.u.net.mac, "06:00:AC:10:00:02");
	CHECK_EQ(A.u.net.mtu, 9000);
	CHECK_EQ(A.u.net.rx_rl.bandwidth.size, 1);
	CHECK_EQ(A.u.net.tx_rl.ops.refill_time_ms, 4);
	ACCEPTED("PUT", p, "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"mtu\": 68}", ACT_PUT_NET);
	ACCEPTED("PUT", p, "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"mtu\": 65535}", ACT_PUT_NET);
	REFUSED("PUT", p, "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"mtu\": 67}",
		"invalid value for `mtu`: expected an integer from 68 to 65535, found 67");
	REFUSED("PUT", p, "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"mtu\": 0}", "`mtu`");
	REFUSED("PUT", p, "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"mtu\": 65536}", "`mtu`");
	REFUSED("PUT", p, "{\"iface_id\": \"eth0\"}", "missing field `host_dev_name`");
	REFUSED("PUT", p, "{\"host_dev_name\": \"tap0\"}", "missing field `iface_id`");
	/* IFNAMSIZ */
	ACCEPTED("PUT", p, fmt("{\"iface_id\": \"eth0\", \"host_dev_name\": \"%s\"}", rep('t', 15)), ACT_PUT_NET);
	REFUSED("PUT", p, fmt("{\"iface_id\": \"eth0\", \"host_dev_name\": \"%s\"}", rep('t', 16)),
		"invalid value for `host_dev_name`: longer than 15 bytes");
	REFUSED("PUT", p, "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"06:00:AC:10:00:02:\"}",
		"invalid value for `guest_mac`: longer than 17 bytes");
	REFUSED("PUT", p, "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap0\"}",
		"The id from the path does not match the id from the body!");
	REFUSED("PUT", p, "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"allow_mmds_requests\": true}",
		"unknown field `allow_mmds_requests`");
	REFUSED("PUT", p, "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"rx_rate_limiter\": {\"ops\": {}}}",
		"missing field `rx_rate_limiter.ops.size`");
	REFUSED("PUT", "/network-interfaces/eth-0", "{}", "network interface: invalid id 'eth-0'");
}

TEST(net_patch)
{
	const char *p = "/network-interfaces/eth0";
	ACCEPTED("PATCH", p, "{\"iface_id\": \"eth0\", \"rx_rate_limiter\": {\"ops\": {\"size\": 1, \"refill_time\": 1}}}",
		 ACT_PATCH_NET);
	CHECK(A.has_rx_rl && !A.has_tx_rl);
	ACCEPTED("PATCH", p, "{\"iface_id\": \"eth0\", \"tx_rate_limiter\": {}}", ACT_PATCH_NET);
	CHECK(!A.has_rx_rl && A.has_tx_rl);
	REFUSED("PATCH", p, "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap1\"}", "unknown field `host_dev_name`");
	REFUSED("PATCH", p, "{\"iface_id\": \"eth9\"}", "does not match");
	REFUSED("PATCH", p, "{}", "missing field `iface_id`");
}

/* ---- vsock, entropy -------------------------------------------------------------------- */

TEST(vsock)
{
	ACCEPTED("PUT", "/vsock", "{\"guest_cid\": 3, \"uds_path\": \"/tmp/v.sock\"}", ACT_PUT_VSOCK);
	CHECK_EQ(A.u.vsock.cid, 3);
	CHECK_STR(A.u.vsock.uds, "/tmp/v.sock");
	CHECK(A.u.vsock.enabled);
	CHECK_STR(A.u.vsock.id, "");
	ACCEPTED("PUT", "/vsock", "{\"guest_cid\": 4294967294, \"uds_path\": \"/v\", \"vsock_id\": \"vsock0\"}",
		 ACT_PUT_VSOCK);
	CHECK_STR(A.u.vsock.id, "vsock0");
	REFUSED("PUT", "/vsock", "{\"uds_path\": \"/v\"}", "missing field `guest_cid`");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": 3}", "missing field `uds_path`");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": -3, \"uds_path\": \"/v\"}", "invalid value for `guest_cid`");
	REFUSED("PUT", "/vsock", "{\"guest_cid\": 3, \"uds_path\": \"/v\", \"vsock_id\": \"v s\"}",
		"vsock: invalid id 'v s'");
	REFUSED("PUT", "/vsock", fmt("{\"guest_cid\": 3, \"uds_path\": \"/%s\"}", rep('u', 107)),
		"invalid value for `uds_path`: longer than 107 bytes");
}

TEST(entropy)
{
	ACCEPTED("PUT", "/entropy", "{}", ACT_PUT_ENTROPY);
	CHECK(A.u.rng.enabled);
	CHECK_EQ(A.u.rng.rl.ops.size, 0);
	ACCEPTED("PUT", "/entropy", "{\"rate_limiter\": {\"bandwidth\": {\"size\": 1000, \"refill_time\": 100}}}",
		 ACT_PUT_ENTROPY);
	CHECK_EQ(A.u.rng.rl.bandwidth.size, 1000);
	REFUSED("PUT", "/entropy", "{\"rate\": 1}", "unknown field `rate`, expected one of `rate_limiter`");
}

/* ---- balloon ------------------------------------------------------------------------------ */

TEST(balloon)
{
	ACCEPTED("PUT", "/balloon", "{\"amount_mib\": 64, \"deflate_on_oom\": true}", ACT_PUT_BALLOON);
	CHECK_EQ(A.u.balloon.size, 64ULL << 20);
	CHECK(A.u.balloon.deflate_on_oom && A.u.balloon.enabled);
	CHECK_EQ(A.u.balloon.stats_period, 0);
	CHECK(A.u.balloon.no_reporting); /* Firecracker's default: no reporting */
	ACCEPTED("PUT", "/balloon",
		 "{\"amount_mib\": 0, \"deflate_on_oom\": false, \"stats_polling_interval_s\": 5, "
		 "\"free_page_hinting\": false, \"free_page_reporting\": true}",
		 ACT_PUT_BALLOON);
	CHECK_EQ(A.u.balloon.stats_period, 5);
	CHECK(!A.u.balloon.no_reporting);
	REFUSED("PUT", "/balloon", "{\"amount_mib\": 64, \"deflate_on_oom\": true, \"free_page_hinting\": true}",
		"visor does not support balloon free page hinting yet");
	REFUSED("PUT", "/balloon", "{\"deflate_on_oom\": true}", "missing field `amount_mib`");
	REFUSED("PUT", "/balloon", "{\"amount_mib\": 64}", "missing field `deflate_on_oom`");
	REFUSED("PUT", "/balloon", "{\"amount_mib\": 64, \"deflate_on_oom\": true, \"stats_polling_interval_s\": -1}",
		"invalid value for `stats_polling_interval_s`");
	REFUSED("PUT", "/balloon", "{\"amount_mib\": 64, \"deflate_on_oom\": true, \"must_tell_host\": true}",
		"unknown field `must_tell_host`");

	ACCEPTED("PATCH", "/balloon", "{\"amount_mib\": 128}", ACT_PATCH_BALLOON);
	CHECK_EQ(A.u.balloon.size, 128ULL << 20);
	REFUSED("PATCH", "/balloon", "{}", "missing field `amount_mib`");
	REFUSED("PATCH", "/balloon", "{\"amount_mib\": 1, \"deflate_on_oom\": true}", "unknown field `deflate_on_oom`");
	REFUSED("PATCH", "/balloon", "{\"amount_mib\": 1.5}", "invalid value for `amount_mib`");

	ACCEPTED("PATCH", "/balloon/statistics", "{\"stats_polling_interval_s\": 10}", ACT_PATCH_BALLOON_STATS);
	CHECK_EQ(A.u.balloon.stats_period, 10);
	REFUSED("PATCH", "/balloon/statistics", "{}", "missing field `stats_polling_interval_s`");
	REFUSED("PATCH", "/balloon/statistics", "{\"stats_polling_interval_s\": 4294967296}", "expected an integer from 0 to 4294967295");
	REFUSED("PUT", "/balloon/statistics", "{}", "Invalid request method and/or path");
}

/* ---- actions, vm, logger, metrics, serial ------------------------------------------------- */

TEST(actions_and_vm)
{
	ACCEPTED("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", ACT_INSTANCE_START);
	ACCEPTED("PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}", ACT_SEND_CTRL_ALT_DEL);
	ACCEPTED("PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}", ACT_FLUSH_METRICS);
	REFUSED("PUT", "/actions", "{\"action_type\": \"BlockDeviceRescan\"}",
		"invalid value for `action_type`: expected one of `FlushMetrics`, `InstanceStart`, `SendCtrlAltDel`, found `BlockDeviceRescan`");
	REFUSED("PUT", "/actions", "{\"action_type\": \"instancestart\"}", "invalid value for `action_type`");
	REFUSED("PUT", "/actions", "{}", "missing field `action_type`");
	REFUSED("PUT", "/actions", "{\"action_type\": \"InstanceStart\", \"payload\": \"x\"}", "unknown field `payload`");

	ACCEPTED("PATCH", "/vm", "{\"state\": \"Paused\"}", ACT_PAUSE);
	ACCEPTED("PATCH", "/vm", "{\"state\": \"Resumed\"}", ACT_RESUME);
	REFUSED("PATCH", "/vm", "{\"state\": \"paused\"}", "invalid value for `state`");
	REFUSED("PATCH", "/vm", "{\"state\": 1}", "invalid type for `state`");
	REFUSED("PATCH", "/vm", "{}", "missing field `state`");
}

TEST(logger)
{
	ACCEPTED("PUT", "/logger", "{}", ACT_PUT_LOGGER);
	CHECK(A.u.logger.set && !A.u.logger.off);
	CHECK_EQ(A.u.logger.level, LOG_INFO);
	CHECK_STR(A.u.logger.path, "");
	ACCEPTED("PUT", "/logger",
		 "{\"log_path\": \"/tmp/log.fifo\", \"level\": \"warning\", \"show_level\": true, "
		 "\"show_log_origin\": true, \"module\": \"api_server::request\"}",
		 ACT_PUT_LOGGER);
	CHECK_STR(A.u.logger.path, "/tmp/log.fifo");
	CHECK_EQ(A.u.logger.level, LOG_WARN);
	CHECK(A.u.logger.show_level && A.u.logger.show_origin);
	static const struct {
		const char *in;
		enum log_level level;
		bool off;
	} levels[] = {{"Error", LOG_ERROR, false}, {"WARNING", LOG_WARN, false}, {"Warn", LOG_WARN, false},
		      {"info", LOG_INFO, false},   {"Debug", LOG_DEBUG, false},    {"TRACE", LOG_DEBUG, false},
		      {"Off", LOG_INFO, true}};
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		ACCEPTED("PUT", "/logger", fmt("{\"level\": \"%s\"}", levels[i].in), ACT_PUT_LOGGER);
		CHECK_EQ(A.u.logger.level, levels[i].level);
		CHECK_EQ(A.u.logger.off, levels[i].off);
	}
	REFUSED("PUT", "/logger", "{\"level\": \"Verbose\"}", "invalid value for `level`");
	REFUSED("PUT", "/logger", "{\"module\": 3}", "invalid type for `module`");
	REFUSED("PUT", "/logger", "{\"log_fifo\": \"/x\"}", "unknown field `log_fifo`");
}

TEST(metrics)
{
	ACCEPTED("PUT", "/metrics", "{\"metrics_path\": \"/tmp/m\"}", ACT_PUT_METRICS);
	CHECK_STR(A.u.metrics.path, "/tmp/m");
	CHECK(A.u.metrics.set);
	ACCEPTED("PUT", "/metrics", "{\"metrics_path\": \"/tmp/m\", \"emit_id\": true, \"properties\": {\"a\": \"b\"}}",
		 ACT_PUT_METRICS);
	REFUSED("PUT", "/metrics", "{}", "missing field `metrics_path`");
	REFUSED("PUT", "/metrics", "{\"metrics_path\": \"/m\", \"emit_id\": 1}", "invalid type for `emit_id`");
	REFUSED("PUT", "/metrics", "{\"metrics_path\": \"/m\", \"properties\": {\"k\": 1}}",
		"invalid type for `properties.k`: expected a string, found an integer");
	REFUSED("PUT", "/metrics", "{\"metrics_path\": \"/m\", \"properties\": []}", "invalid type for `properties`");
}

TEST(serial)
{
	ACCEPTED("PUT", "/serial", "{\"serial_out_path\": \"/tmp/console\"}", ACT_PUT_SERIAL);
	CHECK_STR(A.u.serial_out, "/tmp/console");
	ACCEPTED("PUT", "/serial", "{}", ACT_PUT_SERIAL);
	CHECK_STR(A.u.serial_out, "");
	ACCEPTED("PUT", "/serial", "{\"serial_out_path\": \"/c\", \"rate_limiter\": null}", ACT_PUT_SERIAL);
	REFUSED("PUT", "/serial", "{\"rate_limiter\": {\"size\": 1, \"refill_time\": 1}}", "rate limiting the serial console");
	REFUSED("PUT", "/serial", "{\"path\": \"/c\"}", "unknown field `path`");
}

TEST(fault_is_one_line)
{
	/* whatever the client sent that a message quotes */
	REFUSED("PUT", "/actions", "{\"action_type\": \"Instance\\nStart\\r\\u0001x\"}", "found `Instance?Start??x`");
	REFUSED("PUT", "/actions", "{\"action\\ntype\": 1}", "unknown field `action?type`");
	REFUSED("GET", "/a\tb\x7f", NULL, "GET /a?b?.");
	CHECK_EQ(cfile("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"x\\u001by\": 1}"), -EINVAL);
	CHECK(strstr(E, "unknown field `x?y`") != NULL);
}

TEST(fault_buffer_is_bounded)
{
	char small[8];
	int st = 0;
	CHECK_EQ(fc_parse_request("GET", "/nope", NULL, 0, &A, &st, small, sizeof(small)), -EINVAL);
	CHECK_EQ(st, 400);
	CHECK_EQ(strlen(small), 7);
	/* no buffer at all */
	CHECK_EQ(fc_parse_request("GET", "/nope", NULL, 0, &A, &st, NULL, 0), -EINVAL);
	/* a refused request leaves no half-decoded action behind */
	A.kind = ACT_PUT_VSOCK;
	CHECK_EQ(parse("PUT", "/vsock", "{\"guest_cid\": 3, \"uds_path\": 7}"), -EINVAL);
	CHECK_EQ(A.kind, ACT_NONE);
	CHECK_EQ(A.u.vsock.cid, 0);
}

/* ---- replies ------------------------------------------------------------------------------ */

/* Parse a reply back, strictly. */
static struct json_object *reparse(const char *s, size_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(FC_JSON_MAX_DEPTH);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	struct json_object *o = json_tokener_parse_ex(tok, s, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success) {
		printf("  reply does not parse: %s\n", s);
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static long long jint(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return -12345;
	return (long long)json_object_get_int64(v);
}

static int jbool(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean))
		return -1;
	return json_object_get_boolean(v);
}

static struct json_object *jget(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;
	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static struct vm_reply R;

static struct json_object *reply(enum vm_action_kind kind, int status)
{
	struct vm_action a = {.kind = kind};
	R.status = status;
	size_t len = 99;
	char *s = fc_format_reply(&a, &R, &len);
	if (!s)
		return NULL;
	CHECK_EQ(strlen(s), len);
	struct json_object *o = reparse(s, len);
	free(s);
	return o;
}

TEST(reply_no_body)
{
	struct vm_action a = {.kind = ACT_PUT_VSOCK};
	memset(&R, 0, sizeof(R));
	R.status = 204;
	size_t len = 99;
	CHECK(fc_format_reply(&a, &R, &len) == NULL);
	CHECK_EQ(len, 0);
	R.status = 200; /* a kind without a body */
	len = 99;
	CHECK(fc_format_reply(&a, &R, &len) == NULL);
	CHECK_EQ(len, 0);
}

TEST(reply_fault_escaping)
{
	memset(&R, 0, sizeof(R));
	snprintf(R.fault, sizeof(R.fault), "bad \"quote\" back\\slash\nnew\ttab\x01\x1f\x7f end");
	struct json_object *o = reply(ACT_PUT_VSOCK, 400);
	CHECK(o != NULL);
	CHECK_STR(jstr(o, "fault_message"), R.fault);
	CHECK_EQ(json_object_object_length(o), 1);
	json_object_put(o);
	/* the exact bytes */
	size_t len;
	char *s = fc_format_fault("a\"b\\c\n\x01", &len);
	CHECK_STR(s, "{\"fault_message\":\"a\\\"b\\\\c\\n\\u0001\"}");
	free(s);
	/* bytes that are not UTF-8 become U+FFFD; valid UTF-8 passes */
	s = fc_format_fault("x\xff\xc3\xa9\xed\xa0\x80\xe2\x82y\xf0\x9f\x98\x80", &len);
	o = reparse(s, len);
	CHECK(o != NULL);
	CHECK_STR(jstr(o, "fault_message"),
		  "x\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdy\xf0\x9f\x98\x80");
	json_object_put(o);
	free(s);
	/* a fault that fills the whole array (no NUL) is still bounded */
	memset(R.fault, 'f', sizeof(R.fault));
	o = reply(ACT_GET_INFO, 500);
	CHECK(o != NULL);
	CHECK_EQ(strlen(jstr(o, "fault_message")), sizeof(R.fault));
	json_object_put(o);
	s = fc_format_fault(NULL, &len);
	CHECK_STR(s, "{\"fault_message\":\"\"}");
	free(s);
}

TEST(reply_fault_from_request)
{
	/* a path with quotes and control characters makes a valid fault body */
	CHECK_EQ(parse("GET", "/\"x\x01\"\\", NULL), -EINVAL);
	size_t len;
	char *s = fc_format_fault(F, &len);
	struct json_object *o = reparse(s, len);
	CHECK(o != NULL);
	CHECK_STR(jstr(o, "fault_message"), "Invalid request method and/or path: GET /\"x?\"\\.");
	json_object_put(o);
	free(s);
}

TEST(reply_instance_info_and_version)
{
	memset(&R, 0, sizeof(R));
	snprintf(R.id, sizeof(R.id), "vm_1");
	snprintf(R.version, sizeof(R.version), "0.1.0 (abc)");
	static const struct {
		enum vm_state s;
		const char *name;
	} states[] = {{VM_NOT_STARTED, "Not started"}, {VM_RUNNING, "Running"}, {VM_PAUSED, "Paused"},
		      {VM_STOPPED, "Paused"}};
	for (size_t i = 0; i < 4; i++) {
		R.state = states[i].s;
		struct json_object *o = reply(ACT_GET_INFO, 200);
		CHECK(o != NULL);
		CHECK_STR(jstr(o, "app_name"), FC_APP_NAME);
		CHECK_STR(jstr(o, "id"), "vm_1");
		CHECK_STR(jstr(o, "state"), states[i].name);
		CHECK_STR(jstr(o, "vmm_version"), "0.1.0 (abc)");
		CHECK_EQ(json_object_object_length(o), 5) /* + uptime_ms */;
		json_object_put(o);
	}
	struct json_object *o = reply(ACT_GET_VERSION, 200);
	CHECK_STR(jstr(o, "firecracker_version"), FC_API_VERSION);
	CHECK_STR(jstr(o, "firecracker_version"), "1.17.0");
	CHECK_EQ(json_object_object_length(o), 1);
	json_object_put(o);
}

/* A config with one of everything. */
static void full_config(struct vm_config *c)
{
	struct config_err e;
	config_init(c);
	CHECK_EQ(config_set_machine(c, 2, 512, true, true, &e), 0);
	CHECK_EQ(config_set_boot(c, "/vmlinux", "/initrd", "console=ttyS0 \"quoted\"", &e), 0);
	struct disk_config d = {.root = true, .readonly = true, .cache = DRIVE_CACHE_WRITEBACK,
				.io_engine = DRIVE_IO_ASYNC};
	snprintf(d.id, sizeof(d.id), "rootfs");
	snprintf(d.path, sizeof(d.path), "/img/root.ext4");
	snprintf(d.partuuid, sizeof(d.partuuid), "abcd-01");
	d.rl.bandwidth = (struct bucket_config){1 << 20, 5, 1000};
	CHECK_EQ(config_set_disk(c, &d, &e), 0);
	struct disk_config d2 = {0};
	snprintf(d2.id, sizeof(d2.id), "scratch");
	snprintf(d2.path, sizeof(d2.path), "/img/scratch");
	CHECK_EQ(config_set_disk(c, &d2, &e), 0);
	struct net_config n = {.mtu = 1500};
	snprintf(n.id, sizeof(n.id), "eth0");
	snprintf(n.tap, sizeof(n.tap), "tap0");
	snprintf(n.mac, sizeof(n.mac), "06:00:ac:10:00:02");
	n.tx_rl.ops = (struct bucket_config){100, 0, 10};
	CHECK_EQ(config_set_net(c, &n, &e), 0);
	struct vsock_config v = {.cid = 42};
	snprintf(v.uds, sizeof(v.uds), "/tmp/v.sock");
	snprintf(v.id, sizeof(v.id), "vsock0");
	CHECK_EQ(config_set_vsock(c, &v, &e), 0);
	struct balloon_config b = {.size = 64ULL << 20, .deflate_on_oom = true, .stats_period = 5};
	CHECK_EQ(config_set_balloon(c, &b, &e), 0);
	struct rng_config r = {0};
	r.rl.ops = (struct bucket_config){10, 0, 100};
	CHECK_EQ(config_set_rng(c, &r, &e), 0);
	c->logger = (struct logger_config){.set = true, .level = LOG_WARN, .show_level = true};
	snprintf(c->logger.path, sizeof(c->logger.path), "/tmp/log");
	c->metrics.set = true;
	snprintf(c->metrics.path, sizeof(c->metrics.path), "/tmp/metrics");
}

TEST(reply_machine_config_and_balloon)
{
	memset(&R, 0, sizeof(R));
	full_config(&R.config);
	struct json_object *o = reply(ACT_GET_MACHINE_CONFIG, 200);
	CHECK_EQ(jint(o, "vcpu_count"), 2);
	CHECK_EQ(jint(o, "mem_size_mib"), 512);
	CHECK_EQ(jbool(o, "smt"), 1);
	CHECK_EQ(jbool(o, "track_dirty_pages"), 1);
	CHECK_STR(jstr(o, "huge_pages"), "None");
	CHECK_EQ(json_object_object_length(o), 5);
	json_object_put(o);
	o = reply(ACT_GET_BALLOON, 200);
	CHECK_EQ(jint(o, "amount_mib"), 64);
	CHECK_EQ(jbool(o, "deflate_on_oom"), 1);
	CHECK_EQ(jint(o, "stats_polling_interval_s"), 5);
	CHECK_EQ(jbool(o, "free_page_hinting"), 0);
	CHECK_EQ(jbool(o, "free_page_reporting"), 1);
	json_object_put(o);
}

TEST(reply_balloon_stats)
{
	memset(&R, 0, sizeof(R));
	R.balloon = (struct balloon_stats_reply){.target_pages = 256, .actual_pages = 128, .target_mib = 1,
						 .actual_mib = 0};
	struct json_object *o = reply(ACT_GET_BALLOON_STATS, 200);
	CHECK_EQ(jint(o, "target_pages"), 256);
	CHECK_EQ(jint(o, "actual_pages"), 128);
	CHECK_EQ(jint(o, "target_mib"), 1);
	CHECK_EQ(jint(o, "actual_mib"), 0);
	CHECK_EQ(json_object_object_length(o), 4); /* no guest statistics yet */
	json_object_put(o);
	static const char *const names[16] = {"swap_in",          "swap_out",    "major_faults",
					      "minor_faults",     "free_memory", "total_memory",
					      "available_memory", "disk_caches", "hugetlb_allocations",
					      "hugetlb_failures", "oom_kill",    "alloc_stall",
					      "async_scan",       "direct_scan", "async_reclaim",
					      "direct_reclaim"};
	for (int i = 0; i < 16; i++)
		R.balloon.val[i] = 1000 + (uint64_t)i;
	R.balloon.valid = (1u << 0) | (1u << 4) | (1u << 5) | (1u << 9) | (1u << 15);
	o = reply(ACT_GET_BALLOON_STATS, 200);
	for (int i = 0; i < 16; i++) {
		if (R.balloon.valid & (1u << i))
			CHECK_EQ(jint(o, names[i]), 1000 + i);
		else
			CHECK(jget(o, names[i]) == NULL);
	}
	CHECK_EQ(json_object_object_length(o), 4 + 5);
	json_object_put(o);
	/* the whole u64 range */
	R.balloon.valid = 1u << 7;
	R.balloon.val[7] = UINT64_MAX;
	struct vm_action a = {.kind = ACT_GET_BALLOON_STATS};
	size_t len;
	char *s = fc_format_reply(&a, &R, &len);
	CHECK(strstr(s, "\"disk_caches\":18446744073709551615") != NULL);
	free(s);
}

TEST(reply_vm_config_full)
{
	memset(&R, 0, sizeof(R));
	full_config(&R.config);
	struct json_object *o = reply(ACT_GET_VM_CONFIG, 200);
	CHECK(o != NULL);
	struct json_object *bs = jget(o, "boot-source");
	CHECK_STR(jstr(bs, "kernel_image_path"), "/vmlinux");
	CHECK_STR(jstr(bs, "initrd_path"), "/initrd");
	CHECK_STR(jstr(bs, "boot_args"), "console=ttyS0 \"quoted\"");
	struct json_object *dr = jget(o, "drives");
	CHECK(json_object_is_type(dr, json_type_array));
	CHECK_EQ(json_object_array_length(dr), 2);
	struct json_object *d0 = json_object_array_get_idx(dr, 0);
	CHECK_STR(jstr(d0, "drive_id"), "rootfs");
	CHECK_STR(jstr(d0, "path_on_host"), "/img/root.ext4");
	CHECK_STR(jstr(d0, "partuuid"), "abcd-01");
	CHECK_EQ(jbool(d0, "is_root_device"), 1);
	CHECK_EQ(jbool(d0, "is_read_only"), 1);
	CHECK_STR(jstr(d0, "cache_type"), "Writeback");
	CHECK_STR(jstr(d0, "io_engine"), "Async");
	struct json_object *bw = jget(jget(d0, "rate_limiter"), "bandwidth");
	CHECK_EQ(jint(bw, "size"), 1 << 20);
	CHECK_EQ(jint(bw, "one_time_burst"), 5);
	CHECK_EQ(jint(bw, "refill_time"), 1000);
	CHECK(jget(jget(d0, "rate_limiter"), "ops") == NULL);
	struct json_object *d1 = json_object_array_get_idx(dr, 1);
	CHECK(jget(d1, "partuuid") == NULL);
	CHECK(jget(d1, "rate_limiter") == NULL);
	CHECK_STR(jstr(d1, "cache_type"), "Unsafe");
	CHECK_STR(jstr(d1, "io_engine"), "Sync");
	struct json_object *mc = jget(o, "machine-config");
	CHECK_EQ(jint(mc, "vcpu_count"), 2);
	CHECK_EQ(jint(mc, "mem_size_mib"), 512);
	struct json_object *ni = jget(o, "network-interfaces");
	CHECK_EQ(json_object_array_length(ni), 1);
	struct json_object *n0 = json_object_array_get_idx(ni, 0);
	CHECK_STR(jstr(n0, "iface_id"), "eth0");
	CHECK_STR(jstr(n0, "host_dev_name"), "tap0");
	CHECK_STR(jstr(n0, "guest_mac"), "06:00:ac:10:00:02");
	CHECK_EQ(jint(n0, "mtu"), 1500);
	CHECK(jget(n0, "rx_rate_limiter") == NULL);
	CHECK_EQ(jint(jget(jget(n0, "tx_rate_limiter"), "ops"), "size"), 100);
	struct json_object *vs = jget(o, "vsock");
	CHECK_EQ(jint(vs, "guest_cid"), 42);
	CHECK_STR(jstr(vs, "uds_path"), "/tmp/v.sock");
	CHECK_STR(jstr(vs, "vsock_id"), "vsock0");
	struct json_object *bl = jget(o, "balloon");
	CHECK_EQ(jint(bl, "amount_mib"), 64);
	CHECK_EQ(jint(jget(jget(jget(o, "entropy"), "rate_limiter"), "ops"), "refill_time"), 100);
	struct json_object *lg = jget(o, "logger");
	CHECK_STR(jstr(lg, "log_path"), "/tmp/log");
	CHECK_STR(jstr(lg, "level"), "Warning");
	CHECK_EQ(jbool(lg, "show_level"), 1);
	CHECK_EQ(jbool(lg, "show_log_origin"), 0);
	CHECK_STR(jstr(jget(o, "metrics"), "metrics_path"), "/tmp/metrics");
	/* nothing outside the schema's FullVmConfiguration */
	CHECK_EQ(json_object_object_length(o), 9);
	json_object_put(o);
}

TEST(reply_vm_config_empty)
{
	memset(&R, 0, sizeof(R));
	config_init(&R.config);
	size_t len;
	struct vm_action a = {.kind = ACT_GET_VM_CONFIG};
	R.status = 200;
	char *s = fc_format_reply(&a, &R, &len);
	CHECK_STR(s, "{\"drives\":[],\"machine-config\":{\"vcpu_count\":1,\"mem_size_mib\":256,\"smt\":false,"
		     "\"track_dirty_pages\":false,\"huge_pages\":\"None\"},\"network-interfaces\":[]}");
	free(s);
	/* a path that is not UTF-8 (from the command line) still makes valid JSON */
	snprintf(R.config.kernel, sizeof(R.config.kernel), "/boot/\xe9t\xe9");
	s = fc_format_reply(&a, &R, &len);
	struct json_object *o = reparse(s, len);
	CHECK_STR(jstr(jget(o, "boot-source"), "kernel_image_path"), "/boot/\xef\xbf\xbdt\xef\xbf\xbd");
	json_object_put(o);
	free(s);
}

/* ---- config file ---------------------------------------------------------------------------- */

static struct vm_action *ACTS;
static size_t NACTS;
static char E[512];

static int cfile(const char *json)
{
	free(ACTS);
	ACTS = NULL;
	return fc_config_file_actions(json, strlen(json), &ACTS, &NACTS, E, sizeof(E));
}

#define CFILE_REFUSED(json, want)                                                                    \
	do {                                                                                         \
		CHECK_EQ(cfile(json), -EINVAL);                                                      \
		CHECK(ACTS == NULL);                                                                 \
		CHECK_EQ(NACTS, 0);                                                                  \
		if (!strstr(E, (want))) {                                                            \
			printf("  %s:%d: error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, E, (want)); \
			test_failed_now_ = 1;                                                        \
		}                                                                                    \
	} while (0)

static const char *const FULL_FILE =
	"{\n"
	"  \"balloon\": {\"amount_mib\": 64, \"deflate_on_oom\": true, \"stats_polling_interval_s\": 5},\n"
	"  \"entropy\": {\"rate_limiter\": {\"ops\": {\"size\": 10, \"refill_time\": 100}}},\n"
	"  \"vsock\": {\"guest_cid\": 42, \"uds_path\": \"/tmp/v.sock\"},\n"
	"  \"network-interfaces\": [\n"
	"    {\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"06:00:ac:10:00:02\"},\n"
	"    {\"iface_id\": \"eth1\", \"host_dev_name\": \"tap1\"}\n"
	"  ],\n"
	"  \"drives\": [\n"
	"    {\"drive_id\": \"rootfs\", \"path_on_host\": \"/img/root\", \"is_root_device\": true, \"is_read_only\": false},\n"
	"    {\"drive_id\": \"data\", \"path_on_host\": \"/img/data\", \"is_root_device\": false, \"is_read_only\": true,\n"
	"     \"rate_limiter\": {\"bandwidth\": {\"size\": 1048576, \"refill_time\": 1000}}}\n"
	"  ],\n"
	"  \"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 512, \"smt\": false},\n"
	"  \"boot-source\": {\"kernel_image_path\": \"/vmlinux\", \"boot_args\": \"console=ttyS0 reboot=k\"},\n"
	"  \"logger\": {\"log_path\": \"/tmp/log\", \"level\": \"Debug\"},\n"
	"  \"metrics\": {\"metrics_path\": \"/tmp/metrics\"}\n"
	"}\n";

TEST(config_file_full)
{
	CHECK_EQ(cfile(FULL_FILE), 0);
	static const enum vm_action_kind order[] = {
		ACT_PUT_LOGGER, ACT_PUT_METRICS, ACT_PUT_MACHINE_CONFIG, ACT_PUT_BOOT_SOURCE, ACT_PUT_DRIVE,
		ACT_PUT_DRIVE,  ACT_PUT_NET,     ACT_PUT_NET,            ACT_PUT_VSOCK,       ACT_PUT_BALLOON,
		ACT_PUT_ENTROPY};
	CHECK_EQ(NACTS, sizeof(order) / sizeof(order[0]));
	for (size_t i = 0; i < NACTS && i < sizeof(order) / sizeof(order[0]); i++)
		CHECK_EQ(ACTS[i].kind, order[i]);
	CHECK_EQ(ACTS[0].u.logger.level, LOG_DEBUG);
	CHECK_STR(ACTS[1].u.metrics.path, "/tmp/metrics");
	CHECK_EQ(ACTS[2].u.machine.cpus, 2);
	CHECK_STR(ACTS[3].u.boot.kernel, "/vmlinux");
	CHECK(ACTS[3].u.boot.has_cmdline && !ACTS[3].u.boot.has_initrd);
	CHECK_STR(ACTS[4].u.disk.id, "rootfs");
	CHECK_STR(ACTS[5].u.disk.id, "data");
	CHECK_EQ(ACTS[5].u.disk.rl.bandwidth.size, 1048576);
	CHECK_STR(ACTS[6].u.net.id, "eth0");
	CHECK_STR(ACTS[7].u.net.tap, "tap1");
	CHECK_EQ(ACTS[8].u.vsock.cid, 42);
	CHECK_EQ(ACTS[9].u.balloon.size, 64ULL << 20);
	CHECK_EQ(ACTS[10].u.rng.rl.ops.size, 10);
	/* the minimum */
	CHECK_EQ(cfile("{\"boot-source\": {\"kernel_image_path\": \"/k\"}}"), 0);
	CHECK_EQ(NACTS, 1);
	CHECK_EQ(ACTS[0].kind, ACT_PUT_BOOT_SOURCE);
	free(ACTS);
	ACTS = NULL;
}

TEST(config_file_errors)
{
	CFILE_REFUSED("", "invalid JSON");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"},}", "invalid JSON");
	CFILE_REFUSED("[]", "expected an object, found an array");
	CFILE_REFUSED("{}", "missing field `boot-source`");
	CFILE_REFUSED("{\"boot-source\": null}", "missing field `boot-source`");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"serial\": {}}",
		      "unknown field `serial`, expected one of `boot-source`, `drives`");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"mmds-config\": {\"network_interfaces\": []}}",
		      "mmds-config: visor does not support MMDS yet");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"cpu-config\": {}}",
		      "cpu-config: visor does not support custom CPU templates");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"memory-hotplug\": {\"total_size_mib\": 1}}",
		      "memory-hotplug: visor does not support memory hotplug yet");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"pmem\": [{\"id\": \"p\"}]}",
		      "pmem: visor does not support pmem devices yet");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"pmem\": {}}", "pmem: visor does not support");
	CFILE_REFUSED("{\"boot-source\": {}}", "boot-source: missing field `kernel_image_path`");
	CFILE_REFUSED("{\"boot-source\": []}", "boot-source: invalid type: expected an object, found an array");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"drives\": {}}",
		      "invalid type for `drives`: expected an array, found an object");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"drives\": [{\"drive_id\": \"a\", "
		      "\"path_on_host\": \"/a\", \"is_root_device\": true, \"is_read_only\": false}, {}]}",
		      "drives[1]: missing field `drive_id`");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"drives\": [7]}",
		      "drives[0]: invalid type: expected an object, found an integer");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"network-interfaces\": [{\"iface_id\": \"e-0\", "
		      "\"host_dev_name\": \"t\"}]}",
		      "network-interfaces[0]: network interface: invalid id 'e-0'");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": {\"mem_size_mib\": 1}}",
		      "machine-config: missing field `vcpu_count`");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"balloon\": {\"amount_mib\": 1, "
		      "\"deflate_on_oom\": true, \"free_page_hinting\": true}}",
		      "balloon: visor does not support balloon free page hinting yet");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"boot-source\": {\"kernel_image_path\": \"/j\"}}",
		      "duplicate field `boot-source`");
	CFILE_REFUSED("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"vsock\": {\"guest_cid\": 99999999999999999999, "
		      "\"uds_path\": \"/v\"}}",
		      "invalid value for `guest_cid`: 99999999999999999999 is out of range");
	/* at most 8 drives (the array would be applied one by one) */
	char big[4096] = "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"drives\": [";
	for (int i = 0; i < 9; i++)
		snprintf(big + strlen(big), sizeof(big) - strlen(big),
			 "%s{\"drive_id\": \"d%d\", \"path_on_host\": \"/d%d\", \"is_root_device\": false, \"is_read_only\": false}",
			 i ? "," : "", i, i);
	snprintf(big + strlen(big), sizeof(big) - strlen(big), "]}");
	CFILE_REFUSED(big, "drives: at most 8 drives");
}

TEST(config_file_same_messages_as_api)
{
	/* the same mistake, the same words (the file names the section) */
	static const struct {
		const char *method, *path, *section, *key, *body;
	} cases[] = {
		{"PUT", "/machine-config", "machine-config", "machine-config", "{\"vcpu_count\": 1.5, \"mem_size_mib\": 128}"},
		{"PUT", "/machine-config", "machine-config", "machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"cpu_template\": \"C3\"}"},
		{"PUT", "/boot-source", "boot-source", "boot-source", "{\"kernel_image_path\": 5}"},
		{"PUT", "/vsock", "vsock", "vsock", "{\"guest_cid\": 3, \"uds_path\": \"/v\", \"x\": 1}"},
		{"PUT", "/balloon", "balloon", "balloon", "{\"amount_mib\": -1, \"deflate_on_oom\": true}"},
		{"PUT", "/entropy", "entropy", "entropy", "{\"rate_limiter\": {\"ops\": {\"size\": 1}}}"},
		{"PUT", "/logger", "logger", "logger", "{\"level\": \"loud\"}"},
		{"PUT", "/metrics", "metrics", "metrics", "{\"metrics_path\": false}"},
		{"PUT", "/drives/a", "drives[0]", "drives", "{\"drive_id\": \"a\", \"path_on_host\": \"/a\", \"is_root_device\": 1, \"is_read_only\": false}"},
		{"PUT", "/network-interfaces/e", "network-interfaces[0]", "network-interfaces", "{\"iface_id\": \"e\", \"host_dev_name\": \"t\", \"mtu\": 10}"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_EQ(parse(cases[i].method, cases[i].path, cases[i].body), -EINVAL);
		bool array = strchr(cases[i].section, '[') != NULL;
		char json[1024];
		snprintf(json, sizeof(json), "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"%s\": %s%s%s}",
			 cases[i].key, array ? "[" : "", cases[i].body, array ? "]" : "");
		if (!strcmp(cases[i].key, "boot-source"))
			snprintf(json, sizeof(json), "{\"boot-source\": %s}", cases[i].body);
		CHECK_EQ(cfile(json), -EINVAL);
		char want[700];
		snprintf(want, sizeof(want), "%s: %s", cases[i].section, F);
		CHECK_STR(E, want);
	}
}

/* What vm.c does with the pre-boot actions of a config (the part that
 * matters for GET /vm/config). */
static int apply(struct vm_config *c, const struct vm_action *a)
{
	struct config_err e;
	switch (a->kind) {
	case ACT_PUT_MACHINE_CONFIG:
		return config_set_machine(c, a->u.machine.cpus, a->u.machine.mem_mib, a->u.machine.smt,
					  a->u.machine.track_dirty_pages, &e);
	case ACT_PUT_BOOT_SOURCE:
		return config_set_boot(c, a->u.boot.kernel, a->u.boot.has_initrd ? a->u.boot.initrd : NULL,
				       a->u.boot.has_cmdline ? a->u.boot.cmdline : CONFIG_FC_DEFAULT_CMDLINE, &e);
	case ACT_PUT_DRIVE: return config_set_disk(c, &a->u.disk, &e);
	case ACT_PUT_NET: return config_set_net(c, &a->u.net, &e);
	case ACT_PUT_VSOCK: return config_set_vsock(c, &a->u.vsock, &e);
	case ACT_PUT_BALLOON: return config_set_balloon(c, &a->u.balloon, &e);
	case ACT_PUT_ENTROPY: return config_set_rng(c, &a->u.rng, &e);
	case ACT_PUT_LOGGER:
		c->logger = a->u.logger;
		c->logger.set = true;
		return 0;
	case ACT_PUT_METRICS:
		c->metrics = a->u.metrics;
		c->metrics.set = true;
		return 0;
	default: return -1;
	}
}

static char *vm_config_json(const struct vm_config *c)
{
	static struct vm_reply r;
	memset(&r, 0, sizeof(r));
	r.status = 200;
	r.config = *c;
	struct vm_action a = {.kind = ACT_GET_VM_CONFIG};
	size_t len;
	return fc_format_reply(&a, &r, &len);
}

static struct vm_config C1, C2, C3;

TEST(config_file_and_api_agree)
{
	/* the API calls a tool would make, in its own order */
	static const struct {
		const char *method, *path, *body;
	} calls[] = {
		{"PUT", "/boot-source", "{\"kernel_image_path\": \"/vmlinux\", \"boot_args\": \"console=ttyS0 reboot=k\"}"},
		{"PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 512, \"smt\": false}"},
		{"PUT", "/drives/rootfs", "{\"drive_id\": \"rootfs\", \"path_on_host\": \"/img/root\", \"is_root_device\": true, \"is_read_only\": false}"},
		{"PUT", "/drives/data", "{\"drive_id\": \"data\", \"path_on_host\": \"/img/data\", \"is_root_device\": false, "
					"\"is_read_only\": true, \"rate_limiter\": {\"bandwidth\": {\"size\": 1048576, \"refill_time\": 1000}}}"},
		{"PUT", "/network-interfaces/eth0", "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"06:00:ac:10:00:02\"}"},
		{"PUT", "/network-interfaces/eth1", "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap1\"}"},
		{"PUT", "/vsock", "{\"guest_cid\": 42, \"uds_path\": \"/tmp/v.sock\"}"},
		{"PUT", "/balloon", "{\"amount_mib\": 64, \"deflate_on_oom\": true, \"stats_polling_interval_s\": 5}"},
		{"PUT", "/entropy", "{\"rate_limiter\": {\"ops\": {\"size\": 10, \"refill_time\": 100}}}"},
		{"PUT", "/logger", "{\"log_path\": \"/tmp/log\", \"level\": \"Debug\"}"},
		{"PUT", "/metrics", "{\"metrics_path\": \"/tmp/metrics\"}"},
	};
	config_init(&C1);
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		CHECK_EQ(parse(calls[i].method, calls[i].path, calls[i].body), 0);
		CHECK_EQ(apply(&C1, &A), 0);
	}
	config_init(&C2);
	CHECK_EQ(cfile(FULL_FILE), 0);
	for (size_t i = 0; i < NACTS; i++)
		CHECK_EQ(apply(&C2, &ACTS[i]), 0);
	char *j1 = vm_config_json(&C1), *j2 = vm_config_json(&C2);
	CHECK_STR(j1, j2);
	/* GET /vm/config is itself a config file that gives the same config */
	config_init(&C3);
	CHECK_EQ(cfile(j1), 0);
	for (size_t i = 0; i < NACTS; i++)
		CHECK_EQ(apply(&C3, &ACTS[i]), 0);
	char *j3 = vm_config_json(&C3);
	CHECK_STR(j1, j3);
	free(j1);
	free(j2);
	free(j3);
	free(ACTS);
	ACTS = NULL;
}

TEST(config_file_firecracker_dump)
{
	/* what Firecracker's GET /vm/config prints, nulls included */
	const char *dump =
		"{\"balloon\":null,\"drives\":[{\"drive_id\":\"rootfs\",\"partuuid\":null,\"is_root_device\":true,"
		"\"cache_type\":\"Unsafe\",\"is_read_only\":false,\"path_on_host\":\"/r\",\"rate_limiter\":null,"
		"\"io_engine\":\"Sync\",\"socket\":null}],\"boot-source\":{\"kernel_image_path\":\"/k\","
		"\"initrd_path\":null,\"boot_args\":\"console=ttyS0\"},\"cpu-config\":null,\"logger\":null,"
		"\"machine-config\":{\"vcpu_count\":1,\"mem_size_mib\":128,\"smt\":false,\"cpu_template\":null,"
		"\"track_dirty_pages\":false,\"huge_pages\":\"None\"},\"metrics\":null,\"mmds-config\":null,"
		"\"network-interfaces\":[],\"vsock\":null,\"entropy\":null,\"pmem\":[],\"memory-hotplug\":null}";
	CHECK_EQ(cfile(dump), 0);
	CHECK_EQ(NACTS, 3);
	if (NACTS == 3) {
		CHECK_EQ(ACTS[0].kind, ACT_PUT_MACHINE_CONFIG);
		CHECK_EQ(ACTS[1].kind, ACT_PUT_BOOT_SOURCE);
		CHECK(!ACTS[1].u.boot.has_initrd);
		CHECK_EQ(ACTS[2].kind, ACT_PUT_DRIVE);
		CHECK_STR(ACTS[2].u.disk.partuuid, "");
	}
	free(ACTS);
	ACTS = NULL;
}

TEST(snapshot_create)
{
	ACCEPTED("PUT", "/snapshot/create", "{\"snapshot_path\": \"/s/state\", \"mem_file_path\": \"/s/mem\"}",
		 ACT_SNAPSHOT_CREATE);
	CHECK_STR(A.u.snap.state_path, "/s/state");
	CHECK_STR(A.u.snap.mem_path, "/s/mem");
	CHECK(!A.u.snap.diff);
	ACCEPTED("PUT", "/snapshot/create",
		 "{\"snapshot_path\": \"a\", \"mem_file_path\": \"b\", \"snapshot_type\": \"Full\"}",
		 ACT_SNAPSHOT_CREATE);
	CHECK(!A.u.snap.diff);
	/* whether a Diff is allowed (dirty tracking) is decided by the VM */
	ACCEPTED("PUT", "/snapshot/create",
		 "{\"snapshot_path\": \"a\", \"mem_file_path\": \"b\", \"snapshot_type\": \"Diff\"}",
		 ACT_SNAPSHOT_CREATE);
	CHECK(A.u.snap.diff);
	REFUSED("PUT", "/snapshot/create",
		"{\"snapshot_path\": \"a\", \"mem_file_path\": \"b\", \"snapshot_type\": \"diff\"}",
		"snapshot_type");
	REFUSED("PUT", "/snapshot/create",
		"{\"snapshot_path\": \"a\", \"mem_file_path\": \"b\", \"snapshot_type\": \"full\"}",
		"snapshot_type");
	REFUSED("PUT", "/snapshot/create", "{\"snapshot_path\": \"a\"}", "mem_file_path");
	REFUSED("PUT", "/snapshot/create", "{\"mem_file_path\": \"a\"}", "snapshot_path");
	REFUSED("PUT", "/snapshot/create", "{\"snapshot_path\": \"a\", \"mem_file_path\": \"a\"}",
		"same file");
	REFUSED("PUT", "/snapshot/create", "{\"snapshot_path\": \"\", \"mem_file_path\": \"a\"}",
		"empty");
	REFUSED("PUT", "/snapshot/create",
		"{\"snapshot_path\": \"a\", \"mem_file_path\": \"b\", \"version\": \"1.0\"}",
		"unknown field `version`");
	REFUSED("PUT", "/snapshot/create", "{\"snapshot_path\": 1, \"mem_file_path\": \"b\"}",
		"expected a string");
	REFUSED("GET", "/snapshot/create", NULL, "Invalid request method and/or path");
}

TEST(snapshot_load)
{
	ACCEPTED("PUT", "/snapshot/load",
		 "{\"snapshot_path\": \"/s/state\", \"mem_backend\": {\"backend_type\": \"File\", "
		 "\"backend_path\": \"/s/mem\"}, \"resume_vm\": true, \"clock_realtime\": true, "
		 "\"track_dirty_pages\": true, \"network_overrides\": [{\"iface_id\": \"eth0\", "
		 "\"host_dev_name\": \"tap7\"}], \"vsock_override\": {\"uds_path\": \"/v.sock\"}, "
		 "\"huge_pages\": \"None\"}",
		 ACT_SNAPSHOT_LOAD);
	CHECK_STR(A.u.load.state_path, "/s/state");
	CHECK_STR(A.u.load.mem_path, "/s/mem");
	CHECK(A.u.load.resume_vm && A.u.load.clock_realtime && A.u.load.track_dirty_pages);
	CHECK_EQ(A.u.load.nnet, 1);
	CHECK_STR(A.u.load.net[0].iface, "eth0");
	CHECK_STR(A.u.load.net[0].tap, "tap7");
	CHECK(A.u.load.has_vsock_uds);
	CHECK_STR(A.u.load.vsock_uds, "/v.sock");
	/* the deprecated forms */
	ACCEPTED("PUT", "/snapshot/load",
		 "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"enable_diff_snapshots\": true}",
		 ACT_SNAPSHOT_LOAD);
	CHECK_STR(A.u.load.mem_path, "m");
	CHECK(A.u.load.track_dirty_pages && !A.u.load.resume_vm && !A.u.load.has_vsock_uds);
	REFUSED("PUT", "/snapshot/load", "{\"snapshot_path\": \"s\"}", "exactly one of");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"mem_backend\": "
		"{\"backend_type\": \"File\", \"backend_path\": \"m\"}}",
		"exactly one of");
	/* Uffd: the page-fault handler's socket */
	ACCEPTED("PUT", "/snapshot/load",
		 "{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": \"Uffd\", "
		 "\"backend_path\": \"/uffd.sock\"}, \"resume_vm\": true}",
		 ACT_SNAPSHOT_LOAD);
	CHECK(A.u.load.uffd && A.u.load.resume_vm);
	CHECK_STR(A.u.load.mem_path, "/uffd.sock");
	ACCEPTED("PUT", "/snapshot/load",
		 "{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": \"File\", "
		 "\"backend_path\": \"/m\"}}",
		 ACT_SNAPSHOT_LOAD);
	CHECK(!A.u.load.uffd);
	{
		/* a socket path fits sun_path (107 bytes and the NUL) */
		char body[400], p[200];
		memset(p, 'p', sizeof(p));
		p[0] = '/';
		p[107] = 0;
		snprintf(body, sizeof(body),
			 "{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": "
			 "\"Uffd\", \"backend_path\": \"%s\"}}",
			 p);
		ACCEPTED("PUT", "/snapshot/load", body, ACT_SNAPSHOT_LOAD);
		CHECK_EQ(strlen(A.u.load.mem_path), 107);
		p[107] = 'p';
		p[108] = 0;
		snprintf(body, sizeof(body),
			 "{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": "
			 "\"Uffd\", \"backend_path\": \"%s\"}}",
			 p);
		REFUSED("PUT", "/snapshot/load", body, "at most 107 bytes");
	}
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": \"Uffd\", "
		"\"backend_path\": \"\"}}",
		"must not be empty");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": \"Uffd\"}}",
		"backend_path");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": \"uffd\", "
		"\"backend_path\": \"/u.sock\"}}",
		"backend_type");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"mem_backend\": "
		"{\"backend_type\": \"Uffd\", \"backend_path\": \"/u.sock\"}}",
		"exactly one of");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": \"Disk\", "
		"\"backend_path\": \"m\"}}",
		"backend_type");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_path\": \"m\"}}",
		"backend_type");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": \"File\", "
		"\"backend_path\": \"m\", \"x\": 1}}",
		"unknown field `mem_backend.x`");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"huge_pages\": \"2M\"}",
		"huge pages");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"network_overrides\": {}}",
		"expected an array");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"network_overrides\": "
		"[{\"iface_id\": \"eth0\"}]}",
		"host_dev_name");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"network_overrides\": "
		"[{\"iface_id\": \"a b\", \"host_dev_name\": \"t\"}]}",
		"network interface");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"network_overrides\": "
		"[{\"iface_id\": \"e\", \"host_dev_name\": \"t\"}, {\"iface_id\": \"e\", "
		"\"host_dev_name\": \"u\"}]}",
		"twice");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"network_overrides\": "
		"[{\"iface_id\": \"e\", \"host_dev_name\": \"a-name-longer-than-ifnamsiz\"}]}",
		"longer than");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"vsock_override\": {}}",
		"uds_path");
	REFUSED("PUT", "/snapshot/load",
		"{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"resume_vm\": \"yes\"}",
		"expected a boolean");
}

/* ---- live migration (visor's own endpoints) --------------------------------------------- */

TEST(migration_routes)
{
	ACCEPTED("GET", "/migration", NULL, ACT_MIGRATION_GET);
	ACCEPTED("GET", "/migration/", NULL, ACT_MIGRATION_GET);
	ACCEPTED("PATCH", "/migration", "{\"state\": \"Cancelled\"}", ACT_MIGRATION_CANCEL);
	REFUSED("PUT", "/migration", "{}", "Invalid request method and/or path: PUT /migration.");
	REFUSED("GET", "/migration/send", NULL, "Invalid request method and/or path");
	REFUSED("PATCH", "/migration/send", "{}", "Invalid request method and/or path");
	REFUSED("GET", "/migration/receive", NULL, "Invalid request method and/or path");
	REFUSED("PUT", "/migration/status", "{}", "Invalid request method and/or path");
	REFUSED("PUT", "/migration/send/x", "{}", "Invalid request method and/or path");
	REFUSED("GET", "/migration", "{}", "GET request cannot have a body.");
	REFUSED("PUT", "/migration/send", NULL, "Empty PUT request.");
	REFUSED("PUT", "/migration/receive", "", "Empty PUT request.");
	REFUSED("PATCH", "/migration", NULL, "Empty PATCH request.");
}

TEST(migration_send_accepted)
{
	/* the defaults */
	ACCEPTED("PUT", "/migration/send", "{\"url\": \"unix:/run/dst.sock\"}", ACT_MIGRATION_SEND);
	CHECK_STR(A.u.mig_send.url, "unix:/run/dst.sock");
	CHECK_EQ(A.u.mig_send.downtime_limit_ms, MIG_DEFAULT_DOWNTIME_MS);
	CHECK_EQ(A.u.mig_send.downtime_limit_ms, 50);
	CHECK_EQ(A.u.mig_send.max_bandwidth_mib, 0);
	CHECK_EQ(A.u.mig_send.timeout_s, MIG_DEFAULT_TIMEOUT_S);
	CHECK_EQ(A.u.mig_send.timeout_s, 3600);
	CHECK_EQ(A.u.mig_send.mode, MIGP_PRECOPY);
	CHECK(!A.u.mig_send.verify);
	CHECK(!A.u.mig_send.tls.enabled);
	ACCEPTED("PUT", "/migration/send", "{\"url\": \"unix:/d\", \"verify\": true, \"mode\": \"auto\"}",
		 ACT_MIGRATION_SEND);
	CHECK(A.u.mig_send.verify);
	/* every field */
	ACCEPTED("PUT", "/migration/send",
		 "{\"url\": \"tcp:10.0.0.2:4444\", \"downtime_limit_ms\": 20, \"max_bandwidth_mib\": 1000, "
		 "\"timeout_s\": 600, \"mode\": \"auto\", \"tls\": {\"cert\": \"/pki/src.pem\", "
		 "\"key\": \"/pki/src.key\", \"ca\": \"/pki/ca.pem\", \"server_name\": \"dst.example\"}}",
		 ACT_MIGRATION_SEND);
	const struct mig_send_params *p = &A.u.mig_send;
	CHECK_STR(p->url, "tcp:10.0.0.2:4444");
	CHECK_EQ(p->downtime_limit_ms, 20);
	CHECK_EQ(p->max_bandwidth_mib, 1000);
	CHECK_EQ(p->timeout_s, 600);
	CHECK_EQ(p->mode, MIGP_AUTO);
	CHECK(p->tls.enabled);
	CHECK_STR(p->tls.cert, "/pki/src.pem");
	CHECK_STR(p->tls.key, "/pki/src.key");
	CHECK_STR(p->tls.ca, "/pki/ca.pem");
	CHECK_STR(p->tls.server_name, "dst.example");
	/* each mode, by its name */
	static const struct {
		const char *name;
		enum mig_mode_param mode;
	} modes[] = {{"precopy", MIGP_PRECOPY}, {"postcopy", MIGP_POSTCOPY}, {"auto", MIGP_AUTO},
		     {"local", MIGP_LOCAL}};
	for (size_t i = 0; i < 4; i++) {
		ACCEPTED("PUT", "/migration/send",
			 fmt("{\"url\": \"unix:s\", \"mode\": \"%s\"}", modes[i].name), ACT_MIGRATION_SEND);
		CHECK_EQ(A.u.mig_send.mode, modes[i].mode);
		CHECK_STR(fc_mig_mode_name(modes[i].mode), modes[i].name);
		CHECK_EQ(fc_mig_mode_parse(modes[i].name), modes[i].mode);
	}
	/* the ends of the ranges; null is absent (the default) */
	ACCEPTED("PUT", "/migration/send",
		 "{\"url\": \"tcp:h:1\", \"downtime_limit_ms\": 1, \"timeout_s\": 1, \"max_bandwidth_mib\": 0}",
		 ACT_MIGRATION_SEND);
	CHECK_EQ(A.u.mig_send.downtime_limit_ms, 1);
	CHECK_EQ(A.u.mig_send.timeout_s, 1);
	ACCEPTED("PUT", "/migration/send",
		 "{\"url\": \"tcp:h:1\", \"downtime_limit_ms\": 60000, \"timeout_s\": 86400, "
		 "\"max_bandwidth_mib\": 1048576}",
		 ACT_MIGRATION_SEND);
	CHECK_EQ(A.u.mig_send.downtime_limit_ms, FC_MIG_MAX_DOWNTIME_MS);
	CHECK_EQ(A.u.mig_send.timeout_s, FC_MIG_MAX_TIMEOUT_S);
	CHECK_EQ(A.u.mig_send.max_bandwidth_mib, FC_MIG_MAX_BANDWIDTH_MIB);
	ACCEPTED("PUT", "/migration/send",
		 "{\"url\": \"unix:s\", \"downtime_limit_ms\": null, \"mode\": null, \"tls\": null}",
		 ACT_MIGRATION_SEND);
	CHECK_EQ(A.u.mig_send.downtime_limit_ms, 50);
	CHECK_EQ(A.u.mig_send.mode, MIGP_PRECOPY);
	CHECK(!A.u.mig_send.tls.enabled);
	/* tls without server_name (the url's host is checked) */
	ACCEPTED("PUT", "/migration/send",
		 "{\"url\": \"tcp:10.0.0.2:1\", \"tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"a\"}}",
		 ACT_MIGRATION_SEND);
	CHECK(A.u.mig_send.tls.enabled);
	CHECK_STR(A.u.mig_send.tls.server_name, "");
	/* the longest url that fits */
	ACCEPTED("PUT", "/migration/send", fmt("{\"url\": \"unix:%s\"}", rep('u', MIG_URL_MAX - 6)),
		 ACT_MIGRATION_SEND);
	CHECK_EQ(strlen(A.u.mig_send.url), MIG_URL_MAX - 1);
}

TEST(migration_send_refused)
{
	static const struct {
		const char *body, *want;
	} bad[] = {
		{"{}", "missing field `url`"},
		{"[]", "expected an object"},
		{"{\"url\": 5}", "invalid type for `url`: expected a string"},
		{"{\"url\": \"\"}", "invalid value for `url`: expected `unix:PATH` or `tcp:HOST:PORT`"},
		{"{\"url\": \"unix:\"}", "expected `unix:PATH` or `tcp:HOST:PORT`, found `unix:`"},
		{"{\"url\": \"tcp:\"}", "found `tcp:`"},
		{"{\"url\": \"/run/dst.sock\"}", "found `/run/dst.sock`"},
		{"{\"url\": \"http://h:1\"}", "invalid value for `url`"},
		{"{\"url\": \"UNIX:/s\"}", "invalid value for `url`"},
		{"{\"url\": \"unix:/s\", \"bogus\": 1}", "unknown field `bogus`"},
		{"{\"url\": \"unix:/s\", \"url\": \"unix:/t\"}", "duplicate field `url`"},
		{"{\"url\": \"unix:/s\", \"downtime_limit_ms\": 0}",
		 "invalid value for `downtime_limit_ms`: expected an integer from 1 to 60000, found 0"},
		{"{\"url\": \"unix:/s\", \"downtime_limit_ms\": 60001}", "from 1 to 60000, found 60001"},
		{"{\"url\": \"unix:/s\", \"downtime_limit_ms\": -5}", "found -5"},
		{"{\"url\": \"unix:/s\", \"downtime_limit_ms\": 1.5}", "found 1.5"},
		{"{\"url\": \"unix:/s\", \"downtime_limit_ms\": \"50\"}", "invalid type for `downtime_limit_ms`"},
		{"{\"url\": \"unix:/s\", \"timeout_s\": 0}", "`timeout_s`: expected an integer from 1 to 86400"},
		{"{\"url\": \"unix:/s\", \"timeout_s\": 86401}", "found 86401"},
		{"{\"url\": \"unix:/s\", \"max_bandwidth_mib\": 1048577}",
		 "`max_bandwidth_mib`: expected an integer from 0 to 1048576"},
		{"{\"url\": \"unix:/s\", \"max_bandwidth_mib\": 18446744073709551616}", "out of range"},
		{"{\"url\": \"unix:/s\", \"mode\": \"Precopy\"}",
		 "invalid value for `mode`: expected one of `precopy`, `postcopy`, `auto`, `local`, found `Precopy`"},
		{"{\"url\": \"unix:/s\", \"mode\": \"fast\"}", "found `fast`"},
		{"{\"url\": \"unix:/s\", \"mode\": 1}", "invalid type for `mode`"},
		{"{\"url\": \"tcp:10.0.0.2:4444\", \"mode\": \"local\"}",
		 "`local` hands guest memory over a Unix socket: it needs a `unix:PATH` url"},
		{"{\"url\": \"unix:/s\", \"tls\": true}", "invalid type for `tls`: expected an object"},
		{"{\"url\": \"unix:/s\", \"verify\": 1}", "invalid type for `verify`"},
		{"{\"url\": \"unix:/s\", \"verify\": true, \"mode\": \"postcopy\"}",
		 "invalid value for `verify`: it compares memory after pre-copy's last pass, which mode "
		 "`postcopy` does not have"},
		{"{\"url\": \"unix:/s\", \"verify\": true, \"mode\": \"local\"}", "mode `local` does not have"},
		{"{\"url\": \"unix:/s\", \"tls\": {}}", "missing field `tls.cert`"},
		{"{\"url\": \"unix:/s\", \"tls\": {\"cert\": \"c\", \"key\": \"k\"}}", "missing field `tls.ca`"},
		{"{\"url\": \"unix:/s\", \"tls\": {\"cert\": \"c\", \"ca\": \"a\"}}", "missing field `tls.key`"},
		{"{\"url\": \"unix:/s\", \"tls\": {\"cert\": \"\", \"key\": \"k\", \"ca\": \"a\"}}",
		 "invalid value for `tls.cert`: must not be empty"},
		{"{\"url\": \"unix:/s\", \"tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"\"}}",
		 "invalid value for `tls.ca`: must not be empty"},
		{"{\"url\": \"unix:/s\", \"tls\": {\"cert\": \"c\", \"key\": null, \"ca\": \"a\"}}",
		 "invalid type for `tls.key`: expected a string, found null"},
		{"{\"url\": \"unix:/s\", \"tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"a\", "
		 "\"server_name\": \"\"}}",
		 "invalid value for `tls.server_name`: must not be empty"},
		{"{\"url\": \"unix:/s\", \"tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"a\", "
		 "\"verify\": false}}",
		 "unknown field `tls.verify`"},
		{"{\"url\": \"unix:/s\", \"tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"a\", "
		 "\"server_name\": 7}}",
		 "invalid type for `tls.server_name`"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		REFUSED("PUT", "/migration/send", bad[i].body, bad[i].want);
		if (!strstr(F, bad[i].want))
			printf("  case %zu\n", i);
	}
	/* too long for visor's arrays: refused, never truncated */
	REFUSED("PUT", "/migration/send", fmt("{\"url\": \"unix:%s\"}", rep('u', MIG_URL_MAX - 5)),
		"invalid value for `url`: longer than 299 bytes");
	REFUSED("PUT", "/migration/send",
		fmt("{\"url\": \"unix:s\", \"tls\": {\"cert\": \"%s\", \"key\": \"k\", \"ca\": \"a\"}}",
		    rep('c', CONFIG_PATH_MAX)),
		"invalid value for `tls.cert`: longer than 4095 bytes");
	REFUSED("PUT", "/migration/send",
		fmt("{\"url\": \"unix:s\", \"tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"a\", "
		    "\"server_name\": \"%s\"}}",
		    rep('n', 256)),
		"invalid value for `tls.server_name`: longer than 255 bytes");
	/* a url with control characters is quoted on one line */
	REFUSED("PUT", "/migration/send", "{\"url\": \"x\\ny\"}", "found `x?y`");
}

TEST(migration_receive)
{
	ACCEPTED("PUT", "/migration/receive", "{\"url\": \"tcp:0.0.0.0:4444\"}", ACT_MIGRATION_RECEIVE);
	CHECK_STR(A.u.mig_recv.url, "tcp:0.0.0.0:4444");
	CHECK_EQ(A.u.mig_recv.timeout_s, MIG_DEFAULT_TIMEOUT_S);
	CHECK(!A.u.mig_recv.tls.enabled);
	ACCEPTED("PUT", "/migration/receive",
		 "{\"url\": \"unix:/run/in.sock\", \"timeout_s\": 30, \"tls\": {\"cert\": \"/d.pem\", "
		 "\"key\": \"/d.key\", \"ca\": \"/ca.pem\"}}",
		 ACT_MIGRATION_RECEIVE);
	CHECK_EQ(A.u.mig_recv.timeout_s, 30);
	CHECK(A.u.mig_recv.tls.enabled);
	CHECK_STR(A.u.mig_recv.tls.cert, "/d.pem");
	CHECK_STR(A.u.mig_recv.tls.key, "/d.key");
	CHECK_STR(A.u.mig_recv.tls.ca, "/ca.pem");
	REFUSED("PUT", "/migration/receive", "{}", "missing field `url`");
	REFUSED("PUT", "/migration/receive", "{\"url\": \"udp:1\"}", "invalid value for `url`");
	REFUSED("PUT", "/migration/receive", "{\"url\": \"unix:/s\", \"timeout_s\": 0}", "from 1 to 86400");
	/* the sender's fields are not the receiver's */
	REFUSED("PUT", "/migration/receive", "{\"url\": \"unix:/s\", \"mode\": \"precopy\"}",
		"unknown field `mode`, expected one of `url`, `timeout_s`, `tls`");
	REFUSED("PUT", "/migration/receive", "{\"url\": \"unix:/s\", \"downtime_limit_ms\": 50}",
		"unknown field `downtime_limit_ms`");
	REFUSED("PUT", "/migration/receive",
		"{\"url\": \"unix:/s\", \"tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"a\", "
		"\"server_name\": \"n\"}}",
		"`tls.server_name`: the destination does not connect");
	REFUSED("PUT", "/migration/receive", "{\"url\": \"unix:/s\", \"tls\": {\"cert\": \"c\"}}",
		"missing field `tls.key`");
}

TEST(migration_cancel)
{
	ACCEPTED("PATCH", "/migration", "{\"state\": \"Cancelled\"}", ACT_MIGRATION_CANCEL);
	REFUSED("PATCH", "/migration", "{}", "missing field `state`");
	REFUSED("PATCH", "/migration", "{\"state\": \"Completed\"}",
		"invalid value for `state`: expected one of `Cancelled`, found `Completed`");
	REFUSED("PATCH", "/migration", "{\"state\": \"cancelled\"}", "found `cancelled`");
	REFUSED("PATCH", "/migration", "{\"state\": \"Active\"}", "expected one of `Cancelled`");
	REFUSED("PATCH", "/migration", "{\"state\": null}", "invalid type for `state`");
	REFUSED("PATCH", "/migration", "{\"state\": \"Cancelled\", \"force\": true}", "unknown field `force`");
}

TEST(migration_status_reply)
{
	memset(&R, 0, sizeof(R));
	/* a fresh process: state None, no url, no error */
	struct json_object *o = reply(ACT_MIGRATION_GET, 200);
	CHECK(o != NULL);
	CHECK_STR(jstr(o, "state"), "None");
	CHECK_EQ(jbool(o, "incoming"), 0);
	CHECK_STR(jstr(o, "mode"), "precopy");
	CHECK(jget(o, "url") == NULL);
	CHECK(jget(o, "error") == NULL);
	CHECK_EQ(jint(o, "pass"), 0);
	CHECK_EQ(jint(o, "downtime_ms"), 0);
	CHECK_STR(jstr(o, "dirty_log"), "none"); /* no VM yet */
	CHECK_EQ(jint(o, "dirty_ring_entries"), 0);
	CHECK_EQ(jint(o, "dirty_ring_full_exits"), 0);
	CHECK_EQ(json_object_object_length(o), 19);
	json_object_put(o);

	/* every field, each with its own value */
	struct mig_status *m = &R.mig;
	m->state = MIGS_ACTIVE;
	m->incoming = true;
	m->mode = MIGP_POSTCOPY;
	snprintf(m->url, sizeof(m->url), "tcp:[fe80::1]:4444");
	m->pass = 3;
	m->bytes = 1ULL << 40;
	m->pages_data = 11;
	m->pages_zero = 12;
	m->remaining_bytes = 13;
	m->mem_bytes = 14;
	m->dirty_rate = 15;
	m->bandwidth = 16;
	m->expected_downtime_ms = 17;
	m->downtime_limit_ms = 18;
	m->throttle_pct = 19;
	m->elapsed_ms = 20;
	m->downtime_ms = 21;
	m->dirty_log = MIG_DIRTY_RING;
	m->dirty_ring_entries = 256;
	m->dirty_ring_full_exits = 22;
	snprintf(m->error, sizeof(m->error), "peer said \"no\"\n");
	o = reply(ACT_MIGRATION_GET, 200);
	CHECK(o != NULL);
	CHECK_STR(jstr(o, "state"), "Active");
	CHECK_EQ(jbool(o, "incoming"), 1);
	CHECK_STR(jstr(o, "mode"), "postcopy");
	CHECK_STR(jstr(o, "url"), "tcp:[fe80::1]:4444");
	CHECK_EQ(jint(o, "pass"), 3);
	CHECK_EQ(jint(o, "bytes"), 1LL << 40);
	CHECK_EQ(jint(o, "pages_data"), 11);
	CHECK_EQ(jint(o, "pages_zero"), 12);
	CHECK_EQ(jint(o, "remaining_bytes"), 13);
	CHECK_EQ(jint(o, "mem_bytes"), 14);
	CHECK_EQ(jint(o, "dirty_rate_bps"), 15);
	CHECK_EQ(jint(o, "bandwidth_bps"), 16);
	CHECK_EQ(jint(o, "expected_downtime_ms"), 17);
	CHECK_EQ(jint(o, "downtime_limit_ms"), 18);
	CHECK_EQ(jint(o, "throttle_pct"), 19);
	CHECK_EQ(jint(o, "elapsed_ms"), 20);
	CHECK_EQ(jint(o, "downtime_ms"), 21);
	CHECK_STR(jstr(o, "dirty_log"), "ring");
	CHECK_EQ(jint(o, "dirty_ring_entries"), 256);
	CHECK_EQ(jint(o, "dirty_ring_full_exits"), 22);
	CHECK_STR(jstr(o, "error"), "peer said \"no\"\n");
	CHECK_EQ(json_object_object_length(o), 21);
	json_object_put(o);
	m->dirty_log = MIG_DIRTY_BITMAP;
	o = reply(ACT_MIGRATION_GET, 200);
	CHECK_STR(jstr(o, "dirty_log"), "bitmap");
	json_object_put(o);

	/* every state by its name, and back */
	static const char *const names[] = {"None",	 "Setup",     "Active", "Switchover",
					    "Postcopy", "Completed", "Failed", "Cancelled"};
	for (int i = 0; i < 8; i++) {
		m->state = (enum mig_state_kind)i;
		o = reply(ACT_MIGRATION_GET, 200);
		CHECK_STR(jstr(o, "state"), names[i]);
		json_object_put(o);
		CHECK_STR(fc_mig_state_name((enum mig_state_kind)i), names[i]);
		CHECK_EQ(fc_mig_state_parse(names[i]), i);
	}
	CHECK_EQ(fc_mig_state_parse("none"), -1);
	CHECK_EQ(fc_mig_mode_parse("Precopy"), -1);
	/* a value the enum does not have still makes a valid document */
	m->state = (enum mig_state_kind)99;
	m->mode = (enum mig_mode_param)99;
	o = reply(ACT_MIGRATION_GET, 200);
	CHECK_STR(jstr(o, "state"), "None");
	CHECK_STR(jstr(o, "mode"), "precopy");
	json_object_put(o);
	/* bytes that are not UTF-8 in url and error: still valid JSON */
	m->url[0] = (char)0xff;
	memset(m->error, 0xc3, sizeof(m->error));
	o = reply(ACT_MIGRATION_GET, 200);
	CHECK(o != NULL);
	json_object_put(o);
	/* a refusal is a fault body */
	memset(&R, 0, sizeof(R));
	snprintf(R.fault, sizeof(R.fault), "no migration is in flight");
	o = reply(ACT_MIGRATION_CANCEL, 400);
	CHECK_STR(jstr(o, "fault_message"), "no migration is in flight");
	json_object_put(o);
	/* PUT/PATCH answer 204 without a body */
	size_t len = 9;
	struct vm_action a = {.kind = ACT_MIGRATION_SEND};
	R.status = 204;
	CHECK(fc_format_reply(&a, &R, &len) == NULL);
	CHECK_EQ(len, 0);
}

TEST(migration_url_check)
{
	char err[128];
	CHECK_EQ(fc_mig_url_check("unix:/x", err, sizeof(err)), 0);
	CHECK_EQ(fc_mig_url_check("unix:rel", err, sizeof(err)), 0);
	CHECK_EQ(fc_mig_url_check("tcp:1.2.3.4:5", err, sizeof(err)), 0);
	CHECK_EQ(fc_mig_url_check("tcp:", err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "expected `unix:PATH` or `tcp:HOST:PORT`, found `tcp:`");
	CHECK_EQ(fc_mig_url_check("", err, sizeof(err)), -EINVAL);
	CHECK_EQ(fc_mig_url_check(rep('x', 500), err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "...") != NULL);
	CHECK_EQ(fc_mig_url_check("file:/x", NULL, 0), -EINVAL);
}

TEST_MAIN()
