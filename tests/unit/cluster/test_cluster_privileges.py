"""The privilege gap: a pure function of the ``GET /access/permissions`` answer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from autovibe.cluster.service import REQUIRED_PRIVILEGES, missing_privileges, privileges_at

NAMES = [need.name for need in REQUIRED_PRIVILEGES]


def test_required_list_is_derived_per_acl_path() -> None:
    by_path: dict[str, list[str]] = {}
    for need in REQUIRED_PRIVILEGES:
        by_path.setdefault(need.path, []).append(need.name)
    assert by_path == {
        "/vms": [
            "VM.Allocate",
            "VM.Audit",
            "VM.Clone",
            "VM.Config.CPU",
            "VM.Config.Disk",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.Options",
            "VM.PowerMgmt",
            "VM.Snapshot",
        ],
        "/storage": ["Datastore.AllocateSpace", "Datastore.Audit"],
        "/nodes": ["Sys.Audit"],
        "/sdn/zones": ["SDN.Use"],
        "/": ["Sys.Audit", "Sys.Modify"],
    }
    assert {need.path for need in REQUIRED_PRIVILEGES if not need.propagate} == {"/"}


def test_everything_on_root_with_propagation_leaves_nothing_missing() -> None:
    assert missing_privileges({"/": dict.fromkeys(NAMES, 1)}) == []


def test_root_without_propagation_covers_no_child_path() -> None:
    missing = missing_privileges({"/": dict.fromkeys(NAMES, 0)})
    assert missing == [need for need in REQUIRED_PRIVILEGES if need.path != "/"]


def test_a_parent_grant_without_propagation_covers_no_guest() -> None:
    permissions = {"/": {"Sys.Audit": 1, "Sys.Modify": 0}, "/vms": dict.fromkeys(NAMES, 0)}
    missing = missing_privileges(permissions)
    assert {need.path for need in missing} == {"/vms", "/storage", "/sdn/zones"}


def test_nothing_granted_means_everything_missing() -> None:
    assert missing_privileges({}) == list(REQUIRED_PRIVILEGES)


def test_a_listed_path_holds_its_privileges_whatever_the_propagate_flag() -> None:
    held = privileges_at({"/vms": {"VM.Audit": 0}}, "/vms")
    assert held == frozenset({"VM.Audit"})


def test_nearest_listed_ancestor_decides_for_unlisted_paths() -> None:
    permissions = {"/": {"SDN.Use": 1}, "/sdn": {"SDN.Use": 0}}
    # /sdn is listed and does not propagate, so /sdn/zones does not get SDN.Use from "/".
    assert privileges_at(permissions, "/sdn/zones") == frozenset()
    assert privileges_at({"/": {"SDN.Use": 1}}, "/sdn/zones") == frozenset({"SDN.Use"})


def test_vm_admin_on_vms_only_leaves_storage_node_and_sdn_privileges_missing() -> None:
    vm_privileges = {name: 1 for name in NAMES if name.startswith("VM.")}
    missing = missing_privileges({"/vms": vm_privileges})
    assert [(need.path, need.name) for need in missing] == [
        ("/storage", "Datastore.AllocateSpace"),
        ("/storage", "Datastore.Audit"),
        ("/nodes", "Sys.Audit"),
        ("/sdn/zones", "SDN.Use"),
        ("/", "Sys.Audit"),
        ("/", "Sys.Modify"),
    ]


@given(
    st.sets(st.sampled_from(NAMES)),
    st.sets(st.text(min_size=3, max_size=12).filter(lambda name: name not in NAMES)),
)
def test_missing_is_exactly_required_minus_granted(granted: set[str], unrelated: set[str]) -> None:
    privileges = dict.fromkeys(granted | unrelated, 1)
    missing = [need.name for need in missing_privileges({"/": privileges})]
    assert missing == [name for name in NAMES if name not in granted]
