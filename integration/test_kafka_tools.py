"""Kafka's command-line tools (kafkette/tools/kafka_*.py: kafka-topics.sh and friends)
against a real broker process, run as CI scripts run them: a subprocess per command,
its stdout, stderr and exit code compared with what Kafka's tools print.

Independent checks come from other clients: confluent-kafka (librdkafka) for topic
ids, kafka-python for the records the console producer wrote and for a live group
member.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from itutil import unique_topic, wait_until

pytestmark = pytest.mark.timeout(180)

PY = sys.executable


@pytest.fixture(scope="module")
def broker_config() -> dict:
    return {"group.initial.rebalance.delay.ms": 0, "num.partitions": 1}


def tool(name: str, *args, input: str | bytes | None = None, timeout: float = 60):
    """Run kafkette.tools.<name> like its console script; text mode unless input is bytes."""
    text = not isinstance(input, bytes)
    return subprocess.run([PY, "-m", f"kafkette.tools.{name}", *args], input=input,
                          capture_output=True, text=text, timeout=timeout)


def ok(r) -> str:
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def topics(broker, *args, **kw):
    return tool("kafka_topics", "--bootstrap-server", broker.bootstrap, *args, **kw)


def groups(broker, *args, **kw):
    return tool("kafka_consumer_groups", "--bootstrap-server", broker.bootstrap, *args, **kw)


def produce(broker, topic, lines: list[str], *args):
    return ok(tool("kafka_console_producer", "--bootstrap-server", broker.bootstrap,
                   "--topic", topic, *args, input="".join(line + "\n" for line in lines)))


def consume(broker, topic, *args):
    return tool("kafka_console_consumer", "--bootstrap-server", broker.bootstrap,
                "--topic", topic, *args)


def kafka_topic_id(broker, topic) -> str:
    """The topic id librdkafka reports, written as Kafka's Uuid.toString writes it:
    librdkafka prints standard base64, Java's Uuid the URL-safe alphabet (- and _)."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    fut = admin.describe_topics(TopicCollection([topic]))[topic]
    return str(fut.result(timeout=30).topic_id).replace("+", "-").replace("/", "_")


# --------------------------------------------------------------------------- kafka-topics.sh

def test_topics_create_describe_alter_delete(broker):
    t = unique_topic("tt")
    assert ok(topics(broker, "--create", "--topic", t, "--partitions", "3",
                     "--replication-factor", "1", "--config", "retention.ms=3600000",
                     "--config", "cleanup.policy=compact")) == f"Created topic {t}.\n"
    tid = kafka_topic_id(broker, t)
    out = ok(topics(broker, "--describe", "--topic", t)).splitlines()
    assert out[0] == (f"Topic: {t}\tTopicId: {tid}\tPartitionCount: 3\tReplicationFactor: 1\t"
                      f"Configs: cleanup.policy=compact,retention.ms=3600000")
    assert out[1:] == [f"\tTopic: {t}\tPartition: {p}\tLeader: 1\tReplicas: 1\tIsr: 1\t"
                       f"Elr: \tLastKnownElr: " for p in range(3)]
    # --topic-id describes the same topic
    assert ok(topics(broker, "--describe", "--topic-id", tid)).splitlines()[0] == out[0]

    # --alter adds partitions and prints nothing, as Kafka 4.x
    assert ok(topics(broker, "--alter", "--topic", t, "--partitions", "5")) == ""
    assert "PartitionCount: 5" in ok(topics(broker, "--describe", "--topic", t))

    # an existing topic: Kafka's message on stdout, exit 1; --if-not-exists: silent success
    r = topics(broker, "--create", "--topic", t)
    assert r.returncode == 1
    assert r.stdout == f"Error while executing topic command : Topic '{t}' already exists.\n"
    assert ok(topics(broker, "--create", "--topic", t, "--if-not-exists")) == ""

    assert ok(topics(broker, "--delete", "--topic", t)) == ""
    wait_until(lambda: t not in ok(topics(broker, "--list")).split(), 20,
               message="the deleted topic to leave the list")
    r = topics(broker, "--delete", "--topic", t)
    assert (r.returncode, r.stdout) == (
        1, f"Error while executing topic command : Topic '{t}' does not exist as expected\n")
    assert ok(topics(broker, "--delete", "--topic", t, "--if-exists")) == ""


