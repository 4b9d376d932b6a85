"""The results table of a sweep and what is read from it: per-configuration scores, the Pareto
set and the best configuration (pure, on pandas DataFrames; file I/O in :mod:`simulator.sweep`).

One row per finished point: ``point_id``, ``config_id``, ``generation`` (nsga2; else 0),
``seed``, one column per varied parameter (named by its dotted path), ``status`` (``ok`` or
``failed``), ``error``, ``point_wall_s`` (the whole point, profiles to report), then every
numeric key of the point's ``summary.json`` (NaN where the run had none, e.g. no trades).

**Best configuration.**  Scores are the means over a configuration's successful runs.  Each
objective is min-max normalised over all configurations with scores (1 = best seen, 0 = worst
seen; an objective all configurations tie on counts 1), and the best configuration is the one
closest to the ideal point (1, ..., 1).  Such a configuration is always Pareto-optimal, and
with one objective it is simply the best value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from simulator.sweep_points import Point
from simulator.sweep_spec import SUMMARY_METRICS, Objective

ID_COLUMNS = ("point_id", "config_id", "generation", "seed")
STATUS_COLUMNS = ("status", "error", "point_wall_s")
MAX_ERROR_CHARS = 2000


def result_row(point: Point, summary: Mapping | None, wall_s: float,
               error: str = "") -> dict:
    """The table row of a finished point (``summary`` is ``None`` when it failed)."""
    row = {"point_id": point.id, "config_id": point.config_id, "generation": point.generation,
           "seed": point.seed, **dict(point.params),
           "status": "ok" if summary is not None and not error else "failed",
           "error": error[-MAX_ERROR_CHARS:], "point_wall_s": round(wall_s, 3)}
    for key, value in (summary or {}).items():
        if isinstance(value, bool):
            row[key] = value
        elif isinstance(value, (int, float)) or value is None:
            row[key] = math.nan if value is None else value
    return row


def columns(rows: Sequence[Mapping], paths: Sequence[str]) -> list[str]:
    """Identity, parameters, status, the known metrics, then any other numeric column."""
    known = [*ID_COLUMNS, *paths, *STATUS_COLUMNS, *SUMMARY_METRICS]
    extra = sorted({key for row in rows for key in row} - set(known))
    return known + extra


def latest(rows: Sequence[Mapping]) -> list[dict]:
    """One row per point id, the last one written (a failed point that ran again)."""
    by_id = {}
    for row in rows:
        by_id.pop(row["point_id"], None)
        by_id[row["point_id"]] = dict(row)
    return list(by_id.values())


def config_scores(table: pd.DataFrame, paths: Sequence[str],
                  objectives: Sequence[Objective]) -> pd.DataFrame:
    """One row per configuration: its parameters, ``runs``,
    ``failed`` runs, the mean of each objective over the successful runs, ``pareto`` (not
    dominated by another configuration on all objectives) and ``distance`` to the ideal
    point (see the module docstring; NaN without scores).  Sorted best first: the Pareto set
    by distance, then the others by distance, ties by ``config_id`` (so the order never
    depends on which run finished first)."""
    metrics = [o.metric for o in objectives]
    table = table.assign(**{m: math.nan for m in metrics if m not in table.columns})
    ok = table[table["status"] == "ok"]
    first = table.drop_duplicates("config_id")[["config_id", *paths]].set_index("config_id")
    means = ok.groupby("config_id", sort=False)[metrics].mean() if len(ok) else \
        pd.DataFrame(columns=metrics, dtype=float)
    out = first.join(means, how="left")
    out["runs"] = table.groupby("config_id", sort=False).size()
    out["failed"] = (table["status"] != "ok").groupby(table["config_id"], sort=False).sum()
    signed = signed_scores(out, objectives)
    out["pareto"] = pareto_mask(signed)
    out["distance"] = ideal_distance(signed)
    out = out.reset_index()
    order = np.lexsort((out["config_id"].to_numpy(str),
                        np.nan_to_num(out["distance"].to_numpy(float), nan=np.inf),
                        ~out["pareto"].to_numpy(bool)))
    return out.iloc[order].reset_index(drop=True)


def signed_scores(frame: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """The objectives as a matrix, each multiplied by its sign (larger is better)."""
    if not len(frame):
        return np.zeros((0, len(objectives)))
    return np.column_stack([pd.to_numeric(frame[o.metric], errors="coerce").to_numpy(float)
                            * o.sign for o in objectives])


def pareto_mask(scores: np.ndarray) -> np.ndarray:
    """Rows with finite scores that no other such row dominates (all >=, one >)."""
    scores = np.asarray(scores, dtype=float)
    valid = np.isfinite(scores).all(axis=1)
    mask = valid.copy()
    for i in np.flatnonzero(valid):
        others = scores[valid]
        dominated = (others >= scores[i]).all(axis=1) & (others > scores[i]).any(axis=1)
        mask[i] = not dominated.any()
    return mask


def ideal_distance(scores: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row to the ideal point after min-max normalisation."""
    scores = np.asarray(scores, dtype=float)
    valid = np.isfinite(scores).all(axis=1)
    out = np.full(len(scores), np.nan)
    if not valid.any():
        return out
    low, high = scores[valid].min(axis=0), scores[valid].max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    normalised = np.where(high > low, (scores[valid] - low) / span, 1.0)
    out[valid] = np.sqrt(((1.0 - normalised) ** 2).sum(axis=1))
    return out


def best_config(scores: pd.DataFrame) -> pd.Series | None:
    """The first row of :func:`config_scores` if it has scores, else ``None``."""
    if not len(scores) or not np.isfinite(scores["distance"].iloc[0]):
        return None
    return scores.iloc[0]


def top_text(scores: pd.DataFrame, paths: Sequence[str], objectives: Sequence[Objective],
             count: int = 10) -> str:
    """The best ``count`` configurations as a fixed-width text table."""
    shown = scores.head(count)
    header = ["#", *paths, *(f"{o.metric} ({o.sense})" for o in objectives), "runs", "pareto"]
    body = [[str(i + 1), *(_cell(row[p]) for p in paths),
             *(_cell(row[o.metric]) for o in objectives),
             f"{int(row['runs']) - int(row['failed'])}/{int(row['runs'])}",
             "*" if row["pareto"] else ""] for i, (_, row) in enumerate(shown.iterrows())]
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths))
                     for line in [header, *body])


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)
