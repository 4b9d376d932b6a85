"""Delivery, measured: the seller's metered surplus allocated to its trades, pure.

During an interval the seller's meter measures its surplus in sub-steps (one-minute readings by
default).  The rule that shares it between the trades agreed for the interval:

* in each sub-step the measured surplus is shared among the trades still short of their agreed
  energy, in proportion to their agreed energy, none receiving more than it still lacks; what a
  full trade cannot take is shared again among the others (water-filling), in whole Wh, the
  rounding remainder going one Wh at a time to the trades in agreement order;
* a trade is complete in the sub-step its agreed energy has arrived; its *duration* is the time
  from the seller's proposal to the end of that sub-step;
* a trade still short at the end of the interval ends with what arrived (its *quality* is
  delivered / agreed) and its duration runs to the end of the interval;
* what no trade takes is exported to the grid.

The sub-step readings are checked against the interval's reading first
(:func:`substep_problem`): one reading per sub-step, none negative, and generation and
consumption each summing to the interval's registers.  A meter that reports a sub-step missing
or twice, or readings that do not add up, is not trusted to shape the delivery: the interval's
measured surplus is then shared as if flat over the interval (:func:`flat_substeps`), and the
node counts the reason (``substeps_refused_<reason>``).  The interval's reading stays the
measure of what was delivered in all.

The shortfall (agreed - delivered) is bought by the buyer from the grid at the retail tariff.
The seller pays the buyer an *imbalance charge* for it: the shortfall at the difference between
the retail tariff of the interval and the agreed price (the buyer ends up paying the agreed price
for the energy it was promised), limited to what the seller holds after being paid
(:func:`imbalance_micro`).  Both parties co-sign the DELIVERY settlement that carries these
figures (:class:`ledger.DeliveryPayload`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ledger import cost_micro

__all__ = ["Allocation", "allocate", "flat_substeps", "imbalance_micro", "substep_problem"]


@dataclasses.dataclass(frozen=True)
class Allocation:
    """What one trade received: energy and the sub-step it completed in (None: never)."""

    delivered_wh: int
    completed_substep: int | None

    def duration_ms(self, proposed_at_ms: int, interval_start_ms: int, substep_ms: int,
                    substeps: int) -> int:
        """From the proposal to completion (or to the end of the interval)."""
        ends = self.completed_substep + 1 if self.completed_substep is not None else substeps
        return max(0, interval_start_ms + ends * substep_ms - proposed_at_ms)


def substep_problem(steps: Sequence[tuple[int, int]], count: int, generation_wh: int,
                    consumption_wh: int) -> str | None:
    """Why the sub-step readings ``(generation, consumption)`` of an interval cannot be used
    (None: they can): ``substep_missing`` (fewer than ``count``), ``substep_duplicate`` (more),
    ``substep_negative``, ``substep_sum_mismatch`` (they do not add up to the reading)."""
    if len(steps) < count:
        return "substep_missing"
    if len(steps) > count:
        return "substep_duplicate"
    if any(g < 0 or c < 0 for g, c in steps):
        return "substep_negative"
    if sum(g for g, _ in steps) != generation_wh or sum(c for _, c in steps) != consumption_wh:
        return "substep_sum_mismatch"
    return None


def flat_substeps(surplus_wh: int, count: int) -> list[int]:
    """``surplus_wh`` spread evenly over ``count`` sub-steps in whole Wh (the first ones take
    the remainder), for a meter without (usable) sub-step readings."""
    base, extra = divmod(max(0, int(surplus_wh)), count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def allocate(surplus_wh: Sequence[int], agreed_wh: Sequence[int]) -> list[Allocation]:
    """Share each sub-step's measured surplus among the trades (see the module doc)."""
    remaining = [max(0, int(a)) for a in agreed_wh]
    delivered = [0] * len(remaining)
    completed: list[int | None] = [None if r > 0 else 0 for r in remaining]
    for step, measured in enumerate(surplus_wh):
        pool = max(0, int(measured))
        while pool > 0:
            open_ = [i for i, r in enumerate(remaining) if r > 0]
            if not open_:
                break
            pool = _share(pool, open_, agreed_wh, remaining, delivered)
        for i, r in enumerate(remaining):
            if r == 0 and completed[i] is None:
                completed[i] = step
    return [Allocation(d, c) for d, c in zip(delivered, completed)]


def _share(pool: int, open_: list[int], agreed_wh: Sequence[int], remaining: list[int],
           delivered: list[int]) -> int:
    """One round of proportional shares; returns what is left of ``pool``."""
    total = sum(agreed_wh[i] for i in open_)
    given = 0
    for i in open_:
        take = min(pool * agreed_wh[i] // total, remaining[i])
        remaining[i] -= take
        delivered[i] += take
        given += take
    if given == 0:   # every share rounded down to 0: one Wh each, in agreement order
        for i in open_:
            if given == pool:
                break
            remaining[i] -= 1
            delivered[i] += 1
            given += 1
    return pool - given


def imbalance_micro(agreed_wh: int, delivered_wh: int, price_micro_per_kwh: int,
                    retail_micro_per_kwh: int, seller_holds_micro: int) -> int:
    """The seller's charge for its shortfall (see the module doc), at most what it holds."""
    shortfall = max(0, agreed_wh - delivered_wh)
    charge = cost_micro(shortfall, max(0, retail_micro_per_kwh - price_micro_per_kwh))
    return max(0, min(charge, seller_holds_micro))
