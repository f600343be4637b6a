"""The controller listener: Kafka frames between the controller voters.

`ControllerServer` is a small asyncio TCP server: Kafka frames cut by
kafkette.protocol.framing's FrameDecoder, request header v1/v2, bodies as the
generated classes of kafkette.protocol.messages. APIs are registered with
`server.register(api_key, min_version, max_version, async fn(request, api_version, header))`;
the Raft driver registers Vote (52), BeginQuorumEpoch (53), EndQuorumEpoch (54),
DescribeQuorum (55), Fetch (1, KRaft's form: replica id, topic `__cluster_metadata`
partition 0) and FetchSnapshot (59); the broker side may register more on the same
listener. ApiVersions (18, v0-4) is always served, listing exactly what is
registered, as a Kafka controller's listener answers it (clients and `kafkette`'s own
readiness probes use it; a request above v4 closes the connection instead of getting
KIP-511's v0 answer). With an authorizer (`authorize`, given by the broker) an API
registered with an `operation` is served only to a sender whose principal holds it on
the cluster, else its response carries CLUSTER_AUTHORIZATION_FAILED at the top, as
Kafka's ControllerApis answers (CLUSTER_ACTION for Vote, BeginQuorumEpoch,
EndQuorumEpoch, Fetch and FetchSnapshot, DESCRIBE for DescribeQuorum). A SASL
listener closes a connection that has not authenticated within
connections.max.idle.ms of opening, as the client listeners do. Each connection answers its requests in order (as every Kafka listener
does), while the handlers of pipelined requests run concurrently. An unknown API or
version, an oversized or undecodable frame closes the connection, as Kafka does.

`ControllerChannel` is the client end, a thin wrapper of kafkette.client's NodeChannel:
one connection to host:port, pipelined requests matched by correlation id, reconnect
with exponential backoff, and a clear `ChannelError` (kafkette.client.NetworkError, a
KafkaError with NETWORK_EXCEPTION; `ChannelTimeout` for REQUEST_TIMED_OUT) on a
disconnect or timeout. It sends each request at the version the caller gives (the
voters all run this code, so nothing is negotiated; real KRaft uses ApiVersions).

This module and the driver are the only parts of the controller that see wire
messages (DESIGN.md, "Layers"); the functions at the bottom translate between them
and the core's own messages (kafkette.controller.raft.messages).

Differences from KRaft on the wire:
- Vote v2's PreVote flag (KIP-996) is not in our specs (Vote v0-1): a pre-vote is
  sent as Vote v1 with client id `kafkette-raft-prevote` and answered as a Vote.
- Fetch is sent at v12 (topic by name, replica id in the request; the server also
  accepts v13-v17 with topic id and ReplicaState); KRaft uses the newest with the
  metadata topic's fixed topic id.
- The Raft layer does not use a cluster id check (KRaft rejects INCONSISTENT_CLUSTER_ID).
"""
from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from typing import Awaitable, Callable, NamedTuple

from kafkette.client import NetworkError, NodeChannel, RequestTimeoutError
from kafkette.controller.acls import OPERATIONS
from kafkette.controller.raft import messages as m
from kafkette.errors import ErrorCode, ProtocolError
from kafkette.logging import get_logger
from kafkette.protocol import records as rec
from kafkette.protocol.framing import FrameDecoder, decode_request, encode_response
from kafkette.protocol.headers import peek_header
from kafkette.protocol.messages import API_MESSAGES

log = get_logger("kafkette.controller.raft.transport")

METADATA_TOPIC = "__cluster_metadata"
# KRaft's fixed topic id of __cluster_metadata (Uuid.METADATA_TOPIC_ID: AAAAAAAAAAAAAAAAAAAAAQ).
METADATA_TOPIC_ID = uuid.UUID(int=1)
MAX_FRAME = 64 * 1024 * 1024
CLIENT_ID = "kafkette-raft"
PRE_VOTE_CLIENT_ID = "kafkette-raft-prevote"
_READ_CHUNK = 256 * 1024

