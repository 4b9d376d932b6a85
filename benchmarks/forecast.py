"""Forecast benchmark: skill of the node's forecaster on held-out days of the shipped data.

    python benchmarks/forecast.py [--quick] [--json PATH]

Data: :func:`simulator.build_profiles` for ``HOUSES`` houses, every one with PV (``pv_share=1``),
over ``WARMUP_DAYS + EVAL_DAYS`` consecutive days starting on each day of ``STARTS`` (four
seasons): BDEW household load with per-house variety, PVWatts on pvlib's Greensboro TMY3 weather.
Readings are whole Wh (floored, as :class:`p2pnode.meter.ProfileMeter` gives them) of generation
and consumption.  Each house gets a fresh :class:`models.forecast.NodeForecaster` (Greensboro's
latitude/longitude; the clock is local standard time as in the simulator) that observes every
interval in order.  Forecasts for the evaluation days are issued before their readings exist:

* **next interval** (horizon 1): at the start of every interval, for that interval (the newest
  reading is the one that just ended);
* **real time** (horizon 2, the real-time market's lead time of one interval): at the start of
  every interval, for the one after;
* **day ahead**: at 12:00 local of day D, for every interval of day D+1 (horizons 49..144).

Per horizon the three methods (``learned``, ``persistence``, ``yesterday``) are scored by the
mean absolute error over every (house, interval) of the evaluation days, nights included.
Skill = 1 - MAE_learned / MAE_persistence: ``pv_next_interval_skill``, ``pv_day_ahead_skill``,
``load_next_interval_skill``, ``load_day_ahead_skill`` (the issue's keys), ``*_real_time_skill``;
the same against same-time-yesterday, the harder baseline: ``*_skill_vs_yesterday``; the MAEs
themselves (``*_mae_wh_<method>``).  ``net_*``: the same for the net position (generation minus
consumption) netted from the two forecasts of each method (there are no batteries in this data,
so that is exactly what the house exports or imports).  ``forecast_ms``: median wall time of one learned
``predict`` (generation and consumption of one interval on one node); ``forecast_day_ms``: of
one learned ``predict_many`` for the next day's intervals (the day-ahead schedule at the gate);
``observe_ms``: of one ``observe``, ``observe_ms_mean``: its mean, which is what a day of
readings costs (the first reading of a day learns from the previous day's readings in one batch
and refits, the others only store); ``forecaster_kb``: arrays held by one forecaster.
``substeps_ms``: one call of :func:`simulator.substeps.substep_readings` with the cloud model on
1000 houses x 96 intervals x 15 one-minute sub-steps (the benchmark's houses repeated to 1000
rows), median of ``SUBSTEP_REPEATS``; ``substeps_cpu_ms``: the process CPU time of the same calls,
which load from other jobs on the machine disturbs less.

``--net``: the same on the net surplus and deficit after self-consumption and batteries (one
house in ten has one), the quantities :class:`p2pnode.meter.ProfileMeter` hands the swarm's nodes
today as "generation" and "consumption"; the ``pv_*`` keys are then the surplus, ``load_*`` the
deficit, and ``net_*`` the net position forecast directly, to compare with the netted forecasts
of the default run.

Targets (issue 12): ``pv_day_ahead_skill >= 0.2``, ``pv_next_interval_skill >= 0.1``.
``--quick`` (under a minute): one season, four houses, 10 + 3 days.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from models.forecast import (  # noqa: E402
    DEFAULT_LATITUDE, DEFAULT_LONGITUDE, DEFAULT_UTC_OFFSET_S, METHODS, NodeForecaster,
)
from report import emit  # noqa: E402

STARTS = (date(2023, 3, 1), date(2023, 6, 1), date(2023, 9, 1), date(2023, 11, 20))
HOUSES = 8
WARMUP_DAYS = 14
EVAL_DAYS = 14
GATE_HOUR = 12
SEED = 2024
HORIZONS = ("next_interval", "real_time", "day_ahead")
QUANTITIES = ("pv", "load", "net")
SUBSTEP_HOUSES = 1000
NET_BATTERY_SHARE = 0.1
SUBSTEP_REPEATS = 5


def house_series(start: date, houses: int, days: int, net: bool = False):
    """Interval starts (unix s on the local-standard-time clock), generation and consumption
    (``net``: the surplus and deficit after self-consumption and batteries instead)."""
    from simulator import ProfileSpec, build_profiles
    from simulator.swarm import unix_seconds

    spec = ProfileSpec(houses=houses, day=start, days=days, pv_share=1.0,
                       battery_share=NET_BATTERY_SHARE if net else 0.0, seed=SEED)
    profiles = build_profiles(spec)
    first, second = ((profiles.surplus_wh, profiles.deficit_wh) if net
                     else (profiles.generation_wh, profiles.consumption_wh))
    return unix_seconds(profiles.interval_start), np.floor(first), np.floor(second)


class Errors:
    """Absolute errors per (quantity, horizon, method), and the time of learned forecasts."""

    def __init__(self):
        self.abs = {(q, h, m): [] for q in QUANTITIES for h in HORIZONS for m in METHODS}
        self.predict_ms: list[float] = []
        self.observe_ms: list[float] = []
        self.day_ms: list[float] = []

    def add(self, forecaster, horizon, target_s, issued_s, actual_pv, actual_load):
        for method in METHODS:
            started = time.perf_counter()
            forecast = forecaster.predict(int(target_s), int(issued_s), method)
            if method == "learned":
                self.predict_ms.append((time.perf_counter() - started) * 1000)
            self.abs["pv", horizon, method].append(abs(forecast.generation_wh - actual_pv))
            self.abs["load", horizon, method].append(abs(forecast.consumption_wh - actual_load))
            self.abs["net", horizon, method].append(abs(
                forecast.generation_wh - forecast.consumption_wh - (actual_pv - actual_load)))

    def add_day(self, forecaster, targets_s, issued_s, actual_pv, actual_load):
        """A day-ahead schedule: every target in one :meth:`NodeForecaster.predict_many`."""
        for method in METHODS:
            started = time.perf_counter()
            generation, consumption = forecaster.predict_many(targets_s, int(issued_s), method)
            if method == "learned":
                self.day_ms.append((time.perf_counter() - started) * 1000)
            self.abs["pv", "day_ahead", method].extend(np.abs(generation - actual_pv))
            self.abs["load", "day_ahead", method].extend(np.abs(consumption - actual_load))
            self.abs["net", "day_ahead", method].extend(
                np.abs(generation - consumption - (actual_pv - actual_load)))

    def mae(self, quantity, horizon, method) -> float:
        return float(np.mean(self.abs[quantity, horizon, method]))


def run_house(errors: Errors, starts, generation, consumption, warmup_days: int) -> int:
    """Feed one house's readings in order, issuing forecasts on the evaluation days."""
    interval_s = int(starts[1] - starts[0])
    per_day = 86_400 // interval_s
    gate_slot = GATE_HOUR * 3600 // interval_s
    forecaster = NodeForecaster(DEFAULT_LATITUDE, DEFAULT_LONGITUDE, interval_s,
                                utc_offset_s=DEFAULT_UTC_OFFSET_S)
    first_eval = warmup_days * per_day
    for i, start in enumerate(starts):
        if i >= first_eval:
            errors.add(forecaster, "next_interval", start, start, generation[i], consumption[i])
            if i + 1 < len(starts):
                errors.add(forecaster, "real_time", starts[i + 1], start, generation[i + 1],
                           consumption[i + 1])
        next_day = i - i % per_day + per_day
        if i % per_day == gate_slot and first_eval <= next_day < len(starts):
            day = slice(next_day, next_day + per_day)
            errors.add_day(forecaster, starts[day], start, generation[day], consumption[day])
        began = time.perf_counter()
        forecaster.observe(int(start), float(generation[i]), float(consumption[i]))
        errors.observe_ms.append((time.perf_counter() - began) * 1000)
    return forecaster.nbytes()


