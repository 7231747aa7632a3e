"""Parameter encoding, envelope reading and node routing."""

from __future__ import annotations

import pytest

from autovibe.pve import PveProtocolError
from autovibe.pve.wire import encode_params, node_of_path, unwrap_envelope


def test_booleans_become_1_0_and_none_is_dropped():
    encoded = encode_params(
        {"full": True, "start": False, "pool": None, "cores": 2, "net0": "virtio,bridge=vmbr0"}
    )

    assert encoded == {"full": "1", "start": "0", "cores": "2", "net0": "virtio,bridge=vmbr0"}


def test_sequences_repeat_the_key():
    assert encode_params({"ids": [1, True, None, "x"]}) == {"ids": ["1", "1", "x"]}


@pytest.mark.parametrize(
    ("path", "node"),
    [
        ("/nodes/pve1/qemu", "pve1"),
        ("/nodes/pve-2", "pve-2"),
        ("/nodes/pve1/tasks/UPID:pve1:1:2:3:x::u@pam:/status", "pve1"),
        ("/nodes", None),
        ("/cluster/resources", None),
        ("/access/ticket", None),
    ],
)
def test_node_of_path(path, node):
    assert node_of_path(path) == node


def test_envelope_keeps_total_and_coerces_it():
    envelope = unwrap_envelope(b'{"data":[{"n":1,"t":"x"}],"total":"7"}', method="GET", path="/x")

    assert envelope.data == [{"n": 1, "t": "x"}]
    assert envelope.total == 7


def test_null_data_is_a_valid_envelope():
    assert unwrap_envelope(b'{"data":null}', method="PUT", path="/x").data is None


@pytest.mark.parametrize("raw", [b"", b"<html>", b"[]", b'{"result": 1}', b'{"data": 1, "total": "many"}'])
def test_anything_else_is_a_protocol_error(raw):
    with pytest.raises(PveProtocolError) as caught:
        unwrap_envelope(raw, method="GET", path="/version")

    assert caught.value.path == "/version"
