"""The Schema Registry's I/O: `_schemas` through kafkette's client, and the REST API.

`SchemaStore` keeps a `kafkette.registry.state.RegistryState` equal to the topic
`_schemas` (one partition, compacted): it reads the topic to its end before the
listener accepts, then follows it (long-polling Fetch), and writes with Produce
acks=all to the partition's leader. A write returns once this node has read it back,
so an answer is always readable at once on the node that gave it (Confluent's
registry waits for its own reader the same way). Every node of a cluster writes through
the leader of `_schemas` partition 0 and reads the topic, so all nodes serve the same
registry; ids stay unique because the topic's order decides (registry/state.py).
Confluent elects one writer node and forwards writes to it; kafkette lets the log
order the writes instead, and a node that lost a race plans again.

`SchemaRegistryHttp` serves Confluent's REST API on `schema.registry.listener`, with
HTTP/1.1 keep-alive (confluent-kafka's client reuses its connections). The request
head is bounded (16 KiB, 30 s idle), the body by `MAX_BODY` (413 above it), the open
connections by `MAX_CONNECTIONS` (503 above it).
"""
from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs, unquote

from kafkette.client import KafkaClient, NetworkError
from kafkette.errors import KafkaError
from kafkette.logging import get_logger
from kafkette.protocol.messages import FetchRequest, ProduceRequest
from kafkette.protocol.records import (BATCH_HEADER_SIZE, LOG_OVERHEAD, build_batch,
                                       decode_records, iter_batches)
from kafkette.registry.errors import RegistryError
from kafkette.registry.state import RegistryState, key_bytes, parse_version
from kafkette.server.metrics_http import parse_host_port

log = get_logger("kafkette.schema_registry")
TOPIC = "_schemas"
MAX_HEAD = 16384
MAX_BODY = 1 << 20      # _schemas' records are bounded by message.max.bytes (1 MiB) too
IDLE_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 256   # open registry connections; more are answered 503 and closed
WRITE_TIMEOUT_S = 15.0
WRITE_RETRIES = 5
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPTED_TYPES = ("application/vnd.schemaregistry.v1+json",
                  "application/vnd.schemaregistry+json", "application/json",
                  "application/octet-stream")


def registry_client_security(config):
    """The ClientSecurity the registry reaches `_schemas` with (None: PLAINTEXT): its
    node's inter-broker listener and credentials. ConfigError, naming
    schema.registry.listener, when the listener address is bad or the inter-broker
    listener is secured without usable credentials, so that `serve` stops before it
    binds anything."""
    from kafkette.broker import peer_security
    from kafkette.config import ConfigError
    try:
        parse_host_port(config["schema.registry.listener"])
    except ValueError:
        raise ConfigError(f"schema.registry.listener must be host:port, got "
                          f"{config['schema.registry.listener']!r}",
                          key="schema.registry.listener") from None
    listener = config.inter_broker_listener_name
    if config.security_protocol(listener) == "PLAINTEXT":
        return None
    try:
        return peer_security.inter_broker_security(config)
    except ConfigError as e:
        raise ConfigError(f"the schema registry reaches _schemas through the inter-broker "
                          f"listener {listener}: {e}", key="schema.registry.listener") from None


CREATE_WAIT_S = 10.0    # how long a cluster node waits for brokers before a smaller RF


def wanted_replication_factor(config) -> int:
    """Confluent's kafkastore.topic.replication.factor (3), capped at the brokers the
    cluster is expected to have: one node alone, or the voters of combined nodes."""
    voters = config.controller_quorum_voters
    if not voters:
        return 1
    if config.is_controller and config.is_broker:
        return min(3, len(voters))
    return 3


class SchemasTopic:
    """Creating `_schemas` (one partition: the topic orders every write; compacted;
    replicated as Confluent's kafkastore.topic). A cluster node that starts with its
    peers waits up to CREATE_WAIT_S for the wanted number of live brokers, so that the
    topic is not made with the one or two that happened to be up first; after that it
    takes the live ones (logged), as kafkette does for __consumer_offsets."""

    def __init__(self, broker, ensure_internal_topic, clock=time.monotonic):
        self.broker = broker
        self._ensure = ensure_internal_topic
        self._clock = clock
        self._since = clock()
        self._warned = False

    def spec(self, broker) -> tuple[int, int, dict[str, str]]:
        wanted = wanted_replication_factor(broker.config)
        rf = max(min(wanted, len(broker.controller.live_brokers())), 1)
        if rf < wanted and not self._warned:
            self._warned = True
            log.warning("schemas topic replication factor capped at the live brokers",
                        topic=TOPIC, wanted=wanted, replication_factor=rf)
        return 1, rf, {"cleanup.policy": "compact", "min.insync.replicas": str(min(2, rf))}

    def __call__(self) -> bool:
        if TOPIC in self.broker.image.topics:
            return True
        live = len(self.broker.controller.live_brokers())
        if live < wanted_replication_factor(self.broker.config) \
                and self._clock() - self._since < CREATE_WAIT_S:
            return False
        return self._ensure(self.broker, TOPIC, self.spec)


