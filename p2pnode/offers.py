"""Offer records: what a seller publishes in the DHT, the rules a record must pass, and its keys.

This module is a pure core: no sockets, no event loop, no wall clock (``now_s`` is passed in).

The record
    :class:`OfferRecord` is signed by its seller (``seller`` is the signer's public key).  The
    pair (seller, offer_id) names an offer; ``seq`` orders its versions, and a newer ``seq``
    replaces every older one.  A withdrawn or sold-out offer is republished with a newer ``seq``
    and ``energy_wh == 0`` (a *tombstone*), so stale copies elsewhere in the DHT lose against it.
    ``expires_at_s`` is absolute unix time: a record dies then, however often it is stored.
    The sealed record (envelope with signature) is at most :data:`MAX_RECORD_BYTES`.

Demand
    A buyer trading ahead of delivery publishes what it forecasts to lack as a :class:`BidRecord`
    (the same fields, its own type id, signed by the buyer, which the field ``seller`` names as
    for every record: the signer), stored like an offer under the key of its price band (its
    maximum price).  One discovery of an interval's bands therefore returns its offers *and*
    bids -- :class:`OfferMerge` keeps them apart -- and a seller prices the interval from the
    feeder's supply/demand ratio with the same lookup a buyer makes
    (:func:`p2pnode.pricing.dynamic_price`).  Bids live in the DHT under the same rules as offers
    (signature, expiry, admission, per-signer caps); a bid is never taken for an offer.

Validation
    :func:`parse_record` checks what depends only on the bytes (size, strict decoding, field
    bounds, signature); :func:`check_live` checks what depends on the time (expired, expiry too
    far ahead); :func:`check_record` does both.  A failed check returns a :class:`Drop` reason,
    never raises, so callers count drops by reason.

Keys
    A record is stored under ``offer_key(feeder, interval_start_s, price_band(price))``: the
    first 20 bytes (Kademlia's 160-bit id space) of SHA-256 over a domain tag and the canonical
    msgpack of ``[feeder, interval_start_s, band]``.  Price bands are
    :data:`PRICE_BAND_MICRO_PER_KWH` wide (band ``b`` holds prices ``b*W <= p < (b+1)*W``).
    A buyer asks :func:`query_keys` for the keys to search: one per band from its minimum to its
    maximum price, at most :data:`MAX_QUERY_BANDS` (the cheapest ones) -- and then filters the
    records by exact price itself.  Moving an offer to another band means a new key, so an
    offer id keeps its band for life: to change band, withdraw the offer and publish a new id.

    The band width trades lookups against load per key.  Every buyer looks up every band
    between the feed-in tariff (no rational seller asks less) and its maximum price each
    interval, so the number of bands is the number of DHT lookups per discovery; a key holds at
    most ``MAX_RECORDS_PER_KEY`` offers.  With 0.25 per kWh, the tariffs of a household feeder
    (0.08 .. 0.40) span two bands: two lookups per discovery instead of seven with 0.05 (empty
    lookups dominated the CPU profile of a simulated swarm day), at the price of at most
    ``MAX_RECORDS_PER_KEY`` sellers per feeder, interval and band.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import hashlib
from typing import Annotated

import msgpack

from ledger import (
    Bytes, DecodeError, PUBLIC_KEY_BYTES, Range, Sealed, SignedMessage, Text, open_envelope,
)
from p2pnode.errors import NodeError
from p2pnode.transport.address import endpoint_problem

__all__ = [
    "BidRecord", "Drop", "MAX_RECORD_BYTES", "MAX_OFFER_TTL_S", "MAX_QUERY_BANDS", "OFFER_ID_BYTES",
    "OfferMerge", "OfferRecord", "OfferRejected", "PRICE_BAND_MICRO_PER_KWH", "RecordCache",
    "check_live", "check_record", "offer_key", "parse_record", "price_band", "query_keys",
    "record_keys", "entry_id",
]

MAX_RECORD_BYTES = 1000            # sealed record (envelope + signature) on the wire
ENVELOPE_OVERHEAD_BYTES = 96       # see ledger.sealed.ENVELOPE_OVERHEAD
OFFER_ID_BYTES = 16
MAX_SEQ = 2**63 - 1
MAX_ENERGY_WH = 10**9              # 1 GWh: far above any household offer
MAX_PRICE_MICRO_PER_KWH = 100_000_000   # 100 currency units per kWh
MAX_TIME_S = 2**40                 # unix seconds, year ~36800
MAX_FEEDER_CHARS = 32
MAX_ENDPOINT_CHARS = 128          # a libp2p multiaddr with its /p2p/<peer id> is ~90
MAX_LOCATION_CHARS = 32
MAX_OFFER_TTL_S = 2 * 86400        # an expiry further ahead than this is refused
PRICE_BAND_MICRO_PER_KWH = 250_000  # 0.25 currency units per kWh per band (see "Keys")
MAX_QUERY_BANDS = 16
KEY_BYTES = 20
KEY_DOMAIN = b"p2p-energy/offer-key/v1"
MAX_CACHED_RECORDS = 4096

U63 = Annotated[int, Range(0, MAX_SEQ)]
Time = Annotated[int, Range(0, MAX_TIME_S)]


class Drop(enum.StrEnum):
    """Why a record was refused; the values are the counter names."""

    MALFORMED = "malformed"            # not a strictly encoded sealed OfferRecord
    OVERSIZE = "oversize"              # sealed bytes over MAX_RECORD_BYTES
    BAD_SIGNATURE = "bad_signature"    # signature is not the seller's
    EXPIRED = "expired"                # expires_at_s <= now
    EXPIRY_TOO_FAR = "expiry_too_far"  # expires_at_s > now + MAX_OFFER_TTL_S
    WRONG_KEY = "wrong_key"            # stored or returned under a key it does not belong to
    STALE_SEQ = "stale_seq"            # a newer (or equal) seq of this offer is already held
    SEQ_CONFLICT = "seq_conflict"      # same seq, different content (seller equivocates)
    KEY_FULL = "key_full"              # the key already holds MAX_RECORDS_PER_KEY offers
    SELLER_FULL = "seller_full"        # the seller already has MAX_RECORDS_PER_SELLER here
    STORAGE_FULL = "storage_full"      # the node already holds MAX_KEYS keys
    SELLER_KEY_FULL = "seller_key_full"  # the seller already has a few offers under this key
    WRONG_FEEDER = "wrong_feeder"      # a record of a feeder this node does not hold offers of
    OUT_OF_HORIZON = "out_of_horizon"  # its interval is too far ahead or behind to be traded
    NEWCOMER_QUOTA = "newcomer_quota"  # sellers without standing have their share of the key
    SOURCE_KEY_FULL = "source_key_full"  # its network source stored its share of this key


class OfferRejected(NodeError, ValueError):
    """Our own code tried to publish a record that the DHT would refuse; ``reason`` says why."""

    def __init__(self, reason: Drop | str, detail: str = ""):
        self.reason = reason
        super().__init__(f"offer rejected: {reason}{': ' + detail if detail else ''}")


@dataclasses.dataclass(frozen=True)
class OfferRecord(SignedMessage):
    """A seller's signed offer of ``energy_wh`` for one trading interval.

    ``endpoint`` is the seller's peer endpoint for trade requests: ``host:port`` (HTTP) or a
    libp2p multiaddr ending in the seller's own ``/p2p/<peer id>`` (:mod:`p2pnode.transport`).  Hints for the
    optimizer are optional: ``efficiency`` (0..1, line efficiency the seller expects) and
    ``location`` (a short geohash or feeder bus name).  ``offered_wh`` is what the offer put up
    in all (``energy_wh`` still available plus what buyers hold), so a buyer can tell how much
    of it is sold (:func:`p2pnode.ranking.expected_wh`); None in a bid.
    """

    TYPE = 50
    SIGNER = "seller"
    MAX_BYTES = MAX_RECORD_BYTES - ENVELOPE_OVERHEAD_BYTES
    seller: Annotated[bytes, Bytes(PUBLIC_KEY_BYTES)]
    offer_id: Annotated[bytes, Bytes(OFFER_ID_BYTES)]
    seq: U63
    energy_wh: Annotated[int, Range(0, MAX_ENERGY_WH)]
    price_micro_per_kwh: Annotated[int, Range(0, MAX_PRICE_MICRO_PER_KWH)]
    feeder: Annotated[str, Text(MAX_FEEDER_CHARS)]
    interval_start_s: Time
    expires_at_s: Time
    endpoint: Annotated[str, Text(MAX_ENDPOINT_CHARS)]
    efficiency: Annotated[float, Range(0.0, 1.0)] | None = None
    location: Annotated[str, Text(MAX_LOCATION_CHARS)] | None = None
    offered_wh: Annotated[int, Range(0, MAX_ENERGY_WH)] | None = None

    def validate(self) -> str | None:
        if not self.feeder or not self.feeder.isprintable():
            return "feeder must be a non-empty printable name"
        if self.offered_wh is not None and self.offered_wh < self.energy_wh:
            return f"offered_wh {self.offered_wh} is below energy_wh {self.energy_wh}"
        return endpoint_problem(self.endpoint, self.seller)

    @property
    def entry_id(self) -> bytes:
        """(seller, offer_id) as one byte string: the identity of the offer across versions."""
        return self.seller + self.offer_id

    @property
    def withdrawn(self) -> bool:
        return self.energy_wh == 0



@dataclasses.dataclass(frozen=True)
class BidRecord(OfferRecord):
    """A buyer's signed forecast need of ``energy_wh`` for one interval at up to
    ``price_micro_per_kwh`` (see "Demand" in the module doc).  The fields are an offer's;
    ``seller`` is the signer (the buyer), ``endpoint`` the buyer's peer endpoint."""

    TYPE = 51