Handler = Callable[..., Awaitable]


#: A request that got no answer: the connection failed or closed, or it timed out.
#: Also a ConnectionError, so callers catching OSError-family errors see it.
ChannelError = NetworkError
#: No answer within the timeout (REQUEST_TIMED_OUT); a ChannelError too.
ChannelTimeout = RequestTimeoutError


# --- server ------------------------------------------------------------------------------------
ANONYMOUS = "User:ANONYMOUS"


class Peer(NamedTuple):
    """Who sent a request on the controller listener: its principal and IP address."""
    principal: str
    host: str


class ControllerServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, max_frame: int = MAX_FRAME,
                 ssl_context=None, principal_of: Callable | None = None, sasl=None,
                 authorize: Callable | None = None):
        self.host = host
        self.port = port
        self.max_frame = max_frame
        # An SSL / SASL_SSL controller listener: the server side of its TLS, with
        # ssl.client.auth for mutual TLS.
        self.ssl_context = ssl_context
        # principal_of(ssl_object) -> "User:..." of a TLS peer (its certificate after
        # ssl.principal.mapping.rules), None to refuse it; peers without TLS are
        # User:ANONYMOUS, as on any PLAINTEXT listener.
        self.principal_of = principal_of
        # APIs whose handler takes the connection's Peer as a fourth argument.
        self._with_peer: set[int] = set()
        # A SASL controller listener: an object with `new_session(peer)` (a sans-IO
        # server.sasl.SaslSession), `exchange(frame, session, peer)` (the encoded
        # answer to a SaslHandshake / SaslAuthenticate) and optionally `auth_timeout_s`
        # (connections.max.idle.ms; negative: none), given by server/server.py.
        # Until the session is authenticated only ApiVersions and the exchange are
        # served, as on every SASL listener.
        self.sasl = sasl
        # authorize(peer, operation) -> bool: may the sender do `operation`
        # (kafkette.controller.acls) on the cluster? None: no authorizer, all allowed.
        self.authorize = authorize
        # api key -> the cluster operation its sender needs (see register).
        self._operations: dict[int, int] = {}
        self._handlers: dict[int, tuple[int, int, Handler]] = {}
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task] = set()
        self._handlers[18] = (0, 4, self._api_versions)
        if sasl is not None:
            # Listed in ApiVersions, so that clients find the versions to use; the
            # requests themselves never reach a handler (see _sasl_step).
            self._handlers[17] = (0, 1, self._not_now)
            self._handlers[36] = (0, 2, self._not_now)

    @staticmethod
    def _not_now(request, api_version, header):
        raise ProtocolError("SASL request after authentication")

    def _api_versions(self, request, api_version, header):
        from kafkette.protocol.messages import ApiVersionsResponse
        V = ApiVersionsResponse.ApiVersion
        return ApiVersionsResponse(error_code=0, api_keys=[
            V(api_key=k, min_version=lo, max_version=hi)
            for k, (lo, hi, _) in sorted(self._handlers.items())])

    def register(self, api_key: int, min_version: int, max_version: int, fn: Handler, *,
                 with_peer: bool = False, operation: int | None = None) -> None:
        """Serve `api_key` at versions min..max with `fn(request, api_version, header)`
        (`fn(request, api_version, header, peer)` with `with_peer`: the connection's
        Peer, for handlers that authorize the sender), a coroutine function (or a
        plain one) returning the response object. `operation`: the operation on the
        cluster its sender needs when an authorizer is on (else the answer is the
        API's error response with CLUSTER_AUTHORIZATION_FAILED, `fn` is not called)."""
        if api_key not in API_MESSAGES:
            raise ValueError(f"no generated messages for api key {api_key}")
        req_cls, _ = API_MESSAGES[api_key]
        if min_version < req_cls.MIN_VERSION or max_version > req_cls.MAX_VERSION or min_version > max_version:
            raise ValueError(f"versions {min_version}-{max_version} of api {api_key} not in the specs "
                             f"({req_cls.MIN_VERSION}-{req_cls.MAX_VERSION})")
        self._handlers[api_key] = (min_version, max_version, fn)
        if operation is not None:
            if operation not in OPERATIONS:
                raise ValueError(f"unknown ACL operation {operation}")
            self._operations[api_key] = operation
        else:
            self._operations.pop(api_key, None)
        if with_peer:
            self._with_peer.add(api_key)
        else:
            self._with_peer.discard(api_key)

    @property
    def bound_port(self) -> int:
        return self.port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port,
                                                  ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for t in list(self._conns):
            t.cancel()
        for t in list(self._conns):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._conns.add(task)
        addr = writer.get_extra_info("peername")
        addr = f"{addr[0]}:{addr[1]}" if addr else "?"
        # In-order answers: a queue of pending responses, written by one writer task.
        out: asyncio.Queue = asyncio.Queue()
        writer_task = asyncio.create_task(self._write_loop(out, writer, addr))
        decoder = FrameDecoder(self.max_frame)
        try:
            peer = self._peer(writer)
            if peer is None:
                return
            session = self.sasl.new_session(peer) if self.sasl is not None else None
            # connections.max.idle.ms before authentication (negative: no limit), as
            # server/connection.py closes an unauthenticated client connection.
            auth_timeout = getattr(self.sasl, "auth_timeout_s", -1) if session is not None else -1
            auth_deadline = time.monotonic() + auth_timeout if auth_timeout >= 0 else None
            while not writer_task.done():
                if auth_deadline is not None and not session.authenticated:
                    try:
                        data = await asyncio.wait_for(reader.read(_READ_CHUNK),
                                                      max(0.0, auth_deadline - time.monotonic()))
                    except asyncio.TimeoutError:
                        log.warning("closing controller connection: not authenticated "
                                    "within connections.max.idle.ms", peer=addr)
                        return
                else:
                    data = await reader.read(_READ_CHUNK)
                if not data:
                    break
                for frame in decoder.feed(data):
                    # Past authentication only a SaslHandshake (KIP-368) and sessions
                    # with a lifetime need the gate, as in server/connection.py.
                    if session is not None and (
                            not session.authenticated or
                            session.session_expires_ms is not None or
                            (len(frame) >= 2 and int.from_bytes(frame[:2], "big") == 17)):
                        done, peer = self._sasl_step(frame, session, peer, out)
                        if done:
                            return
                        continue
                    fut = asyncio.ensure_future(self._dispatch(frame, peer))
                    # The write loop stops at the first failed request; the failures of
                    # the pipelined ones behind it are not news (and must not surface as
                    # asyncio's "Task exception was never retrieved" errors).
                    fut.add_done_callback(_retrieve)
                    out.put_nowait(fut)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except ProtocolError as exc:   # a bad size prefix: FrameError
            log.warning("controller_listener_protocol_error", peer=addr, error=str(exc))
        finally:
            out.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(writer_task), 1.0)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                writer_task.cancel()
            # Requests nobody will read the answers of (a long-poll Fetch) stop here.
            while not out.empty():
                fut = out.get_nowait()
                if fut is not None:
                    fut.cancel()
            writer.close()
            self._conns.discard(task)

    async def _write_loop(self, out: asyncio.Queue, writer: asyncio.StreamWriter, peer: str) -> None:
        while True:
            fut = await out.get()
            if fut is None:
                return
            try:
                data = await fut
            except ProtocolError as exc:  # the frame was bad: close, as Kafka does
                log.warning("controller_listener_request_failed", peer=peer, error=str(exc))
                writer.close()
                return
            except Exception:  # a handler failed: a bug, with its traceback
                log.exception("controller_listener_handler_failed", peer=peer)
                writer.close()
                return
            writer.writelines(data)
            await writer.drain()

    def _peer(self, writer) -> "Peer | None":
        addr = writer.get_extra_info("peername") or ("", 0)
        ssl_object = writer.get_extra_info("ssl_object")
        principal = ANONYMOUS
        if ssl_object is not None and self.principal_of is not None:
            principal = self.principal_of(ssl_object)
            if principal is None:
                log.warning("closing controller connection: no ssl.principal.mapping.rules "
                            "rule matches the certificate", peer=f"{addr[0]}:{addr[1]}")
                return None
        return Peer(principal, addr[0])

    def _sasl_step(self, frame, session, peer: "Peer", out: asyncio.Queue):
        """One frame of a connection whose SASL session is not authenticated (or a
        KIP-368 re-authentication's SaslHandshake): answered in order through `out`.
        (closed?, the peer with its principal once authenticated)."""
        now_ms = int(time.monotonic() * 1000)
        api_key = int.from_bytes(frame[:2], "big") if len(frame) >= 2 else None
        was_authenticated = session.authenticated
        # server.sasl.Route by value: this layer does not import server/.
        route = session.route(api_key, now_ms).value
        if route == "dispatch":            # ApiVersions before the handshake
            out.put_nowait(asyncio.ensure_future(self._dispatch(frame, peer)))
            return False, peer
        if route == "close":
            log.warning("closing controller connection: SASL", peer=peer.host,
                        reason=session.failure)
            return True, peer
        if route == "raw_token":           # SaslHandshake v0: bare tokens
            token = session.authenticate_raw(frame, now_ms)
            answer = [] if token is None else [len(token).to_bytes(4, "big") + token]
        else:
            answer = self.sasl.exchange(frame, session, peer)
        done = asyncio.get_running_loop().create_future()
        done.set_result(answer or [])
        out.put_nowait(done)
        if session.failed:
            log.warning("closing controller connection: SASL authentication failed",
                        peer=peer.host, mechanism=session.mechanism, reason=session.failure)
            return True, peer                # the answer goes out before the close
        if session.authenticated and not was_authenticated:
            peer = Peer(session.principal, peer.host)
        return False, peer

    async def _dispatch(self, frame, peer: "Peer | None" = None) -> list:
        api_key, api_version, _corr = peek_header(frame)
        entry = self._handlers.get(api_key)
        if entry is None or not entry[0] <= api_version <= entry[1]:
            raise ProtocolError(f"api {api_key} v{api_version} is not served on the controller listener")
        header, request = decode_request(frame)
        operation = self._operations.get(api_key)
        if operation is not None and self.authorize is not None and \
                not self.authorize(peer or Peer(ANONYMOUS, ""), operation):
            return encode_response(error_response(api_key, api_version,
                                                  ErrorCode.CLUSTER_AUTHORIZATION_FAILED),
                                   api_key, api_version, header.correlation_id)
        if api_key in self._with_peer:
            result = entry[2](request, api_version, header, peer or Peer(ANONYMOUS, ""))
        else:
            result = entry[2](request, api_version, header)
        if inspect.isawaitable(result):
            result = await result
        return encode_response(result, api_key, api_version, header.correlation_id)


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


