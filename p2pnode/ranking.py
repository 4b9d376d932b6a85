"""From offers found in the DHT to a ranked plan: candidates, history, predictions, selection.

Pure apart from the predictor call.  The buyer turns each seller's best live offer into one
:class:`~optimizer.selection.Candidate`: price and energy from the record, transfer efficiency
and distance from the location hints, participation, past quality and duration from the seller's
co-signed settlements (:class:`p2pnode.reputation.Reputation`: the buyer's own and the seller's
verified track record), and the predicted quality and duration of a trade with
it from :class:`models.Predictor` (one call for all candidates).  :func:`rank` then runs the
configured strategy (the GA by default) over the six criteria.

Location hints are ``"zone/x_m/y_m"`` (e.g. ``"3/120/40"``: zone 3 of the feeder, 120 m east and
40 m north of its transformer).  Without coordinates on both sides the distance is unknown and
:data:`UNKNOWN_DISTANCE_M` is assumed.  Transfer efficiency (X3): where the buyer knows the
feeder's topology and both buses (:class:`p2pnode.transfer.FeederPaths` in the context), the
path losses of the trade; else the record's own ``efficiency`` hint; else the documented
estimate, falling with distance, ``1 - LOSS_PER_KM * km`` (a low-voltage cable loses a few
percent per km at household currents).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections.abc import Callable, Sequence

import numpy as np

from ledger import Sealed
from models.features import FEATURES, ZONES
from optimizer.selection import BuyRequest, Candidate, Plan, SelectionConfig, select_offers
from p2pnode.offers import OfferRecord
from p2pnode.reputation import QUALITY_FLOOR, Reputation

__all__ = ["Location", "MAX_NEWCOMER_CANDIDATES", "MarketContext", "SPREAD_COVER",
           "bounded_newcomers", "candidates_from_offers", "expected_wh", "rank",
           "reliable_records", "spread_records"]

UNKNOWN_DISTANCE_M = 250.0
LOSS_PER_KM = 0.04
MIN_EFFICIENCY = 0.5
SPREAD_COVER = 2.0   # an informed buyer's first round ranks sellers drawn until their expected
                     # energy covers this many times its need (:func:`spread_records`)
MAX_NEWCOMER_CANDIDATES = 4   # sellers this buyer never traded with, per ranking (SPEC: "new
                              # keys start without a record and get a bounded share of demand")


@dataclasses.dataclass(frozen=True)
class Location:
    zone: int = 0
    x_m: float | None = None
    y_m: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> Location:
        """``"zone/x/y"`` or ``"zone"``; anything unparsable is an unknown location."""
        parts = (text or "").split("/")
        try:
            zone = int(parts[0]) % ZONES if parts[0] else 0
            if len(parts) == 3:
                x, y = float(parts[1]), float(parts[2])
                if math.isfinite(x) and math.isfinite(y):
                    return cls(zone, x, y)
        except ValueError:
            return cls()
        return cls(zone)

    def distance_m(self, other: Location) -> float:
        if None in (self.x_m, self.y_m, other.x_m, other.y_m):
            return UNKNOWN_DISTANCE_M
        return math.hypot(self.x_m - other.x_m, self.y_m - other.y_m)

    def __str__(self) -> str:
        if self.x_m is None:
            return str(self.zone)
        return f"{self.zone}/{self.x_m:g}/{self.y_m:g}"


@dataclasses.dataclass(frozen=True)
class MarketContext:
    """The buyer's view when it ranks: its place, the weather, and the market it sees."""

    location: Location = Location()
    irradiance_w_m2: float = 0.0
    temperature_c: float = 20.0
    # (seller, energy_wh) -> efficiency from the feeder's topology, None where unknown
    # (:class:`p2pnode.transfer.FeederPaths`)
    transfer: Callable[[bytes, int], float | None] | None = None


