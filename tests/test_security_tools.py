"""Parsing of the security tools (kafka-acls.sh options to ACL bindings and filters,
kafka-configs.sh's SCRAM add-config, the client security keys of --command-config)."""
from __future__ import annotations

import hashlib
import ssl

import pytest

from kafkette.client_security import ClientSecurity, SaslClient, SecurityConfigError
from kafkette.controller.acls import (
    ALL, ALLOW, CLUSTER, CREATE, DENY, DESCRIBE, GROUP, IDEMPOTENT_WRITE, LITERAL, PREFIXED,
    READ, RT_ANY, TOPIC, TRANSACTIONAL_ID, WRITE, AclBinding, AclFilter,
)
from kafkette.tools import kafka_acls
from kafkette.tools import security as sec
from kafkette.tools.client import ToolError
from kafkette.tools.common import UsageError, check_client_config
from kafkette.tools.kafka_configs import parse_add_config


def opts(*argv):
    return kafka_acls.options(kafka_acls.build_parser().parse(list(argv)))


def test_add_defaults_to_all_operations_and_any_host():
    got = sec.bindings_to_add(opts("--add", "--allow-principal", "User:alice", "--topic", "t"))
    assert got == [AclBinding(TOPIC, "t", LITERAL, "User:alice", "*", ALL, ALLOW)]


def test_add_crosses_principals_hosts_operations_and_resources():
    got = sec.bindings_to_add(opts(
        "--add", "--allow-principal", "User:a", "--allow-principal", "User:b",
        "--allow-host", "10.0.0.1", "--deny-principal", "User:c", "--operation", "Read",
        "--operation", "describe_configs", "--topic", "t", "--group", "g",
        "--resource-pattern-type", "PREFIXED"))
    assert len(got) == (2 * 1 + 1) * 2 * 2
    assert AclBinding(GROUP, "g", PREFIXED, "User:b", "10.0.0.1", READ, ALLOW) in got
    assert AclBinding(TOPIC, "t", PREFIXED, "User:c", "*", 10, DENY) in got
    assert all(b.principal != "User:c" or b.host == "*" for b in got)


def test_producer_and_consumer_expand_as_kafkas_acl_command():
    got = sec.bindings_to_add(opts("--add", "--allow-principal", "User:p", "--producer",
                                   "--topic", "t", "--transactional-id", "tx", "--idempotent"))
    assert {(b.resource_type, b.resource_name, b.operation) for b in got} == {
        (TOPIC, "t", WRITE), (TOPIC, "t", DESCRIBE), (TOPIC, "t", CREATE),
        (TRANSACTIONAL_ID, "tx", WRITE), (TRANSACTIONAL_ID, "tx", DESCRIBE),
        (CLUSTER, "kafka-cluster", IDEMPOTENT_WRITE)}
    got = sec.bindings_to_add(opts("--add", "--allow-principal", "User:c", "--consumer",
                                   "--topic", "t", "--group", "g"))
    assert {(b.resource_type, b.operation) for b in got} == {
        (TOPIC, READ), (TOPIC, DESCRIBE), (GROUP, READ)}
    with pytest.raises(sec.AclUsageError, match="--group"):
        sec.bindings_to_add(opts("--add", "--allow-principal", "User:c", "--consumer",
                                 "--topic", "t"))


@pytest.mark.parametrize("argv,why", [
    (("--add", "--topic", "t"), "--allow-principal"),
    (("--add", "--allow-principal", "alice", "--topic", "t"), "principalType:principalName"),
    (("--add", "--allow-principal", "User:a"), "at least one resource"),
    (("--add", "--allow-principal", "User:a", "--topic", "t", "--resource-pattern-type",
      "match"), "not valid when adding"),
    (("--add", "--allow-principal", "User:a", "--topic", "t", "--operation", "Fly"),
     "Invalid operation Fly"),
    (("--add", "--allow-host", "h", "--deny-principal", "User:a", "--topic", "t"),
     "--allow-host needs --allow-principal"),
])
def test_bad_add_commands_are_refused(argv, why):
    with pytest.raises(sec.AclUsageError, match=why):
        sec.bindings_to_add(opts(*argv))


