"""The audit log's hash chain on SQLite and on a real PostgreSQL (marker ``postgres``).

Tampering is done the way an attacker with database access would do it: raw SQL on ``audit_log``,
behind the module's back. ``verify`` must then name the first entry that cannot be trusted.
"""

# The store tests' fixtures are imported below, so every test taking ``db`` "redefines" the name.
# ruff: noqa: F811

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from autovibe.errors import AutovibeInvalid, AutovibeNotFound
from autovibe.security import audit
from autovibe.store.db import Database

# The store tests' fixtures: ``database_url`` is parametrized over SQLite and PostgreSQL.
from tests.integration.store.conftest import database_url, db, postgres_server  # noqa: F401

T0 = datetime(2026, 11, 22, 9, 0, 0, 123456, tzinfo=UTC)
ACTORS = ("alice", "bob", "carol")


def seed(db: Database, count: int = 8, *, key: bytes | None = None) -> list[audit.AuditRecord]:
    return [
        audit.append(
            db,
            actor=ACTORS[i % 3],
            action="machine.create" if i % 2 else "checkpoint.create",
            target=f"vm:{100 + i}",
            project="alpha" if i % 2 else None,
            decision="allow",
            outcome="succeeded",
            risk=10 * i,
            params={"name": f"m{i}", "cores": 2, "ratio": 0.5, "tags": ["a", "b"]},
            at=T0 + timedelta(minutes=i),
            key=key,
        )
        for i in range(count)
    ]


def sql(db: Database, statement: str, **params: Any) -> None:
    with db.engine.begin() as connection:
        connection.execute(text(statement), params)


def row(db: Database, entry_id: int) -> dict[str, Any]:
    with db.engine.connect() as connection:
        found = connection.execute(text("SELECT * FROM audit_log WHERE id = :id"), {"id": entry_id})
        return dict(found.mappings().one())


# ---- writing and reading -------------------------------------------------------------------------


def test_append_chains_entries_and_reads_them_back(db: Database) -> None:
    records = seed(db, 5)

    assert [r.id for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert audit.get(db, 3) == records[2]
    assert audit.get(db, 3).at == T0 + timedelta(minutes=2)  # microseconds and UTC survive the store

    assert [r.id for r in audit.list_entries(db)] == [5, 4, 3, 2, 1]
    assert [r.id for r in audit.list_entries(db, limit=2)] == [5, 4]
    assert [r.id for r in audit.list_entries(db, actor="bob")] == [5, 2]
    assert [r.id for r in audit.list_entries(db, action="machine.create")] == [4, 2]
    assert [r.id for r in audit.list_entries(db, project="alpha")] == [4, 2]
    assert [r.id for r in audit.list_entries(db, since=T0 + timedelta(minutes=3))] == [5, 4]

    with pytest.raises(AutovibeNotFound, match="no audit entry 99"):
        audit.get(db, 99)


def test_export_writes_one_json_object_per_entry_oldest_first(db: Database) -> None:
    records = seed(db, 3)
    stream = io.StringIO()

    assert audit.export_jsonl(db, stream) == 3
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["id"] for line in lines] == [1, 2, 3]
    assert lines[1] == records[1].model_dump(mode="json")
    # An export carries enough to check the chain away from the database.
    copies = [audit.AuditRecord.model_validate(line) for line in lines]
    assert audit.check_chain(copies).ok


def test_an_untouched_log_verifies_and_reports_its_head(db: Database) -> None:
    assert audit.verify(db) == audit.VerifyResult(ok=True, checked=0)
    records = seed(db, 8)

    result = audit.verify(db)
    assert (result.ok, result.checked, result.first_bad, result.problem) == (True, 8, None, "")
    assert (result.head_id, result.head_hash) == (8, records[-1].hash)
    assert audit.verify(db, anchor=(8, records[-1].hash)).ok
    assert audit.verify(db, anchor=(3, records[2].hash)).ok


