"""Fuzz frames, each a pure function of (seed, index).

`frame(seed, i)` seeds a `random.Random` with the pair alone, so frame i of a run can be
rebuilt and replayed without generating the frames before it (`--replay SEED:INDEX`).

Sources of frames:

- structured: a request of a random API key and version, built as an instance of the
  generated message class (kafkette/protocol/messages) whose fields get values walked from
  protocol_specs/ (boundary integers, empty/long/non-ASCII strings, null where the
  version allows it, record batches in `records` fields). It is encoded by the class's
  own `write` through a `LyingWriter`, which now and then lies in a length or count
  (huge, negative, off by one), a string's UTF-8, an integer (boundary values) or a
  tagged-field section (huge count, duplicated or unknown tags, sizes that overrun).
- captures: one of the client frames of ../shared/client-captures (when that folder is
  present, as tests/test_codec_captures.py locates it; skipped otherwise).

Either may then get byte-level mutations: truncation, bit flips, a boundary value written
over a random position, bytes inserted, deleted or duplicated, and a header with a wrong
version or an unknown API key. A small share of frames lie in the size prefix itself
(negative, above socket.request.max.bytes, or shorter than the frame).
"""
from __future__ import annotations

import json
import os
import random
import struct
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from kafkette.protocol import records as rec
from kafkette.protocol.headers import encode_request_header
from kafkette.protocol.messages import API_MESSAGES
from kafkette.protocol.primitives import Writer, _uvarint_bytes
from kafkette.protocol.specs import load_all_specs, snake_case

BROKER = "broker"
CONTROLLER = "controller"

#: The topic of the healthy client: never named by a fuzz frame.
HEALTHY_TOPIC = "fuzz-healthy"
#: Topics the runner creates so that structured Produce/Fetch frames reach real logs
#: (one compacted, so that the cleaner reads what the fuzzer wrote).
TARGET_TOPICS = ("fuzz-target", "fuzz-compact")

# APIs a controller listener serves in Kafka (KRaft quorum and broker lifecycle), which
# the controller-listener frames favour; any key can still be drawn.
CONTROLLER_KEYS = (18, 52, 53, 54, 55, 1, 59, 62, 63, 64, 67, 56, 70, 73, 80, 81, 19, 60)

_STRINGS = ["", "fuzz-target", "fuzz-compact", "__consumer_offsets", "__transaction_state",
            "fuzz-group", "g", "c", "fuzz-txn", "User:ANONYMOUS", "cleanup.policy",
            "compact", "retention.ms", "1", "-1", "PLAIN", "range", "consumer",
            "127.0.0.1", "*", "a.b-c_d", "\u00e9\u4e2d\U0001f600", "x" * 249, "y" * 300]
_INT_BOUNDS = {
    "int8": (-128, 127), "int16": (-32768, 32767), "uint16": (0, 65535),
    "int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1),
}
_PRIMITIVES = {"int8", "int16", "uint16", "int32", "int64", "float64", "bool", "string",
               "bytes", "uuid", "records"}


def _versions(spec: str | None) -> tuple[int, int] | None:
    """'3+' / '0-6' / '5' / 'none' → (lo, hi) inclusive, or None."""
    if spec is None or spec == "none":
        return None
    s = str(spec)
    if s.endswith("+"):
        return int(s[:-1]), 1 << 15
    if "-" in s:
        lo, hi = s.split("-")
        return int(lo), int(hi)
    return int(s), int(s)


def _in(spec, version: int) -> bool:
    r = _versions(spec)
    return r is not None and r[0] <= version <= r[1]


@lru_cache(maxsize=1)
def request_specs() -> dict[int, dict]:
    out = {}
    for spec in load_all_specs().values():
        if spec.get("type") == "request" and spec.get("api_key") in API_MESSAGES:
            out[spec["api_key"]] = spec
    return out


# --------------------------------------------------------------------------- values

#: Fields that name a cluster member or its registration. A frame that names the
#: fuzzed node itself (id 1) with its broker epoch is a genuine control-plane request
#: (Kafka trusts its controller listener as well): a heartbeat asking to shut down does
#: shut the broker down. So frames impersonate no member: other ids are fair game.
_IDENTITY = ("broker_id", "node_id", "replica_id", "leader_id", "voter_id", "candidate_id",
             "controller_id", "broker_epoch", "preferred_successors", "replica_epoch")
NODE_ID = 1


