"""Broker and topic configuration, under Apache Kafka's property names.

A user who knows Kafka's `server.properties` should be able to reuse it: the keys are
Kafka's dotted names (`log.retention.hours`, `listeners`, ...), the defaults are Kafka's
except where noted in `doc`, and per-topic settings use Kafka's topic config names
(`retention.ms`, `cleanup.policy`, ...) with their broker-wide defaults derived the way
Kafka derives them (`log.retention.ms` > `log.retention.minutes` > `log.retention.hours`).

Sources, later wins: built-in defaults < config file (YAML, or a Java `.properties`
file) < `--set key=value` overrides, in the order given.

What differs from Kafka on purpose:
- `listeners` defaults to PLAINTEXT://127.0.0.1:9092 (Kafka binds every interface):
  a local dev broker should not be reachable from the network by accident.
- Listeners that bind every interface (host 0.0.0.0, ::, or empty) are never advertised
  as such: without `advertised.listeners` kafkette advertises "localhost" and records a
  warning. Kafka would advertise the machine's canonical host name instead. Set
  `advertised.listeners` whenever clients connect from another machine or container.
- `offsets.topic.replication.factor` and `transaction.state.log.replication.factor`
  keep Kafka's 3 but are capped at the live brokers when `__consumer_offsets` /
  `__transaction_state` are created (Kafka refuses to create them until that many
  brokers are up), and `transaction.state.log.min.isr` (Kafka's 2) is capped at that
  replication factor, so that one node works out of the box.
- `node.id` defaults to 1 (Kafka requires it); `broker.id` and `log.dir` are plain
  aliases of `node.id` and `log.dirs`.
- Thread-count keys (`num.io.threads`, ...) are accepted so that a Kafka properties file
  loads unchanged, and ignored: kafkette is one asyncio event loop.
- Dynamic broker configs (KIP-226, set with AlterConfigs / IncrementalAlterConfigs on
  a BROKER resource, kept in the metadata log): the keys in DYNAMIC_BROKER_CONFIGS,
  which are Kafka's dynamic keys that kafkette knows. Kafka also updates listeners,
  SSL/SASL settings and a few plugin configs at runtime; kafkette reports those
  read-only. Precedence, as Kafka's: per-broker dynamic > cluster-wide dynamic default
  > static (file, --set) > built-in default. See BrokerConfig.with_dynamic.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from kafkette.errors import InvalidConfigError, InvalidRequestError

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1

MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000


class ConfigError(InvalidConfigError):
    """A bad broker or topic configuration. It is an `InvalidConfigError`, so a handler
    that lets it escape answers INVALID_CONFIG with this message."""

    def __init__(self, message: str, *, key: str | None = None, value: Any = None):
        super().__init__(message)
        self.key = key
        self.value = value


# --------------------------------------------------------------------------- types

# Our type names, and the names/codes DescribeConfigs v3+ reports (Kafka's ConfigType).
INT, LONG, BOOL, STRING, LIST, DOUBLE = "int", "long", "bool", "string", "list", "double"
KAFKA_TYPE_NAMES = {INT: "INT", LONG: "LONG", BOOL: "BOOLEAN", STRING: "STRING",
                    LIST: "LIST", DOUBLE: "DOUBLE"}
CONFIG_TYPE_CODES = {"UNKNOWN": 0, "BOOLEAN": 1, "STRING": 2, "INT": 3, "SHORT": 4,
                     "LONG": 5, "DOUBLE": 6, "LIST": 7, "CLASS": 8, "PASSWORD": 9}
# DescribeConfigs config_source codes.
CONFIG_SOURCE_CODES = {"UNKNOWN": 0, "DYNAMIC_TOPIC_CONFIG": 1, "DYNAMIC_BROKER_CONFIG": 2,
                       "DYNAMIC_DEFAULT_BROKER_CONFIG": 3, "STATIC_BROKER_CONFIG": 4,
                       "DEFAULT_CONFIG": 5, "DYNAMIC_BROKER_LOGGER_CONFIG": 6}

_INTEGER_RE = re.compile(r"[+-]?[0-9]+")


class Range:
    """Inclusive bounds; either may be None (unbounded)."""

    def __init__(self, min: float | None = None, max: float | None = None):
        self.min, self.max = min, max

    def __call__(self, value: Any) -> str | None:
        if self.min is not None and value < self.min:
            return f"Value must be at least {self.min}"
        if self.max is not None and value > self.max:
            return f"Value must be no more than {self.max}"
        return None

    def __str__(self) -> str:
        lo = "" if self.min is None else f"{self.min},"
        hi = "" if self.max is None else f",{self.max}"
        return f"[{lo}...{hi}]"


# replica.selector.class values kafkette implements (KIP-392), by Kafka's class names.
RACK_AWARE_SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
LEADER_SELECTOR = "org.apache.kafka.common.replica.LeaderSelector"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ACL_AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"


class VersionString:
    """A Kafka version as message.format.version and inter.broker.protocol.version take
    it (MetadataVersion.fromVersionString: "0.10.2", "2.8", "3.0-IV1", ...)."""

    _RE = re.compile(r"[0-9]+\.[0-9]+(\.[0-9]+)?(-IV[0-9]+)?")

    def __call__(self, value: Any) -> str | None:
        if value is None or self._RE.fullmatch(str(value)):
            return None
        return "a Kafka version such as 3.0-IV1"


class Choices:
    """Allowed strings (case-sensitive, as Kafka's ValidString/ValidList). For a list
    config every element must be allowed, and the list must not be empty."""

    def __init__(self, *options: str):
        self.options = options

    def __call__(self, value: Any) -> str | None:
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            return f"must not be empty; allowed values: {', '.join(self.options)}"
        for item in items:
            if item not in self.options:
                hint = difflib.get_close_matches(item, self.options, n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                return f"'{item}' is not one of: {', '.join(self.options)}{extra}"
        return None

    def __str__(self) -> str:
        return "[" + ", ".join(self.options) + "]"


class _GzipLevel:
    def __call__(self, value: int) -> str | None:
        return None if value == -1 or 1 <= value <= 9 else "Value must be -1 or in [1,...,9]"

    def __str__(self) -> str:
        return "[-1, 1..9]"


COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
CLEANUP_POLICIES = ("compact", "delete")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
PROCESS_ROLES = ("broker", "controller")


@dataclasses.dataclass(frozen=True)
class ConfigKey:
    """One known key. `topic` names the topic config this broker key is the cluster-wide
    default of (None: not overridable per topic). `ignored`: accepted, has no effect."""

    name: str
    type: str
    default: Any
    doc: str
    validator: Callable[[Any], str | None] | None = None
    topic: str | None = None
    ignored: bool = False
    # Kafka's PASSWORD type: DescribeConfigs reports it as sensitive, with no value.
    sensitive: bool = False

    @property
    def nullable(self) -> bool:
        return self.default is None


def _parse_value(name: str, type_: str, nullable: bool, raw: Any,
                 validator: Callable[[Any], str | None] | None) -> Any:
    """Turn a raw value (string from the CLI or a properties file, or a YAML scalar or
    list) into the typed value, then validate it. Raises ConfigError naming key+value."""

    def bad(reason: str) -> ConfigError:
        return ConfigError(f"Invalid value {raw!r} for configuration '{name}': {reason}",
                           key=name, value=raw)

    if isinstance(raw, str):
        text = raw.strip()
        if text == "" and nullable:
            raw = None  # `--set cluster.id=` resets a nullable key to unset
    if raw is None:
        if nullable:
            return None
        raise bad("must not be null")

    value: Any
    if type_ in (INT, LONG):
        if isinstance(raw, bool):
            raise bad(f"not a number of type {KAFKA_TYPE_NAMES[type_]}")
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        elif isinstance(raw, str) and _INTEGER_RE.fullmatch(raw.strip()):
            value = int(raw.strip())
        else:
            raise bad(f"not a number of type {KAFKA_TYPE_NAMES[type_]}")
        lo, hi = (INT_MIN, INT_MAX) if type_ == INT else (LONG_MIN, LONG_MAX)
        if not lo <= value <= hi:
            raise bad(f"out of range for type {KAFKA_TYPE_NAMES[type_]}")
    elif type_ == BOOL:
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            value = raw.strip().lower() == "true"
        else:
            raise bad("expected true or false")
    elif type_ == DOUBLE:
        if isinstance(raw, bool):
            raise bad("not a number of type DOUBLE")
        try:
            value = float(raw.strip() if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            raise bad("not a number of type DOUBLE") from None
        if math.isnan(value) or math.isinf(value):
            raise bad("not a finite number")
    elif type_ == STRING:
        if isinstance(raw, bool):
            value = "true" if raw else "false"
        elif isinstance(raw, (str, int, float)):
            value = str(raw).strip()
        else:
            raise bad("expected a string")
    elif type_ == LIST:
        if isinstance(raw, (list, tuple)):
            items = [_format_scalar(x) for x in raw]
        elif isinstance(raw, (str, int, float)):
            items = str(raw).split(",")
        else:
            raise bad("expected a comma-separated list")
        value = [s for s in (i.strip() for i in items) if s]
    else:  # pragma: no cover - table error
        raise AssertionError(type_)

    if validator is not None:
        problem = validator(value)
        if problem:
            raise bad(problem)
    return value


def parse_ip_overrides(text: str) -> dict[str, int]:
    """max.connections.per.ip.overrides: "host:count,host:count" -> {host: count}
    (Kafka's parseCsvMap; the count after the last colon, so an IPv6 address may
    stand unbracketed). ValueError on a malformed entry."""
    out: dict[str, int] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        host, sep, count = entry.rpartition(":")
        host = host.strip().strip("[]")
        if not sep or not host or not _INTEGER_RE.fullmatch(count.strip()):
            raise ValueError(f"{entry!r} is not host:count")
        n = int(count)
        if not 0 <= n <= INT_MAX:
            raise ValueError(f"{entry!r}: the count must be 0..{INT_MAX}")
        out[host] = n
    return out


def _ip_overrides_problem(text: str) -> str | None:
    try:
        parse_ip_overrides(text)
    except ValueError as e:
        return f"{e} (expected host:count,host:count)"
    return None


def _format_scalar(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    return str(x)


def format_value(type_: str, value: Any) -> str | None:
    """A typed value as Kafka prints it in DescribeConfigs (null stays None)."""
    if value is None:
        return None
    if type_ == LIST:
        return ",".join(value)
    if type_ == DOUBLE:
        return repr(float(value))
    return _format_scalar(value)


# --------------------------------------------------------------------------- broker keys

def _k(name: str, type_: str, default: Any, doc: str, validator=None, topic=None,
       ignored=False, sensitive=False) -> ConfigKey:
    return ConfigKey(name, type_, default, doc, validator, topic, ignored, sensitive)


_IGNORED_DOC = " Accepted for compatibility with Kafka config files and ignored: kafkette is single-threaded asyncio."
_DEPRECATED_DOC = ("Accepted as Kafka 3.9 accepts it and not acted on (only RecordBatch "
                   "v2, magic 2, exists in Kafka 4.x).")

_BROKER_KEYS: list[ConfigKey] = [
    # --- identity and cluster
    _k("node.id", INT, 1, "This node's id, unique in the cluster. Alias: broker.id. "
       "Kafka requires it; kafkette defaults to 1.", Range(0)),
    _k("cluster.id", STRING, None, "Cluster id. When unset, kafkette generates one on "
       "first start and keeps it in the data directory."),
    _k("process.roles", LIST, ["broker", "controller"], "Roles of this node: broker, "
       "controller, or both (a combined node). A node with the controller role must be "
       "in controller.quorum.voters; a broker-only node must not be, and needs them "
       "(it follows the metadata log as an observer). A controller-only node hosts no "
       "partitions and opens no client listener: it serves only its controller "
       "listener, its own controller.quorum.voters address.", Choices(*PROCESS_ROLES)),
    _k("controller.quorum.voters", LIST, [], "Controller quorum voters as id@host:port "
       "entries. Empty: this node alone is the quorum."),
    _k("controller.quorum.bootstrap.servers", LIST, [], "host:port of controllers to "
       "discover the quorum from (KIP-853). Accepted; kafkette uses controller.quorum.voters."),
    _k("controller.listener.names", LIST, [], "Names of the listeners the controller "
       "serves on. The first one's protocol (listener.security.protocol.map) and its "
       "ssl.* / SASL settings secure every connection to the controllers, served "
       "at each voter's controller.quorum.voters address. Empty: PLAINTEXT."),
    _k("controller.quorum.election.timeout.ms", INT, 1000, "Time without a leader before "
       "a voter starts an election.", Range(1)),
    _k("controller.quorum.fetch.timeout.ms", INT, 2000, "Time without a successful fetch "
       "from the leader before a follower becomes a candidate.", Range(1)),
    _k("controller.quorum.election.backoff.max.ms", INT, 1000, "Upper bound of the random "
       "back-off before a new election.", Range(0)),
    _k("controller.quorum.request.timeout.ms", INT, 2000, "Timeout of quorum requests.", Range(1)),
    _k("controller.quorum.retry.backoff.ms", INT, 20, "Back-off before retrying a failed "
       "quorum request.", Range(0)),
    _k("broker.heartbeat.interval.ms", INT, 2000, "Interval between broker heartbeats to "
       "the active controller.", Range(1)),
    _k("broker.session.timeout.ms", INT, 9000, "A broker that sends no heartbeat for this "
       "long is fenced and loses leadership of its partitions.", Range(1)),
    _k("broker.rack", STRING, None, "Rack of this broker, for rack-aware replica placement "
       "and follower fetching (KIP-392)."),
    _k("replica.selector.class", STRING, None, "How a leader picks the replica a consumer "
       "should fetch from (KIP-392): Kafka's RackAwareReplicaSelector sends a consumer "
       "whose client.rack matches a caught-up follower's broker.rack to that follower; "
       "unset (or LeaderSelector): always the leader. Kafka's class names are accepted, "
       "no others.", Choices(RACK_AWARE_SELECTOR, LEADER_SELECTOR)),
    # --- network
    _k("listeners", LIST, ["PLAINTEXT://127.0.0.1:9092"], "Addresses to listen on, as "
       "NAME://host:port. An empty host or 0.0.0.0 binds every interface; port 0 picks a "
       "free port. kafkette binds localhost by default (Kafka binds every interface)."),
    _k("advertised.listeners", LIST, None, "Addresses given to clients in Metadata, as "
       "NAME://host:port. Default: listeners. A listener that binds every interface "
       "(0.0.0.0, ::, empty host) is advertised as localhost unless this is set, so set it "
       "when clients run on another host or container; 0.0.0.0 here is an error."),
    _k("listener.security.protocol.map", LIST,
       ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT", "SSL:SSL",
        "SASL_PLAINTEXT:SASL_PLAINTEXT", "SASL_SSL:SASL_SSL"],
       "Security protocol of each listener name, as NAME:PROTOCOL."),
    # --- authorization (ACLs: kafkette/controller/acls.py)
    _k("authorizer.class.name", STRING, "", "Authorizer that checks every request "
       "against the ACLs kept in the metadata log. Kafka's StandardAuthorizer ("
       + STANDARD_AUTHORIZER + ") turns ACLs on; " + ACL_AUTHORIZER + " (ZooKeeper-era) "
       "is accepted as an alias of it. Empty, the default as in Kafka: no "
       "authorization, every request is allowed.",
       Choices("", STANDARD_AUTHORIZER, ACL_AUTHORIZER)),
    _k("super.users", STRING, "", "Principals (User:name) separated by semicolons that "
       "every ACL check allows."),
    _k("allow.everyone.if.no.acl.found", BOOL, False, "With an authorizer: allow a "
       "request on a resource that no ACL names (none LITERAL, `*` or PREFIXED covers "
       "it). Default false: denied."),
    _k("inter.broker.listener.name", STRING, None, "Listener that brokers use to reach "
       "each other (follower fetching, transaction markers): each broker connects to "
       "the peer's registered endpoint of this listener with its security protocol. "
       "Default: the listener named by security.inter.broker.protocol when that is "
       "set, else the first non-controller listener."),
    _k("security.inter.broker.protocol", STRING, "PLAINTEXT", "Kafka's older way to "
       "choose the inter-broker listener: the listener whose name is this protocol. "
       "Only one of it and inter.broker.listener.name may be set.",
       Choices("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
    _k("sasl.mechanism.inter.broker.protocol", STRING, "GSSAPI", "SASL mechanism of "
       "the inter-broker connections when the inter-broker listener is SASL_*: PLAIN, "
       "SCRAM-SHA-256 or SCRAM-SHA-512, with username and password from "
       "listener.name.<listener>.<mechanism>.sasl.jaas.config. Kafka's default GSSAPI "
       "is not supported."),
    _k("sasl.mechanism.controller.protocol", STRING, "GSSAPI", "SASL mechanism of "
       "the connections to a SASL_* controller listener: PLAIN, SCRAM-SHA-256 or "
       "SCRAM-SHA-512, with username and password from "
       "listener.name.<listener>.<mechanism>.sasl.jaas.config."),
    _k("metrics.listener", STRING, "", "kafkette only: host:port of an HTTP listener that "
       "serves metrics. Empty: no metrics listener."),
    _k("console.listener", STRING, "", "kafkette only: host:port of the web console "
       "(kafkette/console/): cluster, topics, messages and consumer groups in a browser. "
       "Empty: no console. With SASL listeners it asks for a login, checked through "
       "a SASL_PLAINTEXT listener of the broker; refused on a broker without a PLAINTEXT "
       "or SASL_PLAINTEXT listener, and on a controller-only node."),
    _k("console.read.only", BOOL, False, "kafkette only: the console shows and changes "
       "nothing (no create / delete topic, produce or offset reset forms; POSTs refused)."),
    _k("schema.registry.listener", STRING, "", "kafkette only: host:port of the built-in "
       "Schema Registry (Confluent's REST API, schemas kept in the topic _schemas). "
       "Empty: no schema registry."),
    _k("socket.request.max.bytes", INT, 104857600, "Largest request the broker accepts; "
       "a larger size prefix closes the connection.", Range(1)),
    # --- security (TLS listeners and SASL; server/tls.py, server/sasl.py). Each of these
    # may also be set for one listener as listener.name.<listener>.<key>, which wins
    # over the unprefixed key (Kafka's per-listener overrides); the JAAS config only as
    # listener.name.<listener>.<mechanism>.sasl.jaas.config or sasl.jaas.config.
    _k("ssl.keystore.type", STRING, "JKS", "Format of the broker's key store: PEM or "
       "PKCS12. Kafka's default JKS is refused (no Java key store reader): convert it "
       "with keytool -importkeystore -deststoretype PKCS12.",
       Choices("JKS", "PKCS12", "PEM")),
    _k("ssl.keystore.location", STRING, None, "Key store file: PKCS12, or PEM with the "
       "private key and the certificate chain."),
    _k("ssl.keystore.password", STRING, None, "Password of the key store file.",
       sensitive=True),
    _k("ssl.keystore.certificate.chain", STRING, None, "PEM key store given inline: the "
       "certificate chain (ssl.keystore.type=PEM).", sensitive=True),
    _k("ssl.keystore.key", STRING, None, "PEM key store given inline: the private key "
       "(ssl.keystore.type=PEM), encrypted with ssl.key.password if set.", sensitive=True),
    _k("ssl.key.password", STRING, None, "Password of the private key.", sensitive=True),
    _k("ssl.truststore.type", STRING, "JKS", "Format of the trust store (the CAs that "
       "client certificates are checked against): PEM or PKCS12. JKS is refused.",
       Choices("JKS", "PKCS12", "PEM")),
    _k("ssl.truststore.location", STRING, None, "Trust store file (PEM certificates, or "
       "PKCS12 with ssl.truststore.type=PKCS12)."),
    _k("ssl.truststore.password", STRING, None, "Password of a PKCS12 trust store; PEM "
       "trust stores have none.", sensitive=True),
    _k("ssl.truststore.certificates", STRING, None, "PEM trust store given inline.",
       sensitive=True),
    _k("ssl.client.auth", STRING, "none", "Mutual TLS: required (a client without a "
       "certificate the trust store accepts is refused), requested (checked when "
       "given) or none. On an SSL listener the principal is then User:<subject DN, "
       "RFC 2253>.", Choices("required", "requested", "none")),
    _k("ssl.enabled.protocols", LIST, ["TLSv1.2", "TLSv1.3"], "TLS versions accepted.",
       Choices("TLSv1.2", "TLSv1.3", "TLSv1.1", "TLSv1")),
    _k("ssl.protocol", STRING, "TLSv1.3", "Kafka's SSLContext protocol; the accepted "
       "versions are ssl.enabled.protocols."),
    _k("ssl.cipher.suites", LIST, [], "Cipher suites for TLS 1.2 and below, by OpenSSL "
       "or IANA name (Python's ssl module cannot restrict TLS 1.3 suites). Empty: "
       "OpenSSL's defaults."),
    _k("ssl.endpoint.identification.algorithm", STRING, "https", "Client side "
       "(inter-broker and controller connections): https checks that the peer's "
       "certificate names the host connected to; empty: the certificate is verified "
       "against the trust store only.", Choices("https", "")),
    _k("ssl.principal.mapping.rules", STRING, "DEFAULT", "How a client certificate's "
       "subject DN becomes the principal name: DEFAULT (the DN itself), or Kafka's "
       "RULE:pattern/replacement/[LU] list ending in DEFAULT."),
    _k("sasl.enabled.mechanisms", LIST, ["GSSAPI"], "SASL mechanisms served on "
       "SASL_PLAINTEXT and SASL_SSL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512. "
       "Kafka's default GSSAPI (Kerberos) is not supported, so a SASL listener needs "
       "this set."),
    _k("sasl.jaas.config", STRING, None, "JAAS login config for PLAIN's users "
       "(PlainLoginModule with user_<name>=\"<password>\" options) when no "
       "listener.name.<listener>.plain.sasl.jaas.config is set. Kafka's broker reads "
       "only the listener-prefixed form or a JAAS file.", sensitive=True),
    _k("sasl.server.max.receive.size", INT, 524288, "Largest SASL token (or request "
       "before authentication) the broker accepts; larger closes the connection.",
       Range(1)),
    _k("connections.max.reauth.ms", LONG, 0, "KIP-368: the session lifetime given to "
       "SASL clients; a connection that has not re-authenticated within it is closed "
       "at its next request. 0: sessions do not expire.", Range(0)),
    _k("socket.send.buffer.bytes", INT, 102400, "SO_SNDBUF of sockets; -1 for the OS "
       "default." + _IGNORED_DOC, ignored=True),
    _k("socket.receive.buffer.bytes", INT, 102400, "SO_RCVBUF of sockets; -1 for the OS "
       "default." + _IGNORED_DOC, ignored=True),
    _k("connections.max.idle.ms", LONG, 600000, "A connection that has sent no complete "
       "request (and been sent no response) for this long is closed, one stalled in the "
       "middle of a frame too. On SASL listeners, a connection that has not "
       "authenticated this long after it opened is closed. Negative: never (as Kafka's "
       "Selector)."),
    # --- connection and request limits (server/limits.py)
    _k("max.connections", INT, INT_MAX, "Most connections the broker holds open; also "
       "per listener as listener.name.<listener>.max.connections. Kafka blocks accept "
       "until a slot frees; kafkette accepts and closes the new connection at once "
       "(the client reconnects after its backoff). As in Kafka, the inter-broker listener "
       "is not held to the broker-wide limit when there are several listeners (Kafka "
       "then closes another listener's least recently used connection; kafkette "
       "does not).", Range(0)),
    _k("max.connections.per.ip", INT, INT_MAX, "Most connections from one IP address, "
       "over all listeners; a connection over it is closed right after accept. 0 is "
       "allowed only with max.connections.per.ip.overrides.", Range(0)),
    _k("max.connections.per.ip.overrides", STRING, "", "Per host or IP limits that "
       "replace max.connections.per.ip: host:count,host:count. Host names are resolved "
       "when the broker starts.", lambda v: _ip_overrides_problem(v)),
    _k("queued.max.requests", INT, 500, "Requests read and not yet handled, over all "
       "connections, before connections that pipeline requests stop reading.", Range(1)),
    _k("queued.max.request.bytes", LONG, -1, "Bytes of such requests before connections "
       "that pipeline requests stop reading. Kafka's -1 (any value <= 0) means unbounded; "
       "kafkette then bounds them at socket.request.max.bytes. Otherwise at least "
       "socket.request.max.bytes."),
    _k("fetch.max.bytes", INT, 57671680, "Most bytes returned by one Fetch request, "
       "whatever the client asks.", Range(1024)),
    _k("quota.window.num", INT, 11, "Samples kept for client quota rates (KIP-13): the "
       "rate is measured over this many windows.", Range(1)),
    _k("quota.window.size.seconds", INT, 1, "Length of one client quota sample.", Range(1)),
    _k("max.incremental.fetch.session.cache.slots", INT, 1000, "Fetch sessions (KIP-227) "
       "the broker keeps; a fetcher that finds no slot fetches without one.", Range(0)),
    _k("num.io.threads", INT, 8, "Request handler threads." + _IGNORED_DOC, Range(1), ignored=True),
    _k("num.network.threads", INT, 3, "Network threads." + _IGNORED_DOC, Range(1), ignored=True),
    _k("num.recovery.threads.per.data.dir", INT, 2, "Log recovery threads per data "
       "directory." + _IGNORED_DOC, Range(1), ignored=True),
    _k("background.threads", INT, 10, "Background task threads." + _IGNORED_DOC, Range(1), ignored=True),
    _k("num.replica.fetchers", INT, 1, "Follower fetcher threads." + _IGNORED_DOC, Range(1), ignored=True),
    # --- topics and logs
    _k("log.dirs", LIST, ["./kafkette-data"], "Data directories. Alias: log.dir."),
    _k("num.partitions", INT, 1, "Partitions of an auto-created topic, or of a "
       "CreateTopics request that leaves the count to the broker.", Range(1)),
    _k("default.replication.factor", INT, 1, "Replication factor of auto-created topics "
       "and of CreateTopics requests that leave it to the broker.", Range(1)),
    _k("auto.create.topics.enable", BOOL, True, "Create a topic when a client asks for "
       "its metadata (and allows auto-creation)."),
    _k("delete.topic.enable", BOOL, True, "Allow DeleteTopics."),
    _k("log.retention.hours", INT, 168, "Time to keep a log segment before deleting it, "
       "in hours. Overridden by log.retention.minutes and log.retention.ms.", topic="retention.ms"),
    _k("log.retention.minutes", INT, None, "Retention in minutes; overrides "
       "log.retention.hours.", topic="retention.ms"),
    _k("log.retention.ms", LONG, None, "Retention in milliseconds; overrides "
       "log.retention.minutes and log.retention.hours. -1: keep forever.", topic="retention.ms"),
    _k("log.retention.bytes", LONG, -1, "Largest size of a partition log before its "
       "oldest segments are deleted. -1: no limit.", topic="retention.bytes"),
    _k("log.retention.check.interval.ms", LONG, 300000, "How often retention is checked.", Range(1)),
    # Kafka 4.0 raised the minimum to 1 MiB (KIP-1030); kafkette keeps the old minimum
    # of 14 bytes so that tests can roll tiny segments.
    _k("log.segment.bytes", INT, 1073741824, "Size at which the active segment rolls.",
       Range(14), topic="segment.bytes"),
    _k("log.roll.hours", INT, 168, "Age at which the active segment rolls, in hours; "
       "overridden by log.roll.ms.", Range(1), topic="segment.ms"),
    _k("log.roll.ms", LONG, None, "Age at which the active segment rolls, in ms.",
       Range(1), topic="segment.ms"),
    _k("log.roll.jitter.hours", INT, 0, "Largest random jitter subtracted from the roll "
       "age, in hours; overridden by log.roll.jitter.ms.", Range(0), topic="segment.jitter.ms"),
    _k("log.roll.jitter.ms", LONG, None, "Largest random jitter subtracted from the roll "
       "age, in ms.", Range(0), topic="segment.jitter.ms"),
    _k("log.index.interval.bytes", INT, 4096, "Bytes of log between two offset index "
       "entries.", Range(0), topic="index.interval.bytes"),
    _k("log.index.size.max.bytes", INT, 10485760, "Largest size of an offset or time "
       "index; the segment rolls when its index is full.", Range(4), topic="segment.index.bytes"),
    _k("message.max.bytes", INT, 1048588, "Largest record batch the broker accepts.",
       Range(0), topic="max.message.bytes"),
    _k("log.flush.interval.messages", LONG, LONG_MAX, "Messages written to a partition "
       "before it is fsynced. The default (Long.MAX_VALUE) never forces an fsync: "
       "durability comes from replication and the OS page cache.",
       Range(1), topic="flush.messages"),
    _k("log.flush.interval.ms", LONG, None, "Time data may stay unflushed before an "
       "fsync. Unset: log.flush.scheduler.interval.ms.", Range(0), topic="flush.ms"),
    _k("log.flush.scheduler.interval.ms", LONG, LONG_MAX, "How often the flusher checks "
       "whether a log needs flushing.", Range(0)),
    _k("log.message.timestamp.type", STRING, "CreateTime", "Timestamp stored in batches: "
       "the producer's (CreateTime) or the broker's append time (LogAppendTime).",
       Choices(*TIMESTAMP_TYPES), topic="message.timestamp.type"),
    _k("log.message.timestamp.before.max.ms", LONG, LONG_MAX, "Largest amount a batch "
       "timestamp may lie in the past (CreateTime).", Range(0),
       topic="message.timestamp.before.max.ms"),
    _k("log.message.timestamp.after.max.ms", LONG, 3600000, "Largest amount a batch "
       "timestamp may lie in the future (CreateTime). Kafka 4.0's default: one hour.",
       Range(0), topic="message.timestamp.after.max.ms"),
    # Kafka 3.9 settings that Kafka 4.0 removed (KIP-724, KIP-937): clients and config
    # files written for 3.x still send them, so they are accepted. Only the timestamp
    # difference still acts, as in 3.9.
    _k("log.message.timestamp.difference.max.ms", LONG, LONG_MAX, "Deprecated (Kafka "
       "3.6; removed in 4.0): bounds a timestamp's distance from the broker's clock on "
       "a side whose before/after setting is Long.MAX_VALUE, as Kafka 3.9 does.",
       Range(0), topic="message.timestamp.difference.max.ms"),
    _k("log.message.format.version", STRING, "3.0-IV1", "Deprecated; " + _DEPRECATED_DOC,
       VersionString(), topic="message.format.version", ignored=True),
    _k("log.message.downconversion.enable", BOOL, True, "Deprecated; kafkette serves "
       "Fetch v4+ only, which never needs down-conversion. " + _DEPRECATED_DOC,
       topic="message.downconversion.enable", ignored=True),
    _k("inter.broker.protocol.version", STRING, "3.9-IV0", "Deprecated; KRaft uses "
       "metadata.version instead (Kafka 3.9 ignores it in KRaft mode). " + _DEPRECATED_DOC,
       VersionString(), ignored=True),
    _k("log.cleanup.policy", LIST, ["delete"], "delete (retention), compact (keep the "
       "latest value per key), or both: compact,delete.", Choices(*CLEANUP_POLICIES),
       topic="cleanup.policy"),
    _k("log.cleaner.enable", BOOL, True, "Run the log cleaner (compaction)."),
    _k("log.cleaner.delete.retention.ms", LONG, 86400000, "How long tombstones stay in a "
       "compacted log.", Range(0), topic="delete.retention.ms"),
    _k("log.cleaner.min.compaction.lag.ms", LONG, 0, "Youngest age a message must reach "
       "before it can be compacted.", Range(0), topic="min.compaction.lag.ms"),
    _k("log.cleaner.max.compaction.lag.ms", LONG, LONG_MAX, "Oldest age an uncompacted "
       "message may reach.", Range(1), topic="max.compaction.lag.ms"),
    _k("log.cleaner.min.cleanable.ratio", DOUBLE, 0.5, "Dirty/total ratio at which a "
       "log becomes eligible for compaction.", Range(0, 1), topic="min.cleanable.dirty.ratio"),
    _k("log.cleaner.backoff.ms", LONG, 15000, "Sleep of the cleaner when nothing is "
       "cleanable.", Range(0)),
    _k("log.segment.delete.delay.ms", LONG, 60000, "Delay between removing a segment from "
       "the log and deleting its files.", Range(0), topic="file.delete.delay.ms"),
    _k("log.preallocate", BOOL, False, "Preallocate segment files.", topic="preallocate"),
    _k("min.insync.replicas", INT, 1, "Fewest in-sync replicas for an acks=all write to "
       "succeed (NOT_ENOUGH_REPLICAS otherwise).", Range(1), topic="min.insync.replicas"),
    _k("compression.type", STRING, "producer", "Compression of stored batches; producer "
       "keeps the producer's codec.", Choices(*COMPRESSION_TYPES), topic="compression.type"),
    _k("compression.gzip.level", INT, -1, "gzip level when the broker compresses.",
       _GzipLevel(), topic="compression.gzip.level"),
    _k("compression.lz4.level", INT, 9, "lz4 level when the broker compresses.",
       Range(1, 17), topic="compression.lz4.level"),
    _k("compression.zstd.level", INT, 3, "zstd level when the broker compresses.",
       Range(-131072, 22), topic="compression.zstd.level"),
    _k("unclean.leader.election.enable", BOOL, False, "Allow an out-of-sync replica to "
       "become leader (data loss) when no in-sync replica is left.",
       topic="unclean.leader.election.enable"),
    _k("auto.leader.rebalance.enable", BOOL, True, "Move leadership back to preferred "
       "replicas (the first of each partition's replicas) when they are live and in "
       "sync, checked by the active controller."),
    _k("leader.imbalance.check.interval.seconds", LONG, 300, "How often the active "
       "controller checks whether leadership should move back to preferred replicas.",
       Range(1)),
    _k("leader.imbalance.per.broker.percentage", INT, 10, "Share of the partitions a "
       "broker prefers but does not lead, in percent, above which their leadership "
       "moves back to it (the rule of Kafka's ZooKeeper controller; KRaft moves every "
       "partition it can)."),
    # --- replication
    _k("replica.lag.time.max.ms", LONG, 30000, "A follower that has not caught up for "
       "this long leaves the ISR.", Range(1)),
    _k("replica.fetch.max.bytes", INT, 1048576, "Bytes a follower asks for per "
       "partition.", Range(0)),
    _k("replica.fetch.min.bytes", INT, 1, "Bytes a follower fetch waits for.", Range(1)),
    _k("replica.fetch.wait.max.ms", INT, 500, "Longest wait of a follower fetch.", Range(0)),
    _k("replica.fetch.backoff.ms", INT, 1000, "Back-off after a failed follower fetch.", Range(0)),
    _k("replica.fetch.response.max.bytes", INT, 10485760, "Bytes a follower asks for per "
       "fetch.", Range(0)),
    # --- group coordinator
    _k("group.initial.rebalance.delay.ms", INT, 3000, "Wait for more members before the "
       "first rebalance of an empty group.", Range(0)),
    _k("group.min.session.timeout.ms", INT, 6000, "Smallest session timeout a member may "
       "ask for.", Range(0)),
    _k("group.max.session.timeout.ms", INT, 1800000, "Largest session timeout a member "
       "may ask for.", Range(0)),
    _k("group.max.size", INT, INT_MAX, "Most members of one group.", Range(1)),
    _k("offsets.topic.num.partitions", INT, 50, "Partitions of __consumer_offsets; "
       "cannot change once the topic exists.", Range(1)),
    _k("offsets.topic.replication.factor", INT, 3, "Replication factor of "
       "__consumer_offsets, capped at the live brokers when the topic is created (with "
       "a warning; Kafka refuses to create it until that many brokers are up).",
       Range(1, 32767)),
    _k("offsets.topic.segment.bytes", INT, 104857600, "Segment size of "
       "__consumer_offsets.", Range(1)),
    _k("offsets.retention.minutes", INT, 10080, "Committed offsets of a group that has "
       "been empty this long are removed.", Range(1)),
    _k("offsets.retention.check.interval.ms", LONG, 600000, "How often stale offsets are "
       "looked for.", Range(1)),
    _k("offsets.commit.timeout.ms", INT, 5000, "How long an offset commit waits for "
       "__consumer_offsets replication.", Range(1)),
    _k("offset.metadata.max.bytes", INT, 4096, "Largest metadata string of a committed "
       "offset."),
    # --- transactions and producer ids
    _k("transaction.state.log.num.partitions", INT, 50, "Partitions of "
       "__transaction_state.", Range(1)),
    _k("transaction.state.log.replication.factor", INT, 3, "Replication factor of "
       "__transaction_state, capped at the live brokers when the topic is created.",
       Range(1, 32767)),
    _k("transaction.state.log.min.isr", INT, 2, "min.insync.replicas of "
       "__transaction_state, capped at its replication factor.", Range(1)),
    _k("transaction.state.log.segment.bytes", INT, 104857600, "Segment size of "
       "__transaction_state.", Range(1)),
    _k("transaction.max.timeout.ms", INT, 900000, "Largest transaction timeout a "
       "producer may ask for.", Range(1)),
    _k("transactional.id.expiration.ms", INT, 604800000, "A transactional id unused for "
       "this long expires.", Range(1)),
    _k("transaction.abort.timed.out.transaction.cleanup.interval.ms", INT, 10000,
       "How often the transaction coordinator aborts transactions past their timeout.",
       Range(1)),
    _k("transaction.remove.expired.transaction.cleanup.interval.ms", INT, 3600000,
       "How often the transaction coordinator removes expired transactional ids.",
       Range(1)),
    _k("transaction.partition.verification.enable", BOOL, True, "KIP-890: a "
       "partition leader asks the transaction coordinator whether a partition is in the "
       "producer's transaction before it appends the transaction's first batch."),
    _k("producer.id.expiration.ms", INT, 86400000, "Idempotent producer state unused for "
       "this long expires.", Range(1)),
    _k("share.coordinator.state.topic.replication.factor", INT, 3, "Share groups (KIP-932)."
       " Accepted for compatibility with Kafka config files; kafkette has no share groups.",
       Range(1, 32767), ignored=True),
    _k("share.coordinator.state.topic.min.isr", INT, 2, "Share groups (KIP-932). Accepted "
       "for compatibility with Kafka config files; kafkette has no share groups.",
       Range(1), ignored=True),
]

BROKER_CONFIGS: dict[str, ConfigKey] = {k.name: k for k in _BROKER_KEYS}

# --------------------------------------------------------------------------- security

# The SASL mechanisms kafkette serves. Kafka also has GSSAPI (Kerberos) and OAUTHBEARER.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
# Keys that may be set for one listener as listener.name.<listener>.<key> (Kafka's
# ListenerName.configPrefix): the prefixed value wins, key by key, over the plain one.
LISTENER_SECURITY_KEYS = frozenset(
    k.name for k in _BROKER_KEYS
    if k.name.startswith(("ssl.", "sasl.")) and k.name not in (
        "sasl.jaas.config", "sasl.mechanism.inter.broker.protocol",
        "sasl.mechanism.controller.protocol")) | {
    "connections.max.reauth.ms", "max.connections"}
_LISTENER_KEY_RE = re.compile(r"listener\.name\.([A-Za-z0-9_]+)\.(.+)")
# listener.name.<l>.<mechanism>.<key>: the keys Kafka reads per mechanism.
_MECHANISM_KEYS = ("sasl.jaas.config", "connections.max.reauth.ms")


def listener_override_key(key: str) -> tuple[str, str] | None:
    """("SASL_SSL", "ssl.client.auth") for listener.name.sasl_ssl.ssl.client.auth, and
    ("SASL_SSL", "scram-sha-512.sasl.jaas.config") for a per-mechanism key; None for
    anything else."""
    m = _LISTENER_KEY_RE.fullmatch(key)
    if not m:
        return None
    listener, rest = m[1].upper(), m[2]
    if rest in LISTENER_SECURITY_KEYS:
        return listener, rest
    mech, _, tail = rest.partition(".")
    if tail in _MECHANISM_KEYS and mech:
        return listener, f"{mech.lower()}.{tail}"
    return None


def _override_spec(rest: str) -> ConfigKey:
    base = rest if rest in BROKER_CONFIGS else rest.partition(".")[2]
    return BROKER_CONFIGS[base]


_JAAS_OPTION_RE = re.compile(r'\s*([A-Za-z0-9_.\-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;"]+))')


def parse_jaas_config(text: str, key: str = "sasl.jaas.config") -> tuple[str, str, dict[str, str]]:
    """Kafka's sasl.jaas.config value, one login module:
    `<LoginModuleClass> <required|requisite|sufficient|optional> k="v" k2=v2 ... ;`
    -> (class, flag, options). ConfigError naming `key` when it is not of that form
    (Kafka's JaasConfig; like it, exactly one module and a closing semicolon)."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"Invalid value for configuration '{key}': {why}", key=key)

    t = text.strip()
    if not t.endswith(";"):
        raise bad("a JAAS login module entry must end with ';'")
    t = t[:-1]
    m = re.match(r"\s*([A-Za-z0-9_.$]+)\s+(required|requisite|sufficient|optional)\b", t)
    if not m:
        raise bad("expected '<LoginModule class> required <options>;'")
    options: dict[str, str] = {}
    pos = m.end()
    while pos < len(t):
        if not t[pos:].strip():
            break
        om = _JAAS_OPTION_RE.match(t, pos)
        if not om:
            raise bad(f"cannot parse the options from {t[pos:].strip()[:40]!r} "
                      f"(expected name=\"value\" pairs; only one login module is allowed)")
        value = om[2] if om[2] is not None else om[3]
        if om[2] is not None:
            value = re.sub(r"\\(.)", r"\1", value)
        options[om[1]] = value
        pos = om.end()
    return m[1], m[2], options


_RULE_RE = re.compile(r"\s*(?:(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?))\s*(?:,|$)")


def parse_principal_mapping_rules(text: str, key: str = "ssl.principal.mapping.rules"
                                  ) -> list[tuple[re.Pattern, str, str] | None]:
    """Kafka's SslPrincipalMapper rules: DEFAULT (None here) or RULE:regex/replacement/
    with an optional L or U (lower / upper case), comma-separated, tried in order.
    Java's $1 in a replacement is Python's \\g<1>."""
    rules: list[tuple[re.Pattern, str, str] | None] = []
    pos, t = 0, text.strip()
    while pos < len(t):
        m = _RULE_RE.match(t, pos)
        if not m or m.end() == pos:
            raise ConfigError(f"Invalid value {text!r} for configuration '{key}': expected "
                              f"DEFAULT or RULE:pattern/replacement/[LU], comma-separated",
                              key=key, value=text)
        if m[1]:
            rules.append(None)
        else:
            try:
                pattern = re.compile(m[2])
            except re.error as e:
                raise ConfigError(f"Invalid value {text!r} for configuration '{key}': bad "
                                  f"pattern {m[2]!r}: {e}", key=key, value=text) from None
            rules.append((pattern, re.sub(r"\$(\d+)", r"\\g<\1>", m[3]), m[4]))
        pos = m.end()
    return rules or [None]


def map_principal_name(rules: list, dn: str) -> str | None:
    """The principal name of a certificate subject DN under `rules`; None when no
    rule matches (Kafka then fails the connection's authentication)."""
    for rule in rules:
        if rule is None:
            return dn
        pattern, replacement, case = rule
        if pattern.fullmatch(dn):
            out = pattern.sub(replacement, dn)
            return out.lower() if case == "L" else out.upper() if case == "U" else out
    return None


PLAIN_LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


def plain_users(text: str, key: str) -> dict[str, str]:
    """The user_<name>="<password>" options of a PlainLoginModule JAAS config: the
    users PLAIN accepts (Kafka's PlainServerCallbackHandler reads the same)."""
    cls, _, options = parse_jaas_config(text, key)
    if cls != PLAIN_LOGIN_MODULE:
        raise ConfigError(f"Invalid value for configuration '{key}': PLAIN needs "
                          f"{PLAIN_LOGIN_MODULE}, not {cls}", key=key)
    return {k[len("user_"):]: v for k, v in options.items() if k.startswith("user_")}


# Kafka keeps broker.id/node.id and log.dir/log.dirs as distinct keys with precedence
# rules; kafkette treats them as spellings of one key.
ALIASES: dict[str, str] = {"broker.id": "node.id", "log.dir": "log.dirs"}


# --------------------------------------------------------------------------- topic keys

@dataclasses.dataclass(frozen=True)
class TopicConfigKey:
    """A topic config. `synonyms`: the broker keys that set its default, highest
    precedence first (as DescribeConfigs lists them). `kafka_default` is Kafka's default
    when the broker config is default; the effective one comes from `topic_defaults`."""

    name: str
    type: str
    kafka_default: Any
    doc: str
    validator: Callable[[Any], str | None] | None = None
    synonyms: tuple[str, ...] = ()


def _t(name, type_, default, doc, validator=None, synonyms=()) -> TopicConfigKey:
    return TopicConfigKey(name, type_, default, doc, validator, tuple(synonyms))


_TOPIC_KEYS: list[TopicConfigKey] = [
    _t("cleanup.policy", LIST, ["delete"], "delete, compact, or compact,delete.",
       Choices(*CLEANUP_POLICIES), ["log.cleanup.policy"]),
    _t("compression.type", STRING, "producer", "Compression of stored batches.",
       Choices(*COMPRESSION_TYPES), ["compression.type"]),
    _t("compression.gzip.level", INT, -1, "gzip level.", _GzipLevel(), ["compression.gzip.level"]),
    _t("compression.lz4.level", INT, 9, "lz4 level.", Range(1, 17), ["compression.lz4.level"]),
    _t("compression.zstd.level", INT, 3, "zstd level.", Range(-131072, 22), ["compression.zstd.level"]),
    _t("delete.retention.ms", LONG, 86400000, "How long tombstones stay in a compacted log.",
       Range(0), ["log.cleaner.delete.retention.ms"]),
    _t("file.delete.delay.ms", LONG, 60000, "Delay before a removed segment's files are "
       "deleted.", Range(0), ["log.segment.delete.delay.ms"]),
    _t("flush.messages", LONG, LONG_MAX, "Messages between forced fsyncs.", Range(1),
       ["log.flush.interval.messages"]),
    _t("flush.ms", LONG, LONG_MAX, "Time between forced fsyncs.", Range(0),
       ["log.flush.interval.ms", "log.flush.scheduler.interval.ms"]),
    _t("index.interval.bytes", INT, 4096, "Bytes between offset index entries.", Range(0),
       ["log.index.interval.bytes"]),
    _t("max.compaction.lag.ms", LONG, LONG_MAX, "Oldest age an uncompacted message may "
       "reach.", Range(1), ["log.cleaner.max.compaction.lag.ms"]),
    _t("max.message.bytes", INT, 1048588, "Largest record batch accepted.", Range(0),
       ["message.max.bytes"]),
    _t("message.timestamp.type", STRING, "CreateTime", "CreateTime or LogAppendTime.",
       Choices(*TIMESTAMP_TYPES), ["log.message.timestamp.type"]),
    _t("message.timestamp.before.max.ms", LONG, LONG_MAX, "Largest amount a timestamp "
       "may lie in the past.", Range(0), ["log.message.timestamp.before.max.ms"]),
    _t("message.timestamp.after.max.ms", LONG, 3600000, "Largest amount a timestamp may "
       "lie in the future.", Range(0), ["log.message.timestamp.after.max.ms"]),
    _t("message.timestamp.difference.max.ms", LONG, LONG_MAX, "Deprecated (removed in "
       "Kafka 4.0): the largest distance of a timestamp from the broker's clock, on a "
       "side whose before/after setting is Long.MAX_VALUE (Kafka 3.9's rule).", Range(0),
       ["log.message.timestamp.difference.max.ms"]),
    _t("message.format.version", STRING, "3.0-IV1", "Deprecated; " + _DEPRECATED_DOC,
       VersionString(), ["log.message.format.version"]),
    _t("message.downconversion.enable", BOOL, True, "Deprecated; kafkette serves Fetch "
       "v4+ only, which never needs down-conversion. " + _DEPRECATED_DOC, None,
       ["log.message.downconversion.enable"]),
    _t("min.cleanable.dirty.ratio", DOUBLE, 0.5, "Dirty ratio that makes a log "
       "cleanable.", Range(0, 1), ["log.cleaner.min.cleanable.ratio"]),
    _t("min.compaction.lag.ms", LONG, 0, "Youngest age a message must reach before "
       "compaction.", Range(0), ["log.cleaner.min.compaction.lag.ms"]),
    _t("min.insync.replicas", INT, 1, "Fewest in-sync replicas for acks=all.", Range(1),
       ["min.insync.replicas"]),
    _t("preallocate", BOOL, False, "Preallocate segment files.", None, ["log.preallocate"]),
    _t("retention.bytes", LONG, -1, "Largest partition size before old segments are "
       "deleted; -1: no limit.", None, ["log.retention.bytes"]),
    _t("retention.ms", LONG, 604800000, "Age after which segments are deleted; -1: keep "
       "forever.", Range(-1), ["log.retention.ms", "log.retention.minutes", "log.retention.hours"]),
    _t("segment.bytes", INT, 1073741824, "Size at which a segment rolls.", Range(14),
       ["log.segment.bytes"]),
    _t("segment.index.bytes", INT, 10485760, "Largest size of a segment's index.",
       Range(4), ["log.index.size.max.bytes"]),
    _t("segment.jitter.ms", LONG, 0, "Largest random jitter subtracted from segment.ms.",
       Range(0), ["log.roll.jitter.ms", "log.roll.jitter.hours"]),
    _t("segment.ms", LONG, 604800000, "Age at which a segment rolls.", Range(1),
       ["log.roll.ms", "log.roll.hours"]),
    _t("unclean.leader.election.enable", BOOL, False, "Allow unclean leader election.",
       None, ["unclean.leader.election.enable"]),
]

TOPIC_CONFIGS: dict[str, TopicConfigKey] = {k.name: k for k in _TOPIC_KEYS}
# Topic configs Kafka 3.9 accepts and no longer acts on (nor does kafkette): accepted,
# stored and described, and logged once when a topic sets them.
IGNORED_TOPIC_CONFIGS = frozenset({"message.format.version", "message.downconversion.enable"})
# broker key -> topic config name, for hints ("retention.ms is the topic name of ...").
_BROKER_TO_TOPIC = {bk: t.name for t in _TOPIC_KEYS for bk in t.synonyms}


# --------------------------------------------------------------------------- dynamic broker keys

# Kafka's DynamicBrokerConfig.AllDynamicConfigs, restricted to the keys kafkette knows:
# - DynamicLogConfig: the first broker synonym of every topic config (log.retention.ms,
#   not log.retention.hours/minutes; log.roll.ms, not log.roll.hours; ...). kafkette
#   applies them to live partition logs at once.
# - DynamicThreadPool and the listener thread count: accepted, and as ignored as they are
#   in a static file (kafkette is one event loop).
# - LogCleaner's log.cleaner.backoff.ms and DynamicProducerStateManagerConfig's
#   producer.id.expiration.ms: accepted and stored, but not applied live: the
#   maintenance schedule reads the backoff when it starts (so a dynamic value counts
#   from the next start), and kafkette has no producer-state expiry yet.
# Kafka's per-broker dynamic keys (listeners, listener.security.protocol.map, SSL/SASL
# keystores) are not here: kafkette cannot rebind or reload them while running.
DYNAMIC_BROKER_CONFIGS: frozenset[str] = frozenset(
    [t.synonyms[0] for t in _TOPIC_KEYS if t.synonyms]
    + ["num.io.threads", "num.network.threads", "num.replica.fetchers",
       "num.recovery.threads.per.data.dir", "background.threads",
       "log.cleaner.backoff.ms", "producer.id.expiration.ms"])

# Kafka's DynamicBrokerConfig.brokerConfigSynonyms: the broker keys that set the same
# thing, highest precedence first (log.flush.scheduler.interval.ms has no synonym of
# its own there, but is one of log.flush.interval.ms's).
_BROKER_SYNONYMS: dict[str, tuple[str, ...]] = {}
for _group in (("log.roll.ms", "log.roll.hours"),
               ("log.roll.jitter.ms", "log.roll.jitter.hours"),
               ("log.retention.ms", "log.retention.minutes", "log.retention.hours")):
    for _name in _group:
        _BROKER_SYNONYMS[_name] = _group
_BROKER_SYNONYMS["log.flush.interval.ms"] = ("log.flush.interval.ms",
                                             "log.flush.scheduler.interval.ms")
del _group, _name

DYNAMIC_BROKER_CONFIG = "DYNAMIC_BROKER_CONFIG"
DYNAMIC_DEFAULT_BROKER_CONFIG = "DYNAMIC_DEFAULT_BROKER_CONFIG"


# --------------------------------------------------------------------------- helpers

class Listener(NamedTuple):
    """A parsed listener: name (upper case), host (may be "" = every interface), port."""

    name: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.name}://{host}:{self.port}"


class QuorumVoter(NamedTuple):
    node_id: int
    host: str
    port: int


_LISTENER_RE = re.compile(
    r"(?P<name>[A-Za-z0-9_]+)://(?:\[(?P<ipv6>[0-9A-Fa-f:.%A-Za-z]*)\]|(?P<host>[A-Za-z0-9._-]*))"
    r":(?P<port>[0-9]+)")
_VOTER_RE = re.compile(
    r"(?P<id>[0-9]+)@(?:\[(?P<ipv6>[0-9A-Fa-f:.%A-Za-z]+)\]|(?P<host>[A-Za-z0-9._-]+)):(?P<port>[0-9]+)")
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
ADVERTISED_WILDCARD_FALLBACK = "localhost"


def parse_listeners(key: str, entries: Iterable[str]) -> list[Listener]:
    """Parse NAME://host:port entries; raises ConfigError naming the key and entry."""
    out: list[Listener] = []
    for entry in entries:
        m = _LISTENER_RE.fullmatch(entry.strip())
        if not m:
            raise ConfigError(
                f"Invalid value {entry!r} for configuration '{key}': expected "
                f"NAME://host:port, e.g. PLAINTEXT://127.0.0.1:9092", key=key, value=entry)
        port = int(m["port"])
        if port > 65535:
            raise ConfigError(f"Invalid value {entry!r} for configuration '{key}': port "
                              f"{port} is out of range [0, 65535]", key=key, value=entry)
        host = m["ipv6"] if m["ipv6"] is not None else m["host"]
        out.append(Listener(m["name"].upper(), host, port))
    return out


def parse_quorum_voters(entries: Iterable[str]) -> list[QuorumVoter]:
    key = "controller.quorum.voters"
    out: list[QuorumVoter] = []
    for entry in entries:
        m = _VOTER_RE.fullmatch(entry.strip())
        if not m or int(m["port"]) > 65535:
            raise ConfigError(f"Invalid value {entry!r} for configuration '{key}': "
                              f"expected id@host:port, e.g. 1@localhost:9093",
                              key=key, value=entry)
        host = m["ipv6"] if m["ipv6"] is not None else m["host"]
        out.append(QuorumVoter(int(m["id"]), host, int(m["port"])))
    ids = [v.node_id for v in out]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"'{key}' lists a node id twice: {','.join(entries)}", key=key)
    return out


