"""Transformer loading, voltages and technical losses of one metered interval (load flow).

Feeder accounting reports transformer loading and bus voltages next to G, C, T and the loss.
Each node's net consumption over the interval becomes average power at its bus (unity power
factor); the backward-forward sweep then gives the voltages, the transformer loading and the
technical losses (lines and transformer, iron losses included). The part of the unaccounted
energy the network cannot explain, ``loss_kwh - technical_loss_kwh``, estimates what the meters
missed (theft, faulty or tampered meters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from optimizer.markets.errors import OrderError
from optimizer.markets.pooling import NodeReading
from optimizer.powerflow import Feeder, VoltageLimits, solve


@dataclass(frozen=True)
class FeederState:
    """Load flow of one interval. ``expected_transformer_kwh`` is what the transformer should
    have delivered for these readings (same sign convention as ``transformer_kwh``).

    The one feeder state: the market CLI reports it, the node's feeder role books it
    (:class:`p2pnode.feeder.FeederInterval`) and its API shows it in Wh."""

    converged: bool
    vm_min_pu: float
    vm_min_bus: int
    vm_max_pu: float
    vm_max_bus: int
    buses_outside_limits: tuple[int, ...]
    trafo_loading_percent: tuple[float, ...]
    technical_loss_kwh: float
    expected_transformer_kwh: float

    @property
    def max_trafo_loading_percent(self) -> float:
        """The loading of the most loaded transformer (0 without one)."""
        return max(self.trafo_loading_percent, default=0.0)


def place_on_houses(ids: Sequence[str], buses: Mapping[str, int], feeder: Feeder) -> dict[str, int]:
    """``buses`` completed: ids without a bus go to the feeder's load buses (its houses) in
    turn, in the order given. Every bus must exist on the feeder."""
    houses = [int(feeder.bus_index[p]) for p in feeder.load_buses] or [int(feeder.bus_index[0])]
    placed, turn = dict(buses), 0
    for node in ids:
        if node not in placed:
            placed[node], turn = houses[turn % len(houses)], turn + 1
        feeder.position(placed[node])
    return placed


def feeder_state(readings: Iterable[NodeReading], buses: Mapping[str, int], feeder: Feeder,
                 hours: float, limits: VoltageLimits = VoltageLimits()) -> FeederState:
    """Solve the interval's net loads on ``feeder``; ``buses`` maps every node to a bus."""
    if not hours > 0:
        raise OrderError(f"hours: must be > 0, got {hours}")
    load_mw = np.zeros(feeder.n_bus)
    for reading in readings:
        if reading.node not in buses:
            raise OrderError(f"node {reading.node}: no bus given")
        net_kwh = reading.consumption_kwh - reading.generation_kwh
        load_mw[feeder.position(buses[reading.node])] += net_kwh / hours / 1000.0
    flow = solve(feeder, load_mw)
    vm = flow.vm_pu[0]
    return FeederState(
        converged=bool(flow.converged[0]),
        vm_min_pu=float(vm.min()), vm_min_bus=int(feeder.bus_index[vm.argmin()]),
        vm_max_pu=float(vm.max()), vm_max_bus=int(feeder.bus_index[vm.argmax()]),
        buses_outside_limits=tuple(int(b) for b in feeder.bus_index[flow.outside_limits(limits)[0]]),
        trafo_loading_percent=tuple(float(x) for x in flow.trafo_loading_percent[0]),
        technical_loss_kwh=float(flow.loss_mw[0]) * hours * 1000.0,
        expected_transformer_kwh=float(flow.p_slack_mw[0]) * hours * 1000.0,
    )
