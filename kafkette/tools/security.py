"""The engine of the security tools: ACLs (kafka-acls.sh, `kafkette acls`) and SCRAM
users (kafka-configs.sh --entity-type users, `kafkette users`).

ACLs: Kafka's AclCommand options to AclBinding / AclFilter (kafkette.controller.acls,
the authorizer's own types), sent as CreateAcls / DescribeAcls / DeleteAcls; printed
with the toString forms of Kafka's ResourcePattern and AccessControlEntry, so scripts
that grep kafka-acls.sh's output keep working.

Users: the SCRAM credentials of KIP-554. As Kafka's ConfigCommand does, the tool
computes the salted password itself (a random salt, PBKDF2-HMAC with the mechanism's
hash, RFC 5802's Hi()) and sends only the salt and salted password in
AlterUserScramCredentials (one request per mechanism: a controller refuses a user
named twice in one request); the password never reaches the broker.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from kafkette.controller.acls import (
    ALL, ALLOW, CLUSTER, CLUSTER_NAME, CREATE, DELEGATION_TOKEN, DENY, DESCRIBE, GROUP,
    IDEMPOTENT_WRITE, LITERAL, MATCH, OP_ANY, OPERATIONS, PERM_ANY, PREFIXED, PT_ANY, READ,
    RESOURCE_TYPES, RT_ANY, TOPIC, TRANSACTIONAL_ID, USER, WRITE, AclBinding, AclFilter,
)
from kafkette.protocol.messages import (
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeUserScramCredentialsRequest,
)
from kafkette.tools.client import ToolError, error_name

PATTERN_TYPES = {"literal": LITERAL, "prefixed": PREFIXED, "match": MATCH, "any": PT_ANY}
PATTERN_NAMES = {LITERAL: "LITERAL", PREFIXED: "PREFIXED", MATCH: "MATCH", PT_ANY: "ANY"}
PERMISSION_NAMES = {ALLOW: "ALLOW", DENY: "DENY"}
#: operation name without underscores, upper case -> code: Kafka's AclCommand takes
#: "Read", "IdempotentWrite", "DescribeConfigs" (and prints READ, IDEMPOTENT_WRITE, ...)
_OPERATION_BY_KEY = {name.replace("_", ""): code for code, name in OPERATIONS.items()}


class AclUsageError(ValueError):
    """Options that do not make an ACL command (Kafka's CommandLineUtils.printUsageAndExit)."""


@dataclass
class AclOptions:
    """The parsed options of an ACL command (names as kafka-acls.sh's)."""
    allow_principals: list[str]
    deny_principals: list[str]
    allow_hosts: list[str]
    deny_hosts: list[str]
    operations: list[str]
    topics: list[str]
    groups: list[str]
    cluster: bool
    transactional_ids: list[str]
    delegation_tokens: list[str]
    user_principals: list[str]
    pattern_type: str = "literal"
    producer: bool = False
    consumer: bool = False
    idempotent: bool = False
    principals: list[str] | None = None   # --list's filter


def operation_code(name: str) -> int:
    code = _OPERATION_BY_KEY.get(name.replace("_", "").replace("-", "").upper())
    if code is None:
        raise AclUsageError(f"Invalid operation {name}: one of "
                            f"{', '.join(n.title().replace('_', '') for n in OPERATIONS.values())}")
    return code


def _check_principal(p: str) -> str:
    kind, sep, name = p.partition(":")
    if not sep or not kind or not name:
        raise AclUsageError(f"Could not parse principal from `{p}`: expected a string in "
                            f"format principalType:principalName (User:alice)")
    return p


def resources(o: AclOptions, pattern: int) -> list[tuple[int, str, int]]:
    """(resource type, name, pattern type) of the resource options."""
    out = [(TOPIC, t, pattern) for t in o.topics]
    out += [(GROUP, g, pattern) for g in o.groups]
    if o.cluster:
        out.append((CLUSTER, CLUSTER_NAME, pattern))
    out += [(TRANSACTIONAL_ID, t, pattern) for t in o.transactional_ids]
    out += [(DELEGATION_TOKEN, t, pattern) for t in o.delegation_tokens]
    out += [(USER, u, pattern) for u in o.user_principals]
    return out


def _pattern(o: AclOptions, adding: bool) -> int:
    pt = PATTERN_TYPES.get(o.pattern_type.lower())
    if pt is None:
        raise AclUsageError(f"Invalid --resource-pattern-type {o.pattern_type}: one of "
                            f"literal, prefixed, match, any")
    if adding and pt not in (LITERAL, PREFIXED):
        raise AclUsageError(f"A '--resource-pattern-type' value of '{o.pattern_type}' is not "
                            f"valid when adding acls.")
    return pt


def _entries(o: AclOptions, operations: list[int]) -> list[tuple[str, str, int, int]]:
    """(principal, host, operation, permission) of the principal and host options; a
    principal without a host option gets host `*`, as Kafka's AclCommand."""
    if (o.allow_hosts and not o.allow_principals) or (o.deny_hosts and not o.deny_principals):
        raise AclUsageError("--allow-host needs --allow-principal and --deny-host needs "
                            "--deny-principal")
    out = []
    for principals, hosts, perm in ((o.allow_principals, o.allow_hosts, ALLOW),
                                    (o.deny_principals, o.deny_hosts, DENY)):
        for p in principals:
            _check_principal(p)
            for h in (hosts or ["*"]):
                for op in operations:
                    out.append((p, h, op, perm))
    return out


def bindings_to_add(o: AclOptions) -> list[AclBinding]:
    """The ACLs an --add command creates (Kafka's AclCommand.addAcls), including the
    --producer / --consumer expansions."""
    pattern = _pattern(o, adding=True)
    if not (o.allow_principals or o.deny_principals):
        raise AclUsageError("You must specify one of: --allow-principal, --deny-principal "
                            "when trying to add ACLs.")
    out: list[AclBinding] = []

    def add(res, ops):
        for rtype, name, pt in res:
            for principal, host, op, perm in _entries(o, ops):
                b = AclBinding(rtype, name, pt, principal, host, op, perm)
                if b not in out:
                    out.append(b)

    if o.producer or o.consumer:
        if o.operations:
            raise AclUsageError("--operation cannot be used with --producer or --consumer")
        if not o.topics:
            raise AclUsageError("With --producer or --consumer you must specify a --topic")
        if o.consumer and not o.groups:
            raise AclUsageError("With --consumer you must specify a --group")
        if o.producer:
            # AclCommand.getProducerResourceFilterToAcls
            add([(TOPIC, t, pattern) for t in o.topics], [WRITE, DESCRIBE, CREATE])
            add([(TRANSACTIONAL_ID, t, pattern) for t in o.transactional_ids],
                [WRITE, DESCRIBE])
            if o.idempotent:
                add([(CLUSTER, CLUSTER_NAME, LITERAL)], [IDEMPOTENT_WRITE])
        if o.consumer:
            # AclCommand.getConsumerResourceFilterToAcls
            add([(TOPIC, t, pattern) for t in o.topics], [READ, DESCRIBE])
            add([(GROUP, g, pattern) for g in o.groups], [READ])
        return out
    res = resources(o, pattern)
    if not res:
        raise AclUsageError("You must provide at least one resource: --topic <topic> or "
                            "--cluster or --group <group> or --transactional-id <id> or "
                            "--delegation-token <token> or --user-principal <principal>")
    add(res, [operation_code(op) for op in o.operations] or [ALL])
    return out


def filters_to_remove(o: AclOptions) -> list[AclFilter]:
    """The DeleteAcls filters of a --remove command: the named ACLs when principals are
    given, else every ACL of each resource (Kafka's AclCommand.removeAcls)."""
    pattern = _pattern(o, adding=False)
    if o.producer or o.consumer:
        return [AclFilter(b.resource_type, b.resource_name, b.pattern_type, b.principal,
                          b.host, b.operation, b.permission)
                for b in bindings_to_add(AclOptions(**{**o.__dict__, "pattern_type":
                                                       PATTERN_NAMES[pattern].lower()}))]
    res = resources(o, pattern)
    if not res:
        raise AclUsageError("You must provide at least one resource to remove ACLs from")
    if o.allow_principals or o.deny_principals:
        ops = [operation_code(op) for op in o.operations] or [ALL]
        return [AclFilter(rt, name, pt, p, h, op, perm)
                for rt, name, pt in res for p, h, op, perm in _entries(o, ops)]
    return [AclFilter(rt, name, pt) for rt, name, pt in res]


def filters_to_list(o: AclOptions) -> list[AclFilter]:
    """DescribeAcls filters of --list: each resource (all ACLs without one), narrowed
    to --principal when given."""
    pattern = _pattern(o, adding=False)
    principals = [_check_principal(p) for p in (o.principals or [])] or [None]
    res = resources(o, pattern)
    if not res:
        return [AclFilter(RT_ANY, None, PT_ANY, p) for p in principals]
    return [AclFilter(rt, name, pt, p) for rt, name, pt in res for p in principals]


# --------------------------------------------------------------------------- printing

def pattern_str(rtype: int, name: str, pattern: int, filter_: bool = False) -> str:
    kind = "ResourcePatternFilter" if filter_ else "ResourcePattern"
    rt = RESOURCE_TYPES.get(rtype, "ANY" if rtype == RT_ANY else "UNKNOWN")
    return f"{kind}(resourceType={rt}, name={name}, patternType={PATTERN_NAMES.get(pattern, 'UNKNOWN')})"


def entry_str(principal: str, host: str, op: int, perm: int) -> str:
    return (f"(principal={principal}, host={host}, operation={OPERATIONS.get(op, 'UNKNOWN')}, "
            f"permissionType={PERMISSION_NAMES.get(perm, 'UNKNOWN')})")


def block(title: str, entries: list[str]) -> str:
    """Kafka's AclCommand layout: `<title>: \\n \\t<acl>\\n\\t<acl> \\n`."""
    return f"{title}: \n " + "\n".join("\t" + e for e in entries) + " \n"


# --------------------------------------------------------------------------- wire calls

def create_acls(admin, bindings: list[AclBinding]) -> None:
    C = CreateAclsRequest.AclCreation
    resp = admin.request(CreateAclsRequest(creations=[
        C(resource_type=b.resource_type, resource_name=b.resource_name,
          resource_pattern_type=b.pattern_type, principal=b.principal, host=b.host,
          operation=b.operation, permission_type=b.permission) for b in bindings]))
    errors = [(b, r) for b, r in zip(bindings, resp.results) if r.error_code]
    if errors:
        b, r = errors[0]
        raise ToolError(f"cannot create ACL {entry_str(b.principal, b.host, b.operation, b.permission)} "
                        f"on {pattern_str(b.resource_type, b.resource_name, b.pattern_type)}: "
                        f"{error_name(r.error_code)}" + (f": {r.error_message}" if r.error_message else ""))


def describe_acls(admin, f: AclFilter) -> dict[tuple[int, str, int], list[tuple]]:
    """(resource type, name, pattern) -> [(principal, host, operation, permission)]."""
    resp = admin.request(DescribeAclsRequest(
        resource_type_filter=f.resource_type, resource_name_filter=f.resource_name,
        pattern_type_filter=f.pattern_type, principal_filter=f.principal,
        host_filter=f.host, operation=f.operation, permission_type=f.permission))
    if resp.error_code:
        raise ToolError(f"cannot describe ACLs: {error_name(resp.error_code)}"
                        + (f": {resp.error_message}" if resp.error_message else ""))
    out: dict[tuple[int, str, int], list[tuple]] = {}
    for r in resp.resources:
        out.setdefault((r.resource_type, r.resource_name, r.pattern_type), []).extend(
            (a.principal, a.host, a.operation, a.permission_type) for a in r.acls)
    return out


def delete_acls(admin, filters: list[AclFilter]) -> int:
    """Delete what the filters match; the number of ACLs deleted."""
    F = DeleteAclsRequest.DeleteAclsFilter
    resp = admin.request(DeleteAclsRequest(filters=[
        F(resource_type_filter=f.resource_type, resource_name_filter=f.resource_name,
          pattern_type_filter=f.pattern_type, principal_filter=f.principal,
          host_filter=f.host, operation=f.operation, permission_type=f.permission)
        for f in filters]))
    n = 0
    for r in resp.filter_results:
        if r.error_code:
            raise ToolError(f"cannot delete ACLs: {error_name(r.error_code)}"
                            + (f": {r.error_message}" if r.error_message else ""))
        n += len(r.matching_acls)
    return n


# --------------------------------------------------------------------------- SCRAM users

SCRAM_MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
MECHANISM_NAMES = {code: name for name, (code, _) in SCRAM_MECHANISMS.items()}
DEFAULT_ITERATIONS = 4096      # Kafka's ScramMechanism minIterations and the tool's default


@dataclass(frozen=True)
class ScramUpsert:
    mechanism: str
    iterations: int
    password: str


def parse_scram_config(configs: dict[str, str]) -> list[ScramUpsert]:
    """--add-config's SCRAM entries (`SCRAM-SHA-256=[iterations=8192,password=pw]`, the
    brackets already removed by the config parser) as Kafka's ConfigCommand reads them:
    password required, iterations optional (4096). Any other key is refused: kafkette
    has no client quotas."""
    out = []
    for key, value in configs.items():
        mech = key.strip().upper()
        if mech not in SCRAM_MECHANISMS:
            raise ToolError(f"user config {key} is not supported by kafkette (only "
                            f"SCRAM-SHA-256 and SCRAM-SHA-512 credentials: kafkette has no "
                            f"client quotas)")
        opts = {}
        for part in value.split(","):
            k, sep, v = part.partition("=")
            if not sep:
                raise ToolError(f"Invalid {mech} config '{value}': expected "
                                f"[iterations=N,]password=P")
            opts[k.strip()] = v
        unknown = set(opts) - {"iterations", "password"}
        if unknown:
            raise ToolError(f"Invalid {mech} config: unknown {', '.join(sorted(unknown))} "
                            f"(expected iterations, password)")
        if "password" not in opts:
            raise ToolError(f"Invalid {mech} config: password is required")
        try:
            iterations = int(opts.get("iterations", DEFAULT_ITERATIONS))
        except ValueError:
            raise ToolError(f"Invalid {mech} iterations {opts['iterations']!r}") from None
        out.append(ScramUpsert(mech, iterations, opts["password"]))
    return out


def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    """RFC 5802 Hi(Normalize(password), salt, i): PBKDF2-HMAC with the mechanism's hash
    (Kafka's ScramFormatter.saltedPassword, which does not SASLprep either)."""
    return hashlib.pbkdf2_hmac(SCRAM_MECHANISMS[mechanism][1], password.encode("utf-8"),
                               salt, iterations)


def alter_scram(admin, user: str, upserts: list[ScramUpsert], deletions: list[str]) -> None:
    R = AlterUserScramCredentialsRequest
    ups = []
    for u in upserts:
        salt = secrets.token_bytes(32)
        ups.append(R.ScramCredentialUpsertion(
            name=user, mechanism=SCRAM_MECHANISMS[u.mechanism][0], iterations=u.iterations,
            salt=salt, salted_password=salted_password(u.mechanism, u.password, salt,
                                                       u.iterations)))
    dels = []
    for d in deletions:
        mech = d.strip().upper()
        if mech not in SCRAM_MECHANISMS:
            raise ToolError(f"user config {d} is not supported by kafkette (only "
                            f"SCRAM-SHA-256 and SCRAM-SHA-512 credentials)")
        dels.append(R.ScramCredentialDeletion(name=user, mechanism=SCRAM_MECHANISMS[mech][0]))
    # One request per alteration: Kafka's controller (ScramControlManager) refuses a
    # user named twice in one request with DUPLICATE_RESOURCE, which
    # `SCRAM-SHA-256=[..],SCRAM-SHA-512=[..]` would be. Not atomic across mechanisms.
    results = []
    for req in ([R(deletions=[d], upsertions=[]) for d in dels]
                + [R(deletions=[], upsertions=[u]) for u in ups]):
        results += admin.request(req).results
    for r in results:
        if r.error_code:
            raise ToolError(f"cannot alter SCRAM credentials of {r.user}: "
                            f"{error_name(r.error_code)}"
                            + (f": {r.error_message}" if r.error_message else ""))


def describe_scram(admin, users: list[str] | None) -> dict[str, list[tuple[str, int]]]:
    """user -> [(mechanism, iterations)]; users None: every user with credentials. A
    named user without credentials is left out (RESOURCE_NOT_FOUND)."""
    R = DescribeUserScramCredentialsRequest
    resp = admin.request(R(users=None if users is None else [R.UserName(name=u) for u in users]))
    if resp.error_code:
        raise ToolError(f"cannot describe SCRAM credentials: {error_name(resp.error_code)}"
                        + (f": {resp.error_message}" if resp.error_message else ""))
    out = {}
    for r in resp.results:
        if r.error_code == 0:
            out[r.user] = [(MECHANISM_NAMES.get(c.mechanism, f"mechanism {c.mechanism}"),
                            c.iterations) for c in r.credential_infos]
        elif error_name(r.error_code) != "RESOURCE_NOT_FOUND":
            raise ToolError(f"cannot describe SCRAM credentials of {r.user}: "
                            f"{error_name(r.error_code)}"
                            + (f": {r.error_message}" if r.error_message else ""))
    return out