def entry_id(record: OfferRecord) -> bytes:
    return record.entry_id


# -- validation ------------------------------------------------------------------------------

def parse_record(raw: bytes) -> Sealed[OfferRecord] | Drop:
    """Check everything about a sealed record that does not depend on the time."""
    if type(raw) is not bytes:
        return Drop.MALFORMED
    if len(raw) > MAX_RECORD_BYTES:
        return Drop.OVERSIZE
    for cls in (OfferRecord, BidRecord):
        try:
            sealed, signature_ok = open_envelope(raw, cls)
        except DecodeError:
            continue
        return sealed if signature_ok else Drop.BAD_SIGNATURE
    return Drop.MALFORMED


def check_live(record: OfferRecord, now_s: float) -> Drop | None:
    """Check what depends on the time: the record has not expired and expires not too late."""
    if record.expires_at_s <= now_s:
        return Drop.EXPIRED
    if record.expires_at_s > now_s + MAX_OFFER_TTL_S:
        return Drop.EXPIRY_TOO_FAR
    return None


def check_record(raw: bytes, now_s: float) -> Sealed[OfferRecord] | Drop:
    """Every rule a stored or received record must pass: size, encoding, signature, expiry."""
    sealed = parse_record(raw)
    if isinstance(sealed, Drop):
        return sealed
    return check_live(sealed.message, now_s) or sealed


