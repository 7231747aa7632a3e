"""The offline planner: deterministic rules, no model, no network.

It understands the common phrasings of every catalog action (see :mod:`autovibe.ai.plan`): counts,
sizes with units, names and vmids, projects, profiles, durations, checkpoint names, retention words,
quotas, network profiles and code generation, and requests of several steps ("spin up three claude
code boxes for alpha and checkpoint them"). Names are resolved against the :class:`PlanningContext`.

It never guesses: when a step lacks what it needs (which machines, how much bigger, which profile) the
whole plan is a ``clarification`` question with no actions. Text aimed at the assistant rather than at
the infrastructure ("ignore previous instructions", "SYSTEM:", "without approval") is cut out before
planning and noted in the assumptions; the policy gate, not the planner, decides what runs.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from autovibe.ai.plan import (
    DESTRUCTIVE,
    Action,
    CheckpointBranch,
    CheckpointCreate,
    CheckpointDelete,
    CheckpointRestore,
    CodegenAnsible,
    CodegenTerraform,
    InventoryQuery,
    MachineCreate,
    MachineDelete,
    MachinePower,
    MachineResize,
    NetworkApply,
    Plan,
    QuotaSet,
    RetentionApply,
    Selector,
    UsageQuery,
)
from autovibe.ai.planners.base import PlannerResult, PlanningContext

__all__ = ["INJECTION_NOTE", "OfflinePlanner", "plan_request"]

INJECTION_NOTE = "the request contains instructions aimed at the assistant; they were ignored"

_NUMBER_WORDS: dict[str, int] = {
    "a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
    "twenty": 20, "thirty": 30, "fifty": 50, "hundred": 100, "a couple of": 2, "a couple": 2,
    "couple of": 2, "a pair of": 2, "a dozen": 12, "dozen": 12,
}  # fmt: skip
_NUM = (
    r"(\d+|a couple of|a couple|couple of|a pair of|a dozen|dozen|an|a|single|one|two|three|four|five|six"
    r"|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|fifty|hundred)"
)
_VAGUE_COUNT = r"\b(a few|few|some|several|many|a bunch of|bunch of|lots of|a lot of)\s+"

# Explicit typo fixes first; then a fuzzy match of longer words against the vocabulary.
_TYPOS: dict[str, str] = {
    r"\bclaude\s*-?\s*code\b": "claude code", r"\bcluade\b": "claude", r"\bclaud\b": "claude",
    r"\bdel\b": "delete", r"\brm\b": "delete", r"\bsnap\b": "snapshot", r"\bdailies\b": "daily",
    r"\bweeklies\b": "weekly", r"\bmonthlies\b": "monthly", r"\bvms\b": "vms", r"\btf\b": "terraform",
    r"\bshut\s*down\b": "shutdown", r"\bpower\s+off\b": "shutdown", r"\bturn\s+off\b": "shutdown",
    r"\bpower\s+on\b": "start", r"\bturn\s+on\b": "start", r"\bboot\s+up\b": "start",
    r"\broll\s*back\b": "restore", r"\brevert\b": "restore",
}  # fmt: skip
_VOCABULARY: tuple[str, ...] = (
    "checkpoint", "checkpoints", "snapshot", "snapshots", "delete", "destroy", "remove", "restore",
    "reboot", "restart", "start", "shutdown", "terraform", "ansible", "resize", "create", "machine",
    "machines", "project", "memory", "cores", "retention", "branch", "quota", "network", "inventory",
    "usage", "generate", "provision", "launch", "playbook", "management", "access", "claude", "daily",
    "weekly", "monthly", "hourly", "yearly", "storage", "increase", "bigger", "prune", "boxes",
)  # fmt: skip
_KEEP_WORDS = frozenset(
    {
        "store",
        "stores",
        "state",
        "stuff",
        "things",
        "there",
        "where",
        "these",
        "those",
        "their",
        "after",
        "later",
        "latest",
        "every",
        "everything",
        "started",
        "starting",
        "stopped",
        "running",
        "deleted",
        "restored",
        "created",
        "people",
        "please",
        "about",
        "above",
        "hours",
        "using",
        "limit",
        "named",
        "called",
        "bring",
        "stand",
        "again",
        "clean",
        "order",
        "other",
        "spare",
    }
)

# Text aimed at the assistant. Phrases are cut out; takeovers cut the rest of their sentence.
_INJECTION_PHRASES = re.compile(
    r",?\s*\b(?:without (?:any |an? )?(?:approval|confirmation|confirming|asking|review)"
    r"|(?:no|skip(?:ping)?(?: the)?) (?:approval|confirmation)s?(?: (?:is |are )?(?:needed|required))?"
    r"|(?:it is |it's )?(?:pre-?approved|auto-?approved?)"
    r"|bypass(?:ing)? (?:the )?(?:gate|policy|approval|rules)"
    r"|approval is not (?:needed|required))\b"
)
_INJECTION_TAKEOVERS = re.compile(
    r"\bignore (?:all |any |the |your )*(?:previous|prior|above|earlier|former|safety)?\s*"
    r"(?:instructions|rules|prompts?|polic(?:y|ies)|guidelines)"
    r"|\b(?:system|assistant|developer)\s*:|\[(?:system|inst)\]|<\s*/?\s*system\s*>"
    r"|\byou are now\b|\bdisregard\b|\bforget (?:all |your |the )*(?:previous |prior )?(?:instructions|rules)"
    r"|\bnew instructions\b|\bact as\b|\bpretend\b|\bdeveloper mode\b|\bjailbreak\b"
    r"|\boverride (?:the |your )?(?:policy|rules|gate|instructions)"
)

_STEP_VERBS = (
    r"start|stop|shutdown|reboot|restart|delete|remove|destroy|resize|checkpoint|snapshot|restore|branch"
    r"|fork|apply|put|move|attach|limit|cap|set|generate|export|write|keep|prune|show|list|spin|create"
    r"|launch|provision|deploy|give|boot|tear|bump|increase|upgrade|grow|take|make|switch|nuke|also"
)
_STEP_SPLIT = re.compile(
    rf"\s*(?:[.;!?]+(?:\s+|$)|\n+|,?\s+and then\s+|,?\s+then\s+|,?\s+and\s+(?=(?:{_STEP_VERBS})\b)"
    rf"|,\s*(?=(?:{_STEP_VERBS})\b))"
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")

_PRONOUN = re.compile(r"\b(them|it|they|those|these|the new ones|the new machines|the new boxes|each)\b")
_ALL = re.compile(r"\b(all|every|everything|each|whole)\b")
_MACHINE_NOUN = (
    r"(?:boxes|box|machines|machine|vms|vm|instances|instance|sandboxes|sandbox|servers|server|guests|agents)"
)
_SIZE = re.compile(
    r"(?<![\w.-])(\d+(?:\.\d+)?)\s*(tb|tib|terabytes?|gb|gib|gigs?|gigabytes?|g|mb|mib|megabytes?|m)(?![\w-])"
)
_MEMORY_AFTER = re.compile(r"\s*(?:of\s+)?(?:ram|memory|mem)\b")
_DISK_AFTER = re.compile(r"\s*(?:of\s+)?(?:root\s+)?(?:disk|storage|drive|hdd|ssd)\b")
_OF_MACHINE = r"(?:\s+(?:of|for|on)\s+[\w-]+)?"
_MEMORY_BEFORE = re.compile(rf"\b(?:ram|memory|mem){_OF_MACHINE}\s*(?:to|of|=|:|at)?\s*$")
_DISK_BEFORE = re.compile(rf"\b(?:disk|storage|drive)\s*(?:size)?{_OF_MACHINE}\s*(?:to|of|=|:|at)?\s*$")
_CORES = re.compile(rf"\b{_NUM}\s*(?:v?cpus?|v?cores?|processors?)\b(?!\s*-?\s*hours)")
_CORES_BEFORE = re.compile(r"\b(?:v?cpus?|cores?)\s*(?:to|=|:|of)\s*(\d+)\b")
_DURATION_UNITS = r"(minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w)"
_TTL = re.compile(
    rf"\b(?:for(?: the next| another)?|ttl(?: of)?|expir(?:e|es|ing) (?:after|in)|lifetime of|lasting)\s+"
    rf"{_NUM}\s*{_DURATION_UNITS}\b"
)
_PROJECT_WORD = re.compile(r"\bproject\s+([a-z][\w-]*)|\b([a-z][\w-]*)\s+project\b")
_VMIDS = re.compile(
    r"\b(?:vm|vmid|vms|vmids|guest|guests|id|ids)\s*#?\s*((?:\d{3,9}(?:\s*(?:,|and|&)\s*)?)+)"
)
_NODE = re.compile(r"\bon\s+(?:node\s+)?(pve[\w-]*|node[\w-]*)\b|\bnode\s+([a-z][\w-]*)")
_NAMED = re.compile(r"\b(?:named|called|name it|name them|with (?:the )?name)\s+[\"']?([a-z][a-z0-9-]*)")
_CHECKPOINT_NAMED = re.compile(
    r"\b(?:as|named|called|labell?ed|tagged|with (?:the )?name)\s+[\"']?([a-z0-9][\w.-]*)"
)
_NOT_A_NAME = frozenset(
    {
        "the",
        "a",
        "an",
        "of",
        "on",
        "for",
        "from",
        "to",
        "at",
        "it",
        "them",
        "its",
        "their",
        "this",
        "that",
        "all",
        "every",
        "each",
        "in",
        "with",
        "as",
        "named",
        "called",
        "checkpoint",
        "snapshot",
        "checkpoints",
        "snapshots",
        "old",
        "latest",
        "last",
        "first",
        "previous",
        "my",
        "our",
        "and",
        "copies",
        "copy",
        "branches",
        "branch",
        "clones",
        "clone",
        "machine",
        "machines",
        "vm",
        "vms",
        "new",
        "before",
    }
)


class _Clarify(Exception):
    """A step cannot be planned without asking; the message is the question."""


@dataclass
class _State:
    context: PlanningContext
    assumptions: list[str] = field(default_factory=list)
    previous: Selector | None = None
    summaries: list[str] = field(default_factory=list)

    def assume(self, text: str) -> None:
        if text not in self.assumptions:
            self.assumptions.append(text)


class OfflinePlanner:
    """Rule-based planner: the same request and context always give the same plan."""

    name = "offline"

    async def plan(self, request: str, context: PlanningContext) -> PlannerResult:
        return PlannerResult(plan=plan_request(request, context), planner=self.name)


def plan_request(request: str, context: PlanningContext) -> Plan:
    """Plan ``request`` against ``context`` (the pure function behind :class:`OfflinePlanner`)."""
    state = _State(context)
    text, injected = _strip_injections(_normalize(request, context))
    if injected:
        state.assume(INJECTION_NOTE)
    steps = [step.strip(" ,") for step in _STEP_SPLIT.split(text)]
    steps = [step for step in steps if re.search(r"[a-z0-9]", step) and not _is_filler(step)]
    if not steps:
        return Plan(
            clarification="What should I do? Name the machines (or project) and the action, e.g. "
            "'start web-1' or 'spin up two claude code boxes for alpha'.",
            assumptions=state.assumptions,
        )
    actions: list[Action] = []
    try:
        for step in steps:
            actions.extend(_plan_step(step, state))
    except _Clarify as question:
        return Plan(clarification=str(question), assumptions=state.assumptions)
    return Plan(actions=actions, explanation="; ".join(state.summaries), assumptions=state.assumptions)


# --- normalisation -------------------------------------------------------------------------------------


def _variants(name: str) -> list[str]:
    return sorted({name, name.replace("_", " "), name.replace("_", "-"), name.replace("_", "")}, key=len)[
        ::-1
    ]


def _normalize(request: str, context: PlanningContext) -> str:
    text = request.lower().replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub(r"[ \t]+", " ", text).strip()
    protected = {m.name.lower() for m in context.machines} | set(context.projects)
    protected |= set(context.profiles) | set(context.network_profiles)

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        if len(word) < 5 or word in _VOCABULARY or word in _KEEP_WORDS or word in protected:
            return word
        close = difflib.get_close_matches(word, _VOCABULARY, n=1, cutoff=0.8)
        return close[0] if close else word

    text = re.sub(r"(?<![\w-])[a-z]+(?![\w-])", fix, text)
    for pattern, replacement in _TYPOS.items():
        text = re.sub(pattern, replacement, text)
    # Profile and network-profile phrases become their identifiers ("claude code" -> claude_code).
    for name in (*context.profiles, *context.network_profiles):
        for variant in _variants(name):
            text = re.sub(rf"(?<![\w-]){re.escape(variant)}(?![\w-])", name, text)
    return text


def _strip_injections(text: str) -> tuple[str, bool]:
    injected = False
    kept: list[str] = []
    for sentence in _SENTENCE_SPLIT.split(text):
        sentence, count = _INJECTION_PHRASES.subn("", sentence)
        injected = injected or count > 0
        match = _INJECTION_TAKEOVERS.search(sentence)
        if match:
            injected = True
            sentence = sentence[: match.start()].rstrip(" ,:-")
            sentence = re.sub(r"\s*\b(?:and|but|then|so)$", "", sentence)
            if sentence and not re.search(r"[.;!?]$", sentence):
                sentence += "."
        if sentence.strip():
            kept.append(sentence)
    return " ".join(kept), injected


def _is_filler(step: str) -> bool:
    return bool(re.fullmatch(r"(?:please|thanks|thank you|ok|okay|now|asap|quickly|kindly|and|also)", step))


# --- shared parsing ------------------------------------------------------------------------------------


def _number(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBER_WORDS[word]


def _word(name: str) -> str:
    return rf"(?<![\w-]){re.escape(name)}(?![\w-])"


def _mentions(text: str, name: str) -> bool:
    return re.search(_word(name), text) is not None


def _project(step: str, state: _State, *, default: bool, required: bool, what: str) -> str | None:
    context = state.context
    found = [p for p in context.projects if _mentions(step, p)]
    if found:
        return found[0]
    for match in _PROJECT_WORD.finditer(step):
        named = match.group(1) or match.group(2)
        if named not in _NOT_A_NAME and named not in {"this", "that", "each", "which", "whole"}:
            known = ", ".join(context.projects) or "none"
            raise _Clarify(f"There is no project '{named}'. Which project did you mean (known: {known})?")
    if default and context.default_project:
        state.assume(f"project {context.default_project}: no project was named, so the default one is used")
        return context.default_project
    if required:
        known = ", ".join(context.projects) or "none yet"
        raise _Clarify(f"Which project should {what} be for? Known projects: {known}.")
    return None


def _profile(step: str, state: _State) -> str | None:
    for name in state.context.profiles:
        if re.search(rf"(?<![\w-]){re.escape(name)}(?:e?s)?(?![\w-])", step):
            return name
    return None


def _network_profile(step: str, state: _State) -> str | None:
    for name in state.context.network_profiles:
        if _mentions(step, name):
            return name
    return None


def _names(step: str, state: _State) -> tuple[str, ...]:
    found: list[tuple[int, str]] = []
    for machine in state.context.machines:
        match = re.search(_word(machine.name.lower()), step)
        if match:
            found.append((match.start(), machine.name))
    return tuple(name for _, name in sorted(found))


def _vmids(step: str) -> tuple[int, ...]:
    ids: list[int] = []
    for match in _VMIDS.finditer(step):
        ids.extend(int(n) for n in re.findall(r"\d+", match.group(1)))
    return tuple(dict.fromkeys(ids))


def _target(step: str, state: _State, kind: str, verb: str) -> Selector:
    names = _names(step, state)
    vmids = _vmids(step)
    if names or vmids:
        return Selector(names=names, vmids=vmids)
    if _PRONOUN.search(step) and state.previous is not None:
        return state.previous
    profile = _profile(step, state)
    destructive = kind in DESTRUCTIVE or kind == "network.apply"
    project = _project(step, state, default=False, required=False, what="this")
    if project is None and (profile or _ALL.search(step)) and not destructive:
        project = _project(step, state, default=True, required=False, what="this")
    if project is not None and (profile or _ALL.search(step) or re.search(_MACHINE_NOUN, step)):
        return Selector(project=project, profile=profile)
    if project is not None and re.search(rf"\b(?:in|of|for)\s+(?:project\s+)?{re.escape(project)}\b", step):
        return Selector(project=project, profile=profile)
    examples = ", ".join(m.name for m in state.context.machines[:2]) or "web-1"
    raise _Clarify(f"Which machines should I {verb}? Name them (e.g. {examples}), give vmids, or a project.")


def _sizes(step: str) -> tuple[int | None, int | None, int | None]:
    cores: int | None = None
    memory: int | None = None
    disk: int | None = None
    for match in _SIZE.finditer(step):
        amount = float(match.group(1))
        unit = match.group(2)[0]
        after = step[match.end() : match.end() + 30]
        before = step[max(0, match.start() - 40) : match.start()]
        if _MEMORY_AFTER.match(after) or _MEMORY_BEFORE.search(before):
            target = "memory"
        elif _DISK_AFTER.match(after) or _DISK_BEFORE.search(before):
            target = "disk"
        elif unit == "m":
            target = "memory"
        else:
            continue
        if target == "memory":
            memory = round(amount * {"t": 1024 * 1024, "g": 1024, "m": 1}[unit])
        else:
            disk = max(1, round(amount * {"t": 1024, "g": 1, "m": 1 / 1024}[unit]))
    match_cores = _CORES.search(step) or _CORES_BEFORE.search(step)
    if match_cores:
        cores = _number(match_cores.group(1))
    return cores, memory, disk


def _duration(count: str, unit: str) -> str:
    amount = _number(count)
    letter = unit[0]
    return f"{amount}{'m' if letter == 'm' else letter}"


def _remember(state: _State, selector: Selector) -> None:
    state.previous = selector


def _describe(selector: Selector) -> str:
    parts = [*selector.names, *(f"vm {v}" for v in selector.vmids)]
    if selector.project:
        parts.append(
            f"{selector.profile + ' machines' if selector.profile else 'all machines'} of {selector.project}"
        )
    return ", ".join(parts)


# --- steps ---------------------------------------------------------------------------------------------


def _plan_step(step: str, state: _State) -> list[Action]:
    if re.search(r"\b(terraform|ansible|playbook)\b", step):
        return [_codegen(step, state)]
    if re.search(r"\b(quota|limit|cap|budget)\b", step) and not re.search(r"\bcapacity\b", step):
        return [_quota(step, state)]
    if re.search(r"\b(clean ?up|tidy|housekeeping)\b", step) and not re.search(r"\b(keep|last \d)", step):
        raise _Clarify(
            "What should I clean up? For checkpoints, say what to keep (e.g. 'keep the last 5 and 7 daily "
            "on web-1'); for machines, name the ones to delete."
        )
    if re.search(r"\b(retention|prune|keep|clean ?up|tidy|thin out)\b", step):
        return [_retention(step, state)]
    if re.search(r"\b(checkpoints?|snapshots?|restore|branch|fork)\b", step):
        return [_checkpoint(step, state)]
    if re.search(r"\b(usage|used|use|using|consum\w*|spent|spend|cost|costs|bill\w*|cpu hours)\b", step):
        return [_usage(step, state)]
    if re.search(
        r"\b(list|show|inventory|what|which|what's|whats|how many|do i have|status|running)\b", step
    ) and not re.search(r"\b(start|stop|shutdown|delete|destroy|reboot|restart|resize|create)\b", step):
        project = _project(step, state, default=False, required=False, what="this")
        state.summaries.append(f"list the machines{' of ' + project if project else ''}")
        return [InventoryQuery(project=project)]
    if re.search(
        r"\b(spin|create|launch|provision|deploy|stand up|bring up|set up|new|need|want)\b"
        r"|\b(give|get|make) me\b|^(?:make|build|add)\b",
        step,
    ) and not re.search(r"\b(bigger|larger|smaller|more)\b", step):
        return [_create(step, state)]
    network = _network_profile(step, state)
    if network or re.search(r"\bnetwork(?: profile)?\b|\bfirewall\b", step):
        return [_network(step, state, network)]
    if re.search(
        r"\b(resize|bigger|larger|smaller|more|bump|increase|upgrade|grow|scale|give|double|expand)\b", step
    ):
        return [_resize(step, state)]
    if re.search(r"\b(delete|destroy|remove|tear down|nuke|get rid of|decommission|trash|wipe)\b", step):
        target = _target(step, state, "machine.delete", "delete")
        _remember(state, target)
        state.summaries.append(f"delete {_describe(target)}")
        return [MachineDelete(target=target)]
    for kind, pattern, verb in (
        ("machine.reboot", r"\b(reboot|restart|bounce|power ?cycle)\b", "reboot"),
        ("machine.stop", r"\b(stop|shutdown|halt|suspend|pause)\b", "stop"),
        ("machine.start", r"\b(start|boot|wake|resume|bring back)\b", "start"),
    ):
        if re.search(pattern, step):
            target = _target(step, state, kind, verb)
            _remember(state, target)
            state.summaries.append(f"{verb} {_describe(target)}")
            return [MachinePower(kind=kind, target=target)]
    raise _Clarify(
        f"I could not tell what to do with '{step}'. Which action (create, start, stop, reboot, delete,"
        " resize, checkpoint, restore...) and on which machines or project?"
    )


def _codegen(step: str, state: _State) -> Action:
    project = _project(step, state, default=True, required=True, what="the generated code")
    assert project is not None
    if re.search(r"\bterraform\b", step):
        state.summaries.append(f"generate Terraform for {project}")
        return CodegenTerraform(project=project)
    state.summaries.append(f"generate Ansible for {project}")
    return CodegenAnsible(project=project)


_RESOURCES: tuple[tuple[str, str], ...] = (
    (r"\b(?:memory|ram|mem)\b", "memory_gib_hours"),
    (r"\b(?:cpu|core|vcpu)s?(?:[\s-]*hours?)?\b", "cpu_hours"),
    (r"\b(?:network|traffic|egress|bandwidth|transfer)\b", "network_gb"),
    (r"\b(?:storage|disk|space)\b", "storage_gb"),
)


def _quota(step: str, state: _State) -> Action:
    resource = next((name for pattern, name in _RESOURCES if re.search(pattern, step)), None)
    if resource is None:
        raise _Clarify(
            "Which resource should the quota limit: cpu hours, memory GiB-hours, network GB or storage GB?"
        )
    found = re.search(r"(?<![\w.-])(\d+(?:\.\d+)?)\s*(k|tb|tib|gb|gib)?(?![\w-])", step)
    if found is None:
        raise _Clarify(f"What limit should the {resource.replace('_', ' ')} quota have?")
    limit = float(found.group(1)) * {"k": 1000, "tb": 1000, "tib": 1024}.get(found.group(2) or "", 1)
    period = "month"
    if re.search(r"\b(day|daily|per day|a day)\b", step):
        period = "day"
    elif re.search(r"\b(week|weekly)\b", step):
        period = "week"
    project = _project(step, state, default=True, required=True, what="the quota")
    assert project is not None
    state.summaries.append(f"limit {project} to {limit:g} {resource} per {period}")
    return QuotaSet(project=project, resource=resource, limit=limit, period=period)


def _retention(step: str, state: _State) -> Action:
    policy: dict[str, int | str] = {}
    rest = step
    within = re.search(
        rf"\b(?:within|(?:everything |all )?from the (?:last|past)|newer than)\s+"
        rf"{_NUM}\s*{_DURATION_UNITS}\b",
        rest,
    )
    if within:
        policy["within"] = _duration(within.group(1), within.group(2))
        rest = rest[: within.start()] + rest[within.end() :]
    last = re.search(rf"\b(?:last|latest|newest|most recent)\s+{_NUM}\b", rest) or re.search(
        rf"\b{_NUM}\s+(?:most recent|latest|newest)\b", rest
    )
    if last:
        policy["last"] = _number(last.group(1))
    for word in ("hourly", "daily", "weekly", "monthly", "yearly"):
        found = re.search(rf"\b{_NUM}\s+{word}\b", rest) or re.search(rf"\b{word}\s+(\d+)\b", rest)
        if found:
            policy[word] = _number(found.group(1))
    if not policy:
        raise _Clarify("Which checkpoints should I keep? For example 'keep the last 5 and 7 daily'.")
    target = _target(step, state, "retention.apply", "apply the retention policy to")
    _remember(state, target)
    state.summaries.append(f"apply retention {policy} to {_describe(target)}")
    return RetentionApply(target=target, policy=policy)


def _checkpoint_name(step: str, state: _State, *, prefer: str = "") -> str | None:
    machines = {m.name.lower() for m in state.context.machines} | set(state.context.projects)

    def ok(name: str) -> bool:
        return name not in _NOT_A_NAME and name not in machines and not name.isdigit()

    patterns = [
        r"\b(?:checkpoint|snapshot)\s+(?:named\s+|called\s+)?[\"']?([a-z0-9][\w.-]*)",
        r"[\"']?([a-z0-9][\w.-]*)[\"']?\s+(?:checkpoint|snapshot)\b",
        r"\b(?:named|called)\s+[\"']?([a-z0-9][\w.-]*)",
    ]
    if prefer:
        patterns.append(rf"\b(?:{prefer})\s+(?:the\s+)?(?:checkpoint\s+|snapshot\s+)?[\"']?([a-z0-9][\w.-]*)")
    for pattern in patterns:
        for match in re.finditer(pattern, step):
            if ok(match.group(1)):
                return match.group(1).rstrip(".")
    return None


def _checkpoint(step: str, state: _State) -> Action:
    if re.search(r"\brestore\b", step):
        name = _checkpoint_name(step, state, prefer="to")
        if name is None:
            raise _Clarify(
                "Which checkpoint should I restore? Name it, e.g. 'restore web-1 to before-upgrade'."
            )
        target = _target(step, state, "checkpoint.restore", "restore")
        _remember(state, target)
        state.summaries.append(f"restore {_describe(target)} to {name}")
        return CheckpointRestore(target=target, checkpoint=name)
    if re.search(r"\b(branch|fork)\b", step):
        new_name = _NAMED.search(step) or re.search(r"\b(?:as|into)\s+[\"']?([a-z][a-z0-9-]*)", step)
        base = re.sub(r"\b(?:named|called|as|into)\s+[\"']?[a-z][a-z0-9-]*|\b(?:branch|fork)\w*\b", " ", step)
        name = _checkpoint_name(base, state, prefer="from|at|of")
        if name is None:
            raise _Clarify(
                "Which checkpoint should the branch start from, e.g. 'branch web-1 from clean as exp'?"
            )
        if new_name is None or new_name.group(1) in _NOT_A_NAME:
            raise _Clarify(f"What should the machines branched from {name} be called?")
        count_match = re.search(rf"\b{_NUM}\s+(?:copies|copy|branches|clones|forks|machines|times)\b", step)
        count = _number(count_match.group(1)) if count_match else 1
        target = _target(base, state, "checkpoint.branch", "branch")
        _remember(state, target)
        state.summaries.append(f"branch {_describe(target)} at {name} into {new_name.group(1)}")
        return CheckpointBranch(target=target, checkpoint=name, new_name=new_name.group(1), count=count)
    if re.search(r"\b(delete|remove|destroy|drop|discard)\b", step):
        name = _checkpoint_name(step, state)
        if name is None:
            raise _Clarify(
                "Which checkpoint should I delete? Name it, e.g. 'delete checkpoint old on web-1'."
            )
        target = _target(step, state, "checkpoint.delete", "delete the checkpoint of")
        _remember(state, target)
        state.summaries.append(f"delete checkpoint {name} of {_describe(target)}")
        return CheckpointDelete(target=target, checkpoint=name)
    named = _CHECKPOINT_NAMED.search(step)
    name = named.group(1).rstrip(".") if named and named.group(1) not in _NOT_A_NAME else None
    ram: bool | None = None
    if re.search(r"\b(without|no|excluding) (?:the )?(ram|memory)\b|\bdisk[ -]only\b", step):
        ram = False
    elif re.search(r"\b(with|including|plus) (?:the )?(ram|memory)\b", step):
        ram = True
    target = _target(step, state, "checkpoint.create", "checkpoint")
    _remember(state, target)
    state.summaries.append(f"checkpoint {_describe(target)}{' as ' + name if name else ''}")
    return CheckpointCreate(target=target, name=name, ram=ram)


def _usage(step: str, state: _State) -> Action:
    project = _project(step, state, default=False, required=False, what="this")
    since: str | None = None
    found = re.search(rf"\b(?:last|past|previous)\s+{_NUM}\s*{_DURATION_UNITS}\b", step)
    date = re.search(r"\b(?:since|from)\s+(\d{4}-\d{2}-\d{2})\b", step)
    if found:
        since = _duration(found.group(1), found.group(2))
    elif date:
        since = date.group(1)
    elif re.search(r"\b(?:this|last|past|previous) week\b", step):
        since = "7d"
    elif re.search(r"\b(?:this|last|past|previous) month\b", step):
        since = "30d"
    elif re.search(r"\btoday\b|\b(?:last|past) day\b", step):
        since = "1d"
    by = (
        "machine"
        if re.search(r"\b(?:per|by|each|every) (?:machine|vm|box)\b|\bper-machine\b", step)
        else "project"
    )
    state.summaries.append(f"report usage{' of ' + project if project else ''}")
    return UsageQuery(project=project, since=since, by=by)


def _create(step: str, state: _State) -> Action:
    if re.search(rf"{_VAGUE_COUNT}", step):
        raise _Clarify("How many machines should I create?")
    profile = _profile(step, state)
    if profile is None:
        known = ", ".join(state.context.profiles) or "none"
        raise _Clarify(f"Which profile should the new machines use? Known profiles: {known}.")
    noun = rf"(?:{re.escape(profile)}(?:e?s)?(?![\w-])|{_MACHINE_NOUN}\b)"
    count_match = re.search(rf"\b{_NUM}\s+(?:new\s+|more\s+|fresh\s+|extra\s+)?{noun}", step)
    count = _number(count_match.group(1)) if count_match else 1
    project = _project(step, state, default=True, required=True, what="the new machines")
    assert project is not None
    named = _NAMED.search(step)
    name = named.group(1) if named else None
    cores, memory, disk = _sizes(step)
    ttl_match = _TTL.search(step)
    ttl = _duration(ttl_match.group(1), ttl_match.group(2)) if ttl_match else None
    node_match = _NODE.search(step)
    node = (node_match.group(1) or node_match.group(2)) if node_match else None
    start = not re.search(r"\b(don't|do not|without) start|\b(stopped|powered off|not started)\b", step)
    base = name or profile.replace("_", "-")
    created = (base,) if count == 1 else tuple(f"{base}-{i}" for i in range(1, count + 1))
    _remember(state, Selector(names=created))
    state.summaries.append(f"create {count} {profile} machine(s) in {project}")
    return MachineCreate(
        profile=profile,
        project=project,
        count=count,
        name=name,
        node=node,
        cores=cores,
        memory_mib=memory,
        disk_gib=disk,
        network_profile=_network_profile(step, state),
        ttl=ttl,
        start=start,
    )


def _network(step: str, state: _State, network: str | None) -> Action:
    if network is None:
        known = ", ".join(state.context.network_profiles) or "none"
        raise _Clarify(f"Which network profile should I apply? Known: {known}.")
    target = _target(step.replace(network, " "), state, "network.apply", f"apply {network} to")
    _remember(state, target)
    state.summaries.append(f"apply network profile {network} to {_describe(target)}")
    return NetworkApply(target=target, profile=network)


def _resize(step: str, state: _State) -> Action:
    cores, memory, disk = _sizes(step)
    target = _target(step, state, "machine.resize", "resize")
    if cores is None and memory is None and disk is None:
        raise _Clarify(
            f"How big should {_describe(target) or 'it'} be? Give the new cores, memory or disk, e.g. "
            "'4 cores and 16 GB ram'."
        )
    _remember(state, target)
    state.summaries.append(f"resize {_describe(target)}")
    return MachineResize(target=target, cores=cores, memory_mib=memory, disk_gib=disk)