# --- client -------------------------------------------------------------------------------------
class ControllerChannel:
    """One pipelined connection to another controller's listener (a NodeChannel with
    the controller's settings, in milliseconds)."""

    def __init__(self, host: str, port: int, *, request_timeout_ms: int = 5000,
                 connect_timeout_ms: int = 2000, backoff_ms: int = 50, backoff_max_ms: int = 1000,
                 client_id: str = CLIENT_ID, max_frame: int = MAX_FRAME, security=None):
        self.host = host
        self.port = port
        self.request_timeout_ms = request_timeout_ms
        # `security`: kafkette.client_security.ClientSecurity of the controller listener.
        self._channel = NodeChannel(host, port, client_id=client_id, security=security,
                                    connect_timeout=connect_timeout_ms / 1000,
                                    request_timeout=request_timeout_ms / 1000,
                                    backoff=backoff_ms / 1000, backoff_max=backoff_max_ms / 1000,
                                    max_response_bytes=max_frame)

    def __repr__(self) -> str:
        return f"ControllerChannel({self.host}:{self.port})"

    @property
    def connected(self) -> bool:
        return self._channel.connected

    async def request(self, request, version: int, *, timeout_ms: int | None = None,
                      client_id: str | None = None):
        """Send `request` (a generated request object) at `version`; the decoded
        response, or ChannelError / ChannelTimeout."""
        timeout = None if timeout_ms is None else timeout_ms / 1000
        try:
            return await self._channel.send(request, version, timeout, client_id=client_id)
        except ProtocolError as exc:   # an undecodable answer: no answer, to the Raft core
            raise ChannelError(str(exc)) from None

    async def send(self, request, version: int, *, timeout_ms: int | None = None,
                   client_id: str | None = None):
        """Same as request()."""
        return await self.request(request, version, timeout_ms=timeout_ms, client_id=client_id)

    async def close(self) -> None:
        await self._channel.close()


