"""Real-time pool price from the supply/demand ratio (SDR), between feed-in and retail tariff.

With ``SDR = pool supply / pool demand``, feed-in tariff ``f`` and retail tariff ``r``
(``0 <= f < r``), the internal selling price follows the SDR pricing of Liu et al., "Energy
sharing model for photovoltaic prosumers" (IEEE Trans. Power Systems, 2017):

    sell = f r / ((r - f) SDR + f)         for 0 <= SDR <= 1,    sell = f for SDR > 1
    buy  = sell SDR + r (1 - SDR)          for 0 <= SDR <= 1,    buy  = f for SDR > 1

``sell`` falls from ``r`` (scarce supply) to ``f`` (balanced) and is paid per kWh put into the
pool; ``buy`` is what a buyer pays per kWh of her deficit on average (pool energy at ``sell``,
the rest from the grid at ``r``). Both stay within ``[f, r]`` and are continuous at SDR = 1.
An empty pool (no supply) prices at ``r``; no demand at ``f``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optimizer.markets.errors import OrderError


@dataclass(frozen=True)
class PoolTariffs:
    """Feed-in tariff (what the grid pays for exports) and retail tariff (what it charges)."""

    feed_in: float
    retail: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.feed_in) and math.isfinite(self.retail)
                and 0 <= self.feed_in < self.retail):
            raise OrderError(f"feed_in/retail: need 0 <= feed_in < retail, got "
                             f"{self.feed_in}, {self.retail}")


@dataclass(frozen=True)
class PoolPrice:
    supply_demand_ratio: float
    sell_price: float
    buy_price: float


def pool_price(supply_kwh: float, demand_kwh: float, tariffs: PoolTariffs) -> PoolPrice:
    """Prices per kWh for one interval; see the module docstring."""
    if not (supply_kwh >= 0 and demand_kwh >= 0):
        raise OrderError(f"supply_kwh/demand_kwh: must be >= 0, got {supply_kwh}, {demand_kwh}")
    f, r = tariffs.feed_in, tariffs.retail
    if demand_kwh == 0:
        return PoolPrice(math.inf, f, f)
    sdr = supply_kwh / demand_kwh
    if sdr > 1:
        return PoolPrice(sdr, f, f)
    sell = f * r / ((r - f) * sdr + f) if f > 0 else (r if sdr == 0 else 0.0)
    return PoolPrice(sdr, sell, sell * sdr + r * (1 - sdr))
