"""The console's HTTP/1.1 server, on the broker's event loop (one request per connection).

Bounded as kafkette/server/metrics_http.py is: a request head of at most 8 KiB read
within 10 s, a form body of at most 64 KiB (Content-Length required), at most
MAX_CONNECTIONS connections at once, so a slow or hostile client holds neither memory
nor the loop. Only GET, HEAD and POST with an
application/x-www-form-urlencoded body; no keep-alive, no chunked bodies.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from kafkette.logging import get_logger

log = get_logger("kafkette.console")
MAX_HEAD = 8192
MAX_BODY = 65536
READ_TIMEOUT_S = 10.0
# Connections served at once; more are closed at accept, so a flood of idle
# connections cannot pile up (each may hold READ_TIMEOUT_S).
MAX_CONNECTIONS = 64
REASONS = {200: "OK", 303: "See Other", 400: "Bad Request", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
           413: "Content Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class Request(NamedTuple):
    method: str
    path: str                       # percent-decoded
    query: dict[str, str]           # last value of each name
    headers: dict[str, str]         # lower-case names
    form: dict[str, str]
    peer: str = ""                  # the browser's IP address (host ACLs name it)
    # the path's segments, each percent-decoded after the split: a group id may hold '/'
    parts: tuple[str, ...] = ()


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def _flat(qs: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(qs, keep_blank_values=True).items()}


class ConsoleHttpServer:
    def __init__(self, handle: Callable[[Request], Awaitable[Response]]):
        self._handle = handle
        self._server: asyncio.AbstractServer | None = None
        self.address: tuple[str, int] | None = None
        self.active = 0
        self.refused = 0

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, host, port, backlog=64,
                                                  limit=MAX_HEAD)
        self.address = self._server.sockets[0].getsockname()[:2]
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
        if self.active >= MAX_CONNECTIONS:
            self.refused += 1
            if self.refused in (1, 100, 10000):   # a line, not one per connection
                log.warning("console connections over the limit: closing new ones",
                            limit=MAX_CONNECTIONS, refused=self.refused)
            writer.close()
            return
        self.active += 1
        try:
            peer = writer.get_extra_info("peername")
            resp = await self._read_and_handle(reader, peer[0] if peer else "")
            if resp is not None:
                await self._reply(writer, resp)
        except Exception as e:  # noqa: BLE001 - said on the page, logged with its trace
            log.exception("console request failed")
            try:
                await self._reply(writer, Response(
                    500, f"console error: {type(e).__name__}: {e}\n".encode(), "text/plain; charset=utf-8"))
            except Exception:  # noqa: BLE001 - the connection is gone
                pass
        finally:
            self.active -= 1
            writer.close()

    async def _read_and_handle(self, reader, peer: str) -> Response | None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            return Response(431, b"request header too large\n", "text/plain")
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3:
            return Response(400, b"bad request\n", "text/plain")
        method, target = parts[0], parts[1]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        url = urlsplit(target)
        form: dict[str, str] = {}
        if method == "POST":
            length = headers.get("content-length", "")
            if not length.isdigit():
                return Response(411, b"Content-Length required\n", "text/plain")
            if int(length) > MAX_BODY:
                return Response(413, b"form too large\n", "text/plain")
            try:
                body = await asyncio.wait_for(reader.readexactly(int(length)), READ_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                return None
            form = _flat(body.decode("utf-8", "replace"))
        elif method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", "text/plain")
        req = Request(method, unquote(url.path), _flat(url.query), headers, form, peer,
                      tuple(unquote(p) for p in url.path.split("/") if p))
        resp = await self._handle(req)
        if method == "HEAD":
            resp = resp._replace(body=b"")
        return resp

    @staticmethod
    async def _reply(writer, resp: Response) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in resp.headers)
        writer.write(
            f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Unknown')}\r\n"
            f"Content-Type: {resp.content_type}\r\nContent-Length: {len(resp.body)}\r\n"
            # The pages carry no inline script from data: a CSP forbids any other origin,
            # so an escaping slip cannot load a remote script.
            "Content-Security-Policy: default-src 'self'; style-src 'self' 'unsafe-inline'; "
            "frame-ancestors 'none'\r\n"
            f"X-Content-Type-Options: nosniff\r\n{extra}Connection: close\r\n\r\n".encode("latin-1"))
        writer.write(resp.body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
