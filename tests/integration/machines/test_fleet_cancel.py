"""A fleet deploy cancelled part-way is read back from the journal, machine by machine (the CLI's Ctrl-C
and the hub's job cancel both report it so)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from autovibe.machines.deploy import KIND
from autovibe.machines.fleet import outcomes_after_cancel
from autovibe.operations.journal import Journal
from autovibe.operations.models import OpStatus
from autovibe.store.db import Database, sqlite_url
from autovibe.store.tables import Operation, utcnow


def test_each_machine_is_deployed_undone_stuck_or_skipped(tmp_path: Path) -> None:
    db = Database.open(sqlite_url(tmp_path / "store.db"))
    try:
        journal = Journal(db)

        def deploy_op(name: str, status: OpStatus) -> str:
            op_id = journal.create(KIND, {"name": name, "node": "pve1"}, ["clone"], actor="alice")
            journal.remember(op_id, {"node": "pve1", "vmid": 101})
            journal.set_status(op_id, status)
            return op_id

        earlier = deploy_op("f-4", OpStatus.COMPLETED)  # a deploy of that name before this fleet began
        with db.session() as session:
            session.get_one(Operation, earlier).created_at = utcnow() - timedelta(hours=1)
        since = utcnow()
        done = deploy_op("f-1", OpStatus.COMPLETED)
        undone = deploy_op("f-2", OpStatus.COMPENSATED)
        stuck = deploy_op("f-3", OpStatus.STUCK)
        journal.create("machine.delete", {"name": "f-4"}, ["destroy"], actor="alice")  # another kind

        outcomes = {
            o.name: o
            for o in outcomes_after_cancel(db, ["f-1", "f-2", "f-3", "f-4"], since=since, why="cancelled")
        }

        assert (outcomes["f-1"].status, outcomes["f-1"].vmid, outcomes["f-1"].operation_id) == (
            "deployed",
            101,
            done,
        )
        assert (outcomes["f-2"].status, outcomes["f-2"].operation_id) == ("undone", undone)
        assert outcomes["f-2"].error == "cancelled; everything it did was undone"
        assert (outcomes["f-3"].status, outcomes["f-3"].operation_id) == ("stuck", stuck)
        assert "autovibe ops resume" in (outcomes["f-3"].error or "")
        assert (outcomes["f-4"].status, outcomes["f-4"].error) == ("skipped", "not started: cancelled")
    finally:
        db.dispose()
