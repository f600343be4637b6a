"""A node's side of a cluster, for each `process.roles` of KRaft:

- broker,controller (combined): both halves below on one node, the quorum voter's
  controller listener serving the controller-side APIs;
- broker: only the broker half. The node is a Raft observer of the metadata log (not
  in controller.quorum.voters, it never votes) and sends its controller requests to
  the active controller, found through the quorum, at that voter's address in
  controller.quorum.voters;
- controller: only the controller half. A voter that serves the controller-side APIs
  and checks broker sessions, but never registers or heartbeats, has no replica
  fetchers and leads no partition.

- Lifecycle: register with the active controller (BrokerRegistration, key 62), then
  heartbeat every `broker.heartbeat.interval.ms` (BrokerHeartbeat, key 63) with the
  offset of the metadata this node has applied. A new registration starts fenced; the
  controller unfences the broker once that offset reaches its registration record.
  A broker that misses `broker.session.timeout.ms` of heartbeats is fenced by the
  controller: it disappears from Metadata and loses partition leadership (with RF=1 the
  partition is offline until it comes back). On SIGTERM a last heartbeat asks to shut
  down (KRaft's controlled shutdown), so the controller fences it at once.
- Controller-side APIs on the controller listener (the Raft transport's server):
  BrokerRegistration, BrokerHeartbeat, AllocateProducerIds, AlterPartition (ISR
  changes from partition leaders), and the admin requests forwarded by other brokers. Only the active controller serves them; the others
  answer NOT_CONTROLLER and the sender retries against the new leader.
- Forwarding: CreateTopics, DeleteTopics, CreatePartitions, ElectLeaders,
  AlterConfigs, IncrementalAlterConfigs, CreateAcls and DeleteAcls sent to any broker
  reach the active controller. With an authorizer on, the request travels in an
  Envelope (key 58, KIP-590) carrying the client's principal (DefaultPrincipalData)
  and address, and the controller authorizes it as that principal, as Kafka's
  ControllerApis does. Without an authorizer the request itself is sent at the
  client's version and its response relayed. A request that arrives on the
  controller listener without an Envelope is the cluster's own (topic
  auto-creation) and runs without a principal (allowed). With an authorizer, the
  sender of either must hold CLUSTER_ACTION on the cluster (a super user, as the
  brokers' principal normally is), else CLUSTER_AUTHORIZATION_FAILED: as Kafka's
  ControllerApis, the controller trusts the wrapped principal only from a broker.
  The sender's principal is that of its controller-listener connection: its
  certificate's (ssl.principal.mapping.rules) with mutual TLS, User:ANONYMOUS on
  PLAINTEXT. BrokerRegistration, BrokerHeartbeat, AllocateProducerIds and
  AlterPartition need CLUSTER_ACTION of their sender too, as in Kafka, and so do the
  Raft APIs (Vote, BeginQuorumEpoch, EndQuorumEpoch, Fetch, FetchSnapshot; DESCRIBE
  for DescribeQuorum), checked by the transport through `_sender_may`.

Node-to-node connections use the inter-broker and controller listeners' protocols
(broker/peer_security.py): followers reach their leaders at the leader's registered
endpoint of `inter.broker.listener.name`.

Real Kafka differences: KRaft also has a separate controller listener per
`controller.listener.names`; here the controller listener is the address of the node
in `controller.quorum.voters`, with the protocol of the first of
`controller.listener.names` (any of the four). No UnregisterBroker. A KRaft controller-only node
registers itself with the quorum as a controller (ControllerRegistration, KIP-919)
and DescribeCluster can list controllers; kafkette's controllers are known from
controller.quorum.voters only.
"""
from __future__ import annotations

import asyncio
import inspect
import socket
import time
import uuid

from kafkette.controller.controller import AlterPartitionItem
from kafkette.errors import ErrorCode, KafkaError, NotControllerError
from kafkette.logging import get_logger
from kafkette.broker.authorization import authorizer_of, client_address, denied
from kafkette.controller.acls import CLUSTER, CLUSTER_ACTION, CLUSTER_NAME, OPERATIONS
from kafkette.broker.registry import ROUTE_CONTROLLER, ROUTE_COORDINATOR
from kafkette.protocol.framing import decode_request, decode_response, encode_request, encode_response
from kafkette.protocol.primitives import Reader, Writer
from kafkette.protocol.messages import (
    DefaultPrincipalData,
    EnvelopeRequest,
    EnvelopeResponse,
    AllocateProducerIdsRequest,
    AllocateProducerIdsResponse,
    AlterPartitionRequest,
    AlterPartitionResponse,
    BrokerHeartbeatRequest,
    BrokerHeartbeatResponse,
    BrokerRegistrationRequest,
    BrokerRegistrationResponse,
    CreateTopicsRequest,
)

