"""kafka-configs.sh's quota branch (kafkette/tools/quota_configs.py) without a broker:
entity names and defaults pair with entity types in command-line order, as Kafka's
ConfigCommand does, and become the AlterClientQuotas / DescribeClientQuotas requests."""
from __future__ import annotations

import contextlib

import pytest

from kafkette.protocol import messages
from kafkette.tools import kafka_configs
from kafkette.tools.common import UsageError


class FakeAdmin:
    def __init__(self):
        self.sent = []

    def request(self, req):
        self.sent.append(req)
        if isinstance(req, messages.AlterClientQuotasRequest):
            R = messages.AlterClientQuotasResponse
            return R(entries=[R.EntryData(error_code=0, entity=[]) for _ in req.entries])
        return messages.DescribeClientQuotasResponse(error_code=0, entries=[])


def run(*argv):
    admin = FakeAdmin()
    a = kafka_configs.build_parser().parse(["--bootstrap-server", "x:1", *argv])
    from kafkette.tools import quota_configs
    assert quota_configs.is_quota_command(a)
    quota_configs.run(a, lambda _a: contextlib.nullcontext(admin))
    return admin.sent


def test_names_and_defaults_pair_in_order():
    (req,) = run("--alter", "--entity-type", "users", "--entity-default",
                 "--entity-type", "clients", "--entity-name", "c",
                 "--add-config", "producer_byte_rate=1024", "--delete-config", "request_percentage")
    (e,) = req.entries
    assert [(x.entity_type, x.entity_name) for x in e.entity] == [("user", None),
                                                                  ("client-id", "c")]
    assert [(o.key, o.value, o.remove) for o in e.ops] == [("producer_byte_rate", 1024.0, False),
                                                           ("request_percentage", 0.0, True)]
    (req,) = run("--alter", "--entity-type", "users", "--entity-name", "u",
                 "--entity-type", "clients", "--entity-default", "--add-config",
                 "consumer_byte_rate=5")
    assert [(x.entity_type, x.entity_name) for x in req.entries[0].entity] == [
        ("user", "u"), ("client-id", None)]


def test_describe_filters():
    (req,) = run("--describe", "--entity-type", "clients", "--entity-name", "c")
    assert [(c.entity_type, c.match_type, c.match) for c in req.components] == [
        ("client-id", 0, "c")] and req.strict
    (req,) = run("--describe", "--entity-type", "users", "--entity-default",
                 "--entity-type", "clients")
    assert [(c.entity_type, c.match_type, c.match) for c in req.components] == [
        ("user", 1, None), ("client-id", 2, None)]


@pytest.mark.parametrize("argv", [
    ["--alter", "--entity-type", "users", "--add-config", "producer_byte_rate=1"],
    ["--alter", "--entity-type", "users", "--entity-name", "u"],
    ["--describe", "--entity-type", "users", "--entity-name", "u", "--entity-name", "v"],
    ["--describe", "--entity-type", "ips", "--entity-type", "users"],
    ["--describe", "--entity-type", "users", "--add-config", "a=1"],
])
def test_usage_errors(argv):
    with pytest.raises(UsageError):
        run(*argv)
