"""One simulated run end to end: profiles, the swarm of real nodes, baselines, run directory.

    summary = simulate(load_scenario("examples/quickstart.toml"), Path("runs/quickstart"))

This is what ``p2pnode simulate`` and ``make run`` call, and what a sweep calls per point.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from simulator.mint_audit import backed_trades
from simulator.mechanisms import check_names, compare_mechanisms, scenario_feeder
from simulator.profiles import build_profiles
from simulator.report import write_run
from simulator.scenario import Scenario
from simulator.strategic import write_strategic
from simulator.swarm import SwarmRun, run_swarm
from simulator.trades import TRADE_FIELDS, RunStats, TradeLog

__all__ = ["DEFAULT_MECHANISMS", "fault_stats", "run_stats", "simulate"]

WARMUP_DAYS = 7
"""Days of readings each node's forecaster has seen before a real-time run starts."""
DEFAULT_MECHANISMS = ("double_auction", "continuous", "pooling")
"""Compared on every run; add "nsga2" for the welfare optimisation (~15 s per 100-house day)."""


def simulate(scenario: Scenario, out_dir: Path, *, processes: int | None = None,
             mechanisms: Sequence[str] = DEFAULT_MECHANISMS, progress: bool = True,
             plots: bool = True, log: Callable[[str], None] = lambda line: None) -> dict:
    """Run ``scenario`` with real nodes and write its run directory; returns the summary."""
    mechanisms = check_names(mechanisms) if mechanisms else ()
    started = time.perf_counter()
    log(f"building profiles for {scenario.meters} meters x {scenario.intervals} intervals ...")
    profiles, history = run_profiles(scenario)
    log(f"profiles ready ({time.perf_counter() - started:.1f} s); starting "
        f"{scenario.meters} nodes in {processes or scenario.processes} process(es)")
    swarm = run_swarm(scenario, profiles, Path(out_dir), processes=processes, progress=progress,
                      history=history)
    log(f"swarm done ({swarm.wall_s:.1f} s); computing the optimum and the baselines ...")
    feeder = scenario_feeder(scenario.feeder) if "nsga2" in mechanisms else None
    baselines = compare_mechanisms(profiles, scenario.tariffs, mechanisms, feeder=feeder,
                                   seed=scenario.seed)
    rows = swarm.trades
    if swarm.lying:   # what liars sold beyond their true surplus came from the grid
        rows, unbacked_wh = backed_trades(rows, np.floor(profiles.surplus_wh), set(swarm.lying))
        swarm.mint_check = dict(swarm.mint_check or {}, lying_unbacked_sold_kwh=round(
            unbacked_wh / 1000, 3))
    rows = within_deficits(rows, profiles)
    trades = TradeLog.from_rows([{k: v for k, v in row.items() if k in TRADE_FIELDS}
                                 for row in rows]) if rows else TradeLog.empty()
    write_strategic(Path(out_dir), swarm.trades, swarm.roles, scenario.intervals,
                    scenario.interval_s, plots=plots)
    optimum_wh = float(np.nansum(baselines.optimum.matched_wh))
    return write_run(Path(out_dir), scenario, profiles, baselines, trades,
                     run_stats(swarm, rows, optimum_wh), plots=plots)


