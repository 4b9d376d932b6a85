"""The report's plots of trading ahead of delivery: forecasts against what was metered, and
what sellers delivered against what they agreed (the shortfalls), per interval.

Drawn from :attr:`simulator.trades.RunStats.per_interval` (the swarm's per-interval series);
a run traded ex post has none, and these plots are left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from simulator.report import ScoredRun

__all__ = ["plot_forecast_vs_actual", "plot_shortfalls"]


def plot_forecast_vs_actual(run: ScoredRun) -> Figure | None:
    """The feeder's surplus and deficit as the nodes forecast them when they traded, and as the
    meters measured them."""
    from simulator.report import _midpoints, _time_figure

    series = run.stats.per_interval
    if "forecast_surplus_kwh" not in series:
        return None
    fig, ax = _time_figure(run, "Forecast (when traded) and metered surplus and deficit",
                           "energy per interval (kWh)")
    x = _midpoints(run)
    ax.plot(x, run.profiles.surplus_wh.sum(axis=0) / 1000, color="tab:orange",
            drawstyle="steps-mid", label="surplus, metered")
    ax.plot(x, series["forecast_surplus_kwh"], color="tab:orange", ls="--",
            drawstyle="steps-mid", label="surplus, forecast")
    ax.plot(x, run.profiles.deficit_wh.sum(axis=0) / 1000, color="tab:blue",
            drawstyle="steps-mid", label="deficit, metered")
    ax.plot(x, series["forecast_deficit_kwh"], color="tab:blue", ls="--",
            drawstyle="steps-mid", label="deficit, forecast")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_shortfalls(run: ScoredRun) -> Figure | None:
    """Energy agreed ahead of delivery, what the sellers' meters delivered, and the
    shortfall, per interval."""
    from simulator.report import _midpoints, _time_figure

    series = run.stats.per_interval
    if "agreed_kwh" not in series:
        return None
    agreed, delivered = np.asarray(series["agreed_kwh"]), np.asarray(series["delivered_kwh"])
    share = delivered.sum() / agreed.sum() if agreed.sum() else 1.0
    fig, ax = _time_figure(run, f"Delivered {100 * share:.1f} % of the energy agreed ahead",
                           "energy per interval (kWh)")
    x = _midpoints(run)
    width = np.timedelta64(int(run.profiles.interval_s * 0.9), "s")
    ax.bar(x, delivered, width=width, color="tab:green", alpha=0.6, label="delivered")
    ax.bar(x, agreed - delivered, width=width, bottom=delivered, color="tab:red",
           alpha=0.7, label=f"shortfall ({(agreed - delivered).sum():.2f} kWh)")
    ax.plot(x, agreed, color="black", drawstyle="steps-mid", lw=0.8, label="agreed")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize="small")
    return fig
