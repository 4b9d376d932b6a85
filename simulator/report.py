"""A finished run becomes its run directory: scores, tables, plots and a self-contained report.

``write_run(DIR, ...)`` writes::

    DIR/intervals.csv            one row per interval (energy in kWh, prices per kWh, trades)
    DIR/trades.csv               one row per settled trade
    DIR/households.csv           one row per house (PV, battery, energy, money, savings)
    DIR/energy_flows.png, prices.png, matched_vs_optimum.png, savings.png
    DIR/report.html              everything above in one file (PNGs as base64 data URIs)
    DIR/summary.json             strict JSON (NaN as null); written last, so its presence marks
                                 a complete directory

The core is pure: :func:`score_run` settles and scores the trades against every baseline,
:func:`summarize`, the ``*_rows`` functions, the ``plot_*`` functions (matplotlib
:class:`~matplotlib.figure.Figure` objects on the Agg canvas, no pyplot state) and
:func:`render_html` / :func:`print_summary` only compute.  :func:`write_run` is the shell.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from simulator.baselines import Baselines, settle_profiles
from simulator.metrics import Metrics, per_interval, savings_per_house, score
from simulator.outcome import Outcome
from simulator.profiles import Profiles
from simulator.report_forward import plot_forecast_vs_actual, plot_shortfalls
from simulator.scenario import Scenario
from simulator.trades import RunStats, TradeLog

if TYPE_CHECKING:  # matplotlib is imported when the first plot is drawn, not with the package
    from matplotlib.figure import Figure

TRADE_TOLERANCE_WH = 1.0
"""Trades are whole Wh, so a house may buy (sell) up to 1 Wh more than its exact deficit."""
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
TABLE_FILES = ("intervals.csv", "trades.csv", "households.csv")
RESERVED_NAMES = ("run", "no_trading", "optimum")
PLOT_DPI = 100
FIGSIZE = (9.0, 4.2)
COMPARED = ("local_match_kwh", "local_match_ratio", "welfare", "welfare_ratio",
            "self_sufficiency", "self_consumption", "grid_import_kwh", "grid_export_kwh",
            "wasted_surplus_kwh", "average_p2p_price_per_kwh", "total_savings", "savings_gini",
            "households_worse_off")
PERCENT_KEYS = ("local_match_ratio", "welfare_ratio", "self_sufficiency", "self_consumption",
                "transaction_quality")


@dataclass(frozen=True, eq=False)
class ScoredRun:
    """A run settled on its profiles and scored like every baseline.

    ``baseline_metrics``: ``no_trading``, ``optimum`` (its welfare-optimal allocation) and each
    market, scored against the same optimum, prices and no-trading outcome as the run.
    ``savings``: per house against no trading (currency).
    """

    scenario: Scenario
    profiles: Profiles
    baselines: Baselines
    trades: TradeLog
    stats: RunStats
    outcome: Outcome
    metrics: Metrics
    baseline_metrics: dict[str, Metrics]
    savings: np.ndarray

    @property
    def currency(self) -> str:
        return self.scenario.tariffs.currency


def score_run(scenario: Scenario, profiles: Profiles, baselines: Baselines, trades: TradeLog,
              stats: RunStats) -> ScoredRun:
    """Settle ``trades`` on ``profiles`` and score it and every baseline the same way.

    ``ValueError`` if the inputs describe different communities, a trade names a house or
    interval outside them, or a house bought (sold) more than its deficit (surplus).
    """
    _check_same_run(scenario, profiles, baselines)
    per_house = trades.per_house(profiles.houses, profiles.intervals)
    try:
        outcome = settle_profiles(profiles, scenario.tariffs, tolerance_wh=TRADE_TOLERANCE_WH,
                                  **per_house)
    except ValueError as exc:
        raise ValueError(f"the trades do not fit the profiles: {exc}") from exc
    outcomes = {"no_trading": baselines.no_trading, "optimum": baselines.optimum_outcome,
                **baselines.markets}
    prices = baselines.prices
    return ScoredRun(
        scenario=scenario, profiles=profiles, baselines=baselines, trades=trades, stats=stats,
        outcome=outcome, metrics=_score(outcome, baselines),
        baseline_metrics={name: _score(o, baselines) for name, o in outcomes.items()},
        savings=savings_per_house(outcome, baselines.no_trading, prices.retail_per_kwh,
                                  prices.feed_in_per_kwh))


def _score(outcome: Outcome, baselines: Baselines) -> Metrics:
    prices = baselines.prices
    return score(outcome, baselines.optimum, prices.retail_per_kwh, prices.feed_in_per_kwh,
                 bid_per_kwh=prices.bid_per_kwh, ask_per_kwh=prices.ask_per_kwh,
                 baseline=baselines.no_trading)


def _check_same_run(scenario: Scenario, profiles: Profiles, baselines: Baselines) -> None:
    shape = (profiles.houses, profiles.intervals)
    if shape != (scenario.meters, scenario.intervals):
        raise ValueError(f"profiles have {shape[0]} houses x {shape[1]} intervals, the scenario "
                         f"{scenario.meters} meters x {scenario.intervals} intervals")
    if profiles.interval_s != scenario.interval_s or \
            profiles.interval_start[0] != np.datetime64(scenario.start_date.isoformat(), "s"):
        raise ValueError("profiles start or step differ from the scenario's [time]")
    if baselines.no_trading.shape != shape or baselines.optimum.bought_wh.shape != shape:
        raise ValueError(f"baselines were computed for {baselines.no_trading.shape}, "
                         f"not for these profiles {shape}")
    clash = sorted(set(baselines.markets) & set(RESERVED_NAMES))
    if clash:
        raise ValueError(f"market baseline names {clash} clash with {list(RESERVED_NAMES)}")
    tariffs = scenario.tariffs
    if not np.allclose(baselines.prices.retail_per_kwh,
                       tariffs.retail_prices(profiles.interval_start)) or \
            baselines.no_trading.export_limit_wh != tariffs.export_limit_wh(profiles.interval_s):
        raise ValueError("baselines were computed with other tariffs than the scenario's")


def summarize(run: ScoredRun) -> dict:
    """The content of ``summary.json`` (JSON-ready: NaN -> None, numpy -> Python)."""
    trades, stats = run.trades, run.stats
    agreed, delivered = float(trades.energy_wh.sum()), float(trades.delivered_wh.sum())
    count = len(trades)
    summary = {
        **run.metrics.as_dict(),
        "trades": count,
        "agreed_kwh": agreed / 1000, "delivered_kwh": delivered / 1000,
        # delivered / agreed as the sellers' meters measured it (ahead of delivery the trade
        # log counts only what met a buyer's real deficit: delivered_kwh)
        "transaction_quality": stats.extra.get("delivered_share",
                                               delivered / agreed if agreed else math.nan),
        "messages_per_trade": float(trades.messages.mean()) if count else math.nan,
        "peer_messages": stats.peer_messages,
        "peer_messages_per_trade": stats.peer_messages / count if count else math.nan,
        "decision_ms_p50": _percentile(trades.decision_ms, 50),
        "decision_ms_p95": _percentile(trades.decision_ms, 95),
        "denied": stats.denied, "dropped": dict(stats.dropped),
        "double_settlements": stats.double_settlements, "ledgers_valid": stats.ledgers_valid,
        "ledger_problems": list(stats.ledger_problems),
        "wall_s": stats.wall_s, "processes": stats.processes, "extra": dict(stats.extra),
        "market_mode": run.scenario.market.mode,
        "currency": run.currency,
        "scenario": run.scenario.as_dict(),
        "baselines": {name: m.as_dict() for name, m in run.baseline_metrics.items()},
    }
    return _json_ready(summary)


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else math.nan


def _json_ready(value):
    """NaN/inf -> None, numpy scalars -> Python, tuples -> lists, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------- tables


