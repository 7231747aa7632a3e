"""The shipped PVE schema and its path matching (autovibe.sim.schema)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest

from autovibe.sim.schema import ApiSchema, Endpoint, Param

UPID = "UPID:pve1:0002F1C4:01A2B3C4:66F0A1B2:qmstart:100:root@pam:"


@pytest.fixture(scope="module")
def schema() -> ApiSchema:
    return ApiSchema.load()


def _endpoint(method: str, path: str, **params: Param) -> Endpoint:
    return Endpoint(
        path=path,
        method=method,
        name=path,
        params=MappingProxyType(params),
        additional_properties=False,
        returns=None,
        permissions=None,
        allowtoken=True,
        protected=False,
    )


def _walk(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        yield value
        for child in value.values():
            yield from _walk(child)


def test_load_is_cached_and_complete(schema: ApiSchema) -> None:
    assert ApiSchema.load() is schema
    endpoints = list(schema.endpoints())
    # The 8.4 apidoc has 400 paths and 605 operations (shared/pve-api/SOURCE.md).
    assert len(endpoints) == 605
    assert len({endpoint.path for endpoint in endpoints}) == 398  # two paths are index-only folders
    assert endpoints == sorted(endpoints, key=lambda e: (e.path, e.method))


def test_endpoint_lookup_by_template(schema: ApiSchema) -> None:
    snapshot = schema.endpoint("post", "/nodes/{node}/qemu/{vmid}/snapshot")
    assert snapshot.name == "snapshot"
    assert snapshot.protected and snapshot.allowtoken
    assert snapshot.proxyto == "node"
    snapname = snapshot.params["snapname"]
    assert (snapname.type, snapname.format, snapname.max_length, snapname.optional) == (
        "string",
        "pve-configid",
        40,
        False,
    )
    with pytest.raises(KeyError):
        schema.endpoint("PATCH", "/nodes/{node}/qemu/{vmid}/snapshot")
    with pytest.raises(KeyError):
        schema.endpoint("GET", "/nodes/pve1/qemu")  # a concrete path is not a template


def test_match_upid_with_colons(schema: ApiSchema) -> None:
    found = schema.match("GET", f"/nodes/pve1/tasks/{UPID}/status")
    assert found is not None
    endpoint, params = found
    assert endpoint.path == "/nodes/{node}/tasks/{upid}/status"
    assert params == {"node": "pve1", "upid": UPID}


def test_match_unknown_path_and_wrong_method(schema: ApiSchema) -> None:
    assert schema.match("GET", "/nodes/pve1/nonsense") is None
    assert schema.methods_for("/nodes/pve1/nonsense") == set()
    assert schema.match("PUT", "/nodes/pve1/qemu/100/snapshot") is None
    assert schema.methods_for("/nodes/pve1/qemu/100/snapshot") == {"GET", "POST"}
    assert schema.methods_for("/nodes/pve1/qemu/100/snapshot/s1") == {"GET", "DELETE"}


def test_placeholder_is_exactly_one_non_empty_segment(schema: ApiSchema) -> None:
    assert schema.match("GET", "/nodes/pve1/tasks/a/b/status") is None
    # PVE drops empty fragments before matching, so "tasks//status" names the task "status".
    dropped = schema.match("GET", "/nodes/pve1/tasks//status")
    assert dropped is not None
    assert (dropped[0].path, dropped[1]) == ("/nodes/{node}/tasks/{upid}", {"node": "pve1", "upid": "status"})
    # PVE ignores empty fragments and trailing slashes, so these are the same resource.
    found = schema.match("GET", "//nodes//pve1/qemu/")
    assert found is not None
    assert found[0].path == "/nodes/{node}/qemu"


def test_volume_ids_take_the_rest_of_a_content_path(schema: ApiSchema) -> None:
    # pve-storage mounts .../content with fragmentDelimiter '': volume IDs contain slashes.
    volid = "local:backup/vzdump-qemu-100-2025_01_01-00_00_00.vma.zst"
    found = schema.match("DELETE", f"/nodes/pve1/storage/local/content/{volid}")
    assert found is not None
    assert found[0].path == "/nodes/{node}/storage/{storage}/content/{volume}"
    assert found[1] == {"node": "pve1", "storage": "local", "volume": volid}
    listing = schema.match("GET", "/nodes/pve1/storage/local/content")
    assert listing is not None and listing[0].path == "/nodes/{node}/storage/{storage}/content"
    assert schema.match("GET", "/nodes/pve1/tasks/a/b/status") is None  # elsewhere: one segment each


def test_literal_segments_win_over_placeholders() -> None:
    schema = ApiSchema(
        [
            _endpoint("GET", "/items/{id}"),
            _endpoint("GET", "/items/special"),
            _endpoint("GET", "/items/{id}/detail"),
            _endpoint("POST", "/items/special/run"),
        ]
    )
    literal = schema.match("GET", "/items/special")
    assert literal is not None
    assert (literal[0].path, literal[1]) == ("/items/special", {})
    placeholder = schema.match("GET", "/items/42")
    assert placeholder is not None
    assert (placeholder[0].path, placeholder[1]) == ("/items/{id}", {"id": "42"})
    # The literal branch has no "detail" child, so matching falls back to the placeholder.
    fallback = schema.match("GET", "/items/special/detail")
    assert fallback is not None
    assert (fallback[0].path, fallback[1]) == ("/items/{id}/detail", {"id": "special"})
    assert schema.methods_for("/items/special/run") == {"POST"}


def test_duplicate_endpoints_and_conflicting_placeholders_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate endpoint"):
        ApiSchema([_endpoint("GET", "/a"), _endpoint("GET", "/a")])
    with pytest.raises(ValueError, match="conflicts"):
        ApiSchema([_endpoint("GET", "/a/{x}"), _endpoint("GET", "/a/{y}/b")])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("net0", "net[n]"),
        ("net31", "net[n]"),
        ("net32", None),
        ("net03", None),
        ("scsi30", "scsi[n]"),
        ("scsi31", None),
        ("ide3", "ide[n]"),
        ("ide4", None),
        ("virtio15", "virtio[n]"),
        ("virtiofs9", "virtiofs[n]"),
        ("virtiofs10", None),
        ("usb13", "usb[n]"),
        ("unused255", "unused[n]"),
        ("cores", "cores"),
        ("net", None),
        ("net[n]", None),
        ("nosuch0", None),
    ],
)
def test_indexed_param_lookup(schema: ApiSchema, name: str, expected: str | None) -> None:
    create = schema.endpoint("POST", "/nodes/{node}/qemu")
    found = create.param(name)
    assert (found.name if found else None) == expected


def test_property_string_formats_keep_their_structure(schema: ApiSchema) -> None:
    net = schema.endpoint("POST", "/nodes/{node}/qemu").params["net[n]"]
    assert net.max_index == 31
    sub = net.property_format
    assert sub is not None
    assert sub["model"].default_key and "virtio" in (sub["model"].enum or ())
    assert (sub["virtio"].alias, sub["virtio"].key_alias) == ("macaddr", "model")
    assert sub["macaddr"].format == "mac-addr"
    assert sub["mtu"].minimum == 1 and sub["mtu"].maximum == 65520


def test_no_prose_and_python_patterns(schema: ApiSchema) -> None:
    for endpoint in schema.endpoints():
        assert "description" not in (endpoint.permissions or {})
        for node in _walk(endpoint.returns):
            assert "description" not in node or not isinstance(node["description"], str)
        for param in _params(endpoint.params.values()):
            if param.pattern is not None:
                assert "(?^" not in param.pattern
                re.compile(param.pattern)
            # Prose defaults ("same as user") were dropped: what remains has the parameter's type.
            if param.default is not None and param.type in ("integer", "boolean"):
                assert isinstance(param.default, int)


def test_numeric_bounds_are_numbers(schema: ApiSchema) -> None:
    bwlimit = schema.endpoint("POST", "/nodes/{node}/qemu/{vmid}/clone").params["bwlimit"]
    assert bwlimit.minimum == 0  # the apidoc carries it as the string '0'
    assert bwlimit.default is None  # "clone limit from datacenter or storage config" is prose


def _params(params: Any) -> Iterator[Param]:
    for param in params:
        yield param
        if param.property_format is not None:
            yield from _params(param.property_format.values())
        if param.items is not None:
            yield param.items
