"""The day-ahead half of the node shell: the daily market before the real-time one.

At the day's open step (:func:`p2pnode.trading.schedule.day_times`) the node forecasts every
interval of the next day, offers the forecast surpluses and notes the deficits; at its buy step
it buys them.  Positions are a low quantile of the day-ahead forecast
(:func:`p2pnode.trading.hedging.day_ahead_quantity_wh`); on the day the real-time market trades
the difference (:meth:`p2pnode.node.Node.open_interval` subtracts what was traded ahead).  This
mixin of :class:`p2pnode.node.Node` does the I/O; the decisions are the trading core's.
"""

from __future__ import annotations

import asyncio

from p2pnode.trading.buyer import Buying
from p2pnode.trading.hedging import day_ahead_quantity_wh

__all__ = ["DayAheadSide", "DAY_AHEAD_PUBLISHES"]

DAY_AHEAD_PUBLISHES = 8   # day-ahead offers of one node being published at once


class DayAheadSide:
    """The day-ahead market: :meth:`open_day`, :meth:`buy_day`."""

    async def open_day(self, day_start_s: int) -> int:
        """The day-ahead market's open step: forecast every interval of the day; offer the
        forecast surpluses, note the deficits to buy.  Returns how many offers it opened."""
        if self.failsafe.health.grid_only:
            return 0
        enter, interval = self.config.detection.enter_wh, self.config.interval_s
        nets = {start: self._forecast(start) for start in range(day_start_s, day_start_s + 86400,
                                                                 interval)}
        self._forecast_ahead.update(nets)
        scale = self.day_ahead_scale.value   # positions: a low quantile (trading.hedging)
        selling = [s for s, net in nets.items() if net >= enter]
        for start, net in nets.items():
            if net <= -enter and self.config.constraints.buys:
                need = day_ahead_quantity_wh(-net, scale)
                self._buying_ahead[start] = Buying(need, need, hedged=True)
        gate = asyncio.Semaphore(DAY_AHEAD_PUBLISHES)

        async def one(start: int) -> None:
            async with gate:
                await self._open_selling(start, nets[start], day_ahead=True)

        await asyncio.gather(*(one(s) for s in selling))
        return len(selling)

    def _bought_ahead_wh(self, start_s: int) -> int:
        state = self._buying_ahead.get(start_s)
        return sum(p.payload.energy_wh for p in state.trades) if state is not None else 0


    async def buy_day(self, day_start_s: int) -> int:
        """The day-ahead market's buy step: buy each interval of the day its forecast lacks."""
        bought = 0
        for start in sorted(s for s in self._buying_ahead if s - s % 86400 == day_start_s):
            bought += await self._buy(start, self._buying_ahead[start])
        return bought