def test_a_keyed_log_verifies_only_with_its_key(db: Database) -> None:
    seed(db, 3, key=b"k" * 32)

    assert audit.verify(db, key=b"k" * 32).ok
    unkeyed = audit.verify(db)
    assert (unkeyed.ok, unkeyed.first_bad) == (False, 1)
    assert audit.verify(db, key=b"other").problem.startswith("entry 1: its contents were changed")


def test_naive_times_and_overlong_fields_are_refused(db: Database) -> None:
    with pytest.raises(AutovibeInvalid, match="timezone-aware"):
        audit.append(db, actor="a", action="x", target="t", decision="allow", outcome="ok", at=datetime.now())
    with pytest.raises(AutovibeInvalid, match="decision: longer than 16"):
        audit.append(db, actor="a", action="x", target="t", decision="d" * 17, outcome="ok")


# ---- tampering -----------------------------------------------------------------------------------


def update_field(db: Database) -> None:
    sql(db, "UPDATE audit_log SET outcome = 'failed' WHERE id = 5")


def update_risk(db: Database) -> None:
    sql(db, "UPDATE audit_log SET risk = 0 WHERE id = 7")


def delete_middle(db: Database) -> None:
    sql(db, "DELETE FROM audit_log WHERE id = 5")


def delete_two(db: Database) -> None:
    sql(db, "DELETE FROM audit_log WHERE id IN (4, 5)")


def delete_first(db: Database) -> None:
    sql(db, "DELETE FROM audit_log WHERE id = 1")


def swap_rows(db: Database) -> None:
    """Swap every column but the id of entries 4 and 6 (each stays self-consistent)."""
    four, six = row(db, 4), row(db, 6)
    columns = [name for name in four if name not in ("id", "hash")]
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    sql(db, "UPDATE audit_log SET hash = 'swapping' WHERE id = 4")  # hash is unique
    sql(db, f"UPDATE audit_log SET {assignments}, hash = :hash WHERE id = 6", **_raw(four))
    sql(db, f"UPDATE audit_log SET {assignments}, hash = :hash WHERE id = 4", **_raw(six))


def swap_field_values(db: Database) -> None:
    """Swap the actors of entries 3 and 4."""
    three, four = row(db, 3), row(db, 4)
    sql(db, "UPDATE audit_log SET actor = :actor WHERE id = 3", actor=four["actor"])
    sql(db, "UPDATE audit_log SET actor = :actor WHERE id = 4", actor=three["actor"])


def rehash_one(db: Database) -> None:
    """Change entry 5 and recompute its own hash, leaving the chain after it alone."""
    changed = audit.get(db, 5).model_copy(update={"target": "vm:999"})
    fields = changed.model_dump(exclude={"id", "prev_hash", "hash"})
    digest = audit.entry_hash(fields, prev_hash=changed.prev_hash)
    sql(db, "UPDATE audit_log SET target = 'vm:999', hash = :hash WHERE id = 5", hash=digest)


def forge_prev_hash(db: Database) -> None:
    sql(db, "UPDATE audit_log SET prev_hash = :forged WHERE id = 5", forged="f" * 64)


def forge_prev_hash_and_rehash(db: Database) -> None:
    """Chain entry 5 straight to entry 3 (as if 4 never happened) and make its hash fit."""
    five, three = audit.get(db, 5), audit.get(db, 3)
    digest = audit.entry_hash(five.model_dump(exclude={"id", "prev_hash", "hash"}), prev_hash=three.hash)
    sql(db, "UPDATE audit_log SET prev_hash = :p, hash = :h WHERE id = 5", p=three.hash, h=digest)


def _raw(values: dict[str, Any]) -> dict[str, Any]:
    # Raw rows hand JSON back as text on SQLite and as data on PostgreSQL; bind text on both.
    params = values["params"]
    return {**values, "params": params if isinstance(params, str) else json.dumps(params)}