def _unknown_key_error(key: str, *, topic_level: bool) -> ConfigError:
    if topic_level:
        if key in _BROKER_TO_TOPIC:
            hint = (f" ('{key}' is a broker config; the topic-level name is "
                    f"'{_BROKER_TO_TOPIC[key]}')")
        else:
            close = difflib.get_close_matches(key, list(TOPIC_CONFIGS), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
        return ConfigError(f"Unknown topic config name: '{key}'{hint}", key=key)
    if key in TOPIC_CONFIGS:
        synonyms = TOPIC_CONFIGS[key].synonyms
        hint = (f" ('{key}' is a topic config; its broker-wide default is "
                f"'{synonyms[0]}')") if synonyms else ""
    else:
        candidates = list(BROKER_CONFIGS) + list(ALIASES)
        close = difflib.get_close_matches(key.replace("_", ".").lower(), candidates,
                                          n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"Unknown configuration '{key}'{hint}", key=key)


def resolve_key(key: str) -> str:
    """Canonical broker key for `key` (aliases resolved); ConfigError if unknown."""
    key = str(key).strip()
    key = ALIASES.get(key, key)
    if key not in BROKER_CONFIGS:
        override = listener_override_key(key)
        if override is not None:
            return f"listener.name.{override[0].lower()}.{override[1]}"
        raise _unknown_key_error(key, topic_level=False)
    return key


def _flatten(mapping: Mapping[Any, Any], prefix: str, out: dict[str, Any], origin: str) -> None:
    for k, v in mapping.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            _flatten(v, name + ".", out, origin)
        else:
            if name in out:
                raise ConfigError(f"{origin}: '{name}' is set twice", key=name)
            out[name] = v


def _read_properties(text: str) -> dict[str, str]:
    """Java .properties, the common subset: key=value or key: value lines, # and !
    comments, backslash line continuations."""
    out: dict[str, str] = {}
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped[0] in "#!"):
            continue
        if stripped.endswith("\\") and not stripped.endswith("\\\\"):
            pending += stripped[:-1]
            continue
        logical.append(pending + stripped)
        pending = ""
    if pending:
        logical.append(pending)
    for entry in logical:
        m = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)$", entry)
        if m:
            out[m[1]] = m[2]
        else:
            out[entry] = ""
    return out


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping (flat dotted keys and/or nested mappings, flattened with
    dots), or a Java properties file when the name ends in .properties."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"Cannot read config file {path}: {e.strerror or e}") from None
    if path.endswith(".properties"):
        return _read_properties(text)
    import yaml  # only needed when a YAML file is given

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"Config file {path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"Config file {path} must be a mapping of Kafka property names "
                          f"to values, e.g. 'log.retention.hours: 24'")
    out: dict[str, Any] = {}
    _flatten(data, "", out, path)
    return out


