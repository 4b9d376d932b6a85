"""The peer endpoint of the node shell: every message a peer sends, checked and answered.

A request is parsed, addressed to this node, admitted by the replay guard (a retransmission
gets the cached reply; a replay or a stale or future message is dropped and counted), then
answered by the seller's or the track record's core in one ledger transaction that commits
before the reply is sealed.  Dropped messages are counted as ``peer_dropped_<reason>``, denials
as ``denied_to_peer_<reason>``.  A mixin of :class:`p2pnode.node.Node`.
"""

from __future__ import annotations

from ledger import seal
from p2pnode.negotiation import Kind, PeerReply, PeerRequest, Status, parse_request

__all__ = ["PeerEndpointSide"]


class PeerEndpointSide:
    """:meth:`_handle_peer`: one raw request in, the sealed reply (or None: dropped) out."""

    def _handle_peer(self, raw: bytes) -> bytes | None:
        """Answer one peer request (sync: one ledger step, no awaits); None drops it."""
        cached = self.guard.replay_of(raw, self._now_ms())   # bytes already checked and answered
        if cached is not None:
            self.counters["retransmissions_answered"] += 1
            return cached
        request = parse_request(raw)
        if isinstance(request, str):
            return self._drop(request)
        message = request.message
        if message.recipient != self.public:
            return self._drop("wrong_recipient")
        admitted = self.guard.admit(request, self._now_ms())
        if isinstance(admitted, bytes):
            self.counters["retransmissions_answered"] += 1
            return admitted
        if isinstance(admitted, str):
            return self._drop(admitted)
        try:
            with self.ledger.batch():   # the step's writes: one commit, before the reply exists
                reply = self._answer(message)
        except Exception:
            self.guard.forget(request)
            raise
        sealed = seal(reply, self.key).raw
        self.guard.remember(request, sealed)
        return sealed

    def _drop(self, reason: str) -> None:
        self.counters[f"peer_dropped_{reason}"] += 1
        return None

    def _answer(self, request: PeerRequest) -> PeerReply:
        handler = {Kind.REQUEST: self._answer_request, Kind.CONFIRM: self._answer_confirm,
                   Kind.DELIVER: self._answer_deliver,
                   Kind.RECORD: self._answer_record}.get(request.kind)
        if handler is None:   # SETTLE: the buyer-proposed settlement of nodes before delivery
            return self._reply(request, Status.DENIED, "settled_by_seller")
        return handler(request)

    def _reply(self, request: PeerRequest, status: Status, reason: str = "", energy_wh: int = 0,
               blocks: tuple[bytes, ...] = ()) -> PeerReply:
        if status is Status.DENIED:
            self.counters[f"denied_to_peer_{reason}"] += 1
        return PeerReply(self.public, request.sender, request.trade_id, request.nonce, status,
                         reason, energy_wh, blocks)
