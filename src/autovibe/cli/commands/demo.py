"""``autovibe demo``: a short scripted tour on a fresh, in-memory simulated cluster.

It never touches a real cluster nor the user's persisted simulated one (``composition.open_sandbox``).
The first part drives single guests with ``autovibe.cluster.guests``; the machines part deploys a fleet
into a project through the machines services, with a throwaway SQLite store in a temporary directory;
the checkpoints part checkpoints one of those machines, restores it, grows a branch point in its
checkpoint tree and branches a new machine from a checkpoint; the usage part (``demo_usage``) makes one
of them run away and walks the project through a quota's graduated enforcement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autovibe.cli import render
from autovibe.cli.commands import load_cli_settings, run

if TYPE_CHECKING:
    from pathlib import Path

    from autovibe.cluster.models import GuestRef, SnapshotNode
    from autovibe.composition import Connection
    from autovibe.machines.deploy import MachineDeps
    from autovibe.pve import TaskStatus
    from autovibe.settings import Settings
    from autovibe.store.db import Database

app = typer.Typer(rich_markup_mode=None, add_completion=False)

TEMPLATE_VMID = 9000
VM_NAME = "demo-vm"
PROJECT = "demo"
PROFILE = "claude_code"
FLEET = 3
CORES = 2
MEMORY_MIB = 4096


@app.command()
def demo(
    ctx: typer.Context,
    speed: Annotated[
        float | None,
        typer.Option(min=0.1, max=10_000, help="Simulated seconds per real second [default: sim_speed, 20]."),
    ] = None,
) -> None:
    """Clone a VM from a template, configure, start, snapshot with RAM, roll back and clean up; then
    deploy a fleet into a project, delete a machine and read the journal; then checkpoint a machine,
    restore it, grow a checkpoint tree and branch a new machine from it; then let a machine run away
    and walk its project through a quota's warn, throttle and emergency stop, all on a throwaway
    cluster."""
    settings = load_cli_settings(ctx)
    if speed is not None:
        settings = settings.model_copy(update={"sim_speed": speed})
    _what_next(run(_tour(settings)))


async def _tour(settings: Settings) -> int:
    from autovibe.cluster import service as cluster_service
    from autovibe.composition import open_sandbox

    from .cluster import guests_table, nodes_table

    async with open_sandbox(settings) as connection:
        render.header(connection.target)
        status = await cluster_service.cluster_status(pve=connection.pve)
        render.step(1, f"A simulated Proxmox VE {status.version} cluster, three nodes and two templates")
        render.table(nodes_table(status))
        render.table(guests_table(status))
        guest = await _create(connection, timeout=settings.timeouts.task)
        await _snapshots(connection, guest, timeout=settings.timeouts.task)
        await _clean_up(connection, guest, timeout=settings.timeouts.task)
        return await _machines(connection, settings)


async def _create(connection: Connection, *, timeout: float) -> GuestRef:  # noqa: ASYNC109
    from autovibe.cluster import guests

    pve = connection.pve
    template = await guests.find_guest(pve=pve, vmid=TEMPLATE_VMID, template=True)
    render.step(2, f"Clone template {template.vmid} ({template.name}) into a new VM")
    with render.progress(f"full clone of {template.vmid} on {template.node}") as bar:
        guest = await guests.clone_template(
            pve=pve, template=template, name=VM_NAME, progress=_follow(bar), task_timeout=timeout
        )
    render.line(f"VM {guest.vmid} '{VM_NAME}' is on {guest.node}")
    render.step(3, f"Give it {CORES} cores and {MEMORY_MIB} MiB of memory, then start it")
    await guests.configure(pve=pve, guest=guest, cores=CORES, memory_mib=MEMORY_MIB)
    with render.progress(f"start VM {guest.vmid}") as bar:
        await guests.start(pve=pve, guest=guest, progress=_follow(bar), task_timeout=timeout)
    render.line(f"VM {guest.vmid} is {await guests.guest_power_state(pve=pve, guest=guest)}")
    return guest


async def _snapshots(connection: Connection, guest: GuestRef, *, timeout: float) -> None:  # noqa: ASYNC109
    from autovibe.cluster import guests

    pve = connection.pve
    render.step(4, "Take a snapshot of the running VM, RAM included, so it can resume exactly here")
    with render.progress("snapshot 'warm' with RAM") as bar:
        await guests.snapshot(
            pve=pve,
            guest=guest,
            name="warm",
            description="running, RAM saved",
            vmstate=True,
            progress=_follow(bar),
            task_timeout=timeout,
        )
    snapshots = await guests.list_snapshots(pve=pve, guest=guest)
    render.tree(f"snapshots of VM {guest.vmid}", _tree_nodes(guests.snapshot_tree(snapshots)))
    render.step(5, "Roll back to 'warm': disks, config and RAM return to that moment")
    with render.progress("rollback to 'warm'") as bar:
        await guests.rollback(pve=pve, guest=guest, name="warm", progress=_follow(bar), task_timeout=timeout)
    render.line(f"VM {guest.vmid} is {await guests.guest_power_state(pve=pve, guest=guest)} again, from RAM")


async def _clean_up(connection: Connection, guest: GuestRef, *, timeout: float) -> None:  # noqa: ASYNC109
    from autovibe.cluster import guests

    pve = connection.pve
    render.step(6, f"Stop and delete VM {guest.vmid}")
    with render.progress(f"stop VM {guest.vmid}") as bar:
        await guests.stop(pve=pve, guest=guest, progress=_follow(bar), task_timeout=timeout)
    with render.progress(f"delete VM {guest.vmid} and its disks") as bar:
        await guests.delete(pve=pve, guest=guest, progress=_follow(bar), task_timeout=timeout)


async def _machines(connection: Connection, settings: Settings) -> int:
    """The machines, checkpoints and usage parts, with a store of their own in a temporary directory
    (never the user's, not even a PostgreSQL one); returns the number of the next step."""
    import tempfile
    from pathlib import Path

    from autovibe.composition import machine_deps, open_store

    from .demo_usage import usage_tour

    with tempfile.TemporaryDirectory(prefix="autovibe-demo-") as scratch:
        db = open_store(settings.model_copy(update={"data_dir": Path(scratch), "database_url": None}))
        # DNS is the outside world: the tour answers from a fixed table of documentation addresses.
        from autovibe.settings import NetworkSettings

        network = NetworkSettings(static_hosts=DEMO_DNS, hosts=DEMO_HOSTS)
        settings = settings.model_copy(update={"network": network})
        try:
            deps = machine_deps(settings, connection.pve, db, clock=connection.clock)
            machine = await _fleet(deps)
            await _checkpoints(deps, machine)
            await _network(deps, settings, machine)
            after = await usage_tour(connection, deps, settings, runaway=machine, project=PROJECT, first=18)
            _audit(deps, after)
            await _hub(connection, db, settings, Path(scratch), after + 1)
            return after + 2
        finally:
            db.dispose()


def _audit(deps: MachineDeps, number: int) -> None:
    """Every decision of the tour went through the gate and into the hash-chained audit log."""
    from autovibe.security import audit

    from .audit import entries_table

    render.step(
        number,
        "The audit log: every action above passed the security gate (roles, risk, approvals), and each "
        "decision and outcome is a hash-chained entry",
    )
    render.table(entries_table(audit.list_entries(deps.db, limit=12)))
    result = audit.verify(deps.db)
    head = f"{result.head_id}:{(result.head_hash or '')[:16]}…"
    verdict = (
        f"audit verify: intact, {result.checked} entries chained (head {head})"
        if result.ok
        else f"audit verify: entry {result.first_bad}: {result.problem}"
    )
    render.line(verdict)


async def _hub(connection: Connection, db: Database, settings: Settings, scratch: Path, number: int) -> None:
    """The same services behind the hub's REST API: a CI job's token deploys a machine as a job and
    follows its progress as Server-Sent Events (in process here; `autovibe serve` puts it on a port)."""
    import json

    import httpx

    from autovibe.api.app import create_app
    from autovibe.hub.service import Hub
    from autovibe.pve.breaker import CircuitBreaker
    from autovibe.security.identity import add_user, bind, create_token, server_key_from

    settings = settings.model_copy(update={"token_key_file": scratch / "token.key"})
    hub = Hub(settings, db, connection, CircuitBreaker())
    add_user(db, "ci-bot")
    bind(db, "ci-bot", "operator", PROJECT)
    key = server_key_from(scratch / "token.key")
    _read, token = create_token(db, "ci-bot", description="demo CI job", key=key)
    render.step(
        number,
        f"The hub's REST API (`autovibe serve`): user 'ci-bot', an operator of '{PROJECT}', deploys "
        "a machine with its own token; the work runs as a job and streams its progress",
    )
    hub.start(lead=False)  # job workers only: the tour runs no scheduler behind your back
    app = create_app(settings, hub=hub)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as api:
            body = {"name": "ci-runner", "profile": PROFILE, "project": PROJECT}
            accepted = await api.post("/api/v1/machines", json=body, headers=headers)
            render.line(f"POST /api/v1/machines → {accepted.status_code}, job {accepted.json()['id'][:8]}")
            events = accepted.json()["links"]["events"]
            async with api.stream("GET", events, headers=headers) as stream:
                async for line in stream.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = json.loads(line[5:])
                    if data.get("type") == "step" and data["step"] != "done":
                        step = f"{data['index'] + 1}/{data['total']} {data['step']}"
                        render.line(f"  event: {data['machine']} step {step}")
                    elif data.get("type") == "status":
                        render.line(f"  event: job {data['status']}")
            listed = (await api.get("/api/v1/machines", params={"project": PROJECT}, headers=headers)).json()
            names = ", ".join(m["name"] for m in listed)
            render.line(f"GET /api/v1/machines → {len(listed)} machine(s): {names}")
            denied = await api.post("/api/v1/projects", json={"name": "rogue"}, headers=headers)
            render.line(f"POST /api/v1/projects as ci-bot → {denied.status_code}: {denied.json()['message']}")
    finally:
        await hub.stop()


DEMO_DNS = {
    "api.anthropic.com": ["192.0.2.10"],
    "api.openai.com": ["192.0.2.20"],
    "api.github.com": ["198.51.100.30"],
}  # RFC 5737 documentation addresses: the tour resolves nothing for real
DEMO_HOSTS = {"hub": ["10.0.0.10"], "db": ["10.0.0.20"]}


async def _network(deps: MachineDeps, settings: Settings, machine: str) -> None:
    """The fleet was deployed with its profile's network profile (api_access): show it and check it."""
    from autovibe.composition import network_context
    from autovibe.machines import service as machines
    from autovibe.network import service

    from .network import show_check

    ctx = network_context(settings)
    render.step(
        17,
        f"Network isolation: '{machine}' sits on api_access (bridge vmbr1, firewall on, egress only to the "
        "AI APIs, GitHub and the hub; PVE hosts, metadata and foreign DNS denied first)",
    )
    target = await machines.show(deps, machine)
    for rule in await deps.pve.get(f"/nodes/{target.node}/qemu/{target.vmid}/firewall/rules"):
        render.line(f"  {rule['pos']:>2}  {rule['type'].upper():<3} {rule['action']:<6} {_rule_text(rule)}")
    show_check(await service.check(deps, ctx, machine), fixed=False)


def _rule_text(rule: Mapping[str, Any]) -> str:
    parts = [str(rule[k]) for k in ("proto", "dest") if rule.get(k)]
    if rule.get("dport"):
        parts.append(f"port {rule['dport']}")
    return " ".join(parts) + f"   # {str(rule.get('comment', '')).removeprefix('autovibe:api_access:')}"


async def _fleet(deps: MachineDeps) -> str:
    """Deploy the fleet, delete one machine, show the journal; returns a machine still running."""
    from autovibe.cli.fleet_progress import FleetDisplay, outcomes_table, run_fleet
    from autovibe.composition import LOCAL_ACTOR
    from autovibe.machines import projects
    from autovibe.machines import service as machines
    from autovibe.machines.models import MachineCreate, ProjectCreate, parse_request
    from autovibe.machines.profiles import SEED_PROFILES
    from autovibe.operations.journal import Journal

    from .machine import machines_table
    from .ops import operations_table

    render.step(7, f"Create project '{PROJECT}' and deploy a fleet of {FLEET} '{PROFILE}' machines at once")
    projects.create(db=deps.db, request=parse_request(ProjectCreate, {"name": PROJECT}))
    request = parse_request(
        MachineCreate,
        {"name": PROFILE.replace("_", "-"), "profile": PROFILE, "project": PROJECT, "count": FLEET},
    )
    with FleetDisplay(render.output(), request.names) as display:
        outcomes, _pressed = await run_fleet(deps, request, SEED_PROFILES, display)
    render.table(outcomes_table(outcomes))
    render.step(8, "The machines autovibe tracks, with their live status from one cluster read")
    render.table(machines_table(await machines.list_machines(deps, project=PROJECT)))
    doomed = outcomes[-1].name
    render.step(9, f"Delete '{doomed}': stop, purge its disks, forget it — as a journaled operation")
    with render.progress(f"delete {doomed}"):
        await machines.delete(deps, doomed, actor=LOCAL_ACTOR)
    render.table(machines_table(await machines.list_machines(deps, project=PROJECT)))
    render.step(10, "The operations journal: every step of every operation, so a crash can be resumed")
    render.table(operations_table(Journal(deps.db).recent()))
    return outcomes[0].name


async def _checkpoints(deps: MachineDeps, machine: str) -> None:
    """Checkpoint a running machine with RAM, change it, restore it, grow a branch point, branch."""
    from autovibe.checkpoints import prune
    from autovibe.checkpoints import service as checkpoints
    from autovibe.checkpoints.retention import RetentionPolicy
    from autovibe.composition import LOCAL_ACTOR
    from autovibe.machines import service as machines

    from .checkpoint import changes_table, tree_view
    from .checkpoint_retention import show_prune
    from .machine import show_machine

    render.step(11, f"Checkpoint '{machine}' while it runs, RAM included")
    with render.progress(f"checkpoint 'base' of {machine}"):
        await checkpoints.create(deps, machine, "base", description="as deployed", actor=LOCAL_ACTOR)
    target = await checkpoints.locate(deps, machine)
    render.step(12, "Change it (4 cores), checkpoint that as 'tuned' (disks only), and see what changed")
    await deps.pve.put(f"{target.path}/config", cores=4)
    with render.progress(f"checkpoint 'tuned' of {machine}"):
        await checkpoints.create(deps, machine, "tuned", ram=False, actor=LOCAL_ACTOR)
    render.table(changes_table(await checkpoints.show(deps, machine, "base")))
    render.step(13, "Restore 'base': disks, config and RAM come back, so it resumes running as it was")
    with render.progress(f"restore {machine} to 'base'"):
        restored = await checkpoints.restore(deps, machine, "base", actor=LOCAL_ACTOR)
    cores = (await deps.pve.get(f"{target.path}/config")).get("cores")
    render.line(f"'{machine}' is {restored.status} again, with {cores} cores")
    render.step(14, "Checkpoint again from there: 'base' now has two children, a branch point in the tree")
    with render.progress(f"checkpoint 'retry' of {machine}"):
        await checkpoints.create(deps, machine, "retry", ram=False, actor=LOCAL_ACTOR)
    render.step(
        15, "Branch 'tuned' into a new machine: PVE clones its disk state, not its RAM (it boots fresh)"
    )
    child = f"{machine}-tuned"
    with render.progress(f"branch {machine} at 'tuned' into {child}") as bar:
        await checkpoints.branch(
            deps,
            machine,
            "tuned",
            new_name=child,
            actor=LOCAL_ACTOR,
            progress=lambda step, index, total: bar.update(index / total if total else 1.0, step),
        )
    show_machine(await machines.show(deps, child))
    render.line()
    render.tree(*tree_view(await checkpoints.tree(deps, machine)))
    render.step(16, "Retention, restic's rules: what `prune --keep-last 1` would do (a dry run)")
    plans = await prune.plan_prune(deps, machine=machine, override=RetentionPolicy(last=1))
    show_prune(prune.PruneResult(tuple(plans), None), dry_run=True)


def _follow(bar: render.ProgressBar) -> Callable[[TaskStatus], None]:
    def update(status: TaskStatus) -> None:
        bar.update(note=status.status if status.running else (status.exitstatus or status.status))

    return update


def _tree_nodes(nodes: Sequence[SnapshotNode]) -> tuple[render.TreeNode, ...]:
    return tuple(render.TreeNode(_snapshot_label(node), _tree_nodes(node.children)) for node in nodes)


def _snapshot_label(node: SnapshotNode) -> str:
    snap = node.snapshot
    if snap.is_current:
        return "current (you are here)"
    parts = [snap.name]
    if snap.snaptime is not None:
        parts.append(snap.snaptime.strftime("%Y-%m-%d %H:%M:%S UTC"))
    if snap.vmstate:
        parts.append("with RAM")
    if snap.description:
        parts.append(f"- {snap.description}")
    return "  ".join(parts)


def _what_next(number: int) -> None:
    render.step(number, "What to try next")
    for text in (
        "autovibe cluster status        your own simulated cluster (kept between runs)",
        "autovibe doctor                check a cluster: reachability, TLS, auth, clocks, privileges",
        "autovibe sim serve --tls       serve the simulator over HTTPS for any PVE client",
        "autovibe project create alpha  then: autovibe machine create --profile claude_code "
        "--project alpha --count 5",
        "autovibe checkpoint create claude-code-1 before-upgrade   then: autovibe checkpoint list "
        "claude-code-1",
        "autovibe checkpoint policy set gfs --keep-last 3 --keep-daily 7   then: policy attach gfs "
        "--project alpha; checkpoint prune --project alpha --dry-run",
        "autovibe quota set alpha --cpu-hours 100   then: autovibe hub tick (from cron); autovibe usage "
        "--by machine; autovibe quota show",
        "autovibe limits set claude-code-1 --max-cpu 90 --idle-cpu 5 --idle-for 30m",
        "autovibe serve --port 8080     the hub: REST API (/docs), job workers, scheduler; then, with "
        "AUTOVIBE_TOKEN from `autovibe token create`: autovibe --hub http://127.0.0.1:8080 machine list",
        "",
        "then, with the API token and certificate that `sim serve --tls` prints:",
        "  from proxmoxer import ProxmoxAPI",
        '  pve = ProxmoxAPI("localhost", port=8006, user="root@pam", token_name="NAME",',
        '                   token_value="SECRET", verify_ssl="sim-tls/pve-ssl.pem")',
        "  print(pve.nodes.get())",
        "",
        "point autovibe at a real PVE with AUTOVIBE_PVE_URL=https://HOST:8006 and AUTOVIBE_PVE_TOKEN.",
    ):
        render.line(text)
