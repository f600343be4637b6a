"""The client quota manager (broker/quotas.py), sans-IO with a fake clock: Kafka's
precedence of quota entities, its sampled rate, and its throttle time formula
(observed - quota) / quota * window."""
from __future__ import annotations

from types import MappingProxyType

import pytest

from kafkette.broker.quotas import (
    CONSUMER_BYTE_RATE,
    MAX_SENSORS,
    PRODUCER_BYTE_RATE,
    QuotaManager,
    Rate,
    entity_key,
    resolve,
    throttle_time_ms,
)

U, C = "user", "client-id"



def q(entries):
    return MappingProxyType({entity_key(e): MappingProxyType(v) for e, v in entries})


def test_precedence_follows_kafka_order():
    order = [
        ([(U, "u"), (C, "c")], "u/c"),
        ([(U, "u"), (C, None)], "u/<default client>"),
        ([(U, "u")], "u"),
        ([(U, None), (C, "c")], "<default user>/c"),
        ([(U, None), (C, None)], "<default user>/<default client>"),
        ([(U, None)], "<default user>"),
        ([(C, "c")], "c"),
        ([(C, None)], "<default client>"),
    ]
    # With all eight set, the first wins; removing the winner each time exposes the next.
    for i in range(len(order)):
        qs = q([(e, {PRODUCER_BYTE_RATE: float(j + 1)}) for j, (e, _) in enumerate(order)
                if j >= i])
        bound, _ = resolve(qs, "u", "c", PRODUCER_BYTE_RATE)
        assert bound == i + 1, order[i][1]
    assert resolve(q([]), "u", "c", PRODUCER_BYTE_RATE) is None


def test_precedence_is_per_key():
    qs = q([([(U, "u")], {PRODUCER_BYTE_RATE: 10.0}),
            ([(C, "c")], {CONSUMER_BYTE_RATE: 20.0})])
    assert resolve(qs, "u", "c", PRODUCER_BYTE_RATE) == (10.0, ("u", ""))
    assert resolve(qs, "u", "c", CONSUMER_BYTE_RATE) == (20.0, ("", "c"))
    assert resolve(qs, "other", "c", PRODUCER_BYTE_RATE) is None


def test_default_entities_give_each_client_its_own_sensor():
    qs = q([([(C, None)], {PRODUCER_BYTE_RATE: 1000.0})])
    m = QuotaManager()
    now = 0
    assert m.record(qs, "u", "a", PRODUCER_BYTE_RATE, 50_000, now) > 0
    # Another client id under the default quota has its own, untouched rate.
    assert m.record(qs, "u", "b", PRODUCER_BYTE_RATE, 100, now) == 0
    # A named client-id quota is shared by every user of that client id.
    qs = q([([(C, "shared")], {PRODUCER_BYTE_RATE: 1000.0})])
    m = QuotaManager()
    m.record(qs, "u1", "shared", PRODUCER_BYTE_RATE, 20_000, now)
    assert m.record(qs, "u2", "shared", PRODUCER_BYTE_RATE, 100, now) > 0


def test_rate_never_measures_over_less_than_num_minus_one_windows():
    r = Rate(11, 1000, now_ms=0)
    r.record(10_000, 0)
    # 10 full windows are assumed at the start: 10 000 bytes over 10 s.
    assert r.window_size_ms(0) == 10_000
    assert r.measure(0) == pytest.approx(1000.0)
    # After 20 s of silence every sample has expired.
    assert r.measure(20_000) == 0


def test_rate_over_a_steady_stream():
    r = Rate(11, 1000, now_ms=0)
    for t in range(0, 30_000, 100):  # 100 bytes every 100 ms: 1000 B/s
        r.record(100, t)
    assert r.measure(29_900) == pytest.approx(1000.0, rel=0.1)


