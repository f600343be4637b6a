"""An embedded kafkette broker for tests and local development.

    from kafkette import EmbeddedBroker

    with EmbeddedBroker() as kb:
        kb.create_topic("orders", partitions=3)
        producer = KafkaProducer(bootstrap_servers=kb.bootstrap_servers)
        ...
        kb.restart()          # same port, same data directory: the data is kept

Two modes:

* default (``in_process=False``): the broker runs as a child process,
  ``python -m kafkette serve --set listeners=PLAINTEXT://127.0.0.1:<port>
  --set log.dirs=<dir> ...``. Stopping it is a SIGTERM (the broker's graceful
  shutdown: finish in-flight requests, flush, close logs) followed by a wait for the
  exit; a broker that does not exit within ``stop_timeout`` is killed. The broker is
  isolated from the test process (its own GIL, its own event loop, no shared state).
* ``in_process=True``: ``KafkaServer`` runs in a background thread on its own
  event loop (uvloop when available). It starts faster (no interpreter start-up and
  imports), but shares the GIL with the tests, and **no signals are involved**:
  ``stop()`` asks the server to stop with ``loop.call_soon_threadsafe(
  server.request_stop)`` and joins the thread. Signal handlers are never installed
  (they can only be installed from the main thread anyway).

Port 0 (the default) picks a free port before the first start (bind 127.0.0.1:0,
close, reuse; a start that fails because another process took the port in the
meantime is retried on a new port). The port is then fixed, so that ``restart()``
comes back on the same address and clients can reconnect.

The broker gets test-friendly defaults (``TEST_DEFAULTS``: no initial rebalance
delay, a one-partition ``__consumer_offsets``, no metrics listener) under the
caller's ``config``; a key in ``config`` always wins.

Topic administration (``create_topic``/``delete_topic``) speaks CreateTopics v7 and
DeleteTopics v4 with kafkette's own client (kafkette.client), so no client library
is needed.

A secured broker in one line: ``EmbeddedBroker(security="SASL_SSL")`` (or "SSL",
"SASL_PLAINTEXT"; ``users={"alice": "pw"}``, ``mechanism="SCRAM-SHA-512"`` by default,
or "SCRAM-SHA-256" / "PLAIN"). It makes a CA and a server certificate for 127.0.0.1 /
localhost with trustme (a test extra: ``pip install kafkette[test]`` or trustme) in
its working directory, listens with that protocol, and creates the SCRAM users with
AlterUserScramCredentials (KIP-554) after each start (PLAIN users go in the
listener's JAAS config). ``client_config`` (librdkafka / confluent-kafka names),
``kafka_python_config()``, ``client_security()`` (kafkette's client) and ``ca_file``
hand the settings to the test. The broker's own admin calls (readiness, users,
topics) go to a second listener, SASL_PLAINTEXT with PLAIN and an admin user of a
random password that is a super user, so the secured listener offers exactly the
mechanism asked for.
"""
from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Mapping

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError", "TEST_DEFAULTS"]

#: Settings applied under the caller's config: fast consumer-group start-up
#: (Kafka's group.initial.rebalance.delay.ms defaults to 3 s, which every test using a
#: group would wait for), a small __consumer_offsets, no metrics listener.
TEST_DEFAULTS: dict[str, Any] = {
    "group.initial.rebalance.delay.ms": 0,
    "offsets.topic.num.partitions": 1,
    "metrics.listener": "",
}

HOST = "127.0.0.1"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: The listener of a SASL EmbeddedBroker's own admin calls, and its super user.
ADMIN_LISTENER = "EMBEDDED_ADMIN"
ADMIN_USER = "kafkette-embedded-admin"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
_PORT_RETRIES = 5

