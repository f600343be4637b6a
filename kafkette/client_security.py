"""Client-side security of kafkette's one Kafka client (kafkette.client): TLS and SASL.

`ClientSecurity` says how a connection is secured: Kafka's security.protocol
(PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), the ssl.SSLContext for SSL / SASL_SSL, and
the SASL mechanism and credentials. kafkette.client's connections take one
(`KafkaClient(..., security=...)`): TLS wraps the socket (ssl.SSLContext passed to
asyncio's create_connection), and the SASL exchange runs right after ApiVersions
(SaslHandshake v1, then SaslAuthenticate tokens, KIP-152), as Kafka's
SaslClientAuthenticator does. The tools, EmbeddedBroker and the broker-to-broker
connections all make theirs here.

`ClientSecurity.from_properties()` reads a Java client config (the tools'
--command-config): security.protocol, sasl.mechanism, sasl.jaas.config (PlainLoginModule
or ScramLoginModule with username= / password=), sasl.username / sasl.password
(librdkafka's spelling, accepted for convenience), ssl.truststore.location /
.certificates (PEM only: Python's ssl module reads no JKS, and a JKS or PKCS12 trust
store is refused with a message saying so), ssl.keystore.* for mutual TLS (PEM file,
inline PEM, or PKCS12 read with `cryptography`), ssl.key.password and
ssl.endpoint.identification.algorithm ("https", Kafka's default, checks the host name;
empty turns that off). Unknown ssl.* / sasl.* keys are refused by the caller's checks,
never ignored.

`SaslClient` is the sans-IO half of the exchange: PLAIN (RFC 4616) and SCRAM-SHA-256 /
SCRAM-SHA-512 (RFC 5802/7677, through scramp's ScramClient).

Layering: imports only errors and config (leaves); kafkette.client imports this.
"""
from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass

from kafkette.config import ConfigError, parse_jaas_config

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PLAIN_LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"

#: The client config keys from_properties() understands (the tools allow these).
SECURITY_KEYS = frozenset({
    "security.protocol", "sasl.mechanism", "sasl.jaas.config", "sasl.username",
    "sasl.password", "ssl.truststore.location", "ssl.truststore.type",
    "ssl.truststore.certificates", "ssl.truststore.password", "ssl.keystore.location",
    "ssl.keystore.type", "ssl.keystore.password", "ssl.keystore.certificate.chain",
    "ssl.keystore.key", "ssl.key.password", "ssl.endpoint.identification.algorithm",
})


class SecurityConfigError(ValueError):
    """A client security setting that cannot be honoured; the message names the key."""


@dataclass(frozen=True)
class ClientSecurity:
    """How a client connection is secured. `ssl_context` is needed for SSL and
    SASL_SSL; `sasl_mechanism`, `username` and `password` for SASL_*.
    `server_hostname`: the name the server certificate is checked against (None: the
    host connected to)."""

    protocol: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    server_hostname: str | None = None

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise SecurityConfigError(f"security.protocol={self.protocol}: expected one of "
                                      f"{', '.join(PROTOCOLS)}")
        if self.uses_tls and self.ssl_context is None:
            raise SecurityConfigError(f"security.protocol={self.protocol} needs an ssl_context")
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise SecurityConfigError(f"sasl.mechanism={self.sasl_mechanism}: kafkette's "
                                          f"client does {', '.join(MECHANISMS)}")
            if self.username is None or self.password is None:
                raise SecurityConfigError(f"security.protocol={self.protocol} needs a SASL "
                                          f"username and password (sasl.jaas.config)")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def __repr__(self) -> str:  # never print the password
        return (f"ClientSecurity({self.protocol}, mechanism={self.sasl_mechanism}, "
                f"username={self.username!r})")

    @classmethod
    def from_properties(cls, props: dict[str, str]) -> "ClientSecurity | None":
        """The security of a Java client config; None for PLAINTEXT.
        SecurityConfigError naming the key that cannot be honoured."""
        protocol = props.get("security.protocol", "PLAINTEXT").strip().upper()
        if protocol not in PROTOCOLS:
            raise SecurityConfigError(f"security.protocol={protocol}: expected one of "
                                      f"{', '.join(PROTOCOLS)}")
        if protocol == "PLAINTEXT":
            stray = sorted(k for k in props if k in SECURITY_KEYS and k != "security.protocol")
            if stray:
                raise SecurityConfigError(f"{', '.join(stray)} set but security.protocol is "
                                          f"PLAINTEXT: nothing would use them")
            return None
        ctx = ssl_context_from_properties(props) if protocol in ("SSL", "SASL_SSL") else None
        mechanism = username = password = None
        if protocol.startswith("SASL_"):
            mechanism = props.get("sasl.mechanism", "GSSAPI").strip().upper()
            if mechanism not in MECHANISMS:
                raise SecurityConfigError(f"sasl.mechanism={mechanism} is not supported by "
                                          f"kafkette's client: {', '.join(MECHANISMS)}")
            username, password = _credentials(props, mechanism)
        return cls(protocol, ctx, mechanism, username, password)


