"""Command line: `kafkette serve`, `kafkette healthcheck`, `kafkette topics`, `kafkette groups`,
`kafkette transactions`, `kafkette acls`, `kafkette users`.

    kafkette serve [--config broker.yaml] [--set key=value ...] [--from-env]

Keys are Kafka's property names (listeners, advertised.listeners, log.dirs,
num.partitions, ...). Unknown keys and bad values stop the start with a clear error.
`--from-env` adds the KAFKA_* environment variables as settings at its place among
the --set options (later ones win), with the naming of Confluent's and Apache's
images: KAFKA_ dropped, lower case, `_` -> `.`, `__` -> `_`, `___` -> `-`
(KAFKA_LISTENER_SECURITY_PROTOCOL_MAP, KAFKA_SASL_ENABLED_MECHANISMS,
KAFKA_LISTENER_NAME_SASL__SSL_SCRAM___SHA___512_SASL_JAAS_CONFIG). A variable that names
no setting is logged and ignored. The container image's entrypoint uses it.
"""
from __future__ import annotations

import argparse
import sys

from kafkette.config import BrokerConfig, ConfigError
from kafkette.logging import configure_logging, get_logger


#: Environment variables of Kafka's start scripts (JVM and logging options), not settings.
_SCRIPT_ENV = frozenset({"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS",
                         "KAFKA_LOG4J_OPTS", "KAFKA_JMX_OPTS", "KAFKA_GC_LOG_OPTS",
                         "KAFKA_DEBUG", "KAFKA_HOME", "KAFKA_VERSION"})


def env_settings(environ, ignored: list[str] | None = None) -> list[str]:
    """`key=value` settings of the KAFKA_* variables in `environ` (see the module doc),
    in name order. A variable that names no kafkette setting is left out (and its name
    appended to `ignored`): a container's environment holds more than settings
    (Kubernetes service links add KAFKA_PORT, KAFKA_SERVICE_HOST, ... for a service
    named kafka), and Kafka itself only warns about a property it does not know."""
    from kafkette.config import resolve_key
    out = []
    for name in sorted(environ):
        if not name.startswith("KAFKA_") or name in _SCRIPT_ENV or len(name) <= 6:
            continue
        key = name[6:].lower().replace("___", "\0").replace("__", "\1").replace("_", ".")
        key = key.replace(chr(0), '-').replace(chr(1), '_')
        try:
            resolve_key(key)
        except ConfigError:
            if ignored is not None:
                ignored.append(name)
            continue
        out.append(f"{key}={environ[name]}")
    return out


class _FromEnv(argparse.Action):
    """--from-env: the KAFKA_* settings go into the --set list where the flag stands."""

    def __call__(self, parser, namespace, values, option_string=None):
        import os
        items = list(getattr(namespace, "set", None) or [])
        ignored = list(getattr(namespace, "env_ignored", None) or [])
        setattr(namespace, "set", items + env_settings(os.environ, ignored))
        setattr(namespace, "env_ignored", ignored)


def _serve(args) -> int:
    configure_logging()
    log = get_logger("kafkette")
    try:
        config = BrokerConfig.load(args.config, args.set or [])
        if config["schema.registry.listener"]:
            from kafkette.server.schema_registry import registry_client_security
            registry_client_security(config)
    except ConfigError as e:
        print(f"kafkette: configuration error: {e}", file=sys.stderr)
        return 2
    from kafkette.server.server import run
    for warning in config.warnings:
        log.warning("config", note=warning)
    for name in getattr(args, "env_ignored", None) or []:
        log.warning("environment variable names no setting; ignored", variable=name)
    log.info("starting kafkette", node_id=config.node_id,
             listeners=[str(x) for x in config.listeners], log_dirs=config.log_dirs)
    from kafkette.errors import KafkaStorageError
    try:
        run(config)
    except KafkaStorageError as e:
        # A log dir locked by another process, or a partition in two log dirs: the
        # message says what to fix, a traceback would only hide it.
        print(f"kafkette: cannot start: {e.message}", file=sys.stderr)
        return 1
    return 0


def api_versions_probe(host: str, port: int, timeout: float = 3.0, security=None) -> int:
    """Send ApiVersions v0 (after TLS / SASL with `security`) and return the error code
    of the answer (OSError when there is none)."""
    from kafkette.client import probe_api_versions
    return probe_api_versions(host, port, timeout, security=security)


