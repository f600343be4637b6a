"""kafkette.EmbeddedBroker: child-process and in-process brokers, topic admin over the
wire, restart with data kept, and a kafka-python round trip."""
from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time

import pytest

from kafkette import EmbeddedBroker
from kafkette.cli import api_versions_probe
from kafkette.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

pytestmark = pytest.mark.timeout(120)


def produce_and_consume(bootstrap: str, topic: str, values: list[bytes],
                        expect: list[bytes] | None = None) -> list[bytes]:
    """Produce `values` (if any) with kafka-python, then read the topic from the start
    until `expect` (default: `values`) has arrived or a deadline passes."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    if values:
        p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_block_ms=10000)
        try:
            for v in values:
                p.send(topic, v, partition=0).get(timeout=10)
        finally:
            p.close(timeout=5)
    expect = values if expect is None else expect
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest")
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got: list[bytes] = []
        deadline = time.monotonic() + 15
        while len(got) < len(expect) and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                got += [r.value for r in recs]
        return got
    finally:
        c.close()


def answers(kb: EmbeddedBroker) -> bool:
    try:
        return api_versions_probe("127.0.0.1", kb.port, timeout=1.0) == 0
    except OSError:
        return False


@pytest.mark.parametrize("in_process", [False, True], ids=["subprocess", "in_process"])
def test_start_stop_and_temp_dir_removed(in_process):
    with EmbeddedBroker(in_process=in_process) as kb:
        assert kb.port > 0
        assert kb.bootstrap_servers == f"127.0.0.1:{kb.port}"
        assert kb.is_running() and answers(kb)
        assert kb.data_dir.is_dir()
        assert kb.startup_seconds is not None and kb.startup_seconds > 0
        if not in_process:
            assert kb.pid is not None
        data_dir = kb.data_dir
    assert not kb.is_running()
    assert not answers(kb)
    assert not data_dir.exists()


@pytest.mark.parametrize("in_process", [False, True], ids=["subprocess", "in_process"])
def test_create_topic_round_trip_restart_keeps_data(in_process, tmp_path):
    data_dir = tmp_path / "data"
    with EmbeddedBroker(data_dir=data_dir, in_process=in_process) as kb:
        result = kb.create_topic("orders", partitions=2, config={"retention.ms": 3600000})
        assert result.error_code == 0 and result.num_partitions == 2
        kb.create_topic("orders")                       # exist_ok by default
        with pytest.raises(TopicAlreadyExistsError):
            kb.create_topic("orders", exist_ok=False)
        assert produce_and_consume(kb.bootstrap_servers, "orders", [b"a", b"b"]) == [b"a", b"b"]
        port, pid = kb.port, kb.pid
        kb.restart()
        assert kb.port == port and answers(kb)
        if not in_process:
            assert kb.pid != pid
        # The records written before the restart are read back after it.
        assert produce_and_consume(kb.bootstrap_servers, "orders", [],
                                   expect=[b"a", b"b"]) == [b"a", b"b"]
        kb.delete_topic("orders")
        with pytest.raises(UnknownTopicOrPartitionError):
            kb.delete_topic("orders")
        kb.delete_topic("orders", missing_ok=True)
    assert data_dir.is_dir(), "a data_dir given by the caller is kept"


@pytest.mark.parametrize("in_process", [False, True], ids=["subprocess", "in_process"])
def test_config_is_passed_to_the_broker(in_process):
    with EmbeddedBroker({"num.partitions": 3, "auto.create.topics.enable": True},
                        in_process=in_process) as kb:
        if not in_process:
            assert "num.partitions=3" in kb.command()
            assert "auto.create.topics.enable=true" in kb.command()
        # num_partitions=-1 asks for the broker default (KIP-464): num.partitions.
        result = kb.create_topic("defaulted", partitions=-1, replication_factor=-1)
        assert result.num_partitions == 3


def test_reserved_keys_and_bad_config_are_rejected():
    with pytest.raises(ValueError):
        EmbeddedBroker({"listeners": "PLAINTEXT://:9092"})
    kb = EmbeddedBroker({"no.such.setting": 1}, startup_timeout=20)
    with pytest.raises(RuntimeError, match="no.such.setting"):
        kb.start()
    kb.close()


def test_restart_port_stays_even_if_port_given(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with EmbeddedBroker(port=port, in_process=True) as kb:
        assert kb.port == port and answers(kb)
        kb.restart()
        assert kb.port == port and answers(kb)


def test_port_taken_is_an_error_for_a_fixed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        kb = EmbeddedBroker(port=s.getsockname()[1], startup_timeout=20)
        with pytest.raises(RuntimeError, match="in use"):
            kb.start()
        kb.close()


def test_import_kafkette_is_cheap():
    # PEP 562: EmbeddedBroker is loaded on first use, not by `import kafkette`.
    code = ("import sys, kafkette; assert 'kafkette.embedded' not in sys.modules; "
            "kafkette.EmbeddedBroker; assert 'kafkette.embedded' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_startup_time(capsys):
    """Median start-up of a few starts in each mode (printed; -s shows it)."""
    figures = {}
    for in_process in (False, True):
        times = []
        for _ in range(3):
            with EmbeddedBroker(in_process=in_process) as kb:
                times.append(kb.startup_seconds)
        figures["in_process" if in_process else "subprocess"] = statistics.median(times)
    with capsys.disabled():
        print("\nEmbeddedBroker start-up (median of 3): "
              + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in figures.items()))
    assert figures["subprocess"] < 15 and figures["in_process"] < 15
