"""When each step of an interval happens, per market mode (pure).

Node time of the steps of the interval ``[start, end)``:

============  ==========================  ===========================================
step          ``ex_post``                 ``real_time`` (lead ``L`` = lead_intervals)
============  ==========================  ===========================================
open          ``end``: metered reading     ``start - L``: forecast, publish offers and bids
price         --                           open + ``buy_delay_s / 2``: sellers price from the
                                           feeder's supply/demand ratio (SDR pool price)
buy           open + ``buy_delay_s``       open + ``buy_delay_s``
gate          ``end + window_s``           ``start``: no REQUEST accepted after it
settle        ``end + window_s``           ``end + buy_delay_s``: delivery measured, pushed;
                                           the measured surplus left unsold is offered
rebuy         --                           settle + ``min(CLOCK_SKEW_S + buy_delay_s,
                                           (close - settle) / 3)``: the balancing round
close         ``end + (window_s+I)/2``     ``end + window_s``: balancing trades delivered,
                                           the grid takes the rest
============  ==========================  ===========================================

In real time the intervals overlap: interval ``t + 1`` opens while ``t`` is being delivered.

The balancing round (``[market] balancing``, ahead of delivery only) trades what the forward
market left over once the interval is metered: at ``settle`` a seller offers the surplus it
measured and did not sell (its unsold tokens), at ``rebuy`` a buyer buys what its metered
deficit lacks after its trades' deliveries, until the round's gate
(:func:`balancing_gate_s`, half-way from ``rebuy`` to ``close``); these trades are of energy
already metered, so each is delivered in full at ``close``.  The round starts
:data:`CLOCK_SKEW_S` after the sellers offer, so a buyer whose clock is ahead still finds them.

``day_ahead`` adds a daily market before the real-time one: at ``gate_hour`` of day ``D - 1``
minus :data:`DAY_AHEAD_LEAD_S` every node publishes offers for the surplus it forecasts for each
interval of day ``D`` (``day_open``) and, ``buy_delay_s`` later, buys what it forecasts to lack
(``day_buy``); no day-ahead REQUEST is accepted after the gate.  On day ``D`` each interval is
traded in real time as above, for the difference between the updated forecast and the day-ahead
position.  Node time is local time of day (as the tariff frames read it).

Clock skew: a buyer whose clock runs ahead of a seller's looks for offers before the seller
published them.  A node that keeps its own schedule (:meth:`p2pnode.node.Node.run`) therefore
looks again while its need is not covered, :data:`REDISCOVERY_DELAYS_S` after the previous
discovery, at most :data:`MAX_DISCOVERIES` times per interval and never later than
:data:`GATE_MARGIN_S` before the gate (:func:`rediscover_at`): a buyer up to 30 s ahead (or
behind: it then finds the offers at its first look) still trades.  A buyer whose looks found no
offer at all looks only once more, :data:`EMPTY_LOOK_DELAY_S` after the first (at night there
is nothing to wait for).  Once its looks span the skew (:data:`SKEW_LOOKS`: the look
``CLOCK_SKEW_S`` after the first), a buyer looks again only if its last look found energy no
earlier one offered (:meth:`~p2pnode.trading.buyer.Buying.found`): otherwise every seller is
as it was, and the next look would find the same.
"""

from __future__ import annotations

__all__ = ["DAY_AHEAD_LEAD_S", "STEPS", "event_order", "events", "first_interval", "settles_by",
           "step_times", "gate_s", "balancing_gate_s", "day_gate_s", "day_times", "rediscover_at",
           "MAX_DISCOVERIES", "REDISCOVERY_DELAYS_S", "GATE_MARGIN_S", "CLOCK_SKEW_S",
           "EMPTY_LOOK_DELAY_S", "SKEW_LOOKS"]

STEPS = ("day_open", "day_buy", "open", "price", "buy", "settle", "rebuy", "close")
DAY_S = 86400
DAY_AHEAD_LEAD_S = 1800   # the day-ahead market opens this long before its gate
CLOCK_SKEW_S = 30                       # the skew between nodes' clocks the steps tolerate
MAX_DISCOVERIES = 5                     # discoveries of one interval's offers by one buyer
REDISCOVERY_DELAYS_S = (10, 20, 40, 80)   # node time from one discovery to the next
GATE_MARGIN_S = 5.0                     # no discovery this close to the gate: no time to trade
EMPTY_LOOK_DELAY_S = CLOCK_SKEW_S + 5   # a buyer that found no offer at all looks once more then
# the look made CLOCK_SKEW_S or more after the first (1-based): after it, look only for news
SKEW_LOOKS = next(k + 2 for k in range(len(REDISCOVERY_DELAYS_S))
                  if sum(REDISCOVERY_DELAYS_S[:k + 1]) >= CLOCK_SKEW_S)


