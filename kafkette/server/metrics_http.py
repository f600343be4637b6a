"""A tiny HTTP/1.0-style endpoint for metrics and health, on the event loop (no threads).

    GET /metrics  -> the broker's Prometheus registry, text exposition format
    GET /healthz  -> 200 "ok" while the broker is serving, 503 "shutting down" otherwise
    anything else -> 404 (405 for a method other than GET/HEAD)

Enabled by `metrics.listener` = "host:port" (kafkette only; Kafka itself exposes JMX
and users run the Prometheus JMX exporter as a Java agent). One request per
connection (`Connection: close`); the request head is bounded (8 KiB, 10 s), so a
slow or hostile client cannot hold memory or the loop.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest

from kafkette.logging import get_logger

log = get_logger("kafkette.metrics")
MAX_HEAD = 8192
READ_TIMEOUT_S = 10.0


def parse_host_port(address: str) -> tuple[str, int]:
    """"127.0.0.1:9404", ":9404" (every interface), "[::1]:9404"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics.listener must be host:port, got {address!r}")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


class MetricsHttpServer:
    def __init__(self, registry_fn: Callable[[], object], healthy_fn: Callable[[], bool]):
        self._registry_fn = registry_fn
        self._healthy_fn = healthy_fn
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
