"""Infrastructure-as-code from a project or a plan: Terraform (bpg/proxmox) and Ansible (community.proxmox),
plus validators that check generated or model-written code before anyone runs it."""

from autovibe.ai.codegen.ansible import render_ansible
from autovibe.ai.codegen.model import Deployment, MachineDef, from_inventory, from_plan
from autovibe.ai.codegen.terraform import render_terraform
from autovibe.ai.codegen.validate import Finding, validate_ansible, validate_terraform

__all__ = [
    "Deployment",
    "Finding",
    "MachineDef",
    "from_inventory",
    "from_plan",
    "render_ansible",
    "render_terraform",
    "validate_ansible",
    "validate_terraform",
]
