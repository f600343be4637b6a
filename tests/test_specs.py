"""The protocol specs and the code generated from them.

- drift: the committed modules in kafkette/protocol/messages/ are exactly what the
  generator makes from protocol_specs/ (`make generate` after editing a spec);
- the YAML facts still agree with Apache Kafka's reference JSON definitions
  (../shared/kafka-message-schemas, or $KAFKETTE_SHARED_DIR/kafka-message-schemas),
  when that folder is present;
- the specs hold facts only: no `about` prose anywhere.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from kafkette.protocol import generator
from kafkette.protocol.specs import (FIELD_FACTS, MESSAGE_FACTS, SPEC_DIR, facts_from_reference,
                                     load_all_specs, spec_file_name)

MESSAGES_DIR = Path(generator.__file__).resolve().parent / "messages"


def shared_dir() -> Path:
    env = os.environ.get("KAFKETTE_SHARED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared"


REFERENCE_DIR = shared_dir() / "kafka-message-schemas"
needs_reference = pytest.mark.skipif(
    not REFERENCE_DIR.is_dir(), reason=f"reference schemas not found at {REFERENCE_DIR}")


# --------------------------------------------------------------------------- drift
@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return generator.generate_all()


def test_generated_files_match_committed(generated):
    committed = {p.name for p in MESSAGES_DIR.glob("*.py")}
    missing = sorted(set(generated) - committed)
    extra = sorted(committed - set(generated))
    assert not missing, f"run `make generate`: not committed: {missing}"
    assert not extra, f"stale modules not produced by the generator: {extra}"
    stale = sorted(name for name, src in generated.items()
                   if (MESSAGES_DIR / name).read_text() != src)
    assert not stale, f"run `make generate`: out of date: {stale}"


def test_generated_modules_are_marked_and_plain(generated):
    for name, src in generated.items():
        assert src.startswith(generator.HEADER), name
        # plain code: no runtime code generation in the output
        for banned in ("exec(", "eval(", "metaclass", "type("):
            assert banned not in src, f"{name} uses {banned}"
        compile(src, name, "exec")


def test_every_spec_is_generated(generated):
    specs = load_all_specs()
    sources = "\n".join(generated.values())
    for spec in specs.values():
        assert f"class {spec['name']}:" in sources, spec["name"]


def test_drift_check_notices_a_change(generated, tmp_path):
    """The comparison is real: a spec edit changes the generated source."""
    import shutil
    work = tmp_path / "specs"
    shutil.copytree(SPEC_DIR, work)
    path = work / "api_versions_request.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["valid_versions"] = "0-5"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    changed = generator.generate_all(work)
    assert changed["api_versions.py"] != generated["api_versions.py"]
    assert {k for k in changed if changed[k] != generated[k]} <= {"api_versions.py"}


# --------------------------------------------------------------------------- reference
@needs_reference
def test_yaml_facts_equal_reference():
    specs = load_all_specs()
    refs = sorted(REFERENCE_DIR.glob("*.json"))
    assert refs, "empty reference folder"
    seen = set()
    for path in refs:
        facts = facts_from_reference(path)
        stem = spec_file_name(facts["name"])
        assert stem in specs, f"{path.name}: no protocol_specs/{stem}.yaml"
        assert specs[stem] == facts, f"protocol_specs/{stem}.yaml differs from {path.name}"
        seen.add(stem)
    assert set(specs) == seen, f"specs without a reference: {sorted(set(specs) - seen)}"


@needs_reference
def test_reference_comparison_notices_a_difference(tmp_path):
    """facts_from_reference reads the facts that matter: a changed version range in
    a reference file makes the facts differ."""
    src = REFERENCE_DIR / "FetchRequest.json"
    text = src.read_text()
    facts = facts_from_reference(src)
    changed = tmp_path / "FetchRequest.json"
    assert '"validVersions": "' in text
    changed.write_text(text.replace('"validVersions": "', '"validVersions": "1', 1))
    assert facts_from_reference(changed) != facts
    # prose is dropped: an edited `about` does not change the facts
    changed.write_text(text.replace('"about": "', '"about": "edited ', 1))
    assert facts_from_reference(changed) == facts


# --------------------------------------------------------------------------- facts only
def _walk_keys(node, path="$"):
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k
            yield from _walk_keys(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, x in enumerate(node):
            yield from _walk_keys(x, f"{path}[{i}]")


def test_no_about_anywhere():
    files = sorted(SPEC_DIR.glob("*.yaml"))
    assert files
    about_line = re.compile(r"^[\s-]*['\"]?about['\"]?\s*:", re.M)
    for path in files:
        text = path.read_text()
        for where, key in _walk_keys(yaml.safe_load(text)):
            assert key != "about", f"{path.name}: `about` at {where}"
        assert not about_line.search(text), path.name
    # the check itself works
    assert about_line.search("- name: X\n  about: prose\n")


def test_only_known_fact_keys():
    allowed = set(FIELD_FACTS) | set(MESSAGE_FACTS) | {"fields", "common_structs"}
    for stem, spec in load_all_specs().items():
        for where, key in _walk_keys(spec):
            assert key in allowed, f"{stem}: unexpected key {key!r} at {where}"
