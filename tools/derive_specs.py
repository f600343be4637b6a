"""Derive protocol_specs/*.yaml (facts only) from Apache Kafka's reference message
definitions. Run once per Kafka release we follow:

    python tools/derive_specs.py ../shared/kafka-message-schemas

Only facts are carried over (see kafkette.protocol.specs.FIELD_FACTS); no `about`
strings, no comments. Review the diff before committing.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kafkette.protocol.specs import SPEC_DIR, facts_from_reference, spec_file_name  # noqa: E402


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper, data):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def main(ref_dir: str) -> None:
    SPEC_DIR.mkdir(exist_ok=True)
    n = 0
    for path in sorted(Path(ref_dir).glob("*.json")):
        facts = facts_from_reference(path)
        out = SPEC_DIR / f"{spec_file_name(facts['name'])}.yaml"
        header = "# kafkette protocol spec (facts only). Regenerate code with `make generate`.\n"
        out.write_text(header + yaml.dump(facts, Dumper=_Dumper, sort_keys=False,
                                          default_flow_style=False, width=100))
        n += 1
    print(f"wrote {n} specs to {SPEC_DIR}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/kafka-message-schemas")
