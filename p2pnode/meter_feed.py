"""A live meter's register samples turned into interval readings (pure: no sockets, no clock).

A live meter publishes its **cumulative energy registers** -- Wh generated and Wh consumed since
it was installed, never decreasing -- every few seconds or minutes.  :class:`RegisterFeed` keeps
the samples and cuts them at interval boundaries: the register value at a boundary is
interpolated between the samples on either side of it, or, when no sample after it has come yet,
held at the latest sample (the energy since then is counted in the next interval).  A boundary's
value is **frozen** the first time it is used, so consecutive intervals share it: every Wh
between two boundaries is counted in exactly one interval, however the samples arrive (late,
out of order, repeated, with gaps from a broker restart), and the interval energies add up to
the registers' difference.  Interval energy = ``floor(register at end) - floor(register at
start)``, so the rounding telescopes too.  The first interval counts from the first sample the
node received (what flowed before it started listening is not its to trade).

Payloads (UTF-8 JSON, at most :data:`MAX_PAYLOAD_BYTES`), ``format = "json"``::

    {"time_s": 1782907260.0, "generation_wh": 1234567.0, "consumption_wh": 7654321.5, "soc": 0.42}

``format = "senml"`` (RFC 8428 SenML JSON; records resolved with the base time ``bt`` and base
name ``bn``; registers as sums ``"s"``, unit ``Wh`` or ``kWh``; state of charge as a value
``"v"`` with unit ``/`` (0..1) or ``%``; other names are ignored)::

    [{"bn": "urn:dev:mac:0024befffe804ff1:", "bt": 1782907260.0,
      "n": "generation", "u": "Wh", "s": 1234567.0},
     {"n": "consumption", "u": "Wh", "s": 7654321.5},
     {"n": "soc", "u": "/", "v": 0.42}]

Every payload is accepted, counted as a duplicate, or dropped and counted by reason
(``samples_dropped_<reason>``): ``oversize``, ``malformed`` (not UTF-8 JSON of that shape),
``bad_field`` (a field missing, not a number, negative, out of range; the message names it),
``future`` (stamped ahead of the node's clock), ``late`` (older than a frozen boundary: it can
no longer change a reading), ``conflict`` (another sample with the same time and other values),
``not_monotonic`` (a register lower than an earlier sample's or higher than a later one's: a
corrupt value or a reset meter), ``too_frequent`` (closer than :data:`MIN_SPACING_S` to a kept
sample: a flood is thinned, nothing is lost since the registers are cumulative).  At most
:data:`MAX_SAMPLES` samples are kept; beyond, the oldest go (``samples_pruned``).

:meth:`RegisterFeed.reading` raises :class:`MeterStale` when the boundary it needs has no
sample after it and the latest sample is older than ``stale_after_s``, and
:class:`MeterNoData` before the first sample.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import json
import math

from p2pnode.errors import NodeError
from p2pnode.meter import Reading

__all__ = ["FORMATS", "MAX_PAYLOAD_BYTES", "MAX_SAMPLES", "MIN_SPACING_S", "MeterError",
           "MeterNoData", "MeterStale", "PayloadError", "RegisterFeed", "Sample", "parse_payload"]

FORMATS = ("json", "senml")
MAX_PAYLOAD_BYTES = 4096
MAX_SAMPLES = 4096
MIN_SPACING_S = 1.0            # samples closer than this to a kept one are dropped
FUTURE_TOLERANCE_S = 5.0       # a meter's clock may be this far ahead of the node's
MAX_REGISTER_WH = 1e15
FROZEN_KEPT = 8                # frozen boundaries remembered
SENML_UNITS = {"Wh": 1.0, "kWh": 1000.0}
SOC_UNITS = {"/": 1.0, "%": 0.01}


class MeterError(NodeError):
    """The live meter cannot give the reading asked for."""


class MeterStale(MeterError):
    """No sample after the boundary, and the latest one is too old to stand for it."""


class MeterNoData(MeterError):
    """No sample has arrived yet."""


class PayloadError(ValueError):
    """A payload that is not a sample; ``reason`` is the counter's suffix."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Sample:
    time_s: float
    generation_wh: float
    consumption_wh: float
    soc: float | None = None

    @property
    def registers(self) -> tuple[float, float]:
        return self.generation_wh, self.consumption_wh


# -- payloads ----------------------------------------------------------------------------------

