"""TLS for SSL and SASL_SSL listeners: Kafka's ssl.* settings to an ssl.SSLContext,
and the principal of a client certificate.

Key stores: PEM (a file with the private key and the certificate chain, or both inline
in ssl.keystore.certificate.chain / ssl.keystore.key) and PKCS12 (read with the
`cryptography` package, since Python's ssl module loads only PEM files). JKS is
refused by the config checks. Trust stores: PEM only. Python's ssl module loads keys
from files only, so an inline or PKCS12 key is written to a private temporary file
(mode 0600) for the moment of loading and removed at once.

Principal of an SSL connection (Kafka's DefaultKafkaPrincipalBuilder): User:<subject DN
in RFC 2253 form> of a verified client certificate after ssl.principal.mapping.rules,
User:ANONYMOUS without one. cryptography's RFC 4514 form matches Java's RFC 2253 for
the usual attributes (CN, OU, O, L, ST, C, STREET, DC, UID); Java prints others as
OID=#<hex of the DER value>, cryptography as OID=<text>.
"""
from __future__ import annotations

import os
import ssl
import tempfile

from kafkette.logging import get_logger

from kafkette.config import (
    BrokerConfig,
    ConfigError,
    map_principal_name,
    parse_principal_mapping_rules,
)

_TLS_VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
                 "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL,
                "required": ssl.CERT_REQUIRED}
ANONYMOUS = "User:ANONYMOUS"
log = get_logger("kafkette.tls")


class _LoggingSSLObject(ssl.SSLObject):
    """Logs a failed server-side handshake (a plaintext client on a TLS port, a
    client certificate the trust store refuses): asyncio's and uvloop's TLS servers
    close such connections without a word (an SSLError is an OSError, which they
    report only in debug mode). The SSLObject does not know the peer's address, so
    the server's rate limiter (server/log_limiter.py, set as `client_errors` by
    KafkaServer) limits these per listener rather than per peer host."""

    listener = "?"
    client_errors = None

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as e:
            error = getattr(e, "reason", None) or str(e)
            if self.client_errors is not None:
                self.client_errors.warning("tls_handshake", f"listener {self.listener}",
                                           "closing connection: TLS handshake failed",
                                           listener=self.listener, error=error)
            else:
                log.warning("closing connection: TLS handshake failed",
                            listener=self.listener, error=error)
            raise


def _key(config: BrokerConfig, listener: str, k: str) -> str:
    return f"listener.name.{listener.lower()}.{k}" if config.listener_is_set(listener, k) else k


def _load_pem_chain(ctx: ssl.SSLContext, chain: bytes, key: bytes, password: str | None) -> None:
    fd, path = tempfile.mkstemp(prefix="kafkette-key-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp: mode 0600, only this user reads it
            f.write(key.rstrip() + b"\n" + chain)
        ctx.load_cert_chain(path, password=password)
    finally:
        os.unlink(path)


def _load_pkcs12(ctx: ssl.SSLContext, path: str, password: str | None, key_name: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        with open(path, "rb") as f:
            data = f.read()
        key, cert, extra = pkcs12.load_key_and_certificates(
            data, password.encode() if password is not None else None)
    except OSError as e:
        raise ConfigError(f"Cannot read key store {path}: {e.strerror or e}",
                          key=key_name) from None
    except ValueError as e:
        raise ConfigError(f"Cannot load PKCS12 key store {path} (wrong "
                          f"ssl.keystore.password?): {e}", key=key_name) from None
    if key is None or cert is None:
        raise ConfigError(f"PKCS12 key store {path} has no private key with a certificate",
                          key=key_name)
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *(extra or [])])
    _load_pem_chain(ctx, chain, pem_key, None)


