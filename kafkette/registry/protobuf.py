"""Protobuf schemas: stored and served as given, with their references: `.proto` text,
or a base64 serialized FileDescriptorProto (what confluent-kafka's Python
ProtobufSerializer registers), which is parsed with the `protobuf` package when it is
installed. No well-kept Python parser of `.proto` source exists (protobuf's own package
reads compiled descriptors), so `.proto` text is checked only for a `message`, `enum`
or `service` declaration; `format=serialized` cannot convert text to a descriptor.
Compatibility is not checked: every level accepts any Protobuf change (README)."""
from __future__ import annotations

import base64
import binascii
import re

from .errors import invalid_schema

_DECL = re.compile(r"\b(message|enum|service)\s+\w+\s*\{")


class ProtobufSchema:
    def __init__(self, text: str, references=()):
        if not text.strip():
            raise invalid_schema("empty Protobuf schema")
        if not _DECL.search(text) and not _is_descriptor(text):
            raise invalid_schema("neither .proto text with a message, enum or service "
                                 "declaration nor a base64 FileDescriptorProto")
        self.text = text

    def canonical(self) -> str:
        return self.text.strip()


def can_read(reader: ProtobufSchema, writer: ProtobufSchema) -> list[str]:
    return []


def _is_descriptor(text: str) -> bool:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        from google.protobuf import descriptor_pb2
        from google.protobuf.message import DecodeError
    except ImportError:  # protobuf not installed: take well-formed base64 as given
        return bool(data)
    try:
        fd = descriptor_pb2.FileDescriptorProto.FromString(data)
    except DecodeError:
        return False
    return bool(fd.message_type or fd.enum_type or fd.service)