def _credentials(props: dict[str, str], mechanism: str) -> tuple[str, str]:
    jaas = props.get("sasl.jaas.config")
    if jaas is not None:
        try:
            module, _, options = parse_jaas_config(jaas)
        except ConfigError as e:
            raise SecurityConfigError(str(e)) from None
        want = PLAIN_LOGIN_MODULE if mechanism == "PLAIN" else SCRAM_LOGIN_MODULE
        if module != want:
            raise SecurityConfigError(f"sasl.jaas.config: sasl.mechanism={mechanism} needs "
                                      f"{want}, not {module}")
        if "username" not in options or "password" not in options:
            raise SecurityConfigError("sasl.jaas.config: username=\"...\" and "
                                      "password=\"...\" options are required")
        return options["username"], options["password"]
    if "sasl.username" in props and "sasl.password" in props:
        return props["sasl.username"], props["sasl.password"]
    raise SecurityConfigError(f"sasl.mechanism={mechanism} needs sasl.jaas.config "
                              f"({want_module(mechanism)} required username=\"...\" "
                              f"password=\"...\";)")


def want_module(mechanism: str) -> str:
    return PLAIN_LOGIN_MODULE if mechanism == "PLAIN" else SCRAM_LOGIN_MODULE


def ssl_context_from_properties(props: dict[str, str]) -> ssl.SSLContext:
    """A client SSLContext from Kafka's ssl.* client settings (see the module doc)."""
    ctx = ssl.create_default_context()   # verifies the server against the trust store
    ts_type = props.get("ssl.truststore.type", "PEM" if "ssl.truststore.certificates" in props
                        or "ssl.truststore.location" in props else "JKS").strip().upper()
    if "ssl.truststore.location" in props or "ssl.truststore.certificates" in props:
        if ts_type != "PEM":
            raise SecurityConfigError(
                f"ssl.truststore.type={ts_type}: kafkette's client reads PEM trust stores "
                f"only (Python's ssl module has no JKS/PKCS12 reader); convert it, e.g. "
                f"keytool -exportcert -rfc, and set ssl.truststore.type=PEM")
        try:
            if "ssl.truststore.certificates" in props:
                ctx.load_verify_locations(cadata=props["ssl.truststore.certificates"])
            else:
                ctx.load_verify_locations(cafile=props["ssl.truststore.location"])
        except (ssl.SSLError, OSError) as e:
            raise SecurityConfigError(f"cannot load the trust store "
                                      f"({props.get('ssl.truststore.location', 'inline PEM')}): "
                                      f"{getattr(e, 'strerror', None) or e}") from None
    # else: the system's CAs, as Java's client uses the JRE's cacerts without a trust store
    algo = props.get("ssl.endpoint.identification.algorithm", "https").strip().lower()
    if algo not in ("https", ""):
        raise SecurityConfigError(f"ssl.endpoint.identification.algorithm={algo}: expected "
                                  f"https or empty")
    ctx.check_hostname = algo == "https"
    key_password = props.get("ssl.key.password")
    try:
        if "ssl.keystore.certificate.chain" in props:
            if "ssl.keystore.key" not in props:
                raise SecurityConfigError("ssl.keystore.certificate.chain needs ssl.keystore.key")
            load_pem_chain(ctx, props["ssl.keystore.certificate.chain"].encode(),
                           props["ssl.keystore.key"].encode(), key_password)
        elif "ssl.keystore.location" in props:
            ks_type = props.get("ssl.keystore.type", "JKS").strip().upper()
            path = props["ssl.keystore.location"]
            if ks_type == "PEM":
                ctx.load_cert_chain(path, password=key_password
                                    or props.get("ssl.keystore.password"))
            elif ks_type == "PKCS12":
                _load_pkcs12(ctx, path, props.get("ssl.keystore.password"))
            else:
                raise SecurityConfigError(
                    f"ssl.keystore.type={ks_type}: kafkette's client reads PEM or PKCS12 "
                    f"key stores (no JKS: convert with keytool -importkeystore "
                    f"-deststoretype PKCS12)")
    except ssl.SSLError as e:
        raise SecurityConfigError(f"cannot load the key store: {e}") from None
    except OSError as e:
        raise SecurityConfigError(f"cannot read the key store "
                                  f"{props.get('ssl.keystore.location')}: "
                                  f"{e.strerror or e}") from None
    return ctx


