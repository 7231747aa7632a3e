"""Checks for Terraform and Ansible code, generated or written by a model, before anyone runs it.

Each validator parses the text (python-hcl2, PyYAML), runs the tool's own check when it is on ``PATH``
(``terraform fmt -check``, ``ansible-playbook --syntax-check``) and applies autovibe's rules:

- ``tls-verify-disabled``: ``insecure = true``, ``validate_certs: false``, ``verify_ssl: false``, ``curl -k``;
- ``plaintext-secret``: a token, password or secret given as a literal (variables and vault are fine);
- ``any-to-any``: an ACCEPT firewall rule with no source, destination or port, or ACCEPT policies both ways;
- ``destructive-shell``: ``rm -rf /``, ``mkfs``, ``dd if=``, a fork bomb, ``curl ... | sh``, ``qm destroy``...

A :class:`Finding` names the rule, its severity, the 1-based line (0: the whole text) and what is wrong.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import hcl2
import yaml

__all__ = ["Finding", "validate_ansible", "validate_terraform"]

Severity = Literal["error", "warning"]
_TOOL_TIMEOUT: Final = 120.0


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}: {self.severity} [{self.rule}] {self.message}"


# ---- shared, line-based rules ------------------------------------------------------------------------
_TLS_OFF: Final = [
    (re.compile(r"\b\w*insecure\w*\s*[=:]\s*\"?(true|yes|on|1)\b", re.I), "TLS verification is disabled"),
    (
        re.compile(
            r"\b(validate_certs|verify_ssl|verify_tls|ssl_verify|tls_verify)\b\s*[=:]\s*[\"']?(false|no|off|0)\b",
            re.I,
        ),
        "certificate validation is turned off",
    ),
    (re.compile(r"\bverify\s*=\s*False\b"), "certificate validation is turned off"),
    (
        re.compile(r"\b(curl|wget)\b[^\n]*\s(-k|--insecure|--no-check-certificate)\b"),
        "a download skips TLS checks",
    ),
    (re.compile(r"\bPYTHONHTTPSVERIFY\s*[=:]\s*[\"']?0"), "Python's HTTPS verification is turned off"),
]  # fmt: skip

_DESTRUCTIVE: Final = [
    (
        re.compile(
            r"\brm\s+(-[a-zA-Z]*\s+)*-[a-zA-Z]*(r[a-zA-Z]*f|f[a-zA-Z]*r)[a-zA-Z]*\s+(--\s+)?"
            r"[\"']?(/|/\*|~|\$HOME)([\s\"';]|$)|--no-preserve-root"
        ),
        "recursive delete of / or home",
    ),
    (re.compile(r"\bmkfs(\.\w+)?\s+\S"), "formats a file system"),
    (re.compile(r"\bdd\b[^\n]*\bif="), "raw disk copy (dd)"),
    (re.compile(r":\(\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;?\s*:"), "fork bomb"),
    (re.compile(r"\b(curl|wget)\b[^\n|]*\|\s*(sudo\s+)?(ba|z|da|k)?sh\b"), "pipes a download into a shell"),
    (
        re.compile(r"\bqm\s+(destroy|stop)\b|\bpct\s+destroy\b|\bpvesh\s+delete\b"),
        "destroys or stops PVE guests",
    ),
    (re.compile(r">\s*/dev/(sd|nvme|vd|hd)[a-z0-9]*\b|\bwipefs\b|\bshred\b[^\n]*/dev/"), "overwrites a disk"),
    (re.compile(r"\bchmod\s+-R\s+0?777\s+/(\s|$)"), "opens the whole file system"),
]  # fmt: skip

# A literal value under a secret-looking key. Ids and names of tokens are not secrets.
_SECRET_KEY: Final = r"[\w-]*(token|password|passwd|secret|api_?key|private_?key|credential)[\w-]*"
_NOT_SECRET_KEY: Final = re.compile(r"(_id|_name|_user|_file|_path|_env|_var|_lookup|description)$", re.I)
_HCL_SECRET: Final = re.compile(rf"^\s*({_SECRET_KEY})\s*=\s*\"([^\"]*)\"", re.I)
_YAML_SECRET: Final = re.compile(rf"^\s*-?\s*({_SECRET_KEY})\s*:\s*(\S.*)$", re.I)
_SECRET_SHAPES: Final = [
    (re.compile(r"[\w.-]+@[\w.-]+![\w.-]+=[0-9a-fA-F-]{8,}"), "a PVE API token with its secret"),
    (re.compile(r"PVEAPIToken=[^{\s\"']*=[0-9a-fA-F-]{8,}"), "a PVE API token with its secret"),
    (re.compile(r"\bsk-(ant-)?[A-Za-z0-9_-]{20,}"), "an AI provider API key"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), "a GitHub token"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "an AWS access key"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
]  # fmt: skip
_REFERENCE: Final = re.compile(r"\{\{|\$\{|!vault|\bvar\.|\blookup\(|\bvault\b", re.I)

_OPEN: Final = frozenset({"", "0.0.0.0/0", "::/0", "any", "all", "*"})


def _lines(text: str) -> Iterator[tuple[int, str]]:
    yield from enumerate(text.splitlines(), 1)


def _code(line: str, comment: str) -> str:
    """``line`` without a trailing comment (good enough for the rules: a ``#`` inside a string is rare)."""
    stripped = line.lstrip()
    return "" if stripped.startswith(comment) or stripped.startswith("//") else line


def _shared(text: str, comment: str = "#") -> list[Finding]:
    found: list[Finding] = []
    for number, raw in _lines(text):
        line = _code(raw, comment)
        for pattern, message in _TLS_OFF:
            if pattern.search(line):
                found.append(Finding("tls-verify-disabled", "error", number, f"{message}: {line.strip()}"))
                break
        for pattern, message in _DESTRUCTIVE:
            if pattern.search(line):
                found.append(Finding("destructive-shell", "error", number, f"{message}: {line.strip()}"))
                break
        for pattern, message in _SECRET_SHAPES:
            if pattern.search(line):
                found.append(Finding("plaintext-secret", "error", number, f"{message} written in the code"))
                break
    return found


def _secret_literal(key: str, value: str) -> bool:
    value = value.strip().strip("\"'")
    if _NOT_SECRET_KEY.search(key) or not value or _REFERENCE.search(value):
        return False
    return value.lower() not in ("true", "false", "yes", "no", "null", "none", "~", "|", ">")


def _open(value: Any) -> bool:
    return value is None or str(value).strip().lower() in _OPEN


def _rule_finding(rule: dict[str, Any], line: int) -> Finding | None:
    """``rule`` (PVE's field names) lets everything through: ACCEPT, no source, dest, port or macro."""
    if str(rule.get("action", "")).strip().upper() != "ACCEPT":
        return None
    keys = ("source", "dest", "dport", "sport", "macro", "security_group", "iface")
    if all(_open(rule.get(k)) for k in keys):
        direction = rule.get("type", "?")
        return Finding("any-to-any", "error", line, f"ACCEPT rule ({direction}) with no source, dest or port")
    return None


def _policy_finding(policies: dict[str, Any], line: int) -> Finding | None:
    ins = policies.get("policy_in", policies.get("input_policy"))
    outs = policies.get("policy_out", policies.get("output_policy"))
    if str(ins).upper() == "ACCEPT" and str(outs).upper() == "ACCEPT":
        return Finding("any-to-any", "error", line, "firewall policy ACCEPT both in and out")
    return None


def _tool(cmd: list[str], stdin: str | None = None) -> tuple[int, str] | None:
    """Run ``cmd`` if its program is on PATH: ``(exit status, output)``, else ``None``."""
    program = shutil.which(cmd[0])
    if program is None:
        return None
    env = {**os.environ, "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1", "TF_IN_AUTOMATION": "1"}
    proc = subprocess.run(  # noqa: S603 - a fixed tool, arguments from this module
        [program, *cmd[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=_TOOL_TIMEOUT,
        env=env,
        check=False,
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip()


# ---- Terraform --------------------------------------------------------------------------------------
_HCL_BLOCK: Final = re.compile(
    r"^\s*(rule|resource\s+\"proxmox_virtual_environment_firewall_options\"[^{]*?)\s*\{"
)
_HCL_ATTR: Final = re.compile(r"^\s*(\w+)\s*=\s*(.+?)\s*$")
_SENSITIVE_DEFAULT: Final = re.compile(
    rf"variable\s+\"({_SECRET_KEY})\"\s*\{{[^}}]*?\bdefault\s*=\s*\"([^\"]+)\"", re.I
)


def _hcl_blocks(text: str) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Firewall ``rule`` blocks and firewall options resources: (kind, line, their flat attributes)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = _HCL_BLOCK.match(_code(line, "#"))
        if not match:
            continue
        depth, attrs = 0, {}
        for inner in lines[index:]:
            depth += inner.count("{") - inner.count("}")
            attr = _HCL_ATTR.match(inner)
            if attr and depth == 1:
                attrs[attr.group(1)] = attr.group(2).strip('"')
            if depth <= 0:
                break
        yield ("rule" if match.group(1) == "rule" else "options"), index + 1, attrs


def validate_terraform(text: str, *, tools: bool = True) -> list[Finding]:
    """Findings for Terraform ``text`` (empty: nothing wrong). ``tools=False`` skips ``terraform fmt``."""
    found: list[Finding] = []
    try:
        hcl2.loads(text)
    except Exception as exc:  # python-hcl2 raises lark errors of several kinds
        line = int(getattr(exc, "line", 0) or 0)
        found.append(Finding("syntax", "error", line, f"not valid HCL: {str(exc).splitlines()[0]}"))
    if tools:
        result = _tool(["terraform", "fmt", "-check", "-no-color", "-"], stdin=text)
        if result is not None and result[0] == 3:
            found.append(Finding("fmt", "warning", 0, "not formatted as `terraform fmt` would"))
        elif result is not None and result[0] != 0:
            found.append(Finding("syntax", "error", 0, f"terraform fmt: {result[1][-500:]}"))
    found += _shared(text)
    for number, raw in _lines(text):
        match = _HCL_SECRET.match(_code(raw, "#"))
        if match and _secret_literal(match.group(1), match.group(3)):
            found.append(Finding("plaintext-secret", "error", number, f"{match.group(1)} is a literal"))
    for match in _SENSITIVE_DEFAULT.finditer(text):
        if _secret_literal(match.group(1), match.group(3)):
            line = text.count("\n", 0, match.end()) + 1
            found.append(
                Finding("plaintext-secret", "error", line, f"variable {match.group(1)} has a default")
            )
    for kind, line, attrs in _hcl_blocks(text):
        finding = _rule_finding(attrs, line) if kind == "rule" else _policy_finding(attrs, line)
        if finding:
            found.append(finding)
    return _unique(found)


# ---- Ansible ----------------------------------------------------------------------------------------
def _mappings(node: yaml.Node) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every YAML mapping under ``node`` with its line, scalar values only (as text)."""
    if isinstance(node, yaml.MappingNode):
        flat: dict[str, Any] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.ScalarNode):
                flat[str(key.value)] = value.value
        yield node.start_mark.line + 1, flat
        for _, value in node.value:
            yield from _mappings(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _mappings(item)


def validate_ansible(text: str, *, tools: bool = True) -> list[Finding]:
    """Findings for an Ansible playbook (or tasks file) ``text``. ``tools=False`` skips ansible-playbook."""
    found: list[Finding] = []
    root: yaml.Node | None = None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        found.append(Finding("syntax", "error", line, f"not valid YAML: {str(exc).splitlines()[0]}"))
    if tools and root is not None and shutil.which("ansible-playbook"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "playbook.yml"
            path.write_text(text)
            result = _tool(["ansible-playbook", "--syntax-check", "-i", "localhost,", str(path)])
        if result is not None and result[0] != 0:
            found.append(
                Finding("syntax", "error", 0, f"ansible-playbook --syntax-check: {result[1][-800:]}")
            )
    found += _shared(text)
    for number, raw in _lines(text):
        match = _YAML_SECRET.match(_code(raw, "#"))
        if match and _secret_literal(match.group(1), match.group(3)):
            found.append(Finding("plaintext-secret", "error", number, f"{match.group(1)} is a literal"))
    if root is not None:
        for line, mapping in _mappings(root):
            finding = _policy_finding(mapping, line)
            if "action" in mapping and "type" in mapping:
                finding = _rule_finding(mapping, line)
            if finding:
                found.append(finding)
    return _unique(found)


def _unique(found: list[Finding]) -> list[Finding]:
    return sorted(set(found), key=lambda f: (f.line, f.rule, f.message))
