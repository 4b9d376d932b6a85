"""The meter and the forecast half of the node shell: readings, sub-step readings, forecasts and
the error scales the hedges are sized from.

The decisions are pure elsewhere (:mod:`models.forecast`, :mod:`p2pnode.trading.delivery`,
:mod:`p2pnode.trading.hedging`); this mixin of :class:`p2pnode.node.Node` reads the meter, feeds
the forecaster in time order, counts what it refuses, and keeps the error scales up to date.
"""

from __future__ import annotations

import logging

from p2pnode.errors import NodeError
from p2pnode.meter import Reading
from p2pnode.trading.delivery import flat_substeps, substep_problem
from p2pnode.trading.schedule import day_times

__all__ = ["MeterSide"]

log = logging.getLogger(__name__)


class MeterSide:
    """Readings and forecasts: :meth:`_reading`, :meth:`_surplus_substeps`, :meth:`_forecast`."""

    def _reading(self, start_s: int) -> Reading:
        """The metered interval (read once), shown to the forecaster in time order."""
        reading = self._readings.get(start_s)
        if reading is None:
            reading = self._readings[start_s] = self.meter.read(start_s, self.config.interval_s)
        if self.forecaster is not None and start_s > self._observed_s:
            try:
                self.forecaster.observe(start_s, reading.generation_wh, reading.consumption_wh)
            except ValueError as exc:   # models.errors.ReadingError: out of order, duplicate
                self.counters[f"reading_refused_{getattr(exc, 'reason', 'invalid')}"] += 1
            self._observed_s = start_s
            if start_s in self._forecast_net:
                self.error_scale.add(self._forecast_net[start_s], reading.net_wh)
            if start_s in self._forecast_ahead:
                self.day_ahead_scale.add(self._forecast_ahead.pop(start_s), reading.net_wh)
        return reading

    def _surplus_substeps(self, start_s: int) -> list[int]:
        """The metered surplus of each sub-step of the interval: the meter's sub-step readings
        if they add up to the interval's reading, else the reading spread flat (counted as
        ``substeps_refused_<reason>``, :func:`~p2pnode.trading.delivery.substep_problem`)."""
        reading = self._reading(start_s)
        count = self.config.interval_s // self.config.market.substep_s
        steps = self.meter.substeps(start_s, self.config.interval_s, self.config.market.substep_s)
        if steps is None:
            return flat_substeps(reading.net_wh, count)
        problem = substep_problem(steps, count, reading.generation_wh, reading.consumption_wh)
        if problem is not None:
            self.counters[f"substeps_refused_{problem}"] += 1
            log.warning("interval %s: sub-step readings refused (%s); delivery measured flat",
                        start_s, problem)
            return flat_substeps(reading.net_wh, count)
        return [max(0, g - c) for g, c in steps]

    def _expected_net(self, start_s: int) -> int:
        """Net energy the node trades on: metered ex post, forecast in real time."""
        if self.config.market.mode == "ex_post":
            reading = self._reading(start_s)
            self._mint(reading)
            return reading.net_wh
        return self._forecast(start_s)

    def _forecast(self, start_s: int) -> int:
        """The forecast net of the interval; 0 (nothing traded, counted) when the forecaster
        refuses the request (the interval already ended: the node is late)."""
        self._observe_ended()
        try:
            generation, consumption = self.forecaster.predict(start_s, self.clock())
        except ValueError as exc:   # models.errors.ForecastRequestError
            self.counters["forecast_refused"] += 1
            log.warning("no forecast for %s: %s", start_s, exc)
            return 0
        return int(round(generation - consumption))

    def _newest_observed(self) -> int | None:
        """The interval index of the forecaster's newest reading (None: no forecaster, no
        reading, or one that keeps no history)."""
        return getattr(getattr(self.forecaster, "history", None), "newest", None)

    def _possible_generation(self, start_s: int) -> float:
        """The most the house may generate in the interval (Wh; 0: night, no PV), as the
        forecaster sees it now (:meth:`models.forecast.NodeForecaster.clear_sky_generation`);
        a forecaster that cannot tell gives its forecast; 0 when it refuses the interval."""
        possible = getattr(self.forecaster, "clear_sky_generation", None)
        try:
            if possible is None:
                return self.forecaster.predict(start_s, self.clock())[0]
            return possible(start_s, self.clock())
        except ValueError:   # models.errors.ForecastRequestError: counted by _forecast
            return 0.0

    def _observe_ended(self) -> None:
        """Read the meter of the interval that ended last, so that the forecast made now uses
        it.  The settle and close steps read an interval only after it ended (a buyer at its
        close, ``window_s`` later), and in real time the next interval but one opens the moment
        an interval ends: without this a forecast for ``t`` issued at the end of ``t - 2`` knew
        only ``t - 3`` (three intervals ahead instead of two).  A meter that has no reading
        for it yet (a live meter between samples) is counted as ``reading_not_ready``."""
        interval = self.config.interval_s
        ended = int(self.clock()) // interval * interval - interval
        newest = self._newest_observed()
        if self.forecaster is None or ended <= self._observed_s \
                or (newest is not None and ended // interval <= newest):   # seen (a history)
            return
        try:
            self._reading(ended)
        except NodeError as exc:   # p2pnode.meter_feed.MeterError: no data, stale
            self.counters["reading_not_ready"] += 1
            log.info("no reading of %s yet for the forecast: %s", ended, exc)

    def _seed_error_scales(self) -> None:
        """A forecaster that starts with a history (a meter that kept its readings, a simulated
        warm-up) sizes the hedges from a backtest of its last day, as if this node had been
        trading then: the next-interval errors at the lead the node trades at, and the errors
        of the day-ahead forecasts issued at that day's gate."""
        newest = self._newest_observed()
        if newest is None or not hasattr(self.forecaster, "past_errors"):
            return
        interval = self.config.interval_s
        end = (newest + 1) * interval
        day = end - end % 86400 - 86400
        starts = list(range(max(day, end - 86400), end, interval))
        lead = self.config.market.lead_intervals * interval
        try:
            self.error_scale.seed(self.forecaster.past_errors(
                starts, [s - lead for s in starts]))
            if self.config.market.mode == "day_ahead" and day + 86400 <= end:
                day_starts = list(range(day, day + 86400, interval))
                self.day_ahead_scale.seed(self.forecaster.past_errors(
                    day_starts, day_times(self.config, day)["day_open"]))
        except ValueError as exc:   # history too short for the backtest: start unhedged
            log.info("no forecast backtest: %s", exc)
