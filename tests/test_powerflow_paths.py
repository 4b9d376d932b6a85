"""Transfer efficiency from the feeder topology, checked against the sweep load flow."""

import numpy as np
import pytest


from optimizer.powerflow import load_feeder, solve
from optimizer.powerflow.paths import path_resistance_pu, transfer_efficiency


@pytest.fixture(scope="module")
def kerber():
    return load_feeder("kerber_dorfnetz")


def trade_loss_share(feeder, seller_bus, buyer_bus, power_kw):
    """The load flow's extra loss when ``seller_bus`` feeds ``power_kw`` to ``buyer_bus``, as
    a share of the power (the idle feeder's losses subtracted)."""
    idle = np.zeros(feeder.n_bus)
    traded = idle.copy()
    traded[feeder.position(seller_bus)] -= power_kw / 1000
    traded[feeder.position(buyer_bus)] += power_kw / 1000
    result = solve(feeder, np.vstack([idle, traded]))
    return float(result.loss_mw[1] - result.loss_mw[0]) / (power_kw / 1000)


def test_path_losses_match_the_load_flow(kerber):
    houses = [int(kerber.bus_index[p]) for p in kerber.load_buses]
    near, far = houses[0], houses[-1]
    neighbour = next(h for h in houses[1:]
                     if path_resistance_pu(kerber, near, h) < path_resistance_pu(kerber, near, far))
    assert path_resistance_pu(kerber, near, near) == 0.0
    assert path_resistance_pu(kerber, near, far) == pytest.approx(
        path_resistance_pu(kerber, far, near))
    for buyer in (neighbour, far):
        for power_kw in (2.0, 8.0):
            estimate = 1.0 - transfer_efficiency(kerber, near, buyer, power_kw)
            measured = trade_loss_share(kerber, near, buyer, power_kw)
            assert measured > 0
            assert estimate == pytest.approx(measured, rel=0.15), (buyer, power_kw)
    # a farther buyer and a bigger trade lose more
    assert transfer_efficiency(kerber, near, far, 5.0) < transfer_efficiency(kerber, near, neighbour, 5.0)
    assert transfer_efficiency(kerber, near, far, 8.0) < transfer_efficiency(kerber, near, far, 2.0)
    assert transfer_efficiency(kerber, near, far, 1e6) == 0.5   # the floor


def test_a_buyer_that_knows_the_buses_takes_x3_from_the_path(kerber):
    from models import Predictor
    from p2pnode.config import config_from_dict
    from p2pnode.offers import OfferRecord
    from p2pnode.ranking import LOSS_PER_KM, UNKNOWN_DISTANCE_M, MarketContext, candidates_from_offers
    from p2pnode.reputation import Reputation
    from p2pnode.transfer import FeederPaths

    houses = [int(kerber.bus_index[p]) for p in kerber.load_buses]
    me, near, far, unplaced = b"m" * 32, b"n" * 32, b"f" * 32, b"u" * 32
    config = config_from_dict({"interval_s": 900, "feeder_role": {
        "network": "kerber_dorfnetz",
        "buses": {me.hex(): houses[0], near.hex(): houses[1], far.hex(): houses[-1]}}})
    assert FeederPaths.from_config(config_from_dict({}), me) is None       # no topology known
    loads = []
    paths = FeederPaths.from_config(config, me)
    paths._loader = lambda name: loads.append(name) or kerber
    records = [OfferRecord(seller, bytes([i]) * 16, 1, 2000, 100_000, "F", 86_400, 87_300,
                           "127.0.0.1:1", efficiency=0.99 if seller == unplaced else None)
               for i, seller in enumerate((near, far, unplaced, b"x" * 32))]
    candidates = candidates_from_offers(records, 2000, Reputation(), MarketContext(transfer=paths),
                                        Predictor.default(), capped=False)
    by_seller = {c.seller: c.efficiency for c in candidates}
    # 2 kWh in 15 minutes: 8 kW along the path
    assert by_seller[near] == pytest.approx(transfer_efficiency(kerber, houses[1], houses[0], 8.0))
    assert by_seller[far] == pytest.approx(transfer_efficiency(kerber, houses[-1], houses[0], 8.0))
    assert by_seller[far] < by_seller[near] < 1.0
    assert by_seller[unplaced] == 0.99                         # its own statement
    assert by_seller[b"x" * 32] == pytest.approx(1 - LOSS_PER_KM * UNKNOWN_DISTANCE_M / 1000)
    assert loads == ["kerber_dorfnetz"]                        # loaded once, on first use