class SchemaStore:
    def __init__(self, bootstrap: tuple[str, int], ensure_topic=None, security=None):
        self.state = RegistryState()
        self._client = KafkaClient([bootstrap], client_id="kafkette-schema-registry",
                                   security=security)
        # Writes on connections of their own: a broker answers a connection's requests
        # in order, so a Produce behind the reader's long-polling Fetch would wait for it.
        self._writer = KafkaClient([bootstrap], client_id="kafkette-schema-registry",
                                   security=security)
        self._ensure_topic = ensure_topic
        self._leader: int | None = None
        self.next_offset = 0           # the next offset of _schemas to apply
        self._progress = asyncio.Condition()
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self.ready = asyncio.Event()

    async def start(self, timeout: float = 60.0) -> None:
        self._task = asyncio.ensure_future(self._follow())
        await asyncio.wait_for(self.ready.wait(), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
        await self._client.close()
        await self._writer.close()

    async def _find_leader(self, client: KafkaClient) -> int | None:
        if self._ensure_topic is not None and not self._ensure_topic():
            return None
        md = await client.metadata([TOPIC])
        for t in md.topics:
            if t.name == TOPIC and t.error_code == 0:
                for p in t.partitions:
                    if p.partition_index == 0 and p.leader_id >= 0:
                        return p.leader_id
        return None

    async def _follow(self) -> None:
        delay = 0.05
        while True:
            try:
                if self._leader is None:
                    self._leader = await self._find_leader(self._client)
                    if self._leader is None:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 1.0)
                        continue
                caught_up = await self._fetch_once()
                delay = 0.05
                if caught_up and not self.ready.is_set():
                    log.info("schema registry caught up", topic=TOPIC,
                             offset=self.next_offset, schemas=len(self.state.by_id),
                             subjects=len(self.state.versions))
                    self.ready.set()
            except asyncio.CancelledError:
                raise
            except (NetworkError, KafkaError, OSError) as e:
                log.info("schema registry reader retrying", error=f"{type(e).__name__}: {e}")
                self._leader = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _fetch_once(self) -> bool:
        """One Fetch (long-polling once caught up); True when at the high watermark."""
        version = await self._client.version_for(FetchRequest.API_KEY, self._leader,
                                                 min_version=4, max_version=12)
        T = FetchRequest.FetchTopic
        req = FetchRequest(replica_id=-1, max_wait_ms=500 if self.ready.is_set() else 0,
                           min_bytes=1, max_bytes=8 << 20, isolation_level=1, session_id=0,
                           session_epoch=-1, topics=[T(topic=TOPIC, partitions=[
                               T.FetchPartition(partition=0, current_leader_epoch=-1,
                                                fetch_offset=self.next_offset,
                                                last_fetched_epoch=-1, log_start_offset=-1,
                                                partition_max_bytes=8 << 20)])],
                           forgotten_topics_data=[], rack_id="")
        resp = await self._client.send(req, version, node=self._leader, timeout=10.0)
        pd = resp.responses[0].partitions[0]
        if pd.error_code == 1:  # OFFSET_OUT_OF_RANGE: compaction or a new topic
            self.next_offset = max(pd.log_start_offset, 0)
            return False
        if pd.error_code != 0:
            raise KafkaError(f"fetch {TOPIC}-0: error {pd.error_code}", code=pd.error_code)
        data = _whole_batches(pd.records)
        for pos, h in iter_batches(data, validate_crc=True):
            if not h.is_control:
                for rec in decode_records(data[pos:pos + h.size]):
                    if rec.offset >= self.next_offset:
                        self.state.apply(rec.key, rec.value)
            self.next_offset = max(self.next_offset, h.next_offset)
        async with self._progress:
            self._progress.notify_all()
        return self.next_offset >= pd.high_watermark

    async def append(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """Append records and wait until they are applied here."""
        if not records:
            return
        deadline = time.monotonic() + WRITE_TIMEOUT_S
        while True:
            try:
                if self._leader is None:
                    self._leader = await self._find_leader(self._writer)
                if self._leader is None:
                    raise KafkaError("no leader for _schemas", code=5)
                version = await self._writer.version_for(ProduceRequest.API_KEY, self._leader,
                                                         min_version=3, max_version=12)
                T = ProduceRequest.TopicProduceData
                req = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10000,
                                     topic_data=[T(name=TOPIC, partition_data=[
                                         T.PartitionProduceData(index=0, records=build_batch(
                                             [(k, v, []) for k, v in records]))])])
                resp = await self._writer.send(req, version, node=self._leader, timeout=12.0)
                pr = resp.responses[0].partition_responses[0]
                if pr.error_code != 0:
                    raise KafkaError(f"produce {TOPIC}-0: error {pr.error_code}",
                                     code=pr.error_code)
                last = pr.base_offset + len(records) - 1
                break
            except (NetworkError, KafkaError, OSError) as e:
                self._leader = None
                if time.monotonic() >= deadline:
                    raise RegistryError(500, 50001, f"Error while writing to the "
                                        f"schemas topic: {e}") from None
                await asyncio.sleep(0.1)
        async with self._progress:
            try:
                await asyncio.wait_for(self._progress.wait_for(
                    lambda: self.next_offset > last), max(deadline - time.monotonic(), 1))
            except asyncio.TimeoutError:
                raise RegistryError(500, 50002, "Write to the schemas topic timed out "
                                    "while waiting to read it back") from None

    # --------------------------------------------------------------- writes
    async def register(self, subject: str, body: dict, normalize: bool) -> dict:
        async with self._write_lock:
            for _ in range(WRITE_RETRIES):
                existing, new = self.state.plan_register(subject, body, normalize)
                if existing is not None:
                    return {"id": existing.id}
                await self.append([new.record()])
                if self.state.planned_ok(new):
                    log.info("schema registered", subject=subject, version=new.version,
                             id=new.id, schema_type=new.schema_type)
                    return {"id": new.id}
            raise RegistryError(500, 50001, "Registration kept conflicting with "
                                "concurrent writes; retry")

    async def write(self, plan) -> object:
        async with self._write_lock:
            result, records = plan()
            await self.append(records)
            return result