def step_times(config, start_s: int) -> dict[str, float]:
    """Node time of each step of the interval starting at ``start_s`` (see the module doc)."""
    interval, timing = config.interval_s, config.timing
    end = start_s + interval
    if config.market.mode == "ex_post":
        return {"open": end, "buy": end + timing.buy_delay_s, "settle": end + timing.window_s,
                "close": end + (timing.window_s + interval) / 2}
    opens = start_s - config.market.lead_intervals * interval
    settle, close = end + timing.buy_delay_s, end + timing.window_s
    times = {"open": opens, "price": opens + timing.buy_delay_s / 2,
             "buy": opens + timing.buy_delay_s, "settle": settle, "close": close}
    if config.market.balancing:
        times["rebuy"] = settle + min(CLOCK_SKEW_S + timing.buy_delay_s, (close - settle) / 3)
    return times


def settles_by(config, step: str, start_s: int, until_s: float) -> bool:
    """Whether the interval of ``step`` (every interval of the day, for a day-ahead step)
    closes by ``until_s``: a run that ends then trades nothing it could not deliver."""
    last = start_s + 86400 - config.interval_s if step.startswith("day_") else start_s
    return step_times(config, last)["close"] <= until_s


def first_interval(config, now_s: float) -> int:
    """The first interval a node starting at ``now_s`` can still trade: the one that ends at
    the next boundary (ex post: it is metered then) or, ahead of delivery, the one that starts
    there (its gate has not passed)."""
    boundary = (int(now_s) // config.interval_s + 1) * config.interval_s
    return boundary - config.interval_s if config.market.mode == "ex_post" else boundary


def gate_s(config, start_s: int) -> float:
    """The last node time at which a seller accepts a REQUEST for the interval."""
    if config.market.mode == "ex_post":
        return start_s + config.interval_s + config.timing.window_s
    return float(start_s)


def balancing_gate_s(config, start_s: int) -> float:
    """The last node time at which a seller accepts a REQUEST of the interval's balancing round:
    half-way from ``rebuy`` to ``close`` (its trades are delivered at ``close``)."""
    times = step_times(config, start_s)
    return (times["rebuy"] + times["close"]) / 2


def rediscover_at(config, start_s: int, discoveries: int, now_s: float, *,
                  found_offers: bool = True, found_new: bool = True) -> float | None:
    """Node time of the next discovery of the interval's offers by a buyer whose need is not
    covered after ``discoveries`` of them, or None (the count is spent, or the gate is near).

    ``found_offers``: whether any of them found an offer for the interval.  A buyer that found
    none looks once more, when a seller up to :data:`CLOCK_SKEW_S` behind has published
    (:data:`EMPTY_LOOK_DELAY_S` later), and then gives up: at night, or on a feeder with no
    surplus, there is nothing to wait for, and every look costs a DHT lookup.  ``found_new``:
    whether the last look found energy no earlier one offered; from the :data:`SKEW_LOOKS`-th
    look on, a look that found none is the last."""
    if discoveries < 1 or discoveries >= MAX_DISCOVERIES:
        return None
    if not found_offers and discoveries > 1:
        return None
    if discoveries >= SKEW_LOOKS and not found_new:
        return None
    last = gate_s(config, start_s) - GATE_MARGIN_S
    if now_s >= last:
        return None
    delay = REDISCOVERY_DELAYS_S[discoveries - 1] if found_offers else EMPTY_LOOK_DELAY_S
    return min(now_s + delay, last)


def day_gate_s(config, day_start_s: int) -> float:
    """The day-ahead gate for the day starting at ``day_start_s``: ``gate_hour`` the day before."""
    return day_start_s - DAY_S + config.market.gate_hour * 3600


def day_times(config, day_start_s: int) -> dict[str, float]:
    """Node time of the day-ahead steps for the day starting at ``day_start_s``."""
    opens = day_gate_s(config, day_start_s) - DAY_AHEAD_LEAD_S
    return {"day_open": opens, "day_buy": opens + config.timing.buy_delay_s}


def events(config, starts) -> list[tuple[float, str, int]]:
    """Every step of the intervals starting at ``starts`` as (node time, step, start), in the
    order they happen (ties in step order); in ``day_ahead`` the day-ahead steps of their days
    too, with the day's start as ``start``."""
    out = [(t, name, int(start)) for start in starts
           for name, t in step_times(config, int(start)).items()]
    if config.market.mode == "day_ahead":
        for day in sorted({int(start) - int(start) % DAY_S for start in starts}):
            out += [(t, name, day) for name, t in day_times(config, day).items()]
    return sorted(out, key=event_order)


def event_order(event: tuple[float, str, int]) -> tuple[float, int, int]:
    """Sort key of (node time, step, start): by time, ties in step order."""
    return event[0], STEPS.index(event[1]), event[2]
