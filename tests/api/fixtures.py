# SPDX-License-Identifier: MIT
"""Valid request bodies for every configurable endpoint, built from the
YAML's definitions, with the files they name created in the test's temp
dir."""


def rate_limiter(size=1048576, ops=1000):
    return {"bandwidth": {"size": size, "one_time_burst": 0, "refill_time": 1000},
            "ops": {"size": ops, "refill_time": 1000}}


class Endpoint:
    """One body-taking operation: @method @path (the YAML's path template
    @yaml_path), body schema @defname, a valid @body, the GET /vm/config
    section it shows up in (@section; @key: the id field of a list
    section), and what must be configured before it (@needs: other
    endpoint names)."""

    def __init__(self, name, method, path, yaml_path, defname, body, section=None, key=None,
                 needs=(), partial=False, path_id=None):
        self.name = name
        self.method = method
        self.path = path
        self.yaml_path = yaml_path
        self.defname = defname
        self.body = body
        self.section = section
        self.key = key
        self.needs = needs
        self.partial = partial   # a PATCH: required fields of the schema are not required
        self.path_id = path_id   # (body field that must equal the path's id, path prefix)

    def label(self):
        return "%s %s" % (self.method, self.path)


def endpoints(ctx):
    """The configurable endpoints (before InstanceStart) with valid bodies,
    in an order that satisfies @needs."""
    k = ctx.kernel()
    initrd = ctx.file("initrd.img", b"\0" * 4096)
    d0 = ctx.file("rootfs.img", size=1 << 20)
    ctx.file("data.img", size=1 << 20)
    eps = [
        Endpoint("machine-config", "PUT", "/machine-config", "/machine-config",
                 "MachineConfiguration",
                 {"vcpu_count": 2, "mem_size_mib": 256, "smt": False, "track_dirty_pages": False},
                 section="machine-config"),
        Endpoint("machine-config-patch", "PATCH", "/machine-config", "/machine-config",
                 "MachineConfiguration", {"mem_size_mib": 512}, section="machine-config",
                 partial=True),
        Endpoint("boot-source", "PUT", "/boot-source", "/boot-source", "BootSource",
                 {"kernel_image_path": k, "initrd_path": initrd,
                  "boot_args": "console=ttyS0 reboot=k panic=1"},
                 section="boot-source"),
        Endpoint("drive", "PUT", "/drives/rootfs", "/drives/{drive_id}", "Drive",
                 {"drive_id": "rootfs", "path_on_host": d0, "is_root_device": True,
                  "partuuid": "0eaa91a0-01", "is_read_only": False, "cache_type": "Writeback",
                  "io_engine": "Sync", "rate_limiter": rate_limiter()},
                 section="drives", key="drive_id", path_id=("drive_id", "/drives/")),
        Endpoint("network-interface", "PUT", "/network-interfaces/eth0",
                 "/network-interfaces/{iface_id}", "NetworkInterface",
                 {"iface_id": "eth0", "host_dev_name": "vtap0", "guest_mac": "06:00:ac:10:00:02",
                  "mtu": 1500, "rx_rate_limiter": rate_limiter(),
                  "tx_rate_limiter": rate_limiter(2 << 20, 500)},
                 section="network-interfaces", key="iface_id",
                 path_id=("iface_id", "/network-interfaces/")),
        Endpoint("vsock", "PUT", "/vsock", "/vsock", "Vsock",
                 {"guest_cid": 3, "uds_path": ctx.path("vsock.sock")}, section="vsock"),
        Endpoint("balloon", "PUT", "/balloon", "/balloon", "Balloon",
                 {"amount_mib": 16, "deflate_on_oom": True, "stats_polling_interval_s": 1,
                  "free_page_reporting": True},
                 section="balloon", needs=("machine-config",)),
        Endpoint("balloon-patch", "PATCH", "/balloon", "/balloon", "BalloonUpdate",
                 {"amount_mib": 32}, section="balloon", needs=("machine-config", "balloon")),
        Endpoint("balloon-stats-patch", "PATCH", "/balloon/statistics", "/balloon/statistics",
                 "BalloonStatsUpdate", {"stats_polling_interval_s": 5}, section="balloon",
                 needs=("machine-config", "balloon")),
        Endpoint("entropy", "PUT", "/entropy", "/entropy", "EntropyDevice",
                 {"rate_limiter": rate_limiter()}, section="entropy"),
        Endpoint("logger", "PUT", "/logger", "/logger", "Logger",
                 {"log_path": ctx.file("fc.log"), "level": "Info", "show_level": True,
                  "show_log_origin": False}),
        Endpoint("metrics", "PUT", "/metrics", "/metrics", "Metrics",
                 {"metrics_path": ctx.file("metrics.json")}),
        Endpoint("serial", "PUT", "/serial", "/serial", "SerialDevice",
                 {"serial_out_path": ctx.file("serial.out")}),
        Endpoint("flush-metrics", "PUT", "/actions", "/actions", "InstanceActionInfo",
                 {"action_type": "FlushMetrics"}, needs=("metrics",)),
    ]
    return eps


def by_name(eps):
    return {e.name: e for e in eps}


def apply(ctx, v, ep, eps):
    """PUT/PATCH @ep's valid body after its prerequisites; raises on a
    refusal (a precondition of the test, not its subject)."""
    from harness import SetupError
    names = by_name(eps)
    for n in ep.needs:
        pre = names[n]
        r = v.request(pre.method, pre.path, pre.body)
        if r.status != 204:
            raise SetupError("prerequisite %s refused: %s" % (pre.label(), r))
    r = v.request(ep.method, ep.path, ep.body)
    if r.status != 204:
        raise SetupError("valid request refused: %s" % r)


def section_of(cfg, ep):
    """@ep's entry in a GET /vm/config document (None if absent)."""
    if not ep.section or not isinstance(cfg, dict):
        return None
    sec = cfg.get(ep.section)
    if ep.key:
        if not isinstance(sec, list):
            return None
        for item in sec:
            if isinstance(item, dict) and item.get(ep.key) == ep.body[ep.key]:
                return item
        return None
    return sec
