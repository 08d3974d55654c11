# SPDX-License-Identifier: MIT
"""visor's own live-migration endpoints (docs/api.md, "Live migration"),
without KVM: request bodies (refused with Firecracker-style errors, nothing
changed), methods and paths, the status object, the state rules that hold
before a VM runs, and a destination waiting (PUT /migration/receive,
`visor run --incoming`) that gives up at its timeout.

The checks that need the migration engine (GET /migration answering, the
destination listening) are skipped, with the reason, while the endpoints
still answer "live migration is not built yet"."""
import os
import socket
import stat
import time

import fixtures
from harness import Client, is_204, is_error, short, test
from suite_bodies import refused_unchanged
from suite_process import one_error

NOT_BUILT = "live migration is not built yet"
STATES = ["None", "Setup", "Active", "Switchover", "Postcopy", "Completed", "Failed", "Cancelled"]
MODES = ["precopy", "postcopy", "auto", "local"]
COUNTERS = ["pass", "bytes", "pages_data", "pages_zero", "remaining_bytes", "mem_bytes",
            "dirty_rate_bps", "bandwidth_bps", "expected_downtime_ms", "downtime_limit_ms",
            "throttle_pct", "elapsed_ms", "downtime_ms", "dirty_ring_entries",
            "dirty_ring_full_exits"]
DIRTY_LOGS = ["none", "bitmap", "ring"]
TLS = {"cert": "/pki/src.pem", "key": "/pki/src.key", "ca": "/pki/ca.pem"}


def engine_missing(r):
    return (r.status == 400 and isinstance(r.json, dict) and
            NOT_BUILT in str(r.json.get("fault_message")))


def skip_engine(ctx, what):
    ctx.skip(what, "the migration engine is not built yet (the endpoints answer %r)" % NOT_BUILT)


def status_errors(obj):
    """What is wrong with a GET /migration body (docs/api.md): a list."""
    if not isinstance(obj, dict):
        return ["not an object: %s" % short(obj)]
    out = []
    if obj.get("state") not in STATES:
        out.append("state %r is not one of %s" % (obj.get("state"), STATES))
    if not isinstance(obj.get("incoming"), bool):
        out.append("incoming is not a boolean: %r" % obj.get("incoming"))
    if obj.get("mode") not in MODES:
        out.append("mode %r is not one of %s" % (obj.get("mode"), MODES))
    for k in COUNTERS:
        v = obj.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            out.append("%s is not an unsigned integer: %r" % (k, v))
    if obj.get("dirty_log") not in DIRTY_LOGS:
        out.append("dirty_log %r is not one of %s" % (obj.get("dirty_log"), DIRTY_LOGS))
    elif (obj.get("dirty_log") == "ring") != (obj.get("dirty_ring_entries") != 0):
        out.append("dirty_log %r with dirty_ring_entries %r" % (obj.get("dirty_log"),
                                                              obj.get("dirty_ring_entries")))
    for k in ("url", "error"):
        if k in obj and (not isinstance(obj[k], str) or not obj[k]):
            out.append("%s is present but not a non-empty string: %r" % (k, obj[k]))
    extra = set(obj) - set(COUNTERS) - {"state", "incoming", "mode", "url", "error", "dirty_log"}
    if extra:
        out.append("unknown fields %s" % sorted(extra))
    return out


def is_status(r, state=None):
    if r.status != 200:
        return False, "expected 200: %s" % r
    if "application/json" not in (r.header("Content-Type") or ""):
        return False, "Content-Type is not application/json: %s" % r
    errs = status_errors(r.json)
    if state and not errs and r.json["state"] != state:
        errs = ["state %r, expected %r" % (r.json["state"], state)]
    return (not errs, "; ".join(errs) + ": %s" % r)


