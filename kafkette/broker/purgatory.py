"""Delayed operations (Kafka's "purgatory"), keyed by topic-partition.

A request that cannot be answered yet waits here on the partitions it depends on:
- a Fetch that found fewer than min_bytes (woken by an append on a leader, which a
  follower's fetch waits for, and by a high-watermark move, which a consumer's does);
- a Produce with acks=all (woken by high-watermark moves and leadership changes).

`watch(keys)` returns a future that the next `notify(key)` of any of those keys
completes; the waiter re-checks its condition and watches again or answers. No
polling loop: the replica manager calls `notify` when a log end offset, a high
watermark or a partition's leadership moves. Kafka keeps one purgatory per kind of
operation with a timing wheel for the timeouts; here each waiter's deadline is its
own asyncio timer.
"""
from __future__ import annotations

import asyncio


class Purgatory:
    def __init__(self, name: str = ""):
        self.name = name
        # Per key, the waiting futures in the order they started waiting (a dict as an
        # ordered set): a notify wakes the oldest first, the same order every run. A
        # set would wake them in the order of their addresses, which differs from run
        # to run and made the seeded simulations (broker/replication_sim.py) replay
        # differently.
        self._waiters: dict[tuple[str, int], dict[asyncio.Future, None]] = {}

    def watch(self, keys) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        keys = tuple(keys)
        for key in keys:
            self._waiters.setdefault(key, {})[fut] = None
        fut.add_done_callback(lambda f: self._forget(f, keys))
        return fut

    def _forget(self, fut, keys) -> None:
        for key in keys:
            s = self._waiters.get(key)
            if s is not None:
                s.pop(fut, None)
                if not s:
                    del self._waiters[key]

    def notify(self, key) -> None:
        s = self._waiters.get(key)
        if s:
            for fut in list(s):
                if not fut.done():
                    fut.set_result(None)

    def wake_all(self) -> None:
        """On shutdown (and leadership changes of many partitions): every waiter
        re-checks now."""
        for s in list(self._waiters.values()):
            for fut in list(s):
                if not fut.done():
                    fut.set_result(None)

    def __len__(self) -> int:
        return len({f for s in self._waiters.values() for f in s})


async def wait_until(purgatory: Purgatory, keys, check, deadline: float, closing=lambda: False):
    """Re-run `check()` each time one of `keys` is notified, until it returns
    something other than None or the loop time reaches `deadline`; returns the last
    result (None at the deadline)."""
    loop = asyncio.get_running_loop()
    while True:
        result = check()
        if result is not None or closing():
            return result
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        fut = purgatory.watch(keys)
        try:
            await asyncio.wait_for(fut, remaining)
        except asyncio.TimeoutError:
            return check()
