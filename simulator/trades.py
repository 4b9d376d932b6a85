"""What a finished swarm run hands to the report: its settled trades and the runner's counters.

* :class:`TradeLog`: one entry per settled trade (columns as numpy arrays of equal length),
  collected from the nodes' ledgers.  It validates itself when built; every error names the
  field, and the first bad trade.  :meth:`TradeLog.per_house` turns it into the per-house arrays
  of :func:`simulator.outcome.settle` (via :func:`simulator.outcome.trade_arrays`).
* :class:`RunStats`: everything else the runner measured (wall time, ledger audit, message and
  drop counters).

Both are plain data: no files, clocks or sockets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

import numpy as np

from simulator.outcome import trade_arrays

INTEGER_FIELDS = ("interval", "seller", "buyer", "messages")
TRADE_FIELDS = ("interval", "seller", "buyer", "energy_wh", "delivered_wh", "price_per_kwh",
                "decision_ms", "messages")
"""Column order of :class:`TradeLog` (and of the tuples :meth:`TradeLog.from_rows` accepts)."""


@dataclass(frozen=True, eq=False)
class TradeLog:
    """Settled trades, one entry per trade (read-only 1-D arrays of equal length).

    ``interval``: interval index; ``seller``/``buyer``: house indices (never equal);
    ``energy_wh``: agreed energy (> 0); ``delivered_wh``: delivered energy (0..agreed), what
    moves and is paid for; ``price_per_kwh``: agreed price (>= 0); ``decision_ms``: the buyer's
    wall time from the start of discovery to the agreement (>= 0); ``messages``: peer messages
    the buyer sent for this trade, retries included (>= 0).  Upper bounds of the indices depend
    on the community and are checked by :meth:`per_house`.
    """

    interval: np.ndarray
    seller: np.ndarray
    buyer: np.ndarray
    energy_wh: np.ndarray
    delivered_wh: np.ndarray
    price_per_kwh: np.ndarray
    decision_ms: np.ndarray
    messages: np.ndarray

    def __post_init__(self):
        columns = {name: _column(name, getattr(self, name)) for name in TRADE_FIELDS}
        length = columns["interval"].size
        for name, column in columns.items():
            if column.size != length:
                raise ValueError(f"TradeLog.{name} has {column.size} entries, expected {length} "
                                 "(as many as interval)")
        for name in ("interval", "seller", "buyer", "delivered_wh", "price_per_kwh",
                     "decision_ms", "messages"):
            _check_where(name, columns[name] < 0, columns[name], "must not be negative")
        _check_where("energy_wh", columns["energy_wh"] <= 0, columns["energy_wh"],
                     "must be positive (agreed energy)")
        _check_where("delivered_wh", columns["delivered_wh"] > columns["energy_wh"],
                     columns["delivered_wh"], "must not exceed energy_wh (the agreed energy)")
        _check_where("buyer", columns["buyer"] == columns["seller"], columns["buyer"],
                     "must differ from seller (a house cannot trade with itself)")
        for name, column in columns.items():
            column.flags.writeable = False
            object.__setattr__(self, name, column)

    @classmethod
    def empty(cls) -> TradeLog:
        """A run without trades."""
        return cls(**{name: np.zeros(0, dtype=_dtype(name)) for name in TRADE_FIELDS})

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping | tuple]) -> TradeLog:
        """Build from rows: dicts with every key of :data:`TRADE_FIELDS`, or tuples in that order.

        Raises ``ValueError`` naming the row and the missing or unknown key.
        """
        columns: dict[str, list] = {name: [] for name in TRADE_FIELDS}
        for number, row in enumerate(rows):
            values = _row_values(number, row)
            for name, value in zip(TRADE_FIELDS, values):
                columns[name].append(value)
        if not columns["interval"]:
            return cls.empty()
        return cls(**columns)

    def __len__(self) -> int:
        return int(self.interval.size)

    def trade_columns(self) -> dict[str, np.ndarray]:
        """The keyword arguments of :func:`simulator.outcome.trade_arrays`."""
        return {name: getattr(self, name) for name in TRADE_FIELDS[:6]}

    def check_fits(self, houses: int, intervals: int) -> None:
        """``ValueError`` naming the field if a house or interval index is out of range."""
        for name, limit, what in (("seller", houses, "houses"), ("buyer", houses, "houses"),
                                  ("interval", intervals, "intervals")):
            column = getattr(self, name)
            _check_where(name, column >= limit, column, f"must be below {limit} ({what})")

    def per_house(self, houses: int, intervals: int) -> dict[str, np.ndarray]:
        """``bought_wh``, ``sold_wh``, ``paid``, ``received`` ([house, interval]) for settle."""
        self.check_fits(houses, intervals)
        return trade_arrays(houses, intervals, **self.trade_columns())


def _dtype(name: str):
    return np.int64 if name in INTEGER_FIELDS else np.float64


def _column(name: str, value) -> np.ndarray:
    """``value`` as a 1-D array of the field's dtype: integers exact, floats finite."""
    try:
        array = np.array(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"TradeLog.{name} is not an array of numbers: {exc}") from None
    if array.ndim != 1:
        raise ValueError(f"TradeLog.{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        return array.astype(_dtype(name))
    if array.dtype.kind not in "iuf":
        raise ValueError(f"TradeLog.{name} must hold numbers, got dtype {array.dtype}")
    as_float = array.astype(np.float64)
    _check_where(name, ~np.isfinite(as_float), array, "must be finite")
    if name in INTEGER_FIELDS:
        _check_where(name, as_float != np.round(as_float), array, "must be whole numbers")
        return array.astype(np.int64)
    return as_float


def _check_where(name: str, bad: np.ndarray, column: np.ndarray, reason: str) -> None:
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"TradeLog.{name} {reason}: trade {index} has {column[index].item()!r} "
                         f"({int(bad.sum())} bad entries)")


