"""The retransmission timer of DHT requests: measured round trips, not a constant.

A fixed time-out is wrong both ways: on a congested link or a busy board replies arrive after
it, every one counts as lost, the request is resent and the contact dropped (more traffic, more
delay); and raising the constant makes every truly lost datagram cost more everywhere.
:class:`RetransmitTimer` follows TCP's timer (RFC 6298, Jacobson/Karels): a smoothed round trip
``srtt`` and its variation ``rttvar`` from the replies the node gets, and a time-out of
``srtt + 4 * rttvar`` kept between a floor (the configured ``rpc_timeout_s``: with fast replies
nothing changes) and a ceiling.  Each resend of one request waits twice as long as the attempt
before (exponential back-off, RFC 6298 section 5.5).

Samples are unambiguous (Karn's rule) because every attempt of a request carries its own
message id: a reply names the attempt it answers.  Replies that arrive after their request was
given up still give a sample -- they are exactly the evidence that the time-out is too short.
"""

from __future__ import annotations

__all__ = ["RetransmitTimer"]

ALPHA = 1 / 8       # RFC 6298 gains
BETA = 1 / 4
K = 4


class RetransmitTimer:
    """Smoothed round-trip time and the time-out derived from it, for one node."""

    def __init__(self, floor_s: float, ceiling_s: float):
        if not 0 < floor_s <= ceiling_s:
            raise ValueError(f"need 0 < floor_s <= ceiling_s, got {floor_s}, {ceiling_s}")
        self.floor_s, self.ceiling_s = floor_s, ceiling_s
        self.srtt_s: float | None = None
        self.rttvar_s = 0.0
        self.samples = 0

    def sample(self, rtt_s: float) -> None:
        """Fold one measured round trip (seconds) into the estimate."""
        if not rtt_s >= 0:
            return
        if self.srtt_s is None:
            self.srtt_s, self.rttvar_s = rtt_s, rtt_s / 2
        else:
            self.rttvar_s = (1 - BETA) * self.rttvar_s + BETA * abs(self.srtt_s - rtt_s)
            self.srtt_s = (1 - ALPHA) * self.srtt_s + ALPHA * rtt_s
        self.samples += 1

    def timeout_s(self, attempt: int = 0) -> float:
        """How long attempt ``attempt`` (0 = the first send) of a request waits for its reply."""
        base = self.floor_s if self.srtt_s is None else self.srtt_s + K * self.rttvar_s
        return min(self.ceiling_s, max(self.floor_s, base) * 2 ** attempt)
