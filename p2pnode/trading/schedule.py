"""When each step of an interval happens, per market mode (pure).

Node time of the steps of the interval ``[start, end)``:

============  ==========================  ===========================================
step          ``ex_post``                 ``real_time`` (lead ``L`` = lead_intervals)
============  ==========================  ===========================================
open          ``end``: metered reading     ``start - L``: forecast, publish offers
buy           open + ``buy_delay_s``       open + ``buy_delay_s``
gate          ``end + window_s``           ``start``: no REQUEST accepted after it
settle        ``end + window_s``           ``end + buy_delay_s``: delivery measured, pushed
close         ``end + (window_s+I)/2``     ``end + window_s``: the grid takes the rest
============  ==========================  ===========================================

In real time the intervals overlap: interval ``t + 1`` opens while ``t`` is being delivered.
"""

from __future__ import annotations

__all__ = ["STEPS", "events", "step_times", "gate_s"]

STEPS = ("open", "buy", "settle", "close")


def step_times(config, start_s: int) -> dict[str, float]:
    """Node time of each step of the interval starting at ``start_s`` (see the module doc)."""
    interval, timing = config.interval_s, config.timing
    end = start_s + interval
    if config.market.mode == "ex_post":
        return {"open": end, "buy": end + timing.buy_delay_s, "settle": end + timing.window_s,
                "close": end + (timing.window_s + interval) / 2}
    opens = start_s - config.market.lead_intervals * interval
    return {"open": opens, "buy": opens + timing.buy_delay_s,
            "settle": end + timing.buy_delay_s, "close": end + timing.window_s}


def gate_s(config, start_s: int) -> float:
    """The last node time at which a seller accepts a REQUEST for the interval."""
    if config.market.mode == "ex_post":
        return start_s + config.interval_s + config.timing.window_s
    return float(start_s)


def events(config, starts) -> list[tuple[float, str, int]]:
    """Every step of the intervals starting at ``starts`` as (node time, step, start), in the
    order they happen (ties in step order)."""
    out = [(t, name, int(start)) for start in starts
           for name, t in step_times(config, int(start)).items()]
    return sorted(out, key=lambda e: (e[0], STEPS.index(e[1]), e[2]))