def within_deficits(rows: list[dict], profiles) -> list[dict]:
    """The trades with what a buyer received beyond its metered deficit taken out.

    Bought ahead on a forecast, a buyer may receive more than it turned out to need; that
    energy flowed on to the grid (the buyer exported it), so it is not matched locally.  Each
    (buyer, interval)'s deliveries are scaled down to the deficit, in whole Wh.
    """
    totals: dict[tuple[int, int], int] = {}
    for row in rows:
        key = (row["buyer"], row["interval"])
        totals[key] = totals.get(key, 0) + row["delivered_wh"]
    deficit = np.floor(profiles.deficit_wh)
    out = []
    for row in rows:
        total, need = totals[(row["buyer"], row["interval"])], \
            int(deficit[row["buyer"], row["interval"]])
        if total > need:
            row = dict(row, delivered_wh=row["delivered_wh"] * need // total)
        out.append(row)
    return out


def run_profiles(scenario: Scenario):
    """The run's profiles and the :data:`WARMUP_DAYS` before them on the same houses (what the
    nodes' forecasters learned from before a run ahead of delivery), cut from one build of
    all those days: the houses' loads, PV and batteries carry on from the warm-up into the run.
    Every market mode trades the same profiles."""
    spec = scenario.profile_spec()
    longer = dataclasses.replace(spec, day=spec.day - timedelta(days=WARMUP_DAYS),
                                 days=spec.days + WARMUP_DAYS)
    both = build_profiles(longer)
    warm = WARMUP_DAYS * 86400 // scenario.interval_s
    return both.window(warm, scenario.intervals), both.window(0, warm)


def forward_stats(swarm: SwarmRun, matched: list[dict], optimum_wh: float) -> dict[str, float]:
    """Trading ahead of delivery: what was delivered against what was agreed and against the
    perfect-foresight optimum, shortfalls, imbalance charges, durations, forecast skill.

    ``matched``: the trades as :func:`within_deficits` counts them (delivered energy that met a
    buyer's real deficit): ``delivered_local_kwh`` and ``forward_match_ratio`` use it;
    ``delivered_share`` is over everything the sellers' meters delivered.  Ahead of delivery,
    ``balancing_kwh`` is the part of ``delivered_local_kwh`` the balancing round traded (agreed
    once the interval was metered) and ``ahead_match_ratio`` the forward market's own share of
    the optimum, without it."""
    rows = swarm.trades
    agreed = sum(r["energy_wh"] for r in rows)
    delivered = sum(r["delivered_wh"] for r in rows)
    local = sum(r["delivered_wh"] for r in matched)
    balancing = 0 if swarm.forecast_wh is None else \
        sum(r["delivered_wh"] for r in matched if r.get("after_delivery"))
    durations = sorted(r.get("duration_s", 0.0) for r in rows)
    stats = {
        "delivered_local_kwh": round(local / 1000, 3),
        "perfect_foresight_match_kwh": round(optimum_wh / 1000, 3),
        "forward_match_ratio": round(local / optimum_wh, 4) if optimum_wh else 1.0,
        "balancing_kwh": round(balancing / 1000, 3),
        "ahead_match_ratio": round((local - balancing) / optimum_wh, 4) if optimum_wh else 1.0,
        "delivered_share": round(delivered / agreed, 4) if agreed else 1.0,
        "shortfall_kwh": round((agreed - delivered) / 1000, 3),
        "imbalance_cost": round(sum(r.get("imbalance_micro", 0) for r in rows) / 1e6, 4),
        "trade_duration_s_p50": float(np.median(durations)) if durations else 0.0,
    }
    stats.update(swarm.forecast_skill)
    return stats


def forward_series(swarm: SwarmRun) -> dict[str, tuple[float, ...]]:
    """Per interval (kWh): what the nodes forecast when they traded, and what their trades
    agreed and the sellers' meters delivered (the report's forecast and shortfall plots)."""
    if swarm.forecast_wh is None:
        return {}
    count = swarm.forecast_wh.shape[1]
    agreed, delivered = np.zeros(count), np.zeros(count)
    for row in swarm.trades:
        if 0 <= row["interval"] < count:
            agreed[row["interval"]] += row["energy_wh"]
            delivered[row["interval"]] += row["delivered_wh"]
    return {"forecast_surplus_kwh": tuple(swarm.forecast_wh[0] / 1000),
            "forecast_deficit_kwh": tuple(swarm.forecast_wh[1] / 1000),
            "agreed_kwh": tuple(agreed / 1000), "delivered_kwh": tuple(delivered / 1000)}


def fault_stats(swarm: SwarmRun) -> dict[str, float]:
    """Churn and attacks (:mod:`simulator.faults`): what happened and what the nodes did.

    ``attack_*`` is what the malicious houses sent and what the honest nodes accepted or
    answered (forged records accepted and forged messages answered must stay 0);
    ``forged_records_held``: forged records found in honest DHT stores at the end (must be 0);
    ``denied_unknown_offer``: honest sellers' refusals of requests for offers that do not exist
    (the flood's well-formed requests); ``unsettled_after_restart``: trades a churned buyer
    had agreed but not settled when it went down that never settled (its new node does not
    know them); ``reachable_optimum_kwh``: the optimum over the honest nodes that are up
    (the summary's optimum counts every house, attackers and offline intervals included), and
    ``reachable_match_ratio`` the local match against it.  With lying houses or meter keys, the
    feeder's cross-check of minted tokens (:func:`simulator.mint_audit.summarise`:
    ``lying_nodes``, ``lying_caught``, ``lying_missed``, ``honest_flagged``, ``mint_flags_*``,
    ``mint_excess_kwh``; ``untrusted_mints`` with meter keys); with skewed clocks,
    :func:`skew_stats`."""
    counters = swarm.counters
    mint_check = {**(swarm.mint_check or {}), **skew_stats(swarm)}
    if not (swarm.attackers or counters.get("churn_outages")):
        return mint_check
    stats: dict[str, float] = {"malicious_nodes": len(swarm.attackers), **mint_check}
    stats.update({name: counters.get(name, 0) for name in (
        "churn_outages", "node_restarts", "restarts_on_new_ports", "unsettled_after_restart",
        "forged_records_held")})
    stats["denied_unknown_offer"] = counters.get("denied_to_peer_unknown_offer", 0)
    if swarm.reachable_optimum_wh is not None:
        matched_wh = sum(row["delivered_wh"] for row in swarm.trades)
        stats["reachable_optimum_kwh"] = round(swarm.reachable_optimum_wh / 1000, 3)
        stats["reachable_match_ratio"] = round(matched_wh / swarm.reachable_optimum_wh, 4) \
            if swarm.reachable_optimum_wh else 1.0
    stats.update({k: v for k, v in sorted(counters.items()) if k.startswith("attack_")})
    return stats


def skew_stats(swarm: SwarmRun) -> dict[str, float]:
    """Skewed clocks (``[faults] clock_skew_share``): how many nodes, the largest offset, and
    what the skewed nodes traded: ``clock_skewed_traded_nodes`` of them have a settled trade,
    ``clock_skewed_trades`` have a skewed buyer or seller, ``clock_skewed_bought_kwh`` /
    ``clock_skewed_sold_kwh`` were delivered to and by them; ``clock_*_bought_kwh_per_buyer``:
    the mean delivered to a skewed / an unskewed node that bought.  The buyers' repeated
    discoveries are ``rediscoveries``, messages refused for their time ``dropped`` ``stale`` /
    ``future``."""
    skewed = swarm.skewed
    if not skewed:
        return {}
    rows = swarm.trades

    def bought_per_buyer(mine: bool) -> float:
        chosen = [r for r in rows if (r["buyer"] in skewed) == mine]
        buyers = len({r["buyer"] for r in chosen})
        return round(sum(r["delivered_wh"] for r in chosen) / 1000 / buyers, 3) if buyers else 0.0

    return {
        "clock_skewed_nodes": len(skewed),
        "clock_skew_max_s": max(abs(v) for v in skewed.values()),
        "clock_skewed_traded_nodes": len({h for r in rows for h in (r["buyer"], r["seller"])
                                          if h in skewed}),
        "clock_skewed_trades": sum(1 for r in rows if r["buyer"] in skewed
                                   or r["seller"] in skewed),
        "clock_skewed_bought_kwh": round(sum(r["delivered_wh"] for r in rows
                                             if r["buyer"] in skewed) / 1000, 3),
        "clock_skewed_sold_kwh": round(sum(r["delivered_wh"] for r in rows
                                           if r["seller"] in skewed) / 1000, 3),
        "clock_skewed_bought_kwh_per_buyer": bought_per_buyer(True),
        "clock_other_bought_kwh_per_buyer": bought_per_buyer(False),
    }


def run_stats(swarm: SwarmRun, matched: list[dict] | None = None,
              optimum_wh: float | None = None) -> RunStats:
    counters = swarm.counters
    dropped = {k.removeprefix("peer_dropped_"): v for k, v in counters.items()
               if k.startswith("peer_dropped_")}
    dropped.update({k.removeprefix("dht_"): v for k, v in counters.items()
                    if k.startswith(("dht_stored_", "dht_found_", "dht_dropped_"))
                    or k == "dht_bad_datagram"})
    extra = {f"{step}_wall_s": round(v, 3) for step, v in swarm.step_wall_s.items()}
    extra.update({name: counters.get(name, 0) for name in (
        "discoveries", "offers_published", "offers_updated", "unsettled_trades",
        "unconfirmed_proposals", "retransmissions_answered", "no_reply", "rediscoveries",
        "offers_rejected", "offers_not_stored", "dht_publish_not_stored", "dht_publish_timeout",
        "dht_store_unanswered", "dht_store_refused", "chance_offers")})
    extra.update({k: v for k, v in sorted(counters.items())   # denials by the sellers' reason
                  if k.startswith("denied_") and not k.startswith("denied_to_peer_")})
    extra.update(fault_stats(swarm))
    extra.update(forward_stats(swarm, swarm.trades if matched is None else matched,
                               swarm.optimum_wh if optimum_wh is None else optimum_wh))
    return RunStats(wall_s=swarm.wall_s, processes=swarm.processes,
                    per_interval=forward_series(swarm),
                    double_settlements=swarm.double_settlements,
                    ledgers_valid=not swarm.audit_problems,
                    ledger_problems=tuple(swarm.audit_problems),
                    peer_messages=counters.get("messages_sent", 0),
                    denied=sum(v for k, v in counters.items() if k.startswith("denied_")
                               and not k.startswith("denied_to_peer_")),
                    dropped=dropped, extra=extra)