class RecordCache:
    """Bounded memo of :func:`parse_record` (signature checks dominate the cost of a lookup)."""

    def __init__(self, max_entries: int = MAX_CACHED_RECORDS):
        self._max = max_entries
        self._parsed: collections.OrderedDict[bytes, Sealed[OfferRecord] | Drop] = (
            collections.OrderedDict())

    def parse(self, raw: bytes) -> Sealed[OfferRecord] | Drop:
        if type(raw) is not bytes:
            return Drop.MALFORMED
        hit = self._parsed.get(raw)
        if hit is not None:
            self._parsed.move_to_end(raw)
            return hit
        result = parse_record(raw)
        if result is not Drop.OVERSIZE:  # never keep big junk in memory
            self._parsed[raw] = result
            if len(self._parsed) > self._max:
                self._parsed.popitem(last=False)
        return result

    def check(self, raw: bytes, now_s: float) -> Sealed[OfferRecord] | Drop:
        sealed = self.parse(raw)
        if isinstance(sealed, Drop):
            return sealed
        return check_live(sealed.message, now_s) or sealed


# -- keys ------------------------------------------------------------------------------------

def price_band(price_micro_per_kwh: int) -> int:
    if price_micro_per_kwh < 0:
        raise ValueError("price_micro_per_kwh must be >= 0")
    return price_micro_per_kwh // PRICE_BAND_MICRO_PER_KWH


