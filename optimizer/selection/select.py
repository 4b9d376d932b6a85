"""The one entry point: ``select_offers(request, candidates, ...) -> Plan``.

The strategy is configuration: "ga" (the memetic GA, default), "exact" (MILP, HiGHS), "greedy",
or "brute" (every set; small instances only).  The GA enumerates instead when every plan can be
scored for less than its shortest run (:data:`ENUMERATE_MAX_SETS`): a buyer choosing two of a
dozen sellers has 66 plans, and the exact best of them costs a millisecond.  All of them score plans with the same criteria
and return the same :class:`~optimizer.selection.plan.Plan`; an infeasible request yields a plan
with ``status == "infeasible"``, not an exception.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Sequence

from optimizer.selection.config import SelectionConfig, Weights, check_strategy
from optimizer.selection.construct import greedy
from optimizer.selection.criteria import Problem, build_problem
from optimizer.selection.errors import InvalidInputError
from optimizer.selection.exact import brute_force, plan_count, solve_milp
from optimizer.selection.genetic import run_ga
from optimizer.selection.inputs import BuyRequest, Candidate
from optimizer.selection.plan import Plan, make_plan

DEFAULT_CONFIG = SelectionConfig()
ENUMERATE_MAX_SETS = 1024
"""Below this many plans the "ga" strategy scores them all.  Measured on the quickstart's own
buy steps (57 meters, 11:00-12:00, 113 rankings of 1-91 plans): the GA took 44 ms per ranking,
scoring every plan 1.6 ms (about 20 us a plan), with the same best plan every time; 1024 plans
cost about 20 ms, less than the GA's shortest run."""


def _rng(seed: int | random.Random) -> random.Random:
    if isinstance(seed, random.Random):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInputError(f"seed must be an int or a random.Random, got {type(seed).__name__}")
    return random.Random(seed)


def _solve(problem: Problem, strategy: str, config: SelectionConfig,
           seed: int | random.Random) -> tuple[list[int], bool, dict]:
    """(members, proved optimal, stats) for a feasible problem."""
    if strategy == "ga" and plan_count(problem) <= ENUMERATE_MAX_SETS or \
            problem.max_sellers == 1 and strategy != "exact":
        members, _ = brute_force(problem)  # few plans (or n single-seller ones): all scored
        return members, True, {}
    if strategy == "ga":
        members, _, stats = run_ga(problem, _rng(seed), config.ga)
        return members, False, stats
    if strategy == "greedy":
        return greedy(problem)[0], False, {}
    if strategy == "brute":
        return brute_force(problem)[0], True, {}
    members, _, proved = solve_milp(problem, config.exact_time_limit_s)
    if not members:  # HiGHS found no plan within its time limit: fall back to greedy's
        return greedy(problem)[0], False, {"exact_timed_out": 1.0}
    return members, proved, {}


def select_offers(request: BuyRequest, candidates: Sequence[Candidate],
                  weights: Weights | None = None, *, strategy: str | None = None,
                  seed: int | random.Random = 0,
                  config: SelectionConfig = DEFAULT_CONFIG) -> Plan:
    """Rank the candidate offers for ``request``.

    ``weights`` and ``strategy`` override the ones in ``config`` when given.  ``seed`` (or a
    ``random.Random``) makes the GA deterministic; the other strategies ignore it.
    """
    if not isinstance(request, BuyRequest):
        raise InvalidInputError("request must be a BuyRequest")
    candidates = tuple(candidates)
    if any(not isinstance(c, Candidate) for c in candidates):
        raise InvalidInputError("candidates must all be Candidate instances")
    weights = config.weights if weights is None else weights
    if not isinstance(weights, Weights):
        raise InvalidInputError("weights must be a Weights")
    strategy = check_strategy(config.strategy if strategy is None else strategy)
    problem = build_problem(request, candidates, _with_weights(config, weights))
    members, optimal, stats = _solve(problem, strategy, config, seed) if problem.feasible else ([], True, {})
    return make_plan(problem, members, weights_soft=weights.soft(), strategy=strategy,
                     optimal=optimal, max_fallbacks=config.max_fallbacks, stats=stats)


def _with_weights(config: SelectionConfig, weights: Weights) -> SelectionConfig:
    if weights is config.weights:
        return config
    return replace(config, weights=weights)
