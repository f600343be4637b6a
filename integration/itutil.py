"""Helpers for the integration tests: a broker subprocess, polling, raw wire bits.

Nothing here imports kafkette: the tests treat the broker as a black box reached over
TCP, exactly as a stock client would. The raw-protocol helpers are written from the
Kafka protocol description (request header v1, response header v0, RecordBatch v2) so
that a test can send what no well-behaved client would.
"""
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import crc32c

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_VENV_PY = PROJECT_ROOT / ".venv" / "bin" / "python"
BROKER_PYTHON = str(_VENV_PY) if _VENV_PY.exists() else sys.executable

READY_TIMEOUT = 15.0   # seconds for a started broker to answer ApiVersions
STOP_TIMEOUT = 15.0    # seconds for SIGTERM to end the process


# --------------------------------------------------------------------------- polling

def wait_until(cond, timeout: float = 10.0, interval: float = 0.05, message: str = ""):
    """Call `cond()` until it returns a truthy value (which is returned) or the
    deadline passes (AssertionError, with the last exception if cond raised).
    An exception with a true `fatal` attribute is raised at once."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = cond()
            if value:
                return value
            last_exc = None
        except Exception as e:  # noqa: BLE001 - we report it on timeout
            if getattr(e, "fatal", False):
                raise     # e.g. a group member thread died: no point in waiting
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{message or getattr(cond, '__name__', 'condition')}{detail}")
        time.sleep(interval)


def unique_topic(prefix: str = "it") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- raw wire

def kstring(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def request_header_v1(api_key: int, api_version: int, correlation_id: int,
                      client_id: str | None = "kafkette-it") -> bytes:
    return struct.pack(">hhi", api_key, api_version, correlation_id) + kstring(client_id)


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def recv_frame(sock: socket.socket) -> bytes:
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    assert 0 <= size < 64 * 1024 * 1024, f"implausible response size {size}"
    return recv_exact(sock, size)


def roundtrip(host: str, port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send one framed request on a new connection and return the response frame."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(frame(payload))
        return recv_frame(s)


def wait_for_close(sock: socket.socket, timeout: float) -> tuple[bool, bytes, str]:
    """Read until the peer closes the connection or `timeout` passes.

    Returns (closed, bytes_received_before_close, how)."""
    deadline = time.monotonic() + timeout
    got = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, bytes(got), "timeout"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return False, bytes(got), "timeout"
        except (ConnectionResetError, BrokenPipeError) as e:
            return True, bytes(got), type(e).__name__
        if not chunk:
            return True, bytes(got), "eof"
        got += chunk


class Reader:
    """Big-endian cursor over a response body."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def _take(self, fmt: str):
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def int8(self):
        return self._take(">b")

    def int16(self):
        return self._take(">h")

    def int32(self):
        return self._take(">i")

    def int64(self):
        return self._take(">q")

    def string(self):
        n = self.int16()
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def bytes_(self):
        n = self.int32()
        if n < 0:
            return None
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def remaining(self):
        return len(self.data) - self.pos


