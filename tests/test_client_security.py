"""kafkette's client over TLS and SASL (kafkette.client_security, used by the tools,
EmbeddedBroker and broker-to-broker links), against an in-process secured broker."""
from __future__ import annotations

import asyncio
import time

import pytest

from kafkette.client import KafkaClient, NetworkError, run_sync
from kafkette.client_security import ClientSecurity
from kafkette.errors import ErrorCode, KafkaError

pytest.importorskip("trustme")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def broker():
    from kafkette import EmbeddedBroker
    with EmbeddedBroker({"connections.max.reauth.ms": 1500}, in_process=True,
                        security="SASL_SSL", users={"alice": "alice-secret"}) as b:
        yield b


def _metadata(bootstrap, security):
    async def go():
        c = KafkaClient(bootstrap, security=security, connect_timeout=5, request_timeout=5)
        try:
            return (await c.metadata([])).brokers
        finally:
            await c.close()
    return run_sync(go(), timeout=30)


def test_scram_over_tls(broker):
    (b,) = _metadata(broker.bootstrap_servers, broker.client_security())
    assert b.port == broker.port


def test_wrong_password_is_an_authentication_error_not_a_network_one(broker):
    good = broker.client_security()
    bad = ClientSecurity(good.protocol, good.ssl_context, good.sasl_mechanism, "alice", "nope")
    with pytest.raises(KafkaError) as e:
        _metadata(broker.bootstrap_servers, bad)
    assert e.value.code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert not isinstance(e.value, NetworkError)


def test_a_mechanism_the_listener_does_not_offer(broker):
    good = broker.client_security()
    plain = ClientSecurity(good.protocol, good.ssl_context, "PLAIN", "alice", "alice-secret")
    with pytest.raises(KafkaError, match="SCRAM-SHA-512") as e:
        _metadata(broker.bootstrap_servers, plain)
    assert e.value.code == ErrorCode.UNSUPPORTED_SASL_MECHANISM


def test_plaintext_against_a_tls_port_and_an_untrusted_certificate(broker):
    import ssl
    with pytest.raises(NetworkError):
        _metadata(broker.bootstrap_servers, None)
    untrusting = ClientSecurity("SASL_SSL", ssl.create_default_context(), "SCRAM-SHA-512",
                                "alice", "alice-secret")
    with pytest.raises(NetworkError, match="certificate verify failed"):
        _metadata(broker.bootstrap_servers, untrusting)


def test_a_session_past_its_lifetime_is_replaced_by_a_new_connection(broker):
    """KIP-368: the broker gives the session 1.5 s; the channel opens a new,
    authenticated connection when 90% of that has passed, and requests keep working."""
    async def go():
        c = KafkaClient(broker.bootstrap_servers, security=broker.client_security())
        try:
            ch = await c.bootstrap_channel()
            first = await ch.connection()
            assert first.session_expires_at is not None
            deadline = time.monotonic() + 10
            while not first.reauthentication_due:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            await c.metadata([])
            second = await ch.connection()
            assert second is not first and first.is_closed
            assert second.session_expires_at > first.session_expires_at
        finally:
            await c.close()
    run_sync(go(), timeout=30)
