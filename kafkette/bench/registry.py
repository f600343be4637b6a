"""The `registry` suite: what the built-in Schema Registry costs a broker.

One broker process per run, with `schema.registry.listener` set ("registry on") or
not ("registry off"), runs alternating (off first in even repeats) so that drift on a
shared machine hits both. Start-up is from the process start to the first answer of
the last listener that must accept (the Kafka listener when off, the registry's
GET /subjects when on: the registry listens once it has read `_schemas`). Idle RSS
right after start-up. With the registry on, 200 Avro schemas are registered under
200 subjects (POST /subjects/{s}/versions, one keep-alive connection: each write is
a Produce acks=all to `_schemas` and its read-back) and read back (GET
/subjects/{s}/versions/latest); per-request latencies and the RSS after them.
"""
from __future__ import annotations

import http.client
import json
import time

from kafkette.bench.harness import Results, progress
from kafkette.bench.targets import Kafkette, free_port

ON = "registry on"
OFF = "registry off"
SCHEMAS = 200
REGISTRY_ROWS = [
    ("sr_startup_ms", "ms", False, None, None),
    ("sr_idle_rss_mb", "MB", False, None, None),
    ("sr_register_ms", "ms", False, None, None),
    ("sr_get_latest_ms", "ms", False, None, None),
    ("sr_rss_after_mb", "MB", False, None, None),
]
CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


def _wait_registry(port: int, deadline: float) -> None:
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/subjects")
            if c.getresponse().status == 200:
                c.close()
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the schema registry did not answer")
        time.sleep(0.005)


def _call(conn, method, path, body=None) -> dict:
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=CT)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{method} {path}: {resp.status} {data[:200]!r}")
    return json.loads(data)


def suite_registry(args, res: Results) -> None:
    res.labels[ON], res.labels[OFF] = ON, OFF
    for i in range(args.repeat):
        for kind in ((OFF, ON) if i % 2 == 0 else (ON, OFF)):
            port = free_port()
            extra = ["--set", f"schema.registry.listener=127.0.0.1:{port}"] if kind == ON else []
            progress(f"registry: {kind} run {i + 1}/{args.repeat}")
            t0 = time.monotonic()
            with Kafkette(name=kind, extra_args=extra) as t:
                if kind == ON:
                    _wait_registry(port, t0 + 30)
                res.add("sr_startup_ms", kind, (time.monotonic() - t0) * 1000)
                res.add("sr_idle_rss_mb", kind, t.rss_mb())
                if kind == OFF:
                    continue
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                t1 = time.monotonic()
                for n in range(SCHEMAS):
                    schema = {"type": "record", "name": f"R{n}",
                              "fields": [{"name": "a", "type": "int"}]}
                    _call(conn, "POST", f"/subjects/bench{n}-value/versions",
                          {"schema": json.dumps(schema)})
                t2 = time.monotonic()
                for n in range(SCHEMAS):
                    _call(conn, "GET", f"/subjects/bench{n}-value/versions/latest")
                t3 = time.monotonic()
                conn.close()
                res.add("sr_register_ms", kind, (t2 - t1) * 1000 / SCHEMAS)
                res.add("sr_get_latest_ms", kind, (t3 - t2) * 1000 / SCHEMAS)
                res.add("sr_rss_after_mb", kind, t.rss_mb())
