"""RaftQuorum: the controller's view of the Raft quorum (a real multi-voter quorum;
kafkette.controller.quorum.LocalQuorum is the no-voters case with the same interface).

    quorum = RaftQuorum(node_id, {1: ("127.0.0.1", 9093), ...}, data_dir, clock, config=cfg)
    await quorum.start(listener)        # QuorumListener: apply / load_snapshot / snapshot / leader_changed
    offset = await quorum.append([b'{"type": ...}', ...])   # leader only: one atomic entry
    quorum.is_leader()                  # leads AND its epoch-start entry is applied here
    quorum.server.register(api_key, lo, hi, handler)        # more APIs on the controller listener

The metadata log lives in `<data_dir>/__cluster_metadata-0/` (kafkette.controller.raft.file_log).
start() loads the newest snapshot into the listener, then committed entries are
applied as the high watermark becomes known: at once for a quorum of one (it elects
itself and commits everything in its log), after the first fetch from the leader
otherwise (a node does not know on its own which of its entries are committed).

An observer (`node_id` not in `voters`: a broker-only node, process.roles=broker) opens
no controller listener: it fetches the log from the leader with its own replica id
(kafkette.controller.raft.core, "Observers"), applies it like any voter, and never
votes or leads; `server` raises on it.

append() resolves once the entry is committed and applied here; it fails with
NotControllerError when this node is not the leader, or loses leadership before the
commit (the entry may still commit under the next leader, as in KRaft: the controller
must treat the outcome as unknown).
"""
from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Protocol

from kafkette.clock import SystemClock
from kafkette.controller.acls import DESCRIBE
from kafkette.controller.raft.core import (
    Appended,
    Apply,
    HighWatermark,
    LeaderChanged,
    LoadSnapshot,
    NotLeaderError,
    RaftConfig,
    RaftNode,
    TakeSnapshot,
)
from kafkette.controller.raft.driver import RaftDriver
from kafkette.controller.raft.file_log import METADATA_TOPIC, FileLog
from kafkette.controller.raft.transport import ControllerServer, describe_quorum_response
from kafkette.errors import NotControllerError
from kafkette.logging import get_logger

log = get_logger("kafkette.controller.raft")

_CONFIG_NAMES = {
    "controller.quorum.election.timeout.ms": "election_timeout_ms",
    "controller.quorum.fetch.timeout.ms": "fetch_timeout_ms",
    "controller.quorum.election.backoff.max.ms": "election_backoff_max_ms",
    "metadata.log.max.record.bytes.between.snapshots": "max_bytes_between_snapshots",
}


class QuorumListener(Protocol):
    def apply(self, last_offset: int, values: list[bytes]) -> None: ...
    def load_snapshot(self, last_offset: int, data: bytes) -> None: ...
    def snapshot(self) -> tuple[int, bytes]: ...
    def leader_changed(self, leader_id: int | None, epoch: int) -> None: ...


def _lookup(config, key):
    if config is None:
        return None
    try:
        if hasattr(config, "get"):
            return config.get(key)
        return config[key]
    except (KeyError, TypeError):
        return None


