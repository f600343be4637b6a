"""AlterUserScramCredentials (51) and DescribeUserScramCredentials (50), KIP-554: the
credential goes into the metadata image (and survives a restart), Kafka's per-user
errors, and a SCRAM-SHA-256 login (scramp as the client) against what was stored."""
from __future__ import annotations

import hashlib
import os

import pytest
import scramp

from handler_harness import acall, call, make_broker  # noqa: F401
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import (
    AlterUserScramCredentialsRequest,
    DescribeUserScramCredentialsRequest,
)
from kafkette.server.sasl import AuthenticationFailed, ScramServer

A = AlterUserScramCredentialsRequest
SHA256, SHA512 = 1, 2


def upsert(name, password, mechanism=SHA256, iterations=4096, salt=None):
    salt = salt or os.urandom(16)
    algo = {SHA256: "sha256", SHA512: "sha512"}[mechanism] if mechanism in (1, 2) else "sha256"
    salted = hashlib.pbkdf2_hmac(algo, password.encode(), salt, iterations)
    return A.ScramCredentialUpsertion(name=name, mechanism=mechanism, iterations=iterations,
                                      salt=salt, salted_password=salted)


async def alter(b, upsertions=(), deletions=()):
    r = await acall(b, A(upsertions=list(upsertions), deletions=list(deletions)), 0)
    return {x.user: x.error_code for x in r.results}


def describe(b, users=None):
    R = DescribeUserScramCredentialsRequest
    r = call(b, R(users=None if users is None else [R.UserName(name=u) for u in users]), 0)
    return r.error_code, {x.user: (x.error_code, [(i.mechanism, i.iterations)
                                                  for i in x.credential_infos])
                          for x in r.results}


def login(b, user, password, mechanism="SCRAM-SHA-256") -> bool:
    def lookup(u):
        c = b.image.scram_credentials.get((u, mechanism))
        return None if c is None else (c.salt, c.stored_key, c.server_key, c.iterations)
    server = ScramServer(mechanism, lookup)
    client = scramp.ScramClient([mechanism], user, password)
    try:
        first = server.step(client.get_client_first().encode())
        client.set_server_first(first.decode())
        final = server.step(client.get_client_final().encode())
        client.set_server_final(final.decode())
    except AuthenticationFailed:
        return False
    return server.complete and server.username == user


async def test_upsert_describe_login_delete_and_restart(make_broker):
    b = make_broker()
    assert await alter(b, [upsert("alice", "alice-secret"),
                           upsert("bob", "bob-secret", SHA512, 8192)]) == {"alice": 0, "bob": 0}
    assert describe(b) == (0, {"alice": (0, [(SHA256, 4096)]), "bob": (0, [(SHA512, 8192)])})
    assert login(b, "alice", "alice-secret")
    assert not login(b, "alice", "wrong")
    assert not login(b, "nobody", "x")
    make_broker.close(b)
    b2 = make_broker()
    assert login(b2, "alice", "alice-secret")
    D = A.ScramCredentialDeletion
    assert await alter(b2, deletions=[D(name="alice", mechanism=SHA256)]) == {"alice": 0}
    assert not login(b2, "alice", "alice-secret")
    assert describe(b2, ["alice", "bob"])[1] == {
        "alice": (ErrorCode.RESOURCE_NOT_FOUND, []), "bob": (0, [(SHA512, 8192)])}


async def test_kafkas_per_user_errors(make_broker):
    b = make_broker()
    D = A.ScramCredentialDeletion
    assert await alter(b, [upsert("a", "p", iterations=1000)]) == \
        {"a": ErrorCode.UNACCEPTABLE_CREDENTIAL}
    assert await alter(b, [upsert("m", "p", mechanism=0)]) == \
        {"m": ErrorCode.UNSUPPORTED_SASL_MECHANISM}
    assert await alter(b, deletions=[D(name="ghost", mechanism=SHA256)]) == \
        {"ghost": ErrorCode.RESOURCE_NOT_FOUND}
    # the same user twice: every alteration of that user fails, the others go through
    assert await alter(b, [upsert("d", "p"), upsert("ok", "p")],
                       [D(name="d", mechanism=SHA512)]) == \
        {"d": ErrorCode.DUPLICATE_RESOURCE, "ok": 0}
    assert describe(b)[1] == {"ok": (0, [(SHA256, 4096)])}
    assert describe(b, ["ok", "ok"])[1] == {"ok": (ErrorCode.DUPLICATE_RESOURCE, [])}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_stored_keys_are_rfc_5802s(make_broker, mechanism):
    """The controller derives what scramp derives from the password itself."""
    b = make_broker()
    salt = b"0123456789abcdef"
    m = SHA256 if mechanism == "SCRAM-SHA-256" else SHA512
    await alter(b, [upsert("u", "pw", m, 4096, salt)])
    c = b.image.scram_credentials[("u", mechanism)]
    expected = scramp.ScramMechanism(mechanism).make_auth_info("pw", iteration_count=4096,
                                                               salt=salt)
    assert (c.salt, c.stored_key, c.server_key, c.iterations) == tuple(expected)
