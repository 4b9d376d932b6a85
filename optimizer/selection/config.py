"""Configuration of offer selection: the weights vector C and the solver settings.

Frozen dataclasses, validated when built; the error names the bad field.  The node loads them
once (file, then ``P2P_*`` environment) and passes them down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from optimizer.selection.errors import SelectionConfigError

STRATEGIES = ("ga", "exact", "greedy", "brute")


@dataclass(frozen=True)
class Weights:
    """The weights C1..C6 of f(X) = C1·X1 · (C2·X2 + C3·X3 + C4·X4 + C5·X5 + C6·X6).

    ``surplus_availability`` (C1) multiplies a 0/1 hard criterion, so it only scales the score;
    the five soft weights trade the criteria off against each other (each criterion is in 0..1,
    see :mod:`optimizer.selection.criteria`).  Only ratios between soft weights matter.
    """

    surplus_availability: float = 1.0
    trade_surplus: float = 1.0
    transfer_efficiency: float = 1.0
    transaction_duration: float = 1.0
    transaction_quality: float = 1.0
    market_participation: float = 1.0

    def __post_init__(self) -> None:
        problems = weight_problems(self)
        if problems:
            raise SelectionConfigError(
                "; ".join(f"Weights.{key} = {value!r}: {reason}" for key, value, reason in problems),
                problems)

    @staticmethod
    def names() -> tuple[str, ...]:
        """C1..C6 in SRS order (the field names)."""
        return tuple(item.name for item in fields(Weights))

    def as_tuple(self) -> tuple[float, ...]:
        """C1..C6 in SRS order."""
        return tuple(float(getattr(self, name)) for name in self.names())

    def soft(self) -> tuple[float, float, float, float, float]:
        """C2..C6 in criterion order."""
        return (self.trade_surplus, self.transfer_efficiency, self.transaction_duration,
                self.transaction_quality, self.market_participation)


def weight_problems(weights: Weights) -> list[tuple[str, object, str]]:
    """(field, value, reason) for every bad weight: each a finite number >= 0, C1 > 0, and at
    least one of C2..C6 > 0 (else every offer scores zero).  The node config and scenarios
    report these under their own table names."""
    problems = []
    for name in Weights.names():
        value = getattr(weights, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((name, value, "must be a number"))
        elif not math.isfinite(value):
            problems.append((name, value, "must be a finite number"))
        elif name == "surplus_availability" and value <= 0:
            problems.append((name, value, "must be greater than 0"))
        elif value < 0:
            problems.append((name, value, "must be at least 0"))
    if not problems and sum(weights.soft()) <= 0:
        problems.append(("market_participation", weights.market_participation,
                         "at least one of the weights C2..C6 (the soft weights) must be positive"))
    return problems


@dataclass(frozen=True)
class GaSettings:
    """Settings of the memetic GA (see :mod:`optimizer.selection.genetic`)."""

    population: int = 14
    max_generations: int = 40
    patience: int = 6
    crossover_prob: float = 0.9
    mutation_prob: float = 0.4
    tournament: int = 2
    seed_polished: int = 4
    polished: int = 2

    def __post_init__(self) -> None:
        for name, low in (("population", 2), ("max_generations", 0), ("patience", 1),
                          ("tournament", 1), ("seed_polished", 0), ("polished", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SelectionConfigError(f"GaSettings.{name} must be an int >= {low}, got {value!r}")
        for name in ("crossover_prob", "mutation_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise SelectionConfigError(f"GaSettings.{name} must be in [0, 1], got {value!r}")


@dataclass(frozen=True)
class SelectionConfig:
    """Everything that decides how offers are scored and which solver ranks them.

    ``seller_slack``: a plan may use at most (fewest sellers able to cover the deficit) +
    ``seller_slack`` sellers; 0 means "one seller if any covers the deficit, else as few as
    possible" (SRS 3.2.5).  ``duration_ref_s`` and ``participation_ref`` set the normalisation of
    the duration and participation criteria (the value that scores 0.5).
    """

    weights: Weights = field(default_factory=Weights)
    strategy: str = "ga"
    seller_slack: int = 0
    duration_ref_s: float = 120.0
    participation_ref: float = 10.0
    max_fallbacks: int = 8
    exact_time_limit_s: float = 10.0
    ga: GaSettings = field(default_factory=GaSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.weights, Weights):
            raise SelectionConfigError("SelectionConfig.weights must be a Weights")
        if not isinstance(self.ga, GaSettings):
            raise SelectionConfigError("SelectionConfig.ga must be a GaSettings")
        check_strategy(self.strategy)
        for name in ("seller_slack", "max_fallbacks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SelectionConfigError(f"SelectionConfig.{name} must be an int >= 0, got {value!r}")
        for name in ("duration_ref_s", "participation_ref", "exact_time_limit_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise SelectionConfigError(f"SelectionConfig.{name} must be a number > 0, got {value!r}")


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise SelectionConfigError(
            f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    return strategy
