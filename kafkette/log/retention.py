"""Retention: deleting whole old segments by time and by size, as Kafka's
`UnifiedLog.deleteOldSegments` does on every `log.retention.check.interval.ms`
(kafkette.broker.log_maintenance calls `enforce_retention` on that schedule).

Three passes, in Kafka's order, each deleting the oldest segments while its rule holds
(PartitionLog.deletable_segments: stop at the first segment the rule keeps, and never
a segment reaching past the high watermark nor an empty active segment):

1. log start offset: segments wholly below the log start offset (moved by DeleteRecords)
   — whatever the cleanup.policy, as in Kafka;
2. retention.bytes (>= 0): while the log minus the segment is still at least
   retention.bytes (Kafka: `size - retention.bytes >= segment size`);
3. retention.ms (>= 0): segments whose largest timestamp is more than retention.ms
   before now. The largest timestamp is the max of the segment's batch max timestamps,
   kept by the segment and its time index (Kafka's LogSegment.largestTimestamp); a
   segment with no timestamp at all (-1) uses the .log file's mtime, as Kafka does.

Passes 2 and 3 only run when cleanup.policy includes "delete".

The active segment: like Kafka 3.x/4.0, an active segment that breaks a rule is not
kept forever — when every segment of the log is to go, the log is rolled first and the
old active segment is deleted too, leaving an empty active segment at the log end
(so with retention.ms=1000 an idle topic is really empty a second later, which is what
users of Kafka see). An active segment holding data that is still retained is never
touched, and an empty one is never deleted.

What differs from Kafka: files are unlinked at once rather than after
file.delete.delay.ms (see LogSegment.delete); log.retention.ms/minutes/hours broker
defaults come into the topic's retention.ms through the effective topic configs; with
no threads, a pass runs on the event loop (it only unlinks files and rewrites two small
checkpoint files, so it is short).
"""
from __future__ import annotations

from kafkette.log.partition_log import PartitionLog
from kafkette.log.segment import LogSegment


def segment_largest_timestamp(seg: LogSegment) -> int:
    """Kafka's LogSegment.largestTimestamp: the largest batch max timestamp, or the
    file's last-modified time when no batch carries a timestamp."""
    ts = seg.max_timestamp
    return ts if ts >= 0 else seg.last_modified_ms()


def delete_retention_ms_breached(plog: PartitionLog, now_ms: int,
                                 high_watermark: int | None = None) -> int:
    retention_ms = plog.config.retention_ms
    if retention_ms < 0:
        return 0
    return plog.delete_segments(plog.deletable_segments(
        lambda seg, nxt: now_ms - segment_largest_timestamp(seg) > retention_ms,
        high_watermark), now_ms)


def delete_retention_size_breached(plog: PartitionLog, now_ms: int,
                                   high_watermark: int | None = None) -> int:
    retention_bytes = plog.config.retention_bytes
    size = plog.size_bytes
    if retention_bytes < 0 or size < retention_bytes:
        return 0
    excess = size - retention_bytes

    def breached(seg: LogSegment, nxt) -> bool:
        nonlocal excess
        if excess - seg.size >= 0:
            excess -= seg.size
            return True
        return False

    return plog.delete_segments(plog.deletable_segments(breached, high_watermark), now_ms)


def enforce_retention(plog: PartitionLog, now_ms: int, high_watermark: int | None = None) -> int:
    """One retention pass over one partition log; returns the segments deleted. Only
    segments wholly below `high_watermark` (the partition owner's; default the log end)
    may go: a follower that has not yet seen the high watermark move keeps them."""
    if plog.closed:
        return 0
    deleted = plog.delete_segments_below_log_start(high_watermark)
    if plog.config.delete:
        deleted += delete_retention_size_breached(plog, now_ms, high_watermark)
        deleted += delete_retention_ms_breached(plog, now_ms, high_watermark)
    return deleted
