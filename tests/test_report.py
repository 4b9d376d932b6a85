"""The run directory: a real community (12 houses, BDEW load, pvlib PV), real baselines (exact
optimum and the double auction of ``optimizer.markets``), and trades derived from the optimum's
allocation in whole Wh, written by :func:`simulator.write_run` and read back independently.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
import re
import struct
from datetime import datetime, timedelta

import numpy as np
import pytest

from simulator import (
    RunStats, Scenario, TradeLog, build_profiles, print_summary, run_baselines, write_run,
)
from simulator.report_forward import plot_forecast_vs_actual, plot_shortfalls
from simulator.report import (
    PLOTS, interval_rows, plot_energy_flows, plot_matched_vs_optimum, plot_savings,
    render_plots, score_run,
)

double_auction = pytest.importorskip("tests.test_optimum_auction").double_auction

NAME = 'Dorf <script>alert("x")</script> & Co'
REQUIRED = ("meters", "intervals", "local_match_kwh", "optimum_match_kwh", "local_match_ratio",
            "welfare_ratio", "self_sufficiency", "self_consumption", "grid_import_kwh",
            "grid_export_kwh", "wasted_surplus_kwh", "average_p2p_price_per_kwh",
            "savings_gini", "trades", "double_settlements", "ledgers_valid", "ledger_problems",
            "messages_per_trade", "decision_ms_p50", "decision_ms_p95", "transaction_quality",
            "denied", "dropped", "wall_s", "processes", "scenario", "baselines")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def community():
    scenario = Scenario(name=NAME, meters=12, seed=3, feeder="none", processes=2)
    profiles = build_profiles(scenario.profile_spec(), use_cache=False)
    baselines = run_baselines(profiles, scenario.tariffs,
                              markets={"double_auction": double_auction})
    return scenario, profiles, baselines


def pair_greedily(sold_wh: np.ndarray, bought_wh: np.ndarray) -> list[tuple[int, int, int]]:
    """Pair one interval's sellers and buyers, largest first, into whole-Wh trades."""
    sell = {i: int(v) for i, v in enumerate(np.floor(sold_wh)) if v >= 1}
    buy = {j: int(v) for j, v in enumerate(np.floor(bought_wh)) if v >= 1}
    trades = []
    while sell and buy:
        i, j = max(sell, key=sell.get), max(buy, key=buy.get)
        amount = min(sell[i], buy[j])
        trades.append((i, j, amount))
        for side, house in ((sell, i), (buy, j)):
            side[house] -= amount
            if side[house] == 0:
                del side[house]
    return trades


@pytest.fixture(scope="module")
def trades(community):
    """The optimum's allocation as trades at the mid price; every 5th delivers only 90 %."""
    _, profiles, baselines = community
    optimum, prices = baselines.optimum, baselines.prices
    rng = np.random.default_rng(7)
    rows = []
    for t in range(profiles.intervals):
        mid = (prices.retail_per_kwh[t] + prices.feed_in_per_kwh[t]) / 2
        for seller, buyer, energy in pair_greedily(optimum.sold_wh[:, t], optimum.bought_wh[:, t]):
            delivered = energy if len(rows) % 5 else int(energy * 0.9)
            rows.append({"interval": t, "seller": seller, "buyer": buyer, "energy_wh": energy,
                         "delivered_wh": delivered, "price_per_kwh": mid,
                         "decision_ms": float(rng.gamma(2.0, 40.0)),
                         "messages": 2 + len(rows) % 3})
    assert len(rows) > 20, "the test community should trade"
    return TradeLog.from_rows(rows)


STATS = RunStats(wall_s=12.5, processes=2, double_settlements=0, ledgers_valid=True,
                 peer_messages=900, denied=4, dropped={"bad_signature": 3},
                 extra={"dht_lookup_ms_p50": 4.5, "unknown": float("nan")})


