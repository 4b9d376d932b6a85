"""The literature markets as simulator mechanisms: hand-solved clearings, invariants on real
profiles, the side-by-side table and ``p2pnode market compare``."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest

from optimizer.markets import Nsga2Config, PricingRule
from p2pnode.cli import main
from simulator import ProfileSpec, Tariffs, build_profiles, settle_profiles
from simulator.mechanisms import (
    MECHANISMS, Comparison, ContinuousMatching, DoubleAuction, MechanismError, MechanismSetup,
    Nsga2Market, Pooling, arrival_order, check_names, clear_continuous, compare_mechanisms,
    comparison_table, copper_plate, house_buses, interval_rng, scenario_feeder,
)

# Houses 0, 1 sell 3 kWh at 0.10 and 2 kWh at 0.15; houses 2, 3 buy 4 kWh up to 0.28 and 2 kWh
# up to 0.12.  Retail 0.30, feed-in 0.08.
SURPLUS = np.array([3000.0, 2000.0, 0.0, 0.0])
ASK = np.array([0.10, 0.15, 0.08, 0.08])
DEFICIT = np.array([0.0, 0.0, 4000.0, 2000.0])
BID = np.array([0.30, 0.30, 0.28, 0.12])
PRICES = {"retail_per_kwh": 0.30, "feed_in_per_kwh": 0.08}


def clearing_arrays(clearing):
    return [np.asarray(getattr(clearing, name)) for name in ("sold_wh", "bought_wh", "paid",
                                                              "received")]


def assert_clearing(clearing, sold, bought, paid, received):
    for got, want in zip(clearing_arrays(clearing), (sold, bought, paid, received)):
        np.testing.assert_allclose(got, want, atol=1e-9)


# ---- double auction -------------------------------------------------------------------------

@pytest.mark.parametrize("k, mcp", [(0.5, 0.215), (0.0, 0.15), (1.0, 0.28)])
def test_double_auction_hand_solved(k, mcp):
    # Bids 0.28 (4 kWh), 0.12 (2 kWh) meet asks 0.10 (3 kWh), 0.15 (2 kWh): house 2 takes 3 kWh
    # from house 0 and 1 kWh from house 1; 0.12 < 0.15 stops the walk.  Marginal pair
    # (0.15, 0.28): mcp = 0.15 + k * 0.13.
    clearing = DoubleAuction(PricingRule(k))(SURPLUS, ASK, DEFICIT, BID, **PRICES)
    assert_clearing(clearing, [3000, 1000, 0, 0], [0, 0, 4000, 0], [0, 0, 4 * mcp, 0],
                    [3 * mcp, 1 * mcp, 0, 0])


def test_double_auction_clearing_bounds_and_tariff_cap():
    # bounds="clearing": house 1 still has 1 kWh unsold at 0.15, so the price cannot exceed it.
    clearing = DoubleAuction(PricingRule(0.5, "clearing"))(SURPLUS, ASK, DEFICIT, BID, **PRICES)
    np.testing.assert_allclose(clearing.paid, [0, 0, 4 * 0.15, 0])
    # A retail price of 0.14 caps the 0.28 bid: only house 0 (ask 0.10) can sell.
    clearing = DoubleAuction()(SURPLUS, ASK, DEFICIT, BID, retail_per_kwh=0.14,
                               feed_in_per_kwh=0.08)
    assert_clearing(clearing, [3000, 0, 0, 0], [0, 0, 3000, 0], [0, 0, 3 * 0.12, 0],
                    [3 * 0.12, 0, 0, 0])


# ---- continuous matching --------------------------------------------------------------------

@pytest.mark.parametrize("arrival, sold, bought, paid, received", [
    # Bid of house 2 rests; house 0 hits it (3 kWh at 0.28), house 3's 0.12 bid rests, house 1
    # hits house 2's remaining 1 kWh at 0.28 and rests with 1 kWh (0.15 > 0.12).
    ([2, 0, 3, 1], [3000, 1000, 0, 0], [0, 0, 4000, 0], [0, 0, 1.12, 0], [0.84, 0.28, 0, 0]),
    # Asks rest; house 2 lifts 3 kWh at 0.10 and 1 kWh at 0.15; house 3's bid is too low.
    ([0, 1, 2, 3], [3000, 1000, 0, 0], [0, 0, 4000, 0], [0, 0, 0.45, 0], [0.30, 0.15, 0, 0]),
    # House 3 arrives before the 0.15 ask exists: it buys 2 kWh of house 0 at 0.12; house 2
    # lifts house 0's last 1 kWh at 0.10 and rests; house 1 hits it with 2 kWh at 0.28.
    ([3, 0, 2, 1], [3000, 2000, 0, 0], [0, 0, 3000, 2000], [0, 0, 0.10 + 0.56, 0.24],
     [0.24 + 0.10, 0.56, 0, 0]),
])
def test_continuous_hand_solved(arrival, sold, bought, paid, received):
    clearing = clear_continuous(SURPLUS, ASK, DEFICIT, BID, retail_per_kwh=0.30, arrival=arrival)
    assert_clearing(clearing, sold, bought, paid, received)


def test_continuous_arrival_must_list_each_trader_once():
    for arrival in ([0, 1, 2], [0, 1, 2, 2], [0, 1, 2, 3, 4]):
        with pytest.raises(MechanismError, match="each house with an order once"):
            clear_continuous(SURPLUS, ASK, DEFICIT, BID, retail_per_kwh=0.30, arrival=arrival)


def test_continuous_arrival_is_seeded_and_varies():
    surplus = np.array([500.0, 0.0, 300.0, 0.0, 0.0, 200.0])
    deficit = np.array([0.0, 400.0, 0.0, 0.0, 700.0, 0.0])
    order = arrival_order(surplus, deficit, interval_rng(7, surplus, deficit))
    assert sorted(order.tolist()) == [0, 1, 2, 4, 5]  # house 3 has no order
    np.testing.assert_array_equal(order, arrival_order(surplus, deficit,
                                                       interval_rng(7, surplus, deficit)))
    orders = {tuple(arrival_order(surplus, deficit, interval_rng(seed, surplus, deficit)))
              for seed in range(20)}
    assert len(orders) > 5
    ask, bid = np.full(6, 0.08), np.full(6, 0.30)
    paid = {float(ContinuousMatching(seed)(surplus, ask, deficit, bid, **PRICES).paid.sum())
            for seed in range(20)}
    assert len(paid) > 1  # who rests first sets the price
    again = ContinuousMatching(3)(surplus, ask, deficit, bid, **PRICES)
    for a, b in zip(clearing_arrays(again),
                    clearing_arrays(ContinuousMatching(3)(surplus, ask, deficit, bid, **PRICES))):
        np.testing.assert_array_equal(a, b)


# ---- pooling --------------------------------------------------------------------------------

def test_pooling_scarce_supply_hand_solved():
    # Pool 4 kWh, demand 8 kWh: SDR 0.5, each deficit gets half.  Sell price
    # f r / ((r - f) SDR + f) = 0.024 / 0.19.
    price = 0.08 * 0.30 / (0.22 * 0.5 + 0.08)
    clearing = Pooling()(np.array([3000.0, 1000, 0, 0]), ASK, np.array([0.0, 0, 6000, 2000]),
                         BID, **PRICES)
    assert_clearing(clearing, [3000, 1000, 0, 0], [0, 0, 3000, 1000], [0, 0, 3 * price, price],
                    [3 * price, price, 0, 0])


def test_pooling_abundant_supply_hand_solved():
    # Pool 8 kWh, demand 3 kWh: each seller gives 3/8 of her surplus, all at the feed-in tariff.
    clearing = Pooling()(np.array([6000.0, 2000, 0]), ASK[:3], np.array([0.0, 0, 3000]),
                         BID[:3], **PRICES)
    assert_clearing(clearing, [2250, 750, 0], [0, 0, 3000], [0, 0, 0.24], [0.18, 0.06, 0])


# ---- NSGA-II --------------------------------------------------------------------------------

SMALL_GA = Nsga2Config(population=16, generations=20)


def test_nsga2_on_a_copper_plate_hand_case():
    # One seller (2 kWh at 0.10), one buyer (1 kWh up to 0.30): at most 1 kWh can move, at one
    # price between 0.10 and 0.30.
    market = Nsga2Market(copper_plate(), (0, 0), 900, seed=5, config=SMALL_GA)
    clearing = market(np.array([2000.0, 0]), np.array([0.10, 0.10]), np.array([0.0, 1000]),
                      np.array([0.30, 0.30]), **PRICES)
    sold, bought, paid, received = clearing_arrays(clearing)
    assert 950 <= bought[1] <= 1000 and sold[0] == pytest.approx(bought[1]) and sold[1] == 0
    price = paid[1] / (bought[1] / 1000)
    assert 0.10 <= price <= 0.30 and received[0] == pytest.approx(paid[1])
    # Ask above the tariff, or nobody on one side: no trade.
    for surplus, ask in ((np.array([2000.0, 0]), np.array([0.35, 0.1])),
                         (np.array([0.0, 0]), np.array([0.10, 0.1]))):
        clearing = market(surplus, ask, np.array([0.0, 1000]), np.array([0.30, 0.30]), **PRICES)
        assert all((a == 0).all() for a in clearing_arrays(clearing))


def test_nsga2_caps_a_seller_on_a_weak_line():
    # House 0 sells at the end of a 1 ohm line (0.4 kV), house 1 buys at the slack bus.  The
    # seller's bus stays below 1.05 p.u. while v^2 - v <= P R / V^2, i.e. P <= 1.05 * 0.05 *
    # 0.4^2 / 1 MW = 8.4 kW: 2.1 kWh in a quarter hour of the 5 kWh she has.
    pp = pytest.importorskip("pandapower")
    net = pp.create_empty_network(sn_mva=1.0)
    slack, far = pp.create_bus(net, 0.4), pp.create_bus(net, 0.4)
    pp.create_ext_grid(net, slack, vm_pu=1.0)
    pp.create_line_from_parameters(net, slack, far, length_km=1.0, r_ohm_per_km=1.0,
                                   x_ohm_per_km=0.01, c_nf_per_km=0.0, max_i_ka=1.0)
    from optimizer.powerflow import feeder_from_pandapower

    market = Nsga2Market(feeder_from_pandapower(net, "weak"), (far, slack), 900, seed=1,
                         config=SMALL_GA)
    orders = (np.array([5000.0, 0]), np.full(2, 0.08), np.array([0.0, 5000]), np.full(2, 0.30))
    clearing = market(*orders, **PRICES)
    assert 1500 <= clearing.sold_wh[0] <= 2100
    assert clearing.bought_wh[1] == pytest.approx(clearing.sold_wh[0])
    assert DoubleAuction()(*orders, **PRICES).sold_wh[0] == 5000  # the auction ignores the line
    pp.create_sgen(net, far, p_mw=clearing.sold_wh[0] / 0.25 / 1e6)
    pp.create_load(net, slack, p_mw=5000 / 0.25 / 1e6)
    pp.runpp(net, numba=False)
    assert net.res_bus.vm_pu.at[far] <= 1.05 + 1e-6


def test_houses_go_to_load_buses_in_turn():
    feeder = scenario_feeder("kerber_landnetz_kabel_1")
    buses = house_buses(feeder, 10)
    loads = [int(feeder.bus_index[p]) for p in feeder.load_buses]
    assert len(loads) == 8 and buses == tuple(loads + loads[:2])
    assert house_buses(copper_plate(), 3) == (0, 0, 0)
    assert scenario_feeder("none") is None
    market = MECHANISMS["nsga2"](MechanismSetup(houses=10, interval_s=900, feeder=feeder))
    assert market.buses == buses and market.feeder is feeder and market.interval_s == 900
    assert MECHANISMS["nsga2"](MechanismSetup(houses=2, interval_s=900)).buses == (0, 0)


def test_unusable_feeder_is_named():
    with pytest.raises(MechanismError, match="feeder 'cigre_lv': the load flow cannot use it"):
        scenario_feeder("cigre_lv")


# ---- on real profiles -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def profiles():
    return build_profiles(ProfileSpec(houses=12, day=date(2023, 6, 30), seed=3), use_cache=False)


@pytest.fixture(scope="module")
def comparison(profiles):
    return compare_mechanisms(profiles, Tariffs(), feeder=scenario_feeder("kerber_dorfnetz"),
                              seed=3)


def test_every_mechanism_respects_positions_and_conserves_money(profiles, comparison):
    assert set(comparison.markets) == set(MECHANISMS)
    optimum_wh = comparison.optimum.matched_wh
    retail, feed_in = comparison.prices.retail_per_kwh, comparison.prices.feed_in_per_kwh
    for name, outcome in comparison.markets.items():
        assert (outcome.sold_wh <= profiles.surplus_wh + 1e-9).all(), name
        assert (outcome.bought_wh <= profiles.deficit_wh + 1e-9).all(), name
        sold, bought = outcome.sold_wh.sum(axis=0), outcome.bought_wh.sum(axis=0)
        np.testing.assert_allclose(sold, bought, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(outcome.paid.sum(axis=0), outcome.received.sum(axis=0),
                                   atol=1e-9, err_msg=name)
        assert (bought <= optimum_wh + 1e-6).all(), name
        traded = bought > 1e-6
        unit = outcome.paid.sum(axis=0)[traded] / bought[traded] * 1000
        assert ((unit >= feed_in[traded] - 1e-9) & (unit <= retail[traded] + 1e-9)).all(), name


def test_auction_and_pool_reach_the_optimum_and_nsga2_comes_close(profiles, comparison):
    markets = comparison.markets
    auction, optimum = markets["double_auction"], comparison.optimum_outcome
    np.testing.assert_allclose(auction.bought_wh.sum(axis=0), comparison.optimum.matched_wh,
                               atol=1e-6)
    # Same queue as the merit order (ties by house) and mcp = midpoint of feed-in and retail,
    # which is how the optimum is settled: the very same allocation and money, house by house.
    for name in ("sold_wh", "bought_wh", "paid", "received"):
        np.testing.assert_allclose(getattr(auction, name), getattr(optimum, name), atol=1e-9)
    by_hand = np.minimum(profiles.surplus_wh.sum(axis=0), profiles.deficit_wh.sum(axis=0))
    np.testing.assert_allclose(markets["pooling"].bought_wh.sum(axis=0), by_hand, atol=1e-6)
    rows = {row["mechanism"]: row for row in comparison_table(comparison)}
    assert rows["double_auction"]["welfare_ratio"] == pytest.approx(1.0)
    assert rows["nsga2"]["welfare_ratio"] >= 0.95


def test_table_rows(profiles, comparison):
    ours = settle_profiles(profiles, Tariffs(), **{
        name: getattr(comparison.markets["pooling"], name) / 2
        for name in ("bought_wh", "sold_wh", "paid", "received")})
    rows = comparison_table(comparison, ours)
    assert [r["mechanism"] for r in rows] == ["no_trading", *MECHANISMS, "optimum", "ours"]
    by_name = {r["mechanism"]: r for r in rows}
    deficit_kwh = profiles.deficit_wh.sum() / 1000
    assert by_name["no_trading"]["local_match_kwh"] == 0
    assert by_name["no_trading"]["grid_import_kwh"] == pytest.approx(deficit_kwh)
    assert by_name["no_trading"]["average_p2p_price_per_kwh"] is None  # NaN -> None
    pool = comparison.markets["pooling"]
    assert by_name["pooling"]["local_match_kwh"] == pytest.approx(pool.bought_wh.sum() / 1000)
    assert by_name["ours"]["local_match_kwh"] == pytest.approx(pool.bought_wh.sum() / 2000)
    assert by_name["ours"]["grid_import_kwh"] == pytest.approx(
        deficit_kwh - pool.bought_wh.sum() / 2000)
    half = by_name["pooling"]["total_savings"] / 2
    assert by_name["ours"]["total_savings"] == pytest.approx(half)
    assert by_name["optimum"]["local_match_ratio"] == pytest.approx(1.0)
    assert all(by_name[n]["wall_s"] > 0 for n in MECHANISMS)
    assert by_name["optimum"]["wall_s"] is None and by_name["ours"]["wall_s"] is None
    json.dumps(rows, allow_nan=False)


def test_wall_time_counts_only_the_mechanism(profiles):
    ticks = iter(range(10_000))
    result = compare_mechanisms(profiles, Tariffs(), ["pooling", "double_auction"],
                                clock=lambda: next(ticks))
    assert isinstance(result, Comparison)
    assert result.wall_s == {"pooling": profiles.intervals, "double_auction": profiles.intervals}


def test_bad_names():
    with pytest.raises(MechanismError, match="unknown mechanism.*'auction'.*valid: "
                                             "double_auction, continuous, pooling, nsga2"):
        check_names(["pooling", "auction"])
    with pytest.raises(MechanismError, match="each at most once"):
        check_names(["pooling", "pooling"])
    assert check_names([]) == ()


def test_no_mechanism_still_gives_the_baselines(profiles):
    """`p2pnode simulate --mechanisms ""` (and sweeps) compare with no market at all."""
    result = compare_mechanisms(profiles, Tariffs(), [])
    assert result.markets == {} and result.wall_s == {}
    with_one = compare_mechanisms(profiles, Tariffs(), ["pooling"])
    assert result.optimum_outcome.bought_wh.sum() == pytest.approx(
        with_one.optimum_outcome.bought_wh.sum())
    assert result.optimum_outcome.bought_wh.sum() > 0
    assert result.no_trading.bought_wh.sum() == 0


# ---- p2pnode market compare -----------------------------------------------------------------

@pytest.fixture
def tiny_scenario(tmp_path, monkeypatch):
    monkeypatch.setenv("P2P_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "tiny.toml"
    path.write_text('name = "tiny"\nmeters = 12\nseed = 3\nfeeder = "kerber_landnetz_kabel_1"\n')
    return str(path)


def test_cli_compare_table_and_json(tiny_scenario, capsys):
    small = ["--nsga2-population", "8", "--nsga2-generations", "5"]
    assert main(["market", "compare", tiny_scenario, *small]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("tiny (") and "12 meters, 96 intervals" in lines[0]
    names = [line.split()[0] for line in lines[2:]]
    assert names == ["no_trading", *MECHANISMS, "optimum"]
    assert main(["market", "compare", tiny_scenario, "--mechanisms", "pooling, double_auction",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["mechanism"] for r in out["rows"]] == ["no_trading", "pooling", "double_auction",
                                                    "optimum"]
    assert out["meters"] == 12 and out["feeder"] == "kerber_landnetz_kabel_1"
    pool = out["rows"][1]
    assert pool["local_match_kwh"] == pytest.approx(out["optimum_match_kwh"])


@pytest.mark.parametrize("argv, message", [
    (["--mechanisms", "pooling,vickrey"],
     "unknown mechanism(s) 'vickrey'; valid: double_auction, continuous, pooling, nsga2"),
    (["--k", "2"], "k: must be in [0, 1]"),
    (["--nsga2-population", "5"], "population: must be an even number >= 4"),
])
def test_cli_compare_usage_errors(tiny_scenario, capsys, argv, message):
    assert main(["market", "compare", tiny_scenario, *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_compare_bad_scenario(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("meters = 0\n")
    assert main(["market", "compare", str(path), "--mechanisms", "pooling"]) == 2
    assert "bad.toml: meters = 0" in capsys.readouterr().err


def test_cli_compare_help_lists_every_mechanism(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["market", "compare", "--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert ",".join(MECHANISMS) in help_text
