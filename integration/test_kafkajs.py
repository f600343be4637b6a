"""kafkajs 2.2.4 (Node.js, pure JavaScript) as a live client of a real kafkette process.

kafkajs negotiates its own, older set of API versions (Produce v7, Fetch v11,
Metadata v6, JoinGroup v5, ListOffsets v3, CreateTopics v3, ...), writes its own
RecordBatch encoder (gzip only without plugins), and runs its own group protocol
implementation, so it fails in different places from kafka-python and librdkafka when
the broker deviates.

The Node side is integration/kafkajs/client.js: one JSON command on the first line of
stdin, one JSON result on the last line of stdout (kafkajs's logs go to stderr). Every
result carries the API versions kafkajs used, taken from its instrumentation REQUEST
events. The module skips when Node.js or integration/kafkajs/node_modules/kafkajs
(`make test` runs `npm ci --prefix integration/kafkajs`) is missing.
"""
from __future__ import annotations

import base64
import json
import os
import selectors
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from it_clients import consumer, create_topic, producer, read_all
from itutil import unique_topic, wait_until

KJS_DIR = Path(__file__).resolve().parent / "kafkajs"
CLIENT_JS = KJS_DIR / "client.js"
NODE = shutil.which("node")

if NODE is None:
    pytest.skip("node (Node.js) is not installed: the kafkajs tests need it",
                allow_module_level=True)
if not (KJS_DIR / "node_modules" / "kafkajs" / "package.json").exists():
    pytest.skip("kafkajs is not installed: run `npm ci --prefix integration/kafkajs`",
                allow_module_level=True)

pytestmark = pytest.mark.timeout(120)

NODE_TIMEOUT = 90.0          # seconds for one client.js run (its own waits are 30 s)
WAIT_MS = 30000              # client.js's waits for records / a stable group
TOPIC_RESOURCE = 2           # kafkajs ConfigResourceTypes.TOPIC

# kafkajs 2.x warns on stderr that its default partitioner changed in 2.0.0
NODE_ENV = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")

# (api, versions) kafkajs used over the whole module, printed at the end
USED_VERSIONS: dict[str, set[int]] = defaultdict(set)


@pytest.fixture(scope="module")
def broker_config():
    # A first JoinGroup otherwise waits group.initial.rebalance.delay.ms (3 s) for more
    # members; the group test needs its two members to settle quickly.
    # log.cleaner.backoff.ms: the cleaner looks for work every 200 ms (compaction test)
    return {"group.initial.rebalance.delay.ms": 0, "log.cleaner.backoff.ms": 200}


def run_js(broker, cmd: dict, timeout: float = NODE_TIMEOUT) -> dict:
    """Run client.js with `cmd` against `broker`; return its JSON result."""
    payload = json.dumps({"brokers": [broker.bootstrap], **cmd})
    try:
        proc = subprocess.run([NODE, str(CLIENT_JS)], input=payload, capture_output=True,
                              text=True, timeout=timeout, cwd=str(KJS_DIR), env=NODE_ENV)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"client.js {cmd['cmd']} did not finish within {timeout}s\n"
                             f"stderr: {(e.stderr or '')[-3000:]}") from None
    assert proc.returncode == 0, (f"client.js {cmd['cmd']} exited {proc.returncode}\n"
                                  f"stderr: {proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines, f"client.js {cmd['cmd']} printed nothing\nstderr: {proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    result["stderr"] = proc.stderr      # kafkajs's WARN/ERROR log lines
    for api, vs in result["versions"].items():
        USED_VERSIONS[api].update(vs)
    return result


def admin_ops(broker, *ops, continue_on_error: bool = False) -> list:
    """Run admin ops [(name, [positional args...] or {one options object}), ...] in one
    admin client, in order; return their results."""
    res = run_js(broker, {"cmd": "admin", "continueOnError": continue_on_error,
                          "ops": [{"op": op, "args": args if isinstance(args, list) else [args]}
                                  for op, args in ops]})
    return res["results"]


def admin_ok(broker, *ops) -> list:
    results = admin_ops(broker, *ops)
    assert all(r["ok"] for r in results) and len(results) == len(ops), results
    return [r["result"] for r in results]


def by_partition(records) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for r in records:
        out[r["partition"]].append(r)
    return out


# --------------------------------------------------------------------------- round trip

BINARY = bytes(range(256)) * 3


def _messages(partitions: int, per_partition: int, base_ts: int) -> list[dict]:
    """Messages with every shape a record can take: keys and values of text and raw
    bytes, a null and an empty key, a null value (tombstone), an empty value,
    no/one/repeated header keys, explicit CreateTime timestamps."""
    out = []
    for p in range(partitions):
        for i in range(per_partition):
            m: dict = {"partition": p, "timestamp": base_ts + p * 1000 + i,
                       "key": f"key-{p}-{i}", "value": f"välue-{p}-{i}-✓"}
            kind = i % 6
            if kind == 1:
                m["key"] = None
            elif kind == 2:
                m["value"] = None
            elif kind == 3:
                m["valueB64"] = base64.b64encode(BINARY + bytes([p, i])).decode()
                del m["value"]
            elif kind == 4:
                m["value"] = ""
                m["headers"] = {"h1": f"one-{i}", "trace": ["a", "b", "c"], "empty": ""}
            elif kind == 5:
                m["key"] = ""                      # empty, not null
                m["headers"] = {"only": f"hdr-{p}-{i}"}
            out.append(m)
    return out


def _expected_value_b64(m: dict) -> str | None:
    if "valueB64" in m:
        return m["valueB64"]
    return None if m["value"] is None else base64.b64encode(m["value"].encode()).decode()


def _check_records(sent: list[dict], got: list[dict], partitions: int, per_partition: int,
                   base_offset: int = 0):
    parts = by_partition(got)
    assert sorted(parts) == list(range(partitions)), sorted(parts)
    keyed = {(m["partition"], i): m for p in range(partitions)
             for i, m in enumerate(x for x in sent if x["partition"] == p)}
    for p in range(partitions):
        offsets = [r["offset"] for r in parts[p]]
        # every record exactly once, in offset order, at the offsets the produce got
        assert offsets == list(range(base_offset, base_offset + per_partition)), (p, offsets)
        for r in parts[p]:
            m = keyed[(p, r["offset"] - base_offset)]
            assert r["key"] == m["key"], (r, m)
            assert r["valueB64"] == _expected_value_b64(m), (r["offset"], r["valueB64"], m)
            assert r["timestamp"] == m["timestamp"], (r, m)
            assert r["headers"] == m.get("headers", {}), (r, m)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_round_trip_all_record_shapes(broker, compression):
    t = unique_topic(f"kjs-rt-{compression}")
    create_topic(broker.bootstrap, t, partitions=3)
    base_ts = int(time.time() * 1000) - 3_600_000      # an hour ago: CreateTime is kept
    sent = _messages(3, 12, base_ts)
    res = run_js(broker, {"cmd": "produce", "topic": t, "messages": sent,
                          "compression": compression})
    # one send: one batch per partition, each at base offset 0
    assert sorted((r["partition"], r["errorCode"], r["baseOffset"]) for r in res["results"]) \
        == [(0, 0, "0"), (1, 0, "0"), (2, 0, "0")], res["results"]
    assert res["kafkajsVersion"] == "2.2.4"

    # a second send, one request per message: offsets continue after the first batch
    more = [{"partition": p, "key": f"more-{p}", "value": f"more-{p}",
             "timestamp": base_ts + 50_000 + p} for p in range(3)]
    res2 = run_js(broker, {"cmd": "produce", "topic": t, "messages": more,
                           "compression": compression, "perMessage": True})
    assert sorted((r["partition"], r["baseOffset"]) for r in res2["results"]) \
        == [(0, "12"), (1, "12"), (2, "12")], res2["results"]

    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": unique_topic("kjs-g"),
                          "count": 39, "timeoutMs": WAIT_MS})
    assert not got["timedOut"], f"read {len(got['records'])} of 39"
    assert len(got["records"]) == 39, Counter(r["partition"] for r in got["records"])
    _check_records(sent + more, got["records"], partitions=3, per_partition=13)
    # the consumer committed the next offset of every partition
    assert got["committed"] == {"0": 13, "1": 13, "2": 13}, got["committed"]
    assert got["versions"]["Fetch"] == [11], got["versions"]
    assert res["versions"]["Produce"] == [7], res["versions"]


