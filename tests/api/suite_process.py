# SPDX-License-Identifier: MIT
"""The process around the API: the socket file, Firecracker's command line
(also through a `firecracker` symlink), and --config-file."""
import json
import os
import re
import shutil
import socket
import stat

import fixtures
from harness import is_200, short, subset_diff, test

VERSION_RE = r"\d+\.\d+"


def error_lines(text):
    return [l for l in text.splitlines() if "error:" in l]


def one_error(code, out, err, mention=None, status=1):
    """Exit @status with exactly one "error:" line on stderr that matches
    the regex @mention: (ok, detail)."""
    if code is None:
        return False, "still running after 5 s (killed); stderr: %s" % short(err)
    lines = error_lines(err)
    if code != status:
        return False, "exit status %s (expected %d); stderr: %s" % (code, status, short(err))
    if len(lines) != 1:
        return False, "%d 'error:' lines (expected 1): %s" % (len(lines), short(err, 500))
    if mention and not re.search(mention, lines[0], re.I):
        return False, "the error line does not mention /%s/: %s" % (mention, lines[0])
    return True, ""


def firecracker_link(ctx):
    p = ctx.path("firecracker")
    if not os.path.exists(p):
        os.symlink(ctx.binary, p)
    return p


@test("socket file")
def socket_file(ctx):
    v = ctx.visor()
    st = os.lstat(v.sock)
    ctx.check("the API socket is a socket with mode 0600",
              stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600,
              "mode %o" % st.st_mode)
    code, out, err = ctx.run(["--api-sock", v.sock])
    ctx.check("a second visor on the live socket exits 1 with one clear error naming the path",
              *one_error(code, out, err, re.escape(v.sock)))
    st2 = os.lstat(v.sock)
    ok, d = is_200(v.get("/"), "/")
    ctx.check("the first visor keeps serving on the same socket file",
              ok and st2.st_ino == st.st_ino and v.alive(), d or "inode %d -> %d" % (
                  st.st_ino, st2.st_ino))
    # a stale socket: bound, then its owner went away
    stale = ctx.path("stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    v2 = ctx.visor(sock=stale, ready=False)
    ready = v2.wait_ready()
    ok, d = is_200(v2.get("/"), "/") if ready else (False, "did not serve: %s" % short(v2.stderr()))
    ctx.check("a stale socket file (nobody listening) is replaced and served", ok, d)
    if ready:
        m = stat.S_IMODE(os.lstat(stale).st_mode)
        ctx.check("the replaced socket has mode 0600", m == 0o600, "mode %o" % m)
    # things that are not sockets are left alone
    reg = ctx.file("regular", b"precious\n")
    code, out, err = ctx.run(["--api-sock", reg])
    ctx.check("a regular file at the socket path: exit 1 with one clear error naming it",
              *one_error(code, out, err, re.escape(reg)))
    ctx.check("... and the file is untouched",
              os.path.isfile(reg) and not os.path.islink(reg) and open(reg, "rb").read() ==
              b"precious\n", "now: %s" % (str(os.lstat(reg)) if os.path.lexists(reg) else "gone"))
    target = ctx.file("target", b"keep\n")
    link = ctx.path("link.sock")
    os.symlink(target, link)
    code, out, err = ctx.run(["--api-sock", link])
    ctx.check("a symlink at the socket path: exit 1 with one clear error",
              *one_error(code, out, err, re.escape(link)))
    ctx.check("... the symlink and its target are untouched",
              os.path.islink(link) and open(target, "rb").read() == b"keep\n", "")
    d = ctx.path("adir")
    os.mkdir(d)
    code, out, err = ctx.run(["--api-sock", d])
    ctx.check("a directory at the socket path: exit 1 with one clear error",
              *one_error(code, out, err, re.escape(d)))
    ctx.check("... the directory is untouched", os.path.isdir(d), "")
    code, out, err = ctx.run(["--api-sock", ctx.path("nodir/api.sock")])
    ctx.check("a socket path in a missing directory: exit 1 with one clear error",
              *one_error(code, out, err, r"nodir"))
    code, out, err = ctx.run(["--api-sock", ctx.path("s" * 120)])
    ctx.check("a socket path longer than sun_path: exit 1 with one clear error",
              *one_error(code, out, err, r"long|path|108|107"))


@test("command line")
def command_line(ctx):
    fc = firecracker_link(ctx)
    sock = ctx.path("cli.sock")
    for prog, binary in (("visor", ctx.binary), ("firecracker", fc)):
        code, out, err = ctx.run(["--bogus-flag"], binary=binary)
        ctx.check("%s --bogus-flag: exit 1, one error line naming it" % prog,
                  *one_error(code, out, err, r"--bogus-flag"))
        code, out, err = ctx.run(["--api-sock", sock, "--bogus-flag=1"], binary=binary)
        ctx.check("%s --api-sock S --bogus-flag=1: exit 1, one error line naming it" % prog,
                  *one_error(code, out, err, r"--bogus-flag"))
        code, out, err = ctx.run(["--version"], binary=binary)
        ctx.check("%s --version: exit 0, prints a version" % prog,
                  code == 0 and re.search(VERSION_RE, out) is not None and not error_lines(err),
                  "exit %s, stdout %s, stderr %s" % (code, short(out), short(err)))
        code, out, err = ctx.run(["--help"], binary=binary)
        ctx.check("%s --help: exit 0, usage with --api-sock and --config-file" % prog,
                  code == 0 and "--api-sock" in out and "--config-file" in out or
                  code == 0 and prog == "visor" and "--api-sock" in out,
                  "exit %s, stdout %s" % (code, short(out)))
        code, out, err = ctx.run(["--no-api"], binary=binary)
        ctx.check("%s --no-api without --config-file: exit 1, one error naming --config-file" %
                  prog, *one_error(code, out, err, r"--config-file"))
        code, out, err = ctx.run(["--api-sock"], binary=binary)
        ctx.check("%s --api-sock without a value: exit 1, one error naming it" % prog,
                  *one_error(code, out, err, r"--api-sock"))
        for opt, val in (("--http-api-max-payload-size", "abc"),
                         ("--http-api-max-payload-size", "-5"), ("--id", "bad.id"),
                         ("--id", "x" * 65), ("--level", "Loud")):
            code, out, err = ctx.run(["--api-sock", sock, opt, val], binary=binary)
            ctx.check("%s %s %s: exit 1, one error naming %s" % (prog, opt, short(val, 20), opt),
                      *one_error(code, out, err, re.escape(opt)))
        ctx.check("no socket was left behind by the refused command lines",
                  not os.path.exists(sock), sock)
    v = ctx.visor("--id", "vm_1", binary=fc)
    r = v.get("/")
    ok, d = is_200(r, "/")
    ctx.check("firecracker --api-sock S --id vm_1: GET / -> 200 with id 'vm_1'",
              ok and r.json.get("id") == "vm_1", d or str(r))
    ok, d = is_200(v.get("/version"), "/version")
    ctx.check("firecracker symlink: GET /version -> 200", ok, d)
    v2 = ctx.visor("--level", "Debug", "--show-level", "--boot-timer", "--no-seccomp",
                   "--http-api-max-payload-size", "4096")
    ok, d = is_200(v2.get("/"), "/")
    ctx.check("Firecracker flags --level --show-level --boot-timer --no-seccomp "
              "--http-api-max-payload-size are accepted", ok, d)


def complete_config(ctx, nics=True):
    k = ctx.kernel()
    cfg = {
        "boot-source": {"kernel_image_path": k, "boot_args": "console=ttyS0 reboot=k panic=1",
                        "initrd_path": ctx.file("initrd.img", b"\0" * 4096)},
        "drives": [
            {"drive_id": "rootfs", "path_on_host": ctx.file("rootfs.img", size=1 << 20),
             "is_root_device": True, "is_read_only": False},
            {"drive_id": "data", "path_on_host": ctx.file("data.img", size=1 << 20),
             "is_root_device": False, "is_read_only": True, "cache_type": "Writeback",
             "rate_limiter": fixtures.rate_limiter()},
        ],
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "smt": False,
                           "track_dirty_pages": False},
        "network-interfaces": [
            {"iface_id": "eth0", "guest_mac": "06:00:ac:10:00:02", "host_dev_name": "vtapcf0"}],
        "vsock": {"guest_cid": 3, "uds_path": ctx.path("cf-vsock.sock")},
        "balloon": {"amount_mib": 16, "deflate_on_oom": True, "stats_polling_interval_s": 1},
        "entropy": {},
    }
    if not nics:
        del cfg["network-interfaces"]
    return cfg