def parse_override(item: str) -> tuple[str, str]:
    """'key=value' -> (key, value)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"Invalid override {item!r}: expected key=value, e.g. "
                          f"log.retention.hours=24")
    return key.strip(), value


# --------------------------------------------------------------------------- describe

class ConfigSynonym(NamedTuple):
    name: str
    value: str | None
    source: str


@dataclasses.dataclass(frozen=True)
class ConfigEntry:
    """One DescribeConfigs result entry. `source` and `type` are Kafka's names; the
    wire codes are `source_code` / `type_code`."""

    name: str
    value: str | None
    is_default: bool
    source: str
    sensitive: bool
    read_only: bool
    type: str
    documentation: str
    synonyms: tuple[ConfigSynonym, ...] = ()

    @property
    def source_code(self) -> int:
        return CONFIG_SOURCE_CODES[self.source]

    @property
    def type_code(self) -> int:
        return CONFIG_TYPE_CODES[self.type]


# --------------------------------------------------------------------------- broker

class BrokerConfig:
    """A validated broker configuration.

    `BrokerConfig(raw)` takes a mapping of Kafka property names to raw values (strings
    from the CLI, typed values from YAML). `config["log.retention.hours"]` returns the
    typed value (aliases accepted). Properties give parsed/resolved views.
    `warnings` lists non-fatal remarks that the caller should log at startup.
    """

    def __init__(self, raw: Mapping[str, Any] | None = None):
        self._values: dict[str, Any] = {k.name: k.default for k in _BROKER_KEYS}
        self._explicit: set[str] = set()
        self.warnings: list[str] = []
        # listener name -> {key: typed value} of listener.name.<listener>.<key> settings.
        self._listener_overrides: dict[str, dict[str, Any]] = {}
        spelled: dict[str, str] = {}
        for key, value in (raw or {}).items():
            name = resolve_key(key)
            if name not in BROKER_CONFIGS:  # listener.name.<listener>.<key>
                listener, rest = listener_override_key(name)
                spec = _override_spec(rest)
                self._listener_overrides.setdefault(listener, {})[rest] = _parse_value(
                    str(key).strip(), spec.type, spec.nullable, value, spec.validator)
                continue
            spec = BROKER_CONFIGS[name]
            parsed = _parse_value(str(key).strip(), spec.type, spec.nullable, value, spec.validator)
            if name in spelled and self._values[name] != parsed:
                raise ConfigError(f"'{spelled[name]}' and '{key}' are the same setting "
                                  f"and are given different values", key=name)
            spelled[name] = str(key).strip()
            self._values[name] = parsed
            self._explicit.add(name)
            if spec.ignored:
                self.warnings.append(f"{name} has no effect in kafkette")
        # Dynamic broker configs (with_dynamic): the static values, and the typed values
        # of each dynamic layer, keyed by its DescribeConfigs source name.
        self._static_values: dict[str, Any] = self._values
        self._dynamic: dict[str, dict[str, Any]] = {DYNAMIC_BROKER_CONFIG: {},
                                                    DYNAMIC_DEFAULT_BROKER_CONFIG: {}}
        self._check()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None,
             overrides: Iterable[str] = ()) -> "BrokerConfig":
        """Defaults < file at `path` (YAML or .properties) < `overrides` ("key=value",
        applied in order, so a later one wins)."""
        merged: dict[str, Any] = {}
        if path is not None:
            spelled: dict[str, str] = {}
            for key, value in read_config_file(path).items():
                name = resolve_key(key)
                if name in spelled:
                    raise ConfigError(f"{os.fspath(path)}: '{spelled[name]}' and '{key}' "
                                      f"are the same setting; give only one", key=name)
                spelled[name] = str(key)
                merged[name] = value
        for item in overrides:
            key, value = parse_override(item)
            name = resolve_key(key)
            merged.pop(name, None)  # keep insertion order = order of precedence
            merged[name] = value
        return cls(merged)

    # ---- generic access

    def __getitem__(self, key: str) -> Any:
        name = ALIASES.get(key, key)
        if name not in self._values:
            raise KeyError(str(_unknown_key_error(key, topic_level=False)))
        return self._values[name]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and ALIASES.get(key, key) in self._values

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def is_default(self, key: str) -> bool:
        """True when the key was not set explicitly (file or override)."""
        return ALIASES.get(key, key) not in self._explicit

    @property
    def explicit(self) -> frozenset[str]:
        """Canonical names of the keys set explicitly."""
        return frozenset(self._explicit)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={self._values[k]!r}" for k in sorted(self._explicit))
        return f"BrokerConfig({items})"

    # ---- cross-key checks

    def _check(self) -> None:
        v = self._values
        if not v["log.dirs"]:
            raise ConfigError("'log.dirs' must name at least one directory", key="log.dirs")
        if len(set(v["process.roles"])) != len(v["process.roles"]):
            raise ConfigError(f"'process.roles' lists a role twice: "
                              f"{','.join(v['process.roles'])}", key="process.roles")

        self._protocol_map: dict[str, str] = {}
        for entry in v["listener.security.protocol.map"]:
            name, sep, proto = entry.partition(":")
            if not sep or not name.strip() or proto.strip().upper() not in SECURITY_PROTOCOLS:
                raise ConfigError(
                    f"Invalid value {entry!r} for configuration 'listener.security.protocol.map': "
                    f"expected NAME:PROTOCOL with PROTOCOL one of {', '.join(SECURITY_PROTOCOLS)}",
                    key="listener.security.protocol.map", value=entry)
            self._protocol_map[name.strip().upper()] = proto.strip().upper()

        listeners = parse_listeners("listeners", v["listeners"])
        if not listeners:
            raise ConfigError("'listeners' must name at least one listener", key="listeners")
        self._check_listener_set("listeners", listeners)
        self._listeners = listeners
        names = [l.name for l in listeners]

        self._controller_listener_names = [n.upper() for n in v["controller.listener.names"]]
        if "controller" in v["process.roles"]:
            for n in self._controller_listener_names:
                if n not in names:
                    raise ConfigError(f"controller.listener.names names '{n}', which is not "
                                      f"in listeners ({','.join(v['listeners'])})",
                                      key="controller.listener.names")

        advertised: dict[str, Listener] = {}
        if v["advertised.listeners"] is not None:
            parsed = parse_listeners("advertised.listeners", v["advertised.listeners"])
            for l in parsed:
                if l.host in WILDCARD_HOSTS:
                    raise ConfigError(
                        f"advertised.listeners cannot use the address {str(l)!r}: clients "
                        f"need a host name or address they can connect to, not a wildcard",
                        key="advertised.listeners", value=str(l))
                if l.name not in names:
                    raise ConfigError(
                        f"advertised.listeners names listener '{l.name}', which is not in "
                        f"listeners ({','.join(v['listeners'])})", key="advertised.listeners")
                if l.name in advertised:
                    raise ConfigError(f"advertised.listeners lists '{l.name}' twice",
                                      key="advertised.listeners")
                advertised[l.name] = l
        self._advertised: list[Listener] = []
        for l in listeners:
            if l.name in self._controller_listener_names:
                continue  # clients never see controller listeners
            if l.name in advertised:
                self._advertised.append(advertised[l.name])
            elif l.host in WILDCARD_HOSTS:
                # Kafka would advertise the canonical host name; a wildcard address is
                # never valid for a client to connect to.
                self._advertised.append(l._replace(host=ADVERTISED_WILDCARD_FALLBACK))
                self.warnings.append(
                    f"listener {l} binds every interface; advertising "
                    f"{l.name}://{ADVERTISED_WILDCARD_FALLBACK}:{l.port}. Set "
                    f"advertised.listeners if clients connect from another host")
            else:
                self._advertised.append(l)

        ibl = v["inter.broker.listener.name"]
        # A controller-only node has no broker listener (Kafka checks the inter-broker
        # listener on brokers only), and may share the brokers' settings file.
        if ibl is not None and ibl.upper() not in names and "broker" in v["process.roles"]:
            raise ConfigError(f"inter.broker.listener.name '{ibl}' is not in listeners "
                              f"({','.join(v['listeners'])})", key="inter.broker.listener.name")

        self._voters = parse_quorum_voters(v["controller.quorum.voters"])
        self._check_roles(listeners)
        self._check_security(listeners)
        if v["max.connections.per.ip"] == 0 and not parse_ip_overrides(
                v["max.connections.per.ip.overrides"]):
            raise ConfigError("max.connections.per.ip can be set to zero only if "
                              "max.connections.per.ip.overrides is set",
                              key="max.connections.per.ip")
        qbytes = v["queued.max.request.bytes"]
        if 0 < qbytes < v["socket.request.max.bytes"]:  # <= 0: unbounded, as Kafka
            raise ConfigError("queued.max.request.bytes must be at most 0 or at least "
                              "socket.request.max.bytes", key="queued.max.request.bytes")
        if v["group.min.session.timeout.ms"] > v["group.max.session.timeout.ms"]:
            raise ConfigError("group.min.session.timeout.ms must not exceed "
                              "group.max.session.timeout.ms", key="group.min.session.timeout.ms")
        if v["log.cleaner.min.compaction.lag.ms"] > v["log.cleaner.max.compaction.lag.ms"]:
            raise ConfigError("log.cleaner.min.compaction.lag.ms must not exceed "
                              "log.cleaner.max.compaction.lag.ms",
                              key="log.cleaner.min.compaction.lag.ms")

    def _check_roles(self, listeners: list[Listener]) -> None:
        """process.roles against controller.quorum.voters, as Kafka's KafkaConfig
        (validateAdvertisedControllerListenersNonEmptyForKRaftController & co.)."""
        v = self._values
        roles = set(v["process.roles"])
        node_id = v["node.id"]
        voter_ids = [q.node_id for q in self._voters]
        voters = ",".join(v["controller.quorum.voters"])
        if not roles:
            raise ConfigError("'process.roles' must name broker, controller or both",
                              key="process.roles")
        if not self._voters:
            # No voters: a quorum of one, which only a combined node can be (it must
            # both order the metadata and serve it).
            if roles == {"broker"}:
                raise ConfigError("process.roles=broker needs controller.quorum.voters: a "
                                  "broker-only node follows the metadata log of the "
                                  "controllers listed there", key="controller.quorum.voters")
            if roles == {"controller"}:
                raise ConfigError("process.roles=controller needs controller.quorum.voters "
                                  "(with this node in it): a lone controller-only node would "
                                  "serve no clients; leave process.roles at broker,controller "
                                  "for a single node", key="controller.quorum.voters")
            return
        if "controller" in roles and node_id not in voter_ids:
            raise ConfigError(f"If process.roles contains the 'controller' role, the node id "
                              f"{node_id} must be included in the set of voters "
                              f"controller.quorum.voters={voters}", key="controller.quorum.voters")
        if roles == {"broker"} and node_id in voter_ids:
            raise ConfigError(f"If process.roles contains just the 'broker' role, the node id "
                              f"{node_id} must not be included in the set of voters "
                              f"controller.quorum.voters={voters}", key="controller.quorum.voters")
        if roles == {"controller"} and "listeners" in self._explicit:
            # Kafka: a controller-only node's listeners must all be controller listeners.
            # kafkette's controller serves on its controller.quorum.voters address and
            # binds nothing else, so any other listener would be a promise not kept.
            names = set(self._controller_listener_names)
            others = [str(l) for l in listeners if l.name not in names]
            if others:
                raise ConfigError(
                    f"process.roles=controller: listeners {','.join(others)} would be client "
                    f"listeners, which a controller-only node does not open (it serves its "
                    f"controller.quorum.voters address only); list only listeners named in "
                    f"controller.listener.names, or leave listeners unset", key="listeners")
            me = next(q for q in self._voters if q.node_id == node_id)
            moved = [str(l) for l in listeners if (l.host, l.port) != (me.host, me.port)]
            if moved:
                # kafkette binds the controller listener at the voter entry itself.
                raise ConfigError(
                    f"process.roles=controller: listener {moved[0]} is not this node's "
                    f"controller.quorum.voters address {me.host}:{me.port}, where kafkette's "
                    f"controller listens; make them the same", key="listeners")

    def _check_security(self, listeners: list[Listener]) -> None:
        """What can be checked without reading files: each TLS listener has a key
        store of a format kafkette reads, each SASL listener mechanisms it serves (and
        PLAIN its users). server/tls.py loads the files when the listeners open."""
        names = {l.name for l in listeners}
        if self._voters:
            self._check_node_traffic(listeners)
        for name in self._listener_overrides:
            # A broker-only node reaches the controllers on a listener it does not
            # open: its client-side settings may be prefixed with that listener's name;
            # a controller-only node may share the brokers' settings for theirs.
            ibl = self._values["inter.broker.listener.name"]
            if name not in names and name not in self._controller_listener_names and not (
                    not self.is_broker and ibl is not None and name == ibl.upper()):
                raise ConfigError(f"listener.name.{name.lower()}.* settings name listener "
                                  f"'{name}', which is not in listeners", key="listeners")
        for l in listeners:
            proto = self.security_protocol(l.name)
            if proto in TLS_PROTOCOLS:
                self._check_tls(l.name)
            if proto in SASL_PROTOCOLS:
                mechs = self.sasl_mechanisms(l.name)
                key = ("listener.name." + l.name.lower() + ".sasl.enabled.mechanisms"
                       if self.listener_is_set(l.name, "sasl.enabled.mechanisms")
                       else "sasl.enabled.mechanisms")
                bad = [m for m in mechs if m not in SASL_MECHANISMS]
                if bad or not mechs:
                    raise ConfigError(
                        f"listener {l.name} ({proto}): {key}={','.join(mechs) or '(empty)'}: "
                        f"kafkette serves the SASL mechanisms {', '.join(SASL_MECHANISMS)}"
                        + (f", not {', '.join(bad)}" if bad else "")
                        + f"; set {key}", key=key)
                if "PLAIN" in mechs:
                    self.plain_users(l.name)

    def _check_node_traffic(self, listeners: list[Listener]) -> None:
        """The node-to-node connections of a cluster: brokers reach each other on the
        inter-broker listener and everyone reaches the controllers on the controller
        listener, each with that listener's protocol (kafkette.client's
        ClientSecurity, made by broker/peer_security.py)."""
        v = self._values
        if v["inter.broker.listener.name"] is not None and \
                "security.inter.broker.protocol" in self._explicit:
            # Kafka's KafkaConfig refuses the same pair.
            raise ConfigError("Only one of inter.broker.listener.name and "
                              "security.inter.broker.protocol should be set.",
                              key="security.inter.broker.protocol")
        names = {l.name for l in listeners}
        if self.is_broker:
            ibl = self.inter_broker_listener_name
            if ibl not in names:
                raise ConfigError(
                    f"security.inter.broker.protocol={v['security.inter.broker.protocol']} "
                    f"names the inter-broker listener '{ibl}', which is not in listeners "
                    f"({','.join(v['listeners'])}): set inter.broker.listener.name",
                    key="security.inter.broker.protocol")
            if ibl in self._controller_listener_names:
                raise ConfigError(f"inter.broker.listener.name '{ibl}' is a controller "
                                  f"listener (controller.listener.names); brokers reach "
                                  f"each other on a broker listener",
                                  key="inter.broker.listener.name")
            proto = self.security_protocol(ibl)
            if proto in SASL_PROTOCOLS:
                self.inter_broker_sasl(ibl)
        cl = self.controller_listener_name
        if cl is not None and self.security_protocol(cl) in SASL_PROTOCOLS:
            self.controller_sasl(cl)
        if cl is not None and self.is_controller and cl in names:
            me = next(q for q in self._voters if q.node_id == v["node.id"])
            l = next(l for l in listeners if l.name == cl)
            if (l.host, l.port) != (me.host, me.port) and \
                    self.security_protocol(cl) == "PLAINTEXT":
                self.warnings.append(
                    f"controller listener {l} is served at this node's "
                    f"controller.quorum.voters address {me.host}:{me.port}; {l} itself "
                    f"is not bound")
            elif (l.host, l.port) != (me.host, me.port):
                # The Raft transport serves the controller listener at the voter entry
                # (server/server.py binds no socket of its own for it).
                raise ConfigError(
                    f"controller listener {l} is not this node's controller.quorum.voters "
                    f"address {me.host}:{me.port}, where kafkette's controller listens; "
                    f"make them the same", key="listeners")
        elif cl is not None and self.is_controller and cl not in names and \
                self.security_protocol(cl) != "PLAINTEXT":
            raise ConfigError(f"controller listener '{cl}' ({self.security_protocol(cl)}) "
                              f"must be in listeners on a controller, with its key store",
                              key="listeners")

    def inter_broker_sasl(self, listener: str) -> tuple[str, str, str]:
        """(mechanism, username, password) this broker logs in with on the SASL
        inter-broker listener: sasl.mechanism.inter.broker.protocol and the
        username / password options of the listener's JAAS config for it, as
        Kafka's brokers read them."""
        return self._node_sasl(listener, "sasl.mechanism.inter.broker.protocol", "inter-broker")

    def controller_sasl(self, listener: str) -> tuple[str, str, str]:
        """The same for the SASL controller listener, with
        sasl.mechanism.controller.protocol."""
        return self._node_sasl(listener, "sasl.mechanism.controller.protocol", "controller")

    def _node_sasl(self, listener: str, mech_key: str, what: str) -> tuple[str, str, str]:
        mech = self._values[mech_key].upper()
        if mech not in SASL_MECHANISMS:
            raise ConfigError(
                f"{what} listener {listener} ({self.security_protocol(listener)}) "
                f"logs in with {mech_key}={mech}; kafkette "
                f"serves {', '.join(SASL_MECHANISMS)}: set it to one of those",
                key=mech_key)
        if mech not in self.sasl_mechanisms(listener):
            raise ConfigError(
                f"{mech_key}={mech} is not enabled on the "
                f"{what} listener {listener} (sasl.enabled.mechanisms="
                f"{','.join(self.sasl_mechanisms(listener))})",
                key=mech_key)
        key = (f"listener.name.{listener.lower()}.{mech.lower()}.sasl.jaas.config"
               if f"{mech.lower()}.sasl.jaas.config" in self._listener_overrides.get(
                   listener.upper(), {}) else "sasl.jaas.config")
        text = self.sasl_jaas_config(listener, mech)
        opts = parse_jaas_config(text, key)[2] if text is not None else {}
        if "username" not in opts or "password" not in opts:
            raise ConfigError(
                f"{what} listener {listener}: the node logs in to its peers with "
                f"the username and password options of {key}, which "
                + ("is not set" if text is None else "lacks them"),
                key=key)
        return mech, opts["username"], opts["password"]

    def _check_tls(self, listener: str) -> None:
        def key(k: str) -> str:
            return f"listener.name.{listener.lower()}.{k}" if self.listener_is_set(listener, k) else k

        get = lambda k: self.listener_value(listener, k)  # noqa: E731
        ks_type = get("ssl.keystore.type")
        inline = get("ssl.keystore.certificate.chain") is not None or get("ssl.keystore.key") is not None
        if inline:
            if ks_type != "PEM":
                raise ConfigError(f"listener {listener}: ssl.keystore.certificate.chain / "
                                  f"ssl.keystore.key are a PEM key store, but "
                                  f"{key('ssl.keystore.type')} is {ks_type}; set it to PEM",
                                  key=key("ssl.keystore.type"))
            if get("ssl.keystore.certificate.chain") is None or get("ssl.keystore.key") is None:
                raise ConfigError(f"listener {listener}: a PEM key store given inline needs "
                                  f"both ssl.keystore.certificate.chain and ssl.keystore.key",
                                  key=key("ssl.keystore.key"))
            if get("ssl.keystore.location") is not None:
                raise ConfigError(f"listener {listener}: give ssl.keystore.location or the "
                                  f"inline PEM key store, not both",
                                  key=key("ssl.keystore.location"))
        elif get("ssl.keystore.location") is None:
            raise ConfigError(f"listener {listener} uses TLS ({self.security_protocol(listener)}) "
                              f"and needs a key store: set {key('ssl.keystore.location')} "
                              f"(PEM or PKCS12) or ssl.keystore.certificate.chain and "
                              f"ssl.keystore.key with ssl.keystore.type=PEM",
                              key=key("ssl.keystore.location"))
        elif ks_type == "JKS":
            raise ConfigError(f"listener {listener}: {key('ssl.keystore.type')}=JKS is not "
                              f"supported (kafkette has no Java key store reader): use PEM or "
                              f"PKCS12 (keytool -importkeystore -deststoretype PKCS12)",
                              key=key("ssl.keystore.type"))
        ts_given = (get("ssl.truststore.location") is not None
                    or get("ssl.truststore.certificates") is not None)
        if ts_given:
            ts_type = get("ssl.truststore.type")
            if get("ssl.truststore.certificates") is not None and ts_type != "PEM":
                raise ConfigError(f"listener {listener}: ssl.truststore.certificates is a PEM "
                                  f"trust store, but {key('ssl.truststore.type')} is {ts_type}; "
                                  f"set it to PEM", key=key("ssl.truststore.type"))
            if ts_type == "JKS":
                raise ConfigError(f"listener {listener}: {key('ssl.truststore.type')}=JKS "
                                  f"is not supported (kafkette has no Java key store reader): "
                                  f"give the CA certificates as PEM or PKCS12 (keytool "
                                  f"-importkeystore -deststoretype PKCS12)",
                                  key=key("ssl.truststore.type"))
        if get("ssl.client.auth") != "none" and not ts_given:
            raise ConfigError(f"listener {listener}: ssl.client.auth={get('ssl.client.auth')} "
                              f"needs a trust store to check client certificates against: set "
                              f"ssl.truststore.location or ssl.truststore.certificates",
                              key=key("ssl.client.auth"))
        rules = get("ssl.principal.mapping.rules")
        parse_principal_mapping_rules(rules, key("ssl.principal.mapping.rules"))

    def _check_listener_set(self, key: str, listeners: list[Listener]) -> None:
        seen_names: set[str] = set()
        seen_ports: set[int] = set()
        for l in listeners:
            if l.name in seen_names:
                raise ConfigError(f"'{key}' lists listener name '{l.name}' twice", key=key)
            seen_names.add(l.name)
            if l.port != 0:
                if l.port in seen_ports:
                    raise ConfigError(f"'{key}': each listener needs its own port; "
                                      f"{l.port} is used twice", key=key)
                seen_ports.add(l.port)
            if l.name not in self._protocol_map and l.name not in SECURITY_PROTOCOLS:
                raise ConfigError(
                    f"listener '{l.name}' has no security protocol: add '{l.name}:PLAINTEXT' "
                    f"(or another protocol) to listener.security.protocol.map", key=key)

    # ---- convenient views

    @property
    def node_id(self) -> int:
        return self._values["node.id"]

    @property
    def cluster_id(self) -> str | None:
        return self._values["cluster.id"]

    @property
    def process_roles(self) -> list[str]:
        return list(self._values["process.roles"])

    @property
    def is_broker(self) -> bool:
        """The node has the broker role: hosts partitions, serves clients."""
        return "broker" in self._values["process.roles"]

    @property
    def is_controller(self) -> bool:
        """The node has the controller role: a voter of the metadata quorum."""
        return "controller" in self._values["process.roles"]

    @property
    def broker_rack(self) -> str | None:
        return self._values["broker.rack"]

    @property
    def listeners(self) -> list[Listener]:
        """Where to bind. host "" (and 0.0.0.0) means every interface; port 0, any free port."""
        return list(self._listeners)

    @property
    def advertised_listeners(self) -> list[Listener]:
        """What Metadata tells clients, in listener order, controller listeners left out.
        Never a wildcard host. A port of 0 (inherited from a `:0` listener) must be
        replaced by the caller with the port actually bound."""
        return list(self._advertised)

    @property
    def controller_listener_names(self) -> list[str]:
        return list(self._controller_listener_names)

    @property
    def controller_listener_name(self) -> str | None:
        """The listener whose protocol the controllers' connections use (Kafka: the
        first of controller.listener.names); None: PLAINTEXT."""
        return self._controller_listener_names[0] if self._controller_listener_names else None

    @property
    def inter_broker_listener_name(self) -> str:
        ibl = self._values["inter.broker.listener.name"]
        if ibl is not None:
            return ibl.upper()
        if "security.inter.broker.protocol" in self._explicit:
            return self._values["security.inter.broker.protocol"]
        for l in self._listeners:
            if l.name not in self._controller_listener_names:
                return l.name
        return self._listeners[0].name

    @property
    def listener_security_protocol_map(self) -> dict[str, str]:
        return dict(self._protocol_map)

    def security_protocol(self, listener_name: str) -> str:
        """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL for a listener name."""
        name = listener_name.upper()
        return self._protocol_map.get(name, name if name in SECURITY_PROTOCOLS else "PLAINTEXT")

    def listener_value(self, listener_name: str, key: str) -> Any:
        """A security key for one listener: listener.name.<listener>.<key> if set,
        else the broker-wide key (Kafka's valuesWithPrefixOverride)."""
        over = self._listener_overrides.get(listener_name.upper(), {})
        return over[key] if key in over else self._values[key]

    def listener_is_set(self, listener_name: str, key: str) -> bool:
        return key in self._listener_overrides.get(listener_name.upper(), {})

    def sasl_jaas_config(self, listener_name: str, mechanism: str) -> str | None:
        """listener.name.<listener>.<mechanism>.sasl.jaas.config, else sasl.jaas.config."""
        over = self._listener_overrides.get(listener_name.upper(), {})
        return over.get(f"{mechanism.lower()}.sasl.jaas.config", self._values["sasl.jaas.config"])

    def connections_max_reauth_ms(self, listener_name: str, mechanism: str) -> int:
        over = self._listener_overrides.get(listener_name.upper(), {})
        key = f"{mechanism.lower()}.connections.max.reauth.ms"
        return over[key] if key in over else self.listener_value(listener_name,
                                                                 "connections.max.reauth.ms")

    def sasl_mechanisms(self, listener_name: str) -> list[str]:
        return list(self.listener_value(listener_name, "sasl.enabled.mechanisms"))

    def plain_users(self, listener_name: str) -> dict[str, str]:
        """PLAIN's users on a listener, from its JAAS config."""
        text = self.sasl_jaas_config(listener_name, "PLAIN")
        key = (f"listener.name.{listener_name.lower()}.plain.sasl.jaas.config"
               if f"plain.sasl.jaas.config" in self._listener_overrides.get(
                   listener_name.upper(), {}) else "sasl.jaas.config")
        if text is None:
            raise ConfigError(f"listener {listener_name} enables SASL mechanism PLAIN but has "
                              f"no JAAS config: set {key} to "
                              f"'{PLAIN_LOGIN_MODULE} required user_<name>=\"<password>\";'",
                              key=key)
        return plain_users(text, key)

    @property
    def controller_quorum_voters(self) -> list[QuorumVoter]:
        return list(self._voters)

    @property
    def log_dirs(self) -> list[str]:
        return list(self._values["log.dirs"])

    @property
    def retention_ms(self) -> int:
        """log.retention.ms > log.retention.minutes > log.retention.hours; -1 = forever."""
        v = self._values
        if v["log.retention.ms"] is not None:
            ms = v["log.retention.ms"]
        elif v["log.retention.minutes"] is not None:
            ms = v["log.retention.minutes"] * MS_PER_MINUTE
        else:
            ms = v["log.retention.hours"] * MS_PER_HOUR
        return -1 if ms < 0 else ms

    @property
    def retention_bytes(self) -> int:
        return self._values["log.retention.bytes"]

    @property
    def segment_bytes(self) -> int:
        return self._values["log.segment.bytes"]

    @property
    def segment_ms(self) -> int:
        """log.roll.ms > log.roll.hours."""
        v = self._values
        return v["log.roll.ms"] if v["log.roll.ms"] is not None else v["log.roll.hours"] * MS_PER_HOUR

    @property
    def segment_jitter_ms(self) -> int:
        v = self._values
        if v["log.roll.jitter.ms"] is not None:
            return v["log.roll.jitter.ms"]
        return v["log.roll.jitter.hours"] * MS_PER_HOUR

    @property
    def flush_interval_messages(self) -> int | None:
        """None: never force an fsync by message count (Kafka's Long.MAX_VALUE default)."""
        n = self._values["log.flush.interval.messages"]
        return None if n >= LONG_MAX else n

    @property
    def flush_interval_ms(self) -> int | None:
        """log.flush.interval.ms, else log.flush.scheduler.interval.ms; None: never."""
        v = self._values
        ms = v["log.flush.interval.ms"]
        if ms is None:
            ms = v["log.flush.scheduler.interval.ms"]
        return None if ms >= LONG_MAX else ms

    @property
    def offsets_retention_ms(self) -> int:
        return self._values["offsets.retention.minutes"] * MS_PER_MINUTE

    # ---- DescribeConfigs

    def describe(self, names: Iterable[str] | None = None) -> list[ConfigEntry]:
        """Entries for DescribeConfigs on this broker (its node id), sorted by name;
        with `names`, only those (unknown names are skipped, as Kafka does). Values are
        the effective ones; the source and synonyms follow Kafka's ConfigHelper: per
        source, highest first (DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG,
        STATIC_BROKER_CONFIG, DEFAULT_CONFIG), the key's synonyms that are set there,
        from the key itself on. Keys in DYNAMIC_BROKER_CONFIGS are not read-only."""
        return [self._entry(name, self._values[name], self.broker_synonyms(name))
                for name in self._describe_keys(names)]

    def describe_dynamic_default(self, names: Iterable[str] | None = None) -> list[ConfigEntry]:
        """DescribeConfigs on the cluster-wide default resource (BROKER, name ""): as
        Kafka, only the dynamic defaults that are set, each with source
        DYNAMIC_DEFAULT_BROKER_CONFIG."""
        layer = self._dynamic[DYNAMIC_DEFAULT_BROKER_CONFIG]
        out = []
        for name in self._describe_keys(names):
            if name in layer:
                synonyms = [s for s in self.broker_synonyms(name)
                            if s.source == DYNAMIC_DEFAULT_BROKER_CONFIG]
                out.append(self._entry(name, layer[name], synonyms))
        return out

    def _describe_keys(self, names: Iterable[str] | None) -> list[str]:
        if names is None:
            return sorted(self._values)
        return [ALIASES.get(n, n) for n in names if ALIASES.get(n, n) in self._values]

    def _entry(self, name: str, typed: Any, synonyms: list[ConfigSynonym]) -> ConfigEntry:
        spec = BROKER_CONFIGS[name]
        source = synonyms[0].source if synonyms else "DEFAULT_CONFIG"
        if spec.sensitive:  # Kafka's PASSWORD type: never shown
            return ConfigEntry(
                name=name, value=None, is_default=source == "DEFAULT_CONFIG", source=source,
                sensitive=True, read_only=True, type="PASSWORD", documentation=spec.doc,
                synonyms=tuple(s._replace(value=None) for s in synonyms))
        return ConfigEntry(
            name=name, value=format_value(spec.type, typed), is_default=source == "DEFAULT_CONFIG",
            source=source, sensitive=False, read_only=name not in DYNAMIC_BROKER_CONFIGS,
            type=KAFKA_TYPE_NAMES[spec.type], documentation=spec.doc, synonyms=tuple(synonyms))

    def broker_synonyms(self, name: str) -> list[ConfigSynonym]:
        """Kafka's ConfigHelper.configSynonyms for a broker key: its synonym group
        (log.retention.ms/minutes/hours, ...) per source, highest source first,
        dropping the entries before the first one for `name` itself."""
        group = _BROKER_SYNONYMS.get(name, (name,))
        out: list[ConfigSynonym] = []
        for source, layer in self._layers():
            for n in group:
                if n in layer:
                    out.append(ConfigSynonym(n, format_value(BROKER_CONFIGS[n].type, layer[n]), source))
        first = next((i for i, s in enumerate(out) if s.name == name), len(out))
        return out[first:]

    def _layers(self) -> list[tuple[str, Mapping[str, Any]]]:
        static = {k: self._static_values[k] for k in self._explicit}
        defaults = {k.name: k.default for k in _BROKER_KEYS if k.default is not None}
        return [(DYNAMIC_BROKER_CONFIG, self._dynamic[DYNAMIC_BROKER_CONFIG]),
                (DYNAMIC_DEFAULT_BROKER_CONFIG, self._dynamic[DYNAMIC_DEFAULT_BROKER_CONFIG]),
                ("STATIC_BROKER_CONFIG", static), ("DEFAULT_CONFIG", defaults)]

    # ---- dynamic broker configs (KIP-226)

    def with_dynamic(self, cluster_default: Mapping[str, Any] | None = None,
                     per_broker: Mapping[str, Any] | None = None, *,
                     strict: bool = False) -> "BrokerConfig":
        """A new config: this one's static values with the dynamic layers on top
        (per-broker > cluster-wide default > static > built-in default, Kafka's order).
        Values are raw (strings from the metadata log); None means unset.

        strict=False (applying stored configs): a non-dynamic key or a bad value is
        skipped and reported in `warnings`, and if the result fails the cross-key
        checks no dynamic value is applied, as Kafka's DynamicBrokerConfig ignores
        invalid stored configs. strict=True raises ConfigError instead."""
        new = copy.copy(self)
        base = self._static_values
        new._values = dict(base)
        new._dynamic = {DYNAMIC_BROKER_CONFIG: {}, DYNAMIC_DEFAULT_BROKER_CONFIG: {}}
        new.warnings = [w for w in self.warnings if not w.startswith("dynamic config ")]
        problems: list[str] = []
        for source, layer in ((DYNAMIC_DEFAULT_BROKER_CONFIG, cluster_default or {}),
                              (DYNAMIC_BROKER_CONFIG, per_broker or {})):
            for key, raw in layer.items():
                if raw is None:
                    continue
                try:
                    if key not in DYNAMIC_BROKER_CONFIGS:
                        raise ConfigError(f"'{key}' cannot be updated dynamically", key=key)
                    spec = BROKER_CONFIGS[key]
                    value = _parse_value(key, spec.type, spec.nullable, raw, spec.validator)
                except ConfigError as e:
                    if strict:
                        raise
                    problems.append(f"dynamic config {key}={raw!r} ignored: {e}")
                    continue
                if value is None:
                    continue
                new._dynamic[source][key] = value
                new._values[key] = value
        warnings = list(new.warnings)  # _check() re-adds the listener warnings
        try:
            new._check()
        except ConfigError as e:
            if strict:
                raise
            problems.append(f"dynamic config ignored: {e}")
            new._values = dict(base)
            new._dynamic = {DYNAMIC_BROKER_CONFIG: {}, DYNAMIC_DEFAULT_BROKER_CONFIG: {}}
            new._check()
        new.warnings = warnings + problems
        return new

    @property
    def static(self) -> "BrokerConfig":
        """This config without its dynamic layers."""
        return self.with_dynamic() if any(self._dynamic.values()) else self

    def dynamic_configs(self, source: str) -> dict[str, Any]:
        """The typed values of one dynamic layer (DYNAMIC_BROKER_CONFIG or
        DYNAMIC_DEFAULT_BROKER_CONFIG)."""
        return dict(self._dynamic[source])

    def static_value(self, key: str) -> Any:
        """The value from the file / --set / built-in default, ignoring dynamic layers."""
        return self._static_values[ALIASES.get(key, key)]

    def source(self, key: str) -> str:
        """Where the key's own value comes from (Kafka's DescribeConfigs source name)."""
        name = ALIASES.get(key, key)
        for source in (DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG):
            if name in self._dynamic[source]:
                return source
        return "STATIC_BROKER_CONFIG" if name in self._explicit else "DEFAULT_CONFIG"

    def topic_defaults(self) -> dict[str, str]:
        return topic_defaults(self)


