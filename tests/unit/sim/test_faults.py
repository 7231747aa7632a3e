"""Fault-injection rules: matching, globs, seeded probability, ``times``, and the file format."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autovibe.sim.faults import FaultPlan, RequestFault, TaskFault, load_fault_file

CLONE = "/nodes/pve1/qemu/100/clone"


def fired(plan: FaultPlan, n: int, method: str = "POST", path: str = CLONE) -> list[bool]:
    return [plan.match_request(method, path) is not None for _ in range(n)]


# ---- matching ------------------------------------------------------------------------------------------


def test_an_empty_plan_injects_nothing():
    plan = FaultPlan()
    assert plan.is_empty
    assert plan.match_request("GET", "/version") is None
    assert plan.task_failure("qmclone") is None


@pytest.mark.parametrize(
    ("rule_method", "rule_path", "method", "path", "expected"),
    [
        ("*", "*", "GET", "/version", True),
        ("POST", "/nodes/*/qemu/*/clone", "POST", CLONE, True),
        ("post", "/nodes/*/qemu/*/clone", "POST", CLONE, True),
        ("POST", "/nodes/*/qemu/*/clone", "GET", CLONE, False),
        ("*", "/nodes/*/qemu/*/config", "GET", "/nodes/pve2/qemu/101/config", True),
        ("*", "/nodes/*/qemu/*/config", "GET", "/nodes/pve2/qemu/101/pending", False),
        ("*", "/nodes/pve1/*", "GET", "/nodes/pve2/qemu", False),
        ("*", "/nodes/pve?/qemu", "GET", "/nodes/pve3/qemu", True),
        (
            "*",
            "/nodes/*/tasks/*",
            "GET",
            "/nodes/pve1/tasks/UPID:pve1:1:2:3:qmclone:100:root@pam!t:/status",
            True,
        ),
        ("*", "/Nodes/*", "GET", "/nodes/pve1", False),
    ],
)
def test_method_and_path_globs(rule_method, rule_path, method, path, expected):
    plan = FaultPlan([RequestFault(method=rule_method, path=rule_path, kind="http_500")])
    assert (plan.match_request(method, path) is not None) is expected


def test_the_api_prefix_is_optional_in_the_path():
    plan = FaultPlan([RequestFault(path="/version", kind="drop")])
    assert plan.match_request("GET", "/api2/json/version") is not None


def test_the_first_rule_that_fires_wins():
    never = RequestFault(path="/version", kind="http_500", probability=0.0)
    once = RequestFault(path="/version", kind="http_503", times=1)
    always = RequestFault(path="*", kind="latency", latency_s=0.5)
    plan = FaultPlan([never, once, always])
    assert plan.match_request("GET", "/version") is once
    assert plan.match_request("GET", "/version") is always


def test_times_limits_hits_and_only_hits_count():
    plan = FaultPlan([RequestFault(path=CLONE, kind="http_500", times=2)])
    assert plan.match_request("GET", "/version") is None  # not a match: nothing used up
    assert fired(plan, 4) == [True, True, False, False]
    assert plan.to_dict()["requests"][0]["times"] == 0


def test_times_counts_only_when_the_probability_fires():
    plan = FaultPlan([RequestFault(path=CLONE, kind="drop", probability=0.5, times=3)], seed=1)
    assert sum(fired(plan, 200)) == 3


# ---- determinism ---------------------------------------------------------------------------------------


@given(seed=st.integers(min_value=0, max_value=2**32), probability=st.floats(min_value=0.05, max_value=0.95))
def test_the_same_seed_gives_the_same_faults(seed, probability):
    def run():
        plan = FaultPlan([RequestFault(path="*", kind="http_503", probability=probability)], seed=seed)
        return fired(plan, 50)

    assert run() == run()


def test_different_seeds_give_different_sequences_at_about_the_rate():
    def run(seed):
        return fired(FaultPlan([RequestFault(kind="http_500", probability=0.3)], seed=seed), 1000)

    first, second = run(1), run(2)
    assert first != second
    assert 200 < sum(first) < 400


def test_request_traffic_does_not_shift_task_failures():
    rules = {
        "requests": [{"kind": "http_500", "probability": 0.5}],
        "tasks": [{"task_type": "*", "failure_rate": 0.5}],
    }
    quiet, busy = FaultPlan.from_dict(rules), FaultPlan.from_dict(rules)
    fired(busy, 37)
    assert [quiet.task_failure("qmstart") for _ in range(40)] == [
        busy.task_failure("qmstart") for _ in range(40)
    ]


# ---- task faults ---------------------------------------------------------------------------------------


def test_task_failure_messages_read_like_pve():
    plan = FaultPlan(tasks=[TaskFault(task_type="qm*", failure_rate=1.0)])
    assert plan.task_failure("qmclone") == "clone failed: simulated storage error"
    assert plan.task_failure("qmsnapshot") == "snapshot failed: simulated storage error"
    assert plan.task_failure("vzdump") is None


def test_a_custom_task_message_and_rule_order():
    plan = FaultPlan(
        tasks=[
            TaskFault(task_type="qmclone", failure_rate=0.0, message="never"),
            TaskFault(task_type="*", failure_rate=1.0, message="storage 'local-lvm' is full"),
        ]
    )
    assert plan.task_failure("qmclone") == "storage 'local-lvm' is full"


def test_task_failure_rate_is_seeded():
    def run(seed):
        plan = FaultPlan(tasks=[TaskFault(task_type="qmclone", failure_rate=0.25)], seed=seed)
        return [plan.task_failure("qmclone") is not None for _ in range(400)]

    assert run(5) == run(5)
    assert 60 < sum(run(5)) < 140


# ---- dict round trip and files ----------------------------------------------------------------------


def test_to_dict_round_trips_and_keeps_what_is_left():
    plan = FaultPlan(
        [
            RequestFault(
                method="put", path="/nodes/*/qemu/*/config", kind="http_500", message="got timeout", times=2
            )
        ],
        [TaskFault(task_type="qmclone", failure_rate=0.1)],
        seed=9,
    )
    plan.match_request("PUT", "/nodes/pve1/qemu/100/config")
    data = json.loads(json.dumps(plan.to_dict()))
    assert data == {
        "seed": 9,
        "requests": [
            {
                "method": "PUT",
                "path": "/nodes/*/qemu/*/config",
                "kind": "http_500",
                "probability": 1.0,
                "latency_s": 0.0,
                "message": "got timeout",
                "times": 1,
            }
        ],
        "tasks": [{"task_type": "qmclone", "failure_rate": 0.1}],
    }
    assert FaultPlan.from_dict(data).to_dict() == data


TOML_PLAN = """
seed = 42

