"""What the suites share: progress lines, worker processes, and the results store."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from kafkette.bench.targets import PY


def progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_worker(role: str, args: dict, timeout: float = 900) -> dict:
    out = subprocess.run([PY, "-m", "kafkette.bench.workers", role, json.dumps(args)],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"worker {role} failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_group(role: str, arg_list: list[dict], timeout: float = 300) -> list[dict]:
    """Start workers, wait until each printed "ready", then say "go" to all at once."""
    procs = [subprocess.Popen([PY, "-m", "kafkette.bench.workers", role, json.dumps(a)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for a in arg_list]
    try:
        for p in procs:
            line = p.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"worker {role} did not get ready: {line!r} "
                                   f"{p.stderr.read()[-3000:]}")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise RuntimeError(f"worker {role} failed: {err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


class Results:
    """metric -> target name -> list of values (one per run)."""

    def __init__(self):
        self.values: dict[str, dict[str, list[float]]] = {}
        self.notes: list[str] = []
        self.config: dict = {}      # settings the suites ran with, for the JSON
        self.labels: dict[str, str] = {}   # target name -> column header, when not it

    def add(self, metric: str, target: str, value: float) -> None:
        self.values.setdefault(metric, {}).setdefault(target, []).append(value)

    def median(self, metric: str, target: str) -> float | None:
        vals = self.values.get(metric, {}).get(target)
        return statistics.median(vals) if vals else None


def topic_name(kind: str) -> str:
    return f"bench-{kind}-{time.time_ns()}"
