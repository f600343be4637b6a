"""The process: listeners, the broker, and a graceful shutdown.

Start order: bind every listener first (so that a listener on port 0 knows its real
port before it is advertised), then open the broker's state, then accept.
Shutdown (SIGTERM/SIGINT, or `stop()`): stop accepting, wake waiting fetches,
let each connection finish the request it is on (bounded wait), close the sockets,
then flush and close every log file.

A controller-only node (process.roles=controller) binds no client listener: it serves
only its controller listener (its controller.quorum.voters address, opened by the Raft
quorum), where Kafka's controllers also answer ApiVersions but no produce or fetch.

Security: each listener mapped to SSL or SASL_SSL gets its SSLContext
(server/tls.py), each SASL_* listener a SASL session per connection (server/sasl.py),
built before anything binds, so that an unreadable key store stops the start with a
configuration error (exit code 2) rather than failing the first client. A TLS
listener's sockets are accepted here (_accept_tls) so that the connection limits are
checked before the handshake, as Kafka's acceptor checks them.

Limits (server/limits.py): max.connections(.per.ip) counts, the broker-wide request
pool (queued.max.requests / queued.max.request.bytes), connections.max.idle.ms; client
errors are logged through one rate limiter per server (server/log_limiter.py). Their
counts are in /metrics (LimitsCollector below).
"""
from __future__ import annotations

import asyncio
import gc
import signal
import socket
import ssl
import sys
import time
from dataclasses import dataclass
from typing import Callable

from kafkette.broker.broker import Broker
from kafkette.broker.log_maintenance import LogMaintenance
from kafkette.config import SASL_PROTOCOLS, TLS_PROTOCOLS, BrokerConfig, ConfigError
from kafkette.logging import get_logger
from kafkette.server.connection import KafkaConnection, admit
from kafkette.server.limits import ConnectionQuotas, RequestPool
from kafkette.server.log_limiter import ClientErrorLog
from kafkette.server.metrics_http import MetricsHttpServer
from kafkette.server.sasl import PlainServer, SaslSession, ScramServer
from kafkette.server.tls import PrincipalMapper, server_context

log = get_logger("kafkette.server")
SHUTDOWN_GRACE_S = 10.0
# Client errors: the first CLIENT_ERROR_BURST per peer host per interval are logged.
CLIENT_ERROR_BURST = 10
CLIENT_ERROR_INTERVAL_S = 60.0


@dataclass
class ListenerSecurity:
    """How one listener secures its connections (None fields: not used)."""
    protocol: str
    tls: ssl.SSLContext | None
    principals: PrincipalMapper | None
    sasl: Callable | None            # (connection) -> SaslSession
    max_receive_size: int            # sasl.server.max.receive.size, before authentication
    auth_timeout_s: float            # connections.max.idle.ms, before authentication


def build_security(config: BrokerConfig) -> dict[str, ListenerSecurity]:
    """listener name -> ListenerSecurity for every listener that is not PLAINTEXT.
    ConfigError when a key store or trust store cannot be loaded."""
    out: dict[str, ListenerSecurity] = {}
    for lst in config.listeners:
        proto = config.security_protocol(lst.name)
        if proto == "PLAINTEXT":
            continue
        tls = server_context(config, lst.name) if proto in TLS_PROTOCOLS else None
        sasl = None
        if proto in SASL_PROTOCOLS:
            sasl = _sasl_factory(config, lst.name)
        out[lst.name] = ListenerSecurity(
            proto, tls, PrincipalMapper(config, lst.name) if tls is not None else None, sasl,
            config.listener_value(lst.name, "sasl.server.max.receive.size"),
            config["connections.max.idle.ms"] / 1000.0)
    return out


def _sasl_factory(config: BrokerConfig, listener: str) -> Callable:
    mechanisms = config.sasl_mechanisms(listener)
    users = config.plain_users(listener) if "PLAIN" in mechanisms else {}
    reauth = {m: config.connections_max_reauth_ms(listener, m) for m in mechanisms}

    def session(conn) -> SaslSession:
        def new_mechanism(name: str):
            if name == "PLAIN":
                return PlainServer(users)
            # SCRAM users come from the metadata image at the moment of the login.
            return ScramServer(name, lambda user: conn.server.scram_credential(name, user))
        return SaslSession(mechanisms, new_mechanism, lambda m: reauth[m])

    return session


