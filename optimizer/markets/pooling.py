"""Feeder cooperative pooling for one metering interval.

1. Every owner first consumes her own generation: ``self = min(generation, consumption)``.
2. What is left over (``surplus = generation - self``) goes into a shared pool; what is still
   needed (``deficit = consumption - self``) is the remaining demand.
3. The pool is shared among the remaining demand in proportion to each deficit:
   ``from_pool = deficit * min(1, pool / demand)``. If the pool is larger than the demand, each
   contributor's unshared part goes out to the grid in proportion to her surplus:
   ``to_pool = surplus * min(1, demand / pool)``, ``export = surplus - to_pool``.
4. The grid covers the rest: ``import = deficit - from_pool``.

Per node ``generation = self + to_pool + export`` and ``consumption = self + from_pool + import``;
over the feeder ``sum(to_pool) == sum(from_pool)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from optimizer.markets.errors import OrderError


@dataclass(frozen=True)
class NodeReading:
    """Metered energy of one node in one interval (kWh, both >= 0)."""

    node: str
    generation_kwh: float
    consumption_kwh: float

    def __post_init__(self) -> None:
        if not isinstance(self.node, str) or not self.node:
            raise OrderError(f"node {self.node!r}: node must be a non-empty string")
        for field in ("generation_kwh", "consumption_kwh"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise OrderError(f"node {self.node}: {field} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class PoolAllocation:
    """Where one node's generation went and where its consumption came from (kWh)."""

    node: str
    generation_kwh: float
    consumption_kwh: float
    self_kwh: float
    to_pool_kwh: float
    from_pool_kwh: float
    export_kwh: float
    import_kwh: float


@dataclass(frozen=True)
class PoolResult:
    """``pool_kwh`` offered to the pool, ``demand_kwh`` asked of it, ``shared_kwh`` exchanged."""

    allocations: tuple[PoolAllocation, ...]
    pool_kwh: float
    demand_kwh: float
    shared_kwh: float

    @property
    def self_kwh(self) -> float:
        return sum(a.self_kwh for a in self.allocations)


def share_pool(readings: Iterable[NodeReading]) -> PoolResult:
    """Pool the interval's surpluses among the deficits; see the module docstring."""
    readings = list(readings)
    seen: set[str] = set()
    for reading in readings:
        if reading.node in seen:
            raise OrderError(f"node {reading.node}: appears twice in one interval")
        seen.add(reading.node)
    own = [min(r.generation_kwh, r.consumption_kwh) for r in readings]
    surplus = [r.generation_kwh - s for r, s in zip(readings, own)]
    deficit = [r.consumption_kwh - s for r, s in zip(readings, own)]
    pool, demand = sum(surplus), sum(deficit)
    shared = min(pool, demand)
    give = shared / pool if pool > 0 else 0.0
    take = shared / demand if demand > 0 else 0.0
    allocations = tuple(
        PoolAllocation(r.node, r.generation_kwh, r.consumption_kwh, s,
                       to_pool_kwh=up * give, from_pool_kwh=down * take,
                       export_kwh=up - up * give, import_kwh=down - down * take)
        for r, s, up, down in zip(readings, own, surplus, deficit))
    return PoolResult(allocations, pool, demand, shared)
