"""Strategic and unreliable sellers of the simulator (simulator.strategic) and their settings."""

from __future__ import annotations

import numpy as np
import pytest

from p2pnode.meter import ProfileMeter
from simulator.errors import ScenarioError
from simulator.settings import Households
from simulator.strategic import (
    OVERSELLING, UNRELIABLE, OverstatingForecaster, UnreliableMeter, choice_shift, seller_rows,
    strategic_roles,
)


def test_roles_are_drawn_among_sellers_deterministically():
    surplus = np.zeros((40, 4))
    surplus[:20, 1] = 500                        # houses 0..19 have a surplus, 20..39 never
    households = Households(overselling_share=0.1, unreliable_share=0.2, unreliable_delivery=0.4)
    roles = strategic_roles(7, surplus, households)
    assert roles == strategic_roles(7, surplus, households)
    assert all(h < 20 for h in roles)
    kinds = sorted(kind for kind, _ in roles.values())
    assert kinds == [OVERSELLING] * 2 + [UNRELIABLE] * 4
    assert {p for k, p in roles.values() if k == UNRELIABLE} == {0.4}
    assert strategic_roles(8, surplus, households) != roles
    assert strategic_roles(7, surplus, Households()) == {}


def test_an_unreliable_meter_delivers_a_fraction_of_its_measured_surplus():
    steps = (np.array([[100, 0, 50]]), np.array([[20, 30, 50]]))
    meter = ProfileMeter(0, 180, [150], [100], substeps_wh=steps)
    poor = UnreliableMeter(meter, 0.5)
    assert poor.read(0, 180) == meter.read(0, 180)          # the reading is unchanged
    assert poor.substeps(0, 180, 60) == [(20 + 40, 20), (0, 30), (50, 50)]


def test_an_overselling_forecaster_states_more_generation():
    class Inner:
        seen = []

        def observe(self, start, generation, consumption):
            self.seen.append((start, generation, consumption))

        def predict(self, start, issued):
            return 400.0, 100.0

    inner = Inner()
    liar = OverstatingForecaster(inner, 3.0)
    assert liar.predict(0, 0) == (1200.0, 100.0)
    liar.observe(0, 5, 6)
    assert inner.seen == [(0, 5, 6)]


def test_report_rows_and_the_shift_of_choices():
    trades = [{"seller": 1, "interval": 0, "energy_wh": 100, "delivered_wh": 50},
              {"seller": 2, "interval": 0, "energy_wh": 300, "delivered_wh": 300},
              {"seller": 1, "interval": 2, "energy_wh": 0 + 100, "delivered_wh": 30},
              {"seller": 2, "interval": 3, "energy_wh": 300, "delivered_wh": 290}]
    roles = {1: (OVERSELLING, 3.0)}
    rows = seller_rows(trades, roles)
    assert [(r["seller"], r["role"], r["delivered_share"]) for r in rows] == [
        (1, OVERSELLING, 0.4), (2, "honest", pytest.approx(590 / 600, abs=1e-4))]
    bins = choice_shift(trades, roles, 4, per_bin=2)
    assert [b["strategic_share"] for b in bins] == [0.25, 0.25]


def test_bad_strategic_settings_name_the_field():
    with pytest.raises(ScenarioError, match="overselling_factor"):
        Households(overselling_factor=0.5)
    with pytest.raises(ScenarioError, match="unreliable_share"):
        Households(overselling_share=0.7, unreliable_share=0.5)
    with pytest.raises(ScenarioError, match="unreliable_delivery"):
        Households(unreliable_delivery=1.5)


def test_the_run_directory_gets_the_sellers_table_and_the_plot(tmp_path):
    from simulator.strategic import write_strategic
    trades = [{"seller": 1, "interval": i, "energy_wh": 100, "delivered_wh": 40} for i in range(8)]
    trades += [{"seller": 2, "interval": i, "energy_wh": 100, "delivered_wh": 100}
               for i in range(8)]
    write_strategic(tmp_path / "run", trades, {1: (OVERSELLING, 3.0)}, 8, 900)
    lines = (tmp_path / "run" / "sellers.csv").read_text().splitlines()
    assert lines[0].startswith("seller,role,trades") and lines[1].startswith("1,overselling,8")
    assert (tmp_path / "run" / "strategic_choices.png").stat().st_size > 1000
    write_strategic(tmp_path / "none", trades, {}, 8, 900)
    assert not (tmp_path / "none").exists()
