"""`make bench-console` / `python -m kafkette.bench.console`: page load times of the
console with many partitions.

One broker (a child process, EmbeddedBroker) with the console on a free port; one
topic of --partitions partitions (10,000 by default) and --topics small topics of 10
partitions each, a few records in some of them, and a consumer group with committed
offsets on the big topic. Each page is fetched --repeat times over HTTP (the whole
body, a new connection each time, as a browser's first visit); with Chromium and
chromedriver present, each page is also loaded in headless Chromium and the
navigation timing's loadEventEnd is reported. Figures: median and max in ms.
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import time
import urllib.request

from kafkette.embedded import EmbeddedBroker
from kafkette.protocol import messages
from kafkette.protocol.records import build_batch
from kafkette.tools.client import AdminClient


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fill(bootstrap: str, partitions: int, topics: int) -> None:
    admin = AdminClient(bootstrap, timeout=120)
    try:
        t0 = time.monotonic()
        # In steps of 1,000: one CreateTopics of 10,000 partitions makes a metadata
        # record batch larger than max.message.bytes, which the controller refuses.
        admin.create_topic_full("big", min(partitions, 1000), 1, {})
        for count in range(2000, partitions + 1000, 1000):
            admin.create_partitions({"big": min(count, partitions)})
        for i in range(topics):
            admin.create_topic_full(f"small-{i:04d}", 10, 1, {})
        print(f"created {partitions} + {topics}x10 partitions in "
              f"{time.monotonic() - t0:.1f}s", file=sys.stderr)
        T = messages.ProduceRequest.TopicProduceData
        batch = build_batch([(None, b'{"n": %d}' % i, []) for i in range(10)])
        for start in range(0, min(partitions, 1000), 100):
            req = messages.ProduceRequest(transactional_id=None, acks=1, timeout_ms=10000,
                                          topic_data=[T(name="big", partition_data=[
                                              T.PartitionProduceData(index=p, records=batch)
                                              for p in range(start, start + 100)])])
            admin.request(req)
        admin.commit_offsets("bench-group", {("big", p): 5 for p in range(200)})
    finally:
        admin.close()


PAGES = [("cluster", "/"), ("topics", "/topics"), ("topics search", "/topics?q=small-00"),
         ("topics last page", "/topics?page=1000"), ("topic big p1", "/topics/big"),
         ("topic big p100", "/topics/big?page=100"),
         ("messages", "/topics/big/partitions/7/messages"),
         ("groups", "/groups"), ("group", "/groups/bench-group")]


def _http_times(base: str, path: str, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with urllib.request.urlopen(base + path, timeout=60) as r:
            r.read()
            if r.status != 200:
                raise RuntimeError(f"{path}: HTTP {r.status}")
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _browser_times(base: str, repeat: int) -> dict[str, list[float]] | None:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    if not chromium or not driver:
        return None
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        out = {}
        for name, path in PAGES:
            times = []
            for _ in range(repeat):
                d.get(base + path)
                nav = d.execute_script(
                    "const n = performance.getEntriesByType('navigation')[0];"
                    "return [n.startTime, n.loadEventEnd];")
                times.append(nav[1] - nav[0])
            out[name] = times
        return out
    finally:
        d.quit()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kafkette.bench.console")
    ap.add_argument("--partitions", type=int, default=10000)
    ap.add_argument("--topics", type=int, default=100, help="extra topics of 10 partitions")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    port = _free_port()
    with EmbeddedBroker({"console.listener": f"127.0.0.1:{port}",
                         "num.partitions": 1}, startup_timeout=60) as kb:
        _fill(kb.bootstrap_servers, a.partitions, a.topics)
        base = f"http://127.0.0.1:{port}"
        _http_times(base, "/", 1)  # connects the console's admin client
        result = {"partitions": a.partitions + 10 * a.topics, "http_ms": {}, "browser_ms": {}}
        print(f"{'page':<20} {'HTTP median':>12} {'HTTP max':>10}", file=sys.stderr)
        for name, path in PAGES:
            t = _http_times(base, path, a.repeat)
            result["http_ms"][name] = {"median": round(statistics.median(t), 1),
                                       "max": round(max(t), 1)}
        browser = _browser_times(base, max(1, a.repeat // 2))
        for name, _path in PAGES:
            h = result["http_ms"][name]
            line = f"{name:<20} {h['median']:>10.1f}ms {h['max']:>8.1f}ms"
            if browser:
                b = browser[name]
                result["browser_ms"][name] = {"median": round(statistics.median(b), 1),
                                              "max": round(max(b), 1)}
                line += f"   browser load {statistics.median(b):.1f}ms"
            print(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
