"""A :class:`Deployment` as an Ansible playbook using the ``community.proxmox`` collection (pure).

Credentials come from variables, by default read from the environment (``PVE_API_HOST``,
``PVE_API_PORT``, ``PVE_API_USER``, ``PVE_API_TOKEN_ID``, ``PVE_API_TOKEN_SECRET``); override them with
``-e @vault.yml`` (ansible-vault) — the playbook never holds a secret. TLS is verified
(``validate_certs: true``); for a private CA set ``REQUESTS_CA_BUNDLE`` (the modules use proxmoxer, i.e.
requests). Per machine: ``proxmox_kvm`` clones the template (idempotent by name), sets cores and memory,
``proxmox_disk`` grows the disk, ``proxmox_nic`` puts net0 on the profile's bridge with the firewall on,
``proxmox_firewall`` writes the rules (the cluster IP sets once, first). The collection has no module for
a VM's firewall *options* (enable, policies), so that one task calls the PVE API with ``uri``.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from autovibe.ai.codegen.model import Deployment, MachineDef

__all__ = ["render_ansible"]

_CONN = {
    "api_host": "{{ pve_api_host }}",
    "api_port": "{{ pve_api_port | int }}",
    "api_user": "{{ pve_api_user }}",
    "api_token_id": "{{ pve_api_token_id }}",
    "api_token_secret": "{{ pve_api_token_secret }}",
    "validate_certs": True,
}
_MODULES = ("proxmox_vm_info", "proxmox_kvm", "proxmox_disk", "proxmox_nic", "proxmox_firewall")


def _env(name: str, default: str | None = None) -> str:
    lookup = f"lookup('ansible.builtin.env', '{name}')"
    return "{{ " + (f"{lookup} | default('{default}', true)" if default else lookup) + " }}"


def _register(machine: MachineDef) -> str:
    return "autovibe_vm_" + re.sub(r"[^a-z0-9_]", "_", machine.name.lower())


def _machine_tasks(machine: MachineDef) -> list[dict[str, Any]]:
    reg = _register(machine)
    vmid = "{{ " + reg + "_vmid }}"
    where = {"node": machine.node, "vmid": vmid}
    clone: dict[str, Any] = {
        "node": machine.node,
        "vmid": machine.template_vmid,
        "clone": f"template-{machine.template_vmid}",  # required to clone; vmid names the source
        "name": machine.name,
        "full": machine.full_clone,
        "timeout": 600,
    }
    if machine.vmid is not None:
        clone["newid"] = machine.vmid
    if machine.storage and machine.full_clone:
        clone["storage"] = machine.storage
    options = machine.firewall.options
    rules = []
    for pos, rule in enumerate(machine.firewall.rules):
        entry: dict[str, Any] = {"pos": pos, "type": rule.type, "action": rule.action, "enable": True}
        entry.update({k: v for k, v in rule.params().items() if k in ("proto", "dest", "dport", "sport")})
        entry["comment"] = rule.comment
        rules.append(entry)
    nic: dict[str, Any] = {"vmid": vmid, "interface": "net0", "model": "virtio", "bridge": machine.bridge}
    nic["firewall"] = True
    if machine.vlan is not None:
        nic["tag"] = machine.vlan
    found = f"{reg}_found.proxmox_vms"
    tasks: list[dict[str, Any]] = [
        {
            "name": f"{machine.name}: look up by name",
            "community.proxmox.proxmox_vm_info": {"name": machine.name, "config": "none"},
            "register": f"{reg}_found",
        },
        {
            "name": f"{machine.name}: clone template {machine.template_vmid}",
            "community.proxmox.proxmox_kvm": clone,
            "register": f"{reg}_clone",
            "when": f"{found} | length == 0",
        },
        {
            "name": f"{machine.name}: its vmid",
            "ansible.builtin.set_fact": {
                f"{reg}_vmid": "{{ ("
                + found
                + " | first).vmid if "
                + found
                + " else "
                + reg
                + "_clone.vmid }}"
            },
        },
        {
            "name": f"{machine.name}: {machine.cores} cores, {machine.memory_mib} MiB",
            "community.proxmox.proxmox_kvm": {
                **where,
                "cores": machine.cores,
                "memory": machine.memory_mib,
                "update": True,
            },
        },
        {
            "name": f"{machine.name}: disk scsi0 {machine.disk_gib} GiB",
            "community.proxmox.proxmox_disk": {
                "vmid": vmid,
                "disk": "scsi0",
                "size": f"{machine.disk_gib}G",
                "state": "resized",
            },
        },
        {
            "name": f"{machine.name}: net0 on {machine.bridge}, firewall on",
            "community.proxmox.proxmox_nic": nic,
        },
        {
            "name": f"{machine.name}: firewall options ({machine.network_profile})",
            "ansible.builtin.uri": {
                "url": "https://{{ pve_api_host }}:{{ pve_api_port }}/api2/json/nodes/"
                + f"{machine.node}/qemu/{vmid}/firewall/options",
                "method": "PUT",
                "headers": {
                    "Authorization": "PVEAPIToken={{ pve_api_user }}!{{ pve_api_token_id }}"
                    "={{ pve_api_token_secret }}"
                },
                "body_format": "form-urlencoded",
                "body": {
                    "enable": options["enable"],
                    "dhcp": options["dhcp"],
                    "policy_in": options["policy_in"],
                    "policy_out": options["policy_out"],
                },
                "validate_certs": True,
                "ca_path": "{{ lookup('ansible.builtin.env', 'REQUESTS_CA_BUNDLE') | default(omit, true) }}",
            },
            "no_log": True,
        },
        {
            "name": f"{machine.name}: firewall rules ({machine.network_profile})",
            "community.proxmox.proxmox_firewall": {
                "level": "vm",
                "vmid": vmid,
                "state": "present",
                "update": True,
                "rules": rules,
            },
        },
    ]
    if machine.start:
        tasks.append(
            {
                "name": f"{machine.name}: started",
                "community.proxmox.proxmox_kvm": {**where, "state": "started"},
            }
        )
    return tasks


def render_ansible(deployment: Deployment) -> str:
    """The project's machines and firewall as one playbook (YAML text)."""
    tasks: list[dict[str, Any]] = []
    if deployment.ipsets:
        tasks.append(
            {
                "name": "Cluster IP sets the firewall rules name",
                "community.proxmox.proxmox_firewall": {
                    "level": "cluster",
                    "state": "present",
                    "update": True,
                    "ip_sets": [
                        {
                            "name": name,
                            "comment": f"autovibe: {deployment.project}",
                            "cidrs": [{"cidr": m} for m in sorted(members)],
                        }
                        for name, members in deployment.ipsets.items()
                    ],
                },
            }
        )
    for machine in deployment.machines:
        tasks += _machine_tasks(machine)
    play = {
        "name": f"autovibe project {deployment.project}: machines and firewall",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {
            "pve_api_host": _env("PVE_API_HOST"),
            "pve_api_port": _env("PVE_API_PORT", "8006"),
            "pve_api_user": _env("PVE_API_USER"),
            "pve_api_token_id": _env("PVE_API_TOKEN_ID"),
            "pve_api_token_secret": _env("PVE_API_TOKEN_SECRET"),
        },
        "module_defaults": {f"community.proxmox.{m}": dict(_CONN) for m in _MODULES},
        "tasks": tasks,
    }
    header = (
        f"# Generated by autovibe for project {deployment.project}. Collection: community.proxmox.\n"
        "# Credentials: environment (PVE_API_*) or -e @vault.yml (ansible-vault); never in this file.\n"
    )
    body = yaml.safe_dump([play], sort_keys=False, default_flow_style=False, width=1000)
    return header + "---\n" + body