def via_api(ctx, v, cfg):
    """Apply a config file's sections through the API, in the file's order
    of dependencies."""
    steps = [("PUT", "/machine-config", cfg.get("machine-config"))]
    steps.append(("PUT", "/boot-source", cfg["boot-source"]))
    for d in cfg.get("drives", []):
        steps.append(("PUT", "/drives/" + d["drive_id"], d))
    for n in cfg.get("network-interfaces", []):
        steps.append(("PUT", "/network-interfaces/" + n["iface_id"], n))
    for sec in ("vsock", "balloon", "entropy"):
        if sec in cfg:
            steps.append(("PUT", "/" + sec, cfg[sec]))
    for method, path, body in steps:
        if body is None:
            continue
        r = v.request(method, path, body)
        if r.status != 204:
            return "%s" % r
    return None


def semantic_diff(file_cfg, got):
    diffs = []
    for sec, want in file_cfg.items():
        have = got.get(sec)
        if isinstance(want, list):
            key = "drive_id" if sec == "drives" else "iface_id"
            by = {x.get(key): x for x in have or [] if isinstance(x, dict)}
            if len(have or []) != len(want):
                diffs.append("%s: %d entries, expected %d" % (sec, len(have or []), len(want)))
            for w in want:
                diffs += subset_diff(w, by.get(w[key]), "%s[%s]" % (sec, w[key]))
        else:
            diffs += subset_diff(want, have, sec)
    return diffs