def load_pem_chain(ctx: ssl.SSLContext, chain: bytes, key: bytes, password: str | None) -> None:
    """Load an inline PEM key and certificate chain: Python's ssl module reads keys
    from files only, so they go to a private temporary file (mode 0600) and are
    removed at once."""
    fd, path = tempfile.mkstemp(prefix="kafkette-key-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key.rstrip() + b"\n" + chain)
        ctx.load_cert_chain(path, password=password)
    finally:
        os.unlink(path)


def _load_pkcs12(ctx: ssl.SSLContext, path: str, password: str | None) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12
    with open(path, "rb") as f:
        data = f.read()
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(
            data, password.encode() if password is not None else None)
    except ValueError as e:
        raise SecurityConfigError(f"cannot load PKCS12 key store {path} (wrong "
                                  f"ssl.keystore.password?): {e}") from None
    if key is None or cert is None:
        raise SecurityConfigError(f"PKCS12 key store {path} has no private key with a "
                                  f"certificate")
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *(extra or [])])
    load_pem_chain(ctx, chain, pem_key, None)


class SaslAuthenticationError(Exception):
    """The server's answer does not verify (SCRAM's server signature), or the
    exchange went out of order."""


class SaslClient:
    """The client side of one SASL exchange, sans-IO: `first()` is the first token;
    then `step(server_token)` gives the next token, or None when the exchange is over
    (the server was verified, for SCRAM)."""

    def __init__(self, mechanism: str, username: str, password: str):
        self.mechanism = mechanism
        self._done = False
        if mechanism == "PLAIN":
            self._scram = None
            self._plain = b"\x00" + username.encode() + b"\x00" + password.encode()
        elif mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            from scramp import ScramClient
            self._scram = ScramClient([mechanism], username, password)
            self._stage = 0
        else:
            raise SecurityConfigError(f"SASL mechanism {mechanism} is not supported")

    def first(self) -> bytes:
        if self._scram is None:
            return self._plain
        return self._scram.get_client_first().encode()

    def step(self, server_token: bytes) -> bytes | None:
        if self._scram is None:
            self._done = True
            return None   # PLAIN is one token; the server's answer is empty
        from scramp import ScramException
        try:
            text = server_token.decode("utf-8")
            if self._stage == 0:
                self._stage = 1
                self._scram.set_server_first(text)
                return self._scram.get_client_final().encode()
            if self._stage == 1:
                self._stage = 2
                self._scram.set_server_final(text)
                self._done = True
                return None
        except (ScramException, UnicodeDecodeError) as e:
            raise SaslAuthenticationError(f"{self.mechanism}: bad server message: {e}") from None
        raise SaslAuthenticationError(f"{self.mechanism}: server sent more than SCRAM's "
                                      f"two messages")

    @property
    def complete(self) -> bool:
        return self._done