[[requests]]
method = "POST"
path = "/nodes/*/qemu/*/clone"
kind = "http_503"
probability = 0.25

[[requests]]
path = "/cluster/resources"
kind = "latency"
latency_s = 2

[[tasks]]
task_type = "qmsnapshot"
failure_rate = 0.1
message = "snapshot feature is not available"
"""


def test_load_toml(tmp_path):
    path = tmp_path / "faults.toml"
    path.write_text(TOML_PLAN)
    plan = load_fault_file(path)
    assert plan.seed == 42
    assert [r.kind for r in plan.requests] == ["http_503", "latency"]
    assert plan.requests[1].latency_s == 2
    assert plan.tasks == (TaskFault("qmsnapshot", 0.1, "snapshot feature is not available"),)


def test_load_json(tmp_path):
    path = tmp_path / "faults.JSON"
    path.write_text(json.dumps({"requests": [{"path": "/version", "kind": "drop", "times": 1}]}))
    plan = load_fault_file(path)
    assert plan.seed == 0
    assert plan.match_request("GET", "/version").kind == "drop"
    assert plan.match_request("GET", "/version") is None


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (
            '{"requests": [{"kind": "boom"}]}',
            r"requests\[0\]\.kind: must be one of http_500, http_503, drop, latency",
        ),
        ('{"requests": [{}, {"method": "PATCH"}]}', r"requests\[1\]\.method: must be one of"),
        ('{"requests": [{"path": "nodes"}]}', r"requests\[0\]\.path: must start with '/'"),
        ('{"requests": [{"probability": 1.5}]}', r"requests\[0\]\.probability: must be between 0 and 1"),
        ('{"requests": [{"probability": "high"}]}', r"requests\[0\]\.probability: must be a number"),
        ('{"requests": [{"kind": "latency"}]}', r"requests\[0\]\.latency_s: must be > 0 for kind 'latency'"),
        ('{"requests": [{"kind": "drop", "latency_s": 1}]}', r"requests\[0\]\.latency_s"),
        ('{"requests": [{"kind": "drop", "message": "x"}]}', r"requests\[0\]\.message: only used by"),
        ('{"requests": [{"times": -1}]}', r"requests\[0\]\.times: must be a whole number"),
        ('{"requests": [{"times": true}]}', r"requests\[0\]\.times"),
        ('{"requests": [{"pth": "/x"}]}', r"requests\[0\]\.pth: unknown field"),
        ('{"requests": {"kind": "drop"}}', r"requests: must be a list"),
        ('{"requests": ["drop"]}', r"requests\[0\]: must be an object"),
        ('{"tasks": [{"failure_rate": 0.5}]}', r"tasks\[0\]\.task_type: missing"),
        (
            '{"tasks": [{"task_type": "qmclone", "failure_rate": -0.1}]}',
            r"tasks\[0\]\.failure_rate: must be between",
        ),
        ('{"tasks": [{"task_type": "", "failure_rate": 0.1}]}', r"tasks\[0\]\.task_type: must not be empty"),
        ('{"seed": "x"}', r"seed: must be a whole number"),
        ('{"faults": []}', r"faults: unknown field"),
        ("[]", r"must be an object"),
        ('{"requests": [', r"Expecting value"),
    ],
)
def test_bad_files_name_the_field(tmp_path, content, error):
    path = tmp_path / "faults.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=error) as info:
        load_fault_file(path)
    assert str(info.value).startswith(str(path))


def test_bad_toml_and_unknown_extension(tmp_path):
    toml = tmp_path / "faults.toml"
    toml.write_text("[[requests]\nkind = 'drop'")
    with pytest.raises(ValueError, match=r"faults\.toml: "):
        load_fault_file(toml)
    yaml = tmp_path / "faults.yaml"
    yaml.write_text("requests: []")
    with pytest.raises(ValueError, match=r"unsupported extension '\.yaml'"):
        load_fault_file(yaml)


def test_rules_validate_when_built_directly():
    with pytest.raises(ValueError, match="kind: must be one of"):
        RequestFault(kind="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="failure_rate: must be a number"):
        TaskFault(task_type="qmclone", failure_rate=float("nan"))
