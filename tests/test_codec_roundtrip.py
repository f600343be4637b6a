"""Round trips of every generated message at every version it supports.

For each message of protocol_specs/ and each of its valid versions, three instances
are built from the spec's own facts (field types, version ranges, nullability, tags,
defaults), walking the generated class and its nested struct classes:

- the default instance (`Cls()`);
- a populated instance: every field present in that version set to a non-default
  value of its type (arrays get two elements, structs are filled recursively,
  tagged fields are set so that they must be written);
- a "nulls" instance: like the populated one, but every field nullable in that
  version is null.

Each one is encoded with the generated code and, independently, with a small
spec-driven reference encoder written here from the Kafka wire rules (so a bug
that is symmetric in the generated read and write, such as a wrong integer width
or field order, still shows up), then decoded back: the bytes must be identical,
the decoder must consume them exactly, and the decoded message must equal the
original. Tagged fields are written only when they differ from their default, so
the default instance carries empty tagged sections and the populated one carries
every tag.
"""
from __future__ import annotations

import keyword
import struct
import uuid

import pytest

import kafkette.protocol.messages as messages
from kafkette.protocol.primitives import Reader, Writer
from kafkette.protocol.specs import load_all_specs, snake_case

SPECS = load_all_specs()

PRIMITIVES = {"bool", "int8", "int16", "uint16", "int32", "uint32", "int64", "float64",
              "uuid", "string", "bytes", "records"}
INT_FORMATS = {"int8": ">b", "int16": ">h", "uint16": ">H", "int32": ">i",
               "uint32": ">I", "int64": ">q"}
ZERO_UUID = uuid.UUID(int=0)


# --------------------------------------------------------------------------- spec facts
def parse_versions(text):
    """'3+' / '1-4' / '2' / 'none' / None → (lo, hi) with hi None for open, or None."""
    if text is None:
        return None
    text = str(text).strip()
    if text in ("", "none"):
        return None
    if text.endswith("+"):
        return int(text[:-1]), None
    if "-" in text:
        lo, hi = text.split("-")
        return int(lo), int(hi)
    return int(text), int(text)


def in_range(rng, v: int) -> bool:
    return rng is not None and rng[0] <= v and (rng[1] is None or v <= rng[1])


def elem_type(ftype: str) -> str:
    return ftype[2:] if ftype.startswith("[]") else ftype


def attr_name(kafka_name: str) -> str:
    a = snake_case(kafka_name)
    return a + "_" if keyword.iskeyword(a) else a


def is_tagged(f, v) -> bool:
    return in_range(parse_versions(f.get("tagged_versions")), v)


def is_nullable(f, v) -> bool:
    return in_range(parse_versions(f.get("nullable_versions")), v)


def is_flexible_field(f, flexible: bool) -> bool:
    # A field-level `flexible_versions: none` (RequestHeader.ClientId) keeps the
    # old int16 string even in flexible versions.
    return flexible and str(f.get("flexible_versions", "")) != "none"


def spec_default(f):
    """The default value of a field, from the spec facts alone."""
    ftype, raw = f["type"], f.get("default")
    if ftype.startswith("[]"):
        return None if raw == "null" else []
    if ftype not in PRIMITIVES:
        return None  # struct: see struct_default_ok
    if raw is not None and str(raw) == "null":
        return None
    if ftype == "bool":
        return str(raw).lower() == "true" if raw is not None else False
    if ftype in INT_FORMATS:
        if raw is None:
            return 0
        s = str(raw)
        return int(s, 16) if s.lower().startswith("0x") else int(s)
    if ftype == "float64":
        return float(raw) if raw is not None else 0.0
    if ftype == "string":
        return "" if raw is None else str(raw)
    if ftype == "bytes":
        return b""
    if ftype == "records":
        return None
    if ftype == "uuid":
        return ZERO_UUID
    raise AssertionError(ftype)


class Ctx:
    """Where struct types are looked up: nested definitions first, then the
    message's common structs."""

    def __init__(self, spec, cls):
        self.top_cls = cls
        self.common = {cs["name"]: cs["fields"] for cs in spec.get("common_structs") or []}
        self.flexible_versions = parse_versions(spec.get("flexible_versions"))

    def flexible(self, v: int) -> bool:
        return in_range(self.flexible_versions, v)

    def struct_of(self, f, owner_cls, owner_chain):
        """(fields spec, class) of a struct-typed field of `owner_cls`."""
        name = elem_type(f["type"])
        if "fields" in f:
            fields = f["fields"]
        else:
            fields = self.common[name]
        for c in [owner_cls, *reversed(owner_chain), self.top_cls]:
            if hasattr(c, name):
                return fields, getattr(c, name)
        raise AssertionError(f"no class for struct {name} under {owner_cls.__name__}")


