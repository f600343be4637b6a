"""TLS settings: the config checks (config.py) and loading key stores (server/tls.py)."""
import ssl

import pytest
import trustme

from kafkette.config import BrokerConfig, ConfigError
from kafkette.server.tls import PrincipalMapper, server_context, subject_dn


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return {"dir": d, "ca": ca, "server": server}


def _cfg(**kw):
    return BrokerConfig({"listeners": "SSL://127.0.0.1:0", **kw})


def test_tls_listener_needs_a_key_store():
    with pytest.raises(ConfigError, match="needs a key store"):
        _cfg()


def test_jks_is_refused_with_advice():
    with pytest.raises(ConfigError, match="JKS is not supported.*PEM or PKCS12"):
        _cfg(**{"ssl.keystore.location": "/x.jks"})


def test_inline_key_needs_pem_type(certs):
    with pytest.raises(ConfigError, match="set it to PEM"):
        _cfg(**{"ssl.keystore.certificate.chain": "x", "ssl.keystore.key": "y"})


def test_client_auth_needs_a_trust_store(certs):
    with pytest.raises(ConfigError, match="needs a trust store"):
        _cfg(**{"ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(certs["dir"] / "server.pem"),
                "ssl.client.auth": "required"})


def test_listener_prefixed_settings_win(certs):
    c = BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
                      "ssl.keystore.type": "PEM",
                      "ssl.keystore.location": str(certs["dir"] / "server.pem"),
                      "ssl.truststore.type": "PEM",
                      "ssl.truststore.location": str(certs["dir"] / "ca.pem"),
                      "listener.name.ssl.ssl.client.auth": "required",
                      "listener.name.ssl.ssl.enabled.protocols": "TLSv1.3"})
    assert c.listener_value("SSL", "ssl.client.auth") == "required"
    assert c["ssl.client.auth"] == "none"
    ctx = server_context(c, "SSL")
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3


def test_pem_inline_and_pkcs12(certs, tmp_path):
    from cryptography.hazmat.primitives.serialization import (BestAvailableEncryption,
                                                              load_pem_private_key, pkcs12)
    from cryptography import x509
    server = certs["server"]
    c = _cfg(**{"ssl.keystore.type": "PEM",
                "ssl.keystore.certificate.chain": server.cert_chain_pems[0].bytes().decode(),
                "ssl.keystore.key": server.private_key_pem.bytes().decode()})
    server_context(c, "SSL")
    key = load_pem_private_key(server.private_key_pem.bytes(), None)
    cert = x509.load_pem_x509_certificate(server.cert_chain_pems[0].bytes())
    p12 = tmp_path / "ks.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        b"ks", key, cert, None, BestAvailableEncryption(b"pw")))
    server_context(_cfg(**{"ssl.keystore.type": "PKCS12", "ssl.keystore.location": str(p12),
                           "ssl.keystore.password": "pw"}), "SSL")
    with pytest.raises(ConfigError, match="PKCS12"):
        server_context(_cfg(**{"ssl.keystore.type": "PKCS12",
                               "ssl.keystore.location": str(p12),
                               "ssl.keystore.password": "wrong"}), "SSL")


def test_missing_key_store_file_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot"):
        server_context(_cfg(**{"ssl.keystore.type": "PEM",
                               "ssl.keystore.location": "/nonexistent.pem"}), "SSL")


def test_passwords_are_sensitive_in_describe_configs():
    c = BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0", "ssl.key.password": "s3cret"})
    (e,) = c.describe(["ssl.key.password"])
    assert e.sensitive and e.value is None and e.type == "PASSWORD"


def test_subject_dn_is_rfc2253_most_specific_first(certs):
    cert = certs["ca"].issue_cert("c1", common_name="client-one", organization_name="kafkette",
                                  organization_unit_name="it")
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    der = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).public_bytes(
        Encoding.DER)
    assert subject_dn(der) == "CN=client-one,OU=it,O=kafkette"

    class _Obj:
        def getpeercert(self, binary_form=False):
            return der
    c = _cfg(**{"ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(certs["dir"] / "server.pem"),
                "ssl.principal.mapping.rules": "RULE:^CN=([^,]*),.*$/$1/U"})
    assert PrincipalMapper(c, "SSL").principal(_Obj()) == "User:CLIENT-ONE"
    assert PrincipalMapper(c, "SSL").principal(None) == "User:ANONYMOUS"


def test_a_cluster_may_secure_its_client_listeners_after_a_plaintext_one(certs):
    c = BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,"
                                   "CONTROLLER://127.0.0.1:0",
                      "node.id": "1", "controller.quorum.voters": "1@127.0.0.1:19093",
                      "controller.listener.names": "CONTROLLER",
                      "ssl.keystore.location": str(certs["dir"] / "server.pem"),
                      "ssl.keystore.type": "PEM"})
    assert c.security_protocol("SSL") == "SSL"


def test_pkcs12_trust_store_checks_client_certificates(certs, tmp_path):
    """ssl.truststore.type=PKCS12 (a keytool-style store of trusted CA certificates):
    a client certificate from that CA completes a mutual-TLS handshake, one from
    another CA is refused; a wrong store password is a ConfigError; JKS is refused."""
    import socket
    import threading
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
    ca = certs["ca"]
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    p12 = tmp_path / "trust.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        None, None, None, [ca_cert], BestAvailableEncryption(b"tpw")))
    base = {"ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(certs["dir"] / "server.pem"),
            "ssl.truststore.type": "PKCS12", "ssl.truststore.location": str(p12),
            "ssl.client.auth": "required"}
    ctx = server_context(_cfg(**base, **{"ssl.truststore.password": "tpw"}), "SSL")
    with pytest.raises(ConfigError, match="PKCS12 trust store"):
        server_context(_cfg(**base, **{"ssl.truststore.password": "nope"}), "SSL")
    with pytest.raises(ConfigError, match="JKS is not supported"):
        _cfg(**{**base, "ssl.truststore.type": "JKS"})

    def handshake(client_ca) -> bool:
        leaf = client_ca.issue_cert("client-x", common_name="client-x")
        cctx = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
        leaf.configure_cert(cctx)
        a, b = socket.socketpair()
        result = {}

        def serve():
            try:
                with ctx.wrap_socket(a, server_side=True) as s:
                    result["peer"] = s.getpeercert()
                    s.sendall(b"k")
            except (ssl.SSLError, OSError):
                result["peer"] = None
        t = threading.Thread(target=serve)
        t.start()
        try:
            with cctx.wrap_socket(b, server_hostname="localhost") as c:
                c.recv(1)   # TLS 1.3: the server's verdict on our certificate arrives here
        except (ssl.SSLError, OSError):
            pass
        t.join(10)
        return bool(result.get("peer"))
    assert handshake(ca)
    assert not handshake(trustme.CA())
