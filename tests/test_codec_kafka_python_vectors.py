"""Byte-exact vectors from another implementation: kafka-python 3.0.12's own protocol
classes (kafka.protocol.*, built from its copy of Kafka's JSON message definitions).

Each vector is a message with realistic field values (a metadata reply for a
two-broker cluster, a produce request carrying a real record batch built by
kafka-python's record builder, a read_committed fetch, topic creation with configs,
...) tried at an old and at a flexible version. For each:

1. kafka-python builds the message and encodes it;
2. kafkette decodes those bytes, consuming them exactly, and every field value of
   the vector is checked on the decoded message;
3. kafkette builds the same message from the same values and encodes it: the bytes
   must equal kafka-python's;
4. kafka-python decodes kafkette's bytes back to the same values.

A value is given once per message; at each version only the fields that exist in
that version are set (per kafkette's spec for kafkette, per kafka-python's schema
for kafka-python), so a disagreement about which fields a version has also shows up
as different bytes.
"""
from __future__ import annotations

import uuid

import pytest

pytest.importorskip("kafka")

from kafka.protocol.admin import (CreateTopicsRequest, CreateTopicsResponse,  # noqa: E402
                                  DeleteTopicsRequest, DeleteTopicsResponse,
                                  DescribeConfigsRequest, DescribeConfigsResponse)
from kafka.protocol.consumer import (FetchRequest, FetchResponse,  # noqa: E402
                                     ListOffsetsRequest, ListOffsetsResponse)
from kafka.protocol.metadata import (ApiVersionsRequest, ApiVersionsResponse,  # noqa: E402
                                     FindCoordinatorRequest, FindCoordinatorResponse,
                                     MetadataRequest, MetadataResponse)
from kafka.protocol.producer import (InitProducerIdRequest, InitProducerIdResponse,  # noqa: E402
                                     ProduceRequest, ProduceResponse)
from kafka.record.memory_records import MemoryRecordsBuilder  # noqa: E402

import kafkette.protocol.messages as messages  # noqa: E402
from kafkette.protocol.primitives import Reader  # noqa: E402
from kafkette.protocol.specs import load_all_specs, snake_case  # noqa: E402

SPECS = {s["name"]: s for s in load_all_specs().values()}
ZERO_UUID = uuid.UUID(int=0)
INT32_MIN = -(2**31)

# kafka-python renames two int32 bit-field fields of MetadataResponse (json_patch) and
# decodes them as a set of bit positions.
KP_RENAMES = {"topic_authorized_operations": "authorized_operations",
              "cluster_authorized_operations": "authorized_operations"}


# --------------------------------------------------------------------------- record batches
def record_batch(*, compression=0, producer_id=-1, producer_epoch=-1, base_sequence=-1,
                 transactional=False, n=3, base_offset=0) -> bytes:
    """A RecordBatch v2 built by kafka-python's own record builder."""
    b = MemoryRecordsBuilder(magic=2, compression_type=compression, batch_size=1 << 20,
                             offset=base_offset, transactional=transactional,
                             producer_id=producer_id, producer_epoch=producer_epoch,
                             base_sequence=base_sequence)
    for i in range(n):
        b.append(timestamp=1_700_000_000_000 + i, key=f"key-{i}".encode(),
                 value=f"value-{i}".encode() * (i + 1),
                 headers=[("trace-id", f"t{i}".encode())])
    b.close()
    return bytes(b.buffer())


BATCH_PLAIN = record_batch()
BATCH_GZIP = record_batch(compression=1, n=5, base_offset=100)
BATCH_TXN = record_batch(producer_id=4000, producer_epoch=2, base_sequence=0,
                         transactional=True, n=2)


# --------------------------------------------------------------------------- spec helpers
def _versions(text):
    text = str(text).strip()
    if text == "none":
        return None
    if text.endswith("+"):
        return int(text[:-1]), 1 << 15
    if "-" in text:
        lo, hi = text.split("-")
        return int(lo), int(hi)
    return int(text), int(text)


def _in(text, v):
    rng = _versions(text) if text is not None else None
    return rng is not None and rng[0] <= v <= rng[1]


