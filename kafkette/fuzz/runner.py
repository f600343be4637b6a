"""The fuzz run: a real node, fuzz frames over many connections, a healthy client beside.

The node is one combined broker + controller (process.roles=broker,controller, an
EmbeddedCluster of one), so both its client listener and its controller listener are
fuzzed. Frames are grouped into connections in index order (1..k frames each, all for
one listener); `workers` connections run at once. Each connection sends its frames
pipelined, then reads answers in order until each frame is answered, the broker closes,
or `answer_timeout` passes.

Findings (any one ends the run with exit code 1, after printing seed, index and hex):
- the node process exits;
- its RSS (VmRSS) goes over `rss_limit_mb`;
- a frame is neither answered nor its connection closed within `answer_timeout` (unless
  the request may legitimately wait: a Produce with acks=0, a long-poll Fetch, a
  JoinGroup or SyncGroup);
- an answer's correlation id is not the one of the frame it answers, or it does not
  decode with the generated response class;
- the node logs at error level (a handler that raised: "handler failed", a traceback);
- the healthy client's produce fails, or its records are not all read back intact.
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import os
import random
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kafkette.fuzz import frames as F

SIZE = struct.Struct(">i")


@dataclass
class Finding:
    kind: str
    detail: str
    frames: list = field(default_factory=list)   # FuzzFrame, the suspect first


@dataclass
class Stats:
    frames: int = 0
    connections: int = 0
    answered: int = 0
    closed: int = 0
    legit_waits: int = 0
    max_rss_kb: int = 0
    healthy_records: int = 0
    started: float = field(default_factory=time.monotonic)


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def legit_wait(f: F.FuzzFrame, wait_s: float) -> bool:
    """A request Kafka may leave unanswered for a while (or for good): acks=0 Produce,
    a Fetch whose max_wait_ms is long, a JoinGroup or SyncGroup (they wait for the
    rest of the group)."""
    from kafkette.protocol.headers import decode_request_header
    from kafkette.protocol.messages import API_MESSAGES
    from kafkette.protocol.primitives import Reader
    if any(m.startswith("size-") for m in f.mutations):
        return True   # the stream is out of step: the broker waits for bytes never sent
    body = f.body
    try:
        r = Reader(body)
        hdr = decode_request_header(r)
        cls = API_MESSAGES[hdr.api_key][0]
        if not cls.MIN_VERSION <= hdr.api_version <= cls.MAX_VERSION:
            return False
        msg = cls.read(r, hdr.api_version)
    except Exception:  # noqa: BLE001 - undecodable: it must be answered or closed
        return False
    if hdr.api_key == 0:
        return msg.acks == 0
    if hdr.api_key == 1:
        return msg.max_wait_ms >= wait_s * 1000 * 0.5
    return hdr.api_key in (11, 14)


def check_response(f: F.FuzzFrame, resp: bytes) -> str | None:
    """None when `resp` decodes as the answer to `f`; why not otherwise."""
    from kafkette.protocol.headers import response_header_version
    from kafkette.protocol.messages import API_MESSAGES
    from kafkette.protocol.primitives import Reader
    api_key, api_version = f.api_key, f.api_version
    body = f.body
    if len(body) >= 4:
        api_key, api_version = struct.unpack_from(">hh", body, 0)
    if api_key not in API_MESSAGES:
        return None  # not ours to judge
    resp_cls = API_MESSAGES[api_key][1]
    if not resp_cls.MIN_VERSION <= api_version <= resp_cls.MAX_VERSION:
        return None
    try:
        r = Reader(resp)
        r.int32()
        if response_header_version(api_key, api_version) == 1:
            r.skip_tagged_fields()
        if api_key == 18:
            # ApiVersions: a v0 body with UNSUPPORTED_VERSION when the broker does not
            # know the version (KIP-511).
            if r.remaining() >= 2 and struct.unpack_from(">h", resp, r.pos)[0] == 35:
                return None
        resp_cls.read(r, api_version)
    except Exception as e:  # noqa: BLE001
        return f"response does not decode: {type(e).__name__}: {e}"
    return None


def _out_of_step(f: F.FuzzFrame) -> bool:
    """A lying size prefix: the rest of the stream would be read out of step, so the
    frame is the last of its connection."""
    return any(m.startswith("size-") for m in f.mutations)


def connection_plan(seed: int, start: int, stop: int, kmax: int):
    """Consecutive frames, grouped into connections: (frames) lists."""
    i = start
    c = 0
    while i < stop:
        k = random.Random(f"kafkette-fuzz-conn:{seed}:{c}").randint(1, kmax)
        group = [F.frame(seed, i)]
        i += 1
        while len(group) < k and i < stop and not _out_of_step(group[-1]):
            f = F.frame(seed, i)
            if f.target != group[0].target:
                break
            group.append(f)
            i += 1
        c += 1
        yield group


class Run:
    def __init__(self, *, seed: int, frames: int, start: int = 0, workers: int = 16,
                 kmax: int = 8, answer_timeout: float = 10.0, rss_limit_mb: int = 300,
                 healthy_every: float = 0.2, check_responses: bool = True,
                 out=sys.stdout, keep_logs: str | None = None, groups: list | None = None,
                 linger: float = 0.0):
        self.seed = seed
        self.start = start
        self.stop = start + frames
        self.workers = workers
        self.kmax = kmax
        self.answer_timeout = answer_timeout
        self.rss_limit_kb = rss_limit_mb * 1024
        self.healthy_every = healthy_every
        self.check_responses = check_responses
        self.out = out
        self.keep_logs = keep_logs
        self.stats = Stats()
        self.findings: list[Finding] = []
        self.peers: dict[int, list] = {}     # local port -> frames of that connection
        self.in_flight: dict[int, list] = {}
        self.show_frames = 8
        self.linger = linger
        self.recent: collections.deque = collections.deque(maxlen=200)  # connections
        self.groups = groups   # replay: these connections instead of the plan
        self.node = None

    # ------------------------------------------------------------------ output
    def say(self, *parts) -> None:
        print(*parts, file=self.out, flush=True)

    def finding(self, kind: str, detail: str, frames=()) -> None:
        if getattr(self, "aborted", False) and kind in ("healthy", "died"):
            return   # the node was aborted by dump_stack()
        if not frames and kind in ("healthy", "died", "rss"):
            # No one frame to blame: the controller-listener frames sent lately first
            # (they can change cluster state), then the rest, newest first.
            recent = [f for g in reversed(self.recent) for f in g]
            frames = [f for f in recent if f.target == F.CONTROLLER] + \
                     [f for f in recent if f.target != F.CONTROLLER]
        at = time.strftime("%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
        self.findings.append(Finding(kind, f"{detail} (at {at})", list(frames)))

    def report_findings(self) -> None:
        for fd in self.findings:
            self.say(f"FINDING {fd.kind}: {fd.detail}")
            for f in fd.frames[:self.show_frames]:
                self.say(f"  seed {f.seed} frame {f.index} ({f.target}, {f.source}, api_key "
                         f"{f.api_key} v{f.api_version}, {','.join(f.mutations) or 'no mutation'})"
                         f"\n  replay: python -m kafkette.fuzz --replay {f.seed}:{f.index}"
                         f"\n  hex: {f.data.hex()}")

    # ------------------------------------------------------------------ node
    def start_node(self):
        from kafkette.embedded_cluster import EmbeddedCluster
        logdir = Path(self.keep_logs) if self.keep_logs else Path(tempfile.mkdtemp(prefix="kafkette-fuzz-"))
        self.cluster = EmbeddedCluster(brokers=1, log_dir=logdir, config={
            # Our warnings per bad frame are expected; keep the log to errors and the
            # few info lines, so that scanning it stays cheap.
            "offsets.topic.num.partitions": 1,
        })
        os.environ.setdefault("KAFKETTE_LOG_FORMAT", "json")
        os.environ.setdefault("PYTHONFAULTHANDLER", "1")   # dump_stack() on a hang
        # One warning per bad frame is most of the node's work otherwise; the checks
        # only need error lines (KAFKETTE_LOG_LEVEL=warning to keep them all).
        os.environ.setdefault("KAFKETTE_LOG_LEVEL", "error")
        self.node = self.cluster.nodes[0]
        try:  # a kept log directory: only this run's lines count
            self._log_pos = self.node.log_path.stat().st_size
        except OSError:
            self._log_pos = 0
        self.cluster.start()
        self.cluster.create_topic(F.HEALTHY_TOPIC, partitions=2)
        self.cluster.create_topic("fuzz-target", partitions=2)
        self.cluster.create_topic("fuzz-compact", partitions=1,
                                  config={"cleanup.policy": "compact", "segment.bytes": 65536,
                                          "min.cleanable.dirty.ratio": 0.01,
                                          "segment.ms": 1000})
        return self.node

    def addresses(self) -> dict[str, tuple[str, int]]:
        n = self.node
        return {F.BROKER: (n.host, n.port), F.CONTROLLER: (n.host, n.controller_port)}

    # ------------------------------------------------------------------ fuzz connections
    async def one_connection(self, group: list) -> None:
        host, port = self.addresses()[group[0].target]
        self.stats.connections += 1
        self.stats.frames += len(group)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        except (OSError, asyncio.TimeoutError) as e:
            self.finding("connect", f"cannot connect to the {group[0].target} listener: {e}", group)
            return
        local = writer.get_extra_info("sockname")[1]
        self.peers[local] = group
        self.recent.append(group)
        self.in_flight[local] = group
        try:
            writer.write(b"".join(f.data for f in group))
            try:
                await writer.drain()
            except OSError:
                pass
            pending = list(group)
            while pending:
                # Only Produce requests with acks=0 left: they get no answer, so a short
                # wait for a close (Kafka closes on an acks=0 error) is all there is.
                quiet = all(legit_wait(f, 0) and f.api_key == 0 for f in pending)
                timeout = 0.2 if quiet else self.answer_timeout
                try:
                    head = await asyncio.wait_for(reader.readexactly(4), timeout)
                    (n,) = SIZE.unpack(head)
                    if n < 4 or n > 64 * 1024 * 1024:
                        self.finding("bad-answer", f"answer size {n}", pending)
                        return
                    resp = await asyncio.wait_for(reader.readexactly(n), self.answer_timeout)
                except asyncio.TimeoutError:  # before OSError: TimeoutError is one
                    f = pending[0]
                    if quiet or legit_wait(f, self.answer_timeout) or \
                            any(_out_of_step(g) for g in group):
                        self.stats.legit_waits += 1
                        return
                    self.finding("hang", f"no answer and no close within {self.answer_timeout:g} s "
                                 f"({len(group) - len(pending)} of {len(group)} frames answered)",
                                 [f] + group)
                    return
                except (asyncio.IncompleteReadError, ConnectionError, OSError):
                    self.stats.closed += 1
                    return
                (corr,) = SIZE.unpack_from(resp, 0)
                # A Produce with acks=0 is never answered: skip those before the match.
                while pending and pending[0].correlation_id != corr and legit_wait(pending[0], 0):
                    pending.pop(0)
                if not pending or pending[0].correlation_id != corr:
                    self.finding("correlation", f"answer with correlation id {corr} does not "
                                 f"match the frame it answers", pending or group)
                    return
                f = pending.pop(0)
                self.stats.answered += 1
                if self.check_responses:
                    why = check_response(f, resp)
                    if why:
                        self.finding("bad-answer", why + f" (answer hex {resp[:200].hex()})", [f])
                        return
        finally:
            self.in_flight.pop(local, None)
            writer.transport.abort()

    async def worker(self, plan) -> None:
        for group in plan:
            if self.findings:
                return
            await self.one_connection(group)

    # ------------------------------------------------------------------ watchdogs
    def scan_log(self) -> None:
        path = self.node.log_path
        try:
            with open(path, "rb") as f:
                f.seek(self._log_pos)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self._log_pos += end
        for line in data[:end].splitlines():
            if b'"level": "error"' not in line and b'"level":"error"' not in line and \
                    b'"level": "critical"' not in line and b"Traceback" not in line:
                continue
            frames = []
            try:
                peer = json.loads(line).get("peer", "")
                frames = self.peers.get(int(peer.rsplit(":", 1)[1]), []) if peer else []
            except (ValueError, IndexError, AttributeError):
                pass
            if not frames:  # no peer in the line: every connection open at the time
                frames = [f for g in self.in_flight.values() for f in g]
            self.finding("error-log", line.decode(errors="replace")[:4000], frames)

    def dump_stack(self) -> None:
        """Where the node is stuck: SIGABRT makes its faulthandler (PYTHONFAULTHANDLER,
        set for the node) print every thread's stack to its log. The node dies of it;
        the run has a finding anyway."""
        import signal
        os.kill(self.node.pid, signal.SIGABRT)
        deadline = time.monotonic() + 5
        while self.node.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            text = self.node.log_path.read_text(errors="replace")
        except OSError:
            return
        at = text.rfind("Fatal Python error: Aborted")
        if at >= 0:
            self.finding("hang-stack", "the node's stack when the hang was found:\n" +
                         text[at:at + 6000], [])
        self._log_pos = len(text.encode())  # the abort is ours, not a finding
        self.aborted = True

    async def watchdog(self, stop: asyncio.Event) -> None:
        pid = self.node.pid
        while not stop.is_set():
            if not self.node.is_running():
                self.finding("died", f"the node exited with {self.node.returncode()}")
                return
            kb = rss_kb(pid)
            self.stats.max_rss_kb = max(self.stats.max_rss_kb, kb)
            if kb > self.rss_limit_kb:
                self.finding("rss", f"VmRSS {kb // 1024} MB over {self.rss_limit_kb // 1024} MB")
                return
            self.scan_log()
            if self.findings:
                return
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------------------------ healthy client
    async def healthy(self, stop: asyncio.Event) -> None:
        from kafkette.client import KafkaClient
        from kafkette.protocol.messages import ProduceRequest
        from kafkette.protocol.records import build_batch
        client = KafkaClient(self.node.bootstrap_servers, client_id="fuzz-healthy",
                             request_timeout=30)
        self.sent: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        T = ProduceRequest.TopicProduceData
        P = T.PartitionProduceData
        i = 0
        try:
            while not stop.is_set() or i == 0:
                part = i % 2
                recs = [(f"k-{i}-{j}".encode(), hashlib.sha256(f"{self.seed}:{i}:{j}".encode()).digest() * 4,
                         [("n", str(j).encode())]) for j in range(5)]
                req = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10000, topic_data=[
                    T(name=F.HEALTHY_TOPIC, partition_data=[P(index=part, records=build_batch(recs))])])
                try:
                    resp = await client.send(req, 9)
                except Exception as e:  # noqa: BLE001
                    self.finding("healthy", f"produce failed: {type(e).__name__}: {e}")
                    return
                pr = resp.responses[0].partition_responses[0]
                if pr.error_code != 0:
                    self.finding("healthy", f"produce answered error {pr.error_code}")
                    return
                for j, (k, v, _h) in enumerate(recs):
                    self.sent[(part, pr.base_offset + j)] = (k, v)
                self.stats.healthy_records += len(recs)
                i += 1
                try:
                    await asyncio.wait_for(stop.wait(), self.healthy_every)
                except asyncio.TimeoutError:
                    pass
            if not getattr(self, "aborted", False) and self.node.is_running():
                try:
                    await self.verify_healthy(client)
                except Exception as e:  # noqa: BLE001
                    self.finding("healthy", f"reading back failed: {type(e).__name__}: {e}")
        finally:
            await client.close()

    async def verify_healthy(self, client) -> None:
        from kafkette.protocol.messages import FetchRequest
        from kafkette.protocol.records import decode_records
        T = FetchRequest.FetchTopic
        P = T.FetchPartition
        got: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        ends = {}
        for (part, off) in self.sent:
            ends[part] = max(ends.get(part, 0), off + 1)
        for part, end in ends.items():
            offset = 0
            while offset < end:
                req = FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20,
                                   isolation_level=0, session_id=0, session_epoch=-1,
                                   topics=[T(topic=F.HEALTHY_TOPIC, partitions=[P(
                                       partition=part, fetch_offset=offset, current_leader_epoch=-1,
                                       log_start_offset=-1, partition_max_bytes=1 << 20)])],
                                   forgotten_topics_data=[], rack_id="")
                resp = await client.send(req, 12)
                pd = resp.responses[0].partitions[0]
                if pd.error_code != 0 or not pd.records:
                    self.finding("healthy", f"fetch partition {part} at {offset}: error "
                                 f"{pd.error_code}, {len(pd.records or b'')} bytes")
                    return
                for r in decode_records(bytes(pd.records)):
                    if r.offset >= offset:
                        got[(part, r.offset)] = (r.key, r.value)
                        offset = r.offset + 1
        missing = [k for k in self.sent if k not in got]
        wrong = [k for k, v in self.sent.items() if k in got and got[k] != v]
        if missing or wrong or len(got) != len(self.sent):
            self.finding("healthy", f"{len(missing)} records missing, {len(wrong)} changed, "
                         f"{len(got)} read for {len(self.sent)} produced")

    # ------------------------------------------------------------------ the run
    async def run_async(self) -> None:
        stop = asyncio.Event()
        plan = iter(self.groups) if self.groups is not None else \
            connection_plan(self.seed, self.start, self.stop, self.kmax)
        dog = asyncio.ensure_future(self.watchdog(stop))
        healthy = asyncio.ensure_future(self.healthy(stop))
        progress = asyncio.ensure_future(self.progress(stop))
        await asyncio.gather(*(self.worker(plan) for _ in range(self.workers)))
        if any(fd.kind == "hang" for fd in self.findings) and self.node.is_running():
            self.dump_stack()
        if self.linger and not self.findings:
            # Replays: effects that take a moment (a fenced broker, a new leader) show in
            # the healthy client's produces meanwhile.
            try:
                await asyncio.wait_for(dog, self.linger)
            except asyncio.TimeoutError:
                pass
        stop.set()
        await healthy
        if not dog.done():
            await dog
        progress.cancel()
        self.scan_log()
        if self.node.is_running():
            self.stats.max_rss_kb = max(self.stats.max_rss_kb, rss_kb(self.node.pid))
        else:
            self.finding("died", f"the node exited with {self.node.returncode()}")

    async def progress(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(10)
            s = self.stats
            el = time.monotonic() - s.started
            self.say(f"  {s.frames} frames, {s.connections} connections, "
                     f"{s.frames / el:.0f} frames/s, max RSS {s.max_rss_kb // 1024} MB, "
                     f"{s.healthy_records} healthy records")

    def run(self) -> int:
        self.start_node()
        self.say(f"fuzz: seed {self.seed}, frames {self.start}..{self.stop - 1}, node pid "
                 f"{self.node.pid} (broker {self.node.port}, controller "
                 f"{self.node.controller_port}), captures: {len(F.captures())}, log {self.node.log_path}")
        self.stats.started = time.monotonic()
        try:
            try:
                import uvloop
                runner = uvloop.run
            except ImportError:  # pragma: no cover
                runner = asyncio.run
            runner(self.run_async())
        finally:
            elapsed = time.monotonic() - self.stats.started
            try:
                self.cluster.close()
            except Exception:  # noqa: BLE001
                pass
        s = self.stats
        self.summary = {
            "seed": self.seed, "frames": s.frames, "connections": s.connections,
            "answered": s.answered, "closed": s.closed, "legit_waits": s.legit_waits,
            "findings": len(self.findings), "max_rss_mb": round(s.max_rss_kb / 1024, 1),
            "frames_per_s": round(s.frames / elapsed, 1) if elapsed else 0,
            "seconds": round(elapsed, 1), "healthy_records": s.healthy_records,
        }
        self.report_findings()
        self.say("fuzz summary: " + json.dumps(self.summary))
        return 1 if self.findings else 0
