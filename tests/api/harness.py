# SPDX-License-Identifier: MIT
"""Harness of the API suite: checks and their report, visor processes, an
HTTP/1.1 client over a Unix socket, raw sockets for malformed HTTP, and the
Firecracker swagger (firecracker-api.yaml) as JSON schemas.

A test is a function registered with @test(name); it gets a Ctx whose
check() prints one PASS/FAIL line per check.  Every visor a test starts is
killed when the test ends, whatever happens; an exception ends the test
with a FAIL line.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- report ------------------------------------------------------------------


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures = []

    def line(self, s):
        sys.stdout.write(s + "\n")
        sys.stdout.flush()

    def ok(self, name):
        self.passed += 1
        self.line("PASS: " + name)

    def fail(self, name, detail):
        self.failed += 1
        detail = " ".join(str(detail).split("\n"))
        self.failures.append((name, detail))
        self.line("FAIL: %s: %s" % (name, detail))

    def skip(self, name, reason):
        self.skipped += 1
        self.line("SKIP: %s: %s" % (name, reason))


REPORT = Report()
TESTS = []


def test(name):
    """Register a test function f(ctx)."""
    def deco(f):
        TESTS.append((name, f))
        return f
    return deco


def short(data, n=300):
    """A printable, bounded rendering of a request or response body."""
    if data is None:
        return ""
    if isinstance(data, (dict, list, tuple, int, float, bool)):
        data = json.dumps(data, default=lambda o: o.decode("utf-8", "backslashreplace")
                          if isinstance(o, bytes) else repr(o))
    if isinstance(data, bytes):
        data = data.decode("utf-8", "backslashreplace")
    data = data.replace("\r", "\\r").replace("\n", "\\n")
    if len(data) > n:
        data = data[:n] + "...(%d bytes)" % len(data)
    return data


# ---- the swagger ---------------------------------------------------------------


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.2 booleans only: Logger.level's enum has `Off`, which YAML 1.1
    (PyYAML's default) would turn into false."""


_SpecLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))


class Spec:
    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.load(f, Loader=_SpecLoader)
        self.defs = self.doc["definitions"]
        self.paths = self.doc["paths"]

    def definition(self, name):
        return self.defs[name]

    def resolve(self, schema):
        """A schema with a top-level $ref replaced by its definition."""
        while "$ref" in schema:
            schema = self.defs[schema["$ref"].split("/")[-1]]
        return schema

    def response_schema(self, path, method, status):
        """The schema of @status's response of @method @path in the YAML
        (falling back to `default`), or None if it has none."""
        op = self.paths[path][method.lower()]
        r = op["responses"].get(status, op["responses"].get(str(status)))
        if r is None:
            r = op["responses"].get("default")
        return r.get("schema") if r else None

    def body_schema(self, path, method):
        op = self.paths[path][method.lower()]
        for p in op.get("parameters", []):
            if p.get("in") == "body":
                return p["schema"]
        return None

    def operations(self):
        for path, ops in self.paths.items():
            for method in ops:
                if method in ("get", "put", "patch", "post", "delete"):
                    yield path, method.upper()

    def errors(self, schema, instance):
        """Draft-4 validation (Swagger 2.0's schema dialect) with $refs into
        the YAML's definitions; a list of messages, empty if valid."""
        full = dict(schema)
        full["definitions"] = self.defs
        v = jsonschema.Draft4Validator(full)
        return ["%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "(body)", e.message)
                for e in sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path))]


_SPEC = None


def spec():
    global _SPEC
    if _SPEC is None:
        _SPEC = Spec(os.environ.get("FC_API_YAML", os.path.join(HERE, "firecracker-api.yaml")))
    return _SPEC


