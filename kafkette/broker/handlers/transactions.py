"""What the transaction handlers (InitProducerId with a transactional id,
AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, DescribeTransactions, ListTransactions)
share: reaching the transaction coordinator and turning its callback answers into the
awaitable a handler returns."""
from __future__ import annotations

import asyncio

from kafkette.errors import ErrorCode


def txn_coordinator(ctx):
    """The coordinator, or None while `__transaction_state` is being created (the
    client is told COORDINATOR_NOT_AVAILABLE and retries)."""
    return ctx.broker.txn_coordinator_ready()


def answer_of(start) -> asyncio.Future:
    """`start(callback)` asks the coordinator; the future takes the first answer."""
    fut = asyncio.get_running_loop().create_future()

    def done(result):
        if not fut.done():
            fut.set_result(result)
    start(done)
    return fut


def fenced_for_version(code: int, version: int, first_fenced_version: int) -> int:
    """KIP-588: clients older than the version that introduced PRODUCER_FENCED treat
    INVALID_PRODUCER_EPOCH the same way; Kafka sends them that instead."""
    if code == ErrorCode.PRODUCER_FENCED and version < first_fenced_version:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return code
