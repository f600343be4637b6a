"""Reading the project's protocol specs (protocol_specs/*.yaml) and Apache Kafka's
reference JSON message definitions, into one plain form both can be compared in.

The YAML files are the project's own: facts only (names, types, version ranges,
nullability, tags, defaults). `tools/derive_specs.py` derived them once from the
reference JSON; `tests/test_specs.py` checks that the facts still agree with the
reference folder when it is present.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

SPEC_DIR = Path(__file__).resolve().parents[2] / "protocol_specs"

# The facts kept per field, in YAML key order. `about` strings and other prose
# from the reference are deliberately not carried over.
FIELD_FACTS = ("name", "type", "versions", "nullable_versions", "tagged_versions",
               "tag", "default", "ignorable", "map_key", "zero_copy",
               "flexible_versions")
MESSAGE_FACTS = ("name", "type", "api_key", "valid_versions", "flexible_versions",
                 "deprecated_versions", "latest_version_unstable")

_JSON_KEYS = {
    "nullableVersions": "nullable_versions", "taggedVersions": "tagged_versions",
    "mapKey": "map_key", "zeroCopy": "zero_copy", "apiKey": "api_key",
    "validVersions": "valid_versions", "flexibleVersions": "flexible_versions",
    "deprecatedVersions": "deprecated_versions",
    "latestVersionUnstable": "latest_version_unstable", "commonStructs": "common_structs",
}


def _strip_json_comments(text: str) -> str:
    # The reference files carry a license header as // comments; JSON has none.
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def _facts_from_json_field(f: dict) -> dict:
    out = {}
    for k, v in f.items():
        key = _JSON_KEYS.get(k, k)
        if key in FIELD_FACTS:
            out[key] = v
    if "fields" in f:
        out["fields"] = [_facts_from_json_field(x) for x in f["fields"]]
    return out


def facts_from_reference(path: Path) -> dict:
    """One reference JSON message → the project's fact dictionary."""
    raw = json.loads(_strip_json_comments(path.read_text()))
    out = {}
    for k, v in raw.items():
        key = _JSON_KEYS.get(k, k)
        if key in MESSAGE_FACTS:
            out[key] = v
    out["fields"] = [_facts_from_json_field(f) for f in raw.get("fields", [])]
    if "commonStructs" in raw:
        out["common_structs"] = [
            {"name": s["name"], "versions": s["versions"],
             "fields": [_facts_from_json_field(f) for f in s["fields"]]}
            for s in raw["commonStructs"]
        ]
    return out


def load_spec(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def load_all_specs(spec_dir: Path = SPEC_DIR) -> dict[str, dict]:
    return {p.stem: load_spec(p) for p in sorted(spec_dir.glob("*.yaml"))}


def spec_file_name(message_name: str) -> str:
    """FetchRequest → fetch_request (file stem)."""
    return snake_case(message_name)


def snake_case(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()