_live: "weakref.WeakSet[EmbeddedBroker]" = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:  # pragma: no cover - interpreter exit
    for kb in list(_live):
        try:
            kb.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class SecuredClientSettings:
    """The client side of a secured EmbeddedBroker or EmbeddedCluster: reads
    `bootstrap_servers`, `security`, `mechanism`, `users` and `ca_file`."""

    @property
    def client_config(self) -> dict[str, str]:
        """Client settings in librdkafka / confluent-kafka names: bootstrap.servers,
        security.protocol, and (as they apply) sasl.mechanism, sasl.username,
        sasl.password (the first user), ssl.ca.location."""
        out = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security}
        if self.mechanism:
            user, password = next(iter(self.users.items()))
            out.update({"sasl.mechanism": self.mechanism, "sasl.username": user,
                        "sasl.password": password})
        if self.ca_file:
            out["ssl.ca.location"] = self.ca_file
        return out

    def kafka_python_config(self, user: str | None = None) -> dict[str, Any]:
        """The same settings in kafka-python's names (bootstrap_servers,
        security_protocol, sasl_mechanism, sasl_plain_username, sasl_plain_password,
        ssl_cafile); `user`: another of the users than the first."""
        out: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers,
                               "security_protocol": self.security}
        if self.mechanism:
            user = user or next(iter(self.users))
            out.update({"sasl_mechanism": self.mechanism, "sasl_plain_username": user,
                        "sasl_plain_password": self.users[user]})
        if self.ca_file:
            out["ssl_cafile"] = self.ca_file
        return out

    def client_security(self, user: str | None = None):
        """A kafkette.client_security.ClientSecurity for kafkette's own client (None
        for PLAINTEXT)."""
        if self.security == "PLAINTEXT":
            return None
        from kafkette.client_security import ClientSecurity
        ctx = None
        if self.ca_file:
            import ssl
            ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.mechanism:
            return ClientSecurity(self.security, ctx)
        user = user or next(iter(self.users))
        return ClientSecurity(self.security, ctx, self.mechanism, user, self.users[user])


