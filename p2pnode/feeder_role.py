"""The feeder role on a running node: report route, own reading, transformer meter, closing.

The books themselves are :class:`p2pnode.feeder.FeederBook` (pure); this is the thin shell that
feeds them on a node: members' reports arrive on the node's peer endpoint
(``POST /p2p/v1/feeder/report``, :meth:`FeederRole.attach` before the node starts), the feeder
node's own meter reading is booked like any member's, and a task closes every interval
``grace_s`` after it ends on the node's clock, with the transformer meter's reading
(:class:`TransformerMeter`; :class:`CsvTransformerMeter` replays one).  ``p2pnode run`` starts
it beside the node when ``[feeder_role] enabled = true``.  The books are kept on disk
(:mod:`p2pnode.feeder_store`, ``<ledger stem>.feeder.db``): every accepted report before its
answer, every closed interval when it closes; :meth:`FeederRole.start` restores them, so a
restarted feeder node goes on where it stopped.  :meth:`FeederRole.close` closes the file.
"""

from __future__ import annotations

import abc
import asyncio
import csv
import io
import logging
from collections.abc import Callable
from pathlib import Path

from ledger import SigningKey
from optimizer.markets import LossWatch
from optimizer.powerflow.errors import PowerFlowError
from p2pnode.config import NodeConfig
from p2pnode.errors import ConfigError, FileLimitError
from p2pnode.files import CSV_MAX_BYTES, read_bounded
from p2pnode.feeder import Answer, FeederBook, FeederInterval, FeederSettings
from p2pnode.feeder_report import FEEDER_REPORT_PATH, report_for
from p2pnode.feeder_store import FeederStore, feeder_books_path
from p2pnode.minting import trusted_meter_keys
from p2pnode.meter import Reading

__all__ = ["CsvTransformerMeter", "FeederRole", "TransformerMeter"]

log = logging.getLogger(__name__)


# -- the transformer's meter -----------------------------------------------------------------------

class TransformerMeter(abc.ABC):
    """The meter at the feeder's transformer."""

    @abc.abstractmethod
    def read(self, interval_start_s: int, interval_s: int) -> int | None:
        """Wh the transformer delivered into the feeder over the interval (negative: the feeder
        exported), or None when there is no reading for it."""


class CsvTransformerMeter(TransformerMeter):
    """Replays a CSV with columns ``interval_start_s,transformer_wh`` (signed integers)."""

    COLUMNS = ("interval_start_s", "transformer_wh")

    def __init__(self, path: Path, interval_s: int):
        self.path, self.interval_s = Path(path), interval_s
        self.readings: dict[int, int] = {}
        try:
            text = read_bounded(self.path, CSV_MAX_BYTES, "transformer meter CSV").decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"[feeder_role] transformer_meter: {self.path}: cannot read "
                              f"({exc.strerror})") from exc
        except (UnicodeDecodeError, FileLimitError) as exc:
            raise ConfigError(f"[feeder_role] transformer_meter: {self.path}: {exc}") from None
        self._load(csv.DictReader(io.StringIO(text, newline="")))

    def _load(self, rows: csv.DictReader) -> None:
        missing = [c for c in self.COLUMNS if c not in (rows.fieldnames or ())]
        if missing:
            raise ConfigError(f"{self.path}: missing column {missing[0]!r}")
        for line, row in enumerate(rows, start=2):
            values = []
            for column in self.COLUMNS:
                try:
                    values.append(int(row[column]))
                except (TypeError, ValueError):
                    raise ConfigError(f"{self.path}:{line}: column {column!r}: expected an "
                                      f"integer, got {row[column]!r}") from None
            start, wh = values
            if start < 0 or start % self.interval_s:
                raise ConfigError(f"{self.path}:{line}: interval_start_s {start} is not the "
                                  f"start of a {self.interval_s} s interval")
            if start in self.readings:
                raise ConfigError(f"{self.path}:{line}: interval_start_s {start} appears twice")
            self.readings[start] = wh

    def read(self, interval_start_s: int, interval_s: int) -> int | None:
        if interval_s != self.interval_s:
            return None
        return self.readings.get(interval_start_s)


# -- the shell ---------------------------------------------------------------------------------------

