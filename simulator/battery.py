"""Home batteries: a pure per-interval step, vectorised over houses.

The policy is plain self-consumption: a battery charges only from its own house's surplus
(generation above consumption) and discharges only into its own house's deficit, limited by its
power rating, its free capacity and its state of charge.  Losses are split evenly between
charging and discharging (``sqrt`` of the round-trip efficiency each way).  Energy that enters
the battery is counted before the charging loss; energy that leaves is counted after the
discharging loss, so for every house and interval::

    generation - consumption = surplus - deficit + charge - discharge
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class BatteryBank:
    """Batteries of all houses as arrays [house]; a house without one has capacity 0."""

    capacity_wh: np.ndarray
    power_w: np.ndarray
    initial_soc_wh: np.ndarray
    round_trip_efficiency: float = 0.9

    @property
    def charge_efficiency(self) -> float:
        return math.sqrt(self.round_trip_efficiency)

    @property
    def discharge_efficiency(self) -> float:
        return math.sqrt(self.round_trip_efficiency)


@dataclass(frozen=True, eq=False)
class BatteryStep:
    """One interval for all houses: energy in (before losses), out (after losses), new state."""

    charge_wh: np.ndarray
    discharge_wh: np.ndarray
    soc_wh: np.ndarray


@dataclass(frozen=True, eq=False)
class NetPositions:
    """What each house has left to trade after self-consumption and its battery ([house, t]).

    ``surplus_wh`` and ``deficit_wh`` are never both positive for the same house and interval.
    ``soc_wh`` has one more column than there are intervals: the state before each interval and
    after the last one.
    """

    surplus_wh: np.ndarray
    deficit_wh: np.ndarray
    charge_wh: np.ndarray
    discharge_wh: np.ndarray
    soc_wh: np.ndarray


def step_batteries(bank: BatteryBank, soc_wh: np.ndarray, net_wh: np.ndarray,
                   interval_s: float) -> BatteryStep:
    """Charge from ``net_wh > 0`` (own surplus), discharge into ``net_wh < 0`` (own deficit)."""
    limit_wh = bank.power_w * (interval_s / 3600.0)
    eta_c, eta_d = bank.charge_efficiency, bank.discharge_efficiency
    room_wh = np.maximum(bank.capacity_wh - soc_wh, 0.0) / eta_c
    charge = np.minimum(np.minimum(np.maximum(net_wh, 0.0), limit_wh), room_wh)
    discharge = np.minimum(np.minimum(np.maximum(-net_wh, 0.0), limit_wh), soc_wh * eta_d)
    new_soc = soc_wh + charge * eta_c - discharge / eta_d
    new_soc = np.clip(new_soc, 0.0, bank.capacity_wh)
    return BatteryStep(charge_wh=charge, discharge_wh=discharge, soc_wh=new_soc)


def apply_batteries(generation_wh: np.ndarray, consumption_wh: np.ndarray, bank: BatteryBank,
                    interval_s: float) -> NetPositions:
    """Run every battery through all intervals and return each house's net position."""
    houses, intervals = generation_wh.shape
    net = generation_wh - consumption_wh
    charge = np.zeros((houses, intervals))
    discharge = np.zeros((houses, intervals))
    soc = np.zeros((houses, intervals + 1))
    soc[:, 0] = np.minimum(bank.initial_soc_wh, bank.capacity_wh)
    for t in range(intervals):
        step = step_batteries(bank, soc[:, t], net[:, t], interval_s)
        charge[:, t], discharge[:, t] = step.charge_wh, step.discharge_wh
        soc[:, t + 1] = step.soc_wh
    after = net - charge + discharge
    return NetPositions(surplus_wh=np.maximum(after, 0.0), deficit_wh=np.maximum(-after, 0.0),
                        charge_wh=charge, discharge_wh=discharge, soc_wh=soc)


def no_batteries(houses: int) -> BatteryBank:
    zeros = np.zeros(houses)
    return BatteryBank(capacity_wh=zeros, power_w=zeros, initial_soc_wh=zeros)
