"""`kafkette topics` and `kafkette groups` (kafkette/tools) against a real broker
process, run as users run them: `python -m kafkette ...` in a subprocess."""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid

import pytest

from kafkette.cli import api_versions_probe
from kafkette.errors import ProtocolError
from kafkette.tools.client import format_table
from kafkette.tools.groups import COLUMNS, decode_assignment

PY = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory):
    port = _free_port()
    logs = tmp_path_factory.mktemp("kafkette-tools")
    proc = subprocess.Popen(
        [PY, "-m", "kafkette", "serve", "--set", f"listeners=PLAINTEXT://127.0.0.1:{port}",
         "--set", f"log.dirs={logs}", "--set", "group.initial.rebalance.delay.ms=0"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"broker exited: {proc.stderr.read().decode()[-2000:]}")
            return api_versions_probe("127.0.0.1", port, timeout=1.0) == 0
        _wait(ready, what="broker to answer ApiVersions")
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kcli(*args, check=True):
    r = subprocess.run([PY, "-m", "kafkette", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{args}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def assert_aligned(table: str, headers: list[str]) -> None:
    """Every cell of every line starts at its header's column, after a space."""
    lines = table.splitlines()
    head = lines[0]
    starts = []
    pos = 0
    for h in headers:
        pos = head.index(h, pos)
        starts.append(pos)
        pos += len(h)
    assert len(lines) > 1
    for line in lines[1:]:
        for s in starts:
            assert len(line) > s and line[s] != " ", (line, s)
            assert s == 0 or line[s - 1] == " ", (line, s)
        assert len(line.split()) == len(headers), line


# ------------------------------------------------------------------------ topics

def test_topics_create_list_describe_delete(bootstrap):
    t = _name("clit")
    r = kcli("topics", "create", "--bootstrap-server", bootstrap, "--topic", t,
             "--partitions", "3", "--replication-factor", "1",
             "--config", "cleanup.policy=compact", "--config", "retention.ms=123456")
    assert f"Created topic {t}." in r.stdout

    assert t in kcli("topics", "list", "--bootstrap-server", bootstrap).stdout.split()
    assert t in json.loads(kcli("topics", "list", "--bootstrap-server", bootstrap,
                                "--exclude-internal", "--json").stdout)

    d = json.loads(kcli("topics", "describe", "--bootstrap-server", bootstrap,
                        "--topic", t, "--json").stdout)
    assert [x["topic"] for x in d] == [t]
    d = d[0]
    assert d["partition_count"] == 3 and d["replication_factor"] == 1
    assert [p["partition"] for p in d["partitions"]] == [0, 1, 2]
    for p in d["partitions"]:
        assert p["leader"] >= 0 and p["replicas"] == [p["leader"]] and p["isr"] == [p["leader"]]
        assert p["leader_epoch"] == 0 and p["offline"] == []
    # only the overrides, not every default
    assert d["configs"] == {"cleanup.policy": "compact", "retention.ms": "123456"}

    text = kcli("topics", "describe", "--bootstrap-server", bootstrap, "--topic", t).stdout
    first, _, table = text.partition("\n")
    assert first.startswith(f"Topic: {t}\t") and "PartitionCount: 3" in first
    assert "cleanup.policy=compact" in first and "retention.ms=123456" in first
    assert_aligned(table, ["TOPIC", "PARTITION", "LEADER", "LEADER_EPOCH", "REPLICAS", "ISR",
                           "OFFLINE"])
    assert len(table.splitlines()) == 4

    r = kcli("topics", "create", "--bootstrap-server", bootstrap, "--topic", t,
             "--partitions", "1", check=False)
    assert r.returncode != 0 and "TOPIC_ALREADY_EXISTS" in r.stderr

    assert f"Deleted topic {t}." in kcli("topics", "delete", "--bootstrap-server",
                                         bootstrap, "--topic", t).stdout
    _wait(lambda: t not in kcli("topics", "list", "--bootstrap-server", bootstrap).stdout.split(),
          what="topic to disappear from list")


def test_topics_errors_exit_non_zero(bootstrap):
    missing = _name("missing")
    for args in (("describe", "--topic", missing), ("delete", "--topic", missing)):
        r = kcli("topics", *args, "--bootstrap-server", bootstrap, check=False)
        assert r.returncode != 0
        assert "UNKNOWN_TOPIC_OR_PARTITION" in r.stderr and "Traceback" not in r.stderr
    r = kcli("topics", "create", "--bootstrap-server", bootstrap, "--topic", _name("bad"),
             "--config", "no-equals-sign", check=False)
    assert r.returncode != 0 and "KEY=VALUE" in r.stderr

    r = kcli("topics", "list", "--bootstrap-server", f"127.0.0.1:{_free_port()}", check=False)
    assert r.returncode != 0
    assert "cannot connect" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------ groups

def test_groups_describe_lag_and_list(bootstrap):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    t, group = _name("clig"), _name("g")
    kcli("topics", "create", "--bootstrap-server", bootstrap, "--topic", t, "--partitions", "2")
    p = KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=15000)
    try:
        for i in range(6):
            p.send(t, b"p0-%d" % i, partition=0)
        for i in range(4):
            p.send(t, b"p1-%d" % i, partition=1)
        p.flush(timeout=15)
    finally:
        p.close(timeout=5)

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                      client_id="cli-tools-consumer", enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=15000)
    try:
        # Subscribe, then wait for fresh metadata before the first poll (which joins):
        # otherwise kafka-python 3.0.12 can join with no metadata (empty assignment),
        # rejoin when it arrives, and drop its own SyncGroup answer when a poll() times
        # out mid-join (see KafkaPythonMember._subscribe in integration/it_clients.py).
        c.subscribe([t])
        assert t in c.topics() and c.partitions_for_topic(t) == {0, 1}
        _wait(lambda: c.poll(timeout_ms=200) is not None and len(c.assignment()) == 2,
              what="consumer assignment")
        # read part of the topic: commit 2 of 6 on p0, 1 of 4 on p1
        c.commit({TopicPartition(t, 0): OffsetAndMetadata(2, "", -1),
                  TopicPartition(t, 1): OffsetAndMetadata(1, "", -1)})

        def described():
            d = json.loads(kcli("groups", "describe", "--bootstrap-server", bootstrap,
                                "--group", group, "--json").stdout)
            rows = [r for r in d["partitions"] if r["topic"] == t]
            return d if len(rows) == 2 and all(r["consumer_id"] for r in rows) else None
        d = _wait(described, what="group described with its member")
        assert d["group"] == group and d["state"] == "Stable"
        rows = {r["partition"]: r for r in d["partitions"]}
        assert set(rows) == {0, 1}
        assert (rows[0]["current_offset"], rows[0]["log_end_offset"], rows[0]["lag"]) == (2, 6, 4)
        assert (rows[1]["current_offset"], rows[1]["log_end_offset"], rows[1]["lag"]) == (1, 4, 3)
        for r in rows.values():
            assert r["lag"] == r["log_end_offset"] - r["current_offset"]
            assert r["client_id"] == "cli-tools-consumer" and r["host"]
            assert r["consumer_id"] == rows[0]["consumer_id"]

        table = kcli("groups", "describe", "--bootstrap-server", bootstrap,
                     "--group", group).stdout.strip()
        assert table.splitlines()[0].split() == COLUMNS
        assert_aligned(table, COLUMNS)
        lines = table.splitlines()[1:]
        assert [ln.split()[:6] for ln in lines] == [[group, t, "0", "2", "6", "4"],
                                                   [group, t, "1", "1", "4", "3"]]

        listed = json.loads(kcli("groups", "list", "--bootstrap-server", bootstrap,
                                 "--json").stdout)
        assert {"group": group, "state": "Stable", "protocol_type": "consumer"} in listed
        text = kcli("groups", "list", "--bootstrap-server", bootstrap).stdout
        assert any(ln.split() == [group, "Stable"] for ln in text.splitlines())
    finally:
        c.close()

    # after the member leaves: committed offsets stay, no consumer
    def empty():
        d = json.loads(kcli("groups", "describe", "--bootstrap-server", bootstrap,
                            "--group", group, "--json").stdout)
        return d if d["state"] == "Empty" else None
    d = _wait(empty, what="group to become Empty")
    assert [(r["partition"], r["lag"], r["consumer_id"]) for r in d["partitions"]] == \
        [(0, 4, None), (1, 3, None)]
    out = kcli("groups", "describe", "--bootstrap-server", bootstrap, "--group", group).stdout
    assert f"Consumer group '{group}' has no active members." in out

    r = kcli("groups", "describe", "--bootstrap-server", bootstrap, "--group", _name("nog"),
             check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr


# ------------------------------------------------------------------------ units

def _assignment(version, topics, user_data=b"", extra=b""):
    out = struct.pack(">hi", version, len(topics))
    for name, parts in topics:
        out += struct.pack(">h", len(name)) + name.encode() + struct.pack(">i", len(parts))
        out += b"".join(struct.pack(">i", p) for p in parts)
    out += struct.pack(">i", len(user_data)) + user_data
    return out + extra


def test_decode_assignment():
    assert decode_assignment(b"") == []
    assert decode_assignment(_assignment(0, [("a", [0, 2]), ("b", [1])])) == \
        [("a", 0), ("a", 2), ("b", 1)]
    # a future version extends the old layout: read as the newest known
    assert decode_assignment(_assignment(9, [("a", [3])], extra=b"\x00\x01")) == [("a", 3)]
    # lengths beyond the buffer are refused, not allocated
    with pytest.raises(ProtocolError):
        decode_assignment(struct.pack(">hi", 0, 2_000_000_000))
    with pytest.raises(ProtocolError):
        decode_assignment(_assignment(0, [("a", [0])])[:-3])
    with pytest.raises(ValueError):
        decode_assignment(struct.pack(">hi", -1, 0))


def test_format_table_aligns_and_dashes_none():
    out = format_table(["A", "LONGER"], [["xxxx", None], [1, 22]])
    assert out.splitlines() == ["A     LONGER", "xxxx  -", "1     22"]


def test_tools_layer_is_a_client():
    """kafkette/tools talks to brokers over the wire only (DESIGN.md "Layers")."""
    from pathlib import Path

    from tests.test_layers import imported_names
    tools = Path(ROOT) / "kafkette" / "tools"
    bad = []
    for f in sorted(tools.glob("*.py")):
        mod = "kafkette.tools" + ("" if f.stem == "__init__" else "." + f.stem)
        for line, name in imported_names(f.read_text(), mod, f.stem == "__init__"):
            if name.split(".")[:2] in (["kafkette", "broker"], ["kafkette", "server"]):
                bad.append(f"{f.name}:{line} {name}")
    assert not bad and len(list(tools.glob("*.py"))) >= 4, bad


def test_bootstrap_list_falls_back_to_a_live_server(bootstrap):
    dead = f"127.0.0.1:{_free_port()}"
    r = kcli("topics", "list", "--bootstrap-server", f"{dead},{bootstrap}")
    assert r.returncode == 0
