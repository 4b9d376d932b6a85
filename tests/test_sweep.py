"""Sweeps: sweep files, points and ids, resumable runs of real swarms, Dask, NSGA-II, best.toml."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from p2pnode.cli import main
from simulator import ScenarioError, load_scenario
from simulator.sweep import SweepError, load_results, load_sweep, plan, run_sweep
from simulator.sweep_points import Point, grid_configs, point_id, point_scenario, random_configs
from simulator.sweep_scenario import scenario_to_raw, scenario_toml
from simulator.sweep_spec import SUMMARY_METRICS, Cluster, sweep_from_dict
from simulator.sweep_table import pareto_mask

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY_BASE = """
name = "tiny"
seed = 3
meters = 4
processes = 1
feeder = "none"
[time]
interval_s = 3600
acceleration = 1000000.0
"""


def write_sweep(tmp_path: Path, body: str, name: str = "sweep.toml") -> Path:
    (tmp_path / "tiny.toml").write_text(TINY_BASE)
    path = tmp_path / name
    path.write_text('base = "tiny.toml"\n' + body)
    return path


def problems_of(tmp_path: Path, body: str) -> str:
    with pytest.raises(SweepError) as caught:
        load_sweep(write_sweep(tmp_path, body))
    return str(caught.value)


OBJECTIVES = '[objectives]\nlocal_match_ratio = "max"\nmessages_per_trade = "min"\n'


# -- the sweep file ----------------------------------------------------------------------------

def test_bad_method_and_unknown_keys_are_named(tmp_path):
    text = problems_of(tmp_path, 'method = "annealing"\nworkerz = 2\n' + OBJECTIVES +
                       '[parameters]\n"weights.trade_surplus" = [1.0]\n')
    assert 'sweep.toml: method = "annealing": must be one of "grid", "random", "nsga2"' in text
    assert 'workerz = 2: unknown key; did you mean "workers"?' in text


def test_bad_parameter_paths_and_values_are_named_all_at_once(tmp_path):
    text = problems_of(tmp_path, OBJECTIVES + '[parameters]\n'
                       '"weights.quality" = [1.0]\n'
                       '"weights.trade_surplus" = []\n'
                       '"weights.transfer_efficiency" = [1.0, -2.0]\n'
                       'seed = [1, 2]\n'
                       '"faults.loss" = {low = 0.0, high = 0.1}\n')
    lines = text.splitlines()
    assert len(lines) == 5, text
    assert '[parameters] weights.quality = [1.0]: not a scenario key; did you mean ' \
           '"weights.transaction_quality"?' in text
    assert "[parameters] weights.trade_surplus = []: must list at least one value" in text
    assert "[parameters] weights.transfer_efficiency = -2.0: [weights] transfer_efficiency = " \
           "-2.0: must be at least 0" in text
    assert "[parameters] seed = [1, 2]: cannot be set here: use `repeats`" in text
    assert "[parameters] faults.loss = {low = 0.0, high = 0.1}: a grid needs a list of values" \
        in text


def test_missing_tables_metrics_and_method_options_are_named(tmp_path):
    text = problems_of(tmp_path, 'samples = 4\n[objectives]\nlocal_match = "max"\n'
                       'trades = "most"\n[cluster]\nengine = "spark"\n')
    assert 'samples = 4: is only used with method = "random"' in text
    assert '[objectives] local_match = "max": unknown metric; did you mean ' \
           '"local_match_kwh"?' in text
    assert '[objectives] trades = "most": must be one of "max", "min"' in text
    assert '[cluster] engine = "spark": must be one of "dask", "ray"' in text
    assert "[cluster] address: is required" in text
    assert "parameters: is required" in text
    (tmp_path / "nobase.toml").write_text(OBJECTIVES + '[parameters]\nmeters = [4]\n')
    with pytest.raises(SweepError, match="base: is required"):
        load_sweep(tmp_path / "nobase.toml")


def test_an_invalid_combination_fails_before_anything_runs(tmp_path):
    path = write_sweep(tmp_path, OBJECTIVES + '[parameters]\n"households.pv_share" = [0.1, 0.5]\n'
                       '"households.battery_share" = [0.3]\n')
    spec = load_sweep(path)   # each value alone is valid on the base
    calls = []
    with pytest.raises(ScenarioError, match=r"point \w+ \(households.pv_share=0.1, "
                       r"households.battery_share=0.3\).*battery_share = 0.3: must not exceed"):
        run_sweep(spec, tmp_path / "out", evaluate=lambda s, d: calls.append(s), progress=False)
    assert calls == [] and not (tmp_path / "out").exists()


def test_scenario_documents_round_trip_through_toml(tmp_path):
    for example in sorted(EXAMPLES.glob("*.toml")):
        if example.name.startswith("sweep"):
            continue
        scenario = load_scenario(example)
        target = tmp_path / example.name
        target.write_text(scenario_toml(scenario_to_raw(scenario), "header\nline two"))
        assert load_scenario(target) == scenario, example.name


# -- points ------------------------------------------------------------------------------------

def test_grid_and_random_points_are_pure_and_deterministic(tmp_path):
    body = OBJECTIVES + '[parameters]\n"weights.trade_surplus" = [0.0, 1.0, 3.0]\n' \
        'selection.strategy = ["ga", "greedy"]\n'
    grid = load_sweep(write_sweep(tmp_path, "repeats = 2\n" + body, "grid.toml"))
    assert grid_configs(grid) == [(0.0, "ga"), (0.0, "greedy"), (1.0, "ga"), (1.0, "greedy"),
                                  (3.0, "ga"), (3.0, "greedy")]
    points = plan(grid)
    assert len(points) == 12 and len({p.id for p in points}) == 12
    assert [p.seed for p in points[:4]] == [3, 4, 3, 4]   # base seed, then the next
    assert [p.id for p in plan(grid)] == [p.id for p in points]

    ranged = '[parameters]\n"weights.trade_surplus" = {low = 0.5, high = 2.5}\n' \
        'meters = {low = 2, high = 6}\nselection.strategy = ["ga", "greedy", "exact"]\n'
    first = load_sweep(write_sweep(tmp_path, 'method = "random"\nsamples = 40\nseed = 9\n'
                                   + OBJECTIVES + ranged, "r1.toml"))
    configs = random_configs(first)
    assert configs == random_configs(first)
    assert all(0.5 <= w <= 2.5 and round(w, 4) == w for w, _, _ in configs)
    assert all(isinstance(m, int) and 2 <= m <= 6 for _, m, _ in configs)
    assert {m for _, m, _ in configs} == {2, 3, 4, 5, 6}
    assert {s for *_, s in configs} == {"ga", "greedy", "exact"}
    other = load_sweep(write_sweep(tmp_path, 'method = "random"\nsamples = 40\nseed = 10\n'
                                   + OBJECTIVES + ranged, "r2.toml"))
    assert random_configs(other) != configs


def test_point_ids_are_stable_hashes_of_parameters_and_seed():
    params = {"weights.trade_surplus": 1.0, "selection.strategy": "ga"}
    # a golden value: ids name run directories, so they must never change between versions
    assert point_id(params, 42) == "af0afd2a090f"
    assert point_id(dict(reversed(list(params.items()))), 42) == point_id(params, 42)
    assert point_id(params, 43) != point_id(params, 42)
    assert point_id({**params, "weights.trade_surplus": 1.5}, 42) != point_id(params, 42)
    point = Point(tuple(params.items()), 42, generation=3)
    assert point.id == point_id(params, 42) and point == Point(tuple(params.items()), 42)


def test_pareto_mask_keeps_only_undominated_rows():
    scores = np.array([[1, 1], [2, 0], [0, 2], [0.5, 0.5], [1, 1], [np.nan, 5]])
    assert pareto_mask(scores).tolist() == [True, True, True, False, True, False]


# -- running -----------------------------------------------------------------------------------

def fake_summary(scenario, run_dir):
    """A stand-in for a swarm: the metrics are simple functions of the weights."""
    w = scenario.weights
    if w.market_participation > 5:
        raise RuntimeError("this point breaks")
    return {"local_match_ratio": 1 - 0.1 * w.trade_surplus, "trades": 10,
            "messages_per_trade": 3 + w.trade_surplus - (scenario.selection.strategy == "ga"),
            "ledgers_valid": True, "double_settlements": 0}


def test_failed_points_run_again_and_another_sweep_is_refused(tmp_path):
    body = OBJECTIVES + '[parameters]\n"weights.trade_surplus" = [0.0, 1.0]\n' \
        '"weights.market_participation" = [1.0, 9.0]\n'
    spec = load_sweep(write_sweep(tmp_path, "workers = 1\n" + body))
    out = tmp_path / "out"
    first = run_sweep(spec, out, evaluate=fake_summary, progress=False)
    assert (first.ran, first.skipped, first.failed) == (4, 0, 2)
    failed = first.table[first.table["status"] == "failed"]
    assert set(failed["weights.market_participation"]) == {9.0}
    assert all("RuntimeError: this point breaks" in e for e in failed["error"])
    assert all((out / "points" / pid / "error.txt").exists() for pid in failed["point_id"])

    def fixed(scenario, run_dir):
        if scenario.weights.market_participation > 5:
            return {"local_match_ratio": 0.5, "messages_per_trade": 3.0, "trades": 7}
        return fake_summary(scenario, run_dir)

    second = run_sweep(spec, out, evaluate=fixed, progress=False)
    assert (second.ran, second.skipped, second.failed) == (2, 2, 0)
    assert len(second.table) == 4 and second.table["point_id"].is_unique
    assert sorted(second.table["trades"]) == [7, 7, 10, 10]
    assert load_results(spec, out).table.equals(second.table)

    other = load_sweep(write_sweep(tmp_path, "workers = 1\n" + body.replace("1.0]", "2.0]"),
                                   "other.toml"))
    with pytest.raises(SweepError, match="belongs to another sweep"):
        run_sweep(other, out, evaluate=fake_summary, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    with pytest.raises(SweepError, match="not empty and holds no sweep"):
        run_sweep(spec, tmp_path / "busy", evaluate=fake_summary, progress=False)
    # other objectives of a grid: the same sweep, re-analysed without running anything
    again = load_sweep(write_sweep(tmp_path, "workers = 1\n" + body.replace(
        'messages_per_trade = "min"', 'trades = "max"'), "reanalyse.toml"))
    assert run_sweep(again, out, evaluate=fake_summary, progress=False).ran == 0


REAL_BODY = """
workers = 2
[parameters]
"weights.trade_surplus" = [0.0, 3.0]
[objectives]
local_match_ratio = "max"
messages_per_trade = "min"
"""


def test_a_real_sweep_resumes_and_writes_a_loadable_best_scenario(tmp_path, capsys):
    path = write_sweep(tmp_path, REAL_BODY)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "2 run(s) now, 0 finished before, 0 failed" in printed
    first = pd.read_csv(out / "results.csv")
    assert len(first) == 2 and set(first["status"]) == {"ok"}
    assert set(SUMMARY_METRICS) <= set(first.columns)
    assert (first["trades"] > 0).all() and first["ledgers_valid"].all()
    for _, row in first.iterrows():
        summary = json.loads((out / "points" / row["point_id"] / "summary.json").read_text())
        assert summary["local_match_ratio"] == pytest.approx(row["local_match_ratio"])
        assert summary["scenario"]["weights"]["trade_surplus"] == row["weights.trade_surplus"]
    result = run_sweep(load_sweep(path), out, progress=False)
    assert (result.ran, result.skipped) == (0, 2)
    assert len(result.table) == 2 and result.table["point_id"].is_unique
    assert pd.read_csv(out / "results.csv").equals(first)
    best = load_scenario(out / "best.toml")
    assert best == result.best_scenario == point_scenario(result.spec, result.best_point)
    assert best.meters == 4 and best.seed == 3
    assert {(out / name).stat().st_size > 0 for name in
            ("sensitivity.png", "pareto.png", "results.parquet")} == {True}
    assert pd.read_parquet(out / "results.parquet")["point_id"].tolist() == \
        result.table["point_id"].tolist()


def test_points_run_on_a_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    path = write_sweep(tmp_path, REAL_BODY)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  protocol="tcp", host="127.0.0.1", scheduler_port=0,
                                  dashboard_address=None) as cluster:
        spec = dataclasses.replace(load_sweep(path),
                                   cluster=Cluster("dask", cluster.scheduler_address))
        result = run_sweep(spec, tmp_path / "out", progress=False)
    assert (result.ran, result.failed) == (2, 0)
    assert (result.table["trades"] > 0).all() and result.table["ledgers_valid"].all()
    assert (result.table["local_match_ratio"] > 0.5).all()


@pytest.mark.slow
def test_points_run_on_a_local_ray_instance(tmp_path):
    pytest.importorskip("ray")
    path = write_sweep(tmp_path, REAL_BODY.replace("[0.0, 3.0]", "[1.0]") +
                       '[cluster]\nengine = "ray"\naddress = "local"\n')
    result = run_sweep(load_sweep(path, workers=1), tmp_path / "out", progress=False)
    assert (result.ran, result.failed) == (1, 0)
    assert result.table["trades"].iloc[0] > 0 and result.table["ledgers_valid"].all()


def test_an_unreachable_dask_scheduler_is_a_clear_error(tmp_path):
    pytest.importorskip("distributed")
    path = write_sweep(tmp_path, REAL_BODY + '[cluster]\nengine = "dask"\n'
                       'address = "tcp://127.0.0.1:9"\ntimeout_s = 1\n')
    spec = load_sweep(path)
    with pytest.raises(SweepError, match=r'\[cluster\] address = "tcp://127.0.0.1:9": cannot '
                                         r'connect'):
        run_sweep(spec, tmp_path / "out", progress=False)


# -- NSGA-II -----------------------------------------------------------------------------------

def bowl(scenario, run_dir):
    """Two objectives with a known front: minimise f1 = x^2 + y^2 + p and
    f2 = (1 - x)^2 + y^2 + p, where p = 0.5 unless the strategy is "ga".  The Pareto front is
    y = 0, strategy "ga", x in [0, 1]: f2 = (1 - sqrt(f1))^2."""
    x, y = scenario.weights.trade_surplus, scenario.weights.transfer_efficiency
    penalty = 0.0 if scenario.selection.strategy == "ga" else 0.5
    return {"messages_per_trade": x * x + y * y + penalty,
            "decision_ms_p50": (1 - x) ** 2 + y * y + penalty}


def hypervolume(f1, f2, reference=(1.2, 1.2)) -> float:
    """Area dominated by the points (both minimised) inside the reference box."""
    area, ceiling = 0.0, reference[1]
    for a, b in sorted(zip(f1, f2)):
        if a < reference[0] and b < ceiling:
            area, ceiling = area + (reference[0] - a) * (ceiling - b), b
    return area


NSGA2_BODY = """
method = "nsga2"
population = 16
generations = 20
workers = 1
[parameters]
"weights.trade_surplus" = {low = 0.0, high = 1.0}
"weights.transfer_efficiency" = {low = 0.0, high = 1.0}
"selection.strategy" = ["greedy", "ga", "exact"]
[objectives]
messages_per_trade = "min"
decision_ms_p50 = "min"
"""


def test_nsga2_converges_on_the_known_front_and_repeats_for_a_seed(tmp_path):
    path = write_sweep(tmp_path, f"seed = 5\n{NSGA2_BODY}")
    result = run_sweep(load_sweep(path), tmp_path / "a", evaluate=bowl, progress=False)
    table = result.table
    assert set(table["generation"]) == set(range(21)) and table["point_id"].is_unique
    x = np.linspace(0, 1, 4001)
    known = hypervolume(x ** 2, (1 - x) ** 2)
    found = hypervolume(table["messages_per_trade"], table["decision_ms_p50"])
    first = table[table["generation"] == 0]
    start = hypervolume(first["messages_per_trade"], first["decision_ms_p50"])
    assert found >= 0.97 * known and start <= 0.9 * known, (found / known, start / known)
    front = result.pareto()
    assert len(front) >= 10 and set(front["selection.strategy"]) == {"ga"}
    gap = front["weights.transfer_efficiency"] ** 2      # distance above the known front
    assert gap.max() <= 0.05 and gap.median() <= 0.01, front
    assert np.ptp(front["weights.trade_surplus"]) >= 0.8   # the whole front, not one end

    same = run_sweep(load_sweep(path), tmp_path / "b", evaluate=bowl, progress=False)
    ordered = [t.sort_values("point_id").drop(columns="point_wall_s").reset_index(drop=True)
               for t in (same.table, table)]
    assert ordered[0].equals(ordered[1])
    other = run_sweep(load_sweep(write_sweep(tmp_path, f"seed = 6\n{NSGA2_BODY}", "s6.toml")),
                      tmp_path / "c", evaluate=bowl, progress=False)
    assert set(other.table["point_id"]) != set(table["point_id"])


# -- command line ------------------------------------------------------------------------------

def test_dry_run_lists_points_and_bad_files_exit_2(tmp_path, capsys):
    path = write_sweep(tmp_path, OBJECTIVES +
                       '[parameters]\n"weights.trade_surplus" = [0.0, 1.0]\n')
    assert main(["sweep", str(path), "--dry-run", "--workers", "3"]) == 0
    printed = capsys.readouterr().out
    assert "grid sweep of 2 run(s)" in printed and "3 worker(s)" in printed
    assert printed.count("weights.trade_surplus=") == 2
    bad = write_sweep(tmp_path, OBJECTIVES + '[parameters]\n"weights.trade_surplus" = [-1.0]\n',
                      "bad.toml")
    assert main(["sweep", str(bad), "--dry-run"]) == 2
    assert "trade_surplus = -1.0: must be at least 0" in capsys.readouterr().err
    assert main(["sweep", str(path), "--workers", "0"]) == 2


def test_sweep_from_dict_resolves_base_against_the_folder(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY_BASE)
    spec = sweep_from_dict({"base": "tiny.toml", "parameters": {"meters": [4, 5]},
                            "objectives": {"trades": "max"},
                            "fixed": {"weights": {"trade_surplus": 2.0}}}, tmp_path)
    assert spec.base["weights"]["trade_surplus"] == 2.0 and spec.base["meters"] == 4
    assert [point_scenario(spec, p).meters for p in plan(spec)] == [4, 5]