# --------------------------------------------------------------------------- reference encoder
def _uvarint(n: int) -> bytes:
    assert n >= 0
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ref_encode_value(ftype, value, nullable, flexible, ctx, f, owner_cls, chain, v) -> bytes:
    if ftype.startswith("[]"):
        et = ftype[2:]
        if value is None:
            assert nullable, f"null non-nullable array {f['name']}"
            head = b"\x00" if flexible else struct.pack(">i", -1)
            return head
        head = _uvarint(len(value) + 1) if flexible else struct.pack(">i", len(value))
        sub = dict(f, type=et)
        return head + b"".join(
            ref_encode_value(et, x, False, flexible, ctx, sub, owner_cls, chain, v) for x in value)
    if ftype == "bool":
        return b"\x01" if value else b"\x00"
    if ftype in INT_FORMATS:
        return struct.pack(INT_FORMATS[ftype], value)
    if ftype == "float64":
        return struct.pack(">d", value)
    if ftype == "uuid":
        return value.bytes
    if ftype in ("string", "bytes", "records"):
        if value is None:
            assert nullable, f"null non-nullable {ftype} {f['name']}"
            if flexible:
                return b"\x00"
            return struct.pack(">h" if ftype == "string" else ">i", -1)
        data = value.encode("utf-8") if ftype == "string" else bytes(value)
        if flexible:
            return _uvarint(len(data) + 1) + data
        return struct.pack(">h" if ftype == "string" else ">i", len(data)) + data
    # a struct
    fields, scls = ctx.struct_of(f, owner_cls, chain)
    if nullable:
        if value is None:
            return struct.pack(">b", -1)
        return struct.pack(">b", 1) + ref_encode_struct(fields, value, scls, ctx, chain + [owner_cls], v)
    assert value is not None, f"null non-nullable struct {f['name']}"
    return ref_encode_struct(fields, value, scls, ctx, chain + [owner_cls], v)


def ref_encode_struct(fields, obj, cls, ctx, chain, v) -> bytes:
    flexible = ctx.flexible(v)
    out = bytearray()
    tagged = []
    for f in fields:
        if not in_range(parse_versions(f["versions"]), v):
            continue
        value = getattr(obj, attr_name(f["name"]))
        if is_tagged(f, v):
            if value == spec_default(f):
                continue  # tagged fields are written only when not default
            data = ref_encode_value(f["type"], value, is_nullable(f, v),
                                    is_flexible_field(f, flexible), ctx, f, cls, chain, v)
            tagged.append((int(f["tag"]), data))
            continue
        out += ref_encode_value(f["type"], value, is_nullable(f, v),
                                is_flexible_field(f, flexible), ctx, f, cls, chain, v)
    if flexible:
        tagged.sort()
        out += _uvarint(len(tagged))
        for tag, data in tagged:
            out += _uvarint(tag) + _uvarint(len(data)) + data
    return bytes(out)


# --------------------------------------------------------------------------- value builders
class Values:
    """Deterministic, varied non-default values by type."""

    INTS = {
        "int8": [127, -128, 0x5A, -3],
        "int16": [32767, -32768, 0x1234, -2],
        "uint16": [65535, 40000, 0x1234, 1],
        "int32": [2**31 - 1, -(2**31), 123456789, -2],
        "uint32": [2**32 - 1, 3_000_000_000, 0x12345678, 1],
        "int64": [2**63 - 1, -(2**63), 1_234_567_890_123, -2],
    }

    def __init__(self):
        self.k = 0

    def next(self) -> int:
        self.k += 1
        return self.k

    def primitive(self, ftype, default, name):
        k = self.next()
        if ftype == "bool":
            return not default
        if ftype in self.INTS:
            cands = self.INTS[ftype]
            for i in range(len(cands)):
                x = cands[(k + i) % len(cands)]
                if x != default:
                    return x
        if ftype == "float64":
            return 0.25 + k
        if ftype == "uuid":
            return uuid.UUID(int=(0x0123456789ABCDEF0FEDCBA987654321 * k) % (1 << 128) or 1)
        if ftype == "string":
            s = f"{name}-{k}-\u00fc\u2713"  # non-ASCII: byte length != char length
            return s if s != default else s + "x"
        if ftype == "bytes":
            return bytes((k + i) % 256 for i in range(3 + k % 5))
        if ftype == "records":
            # Large enough (>= 1024 bytes) to take the Writer's zero-copy chunk path.
            return bytes((k + i) % 251 for i in range(1500))
        raise AssertionError(ftype)