def offer_key(feeder: str, interval_start_s: int, band: int) -> bytes:
    """The 20-byte DHT key of the offers of one feeder, interval and price band."""
    material = msgpack.packb([feeder, int(interval_start_s), int(band)], use_bin_type=True)
    return hashlib.sha256(KEY_DOMAIN + material).digest()[:KEY_BYTES]


def record_keys(record: OfferRecord) -> tuple[bytes, ...]:
    """The keys a record is stored under (one: its feeder, interval and price band)."""
    band = price_band(record.price_micro_per_kwh)
    return (offer_key(record.feeder, record.interval_start_s, band),)


def query_keys(feeder: str, interval_start_s: int, max_price_micro_per_kwh: int,
               min_price_micro_per_kwh: int = 0) -> tuple[bytes, ...]:
    """Keys a buyer searches for offers priced in [min, max]: the cheapest MAX_QUERY_BANDS bands."""
    if not 0 <= min_price_micro_per_kwh <= max_price_micro_per_kwh:
        raise ValueError("need 0 <= min_price_micro_per_kwh <= max_price_micro_per_kwh")
    first = price_band(min_price_micro_per_kwh)
    last = min(price_band(max_price_micro_per_kwh), first + MAX_QUERY_BANDS - 1)
    return tuple(offer_key(feeder, interval_start_s, b) for b in range(first, last + 1))


# -- merging ---------------------------------------------------------------------------------

class OfferMerge:
    """Merges record sets from many nodes and keys: newest seq of each offer, drops counted.

    ``add`` refuses invalid or expired records and records returned under a key they do not
    belong to.  Two different records with the same (seller, offer_id, seq) are an
    equivocation: the first one seen is kept and the other counted as ``seq_conflict``.
    """

    def __init__(self, now_s: float, cache: RecordCache | None = None):
        self.now_s = now_s
        self.cache = cache or RecordCache()
        self.dropped: collections.Counter[str] = collections.Counter()
        self._best: dict[bytes, Sealed[OfferRecord]] = {}
        self._seen: set[tuple[bytes, bytes]] = set()  # (key, raw) pairs already judged

    def add(self, raw: bytes, key: bytes | None) -> Drop | None:
        if type(raw) is bytes and (key, raw) in self._seen:
            return None
        result = self.cache.check(raw, self.now_s)
        if isinstance(result, Drop):
            self.dropped[result] += 1
            return result
        self._seen.add((key, raw))
        if key is not None and key not in record_keys(result.message):
            self.dropped[Drop.WRONG_KEY] += 1
            return Drop.WRONG_KEY
        return self._keep_newest(result)

    def _keep_newest(self, sealed: Sealed[OfferRecord]) -> Drop | None:
        entry = sealed.message.entry_id
        held = self._best.get(entry)
        if held is None or held.message.seq < sealed.message.seq:
            self._best[entry] = sealed
        elif held.message.seq == sealed.message.seq and held.raw != sealed.raw:
            self.dropped[Drop.SEQ_CONFLICT] += 1
            return Drop.SEQ_CONFLICT
        return None

    def offers(self, *, include_withdrawn: bool = False) -> list[Sealed[OfferRecord]]:
        """The newest version of every offer seen, cheapest first; tombstones and bids left
        out."""
        return self._newest(OfferRecord, include_withdrawn)

    def bids(self) -> list[Sealed[BidRecord]]:
        """The newest version of every live bid seen, cheapest first."""
        return self._newest(BidRecord, False)

    def _newest(self, cls: type, include_withdrawn: bool) -> list:
        kept = [s for s in self._best.values() if type(s.message) is cls
                and (include_withdrawn or not s.message.withdrawn)]
        kept.sort(key=lambda s: (s.message.price_micro_per_kwh, s.message.entry_id))
        return kept
