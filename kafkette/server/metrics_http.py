"""A tiny HTTP/1.0-style endpoint for metrics and health, on the event loop (no threads).

    GET /metrics  -> the broker's Prometheus registry, text exposition format
    GET /healthz  -> 200 "ok" while the broker is serving, 503 "shutting down" otherwise
    GET /faults, POST /faults (JSON rule), DELETE /faults[/<id>] -> fault injection
                     admin (kafkette.broker.faults; JSON in and out)
    anything else -> 404 (405 for a method other than GET/HEAD)

Enabled by `metrics.listener` = "host:port" (kafkette only; Kafka itself exposes JMX
and users run the Prometheus JMX exporter as a Java agent). One request per
connection (`Connection: close`); the request head is bounded (8 KiB, 10 s), so a
slow or hostile client cannot hold memory or the loop.
"""
from __future__ import annotations

import asyncio
import json
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest

from kafkette.logging import get_logger

log = get_logger("kafkette.metrics")
MAX_HEAD = 8192
READ_TIMEOUT_S = 10.0
MAX_BODY = 65536  # faults: POST /faults bodies


def parse_host_port(address: str) -> tuple[str, int]:
    """"127.0.0.1:9404", ":9404" (every interface), "[::1]:9404"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics.listener must be host:port, got {address!r}")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


class MetricsHttpServer:
    def __init__(self, registry_fn: Callable[[], object], healthy_fn: Callable[[], bool],
                 faults_fn: Callable[[], object] | None = None):
        self._registry_fn = registry_fn
        self._healthy_fn = healthy_fn
        # faults: returns the broker's FaultInjector (None: /faults answers 503).
        self._faults_fn = faults_fn
        self._server: asyncio.AbstractServer | None = None
        self.address: tuple[str, int] | None = None

    async def start(self, address: str) -> tuple[str, int]:
        host, port = parse_host_port(address)
        self._server = await asyncio.start_server(self._serve, host, port, backlog=64,
                                                  limit=MAX_HEAD)
        self.address = self._server.sockets[0].getsockname()[:2]
        log.info("metrics listener started", host=self.address[0], port=self.address[1],
                 paths="/metrics /healthz")
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            except asyncio.LimitOverrunError:
                await self._reply(writer, 431, b"request header too large\n")
                return
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                return
            if len(head) > MAX_HEAD:
                await self._reply(writer, 431, b"request header too large\n")
                return
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) != 3:
                await self._reply(writer, 400, b"bad request\n")
                return
            method, target = parts[0], parts[1].split(b"?", 1)[0]
            if target == b"/faults" or target.startswith(b"/faults/"):  # faults
                await self._faults(reader, writer, method, target, head)
                return
            if method not in (b"GET", b"HEAD"):
                await self._reply(writer, 405, b"method not allowed\n")
                return
            head_only = method == b"HEAD"
            if target == b"/metrics":
                body = generate_latest(self._registry_fn())
                await self._reply(writer, 200, body, CONTENT_TYPE_LATEST, head_only)
            elif target == b"/healthz":
                if self._healthy_fn():
                    await self._reply(writer, 200, b"ok\n", head_only=head_only)
                else:
                    await self._reply(writer, 503, b"shutting down\n", head_only=head_only)
            else:
                await self._reply(writer, 404, b"not found\n", head_only=head_only)
        except Exception:
            log.exception("metrics request failed")
        finally:
            writer.close()

    # Admin endpoints of the fault injector (kafkette.broker.faults), for fault tests.
    def _injector(self):
        return self._faults_fn() if self._faults_fn is not None else None

    async def _faults(self, reader, writer, method: bytes, target: bytes, head: bytes) -> None:
        from kafkette.broker.faults import FaultError

        async def reply(status, obj):
            await self._reply(writer, status, (json.dumps(obj) + "\n").encode(),
                              "application/json")
        faults = self._injector()
        if faults is None:
            await reply(503, {"error": "no broker"})
            return
        rule_id = target[len(b"/faults/"):] if target.startswith(b"/faults/") else b""
        if method == b"GET" and not rule_id:
            await reply(200, {"rules": faults.list()})
        elif method == b"DELETE":
            if rule_id and not rule_id.isdigit():
                await reply(404, {"error": "no such rule"})
                return
            await reply(200, {"cleared": faults.clear(int(rule_id) if rule_id else None)})
        elif method == b"POST" and not rule_id:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip()) if value.strip().isdigit() else -1
            if not 0 < length <= MAX_BODY:
                await reply(400, {"error": f"need a JSON body of 1..{MAX_BODY} bytes"})
                return
            try:
                body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT_S)
                spec = json.loads(body)
                if not isinstance(spec, dict):
                    raise FaultError("body must be a JSON object")
                result = faults.inject(spec)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                return
            except (ValueError, FaultError) as e:
                await reply(400, {"error": str(e)})
                return
            await reply(200, result if isinstance(result, dict) else {"id": result})
        else:
            await reply(405, {"error": "GET, POST or DELETE /faults; DELETE /faults/<id>"})

    @staticmethod
    async def _reply(writer, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                     head_only: bool = False) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  431: "Request Header Fields Too Large", 503: "Service Unavailable"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii"))
        if not head_only:
            writer.write(body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
