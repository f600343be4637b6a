"""A tiny synchronous Kafka admin client for the topics/groups commands.

It runs kafkette's own client (kafkette.client.KafkaClient) through `run_sync`, and
speaks the generated wire messages (kafkette.protocol.messages). Each connection
starts with ApiVersions and then uses, per API, min(broker max, our max) - like
Kafka's NetworkClient/NodeApiVersions (`latestUsableVersion`) - so it works against
any Kafka-compatible broker, not only kafkette. Group calls go to the coordinator
found with FindCoordinator; ListOffsets goes to each partition's leader, found with
Metadata (as Kafka's AdminClient does).
"""
from __future__ import annotations

from kafkette.client import KafkaClient, parse_bootstrap, run_sync
from kafkette.errors import ErrorCode, KafkaError, ProtocolError
from kafkette.protocol import messages
from kafkette.protocol.messages import (
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest,
    OffsetFetchRequest,
)

CLIENT_ID = "kafkette-tools"

# api key -> the lowest version this client can build
_MIN_VERSIONS = {
    0: 3,    # Produce: RecordBatch v2 only
    1: 4,    # Fetch: RecordBatch v2 only
    MetadataRequest.API_KEY: 1,
    CreateTopicsRequest.API_KEY: 0,
    DeleteTopicsRequest.API_KEY: 0,
    DescribeConfigsRequest.API_KEY: 0,
    ListGroupsRequest.API_KEY: 0,
    DescribeGroupsRequest.API_KEY: 0,
    FindCoordinatorRequest.API_KEY: 1,
    OffsetFetchRequest.API_KEY: 2,
    ListOffsetsRequest.API_KEY: 1,
}

# api key -> the highest version this client builds: the newer ones name topics by id
# only, which these tools do not track (Fetch v13+, Produce v13+).
_MAX_VERSIONS = {1: 12, 0: 12}


class ToolError(Exception):
    """An error to print and exit non-zero with."""


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"


#: Kafka's exception messages for the codes these tools meet (org.apache.kafka.common.
#: protocol.Errors), used when the broker sends no error message of its own.
KAFKA_MESSAGES = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: "This server does not host this topic-partition.",
    ErrorCode.TOPIC_ALREADY_EXISTS: "Topic with this name already exists.",
    ErrorCode.INVALID_PARTITIONS: "Number of partitions is below 1.",
    ErrorCode.INVALID_REPLICATION_FACTOR: "Replication factor is below 1 or larger than "
                                          "the number of available brokers.",
    ErrorCode.INVALID_REPLICA_ASSIGNMENT: "Replica assignment is invalid.",
    ErrorCode.INVALID_CONFIG: "Configuration is invalid.",
    ErrorCode.GROUP_ID_NOT_FOUND: "The group id does not exist.",
    ErrorCode.NON_EMPTY_GROUP: "The group is not empty.",
    ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC: "The consumer group is actively subscribed to the "
                                         "topic",
    ErrorCode.OFFSET_OUT_OF_RANGE: "The requested offset is not within the range of "
                                   "offsets maintained by the server.",
    ErrorCode.ELECTION_NOT_NEEDED: "Leader election not needed for topic partition.",
    ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE: "The preferred leader was not available.",
    ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE: "Eligible topic partition leaders are not "
                                              "available.",
    ErrorCode.NOT_LEADER_OR_FOLLOWER: "For requests intended only for the leader, this "
                                      "error indicates that the broker is not the current "
                                      "leader.",
    ErrorCode.POLICY_VIOLATION: "Request parameters do not satisfy the configured policy.",
    ErrorCode.INVALID_REQUEST: "This most likely occurs because of a request being "
                               "malformed by the client library or the message was sent "
                               "to an incompatible broker.",
    ErrorCode.UNSUPPORTED_VERSION: "The version of API is not supported.",
    ErrorCode.UNKNOWN_SERVER_ERROR: "The server experienced an unexpected error when "
                                    "processing the request.",
    ErrorCode.BROKER_NOT_AVAILABLE: "The broker is not available.",
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS: "The coordinator is loading and hence can't "
                                            "process requests.",
    ErrorCode.COORDINATOR_NOT_AVAILABLE: "The coordinator is not available.",
    ErrorCode.NOT_COORDINATOR: "This is not the correct coordinator.",
    ErrorCode.INVALID_TOPIC_EXCEPTION: "The request attempted to perform an operation on an "
                                       "invalid topic.",
    ErrorCode.TOPIC_AUTHORIZATION_FAILED: "Topic authorization failed.",
    ErrorCode.CLUSTER_AUTHORIZATION_FAILED: "Cluster authorization failed.",
    ErrorCode.INVALID_PRODUCER_EPOCH: "Producer attempted to produce with an old epoch.",
    ErrorCode.INVALID_TXN_STATE: "The producer attempted a transactional operation in an "
                                 "invalid state.",
    ErrorCode.TRANSACTION_COORDINATOR_FENCED: "Indicates that the transaction coordinator "
                                              "sending a WriteTxnMarker is no longer the "
                                              "current coordinator for a given producer.",
    ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "Transactional Id authorization failed.",
    ErrorCode.TRANSACTIONAL_ID_NOT_FOUND: "The transactionalId could not be found.",
}


