"""Which partition of `__consumer_offsets` holds a group.

Kafka: `Utils.abs(groupId.hashCode()) % offsets.topic.num.partitions`, where
`String.hashCode` is Java's s[0]*31^(n-1) + ... + s[n-1] over UTF-16 code units in
signed 32-bit arithmetic, and `Utils.abs(n)` is `Math.abs(n)` except that
Integer.MIN_VALUE maps to 0 (Math.abs would return MIN_VALUE itself). Note that this
is *not* `n & 0x7fffffff` (Utils.toPositive, which the producer's murmur2 partitioner
uses): the two differ for every negative hash. Matching Kafka bit for bit matters
because FindCoordinator in a cluster answers with the leader of this partition, and an
offsets topic copied from a Kafka cluster must map each group to the same partition.
"""
from __future__ import annotations

import functools

_INT_MIN = -(1 << 31)


# Java caches a String's hash in the object; the coordinators ask for the same group and
# transactional ids on every request (a transaction asks ~18 times), and the Python
# loop over UTF-16 units showed up at 8 % of a transactional produce profile.
@functools.lru_cache(maxsize=65536)
def java_string_hash(s: str) -> int:
    """Java's `String.hashCode()`: signed 32-bit, over UTF-16 code units (a character
    outside the BMP counts as its two surrogates)."""
    h = 0
    units = s.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(units), 2):
        h = (31 * h + ((units[i] << 8) | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_abs(n: int) -> int:
    """Kafka's `Utils.abs`: |n|, with Integer.MIN_VALUE -> 0."""
    return 0 if n == _INT_MIN else abs(n)


def offsets_partition_for(group_id: str, num_partitions: int) -> int:
    """The `__consumer_offsets` partition of `group_id` (offsets.topic.num.partitions
    = `num_partitions`), as Kafka computes it."""
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, not {num_partitions}")
    return kafka_abs(java_string_hash(group_id)) % num_partitions
