"""Keys and values in Confluent's Schema Registry wire format, decoded for the Messages
page: a magic byte 0, a 4-byte big-endian schema id, then the payload (Confluent's
serializers' framing). The schema is looked up by id in this broker's own registry
state (kafkette/registry/state.py), never over HTTP.

- AVRO: read with fastavro's schemaless_reader and the writer's schema (its references
  resolved by the registry's parser), shown as JSON.
- JSON: the payload is JSON text, pretty-printed.
- PROTOBUF: the message-index varints are skipped and the message is shown in hex with
  its schema id: decoding it needs the message's descriptor, which the registry keeps
  only when the producer registered a serialized FileDescriptorProto; not attempted.

`decode` never raises for bad data: a failure comes back as words for the page.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

MAGIC = 0


@dataclass
class Decoded:
    schema_id: int | None
    label: str            # "schema id 3, subject orders-value v2"
    text: str | None      # pretty JSON, when decoded
    error: str | None     # why not, in words
    payload: bytes = b""  # the bytes after the framing (Protobuf: after the indexes)


def looks_framed(data: bytes | None) -> bool:
    return data is not None and len(data) >= 5 and data[0] == MAGIC


def _json_default(o):
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    return str(o)   # Decimal, UUID, datetime, date, time of Avro's logical types


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint (Confluent's message indexes are written zigzag-encoded)."""
    shift = value = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated message indexes")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (value >> 1) ^ -(value & 1), pos


def _skip_indexes(data: bytes) -> tuple[list[int], bytes]:
    count, pos = _varint(data, 0)
    if count == 0:          # the common case: the first message of the file, written as one 0
        return [0], data[pos:]
    if count < 0 or count > len(data):
        raise ValueError(f"bad message index count {count}")
    idx = []
    for _ in range(count):
        i, pos = _varint(data, pos)
        idx.append(i)
    return idx, data[pos:]


def decode(data: bytes, state) -> Decoded:
    """`data` framed in the wire format (see `looks_framed`); `state`: the registry's
    RegistryState."""
    sid = int.from_bytes(data[1:5], "big")
    payload = data[5:]
    sv = state.by_id.get(sid) if state is not None else None
    if sv is None:
        return Decoded(sid, f"schema id {sid}", None,
                       f"schema id {sid} is unknown to this broker's schema registry", payload)
    label = f"schema id {sid}, subject {sv.subject} v{sv.version}"
    try:
        if sv.schema_type == "AVRO":
            from fastavro import schemaless_reader
            parsed = state.parse(sv.schema_type, sv.schema, sv.references).for_reading()
            fo = io.BytesIO(payload)
            obj = schemaless_reader(fo, parsed, None)
            if fo.tell() != len(payload):
                raise ValueError(f"{len(payload) - fo.tell()} bytes left after the record")
            return Decoded(sid, label, json.dumps(obj, indent=2, ensure_ascii=False,
                                                  default=_json_default), None, payload)
        if sv.schema_type == "JSON":
            obj = json.loads(payload.decode("utf-8"))
            return Decoded(sid, label, json.dumps(obj, indent=2, ensure_ascii=False),
                           None, payload)
        if sv.schema_type == "PROTOBUF":
            idx, msg = _skip_indexes(payload)
            return Decoded(sid, f"Protobuf, {label}, message index {idx}", None,
                           "Protobuf messages are shown in hex, not decoded", msg)
        return Decoded(sid, label, None, f"schema type {sv.schema_type} is not decoded",
                       payload)
    except EOFError:
        return Decoded(sid, label, None, "payload truncated: it ends inside the record",
                       payload)
    except Exception as e:  # noqa: BLE001 - any bad payload is shown in words, not a 500
        return Decoded(sid, label, None, f"payload does not decode: {type(e).__name__}: {e}",
                       payload)
