"""The literature markets of ``optimizer.markets`` run on a scenario, side by side with ours.

Each mechanism is an :class:`~simulator.baselines.IntervalMarket`: per interval it gets every
house's surplus and ask, deficit and bid (Wh, per kWh; by default asks are the feed-in tariff
and bids the interval's retail price, see :func:`~simulator.baselines.default_prices`) and
returns who sold, bought, paid and received.  A house with surplus is a seller, one with deficit
a buyer (a house is never both in one interval).  Every adapter guarantees ``sold <= surplus``,
``bought <= deficit`` and that buyers pay exactly what sellers receive.

* ``double_auction`` (:class:`DoubleAuction`): one uniform-price k-double auction per interval
  (:func:`optimizer.markets.clear_double_auction`).  The interval's retail price is the grid
  tariff that caps bids; since an interval lies in one time-of-day frame, this is the auction
  "per frame" of the literature with the frame's tariff.  Equal prices queue by house index
  (as in the optimum's merit order).  Pricing: ``mcp = lo + k (hi - lo)``
  with ``[lo, hi]`` the marginal matched ask and bid (``bounds="marginal"``, default) or also
  bounded by the best unmatched orders (``bounds="clearing"``); ``k = 0.5`` by default.
* ``continuous`` (:class:`ContinuousMatching`): every house's order arrives in a random order and
  is matched on arrival with price-time priority at the resting order's price
  (:func:`optimizer.markets.match_continuous`).  Arrival order (:func:`arrival_order`): a uniform
  random permutation of the houses with an order, drawn from a generator seeded with
  ``(seed, hash of the interval's surplus and deficit arrays)`` (:func:`interval_rng`), so the
  same seed and interval always give the same order, different intervals different orders, and
  the adapter keeps no state between calls.
* ``pooling`` (:class:`Pooling`): cooperative pool (:func:`optimizer.markets.share_pool`): the
  surpluses are shared among the deficits in proportion to each deficit (and, if the pool is
  larger than the demand, taken from each seller in proportion to her surplus).  Every pooled
  kWh is priced at the real-time pool price (:func:`optimizer.markets.pool_price`, Liu et al.
  2017) from the supply/demand ratio, between the feed-in tariff and the retail price.  Bids and
  asks are ignored: pooling is cooperative.
* ``nsga2`` (:class:`Nsga2Market`): NSGA-II search of the seller x buyer energy matrix and one
  price (:func:`optimizer.markets.optimise_welfare`), every candidate checked by the load flow on
  the feeder; sellers at buses outside 0.95-1.05 p.u. are capped to 90 % until feasible.  Houses
  go to the feeder's load buses in turn, house 0 first (:func:`house_buses`); without a feeder
  the houses sit on one slack bus (a copper plate: no voltage limit can bind).  It runs only on
  intervals with both surplus and deficit; the chosen solution is the feasible front member with
  the largest total welfare; no feasible member means no trade.  ``population`` and
  ``generations`` are capped by :data:`NSGA2_COMPARE` (its cost is the ``wall_s`` column).

:func:`compare_mechanisms` runs the chosen mechanisms through
:func:`~simulator.baselines.run_baselines` and times each; :func:`comparison_table` scores them
(:func:`~simulator.metrics.score`) next to no trading, the exact optimum and, if given, our own
decentralised trading.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from optimizer.markets import (
    Nsga2Config, NodeReading, Order, Participant, PoolTariffs, PricingRule, Side, Trade,
    WelfareProblem, clear_double_auction, match_continuous, optimise_welfare, place_on_houses,
    pool_price, share_pool,
)
from optimizer.powerflow import Feeder, FeederError, feeder_from_pandapower
from simulator.baselines import Baselines, IntervalMarket, MarketClearing, Prices, run_baselines
from simulator.errors import SimulatorError
from simulator.metrics import score
from simulator.outcome import Outcome
from simulator.profiles import Profiles
from simulator.tariffs import Tariffs

NSGA2_COMPARE = Nsga2Config(population=24, generations=30)
"""NSGA-II effort per interval in a comparison (the library default is 48 x 60)."""

TABLE_COLUMNS = ("mechanism", "local_match_kwh", "local_match_ratio", "welfare_ratio",
                 "self_sufficiency", "grid_import_kwh", "average_p2p_price_per_kwh",
                 "total_savings", "savings_gini", "wall_s")


class MechanismError(SimulatorError, ValueError):
    """A mechanism name or setting cannot be used (names the valid choices)."""


def interval_rng(seed: int, *arrays: np.ndarray) -> np.random.Generator:
    """A generator keyed by ``seed`` and the bytes of ``arrays`` (one interval's positions)."""
    digest = hashlib.blake2b(digest_size=8)
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return np.random.default_rng([seed, int.from_bytes(digest.digest(), "little")])


def arrival_order(surplus_wh, deficit_wh, rng: np.random.Generator) -> np.ndarray:
    """House indices with an order (surplus or deficit > 0) in a uniformly random order."""
    active = np.flatnonzero((np.asarray(surplus_wh) > 0) | (np.asarray(deficit_wh) > 0))
    return rng.permutation(active)


def _orders(surplus, ask, deficit, bid, seq: Mapping[int, int] | None = None) -> list[Order]:
    """A sell order ``s<house>`` per house with surplus, a buy order ``b<house>`` per deficit."""
    seq = seq or {}
    sells = [Order(f"s{i}", Side.SELL, surplus[i] / 1000, float(ask[i]), seq=seq.get(i, 0))
             for i in np.flatnonzero(surplus > 0)]
    buys = [Order(f"b{j}", Side.BUY, deficit[j] / 1000, float(bid[j]), seq=seq.get(j, 0))
            for j in np.flatnonzero(deficit > 0)]
    return sells + buys


def _from_trades(trades: Iterable[Trade], surplus: np.ndarray,
                 deficit: np.ndarray) -> MarketClearing:
    """Per-house arrays from trades between ``s<house>`` and ``b<house>`` orders."""
    sold, bought = np.zeros(surplus.size), np.zeros(deficit.size)
    paid, received = np.zeros(deficit.size), np.zeros(surplus.size)
    for trade in trades:
        seller, buyer = int(trade.seller[1:]), int(trade.buyer[1:])
        money = trade.kwh * trade.price
        sold[seller] += trade.kwh * 1000
        bought[buyer] += trade.kwh * 1000
        received[seller] += money
        paid[buyer] += money
    # kWh -> Wh round trips may overshoot by an ulp; the limits are hard.
    return MarketClearing(sold_wh=np.minimum(sold, surplus), bought_wh=np.minimum(bought, deficit),
                          paid=paid, received=received)


def _arrays(surplus_wh, deficit_wh) -> tuple[np.ndarray, np.ndarray]:
    surplus, deficit = np.asarray(surplus_wh, float), np.asarray(deficit_wh, float)
    if surplus.shape != deficit.shape or surplus.ndim != 1:
        raise MechanismError(f"surplus {surplus.shape} and deficit {deficit.shape} must be "
                             "equal-length [house] arrays")
    return surplus, deficit


@dataclass(frozen=True)
class DoubleAuction:
    """Uniform-price k-double auction of one interval (see the module docstring)."""

    rule: PricingRule = PricingRule()

    def __call__(self, surplus_wh, ask_per_kwh, deficit_wh, bid_per_kwh, *, retail_per_kwh,
                 feed_in_per_kwh) -> MarketClearing:
        del feed_in_per_kwh  # the asks carry it
        surplus, deficit = _arrays(surplus_wh, deficit_wh)
        by_house = {i: i for i in range(surplus.size)}  # equal prices: lower house first
        orders = _orders(surplus, ask_per_kwh, deficit, bid_per_kwh, by_house)
        result = clear_double_auction(orders, grid_tariff=retail_per_kwh, rule=self.rule)
        return _from_trades(result.trades, surplus, deficit)


def clear_continuous(surplus_wh, ask_per_kwh, deficit_wh, bid_per_kwh, *, retail_per_kwh: float,
                     arrival: Sequence[int]) -> MarketClearing:
    """Continuous matching of one interval with the houses' orders arriving in ``arrival``.

    ``arrival`` lists every house with surplus or deficit exactly once (earliest first).
    """
    surplus, deficit = _arrays(surplus_wh, deficit_wh)
    seq = {int(house): n for n, house in enumerate(arrival)}
    active = set(np.flatnonzero((surplus > 0) | (deficit > 0)).tolist())
    if len(seq) != len(arrival) or set(seq) != active:
        raise MechanismError(f"arrival: must list each house with an order once: houses "
                             f"{sorted(active)}, got {list(arrival)}")
    result = match_continuous(_orders(surplus, ask_per_kwh, deficit, bid_per_kwh, seq),
                              grid_tariff=retail_per_kwh)
    return _from_trades(result.trades, surplus, deficit)


@dataclass(frozen=True)
class ContinuousMatching:
    """Price-time priority matching; arrival order from :func:`arrival_order` and ``seed``."""

    seed: int = 0

    def __call__(self, surplus_wh, ask_per_kwh, deficit_wh, bid_per_kwh, *, retail_per_kwh,
                 feed_in_per_kwh) -> MarketClearing:
        del feed_in_per_kwh
        surplus, deficit = _arrays(surplus_wh, deficit_wh)
        arrival = arrival_order(surplus, deficit, interval_rng(self.seed, surplus, deficit))
        return clear_continuous(surplus, ask_per_kwh, deficit, bid_per_kwh,
                                retail_per_kwh=retail_per_kwh, arrival=arrival)


@dataclass(frozen=True)
class Pooling:
    """Cooperative pool at the pool price (see the module docstring)."""

    def __call__(self, surplus_wh, ask_per_kwh, deficit_wh, bid_per_kwh, *, retail_per_kwh,
                 feed_in_per_kwh) -> MarketClearing:
        del ask_per_kwh, bid_per_kwh  # cooperative: priced by the pool, not by the orders
        surplus, deficit = _arrays(surplus_wh, deficit_wh)
        houses = np.flatnonzero((surplus > 0) | (deficit > 0))
        pool = share_pool(NodeReading(str(i), surplus[i] / 1000, deficit[i] / 1000)
                          for i in houses)
        price = pool_price(pool.pool_kwh, pool.demand_kwh,
                           PoolTariffs(float(feed_in_per_kwh), float(retail_per_kwh)))
        sold, bought = np.zeros(surplus.size), np.zeros(deficit.size)
        sold[houses] = [a.to_pool_kwh * 1000 for a in pool.allocations]
        bought[houses] = [a.from_pool_kwh * 1000 for a in pool.allocations]
        return MarketClearing.uniform(np.minimum(sold, surplus), np.minimum(bought, deficit),
                                      price.sell_price)


@dataclass(frozen=True, eq=False)
class Nsga2Market:
    """NSGA-II welfare optimisation on ``feeder``, house ``h`` at pandapower bus ``buses[h]``."""

    feeder: Feeder
    buses: tuple[int, ...]
    interval_s: int
    seed: int = 0
    config: Nsga2Config = NSGA2_COMPARE

    def __call__(self, surplus_wh, ask_per_kwh, deficit_wh, bid_per_kwh, *, retail_per_kwh,
                 feed_in_per_kwh) -> MarketClearing:
        del feed_in_per_kwh
        surplus, deficit = _arrays(surplus_wh, deficit_wh)
        if surplus.size > len(self.buses):
            raise MechanismError(f"nsga2: {surplus.size} houses but buses for {len(self.buses)}")
        sellers, buyers = np.flatnonzero(surplus > 0), np.flatnonzero(deficit > 0)
        sold, bought = np.zeros(surplus.size), np.zeros(deficit.size)
        if sellers.size == 0 or buyers.size == 0:
            return MarketClearing.uniform(sold, bought, 0.0)
        problem = WelfareProblem(
            tuple(Participant(f"s{i}", surplus[i] / 1000, float(ask_per_kwh[i]), self.buses[i])
                  for i in sellers),
            tuple(Participant(f"b{j}", deficit[j] / 1000, float(bid_per_kwh[j]), self.buses[j])
                  for j in buyers),
            grid_tariff=float(retail_per_kwh), hours=self.interval_s / 3600)
        result = optimise_welfare(problem, self.feeder, interval_rng(self.seed, surplus, deficit),
                                  self.config)
        if result.chosen is None:
            return MarketClearing.uniform(sold, bought, 0.0)
        sold[sellers] = result.chosen.kwh.sum(axis=1) * 1000
        bought[buyers] = result.chosen.kwh.sum(axis=0) * 1000
        return MarketClearing.uniform(np.minimum(sold, surplus), np.minimum(bought, deficit),
                                      result.chosen.price)


def copper_plate() -> Feeder:
    """A feeder of one slack bus: every house on it, voltages always 1 p.u."""
    import pandapower as pp

    net = pp.create_empty_network(name="copper_plate")
    pp.create_ext_grid(net, pp.create_bus(net, 0.4))
    return feeder_from_pandapower(net, "copper_plate")


def house_buses(feeder: Feeder, houses: int) -> tuple[int, ...]:
    """House ``h`` on the feeder's ``h mod n``-th load bus (its only bus if it has none)."""
    placed = place_on_houses([str(h) for h in range(houses)], {}, feeder)
    return tuple(placed[str(h)] for h in range(houses))


def scenario_feeder(name: str) -> Feeder | None:
    """The load-flow feeder of a scenario's ``feeder`` name (``"none"``: ``None``)."""
    if name == "none":
        return None
    import pandapower.networks as networks

    maker = "create_cigre_network_lv" if name == "cigre_lv" else f"create_{name}"
    if not hasattr(networks, maker):
        raise MechanismError(f"feeder {name!r}: pandapower has no {maker}()")
    try:
        return feeder_from_pandapower(getattr(networks, maker)(), name)
    except FeederError as exc:
        raise MechanismError(f"feeder {name!r}: the load flow cannot use it ({exc}); run the "
                             "other mechanisms, or nsga2 with another feeder") from exc


@dataclass(frozen=True, eq=False)
class MechanismSetup:
    """What a mechanism may need beyond one interval's orders."""

    houses: int
    interval_s: int
    seed: int = 0
    feeder: Feeder | None = None
    k: float = 0.5
    bounds: str = "marginal"
    nsga2: Nsga2Config = NSGA2_COMPARE


def _double_auction(setup: MechanismSetup) -> IntervalMarket:
    return DoubleAuction(PricingRule(setup.k, setup.bounds))


def _continuous(setup: MechanismSetup) -> IntervalMarket:
    return ContinuousMatching(setup.seed)


def _pooling(setup: MechanismSetup) -> IntervalMarket:
    del setup
    return Pooling()


def _nsga2(setup: MechanismSetup) -> IntervalMarket:
    feeder = setup.feeder if setup.feeder is not None else copper_plate()
    return Nsga2Market(feeder, house_buses(feeder, setup.houses), setup.interval_s, setup.seed,
                       setup.nsga2)


MECHANISMS: dict[str, Callable[[MechanismSetup], IntervalMarket]] = {
    "double_auction": _double_auction,
    "continuous": _continuous,
    "pooling": _pooling,
    "nsga2": _nsga2,
}
"""Mechanism name -> factory building its :class:`IntervalMarket` from a :class:`MechanismSetup`."""


def check_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` validated against :data:`MECHANISMS` (unknown or repeated: MechanismError).
    None at all is fine: the no-trading and optimum baselines are always computed."""
    names = tuple(names)
    unknown = [n for n in names if n not in MECHANISMS]
    if unknown:
        raise MechanismError(f"unknown mechanism(s) {', '.join(map(repr, unknown))}; "
                             f"valid: {', '.join(MECHANISMS)}")
    if len(set(names)) != len(names):
        raise MechanismError(f"mechanisms: each at most once; got {list(names)}")
    return names


@dataclass(frozen=True, eq=False)
class Comparison(Baselines):
    """:class:`Baselines` plus the wall-clock seconds each mechanism spent clearing."""

    wall_s: dict[str, float] = field(default_factory=dict)


class _Timed:
    """Wraps a market and adds the time spent in each call to ``seconds``."""

    def __init__(self, market: IntervalMarket, clock: Callable[[], float]):
        self.market, self.clock, self.seconds = market, clock, 0.0

    def __call__(self, *args, **kwargs) -> MarketClearing:
        start = self.clock()
        try:
            return self.market(*args, **kwargs)
        finally:
            self.seconds += self.clock() - start


def compare_mechanisms(profiles: Profiles, tariffs: Tariffs,
                       names: Iterable[str] = tuple(MECHANISMS), *, feeder: Feeder | None = None,
                       seed: int = 0, k: float = 0.5, nsga2: Nsga2Config = NSGA2_COMPARE,
                       prices: Prices | None = None,
                       clock: Callable[[], float] = time.perf_counter) -> Comparison:
    """Run each mechanism in ``names`` on every interval of ``profiles``, with the baselines."""
    names = check_names(names)
    setup = MechanismSetup(houses=profiles.houses, interval_s=profiles.interval_s, seed=seed,
                           feeder=feeder, k=k, nsga2=nsga2)
    timed = {name: _Timed(MECHANISMS[name](setup), clock) for name in names}
    baselines = run_baselines(profiles, tariffs, markets=timed, prices=prices)
    return Comparison(prices=baselines.prices, no_trading=baselines.no_trading,
                      optimum=baselines.optimum, optimum_outcome=baselines.optimum_outcome,
                      markets=baselines.markets,
                      wall_s={name: market.seconds for name, market in timed.items()})


def comparison_table(baselines: Baselines, ours: Outcome | None = None) -> list[dict]:
    """One row per outcome: ``no_trading``, each market, ``optimum`` and ``ours`` (if given).

    Columns are :data:`TABLE_COLUMNS`; NaN becomes ``None``; ``wall_s`` is the mechanism's
    clearing time when ``baselines`` is a :class:`Comparison`, else ``None``.
    """
    outcomes = {"no_trading": baselines.no_trading, **baselines.markets,
                "optimum": baselines.optimum_outcome}
    if ours is not None:
        outcomes["ours"] = ours
    wall = baselines.wall_s if isinstance(baselines, Comparison) else {}
    prices = baselines.prices
    rows = []
    for name, outcome in outcomes.items():
        metrics = score(outcome, baselines.optimum, prices.retail_per_kwh,
                        prices.feed_in_per_kwh, bid_per_kwh=prices.bid_per_kwh,
                        ask_per_kwh=prices.ask_per_kwh, baseline=baselines.no_trading).as_dict()
        row = {"mechanism": name, **{c: metrics[c] for c in TABLE_COLUMNS[1:-1]}}
        row["wall_s"] = wall.get(name)
        rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping], currency: str = "EUR") -> str:
    """``rows`` of :func:`comparison_table` as aligned text (``-`` for missing values)."""
    headers = ("mechanism", "matched kWh", "match %", "welfare %", "self-suff %",
               "import kWh", f"p2p {currency}/kWh", f"savings {currency}", "gini", "wall s")
    formats = (str, "{:.1f}", "{:.1%}", "{:.1%}", "{:.1%}", "{:.1f}", "{:.4f}", "{:.2f}",
               "{:.3f}", "{:.2f}")
    cells = [[_cell(row[c], f) for c, f in zip(TABLE_COLUMNS, formats)] for row in rows]
    widths = [max(len(h), *(len(r[n]) for r in cells)) for n, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join("  ".join(v.ljust(w) if n == 0 else v.rjust(w)
                               for n, (v, w) in enumerate(zip(line, widths)))
                     for line in lines)


def _cell(value, fmt) -> str:
    if fmt is str:
        return str(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)
