"""What Kafka's command-line tools (kafka-topics.sh and friends, kafkette.tools.kafka_*)
share: option parsing with Kafka's conventions, client config files
(--command-config, --producer.config, --consumer.config), and the exit-code wrapper.

Kafka's tools parse options with joptsimple: `--name value` or `--name=value`, long
names only, no abbreviations. An option we do not serve is refused with Kafka's
"X is not a recognized option" and exit code 1, never silently ignored: a CI script
that relies on a flag must learn at once that the flag does nothing here.
"""
from __future__ import annotations

import argparse
import sys

from kafkette.client_security import (
    SECURITY_KEYS, ClientSecurity, SecurityConfigError, unused_security_keys,
)
from kafkette.tools.client import AdminClient, ToolError


class UsageError(Exception):
    """A bad command line: printed with a pointer to --help, exit code 1."""


class HelpRequested(Exception):
    pass


class ToolParser(argparse.ArgumentParser):
    """argparse with joptsimple's manners: no prefix abbreviations (`--top` is not
    `--topic`), unknown options refused, errors raised instead of sys.exit(2)."""

    def __init__(self, prog: str, description: str):
        super().__init__(prog=prog, description=description, add_help=False,
                         allow_abbrev=False)
        self.add_argument("--help", action="store_true", help="Print usage information.")
        self.add_argument("--version", action="store_true",
                          help="Display Kafka version (here: kafkette's).")

    def error(self, message):
        raise UsageError(message)

    def parse(self, argv: list[str] | None):
        argv = sys.argv[1:] if argv is None else list(argv)
        if "--help" in argv or "-h" in argv:
            raise HelpRequested()
        args, extra = self.parse_known_args(argv)
        if extra:
            opt = extra[0]
            name = opt.lstrip("-").split("=", 1)[0]
            if opt.startswith("-"):
                raise UsageError(f"{name} is not a recognized option")
            raise UsageError(f"Found non-option argument(s): {' '.join(extra)}")
        return args


