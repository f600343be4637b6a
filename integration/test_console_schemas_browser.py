"""The console's "schema" mode in a real browser: a broker serving both the console and
the Schema Registry, records written with confluent-kafka's AvroSerializer (and one
framed with an id the registry does not know), the Messages page showing the decoded
fields with the schema's id, subject and version. Screenshot: messages-avro.png."""
from __future__ import annotations

import json

import pytest

sr = pytest.importorskip("confluent_kafka.schema_registry")
pytest.importorskip("fastavro")
pytest.importorskip("selenium")

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroSerializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from it_clients import create_topic  # noqa: E402
from itutil import free_port, unique_topic, wait_until  # noqa: E402
from test_console_browser import _get, browser, shot, table  # noqa: E402,F401 (fixture)

pytestmark = pytest.mark.timeout(120)
ORDER = {"type": "record", "name": "Order", "namespace": "it",
         "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"},
                    {"name": "qty", "type": "int"}]}


@pytest.fixture(scope="module")
def ports():
    return free_port(), free_port()


@pytest.fixture(scope="module")
def broker_config(ports):
    return {"console.listener": f"127.0.0.1:{ports[0]}",
            "schema.registry.listener": f"127.0.0.1:{ports[1]}"}


def test_avro_values_are_decoded_through_the_registry(broker, ports, browser):
    base, registry = f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    wait_until(lambda: _get(base + "/")[0] == 200, 10, message="console up")
    wait_until(lambda: _get(registry + "/subjects")[0] == 200, 30, message="registry up")
    t = unique_topic("console-avro")
    create_topic(broker.bootstrap, t)
    ser = AvroSerializer(SchemaRegistryClient({"url": registry}), json.dumps(ORDER))
    ctx = SerializationContext(t, MessageField.VALUE)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(t, key=b"o-1", value=ser({"id": 1, "item": "tea <b>", "qty": 3}, ctx))
    p.produce(t, key=b"o-2", value=ser({"id": 2, "item": "cake", "qty": 1}, ctx))
    p.produce(t, key=b"o-3", value=b"\x00\x00\x00\x27\x10\x02")   # id 10000: unknown
    assert p.flush(10) == 0
    schema_id = SchemaRegistryClient({"url": registry}).get_latest_version(f"{t}-value").schema_id

    browser.get(base + f"/topics/{t}/partitions/0/messages")   # "schema" is the default
    rows = table(browser, "messages")
    shot(browser, "messages-avro")
    assert [r[2] for r in rows] == ["o-1", "o-2", "o-3"]
    label, _, body = rows[0][3].partition("\n")
    assert label == f"schema id {schema_id}, subject {t}-value v1"
    assert json.loads(body) == {"id": 1, "item": "tea <b>", "qty": 3}
    assert json.loads(rows[1][3].partition("\n")[2]) == {"id": 2, "item": "cake", "qty": 1}
    assert rows[2][3].startswith("schema id 10000\n02")
    assert "unknown to this broker's schema registry" in rows[2][3]
    assert browser.find_elements(By.CSS_SELECTOR, "select[name=format] option[value=schema][selected]")
    browser.get(base + f"/topics/{t}/partitions/0/messages?format=text")
    assert "binary: shown in hex" in table(browser, "messages")[0][3]
