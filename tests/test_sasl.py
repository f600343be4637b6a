"""The SASL state machine (server/sasl.py), PLAIN, SCRAM (RFC 7677's vector) and the
JAAS / principal-mapping parsers (config.py), without sockets."""
import base64
import hashlib
import hmac

import pytest

from kafkette.config import (ConfigError, map_principal_name, parse_jaas_config,
                             parse_principal_mapping_rules, plain_users)
from kafkette.errors import ErrorCode
from kafkette.server.sasl import (AuthenticationFailed, PlainServer, Route, SaslSession,
                                  ScramServer)

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="admin-secret" user_admin="admin-secret" '
        'user_alice="alice-secret";')


def test_jaas_config_parsing():
    cls, flag, opts = parse_jaas_config(JAAS)
    assert cls.endswith("PlainLoginModule") and flag == "required"
    assert opts["username"] == "admin"
    assert plain_users(JAAS, "k") == {"admin": "admin-secret", "alice": "alice-secret"}
    with pytest.raises(ConfigError, match="end with ';'"):
        parse_jaas_config(JAAS[:-1])
    with pytest.raises(ConfigError):
        parse_jaas_config("PlainLoginModule user_a=b;")


def test_plain():
    s = PlainServer({"alice": "alice-secret"})
    assert s.step(b"\x00alice\x00alice-secret") == b"" and s.complete and s.username == "alice"
    for token, msg in [(b"\x00alice\x00bad", "Invalid username or password"),
                       (b"\x00nobody\x00x", "Invalid username or password"),
                       (b"alice\x00alice", "expected 3 tokens, got 2"),
                       (b"\x00\x00x", "username not specified"),
                       (b"bob\x00alice\x00alice-secret", "authorization id")]:
        with pytest.raises(AuthenticationFailed, match=msg):
            PlainServer({"alice": "alice-secret"}).step(token)


def _rfc7677_credentials():
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return (salt, hashlib.sha256(client_key).digest(),
            hmac.new(salted, b"Server Key", "sha256").digest(), 4096)


def test_scram_sha_256_rfc7677_vector():
    creds = _rfc7677_credentials()
    s = ScramServer("SCRAM-SHA-256", lambda u: creds if u == "user" else None,
                    s_nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    assert s.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO") == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert s.step(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                  b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=") == \
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert s.complete and s.username == "user"


def test_scram_wrong_proof_and_unknown_user_look_the_same():
    creds = _rfc7677_credentials()
    s = ScramServer("SCRAM-SHA-256", lambda u: creds if u == "user" else None,
                    s_nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    s.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    with pytest.raises(AuthenticationFailed, match="invalid credentials with SASL mechanism "
                                                   "SCRAM-SHA-256"):
        s.step(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
               b"p=AAAAZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    with pytest.raises(AuthenticationFailed, match="invalid credentials"):
        ScramServer("SCRAM-SHA-256", lambda u: None).step(b"n,,n=nobody,r=abc")


def _session(reauth_ms=0):
    return SaslSession(["PLAIN"], lambda m: PlainServer({"alice": "pw"}), reauth_ms)


def test_state_machine_happy_path_and_principal():
    s = _session()
    assert s.route(18, 0) is Route.DISPATCH          # ApiVersions once
    assert s.route(17, 0) is Route.EXCHANGE
    assert s.handshake("PLAIN", 1) == (ErrorCode.NONE, ["PLAIN"])
    assert s.route(36, 0) is Route.EXCHANGE
    code, msg, token, lifetime = s.authenticate(b"\x00alice\x00pw", 1, 0)
    assert (code, msg, token, lifetime) == (0, None, b"", 0)
    assert s.authenticated and s.principal == "User:alice"
    assert s.route(3, 10) is Route.DISPATCH


def test_requests_before_authentication_close():
    s = _session()
    assert s.route(3, 0) is Route.CLOSE and s.failed
    s = _session()
    s.route(18, 0)
    assert s.route(18, 0) is Route.CLOSE             # a second ApiVersions: Kafka closes too
    s = _session()
    s.handshake("PLAIN", 1)
    assert s.route(0, 0) is Route.CLOSE              # Produce during authentication


def test_unsupported_mechanism_and_bad_password():
    s = _session()
    assert s.handshake("SCRAM-SHA-512", 1) == (ErrorCode.UNSUPPORTED_SASL_MECHANISM, ["PLAIN"])
    assert s.failed
    s = _session()
    s.handshake("PLAIN", 1)
    code, msg, _, _ = s.authenticate(b"\x00alice\x00nope", 1, 0)
    assert code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert msg == "Authentication failed: Invalid username or password" and s.failed


def test_handshake_v0_takes_raw_tokens():
    s = _session()
    s.handshake("PLAIN", 0)
    assert s.route(0, 0) is Route.RAW_TOKEN
    assert s.authenticate_raw(b"\x00alice\x00pw", 0) == b"" and s.authenticated


def test_reauthentication_kip368():
    s = _session(reauth_ms=1000)
    s.handshake("PLAIN", 1)
    assert s.authenticate(b"\x00alice\x00pw", 1, 5000)[3] == 1000   # session_lifetime_ms
    assert s.route(3, 5500) is Route.DISPATCH
    assert s.route(17, 5900) is Route.EXCHANGE                      # re-authentication
    assert s.handshake("PLAIN", 1)[0] == 0
    assert s.authenticate(b"\x00alice\x00pw", 1, 5950)[0] == 0
    assert s.route(3, 6900) is Route.DISPATCH                       # new lifetime
    assert s.route(3, 7000) is Route.CLOSE                          # expired
    # v0 clients cannot re-authenticate; their sessions still expire
    s = _session(reauth_ms=1000)
    s.handshake("PLAIN", 1)
    s.authenticate(b"\x00alice\x00pw", 0, 0)
    assert s.route(17, 10) is Route.DISPATCH                        # ILLEGAL_SASL_STATE
    assert s.route(3, 2000) is Route.CLOSE


def test_principal_mapping_rules():
    rules = parse_principal_mapping_rules(
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT")
    assert map_principal_name(rules, "CN=Alice,OU=ServiceUsers,O=x") == "alice"
    assert map_principal_name(rules, "CN=b,O=x") == "CN=b,O=x"
    only = parse_principal_mapping_rules("RULE:^CN=(.*)$/$1/U")
    assert map_principal_name(only, "O=x") is None
    with pytest.raises(ConfigError):
        parse_principal_mapping_rules("RULE:broken")
