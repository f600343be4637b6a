"""The aborted-transaction index of one segment: Kafka's `.txnindex` (TransactionIndex,
AbortedTxn; KIP-98).

One entry per transaction that was ABORTED by a marker stored in this segment, in the
order the markers were appended (so ascending last offset). An entry is 34 bytes, big
endian, Kafka's layout:

    int16 version (0) | int64 producer id | int64 first offset | int64 last offset
    | int64 last stable offset

`first offset` is the offset of the transaction's first batch in this partition, `last
offset` that of its ABORT marker, and `last stable offset` the partition's first unstable
offset right after the abort (the first offset of the earliest transaction still
ongoing, or the marker's offset + 1 when none is). A read_committed Fetch uses the
entries (PartitionLog.collect_aborted_transactions) to tell the consumer which
producers' batches to drop, and the last stable offset to know when it may stop reading
further segments' indexes.

The file `<base offset, 20 digits>.txnindex` is created only when the segment gets its
first entry (Kafka's lazy channel), so most segments have none. What differs from Kafka:
no file descriptor is kept open (aborts are rare, an append opens, writes and closes);
the entries are cached in memory once read (dropped when the segment becomes inactive);
and an index truncated to nothing is deleted rather than left empty.

Sans-IO in the layer sense (plain blocking file calls, no asyncio), single-threaded,
owned by its LogSegment.
"""
from __future__ import annotations

import os
import struct
from typing import NamedTuple

TXN_INDEX_SUFFIX = ".txnindex"
TXN_INDEX_VERSION = 0
_ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = _ENTRY.size  # 34
_O_BINARY = getattr(os, "O_BINARY", 0)
_DELETED_SUFFIX = ".deleted"


class AbortedTxn(NamedTuple):
    """One index entry (Kafka's AbortedTxn)."""

    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class CorruptTxnIndexError(Exception):
    """A `.txnindex` that cannot be trusted (torn entry, unknown version, an entry below
    the segment): recovery rebuilds it from the log."""


def encode_entry(txn: AbortedTxn) -> bytes:
    return _ENTRY.pack(TXN_INDEX_VERSION, txn.producer_id, txn.first_offset, txn.last_offset,
                       txn.last_stable_offset)


def decode_entries(data: bytes, base_offset: int = 0) -> list[AbortedTxn]:
    """Parse a whole index file. Raises CorruptTxnIndexError for a partial entry, an
    unknown version (Kafka refuses versions above its current one), last offsets out of
    order or below `base_offset` (Kafka's TransactionIndex.sanityCheck)."""
    if len(data) % ENTRY_SIZE:
        raise CorruptTxnIndexError(f"{len(data)} bytes is not a whole number of {ENTRY_SIZE}-byte entries")
    out: list[AbortedTxn] = []
    last = -1
    for version, pid, first, last_offset, lso in _ENTRY.iter_unpack(data):
        if version != TXN_INDEX_VERSION:
            raise CorruptTxnIndexError(f"unknown aborted transaction entry version {version}")
        if last_offset < base_offset or last_offset <= last:
            raise CorruptTxnIndexError(f"entry with last offset {last_offset} out of order or below "
                                       f"the segment base {base_offset}")
        last = last_offset
        out.append(AbortedTxn(pid, first, last_offset, lso))
    return out


class TransactionIndex:
    """The `.txnindex` of the segment with base offset `base_offset` at `path`."""

    __slots__ = ("path", "base_offset", "_entries", "_exists", "_dirty")

    def __init__(self, path: str, base_offset: int, exists: bool | None = None):
        self.path = path
        self.base_offset = base_offset
        self._exists = os.path.exists(path) if exists is None else exists
        self._entries: list[AbortedTxn] | None = None if self._exists else []
        self._dirty = False  # appended since the last fsync

    @property
    def exists(self) -> bool:
        return self._exists

    def _load(self) -> list[AbortedTxn]:
        entries = self._entries
        if entries is None:
            try:
                with open(self.path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                self._exists = False
                data = b""
            entries = self._entries = decode_entries(data, self.base_offset)
        return entries

    def check(self) -> None:
        """Read and validate the file now (recovery): CorruptTxnIndexError if bad."""
        self._entries = None
        self._load()

    def entries(self) -> list[AbortedTxn]:
        return list(self._load())

    def unload(self) -> None:
        """Drop the cached entries (an inactive segment reads them again when needed)."""
        if self._exists:
            self._entries = None

    def append(self, txn: AbortedTxn) -> None:
        """Add an entry; last offsets must increase (Kafka throws too: two aborts cannot
        share a marker offset)."""
        entries = self._load()
        if entries and entries[-1].last_offset >= txn.last_offset:
            raise ValueError(f"aborted transaction with last offset {txn.last_offset} is not after "
                             f"{entries[-1].last_offset} in {self.path}")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _O_BINARY, 0o644)
        try:
            os.write(fd, encode_entry(txn))  # 34 bytes: one write
        finally:
            os.close(fd)
        self._exists = True
        self._dirty = True
        entries.append(txn)

    def flush(self) -> None:
        """fsync the file if entries were appended since the last flush."""
        if not self._dirty:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | _O_BINARY)
        except FileNotFoundError:
            self._dirty = False
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._dirty = False

    def truncate_to(self, offset: int) -> int:
        """Remove the entries whose marker is at or after `offset` (Kafka's
        TransactionIndex.truncateTo). Returns how many went."""
        if not self._exists:
            return 0
        entries = self._load()
        keep = len(entries)
        while keep and entries[keep - 1].last_offset >= offset:
            keep -= 1
        removed = len(entries) - keep
        if removed:
            del entries[keep:]
            if keep:
                os.truncate(self.path, keep * ENTRY_SIZE)
            else:
                self._unlink()
        return removed

    def reset(self) -> None:
        """Forget every entry and remove the file (before a rebuild)."""
        self._unlink()
        self._entries = []

    def _unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._exists = False
        self._dirty = False

    def delete(self) -> None:
        """Remove the file Kafka's way (rename to `.deleted`, then unlink), for segments
        deleted by retention / DeleteRecords / truncation."""
        if not self._exists and not os.path.exists(self.path):
            return
        try:
            os.rename(self.path, self.path + _DELETED_SUFFIX)
            os.unlink(self.path + _DELETED_SUFFIX)
        except FileNotFoundError:
            pass
        self._exists = False
        self._dirty = False
        self._entries = []

    def collect(self, fetch_offset: int, upper_bound_offset: int) -> tuple[list[AbortedTxn], bool]:
        """Kafka's collectAbortedTxns: the entries whose transaction overlaps
        [fetch_offset, upper_bound_offset) — last offset >= fetch_offset and first offset
        < upper_bound_offset — and whether the search is complete (an entry's last stable
        offset reached the upper bound: no transaction aborted in a later segment can
        have started below it)."""
        if not self._exists:
            return [], False
        out = []
        for txn in self._load():
            if txn.last_offset >= fetch_offset and txn.first_offset < upper_bound_offset:
                out.append(txn)
            if txn.last_stable_offset >= upper_bound_offset:
                return out, True
        return out, False