def test_topics_list_regex_and_internal(broker):
    base = f"rx{uuid.uuid4().hex[:6]}"
    names = [f"{base}-a", f"{base}-b", f"{base}.c"]
    for n in names:
        ok(topics(broker, "--create", "--topic", n, "--partitions", "1"))
    # a Java regex over the whole name, commas as alternation, as Kafka's IncludeList
    assert ok(topics(broker, "--list", "--topic", f"{base}-.*")).split() == names[:2]
    assert ok(topics(broker, "--list", "--topic", f"{base}-a,{base}.c")).split() == \
        [names[0], names[2]]
    assert ok(topics(broker, "--list", "--topic", base)) == "\n"   # no partial match
    # the internal offsets topic shows unless --exclude-internal (commit one offset first)
    g = f"g-{uuid.uuid4().hex[:6]}"
    produce(broker, names[0], ["x"])
    ok(consume(broker, names[0], "--group", g, "--from-beginning", "--max-messages", "1"))
    listed = ok(topics(broker, "--list")).split()
    assert "__consumer_offsets" in listed and set(names) <= set(listed)
    assert listed == sorted(listed)
    assert "__consumer_offsets" not in ok(topics(broker, "--list", "--exclude-internal")).split()


def test_topics_replica_assignment_and_reports(broker):
    t = unique_topic("ra")
    ok(topics(broker, "--create", "--topic", t, "--replica-assignment", "1,1"))
    out = ok(topics(broker, "--describe", "--topic", t)).splitlines()
    assert "PartitionCount: 2\tReplicationFactor: 1" in out[0]
    # one broker, RF 1, min.insync.replicas 1: nothing under-replicated or unavailable,
    # every partition at min ISR (the report options print no topic line)
    assert ok(topics(broker, "--describe", "--topic", t, "--under-replicated-partitions")) == ""
    assert ok(topics(broker, "--describe", "--topic", t, "--unavailable-partitions")) == ""
    assert ok(topics(broker, "--describe", "--topic", t, "--under-min-isr-partitions")) == ""
    assert ok(topics(broker, "--describe", "--topic", t, "--at-min-isr-partitions")) \
        .splitlines() == out[1:]
    r = topics(broker, "--create", "--topic", unique_topic(), "--replica-assignment", "1:1")
    assert r.returncode == 1
    assert "Partition replica lists may not contain duplicate entries: 1" in r.stdout


def test_topics_usage_errors(broker):
    r = topics(broker, "--list", "--describe")
    assert r.returncode == 1
    assert "Command must include exactly one action: --list, --describe, --create, --alter " \
           "or --delete" in r.stderr
    r = topics(broker, "--alter", "--topic", "x", "--partitions", "2", "--config", "a=b")
    assert r.returncode == 1 and "kafka-configs tool" in r.stderr
    r = topics(broker, "--create", "--topic", "x", "--partitions", "0")
    assert (r.returncode, r.stdout) == (
        1, "Error while executing topic command : The partitions must be greater than 0\n")


# --------------------------------------------------------------------------- every tool

ALL_TOOLS = ["kafka_topics", "kafka_configs", "kafka_consumer_groups", "kafka_console_producer",
             "kafka_console_consumer", "kafka_get_offsets", "kafka_delete_records",
             "kafka_leader_election"]


@pytest.mark.parametrize("name", ALL_TOOLS)
def test_unknown_flags_refused_and_help(broker, name):
    r = tool(name, "--bootstrap-server", broker.bootstrap, "--zookeeper", "localhost:2181")
    assert r.returncode == 1
    assert "zookeeper is not a recognized option" in r.stderr
    # no abbreviations: joptsimple takes --bootstrap for --bootstrap-server, we do not
    r = tool(name, "--bootstrap", broker.bootstrap)
    assert r.returncode == 1 and "bootstrap is not a recognized option" in r.stderr
    r = tool(name, "--help")
    assert r.returncode == 0 and "--bootstrap-server" in r.stdout


