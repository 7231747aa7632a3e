"""UPID parsing and task status models (SEMANTICS §3)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autovibe.errors import AutovibeInvalid
from autovibe.pve import PveInvalidUpid, TaskStatus, Upid

EXAMPLE = "UPID:pve1:0002F1C4:01A2B3C4:66F0A1B2:qmstart:100:root@pam:"


def test_parses_the_documented_example():
    upid = Upid.parse(EXAMPLE)

    assert upid.node == "pve1"
    assert upid.pid == 0x0002F1C4
    assert upid.pstart == 0x01A2B3C4
    assert upid.starttime == dt.datetime.fromtimestamp(0x66F0A1B2, tz=dt.UTC)
    assert (upid.type, upid.id, upid.user) == ("qmstart", "100", "root@pam")
    assert str(upid) == EXAMPLE


def test_user_may_be_a_token_and_id_may_be_empty():
    upid = Upid.parse("UPID:node-2:0000ABCD:000012345:65A1B2C3:vzdump::ci@pve!deploy-bot:")

    assert upid.user == "ci@pve!deploy-bot"
    assert upid.id == ""
    assert upid.pstart == 0x12345  # nine hex digits are allowed when decoding


@pytest.mark.parametrize(
    "text",
    [
        "UPID:pve1:0002F1C4:01A2B3C4:66F0A1B2:qmstart:100:root@pam",  # no trailing colon
        "UPID:pve1:0002F1C4:01A2B3C4:66F0A1B2:qmstart:100:root@pam::",  # ten fields
        "TASK:pve1:0002F1C4:01A2B3C4:66F0A1B2:qmstart:100:root@pam:",  # wrong prefix
        "UPID:pve1:2F1C4:01A2B3C4:66F0A1B2:qmstart:100:root@pam:",  # short pid
        "UPID:pve1:0002F1C4:01A2B3C4:66F0A1BZ:qmstart:100:root@pam:",  # not hex
        "UPID:-pve1:0002F1C4:01A2B3C4:66F0A1B2:qmstart:100:root@pam:",  # not a hostname label
        "UPID:pve1:0002F1C4:01A2B3C4:66F0A1B2:qm start:100:root@pam:",  # whitespace in type
        "UPID:pve1:0002F1C4:01A2B3C4:66F0A1B2::100:root@pam:",  # empty type
        "UPID:pve1:0002F1C4:01A2B3C4:66F0A1B2:qmstart:100::",  # empty user
    ],
)
def test_rejects_malformed_upids(text):
    with pytest.raises(PveInvalidUpid) as caught:
        Upid.parse(text)

    assert isinstance(caught.value, AutovibeInvalid)
    assert isinstance(caught.value, ValueError)


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789@!._-", min_size=1, max_size=12)


@given(
    node=st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True),
    pid=st.integers(0, 0xFFFFFFFF),
    start=st.integers(0, 0xFFFFFFFF),
    kind=_word,
    ident=st.one_of(st.just(""), st.integers(100, 999999999).map(str)),
    user=_word,
)
def test_parse_reads_back_every_field_it_was_built_from(node, pid, start, kind, ident, user):
    text = f"UPID:{node}:{pid:08X}:{pid:08X}:{start:08X}:{kind}:{ident}:{user}:"

    upid = Upid.parse(text)

    assert (upid.node, upid.pid, upid.type, upid.id, upid.user) == (node, pid, kind, ident, user)
    assert upid.starttime.timestamp() == start
    assert upid.raw == text


@pytest.mark.parametrize(
    ("exitstatus", "ok"),
    [("OK", True), ("WARNINGS: 3", True), ("VM 100 already running", False), ("unexpected status", False)],
)
def test_task_status_ok_accepts_ok_and_warnings_only(exitstatus, ok):
    status = TaskStatus.model_validate(
        {"upid": EXAMPLE, "node": "pve1", "status": "stopped", "exitstatus": exitstatus}
    )

    assert status.ok is ok
    assert status.running is False


def test_running_task_is_not_ok_and_numbers_coerce():
    status = TaskStatus.model_validate(
        {"upid": EXAMPLE, "node": "pve1", "status": "running", "id": 100, "starttime": "1727000000", "pid": 5}
    )

    assert status.running and not status.ok
    assert status.id == "100"
    assert status.starttime == dt.datetime.fromtimestamp(1727000000, tz=dt.UTC)
