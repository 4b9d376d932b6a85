"""Random radial feeders (seeded): the sweep agrees with pandapower's runpp on every one."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest

from optimizer.powerflow import compare_with_pandapower, feeder_from_pandapower


def random_feeder(seed: int):
    rng = np.random.default_rng(seed)
    net = pp.create_empty_network(sn_mva=float(rng.choice([0.1, 1.0, 10.0])))
    mv = pp.create_bus(net, 10.0)
    pp.create_ext_grid(net, mv, vm_pu=float(rng.uniform(0.98, 1.04)), va_degree=float(rng.uniform(-20, 20)))
    lv = [pp.create_bus(net, 0.4)]
    pp.create_transformer_from_parameters(
        net, mv, lv[0], sn_mva=float(rng.choice([0.25, 0.4, 0.63])), vn_hv_kv=10.0,
        vn_lv_kv=float(rng.choice([0.4, 0.41, 0.42])), vk_percent=float(rng.uniform(4, 6)),
        vkr_percent=float(rng.uniform(0.8, 1.5)), pfe_kw=float(rng.uniform(0.3, 1.5)),
        i0_percent=float(rng.uniform(0.1, 0.5)), shift_degree=float(rng.choice([0, 150])),
        tap_side=str(rng.choice(["hv", "lv"])), tap_neutral=0, tap_pos=int(rng.integers(-2, 3)),
        tap_step_percent=2.5, tap_min=-2, tap_max=2, tap_changer_type="Ratio")
    for _ in range(int(rng.integers(5, 40))):
        parent = int(rng.choice(lv))
        child = pp.create_bus(net, 0.4)
        pp.create_line_from_parameters(
            net, parent, child, float(rng.uniform(0.01, 0.15)), float(rng.uniform(0.1, 0.8)),
            float(rng.uniform(0.07, 0.09)), float(rng.uniform(0, 900)), 0.3,
            parallel=int(rng.integers(1, 3)))
        lv.append(child)
        if rng.random() < 0.7:
            pp.create_load(net, child, p_mw=float(rng.uniform(0, 0.01)), q_mvar=float(rng.uniform(-0.002, 0.004)))
        if rng.random() < 0.3:
            pp.create_sgen(net, child, p_mw=float(rng.uniform(0, 0.015)))
    return net


@pytest.mark.parametrize("seed", range(8))
def test_random_radial_feeder_matches_pandapower(seed):
    net = random_feeder(seed)
    feeder = feeder_from_pandapower(net, f"random-{seed}")
    comparison = compare_with_pandapower(net, feeder)
    assert comparison.sweep.converged.all()
    assert comparison.max_dv_complex_pu <= 1e-6
    assert comparison.loss_sweep_mw == pytest.approx(comparison.loss_pandapower_mw, abs=1e-9)
