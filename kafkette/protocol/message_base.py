"""Helpers shared by the generated message classes (kept out of the generated code
so that it stays short)."""
from __future__ import annotations


def message_repr(self) -> str:
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
    return f"{type(self).__name__}({inner})"


def message_eq(self, other) -> bool:
    if type(self) is not type(other):
        return NotImplemented
    return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)


def to_dict(msg):
    """Plain-data view of a message (for tests, logs and the CLI's --json)."""
    if isinstance(msg, list):
        return [to_dict(x) for x in msg]
    slots = getattr(type(msg), "__slots__", None)
    if slots is None or not hasattr(type(msg), "read"):
        if isinstance(msg, memoryview):
            return bytes(msg)
        return msg
    return {name: to_dict(getattr(msg, name)) for name in slots}