class EmbeddedBrokerError(RuntimeError):
    """The broker did not start, or did not answer as expected."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_format_value(v) for v in value)
    return str(value)


class EmbeddedBroker(SecuredClientSettings):
    """A single kafkette broker on 127.0.0.1, as a context manager.

    ``config``: Kafka broker property names to values (``listeners`` and ``log.dirs``
    are set by this class). ``data_dir``: the log directory; a temporary directory,
    removed on ``close()``, when omitted (a given directory is kept). ``port``: 0
    picks a free one. ``in_process``: run in a thread instead of a child process.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, data_dir=None, port: int = 0,
                 in_process: bool = False, *, startup_timeout: float = STARTUP_TIMEOUT,
                 stop_timeout: float = STOP_TIMEOUT, security: str = "PLAINTEXT",
                 users: Mapping[str, str] | None = None, mechanism: str = "SCRAM-SHA-512",
                 schema_registry: bool = False):
        config = dict(config or {})
        # schema_registry=True: the built-in Schema Registry on a free port (kept across
        # restarts), at .schema_registry_url.
        if schema_registry and not config.get("schema.registry.listener"):
            config["schema.registry.listener"] = f"{HOST}:{_free_port()}"
        self.security, self.mechanism, self.users = security_choice(security, users, mechanism)
        for reserved in ("listeners", "log.dirs", "log.dir"):
            if reserved in config:
                raise ValueError(f"{reserved!r} is set by EmbeddedBroker; use the "
                                 f"port= and data_dir= arguments instead")
        self.config: dict[str, Any] = {**TEST_DEFAULTS, **config}
        self.in_process = in_process
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._auto_port = port == 0
        self._port = port
        # The address it listens on and is reached at; a ClusterNode in a network
        # namespace (kafkette.chaos) has its own.
        self._host = HOST
        self._own_data_dir = data_dir is None
        self._workdir = Path(tempfile.mkdtemp(prefix="kafkette-embedded-"))
        self._data_dir = (self._workdir / "data") if data_dir is None else Path(data_dir)
        self.log_path = self._workdir / "broker.log"   # the child's stdout/stderr
        self.startup_seconds: float | None = None      # of the last start
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._loop = None
        self._server = None
        self._closed = False
        self._security_settings: dict[str, str] = {}
        self._sasl_admin_port: int | None = None
        self._admin_password = secrets.token_hex(16)
        if security != "PLAINTEXT":
            self._security_settings = self._make_security_settings()
        # ClientSecurity of the readiness probe (None: PLAINTEXT); EmbeddedCluster sets
        # it for controller-only nodes whose controller listener is SSL.
        self._probe_security = None

    # ------------------------------------------------------------------ properties

    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        return self._host

    @property
    def bootstrap_servers(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def schema_registry_url(self) -> str | None:
        """http://host:port of the built-in Schema Registry (None when it is off)."""
        listener = str(self.config.get("schema.registry.listener") or "")
        if not listener:
            return None
        host, _, port = listener.rpartition(":")
        host = host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = self._host
        return f"http://{host}:{port}"

    def _schema_registry_accepts(self) -> bool:
        url = self.schema_registry_url
        if url is None:
            return True
        host, _, port = url[len("http://"):].rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return True
        except OSError:
            return False

    @property
    def ca_file(self) -> str | None:
        """The PEM file of the CA that signed the broker's certificate (SSL, SASL_SSL)."""
        path = self._workdir / "tls" / "ca.pem"
        return str(path) if self.security in ("SSL", "SASL_SSL") else None

    def _make_security_settings(self) -> dict[str, str]:
        """The broker settings of the secured listener (and the admin listener)."""
        proto = self.security
        lname = proto.lower()
        out: dict[str, str] = {}
        if proto in ("SSL", "SASL_SSL"):
            trustme = import_trustme(f"EmbeddedBroker(security={proto!r})")
            out.update(issue_tls(self._workdir / "tls", trustme))
        if self.mechanism:
            # A caller's own list (more mechanisms than `mechanism`) wins.
            key = f"listener.name.{lname}.sasl.enabled.mechanisms"
            out[key] = str(self.config.pop(key, self.mechanism))
            if self.mechanism == "PLAIN":
                out[f"listener.name.{lname}.plain.sasl.jaas.config"] = _plain_jaas(self.users)
            out["listener.security.protocol.map"] = (
                "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,"
                f"{ADMIN_LISTENER}:SASL_PLAINTEXT")
            a = ADMIN_LISTENER.lower()
            out[f"listener.name.{a}.sasl.enabled.mechanisms"] = "PLAIN"
            out[f"listener.name.{a}.plain.sasl.jaas.config"] = _plain_jaas(
                {ADMIN_USER: self._admin_password})
            supers = [p for p in str(self.config.get("super.users", "")).split(";") if p]
            out["super.users"] = ";".join(supers + [f"User:{ADMIN_USER}"])
        for key in out:
            if key in self.config and key != "super.users":
                raise ValueError(f"{key!r} is set by EmbeddedBroker(security={proto!r})")
        return out

    def _admin_target(self):
        """(host, port, ClientSecurity | None) of the broker's own admin calls."""
        if self.mechanism:
            from kafkette.client_security import ClientSecurity
            return self._host, self._sasl_admin_port, ClientSecurity(
                "SASL_PLAINTEXT", None, "PLAIN", ADMIN_USER, self._admin_password)
        return self._host, self._port, self.client_security()

    def _create_users(self) -> None:
        req = scram_users_request(self.mechanism, self.users)
        if req is None:
            return
        check_scram_users_response(self._request(req, 0))

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def pid(self) -> int | None:
        """The child's process id (None in process)."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        if self.in_process:
            return self._thread is not None and self._thread.is_alive()
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> "EmbeddedBroker":
        if self._closed:
            raise EmbeddedBrokerError("this EmbeddedBroker was closed")
        if self.is_running():
            raise EmbeddedBrokerError("broker already running")
        self._data_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        attempts = _PORT_RETRIES if self._auto_port else 1
        for attempt in range(attempts):
            if self._port == 0:
                self._port = _free_port()
            try:
                if self.in_process:
                    self._start_thread()
                else:
                    self._start_process()
                break
            except _PortTaken:
                if attempt + 1 >= attempts or self.startup_seconds is not None:
                    # A restart must come back on the same port: no new port then.
                    raise EmbeddedBrokerError(
                        f"port {self._port} is in use\n{self._log_tail()}") from None
                self._port = 0
        _live.add(self)
        try:
            self._create_users()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop the broker (graceful) and wait for it; the data directory stays."""
        if self.in_process:
            self._stop_thread()
        else:
            self._stop_process()

    def restart(self) -> "EmbeddedBroker":
        """Stop, then start again on the same port and data directory."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the broker and remove the temporary directories."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            _live.discard(self)
            shutil.rmtree(self._workdir, ignore_errors=True)
            if self._own_data_dir:
                shutil.rmtree(self._data_dir, ignore_errors=True)

    def __repr__(self) -> str:
        mode = "in-process" if self.in_process else f"pid={self.pid}"
        return f"<EmbeddedBroker {self.bootstrap_servers} {mode} running={self.is_running()}>"

    # ------------------------------------------------------------------ child process

    def listeners_setting(self) -> str:
        out = f"{self.security}://{self._host}:{self._port}"
        if self.mechanism:
            if self._sasl_admin_port is None:
                self._sasl_admin_port = _free_port()
            out += f",{ADMIN_LISTENER}://{self._host}:{self._sasl_admin_port}"
        return out

    def command(self) -> list[str]:
        settings = {"listeners": self.listeners_setting(),
                    "log.dirs": str(self._data_dir), **self.config,
                    **self._security_settings}
        # The child serves POST/GET/DELETE /faults on its metrics.listener, which
        # inject_error() & co. use: one on a free port when none is configured.
        if not settings.get("metrics.listener"):
            if getattr(self, "_admin_port", None) is None:
                self._admin_port = _free_port()
            settings["metrics.listener"] = f"{self._host}:{self._admin_port}"
        cmd = [sys.executable, "-m", "kafkette", "serve"]
        for key, value in settings.items():
            cmd += ["--set", f"{key}={_format_value(value)}"]
        return cmd

    def _start_process(self) -> None:
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {' '.join(cmd)}\n".encode())
            log.flush()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=log, env=env)
        try:
            self._wait_ready()
        except BaseException:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            raise

    def _wait_ready(self) -> None:
        from kafkette.client import probe_api_versions
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer yet"
        delay = 0.005
        while True:
            rc = self._proc.poll()
            if rc is not None:
                tail = self._log_tail()
                if "address already in use" in tail.lower():
                    raise _PortTaken()
                raise EmbeddedBrokerError(
                    f"kafkette exited with code {rc} before it was ready\n{tail}")
            try:
                host, port, security = self._admin_target()
                err = probe_api_versions(host, port, timeout=1.0,
                                         security=self._probe_security or security)
                # The registry listens once it has read _schemas, after the Kafka
                # listener accepts.
                if err == 0 and self._schema_registry_accepts():
                    return
                last = f"ApiVersions error {err}" if err else "schema registry not listening"
            except OSError as e:
                last = repr(e)
            if time.monotonic() >= deadline:
                raise EmbeddedBrokerError(f"kafkette not ready after {self.startup_timeout}s "
                                          f"({last})\n{self._log_tail()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _stop_process(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ in process

    def _start_thread(self) -> None:
        from kafkette.config import BrokerConfig
        from kafkette.server.server import KafkaServer
        settings = {"listeners": self.listeners_setting(),
                    "log.dirs": str(self._data_dir),
                    **{k: _format_value(v) for k, v in self.config.items()},
                    **self._security_settings}
        config = BrokerConfig(settings)
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            import asyncio
            try:
                import uvloop
                loop = uvloop.new_event_loop()
            except ImportError:  # pragma: no cover - uvloop is a dependency
                loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                server = KafkaServer(config)
                try:
                    loop.run_until_complete(server.start())
                except BaseException as e:  # noqa: BLE001 - handed to the starter
                    failure.append(e)
                    if server.broker is not None:
                        loop.run_until_complete(server.stop())
                    else:
                        for _, sock in server._sockets:
                            sock.close()
                    return
                finally:
                    self._loop, self._server = loop, server
                    started.set()
                loop.run_until_complete(server.wait_stopped())
            finally:
                started.set()
                try:
                    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                    for t in pending:
                        t.cancel()
                    if pending:
                        loop.run_until_complete(asyncio.gather(*pending,
                                                               return_exceptions=True))
                finally:
                    loop.close()

        self._thread = threading.Thread(target=run, name=f"kafkette-embedded-{self._port}",
                                        daemon=True)
        self._thread.start()
        if not started.wait(self.startup_timeout):
            raise EmbeddedBrokerError(f"kafkette not started after {self.startup_timeout}s")
        if failure:
            self._thread.join(self.stop_timeout)
            self._thread = None
            e = failure[0]
            if isinstance(e, OSError) and e.errno in (98, 48):  # EADDRINUSE (Linux, BSD)
                raise _PortTaken() from e
            raise EmbeddedBrokerError(f"kafkette failed to start: {e!r}") from e
        # Bound before started: the listener answers at once.

    def _stop_thread(self) -> None:
        thread, loop, server = self._thread, self._loop, self._server
        if thread is None:
            return
        if thread.is_alive() and loop is not None and server is not None:
            try:
                loop.call_soon_threadsafe(server.request_stop)
            except RuntimeError:  # loop already closed
                pass
        thread.join(self.stop_timeout)
        if thread.is_alive():
            raise EmbeddedBrokerError(f"in-process kafkette did not stop within "
                                      f"{self.stop_timeout}s")
        self._thread = self._loop = self._server = None

    # ------------------------------------------------------------------ admin

    def _request(self, request, version: int, timeout: float = 30.0):
        """Send one request on a fresh connection and decode the response (OSError
        when there is no answer)."""
        from kafkette.client import request_once
        host, port, security = self._admin_target()
        return request_once(host, port, request, version, client_id="kafkette-embedded",
                            timeout=timeout, security=security)

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1,
                     config: Mapping[str, Any] | None = None, *, exist_ok: bool = True,
                     timeout_ms: int = 30000):
        """Create a topic (CreateTopics v7). An existing topic is fine unless
        ``exist_ok=False``; any other error raises the matching ``KafkaError``."""
        from kafkette.protocol.messages import CreateTopicsRequest
        T = CreateTopicsRequest.CreatableTopic
        C = T.CreatableTopicConfig
        req = CreateTopicsRequest(
            topics=[T(name=name, num_partitions=partitions,
                      replication_factor=replication_factor, assignments=[],
                      configs=[C(name=k, value=_format_value(v))
                               for k, v in (config or {}).items()])],
            timeout_ms=timeout_ms, validate_only=False)
        resp = self._request(req, 7, timeout=timeout_ms / 1000 + 5)
        result = resp.topics[0]
        from kafkette.errors import ErrorCode
        if result.error_code == ErrorCode.TOPIC_ALREADY_EXISTS and exist_ok:
            return result
        if result.error_code != 0:
            raise _kafka_error(result.error_code, f"create topic {name!r}: "
                               f"{result.error_message or ''}".rstrip(": "))
        return result

    def delete_topic(self, name: str, *, missing_ok: bool = False, timeout_ms: int = 30000):
        """Delete a topic (DeleteTopics v4)."""
        from kafkette.errors import ErrorCode
        from kafkette.protocol.messages import DeleteTopicsRequest
        req = DeleteTopicsRequest(topics=[], topic_names=[name], timeout_ms=timeout_ms)
        resp = self._request(req, 4, timeout=timeout_ms / 1000 + 5)
        result = resp.responses[0]
        if result.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION and missing_ok:
            return result
        if result.error_code != 0:
            raise _kafka_error(result.error_code, f"delete topic {name!r}")
        return result


    # ------------------------------------------------------------------ faults
    # Fault injection (kafkette.broker.faults): in process straight on the broker's
    # FaultInjector (on its event loop); in a child over its admin HTTP endpoint.

    def inject_fault(self, spec: Mapping[str, Any]):
        """One rule as a dict, e.g. {"kind": "error", "api_key": 0, "error_code": 6,
        "count": 3}; returns the rule id ({"closed": n} for close_connections)."""
        return self._faults("inject", dict(spec))

    def inject_error(self, api_key: int, error_code: int, count: int | None = 1, *,
                     topic: str | None = None, partition: int | None = None) -> int:
        """The next ``count`` requests of ``api_key`` fail with ``error_code``."""
        return self.inject_fault({"kind": "error", "api_key": api_key, "error_code": error_code,
                                  "count": count, "topic": topic, "partition": partition})

    def inject_latency(self, api_key: int, delay_ms: int, count: int | None = None, *,
                       topic: str | None = None, partition: int | None = None) -> int:
        """Delay answers to ``api_key`` by ``delay_ms`` (``count`` of them, None = until cleared)."""
        return self.inject_fault({"kind": "latency", "api_key": api_key, "delay_ms": delay_ms,
                                  "count": count, "topic": topic, "partition": partition})

    def make_partition_unavailable(self, topic: str, partition: int, duration_ms: int) -> int:
        return self.inject_fault({"kind": "leader_unavailable", "topic": topic,
                                  "partition": partition, "duration_ms": duration_ms})

    def close_connections(self, client_id: str | None = None) -> int:
        return self.inject_fault({"kind": "close_connections", "client_id": client_id})["closed"]

    def list_faults(self) -> list[dict]:
        return self._faults("list")

    def clear_faults(self, rule_id: int | None = None) -> int:
        return self._faults("clear", rule_id)

    def _faults(self, op: str, arg=None):
        if not self.is_running():
            raise EmbeddedBrokerError("broker not running")
        if self.in_process:
            import asyncio

            async def run():
                faults = self._server.broker.faults
                if op == "list":
                    return faults.list()
                return getattr(faults, op)(arg)
            return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)
        import json
        import urllib.error
        import urllib.request
        listener = str(self.config.get("metrics.listener") or "")
        address = listener if listener else f"{self._host}:{self._admin_port}"
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or HOST
        if host in ("0.0.0.0", "::"):
            host = HOST
        path, method, body = "/faults", "GET", None
        if op == "inject":
            method, body = "POST", json.dumps(arg).encode()
        elif op == "clear":
            method = "DELETE"
            path = "/faults" if arg is None else f"/faults/{int(arg)}"
        req = urllib.request.Request(f"http://{host}:{port}{path}", data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                out = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            if e.code == 400:
                raise ValueError(json.loads(detail).get("error", detail)) from None
            raise EmbeddedBrokerError(f"fault admin {method} {path}: {e.code} {detail}") from None
        if op == "list":
            return out["rules"]
        if op == "clear":
            return out["cleared"]
        return out.get("id", out)


def security_choice(security: str | None, users: Mapping[str, str] | None,
                    mechanism: str) -> tuple[str, str | None, dict[str, str]]:
    """(protocol, SASL mechanism or None, users) of a `security=` one-liner, checked;
    without `users` a SASL protocol gets one user with a random password."""
    security = (security or "PLAINTEXT").upper()
    if security not in SECURITY_PROTOCOLS:
        raise ValueError(f"security={security!r}: one of {', '.join(SECURITY_PROTOCOLS)}")
    mechanism = mechanism.upper()
    if mechanism not in SASL_MECHANISMS:
        raise ValueError(f"mechanism={mechanism!r}: one of {', '.join(SASL_MECHANISMS)}")
    if users is not None and not security.startswith("SASL_"):
        raise ValueError(f"users= needs a SASL security protocol, not {security}")
    sasl = mechanism if security.startswith("SASL_") else None
    chosen = dict(users) if users is not None else (
        {"kafkette-user": secrets.token_hex(12)} if sasl else {})
    return security, sasl, chosen


def issue_tls(directory: Path, trustme) -> dict[str, str]:
    """A new CA (ca.pem) and a server certificate for 127.0.0.1 / localhost signed by
    it (server.pem, key included) in `directory`: the key store settings."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    return {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(directory / "server.pem")}


def import_trustme(what: str):
    try:
        import trustme
    except ImportError:
        raise EmbeddedBrokerError(
            f"{what} makes its certificates with trustme, which is not installed: "
            f"pip install trustme (or kafkette[test])") from None
    return trustme


def scram_users_request(mechanism: str | None, users: Mapping[str, str]):
    """The AlterUserScramCredentials v0 request that creates `users` for a SCRAM
    mechanism (None for other mechanisms or no users)."""
    if mechanism not in ("SCRAM-SHA-256", "SCRAM-SHA-512") or not users:
        return None
    from kafkette.protocol.messages import AlterUserScramCredentialsRequest as R
    from kafkette.tools.security import SCRAM_MECHANISMS, salted_password
    ups = []
    for user, password in users.items():
        salt = secrets.token_bytes(32)
        ups.append(R.ScramCredentialUpsertion(
            name=user, mechanism=SCRAM_MECHANISMS[mechanism][0], iterations=4096,
            salt=salt, salted_password=salted_password(mechanism, password, salt, 4096)))
    return R(deletions=[], upsertions=ups)


def check_scram_users_response(resp) -> None:
    for r in resp.results:
        if r.error_code:
            raise EmbeddedBrokerError(f"cannot create SCRAM user {r.user}: error "
                                      f"{r.error_code} {r.error_message or ''}")


def _plain_jaas(users: Mapping[str, str]) -> str:
    def q(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"')
    return ("org.apache.kafka.common.security.plain.PlainLoginModule required "
            + " ".join(f'user_{u}="{q(p)}"' for u, p in users.items()) + ";")


class _PortTaken(Exception):
    pass


def _kafka_error(code: int, message: str):
    from kafkette import errors
    try:
        ec = errors.ErrorCode(code)
    except ValueError:
        return errors.KafkaError(f"{message} (error code {code})")
    for obj in vars(errors).values():
        if (isinstance(obj, type) and issubclass(obj, errors.KafkaError)
                and obj is not errors.KafkaError and obj.code == ec):
            return obj(f"{message} ({ec.name})")
    return errors.KafkaError(f"{message} ({ec.name})", code=ec)