def build(fields, cls, ctx, chain, v, vals: Values, nulls: bool):
    """An instance of `cls` with every field valid at version v set (see module doc)."""
    obj = cls()
    for f in fields:
        if not in_range(parse_versions(f["versions"]), v):
            continue
        name = attr_name(f["name"])
        if nulls and is_nullable(f, v):
            setattr(obj, name, None)
            continue
        ftype = f["type"]
        et = elem_type(ftype)
        if et in PRIMITIVES:
            if ftype.startswith("[]"):
                value = [vals.primitive(et, None, f["name"]) for _ in range(2)]
            else:
                value = vals.primitive(et, spec_default(f), f["name"])
        else:
            sfields, scls = ctx.struct_of(f, cls, chain)
            one = lambda: build(sfields, scls, ctx, chain + [cls], v, vals, nulls)  # noqa: E731
            value = [one(), one()] if ftype.startswith("[]") else one()
        setattr(obj, name, value)
    return obj


# --------------------------------------------------------------------------- parametrization
def _cases():
    out = []
    for stem, spec in SPECS.items():
        lo, hi = parse_versions(spec["valid_versions"])
        for v in range(lo, hi + 1):
            out.append(pytest.param(stem, v, id=f"{spec['name']}-v{v}"))
    return out


CASES = _cases()


def _setup(stem, v):
    spec = SPECS[stem]
    cls = getattr(messages, spec["name"])
    ctx = Ctx(spec, cls)
    return spec, cls, ctx


def _check(spec, cls, ctx, obj, v):
    # The constructor keeps every value it is given, None (null) included.
    assert cls(**{a: getattr(obj, a) for a in cls.FIELDS}) == obj
    data = obj.encode(v)
    assert isinstance(data, bytes)
    expected = ref_encode_struct(spec["fields"], obj, cls, ctx, [], v)
    assert data == expected, (
        f"{spec['name']} v{v}: generated encoding differs from the spec\n"
        f"generated {data.hex()}\nreference {expected.hex()}")
    # write() into a Writer gives the same bytes as encode()
    w = Writer()
    obj.write(w, v)
    assert b"".join(bytes(c) for c in w.to_chunks()) == data
    r = Reader(data)
    back = cls.read(r, v)
    assert r.remaining() == 0, f"decoder left {r.remaining()} bytes"
    assert back == obj, f"\nsent {obj!r}\ngot  {back!r}"
    assert cls.decode(data, v) == obj
    # A second round trip of the decoded message is stable.
    assert back.encode(v) == data
    return data


def test_every_spec_has_a_generated_class():
    assert len(CASES) > 500
    for spec in SPECS.values():
        cls = getattr(messages, spec["name"], None)
        assert cls is not None, spec["name"]
        lo, hi = parse_versions(spec["valid_versions"])
        assert (cls.MIN_VERSION, cls.MAX_VERSION) == (lo, hi)
        flex = parse_versions(spec.get("flexible_versions"))
        assert cls.FLEXIBLE_VERSION == (None if flex is None else flex[0])
        assert cls.API_KEY == spec.get("api_key")
        assert cls.NAME == spec["name"]
        assert tuple(cls.FIELDS) == tuple(attr_name(f["name"]) for f in spec["fields"])


def test_api_messages_index():
    by_key = {}
    for spec in SPECS.values():
        if spec.get("type") in ("request", "response"):
            by_key.setdefault(spec["api_key"], {})[spec["type"]] = spec["name"]
    assert set(messages.API_MESSAGES) == set(by_key)
    for key, (req, resp) in messages.API_MESSAGES.items():
        assert (req.NAME, resp.NAME) == (by_key[key]["request"], by_key[key]["response"])
        assert req.API_KEY == resp.API_KEY == key


