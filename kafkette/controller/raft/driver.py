"""Runs the sans-IO Raft core (kafkette.controller.raft.core) on the asyncio loop.

- Timers: one loop timer, re-armed after every event at the core's next_deadline().
- Outgoing requests: each Send of a core request becomes a ControllerChannel request
  (one pipelined connection per peer); its answer is fed back with receive(). A lost
  connection or a timeout is simply dropped: the core's own timers retry (fetch
  resend, election timeout, BeginQuorumEpoch retry), as they do for a lost message in
  the simulator.
- Incoming requests: the controller listener's handlers turn a wire request into a
  core request with a fresh request id, and wait for the core's answer (a parked
  Fetch is answered within its max wait, so this always completes).
- Flush: after an event that appended, a flush runs on the next loop iteration, so
  proposals arriving together share one fsync (the metadata log is small; the fsync
  runs on the loop, as every other metadata write does).
Other actions (Apply, LoadSnapshot, LeaderChanged, HighWatermark, TakeSnapshot,
Appended) go to `on_actions`, the RaftQuorum.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from kafkette.controller.acls import CLUSTER_ACTION
from kafkette.controller.raft import messages as m
from kafkette.controller.raft.core import RaftNode, Send
from kafkette.controller.raft.transport import (
    ChannelError,
    ControllerChannel,
    ControllerServer,
    error_response,
    request_from_wire,
    response_from_wire,
    response_to_wire,
    to_wire,
)
from kafkette.errors import ErrorCode, KafkaStorageError
from kafkette.logging import get_logger

log = get_logger("kafkette.controller.raft")
STORAGE_RETRY_S = 1.0

# api key -> (versions, the cluster operation a sender needs): Kafka's ControllerApis
# authorizes each Raft API as CLUSTER_ACTION on the cluster.
RAFT_APIS = {52: (0, 1, CLUSTER_ACTION), 53: (0, 1, CLUSTER_ACTION), 54: (0, 1, CLUSTER_ACTION),
             1: (12, 17, CLUSTER_ACTION), 59: (0, 1, CLUSTER_ACTION)}


class RaftDriver:
    def __init__(self, node: RaftNode, server: ControllerServer | None, peers: dict[int, tuple[str, int]],
                 clock, on_actions: Callable[[list], None], *, request_timeout_ms: int = 2000,
                 retry_backoff_ms: int = 20, security=None):
        self.node = node
        self.server = server
        self.clock = clock
        self.on_actions = on_actions
        self.request_timeout_ms = request_timeout_ms
        self.channels = {
            nid: ControllerChannel(host, port, request_timeout_ms=request_timeout_ms,
                                   backoff_ms=max(1, retry_backoff_ms), backoff_max_ms=1000,
                                   security=security)
            for nid, (host, port) in peers.items() if nid != node.node_id}
        self._inbound: dict[tuple[int, int], asyncio.Future] = {}
        self._rid = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self._storage_failing = False   # see _step
        # An observer (server None) only sends: nobody fetches from it or asks its vote.
        if server is not None:
            for api_key, (lo, hi, operation) in RAFT_APIS.items():
                server.register(api_key, lo, hi, self._handler(api_key), operation=operation)
        self._refused_by: set[int] = set()   # peers that answered CLUSTER_AUTHORIZATION_FAILED

    def now(self) -> int:
        return self.clock.monotonic_ms()

    # --- events into the core --------------------------------------------------------------------
    def start(self) -> None:
        self.process(self.node.start(self.now()))

    def process(self, actions: list) -> None:
        """Carry out the core's actions (re-entrant: on_actions may feed the core)."""
        rest = []
        for a in actions:
            if isinstance(a, Send):
                if isinstance(a.message, m.REQUESTS):
                    if a.dst in self.channels and not self._closed:
                        t = asyncio.ensure_future(self._send_request(a.dst, a.message))
                        self._tasks.add(t)
                        t.add_done_callback(self._tasks.discard)
                else:
                    fut = self._inbound.pop((a.dst, a.message.rid), None)
                    if fut is not None and not fut.done():
                        fut.set_result(a.message)
            else:
                rest.append(a)
        if rest:
            self.on_actions(rest)
        if self._closed:
            return
        if self.node.needs_flush and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        self._arm()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._closed:
            self.process(self._step(self.node.flush, self.now()))

    def _step(self, fn, *args) -> list:
        """Feed the core, surviving a metadata log that cannot be written (a full
        disk): the step's entries are not durable, so nothing counts them, and the timer
        stays armed so the node keeps its role and retries (a flush after
        STORAGE_RETRY_S, not in a loop). One line per failure spell. Kafka's controller
        exits on a metadata log write failure instead."""
        try:
            actions = fn(*args)
        except KafkaStorageError as e:
            if not self._storage_failing:
                self._storage_failing = True
                log.error("raft_metadata_log_write_failed", error=e.message)
            if not self._closed:
                if self.node.needs_flush and not self._flush_scheduled:
                    self._flush_scheduled = True
                    asyncio.get_running_loop().call_later(STORAGE_RETRY_S, self._flush)
                self._arm()
            return []
        if self._storage_failing:
            self._storage_failing = False
            log.info("raft_metadata_log_writable_again")
        return actions

    def _arm(self) -> None:
        at = self.node.next_deadline()
        if self._timer is not None and self._timer_at == at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        delay = max(0.0, (at - self.now()) / 1000)
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if not self._closed:
            self.process(self._step(self.node.tick, self.now()))

    # --- the network -----------------------------------------------------------------------------
    async def _send_request(self, dst: int, msg) -> None:
        wire, version, client_id = to_wire(msg, dst)
        timeout = self.request_timeout_ms
        if isinstance(msg, m.FetchRequest):
            timeout += msg.max_wait_ms
        try:
            resp = await self.channels[dst].request(wire, version, timeout_ms=timeout, client_id=client_id)
            if getattr(resp, "error_code", 0) == ErrorCode.CLUSTER_AUTHORIZATION_FAILED:
                # The peer's authorizer refuses this node's principal: the core's
                # timers retry, which is futile until the ACLs or super.users change,
                # so say it once per peer.
                if dst not in self._refused_by:
                    self._refused_by.add(dst)
                    log.error("raft_request_refused_by_peer", peer=dst,
                              error="CLUSTER_AUTHORIZATION_FAILED",
                              hint="this node's controller-listener principal needs "
                                   "CLUSTER_ACTION on the cluster (super.users)")
                return
            self._refused_by.discard(dst)
            core_resp = response_from_wire(msg, resp)
        except ChannelError:
            return  # the core retries on its own timers
        except Exception as exc:  # noqa: BLE001 - a malformed answer must not kill the loop
            log.warning("raft_bad_response", peer=dst, error=repr(exc))
            return
        if not self._closed:
            self.process(self._step(self.node.receive, dst, core_resp, self.now()))

    def _handler(self, api_key: int):
        async def handle(request, api_version, header):
            if self._closed:
                return error_response(api_key, api_version, ErrorCode.NOT_CONTROLLER)
            self._rid += 1
            rid = self._rid
            parsed = request_from_wire(api_key, request, api_version, header, rid)
            if parsed is None:
                return error_response(api_key, api_version, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            src, core_req = parsed
            fut = asyncio.get_running_loop().create_future()
            self._inbound[(src, rid)] = fut
            self.process(self._step(self.node.receive, src, core_req, self.now()))
            wait = self.request_timeout_ms + getattr(core_req, "max_wait_ms", 0)
            try:
                core_resp = await asyncio.wait_for(fut, wait / 1000)
            except asyncio.TimeoutError:
                self._inbound.pop((src, rid), None)
                return error_response(api_key, api_version, ErrorCode.REQUEST_TIMED_OUT)
            return response_to_wire(api_key, api_version, core_resp)
        return handle

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for fut in self._inbound.values():
            if not fut.done():
                fut.cancel()
        self._inbound.clear()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        for ch in self.channels.values():
            await ch.close()

    async def drain_sends(self, timeout_s: float) -> None:
        """Wait (bounded) for outgoing requests in flight, e.g. EndQuorumEpoch on close."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
