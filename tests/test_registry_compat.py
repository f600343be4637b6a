"""Compatibility rules of the built-in Schema Registry (kafkette.registry), per schema
type and level: a table of evolutions old -> new with the expected answer."""
import json

import pytest

from kafkette.registry import avro, json_schema
from kafkette.registry.errors import RegistryError
from kafkette.registry.state import RegistryState


def rec(*fields, name="User"):
    return json.dumps({"type": "record", "name": name, "fields": list(fields)})


F_ID = {"name": "id", "type": "int"}
F_ID_LONG = {"name": "id", "type": "long"}
F_ID_STR = {"name": "id", "type": "string"}
F_NAME = {"name": "name", "type": "string"}
F_NAME_DEFAULT = {"name": "name", "type": "string", "default": ""}
F_NAME_OPT = {"name": "name", "type": ["null", "string"], "default": None}
COLOR = {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}
COLOR_MORE = {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]}

V1 = rec(F_ID)
# (old, new, {level: compatible?})
AVRO_TABLE = [
    ("add field with default", V1, rec(F_ID, F_NAME_DEFAULT),
     {"BACKWARD": True, "FORWARD": True, "FULL": True, "NONE": True}),
    ("add field without default", V1, rec(F_ID, F_NAME),
     {"BACKWARD": False, "FORWARD": True, "FULL": False, "NONE": True}),
    ("remove field without default", rec(F_ID, F_NAME), V1,
     {"BACKWARD": True, "FORWARD": False, "FULL": False, "NONE": True}),
    ("remove field with default", rec(F_ID, F_NAME_DEFAULT), V1,
     {"BACKWARD": True, "FORWARD": True, "FULL": True}),
    ("promote int to long", V1, rec(F_ID_LONG),
     {"BACKWARD": True, "FORWARD": False, "FULL": False}),
    ("int to string", V1, rec(F_ID_STR),
     {"BACKWARD": False, "FORWARD": False, "FULL": False, "NONE": True}),
    ("string to optional string", rec(F_ID, F_NAME_DEFAULT), rec(F_ID, F_NAME_OPT),
     {"BACKWARD": True, "FORWARD": False}),
    ("enum symbol added", rec(F_ID, {"name": "c", "type": COLOR}),
     rec(F_ID, {"name": "c", "type": COLOR_MORE}), {"BACKWARD": True, "FORWARD": False}),
    ("record renamed", V1, rec(F_ID, name="Person"), {"BACKWARD": False, "NONE": True}),
    ("record renamed with alias", V1,
     json.dumps({"type": "record", "name": "Person", "aliases": ["User"], "fields": [F_ID]}),
     {"BACKWARD": True}),
    ("field renamed with alias", rec(F_NAME),
     rec({"name": "full_name", "type": "string", "aliases": ["name"]}), {"BACKWARD": True}),
    ("array items promoted", json.dumps({"type": "array", "items": "int"}),
     json.dumps({"type": "array", "items": "double"}), {"BACKWARD": True, "FORWARD": False}),
    ("map values changed", json.dumps({"type": "map", "values": "int"}),
     json.dumps({"type": "map", "values": "boolean"}), {"BACKWARD": False, "FORWARD": False}),
    ("fixed resized", json.dumps({"type": "fixed", "name": "H", "size": 16}),
     json.dumps({"type": "fixed", "name": "H", "size": 32}), {"BACKWARD": False}),
    ("recursive list gets a default field",
     json.dumps({"type": "record", "name": "Node", "fields": [
         {"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]}),
     json.dumps({"type": "record", "name": "Node", "fields": [
         {"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"]},
         {"name": "w", "type": "int", "default": 0}]}), {"FULL": True}),
]


def register(state, subject, schema, schema_type="AVRO"):
    body = {"schema": schema}
    if schema_type != "AVRO":
        body["schemaType"] = schema_type
    existing, new = state.plan_register(subject, body)
    if existing is not None:
        return existing
    state.apply(*new.record())
    assert state.planned_ok(new)
    return new


def set_level(state, level, subject=None):
    _, records = state.plan_config(subject, {"compatibility": level})
    for r in records:
        state.apply(*r)


CASES = [(name, old, new, level, ok) for name, old, new, levels in AVRO_TABLE
         for level, ok in levels.items()]


@pytest.mark.parametrize("name,old,new,level,ok", CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_avro_evolution(name, old, new, level, ok):
    st = RegistryState()
    register(st, "s", old)
    set_level(st, level, "s")
    if ok:
        sv = register(st, "s", new)
        assert sv.version == 2 and sv.id == 2
    else:
        with pytest.raises(RegistryError) as e:
            register(st, "s", new)
        assert (e.value.status, e.value.error_code) == (409, 409)
        assert list(st.versions["s"]) == [1]


def test_transitive_checks_every_version_plain_only_the_latest():
    # v1 id:int; v2 adds name with default; v3 drops the default: compatible with v2
    # backward (v2 data has name) but not with v1 (v1 data lacks it).
    v3 = rec(F_ID, F_NAME)
    for level, ok in (("BACKWARD", True), ("BACKWARD_TRANSITIVE", False)):
        st = RegistryState()
        set_level(st, level)
        register(st, "s", V1)
        register(st, "s", rec(F_ID, F_NAME_DEFAULT))
        if ok:
            assert register(st, "s", v3).version == 3
        else:
            with pytest.raises(RegistryError):
                register(st, "s", v3)


def test_forward_transitive_and_full_transitive():
    # v1 (id, name); v2 (id, name default); v3 (id): old readers of v1 need name.
    for level, ok in (("FORWARD", True), ("FORWARD_TRANSITIVE", False),
                      ("FULL", True), ("FULL_TRANSITIVE", False)):
        st = RegistryState()
        set_level(st, level)
        register(st, "s", rec(F_ID, F_NAME))
        register(st, "s", rec(F_ID, F_NAME_DEFAULT))
        if ok:
            register(st, "s", V1)
        else:
            with pytest.raises(RegistryError):
                register(st, "s", V1)


def test_avro_union_rules():
    w = avro.AvroSchema(json.dumps(["null", "int"]))
    assert avro.can_read(avro.AvroSchema(json.dumps(["null", "long"])), w) == []
    assert avro.can_read(avro.AvroSchema('"int"'), w) != []   # null has no branch
    assert avro.can_read(avro.AvroSchema(json.dumps(["string", "int"])),
                         avro.AvroSchema('"int"')) == []


def obj(props, required=(), additional=None):
    s = {"type": "object", "properties": props}
    if required:
        s["required"] = list(required)
    if additional is not None:
        s["additionalProperties"] = additional
    return json.dumps(s)


S = {"type": "string"}
I = {"type": "integer"}
N = {"type": "number"}
JSON_TABLE = [
    ("add optional property, open model", obj({"a": S}), obj({"a": S, "b": I}),
     {"BACKWARD": False, "FORWARD": True, "NONE": True}),
    ("add optional property, closed old model", obj({"a": S}, additional=False),
     obj({"a": S, "b": I}, additional=False), {"BACKWARD": True, "FORWARD": False}),
    ("remove property, open new model", obj({"a": S, "b": I}), obj({"a": S}),
     {"BACKWARD": True, "FORWARD": False}),
    ("make property required", obj({"a": S}), obj({"a": S}, required=["a"]),
     {"BACKWARD": False, "FORWARD": True}),
    ("integer widened to number", obj({"a": I}), obj({"a": N}),
     {"BACKWARD": True, "FORWARD": False}),
    ("string to integer", obj({"a": S}), obj({"a": I}),
     {"BACKWARD": False, "FORWARD": False, "NONE": True}),
    ("enum value added", json.dumps({"enum": ["a", "b"]}), json.dumps({"enum": ["a", "b", "c"]}),
     {"BACKWARD": True, "FORWARD": False}),
    ("array items narrowed", json.dumps({"type": "array", "items": N}),
     json.dumps({"type": "array", "items": I}), {"BACKWARD": False, "FORWARD": True}),
]
JCASES = [(name, old, new, level, ok) for name, old, new, levels in JSON_TABLE
          for level, ok in levels.items()]


@pytest.mark.parametrize("name,old,new,level,ok", JCASES,
                         ids=[f"{c[0]}-{c[3]}" for c in JCASES])
def test_json_schema_evolution(name, old, new, level, ok):
    st = RegistryState()
    register(st, "s", old, "JSON")
    set_level(st, level, "s")
    if ok:
        assert register(st, "s", new, "JSON").version == 2
    else:
        with pytest.raises(RegistryError) as e:
            register(st, "s", new, "JSON")
        assert e.value.error_code == 409


def test_json_schema_checked_against_its_meta_schema():
    with pytest.raises(RegistryError) as e:
        json_schema.JsonSchema(json.dumps({"type": "nope"}))
    assert e.value.error_code == 42201


@pytest.mark.parametrize("text", ['{"type": "record", "name": "X"}', '{"type": "strin"}',
                                  "not json", '{"type":"record","name":"R","fields":'
                                  '[{"name":"a","type":"Missing"}]}'])
def test_broken_avro_is_42201(text):
    st = RegistryState()
    with pytest.raises(RegistryError) as e:
        st.plan_register("s", {"schema": text})
    assert (e.value.status, e.value.error_code) == (422, 42201)


def test_same_schema_keeps_its_id_across_subjects_and_ids_are_never_reused():
    st = RegistryState()
    a = register(st, "a", V1)
    b = register(st, "b", V1)
    assert a.id == b.id == 1 and register(st, "a", V1).version == 1
    c = register(st, "c", rec(F_ID, F_NAME))
    assert c.id == 2
    # a second writer that planned id 2 for another schema loses: the first record wins
    _, rival = RegistryState().plan_register("d", {"schema": rec(F_ID_STR)})
    rival.id = 2
    st.apply(*rival.record())
    assert not st.planned_ok(rival)
    assert st.schema_by_id(2).schema == rec(F_ID, F_NAME)
    # a permanent delete does not free an id
    for plan in (lambda: st.plan_delete_subject("c"),
                 lambda: st.plan_delete_subject("c", permanent=True)):
        for r in plan()[1]:
            st.apply(*r)
    assert register(st, "e", rec(F_ID_LONG)).id == 3


def test_references_resolve_named_types():
    st = RegistryState()
    register(st, "address", json.dumps({"type": "record", "name": "Address", "namespace": "x",
                                        "fields": [{"name": "city", "type": "string"}]}))
    body = {"schema": json.dumps({"type": "record", "name": "User", "namespace": "x",
                                  "fields": [{"name": "home", "type": "x.Address"}]}),
            "references": [{"name": "x.Address", "subject": "address", "version": 1}]}
    _, new = st.plan_register("user", body)
    assert new.references == body["references"]
    with pytest.raises(RegistryError) as e:
        st.plan_register("user", {**body, "references": []})
    assert e.value.error_code == 42201


def test_compaction_after_a_permanent_delete_does_not_free_the_id():
    st = RegistryState()
    log = dict([register(st, "a", V1).record()])
    top = register(st, "b", rec(F_ID, F_NAME))
    log.update([top.record()])
    for plan in (lambda: st.plan_delete_subject("b"),
                 lambda: st.plan_delete_subject("b", permanent=True)):
        records = plan()[1]
        for r in records:
            st.apply(*r)
        log.update(records)
    # what compaction leaves: the latest value per key, tombstones dropped
    fresh = RegistryState()
    for k, v in log.items():
        if v is not None:
            fresh.apply(k, v)
    assert top.id not in fresh.by_id and fresh.subjects(deleted=True) == ["a"]
    assert register(fresh, "c", rec(F_ID_LONG)).id == top.id + 1


def test_normalize_keeps_defaults_and_finds_reformatted_schemas():
    st = RegistryState()
    pretty = json.dumps(json.loads(rec(F_ID, F_NAME_DEFAULT)), indent=4)
    _, new = st.plan_register("s", {"schema": pretty}, normalize=True)
    st.apply(*new.record())
    assert json.loads(new.schema)["fields"][1]["default"] == "" and "\n" not in new.schema
    assert st.lookup("s", {"schema": rec(F_ID, F_NAME_DEFAULT)}).version == 1
    # Parsing Canonical Form (normalize=true lookups) ignores the default
    assert st.lookup("s", {"schema": rec(F_ID, F_NAME)}, normalize=True).version == 1
    with pytest.raises(RegistryError):
        st.lookup("s", {"schema": rec(F_ID, F_NAME)})
