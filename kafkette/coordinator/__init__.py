"""Coordinators: consumer groups and committed offsets (group_coordinator), and
transactions (transaction_coordinator, records in transaction_log). Sans-IO: driven by method calls and Scheduler timers,
persisted through an OffsetStore; no wire messages, no asyncio (DESIGN.md, "Layers").
"""
from kafkette.errors import ErrorCode

FENCED_INSTANCE_ID = ErrorCode.FENCED_INSTANCE_ID
GROUP_MAX_SIZE_REACHED = ErrorCode.GROUP_MAX_SIZE_REACHED
GROUP_SUBSCRIBED_TO_TOPIC = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
from kafkette.coordinator.group import (
    ClassicGroup, ClassicGroupMember, GroupState, JoinMember, JoinResult, OffsetAndMetadata,
    SyncResult)
from kafkette.coordinator.group_coordinator import (
    NEW_MEMBER_JOIN_TIMEOUT_MS, GroupConfig, GroupCoordinator, GroupDescription, ListedGroup,
    MemberDescription, OffsetCommit)
from kafkette.coordinator.offsets_store import MemoryOffsetStore, OffsetStore
from kafkette.coordinator.partitioning import offsets_partition_for
from kafkette.coordinator.scheduler import FakeScheduler, LoopScheduler, Scheduler
from kafkette.coordinator.transaction_coordinator import (
    EndTxnResult, IllegalTxnTransition, InitPidResult, MarkerSender, ProducerIdSource,
    TransactionCoordinator, TransactionMetadata, TxnConfig, TxnDescription, TxnListing,
    TxnListings, TxnStateStore, TxnTransit)
from kafkette.coordinator.transaction_log import (
    TxnLogValue, TxnState, decode_txn_key, decode_txn_value, encode_txn_key, encode_txn_value)
from kafkette.coordinator.wire import CoordinatorRecordError

__all__ = [
    "GroupCoordinator", "GroupConfig", "JoinResult", "JoinMember", "SyncResult",
    "OffsetCommit", "OffsetAndMetadata", "GroupDescription", "MemberDescription",
    "ListedGroup", "GroupState", "ClassicGroup", "ClassicGroupMember",
    "OffsetStore", "MemoryOffsetStore", "CoordinatorRecordError",
    "Scheduler", "FakeScheduler", "LoopScheduler", "offsets_partition_for",
    "GROUP_MAX_SIZE_REACHED", "FENCED_INSTANCE_ID", "GROUP_SUBSCRIBED_TO_TOPIC",
    "NEW_MEMBER_JOIN_TIMEOUT_MS",
    "TransactionCoordinator", "TxnConfig", "TxnStateStore", "MarkerSender",
    "ProducerIdSource", "InitPidResult", "EndTxnResult", "TxnDescription", "TxnListing",
    "TxnListings", "TransactionMetadata", "TxnTransit", "IllegalTxnTransition", "TxnState",
    "TxnLogValue", "encode_txn_key", "decode_txn_key", "encode_txn_value", "decode_txn_value",
]
