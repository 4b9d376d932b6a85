"""Each criterion's normalisation, hand-computed; the plan's shape; input validation."""

from __future__ import annotations

import math

import pytest

from optimizer.selection import (
    BuyRequest, Candidate, GaSettings, InvalidInputError, SelectionConfig, SelectionConfigError,
    Weights, select_offers,
)
from optimizer.selection.criteria import duration_score, participation_score, trade_surplus_score

CONFIG = SelectionConfig(duration_ref_s=120.0, participation_ref=10.0)


def offer(tag: int, available_wh: int = 1000, **fields) -> Candidate:
    values = dict(seller=bytes([tag]) * 32, offer_id=bytes([tag]), available_wh=available_wh,
                  price_per_kwh=0.2, efficiency=0.9, distance_m=100.0, predicted_quality=0.9,
                  predicted_duration_s=60.0, participation=5)
    values.update(fields)
    return Candidate(**values)


def test_trade_surplus_score():
    assert trade_surplus_score(1000, 1000) == 1.0
    assert trade_surplus_score(1500, 1000) == 0.5
    assert trade_surplus_score(1200, 1000) == pytest.approx(0.8)
    assert trade_surplus_score(2000, 1000) == 0.0
    assert trade_surplus_score(5000, 1000) == 0.0


def test_duration_and_participation_scores():
    assert duration_score(0.0, 120.0) == 1.0
    assert duration_score(120.0, 120.0) == 0.5
    assert duration_score(360.0, 120.0) == 0.25
    assert participation_score(0, 10.0) == 1.0
    assert participation_score(10, 10.0) == 0.5
    assert participation_score(30, 10.0) == 0.25


def test_two_seller_plan_breakdown_by_hand():
    # A: σ = (0.9, 120/180, 0.8, 10/10) → w = 3.3667;  B: σ = (0.95, 0.5, 1.0, 0.5) → w = 2.95.
    a = offer(1, 600, efficiency=0.9, predicted_duration_s=60.0, predicted_quality=0.8, participation=0)
    b = offer(2, 600, efficiency=0.95, predicted_duration_s=120.0, predicted_quality=1.0, participation=10)
    plan = select_offers(BuyRequest(1000), [b, a], Weights(surplus_availability=2.0),
                         strategy="exact", config=CONFIG)
    assert plan.status == "optimal"
    assert [(i.candidate.offer_id, i.energy_wh) for i in plan.items] == [(b"\x01", 600), (b"\x02", 400)]
    expected = {
        "surplus_availability": 1.0,
        "trade_surplus": 0.8,                                   # s = 200 Wh of 1000
        "transfer_efficiency": (600 * 0.9 + 400 * 0.95) / 1000,  # 0.92
        "transaction_duration": (600 * 2 / 3 + 400 * 0.5) / 1000,  # 0.6
        "transaction_quality": (600 * 0.8 + 400 * 1.0) / 1000,  # 0.88
        "market_participation": (600 * 1.0 + 400 * 0.5) / 1000,  # 0.8
    }
    assert dict(plan.breakdown) == pytest.approx(expected)
    assert plan.score == pytest.approx(2.0 * (0.8 + 0.92 + 0.6 + 0.88 + 0.8))


def test_weights_decide_between_single_sellers():
    efficient = offer(1, 1000, efficiency=0.99, predicted_quality=0.6)
    reliable = offer(2, 1000, efficiency=0.70, predicted_quality=0.99)
    request = BuyRequest(1000)
    by_efficiency = Weights(transfer_efficiency=5.0)
    by_quality = Weights(transaction_quality=5.0)
    for strategy in ("ga", "exact", "greedy"):
        assert select_offers(request, [efficient, reliable], by_efficiency, strategy=strategy).sellers \
            == (efficient.seller,)
        assert select_offers(request, [efficient, reliable], by_quality, strategy=strategy).sellers \
            == (reliable.seller,)


def test_one_seller_preferred_unless_slack_allows_more():
    big_poor = offer(1, 1000, efficiency=0.5, predicted_quality=0.5, participation=500)
    good = [offer(2, 500, efficiency=1.0, predicted_quality=1.0, participation=0),
            offer(3, 500, efficiency=1.0, predicted_quality=1.0, participation=0)]
    request = BuyRequest(1000)
    strict = select_offers(request, [big_poor, *good], strategy="exact")
    assert strict.sellers == (big_poor.seller,)
    loose = select_offers(request, [big_poor, *good], strategy="exact",
                          config=SelectionConfig(seller_slack=1))
    assert set(loose.sellers) == {good[0].seller, good[1].seller}


def test_price_cap_excludes_offers():
    cheap, dear = offer(1, 800, price_per_kwh=0.1), offer(2, 5000, price_per_kwh=0.5)
    plan = select_offers(BuyRequest(1000, max_price_per_kwh=0.3), [cheap, dear], strategy="ga")
    assert plan.status == "infeasible"
    assert plan.sellers == (cheap.seller,)
    assert plan.shortfall_wh == 200
    assert plan.score == 0.0
    assert plan.breakdown["surplus_availability"] == 0.0
    assert dear not in plan.fallbacks


def test_no_candidates_is_an_infeasible_plan():
    plan = select_offers(BuyRequest(500), [], strategy="exact")
    assert (plan.status, plan.items, plan.shortfall_wh, plan.score) == ("infeasible", (), 500, 0.0)


def test_fallbacks_are_the_other_offers_best_first():
    offers = [offer(i, 2000, efficiency=0.5 + i / 20) for i in range(1, 6)]
    plan = select_offers(BuyRequest(1000), offers, strategy="exact")
    assert plan.sellers == (offers[-1].seller,)
    assert plan.fallbacks == tuple(reversed(offers[:-1]))


@pytest.mark.parametrize("field, value", [
    ("available_wh", -1), ("efficiency", 1.5), ("predicted_quality", -0.1),
    ("predicted_duration_s", math.nan), ("participation", 2.5), ("price_per_kwh", math.inf),
    ("seller", b"short"),
])
def test_bad_candidate_field_is_named(field, value):
    with pytest.raises(InvalidInputError, match=field):
        offer(1, **{field: value})


def test_bad_request_and_config_fields_are_named():
    with pytest.raises(InvalidInputError, match="deficit_wh"):
        BuyRequest(0)
    with pytest.raises(SelectionConfigError, match="transfer_efficiency"):
        Weights(transfer_efficiency=-1.0)
    with pytest.raises(SelectionConfigError, match="soft weight"):
        Weights(0.0 + 1, 0, 0, 0, 0, 0)
    with pytest.raises(SelectionConfigError, match="strategy"):
        SelectionConfig(strategy="anneal")
    with pytest.raises(SelectionConfigError, match="population"):
        GaSettings(population=1)
    with pytest.raises(SelectionConfigError, match="duration_ref_s"):
        SelectionConfig(duration_ref_s=0)