def _zigzag_varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def build_record_batch(records: list[tuple[bytes | None, bytes | None]],
                       base_timestamp: int | None = None) -> bytes:
    """A valid, uncompressed RecordBatch v2 (magic 2) with base offset 0."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    body = bytearray()
    for i, (k, v) in enumerate(records):
        rec = bytearray()
        rec += b"\x00"                       # attributes
        rec += _zigzag_varint(0)             # timestamp delta
        rec += _zigzag_varint(i)             # offset delta
        for part in (k, v):
            if part is None:
                rec += _zigzag_varint(-1)
            else:
                rec += _zigzag_varint(len(part)) + part
        rec += _zigzag_varint(0)             # headers
        body += _zigzag_varint(len(rec)) + rec
    after_crc = struct.pack(">hiqqqhii", 0, len(records) - 1, base_timestamp, base_timestamp,
                            -1, -1, -1, len(records)) + bytes(body)
    crc = crc32c.crc32c(after_crc)
    after_length = struct.pack(">ibI", 0, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def parse_batch_headers(records: bytes) -> list[dict]:
    """Headers of the RecordBatch v2 entries in a fetched records blob (a partial
    trailing batch is ignored, as clients do)."""
    out = []
    pos = 0
    while pos + 61 <= len(records):
        base_offset, length, _epoch, magic, crc, attrs, last_delta = struct.unpack_from(
            ">qiibIhi", records, pos)
        if pos + 12 + length > len(records):
            break
        count = struct.unpack_from(">i", records, pos + 57)[0]
        out.append({"base_offset": base_offset, "length": length, "magic": magic,
                    "crc": crc, "attributes": attrs, "codec": attrs & 0x07,
                    "last_offset_delta": last_delta, "record_count": count,
                    "crc_ok": crc32c.crc32c(records[pos + 21:pos + 12 + length]) == crc})
        pos += 12 + length
    return out


def fetch_v4(host: str, port: int, topic: str, partition: int, offset: int,
             max_bytes: int = 8 * 1024 * 1024, correlation_id: int = 4242) -> dict:
    """One raw Fetch v4 (the Kafka 4.0 floor) for one partition."""
    body = struct.pack(">iiiib", -1, 500, 1, max_bytes, 0)
    body += struct.pack(">i", 1) + kstring(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, max_bytes)
    data = roundtrip(host, port, request_header_v1(1, 4, correlation_id) + body, timeout=10)
    r = Reader(data)
    assert r.int32() == correlation_id
    r.int32()  # throttle
    n_topics = r.int32()
    assert n_topics == 1, n_topics
    assert r.string() == topic
    assert r.int32() == 1
    part = {"partition": r.int32(), "error_code": r.int16(), "high_watermark": r.int64(),
            "last_stable_offset": r.int64()}
    n_aborted = r.int32()
    for _ in range(max(n_aborted, 0)):
        r.int64(), r.int64()
    part["records"] = r.bytes_() or b""
    return part


def api_versions_v0(host: str, port: int, timeout: float = 2.0) -> int:
    """Send ApiVersions v0 and return the error code of the answer."""
    data = roundtrip(host, port, request_header_v1(18, 0, 1, "kafkette-it-probe"), timeout)
    corr, err = struct.unpack_from(">ih", data)
    if corr != 1:
        raise ConnectionError(f"correlation id mismatch: {corr}")
    return err


# --------------------------------------------------------------------------- broker

class BrokerProcess:
    """One `python -m kafkette serve` subprocess on 127.0.0.1:<port>."""

    def __init__(self, workdir: Path, config: dict | None = None, port: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "broker.log"
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.config = dict(config or {})
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.killed = False     # the current process was ended by kill() on purpose

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        settings = {"listeners": f"PLAINTEXT://{self.host}:{self.port}",
                    "log.dirs": str(self.data_dir), **self.config}
        cmd = [BROKER_PYTHON, "-m", "kafkette", "serve"]
        for k, v in settings.items():
            cmd += ["--set", f"{k}={v}"]
        return cmd

    def start(self, ready_timeout: float = READY_TIMEOUT) -> "BrokerProcess":
        assert not self.is_alive(), "broker already running"
        self.starts += 1
        self.killed = False
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self.proc = subprocess.Popen(cmd, cwd=str(PROJECT_ROOT), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=env)
        try:
            self.wait_ready(ready_timeout)
        except BaseException:
            if self.is_alive():
                self.kill()
            raise
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(f"broker exited with code {rc} before it was ready\n"
                                   f"{self.log_tail()}")
            try:
                if api_versions_v0(self.host, self.port, timeout=1.0) == 0:
                    return
                last = "ApiVersions answered with an error"
            except OSError as e:
                last = repr(e)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"broker not ready after {timeout}s ({last})\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, and assert a clean exit (code 0)."""
        assert self.proc is not None, "broker never started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"broker (pid {self.proc.pid}) did not exit within "
                                     f"{timeout}s of SIGTERM; killed\n{self.log_tail()}")
        rc = self.proc.returncode
        assert rc == 0, f"broker exited with code {rc} after SIGTERM\n{self.log_tail()}"
        return rc

    def kill(self) -> int:
        """SIGKILL: no chance to flush or clean up."""
        assert self.proc is not None
        self.killed = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        return self.proc.returncode

    def restart(self, ready_timeout: float = READY_TIMEOUT) -> "BrokerProcess":
        self.stop()
        return self.start(ready_timeout)

    def rss_kb(self) -> int | None:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no broker log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"----- broker log tail ({self.log_path}) -----\n{tail}\n-----"

    def __repr__(self):
        return f"<BrokerProcess {self.bootstrap} pid={self.pid} dir={self.workdir}>"


# --------------------------------------------------------------------------- groups

def wait_stable(snapshot, ok, settle: float = 1.0, timeout: float = 30.0,
                interval: float = 0.1, message: str = ""):
    """Poll `snapshot()` until `ok(value)` holds and the value has not changed for
    `settle` seconds; return it. A consumer group "has stabilised" when every member
    reports the same assignment for a while, not at the first moment the union looks
    right (a rebalance may still be running)."""
    state = {"value": object(), "since": 0.0}

    def cond():
        value = snapshot()
        now = time.monotonic()
        if value != state["value"]:
            state["value"], state["since"] = value, now
        if not ok(value):
            state["since"] = now
            return None
        return (value,) if now - state["since"] >= settle else None

    try:
        return wait_until(cond, timeout=timeout, interval=interval,
                          message=message or "a stable value")[0]
    except AssertionError as e:
        raise AssertionError(f"{e}; last value: {state['value']!r}") from None


def record_timings(section: str, values: dict, env_var: str = "KAFKETTE_REBALANCE_TIMINGS"):
    """Print measured timings and merge them into the JSON file named by `env_var`
    (when set): {section: {name: value}}."""
    import json
    print(f"\n[timings] {section}: {json.dumps(values, sort_keys=True)}")
    path = os.environ.get(env_var)
    if not path:
        return
    p = Path(path)
    try:
        data = json.loads(p.read_text()) if p.exists() else {}
    except ValueError:
        data = {}
    data.setdefault(section, {}).update(values)
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, p)


# --------------------------------------------------------------------------- chaos

def run_chaos(tmp_path: Path, args: list[str], timeout: float) -> tuple[dict, str]:
    """Run `python -m kafkette.chaos` with `args` (data and node logs kept under
    tmp_path/run); returns its JSON summary and its output for assertion messages."""
    import json
    out = tmp_path / "chaos.json"
    cmd = [BROKER_PYTHON, "-m", "kafkette.chaos", *args, "--keep", str(tmp_path / "run"),
           "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, KAFKETTE_LOG_FORMAT="json"))
    report = f"exit code {proc.returncode}\n{proc.stdout}{proc.stderr[-4000:]}"
    assert out.exists(), f"no summary: {report}"
    print(proc.stdout)
    summary = json.loads(out.read_text())
    summary["exit_code"] = proc.returncode
    return summary, report


def chaos_fault_kinds(summary: dict) -> set[str]:
    """The fault kinds a campaign injects: partitions only in network namespaces."""
    return {"kill", "pause", "kill_controller"} | (
        {"partition"} if summary["network"] == "netns" else set())
