"""HTML building blocks of the console: escaping, the page frame, tables, value rendering.

Everything that comes from data (topic names, keys, values, headers, group and member
ids, error messages) goes through `esc()`; attribute values are quoted and escaped the
same way. Values are shown as text, pretty JSON, hex or decoded through the schema
registry; bytes that are not UTF-8 are
shown in hex with a note rather than mangled.
"""
from __future__ import annotations

import html
import json
from urllib.parse import quote


def esc(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def url(*parts, **query) -> str:
    """A path from parts, each percent-encoded (a topic name may hold '/', '?' or '<'),
    and a query string from the non-None keyword arguments."""
    path = "/" + "/".join(quote(str(p), safe="") for p in parts)
    q = "&".join(f"{quote(k)}={quote(str(v), safe='')}" for k, v in query.items() if v is not None)
    return path + ("?" + q if q else "")


NAV = (("/", "Cluster"), ("/topics", "Topics"), ("/groups", "Consumer groups"),
       ("/charts", "Charts"))


def page(title: str, body: str, *, active: str = "", read_only: bool = False,
         user: str | None = None, token: str = "") -> bytes:
    nav = "".join(f'<a href="{h}"{" class=active" if h == active else ""}>{esc(t)}</a>'
                  for h, t in NAV)
    ro = '<span class="ro">read-only</span>' if read_only else ""
    if user is not None:
        ro += (f'<span class="user" data-testid="user">{esc(user)}</span>'
               + form("/logout", token, "", button="Log out", cls="logout"))
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{esc(title)} · kafkette console</title>"
            f'<link rel=stylesheet href="/static/console.css">'
            f'<script src="/static/console.js" defer></script></head>'
            f'<body><header><b>kafkette console</b>{nav}{ro}</header>'
            f"<main><h1>{esc(title)}</h1>{body}</main></body></html>").encode()


