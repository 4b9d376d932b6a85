"""The six criteria of SRS table 3, normalised to 0..1, and the objective they feed.

A plan picks a set S of candidate offers (at most one plan item per offer) and buys e_j Wh from
each, Σ e_j = D (the deficit) when the offers cover it.  With a_j the energy offer j has
available:

=====  ======================  ====================================================================
X1     surplus availability    **hard**, 1 if Σ_{j∈S} a_j ≥ D, else 0.  Only offers at or below the
                               buyer's ``max_price_per_kwh`` with a_j > 0 are eligible.  Besides,
                               a plan may use at most k_min + ``seller_slack`` sellers, k_min being
                               the fewest eligible offers that can cover D (SRS: "ideally one
                               meter, failing that, the minimum number of meters").
X2     trade surplus           s = Σ_{j∈S} a_j − D (what the chosen sellers offer beyond the need);
                               X2 = max(0, 1 − s/D): 1 when the offers match the deficit exactly,
                               0.5 when they offer 1.5·D, 0 at 2·D or more.
X3     transfer efficiency     Σ e_j·η_j / D: the energy-weighted line efficiency, i.e. the share
                               of the bought energy that arrives.
X4     transaction duration    Σ e_j·τ/(τ + t_j) / D with t_j the predicted duration and
                               τ = ``duration_ref_s``: 1 for an instant trade, 0.5 at t = τ.
X5     transaction quality     Σ e_j·q_j / D with q_j the predicted share delivered: the expected
                               share of the deficit that is delivered.
X6     market participation    Σ e_j·P/(P + p_j) / D with p_j the seller's past trades and
                               P = ``participation_ref``: 1 for a newcomer, 0.5 at p = P, so sellers
                               with little participation get a better chance.
=====  ======================  ====================================================================

The objective is f(X) = C1·X1 · (C2·X2 + C3·X3 + C4·X4 + C5·X5 + C6·X6) (SRS eq. 1); each soft
criterion is in 0..1, so the weights C2..C6 are the exchange rates between them: with C3 = 2 and
C5 = 1, one point of efficiency is worth two points of quality.  Because X1 is hard, C1 only
scales f.  X3..X6 are energy-weighted means of per-seller scores
σ_j = (η_j, τ/(τ+t_j), q_j, P/(P+p_j)), so for a fixed set S the best allocation buys from the
sellers with the highest per-seller value w_j = C3·σ_j1 + C4·σ_j2 + C5·σ_j3 + C6·σ_j4 first and
takes the remainder from the last one; that is the allocation every strategy uses, and the order
in which the node sends the trade requests.

Everything here is pure: arrays in, numbers out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from optimizer.selection.config import SelectionConfig
from optimizer.selection.inputs import BuyRequest, Candidate

CRITERIA = (
    "surplus_availability", "trade_surplus", "transfer_efficiency",
    "transaction_duration", "transaction_quality", "market_participation",
)
PER_SELLER = CRITERIA[2:]


def trade_surplus_score(offered_wh: float, deficit_wh: float) -> float:
    """X2 = max(0, 1 − (offered − deficit)/deficit), for offers that cover the deficit."""
    return max(0.0, min(1.0, 2.0 - offered_wh / deficit_wh))


def duration_score(duration_s, ref_s: float):
    """τ/(τ + t): 1 for an instant trade, 0.5 at the reference duration."""
    return ref_s / (ref_s + np.asarray(duration_s, dtype=float))


def participation_score(trades, ref: float):
    """P/(P + p): 1 for a seller without past trades, 0.5 at the reference count."""
    return ref / (ref + np.asarray(trades, dtype=float))


@dataclass(frozen=True, eq=False)
class Problem:
    """A selection instance as arrays over the eligible candidates (energy in units of D)."""

    candidates: tuple[Candidate, ...]
    deficit_wh: int
    available_wh: np.ndarray      # int64 (n,)
    share: np.ndarray             # a_j / D (n,)
    per_seller: np.ndarray        # (n, 4): σ_j for X3..X6
    unit_value: np.ndarray        # w_j (n,)
    surplus_weight: float         # C2
    scale: float                  # C1
    min_sellers: int              # k_min; 0 when the offers cannot cover D
    max_sellers: int              # k_min + slack (capped at n); 0 when infeasible
    sizes: tuple[int, ...]        # available_wh as Python ints (fast scalar access)
    by_size: tuple[int, ...]      # indices, largest offer first
    size_rank: tuple[int, ...]    # position of each index in by_size

    @property
    def size(self) -> int:
        return len(self.candidates)

    @property
    def feasible(self) -> bool:
        return self.max_sellers > 0


def eligible(request: BuyRequest, candidates: Sequence[Candidate]) -> list[Candidate]:
    """Offers the buyer may take: price within the cap and energy available."""
    return [c for c in candidates
            if c.available_wh > 0 and c.price_per_kwh <= request.max_price_per_kwh]


def fewest_sellers(available_wh: np.ndarray, deficit_wh: int) -> int:
    """k_min: the fewest offers whose energy covers the deficit (0 if all of them cannot)."""
    covered = np.cumsum(np.sort(available_wh)[::-1]) >= deficit_wh
    return int(np.argmax(covered)) + 1 if covered.any() else 0


def build_problem(request: BuyRequest, candidates: Sequence[Candidate],
                  config: SelectionConfig) -> Problem:
    chosen = tuple(eligible(request, candidates))
    available = np.array([c.available_wh for c in chosen], dtype=np.int64)
    per_seller = np.column_stack([
        np.array([c.efficiency for c in chosen], dtype=float),
        duration_score([c.predicted_duration_s for c in chosen], config.duration_ref_s),
        np.array([c.predicted_quality for c in chosen], dtype=float),
        participation_score([c.participation for c in chosen], config.participation_ref),
    ]) if chosen else np.zeros((0, 4))
    k_min = fewest_sellers(available, request.deficit_wh)
    by_size = np.argsort(-available, kind="stable")
    weights = config.weights
    return Problem(
        candidates=chosen, deficit_wh=request.deficit_wh, available_wh=available,
        share=available / request.deficit_wh, per_seller=per_seller,
        unit_value=per_seller @ np.array(weights.soft()[1:], dtype=float),
        surplus_weight=weights.trade_surplus, scale=weights.surplus_availability,
        min_sellers=k_min,
        max_sellers=min(k_min + config.seller_slack, len(chosen)) if k_min else 0,
        sizes=tuple(int(a) for a in available),
        by_size=tuple(int(j) for j in by_size),
        size_rank=tuple(int(r) for r in np.argsort(by_size)),
    )


def fill_order(problem: Problem, members: Sequence[int]) -> np.ndarray:
    """Members ordered by per-seller value, best first (ties: lower index first)."""
    idx = np.asarray(members, dtype=np.int64)
    return idx[np.lexsort((idx, -problem.unit_value[idx]))]


def soft_value(problem: Problem, members: Sequence[int]) -> float:
    """Σ_{i=2..6} Ci·Xi of the best allocation over ``members``; −inf if they cannot cover D."""
    if not len(members):
        return -math.inf
    idx = np.asarray(members, dtype=np.int64)
    if problem.available_wh[idx].sum() < problem.deficit_wh:
        return -math.inf
    order = idx[np.argsort(-problem.unit_value[idx], kind="stable")]
    share = problem.share[order]
    taken = np.minimum(share, np.maximum(0.0, 1.0 - (np.cumsum(share) - share)))
    surplus = max(0.0, 2.0 - float(share.sum()))
    return problem.surplus_weight * min(1.0, surplus) + float(taken @ problem.unit_value[order])


def allocate(problem: Problem, members: Sequence[int]) -> list[tuple[int, int]]:
    """(index, energy_wh) in request order; members that would get nothing are dropped."""
    remaining, out = problem.deficit_wh, []
    for j in fill_order(problem, members):
        energy = min(int(problem.available_wh[j]), remaining)
        if energy > 0:
            out.append((int(j), energy))
            remaining -= energy
    return out


def breakdown(problem: Problem, allocation: Sequence[tuple[int, int]]) -> dict[str, float]:
    """X1..X6 of an allocation (for an uncovered allocation X1 = 0 and the means are over what
    it does buy)."""
    if not allocation:
        return dict.fromkeys(CRITERIA, 0.0)
    idx = np.array([j for j, _ in allocation], dtype=np.int64)
    energy = np.array([e for _, e in allocation], dtype=float)
    bought, offered = energy.sum(), float(problem.available_wh[idx].sum())
    covered = offered >= problem.deficit_wh
    means = energy @ problem.per_seller[idx] / bought
    values = [1.0 if covered else 0.0,
              trade_surplus_score(offered, problem.deficit_wh) if covered else 0.0]
    return dict(zip(CRITERIA, values + [float(m) for m in means]))


def objective(weights_soft: Sequence[float], scale: float, values: dict[str, float]) -> float:
    """f(X) = C1·X1 · Σ_{i=2..6} Ci·Xi from a breakdown."""
    soft = sum(c * values[name] for c, name in zip(weights_soft, CRITERIA[1:]))
    return scale * values["surplus_availability"] * soft
