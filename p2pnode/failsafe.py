"""The node's grid-only fail-safe: when no peer has been reachable for a while, stop trading.

Pure: fed one :class:`Observation` per trading interval -- could the node reach any peer (a
DHT contact or bootstrap node answered a ping), and how many of its bought trades are overdue
for settlement -- :meth:`FailSafe.observe` returns the state (:class:`Health`) and whether it
changed.  The shell (:mod:`p2pnode.liveness` probes, the node acts) decides nothing.

States::

    trading ──(enter_after intervals in a row with no reachable peer)──> grid_only
    grid_only ──(an interval with a reachable peer)──> trading

In ``grid_only`` the node publishes no offer and buys nothing: the whole interval is the grid's
(recorded as such on the ledger), it keeps probing peers every interval and keeps retrying the
settlement of trades already agreed.  Trading resumes as soon as a peer answers.  Settlement
health (``trades_settled``: no bought trade of an earlier interval still unsettled) is reported
beside, not a reason to stop trading: a seller that does not co-sign is the seller's problem.
"""

from __future__ import annotations

import dataclasses
import enum

__all__ = ["DEFAULT_ENTER_AFTER", "FailSafe", "Health", "Mode", "Observation"]

DEFAULT_ENTER_AFTER = 3          # intervals in a row without a reachable peer


class Mode(enum.Enum):
    TRADING = "trading"
    GRID_ONLY = "grid_only"


@dataclasses.dataclass(frozen=True)
class Observation:
    """What the node saw at the start of one interval."""

    interval_start_s: int
    peers_reachable: int        # contacts that answered (0: none)
    overdue_settlements: int    # bought trades of earlier intervals not settled yet


@dataclasses.dataclass(frozen=True)
class Health:
    """The fail-safe's view, as /health and /metrics show it."""

    mode: Mode = Mode.TRADING
    peers_reachable: int | None = None      # None: not observed yet
    intervals_without_peers: int = 0
    overdue_settlements: int = 0
    since_interval_start_s: int | None = None   # when the current mode began
    entered: int = 0                        # times grid_only was entered
    observed: int = 0

    @property
    def trades_settled(self) -> bool:
        return self.overdue_settlements == 0

    @property
    def grid_only(self) -> bool:
        return self.mode is Mode.GRID_ONLY


class FailSafe:
    """The state machine of the module doc; ``enter_after`` >= 1 intervals."""

    def __init__(self, enter_after: int = DEFAULT_ENTER_AFTER):
        if not isinstance(enter_after, int) or enter_after < 1:
            raise ValueError(f"enter_after = {enter_after!r}: must be an integer >= 1")
        self.enter_after = enter_after
        self.health = Health()

    def observe(self, seen: Observation) -> tuple[Health, bool]:
        """Take one interval's observation; returns the new health and whether the mode changed."""
        old = self.health
        quiet = 0 if seen.peers_reachable > 0 else old.intervals_without_peers + 1
        mode = old.mode
        if mode is Mode.TRADING and quiet >= self.enter_after:
            mode = Mode.GRID_ONLY
        elif mode is Mode.GRID_ONLY and seen.peers_reachable > 0:
            mode = Mode.TRADING
        changed = mode is not old.mode
        self.health = Health(
            mode=mode, peers_reachable=seen.peers_reachable, intervals_without_peers=quiet,
            overdue_settlements=seen.overdue_settlements,
            since_interval_start_s=seen.interval_start_s if changed else old.since_interval_start_s,
            entered=old.entered + (changed and mode is Mode.GRID_ONLY),
            observed=old.observed + 1)
        return self.health, changed
