"""A tiny synchronous Kafka admin client over plain sockets.

It speaks the generated wire messages (kafkette.protocol.messages). On connecting it
sends ApiVersions v0 (which every broker answers, KIP-511) and then uses, per API,
min(broker max, our max) — like Kafka's NetworkClient/NodeApiVersions
(`latestUsableVersion`) — so it works against any Kafka-compatible broker, not only
kafkette. Group calls go to the coordinator found with FindCoordinator; ListOffsets
goes to each partition's leader, found with Metadata (as Kafka's AdminClient does).
"""
from __future__ import annotations

import socket
import struct

from kafkette.errors import ErrorCode
from kafkette.protocol.headers import encode_request_header, response_header_version
from kafkette.protocol.messages import (
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, ListGroupsRequest,
    ListGroupsResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, OffsetFetchRequest, OffsetFetchResponse,
)
from kafkette.protocol.primitives import Reader

CLIENT_ID = "kafkette-tools"
MAX_FRAME = 100 * 1024 * 1024

# api key -> (request class, response class, lowest version this client can build)
_APIS = {
    MetadataRequest.API_KEY: (MetadataRequest, MetadataResponse, 1),
    CreateTopicsRequest.API_KEY: (CreateTopicsRequest, CreateTopicsResponse, 0),
    DeleteTopicsRequest.API_KEY: (DeleteTopicsRequest, DeleteTopicsResponse, 0),
    DescribeConfigsRequest.API_KEY: (DescribeConfigsRequest, DescribeConfigsResponse, 0),
    ListGroupsRequest.API_KEY: (ListGroupsRequest, ListGroupsResponse, 0),
    DescribeGroupsRequest.API_KEY: (DescribeGroupsRequest, DescribeGroupsResponse, 0),
    FindCoordinatorRequest.API_KEY: (FindCoordinatorRequest, FindCoordinatorResponse, 1),
    OffsetFetchRequest.API_KEY: (OffsetFetchRequest, OffsetFetchResponse, 2),
    ListOffsetsRequest.API_KEY: (ListOffsetsRequest, ListOffsetsResponse, 1),
}


class ToolError(Exception):
    """An error to print and exit non-zero with."""


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"


def parse_bootstrap(server: str) -> list[tuple[str, int]]:
    """HOST:PORT[,HOST:PORT...] as Kafka's bootstrap.servers."""
    out = []
    for item in server.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not port.isdigit():
            raise ToolError(f"bad --bootstrap-server {server!r}: expected HOST:PORT")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    return out