log = get_logger("kafkette.cluster")

CREATE_TOPICS = CreateTopicsRequest.API_KEY   # the broker's own auto-creation requests
# Controller-side APIs only the active controller serves (KRaft's ControllerApis).
BROKER_REGISTRATION, BROKER_HEARTBEAT = BrokerRegistrationRequest.API_KEY, BrokerHeartbeatRequest.API_KEY
ALLOCATE_PRODUCER_IDS, ALTER_PARTITION = AllocateProducerIdsRequest.API_KEY, AlterPartitionRequest.API_KEY
ENVELOPE = EnvelopeRequest.API_KEY
# Errors after which a controller RPC is retried against the (new) active controller.
_RETRY_CODES = {ErrorCode.NOT_CONTROLLER, ErrorCode.REQUEST_TIMED_OUT}


class ControllerUnavailable(Exception):
    pass


# Kafka's name for the file (KIP-966), in the data directory, with the same JSON.
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"


def _take_clean_shutdown_epoch(data_dir) -> int:
    """The broker epoch the last clean shutdown left, removing the file (so that a
    crash from now on is seen as one); -1 when there is none."""
    import json
    import os
    path = os.path.join(str(data_dir), CLEAN_SHUTDOWN_FILE)
    try:
        with open(path) as f:
            epoch = int(json.load(f).get("broker_epoch", -1))
    except (OSError, ValueError, AttributeError, TypeError):
        return -1
    try:
        os.unlink(path)
        from kafkette.log.fsutil import fsync_path
        fsync_path(str(data_dir))
    except OSError:
        pass
    return epoch


def write_clean_shutdown_epoch(data_dir, broker_epoch: int) -> None:
    import json
    import os
    from kafkette.log.fsutil import write_file_atomically
    try:
        write_file_atomically(os.path.join(str(data_dir), CLEAN_SHUTDOWN_FILE),
                              json.dumps({"version": 0, "broker_epoch": broker_epoch}).encode())
    except OSError as e:
        log.warning("clean shutdown file not written", error=str(e))


class _Header:
    """A request header for handlers run on behalf of a forwarding broker."""

    def __init__(self, api_key: int, api_version: int, client_id: str | None):
        self.request_api_key = api_key
        self.request_api_version = api_version
        self.api_version = api_version
        self.correlation_id = 0
        self.client_id = client_id


def forwarded_error_response(spec, request, code: int, message: str | None):
    """What the client gets when no controller could serve its forwarded request:
    every topic/resource fails with `code` (NOT_CONTROLLER is retriable for clients).
    `spec`: the API's HandlerSpec, which knows the shape of its error response."""
    return spec.error_response(request, code, None, message)


class _LocalContext:
    def __init__(self, api_version: int):
        self.api_version = api_version
        self.header = _Header(CREATE_TOPICS, api_version, "kafkette-broker")


