"""Three RaftQuorums over real TCP on 127.0.0.1 in one event loop (driver, transport,
file log): election, commit on all, failover after closing the leader, and a restarted
node catching up from a snapshot once the leader's log start has moved past it."""
from __future__ import annotations

import asyncio
import json
import random
import socket
import time

import pytest

from kafkette.clock import SystemClock
from kafkette.controller.raft.quorum import RaftQuorum
from kafkette.controller.raft.transport import (
    ChannelError,
    ControllerChannel,
    ControllerServer,
)
from kafkette.errors import NotControllerError
from kafkette.protocol.messages import DescribeQuorumRequest, DescribeQuorumResponse

CONFIG = {
    "controller.quorum.election.timeout.ms": 200,
    "controller.quorum.fetch.timeout.ms": 600,
    "controller.quorum.election.backoff.max.ms": 100,
    "controller.quorum.request.timeout.ms": 500,
    "metadata.log.max.record.bytes.between.snapshots": 400,
}


class Listener:
    """A state machine: the list of applied values, snapshotted as JSON."""

    def __init__(self):
        self.values: list[bytes] = []
        self.last_offset = -1
        self.snapshots_loaded = 0
        self.leaders: list[tuple[int | None, int]] = []

    def apply(self, last_offset, values):
        assert last_offset > self.last_offset
        self.values.extend(values)
        self.last_offset = last_offset

    def load_snapshot(self, last_offset, data):
        self.values = [v.encode() for v in json.loads(data)]
        self.last_offset = last_offset
        self.snapshots_loaded += 1

    def snapshot(self):
        return self.last_offset, json.dumps([v.decode() for v in self.values]).encode()

    def leader_changed(self, leader_id, epoch):
        self.leaders.append((leader_id, epoch))


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def wait_until(cond, timeout_s=10.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


def leaders(quorums):
    return [q for q in quorums.values() if q.is_leader()]


def test_three_voters_elect_commit_fail_over_and_catch_up_from_a_snapshot(tmp_path):
    async def main():
        ids = (1, 2, 3)
        voters = dict(zip(ids, (("127.0.0.1", p) for p in free_ports(3))))
        listeners = {i: Listener() for i in ids}
        quorums = {i: RaftQuorum(i, voters, tmp_path / f"n{i}", SystemClock(), config=CONFIG,
                                 rng=random.Random(i)) for i in ids}
        try:
            for i in ids:
                await quorums[i].start(listeners[i])
            await wait_until(lambda: len(leaders(quorums)) == 1, what="a leader")
            leader = leaders(quorums)[0]
            off = await asyncio.wait_for(leader.append([b"a", b"b"]), 5)
            await wait_until(lambda: all(listeners[i].values == [b"a", b"b"] for i in ids),
                             what="the first entry applied everywhere")
            assert all(listeners[i].last_offset == off for i in ids)
            follower = next(q for q in quorums.values() if q is not leader)
            with pytest.raises(NotControllerError):
                await follower.append([b"x"])
            assert follower.leader_id == leader.node_id

            # DescribeQuorum on the controller listener.
            ch = ControllerChannel(*voters[leader.node_id])
            try:
                P = DescribeQuorumRequest.TopicData
                resp = await ch.request(DescribeQuorumRequest(topics=[P("__cluster_metadata", [P.PartitionData(0)])]), 2)
            finally:
                await ch.close()
            assert isinstance(resp, DescribeQuorumResponse)
            part = resp.topics[0].partitions[0]
            assert part.leader_id == leader.node_id and part.high_watermark >= off + 1
            assert sorted(v.replica_id for v in part.current_voters) == [1, 2, 3]

            # Fail over: close the leader (EndQuorumEpoch), a new one is elected.
            old_id, old_epoch = leader.node_id, leader.epoch
            t0 = time.monotonic()
            await leader.close()
            rest = {i: q for i, q in quorums.items() if i != old_id}
            await wait_until(lambda: len(leaders(rest)) == 1, what="a new leader")
            failover_ms = (time.monotonic() - t0) * 1000
            new = leaders(rest)[0]
            assert new.node_id != old_id and new.epoch > old_epoch
            print(f"\nraft failover after a graceful close: {failover_ms:.0f} ms")
            # While the old leader is down: enough appends for a snapshot on the leader.
            for k in range(30):
                await asyncio.wait_for(new.append([b"value-%02d" % k]), 5)
            want = [b"a", b"b"] + [b"value-%02d" % k for k in range(30)]
            await wait_until(lambda: all(listeners[i].values == want for i in rest), what="appends applied")
            new_log = new._log
            await wait_until(lambda: new_log.log_start_offset > 0, what="a snapshot on the new leader")
            stale = quorums[old_id]
            assert new_log.log_start_offset > stale._log.log_end_offset

            # Restart the old leader: behind the log start, it fetches the snapshot.
            listeners[old_id] = Listener()
            quorums[old_id] = RaftQuorum(old_id, voters, tmp_path / f"n{old_id}", SystemClock(),
                                         config=CONFIG, rng=random.Random(9))
            await quorums[old_id].start(listeners[old_id])
            await wait_until(lambda: listeners[old_id].values == want, what="the restarted node caught up")
            assert listeners[old_id].snapshots_loaded >= 1
            assert quorums[old_id].leader_id == new.node_id
            off = await asyncio.wait_for(new.append([b"after"]), 5)
            await wait_until(lambda: all(l.values[-1:] == [b"after"] for l in listeners.values()),
                             what="the last entry applied everywhere")
        finally:
            for q in quorums.values():
                await q.close()

    asyncio.run(main())


def test_a_quorum_of_one_restarts_with_its_committed_entries(tmp_path):
    async def main():
        port = free_ports(1)[0]
        voters = {1: ("127.0.0.1", port)}
        lst = Listener()
        q = RaftQuorum(1, voters, tmp_path, SystemClock(), config=CONFIG)
        await q.start(lst)
        assert q.is_leader()
        assert await q.append([b"x"]) == 1   # offset 0 is the epoch-start entry
        await q.close()
        lst2 = Listener()
        q2 = RaftQuorum(1, voters, tmp_path, SystemClock(), config=CONFIG)
        await q2.start(lst2)
        try:
            assert q2.is_leader() and lst2.values == [b"x"] and q2.epoch == 2
        finally:
            await q2.close()

    asyncio.run(main())


def test_channel_pipelines_reconnects_and_reports_failures():
    async def main():
        server = ControllerServer("127.0.0.1", 0)
        gate = asyncio.Event()

        async def describe(request, version, header):
            if header.client_id == "slow":
                await gate.wait()
            return DescribeQuorumResponse(error_code=0, topics=[], nodes=[])
        server.register(55, 0, 2, describe)
        await server.start()
        port = server.port
        ch = ControllerChannel("127.0.0.1", port, request_timeout_ms=300, backoff_ms=10)
        try:
            # Pipelined: the fast request waits for the slow one (answers are in order).
            slow = asyncio.ensure_future(ch.request(DescribeQuorumRequest(topics=[]), 2, client_id="slow",
                                                    timeout_ms=2000))
            fast = asyncio.ensure_future(ch.request(DescribeQuorumRequest(topics=[]), 2, timeout_ms=2000))
            await asyncio.sleep(0)
            assert not fast.done()
            gate.set()
            assert (await slow).error_code == 0 and (await fast).error_code == 0
            # A timeout is a clear error (and closes the connection).
            gate.clear()
            with pytest.raises(ChannelError, match="timed out"):
                await ch.request(DescribeQuorumRequest(topics=[]), 2, client_id="slow")
            gate.set()
            assert (await ch.request(DescribeQuorumRequest(topics=[]), 2)).error_code == 0  # reconnected
            # The server goes away: an error, not a hang.
            await server.close()
            with pytest.raises(ChannelError):
                await ch.request(DescribeQuorumRequest(topics=[]), 2)
            # Back on the same port: the channel reconnects (after its backoff).
            server2 = ControllerServer("127.0.0.1", port)
            server2.register(55, 0, 2, describe)
            await server2.start()
            try:
                deadline = time.monotonic() + 5
                while True:
                    try:
                        assert (await ch.request(DescribeQuorumRequest(topics=[]), 2)).error_code == 0
                        break
                    except ChannelError:
                        if time.monotonic() > deadline:
                            raise
            finally:
                await server2.close()
            # An API nobody registered closes the connection: the caller sees an error.
            with pytest.raises(ValueError):
                server.register(55, 0, 99, describe)
        finally:
            await ch.close()

    asyncio.run(main())


def test_core_messages_round_trip_through_the_kafka_wire_messages():
    from kafkette.controller.raft import messages as m
    from kafkette.controller.raft import transport as T
    from kafkette.protocol.headers import RequestHeader
    from kafkette.protocol.messages import API_MESSAGES

    E = m.Entry
    cases = [
        (m.VoteRequest(5, 3, 2, 2, 10, True), m.VoteResponse(5, 3, None, True, True)),
        (m.VoteRequest(6, 3, 2, 2, 10, False), m.VoteResponse(6, 4, 1, False, False)),
        (m.BeginQuorumEpochRequest(7, 4, 1), m.BeginQuorumEpochResponse(7, 4, 1)),
        (m.EndQuorumEpochRequest(8, 4, 1, (2, 3)), m.EndQuorumEpochResponse(8, 4, None, 74)),
        (m.FetchRequest(9, 4, 2, 10, 3, 500),
         m.FetchResponse(9, 4, 1, 0, 9, 2, (E(2, 4, (b"a", b"b")), E(4, 4, (b"c",), True)))),
        (m.FetchRequest(10, 4, 2, 10, 3, 500), m.FetchResponse(10, 4, 1, 0, 9, 2, (), 3, 8)),
        (m.FetchRequest(11, 4, 2, 10, 3, 500), m.FetchResponse(11, 4, 1, 0, 9, 20, (), -1, -1, m.SnapshotId(20, 3))),
        (m.FetchSnapshotRequest(12, 4, 2, m.SnapshotId(10, 3), 5, 100),
         m.FetchSnapshotResponse(12, 4, 1, 0, m.SnapshotId(10, 3), 20, 5, b"chunk")),
    ]
    for req, resp in cases:
        wire, version, client_id = T.to_wire(req, 1)
        api = wire.API_KEY
        back = API_MESSAGES[api][0].decode(wire.encode(version), version)
        src, core = T.request_from_wire(api, back, version, RequestHeader(api, version, 1, client_id, 2), req.rid)
        assert core == req and src == getattr(req, "candidate_id", getattr(req, "leader_id", getattr(req, "replica_id", None)))
        wresp = T.response_to_wire(api, version, resp)
        got = T.response_from_wire(req, API_MESSAGES[api][1].decode(wresp.encode(version), version))
        assert got == resp, (got, resp)


def test_controller_listener_closes_connections_on_bad_input_and_stays_up():
    async def main():
        server = ControllerServer("127.0.0.1", 0, max_frame=1024)
        server.register(55, 0, 2, lambda req, v, h: DescribeQuorumResponse(error_code=0, topics=[], nodes=[]))
        await server.start()
        try:
            for payload in (b"\x7f\xff\xff\xff",                      # hostile length
                            b"\x00\x00\x00\x0c" + b"\x00\x3c\x00\x00" + b"\x00" * 8,  # api 60: not served
                            b"\x00\x00\x00\x0a" + b"\x00\x37\x00\x02" + b"\x00" * 6):  # truncated body
                r, w = await asyncio.open_connection("127.0.0.1", server.port)
                w.write(payload)
                await w.drain()
                assert await asyncio.wait_for(r.read(), 5) == b""   # closed, no answer
                w.close()
            ch = ControllerChannel("127.0.0.1", server.port)
            try:
                assert (await ch.request(DescribeQuorumRequest(topics=[]), 2)).error_code == 0
            finally:
                await ch.close()
        finally:
            await server.close()

    asyncio.run(main())


def test_failover_after_the_leader_dies_without_resigning(tmp_path):
    """No EndQuorumEpoch: the followers notice by fetch.timeout (600 ms here)."""
    async def main():
        ids = (1, 2, 3)
        voters = dict(zip(ids, (("127.0.0.1", p) for p in free_ports(3))))
        listeners = {i: Listener() for i in ids}
        quorums = {i: RaftQuorum(i, voters, tmp_path / f"n{i}", SystemClock(), config=CONFIG,
                                 rng=random.Random(i)) for i in ids}
        try:
            for i in ids:
                await quorums[i].start(listeners[i])
            await wait_until(lambda: len(leaders(quorums)) == 1, what="a leader")
            leader = leaders(quorums)[0]
            await asyncio.wait_for(leader.append([b"before"]), 5)
            # Die: stop answering and sending, no resignation.
            leader._closed = True
            await leader._driver.close()
            await leader._server.close()
            t0 = time.monotonic()
            rest = {i: q for i, q in quorums.items() if i != leader.node_id}
            await wait_until(lambda: len(leaders(rest)) == 1, what="a new leader")
            elapsed_ms = (time.monotonic() - t0) * 1000
            print(f"\nraft failover after the leader died: {elapsed_ms:.0f} ms (fetch.timeout 600 ms)")
            new = leaders(rest)[0]
            await asyncio.wait_for(new.append([b"after"]), 5)
            await wait_until(lambda: all(listeners[i].values == [b"before", b"after"] for i in rest),
                             what="applied on the survivors")
            assert elapsed_ms < 5000
        finally:
            for q in quorums.values():
                await q.close()            # returns at once for the dead one ...
                if q._log is not None:
                    q._log.close()         # ... whose log is still open (idempotent)

    asyncio.run(main())


def test_an_observer_follows_over_tcp_survives_a_leader_change_and_never_counts(tmp_path):
    """Three voters and one observer (node 9, not in the voters: a broker-only node).
    The observer has no controller listener, applies every committed entry, finds the
    new leader after a failover, and is listed by DescribeQuorum as an observer. The
    controller listener answers ApiVersions with the APIs it serves."""
    from kafkette.client import request_once
    from kafkette.protocol.messages import ApiVersionsRequest

    async def main():
        ids = (1, 2, 3)
        voters = dict(zip(ids, (("127.0.0.1", p) for p in free_ports(3))))
        listeners = {i: Listener() for i in (*ids, 9)}
        quorums = {i: RaftQuorum(i, voters, tmp_path / f"n{i}", SystemClock(), config=CONFIG,
                                 rng=random.Random(i)) for i in (*ids, 9)}
        obs = quorums[9]
        try:
            for i in (*ids, 9):
                await quorums[i].start(listeners[i])
            assert obs.observer and obs._server is None
            with pytest.raises(RuntimeError, match="observer"):
                obs.server
            await wait_until(lambda: len(leaders(quorums)) == 1, what="a leader")
            leader = leaders(quorums)[0]
            await asyncio.wait_for(leader.append([b"a"]), 5)
            await wait_until(lambda: listeners[9].values == [b"a"], what="the observer applies")
            await wait_until(lambda: obs.leader_id == leader.node_id, what="the observer's leader")
            with pytest.raises(NotControllerError):
                await obs.append([b"x"])
            d = leader.describe()
            assert 9 in d["observers"] and 9 not in d["voters"]
            await wait_until(lambda: leader.describe()["observers"][9]["log_end_offset"]
                             == leader.high_watermark, what="the observer's offset at the leader")

            versions = await asyncio.get_running_loop().run_in_executor(
                None, lambda: request_once(*voters[leader.node_id], ApiVersionsRequest(), 0))
            keys = {v.api_key for v in versions.api_keys}
            assert versions.error_code == 0 and {1, 18, 52, 53, 54, 55, 59} <= keys
            assert 0 not in keys                       # no Produce on a controller listener

            old = leader.node_id
            await leader.close()
            rest = {i: q for i, q in quorums.items() if i not in (old, 9)}
            await wait_until(lambda: len(leaders(rest)) == 1, what="a new leader")
            new = leaders(rest)[0]
            await asyncio.wait_for(new.append([b"b"]), 5)
            await wait_until(lambda: listeners[9].values == [b"a", b"b"],
                             what="the observer follows the new leader")
            assert obs.leader_id == new.node_id and not obs.is_leader()
            # With one voter of three down and the observer up, commit still needs the
            # two live voters: the observer never stands in for a missing voter.
            other = next(q for q in rest.values() if q is not new)
            await other.close()
            with pytest.raises((asyncio.TimeoutError, NotControllerError)):
                await asyncio.wait_for(new.append([b"c"]), 1.5)
            assert listeners[9].values == [b"a", b"b"]
        finally:
            for q in quorums.values():
                await q.close()

    asyncio.run(main())


def test_a_follower_whose_metadata_log_cannot_be_written_survives_and_catches_up(tmp_path):
    # A full disk under one follower's metadata log: its appends fail (KafkaStorageError
    # from the PartitionLog), the driver logs it once and keeps the node running; the
    # other two commit; once the disk has room the follower catches up.
    from structlog.testing import capture_logs

    from kafkette.errors import KafkaStorageError

    async def main():
        ids = (1, 2, 3)
        voters = dict(zip(ids, (("127.0.0.1", p) for p in free_ports(3))))
        listeners = {i: Listener() for i in ids}
        quorums = {i: RaftQuorum(i, voters, tmp_path / f"n{i}", SystemClock(), config=CONFIG,
                                 rng=random.Random(i)) for i in ids}
        try:
            for i in ids:
                await quorums[i].start(listeners[i])
            await wait_until(lambda: len(leaders(quorums)) == 1, what="a leader")
            leader = leaders(quorums)[0]
            sick = next(q for q in quorums.values() if q is not leader)
            real = sick._log._store_append
            failing = [True]

            def store_append(entry):
                if failing[0]:
                    raise KafkaStorageError("no space left in log dir (test)")
                return real(entry)
            sick._log._store_append = store_append
            with capture_logs() as logs:
                for k in range(5):
                    await asyncio.wait_for(leader.append([b"v%d" % k]), 5)
                await wait_until(lambda: any(e["event"] == "raft_metadata_log_write_failed"
                                             for e in logs), what="the follower's append failing")
                want = [b"v%d" % k for k in range(5)]
                assert listeners[sick.node_id].values == []
                failing[0] = False
                await wait_until(lambda: listeners[sick.node_id].values == want,
                                 what="the follower catching up")
            events = [e["event"] for e in logs]
            assert events.count("raft_metadata_log_write_failed") == 1
            assert "raft_metadata_log_writable_again" in events
            assert all(listeners[i].values == want for i in ids)
        finally:
            for q in quorums.values():
                await q.close()

    asyncio.run(main())