def test_remove_and_list_filters():
    assert sec.filters_to_remove(opts("--remove", "--topic", "t")) == [
        AclFilter(TOPIC, "t", LITERAL)]
    assert sec.filters_to_remove(opts("--remove", "--topic", "t", "--allow-principal",
                                      "User:a", "--operation", "Write")) == [
        AclFilter(TOPIC, "t", LITERAL, "User:a", "*", WRITE, ALLOW)]
    assert sec.filters_to_list(opts("--list")) == [AclFilter(RT_ANY, None, 1, None)]
    assert sec.filters_to_list(opts("--list", "--group", "g", "--resource-pattern-type",
                                    "match", "--principal", "User:x")) == [
        AclFilter(GROUP, "g", 2, "User:x")]


def test_output_is_kafkas_tostring():
    assert sec.pattern_str(TOPIC, "t", LITERAL) == \
        "ResourcePattern(resourceType=TOPIC, name=t, patternType=LITERAL)"
    assert sec.entry_str("User:a", "*", IDEMPOTENT_WRITE, DENY) == \
        "(principal=User:a, host=*, operation=IDEMPOTENT_WRITE, permissionType=DENY)"


def test_scram_add_config():
    configs = parse_add_config("SCRAM-SHA-256=[iterations=8192,password=alice-secret],"
                               "SCRAM-SHA-512=[password=p,w=x]")
    with pytest.raises(ToolError, match="unknown w"):
        sec.parse_scram_config(configs)
    configs = parse_add_config("SCRAM-SHA-256=[iterations=8192,password=alice-secret],"
                               "SCRAM-SHA-512=[password=other]")
    assert sec.parse_scram_config(configs) == [
        sec.ScramUpsert("SCRAM-SHA-256", 8192, "alice-secret"),
        sec.ScramUpsert("SCRAM-SHA-512", 4096, "other")]
    with pytest.raises(ToolError, match="quotas"):
        sec.parse_scram_config({"producer_byte_rate": "1024"})
    with pytest.raises(ToolError, match="password is required"):
        sec.parse_scram_config({"SCRAM-SHA-512": "iterations=5000"})


def test_salted_password_is_rfc5802_hi():
    # RFC 7677's SCRAM-SHA-256 example: password "pencil", this salt, 4096 iterations
    salt = bytes.fromhex("5b6d99688d7ecf9a1c2b9eb6a4f0cfb8")
    assert sec.salted_password("SCRAM-SHA-256", "pencil", salt, 4096) == \
        hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    assert len(sec.salted_password("SCRAM-SHA-512", "pencil", salt, 4096)) == 64


JAAS = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
        'username="alice" password="s3\\"cret";')


def test_command_config_security_keys(tmp_path):
    sec_ = ClientSecurity.from_properties({"security.protocol": "SASL_PLAINTEXT",
                                           "sasl.mechanism": "SCRAM-SHA-512",
                                           "sasl.jaas.config": JAAS})
    assert (sec_.protocol, sec_.sasl_mechanism, sec_.username, sec_.password) == \
        ("SASL_PLAINTEXT", "SCRAM-SHA-512", "alice", 's3"cret')
    assert "s3" not in repr(sec_)
    plain = ClientSecurity.from_properties({"security.protocol": "sasl_ssl",
                                            "sasl.mechanism": "PLAIN", "sasl.username": "u",
                                            "sasl.password": "p",
                                            "ssl.endpoint.identification.algorithm": ""})
    assert plain.uses_tls and plain.ssl_context.check_hostname is False
    assert plain.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert ClientSecurity.from_properties({}) is None
    # as Kafka's clients: sasl.* / ssl.* on PLAINTEXT do nothing (the tools log them)
    assert ClientSecurity.from_properties({"sasl.mechanism": "PLAIN"}) is None
    for props, why in [
        ({"security.protocol": "SASL_SSL", "sasl.mechanism": "GSSAPI"}, "GSSAPI"),
        ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
          "sasl.jaas.config": JAAS}, "needs org.apache.kafka.common.security.plain"),
        ({"security.protocol": "SSL", "ssl.truststore.location": "/x.jks"}, "JKS"),
        ({"security.protocol": "SSL", "ssl.truststore.type": "PEM",
          "ssl.truststore.location": str(tmp_path / "missing.pem")}, "trust store"),
        ({"security.protocol": "SSL", "ssl.keystore.location": "/k.jks"}, "JKS"),
    ]:
        with pytest.raises(SecurityConfigError, match=why):
            ClientSecurity.from_properties(props)
    with pytest.raises(ToolError, match="sasl.kerberos.service.name"):
        check_client_config({"sasl.kerberos.service.name": "kafka"}, set(), "f")
    with pytest.raises(ToolError, match=r"GSSAPI.*\(from admin.properties\)"):
        check_client_config({"security.protocol": "SASL_SSL"}, set(), "admin.properties")