def _healthcheck(args) -> int:
    host, _, port = args.bootstrap_server.rpartition(":")
    try:
        security = None
        if args.command_config:
            from kafkette.client_security import ClientSecurity
            from kafkette.tools.common import load_properties
            security = ClientSecurity.from_properties(load_properties(args.command_config))
        err = api_versions_probe(host or "127.0.0.1", int(port), security=security)
    except Exception as e:  # noqa: BLE001 - any failure is "unhealthy", said why
        print(f"unhealthy: {e}", file=sys.stderr)
        return 1
    if err != 0:
        print(f"unhealthy: ApiVersions error {err}", file=sys.stderr)
        return 1
    print("ok")
    return 0


def _bench(args) -> int:
    from kafkette.bench.__main__ import main as bench_main
    return bench_main(args.bench_args)


#: kafka-transactions.sh's options that come before its command there; `kafkette
#: transactions list --bootstrap-server X` takes them anywhere, as `kafkette topics` does.
_TXN_GLOBAL_OPTIONS = ("--bootstrap-server", "--command-config")


def transactions_argv(args: list[str]) -> list[str]:
    """`kafkette transactions COMMAND [options]` as kafka-transactions.sh's command line:
    the global options moved before the command, the rest left in order."""
    front, rest = [], []
    i = 0
    while i < len(args):
        a = args[i]
        name = a.split("=", 1)[0]
        if name in _TXN_GLOBAL_OPTIONS:
            if "=" in a:
                front.append(a)
            else:
                front.extend(args[i:i + 2])
                i += 1
        else:
            rest.append(a)
        i += 1
    return front + rest


def _transactions(args) -> int:
    # a thin alias of kafka-transactions.sh (kafkette/tools/kafka_transactions.py):
    # same commands, output and exit codes
    from kafkette.tools import kafka_transactions
    return kafka_transactions.main(transactions_argv(args.txn_args), prog="kafkette transactions")


def _acls(args) -> int:
    from kafkette.tools import kafka_acls
    return kafka_acls.short_main(args.acl_args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kafkette", description="A Kafka-compatible broker")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run a broker")
    s.add_argument("--config", "-c", help="YAML (or .properties) file of Kafka property names")
    s.add_argument("--set", "-s", action="append", metavar="KEY=VALUE",
                   help="override one property; repeatable")
    s.add_argument("--from-env", nargs=0, action=_FromEnv,
                   help="add the KAFKA_* environment variables as settings here "
                        "(KAFKA_SASL_ENABLED_MECHANISMS -> sasl.enabled.mechanisms)")
    s.set_defaults(func=_serve)
    h = sub.add_parser("healthcheck", help="exit 0 when a broker answers ApiVersions")
    h.add_argument("--bootstrap-server", default="127.0.0.1:9092")
    h.add_argument("--command-config", metavar="FILE",
                   help="client properties for a TLS / SASL listener (security.protocol, "
                        "sasl.*, ssl.*)")
    h.set_defaults(func=_healthcheck)
    # `kafkette bench [options]` = `make bench` (kafkette/bench)
    b = sub.add_parser("bench", help="benchmarks side by side with librdkafka's mock cluster",
                       add_help=False, prefix_chars="\0")
    b.add_argument("bench_args", nargs="*")
    b.set_defaults(func=_bench)
    # `kafkette cluster --brokers N` (kafkette/cluster_runner.py)
    from kafkette import cluster_runner as _cluster_runner
    _cluster_runner.add_parser(sub)
    # `kafkette topics` and `kafkette groups` (kafkette/tools)
    from kafkette.tools import groups as _groups, topics as _topics, users as _users
    _topics.add_parser(sub)
    _groups.add_parser(sub)
    _users.add_parser(sub)
    # `kafkette schemas list|get|register` (a Schema Registry's REST API)
    from kafkette.tools import schemas as _schemas
    _schemas.add_parser(sub)
    # `kafkette acls add|list|remove [options]` = kafka-acls.sh --add|--list|--remove
    c = sub.add_parser("acls", help="add, list and remove ACLs (like kafka-acls.sh)",
                       add_help=False, prefix_chars="\0")
    c.add_argument("acl_args", nargs="*")
    c.set_defaults(func=_acls)
    # `kafkette transactions list|describe|...` = kafka-transactions.sh (its own parser)
    t = sub.add_parser("transactions", help="list, describe, find hanging and abort "
                                            "transactions (like kafka-transactions.sh)",
                       add_help=False, prefix_chars="\0")
    t.add_argument("txn_args", nargs="*")
    t.set_defaults(func=_transactions)
    args = p.parse_args(argv)
    if args.command in ("topics", "groups", "users"):
        from kafkette.tools.client import ToolError
        try:
            return args.func(args)
        except ToolError as e:
            print(f"Error: {e}", file=sys.stderr)
            return 1
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
