"""Double auction and continuous matching: hand-solved cases and invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from optimizer.markets.auction import PricingRule, clear_double_auction, clear_frames
from optimizer.markets.continuous import match_continuous, match_frames
from optimizer.markets.errors import OrderError
from optimizer.markets.orders import Order, Side, TimeFrames, trade_matrix

SELL, BUY = Side.SELL, Side.BUY


def book_one() -> list[Order]:
    """Asks 0.10/0.15/0.30, bids 0.28/0.20/0.12; tariff 0.25 caps B1 and excludes S3."""
    return [
        Order("S1", SELL, 5, 0.10, seq=0), Order("S2", SELL, 4, 0.15, seq=1),
        Order("S3", SELL, 3, 0.30, seq=2), Order("B1", BUY, 3, 0.28, seq=3),
        Order("B2", BUY, 4, 0.20, seq=4), Order("B3", BUY, 5, 0.12, seq=5),
    ]


def test_hand_solved_marginal_midpoint():
    result = clear_double_auction(book_one(), grid_tariff=0.25)
    assert [(t.seller, t.buyer, t.kwh) for t in result.trades] == [
        ("S1", "B1", 3), ("S1", "B2", 2), ("S2", "B2", 2)]
    assert result.matched_kwh == 7
    assert result.price_bounds == (0.15, 0.20)
    assert result.mcp == pytest.approx(0.175)
    assert all(t.price == result.mcp for t in result.trades)
    assert result.welfare == pytest.approx(3 * 0.15 + 2 * 0.10 + 2 * 0.05)
    assert result.unmatched == (("S2", 2), ("S3", 3), ("B3", 5))


def test_hand_solved_clearing_bounds_pin_price_to_partial_ask():
    # S2 keeps 2 kWh at 0.15: any price above 0.15 would leave a willing seller unsold.
    result = clear_double_auction(book_one(), 0.25, PricingRule(k=0.5, bounds="clearing"))
    assert result.price_bounds == (0.15, 0.15)
    assert result.mcp == 0.15


@pytest.mark.parametrize("k, expected", [(0.0, 0.05), (1.0, 0.20), (0.25, 0.0875)])
def test_k_moves_price_between_ask_and_capped_bid(k, expected):
    orders = [Order("S", SELL, 2, 0.05), Order("B", BUY, 2, 0.40)]
    result = clear_double_auction(orders, 0.20, PricingRule(k=k))
    assert result.price_bounds == (0.05, 0.20)  # the 0.40 bid counts as the 0.20 tariff
    assert result.mcp == pytest.approx(expected)


def test_nothing_crosses_is_a_result_not_an_error():
    result = clear_double_auction([Order("S", SELL, 1, 0.3), Order("B", BUY, 1, 0.2)], 0.25)
    assert result.mcp is None and result.matched_kwh == 0 and result.trades == ()
    assert result.unmatched == (("S", 1), ("B", 1))


def test_equal_prices_keep_time_priority():
    orders = [Order("late", SELL, 1, 0.1, seq=5), Order("early", SELL, 1, 0.1, seq=1),
              Order("B", BUY, 1, 0.2, seq=9)]
    assert clear_double_auction(orders, 0.3).trades[0].seller == "early"


def test_frames_clear_separately_with_time_of_use_tariffs():
    orders = [Order("S", SELL, 2, 0.10, "peak"), Order("B", BUY, 2, 0.40, "peak"),
              Order("S2", SELL, 1, 0.10, "off_peak"), Order("B2", BUY, 1, 0.40, "off_peak")]
    results = clear_frames(orders, {"off_peak": 0.20, "normal": 0.25, "peak": 0.30},
                           PricingRule(k=1.0))
    assert [r.frame for r in results] == ["off_peak", "normal", "peak"]
    assert [r.mcp for r in results] == [0.20, None, 0.30]


def test_unknown_frame_and_missing_tariff_name_the_field():
    with pytest.raises(OrderError, match="order X: frame 'night'"):
        clear_frames([Order("X", SELL, 1, 0.1, "night")], 0.3)
    with pytest.raises(OrderError, match="no tariff for frame 'off_peak'"):
        clear_frames([], {"peak": 0.3})


@pytest.mark.parametrize("kwargs, field", [
    ({"kwh": 0}, "kwh"), ({"kwh": float("nan")}, "kwh"), ({"price": -1}, "price"),
    ({"id": ""}, "id"), ({"side": "sell"}, "side")])
def test_bad_orders_name_the_field(kwargs, field):
    values = {"id": "o1", "side": SELL, "kwh": 1.0, "price": 0.1, **kwargs}
    with pytest.raises(OrderError, match=field):
        Order(**values)


def test_time_frames_default_and_validation():
    frames = TimeFrames()
    assert [frames.frame_of(h) for h in (0, 5.9, 6, 17.5, 18, 21, 22, 23.99)] == [
        "off_peak", "off_peak", "normal", "normal", "peak", "peak", "off_peak", "off_peak"]
    assert (frames.hours("off_peak"), frames.hours("normal"), frames.hours("peak")) == (8, 12, 4)
    with pytest.raises(OrderError, match="hour 7 is in both"):
        TimeFrames((("a", 0, 8), ("b", 7, 0)))
    with pytest.raises(OrderError, match="belong to no frame"):
        TimeFrames((("a", 0, 8),))


def test_trade_matrix():
    result = clear_double_auction(book_one(), 0.25)
    matrix = trade_matrix(result.trades, sellers=["S1", "S2", "S3"], buyers=["B1", "B2", "B3"])
    np.testing.assert_array_equal(matrix.kwh, [[3, 2, 0], [0, 2, 0], [0, 0, 0]])


def test_continuous_hand_solved():
    orders = [Order("S1", SELL, 5, 0.10, seq=1), Order("B1", BUY, 3, 0.12, seq=2),
              Order("S2", SELL, 4, 0.08, seq=3), Order("B2", BUY, 5, 0.20, seq=4),
              Order("B3", BUY, 2, 0.05, seq=5), Order("S3", SELL, 3, 0.04, seq=6)]
    result = match_continuous(orders, grid_tariff=0.25)
    assert [(t.seller, t.buyer, t.kwh, t.price) for t in result.trades] == [
        ("S1", "B1", 3, 0.10),   # B1 lifts the resting ask at the ask's price
        ("S2", "B2", 4, 0.08),   # best price first
        ("S1", "B2", 1, 0.10),
        ("S3", "B3", 2, 0.05)]   # an arriving ask hits the resting bid at the bid's price
    assert result.resting == (("S1", 1), ("S3", 1))
    assert result.matched_kwh == 10


def test_continuous_time_priority_and_tariff_cap():
    orders = [Order("A", SELL, 1, 0.10, seq=1), Order("Bx", SELL, 1, 0.10, seq=2),
              Order("rich", BUY, 1, 0.90, seq=3), Order("S", SELL, 1, 0.01, seq=4),
              Order("rich2", BUY, 1, 0.90, seq=5)]
    result = match_continuous(orders, grid_tariff=0.30)
    assert [(t.seller, t.buyer, t.price) for t in result.trades] == [
        ("A", "rich", 0.10), ("S", "rich2", 0.01)]
    resting_bid = match_continuous([Order("b", BUY, 1, 0.9, seq=1), Order("s", SELL, 1, 0.0, seq=2)], 0.3)
    assert resting_bid.trades[0].price == 0.30  # the resting bid counts at the tariff


def test_continuous_per_frame():
    orders = [Order("S", SELL, 1, 0.1, "peak"), Order("B", BUY, 1, 0.2, "normal")]
    assert [r.matched_kwh for r in match_frames(orders, 0.3)] == [0, 0, 0]


orders_strategy = st.lists(
    st.tuples(st.sampled_from([SELL, BUY]), st.integers(1, 20), st.integers(0, 40)),
    min_size=1, max_size=12)


def _max_gains(orders: list[Order], tariff: float) -> float:
    """Independent optimum: LP over the seller x buyer matrix."""
    sells = [o for o in orders if o.side is SELL]
    buys = [o for o in orders if o.side is BUY]
    if not sells or not buys:
        return 0.0
    gain = np.array([[min(b.price, tariff) - s.price for b in buys] for s in sells])
    rows = [np.kron(np.eye(len(sells))[i], np.ones(len(buys))) for i in range(len(sells))]
    cols = [np.kron(np.ones(len(sells)), np.eye(len(buys))[j]) for j in range(len(buys))]
    res = linprog(-gain.ravel(), A_ub=np.array(rows + cols),
                  b_ub=[s.kwh for s in sells] + [b.kwh for b in buys], bounds=(0, None))
    return -res.fun


@settings(max_examples=60, deadline=None)
@given(orders_strategy, st.floats(0, 1), st.sampled_from(["marginal", "clearing"]))
def test_auction_invariants(raw, k, bounds):
    orders = [Order(f"o{n}", side, kwh, price / 100, seq=n) for n, (side, kwh, price) in enumerate(raw)]
    tariff = 0.30
    result = clear_double_auction(orders, tariff, PricingRule(k, bounds))
    by_id = {o.id: o for o in orders}
    for trade in result.trades:
        assert by_id[trade.seller].price <= result.mcp + 1e-12
        assert result.mcp <= min(by_id[trade.buyer].price, tariff) + 1e-12
    filled = {}
    for trade in result.trades:
        for oid in (trade.seller, trade.buyer):
            filled[oid] = filled.get(oid, 0) + trade.kwh
    assert all(filled[oid] <= by_id[oid].kwh + 1e-9 for oid in filled)
    assert result.welfare == pytest.approx(_max_gains(orders, tariff), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(orders_strategy)
def test_continuous_invariants(raw):
    orders = [Order(f"o{n}", side, kwh, price / 100, seq=n) for n, (side, kwh, price) in enumerate(raw)]
    result = match_continuous(orders, 0.30)
    by_id = {o.id: o for o in orders}
    for trade in result.trades:
        assert by_id[trade.seller].price <= trade.price <= min(by_id[trade.buyer].price, 0.30)
    resting = dict(result.resting)
    best_bid = max((min(by_id[i].price, 0.3) for i in resting if by_id[i].side is BUY), default=-1)
    best_ask = min((by_id[i].price for i in resting if by_id[i].side is SELL), default=99)
    assert best_bid < best_ask  # the book never stays crossed
