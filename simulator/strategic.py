"""Strategic and unreliable sellers in the simulator, and what the buyers made of them.

Roles are drawn once per run from the scenario's seed among the houses that have a surplus at
some interval (``[households] overselling_share`` / ``unreliable_share``, see
:class:`simulator.settings.Households`):

``overselling``  the node's forecaster states ``overselling_factor`` times the generation it
                 expects (:class:`OverstatingForecaster`): it offers, and sells, more than its
                 meter will measure; the shortfall shows in its DELIVERY settlements
``unreliable``   poor equipment: only ``unreliable_delivery`` of the surplus its meter measures
                 reaches the buyers (:class:`UnreliableMeter` scales the surplus of every
                 sub-step the delivery is allocated from); the interval's reading is unchanged

The report side: :func:`seller_rows` (delivered share per seller, with its role) and
:func:`choice_shift` (per interval, the share of the energy bought from strategic sellers):
whether buyers moved away from them as their records filled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from p2pnode.meter import Meter, Reading

__all__ = ["OVERSELLING", "UNRELIABLE", "OverstatingForecaster", "UnreliableMeter",
           "choice_shift", "plot_choice_shift", "seller_rows", "strategic_node",
           "strategic_roles", "write_strategic"]

OVERSELLING = "overselling"
UNRELIABLE = "unreliable"
ROLE_SEED = 14   # mixed into the scenario seed: the roles do not move the other random draws


def strategic_roles(seed: int, surplus_wh: np.ndarray, households) -> dict[int, tuple[str, float]]:
    """House -> (role, its parameter) for the strategic and unreliable sellers of a run."""
    sellers = np.flatnonzero(np.asarray(surplus_wh).sum(axis=1) > 0)
    rng = np.random.default_rng([seed, ROLE_SEED])
    order = rng.permutation(sellers)
    over = int(round(households.overselling_share * len(sellers)))
    poor = int(round(households.unreliable_share * len(sellers)))
    roles = {int(h): (OVERSELLING, float(households.overselling_factor)) for h in order[:over]}
    roles.update({int(h): (UNRELIABLE, float(households.unreliable_delivery))
                  for h in order[over:over + poor]})
    return roles


def strategic_node(meter: Meter, forecaster, role: tuple[str, float] | None):
    """The (meter, forecaster) a house with ``role`` runs (unchanged without a role)."""
    if role is None:
        return meter, forecaster
    kind, parameter = role
    if kind == OVERSELLING:
        return meter, forecaster if forecaster is None else OverstatingForecaster(forecaster,
                                                                                  parameter)
    return UnreliableMeter(meter, parameter), forecaster


class OverstatingForecaster:
    """Wraps a forecaster; states ``factor`` times the generation the inner one expects."""

    def __init__(self, inner, factor: float):
        self.inner, self.factor = inner, factor

    def observe(self, interval_start_s: int, generation_wh: int, consumption_wh: int) -> None:
        self.inner.observe(interval_start_s, generation_wh, consumption_wh)

    def predict(self, target_start_s: int, issued_at_s: float) -> tuple[float, float]:
        generation, consumption = self.inner.predict(target_start_s, issued_at_s)
        return generation * self.factor, consumption

    def __getattr__(self, name):   # the inner forecaster's other views (skill, history)
        return getattr(self.inner, name)


class UnreliableMeter(Meter):
    """Wraps a meter; the surplus of each sub-step is scaled by ``delivery`` (0..1)."""

    def __init__(self, inner: Meter, delivery: float):
        self.inner, self.delivery = inner, delivery

    def read(self, interval_start_s: int, interval_s: int) -> Reading:
        return self.inner.read(interval_start_s, interval_s)

    def substeps(self, interval_start_s: int, interval_s: int, substep_s: int
                 ) -> list[tuple[int, int]] | None:
        steps = self.inner.substeps(interval_start_s, interval_s, substep_s)
        if steps is None:
            reading = self.read(interval_start_s, interval_s)
            steps = [(reading.generation_wh, reading.consumption_wh)]
        return [(min(g, c) + int(self.delivery * max(0, g - c)), c) for g, c in steps]


def seller_rows(trades: Sequence[dict], roles: dict[int, tuple[str, float]]) -> list[dict]:
    """One row per seller: agreed and delivered energy, delivered share and its role."""
    totals: dict[int, list[int]] = {}
    for row in trades:
        total = totals.setdefault(int(row["seller"]), [0, 0, 0])
        total[0] += int(row["energy_wh"])
        total[1] += int(row["delivered_wh"])
        total[2] += 1
    return [{"seller": seller, "role": roles.get(seller, ("honest", 1.0))[0], "trades": n,
             "agreed_kwh": agreed / 1000, "delivered_kwh": delivered / 1000,
             "delivered_share": round(delivered / agreed, 4) if agreed else 1.0}
            for seller, (agreed, delivered, n) in sorted(totals.items())]


def choice_shift(trades: Sequence[dict], roles: dict[int, tuple[str, float]], intervals: int,
                 per_bin: int = 8) -> list[dict]:
    """Per bin of ``per_bin`` intervals: energy bought, and the share of it agreed with
    strategic (overselling or unreliable) sellers."""
    agreed = np.zeros(intervals)
    strategic = np.zeros(intervals)
    for row in trades:
        i = int(row["interval"])
        if 0 <= i < intervals:
            agreed[i] += row["energy_wh"]
            if int(row["seller"]) in roles:
                strategic[i] += row["energy_wh"]
    out = []
    for first in range(0, intervals, per_bin):
        a, s = agreed[first:first + per_bin].sum(), strategic[first:first + per_bin].sum()
        out.append({"first_interval": first, "agreed_kwh": round(a / 1000, 3),
                    "strategic_share": round(s / a, 4) if a else 0.0})
    return out


def plot_choice_shift(runs: dict[str, list[dict]], path: Path, interval_s: int,
                      population_share: float | None = None) -> None:
    """The strategic sellers' share of the energy bought over the run, one line per run."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.6))
    axes = figure.add_subplot()
    for label, bins in runs.items():
        hours = [b["first_interval"] * interval_s / 3600 for b in bins]
        axes.step(hours, [b["strategic_share"] for b in bins], where="post", label=label)
    if population_share is not None:
        axes.axhline(population_share, color="grey", linestyle=":",
                     label="their share of the sellers")
    axes.set_xlabel("hours since the start of the run (interval start)")
    axes.set_ylabel("share bought from strategic sellers")
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper right", fontsize="small")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def write_strategic(out_dir: Path, trades: Sequence[dict], roles: dict[int, tuple[str, float]],
                    intervals: int, interval_s: int, plots: bool = True) -> None:
    """The run directory's ``sellers.csv`` (delivered share per seller and its role) and
    ``strategic_choices.png`` (the strategic sellers' share of the energy bought over the run);
    nothing without strategic sellers."""
    if not roles:
        return
    import csv
    rows = seller_rows(trades, roles)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "sellers.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["seller"])
        writer.writeheader()
        writer.writerows(rows)
    if plots:
        per_bin = max(1, 7200 // interval_s)
        plot_choice_shift({"this run": choice_shift(trades, roles, intervals, per_bin)},
                          out_dir / "strategic_choices.png", interval_s)
