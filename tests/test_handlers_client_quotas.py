"""DescribeClientQuotas (48) and AlterClientQuotas (49), KIP-546: quotas go into the
metadata image (and survive a restart), Kafka's validation of entities, keys and
filters, the authorization they need, and their enforcement at the dispatcher:
throttle_time_ms in the answer, the connection muted (KIP-219 versions) or the answer
delayed (older versions)."""
from __future__ import annotations

import asyncio
import inspect

import pytest

from handler_harness import (  # noqa: F401
    CLIENT_ID,
    call,
    create_topic,
    decode_response,
    encode_request,
    fetch_request,
    make_broker,
    produce_request,
)
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import (
    AlterClientQuotasRequest,
    ApiVersionsRequest,
    DescribeClientQuotasRequest,
)
from kafkette.protocol.records import build_batch

A = AlterClientQuotasRequest
D = DescribeClientQuotasRequest
EXACT, DEFAULT, ANY = 0, 1, 2
ADMIN = "User:admin"
AUTHZ = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
         "super.users": ADMIN}


def entry(entity, ops):
    """entity: [(type, name)], ops: {key: value or None (remove)}."""
    return A.EntryData(entity=[A.EntryData.EntityData(entity_type=t, entity_name=n)
                               for t, n in entity],
                       ops=[A.EntryData.OpData(key=k, value=0.0 if v is None else v,
                                               remove=v is None) for k, v in ops.items()])


def alter(b, *entries, validate_only=False, version=1, principal=None):
    r = _call(b, A(entries=list(entries), validate_only=validate_only), version, principal)
    return [(e.error_code, e.error_message) for e in r.entries]


def describe(b, components=(), strict=False, version=1, principal=None):
    r = _call(b, D(components=[D.ComponentData(entity_type=t, match_type=m, match=n)
                               for t, m, n in components], strict=strict), version, principal)
    if r.error_code:
        return r.error_code, r.error_message
    return {tuple((e.entity_type, e.entity_name) for e in x.entity):
            {v.key: v.value for v in x.values} for x in r.entries}


def _call(b, request, version, principal=None):
    if principal is None:
        return call(b, request, version)
    frame, corr = encode_request(request, version)
    result = b.dispatcher.handle(frame, client_host="127.0.0.1", principal=principal)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return decode_response(result, request.API_KEY, version, corr)


async def _await(a):
    return await a


@pytest.fixture
def b(make_broker):
    return make_broker()


