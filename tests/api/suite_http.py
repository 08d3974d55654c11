# SPDX-License-Identifier: MIT
"""Hostile HTTP and JSON (hostile-input checklist, section C): malformed
requests, oversized request lines, headers and bodies, bad and duplicate
Content-Length, chunked bodies, deep nesting, invalid UTF-8, many, slow and
vanishing clients.  After each: 4xx, nothing changed, and visor keeps
answering."""
import json
import socket
import threading
import time

from harness import is_204, is_error, raw_connect, read_responses, send_tolerant, short, test

MC = {"vcpu_count": 2, "mem_size_mib": 256}   # a valid change, so a misparse shows


def answering(v, timeout=2.0):
    """visor is alive and a new connection gets GET / -> 200 within
    @timeout seconds: (ok, detail)."""
    if not v.alive():
        return False, "visor exited (status %s)" % v.proc.poll()
    t0 = time.monotonic()
    try:
        s = raw_connect(v.sock, timeout)
        send_tolerant(s, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        out, _, _ = read_responses(s, 1, timeout)
        s.close()
    except OSError as e:
        return False, "GET / on a new connection: %s" % e
    if not out or out[0][0] != 200:
        return False, "GET / on a new connection: %s" % short(out)
    dt = time.monotonic() - t0
    if dt > timeout:
        return False, "GET / took %.2f s" % dt
    return True, ""


def raw_verdict(out, statuses, closed=None):
    """One response with a status in @statuses and an Error body."""
    if not out:
        return False, "no response (connection %s)" % ("closed" if closed else "open")
    st, hdrs, body = out[0]
    if st not in statuses:
        return False, "expected %s, got %d %s" % (fmt(statuses), st, short(body))
    if st >= 400:
        try:
            j = json.loads(body)
            ok = isinstance(j, dict) and isinstance(j.get("fault_message"), str)
        except ValueError:
            ok = False
        if not ok:
            return False, "%d without an Error body: %s" % (st, short(body))
    return True, ""


def fmt(statuses):
    """(400, 401, ..., 499) -> "4xx"; (414, 400) -> "414/400"."""
    s = set(statuses)
    if set(range(400, 500)) <= s:
        rest = sorted(s - set(range(400, 500)))
        return "/".join(["4xx"] + [str(x) for x in rest])
    return "/".join(str(x) for x in statuses)


def exchange(v, data, count=1, timeout=3.0, shut=False):
    s = raw_connect(v.sock)
    send_tolerant(s, data)
    if shut:
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    out, closed, _ = read_responses(s, count, timeout)
    s.close()
    return out, closed


def put_raw(path, body, extra=b"", length=None):
    n = len(body) if length is None else length
    return (b"PUT %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\n\r\n" % (path.encode(), extra, n)) + body


def check_unchanged(ctx, v, base, name, ok_detail):
    """@ok_detail: the verdict on the answer; then GET /vm/config must
    equal @base (a snapshot taken before the request) and visor must keep
    answering."""
    ok, detail = ok_detail
    if ok:
        try:
            after = v.config()
            if after != base:
                ok, detail = False, "GET /vm/config changed: %s -> %s" % (short(base, 300),
                                                                          short(after, 300))
        except Exception as e:
            ok, detail = False, "GET /vm/config afterwards: %s" % e
    if ok:
        ok, detail = answering(v)
    return ctx.check(name, ok, detail)


@test("malformed HTTP")
def malformed(ctx):
    v = ctx.visor()
    base = v.config()
    body = json.dumps(MC).encode()
    cases = [
        ("request line ended by a bare CR", b"GET / HTTP/1.1\rHost: x\r\n\r\n", (400,)),
        ("bare CR inside a header value", b"GET / HTTP/1.1\r\nHost: local\rhost\r\n\r\n", (400,)),
        ("bare CR line ends in a PUT", b"PUT /machine-config HTTP/1.1\rContent-Length: %d\r\r%s"
         % (len(body), body) + b"\r\n\r\n", (400,)),
        ("no HTTP version", b"GET /\r\n\r\n", (400,)),
        ("extra spaces in the request line", b"GET  /  HTTP/1.1\r\n\r\n", (400,)),
        ("NUL before the method", b"\x00GET / HTTP/1.1\r\n\r\n", (400,)),
        ("byte 0xff in the path", b"GET /\xff HTTP/1.1\r\n\r\n", (400,)),
        ("DEL in the method", b"G\x7fT / HTTP/1.1\r\n\r\n", (400,)),
        ("not HTTP", b"FOO / BAR/1.1\r\n\r\n", (400,)),
        ("'..' in the path", b"GET /drives/../machine-config HTTP/1.1\r\n\r\n", (400,)),
        ("header without a colon", b"GET / HTTP/1.1\r\nno-colon-here\r\n\r\n", (400,)),
        ("folded header line", b"GET / HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n", (400,)),
        ("space before the colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", (400,)),
        ("binary garbage", bytes(range(1, 256)) + b"\r\n\r\n", (400, 414)),
    ]
    for label, data, statuses in cases:
        base = v.config()
        out, closed = exchange(v, data)
        check_unchanged(ctx, v, base, "%s -> %s" % (label, fmt(statuses)),
                        raw_verdict(out, statuses, closed))
    # A request line that never ends: a 4xx, or the connection closed
    # once the client half-closes; never a hang.
    s = raw_connect(v.sock)
    s.sendall(b"GET / HTTP/1.1")
    s.shutdown(socket.SHUT_WR)
    out, closed, _ = read_responses(s, 1, 3)
    s.close()
    ok = (closed and not out) or (bool(out) and 400 <= out[0][0] < 500)
    check_unchanged(ctx, v, base, "request without any CRLF, then EOF -> 4xx or closed",
                    (ok, "got %s, closed %s" % (short(out), closed)))
    # Bare LF line ends are allowed by RFC 9112 2.2 (or refused): an answer
    # either way.
    out, closed = exchange(v, b"GET /machine-config HTTP/1.1\nHost: x\n\n")
    check_unchanged(ctx, v, base, "bare LF line ends -> 200 (RFC 9112 2.2) or 400",
                    raw_verdict(out, (200, 400), closed))


@test("oversized request line and headers")
def oversized_head(ctx):
    v = ctx.visor()
    base = v.config()
    rss0 = v.rss_kib()
    out, closed = exchange(v, b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\n\r\n")
    check_unchanged(ctx, v, base, "1 MiB request line -> 414 (or 400)",
                    raw_verdict(out, (414, 400), closed))
    hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(10000))
    out, closed = exchange(v, b"GET / HTTP/1.1\r\n" + hdrs + b"\r\n")
    check_unchanged(ctx, v, base, "10^4 header lines -> 431 (or 400)",
                    raw_verdict(out, (431, 400), closed))
    out, closed = exchange(v, b"GET / HTTP/1.1\r\nX-Big: " + b"b" * (1 << 20) + b"\r\n\r\n")
    check_unchanged(ctx, v, base, "one 1 MiB header -> 431 (or 400)",
                    raw_verdict(out, (431, 400), closed))
    # many of them at once
    socks = []
    for i in range(20):
        s = raw_connect(v.sock)
        send_tolerant(s, b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 200000)
        socks.append(s)
    ok, d = answering(v)
    for s in socks:
        s.close()
    ctx.check("20 clients each sending a 200 KB header: others still answered", ok, d)
    rss1 = v.rss_kib()
    ctx.check("memory stays bounded (RSS grew by less than 16 MiB)",
              rss0 is not None and rss1 is not None and rss1 - rss0 < 16384,
              "RSS %s KiB -> %s KiB" % (rss0, rss1))


@test("Content-Length and Transfer-Encoding")
def lengths(ctx):
    v = ctx.visor()
    base = v.config()
    body = json.dumps(MC).encode()
    n = len(body)
    cases = [
        ("Content-Length: abc", b"Content-Length: abc\r\n", (400,)),
        ("Content-Length: -1", b"Content-Length: -1\r\n", (400,)),
        ("Content-Length: 1.5", b"Content-Length: 1.5\r\n", (400,)),
        ("Content-Length: +%d" % n, b"Content-Length: +%d\r\n" % n, (400,)),
        ("Content-Length: 0x%x" % n, b"Content-Length: 0x%x\r\n" % n, (400,)),
        ("empty Content-Length", b"Content-Length: \r\n", (400,)),
        ("Content-Length: 2^64", b"Content-Length: 18446744073709551616\r\n", (400, 413)),
        ("Content-Length: 10^30", b"Content-Length: 1" + b"0" * 30 + b"\r\n", (400, 413)),
        ("two different Content-Length headers",
         b"Content-Length: %d\r\nContent-Length: %d\r\n" % (n, n + 5), (400,)),
        ("Content-Length: %d, %d" % (n, n + 5), b"Content-Length: %d, %d\r\n" % (n, n + 5),
         (400,)),
        ("Content-Length and Transfer-Encoding: chunked",
         b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % n, tuple(range(400, 500))),
    ]
    for label, hdr, statuses in cases:
        base = v.config()
        data = (b"PUT /machine-config HTTP/1.1\r\nHost: localhost\r\n" + hdr + b"\r\n" + body)
        out, closed = exchange(v, data)
        check_unchanged(ctx, v, base, "%s -> %s, no change" % (label, fmt(statuses)),
                        raw_verdict(out, statuses, closed))
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (n, body)
    data = (b"PUT /machine-config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
            b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    out, closed = exchange(v, data)
    check_unchanged(ctx, v, base, "Transfer-Encoding: chunked -> 4xx, no change",
                    raw_verdict(out, tuple(range(400, 500)), closed))
    data = (b"PUT /machine-config HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (n, body))
    out, closed = exchange(v, data)
    check_unchanged(ctx, v, base, "Transfer-Encoding: gzip -> 4xx or 501 (RFC 9112 6.1), "
                    "no change", raw_verdict(out, tuple(range(400, 500)) + (501,), closed))
    # A body longer than its Content-Length: the rest is the next request
    # on the connection (here garbage: 400), never part of this body.
    data = put_raw("/machine-config", body + b"XYZ garbage\r\n\r\n", length=n)
    out, closed = exchange(v, data, count=2)
    ok = len(out) == 2 and out[0][0] == 204 and 400 <= out[1][0] < 500
    ctx.check("body longer than Content-Length: request, then 4xx for the rest",
              ok, "got %s" % short(out))
    ctx.check("... and the first request took effect",
              (v.get("/machine-config").json or {}).get("vcpu_count") == 2,
              str(v.get("/machine-config")))


def padded(body, size):
    """@body (bytes of a JSON object) padded with spaces to @size bytes."""
    return body[:-1] + b" " * (size - len(body)) + b"}"


@test("body size limit")
def body_limit(ctx):
    v = ctx.visor()
    base = v.config()
    body = json.dumps(MC).encode()
    out, closed = exchange(v, put_raw("/machine-config", padded(body, 51201)))
    check_unchanged(ctx, v, base, "51201-byte body (default limit 51200) -> 413, no change",
                    raw_verdict(out, (413,), closed))
    s = raw_connect(v.sock)
    s.sendall(put_raw("/machine-config", b"", length=10 ** 9))
    t0 = time.monotonic()
    out, closed, _ = read_responses(s, 1, 3)
    s.close()
    check_unchanged(ctx, v, base, "Content-Length 10^9 -> 413 before the body is sent",
                    raw_verdict(out, (413,), closed) if time.monotonic() - t0 < 2
                    else (False, "answer took %.1f s" % (time.monotonic() - t0)))
    r = v.put("/machine-config", raw=padded(body, 51200))
    ctx.check("51200-byte body (exactly the limit) -> 204", *is_204(r))
    big = ctx.visor("--http-api-max-payload-size", "200000")
    base2 = big.config()
    r = big.put("/machine-config", raw=padded(body, 100000))
    ctx.check("--http-api-max-payload-size 200000: 100000-byte body -> 204", *is_204(r))
    base2 = big.config()
    out, closed = exchange(big, put_raw("/machine-config",
                                        padded(json.dumps({"vcpu_count": 1,
                                                           "mem_size_mib": 128}).encode(),
                                               200001)))
    check_unchanged(ctx, big, base2, "--http-api-max-payload-size 200000: 200001 bytes -> 413",
                    raw_verdict(out, (413,), closed))


def nested(depth, obj=False):
    if obj:
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth + b"]" * depth


@test("deep JSON nesting")
def deep(ctx):
    v = ctx.visor()
    base = v.config()
    for label, inner in (("25000-deep array", nested(25000)),
                         ("8000-deep object", nested(8000, True))):
        body = b'{"vcpu_count": ' + inner + b', "mem_size_mib": 256}'
        base = v.config()
        r = v.put("/machine-config", raw=body)
        check_unchanged(ctx, v, base, "%s in a field -> 400, no change" % label, is_error(r))
    big = ctx.visor("--http-api-max-payload-size", "1048576")
    base = big.config()
    for label, inner in (("10^5-deep array", nested(100000)),
                         ("10^5-deep object", nested(100000, True))):
        base = big.config()
        r = big.put("/machine-config", raw=inner)
        check_unchanged(ctx, big, base, "%s as the body -> 400, no change" % label, is_error(r))
        body = b'{"vcpu_count": 2, "mem_size_mib": 256, "x": ' + inner + b"}"
        base = big.config()
        r = big.put("/machine-config", raw=body)
        check_unchanged(ctx, big, base, "%s in an unknown field -> 400, no change" % label,
                        is_error(r))


@test("JSON text and UTF-8")
def utf8(ctx):
    v = ctx.visor()
    k = ctx.kernel()
    ctx.check("PUT /boot-source -> 204", *is_204(v.put("/boot-source", {"kernel_image_path": k})))
    base = v.config()
    pre = b'{"kernel_image_path": "' + k.encode()
    cases = [
        ("byte 0xff", pre + b'\xff"}'),
        ("overlong '/' (C0 AF)", pre + b'\xc0\xaf"}'),
        ("UTF-8-encoded surrogate (ED A0 80)", pre + b'\xed\xa0\x80"}'),
        ("truncated sequence (E2 82)", pre + b'\xe2\x82"}'),
        ("code point above U+10FFFF (F4 90 80 80)", pre + b'\xf4\x90\x80\x80"}'),
        ("invalid UTF-8 in a key", b'{"kernel_image_path\xff": "' + k.encode() + b'"}'),
        ("lone surrogate escape \\ud800", pre + b'\\ud800"}'),
        ("lone trailing surrogate escape \\udc00", pre + b'\\udc00"}'),
        ("reversed surrogate pair \\ude00\\ud83d", pre + b'\\ude00\\ud83d"}'),
        ("NUL escape \\u0000 in the path", pre + b'\\u0000.evil"}'),
        ("raw control byte in a string", pre + b'\x01"}'),
        ("raw newline in a string", pre + b'\n"}'),
        ("invalid escape \\x41", pre + b'\\x41"}'),
        ("UTF-16 body", json.dumps({"kernel_image_path": k}).encode("utf-16")),
    ]
    for label, body in cases:
        base = v.config()
        r = v.put("/boot-source", raw=body)
        check_unchanged(ctx, v, base, "%s -> 400, no change" % label, is_error(r))
    r = v.put("/boot-source", raw=b'{"kernel_image_path": "/tmp/k\\ud83d\\ude00"}')
    ok, d = is_204(r)
    if ok:
        got = (v.config().get("boot-source") or {}).get("kernel_image_path")
        if got != "/tmp/k\U0001f600":
            ok, d = False, "GET /vm/config kernel_image_path: %s" % short(got)
    ctx.check("a valid surrogate pair escape (U+1F600) -> 204, returned intact", ok, d)
    for label, path in (("non-ASCII UTF-8", ctx.path("k\u00e9rnel-\u65e5\u672c")),
                        ("quote, backslash and tab", ctx.path('k"\\\tq'))):
        body = {"kernel_image_path": path, "boot_args": "x=\"y\" \u00e9"}
        r = v.put("/boot-source", body)
        ok, d = is_204(r)
        if ok:
            got = (v.config().get("boot-source") or {})
            if got.get("kernel_image_path") != path or got.get("boot_args") != body["boot_args"]:
                ok, d = False, "GET /vm/config boot-source: %s" % short(got)
        ctx.check("a path with %s -> 204 and returned intact by GET /vm/config" % label, ok, d)


def parallel(fns, timeout=10.0):
    """Run @fns in threads; their results (None for one that raised or
    did not finish)."""
    res = [None] * len(fns)

    def run(i):
        try:
            res[i] = fns[i]()
        except Exception as e:
            res[i] = e
    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(fns))]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))
    return res


