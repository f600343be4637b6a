"""How this node secures its own connections to other nodes: the client side of the
inter-broker listener (replica fetchers, transaction markers and verification) and
of the controller listener (broker registration and heartbeats, AlterPartition,
forwarded admin requests, and the Raft traffic between voters).

Kafka's settings, read as a Kafka broker reads them for its inter-broker client:
- the listener: `inter.broker.listener.name` (or the listener named by
  `security.inter.broker.protocol`), and the first of `controller.listener.names`;
  its protocol from `listener.security.protocol.map`;
- TLS: the listener's trust store verifies the peer (none set: the system's CAs, as
  Java uses the JRE's cacerts), and the listener's own key store is presented, so a
  peer listener with `ssl.client.auth=required` accepts the node and maps its
  certificate subject to its principal; `ssl.endpoint.identification.algorithm`
  (https by default) checks the peer's host name;
- SASL: `sasl.mechanism.inter.broker.protocol` (`sasl.mechanism.controller.protocol`
  for the controller listener) with the `username` / `password` options of
  `listener.name.<listener>.<mechanism>.sasl.jaas.config` (the same JAAS entry whose
  `user_<name>` options list PLAIN's users on the server side).

The principal of these connections is the listener's: User:<username> over SASL,
User:<certificate subject> over mutual TLS. With an authorizer it must be a super
user (or hold CLUSTER_ACTION on the cluster), as in Kafka.
"""
from __future__ import annotations

from kafkette.client_security import ClientSecurity, SecurityConfigError, ssl_context_from_properties
from kafkette.config import SASL_PROTOCOLS, TLS_PROTOCOLS, BrokerConfig, ConfigError

#: The listener settings the client side of a TLS connection uses.
_TLS_CLIENT_KEYS = ("ssl.truststore.location", "ssl.truststore.type",
                    "ssl.truststore.certificates", "ssl.keystore.location",
                    "ssl.keystore.type", "ssl.keystore.password",
                    "ssl.keystore.certificate.chain", "ssl.keystore.key", "ssl.key.password",
                    "ssl.endpoint.identification.algorithm")


def listener_client_security(config: BrokerConfig, listener: str | None,
                             sasl: tuple[str, str, str] | None = None) -> ClientSecurity | None:
    """The ClientSecurity of a connection to `listener` of another node; None for
    PLAINTEXT. `sasl`: (mechanism, username, password) for a SASL listener.
    ConfigError when a store cannot be loaded."""
    if listener is None:
        return None
    proto = config.security_protocol(listener)
    if proto == "PLAINTEXT":
        return None
    ctx = None
    if proto in TLS_PROTOCOLS:
        props = {}
        for k in _TLS_CLIENT_KEYS:
            v = config.listener_value(listener, k)
            if v is not None:
                props[k] = v
        if "ssl.truststore.location" not in props and "ssl.truststore.certificates" not in props:
            props.pop("ssl.truststore.type", None)   # the broker's JKS default: no store set
        try:
            ctx = ssl_context_from_properties(props)
        except SecurityConfigError as e:
            raise ConfigError(f"listener {listener} (connections to other nodes): {e}",
                              key=f"listener.name.{listener.lower()}.ssl.truststore.location"
                              ) from None
    mech = user = password = None
    if proto in SASL_PROTOCOLS:
        if sasl is None:
            raise ConfigError(f"listener {listener} ({proto}) carries node-to-node traffic "
                              f"without SASL credentials", key="listeners")
        mech, user, password = sasl
    return ClientSecurity(proto, ctx, mech, user, password)


def inter_broker_security(config: BrokerConfig) -> ClientSecurity | None:
    listener = config.inter_broker_listener_name
    sasl = (config.inter_broker_sasl(listener)
            if config.security_protocol(listener) in SASL_PROTOCOLS else None)
    return listener_client_security(config, listener, sasl)


def controller_security(config: BrokerConfig) -> ClientSecurity | None:
    listener = config.controller_listener_name
    sasl = (config.controller_sasl(listener) if listener is not None and
            config.security_protocol(listener) in SASL_PROTOCOLS else None)
    return listener_client_security(config, listener, sasl)
