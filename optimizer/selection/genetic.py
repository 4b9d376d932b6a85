"""The memetic GA: DEAP's toolbox driving set-based operators with repair and local search.

A genome is a feasible set of offers (sorted candidate indices).  What makes the GA worth its
cost over greedy (which it can never lose to: greedy's plan is in the first population and the
best plan is always kept):

* the first population is greedy's plan, its local optimum and randomised greedy constructions
  (per-seller values perturbed by noise);
* crossover builds a child from the parents' union, shared sellers first, and repairs it:
  :func:`~optimizer.selection.construct.complete` keeps only sellers that leave the set
  completable within the seller limit and closes it with the best completer, so every genome
  is feasible and no seller in it is redundant when the limit is k_min;
* mutation drops one to three sellers and repairs the set from a random pool;
* each generation's best new child is improved by best-improvement local search over every
  swap/add/drop move (:mod:`~optimizer.selection.neighbourhood`, which also removes redundant
  sellers when ``seller_slack`` allows more than k_min);
* the run stops after ``patience`` generations without improvement.

No DEAP ``creator`` classes are made (they would be global state shared between calls) and DEAP's
own operators are not used (they draw from the global ``random``): the fitness and individual
types are private classes here and all randomness comes from the ``random.Random`` passed in, so
a run is deterministic for a seed.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

from deap import base

from optimizer.selection.config import GaSettings
from optimizer.selection.construct import complete, extend, greedy
from optimizer.selection.criteria import Problem
from optimizer.selection.neighbourhood import deep_climb, hill_climb

MAX_SEED_ATTEMPTS_FACTOR = 3
MAX_DROPPED = 3
POOL_EXTRA = 8


class _Fitness(base.Fitness):
    weights = (1.0,)


class _Individual(list):
    """A feasible set of offers (sorted indices) with its fitness."""

    def __init__(self, members: Sequence[int], value: float):
        super().__init__(sorted(members))
        self.fitness = _Fitness((value,))

    @property
    def value(self) -> float:
        return self.fitness.values[0]


def _tournament(population: list[_Individual], rng: random.Random, size: int) -> _Individual:
    contenders = [population[rng.randrange(len(population))] for _ in range(size)]
    return max(contenders, key=lambda ind: ind.value)


def _noisy_order(problem: Problem, rng: random.Random, spread: float) -> list[int]:
    noisy = [(-(problem.unit_value[j] + rng.gauss(0.0, spread)), j) for j in range(problem.size)]
    return [j for _, j in sorted(noisy)]


def _crossover(first: _Individual, second: _Individual, problem: Problem,
               rng: random.Random) -> _Individual:
    shared = sorted(set(first) & set(second))  # a subset of a feasible set: completable
    single = sorted(set(first) ^ set(second))
    rng.shuffle(single)
    return _Individual(*extend(problem, shared, single))


def _mutation(parent: _Individual, problem: Problem, rng: random.Random) -> _Individual:
    kept = list(parent)
    rng.shuffle(kept)
    kept = kept[rng.randint(1, min(MAX_DROPPED, len(kept))):]
    pool = rng.sample(range(problem.size), min(problem.size, 2 * problem.max_sellers + POOL_EXTRA))
    return _Individual(*extend(problem, kept, pool))


def _toolbox(problem: Problem, rng: random.Random, settings: GaSettings) -> base.Toolbox:
    toolbox = base.Toolbox()
    spread = float(problem.unit_value.std()) or 1e-3
    toolbox.register("construct", lambda: _Individual(*complete(problem, [], _noisy_order(problem, rng, spread))))
    toolbox.register("select", _tournament, rng=rng, size=settings.tournament)
    toolbox.register("mate", _crossover, problem=problem, rng=rng)
    toolbox.register("mutate", _mutation, problem=problem, rng=rng)
    toolbox.register("improve", lambda ind: _Individual(*hill_climb(problem, list(ind), ind.value)))
    return toolbox


def _first_population(problem: Problem, toolbox: base.Toolbox, size: int,
                      polished: int) -> list[_Individual]:
    start = _Individual(*greedy(problem))
    population = {tuple(start): start}
    for _ in range(size * MAX_SEED_ATTEMPTS_FACTOR):
        if len(population) >= size:
            break
        individual = toolbox.construct()
        population.setdefault(tuple(individual), individual)
    for individual in list(population.values())[:polished]:
        improved = toolbox.improve(individual)
        population.setdefault(tuple(improved), improved)
    return list(population.values())


def _offspring(population: list[_Individual], toolbox: base.Toolbox, rng: random.Random,
               settings: GaSettings) -> list[_Individual]:
    children = []
    for _ in range(settings.population):
        first = toolbox.select(population)
        if rng.random() < settings.crossover_prob:
            child = toolbox.mate(first, toolbox.select(population))
        else:
            child = first
        if child is first or rng.random() < settings.mutation_prob:
            child = toolbox.mutate(child)
        children.append(child)
    return children


def _best(best: _Individual | None, population: list[_Individual]) -> _Individual:
    """A copy of the first individual with the highest value seen so far (what a one-place
    ``deap.tools.HallOfFame`` keeps; ``deap.tools`` itself is not imported: it loads moocore,
    about 25 MB a meter does not need)."""
    for individual in population:
        if best is None or individual.value > best.value:
            best = _Individual(individual, individual.value)
    return best


def run_ga(problem: Problem, rng: random.Random, settings: GaSettings) -> tuple[list[int], float, dict]:
    """The best feasible set found, its soft value and run statistics."""
    if not problem.feasible:
        return [], -math.inf, {"generations": 0}
    toolbox = _toolbox(problem, rng, settings)
    population = _first_population(problem, toolbox, settings.population, settings.seed_polished)
    best = _best(None, population)
    improved: set[tuple[int, ...]] = set()
    stale = generation = 0
    while generation < settings.max_generations and stale < settings.patience:
        generation += 1
        best_before = best.value
        children = _offspring(population, toolbox, rng, settings)
        known = {tuple(ind) for ind in population}
        fresh = {tuple(c): c for c in children if tuple(c) not in known}
        for leader in sorted(fresh.values(), key=lambda ind: -ind.value)[: settings.polished]:
            if tuple(leader) not in improved:
                improved.add(tuple(leader))
                polished = toolbox.improve(leader)
                fresh.setdefault(tuple(polished), polished)
        merged = {tuple(ind): ind for ind in population} | fresh
        population = sorted(merged.values(), key=lambda ind: -ind.value)[: settings.population]
        best = _best(best, population)
        stale = stale + 1 if best.value <= best_before + 1e-12 else 0
    members, value = deep_climb(problem, list(best), best.value)
    return members, value, {"generations": generation}
