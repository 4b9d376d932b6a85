"""The welfare problem NSGA-II solves: a seller x buyer energy matrix and one price.

Decision: ``kwh[s, b]`` (energy seller ``s`` delivers to buyer ``b``) and a uniform price ``p``.
A genome is ``S*B + 1`` genes in [0, 1]: the price gene maps linearly onto ``[lo, hi]`` (``lo``
the lowest ask, ``hi`` the highest bid capped at the grid tariff); energy genes are fractions
of ``min(supply_s, demand_b)``. Decoding *repairs* every genome into a feasible matrix:

* a pair trades only if ``ask_s <= p <= min(bid_b, tariff)`` (individual rationality), else 0;
* rows over a seller's supply limit, then columns over a buyer's demand, are scaled down.

Objectives, both maximised:

    seller_welfare = sum_sb kwh[s, b] * (p - ask_s)
    buyer_welfare  = sum_sb kwh[s, b] * (min(bid_b, tariff) - p)

Why these: they are the two sides' gains from trade measured against their own limit prices,
so both are >= 0, zero without trade, bounded, linear in the energy for a given price, and free
of divisions or logarithms that blow up at zero trade. Their sum is the gains from trade of the
double auction (:attr:`AuctionResult.welfare`), independent of the price, so the two mechanisms
are directly comparable; the price is the only lever that moves welfare from one side to the
other, so the Pareto front is the set of efficient splits between buyers and sellers.

Physical model for the load flow: each buyer consumes her whole demand (the grid covers what she
does not buy locally); each seller injects exactly what she sells (unsold surplus is curtailed or
stored). Energy becomes average power over ``hours``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from optimizer.markets.errors import OrderError
from optimizer.markets.orders import Order, Side


@dataclass(frozen=True)
class Participant:
    """A seller (``kwh`` = supply limit, ``price`` = ask) or buyer (``kwh`` = demand,
    ``price`` = bid) at pandapower bus ``bus`` of the feeder."""

    id: str
    kwh: float
    price: float
    bus: int


@dataclass(frozen=True)
class WelfareProblem:
    sellers: tuple[Participant, ...]
    buyers: tuple[Participant, ...]
    grid_tariff: float
    hours: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.grid_tariff) and self.grid_tariff >= 0):
            raise OrderError(f"grid_tariff: must be a finite number >= 0, got {self.grid_tariff}")
        if not (math.isfinite(self.hours) and self.hours > 0):
            raise OrderError(f"hours: must be a finite number > 0, got {self.hours}")

    @property
    def n_genes(self) -> int:
        return len(self.sellers) * len(self.buyers) + 1

    def price_range(self) -> tuple[float, float] | None:
        """``(lo, hi)`` of the price gene, or ``None`` when no pair can trade."""
        if not self.sellers or not self.buyers:
            return None
        lo = min(s.price for s in self.sellers)
        hi = min(max(b.price for b in self.buyers), self.grid_tariff)
        return (lo, hi) if hi >= lo else None


def problem_from_orders(orders: Iterable[Order], buses: Mapping[str, int], grid_tariff: float,
                        hours: float = 1.0) -> WelfareProblem:
    """Sellers and buyers of ``orders`` placed at ``buses[order.id]``."""
    sellers, buyers = [], []
    for order in orders:
        if order.id not in buses:
            raise OrderError(f"order {order.id}: no bus given")
        person = Participant(order.id, order.kwh, order.price, int(buses[order.id]))
        (sellers if order.side is Side.SELL else buyers).append(person)
    return WelfareProblem(tuple(sellers), tuple(buyers), grid_tariff, hours)


def decode(problem: WelfareProblem, genes: np.ndarray,
           supply_kwh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(kwh (P, S, B), price (P,))`` of a population of genomes ``(P, n_genes)``."""
    lo, hi = problem.price_range() or (0.0, 0.0)
    price = lo + genes[:, -1] * (hi - lo)
    asks = np.array([s.price for s in problem.sellers])
    bids = np.minimum([b.price for b in problem.buyers], problem.grid_tariff)
    demand = np.array([b.kwh for b in problem.buyers])
    eligible = (asks[None, :, None] <= price[:, None, None]) & (
        bids[None, None, :] >= price[:, None, None])
    shape = (len(genes), len(asks), len(bids))
    kwh = genes[:, :-1].reshape(shape) * np.minimum.outer(supply_kwh, demand)[None] * eligible
    kwh *= _shrink(kwh.sum(axis=2), supply_kwh[None, :])[:, :, None]
    kwh *= _shrink(kwh.sum(axis=1), demand[None, :])[:, None, :]
    return kwh, price


def _shrink(total: np.ndarray, limit: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > limit, limit / np.where(total > 0, total, 1.0), 1.0)


def welfare(problem: WelfareProblem, kwh: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(seller_welfare (P,), buyer_welfare (P,))``; see the module docstring."""
    asks = np.array([s.price for s in problem.sellers])
    bids = np.minimum([b.price for b in problem.buyers], problem.grid_tariff)
    sold, bought = kwh.sum(axis=2), kwh.sum(axis=1)
    seller = (sold * (price[:, None] - asks[None, :])).sum(axis=1)
    buyer = (bought * (bids[None, :] - price[:, None])).sum(axis=1)
    return seller, buyer


def net_load_mw(problem: WelfareProblem, kwh: np.ndarray, positions: tuple[np.ndarray, np.ndarray],
                n_bus: int) -> np.ndarray:
    """Net load per bus ``(P, n_bus)`` in MW from the trades alone (add any background)."""
    seller_at, buyer_at = positions
    load = np.zeros((len(kwh), n_bus))
    demand = np.array([b.kwh for b in problem.buyers])
    np.add.at(load, (slice(None), buyer_at), np.broadcast_to(demand, (len(kwh), len(demand))))
    np.subtract.at(load, (slice(None), seller_at), kwh.sum(axis=2))
    return load / problem.hours / 1000.0