def raft_config(config) -> tuple[RaftConfig, int, int]:
    """(RaftConfig, request timeout ms, retry backoff ms) from a RaftConfig, a dict of
    Kafka property names, or a BrokerConfig."""
    if isinstance(config, RaftConfig):
        return config, 2000, 20
    rc = RaftConfig()
    for key, attr in _CONFIG_NAMES.items():
        v = _lookup(config, key)
        if v is not None:
            setattr(rc, attr, int(v))
    request_timeout = int(_lookup(config, "controller.quorum.request.timeout.ms") or 2000)
    backoff = int(_lookup(config, "controller.quorum.retry.backoff.ms") or 20)
    # A fetch unanswered this long is sent again (below fetch.timeout: one lost
    # message must not start an election).
    rc.request_timeout_ms = max(1, min(request_timeout, rc.fetch_timeout_ms // 2))
    rc.fetch_max_wait_ms = max(1, min(rc.fetch_max_wait_ms, rc.fetch_timeout_ms // 4))
    return rc, request_timeout, backoff


class RaftQuorum:
    is_local = False

    def __init__(self, node_id: int, voters: dict[int, tuple[str, int]], data_dir: Path, clock=None, *,
                 config=None, rng: random.Random | None = None, server_ssl=None,
                 client_security=None, principal_of=None, server_sasl=None, authorize=None):
        if not voters:
            raise ValueError("a Raft quorum needs at least one voter")
        self.node_id = node_id
        # Not a voter: an observer that follows the log (KRaft's broker-only node).
        self.observer = node_id not in voters
        self.voters = dict(voters)
        self.data_dir = Path(data_dir)
        self.clock = clock or SystemClock()
        self.config, self._request_timeout_ms, self._retry_backoff_ms = raft_config(config)
        self._rng = rng or random.Random()
        # The controller listener's TLS (server side) and the ClientSecurity of the
        # connections to the other voters; None: PLAINTEXT.
        self._server_ssl = server_ssl
        self._client_security = client_security
        self._principal_of = principal_of   # the TLS peers' principals (ControllerServer)
        self._server_sasl = server_sasl     # a SASL controller listener (ControllerServer)
        # authorize(peer, operation) of the controller listener (ControllerServer);
        # may be set until start().
        self.authorize = authorize
        self._listener: QuorumListener | None = None
        self._log: FileLog | None = None
        self.node: RaftNode | None = None
        self._driver: RaftDriver | None = None
        self._server: ControllerServer | None = None
        self._pending: dict[int, tuple[int, asyncio.Future]] = {}   # last offset -> (epoch, future)
        self._appending: asyncio.Future | None = None
        self._leader: tuple[int | None, int] = (None, 0)
        self._closed = False

    # --- interface ---------------------------------------------------------------------------------
    @property
    def leader_id(self) -> int | None:
        return self.node.leader_id if self.node is not None else None

    @property
    def epoch(self) -> int:
        return self.node.epoch if self.node is not None else 0

    @property
    def high_watermark(self) -> int:
        return self.node.high_watermark if self.node is not None else 0

    def is_leader(self) -> bool:
        return self.node is not None and not self._closed and self.node.leader_ready

    @property
    def server(self) -> ControllerServer:
        if self._server is None:
            raise RuntimeError("an observer has no controller listener" if self.observer
                               else "RaftQuorum.start() first")
        return self._server

    @property
    def port(self) -> int:
        """The bound port of the controller listener (voters[node_id] may say 0)."""
        return self.server.port

    async def start(self, listener: QuorumListener) -> None:
        self._listener = listener
        if not self.observer:
            host, port = self.voters[self.node_id]
            self._server = ControllerServer(host, port, ssl_context=self._server_ssl,
                                            principal_of=self._principal_of,
                                            sasl=self._server_sasl,
                                            authorize=self.authorize)
            await self._server.start()
            self.voters[self.node_id] = (host, self._server.port)
        self._log = FileLog(self.data_dir / f"{METADATA_TOPIC}-0", self.clock)
        self.node = RaftNode(self.node_id, self.voters, self._log, self.config, self._rng)
        self._driver = RaftDriver(self.node, self._server, self.voters, self.clock, self._on_actions,
                                  request_timeout_ms=self._request_timeout_ms,
                                  retry_backoff_ms=self._retry_backoff_ms,
                                  security=self._client_security)
        if self._server is not None:
            # Kafka's ControllerApis: DESCRIBE on the cluster.
            self._server.register(55, 0, 2, self._on_describe_quorum, operation=DESCRIBE)
        listener = None if self._server is None else f"{self.voters[self.node_id][0]}:{self._server.port}"
        log.info("raft_quorum_starting", node_id=self.node_id, voters=sorted(self.voters),
                 observer=self.observer, listener=listener, log_start_offset=self._log.log_start_offset,
                 log_end_offset=self._log.log_end_offset, epoch=self._log.read_quorum_state().epoch)
        self._driver.start()

    async def append(self, values: list[bytes]) -> int:
        if not self.is_leader():
            raise NotControllerError(f"node {self.node_id} is not the active controller "
                                     f"(leader {self.leader_id}, epoch {self.epoch})")
        fut = asyncio.get_running_loop().create_future()
        try:
            actions = self.node.propose(list(values), self.clock.monotonic_ms())
        except NotLeaderError as exc:
            raise NotControllerError(str(exc)) from None
        # The Appended action (first in `actions`) files `fut` under the entry's last
        # offset before any Apply can resolve it (a quorum of one commits at once).
        self._appending = fut
        try:
            self._driver.process(actions)
        finally:
            self._appending = None
        return await fut

    def describe(self) -> dict:
        if self.node is None:
            return {"leader_id": None, "epoch": 0, "high_watermark": 0, "voters": {}}
        mono = self.clock.monotonic_ms()
        wall = self.clock.time_ms()
        d = self.node.describe(mono)
        for group in ("voters", "observers"):
            for v in d[group].values():
                t = v.get("last_fetch_ms")
                v["last_fetch_timestamp"] = -1 if t is None else wall - (mono - t)
        return d

    async def close(self) -> None:
        if self._closed:
            return
        if self.node is not None and self._driver is not None and self.node.is_leader:
            # Graceful: EndQuorumEpoch so that the others elect at once (KIP-595).
            self._driver.process(self.node.resign(self.clock.monotonic_ms()))
            await self._driver.drain_sends(0.5)
        self._closed = True
        self._fail_pending("the controller quorum is shutting down")
        if self._driver is not None:
            await self._driver.close()
        if self._server is not None:
            await self._server.close()
        if self._log is not None:
            self._log.close()

    # --- actions from the core ---------------------------------------------------------------------
    def _on_actions(self, actions: list) -> None:
        listener = self._listener
        for a in actions:
            if isinstance(a, Appended):
                if self._appending is not None:
                    self._pending[a.entry.last_offset] = (a.entry.epoch, self._appending)
                    self._appending = None
            elif isinstance(a, Apply):
                e = a.entry
                listener.apply(e.last_offset, list(e.values))
                self._resolve(e)
            elif isinstance(a, LoadSnapshot):
                listener.load_snapshot(a.snapshot_id.end_offset - 1, a.data)
                log.info("raft_snapshot_loaded", node_id=self.node_id, end_offset=a.snapshot_id.end_offset,
                         epoch=a.snapshot_id.epoch, bytes=len(a.data))
                for off in [o for o in self._pending if o < a.snapshot_id.end_offset]:
                    self._fail(off, "replaced by a snapshot")
            elif isinstance(a, LeaderChanged):
                self._on_leader_changed(a.leader_id, a.epoch)
            elif isinstance(a, TakeSnapshot):
                last, data = listener.snapshot()
                before = self._log.latest_snapshot
                # Always answered (the core asks again only after an answer); an offset
                # it cannot use (not past the log start, not an entry end) is ignored.
                self._driver.process(self.node.snapshot(last, data, self.clock.monotonic_ms()))
                snap = self._log.latest_snapshot
                if snap != before:
                    log.info("raft_snapshot_taken", node_id=self.node_id, last_offset=last, bytes=len(data),
                             log_start_offset=self._log.log_start_offset,
                             snapshot_end_offset=snap.end_offset if snap else None)
            elif isinstance(a, HighWatermark):
                pass

    def _on_leader_changed(self, leader_id: int | None, epoch: int) -> None:
        was = self._leader
        self._leader = (leader_id, epoch)
        log.info("raft_leader_changed", node_id=self.node_id, leader_id=leader_id, epoch=epoch,
                 role=self.node.role.name if self.node else None)
        if was[0] == self.node_id and leader_id != self.node_id:
            self._fail_pending(f"node {self.node_id} lost the leadership (epoch {epoch}, leader {leader_id})")
        if self._listener is not None:
            self._listener.leader_changed(leader_id, epoch)

    def _resolve(self, entry) -> None:
        for off in [o for o in self._pending if o < entry.last_offset]:
            self._fail(off, "truncated")
        p = self._pending.pop(entry.last_offset, None)
        if p is None:
            return
        epoch, fut = p
        if fut.done():
            return
        if epoch == entry.epoch:
            fut.set_result(entry.last_offset)
        else:
            fut.set_exception(NotControllerError("the proposal was replaced by another leader's entry"))

    def _fail(self, offset: int, why: str) -> None:
        _, fut = self._pending.pop(offset)
        if not fut.done():
            fut.set_exception(NotControllerError(why))

    def _fail_pending(self, why: str) -> None:
        for off in list(self._pending):
            self._fail(off, why)

    # --- DescribeQuorum (55) --------------------------------------------------------------------------
    def _on_describe_quorum(self, request, api_version, header):
        return describe_quorum_response(self.describe(), self.node_id, self.voters)