class ClusterMember:
    def __init__(self, broker, quorum, voters: dict[int, tuple[str, int]]):
        self.broker = broker
        self.quorum = quorum
        self.voters = voters
        self.is_broker = broker.is_broker
        self.is_controller = broker.is_controller
        cfg = broker.config
        self.heartbeat_interval_s = cfg["broker.heartbeat.interval.ms"] / 1000
        self.request_timeout_s = cfg["controller.quorum.request.timeout.ms"] / 1000
        self.broker_epoch = -1
        self.fenced = True
        self._channels: dict[int, object] = {}
        self._tasks: list[asyncio.Task] = []
        self._incarnation = uuid.uuid4()
        self._duplicate_logged = False   # DUPLICATE_BROKER_REGISTRATION logged once
        self._stray_logs_checked = False
        self._creating: set[str] = set()
        self._closing = False
        self._isr_tasks: set[asyncio.Task] = set()
        self._refused_senders: set[tuple[str, int]] = set()
        # The controller listener's Raft APIs (Vote, Fetch, ..., DescribeQuorum) ask
        # this for the operations Kafka's ControllerApis checks.
        quorum.authorize = self._sender_may
        # Set once a heartbeat answer says this broker has caught up with the metadata
        # log: only then do the client listeners open (as a KRaft broker waits).
        self.caught_up = asyncio.Event()
        # KIP-966: the broker epoch of the last clean shutdown (-1 after a crash), which
        # the registration carries so that the controller can tell an unclean restart
        # (whose unflushed tail may be gone) and keep such a broker out of the ELR.
        self.previous_broker_epoch = _take_clean_shutdown_epoch(broker.data_dir)
        # Followers fetch from their leaders' client listeners (broker/replica_fetcher.py);
        # leaders send their ISR changes to the active controller.
        from kafkette.broker.replica_fetcher import ReplicaFetcherManager
        rm = broker.replica_manager
        rm.fetchers = ReplicaFetcherManager(rm, cfg, self._replica_channel)
        rm.alter_isr = self._alter_isr

    # -- start / stop ---------------------------------------------------------
    async def start(self) -> None:
        # The local metadata log is replayed in quorum.start: the partitions see only
        # its end state, not each leadership it recorded on the way.
        rm = self.broker.replica_manager
        rm.hold_metadata()
        try:
            await self.quorum.start(self.broker.controller)
        finally:
            rm.release_metadata()
        image = self.broker.image
        log.info("metadata replayed", metadata_offset=image.offset, topics=len(image.topics),
                 brokers=len(image.brokers), cluster_id=image.cluster_id or None,
                 observer=getattr(self.quorum, "observer", False))
        if self.is_controller:
            # Only voters can become the active controller: only they serve its APIs
            # and watch broker sessions.
            self._register_controller_apis()
            self._tasks.append(asyncio.ensure_future(self._session_checker()))
        if self.is_broker:
            self._tasks.append(asyncio.ensure_future(self._lifecycle()))

    async def close(self) -> None:
        self._closing = True
        if self.broker_epoch >= 0:
            # Controlled shutdown (KRaft: a heartbeat with wantShutDown): the controller
            # fences us now instead of after a session timeout. Best effort.
            try:
                await asyncio.wait_for(self._heartbeat(want_shutdown=True), 1.0)
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        await self.broker.replica_manager.fetchers.close()
        for t in [*self._tasks, *self._isr_tasks]:
            t.cancel()
        for t in [*self._tasks, *self._isr_tasks]:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
        await self.quorum.close()

    # -- requests this node must not serve itself ------------------------------------
    def handler_for(self, spec, handle):
        """The handler to run for `spec`'s API on this node: `handle` itself, or a
        wrapper that routes the request first (see `intercept`)."""
        if spec.route is None:
            return handle

        def checked(ctx, request):
            early = self.intercept(ctx, spec, request, handle)
            return handle(ctx, request) if early is None else early
        return checked

    def intercept(self, ctx, spec, request, handle):
        """Called by the dispatcher before the handler: a forwarded admin request
        (ROUTE_CONTROLLER), a group request for a group this node does not coordinate
        (ROUTE_COORDINATOR: NOT_COORDINATOR, or COORDINATOR_NOT_AVAILABLE while
        `__consumer_offsets` is missing or its partition offline), or None to let the
        handler serve it."""
        if spec.route == ROUTE_CONTROLLER:
            if self.broker.controller.is_active:
                return None
            return self.forward(ctx, spec, request)
        if spec.route == ROUTE_COORDINATOR:
            return self._check_groups(ctx, spec, request, handle)
        return None

    def _group_error(self, group_id: str) -> int:
        node = self.broker.group_coordinator_node(group_id)
        if node is None or self.broker.group_coordinator_ready() is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        return ErrorCode.NONE if node == self.broker.node_id else ErrorCode.NOT_COORDINATOR

    def _check_groups(self, ctx, spec, request, handle):
        # Authorization first, as KafkaApis: a group the client may not use is the
        # handler's to refuse (GROUP_AUTHORIZATION_FAILED), wherever it lives.
        authorized = spec.group_authorized
        codes = {g: self._group_error(g)
                 if authorized is None or authorized(ctx, request, g) else ErrorCode.NONE
                 for g in spec.group_ids(ctx, request)}
        if not any(codes.values()):
            return None
        if spec.per_group_response is not None:
            # Several groups in one request: serve ours, answer the others per group.
            resp = spec.per_group_response(ctx, request, handle, codes)
            if resp is not None:
                return resp
        code = next(c for c in codes.values() if c)
        return spec.error_response(request, code, ctx)

    # -- replication ---------------------------------------------------------------
    def _replica_channel(self, host: str, port: int):
        # A follower's connection to its leader's client listener. A timed-out request
        # closes the connection, so the timeout is well past replica.fetch.wait.max.ms.
        from kafkette.client import NodeChannel
        return NodeChannel(host, port, client_id=f"kafkette-replica-{self.broker.node_id}",
                           backoff_max=0.2, security=self.broker.inter_broker_security,
                           request_timeout=self.broker.config["replica.fetch.wait.max.ms"] / 1000
                           + 30)

    def _alter_isr(self, part, new_isr: tuple[int, ...]) -> None:
        task = asyncio.ensure_future(self._alter_partition(part, new_isr))
        self._isr_tasks.add(task)
        task.add_done_callback(self._isr_tasks.discard)

    async def _alter_partition(self, part, new_isr: tuple[int, ...]) -> None:
        """Send one ISR change to the active controller and apply its answer. Without
        an answer (or with an unexpected error) the change stays pending and is sent
        again, as Kafka's AlterPartitionManager does: the controller may have applied
        it, and the high watermark must keep waiting for a joining replica until the
        answer or the metadata image says which (Partition.isr_change_failed)."""
        # Kafka retries after retry.backoff.ms (100 ms by default); kafkette has no
        # such broker config, so the default it is.
        backoff = 0.1
        while not self._closing:
            code = await self._alter_partition_once(part, new_isr)
            if code == ErrorCode.NONE or not part.isr_change_failed(new_isr, code):
                return
            await asyncio.sleep(backoff)

    async def _alter_partition_once(self, part, new_isr: tuple[int, ...]) -> int | None:
        """One AlterPartition (v3, with each member's broker epoch, as KRaft brokers
        do): its error code (NONE once applied here), or None without an answer."""
        from kafkette.protocol.messages import AlterPartitionRequest
        rm = self.broker.replica_manager
        image = self.broker.image
        t = image.topics.get(part.topic)
        if t is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        try:
            T = AlterPartitionRequest.TopicData
            B = T.PartitionData.BrokerState
            members = [B(broker_id=r, broker_epoch=image.brokers[r].epoch
                         if r in image.brokers else -1) for r in new_isr]
            req = AlterPartitionRequest(
                broker_id=self.broker.node_id, broker_epoch=self.broker_epoch,
                topics=[T(topic_id=t.topic_id, partitions=[T.PartitionData(
                    partition_index=part.index, leader_epoch=part.leader_epoch,
                    new_isr_with_epochs=members,
                    # An unclean leader recovers by saying so (RECOVERED = 0) with an
                    # ISR of itself, before the ISR may grow (KIP-704).
                    leader_recovery_state=0,
                    partition_epoch=part.partition_epoch)])])
            resp = await self.controller_rpc(req, 3)
            code = resp.error_code
            if not code:
                p = resp.topics[0].partitions[0]
                code = p.error_code
                if not code:
                    log.info("isr changed", topic=part.topic, partition=part.index,
                             isr=list(p.isr), leader_epoch=p.leader_epoch,
                             partition_epoch=p.partition_epoch)
                    rm.on_isr_change(part, p.leader_epoch, p.partition_epoch, p.isr,
                                     proposed=new_isr)
                    return ErrorCode.NONE
        except (ControllerUnavailable, KafkaError, IndexError) as e:
            log.warning("isr change not sent", topic=part.topic, partition=part.index,
                        isr=list(new_isr), error=str(e))
            return None
        log.info("isr change refused", topic=part.topic, partition=part.index,
                 isr=list(new_isr), error=ErrorCode(code).name)
        return code

    # -- talking to the active controller ----------------------------------------
    def _channel(self, node_id: int):
        ch = self._channels.get(node_id)
        if ch is None:
            from kafkette.controller.raft.transport import ControllerChannel
            host, port = self.voters[node_id]
            # A short reconnect back-off: after the controller dies, the next one is
            # tried as soon as the quorum names it (the channel's default backs off to
            # 1 s, which delayed forwarded CreateTopics after a failover).
            ch = self._channels[node_id] = ControllerChannel(
                host, port, backoff_max_ms=200, security=self.broker.controller_security,
                request_timeout_ms=int(self.request_timeout_s * 1000))
        return ch

    async def controller_rpc(self, request, version: int, timeout_s: float | None = None):
        """Send `request` to the active controller; retry on NOT_CONTROLLER, a lost
        connection or no known leader until the deadline (ControllerUnavailable)."""
        deadline = time.monotonic() + (timeout_s or self.request_timeout_s * 5)
        last_error = "no active controller"
        while True:
            leader = self.quorum.leader_id
            if leader is not None and leader in self.voters:
                try:
                    remaining = max(0.05, deadline - time.monotonic())
                    resp = await asyncio.wait_for(
                        self._channel(leader).send(request, version),
                        min(remaining, self.request_timeout_s))
                    code = getattr(resp, "error_code", 0)
                    if code not in _RETRY_CODES:
                        return resp
                    last_error = ErrorCode(code).name
                except (OSError, ConnectionError, asyncio.TimeoutError, EOFError) as e:
                    last_error = f"{type(e).__name__}: {e}"
                except Exception as e:  # noqa: BLE001 - the channel's own errors
                    last_error = f"{type(e).__name__}: {e}"
            if time.monotonic() >= deadline:
                raise ControllerUnavailable(last_error)
            await asyncio.sleep(0.05)

    async def forward(self, ctx, spec, request):
        """Run an admin request on the active controller (ourselves included)."""
        try:
            deadline = max(1.0, getattr(request, "timeout_ms", 30000) / 1000)
            return await self._forward_once(ctx, spec.api_key, request, deadline)
        except ControllerUnavailable as e:
            log.warning("forwarding to the controller failed", api_key=spec.api_key,
                        error=str(e))
            return forwarded_error_response(spec, request, ErrorCode.NOT_CONTROLLER,
                                            "The active controller could not be reached.")

    async def _forward_once(self, ctx, api_key, request, timeout_s):
        deadline = time.monotonic() + timeout_s
        principal = getattr(ctx, "principal", None)
        while True:
            if self.broker.controller.is_active:
                return await self._run_local(api_key, request, ctx.api_version,
                                             ctx.header.client_id, principal,
                                             getattr(ctx, "client_host", ""))
            leader = self.quorum.leader_id
            if leader is not None and leader != self.broker.node_id:
                try:
                    if principal is not None and authorizer_of(self.broker) is not None:
                        send = self._send_enveloped(leader, ctx, api_key, request, principal)
                    else:
                        send = self._channel(leader).send(request, ctx.api_version)
                    return await asyncio.wait_for(send, max(0.1, deadline - time.monotonic()))
                except Exception as e:  # noqa: BLE001 - retried below
                    err = f"{type(e).__name__}: {e}"
            else:
                err = "no active controller"
            if time.monotonic() >= deadline:
                raise ControllerUnavailable(err)
            await asyncio.sleep(0.05)

    async def _send_enveloped(self, leader: int, ctx, api_key: int, request, principal: str):
        """KIP-590: the client's request, header included, inside an Envelope that
        names its principal and address; the controller's answer, unwrapped."""
        version = ctx.api_version
        frame = b"".join(bytes(c) for c in encode_request(request, version, 0,
                                                            ctx.header.client_id))[4:]
        kind, _, name = principal.partition(":")
        w = Writer()
        w.int16(0)   # Kafka's version-prefixed DefaultPrincipalData
        DefaultPrincipalData(type=kind, name=name, token_authenticated=False).write(w, 0)
        host = client_address(ctx)
        try:
            address = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except OSError:
            address = b""
        resp = await self._channel(leader).send(EnvelopeRequest(
            request_data=frame, request_principal=w.getvalue(),
            client_host_address=address), 0)
        if resp.error_code:
            raise KafkaError("the controller refused the envelope", resp.error_code)
        return decode_response(resp.response_data, api_key, version)[1]

    def _sender_may_act_for_cluster(self, peer) -> bool:
        """CLUSTER_ACTION on the cluster for the sender of a broker-to-controller
        request: registration, heartbeats, AlterPartition, producer id blocks and
        forwarded requests (KIP-590: Kafka's ControllerApis checks it before trusting
        an Envelope's principal)."""
        return self._sender_may(peer, CLUSTER_ACTION)

    def _sender_may(self, peer, operation: int) -> bool:
        """May the sender of a controller-listener request do `operation` on the
        cluster (always, without an authorizer)?"""
        auth = authorizer_of(self.broker)
        if auth is None:
            return True
        if auth.authorize(self.broker.image.acls, peer.principal, peer.host,
                          operation, CLUSTER, CLUSTER_NAME):
            return True
        denied(self.broker, peer.principal, peer.host, operation, CLUSTER, CLUSTER_NAME)
        if (peer.principal, operation) not in self._refused_senders:
            # Once per principal: a node whose principal is no super user is a
            # cluster misconfiguration, and every request would say so again.
            self._refused_senders.add((peer.principal, operation))
            log.warning("controller requests refused: the sender lacks the operation "
                        "on the cluster (add its principal to super.users)",
                        operation=OPERATIONS[operation], principal=peer.principal,
                        host=peer.host)
        return False

    async def _on_envelope(self, request, api_version, header, peer):
        """The controller side of _send_enveloped: run the inner request as the
        principal it names (only requests that are forwarded to the controller)."""
        if not self.broker.controller.is_active:
            return EnvelopeResponse(error_code=ErrorCode.NOT_CONTROLLER, response_data=None)
        if not self._sender_may_act_for_cluster(peer):
            return EnvelopeResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                                    response_data=None)
        try:
            inner_header, inner = decode_request(bytes(request.request_data))
            r = Reader(bytes(request.request_principal or b""))
            r.int16()
            data = DefaultPrincipalData.read(r, 0)
        except Exception:  # noqa: BLE001 - a malformed envelope
            return EnvelopeResponse(error_code=ErrorCode.INVALID_REQUEST, response_data=None)
        spec = self.broker.dispatcher.handlers.get(inner_header.api_key)
        if spec is None or spec.route != ROUTE_CONTROLLER or not (
                spec.min_version <= inner_header.api_version <= spec.max_version):
            return EnvelopeResponse(error_code=ErrorCode.INVALID_REQUEST, response_data=None)
        address = bytes(request.client_host_address or b"")
        host = ""
        if len(address) in (4, 16):
            host = socket.inet_ntop(socket.AF_INET if len(address) == 4 else socket.AF_INET6,
                                    address)
        resp = await self._run_local(inner_header.api_key, inner, inner_header.api_version,
                                     inner_header.client_id, f"{data.type}:{data.name}", host)
        chunks = encode_response(resp, inner_header.api_key, inner_header.api_version,
                                 inner_header.correlation_id)
        return EnvelopeResponse(error_code=0,
                                response_data=b"".join(bytes(c) for c in chunks)[4:])

    async def _run_local(self, api_key: int, request, version: int, client_id,
                         principal: str | None = None, client_host: str = ""):
        """Run a forwarded admin request here, as `principal` (None: the cluster's own
        request, see the module docstring)."""
        from kafkette.broker.dispatcher import RequestContext
        spec = self.broker.dispatcher.handlers[api_key]
        ctx = RequestContext(self.broker, _Header(api_key, version, client_id),
                             client_host, "CONTROLLER", principal)
        result = spec.handle(ctx, request)
        return await result if inspect.isawaitable(result) else result

    def create_topic_in_background(self, name: str, partitions: int, rf: int,
                                   configs: dict[str, str]) -> None:
        """Ask the active controller to create a topic and return at once: Metadata's
        auto-creation and `__consumer_offsets` on first FindCoordinator, whose
        callers answer LEADER_NOT_AVAILABLE / COORDINATOR_NOT_AVAILABLE meanwhile, as
        Kafka does."""
        if name in self._creating:
            return
        self._creating.add(name)
        T = CreateTopicsRequest.CreatableTopic
        req = CreateTopicsRequest(topics=[T(
            name=name, num_partitions=partitions, replication_factor=rf, assignments=[],
            configs=[T.CreatableTopicConfig(name=k, value=v) for k, v in configs.items()])],
            timeout_ms=30000, validate_only=False)

        async def create():
            try:
                ctx = _LocalContext(7)
                resp = await self._forward_once(ctx, CREATE_TOPICS, req, 30.0)
                code = resp.topics[0].error_code if resp.topics else 0
                if code and code != ErrorCode.TOPIC_ALREADY_EXISTS:
                    log.warning("topic auto-creation failed", topic=name,
                                error=ErrorCode(code).name)
            except Exception as e:  # noqa: BLE001 - a client will ask again
                log.warning("topic auto-creation failed", topic=name,
                            error=f"{type(e).__name__}: {e}")
            finally:
                self._creating.discard(name)
        self._tasks.append(asyncio.ensure_future(create()))

    async def allocate_producer_ids(self) -> range:
        if self.broker.controller.is_active:
            return await self.broker.controller.allocate_producer_ids(self.broker.node_id)
        resp = await self.controller_rpc(
            AllocateProducerIdsRequest(broker_id=self.broker.node_id,
                                       broker_epoch=self.broker_epoch), 0)
        if resp.error_code:
            raise KafkaError("producer id allocation failed", ErrorCode(resp.error_code))
        return range(resp.producer_id_start, resp.producer_id_start + resp.producer_id_len)

    # -- lifecycle ----------------------------------------------------------------
    async def _lifecycle(self) -> None:
        while not self._closing:
            try:
                if self.broker_epoch < 0:
                    await self._register()
                await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except ControllerUnavailable:
                pass  # no controller yet: try again next interval
            except KafkaError as e:
                if e.code in (ErrorCode.STALE_BROKER_EPOCH, ErrorCode.BROKER_ID_NOT_REGISTERED):
                    log.warning("registering again", reason=e.code.name)
                    self.broker_epoch = -1
                    continue
                if e.code == ErrorCode.DUPLICATE_BROKER_REGISTRATION:
                    # Our previous process (or another with our node.id) still has a
                    # session: retried every interval until the controller fences it.
                    if not self._duplicate_logged:
                        self._duplicate_logged = True
                        log.warning("broker registration refused: this node id is "
                                    "registered by another process whose session is "
                                    "alive; retrying until it expires",
                                    node_id=self.broker.node_id)
                else:
                    log.warning("broker heartbeat failed", error=str(e))
            except Exception as e:  # noqa: BLE001 - keep heartbeating whatever happens
                log.warning("broker heartbeat failed", error=f"{type(e).__name__}: {e}")
            await asyncio.sleep(self.heartbeat_interval_s)

    async def _register(self) -> None:
        b = self.broker
        L = BrokerRegistrationRequest.Listener
        # Kafka's SecurityProtocol ids: PLAINTEXT 0, SSL 1, SASL_PLAINTEXT 2, SASL_SSL 3.
        ids = {"PLAINTEXT": 0, "SSL": 1, "SASL_PLAINTEXT": 2, "SASL_SSL": 3}
        listeners = [L(name=name, host=host, port=port,
                       security_protocol=ids[b.static_config.security_protocol(name)])
                     for name, (host, port) in b.advertised.items()]
        req = BrokerRegistrationRequest(
            broker_id=b.node_id, cluster_id=b.static_config["cluster.id"] or "",
            incarnation_id=self._incarnation, listeners=listeners, features=[],
            rack=b.static_config["broker.rack"], is_migrating_zk_broker=False,
            log_dirs=[], previous_broker_epoch=self.previous_broker_epoch)
        resp = await self.controller_rpc(req, 3)
        if resp.error_code:
            raise KafkaError("broker registration refused", ErrorCode(resp.error_code))
        self.broker_epoch = resp.broker_epoch
        log.info("broker registered with the controller", broker_epoch=self.broker_epoch,
                 controller_id=self.quorum.leader_id)

    def wants_fence(self) -> bool:
        """True when every log dir is offline (KIP-112): nothing can be served, so the
        broker asks to be fenced and its leaderships move (Kafka halts such a broker,
        which its session timeout then fences). A broker with some dirs offline keeps
        leading their partitions and answers KAFKA_STORAGE_ERROR for them: telling the
        controller which dirs are offline (BrokerHeartbeat offline_log_dirs, KIP-858)
        needs directory ids and replica-to-dir assignments, which kafkette lacks."""
        return not self.broker.log_manager.online_dirs

    async def _heartbeat(self, want_shutdown: bool = False) -> None:
        want_fence = self.wants_fence()
        req = BrokerHeartbeatRequest(
            broker_id=self.broker.node_id, broker_epoch=self.broker_epoch,
            current_metadata_offset=self.broker.image.offset, want_fence=want_fence,
            want_shut_down=want_shutdown, offline_log_dirs=[])
        resp = await self.controller_rpc(req, 0, timeout_s=self.heartbeat_interval_s * 2)
        if resp.error_code:
            raise KafkaError("heartbeat refused", ErrorCode(resp.error_code))
        if resp.is_fenced != self.fenced:
            self.fenced = resp.is_fenced
            log.info("broker fenced" if self.fenced else "broker unfenced",
                     node_id=self.broker.node_id)
        if resp.is_caught_up and not self.caught_up.is_set():
            self.caught_up.set()
            log.info("metadata caught up", metadata_offset=self.broker.image.offset,
                     topics=len(self.broker.image.topics))
        if resp.is_caught_up and not self._stray_logs_checked:
            # Only now is the image complete: a topic deleted while we were down is
            # gone from it, and its old log must go before a new topic of that name.
            self._stray_logs_checked = True
            self.broker.replica_manager.remove_stray_logs(self.broker.image)

    async def _session_checker(self) -> None:
        controller = self.broker.controller
        while not self._closing:
            await asyncio.sleep(0.25)
            try:
                await controller.check_sessions()
                # Preferred leaders back (auto.leader.rebalance.enable): at most once per
                # leader.imbalance.check.interval.seconds, a no-op off the active controller.
                await controller.check_leader_balance()
            except asyncio.CancelledError:
                raise
            except NotControllerError:
                pass
            except Exception as e:  # noqa: BLE001 - keep checking
                log.warning("session check failed", error=f"{type(e).__name__}: {e}")

    # -- controller-side APIs -----------------------------------------------------
    def _register_controller_apis(self) -> None:
        server = self.quorum.server
        # Kafka's ControllerApis: CLUSTER_ACTION on the cluster for each of these.
        refused = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        server.register(BROKER_REGISTRATION, 0, 4, self._cluster_action_only(
            self._on_broker_registration, lambda: BrokerRegistrationResponse(
                error_code=refused)), with_peer=True)
        server.register(BROKER_HEARTBEAT, 0, 1, self._cluster_action_only(
            self._on_broker_heartbeat, lambda: BrokerHeartbeatResponse(
                error_code=refused, is_caught_up=False, is_fenced=True,
                should_shut_down=False)), with_peer=True)
        server.register(ALLOCATE_PRODUCER_IDS, 0, 0, self._cluster_action_only(
            self._on_allocate_producer_ids, lambda: AllocateProducerIdsResponse(
                error_code=refused, producer_id_start=-1, producer_id_len=0)), with_peer=True)
        server.register(ALTER_PARTITION, 0, 3, self._cluster_action_only(
            self._on_alter_partition, lambda: AlterPartitionResponse(
                error_code=refused, topics=[])), with_peer=True)
        server.register(ENVELOPE, 0, 0, self._on_envelope, with_peer=True)
        for spec in sorted(self.broker.dispatcher.handlers.values(), key=lambda s: s.api_key):
            if spec.route == ROUTE_CONTROLLER:
                server.register(spec.api_key, spec.min_version, spec.max_version,
                                self._forwarded_handler(spec), with_peer=True)

    def _cluster_action_only(self, fn, refusal):
        async def handle(request, api_version, header, peer):
            if not self._sender_may_act_for_cluster(peer):
                return refusal()
            return await fn(request, api_version, header)
        return handle

    def _forwarded_handler(self, spec):
        async def handle(request, api_version, header, peer):
            if not self.broker.controller.is_active:
                return forwarded_error_response(spec, request, ErrorCode.NOT_CONTROLLER,
                                                "This node is not the active controller.")
            if not self._sender_may_act_for_cluster(peer):
                return forwarded_error_response(
                    spec, request, ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                    "The sender of a forwarded request needs CLUSTER_ACTION on the cluster.")
            return await self._run_local(spec.api_key, request, api_version,
                                         getattr(header, "client_id", None))
        return handle

    async def _on_broker_registration(self, request, api_version, header):
        controller = self.broker.controller
        if not controller.is_active:
            return BrokerRegistrationResponse(error_code=ErrorCode.NOT_CONTROLLER)
        listener = next(iter(request.listeners), None)
        if listener is None:
            return BrokerRegistrationResponse(error_code=ErrorCode.INVALID_REQUEST)
        try:
            epoch = await controller.register_broker(
                request.broker_id, listener.host, listener.port, request.rack,
                request.cluster_id or None,
                previous_broker_epoch=request.previous_broker_epoch if api_version >= 3 else None,
                endpoints=[(l.name, l.host, l.port) for l in request.listeners],
                incarnation_id=str(request.incarnation_id))
        except KafkaError as e:
            return BrokerRegistrationResponse(error_code=e.code)
        return BrokerRegistrationResponse(error_code=0, broker_epoch=epoch)

    async def _on_broker_heartbeat(self, request, api_version, header):
        controller = self.broker.controller
        if not controller.is_active:
            return BrokerHeartbeatResponse(error_code=ErrorCode.NOT_CONTROLLER,
                                           is_caught_up=False, is_fenced=True,
                                           should_shut_down=False)
        try:
            caught_up, fenced, shutdown = await controller.broker_heartbeat(
                request.broker_id, request.broker_epoch, request.current_metadata_offset,
                request.want_fence, request.want_shut_down)
        except KafkaError as e:
            return BrokerHeartbeatResponse(error_code=e.code, is_caught_up=False,
                                           is_fenced=True, should_shut_down=False)
        return BrokerHeartbeatResponse(error_code=0, is_caught_up=caught_up,
                                       is_fenced=fenced, should_shut_down=shutdown)

    async def _on_allocate_producer_ids(self, request, api_version, header):
        controller = self.broker.controller
        if not controller.is_active:
            return AllocateProducerIdsResponse(error_code=ErrorCode.NOT_CONTROLLER,
                                               producer_id_start=-1, producer_id_len=0)
        try:
            ids = await controller.allocate_producer_ids(request.broker_id)
        except KafkaError as e:
            return AllocateProducerIdsResponse(error_code=e.code, producer_id_start=-1,
                                               producer_id_len=0)
        return AllocateProducerIdsResponse(error_code=0, producer_id_start=ids.start,
                                           producer_id_len=len(ids))

    async def _on_alter_partition(self, request, api_version, header):
        """AlterPartition (key 56, v0-3) from a partition leader: see
        Controller.alter_partitions. v0-1 name topics, v2+ use topic ids; v3 carries
        the broker epoch of each new ISR member (KIP-903)."""
        T = AlterPartitionResponse.TopicData
        P = AlterPartitionResponse.TopicData.PartitionData
        per_topic = [(t, [AlterPartitionItem(
            t.topic_name if api_version < 2 else t.topic_id, p.partition_index,
            p.leader_epoch, p.partition_epoch,
            [(m.broker_id, m.broker_epoch) for m in p.new_isr_with_epochs]
            if api_version >= 3 else list(p.new_isr), p.leader_recovery_state)
            for p in t.partitions]) for t in request.topics]
        try:
            results = iter(await self.broker.controller.alter_partitions(
                request.broker_id, request.broker_epoch,
                [item for _, items in per_topic for item in items]))
        except KafkaError as e:
            return AlterPartitionResponse(error_code=e.code, topics=[])
        return AlterPartitionResponse(error_code=0, topics=[
            T(topic_name=t.topic_name, topic_id=t.topic_id, partitions=[
                P(partition_index=item.partition, error_code=r.error, leader_id=r.leader_id,
                  leader_epoch=r.leader_epoch, isr=list(r.isr),
                  leader_recovery_state=r.leader_recovery_state,
                  partition_epoch=r.partition_epoch)
                for item, r in zip(items, results)])
            for t, items in per_topic])