def test_throttle_time_is_kafkas_formula():
    qs = q([([(C, "c")], {PRODUCER_BYTE_RATE: 1000.0})])
    m = QuotaManager()  # 11 windows of 1 s
    # Within the quota: 9 000 bytes over the 10 s minimum window is 900 B/s.
    assert m.record(qs, "", "c", PRODUCER_BYTE_RATE, 9000, 0) == 0
    # 6 000 more: 15 000 / 10 s = 1500 B/s, 50 % over: half the window, 5 s.
    assert m.record(qs, "", "c", PRODUCER_BYTE_RATE, 6000, 0) == 5000
    assert throttle_time_ms(1500, 1000, 10_000) == 5000
    assert throttle_time_ms(1000, 1000, 10_000) == 0
    assert m.throttled[(PRODUCER_BYTE_RATE, "", "c")] == [1, 5000]


def test_waiting_out_the_throttle_brings_the_rate_back_to_the_quota():
    qs = q([([(C, "c")], {PRODUCER_BYTE_RATE: 1000.0})])
    m = QuotaManager()
    now = 0
    sent = 0
    # A client that sends 2 000 bytes whenever it is allowed to, and honours the
    # throttle time it is given, gets the quota on average.
    while now < 60_000:
        sent += 2000
        now += max(m.record(qs, "", "c", PRODUCER_BYTE_RATE, 2000, now), 1)
    assert sent / (now / 1000) == pytest.approx(1000, rel=0.25)


def test_throttle_is_capped_at_the_whole_window():
    qs = q([([(C, "c")], {PRODUCER_BYTE_RATE: 1.0})])
    m = QuotaManager(window_num=11, window_size_s=1)
    assert m.record(qs, "", "c", PRODUCER_BYTE_RATE, 1e9, 0) == 11_000


def test_sensors_are_bounded():
    qs = q([([(C, None)], {PRODUCER_BYTE_RATE: 1.0})])
    m = QuotaManager()
    for i in range(MAX_SENSORS + 50):
        m.record(qs, "", f"c{i}", PRODUCER_BYTE_RATE, 100, 0)
    assert len(m.rates(0)) == MAX_SENSORS
    assert len(m.throttled) <= MAX_SENSORS


def test_a_changed_quota_applies_to_the_next_request():
    m = QuotaManager()
    qs = q([([(C, "c")], {PRODUCER_BYTE_RATE: 1e9})])
    assert m.record(qs, "", "c", PRODUCER_BYTE_RATE, 20_000, 0) == 0
    # A new image (the quota lowered): the cached resolution must not be reused.
    qs = q([([(C, "c")], {PRODUCER_BYTE_RATE: 1000.0})])
    assert m.record(qs, "", "c", PRODUCER_BYTE_RATE, 1, 0) > 0
    assert m.record(q([]), "", "c", PRODUCER_BYTE_RATE, 1, 0) == 0


def test_quota_records_round_trip_through_a_snapshot():
    from kafkette.controller.metadata_image import (
        MetadataImage, apply_records, image_to_records, quota_record)
    image = apply_records(MetadataImage(cluster_id="c", controller_id=1), [
        quota_record(entity_key([(U, "u"), (C, None)]), PRODUCER_BYTE_RATE, 10.0),
        quota_record(entity_key([(U, "u"), (C, None)]), CONSUMER_BYTE_RATE, 20.0),
        quota_record(entity_key([(C, "c")]), PRODUCER_BYTE_RATE, 30.0),
        quota_record(entity_key([(C, "c")]), PRODUCER_BYTE_RATE, None),   # removed
    ], 3)
    assert dict(image.client_quotas) == {
        ((C, None), (U, "u")): {PRODUCER_BYTE_RATE: 10.0, CONSUMER_BYTE_RATE: 20.0}}
    rebuilt = apply_records(MetadataImage(cluster_id="", controller_id=1),
                            image_to_records(image), 3)
    assert rebuilt.client_quotas == image.client_quotas