def _spec_fields(spec, fields, kk_cls, top_cls):
    """{attr: (field spec, nested struct class or None, struct fields or None)}."""
    common = {c["name"]: c["fields"] for c in spec.get("common_structs") or []}
    out = {}
    for f in fields:
        et = f["type"][2:] if f["type"].startswith("[]") else f["type"]
        sub_cls = sub_fields = None
        if "fields" in f or et in common:
            sub_fields = f.get("fields") or common[et]
            sub_cls = getattr(kk_cls, et, None) or getattr(top_cls, et)
        out[snake_case(f["name"])] = (f, sub_cls, sub_fields)
    return out


def kk_build(spec, fields, kk_cls, top_cls, values: dict, v: int):
    """A kafkette message from a plain dict, setting only fields present at v."""
    info = _spec_fields(spec, fields, kk_cls, top_cls)
    kwargs = {}
    for name, value in values.items():
        assert name in info, f"{kk_cls.__name__} has no field {name}"
        f, sub_cls, sub_fields = info[name]
        if not _in(f["versions"], v):
            continue
        if sub_cls is not None and value is not None:
            if f["type"].startswith("[]"):
                value = [kk_build(spec, sub_fields, sub_cls, top_cls, x, v) for x in value]
            else:
                value = kk_build(spec, sub_fields, sub_cls, top_cls, value, v)
        kwargs[name] = value
    return kk_cls(**kwargs)


def _to_bits(x):
    return None if x == INT32_MIN else {i for i in range(32) if (x >> i) & 1}


def _kp_fields(kp_cls):
    fs = kp_cls._struct.fields
    return fs if isinstance(fs, dict) else {f.name: f for f in fs}


def kp_build(kp_cls, values: dict, v: int):
    """A kafka-python message from the same dict, setting only fields present at v
    according to kafka-python's own schema."""
    fields = _kp_fields(kp_cls)
    kwargs = {}
    for name, value in values.items():
        kp_name = KP_RENAMES.get(name, name)
        f = fields[kp_name]
        if not f.for_version_q(v):
            continue
        if f.type_str == "bitfield":
            value = _to_bits(value)
        elif (f.is_struct() or f.is_struct_array()) and value is not None:
            sub = f.data_class
            if f.is_struct_array():
                value = [kp_build(sub, x, v) for x in value]
            else:
                value = kp_build(sub, value, v)
        kwargs[kp_name] = value
    return kp_cls(**kwargs)


def assert_fields(obj, values: dict, kk_spec_fields, v, path=""):
    """Every value of the dict that exists at version v is on the decoded message."""
    for name, expected in values.items():
        f = next(x for x in kk_spec_fields if snake_case(x["name"]) == name)
        got = getattr(obj, name)
        where = f"{path}{name}"
        if not _in(f["versions"], v):
            continue
        if isinstance(expected, list) and expected and isinstance(expected[0], dict):
            assert got is not None and len(got) == len(expected), where
            for i, (g, e) in enumerate(zip(got, expected)):
                assert_fields(g, e, f["fields"] if "fields" in f else _common(f), v, f"{where}[{i}].")
        elif isinstance(expected, dict):
            assert got is not None, where
            assert_fields(got, expected, f["fields"] if "fields" in f else _common(f), v, f"{where}.")
        elif isinstance(got, memoryview):
            assert bytes(got) == expected, where
        else:
            assert got == expected, f"{where}: {got!r} != {expected!r}"


_COMMON = {}


def _common(f):
    et = f["type"][2:] if f["type"].startswith("[]") else f["type"]
    return _COMMON[et]


for _s in SPECS.values():
    for _c in _s.get("common_structs") or []:
        _COMMON.setdefault(_c["name"], _c["fields"])


def assert_kp_fields(kp_obj, values: dict, v, path=""):
    """kafka-python's decoding of kafkette's bytes carries the same values."""
    fields = _kp_fields(type(kp_obj))
    for name, expected in values.items():
        f = fields[KP_RENAMES.get(name, name)]
        if not f.for_version_q(v):
            continue
        got = getattr(kp_obj, f.name)
        where = f"{path}{name}"
        if f.type_str == "bitfield":
            assert got == _to_bits(expected), where
        elif f.is_struct_array() and expected is not None:
            assert len(got) == len(expected), where
            for i, (g, e) in enumerate(zip(got, expected)):
                assert_kp_fields(g, e, v, f"{where}[{i}].")
        elif f.is_struct() and expected is not None:
            assert_kp_fields(got, expected, v, f"{where}.")
        elif isinstance(expected, uuid.UUID) and expected == ZERO_UUID:
            assert got in (None, ZERO_UUID), where
        else:
            if isinstance(got, (memoryview, bytearray)):
                got = bytes(got)
            assert got == expected, f"{where}: {got!r} != {expected!r}"


