"""Exact selection: a mixed-integer linear program solved by HiGHS, and brute force.

With X1 hard, maximising f over feasible plans is maximising C2·X2 + Σ_j w_j·u_j, and every
piece is linear in these variables (u_j = e_j/D, a'_j = a_j/D):

    y_j ∈ {0,1}   offer j is used            u_j ∈ [0, a'_j]   share of D bought from j
    z ∈ [0,1]     X2                          b ∈ {0,1}         X2 is positive (not floored)

    max  C2·z + Σ w_j·u_j
    s.t. Σ u_j = 1                           (buy exactly the deficit)
         u_j ≤ a'_j·y_j                      (only from used offers, at most what they have)
         Σ y_j ≤ k_min + slack               (fewest sellers)
         z ≤ 2 − Σ a'_j·y_j + M·(1 − b)      (X2 = max(0, 1 − s/D), s/D = Σ a'_j y_j − 1)
         z ≤ b

M = max(0, (sum of the k_max largest a'_j) − 2) bounds 2 − Σ a'_j y_j from below, so b = 0
relaxes the first X2 row.  Covering D follows from Σ u_j = 1 and u_j ≤ a'_j·y_j.  The chosen
set is re-scored with :func:`~optimizer.selection.criteria.soft_value`, the same evaluator the
heuristics use, and brute force (every set of k_min..k_max offers) cross-checks both for small n.

scipy (the ``[sim]`` extra) is imported only when the MILP is solved: brute force, and every
other strategy, run on a meter without it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from optimizer.selection.criteria import Problem, soft_value
from optimizer.selection.errors import SelectionConfigError

MIP_REL_GAP = 1e-9
BRUTE_FORCE_MAX_SETS = 2_000_000


def _constraints(problem: Problem) -> list:
    from scipy.optimize import LinearConstraint
    from scipy.sparse import coo_array, vstack
    n, share = problem.size, problem.share
    top = float(np.sort(share)[::-1][: problem.max_sellers].sum())
    big_m = max(0.0, top - 2.0)
    eye = np.arange(n)
    # columns: y (0..n-1), u (n..2n-1), z (2n), b (2n+1)
    link = coo_array((np.concatenate([-share, np.ones(n)]),
                      (np.concatenate([eye, eye]), np.concatenate([eye, eye + n]))), shape=(n, 2 * n + 2))
    rows = coo_array(np.vstack([
        np.concatenate([np.zeros(n), np.ones(n), [0.0, 0.0]]),
        np.concatenate([np.ones(n), np.zeros(n), [0.0, 0.0]]),
        np.concatenate([share, np.zeros(n), [1.0, big_m]]),
        np.concatenate([np.zeros(2 * n), [1.0, -1.0]]),
    ]))
    matrix = vstack([link, rows]).tocsr()
    lower = np.concatenate([np.full(n, -np.inf), [1.0, -np.inf, -np.inf, -np.inf]])
    upper = np.concatenate([np.zeros(n), [1.0, problem.max_sellers, 2.0 + big_m, 0.0]])
    return [LinearConstraint(matrix, lower, upper)]


def solve_milp(problem: Problem, time_limit_s: float = 10.0) -> tuple[list[int], float, bool]:
    """The optimal set, its value and whether HiGHS proved optimality (False on time limit)."""
    if not problem.feasible:
        return [], -math.inf, True
    n = problem.size
    cost = -np.concatenate([np.zeros(n), problem.unit_value, [problem.surplus_weight, 0.0]])
    integrality = np.concatenate([np.ones(n), np.zeros(n), [0, 1]])
    from scipy.optimize import Bounds, milp
    bounds = Bounds(np.zeros(2 * n + 2), np.concatenate([np.ones(n), problem.share, [1.0, 1.0]]))
    result = milp(cost, constraints=_constraints(problem), integrality=integrality, bounds=bounds,
                  options={"mip_rel_gap": MIP_REL_GAP, "time_limit": time_limit_s})
    if result.x is None:
        return [], -math.inf, False
    used = result.x[:n] > 0.5
    bought = result.x[n:2 * n] > 1e-9
    members = [int(j) for j in np.flatnonzero(used & bought)]
    value = soft_value(problem, members)
    if not math.isfinite(value):  # rounding dropped a seller that was needed after all
        members = [int(j) for j in np.flatnonzero(used)]
        value = soft_value(problem, members)
    return members, value, result.status == 0


def plan_count(problem: Problem) -> int:
    """How many seller sets of an allowed size (k_min..k_max) ``problem`` has."""
    return sum(math.comb(problem.size, k)
               for k in range(problem.min_sellers, problem.max_sellers + 1))


def brute_force(problem: Problem) -> tuple[list[int], float]:
    """Every set of k_min..k_max offers, scored one by one (for small instances and tests)."""
    if not problem.feasible:
        return [], -math.inf
    sets = plan_count(problem)
    if sets > BRUTE_FORCE_MAX_SETS:
        raise SelectionConfigError(
            f"strategy 'brute' would score {sets} sets (limit {BRUTE_FORCE_MAX_SETS}); use 'exact'")
    best, best_value = [], -math.inf
    for k in range(problem.min_sellers, problem.max_sellers + 1):
        for members in itertools.combinations(range(problem.size), k):
            value = soft_value(problem, members)
            if value > best_value + 1e-12:
                best, best_value = list(members), value
    return best, best_value
