"""Regressions for what the protocol fuzzer (kafkette/fuzz, `make fuzz`) found.

Each test names the finding; the frames are the fuzzer's (seed:index) where one frame
shows it, or a hand-made equivalent.
"""
from __future__ import annotations

import asyncio
import gc

import structlog
from structlog.testing import capture_logs

from handler_harness import make_broker  # noqa: F401
from kafkette.controller.raft import transport
from kafkette.controller.raft.transport import ControllerServer
from kafkette.protocol.messages import DescribeQuorumResponse


def _frame(api_key: int, version: int, corr: int, body: bytes) -> bytes:
    import struct
    data = struct.pack(">hhih", api_key, version, corr, 0) + body
    return struct.pack(">i", len(data)) + data


def test_controller_listener_pipelined_bad_frames_raise_no_unretrieved_task_errors():
    """Finding 1 (seed 1): two bad frames pipelined on one controller connection. The
    writer loop stopped at the first failure and nobody awaited the second request's
    task, so asyncio logged "Task exception was never retrieved" at error level, with a
    traceback, once per such frame."""
    async def main():
        server = ControllerServer("127.0.0.1", 0)
        server.register(55, 0, 2, lambda req, v, h: DescribeQuorumResponse(error_code=0, topics=[],
                                                                            nodes=[]))
        await server.start()
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx["message"]))
        try:
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            # api 84 is not served here; DescribeQuorum v2 with a truncated body.
            w.write(_frame(84, 0, 1, b"") + _frame(55, 2, 2, b"\x00") + _frame(84, 0, 3, b""))
            await w.drain()
            assert await asyncio.wait_for(r.read(), 5) == b""   # closed, no answer
            w.close()
            for _ in range(3):
                await asyncio.sleep(0)
            gc.collect()   # "never retrieved" is reported when the task is collected
            await asyncio.sleep(0)
        finally:
            await server.close()
        assert errors == []

    asyncio.run(main())


def test_controller_listener_logs_a_failing_handler_as_an_error_with_its_traceback(monkeypatch):
    """A handler that raises something other than ProtocolError is a bug: it is logged
    at error level with the traceback (as the broker's "handler failed"), not as the
    warning a bad frame gets, so that the fuzzer (and an operator) sees it."""
    def broken(req, v, h):
        raise KeyError("boom")

    async def main():
        server = ControllerServer("127.0.0.1", 0)
        server.register(55, 0, 2, broken)
        await server.start()
        try:
            with capture_logs() as logs:
                # The module's logger may be cached from an earlier test: a fresh one.
                monkeypatch.setattr(transport, "log", structlog.get_logger())
                r, w = await asyncio.open_connection("127.0.0.1", server.port)
                # DescribeQuorum v0 (flexible): header tags, no topics, body tags.
                w.write(_frame(55, 0, 1, b"\x00\x01\x00"))
                await w.drain()
                assert await asyncio.wait_for(r.read(), 5) == b""
                w.close()
        finally:
            await server.close()
        failed = [e for e in logs if e["event"] == "controller_listener_handler_failed"]
        assert failed and failed[0]["log_level"] == "error" and failed[0].get("exc_info")
        assert "peer" in failed[0]

    asyncio.run(main())


def test_transactional_produce_with_null_records_is_refused_not_a_handler_crash(make_broker):
    """Finding 2 (seed 20261207 frame 6985): a Produce with a transactional id and a
    partition whose records are null. The refusal (INVALID_RECORD) was recorded, but the
    transaction verification then took len() of None: TypeError, "handler failed", the
    connection closed instead of an answer."""
    from handler_harness import call, create_topic
    from kafkette.errors import ErrorCode
    from kafkette.protocol.messages import ProduceRequest
    broker = make_broker()
    create_topic(broker, "t")
    TD = ProduceRequest.TopicProduceData
    PD = TD.PartitionProduceData
    req = ProduceRequest(transactional_id="fuzz-txn", acks=1, timeout_ms=500, topic_data=[
        TD(name="t", partition_data=[PD(index=0, records=None)])])
    resp = call(broker, req, 9)
    assert resp.responses[0].partition_responses[0].error_code == ErrorCode.INVALID_RECORD


