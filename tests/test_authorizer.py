"""The authorizer (kafkette/controller/acls.py) against StandardAuthorizer's rules: a
table of allow/deny cases, the ACL index built from metadata records, filters."""
from __future__ import annotations

import uuid

import pytest

from kafkette.controller.acls import (
    ALL, ALLOW, ALTER, ALTER_CONFIGS, CLUSTER, CLUSTER_ACTION, CREATE, DELETE, DENY,
    DESCRIBE, DESCRIBE_CONFIGS, GROUP, IDEMPOTENT_WRITE, LITERAL, MATCH, PREFIXED, READ,
    TOPIC, TRANSACTIONAL_ID, WRITE, AclBinding, AclFilter, AclIndex, Authorizer,
    SUPPORTED_OPERATIONS, validate_binding,
)
from kafkette.controller.metadata_image import MetadataImage, apply_records, image_to_records

ALICE, BOB = "User:alice", "User:bob"
HOST = "10.0.0.1"


def acl(rt, name, pattern, principal, op, perm=ALLOW, host="*"):
    return AclBinding(rt, name, pattern, principal, host, op, perm)


def index(*bindings) -> AclIndex:
    return AclIndex({uuid.uuid4(): b for b in bindings})


# (ACLs, authorizer settings, principal, host, op, resource type, name, allowed?)
CASES = [
    # Nothing at all: denied by default, allowed with allow.everyone.if.no.acl.found.
    ("no acls", [], {}, ALICE, HOST, READ, TOPIC, "t", False),
    ("no acls, allow.everyone", [], {"allow": True}, ALICE, HOST, READ, TOPIC, "t", True),
    # An ACL on the resource for someone else: allow.everyone no longer applies.
    ("acl for bob only", [acl(TOPIC, "t", LITERAL, BOB, READ)], {"allow": True},
     ALICE, HOST, READ, TOPIC, "t", False),
    ("acl on another topic, allow.everyone", [acl(TOPIC, "u", LITERAL, BOB, READ)],
     {"allow": True}, ALICE, HOST, READ, TOPIC, "t", True),
    ("literal allow", [acl(TOPIC, "t", LITERAL, ALICE, READ)], {}, ALICE, HOST, READ, TOPIC, "t", True),
    ("literal is not prefix", [acl(TOPIC, "t", LITERAL, ALICE, READ)], {}, ALICE, HOST, READ, TOPIC, "t2", False),
    ("other op", [acl(TOPIC, "t", LITERAL, ALICE, READ)], {}, ALICE, HOST, WRITE, TOPIC, "t", False),
    ("other type", [acl(TOPIC, "t", LITERAL, ALICE, READ)], {}, ALICE, HOST, READ, GROUP, "t", False),
    ("prefixed allow", [acl(TOPIC, "orders-", PREFIXED, ALICE, WRITE)], {},
     ALICE, HOST, WRITE, TOPIC, "orders-eu", True),
    ("prefixed equal name", [acl(TOPIC, "orders-", PREFIXED, ALICE, WRITE)], {},
     ALICE, HOST, WRITE, TOPIC, "orders-", True),
    ("prefixed no match", [acl(TOPIC, "orders-", PREFIXED, ALICE, WRITE)], {},
     ALICE, HOST, WRITE, TOPIC, "order", False),
    ("wildcard resource", [acl(TOPIC, "*", LITERAL, ALICE, READ)], {}, ALICE, HOST, READ, TOPIC, "any", True),
    ("wildcard principal", [acl(TOPIC, "t", LITERAL, "User:*", READ)], {}, ALICE, HOST, READ, TOPIC, "t", True),
    ("wildcard principal covers ANONYMOUS", [acl(TOPIC, "t", LITERAL, "User:*", READ)], {},
     "User:ANONYMOUS", "", READ, TOPIC, "t", True),
    ("ANONYMOUS is a principal", [acl(TOPIC, "t", LITERAL, "User:ANONYMOUS", WRITE)], {},
     "User:ANONYMOUS", HOST, WRITE, TOPIC, "t", True),
    ("host must match", [acl(TOPIC, "t", LITERAL, ALICE, READ, host="10.9.9.9")], {},
     ALICE, HOST, READ, TOPIC, "t", False),
    ("host matches", [acl(TOPIC, "t", LITERAL, ALICE, READ, host=HOST)], {},
     ALICE, HOST, READ, TOPIC, "t", True),
    # Implied operations (ALLOW only).
    ("READ implies DESCRIBE", [acl(TOPIC, "t", LITERAL, ALICE, READ)], {}, ALICE, HOST, DESCRIBE, TOPIC, "t", True),
    ("WRITE implies DESCRIBE", [acl(TOPIC, "t", LITERAL, ALICE, WRITE)], {}, ALICE, HOST, DESCRIBE, TOPIC, "t", True),
    ("DELETE implies DESCRIBE", [acl(TOPIC, "t", LITERAL, ALICE, DELETE)], {}, ALICE, HOST, DESCRIBE, TOPIC, "t", True),
    ("ALTER implies DESCRIBE", [acl(TOPIC, "t", LITERAL, ALICE, ALTER)], {}, ALICE, HOST, DESCRIBE, TOPIC, "t", True),
    ("CREATE does not imply DESCRIBE", [acl(TOPIC, "t", LITERAL, ALICE, CREATE)], {},
     ALICE, HOST, DESCRIBE, TOPIC, "t", False),
    ("DESCRIBE does not imply READ", [acl(TOPIC, "t", LITERAL, ALICE, DESCRIBE)], {},
     ALICE, HOST, READ, TOPIC, "t", False),
    ("ALTER_CONFIGS implies DESCRIBE_CONFIGS", [acl(TOPIC, "t", LITERAL, ALICE, ALTER_CONFIGS)], {},
     ALICE, HOST, DESCRIBE_CONFIGS, TOPIC, "t", True),
    ("ALL covers all", [acl(CLUSTER, "kafka-cluster", LITERAL, ALICE, ALL)], {},
     ALICE, HOST, CLUSTER_ACTION, CLUSTER, "kafka-cluster", True),
    # DENY beats ALLOW, whatever pattern carries it; implication does not widen DENY.
    ("deny beats allow", [acl(TOPIC, "t", LITERAL, ALICE, READ),
                          acl(TOPIC, "t", LITERAL, ALICE, READ, DENY)], {}, ALICE, HOST, READ, TOPIC, "t", False),
    ("prefixed deny beats literal allow", [acl(TOPIC, "t", LITERAL, ALICE, READ),
                                           acl(TOPIC, "", PREFIXED, ALICE, READ, DENY)],
     {}, ALICE, HOST, READ, TOPIC, "t", False),
    ("wildcard-principal deny", [acl(TOPIC, "t", LITERAL, ALICE, ALL),
                                 acl(TOPIC, "*", LITERAL, "User:*", WRITE, DENY)],
     {}, ALICE, HOST, WRITE, TOPIC, "t", False),
    ("deny ALL beats allow", [acl(TOPIC, "t", LITERAL, ALICE, READ),
                              acl(TOPIC, "t", LITERAL, ALICE, ALL, DENY)], {}, ALICE, HOST, READ, TOPIC, "t", False),
    ("deny READ does not deny DESCRIBE", [acl(TOPIC, "t", LITERAL, ALICE, ALTER),
                                          acl(TOPIC, "t", LITERAL, ALICE, READ, DENY)],
     {}, ALICE, HOST, DESCRIBE, TOPIC, "t", True),
    ("deny on other host", [acl(TOPIC, "t", LITERAL, ALICE, READ),
                            acl(TOPIC, "t", LITERAL, ALICE, READ, DENY, host="10.9.9.9")],
     {}, ALICE, HOST, READ, TOPIC, "t", True),
    # Super users pass everything, DENY included.
    ("super user", [acl(TOPIC, "t", LITERAL, ALICE, ALL, DENY)], {"super": [ALICE]},
     ALICE, HOST, WRITE, TOPIC, "t", True),
    ("super user, no acls", [], {"super": [ALICE]}, ALICE, HOST, ALTER, CLUSTER, "kafka-cluster", True),
    ("not a super user", [], {"super": [ALICE]}, BOB, HOST, ALTER, CLUSTER, "kafka-cluster", False),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_authorize(case):
    _, acls, settings, principal, host, op, rt, name, expected = case
    auth = Authorizer(settings.get("super", ()), settings.get("allow", False))
    assert auth.authorize(index(*acls), principal, host, op, rt, name) is expected


def test_super_users_are_semicolon_separated():
    assert Authorizer.parse_super_users(" User:a;User:CN=x,O=y ;;") == ["User:a", "User:CN=x,O=y"]


@pytest.mark.parametrize("acls,expected", [
    ([], False),
    ([acl(TOPIC, "t", LITERAL, ALICE, WRITE)], True),
    ([acl(TOPIC, "pre", PREFIXED, ALICE, WRITE)], True),
    ([acl(TOPIC, "t", LITERAL, ALICE, WRITE), acl(TOPIC, "t", LITERAL, ALICE, WRITE, DENY)], False),
    ([acl(TOPIC, "t", LITERAL, ALICE, WRITE), acl(TOPIC, "*", LITERAL, ALICE, WRITE, DENY)], False),
    ([acl(TOPIC, "pre", PREFIXED, ALICE, WRITE), acl(TOPIC, "p", PREFIXED, ALICE, WRITE, DENY)], False),
    ([acl(TOPIC, "t", LITERAL, ALICE, READ)], False),
    ([acl(TOPIC, "t", LITERAL, BOB, WRITE)], False),
])
def test_authorize_by_resource_type(acls, expected):
    """InitProducerId without a transactional id: WRITE on any topic (KIP-679)."""
    auth = Authorizer()
    assert auth.authorize_by_resource_type(index(*acls), ALICE, HOST, WRITE, TOPIC) is expected


def test_authorized_operations_bits():
    auth = Authorizer()
    idx = index(acl(TOPIC, "t", LITERAL, ALICE, READ), acl(TOPIC, "t", LITERAL, ALICE, ALTER_CONFIGS))
    bits = auth.authorized_operations(idx, ALICE, HOST, TOPIC, "t")
    assert bits == (1 << READ) | (1 << DESCRIBE) | (1 << ALTER_CONFIGS) | (1 << DESCRIBE_CONFIGS)
    everything = Authorizer([ALICE]).authorized_operations(idx, ALICE, HOST, TOPIC, "t")
    assert everything == sum(1 << op for op in SUPPORTED_OPERATIONS[TOPIC])


@pytest.mark.parametrize("binding,error", [
    (acl(TOPIC, "t", LITERAL, ALICE, READ), None),
    (acl(TOPIC, "t", MATCH, ALICE, READ), "Invalid patternType"),
    (acl(TOPIC, "", LITERAL, ALICE, READ), "Resource name should not be empty"),
    (acl(CLUSTER, "other", LITERAL, ALICE, ALTER), "kafka-cluster"),
    (acl(TOPIC, "t", LITERAL, "alice", READ), "Could not parse principal"),
    (acl(TOPIC, "t", LITERAL, ALICE, 1), "Invalid operation"),
    (acl(TOPIC, "t", LITERAL, ALICE, READ, perm=1), "Invalid permissionType"),
    (acl(1, "t", LITERAL, ALICE, READ), "Invalid resourceType"),
])
def test_validate_binding(binding, error):
    got = validate_binding(binding)
    if error is None:
        assert got is None
    else:
        assert got is not None and error in got


def test_filters():
    a = acl(TOPIC, "orders", LITERAL, ALICE, READ)
    b = acl(TOPIC, "ord", PREFIXED, BOB, WRITE, DENY)
    c = acl(TOPIC, "*", LITERAL, ALICE, DESCRIBE)
    d = acl(GROUP, "orders", LITERAL, ALICE, READ)
    idx = index(a, b, c, d)

    def found(f):
        return {x for _, x in idx.matching(f)}
    assert found(AclFilter()) == {a, b, c, d}
    assert found(AclFilter(resource_type=TOPIC)) == {a, b, c}
    assert found(AclFilter(resource_type=TOPIC, resource_name="orders", pattern_type=MATCH)) == {a, b, c}
    assert found(AclFilter(resource_type=TOPIC, resource_name="orders")) == {a}
    assert found(AclFilter(resource_type=TOPIC, pattern_type=PREFIXED)) == {b}
    assert found(AclFilter(principal=ALICE, operation=READ)) == {a, d}
    assert found(AclFilter(permission=DENY)) == {b}
    assert found(AclFilter(resource_name="orders", pattern_type=LITERAL)) == {a, d}


def test_acl_records_build_the_image_and_its_snapshot():
    image = MetadataImage(cluster_id="c", controller_id=1)
    a = acl(TOPIC, "t", LITERAL, ALICE, WRITE)
    b = acl(GROUP, "g-", PREFIXED, ALICE, READ)
    ida, idb = uuid.uuid4(), uuid.uuid4()
    image = apply_records(image, [a.to_record(ida), b.to_record(idb)], 5)
    auth = Authorizer()
    assert auth.authorize(image.acls, ALICE, HOST, WRITE, TOPIC, "t")
    assert auth.authorize(image.acls, ALICE, HOST, READ, GROUP, "g-1")
    old = image.acls
    image = apply_records(image, [{"type": "RemoveAccessControlEntryRecord", "id": str(ida)}], 6)
    assert not auth.authorize(image.acls, ALICE, HOST, WRITE, TOPIC, "t")
    assert auth.authorize(old, ALICE, HOST, WRITE, TOPIC, "t"), "an old image never changes"
    # A snapshot carries the ACLs; a record of another kind leaves the index as it is.
    rebuilt = apply_records(MetadataImage(cluster_id="", controller_id=1), image_to_records(image), 6)
    assert dict(rebuilt.acls.by_id) == {idb: b}
    same = apply_records(image, [{"type": "ProducerIdsRecord", "next_producer_id": 9}], 7)
    assert same.acls is image.acls


def test_idempotent_write_on_cluster():
    auth = Authorizer()
    idx = index(acl(CLUSTER, "kafka-cluster", LITERAL, ALICE, IDEMPOTENT_WRITE))
    assert auth.authorize(idx, ALICE, HOST, IDEMPOTENT_WRITE, CLUSTER, "kafka-cluster")
    assert not auth.authorize(idx, ALICE, HOST, WRITE, TRANSACTIONAL_ID, "tx")
