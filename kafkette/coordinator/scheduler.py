"""Timers for the sans-IO coordinators.

The group coordinator never sleeps and never awaits: every delayed thing it does
(the initial rebalance delay, the rebalance timeout, each member's session timeout,
the pending-sync timeout, the periodic offsets expiry) is a callback it registers with
a `Scheduler` and may cancel. Kafka uses a timing wheel ("purgatory") for the same
job; here the broker passes a `LoopScheduler` over its asyncio loop and tests pass a
`FakeScheduler`, whose time only moves when the test says so.

Deadlines are absolute wall-clock milliseconds (`clock.time_ms()`), the same time base
as commit timestamps and `current_state_timestamp` in `__consumer_offsets`, so a test
that advances the clock by `offsets.retention.minutes` sees offsets expire exactly as
the broker would.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable, Protocol

from kafkette.clock import ManualClock
from kafkette.logging import get_logger

_log = get_logger("kafkette.coordinator.scheduler")


class Scheduler(Protocol):
    """What a coordinator needs from time: the current time and one-shot timers."""

    def now_ms(self) -> int: ...

    def call_at(self, deadline_ms: int, callback: Callable[[], None]) -> Any:
        """Run `callback()` once at (or soon after) `deadline_ms`; returns a handle for
        `cancel`. A deadline in the past runs as soon as possible, never synchronously
        inside `call_at`."""
        ...

    def cancel(self, handle: Any) -> None:
        """Forget a timer; cancelling a timer that already ran (or twice) is harmless."""
        ...


class FakeTimer:
    __slots__ = ("deadline_ms", "seq", "callback", "cancelled", "done")

    def __init__(self, deadline_ms: int, seq: int, callback: Callable[[], None]):
        self.deadline_ms = deadline_ms
        self.seq = seq
        self.callback = callback
        self.cancelled = False
        self.done = False

    def __lt__(self, other: "FakeTimer") -> bool:
        return (self.deadline_ms, self.seq) < (other.deadline_ms, other.seq)

    def __repr__(self) -> str:
        return f"FakeTimer(deadline_ms={self.deadline_ms}, cancelled={self.cancelled})"


class FakeScheduler:
    """A scheduler for tests: time stands still until `advance(ms)`, which runs every
    due callback in deadline order (ties in the order they were scheduled), moving the
    clock to each deadline first, so a callback sees `now_ms()` equal to its deadline.
    Callbacks may schedule or cancel timers, and a timer they schedule inside the
    advanced window runs in the same `advance`. Exceptions from callbacks propagate,
    so a test fails loudly."""

    def __init__(self, clock: ManualClock | None = None, now_ms: int | None = None):
        if clock is None:
            clock = ManualClock() if now_ms is None else ManualClock(now_ms)
        self.clock = clock
        self._heap: list[FakeTimer] = []
        self._seq = itertools.count()

    def now_ms(self) -> int:
        return self.clock.time_ms()

    def call_at(self, deadline_ms: int, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(int(deadline_ms), next(self._seq), callback)
        heapq.heappush(self._heap, timer)
        return timer

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> FakeTimer:
        return self.call_at(self.now_ms() + delay_ms, callback)

    def cancel(self, handle: FakeTimer | None) -> None:
        if handle is not None:
            handle.cancelled = True

    def advance(self, ms: int) -> int:
        """Move time forward by `ms` (>= 0), running due callbacks; returns how many ran."""
        if ms < 0:
            raise ValueError("time only moves forward")
        target = self.now_ms() + ms
        ran = 0
        while self._heap and self._heap[0].deadline_ms <= target:
            timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            if timer.deadline_ms > self.clock.now_ms:
                self.clock.now_ms = timer.deadline_ms
            timer.done = True
            timer.callback()
            ran += 1
        self.clock.now_ms = max(self.clock.now_ms, target)
        return ran

    def run_due(self) -> int:
        """Run the callbacks already due (deadline <= now) without moving time."""
        return self.advance(0)

    def pending(self) -> list[FakeTimer]:
        """Live timers, earliest first (for assertions)."""
        return sorted(t for t in self._heap if not t.cancelled)

    def next_deadline_ms(self) -> int | None:
        live = self.pending()
        return live[0].deadline_ms if live else None


class LoopTimer:
    __slots__ = ("deadline_ms", "callback", "handle", "cancelled")

    def __init__(self, deadline_ms: int, callback: Callable[[], None]):
        self.deadline_ms = deadline_ms
        self.callback = callback
        self.handle = None        # the asyncio TimerHandle once armed
        self.cancelled = False    # cancelled, or already ran


class LoopScheduler:
    """The real scheduler: asyncio's `loop.call_at`, with ms deadlines on the `clock`'s
    wall-clock time base translated to the loop's monotonic time when armed. (A
    wall-clock jump after arming does not move a timer; Kafka's timing wheel behaves
    the same way, as it also runs on a monotonic clock.) A callback that raises is
    logged and does not kill the loop.

    `LoopScheduler(loop, clock)` arms timers on `loop`. `LoopScheduler(clock)` uses the
    running loop; a timer set while no loop runs (a synchronous handler driven outside
    the event loop, as handler tests do) waits and is armed by the next call made
    from inside a running loop."""

    def __init__(self, loop=None, clock=None):
        if clock is None and loop is not None and not hasattr(loop, "call_at"):
            loop, clock = None, loop  # LoopScheduler(clock)
        if clock is None:
            raise TypeError("LoopScheduler needs a clock")
        self._loop = loop
        self._clock = clock
        self._unarmed: list[LoopTimer] = []

    def now_ms(self) -> int:
        if self._unarmed:
            self._arm_unarmed()
        return self._clock.time_ms()

    def _current_loop(self):
        if self._loop is not None:
            return self._loop
        import asyncio  # only this adapter touches asyncio

        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _arm_unarmed(self) -> None:
        loop = self._current_loop()
        if loop is None:
            return
        timers, self._unarmed = self._unarmed, []
        now = self._clock.time_ms()
        for timer in timers:
            if not timer.cancelled:
                delay_s = max(0, timer.deadline_ms - now) / 1000.0
                timer.handle = loop.call_at(loop.time() + delay_s, self._run, timer)

    def call_at(self, deadline_ms: int, callback: Callable[[], None]) -> LoopTimer:
        timer = LoopTimer(int(deadline_ms), callback)
        self._unarmed.append(timer)
        self._arm_unarmed()
        return timer

    def cancel(self, handle: LoopTimer | None) -> None:
        if handle is not None:
            handle.cancelled = True
            if handle.handle is not None:
                handle.handle.cancel()

    @staticmethod
    def _run(timer: LoopTimer) -> None:
        if timer.cancelled:
            return
        timer.cancelled = True
        try:
            timer.callback()
        except Exception:  # noqa: BLE001 - one bad timer must not stop the others
            _log.exception("coordinator_timer_failed")
