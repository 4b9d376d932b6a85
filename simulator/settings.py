"""The sections of a scenario other than tariffs and weights: households, selection, faults.

``[weights]`` is :class:`optimizer.selection.Weights`, the one definition of the six weights.

Each is a frozen dataclass that validates itself when built and reports every bad field with the
TOML table it belongs to, e.g. ``[faults] loss = 1.5: must be between 0 and 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Faults", "Households", "STRATEGIES", "Selection", "Weights"]

from optimizer.selection import Weights
from simulator.checks import Checker
from simulator.load import LOAD_PROFILES
from simulator.pv import WEATHER_SITES

STRATEGIES = ("ga", "exact", "greedy")
MALICIOUS_KINDS = ("forge", "flood")      # the default kinds
ATTACK_KINDS = ("forge", "flood", "storage_fill", "ground_ids",   # every kind an attacker runs
                "no_credit")
MAX_DELAY_MS = 60_000
MAX_CLOCK_SKEW_S = 300.0   # beyond a few minutes a clock is broken, not skewed (nodes tolerate 30 s)


@dataclass(frozen=True)
class Households:
    """``[households]``: shares of all meters with PV and with a battery, and the data used.

    Strategic and unreliable sellers (:mod:`simulator.strategic`), as shares of the houses that
    have a surplus in the run: ``overselling_share`` of them offer ``overselling_factor`` times
    their forecast surplus; ``unreliable_share`` deliver only ``unreliable_delivery`` of the
    surplus their meter measures (poor equipment).
    """

    pv_share: float = 0.5
    battery_share: float = 0.1
    load_profile: str = "h0_dyn"
    weather: str = "greensboro"
    overselling_share: float = 0.0
    overselling_factor: float = 2.0
    unreliable_share: float = 0.0
    unreliable_delivery: float = 0.5

    def __post_init__(self):
        check = Checker("households")
        pv_ok = check.share("pv_share", self.pv_share)
        if check.share("battery_share", self.battery_share) and pv_ok \
                and self.battery_share > self.pv_share:
            check.fail("battery_share", self.battery_share,
                       f"must not exceed pv_share ({self.pv_share}): a battery charges only "
                       "from its own house's PV")
        check.choice("load_profile", self.load_profile, LOAD_PROFILES)
        check.choice("weather", self.weather, WEATHER_SITES)
        over_ok = check.share("overselling_share", self.overselling_share)
        check.number("overselling_factor", self.overselling_factor, 1, 100)
        if check.share("unreliable_share", self.unreliable_share) and over_ok \
                and self.overselling_share + self.unreliable_share > 1:
            check.fail("unreliable_share", self.unreliable_share,
                       f"overselling_share + unreliable_share must not exceed 1 (a seller is "
                       f"one or the other)")
        check.share("unreliable_delivery", self.unreliable_delivery)
        check.done()


@dataclass(frozen=True)
class Selection:
    """``[selection]``: how a buyer picks offers: GA, exact solver, or greedy."""

    strategy: str = "ga"

    def __post_init__(self):
        check = Checker("selection")
        check.choice("strategy", self.strategy, STRATEGIES)
        check.done()


@dataclass(frozen=True)
class Market:
    """``[market]``: when intervals are traded: ``real_time`` (ahead of delivery, on the nodes'
    forecasts, delivery measured in one-minute sub-steps), ``day_ahead`` (also a day-ahead
    market before the real-time one) or ``ex_post`` (after the interval, on metered energy: the
    comparison baseline); ``balancing``: ahead of delivery, a balancing round after each
    interval sells what sellers measured and did not sell to the neighbours still short
    (:mod:`p2pnode.trading.schedule`)."""

    mode: str = "real_time"
    balancing: bool = True

    def __post_init__(self):
        from p2pnode.config import MARKET_MODES
        check = Checker("market")
        check.choice("mode", self.mode, MARKET_MODES)
        if not isinstance(self.balancing, bool):
            check.fail("balancing", self.balancing, "must be true or false")
        check.done()


@dataclass(frozen=True)
class Faults:
    """``[faults]``: what the simulated network and population do wrong.

    ``loss``, ``duplication``: probability that a datagram is dropped / delivered twice;
    ``delay_ms``: extra one-way delay of every datagram; ``churn_share``: share of nodes that go
    offline and come back during the run; ``malicious_share``: share of nodes that misbehave in
    the ways listed in ``malicious_kinds`` (``forge``: forged or tampered records and messages,
    ``flood``: request and record flooding, ``storage_fill``: offers signed by fresh keys for
    the next interval's keys and many others, ``ground_ids``: DHT nodes at ids ground next to
    the next interval's offer keys that swallow what is stored on them, ``no_credit``: a key
    without credit asking every seller for 1,000,000 Wh; see
    :mod:`simulator.attack`); ``lying_share``: share of houses whose node lies about its meter
    (reports and mints more generation than was measured, see :mod:`simulator.mint_audit`);
    ``meter_keys``: every meter signs its readings with its own key and every node mints only
    from its meter's signed readings (``[meter] trusted_keys``); ``clock_skew_share``: share of
    the honest houses that do not churn whose node clock is off, each by a seeded offset within
    ``±clock_skew_s`` seconds (cheap meters' clocks; nodes tolerate 30 s, see
    :mod:`p2pnode.trading.schedule`).
    """

    loss: float = 0.0
    delay_ms: float = 0.0
    duplication: float = 0.0
    churn_share: float = 0.0
    malicious_share: float = 0.0
    malicious_kinds: tuple[str, ...] = MALICIOUS_KINDS
    lying_share: float = 0.0
    meter_keys: bool = False
    clock_skew_share: float = 0.0
    clock_skew_s: float = 0.0

    def __post_init__(self):
        check = Checker("faults")
        check.share("loss", self.loss)
        check.number("delay_ms", self.delay_ms, 0, MAX_DELAY_MS)
        check.share("duplication", self.duplication)
        check.share("churn_share", self.churn_share)
        check.share("malicious_share", self.malicious_share)
        check.share("lying_share", self.lying_share)
        if not isinstance(self.meter_keys, bool):
            check.fail("meter_keys", self.meter_keys, "must be true or false")
        self._check_kinds(check)
        self._check_skew(check)
        check.done()

    def _check_skew(self, check: Checker) -> None:
        share_ok = check.share("clock_skew_share", self.clock_skew_share)
        if check.number("clock_skew_s", self.clock_skew_s, 0, MAX_CLOCK_SKEW_S) and share_ok \
                and self.clock_skew_share > 0 and self.clock_skew_s == 0:
            check.fail("clock_skew_s", self.clock_skew_s,
                       "must be greater than 0 when clock_skew_share > 0 (the largest offset "
                       "of a skewed node's clock, in seconds)")

    def _check_kinds(self, check: Checker) -> None:
        kinds = self.malicious_kinds
        if not isinstance(kinds, tuple) or not all(isinstance(k, str) for k in kinds):
            check.fail("malicious_kinds", kinds, "must be a list of strings")
            return
        unknown = [k for k in kinds if k not in ATTACK_KINDS]
        if unknown:
            check.fail("malicious_kinds", list(kinds),
                       f"unknown kind(s) {unknown}; allowed: {list(ATTACK_KINDS)}")
        elif len(set(kinds)) != len(kinds):
            check.fail("malicious_kinds", list(kinds), "must not repeat a kind")
        elif not kinds and isinstance(self.malicious_share, (int, float)) \
                and self.malicious_share > 0:
            check.fail("malicious_kinds", list(kinds),
                       "must name at least one kind when malicious_share > 0")
