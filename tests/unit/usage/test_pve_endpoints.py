"""``endpoint_of``: concrete PVE API paths become low-cardinality templates for metric labels.

The id positions come from the PVE 8.4 API schema; the simulator ships the same schema, so these
tests check the table against it and round-trip every one of its templates.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from autovibe.sim.schema import ApiSchema, _Node
from autovibe.usage import metrics
from autovibe.usage.metrics import endpoint_of

UPID = "UPID:pve1:0002F1C4:01A2B3C4:66F0A1B2:qmstart:100:root@pam!ci:"


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/version", "/version"),
        ("/nodes", "/nodes"),
        ("/cluster/resources", "/cluster/resources"),
        ("/cluster/nextid", "/cluster/nextid"),
        ("/cluster/tasks", "/cluster/tasks"),
        ("/access/ticket", "/access/ticket"),
        ("/access/permissions", "/access/permissions"),
        ("/storage", "/storage"),
        ("/storage/local-lvm", "/storage/{storage}"),
        ("/pools/team-a", "/pools/{poolid}"),
        ("/nodes/pve1/time", "/nodes/{node}/time"),
        ("/nodes/pve2/status", "/nodes/{node}/status"),
        ("/nodes/pve1/qemu", "/nodes/{node}/qemu"),
        ("/nodes/pve1/qemu/100", "/nodes/{node}/qemu/{vmid}"),
        ("/nodes/pve1/qemu/100/config", "/nodes/{node}/qemu/{vmid}/config"),
        ("/nodes/pve1/qemu/100/pending", "/nodes/{node}/qemu/{vmid}/pending"),
        ("/nodes/pve3/qemu/123456/status/current", "/nodes/{node}/qemu/{vmid}/status/current"),
        ("/nodes/pve1/qemu/100/status/start", "/nodes/{node}/qemu/{vmid}/status/start"),
        ("/nodes/pve1/qemu/100/status/stop", "/nodes/{node}/qemu/{vmid}/status/stop"),
        ("/nodes/pve1/qemu/100/status/shutdown", "/nodes/{node}/qemu/{vmid}/status/shutdown"),
        ("/nodes/pve1/qemu/9000/clone", "/nodes/{node}/qemu/{vmid}/clone"),
        ("/nodes/pve1/qemu/9000/template", "/nodes/{node}/qemu/{vmid}/template"),
        ("/nodes/pve1/qemu/100/migrate", "/nodes/{node}/qemu/{vmid}/migrate"),
        ("/nodes/pve1/qemu/100/resize", "/nodes/{node}/qemu/{vmid}/resize"),
        ("/nodes/pve1/qemu/100/agent/exec", "/nodes/{node}/qemu/{vmid}/agent/exec"),
        ("/nodes/pve1/qemu/100/snapshot", "/nodes/{node}/qemu/{vmid}/snapshot"),
        ("/nodes/pve1/qemu/100/snapshot/before", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}"),
        (
            "/nodes/pve1/qemu/100/snapshot/before/rollback",
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback",
        ),
        (
            "/nodes/pve1/qemu/100/snapshot/av-20240101T000000/config",
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config",
        ),
        # A snapshot (or node) named like a fixed segment is still an id in an id position.
        (
            "/nodes/status/qemu/100/snapshot/config/config",
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config",
        ),
        ("/nodes/pve1/lxc/200/snapshot/s1/rollback", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback"),
        ("/nodes/pve1/lxc/200/status/current", "/nodes/{node}/lxc/{vmid}/status/current"),
        (f"/nodes/pve1/tasks/{UPID}/status", "/nodes/{node}/tasks/{upid}/status"),
        (f"/nodes/pve1/tasks/{UPID}/log", "/nodes/{node}/tasks/{upid}/log"),
        (f"/nodes/pve1/tasks/{UPID}", "/nodes/{node}/tasks/{upid}"),
        ("/nodes/pve1/tasks", "/nodes/{node}/tasks"),
        ("/nodes/pve1/storage", "/nodes/{node}/storage"),
        ("/nodes/pve1/storage/local-lvm/status", "/nodes/{node}/storage/{storage}/status"),
        ("/nodes/pve1/storage/local/content", "/nodes/{node}/storage/{storage}/content"),
        (
            "/nodes/pve1/storage/local-lvm/content/local-lvm:vm-100-disk-0",
            "/nodes/{node}/storage/{storage}/content/{volume}",
        ),
        # Volume IDs may hold slashes, raw or encoded; either way the rest is one id.
        (
            "/nodes/pve1/storage/local/content/local:backup/vzdump-qemu-100-2024_01_01-00_00_00.vma.zst",
            "/nodes/{node}/storage/{storage}/content/{volume}",
        ),
        (
            "/nodes/pve1/storage/local/content/local:backup%2Fvzdump-qemu-100.vma.zst",
            "/nodes/{node}/storage/{storage}/content/{volume}",
        ),
        ("/nodes/pve1/storage/local/prunebackups", "/nodes/{node}/storage/{storage}/prunebackups"),
        ("/nodes/pve1/vzdump", "/nodes/{node}/vzdump"),
        ("/nodes/pve1/network/vmbr0", "/nodes/{node}/network/{iface}"),
        ("/nodes/pve1/services/pveproxy/restart", "/nodes/{node}/services/{service}/restart"),
        ("/access/users/alice@pve/token/ci", "/access/users/{userid}/token/{tokenid}"),
        ("/access/users/alice@pve", "/access/users/{userid}"),
        ("/access/groups/admins", "/access/groups/{groupid}"),
        ("/access/roles/PVEVMAdmin", "/access/roles/{roleid}"),
        ("/cluster/firewall/groups/web/0", "/cluster/firewall/groups/{group}/{pos}"),
        ("/cluster/firewall/ipset/blocked/10.0.0.0%2F24", "/cluster/firewall/ipset/{name}/{cidr}"),
        ("/cluster/ha/resources/vm:100", "/cluster/ha/resources/{sid}"),
        ("/cluster/config/nodes/pve3", "/cluster/config/nodes/{node}"),
        ("/cluster/backup/backup-1f2e3d4c-9a8b", "/cluster/backup/{id}"),
        ("/cluster/sdn/vnets/vnet1/subnets/zone1-10.0.0.0-24", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}"),
    ],
)
def test_api_paths_become_templates(path: str, template: str) -> None:
    assert endpoint_of(path) == template


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("", "/"),
        ("/", "/"),
        ("//nodes//pve1/qemu/", "/nodes/{node}/qemu"),  # empty fragments ignored, as pveproxy does
        ("/cluster/resources?type=vm", "/cluster/resources"),
        ("/nodes/pve1/qemu/100/config?current=1#x", "/nodes/{node}/qemu/{vmid}/config"),
        # Outside the known tree, only plain lower-case words survive; data becomes {id}.
        ("/nodes/pve1/future/Thing-42/details", "/nodes/{node}/future/{id}/details"),
        ("/made/up/123/UPID:x:y", "/made/up/{id}/{id}"),
        ("/unknown/vm-100-disk-0", "/unknown/{id}"),
    ],
)
def test_odd_and_unknown_paths_stay_bounded(path: str, template: str) -> None:
    assert endpoint_of(path) == template


def test_distinct_ids_share_one_label() -> None:
    paths = {f"/nodes/pve{n % 3}/qemu/{100 + n}/snapshot/snap-{n}/config" for n in range(500)}

    assert {endpoint_of(path) for path in paths} == {"/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config"}


# -- in step with the PVE API schema -------------------------------------------------------------


def _id_positions(node: _Node, prefix: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    if node.placeholder is not None:
        name, child = node.placeholder
        assert not node.literals, f"{prefix} mixes fixed and id children"
        found[prefix] = name
        found |= _id_positions(child, f"{prefix}/{{{name}}}")
    for literal, child in node.literals.items():
        found |= _id_positions(child, f"{prefix}/{literal}")
    return found


def test_the_id_table_is_the_schemas() -> None:
    schema = ApiSchema.load()

    assert dict(metrics._COLLECTIONS) == _id_positions(schema._root)


SAMPLES = {
    "node": "pve2",
    "vmid": "123",
    "upid": UPID,
    "snapname": "before-upgrade",
    "storage": "local-lvm",
    "volume": "local:backup/vzdump-qemu-123-2024_05_01-10_00_00.vma.zst",
    "userid": "alice@pve",
    "tokenid": "ci",
    "cidr": quote("192.168.0.0/16", safe=""),
    "pos": "3",
    "iface": "vmbr0",
    "sid": "vm:123",
    "pci-id-or-mapping": "0000:01:00.0",
}


def test_every_schema_template_round_trips() -> None:
    templates = sorted({endpoint.path for endpoint in ApiSchema.load().endpoints()})
    assert len(templates) > 300
    wrong = {}
    for template in templates:
        concrete = "/".join(
            SAMPLES.get(part[1:-1], "Sample_1") if part.startswith("{") else part
            for part in template.split("/")
        )
        if endpoint_of(concrete) != template:
            wrong[template] = endpoint_of(concrete)

    assert wrong == {}