def interval_rows(run: ScoredRun) -> list[dict]:
    """One row per interval; energy in kWh, prices per kWh, NaN where there was no trade, and
    ``<market>_matched_kwh``: what each market baseline matched."""
    columns, prices = _columns_kwh(run), run.baselines.prices
    counts = np.bincount(run.trades.interval, minlength=run.profiles.intervals)
    energy = ("generation", "consumption", "surplus", "deficit", "local", "optimum",
              "grid_import", "grid_export", "wasted")
    markets = {f"{name}_matched_kwh": outcome.bought_wh.sum(axis=0) / 1000
               for name, outcome in run.baselines.markets.items()}
    rows = []
    for t, start in enumerate(run.profiles.interval_start):
        row = {"interval": t, "start": str(start)}
        row.update({f"{name}_kwh": columns[name][t] for name in energy})
        row.update({"p2p_price_per_kwh": columns["p2p_price_per_kwh"][t],
                    "retail_per_kwh": prices.retail_per_kwh[t],
                    "feed_in_per_kwh": prices.feed_in_per_kwh[t], "trades": int(counts[t])})
        row.update({name: values[t] for name, values in markets.items()})
        rows.append(row)
    return rows


def trade_rows(run: ScoredRun) -> list[dict]:
    """One row per trade, with its interval's start time and the money that changed hands."""
    t, starts = run.trades, run.profiles.interval_start
    return [{"trade": k, "interval": int(t.interval[k]), "start": str(starts[t.interval[k]]),
             "seller": int(t.seller[k]), "buyer": int(t.buyer[k]),
             "energy_wh": t.energy_wh[k], "delivered_wh": t.delivered_wh[k],
             "price_per_kwh": t.price_per_kwh[k],
             "amount": t.delivered_wh[k] * t.price_per_kwh[k] / 1000,
             "decision_ms": t.decision_ms[k], "messages": int(t.messages[k])}
            for k in range(len(t))]