# --------------------------------------------------------------------------- the vectors
TOPIC_ID = uuid.UUID("6f1c3f6e-8a7b-4b8e-9d52-0c6a3e2f1a01")
TOPIC_ID_2 = uuid.UUID("0d3f0a52-1c2b-4e55-a6a8-93b1f4c1d7e2")

VECTORS = []


def vector(kp_cls, versions, values):
    for v in versions:
        VECTORS.append(pytest.param(kp_cls, v, values, id=f"{kp_cls.__name__}-v{v}"))


# ApiVersions ----------------------------------------------------------------
vector(ApiVersionsRequest, [0, 1, 3], {
    "client_software_name": "kafka-python", "client_software_version": "3.0.12"})
vector(ApiVersionsResponse, [0, 1, 3], {
    "error_code": 0,
    "api_keys": [
        {"api_key": 0, "min_version": 0, "max_version": 11},
        {"api_key": 1, "min_version": 4, "max_version": 17},
        {"api_key": 3, "min_version": 0, "max_version": 12},
        {"api_key": 18, "min_version": 0, "max_version": 4},
    ],
    "throttle_time_ms": 0,
    "supported_features": [{"name": "metadata.version", "min_version": 1, "max_version": 21}],
    "finalized_features_epoch": 1234,
    "finalized_features": [{"name": "metadata.version", "max_version_level": 21,
                            "min_version_level": 21}],
})

# Metadata -------------------------------------------------------------------
vector(MetadataRequest, [1, 4, 9, 12], {
    "topics": [{"name": "orders", "topic_id": ZERO_UUID},
               {"name": "payments", "topic_id": ZERO_UUID}],
    "allow_auto_topic_creation": True,
    "include_cluster_authorized_operations": True,
    "include_topic_authorized_operations": True,
})
vector(MetadataRequest, [1, 9, 12], {"topics": None, "allow_auto_topic_creation": False})
vector(MetadataResponse, [1, 5, 8, 9, 12], {
    "throttle_time_ms": 20,
    "brokers": [{"node_id": 1, "host": "broker-1.kafkette.local", "port": 9092, "rack": "use1-az1"},
                {"node_id": 2, "host": "broker-2.kafkette.local", "port": 9093, "rack": None}],
    "cluster_id": "kXh3Yd0aT9ib5ZTBKrw1vA",
    "controller_id": 1,
    "topics": [
        {"error_code": 0, "name": "orders", "topic_id": TOPIC_ID, "is_internal": False,
         "partitions": [
             {"error_code": 0, "partition_index": 0, "leader_id": 1, "leader_epoch": 5,
              "replica_nodes": [1, 2], "isr_nodes": [1, 2], "offline_replicas": []},
             {"error_code": 9, "partition_index": 1, "leader_id": 2, "leader_epoch": 3,
              "replica_nodes": [2, 1], "isr_nodes": [2], "offline_replicas": [1]},
         ],
         "topic_authorized_operations": 0b0000_1111_1111_1000},
        {"error_code": 3, "name": "missing", "topic_id": ZERO_UUID, "is_internal": False,
         "partitions": [], "topic_authorized_operations": INT32_MIN},
    ],
    "cluster_authorized_operations": INT32_MIN,
})