def test_sasl_client_plain_and_scram_against_scramp_server():
    plain = SaslClient("PLAIN", "alice", "pw")
    assert plain.first() == b"\x00alice\x00pw" and plain.step(b"") is None and plain.complete
    from scramp import ScramMechanism
    m = ScramMechanism("SCRAM-SHA-512")
    salt, stored, server_key, it = m.make_auth_info("pw", iteration_count=4096)
    server = m.make_server(lambda user: (salt, stored, server_key, it))
    c = SaslClient("SCRAM-SHA-512", "alice", "pw")
    server.set_client_first(c.first().decode())
    final = c.step(server.get_server_first().encode())
    server.set_client_final(final.decode())
    assert c.step(server.get_server_final().encode()) is None and c.complete
    bad = SaslClient("SCRAM-SHA-512", "alice", "pw")
    bad.first()
    from kafkette.client_security import SaslAuthenticationError
    with pytest.raises(SaslAuthenticationError):
        bad.step(b"r=not-our-nonce,s=AAAA,i=4096")


def test_short_acls_tool_needs_an_action(capsys):
    assert kafka_acls.short_main(["frobnicate"]) == 1
    assert "add,list,remove" in capsys.readouterr().err
    with pytest.raises(UsageError):
        kafka_acls.build_parser().parse(["--add", "--topicx", "t"])


def test_keystores_for_mutual_tls(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    client = ca.issue_cert("client-one")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    base = {"security.protocol": "SSL", "ssl.truststore.location": str(tmp_path / "ca.pem")}
    for extra in (
            {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(tmp_path / "client.pem")},
            {"ssl.keystore.certificate.chain": client.cert_chain_pems[0].bytes().decode(),
             "ssl.keystore.key": client.private_key_pem.bytes().decode()}):
        ctx = ClientSecurity.from_properties({**base, **extra}).ssl_context
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption, load_pem_private_key, pkcs12)
    from cryptography.x509 import load_pem_x509_certificate
    p12 = pkcs12.serialize_key_and_certificates(
        b"c", load_pem_private_key(client.private_key_pem.bytes(), None),
        load_pem_x509_certificate(client.cert_chain_pems[0].bytes()), None,
        BestAvailableEncryption(b"pw"))
    (tmp_path / "client.p12").write_bytes(p12)
    p12_props = {**base, "ssl.keystore.type": "PKCS12",
                 "ssl.keystore.location": str(tmp_path / "client.p12")}
    assert ClientSecurity.from_properties({**p12_props, "ssl.keystore.password": "pw"})
    with pytest.raises(SecurityConfigError, match="wrong ssl.keystore.password"):
        ClientSecurity.from_properties({**p12_props, "ssl.keystore.password": "nope"})
    # a PKCS12 trust store (certificates only), as the broker reads them too
    trust = pkcs12.serialize_key_and_certificates(
        None, None, None, [load_pem_x509_certificate(ca.cert_pem.bytes())],
        BestAvailableEncryption(b"tpw"))
    (tmp_path / "trust.p12").write_bytes(trust)
    ts = {"security.protocol": "SSL", "ssl.truststore.type": "PKCS12",
          "ssl.truststore.location": str(tmp_path / "trust.p12")}
    ctx = ClientSecurity.from_properties({**ts, "ssl.truststore.password": "tpw"}).ssl_context
    assert ctx.cert_store_stats()["x509_ca"] == \
        ssl.create_default_context().cert_store_stats()["x509_ca"] + 1
    with pytest.raises(SecurityConfigError, match="wrong ssl.truststore.password"):
        ClientSecurity.from_properties({**ts, "ssl.truststore.password": "x"})