TAMPERING: list[tuple[Callable[[Database], None], int, str]] = [
    (update_field, 5, "entry 5: its contents were changed"),
    (update_risk, 7, "entry 7: its contents were changed"),
    (delete_middle, 6, "entry 6: the entry before it (5) is missing"),
    (delete_two, 6, "entry 6: the entries before it (4 to 5) are missing"),
    (delete_first, 2, "entry 2: the entry before it (1) is missing"),
    (swap_rows, 4, "entry 4: it is out of place"),
    (swap_field_values, 3, "entry 3: its contents were changed"),
    (rehash_one, 5, "entry 5: it was changed and re-hashed"),
    (forge_prev_hash, 5, "entry 5: its contents were changed"),
    (forge_prev_hash_and_rehash, 5, "entry 5: it is out of place"),
]


@pytest.mark.parametrize(
    ("tamper", "first_bad", "problem"), TAMPERING, ids=[t[0].__name__ for t in TAMPERING]
)
def test_tampering_is_found_and_the_first_bad_entry_named(
    db: Database, tamper: Callable[[Database], None], first_bad: int, problem: str
) -> None:
    seed(db, 8)
    assert audit.verify(db).ok

    tamper(db)

    result = audit.verify(db)
    assert (result.ok, result.first_bad) == (False, first_bad), result.problem
    assert result.problem.startswith(problem), result.problem
    assert result.head_id is None


def test_swapping_json_params_is_found(db: Database) -> None:
    seed(db, 4)
    params = json.dumps({"name": "m9", "cores": 64, "ratio": 0.5, "tags": ["a", "b"]})
    sql(db, "UPDATE audit_log SET params = :p WHERE id = 2", p=params)

    assert audit.verify(db).first_bad == 2


def forge_last(db: Database, records: list[audit.AuditRecord]) -> None:
    """Rewrite the last entry and recompute its hash the unkeyed way: the chain still links."""
    last = records[-1].model_copy(update={"actor": "mallory"})
    digest = audit.entry_hash(last.model_dump(exclude={"id", "prev_hash", "hash"}), prev_hash=last.prev_hash)
    sql(db, "UPDATE audit_log SET actor = 'mallory', hash = :h WHERE id = :id", h=digest, id=last.id)


def test_a_consistently_forged_tail_is_found_only_with_an_anchor_when_unkeyed(db: Database) -> None:
    records = seed(db, 5)
    head = (records[-1].id, records[-1].hash)
    forge_last(db, records)

    assert audit.verify(db).ok  # without a key, a consistent forgery cannot be told apart
    anchored = audit.verify(db, anchor=head)
    assert anchored.first_bad == 5
    assert anchored.problem.startswith("entry 5: it does not match the anchor (its hash is ")


def test_a_forged_tail_is_found_with_the_key(db: Database) -> None:
    key = b"s" * 32
    records = seed(db, 5, key=key)
    forge_last(db, records)

    keyed = audit.verify(db, key=key)
    assert (keyed.ok, keyed.first_bad) == (False, 5)
    assert keyed.problem.startswith("entry 5: its contents were changed")


def test_entries_cut_from_the_end_are_found_only_with_an_anchor(db: Database) -> None:
    records = seed(db, 6)
    anchor = (6, records[-1].hash)
    sql(db, "DELETE FROM audit_log WHERE id >= 5")

    assert audit.verify(db).ok  # the chain alone cannot show it (documented in the module)
    cut = audit.verify(db, anchor=anchor)
    assert (cut.ok, cut.first_bad) == (False, 6)
    assert cut.problem == (
        "entry 6: the anchored entry is missing (the log ends at entry 4): entries were deleted from "
        "the end of the log"
    )

    # Appending again reuses the ids; the anchor still tells the new entry 6 from the old one.
    seed(db, 2)
    assert audit.verify(db).ok
    assert audit.verify(db, anchor=anchor).problem.startswith("entry 6: it does not match the anchor")


# ---- concurrency ---------------------------------------------------------------------------------


def test_appends_from_many_threads_keep_one_chain(db: Database) -> None:
    def worker(n: int) -> None:
        for i in range(15):
            audit.append(
                db, actor=f"t{n}", action="test.append", target=f"{n}:{i}", decision="allow", outcome="ok"
            )

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(worker, range(6)))

    result = audit.verify(db)
    assert (result.ok, result.checked) == (True, 90), result.problem


