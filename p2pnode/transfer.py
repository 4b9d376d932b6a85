"""Transfer efficiency (X3) from the feeder's topology, where the buyer knows it.

A node whose ``[feeder_role]`` names a load-flow ``network`` and places keys on its buses
(``[feeder_role.buses]``) knows the path between itself and a placed seller: the efficiency of a
trade is then the share of its power that the path's series resistance lets arrive
(:func:`optimizer.powerflow.paths.transfer_efficiency`, at the trade's mean power over the
interval).  For any other seller it answers ``None`` and :mod:`p2pnode.ranking` falls back to
the seller's stated ``efficiency`` or the documented distance estimate.  The feeder is loaded
on first use, in the thread that ranks (the buyer's executor), never at start-up.
"""

from __future__ import annotations

import threading

__all__ = ["FeederPaths"]


class FeederPaths:
    """``paths(seller, energy_wh) -> efficiency or None`` on one feeder network."""

    def __init__(self, network: str, buses: dict[bytes, int], me: bytes, interval_s: int,
                 loader=None):
        self.network, self.buses, self.me, self.interval_s = network, dict(buses), me, interval_s
        self._loader = loader
        self._feeder = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config, me: bytes) -> FeederPaths | None:
        role = config.feeder_role
        buses = {bytes.fromhex(key): int(bus) for key, bus in role.buses}
        if not role.network or me not in buses:
            return None
        return cls(role.network, buses, me, config.interval_s)

    def feeder(self):
        with self._lock:
            if self._feeder is None:
                if self._loader is None:
                    from optimizer.powerflow import load_feeder
                    self._loader = load_feeder
                self._feeder = self._loader(self.network)
            return self._feeder

    def __call__(self, seller: bytes, energy_wh: int) -> float | None:
        bus = self.buses.get(seller)
        if bus is None:
            return None
        from optimizer.powerflow.paths import transfer_efficiency
        power_kw = energy_wh / 1000 / (self.interval_s / 3600)
        return transfer_efficiency(self.feeder(), bus, self.buses[self.me], power_kw)
