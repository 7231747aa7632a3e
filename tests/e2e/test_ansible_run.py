"""The generated playbook, run by ansible-playbook (community.proxmox) against the HTTPS simulator."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from proxmoxer import ProxmoxAPI

from autovibe.ai.codegen import from_plan, render_ansible, validate_ansible
from autovibe.ai.plan import MachineCreate, Plan
from autovibe.machines.profiles import SEED_PROFILES
from autovibe.network.profiles import SEED_PROFILES as NETWORK_PROFILES
from tests.e2e.conftest import TOKEN_NAME, TOKEN_SECRET, ServedSim

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        shutil.which("ansible-playbook") is None and os.environ.get("CI") != "true",
        reason="ansible is not installed (pip install ansible); required in CI",
    ),
]


def test_generated_playbook_creates_the_planned_machines(served_sim: ServedSim, tmp_path):
    plan = Plan(
        actions=[
            MachineCreate(profile="claude_code", project="ansible", count=2, name="ans"),
            MachineCreate(profile="claude_code", project="ansible", name="ans-big", cores=4, memory_mib=8192),
        ]
    )
    deployment = from_plan(plan, SEED_PROFILES, NETWORK_PROFILES, symbols={"@hub": ["10.0.0.5"]})
    playbook = tmp_path / "site.yml"
    playbook.write_text(render_ansible(deployment))
    assert validate_ansible(playbook.read_text()) == []
    cert = served_sim.state.parent / "sim-tls" / "pve-ssl.pem"
    env = {
        **os.environ,
        "PVE_API_HOST": "127.0.0.1",
        "PVE_API_PORT": str(served_sim.port),
        "PVE_API_USER": "root@pam",
        "PVE_API_TOKEN_ID": TOKEN_NAME,
        "PVE_API_TOKEN_SECRET": TOKEN_SECRET,
        "REQUESTS_CA_BUNDLE": str(cert),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
    }
    cmd = [
        shutil.which("ansible-playbook") or "ansible-playbook", "-i", "localhost,",
        "-e", f"ansible_python_interpreter={sys.executable}", str(playbook),
    ]  # fmt: skip
    for run in range(2):  # the second run finds every machine and creates none
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=500, check=False)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert "failed=0" in done.stdout
        assert TOKEN_SECRET not in done.stdout + done.stderr
        if run == 1:
            assert "clone template" in done.stdout and "skipping:" in done.stdout

    prox = ProxmoxAPI(
        "127.0.0.1", port=served_sim.port, user="root@pam", token_name=TOKEN_NAME,
        token_value=TOKEN_SECRET, verify_ssl=str(cert),
    )  # fmt: skip
    guests = [r for r in prox.cluster.resources.get(type="vm") if str(r.get("name", "")).startswith("ans")]
    by_name = {g["name"]: g for g in guests}
    assert sorted(by_name) == sorted(m.name for m in deployment.machines)  # exactly once each
    for machine in deployment.machines:
        guest = by_name[machine.name]
        config = prox.nodes(guest["node"]).qemu(guest["vmid"]).config.get()
        assert int(config["cores"]) == machine.cores
        assert int(config["memory"]) == machine.memory_mib
        assert "bridge=vmbr1" in config["net0"] and "firewall=1" in config["net0"]
        assert guest["status"] == "running"
        firewall = prox.nodes(guest["node"]).qemu(guest["vmid"]).firewall
        options = firewall.options.get()
        assert (options["enable"], options["policy_in"], options["policy_out"]) == (1, "DROP", "DROP")
        live = [(r["action"], r.get("dest"), r.get("dport")) for r in firewall.rules.get()]
        assert live == [(r.action, r.dest, r.dport) for r in machine.firewall.rules]