#: The Java exception class Kafka's tools name for a code ("...: GroupNotEmptyException:
#: The group is not empty.").
_EXCEPTION_CLASSES = {
    ErrorCode.NON_EMPTY_GROUP: "GroupNotEmptyException",
    ErrorCode.GROUP_ID_NOT_FOUND: "GroupIdNotFoundException",
    ErrorCode.INVALID_GROUP_ID: "InvalidGroupIdException",
    ErrorCode.COORDINATOR_NOT_AVAILABLE: "CoordinatorNotAvailableException",
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: "UnknownTopicOrPartitionException",
    ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC: "GroupSubscribedToTopicException",
    ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE: "PreferredLeaderNotAvailableException",
    ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE: "EligibleLeadersNotAvailableException",
    ErrorCode.INVALID_TOPIC_EXCEPTION: "InvalidTopicException",
    ErrorCode.CLUSTER_AUTHORIZATION_FAILED: "ClusterAuthorizationException",
    ErrorCode.OFFSET_OUT_OF_RANGE: "OffsetOutOfRangeException",
    ErrorCode.NOT_LEADER_OR_FOLLOWER: "NotLeaderOrFollowerException",
    ErrorCode.LEADER_NOT_AVAILABLE: "LeaderNotAvailableException",
    ErrorCode.POLICY_VIOLATION: "PolicyViolationException",
}


def kafka_exception(code: int, message: str | None = None) -> str:
    """`org.apache.kafka.common.errors.X: message`, as a Java tool prints an exception."""
    cls = _EXCEPTION_CLASSES.get(code)
    name = f"org.apache.kafka.common.errors.{cls}" if cls else "org.apache.kafka.common.KafkaException"
    return f"{name}: {kafka_message(code, message)}"


def kafka_message(code: int, message: str | None = None) -> str:
    if message:
        return message
    try:
        return KAFKA_MESSAGES.get(ErrorCode(code)) or ErrorCode(code).name
    except ValueError:
        return f"error {code}"


class BrokerError(ToolError):
    """A ToolError that carries the Kafka error code."""

    def __init__(self, code: int, message: str | None = None):
        super().__init__(kafka_message(code, message))
        self.code = code