class Connection:
    """One broker connection with negotiated API versions."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.host, self.port = host, port
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise ToolError(f"cannot connect to {host}:{port}: {e.strerror or e}") from None
        self._corr = 0
        self.versions: dict[int, int] = {}
        try:
            resp = self._send(ApiVersionsRequest(), ApiVersionsRequest, ApiVersionsResponse, 0)
        except Exception:
            self.close()
            raise
        if resp.error_code != 0:
            self.close()
            raise ToolError(f"ApiVersions failed: {error_name(resp.error_code)}")
        for k in resp.api_keys:
            self.versions[k.api_key] = (k.min_version, k.max_version)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def version(self, api_key: int) -> int:
        req_cls, _, our_min = _APIS[api_key]
        theirs = self.versions.get(api_key)
        if theirs is None:
            raise ToolError(f"broker {self.host}:{self.port} does not support "
                            f"{req_cls.NAME.removesuffix('Request')}")
        v = min(theirs[1], req_cls.MAX_VERSION)
        if v < max(theirs[0], our_min):
            raise ToolError(f"no common version of {req_cls.NAME.removesuffix('Request')} "
                            f"(broker {theirs[0]}-{theirs[1]})")
        return v

    def request(self, req, version: int | None = None):
        req_cls, resp_cls, _ = _APIS[req.API_KEY]
        if version is None:
            version = self.version(req.API_KEY)
        return self._send(req, req_cls, resp_cls, version)

    def _send(self, req, req_cls, resp_cls, version: int):
        self._corr += 1
        corr = self._corr
        payload = encode_request_header(req_cls.API_KEY, version, corr, CLIENT_ID) + \
            req.encode(version)
        try:
            self.sock.sendall(struct.pack(">i", len(payload)) + payload)
            size = struct.unpack(">i", self._recv(4))[0]
            if size < 4 or size > MAX_FRAME:
                raise ToolError(f"bad response frame size {size}")
            data = self._recv(size)
        except OSError as e:
            raise ToolError(f"connection to {self.host}:{self.port} failed: {e}") from None
        r = Reader(data)
        got = r.int32()
        if got != corr:
            raise ToolError(f"correlation id mismatch ({got} != {corr})")
        if response_header_version(req_cls.API_KEY, version) >= 1:
            r.skip_tagged_fields()
        return resp_cls.decode(r, version)

    def _recv(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise OSError("connection closed by broker")
            out += chunk
        return bytes(out)


class AdminClient:
    """The calls kafkette's topics/groups commands need."""

    def __init__(self, bootstrap: str, timeout: float = 10.0):
        self.timeout = timeout
        errors = []
        for host, port in parse_bootstrap(bootstrap):   # first that answers
            try:
                self.bootstrap = Connection(host, port, timeout)
                break
            except ToolError as e:
                errors.append(str(e))
        else:
            raise ToolError("; ".join(errors))
        self._conns: dict[tuple[str, int], Connection] = {
            (self.bootstrap.host, self.bootstrap.port): self.bootstrap}
        self._brokers: dict[int, tuple[str, int]] = {}

    def close(self) -> None:
        for c in self._conns.values():
            c.close()
        self._conns.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _conn_to(self, host: str, port: int) -> Connection:
        c = self._conns.get((host, port))
        if c is None:
            c = self._conns[(host, port)] = Connection(host, port, self.timeout)
        return c

    def _node(self, node_id: int) -> Connection:
        if node_id not in self._brokers:
            self.metadata([])
        if node_id not in self._brokers:
            raise ToolError(f"broker {node_id} is not in the cluster metadata")
        return self._conn_to(*self._brokers[node_id])

    # ------------------------------------------------------------------ topics

    def metadata(self, topics: list[str] | None = None):
        """topics None = all topics; [] = brokers only."""
        req = MetadataRequest(
            topics=None if topics is None else
            [MetadataRequest.MetadataRequestTopic(name=t) for t in topics],
            allow_auto_topic_creation=False)
        resp = self.bootstrap.request(req)
        for b in resp.brokers:
            self._brokers[b.node_id] = (b.host, b.port)
        return resp

    def create_topic(self, name: str, partitions: int, replication_factor: int,
                     configs: dict[str, str]) -> None:
        T = CreateTopicsRequest.CreatableTopic
        req = CreateTopicsRequest(
            topics=[T(name=name, num_partitions=partitions,
                      replication_factor=replication_factor, assignments=[],
                      configs=[T.CreatableTopicConfig(name=k, value=v)
                               for k, v in configs.items()])],
            timeout_ms=int(self.timeout * 1000), validate_only=False)
        resp = self.bootstrap.request(req)
        for t in resp.topics:
            if t.error_code != 0:
                raise ToolError(f"cannot create topic {name!r}: {error_name(t.error_code)}"
                                + (f": {t.error_message}" if t.error_message else ""))

    def delete_topic(self, name: str) -> None:
        v = self.bootstrap.version(DeleteTopicsRequest.API_KEY)
        if v >= 6:
            req = DeleteTopicsRequest(topics=[DeleteTopicsRequest.DeleteTopicState(name=name)])
        else:
            req = DeleteTopicsRequest(topic_names=[name])
        req.timeout_ms = int(self.timeout * 1000)
        resp = self.bootstrap.request(req, v)
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
        v = self.bootstrap.version(DescribeConfigsRequest.API_KEY)
        resp = self.bootstrap.request(req, v)
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
        for node_id in sorted(self._brokers):
            resp = self._node(node_id).request(ListGroupsRequest(states_filter=[], types_filter=[]))
            if resp.error_code != 0:
                raise ToolError(f"ListGroups failed on broker {node_id}: "
                                f"{error_name(resp.error_code)}")
            for g in resp.groups:
                groups[g.group_id] = g
        return [groups[k] for k in sorted(groups)]

    def coordinator(self, group: str) -> Connection:
        c = self.bootstrap
        v = c.version(FindCoordinatorRequest.API_KEY)
        if v >= 4:
            resp = c.request(FindCoordinatorRequest(key_type=0, coordinator_keys=[group]), v)
            if not resp.coordinators:
                raise ToolError(f"no coordinator for group {group!r}")
            co = resp.coordinators[0]
            err, host, port, msg = co.error_code, co.host, co.port, co.error_message
        else:
            resp = c.request(FindCoordinatorRequest(key=group, key_type=0), v)
            err, host, port, msg = resp.error_code, resp.host, resp.port, resp.error_message
        if err != 0:
            raise ToolError(f"cannot find the coordinator of group {group!r}: "
                            f"{error_name(err)}" + (f": {msg}" if msg else ""))
        return self._conn_to(host, port)

    def describe_group(self, group: str):
        resp = self.coordinator(group).request(
            DescribeGroupsRequest(groups=[group], include_authorized_operations=False))
        g = resp.groups[0]
        if g.error_code != 0:
            raise ToolError(f"cannot describe group {group!r}: {error_name(g.error_code)}")
        return g

    def committed_offsets(self, group: str) -> dict[tuple[str, int], int]:
        conn = self.coordinator(group)
        v = conn.version(OffsetFetchRequest.API_KEY)
        if v >= 8:
            req = OffsetFetchRequest(groups=[OffsetFetchRequest.OffsetFetchRequestGroup(
                group_id=group, topics=None)], require_stable=False)
        else:
            req = OffsetFetchRequest(group_id=group, topics=None, require_stable=False)
        resp = conn.request(req, v)
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
            resp = self._node(leader).request(req)
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
