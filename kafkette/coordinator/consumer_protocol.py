"""Just enough of the consumer protocol (protocol_type "consumer") for the coordinator.

A consumer's JoinGroup metadata is a ConsumerProtocolSubscription: int16 version, then
(in every version) an array (int32 count) of topic names (int16 length + UTF-8),
nullable bytes user_data, and from v1 owned partitions, v2 generation id, v3 rack id.
The coordinator only needs the topics, to answer OffsetDelete with
GROUP_SUBSCRIBED_TO_TOPIC and to keep subscribed topics' offsets in a Stable group
(KIP-496, KIP-211). Like Kafka, it reads the v0 prefix whatever the version says, so a
future version (which must extend v0) still parses.
"""
from __future__ import annotations

from kafkette.coordinator.wire import CoordinatorRecordError, Reader, Writer

PROTOCOL_TYPE = "consumer"


def decode_subscription_topics(metadata: bytes) -> list[str]:
    """The topics of a ConsumerProtocolSubscription; CoordinatorRecordError on bytes
    that are not one."""
    r = Reader(metadata, "ConsumerProtocolSubscription")
    version = r.int16()
    if version < 0:
        raise CoordinatorRecordError(f"ConsumerProtocolSubscription: version {version}")
    count = r.array_count(2)
    return [r.string() for _ in range(count)]


def encode_subscription(topics: list[str], user_data: bytes | None = None,
                        version: int = 0) -> bytes:
    """A v0 ConsumerProtocolSubscription (tests use it to build join metadata)."""
    w = Writer().int16(version).int32(len(topics))
    for t in topics:
        w.string(t)
    if user_data is None:
        w.int32(-1)
    else:
        w.bytes_(user_data)
    if version >= 1:
        w.int32(0)  # owned partitions: none
    if version >= 2:
        w.int32(-1)  # generation id
    if version >= 3:
        w.nullable_string(None)  # rack id
    return w.getvalue()
