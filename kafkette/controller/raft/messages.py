"""The Raft core's own messages: plain frozen dataclasses, no wire format.

The core (kafkette.controller.raft.core) is sans-IO and must not import the generated
Kafka message classes (DESIGN.md, "Layers"); kafkette.controller.raft.transport maps
these to and from KRaft's wire messages (Vote 52, BeginQuorumEpoch 53,
EndQuorumEpoch 54, Fetch 1, FetchSnapshot 59).

Every request carries `rid`, a request id chosen by the sender, and every response
echoes it. Over TCP the correlation id does that job; in the simulator, where
messages are duplicated and reordered, the rid lets a follower drop a stale Fetch
response instead of acting on it twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Error codes used inside the core, with Kafka's numbers so that the transport can
# pass them through unchanged.
NONE = 0
NOT_LEADER_OR_FOLLOWER = 6
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75
SNAPSHOT_NOT_FOUND = 98
POSITION_OUT_OF_RANGE = 99
INCONSISTENT_VOTER_SET = 94


@dataclass(frozen=True)
class Entry:
    """One proposal in the log: `values` occupy offsets offset .. offset+len-1 (one
    RecordBatch v2 on disk, its partitionLeaderEpoch = `epoch`). Control entries
    (the leader's epoch-start marker, KRaft's LeaderChangeMessage) have one value."""

    offset: int
    epoch: int
    values: tuple[bytes, ...]
    control: bool = False

    @property
    def last_offset(self) -> int:
        return self.offset + len(self.values) - 1

    @property
    def end_offset(self) -> int:
        return self.offset + len(self.values)

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.values) + 16


@dataclass(frozen=True)
class SnapshotId:
    """A snapshot covers offsets < end_offset; `epoch` is the epoch of the entry just
    before end_offset (KRaft's OffsetAndEpoch naming of `<end>-<epoch>.checkpoint`)."""

    end_offset: int
    epoch: int


@dataclass(frozen=True)
class VoteRequest:
    rid: int
    epoch: int            # the candidate's epoch (for a pre-vote: its current epoch)
    candidate_id: int
    last_epoch: int       # epoch of the candidate's last log entry
    end_offset: int       # the candidate's log end offset
    pre_vote: bool = False


@dataclass(frozen=True)
class VoteResponse:
    rid: int
    epoch: int
    leader_id: int | None
    granted: bool
    pre_vote: bool = False
    error: int = NONE


@dataclass(frozen=True)
class BeginQuorumEpochRequest:
    rid: int
    epoch: int
    leader_id: int


@dataclass(frozen=True)
class BeginQuorumEpochResponse:
    rid: int
    epoch: int
    leader_id: int | None
    error: int = NONE


@dataclass(frozen=True)
class EndQuorumEpochRequest:
    rid: int
    epoch: int
    leader_id: int
    preferred_successors: tuple[int, ...] = ()


@dataclass(frozen=True)
class EndQuorumEpochResponse:
    rid: int
    epoch: int
    leader_id: int | None
    error: int = NONE


@dataclass(frozen=True)
class FetchRequest:
    rid: int
    epoch: int
    replica_id: int
    fetch_offset: int
    last_fetched_epoch: int
    max_wait_ms: int = 0


@dataclass(frozen=True)
class FetchResponse:
    rid: int
    epoch: int
    leader_id: int | None
    error: int = NONE
    high_watermark: int = -1
    log_start_offset: int = 0
    entries: tuple[Entry, ...] = ()
    # Truncation (KIP-595): the follower's log diverges; the leader's log has epoch
    # `diverging_epoch` ending at `diverging_end_offset`.
    diverging_epoch: int = -1
    diverging_end_offset: int = -1
    # The follower is behind the log start: fetch this snapshot first.
    snapshot_id: SnapshotId | None = None


@dataclass(frozen=True)
class FetchSnapshotRequest:
    rid: int
    epoch: int
    replica_id: int
    snapshot_id: SnapshotId
    position: int
    max_bytes: int = 1 << 20


@dataclass(frozen=True)
class FetchSnapshotResponse:
    rid: int
    epoch: int
    leader_id: int | None
    error: int = NONE
    snapshot_id: SnapshotId | None = None
    size: int = 0
    position: int = 0
    chunk: bytes = b""


REQUESTS = (VoteRequest, BeginQuorumEpochRequest, EndQuorumEpochRequest, FetchRequest, FetchSnapshotRequest)