def bad_send_bodies(ctx):
    url = "unix:" + ctx.path("dst.sock")
    ok = {"url": url}
    out = [
        ("no url", {}, r"missing field `url`"),
        ("url not a string", {"url": 7}, r"invalid type for `url`"),
        ("url empty", {"url": ""}, r"unix:PATH.*tcp:HOST:PORT"),
        ("url without a scheme", {"url": ctx.path("dst.sock")}, r"unix:PATH.*tcp:HOST:PORT"),
        ("url 'unix:' alone", {"url": "unix:"}, r"found `unix:`"),
        ("url 'tcp:' alone", {"url": "tcp:"}, r"found `tcp:`"),
        ("url of another scheme", {"url": "http://10.0.0.2:4444"}, r"invalid value for `url`"),
        ("url of 300 bytes", {"url": "unix:/" + "u" * 294}, r"longer than 299 bytes"),
        ("unknown field", dict(ok, bogus=1), r"unknown field `bogus`"),
        ("downtime_limit_ms 0", dict(ok, downtime_limit_ms=0), r"from 1 to 60000"),
        ("downtime_limit_ms 60001", dict(ok, downtime_limit_ms=60001), r"from 1 to 60000"),
        ("downtime_limit_ms 2^32 + 50", dict(ok, downtime_limit_ms=2 ** 32 + 50), r"from 1 to 60000"),
        ("downtime_limit_ms -1", dict(ok, downtime_limit_ms=-1), r"downtime_limit_ms"),
        ("downtime_limit_ms 1.5", dict(ok, downtime_limit_ms=1.5), r"downtime_limit_ms"),
        ("downtime_limit_ms a string", dict(ok, downtime_limit_ms="50"), r"invalid type"),
        ("max_bandwidth_mib 2^20 + 1", dict(ok, max_bandwidth_mib=2 ** 20 + 1), r"from 0 to 1048576"),
        ("max_bandwidth_mib 2^64", dict(ok, max_bandwidth_mib=2 ** 64), r"out of range"),
        ("max_bandwidth_mib true", dict(ok, max_bandwidth_mib=True), r"invalid type"),
        ("timeout_s 0", dict(ok, timeout_s=0), r"from 1 to 86400"),
        ("timeout_s 86401", dict(ok, timeout_s=86401), r"from 1 to 86400"),
        ("mode Precopy", dict(ok, mode="Precopy"), r"expected one of `precopy`"),
        ("mode fast", dict(ok, mode="fast"), r"found `fast`"),
        ("mode 1", dict(ok, mode=1), r"invalid type for `mode`"),
        ("mode local over tcp", {"url": "tcp:10.0.0.2:4444", "mode": "local"}, r"unix:PATH"),
        ("tls not an object", dict(ok, tls="on"), r"invalid type for `tls`"),
        ("tls empty", dict(ok, tls={}), r"missing field `tls.cert`"),
        ("tls without ca", dict(ok, tls={"cert": "c", "key": "k"}), r"missing field `tls.ca`"),
        ("tls with an empty key", dict(ok, tls=dict(TLS, key="")), r"`tls.key`: must not be empty"),
        ("tls with an unknown field", dict(ok, tls=dict(TLS, verify=False)),
         r"unknown field `tls.verify`"),
        ("tls with an empty server_name", dict(ok, tls=dict(TLS, server_name="")),
         r"`tls.server_name`: must not be empty"),
    ]
    return out


@test("migration: invalid bodies")
def invalid_bodies(ctx):
    """Every malformed /migration request is 400 with an Error body naming
    the field, and changes nothing (configuration and state)."""
    v = ctx.visor()
    base = v.config()
    cases = [("PUT", "/migration/send", label, body, mention)
             for label, body, mention in bad_send_bodies(ctx)]
    rurl = "unix:" + ctx.path("in.sock")
    cases += [
        ("PUT", "/migration/receive", "no url", {"timeout_s": 5}, r"missing field `url`"),
        ("PUT", "/migration/receive", "bad url", {"url": "in.sock"}, r"unix:PATH.*tcp:HOST:PORT"),
        ("PUT", "/migration/receive", "timeout_s 0", {"url": rurl, "timeout_s": 0},
         r"from 1 to 86400"),
        ("PUT", "/migration/receive", "a sender's field (mode)", {"url": rurl, "mode": "precopy"},
         r"unknown field `mode`"),
        ("PUT", "/migration/receive", "a sender's field (downtime_limit_ms)",
         {"url": rurl, "downtime_limit_ms": 50}, r"unknown field `downtime_limit_ms`"),
        ("PUT", "/migration/receive", "tls.server_name",
         {"url": rurl, "tls": dict(TLS, server_name="dst")}, r"tls.server_name"),
        ("PUT", "/migration/receive", "tls without cert", {"url": rurl, "tls": {"key": "k", "ca": "a"}},
         r"missing field `tls.cert`"),
        ("PATCH", "/migration", "state Completed", {"state": "Completed"},
         r"expected one of `Cancelled`"),
        ("PATCH", "/migration", "state cancelled (lower case)", {"state": "cancelled"},
         r"expected one of `Cancelled`"),
        ("PATCH", "/migration", "no state", {}, r"missing field `state`"),
        ("PATCH", "/migration", "an unknown field", {"state": "Cancelled", "force": True},
         r"unknown field `force`"),
    ]
    for method, path in (("PUT", "/migration/send"), ("PUT", "/migration/receive"),
                         ("PATCH", "/migration")):
        cases += [
            (method, path, "body is an array", [{"url": rurl}], r"expected an object"),
            (method, path, "body is null", None, r"expected an object"),
            (method, path, "empty body", b"", r"Empty (PUT|PATCH) request"),
            (method, path, "truncated JSON", b'{"url": "unix:/x"', r"invalid JSON"),
            (method, path, "duplicate field", b'{"url": "unix:/a", "url": "unix:/b"}',
             r"duplicate field `url`"),
        ]
    for method, path, label, body, mention in cases:
        refused_unchanged(ctx, v, base, "%s %s %s -> 400 /%s/, no change" % (method, path, label,
                                                                          mention),
                          method, path, body, mention)
    st = v.state()
    ctx.check("still 'Not started' after the refused requests", st == "Not started",
              "GET / state %r" % st)
    for f in ("dst.sock", "in.sock"):
        ctx.check("no socket file %s was created" % f, not os.path.exists(ctx.path(f)),
                  ctx.path(f))


