# SPDX-License-Identifier: MIT
"""Invalid bodies, field by field, derived from the YAML's definitions:
wrong types, out-of-range numbers (negative, 2^64, values a narrower
integer would silently truncate), unknown and missing fields, bad enums,
over-long strings, ids outside [A-Za-z0-9_], path id != body id, bodies
that are not JSON objects.  Each must be answered 400 with an Error body,
and GET /vm/config must be unchanged afterwards."""
import copy
import json

import fixtures
from harness import is_error, short, spec, test

BIG = 2 ** 64
LONG_PATH = "/tmp/" + "p" * 5000      # longer than PATH_MAX

# Values beyond the type checks, per (definition, field).  Numbers that a
# 32-bit (or narrower) field would wrap to a valid value are the
# interesting ones: they must be refused, never truncated.
EXTRA = {
    ("MachineConfiguration", "vcpu_count"): [0, 10 ** 6, 2 ** 8 + 1, 2 ** 32 + 1, 2 ** 63],
    ("MachineConfiguration", "mem_size_mib"): [0, 2 ** 44, 2 ** 44 + 256, 2 ** 63, BIG - 1],
    ("Balloon", "amount_mib"): [2 ** 44, 2 ** 44 + 16, 2 ** 32 + 16, 10 ** 6],
    ("Balloon", "stats_polling_interval_s"): [2 ** 32, 2 ** 32 + 1],
    ("BalloonUpdate", "amount_mib"): [2 ** 44, 2 ** 44 + 16, 2 ** 32 + 16, 10 ** 6],
    ("BalloonStatsUpdate", "stats_polling_interval_s"): [2 ** 32, 2 ** 32 + 1],
    ("Vsock", "guest_cid"): [0, 2, 2 ** 32, 2 ** 32 + 3],
    ("NetworkInterface", "mtu"): [0, 67, 65536, 2 ** 32 + 1500],
    ("NetworkInterface", "guest_mac"): ["06:00:ac:10:00", "06:00:ac:10:00:zz", "06-00-ac-10-00-02",
                                        "06:00:ac:10:00:02:03"],
    ("NetworkInterface", "host_dev_name"): ["", "t" * 16],
    ("NetworkInterface", "iface_id"): [""],
    ("Drive", "drive_id"): [""],
    ("Drive", "path_on_host"): ["", LONG_PATH],
    ("Drive", "partuuid"): ["u" * 5000],
    ("BootSource", "kernel_image_path"): ["", LONG_PATH],
    ("BootSource", "initrd_path"): [LONG_PATH],
    ("BootSource", "boot_args"): ["x" * 5000],
    ("Vsock", "uds_path"): ["", "/tmp/" + "u" * 200],
    ("Vsock", "vsock_id"): ["", "a-b", "v" * 65],
    ("Logger", "log_path"): [LONG_PATH],
    ("Metrics", "metrics_path"): [LONG_PATH],
    ("SerialDevice", "serial_out_path"): [LONG_PATH],
}

# Fields whose enum is documented case-insensitive (so "info" is valid).
CASE_INSENSITIVE = {("Logger", "level")}


def show(val):
    if isinstance(val, str) and len(val) > 40:
        return "%s... (%d chars)" % (json.dumps(val[:12]), len(val))
    s = json.dumps(val)
    return s if len(s) <= 60 else s[:60] + "..."


def bucket_variants():
    """Invalid TokenBucket objects."""
    good = {"size": 1000, "refill_time": 100}
    out = []
    for f in ("size", "refill_time", "one_time_burst"):
        for bad in (-1, BIG, 1.5, "1", True):
            b = dict(good)
            b[f] = bad
            out.append(("%s = %s" % (f, show(bad)), b))
    out.append(("refill_time = 2^63 ms", dict(good, refill_time=2 ** 63)))
    for f in ("size", "refill_time"):
        b = dict(good)
        del b[f]
        out.append(("missing %s" % f, b))
    out.append(("unknown field", dict(good, bogus=1)))
    out.append(("not an object", "fast"))
    return out


