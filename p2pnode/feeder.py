"""The feeder (transformer) role's books: a feeder's energy, interval by interval (pure).

Members report each interval's reading (:mod:`p2pnode.feeder_report`); the feeder node keeps
them per interval in a :class:`FeederBook` (pure: no sockets, no clock -- ``now_s`` is passed
in) and, ``grace_s`` after the interval ends, closes it with the transformer meter's reading T:
the pool of the members' surpluses and deficits (:func:`optimizer.markets.share_pool`), the
books G, C, T, local, surplus, deficit and loss with the persistent-loss alert
(:func:`optimizer.markets.account_interval`, whose docstring defines the sign: ``loss = T + G -
C``, positive when energy entered the feeder and was not metered as consumption) and, with a
``network``, the load flow of the members' net loads (:func:`optimizer.markets.feeder_state`):
voltages, transformer loading, technical losses.  A bounded history (:data:`HISTORY_S`) of
closed intervals is what the local API shows.

Checks on a report, each refusal counted by reason (``reports_dropped_<reason>``) and leaving
the book as it was: ``oversize``, ``malformed``, ``bad_signature``, ``wrong_feeder`` (signed for
another feeder), ``not_member`` (``members`` configured and the key not among them),
``misaligned`` (interval length or start not the feeder's), ``out_of_range`` (more than
:data:`MAX_MEMBER_POWER_W` on average), ``future`` (the interval has not ended on our clock;
the member retries), ``closed`` (the interval is booked), ``conflict`` (a different report of the
same member and interval: the first one stands, nothing is counted twice), ``full`` (more than
:data:`MAX_MEMBERS` members).  The same bytes again get the same answer (``reports_duplicate``).

Without ``members`` any validly signed report is booked: convenient (members join by pointing
``report_to`` at the feeder node) but anyone who can reach the peer endpoint can add made-up
generation or consumption and so move the loss.  With ``members`` only known meters count.

The shell that runs a book on a node -- the report route on its peer endpoint, its own
meter's reading, the transformer meter and the task that closes intervals -- is
:class:`p2pnode.feeder_role.FeederRole`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging

from ledger import Sealed, open_checked
from optimizer.markets import (
    FeederState, LossWatch, NodeReading, OrderError, account_interval, feeder_state, place_on_houses,
    share_pool,
)
from optimizer.powerflow import Feeder, PowerFlowError
from p2pnode.feeder_report import MAX_REPORT_BYTES, FeederReport
from p2pnode.mint_check import MemberMint, cross_check

__all__ = [
    "Answer", "FeederBook", "FeederInterval", "FeederSettings", "HISTORY_S",
    "MAX_MEMBERS", "MAX_MEMBER_POWER_W",
]

log = logging.getLogger(__name__)

HISTORY_S = 7 * 86400            # closed intervals kept for the API
MAX_MEMBERS = 5000               # members booked per interval and remembered
MAX_MEMBER_POWER_W = 1_000_000   # a member meter's average power over an interval, at most
FUTURE_TOLERANCE_S = 5.0         # a member's clock may be this far ahead of ours
ANSWERED_INTERVALS = 8           # closed intervals whose accepted reports are still recognised
# reason -> HTTP status; 425 and 503 tell the member to try again later
STATUS = {"oversize": 413, "malformed": 400, "bad_signature": 400, "wrong_feeder": 400,
          "not_member": 403, "misaligned": 400, "out_of_range": 400, "future": 425,
          "closed": 410, "conflict": 409, "full": 503, "starting": 503}


def _body(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@dataclasses.dataclass(frozen=True)
class Answer:
    """The feeder node's answer to one report: HTTP status, reason and JSON body."""

    status: int
    reason: str
    body: bytes

    @classmethod
    def accepted(cls, interval_start_s: int) -> Answer:
        return cls(200, "accepted", _body({"status": "accepted",
                                           "interval_start_s": interval_start_s}))

    @classmethod
    def rejected(cls, reason: str) -> Answer:
        status = STATUS[reason]
        return cls(status, reason, _body({"status": "rejected", "reason": reason,
                                          "retry": status in (425, 503)}))


