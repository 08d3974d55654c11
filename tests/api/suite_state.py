# SPDX-License-Identifier: MIT
"""The lifecycle before start: requests valid only after InstanceStart,
PUT on an existing id (an update), conflicts between devices,
InstanceStart without a boot source and without KVM, unsupported
features, unknown paths and methods."""
import os
import re
import struct
import zlib

import fixtures
from harness import have_kvm, is_204, is_error, short, subset_diff, test
from suite_bodies import refused_unchanged

BEFORE_START = r"not supported before starting the microVM"


def configured(ctx, *names):
    """A visor with the named endpoints' valid bodies applied."""
    eps = fixtures.endpoints(ctx)
    v = ctx.visor()
    for n in names:
        fixtures.apply(ctx, v, fixtures.by_name(eps)[n], eps)
    return v, fixtures.by_name(eps)


def refused_state_unchanged(ctx, v, baseline, name, method, path, body, mention=None):
    ok = refused_unchanged(ctx, v, baseline, name, method, path, body, mention)
    st = v.state()
    if st != "Not started":
        ctx.check(name + " (state)", False, "GET / state is now %r" % st)
    return ok


@test("wrong state before start")
def wrong_state(ctx):
    v, eps = configured(ctx, "boot-source", "machine-config", "drive", "network-interface",
                        "balloon")
    base = v.config()
    rl = fixtures.rate_limiter(4096, 10)
    cases = [
        ("PATCH", "/drives/rootfs", {"drive_id": "rootfs", "path_on_host": ctx.path("data.img")}),
        ("PATCH", "/drives/rootfs", {"drive_id": "rootfs", "rate_limiter": rl}),
        ("PATCH", "/network-interfaces/eth0", {"iface_id": "eth0", "rx_rate_limiter": rl}),
        ("PATCH", "/network-interfaces/eth0", {"iface_id": "eth0", "tx_rate_limiter": rl}),
        ("PATCH", "/vm", {"state": "Paused"}),
        ("PATCH", "/vm", {"state": "Resumed"}),
        ("PUT", "/actions", {"action_type": "SendCtrlAltDel"}),
    ]
    for method, path, body in cases:
        refused_state_unchanged(
            ctx, v, base, "%s %s %s -> 400 'not supported before starting', no change" % (
                method, path, short(body, 80)), method, path, body, BEFORE_START)
    r = v.get("/balloon/statistics")
    ctx.check("GET /balloon/statistics before start (stats enabled) -> 400 Error", *is_error(r))
    refused_state_unchanged(ctx, v, base, "PATCH /drives/nosuch -> 400, no change", "PATCH",
                            "/drives/nosuch", {"drive_id": "nosuch", "path_on_host": "/x"})


