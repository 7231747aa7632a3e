"""Answer models tolerate PVE's string numbers and missing counters (SEMANTICS §1)."""

from __future__ import annotations

import pytest

from autovibe.pve import ClusterResource, NodeInfo, PveVersion, TaskLogLine


def test_cluster_resource_coerces_string_numbers_and_flags():
    resource = ClusterResource.model_validate(
        {
            "id": "qemu/100",
            "type": "qemu",
            "node": "pve1",
            "vmid": "100",
            "name": "builder",
            "status": "running",
            "cpu": "0.0525",
            "maxcpu": "2",
            "mem": "1073741824",
            "maxmem": 4294967296.0,
            "disk": "",
            "maxdisk": "21474836480",
            "netin": "1.5e3",
            "uptime": "3600",
            "template": "0",
            "tags": "critical;team-a",
            "hastate": "ignored-unknown-field",
        }
    )

    assert resource.vmid == 100
    assert resource.cpu == pytest.approx(0.0525)
    assert resource.maxcpu == 2.0
    assert resource.mem == 1073741824
    assert resource.maxmem == 4294967296
    assert resource.disk == 0
    assert resource.netin == 1500
    assert resource.uptime == 3600
    assert resource.template is False
    assert resource.tags == ("critical", "team-a")
    assert resource.is_guest


def test_storage_resource_without_guest_fields_gets_defaults():
    resource = ClusterResource.model_validate(
        {
            "id": "storage/pve1/local",
            "type": "storage",
            "node": "pve1",
            "storage": "local",
            "disk": 5,
            "maxdisk": 9,
        }
    )

    assert resource.vmid is None and resource.name is None
    assert (resource.cpu, resource.mem, resource.tags) == (0.0, 0, ())
    assert not resource.is_guest


def test_template_flag_from_integer():
    assert ClusterResource.model_validate({"id": "qemu/9000", "type": "qemu", "template": 1}).template is True


def test_offline_node_has_zero_counters():
    node = NodeInfo.model_validate({"node": "pve3", "status": "offline"})

    assert (node.cpu, node.maxcpu, node.mem, node.maxmem, node.uptime) == (0.0, 0, 0, 0, 0)
    assert not node.online


def test_online_node_numbers_from_strings():
    node = NodeInfo.model_validate(
        {
            "node": "pve1",
            "status": "online",
            "cpu": "0.25",
            "maxcpu": "16",
            "mem": "2048",
            "maxmem": 4096,
            "uptime": 1,
        }
    )

    assert node.online and node.maxcpu == 16 and node.cpu == 0.25 and node.mem == 2048


def test_non_numeric_string_is_still_refused():
    with pytest.raises(ValueError):
        NodeInfo.model_validate({"node": "pve1", "maxcpu": "many"})


def test_version_and_log_line():
    assert (
        PveVersion.model_validate(
            {"version": "8.4.1", "release": "8.4", "repoid": "x", "console": "vv"}
        ).release
        == "8.4"
    )
    assert TaskLogLine.model_validate({"n": "3", "t": "TASK OK"}).n == 3