def _check_defaults(fields, obj, cls, ctx, chain):
    """Every attribute of a fresh instance holds the spec's default."""
    for f in fields:
        value = getattr(obj, attr_name(f["name"]))
        et = elem_type(f["type"])
        if et not in PRIMITIVES and not f["type"].startswith("[]"):
            sfields, scls = ctx.struct_of(f, cls, chain)
            if f.get("tagged_versions") is not None or f.get("nullable_versions") is not None:
                assert value is None, f["name"]
            else:
                assert isinstance(value, scls), f["name"]
                _check_defaults(sfields, value, scls, ctx, chain + [cls])
            continue
        assert value == spec_default(f), f"{cls.__name__}.{f['name']}: {value!r}"
        if f["type"].startswith("[]") and et not in PRIMITIVES:
            # nested struct defaults, through an element built with no arguments
            sfields, scls = ctx.struct_of(f, cls, chain)
            _check_defaults(sfields, scls(), scls, ctx, chain + [cls])


@pytest.mark.parametrize("stem,v", CASES)
def test_default_instance(stem, v):
    spec, cls, ctx = _setup(stem, v)
    obj = cls()
    _check_defaults(spec["fields"], obj, cls, ctx, [])
    _check(spec, cls, ctx, obj, v)


@pytest.mark.parametrize("stem,v", CASES)
def test_populated_instance(stem, v):
    spec, cls, ctx = _setup(stem, v)
    obj = build(spec["fields"], cls, ctx, [], v, Values(), nulls=False)
    data = _check(spec, cls, ctx, obj, v)
    # The populated instance differs from the default one in every field that this
    # version carries, so (unless the version carries no field at all) the bytes differ.
    present = [f for f in spec["fields"] if in_range(parse_versions(f["versions"]), v)]
    if present:
        assert data != cls().encode(v)
        assert cls.decode(data, v) != cls()


@pytest.mark.parametrize("stem,v", CASES)
def test_nulls_instance(stem, v):
    spec, cls, ctx = _setup(stem, v)
    obj = build(spec["fields"], cls, ctx, [], v, Values(), nulls=True)
    _check(spec, cls, ctx, obj, v)


# --------------------------------------------------------------------------- tagged fields
def _tagged_cases():
    out = []
    for stem, spec in SPECS.items():
        lo, hi = parse_versions(spec["valid_versions"])
        for f in spec["fields"]:
            tv = parse_versions(f.get("tagged_versions"))
            if tv is None:
                continue
            for v in sorted({max(lo, tv[0]), hi}):
                if in_range(tv, v):
                    out.append(pytest.param(stem, f["name"], v, id=f"{spec['name']}.{f['name']}-v{v}"))
    return out


@pytest.mark.parametrize("stem,fname,v", _tagged_cases())
def test_top_level_tagged_field_written_only_when_set(stem, fname, v):
    """With only one top-level tagged field set, the body ends with a tagged section
    holding exactly that tag; reset to its default, the section is empty."""
    spec, cls, ctx = _setup(stem, v)
    f = next(x for x in spec["fields"] if x["name"] == fname)
    full = build(spec["fields"], cls, ctx, [], v, Values(), nulls=False)
    obj = cls()
    setattr(obj, attr_name(fname), getattr(full, attr_name(fname)))
    base = cls().encode(v)
    data = obj.encode(v)
    value = ref_encode_value(f["type"], getattr(obj, attr_name(fname)), is_nullable(f, v),
                             is_flexible_field(f, True), ctx, f, cls, [], v)
    # default body ends with an empty tagged section (one zero byte)
    assert base.endswith(b"\x00")
    section = _uvarint(1) + _uvarint(int(f["tag"])) + _uvarint(len(value)) + value
    assert data == base[:-1] + section
    back = cls.decode(data, v)
    assert getattr(back, attr_name(fname)) == getattr(obj, attr_name(fname))
    assert cls.decode(base, v) == cls()


def test_unknown_tagged_fields_are_skipped():
    """A tag the version does not know is skipped, not an error (forward compatibility)."""
    cls = messages.FetchRequest
    base = cls(max_wait_ms=500, topics=[]).encode(12)
    assert base.endswith(b"\x00")
    # tag 0 (cluster_id, known) is not in this body; add unknown tag 7 with 3 bytes
    data = base[:-1] + bytes([1, 7, 3, 0xAA, 0xBB, 0xCC])
    back = cls.decode(data, 12)
    assert back == cls.decode(base, 12)
