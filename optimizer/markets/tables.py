"""Orders and meter readings from table rows (already read from CSV by the caller).

Rows come as ``(line, mapping)`` pairs, ``line`` being the file line (the header is line 1), so
every error names the line, the data row and the column::

    orders.csv line 4 (row 3), column 'kwh': expected a number > 0, got 'lots'

Order columns: ``id,side,kwh,price,frame`` plus optional ``bus`` (a pandapower bus index) and
``seq`` (arrival order; default: row order). Reading columns: ``node,generation_kwh,
consumption_kwh`` plus optional ``bus``. Extra columns are ignored; blank lines are skipped by the CSV reader.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

from optimizer.markets.errors import OrderError
from optimizer.markets.orders import Order, Side, TimeFrames
from optimizer.markets.pooling import NodeReading

ORDER_COLUMNS = ("id", "side", "kwh", "price", "frame")
READING_COLUMNS = ("node", "generation_kwh", "consumption_kwh")

Row = tuple[int, Mapping[str, str]]


def check_header(header: Iterable[str] | None, required: tuple[str, ...], source: str) -> None:
    names = [h.strip() for h in header or ()]
    missing = [c for c in required if c not in names]
    if missing:
        raise OrderError(f"{source} line 1: missing column(s) {', '.join(map(repr, missing))}; "
                         f"expected {','.join(required)}")


def orders_from_rows(rows: Iterable[Row], source: str,
                     frames: TimeFrames = TimeFrames()) -> tuple[list[Order], dict[str, int]]:
    """``(orders, buses)``: ``buses`` maps order id to the ``bus`` column where one is given."""
    orders, buses, seen = [], {}, {}
    for n, (line, row) in enumerate(rows, start=1):
        where = f"{source} line {line} (row {n})"
        cell = _cells(row, where)
        oid = cell("id", _text)
        if oid in seen:
            raise OrderError(f"{where}, column 'id': duplicate id {oid!r} (first on line {seen[oid]})")
        seen[oid] = line
        side, kwh, price = cell("side", _side), cell("kwh", _positive), cell("price", _non_negative)
        frame = cell("frame", lambda v: _frame(v, frames))
        seq = cell("seq", _integer) if (row.get("seq") or "").strip() else n
        orders.append(Order(oid, side, kwh, price, frame, seq))
        if (row.get("bus") or "").strip():
            buses[oid] = cell("bus", _integer)
    return orders, buses


def readings_from_rows(rows: Iterable[Row], source: str) -> tuple[list[NodeReading], dict[str, int]]:
    """``(readings, buses)``: ``buses`` maps node to the optional ``bus`` column where given."""
    readings, seen, buses = [], {}, {}
    for n, (line, row) in enumerate(rows, start=1):
        where = f"{source} line {line} (row {n})"
        cell = _cells(row, where)
        node = cell("node", _text)
        if node in seen:
            raise OrderError(f"{where}, column 'node': duplicate node {node!r} (first on line {seen[node]})")
        seen[node] = line
        readings.append(NodeReading(node, cell("generation_kwh", _non_negative),
                                    cell("consumption_kwh", _non_negative)))
        if (row.get("bus") or "").strip():
            buses[node] = cell("bus", _integer)
    return readings, buses


def _cells(row: Mapping[str, str], where: str) -> Callable:
    def cell(column: str, parse: Callable[[str], object]):
        raw = (row.get(column) or "").strip()
        try:
            return parse(raw)
        except ValueError as exc:
            raise OrderError(f"{where}, column '{column}': {exc}, got {raw!r}") from None
    return cell


def _text(raw: str) -> str:
    if not raw:
        raise ValueError("expected a non-empty value")
    return raw


def _number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _positive(raw: str) -> float:
    value = _number(raw)
    if value <= 0:
        raise ValueError("expected a number > 0")
    return value


def _non_negative(raw: str) -> float:
    value = _number(raw)
    if value < 0:
        raise ValueError("expected a number >= 0")
    return value


def _integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected an integer") from None


def _side(raw: str) -> Side:
    try:
        return Side(raw.lower())
    except ValueError:
        raise ValueError("expected 'sell' or 'buy'") from None


def _frame(raw: str, frames: TimeFrames) -> str:
    if raw not in frames.names:
        raise ValueError(f"expected one of {', '.join(frames.names)}")
    return raw
