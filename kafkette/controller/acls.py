"""ACLs and the authorizer, with the semantics of Kafka's StandardAuthorizer (KRaft).

ACL bindings are metadata records (AccessControlEntryRecord and
RemoveAccessControlEntryRecord, as KRaft's AclControlManager writes them), applied to
the metadata image as an `AclIndex`, so every node of a cluster answers from the same
ACLs. The index is immutable: a batch of ACL records builds a new one, which shares
nothing mutable with the old, so a handler holding an image never sees it change.

Decision rules (StandardAuthorizerData):
- a principal in `super.users` is always allowed;
- the ACLs that apply to a resource are the LITERAL ones with its name, the LITERAL
  `*` wildcard ones, and the PREFIXED ones whose prefix starts its name; of those, an
  ACL matches a request when its principal is the request's or `User:*`, its host is
  the client's or `*`, and its operation is the requested one, ALL, or (for ALLOW
  ACLs only) one that implies it: READ, WRITE, DELETE and ALTER imply DESCRIBE;
  ALTER_CONFIGS implies DESCRIBE_CONFIGS;
- a matching DENY wins over any ALLOW; otherwise a matching ALLOW allows;
- when no ACL at all applies to the resource (whoever it names),
  `allow.everyone.if.no.acl.found` decides (default false: denied).
`User:ANONYMOUS` is a principal like any other.

Lookups are dict lookups: by resource type, then the exact name, `*`, and one lookup
per distinct prefix length present among that type's PREFIXED ACLs (Kafka walks a
sorted set of names backwards from the resource name; both find the same ACLs without
scanning unrelated ones), so a Produce pays a few dict probes, not a scan.

Sans-IO: no I/O and no wire messages; handlers translate requests to these calls.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import MappingProxyType

# authorizer.class.name values that turn ACLs on. The ZooKeeper-era AclAuthorizer
# does not exist in Kafka 4 (no ZooKeeper): accepted as an alias, and logged as such.
from kafkette.config import ACL_AUTHORIZER, STANDARD_AUTHORIZER  # noqa: F401

# Kafka's ResourceType codes.
RT_UNKNOWN, RT_ANY, TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID, DELEGATION_TOKEN, USER = range(8)
RESOURCE_TYPES = {TOPIC: "TOPIC", GROUP: "GROUP", CLUSTER: "CLUSTER",
                  TRANSACTIONAL_ID: "TRANSACTIONAL_ID", DELEGATION_TOKEN: "DELEGATION_TOKEN",
                  USER: "USER"}
# Kafka's PatternType codes (MATCH and ANY exist only in filters).
PT_UNKNOWN, PT_ANY, MATCH, LITERAL, PREFIXED = range(5)
# Kafka's AclOperation codes.
(OP_UNKNOWN, OP_ANY, ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION,
 DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, CREATE_TOKENS, DESCRIBE_TOKENS) = range(15)
OPERATIONS = {ALL: "ALL", READ: "READ", WRITE: "WRITE", CREATE: "CREATE", DELETE: "DELETE",
              ALTER: "ALTER", DESCRIBE: "DESCRIBE", CLUSTER_ACTION: "CLUSTER_ACTION",
              DESCRIBE_CONFIGS: "DESCRIBE_CONFIGS", ALTER_CONFIGS: "ALTER_CONFIGS",
              IDEMPOTENT_WRITE: "IDEMPOTENT_WRITE", CREATE_TOKENS: "CREATE_TOKENS",
              DESCRIBE_TOKENS: "DESCRIBE_TOKENS"}
# Kafka's AclPermissionType codes.
PERM_UNKNOWN, PERM_ANY, DENY, ALLOW = range(4)

WILDCARD = "*"                       # literal resource name and host wildcards
WILDCARD_PRINCIPAL = "User:*"
CLUSTER_NAME = "kafka-cluster"       # the one name of the CLUSTER resource
ANONYMOUS = "User:ANONYMOUS"

IMPLIES_DESCRIBE = frozenset((DESCRIBE, READ, WRITE, DELETE, ALTER))
IMPLIES_DESCRIBE_CONFIGS = frozenset((DESCRIBE_CONFIGS, ALTER_CONFIGS))

# The operations each resource type supports (the "authorized operations" bit sets
# of Metadata / DescribeCluster / DescribeGroups are computed over these, as Kafka's
# AclEntry.supportedOperations).
SUPPORTED_OPERATIONS = {
    TOPIC: (READ, WRITE, CREATE, DESCRIBE, DELETE, ALTER, DESCRIBE_CONFIGS, ALTER_CONFIGS),
    GROUP: (READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS),
    CLUSTER: (CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE,
              ALTER, DESCRIBE),
    TRANSACTIONAL_ID: (DESCRIBE, WRITE),
    DELEGATION_TOKEN: (DESCRIBE,),
    USER: (CREATE_TOKENS, DESCRIBE_TOKENS),
}



@dataclass(frozen=True)
class AclBinding:
    """One ACL: a resource pattern and an access control entry."""
    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int

    def to_record(self, acl_id: uuid.UUID) -> dict:
        return {"type": "AccessControlEntryRecord", "id": str(acl_id),
                "resource_type": self.resource_type, "resource_name": self.resource_name,
                "pattern_type": self.pattern_type, "principal": self.principal,
                "host": self.host, "operation": self.operation,
                "permission_type": self.permission}

    @staticmethod
    def from_record(rec: dict) -> "AclBinding":
        return AclBinding(rec["resource_type"], rec["resource_name"], rec["pattern_type"],
                          rec["principal"], rec["host"], rec["operation"],
                          rec["permission_type"])


@dataclass(frozen=True)
class AclFilter:
    """Kafka's AclBindingFilter: None (or ANY codes) match everything; pattern type
    MATCH matches the ACLs that would apply to the named resource (LITERAL of that
    name, LITERAL `*`, PREFIXED prefixes of it)."""
    resource_type: int = RT_ANY
    resource_name: str | None = None
    pattern_type: int = PT_ANY
    principal: str | None = None
    host: str | None = None
    operation: int = OP_ANY
    permission: int = PERM_ANY

    def matches(self, b: AclBinding) -> bool:
        if self.resource_type != RT_ANY and self.resource_type != b.resource_type:
            return False
        if self.pattern_type == MATCH:
            if self.resource_name is not None:
                if b.pattern_type == LITERAL:
                    if b.resource_name not in (self.resource_name, WILDCARD):
                        return False
                elif not self.resource_name.startswith(b.resource_name):
                    return False
        else:
            if self.pattern_type != PT_ANY and self.pattern_type != b.pattern_type:
                return False
            if self.resource_name is not None and self.resource_name != b.resource_name:
                return False
        if self.principal is not None and self.principal != b.principal:
            return False
        if self.host is not None and self.host != b.host:
            return False
        if self.operation != OP_ANY and self.operation != b.operation:
            return False
        return self.permission == PERM_ANY or self.permission == b.permission


def validate_binding(b: AclBinding) -> str | None:
    """Why Kafka refuses to create this ACL (INVALID_REQUEST), or None."""
    if b.resource_type not in RESOURCE_TYPES:
        return f"Invalid resourceType {b.resource_type}"
    if b.pattern_type not in (LITERAL, PREFIXED):
        return f"Invalid patternType {b.pattern_type}"
    if b.operation not in OPERATIONS:
        return f"Invalid operation {b.operation}"
    if b.permission not in (ALLOW, DENY):
        return f"Invalid permissionType {b.permission}"
    if not b.resource_name:
        return "Resource name should not be empty"
    if b.resource_type == CLUSTER and b.resource_name != CLUSTER_NAME:
        return f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
    kind, sep, name = b.principal.partition(":")
    if not sep or not kind or not name:
        return f"Could not parse principal from `{b.principal}` (no colon is present " \
               "separating the principal type from the principal name)"
    if b.host is None or b.host == "":
        return "Invalid host: it must be a host or *"
    return None


class AclIndex:
    """The ACLs of the image: by id (for removal and snapshots) and, per resource
    type, LITERAL ones by name and PREFIXED ones by prefix. Immutable once built."""

    __slots__ = ("by_id", "_literal", "_prefixed", "_prefix_lengths", "_by_binding")

    def __init__(self, by_id: dict[uuid.UUID, AclBinding] | None = None):
        self.by_id = MappingProxyType(dict(by_id or {}))
        literal: dict[int, dict[str, list]] = {}
        prefixed: dict[int, dict[str, list]] = {}
        self._by_binding: dict[AclBinding, uuid.UUID] = {}
        for acl_id, b in self.by_id.items():
            self._by_binding[b] = acl_id
            table = literal if b.pattern_type == LITERAL else prefixed
            table.setdefault(b.resource_type, {}).setdefault(b.resource_name, []).append(b)
        freeze = lambda t: {rt: {n: tuple(v) for n, v in names.items()}  # noqa: E731
                            for rt, names in t.items()}
        self._literal = freeze(literal)
        self._prefixed = freeze(prefixed)
        self._prefix_lengths = {rt: tuple(sorted({len(n) for n in names}))
                                for rt, names in self._prefixed.items()}

    def __len__(self) -> int:
        return len(self.by_id)

    def id_of(self, b: AclBinding) -> uuid.UUID | None:
        return self._by_binding.get(b)

    def changed(self, added: dict[uuid.UUID, AclBinding], removed: set[uuid.UUID]) -> "AclIndex":
        by_id = dict(self.by_id)
        for acl_id in removed:
            by_id.pop(acl_id, None)
        by_id.update(added)
        return AclIndex(by_id)

    def applying(self, resource_type: int, name: str):
        """Every ACL that applies to the resource (any principal, host, operation)."""
        lit = self._literal.get(resource_type)
        if lit:
            yield from lit.get(name, ())
            if name != WILDCARD:
                yield from lit.get(WILDCARD, ())
        pre = self._prefixed.get(resource_type)
        if pre:
            for n in self._prefix_lengths[resource_type]:
                if n > len(name):
                    break
                yield from pre.get(name[:n], ())

    def of_type(self, resource_type: int):
        yield from (b for names in self._literal.get(resource_type, {}).values() for b in names)
        yield from (b for names in self._prefixed.get(resource_type, {}).values() for b in names)

    def matching(self, f: AclFilter) -> list[tuple[uuid.UUID, AclBinding]]:
        return [(i, b) for i, b in self.by_id.items() if f.matches(b)]


EMPTY_ACLS = AclIndex()


def _entry_result(b: AclBinding, principal: str, host: str, op: int) -> int | None:
    """ALLOW / DENY when ACL `b` matches the request, else None (StandardAuthorizerData's
    findResult): implied operations widen ALLOW ACLs only, never DENY ones."""
    if b.principal != principal and b.principal != WILDCARD_PRINCIPAL:
        return None
    if b.host != WILDCARD and b.host != host:
        return None
    if b.operation != ALL and b.operation != op:
        if b.permission != ALLOW:
            return None
        if op == DESCRIBE:
            if b.operation not in IMPLIES_DESCRIBE:
                return None
        elif op == DESCRIBE_CONFIGS:
            if b.operation not in IMPLIES_DESCRIBE_CONFIGS:
                return None
        else:
            return None
    return b.permission


class Authorizer:
    """StandardAuthorizer's decisions over an AclIndex (see the module docstring)."""

    def __init__(self, super_users=(), allow_everyone_if_no_acl_found: bool = False):
        self.super_users = frozenset(super_users)
        self.allow_everyone_if_no_acl_found = allow_everyone_if_no_acl_found

    @staticmethod
    def parse_super_users(value: str | None) -> list[str]:
        """`super.users`: principals separated by semicolons (not commas: a principal
        name may hold a comma, e.g. a TLS distinguished name), as Kafka parses it."""
        return [p.strip() for p in (value or "").split(";") if p.strip()]

    def authorize(self, acls: AclIndex, principal: str, host: str, op: int,
                  resource_type: int, name: str) -> bool:
        if principal in self.super_users:
            return True
        found_any = False
        allowed = False
        for b in acls.applying(resource_type, name):
            found_any = True
            r = _entry_result(b, principal, host, op)
            if r == DENY:
                return False
            if r == ALLOW:
                allowed = True
        if allowed:
            return True
        return not found_any and self.allow_everyone_if_no_acl_found

    def authorized_operations(self, acls: AclIndex, principal: str, host: str,
                              resource_type: int, name: str) -> int:
        """Kafka's authorized-operations bit set: bit `op` for each supported op allowed."""
        bits = 0
        for op in SUPPORTED_OPERATIONS[resource_type]:
            if self.authorize(acls, principal, host, op, resource_type, name):
                bits |= 1 << op
        return bits

    def authorize_by_resource_type(self, acls: AclIndex, principal: str, host: str, op: int,
                                   resource_type: int) -> bool:
        """Whether `op` is allowed on at least one resource of the type (Kafka's
        Authorizer.authorizeByResourceType, KIP-679), e.g. InitProducerId without a
        transactional id needs IDEMPOTENT_WRITE on the cluster or WRITE on any topic.
        As Kafka: a super user (or allow.everyone with no ACLs on a made-up name) is
        allowed; else some ALLOW (LITERAL or PREFIXED) for the principal and host that
        no DENY covers (a `*` DENY or the empty-prefix DENY covers all)."""
        if self.authorize(acls, principal, host, op, resource_type, "hardcode"):
            return True
        deny_lit, deny_pre, allow_lit, allow_pre = set(), set(), set(), set()
        for b in acls.of_type(resource_type):
            if b.principal not in (principal, WILDCARD_PRINCIPAL) or \
                    b.host not in (host, WILDCARD):
                continue
            if b.operation != op and b.operation != ALL:
                continue
            if b.permission == DENY:
                (deny_lit if b.pattern_type == LITERAL else deny_pre).add(b.resource_name)
            else:
                (allow_lit if b.pattern_type == LITERAL else allow_pre).add(b.resource_name)
        if WILDCARD in deny_lit or "" in deny_pre:
            return False
        for p in allow_pre:
            if not any(p.startswith(d) for d in deny_pre):
                return True
        for n in allow_lit:
            if n not in deny_lit and not any(n.startswith(d) for d in deny_pre):
                return True
        return False