@test("many clients")
def many(ctx):
    v = ctx.visor()

    def one():
        s = raw_connect(v.sock, 5)
        send_tolerant(s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        out, _, _ = read_responses(s, 1, 5)
        s.close()
        return out[0][0] if out else "no answer"
    res = parallel([one] * 100)
    bad = [r for r in res if r not in (200, 503)]
    ctx.check("100 concurrent clients each get 200 (or 503 over the limit)", not bad,
              "answers: %s" % short([str(r) for r in res], 400))
    ctx.check("most of them get 200", sum(1 for r in res if r == 200) >= 32,
              "%d of 100 got 200" % sum(1 for r in res if r == 200))
    ctx.check("then a new client gets 200", *answering(v))
    # concurrent configuration: every request applied exactly once
    for i in range(8):
        ctx.file("disk%d.img" % i, size=1 << 20)

    def put_drive(i):
        def f():
            from harness import Client
            c = Client(v.sock)
            r = c.put("/drives/d%d" % i, {"drive_id": "d%d" % i, "is_root_device": False,
                                          "is_read_only": False,
                                          "path_on_host": ctx.path("disk%d.img" % i)})
            c.close()
            return r.status
        return f
    res = parallel([put_drive(i) for i in range(8)])
    ids = sorted(d.get("drive_id") for d in v.config().get("drives") or [])
    ctx.check("8 clients each PUT a drive at once: 8 x 204, 8 drives",
              res == [204] * 8 and ids == ["d%d" % i for i in range(8)],
              "answers %s, drives %s" % (res, ids))
    idle = []
    for i in range(64):
        s = raw_connect(v.sock)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_responses(s, 1, 2)
        idle.append(s)
    ctx.check("64 idle keep-alive connections open: a new client gets 200", *answering(v))
    for s in idle:
        s.close()
    # slow clients: partial requests under any reasonable limit
    body = json.dumps({"vcpu_count": 2, "mem_size_mib": 256}).encode()
    slow = []
    for i in range(16):
        s = raw_connect(v.sock)
        req = put_raw("/machine-config", body)
        s.sendall(req[:len(req) - 10])
        slow.append((s, req[len(req) - 10:]))
    ctx.check("16 slow clients mid-request: a new client gets 200 within 2 s", *answering(v))
    st = []
    for s, rest in slow:
        s.sendall(rest)
        out, _, _ = read_responses(s, 1, 3)
        st.append(out[0][0] if out else None)
        s.close()
    ctx.check("... and each slow client's request then completes (204)",
              st == [204] * 16, "answers %s" % st)
    # a request trickling in byte by byte
    s = raw_connect(v.sock)
    req = put_raw("/machine-config", json.dumps({"vcpu_count": 3, "mem_size_mib": 256}).encode())
    for i in range(len(req)):
        s.sendall(req[i:i + 1])
        time.sleep(0.002)
    out, _, _ = read_responses(s, 1, 3)
    s.close()
    ctx.check("a request sent one byte at a time -> 204",
              bool(out) and out[0][0] == 204, "got %s" % short(out))
    # more partial requests than any connection limit: others are answered
    # (or refused with an HTTP status), never left hanging
    hold = []
    for i in range(100):
        try:
            s = raw_connect(v.sock, 2)
            send_tolerant(s, b"GET / HTTP/1.1\r\nHost: x\r\n")
            hold.append(s)
        except OSError:
            break
    t0 = time.monotonic()
    try:
        s = raw_connect(v.sock, 3)
        # a server at its limit may answer 503 and close before the
        # request is even sent: its answer is still there to read
        send_tolerant(s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        out, closed, _ = read_responses(s, 1, 3)
        s.close()
    except OSError as e:
        out, closed = [], str(e)
    dt = time.monotonic() - t0
    ctx.check("%d clients holding partial requests: a new client gets an HTTP answer "
              "within 3 s (200, or 503 at the limit)" % len(hold),
              bool(out) and out[0][0] in (200, 503),
              "got %s (closed %s) after %.1f s" % (short(out), closed, dt))
    for s in hold:
        s.close()
    time.sleep(0.1)
    ctx.check("after they leave, a new client gets 200", *answering(v))


@test("vanishing clients")
def vanishing(ctx):
    v = ctx.visor()
    body = json.dumps({"vcpu_count": 2, "mem_size_mib": 256}).encode()
    req = put_raw("/machine-config", body)
    for i in range(20):
        s = raw_connect(v.sock)
        s.sendall(b"GET /vm/config HTTP/1.1\r\nHos")
        s.close()
    for i in range(20):
        s = raw_connect(v.sock)
        s.sendall(req[:-5])
        s.close()
    for i in range(20):
        s = raw_connect(v.sock)
        s.sendall(b"GET /vm/config HTTP/1.1\r\n\r\n" * 50)
        s.close()
    for i in range(20):
        s = raw_connect(v.sock)
        s.sendall(req)
        s.shutdown(socket.SHUT_RDWR)
        s.close()
    time.sleep(0.2)
    ctx.check("80 clients gone mid-request or before reading: visor alive and answering",
              *answering(v))
    ctx.check("the configuration is intact", v.get("/vm/config").status == 200,
              str(v.get("/vm/config")))
    # a client that sends but never reads: the server must not block on it
    hog = raw_connect(v.sock)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sent = 0
    hog.settimeout(0.5)
    try:
        for i in range(2000):
            hog.sendall(b"GET /vm/config HTTP/1.1\r\n\r\n")
            sent += 1
    except OSError:
        pass
    ctx.check("a client pipelining %d requests without reading: others answered" % sent,
              *answering(v))
    hog.close()
    ctx.check("after it vanishes: visor alive and answering", *answering(v))