def test_api_versions_lists_both_apis(b):
    r = call(b, ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
    keys = {k.api_key: (k.min_version, k.max_version) for k in r.api_keys}
    assert keys[48] == (0, 1) and keys[49] == (0, 1)


@pytest.mark.parametrize("version", [0, 1])
def test_alter_then_describe(b, version):
    assert alter(b, entry([("user", "alice")], {"producer_byte_rate": 1024.0}),
                 entry([("user", "alice"), ("client-id", None)],
                       {"consumer_byte_rate": 2048.0, "request_percentage": 12.5}),
                 entry([("client-id", "app")], {"controller_mutation_rate": 3.0}),
                 entry([("ip", "127.0.0.1")], {"connection_creation_rate": 5.0}),
                 version=version) == [(0, None)] * 4
    assert describe(b, version=version) == {
        (("user", "alice"),): {"producer_byte_rate": 1024.0},
        (("client-id", None), ("user", "alice")): {"consumer_byte_rate": 2048.0,
                                                   "request_percentage": 12.5},
        (("client-id", "app"),): {"controller_mutation_rate": 3.0},
        (("ip", "127.0.0.1"),): {"connection_creation_rate": 5.0},
    }
    # Exact, not strict: alice's entities, with or without a client-id part.
    assert set(describe(b, [("user", EXACT, "alice")])) == {
        (("user", "alice"),), (("client-id", None), ("user", "alice"))}
    # Strict: only the entity made of the user alone.
    assert set(describe(b, [("user", EXACT, "alice")], strict=True)) == {(("user", "alice"),)}
    assert set(describe(b, [("client-id", DEFAULT, None)])) == {
        (("client-id", None), ("user", "alice"))}
    assert set(describe(b, [("client-id", ANY, None)], strict=True)) == {(("client-id", "app"),)}
    assert describe(b, [("user", EXACT, "bob")]) == {}
    assert describe(b, strict=True) == {}


def test_remove_and_validate_only(b):
    alter(b, entry([("client-id", "c")], {"producer_byte_rate": 10.0,
                                          "consumer_byte_rate": 20.0}))
    assert alter(b, entry([("client-id", "c")], {"producer_byte_rate": 99.0}),
                 validate_only=True) == [(0, None)]
    assert describe(b) == {(("client-id", "c"),): {"producer_byte_rate": 10.0,
                                                   "consumer_byte_rate": 20.0}}
    assert alter(b, entry([("client-id", "c")], {"producer_byte_rate": None})) == [(0, None)]
    assert describe(b) == {(("client-id", "c"),): {"consumer_byte_rate": 20.0}}
    alter(b, entry([("client-id", "c")], {"consumer_byte_rate": None}))
    assert describe(b) == {}
    assert b.image.client_quotas == {}


@pytest.mark.parametrize("entity,ops", [
    ([("user", "u")], {"no_such_key": 1.0}),
    ([("user", "u")], {"connection_creation_rate": 1.0}),       # an ip key
    ([("ip", "127.0.0.1")], {"producer_byte_rate": 1.0}),       # a user/client key
    ([("ip", "not-an-ip")], {"connection_creation_rate": 1.0}),
    ([("ip", "127.0.0.1"), ("user", "u")], {"connection_creation_rate": 1.0}),
    ([("user", "u"), ("user", "v")], {"producer_byte_rate": 1.0}),
    ([("group", "g")], {"producer_byte_rate": 1.0}),
    ([], {"producer_byte_rate": 1.0}),
    ([("user", "u")], {"producer_byte_rate": 1.5}),             # a LONG
    ([("user", "u")], {"producer_byte_rate": -1.0}),
])
def test_invalid_entries_are_refused_alone(b, entity, ops):
    got = alter(b, entry(entity, ops), entry([("user", "ok")], {"producer_byte_rate": 5.0}))
    assert got[0][0] == ErrorCode.INVALID_REQUEST and got[0][1]
    assert got[1] == (0, None)
    assert describe(b) == {(("user", "ok"),): {"producer_byte_rate": 5.0}}


@pytest.mark.parametrize("components", [
    [("user", EXACT, None)],
    [("user", DEFAULT, "x")],
    [("user", ANY, "x")],
    [("user", 7, None)],
    [("user", ANY, None), ("user", EXACT, "u")],
    [("ip", ANY, None), ("user", ANY, None)],
    [("group", ANY, None)],
])
def test_invalid_filters(b, components):
    code, message = describe(b, components)
    assert code == ErrorCode.INVALID_REQUEST and message


def test_authorization(make_broker):
    b = make_broker(AUTHZ)
    e = entry([("user", "u")], {"producer_byte_rate": 5.0})
    assert alter(b, e, principal="User:eve")[0][0] == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert describe(b, principal="User:eve")[0] == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert b.image.client_quotas == {}
    assert alter(b, e, principal=ADMIN) == [(0, None)]
    assert describe(b, principal=ADMIN) == {(("user", "u"),): {"producer_byte_rate": 5.0}}


def test_quotas_survive_a_restart(make_broker):
    b = make_broker()
    alter(b, entry([("user", None)], {"consumer_byte_rate": 777.0}))
    make_broker.close(b)
    b = make_broker()
    assert describe(b) == {(("user", None),): {"consumer_byte_rate": 777.0}}


# -- enforcement --------------------------------------------------------------------

class FakeConnection:
    def __init__(self):
        self.muted: list[int] = []

    def mute_for(self, ms):
        self.muted.append(ms)


def send(b, request, version, conn):
    frame, corr = encode_request(request, version)
    return b.dispatcher.handle(frame, client_host="127.0.0.1", connection=conn), corr


def test_produce_over_quota_is_answered_with_throttle_and_muted(b):
    create_topic(b, "t")
    alter(b, entry([("client-id", CLIENT_ID)], {"producer_byte_rate": 1000.0}))
    conn = FakeConnection()
    req = produce_request("t", {0: build_batch([(b"k", b"x" * 4000, [])], timestamp_ms=1)})
    throttles = []
    for _ in range(3):  # 3 x ~4 KB over a 10 s minimum window: over 1000 B/s
        result, corr = send(b, req, 9, conn)
        resp = decode_response(result, 0, 9, corr)
        assert resp.responses[0].partition_responses[0].error_code == 0
        throttles.append(resp.throttle_time_ms)
    assert throttles[0] == 0 and throttles[2] > 0
    assert conn.muted == [t for t in throttles if t > 0]
    # The throttle is Kafka's formula over what was recorded: 3 requests over 10 s.
    size = len(encode_request(req, 9)[0])
    assert throttles[2] == round((3 * size / 10 - 1000) / 1000 * 10_000)
    # Other client ids are not throttled.
    frame, corr = encode_request(req, 9, client_id="someone-else")
    resp = decode_response(b.dispatcher.handle(frame, connection=conn), 0, 9, corr)
    assert resp.throttle_time_ms == 0


def test_old_produce_versions_get_a_delayed_answer(b):
    create_topic(b, "t")
    alter(b, entry([("client-id", CLIENT_ID)], {"producer_byte_rate": 10_000.0}))
    conn = FakeConnection()
    # ~110 KB in one request: 11 KB/s over the 10 s window, 10 % over: 1 s.
    req = produce_request("t", {0: build_batch([(b"k", b"x" * 110_000, [])], timestamp_ms=1)})
    result, corr = send(b, req, 5, conn)
    assert inspect.isawaitable(result) and conn.muted == []
    resp = decode_response(asyncio.run(_await(result)), 0, 5, corr)
    assert 900 <= resp.throttle_time_ms <= 1100


def test_fetch_over_quota_is_throttled(b):
    create_topic(b, "t")
    call(b, produce_request("t", {0: build_batch([(b"k", b"y" * 30_000, [])],
                                                 timestamp_ms=1)}), 9)
    alter(b, entry([("user", None), ("client-id", None)], {"consumer_byte_rate": 2000.0}))
    conn = FakeConnection()
    result, corr = send(b, fetch_request("t", {0: 0}), 12, conn)
    resp = decode_response(result, 1, 12, corr)
    assert len(resp.responses[0].partitions[0].records) > 30_000
    # ~30 KB over 10 s is 3 KB/s against 2 KB/s: throttled about 5 s.
    assert 4500 <= resp.throttle_time_ms <= 5500 and conn.muted == [resp.throttle_time_ms]


def test_metrics_show_rates_and_throttles(b):
    from prometheus_client import generate_latest
    create_topic(b, "t")
    alter(b, entry([("client-id", CLIENT_ID)], {"producer_byte_rate": 1000.0}))
    req = produce_request("t", {0: build_batch([(b"k", b"x" * 20_000, [])], timestamp_ms=1)})
    conn = FakeConnection()
    for _ in range(2):
        send(b, req, 9, conn)
    text = generate_latest(b.metrics.registry).decode()
    labels = f'{{client_id="{CLIENT_ID}",user=""}}'
    assert f"kafka_server_produce_throttled_requests_total{labels} 2.0" in text
    assert f"kafka_server_produce_throttle_time_ms_total{labels} {float(sum(conn.muted))}" in text
    rate = [line for line in text.splitlines()
            if line.startswith("kafka_server_produce_byte_rate" + labels)]
    assert rate and 4000 < float(rate[0].split()[-1]) < 4200  # ~40 KB over 10 s


def test_follower_fetches_are_exempt(b):
    create_topic(b, "t")
    call(b, produce_request("t", {0: build_batch([(b"k", b"y" * 30_000, [])],
                                                 timestamp_ms=1)}), 9)
    alter(b, entry([("user", None)], {"consumer_byte_rate": 1.0, "request_percentage": 0.001}))
    req = fetch_request("t", {0: 0})
    req.replica_id = 7  # a follower (v12 carries the replica id in the body)
    conn = FakeConnection()
    result, corr = send(b, req, 12, conn)
    resp = decode_response(result, 1, 12, corr)
    assert resp.throttle_time_ms == 0 and conn.muted == []
    # A consumer's fetch of the same bytes is throttled.
    result, corr = send(b, fetch_request("t", {0: 0}), 12, conn)
    assert decode_response(result, 1, 12, corr).throttle_time_ms > 0


def test_request_percentage_throttles_any_api(b):
    alter(b, entry([("client-id", CLIENT_ID)], {"request_percentage": 0.0001}))
    conn = FakeConnection()
    req = ApiVersionsRequest(client_software_name="t", client_software_version="1")
    result, corr = send(b, req, 3, conn)
    resp = decode_response(result, 18, 3, corr, response_version=3)
    assert resp.throttle_time_ms > 0 and conn.muted == [resp.throttle_time_ms]
