"""The deployment files say what deploy/README.md promises: non-root, read-only, probed, limited, secrets by
reference, and the settings they name are settings the hub really reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from autovibe.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "kubernetes"
UID = 10001


def _manifests() -> dict[str, dict[str, Any]]:
    """Every document of every manifest, by kind (each kind appears once)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in found, f"{doc['kind']} twice"
            found[doc["kind"]] = doc
    return found


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    return _manifests()


@pytest.fixture(scope="module")
def pod(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = manifests["Deployment"]["spec"]["template"]["spec"]
    return spec


def _hub(pod: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod["containers"]
    (container,) = containers
    return container


def _all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def test_every_manifest_is_namespace_less_and_labelled(manifests: dict[str, dict[str, Any]]) -> None:
    assert set(manifests) == {
        "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "Secret", "Kustomization",
    }  # fmt: skip
    for kind, doc in manifests.items():
        if kind == "Kustomization":
            continue
        assert "namespace" not in doc["metadata"], kind
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "autovibe-hub", kind


def test_deployment_runs_two_replicas_spread_over_nodes(manifests: dict[str, dict[str, Any]]) -> None:
    spec = manifests["Deployment"]["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    by_node = [
        c for c in spec["template"]["spec"]["topologySpreadConstraints"]
        if c["topologyKey"] == "kubernetes.io/hostname"
    ]  # fmt: skip
    assert by_node and by_node[0]["whenUnsatisfiable"] == "DoNotSchedule" and by_node[0]["maxSkew"] == 1
    assert by_node[0]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_pods_are_non_root_read_only_and_unprivileged(pod: dict[str, Any]) -> None:
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == UID and context["runAsGroup"] == UID
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    for container in _all_containers(pod):
        own = container["securityContext"]
        assert own["readOnlyRootFilesystem"] is True, container["name"]
        assert own["allowPrivilegeEscalation"] is False, container["name"]
        assert own["capabilities"]["drop"] == ["ALL"], container["name"]
        assert "add" not in own["capabilities"], container["name"]
        assert own.get("privileged", False) is False, container["name"]


def test_every_container_has_requests_and_limits(pod: dict[str, Any]) -> None:
    for container in _all_containers(pod):
        resources = container["resources"]
        for part in ("requests", "limits"):
            assert set(resources[part]) >= {"cpu", "memory"}, (container["name"], part)


def test_probes_point_at_healthz_and_readyz(pod: dict[str, Any]) -> None:
    hub = _hub(pod)
    (port,) = hub["ports"]
    assert port["containerPort"] == 8080
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert hub[probe]["httpGet"]["path"] == path, probe
        assert hub[probe]["httpGet"]["port"] in (port["name"], port["containerPort"]), probe
    assert hub["args"][0] == "serve"


def test_writable_places_are_volumes(pod: dict[str, Any]) -> None:
    hub = _hub(pod)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in hub["volumeMounts"]}
    for path in ("/tmp", "/var/lib/autovibe"):
        assert "emptyDir" in volumes[mounts[path]], path


def test_secrets_are_referenced_never_inline(
    pod: dict[str, Any], manifests: dict[str, dict[str, Any]]
) -> None:
    hub = _hub(pod)
    env = {e["name"]: e for e in hub["env"]}
    for name, key in (("AUTOVIBE_DATABASE_URL", "database-url"), ("AUTOVIBE_PVE_TOKEN", "pve-token")):
        assert "value" not in env[name], name
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "autovibe-hub", "key": key}
    # No other variable carries a secret-looking value, and the ConfigMap holds none either.
    secretish = re.compile(r"TOKEN$|PASSWORD|DATABASE_URL|API_KEY|SECRET")
    for name, entry in env.items():
        if "value" in entry:
            assert not secretish.search(name), name
    config = manifests["ConfigMap"]["data"]
    assert not [name for name in config if secretish.search(name)]
    assert all(isinstance(value, str) for value in config.values())
    assert hub["envFrom"] == [{"configMapRef": {"name": "autovibe-hub"}}]


def test_key_files_come_from_the_secret_as_private_files(pod: dict[str, Any]) -> None:
    hub = _hub(pod)
    env = {e["name"]: e.get("value") for e in hub["env"]}
    keys = {Path(env["AUTOVIBE_TOKEN_KEY_FILE"]), Path(env["AUTOVIBE_SECURITY__AUDIT_KEY_FILE"])}
    assert len({k.parent for k in keys}) == 1
    (key_dir,) = {k.parent for k in keys}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (key_mount,) = [m for m in hub["volumeMounts"] if m["mountPath"] == str(key_dir)]
    assert key_mount["readOnly"] is True
    assert volumes[key_mount["name"]]["emptyDir"]["medium"] == "Memory"
    # The init container copies them from the Secret volume with mode 0600 (the hub refuses wider).
    secret_volume = next(v for v in volumes.values() if "secret" in v)
    assert secret_volume["secret"]["secretName"] == "autovibe-hub"
    assert {item["key"] for item in secret_volume["secret"]["items"]} == {k.name for k in keys}
    (init,) = pod["initContainers"]
    script = " ".join(init["command"])
    for key in keys:
        assert re.search(rf"install -m 0600 \S+/{re.escape(key.name)} \S+/{re.escape(key.name)}", script)


