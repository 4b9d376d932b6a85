"""The plots of a sweep (pure: matplotlib Figures on the Agg canvas, no pyplot state).

* :func:`plot_sensitivity`: one panel per (varied parameter, objective): every successful run
  as a grey dot, and for a parameter with listed values the mean and standard deviation over
  all runs with that value (whatever the other parameters were), joined by a line.
* :func:`plot_pareto`: every configuration over the first two objectives in grey, the ones no
  other configuration beats on both in colour joined as a front, the best one (see
  :mod:`simulator.sweep_table`) starred.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from simulator.sweep_spec import Objective, Parameter
from simulator.sweep_table import pareto_mask, signed_scores

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANEL_SIZE = (3.6, 2.8)
MAX_LABELS = 40


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_sensitivity(table: pd.DataFrame, parameters: Sequence[Parameter],
                     objectives: Sequence[Objective], title: str = "") -> Figure:
    ok = table[table["status"] == "ok"]
    rows, cols = len(parameters), len(objectives)
    fig = _figure(PANEL_SIZE[0] * cols + 0.4, PANEL_SIZE[1] * rows + 0.5)
    fig.suptitle(title or f"sensitivity: {len(ok)} successful runs")
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, parameter in enumerate(parameters):
        for c, objective in enumerate(objectives):
            _sensitivity_panel(axes[r][c], ok, parameter, objective)
    return fig


def _sensitivity_panel(ax, ok: pd.DataFrame, parameter: Parameter, objective: Objective):
    values = pd.to_numeric(ok[objective.metric], errors="coerce") \
        if objective.metric in ok else pd.Series(dtype=float)
    column = ok[parameter.path]
    if parameter.is_range:
        ax.scatter(pd.to_numeric(column), values, s=14, color="0.55", alpha=0.7)
    else:
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      for v in parameter.values)
        xs = np.array(parameter.values, dtype=float) if numeric \
            else np.arange(len(parameter.values))
        at = {str(v): x for v, x in zip(parameter.values, xs)}
        positions = column.map(lambda v: _position(v, at, parameter.values))
        ax.scatter(positions, values, s=14, color="0.7", alpha=0.8, zorder=1)
        stats = [(x, values[positions == x]) for x in xs]
        means = [v.mean() if len(v) else np.nan for _, v in stats]
        spread = [v.std(ddof=0) if len(v) else np.nan for _, v in stats]
        ax.errorbar(xs, means, yerr=spread, color="tab:blue", marker="o", capsize=4,
                    zorder=2, label="mean ± sd")
        if not numeric:
            ax.set_xticks(xs, [str(v) for v in parameter.values])
    ax.set_xlabel(parameter.path)
    ax.set_ylabel(f"{objective.metric} ({objective.sense})")
    ax.grid(alpha=0.3)


def _position(value, at: dict, options: Sequence) -> float:
    for option in options:
        if value == option or str(value) == str(option):
            return at[str(option)]
    return np.nan


def plot_pareto(configs: pd.DataFrame, objectives: Sequence[Objective],
                best_id: str | None = None, title: str = "",
                paths: Sequence[str] = ()) -> Figure | None:
    """``None`` with fewer than two objectives.  With ``paths`` (and at most
    :data:`MAX_LABELS` configurations) each non-dominated point is labelled with its values."""
    if len(objectives) < 2:
        return None
    first, second = objectives[:2]
    scores = signed_scores(configs, objectives[:2])
    front = pareto_mask(scores)
    x = pd.to_numeric(configs[first.metric], errors="coerce").to_numpy(float)
    y = pd.to_numeric(configs[second.metric], errors="coerce").to_numpy(float)
    fig = _figure(6.4, 4.6)
    ax = fig.add_subplot()
    ax.set_title(title or f"Pareto front over {len(configs)} configurations")
    ax.scatter(x[~front], y[~front], s=22, color="0.75", label="dominated")
    order = np.argsort(x[front])
    ax.plot(x[front][order], y[front][order], "-o", color="tab:orange", label="non-dominated")
    if best_id is not None and best_id in set(configs["config_id"]):
        i = int(np.flatnonzero(configs["config_id"].to_numpy() == best_id)[0])
        ax.scatter([x[i]], [y[i]], marker="*", s=220, color="tab:red", zorder=3, label="best")
    if paths and len(configs) <= MAX_LABELS:
        for i in np.flatnonzero(front):
            text = "(" + ", ".join(_short(configs[p].iloc[i]) for p in paths) + ")"
            ax.annotate(text, (x[i], y[i]), textcoords="offset points", xytext=(6, 6),
                        fontsize="small")
        ax.text(0.99, 0.01, "labels: (" + ", ".join(paths) + ")", transform=ax.transAxes,
                ha="right", va="bottom", fontsize="x-small", color="0.35")
    ax.set_xlabel(f"{first.metric} ({'higher' if first.sense == 'max' else 'lower'} is better)")
    ax.set_ylabel(f"{second.metric} ({'higher' if second.sense == 'max' else 'lower'} is better)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return fig


def _short(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)
