"""The broker: wires the log store, the controller, the replica manager and the
dispatcher together for one node. The server owns the sockets; this owns the state.

`process.roles` (KRaft) decides what the node does in a cluster (config.py checks it
against controller.quorum.voters):
- broker,controller (combined, the default): a voter of the metadata quorum that also
  registers as a broker, hosts partitions and serves clients;
- broker: not a voter; it follows the metadata log as a Raft observer, and registers,
  heartbeats and sends every controller request to the active controller over the
  voters' controller listeners;
- controller: a voter that runs the Controller and serves the controller-side APIs on
  its controller listener, but never registers as a broker, so it hosts no partitions
  and Metadata never lists it. The object is still a Broker (the forwarded admin
  requests run through the same handlers), with a replica manager that hosts nothing;
  the server opens no client listener for it (kafkette/server/server.py).
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

from kafkette.broker.dispatcher import Dispatcher
from kafkette.broker.fetch_session import FetchSessionCache
from kafkette.broker.faults import FaultInjector
from kafkette.broker.quotas import QuotaManager
from kafkette.broker.metrics import BrokerMetrics
from kafkette.broker.replica_manager import ReplicaManager, log_config_from_topic_configs
from kafkette.broker import txn_state
from kafkette.clock import SystemClock
from kafkette.config import (
    BrokerConfig,
    ConfigError,
    topic_defaults,
    validate_dynamic_broker_configs,
    IGNORED_TOPIC_CONFIGS,
    validate_topic_configs,
)
from kafkette.broker.group_offsets import (
    LogOffsetStore,
    ensure_offsets_topic,
    follow_offsets_leadership,
    load_offsets,
)
from kafkette.controller.controller import Controller
from kafkette.controller.quorum import LocalQuorum, run_now
from kafkette.coordinator.group_coordinator import (
    GroupConfig,
    GroupCoordinator,
    offsets_partition_for,
)
from kafkette.coordinator.scheduler import LoopScheduler
from kafkette.coordinator.transaction_coordinator import TransactionCoordinator, TxnConfig
from kafkette.controller.metadata_image import MetadataImage
from kafkette.errors import ErrorCode, InvalidConfigError
from kafkette.log.log_manager import LogManager
from kafkette.logging import get_logger

log = get_logger("kafkette.broker")

INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})


class Broker:
    def __init__(self, config: BrokerConfig, advertised: dict[str, tuple[str, int]],
                 clock=None, controller_ssl=None, controller_principal_of=None,
                 controller_sasl=None):
        """`advertised`: listener name -> (host, port) with real ports (a listener
        configured on port 0 is advertised on the port the OS gave it).

        `config` is the static config (file, --set); `self.config` is the effective
        one, with the dynamic broker configs of the metadata log on top (KIP-226).
        `controller_ssl`: the server-side ssl.SSLContext of an SSL controller listener
        and `controller_principal_of(ssl_object)` the principal of its TLS peers
        (server/tls.py makes both); `controller_sasl` the SASL exchange of a SASL
        controller listener (see ControllerServer)."""
        self.static_config = config
        self.config = config
        self.clock = clock or SystemClock()
        self.node_id = config.node_id
        self.is_broker = config.is_broker
        self.is_controller = config.is_controller
        self.advertised = advertised
        # The first of log.dirs holds the metadata log and the broker-wide files (Kafka's
        # metadata.log.dir defaults to it); partitions spread over all of them.
        self.data_dir = Path(config.log_dirs[0])
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._topic_defaults = topic_defaults(config)
        self._ignored_configs_logged: set[str] = set()   # logged once per process
        self.log_manager = LogManager(config.log_dirs, self.clock)
        try:
            self.log_manager.load_all()
        except BaseException:
            # A refused start (a partition in two log dirs) releases the dirs' locks.
            self.log_manager.close_all(clean=False)
            raise
        host, port = next(iter(advertised.values()))
        voters = {v.node_id: (v.host, v.port) for v in config.controller_quorum_voters}
        # `cluster`: the broker side of a multi-node cluster (broker/cluster.py); None
        # for a single node without controller.quorum.voters (a quorum of one).
        self.cluster = None
        # ClientSecurity of this node's connections to the inter-broker and controller
        # listeners of the others (broker/peer_security.py); None: PLAINTEXT.
        self.inter_broker_listener = config.inter_broker_listener_name
        self.inter_broker_security = None
        self.controller_security = None
        if voters:
            from kafkette.broker import peer_security
            if self.is_broker:
                self.inter_broker_security = peer_security.inter_broker_security(config)
            self.controller_security = peer_security.controller_security(config)
            # A broker-only node (not in the voters) gets an observer quorum: BrokerConfig
            # has checked that roles and voters agree.
            from kafkette.controller.raft.quorum import RaftQuorum
            quorum = RaftQuorum(self.node_id, voters, self.data_dir, self.clock,
                                config=config, server_ssl=controller_ssl,
                                principal_of=controller_principal_of,
                                server_sasl=controller_sasl,
                                client_security=self.controller_security)
        else:
            quorum = LocalQuorum(self.node_id, self.data_dir, self.clock)
        self.replica_manager = ReplicaManager(self.node_id, self.log_manager,
                                              self.effective_topic_configs, self.clock,
                                              lag_time_max_ms=config["replica.lag.time.max.ms"])
        # KIP-227; Kafka's eviction age (min.incremental.fetch.session.eviction.ms) is a
        # constant of its broker too, not a setting.
        self.fetch_sessions = FetchSessionCache(
            self.clock, config["max.incremental.fetch.session.cache.slots"])
        self.replica_manager.rack_aware = bool(config["replica.selector.class"]) and \
            config["replica.selector.class"].endswith("RackAwareReplicaSelector")
        # LocalQuorum replays the metadata log inside the constructor; the listeners
        # see that replay only in cluster mode (added before the quorum starts), so
        # the single-node path applies the replayed image once, below.
        self.controller = Controller(quorum, self.node_id, config["cluster.id"],
                                     self.clock, (host, port), config["broker.rack"],
                                     validate_configs=self._validate_topic_configs,
                                     validate_broker_configs=self._validate_broker_configs,
                                     session_timeout_ms=config["broker.session.timeout.ms"],
                                     config=lambda: self.config)
        if voters:
            from kafkette.broker.cluster import ClusterMember
            self.cluster = ClusterMember(self, quorum, voters)
        else:
            self._apply_dynamic_configs(self.controller.image)
            self.replica_manager.on_metadata_update(
                MetadataImage(cluster_id="", controller_id=self.node_id),
                self.controller.image)
            self.replica_manager.remove_stray_logs(self.controller.image)
        # Before the replica manager's: it builds LogConfigs from the topic defaults.
        self.controller.add_listener(self._on_metadata_update)
        self.controller.add_listener(self.replica_manager.on_metadata_update)
        # After the replica manager's: it decides who leads each offsets partition.
        self.controller.add_listener(self._on_offsets_leadership)
        self._offsets_loaded: set[int] = set()
        # After the replica manager's, as for the groups: the transaction coordinator
        # follows the leadership of `__transaction_state`.
        self.controller.add_listener(self._on_txn_leadership)
        self._txn_loaded: dict[int, int] = {}
        self._txn_coordinator = None
        self._txn_markers = None
        self.txn_channels = txn_state.BrokerChannels(self)
        self._producer_ids = iter(())
        self._producer_id_lock = asyncio.Lock()
        self.closing = False
        self._group_coordinator = None
        # Each broker owns its metrics registry (several brokers may share a process).
        self.metrics = BrokerMetrics(self)
        self.faults = FaultInjector(self.clock, self.node_id)  # faults: broker/faults.py
        # Client quota rates (KIP-13), read by the dispatcher once a quota is set.
        self.quotas = QuotaManager(config["quota.window.num"],
                                   config["quota.window.size.seconds"])
        self.dispatcher = Dispatcher(self)
        if self.cluster is None:
            log.info("broker started", node_id=self.node_id, cluster_id=self.image.cluster_id,
                     data_dir=str(self.data_dir), topics=len(self.image.topics),
                     pid=os.getpid())
        else:  # the image is replayed when the quorum starts ("metadata replayed")
            log.info("broker started", node_id=self.node_id, data_dir=str(self.data_dir),
                     voters=sorted(voters), process_roles=",".join(config.process_roles),
                     pid=os.getpid())

    @property
    def image(self) -> MetadataImage:
        return self.controller.image

    # -- configs ---------------------------------------------------------------
    def _validate_topic_configs(self, configs: dict) -> dict:
        try:
            valid = validate_topic_configs(configs, self.config)
        except ConfigError as e:
            raise InvalidConfigError(str(e)) from None
        for name in sorted(IGNORED_TOPIC_CONFIGS & {k for k, v in valid.items() if v is not None}):
            if name not in self._ignored_configs_logged:
                self._ignored_configs_logged.add(name)
                log.warning("topic config accepted and not acted on (Kafka 3.9 ignores it too)",
                            config=name, value=valid[name])
        return valid

    def effective_topic_configs(self, name: str, image: MetadataImage | None = None) -> dict:
        """A topic's configs as strings: its overrides > dynamic broker configs (this
        node's, then the cluster-wide default) > static broker config > Kafka's default
        (the last three are folded into the topic defaults)."""
        t = (image or self.image).topics.get(name)
        cfg = dict(self._topic_defaults)
        if t is not None:
            cfg.update(t.configs)
        return cfg

    # -- dynamic broker configs (KIP-226) ------------------------------------------
    def _dynamic_layers(self, image: MetadataImage) -> tuple[dict, dict]:
        """(cluster-wide default, this node's) dynamic broker configs, as stored."""
        stored = image.broker_configs
        return dict(stored.get("", {})), dict(stored.get(str(self.node_id), {}))

    def _validate_broker_configs(self, resource_name: str, changes: dict) -> dict:
        default, mine = self._dynamic_layers(self.image)
        try:
            return validate_dynamic_broker_configs(self.static_config, changes, default, mine,
                                                   per_broker_resource=resource_name != "")
        except ConfigError as e:
            raise InvalidConfigError(str(e)) from None

    def _apply_dynamic_configs(self, image: MetadataImage) -> bool:
        """Recompute the effective config and the topic defaults from the stored
        dynamic configs; True when the topic defaults changed."""
        default, mine = self._dynamic_layers(image)
        self.config = self.static_config.with_dynamic(default, mine)
        for warning in self.config.warnings:
            if warning.startswith("dynamic config "):
                log.warning("dynamic broker config ignored", detail=warning)
        new_defaults = topic_defaults(self.config)
        changed = new_defaults != self._topic_defaults
        self._topic_defaults = new_defaults
        return changed

    def _reapply_log_configs(self, image: MetadataImage) -> None:
        configs: dict = {}
        for (topic, _index), part in list(self.replica_manager.partitions.items()):
            if topic not in configs:
                configs[topic] = log_config_from_topic_configs(
                    self.effective_topic_configs(topic, image))
            part.log.config = configs[topic]

    async def start_cluster(self) -> None:
        """Cluster mode: join the quorum (replaying the local metadata log), then
        register and heartbeat with the active controller."""
        if self.cluster is not None:
            await self.cluster.start()

    async def close_cluster(self) -> None:
        if self._txn_markers is not None:
            self._txn_markers.close()
        await self.txn_channels.close()
        if self.cluster is not None:
            await self.cluster.close()

    def _on_metadata_update(self, old: MetadataImage, new: MetadataImage) -> None:
        for name, t in old.topics.items():
            nt = new.topics.get(name)
            if nt is None or nt.topic_id != t.topic_id:   # deleted (or deleted and recreated)
                self.metrics.forget_topic(name)
        if old.broker_configs == new.broker_configs:
            return
        if self._apply_dynamic_configs(new):
            # Kafka's DynamicLogConfig.reconfigure: every live log gets a LogConfig
            # built from the new broker defaults under its own topic overrides.
            # (The replica manager re-applies LogConfigs only for topics whose own
            # configs changed.)
            self._reapply_log_configs(new)
        log.info("dynamic broker configs applied",
                 cluster_default=dict(new.broker_configs.get("", {})),
                 node=dict(new.broker_configs.get(str(self.node_id), {})))

    # -- groups ----------------------------------------------------------------
    def group_coordinator_node(self, group_id: str) -> int | None:
        """The node that coordinates `group_id`: the leader of its partition of
        `__consumer_offsets` (None: no such topic yet, or the partition is offline)."""
        t = self.image.topics.get("__consumer_offsets")
        if t is None:
            return None
        p = t.partitions.get(offsets_partition_for(group_id, len(t.partitions)))
        if p is None or p.leader < 0:
            return None
        return p.leader

    def group_coordinator_ready(self):
        """The group coordinator, created on first use: `__consumer_offsets` is
        created (as Kafka does on the first FindCoordinator for a group) and its
        records are replayed, so committed offsets survive a restart."""
        if self._group_coordinator is None:
            if not ensure_offsets_topic(self):
                return None  # cluster: being created by the controller
            coordinator = GroupCoordinator(LoopScheduler(clock=self.clock),
                                           GroupConfig.from_config(self.config),
                                           store=LogOffsetStore(self))
            count = load_offsets(self, coordinator, self._offsets_loaded)
            self._group_coordinator = coordinator
            log.info("group coordinator ready", records_loaded=count)
        return self._group_coordinator

    def _on_offsets_leadership(self, old: MetadataImage, new: MetadataImage) -> None:
        if self._group_coordinator is None:
            return
        t_old, t_new = old.topics.get("__consumer_offsets"), new.topics.get("__consumer_offsets")
        if t_new is not None and t_old is not None and t_old.partitions == t_new.partitions:
            return
        follow_offsets_leadership(self, self._group_coordinator, self._offsets_loaded)

    # -- transactions ----------------------------------------------------------
    def txn_coordinator_ready(self):
        """The transaction coordinator, created on first use: `__transaction_state` is
        created (Kafka creates it on the first FindCoordinator for a transactional id)
        and the partitions this node leads are loaded. None while the topic is being
        created in a cluster (the client is told COORDINATOR_NOT_AVAILABLE)."""
        if self._txn_coordinator is None:
            if not txn_state.ensure_txn_topic(self):
                return None
            if self._txn_coordinator is not None:
                # Creating the topic ran the metadata listeners, and the leadership
                # listener made the coordinator already.
                return self._txn_coordinator
            self._txn_markers = txn_state.TxnMarkerChannel(self, self.txn_channels)
            n = self.config["offsets.topic.num.partitions"]
            coordinator = TransactionCoordinator(
                LoopScheduler(clock=self.clock), txn_state.LogTxnStateStore(self),
                self._txn_markers, _ProducerIds(self), TxnConfig.from_config(self.config),
                offsets_partition_for=lambda g: offsets_partition_for(g, n))
            self._txn_coordinator = coordinator
            txn_state.follow_txn_leadership(self, coordinator, self._txn_loaded)
            log.info("transaction coordinator ready", partitions_loaded=len(self._txn_loaded))
        return self._txn_coordinator

    def txn_coordinator_node(self, transactional_id: str) -> int | None:
        return txn_state.txn_coordinator_node(self, transactional_id)

    def _on_txn_leadership(self, old: MetadataImage, new: MetadataImage) -> None:
        if self._txn_coordinator is None:
            # A node that never served a transactional client may become the leader
            # of a `__transaction_state` partition (a failover): it must load it, so
            # that transactions left in Prepare* get their markers.
            t = new.topics.get("__transaction_state")
            if t is not None and self.is_broker and _loop_running() and any(
                    s.leader == self.node_id for s in t.partitions.values()):
                self.txn_coordinator_ready()
            return
        t_old, t_new = old.topics.get("__transaction_state"), new.topics.get("__transaction_state")
        if t_new is not None and t_old is not None and t_old.partitions == t_new.partitions:
            return
        txn_state.follow_txn_leadership(self, self._txn_coordinator, self._txn_loaded)

    def verify_txn_offset_commit(self, transactional_id: str, producer_id: int,
                                 producer_epoch: int, group_id: str):
        """KIP-890's check of a TxnOffsetCommit (on unless
        transaction.partition.verification.enable=false): None, an error code, or an
        awaitable of one."""
        if not self.config["transaction.partition.verification.enable"]:
            return None
        return txn_state.verify_txn_offset_commit(self, transactional_id, producer_id,
                                                  producer_epoch, group_id)

    async def write_txn_markers(self, producer_id: int, producer_epoch: int,
                                coordinator_epoch: int, commit: bool, partitions
                                ) -> dict[tuple[str, int], int]:
        """Write one transaction's markers to the partitions this node leads; then the
        group coordinator applies (commit) or drops (abort) the transaction's offsets
        in the `__consumer_offsets` partitions that took the marker, as Kafka's
        WriteTxnMarkers handler calls onTransactionCompleted."""
        codes = await self.replica_manager.write_txn_markers(
            producer_id, producer_epoch, coordinator_epoch, commit, partitions)
        offsets_done = [p for (t, p), code in codes.items()
                        if t == "__consumer_offsets" and code == ErrorCode.NONE]
        if offsets_done and self._group_coordinator is not None:
            for p in offsets_done:
                self._group_coordinator.complete_txn_offsets(producer_id, p, commit)
        return codes

    # -- producer ids ----------------------------------------------------------
    def next_producer_id(self):
        """A producer id; an int, or (cluster mode, when the block is used up) an
        awaitable: the block comes from the active controller (AllocateProducerIds)."""
        for pid in self._producer_ids:
            return pid
        if self.cluster is None:
            self._producer_ids = iter(run_now(self.controller.allocate_producer_ids()))
            return next(self._producer_ids)
        return self._next_producer_id_async()

    async def _next_producer_id_async(self) -> int:
        async with self._producer_id_lock:
            for pid in self._producer_ids:
                return pid
            self._producer_ids = iter(await self.cluster.allocate_producer_ids())
            return next(self._producer_ids)

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        if self._group_coordinator is not None:
            self._group_coordinator.close()
        if self._txn_coordinator is not None:
            self._txn_coordinator.close()
            self._txn_markers.close()
        self.replica_manager.close()
        self.log_manager.flush_all()
        self.log_manager.close_all()
        if self.cluster is not None and self.cluster.broker_epoch >= 0:
            # Only now, with every log flushed and closed, is the shutdown clean (KIP-966).
            from kafkette.broker.cluster import write_clean_shutdown_epoch
            write_clean_shutdown_epoch(self.data_dir, self.cluster.broker_epoch)
        self.controller.close()
        log.info("broker stopped", node_id=self.node_id)


class _ProducerIds:
    """ProducerIdSource for the transaction coordinator: the broker's blocks of
    producer ids (the active controller's, in a cluster)."""

    def __init__(self, broker: Broker):
        self.broker = broker
        self._tasks: set[asyncio.Task] = set()

    def next_producer_id(self, callback) -> None:
        pid = self.broker.next_producer_id()
        loop = asyncio.get_running_loop()
        if isinstance(pid, int):
            loop.call_soon(callback, ErrorCode.NONE, pid)
            return

        async def wait():
            try:
                callback(ErrorCode.NONE, await pid)
            except Exception:  # noqa: BLE001 - the controller is unreachable: clients retry
                callback(ErrorCode.COORDINATOR_NOT_AVAILABLE, -1)
        task = asyncio.ensure_future(wait())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
