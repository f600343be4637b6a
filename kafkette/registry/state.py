"""The registry's state, rebuilt from `_schemas`, and the planning of its writes.

Records (Confluent's layout; keys are JSON with a fixed field order, so that the
compacted topic keeps one value per key):
    {"keytype":"SCHEMA","subject":s,"version":v,"magic":1} -> the version, or null
        (a permanent delete)
    {"keytype":"CONFIG","subject":s|null,"magic":0} -> {"compatibilityLevel": ...}
    {"keytype":"MODE","subject":s|null,"magic":0} -> {"mode": ...}
    {"keytype":"DELETE_SUBJECT","subject":s,"magic":0} -> {"subject":s,"version":v}
    {"keytype":"NOOP","magic":0} -> {"maxId": n}: kafkette writes it with every permanent
        delete, since compaction may then remove the records of the highest id

Ids are never reused: a new schema gets the highest id in the topic (or in a NOOP
record's maxId) plus one, and a
SCHEMA record whose id the topic already gives to another schema, or whose
(subject, version) already holds another id, is ignored when applied. Every node reads
the same records in the same order, so two nodes that register at once agree on which
one won; the loser sees that on read-back and plans again (`planned_ok`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import avro, json_schema, protobuf
from .errors import (RegistryError, incompatible, invalid_schema, invalid_version,
                     schema_not_found, subject_not_found, version_not_found)

TYPES = {"AVRO": avro.AvroSchema, "JSON": json_schema.JsonSchema,
         "PROTOBUF": protobuf.ProtobufSchema}
CHECKERS = {"AVRO": avro.can_read, "JSON": json_schema.can_read,
            "PROTOBUF": protobuf.can_read}
LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
          "FULL", "FULL_TRANSITIVE")
MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT")
DEFAULT_LEVEL = "BACKWARD"
MAX_VERSION = 2**31 - 1


def key_bytes(keytype: str, subject: str | None = None, version: int | None = None) -> bytes:
    key: dict = {"keytype": keytype}
    if keytype != "NOOP":
        key["subject"] = subject
    if version is not None:
        key["version"] = version
    key["magic"] = 1 if keytype == "SCHEMA" else 0
    return json.dumps(key, separators=(",", ":")).encode()


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class SchemaVersion:
    subject: str
    version: int
    id: int
    schema_type: str
    schema: str
    references: list = field(default_factory=list)
    deleted: bool = False
    extra: dict = field(default_factory=dict)  # metadata, ruleSet: stored verbatim

    def content_key(self) -> tuple:
        return (self.schema_type, self.schema, _refs_key(self.references))

    def as_dict(self) -> dict:
        out = {"subject": self.subject, "version": self.version, "id": self.id}
        if self.schema_type != "AVRO":
            out["schemaType"] = self.schema_type
        if self.references:
            out["references"] = self.references
        out.update(self.extra)
        out["schema"] = self.schema
        return out

    def record(self) -> tuple[bytes, bytes]:
        value = {"subject": self.subject, "version": self.version, "id": self.id,
                 "schemaType": self.schema_type, "references": self.references,
                 "schema": self.schema, "deleted": self.deleted, **self.extra}
        return key_bytes("SCHEMA", self.subject, self.version), _dumps(value)


def _refs_key(refs) -> str:
    return json.dumps([[r.get("name"), r.get("subject"), r.get("version")] for r in refs or ()])


def parse_version(v, allow_latest=True) -> int | str:
    if allow_latest and v in ("latest", "-1"):
        return "latest"
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise invalid_version(v) from None
    if not 1 <= n <= MAX_VERSION:
        raise invalid_version(v)
    return n


class RegistryState:
    def __init__(self):
        self.versions: dict[str, dict[int, SchemaVersion]] = {}
        self.by_id: dict[int, SchemaVersion] = {}   # the first version stored with an id
        self.configs: dict[str | None, dict] = {}
        self.modes: dict[str | None, str] = {}
        self.max_id = 0
        self._parsed: dict[tuple, object] = {}

    # ------------------------------------------------------------------ applying
    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of `_schemas`; records this version does not know are skipped."""
        try:
            k = json.loads(key) if key else None
            v = json.loads(value) if value is not None else None
        except ValueError:
            return
        if not isinstance(k, dict):
            return
        kt, subject = k.get("keytype"), k.get("subject")
        if kt == "SCHEMA":
            self._apply_schema(subject, k.get("version"), v)
        elif kt == "CONFIG":
            if v is None:
                self.configs.pop(subject, None)
            elif isinstance(v, dict):
                self.configs[subject] = v
        elif kt == "MODE":
            if v is None:
                self.modes.pop(subject, None)
            elif isinstance(v, dict) and v.get("mode") in MODES:
                self.modes[subject] = v["mode"]
        elif kt == "NOOP" and isinstance(v, dict) and isinstance(v.get("maxId"), int):
            self.max_id = max(self.max_id, v["maxId"])
        elif kt == "DELETE_SUBJECT" and isinstance(v, dict):
            upto = v.get("version") or 0
            for sv in self.versions.get(subject, {}).values():
                if sv.version <= upto:
                    sv.deleted = True

    def _apply_schema(self, subject, version, v) -> None:
        if not isinstance(subject, str) or not isinstance(version, int):
            return
        versions = self.versions.setdefault(subject, {})
        if v is None:
            versions.pop(version, None)
            if not versions:
                del self.versions[subject]
            return
        if not isinstance(v, dict) or not isinstance(v.get("id"), int):
            return
        extra = {k: v[k] for k in ("metadata", "ruleSet") if v.get(k) is not None}
        sv = SchemaVersion(subject, version, v["id"], v.get("schemaType") or "AVRO",
                           v.get("schema", ""), v.get("references") or [],
                           bool(v.get("deleted")), extra)
        old = versions.get(version)
        if old is not None and old.id != sv.id:
            return  # the (subject, version) belongs to another id: the first one wins
        first = self.by_id.get(sv.id)
        if first is not None and first.content_key() != sv.content_key():
            return  # the id belongs to another schema: ids are never reused
        versions[version] = sv
        if first is None:
            self.by_id[sv.id] = sv
        self.max_id = max(self.max_id, sv.id)

    # ------------------------------------------------------------------ reading
    def subjects(self, deleted=False, prefix: str = "") -> list[str]:
        return sorted(s for s, vs in self.versions.items() if s.startswith(prefix)
                      and any(deleted or not sv.deleted for sv in vs.values()))

    def _live(self, subject: str, deleted=False) -> list[SchemaVersion]:
        return [sv for _, sv in sorted(self.versions.get(subject, {}).items())
                if deleted or not sv.deleted]

    def version_list(self, subject: str, deleted=False) -> list[int]:
        live = self._live(subject, deleted)
        if not live:
            raise subject_not_found(subject)
        return [sv.version for sv in live]

    def get_version(self, subject: str, version, deleted=False) -> SchemaVersion:
        v = parse_version(version)
        live = self._live(subject, True)
        if not live:
            raise subject_not_found(subject)
        if v == "latest":
            live = [sv for sv in live if deleted or not sv.deleted]
            if not live:
                raise subject_not_found(subject)
            return live[-1]
        sv = self.versions[subject].get(v)
        if sv is None or (sv.deleted and not deleted):
            raise version_not_found(subject, v)
        return sv

    def schema_by_id(self, schema_id) -> SchemaVersion:
        try:
            sv = self.by_id.get(int(schema_id))
        except (TypeError, ValueError):
            sv = None
        if sv is None:
            raise RegistryError(404, 40403, f"Schema {schema_id} not found")
        return sv

    def id_usages(self, schema_id, deleted=False) -> list[SchemaVersion]:
        self.schema_by_id(schema_id)
        sid = int(schema_id)
        return [sv for s in sorted(self.versions) for sv in self._live(s, deleted) if sv.id == sid]

    def level(self, subject: str | None) -> str:
        c = self.configs.get(subject) or self.configs.get(None) or {}
        return c.get("compatibilityLevel") or DEFAULT_LEVEL

    def mode(self, subject: str | None) -> str:
        return self.modes.get(subject) or self.modes.get(None) or "READWRITE"

    # ------------------------------------------------------------------ schemas
    def parse(self, schema_type: str, text: str, references) -> object:
        cls = TYPES.get(schema_type)
        if cls is None:
            raise RegistryError(422, 42201, f"Invalid schema type {schema_type}")
        key = (schema_type, text, _refs_key(references))
        parsed = self._parsed.get(key)
        if parsed is None:
            refs = []
            for r in references or ():
                if not isinstance(r, dict) or not r.get("subject") or r.get("version") is None:
                    raise invalid_schema(f"bad reference {r!r}")
                try:
                    target = self.get_version(r["subject"], r["version"])
                except RegistryError:
                    raise invalid_schema(f"reference {r.get('name')!r} to {r['subject']} "
                                         f"version {r['version']} not found") from None
                refs.append((r.get("name"), self.parse(target.schema_type, target.schema,
                                                       target.references)))
            parsed = cls(text, refs)
            if len(self._parsed) > 4096:
                self._parsed.clear()
            self._parsed[key] = parsed
        return parsed

    def _same(self, sv: SchemaVersion, schema_type, text, refs, parsed, normalize) -> bool:
        if sv.schema_type != schema_type or _refs_key(sv.references) != _refs_key(refs):
            return False
        if sv.schema == text:
            return True
        try:
            other = self.parse(sv.schema_type, sv.schema, sv.references)
        except RegistryError:
            return False
        if normalize and schema_type == "AVRO":
            return other.canonical() == parsed.canonical()
        return _compact(other) == _compact(parsed)

    def lookup(self, subject: str, body: dict, normalize=False, deleted=False) -> SchemaVersion:
        schema_type, text, refs = request_schema(body)
        parsed = self.parse(schema_type, text, refs)
        live = self._live(subject, deleted)
        if not live:
            raise subject_not_found(subject)
        for sv in reversed(live):
            if self._same(sv, schema_type, text, refs, parsed, normalize):
                return sv
        raise schema_not_found()

    def check_compatibility(self, subject: str, schema_type, parsed, against=None) -> list[str]:
        """Why `parsed` may not be registered under `subject` at its level ([]: it may).
        `against`: the versions to check (default: the level's: latest or all)."""
        level = self.level(subject)
        if level == "NONE":
            return []
        live = self._live(subject)
        if against is None:
            against = live if level.endswith("_TRANSITIVE") else live[-1:]
        problems: list[str] = []
        check = CHECKERS[schema_type]
        for sv in reversed(against):
            if sv.schema_type != schema_type:
                problems.append(f"version {sv.version} is of type {sv.schema_type}")
                continue
            old = self.parse(sv.schema_type, sv.schema, sv.references)
            if level.startswith(("BACKWARD", "FULL")):
                problems += [f"version {sv.version}: {p} (reading old data)"
                             for p in check(parsed, old)]
            if level.startswith(("FORWARD", "FULL")):
                problems += [f"version {sv.version}: {p} (old readers)"
                             for p in check(old, parsed)]
        return problems

    def plan_register(self, subject: str, body: dict, normalize=False):
        """(existing SchemaVersion, None) when the subject already has the schema, else
        (None, the SchemaVersion to write). RegistryError for a refusal."""
        if not subject or len(subject) > 4096:
            raise RegistryError(422, 42201, "Invalid subject name")
        mode = self.mode(subject)
        if mode in ("READONLY", "READONLY_OVERRIDE"):
            raise RegistryError(422, 42205, f"Subject {subject} is in read-only mode")
        schema_type, text, refs = request_schema(body)
        parsed = self.parse(schema_type, text, refs)
        for sv in reversed(self._live(subject)):
            if self._same(sv, schema_type, text, refs, parsed, normalize):
                return sv, None
        want_id, want_version = body.get("id"), body.get("version")
        if (want_id is not None and want_id not in (-1, 0)) or \
                (want_version is not None and want_version not in (-1, 0)):
            if mode != "IMPORT":
                raise RegistryError(422, 42205, "Overriding the schema id or version is "
                                    "allowed only in IMPORT mode")
        else:
            want_id = want_version = None
        if mode != "IMPORT":
            problems = self.check_compatibility(subject, schema_type, parsed)
            if problems:
                raise incompatible(subject, problems)
        if normalize and schema_type in ("AVRO", "JSON"):
            # stored compact with sorted keys: Parsing Canonical Form would drop the
            # defaults and docs that readers and the compatibility checks need
            text = _compact(parsed)
        schema_id = want_id
        if schema_id is None:
            schema_id = next((sid for sid, sv in self.by_id.items()
                              if sv.content_key() == (schema_type, text, _refs_key(refs))),
                             self.max_id + 1)
        elif schema_id in self.by_id and \
                self.by_id[schema_id].content_key() != (schema_type, text, _refs_key(refs)):
            raise RegistryError(422, 42205, f"Schema id {schema_id} is already used by "
                                "another schema")
        existing = self.versions.get(subject, {})
        version = want_version or (max(existing) + 1 if existing else 1)
        if version in existing:
            raise RegistryError(422, 42205, f"Version {version} of {subject} exists")
        extra = {k: body[k] for k in ("metadata", "ruleSet") if body.get(k) is not None}
        return None, SchemaVersion(subject, version, schema_id, schema_type, text,
                                   list(refs or []), False, extra)

    def planned_ok(self, sv: SchemaVersion) -> bool:
        got = self.versions.get(sv.subject, {}).get(sv.version)
        return got is not None and got.id == sv.id

    # ------------------------------------------------------------------ deletes
    def _referenced(self, sv: SchemaVersion) -> bool:
        return any(r.get("subject") == sv.subject and r.get("version") == sv.version
                   for vs in self.versions.values() for other in vs.values()
                   if not other.deleted for r in other.references)

    def plan_delete_subject(self, subject: str, permanent=False):
        """(versions deleted, records)."""
        everything = self._live(subject, True)
        if not everything:
            raise subject_not_found(subject)
        live = [sv for sv in everything if not sv.deleted]
        if any(self._referenced(sv) for sv in everything):
            raise RegistryError(422, 42206, f"One or more references exist to the schema "
                                f"{{subject={subject}}}")
        if permanent:
            if live:
                raise RegistryError(404, 40405, f"Subject '{subject}' was not deleted first "
                                    "before being permanently deleted")
            records = [(key_bytes("SCHEMA", subject, sv.version), None) for sv in everything]
            records.append(self._id_watermark())
            if subject in self.configs:
                records.append((key_bytes("CONFIG", subject), None))
            if subject in self.modes:
                records.append((key_bytes("MODE", subject), None))
            return [sv.version for sv in everything], records
        if not live:
            raise RegistryError(404, 40404, f"Subject '{subject}' was soft deleted.Set "
                                "permanent=true to delete permanently")
        records = []
        for sv in live:
            d = SchemaVersion(**{**sv.__dict__, "deleted": True})
            records.append(d.record())
        records.append((key_bytes("DELETE_SUBJECT", subject),
                        _dumps({"subject": subject, "version": live[-1].version})))
        return [sv.version for sv in live], records

    def plan_delete_version(self, subject: str, version, permanent=False):
        """(version number, records)."""
        sv = self.get_version(subject, version, deleted=permanent)
        if self._referenced(sv):
            raise RegistryError(422, 42206, f"One or more references exist to the schema "
                                f"{{subject={subject},version={sv.version}}}")
        if permanent:
            if not sv.deleted:
                raise RegistryError(404, 40407, f"Subject '{subject}' Version {sv.version} "
                                    "was not deleted first before being permanently deleted")
            return sv.version, [(key_bytes("SCHEMA", subject, sv.version), None),
                                self._id_watermark()]
        if sv.deleted:
            raise RegistryError(404, 40406, f"Subject '{subject}' Version {sv.version} was "
                                "soft deleted.Set permanent=true to delete permanently")
        return sv.version, [SchemaVersion(**{**sv.__dict__, "deleted": True}).record()]

    def _id_watermark(self) -> tuple[bytes, bytes]:
        return key_bytes("NOOP"), _dumps({"maxId": self.max_id})

    # ------------------------------------------------------------------ config, mode
    def plan_config(self, subject: str | None, body) -> tuple[dict, list]:
        if not isinstance(body, dict):
            raise RegistryError(422, 42203, "Invalid compatibility level")
        level = str(body.get("compatibility") or body.get("compatibilityLevel") or "").upper()
        if level not in LEVELS:
            raise RegistryError(422, 42203, "Invalid compatibility level. Valid values are "
                                "none, backward, forward, full, backward_transitive, "
                                "forward_transitive, and full_transitive")
        value = {k: v for k, v in body.items() if k not in ("compatibility",
                                                            "compatibilityLevel")}
        value["compatibilityLevel"] = level
        return {"compatibility": level, **{k: v for k, v in value.items()
                                           if k != "compatibilityLevel"}}, \
            [(key_bytes("CONFIG", subject), _dumps(value))]

    def plan_mode(self, subject: str | None, body, force=False) -> tuple[dict, list]:
        mode = str((body or {}).get("mode") or "").upper() if isinstance(body, dict) else ""
        if mode not in MODES:
            raise RegistryError(422, 42204, "Invalid mode. Valid values are READWRITE, "
                                "READONLY, READONLY_OVERRIDE and IMPORT")
        if mode == "IMPORT" and not force and (self.versions if subject is None
                                               else self.versions.get(subject)):
            raise RegistryError(422, 42205, "Cannot import since found existing subjects")
        return {"mode": mode}, [(key_bytes("MODE", subject), _dumps({"mode": mode}))]


def _compact(parsed) -> str:
    raw = getattr(parsed, "raw", None)
    if raw is None:
        return parsed.canonical()
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


def request_schema(body) -> tuple[str, str, list]:
    if not isinstance(body, dict):
        raise RegistryError(422, 42201, "Invalid schema: the body is not a JSON object")
    text = body.get("schema")
    if not isinstance(text, str) or not text.strip():
        raise RegistryError(422, 42201, "Empty schema")
    schema_type = str(body.get("schemaType") or "AVRO").upper()
    if schema_type not in TYPES:
        raise RegistryError(422, 42201, f"Invalid schema type {schema_type}")
    refs = body.get("references") or []
    if not isinstance(refs, list):
        raise invalid_schema("references must be a list")
    return schema_type, text, refs