@test("migration: methods and paths")
def methods_and_paths(ctx):
    v = ctx.visor()
    for method, path, body in (("PUT", "/migration", {"state": "Cancelled"}),
                               ("GET", "/migration/send", None),
                               ("PATCH", "/migration/send", {"url": "unix:/x"}),
                               ("GET", "/migration/receive", None),
                               ("PUT", "/migration/cancel", {"state": "Cancelled"}),
                               ("PUT", "/migrations/send", {"url": "unix:/x"})):
        r = v.request(method, path) if body is None else v.request(method, path, body)
        ctx.check("%s %s -> 400 Invalid request method and/or path" % (method, path),
                  *is_error(r, 400, r"Invalid request method and/or path"))
    r = v.request("GET", "/migration", raw=b"{}")
    ctx.check("GET /migration with a body -> 400 (Firecracker's words)",
              *is_error(r, 400, r"GET request cannot have a body"))


@test("migration: before start")
def before_start(ctx):
    """A fresh process has no migration (GET /migration: state None); send
    and cancel are refused before InstanceStart, receive after any
    configuration; each refusal changes nothing."""
    v = ctx.visor()
    r = v.get("/migration")
    if engine_missing(r):
        skip_engine(ctx, "GET /migration on a fresh process -> 200 state None")
    else:
        ok, d = is_status(r, "None")
        ctx.check("GET /migration on a fresh process -> 200, state None", ok, d)
        if ok:
            ctx.check("... not incoming, no url, no error, zero counters",
                      r.json["incoming"] is False and "url" not in r.json and
                      "error" not in r.json and all(r.json[k] == 0 for k in COUNTERS if
                                                    k != "downtime_limit_ms"), short(r.json))
    base = v.config()
    dst = ctx.path("dst.sock")
    refused_unchanged(ctx, v, base, "PUT /migration/send before start -> 400, no change", "PUT",
                      "/migration/send", {"url": "unix:" + dst})
    refused_unchanged(ctx, v, base, "PATCH /migration Cancelled with nothing in flight -> 400, "
                      "no change", "PATCH", "/migration", {"state": "Cancelled"})
    ctx.check("the send created no socket and connected nowhere", not os.path.exists(dst), dst)
    # a process that has been configured cannot become a destination
    eps = fixtures.by_name(fixtures.endpoints(ctx))
    fixtures.apply(ctx, v, eps["machine-config"], [])
    base = v.config()
    inc = ctx.path("in.sock")
    refused_unchanged(ctx, v, base, "PUT /migration/receive after PUT /machine-config -> 400, "
                      "no change", "PUT", "/migration/receive", {"url": "unix:" + inc})
    ctx.check("the refused receive listens nowhere", not os.path.exists(inc), inc)
    st = v.state()
    ctx.check("still 'Not started'", st == "Not started", "GET / state %r" % st)
    ctx.check("visor is still running", v.alive(), "exit %s" % v.proc.poll())


def listening(path):
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect(path)
            return True
        finally:
            s.close()
    except OSError:
        return False


def wait_status(v, pred, timeout=5.0):
    """GET /migration until @pred(json) holds: the last response."""
    deadline = time.monotonic() + timeout
    while True:
        r = v.get("/migration")
        if r.status == 200 and isinstance(r.json, dict) and pred(r.json):
            return r
        if time.monotonic() >= deadline:
            return r
        time.sleep(0.05)


