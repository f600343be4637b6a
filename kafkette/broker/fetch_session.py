"""Fetch sessions (KIP-227): the broker remembers what a fetcher asks for, so that a
consumer of many partitions sends only the partitions whose fetch position changed and
gets back only the partitions with something new.

Sans-IO: plain data in, plain data out, the clock injected; the Fetch handler
(broker/handlers/fetch.py) turns wire fields into these calls.

The request's (session_id, session_epoch), as Kafka's FetchMetadata:
- epoch -1 (FINAL): a sessionless full fetch; a session named by session_id is closed.
- epoch 0 (INITIAL): a full fetch; a session named by session_id is closed, and a new
  one is created if the cache has (or can make) room. The answer carries its id (0 when
  none was created, which the client takes as "no session").
- epoch > 0 with a session id: an incremental fetch of that session. Unknown id:
  FETCH_SESSION_ID_NOT_FOUND; epoch other than the session's next one:
  INVALID_FETCH_SESSION_EPOCH (both top-level, no partitions, as Kafka). The request's
  partitions are added to or update the session, forgotten_topics_data removes, and the
  fetch reads every partition of the session. The answer lists only the partitions with
  records, an error, a changed high watermark, log start offset or last stable offset,
  a diverging epoch or a preferred read replica; the cached values are updated from it.

The cache (Kafka's FetchSessionCache): at most `max_slots` sessions
(max.incremental.fetch.session.cache.slots, default 1000). A new session takes a free
slot; otherwise it evicts the least recently used session if that one has been idle for
`eviction_ms` (min.incremental.fetch.session.eviction.ms, 120 s), or else the least
valuable session (a consumer's before a follower's, then the one with fewer partitions)
if the new one is worth more; failing both, no session is created.

What Kafka does that this does not: the incremental answer's partitions are not rotated
to the end of the session (Kafka's round-robin fairness for partitions that hit the
response size limit).
"""
from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1

DEFAULT_MAX_SLOTS = 1000             # max.incremental.fetch.session.cache.slots
DEFAULT_EVICTION_MS = 120_000        # min.incremental.fetch.session.eviction.ms

# Kafka's error codes (kept here as numbers: this module takes no wire messages).
FETCH_SESSION_ID_NOT_FOUND = 70
INVALID_FETCH_SESSION_EPOCH = 71
FETCH_SESSION_TOPIC_ID_ERROR = 106


def next_epoch(epoch: int) -> int:
    """Kafka's FetchMetadata.nextEpoch: wraps past int32 max to 1, never to 0 or -1."""
    return 1 if epoch >= 2**31 - 1 else epoch + 1


@dataclass(slots=True)
class CachedPartition:
    """A partition of a session: what the fetcher last asked for, and what it was last
    told (high watermark, log start offset, last stable offset)."""

    topic: str | None                  # None: a topic id this broker does not know
    topic_id: object
    partition: int
    fetch_offset: int
    max_bytes: int
    current_leader_epoch: int = -1
    last_fetched_epoch: int = -1
    log_start_offset: int = -1         # the follower's own, as sent
    high_watermark: int = -1
    sent_log_start_offset: int = -1
    last_stable_offset: int = -1


@dataclass
class FetchSession:
    id: int
    privileged: bool                   # a follower's session (Kafka: isFromFollower)
    uses_topic_ids: bool               # Fetch v13+: partitions are named by topic id
    partitions: "OrderedDict[tuple, CachedPartition]" = field(default_factory=OrderedDict)
    epoch: int = 1                     # the epoch the next request must carry
    last_used_ms: int = 0

    def value_key(self) -> tuple:
        return (self.privileged, len(self.partitions), self.id)


def must_respond(cached: CachedPartition, error: int, high_watermark: int,
                 log_start_offset: int, last_stable_offset: int, has_records: bool,
                 diverging: bool, preferred_read_replica: int) -> bool:
    """Whether an incremental answer lists this partition (Kafka's
    CachedPartition.maybeUpdateResponseData); updates the cached values it reports."""
    respond = has_records or diverging or preferred_read_replica >= 0
    if high_watermark != cached.high_watermark:
        respond = True
        cached.high_watermark = high_watermark
    if log_start_offset != cached.sent_log_start_offset:
        respond = True
        cached.sent_log_start_offset = log_start_offset
    if last_stable_offset != cached.last_stable_offset:
        respond = True
        cached.last_stable_offset = last_stable_offset
    if error:
        # Errors are always reported; forgetting the high watermark makes the next
        # answer report the partition again once it is healthy.
        respond = True
        cached.high_watermark = -1
    return respond


class FetchSessionCache:
    def __init__(self, clock, max_slots: int = DEFAULT_MAX_SLOTS,
                 eviction_ms: int = DEFAULT_EVICTION_MS, rng: random.Random | None = None):
        self._clock = clock
        self.max_slots = max_slots
        self.eviction_ms = eviction_ms
        self._rng = rng or random.Random()
        # Least recently used first.
        self._sessions: "OrderedDict[int, FetchSession]" = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: int) -> bool:
        return session_id in self._sessions

    def get(self, session_id: int) -> FetchSession | None:
        return self._sessions.get(session_id)

    def remove(self, session_id: int) -> FetchSession | None:
        return self._sessions.pop(session_id, None)

    def touch(self, session: FetchSession) -> None:
        session.last_used_ms = self._clock.monotonic_ms()
        self._sessions.move_to_end(session.id)

    def maybe_create(self, privileged: bool, uses_topic_ids: bool,
                     partitions: list[CachedPartition]) -> FetchSession | None:
        """A new session over `partitions` (their response values already cached), or
        None when the cache has no room for it (the fetch then stays sessionless)."""
        if self.max_slots <= 0 or not partitions:
            return None
        now = self._clock.monotonic_ms()
        if len(self._sessions) >= self.max_slots and not self._try_evict(
                (privileged, len(partitions)), now):
            return None
        sid = self._new_id()
        s = FetchSession(sid, privileged, uses_topic_ids, last_used_ms=now)
        for cp in partitions:
            s.partitions[(cp.topic_id if uses_topic_ids else cp.topic, cp.partition)] = cp
        self._sessions[sid] = s
        return s

    def _try_evict(self, value: tuple, now: int) -> bool:
        lru = next(iter(self._sessions.values()), None)
        if lru is None:
            return False
        if now - lru.last_used_ms > self.eviction_ms:
            victim = lru
        else:
            # privileged sessions are only evictable by privileged ones
            candidates = [s for s in self._sessions.values() if value[0] or not s.privileged]
            if not candidates:
                return False
            victim = min(candidates, key=FetchSession.value_key)
            if value <= victim.value_key()[:2]:
                return False
        del self._sessions[victim.id]
        self.evictions += 1
        return True

    def _new_id(self) -> int:
        while True:
            sid = self._rng.randint(1, 2**31 - 1)
            if sid not in self._sessions:
                return sid