# --------------------------------------------------------------------------- topics

def _topic_default_typed(broker: BrokerConfig, name: str) -> Any:
    special = {
        "retention.ms": lambda: broker.retention_ms,
        "segment.ms": lambda: broker.segment_ms,
        "segment.jitter.ms": lambda: broker.segment_jitter_ms,
        "flush.ms": lambda: (broker.flush_interval_ms
                             if broker.flush_interval_ms is not None else LONG_MAX),
    }
    if name in special:
        return special[name]()
    return broker[TOPIC_CONFIGS[name].synonyms[0]]


def topic_defaults(broker_config: BrokerConfig | None = None) -> dict[str, str]:
    """Each topic config's effective default (as a string, as DescribeConfigs shows it),
    derived from the broker config."""
    broker = broker_config if broker_config is not None else BrokerConfig()
    return {name: format_value(spec.type, _topic_default_typed(broker, name))  # type: ignore[misc]
            for name, spec in TOPIC_CONFIGS.items()}


def parse_topic_config(name: str, value: Any) -> Any:
    """A topic config value, typed (cleanup.policy -> list of str, ...)."""
    spec = TOPIC_CONFIGS.get(name)
    if spec is None:
        raise _unknown_key_error(name, topic_level=True)
    return _parse_value(name, spec.type, False, value, spec.validator)