@test("updates")
def updates(ctx):
    v, eps = configured(ctx, "drive", "network-interface", "boot-source", "vsock", "machine-config",
                        "balloon")
    # a drive: PUT on an existing id replaces it
    d2 = {"drive_id": "rootfs", "path_on_host": ctx.path("data.img"), "is_root_device": False,
          "is_read_only": True, "cache_type": "Unsafe"}
    ctx.check("PUT /drives/rootfs again (new values) -> 204", *is_204(v.put("/drives/rootfs", d2)))
    cfg = v.config()
    drives = cfg.get("drives") or []
    diff = subset_diff([d2], [{k: x.get(k) for k in d2} for x in drives], "drives")
    if len(drives) == 1:
        if drives[0].get("rate_limiter") not in (None, {}):
            diff.append("rate_limiter of the first PUT survived: %s" % short(drives[0]))
        if drives[0].get("partuuid") not in (None, ""):
            diff.append("partuuid of the first PUT survived: %s" % short(drives[0]))
    ctx.check("one drive 'rootfs' with the new values only", not diff and len(drives) == 1,
              "; ".join(diff) + " drives: %s" % short(drives, 400))
    # a network interface likewise
    n2 = {"iface_id": "eth0", "host_dev_name": "vtap9"}
    ctx.check("PUT /network-interfaces/eth0 again (new values) -> 204",
              *is_204(v.put("/network-interfaces/eth0", n2)))
    nics = v.config().get("network-interfaces") or []
    ok = (len(nics) == 1 and nics[0].get("host_dev_name") == "vtap9" and
          nics[0].get("guest_mac") in (None, "") and nics[0].get("rx_rate_limiter") in (None, {}))
    ctx.check("one interface 'eth0' with the new values only", ok,
              "network-interfaces: %s" % short(nics, 400))
    # the boot source: initrd and boot_args of the first PUT are gone
    k = ctx.kernel()
    ctx.check("PUT /boot-source again without initrd -> 204",
              *is_204(v.put("/boot-source", {"kernel_image_path": k})))
    bs = v.config().get("boot-source") or {}
    ctx.check("boot-source has no initrd_path any more",
              bs.get("kernel_image_path") == k and bs.get("initrd_path") in (None, ""),
              "boot-source: %s" % short(bs))
    # the vsock
    vs = {"guest_cid": 42, "uds_path": ctx.path("other.sock")}
    ctx.check("PUT /vsock again -> 204", *is_204(v.put("/vsock", vs)))
    diff = subset_diff(vs, v.config().get("vsock"), "vsock")
    ctx.check("vsock has the new values", not diff, "; ".join(diff))
    # the balloon
    b = {"amount_mib": 8, "deflate_on_oom": False}
    ctx.check("PUT /balloon again -> 204", *is_204(v.put("/balloon", b)))
    bal = v.config().get("balloon") or {}
    diff = subset_diff(b, bal, "balloon")
    if bal.get("stats_polling_interval_s") not in (None, 0):
        diff.append("stats_polling_interval_s of the first PUT survived: %s" % short(bal))
    ctx.check("balloon has the new values (stats interval back to 0)", not diff, "; ".join(diff))
    # machine-config: PUT resets what it omits, PATCH keeps it
    full = {"vcpu_count": 2, "mem_size_mib": 256, "smt": True, "track_dirty_pages": True}
    ctx.check("PUT /machine-config smt and track_dirty_pages on -> 204",
              *is_204(v.put("/machine-config", full)))
    diff = subset_diff(full, v.get("/machine-config").json, "machine-config")
    ctx.check("machine-config has them", not diff, "; ".join(diff))
    ctx.check("PUT /machine-config with only vcpu_count and mem_size_mib -> 204",
              *is_204(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128})))
    mc = v.get("/machine-config").json or {}
    ctx.check("omitted smt and track_dirty_pages are back to false (YAML: set to defaults)",
              mc.get("smt") in (False, None) and mc.get("track_dirty_pages") in (False, None) and
              mc.get("vcpu_count") == 1 and mc.get("mem_size_mib") == 128, short(mc))
    ctx.check("PATCH /machine-config {vcpu_count: 2} -> 204",
              *is_204(v.patch("/machine-config", {"vcpu_count": 2})))
    mc = v.get("/machine-config").json or {}
    ctx.check("PATCH changed vcpu_count only", mc.get("vcpu_count") == 2 and
              mc.get("mem_size_mib") == 128, short(mc))
    base = v.config()
    refused_unchanged(ctx, v, base, "PATCH /machine-config {} -> 400, no change (empty PATCH)",
                      "PATCH", "/machine-config", {})
    for opt in ({"cpu_template": "None"}, {"huge_pages": "None"}):
        body = dict({"vcpu_count": 1, "mem_size_mib": 128}, **opt)
        ctx.check("PUT /machine-config with %s -> 204 (the YAML's default)" % short(opt),
                  *is_204(v.put("/machine-config", body)))
    ctx.check("PUT /balloon with free_page_hinting false -> 204",
              *is_204(v.put("/balloon", {"amount_mib": 0, "deflate_on_oom": False,
                                         "free_page_hinting": False})))


@test("conflicts")
def conflicts(ctx):
    v, eps = configured(ctx, "drive", "network-interface", "machine-config")
    base = v.config()
    d = {"drive_id": "second", "path_on_host": ctx.path("data.img"), "is_root_device": True,
         "is_read_only": False}
    refused_unchanged(ctx, v, base, "a second root drive -> 400, no change", "PUT",
                      "/drives/second", d)
    n = {"iface_id": "eth1", "host_dev_name": "vtap0"}
    refused_unchanged(ctx, v, base, "a second interface on the same host_dev_name -> 400, "
                      "no change", "PUT", "/network-interfaces/eth1", n)
    n = {"iface_id": "eth1", "host_dev_name": "vtap1", "guest_mac": "06:00:ac:10:00:02"}
    refused_unchanged(ctx, v, base, "a second interface with the same guest_mac -> 400, "
                      "no change", "PUT", "/network-interfaces/eth1", n)
    b = {"amount_mib": 256, "deflate_on_oom": False}
    refused_unchanged(ctx, v, base, "a balloon as large as guest memory -> 400, no change",
                      "PUT", "/balloon", b)


