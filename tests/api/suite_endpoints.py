# SPDX-License-Identifier: MIT
"""Every endpoint with a valid request: PUT/PATCH -> 204 without a body,
GET -> 200 with a body valid against the YAML, and what was set shows up
in GET /vm/config."""
import json
import shutil
import subprocess

import fixtures
from harness import is_200, is_204, is_error, short, spec, subset_diff, test


@test("fresh VM")
def fresh(ctx):
    v = ctx.visor()
    r = v.get("/")
    ok, d = is_200(r, "/")
    ctx.check("GET / -> 200 InstanceInfo", ok, d)
    if ok:
        ctx.check("GET / state is 'Not started'", r.json.get("state") == "Not started", str(r))
        ctx.check("GET / id is 'anonymous-instance' without --id",
                  r.json.get("id") == "anonymous-instance", str(r))
    r = v.get("/version")
    ok, d = is_200(r, "/version")
    ctx.check("GET /version -> 200 FirecrackerVersion", ok, d)
    r = v.get("/machine-config")
    ok, d = is_200(r, "/machine-config")
    ctx.check("GET /machine-config -> 200 MachineConfiguration", ok, d)
    if ok:
        # YAML: "When called before the PUT operation, it will return the
        # default values for the vCPU count (=1), memory size (=128 MiB).
        # By default SMT is disabled"
        want = {"vcpu_count": 1, "mem_size_mib": 128}
        diff = subset_diff(want, r.json)
        if r.json.get("smt") not in (None, False):
            diff.append("smt: %r" % r.json.get("smt"))
        ctx.check("GET /machine-config defaults: vcpu_count 1, mem_size_mib 128, smt off "
                  "(YAML)", not diff, "; ".join(diff) + ": " + str(r))
    r = v.get("/vm/config")
    ok, d = is_200(r, "/vm/config")
    ctx.check("GET /vm/config -> 200 FullVmConfiguration", ok, d)
    if ok:
        mc = r.json.get("machine-config")
        ctx.check("GET /vm/config machine-config equals GET /machine-config",
                  mc == v.get("/machine-config").json, str(r))
    r = v.get("/balloon")
    ctx.check("GET /balloon without a balloon -> 400 Error", *is_error(r))
    r = v.get("/balloon/statistics")
    ctx.check("GET /balloon/statistics without a balloon -> 400 Error", *is_error(r))
    r = v.patch("/balloon", {"amount_mib": 1})
    ctx.check("PATCH /balloon without a balloon -> 400 Error", *is_error(r))
    r = v.patch("/balloon/statistics", {"stats_polling_interval_s": 1})
    ctx.check("PATCH /balloon/statistics without a balloon -> 400 Error", *is_error(r))
    r = v.request("GET", "/machine-config", raw=b'{"vcpu_count": 2}')
    ctx.check("GET with a body -> 400 Error (as Firecracker)", *is_error(r))
    r = v.put("/actions", {"action_type": "FlushMetrics"})
    # Firecracker's FlushMetrics without a metrics file is not an error
    # either way; only the shape of the answer is checked.
    ok = r.status == 204 and not r.body or is_error(r)[0]
    ctx.check("PUT /actions FlushMetrics without metrics -> 204 or 400 Error", ok, str(r))


def make_endpoint_test(name):
    def t(ctx):
        eps = fixtures.endpoints(ctx)
        ep = fixtures.by_name(eps)[name]
        v = ctx.visor()
        names = fixtures.by_name(eps)
        for n in ep.needs:
            pre = names[n]
            ctx.check("prerequisite %s -> 204" % pre.label(),
                      *is_204(v.request(pre.method, pre.path, pre.body)))
        before = v.config()
        r = v.request(ep.method, ep.path, ep.body)
        ctx.check("%s (%s) -> 204, no body" % (ep.label(), ep.defname), *is_204(r))
        r2 = v.get("/vm/config")
        ok, d = is_200(r2, "/vm/config")
        ctx.check("GET /vm/config after it -> 200 FullVmConfiguration", ok, d)
        if ok and ep.section:
            old = fixtures.section_of(before, ep)
            new = fixtures.section_of(r2.json, ep)
            if ep.method == "PUT":
                diff = subset_diff(ep.body, new, ep.section)
            else:
                diff = subset_diff(ep.body, new, ep.section)
                for k, val in (old or {}).items():
                    if k not in ep.body and (new or {}).get(k) != val:
                        diff.append("%s/%s changed from %s to %s" % (
                            ep.section, k, short(val, 60), short((new or {}).get(k), 60)))
            ctx.check("GET /vm/config '%s' shows the request's values" % ep.section, not diff,
                      "; ".join(diff) + " (request %s)" % short(ep.body, 200))
        if ep.name.startswith("machine-config"):
            r3 = v.get("/machine-config")
            ok, d = is_200(r3, "/machine-config")
            ctx.check("GET /machine-config -> 200, same as GET /vm/config",
                      ok and r3.json == v.config().get("machine-config"), d or str(r3))
        if ep.name.startswith("balloon"):
            r3 = v.get("/balloon")
            ok, d = is_200(r3, "/balloon")
            ctx.check("GET /balloon -> 200 Balloon, same as GET /vm/config",
                      ok and r3.json == v.config().get("balloon"), d or str(r3))
            r3 = v.get("/balloon/statistics")
            ctx.check("GET /balloon/statistics before start -> 400 Error", *is_error(r3))
        if ep.name == "flush-metrics":
            path = names["metrics"].body["metrics_path"]
            lines = open(path, "rb").read().splitlines()
            good = []
            for line in lines:
                try:
                    good.append(isinstance(json.loads(line), dict))
                except ValueError:
                    good.append(False)
            ctx.check("FlushMetrics wrote a JSON object line to metrics_path",
                      bool(lines) and all(good),
                      "metrics file has %d lines: %s" % (len(lines), short(b"\n".join(lines), 200)))
    return t


