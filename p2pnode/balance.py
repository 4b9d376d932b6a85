"""Surplus/deficit detection with thresholds and hysteresis (FR-01), pure.

A node is in one of three states.  It enters SURPLUS when the interval's net energy
(generation - consumption - battery reserve) reaches ``enter_wh`` and leaves it only when the net
drops below ``exit_wh`` (``exit_wh < enter_wh``), so a net hovering around one threshold does not
flap between publishing and withdrawing offers.  DEFICIT mirrors it for negative net.
"""

from __future__ import annotations

import dataclasses
import enum

from p2pnode.errors import ConfigError

__all__ = ["Balance", "DetectionConfig", "next_balance"]


class Balance(enum.Enum):
    BALANCED = "balanced"
    SURPLUS = "surplus"
    DEFICIT = "deficit"


@dataclasses.dataclass(frozen=True)
class DetectionConfig:
    enter_wh: int = 50  # net energy that starts a surplus (or, negated, a deficit)
    exit_wh: int = 20  # net energy below which a surplus (deficit) ends

    def __post_init__(self):
        if self.enter_wh <= 0:
            raise ConfigError(f"detection.enter_wh = {self.enter_wh}: must be positive")
        if not 0 <= self.exit_wh < self.enter_wh:
            raise ConfigError(f"detection.exit_wh = {self.exit_wh}: must be >= 0 and below "
                              f"enter_wh ({self.enter_wh})")


def next_balance(previous: Balance, net_wh: int, config: DetectionConfig) -> Balance:
    """The state after an interval whose net energy is ``net_wh``."""
    if net_wh >= config.enter_wh:
        return Balance.SURPLUS
    if net_wh <= -config.enter_wh:
        return Balance.DEFICIT
    if previous is Balance.SURPLUS and net_wh >= config.exit_wh:
        return Balance.SURPLUS
    if previous is Balance.DEFICIT and net_wh <= -config.exit_wh:
        return Balance.DEFICIT
    return Balance.BALANCED
