"""Request and response headers, and the rule for which header version an API uses.

Request header v0: api_key, api_version, correlation_id. v1 adds client_id (a
nullable int16 string, never compact, even in v2). v2 (flexible request versions)
adds a tagged-field section. Response header v0: correlation_id; v1 (flexible
response versions) adds tagged fields.

The exception every broker trips on: ApiVersions responses always use header v0,
even for flexible v3+, because a client must be able to read the answer before it
knows which versions the broker speaks (KIP-511).
"""
from __future__ import annotations

import struct

from kafkette.errors import ProtocolError
from kafkette.protocol.messages import API_MESSAGES, REQUEST_FLEXIBLE_VERSION
from kafkette.protocol.primitives import Reader

API_VERSIONS_KEY = 18
CONTROLLED_SHUTDOWN_KEY = 7
_hdr = struct.Struct(">hhi")
_corr = struct.Struct(">i")
_corr_tagged = struct.Struct(">iB")


def flexible_version(api_key: int) -> int | None:
    return REQUEST_FLEXIBLE_VERSION[api_key]


def request_header_version(api_key: int, api_version: int) -> int:
    if api_key == CONTROLLED_SHUTDOWN_KEY and api_version == 0:
        # ControlledShutdown v0 predates client_id: header v0, as in Kafka.
        return 0
    flex = flexible_version(api_key)
    return 2 if flex is not None and api_version >= flex else 1


def response_header_version(api_key: int, api_version: int) -> int:
    if api_key == API_VERSIONS_KEY:
        return 0
    flex = flexible_version(api_key)
    return 1 if flex is not None and api_version >= flex else 0


class RequestHeader:
    __slots__ = ("api_key", "api_version", "correlation_id", "client_id", "header_version")

    def __init__(self, api_key, api_version, correlation_id, client_id, header_version):
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id
        self.client_id = client_id
        self.header_version = header_version

    def __repr__(self):
        return (f"RequestHeader(api_key={self.api_key}, api_version={self.api_version}, "
                f"correlation_id={self.correlation_id}, client_id={self.client_id!r})")


def peek_header(frame) -> tuple[int, int, int]:
    """api_key, api_version, correlation_id of a frame (at least 8 bytes)."""
    if len(frame) < 8:
        raise ProtocolError("frame shorter than a request header")
    return _hdr.unpack_from(frame, 0)


def decode_request_header(r: Reader, known_version: bool = True) -> RequestHeader:
    """Read the header from the start of a frame. For an API version the broker does
    not know, the header version cannot be known either; ApiVersions' own tagged
    fields are then skipped leniently by the caller (KIP-511)."""
    api_key, api_version, correlation_id = r.int16(), r.int16(), r.int32()
    hv = 1
    if api_key in API_MESSAGES and known_version:
        hv = request_header_version(api_key, api_version)
    client_id = r.string(False, True) if hv >= 1 else None
    if hv == 2:
        r.skip_tagged_fields()
    return RequestHeader(api_key, api_version, correlation_id, client_id, hv)


def encode_response_header(correlation_id: int, header_version: int) -> bytes:
    if header_version == 0:
        return _corr.pack(correlation_id)
    return _corr_tagged.pack(correlation_id, 0)


def encode_request_header(api_key: int, api_version: int, correlation_id: int,
                          client_id: str | None) -> bytes:
    """For clients in tests, tools and the benchmark load generator."""
    out = bytearray(_hdr.pack(api_key, api_version, correlation_id))
    hv = request_header_version(api_key, api_version)
    if hv == 0:
        return bytes(out)
    if client_id is None:
        out += b"\xff\xff"
    else:
        cid = client_id.encode()
        out += struct.pack(">h", len(cid)) + cid
    if hv == 2:
        out.append(0)
    return bytes(out)
