"""The feeder node's books survive a restart (p2pnode/feeder_store.py), and a bad file is named."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from p2pnode.config import config_from_dict
from p2pnode.errors import ConfigError
from p2pnode.feeder_role import FeederRole
from p2pnode.feeder_store import feeder_books_path
from tests.dhtkit import run as strict_run
from tests.test_feeder_role import A, B, C, FEEDER, START, STEP, report


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def role_config(tmp_path, transformer: dict[int, int]):
    (tmp_path / "t.csv").write_text("interval_start_s,transformer_wh\n" + "".join(
        f"{start},{wh}\n" for start, wh in transformer.items()))
    return config_from_dict({
        "ledger": "node.db", "feeder": FEEDER, "interval_s": STEP,
        "feeder_role": {"enabled": True, "transformer_meter": "t.csv", "grace_s": 120,
                        "loss_threshold_kwh": 0.1, "persistence": 2,
                        "members": [A.public.hex(), B.public.hex(), C.public.hex()]}},
        base=tmp_path)


def started(config, key, clock) -> FeederRole:
    role = FeederRole(config, key, clock)
    strict_run(role.start(), timeout_s=30)
    return role


def view(role: FeederRole) -> dict:
    book = role.book
    return {"open_from_s": book.open_from_s, "streak": book.streak,
            "counters": dict(book.counters), "known": list(book.known),
            "reports": {s: sorted(r) for s, r in book.reports.items()},
            "answered": book.answered, "history": list(book.history)}


def test_books_survive_a_restart_and_answer_as_before(tmp_path):
    """Two intervals closed (a loss streak of 2: the alert), reports of a third accepted; the
    node stops without closing it; restarted after the third ended, it has the same books,
    recognises a retransmitted report of a closed interval, and closes the third with the
    reports it had accepted before the stop."""
    config = role_config(tmp_path, {START: 450, START + STEP: 450, START + 2 * STEP: 200})
    clock = Clock(START + 1)
    role = started(config, C, clock)
    for index in range(3):
        clock.now = START + (index + 1) * STEP + 1
        for member, g, c in ((A, 2000, 500), (B, 0, 1200)):
            status, _ = role.on_report(report(member, START + index * STEP, g, c))
            assert status == 200
        if index < 2:
            clock.now += 120
            assert [b.interval_start_s for b in role.close_due()] == [START + index * STEP]
    before = view(role)
    assert before["streak"] == 2 and role.book.history[-1].alert
    assert before["reports"] == {START + 2 * STEP: sorted([A.public, B.public])}
    role.close()

    clock.now = START + 3 * STEP + 200                      # restarted after the third ended
    again = started(config, C, clock)
    assert view(again) == before
    status, body = again.on_report(report(A, START, 2000, 500))   # a retransmission: same answer
    assert (status, json.loads(body)["status"]) == (200, "accepted")
    assert again.book.counters["reports_duplicate"] == 1
    status, body = again.on_report(report(A, START, 2001, 500))   # another report: a conflict
    assert (status, json.loads(body)["reason"]) == (409, "conflict")
    third = again.close_due()
    assert [(b.interval_start_s, b.members_reporting, b.generation_wh, b.loss_wh)
            for b in third] == [(START + 2 * STEP, 2, 2000, 200 + 2000 - 1700)]
    again.close()
    last = started(config, C, clock)                        # and once more: all three closed
    assert [b.interval_start_s for b in last.book.history] == [START + i * STEP for i in range(3)]
    assert last.book.reports == {} and last.book.counters["intervals_closed"] == 3
    last.close()


def test_a_report_accepted_before_a_crash_is_kept(tmp_path):
    """The report is on disk when its answer leaves: a process that dies (no close) keeps it."""
    config = role_config(tmp_path, {})
    clock = Clock(START + 1)
    role = started(config, C, clock)
    clock.now = START + STEP + 1
    assert role.on_report(report(B, START, 10, 20))[0] == 200
    role.store.db.close()                                    # no role.close(): the process died
    again = started(config, C, clock)
    assert list(again.book.reports[START]) == [B.public]
    again.close()


def test_a_corrupt_or_foreign_books_file_is_a_clear_error(tmp_path):
    config = role_config(tmp_path, {})
    path = feeder_books_path(config.ledger)
    assert path == tmp_path / "node.feeder.db"
    path.write_bytes(b"this is not a database, just some text long enough" * 100)
    with pytest.raises(ConfigError, match=r"books file .*node.feeder.db: not a feeder books "
                                          r"database .*move it away"):
        started(config, C, Clock(START))
    path.unlink()
    clock = Clock(START + 1)
    role = started(config, C, clock)
    clock.now = START + STEP + 1
    assert role.on_report(report(A, START, 1, 1))[0] == 200
    role.close()
    other = config_from_dict({**_raw(tmp_path), "feeder": "feeder-8"}, base=tmp_path)
    with pytest.raises(ConfigError, match=r"its feeder is 'feeder-7', this node's is 'feeder-8'"):
        started(other, C, Clock(START))
    db = sqlite3.connect(path)
    db.execute("UPDATE reports SET raw = x'00'")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="a stored value is damaged"):
        started(config, C, Clock(START))


def _raw(tmp_path) -> dict:
    return {"ledger": "node.db", "interval_s": STEP,
            "feeder_role": {"enabled": True, "transformer_meter": "t.csv"}}