for _name in ["machine-config", "machine-config-patch", "boot-source", "drive",
              "network-interface", "vsock", "balloon", "balloon-patch", "balloon-stats-patch",
              "entropy", "logger", "metrics", "serial", "flush-metrics"]:
    test("valid " + _name)(make_endpoint_test(_name))


@test("valid minimal bodies")
def minimal(ctx):
    """Only the required fields: 204, and GET /vm/config shows the
    defaults the YAML states for what was left out."""
    v = ctx.visor()
    d = ctx.file("d.img", size=1 << 20)
    reqs = [
        ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}),
        ("PUT", "/boot-source", {"kernel_image_path": ctx.kernel()}),
        # is_read_only and path_on_host: "required for virtio-block config"
        ("PUT", "/drives/d0", {"drive_id": "d0", "is_root_device": False, "path_on_host": d,
                               "is_read_only": False}),
        ("PUT", "/network-interfaces/n0", {"iface_id": "n0", "host_dev_name": "vtap0"}),
        ("PUT", "/vsock", {"guest_cid": 3, "uds_path": ctx.path("v.sock")}),
        ("PUT", "/balloon", {"amount_mib": 0, "deflate_on_oom": False}),
        ("PUT", "/entropy", {}),
        ("PUT", "/logger", {}),
        ("PUT", "/serial", {}),
        ("PUT", "/metrics", {"metrics_path": ctx.file("m.json")}),
        ("PUT", "/vsock", {"guest_cid": 4, "uds_path": ctx.path("v2.sock"), "vsock_id": "v0"}),
    ]
    for method, path, body in reqs:
        ctx.check("%s %s %s -> 204" % (method, path, short(body, 80)),
                  *is_204(v.request(method, path, body)))
    r = v.get("/vm/config")
    ok, d = is_200(r, "/vm/config")
    ctx.check("GET /vm/config -> 200 FullVmConfiguration", ok, d)
    if not ok:
        return
    cfg = r.json
    defaults = [
        ("machine-config", "smt", False), ("machine-config", "track_dirty_pages", False),
        ("machine-config", "huge_pages", "None"), ("machine-config", "cpu_template", "None"),
        ("balloon", "stats_polling_interval_s", 0), ("drives", "cache_type", "Unsafe"),
        ("drives", "io_engine", "Sync"),
    ]
    for sec, field, want in defaults:
        got = cfg.get(sec)
        if isinstance(got, list):
            got = got[0] if got else {}
        val = (got or {}).get(field, want)  # absent: the default applies
        ctx.check("%s.%s defaults to %s (YAML) when omitted" % (sec, field, short(want)),
                  val == want, "GET /vm/config %s: %s" % (sec, short(got)))