def _number(value, field: str, low: float = 0.0, high: float = MAX_REGISTER_WH) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PayloadError("bad_field", f"{field} = {value!r}: must be a number")
    if not (math.isfinite(value) and low <= value <= high):
        raise PayloadError("bad_field", f"{field} = {value!r}: must be between {low:g} and {high:g}")
    return float(value)


def _json(payload: bytes):
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("oversize", f"payload of {len(payload)} bytes (at most "
                                       f"{MAX_PAYLOAD_BYTES})")
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError("malformed", f"not UTF-8 JSON: {exc}") from None


def _parse_json(data) -> Sample:
    if not isinstance(data, dict):
        raise PayloadError("malformed", "a json payload must be an object with time_s, "
                                        "generation_wh, consumption_wh[, soc]")
    for key in ("time_s", "generation_wh", "consumption_wh"):
        if key not in data:
            raise PayloadError("bad_field", f"{key} is missing")
    soc = data.get("soc")
    return Sample(_number(data["time_s"], "time_s", 1.0, 1e11),
                  _number(data["generation_wh"], "generation_wh"),
                  _number(data["consumption_wh"], "consumption_wh"),
                  None if soc is None else _number(soc, "soc", 0.0, 1.0))


def _parse_senml(data) -> Sample:
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise PayloadError("malformed", "a senml payload must be a non-empty array of records")
    base_time, base_name, found = 0.0, "", {}
    for index, record in enumerate(data):
        if "bt" in record:
            base_time = _number(record["bt"], f"[{index}].bt", 0.0, 1e11)
        if "bn" in record:
            if not isinstance(record["bn"], str):
                raise PayloadError("bad_field", f"[{index}].bn: must be a string")
            base_name = record["bn"]
        name = record.get("n", "")
        if not isinstance(name, str):
            raise PayloadError("bad_field", f"[{index}].n: must be a string")
        field = (base_name + name)[len(base_name):] if name else ""
        if field not in ("generation", "consumption", "soc"):
            continue
        if field in found:
            raise PayloadError("bad_field", f"[{index}].n = {name!r}: appears twice")
        time_s = base_time + _number(record.get("t", 0.0), f"[{index}].t", -1e11, 1e11)
        found[field] = (time_s, _senml_value(record, field, index))
    for field in ("generation", "consumption"):
        if field not in found:
            raise PayloadError("bad_field", f"no record named {field!r}")
    times = {t for t, _ in found.values()}
    if len(times) != 1:
        raise PayloadError("bad_field", "the records of one payload must share one time")
    time_s = _number(times.pop(), "time (bt + t)", 1.0, 1e11)
    soc = found.get("soc", (None, None))[1]
    return Sample(time_s, found["generation"][1], found["consumption"][1], soc)


def _senml_value(record: dict, field: str, index: int) -> float:
    unit = record.get("u")
    if field == "soc":
        if unit not in SOC_UNITS or "v" not in record:
            raise PayloadError("bad_field", f"[{index}] soc: needs a value v with unit "
                                            f"'/' or '%', got u = {unit!r}")
        return _number(record["v"] * SOC_UNITS[unit] if _is_num(record["v"]) else record["v"],
                       f"[{index}].v", 0.0, 1.0)
    if unit not in SENML_UNITS:
        raise PayloadError("bad_field", f"[{index}].u = {unit!r}: {field} must be in Wh or kWh")
    if "s" not in record:
        raise PayloadError("bad_field", f"[{index}] {field}: the register must be a sum (s)")
    value = record["s"]
    return _number(value * SENML_UNITS[unit] if _is_num(value) else value, f"[{index}].s")


def _is_num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_payload(payload: bytes, fmt: str) -> Sample:
    """One payload -> a :class:`Sample`, or :class:`PayloadError` naming what is wrong."""
    data = _json(payload)
    return _parse_senml(data) if fmt == "senml" else _parse_json(data)


# -- the feed ----------------------------------------------------------------------------------