def results(errors: Errors, nbytes: int, houses: int, seasons: int, eval_days: int) -> dict:
    out: dict[str, float] = {"houses": houses, "seasons": seasons, "eval_days": eval_days}
    for quantity in QUANTITIES:
        for horizon in HORIZONS:
            mae = {m: errors.mae(quantity, horizon, m) for m in METHODS}
            out[f"{quantity}_{horizon}_skill"] = 1 - mae["learned"] / mae["persistence"]
            out[f"{quantity}_{horizon}_skill_vs_yesterday"] = 1 - mae["learned"] / mae["yesterday"]
            for method, value in mae.items():
                out[f"{quantity}_{horizon}_mae_wh_{method}"] = value
    out["forecast_ms"] = statistics.median(errors.predict_ms)
    out["forecast_day_ms"] = statistics.median(errors.day_ms)
    out["observe_ms"] = statistics.median(errors.observe_ms)
    out["observe_ms_mean"] = statistics.fmean(errors.observe_ms)
    out["forecaster_kb"] = nbytes / 1024
    return out


def substeps_ms(times, generation, consumption) -> dict[str, float]:
    """Median wall and CPU time of one sub-step derivation, 1000 houses x a day x 15 steps."""
    from simulator.substeps import clear_sky_substeps, substep_readings

    day = slice(0, 86_400 // int(times[1] - times[0]))
    rows = np.arange(SUBSTEP_HOUSES) % generation.shape[0]
    gen, con = generation[rows, day], consumption[rows, day]
    clear = clear_sky_substeps(times[day] - DEFAULT_UTC_OFFSET_S, int(times[1] - times[0]), 15,
                               DEFAULT_LATITUDE, DEFAULT_LONGITUDE)
    elapsed, cpu = [], []
    for seed in range(SUBSTEP_REPEATS):
        started, started_cpu = time.perf_counter(), time.process_time()
        substep_readings(gen, con, np.random.default_rng(seed), 15, clear_sky_wh_m2=clear)
        elapsed.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return {"substeps_ms": statistics.median(elapsed), "substeps_cpu_ms": statistics.median(cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one season, 4 houses, 10+3 days")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--net", action="store_true",
                        help="forecast the net surplus and deficit (what the swarm's meters "
                             "report today) instead of generation and consumption")
    args = parser.parse_args()
    starts, houses, warmup, eval_days = STARTS, HOUSES, WARMUP_DAYS, EVAL_DAYS
    if args.quick:
        starts, houses, warmup, eval_days = STARTS[1:2], 4, 10, 3
    errors, nbytes = Errors(), 0
    for start in starts:
        times, generation, consumption = house_series(start, houses, warmup + eval_days,
                                                      args.net)
        for house in range(houses):
            nbytes = run_house(errors, times, generation[house], consumption[house], warmup)
    out = results(errors, nbytes, houses, len(starts), eval_days)
    if not args.net:
        out.update(substeps_ms(times, generation, consumption))
    emit(out, args.json)


if __name__ == "__main__":
    main()
