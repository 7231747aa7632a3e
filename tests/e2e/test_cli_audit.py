"""``autovibe audit ...`` as a user runs it: list, show, export and verify the audit log's hash chain.

Nothing on the CLI appends audit entries yet, so each test seeds them in-process with
``security.audit.append`` on the same SQLite store the CLI subprocesses use, and tampers with it
through ``sqlite3`` directly, as someone with access to the file would.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from autovibe.security import audit
from autovibe.store.db import Database, sqlite_url
from tests.e2e.test_cli_machines import Cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def seed(cli: Cli, count: int = 5) -> list[audit.AuditRecord]:
    db = Database.open(sqlite_url(cli.data / "autovibe.db"))
    try:
        return [
            audit.append(
                db,
                actor="alice" if i % 2 else "bob",
                action="machine.create" if i < 3 else "machine.delete",
                target=f"vm:{100 + i}",
                project="alpha",
                decision="allow",
                outcome="succeeded",
                risk=20,
                params={"name": f"m{i}", "password": "hunter2"},
            )
            for i in range(count)
        ]
    finally:
        db.dispose()


def tamper(cli: Cli, statement: str) -> None:
    with sqlite3.connect(cli.data / "autovibe.db") as connection:
        connection.execute(statement)
    connection.close()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_list_show_and_export(cli: Cli, tmp_path: Path) -> None:
    records = seed(cli)
    target = tmp_path / "audit.jsonl"
    # Reads only (the export writes a file nobody else reads), so they run side by side.
    (
        listed, alice, deletes, recent, nobody, bad_since, table_run, shown_run, human_run, missing,
        exported_run, written,
    ) = cli.run_together(
        ("audit", "list", "--json"),
        ("audit", "list", "--actor", "alice", "--json"),
        ("audit", "list", "--action", "machine.delete", "--json"),
        ("audit", "list", "--limit", "2", "--since", "1h", "--json"),
        ("audit", "list", "--actor", "nobody", "--json"),
        ("audit", "list", "--since", "soon"),
        ("audit", "list"),
        ("audit", "show", "3", "--json"),
        ("audit", "show", "3"),
        ("audit", "show", "99"),
        ("audit", "export", "--jsonl"),
        ("audit", "export", "--jsonl", "--output", str(target)),
    )  # fmt: skip

    entries = cli.parsed(listed)["entries"]
    assert [e["id"] for e in entries] == [5, 4, 3, 2, 1]
    assert entries[-1] == records[0].model_dump(mode="json")
    assert entries[0]["params"] == {"name": "m4", "password": "**********"}
    assert [e["id"] for e in cli.parsed(alice)["entries"]] == [4, 2]
    assert [e["id"] for e in cli.parsed(deletes)["entries"]] == [5, 4]
    assert [e["id"] for e in cli.parsed(recent)["entries"]] == [5, 4]
    assert cli.parsed(nobody)["entries"] == []
    assert bad_since.returncode == 2

    assert table_run.returncode == 0, table_run.stderr
    table = table_run.stdout
    assert table.splitlines()[0].startswith("target: ")
    assert "Audit entries (5)" in table and "machine.delete" in table and "vm:104" in table

    shown = cli.parsed(shown_run)
    assert shown["entry"] == records[2].model_dump(mode="json")
    assert human_run.returncode == 0, human_run.stderr
    human = human_run.stdout
    assert f"hash       {records[2].hash}" in human and '"password": "**********"' in human
    assert missing.returncode == 4
    assert missing.stderr.splitlines() == ["error: no audit entry 99", "hint: list them: autovibe audit list"]

    assert exported_run.returncode == 0, exported_run.stderr
    exported = exported_run.stdout
    assert [json.loads(line) for line in exported.splitlines()] == [
        r.model_dump(mode="json") for r in records
    ]
    assert written.returncode == 0, written.stderr
    assert f"exported 5 audit entries to {target}" in written.stdout
    assert target.read_text() == exported


def test_verify_an_intact_log(cli: Cli) -> None:
    empty = cli.ok("audit", "verify")
    assert "audit log intact: it is empty" in empty.stdout

    records = seed(cli)
    intact, as_json, anchored = cli.run_together(
        ("audit", "verify"),
        ("audit", "verify", "--json"),
        ("audit", "verify", "--anchor", f"3:{records[2].hash}"),
    )
    assert intact.returncode == 0, intact.stderr
    assert "audit log intact: 5 entries, hash chain verified" in intact.stdout
    assert f"head 5:{records[-1].hash}" in intact.stdout
    verdict = cli.parsed(as_json)
    assert {k: verdict[k] for k in ("ok", "checked", "first_bad", "head_id", "head_hash")} == {
        "ok": True,
        "checked": 5,
        "first_bad": None,
        "head_id": 5,
        "head_hash": records[-1].hash,
    }
    assert anchored.returncode == 0, anchored.stderr


def test_verify_names_the_first_tampered_entry(cli: Cli) -> None:
    seed(cli)
    tamper(cli, "UPDATE audit_log SET actor = 'mallory' WHERE id = 3")

    broken, as_json = cli.run_together(("audit", "verify"), ("audit", "verify", "--json"))
    assert broken.returncode == 1
    assert one_error_line(broken) == (
        "error: audit log tampered with: entry 3: its contents were changed (its hash does not match "
        "them: changed)"
    )
    assert as_json.returncode == 1
    verdict = json.loads(as_json.stdout)
    assert (verdict["ok"], verdict["first_bad"]) == (False, 3)

    tamper(cli, "DELETE FROM audit_log WHERE id = 3")
    deleted = cli.run("audit", "verify")
    assert deleted.returncode == 1
    assert "entry 4: the entry before it (3) is missing" in one_error_line(deleted)


def test_an_anchor_catches_entries_cut_from_the_end(cli: Cli) -> None:
    records = seed(cli)
    tamper(cli, "DELETE FROM audit_log WHERE id = 5")

    plain, cut, bad = cli.run_together(
        ("audit", "verify"), ("audit", "verify", "--anchor", f"5:{records[-1].hash}"),
        ("audit", "verify", "--anchor", "5:nothex"),
    )  # fmt: skip
    assert plain.returncode == 0  # the chain alone cannot show it
    assert cut.returncode == 1
    assert "entry 5: the anchored entry is missing (the log ends at entry 4)" in one_error_line(cut)

    assert bad.returncode == 2
    assert "--anchor" in one_error_line(bad)
