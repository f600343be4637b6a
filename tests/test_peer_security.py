"""The client side of node-to-node connections (broker/peer_security.py) and the
endpoints a broker registers (controller/metadata_image.py's BrokerImage.address)."""
from __future__ import annotations

import ssl

import pytest
import trustme

from kafkette.broker.peer_security import (controller_security, inter_broker_security,
                                           listener_client_security)
from kafkette.config import BrokerConfig, ConfigError
from kafkette.controller.metadata_image import MetadataImage, apply_records, image_to_records
from kafkette.server.tls import PrincipalMapper, server_context

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="broker" password="broker-secret" user_broker="broker-secret";')


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("peer-pki")
    ca = trustme.CA()
    node = ca.issue_cert("localhost", "127.0.0.1", common_name="broker-1",
                         organization_name="kafkette", organization_unit_name="nodes")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    node.private_key_and_cert_chain_pem.write_to_path(str(d / "node.pem"))
    other = trustme.CA()   # a CA the nodes do not trust
    other.cert_pem.write_to_path(str(d / "other-ca.pem"))
    return d


def _config(pki, **kw) -> BrokerConfig:
    return BrokerConfig({
        "node.id": "1", "controller.quorum.voters": "1@127.0.0.1:19093",
        "listeners": "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0,CONTROLLER://127.0.0.1:19093",
        "controller.listener.names": "CONTROLLER", "inter.broker.listener.name": "INTERNAL",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL,CONTROLLER:SSL",
        "ssl.keystore.type": "PEM", "ssl.keystore.location": str(pki / "node.pem"),
        "ssl.truststore.type": "PEM", "ssl.truststore.location": str(pki / "ca.pem"),
        "listener.name.controller.ssl.client.auth": "required",
        "listener.name.internal.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.internal.plain.sasl.jaas.config": JAAS,
        "sasl.mechanism.inter.broker.protocol": "PLAIN", **kw})


def _handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, hostname: str):
    """A TLS handshake between two contexts over memory BIOs: the server's SSLObject."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {client: False, server: False}
    for _ in range(20):
        for obj in (client, server):
            if not done[obj]:
                try:
                    obj.do_handshake()
                    done[obj] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3: the server checks the client certificate on its last read.
            return server
    raise AssertionError("handshake did not finish")


def test_inter_broker_connections_are_sasl_ssl_with_the_jaas_credentials(pki):
    sec = inter_broker_security(_config(pki))
    assert (sec.protocol, sec.sasl_mechanism, sec.username, sec.password) == (
        "SASL_SSL", "PLAIN", "broker", "broker-secret")
    assert sec.ssl_context.verify_mode == ssl.CERT_REQUIRED and sec.ssl_context.check_hostname


def test_controller_connections_present_the_node_certificate(pki):
    cfg = _config(pki)
    sec = controller_security(cfg)
    assert sec.protocol == "SSL" and sec.sasl_mechanism is None
    server = _handshake(sec.ssl_context, server_context(cfg, "CONTROLLER"), "127.0.0.1")
    # mutual TLS: the controller listener sees the node's certificate subject
    assert PrincipalMapper(cfg, "CONTROLLER").principal(server) == "User:CN=broker-1,OU=nodes,O=kafkette"


def test_a_peer_certificate_from_another_ca_is_refused(pki):
    cfg = _config(pki, **{"listener.name.controller.ssl.truststore.location":
                          str(pki / "other-ca.pem")})
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(controller_security(cfg).ssl_context, server_context(_config(pki),
                                                                        "CONTROLLER"),
                   "127.0.0.1")


def test_host_name_check_follows_endpoint_identification(pki):
    cfg = _config(pki)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(controller_security(cfg).ssl_context, server_context(cfg, "CONTROLLER"),
                   "not-the-node.example")
    off = _config(pki, **{"listener.name.controller.ssl.endpoint.identification.algorithm": ""})
    assert not controller_security(off).ssl_context.check_hostname


def test_plaintext_listeners_need_no_client_security(pki):
    cfg = _config(pki, **{"listener.security.protocol.map":
                          "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"})
    assert inter_broker_security(cfg) is None and controller_security(cfg) is None
    assert listener_client_security(cfg, None) is None


def test_an_unreadable_trust_store_is_a_config_error(pki):
    cfg = _config(pki, **{"ssl.truststore.location": str(pki / "missing.pem")})
    with pytest.raises(ConfigError, match="trust store"):
        controller_security(cfg)


def test_registered_endpoints_survive_a_snapshot_and_answer_by_listener():
    rec = {"type": "RegisterBrokerRecord", "broker_id": 2, "host": "h", "port": 1,
           "rack": None, "fenced": False,
           "endpoints": [["PLAINTEXT", "h", 1], ["INTERNAL", "h", 2]]}
    image = apply_records(MetadataImage(cluster_id="c", controller_id=1), [rec], 7)
    again = apply_records(MetadataImage(cluster_id="c", controller_id=1), image_to_records(image), 8)
    for img in (image, again):
        b = img.brokers[2]
        assert b.address("INTERNAL") == ("h", 2)
        assert b.address("PLAINTEXT") == ("h", 1)
        # a listener it did not register: its first one
        assert b.address("OTHER") == ("h", 1)
    old = dict(rec)
    del old["endpoints"]   # a record written before endpoints were kept
    assert apply_records(MetadataImage(cluster_id="c", controller_id=1), [old], 9).brokers[2].address("INTERNAL") == ("h", 1)
