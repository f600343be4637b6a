"""Answers of a sans-IO coordinator, delivered only once its state is consistent.

A coordinator's entry points (a request, a timer, a collaborator's callback) change
state and queue answers (callback, result). Calling a client's callback in the middle
of a change would let it re-enter the coordinator and see a half-made state, so every
entry point runs inside `answering()`, and the answers go out when the outermost one
ends; an answer's callback that re-enters the coordinator only queues more, delivered
in the same flush. Kafka's coordinators get the same ordering from running each
group's or transactional id's work under its lock and completing responses after.
"""
from __future__ import annotations

import contextlib
from collections import deque
from typing import Any, Callable


class Outbox:
    def __init__(self, log, failure_event: str):
        self._log = log
        self._failure_event = failure_event
        self._queue: deque[tuple[Callable[[Any], None], Any]] = deque()
        self._depth = 0
        self._delivering = False

    @contextlib.contextmanager
    def answering(self):
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.flush()

    def send(self, callback: Callable[[Any], None], result: Any) -> None:
        self._queue.append((callback, result))

    def flush(self) -> None:
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._queue:
                callback, result = self._queue.popleft()
                try:
                    callback(result)
                except Exception:  # noqa: BLE001 - one broken connection, not the coordinator
                    self._log.exception(self._failure_event)
        finally:
            self._delivering = False