@pytest.fixture(scope="module")
def run_dir(community, trades, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary = write_run(out, *community, trades, STATS)
    return out, summary


def strict_json(text: str):
    def reject(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=reject)


def read_csv(path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_summary_is_strict_json_with_every_key(run_dir, community, trades):
    out, summary = run_dir
    on_disk = strict_json((out / "summary.json").read_text())
    assert on_disk == summary
    assert set(REQUIRED) <= set(on_disk)
    _, profiles, _ = community
    assert (on_disk["meters"], on_disk["intervals"]) == (12, profiles.intervals)
    assert on_disk["scenario"]["name"] == NAME
    assert on_disk["extra"] == {"dht_lookup_ms_p50": 4.5, "unknown": None}
    assert set(on_disk["baselines"]) == {"no_trading", "optimum", "double_auction"}
    assert on_disk["baselines"]["no_trading"]["local_match_kwh"] == 0
    assert on_disk["baselines"]["optimum"]["local_match_ratio"] == pytest.approx(1.0)
    assert on_disk["baselines"]["double_auction"]["local_match_ratio"] == pytest.approx(1.0)


def test_scores_agree_with_an_independent_count(run_dir, community, trades):
    _, summary = run_dir
    _, profiles, _ = community
    # Unconstrained optimum: per interval, everything the smaller side has.
    optimum_kwh = np.minimum(profiles.surplus_wh.sum(axis=0),
                             profiles.deficit_wh.sum(axis=0)).sum() / 1000
    delivered_kwh = trades.delivered_wh.sum() / 1000
    assert summary["optimum_match_kwh"] == pytest.approx(optimum_kwh)
    assert summary["local_match_kwh"] == pytest.approx(delivered_kwh)
    assert summary["local_match_ratio"] == pytest.approx(delivered_kwh / optimum_kwh)
    assert 0.8 < summary["local_match_ratio"] < 1.0        # whole Wh and partial deliveries
    assert summary["trades"] == len(trades)
    assert summary["transaction_quality"] == pytest.approx(
        trades.delivered_wh.sum() / trades.energy_wh.sum())
    assert summary["transaction_quality"] < 1
    assert summary["messages_per_trade"] == pytest.approx(trades.messages.mean())
    assert summary["peer_messages_per_trade"] == pytest.approx(900 / len(trades))
    assert summary["decision_ms_p50"] == pytest.approx(np.median(trades.decision_ms))
    assert summary["decision_ms_p95"] > summary["decision_ms_p50"]
    consumption = profiles.consumption_wh.sum() / 1000
    imported = (profiles.deficit_wh.sum() - trades.delivered_wh.sum()) / 1000
    assert summary["self_sufficiency"] == pytest.approx(1 - imported / consumption)


def test_interval_table_adds_up_to_the_summary(run_dir, community):
    out, summary = run_dir
    rows = read_csv(out / "intervals.csv")
    _, profiles, _ = community
    assert len(rows) == profiles.intervals
    starts = [datetime.fromisoformat(row["start"]) for row in rows]
    assert starts[0] == datetime(2023, 6, 30)
    assert {b - a for a, b in zip(starts, starts[1:])} == {timedelta(seconds=900)}

    def total(column):
        return sum(float(row[column]) for row in rows)

    for column, key in (("local_kwh", "local_match_kwh"), ("optimum_kwh", "optimum_match_kwh"),
                        ("grid_import_kwh", "grid_import_kwh"),
                        ("grid_export_kwh", "grid_export_kwh"),
                        ("consumption_kwh", "consumption_kwh")):
        assert total(column) == pytest.approx(summary[key], abs=1e-4), column
    assert sum(int(row["trades"]) for row in rows) == summary["trades"]
    assert total("double_auction_matched_kwh") == pytest.approx(
        summary["baselines"]["double_auction"]["local_match_kwh"], abs=1e-4)
    for row in rows:   # the bookkeeping of every interval: surplus and deficit fully accounted
        local = float(row["local_kwh"])
        assert float(row["surplus_kwh"]) == pytest.approx(
            local + float(row["grid_export_kwh"]) + float(row["wasted_kwh"]), abs=1e-5)
        assert float(row["deficit_kwh"]) == pytest.approx(
            local + float(row["grid_import_kwh"]), abs=1e-5)
        assert (row["p2p_price_per_kwh"] == "") == (int(row["trades"]) == 0)


def test_trade_and_household_tables(run_dir, trades, community):
    out, summary = run_dir
    rows = read_csv(out / "trades.csv")
    assert len(rows) == len(trades)
    _, profiles, _ = community
    for k in (0, len(rows) // 2, len(rows) - 1):
        row = rows[k]
        assert (int(row["interval"]), int(row["seller"]), int(row["buyer"])) == (
            trades.interval[k], trades.seller[k], trades.buyer[k])
        assert row["start"] == str(profiles.interval_start[trades.interval[k]])
        assert float(row["delivered_wh"]) == trades.delivered_wh[k]
    houses = read_csv(out / "households.csv")
    assert [int(h["house"]) for h in houses] == list(range(12))
    assert sum(float(h["savings"]) for h in houses) == pytest.approx(summary["total_savings"],
                                                                      abs=1e-4)
    assert sum(float(h["bought_kwh"]) for h in houses) == pytest.approx(
        summary["local_match_kwh"], abs=1e-4)
    assert sum(int(h["trades_sold"]) for h in houses) == len(trades)
    assert [float(h["pv_kwp"]) > 0 for h in houses] == list(profiles.pv_kwp > 0)


FORWARD_PLOTS = ("forecast_vs_actual", "shortfalls")   # drawn only for runs ahead of delivery


def test_plots_are_png_files_and_show_the_table_data(run_dir, community, trades):
    out, _ = run_dir
    assert not any((out / f"{name}.png").exists() for name in FORWARD_PLOTS)   # ex post
    for name in (n for n in PLOTS if n not in FORWARD_PLOTS):
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (900, 420), name
        assert 15_000 < len(data) < 500_000, name
    run = score_run(*community, trades, STATS)
    axes = plot_matched_vs_optimum(run).axes[0]
    lines = {line.get_label().split(" (")[0]: line for line in axes.get_lines()}
    assert set(lines) == {"optimum", "double_auction"}
    assert lines["optimum"].get_ydata().sum() == pytest.approx(run.metrics.optimum_match_kwh)
    bars = sum(patch.get_height() for patch in axes.patches)
    assert bars == pytest.approx(run.metrics.local_match_kwh)
    assert "kWh" in axes.get_ylabel()
    savings = plot_savings(run).axes[0]
    assert f"{run.metrics.savings_gini:.3f}" in savings.get_title()
    heights = [patch.get_height() for patch in savings.patches]
    assert heights == sorted(heights, reverse=True)
    assert sum(heights) == pytest.approx(run.metrics.total_savings)


def test_forecast_and_shortfall_plots_show_the_per_interval_series(community, trades):
    scenario, profiles, _ = community
    count = profiles.intervals
    agreed = np.linspace(0.0, 2.0, count)
    series = {"forecast_surplus_kwh": tuple(profiles.surplus_wh.sum(axis=0) / 1000 * 1.1),
              "forecast_deficit_kwh": tuple(profiles.deficit_wh.sum(axis=0) / 1000 * 0.9),
              "agreed_kwh": tuple(agreed), "delivered_kwh": tuple(agreed * 0.75)}
    run = score_run(*community, trades, dataclasses.replace(STATS, per_interval=series))
    assert set(render_plots(run)) == set(PLOTS)
    forecast = plot_forecast_vs_actual(run).axes[0]
    lines = {line.get_label(): line.get_ydata() for line in forecast.get_lines()}
    assert lines["surplus, forecast"] == pytest.approx(series["forecast_surplus_kwh"])
    assert lines["deficit, metered"] == pytest.approx(profiles.deficit_wh.sum(axis=0) / 1000)
    short = plot_shortfalls(run).axes[0]
    heights = [patch.get_height() for patch in short.patches]
    assert sum(heights) == pytest.approx(agreed.sum())          # delivered + shortfall stacked
    assert "75.0 %" in short.get_title()
    assert plot_shortfalls(score_run(*community, trades, STATS)) is None   # ex post: no data


def test_export_cap_shows_wasted_surplus(community, trades):
    scenario, profiles, _ = community
    capped = dataclasses.replace(scenario, tariffs=dataclasses.replace(scenario.tariffs,
                                                                       export_limit_kw=1.0))
    baselines = run_baselines(profiles, capped.tariffs)
    run = score_run(capped, profiles, baselines, trades, STATS)
    assert run.metrics.wasted_surplus_kwh > 1.0
    rows = interval_rows(run)
    assert sum(row["wasted_kwh"] for row in rows) == pytest.approx(run.metrics.wasted_surplus_kwh)
    axes = plot_energy_flows(run).axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert {"generation", "consumption", "grid import", "grid export",
            "wasted surplus"} <= set(lines)
    assert lines["wasted surplus"].get_ydata().sum() == pytest.approx(
        run.metrics.wasted_surplus_kwh)
    # Trading at the optimum wastes less than the grid alone under the same cap.
    assert run.metrics.wasted_surplus_kwh < run.baseline_metrics["no_trading"].wasted_surplus_kwh


def test_report_is_self_contained_and_escaped(run_dir):
    out, summary = run_dir
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert "<script" not in page.lower()
    assert "Dorf &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    drawn = [name for name in PLOTS if name not in FORWARD_PLOTS]
    assert len(images) == len(drawn)
    assert sorted(base64.b64decode(i) for i in images) == sorted(
        (out / f"{name}.png").read_bytes() for name in drawn)
    for name in ("intervals.csv", "trades.csv", "households.csv", "summary.json"):
        assert f'href="{name}"' in page
    assert "double_auction" in page and f"{100 * summary['local_match_ratio']:.1f} %" in page


def test_empty_run_is_the_no_trading_baseline(community, tmp_path):
    summary = write_run(tmp_path, *community, TradeLog.empty(),
                        RunStats(wall_s=1.0, processes=1, double_settlements=0,
                                 ledgers_valid=True), plots=False)
    assert summary["local_match_ratio"] == 0 and summary["trades"] == 0
    none = summary["baselines"]["no_trading"]
    for key in ("grid_import_kwh", "grid_export_kwh", "self_sufficiency", "self_consumption"):
        assert summary[key] == pytest.approx(none[key]), key
    assert summary["total_savings"] == 0
    for key in ("transaction_quality", "messages_per_trade", "decision_ms_p50",
                "average_p2p_price_per_kwh"):
        assert summary[key] is None, key
    assert strict_json((tmp_path / "summary.json").read_text()) == summary
    assert read_csv(tmp_path / "trades.csv") == []
    assert (tmp_path / "trades.csv").read_text().startswith("trade,interval,start,")
    assert not list(tmp_path.glob("*.png"))
    assert "Plots were not drawn" in (tmp_path / "report.html").read_text()
    text = print_summary(summary)
    assert "0.0 %" in text and "n/a" in text and "all valid" in text


def test_print_summary_shows_the_headline(run_dir):
    _, summary = run_dir
    text = print_summary(summary)
    assert f"{100 * summary['local_match_ratio']:.1f} %" in text
    assert f"{summary['trades']}," in text
    assert "double_auction 100.0 %" in text
    bad = dict(summary, ledgers_valid=False, ledger_problems=["node 3: hash chain broken"])
    assert "INVALID (1 problems" in print_summary(bad)


def test_trades_that_overbuy_a_house_are_rejected(community, trades, tmp_path):
    _, profiles, _ = community
    house, t = np.unravel_index(np.argmax(profiles.deficit_wh), profiles.deficit_wh.shape)
    seller = (house + 1) % 12
    too_much = int(profiles.deficit_wh[house, t]) + 5
    log = TradeLog.from_rows([(t, seller, house, too_much, too_much, 0.2, 1.0, 1)])
    with pytest.raises(ValueError, match="bought_wh exceeds deficit_wh"):
        write_run(tmp_path, *community, log, STATS)
    assert not (tmp_path / "summary.json").exists()


def test_mismatched_inputs_are_rejected(community, trades, tmp_path):
    scenario, profiles, baselines = community
    with pytest.raises(ValueError, match="13 meters"):
        write_run(tmp_path, dataclasses.replace(scenario, meters=13), profiles, baselines,
                  trades, STATS)
    clash = dataclasses.replace(baselines, markets={"optimum": baselines.no_trading})
    with pytest.raises(ValueError, match="clash"):
        write_run(tmp_path, scenario, profiles, clash, trades, STATS)
    capped = dataclasses.replace(scenario, tariffs=dataclasses.replace(scenario.tariffs,
                                                                       export_limit_kw=2.0))
    with pytest.raises(ValueError, match="other tariffs"):
        write_run(tmp_path, capped, profiles, baselines, trades, STATS)
    with pytest.raises(ValueError, match=r"TradeLog\.seller must be below 12"):
        write_run(tmp_path, scenario, profiles, baselines,
                  TradeLog.from_rows([(0, 12, 1, 10, 10, 0.2, 1.0, 1)]), STATS)
    with pytest.raises(ValueError, match=r"TradeLog\.interval must be below"):
        write_run(tmp_path, scenario, profiles, baselines,
                  TradeLog.from_rows([(96, 0, 1, 10, 10, 0.2, 1.0, 1)]), STATS)


GOOD = {"interval": [0, 1], "seller": [0, 2], "buyer": [1, 3], "energy_wh": [100, 50],
        "delivered_wh": [100, 40], "price_per_kwh": [0.2, 0.18], "decision_ms": [12.0, 30.5],
        "messages": [2, 3]}


@pytest.mark.parametrize("change, field", [
    ({"delivered_wh": [101, 40]}, r"delivered_wh must not exceed energy_wh.*trade 0"),
    ({"energy_wh": [100, -5]}, r"energy_wh must be positive.*trade 1"),
    ({"price_per_kwh": [0.2, -0.1]}, r"price_per_kwh must not be negative"),
    ({"decision_ms": [float("nan"), 1.0]}, r"decision_ms must be finite"),
    ({"buyer": [1]}, r"buyer has 1 entries, expected 2"),
    ({"seller": [0, -1]}, r"seller must not be negative"),
    ({"buyer": [0, 3]}, r"buyer must differ from seller"),
    ({"messages": [2, 2.5]}, r"messages must be whole numbers"),
    ({"interval": [[0], [1]]}, r"interval must be one-dimensional"),
    ({"seller": ["a", "b"]}, r"seller must hold numbers"),
])
def test_trade_log_errors_name_the_field(change, field):
    assert len(TradeLog(**GOOD)) == 2
    with pytest.raises(ValueError, match=field):
        TradeLog(**{**GOOD, **change})


def test_trade_log_rows_and_ranges():
    log = TradeLog.from_rows([dict(zip(GOOD, values)) for values in zip(*GOOD.values())])
    assert log.messages.dtype == np.int64 and log.energy_wh.dtype == np.float64
    assert list(log.delivered_wh) == [100, 40]
    with pytest.raises(ValueError):
        log.energy_wh[0] = 5                             # read-only
    with pytest.raises(ValueError, match="row 1: missing messages; unknown msgs"):
        TradeLog.from_rows([{**dict.fromkeys(GOOD, 1), "buyer": 2},
                            {**dict.fromkeys(list(GOOD)[:-1], 1), "msgs": 1}])
    with pytest.raises(ValueError, match="row 0: expected a mapping or a tuple of 8"):
        TradeLog.from_rows([(0, 1, 2)])
    with pytest.raises(ValueError, match=r"buyer must be below 3 \(houses\): trade 1 has 3"):
        log.check_fits(houses=3, intervals=2)
    arrays = log.per_house(houses=4, intervals=2)
    assert arrays["bought_wh"][3, 1] == 40 and arrays["received"][0, 0] == pytest.approx(0.02)
    assert len(TradeLog.empty()) == 0 and len(TradeLog.from_rows([])) == 0


@pytest.mark.parametrize("change, field", [
    ({"double_settlements": -1}, "double_settlements"),
    ({"processes": 0}, "processes"),
    ({"wall_s": float("inf")}, "wall_s"),
    ({"ledgers_valid": 1}, "ledgers_valid"),
    ({"ledger_problems": ("chain broken",)}, "ledger_problems must be empty"),
    ({"dropped": {"replay": -2}}, r"dropped\['replay'\]"),
    ({"extra": {"p50": "fast"}}, r"extra\['p50'\]"),
])
def test_run_stats_errors_name_the_field(change, field):
    base = {"wall_s": 1.0, "processes": 1, "double_settlements": 0, "ledgers_valid": True}
    with pytest.raises(ValueError, match=field):
        RunStats(**{**base, **change})
    invalid = RunStats(**{**base, "ledgers_valid": False, "ledger_problems": ["x"]})
    assert invalid.ledger_problems == ("x",)