def _pkcs12_trusted_pem(path: str, password: str | None, key_name: str) -> str:
    """The CA certificates of a PKCS12 trust store (keytool's: certificates without a
    key, each a trusted entry) as PEM text for SSLContext.load_verify_locations."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        with open(path, "rb") as f:
            data = f.read()
        store = pkcs12.load_pkcs12(data, password.encode() if password is not None else None)
    except OSError as e:
        raise ConfigError(f"Cannot read trust store {path}: {e.strerror or e}",
                          key=key_name) from None
    except ValueError as e:
        raise ConfigError(f"Cannot load PKCS12 trust store {path} (wrong "
                          f"ssl.truststore.password?): {e}", key=key_name) from None
    certs = [c.certificate for c in store.additional_certs]
    if store.cert is not None:
        certs.append(store.cert.certificate)
    if not certs:
        raise ConfigError(f"PKCS12 trust store {path} holds no certificate", key=key_name)
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def server_context(config: BrokerConfig, listener: str) -> ssl.SSLContext:
    """The server-side SSLContext of a TLS listener; ConfigError when a file cannot
    be read or does not hold what the settings say."""
    get = lambda k: config.listener_value(listener, k)  # noqa: E731
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.sslobject_class = type("SSLObject", (_LoggingSSLObject,), {"listener": listener})
    versions = [_TLS_VERSIONS[p] for p in get("ssl.enabled.protocols")]
    if not versions:
        raise ConfigError(f"listener {listener}: ssl.enabled.protocols is empty",
                          key=_key(config, listener, "ssl.enabled.protocols"))
    ctx.minimum_version, ctx.maximum_version = min(versions), max(versions)
    ks_key = _key(config, listener, "ssl.keystore.location")
    key_password = get("ssl.key.password")
    try:
        if get("ssl.keystore.certificate.chain") is not None:
            _load_pem_chain(ctx, get("ssl.keystore.certificate.chain").encode(),
                            get("ssl.keystore.key").encode(), key_password)
        elif get("ssl.keystore.type") == "PKCS12":
            _load_pkcs12(ctx, get("ssl.keystore.location"), get("ssl.keystore.password"), ks_key)
        else:  # PEM file: private key and certificate chain
            ctx.load_cert_chain(get("ssl.keystore.location"),
                                password=key_password or get("ssl.keystore.password"))
    except ssl.SSLError as e:
        raise ConfigError(f"listener {listener}: cannot load the key store "
                          f"({get('ssl.keystore.location') or 'inline PEM'}): {e}",
                          key=ks_key) from None
    except OSError as e:
        raise ConfigError(f"listener {listener}: cannot read key store "
                          f"{get('ssl.keystore.location')}: {e.strerror or e}",
                          key=ks_key) from None
    ts_key = _key(config, listener, "ssl.truststore.location")
    try:
        if get("ssl.truststore.certificates") is not None:
            ctx.load_verify_locations(cadata=get("ssl.truststore.certificates"))
        elif get("ssl.truststore.location") is not None and \
                get("ssl.truststore.type") == "PKCS12":
            ctx.load_verify_locations(cadata=_pkcs12_trusted_pem(
                get("ssl.truststore.location"), get("ssl.truststore.password"), ts_key))
        elif get("ssl.truststore.location") is not None:
            ctx.load_verify_locations(cafile=get("ssl.truststore.location"))
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"listener {listener}: cannot load the trust store: {e}",
                          key=ts_key) from None
    # KIP-684: on SASL_SSL, Kafka applies only a listener-prefixed ssl.client.auth
    # (the broker-wide one is for SSL listeners); kafkette does the same.
    if config.security_protocol(listener) == "SASL_SSL" and \
            not config.listener_is_set(listener, "ssl.client.auth"):
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = _CLIENT_AUTH[get("ssl.client.auth")]
    suites = get("ssl.cipher.suites")
    if suites:
        try:
            ctx.set_ciphers(":".join(suites))
        except ssl.SSLError as e:
            raise ConfigError(f"listener {listener}: ssl.cipher.suites: no usable cipher in "
                              f"{','.join(suites)} ({e})",
                              key=_key(config, listener, "ssl.cipher.suites")) from None
    return ctx


class PrincipalMapper:
    """A listener's ssl.principal.mapping.rules, applied to client certificates."""

    def __init__(self, config: BrokerConfig, listener: str):
        self.rules = parse_principal_mapping_rules(
            config.listener_value(listener, "ssl.principal.mapping.rules"))

    def principal(self, ssl_object) -> str | None:
        """User:<name> for the verified client certificate, User:ANONYMOUS without
        one, None when no mapping rule matches (the connection is then refused)."""
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return ANONYMOUS
        name = map_principal_name(self.rules, subject_dn(der))
        return None if name is None else f"User:{name}"


def subject_dn(der: bytes) -> str:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()
