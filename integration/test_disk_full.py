"""A full disk under a live broker (issue 13 item 2): the log dir is a small tmpfs that
the test fills; confluent-kafka produces until deliveries fail with KAFKA_STORAGE_ERROR,
everything acknowledged is read back, and producing works again once space is freed.
Needs root (mount); skipped where mounting a tmpfs is refused."""
from __future__ import annotations

import os
import subprocess

import pytest

from it_clients import create_topic, read_to_eof_confluent
from itutil import unique_topic

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip() or r.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def produce(bootstrap, topic, values, timeout_ms=6000):
    """Produce `values` with acks=all; returns ({value: offset} delivered, [(value,
    error)] failed). librdkafka retries KAFKA_STORAGE_ERROR (retriable) until
    message.timeout.ms, then reports the delivery as failed."""
    from confluent_kafka import Producer
    # Small batches (a few records each): the disk fills up between two of them.
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                  "batch.size": 4096, "message.timeout.ms": timeout_ms,
                  "retry.backoff.ms": 200})
    acked, failed = {}, []

    def report(err, msg):
        if err is None:
            acked[msg.value()] = msg.offset()
        else:
            failed.append((msg.value(), err))
    for v in values:
        p.produce(topic, v, partition=0, on_delivery=report)
        p.poll(0)
    assert p.flush(timeout_ms / 1000 + 20) == 0
    return acked, failed


def test_full_disk_refuses_writes_serves_reads_and_resumes(small_disk, make_broker):
    # small_disk first: torn down (unmounted) after the broker has stopped.
    data = small_disk / "data"
    b = make_broker({"log.dirs": str(data)})
    topic = unique_topic("disk-full")
    create_topic(b.bootstrap, topic)
    acked, failed = produce(b.bootstrap, topic, [b"before-%05d" % i + b"." * 1000
                                                 for i in range(50)])
    assert len(acked) == 50 and not failed
    st = os.statvfs(small_disk)
    filler = small_disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (st.f_bavail * st.f_frsize - 64 * 1024))   # leave 64 KiB
    values = [b"full-%05d" % i + b"." * 1000 for i in range(400)]  # ~400 KB: cannot all fit
    acked_full, failed_full = produce(b.bootstrap, topic, values)
    acked.update(acked_full)
    failed = failed_full
    assert acked_full, "nothing fitted: the filler left too little room"
    assert failed, "every record fitted: the disk did not fill up"
    assert {str(e) for _, e in failed} and all(
        e.name() in ("KAFKA_STORAGE_ERROR", "_MSG_TIMED_OUT") for _, e in failed), failed[:3]
    assert b.is_alive()
    # Reads go on, and every acknowledged record is there at its offset.
    got = {v: off for off, _k, v in read_to_eof_confluent(b.bootstrap, topic)}
    missing = {v: off for v, off in acked.items() if got.get(v) != off}
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. {list(missing)[:2]}"
    assert len(got) == len(acked)   # and nothing that was refused
    log = b.log_path.read_text()
    assert log.count("log dir full") == 1, "one line per transition, not per request"
    # Space back: writes resume without a restart.
    os.unlink(filler)
    after, failed = produce(b.bootstrap, topic, [b"after-%05d" % i for i in range(20)])
    assert len(after) == 20 and not failed
    got = {v: off for off, _k, v in read_to_eof_confluent(b.bootstrap, topic)}
    assert all(got.get(v) == off for v, off in {**acked, **after}.items())
    log = b.log_path.read_text()
    assert "log dir has space again" in log
    assert "handler failed" not in log and "Traceback" not in log
    assert b.is_alive()
    print(f"disk full: {len(acked_full)} of {len(values)} records acknowledged, "
          f"{len(failed_full)} refused; {len(after)} after space was freed")
