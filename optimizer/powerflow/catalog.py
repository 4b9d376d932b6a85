"""The named feeders: pandapower networks the load flow, the benchmark and the CLI know by name.

* ``case33bw``: IEEE 33-bus distribution test feeder (Baran & Wu 1989), 12.66 kV, 32 loads,
  3.715 MW; lowest voltage 0.9131 p.u. at bus index 17, losses 202.7 kW.
* ``kerber_dorfnetz``: Kerber "Dorfnetz" low-voltage village feeder, a 400 kVA 10/0.4 kV
  transformer (with iron losses) and 57 houses on 0.4 kV cables.
"""

from __future__ import annotations

from optimizer.powerflow.errors import FeederError
from optimizer.powerflow.feeder import Feeder
from optimizer.powerflow.pandapower_feeder import feeder_from_pandapower

FEEDERS = {
    "case33bw": "IEEE 33-bus feeder (Baran & Wu), 12.66 kV, 32 loads",
    "kerber_dorfnetz": "Kerber village LV feeder, 400 kVA 10/0.4 kV transformer, 57 houses",
}


def pandapower_net(name: str):
    """A fresh pandapower network for feeder ``name`` (imports pandapower)."""
    import pandapower.networks as networks

    if name == "case33bw":
        return networks.case33bw()
    if name == "kerber_dorfnetz":
        return networks.create_kerber_dorfnetz()
    raise FeederError(f"feeder: unknown name {name!r}; known: {', '.join(FEEDERS)}")


def load_feeder(name: str) -> Feeder:
    """The :class:`Feeder` for ``name`` (one of :data:`FEEDERS`)."""
    return feeder_from_pandapower(pandapower_net(name), name)
