"""Seeded random selection instances for tests, benchmarks and weight-tuning experiments.

``household``: the deficit needs 1 to 4 sellers (k_min drawn uniformly).  ``community``: a
feeder-level buyer (a battery, a shared load) whose deficit needs tens of sellers
(k_min between n/5 and n/2, at most 40).  Offers are 300..6000 Wh, with a tenth of them priced
above the buyer's cap; efficiency, predicted quality and duration and participation are drawn
from plausible ranges.  The deficit is drawn between the sum of the k_min − 1 and the k_min
largest eligible offers, so k_min is exact.
"""

from __future__ import annotations

import random

from optimizer.selection.errors import InvalidInputError
from optimizer.selection.inputs import BuyRequest, Candidate

SCALES = ("household", "community")
MAX_PRICE_PER_KWH = 0.30
MAX_COMMUNITY_SELLERS = 40


def _candidate(rng: random.Random, index: int) -> Candidate:
    pricey = rng.random() < 0.1
    return Candidate(
        seller=rng.randbytes(32),
        offer_id=index.to_bytes(4, "big") + rng.randbytes(4),
        available_wh=int(round(rng.uniform(300, 6000))),
        price_per_kwh=rng.uniform(0.31, 0.40) if pricey else rng.uniform(0.08, MAX_PRICE_PER_KWH),
        efficiency=rng.uniform(0.85, 0.99),
        distance_m=rng.uniform(10.0, 2000.0),
        predicted_quality=min(1.0, rng.betavariate(8.0, 1.5)),
        predicted_duration_s=rng.lognormvariate(4.5, 0.6),
        participation=int(rng.expovariate(1 / 25)),
    )


def _sellers_needed(rng: random.Random, n: int, scale: str) -> int:
    if scale == "household":
        return rng.randint(1, min(4, n))
    low = max(2, n // 5)
    return rng.randint(low, max(low, min(n // 2, MAX_COMMUNITY_SELLERS)))


def random_instance(rng: random.Random, n: int, scale: str = "household") -> tuple[BuyRequest, list[Candidate]]:
    """A buy request and ``n`` candidate offers whose eligible part needs k_min sellers."""
    if scale not in SCALES:
        raise InvalidInputError(f"scale must be one of {SCALES}, got {scale!r}")
    if n < 1:
        raise InvalidInputError(f"n must be >= 1, got {n}")
    candidates = [_candidate(rng, i) for i in range(n)]
    sizes = sorted((c.available_wh for c in candidates if c.price_per_kwh <= MAX_PRICE_PER_KWH),
                   reverse=True) or [1]
    k = min(_sellers_needed(rng, len(sizes), scale), len(sizes))
    low, high = sum(sizes[: k - 1]), sum(sizes[:k])
    deficit = rng.randint(low + 1, high)
    return BuyRequest(deficit_wh=deficit, max_price_per_kwh=MAX_PRICE_PER_KWH), candidates
