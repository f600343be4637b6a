"""The console's pieces without a broker: escaping and value rendering, URLs, timestamps,
when console.listener is refused, and the HTTP server's bounds. The pages themselves
are driven in a browser in integration/test_console_browser.py."""
from __future__ import annotations

import asyncio

import pytest

from kafkette.config import BrokerConfig
from kafkette.console import refusal
from kafkette.console import views as v
from kafkette.console.app import parse_timestamp
from kafkette.console import http as console_http
from kafkette.console.http import MAX_BODY, MAX_HEAD, ConsoleHttpServer, Response


def test_escape_and_url():
    assert v.esc('<a href="x">&\'') == "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
    assert v.url("topics", "a/b?c<d>", "messages", offset=3, q=None) == \
        "/topics/a%2Fb%3Fc%3Cd%3E/messages?offset=3"


@pytest.mark.parametrize("data, fmt, expect", [
    (None, "text", "<i>null</i>"),
    (b"<script>x</script>", "text", "<pre>&lt;script&gt;x&lt;/script&gt;</pre>"),
    (b'{"a":[1,"<b>"]}', "json", '<pre>{\n  &quot;a&quot;: [\n    1,\n    &quot;&lt;b&gt;&quot;\n  ]\n}</pre>'),
    (b"ab", "hex", "<code>61 62</code>"),
    (b"\xff\x00", "text", '<code class="binary">ff 00</code>'),
    (b"a\x01", "json", '<code class="binary">61 01</code>'),   # control character: binary
    (b"tab\tok", "text", "<pre>tab\tok</pre>"),
])
def test_render_value(data, fmt, expect):
    assert v.render_value(data, fmt).startswith(expect)


def test_render_value_says_when_json_does_not_parse():
    out = v.render_value(b"not json <x>", "json")
    assert out.startswith("<pre>not json &lt;x&gt;</pre>") and "not JSON" in out


def test_parse_timestamp():
    assert parse_timestamp("1700000000000") == 1_700_000_000_000
    assert parse_timestamp("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_timestamp("2023-11-14T22:13:20") == 1_700_000_000_000   # UTC by default
    assert parse_timestamp("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


def test_refusal():
    assert refusal(BrokerConfig()) is None                        # no console.listener
    assert refusal(BrokerConfig({"console.listener": "127.0.0.1:8080"})) is None
    sasl = BrokerConfig({"console.listener": "127.0.0.1:8080",
                         "listeners": "PLAINTEXT://:9092,SASL_PLAINTEXT://:9093",
                         "sasl.enabled.mechanisms": "SCRAM-SHA-512"})
    assert refusal(sasl) is None                                  # logs in through it
    sasl_ssl = BrokerConfig({"console.listener": "127.0.0.1:8080", "listeners": "SASL_SSL://:9093",
                             "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                             "ssl.keystore.type": "PEM", "ssl.keystore.location": "/none.pem"})
    assert "SASL_SSL is not supported yet" in refusal(sasl_ssl)
    # (the key store is read when the server starts, not by BrokerConfig)
    ssl_only = BrokerConfig({"console.listener": "127.0.0.1:8080", "listeners": "SSL://:9093",
                             "ssl.keystore.type": "PEM", "ssl.keystore.location": "/none.pem"})
    assert "no listener is PLAINTEXT" in refusal(ssl_only)
    assert "host:port" in refusal(BrokerConfig({"console.listener": "8080"}))


async def _exchange(port: int, data: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(data)
    await w.drain()
    out = await asyncio.wait_for(r.read(), 5)
    w.close()
    return out


async def test_http_bounds_and_form_parsing():
    seen = []

    async def handle(req):
        seen.append(req)
        return Response(200, b"<p>ok</p>")
    srv = ConsoleHttpServer(handle)
    _host, port = await srv.start("127.0.0.1", 0)
    try:
        out = await _exchange(port, b"GET /x HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 431 ")
        out = await _exchange(port, b"POST /f HTTP/1.1\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 411 ")
        out = await _exchange(port, f"POST /f HTTP/1.1\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode())
        assert out.startswith(b"HTTP/1.1 413 ")
        out = await _exchange(port, b"PUT /f HTTP/1.1\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 405 ")
        assert seen == []
        body = b"name=a%3Cb&n=1&n=2"
        out = await _exchange(port, b"POST /topics/t%2Dx?page=2 HTTP/1.1\r\nHost: h\r\n"
                              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"<p>ok</p>")
        assert b"Content-Security-Policy: default-src 'self'" in out
        await _exchange(port, b"GET /groups/a%2Fb%3Cc HTTP/1.1\r\n\r\n")
        req, get = seen
        assert get.parts == ("groups", "a/b<c")
        assert (req.method, req.path, req.query, req.form, req.headers["host"]) == \
            ("POST", "/topics/t-x", {"page": "2"}, {"name": "a<b", "n": "2"}, "h")
    finally:
        await srv.stop()


async def test_http_connection_limit(monkeypatch):
    monkeypatch.setattr(console_http, "MAX_CONNECTIONS", 2)

    async def handle(req):
        return Response(200, b"ok")
    srv = ConsoleHttpServer(handle)
    _host, port = await srv.start("127.0.0.1", 0)
    try:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        deadline = asyncio.get_running_loop().time() + 5
        while srv.active < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert srv.active == 2
        try:                                                   # closed at once
            assert await _exchange(port, b"GET / HTTP/1.1\r\n\r\n") == b""
        except ConnectionResetError:
            pass
        assert srv.refused == 1
        for _r, w in idle:
            w.close()
        while srv.active and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert (await _exchange(port, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        await srv.stop()