def test_idempotent_producer(broker):
    t = unique_topic("kjs-idem")
    create_topic(broker.bootstrap, t, partitions=2)
    msgs = [{"partition": i % 2, "key": f"k{i}", "value": f"idem-{i}"} for i in range(20)]
    # one request per message: the sequence numbers of one producer id advance by one
    # per batch on each partition, and the broker must accept every next one
    res = run_js(broker, {"cmd": "produce", "topic": t, "messages": msgs,
                          "idempotent": True, "perMessage": True})
    assert "InitProducerId" in res["versions"], res["versions"]
    per_part = defaultdict(list)
    for r in res["results"]:
        assert r["errorCode"] == 0, r
        per_part[r["partition"]].append(int(r["baseOffset"]))
    assert per_part == {0: list(range(10)), 1: list(range(10))}, per_part

    # then a multi-record batch from a new idempotent producer (a new producer id)
    batch = [{"partition": 0, "key": f"b{i}", "value": f"batch-{i}"} for i in range(5)]
    res = run_js(broker, {"cmd": "produce", "topic": t, "messages": batch,
                          "idempotent": True, "compression": "gzip"})
    assert [(r["partition"], r["baseOffset"]) for r in res["results"]] == [(0, "10")]

    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": unique_topic("kjs-g"),
                          "count": 25, "timeoutMs": WAIT_MS})
    parts = by_partition(got["records"])
    assert [(r["offset"], r["value"]) for r in parts[0]] == \
        [(i, f"idem-{2 * i}") for i in range(10)] + [(10 + i, f"batch-{i}") for i in range(5)]
    assert [(r["offset"], r["value"]) for r in parts[1]] == \
        [(i, f"idem-{2 * i + 1}") for i in range(10)]


# --------------------------------------------------------------------------- groups