def household_rows(run: ScoredRun) -> list[dict]:
    """One row per house: equipment, energy over the run (kWh), money, savings vs no trading."""
    o, p, t = run.outcome, run.profiles, run.trades
    kwh = {name: getattr(o, f"{name}_wh").sum(axis=1) / 1000 for name in (
        "generation", "consumption", "surplus", "deficit", "bought", "sold", "grid_import",
        "grid_export", "wasted")}
    buys = np.bincount(t.buyer, minlength=p.houses)
    sales = np.bincount(t.seller, minlength=p.houses)
    rows = []
    for h in range(p.houses):
        row = {"house": h, "pv_kwp": p.pv_kwp[h],
               "battery_kwh": p.battery.capacity_wh[h] / 1000, "annual_kwh": p.annual_kwh[h]}
        row.update({f"{name}_kwh": values[h] for name, values in kwh.items()})
        row.update({"paid": o.paid[h].sum(), "received": o.received[h].sum(),
                    "trades_bought": int(buys[h]), "trades_sold": int(sales[h]),
                    "savings": run.savings[h]})
        rows.append(row)
    return rows


def csv_text(rows: list[dict], columns: tuple[str, ...] | None = None) -> str:
    """CSV with a header (``columns``, default the keys of the first row); floats to 1e-6 in
    their shortest form, NaN as an empty cell."""
    buffer = io.StringIO()
    names = list(columns) if columns is not None else list(rows[0]) if rows else []
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue()


def _cell(value) -> object:
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(round(float(value), 6))
    return value


TRADE_COLUMNS = ("trade", "interval", "start", "seller", "buyer", "energy_wh", "delivered_wh",
                 "price_per_kwh", "amount", "decision_ms", "messages")


def tables(run: ScoredRun) -> dict[str, str]:
    """File name -> CSV text of every table."""
    return {"intervals.csv": csv_text(interval_rows(run)),
            "trades.csv": csv_text(trade_rows(run), TRADE_COLUMNS),
            "households.csv": csv_text(household_rows(run))}


# ---------------------------------------------------------------- plots