class AdminClient:
    """The calls kafkette's topics/groups commands need. A node is a broker id or a
    (host, port) address; None is the bootstrap connection (the first server of the
    list that answers)."""

    def __init__(self, bootstrap: str, timeout: float = 10.0, client_id: str | None = None,
                 security=None):
        """`security`: a kafkette.client_security.ClientSecurity for TLS / SASL."""
        self.timeout = timeout
        try:
            servers = parse_bootstrap(bootstrap)
        except ValueError:
            raise ToolError(f"bad --bootstrap-server {bootstrap!r}: expected HOST:PORT") from None
        self._client = KafkaClient(servers, client_id=client_id or CLIENT_ID, connect_timeout=timeout,
                                   request_timeout=timeout, security=security)
        self._run(self._client.bootstrap_channel())

    def close(self) -> None:
        self._run(self._client.close())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _run(coro):
        try:
            return run_sync(coro)
        except (KafkaError, ProtocolError) as e:   # NetworkError, UnsupportedVersionError, ...
            raise ToolError(str(e)) from None

    def version(self, api_key: int, node=None) -> int:
        return self._run(self._client.version_for(api_key, node,
                                                  min_version=_MIN_VERSIONS.get(api_key, 0),
                                                  max_version=_MAX_VERSIONS.get(api_key)))

    def request(self, req, version: int | None = None, node=None, timeout: float | None = None):
        """`timeout` (s): for requests the broker may hold longer than the client's
        request timeout (JoinGroup waits for the rebalance)."""
        if version is None:
            version = self.version(req.API_KEY, node)
        return self._run(self._client.send(req, version, node=node, timeout=timeout))

    # ------------------------------------------------------------------ topics

    def metadata(self, topics: list[str] | None = None):
        """topics None = all topics; [] = brokers only."""
        return self._run(self._client.metadata(topics))

    def create_topic(self, name: str, partitions: int, replication_factor: int,
                     configs: dict[str, str]) -> None:
        T = CreateTopicsRequest.CreatableTopic
        req = CreateTopicsRequest(
            topics=[T(name=name, num_partitions=partitions,
                      replication_factor=replication_factor, assignments=[],
                      configs=[T.CreatableTopicConfig(name=k, value=v)
                               for k, v in configs.items()])],
            timeout_ms=int(self.timeout * 1000), validate_only=False)
        resp = self.request(req)
        for t in resp.topics:
            if t.error_code != 0:
                raise ToolError(f"cannot create topic {name!r}: {error_name(t.error_code)}"
                                + (f": {t.error_message}" if t.error_message else ""))

    def delete_topic(self, name: str) -> None:
        v = self.version(DeleteTopicsRequest.API_KEY)
        if v >= 6:
            req = DeleteTopicsRequest(topics=[DeleteTopicsRequest.DeleteTopicState(name=name)])
        else:
            req = DeleteTopicsRequest(topic_names=[name])
        req.timeout_ms = int(self.timeout * 1000)
        resp = self.request(req, v)
        for t in resp.responses:
            if t.error_code != 0:
                raise ToolError(f"cannot delete topic {name!r}: {error_name(t.error_code)}"
                                + (f": {t.error_message}" if t.error_message else ""))

    def topic_config_overrides(self, names: list[str]) -> dict[str, dict[str, str]]:
        """Per topic, the configs set on the topic itself (kafka-topics.sh --describe
        shows only these: source DYNAMIC_TOPIC_CONFIG, or not is_default in v0)."""
        if not names:
            return {}
        R = DescribeConfigsRequest.DescribeConfigsResource
        req = DescribeConfigsRequest(
            resources=[R(resource_type=2, resource_name=n, configuration_keys=None)
                       for n in names],
            include_synonyms=False, include_documentation=False)
        v = self.version(DescribeConfigsRequest.API_KEY)
        resp = self.request(req, v)
        out = {}
        for res in resp.results:
            if res.error_code != 0:
                raise ToolError(f"cannot describe configs of {res.resource_name!r}: "
                                f"{error_name(res.error_code)}")
            out[res.resource_name] = {
                c.name: c.value for c in res.configs
                if (c.config_source == 1 if v >= 1 else not c.is_default)}
        return out

    # ------------------------------------------------------------------ groups

    def list_groups(self) -> list:
        """Every group on every broker (ListGroups is per broker, as in Kafka's
        AdminClient.listConsumerGroups)."""
        self.metadata([])
        groups = {}
        for node_id in sorted(self._client.brokers):
            resp = self.request(ListGroupsRequest(states_filter=[], types_filter=[]), node=node_id)
            if resp.error_code != 0:
                raise ToolError(f"ListGroups failed on broker {node_id}: "
                                f"{error_name(resp.error_code)}")
            for g in resp.groups:
                groups[g.group_id] = g
        return [groups[k] for k in sorted(groups)]

    def find_coordinator(self, key: str, key_type: int = 0) -> tuple[int, int, str, int, str | None]:
        """FindCoordinator for a group (key_type 0) or a transactional id (1):
        (error code, node id, host, port, error message), errors not raised."""
        v = self.version(FindCoordinatorRequest.API_KEY)   # v1+: key_type (see _MIN_VERSIONS)
        if v >= 4:
            resp = self.request(FindCoordinatorRequest(key_type=key_type, coordinator_keys=[key]), v)
            if not resp.coordinators:
                raise ToolError(f"no coordinator for {key!r}")
            co = resp.coordinators[0]
            return co.error_code, co.node_id, co.host, co.port, co.error_message
        resp = self.request(FindCoordinatorRequest(key=key, key_type=key_type), v)
        return resp.error_code, resp.node_id, resp.host, resp.port, resp.error_message

    def coordinator(self, group: str) -> tuple[str, int]:
        """The address of the group's coordinator."""
        err, _node, host, port, msg = self.find_coordinator(group, 0)
        if err != 0:
            raise ToolError(f"cannot find the coordinator of group {group!r}: "
                            f"{error_name(err)}" + (f": {msg}" if msg else ""))
        return host, port

    def describe_group(self, group: str):
        resp = self.request(DescribeGroupsRequest(groups=[group], include_authorized_operations=False),
                            node=self.coordinator(group))
        g = resp.groups[0]
        if g.error_code != 0:
            raise ToolError(f"cannot describe group {group!r}: {error_name(g.error_code)}")
        return g

    def committed_offsets(self, group: str) -> dict[tuple[str, int], int]:
        coordinator = self.coordinator(group)
        v = self.version(OffsetFetchRequest.API_KEY, coordinator)
        if v >= 8:
            req = OffsetFetchRequest(groups=[OffsetFetchRequest.OffsetFetchRequestGroup(
                group_id=group, topics=None)], require_stable=False)
        else:
            req = OffsetFetchRequest(group_id=group, topics=None, require_stable=False)
        resp = self.request(req, v, coordinator)
        if v >= 8:
            g = resp.groups[0]
            err, topics = g.error_code, g.topics
        else:
            err, topics = (resp.error_code if v >= 2 else 0), resp.topics
        if err != 0:
            raise ToolError(f"cannot fetch offsets of group {group!r}: {error_name(err)}")
        out = {}
        for t in topics:
            for p in t.partitions:
                if p.error_code == 0 and p.committed_offset >= 0:
                    out[(t.name, p.partition_index)] = p.committed_offset
        return out

    def log_end_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Latest offsets (ListOffsets timestamp -1), each asked of the partition's leader."""
        if not partitions:
            return {}
        md = self.metadata(sorted({t for t, _ in partitions}))
        leaders = {}
        for t in md.topics:
            for p in t.partitions:
                leaders[(t.name, p.partition_index)] = p.leader_id
        by_leader: dict[int, dict[str, list[int]]] = {}
        for tp in partitions:
            leader = leaders.get(tp, -1)
            if leader < 0:
                continue
            by_leader.setdefault(leader, {}).setdefault(tp[0], []).append(tp[1])
        out = {}
        T = ListOffsetsRequest.ListOffsetsTopic
        for leader, topics in by_leader.items():
            req = ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[
                T(name=name, partitions=[T.ListOffsetsPartition(
                    partition_index=i, current_leader_epoch=-1, timestamp=-1)
                    for i in parts]) for name, parts in topics.items()])
            resp = self.request(req, node=leader)
            for t in resp.topics:
                for p in t.partitions:
                    if p.error_code == 0:
                        out[(t.name, p.partition_index)] = p.offset
        return out


    # ------------------------------------------------------------------ Kafka's tools
    # The calls behind kafkette.tools.kafka_*: errors raise BrokerError with the broker's
    # message, or Kafka's exception text for the code (what Kafka's tools print).

    def create_topic_full(self, name, partitions, replication_factor, configs,
                           assignment=None):
        T = messages.CreateTopicsRequest.CreatableTopic
        assignments = [T.CreatableReplicaAssignment(partition_index=i, broker_ids=list(b))
                       for i, b in enumerate(assignment or [])]
        req = messages.CreateTopicsRequest(
            topics=[T(name=name, num_partitions=-1 if assignment else partitions,
                      replication_factor=-1 if assignment else replication_factor,
                      assignments=assignments,
                      configs=[T.CreatableTopicConfig(name=k, value=v) for k, v in configs.items()])],
            timeout_ms=int(self.timeout * 1000), validate_only=False)
        resp = self.request(req)
        for t in resp.topics:
            if t.error_code != 0:
                raise BrokerError(t.error_code, t.error_message)


    def delete_topics(self, names):
        v = self.version(messages.DeleteTopicsRequest.API_KEY)
        if v >= 6:
            req = messages.DeleteTopicsRequest(topics=[messages.DeleteTopicsRequest.DeleteTopicState(name=n)
                                                for n in names])
        else:
            req = messages.DeleteTopicsRequest(topic_names=list(names))
        req.timeout_ms = int(self.timeout * 1000)
        resp = self.request(req, v)
        for t in resp.responses:
            if t.error_code != 0:
                raise BrokerError(t.error_code, getattr(t, "error_message", None))


    def create_partitions(self, counts: dict[str, int], assignments: dict[str, list] | None = None):
        T = messages.CreatePartitionsRequest.CreatePartitionsTopic
        assignments = assignments or {}
        req = messages.CreatePartitionsRequest(
            topics=[T(name=n, count=c,
                      assignments=[T.CreatePartitionsAssignment(broker_ids=list(b))
                                   for b in assignments[n]] if assignments.get(n) else None)
                    for n, c in counts.items()],
            timeout_ms=int(self.timeout * 1000), validate_only=False)
        resp = self.request(req)
        for r in resp.results:
            if r.error_code != 0:
                raise BrokerError(r.error_code, r.error_message)


    def describe_configs(self, resource_type: int, names: list[str], synonyms: bool = False,
                          node=None):
        """name -> list of config entries (DescribeConfigs v1+: config_source set)."""
        R = messages.DescribeConfigsRequest.DescribeConfigsResource
        req = messages.DescribeConfigsRequest(
            resources=[R(resource_type=resource_type, resource_name=n, configuration_keys=None)
                       for n in names],
            include_synonyms=synonyms, include_documentation=False)
        resp = self.request(req, node=node)
        out = {}
        for res in resp.results:
            if res.error_code != 0:
                raise BrokerError(res.error_code, res.error_message)
            out[res.resource_name] = list(res.configs)
        return out


    def incremental_alter_configs(self, resource_type: int, name: str,
                                   ops: list[tuple[str, int, str | None]], node=None):
        """ops: (name, operation 0 SET / 1 DELETE / 2 APPEND / 3 SUBTRACT, value)."""
        R = messages.IncrementalAlterConfigsRequest.AlterConfigsResource
        req = messages.IncrementalAlterConfigsRequest(resources=[R(
            resource_type=resource_type, resource_name=name,
            configs=[R.AlterableConfig(name=k, config_operation=op, value=v) for k, op, v in ops])],
            validate_only=False)
        resp = self.request(req, node=node)
        for r in resp.responses:
            if r.error_code != 0:
                raise BrokerError(r.error_code, r.error_message)


    def describe_topic_partitions(self, names: list[str]):
        """DescribeTopicPartitions (KIP-966) answers, paged by cursor; None when the broker
        does not serve it (the caller falls back to Metadata, without ELR)."""
        try:
            v = self.version(messages.DescribeTopicPartitionsRequest.API_KEY)
        except ToolError:
            return None
        topics: dict[str, object] = {}
        cursor = None
        while True:
            req = messages.DescribeTopicPartitionsRequest(
                topics=[messages.DescribeTopicPartitionsRequest.TopicRequest(name=n) for n in names],
                response_partition_limit=2000, cursor=cursor)
            resp = self.request(req, v)
            for t in resp.topics:
                if t.name in topics:
                    topics[t.name].partitions.extend(t.partitions)
                else:
                    topics[t.name] = t
            nc = resp.next_cursor
            if nc is None:
                return list(topics.values())
            cursor = messages.DescribeTopicPartitionsRequest.Cursor(topic_name=nc.topic_name,
                                                             partition_index=nc.partition_index)


    def leaders(self, topics: list[str]) -> dict[tuple[str, int], int]:
        md = self.metadata(sorted(set(topics)))
        out = {}
        for t in md.topics:
            if t.error_code != 0:
                raise BrokerError(t.error_code, None if t.error_code != 3 else
                                  f"Topic {t.name} not found.")
            for p in t.partitions:
                out[(t.name, p.partition_index)] = p.leader_id
        return out


    def list_offsets(self, partitions: dict[tuple[str, int], int], isolation_level: int = 0,
                      leaders=None) -> dict[tuple[str, int], tuple[int, int]]:
        """(topic, partition) -> timestamp spec (-1 latest, -2 earliest, -3 max timestamp,
        or a timestamp) gives (error code, offset), each asked of the partition's leader."""
        if not partitions:
            return {}
        if leaders is None:
            leaders = self.leaders([t for t, _ in partitions])
        by_leader: dict[int, dict[str, list]] = {}
        out = {}
        for tp, ts in partitions.items():
            leader = leaders.get(tp, -1)
            if leader < 0:
                out[tp] = (ErrorCode.LEADER_NOT_AVAILABLE, -1)
                continue
            by_leader.setdefault(leader, {}).setdefault(tp[0], []).append((tp[1], ts))
        T = messages.ListOffsetsRequest.ListOffsetsTopic
        for leader, topics in by_leader.items():
            # -3 (max timestamp) needs ListOffsets v7 (KIP-734)
            min_v = 7 if any(ts == -3 for parts in topics.values() for _, ts in parts) else 1
            v = self._run(self._client.version_for(messages.ListOffsetsRequest.API_KEY, leader,
                                                   min_version=min_v))
            req = messages.ListOffsetsRequest(replica_id=-1, isolation_level=isolation_level, topics=[
                T(name=name, partitions=[T.ListOffsetsPartition(
                    partition_index=i, current_leader_epoch=-1, timestamp=ts) for i, ts in parts])
                for name, parts in topics.items()])
            resp = self.request(req, v, node=leader)
            for t in resp.topics:
                for p in t.partitions:
                    out[(t.name, p.partition_index)] = (p.error_code, p.offset)
        return out


    def _group_request(self, group: str, req):
        return self.request(req, node=self.coordinator(group))


    def delete_groups(self, groups: list[str]) -> dict[str, int]:
        """group -> error code; each asked of its own coordinator."""
        out = {}
        for g in groups:
            try:
                resp = self._group_request(g, messages.DeleteGroupsRequest(groups_names=[g]))
            except BrokerError as e:
                out[g] = e.code
                continue
            for r in resp.results:
                out[r.group_id] = r.error_code
        return out


    def offset_delete(self, group: str, tps: list[tuple[str, int]]):
        """(group error code, {(topic, partition): error code})."""
        T = messages.OffsetDeleteRequest.OffsetDeleteRequestTopic
        topics: dict[str, list[int]] = {}
        for t, p in tps:
            topics.setdefault(t, []).append(p)
        resp = self._group_request(group, messages.OffsetDeleteRequest(group_id=group, topics=[
            T(name=t, partitions=[T.OffsetDeleteRequestPartition(partition_index=p) for p in ps])
            for t, ps in topics.items()]))
        return resp.error_code, {(t.name, p.partition_index): p.error_code
                                 for t in resp.topics for p in t.partitions}


    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int],
                       generation: int = -1, member_id: str = ""):
        """OffsetCommit; by default as a standalone (non-member) client: generation -1,
        no member id, which a coordinator accepts for a group with no active members
        (Kafka's admin alterConsumerGroupOffsets does the same)."""
        T = messages.OffsetCommitRequest.OffsetCommitRequestTopic
        topics: dict[str, list] = {}
        for (t, p), off in sorted(offsets.items()):
            topics.setdefault(t, []).append(T.OffsetCommitRequestPartition(
                partition_index=p, committed_offset=off, committed_leader_epoch=-1,
                commit_timestamp=-1, committed_metadata=""))
        coordinator = self.coordinator(group)
        v = self._run(self._client.version_for(messages.OffsetCommitRequest.API_KEY, coordinator,
                                               min_version=2, max_version=9))
        resp = self.request(messages.OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=generation, member_id=member_id,
            group_instance_id=None, retention_time_ms=-1,
            topics=[T(name=t, partitions=ps) for t, ps in topics.items()]), v, coordinator)
        errors = {(t.name, p.partition_index): p.error_code
                  for t in resp.topics for p in t.partitions if p.error_code != 0}
        if errors:
            code = next(iter(errors.values()))
            raise BrokerError(code)


    def delete_records(self, offsets: dict[tuple[str, int], int]):
        """(topic, partition) -> (error code, low watermark), asked of each leader."""
        leaders = self.leaders([t for t, _ in offsets])
        by_leader: dict[int, dict[str, list]] = {}
        out = {}
        for tp, off in offsets.items():
            leader = leaders.get(tp)
            if leader is None:
                out[tp] = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1)
            elif leader < 0:
                out[tp] = (ErrorCode.LEADER_NOT_AVAILABLE, -1)
            else:
                by_leader.setdefault(leader, {}).setdefault(tp[0], []).append((tp[1], off))
        T = messages.DeleteRecordsRequest.DeleteRecordsTopic
        for leader, topics in by_leader.items():
            resp = self.request(messages.DeleteRecordsRequest(timeout_ms=int(self.timeout * 1000), topics=[
                T(name=t, partitions=[T.DeleteRecordsPartition(partition_index=p, offset=o)
                                      for p, o in ps]) for t, ps in topics.items()]), node=leader)
            for t in resp.topics:
                for p in t.partitions:
                    out[(t.name, p.partition_index)] = (p.error_code, p.low_watermark)
        return out


    def elect_leaders(self, election_type: int, tps: list[tuple[str, int]] | None):
        """{(topic, partition): (error code, message)}; tps None = all partitions."""
        v = self.version(messages.ElectLeadersRequest.API_KEY)
        if election_type != 0 and v < 1:
            raise ToolError("the broker does not support unclean leader election (ElectLeaders v1)")
        topics = None
        if tps is not None:
            by_topic: dict[str, list[int]] = {}
            for t, p in tps:
                by_topic.setdefault(t, []).append(p)
            topics = [messages.ElectLeadersRequest.TopicPartitions(topic=t, partitions=ps)
                      for t, ps in by_topic.items()]
        resp = self.request(messages.ElectLeadersRequest(election_type=election_type,
                                                  topic_partitions=topics,
                                                  timeout_ms=int(self.timeout * 1000)), v,
                            node=None)
        if getattr(resp, "error_code", 0):
            raise BrokerError(resp.error_code)
        return {(r.topic, p.partition_id): (p.error_code, p.error_message)
                for r in resp.replica_election_results for p in r.partition_result}


    # ------------------------------------------------------------------ transactions
    # KIP-664's admin calls behind kafka-transactions.sh (kafkette.tools.kafka_transactions):
    # the raw responses, whose errors the command turns into Kafka's messages.

    def broker_ids(self) -> list[int]:
        self.metadata([])
        return sorted(self._client.brokers)

    def list_transactions_on(self, node_id: int, states: list[str], producer_ids: list[int],
                             duration_filter_ms: int = -1):
        """ListTransactions on one broker (each broker lists the ids it coordinates)."""
        v = self.version(messages.ListTransactionsRequest.API_KEY, node_id)
        if duration_filter_ms >= 0 and v < 1:
            # Kafka's ListTransactionsRequest.Builder refuses the same way (KIP-994)
            raise ToolError("Duration filter can be set only when using API version 1 or "
                            "higher. If client is connected to an older broker, do not "
                            "specify duration filter or set duration filter to -1.")
        return self.request(messages.ListTransactionsRequest(
            state_filters=list(states), producer_id_filters=list(producer_ids),
            duration_filter=duration_filter_ms), v, node=node_id)

    def describe_transactions_at(self, node, transactional_ids: list[str]):
        return self.request(messages.DescribeTransactionsRequest(
            transactional_ids=list(transactional_ids)), node=node)

    def describe_producers_on(self, node, tps: list[tuple[str, int]]):
        by_topic: dict[str, list[int]] = {}
        for t, p in tps:
            by_topic.setdefault(t, []).append(p)
        T = messages.DescribeProducersRequest.TopicRequest
        return self.request(messages.DescribeProducersRequest(
            topics=[T(name=t, partition_indexes=ps) for t, ps in by_topic.items()]), node=node)

    def write_txn_marker_on(self, node, tp: tuple[str, int], producer_id: int,
                            producer_epoch: int, coordinator_epoch: int, commit: bool):
        """One marker for one partition, as Kafka's Admin.abortTransaction sends it."""
        M = messages.WriteTxnMarkersRequest.WritableTxnMarker
        return self.request(messages.WriteTxnMarkersRequest(markers=[M(
            producer_id=producer_id, producer_epoch=producer_epoch,
            transaction_result=commit, coordinator_epoch=coordinator_epoch,
            topics=[M.WritableTxnMarkerTopic(name=tp[0], partition_indexes=[tp[1]])])]),
            node=node)


def format_table(headers: list[str], rows: list[list]) -> str:
    """Left-aligned columns separated by two spaces, as Kafka's tools print them;
    None prints as '-'."""
    cells = [[str(h) for h in headers]] + [
        ["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in cells)