def test_group_two_members_then_resume_at_commit(broker):
    t, g = unique_topic("kjs-grp"), unique_topic("kjs-grp")
    create_topic(broker.bootstrap, t, partitions=4)
    res = run_js(broker, {"cmd": "group", "topic": t, "groupId": g, "partitions": 4,
                          "perPartition": 5, "timeoutMs": WAIT_MS})
    stable = res["stable"]
    assert stable["protocolType"] == "consumer" and stable["protocol"] == "RoundRobinAssigner", \
        stable
    assigned = {m: set(ps) for m, ps in stable["byMember"].items()}
    a, b = (assigned[m["memberId"]] for m in res["members"])
    assert a and b and not a & b and a | b == {0, 1, 2, 3}, assigned
    # the first member joined twice (alone, then in the rebalance for the second one)
    assert res["members"][0]["joins"] >= 2, res["members"]

    for m in res["members"]:
        mine = assigned[m["memberId"]]
        parts = by_partition(m["records"])
        # records were produced after the group was stable: each member read exactly
        # its own partitions, each record once, in order
        assert set(parts) == mine, (m["name"], sorted(parts), mine)
        for p, recs in parts.items():
            assert [(r["offset"], r["key"], r["value"]) for r in recs] == \
                [(i, f"k-{p}-{i}", f"v-{p}-{i}") for i in range(5)], (p, recs)

    [committed] = res["committed"]
    assert committed["topic"] == t
    assert sorted((p["partition"], p["offset"]) for p in committed["partitions"]) == \
        [(p, "5") for p in range(4)], committed

    # a new member of the same group resumes at the committed offsets
    more = [{"partition": p, "key": f"k-{p}-{i}", "value": f"v-{p}-{i}"}
            for p in range(4) for i in range(5, 8)]
    run_js(broker, {"cmd": "produce", "topic": t, "messages": more})
    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": g, "count": 12,
                          "fromBeginning": True, "timeoutMs": WAIT_MS})
    assert not got["timedOut"], got["records"]
    parts = by_partition(got["records"])
    for p in range(4):
        assert [(r["offset"], r["value"]) for r in parts[p]] == \
            [(i, f"v-{p}-{i}") for i in range(5, 8)], (p, parts[p])
    assert got["committed"] == {str(p): 8 for p in range(4)}
    assert {"JoinGroup", "SyncGroup", "Heartbeat", "OffsetCommit", "OffsetFetch",
            "GroupCoordinator"} <= set(res["versions"]), res["versions"]


# --------------------------------------------------------------------------- admin

def test_admin_topics(broker):
    t = unique_topic("kjs-adm")
    created, again, topics, meta, configs = admin_ok(
        broker,
        ("createTopics", {"topics": [{"topic": t, "numPartitions": 3, "replicationFactor": 1,
                                      "configEntries": [
                                          {"name": "retention.ms", "value": "7200000"},
                                          {"name": "cleanup.policy", "value": "compact"}]}],
                          "timeout": 15000}),
        # kafkajs turns TOPIC_ALREADY_EXISTS into `false`
        ("createTopics", {"topics": [{"topic": t, "numPartitions": 3}], "timeout": 15000}),
        ("listTopics", []),
        ("fetchTopicMetadata", {"topics": [t]}),
        ("describeConfigs", {"includeSynonyms": False, "resources": [
            {"type": TOPIC_RESOURCE, "name": t,
             "configNames": ["retention.ms", "cleanup.policy", "segment.bytes"]}]}))
    assert created is True and again is False, (created, again)
    assert t in topics
    [tm] = meta["topics"]
    assert tm["name"] == t
    assert sorted(p["partitionId"] for p in tm["partitions"]) == [0, 1, 2]
    assert all(p["partitionErrorCode"] == 0 and p["leader"] >= 0 and p["isr"] == [p["leader"]]
               for p in tm["partitions"]), tm["partitions"]

    [resource] = configs["resources"]
    assert resource["errorCode"] == 0 and resource["resourceName"] == t, resource
    entries = {e["configName"]: e for e in resource["configEntries"]}
    assert set(entries) == {"retention.ms", "cleanup.policy", "segment.bytes"}, entries
    assert entries["retention.ms"]["configValue"] == "7200000"
    assert entries["cleanup.policy"]["configValue"] == "compact"
    assert entries["retention.ms"]["isDefault"] is False
    assert entries["segment.bytes"]["isDefault"] is True, entries["segment.bytes"]

    # grow it, then delete it
    [grown, meta2] = admin_ok(
        broker,
        ("createPartitions", {"topicPartitions": [{"topic": t, "count": 5}]}),
        ("fetchTopicMetadata", {"topics": [t]}))
    assert grown is None       # kafkajs resolves with nothing; errors would throw
    assert sorted(p["partitionId"] for p in meta2["topics"][0]["partitions"]) == list(range(5))

    [deleted] = admin_ok(broker, ("deleteTopics", {"topics": [t], "timeout": 15000}))
    assert deleted is None
    wait_until(lambda: t not in admin_ok(broker, ("listTopics", []))[0], timeout=30,
               interval=0.2, message=f"{t} to disappear from listTopics")


def test_admin_groups_and_offsets(broker):
    t, g = unique_topic("kjs-adg"), unique_topic("kjs-adg")
    create_topic(broker.bootstrap, t, partitions=2)
    run_js(broker, {"cmd": "produce", "topic": t, "messages":
                    [{"partition": p, "value": f"x{p}{i}"} for p in range(2) for i in range(4)]})
    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": g, "count": 8,
                          "timeoutMs": WAIT_MS})
    assert got["committed"] == {"0": 4, "1": 4}, got
    [(join)] = got["joins"][-1:]
    assert join["isLeader"] and join["assignment"] == {t: [0, 1]}, got["joins"]

    groups, described, offsets, offsets_all = admin_ok(
        broker,
        ("listGroups", []),
        ("describeGroups", [[g]]),
        ("fetchOffsets", {"groupId": g, "topics": [t]}),
        ("fetchOffsets", {"groupId": g}))
    mine = [x for x in groups["groups"] if x["groupId"] == g]
    assert mine == [{"groupId": g, "protocolType": "consumer"}], mine
    [dg] = described["groups"]
    # the consumer left on disconnect (LeaveGroup): the group is Empty, offsets remain
    assert dg["groupId"] == g and dg["errorCode"] == 0 and dg["state"] == "Empty", dg
    assert dg["members"] == [], dg
    assert [(o["topic"], sorted((p["partition"], p["offset"]) for p in o["partitions"]))
            for o in offsets] == [(t, [(0, "4"), (1, "4")])], offsets
    # no topic filter: OffsetFetch for all topics of the group
    assert [(o["topic"], sorted((p["partition"], p["offset"]) for p in o["partitions"]))
            for o in offsets_all] == [(t, [(0, "4"), (1, "4")])], offsets_all

    [deleted, after] = admin_ok(broker, ("deleteGroups", [[g]]), ("listGroups", []))
    assert deleted == [{"groupId": g, "errorCode": 0}], deleted
    assert g not in {x["groupId"] for x in after["groups"]}