class _ControllerSasl:
    """The SASL exchange of a SASL controller listener, for the Raft transport's
    ControllerServer (controller/raft/transport.py): sessions from the listener's
    settings, SaslHandshake / SaslAuthenticate answered by their handlers."""

    def __init__(self, server: "KafkaServer", listener: str, factory: Callable,
                 auth_timeout_s: float = -1.0):
        self.server = server   # what the session factory reads SCRAM users through
        self.listener = listener
        self._factory = factory
        # connections.max.idle.ms: a connection not authenticated by then is closed.
        self.auth_timeout_s = auth_timeout_s

    def new_session(self, peer):
        return self._factory(self)

    def exchange(self, frame, session, peer) -> list:
        return self.server.broker.dispatcher.handle_sasl(frame, session, peer.host,
                                                         self.listener) or []


class KafkaServer:
    def __init__(self, config: BrokerConfig, clock=None,
                 security: dict[str, ListenerSecurity] | None = None,
                 quotas: ConnectionQuotas | None = None):
        self.config = config
        self.security = build_security(config) if security is None else security
        self.quotas = build_quotas(config) if quotas is None else quotas
        self.request_pool = RequestPool.from_config(config)
        self.idle_timeout_s = config["connections.max.idle.ms"] / 1000.0
        self.idle_closes: dict[str, int] = {}          # listener -> connections closed
        self.client_errors = ClientErrorLog(get_logger("kafkette.connection"),
                                            burst=CLIENT_ERROR_BURST,
                                            interval_s=CLIENT_ERROR_INTERVAL_S)
        self._flush_timer = None
        for sec in self.security.values():
            if sec.tls is not None:  # server/tls.py: failed TLS handshakes
                sec.tls.sslobject_class.client_errors = self.client_errors
        self._auth_counters = None
        self.clock = clock
        self.max_request_bytes = config["socket.request.max.bytes"]
        self.connections: set[KafkaConnection] = set()
        # TLS listeners' accept loops and the handshakes under way (_accept_tls).
        self._acceptors: list[asyncio.Task] = []
        self._tls_sockets: list[socket.socket] = []
        self.handshakes: set[asyncio.Task] = set()
        self.broker: Broker | None = None
        self.maintenance: LogMaintenance | None = None
        self.dispatcher = None
        self._servers: list[asyncio.AbstractServer] = []
        self._sockets: list[tuple[object, socket.socket]] = []
        self._stopped = asyncio.Event()
        self._stopping = False
        self.bound: dict[str, tuple[str, int]] = {}
        self.metrics_http: MetricsHttpServer | None = None  # metrics.listener, when set
        self.console = None  # console.listener, when set (kafkette/console/)
        self.schema_registry = None  # server/schema_registry.py, schema.registry.listener

    async def start(self) -> None:
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        controller_only = not self.config.is_broker
        # Bind first: the real ports must be known before they are advertised. A
        # voter's controller listener is served by the Raft transport at its
        # controller.quorum.voters address (controller/raft/transport.py), not here.
        voter_listeners = (set(self.config.controller_listener_names)
                           if self.config.is_controller and self.config.controller_quorum_voters
                           else set())
        for lst in ([] if controller_only else self.config.listeners):
            if lst.name in voter_listeners:
                continue
            sock = socket.create_server((lst.host or "0.0.0.0", lst.port), reuse_port=False,
                                        backlog=1024)
            sock.setblocking(False)
            self._sockets.append((lst, sock))
            self.bound[lst.name] = sock.getsockname()[:2]
        advertised = {}
        adv_by_name = {a.name: a for a in self.config.advertised_listeners}
        for lst, sock in self._sockets:
            port = sock.getsockname()[1]
            a = adv_by_name.get(lst.name)
            host = a.host if a is not None else lst.host
            adv_port = a.port if a is not None and a.port != 0 else port
            if host in ("", "0.0.0.0", "::"):
                host = "localhost"
            advertised[lst.name] = (host, adv_port)
        if controller_only:
            me = next(v for v in self.config.controller_quorum_voters
                      if v.node_id == self.config.node_id)
            advertised = {"CONTROLLER": (me.host, me.port)}
        cl = self.config.controller_listener_name
        controller_sec = self.security.get(cl) if cl is not None and voter_listeners else None
        self.broker = Broker(self.config, advertised, self.clock,
                             controller_ssl=controller_sec.tls if controller_sec else None,
                             controller_principal_of=controller_sec.principals.principal
                             if controller_sec and controller_sec.principals else None,
                             controller_sasl=_ControllerSasl(self, cl, controller_sec.sasl,
                                                             controller_sec.auth_timeout_s)
                             if controller_sec and controller_sec.sasl else None)
        # Cluster mode: join the quorum and register with the active controller, then
        # wait until this broker has caught up with the metadata log before the client
        # listeners accept (as a KRaft broker does): a client that connects earlier
        # waits in the listen backlog instead of getting a partial Metadata answer.
        await self.broker.start_cluster()
        if self.broker.cluster is not None and not controller_only:
            await self.broker.cluster.caught_up.wait()
        # Retention, the log cleaner and flush.ms, on this event loop.
        self.maintenance = LogMaintenance(self.broker)
        self.maintenance.start()
        self.broker.replica_manager.start()
        if "__consumer_offsets" in self.broker.image.topics and not controller_only:
            # Replay committed offsets and groups now rather than on the first group
            # request, so that offset expiry and session timers run from the start.
            self.broker.group_coordinator_ready()
        if "__transaction_state" in self.broker.image.topics and not controller_only:
            # The same for transactions, and more than timers: a transaction the last
            # run left in PrepareCommit / PrepareAbort holds its partitions' LSO until
            # the coordinator writes the missing markers.
            self.broker.txn_coordinator_ready()
        # GET /metrics and /healthz when metrics.listener is set.
        # Up before the Kafka listeners accept: once a client gets an answer, the
        # admin endpoint (/faults) answers too (tests wait on the Kafka port).
        if self.config["metrics.listener"]:
            self.metrics_http = MetricsHttpServer(
                lambda: self.broker.metrics.registry,
                lambda: self.broker is not None and not self._stopping,
                faults_fn=lambda: self.broker.faults)
            await self.metrics_http.start(self.config["metrics.listener"])
        if self.config["console.listener"]:
            await self._start_console()
        self.dispatcher = self.broker.dispatcher
        self._register_auth_metrics()
        self.dispatcher.metrics.registry.register(LimitsCollector(self))
        self._schedule_error_flush()
        for lst, sock in self._sockets:
            sec = self.security.get(lst.name)
            if sec is not None and sec.tls is not None:
                self._tls_sockets.append(sock)
                self._acceptors.append(asyncio.ensure_future(self._accept_tls(lst.name, sock, sec)))
            else:
                srv = await loop.create_server(
                    lambda name=lst.name, sec=sec: KafkaConnection(self, name, sec), sock=sock)
                self._servers.append(srv)
            host, port = sock.getsockname()[:2]
            log.info("listener started", listener=lst.name, host=host, port=port,
                     security_protocol=self.config.security_protocol(lst.name),
                     advertised=f"{advertised[lst.name][0]}:{advertised[lst.name][1]}")
        if controller_only:
            host, port = self.broker.cluster.quorum.voters[self.config.node_id]
            log.info("controller listener only (process.roles=controller)", host=host, port=port)
        if self.config["schema.registry.listener"] and not controller_only:
            await self._start_schema_registry()
        log.info("kafkette ready", startup_ms=round((time.monotonic() - t0) * 1000, 1),
                 process_roles=",".join(self.config.process_roles))

    async def _accept_tls(self, listener: str, sock: socket.socket, sec) -> None:
        """A TLS listener: accept, check the connection limits on the bare socket (as
        Kafka's acceptor does; asyncio's TLS server would report the connection only
        after its handshake), then let asyncio run the TLS handshake and the
        KafkaConnection (loop.connect_accepted_socket). A failed handshake gives the
        slot back; server/tls.py has logged it."""
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                raise
            except OSError as e:
                # EMFILE and the like: asyncio's own server pauses its accepts too.
                log.warning("accept failed", listener=listener, error=str(e))
                await asyncio.sleep(0.1)
                continue
            if not admit(self, listener, peer):
                conn.close()
                continue
            task = asyncio.ensure_future(self._tls_connection(listener, conn, peer, sec))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    async def _tls_connection(self, listener: str, conn: socket.socket, peer, sec) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: KafkaConnection(self, listener, sec, admitted_ip=peer[0]), conn,
                ssl=sec.tls)
        except BaseException as e:
            # The transport owns the socket from the start and has closed it (asyncio
            # and uvloop alike): closing it here could hit a reused file descriptor.
            self.quotas.release(listener, peer[0])
            if isinstance(e, asyncio.CancelledError):
                raise
            # A failed or timed-out handshake: logged by server/tls.py's SSLObject.

    async def _start_console(self) -> None:
        # Imported here: the console is an upper layer that only a serving process needs.
        from kafkette.console import refusal
        from kafkette.console.app import Console
        from kafkette.server.metrics_http import parse_host_port

        reason = refusal(self.config)
        if reason is not None:
            raise ConfigError(reason)
        address = Console.kafka_address_of(self.config, self.bound)
        schemas = None
        if self.config["schema.registry.listener"]:
            # late-bound: the registry starts after the console
            def schemas():
                reg = self.schema_registry
                return reg.store.state if reg is not None else None
        self.console = Console(self.broker, address, self.config["console.read.only"],
                               sasl=Console.sasl_of(self.config, self.bound), schemas=schemas)
        host, port = parse_host_port(self.config["console.listener"])
        await self.console.start(host, port)

    async def _start_schema_registry(self) -> None:
        """The registry reads and writes `_schemas` through this node's inter-broker
        listener, as a client of its own broker (so a cluster node reaches the
        topic's leader wherever it is); it listens once it has read the topic."""
        from kafkette.broker.internal_topics import ensure_internal_topic
        from kafkette.server.schema_registry import (SchemaRegistryHttp, SchemasTopic,
                                                     SchemaStore, registry_client_security)
        host, port = self.bound[self.config.inter_broker_listener_name]
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        security = registry_client_security(self.config)
        store = SchemaStore((host, port), security=security,
                            ensure_topic=SchemasTopic(self.broker, ensure_internal_topic))
        await store.start()
        http = SchemaRegistryHttp(store)
        await http.start(self.config["schema.registry.listener"])
        self.schema_registry = http

    def scram_credential(self, mechanism: str, user: str) -> tuple | None:
        """(salt, stored key, server key, iterations) of a SCRAM user, from the
        metadata image, so every broker of the cluster knows the same users."""
        image = self.broker.image if self.broker is not None else None
        creds = getattr(image, "scram_credentials", None) or {}
        c = creds.get((user, mechanism))
        return None if c is None else (c.salt, c.stored_key, c.server_key, c.iterations)

    def _register_auth_metrics(self) -> None:
        # Kafka's socket-server-metrics successful-/failed-authentication-total.
        from prometheus_client import Counter

        registry = self.dispatcher.metrics.registry
        self._auth_counters = (
            Counter("kafka_server_socketservermetrics_successful_authentication",
                    "SASL authentications that succeeded", ["listener"], registry=registry),
            Counter("kafka_server_socketservermetrics_failed_authentication",
                    "Connections closed by a failed TLS principal mapping or SASL "
                    "authentication", ["listener"], registry=registry))

    def count_authentication(self, listener: str) -> None:
        if self._auth_counters is not None:
            self._auth_counters[0].labels(listener).inc()

    def count_idle_close(self, listener: str) -> None:
        self.idle_closes[listener] = self.idle_closes.get(listener, 0) + 1

    def _schedule_error_flush(self) -> None:
        # The "suppressed" summaries of a flood that has stopped come from here.
        self.client_errors.flush()
        self._flush_timer = asyncio.get_running_loop().call_later(
            CLIENT_ERROR_INTERVAL_S / 6, self._schedule_error_flush)

    def count_failed_authentication(self, listener: str) -> None:
        if self._auth_counters is not None:
            self._auth_counters[1].labels(listener).inc()

    def request_stop(self) -> None:
        if not self._stopping:
            self._stopping = True
            asyncio.ensure_future(self.stop())

    async def stop(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self.maintenance is not None:
            self.maintenance.stop()
        if self.schema_registry is not None:  # before the listeners it reads through
            await self.schema_registry.stop()
            await self.schema_registry.store.stop()
            self.schema_registry = None
        if self.broker is not None:
            self.broker.replica_manager.stop()
        self._stopping = True
        log.info("shutting down", connections=len(self.connections))
        if self.console is not None:   # first: its pages read the logs closed below
            await self.console.stop()
        for srv in self._servers:
            srv.close()
        for task in self._acceptors:   # TLS listeners: no new connections either
            task.cancel()
        for sock in self._tls_sockets:
            sock.close()
        if self.broker is not None:
            self.broker.closing = True
            self.broker.replica_manager.closing = True
            self.broker.replica_manager.wake_all()
        # Let in-flight requests finish.
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for conn in list(self.connections):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(conn.idle.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        for conn in list(self.connections):
            conn.close()
        for task in list(self.handshakes):
            task.cancel()
        for srv in self._servers:
            try:
                await asyncio.wait_for(srv.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass
        if self.broker is not None:
            try:
                await self.broker.close_cluster()
            except Exception as e:  # noqa: BLE001 - close the logs whatever happens
                log.warning("leaving the cluster failed", error=f"{type(e).__name__}: {e}")
            self.broker.close()
        if self.metrics_http is not None:  # metrics: /healthz said 503 until now
            await self.metrics_http.stop()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def build_quotas(config: BrokerConfig) -> ConnectionQuotas:
    """The connection limits of the listeners this node serves to clients. ConfigError
    when a host of max.connections.per.ip.overrides does not resolve."""
    names = [lst.name for lst in config.listeners] if config.is_broker else []
    return ConnectionQuotas.from_config(config, names)


class LimitsCollector:
    """/metrics for the limits, read at scrape time. Kafka's names where Kafka has the
    metric (RequestQueueSize, MemoryPoolUsed/Available); the rest are kafkette extras
    in Kafka's socket-server-metrics group."""

    def __init__(self, server: "KafkaServer"):
        self.server = server

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        srv = self.server
        pool = srv.request_pool
        queue = GaugeMetricFamily("kafka_network_requestchannel_requestqueuesize",
                                  "Requests read and not yet handled (queued.max.requests)")
        queue.add_metric([], pool.requests)
        used = GaugeMetricFamily("kafka_network_socketserver_memorypoolused",
                                 "Bytes of requests read and not yet handled")
        used.add_metric([], pool.bytes)
        avail = GaugeMetricFamily("kafka_network_socketserver_memorypoolavailable",
                                  "queued.max.request.bytes minus the bytes used")
        avail.add_metric([], max(0, pool.max_bytes - pool.bytes))
        pauses = CounterMetricFamily("kafka_network_socketserver_requestpoolpauses",
                                     "Times a connection stopped reading because the "
                                     "request pool was full")
        pauses.add_metric([], pool.pauses)
        paused = GaugeMetricFamily("kafka_server_socketservermetrics_paused_connections",
                                   "Connections not read from now, by reason",
                                   labels=["reason"])
        counts = dict.fromkeys(("write_buffer", "quota_mute", "connection_queue",
                                "request_pool"), 0)
        for conn in list(srv.connections):
            reason = conn._pause_reason
            if reason is not None:
                counts[reason] = counts.get(reason, 0) + 1
        for reason, n in counts.items():
            paused.add_metric([reason], n)
        refused = CounterMetricFamily("kafka_server_socketservermetrics_connections_refused",
                                      "Connections closed right after accept, by the limit "
                                      "they were over", labels=["listener", "limit"])
        for (listener, limit), n in sorted(srv.quotas.refused.items()):
            refused.add_metric([listener, limit], n)
        idle = CounterMetricFamily("kafka_server_socketservermetrics_idle_connections_closed",
                                   "Connections closed after connections.max.idle.ms",
                                   labels=["listener"])
        for listener, n in sorted(srv.idle_closes.items()):
            idle.add_metric([listener], n)
        errors = CounterMetricFamily("kafka_server_socketservermetrics_client_errors",
                                     "Client errors that closed a connection, by kind "
                                     "(logged or suppressed)", labels=["kind"])
        for kind, n in sorted(srv.client_errors.counts.items()):
            errors.add_metric([kind], n)
        yield from (queue, used, avail, pauses, paused, refused, idle, errors)


async def serve(config: BrokerConfig, security=None, quotas=None) -> None:
    server = KafkaServer(config, security=security, quotas=quotas)
    await server.start()
    # The start-up heap (metadata image, partitions, logs: ~10^6 objects with 10,000
    # partitions) lives as long as the process; moved out of the collector's
    # generations, it is no longer traversed by every full collection, which gave a
    # Fetch of 1,000 partitions a p99 of ~110 ms instead of ~25 ms (bench scale). No
    # gc.collect() first: its pause would add to the start-up; the little start-up
    # garbage frozen with it is never freed. Here, not in KafkaServer.start: an
    # EmbeddedBroker shares its process (and heap) with the application.
    gc.freeze()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    await server.wait_stopped()
    log.info("kafkette stopped")


def run(config: BrokerConfig) -> None:
    # Only the import is guarded: an ImportError raised while serving must surface as
    # itself, not start a second server on the ports the first one still holds.
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep a fallback
        uvloop = None
    # Key stores are read before the event loop starts: a bad one is a configuration
    # error (exit code 2, as the CLI gives for bad settings), not a traceback.
    try:
        # The console's layout check first: it needs no key store to be read.
        from kafkette.console import refusal
        if refusal(config) is not None:
            raise ConfigError(refusal(config))
        security = build_security(config)
        quotas = build_quotas(config)
    except ConfigError as e:
        print(f"kafkette: configuration error: {e}", file=sys.stderr)
        sys.exit(2)
    if uvloop is not None:
        uvloop.run(serve(config, security, quotas))
    else:  # pragma: no cover
        asyncio.run(serve(config, security, quotas))