def run_tool(parser: ToolParser, argv, body, *, error_prefix: str = "Error: ",
             error_stream=None) -> int:
    """Parse, run `body(args)` and map failures to Kafka's exit codes: 0 for success
    and for --help, 1 for a usage error (message and --help pointer on stderr) and
    for a failed command (`error_prefix` + message on `error_stream`, stderr unless
    the tool is one of Kafka's that print errors on stdout, as TopicCommand does)."""
    # kafkette's client logs through structlog, whose unconfigured default prints every
    # level on stdout: a tool's stdout is its output, so warnings and worse go to stderr
    # (Kafka's tools: tools-log4j.properties, WARN to stderr), nothing else
    from kafkette.logging import configure_logging
    configure_logging("WARNING", stream=sys.stderr)
    try:
        args = parser.parse(argv)
        if args.version:
            from kafkette.client import _software_version_string
            print(f"{_software_version_string()} (kafkette)")
            return 0
        rc = body(args)
        return 0 if rc is None else rc
    except HelpRequested:
        parser.print_help(sys.stdout)
        return 0
    except UsageError as e:
        print(str(e), file=sys.stderr)
        print(f"Run '{parser.prog} --help' for the supported options.", file=sys.stderr)
        return 1
    except ToolError as e:
        print(f"{error_prefix}{e}", file=error_stream or sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `kafka-console-consumer.sh ... | head`: the reader went away, not an error of ours
        return 0


# --------------------------------------------------------------------------- config files

def load_properties(path: str) -> dict[str, str]:
    """A Java .properties file: `key=value`, `key: value` or `key value`, `#`/`!`
    comments, trailing `\\` continues a line. (Unicode escapes are not decoded.)"""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ToolError(f"cannot read {path}: {e.strerror}") from None
    out: dict[str, str] = {}
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.lstrip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        for i, ch in enumerate(line):
            if ch in "=: \t":
                key, rest = line[:i], line[i + 1:].lstrip()
                if ch in " \t" and rest[:1] in ("=", ":"):
                    rest = rest[1:].lstrip()
                break
        else:
            key, rest = line, ""
        out[key.strip()] = rest
    return out


def parse_key_values(items: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise UsageError(f"Invalid {option} '{item}': expected key=value")
        # the value as given (Kafka's parseKeyValueArgs does not trim: key.separator=" | ")
        out[k.strip()] = v
    return out


#: Client settings every tool understands: the connection basics and the security keys
#: of kafkette.client_security (TLS, SASL PLAIN / SCRAM). Anything else in a config file
#: (GSSAPI, OAUTHBEARER, tuning we do not have) is refused rather than ignored.
COMMON_CLIENT_KEYS = {"bootstrap.servers", "client.id", "request.timeout.ms",
                      "default.api.timeout.ms"} | SECURITY_KEYS


def check_client_config(props: dict[str, str], allowed: set[str], source: str) -> None:
    unknown = sorted(set(props) - allowed - COMMON_CLIENT_KEYS)
    if unknown:
        raise ToolError(f"unsupported client config {', '.join(unknown)} (from {source}); "
                        f"kafkette's tools understand: "
                        f"{', '.join(sorted(allowed | COMMON_CLIENT_KEYS))}")
    client_security(props, source)   # refuse a setting that cannot be honoured now


def client_security(props: dict[str, str], source: str) -> ClientSecurity | None:
    """The TLS / SASL settings of a client config (None: PLAINTEXT); ToolError naming
    the file when one cannot be honoured (a JKS trust store, GSSAPI, ...)."""
    try:
        security = ClientSecurity.from_properties(props)
    except SecurityConfigError as e:
        raise ToolError(f"{e} (from {source or 'the client config'})") from None
    unused = unused_security_keys(props)
    if unused:
        from kafkette.logging import get_logger
        get_logger("kafkette.tools").warning(
            "security settings ignored: security.protocol is PLAINTEXT", keys=unused,
            source=source or "the client config")
    return security


def client_settings(props: dict[str, str], bootstrap: str | None) -> tuple[str, str | None, float]:
    """(bootstrap servers, client id, request timeout in s) from the --bootstrap-server
    flag (which wins, as in Kafka) and a client config."""
    servers = bootstrap or props.get("bootstrap.servers")
    if not servers:
        raise UsageError("--bootstrap-server must be specified")
    timeout_ms = props.get("default.api.timeout.ms") or props.get("request.timeout.ms") or "30000"
    try:
        timeout = int(timeout_ms) / 1000.0
    except ValueError:
        raise ToolError(f"bad timeout {timeout_ms!r}: expected milliseconds") from None
    return servers, props.get("client.id"), timeout


def admin_from_args(args, config_attr: str = "command_config",
                    timeout_ms: int | None = None) -> AdminClient:
    """The AdminClient of a tool's --bootstrap-server and --command-config;
    `timeout_ms`: a tool's own timeout flag, which wins over the config file."""
    path = getattr(args, config_attr, None)
    props = load_properties(path) if path else {}
    check_client_config(props, set(), path or "")
    servers, client_id, timeout = client_settings(props, args.bootstrap_server)
    if timeout_ms is not None:
        timeout = timeout_ms / 1000.0
    return AdminClient(servers, timeout=timeout, client_id=client_id,
                       security=client_security(props, path or ""))


def add_bootstrap(p: ToolParser, required_text="REQUIRED: The Kafka server to connect to.") -> None:
    p.add_argument("--bootstrap-server", metavar="server to connect to", help=required_text)


def add_command_config(p: ToolParser) -> None:
    p.add_argument("--command-config", metavar="command config property file",
                   help="Property file containing configs to be passed to Admin Client "
                        "(client.id, request.timeout.ms, default.api.timeout.ms, "
                        "security.protocol, sasl.mechanism (PLAIN, SCRAM-SHA-256/512), "
                        "sasl.jaas.config, ssl.truststore.* (PEM), ssl.keystore.*, "
                        "ssl.endpoint.identification.algorithm; anything else is refused).")