def test_admin_refusals_are_kafka_errors(broker):
    """Bad CreateTopics requests get the per-topic error codes Kafka uses, which kafkajs
    maps to its error types; the connection and the broker stay up."""
    good, bad_name, bad_parts, bad_conf = unique_topic("kjs-ok"), "kjs bad/name", \
        unique_topic("kjs-np"), unique_topic("kjs-cf")
    results = admin_ops(
        broker,
        ("createTopics", {"topics": [{"topic": bad_name, "numPartitions": 1}]}),
        ("createTopics", {"topics": [{"topic": bad_parts, "numPartitions": -5}]}),
        ("createTopics", {"topics": [{"topic": bad_conf, "numPartitions": 1, "configEntries": [
            {"name": "cleanup.policy", "value": "shred"}]}]}),
        ("createTopics", {"topics": [{"topic": good, "numPartitions": 1}]}),
        ("listTopics", []),
        continue_on_error=True)
    # kafkajs wraps the per-topic errors of CreateTopics in a KafkaJSAggregateError
    assert [(r["ok"], r["type"], [e["type"] for e in r["errors"]]) for r in results[:3]] == [
        (False, "KafkaJSAggregateError", ["INVALID_TOPIC_EXCEPTION"]),
        (False, "KafkaJSAggregateError", ["INVALID_PARTITIONS"]),
        (False, "KafkaJSAggregateError", ["INVALID_CONFIG"]),
    ], results[:3]
    assert results[3] == {"op": "createTopics", "ok": True, "result": True}, results[3]
    names = set(results[4]["result"])
    assert good in names and not {bad_name, bad_parts, bad_conf} & names, results[4]


def test_produce_too_large_is_refused(broker):
    t = unique_topic("kjs-2big")
    create_topic(broker.bootstrap, t, partitions=1, configs={"max.message.bytes": "10000"})
    res = run_js(broker, {"cmd": "produce", "topic": t, "expectError": True, "retries": 0,
                          "messages": [{"partition": 0, "value": "z" * 50_000}]})
    assert res["error"]["type"] == "MESSAGE_TOO_LARGE", res["error"]
    # the partition still takes records that fit
    res = run_js(broker, {"cmd": "produce", "topic": t,
                          "messages": [{"partition": 0, "value": "fits"}]})
    assert [(r["partition"], r["baseOffset"]) for r in res["results"]] == [(0, "0")]


def test_delete_and_recreate_topic_starts_empty(broker):
    """A topic deleted and created again under the same name is a new topic: offsets
    start at 0 and none of the old records come back (kafkajs caches metadata, so it
    also sees the new topic id / partition count)."""
    t = unique_topic("kjs-recreate")
    create_topic(broker.bootstrap, t, partitions=2)
    run_js(broker, {"cmd": "produce", "topic": t, "messages":
                    [{"partition": p, "value": f"old{p}{i}"} for p in range(2) for i in range(5)]})
    admin_ok(broker, ("deleteTopics", {"topics": [t], "timeout": 15000}))

    def recreate():
        [r] = admin_ops(broker, ("createTopics", {"topics": [{"topic": t, "numPartitions": 3}],
                                                  "timeout": 15000}), continue_on_error=True)
        return r["ok"] and r["result"] is True
    wait_until(recreate, timeout=30, interval=0.2, message=f"{t} to be created again")
    [ends] = admin_ok(broker, ("fetchTopicOffsets", [t]))
    assert sorted((r["partition"], r["low"], r["high"]) for r in ends) == \
        [(p, "0", "0") for p in range(3)], ends
    res = run_js(broker, {"cmd": "produce", "topic": t, "messages":
                          [{"partition": p, "value": f"new{p}"} for p in range(3)]})
    assert sorted((r["partition"], r["baseOffset"]) for r in res["results"]) == \
        [(p, "0") for p in range(3)], res
    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": unique_topic("kjs-g"),
                          "count": 3, "timeoutMs": WAIT_MS})
    assert sorted((r["partition"], r["offset"], r["value"]) for r in got["records"]) == \
        [(p, 0, f"new{p}") for p in range(3)], got["records"]


def test_session_timeout_below_broker_minimum_is_refused(broker):
    """JoinGroup with session_timeout_ms below group.min.session.timeout.ms (6 s by
    default, as in Kafka) gets INVALID_SESSION_TIMEOUT, which kafkajs reports as a
    non-retriable crash of its consumer."""
    t = unique_topic("kjs-sess")
    create_topic(broker.bootstrap, t, partitions=1)
    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": unique_topic("kjs-sess"),
                          "count": 1, "sessionTimeout": 1500, "stopOnCrash": True,
                          "commit": False, "timeoutMs": WAIT_MS})
    assert got["crash"] is not None and got["crash"]["type"] == "INVALID_SESSION_TIMEOUT", got
    assert got["joins"] == [] and got["records"] == [], got


# --------------------------------------------------------------------------- offsets by time

