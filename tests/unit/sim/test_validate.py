"""PVE-faithful parameter verification (autovibe.sim.validate, formats, propstring)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autovibe.sim.errors import SimApiError
from autovibe.sim.formats import CHECKED_FORMATS, check_format, split_list
from autovibe.sim.schema import ApiSchema, Endpoint, Param
from autovibe.sim.validate import MISSING, NOT_DEFINED, validate

SCHEMA = ApiSchema.load()
SNAPSHOT = SCHEMA.endpoint("POST", "/nodes/{node}/qemu/{vmid}/snapshot")
CLONE = SCHEMA.endpoint("POST", "/nodes/{node}/qemu/{vmid}/clone")
CREATE = SCHEMA.endpoint("POST", "/nodes/{node}/qemu")
VM = {"node": "pve1", "vmid": "100"}


def errors_of(endpoint: Endpoint, raw: dict[str, Any], *, json_body: bool = False) -> dict[str, str]:
    with pytest.raises(SimApiError) as caught:
        validate(endpoint, raw, json_body=json_body)
    assert caught.value.status == 400
    assert caught.value.message == "Parameter verification failed."
    assert caught.value.errors is not None
    return caught.value.errors


def synthetic(**params: Param) -> Endpoint:
    return Endpoint(
        path="/test",
        method="POST",
        name="test",
        params=MappingProxyType(params),
        additional_properties=False,
        returns=None,
        permissions=None,
        allowtoken=True,
        protected=False,
    )


# --- PVE's messages, one by one -------------------------------------------------------------------


def test_missing_required_property() -> None:
    assert errors_of(SNAPSHOT, VM) == {"snapname": MISSING}
    assert MISSING == "property is missing and it is not optional"


def test_unknown_property_is_not_defined() -> None:
    errors = errors_of(SNAPSHOT, {**VM, "snapname": "s1", "foo": "1"})
    assert errors == {"foo": NOT_DEFINED}
    assert NOT_DEFINED == (
        "property is not defined in schema and the schema does not allow additional properties"
    )


def test_integer_type_check() -> None:
    assert errors_of(SNAPSHOT, {**VM, "vmid": "abc", "snapname": "s1"}) == {
        "vmid": "type check ('integer') failed - got 'abc'"
    }


def test_form_booleans_are_only_0_and_1() -> None:
    assert errors_of(SNAPSHOT, {**VM, "snapname": "s1", "vmstate": "true"}) == {
        "vmstate": "type check ('boolean') failed - got 'true'"
    }
    assert validate(SNAPSHOT, {**VM, "snapname": "s1", "vmstate": "1"}, json_body=False)["vmstate"] is True
    assert validate(SNAPSHOT, {**VM, "snapname": "s1", "vmstate": "0"}, json_body=False)["vmstate"] is False


def test_json_booleans_accept_true_false_but_not_the_string() -> None:
    raw = {"node": "pve1", "vmid": 100, "snapname": "s1", "vmstate": True}
    assert validate(SNAPSHOT, raw, json_body=True)["vmstate"] is True
    assert validate(SNAPSHOT, {**raw, "vmstate": 0}, json_body=True)["vmstate"] is False
    assert errors_of(SNAPSHOT, {**raw, "vmstate": "true"}, json_body=True) == {
        "vmstate": "type check ('boolean') failed - got 'true'"
    }
    assert errors_of(SNAPSHOT, {**raw, "vmid": True}, json_body=True) == {
        "vmid": "type check ('integer') failed - got JSON::PP::Boolean"
    }


def test_json_types_are_checked_like_perl_scalars() -> None:
    raw = {"node": "pve1", "vmid": 100, "newid": 101.0, "bwlimit": 1.5}
    assert errors_of(CLONE, raw, json_body=True) == {"bwlimit": "type check ('integer') failed - got '1.5'"}
    assert errors_of(CLONE, {**raw, "bwlimit": 5, "name": ["a"]}, json_body=True) == {
        "name": "type check ('string') failed - got ARRAY"
    }
    coerced = validate(CLONE, {**raw, "bwlimit": 5}, json_body=True)
    assert coerced["newid"] == 101 and isinstance(coerced["newid"], int)


def test_minimum_and_maximum() -> None:
    assert errors_of(CLONE, {**VM, "newid": "101", "bwlimit": "-1"}) == {
        "bwlimit": "value must have a minimum value of 0"
    }
    assert errors_of(CREATE, {**VM, "cores": "0", "cpuunits": "262145", "cpulimit": "128.5"}) == {
        "cores": "value must have a minimum value of 1",
        "cpuunits": "value must have a maximum value of 262144",
        "cpulimit": "value must have a maximum value of 128",
    }


def test_vmid_format_is_checked_before_its_minimum() -> None:
    # PVE's check_prop runs the format check first, and pve-vmid's regex needs 3..9 digits, so 99
    # never reaches the "minimum value of 100" comparison.
    assert errors_of(CLONE, {**VM, "newid": "99"}) == {
        "newid": "invalid format - value does not look like a valid VM ID\n"
    }


def test_max_length() -> None:
    errors = errors_of(SNAPSHOT, {**VM, "snapname": "s" * 41})
    assert errors == {"snapname": "value may only be 40 characters long"}


def test_min_length_and_pattern() -> None:
    endpoint = synthetic(code=Param(name="code", type="string", pattern=r"[a-z]+", min_length=3))
    assert errors_of(endpoint, {"code": "ab"}) == {"code": "value must be at least 3 characters long"}
    assert errors_of(endpoint, {"code": "AB1"}) == {"code": "value does not match the regex pattern"}
    assert validate(endpoint, {"code": "abc"}, json_body=False) == {"code": "abc"}


def test_enumeration() -> None:
    errors = errors_of(CLONE, {**VM, "newid": "101", "format": "vdi"})
    assert errors == {"format": "value 'vdi' does not have a value in the enumeration 'raw, qcow2, vmdk'"}


def test_snapshot_name_bad() -> None:
    errors = errors_of(SNAPSHOT, {**VM, "snapname": "bad name!"})
    assert errors == {"snapname": "invalid format - invalid configuration ID 'bad name!'\n"}


def test_all_errors_are_collected() -> None:
    errors = errors_of(CLONE, {"node": "-bad-", "vmid": "x", "full": "yes", "foo": "1"})
    assert set(errors) == {"node", "vmid", "newid", "full", "foo"}
    assert errors["node"] == "invalid format - value does not look like a valid node name\n"


def test_requires() -> None:
    alloc = SCHEMA.endpoint("POST", "/nodes/{node}/storage/{storage}/content")
    raw = {"node": "pve1", "storage": "local", "vmid": "100", "filename": "vm-100-disk-1"}
    assert validate(alloc, {**raw, "size": "4G", "format": "raw"}, json_body=False)["size"] == "4G"
    assert errors_of(alloc, {**raw, "size": "4T"}) == {"size": "value does not match the regex pattern"}
    # "format" requires "size": without it PVE names the missing partner.
    errors = errors_of(alloc, {**raw, "format": "raw"})
    assert errors["size"] == f"{MISSING}\\nmissing property - 'format' requires this property"


def test_null_is_absent_and_additional_properties_pass_through() -> None:
    assert "vmstate" not in validate(SNAPSHOT, {**VM, "snapname": "s1", "vmstate": None}, json_body=True)
    agent = SCHEMA.endpoint("GET", "/nodes/{node}/qemu/{vmid}/agent")
    assert agent.additional_properties
    assert validate(agent, {**VM, "extra": "x"}, json_body=False) == {
        "node": "pve1",
        "vmid": 100,
        "extra": "x",
    }


def test_coerced_types() -> None:
    result = validate(
        CREATE,
        {**VM, "cores": "2", "acpi": "1", "cpulimit": "1.5", "name": "web", "net0": "virtio,bridge=vmbr0"},
        json_body=False,
    )
    assert result == {
        "node": "pve1",
        "vmid": 100,
        "cores": 2,
        "acpi": True,
        "cpulimit": 1.5,
        "name": "web",
        "net0": "virtio,bridge=vmbr0",
    }


# --- property strings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1",
        "virtio,bridge=vmbr0",
        "model=e1000,macaddr=BC:24:11:00:00:02,link_down=off,firewall=yes,mtu=1500",
        "virtio=bc:24:11:00:00:03,bridge=vmbr1,tag=42,rate=12.5",
    ],
)
def test_net_property_strings(value: str) -> None:
    assert validate(CREATE, {**VM, "net0": value}, json_body=False)["net0"] == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "foo,bridge=vmbr0",
            "format error\nnet0.model: value 'foo' does not have a value in the enumeration",
        ),
        ("virtio,bridge=vmbr0,colour=red", "invalid key in comma-separated list property: colour\n"),
        ("virtio,model=e1000", "duplicate key in comma-separated list property: model\n"),
        ("virtio,e1000", "duplicate key in comma-separated list property: model\n"),
        ("bridge=vmbr0", "format error\nnet0.model: property is missing and it is not optional\n"),
        ("virtio,firewall=maybe", "net0.firewall: type check ('boolean') failed - got 'maybe'\n"),
        ("virtio,mtu=0", "net0.mtu: value must have a minimum value of 1\n"),
        (
            "virtio=01:00:00:00:00:00",
            "net0.macaddr: invalid format - value does not look like a valid unicast MAC",
        ),
        ("virtio,bridge=vm br0", "net0.bridge: invalid format - invalid bridge ID 'vm br0'\n"),
        ("virtio,=x", "missing key in comma-separated list property\n"),
    ],
)
def test_bad_net_property_strings(value: str, expected: str) -> None:
    message = errors_of(CREATE, {**VM, "net0": value})["net0"]
    assert message.startswith("invalid format - ")
    assert expected in message


@pytest.mark.parametrize(
    "value",
    [
        "local-lvm:vm-100-disk-0,size=20G",
        "local-lvm:32",
        "local-lvm:32,discard=on,ssd=1,iothread=1",
        "none,media=cdrom",
        "/dev/disk/by-id/ata-XYZ,backup=0",
    ],
)
def test_disk_property_strings(value: str) -> None:
    assert validate(CREATE, {**VM, "scsi0": value}, json_body=False)["scsi0"] == value


def test_bad_disk_property_strings() -> None:
    errors = errors_of(CREATE, {**VM, "scsi0": "local-lvm:vm-100-disk-0,size=20X", "ide0": "nocolon"})
    assert "scsi0.size: invalid format - value does not look like a valid disk size: 20X" in errors["scsi0"]
    assert "ide0.file: invalid format - unable to parse volume ID 'nocolon'" in errors["ide0"]


def test_default_key_with_range() -> None:
    assert validate(CREATE, {**VM, "memory": "4096"}, json_body=False)["memory"] == "4096"
    assert (
        "memory.current: value must have a minimum value of 16"
        in errors_of(CREATE, {**VM, "memory": "8"})["memory"]
    )


def test_index_beyond_max_is_not_defined() -> None:
    assert validate(CREATE, {**VM, "net31": "virtio,bridge=vmbr0"}, json_body=False)
    assert errors_of(CREATE, {**VM, "net32": "virtio,bridge=vmbr0", "scsi31": "local-lvm:1"}) == {
        "net32": NOT_DEFINED,
        "scsi31": NOT_DEFINED,
    }


# --- arrays and lists ------------------------------------------------------------------------------


def test_array_params() -> None:
    sendmail = SCHEMA.endpoint("POST", "/cluster/notifications/endpoints/sendmail")
    ok = validate(sendmail, {"name": "ops", "mailto": ["a@example.com", "root"]}, json_body=True)
    assert ok["mailto"] == ["a@example.com", "root"]
    form = validate(sendmail, {"name": "ops", "mailto": "a@example.com\0b@example.com"}, json_body=False)
    assert form["mailto"] == ["a@example.com", "b@example.com"]
    errors = errors_of(
        sendmail, {"name": "ops", "mailto": ["a@example.com", "not an address"]}, json_body=True
    )
    assert errors == {
        "mailto[1]": "invalid format - value does not look like a valid email address or user name\n"
    }
    assert errors_of(sendmail, {"name": "ops", "mailto": "x@example.com"}, json_body=True) == {
        "mailto": "type check ('array') failed"
    }


def test_list_formats_split_like_pve() -> None:
    assert split_list("100, 101;102  103") == ["100", "101", "102", "103"]
    assert split_list("a b\0c") == ["a b", "c"]
    assert split_list("") == []
    config = SCHEMA.endpoint("PUT", "/nodes/{node}/qemu/{vmid}/config")
    assert validate(config, {**VM, "delete": "net1,scsi1;ide2 tags"}, json_body=False)
    assert errors_of(config, {**VM, "delete": "net1,bad 9name"})["delete"] == (
        "invalid format - invalid configuration ID '9name'\n"
    )


# --- named formats ---------------------------------------------------------------------------------

FORMAT_CASES = [
    ("pve-vmid", "100", "10", "value does not look like a valid VM ID\n"),
    ("pve-node", "pve-1", "pve_1", "value does not look like a valid node name\n"),
    ("pve-configid", "Snap_1-a", "1snap", "invalid configuration ID '1snap'\n"),
    ("pve-configid", "ab", "a", "invalid configuration ID 'a'\n"),
    ("pve-storage-id", "local-lvm", "local-", "storage ID 'local-' contains illegal characters\n"),
    ("dns-name", "web-01.example.com", "web_01", "value does not look like a valid DNS name\n"),
    ("pve-poolid", "team/dev", "team dev", "pool name 'team dev' contains invalid characters\n"),
    ("pve-poolid", "a/b/c", "a/b/c/d", "pool name 'a/b/c/d' nested too deeply (max levels = 3)\n"),
    ("pve-userid", "alice@pve", "alice", "value 'alice' does not look like a valid user name\n"),
    ("pve-userid", "bob@pam", "a@", "user name 'a@' is too short\n"),
    ("pve-tokenid", "root@pam!ci-1", "root@pam", "value 'root@pam' does not look like a valid token ID\n"),
    ("pve-vmid-list", "100,101 102;103", "100,1", "value does not look like a valid VM ID\n"),
    (
        "mac-addr",
        "BC:24:11:00:00:01",
        "01:24:11:00:00:01",
        "value does not look like a valid unicast MAC address\n",
    ),
    ("pve-tag-list", "dev;claude,hub", "dev;bad/tag", "invalid characters in tag\n"),
    ("disk-size", "1024M", "+10G", "value does not look like a valid disk size: +10G\n"),
    ("disk-size", "20G", "20X", "value does not look like a valid disk size: 20X\n"),
    ("email", "ops@example.com", "ops@", "value does not look like a valid email address\n"),
    ("ipv4", "192.168.1.10", "192.168.1.300", "value does not look like a valid IPv4 address\n"),
    ("ipv6", "fd00::1", "fd00:::1", "value does not look like a valid IPv6 address\n"),
    ("ip", "fd00::1", "host", "value does not look like a valid IP address\n"),
    ("CIDR", "10.0.0.0/8", "10.0.0.0/4", "value does not look like a valid CIDR network\n"),
    ("CIDRv4", "10.1.0.0/16", "10.1.0.0", "value does not look like a valid IPv4 CIDR network\n"),
    ("CIDRv6", "fd00::/64", "fd00::/200", "value does not look like a valid IPv6 CIDR network\n"),
    ("pve-priv-list", "VM.Audit,Sys.Audit", "VM.Audit,VM.Fly", "invalid privilege 'VM.Fly'\n"),
    ("pve-bridge-id", "vmbr0", "vmbr 0", "invalid bridge ID 'vmbr 0'\n"),
    ("pve-realm", "pve", "1pve", "value does not look like a valid realm\n"),
    ("pve-groupid", "admins.ops", "ad mins", "group name 'ad mins' contains invalid characters\n"),
    ("pve-roleid", "PVEVMAdmin", "PVE/Admin", "role name 'PVE/Admin' contains invalid characters\n"),
    ("email-opt", "", "x@", "value does not look like a valid email address\n"),
    ("pve-volume-id-or-qm-path", "cdrom", "nocolon", "unable to parse volume ID 'nocolon'\n"),
]


@pytest.mark.parametrize(("fmt", "good", "bad", "message"), FORMAT_CASES)
def test_named_formats(fmt: str, good: str, bad: str, message: str) -> None:
    assert check_format(fmt, good) is None
    assert check_format(fmt, bad) == message


def test_required_formats_are_checked_and_unknown_ones_accepted() -> None:
    required = {
        "pve-vmid", "pve-node", "pve-configid", "pve-storage-id", "dns-name", "pve-poolid", "pve-userid",
        "pve-tokenid", "mac-addr", "pve-tag", "disk-size", "email", "ipv4", "ipv6", "ip", "CIDR",
        "CIDRv4", "pve-priv", "pve-bridge-id", "pve-realm", "pve-groupid", "pve-roleid",
    }  # fmt: skip
    assert required <= CHECKED_FORMATS
    assert check_format("pve-no-such-format", "anything at all") is None


# --- properties ------------------------------------------------------------------------------------

VMID_PARAMS = sorted(
    {
        (endpoint.method, endpoint.path, name)
        for endpoint in SCHEMA.endpoints()
        for name, param in endpoint.params.items()
        if param.format == "pve-vmid"
    }
)


@given(
    site=st.sampled_from(VMID_PARAMS),
    vmid=st.integers(min_value=100, max_value=999_999_999),
    as_json=st.booleans(),
)
def test_any_vmid_in_range_passes(site: tuple[str, str, str], vmid: int, as_json: bool) -> None:
    method, path, name = site
    param = SCHEMA.endpoint(method, path).params[name]
    assert (param.minimum, param.maximum) == (100, 999_999_999)
    endpoint = synthetic(**{name: param})
    value: Any = vmid if as_json else str(vmid)
    assert validate(endpoint, {name: value}, json_body=as_json) == {name: vmid}


@given(vmid=st.one_of(st.integers(max_value=99), st.integers(min_value=1_000_000_000)))
def test_any_vmid_out_of_range_fails(vmid: int) -> None:
    errors = errors_of(CLONE, {**VM, "newid": str(vmid)})
    assert set(errors) == {"newid"}
