"""The controller listener's own security (controller/raft/transport.py):

- with an authorizer, the Raft APIs are served only to a sender holding what Kafka's
  ControllerApis asks (CLUSTER_ACTION on the cluster for Vote, BeginQuorumEpoch,
  EndQuorumEpoch, Fetch, FetchSnapshot; DESCRIBE for DescribeQuorum); a refused
  request gets CLUSTER_AUTHORIZATION_FAILED at the top of its response and never
  reaches the Raft core;
- a SASL controller listener closes a connection that has not authenticated within
  connections.max.idle.ms, as the client listeners do.
"""
from __future__ import annotations

import asyncio
import socket
import time

from kafkette.clock import SystemClock
from kafkette.controller.acls import (
    ALLOW, CLUSTER, CLUSTER_ACTION, CLUSTER_NAME, DESCRIBE, LITERAL, AclBinding, AclIndex,
    Authorizer,
)
from kafkette.controller.raft import transport as T
from kafkette.controller.raft.quorum import RaftQuorum
from kafkette.controller.raft.transport import ANONYMOUS, ControllerChannel, ControllerServer
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import (
    BeginQuorumEpochRequest, DescribeQuorumRequest, DescribeQuorumResponse,
    EndQuorumEpochRequest, FetchRequest, FetchSnapshotRequest, VoteRequest,
)
from kafkette.server.sasl import PlainServer, SaslSession

REFUSED = ErrorCode.CLUSTER_AUTHORIZATION_FAILED


class Listener:
    def apply(self, last_offset, values):
        pass

    def load_snapshot(self, last_offset, data):
        pass

    def snapshot(self):
        return -1, b""

    def leader_changed(self, leader_id, epoch):
        pass


def raft_requests():
    """(api key, version, request) of each Raft API, for node 1's metadata partition."""
    from kafkette.controller.raft import messages as m
    snap = m.SnapshotId(5, 1)
    core = [m.VoteRequest(1, 100, 2, 0, 0, False), m.BeginQuorumEpochRequest(1, 100, 2),
            m.EndQuorumEpochRequest(1, 100, 2, (1,)), m.FetchRequest(1, 1, 2, 0, 0, 0),
            m.FetchSnapshotRequest(1, 1, 2, snap, 0, 1024)]
    keys = [52, 53, 54, 1, 59]
    out = []
    for key, msg in zip(keys, core):
        wire, version, _ = T.to_wire(msg, 1)
        out.append((key, version, wire))
    D = DescribeQuorumRequest.TopicData
    out.append((55, 2, DescribeQuorumRequest(topics=[D(
        topic_name="__cluster_metadata", partitions=[D.PartitionData(partition_index=0)])])))
    return out


def test_raft_apis_are_authorized_as_kafka_controller_apis(tmp_path):
    """A real Authorizer over ACLs: first nothing is granted to User:ANONYMOUS (every
    Raft API refused, the quorum's epoch untouched by a Vote of epoch 100), then
    DESCRIBE only (DescribeQuorum served, the others still refused), then
    CLUSTER_ACTION (Vote served: the epoch moves)."""
    auth = Authorizer(["User:broker"], allow_everyone_if_no_acl_found=False)
    acls = {"index": AclIndex()}
    asked: list[tuple[str, int]] = []

    def authorize(peer, operation):
        asked.append((peer.principal, operation))
        return auth.authorize(acls["index"], peer.principal, peer.host, operation,
                              CLUSTER, CLUSTER_NAME)

    def grant(op):
        import uuid
        b = AclBinding(CLUSTER, CLUSTER_NAME, LITERAL, ANONYMOUS, "*", op, ALLOW)
        acls["index"] = AclIndex({**acls["index"].by_id, uuid.uuid4(): b})

    async def main():
        voters = {1: ("127.0.0.1", 0)}
        q = RaftQuorum(1, voters, tmp_path, SystemClock(), authorize=authorize)
        await q.start(Listener())
        deadline = time.monotonic() + 5
        while not q.is_leader():
            assert time.monotonic() < deadline, "the quorum of one never led"
            await asyncio.sleep(0.01)
        epoch = q.epoch
        ch = ControllerChannel("127.0.0.1", q.port, request_timeout_ms=3000)
        try:
            async def codes():
                return {key: (await ch.request(req, version)).error_code
                        for key, version, req in raft_requests()}
            assert await codes() == {52: REFUSED, 53: REFUSED, 54: REFUSED, 1: REFUSED,
                                     59: REFUSED, 55: REFUSED}
            assert q.epoch == epoch and q.is_leader()   # the refused Vote changed nothing
            refused = await ch.request(raft_requests()[0][2], raft_requests()[0][1])
            assert refused.topics == []   # Kafka's error response: no partition data
            del asked[6:]
            assert asked == [(ANONYMOUS, CLUSTER_ACTION)] * 5 + [(ANONYMOUS, DESCRIBE)]
            grant(DESCRIBE)
            got = await codes()
            assert got.pop(55) == 0 and set(got.values()) == {REFUSED}
            grant(CLUSTER_ACTION)
            vote_key, vote_version, vote = raft_requests()[0]
            resp = await ch.request(vote, vote_version)
            assert resp.error_code == 0
            # Served: the core's answer for __cluster_metadata-0 (a refusal has none).
            assert resp.topics[0].partitions[0].leader_epoch == epoch
        finally:
            await ch.close()
            await q.close()

    asyncio.run(main())


