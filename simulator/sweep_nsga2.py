"""NSGA-II over a sweep's parameters (pure: the evaluation of a generation is passed in).

Each configuration is a genome of one gene in [0, 1] per parameter, decoded by
:func:`simulator.sweep_points.from_unit` (list parameters are categorical: the gene picks an
index).  A generation is: binary tournament on (front rank, crowding distance), simulated binary
crossover (Deb & Agrawal 1995) and polynomial mutation (Deb & Goyal 1996) on the genes, the
children evaluated as one batch (so they run in parallel), and DEAP's ``selNSGA2`` keeping the
best ``population`` of parents and children.  A configuration whose runs failed has no scores
(NaN) and is kept only when too few others are left.

All randomness comes from one ``numpy.random.Generator`` seeded with the sweep's ``seed``; DEAP
is used for its deterministic sorting only, through a local fitness class (no ``deap.creator``
globals, no module-level ``random``), so a sweep is repeatable for a seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from deap import base, tools

from simulator.sweep_points import from_unit
from simulator.sweep_spec import SweepSpec

Evaluate = Callable[[list[tuple], int], np.ndarray]
"""``evaluate(configs, generation)`` -> scores ``[len(configs), objectives]``, each objective
multiplied by its sign (larger is better); a row of NaN for a configuration that failed."""


@dataclass(frozen=True)
class Variation:
    """Operator settings.  The distribution indices are lower than the usual 15-20: a sweep
    affords tens to hundreds of runs, not tens of thousands, so children must land further from
    their parents.  On the two-objective test problem of ``tests/test_sweep.py`` (population
    16, 20 generations, 12 seeds) 3/3 reached 97-99 % of the known front's hypervolume,
    15/20 only 77-94 % -- less than as many random samples (91-97 %)."""

    crossover_prob: float = 0.9
    eta_crossover: float = 3.0
    eta_mutation: float = 3.0


def evolve(spec: SweepSpec, evaluate: Evaluate,
           variation: Variation = Variation()) -> tuple[list[tuple], np.ndarray]:
    """Run ``spec.generations`` generations after a random first population; returns the final
    population's configurations and scores."""
    rng = np.random.default_rng(spec.seed)
    genes = rng.random((spec.population, len(spec.parameters)))
    scores = _checked(evaluate(decode(spec, genes), 0), len(genes), spec)
    for generation in range(1, spec.generations + 1):
        rank, crowding = rank_and_crowding(scores)
        parents = genes[tournament(rank, crowding, rng)]
        children = mutate(crossover(parents, rng, variation), rng, variation)
        child_scores = _checked(evaluate(decode(spec, children), generation), len(children), spec)
        genes, scores = np.vstack([genes, children]), np.vstack([scores, child_scores])
        keep = select(scores, spec.population, decode(spec, genes))
        genes, scores = genes[keep], scores[keep]
    return decode(spec, genes), scores


def decode(spec: SweepSpec, genes: np.ndarray) -> list[tuple]:
    return [tuple(from_unit(p, float(g)) for p, g in zip(spec.parameters, row)) for row in genes]


def _checked(scores, rows: int, spec: SweepSpec) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (rows, len(spec.objectives)):
        raise ValueError(f"evaluate returned scores of shape {scores.shape}, "
                         f"expected {(rows, len(spec.objectives))}")
    return scores


class _Fitness(base.Fitness):
    """Every score is already oriented so that larger is better."""

    def __init__(self, values=()):
        self.weights = (1.0,) * len(values)
        super().__init__(values)


class _Member:
    __slots__ = ("fitness", "row")

    def __init__(self, row: int, values):
        self.row, self.fitness = row, _Fitness(tuple(float(v) for v in values))


def _valid_rows(scores: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isfinite(scores).all(axis=1))


def rank_and_crowding(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front number (0 = non-dominated) and crowding distance of every row; failed rows rank
    behind every valid one with no crowding credit."""
    rank, crowding = np.full(len(scores), len(scores), dtype=int), np.zeros(len(scores))
    members = [_Member(row, scores[row]) for row in _valid_rows(scores)]
    for level, front in enumerate(tools.sortNondominated(members, len(members))):
        tools.emo.assignCrowdingDist(front)
        for member in front:
            rank[member.row], crowding[member.row] = level, member.fitness.crowding_dist
    return rank, crowding


def select(scores: np.ndarray, k: int, configs: list | None = None) -> np.ndarray:
    """The ``k`` rows ``selNSGA2`` keeps.  A repeated configuration (``configs``: the decoded
    rows) or a failed row only fills places that distinct valid ones cannot: a population of
    copies would stop the search."""
    repeated, seen = set(), set()
    for row, config in enumerate(configs or ()):
        (repeated if config in seen else seen).add(row if config in seen else config)
    valid = [row for row in _valid_rows(scores) if row not in repeated]
    members = [_Member(row, scores[row]) for row in valid]
    chosen = [m.row for m in tools.selNSGA2(members, min(k, len(members)))] if members else []
    rest = [row for row in range(len(scores)) if row not in set(valid)]
    return np.array(chosen + rest[:k - len(chosen)], dtype=int)


def tournament(rank: np.ndarray, crowding: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Binary tournaments: lower rank wins, then larger crowding distance."""
    a, b = rng.integers(0, len(rank), size=(2, len(rank)))
    a_wins = (rank[a] < rank[b]) | ((rank[a] == rank[b]) & (crowding[a] >= crowding[b]))
    return np.where(a_wins, a, b)


def crossover(parents: np.ndarray, rng: np.random.Generator,
              variation: Variation = Variation()) -> np.ndarray:
    """Simulated binary crossover of pairs (0, 1), (2, 3), ... on genes in [0, 1]."""
    first, second = parents[0::2], parents[1::2]
    eta = variation.eta_crossover
    u = rng.random(first.shape)
    beta = np.where(u <= 0.5, (2 * u) ** (1 / (eta + 1)), (1 / (2 * (1 - u))) ** (1 / (eta + 1)))
    mix = (rng.random(first.shape) < 0.5) & \
        (rng.random((len(first), 1)) < variation.crossover_prob)
    mean, half = (first + second) / 2, np.abs(second - first) / 2
    low, high = mean - beta * half, mean + beta * half
    child_a = np.where(mix, np.where(first <= second, low, high), first)
    child_b = np.where(mix, np.where(first <= second, high, low), second)
    return np.clip(np.concatenate([child_a, child_b]), 0.0, 1.0)


def mutate(genes: np.ndarray, rng: np.random.Generator,
           variation: Variation = Variation()) -> np.ndarray:
    """Polynomial mutation, each gene with probability 1 / genes per genome."""
    eta, u = variation.eta_mutation, rng.random(genes.shape)
    delta = np.where(u < 0.5, (2 * u) ** (1 / (eta + 1)) - 1, 1 - (2 * (1 - u)) ** (1 / (eta + 1)))
    step = np.where(delta < 0, delta * genes, delta * (1 - genes))   # stays inside [0, 1]
    hit = rng.random(genes.shape) < 1 / genes.shape[1]
    return np.clip(np.where(hit, genes + step, genes), 0.0, 1.0)