class RegisterFeed:
    """Samples of one meter and the frozen boundary values (see the module doc)."""

    def __init__(self, fmt: str = "json", stale_after_s: float = 300.0,
                 max_samples: int = MAX_SAMPLES):
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r}: must be one of {', '.join(FORMATS)}")
        self.fmt, self.stale_after_s, self.max_samples = fmt, stale_after_s, max_samples
        self.samples: list[Sample] = []
        self.frozen: dict[int, tuple[float, float]] = {}
        self.counters: collections.Counter[str] = collections.Counter()
        self.last_error: str | None = None

    @property
    def floor_s(self) -> float:
        """The latest frozen boundary: samples at or before it cannot change a reading."""
        return max(self.frozen, default=-math.inf)

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def offer(self, payload: bytes, now_s: float) -> str:
        """Take one payload: ``"accepted"``, ``"duplicate"`` or the drop reason (counted)."""
        try:
            sample = parse_payload(payload, self.fmt)
        except PayloadError as exc:
            self.last_error = str(exc)
            return self._drop(exc.reason)
        return self.add(sample, now_s)

    def add(self, sample: Sample, now_s: float) -> str:
        if sample.time_s > now_s + FUTURE_TOLERANCE_S:
            return self._drop("future")
        if sample.time_s <= self.floor_s:
            return self._drop("late")
        times = [s.time_s for s in self.samples]
        at = bisect.bisect_left(times, sample.time_s)
        if at < len(times) and times[at] == sample.time_s:
            if self.samples[at] == sample:
                self.counters["samples_duplicate"] += 1
                return "duplicate"
            return self._drop("conflict")
        before = self.samples[at - 1] if at else None
        after = self.samples[at] if at < len(times) else None
        floor = self.frozen.get(int(self.floor_s)) if self.frozen else None
        high = after.registers if after else None
        if not (_ordered(before.registers if before else None, sample.registers, high)
                and _ordered(floor, sample.registers, high)):
            return self._drop("not_monotonic")
        if (before and sample.time_s - before.time_s < MIN_SPACING_S) or \
                (after and after.time_s - sample.time_s < MIN_SPACING_S):
            return self._drop("too_frequent")
        self.samples.insert(at, sample)
        self.counters["samples_accepted"] += 1
        if len(self.samples) > self.max_samples:
            del self.samples[0]
            self.counters["samples_pruned"] += 1
        return "accepted"

    def _drop(self, reason: str) -> str:
        self.counters[f"samples_dropped_{reason}"] += 1
        return reason

    def reading(self, interval_start_s: int, interval_s: int, now_s: float) -> Reading:
        """The interval's energy from the registers; freezes both boundaries."""
        end = interval_start_s + interval_s
        first = self._boundary(interval_start_s, now_s)
        last = self._boundary(end, now_s)
        times = [s.time_s for s in self.samples]
        upto = bisect.bisect_right(times, end)
        soc = next((s.soc for s in reversed(self.samples[:upto]) if s.soc is not None), None)
        self._freeze(interval_start_s, first)
        self._freeze(end, last)
        generation = math.floor(last[0]) - math.floor(first[0])
        consumption = math.floor(last[1]) - math.floor(first[1])
        return Reading(interval_start_s, interval_s, generation, consumption, soc)

    def _boundary(self, at_s: int, now_s: float) -> tuple[float, float]:
        if at_s in self.frozen:
            return self.frozen[at_s]
        if not self.samples:
            raise MeterNoData("no reading has arrived from the meter yet")
        times = [s.time_s for s in self.samples]
        at = bisect.bisect_right(times, at_s)
        before = self.samples[at - 1] if at else None
        after = self.samples[at] if at < len(times) else None
        if before is None:              # listening started after the boundary: count from here
            return after.registers
        if before.time_s == at_s:
            return before.registers
        if after is not None:
            share = (at_s - before.time_s) / (after.time_s - before.time_s)
            return tuple(b + share * (a - b) for b, a in zip(before.registers, after.registers))
        age = now_s - before.time_s
        if age > self.stale_after_s:
            raise MeterStale(f"the latest reading is {age:.0f} s old (stale after "
                             f"{self.stale_after_s:g} s); none after {at_s} yet")
        return before.registers          # held: what comes after is the next interval's

    def _freeze(self, at_s: int, value: tuple[float, float]) -> None:
        if at_s in self.frozen:
            return
        self.frozen[at_s] = value
        for old in sorted(self.frozen)[:-FROZEN_KEPT]:
            del self.frozen[old]
        floor = self.floor_s            # samples before the last one at or before it are spent
        times = [s.time_s for s in self.samples]
        keep_from = max(0, bisect.bisect_right(times, floor) - 1)
        del self.samples[:keep_from]


def _ordered(low, value, high) -> bool:
    return all((low is None or lo <= v) and (high is None or v <= hi)
               for lo, v, hi in zip(low or (None, None), value, high or (None, None)))
