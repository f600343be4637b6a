"""kafkette console: a web UI served by the broker (`console.listener`).

An upper layer beside server/: it reads the broker's own state (metadata image, replica
manager, log manager, metrics) and talks Kafka to the cluster through kafkette's admin
client for the rest (see app.py). Nothing below it imports it (tests/test_layers.py).

On a broker with a SASL listener the console asks for a login: the user's name and
password are checked by the broker itself (a SASL exchange on its SASL_PLAINTEXT
listener, so PLAIN's JAAS users and the SCRAM credentials of the metadata image both
work), and every page the user sees is read with that user's principal: over the wire
as that user, in-process through the authorizer (broker/authorization.py). See
`refusal()` for the layouts it cannot serve.
"""
from __future__ import annotations

from kafkette.config import SASL_PROTOCOLS


def refusal(config) -> str | None:
    """Why `console.listener` cannot be honoured on this broker, or None."""
    if not config["console.listener"]:
        return None
    _host, sep, port = config["console.listener"].rpartition(":")
    if not sep or not port.isdigit():
        return f"console.listener must be host:port, got {config['console.listener']!r}"
    protos = {lst.name: config.security_protocol(lst.name) for lst in config.listeners}
    if not config.is_broker:
        return "console.listener is set on a controller-only node: run it on a broker"
    if any(p in SASL_PROTOCOLS for p in protos.values()):
        if "SASL_PLAINTEXT" not in protos.values():
            return ("console.listener is set and the broker uses SASL, but no listener is "
                    "SASL_PLAINTEXT: the console logs its users in through a SASL_PLAINTEXT "
                    "listener of its broker (SASL_SSL is not supported yet)")
        return None
    if "PLAINTEXT" not in protos.values():
        return ("console.listener is set but no listener is PLAINTEXT: the console reads "
                "the cluster through a PLAINTEXT listener of its broker")
    return None
