"""The `security` suite: what TLS + SASL/SCRAM cost a producer, on one kafkette broker.

One broker with two listeners, PLAINTEXT and SASL_SSL (SCRAM-SHA-512; a CA and server
certificate from trustme, a SCRAM user created with AlterUserScramCredentials on the
PLAINTEXT listener). The produce suite's confluent-kafka worker (100 B records,
linger.ms=5, 6 partitions, acks=1) writes --records records over each listener; the
runs alternate (PLAINTEXT first in even repeats), so drift on a shared machine hits
both. The connection set-up (TLS handshake, SCRAM exchange) is outside the timed part
(the worker asks for Metadata first). Ratio = SASL_SSL / PLAINTEXT: the price of
encrypting every byte in the broker's Python TLS (the ssl module's SSLObject on
asyncio's transport) and in librdkafka's OpenSSL; SCRAM itself costs one exchange per
connection. The throughput rows are bound by the Python client loop (as the produce
suite's), so sec_broker_cpu_us_per_rec (the broker process's user + system CPU during
the run, from /proc, per record) is the one that shows the broker's TLS work.
"""
from __future__ import annotations

import secrets
import tempfile

from kafkette.bench.harness import Results, progress, run_worker, topic_name
from kafkette.bench.targets import Kafkette, free_port
from kafkette.bench.transactions import _cpu_s

SASL_SSL = "SASL_SSL (SCRAM-SHA-512)"
PLAINTEXT = "PLAINTEXT"
SEC_ROWS = [
    ("sec_produce_rec_s", "rec/s", True, None, None),
    ("sec_produce_mb_s", "MB/s", True, None, None),
    ("sec_broker_cpu_us_per_rec", "µs", False, None, None),
]
USER = "bench"


def _create_user(bootstrap: str, password: str) -> None:
    from kafkette.client import request_once
    from kafkette.protocol.messages import AlterUserScramCredentialsRequest as R
    from kafkette.tools.security import salted_password
    host, _, port = bootstrap.rpartition(":")
    salt = secrets.token_bytes(32)
    resp = request_once(host, int(port), R(deletions=[], upsertions=[R.ScramCredentialUpsertion(
        name=USER, mechanism=2, iterations=4096, salt=salt,
        salted_password=salted_password("SCRAM-SHA-512", password, salt, 4096))]), 0)
    if any(r.error_code for r in resp.results):
        raise RuntimeError(f"cannot create the bench SCRAM user: {resp.results}")


def suite_security(args, res: Results) -> None:
    try:
        import trustme
    except ImportError:
        res.notes.append("security suite skipped: trustme is not installed")
        return
    pki = tempfile.mkdtemp(prefix="kafkette-bench-pki-")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(f"{pki}/ca.pem")
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(f"{pki}/server.pem")
    sport = free_port()
    password = secrets.token_hex(12)
    t = Kafkette(name="kafkette", extra_listeners=f"SASL_SSL://127.0.0.1:{sport}", extra_args=[
        "--set", "ssl.keystore.type=PEM", "--set", f"ssl.keystore.location={pki}/server.pem",
        "--set", "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512"])
    secured = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
               "sasl.username": USER, "sasl.password": password,
               "ssl.ca.location": f"{pki}/ca.pem"}
    res.labels[SASL_SSL] = SASL_SSL
    with t:
        _create_user(t.bootstrap, password)
        for i in range(args.repeat):
            order = [PLAINTEXT, SASL_SSL] if i % 2 == 0 else [SASL_SSL, PLAINTEXT]
            for kind in order:
                progress(f"security: produce over {kind} run {i + 1}/{args.repeat} "
                         f"({args.records:,} x 100 B, 6 partitions, acks=1)")
                topic = topic_name("security")
                t.create_topic(topic, 6)
                bootstrap = t.bootstrap if kind == PLAINTEXT else f"127.0.0.1:{sport}"
                cpu0 = _cpu_s(t.pid)
                r = run_worker("produce", {"bootstrap": bootstrap, "topic": topic,
                                           "records": args.records, "acks": "1",
                                           "config": secured if kind == SASL_SSL else {}})
                if r["errors"] or r["undelivered"]:
                    raise RuntimeError(f"security {kind}: {r['errors']} delivery errors "
                                       f"{r['first_error']}, {r['undelivered']} undelivered")
                res.add("sec_broker_cpu_us_per_rec", kind,
                        (_cpu_s(t.pid) - cpu0) / args.records * 1e6)
                rate = args.records / r["seconds"]
                res.add("sec_produce_rec_s", kind, rate)
                res.add("sec_produce_mb_s", kind, rate * 100 / 1e6)