APPENDER = textwrap.dedent(
    """
    import sys
    from autovibe.security import audit
    from autovibe.store.db import Database

    db = Database(sys.argv[1])
    for i in range(int(sys.argv[3])):
        audit.append(db, actor=sys.argv[2], action="test.append", target=f"n:{i}", decision="allow",
                     outcome="ok")
    db.dispose()
    """
)


def test_appends_from_many_processes_keep_one_chain(db: Database, database_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, database_url, f"p{n}", "25"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, out + err

    result = audit.verify(db)
    assert (result.ok, result.checked) == (True, 100), result.problem
    assert {r.actor for r in audit.list_entries(db, limit=100)} == {"p0", "p1", "p2", "p3"}


# ---- redaction -----------------------------------------------------------------------------------

TOKEN = "root@pam!ci=5f3b0c1e-9d2a-4c57-8a61-0b6f2a9e7d10"


def test_secrets_in_params_are_masked_before_hashing_and_storing(db: Database) -> None:
    record = audit.append(
        db,
        actor="alice",
        action="cluster.connect",
        target="https://root:hunter2@pve1:8006",
        decision="allow",
        outcome="succeeded",
        params={
            "password": "hunter2",
            "nested": {"apiKey": "sk-ant-0123456789abcdefghij", "cores": 4, "keep": True},
            "headers": [
                {"Authorization": f"PVEAPIToken={TOKEN}"},
                "Cookie: PVEAuthCookie=PVE:root@pam:65A1B2C3::c2ln",
            ],
            "log": f"called with PVEAPIToken={TOKEN} and secret=0123456789abcdef0123456789abcdef",
            "token_set": False,
            "keyboard": "de",
        },
    )

    assert record.target == "https://root:**********@pve1:8006"
    assert record.params == {
        "password": audit.MASK,
        "nested": {"apiKey": audit.MASK, "cores": 4, "keep": True},
        "headers": [{"Authorization": audit.MASK}, "Cookie: **********"],
        "log": "called with PVEAPIToken=root@pam!ci=********** and secret=**********",
        "token_set": False,
        "keyboard": "de",
    }
    stored = json.dumps(row(db, 1), default=str)
    for secret in ("hunter2", "sk-ant", "5f3b0c1e", "c2ln", "0123456789abcdef"):
        assert secret not in stored
    assert audit.verify(db).ok  # the hash is over the masked values


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        (f"Authorization: PVEAPIToken={TOKEN}", "Authorization: **********"),
        (TOKEN, "root@pam!ci=**********"),
        ("CSRFPreventionToken: 65A1B2C3:Yx3Fz+abc", "CSRFPreventionToken: **********"),
        ("ticket PVE:root@pam:65A1B2C3::dGhlIHNpZw==", "ticket PVE:root@pam:**********"),
        ("Bearer abcdefghijklmnop", "Bearer **********"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic **********"),
        ("token avt_3f9c2a71b0d84e6f", "token avt_**********"),
        ('{"password": "hunter2", "user": "root"}', '{"password": "**********", "user": "root"}'),
        ("PVEAuthCookie=PVE:root@pam:65A1B2C3::c2ln", "PVEAuthCookie=PVE:root@pam:**********"),
        ("https://pve1:8006/?secret=0123456789abcdef&x=1", "https://pve1:8006/?secret=**********&x=1"),
        ("password=**********hunter2", "password=**********"),
        ("vm:100 on pve1", "vm:100 on pve1"),
        ("sha256 " + "ab" * 32, "sha256 " + "ab" * 32),  # hashes are not secrets
    ],
)
def test_redact_masks_token_like_text(raw: str, masked: str) -> None:
    assert audit.redact(raw) == masked
    assert audit.redact(masked) == masked


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True), ("cipassword", True), ("client_secret", True), ("apiKey", True),
        ("private_key", True), ("x-auth", True), ("csrf", True), ("Cookie", True), ("ticket", True),
        ("keyboard", False), ("sshkeys", False), ("name", False), ("author", False), ("cores", False),
    ],
)  # fmt: skip
def test_secret_looking_keys(name: str, secret: bool) -> None:
    assert audit.is_secret_key(name) is secret
