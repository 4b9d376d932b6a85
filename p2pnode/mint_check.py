"""The feeder node's cross-check of minted tokens against what was measured (pure).

Every member's signed report of an interval (:class:`p2pnode.feeder_report.FeederReport`) says
what its meter read (generation G_i, consumption C_i), what it minted (``minted_wh``: energy
tokens on its own chain) and, from a signing smart meter, the meter's key and signature of the
reading.  A member is flagged for the interval, with a reason, when

``mint_over_report``
    it minted more than its own report's surplus ``max(0, G_i - C_i)`` (the ledger rules make a
    chain that does this invalid, so only a member whose report and chain disagree gets here);
``unverified_reading``
    the feeder trusts meter keys (``[meter] trusted_keys``) and the member minted from a
    reading that no trusted meter signed (its signature is missing, wrong or by another key);
``mint_over_transformer``
    the interval's minting exceeds what the transformer balance allows.  With transformer
    supply T (import positive) the physical balance is ``sum(G) - sum(C) = losses - T``, so the
    tokens all members could honestly mint are at most the members' reported deficits minus T
    plus the technical losses: ``excess = sum(minted) - (sum(deficit) - T) - tolerance``.  A
    positive excess is energy tokenised that the feeder never saw.  Every minting member whose
    reading no trusted meter vouches for is flagged: one of them inflated its reading, and
    the balance alone cannot tell which (a member with a verified reading cannot have).  With
    meter keys on every honest meter only the liars remain; without, every unverified minter
    of the interval is a suspect -- the false alarms that meter keys remove.

:func:`cross_check` returns a :class:`MintCheck` per interval; the feeder book counts flags per
member and reason (``mint_flagged_<reason>``) and shows them in its API and metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from ledger import MeterReading, is_valid_signature

__all__ = ["FLAG_REASONS", "MemberMint", "MintCheck", "cross_check", "reading_verified"]

FLAG_REASONS = ("mint_over_report", "unverified_reading", "mint_over_transformer")


@dataclasses.dataclass(frozen=True)
class MemberMint:
    """What one member's report says about one interval."""

    member: bytes
    interval_start_s: int
    interval_s: int
    generation_wh: int
    consumption_wh: int
    minted_wh: int
    meter: bytes = b""
    meter_sig: bytes = b""

    @property
    def surplus_wh(self) -> int:
        return max(0, self.generation_wh - self.consumption_wh)

    @property
    def deficit_wh(self) -> int:
        return max(0, self.consumption_wh - self.generation_wh)


@dataclasses.dataclass(frozen=True)
class MintCheck:
    """The cross-check of one interval: minted total, the transformer excess and the flags."""

    minted_wh: int
    excess_wh: int | None           # None without a transformer reading
    flags: tuple[tuple[bytes, str], ...]   # (member, reason), at most one per reason


def reading_verified(mint: MemberMint, trusted_meters: frozenset[bytes]) -> bool:
    """True when a trusted meter signed exactly the reading the member reported."""
    if not mint.meter_sig or mint.meter not in trusted_meters:
        return False
    try:
        reading = MeterReading(mint.meter, mint.interval_start_s, mint.interval_s,
                               mint.generation_wh, mint.consumption_wh)
    except ValueError:
        return False
    return is_valid_signature(mint.meter, mint.meter_sig, reading.signing_bytes())


def cross_check(mints: Iterable[MemberMint], transformer_wh: int | None, tolerance_wh: int,
                trusted_meters: frozenset[bytes] = frozenset()) -> MintCheck:
    """Flag the members of one interval whose minting exceeds what was measured."""
    mints = list(mints)
    flags: list[tuple[bytes, str]] = []
    verified = {m.member for m in mints if reading_verified(m, trusted_meters)}
    for m in mints:
        if m.minted_wh > m.surplus_wh:
            flags.append((m.member, "mint_over_report"))
        if trusted_meters and m.minted_wh > 0 and m.member not in verified:
            flags.append((m.member, "unverified_reading"))
    minted = sum(m.minted_wh for m in mints)
    excess = None
    if transformer_wh is not None:
        allowed = sum(m.deficit_wh for m in mints) - transformer_wh + tolerance_wh
        excess = minted - allowed
        if excess > 0:
            flags += [(m.member, "mint_over_transformer") for m in mints
                      if m.minted_wh > 0 and m.member not in verified]
    return MintCheck(minted, excess, tuple(flags))
