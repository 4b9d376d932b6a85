"""`p2pnode simulate` end to end: real nodes in two processes, real profiles, the run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from p2pnode.cli import main
from simulator import load_scenario, max_local_match_wh
from simulator.run import run_profiles

TINY = """
name = "tiny"
seed = 5
meters = 10
processes = 2
feeder = "none"
[time]
acceleration = 1000000.0
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode, least_match", [("ex_post", 0.9), ("real_time", 0.75)])
def test_a_small_day_with_real_nodes_in_two_processes(tmp_path, capsys, mode, least_match):
    """Ex post every trade is metered energy: 90 % of the optimum at least.  Ahead of delivery
    (real time) forecast errors cost matches: 75 % at least, and the delivery is measured."""
    scenario_file = tmp_path / "tiny.toml"
    scenario_file.write_text(TINY + f'[market]\nmode = "{mode}"\n')
    out = tmp_path / "run"
    code = main(["simulate", str(scenario_file), "--out", str(out), "--no-progress",
                 "--no-plots", "--mechanisms", "double_auction"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meters"] == 10 and summary["intervals"] == 96 and summary["processes"] == 2
    assert summary["ledgers_valid"] is True and summary["double_settlements"] == 0
    assert summary["trades"] > 0
    profiles, _ = run_profiles(load_scenario(scenario_file))   # the run's days
    optimum_kwh = float(np.sum(max_local_match_wh(profiles.surplus_wh, profiles.deficit_wh))) / 1000
    assert summary["optimum_match_kwh"] == pytest.approx(optimum_kwh, rel=1e-6)
    assert summary["local_match_ratio"] >= least_match
    extra = summary["extra"]
    assert extra["forward_match_ratio"] == pytest.approx(summary["local_match_ratio"], abs=1e-3)
    # the forward market's own matches and the balancing round's add up to the local match
    assert extra["ahead_match_ratio"] * extra["perfect_foresight_match_kwh"] \
        + extra["balancing_kwh"] == pytest.approx(extra["delivered_local_kwh"], abs=2e-3)
    if mode == "ex_post":   # metered before it was sold: delivered in full, nothing short
        assert (extra["delivered_share"], extra["shortfall_kwh"]) == (1.0, 0.0)
        assert extra["balancing_kwh"] == 0   # no balancing round: nothing was traded ahead
    else:                   # measured: some sellers fell short, and paid for it
        assert 0.8 <= extra["delivered_share"] < 1.0 and extra["shortfall_kwh"] > 0
        assert extra["imbalance_cost"] > 0 and extra["trade_duration_s_p50"] > 0
        assert -1.0 < extra["forecast_skill_next_interval"] < 1.0
    assert set(summary["baselines"]) >= {"no_trading", "optimum", "double_auction"}
    trades = (out / "trades.csv").read_text().splitlines()
    assert len(trades) == summary["trades"] + 1
    assert sorted(p.name for p in (out / "ledgers").glob("*.db")) == \
        [f"house-{i:04d}.db" for i in range(10)]
    assert main(["ledger", "verify", *map(str, sorted((out / "ledgers").glob("*.db")))]) == 0
    assert "report.html" in printed and (out / "report.html").exists()
    if mode == "ex_post":   # the same directory again: a new run starts from empty ledgers
        assert main(["simulate", str(scenario_file), "--out", str(out), "--no-progress",
                     "--no-plots", "--mechanisms", ""]) == 0
        capsys.readouterr()
        again = json.loads((out / "summary.json").read_text())
        assert again["ledgers_valid"] is True and again["trades"] == pytest.approx(
            summary["trades"], rel=0.2)


def test_simulate_names_a_bad_scenario_and_processes(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("meters = 0\n")
    assert main(["simulate", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "meters = 0" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text("meters = 4\nprocesses = 1\n")
    assert main(["simulate", str(good), "--processes", "9", "--out", str(tmp_path / "r")]) == 2
    assert "--processes 9" in capsys.readouterr().err
