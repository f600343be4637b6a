"""The console's pages: what each URL shows and where it reads it from.

Reads, in-process where the state is this node's own:
- the metadata image (brokers, racks, controller, topics, partitions, replicas, ISR),
  so the Cluster and Topics pages cost no request even with 10,000 partitions;
- the replica manager's partitions this node leads (log start / end, high watermark,
  last stable offset) and the log manager (bytes per log directory);
- the Raft quorum's own description, and the broker's metrics counters (sampled every
  SAMPLE_S for the charts).
Everything else goes over the Kafka protocol with kafkette's admin client
(kafkette.tools.client.AdminClient), bootstrapped at this broker's own PLAINTEXT
listener: ListOffsets for partitions led by another node, Fetch / Produce for messages,
DescribeGroups / OffsetFetch (the very rows of `kafkette groups describe`), CreateTopics
/ DeleteTopics / CreatePartitions / OffsetCommit for the forms. That client is
synchronous (its own loop thread), so its calls run on one worker thread of the console
and never block the broker's loop. In a cluster it routes each request to the node that
owns the answer, so any node's console shows the whole cluster.
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
import hmac
import json
import re
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from types import SimpleNamespace

from kafkette.broker import authorization
from kafkette.client_security import ClientSecurity
from kafkette.console import views as v
from kafkette.controller.acls import CLUSTER, CLUSTER_NAME, DESCRIBE, TOPIC
from kafkette.console.http import ConsoleHttpServer, Request, Response
from kafkette.errors import ErrorCode
from kafkette.logging import get_logger
from kafkette.protocol.messages import ProduceRequest
from kafkette.protocol.records import build_batch
from kafkette.tools.client import AdminClient, ToolError, kafka_message
from kafkette.tools.groups import decode_assignment, describe_rows
from kafkette.tools.kafka_console_consumer import FetchSettings, fetch_once
from kafkette.tools.kafka_configs import SOURCES

log = get_logger("kafkette.console")
PAGE_SIZE = 50            # topics per page
PARTITION_PAGE = 100      # partitions per page of a topic
MAX_MESSAGES = 500
SAMPLE_S = 2.0
SAMPLES = 150             # five minutes of chart at SAMPLE_S
CLIENT_ID = "kafkette-console"
MAX_SESSIONS = 64
SESSION_IDLE_S = 3600.0
COOKIE = "kafkette_console"
# SCRAM first: a user may have both a SCRAM credential and a PLAIN JAAS entry.
LOGIN_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class Session:
    """One logged-in browser: the user's own admin client (so the broker authorizes
    every request of the console as that user) on its own worker thread."""

    def __init__(self, user: str, admin: AdminClient, pool: ThreadPoolExecutor):
        self.user = user
        self.admin = admin
        self.pool = pool
        self.last_used = time.monotonic()

    def close(self) -> None:
        def run():
            try:
                self.admin.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self.pool.submit(run)
        self.pool.shutdown(wait=False)


_session: contextvars.ContextVar = contextvars.ContextVar("console_session", default=None)
_peer: contextvars.ContextVar = contextvars.ContextVar("console_peer", default="")


def _ts(ms: int | None) -> str:
    if ms is None or ms < 0:
        return "—"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def parse_timestamp(text: str) -> int:
    """Milliseconds since the epoch, or an ISO 8601 time (UTC when it names no zone)."""
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


class Console:
    def __init__(self, broker, kafka_address: tuple[str, int], read_only: bool,
                 sasl: tuple[tuple[str, int], list[str]] | None = None,
                 schemas=None):
        """`sasl`: (address of a SASL_PLAINTEXT listener, its mechanisms) when the
        broker uses SASL: then every page needs a login. `schemas`: when this broker
        serves the Schema Registry, a callable returning its RegistryState (or None
        while it has not started: the registry starts after the console)."""
        self.broker = broker
        self.kafka_address = kafka_address
        self.read_only = read_only
        self.sasl = sasl
        self.schemas = schemas
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self.csrf_token = secrets.token_urlsafe(32)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-admin")
        self._admin: AdminClient | None = None
        self._http = ConsoleHttpServer(self.handle)
        self._samples: collections.deque = collections.deque(maxlen=SAMPLES)
        self._sampler: asyncio.TimerHandle | None = None
        # group -> (time, total lag) samples, taken while someone watches its chart
        self._lag: collections.OrderedDict = collections.OrderedDict()
        self.address: tuple[str, int] | None = None

    # -- lifecycle --------------------------------------------------------------------
    async def start(self, host: str, port: int) -> tuple[str, int]:
        self.address = await self._http.start(host, port)
        self._sample()
        log.info("console listener started", url=f"http://{self.address[0]}:{self.address[1]}/",
                 read_only=self.read_only)
        return self.address

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        await self._http.stop()
        for sess in self._sessions.values():
            sess.close()
        self._sessions.clear()
        admin, self._admin = self._admin, None
        if admin is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, admin.close)
        self._pool.shutdown(wait=False)

    def _sample(self) -> None:
        m = self.broker.metrics
        self._samples.append((time.monotonic(),
                              {t: s[1] for t, s in m._topic_in.items()},
                              {t: s[0] for t, s in m._topic_in.items()},
                              {t: s[0] for t, s in m._topic_out.items()}))
        self._sampler = asyncio.get_running_loop().call_later(SAMPLE_S, self._sample)

    # -- the admin client, on the worker thread -----------------------------------------
    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            host, port = self.kafka_address
            self._admin = AdminClient(f"{host}:{port}", timeout=10.0, client_id=CLIENT_ID)
        return self._admin

    async def call(self, fn, *args):
        """fn(admin, *args) on the worker thread. A lost connection is dropped so that
        the next call connects again (a restarted broker, a failed-over leader)."""
        sess = _session.get()
        if sess is not None:
            return await asyncio.get_running_loop().run_in_executor(
                sess.pool, lambda: fn(sess.admin, *args))
        if self.sasl is not None:   # never the console's own identity on a SASL broker
            raise ToolError("not logged in")

        def run():
            admin = self._admin_client()
            try:
                return fn(admin, *args)
            except ToolError as e:
                if "connect" in str(e).lower() or "network" in str(e).lower():
                    self._admin = None
                    try:
                        admin.close()
                    except Exception:  # noqa: BLE001 - already broken
                        pass
                raise
        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    # -- routing ------------------------------------------------------------------------
    # -- login (SASL brokers) -------------------------------------------------------------
    def can(self, op: int, resource_type: int, name: str) -> bool:
        """The authorizer's answer for the logged-in user (always yes without SASL or
        without an authorizer), from the browser's address."""
        sess = _session.get()
        if sess is None:
            return self.sasl is None
        ctx = SimpleNamespace(broker=self.broker, principal=f"User:{sess.user}",
                              client_host=_peer.get())
        return authorization.allowed(ctx, op, resource_type, name)

    def _session_of(self, req: Request) -> tuple[str, Session] | None:
        for part in req.headers.get("cookie", "").split(";"):
            k, _, sid = part.strip().partition("=")
            if k == COOKIE and sid in self._sessions:
                sess = self._sessions[sid]
                if time.monotonic() - sess.last_used > SESSION_IDLE_S:
                    self._sessions.pop(sid).close()
                    return None
                sess.last_used = time.monotonic()
                self._sessions.move_to_end(sid)
                return sid, sess
        return None

    def login_page(self, status: int = 200, message: str = "") -> Response:
        body = (message + "<p>This broker uses SASL: log in as one of its users (PLAIN or "
                "SCRAM). The console then shows what that user's ACLs allow.</p>" + v.form(
                    "/login", self.csrf_token,
                    '<input name=username placeholder=user required autocomplete=username> '
                    '<input name=password type=password placeholder=password required '
                    'autocomplete=current-password> ', button="Log in", cls="login"))
        return Response(status, v.page("Log in", body))

    async def login(self, req: Request) -> Response:
        if not self._csrf_ok(req):
            return self.login_page(403, v.error_box("The form did not come from this console."))
        user, password = req.form.get("username", ""), req.form.get("password", "")
        address, mechanisms = self.sasl
        errors = []
        for mech in [m for m in LOGIN_MECHANISMS if m in mechanisms]:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-session")
            sec = ClientSecurity("SASL_PLAINTEXT", sasl_mechanism=mech, username=user,
                                 password=password)

            def connect():
                return AdminClient(f"{address[0]}:{address[1]}", timeout=10.0,
                                   client_id=CLIENT_ID, security=sec)
            try:
                admin = await asyncio.get_running_loop().run_in_executor(pool, connect)
            except Exception as e:  # noqa: BLE001 - a failed login, said in words
                pool.shutdown(wait=False)
                errors.append(f"{mech}: {e}")
                continue
            sid = secrets.token_urlsafe(32)
            self._sessions[sid] = Session(user, admin, pool)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)[1].close()
            log.info("console login", user=user, mechanism=mech, peer=req.peer)
            return Response(303, b"", "text/plain", (
                ("Location", "/"),
                ("Set-Cookie", f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/")))
        log.info("console login failed", user=user, peer=req.peer)
        return self.login_page(403, v.error_box(
            f"Login failed for {user}: " + ("; ".join(errors) or "no SASL mechanism the "
                                            "console can use (PLAIN, SCRAM-SHA-256/512)")))

    async def handle(self, req: Request) -> Response:
        parts = list(req.parts)
        _peer.set(req.peer)
        if parts and parts[0] == "static":
            pass
        elif self.sasl is not None:
            found = self._session_of(req)
            if parts == ["login"]:
                return await self.login(req) if req.method == "POST" else self.login_page()
            if found is None:
                if req.method == "POST":
                    return self.login_page(403, v.error_box("Log in first: nothing was changed."))
                return Response(303, b"", "text/plain", (("Location", "/login"),))
            if parts == ["logout"] and req.method == "POST":
                if self._csrf_ok(req):
                    self._sessions.pop(found[0]).close()
                return Response(303, b"", "text/plain", (
                    ("Location", "/login"),
                    ("Set-Cookie", f"{COOKIE}=; Max-Age=0; HttpOnly; SameSite=Strict; Path=/")))
            _session.set(found[1])
        try:
            if req.method == "POST":
                return await self._post(req, parts)
            if parts == ["static", "console.css"]:
                return Response(200, v.CSS, "text/css", (("Cache-Control", "max-age=3600"),))
            if parts == ["static", "console.js"]:
                return Response(200, v.JS, "text/javascript", (("Cache-Control", "max-age=3600"),))
            if parts == ["api", "rates"]:
                return self.rates(req.query.get("topic"))
            if len(parts) == 3 and parts[:2] == ["api", "lag"]:
                return await self.lag(parts[2])
            if not parts:
                return self.cluster_page()
            if parts == ["topics"]:
                return self.topics_page(req.query)
            if len(parts) == 2 and parts[0] == "topics":
                return await self.topic_page(parts[1], req.query)
            if len(parts) == 5 and parts[0] == "topics" and parts[2] == "partitions" \
                    and parts[4] == "messages" and parts[3].isdigit():
                return await self.messages_page(parts[1], int(parts[3]), req.query)
            if parts == ["groups"]:
                return await self.groups_page()
            if len(parts) == 2 and parts[0] == "groups":
                return await self.group_page(parts[1], req.query)
            if parts == ["charts"]:
                return self.charts_page()
            return self.html(404, "Not found", v.error_box(f"No page at {req.path}"))
        except ToolError as e:
            # a broker down, a partition offline, a request refused: said in words
            return self.html(502, "Error", v.error_box(f"The broker could not answer: {e}"))

    def html(self, status: int, title: str, body: str, active: str = "") -> Response:
        sess = _session.get()
        return Response(status, v.page(title, body, active=active, read_only=self.read_only,
                                       user=sess.user if sess else None, token=self.csrf_token))

    def _not_allowed(self, name: str) -> Response:
        # As Kafka answers an unauthorized topic: the same as a missing one would
        # leak that it exists, so say both.
        return self.html(403, name, v.error_box(
            f"Topic {name} does not exist or you are not allowed to describe it."))

    # -- Cluster ------------------------------------------------------------------------
    def cluster_page(self) -> Response:
        image = self.broker.image
        rows = []
        for b in sorted(image.brokers.values(), key=lambda b: b.node_id):
            rows.append([v.esc(b.node_id), v.esc(f"{b.host}:{b.port}"), v.esc(b.rack or "—"),
                         '<span class="bad">fenced</span>' if b.fenced else "registered",
                         "active controller" if b.node_id == image.controller_id else "",
                         "this node" if b.node_id == self.broker.node_id else ""])
        body = [f"<p>Cluster id <code>{v.esc(image.cluster_id)}</code>; metadata offset "
                f"{v.esc(image.offset)}; active controller: node {v.esc(image.controller_id)}</p>",
                "<h2>Brokers</h2>",
                v.table(["Node", "Address", "Rack", "State", "Controller", ""], rows,
                        test_id="brokers")]
        cluster_ok = self.can(DESCRIBE, CLUSTER, CLUSTER_NAME)
        quorum = getattr(getattr(self.broker, "controller", None), "quorum", None)
        if not cluster_ok:
            body.append(v.notice("The metadata quorum and the log directories need DESCRIBE "
                                 "on the cluster, which your ACLs do not allow."))
        if quorum is not None and cluster_ok:
            d = quorum.describe()
            qrows = [[v.esc(n), v.num(s.get("log_end_offset")),
                      v.esc(_ts(s.get("last_fetch_timestamp")))]
                     for n, s in sorted(d.get("voters", {}).items())]
            body += [f"<h2>Metadata quorum</h2><p>Leader: node {v.num(d.get('leader_id'))}, "
                     f"epoch {v.esc(d.get('epoch'))}, high watermark "
                     f"{v.num(d.get('high_watermark'))}</p>",
                     "" if d.get("leader_id") == self.broker.node_id else
                     '<p class=note>This node is not the quorum leader: only the leader '
                     "tracks the other voters' offsets (as KRaft's DescribeQuorum).</p>",
                     v.table(["Voter", "Log end offset", "Last fetch"], qrows, test_id="voters")]
        offline, under = [], []
        for t in image.topics.values():
            if not self.can(DESCRIBE, TOPIC, t.name):
                continue
            for p in t.partitions.values():
                if p.leader < 0:
                    offline.append((t.name, p.partition))
                elif len(p.isr) < len(p.replicas):
                    under.append((t.name, p.partition, p))
        body.append(f'<h2>Partitions</h2><p data-testid="partition-health">'
                    f'{len(offline)} offline, {len(under)} under-replicated</p>')
        if offline:
            body.append(v.error_box("Offline (no leader): " + ", ".join(
                f"{t}-{p}" for t, p in sorted(offline)[:100])))
        if under:
            body.append(v.table(["Partition", "Replicas", "ISR"], [
                [f'<a href="{v.esc(v.url("topics", t))}">{v.esc(t)}-{p}</a>',
                 v.esc(list(pi.replicas)), v.esc(list(pi.isr))]
                for t, p, pi in sorted(under, key=lambda x: x[:2])[:100]]))
        if not cluster_ok:
            return self.html(200, "Cluster", "".join(body), "/")
        body.append("<h2>Log directories (this node)</h2>")
        lm = self.broker.log_manager
        used: dict[str, int] = {}
        for (t, p), plog in list(lm._logs.items()):
            d = lm.log_dir_of(t, p)
            used[d] = used.get(d, 0) + plog.size_bytes
        offline_dirs = set(lm.offline_dirs)
        drows = []
        for d in list(lm.online_dirs) + sorted(offline_dirs):
            try:
                du = shutil.disk_usage(d)
                free = f"{v.human_bytes(du.free)} free of {v.human_bytes(du.total)}"
            except OSError as e:
                free = v.esc(f"unreadable: {e}")
            drows.append([v.esc(d), v.human_bytes(used.get(d, 0)), free,
                          '<span class="bad">offline</span>' if d in offline_dirs else "online"])
        body.append(v.table(["Directory", "Partition logs", "Disk", "State"], drows,
                            test_id="log-dirs"))
        return self.html(200, "Cluster", "".join(body), "/")

    # -- Topics -------------------------------------------------------------------------
    def _local_sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (t, _p), plog in list(self.broker.log_manager._logs.items()):
            out[t] = out.get(t, 0) + plog.size_bytes
        return out

    def topics_page(self, query) -> Response:
        image = self.broker.image
        q = query.get("q", "").strip()
        page = int(query["page"]) if query.get("page", "").isdigit() else 1
        names = sorted(n for n in image.topics if q.lower() in n.lower()
                       and self.can(DESCRIBE, TOPIC, n))
        pages = max(1, (len(names) + PAGE_SIZE - 1) // PAGE_SIZE)
        page = min(max(1, page), pages)
        sizes = self._local_sizes()
        msgs_in = {t: s[0] for t, s in self.broker.metrics._topic_in.items()}
        rows = []
        for n in names[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]:
            t = image.topics[n]
            parts = t.partitions.values()
            rf = max((len(p.replicas) for p in parts), default=0)
            offline = sum(1 for p in parts if p.leader < 0)
            under = sum(1 for p in parts if p.leader >= 0 and len(p.isr) < len(p.replicas))
            health = (f'<span class="bad">{offline} offline</span> ' if offline else "") + \
                     (f'<span class="bad">{under} under-replicated</span>' if under else "")
            rows.append([f'<a href="{v.esc(v.url("topics", n))}">{v.esc(n)}</a>',
                         v.esc(len(t.partitions)), v.esc(rf), health or "ok",
                         v.human_bytes(sizes.get(n, 0)), v.esc(msgs_in.get(n, 0))])
        search = (f'<form method=get action="/topics"><input name=q value="{v.esc(q)}" '
                  f'placeholder="search topics"><button>Search</button></form>')
        nav = self._pager("/topics", page, pages, q=q or None)
        body = [search, f'<p data-testid="topic-count">{len(names)} topics'
                        f'{" matching " + v.esc(repr(q)) if q else ""}</p>',
                v.table(["Topic", "Partitions", "Replication", "Health", "Size (this node)",
                         "Messages in (this node, since start)"], rows, test_id="topics"), nav]
        if not self.read_only:
            body.append("<h2>Create a topic</h2>" + v.form(
                "/topics", self.csrf_token,
                '<input name=name placeholder=name required> partitions '
                '<input name=partitions type=number min=1 value=1> replication '
                '<input name=replication_factor type=number min=1 value=1>',
                button="Create topic", cls="create-topic"))
        return self.html(200, "Topics", "".join(body), "/topics")

    @staticmethod
    def _pager(path: str, page: int, pages: int, **query) -> str:
        if pages <= 1:
            return ""
        links = []
        if page > 1:
            links.append(f'<a href="{v.esc(v.url(*path.strip("/").split("/"), page=page - 1, **query))}">previous</a>')
        links.append(f"page {page} of {pages}")
        if page < pages:
            links.append(f'<a rel=next href="{v.esc(v.url(*path.strip("/").split("/"), page=page + 1, **query))}">next</a>')
        return "<p class=pager>" + " · ".join(links) + "</p>"

    async def _offsets(self, name: str, pis: list) -> dict[int, tuple]:
        """partition -> (log start, log end, high watermark, LSO, note). Partitions this
        node leads are read in-process; the others with ListOffsets from their leader
        (a log end offset only the leader knows exactly: ListOffsets latest is the
        high watermark)."""
        rm = self.broker.replica_manager
        out, remote = {}, []
        for p in pis:
            part = rm.partitions.get((name, p.partition))
            if p.leader < 0:
                out[p.partition] = (None, None, None, None, "offline: no leader")
            elif part is not None and part.is_leader:
                out[p.partition] = (part.log_start_offset, part.log_end_offset,
                                    part.high_watermark, part.last_stable_offset, "")
            else:
                remote.append(p)
        if remote:
            leaders = {(name, p.partition): p.leader for p in remote}

            def ask(admin):
                early = admin.list_offsets({tp: -2 for tp in leaders}, leaders=leaders)
                late = admin.list_offsets({tp: -1 for tp in leaders}, leaders=leaders)
                lso = admin.list_offsets({tp: -1 for tp in leaders}, 1, leaders=leaders)
                return early, late, lso
            try:
                early, late, lso = await self.call(ask)
            except ToolError as e:
                for p in remote:
                    out[p.partition] = (None, None, None, None, f"leader {p.leader}: {e}")
                return out
            for p in remote:
                tp = (name, p.partition)
                errs = [r[tp][0] for r in (early, late, lso) if r[tp][0] != 0]
                note = kafka_message(errs[0]) if errs else f"asked leader {p.leader}"
                out[p.partition] = (early[tp][1], None, late[tp][1], lso[tp][1], note)
        return out

    async def topic_page(self, name: str, query) -> Response:
        t = self.broker.image.topics.get(name)
        if not self.can(DESCRIBE, TOPIC, name):
            return self._not_allowed(name)
        if t is None:
            return self.html(404, name, v.error_box(f"Topic {name} does not exist."))
        page = int(query["page"]) if query.get("page", "").isdigit() else 1
        pis = [t.partitions[i] for i in sorted(t.partitions)]
        pages = max(1, (len(pis) + PARTITION_PAGE - 1) // PARTITION_PAGE)
        page = min(max(1, page), pages)
        shown = pis[(page - 1) * PARTITION_PAGE: page * PARTITION_PAGE]
        offs = await self._offsets(name, shown)
        rows = []
        for p in shown:
            ls, leo, hw, lso, note = offs[p.partition]
            isr_cell = v.esc(list(p.isr))
            if len(p.isr) < len(p.replicas):
                isr_cell = f'<span class="bad">{isr_cell}</span>'
            rows.append([f'<a href="{v.esc(v.url("topics", name, "partitions", p.partition, "messages"))}">'
                         f"{p.partition}</a>",
                         '<span class="bad">none (offline)</span>' if p.leader < 0 else v.esc(p.leader),
                         v.esc(list(p.replicas)), isr_cell, v.num(ls), v.num(leo), v.num(hw),
                         v.num(lso), v.esc(note)])
        body = [f"<p>Topic id <code>{v.esc(t.topic_id)}</code>, {len(pis)} partitions</p>",
                "<h2>Partitions</h2>",
                v.table(["Partition", "Leader", "Replicas", "ISR", "Log start", "Log end",
                         "High watermark", "Last stable offset", "Note"], rows,
                        test_id="partitions"),
                self._pager(f"/topics/{name}", page, pages)]
        try:
            configs = (await self.call(lambda a: a.describe_configs(2, [name]))).get(name, [])
            crows = [[v.esc(c.name), "<i>sensitive</i>" if c.is_sensitive else v.esc(c.value),
                      v.esc(SOURCES.get(c.config_source, c.config_source))]
                     for c in sorted(configs, key=lambda c: c.name)]
            body += ["<h2>Configs</h2>", v.table(["Name", "Value", "Source"], crows,
                                                 test_id="configs")]
        except ToolError as e:
            body.append(v.error_box(f"Configs unavailable: {e}"))
        body.append(f'<h2>Rates</h2><svg width=600 height=160 data-source="'
                    f'{v.esc(v.url("api", "rates", topic=name))}"></svg><div class=chart-error></div>')
        if not self.read_only:
            body.append("<h2>Change</h2>" + v.form(
                v.url("topics", name, "partitions"), self.csrf_token,
                f'new partition count <input name=count type=number min={len(pis) + 1} '
                f'value={len(pis) + 1}>', button="Add partitions", cls="add-partitions"))
            body.append(v.form(v.url("topics", name, "delete"), self.csrf_token, "",
                               button="Delete topic", cls="delete-topic",
                               confirm=f"Delete topic {name} and all its data?"))
        return self.html(200, f"Topic {name}", "".join(body), "/topics")

    # -- Messages -----------------------------------------------------------------------
    async def messages_page(self, name: str, partition: int, query, flash: str = "") -> Response:
        t = self.broker.image.topics.get(name)
        if not self.can(DESCRIBE, TOPIC, name):
            return self._not_allowed(name)
        if t is None or partition not in t.partitions:
            return self.html(404, name, v.error_box(f"Partition {name}-{partition} does not exist."))
        pi = t.partitions[partition]
        title = f"Messages of {name}-{partition}"
        # With the registry on, "schema" is the default: it shows what is not in the
        # wire format as "text" does.
        formats = self._formats()
        fmt = query.get("format", formats[-1] if self.schemas else "text")
        fmt = fmt if fmt in formats else "text"
        state = self.schemas() if fmt == "schema" else None
        limit = int(query["limit"]) if query.get("limit", "").isdigit() else 20
        limit = max(1, min(limit, MAX_MESSAGES))
        mode_form = self._messages_form(name, partition, query, fmt, limit)
        body = [flash, mode_form]
        if pi.leader < 0:
            body.append(v.error_box(f"Partition {name}-{partition} is offline: no replica "
                                    f"of {list(pi.replicas)} is its leader."))
            return self.html(503, title, "".join(body), "/topics")
        tp = (name, partition)
        leaders = {tp: pi.leader}
        try:
            def bounds(admin):
                r = admin.list_offsets({tp: -2}, leaders=leaders)[tp]
                h = admin.list_offsets({tp: -1}, leaders=leaders)[tp]
                return r, h
            (e1, start), (e2, end) = await self.call(bounds)
            if e1 or e2:
                raise ToolError(kafka_message(e1 or e2))
            if query.get("timestamp"):
                try:
                    ts = parse_timestamp(query["timestamp"])
                except ValueError:
                    body.append(v.error_box(f"Not a timestamp: {query['timestamp']!r} "
                                            "(milliseconds or ISO 8601)"))
                    return self.html(400, title, "".join(body), "/topics")
                code, first = (await self.call(
                    lambda a: a.list_offsets({tp: ts}, leaders=leaders)))[tp]
                if code:
                    raise ToolError(kafka_message(code))
                first = end if first < 0 else first   # no record at or after it
            elif query.get("newest"):
                n = int(query["newest"]) if query["newest"].isdigit() else limit
                limit = max(1, min(n, MAX_MESSAGES))
                first = max(start, end - limit)
            elif query.get("offset", "").lstrip("-").isdigit():
                first = int(query["offset"])
            else:
                first = start
            records, errors = await self.call(self._read, name, partition, pi.leader, first, end, limit)
        except ToolError as e:
            body.append(v.error_box(f"Cannot read {name}-{partition} from leader {pi.leader}: {e}"))
            return self.html(502, title, "".join(body), "/topics")
        body.append(f'<p data-testid="range">Log start offset {start}, high watermark {end}; '
                    f"showing {len(records)} from offset {first}</p>")
        if first < start or first > end:
            body.append(v.notice(f"Offset {first} is outside the log ({start}..{end})."))
        body += [v.error_box(e) for e in errors]
        rows = []
        for ts_type, rec in records:
            # JSON is for values; keys and headers are shown as text (or hex); Confluent's
            # serializers frame keys as they do values, so "schema" decodes both.
            kfmt = "text" if fmt in ("json", "schema") else fmt
            hdrs = "".join(f"<div>{v.esc(k)} = {v.render_value(hv, kfmt, inline=True)}</div>"
                           for k, hv in rec.headers)
            if fmt == "schema":
                key, value = (v.render_schema_value(rec.key, state),
                              v.render_schema_value(rec.value, state))
            else:
                key, value = v.render_value(rec.key, kfmt), v.render_value(rec.value, fmt)
            rows.append([v.esc(rec.offset), v.esc(_ts(rec.timestamp)) + f'<div class=note>{v.esc(rec.timestamp)} '
                         f"{v.esc(ts_type)}</div>", key, value, hdrs])
        body.append(v.table(["Offset", "Timestamp", "Key", "Value", "Headers"], rows,
                            test_id="messages"))
        if records:
            nxt = records[-1][1].offset + 1
            body.append(f'<p><a rel=next href="{v.esc(v.url("topics", name, "partitions", partition, "messages", offset=nxt, limit=limit, format=fmt))}">'
                        f"next from offset {nxt}</a></p>")
        if not self.read_only:
            body.append("<h2>Produce a test message</h2>" + v.form(
                v.url("topics", name, "partitions", partition, "messages"), self.csrf_token,
                '<input name=key placeholder="key (empty: null)"> '
                '<textarea name=value placeholder=value rows=2 cols=40></textarea> '
                '<textarea name=headers placeholder="headers, one name=value a line" rows=2 cols=30></textarea>',
                button="Produce", cls="produce"))
        return self.html(200, title, "".join(body), "/topics")

    def _formats(self) -> tuple[str, ...]:
        return ("text", "json", "hex", "schema") if self.schemas else ("text", "json", "hex")

    def _messages_form(self, name, partition, query, fmt, limit) -> str:
        opts = "".join(f'<option value={f}{" selected" if f == fmt else ""}>{f}</option>'
                       for f in self._formats())
        return (f'<form method=get action="{v.esc(v.url("topics", name, "partitions", partition, "messages"))}">'
                f'from offset <input name=offset size=8 value="{v.esc(query.get("offset", ""))}"> '
                f'or newest <input name=newest size=4 value="{v.esc(query.get("newest", ""))}"> '
                f'or from time <input name=timestamp size=22 placeholder="2026-01-01T00:00:00Z" '
                f'value="{v.esc(query.get("timestamp", ""))}"> '
                f'limit <input name=limit size=4 value="{limit}"> as <select name=format>{opts}</select>'
                f"<button>Show</button></form>")

    @staticmethod
    def _read(admin, name, partition, leader, first, end, limit):
        """Up to `limit` records from `first`, fetched until the high watermark; a batch
        that does not decode is reported in words and skipped, not a blank page."""
        got, errors, pos = [], [], first
        settings = FetchSettings(max_wait_ms=0, min_bytes=0, max_bytes=1 << 20,
                                 partition_max_bytes=1 << 20, skip_bad_records=True)
        while len(got) < limit and pos < end:
            try:
                recs, errs, ends = fetch_once(admin, name, {partition: pos}, {partition: leader},
                                              0, settings)
            except ToolError as e:
                errors.append(str(e))
                break
            if errs:
                errors.append(f"Fetch at offset {pos}: {kafka_message(errs[partition])}")
                break
            got += [(ts, r) for _p, ts, r in recs]
            if ends.get(partition, pos) <= pos:
                break
            pos = ends[partition]
        return got[:limit], errors

    # -- Consumer groups ------------------------------------------------------------------
    async def groups_page(self) -> Response:
        groups = await self.call(lambda a: a.list_groups())
        rows = [[f'<a href="{v.esc(v.url("groups", g.group_id))}">{v.esc(g.group_id)}</a>',
                 v.esc(g.group_state or "—"), v.esc(g.protocol_type or "—")]
                for g in sorted(groups, key=lambda g: g.group_id)]
        return self.html(200, "Consumer groups",
                         f"<p>{len(rows)} groups</p>" +
                         v.table(["Group", "State", "Protocol type"], rows, test_id="groups"),
                         "/groups")

    async def group_page(self, group: str, query, flash: str = "") -> Response:
        def describe(admin):
            g = admin.describe_group(group)
            state, rows = describe_rows(admin, group) if g.group_state != "Dead" else ("Dead", [])
            return g, state, rows
        g, state, rows = await self.call(describe)
        if state == "Dead":
            return self.html(404, f"Group {group}", flash + v.error_box(f"Consumer group {group} does not exist."))
        body = [flash, f'<div class=kv><b>State</b><span data-testid="state">{v.esc(state)}</span>'
                       f"<b>Protocol type</b><span>{v.esc(g.protocol_type)}</span>"
                       f"<b>Protocol</b><span>{v.esc(g.protocol_data or '—')}</span></div>"]
        mrows = []
        for m in g.members:
            try:
                tps = decode_assignment(m.member_assignment) if g.protocol_type == "consumer" else []
                assigned = ", ".join(f"{t}-{p}" for t, p in sorted(tps)) or "—"
            except Exception as e:  # noqa: BLE001 - shown, not hidden
                assigned = f"cannot decode the assignment: {e}"
            mrows.append([v.esc(m.member_id), v.esc(getattr(m, "group_instance_id", None) or "—"),
                          v.esc(m.client_id), v.esc(m.client_host), v.esc(assigned)])
        body += ["<h2>Members</h2>", v.table(["Member", "Instance id", "Client id", "Host",
                                              "Assignment"], mrows, test_id="members")]
        orows = [[v.esc(r["topic"] or "—"), v.num(r["partition"]), v.num(r["current_offset"]),
                  v.num(r["log_end_offset"]), v.num(r["lag"]), v.esc(r["consumer_id"] or "—")]
                 for r in rows if r["topic"] is not None]
        total = sum(r["lag"] or 0 for r in rows)
        self._record_lag(group, total)
        body += [f'<h2>Offsets</h2><p>Total lag <b data-testid="total-lag">{total}</b></p>',
                 f'<svg width=600 height=140 data-source="{v.esc(v.url("api", "lag", group))}"></svg>'
                 '<div class=chart-error></div><p class=note>Total lag over time, sampled while '
                 'this page is open.</p>',
                 v.table(["Topic", "Partition", "Committed offset", "Log end offset", "Lag",
                          "Consumer"], orows, test_id="offsets")]
        if not self.read_only:
            if state == "Empty":
                body.append("<h2>Reset offsets</h2>" + v.form(
                    v.url("groups", group, "reset"), self.csrf_token,
                    '<select name=to><option value=earliest>earliest</option>'
                    '<option value=latest>latest</option><option value=timestamp>timestamp</option>'
                    '</select> <input name=timestamp placeholder="ms or ISO 8601 (for timestamp)">',
                    button="Reset offsets", cls="reset-offsets",
                    confirm=f"Reset the committed offsets of {group}?"))
            else:
                body.append(v.notice("Offsets can be reset only while the group is Empty "
                                     "(no member), as kafka-consumer-groups.sh requires."))
        return self.html(200, f"Group {group}", "".join(body), "/groups")

    # -- Charts -------------------------------------------------------------------------
    def charts_page(self) -> Response:
        body = ("<h2>Produce (bytes in per second, this node)</h2>"
                '<svg width=700 height=180 data-source="/api/rates?kind=in"></svg><div class=chart-error></div>'
                "<h2>Fetch (bytes out per second, this node)</h2>"
                '<svg width=700 height=180 data-source="/api/rates?kind=out"></svg><div class=chart-error></div>'
                f'<p class=note>Sampled every {SAMPLE_S:g} s from the broker\'s metrics; the last '
                f"{SAMPLES} samples.</p>")
        return self.html(200, "Charts", body, "/charts")

    def rates(self, topic: str | None) -> Response:
        """Per-second rates between consecutive samples: bytes in, messages in and bytes
        out of one topic, or bytes in and out of the five busiest topics."""
        s = list(self._samples)
        pairs = list(zip(s, s[1:]))
        if topic and not self.can(DESCRIBE, TOPIC, topic):
            return Response(403, b'{"error": "not allowed"}', "application/json")

        def rate(idx, t):
            return [max(0.0, (b[idx].get(t, 0) - a[idx].get(t, 0)) / max(1e-6, b[0] - a[0]))
                    for a, b in pairs]
        if topic:
            series = [{"name": "bytes in/s", "unit": "B/s", "points": rate(1, topic)},
                      {"name": "messages in/s", "unit": "msg/s", "points": rate(2, topic)},
                      {"name": "bytes out/s", "unit": "B/s", "points": rate(3, topic)}]
        else:
            last = s[-1] if s else (0, {}, {}, {})
            series = []
            for idx, label in ((1, "in"), (3, "out")):
                busiest = sorted((t for t in last[idx] if self.can(DESCRIBE, TOPIC, t)),
                                 key=lambda t: -last[idx][t])[:5]
                series += [{"name": f"{t} {label}", "unit": "B/s", "points": rate(idx, t)}
                           for t in busiest]
        return Response(200, json.dumps({"series": series}).encode(), "application/json")

    def _record_lag(self, group: str, total: int) -> None:
        samples = self._lag.pop(group, None) or collections.deque(maxlen=SAMPLES)
        samples.append((time.monotonic(), total))
        self._lag[group] = samples
        while len(self._lag) > 100:   # the groups watched most recently
            self._lag.popitem(last=False)

    async def lag(self, group: str) -> Response:
        """The group's total lag now (recorded) and the samples so far, for its chart."""
        try:
            _state, rows = await self.call(lambda a: describe_rows(a, group))
        except ToolError as e:
            return Response(502, json.dumps({"error": str(e)}).encode(), "application/json")
        self._record_lag(group, sum(r["lag"] or 0 for r in rows))
        points = [float(lag) for _t, lag in self._lag[group]]
        return Response(200, json.dumps({"series": [
            {"name": "total lag", "unit": "records", "points": points}]}).encode(),
            "application/json")

    # -- Forms --------------------------------------------------------------------------
    def _csrf_ok(self, req: Request) -> bool:
        # A same-origin check where the browser sends Origin, and the per-process token
        # in every form (a cross-site page cannot read it).
        origin = req.headers.get("origin")
        if origin and origin != "null":
            host = req.headers.get("host", "")
            if origin.split("://", 1)[-1] != host:
                return False
        return hmac.compare_digest(req.form.get("csrf", ""), self.csrf_token)

    async def _post(self, req: Request, parts: list[str]) -> Response:
        if self.read_only:
            return self.html(403, "Read-only", v.error_box(
                "This console is read-only (console.read.only=true): nothing was changed."))
        if not self._csrf_ok(req):
            return self.html(403, "Refused", v.error_box(
                "The form did not come from this console (missing or wrong CSRF token, or "
                "another origin): nothing was changed."))
        f = req.form
        if parts == ["topics"]:
            name = f.get("name", "").strip()
            try:
                n, rf = int(f.get("partitions", "1")), int(f.get("replication_factor", "1"))
            except ValueError:
                return self.html(400, "Create topic", v.error_box("Partitions and replication must be numbers."))
            try:
                await self.call(lambda a: a.create_topic_full(name, n, rf, {}))
            except ToolError as e:
                return self.html(400, "Create topic", v.error_box(f"Topic {name} was not created: {e}"))
            log.info("console created a topic", topic=name, partitions=n, replication_factor=rf)
            return self._redirect(v.url("topics", name))
        if len(parts) == 3 and parts[0] == "topics" and parts[2] == "delete":
            try:
                await self.call(lambda a: a.delete_topics([parts[1]]))
            except ToolError as e:
                return self.html(400, "Delete topic", v.error_box(f"Topic {parts[1]} was not deleted: {e}"))
            log.info("console deleted a topic", topic=parts[1])
            return self._redirect("/topics")
        if len(parts) == 3 and parts[0] == "topics" and parts[2] == "partitions":
            try:
                count = int(f.get("count", ""))
                await self.call(lambda a: a.create_partitions({parts[1]: count}))
            except (ValueError, ToolError) as e:
                return self.html(400, "Add partitions", v.error_box(f"No partitions added to {parts[1]}: {e}"))
            log.info("console added partitions", topic=parts[1], count=count)
            return self._redirect(v.url("topics", parts[1]))
        if len(parts) == 5 and parts[0] == "topics" and parts[4] == "messages" and parts[3].isdigit():
            return await self._produce(parts[1], int(parts[3]), f)
        if len(parts) == 3 and parts[0] == "groups" and parts[2] == "reset":
            return await self._reset(parts[1], f)
        return self.html(404, "Not found", v.error_box(f"No form at {req.path}"))

    @staticmethod
    def _redirect(location: str) -> Response:
        return Response(303, b"", "text/plain", (("Location", location),))

    async def _produce(self, name: str, partition: int, f) -> Response:
        t = self.broker.image.topics.get(name)
        if not self.can(DESCRIBE, TOPIC, name):
            return self._not_allowed(name)
        if t is None or partition not in t.partitions:
            return self.html(404, name, v.error_box(f"Partition {name}-{partition} does not exist."))
        headers = []
        for line in f.get("headers", "").splitlines():
            if line.strip():
                k, _, hv = line.partition("=")
                headers.append((k.strip(), hv.encode()))
        key = f.get("key", "").encode() or None
        record = (key, f.get("value", "").encode(), headers)
        leader = t.partitions[partition].leader
        T = ProduceRequest.TopicProduceData
        req = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10000, topic_data=[
            T(name=name, partition_data=[T.PartitionProduceData(index=partition,
                                                                records=build_batch([record]))])])
        try:
            if leader < 0:
                raise ToolError(f"partition {name}-{partition} is offline (no leader)")
            resp = await self.call(lambda a: a.request(req, node=leader))
            pr = resp.responses[0].partition_responses[0]
            if pr.error_code != ErrorCode.NONE:
                raise ToolError(kafka_message(pr.error_code, getattr(pr, "error_message", None)))
        except ToolError as e:
            flash = v.error_box(f"The message was not written: {e}")
            return await self.messages_page(name, partition, {}, flash)
        return self._redirect(v.url("topics", name, "partitions", partition, "messages",
                                    offset=pr.base_offset))

    async def _reset(self, group: str, f) -> Response:
        to = f.get("to", "")
        try:
            spec = {"earliest": -2, "latest": -1}.get(to)
            if spec is None:
                if to != "timestamp":
                    raise ToolError(f"reset to {to!r}: choose earliest, latest or timestamp")
                try:
                    spec = parse_timestamp(f.get("timestamp", ""))
                except ValueError:
                    raise ToolError(f"not a timestamp: {f.get('timestamp', '')!r}") from None

            def reset(admin):
                g = admin.describe_group(group)
                if g.group_state != "Empty":
                    raise ToolError(f"group {group} is {g.group_state}, not Empty: stop its "
                                    "consumers first")
                tps = list(admin.committed_offsets(group))
                if not tps:
                    raise ToolError(f"group {group} has no committed offsets to reset")
                got = admin.list_offsets({tp: spec for tp in tps})
                offsets = {}
                for tp, (code, off) in got.items():
                    if code:
                        raise ToolError(f"{tp[0]}-{tp[1]}: {kafka_message(code)}")
                    if off < 0:   # no record at or after the timestamp: the log end
                        off = admin.list_offsets({tp: -1})[tp][1]
                    offsets[tp] = off
                admin.commit_offsets(group, offsets)
                return offsets
            offsets = await self.call(reset)
        except ToolError as e:
            return await self.group_page(group, {}, v.error_box(f"Offsets not reset: {e}"))
        log.info("console reset group offsets", group=group, to=to, partitions=len(offsets))
        return await self.group_page(group, {}, v.notice(
            f"Reset {len(offsets)} partitions of {group} to {to}."))

    # -- process wiring -----------------------------------------------------------------
    @staticmethod
    def kafka_address_of(config, bound: dict[str, tuple[str, int]],
                         protocol: str = "PLAINTEXT") -> tuple[str, int] | None:
        """The address of this node's first listener of `protocol` (None: none)."""
        for lst in config.listeners:
            if config.security_protocol(lst.name) == protocol and lst.name in bound:
                host, port = bound[lst.name]
                return ("127.0.0.1" if host in ("0.0.0.0", "", "::") else host), port
        return None

    @staticmethod
    def sasl_of(config, bound) -> tuple[tuple[str, int], list[str]] | None:
        """(address, mechanisms) of the first SASL_PLAINTEXT listener when the broker
        uses SASL anywhere (console/__init__.py's refusal() made sure there is one)."""
        from kafkette.config import SASL_PROTOCOLS
        if not any(config.security_protocol(lst.name) in SASL_PROTOCOLS
                   for lst in config.listeners):
            return None
        for lst in config.listeners:
            if config.security_protocol(lst.name) == "SASL_PLAINTEXT" and lst.name in bound:
                host, port = bound[lst.name]
                return ((("127.0.0.1" if host in ("0.0.0.0", "", "::") else host), port),
                        config.sasl_mechanisms(lst.name))
        return None