# --- core message <-> wire message ---------------------------------------------------------------
# Versions we send (the newest our specs have, except Fetch: see the module docstring).
VOTE_VERSION = 1
BEGIN_QUORUM_EPOCH_VERSION = 1
END_QUORUM_EPOCH_VERSION = 1
FETCH_VERSION = 12
FETCH_SNAPSHOT_VERSION = 1
DESCRIBE_QUORUM_VERSION = 2

_NONE = -1


def _lid(leader_id: int | None) -> int:
    return _NONE if leader_id is None else leader_id


def _opt(leader_id: int) -> int | None:
    return None if leader_id < 0 else leader_id


def encode_entries(entries, timestamp_ms: int = 0) -> bytes:
    from kafkette.controller.raft.core import CONTROL_KEY
    parts = []
    for e in entries:
        key = CONTROL_KEY if e.control else None
        parts.append(rec.build_batch([(key, v, []) for v in e.values], e.offset, timestamp_ms=timestamp_ms,
                                     partition_leader_epoch=e.epoch, control=e.control))
    return b"".join(parts)


def decode_entries(data) -> tuple[m.Entry, ...]:
    if not data:
        return ()
    out = []
    mv = memoryview(data)
    for pos, h in rec.iter_batches(mv):
        records = rec.decode_records(mv[pos:pos + h.size])
        out.append(m.Entry(h.base_offset, max(0, h.partition_leader_epoch),
                           tuple(r.value if r.value is not None else b"" for r in records), h.is_control))
    return tuple(out)