def netns_prefix():
    """Run visor in a throwaway network namespace (as root, with unshare)
    so that nothing it does with taps touches the host."""
    u = shutil.which("unshare")
    if u and os.geteuid() == 0:
        return [u, "--net", "--"]
    return None


def start_reaches_kvm(ctx, cfg_path, label, use_netns):
    """visor --config-file F with a missing KVM device: the file is fully
    accepted when the one failure is opening KVM."""
    kvm = ctx.path("no-such-kvm")
    args = ["--api-sock", ctx.path("cf.sock"), "--config-file", cfg_path, "--kvm", kvm]
    if use_netns:
        pre = netns_prefix()
        code, out, err = ctx.run(pre[1:] + [ctx.binary] + args, binary=pre[0])
    else:
        code, out, err = ctx.run(args)
    lines = error_lines(err)
    ok = code == 1 and lines and all("no-such-kvm" in l or "kvm" in l.lower() for l in lines)
    ctx.check("%s: accepted, visor gets as far as opening KVM (exit 1, only KVM errors)" % label,
              ok, "exit %s; stderr: %s" % (code, short(err, 600)))


@test("config file")
def config_file(ctx):
    netns = netns_prefix()
    cfg = complete_config(ctx, nics=True)
    # The same configuration through the API
    v = ctx.visor()
    err = via_api(ctx, v, cfg)
    ctx.check("the config file's sections through the API -> 204 each", err is None, err or "")
    r = v.get("/vm/config")
    ok, d = is_200(r, "/vm/config")
    ctx.check("GET /vm/config of the API-built VM -> 200 FullVmConfiguration", ok, d)
    if ok:
        diffs = semantic_diff(cfg, r.json)
        ctx.check("GET /vm/config of the API-built VM equals the config file (semantically)",
                  not diffs, "; ".join(diffs))
    # The file itself, started with KVM unavailable
    fpath = ctx.file("vm.json", json.dumps(cfg, indent=2).encode())
    if netns:
        start_reaches_kvm(ctx, fpath, "--config-file with every section", True)
    else:
        ctx.skip("--config-file with network-interfaces", "needs root and unshare(1) to keep the "
                 "tap out of the host's network namespace")
    nonet = complete_config(ctx, nics=False)
    start_reaches_kvm(ctx, ctx.file("vm-nonet.json", json.dumps(nonet).encode()),
                      "--config-file without network-interfaces", False)
    if ok:
        exported = ctx.file("exported.json", r.body)
        if netns:
            start_reaches_kvm(ctx, exported, "GET /vm/config output as --config-file", True)
        else:
            ctx.skip("GET /vm/config output as --config-file", "it has network-interfaces; "
                     "needs root and unshare(1)")
    minimal = {"boot-source": {"kernel_image_path": ctx.kernel()}}
    start_reaches_kvm(ctx, ctx.file("minimal.json", json.dumps(minimal).encode()),
                      "--config-file with only a boot-source", False)
    start_reaches_kvm(ctx, ctx.file("nulls.json", json.dumps(dict(
        minimal, **{"drives": [], "network-interfaces": [], "balloon": None, "vsock": None,
                    "logger": None, "metrics": None, "mmds-config": None})).encode()),
        "--config-file with empty and null sections", False)