# Produce --------------------------------------------------------------------
vector(ProduceRequest, [3, 7, 9, 10], {
    "transactional_id": None, "acks": -1, "timeout_ms": 30000,
    "topic_data": [
        {"name": "orders", "partition_data": [{"index": 0, "records": BATCH_PLAIN},
                                              {"index": 2, "records": BATCH_GZIP}]},
        {"name": "payments", "partition_data": [{"index": 1, "records": BATCH_PLAIN}]},
    ],
})
vector(ProduceRequest, [3, 9], {
    "transactional_id": "txn-orders-1", "acks": 1, "timeout_ms": 5000,
    "topic_data": [{"name": "orders", "partition_data": [{"index": 0, "records": BATCH_TXN}]}],
})
vector(ProduceResponse, [7, 8, 9, 10], {
    "responses": [{"name": "orders", "partition_responses": [
        {"index": 0, "error_code": 0, "base_offset": 1042, "log_append_time_ms": -1,
         "log_start_offset": 0, "record_errors": [], "error_message": None},
        {"index": 2, "error_code": 6, "base_offset": -1, "log_append_time_ms": -1,
         "log_start_offset": -1,
         "record_errors": [{"batch_index": 1, "batch_index_error_message": "bad record"}],
         "error_message": "NOT_LEADER_OR_FOLLOWER",
         "current_leader": {"leader_id": 2, "leader_epoch": 7}},
    ]}],
    "throttle_time_ms": 0,
    "node_endpoints": [{"node_id": 2, "host": "broker-2.kafkette.local", "port": 9093,
                        "rack": None}],
})

# Fetch ----------------------------------------------------------------------
vector(FetchRequest, [4, 7, 11, 12, 13, 15], {
    "replica_id": -1, "max_wait_ms": 500, "min_bytes": 1, "max_bytes": 52428800,
    "isolation_level": 1, "session_id": 0, "session_epoch": -1,
    "topics": [{"topic": "orders", "topic_id": TOPIC_ID, "partitions": [
        {"partition": 0, "current_leader_epoch": 5, "fetch_offset": 1042,
         "last_fetched_epoch": 4, "log_start_offset": -1, "partition_max_bytes": 1048576},
        {"partition": 1, "current_leader_epoch": -1, "fetch_offset": 0,
         "last_fetched_epoch": -1, "log_start_offset": -1, "partition_max_bytes": 1048576},
    ]}],
    "forgotten_topics_data": [{"topic": "old-topic", "topic_id": TOPIC_ID_2,
                               "partitions": [0, 3]}],
    "rack_id": "use1-az1",
})
vector(FetchRequest, [12, 15], {
    "cluster_id": "kXh3Yd0aT9ib5ZTBKrw1vA", "replica_id": -1, "max_wait_ms": 100,
    "min_bytes": 1, "max_bytes": 1024, "isolation_level": 0, "session_id": 77,
    "session_epoch": 3, "topics": [], "forgotten_topics_data": [], "rack_id": "",
    "replica_state": {"replica_id": 3, "replica_epoch": 12},
})
vector(FetchResponse, [4, 7, 11, 12, 13, 16], {
    "throttle_time_ms": 0, "error_code": 0, "session_id": 77,
    "responses": [{"topic": "orders", "topic_id": TOPIC_ID, "partitions": [
        {"partition_index": 0, "error_code": 0, "high_watermark": 1045,
         "last_stable_offset": 1044, "log_start_offset": 0,
         "aborted_transactions": [{"producer_id": 4000, "first_offset": 1030}],
         "preferred_read_replica": -1, "records": BATCH_PLAIN + BATCH_GZIP},
        {"partition_index": 1, "error_code": 1, "high_watermark": -1,
         "last_stable_offset": -1, "log_start_offset": -1, "aborted_transactions": None,
         "preferred_read_replica": 2, "records": b"",
         "diverging_epoch": {"epoch": 4, "end_offset": 990},
         "current_leader": {"leader_id": 2, "leader_epoch": 7},
         "snapshot_id": {"end_offset": 900, "epoch": 3}},
    ]}],
    "node_endpoints": [{"node_id": 2, "host": "broker-2.kafkette.local", "port": 9093,
                        "rack": "use1-az2"}],
})

# ListOffsets ----------------------------------------------------------------
vector(ListOffsetsRequest, [1, 2, 5, 6, 8], {
    "replica_id": -1, "isolation_level": 1,
    "topics": [{"name": "orders", "partitions": [
        {"partition_index": 0, "current_leader_epoch": 5, "timestamp": -1},
        {"partition_index": 1, "current_leader_epoch": -1, "timestamp": -2},
        {"partition_index": 2, "current_leader_epoch": -1, "timestamp": 1_700_000_000_123},
    ]}],
})
vector(ListOffsetsResponse, [1, 4, 6, 8], {
    "throttle_time_ms": 0,
    "topics": [{"name": "orders", "partitions": [
        {"partition_index": 0, "error_code": 0, "timestamp": -1, "offset": 1045,
         "leader_epoch": 5},
        {"partition_index": 2, "error_code": 0, "timestamp": 1_700_000_000_125, "offset": 17,
         "leader_epoch": 5},
    ]}],
})

