"""Local search: every swap, add and drop move around a set, scored in one vectorised pass.

For a set S sorted by per-seller value w (best first), with cumulative shares c_0 = 0,
c_m = Σ_{l<m} a_l/D and F_S(x) the value of filling x (in units of D) from S in that order
(piecewise linear, ``np.interp`` over c and the cumulative value), the value of S − r + j is

    C2·X2(A_S − a_r + a_j) + F_{S−r}(1 − e_j) + w_j·e_j,

where e_j = clip(1 − P_j, 0, a_j/D) and P_j is the share of S − r that has a value ≥ w_j (those
sellers are filled before j).  F_{S−r}(x) is F_S(x) below c_r and F_S(x + a_r) − a_r·w_r above.
So the whole k × n neighbourhood costs a few array operations instead of k·n set evaluations.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from optimizer.selection.criteria import Problem, fill_order, soft_value

MIN_GAIN = 1e-10
MAX_ROUNDS = 200
PAIR_MOVE_MIN_SELLERS = 2
PAIR_MOVE_MAX_SELLERS = 5


@dataclass(frozen=True)
class Move:
    """Remove ``out`` (or nothing) and add ``into`` (or nothing); ``value`` of the result."""

    value: float
    out: int | None
    into: int | None


def _sorted_state(problem: Problem, members: list[int]):
    order = fill_order(problem, members)
    share, value = problem.share[order], problem.unit_value[order]
    cum_share = np.concatenate(([0.0], np.cumsum(share)))
    cum_value = np.concatenate(([0.0], np.cumsum(share * value)))
    return order, share, value, cum_share, cum_value


def _surplus(problem: Problem, offered_share):
    return problem.surplus_weight * np.clip(2.0 - offered_share, 0.0, 1.0)


def _swap_and_add(problem: Problem, members: list[int], state, allow_add: bool):
    """Values (rows: remove order[r], last row: remove nothing) × (columns: add j)."""
    order, share, value, cum_share, cum_value = state
    total_wh = int(problem.available_wh[order].sum())
    k = len(order)
    count_ge = np.searchsorted(-value, -problem.unit_value, side="right")
    before = cum_share[count_ge]                                   # P_j for S
    rows = np.arange(k + 1)[:, None]
    removed_share = np.append(share, 0.0)[:, None]
    removed_value = np.append(value, 0.0)[:, None]
    prefix = before[None, :] - removed_share * (rows < count_ge[None, :])
    take = np.clip(1.0 - prefix, 0.0, problem.share[None, :])
    rest = 1.0 - take
    cut = np.append(cum_share[:-1], np.inf)[:, None]
    filled = np.where(rest <= cut, np.interp(rest, cum_share, cum_value),
                      np.interp(rest + removed_share, cum_share, cum_value)
                      - removed_share * removed_value)
    removed_wh = np.append(problem.available_wh[order], 0)[:, None]
    offered_wh = total_wh - removed_wh + problem.available_wh[None, :]
    values = _surplus(problem, offered_wh / problem.deficit_wh) + filled \
        + take * problem.unit_value[None, :]
    values[offered_wh < problem.deficit_wh] = -math.inf
    values[:, order] = -math.inf
    if not allow_add:
        values[k, :] = -math.inf
    return values


def _drops(problem: Problem, state) -> np.ndarray:
    order, share, value, cum_share, cum_value = state
    total_wh = int(problem.available_wh[order].sum())
    filled = np.where(1.0 <= cum_share[:-1], np.interp(1.0, cum_share, cum_value),
                      np.interp(1.0 + share, cum_share, cum_value) - share * value)
    remaining_wh = total_wh - problem.available_wh[order]
    values = _surplus(problem, remaining_wh / problem.deficit_wh) + filled
    values[remaining_wh < problem.deficit_wh] = -math.inf
    return values


def add_values(problem: Problem, members: list[int]) -> np.ndarray:
    """Value of ``members`` + j for every candidate j (−inf where that cannot cover D or j is
    already a member); ``members`` itself need not cover D."""
    order, share, value, cum_share, cum_value = _sorted_state(problem, members)
    count_ge = np.searchsorted(-value, -problem.unit_value, side="right")
    take = np.clip(1.0 - cum_share[count_ge], 0.0, problem.share)
    offered_wh = int(problem.available_wh[order].sum()) + problem.available_wh
    values = _surplus(problem, offered_wh / problem.deficit_wh) \
        + np.interp(1.0 - take, cum_share, cum_value) + take * problem.unit_value
    values[offered_wh < problem.deficit_wh] = -math.inf
    values[order] = -math.inf
    return values


def best_move(problem: Problem, members: list[int]) -> Move | None:
    """The best single swap, add or drop that keeps the set feasible (None if no move exists)."""
    state = _sorted_state(problem, members)
    order = state[0]
    k = len(order)
    grid = _swap_and_add(problem, members, state, allow_add=k < problem.max_sellers)
    drops = _drops(problem, state) if k > 1 else np.full(0, -math.inf)
    flat = int(np.argmax(grid))
    row, col = divmod(flat, grid.shape[1])
    best = Move(float(grid[row, col]), int(order[row]) if row < k else None, col)
    if drops.size and drops.max() > best.value:
        r = int(np.argmax(drops))
        best = Move(float(drops[r]), int(order[r]), None)
    return best if math.isfinite(best.value) else None


def apply(members: list[int], move: Move) -> list[int]:
    out = [m for m in members if m != move.out]
    if move.into is not None:
        out.append(move.into)
    return sorted(out)


def hill_climb(problem: Problem, members: list[int], value: float | None = None,
               max_rounds: int = MAX_ROUNDS) -> tuple[list[int], float]:
    """Best-improvement local search from a feasible set to a local optimum."""
    members = sorted(members)
    value = soft_value(problem, members) if value is None else value
    for _ in range(max_rounds):
        move = best_move(problem, members)
        if move is None or move.value <= value + MIN_GAIN:
            break
        candidate = apply(members, move)
        candidate_value = soft_value(problem, candidate)
        if candidate_value <= value + MIN_GAIN:  # the fast formula and the check disagree
            break
        members, value = candidate, candidate_value
    return members, value


def _pair_grid(problem: Problem, kept: list[int], outside: np.ndarray) -> np.ndarray:
    """Value of ``kept`` + i + j for i (rows), j (columns) in ``outside``.

    Adding i to T gives F_{T+i}(x) = F_T(min(x, Q_i)) + w_i·clip(x − Q_i, 0, a_i)
    + F_T(max(x − a_i, Q_i)) − F_T(Q_i), with Q_i the share of T filled before i; j is then added
    to T + i with the single-add formula, its prefix growing by a_i when i comes first.
    """
    _, _, value, cum_share, cum_value = _sorted_state(problem, kept)
    share, unit = problem.share[outside], problem.unit_value[outside]
    before = cum_share[np.searchsorted(-value, -unit, side="right")]
    a_i, w_i, q_i = share[:, None], unit[:, None], before[:, None]
    prefix_j = before[None, :] + a_i * (w_i >= unit[None, :])
    take = np.clip(1.0 - prefix_j, 0.0, share[None, :])
    rest = 1.0 - take
    base = np.interp(q_i, cum_share, cum_value)
    filled = (np.interp(np.minimum(rest, q_i), cum_share, cum_value) + w_i * np.clip(rest - q_i, 0.0, a_i)
              + np.interp(np.maximum(rest - a_i, q_i), cum_share, cum_value) - base)
    offered_wh = sum(problem.sizes[j] for j in kept) + problem.available_wh[outside]
    offered_wh = offered_wh[:, None] + problem.available_wh[outside][None, :]
    values = _surplus(problem, offered_wh / problem.deficit_wh) + filled + take * unit[None, :]
    values[offered_wh < problem.deficit_wh] = -math.inf
    np.fill_diagonal(values, -math.inf)
    return values


def best_pair_exchange(problem: Problem, members: list[int]) -> tuple[list[int], float]:
    """The best plan that swaps two members for two outsiders (−inf if none is feasible)."""
    outside = np.setdiff1d(np.arange(problem.size), members)
    best, best_value = members, -math.inf
    if len(outside) < 2:
        return best, best_value
    for pair in itertools.combinations(members, 2):
        kept = [m for m in members if m not in pair]
        grid = _pair_grid(problem, kept, outside)
        flat = int(np.argmax(grid))
        if grid.flat[flat] > best_value:
            row, col = divmod(flat, grid.shape[1])
            best, best_value = sorted(kept + [int(outside[row]), int(outside[col])]), float(grid.flat[flat])
    return best, best_value


def deep_climb(problem: Problem, members: list[int], value: float | None = None) -> tuple[list[int], float]:
    """Hill climbing, then pair exchanges (for at most ``PAIR_MOVE_MAX_SELLERS`` sellers)
    alternated with hill climbing until neither improves."""
    members, value = hill_climb(problem, members, value)
    while PAIR_MOVE_MIN_SELLERS <= len(members) <= PAIR_MOVE_MAX_SELLERS:
        candidate, _ = best_pair_exchange(problem, members)
        candidate_value = soft_value(problem, candidate)
        if candidate_value <= value + MIN_GAIN:
            break
        members, value = hill_climb(problem, candidate, candidate_value)
    return members, value