def test_entry_points_match_kafka_names():
    import tomllib
    from importlib import import_module
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    for name in ("kafka-topics", "kafka-configs", "kafka-consumer-groups",
                 "kafka-console-producer", "kafka-console-consumer", "kafka-get-offsets",
                 "kafka-delete-records", "kafka-leader-election"):
        for script in (f"{name}.sh", name):
            target = scripts[script]
            module, func = target.split(":")
            assert module == "kafkette.tools." + name.replace("-", "_")
            assert callable(getattr(import_module(module), func))


# --------------------------------------------------------------------------- console tools

def test_console_producer_consumer_round_trip(broker):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.partitioner.default import murmur2
    t = unique_topic("rt")
    ok(topics(broker, "--create", "--topic", t, "--partitions", "3"))
    lines = [f"k{i}:value {i}:with colon" for i in range(20)] + ["h1:a,h2:b\tkh:with header"]
    produce(broker, t, lines[:20], "--property", "parse.key=true",
            "--property", "key.separator=:")
    produce(broker, t, lines[20:], "--property", "parse.key=true", "--property",
            "key.separator=:", "--property", "parse.headers=true", "--compression-codec",
            "--request-required-acks", "1")

    # what kafka-python reads back: keys, values, headers, and Kafka's partitioner
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                      consumer_timeout_ms=5000)
    tps = [TopicPartition(t, p) for p in range(3)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got = [r for r in c]
    c.close()
    assert len(got) == 21
    for r in got:
        assert (murmur2(r.key) & 0x7FFFFFFF) % 3 == r.partition
    by_key = {r.key: r for r in got}
    for i in range(20):
        assert by_key[f"k{i}".encode()].value == f"value {i}:with colon".encode()
        assert by_key[f"k{i}".encode()].headers == []
    assert by_key[b"kh"].value == b"with header"
    assert by_key[b"kh"].headers == [("h1", b"a"), ("h2", b"b")]

    # the console consumer prints them back as Kafka's DefaultMessageFormatter does
    r = consume(broker, t, "--from-beginning", "--max-messages", "21", "--property",
                "print.key=true", "--property", "key.separator= | ", "--property",
                "print.partition=true", "--property", "print.offset=true",
                "--property", "print.headers=true", "--property", "print.timestamp=true")
    out = ok(r).splitlines()
    assert r.stderr.strip().endswith("Processed a total of 21 messages")
    expected = {f"CreateTime:{x.timestamp} | Partition:{x.partition} | Offset:{x.offset} | "
                f"{','.join(f'{k}:{v.decode()}' for k, v in x.headers) or 'NO_HEADERS'} | "
                f"{x.key.decode()} | {x.value.decode()}" for x in got}
    assert set(out) == expected and len(out) == 21

    # one partition from an offset; a timeout stops it as Kafka's does (exit code 0)
    p = got[0].partition
    ends = sorted(x.offset for x in got if x.partition == p)
    r = consume(broker, t, "--partition", str(p), "--offset", str(ends[-1]),
                "--timeout-ms", "1500")
    assert ok(r) == next(x.value.decode() for x in got
                         if x.partition == p and x.offset == ends[-1]) + "\n"
    assert "org.apache.kafka.common.errors.TimeoutException" in r.stderr
    assert r.stderr.strip().endswith("Processed a total of 1 messages")


def test_console_producer_errors(broker):
    t = unique_topic("pe")
    ok(topics(broker, "--create", "--topic", t))
    r = tool("kafka_console_producer", "--bootstrap-server", broker.bootstrap, "--topic", t,
             "--property", "parse.key=true", input="no separator here\n")
    assert r.returncode == 1
    assert "No key separator found on line number 1: 'no separator here'" in r.stderr
    r = tool("kafka_console_producer", "--bootstrap-server", broker.bootstrap, "--topic", t,
             "--producer-property", "enable.idempotence=true", input="x\n")
    assert r.returncode == 1 and "enable.idempotence=true is not supported" in r.stderr
    r = tool("kafka_console_producer", "--bootstrap-server", broker.bootstrap, "--topic", t,
             "--producer-property", "sasl.kerberos.service.name=kafka", input="x\n")
    assert r.returncode == 1 and \
        "unsupported client config sasl.kerberos.service.name" in r.stderr
    # ignore.error: a line without the separator is a value without a key
    ok(tool("kafka_console_producer", "--bootstrap-server", broker.bootstrap, "--topic", t,
            "--property", "parse.key=true", "--property", "ignore.error=true",
            input="plain\nk\tv\n"))
    out = ok(consume(broker, t, "--from-beginning", "--max-messages", "2",
                     "--property", "print.key=true"))
    assert out == "null\tplain\nk\tv\n"


def test_console_consumer_usage_errors(broker):
    r = consume(broker, "x", "--offset", "3")
    assert r.returncode == 1
    assert "The partition is required when offset is specified." in r.stderr
    r = consume(broker, "x", "--group", "a", "--consumer-property", "group.id=b")
    assert r.returncode == 1 and "do not match" in r.stderr


# --------------------------------------------------------------------------- consumer groups

def _committed_rows(broker, group) -> list[list[str]]:
    r = groups(broker, "--describe", "--group", group)
    out = ok(r)
    assert r.stderr == f"\nConsumer group '{group}' has no active members.\n"
    lines = out.split("\n")
    # Kafka's layout: a blank line, the header, the rows, a newline
    assert lines[0] == "" and lines[-1] == ""
    assert re.split(r" +", lines[1].strip()) == [
        "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
        "CONSUMER-ID", "HOST", "CLIENT-ID"]
    return [re.split(r" +", ln.strip()) for ln in lines[2:-1]]


def test_consumer_groups_describe_reset_delete(broker):
    t = unique_topic("cg")
    g = f"grp-{uuid.uuid4().hex[:8]}"
    ok(topics(broker, "--create", "--topic", t, "--partitions", "2"))
    produce(broker, t, [f"k{i}\tv{i}" for i in range(10)], "--property", "parse.key=true")
    ends = {int(line.split(":")[1]): int(line.split(":")[2]) for line in ok(tool(
        "kafka_get_offsets", "--bootstrap-server", broker.bootstrap, "--topic", t)).split()}
    assert sum(ends.values()) == 10
    # read 10 records as group g: the group commits its position at the end
    r = consume(broker, t, "--group", g, "--from-beginning", "--max-messages", "10")
    assert len(ok(r).split()) == 10

    assert g in ok(groups(broker, "--list")).split()
    lst = ok(groups(broker, "--list", "--state")).splitlines()
    assert lst[0] == "GROUP".ljust(25) + " " + "STATE".ljust(20)
    assert g.ljust(25) + " " + "Empty".ljust(20) in lst
    assert _committed_rows(broker, g) == [
        [g, t, str(p), str(ends[p]), str(ends[p]), "0", "-", "-", "-"] for p in (0, 1)]
    # the exact column layout of one line: %-15s columns, PARTITION %-10s
    line = ok(groups(broker, "--describe", "--group", g)).split("\n")[2]
    assert line == (f"{g:<15} {t:<15} {'0':<10} {ends[0]:<15} {ends[0]:<15} {'0':<15} "
                    f"{'-':<15} {'-':<15} -")

    # --reset-offsets is a dry run by default: prints the plan, commits nothing
    r = groups(broker, "--reset-offsets", "--group", g, "--topic", t, "--to-earliest")
    assert r.returncode == 0 and "WARN: No action will be performed" in r.stderr
    assert r.stdout == (f"\n{'GROUP':<15} {'TOPIC':<15} {'PARTITION':<10} NEW-OFFSET"
                        f"\n{g:<15} {t:<15} {'0':<10} 0\n{g:<15} {t:<15} {'1':<10} 0\n")
    assert [row[3] for row in _committed_rows(broker, g)] == [str(ends[0]), str(ends[1])]
    # --execute commits the plan
    ok(groups(broker, "--reset-offsets", "--group", g, "--topic", t, "--to-earliest",
              "--execute"))
    assert [(row[3], row[5]) for row in _committed_rows(broker, g)] == [
        ("0", str(ends[0])), ("0", str(ends[1]))]
    # --shift-by on one partition, clamped to the log end as Kafka's checkOffsetsRange
    out = ok(groups(broker, "--reset-offsets", "--group", g, "--topic", f"{t}:1",
                    "--shift-by", "1000", "--execute"))
    assert out.split("\n")[2].split() == [g, t, "1", str(ends[1])]
    # --to-offset, --to-datetime, --by-duration, --to-current, --export
    out = ok(groups(broker, "--reset-offsets", "--group", g, "--all-topics", "--to-offset",
                    "1", "--dry-run", "--export"))
    assert out == f"{t},0,1\n{t},1,1\n\n"
    out = ok(groups(broker, "--reset-offsets", "--group", g, "--all-topics", "--to-datetime",
                    "2000-01-01T00:00:00.000", "--dry-run"))
    assert [ln.split()[-1] for ln in out.split("\n")[2:-1]] == ["0", "0"]
    # PT0S: no record is that new, so Kafka's warning and the log end offsets
    out = ok(groups(broker, "--reset-offsets", "--group", g, "--all-topics", "--by-duration",
                    "PT0S", "--dry-run"))
    assert f"\nWarn: Partition 0 from topic {t} is empty. Falling back to latest known " \
           f"offset.\n" in out
    assert [ln.split()[-1] for ln in out.split("\n") if ln.startswith(g)] == \
        [str(ends[0]), str(ends[1])]
    out = ok(groups(broker, "--reset-offsets", "--group", g, "--all-topics", "--to-current",
                    "--dry-run"))
    assert [ln.split()[-1] for ln in out.split("\n")[2:-1]] == ["0", str(ends[1])]
    r = groups(broker, "--reset-offsets", "--group", g, "--all-topics")
    assert r.returncode == 1 and "requires one of the following scenarios" in r.stderr

    # --delete-offsets of one partition, then the group
    out = ok(groups(broker, "--delete-offsets", "--group", g, "--topic", f"{t}:0"))
    assert out == (f"Request succeeded for deleting offsets from group {g}.\n\n"
                   f"{'TOPIC':<15} {'PARTITION':<10} {'STATUS':<15}\n"
                   f"{t:<15} {'0':<10} {'Successful':<15}\n")
    assert [row[2] for row in _committed_rows(broker, g)] == ["1"]
    assert ok(groups(broker, "--delete", "--group", g)) == \
        f"Deletion of requested consumer groups ('{g}') was successful.\n"
    r = groups(broker, "--delete", "--group", g)
    assert r.returncode == 1
    assert f"* Group '{g}' could not be deleted due to: " \
           "org.apache.kafka.common.errors.GroupIdNotFoundException" in r.stdout
    r = groups(broker, "--describe", "--group", g)
    assert r.returncode == 1 and f"Error: Consumer group '{g}' does not exist." in r.stdout


def test_consumer_groups_with_an_active_member(broker):
    from kafka import KafkaConsumer
    t = unique_topic("am")
    g = f"live-{uuid.uuid4().hex[:8]}"
    ok(topics(broker, "--create", "--topic", t, "--partitions", "2"))
    produce(broker, t, ["a", "b", "c"])
    c = KafkaConsumer(t, bootstrap_servers=broker.bootstrap, group_id=g,
                      client_id="member-one", auto_offset_reset="earliest",
                      enable_auto_commit=False)
    try:
        seen = []

        def stable_and_read():
            for recs in c.poll(timeout_ms=200).values():
                seen.extend(recs)
            out = ok(groups(broker, "--describe", "--group", g, "--state"))
            return "Stable" in out and len(seen) == 3
        wait_until(stable_and_read, 30, message="the group to be Stable, 3 records read")
        c.commit()
        members = ok(groups(broker, "--describe", "--group", g, "--members", "--verbose"))
        lines = members.split("\n")
        assert re.split(r" +", lines[1].strip()) == [
            "GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS", "CURRENT-EPOCH",
            "CURRENT-ASSIGNMENT", "TARGET-EPOCH", "TARGET-ASSIGNMENT"]
        row = re.split(r" +", lines[2].strip())
        assert row[0] == g and row[3] == "member-one" and row[4] == "2"
        assert row[5:] == ["-", f"{t}:0,1", "-", "-"]
        rows = [re.split(r" +", ln.strip()) for ln in
                ok(groups(broker, "--describe", "--group", g)).split("\n")[2:-1]]
        assert [(r[1], r[2], r[-1]) for r in rows] == [(t, "0", "member-one"),
                                                       (t, "1", "member-one")]
        assert sum(int(r[3]) for r in rows) == 3
        state = ok(groups(broker, "--describe", "--group", g, "--state")).split("\n")
        assert re.split(r"\s{2,}|\s(?=\S)", state[2].strip())[-2:] == ["Stable", "1"]
        assert "range" in state[2] or "roundrobin" in state[2]
        # a live group's offsets are not reset
        r = groups(broker, "--reset-offsets", "--group", g, "--all-topics", "--to-earliest",
                   "--execute")
        assert r.returncode == 1
        assert (f"Error: Assignments can only be reset if the group '{g}' is inactive, but "
                f"the current state is Stable.") in r.stdout
        r = groups(broker, "--delete", "--group", g)
        assert r.returncode == 1 and "GroupNotEmptyException" in r.stdout
    finally:
        c.close()


# --------------------------------------------------------------------------- configs

def test_configs_topic_alter_describe(broker):
    t = unique_topic("cf")
    ok(topics(broker, "--create", "--topic", t))
    cfg = ["--bootstrap-server", broker.bootstrap]
    assert ok(tool("kafka_configs", *cfg, "--describe", "--entity-type", "topics",
                   "--entity-name", t)) == f"Dynamic configs for topic {t} are:\n"
    assert ok(tool("kafka_configs", *cfg, "--alter", "--entity-type", "topics",
                   "--entity-name", t, "--add-config",
                   "retention.ms=60000,cleanup.policy=[compact,delete]")) == \
        f"Completed updating config for topic {t}.\n"
    out = ok(tool("kafka_configs", *cfg, "--describe", "--topic", t)).splitlines()
    assert out[0] == f"Dynamic configs for topic {t} are:"
    assert out[1].startswith("  cleanup.policy=compact,delete sensitive=false synonyms="
                             "{DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact,delete, ")
    assert out[2].startswith("  retention.ms=60000 sensitive=false synonyms="
                             "{DYNAMIC_TOPIC_CONFIG:retention.ms=60000, ")
    assert len(out) == 3
    # kafka-topics.sh shows the same overrides
    assert "Configs: cleanup.policy=compact,delete,retention.ms=60000" in \
        ok(topics(broker, "--describe", "--topic", t))
    ok(tool("kafka_configs", *cfg, "--alter", "--topic", t, "--delete-config", "retention.ms"))
    out = ok(tool("kafka_configs", *cfg, "--describe", "--topic", t)).splitlines()
    assert [ln.split("=")[0] for ln in out[1:]] == ["  cleanup.policy"]
    full = ok(tool("kafka_configs", *cfg, "--describe", "--topic", t, "--all")).splitlines()
    assert full[0] == f"All configs for topic {t} are:"
    assert any(ln.startswith("  retention.ms=604800000 sensitive=false") for ln in full)
    r = tool("kafka_configs", *cfg, "--alter", "--topic", t, "--delete-config", "segment.ms")
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == \
        "org.apache.kafka.common.errors.InvalidConfigurationException: Invalid config(s): segment.ms"
    assert r.stderr.startswith("Error while executing config command with args ")


def test_configs_brokers_and_refused_entity_types(broker):
    cfg = ["--bootstrap-server", broker.bootstrap]
    assert ok(tool("kafka_configs", *cfg, "--describe", "--entity-type", "brokers",
                   "--entity-name", "1")) == "Dynamic configs for broker 1 are:\n"
    assert ok(tool("kafka_configs", *cfg, "--describe", "--entity-type", "brokers",
                   "--entity-default")) == "Default configs for brokers in the cluster are:\n"
    full = ok(tool("kafka_configs", *cfg, "--describe", "--broker", "1", "--all"))
    assert full.startswith("All configs for broker 1 are:\n")
    assert "  num.partitions=1 sensitive=false synonyms={STATIC_BROKER_CONFIG:num.partitions=1" \
        in full
    r = tool("kafka_configs", *cfg, "--describe", "--entity-type", "broker-loggers",
             "--entity-name", "1")
    assert r.returncode == 1 and "broker-loggers is not supported" in r.stderr
    # users, clients and ips are served (quotas: integration/test_client_quotas.py)
    r = tool("kafka_configs", *cfg, "--describe", "--entity-type", "client-metrics")
    assert r.returncode == 1 and "not supported" in r.stderr


# --------------------------------------------------------------------------- offsets, records, leaders

def test_get_offsets_delete_records_leader_election(broker):
    t = unique_topic("go")
    ok(topics(broker, "--create", "--topic", t, "--partitions", "2"))
    before = int(time.time() * 1000) - 1
    produce(broker, t, [f"{i}\tv" for i in range(12)], "--property", "parse.key=true")
    bs = ["--bootstrap-server", broker.bootstrap]
    latest = ok(tool("kafka_get_offsets", *bs, "--topic", t)).split()
    ends = {int(x.split(":")[1]): int(x.split(":")[2]) for x in latest}
    assert latest == [f"{t}:0:{ends[0]}", f"{t}:1:{ends[1]}"] and sum(ends.values()) == 12
    assert ok(tool("kafka_get_offsets", *bs, "--topic", t, "--time", "-2")).split() == \
        [f"{t}:0:0", f"{t}:1:0"]
    assert ok(tool("kafka_get_offsets", *bs, "--topic-partitions", f"{t}:1",
                   "--time", str(before))).split() == [f"{t}:1:0"]
    # a timestamp after every record: no offset, so no line (as Kafka's GetOffsetShell)
    assert ok(tool("kafka_get_offsets", *bs, "--topic", t, "--time",
                   str(int(time.time() * 1000) + 3_600_000))) == ""
    r = tool("kafka_get_offsets", *bs, "--topic", "no-such-topic-at-all")
    assert (r.returncode, r.stderr) == (
        1, "Error occurred: Could not match any topic-partitions with the specified filters\n")

    plan = {"partitions": [{"topic": t, "partition": 0, "offset": 2},
                           {"topic": t, "partition": 5, "offset": 1}], "version": 1}
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"dr-{uuid.uuid4().hex}.json")
    with open(path, "w") as f:
        json.dump(plan, f)
    try:
        r = tool("kafka_delete_records", *bs, "--offset-json-file", path)
    finally:
        os.unlink(path)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "Executing records delete operation", "Records delete operation completed:",
        f"partition: {t}-0\tlow_watermark: 2",
        f"partition: {t}-5\terror: org.apache.kafka.common.errors."
        f"UnknownTopicOrPartitionException: This server does not host this topic-partition."]
    assert ok(tool("kafka_get_offsets", *bs, "--topic", t, "--partitions", "0",
                   "--time", "earliest")) == f"{t}:0:2\n"

    # one broker: the preferred leader is the leader already
    le = ["--bootstrap-server", broker.bootstrap, "--election-type", "PREFERRED"]
    assert ok(tool("kafka_leader_election", *le, "--topic", t, "--partition", "0")) == \
        f"Valid replica already elected for partitions {t}-0\n"
    r = tool("kafka_leader_election", *le, "--topic", t, "--partition", "9")
    assert r.returncode == 1
    assert r.stdout.startswith(f"Error completing leader election (PREFERRED) for partition: "
                               f"{t}-9: org.apache.kafka.common.errors."
                               f"UnknownTopicOrPartitionException")
    assert "1 replica(s) could not be elected" in r.stdout
    r = tool("kafka_leader_election", "--bootstrap-server", broker.bootstrap,
             "--all-topic-partitions")
    assert r.returncode == 1 and "Missing required option(s) [election-type]" in r.stderr