BAD_FILES = [
    ("invalid JSON", '{"boot-source": {"kernel_image_path": "@k"', r"json|pars|syntax|unexpected"
     r"|unterminated|end of"),
    ("not an object", '["boot-source"]', r"object"),
    ("empty file", "", r"json|empty|pars|unexpected|end of"),
    ("unknown top-level key", {"bogus-section": {}}, r"bogus-section"),
    ("vcpu_count 0", {"machine-config": {"vcpu_count": 0, "mem_size_mib": 128}}, r"vcpu_count"),
    ("vcpu_count 2^64", {"machine-config": {"vcpu_count": 2 ** 64, "mem_size_mib": 128}},
     r"vcpu_count"),
    ("mem_size_mib a string", {"machine-config": {"vcpu_count": 1, "mem_size_mib": "128"}},
     r"mem_size_mib"),
    ("unknown field in a drive", {"drives": [{"drive_id": "d0", "path_on_host": "@d",
                                              "is_root_device": False, "is_read_only": False,
                                              "bogus_field": 1}]}, r"bogus_field"),
    ("drive without drive_id", {"drives": [{"path_on_host": "@d", "is_root_device": False,
                                            "is_read_only": False}]}, r"drive_id"),
    ("drive id with a '-'", {"drives": [{"drive_id": "d-0", "path_on_host": "@d",
                                         "is_root_device": False, "is_read_only": False}]},
     r"d-0|drive_id|id"),
    ("network interface with a bad guest_mac", {"network-interfaces": [
        {"iface_id": "eth0", "host_dev_name": "vtapx", "guest_mac": "zz"}]}, r"guest_mac|zz"),
    ("drives is an object", {"drives": {"drive_id": "d0"}}, r"drives"),
    ("MMDS configured", {"mmds-config": {"network_interfaces": ["eth0"]}}, r"mmds"),
    ("no boot-source", None, r"boot"),
]


@test("config file errors")
def config_errors(ctx):
    k = ctx.kernel()
    d = ctx.file("d.img", size=1 << 20)
    sock = ctx.path("cfe.sock")
    for label, content, mention in BAD_FILES:
        if content is None:
            text = json.dumps({"machine-config": {"vcpu_count": 1, "mem_size_mib": 128}})
        elif isinstance(content, dict):
            c = dict(content)
            c.setdefault("boot-source", {"kernel_image_path": k})
            text = json.dumps(c).replace('"@d"', json.dumps(d))
        else:
            text = content.replace("@k", k)
        f = ctx.file("bad.json", text.encode())
        code, out, err = ctx.run(["--api-sock", sock, "--config-file", f, "--kvm",
                                  ctx.path("no-such-kvm")])
        ctx.check("--config-file with %s: exit 1, one error line naming the problem" % label,
                  *one_error(code, out, err, mention))
    code, out, err = ctx.run(["--no-api", "--config-file", ctx.path("missing.json")])
    ctx.check("--config-file missing: exit 1, one error line naming the file",
              *one_error(code, out, err, r"missing\.json"))
    code, out, err = ctx.run(["--api-sock", sock, "--config-file", ctx.tmp])
    ctx.check("--config-file a directory: exit 1, one error line", *one_error(code, out, err))
    fifo = ctx.path("fifo.json")
    os.mkfifo(fifo)
    code, out, err = ctx.run(["--api-sock", sock, "--config-file", fifo])
    ctx.check("--config-file a FIFO nobody writes: exit 1 at once, one error line",
              *one_error(code, out, err, r"fifo|regular"))
    ctx.check("no socket left behind by the refused config files", not os.path.exists(sock),
              sock)