def test_list_offsets_by_timestamp(broker):
    t = unique_topic("kjs-ts")
    create_topic(broker.bootstrap, t, partitions=2)
    base = int(time.time() * 1000) - 600_000
    # partition 0: 10 records, one per batch (time index entries per batch), 1 s apart;
    # partition 1: one gzip batch of 10 records with rising timestamps
    msgs0 = [{"partition": 0, "value": f"p0-{i}", "timestamp": base + i * 1000} for i in range(10)]
    msgs1 = [{"partition": 1, "value": f"p1-{i}", "timestamp": base + i * 1000} for i in range(10)]
    run_js(broker, {"cmd": "produce", "topic": t, "messages": msgs0, "perMessage": True})
    run_js(broker, {"cmd": "produce", "topic": t, "messages": msgs1, "compression": "gzip"})
    at_5, at_5_5, before_all, after_all, ends = admin_ok(
        broker,
        ("fetchTopicOffsetsByTimestamp", [t, base + 5000]),
        ("fetchTopicOffsetsByTimestamp", [t, base + 5500]),
        ("fetchTopicOffsetsByTimestamp", [t, base - 1]),
        ("fetchTopicOffsetsByTimestamp", [t, base + 60_000]),
        ("fetchTopicOffsets", [t]))
    off = lambda rs: sorted((r["partition"], r["offset"]) for r in rs)  # noqa: E731
    # the first offset whose timestamp is >= the target; inside one batch the broker
    # answers the offset of the record (Kafka scans the batch's records)
    assert off(at_5) == [(0, "5"), (1, "5")], at_5
    assert off(at_5_5) == [(0, "6"), (1, "6")], at_5_5
    assert off(before_all) == [(0, "0"), (1, "0")], before_all
    # nothing that late: the broker answers -1 and kafkajs substitutes the high watermark
    assert off(after_all) == [(0, "10"), (1, "10")], after_all
    assert sorted((r["partition"], r["low"], r["high"], r["offset"]) for r in ends) == \
        [(0, "0", "10", "10"), (1, "0", "10", "10")], ends
    assert USED_VERSIONS["ListOffsets"], USED_VERSIONS


# --------------------------------------------------------------------------- fetch long poll

def test_fetch_long_poll_waits_and_wakes_on_produce(broker):
    t = unique_topic("kjs-lp")
    create_topic(broker.bootstrap, t, partitions=1)
    max_wait = 2000
    res = run_js(broker, {"cmd": "longpoll", "topic": t, "groupId": unique_topic("kjs-lp"),
                          "maxWaitTimeInMs": max_wait, "timeoutMs": WAIT_MS})
    assert res["value"] == "wake-up"
    # the broker held the empty Fetch for (about) max_wait_ms instead of answering at
    # once, which would make kafkajs spin...
    assert res["emptyFetchMs"] >= 0.75 * max_wait, res
    # ...and a Produce released the waiting Fetch well before its max wait ran out
    assert res["latencyMs"] < max_wait * 0.6, res
    print(f"\n[kafkajs] empty fetch held {res['emptyFetchMs']} ms, "
          f"produce->consume {res['latencyMs']} ms")


# --------------------------------------------------------------------------- produce acks

@pytest.mark.parametrize("acks", [0, 1])
def test_produce_acks_0_and_1(broker, acks):
    """acks=0: kafkajs expects no response at all (a broker that answered would hand it
    a response for a correlation id it never waits for). acks=1: leader-only ack."""
    t = unique_topic(f"kjs-acks{acks}")
    create_topic(broker.bootstrap, t, partitions=1)
    msgs = [{"partition": 0, "key": f"k{i}", "value": f"acks{acks}-{i}"} for i in range(6)]
    res = run_js(broker, {"cmd": "produce", "topic": t, "messages": msgs, "acks": acks,
                          "perMessage": True})
    if acks == 1:
        assert [r["baseOffset"] for r in res["results"]] == [str(i) for i in range(6)], res
    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": unique_topic("kjs-g"),
                          "count": 6, "timeoutMs": WAIT_MS})
    assert [(r["offset"], r["key"], r["value"]) for r in got["records"]] == \
        [(i, f"k{i}", f"acks{acks}-{i}") for i in range(6)], got["records"]


# --------------------------------------------------------------------------- fetch sizes

def test_record_larger_than_fetch_max_bytes(broker):
    """KIP-74: the first batch is returned even when it is larger than the partition's
    (and the request's) max bytes, or a consumer with small limits would never advance.
    kafkajs asks for 1 KiB here; every batch is ~20 KiB."""
    t = unique_topic("kjs-big")
    create_topic(broker.bootstrap, t, partitions=1)
    big = [{"partition": 0, "key": f"big{i}", "value": chr(ord("a") + i) * 20_000}
           for i in range(4)]
    run_js(broker, {"cmd": "produce", "topic": t, "messages": big, "perMessage": True})
    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": unique_topic("kjs-g"),
                          "count": 4, "timeoutMs": WAIT_MS, "maxBytesPerPartition": 1024,
                          "maxBytes": 1024})
    assert not got["timedOut"], f"read {len(got['records'])} of 4 with max bytes 1 KiB"
    assert [(r["offset"], r["key"], r["value"]) for r in got["records"]] == \
        [(i, m["key"], m["value"]) for i, m in enumerate(big)]