def table(headers, rows, *, cls: str = "", test_id: str = "") -> str:
    """rows: lists of already-escaped cell HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    tid = f' data-testid="{esc(test_id)}"' if test_id else ""
    return f'<table class="{esc(cls)}"{tid}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def error_box(message: str) -> str:
    return f'<div class="error" role="alert">{esc(message)}</div>'


def notice(message: str) -> str:
    return f'<div class="notice">{esc(message)}</div>'


def num(v) -> str:
    return "—" if v is None or v == -1 else esc(v)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


_CONTROL = {c for c in range(32) if c not in (9, 10, 13)} | {127}


def render_value(data: bytes | None, fmt: str, *, inline: bool = False) -> str:
    """One key, value or header value as HTML: <i>null</i>, text, pretty JSON or hex.
    Bytes that are not UTF-8, or hold control characters, are binary: shown in hex
    with a note. `inline` (headers): <code>, not a <pre> block."""
    if data is None:
        return "<i>null</i>"
    if fmt == "hex":
        return f"<code>{esc(data.hex(' '))}</code>"
    try:
        text = data.decode("utf-8")
        if _CONTROL.intersection(data):
            raise UnicodeDecodeError("utf-8", data, 0, 1, "control characters")
    except UnicodeDecodeError:
        return (f'<code class="binary">{esc(data.hex(" "))}</code>'
                f'<span class="note"> (binary: shown in hex)</span>')
    if fmt == "json" and not inline:
        try:
            return f"<pre>{esc(json.dumps(json.loads(text), indent=2, ensure_ascii=False))}</pre>"
        except ValueError as e:
            return f'<pre>{esc(text)}</pre><span class="note"> (not JSON: {esc(e)})</span>'
    return f"<code>{esc(text)}</code>" if inline else f"<pre>{esc(text)}</pre>"


def render_schema_value(data: bytes | None, state, *, inline: bool = False) -> str:
    """A key or value in the Schema Registry's wire format, decoded (console/schemas.py):
    the schema id, subject and version above the JSON; a failure in words beside the
    hex. Anything else is rendered as text (or hex, when binary)."""
    from .schemas import decode, looks_framed
    if not looks_framed(data):
        return render_value(data, "text", inline=inline)
    if state is None:
        return (f'<code class="binary">{esc(data.hex(" "))}</code>'
                f'<span class="note"> (the schema registry has not started yet)</span>')
    d = decode(data, state)
    label = f'<div class=note data-testid=schema>{esc(d.label)}</div>'
    if d.text is not None:
        return label + (f"<code>{esc(d.text)}</code>" if inline else f"<pre>{esc(d.text)}</pre>")
    return (label + f'<code class="binary">{esc(d.payload.hex(" "))}</code>'
            f'<span class="note" data-testid=schema-error> ({esc(d.error)})</span>')


def form(action: str, token: str, inner: str, *, button: str, cls: str = "",
         confirm: str = "") -> str:
    c = f' data-confirm="{esc(confirm)}"' if confirm else ""
    return (f'<form method=post action="{esc(action)}" class="{esc(cls)}"{c}>'
            f'<input type=hidden name=csrf value="{esc(token)}">{inner}'
            f"<button type=submit>{esc(button)}</button></form>")


CSS = b"""
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}
header{background:#1d2b3a;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#cfe0f0;text-decoration:none}header a.active{color:#fff;font-weight:bold}
.ro{margin-left:auto;background:#a60;padding:2px 8px;border-radius:4px}
.user{margin-left:auto}header form{margin:0}
main{padding:8px 24px}table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6}pre{margin:0;white-space:pre-wrap;max-width:60em}
.error{background:#fde8e8;border:1px solid #d33;padding:6px 10px;margin:8px 0}
.notice{background:#e8f4fd;border:1px solid #39d;padding:6px 10px;margin:8px 0}
.note{color:#777}.bad{color:#b00;font-weight:bold}form{margin:6px 0}
form input,form select{margin-right:6px}svg{border:1px solid #ccc;background:#fafafa}
.kv{display:grid;grid-template-columns:max-content auto;gap:2px 12px}
"""

# The charts fetch /api/rates and draw SVG polylines; the confirm prompt guards
# destructive forms. No library: a few dozen lines do it, and nothing to vendor.
JS = b"""
document.addEventListener('submit', e => {
  const m = e.target.dataset.confirm; if (m && !confirm(m)) e.preventDefault(); });
function drawChart(svg, series) {
  const w = svg.clientWidth || 600, h = svg.clientHeight || 160;
  let max = 1, n = 0;
  for (const s of series) { for (const v of s.points) max = Math.max(max, v); n = Math.max(n, s.points.length); }
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const NS = 'http://www.w3.org/2000/svg', colours = ['#1f77b4','#d62728','#2ca02c','#9467bd','#ff7f0e'];
  series.forEach((s, i) => {
    const pl = document.createElementNS(NS, 'polyline');
    pl.setAttribute('fill', 'none'); pl.setAttribute('stroke', colours[i % colours.length]);
    pl.setAttribute('points', s.points.map((v, j) =>
      `${(j * (w - 10) / Math.max(1, n - 1) + 5).toFixed(1)},${(h - 5 - v * (h - 20) / max).toFixed(1)}`).join(' '));
    svg.appendChild(pl);
    const t = document.createElementNS(NS, 'text');
    t.setAttribute('x', 8); t.setAttribute('y', 14 + 14 * i); t.setAttribute('fill', colours[i % colours.length]);
    t.textContent = `${s.name}: ${s.points.length ? s.points[s.points.length-1].toFixed(1) : 0} ${s.unit}`;
    svg.appendChild(t);
  });
  const top = document.createElementNS(NS, 'text');
  top.setAttribute('x', w - 8); top.setAttribute('y', 14); top.setAttribute('text-anchor', 'end');
  top.textContent = `max ${max.toFixed(1)}`; svg.appendChild(top);
}
async function refreshCharts() {
  for (const svg of document.querySelectorAll('svg[data-source]')) {
    try {
      const r = await fetch(svg.dataset.source, {cache: 'no-store'});
      if (!r.ok) throw new Error(r.status + ' ' + r.statusText);
      drawChart(svg, (await r.json()).series);
      svg.nextElementSibling && svg.nextElementSibling.classList.contains('chart-error') && (svg.nextElementSibling.textContent = '');
    } catch (err) {
      const el = svg.nextElementSibling;
      if (el && el.classList.contains('chart-error')) el.textContent = 'chart data unavailable: ' + err.message;
    }
  }
}
if (document.querySelector('svg[data-source]')) { refreshCharts(); setInterval(refreshCharts, 2000); }
"""
