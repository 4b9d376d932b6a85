"""The scenario-to-node mapping, in one place: what a scenario's house runs as a node.

Used by the in-process swarm (:mod:`simulator.swarm`) and the one-meter daemon
(``p2pnode meternode``, :mod:`simulator.cli.meternode`): a house's key, issuer, location on a
synthetic street grid, and its :class:`~p2pnode.config.NodeConfig` (the scenario's tariffs in the
node's integer µ/kWh, its weights and strategy, the swarm's timing), and the scenario's network
faults as a DHT :class:`~p2pnode.dht.faults.FaultPlan`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from ledger import SigningKey
from optimizer.selection import SelectionConfig
from p2pnode.balance import DetectionConfig
from p2pnode.config import CreditConfig, MarketConfig, NetworkConfig, NodeConfig, Timing
from p2pnode.dht.faults import FaultPlan
from p2pnode.pricing import Frame, Tariffs as NodeTariffs
from p2pnode.ranking import Location
from simulator.scenario import Scenario

__all__ = ["DETECTION", "STREET_SPACING_M", "SWARM_TIMING", "fault_plan", "house_key",
           "house_location", "issuer_key", "node_config", "node_tariffs"]

SWARM_TIMING = Timing(buy_delay_s=5.0, window_s=300.0, request_timeout_s=0.5, attempts=4,
                      max_rounds=6)
DETECTION = DetectionConfig(enter_wh=2, exit_wh=1)
STREET_SPACING_M = 15.0               # house positions on a synthetic street grid


def node_tariffs(scenario: Scenario) -> NodeTariffs:
    """The scenario's tariffs in the node's integer µ/kWh."""
    tariffs = scenario.tariffs
    frames = tuple(Frame(f.name, f.start_hour, f.end_hour % 24,
                         int(round(tariffs.retail_per_kwh * f.multiplier * 1e6)))
                   for f in tariffs.frames)
    return NodeTariffs(int(round(tariffs.feed_in_per_kwh * 1e6)), frames)


def house_key(seed: int, house: int) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(f"p2p-energy/sim/{seed}/house/{house}".encode()).digest())


def issuer_key(seed: int) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(f"p2p-energy/sim/{seed}/issuer".encode()).digest())


def house_location(house: int) -> Location:
    row, column = divmod(house, 10)
    return Location(zone=(house // 10) % 16, x_m=column * STREET_SPACING_M,
                    y_m=row * 2 * STREET_SPACING_M)


def node_config(scenario: Scenario, house: int, run_dir: Path) -> NodeConfig:
    """House ``house``'s node: its ledger under ``run_dir``, location, tariffs, weights, timing,
    market mode, and the run's voucher issuer as the one it trusts."""
    return NodeConfig(
        ledger=run_dir / "ledgers" / f"house-{house:04d}.db", feeder=scenario.feeder,
        location=str(house_location(house)), interval_s=scenario.interval_s,
        network=NetworkConfig(transport=scenario.transport),
        detection=DETECTION, tariffs=node_tariffs(scenario),
        selection=SelectionConfig(weights=scenario.weights, strategy=scenario.selection.strategy),
        timing=dataclasses.replace(SWARM_TIMING, window_s=min(SWARM_TIMING.window_s,
                                                              scenario.interval_s / 3),
                                   buy_delay_s=min(SWARM_TIMING.buy_delay_s,
                                                   scenario.interval_s / 30)),
        market=MarketConfig(mode=scenario.market.mode, balancing=scenario.market.balancing),
        credit=CreditConfig(trusted_issuers=(issuer_key(scenario.seed).public.hex(),)))


def fault_plan(scenario: Scenario) -> FaultPlan | None:
    faults = scenario.faults
    if not (faults.loss or faults.duplication or faults.delay_ms):
        return None
    delay = faults.delay_ms / 1000
    return FaultPlan(loss=faults.loss, duplicate=faults.duplication, delay_min_s=delay,
                     delay_max_s=delay, seed=scenario.seed)
