"""The meter interface a node reads from (FR-06), and the meters that implement it.

Real firmware implements :class:`Meter` over its metering chip; the simulator uses
:class:`ProfileMeter`; :class:`CsvReplayMeter` replays recorded readings.  A reading covers one
trading interval: energy generated and consumed in watt-hours, and the battery's state of charge
when there is one.

Readings a node cannot forge: a smart meter signs its readings with its own Ed25519 key,
separate from the node key.  A :class:`Reading` carries that signature (``meter_key``,
``meter_sig``: the meter's signature of :meth:`Reading.meter_reading`, the ledger's
``MeterReading``); :class:`SigningMeter` adds it to the readings of any meter (a replay or
simulated meter standing in for a signing one).  A node configured with ``[meter] trusted_keys``
mints only from readings signed by one of them (:mod:`p2pnode.minting`).
"""

from __future__ import annotations

import abc
import csv
import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path

from ledger import MeterReading, SigningKey
from p2pnode.errors import ConfigError
from p2pnode.files import CSV_MAX_BYTES, read_bounded

__all__ = ["Reading", "Meter", "ProfileMeter", "CsvReplayMeter", "SigningMeter"]


@dataclasses.dataclass(frozen=True)
class Reading:
    interval_start_s: int
    interval_s: int
    generation_wh: int
    consumption_wh: int
    soc: float | None = None  # battery state of charge 0..1, None without a battery
    meter_key: bytes = b""    # the signing meter's public key (empty: an unsigned reading)
    meter_sig: bytes = b""    # its signature of ``meter_reading(meter_key).signing_bytes()``

    def __post_init__(self):
        for name in ("interval_s", "generation_wh", "consumption_wh"):
            if getattr(self, name) < 0:
                raise ValueError(f"Reading.{name} must not be negative")
        if self.soc is not None and not 0.0 <= self.soc <= 1.0:
            raise ValueError("Reading.soc must be between 0 and 1")

    @property
    def net_wh(self) -> int:
        """Generation minus consumption: positive is surplus, negative is deficit."""
        return self.generation_wh - self.consumption_wh

    def meter_reading(self, meter: bytes) -> MeterReading:
        """The ledger's signed form of this reading, as meter ``meter`` signs it."""
        return MeterReading(meter, self.interval_start_s, self.interval_s, self.generation_wh,
                            self.consumption_wh)

    def signed_by(self, key: SigningKey) -> Reading:
        """This reading with meter ``key``'s signature."""
        signature = key.sign(self.meter_reading(key.public).signing_bytes())
        return dataclasses.replace(self, meter_key=key.public, meter_sig=signature)


class Meter(abc.ABC):
    """What the node needs from a meter."""

    @abc.abstractmethod
    def read(self, interval_start_s: int, interval_s: int) -> Reading:
        """The reading for the interval starting at ``interval_start_s`` (unix seconds)."""

    def substeps(self, interval_start_s: int, interval_s: int, substep_s: int
                 ) -> list[tuple[int, int]] | None:
        """(generation Wh, consumption Wh) of each ``substep_s`` of the interval, summing to
        its reading; None when the meter measures whole intervals only (delivery is then
        measured as if flat over the interval)."""
        return None


class ProfileMeter(Meter):
    """A simulated meter playing per-interval generation and consumption arrays."""

    def __init__(self, start_s: int, interval_s: int, generation_wh: Sequence[int],
                 consumption_wh: Sequence[int], substeps_wh=None):
        if len(generation_wh) != len(consumption_wh):
            raise ConfigError("ProfileMeter: generation and consumption have different lengths")
        self.start_s, self.interval_s = start_s, interval_s
        self.generation_wh, self.consumption_wh = generation_wh, consumption_wh
        # optional (generation, consumption) arrays [interval, sub-step], each interval's row
        # summing to its reading
        self.substeps_wh = substeps_wh

    def read(self, interval_start_s: int, interval_s: int) -> Reading:
        index, rest = divmod(interval_start_s - self.start_s, self.interval_s)
        if rest or interval_s != self.interval_s or not 0 <= index < len(self.generation_wh):
            raise ConfigError(f"ProfileMeter has no interval starting at {interval_start_s}")
        return Reading(interval_start_s, interval_s, int(self.generation_wh[index]),
                       int(self.consumption_wh[index]))

    def substeps(self, interval_start_s: int, interval_s: int, substep_s: int
                 ) -> list[tuple[int, int]] | None:
        if self.substeps_wh is None:
            return None
        index = (interval_start_s - self.start_s) // self.interval_s
        generation, consumption = self.substeps_wh
        if interval_s // substep_s != len(generation[index]):
            raise ConfigError(f"ProfileMeter has {len(generation[index])} sub-steps per "
                              f"interval, not {interval_s // substep_s}")
        return [(int(g), int(c)) for g, c in zip(generation[index], consumption[index])]


class CsvReplayMeter(Meter):
    """Replays a CSV with columns ``interval_start_s,generation_wh,consumption_wh[,soc]``."""

    COLUMNS = ("interval_start_s", "generation_wh", "consumption_wh")

    def __init__(self, path: Path, interval_s: int):
        self.path, self.interval_s = Path(path), interval_s
        self.readings: dict[int, Reading] = {}
        try:
            text = read_bounded(self.path, CSV_MAX_BYTES, "meter CSV").decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read ({exc.strerror})") from exc
        except UnicodeDecodeError:
            raise ConfigError(f"{self.path}: not UTF-8 text") from None
        self._load(csv.DictReader(io.StringIO(text, newline="")))

    def _load(self, rows: csv.DictReader) -> None:
        missing = [c for c in self.COLUMNS if c not in (rows.fieldnames or ())]
        if missing:
            raise ConfigError(f"{self.path}: missing column {missing[0]!r}")
        for line, row in enumerate(rows, start=2):
            reading = self._parse(row, line)
            if reading.interval_start_s in self.readings:
                raise ConfigError(f"{self.path}:{line}: interval_start_s "
                                  f"{reading.interval_start_s} appears twice")
            self.readings[reading.interval_start_s] = reading

    def _parse(self, row: dict, line: int) -> Reading:
        values = {}
        for column in self.COLUMNS:
            try:
                values[column] = int(row[column])
            except (TypeError, ValueError):
                raise ConfigError(f"{self.path}:{line}: column {column!r}: "
                                  f"expected an integer, got {row[column]!r}") from None
        soc = row.get("soc") or None
        try:
            return Reading(values["interval_start_s"], self.interval_s, values["generation_wh"],
                           values["consumption_wh"], float(soc) if soc is not None else None)
        except ValueError as exc:
            raise ConfigError(f"{self.path}:{line}: {exc}") from None

    def read(self, interval_start_s: int, interval_s: int) -> Reading:
        reading = self.readings.get(interval_start_s)
        if reading is None or interval_s != self.interval_s:
            raise ConfigError(f"{self.path}: no reading for interval {interval_start_s}")
        return reading


class SigningMeter(Meter):
    """Signs every reading of ``meter`` with the meter key ``key`` (as a smart meter does)."""

    def __init__(self, meter: Meter, key: SigningKey):
        self.meter, self.key = meter, key

    def read(self, interval_start_s: int, interval_s: int) -> Reading:
        return self.meter.read(interval_start_s, interval_s).signed_by(self.key)

    def substeps(self, interval_start_s: int, interval_s: int, substep_s: int
                 ) -> list[tuple[int, int]] | None:
        return self.meter.substeps(interval_start_s, interval_s, substep_s)