@test("InstanceStart without a boot source")
def start_no_boot(ctx):
    v, eps = configured(ctx, "machine-config", "drive")
    base = v.config()
    refused_state_unchanged(ctx, v, base, "PUT /actions InstanceStart -> 400 naming the boot "
                            "source, no change", "PUT", "/actions",
                            {"action_type": "InstanceStart"}, r"boot|kernel")


def start_fails_cleanly(ctx, v, mention, label):
    base = v.config()
    for attempt in ("", " again"):
        r = v.put("/actions", {"action_type": "InstanceStart"})
        ok, d = is_error(r, 400, mention)
        ctx.check("InstanceStart%s %s -> 400 with a clear fault (/%s/)" % (attempt, label, mention),
                  ok, d)
        st = v.state()
        ctx.check("state after InstanceStart%s is still 'Not started'" % attempt,
                  st == "Not started", "GET / state %r" % st)
        after = v.config()
        ctx.check("configuration unchanged after InstanceStart%s" % attempt, after == base,
                  "%s -> %s" % (short(base, 500), short(after, 500)))
    ok = is_204(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}))
    ctx.check("still configurable after the failed starts (PUT /machine-config -> 204)", *ok)
    ctx.check("visor is still running", v.alive(), "exit status %s" % v.proc.poll())


@test("InstanceStart without KVM")
def start_no_kvm(ctx):
    eps = fixtures.by_name(fixtures.endpoints(ctx))
    extra = []
    if have_kvm():
        ctx.skip("InstanceStart on this host", "the host has /dev/kvm, so the start could "
                 "succeed; checking the failure path with --kvm pointing at a missing device")
        extra = ["--kvm", ctx.path("no-such-kvm")]
    v = ctx.visor(*extra)
    for n in ("machine-config", "boot-source", "drive", "vsock", "entropy"):
        fixtures.apply(ctx, v, eps[n], [])
    start_fails_cleanly(ctx, v, r"kvm", "(no /dev/kvm)")


@test("InstanceStart with a bad kernel")
def start_bad_kernel(ctx):
    v = ctx.visor("--kvm", ctx.path("no-such-kvm"))
    junk = ctx.file("junk-kernel", b"this is not a kernel\n" * 100)
    ctx.check("PUT /boot-source (a file that is no kernel) -> 204 or 400",
              v.put("/boot-source", {"kernel_image_path": junk}).status in (204, 400), "refused otherwise")
    if v.config().get("boot-source"):
        start_fails_cleanly(ctx, v, r"kernel", "(not a kernel)")
    v2 = ctx.visor("--kvm", ctx.path("no-such-kvm"))
    missing = ctx.path("missing-kernel")
    r = v2.put("/boot-source", {"kernel_image_path": missing})
    if r.status == 400:
        ctx.check("PUT /boot-source with a missing kernel -> 400 naming the file",
                  *is_error(r, 400, "missing-kernel"))
    else:
        ctx.check("PUT /boot-source with a missing kernel -> 204 or 400", r.status == 204, str(r))
        start_fails_cleanly(ctx, v2, r"missing-kernel", "(kernel file missing)")


