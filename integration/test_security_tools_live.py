"""The security tools against a live secured broker: kafka-configs.sh / kafkette users
make SCRAM users a client then logs in as; kafka-acls.sh / kafkette acls add, list
and remove the ACLs that decide what that user may do. The broker is
EmbeddedBroker(security="SASL_SSL") (certificates from trustme, SCRAM-SHA-512) with
the StandardAuthorizer on; the tools connect with a --command-config that carries
the SASL_SSL client settings, as against Kafka."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from itutil import unique_topic

pytestmark = pytest.mark.timeout(180)

PY = sys.executable


@pytest.fixture(scope="module")
def secured():
    from kafkette import EmbeddedBroker
    with EmbeddedBroker({"authorizer.class.name":
                         "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                         "super.users": "User:admin",
                         "listener.name.sasl_ssl.sasl.enabled.mechanisms":
                             "SCRAM-SHA-512,SCRAM-SHA-256"},
                        security="SASL_SSL", users={"admin": "admin-secret"},
                        mechanism="SCRAM-SHA-512") as b:
        yield b


@pytest.fixture(scope="module")
def admin_config(secured, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "admin.properties"
    path.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="admin" password="admin-secret";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={secured.ca_file}\n")
    return str(path)


def run(*argv, input=None):
    r = subprocess.run([PY, *argv], capture_output=True, text=True, timeout=60, input=input)
    return r


def ok(r) -> str:
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def configs(b, cfg, *args):
    return run("-m", "kafkette.tools.kafka_configs", "--bootstrap-server", b.bootstrap_servers,
               "--command-config", cfg, *args)


def acls(b, cfg, *args, input=None):
    return run("-m", "kafkette.tools.kafka_acls", "--bootstrap-server", b.bootstrap_servers,
               "--command-config", cfg, *args, input=input)


def kafkette(b, cfg, *args):
    return run("-m", "kafkette", *args, "--bootstrap-server", b.bootstrap_servers,
               "--command-config", cfg)


def confluent_produce(b, user, password, topic, mechanism="SCRAM-SHA-512"):
    """The delivery error of one message (None when it was written)."""
    from confluent_kafka import Producer
    errors = []
    p = Producer({"bootstrap.servers": b.bootstrap_servers, "security.protocol": "SASL_SSL",
                  "sasl.mechanism": mechanism, "sasl.username": user,
                  "sasl.password": password, "ssl.ca.location": b.ca_file,
                  "message.timeout.ms": 10000})
    p.produce(topic, b"v", on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(20) == 0
    return errors[0]


def test_users_and_acls_decide_what_a_scram_client_may_do(secured, admin_config):
    b, cfg = secured, admin_config
    t = unique_topic("sec-tools")
    b.create_topic(t)
    out = ok(configs(b, cfg, "--alter", "--entity-type", "users", "--entity-name", "alice",
                     "--add-config", "SCRAM-SHA-256=[iterations=8192,password=alice-secret],"
                                     "SCRAM-SHA-512=[password=alice-secret]"))
    assert out == "Completed updating config for user alice.\n"
    out = ok(configs(b, cfg, "--describe", "--entity-type", "users", "--entity-name", "alice"))
    assert out == ("SCRAM credential configs for user-principal 'alice' are "
                   "SCRAM-SHA-256=iterations=8192, SCRAM-SHA-512=iterations=4096\n")

    # alice logs in (SCRAM-SHA-512) but may not write yet
    err = confluent_produce(b, "alice", "alice-secret", t)
    assert err is not None and err.name() == "TOPIC_AUTHORIZATION_FAILED"

    out = ok(acls(b, cfg, "--add", "--allow-principal", "User:alice", "--producer",
                  "--topic", t))
    res = f"ResourcePattern(resourceType=TOPIC, name={t}, patternType=LITERAL)"
    assert f"Adding ACLs for resource `{res}`: \n" in out
    assert f"Current ACLs for resource `{res}`: \n" in out
    for op in ("WRITE", "DESCRIBE", "CREATE"):
        assert f"\t(principal=User:alice, host=*, operation={op}, permissionType=ALLOW)" in out
    assert confluent_produce(b, "alice", "alice-secret", t) is None
    # and with SCRAM-SHA-256, through kafka-python
    from kafka import KafkaProducer
    kp = KafkaProducer(bootstrap_servers=b.bootstrap_servers, security_protocol="SASL_SSL",
                       sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice",
                       sasl_plain_password="alice-secret", ssl_cafile=b.ca_file)
    kp.send(t, b"kp").get(20)
    kp.close()

    listed = ok(run("-m", "kafkette", "acls", "list", "--topic", t, "--bootstrap-server",
                    b.bootstrap_servers, "--command-config", cfg))
    assert listed.count("principal=User:alice") == 3 and res in listed
    # --remove asks first; "n" keeps the ACLs
    kept = ok(acls(b, cfg, "--remove", "--topic", t, input="n\n"))
    assert "Are you sure you want to delete all ACLs for resource filter" in kept
    assert kept.count("principal=User:alice") == 3
    ok(run("-m", "kafkette", "acls", "remove", "--topic", t, "--force", "--bootstrap-server",
           b.bootstrap_servers, "--command-config", cfg))
    assert "principal=User:alice" not in ok(acls(b, cfg, "--list", "--topic", t))
    err = confluent_produce(b, "alice", "alice-secret", t)
    assert err is not None and err.name() == "TOPIC_AUTHORIZATION_FAILED"

    # --delete-config drops one mechanism: SCRAM-SHA-512 logins then fail
    ok(configs(b, cfg, "--alter", "--entity-type", "users", "--entity-name", "alice",
               "--delete-config", "SCRAM-SHA-512"))
    out = ok(configs(b, cfg, "--describe", "--entity-type", "users"))
    assert "'alice' are SCRAM-SHA-256=iterations=8192\n" in out


def test_kafkette_users_add_list_remove_and_login(secured, admin_config):
    b, cfg = secured, admin_config
    t = unique_topic("sec-users")
    b.create_topic(t)
    ok(kafkette(b, cfg, "acls", "add", "--allow-principal", "User:bob", "--operation", "Write",
                "--topic", t))
    assert "Added SCRAM-SHA-512" in ok(kafkette(b, cfg, "users", "add", "bob", "--password",
                                                "bob-secret"))
    assert "bob SCRAM-SHA-512(iterations=4096)" in ok(kafkette(b, cfg, "users", "list"))
    assert confluent_produce(b, "bob", "bob-secret", t) is None
    ok(kafkette(b, cfg, "users", "remove", "bob"))
    assert "bob" not in ok(kafkette(b, cfg, "users", "list"))
    from confluent_kafka import KafkaError, Producer
    errors = []
    p = Producer({"bootstrap.servers": b.bootstrap_servers, "security.protocol": "SASL_SSL",
                  "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "bob",
                  "sasl.password": "bob-secret", "ssl.ca.location": b.ca_file,
                  "error_cb": errors.append})
    deadline = time.monotonic() + 20
    while not any(e.code() == KafkaError._AUTHENTICATION for e in errors) and \
            time.monotonic() < deadline:
        p.poll(0.2)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_tool_with_a_wrong_password_or_no_trust_store_fails_clearly(secured, admin_config,
                                                                     tmp_path):
    b = secured
    bad = tmp_path / "bad.properties"
    bad.write_text(open(admin_config).read().replace("admin-secret", "nope"))
    r = run("-m", "kafkette", "topics", "list", "--bootstrap-server", b.bootstrap_servers,
            "--command-config", str(bad))
    assert r.returncode == 1 and "authentication of 'admin'" in r.stderr
    notrust = tmp_path / "notrust.properties"
    notrust.write_text("\n".join(line for line in open(admin_config).read().splitlines()
                                 if not line.startswith("ssl.truststore")))
    r = run("-m", "kafkette", "topics", "list", "--bootstrap-server", b.bootstrap_servers,
            "--command-config", str(notrust))
    assert r.returncode == 1 and "certificate verify failed" in r.stderr


def test_embedded_one_liner_for_each_protocol():
    """EmbeddedBroker(security=...) for SSL and SASL_PLAINTEXT (PLAIN): confluent-kafka
    with client_config and kafka-python with kafka_python_config() get in."""
    from confluent_kafka import Producer
    from kafka import KafkaProducer

    from kafkette import EmbeddedBroker
    for kwargs in ({"security": "SSL"},
                   {"security": "SASL_PLAINTEXT", "mechanism": "PLAIN",
                    "users": {"carol": "c-pw"}}):
        with EmbeddedBroker(**kwargs) as b:
            b.create_topic("t")
            p = Producer({**b.client_config, "linger.ms": 0})
            p.produce("t", b"c")
            assert p.flush(20) == 0
            del p
            kp = KafkaProducer(**b.kafka_python_config())
            kp.send("t", b"k").get(20)
            kp.close()