def _row_values(number: int, row: Mapping | tuple) -> tuple:
    if isinstance(row, Mapping):
        missing = [name for name in TRADE_FIELDS if name not in row]
        unknown = [str(key) for key in row if key not in TRADE_FIELDS]
        if missing or unknown:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                    ([f"unknown {', '.join(unknown)}"] if unknown else [])
            raise ValueError(f"TradeLog row {number}: {'; '.join(parts)}")
        return tuple(row[name] for name in TRADE_FIELDS)
    if isinstance(row, (tuple, list)) and len(row) == len(TRADE_FIELDS):
        return tuple(row)
    raise ValueError(f"TradeLog row {number}: expected a mapping or a tuple of "
                     f"{len(TRADE_FIELDS)} values ({', '.join(TRADE_FIELDS)}), got {row!r}")


@dataclass(frozen=True)
class RunStats:
    """What the runner measured besides the trades.

    ``double_settlements``: trades settled twice (ledger cross-check); ``ledgers_valid``: every
    node's ledger passed the audit, ``ledger_problems`` the first problems it found otherwise;
    ``peer_messages``: every negotiation message sent; ``denied``: requests sellers denied;
    ``dropped``: invalid messages/records dropped, by reason; ``extra``: any other measurement
    (DHT lookups, lookup latency ...), written to the summary as it is; ``per_interval``:
    series of one value per interval (trading ahead of delivery: the nodes' forecast surplus
    and deficit, agreed and delivered energy), plotted by the report.
    """

    wall_s: float
    processes: int
    double_settlements: int
    ledgers_valid: bool
    ledger_problems: tuple[str, ...] = ()
    peer_messages: int = 0
    denied: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)
    extra: Mapping[str, float] = field(default_factory=dict)
    per_interval: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    def __post_init__(self):
        _check_number("wall_s", self.wall_s)
        _check_count("processes", self.processes, low=1)
        for name in ("double_settlements", "peer_messages", "denied"):
            _check_count(name, getattr(self, name))
        if not isinstance(self.ledgers_valid, bool):
            raise ValueError(f"RunStats.ledgers_valid must be a bool, got {self.ledgers_valid!r}")
        problems = tuple(self.ledger_problems)
        if not all(isinstance(p, str) for p in problems):
            raise ValueError("RunStats.ledger_problems must be strings")
        if self.ledgers_valid and problems:
            raise ValueError("RunStats.ledger_problems must be empty when ledgers_valid is true")
        dropped = _mapping("dropped", self.dropped)
        for reason, count in dropped.items():
            _check_count(f"dropped[{reason!r}]", count)
        extra = _mapping("extra", self.extra)
        for key, value in extra.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"RunStats.extra[{key!r}] must be a number, got {value!r}")
        object.__setattr__(self, "ledger_problems", problems)
        object.__setattr__(self, "dropped", dropped)
        object.__setattr__(self, "extra", {key: float(value) for key, value in extra.items()})
        series = _mapping("per_interval", self.per_interval)
        object.__setattr__(self, "per_interval", {
            key: tuple(float(v) for v in values) for key, values in series.items()})

    def as_dict(self) -> dict:
        """JSON-friendly copy (NaN in ``extra`` stays NaN; the writer turns it into null)."""
        return {f.name: (list(value) if isinstance(value := getattr(self, f.name), tuple)
                         else dict(value) if isinstance(value, Mapping) else value)
                for f in fields(self)}


def _check_number(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"RunStats.{name} must be a finite number >= 0, got {value!r}")


def _check_count(name: str, value, low: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"RunStats.{name} must be an integer >= {low}, got {value!r}")


def _mapping(name: str, value) -> dict:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"RunStats.{name} must be a mapping with string keys, got {value!r}")
    return dict(value)
