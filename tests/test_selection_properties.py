"""Hypothesis: on any instance, no strategy ever breaks the hard constraint or the seller limit."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.selection import BuyRequest, Candidate, SelectionConfig, select_offers
from optimizer.selection.criteria import eligible, fewest_sellers

unit = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def candidates(draw, index: int) -> Candidate:
    return Candidate(
        seller=index.to_bytes(32, "big"), offer_id=index.to_bytes(4, "big"),
        available_wh=draw(st.integers(0, 5000)), price_per_kwh=draw(st.floats(0.0, 0.5)),
        efficiency=draw(unit), distance_m=draw(st.floats(0.0, 5000.0)),
        predicted_quality=draw(unit), predicted_duration_s=draw(st.floats(0.0, 3600.0)),
        participation=draw(st.integers(0, 1000)),
    )


@st.composite
def instances(draw):
    count = draw(st.integers(0, 14))
    offers = [draw(candidates(i)) for i in range(count)]
    request = BuyRequest(draw(st.integers(1, 20000)), draw(st.floats(0.05, 0.6)))
    return request, offers, draw(st.integers(0, 2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.sampled_from(["ga", "exact", "greedy"]), st.integers(0, 2**32))
def test_plans_respect_the_hard_constraint(instance, strategy, seed):
    request, offers, slack = instance
    plan = select_offers(request, offers, strategy=strategy, seed=seed,
                         config=SelectionConfig(seller_slack=slack))
    usable = eligible(request, offers)
    offered = sum(c.available_wh for c in usable)
    assert len(set(plan.sellers)) == len(plan.items)
    for item in plan.items:
        assert item.candidate in usable
        assert 0 < item.energy_wh <= item.candidate.available_wh
    if offered < request.deficit_wh:
        assert plan.status == "infeasible"
        assert plan.score == 0.0
        assert plan.energy_wh == offered
        assert plan.shortfall_wh == request.deficit_wh - offered
        return
    k_min = fewest_sellers(np.array([c.available_wh for c in usable]), request.deficit_wh)
    assert plan.status in ("optimal", "feasible")
    assert plan.energy_wh == request.deficit_wh
    assert plan.shortfall_wh == 0
    assert plan.breakdown["surplus_availability"] == 1.0
    assert k_min <= len(plan.items) <= k_min + slack
    assert all(0.0 <= v <= 1.0 for v in plan.breakdown.values())
    assert not set(plan.fallbacks) & {item.candidate for item in plan.items}