def test_command_config_file(broker, tmp_path):
    conf = tmp_path / "admin.properties"
    conf.write_text("# comment\nclient.id = ci-tools\nrequest.timeout.ms=20000\n")
    t = unique_topic("cc")
    assert ok(topics(broker, "--create", "--topic", t, "--command-config", str(conf))) == \
        f"Created topic {t}.\n"
    # Kerberos and JKS cannot be honoured: refused with the key named, never ignored
    conf.write_text("security.protocol=SASL_SSL\nsasl.mechanism=GSSAPI\n")
    r = topics(broker, "--list", "--command-config", str(conf))
    assert r.returncode == 1
    assert "sasl.mechanism=GSSAPI is not supported" in r.stdout
    conf.write_text("security.protocol=SSL\nssl.truststore.location=/x.jks\n"
                    "ssl.truststore.type=JKS\n")
    r = topics(broker, "--list", "--command-config", str(conf))
    assert r.returncode == 1 and "ssl.truststore.type=JKS" in r.stdout


def test_console_consumers_share_a_group(broker):
    """Two console consumers with one --group split the partitions (range assignor),
    show up as members while they run, and commit what they read."""
    t = unique_topic("sg")
    g = f"share-{uuid.uuid4().hex[:8]}"
    ok(topics(broker, "--create", "--topic", t, "--partitions", "2"))
    cmd = [PY, "-m", "kafkette.tools.kafka_console_consumer", "--bootstrap-server",
           broker.bootstrap, "--topic", t, "--group", g, "--property", "print.partition=true",
           "--consumer-property", "heartbeat.interval.ms=200", "--timeout-ms", "6000"]
    procs = []
    try:
        procs.append(subprocess.Popen(cmd + ["--consumer-property", "client.id=c-one"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))

        def member_rows():
            out = ok(groups(broker, "--describe", "--group", g, "--members"))
            return [re.split(r" +", ln.strip()) for ln in out.split("\n")[2:] if ln.strip()]
        wait_until(lambda: [r[3] for r in member_rows()] == ["c-one"], 30,
                   message="the first console consumer to be the group's member")
        procs.append(subprocess.Popen(cmd + ["--consumer-property", "client.id=c-two"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        wait_until(lambda: sorted((r[3], r[4]) for r in member_rows()) ==
                   [("c-one", "1"), ("c-two", "1")], 30,
                   message="two members with one partition each")
        produce(broker, t, [f"k{i}\tv{i}" for i in range(20)], "--property", "parse.key=true")
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    lines = [out.split() for out, _err in outs]
    assert all(p.returncode == 0 for p in procs)
    parts = [{ln.split("\t")[0] for ln in out.splitlines()} for out, _err in outs]
    assert parts[0] and parts[1] and parts[0].isdisjoint(parts[1])   # one partition each
    values = sorted(ln.split("\t")[1] for out, _err in outs for ln in out.splitlines())
    assert values == sorted(f"v{i}" for i in range(20))
    assert sum(len(x) for x in lines) == 40
    # both left the group; their commits cover every record
    rows = _committed_rows(broker, g)
    assert sum(int(r[3]) for r in rows) == 20 and all(r[5] == "0" for r in rows)