def _whole_batches(data) -> memoryview:
    mv = memoryview(data) if data else memoryview(b"")
    pos, n = 0, len(mv)
    while n - pos >= BATCH_HEADER_SIZE:
        size = int.from_bytes(mv[pos + 8:pos + 12], "big", signed=True) + LOG_OVERHEAD
        if size < BATCH_HEADER_SIZE or pos + size > n:
            break
        pos += size
    return mv[:pos]


# ------------------------------------------------------------------------ HTTP
REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
           413: "Payload Too Large",
           415: "Unsupported Media Type", 422: "Unprocessable Entity",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}


def _flag(query: dict, name: str) -> bool:
    return (query.get(name, ["false"])[-1] or "").lower() == "true"


class SchemaRegistryHttp:
    def __init__(self, store: SchemaStore):
        self.store = store
        self._server: asyncio.AbstractServer | None = None
        self.address: tuple[str, int] | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    async def start(self, address: str) -> tuple[str, int]:
        host, port = parse_host_port(address)
        self._server = await asyncio.start_server(self._serve, host, port, backlog=128,
                                                  limit=MAX_HEAD)
        self.address = self._server.sockets[0].getsockname()[:2]
        log.info("schema registry listener started", host=self.address[0],
                 port=self.address[1])
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= MAX_CONNECTIONS:
            # each connection may hold a head and a body in memory: bound how many
            try:
                await self._reply(writer, 503, {"error_code": 50003, "message":
                                                "Too many connections"}, close=True)
            except ConnectionError:
                pass
            writer.close()
            return
        self._conns.add(writer)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT_S)
                except (asyncio.LimitOverrunError, ValueError):
                    await self._reply(writer, 431, {"error_code": 431, "message":
                                                    "Request header too large"}, close=True)
                    return
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split()
                if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                    await self._reply(writer, 400, {"error_code": 400,
                                                    "message": "Bad request"}, close=True)
                    return
                method, target, proto = parts
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                keep = proto == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    await self._reply(writer, 411, {"error_code": 411, "message":
                                                    "Length Required"}, close=True)
                    return
                raw_len = headers.get("content-length", "0") or "0"
                if not raw_len.isdigit():
                    await self._reply(writer, 400, {"error_code": 400, "message":
                                                    "Bad Content-Length"}, close=True)
                    return
                length = int(raw_len)
                if length > MAX_BODY:
                    # the body is not read: answer and close rather than drain it
                    await self._reply(writer, 413, {"error_code": 413, "message":
                                                    f"Request body larger than {MAX_BODY} "
                                                    "bytes"}, close=True)
                    return
                try:
                    body = await asyncio.wait_for(reader.readexactly(length), IDLE_TIMEOUT_S) \
                        if length else b""
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                status, obj = await self.handle(method, target, headers, body)
                await self._reply(writer, status, obj, close=not keep,
                                  head_only=method == "HEAD")
                if not keep:
                    return
        except Exception:  # noqa: BLE001 - one connection's failure, logged
            log.exception("schema registry connection failed")
        finally:
            self._conns.discard(writer)
            writer.close()

    async def _reply(self, writer, status: int, obj, close=False, head_only=False) -> None:
        if isinstance(obj, bytes):
            body, ctype = obj, "text/plain"
        else:
            body, ctype = json.dumps(obj).encode(), CONTENT_TYPE
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                + ("Connection: close\r\n" if close else "") + "\r\n").encode()
        writer.write(head + (b"" if head_only else body))
        await writer.drain()

    async def handle(self, method: str, target: str, headers: dict, body: bytes):
        """(status, JSON-able answer) of one request."""
        path, _, qs = target.partition("?")
        query = parse_qs(qs, keep_blank_values=True)
        segs = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
        try:
            if method in ("POST", "PUT"):
                ctype = headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype and ctype not in ACCEPTED_TYPES:
                    return 415, {"error_code": 415, "message": "HTTP 415 Unsupported Media Type"}
                try:
                    data = json.loads(body) if body else None
                except ValueError as e:
                    return 400, {"error_code": 400, "message": f"Unrecognized JSON: {e}"}
            else:
                data = None
            if method == "HEAD":
                method = "GET"
            return await self._route(method, segs, query, data)
        except RegistryError as e:
            return e.status, e.body()
        except Exception as e:  # noqa: BLE001 - Confluent's 500 answer, the broker stays up
            log.exception("schema registry request failed", method=method, path=path)
            return 500, {"error_code": 50001, "message": f"Internal error: {type(e).__name__}"}

    async def _route(self, method, segs, query, data):
        st = self.store.state
        deleted = _flag(query, "deleted")
        n = len(segs)
        head = segs[0] if segs else ""
        if n == 0:
            return (200, {}) if method == "GET" else _no_method()
        if head == "schemas":
            if n == 2 and segs[1] == "types" and method == "GET":
                return 200, ["JSON", "PROTOBUF", "AVRO"]
            if n >= 3 and segs[1] == "ids" and method == "GET":
                sv = st.schema_by_id(segs[2])
                if n == 3:
                    out = {}
                    if sv.schema_type != "AVRO":
                        out["schemaType"] = sv.schema_type
                    if sv.references:
                        out["references"] = sv.references
                    out.update(sv.extra)
                    out["schema"] = sv.schema
                    return 200, out
                if n == 4 and segs[3] == "schema":
                    return 200, _raw(sv.schema)
                if n == 4 and segs[3] == "subjects":
                    return 200, sorted({u.subject for u in st.id_usages(segs[2], deleted)})
                if n == 4 and segs[3] == "versions":
                    return 200, [{"subject": u.subject, "version": u.version}
                                 for u in st.id_usages(segs[2], deleted)]
            return _not_found()
        if head == "subjects":
            if n == 1:
                if method != "GET":
                    return _no_method()
                prefix = query.get("subjectPrefix", [""])[-1]
                if prefix == ":*:":  # Confluent's "every context" prefix
                    prefix = ""
                return 200, _page(st.subjects(deleted, prefix), query)
            subject = segs[1]
            if n == 2:
                if method == "POST":
                    sv = st.lookup(subject, data, _flag(query, "normalize"), deleted)
                    return 200, sv.as_dict()
                if method == "DELETE":
                    permanent = _flag(query, "permanent")
                    return 200, await self.store.write(
                        lambda: st.plan_delete_subject(subject, permanent))
                return _no_method()
            if segs[2] != "versions":
                return _not_found()
            if n == 3:
                if method == "GET":
                    return 200, _page(st.version_list(subject, deleted), query)
                if method == "POST":
                    return 200, await self.store.register(subject, data,
                                                          _flag(query, "normalize"))
                return _no_method()
            version = segs[3]
            if n == 4:
                if method == "GET":
                    return 200, st.get_version(subject, version, deleted).as_dict()
                if method == "DELETE":
                    permanent = _flag(query, "permanent")
                    return 200, await self.store.write(
                        lambda: st.plan_delete_version(subject, version, permanent))
                return _no_method()
            if n == 5 and method == "GET":
                sv = st.get_version(subject, version, deleted)
                if segs[4] == "schema":
                    return 200, _raw(sv.schema)
                if segs[4] == "referencedby":
                    return 200, sorted(o.id for vs in st.versions.values() for o in vs.values()
                                       if not o.deleted and any(
                                           r.get("subject") == subject
                                           and r.get("version") == sv.version
                                           for r in o.references))
            return _not_found()
        if head == "config" and n <= 2:
            subject = segs[1] if n == 2 else None
            if method == "GET":
                c = st.configs.get(subject)
                if c is None and subject is not None:
                    if _flag(query, "defaultToGlobal"):
                        c = st.configs.get(None)
                    else:
                        raise RegistryError(404, 40408, f"Subject '{subject}' does not have "
                                            "subject-level compatibility configured")
                return 200, dict(c or {"compatibilityLevel": st.level(None)})
            if method == "PUT":
                return 200, await self.store.write(lambda: st.plan_config(subject, data))
            if method == "DELETE":
                old = st.level(subject)
                if subject is not None and subject not in st.configs:
                    raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
                await self.store.write(lambda: (None, [(key_bytes("CONFIG", subject), None)]))
                return 200, {"compatibilityLevel": old}
            return _no_method()
        if head == "mode" and n <= 2:
            subject = segs[1] if n == 2 else None
            if method == "GET":
                if subject is not None and subject not in st.modes \
                        and not _flag(query, "defaultToGlobal"):
                    raise RegistryError(404, 40409, f"Subject '{subject}' does not have "
                                        "subject-level mode configured")
                return 200, {"mode": st.mode(subject)}
            if method == "PUT":
                return 200, await self.store.write(
                    lambda: st.plan_mode(subject, data, _flag(query, "force")))
            if method == "DELETE":
                old = st.mode(subject)
                await self.store.write(lambda: (None, [(key_bytes("MODE", subject), None)]))
                return 200, {"mode": old}
            return _no_method()
        if head == "compatibility" and n in (4, 5) and segs[1] == "subjects" \
                and segs[3] == "versions":
            if method != "POST":
                return _no_method()
            return 200, self._compatibility(segs[2], segs[4] if n == 5 else None, data,
                                            _flag(query, "verbose"))
        if head == "contexts" and n == 1 and method == "GET":
            return 200, ["."]
        return _not_found()

    def _compatibility(self, subject, version, data, verbose):
        from kafkette.registry.state import request_schema
        st = self.store.state
        schema_type, text, refs = request_schema(data)
        parsed = st.parse(schema_type, text, refs)
        against = None
        if version is not None:
            parse_version(version)
            try:
                against = [st.get_version(subject, version)]
            except RegistryError as e:
                if e.error_code == 40401 and version in ("latest", "-1"):
                    return {"is_compatible": True}  # nothing to be incompatible with
                raise
        problems = st.check_compatibility(subject, schema_type, parsed, against)
        out = {"is_compatible": not problems}
        if verbose:
            out["messages"] = problems
        return out


def _raw(text: str):
    """/schema endpoints answer the schema itself (JSON for Avro and JSON Schema)."""
    try:
        return json.loads(text)
    except ValueError:
        return text.encode()


def _page(items: list, query: dict) -> list:
    try:
        offset = int(query.get("offset", ["0"])[-1] or 0)
        limit = int(query.get("limit", ["-1"])[-1] or -1)
    except ValueError:
        return items
    items = items[max(offset, 0):]
    return items if limit < 0 else items[:limit]


def _not_found():
    return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}


def _no_method():
    return 405, {"error_code": 405, "message": "HTTP 405 Method Not Allowed"}