def test_a_voter_refused_by_its_peers_says_so_once_and_never_leads(tmp_path):
    """Two voters whose listeners refuse each other (User:ANONYMOUS holds nothing):
    no vote is granted, so no leader, and each node logs the refusal once per peer
    rather than at every election timeout."""
    from structlog.testing import capture_logs
    import socket as _socket

    def free_ports(n):
        socks = [_socket.socket() for _ in range(n)]
        for sk in socks:
            sk.bind(("127.0.0.1", 0))
        ports = [sk.getsockname()[1] for sk in socks]
        for sk in socks:
            sk.close()
        return ports

    config = {"controller.quorum.election.timeout.ms": 100,
              "controller.quorum.fetch.timeout.ms": 400,
              "controller.quorum.election.backoff.max.ms": 50,
              "controller.quorum.request.timeout.ms": 300}

    async def main():
        voters = dict(zip((1, 2), (("127.0.0.1", p) for p in free_ports(2))))
        qs = [RaftQuorum(i, voters, tmp_path / str(i), SystemClock(), config=config,
                         authorize=lambda peer, op: False) for i in (1, 2)]
        for q in qs:
            await q.start(Listener())
        try:
            with capture_logs() as logs:
                deadline = time.monotonic() + 10
                # Several election rounds (100-150 ms each) within the wait.
                while time.monotonic() < deadline and \
                        len([e for e in logs if e["event"] == "raft_request_refused_by_peer"]) < 2:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)   # more rounds: still one line per peer
            refused = [e for e in logs if e["event"] == "raft_request_refused_by_peer"]
            assert sorted(e["peer"] for e in refused) == [1, 2], refused
            assert not any(q.is_leader() for q in qs)
        finally:
            for q in qs:
                await q.close()

    asyncio.run(main())


def test_without_an_authorizer_the_raft_apis_are_served():
    async def main():
        server = ControllerServer("127.0.0.1", 0)
        server.register(55, 0, 2, lambda r, v, h: DescribeQuorumResponse(
            error_code=0, topics=[], nodes=[]), operation=DESCRIBE)
        await server.start()
        ch = ControllerChannel("127.0.0.1", server.port)
        try:
            assert (await ch.request(DescribeQuorumRequest(topics=[]), 2)).error_code == 0
            server.authorize = lambda peer, op: False
            assert (await ch.request(DescribeQuorumRequest(topics=[]), 2)).error_code == REFUSED
        finally:
            await ch.close()
            await server.close()

    asyncio.run(main())


class _Sasl:
    """The SASL side of a SASL controller listener, as server/server.py gives it."""

    def __init__(self, auth_timeout_s):
        self.auth_timeout_s = auth_timeout_s

    def new_session(self, peer):
        return SaslSession(["PLAIN"], lambda m: PlainServer({"broker": "secret"}))

    def exchange(self, frame, session, peer):
        raise AssertionError("this test never authenticates")


def _api_versions_frame() -> bytes:
    body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (7).to_bytes(4, "big") + \
        (-1).to_bytes(2, "big", signed=True)
    return len(body).to_bytes(4, "big") + body


def test_sasl_controller_listener_closes_a_client_that_never_authenticates():
    async def main():
        server = ControllerServer("127.0.0.1", 0, sasl=_Sasl(0.4))
        await server.start()
        loop = asyncio.get_running_loop()
        try:
            def client():
                with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                    t0 = time.monotonic()
                    # ApiVersions is served before authentication; the clock runs on.
                    s.sendall(_api_versions_frame())
                    got = bytearray()
                    s.settimeout(5)
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            return time.monotonic() - t0, bytes(got)
                        got += chunk
            elapsed, got = await loop.run_in_executor(None, client)
            assert got[8:10] == b"\x00\x00"   # the ApiVersions answer, error 0
            assert 0.3 <= elapsed < 4, elapsed
        finally:
            await server.close()

    asyncio.run(main())


def test_negative_idle_time_never_closes_for_authentication():
    async def main():
        server = ControllerServer("127.0.0.1", 0, sasl=_Sasl(-1))
        await server.start()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                # Still open well past the 0.4 s the other test closes at.
                assert await asyncio.wait_for(r.read(1), 1.0) == b""
            except asyncio.TimeoutError:
                pass
            else:
                raise AssertionError("closed without a timeout configured")
            finally:
                w.close()
        finally:
            await server.close()

    asyncio.run(main())
