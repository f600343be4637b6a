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
from kafkette.protocol.messages import (
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest,
    OffsetFetchRequest,
)

CLIENT_ID = "kafkette-tools"

# api key -> the lowest version this client can build
_MIN_VERSIONS = {
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


class ToolError(Exception):
    """An error to print and exit non-zero with."""


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"


class AdminClient:
    """The calls kafkette's topics/groups commands need. A node is a broker id or a
    (host, port) address; None is the bootstrap connection (the first server of the
    list that answers)."""

    def __init__(self, bootstrap: str, timeout: float = 10.0):
        self.timeout = timeout
        try:
            servers = parse_bootstrap(bootstrap)
        except ValueError:
            raise ToolError(f"bad --bootstrap-server {bootstrap!r}: expected HOST:PORT") from None
        self._client = KafkaClient(servers, client_id=CLIENT_ID, connect_timeout=timeout,
                                   request_timeout=timeout)
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
                                                  min_version=_MIN_VERSIONS[api_key]))

    def request(self, req, version: int | None = None, node=None):
        if version is None:
            version = self.version(req.API_KEY, node)
        return self._run(self._client.send(req, version, node=node))

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

    def coordinator(self, group: str) -> tuple[str, int]:
        """The address of the group's coordinator."""
        v = self.version(FindCoordinatorRequest.API_KEY)
        if v >= 4:
            resp = self.request(FindCoordinatorRequest(key_type=0, coordinator_keys=[group]), v)
            if not resp.coordinators:
                raise ToolError(f"no coordinator for group {group!r}")
            co = resp.coordinators[0]
            err, host, port, msg = co.error_code, co.host, co.port, co.error_message
        else:
            resp = self.request(FindCoordinatorRequest(key=group, key_type=0), v)
            err, host, port, msg = resp.error_code, resp.host, resp.port, resp.error_message
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


def format_table(headers: list[str], rows: list[list]) -> str:
    """Left-aligned columns separated by two spaces, as Kafka's tools print them;
    None prints as '-'."""
    cells = [[str(h) for h in headers]] + [
        ["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in cells)