@test("migration: a destination waiting")
def destination(ctx):
    """PUT /migration/receive on a fresh process listens on the url and
    reports itself incoming; it refuses configuration, a snapshot load and
    a second receive; with no source it gives up at timeout_s and exits non-zero
    (having started nothing).  `visor run --incoming` does the same."""
    v = ctx.visor()
    inc = ctx.path("in.sock")
    # a logger first is fine, as for PUT /snapshot/load
    r = v.put("/logger", {"log_path": ctx.path("dst.log"), "level": "Info"})
    ctx.check("PUT /logger on a fresh process -> 204", *is_204(r))
    r = v.put("/migration/receive", {"url": "unix:" + inc, "timeout_s": 2})
    if engine_missing(r):
        skip_engine(ctx, "PUT /migration/receive on a fresh process -> 204")
        return
    ctx.check("PUT /migration/receive on a fresh process -> 204", *is_204(r))
    r = wait_status(v, lambda j: j.get("state") != "None")
    ok, d = is_status(r)
    ctx.check("GET /migration -> 200 with a status object", ok, d)
    if ok:
        ctx.check("... incoming, state Setup, the url it listens on",
                  r.json["incoming"] is True and r.json["state"] == "Setup" and
                  r.json.get("url") == "unix:" + inc, short(r.json))
    ctx.check("it listens on %s" % inc, listening(inc), "no listener")
    base = v.config()
    refused_unchanged(ctx, v, base, "a second PUT /migration/receive -> 400, no change", "PUT",
                      "/migration/receive", {"url": "unix:" + ctx.path("in2.sock")})
    refused_unchanged(ctx, v, base, "PUT /machine-config while waiting -> 400, no change", "PUT",
                      "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128})
    refused_unchanged(ctx, v, base, "PUT /migration/send while waiting -> 400, no change", "PUT",
                      "/migration/send", {"url": "unix:" + ctx.path("x.sock")})
    v.expected_exit = True
    code = v.wait_exit(30.0)
    ctx.check("with no source it gives up at timeout_s and exits non-zero",
              code not in (None, 0), "exit status %r; stderr: %s" % (code, short(v.stderr(), 400)))
    ctx.check("... having started nothing (no guest output)", v.stdout() == "",
              short(v.stdout()))

    # a snapshot load would build a second machine beside the incoming
    # one: refused before it is tried (a failed load ends the process)
    v = ctx.visor()
    r = v.put("/migration/receive", {"url": "unix:" + ctx.path("in3.sock"), "timeout_s": 2})
    ctx.check("PUT /migration/receive on another fresh process -> 204", *is_204(r))
    r = v.put("/snapshot/load", {"snapshot_path": ctx.path("no.state"),
                                 "mem_backend": {"backend_type": "File",
                                                 "backend_path": ctx.path("no.mem")}})
    ok, d = is_error(r, 400)
    tried = ok and "Cannot load the snapshot" in r.json["fault_message"]
    ctx.check("PUT /snapshot/load while waiting -> 400, not tried",
              ok and not tried, d or "the load was tried (a failed load ends the process): %s" % r)
    v.expected_exit = True

    # the command line's way: visor run --incoming URL
    inc2 = ctx.path("run-in.sock")
    sock = ctx.path("run.sock")
    w = ctx.visor("run", "--incoming", "unix:" + inc2, "--incoming-timeout", "2", "--api-sock",
                  sock, sock=False, ready=False)
    w.sock = sock
    w.client = Client(sock)
    if not w.wait_ready():
        ctx.check("visor run --incoming serves its API", False, short(w.stderr(), 400))
        return
    r = wait_status(w, lambda j: j.get("state") != "None")
    ok, d = is_status(r)
    ctx.check("visor run --incoming: GET /migration -> incoming, Setup, its url",
              ok and r.json["incoming"] is True and r.json["state"] == "Setup" and
              r.json.get("url") == "unix:" + inc2, d if not ok else short(r.json))
    w.expected_exit = True
    code = w.wait_exit(30.0)
    ctx.check("visor run --incoming exits non-zero when no source came", code not in (None, 0),
              "exit status %r; stderr: %s" % (code, short(w.stderr(), 400)))


@test("migration: visor run --incoming refuses machine options")
def run_incoming_cli(ctx):
    for args, mention in (
            (["run", "--incoming", "unix:/d", "--kernel", ctx.kernel()], r"source defines the machine"),
            (["run", "--incoming", "unix:/d", "--memory", "512M"], r"source defines the machine"),
            (["run", "--incoming", "unix:/d", "--restore", ctx.tmp], r"--incoming and --restore"),
            (["run", "--incoming", "d.sock"], r"--incoming: expected `unix:PATH`"),
            (["run", "--incoming", "unix:/d", "--tls-cert", "c"], r"TLS needs"),
            (["run", "--incoming", "unix:/d", "--tls-cert", "c", "--tls-key", "k", "--tls-ca", "a",
              "--tls-server-name", "n"], r"--tls-server-name: only for `visor migrate`")):
        code, out, err = ctx.run(args)
        ctx.check("visor %s -> exit 1, one error /%s/" % (" ".join(args[1:]), mention),
                  *one_error(code, out, err, mention))