# CreateTopics ---------------------------------------------------------------
vector(CreateTopicsRequest, [2, 3, 5, 7], {
    "topics": [
        {"name": "orders", "num_partitions": 3, "replication_factor": 3, "assignments": [],
         "configs": [{"name": "cleanup.policy", "value": "compact"},
                     {"name": "retention.ms", "value": "86400000"},
                     {"name": "min.insync.replicas", "value": None}]},
        {"name": "manual", "num_partitions": -1, "replication_factor": -1,
         "assignments": [{"partition_index": 0, "broker_ids": [1, 2]},
                         {"partition_index": 1, "broker_ids": [2, 3]}],
         "configs": []},
    ],
    "timeout_ms": 30000, "validate_only": False,
})
vector(CreateTopicsResponse, [2, 3, 5, 7], {
    "throttle_time_ms": 0,
    "topics": [
        {"name": "orders", "topic_id": TOPIC_ID, "error_code": 0, "error_message": None,
         "num_partitions": 3, "replication_factor": 3,
         "configs": [{"name": "cleanup.policy", "value": "compact", "read_only": False,
                      "config_source": 1, "is_sensitive": False},
                     {"name": "sasl.jaas.config", "value": None, "read_only": False,
                      "config_source": 5, "is_sensitive": True}]},
        {"name": "orders", "topic_id": ZERO_UUID, "error_code": 36,
         "error_message": "Topic 'orders' already exists.", "topic_config_error_code": 29,
         "num_partitions": -1, "replication_factor": -1, "configs": None},
    ],
})

# DeleteTopics ---------------------------------------------------------------
vector(DeleteTopicsRequest, [1, 3, 4, 5], {
    "topic_names": ["orders", "payments"], "timeout_ms": 30000})
vector(DeleteTopicsRequest, [6], {
    "topics": [{"name": "orders", "topic_id": ZERO_UUID},
               {"name": None, "topic_id": TOPIC_ID}],
    "timeout_ms": 15000})
vector(DeleteTopicsResponse, [1, 3, 4, 5, 6], {
    "throttle_time_ms": 0,
    "responses": [
        {"name": "orders", "topic_id": TOPIC_ID, "error_code": 0, "error_message": None},
        {"name": "payments", "topic_id": ZERO_UUID, "error_code": 3,
         "error_message": "This server does not host this topic-partition."},
    ],
})

# InitProducerId -------------------------------------------------------------
vector(InitProducerIdRequest, [0, 1, 2, 3, 4], {
    "transactional_id": "txn-orders-1", "transaction_timeout_ms": 60000,
    "producer_id": 4000, "producer_epoch": 2})
vector(InitProducerIdRequest, [0, 2, 4], {
    "transactional_id": None, "transaction_timeout_ms": 2147483647,
    "producer_id": -1, "producer_epoch": -1})
vector(InitProducerIdResponse, [0, 1, 2, 4], {
    "throttle_time_ms": 0, "error_code": 0, "producer_id": 4000, "producer_epoch": 3})

# DescribeConfigs ------------------------------------------------------------
vector(DescribeConfigsRequest, [1, 2, 3, 4], {
    "resources": [
        {"resource_type": 2, "resource_name": "orders",
         "configuration_keys": ["cleanup.policy", "retention.ms"]},
        {"resource_type": 4, "resource_name": "1", "configuration_keys": None},
    ],
    "include_synonyms": True, "include_documentation": True,
})
vector(DescribeConfigsResponse, [1, 3, 4], {
    "throttle_time_ms": 0,
    "results": [
        {"error_code": 0, "error_message": None, "resource_type": 2, "resource_name": "orders",
         "configs": [
             {"name": "cleanup.policy", "value": "compact", "read_only": False,
              "config_source": 1, "is_sensitive": False,
              "synonyms": [{"name": "cleanup.policy", "value": "compact", "source": 1},
                           {"name": "log.cleanup.policy", "value": "delete", "source": 5}],
              "config_type": 2, "documentation": "Retention policy."},
             {"name": "ssl.key.password", "value": None, "read_only": True,
              "config_source": 5, "is_sensitive": True, "synonyms": [],
              "config_type": 9, "documentation": None},
         ]},
        {"error_code": 3, "error_message": "unknown topic", "resource_type": 2,
         "resource_name": "ghost", "configs": []},
    ],
})

