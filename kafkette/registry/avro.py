"""Avro schemas: parsing with fastavro, and Avro's schema resolution rules (the
specification's "Schema Resolution") as the compatibility check.

`can_read(reader, writer)` answers whether data written with `writer` can be read with
`reader`; Confluent's levels are built from it in `compatibility`. Checked: primitive
types and the promotions (int -> long/float/double, long -> float/double, float ->
double, string <-> bytes), records (fields matched by name or the reader's aliases; a
reader field missing from the writer needs a default), enums (writer symbols in the
reader's, or a reader default), arrays, maps, fixed (name and size), unions on either
side, named types matched by unqualified name or alias, recursive types.
Not checked: logical types (a logicalType is resolved as its underlying type, as the
Avro specification says readers should).
"""
from __future__ import annotations

import json

from .errors import invalid_schema

PROMOTIONS = {"int": {"long", "float", "double"}, "long": {"float", "double"},
              "float": {"double"}, "string": {"bytes"}, "bytes": {"string"}}
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class AvroSchema:
    """A parsed Avro schema and the named types it and its references define."""

    def __init__(self, text: str, references: list[tuple[str, "AvroSchema"]] = ()):
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise invalid_schema(f"not JSON: {e}") from None
        # imported on first use, as jsonschema (broker start-up)
        import fastavro
        from fastavro.schema import SchemaParseException, UnknownType
        named: dict = {}
        for _, ref in references:
            named.update(ref.named)
        try:
            self.parsed = fastavro.parse_schema(raw, named_schemas=named, _write_hint=False)
        except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError,
                AttributeError) as e:
            raise invalid_schema(f"{type(e).__name__}: {e}") from None
        self.named = named
        self.raw = raw
        self._reading = None
        _require_fields(raw)

    def for_reading(self):
        """The schema as fastavro's readers take it (the console decodes records with
        it). `parsed` lacks fastavro's "already parsed" marker, so a reader would parse
        it again without the references' named types; this one keeps them."""
        if self._reading is None:
            import fastavro
            self._reading = fastavro.parse_schema(self.raw, named_schemas=dict(self.named))
        return self._reading

    def canonical(self) -> str:
        """Avro's Parsing Canonical Form (for `normalize=true` lookups)."""
        from fastavro.schema import to_parsing_canonical_form
        return to_parsing_canonical_form(self.parsed)


def _require_fields(raw) -> None:
    """Avro's Java parser (Confluent's) refuses a record without "fields"; fastavro
    takes it as an empty record."""
    if isinstance(raw, list):
        for branch in raw:
            _require_fields(branch)
    elif isinstance(raw, dict):
        t = raw.get("type")
        if t in ("record", "error"):
            if not isinstance(raw.get("fields"), list):
                raise invalid_schema(f"record {raw.get('name')!r} has no fields")
            for f in raw["fields"]:
                _require_fields(f.get("type") if isinstance(f, dict) else None)
        elif t == "array":
            _require_fields(raw.get("items"))
        elif t == "map":
            _require_fields(raw.get("values"))
        elif isinstance(t, (dict, list)):
            _require_fields(t)


def _name(schema: dict) -> str:
    return schema.get("name", "").rpartition(".")[2]


def _aliases(schema: dict) -> set[str]:
    return {a.rpartition(".")[2] for a in schema.get("aliases", ()) or ()}


def _resolve(schema, named: dict):
    while isinstance(schema, str) and schema not in PRIMITIVES:
        if schema not in named:
            return schema
        schema = named[schema]
    if isinstance(schema, dict) and schema.get("type") in PRIMITIVES:
        return schema["type"]  # {"type": "int", "logicalType": ...}: the underlying type
    return schema


def _type(schema) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return schema["type"]
    return schema


def can_read(reader: AvroSchema, writer: AvroSchema) -> list[str]:
    """The reasons data written with `writer` cannot be read with `reader` ([]: it can)."""
    problems: list[str] = []
    _check(reader.parsed, writer.parsed, reader.named, writer.named, "", problems, set())
    return problems


def _check(r, w, rn, wn, path, out, seen) -> None:
    r, w = _resolve(r, rn), _resolve(w, wn)
    rt, wt = _type(r), _type(w)
    if wt == "union":
        for i, branch in enumerate(w):
            _check(r, branch, rn, wn, path, out, seen)
        return
    if rt == "union":
        for branch in r:
            sub: list[str] = []
            _check(branch, w, rn, wn, path, sub, set(seen))
            if not sub:
                return
        out.append(f"{path or '/'}: the reader's union has no branch for the writer's {wt}")
        return
    if rt != wt:
        if rt in PROMOTIONS.get(wt, ()):
            return
        out.append(f"{path or '/'}: reader type {rt} cannot read writer type {wt}")
        return
    if rt in PRIMITIVES:
        return
    if rt in ("record", "error", "enum", "fixed"):
        if _name(r) != _name(w) and _name(w) not in _aliases(r):
            out.append(f"{path or '/'}: reader {rt} {_name(r)} does not match writer {_name(w)}")
            return
    if rt in ("record", "error"):
        key = (id(r), id(w))
        if key in seen:  # a recursive type already being compared
            return
        seen.add(key)
        wfields = {f["name"]: f for f in w["fields"]}
        for f in r["fields"]:
            names = [f["name"], *[a for a in f.get("aliases", ()) or ()]]
            wf = next((wfields[n] for n in names if n in wfields), None)
            fpath = f"{path}/{f['name']}"
            if wf is None:
                if "default" not in f:
                    out.append(f"{fpath}: reader field {f['name']} has no default and is "
                               "missing from the writer")
                continue
            _check(f["type"], wf["type"], rn, wn, fpath, out, seen)
    elif rt == "enum":
        missing = [s for s in w["symbols"] if s not in r["symbols"]]
        if missing and r.get("default") is None:
            out.append(f"{path or '/'}: reader enum {_name(r)} lacks symbols {missing}")
    elif rt == "fixed":
        if r["size"] != w["size"]:
            out.append(f"{path or '/'}: fixed {_name(r)} size {w['size']} -> {r['size']}")
    elif rt == "array":
        _check(r["items"], w["items"], rn, wn, f"{path}/items", out, seen)
    elif rt == "map":
        _check(r["values"], w["values"], rn, wn, f"{path}/values", out, seen)