def test_many_batches_with_small_fetch_limits(broker):
    """A partition of 150 one-record batches read with 1 KiB per-partition and 2 KiB
    total fetch limits: every Fetch returns a few whole batches (kafkajs skips a
    truncated trailing one), and the consumer advances through all of them in order."""
    t = unique_topic("kjs-small")
    create_topic(broker.bootstrap, t, partitions=2)
    msgs = [{"partition": i % 2, "key": f"k{i}", "value": f"{i:04d}" + "x" * 250}
            for i in range(150)]
    run_js(broker, {"cmd": "produce", "topic": t, "messages": msgs, "perMessage": True})
    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": unique_topic("kjs-g"),
                          "count": 150, "timeoutMs": WAIT_MS, "maxBytesPerPartition": 1024,
                          "maxBytes": 2048})
    assert not got["timedOut"], f"read {len(got['records'])} of 150"
    parts = by_partition(got["records"])
    for p in range(2):
        assert [(r["offset"], r["key"]) for r in parts[p]] == \
            [(j, f"k{2 * j + p}") for j in range(75)], p


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_log_append_time_topic(broker, compression):
    """message.timestamp.type=LogAppendTime: the broker stamps the batch's max timestamp
    with its clock and sets attribute bit 3 (re-computing the CRC), and the Produce
    response carries log_append_time_ms. kafkajs gives every record of such a batch the
    batch's max timestamp."""
    t = unique_topic(f"kjs-lat-{compression}")
    create_topic(broker.bootstrap, t, partitions=1,
                 configs={"message.timestamp.type": "LogAppendTime"})
    old = int(time.time() * 1000) - 86_400_000          # a day ago, as CreateTime
    before = int(time.time() * 1000)
    res = run_js(broker, {"cmd": "produce", "topic": t, "compression": compression,
                          "messages": [{"partition": 0, "value": f"lat{i}", "timestamp": old + i}
                                       for i in range(3)]})
    after = int(time.time() * 1000)
    [r] = res["results"]
    append_time = int(r["logAppendTime"])
    assert before - 1000 <= append_time <= after + 1000, (before, r, after)
    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": unique_topic("kjs-g"),
                          "count": 3, "timeoutMs": WAIT_MS})
    assert [(x["offset"], x["value"], x["timestamp"]) for x in got["records"]] == \
        [(i, f"lat{i}", append_time) for i in range(3)], (append_time, got["records"])


# --------------------------------------------------------------------------- offsets admin

def test_set_offsets_inside_a_batch_then_resume(broker):
    """admin.setOffsets commits for an empty group from a paused consumer of its own
    (it holds the admin for one fetch wait, ~5 s, client-side). Partition 0 gets an
    offset inside a batch: the broker returns the whole batch and kafkajs drops the
    records before its offset. Partition 1 gets -2, what kafkajs's resetOffsets(earliest)
    commits: Kafka stores a committed offset as sent and OffsetFetch returns it, and a
    kafkajs consumer treats a negative committed offset as "none" and falls back to
    fromBeginning."""
    t, g = unique_topic("kjs-seek"), unique_topic("kjs-seek")
    create_topic(broker.bootstrap, t, partitions=2)
    msgs = [{"partition": p, "value": f"s{p}-{i}"} for p in range(2) for i in range(10)]
    run_js(broker, {"cmd": "produce", "topic": t, "messages": msgs,   # one batch each
                    "compression": "gzip"})
    [set_res, fetched] = admin_ok(
        broker,
        ("setOffsets", {"groupId": g, "topic": t,
                        "partitions": [{"partition": 0, "offset": "3"},
                                       {"partition": 1, "offset": "-2"}]}),
        ("fetchOffsets", {"groupId": g, "topics": [t]}))
    assert set_res is None
    assert sorted((p["partition"], p["offset"]) for p in fetched[0]["partitions"]) == \
        [(0, "3"), (1, "-2")], fetched
    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": g, "count": 17,
                          "fromBeginning": True, "timeoutMs": WAIT_MS})
    parts = by_partition(got["records"])
    assert [(r["offset"], r["value"]) for r in parts[0]] == [(i, f"s0-{i}") for i in range(3, 10)]
    assert [(r["offset"], r["value"]) for r in parts[1]] == [(i, f"s1-{i}") for i in range(10)]
    assert got["committed"] == {"0": 10, "1": 10}


def test_delete_records_then_consumer_recovers_from_out_of_range(broker):
    """DeleteRecords moves the log start offset; a group whose committed offset is now
    below it gets OFFSET_OUT_OF_RANGE on Fetch, and kafkajs resets to its default
    offset (earliest, with fromBeginning) and reads exactly the surviving records."""
    t, g = unique_topic("kjs-delrec"), unique_topic("kjs-delrec")
    create_topic(broker.bootstrap, t, partitions=1)
    run_js(broker, {"cmd": "produce", "topic": t, "perMessage": True,
                    "messages": [{"partition": 0, "value": f"d{i}"} for i in range(8)]})
    # commit offset 2 for the group (kafka-python, a commit outside any generation)
    with consumer(broker.bootstrap, group_id=g) as c:
        c.commit({TopicPartition(t, 0): OffsetAndMetadata(2, "", -1)})
    # kafkajs finds the partition leaders from metadata it already has: load it first
    [_, deleted, ends] = admin_ok(
        broker,
        ("fetchTopicMetadata", {"topics": [t]}),
        ("deleteTopicRecords", {"topic": t, "partitions": [{"partition": 0, "offset": "5"}]}),
        ("fetchTopicOffsets", [t]))
    assert deleted is None
    assert [(r["partition"], r["low"], r["high"]) for r in ends] == [(0, "5", "8")], ends
    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": g, "count": 3,
                          "timeoutMs": WAIT_MS})
    assert [(r["offset"], r["value"]) for r in got["records"]] == [(i, f"d{i}") for i in (5, 6, 7)]
    assert got["committed"] == {"0": 8}
    # the reset really came from the broker's OFFSET_OUT_OF_RANGE (kafkajs logs it)
    assert "Offset out of range, resetting to default offset" in got["stderr"], got["stderr"]