@test("full configuration")
def full(ctx):
    eps = fixtures.endpoints(ctx)
    v = ctx.visor()
    for ep in eps:
        if ep.method == "PUT":
            ctx.check("%s -> 204" % ep.label(), *is_204(v.request(ep.method, ep.path, ep.body)))
    d1 = dict(fixtures.by_name(eps)["drive"].body)
    d1.update(drive_id="data", path_on_host=ctx.path("data.img"), is_root_device=False,
              is_read_only=True, cache_type="Unsafe", io_engine="Async")
    del d1["partuuid"]
    ctx.check("PUT /drives/data (second drive) -> 204", *is_204(v.put("/drives/data", d1)))
    n1 = {"iface_id": "eth1", "host_dev_name": "vtap1"}
    ctx.check("PUT /network-interfaces/eth1 (minimal) -> 204",
              *is_204(v.put("/network-interfaces/eth1", n1)))
    r = v.get("/vm/config")
    ok, d = is_200(r, "/vm/config")
    ctx.check("GET /vm/config of a full configuration -> 200 FullVmConfiguration", ok, d)
    if not ok:
        return
    cfg = r.json
    diffs = []
    for ep in eps:
        if ep.section and ep.method == "PUT":
            diffs += subset_diff(ep.body, fixtures.section_of(cfg, ep), ep.section)
    drives = {x.get("drive_id"): x for x in cfg.get("drives") or []}
    nics = {x.get("iface_id"): x for x in cfg.get("network-interfaces") or []}
    diffs += subset_diff(d1, drives.get("data"), "drives[data]")
    diffs += subset_diff(n1, nics.get("eth1"), "network-interfaces[eth1]")
    if len(drives) != 2 or len(cfg.get("drives") or []) != 2:
        diffs.append("drives: expected rootfs and data, got %s" % short(cfg.get("drives"), 200))
    if len(nics) != 2 or len(cfg.get("network-interfaces") or []) != 2:
        diffs.append("network-interfaces: expected eth0 and eth1")
    ctx.check("GET /vm/config shows every section as configured", not diffs, "; ".join(diffs))
    order = [x.get("drive_id") for x in cfg.get("drives") or []]
    ctx.check("GET /vm/config lists drives in the order they were added",
              order == ["rootfs", "data"], "order %s" % order)


@test("request forms")
def forms(ctx):
    """What different clients send: no Content-Type, Expect: 100-continue
    (curl for bodies over 1 KiB), HTTP/1.0, curl itself."""
    from harness import raw_connect, read_responses, wait_closed
    v = ctx.visor()
    body = json.dumps({"vcpu_count": 2, "mem_size_mib": 256}).encode()
    s = raw_connect(v.sock)
    s.sendall(b"PUT /machine-config HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    out, _, _ = read_responses(s, 1)
    s.close()
    ctx.check("PUT without Content-Type or Accept -> 204",
              bool(out) and out[0][0] == 204 and not out[0][2], "got %s" % short(out))
    s = raw_connect(v.sock)
    s.sendall(b"PUT /machine-config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
              b"\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    first, _, _ = read_responses(s, 1, timeout=2)
    s.sendall(body)
    rest, _, _ = read_responses(s, 1)
    s.close()
    statuses = [x[0] for x in first + rest]
    ctx.check("Expect: 100-continue -> 100 Continue, then 204", statuses == [100, 204],
              "got %s" % statuses)
    s = raw_connect(v.sock)
    s.sendall(b"GET /machine-config HTTP/1.0\r\n\r\n")
    out, closed, _ = read_responses(s, 1)
    closed = closed or wait_closed(s, 2)
    s.close()
    ctx.check("HTTP/1.0 GET -> 200 and the connection is closed",
              bool(out) and out[0][0] == 200 and closed, "got %s, closed %s" % (short(out), closed))
    r1 = v.get("/")
    r2 = v.get("/machine-config")
    r3 = v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128})
    ctx.check("three requests on one keep-alive connection",
              (r1.status, r2.status, r3.status) == (200, 200, 204), "%s; %s; %s" % (r1, r2, r3))
    curl = shutil.which("curl")
    if not curl:
        ctx.skip("curl drives the API", "curl is not installed (tools/install-deps)")
        return
    big = {"kernel_image_path": ctx.kernel(), "boot_args": "console=ttyS0 " + "x" * 1500}
    p = subprocess.run([curl, "-sS", "--unix-socket", v.sock, "-X", "PUT", "-o", "/dev/null",
                        "-w", "%{http_code}", "-H", "Accept: application/json", "-H",
                        "Content-Type: application/json", "-d", json.dumps(big),
                        "http://localhost/boot-source"], capture_output=True, timeout=10)
    ctx.check("curl PUT /boot-source with a 1.5 KiB body (Expect: 100-continue) -> 204",
              p.stdout == b"204", "curl: %s %s" % (p.stdout, p.stderr))
    p = subprocess.run([curl, "-sS", "--unix-socket", v.sock, "http://localhost/vm/config"],
                       capture_output=True, timeout=10)
    try:
        got = json.loads(p.stdout)
    except ValueError:
        got = None
    ok = isinstance(got, dict) and not spec().errors(
        spec().response_schema("/vm/config", "GET", 200), got) and \
        (got.get("boot-source") or {}).get("boot_args") == big["boot_args"]
    ctx.check("curl GET /vm/config -> FullVmConfiguration with that boot_args", ok,
              "curl: %s %s" % (short(p.stdout), p.stderr))