def to_wire(msg, dst: int):
    """A core request -> (api key, version, wire request object, client id)."""
    from kafkette.protocol.messages import (
        BeginQuorumEpochRequest, EndQuorumEpochRequest, FetchRequest, FetchSnapshotRequest, VoteRequest,
    )
    if isinstance(msg, m.VoteRequest):
        P = VoteRequest.TopicData.PartitionData
        req = VoteRequest(voter_id=dst, topics=[VoteRequest.TopicData(METADATA_TOPIC, [P(
            0, candidate_epoch=msg.epoch, candidate_id=msg.candidate_id,
            last_offset_epoch=msg.last_epoch, last_offset=msg.end_offset)])])
        return req, VOTE_VERSION, PRE_VOTE_CLIENT_ID if msg.pre_vote else CLIENT_ID
    if isinstance(msg, m.BeginQuorumEpochRequest):
        P = BeginQuorumEpochRequest.TopicData.PartitionData
        req = BeginQuorumEpochRequest(voter_id=dst, topics=[BeginQuorumEpochRequest.TopicData(METADATA_TOPIC, [P(
            0, leader_id=msg.leader_id, leader_epoch=msg.epoch)])])
        return req, BEGIN_QUORUM_EPOCH_VERSION, CLIENT_ID
    if isinstance(msg, m.EndQuorumEpochRequest):
        P = EndQuorumEpochRequest.TopicData.PartitionData
        cands = [P.ReplicaInfo(candidate_id=c) for c in msg.preferred_successors]
        req = EndQuorumEpochRequest(topics=[EndQuorumEpochRequest.TopicData(METADATA_TOPIC, [P(
            0, leader_id=msg.leader_id, leader_epoch=msg.epoch, preferred_successors=list(msg.preferred_successors),
            preferred_candidates=cands)])])
        return req, END_QUORUM_EPOCH_VERSION, CLIENT_ID
    if isinstance(msg, m.FetchRequest):
        T = FetchRequest.FetchTopic
        req = FetchRequest(replica_id=msg.replica_id, replica_state=FetchRequest.ReplicaState(msg.replica_id, -1),
                           max_wait_ms=msg.max_wait_ms, min_bytes=0, max_bytes=MAX_FRAME // 2,
                           topics=[T(METADATA_TOPIC, METADATA_TOPIC_ID, [T.FetchPartition(
                               0, current_leader_epoch=msg.epoch, fetch_offset=msg.fetch_offset,
                               last_fetched_epoch=msg.last_fetched_epoch, log_start_offset=-1,
                               partition_max_bytes=MAX_FRAME // 2)])])
        return req, FETCH_VERSION, CLIENT_ID
    if isinstance(msg, m.FetchSnapshotRequest):
        T = FetchSnapshotRequest.TopicSnapshot
        P = T.PartitionSnapshot
        req = FetchSnapshotRequest(replica_id=msg.replica_id, max_bytes=msg.max_bytes, topics=[T(METADATA_TOPIC, [P(
            0, current_leader_epoch=msg.epoch,
            snapshot_id=P.SnapshotId(msg.snapshot_id.end_offset, msg.snapshot_id.epoch),
            position=msg.position)])])
        return req, FETCH_SNAPSHOT_VERSION, CLIENT_ID
    raise TypeError(f"not a core request: {msg!r}")


def response_from_wire(core_req, resp):
    """The wire answer to core request `core_req` -> the core response (same rid)."""
    rid = core_req.rid
    if isinstance(core_req, m.VoteRequest):
        p = _single(resp.topics, "partitions")
        err = resp.error_code or p.error_code
        return m.VoteResponse(rid, p.leader_epoch, _opt(p.leader_id), bool(p.vote_granted) and not err,
                              core_req.pre_vote, err)
    if isinstance(core_req, m.BeginQuorumEpochRequest):
        p = _single(resp.topics, "partitions")
        return m.BeginQuorumEpochResponse(rid, p.leader_epoch, _opt(p.leader_id), resp.error_code or p.error_code)
    if isinstance(core_req, m.EndQuorumEpochRequest):
        p = _single(resp.topics, "partitions")
        return m.EndQuorumEpochResponse(rid, p.leader_epoch, _opt(p.leader_id), resp.error_code or p.error_code)
    if isinstance(core_req, m.FetchRequest):
        p = _single(resp.responses, "partitions")
        cl = p.current_leader
        div = p.diverging_epoch
        sid = p.snapshot_id
        return m.FetchResponse(
            rid, cl.leader_epoch if cl is not None else -1, _opt(cl.leader_id) if cl is not None else None,
            resp.error_code or p.error_code, p.high_watermark, p.log_start_offset,
            decode_entries(p.records),
            div.epoch if div is not None else -1, div.end_offset if div is not None else -1,
            m.SnapshotId(sid.end_offset, sid.epoch) if sid is not None and sid.end_offset >= 0 else None)
    if isinstance(core_req, m.FetchSnapshotRequest):
        p = _single(resp.topics, "partitions")
        cl = p.current_leader
        sid = p.snapshot_id
        return m.FetchSnapshotResponse(
            rid, cl.leader_epoch if cl is not None else -1, _opt(cl.leader_id) if cl is not None else None,
            resp.error_code or p.error_code,
            m.SnapshotId(sid.end_offset, sid.epoch) if sid is not None and sid.end_offset >= 0 else None,
            p.size, p.position, bytes(p.unaligned_records or b""))
    raise TypeError(f"not a core request: {core_req!r}")


def _single(topics, attr):
    if not topics or not getattr(topics[0], attr):
        raise ChannelError("response without the __cluster_metadata partition")
    return getattr(topics[0], attr)[0]


def request_from_wire(api_key: int, req, version: int, header, rid: int):
    """A wire request -> (source node id, core request) or None when it is not for
    __cluster_metadata-0."""
    if api_key == 52:
        p = _partition(req.topics, "topic_name", "partitions")
        if p is None:
            return None
        pre = header is not None and header.client_id == PRE_VOTE_CLIENT_ID
        return p.candidate_id, m.VoteRequest(rid, p.candidate_epoch, p.candidate_id, p.last_offset_epoch,
                                             p.last_offset, pre)
    if api_key == 53:
        p = _partition(req.topics, "topic_name", "partitions")
        if p is None:
            return None
        return p.leader_id, m.BeginQuorumEpochRequest(rid, p.leader_epoch, p.leader_id)
    if api_key == 54:
        p = _partition(req.topics, "topic_name", "partitions")
        if p is None:
            return None
        succ = tuple(c.candidate_id for c in (p.preferred_candidates or ())) if version >= 1 \
            else tuple(p.preferred_successors or ())
        return p.leader_id, m.EndQuorumEpochRequest(rid, p.leader_epoch, p.leader_id, succ)
    if api_key == 1:
        if not req.topics or not req.topics[0].partitions:
            return None
        t = req.topics[0]
        if (version >= 13 and t.topic_id != METADATA_TOPIC_ID) or (version < 13 and t.topic != METADATA_TOPIC):
            return None
        p = t.partitions[0]
        if p.partition != 0:
            return None
        replica = req.replica_state.replica_id if version >= 15 and req.replica_state is not None else req.replica_id
        return replica, m.FetchRequest(rid, p.current_leader_epoch, replica, p.fetch_offset, p.last_fetched_epoch,
                                       req.max_wait_ms)
    if api_key == 59:
        p = _partition(req.topics, "name", "partitions")
        if p is None or p.partition != 0:
            return None
        sid = p.snapshot_id
        return req.replica_id, m.FetchSnapshotRequest(rid, p.current_leader_epoch, req.replica_id,
                                                      m.SnapshotId(sid.end_offset, sid.epoch), p.position,
                                                      req.max_bytes)
    return None


def _partition(topics, name_attr, parts_attr):
    for t in topics or ():
        if getattr(t, name_attr) == METADATA_TOPIC:
            parts = getattr(t, parts_attr) or ()
            for p in parts:
                if getattr(p, "partition_index", getattr(p, "partition", 0)) == 0:
                    return p
    return None


def response_to_wire(api_key: int, version: int, resp):
    """A core response -> the wire response object for api_key."""
    from kafkette.protocol.messages import (
        BeginQuorumEpochResponse, EndQuorumEpochResponse, FetchResponse, FetchSnapshotResponse, VoteResponse,
    )
    if api_key == 52:
        P = VoteResponse.TopicData.PartitionData
        return VoteResponse(topics=[VoteResponse.TopicData(METADATA_TOPIC, [P(
            0, error_code=resp.error, leader_id=_lid(resp.leader_id), leader_epoch=resp.epoch,
            vote_granted=resp.granted)])], node_endpoints=[])
    if api_key == 53:
        P = BeginQuorumEpochResponse.TopicData.PartitionData
        return BeginQuorumEpochResponse(topics=[BeginQuorumEpochResponse.TopicData(METADATA_TOPIC, [P(
            0, error_code=resp.error, leader_id=_lid(resp.leader_id), leader_epoch=resp.epoch)])],
            node_endpoints=[])
    if api_key == 54:
        P = EndQuorumEpochResponse.TopicData.PartitionData
        return EndQuorumEpochResponse(topics=[EndQuorumEpochResponse.TopicData(METADATA_TOPIC, [P(
            0, error_code=resp.error, leader_id=_lid(resp.leader_id), leader_epoch=resp.epoch)])],
            node_endpoints=[])
    if api_key == 1:
        T = FetchResponse.FetchableTopicResponse
        P = T.PartitionData
        p = P(0, error_code=resp.error, high_watermark=resp.high_watermark, last_stable_offset=resp.high_watermark,
              log_start_offset=resp.log_start_offset,
              diverging_epoch=P.EpochEndOffset(resp.diverging_epoch, resp.diverging_end_offset),
              current_leader=P.LeaderIdAndEpoch(_lid(resp.leader_id), resp.epoch),
              snapshot_id=P.SnapshotId(resp.snapshot_id.end_offset, resp.snapshot_id.epoch)
              if resp.snapshot_id is not None else P.SnapshotId(-1, -1),
              aborted_transactions=[], records=encode_entries(resp.entries))
        return FetchResponse(responses=[T(METADATA_TOPIC, METADATA_TOPIC_ID, [p])], node_endpoints=[])
    if api_key == 59:
        T = FetchSnapshotResponse.TopicSnapshot
        P = T.PartitionSnapshot
        sid = resp.snapshot_id
        p = P(0, error_code=resp.error,
              snapshot_id=P.SnapshotId(sid.end_offset, sid.epoch) if sid is not None else P.SnapshotId(-1, -1),
              current_leader=P.LeaderIdAndEpoch(_lid(resp.leader_id), resp.epoch),
              size=resp.size, position=resp.position, unaligned_records=resp.chunk)
        return FetchSnapshotResponse(topics=[T(METADATA_TOPIC, [p])], node_endpoints=[])
    raise ValueError(f"api {api_key}")


def error_response(api_key: int, version: int, code: int):
    """An answer to a request that is not for __cluster_metadata-0 (or failed)."""
    _, resp_cls = API_MESSAGES[api_key]
    resp = resp_cls()
    if hasattr(resp, "error_code"):
        resp.error_code = code
    return resp


def describe_quorum_response(d: dict, node_id: int, voters: dict[int, tuple[str, int]]):
    """DescribeQuorum (55) from RaftQuorum.describe(). As in KRaft, only the leader
    answers with the replica states; others say NOT_LEADER_OR_FOLLOWER and name it."""
    from kafkette.protocol.messages import DescribeQuorumResponse as R
    T = R.TopicData
    P = T.PartitionData
    leader = d["leader_id"]
    if leader != node_id:
        part = P(0, error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER, leader_id=_lid(leader), leader_epoch=d["epoch"],
                 high_watermark=d["high_watermark"], current_voters=[], observers=[])
    else:
        def state(rid, v):
            return R.ReplicaState(replica_id=rid, log_end_offset=v["log_end_offset"],
                                  last_fetch_timestamp=v["last_fetch_timestamp"],
                                  last_caught_up_timestamp=v["last_fetch_timestamp"])
        part = P(0, error_code=0, leader_id=leader, leader_epoch=d["epoch"], high_watermark=d["high_watermark"],
                 current_voters=[state(k, v) for k, v in sorted(d["voters"].items())],
                 observers=[state(k, v) for k, v in sorted(d["observers"].items())])
    nodes = [R.Node(node_id=nid, listeners=[R.Node.Listener(name="CONTROLLER", host=h, port=p)])
             for nid, (h, p) in sorted(voters.items())]
    return R(error_code=0, topics=[T(METADATA_TOPIC, [part])], nodes=nodes)