def test_alter_configs_then_describe(broker):
    t = unique_topic("kjs-alter")
    create_topic(broker.bootstrap, t, partitions=1, configs={"retention.ms": "100000"})
    [altered, described] = admin_ok(
        broker,
        ("alterConfigs", {"validateOnly": False, "resources": [
            {"type": TOPIC_RESOURCE, "name": t, "configEntries": [
                {"name": "retention.ms", "value": "250000"},
                {"name": "max.message.bytes", "value": "500000"}]}]}),
        ("describeConfigs", {"includeSynonyms": False, "resources": [
            {"type": TOPIC_RESOURCE, "name": t,
             "configNames": ["retention.ms", "max.message.bytes"]}]}))
    assert [(r["errorCode"], r["resourceName"]) for r in altered["resources"]] == [(0, t)], altered
    entries = {e["configName"]: e["configValue"]
               for e in described["resources"][0]["configEntries"]}
    assert entries == {"retention.ms": "250000", "max.message.bytes": "500000"}, entries

    # an invalid value is refused with an error for that resource, not a dropped connection
    [bad] = admin_ops(broker, ("alterConfigs", {"validateOnly": False, "resources": [
        {"type": TOPIC_RESOURCE, "name": t,
         "configEntries": [{"name": "retention.ms", "value": "not-a-number"}]}]}),
        continue_on_error=True)
    assert not bad["ok"] and bad["type"] != "KafkaJSConnectionError", bad


def test_auto_create_topic_on_produce(broker):
    """kafkajs's producer sends Metadata v6 with allow_auto_topic_creation=true; with the
    broker's auto.create.topics.enable (default true, as in Kafka) the topic appears with
    num.partitions partitions and the send succeeds."""
    t = unique_topic("kjs-auto")
    res = run_js(broker, {"cmd": "produce", "topic": t, "allowAutoTopicCreation": True,
                          "messages": [{"key": "k", "value": "auto"}]})
    assert [(r["topicName"], r["partition"], r["baseOffset"]) for r in res["results"]] == \
        [(t, 0, "0")], res
    [meta] = admin_ok(broker, ("fetchTopicMetadata", {"topics": [t]}))
    assert [p["partitionId"] for p in meta["topics"][0]["partitions"]] == [0]


# --------------------------------------------------------------------------- restart

