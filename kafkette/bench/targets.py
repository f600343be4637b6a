"""The brokers under test, each a real subprocess started fresh per sub-benchmark.

- Kafkette: `python -m kafkette serve` on a free port with its own temp data dir,
  stopped by its PID (SIGTERM, then SIGKILL after a deadline). `source=DIR` runs the
  kafkette package found in DIR instead (PYTHONPATH=DIR): the base revision of the
  no-regression comparison (export_revision).
- KafketteCluster: a 3-node cluster of `python -m kafkette serve` processes as
  `kafkette cluster` starts them (kafkette.embedded_cluster, Kafka's defaults, no
  test settings), each with a metrics listener for the follower-lag gauges.
- MockPeer: librdkafka's mock cluster in kafkette.bench.mock_launcher.

Every child (broker, cluster node, worker) runs the kafkette package the harness
imported: use_own_source() puts its source root first on PYTHONPATH, so an editable
install of another checkout in the venv is never what gets measured.

Start-up is timed from Popen to the first ApiVersions answer, for both. The mock's
figure and RSS are of a Python process hosting librdkafka, so they are shown but are
not a broker-to-broker comparison.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PY = sys.executable


def source_root() -> str:
    """The directory holding the kafkette package this process runs."""
    import kafkette
    return os.path.dirname(os.path.dirname(os.path.abspath(kafkette.__file__)))


def env_for(source: str) -> dict:
    """os.environ with `source` first on PYTHONPATH."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != source]
    return dict(os.environ, PYTHONPATH=os.pathsep.join([source, *rest]))


