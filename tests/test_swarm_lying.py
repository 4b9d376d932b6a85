"""Houses whose node lies about its meter, in a real swarm: the feeder's cross-check catches them."""

from __future__ import annotations

import pytest

from simulator.faults import fault_schedule
from simulator.mint_audit import LIE_EXTRA_WH, LyingMeter
from simulator.run import run_stats
from simulator.settings import Faults
from p2pnode.meter import ProfileMeter
from tests.test_swarm_faults import COUNT, midday, scenario


def test_a_lying_meter_inflates_and_drops_the_signature():
    true = ProfileMeter(0, 900, [1000], [200])
    lied = LyingMeter(true).read(0, 900)
    assert lied.generation_wh == 2 * 1000 + LIE_EXTRA_WH and lied.consumption_wh == 200
    assert lied.meter_sig == b""


def test_the_plan_picks_lying_houses_apart_from_attackers():
    plan = fault_schedule(11, 20, 96, Faults(malicious_share=0.1, lying_share=0.1))
    assert len(plan.lying) == 2 and not plan.lying & set(plan.malicious)
    assert fault_schedule(11, 20, 96, Faults(malicious_share=0.1)).malicious == plan.malicious


@pytest.mark.slow
@pytest.mark.parametrize("meter_keys", [True, False])
def test_lying_nodes_are_caught_by_the_feeder_cross_check(tmp_path, meter_keys):
    sc = scenario(12, lying_share=0.17, meter_keys=meter_keys)
    plan = fault_schedule(sc.seed, sc.meters, COUNT, sc.faults)
    assert len(plan.lying) == 2
    run = run_swarm_once(sc, tmp_path)
    check = run.mint_check
    assert check["lying_nodes"] == 2
    assert check["lying_caught"] == 2 and check["lying_missed"] == 0
    assert check["mint_excess_kwh"] > 0
    assert run.audit_problems == [] and run.double_settlements == 0
    if not meter_keys:   # every unverified minter of an interval with excess is a suspect
        assert check["honest_flagged"] > 0
    if meter_keys:       # a trusted meter vouches for every honest reading: no false alarm
        assert check["honest_flagged"] == 0
        assert check["mint_flags_unverified_reading"] > 0
        assert check["untrusted_mints"] > 0          # the liars' self-signed MINT blocks
    stats = run_stats(run).extra
    assert stats["lying_caught"] == 2 and stats["lying_nodes"] == 2


def run_swarm_once(sc, tmp_path):
    from simulator.swarm import run_swarm
    return run_swarm(sc, midday(sc.meters), tmp_path / "lying", progress=False)



def test_liars_deliveries_are_cut_to_their_true_surplus_for_scoring():
    import numpy as np

    from simulator.mint_audit import backed_trades
    surplus = np.array([[500, 0], [800, 0]])          # house 0 lies, house 1 does not
    rows = [{"seller": 0, "interval": 0, "delivered_wh": 400},
            {"seller": 0, "interval": 0, "delivered_wh": 300},
            {"seller": 0, "interval": 1, "delivered_wh": 200},
            {"seller": 1, "interval": 0, "delivered_wh": 900}]   # not a liar: left alone
    out, unbacked = backed_trades(rows, surplus, {0})
    assert [r["delivered_wh"] for r in out] == [400, 100, 0, 900]
    assert unbacked == 200 + 200 and rows[1]["delivered_wh"] == 300