def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    """One line of the child's stdout, or AssertionError after `timeout` seconds."""
    ready = selectors.DefaultSelector()
    ready.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not ready.select(timeout):
            raise AssertionError(f"no line from client.js within {timeout}s")
        return proc.stdout.readline()
    finally:
        ready.close()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_idempotent_producer_continues_across_broker_restart(fresh_broker, how):
    """One kafkajs idempotent producer (one producer id) sends, the broker restarts
    (SIGTERM, or SIGKILL: then without a clean shutdown's snapshots), and the same
    producer goes on with its next sequence numbers. Kafka rebuilds each producer's
    last sequence from its producer snapshots and the log on restart, so it accepts
    them; a broker that forgot them would answer OUT_OF_ORDER_SEQUENCE_NUMBER or
    UNKNOWN_PRODUCER_ID, which kafkajs does not retry."""
    b = fresh_broker
    t = unique_topic("kjs-idem-restart")
    create_topic(b.bootstrap, t, partitions=2)
    first = [{"partition": i % 2, "value": f"before-{i}"} for i in range(6)]
    second = [{"partition": i % 2, "value": f"after-{i}"} for i in range(6)]
    cmd = {"cmd": "produceAcrossRestart", "brokers": [b.bootstrap], "topic": t,
           "first": first, "second": second}
    proc = subprocess.Popen([NODE, str(CLIENT_JS)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(KJS_DIR), env=NODE_ENV)
    try:
        proc.stdin.write(json.dumps(cmd) + "\n")
        proc.stdin.flush()
        line = _read_line(proc, NODE_TIMEOUT)
        assert line, f"client.js ended early: {proc.communicate(timeout=10)}"
        phase = json.loads(line)
        assert phase["phase"] == "first"
        assert sorted((r["partition"], r["baseOffset"]) for r in phase["results"]) == \
            [(p, str(i)) for p in range(2) for i in range(3)], phase
        if how == "sigterm":
            b.restart()
        else:
            b.kill()
            b.start()
        out, err = proc.communicate("go\n", timeout=NODE_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, f"client.js exited {proc.returncode}\nstderr: {err[-3000:]}"
    res = json.loads(out.strip().splitlines()[-1])
    assert sorted((r["partition"], r["baseOffset"]) for r in res["second"]) == \
        [(p, str(i)) for p in range(2) for i in range(3, 6)], res
    got = run_js(b, {"cmd": "consume", "topic": t, "groupId": unique_topic("kjs-g"),
                     "count": 12, "timeoutMs": WAIT_MS})
    parts = by_partition(got["records"])
    for p in range(2):
        assert [(r["offset"], r["value"]) for r in parts[p]] == \
            [(i, f"before-{2 * i + p}") for i in range(3)] + \
            [(3 + i, f"after-{2 * i + p}") for i in range(3)], parts[p]


# --------------------------------------------------------------------------- compaction

@pytest.mark.parametrize("compression", [None, "gzip"])
def test_read_a_compacted_log(broker, compression):
    """A log the cleaner has compacted has offset gaps inside batches and whole batches
    gone; kafkajs must step over them (kafkajs #562/#1072 were consumers stuck on such
    logs) and read exactly what kafka-python reads, record for record."""
    t = unique_topic("kjs-compact")
    create_topic(broker.bootstrap, t, configs={
        "cleanup.policy": "compact", "segment.bytes": "16384", "segment.ms": "100",
        "min.cleanable.dirty.ratio": "0.01"})
    keys = [f"key-{i}".encode() for i in range(5)]
    with producer(broker.bootstrap, compression_type=compression, linger_ms=2,
                  batch_size=4096) as p:
        for i in range(1500):
            p.send(t, key=keys[i % 5], value=f"value-{i}".encode(), partition=0)
        p.flush(30)

        def compacted():
            # a record of another key rolls the active segment (segment.ms), so what
            # was in it becomes cleanable, as in Kafka
            p.send(t, key=b"tick", value=b"t", partition=0)
            p.flush(10)
            recs = read_all(broker.bootstrap, t, [0])[0]
            per_key = Counter(r.key for r in recs)
            return recs if all(per_key[k] <= 2 for k in keys) else None

        wait_until(compacted, timeout=60, interval=0.2,
                   message="the log cleaner to compact the topic")
    # Stop compacting (kafkajs's AlterConfigs replaces the topic's whole config) so that
    # no later cleaning removes records between the two reads; a cleaning already
    # running may still finish, so wait until two reads in a row agree.
    admin_ok(broker, ("alterConfigs", {"validateOnly": False, "resources": [
        {"type": TOPIC_RESOURCE, "name": t,
         "configEntries": [{"name": "cleanup.policy", "value": "delete"}]}]}))
    last: list = [None]

    def settled():
        now = [(r.offset, r.key.decode(), r.value.decode())
               for r in read_all(broker.bootstrap, t, [0])[0]]
        same, last[0] = now == last[0], now
        return now if same else None

    expected = wait_until(settled, timeout=30, interval=0.3,
                          message="the log to stop changing")
    assert expected[-1][0] > 1500 and len(expected) < 300, (len(expected), expected[-1])
    got = run_js(broker, {"cmd": "consume", "topic": t, "groupId": unique_topic("kjs-g"),
                          "count": len(expected), "timeoutMs": WAIT_MS})
    assert not got["timedOut"], f"kafkajs read {len(got['records'])} of {len(expected)}"
    assert [(r["offset"], r["key"], r["value"]) for r in got["records"]] == expected
    assert got["committed"] == {"0": expected[-1][0] + 1}


# --------------------------------------------------------------------------- versions

def test_zz_negotiated_api_versions(broker):
    """Runs last (pytest keeps file order): the versions kafkajs 2.2.4
    picked against kafkette, i.e. min(its highest, kafkette's highest) per API."""
    if not USED_VERSIONS:
        pytest.skip("run with the rest of the module")
    used = {api: sorted(vs) for api, vs in sorted(USED_VERSIONS.items())}
    print(f"\n[kafkajs 2.2.4 API versions] {json.dumps(used)}")
    expected = {"ApiVersions": [2], "Metadata": [6], "Produce": [7], "Fetch": [11],
                "ListOffsets": [3], "GroupCoordinator": [2], "JoinGroup": [5], "SyncGroup": [3],
                "Heartbeat": [3], "OffsetCommit": [5], "OffsetFetch": [4], "LeaveGroup": [3]}
    for api, vs in expected.items():
        if api in used:
            assert used[api] == vs, (api, used[api])


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_transactions_commit_abort_and_isolation(broker, compression):
    """kafkajs's producer.transaction(): committed, aborted and empty transactions over
    two partitions, with sendOffsets in the committed one; its default read_committed
    consumer sees exactly the committed records, a readUncommitted one sees every
    record, and the group's offset is committed by the transaction."""
    t = unique_topic("kjs-txn")
    create_topic(broker.bootstrap, t, partitions=2)
    g = unique_topic("kjs-txn-g")
    committed = [{"partition": i % 2, "value": f"c{i}"} for i in range(10)]
    aborted = [{"partition": i % 2, "value": f"a{i}"} for i in range(10)]
    res = run_js(broker, {"cmd": "transactions", "topic": t,
                          "transactionalId": unique_topic("kjs-txn-id"),
                          # aborted first: a leaked aborted record would be read
                          # before the committed ones
                          "compression": compression,
                          "transactions": [{"messages": aborted, "commit": False,
                                            "sendOffsets": {"groupId": g, "topic": t,
                                                            "partition": 0, "offset": 3}},
                                           {"messages": committed, "commit": True,
                                            "sendOffsets": {"groupId": g, "topic": t,
                                                            "partition": 1, "offset": 4}},
                                           {"messages": [], "commit": True},
                                           {"messages": [], "commit": False}]})
    assert res["done"] == ["aborted", "committed", "committed", "aborted"], res
    rc = run_js(broker, {"cmd": "consume", "topic": t, "groupId": unique_topic("kjs-rc"),
                         "count": 10, "timeoutMs": WAIT_MS, "commit": False})
    assert sorted(r["value"] for r in rc["records"]) == sorted(m["value"] for m in committed)
    ru = run_js(broker, {"cmd": "consume", "topic": t, "groupId": unique_topic("kjs-ru"),
                         "count": 20, "timeoutMs": WAIT_MS, "commit": False,
                         "readUncommitted": True})
    assert sorted(r["value"] for r in ru["records"]) == \
        sorted(m["value"] for m in committed + aborted)
    assert res["versions"].get("EndTxn") and res["versions"].get("TxnOffsetCommit"), \
        res["versions"]
    (offsets,) = admin_ok(broker, ("fetchOffsets", {"groupId": g, "topics": [t]}))
    by_partition = {p["partition"]: p["offset"] for p in offsets[0]["partitions"]}
    # the aborted transaction's offset for partition 0 never became the group's
    assert by_partition == {0: "-1", 1: "4"}, offsets
