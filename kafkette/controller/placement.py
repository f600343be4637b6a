"""Rack-aware replica placement for new partitions, with the properties of KRaft's
StripedReplicaPlacer: the replicas of a partition sit on distinct racks where there
are enough racks (`broker.rack`; brokers without one form a rack of their own, as
KRaft's Optional.empty), leaders spread evenly over the brokers, and a random
start, so that many small topics do not all lead on the same broker.

How: the live brokers are interleaved rack by rack (r1b1, r2b1, r3b1, r1b2, ...), and
partition p's leader is the (start + p)-th broker of that ring, which spreads leaders
within one of each other. Followers are then taken round-robin over the racks, the
other racks first and the leader's own last, so the first replicas are all on
different racks. Each full turn of the ring rotates the order of the racks and of the
brokers within each rack, so that turns do not repeat the same follower sets (when
a broker fails, its leaderships then move to several brokers, not one).

Real Kafka differences: KRaft also places followers on fenced brokers (the ISR
then leaves them out); kafkette places on live brokers only, so a new partition
starts with its whole replica set in sync. The interleaved ring is the
rack-alternated list of Kafka's ZooKeeper-era AdminUtils rather than the striping
of per-rack broker lists with shuffles of StripedReplicaPlacer; leaders are spread
exactly evenly here.
"""
from __future__ import annotations

import random
from typing import Iterable

from kafkette.errors import InvalidReplicationFactorError


def rack_ring(brokers: Iterable[tuple[int, str | None]]) -> list[tuple[int, str | None]]:
    """(id, rack) pairs interleaved rack by rack: racks in name order (no rack first),
    ids ascending within a rack."""
    racks: dict[str | None, list[int]] = {}
    for node_id, rack in sorted(brokers):
        racks.setdefault(rack, []).append(node_id)
    names = sorted(racks, key=lambda r: (r is not None, r or ""))
    ring = []
    for i in range(max((len(v) for v in racks.values()), default=0)):
        ring += [(racks[r][i], r) for r in names if i < len(racks[r])]
    return ring


def place_replicas(brokers: Iterable[tuple[int, str | None]], count: int,
                   replication_factor: int, rng: random.Random | None = None
                   ) -> list[list[int]]:
    """Replica lists (leader first) for `count` new partitions on `brokers`, the
    live (id, rack) pairs. INVALID_REPLICATION_FACTOR when they are too few."""
    ring = rack_ring(brokers)
    n = len(ring)
    if replication_factor <= 0:
        raise InvalidReplicationFactorError("Replication factor must be larger than 0.")
    if replication_factor > n:
        raise InvalidReplicationFactorError(
            f"Unable to replicate the partition {replication_factor} time(s): "
            f"The target replication factor of {replication_factor} cannot be reached "
            f"because only {n} broker(s) are registered.")
    rng = rng or random.Random()
    racks: dict[str | None, list[int]] = {}
    for node_id, rack in ring:
        racks.setdefault(rack, []).append(node_id)
    start, shift = rng.randrange(n), rng.randrange(n)
    out = []
    for p in range(count):
        leader, leader_rack = ring[(start + p) % n]
        turn = shift + (start + p) // n
        others = [r for r in racks if r != leader_rack]
        order = _rotated(others, turn) + [leader_rack]
        queues = {r: _rotated([b for b in racks[r] if b != leader], turn) for r in order}
        chosen = [leader]
        while len(chosen) < replication_factor:  # one per rack and round
            for r in order:
                if queues[r] and len(chosen) < replication_factor:
                    chosen.append(queues[r].pop(0))
        out.append(chosen)
    return out


def _rotated(items: list, k: int) -> list:
    if not items:
        return items
    k %= len(items)
    return items[k:] + items[:k]
