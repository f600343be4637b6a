"""FindCoordinator (10): single keys (v0-3) and batched keys (v4+, KIP-699)."""
from __future__ import annotations

import pytest

from handler_harness import ADVERTISED_HOST, ADVERTISED_PORT, broker, call, make_broker  # noqa: F401
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import FetchRequest, FindCoordinatorRequest


@pytest.mark.parametrize("version", range(0, 4))
def test_group_coordinator_is_this_node(broker, version):
    resp = call(broker, FindCoordinatorRequest(key="g1", key_type=0), version)
    assert resp.error_code == 0
    assert (resp.node_id, resp.host, resp.port) == (broker.node_id, ADVERTISED_HOST,
                                                    ADVERTISED_PORT)


@pytest.mark.parametrize("version", range(4, 7))
def test_batched_lookup(broker, version):
    resp = call(broker, FindCoordinatorRequest(coordinator_keys=["a", "b"], key_type=0), version)
    assert [c.key for c in resp.coordinators] == ["a", "b"]
    for c in resp.coordinators:
        assert c.error_code == 0
        assert (c.node_id, c.host, c.port) == (broker.node_id, ADVERTISED_HOST, ADVERTISED_PORT)


@pytest.mark.parametrize("version", [1, 3])
def test_transaction_coordinator_is_this_node(broker, version):
    """The first lookup of a transactional id creates `__transaction_state` (as Kafka
    does) and names the leader of the id's partition: this node."""
    resp = call(broker, FindCoordinatorRequest(key="tx", key_type=1), version)
    assert resp.error_code == 0
    assert (resp.node_id, resp.host, resp.port) == (broker.node_id, ADVERTISED_HOST,
                                                    ADVERTISED_PORT)
    assert "__transaction_state" in broker.image.topics


def test_batched_transaction_keys(broker):
    resp = call(broker, FindCoordinatorRequest(coordinator_keys=["tx", ""], key_type=1), 4)
    assert [(c.key, c.error_code, c.node_id) for c in resp.coordinators] == \
        [("tx", 0, broker.node_id), ("", ErrorCode.INVALID_REQUEST, -1)]


def test_empty_group_id_is_invalid(broker):
    resp = call(broker, FindCoordinatorRequest(key="", key_type=0), 2)
    assert resp.error_code == ErrorCode.INVALID_GROUP_ID


def test_fetch_below_floor_with_no_error_field_closes(broker):
    """Fetch v3 is parseable but not served, and its response has no top-level
    error code: the dispatcher must refuse it (ProtocolError → closed connection)
    rather than send an empty answer that looks like success."""
    from kafkette.errors import ProtocolError
    from handler_harness import encode_request
    frame, _ = encode_request(FetchRequest(max_wait_ms=0, topics=[]), 3)
    with pytest.raises(ProtocolError):
        broker.dispatcher.handle(frame)
