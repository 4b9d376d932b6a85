"""Token buckets: how much work an unknown peer may cause per second (pure, time passed in)."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; ``take(n, now)`` spends or refuses."""

    def __init__(self, rate: float, burst: float):
        if rate <= 0 or burst <= 0:
            raise ValueError("TokenBucket needs rate > 0 and burst > 0")
        self.rate, self.burst = rate, burst
        self._tokens = burst
        self._at: float | None = None

    def available(self, now: float) -> float:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return self._tokens

    def take(self, n: float, now: float) -> bool:
        """Spend ``n`` tokens if there are that many; False (nothing spent) otherwise."""
        if self.available(now) < n:
            return False
        self._tokens -= n
        return True