UNSUPPORTED = [
    ("MMDS", r"mmds", [("PUT", "/mmds", {"latest": {"meta-data": {"a": "b"}}}),
                       ("PATCH", "/mmds", {"latest": {}}), ("GET", "/mmds", None),
                       ("PUT", "/mmds/config", {"network_interfaces": ["eth0"]})]),
    ("pmem", r"pmem", [("PUT", "/pmem/pm0", {"id": "pm0", "path_on_host": "@data"}),
                       ("PATCH", "/pmem/pm0", {"id": "pm0"})]),
    ("memory hotplug", r"hot.?plug|virtio-mem",
     [("PUT", "/hotplug/memory", {"total_size_mib": 1024}),
      ("PATCH", "/hotplug/memory", {"requested_size_mib": 0}), ("GET", "/hotplug/memory", None)]),
    ("cpu-config", r"cpu.?config|cpu configuration|cpu template",
     [("PUT", "/cpu-config", {"kvm_capabilities": ["!121"]}), ("PUT", "/cpu-config", {})]),
    ("CPU templates", r"cpu.?template|template",
     [("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": "T2"}),
      ("PATCH", "/machine-config", {"cpu_template": "C3"})]),
    ("balloon hinting", r"hint",
     [("PATCH", "/balloon/hinting/start", {"acknowledge_on_stop": True}),
      ("PATCH", "/balloon/hinting/start", None), ("GET", "/balloon/hinting/status", None),
      ("PATCH", "/balloon/hinting/stop", None),
      ("PUT", "/balloon", {"amount_mib": 0, "deflate_on_oom": False, "free_page_hinting": True})]),
    ("vhost-user block", r"vhost|socket",
     [("PUT", "/drives/vub", {"drive_id": "vub", "is_root_device": False, "socket": "@vub.sock"})]),
]


def fill_paths(ctx, body):
    if isinstance(body, dict):
        return {k: fill_paths(ctx, x) for k, x in body.items()}
    if isinstance(body, str) and body.startswith("@"):
        return ctx.path(body[1:] + ".img") if body == "@data" else ctx.path(body[1:])
    return body


@test("unsupported features")
def unsupported(ctx):
    v, eps = configured(ctx, "boot-source", "machine-config", "drive", "network-interface",
                        "balloon")
    base = v.config()
    for feature, mention, reqs in UNSUPPORTED:
        for method, path, body in reqs:
            body = fill_paths(ctx, body)
            name = "%s %s%s -> 400 naming %s, no change" % (
                method, path, " " + short(body, 60) if body is not None else "", feature)
            try:
                if body is None:
                    r = v.request(method, path)
                else:
                    r = v.request(method, path, body)
                ok, d = is_error(r, 400, mention)
                if ok and v.config() != base:
                    ok, d = False, "GET /vm/config changed after %s" % r
            except Exception as e:
                ok, d = False, "%s: %s" % (type(e).__name__, e)
                v.client.close()
            ctx.check(name, ok, d)
    for f in ("mem", "snap"):
        ctx.check("no file %s was created by the snapshot requests" % f,
                  not os.path.exists(ctx.path(f)), ctx.path(f))


LOAD_AFTER_CONFIG = r"Loading a microVM snapshot not allowed after configuring boot-specific resources"


@test("snapshot requests and the lifecycle")
def snapshot_states(ctx):
    """Firecracker's state rules for /snapshot/*: create needs a started
    (and paused) VM, load only a fresh process (logger and metrics may come
    first); a load that fails answers 400 and ends the process."""
    body = {"mem_file_path": ctx.path("snap.mem"), "snapshot_path": ctx.path("snap.state")}
    v, eps = configured(ctx, "boot-source", "machine-config")
    base = v.config()
    refused_state_unchanged(ctx, v, base, "PUT /snapshot/create before start -> 400 "
                            "'not supported before starting', no change", "PUT",
                            "/snapshot/create", body, BEFORE_START)
    load = {"snapshot_path": ctx.path("snap.state"),
            "mem_backend": {"backend_type": "File", "backend_path": ctx.path("snap.mem")}}
    refused_state_unchanged(ctx, v, base, "PUT /snapshot/load after configuring -> 400 "
                            "(Firecracker's words), no change", "PUT", "/snapshot/load", load,
                            LOAD_AFTER_CONFIG)
    ctx.check("visor still runs after the refused load", v.alive(), "exit %s" % v.proc.poll())
    ctx.check("no snapshot file was written", not os.path.exists(body["snapshot_path"]) and
              not os.path.exists(body["mem_file_path"]), "files exist")

    # a fresh process: logger and metrics first are fine; a missing,
    # empty, garbage or truncated state file is refused naming the file
    # and what is wrong, then the process ends with status 1
    garbage = ctx.file("garbage.state", b"VISORSNP" + b"\x00" * 100)
    empty = ctx.file("empty.state", b"")
    cases = [
        (ctx.path("no-such.state"), r"no-such\.state.*(No such file|not found|exist)"),
        (empty, r"empty\.state"),
        (garbage, r"garbage\.state.*(length|checksum|trailer|header|version|truncat)"),
        (ctx.path(""), r"regular file|directory|Is a directory"),
    ]
    for path, mention in cases:
        v = ctx.visor()
        r = v.put("/logger", {"log_path": ctx.path("load.log"), "level": "Info"})
        ctx.check("PUT /logger on a fresh process -> 204", *is_204(r))
        r = v.put("/snapshot/load", {"snapshot_path": path,
                                     "mem_backend": {"backend_type": "File",
                                                     "backend_path": ctx.path("no.mem")}})
        ctx.check("PUT /snapshot/load %s -> 400 /%s/" % (os.path.basename(path) or "(a directory)",
                                                          mention), *is_error(r, 400, mention))
        v.expected_exit = True
        code = v.wait_exit(5.0)
        ctx.check("... and the process ends with status 1", code == 1, "exit status %r" % code)


