"""A member's signed interval report to its feeder node, and the member side that sends it.

After every interval each member node of a feeder tells the feeder node what its meter read:
a :class:`FeederReport` (generation and consumption in Wh of one interval, the energy tokens
the node minted for it, and -- from a signing smart meter -- the meter's key and signature of the
reading), signed with the node's key and posted to ``POST /p2p/v1/feeder/report`` on the feeder node's peer endpoint.
The feeder node (:mod:`p2pnode.feeder`) answers with JSON: ``{"status": "accepted",
"interval_start_s": ...}`` (200) or ``{"status": "rejected", "reason": ..., "retry": ...}``.

A report has no nonce and no send time on purpose: one member has exactly one report per
interval, so a retransmission is the same bytes (Ed25519 signatures are deterministic) and the
feeder node can answer it as the first time, while a different report for the same member and
interval is a conflict it refuses.  The ``feeder`` name binds a report to one feeder.

Member side (the shell): :class:`ReportingMeter` hands every reading the node takes to a
listener, so the report carries exactly the reading the node traded with;
:class:`FeederReporter` seals it and sends it in its own task.  Losing a report never blocks
or stops the node: every post has a timeout, only the last :data:`MAX_PENDING_REPORTS`
intervals are kept for retries, and every outcome is counted in the node's counters
(``feeder_report_*``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Annotated

import aiohttp

from ledger import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Bytes, Range, Sealed, SignedMessage, SigningKey, Text, seal
from ledger.sealed import ENVELOPE_OVERHEAD
from p2pnode.meter import Meter, Reading

__all__ = [
    "FEEDER_REPORT_PATH", "FeederReport", "FeederReporter", "MAX_REPORT_BYTES",
    "MAX_PENDING_REPORTS", "ReportingMeter", "report_for",
]

log = logging.getLogger(__name__)

FEEDER_REPORT_PATH = "/p2p/v1/feeder/report"
REPORT_TYPE_ID = 70                      # unused by ledger (1-24), offers (50), negotiation (60-61)
MAX_REPORT_BODY_BYTES = 384
MAX_REPORT_BYTES = MAX_REPORT_BODY_BYTES + ENVELOPE_OVERHEAD   # a sealed report on the wire
MAX_REPORT_WH = 10**9                    # codec bound; the feeder node checks the power too
MAX_PENDING_REPORTS = 4                  # intervals a member keeps retrying
REPORT_TIMEOUT_S = 2.0                   # per post (wall seconds)
RETRY_AFTER_S = 2.0                      # wall seconds between rounds of retries
FLUSH_TIMEOUT_S = 1.0                    # last attempt on stop
JSON_TYPE = "application/json"


@dataclasses.dataclass(frozen=True)
class FeederReport(SignedMessage):
    """One member's metered energy over one interval, for the feeder node's accounting."""

    TYPE = REPORT_TYPE_ID
    SIGNER = "member"
    MAX_BYTES = MAX_REPORT_BODY_BYTES
    member: Annotated[bytes, Bytes(PUBLIC_KEY_BYTES)]
    feeder: Annotated[str, Text(32)]
    interval_start_s: Annotated[int, Range(0, 2**63 - 1)]
    interval_s: Annotated[int, Range(1, 86400)]
    generation_wh: Annotated[int, Range(0, MAX_REPORT_WH)]
    consumption_wh: Annotated[int, Range(0, MAX_REPORT_WH)]
    minted_wh: Annotated[int, Range(0, MAX_REPORT_WH)] = 0   # tokens minted for the interval
    meter: Annotated[bytes, Bytes(max=PUBLIC_KEY_BYTES)] = b""   # the signing meter's key
    meter_sig: Annotated[bytes, Bytes(max=SIGNATURE_BYTES)] = b""   # its signature of the reading


def report_for(reading: Reading, feeder: str, key: SigningKey,
               minted_wh: int = 0) -> Sealed[FeederReport]:
    """The sealed report of one meter reading (with the meter's signature when it has one)."""
    return seal(FeederReport(key.public, feeder, reading.interval_start_s, reading.interval_s,
                             reading.generation_wh, reading.consumption_wh, minted_wh,
                             reading.meter_key, reading.meter_sig), key)


class ReportingMeter(Meter):
    """Passes readings through from ``meter`` and hands each one to ``listener`` (if set).

    A listener that fails is logged and does not affect the reading the node gets.
    """

    def __init__(self, meter: Meter, listener: Callable[[Reading], None] | None = None):
        self.meter, self.listener = meter, listener

    def read(self, interval_start_s: int, interval_s: int) -> Reading:
        reading = self.meter.read(interval_start_s, interval_s)
        if self.listener is not None:
            try:
                self.listener(reading)
            except Exception:   # a report is never worth a failed interval
                log.exception("feeder report of interval %s not queued", interval_start_s)
        return reading


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one post came to: ``accepted``, a refusal ``reason``, or ``retry`` later."""

    accepted: bool
    retry: bool
    reason: str


class FeederReporter:
    """Sends this node's reports to the feeder node at ``url`` from its own task.

    ``reading()`` (sync, called from the meter) seals and queues; :meth:`run` posts the queue,
    oldest first, until each report is accepted or refused for good; a report that got no
    answer, or a "try later" (the feeder's clock behind ours, the feeder starting), is retried
    while it is among the last ``keep`` intervals.  ``counters`` is where outcomes are counted
    (the node's counters, so they show in its metrics).
    """

    def __init__(self, key: SigningKey, feeder: str, url: str,
                 counters: collections.Counter | None = None, *, keep: int = MAX_PENDING_REPORTS,
                 timeout_s: float = REPORT_TIMEOUT_S, retry_after_s: float = RETRY_AFTER_S,
                 minted: Callable[[int], int] | None = None):
        self.key, self.feeder = key, feeder
        self.minted = minted   # interval start -> tokens the node minted (read when sent)
        self.url = url.rstrip("/") + FEEDER_REPORT_PATH
        self.counters = counters if counters is not None else collections.Counter()
        self.keep, self.timeout_s, self.retry_after_s = keep, timeout_s, retry_after_s
        self.pending: dict[int, Sealed[FeederReport] | Reading] = {}
        self.session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()

    def reading(self, reading: Reading) -> None:
        # sealed when first sent: the node mints from this reading right after reading it
        self.pending[reading.interval_start_s] = reading
        self.counters["feeder_report_queued"] += 1
        while len(self.pending) > self.keep:
            oldest = min(self.pending)
            del self.pending[oldest]
            self.counters["feeder_report_given_up"] += 1
            log.warning("feeder report of interval %s given up (no answer in time)", oldest)
        self._wake.set()

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(headers={"Content-Type": "application/x-p2p-energy"})

    async def stop(self) -> None:
        """One last bounded attempt at what is pending, then close."""
        if self.session is None:
            return
        if self.pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_TIMEOUT_S):
                    await self.send_pending()
        await self.session.close()
        self.session = None

    async def run(self) -> None:
        """Send what is pending until cancelled."""
        while True:
            if not self.pending:
                await self._wake.wait()
            self._wake.clear()
            await self.send_pending()
            if self.pending:   # wait for the next reading or the next round of retries
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.retry_after_s):
                        await self._wake.wait()

    async def send_pending(self) -> None:
        for start in sorted(self.pending):
            sealed = self.pending.get(start)
            if sealed is None:
                continue
            if isinstance(sealed, Reading):   # sealed once: a retry sends the same bytes
                minted = self.minted(start) if self.minted is not None else 0
                sealed = self.pending[start] = report_for(sealed, self.feeder, self.key, minted)
            outcome = await self.post(sealed.raw)
            if outcome.retry:
                self.counters["feeder_report_retry"] += 1
                continue
            if self.pending.get(start) is sealed:
                del self.pending[start]
            if outcome.accepted:
                self.counters["feeder_report_accepted"] += 1
            else:
                self.counters[f"feeder_report_rejected_{outcome.reason}"] += 1
                log.warning("feeder node refused the report of interval %s: %s", start,
                            outcome.reason)

    async def post(self, raw: bytes) -> Outcome:
        if self.session is None:
            raise RuntimeError("FeederReporter is not started")
        self.counters["feeder_report_posts"] += 1
        try:
            async with self.session.post(self.url, data=raw,
                                         timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as resp:
                text = await resp.content.read(4096)
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            return Outcome(False, True, "no_answer")
        return outcome_of(status, text)


def outcome_of(status: int, body: bytes) -> Outcome:
    """The feeder node's answer: 200 accepted; 425 (too early), 503 and other 5xx: retry;
    anything else is a refusal (a node without the feeder role answers 404)."""
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        answer = None
    retry = status in (425, 503) or status >= 500
    if not isinstance(answer, dict):
        return Outcome(False, retry, f"http_{status}")
    if status == 200 and answer.get("status") == "accepted":
        return Outcome(True, False, "accepted")
    reason = answer.get("reason")
    reason = reason if isinstance(reason, str) and reason.isidentifier() else f"http_{status}"
    return Outcome(False, retry, reason[:32])
