#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A stand-in for a VM's API socket, for the CLI tests of `visor migrate`.

usage: tests/cli/fake-api.py SOCKET LOG SCENARIO

Serves HTTP/1.1 on the Unix socket SOCKET, one request per connection (as
visor's CLI sends them), and appends each request to LOG as a JSON line
{"method", "path", "body"} (body parsed as JSON when it is).  What it
answers is the SCENARIO's script, advanced by requests, never by time:

  complete           PUT /migration/send 204; each GET /migration the next
                     status of Setup, Active pass 0, Active pass 1,
                     Switchover, then Completed (repeated)
  fail               ... Setup, Active pass 0, then Failed with an error
  vanish-switchover  ... Setup, Active pass 0, Switchover; then the socket
                     is removed and the process exits (a source that exits
                     0 after the hand-over, before its final status is read)
  vanish-active      ... Setup, Active pass 0; then gone (a source that died)
  refuse-send        PUT /migration/send 400 with a fault_message
  cancel             PATCH /migration 204
  interrupt          GET /migration Active until a PATCH /migration
                     {"state": "Cancelled"} arrives, Cancelled after it

Anything else is 400 "Invalid request method and/or path".  The server
exits after 60 s without a request.
"""
import json
import os
import socket
import sys

MIB = 1 << 20


def status(state, pass_=0, sent=0, left=0, **kw):
    s = {"state": state, "incoming": False, "mode": "precopy", "url": "unix:/dst.sock",
         "pass": pass_, "bytes": sent, "pages_data": sent // 4096 // 2,
         "pages_zero": sent // 4096 // 2,
         "remaining_bytes": left, "mem_bytes": 64 * MIB, "dirty_rate_bps": 2 * MIB,
         "bandwidth_bps": 512 * MIB, "expected_downtime_ms": 3, "downtime_limit_ms": 20,
         "throttle_pct": 0, "elapsed_ms": 0, "downtime_ms": 0}
    s.update(kw)
    return s


# "pass" counts the passes completed (during Active: the pass in
# progress, 0 the first); "remaining_bytes" is the dirty count of the last
# pass (0 during the first, whose progress is in the page counts)
SETUP = status("Setup")
PASS0 = status("Active", 0, 40 * MIB, 0, elapsed_ms=300)
PASS1 = status("Active", 1, 66 * MIB, 1 * MIB, elapsed_ms=700, throttle_pct=10)
SWITCH = status("Switchover", 2, 67 * MIB, 0, elapsed_ms=800)
DONE = status("Completed", 2, 68 * MIB, 0, elapsed_ms=1234, downtime_ms=7)
FAILED = status("Failed", 0, 41 * MIB, 23 * MIB, elapsed_ms=2500,
                error="destination: connection reset by peer")

SCRIPTS = {
    "complete": [SETUP, PASS0, PASS1, SWITCH, DONE],
    "fail": [SETUP, PASS0, FAILED],
    "vanish-switchover": [SETUP, PASS0, SWITCH],
    "vanish-active": [SETUP, PASS0],
}


def read_request(conn):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path = lines[0].split(" ")[:2]
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return method, path, rest[:length]


def respond(conn, code, body=None):
    reason = {200: "OK", 204: "No Content", 400: "Bad Request"}[code]
    data = json.dumps(body).encode() if body is not None else b""
    head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" \
           "Connection: close\r\n\r\n" % (code, reason, len(data))
    conn.sendall(head.encode() + data)


def main(argv):
    sock_path, log_path, scenario = argv[1:4]
    script = SCRIPTS.get(scenario, [])
    gets = 0
    cancelled = False
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(8)
    srv.settimeout(60)
    while True:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            break
        with conn:
            conn.settimeout(10)
            req = read_request(conn)
            if req is None:
                continue
            method, path, body = req
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = body.decode("utf-8", "replace")
            with open(log_path, "a") as f:
                f.write(json.dumps({"method": method, "path": path, "body": parsed}) + "\n")
            last = False
            if method == "PUT" and path == "/migration/send":
                if scenario == "refuse-send":
                    respond(conn, 400, {"fault_message": "Cannot migrate: the microVM is not "
                                                         "started."})
                else:
                    respond(conn, 204)
            elif method == "PATCH" and path == "/migration":
                if scenario in ("cancel", "interrupt"):
                    cancelled = True
                    respond(conn, 204)
                else:
                    respond(conn, 400, {"fault_message": "No migration is in flight."})
            elif method == "GET" and path == "/migration":
                if scenario == "interrupt":
                    s = status("Cancelled", 0, 10 * MIB, 54 * MIB, elapsed_ms=900,
                               error="cancelled by the user") if cancelled else PASS0
                elif script:
                    s = script[min(gets, len(script) - 1)]
                    last = scenario.startswith("vanish") and gets >= len(script) - 1
                else:
                    s = status("None")
                gets += 1
                respond(conn, 200, s)
            else:
                respond(conn, 400, {"fault_message": "Invalid request method and/or path: "
                                                     "%s %s." % (method, path)})
            if last:
                break
    srv.close()
    os.unlink(sock_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