# Mistakes that only the setters catch (values, not JSON shape): the file
# must report them in the API's own words.  (label, file sections)
AGREE = [
    ("vcpu_count 0", {"machine-config": {"vcpu_count": 0, "mem_size_mib": 128}}),
    ("mem_size_mib 1", {"machine-config": {"vcpu_count": 1, "mem_size_mib": 1}}),
    ("two root drives", {"drives": [
        {"drive_id": "a", "path_on_host": "@a", "is_root_device": True, "is_read_only": False},
        {"drive_id": "b", "path_on_host": "@b", "is_root_device": True, "is_read_only": False}]}),
    ("two interfaces on one tap", {"network-interfaces": [
        {"iface_id": "n0", "host_dev_name": "vtap0"},
        {"iface_id": "n1", "host_dev_name": "vtap0"}]}),
    ("a broadcast guest_mac", {"network-interfaces": [
        {"iface_id": "n0", "host_dev_name": "vtap0", "guest_mac": "ff:ff:ff:ff:ff:ff"}]}),
    ("mtu 67", {"network-interfaces": [{"iface_id": "n0", "host_dev_name": "vtap0", "mtu": 67}]}),
    ("vsock guest_cid 2", {"vsock": {"guest_cid": 2, "uds_path": "@v.sock"}}),
    ("a balloon larger than memory", {"machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
                                      "balloon": {"amount_mib": 200, "deflate_on_oom": False}}),
    ("a rate limiter bucket without refill_time", {"drives": [
        {"drive_id": "a", "path_on_host": "@a", "is_root_device": False, "is_read_only": False,
         "rate_limiter": {"bandwidth": {"size": 100, "refill_time": 0}}}]}),
]


def fill(ctx, x):
    if isinstance(x, dict):
        return {k: fill(ctx, y) for k, y in x.items()}
    if isinstance(x, list):
        return [fill(ctx, y) for y in x]
    if isinstance(x, str) and x.startswith("@"):
        p = ctx.path(x[1:])
        if not p.endswith(".sock") and not os.path.exists(p):
            ctx.file(x[1:], size=1 << 20)
        return p
    return x


@test("config file and API agree")
def agree(ctx):
    k = ctx.kernel()
    for label, sections in AGREE:
        cfg = fill(ctx, dict(sections, **{"boot-source": {"kernel_image_path": k}}))
        v = ctx.visor()
        fault = None
        r = None
        order = ["machine-config", "boot-source", "drives", "network-interfaces", "vsock",
                 "balloon"]
        for sec in order:
            if sec not in cfg:
                continue
            items = cfg[sec] if isinstance(cfg[sec], list) else [cfg[sec]]
            for it in items:
                path = "/" + sec
                if sec == "drives":
                    path = "/drives/" + it["drive_id"]
                elif sec == "network-interfaces":
                    path = "/network-interfaces/" + it["iface_id"]
                r = v.put(path, it)
                if r.status != 204:
                    break
            if r is not None and r.status != 204:
                break
        if r is None or r.status != 400 or not isinstance(r.json, dict):
            ctx.check("%s: the API refuses it" % label, False, "last answer: %s" % r)
            v.stop()
            continue
        fault = r.json.get("fault_message", "")
        v.stop()
        f = ctx.file("agree.json", json.dumps(cfg).encode())
        code, out, err = ctx.run(["--api-sock", ctx.path("agree.sock"), "--config-file", f,
                                  "--kvm", ctx.path("no-such-kvm")])
        ok, d = one_error(code, out, err, re.escape(fault))
        ctx.check("%s: --config-file reports it in the API's words (%s)" % (label, short(fault, 80)),
                  ok, d)
