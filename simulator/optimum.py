"""The best achievable outcome on the same data: an exact, centralised optimum per interval.

Per interval, every house with surplus ``s_i`` (after self-consumption and its battery) may sell
to every house with deficit ``d_j``; ``x_ij`` Wh move from i to j.  This is a transportation
problem::

    sum_j x_ij <= s_i,   sum_i x_ij <= d_j,   0 <= x_ij <= cap_ij   (cap_ij = 0: pair not allowed)

Two objectives:

* **locally matched energy** ``sum x_ij``.  Without pair limits its maximum is simply
  ``min(sum s, sum d)`` (:func:`max_local_match_wh`).
* **welfare** ``sum x_ij * (b_j - a_i) / 1000``: each kWh moved is worth the buyer's maximum
  price ``b_j`` (by default the grid retail price it avoids) minus the seller's minimum price
  ``a_i`` (by default the feed-in tariff it forgoes).  The trade price is a transfer between the
  two and cancels out.  Without pair limits the optimum is the merit order: highest bids meet
  lowest asks while the bid exceeds the ask (:func:`merit_order`).

With pair limits or a pair mask (:class:`MatchConstraints`) both objectives are solved as linear
programmes with HiGHS (:func:`solve_interval_lp`); the closed forms are the unconstrained special
cases and the tests check that the LP reproduces them.  A solver failure is a status, not an
exception.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

OBJECTIVES = ("energy", "welfare")


@dataclass(frozen=True, eq=False)
class MatchConstraints:
    """Pairwise limits the closed forms cannot express.

    ``max_pair_wh``: most energy one seller may deliver to one buyer in one interval;
    ``allowed``: boolean [seller house, buyer house], ``False`` where the pair may not trade
    (e.g. different feeders).  A house never trades with itself.
    """

    max_pair_wh: float | None = None
    allowed: np.ndarray | None = None

    @property
    def pairwise(self) -> bool:
        return self.max_pair_wh is not None or self.allowed is not None


@dataclass(frozen=True, eq=False)
class IntervalSolution:
    """One interval's optimum: ``status`` is ``"optimal"`` or the solver's failure message."""

    status: str
    matched_wh: float
    welfare: float
    sold_wh: np.ndarray
    bought_wh: np.ndarray


@dataclass(frozen=True, eq=False)
class Optimum:
    """Optimum per interval ([interval]) and a welfare-optimal allocation ([house, interval]).

    ``matched_wh``: maximum locally matched energy; ``welfare``: maximum welfare (currency);
    ``welfare_matched_wh``: energy moved in the welfare optimum (can be below ``matched_wh`` when
    some buyers bid below some sellers' asks).  ``status`` is ``"optimal"`` for every interval
    unless a solver failed (then that interval's numbers are NaN).
    """

    matched_wh: np.ndarray
    welfare: np.ndarray
    welfare_matched_wh: np.ndarray
    sold_wh: np.ndarray
    bought_wh: np.ndarray
    status: tuple[str, ...]
    method: str

    @property
    def matched_kwh(self) -> float:
        return float(np.sum(self.matched_wh)) / 1000.0

    @property
    def total_welfare(self) -> float:
        return float(np.sum(self.welfare))


def max_local_match_wh(surplus_wh: np.ndarray, deficit_wh: np.ndarray) -> np.ndarray:
    """Closed form per interval without pair limits: ``min(total surplus, total deficit)``."""
    return np.minimum(np.sum(surplus_wh, axis=0), np.sum(deficit_wh, axis=0))


def merit_order(surplus_wh, ask_per_kwh, deficit_wh, bid_per_kwh) -> IntervalSolution:
    """Welfare optimum of one interval without pair limits (all arrays [house]).

    Buyers sorted by falling bid meet sellers sorted by rising ask; energy moves while the
    marginal bid exceeds the marginal ask.  Ties break by house index.
    """
    surplus, deficit = np.asarray(surplus_wh, float), np.asarray(deficit_wh, float)
    sellers = np.lexsort((np.arange(surplus.size), np.asarray(ask_per_kwh, float)))
    buyers = np.lexsort((np.arange(deficit.size), -np.asarray(bid_per_kwh, float)))
    cum_s, cum_d = np.cumsum(surplus[sellers]), np.cumsum(deficit[buyers])
    top = min(cum_s[-1] if cum_s.size else 0.0, cum_d[-1] if cum_d.size else 0.0)
    edges = np.unique(np.concatenate(([0.0], cum_s[cum_s < top], cum_d[cum_d < top], [top])))
    mids = (edges[:-1] + edges[1:]) / 2
    ask = np.asarray(ask_per_kwh, float)[sellers][np.searchsorted(cum_s, mids)]
    bid = np.asarray(bid_per_kwh, float)[buyers][np.searchsorted(cum_d, mids)]
    gain = bid - ask
    lengths = np.diff(edges)
    positive = gain > 0
    matched = float(np.sum(lengths[positive]))
    sold, bought = np.zeros(surplus.size), np.zeros(deficit.size)
    sold[sellers] = np.clip(matched - (cum_s - surplus[sellers]), 0.0, surplus[sellers])
    bought[buyers] = np.clip(matched - (cum_d - deficit[buyers]), 0.0, deficit[buyers])
    welfare = float(np.sum(lengths[positive] * gain[positive])) / 1000.0
    return IntervalSolution("optimal", matched, welfare, sold, bought)


def solve_interval_lp(surplus_wh, ask_per_kwh, deficit_wh, bid_per_kwh, *,
                      objective: str = "welfare",
                      constraints: MatchConstraints | None = None) -> IntervalSolution:
    """One interval as a linear programme over pairs ``x_ij`` (HiGHS).

    ``objective``: ``"energy"`` maximises matched Wh, ``"welfare"`` maximises
    ``sum x_ij (b_j - a_i) / 1000``.  Pairs where a house would trade with itself, or that
    ``constraints.allowed`` forbids, get no variable.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: must be one of {OBJECTIVES}")
    surplus, deficit = np.asarray(surplus_wh, float), np.asarray(deficit_wh, float)
    ask, bid = np.asarray(ask_per_kwh, float), np.asarray(bid_per_kwh, float)
    seller_idx, buyer_idx = _pairs(surplus, deficit, constraints or MatchConstraints())
    sold, bought = np.zeros(surplus.size), np.zeros(deficit.size)
    if seller_idx.size == 0:
        return IntervalSolution("optimal", 0.0, 0.0, sold, bought)
    value_per_wh = (bid[buyer_idx] - ask[seller_idx]) / 1000.0
    weights = np.ones(seller_idx.size) if objective == "energy" else value_per_wh
    rows_s, s_inv = np.unique(seller_idx, return_inverse=True)
    rows_b, b_inv = np.unique(buyer_idx, return_inverse=True)
    n = seller_idx.size
    a_ub = sparse.vstack([
        sparse.csr_matrix((np.ones(n), (s_inv, np.arange(n))), shape=(rows_s.size, n)),
        sparse.csr_matrix((np.ones(n), (b_inv, np.arange(n))), shape=(rows_b.size, n)),
    ]).tocsr()
    b_ub = np.concatenate((surplus[rows_s], deficit[rows_b]))
    cap = None if constraints is None else constraints.max_pair_wh
    result = linprog(-weights, A_ub=a_ub, b_ub=b_ub, bounds=(0.0, cap), method="highs")
    if result.status != 0:
        nan = float("nan")
        return IntervalSolution(result.message, nan, nan, sold, bought)
    flows = np.maximum(result.x, 0.0)
    np.add.at(sold, seller_idx, flows)
    np.add.at(bought, buyer_idx, flows)
    return IntervalSolution("optimal", float(flows.sum()), float(flows @ value_per_wh),
                            sold, bought)


def solve_optimum(surplus_wh: np.ndarray, deficit_wh: np.ndarray, ask_per_kwh, bid_per_kwh, *,
                  constraints: MatchConstraints | None = None,
                  method: str = "auto") -> Optimum:
    """The optimum of every interval (arrays [house, interval]; prices broadcast to that).

    ``method``: ``"closed_form"`` (merit order, no pair limits), ``"lp"`` (pairwise LP, one
    energy and one welfare solve per interval) or ``"auto"`` (LP only if ``constraints`` has
    pairwise limits).
    """
    surplus, deficit = np.asarray(surplus_wh, float), np.asarray(deficit_wh, float)
    if surplus.shape != deficit.shape or surplus.ndim != 2:
        raise ValueError(f"surplus {surplus.shape} and deficit {deficit.shape} must be "
                         "equal-shaped [house, interval] arrays")
    ask = np.broadcast_to(np.asarray(ask_per_kwh, float), surplus.shape)
    bid = np.broadcast_to(np.asarray(bid_per_kwh, float), surplus.shape)
    pairwise = constraints is not None and constraints.pairwise
    if method == "auto":
        method = "lp" if pairwise else "closed_form"
    if method == "closed_form" and pairwise:
        raise ValueError("the closed form cannot respect pairwise constraints; use method='lp'")
    if method not in ("closed_form", "lp"):
        raise ValueError(f"method {method!r}: must be 'auto', 'closed_form' or 'lp'")
    columns = [_solve_column(surplus[:, t], ask[:, t], deficit[:, t], bid[:, t], method,
                             constraints) for t in range(surplus.shape[1])]
    energy, welfare = zip(*columns) if columns else ((), ())
    return Optimum(
        matched_wh=np.array([e.matched_wh for e in energy]),
        welfare=np.array([w.welfare for w in welfare]),
        welfare_matched_wh=np.array([w.matched_wh for w in welfare]),
        sold_wh=np.stack([w.sold_wh for w in welfare], axis=1) if columns else surplus * 0,
        bought_wh=np.stack([w.bought_wh for w in welfare], axis=1) if columns else surplus * 0,
        status=tuple(e.status if e.status != "optimal" else w.status
                     for e, w in zip(energy, welfare)),
        method=method)


def _solve_column(surplus, ask, deficit, bid, method, constraints):
    if method == "closed_form":
        welfare = merit_order(surplus, ask, deficit, bid)
        matched = float(min(surplus.sum(), deficit.sum()))
        energy = IntervalSolution("optimal", matched, float("nan"), surplus * 0, deficit * 0)
        return energy, welfare
    energy = solve_interval_lp(surplus, ask, deficit, bid, objective="energy",
                               constraints=constraints)
    welfare = solve_interval_lp(surplus, ask, deficit, bid, objective="welfare",
                                constraints=constraints)
    return energy, welfare


def _pairs(surplus: np.ndarray, deficit: np.ndarray,
           constraints: MatchConstraints) -> tuple[np.ndarray, np.ndarray]:
    """Seller and buyer house index of every allowed pair with positive surplus and deficit."""
    sellers, buyers = np.flatnonzero(surplus > 0), np.flatnonzero(deficit > 0)
    seller_idx = np.repeat(sellers, buyers.size)
    buyer_idx = np.tile(buyers, sellers.size)
    keep = seller_idx != buyer_idx
    if constraints.allowed is not None:
        keep &= np.asarray(constraints.allowed, bool)[seller_idx, buyer_idx]
    if constraints.max_pair_wh is not None and constraints.max_pair_wh <= 0:
        keep &= False
    return seller_idx[keep], buyer_idx[keep]