@test("snapshot load with the Uffd memory backend")
def snapshot_load_uffd(ctx):
    """mem_backend Uffd: a request that does not decode is refused with
    400 and changes nothing (the process goes on, as for any bad body); a
    load that fails (here: the state file) answers 400 and ends the
    process, and the state file is checked before the page-fault handler
    is contacted: the handler's socket gets no connection."""
    import socket
    sock_path = ctx.path("uffd.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(4)
    listener.setblocking(False)
    state = ctx.path("snap.state")

    def uffd(path=sock_path, **extra):
        b = {"backend_type": "Uffd", "backend_path": path}
        b.update(extra)
        return b

    bad = [
        ("no backend_path", {"snapshot_path": state, "mem_backend": {"backend_type": "Uffd"}},
         r"backend_path"),
        ("an empty backend_path", {"snapshot_path": state, "mem_backend": uffd("")},
         r"empty"),
        ("a backend_path that is not a string",
         {"snapshot_path": state, "mem_backend": uffd(7)}, r"backend_path.*string|string"),
        ("backend_type `uffd`", {"snapshot_path": state,
                                 "mem_backend": {"backend_type": "uffd",
                                                 "backend_path": sock_path}},
         r"backend_type"),
        ("both mem_file_path and mem_backend",
         {"snapshot_path": state, "mem_file_path": ctx.path("m"), "mem_backend": uffd()},
         r"exactly one of"),
        ("an unknown field in mem_backend",
         {"snapshot_path": state, "mem_backend": uffd(page_size=4096)},
         r"unknown field `mem_backend\.page_size`"),
        ("a socket path longer than sun_path",
         {"snapshot_path": state, "mem_backend": uffd("/" + "s" * 107)}, r"107 bytes"),
        ("no snapshot_path", {"mem_backend": uffd()}, r"snapshot_path"),
    ]
    v = ctx.visor()
    for what, body, mention in bad:
        r = v.put("/snapshot/load", body)
        ctx.check("PUT /snapshot/load (Uffd) with %s -> 400 /%s/" % (what, mention),
                  *is_error(r, 400, mention))
        ctx.check("... and visor goes on", v.alive(), "exit %s" % v.proc.poll())

    garbage = ctx.file("garbage.state", b"VISORSNP" + b"\x00" * 100)
    for path, mention in ((ctx.path("no-such.state"), r"no-such\.state"),
                          (garbage, r"garbage\.state")):
        v = ctx.visor()
        r = v.put("/snapshot/load", {"snapshot_path": path, "mem_backend": uffd(),
                                     "resume_vm": True})
        ctx.check("PUT /snapshot/load (Uffd) %s -> 400 /%s/" % (os.path.basename(path), mention),
                  *is_error(r, 400, mention))
        v.expected_exit = True
        code = v.wait_exit(5.0)
        ctx.check("... and the process ends with status 1", code == 1, "exit status %r" % code)
    try:
        conn, _ = listener.accept()
        conn.close()
        contacted = True
    except BlockingIOError:
        contacted = False
    listener.close()
    ctx.check("the page-fault handler's socket got no connection from the refused loads",
              not contacted, "a connection was made")


# ---- Diff snapshots (docs/snapshot-format.md, "Memory") -------------------

def state_file(sections):
    """A visor state file (format version 1) of (id, version, payload)."""
    body = b""
    for sid, version, payload in sections:
        hdr = sid.encode().ljust(32, b"\0") + struct.pack("<IIQII", version, 0, len(payload),
                                                          zlib.crc32(payload), 0)
        body += hdr + payload + b"\0" * (-len(payload) % 8)
    total = 32 + len(body) + 16
    head = b"VISORSNP" + struct.pack("<IIIIQ", 1, 32, 0, len(sections), total)
    data = head + body
    return data + struct.pack("<II", zlib.crc32(data), 0) + b"VISOREND"


def config_payload(mem_mib):
    """Section "config" v1 of a 1-vCPU VM with no devices."""
    def s(x):
        return struct.pack("<H", len(x)) + x.encode()
    p = struct.pack("<IQBBH", 1, mem_mib, 0, 0, 0) + s("/k") + s("") + s("console=ttyS0")
    p += struct.pack("<II", 0, 0)                                       # drives, interfaces
    p += struct.pack("<BBH", 0, 1, 0) + s("") + struct.pack("<Q", 0) + s("")  # vsock
    p += struct.pack("<BBBBQI", 0, 0, 0, 1, 0, 0)                        # balloon
    p += struct.pack("<BBH", 0, 1, 0) + b"\0" * 48                      # entropy
    return p


def memory_payload(kind, size, ident, base):
    """Section "memory" v1: kind, reserved, size, identity, base."""
    return struct.pack("<B7xQ", kind, size) + bytes([ident]) * 16 + bytes([base]) * 16


@test("Diff snapshots: create rules, loads refused")
def diff_snapshots(ctx):
    """snapshot_type Diff is accepted by the decoder and refused before start
    like any snapshot; a state file whose memory file is a Diff (or a base
    whose merge was interrupted, or whose memory section does not match its
    configuration or is malformed) is refused by PUT /snapshot/load before
    anything is built, with the fix named, and the process ends with 1."""
    v, eps = configured(ctx, "boot-source", "machine-config")
    base = v.config()
    body = {"mem_file_path": ctx.path("d.mem"), "snapshot_path": ctx.path("d.state"),
            "snapshot_type": "Diff"}
    refused_state_unchanged(ctx, v, base, "PUT /snapshot/create Diff before start -> 400 "
                            "'not supported before starting', no change", "PUT",
                            "/snapshot/create", body, BEFORE_START)
    ctx.check("no Diff snapshot file was written", not os.path.exists(body["snapshot_path"]) and
              not os.path.exists(body["mem_file_path"]), "files exist")

    mem = ctx.path("m16.mem")
    with open(mem, "wb") as f:
        f.truncate(16 << 20)
    cfg = ("config", 1, config_payload(16))
    cases = [
        ("a Diff", [cfg, ("memory", 1, memory_payload(1, 16 << 20, 0x22, 0x11))],
         r"is a Diff snapshot: its memory file holds only the pages written since snapshot "
         r"1{32}; merge it onto its base first \(visor snapshot merge BASE DIFF\)"),
        ("an interrupted merge", [cfg, ("memory", 1, memory_payload(2, 16 << 20, 0x22, 0x11))],
         r"merge of a Diff snapshot onto it was interrupted.*run visor snapshot merge again"),
        ("a memory section of another size", [cfg, ("memory", 1,
                                                     memory_payload(0, 32 << 20, 0x22, 0))],
         r"memory section says 33554432 bytes, its configuration 16 MiB"),
        ("a memory section of an unknown kind", [cfg, ("memory", 1,
                                                       memory_payload(7, 16 << 20, 0x22, 0))],
         r"memory: kind 7"),
        ("a memory section of version 2", [cfg, ("memory", 2,
                                                 memory_payload(0, 16 << 20, 0x22, 0))],
         r"memory: version 2 \(this visor reads 1\)"),
        ("a Full memory section", [cfg, ("memory", 1, memory_payload(0, 16 << 20, 0x22, 0))],
         r"no-such-kvm"),
    ]
    for label, sections, mention in cases:
        st = ctx.file("case.state", state_file(sections))
        v = ctx.visor("--kvm", ctx.path("no-such-kvm")) if "Full" in label else ctx.visor()
        r = v.put("/snapshot/load", {"snapshot_path": st,
                                     "mem_backend": {"backend_type": "File", "backend_path": mem},
                                     "track_dirty_pages": True})
        what = ("passes the memory checks (fails only at KVM)" if "Full" in label
                else "-> 400 /%s/" % mention[:40])
        ctx.check("PUT /snapshot/load of %s %s" % (label, what), *is_error(r, 400, mention))
        v.expected_exit = True
        code = v.wait_exit(5.0)
        ctx.check("... and the process ends with status 1", code == 1, "exit status %r" % code)


@test("unknown paths and methods")
def unknown(ctx):
    v, eps = configured(ctx, "drive")
    base = v.config()
    cases = [("GET", "/nosuch", None), ("PUT", "/nosuch", {}), ("GET", "/drives/rootfs", None),
             ("GET", "/drives", None), ("DELETE", "/drives/rootfs", None),
             ("POST", "/actions", {"action_type": "FlushMetrics"}), ("PUT", "/", {}),
             ("PUT", "/version", {}), ("PATCH", "/boot-source", {"boot_args": "x"}),
             ("GET", "/actions", None), ("PUT", "/vm/config", {}),
             ("GET", "/machine-config/extra", None), ("GET", "/MACHINE-CONFIG", None)]
    for method, path, body in cases:
        r = v.request(method, path, body)
        ok, d = is_error(r, 400)
        if ok and v.config() != base:
            ok, d = False, "GET /vm/config changed after %s" % r
        ctx.check("%s %s -> 400 Error (as Firecracker: invalid method and/or path)" % (
            method, path), ok, d)


@test("logger output")
def logger_output(ctx):
    """PUT /logger sends visor's log to log_path: a failed InstanceStart's
    error ends up there."""
    v = ctx.visor("--kvm", ctx.path("no-such-kvm"))
    log = ctx.file("fc.log")
    ctx.check("PUT /logger (level Info) -> 204",
              *is_204(v.put("/logger", {"log_path": log, "level": "Info"})))
    v.put("/boot-source", {"kernel_image_path": ctx.kernel()})
    r = v.put("/actions", {"action_type": "InstanceStart"})
    ctx.check("InstanceStart (no KVM) -> 400", *is_error(r, 400))
    text = open(log, "rb").read().decode("utf-8", "replace")
    ctx.check("the start failure is logged to log_path", "no-such-kvm" in text,
              "log_path has %d bytes: %s" % (len(text), short(text, 300)))


@test("InstanceStart with hostile files")
def start_hostile_files(ctx):
    """Kernel, initrd and disk paths that are FIFOs, directories or device
    nodes (checklist C.23): InstanceStart answers at once with a 400 naming
    the file (no hang on a FIFO, no endless read of /dev/zero), and nothing
    changes."""
    k = ctx.kernel()
    fifo = ctx.path("fifo")
    os.mkfifo(fifo)
    adir = ctx.path("adir")
    os.mkdir(adir)
    cases = []
    for label, p in (("a FIFO", fifo), ("a directory", adir), ("/dev/zero", "/dev/zero")):
        cases.append(("kernel_image_path is " + label, {"kernel_image_path": p}, None, p))
        cases.append(("initrd_path is " + label, {"kernel_image_path": k, "initrd_path": p},
                      None, p))
        cases.append(("a drive's path_on_host is " + label, {"kernel_image_path": k},
                      {"drive_id": "d0", "path_on_host": p, "is_root_device": False,
                       "is_read_only": False}, p))
    for label, boot, drive, p in cases:
        v = ctx.visor("--kvm", ctx.path("no-such-kvm"))
        v.client.timeout = 8.0
        r1 = v.put("/boot-source", boot)
        r2 = v.put("/drives/d0", drive) if drive else None
        if r1.status == 400 or (r2 is not None and r2.status == 400):
            # refused when configured: as good, if it names the file
            r = r1 if r1.status == 400 else r2
            ctx.check("%s: refused with a fault naming it" % label,
                      *is_error(r, 400, re.escape(p)))
            continue
        base = v.config()
        try:
            r = v.put("/actions", {"action_type": "InstanceStart"})
        except Exception as e:
            ctx.check("%s: InstanceStart -> 400 at once, naming the file" % label, False,
                      "no answer in 8 s (%s)" % e)
            continue
        ok, d = is_error(r, 400, re.escape(p))
        if ok and (v.config() != base or v.state() != "Not started"):
            ok, d = False, "the configuration or state changed"
        ctx.check("%s: InstanceStart -> 400 at once, naming the file" % label, ok, d)
