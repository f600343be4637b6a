"""Log store: segments, indexes, partition logs (Kafka's on-disk layout)."""
from kafkette.log.log_manager import LogManager
from kafkette.log.partition_log import (
    AppendResult,
    LogConfig,
    OffsetAndTimestamp,
    PartitionLog,
    TimestampAndOffset,
)
from kafkette.log.segment import LogSegment

__all__ = [
    "AppendResult",
    "LogConfig",
    "LogManager",
    "LogSegment",
    "OffsetAndTimestamp",
    "PartitionLog",
    "TimestampAndOffset",
]