def validate_topic_configs(configs: Mapping[str, str | None],
                           broker_config: BrokerConfig | None = None) -> dict[str, str | None]:
    """Check topic config overrides (CreateTopics, AlterConfigs, ...). Returns them
    normalised to Kafka's string form; a None value (reset to default) stays None.
    Raises ConfigError (-> INVALID_CONFIG) for an unknown name or a bad value, or when
    min.compaction.lag.ms exceeds max.compaction.lag.ms (the broker's defaults filling
    in when `broker_config` is given)."""
    out: dict[str, str | None] = {}
    typed: dict[str, Any] = {}
    for name, value in configs.items():
        if name not in TOPIC_CONFIGS:
            raise _unknown_key_error(name, topic_level=True)
        if value is None:
            out[name] = None
            continue
        typed[name] = parse_topic_config(name, value)
        out[name] = format_value(TOPIC_CONFIGS[name].type, typed[name])

    def effective(n: str) -> Any:
        if n in typed:
            return typed[n]
        return _topic_default_typed(broker_config, n) if broker_config is not None else None

    lo, hi = effective("min.compaction.lag.ms"), effective("max.compaction.lag.ms")
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"conflicting topic configs: min.compaction.lag.ms ({lo}) is "
                          f"greater than max.compaction.lag.ms ({hi})", key="min.compaction.lag.ms")
    return out


