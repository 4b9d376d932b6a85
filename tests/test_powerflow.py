"""Backward-forward sweep against pandapower's Newton-Raphson, and feeder building rules."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from optimizer.powerflow import (
    FEEDERS, FeederError, PowerFlowError, SweepOptions, VoltageLimits, compare_with_pandapower,
    feeder_from_pandapower, load_feeder, pandapower_net, solve,
)

TOL_PU = 1e-6


@pytest.fixture(scope="module", params=sorted(FEEDERS))
def named(request):
    net = pandapower_net(request.param)
    return net, feeder_from_pandapower(net, request.param)


def test_case33bw_published_values():
    feeder = load_feeder("case33bw")
    result = solve(feeder, feeder.base_p_mw, feeder.base_q_mvar)
    assert result.converged.all()
    assert int(np.argmin(result.vm_pu[0])) == 17
    assert result.vm_pu[0].min() == pytest.approx(0.9131, abs=5e-5)
    assert result.loss_mw[0] * 1000 == pytest.approx(202.7, abs=0.05)
    assert not result.within_limits()[0]  # bus 18 is below 0.95 p.u.


def test_matches_pandapower_on_base_loads(named):
    net, feeder = named
    comparison = compare_with_pandapower(net, feeder)
    assert comparison.max_dv_pu <= TOL_PU
    assert comparison.max_dv_complex_pu <= TOL_PU  # angles too (Dyn5 shift on the LV feeder)
    assert comparison.loss_sweep_mw == pytest.approx(comparison.loss_pandapower_mw, abs=1e-8)


def test_matches_pandapower_with_reverse_flow(named):
    net, feeder = named
    rng = np.random.default_rng(5)
    p = feeder.base_p_mw * rng.uniform(0.2, 1.5, feeder.n_bus)
    p[list(feeder.load_buses[::2])] -= 2.5 * feeder.base_p_mw.max()  # PV export at every other house
    q = feeder.base_q_mvar * rng.uniform(0.0, 1.5, feeder.n_bus)
    comparison = compare_with_pandapower(net, feeder, p, q)
    assert comparison.sweep.vm_pu.max() > 1.0  # the export really raises voltages
    assert comparison.max_dv_complex_pu <= TOL_PU


def test_lv_feeder_has_transformer_iron_losses():
    net = pandapower_net("kerber_dorfnetz")
    feeder = feeder_from_pandapower(net)
    idle = solve(feeder, np.zeros(feeder.n_bus))
    # No load: the only loss is the magnetising branch, pfe = 0.95 kW at rated voltage.
    assert idle.loss_mw[0] * 1000 == pytest.approx(net.trafo.pfe_kw.iloc[0], rel=0.02)
    assert len(feeder.load_buses) == 57
    loaded = solve(feeder, feeder.base_p_mw, feeder.base_q_mvar)
    reference = compare_with_pandapower(net, feeder)
    pp.runpp(net, numba=False)
    assert loaded.trafo_loading_percent[0, 0] == pytest.approx(net.res_trafo.loading_percent.iloc[0], rel=1e-6)
    assert reference.max_dv_pu <= TOL_PU


def test_batched_steps_equal_single_steps(named):
    _, feeder = named
    rng = np.random.default_rng(11)
    scale = rng.uniform(-0.5, 1.3, (40, 1))
    p, q = feeder.base_p_mw * scale, feeder.base_q_mvar * np.abs(scale)
    batch = solve(feeder, p, q, SweepOptions(batch_steps=16))  # sparse and dense paths mixed
    for step in (0, 17, 39):
        single = solve(feeder, p[step], q[step])
        np.testing.assert_allclose(batch.vm_pu[step], single.vm_pu[0], atol=1e-11)
        assert batch.loss_mw[step] == pytest.approx(single.loss_mw[0], abs=1e-12)


def small_net(tap_side: str = "hv", tap_pos: int = 2):
    """A made-up feeder that exercises taps, parallel cables, charging and shifted slack."""
    net = pp.create_empty_network(sn_mva=0.5)
    mv = pp.create_bus(net, 20.0)
    lv = [pp.create_bus(net, 0.4) for _ in range(4)]
    pp.create_ext_grid(net, mv, vm_pu=1.02, va_degree=10.0)
    pp.create_transformer_from_parameters(
        net, mv, lv[0], sn_mva=0.25, vn_hv_kv=20.0, vn_lv_kv=0.41, vk_percent=4.5,
        vkr_percent=1.2, pfe_kw=0.6, i0_percent=0.3, shift_degree=30, tap_side=tap_side,
        tap_neutral=0, tap_pos=tap_pos, tap_step_percent=2.5, tap_min=-5, tap_max=5,
        tap_changer_type="Ratio")
    pp.create_line_from_parameters(net, lv[0], lv[1], 0.2, 0.2, 0.08, 800, 0.3, parallel=2)
    pp.create_line_from_parameters(net, lv[1], lv[2], 0.1, 0.4, 0.09, 300, 0.2, g_us_per_km=2.0)
    pp.create_line_from_parameters(net, lv[1], lv[3], 0.15, 0.3, 0.08, 0, 0.2)
    pp.create_load(net, lv[2], p_mw=0.04, q_mvar=0.01, scaling=1.5)
    pp.create_load(net, lv[3], p_mw=0.03, q_mvar=0.005)
    pp.create_sgen(net, lv[3], p_mw=0.05)
    return net


@pytest.mark.parametrize("tap_side, tap_pos", [("hv", 2), ("lv", -3), ("hv", 0)])
def test_matches_pandapower_on_taps_parallel_lines_and_charging(tap_side, tap_pos):
    net = small_net(tap_side, tap_pos)
    feeder = feeder_from_pandapower(net, "small")
    assert feeder.base_p_mw.tolist() == pytest.approx([0, 0, 0, 0.06, -0.02])
    comparison = compare_with_pandapower(net, feeder)
    assert comparison.max_dv_complex_pu <= TOL_PU
    assert comparison.loss_sweep_mw == pytest.approx(comparison.loss_pandapower_mw, abs=1e-9)


def test_out_of_service_tie_lines_are_ignored_and_closing_one_is_refused():
    net = pn.case33bw()
    assert (~net.line.in_service).sum() == 5  # the five tie switches of the test case
    net.line.loc[net.line.index[~net.line.in_service][0], "in_service"] = True
    with pytest.raises(FeederError, match="closes a loop, the feeder is not radial"):
        feeder_from_pandapower(net)


def _zip_load(net):
    net.load.loc[0, "const_z_p_percent"] = 50.0


def _no_ext_grid(net):
    net.ext_grid.loc[0, "in_service"] = False


@pytest.mark.parametrize("edit, message", [
    (lambda net: pp.create_gen(net, 3, p_mw=0.1), "gen 0: table 'gen' is not supported"),
    (_zip_load, "load 0: const_z_p_percent"),
    (lambda net: pp.create_bus(net, 0.4), "bus 5: not connected"),
    (_no_ext_grid, "ext_grid: expected exactly one"),
    (lambda net: pp.create_switch(net, 1, 2, et="b"), "switch 0: closed bus-bus"),
])
def test_unsupported_networks_name_the_element(edit, message):
    net = small_net()
    edit(net)
    with pytest.raises(FeederError, match=message):
        feeder_from_pandapower(net)


def test_transformer_must_be_fed_from_its_hv_side():
    net = small_net()
    net.ext_grid.loc[0, "bus"] = 1
    with pytest.raises(FeederError, match="trafo 0: reached from its lv_bus"):
        feeder_from_pandapower(net)


def test_open_line_switch_disconnects():
    net = small_net()
    pp.create_switch(net, 2, 1, et="l", closed=False)  # opens line 1 at bus 2
    with pytest.raises(FeederError, match="bus 3: not connected"):
        feeder_from_pandapower(net)


def test_bad_inputs_and_unknown_feeder():
    feeder = feeder_from_pandapower(small_net())
    with pytest.raises(PowerFlowError, match=r"p_mw: expected shape \(steps, 5\)"):
        solve(feeder, np.zeros(4))
    with pytest.raises(PowerFlowError, match="q_mvar: contains NaN"):
        solve(feeder, np.zeros(5), [0, 0, np.nan, 0, 0])
    with pytest.raises(FeederError, match="unknown name 'nowhere'"):
        load_feeder("nowhere")
    with pytest.raises(PowerFlowError, match="v_min_pu"):
        VoltageLimits(1.1, 1.0)


def test_voltage_collapse_is_a_result_not_an_exception():
    feeder = load_feeder("case33bw")
    result = solve(feeder, feeder.base_p_mw * [[1.0], [40.0]], feeder.base_q_mvar * [[1.0], [40.0]],
                   SweepOptions(max_iter=60))
    assert result.converged.tolist() == [True, False]
    assert result.within_limits().tolist() == [False, False]


def test_large_feeders_skip_the_dense_fold(monkeypatch):
    import optimizer.powerflow.feeder as feeder_module

    monkeypatch.setattr(feeder_module, "FOLD_MAX_NODES", 10)
    sparse_only = feeder_from_pandapower(pandapower_net("case33bw"))
    assert sparse_only.folded is None
    single = solve(sparse_only, sparse_only.base_p_mw, sparse_only.base_q_mvar)
    assert single.vm_pu[0].min() == pytest.approx(0.9130905, abs=1e-7)
