"""The fuzzer's frames (kafkette/fuzz/frames.py): a pure function of (seed, index), every
API key and both listeners covered, the unmutated ones valid requests, the lies real."""
from __future__ import annotations

import collections
import struct

from kafkette.fuzz import frames as F
from kafkette.fuzz.runner import legit_wait
from kafkette.protocol.framing import decode_request
from kafkette.protocol.messages import API_MESSAGES


def test_a_frame_is_a_function_of_seed_and_index_alone():
    a = [F.frame(7, i).data for i in range(50)]
    assert [F.frame(7, i).data for i in range(50)] == a
    assert F.frame(7, 49).data == a[49]                    # no dependence on frames before
    assert [F.frame(8, i).data for i in range(50)] != a


def test_frames_cover_every_api_key_and_both_listeners():
    frames = [F.frame(3, i) for i in range(3000)]
    keys = {f.api_key for f in frames if f.source == "structured"}
    assert keys == set(F.request_specs())
    assert {f.target for f in frames} == {F.BROKER, F.CONTROLLER}
    kinds = collections.Counter(m.split(":")[0] for f in frames for m in f.mutations)
    for kind in ("lies", "truncate", "bitflip", "overwrite-int", "size-prefix", "header-version"):
        assert kinds[kind] > 0, kind


def test_unmutated_structured_frames_decode_with_the_generated_classes():
    checked = 0
    for i in range(3000):
        f = F.frame(5, i)
        if f.source != "structured" or f.mutations:
            continue
        (size,) = struct.unpack_from(">i", f.data)
        assert size == len(f.data) - 4
        header, req = decode_request(bytearray(f.body))
        assert (header.api_key, header.api_version) == (f.api_key, f.api_version)
        assert isinstance(req, API_MESSAGES[f.api_key][0])
        checked += 1
    assert checked > 300


def test_lying_writer_lies_and_the_reader_refuses():
    import random
    from kafkette.errors import ProtocolError
    from kafkette.protocol.messages import MetadataRequest
    req = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="t")],
                          allow_auto_topic_creation=False)
    refused = 0
    for s in range(200):
        w = F.LyingWriter(random.Random(s), 0.5)
        req.write(w, 12)
        data = w.getvalue()
        try:
            MetadataRequest.decode(data, 12)
        except ProtocolError:
            refused += 1
    assert refused > 50


def test_only_requests_that_may_wait_are_excused_from_answering():
    waits = {i for i in range(3000) if legit_wait(F.frame(5, i), 10)}
    keys = collections.Counter(F.frame(5, i).api_key for i in waits)
    assert keys and set(keys) <= {0, 1, 11, 14} | {
        F.frame(5, i).api_key for i in waits if any(m.startswith("size-") for m in F.frame(5, i).mutations)}