def rate_limiter_variants():
    out = [("not an object", "fast"), ("an array", []), ("unknown field", {"bogus": {}})]
    for f in ("bandwidth", "ops"):
        for label, b in bucket_variants():
            out.append(("%s.%s" % (f, label), {f: b}))
    return out


def field_variants(defname, field, fschema):
    """(label, value) pairs of invalid values for one field."""
    ref = fschema.get("$ref", "")
    target = ref.split("/")[-1] if ref else None
    s = spec().resolve(fschema)
    typ = s.get("type")
    out = []
    if target == "RateLimiter":
        return [("%s: %s" % (field, l), v) for l, v in rate_limiter_variants()]
    if target == "TokenBucket":
        return [("%s: %s" % (field, l), v) for l, v in bucket_variants()]
    if typ == "integer":
        for bad in ("1", 1.5, 1.0, True, [1], -1, BIG):
            out.append(bad)
    elif typ == "boolean":
        for bad in ("true", 1, 0, [], {}):
            out.append(bad)
    elif typ == "string":
        for bad in (1, True, [], {}):
            out.append(bad)
        if "enum" in s:
            out.append("Bogus")
            if (defname, field) not in CASE_INSENSITIVE:
                out.append(s["enum"][0].lower() if s["enum"][0] != s["enum"][0].lower()
                           else s["enum"][0].upper())
    elif typ == "object":
        out += ["x", 1, []]
    out += EXTRA.get((defname, field), [])
    return [("%s = %s" % (field, show(v)), v) for v in out]


def invalid_bodies(ep):
    """(label, body) pairs; a body of type bytes is sent as it is."""
    d = spec().definition(ep.defname)
    props = d.get("properties", {})
    req = [] if ep.partial else d.get("required", [])
    out = []
    for field, fschema in props.items():
        if ep.defname == "Drive" and field == "socket":
            continue  # vhost-user: see the unsupported-features test
        if ep.defname == "Balloon" and field == "free_page_hinting":
            continue  # unsupported feature, tested there
        for label, val in field_variants(ep.defname, field, fschema):
            b = copy.deepcopy(ep.body)
            b[field] = val
            out.append((label, b))
    for field in req:
        b = copy.deepcopy(ep.body)
        del b[field]
        out.append(("missing required %s" % field, b))
    out.append(("unknown field", dict(ep.body, bogus_field=1)))
    out.append(("unknown field with a null value", dict(ep.body, bogus_field=None)))
    first = next(iter(ep.body))
    out.append(("duplicate key %s" % first,
                ("{" + json.dumps(first) + ": " + json.dumps(ep.body[first]) + ", " +
                 json.dumps(ep.body)[1:]).encode()))
    out += [("body is an array", [ep.body]), ("body is a string", "x"), ("body is a number", 1),
            ("body is null", None), ("body is true", True), ("empty body", b""),
            ("truncated JSON", json.dumps(ep.body)[:-1].encode()),
            ("trailing garbage", json.dumps(ep.body).encode() + b"x"),
            ("two JSON objects", json.dumps(ep.body).encode() * 2),
            ("trailing comma", json.dumps(ep.body)[:-1].encode() + b",}"),
            ("single quotes", json.dumps(ep.body).replace('"', "'").encode()),
            ("NaN", json.dumps(dict(ep.body, **{first: float("nan")})).encode())]
    if ep.path_id:
        field, prefix = ep.path_id
        other = dict(ep.body)
        other[field] = ep.body[field] + "x"
        out.append(("path id != body id (%s %s)" % (field, other[field]), other))
    return out


def send(v, method, path, body):
    if isinstance(body, bytes):
        return v.request(method, path, raw=body)
    if body is None:
        return v.request(method, path, raw=b"null")
    return v.request(method, path, body)