@test("coverage of the YAML")
def coverage(ctx):
    """Every operation of the YAML is exercised somewhere in this suite."""
    covered = {
        ("/", "GET"), ("/version", "GET"), ("/machine-config", "GET"), ("/vm/config", "GET"),
        ("/actions", "PUT"), ("/balloon", "GET"), ("/balloon", "PUT"), ("/balloon", "PATCH"),
        ("/balloon/statistics", "GET"), ("/balloon/statistics", "PATCH"),
        ("/balloon/hinting/start", "PATCH"), ("/balloon/hinting/status", "GET"),
        ("/balloon/hinting/stop", "PATCH"), ("/boot-source", "PUT"), ("/cpu-config", "PUT"),
        ("/drives/{drive_id}", "PUT"), ("/drives/{drive_id}", "PATCH"),
        ("/pmem/{id}", "PUT"), ("/pmem/{id}", "PATCH"), ("/logger", "PUT"),
        ("/machine-config", "PUT"), ("/machine-config", "PATCH"), ("/metrics", "PUT"),
        ("/mmds", "PUT"), ("/mmds", "PATCH"), ("/mmds", "GET"), ("/mmds/config", "PUT"),
        ("/entropy", "PUT"), ("/serial", "PUT"), ("/hotplug/memory", "PUT"),
        ("/hotplug/memory", "PATCH"), ("/hotplug/memory", "GET"),
        ("/network-interfaces/{iface_id}", "PUT"), ("/network-interfaces/{iface_id}", "PATCH"),
        ("/snapshot/create", "PUT"), ("/snapshot/load", "PUT"), ("/vm", "PATCH"),
        ("/vsock", "PUT"),
    }
    ops = set(spec().operations())
    missing = sorted(ops - covered)
    ctx.check("every operation of firecracker-api.yaml has a test", not missing,
              "not covered: %s" % missing)


@test("machine-config dirty_ring_entries")
def dirty_ring_entries(ctx):
    """visor's own machine-config field: KVM's dirty ring per vCPU (0: the
    dirty bitmap), checked as `visor run --dirty-ring` checks it; shown
    only once given, so Firecracker's machine-config stays as it was."""
    v = ctx.visor()
    base = {"vcpu_count": 1, "mem_size_mib": 128}
    r = v.get("/machine-config")
    ctx.check("GET /machine-config has no dirty_ring_entries by default",
              r.status == 200 and "dirty_ring_entries" not in (r.json or {}), str(r))
    for bad in (1000, 128, 131072, 2 ** 32):
        r = v.put("/machine-config", dict(base, dirty_ring_entries=bad))
        ok, d = is_error(r)
        msg = str((r.json or {}).get("fault_message", "")) if isinstance(r.json, dict) else ""
        want = "dirty ring: %d entries is not a power of two from 256 to 65536" % bad
        ctx.check("PUT dirty_ring_entries %d -> 400 naming the range" % bad,
                  ok and want in msg, str(r))
    r = v.put("/machine-config", dict(base, dirty_ring_entries=-1))
    ctx.check("PUT dirty_ring_entries -1 -> 400", *is_error(r))
    r = v.put("/machine-config", dict(base, dirty_ring_entries=256))
    ctx.check("PUT dirty_ring_entries 256 -> 204", *is_204(r))
    r = v.get("/machine-config")
    ctx.check("GET /machine-config shows dirty_ring_entries 256",
              r.status == 200 and (r.json or {}).get("dirty_ring_entries") == 256, str(r))
    r = v.patch("/machine-config", {"dirty_ring_entries": 0})
    ctx.check("PATCH dirty_ring_entries 0 (the bitmap) -> 204", *is_204(r))
    r = v.get("/vm/config")
    mc = (r.json or {}).get("machine-config", {}) if r.status == 200 else {}
    ctx.check("GET /vm/config machine-config: dirty_ring_entries 0, the rest kept",
              mc.get("dirty_ring_entries") == 0 and mc.get("mem_size_mib") == 128, str(r))
    r = v.patch("/machine-config", {"mem_size_mib": 256})
    ctx.check("PATCH of another field keeps dirty_ring_entries",
              is_204(r)[0] and v.get("/machine-config").json.get("dirty_ring_entries") == 0,
              str(r))
    r = v.put("/machine-config", base)
    ctx.check("PUT without it is the default again (not shown)",
              is_204(r)[0] and "dirty_ring_entries" not in v.get("/machine-config").json, str(r))