def best_offer_per_seller(offers: Sequence[Sealed[OfferRecord]], buyer: bytes,
                          max_price_micro_per_kwh: int) -> list[OfferRecord]:
    """Each seller's cheapest live, affordable offer (one candidate per seller), not our own;
    cheapest first, sellers of one price in an order of this buyer's own (a hash of the buyer,
    the seller and the interval): with the same prices everywhere (the SDR pool price) a global
    order would send every buyer to the same few sellers first (see :func:`bounded_newcomers`)."""
    best: dict[bytes, OfferRecord] = {}
    for sealed in offers:
        record = sealed.message
        if record.seller == buyer or record.withdrawn \
                or record.price_micro_per_kwh > max_price_micro_per_kwh:
            continue
        held = best.get(record.seller)
        if held is None or (record.price_micro_per_kwh, -record.energy_wh) < (
                held.price_micro_per_kwh, -held.energy_wh):
            best[record.seller] = record
    return sorted(best.values(), key=lambda r: (r.price_micro_per_kwh, _tie(buyer, r)))


def _tie(buyer: bytes, record: OfferRecord) -> bytes:
    return hashlib.blake2b(buyer + record.seller + record.interval_start_s.to_bytes(8, "big"),
                           digest_size=8).digest()


def candidates_from_offers(records: Sequence[OfferRecord], deficit_wh: int,
                           history: Reputation, context: MarketContext,
                           predictor, *, capped: bool = True,
                           expect: bool = False) -> list[Candidate]:
    """One :class:`Candidate` per record, with predicted quality and duration; ``capped``: a
    seller offers at most its :meth:`~p2pnode.reputation.Reputation.share_cap` of the deficit;
    ``expect`` (a buyer that weighs quality): at most what its record says it delivers of its
    offer (:func:`expected_wh`), so that the fewest-sellers rule (X1) counts the energy expected
    to arrive, not the energy promised.

    Sellers the buyer knows nothing verified of (:meth:`~p2pnode.reputation.Reputation.known`)
    are bounded to the first :data:`MAX_NEWCOMER_CANDIDATES` of ``records`` (cheapest first, as
    :func:`best_offer_per_seller` orders them): keys are free, and a discovery that returned
    hundreds of offers signed by fresh keys must not push the sellers the buyer knows out of
    the plan.  The buyer's later rounds, without the newcomers that failed, see the next ones.
    """
    records = bounded_newcomers(records, history)
    if not records:
        return []
    supply = sum(r.energy_wh for r in records)
    ratio = supply / max(deficit_wh, 1)
    rows, geometry = [], []
    for record in records:
        where = Location.parse(record.location)
        distance = context.location.distance_m(where)
        efficiency = context.transfer(record.seller, min(record.energy_wh, deficit_wh)) \
            if context.transfer is not None else None
        if efficiency is None:
            efficiency = record.efficiency if record.efficiency is not None else \
                max(MIN_EFFICIENCY, 1.0 - LOSS_PER_KM * distance / 1000)
        geometry.append((distance, efficiency))
        rows.append((min(record.energy_wh, deficit_wh), record.price_micro_per_kwh / 1e6,
                     context.irradiance_w_m2, context.temperature_c, efficiency, distance,
                     where.zone, history.quality(record.seller),
                     history.participation(record.seller),
                     history.mean_duration_s(record.seller), ratio))
    quality, duration = predictor.predict(np.array(rows, dtype=np.float64).reshape(-1, len(FEATURES)))
    def available(r: OfferRecord) -> int:
        energy = _capped_wh(r, history, deficit_wh) if capped else r.energy_wh
        return min(energy, expected_wh(r, history)) if expect else energy

    return [Candidate(seller=r.seller, offer_id=r.offer_id, available_wh=available(r),
                      price_per_kwh=r.price_micro_per_kwh / 1e6, efficiency=float(eff),
                      distance_m=float(dist), predicted_quality=float(q),
                      predicted_duration_s=float(d),
                      participation=history.participation(r.seller))
            for r, (dist, eff), q, d in zip(records, geometry, quality, duration)]


def expected_wh(record: OfferRecord, history: Reputation) -> int:
    """What is still worth buying of ``record``: the share of the whole offer its seller's
    verified record says arrives at its price
    (:meth:`~p2pnode.reputation.Reputation.expected_share`) less
    what buyers already hold of it, at most what is left.  Of the whole offer, not of what is
    left: a seller expected to deliver 60 % of what it sells is sold 60 % of its offer by all
    its buyers together, not 60 % of the rest by each (which sells all of it in the end).  0 when
    buyers hold that share already; a record without ``offered_wh`` counts as unsold."""
    offered = record.offered_wh if record.offered_wh is not None else record.energy_wh
    worth = math.floor(offered * history.expected_share(record.seller,
                                                        record.price_micro_per_kwh))
    return max(0, min(record.energy_wh, worth - (offered - record.energy_wh)))


