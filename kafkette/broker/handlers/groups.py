"""Shared by the group handlers: the coordinator lookup and delayed answers."""
import asyncio


def ensure_coordinator(ctx):
    """The group coordinator of this broker, with `__consumer_offsets` created on
    first use (as Kafka creates it on the first FindCoordinator for a group)."""
    return ctx.broker.group_coordinator_ready()


def delayed_response():
    """(future, respond): the coordinator calls `respond` once, now or later."""
    fut = asyncio.get_running_loop().create_future()

    def respond(result) -> None:
        if not fut.done():
            fut.set_result(result)

    return fut, respond
