"""Delayed operations (Kafka's "purgatory"): a Fetch that found fewer than
min_bytes waits here until an append to one of its partitions wakes it, or its
max_wait_ms runs out. No polling loop: appends call `notify`.

Kafka keys its DelayedFetch by topic-partition the same way; it also completes
waiting fetches when the high watermark moves, which is what `notify` will be
called for once replication lands.
"""
from __future__ import annotations

import asyncio


class FetchPurgatory:
    def __init__(self):
        self._waiters: dict[tuple[str, int], set[asyncio.Future]] = {}

    def watch(self, keys) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        for key in keys:
            self._waiters.setdefault(key, set()).add(fut)
        fut.add_done_callback(lambda f, keys=tuple(keys): self._forget(f, keys))
        return fut

    def _forget(self, fut, keys) -> None:
        for key in keys:
            s = self._waiters.get(key)
            if s is not None:
                s.discard(fut)
                if not s:
                    del self._waiters[key]

    def notify(self, key) -> None:
        s = self._waiters.get(key)
        if s:
            for fut in list(s):
                if not fut.done():
                    fut.set_result(None)

    def wake_all(self) -> None:
        """On shutdown: answer every waiting fetch now."""
        for s in list(self._waiters.values()):
            for fut in list(s):
                if not fut.done():
                    fut.set_result(None)

    def __len__(self) -> int:
        return len({f for s in self._waiters.values() for f in s})
