"""Checkpoints of a machine: the tree, one checkpoint and what blocks a restore (reads), create,
restore, branch and delete (jobs, 202), pin and unpin (store only).

A checkpoint is addressed by its machine (name or vmid) and its name. Every request is checked before a
job is queued (the machine, the checkpoint, names, pins, your role), so a bad one is a 4xx now; risk and
approvals are weighed when the job runs, and one that needs an approval fails with
``error.details.approval_id`` (send it again with ``approval``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, field_validator

from autovibe.api.deps import ACCEPTED_RESPONSE, Caller, Deps, HubDep, submit
from autovibe.checkpoints import service
from autovibe.checkpoints.errors import CheckpointExists, CheckpointNotFound, CheckpointProtected
from autovibe.checkpoints.models import (
    MAX_NAME,
    Checkpoint,
    CheckpointDetail,
    CheckpointTree,
    check_name,
)
from autovibe.hub.service import Hub
from autovibe.machines.deploy import MachineDeps
from autovibe.machines.errors import MachineNameTaken, ProjectNotFound
from autovibe.machines.models import check_slug, check_vm_name
from autovibe.security import rbac
from autovibe.security.identity import Identity
from autovibe.store import repositories as repo

router = APIRouter(prefix="/machines", tags=["checkpoints"])

# A machine's name (PVE's dns-name characters) or its vmid (at most 9 digits: PVE's vmid range).
MACHINE_REF = r"^(?:[0-9]{1,9}|[A-Za-z0-9.-]*[A-Za-z.-][A-Za-z0-9.-]*)$"
# PVE's snapshot names (pve-configid); `check_name` also refuses the reserved `current` and `pending`.
CHECKPOINT_NAME = r"^[A-Za-z][A-Za-z0-9_-]+$"

MachineRef = Annotated[
    str, Path(min_length=1, max_length=63, pattern=MACHINE_REF, description="The machine's name or vmid")
]
NamePath = Annotated[
    str, Path(min_length=2, max_length=MAX_NAME, pattern=CHECKPOINT_NAME, description="The checkpoint")
]
ApprovalId = Annotated[str | None, Field(min_length=4, max_length=36, description="An approved request's id")]
Description = Annotated[str, Field(max_length=1000, pattern=r"^[^\x00]*$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckpointCreateRequest(_Body):
    """A new checkpoint. Without ``name`` it is ``ckpt-YYYYMMDD-HHMMSS`` (UTC); ``ram`` defaults to
    whether the machine runs (a stopped machine has no RAM to save)."""

    name: str | None = Field(default=None, min_length=2, max_length=MAX_NAME, pattern=CHECKPOINT_NAME)
    ram: StrictBool | None = None
    description: Description = ""
    pin: StrictBool = False
    approval: ApprovalId = None

    @field_validator("name")
    @classmethod
    def _pve_name(cls, value: str | None) -> str | None:
        return None if value is None else _valid_name(value)


class RestoreRequest(_Body):
    """``start``: start the machine afterwards when the checkpoint has no RAM. ``discard_newer``: on ZFS,
    delete the newer checkpoints first (they are gone for good)."""

    start: StrictBool = False
    discard_newer: StrictBool = False
    approval: ApprovalId = None


class BranchRequest(_Body):
    """A new machine ``new_name`` cloned from the checkpoint (in ``project`` and on ``node``, by default
    the source's); it boots fresh from the checkpoint's disks unless ``start`` is false."""

    new_name: str = Field(min_length=1, max_length=63)
    project: str | None = Field(default=None, min_length=1, max_length=63)
    node: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$"
    )
    start: StrictBool = True
    approval: ApprovalId = None

    @field_validator("new_name")
    @classmethod
    def _vm_name(cls, value: str) -> str:
        return check_vm_name(value)

    @field_validator("project")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        return None if value is None else check_slug(value)


class CheckpointNode(BaseModel):
    """A node of the tree: a checkpoint with its ``children``, or the machine's current state
    (``current`` true, ``name`` ``current``, with the machine's ``status``) under the checkpoint it
    descends from."""

    name: str
    current: bool = False
    status: str | None = None
    time: AwareDatetime | None = None
    ram: bool | None = None
    description: str | None = None
    parent: str | None = None
    pinned: bool | None = None
    branches: list[str] | None = None
    created_by: str | None = None
    children: list[CheckpointNode] = Field(default_factory=list)


class RollbackBlockers(BaseModel):
    """What stands between the machine and a restore to ``checkpoint``: the newer checkpoints (newest
    first) that must go first because their disks are on storage that rolls back only to its newest
    snapshot (ZFS); empty when a restore can roll back as is. A restore with ``discard_newer`` deletes
    them for good, unless one is ``protected`` (pinned, or a machine was branched from it): then it is
    refused."""

    machine: str
    checkpoint: str
    newer: list[str]
    protected: list[str]


class CheckpointTreeView(BaseModel):
    """A machine's checkpoints as a tree (``tree``, like ``autovibe checkpoint list --json``) and as a
    list, oldest first (``checkpoints``); ``here`` is the checkpoint the current state descends from."""

    machine: str
    vmid: int
    node: str
    status: str
    here: str | None
    checkpoints: list[Checkpoint]
    tree: list[CheckpointNode]


def _valid_name(name: str) -> str:
    try:
        return check_name(name)
    except ValueError as exc:  # InvalidCheckpointRequest is a ValueError: a 400 naming the field
        raise ValueError(str(exc)) from None


def _tree_view(tree: CheckpointTree) -> CheckpointTreeView:
    return CheckpointTreeView(
        machine=tree.machine,
        vmid=tree.vmid,
        node=tree.node,
        status=tree.status,
        here=tree.here,
        checkpoints=list(tree.checkpoints),
        tree=[CheckpointNode.model_validate(node) for node in tree.nested()],
    )


async def _existing(deps: MachineDeps, ref: str, name: str) -> tuple[service.Target, Checkpoint]:
    """The machine and its checkpoint ``name`` (404 for either), read as the caller may."""
    target, _tree, found = await _in_tree(deps, ref, name)
    return target, found


async def _in_tree(
    deps: MachineDeps, ref: str, name: str
) -> tuple[service.Target, CheckpointTree, Checkpoint]:
    target = await service.locate(deps, ref)
    rbac.check(deps.identity, "checkpoint.read", target.project)
    tree = await service.read_tree(deps, target)
    found = tree.get(name)
    if found is None:
        names = ", ".join(c.name for c in tree.checkpoints) or "none yet"
        raise CheckpointNotFound(
            f"machine '{target.name}' has no checkpoint '{name}'", hint=f"its checkpoints: {names}"
        )
    return target, tree, found


def _params(target: service.Target, **more: Any) -> dict[str, Any]:
    return {"machine": target.name, **more}


def _queue(
    hub: Hub, identity: Identity, kind: str, target: service.Target, checkpoint: str, params: dict[str, Any]
) -> JSONResponse:
    return submit(
        hub,
        identity,
        kind,
        params,
        action=kind,
        target=f"checkpoint {checkpoint} of machine {target.name}",
        project=target.project,
    )


# ---- reads ---------------------------------------------------------------------------------------
@router.get("/{ref}/checkpoints", response_model=CheckpointTreeView)
async def list_checkpoints(deps: Deps, ref: MachineRef) -> CheckpointTreeView:
    """The machine's checkpoints as a tree: what each saved (RAM or disks only), pins, the machines
    branched from each, and where the machine is now (the ``current`` node)."""
    return _tree_view(await service.tree(deps, ref))


@router.get("/{ref}/checkpoints/{name}", response_model=CheckpointDetail)
async def show_checkpoint(deps: Deps, ref: MachineRef, name: NamePath) -> CheckpointDetail:
    """One checkpoint: what it saved, its saved config, and what differs from the machine's config now."""
    return await service.show(deps, ref, name)


@router.get("/{ref}/checkpoints/{name}/blockers", response_model=RollbackBlockers)
async def rollback_blockers(deps: Deps, ref: MachineRef, name: NamePath) -> RollbackBlockers:
    """The newer checkpoints a restore to this one would have to delete first (ZFS), and which of them
    are protected: what to confirm before a restore with ``discard_newer``. Changes nothing."""
    target, tree, _found = await _in_tree(deps, ref, name)
    newer = await service.rollback_blockers(deps, target, tree, name)
    protected = [n for n in newer if (c := tree.get(n)) is not None and (c.pinned or c.branches)]
    return RollbackBlockers(machine=target.name, checkpoint=name, newer=newer, protected=protected)


# ---- jobs ----------------------------------------------------------------------------------------
@router.post("/{ref}/checkpoints", status_code=202, responses=ACCEPTED_RESPONSE)
async def create_checkpoint(
    hub: HubDep, identity: Caller, deps: Deps, ref: MachineRef, body: CheckpointCreateRequest
) -> JSONResponse:
    """Take a checkpoint as a job (a PVE snapshot of the disks and config, and of the RAM when the
    machine runs). A name the machine already has is a 409 now; the job's result is the checkpoint."""
    target = await service.locate(deps, ref)
    rbac.check(identity, "checkpoint.read", target.project)
    if body.name is not None and (await service.read_tree(deps, target)).get(body.name) is not None:
        raise CheckpointExists(
            f"machine '{target.name}' already has a checkpoint '{body.name}'",
            hint="choose another name, or delete the old one first",
        )
    params = _params(
        target, name=body.name, ram=body.ram, description=body.description, pin=body.pin,
        approval=body.approval,
    )  # fmt: skip
    return _queue(hub, identity, "checkpoint.create", target, body.name or "(new)", params)


@router.post("/{ref}/checkpoints/{name}/restore", status_code=202, responses=ACCEPTED_RESPONSE)
async def restore_checkpoint(
    hub: HubDep, identity: Caller, deps: Deps, ref: MachineRef, name: NamePath, body: RestoreRequest
) -> JSONResponse:
    """Roll the machine back to the checkpoint, as a job: disks and config, and RAM if it was saved
    (the machine then resumes running). On ZFS, newer checkpoints are in the way unless
    ``discard_newer`` deletes them (the job fails with a conflict otherwise)."""
    target, _found = await _existing(deps, ref, name)
    params = _params(
        target, checkpoint=name, start=body.start, discard_newer=body.discard_newer, approval=body.approval
    )
    return _queue(hub, identity, "checkpoint.restore", target, name, params)


@router.post("/{ref}/checkpoints/{name}/branch", status_code=202, responses=ACCEPTED_RESPONSE)
async def branch_checkpoint(
    hub: HubDep, identity: Caller, deps: Deps, ref: MachineRef, name: NamePath, body: BranchRequest
) -> JSONResponse:
    """Clone the checkpoint into a new machine, as a job (a full clone, lineage recorded). PVE clones
    the checkpoint's disks, not its RAM: the new machine boots fresh. A taken name, an unknown project
    or a quota the new machine would break are refused now; a failure undoes everything (no orphan
    VM). You need ``machine.create`` in the new machine's project as well."""
    target, _found = await _existing(deps, ref, name)
    project = body.project or target.project
    await asyncio.to_thread(_check_new_machine, hub, body.new_name, project)
    if project != target.project:
        hub.base_deps.security.precheck(
            identity, "machine.create", target=f"machine {body.new_name}", project=project
        )
    await deps.hooks.check_quota({"project": project})
    params = _params(
        target, checkpoint=name, new_name=body.new_name, project=body.project, node=body.node,
        start=body.start, approval=body.approval,
    )  # fmt: skip
    return _queue(hub, identity, "checkpoint.branch", target, name, params)


def _check_new_machine(hub: Hub, name: str, project: str) -> None:
    with hub.db.session() as session:
        if repo.machine_by_name(session, name) is not None:
            raise MachineNameTaken(f"a machine named '{name}' already exists", hint="choose another name")
        if repo.project_by_name(session, project) is None:
            raise ProjectNotFound(f"no project '{project}'", hint="list projects with GET /api/v1/projects")


@router.delete("/{ref}/checkpoints/{name}", status_code=202, responses=ACCEPTED_RESPONSE)
async def delete_checkpoint(
    hub: HubDep,
    identity: Caller,
    deps: Deps,
    ref: MachineRef,
    name: NamePath,
    force: Annotated[bool, Query(description="Delete it even if it is pinned")] = False,
    approval: Annotated[str | None, Query(min_length=4, max_length=36)] = None,
) -> JSONResponse:
    """Delete the checkpoint (its disk snapshots and saved RAM), as a job. A pinned one is a 409 unless
    ``force``; machines branched from it are full clones and keep working."""
    target, found = await _existing(deps, ref, name)
    if found.pinned and not force:
        raise CheckpointProtected(
            f"checkpoint '{name}' of machine '{target.name}' is pinned",
            # the service's own words, so the CLI says the same through the hub as locally
            hint=f"unpin it first: `autovibe checkpoint unpin {target.name} {name}`",
        )
    params = _params(target, checkpoint=name, force=force, approval=approval)
    return _queue(hub, identity, "checkpoint.delete", target, name, params)


# ---- pins ----------------------------------------------------------------------------------------
@router.put("/{ref}/checkpoints/{name}/pin", response_model=Checkpoint)
async def pin_checkpoint(deps: Deps, ref: MachineRef, name: NamePath) -> Checkpoint:
    """Pin the checkpoint: retention never removes it, and deleting it needs ``force``."""
    return await service.pin(deps, ref, name, pinned=True)


@router.delete("/{ref}/checkpoints/{name}/pin", response_model=Checkpoint)
async def unpin_checkpoint(deps: Deps, ref: MachineRef, name: NamePath) -> Checkpoint:
    """Unpin the checkpoint: retention policies may remove it again."""
    return await service.pin(deps, ref, name, pinned=False)
