"""The container image's settings through the environment: KAFKA_* variables as
settings (kafkette.cli.env_settings, `kafkette serve --from-env`), and the entrypoint
passing them between its defaults and the arguments (run with a stand-in `kafkette`
that prints its arguments: no container runtime needed)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kafkette.cli import env_settings
from kafkette.config import BrokerConfig

ENTRYPOINT = Path(__file__).resolve().parent.parent / "docker" / "entrypoint.sh"


def test_env_names_map_to_kafka_keys():
    env = {"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL",
           "KAFKA_LISTENER_NAME_SASL__SSL_SCRAM___SHA___512_SASL_JAAS_CONFIG": "x;",
           "KAFKA_SSL_KEYSTORE_LOCATION": "/certs/server.pem",
           "KAFKA_HEAP_OPTS": "-Xmx1g", "KAFKETTE_ADVERTISED_HOST": "h", "PATH": "/bin"}
    assert env_settings(env) == [
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=x;",
        "listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL",
        "ssl.keystore.location=/certs/server.pem"]


def test_a_secured_listener_from_env_is_a_valid_config(tmp_path):
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            'user_alice="alice-secret";')
    env = {"KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,SASL_PLAINTEXT://0.0.0.0:9093",
           "KAFKA_SASL_ENABLED_MECHANISMS": "PLAIN,SCRAM-SHA-512",
           "KAFKA_LISTENER_NAME_SASL__PLAINTEXT_PLAIN_SASL_JAAS_CONFIG": jaas}
    c = BrokerConfig.load(None, [f"log.dirs={tmp_path}", *env_settings(env)])
    assert c.security_protocol("SASL_PLAINTEXT") == "SASL_PLAINTEXT"
    assert c.listener_value("SASL_PLAINTEXT", "sasl.enabled.mechanisms") == ["PLAIN",
                                                                              "SCRAM-SHA-512"]


def test_entrypoint_puts_env_between_defaults_and_arguments(tmp_path):
    stub = tmp_path / "kafkette"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}",
               KAFKETTE_ADVERTISED_HOST="h", KAFKETTE_ADVERTISED_PORT="1")
    out = subprocess.run(["sh", str(ENTRYPOINT), "--set", "num.partitions=3"], env=env,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert out.index("--from-env") > out.index("log.dirs=/var/lib/kafkette")
    assert out.index("num.partitions=3") > out.index("--from-env")


def test_from_env_takes_its_place_among_the_set_options(monkeypatch):
    import kafkette.cli as cli
    seen = []
    monkeypatch.setattr(cli, "_serve", lambda args: seen.append(args.set) or 0)
    monkeypatch.setenv("KAFKA_LISTENERS", "SASL_SSL://0.0.0.0:9093")
    assert cli.main(["serve", "--set", "listeners=PLAINTEXT://0.0.0.0:9092", "--from-env",
                     "--set", "num.partitions=2"]) == 0
    assert seen == [["listeners=PLAINTEXT://0.0.0.0:9092", "listeners=SASL_SSL://0.0.0.0:9093",
                     "num.partitions=2"]]


def test_env_variables_that_name_no_setting_are_left_out_and_reported():
    env = {"KAFKA_NUM_PARTITIONS": "3", "KAFKA_PORT": "tcp://10.0.0.1:9092",
           "KAFKA_SERVICE_HOST": "10.0.0.1", "KAFKA_NUM_PARTITONS": "4"}
    ignored: list[str] = []
    assert env_settings(env, ignored) == ["num.partitions=3"]
    assert ignored == ["KAFKA_NUM_PARTITONS", "KAFKA_PORT", "KAFKA_SERVICE_HOST"]
