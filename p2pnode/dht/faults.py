"""Fault injection for the DHT's UDP transport: datagram loss, duplication and delay, seeded.

:class:`FaultyTransport` wraps the datagram transport a protocol writes to.  Every datagram the
node *sends* is dropped with probability ``loss``, otherwise sent once more with probability
``duplicate``, and each copy is delayed by a uniform time in ``[delay_min_s, delay_max_s]``
(delayed copies may overtake each other: reordering comes with delay).  Faults on the sending
side of every node cover both directions of every exchange.  The random stream is
``random.Random`` seeded with the plan's seed and the node's id, so a run is reproducible.
The plan can be swapped at run time (``transport.plan = ...``) to switch faults on and off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random

__all__ = ["FaultPlan", "FaultyTransport"]


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    loss: float = 0.0
    duplicate: float = 0.0
    delay_min_s: float = 0.0
    delay_max_s: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"FaultPlan.{name} must be within [0, 1]")
        if not 0.0 <= self.delay_min_s <= self.delay_max_s:
            raise ValueError("FaultPlan needs 0 <= delay_min_s <= delay_max_s")


class FaultyTransport:
    """A datagram transport that loses, duplicates and delays what is sent through it."""

    def __init__(self, inner: asyncio.DatagramTransport, plan: FaultPlan | None, stream: str):
        self.inner = inner
        self.plan = plan
        self.sent = self.lost = self.duplicated = 0
        self._stream = stream
        self._rng = random.Random(f"{plan.seed if plan else 0}:{stream}")
        self._pending: set[asyncio.TimerHandle] = set()

    def set_plan(self, plan: FaultPlan | None) -> None:
        """Switch faults (and reseed the random stream from the new plan)."""
        self.plan = plan
        self._rng = random.Random(f"{plan.seed if plan else 0}:{self._stream}")

    def sendto(self, data: bytes, addr) -> None:
        plan = self.plan
        self.sent += 1
        if plan is None:
            self.inner.sendto(data, addr)
            return
        if self._rng.random() < plan.loss:
            self.lost += 1
            return
        copies = 1
        if self._rng.random() < plan.duplicate:
            copies, self.duplicated = 2, self.duplicated + 1
        for _ in range(copies):
            self._send_later(data, addr, self._rng.uniform(plan.delay_min_s, plan.delay_max_s))

    def _send_later(self, data: bytes, addr, delay_s: float) -> None:
        if delay_s <= 0:
            self.inner.sendto(data, addr)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._pending.discard(handle)
            if not self.inner.is_closing():
                self.inner.sendto(data, addr)

        handle = loop.call_later(delay_s, fire)
        self._pending.add(handle)

    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def close(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        self.inner.close()

    def get_extra_info(self, name, default=None):
        return self.inner.get_extra_info(name, default)
