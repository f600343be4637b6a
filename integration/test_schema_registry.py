"""The built-in Schema Registry with confluent-kafka's own client and serializers:
Avro, JSON Schema and Protobuf round trips through kafkette's broker and registry,
evolution refused at BACKWARD and accepted at NONE, Confluent's error answers, and
the contents after a restart."""
from __future__ import annotations

import json
import time
import uuid

import pytest

sr = pytest.importorskip("confluent_kafka.schema_registry")
pytest.importorskip("fastavro")
httpx = pytest.importorskip("httpx2")

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.error import SchemaRegistryError  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

from itutil import wait_until  # noqa: E402
from kafkette.embedded import EmbeddedBroker  # noqa: E402

USER_V1 = {"type": "record", "name": "User", "namespace": "it",
           "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"}]}
USER_V2_DEFAULT = {**USER_V1, "fields": USER_V1["fields"] + [
    {"name": "email", "type": ["null", "string"], "default": None}]}
USER_V2_NO_DEFAULT = {**USER_V1, "fields": USER_V1["fields"] + [
    {"name": "age", "type": "int"}]}


@pytest.fixture(scope="module")
def kb():
    with EmbeddedBroker(schema_registry=True) as b:
        yield b


@pytest.fixture
def client(kb):
    return SchemaRegistryClient({"url": kb.schema_registry_url})