def reliable_records(records: Sequence[OfferRecord], history: Reputation,
                     floor: float = QUALITY_FLOOR) -> list[OfferRecord]:
    """``records`` without the sellers whose expected delivered share
    (:meth:`~p2pnode.reputation.Reputation.expected_share`) is below ``floor`` times the median
    candidate's, unless that would leave none (then all of them: the grid is the only other
    choice).  Relative to the market: on a cloudy day every seller's forecast misses and
    honest sellers fall together, an overseller stays far below them."""
    if not records:
        return []
    shares = [history.expected_share(r.seller, r.price_micro_per_kwh) for r in records]
    bar = floor * float(np.median(shares))
    kept = [r for r, share in zip(records, shares) if share >= bar]
    return kept or list(records)


def spread_records(records: Sequence[OfferRecord], history: Reputation, need_wh: int,
                   seed: bytes, cover: float = SPREAD_COVER) -> list[OfferRecord]:
    """Sellers of ``records`` drawn at random without replacement, each with a probability in
    proportion to the energy its record says arrives (:func:`expected_wh`), at most the median
    candidate's, until the drawn ones are expected to deliver ``cover`` times ``need_wh``; in
    ``records``' order.

    Every buyer sees the same offers and much the same records, so every buyer's plan picks
    the same sellers: these sell out on their forecast while other offers go unsold, and a
    seller sold out misses by its whole forecast error.  Drawn this way, the feeder's demand
    falls on the offers in proportion to their expected energy, each seller selling about
    demand / supply of its offer, so a forecast that overshoots by less than that margin
    costs no shortfall.  An offer above the median candidate's draws no more buyers than the
    median: its size is the seller's word, not evidence that more arrives (an overseller's
    offer is the largest), and a big honest seller then sells a smaller share of its offer,
    which costs nothing.  ``seed`` (the buyer, the interval and the discovery) makes the draw
    the buyer's own and repeatable (Efraimidis-Spirakis keys, log u / w)."""
    if not records:
        return []
    rng = random.Random(seed)
    expected = [expected_wh(r, history) for r in records]
    typical = max(1.0, float(np.median(expected)))
    weights = [max(min(e, typical), 1e-9) for e in expected]   # none left: drawn last
    keys = [math.log(1.0 - rng.random()) / w for w in weights]
    drawn, covered = set(), 0
    for index in sorted(range(len(records)), key=lambda i: -keys[i]):
        if covered >= cover * need_wh:
            break
        drawn.add(index)
        covered += expected[index]
    return [r for i, r in enumerate(records) if i in drawn]


def _capped_wh(record: OfferRecord, history: Reputation, deficit_wh: int) -> int:
    """The record's energy, at most the seller's reputation share of the deficit."""
    share = history.share_cap(record.seller)
    if share >= 1.0:
        return record.energy_wh
    return max(1, min(record.energy_wh, math.ceil(share * deficit_wh)))


def bounded_newcomers(records: Sequence[OfferRecord], history: Reputation,
                      limit: int = MAX_NEWCOMER_CANDIDATES) -> list[OfferRecord]:
    """``records`` with at most ``limit`` of sellers not :meth:`~Reputation.known`, in order."""
    kept, newcomers = [], 0
    for record in records:
        if not history.known(record.seller):
            if newcomers >= limit:
                continue
            newcomers += 1
        kept.append(record)
    return kept


def rank(deficit_wh: int, max_price_micro_per_kwh: int, candidates: Sequence[Candidate],
         config: SelectionConfig, seed: int) -> Plan:
    """The plan for buying ``deficit_wh``: items in request order, then fallbacks."""
    request = BuyRequest(deficit_wh, max_price_micro_per_kwh / 1e6)
    return select_offers(request, candidates, seed=seed, config=config)
