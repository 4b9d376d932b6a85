"""The result of selection: a ranked plan with the score broken down per criterion."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from optimizer.selection.criteria import Problem, allocate, breakdown, objective
from optimizer.selection.inputs import Candidate

STATUSES = ("optimal", "feasible", "infeasible")


@dataclass(frozen=True)
class PlanItem:
    """Buy ``energy_wh`` from ``candidate``."""

    candidate: Candidate
    energy_wh: int


@dataclass(frozen=True)
class Plan:
    """Which offers to take, in the order to send the trade requests.

    ``status``: "optimal" (proved: by the exact solver or brute force, or because the
    plans were few enough to score every one, :data:`~optimizer.selection.select.ENUMERATE_MAX_SETS`), "feasible" (a heuristic's plan
    that covers the deficit) or "infeasible" (the eligible offers cannot cover it: ``items`` then buy
    everything they offer, ``shortfall_wh`` is left for the grid and ``score`` is 0).
    ``breakdown`` maps each criterion of :data:`CRITERIA` to its normalised value X1..X6 and
    ``score`` is f(X).  ``fallbacks`` are further eligible offers, best per-seller value first,
    to try when a seller denies (re-running selection without it gives the exact replacement).
    """

    items: tuple[PlanItem, ...]
    score: float
    breakdown: Mapping[str, float]
    status: str
    strategy: str
    fallbacks: tuple[Candidate, ...] = ()
    shortfall_wh: int = 0
    stats: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Plan.status must be one of {STATUSES}, got {self.status!r}")
        object.__setattr__(self, "breakdown", MappingProxyType(dict(self.breakdown)))
        object.__setattr__(self, "stats", MappingProxyType(dict(self.stats)))

    @property
    def energy_wh(self) -> int:
        return sum(item.energy_wh for item in self.items)

    @property
    def sellers(self) -> tuple[bytes, ...]:
        return tuple(item.candidate.seller for item in self.items)


def _fallbacks(problem: Problem, members: Sequence[int], limit: int) -> tuple[Candidate, ...]:
    used = set(members)
    idx = np.arange(problem.size)
    ranked = idx[np.lexsort((idx, -problem.available_wh, -problem.unit_value))]
    return tuple(problem.candidates[j] for j in ranked if j not in used)[:limit]


def make_plan(problem: Problem, members: Sequence[int], *, weights_soft: Sequence[float],
              strategy: str, optimal: bool, max_fallbacks: int,
              stats: Mapping[str, float] | None = None) -> Plan:
    """A plan for a feasible set, or the infeasible plan when ``members`` is empty."""
    if not problem.feasible or not members:
        members = list(range(problem.size))  # buy everything there is
    allocation = allocate(problem, members)
    values = breakdown(problem, allocation)
    bought = sum(e for _, e in allocation)
    covered = values["surplus_availability"] == 1.0
    return Plan(
        items=tuple(PlanItem(problem.candidates[j], e) for j, e in allocation),
        score=objective(weights_soft, problem.scale, values),
        breakdown=values,
        status=("optimal" if optimal else "feasible") if covered else "infeasible",
        strategy=strategy,
        fallbacks=_fallbacks(problem, [j for j, _ in allocation], max_fallbacks),
        shortfall_wh=problem.deficit_wh - bought,
        stats=stats or {},
    )