def uniq(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def produce_consume(kb, topic, serializer, deserializer, value):
    kb.create_topic(topic)
    p = Producer({"bootstrap.servers": kb.bootstrap_servers})
    ctx = SerializationContext(topic, MessageField.VALUE)
    p.produce(topic, value=serializer(value, ctx))
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": kb.bootstrap_servers, "group.id": uniq("g"),
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                return m.value(), deserializer(m.value(), ctx)
    finally:
        c.close()
    raise AssertionError("no message consumed")


def test_avro_serializer_round_trip(kb, client):
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    topic = uniq("avro")
    ser = AvroSerializer(client, json.dumps(USER_V1))
    de = AvroDeserializer(SchemaRegistryClient({"url": kb.schema_registry_url}))
    raw, got = produce_consume(kb, topic, ser, de, {"id": 7, "name": "ada"})
    assert got == {"id": 7, "name": "ada"}
    schema_id = int.from_bytes(raw[1:5], "big")
    assert raw[0] == 0 and schema_id >= 1
    latest = client.get_latest_version(f"{topic}-value")
    assert latest.schema_id == schema_id and latest.version == 1
    assert json.loads(latest.schema.schema_str)["name"] == "User"
    # lookup (POST /subjects/{s}) finds it, also with other whitespace
    found = client.lookup_schema(f"{topic}-value", Schema(json.dumps(USER_V1, indent=2), "AVRO"))
    assert found.schema_id == schema_id and found.version == 1
    assert client.get_subjects().count(f"{topic}-value") == 1
    assert client.get_versions(f"{topic}-value") == [1]


def test_json_serializer_round_trip(kb, client):
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
    schema = json.dumps({"$schema": "http://json-schema.org/draft-07/schema#",
                         "title": "Order", "type": "object",
                         "properties": {"id": {"type": "integer"}, "sku": {"type": "string"}},
                         "required": ["id"]})
    ser = JSONSerializer(schema, client)
    de = JSONDeserializer(None, schema_registry_client=SchemaRegistryClient(
        {"url": kb.schema_registry_url}))
    topic = uniq("json")
    _, got = produce_consume(kb, topic, ser, de, {"id": 3, "sku": "x-1"})
    assert got == {"id": 3, "sku": "x-1"}
    assert client.get_latest_version(f"{topic}-value").schema.schema_type == "JSON"


def _protobuf_class():
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.message_factory import GetMessageClass
    fd = descriptor_pb2.FileDescriptorProto(name=f"it_{uuid.uuid4().hex[:6]}.proto",
                                            package="it", syntax="proto3")
    m = fd.message_type.add(name="Reading")
    m.field.add(name="sensor", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    m.field.add(name="value", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
                label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.Default()
    pool.Add(fd)
    fdesc = pool.FindFileByName(fd.name)
    return GetMessageClass(fdesc.message_types_by_name["Reading"])


def test_protobuf_serializer_round_trip(kb, client):
    pytest.importorskip("google.protobuf")
    from confluent_kafka.schema_registry.protobuf import (ProtobufDeserializer,
                                                          ProtobufSerializer)
    Reading = _protobuf_class()
    ser = ProtobufSerializer(Reading, client, {"use.deprecated.format": False})
    de = ProtobufDeserializer(Reading, {"use.deprecated.format": False})
    topic = uniq("proto")
    _, got = produce_consume(kb, topic, ser, de, Reading(sensor="t1", value=21.5))
    assert got.sensor == "t1" and got.value == 21.5
    assert client.get_latest_version(f"{topic}-value").schema.schema_type == "PROTOBUF"


def test_evolution_refused_at_backward_accepted_at_none(client):
    subject = uniq("evo")
    v1 = client.register_schema(subject, Schema(json.dumps(USER_V1), "AVRO"))
    assert client.get_compatibility() == "BACKWARD"   # Confluent's default
    assert client.test_compatibility(subject, Schema(json.dumps(USER_V2_DEFAULT), "AVRO"))
    assert not client.test_compatibility(subject, Schema(json.dumps(USER_V2_NO_DEFAULT), "AVRO"))
    with pytest.raises(SchemaRegistryError) as e:
        client.register_schema(subject, Schema(json.dumps(USER_V2_NO_DEFAULT), "AVRO"))
    assert e.value.http_status_code == 409 and e.value.error_code == 409
    assert client.set_compatibility(subject, "NONE")["compatibility"] == "NONE"
    assert client.get_compatibility(subject) == "NONE"
    v2 = client.register_schema(subject, Schema(json.dumps(USER_V2_NO_DEFAULT), "AVRO"))
    assert v2 != v1
    assert client.get_versions(subject) == [1, 2]
    # soft delete, then permanent
    assert client.delete_version(subject, 2) == 2
    assert client.get_versions(subject) == [1]
    assert client.delete_subject(subject) == [1]
    assert subject not in client.get_subjects()
    with pytest.raises(SchemaRegistryError) as e:
        client.get_latest_version(subject)
    assert e.value.error_code == 40401
    assert client.delete_subject(subject, permanent=True) == [1, 2]
    # the id still names its schema: ids are never reused
    assert json.loads(client.get_schema(v2).schema_str)["fields"][-1]["name"] == "age"


def test_errors_are_confluents_and_the_broker_stays_up(kb):
    url = kb.schema_registry_url
    ct = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
    r = httpx.get(f"{url}/subjects/nope/versions")
    assert (r.status_code, r.json()["error_code"]) == (404, 40401)
    r = httpx.get(f"{url}/schemas/ids/999999")
    assert (r.status_code, r.json()["error_code"]) == (404, 40403)
    subject = uniq("err")
    r = httpx.post(f"{url}/subjects/{subject}/versions", headers=ct,
                   content=json.dumps({"schema": '{"type": "record", "name": "x"'}))
    assert (r.status_code, r.json()["error_code"]) == (422, 42201)
    r = httpx.post(f"{url}/subjects/{subject}/versions", headers=ct,
                   content=json.dumps({"schema": json.dumps(USER_V1)}))
    assert r.status_code == 200 and r.headers["content-type"] == ct["Content-Type"]
    r = httpx.get(f"{url}/subjects/{subject}/versions/7")
    assert (r.status_code, r.json()["error_code"]) == (404, 40402)
    r = httpx.get(f"{url}/subjects/{subject}/versions/zero")
    assert (r.status_code, r.json()["error_code"]) == (422, 42202)
    r = httpx.put(f"{url}/config", headers=ct, content=json.dumps({"compatibility": "SIDEWAYS"}))
    assert (r.status_code, r.json()["error_code"]) == (422, 42203)
    r = httpx.post(f"{url}/subjects/{subject}/versions",
                   headers={"Content-Type": "text/plain"}, content=b"{}")
    assert r.status_code == 415
    r = httpx.post(f"{url}/subjects/{subject}/versions", headers=ct, content=b"{not json")
    assert r.status_code == 400
    r = httpx.post(f"{url}/subjects/{subject}/versions", headers=ct,
                   content=b" " * (2 << 20))
    assert r.status_code == 413
    assert httpx.get(f"{url}/schemas/types").json() == ["JSON", "PROTOBUF", "AVRO"]
    assert httpx.get(f"{url}/subjects/{subject}/versions/latest/schema").json()["name"] == "User"
    assert httpx.get(f"{url}/mode").json() == {"mode": "READWRITE"}
    # the broker still answers Kafka clients, and the registry still works
    p = Producer({"bootstrap.servers": kb.bootstrap_servers})
    p.produce(uniq("alive"), b"x")
    assert p.flush(10) == 0
    assert subject in httpx.get(f"{url}/subjects").json()


def test_contents_survive_a_restart(kb, client):
    subject = uniq("keep")
    sid = client.register_schema(subject, Schema(json.dumps(USER_V1), "AVRO"))
    client.set_compatibility(subject, "FULL")
    kb.restart()
    fresh = SchemaRegistryClient({"url": kb.schema_registry_url})
    latest = fresh.get_latest_version(subject)
    assert latest.schema_id == sid and latest.version == 1
    assert fresh.get_compatibility(subject) == "FULL"
    # a new schema after the restart gets a new id: ids are not reused
    other = fresh.register_schema(uniq("keep"), Schema(json.dumps(USER_V2_NO_DEFAULT), "AVRO"))
    assert other > sid


def test_the_pytest_fixture_serves_a_registry(kafkette_broker):
    url = kafkette_broker.schema_registry_url
    assert url is not None and url.startswith("http://127.0.0.1:")
    c = SchemaRegistryClient({"url": url})
    subject = uniq("fixture")
    sid = c.register_schema(subject, Schema(json.dumps(USER_V1), "AVRO"))
    assert c.get_schema(sid).schema_type == "AVRO"


def test_every_node_of_a_cluster_serves_the_same_registry(tmp_path):
    import socket
    from concurrent.futures import ThreadPoolExecutor

    from kafkette.embedded_cluster import EmbeddedCluster

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    ports = {n: free_port() for n in (1, 2, 3)}
    with EmbeddedCluster(3, log_dir=tmp_path, node_config=lambda n: {
            "schema.registry.listener": f"127.0.0.1:{ports[n]}"}) as kc:
        clients = [SchemaRegistryClient({"url": b.schema_registry_url}) for b in kc.brokers]
        assert len(clients) == 3
        subject = uniq("cluster")
        sid = clients[0].register_schema(subject, Schema(json.dumps(USER_V1), "AVRO"))
        # the writing node reads its write back before it answers; the others follow
        # the topic (long-polling Fetch), as Confluent's followers do
        assert clients[0].get_latest_version(subject).schema_id == sid
        for c in clients[1:]:
            wait_until(lambda c=c: c.get_latest_version(subject).schema_id == sid)
        # distinct schemas registered at once through different nodes get distinct ids
        schemas = [{**USER_V1, "name": f"U{i}"} for i in range(6)]

        def reg(i):
            return clients[i % 3].register_schema(uniq("race"), Schema(json.dumps(schemas[i]),
                                                                         "AVRO"))
        with ThreadPoolExecutor(6) as pool:
            ids = list(pool.map(reg, range(6)))
        assert len(set(ids)) == 6 and sid not in ids
        for c in clients:
            for i, schema_id in enumerate(ids):
                wait_until(lambda c=c, i=i, schema_id=schema_id: json.loads(
                    c.get_schema(schema_id).schema_str)["name"] == f"U{i}")
        # _schemas is replicated to the three nodes; killing its leader loses nothing
        from confluent_kafka.admin import AdminClient
        part = AdminClient({"bootstrap.servers": kc.bootstrap_servers}).list_topics(
            timeout=10).topics["_schemas"].partitions[0]
        assert sorted(part.replicas) == [1, 2, 3]
        leader = next(b for b in kc.brokers if b.node_id == part.leader)
        leader.kill()
        survivors = [SchemaRegistryClient({"url": b.schema_registry_url})
                     for b in kc.brokers if b is not leader]
        after = survivors[0].register_schema(uniq("after"), Schema(
            json.dumps({**USER_V1, "name": "After"}), "AVRO"))
        assert after not in ids and after != sid
        for c in survivors:
            wait_until(lambda c=c: json.loads(c.get_schema(after).schema_str)["name"] == "After")
            assert c.get_latest_version(subject).schema_id == sid


def test_the_schemas_cli(kb, tmp_path, capsys):
    from kafkette.cli import main
    subject = uniq("cli")
    f = tmp_path / "user.avsc"
    f.write_text(json.dumps(USER_V1))
    url = kb.schema_registry_url
    assert main(["schemas", "register", subject, str(f), "--url", url]) == 0
    sid = int(capsys.readouterr().out.strip())
    assert main(["schemas", "list", "--url", url, "--prefix", subject]) == 0
    assert capsys.readouterr().out.split() == [subject]
    assert main(["schemas", "get", subject, "--url", url]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["id"], got["version"]) == (sid, 1)
    assert main(["schemas", "get", "--id", "999999", "--url", url]) == 1
    assert "40403" in capsys.readouterr().err
    f.write_text('{"type": "record"')
    assert main(["schemas", "register", subject, str(f), "--url", url]) == 1
    assert "42201" in capsys.readouterr().err


def test_hostile_http_leaves_registry_and_broker_up(kb):
    import socket
    host, port = kb.schema_registry_url[len("http://"):].rsplit(":", 1)

    def raw(data: bytes) -> bytes:
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(data)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out
                out += chunk
    assert raw(b"GET /subjects HTTP/1.1\r\nX: " + b"a" * 40000 + b"\r\n\r\n") \
        .startswith(b"HTTP/1.1 431")
    assert raw(b"POST /subjects/x/versions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") \
        .startswith(b"HTTP/1.1 411")
    assert raw(b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 404")
    # two requests on one keep-alive connection, then close
    out = raw(b"GET /schemas/types HTTP/1.1\r\n\r\nGET /mode HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200") == 2
    assert httpx.get(f"{kb.schema_registry_url}/subjects").status_code == 200
    p = Producer({"bootstrap.servers": kb.bootstrap_servers})
    p.produce(uniq("alive"), b"x")
    assert p.flush(10) == 0