def test_the_secret_example_holds_only_placeholders(manifests: dict[str, dict[str, Any]]) -> None:
    secret = manifests["Secret"]
    values = {**secret.get("stringData", {}), **secret.get("data", {})}
    assert set(values) == {"database-url", "pve-token", "token.key", "audit.key"}
    assert all("REPLACE_ME" in value for value in values.values())
    kustomization = manifests["Kustomization"]
    assert "secret.example.yaml" not in kustomization["resources"]
    assert {(K8S / name).is_file() for name in kustomization["resources"]} == {True}


def test_service_and_disruption_budget(manifests: dict[str, dict[str, Any]]) -> None:
    service = manifests["Service"]["spec"]
    assert service["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(8080, "http")]
    selector = manifests["Deployment"]["spec"]["selector"]["matchLabels"]
    assert service["selector"] == selector
    budget = manifests["PodDisruptionBudget"]
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == selector


def test_the_settings_named_are_real_settings(
    pod: dict[str, Any], manifests: dict[str, dict[str, Any]]
) -> None:
    """A typo in an AUTOVIBE_ name would be ignored silently by the hub: every name must be a setting."""
    names = [e["name"] for e in _hub(pod)["env"]] + list(manifests["ConfigMap"]["data"])
    names += re.findall(r"^#\s+(AUTOVIBE_\w+)=", (DEPLOY / "autovibe-hub.service").read_text(), re.M)
    assert len(names) > 10
    for name in names:
        path = name.removeprefix("AUTOVIBE_").lower().split("__")
        model: Any = Settings
        for part in path:
            assert part in model.model_fields, name
            model = model.model_fields[part].annotation


def _unit() -> dict[str, list[str]]:
    """The systemd unit's ``Key=value`` lines, by key (a key may repeat)."""
    lines: dict[str, list[str]] = {}
    for raw in (DEPLOY / "autovibe-hub.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        lines.setdefault(key, []).append(value)
    return lines


def test_the_systemd_unit_is_hardened_and_runs_serve() -> None:
    unit = _unit()
    (exec_start,) = unit["ExecStart"]
    assert exec_start.split()[0].endswith("/autovibe") and exec_start.split()[1] == "serve"
    assert unit["User"] == ["autovibe"] or unit.get("DynamicUser") == ["yes"]
    assert unit["StateDirectory"] == ["autovibe"]
    assert unit["EnvironmentFile"] == ["/etc/autovibe/hub.env"]
    assert unit["Restart"] == ["on-failure"]
    expected = {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "", "PrivateDevices": "yes", "RestrictSUIDSGID": "yes",
    }  # fmt: skip
    for key, value in expected.items():
        assert unit[key] == [value], key
    families = set(unit["RestrictAddressFamilies"][0].split())
    assert families == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "AUTOVIBE_DATA_DIR=/var/lib/autovibe" in unit["Environment"]


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined), as (INSTRUCTION, arguments)."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_image_runs_as_a_fixed_non_root_user() -> None:
    steps = _dockerfile()
    stages = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(stages) >= 2, "multi-stage"
    assert all(steps[i][1].startswith("python:3.11-slim") for i in stages)
    final = steps[stages[-1] :]
    args = {rest.split("=")[0]: rest.split("=")[1] for word, rest in final if word == "ARG" and "=" in rest}
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime stage switches user"
    user = users[-1].replace("${UID}", args.get("UID", "")).replace("${GID}", args.get("GID", ""))
    assert user.split(":")[0] == str(UID)
    # Nothing is installed once the user is switched (it could not be, and must not need to be).
    after_user = final[[w for w, _ in final].index("USER") :]
    assert not [rest for word, rest in after_user if word == "RUN"]
    build = steps[: stages[-1]]
    assert any(word == "RUN" and 'install ".[postgres]"' in rest for word, rest in build)


def test_the_image_suits_a_read_only_root_filesystem() -> None:
    steps = _dockerfile()
    env = " ".join(rest for word, rest in steps if word == "ENV")
    for setting in (
        "PYTHONDONTWRITEBYTECODE=1", "HOME=/var/lib/autovibe", "XDG_CONFIG_HOME=/var/lib/autovibe/",
        "AUTOVIBE_DATA_DIR=/var/lib/autovibe",
    ):  # fmt: skip
        assert setting in env, setting
    (volume,) = [rest for word, rest in steps if word == "VOLUME"]
    assert set(yaml.safe_load(volume)) == {"/var/lib/autovibe", "/tmp"}
    instructions = dict(steps)
    assert instructions["EXPOSE"] == "8080"
    assert yaml.safe_load(instructions["ENTRYPOINT"]) == ["autovibe"]
    assert yaml.safe_load(instructions["CMD"]) == ["serve", "--host", "0.0.0.0"]
    healthcheck = instructions["HEALTHCHECK"]
    assert "/healthz" in healthcheck and '"python"' in healthcheck and "curl" not in healthcheck