def _int(rng: random.Random, kind: str, name: str) -> int:
    lo, hi = _INT_BOUNDS[kind]
    if any(name.endswith(n) for n in _IDENTITY):
        v = rng.choice((-1, 0, 2, 3, 3001, 1000, hi, lo, -2))
        return v if "epoch" not in name else rng.choice((-1, -2, hi, lo, 10**6))
    if "timeout" in name or "wait" in name:
        # Long polls and rebalance timeouts wait legitimately; keep most of them short so
        # that "no answer" stays a finding (the runner decodes the rest before blaming).
        if rng.random() < 0.9:
            return max(lo, min(hi, rng.choice((-1, 0, 1, 10, 100, 500))))
    r = rng.random()
    if r < 0.35:
        return rng.choice((lo, hi, -1, 0, 1, lo + 1, hi - 1, 0 if lo == 0 else -2))
    if r < 0.75:
        return max(lo, min(hi, rng.randint(-2, 8)))
    return rng.randint(lo, hi)


def _string(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.75:
        return rng.choice(_STRINGS)
    if r < 0.95:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz-._") for _ in range(rng.randint(1, 12)))
    return "z" * rng.choice((1000, 5000, 32767))


def _bytes(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.4:
        return b""
    if r < 0.9:
        return rng.randbytes(rng.randint(1, 64))
    return rng.randbytes(rng.choice((1000, 20000)))


def _uuid(rng: random.Random) -> uuid.UUID:
    r = rng.random()
    if r < 0.4:
        return uuid.UUID(int=0)
    if r < 0.5:
        return uuid.UUID(int=(1 << 128) - 1)
    return uuid.UUID(int=rng.getrandbits(128))


def _primitive(rng: random.Random, kind: str, name: str):
    if kind in _INT_BOUNDS:
        return _int(rng, kind, name)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "float64":
        return rng.choice((0.0, -1.0, 1e308, float("inf"), float("nan"), rng.random()))
    if kind == "string":
        return _string(rng)
    if kind == "bytes":
        return _bytes(rng)
    if kind == "uuid":
        return _uuid(rng)
    if kind == "records":
        return record_set(rng)
    raise ValueError(kind)


def _find_struct(classes: list, name: str):
    for c in reversed(classes):
        sub = getattr(c, name, None)
        if isinstance(sub, type):
            return sub
    raise LookupError(name)


def _build(rng: random.Random, cls, fields: list, version: int, classes: list, common: dict,
           depth: int):
    kwargs = {}
    for f in fields:
        name = f["name"]
        attr = snake_case(name)
        attr = attr + "_" if attr in ("from", "class", "is", "in") else attr
        if attr not in cls.__slots__:
            continue
        kind = f["type"]
        present = _in(f.get("versions"), version) or _in(f.get("tagged_versions"), version)
        nullable = _in(f.get("nullable_versions"), version)
        if not present and rng.random() < 0.8:
            continue  # not written at this version anyway
        if nullable and rng.random() < 0.15:
            kwargs[attr] = None
            continue
        if kind.startswith("[]"):
            inner = kind[2:]
            n = 0 if depth > 4 else rng.choice((0, 1, 1, 2, 3))
            if inner in _PRIMITIVES:
                kwargs[attr] = [_primitive(rng, inner, snake_case(name)) for _ in range(n)]
            else:
                sub = _find_struct(classes + [cls], inner)
                sub_fields = f.get("fields") or common[inner]
                kwargs[attr] = [_build(rng, sub, sub_fields, version, classes + [cls], common,
                                       depth + 1) for _ in range(n)]
        elif kind in _PRIMITIVES:
            kwargs[attr] = _primitive(rng, kind, snake_case(name))
        else:
            sub = _find_struct(classes + [cls], kind)
            kwargs[attr] = _build(rng, sub, f.get("fields") or common[kind], version,
                                  classes + [cls], common, depth + 1)
    obj = cls()
    for k, v in kwargs.items():
        setattr(obj, k, v)
    return obj


def random_request(rng: random.Random, api_key: int, version: int):
    spec = request_specs()[api_key]
    cls = API_MESSAGES[api_key][0]
    common = {c["name"]: c["fields"] for c in spec.get("common_structs", []) or []}
    msg = _build(rng, cls, spec["fields"], version, [], common, 0)
    if api_key == 0 and rng.random() < 0.6:
        # Produce to the fuzz topics' real partitions, so batches reach the log.
        for t in msg.topic_data or []:
            t.name = rng.choice(TARGET_TOPICS + ("__consumer_offsets",))
            for p in t.partition_data or []:
                p.index = rng.choice((0, 1, 0, 2, -1))
    return msg


# --------------------------------------------------------------------------- record batches

def _bad_varint(rng: random.Random) -> bytes:
    return rng.choice((b"\xff" * 10, b"\x80" * 11, b"\xff", b"\x81\x80\x80\x80\x80\x80\x80\x80\x80\x02",
                       _uvarint_bytes(2**32)))


def record_batch(rng: random.Random) -> bytes:
    """One v2 batch, usually valid, often broken in one place."""
    n = rng.choice((1, 1, 2, 3, 10))
    recs = []
    for i in range(n):
        key = None if rng.random() < 0.2 else rng.randbytes(rng.randint(0, 8))
        value = None if rng.random() < 0.1 else rng.randbytes(rng.randint(0, 32))
        headers = [("h", b"v")] if rng.random() < 0.2 else None
        recs.append((key, value, headers))
    codec = rng.choice((0, 0, 1, 2, 3, 4))
    pid = rng.choice((-1, -1, 0, 1, 2**63 - 1))
    batch = bytearray(rec.build_batch(
        # A timestamp from the seed, not the clock: frames must replay byte for byte.
        recs, 0, codec=codec, producer_id=pid,
        timestamp_ms=rng.choice((1_765_000_000_000 + rng.randrange(10**9), 0, -1, 2**62)),
        producer_epoch=rng.choice((-1, 0, 32767)),
        base_sequence=rng.choice((-1, 0, 2**31 - 1)),
        transactional=rng.random() < 0.1, control=rng.random() < 0.05))
    r = rng.random()
    fix_crc = True
    if r < 0.25:
        return bytes(batch)
    if r < 0.35:
        fix_crc = False
        batch[17] ^= 1 << rng.randrange(8)  # the CRC itself
    elif r < 0.55:
        # A broken header field: length, epoch, magic, attributes, last offset delta,
        # timestamps, producer fields, record count.
        where, fmt = rng.choice(((8, ">i"), (12, ">i"), (16, ">b"), (21, ">h"), (23, ">i"),
                                 (27, ">q"), (35, ">q"), (43, ">q"), (51, ">h"), (53, ">i"),
                                 (57, ">i")))
        bits = struct.calcsize(fmt) * 8
        val = rng.choice((0, -1, 1, 2, 7, -(1 << (bits - 1)), (1 << (bits - 1)) - 1))
        struct.pack_into(fmt, batch, where, val)
        fix_crc = rng.random() < 0.8
    elif r < 0.75:
        # A compressed payload that does not decompress (the CRC is made right, so only
        # a reader that decompresses notices).
        payload = rng.choice((rng.randbytes(rng.randint(0, 40)), b"\x1f\x8b\x08\x00" + rng.randbytes(20),
                              b"\x82SNAPPY\x00" + struct.pack(">iii", 1, 1, 2**31 - 1),
                              b"\x04\x22\x4d\x18" + rng.randbytes(12),
                              b"\x28\xb5\x2f\xfd" + rng.randbytes(12)))
        del batch[61:]
        batch += payload
        struct.pack_into(">i", batch, 8, 49 + len(payload))
        attrs = struct.unpack_from(">h", batch, 21)[0]
        struct.pack_into(">h", batch, 21, (attrs & ~7) | rng.choice((1, 2, 3, 4, 5, 7)))
    elif r < 0.9:
        # Records that lie inside a valid-CRC batch: bad varints, lengths past the end.
        if codec == 0 and len(batch) > 62:
            pos = rng.randrange(61, len(batch))
            batch[pos:pos + 1] = _bad_varint(rng)
            struct.pack_into(">i", batch, 8, len(batch) - 12)
    else:
        cut = rng.randrange(0, len(batch))
        del batch[cut:]
        fix_crc = False
    if fix_crc and len(batch) >= 61:
        struct.pack_into(">I", batch, 17, rec._crc32c(memoryview(batch)[21:]))
    return bytes(batch)


def record_set(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.05:
        return b""
    if r < 0.1:
        # A legacy message set (magic 0/1), which Kafka 4 refuses on produce.
        body = struct.pack(">ibbi", 0, rng.choice((0, 1)), 0, -1) + struct.pack(">i", 3) + b"abc"
        return struct.pack(">qi", 0, len(body)) + body
    if r < 0.13:
        return rng.randbytes(rng.randint(1, 100))
    return b"".join(record_batch(rng) for _ in range(rng.choice((1, 1, 1, 2, 3))))


# --------------------------------------------------------------------------- the lying writer

class LyingWriter(Writer):
    """A Writer that, with probability `p` per call, writes a wrong length, count, integer
    or tagged-field section instead of the true one. The generated `write` methods call
    `uvarint` themselves only for tagged-field sections (counts, tags and sizes), so a lie
    there is a lie in a tagged-field section."""

    __slots__ = ("rng", "p")

    def __init__(self, rng: random.Random, p: float):
        super().__init__()
        self.rng = rng
        self.p = p

    def _lie(self) -> bool:
        return self.p > 0 and self.rng.random() < self.p

    def _bad_len(self, n: int, compact: bool) -> None:
        rng = self.rng
        v = rng.choice((-2, -1, n + 1, max(0, n - 1), 2**31 - 1, 2**30, 0x7FFF, 1 << 20))
        if compact:
            if rng.random() < 0.3:
                self.buf += _bad_varint(rng)
            else:
                Writer.uvarint(self, max(0, v + 1))
        else:
            self.buf += struct.pack(">i", max(-2**31, min(2**31 - 1, v)))

    def array_len(self, n, compact: bool) -> None:
        if self._lie():
            self._bad_len(0 if n is None else n, compact)
        else:
            Writer.array_len(self, n, compact)

    def string(self, v, compact: bool) -> None:
        if v is not None and self._lie():
            data = v.encode("utf-8")
            if self.rng.random() < 0.3:
                data = b"\xff\xfe" + data  # invalid UTF-8
                Writer.uvarint(self, len(data) + 1) if compact else self.int16(len(data))
            elif compact:
                self._bad_len(len(data), True)
            else:
                self.buf += struct.pack(">h", self.rng.choice((-2, -1, 0x7FFF, len(data) + 1)))
            self.buf += data
            return
        Writer.string(self, v, compact)

    def bytes(self, v, compact: bool) -> None:
        if v is not None and self._lie():
            self._bad_len(len(v), compact)
            self.buf += v
            return
        Writer.bytes(self, v, compact)

    records = bytes

    def uvarint(self, v: int) -> None:
        if not self._lie():
            Writer.uvarint(self, v)
            return
        rng = self.rng
        r = rng.random()
        if r < 0.25:
            self.buf += _bad_varint(rng)
        elif r < 0.5:
            Writer.uvarint(self, rng.choice((2**31 - 1, 2**32, 10**6, v + 1)))
        else:
            # A made-up tagged-field section: duplicated, unknown, huge tags; sizes that
            # lie about their data.
            k = rng.choice((1, 2, 3))
            Writer.uvarint(self, k)
            tag = rng.choice((0, 1, 2, 2**31 - 1, 2**32 + 5, 10**12))
            for _ in range(k):
                if rng.random() < 0.5:
                    tag = rng.choice((0, 1, 2, 3, 2**31 - 1))
                data = rng.randbytes(rng.randint(0, 8))
                Writer.uvarint(self, tag)
                Writer.uvarint(self, rng.choice((len(data), len(data), len(data) + 5, 2**31)))
                self.buf += data

    def _int_lie(self, fmt: str, v: int) -> None:
        bits = struct.calcsize(fmt) * 8
        v = self.rng.choice((-1, 0, -(1 << (bits - 1)), (1 << (bits - 1)) - 1))
        self.buf += struct.pack(fmt, v)

    def int16(self, v: int) -> None:
        if self._lie():
            self._int_lie(">h", v)
        else:
            Writer.int16(self, v)

    def int32(self, v: int) -> None:
        if self._lie():
            self._int_lie(">i", v)
        else:
            Writer.int32(self, v)

    def int64(self, v: int) -> None:
        if self._lie():
            self._int_lie(">q", v)
        else:
            Writer.int64(self, v)


# --------------------------------------------------------------------------- captures

def shared_dir() -> Path:
    """As tests/test_codec_captures.py: KAFKETTE_SHARED_DIR or <repo>/../shared."""
    env = os.environ.get("KAFKETTE_SHARED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared"


@lru_cache(maxsize=1)
def captures() -> tuple[bytes, ...]:
    """The client request frames (size prefix stripped), or () when absent."""
    folder = shared_dir() / "client-captures"
    index = folder / "index.json"
    if not index.is_file():
        return ()
    entries = json.loads(index.read_text())["captures"]
    return tuple((folder / e["file"]).read_bytes() for e in entries)


# --------------------------------------------------------------------------- byte mutations

def mutate(rng: random.Random, data: bytearray) -> str:
    """One byte-level mutation in place; its name."""
    n = len(data)
    r = rng.random()
    if r < 0.2 and n > 1:
        del data[rng.randrange(1, n):]
        return "truncate"
    if r < 0.4:
        for _ in range(rng.randint(1, 8)):
            if data:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return "bitflip"
    if r < 0.6 and n >= 4:
        fmt = rng.choice((">h", ">i", ">q"))
        size = struct.calcsize(fmt)
        bits = size * 8
        if n >= size:
            pos = rng.randrange(0, n - size + 1)
            struct.pack_into(fmt, data, pos, rng.choice((-1, -2, 0, 1, 0x7F, -(1 << (bits - 1)),
                                                         (1 << (bits - 1)) - 1)))
        return "overwrite-int"
    if r < 0.7:
        pos = rng.randrange(0, n + 1)
        data[pos:pos] = _bad_varint(rng) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 16))
        return "insert"
    if r < 0.8 and n > 8:
        a = rng.randrange(8, n)
        del data[a:a + rng.randint(1, 16)]
        return "delete"
    if r < 0.9 and n > 8:
        a = rng.randrange(8, n)
        chunk = data[a:a + rng.randint(1, 64)]
        data[a:a] = chunk * rng.randint(1, 4)
        return "duplicate"
    data += rng.randbytes(rng.randint(1, 32))
    return "append"


# --------------------------------------------------------------------------- frames

@dataclass
class FuzzFrame:
    seed: int
    index: int
    target: str                 # BROKER or CONTROLLER
    data: bytes                 # the bytes to send, size prefix included
    api_key: int
    api_version: int
    source: str                 # "structured" or "capture"
    mutations: list = field(default_factory=list)

    @property
    def correlation_id(self) -> int | None:
        return struct.unpack_from(">i", self.data, 8)[0] if len(self.data) >= 12 else None

    @property
    def body(self) -> bytes:
        """The frame after its size prefix."""
        return self.data[4:]


def frame(seed: int, index: int) -> FuzzFrame:
    rng = random.Random(f"kafkette-fuzz:{seed}:{index}")
    target = CONTROLLER if rng.random() < 0.2 else BROKER
    caps = captures()
    mutations: list[str] = []
    if caps and rng.random() < 0.3:
        source = "capture"
        body = bytearray(rng.choice(caps))
        api_key, api_version = struct.unpack_from(">hh", body, 0)
        struct.pack_into(">i", body, 4, index & 0x7FFFFFFF)
        mutations.append(mutate(rng, body))
        while rng.random() < 0.3:
            mutations.append(mutate(rng, body))
    else:
        source = "structured"
        specs = request_specs()
        if target == CONTROLLER and rng.random() < 0.7:
            api_key = rng.choice([k for k in CONTROLLER_KEYS if k in specs])
        else:
            api_key = rng.choice(sorted(specs))
        cls = API_MESSAGES[api_key][0]
        api_version = rng.randint(cls.MIN_VERSION, cls.MAX_VERSION)
        msg = random_request(rng, api_key, api_version)
        lie = rng.choice((0.0, 0.0, 0.02, 0.1))
        w = LyingWriter(rng, lie)
        try:
            msg.write(w, api_version)
        except (struct.error, ValueError, OverflowError, AttributeError, TypeError) as e:
            # A value outside what the field's width holds: send what was written so far.
            mutations.append(f"encode-stopped:{type(e).__name__}")
        client_id = rng.choice(("fuzz", None, "", "x" * 300))
        header = bytearray(encode_request_header(api_key, api_version, index & 0x7FFFFFFF,
                                                 client_id))
        r = rng.random()
        if r < 0.03:
            struct.pack_into(">h", header, 2, rng.choice((-1, cls.MAX_VERSION + 1, 32767)))
            mutations.append("header-version")
        elif r < 0.05:
            struct.pack_into(">h", header, 0, rng.choice((-1, 99, 1000, 32767)))
            mutations.append("header-api-key")
        body = header + w.getvalue()
        if lie:
            mutations.append(f"lies:{lie}")
        if rng.random() < 0.3:
            mutations.append(mutate(rng, body))
    size = len(body)
    r = rng.random()
    if r < 0.01:
        size = rng.choice((-1, -2**31, 2**31 - 1, 200 * 1024 * 1024))
        mutations.append("size-prefix")
    elif r < 0.02 and size > 4:
        size = rng.randrange(0, size)
        mutations.append("size-short")
    return FuzzFrame(seed, index, target, struct.pack(">i", size) + bytes(body), api_key,
                     api_version, source, mutations)
