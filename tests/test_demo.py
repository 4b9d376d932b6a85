"""The `make run` demo: real ledgers, money conserved, every database valid."""

import random

from p2pnode.cli import main
from p2pnode.demo import DemoReport, audit_street, make_street, run_interval


def test_a_day_of_trading_conserves_money_and_energy(tmp_path):
    street, _ = make_street(tmp_path, houses=8, seed=3)
    rng, report = random.Random(3), DemoReport(houses=8, intervals=96)
    for index in range(96):
        run_interval(street, index, rng, report)
    audit_street(street, report)
    assert report.problems == []
    assert report.trades > 0 and report.local_wh == report.matchable_wh
    # credit only moves between houses: the total is what the bank deposited
    assert sum(house.ledger.credit_micro for house in street) == 8 * 20_000_000
    tokens_left = sum(sum(house.ledger.state.tokens_wh.values()) for house in street)
    # tokens minted and not sold are exactly what was exported to the grid
    assert tokens_left == report.surplus_wh - report.local_wh == report.grid_export_wh


def test_demo_command_reports_and_exits_zero(tmp_path, capsys):
    assert main(["demo", "--houses", "4", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ledgers:" in out and "all valid" in out
    assert main(["ledger", "verify", *map(str, sorted(tmp_path.glob("house-*.db")))]) == 0


def test_demo_rejects_a_bad_house_count(tmp_path, capsys):
    assert main(["demo", "--houses", "1", "--out", str(tmp_path)]) == 2
    assert "--houses 1: must be between 2 and 2000" in capsys.readouterr().err
