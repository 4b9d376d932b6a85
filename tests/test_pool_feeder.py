"""Feeder accounting with the load flow: voltages, transformer loading, technical losses."""

from __future__ import annotations

import json

import pytest

from optimizer.markets import (
    LossWatch, NodeReading, OrderError, account_interval, feeder_state, place_on_houses, share_pool,
)
from optimizer.powerflow import FeederError, load_feeder
from p2pnode.cli import main


@pytest.fixture(scope="module")
def village():
    return load_feeder("kerber_dorfnetz")


def test_energy_balance_splits_the_loss_into_technical_and_not(village):
    readings = [NodeReading(f"h{i}", 0.0, 1.5) for i in range(40)] + [NodeReading("pv", 6.0, 0.5)]
    buses = place_on_houses([r.node for r in readings], {}, village)
    state = feeder_state(readings, buses, village, hours=0.25)
    g, c = 6.0, 40 * 1.5 + 0.5
    # The transformer delivers the net load plus the technical losses (iron losses included).
    assert state.expected_transformer_kwh == pytest.approx(c - g + state.technical_loss_kwh, rel=1e-9)
    assert 0 < state.technical_loss_kwh < 0.05 * (c - g)
    assert state.converged and state.trafo_loading_percent[0] > 50  # 218 kW on 400 kVA
    honest = account_interval(share_pool(readings), state.expected_transformer_kwh, LossWatch(0.5))
    assert honest.loss_kwh == pytest.approx(state.technical_loss_kwh)  # nothing unmetered
    stolen = account_interval(share_pool(readings), state.expected_transformer_kwh + 2.0, LossWatch(0.5))
    assert stolen.loss_kwh - state.technical_loss_kwh == pytest.approx(2.0) and stolen.alert


def test_pv_export_at_the_feeder_end_raises_voltage_above_the_limit(village):
    far = int(village.bus_index[village.load_buses[-1]])
    state = feeder_state([NodeReading("farm", 60.0, 0.0)], {"farm": far}, village, hours=0.25)
    assert state.vm_max_bus == far and state.vm_max_pu > 1.05
    assert far in state.buses_outside_limits
    assert state.expected_transformer_kwh < 0  # reverse flow: the feeder exports


def test_placement_and_errors(village):
    houses = [int(village.bus_index[p]) for p in village.load_buses]
    placed = place_on_houses(["a", "b", "c"], {"b": 0}, village)
    assert placed == {"a": houses[0], "b": 0, "c": houses[1]}
    with pytest.raises(FeederError, match="no bus 5000"):
        place_on_houses(["a"], {"a": 5000}, village)
    with pytest.raises(OrderError, match="node x: no bus"):
        feeder_state([NodeReading("x", 1, 0)], {}, village, hours=1)
    with pytest.raises(OrderError, match="hours"):
        feeder_state([], {}, village, hours=0)


def test_pool_command_with_feeder(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("node,generation_kwh,consumption_kwh,bus\nA,5,2,3\nB,1,4,\nC,0,3,\n")
    code = main(["market", "pool", str(path), "--transformer-kwh", "3.2",
                 "--feeder", "kerber_dorfnetz", "--interval-minutes", "15"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    feeder = out["feeder"]
    assert feeder["name"] == "kerber_dorfnetz" and feeder["converged"]
    assert feeder["technical_loss_kwh"] > 0 and feeder["buses_outside_limits"] == []
    assert out["non_technical_loss_kwh"] == pytest.approx(out["loss_kwh"] - feeder["technical_loss_kwh"], abs=1e-8)
    code = main(["market", "pool", str(path), "--transformer-kwh", "3.2", "--feeder", "kerber_dorfnetz",
                 "--interval-minutes", "0"])
    assert code == 2 and "--interval-minutes" in capsys.readouterr().err