@dataclasses.dataclass(frozen=True)
class FeederSettings:
    """What the book needs; ``members`` None accepts any signed report."""

    feeder: str
    interval_s: int
    watch: LossWatch
    grace_s: float = 120.0
    members: frozenset[bytes] | None = None
    member_order: tuple[bytes, ...] = ()       # placement order on the network's houses
    buses: tuple[tuple[bytes, int], ...] = ()  # explicit placements
    network: str = ""
    trusted_meters: frozenset[bytes] = frozenset()   # [meter] trusted_keys (the cross-check)

    @property
    def history_intervals(self) -> int:
        return max(1, HISTORY_S // self.interval_s)


@dataclasses.dataclass(frozen=True)
class FeederInterval:
    """One closed interval of the feeder's books (Wh); ``transformer_wh`` and ``loss_wh`` are
    None when the transformer meter had no reading (the alert then stays as it was)."""

    interval_start_s: int
    interval_s: int
    members_reporting: int
    members_missing: int
    generation_wh: int
    consumption_wh: int
    transformer_wh: int | None
    local_wh: int
    shared_wh: int
    surplus_wh: int
    deficit_wh: int
    loss_wh: int | None
    alert: bool
    loss_streak: int
    network: FeederState | None     # the load flow, when the role has a network
    minted_wh: int = 0                    # tokens the members minted (their reports)
    mint_excess_wh: int | None = None     # minted beyond the transformer balance (see mint_check)
    flagged: tuple[tuple[str, str], ...] = ()   # (member hex, reason) of p2pnode.mint_check


class FeederBook:
    """Reports of the open intervals and the books of the closed ones (pure)."""

    def __init__(self, settings: FeederSettings, now_s: float, grid: Feeder | None = None):
        self.settings, self.grid = settings, grid
        step = settings.interval_s
        self.open_from_s = int(now_s) // step * step    # earlier intervals are closed
        self.reports: dict[int, dict[bytes, Sealed[FeederReport]]] = {}
        self.answered: dict[int, dict[bytes, bytes]] = {}   # closed start -> member -> hash
        self.known: dict[bytes, None] = dict.fromkeys(settings.member_order)
        self.history: collections.deque[FeederInterval] = collections.deque(
            maxlen=settings.history_intervals)
        self.streak = 0
        self.counters: collections.Counter[str] = collections.Counter()
        self.last_accepted: Sealed[FeederReport] | None = None

    @classmethod
    def restore(cls, settings: FeederSettings, now_s: float, grid: Feeder | None,
                stored) -> FeederBook:
        """The book as it was stored (a :class:`~p2pnode.feeder_store.StoredBooks`): open
        intervals with their reports, closed ones, the loss streak and the counters.  Intervals
        that ended while the node was down are closed by :meth:`due` as usual (with the
        reports stored before the stop).  Raises ValueError when a stored value is damaged."""
        book = cls(settings, now_s, grid)
        reports = []
        for raw in stored.reports:
            sealed = open_checked(raw, FeederReport, MAX_REPORT_BYTES)
            if isinstance(sealed, str):
                raise ValueError(f"a stored report does not open: {sealed}")
            reports.append(sealed)
        # the stored position rules: what was open at the stop is open now
        book.open_from_s = stored.open_from_s or min(
            [r.message.interval_start_s for r in reports] + [book.open_from_s])
        book.streak, book.counters = stored.streak, collections.Counter(stored.counters)
        for member in stored.members:
            book.known.setdefault(member, None)
        for sealed in reports:
            report = sealed.message
            if report.interval_start_s >= book.open_from_s:
                book.reports.setdefault(report.interval_start_s, {})[report.member] = sealed
        for booked, answered in stored.closed:
            book.history.append(_interval_from_dict(booked))
            book.answered[booked["interval_start_s"]] = {
                bytes.fromhex(m): bytes.fromhex(h) for m, h in answered.items()}
        for old in sorted(book.answered)[:-ANSWERED_INTERVALS]:
            del book.answered[old]
        return book

    @property
    def flagged(self) -> collections.Counter[str]:
        """Mint cross-check flags per member (hex) over the closed intervals kept (the
        history, restored with the books after a restart)."""
        return collections.Counter(member for booked in self.history
                                   for member, _ in booked.flagged)

    # -- reports ---------------------------------------------------------------------------------
    def submit(self, raw: bytes, now_s: float) -> Answer:
        """Book one sealed report (or refuse it); the same bytes get the same answer."""
        checked = self._check(raw, now_s)
        if isinstance(checked, str):
            return self._refuse(checked)
        report = checked.message
        start, member = report.interval_start_s, report.member
        if start < self.open_from_s:
            first = self.answered.get(start, {}).get(member)
            if first == checked.hash:
                return self._duplicate(start)
            return self._refuse("closed" if first is None else "conflict")
        booked = self.reports.get(start, {})
        first = booked.get(member)
        if first is not None:
            return self._duplicate(start) if first.hash == checked.hash else self._refuse("conflict")
        if len(booked) >= MAX_MEMBERS or (member not in self.known and len(self.known) >= MAX_MEMBERS):
            return self._refuse("full")
        self.reports.setdefault(start, {})[member] = checked
        self.known.setdefault(member, None)
        self.counters["reports_accepted"] += 1
        self.last_accepted = checked          # the shell stores it (p2pnode/feeder_store.py)
        return Answer.accepted(start)

    def _check(self, raw: bytes, now_s: float) -> Sealed[FeederReport] | str:
        sealed = open_checked(raw, FeederReport, MAX_REPORT_BYTES)
        if isinstance(sealed, str):
            return sealed
        report, settings = sealed.message, self.settings
        if report.feeder != settings.feeder:
            return "wrong_feeder"
        if settings.members is not None and report.member not in settings.members:
            return "not_member"
        if report.interval_s != settings.interval_s or report.interval_start_s % report.interval_s:
            return "misaligned"
        limit_wh = MAX_MEMBER_POWER_W * report.interval_s // 3600
        if max(report.generation_wh, report.consumption_wh) > limit_wh:
            return "out_of_range"
        if report.interval_start_s + report.interval_s > now_s + FUTURE_TOLERANCE_S:
            return "future"
        return sealed

    def _refuse(self, reason: str) -> Answer:
        self.counters[f"reports_dropped_{reason}"] += 1
        return Answer.rejected(reason)

    def _duplicate(self, start: int) -> Answer:
        self.counters["reports_duplicate"] += 1
        return Answer.accepted(start)

    # -- closing ---------------------------------------------------------------------------------
    def next_close_s(self) -> float:
        """Node time at which the oldest open interval closes."""
        return self.open_from_s + self.settings.interval_s + self.settings.grace_s

    def due(self, now_s: float) -> list[int]:
        """Starts of the open intervals to close at ``now_s``, oldest first (at most a history's
        worth: older ones are skipped, see :meth:`close`)."""
        step, grace = self.settings.interval_s, self.settings.grace_s
        latest = int((now_s - grace - step) // step) * step
        starts = range(self.open_from_s, latest + 1, step)
        return list(starts[-self.settings.history_intervals:])

    def close(self, start_s: int, transformer_wh: int | None) -> FeederInterval:
        """Book the interval ``start_s`` (open intervals before it are dropped, counted)."""
        if start_s < self.open_from_s or start_s % self.settings.interval_s:
            raise ValueError(f"interval {start_s} is not open")
        for earlier in [s for s in self.reports if s < start_s]:
            del self.reports[earlier]
        if start_s > self.open_from_s:
            self.counters["intervals_skipped"] += (start_s - self.open_from_s) // self.settings.interval_s
        self.open_from_s = start_s + self.settings.interval_s
        reports = self.reports.pop(start_s, {})
        self.answered[start_s] = {member: sealed.hash for member, sealed in reports.items()}
        for old in sorted(self.answered)[:-ANSWERED_INTERVALS]:
            del self.answered[old]
        booked = self._book(start_s, [r.message for r in reports.values()], transformer_wh)
        self.history.append(booked)
        self.counters["intervals_closed"] += 1
        return booked

    def _book(self, start_s: int, reports: list[FeederReport], transformer_wh: int | None
              ) -> FeederInterval:
        readings = [NodeReading(r.member.hex(), r.generation_wh / 1000, r.consumption_wh / 1000)
                    for r in reports]
        pool = share_pool(readings)
        watch = self.settings.watch
        account = account_interval(pool, (transformer_wh or 0) / 1000, watch, self.streak)
        if transformer_wh is None:          # no T: no loss, and the alert stays as it was
            self.counters["transformer_missing"] += 1
            loss, alert = None, self.streak >= watch.persistence
        else:
            self.streak = account.loss_streak
            loss, alert = round(account.loss_kwh * 1000), account.alert
        expected = self.settings.members if self.settings.members is not None else self.known
        check = self._cross_check(start_s, reports, transformer_wh)
        return FeederInterval(
            interval_start_s=start_s, interval_s=self.settings.interval_s,
            members_reporting=len(reports),
            members_missing=len(set(expected) - {r.member for r in reports}),
            generation_wh=round(account.generation_kwh * 1000),
            consumption_wh=round(account.consumption_kwh * 1000), transformer_wh=transformer_wh,
            local_wh=round(account.local_kwh * 1000), shared_wh=round(pool.shared_kwh * 1000),
            surplus_wh=round(account.surplus_kwh * 1000), deficit_wh=round(account.deficit_kwh * 1000),
            loss_wh=loss, alert=alert, loss_streak=self.streak,
            network=self._network(readings) if self.grid is not None else None,
            minted_wh=check.minted_wh, mint_excess_wh=check.excess_wh,
            flagged=tuple((member.hex(), reason) for member, reason in check.flags))

    def _cross_check(self, start_s: int, reports: list[FeederReport], transformer_wh: int | None):
        """Minted tokens against the reports and the transformer (:mod:`p2pnode.mint_check`)."""
        mints = [MemberMint(r.member, r.interval_start_s, r.interval_s, r.generation_wh,
                            r.consumption_wh, r.minted_wh, r.meter, r.meter_sig) for r in reports]
        tolerance_wh = round(self.settings.watch.threshold_kwh * 1000)
        check = cross_check(mints, transformer_wh, tolerance_wh, self.settings.trusted_meters)
        for member, reason in check.flags:
            self.counters[f"mint_flagged_{reason}"] += 1
            log.warning("feeder %s interval %s: member %s flagged: %s", self.settings.feeder,
                        start_s, member.hex()[:16], reason)
        return check

    def placement(self) -> dict[str, int]:
        """Bus of every known member (hex key): explicit ``buses``, the rest on the houses in
        order of first report (or of ``members``); stable as members are added."""
        buses = {member.hex(): bus for member, bus in self.settings.buses}
        ids = [m.hex() for m in self.known] + list(buses)   # every explicit bus is checked
        return place_on_houses(list(dict.fromkeys(ids)), buses, self.grid)

    def _network(self, readings: list[NodeReading]) -> FeederState | None:
        try:
            state = feeder_state(readings, self.placement(), self.grid,
                                 hours=self.settings.interval_s / 3600)
        except (OrderError, PowerFlowError) as exc:
            log.error("feeder load flow failed: %s", exc)
            self.counters["network_failed"] += 1
            return None
        return state


def _interval_from_dict(data: dict) -> FeederInterval:
    """A :class:`FeederInterval` from ``dataclasses.asdict`` (the books file)."""
    network = data.get("network")
    if network is not None:
        network = FeederState(**{**network, **{
            name: tuple(network[name]) for name in ("buses_outside_limits",
                                                    "trafo_loading_percent")}})
    flagged = tuple(tuple(flag) for flag in data.get("flagged", ()))
    return FeederInterval(**{**data, "network": network, "flagged": flagged})