def refused_unchanged(ctx, v, baseline, name, method, path, body, mention=None):
    """The request gets 400 with an Error body and changes nothing."""
    try:
        # compare with the state just before: an earlier wrong acceptance
        # must not make every later check fail
        baseline = v.config()
        r = send(v, method, path, body)
        ok, detail = is_error(r, 400, mention)
        if ok:
            after = v.config()
            if after != baseline:
                ok, detail = False, "400, but GET /vm/config changed: %s -> %s (request %s)" % (
                    short(baseline, 600), short(after, 600), r.request_text())
    except Exception as e:
        ok, detail = False, "%s: %s (request %s %s %s)" % (type(e).__name__, e, method, path,
                                                           short(body, 200))
        v.client.close()
    return ctx.check(name, ok, detail)


def make_invalid_test(name):
    def t(ctx):
        eps = fixtures.endpoints(ctx)
        ep = fixtures.by_name(eps)[name]
        v = ctx.visor()
        # the resource exists with valid values, so a partial update shows
        fixtures.apply(ctx, v, ep, eps)
        baseline = v.config()
        for label, body in invalid_bodies(ep):
            refused_unchanged(ctx, v, baseline, "%s %s -> 400, no change" % (ep.label(), label),
                              ep.method, ep.path, body)
    return t


for _name in ["machine-config", "machine-config-patch", "boot-source", "drive",
              "network-interface", "vsock", "balloon", "balloon-patch", "balloon-stats-patch",
              "entropy", "logger", "metrics", "serial", "flush-metrics"]:
    test("invalid " + _name)(make_invalid_test(_name))


@test("invalid ids in the path")
def path_ids(ctx):
    eps = fixtures.by_name(fixtures.endpoints(ctx))
    v = ctx.visor()
    fixtures.apply(ctx, v, eps["drive"], [])
    fixtures.apply(ctx, v, eps["network-interface"], [])
    baseline = v.config()
    bad_ids = [("a-b", "a-b"), ("a.b", "a.b"), ("a%20b", "a b"), ("%C3%A9t%C3%A9", "\u00e9t\u00e9"),
               ("a%2Fb", "a/b"), ("%00a", "\u0000a"), ("a%09b", "a\tb"), ("x" * 65, "x" * 65),
               ("x" * 1000, "x" * 1000), ("a%22b", 'a"b')]
    for ep_name, field, prefix in (("drive", "drive_id", "/drives/"),
                                   ("network-interface", "iface_id", "/network-interfaces/")):
        ep = eps[ep_name]
        for raw_id, body_id in bad_ids:
            body = dict(ep.body, **{field: body_id})
            if ep_name == "network-interface":
                body["host_dev_name"] = "vtapx"
                body["guest_mac"] = "06:00:ac:10:00:09"
            else:
                body["path_on_host"] = ctx.path("data.img")
                body["is_root_device"] = False
            refused_unchanged(ctx, v, baseline, "PUT %s%s -> 400, no change" % (
                prefix, show(raw_id) if len(raw_id) > 20 else raw_id), "PUT", prefix + raw_id,
                body)
        body = dict(ep.body, **{field: ""})
        refused_unchanged(ctx, v, baseline, "PUT %s (empty id) -> 400, no change" % prefix,
                          "PUT", prefix, body)
        refused_unchanged(ctx, v, baseline, "PUT %s (no id) -> 400, no change" % prefix[:-1],
                          "PUT", prefix[:-1], ep.body)
        # an id of exactly 64 characters is fine (visor's documented cap)
        ok_id = "i" * 64
        body = dict(ep.body, **{field: ok_id})
        if ep_name == "network-interface":
            body["host_dev_name"] = "vtapy"
            body["guest_mac"] = "06:00:ac:10:00:0a"
        else:
            body["path_on_host"] = ctx.path("data.img")
            body["is_root_device"] = False
        r = v.put(prefix + ok_id, body)
        ctx.check("PUT %s<64 x 'i'> -> 204 (64 characters are allowed)" % prefix,
                  r.status == 204, str(r))
        baseline = v.config()