# ---- HTTP over a Unix socket ------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over AF_UNIX: one keep-alive connection."""

    def __init__(self, path, timeout=5.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = raw_connect(self.unix_path, self.timeout)


class Resp:
    def __init__(self, method, path, req_body, status, reason, headers, body):
        self.method = method
        self.path = path
        self.req_body = req_body
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.json = None
        self.json_error = None
        if body:
            try:
                self.json = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                self.json_error = str(e)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def request_text(self):
        s = "%s %s" % (self.method, self.path)
        if self.req_body is not None:
            s += " " + short(self.req_body, 200)
        return s

    def __str__(self):
        return "%s -> %s %s" % (self.request_text(), self.status, short(self.body, 300))


class Client:
    """Requests to one visor over one keep-alive connection (reconnects
    when the server closed it)."""

    def __init__(self, sock_path, timeout=5.0):
        self.sock_path = sock_path
        self.timeout = timeout
        self.conn = None

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, headers=None, raw=None):
        """@body: a JSON value (serialised), or @raw: bytes as they are."""
        if self.conn is None:
            self.conn = UnixHTTPConnection(self.sock_path, self.timeout)
        h = {"Accept": "application/json"}
        data = None
        if raw is not None:
            data = raw
            h["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        try:
            try:
                self.conn.request(method, path, body=data, headers=h)
            except (BrokenPipeError, ConnectionResetError):
                # the server answered early (e.g. a 400 for the request
                # line) and closed: its answer may be waiting unread
                pass
            r = self.conn.getresponse()
            payload = r.read()
        except Exception:
            self.close()
            raise
        resp = Resp(method, path, body if raw is None else raw, r.status, r.reason,
                    r.getheaders(), payload)
        if r.will_close:
            self.close()
        return resp

    def get(self, path):
        return self.request("GET", path)

    def put(self, path, body=None, raw=None):
        return self.request("PUT", path, body, raw=raw)

    def patch(self, path, body=None, raw=None):
        return self.request("PATCH", path, body, raw=raw)


# ---- raw sockets -------------------------------------------------------------------


def raw_connect(path, timeout=5.0):
    """A connected AF_UNIX socket with @timeout.  A full listen backlog
    makes a non-blocking AF_UNIX connect() fail with EAGAIN at once instead
    of waiting: retried until @timeout."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            if time.monotonic() >= deadline:
                raise socket.timeout("connect: the listen backlog stayed full")
            time.sleep(0.002)
        except Exception:
            s.close()
            raise


def send_tolerant(s, data):
    """Send what the peer takes; the server may answer and close early (a
    413 after the headers): errors here are not failures."""
    try:
        s.sendall(data)
        return True
    except OSError:
        return False


def read_responses(s, count=1, timeout=5.0):
    """Read up to @count HTTP responses from @s; returns (list of
    (status, headers dict, body bytes), closed, leftover bytes).  Stops at
    EOF or after @timeout seconds without a complete response."""
    buf = b""
    out = []
    closed = False
    deadline = time.monotonic() + timeout
    while len(out) < count:
        # a complete response in the buffer?
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1")
            lines = head.split("\r\n")
            m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
            if not m:
                raise ValueError("not an HTTP response: %r" % short(buf[:200]))
            hdrs = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            status = int(m.group(1))
            n = 0 if status in (204, 304) or status < 200 else int(hdrs.get("content-length", "0"))
            if len(buf) >= end + 4 + n:
                out.append((status, hdrs, buf[end + 4:end + 4 + n]))
                buf = buf[end + 4 + n:]
                continue
        left = deadline - time.monotonic()
        if left <= 0 or closed:
            break
        try:
            s.settimeout(left)
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            continue
        if not chunk:
            closed = True
            continue
        buf += chunk
    return out, closed, buf


def wait_closed(s, timeout=3.0):
    """True if the peer closes @s within @timeout (data read is dropped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            if not s.recv(65536):
                return True
        except socket.timeout:
            return False
        except OSError:
            return True
    return False


# ---- files a VM needs ----------------------------------------------------------------


def tiny_elf_kernel(path):
    """A minimal x86-64 ELF "vmlinux" (one PT_LOAD at 1 MiB, entry: hlt;
    jmp .-1) that visor's loader accepts, so that InstanceStart gets as far
    as opening KVM."""
    import struct
    base = 0x100000
    code_off = 64 + 56
    code = b"\xf4\xeb\xfd"
    size = code_off + len(code)
    ehdr = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,
                       2, 62, 1, base + code_off, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    with open(path, "wb") as f:
        f.write(ehdr + phdr + code)
    return path


def have_kvm():
    return os.path.exists("/dev/kvm")


# ---- visor processes ---------------------------------------------------------------------


class Visor:
    """One visor in Firecracker mode.  Use Ctx.visor() to start one."""

    def __init__(self, ctx, binary, args, sock, name):
        self.ctx = ctx
        self.sock = sock
        self.args = [binary] + args
        base = os.path.join(ctx.tmp, name)
        self.out_path = base + ".stdout"
        self.err_path = base + ".stderr"
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=self.err, close_fds=True)
        self.client = Client(sock) if sock else None
        self.expected_exit = False
        self.stopped = False

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self, timeout=5.0):
        """Wait until the API socket accepts connections; False if visor
        exited or did not get there in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                s = raw_connect(self.sock, 0.5)
                s.close()
                return True
            except OSError:
                time.sleep(0.005)
        return False

    def alive(self):
        return self.proc.poll() is None

    def wait_exit(self, timeout=5.0):
        """Exit status, or None if still running after @timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr(self):
        if not self.err.closed:
            self.err.flush()
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stdout(self):
        if not self.out.closed:
            self.out.flush()
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def rss_kib(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def stop(self):
        """Kill (SIGTERM, then SIGKILL) and reap.  Returns the status it had
        exited with on its own before, or None if it was still running."""
        if self.client:
            self.client.close()
        if self.stopped:
            return None
        self.stopped = True
        before = self.proc.poll()
        if before is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(2)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            except ProcessLookupError:
                pass
        self.out.close()
        self.err.close()
        return before

    # shortcuts
    def get(self, path):
        return self.client.get(path)

    def put(self, path, body=None, raw=None):
        return self.client.put(path, body, raw=raw)

    def patch(self, path, body=None, raw=None):
        return self.client.patch(path, body, raw=raw)

    def request(self, *a, **kw):
        return self.client.request(*a, **kw)

    def config(self):
        """GET /vm/config as JSON (raises if it is not a 200 with JSON)."""
        r = self.get("/vm/config")
        if r.status != 200 or r.json is None:
            raise AssertionError("GET /vm/config: %s" % r)
        return r.json

    def state(self):
        r = self.get("/")
        if r.status != 200 or not isinstance(r.json, dict):
            raise AssertionError("GET /: %s" % r)
        return r.json.get("state")


class SetupError(Exception):
    """A precondition of a test failed (reported once, as a FAIL)."""


class Ctx:
    def __init__(self, name, binary):
        self.name = name
        self.binary = binary
        self.tmp = tempfile.mkdtemp(prefix="visor-api-")
        self.visors = []
        self.nvisor = 0

    # ---- files ----
    def path(self, name):
        return os.path.join(self.tmp, name)

    def file(self, name, data=b"", size=None):
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(data)
            if size:
                f.truncate(size)
        return p

    def kernel(self):
        p = self.path("vmlinux")
        if not os.path.exists(p):
            tiny_elf_kernel(p)
        return p

    # ---- processes ----
    def visor(self, *extra, sock=True, ready=True, binary=None):
        """Start visor in Firecracker mode with its API socket in the test's
        temp dir (sock=False: no --api-sock; sock=PATH: that path)."""
        self.nvisor += 1
        args = list(extra)
        path = None
        if sock:
            path = sock if isinstance(sock, str) else self.path("api%d.sock" % self.nvisor)
            args = ["--api-sock", path] + args
        v = Visor(self, binary or self.binary, args, path, "visor%d" % self.nvisor)
        self.visors.append(v)
        if sock and ready and not v.wait_ready():
            v.expected_exit = True
            raise SetupError("visor %s did not start serving its API socket (exit %s): %s" % (
                " ".join(args), v.proc.poll(), short(v.stderr(), 400)))
        return v

    def run(self, args, timeout=5.0, binary=None):
        """Run visor to completion: (exit status or None on timeout, stdout,
        stderr)."""
        self.nvisor += 1
        v = Visor(self, binary or self.binary, list(args), None, "run%d" % self.nvisor)
        v.expected_exit = True
        self.visors.append(v)
        code = v.wait_exit(timeout)
        if code is None:
            v.stop()
        return code, v.stdout(), v.stderr()

    # ---- checks ----
    def check(self, name, ok, detail=""):
        full = "%s: %s" % (self.name, name) if name else self.name
        if ok:
            REPORT.ok(full)
        else:
            REPORT.fail(full, detail or "failed")
        return ok

    def skip(self, name, reason):
        REPORT.skip("%s: %s" % (self.name, name) if name else self.name, reason)

    def cleanup(self):
        for v in self.visors:
            status = v.stop()
            if status is not None and not v.expected_exit:
                how = ("killed by signal %d" % -status) if status < 0 else ("exit %d" % status)
                REPORT.fail("%s: visor (pid %d) stayed alive" % (self.name, v.pid),
                            "it died during the test (%s); stderr: %s" %
                            (how, short(v.stderr(), 300)))
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---- common verdicts ---------------------------------------------------------------------
# Each returns (ok, detail).


def is_204(r):
    if r.status != 204:
        return False, "expected 204: %s" % r
    if r.body:
        return False, "204 with a body: %s" % r
    cl = r.header("Content-Length")
    if cl not in (None, "0"):
        return False, "204 with Content-Length %s: %s" % (cl, r)
    return True, ""


def is_200(r, path, method="GET"):
    """200 with a JSON body valid against the YAML's schema of that
    response."""
    if r.status != 200:
        return False, "expected 200: %s" % r
    if r.json is None:
        return False, "200 without a JSON body (%s): %s" % (r.json_error or "empty", r)
    schema = spec().response_schema(path, method, 200)
    errs = spec().errors(schema, r.json) if schema else []
    if errs:
        return False, "body does not match the YAML schema (%s): %s" % ("; ".join(errs[:4]), r)
    ct = r.header("Content-Type") or ""
    if "application/json" not in ct:
        return False, "Content-Type %r is not application/json: %s" % (ct, r)
    return True, ""


def is_error(r, status=400, mention=None):
    """@status (an int, or a tuple of accepted ones) with a body valid
    against the YAML's Error: {"fault_message": string}; @mention: a regex
    the fault must match (case-insensitive)."""
    want = status if isinstance(status, tuple) else (status,)
    if r.status not in want:
        return False, "expected %s: %s" % ("/".join(map(str, want)), r)
    if not isinstance(r.json, dict):
        return False, "error body is not a JSON object (%s): %s" % (r.json_error or "empty", r)
    errs = spec().errors({"$ref": "#/definitions/Error"}, r.json)
    if errs:
        return False, "error body does not match Error (%s): %s" % ("; ".join(errs), r)
    fm = r.json.get("fault_message")
    if not isinstance(fm, str) or not fm.strip():
        return False, "no fault_message string: %s" % r
    if mention and not re.search(mention, fm, re.I):
        return False, "fault_message does not mention /%s/: %s" % (mention, r)
    return True, ""


def both(*verdicts):
    for ok, detail in verdicts:
        if not ok:
            return False, detail
    return True, ""


def subset_diff(want, got, where=""):
    """Differences where @got lacks or changes something of @want (a JSON
    value; dict keys of @want must be in @got with equal values,
    recursively; lists compare element by element)."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return ["%s: expected an object, got %s" % (where or "(top)", short(got, 80))]
        out = []
        for k, v in want.items():
            if k not in got:
                out.append("%s/%s: missing" % (where, k))
            else:
                out += subset_diff(v, got[k], "%s/%s" % (where, k))
        return out
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return ["%s: expected %s, got %s" % (where, short(want, 120), short(got, 120))]
        out = []
        for i, (a, b) in enumerate(zip(want, got)):
            out += subset_diff(a, b, "%s[%d]" % (where, i))
        return out
    if want != got or type(want) is not type(got):
        return ["%s: expected %s, got %s" % (where, short(want, 80), short(got, 80))]
    return []


def run_all(binary, only=None):
    t0 = time.monotonic()
    for name, f in TESTS:
        if only and not any(o in name for o in only):
            continue
        ctx = Ctx(name, binary)
        try:
            f(ctx)
        except SetupError as e:
            REPORT.fail(name, "setup: %s" % e)
        except Exception as e:  # a check that could not complete
            tb = traceback.extract_tb(e.__traceback__)
            where = ("%s:%d" % (os.path.basename(tb[-1].filename), tb[-1].lineno)) if tb else ""
            REPORT.fail(name, "exception %s: %s (at %s)" % (type(e).__name__, e, where))
        finally:
            ctx.cleanup()
    return time.monotonic() - t0