# FindCoordinator ------------------------------------------------------------
vector(FindCoordinatorRequest, [0, 1, 3], {"key": "orders-consumers", "key_type": 0})
vector(FindCoordinatorRequest, [4, 6], {"key_type": 1,
                                        "coordinator_keys": ["txn-orders-1", "txn-orders-2"]})
vector(FindCoordinatorResponse, [0, 1, 3], {
    "throttle_time_ms": 0, "error_code": 0, "error_message": None,
    "node_id": 2, "host": "broker-2.kafkette.local", "port": 9093})
vector(FindCoordinatorResponse, [4, 6], {
    "throttle_time_ms": 0,
    "coordinators": [
        {"key": "txn-orders-1", "node_id": 2, "host": "broker-2.kafkette.local", "port": 9093,
         "error_code": 0, "error_message": None},
        {"key": "txn-orders-2", "node_id": -1, "host": "", "port": -1,
         "error_code": 15, "error_message": "The coordinator is not available."},
    ]})


# --------------------------------------------------------------------------- the tests
def test_core_apis_are_covered_at_an_old_and_a_flexible_version():
    covered = {}
    for p in VECTORS:
        kp_cls, v, _ = p.values
        covered.setdefault(kp_cls.__name__, set()).add(v)
    for api in ("ApiVersions", "Metadata", "Produce", "Fetch", "ListOffsets", "CreateTopics",
                "DeleteTopics", "InitProducerId", "DescribeConfigs", "FindCoordinator"):
        for kind in ("Request", "Response"):
            name = api + kind
            flex = getattr(messages, name).FLEXIBLE_VERSION
            vs = covered.get(name, set())
            assert any(v < flex for v in vs), f"{name}: no pre-flexible vector"
            assert any(v >= flex for v in vs), f"{name}: no flexible vector"


@pytest.mark.parametrize("kp_cls,v,values", VECTORS)
def test_kafka_python_vector(kp_cls, v, values):
    name = kp_cls.__name__
    kk_cls = getattr(messages, name)
    spec = SPECS[name]
    assert kk_cls.MIN_VERSION <= v <= kk_cls.MAX_VERSION

    kp_msg = kp_build(kp_cls, values, v)
    kp_bytes = bytes(kp_msg.encode(version=v))

    # kafkette decodes kafka-python's bytes exactly and sees every value
    r = Reader(kp_bytes)
    decoded = kk_cls.read(r, v)
    assert r.remaining() == 0, f"{r.remaining()} bytes not consumed"
    assert_fields(decoded, values, spec["fields"], v)

    # kafkette encodes the same values to the same bytes
    kk_msg = kk_build(spec, spec["fields"], kk_cls, kk_cls, values, v)
    kk_bytes = kk_msg.encode(v)
    assert kk_bytes == kp_bytes, (
        f"{name} v{v}\nkafkette     {kk_bytes.hex()}\nkafka-python {kp_bytes.hex()}")
    assert decoded == kk_msg

    # and kafka-python reads kafkette's bytes back to the same values
    kp_back = kp_cls.decode(kk_bytes, version=v)
    assert_kp_fields(kp_back, values, v)


def test_produce_records_are_kafka_python_batches():
    """The record sets in the vectors are real v2 batches that kafka-python reads."""
    from kafka.record.memory_records import MemoryRecords
    req = messages.ProduceRequest.decode(
        kp_build(ProduceRequest, {"acks": -1, "timeout_ms": 1000, "topic_data": [
            {"name": "t", "partition_data": [{"index": 0, "records": BATCH_GZIP}]}]}, 9
        ).encode(version=9), 9)
    recs = MemoryRecords(bytes(req.topic_data[0].partition_data[0].records))
    batch = recs.next_batch()
    assert batch.validate_crc()
    assert batch.compression_type == 1
    assert [r.key for r in batch] == [f"key-{i}".encode() for i in range(5)]