class FeederRole:
    """The feeder role of one node: route, own reading, closing task (see the module doc).

    ``attach(peer_server)`` before the node starts, ``await start()`` once it is up (loads the
    network in an executor), then ``run(speed)`` as a task next to the node's.
    """

    def __init__(self, config: NodeConfig, key: SigningKey, clock: Callable[[], float],
                 transformer: TransformerMeter | None = None):
        role = config.feeder_role
        if not role.enabled:
            raise ConfigError("[feeder_role] enabled = false: this node has no feeder role")
        self.config, self.key, self.clock = config, key, clock
        self.transformer = transformer or CsvTransformerMeter(role.transformer_meter,
                                                              config.interval_s)
        members = tuple(bytes.fromhex(m) for m in role.members)
        self.settings = FeederSettings(
            feeder=config.feeder, interval_s=config.interval_s,
            watch=LossWatch(role.loss_threshold_kwh, role.persistence), grace_s=role.grace_s,
            members=frozenset((key.public, *members)) if members else None,
            member_order=tuple(dict.fromkeys((key.public, *members))),
            buses=tuple((bytes.fromhex(m), bus) for m, bus in role.buses), network=role.network,
            trusted_meters=trusted_meter_keys(config))
        self.book: FeederBook | None = None
        self.store: FeederStore | None = None
        self.books_path = feeder_books_path(config.ledger)

    def attach(self, peer_server) -> None:
        peer_server.add_post(FEEDER_REPORT_PATH, self.on_report)

    async def start(self) -> None:
        grid = None
        if self.settings.network:
            from optimizer.powerflow import load_feeder
            grid = await asyncio.get_running_loop().run_in_executor(
                None, load_feeder, self.settings.network)
            try:                      # the configured buses, before any file is touched
                FeederBook(self.settings, self.clock(), grid).placement()
            except PowerFlowError as exc:
                raise ConfigError(f"[feeder_role.buses] {exc} on network "
                                  f"{self.settings.network!r}") from None
        store = FeederStore(self.books_path, self.settings.feeder, self.settings.interval_s,
                            self.settings.history_intervals)
        try:
            self.book = self._restore(store, grid)
        except BaseException:
            store.close_file()
            raise
        self.store = store

    def _restore(self, store: FeederStore, grid) -> FeederBook:
        stored = store.load()
        if stored is None:
            return FeederBook(self.settings, self.clock(), grid)
        try:
            book = FeederBook.restore(self.settings, self.clock(), grid, stored)
        except ConfigError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"[feeder_role] books file {self.books_path}: a stored value is "
                              f"damaged ({exc!r}); move it away to start with empty books") from None
        log.info("feeder %s: books restored from %s (%d open reports, %d closed intervals)",
                 self.settings.feeder, self.books_path, len(stored.reports), len(stored.closed))
        return book

    def on_report(self, raw: bytes) -> tuple[int, bytes]:
        """The peer route's handler: (HTTP status, JSON body)."""
        if self.book is None:
            answer = Answer.rejected("starting")
        else:
            answer = self._submit(raw)
        return answer.status, answer.body

    def _submit(self, raw: bytes) -> Answer:
        """Book one report; an accepted one is stored before the answer leaves."""
        accepted = self.book.counters["reports_accepted"]
        answer = self.book.submit(raw, self.clock())
        if self.book.counters["reports_accepted"] > accepted and self.store is not None:
            report = self.book.last_accepted.message
            self.store.add_report(report.interval_start_s, report.member, raw,
                                  self.book.counters)
        return answer

    def own_reading(self, reading: Reading) -> None:
        """Book the feeder node's own meter reading (a member like any other)."""
        if self.book is None:
            return
        answer = self._submit(report_for(reading, self.settings.feeder, self.key).raw)
        if answer.status != 200:
            log.warning("own reading of interval %s not booked: %s", reading.interval_start_s,
                        answer.reason)

    def close_due(self) -> list[FeederInterval]:
        """Close every interval whose grace period has passed, with the transformer reading."""
        closed = []
        for start in self.book.due(self.clock()):
            closed.append(self.book.close(start, self.transformer.read(start,
                                                                        self.settings.interval_s)))
            latest = closed[-1]
            if self.store is not None:
                self.store.close(latest, self.book.answered[start], self.book.open_from_s,
                                 self.book.streak, self.book.counters)
            log.info("feeder %s interval %s: G %d Wh, C %d Wh, T %s Wh, loss %s Wh, %d members "
                     "reporting, %d missing", self.settings.feeder, start, latest.generation_wh,
                     latest.consumption_wh, latest.transformer_wh, latest.loss_wh,
                     latest.members_reporting, latest.members_missing)
            if latest.alert:
                log.warning("feeder %s: unaccounted energy %s Wh in interval %s (%d in a row "
                            "above the threshold)", self.settings.feeder, latest.loss_wh, start,
                            latest.loss_streak)
        return closed

    async def run(self, speed: float = 1.0) -> None:
        """Close intervals on the node's clock until cancelled (``speed``: node s per wall s)."""
        while True:
            delay = self.book.next_close_s() - self.clock()
            if delay > 0:
                await asyncio.sleep(delay / speed)
            self.close_due()

    def close(self) -> None:
        """Close the books file (the books stay on disk)."""
        if self.store is not None:
            self.store.close_file()
            self.store = None
