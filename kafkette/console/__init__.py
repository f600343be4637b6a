"""kafkette console: a web UI served by the broker (`console.listener`).

An upper layer beside server/: it reads the broker's own state (metadata image, replica
manager, log manager, metrics) and talks Kafka to the cluster through kafkette's admin
client for the rest (see app.py). Nothing below it imports it (tests/test_layers.py).

Not yet: a login. A broker with a SASL listener refuses to start a console (it would
bypass the SASL users and ACLs); see `refusal()`.
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
    sasl = sorted(n for n, p in protos.items() if p in SASL_PROTOCOLS)
    if sasl:
        return (f"console.listener is set but listener(s) {', '.join(sasl)} use SASL: the "
                "console has no login yet and would show every user everything, so it is "
                "refused; unset console.listener")
    if config.is_broker and "PLAINTEXT" not in protos.values():
        return ("console.listener is set but no listener is PLAINTEXT: the console reads "
                "the cluster through a PLAINTEXT listener of its broker")
    if not config.is_broker:
        return "console.listener is set on a controller-only node: run it on a broker"
    return None
