"""JSON Schema: parsing and meta-schema validation with `jsonschema`, and a structural
compatibility check over draft-07 style schemas.

`can_read(reader, writer)` asks whether every document valid under `writer` is valid
under `reader`, conservatively. Checked: `type` (a reader's "number" accepts
"integer"), `properties` against the reader's and writer's `additionalProperties`
(closed and open content models: a property added to an open writer model, or removed
from a closed reader model, is a change), `required` (the reader may not require more),
`enum` (the reader's must contain the writer's), `items` of arrays, `additionalProperties`
schemas, recursively; boolean schemas (`true` / `false`).
Not checked (compatible as far as this check goes): numeric and length bounds,
`pattern`, `format`, `const`, `oneOf` / `anyOf` / `allOf` / `not`, `$ref`,
`dependencies`, `patternProperties`, conditional subschemas (`if` / `then` / `else`).
"""
from __future__ import annotations

import json

from .errors import invalid_schema


class JsonSchema:
    def __init__(self, text: str, references=()):
        try:
            self.raw = json.loads(text)
        except ValueError as e:
            raise invalid_schema(f"not JSON: {e}") from None
        if not isinstance(self.raw, (dict, bool)):
            raise invalid_schema("a JSON Schema is an object or a boolean")
        # imported on first use: jsonschema costs ~35 ms of broker start-up otherwise
        import jsonschema
        from jsonschema.exceptions import SchemaError
        try:
            jsonschema.validators.validator_for(self.raw, default=jsonschema.Draft7Validator) \
                .check_schema(self.raw)
        except SchemaError as e:
            raise invalid_schema(e.message) from None

    def canonical(self) -> str:
        return json.dumps(self.raw, sort_keys=True, separators=(",", ":"))


def _types(s: dict) -> set[str] | None:
    t = s.get("type")
    if t is None:
        return None
    return {t} if isinstance(t, str) else set(t)


def can_read(reader: JsonSchema, writer: JsonSchema) -> list[str]:
    out: list[str] = []
    _check(reader.raw, writer.raw, "", out)
    return out


def _open(s) -> object:
    """additionalProperties: True (open), False (closed) or a schema."""
    if s is True or s is None:
        return True
    return s


def _check(r, w, path, out) -> None:
    p = path or "/"
    if r is True or w is False or r == {}:
        return
    if r is False:
        out.append(f"{p}: the reader accepts nothing")
        return
    if w is True:
        w = {}
    rt, wt = _types(r), _types(w)
    if rt is not None:
        wanted = wt if wt is not None else {"any"}
        for t in wanted:
            if t not in rt and not (t == "integer" and "number" in rt):
                out.append(f"{p}: type {t} is not accepted by the reader's {sorted(rt)}")
    if "enum" in r:
        if "enum" not in w:
            out.append(f"{p}: the reader restricts values to an enum the writer does not have")
        else:
            missing = [v for v in w["enum"] if v not in r["enum"]]
            if missing:
                out.append(f"{p}: enum values {missing} removed")
    more = set(r.get("required", ())) - set(w.get("required", ()))
    if more:
        out.append(f"{p}: the reader requires {sorted(more)} which the writer does not")
    rprops, wprops = r.get("properties", {}) or {}, w.get("properties", {}) or {}
    radd, wadd = _open(r.get("additionalProperties")), _open(w.get("additionalProperties"))
    for name, ws in wprops.items():
        if name in rprops:
            _check(rprops[name], ws, f"{path}/{name}", out)
        elif radd is False:
            out.append(f"{path}/{name}: property removed from a closed content model")
        elif radd is not True:
            _check(radd, ws, f"{path}/{name}", out)
    for name, rs in rprops.items():
        if name in wprops:
            continue
        if wadd is False:
            continue  # the writer never writes it
        _check(rs, wadd if wadd is not True else {}, f"{path}/{name}", out)
    if radd is not True:
        if wadd is True:
            out.append(f"{p}: the reader closes (or narrows) additionalProperties the "
                       "writer leaves open")
        elif wadd is not False:
            _check(radd, wadd, f"{path}/additionalProperties", out)
    if "items" in r and isinstance(r["items"], (dict, bool)):
        wi = w.get("items", True)
        if isinstance(wi, (dict, bool)):
            _check(r["items"], wi, f"{path}/items", out)
