"""The Schema Registry's REST routing (kafkette.server.schema_registry) without sockets
or a broker: a store whose appends are applied at once, driven through handle()."""
import asyncio
import json

import pytest

from kafkette.server.schema_registry import SchemaRegistryHttp, SchemaStore

CT = {"content-type": "application/vnd.schemaregistry.v1+json"}
V1 = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})
V2 = json.dumps({"type": "record", "name": "R", "fields": [
    {"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0}]})


class MemoryStore(SchemaStore):
    def __init__(self):
        super().__init__(("127.0.0.1", 1))
        self.log = []

    async def append(self, records):
        for k, v in records:
            self.log.append((k, v))
            self.state.apply(k, v)


@pytest.fixture
def call():
    http = SchemaRegistryHttp(MemoryStore())

    def do(method, path, body=None, headers=CT):
        raw = json.dumps(body).encode() if body is not None else b""
        return asyncio.run(http.handle(method, path, headers, raw))
    do.store = http.store
    return do


def test_register_lookup_and_versions(call):
    assert call("POST", "/subjects/s/versions", {"schema": V1}) == (200, {"id": 1})
    assert call("POST", "/subjects/s/versions", {"schema": V1}) == (200, {"id": 1})
    assert call("POST", "/subjects/s/versions", {"schema": V2}) == (200, {"id": 2})
    assert call("GET", "/subjects/s/versions") == (200, [1, 2])
    status, got = call("POST", "/subjects/s", {"schema": V1})
    assert status == 200 and (got["version"], got["id"]) == (1, 1)
    assert call("POST", "/subjects/s", {"schema": '"string"'})[1]["error_code"] == 40403
    assert call("GET", "/schemas/ids/2/versions") == (200, [{"subject": "s", "version": 2}])
    assert call("GET", "/subjects?subjectPrefix=s") == (200, ["s"])
    assert call("GET", "/subjects?subjectPrefix=x") == (200, [])
    assert call("GET", "/subjects/s/versions?offset=1&limit=1") == (200, [2])
    # the records are Confluent's layout
    key, value = call.store.log[0]
    assert json.loads(key) == {"keytype": "SCHEMA", "subject": "s", "version": 1, "magic": 1}
    assert json.loads(value)["id"] == 1 and json.loads(value)["schema"] == V1


def test_config_and_mode(call):
    assert call("GET", "/config") == (200, {"compatibilityLevel": "BACKWARD"})
    assert call("GET", "/config/s")[1]["error_code"] == 40408
    assert call("GET", "/config/s?defaultToGlobal=true") == \
        (200, {"compatibilityLevel": "BACKWARD"})
    assert call("PUT", "/config/s", {"compatibility": "full"}) == \
        (200, {"compatibility": "FULL"})
    assert call("GET", "/config/s") == (200, {"compatibilityLevel": "FULL"})
    assert call("PUT", "/mode", {"mode": "READONLY"}) == (200, {"mode": "READONLY"})
    status, body = call("POST", "/subjects/s/versions", {"schema": V1})
    assert (status, body["error_code"]) == (422, 42205)
    assert call("PUT", "/mode", {"mode": "IMPORT"}) == (200, {"mode": "IMPORT"})
    # IMPORT mode keeps the given id and version
    assert call("POST", "/subjects/s/versions", {"schema": V1, "id": 40, "version": 3}) == \
        (200, {"id": 40})
    assert call("GET", "/subjects/s/versions/3")[1]["id"] == 40
    assert call("PUT", "/mode", {"mode": "sideways"})[1]["error_code"] == 42204
    call("PUT", "/mode", {"mode": "READWRITE"})
    # an id given outside IMPORT mode is refused
    assert call("POST", "/subjects/t/versions", {"schema": V2, "id": 99})[1]["error_code"] \
        == 42205
    assert call("POST", "/subjects/t/versions", {"schema": V2}) == (200, {"id": 41})


def test_delete_order_and_codes(call):
    call("POST", "/subjects/s/versions", {"schema": V1})
    assert call("DELETE", "/subjects/s/versions/1?permanent=true")[1]["error_code"] == 40407
    assert call("DELETE", "/subjects/s?permanent=true")[1]["error_code"] == 40405
    assert call("DELETE", "/subjects/s") == (200, [1])
    assert call("DELETE", "/subjects/s")[1]["error_code"] == 40404
    assert call("GET", "/subjects") == (200, [])
    assert call("GET", "/subjects?deleted=true") == (200, ["s"])
    assert call("GET", "/subjects/s/versions/1?deleted=true")[1]["id"] == 1
    assert call("DELETE", "/subjects/s?permanent=true") == (200, [1])
    assert call("GET", "/subjects/s/versions?deleted=true")[1]["error_code"] == 40401


def test_references_block_deletes(call):
    call("POST", "/subjects/addr/versions", {"schema": json.dumps(
        {"type": "record", "name": "Addr", "fields": [{"name": "c", "type": "string"}]})})
    body = {"schema": json.dumps({"type": "record", "name": "U", "fields": [
        {"name": "a", "type": "Addr"}]}),
        "references": [{"name": "Addr", "subject": "addr", "version": 1}]}
    assert call("POST", "/subjects/u/versions", body) == (200, {"id": 2})
    assert call("GET", "/subjects/addr/versions/1/referencedby") == (200, [2])
    assert call("DELETE", "/subjects/addr")[1]["error_code"] == 42206
    assert call("GET", "/schemas/ids/2")[1]["references"] == body["references"]


def test_compatibility_endpoint(call):
    call("POST", "/subjects/s/versions", {"schema": V1})
    bad = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]})
    assert call("POST", "/compatibility/subjects/s/versions/latest", {"schema": V2}) == \
        (200, {"is_compatible": True})
    status, body = call("POST", "/compatibility/subjects/s/versions/latest?verbose=true",
                        {"schema": bad})
    assert status == 200 and body["is_compatible"] is False and body["messages"]
    assert call("POST", "/compatibility/subjects/new/versions/latest", {"schema": bad}) == \
        (200, {"is_compatible": True})


@pytest.mark.parametrize("method,path,body,headers,status,code", [
    ("POST", "/subjects/s/versions", {"schema": "{"}, CT, 422, 42201),
    ("POST", "/subjects/s/versions", {"schema": V1, "schemaType": "XML"}, CT, 422, 42201),
    ("POST", "/subjects/s/versions", {}, CT, 422, 42201),
    ("POST", "/subjects/s/versions", {"schema": V1}, {"content-type": "text/xml"}, 415, 415),
    ("GET", "/subjects/s/versions/0", None, CT, 422, 42202),
    ("GET", "/subjects/s/versions/latest", None, CT, 404, 40401),
    ("GET", "/schemas/ids/x", None, CT, 404, 40403),
    ("PATCH", "/subjects", None, CT, 405, 405),
    ("GET", "/nowhere", None, CT, 404, 404),
])
def test_bad_requests(call, method, path, body, headers, status, code):
    got_status, got = call(method, path, body, headers)
    assert (got_status, got["error_code"]) == (status, code)


def test_bad_registry_settings_stop_the_start():
    from kafkette.config import BrokerConfig, ConfigError
    from kafkette.server.schema_registry import registry_client_security
    ok = BrokerConfig({"schema.registry.listener": "127.0.0.1:8081"})
    assert registry_client_security(ok) is None
    with pytest.raises(ConfigError) as e:
        registry_client_security(BrokerConfig({"schema.registry.listener": "nonsense"}))
    assert e.value.key == "schema.registry.listener"
    sasl = BrokerConfig({"schema.registry.listener": "127.0.0.1:8081",
                         "listeners": "SASL_PLAINTEXT://127.0.0.1:9092",
                         "sasl.enabled.mechanisms": "PLAIN",
                         "listener.name.sasl_plaintext.plain.sasl.jaas.config":
                             'org.apache.kafka.common.security.plain.PlainLoginModule '
                             'required user_a="b";'})
    with pytest.raises(ConfigError) as e:
        registry_client_security(sasl)
    assert "inter-broker listener SASL_PLAINTEXT" in str(e.value)


def test_connections_beyond_the_cap_get_503(monkeypatch):
    from kafkette.server import schema_registry as mod

    async def scenario():
        monkeypatch.setattr(mod, "MAX_CONNECTIONS", 2)
        http = SchemaRegistryHttp(MemoryStore())
        host, port = await http.start("127.0.0.1:0")
        held = [await asyncio.open_connection(host, port) for _ in range(2)]
        for _ in range(100):    # until the server has accepted them
            if len(http._conns) == 2:
                break
            await asyncio.sleep(0.01)
        r, w = await asyncio.open_connection(host, port)
        # answered at once, before any request (one sent now could meet a reset)
        answer = await asyncio.wait_for(r.read(), 5)
        for _, hw in held:
            hw.close()
        w.close()
        await http.stop()
        return answer
    assert asyncio.run(scenario()).startswith(b"HTTP/1.1 503")
