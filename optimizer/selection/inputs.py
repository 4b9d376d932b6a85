"""What the selection core is given: the buyer's request and the candidate offers.

Both are plain frozen dataclasses, independent of the network: the node builds them from DHT
offer records, ledger history and the predictors of :mod:`models`.  They validate when built and
name the bad field in the error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optimizer.selection.errors import InvalidInputError

SELLER_KEY_BYTES = 32


def _check_finite(owner: str, name: str, value: float, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidInputError(f"{owner}.{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidInputError(f"{owner}.{name} must be in [{low}, {high}], got {value!r}")


def _check_int(owner: str, name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError(f"{owner}.{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise InvalidInputError(f"{owner}.{name} must be >= {low}, got {value}")


@dataclass(frozen=True)
class BuyRequest:
    """The buyer's need for one trading interval."""

    deficit_wh: int
    max_price_per_kwh: float = math.inf

    def __post_init__(self) -> None:
        _check_int("BuyRequest", "deficit_wh", self.deficit_wh, 1)
        if self.max_price_per_kwh != math.inf:
            _check_finite("BuyRequest", "max_price_per_kwh", self.max_price_per_kwh, 0.0, math.inf)


@dataclass(frozen=True)
class Candidate:
    """One seller's offer as the buyer sees it, with the predictions for a trade with it.

    Each candidate counts as one seller in the seller limit; pass one candidate per seller
    (its newest offer) so that a plan never sends two requests to the same meter.

    ``efficiency`` is the transfer (line) efficiency from the seller to the buyer, 0..1;
    ``predicted_quality`` the predicted share of the energy delivered, 0..1;
    ``predicted_duration_s`` the predicted time to execute the trade; ``participation`` the
    number of past trades the seller took part in as a seller (from the ledger).
    """

    seller: bytes
    offer_id: bytes
    available_wh: int
    price_per_kwh: float
    efficiency: float
    distance_m: float
    predicted_quality: float
    predicted_duration_s: float
    participation: int

    def __post_init__(self) -> None:
        if not isinstance(self.seller, bytes) or len(self.seller) != SELLER_KEY_BYTES:
            raise InvalidInputError(f"Candidate.seller must be {SELLER_KEY_BYTES} bytes")
        if not isinstance(self.offer_id, bytes) or not self.offer_id:
            raise InvalidInputError("Candidate.offer_id must be non-empty bytes")
        _check_int("Candidate", "available_wh", self.available_wh, 0)
        _check_finite("Candidate", "price_per_kwh", self.price_per_kwh, 0.0, math.inf)
        _check_finite("Candidate", "efficiency", self.efficiency, 0.0, 1.0)
        _check_finite("Candidate", "distance_m", self.distance_m, 0.0, math.inf)
        _check_finite("Candidate", "predicted_quality", self.predicted_quality, 0.0, 1.0)
        _check_finite("Candidate", "predicted_duration_s", self.predicted_duration_s, 0.0, math.inf)
        _check_int("Candidate", "participation", self.participation, 0)
