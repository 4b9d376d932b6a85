"""Building feasible sets: the completability test, the greedy strategy and GA repair.

A partial set can still become a plan if the ``slots`` sellers it may still add can cover what
is missing; :func:`complete` walks a pool of candidates adding each one that keeps the set
completable, then closes it with the completer (an offer covering the rest) that gives the best
value.  The greedy strategy is :func:`greedy`: the pool is every offer by per-seller value, and
the best completion at every depth is kept.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterable, Sequence

import numpy as np

from optimizer.selection.criteria import Problem, soft_value
from optimizer.selection.neighbourhood import add_values


class _Room:
    """Whether an offer may join a partial set that lacks ``need_wh``, leaving ``slots_after``
    free slots that can still cover the rest.

    That holds iff the ``slots_after`` largest offers outside the set, j excluded, bring
    need − a_j; keeping the ``slots_after + 1`` largest outside offers makes each test O(1), and
    taking an offer only drops one of them (the slot count falls by one at the same time).
    """

    def __init__(self, problem: Problem, used: set[int], slots_after: int):
        self.sizes = problem.sizes
        self.rank = problem.size_rank
        self.slots_after = slots_after
        self.top: list[int] = []
        for j in problem.by_size:
            if len(self.top) > slots_after:
                break
            if j not in used:
                self.top.append(j)
        self._sums()

    def _sums(self) -> None:
        sizes = [self.sizes[j] for j in self.top]
        self.within, self.beyond = sum(sizes[: self.slots_after]), sum(sizes)

    def _in_top(self, j: int, count: int) -> bool:
        if count <= 0:
            return False
        if len(self.top) < count:
            return True
        return self.rank[j] <= self.rank[self.top[count - 1]]

    def fits(self, j: int, need_wh: int) -> bool:
        if self._in_top(j, self.slots_after):
            return self.beyond >= need_wh
        return self.within + self.sizes[j] >= need_wh

    def take(self, j: int) -> None:
        """Add j to the set (one slot fewer)."""
        slots = self.slots_after
        if self._in_top(j, slots):
            self.top.remove(j)
            self.within -= self.sizes[j]
            self.beyond -= self.sizes[j]
        else:  # the last kept offer drops out, whether it is j or not
            if self.rank[j] <= self.rank[self.top[-1]]:
                self.top.remove(j)
            else:
                self.top.pop()
            self.beyond = self.within
            self.within -= self.sizes[self.top[slots - 1]] if slots > 0 else 0
        self.slots_after = slots - 1


def _need(problem: Problem, members: Iterable[int]) -> int:
    return problem.deficit_wh - sum(problem.sizes[j] for j in members)


def best_completion(problem: Problem, members: list[int]) -> tuple[list[int], float]:
    """``members`` plus the single offer that completes it best (value −inf if none does)."""
    values = add_values(problem, members)
    j = int(np.argmax(values))
    if not math.isfinite(values[j]):
        return members, -math.inf
    return sorted(members + [j]), float(values[j])


def extend(problem: Problem, chosen: Sequence[int], pool: Iterable[int]) -> tuple[list[int], float]:
    """Extend a partial set that is known to be completable (a subset of a feasible set, or
    empty): take pool offers, then the largest ones, while the set stays completable, and close
    it with the best completer."""
    chosen = list(chosen)
    need = _need(problem, chosen)
    if need <= 0:
        return sorted(chosen), soft_value(problem, chosen)
    used = set(chosen)
    room = _Room(problem, used, problem.max_sellers - len(chosen) - 1)
    for j in itertools.chain(pool, problem.by_size):
        if room.slots_after <= 0:
            break
        energy = problem.sizes[j]
        if j in used or energy >= need or not room.fits(j, need):
            continue
        chosen.append(j)
        used.add(j)
        need -= energy
        room.take(j)
    return best_completion(problem, chosen)


def complete(problem: Problem, members: Sequence[int], pool: Iterable[int]) -> tuple[list[int], float]:
    """A feasible set from ``members`` (kept as they are if already feasible), else by walking
    ``members`` then ``pool`` (see module doc)."""
    members = list(dict.fromkeys(members))
    if len(members) <= problem.max_sellers and _need(problem, members) <= 0:
        return sorted(members), soft_value(problem, members)
    return extend(problem, [], itertools.chain(members, pool))


def greedy(problem: Problem) -> tuple[list[int], float]:
    """Add offers by per-seller value while the set stays completable; at every depth try the
    best completion; return the best plan seen."""
    if not problem.feasible:
        return [], -math.inf
    pool = [int(j) for j in np.lexsort((np.arange(problem.size), -problem.unit_value))]
    chosen: list[int] = []
    best, best_value = [], -math.inf
    used, need = set(), problem.deficit_wh
    while True:
        candidate, value = best_completion(problem, chosen)
        if value > best_value:
            best, best_value = candidate, value
        slots_after = problem.max_sellers - len(chosen) - 1
        room = _Room(problem, used, slots_after)
        step = next((j for j in pool if j not in used and problem.sizes[j] < need
                     and room.fits(j, need)), None) if slots_after > 0 else None
        if step is None:
            return best, best_value
        chosen.append(step)
        used.add(step)
        need -= problem.sizes[step]
