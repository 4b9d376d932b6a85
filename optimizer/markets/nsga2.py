"""NSGA-II buyer/seller welfare optimisation with load-flow feasibility (DEAP sorting).

One *round* evolves a population of genomes (:mod:`optimizer.markets.welfare`) for
``generations`` generations: binary tournament on (front rank, crowding distance), simulated
binary crossover and polynomial mutation (Deb), then DEAP's ``selNSGA2`` keeps the best of
parents and children. Every candidate's dispatch is checked by the backward-forward sweep
(the whole population is one batched load flow); its voltages are recorded.

Feasibility follows the literature's capping rule: if any member of the round's Pareto front
puts a bus outside the voltage limits, every seller at such a bus is capped to ``cap_factor``
(90 %) of her current supply limit and the search repeats, until the whole front is feasible
(``status="feasible"``), no seller sits at a violating bus so capping cannot help, or
``max_rounds`` is reached (both ``status="infeasible"``). ``status="no_trade"`` means no pair of
orders can trade at all. The chosen solution is the feasible front member with the largest
total welfare, ties broken towards the most even split.

Randomness comes only from the ``numpy.random.Generator`` passed in; DEAP is used only for its
deterministic sorting, through local fitness classes (no ``deap.creator`` globals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from deap import base

from optimizer.markets.errors import OrderError
from optimizer.markets.welfare import WelfareProblem, decode, net_load_mw, welfare
from optimizer.powerflow import Feeder, VoltageLimits, solve


@dataclass(frozen=True)
class Nsga2Config:
    population: int = 48
    generations: int = 60
    crossover_prob: float = 0.9
    eta_crossover: float = 15.0
    eta_mutation: float = 20.0
    cap_factor: float = 0.9
    max_rounds: int = 30
    limits: VoltageLimits = VoltageLimits()

    def __post_init__(self) -> None:
        if self.population < 4 or self.population % 2:
            raise OrderError(f"population: must be an even number >= 4, got {self.population}")
        if self.generations < 1 or self.max_rounds < 1:
            raise OrderError("generations/max_rounds: must be >= 1")
        if not 0 < self.cap_factor < 1:
            raise OrderError(f"cap_factor: must be in (0, 1), got {self.cap_factor}")


@dataclass(frozen=True, eq=False)
class WelfareSolution:
    """One dispatch: ``kwh[s, b]`` at ``price``, its welfare and the bus voltages it gives."""

    kwh: np.ndarray
    price: float
    seller_welfare: float
    buyer_welfare: float
    vm_pu: np.ndarray
    feasible: bool

    @property
    def social_welfare(self) -> float:
        return self.seller_welfare + self.buyer_welfare

    @property
    def traded_kwh(self) -> float:
        return float(self.kwh.sum())


@dataclass(frozen=True, eq=False)
class Nsga2Result:
    """``front`` is sorted by rising seller welfare; ``supply_kwh`` are the sellers' final
    (possibly capped) limits; ``rounds`` the number of searches run."""

    status: str
    reason: str
    rounds: int
    evaluations: int
    sellers: tuple[str, ...]
    buyers: tuple[str, ...]
    front: tuple[WelfareSolution, ...]
    chosen: WelfareSolution | None
    supply_kwh: np.ndarray
    capped_sellers: tuple[str, ...]


class _Fitness(base.Fitness):
    weights = (1.0, 1.0)


class _Candidate:
    __slots__ = ("fitness", "row")

    def __init__(self, row: int, values: tuple[float, float]):
        self.row, self.fitness = row, _Fitness(values)


@dataclass(frozen=True)
class _Context:
    problem: WelfareProblem
    feeder: Feeder
    positions: tuple[np.ndarray, np.ndarray]
    background_p: np.ndarray
    background_q: np.ndarray
    config: Nsga2Config


def optimise_welfare(problem: WelfareProblem, feeder: Feeder, rng: np.random.Generator,
                     config: Nsga2Config = Nsga2Config(), background_p_mw=None,
                     background_q_mvar=None) -> Nsga2Result:
    """Search the welfare Pareto front of ``problem`` on ``feeder``; see the module docstring.
    ``background_*`` are other net loads per bus (MW/MVAr, ``Feeder.bus_index`` order)."""
    context = _context(problem, feeder, config, background_p_mw, background_q_mvar)
    supply = np.array([s.kwh for s in problem.sellers], dtype=float)
    ids = (tuple(s.id for s in problem.sellers), tuple(b.id for b in problem.buyers))
    if problem.price_range() is None:
        return Nsga2Result("no_trade", "no seller's ask is at or below a buyer's bid and the "
                           "tariff", 0, 0, *ids, (), None, supply, ())
    evaluations = 0
    for round_no in range(1, config.max_rounds + 1):
        front, count = _evolve(context, supply, rng)
        evaluations += count
        if all(feasible for *_, feasible in front):
            return _finish("feasible", "", round_no, evaluations, ids, front, supply, problem)
        violating = _violating_buses(front, config.limits)
        to_cap = np.isin(context.positions[0], violating) & (supply > 0)
        if not to_cap.any():
            return _finish("infeasible", "limits violated only at buses without sellers",
                           round_no, evaluations, ids, front, supply, problem)
        supply = np.where(to_cap, supply * config.cap_factor, supply)
    return _finish("infeasible", f"still violating after {config.max_rounds} rounds",
                   config.max_rounds, evaluations, ids, front, supply, problem)


def _context(problem, feeder, config, background_p, background_q) -> _Context:
    positions = tuple(np.array([feeder.position(p.bus) for p in group], dtype=int)
                      for group in (problem.sellers, problem.buyers))
    zeros = np.zeros(feeder.n_bus)
    bp = zeros if background_p is None else np.asarray(background_p, dtype=float)
    bq = zeros if background_q is None else np.asarray(background_q, dtype=float)
    if bp.shape != (feeder.n_bus,) or bq.shape != (feeder.n_bus,):
        raise OrderError(f"background_p_mw/background_q_mvar: expected shape ({feeder.n_bus},)")
    return _Context(problem, feeder, positions, bp, bq, config)


def _evaluate(context: _Context, genes: np.ndarray, supply: np.ndarray):
    kwh, price = decode(context.problem, genes, supply)
    seller, buyer = welfare(context.problem, kwh, price)
    load = net_load_mw(context.problem, kwh, context.positions, context.feeder.n_bus)
    flow = solve(context.feeder, load + context.background_p,
                 np.broadcast_to(context.background_q, load.shape))
    return (kwh, price, np.column_stack([seller, buyer]), flow.vm_pu,
            flow.within_limits(context.config.limits))


def _evolve(context: _Context, supply: np.ndarray, rng: np.random.Generator):
    config = context.config
    genes = rng.random((config.population, context.problem.n_genes))
    state = (genes, *_evaluate(context, genes, supply))
    for _ in range(config.generations):
        rank, crowding = _rank(state[3])
        parents = _tournament(rank, crowding, rng)
        children = _mutate(_crossover(state[0][parents], rng, config), rng, config)
        merged = [np.concatenate(pair) for pair in
                  zip(state, (children, *_evaluate(context, children, supply)))]
        keep = _select(merged[3], config.population)
        state = tuple(part[keep] for part in merged)
    count = config.population * (config.generations + 1)
    return _first_front(state), count


def _candidates(objectives: np.ndarray) -> list[_Candidate]:
    return [_Candidate(i, (float(a), float(b))) for i, (a, b) in enumerate(objectives)]


def _rank(objectives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from deap import tools      # here, not at import: deap.tools loads moocore (about 25 MB)
    rank, crowding = np.zeros(len(objectives), int), np.zeros(len(objectives))
    for level, front in enumerate(tools.sortNondominated(_candidates(objectives), len(objectives))):
        tools.emo.assignCrowdingDist(front)
        for candidate in front:
            rank[candidate.row] = level
            crowding[candidate.row] = candidate.fitness.crowding_dist
    return rank, crowding


def _select(objectives: np.ndarray, k: int) -> np.ndarray:
    from deap import tools
    return np.array([c.row for c in tools.selNSGA2(_candidates(objectives), k)])


def _tournament(rank: np.ndarray, crowding: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a, b = rng.integers(0, len(rank), size=(2, len(rank)))
    a_wins = (rank[a] < rank[b]) | ((rank[a] == rank[b]) & (crowding[a] >= crowding[b]))
    return np.where(a_wins, a, b)


def _crossover(parents: np.ndarray, rng: np.random.Generator, config: Nsga2Config) -> np.ndarray:
    """Simulated binary crossover on [0, 1] (Deb & Agrawal 1995), pairs (0,1), (2,3), ..."""
    x1, x2 = parents[0::2].copy(), parents[1::2].copy()
    lo, hi = np.minimum(x1, x2), np.maximum(x1, x2)
    span = hi - lo
    active = (rng.random(x1.shape) < 0.5) & (span > 1e-14) & (
        rng.random((len(x1), 1)) < config.crossover_prob)
    eta, u = config.eta_crossover, rng.random(x1.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        c1 = 0.5 * (lo + hi - _spread(u, 1 + 2 * lo / span, eta) * span)
        c2 = 0.5 * (lo + hi + _spread(u, 1 + 2 * (1 - hi) / span, eta) * span)
    swap = rng.random(x1.shape) < 0.5
    x1 = np.where(active, np.clip(np.where(swap, c2, c1), 0, 1), x1)
    x2 = np.where(active, np.clip(np.where(swap, c1, c2), 0, 1), x2)
    return np.concatenate([x1, x2])


def _spread(u: np.ndarray, beta: np.ndarray, eta: float) -> np.ndarray:
    alpha = 2.0 - beta ** -(eta + 1)
    return np.where(u <= 1 / alpha, (u * alpha) ** (1 / (eta + 1)),
                    (1 / (2 - u * alpha)) ** (1 / (eta + 1)))


def _mutate(genes: np.ndarray, rng: np.random.Generator, config: Nsga2Config) -> np.ndarray:
    """Polynomial mutation on [0, 1] (Deb & Goyal 1996), each gene with probability 1/n."""
    eta, u = config.eta_mutation, rng.random(genes.shape)
    power = 1 / (eta + 1)
    down = (2 * u + (1 - 2 * u) * (1 - genes) ** (eta + 1)) ** power - 1
    up = 1 - (2 * (1 - u) + 2 * (u - 0.5) * genes ** (eta + 1)) ** power
    step = np.where(u < 0.5, down, up)
    mutate = rng.random(genes.shape) < 1 / genes.shape[1]
    return np.clip(np.where(mutate, genes + step, genes), 0, 1)


def _first_front(state) -> list[tuple]:
    from deap import tools
    genes, kwh, price, objectives, vm, feasible = state
    front = tools.sortNondominated(_candidates(objectives), len(objectives), first_front_only=True)[0]
    rows, seen = [], set()
    for row in sorted((c.row for c in front), key=lambda r: (objectives[r, 0], r)):
        point = tuple(np.round(objectives[row], 12))
        if point not in seen:
            seen.add(point)
            rows.append(row)
    return [(kwh[r], price[r], objectives[r], vm[r], feasible[r]) for r in rows]


def _violating_buses(front: list[tuple], limits: VoltageLimits) -> np.ndarray:
    """Bus positions outside the limits (or without a converged voltage) in any infeasible member."""
    bad = [~np.isfinite(vm) | (vm < limits.v_min_pu) | (vm > limits.v_max_pu)
           for _, _, _, vm, ok in front if not ok]
    return np.flatnonzero(np.any(bad, axis=0))


def _finish(status, reason, rounds, evaluations, ids, front, supply, problem) -> Nsga2Result:
    solutions = tuple(WelfareSolution(kwh, float(price), float(obj[0]), float(obj[1]), vm, bool(ok))
                      for kwh, price, obj, vm, ok in front)
    feasible = [s for s in solutions if s.feasible]
    chosen = max(feasible, key=lambda s: (round(s.social_welfare, 9),
                                          -abs(s.seller_welfare - s.buyer_welfare)), default=None)
    initial = np.array([s.kwh for s in problem.sellers])
    capped = tuple(s.id for s, cap, first in zip(problem.sellers, supply, initial) if cap < first)
    return Nsga2Result(status, reason, rounds, evaluations, *ids, solutions, chosen, supply, capped)