def effective_topic_config(broker_config: BrokerConfig | None,
                           overrides: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """Typed effective config of a topic: its overrides over the broker's defaults.
    For the log layer: ints, bools, a float, and cleanup.policy as a list."""
    broker = broker_config if broker_config is not None else BrokerConfig()
    out = {name: _topic_default_typed(broker, name) for name in TOPIC_CONFIGS}
    for name, value in (overrides or {}).items():
        if value is not None:
            out[name] = parse_topic_config(name, value)
    return out


def describe_topic_configs(broker_config: BrokerConfig | None,
                           overrides: Mapping[str, str | None] | None = None,
                           names: Iterable[str] | None = None) -> list[ConfigEntry]:
    """DescribeConfigs entries for a topic: DYNAMIC_TOPIC_CONFIG for its overrides,
    DYNAMIC_BROKER_CONFIG / DYNAMIC_DEFAULT_BROKER_CONFIG where a dynamic broker config
    sets the default, STATIC_BROKER_CONFIG where the broker's file does, DEFAULT_CONFIG
    otherwise. Synonyms follow Kafka's order: the topic override, then the broker keys
    per source (dynamic per-broker, dynamic cluster default, static; within a source
    highest precedence first), then the built-in default."""
    broker = broker_config if broker_config is not None else BrokerConfig()
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    wanted = sorted(TOPIC_CONFIGS) if names is None else [n for n in names if n in TOPIC_CONFIGS]
    out = []
    for name in wanted:
        spec = TOPIC_CONFIGS[name]
        synonyms: list[ConfigSynonym] = []
        if name in overrides:
            synonyms.append(ConfigSynonym(
                name, format_value(spec.type, parse_topic_config(name, overrides[name])),
                "DYNAMIC_TOPIC_CONFIG"))
        for source in (DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG):
            layer = broker.dynamic_configs(source)
            for bk in spec.synonyms:
                if bk in layer:
                    synonyms.append(ConfigSynonym(
                        bk, format_value(BROKER_CONFIGS[bk].type, layer[bk]), source))
        for bk in spec.synonyms:
            if not broker.is_default(bk):
                synonyms.append(ConfigSynonym(
                    bk, format_value(BROKER_CONFIGS[bk].type, broker.static_value(bk)),
                    "STATIC_BROKER_CONFIG"))
        base = next((bk for bk in reversed(spec.synonyms)
                     if BROKER_CONFIGS[bk].default is not None), None)
        if base is not None:
            synonyms.append(ConfigSynonym(
                base, format_value(BROKER_CONFIGS[base].type, BROKER_CONFIGS[base].default),
                "DEFAULT_CONFIG"))
        if name in overrides:
            value, source = synonyms[0].value, "DYNAMIC_TOPIC_CONFIG"
        else:
            value = format_value(spec.type, _topic_default_typed(broker, name))
            source = synonyms[0].source if synonyms else "DEFAULT_CONFIG"
        out.append(ConfigEntry(
            name=name, value=value, is_default=source == "DEFAULT_CONFIG", source=source,
            sensitive=False, read_only=False, type=KAFKA_TYPE_NAMES[spec.type],
            documentation=spec.doc, synonyms=tuple(synonyms)))
    return out


# --------------------------------------------------------------------------- dynamic broker configs

def validate_dynamic_broker_configs(broker_config: BrokerConfig,
                                    changes: Mapping[str, str | None],
                                    cluster_default: Mapping[str, str | None],
                                    per_broker: Mapping[str, str | None],
                                    *, per_broker_resource: bool) -> dict[str, str | None]:
    """Check changes to the dynamic configs of one BROKER resource (the cluster-wide
    default, or one node when `per_broker_resource`), given the values stored for both
    levels. Returns the changes normalised to Kafka's string form (None = delete).

    Errors, as Kafka's ConfigAdminManager answers them:
    - a name kafkette does not know: ConfigError (INVALID_CONFIG). Kafka accepts unknown
      broker keys (they may belong to plugins); kafkette has no plugins, so a typo
      would otherwise be stored silently.
    - a read-only key ("Cannot update these configs dynamically"), a bad value, or a
      result that fails the cross-key checks: InvalidRequestError (INVALID_REQUEST;
      Kafka keeps that code for compatibility, KAFKA-13609)."""
    unknown = [k for k in changes if k not in BROKER_CONFIGS and k not in ALIASES]
    if unknown:
        raise _unknown_key_error(unknown[0], topic_level=False)
    read_only = sorted(k for k in changes if k not in DYNAMIC_BROKER_CONFIGS)
    if read_only:
        raise InvalidRequestError("Cannot update these configs dynamically: "
                                  + ", ".join(read_only))
    out: dict[str, str | None] = {}
    for key, raw in changes.items():
        if raw is None:
            out[key] = None
            continue
        spec = BROKER_CONFIGS[key]
        try:
            typed = _parse_value(key, spec.type, spec.nullable, raw, spec.validator)
        except ConfigError as e:
            raise InvalidRequestError(str(e)) from None
        out[key] = format_value(spec.type, typed)
    layer = dict(per_broker if per_broker_resource else cluster_default)
    for key, value in out.items():
        if value is None:
            layer.pop(key, None)
        else:
            layer[key] = value
    try:
        if per_broker_resource:
            broker_config.with_dynamic(cluster_default, layer, strict=True)
        else:
            broker_config.with_dynamic(layer, per_broker, strict=True)
    except ConfigError as e:
        raise InvalidRequestError(f"Invalid dynamic configuration: {e}") from None
    return out