def plot_energy_flows(run: ScoredRun) -> Figure:
    """Community generation, consumption, local trades and grid flows per interval (kWh)."""
    fig, ax = _time_figure(run, "Energy flows in the community", "energy per interval (kWh)")
    x, col = _midpoints(run), _columns_kwh(run)
    ax.plot(x, col["generation"], color="tab:orange", label="generation")
    ax.plot(x, col["consumption"], color="tab:blue", label="consumption")
    ax.fill_between(x, 0, col["local"], color="tab:green", alpha=0.45,
                    label="traded between peers")
    ax.plot(x, col["grid_import"], color="tab:red", ls="--", label="grid import")
    ax.plot(x, col["grid_export"], color="tab:purple", ls="--", label="grid export")
    if col["wasted"].any():
        ax.plot(x, col["wasted"], color="black", ls=":", label="wasted surplus")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_prices(run: ScoredRun) -> Figure:
    """Grid retail price, feed-in tariff and the average peer price per interval."""
    fig, ax = _time_figure(run, "Prices", f"price ({run.currency}/kWh)")
    x, prices = _midpoints(run), run.baselines.prices
    ax.plot(x, prices.retail_per_kwh, drawstyle="steps-mid", color="tab:red",
            label="grid retail price")
    ax.plot(x, prices.feed_in_per_kwh, drawstyle="steps-mid", color="tab:purple",
            label="feed-in tariff")
    trades = run.trades
    if len(trades):
        ax.scatter(x[trades.interval], trades.price_per_kwh, s=10, alpha=0.35,
                   color="tab:gray", label="single trades")
    ax.plot(x, _columns_kwh(run)["p2p_price_per_kwh"], marker="o", ms=3,
            color="tab:green", label="average peer price")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_matched_vs_optimum(run: ScoredRun) -> Figure:
    """Energy matched locally per interval: this run, the optimum and every market."""
    m = run.metrics
    ratio = "n/a" if math.isnan(m.local_match_ratio) else f"{100 * m.local_match_ratio:.1f} %"
    fig, ax = _time_figure(run, f"Locally matched energy: {ratio} of the optimum",
                           "energy per interval (kWh)")
    x, col = _midpoints(run), _columns_kwh(run)
    width = np.timedelta64(int(run.profiles.interval_s * 0.9), "s")
    ax.bar(x, col["local"], width=width, color="tab:green", alpha=0.6,
           label=f"this run ({m.local_match_kwh:.2f} kWh)")
    ax.plot(x, col["optimum"], drawstyle="steps-mid", color="black",
            label=f"optimum ({m.optimum_match_kwh:.2f} kWh)")
    for name, outcome in run.baselines.markets.items():
        matched = outcome.bought_wh.sum(axis=0) / 1000
        ax.plot(x, matched, drawstyle="steps-mid", ls="--",
                label=f"{name} ({matched.sum():.2f} kWh)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_savings(run: ScoredRun) -> Figure:
    """Savings of every household against no trading, sorted, with the Gini coefficient."""
    fig = _figure()
    ax = fig.add_subplot()
    order = np.argsort(-run.savings, kind="stable")
    values, positions = run.savings[order], np.arange(order.size)
    gini = run.metrics.savings_gini
    ax.set_title("Savings per household vs no trading, Gini "
                 + ("n/a" if math.isnan(gini) else f"{gini:.3f}"))
    ax.set_xlabel("household (sorted by savings)")
    ax.set_ylabel(f"savings ({run.currency})")
    for mask, color, label in ((values >= 0, "tab:green", "saved"),
                               (values < 0, "tab:red", "worse off")):
        if mask.any():
            ax.bar(positions[mask], values[mask], color=color, label=label)
    ax.axhline(0, color="black", lw=0.8)
    if order.size <= 40:
        ax.set_xticks(positions, labels=[str(h) for h in order], fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    return fig


PLOTS: dict[str, tuple[Callable[[ScoredRun], Figure | None], str]] = {
    "energy_flows": (plot_energy_flows, "Energy flows over the run"),
    "prices": (plot_prices, "Grid prices and peer-to-peer prices"),
    "matched_vs_optimum": (plot_matched_vs_optimum, "Locally matched energy vs the optimum"),
    "savings": (plot_savings, "Savings per household"),
    "forecast_vs_actual": (plot_forecast_vs_actual, "Forecast when traded vs metered"),
    "shortfalls": (plot_shortfalls, "Delivered vs agreed ahead of delivery"),
}


def render_plots(run: ScoredRun) -> dict[str, bytes]:
    """Plot name -> PNG bytes (a plot without data for this run, e.g. forecasts ex post, is
    left out)."""
    figures = {name: plot(run) for name, (plot, _) in PLOTS.items()}
    return {name: png_bytes(fig) for name, fig in figures.items() if fig is not None}


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PLOT_DPI)
    return buffer.getvalue()


def _figure() -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _time_figure(run: ScoredRun, title: str, ylabel: str):
    from matplotlib import dates as mdates

    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(f"time (local standard time, {run.profiles.interval_s // 60}-minute intervals)")
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(alpha=0.3)
    return fig, ax


def _midpoints(run: ScoredRun) -> np.ndarray:
    return run.profiles.interval_start + np.timedelta64(run.profiles.interval_s // 2, "s")


def _columns_kwh(run: ScoredRun) -> dict[str, np.ndarray]:
    prices = run.baselines.prices
    columns = per_interval(run.outcome, run.baselines.optimum, prices.retail_per_kwh,
                           prices.feed_in_per_kwh)
    out = {name.removesuffix("_wh"): values / 1000 for name, values in columns.items()
           if name.endswith("_wh")}
    out["local"], out["optimum"] = out.pop("local_match"), out.pop("optimum_match")
    out["p2p_price_per_kwh"] = columns["p2p_price_per_kwh"]
    return out


# ---------------------------------------------------------------- text and HTML

_CSS = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
.cards{display:flex;flex-wrap:wrap;gap:.8em}
.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;min-width:9em}
.card b{display:block;font-size:1.5em}.ok{color:#17663a}.bad{color:#b00020}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .7em;border-bottom:1px solid #ddd}
td{text-align:right}th{text-align:left}img{max-width:100%}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:.85em}
"""


def render_html(summary: Mapping, images: Mapping[str, bytes]) -> str:
    """A self-contained report: inline CSS, PNGs as data URIs, every text escaped.

    ``images``: plot name (a key of :data:`PLOTS`) -> PNG bytes; none means plots were skipped.
    """
    title = f"P2P energy run: {summary['scenario']['name']}"
    body = [f"<h1>{_esc(title)}</h1>", _overview(summary), _headline(summary),
            "<h2>Compared with the baselines</h2>", _comparison(summary),
            "<h2>Trading and ledgers</h2>", _trading(summary), "<h2>Plots</h2>",
            _figures(images), "<h2>Files</h2>", _files(),
            "<h2>Scenario</h2>",
            f"<pre>{_esc(json.dumps(summary['scenario'], indent=2, allow_nan=False))}</pre>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _overview(s: Mapping) -> str:
    sc = s["scenario"]
    return (f"<p>{s['meters']} meters, {s['intervals']} intervals of {sc['interval_s']} s from "
            f"{_esc(sc['start_date'])}; feeder {_esc(sc['feeder'])}; {s['processes']} "
            f"processes; {_fmt('wall_s', s['wall_s'])} s wall time.</p>")


def _headline(s: Mapping) -> str:
    cards = [("local match (of optimum)", _fmt("local_match_ratio", s["local_match_ratio"]), ""),
             ("self-sufficiency", _fmt("self_sufficiency", s["self_sufficiency"]), ""),
             ("trades", _fmt("trades", s["trades"]), ""),
             ("double settlements", str(s["double_settlements"]),
              "ok" if s["double_settlements"] == 0 else "bad"),
             ("ledgers valid", _fmt("ledgers_valid", s["ledgers_valid"]),
              "ok" if s["ledgers_valid"] else "bad")]
    return "<div class=\"cards\">" + "".join(
        f"<div class=\"card\"><b class=\"{css}\">{_esc(value)}</b>{_esc(label)}</div>"
        for label, value, css in cards) + "</div>"


def _comparison(s: Mapping) -> str:
    runs = {"this run": s, **s["baselines"]}
    head = "<tr><th></th>" + "".join(f"<th>{_esc(name)}</th>" for name in runs) + "</tr>"
    rows = [f"<tr><th>{_esc(_label(key, s['currency']))}</th>"
            + "".join(f"<td>{_esc(_fmt(key, m[key]))}</td>" for m in runs.values()) + "</tr>"
            for key in COMPARED]
    return "<table>" + head + "".join(rows) + "</table>"


def _trading(s: Mapping) -> str:
    keys = ("trades", "agreed_kwh", "delivered_kwh", "transaction_quality", "messages_per_trade",
            "peer_messages", "peer_messages_per_trade", "decision_ms_p50", "decision_ms_p95",
            "denied", "double_settlements", "ledgers_valid")
    rows = [(_label(key, s["currency"]), _fmt(key, s[key])) for key in keys]
    rows.append(("dropped", ", ".join(f"{k}: {v}" for k, v in s["dropped"].items()) or "none"))
    rows += [(key, _fmt(key, value)) for key, value in s["extra"].items()]
    table = "<table>" + "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>"
                                for k, v in rows) + "</table>"
    if s["ledger_problems"]:
        table += "<p class=\"bad\">Ledger problems:</p><ul>" + "".join(
            f"<li>{_esc(p)}</li>" for p in s["ledger_problems"]) + "</ul>"
    return table


def _figures(images: Mapping[str, bytes]) -> str:
    if not images:
        return "<p>Plots were not drawn for this run.</p>"
    out = []
    for name, data in images.items():
        caption = PLOTS[name][1] if name in PLOTS else name
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        out.append(f"<figure><img src=\"{uri}\" alt=\"{_esc(caption)}\">"
                   f"<figcaption>{_esc(caption)}</figcaption></figure>")
    return "\n".join(out)


def _files() -> str:
    names = (*TABLE_FILES, SUMMARY_FILE)
    return "<ul>" + "".join(f"<li><a href=\"{_esc(n)}\">{_esc(n)}</a></li>" for n in names) \
        + "</ul>"


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


_LABELS = {"decision_ms_p50": "decision time p50 (ms)", "decision_ms_p95": "decision time p95 (ms)",
           "wall_s": "wall time (s)"}


def _label(key: str, currency: str) -> str:
    """``grid_import_kwh`` -> ``grid import (kWh)``."""
    if key in _LABELS:
        return _LABELS[key]
    for suffix, unit in (("_per_kwh", f"{currency}/kWh"), ("_kwh", "kWh")):
        if key.endswith(suffix):
            return f"{key.removesuffix(suffix).replace('_', ' ')} ({unit})"
    label = key.replace("_", " ")
    return f"{label} ({currency})" if key in ("welfare", "total_savings", "mean_savings") \
        else label


def _fmt(key: str, value) -> str:
    """A summary value for people: percentages for ratios, units left to the label."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key in PERCENT_KEYS:
        return f"{100 * value:.1f} %"
    if isinstance(value, int):
        return str(value)
    if key.endswith("_per_kwh"):
        return f"{value:.4f}"
    if key.endswith("gini"):
        return f"{value:.3f}"
    return f"{value:.2f}"


def print_summary(summary: Mapping) -> str:
    """A short text block for the terminal (the values of ``summary.json``)."""
    s, cur = summary, summary["currency"]

    def v(key: str) -> str:
        return _fmt(key, s[key])

    ledgers = "all valid" if s["ledgers_valid"] else \
        f"INVALID ({len(s['ledger_problems'])} problems listed in {REPORT_FILE})"
    baselines = ", ".join(f"{name} {_fmt('local_match_ratio', m['local_match_ratio'])}"
                          for name, m in s["baselines"].items())
    return "\n".join([
        f"Run {s['scenario']['name']!r}: {s['meters']} meters x {s['intervals']} intervals, "
        f"{s['processes']} processes, {v('wall_s')} s wall time",
        f"  local match       {v('local_match_kwh')} of {v('optimum_match_kwh')} kWh optimum "
        f"({v('local_match_ratio')}); welfare {v('welfare_ratio')} of optimum",
        f"  self-sufficiency  {v('self_sufficiency')}, self-consumption {v('self_consumption')}",
        f"  grid              import {v('grid_import_kwh')} kWh, export {v('grid_export_kwh')} "
        f"kWh, wasted {v('wasted_surplus_kwh')} kWh",
        f"  peer price        {v('average_p2p_price_per_kwh')} {cur}/kWh on average",
        f"  savings           {v('total_savings')} {cur} in total, Gini {v('savings_gini')}, "
        f"{s['households_worse_off']} households worse off",
        f"  trades            {s['trades']}, delivered {v('transaction_quality')} of agreed, "
        f"{v('messages_per_trade')} messages each, decision p50 {v('decision_ms_p50')} ms, "
        f"p95 {v('decision_ms_p95')} ms",
        f"  ledgers           {ledgers}; {s['double_settlements']} double settlements",
        f"  baselines         local match {baselines}",
    ])


# ---------------------------------------------------------------- the shell


def write_run(out_dir: Path, scenario: Scenario, profiles: Profiles, baselines: Baselines,
              trades: TradeLog, stats: RunStats, *, plots: bool = True) -> dict:
    """Settle and score the run, write its directory (see the module docstring) and return the
    summary written to ``summary.json``.  ``ValueError`` (before anything is written) if the
    inputs do not belong together; ``OSError`` if the directory cannot be written."""
    run = score_run(scenario, profiles, baselines, trades, stats)
    summary = summarize(run)
    summary_text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).unlink(missing_ok=True)  # until the new one is complete
    for name, text in tables(run).items():
        _write_atomic(out / name, text.encode("utf-8"))
    images = render_plots(run) if plots else {}
    for name in PLOTS:
        if name in images:
            _write_atomic(out / f"{name}.png", images[name])
        else:
            (out / f"{name}.png").unlink(missing_ok=True)  # no stale plots of an older run
    _write_atomic(out / REPORT_FILE, render_html(summary, images).encode("utf-8"))
    _write_atomic(out / SUMMARY_FILE, summary_text.encode("utf-8"))
    return summary


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