def test_deleting_a_topic_with_a_249_character_name_fits_the_file_system(tmp_path):
    """Finding 3 (seed 101 frames 6067-6069): CreateTopics then DeleteTopics of a topic
    named with 249 characters, the most Kafka allows. The directory was renamed to
    `<topic>-<partition>.<uuid>-delete`, 290 bytes: ENAMETOOLONG out of the metadata
    listener, "handler failed". Kafka caps the topic part so the name fits in 255."""
    from kafkette.log.log_manager import LogManager
    lm = LogManager(str(tmp_path))
    name = "x" * 249
    lm.create(name, 0)
    assert lm.delete(name, 0)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("x")] == []
    lm.close_all()


def test_an_error_message_quoting_a_huge_name_still_fits_the_response(make_broker):
    """Finding 4 (seed 102 frame 18600): CreatePartitions v0 for a topic named with
    32767 bytes. The error message quoted the name and no longer fitted the int16-length
    error_message: struct.error in the encoder, "handler failed", no answer."""
    from handler_harness import call
    from kafkette.errors import ErrorCode
    from kafkette.protocol.messages import CreatePartitionsRequest
    broker = make_broker()
    T = CreatePartitionsRequest.CreatePartitionsTopic
    name = "z" * 32767
    resp = call(broker, CreatePartitionsRequest(topics=[T(name=name, count=2, assignments=None)],
                                                timeout_ms=100, validate_only=False), 0)
    (r,) = resp.results
    assert r.name == name and r.error_code != ErrorCode.NONE
    assert len(r.error_message) < 1100


def test_elect_leaders_for_a_huge_unknown_topic_is_answered(make_broker):
    """Finding 5 (seed 103 frame 15632): the same with ElectLeaders v0, whose
    per-partition message ("No such topic as ...") is built by the controller, not by a
    KafkaError: the generated writers now write every error_message through
    Writer.message, which cuts it."""
    from handler_harness import call
    from kafkette.errors import ErrorCode
    from kafkette.protocol.messages import ElectLeadersRequest
    broker = make_broker()
    T = ElectLeadersRequest.TopicPartitions
    name = "z" * 32767
    resp = call(broker, ElectLeadersRequest(election_type=0, topic_partitions=[
        T(topic=name, partitions=[0])], timeout_ms=100), 0)
    (r,) = resp.replica_election_results
    (p,) = r.partition_result
    assert p.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert p.error_message.startswith("No such topic as zzz") and len(p.error_message) < 1100


def test_creating_excessively_many_partitions_at_once_is_a_policy_violation(make_broker):
    """Finding 6 (seed 104, about frame 40050): CreatePartitions to 100,000 partitions
    (the old bound) opened 100,000 logs in the event loop: every connection stalled for
    more than 10 s. KRaft refuses more than 10,000 new partitions in one operation."""
    import time
    from handler_harness import call, create_topic
    from kafkette.errors import ErrorCode
    from kafkette.protocol.messages import CreatePartitionsRequest, CreateTopicsRequest
    broker = make_broker()
    create_topic(broker, "t")
    T = CreatePartitionsRequest.CreatePartitionsTopic
    t0 = time.monotonic()
    resp = call(broker, CreatePartitionsRequest(topics=[T(name="t", count=100_000, assignments=None)],
                                                timeout_ms=1000, validate_only=False), 3)
    assert resp.results[0].error_code == ErrorCode.POLICY_VIOLATION
    CT = CreateTopicsRequest.CreatableTopic
    resp = call(broker, CreateTopicsRequest(topics=[CT(name="big", num_partitions=10_001,
                                                       replication_factor=1, assignments=[],
                                                       configs=[])], timeout_ms=1000), 7)
    assert resp.topics[0].error_code == ErrorCode.POLICY_VIOLATION
    assert time.monotonic() - t0 < 5
    assert "big" not in broker.image.topics
    assert len(broker.image.topics["t"].partitions) == 1
