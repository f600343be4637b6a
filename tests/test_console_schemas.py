"""The console's decoding of Schema Registry wire-format keys and values
(kafkette/console/schemas.py), against a RegistryState filled as the registry fills it."""
from __future__ import annotations

import io
import json
import struct

import fastavro

from kafkette.console import views
from kafkette.console.schemas import decode, looks_framed
from kafkette.registry.state import RegistryState

ADDRESS = {"type": "record", "name": "Address", "namespace": "t",
           "fields": [{"name": "city", "type": "string"}]}
USER = {"type": "record", "name": "User", "namespace": "t",
        "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"},
                   {"name": "home", "type": "t.Address"},
                   {"name": "tag", "type": "bytes"}]}


def register(state, subject, schema, schema_type="AVRO", references=()):
    body = {"schema": schema, "references": list(references)}
    if schema_type != "AVRO":
        body["schemaType"] = schema_type
    existing, new = state.plan_register(subject, body)
    if existing is not None:
        return existing
    state.apply(*new.record())
    return new


def framed(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + payload


def avro_bytes(schema, obj, named=None) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema, named_schemas=named), obj)
    return buf.getvalue()


def user_state():
    st = RegistryState()
    addr = register(st, "address", json.dumps(ADDRESS))
    user = register(st, "users-value", json.dumps(USER),
                    references=[{"name": "t.Address", "subject": "address", "version": 1}])
    named = {}
    fastavro.parse_schema(ADDRESS, named_schemas=named)
    return st, addr, user, named


def test_avro_with_a_reference_decodes_to_json():
    st, _, user, named = user_state()
    obj = {"name": "Ada <b>", "age": 36, "home": {"city": "London"}, "tag": b"\x01\xff"}
    d = decode(framed(user.id, avro_bytes(USER, obj, named)), st)
    assert d.error is None
    assert d.label == f"schema id {user.id}, subject users-value v1"
    assert json.loads(d.text) == {"name": "Ada <b>", "age": 36, "home": {"city": "London"},
                                  "tag": "01ff"}
    html = views.render_schema_value(framed(user.id, avro_bytes(USER, obj, named)), st)
    assert "Ada &lt;b&gt;" in html and "subject users-value v1" in html


def test_unknown_id_is_said_in_words_beside_the_hex():
    st, *_ = user_state()
    data = framed(99, b"\x02\x03")
    d = decode(data, st)
    assert d.text is None and "schema id 99 is unknown" in d.error
    html = views.render_schema_value(data, st)
    assert "02 03" in html and "unknown to this broker" in html


def test_truncated_and_trailing_avro_payloads_are_refused():
    st, _, user, named = user_state()
    good = avro_bytes(USER, {"name": "Ada", "age": 36, "home": {"city": "London"},
                             "tag": b""}, named)
    d = decode(framed(user.id, good[:-3]), st)
    assert d.text is None and "truncated" in d.error
    d = decode(framed(user.id, good + b"\x00\x00"), st)
    assert d.text is None and "2 bytes left" in d.error


def test_json_schema_payload_is_pretty_printed_and_bad_json_is_said():
    st = RegistryState()
    sv = register(st, "j-value", json.dumps({"type": "object"}), "JSON")
    d = decode(framed(sv.id, b'{"a":[1,2]}'), st)
    assert json.loads(d.text) == {"a": [1, 2]} and "\n" in d.text
    d = decode(framed(sv.id, b'{"a":'), st)
    assert d.text is None and "does not decode" in d.error


def test_protobuf_skips_the_message_indexes():
    st = RegistryState()
    sv = register(st, "p-value", 'syntax = "proto3"; message M { int32 x = 1; }', "PROTOBUF")
    d = decode(framed(sv.id, b"\x00\x08\x96\x01"), st)   # index [0], then field 1 = 150
    assert d.label.startswith(f"Protobuf, schema id {sv.id}") and d.payload == b"\x08\x96\x01"
    d = decode(framed(sv.id, b"\x04\x02\x06\x08\x01"), st)   # 2 indexes (zigzag): [1, 3]
    assert "message index [1, 3]" in d.label and d.payload == b"\x08\x01"


def test_what_is_not_framed_is_shown_as_text():
    st, *_ = user_state()
    assert not looks_framed(b"hello") and not looks_framed(b"\x00\x00") and not looks_framed(None)
    assert views.render_schema_value(b"hello", st) == "<pre>hello</pre>"
    assert views.render_schema_value(None, st) == "<i>null</i>"
    assert "not started" in views.render_schema_value(framed(1, b"x"), None)
