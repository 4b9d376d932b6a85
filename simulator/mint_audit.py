"""Houses whose node lies about its meter, and whether the feeder's cross-check catches them.

``[faults] lying_share`` picks houses (:func:`simulator.faults.fault_schedule`) whose node
reads its meter through a :class:`LyingMeter`: it claims :data:`LIE_FACTOR` times the measured
generation plus :data:`LIE_EXTRA_WH`, mints tokens for that surplus on its own chain and sells
them.  It cannot sign the made-up reading with its meter's key (``[faults] meter_keys``), so it
drops the signature and mints from a reading signed by itself, with no ``[meter] trusted_keys``
of its own: its chain is valid under lax rules, and only checks from outside can catch it.

After the run the simulator plays the feeder node: for every interval it takes each house's
report (the reading its node traded with, the tokens its chain minted, the meter signature) and
the transformer reading (the true net of the houses that took part), and runs the feeder's
:func:`p2pnode.mint_check.cross_check` -- the same code a feeder node runs on its books.
:func:`summarise` turns the flags into the run's statistics: liars caught (flagged at least once)
and missed, honest houses flagged (false alarms), flags by reason.  The auditor's side is
``untrusted_mints``: MINT blocks whose reading no trusted meter key signed (``ledger verify
--trusted-meter``), counted by the swarm runner.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib

from ledger import SigningKey
from p2pnode.meter import Meter, Reading
from p2pnode.mint_check import MemberMint, cross_check

__all__ = ["LIE_EXTRA_WH", "LIE_FACTOR", "LyingMeter", "HouseReport", "backed_trades",
           "meter_key", "summarise", "TOLERANCE_WH_PER_HOUSE"]

LIE_FACTOR = 2                 # claimed generation = measured x 2 + LIE_EXTRA_WH
LIE_EXTRA_WH = 300
TOLERANCE_WH_PER_HOUSE = 1     # whole-Wh rounding of every house's reading


def meter_key(seed: int, house: int) -> SigningKey:
    """The key of house ``house``'s smart meter (separate from its node key)."""
    return SigningKey.from_seed(
        hashlib.sha256(f"p2p-energy/sim/{seed}/meter/{house}".encode()).digest())


class LyingMeter(Meter):
    """What a lying node reads: more generation than its meter measured, and no signature."""

    def __init__(self, meter: Meter):
        self.meter = meter

    def read(self, interval_start_s: int, interval_s: int) -> Reading:
        true = self.meter.read(interval_start_s, interval_s)
        return dataclasses.replace(true, generation_wh=true.generation_wh * LIE_FACTOR + LIE_EXTRA_WH,
                                   meter_key=b"", meter_sig=b"")


def backed_trades(rows: list[dict], surplus_wh, lying) -> tuple[list[dict], int]:
    """The trades as energy really flowed, and the Wh liars sold without having them.

    A lying seller sells tokens for surplus it never had; its buyers were credited with energy
    the grid supplied.  For scoring, each liar's deliveries of an interval are cut (in the order
    of ``rows``) to its true surplus ``surplus_wh[house, interval]``; the cut is returned.
    """
    left: dict[tuple[int, int], int] = {}
    out, unbacked = [], 0
    for row in rows:
        seller, interval = row["seller"], row["interval"]
        if seller not in lying:
            out.append(row)
            continue
        slot = (seller, interval)
        available = left.setdefault(slot, int(surplus_wh[seller, interval]))
        delivered = min(row["delivered_wh"], available)
        left[slot] = available - delivered
        unbacked += row["delivered_wh"] - delivered
        out.append(dict(row, delivered_wh=delivered))
    return out, unbacked


@dataclasses.dataclass(frozen=True)
class HouseReport:
    """One house's interval as the feeder sees it (``mint``) and as it really was."""

    house: int
    mint: MemberMint
    true_generation_wh: int
    true_consumption_wh: int


def summarise(reports: list[HouseReport], lying: frozenset[int],
              trusted_meters: frozenset[bytes]) -> dict[str, int]:
    """Run the feeder's cross-check over every interval; the catch statistics."""
    by_interval: dict[int, list[HouseReport]] = collections.defaultdict(list)
    for report in reports:
        by_interval[report.mint.interval_start_s].append(report)
    flagged: collections.Counter[int] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    excess_wh = 0
    for rows in by_interval.values():
        transformer_wh = sum(r.true_consumption_wh - r.true_generation_wh for r in rows)
        house_of = {r.mint.member: r.house for r in rows}
        check = cross_check([r.mint for r in rows], transformer_wh,
                            TOLERANCE_WH_PER_HOUSE * len(rows), trusted_meters)
        excess_wh += max(0, check.excess_wh or 0)
        for member, reason in check.flags:
            flagged[house_of[member]] += 1
            reasons[reason] += 1
    caught = sum(1 for house in lying if flagged[house])
    stats = {"lying_nodes": len(lying), "lying_caught": caught, "lying_missed": len(lying) - caught,
             "honest_flagged": sum(1 for house in flagged if house not in lying),
             "mint_excess_kwh": round(excess_wh / 1000, 3)}
    stats.update({f"mint_flags_{reason}": count for reason, count in sorted(reasons.items())})
    return stats