def use_own_source() -> None:
    """Children inherit os.environ: make them import this source tree."""
    os.environ["PYTHONPATH"] = env_for(source_root())["PYTHONPATH"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(host: str, port: int, proc: subprocess.Popen, deadline_s: float = 30.0) -> float:
    """When `proc` first answered an ApiVersions v0 (the mock answers it too)."""
    from kafkette.client import probe_api_versions
    t_end = time.monotonic() + deadline_s
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise RuntimeError(f"broker process exited with {proc.returncode} before answering")
        try:
            probe_api_versions(host, port, timeout=1.0, client_id="bench")
            return time.monotonic()
        except OSError:
            pass
        time.sleep(0.002)  # polling a port that is not listening yet: nothing to wait on
    raise RuntimeError(f"{host}:{port} did not answer ApiVersions within {deadline_s}s")


def proc_status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def compile_bytecode(source: str | None = None) -> None:
    """Write kafkette's bytecode cache, as `pip install` does for an installed package.
    Start-up is measured as a user gets it: with PYTHONDONTWRITEBYTECODE=1 set (as in
    some CI and container environments) and no __pycache__, every start would first
    compile all of kafkette from source (~100 ms more on the 2-core bench machine)."""
    import compileall
    compileall.compile_dir(os.path.join(source or source_root(), "kafkette"), quiet=2)


class RevisionUnavailable(RuntimeError):
    """git or the revision is not there: the comparison is skipped with this message."""


def export_revision(rev: str, parent: str | None = None) -> tuple[str, str]:
    """`git archive REV` of the repository holding this source, unpacked into a new temp
    dir (no worktree or ref is created, so the repository is left as it was).
    Returns (directory, full commit id); the caller removes the directory."""
    import tarfile
    repo = source_root()
    git = shutil.which("git")
    if git is None:
        raise RevisionUnavailable("git is not installed")

    def run(*args, **kw):
        return subprocess.run([git, "-C", repo, *args], capture_output=True, **kw)
    got = run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", text=True)
    if got.returncode != 0:
        raise RevisionUnavailable(f"revision {rev!r} is not in the repository at {repo} "
                                  f"({(got.stderr or 'unknown revision').strip()})")
    commit = got.stdout.strip()
    out = tempfile.mkdtemp(prefix=f"kafkette-base-{commit[:7]}-", dir=parent)
    arch = run("archive", "--format=tar", commit, "kafkette")
    if arch.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        raise RevisionUnavailable(f"git archive {commit[:7]} failed: "
                                  f"{arch.stderr.decode(errors='replace').strip()}")
    import io
    with tarfile.open(fileobj=io.BytesIO(arch.stdout)) as tar:
        tar.extractall(out, filter="data")
    return out, commit


class Kafkette:
    name = "kafkette"
    # Parent directory of the brokers' data dirs (--tmpdir; default: the system's).
    data_parent: str | None = None

    def __init__(self, extra_args=(), source: str | None = None, name: str | None = None,
                 extra_listeners: str = ""):
        self.extra_args = list(extra_args)
        self.source = source
        # more listeners after the PLAINTEXT one that probes and admin calls use
        self.extra_listeners = extra_listeners
        if name is not None:
            self.name = name

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="kafkette-bench-", dir=self.data_parent)
        self.port = free_port()
        cmd = [PY, "-m", "kafkette", "serve",
               "--set", f"listeners=PLAINTEXT://127.0.0.1:{self.port}"
                        + (f",{self.extra_listeners}" if self.extra_listeners else ""),
               "--set", f"log.dirs={self.dir}", *self.extra_args]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     env=env_for(self.source) if self.source else None,
                                     # `python -m` puts the working directory first on
                                     # sys.path, ahead of PYTHONPATH: started from a
                                     # checkout, the base broker would run the checkout.
                                     cwd=self.source or None)
        try:
            self.startup_s = wait_ready("127.0.0.1", self.port, self.proc) - t0
        except BaseException:
            _stop(self.proc)
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.pid = self.proc.pid
        self._admin = None
        return self

    def create_topic(self, name: str, partitions: int) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        for f in self._admin.create_topics([NewTopic(name, partitions, 1)]).values():
            f.result(timeout=30)

    def rss_mb(self) -> float:
        return proc_status_kb(self.pid, "VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        return proc_status_kb(self.pid, "VmHWM") / 1024

    def __exit__(self, *exc):
        self._admin = None
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class KafketteCluster:
    """`kafkette cluster --brokers N` as the bench runs it: N combined broker+controller
    nodes with Kafka's defaults (test_defaults=False, as the command), on free ports,
    data under Kafkette.data_parent, plus a metrics listener per node."""
    name = "kafkette cluster"

    def __init__(self, brokers: int = 3, config: dict | None = None):
        self.size = brokers
        self.config = dict(config or {})

    def __enter__(self):
        from kafkette.embedded_cluster import EmbeddedCluster
        self.dir = tempfile.mkdtemp(prefix="kafkette-bench-cluster-", dir=Kafkette.data_parent)
        self.metrics_ports = {i + 1: free_port() for i in range(self.size)}
        self.cluster = EmbeddedCluster(
            self.size, self.config, data_dir=self.dir, test_defaults=False, log_dir=self.dir,
            node_config=lambda n: {"metrics.listener": f"127.0.0.1:{self.metrics_ports[n]}"})
        try:
            self.cluster.start()
        except BaseException:
            self.cluster.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.bootstrap = self.cluster.bootstrap_servers
        return self

    def create_topic(self, name: str, partitions: int, replication_factor: int,
                     config: dict | None = None) -> None:
        self.cluster.create_topic(name, partitions, replication_factor, config)

    def metrics_url(self, node_id: int) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[node_id]}/metrics"

    def __exit__(self, *exc):
        try:
            self.cluster.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class MockPeer:
    name = "librdkafka mock"

    def __enter__(self):
        t0 = time.monotonic()
        self.proc = subprocess.Popen([PY, "-m", "kafkette.bench.mock_launcher"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.bootstrap = self.proc.stdout.readline().strip()
        if not self.bootstrap:
            _stop(self.proc)
            raise RuntimeError("mock cluster launcher failed")
        host, port = self.bootstrap.split(",")[0].rsplit(":", 1)
        self.startup_s = wait_ready(host, int(port), self.proc) - t0
        self.pid = self.proc.pid
        return self

    def create_topic(self, name: str, partitions: int) -> None:
        self.proc.stdin.write(f"{name} {partitions}\n")
        self.proc.stdin.flush()
        code = self.proc.stdout.readline().strip()
        if code != "0":
            raise RuntimeError(f"mock topic create {name} failed: {code!r}")

    def rss_mb(self) -> float:
        return proc_status_kb(self.pid, "VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        return proc_status_kb(self.pid, "VmHWM") / 1024

    def __exit__(self, *exc):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        _stop(self.proc)


TARGETS = (Kafkette, MockPeer)
