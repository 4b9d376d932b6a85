"""Negotiation between a buyer and a seller: the signed messages and their rules, pure.

No sockets and no clock here (times are passed in); :mod:`p2pnode.peer` carries the messages
over HTTP and :mod:`p2pnode.node` drives them.

The exchange (SRS 3.2.7), always started by the buyer, one HTTP request/response per step::

    buyer                                   seller
    REQUEST(offer, energy, price,   ->      check offer, constraints, tokens (FR-10) and the
            deposits: its credit)               buyer's credit (p2pnode.trading.credit)
                                    <-      ACCEPTED(energy <= asked, TRADE proposal block)
                                            or DENIED(reason): the buyer tries its next candidate
    check the proposal, agree to it on the own ledger (spends credit, FR-10)
    CONFIRM(agreement block)        ->      store the agreement: the trade is co-signed
                                    <-      DONE
    ... after the interval, the seller measured the delivery ...
    DONE(DELIVERY agreement)        <-      DELIVER(DELIVERY proposal, MINT block): sent by
    (the buyer checks it: see               the seller to the endpoint the buyer named in its
    p2pnode.trading.settlement)             REQUEST (``reply_to``)

Track records (:mod:`p2pnode.trackrecord`), asked by a buyer of a seller it may trade with::

    RECORD(from_seq)                ->      a page of its chain from from_seq (0: its recent
                                    <-      window), each DELIVERY proposal followed by its
    DONE(energy_wh = head seq, blocks)      buyer's agreement; the buyer verifies the page

A SETTLE (the buyer proposes the settlement) is what nodes before forward trading sent; it is
still answered, so a buyer's pending ex-post settlement from an old ledger completes.

Idempotency and replays
    Every request carries a fresh random ``nonce``, the ``trade_id`` and the sender's clock
    (``sent_at_ms``).  A retransmission is the *same bytes*; the receiver answers it with the
    reply it gave the first time (:class:`ReplayGuard` remembers replies by nonce for
    ``window_ms``), so a duplicate never acts twice.  A request whose clock is further than
    ``window_ms`` from the receiver's is refused as a replay (``stale``/``future``): once its
    nonce may have been forgotten it can no longer be accepted.  Below that, the ledger itself is
    idempotent by trade id and refuses a second settlement of a trade, so even a message that
    slips past the guard cannot settle twice.

Every message is signed by its sender and names its recipient, so a message for one node cannot
be replayed to another, and a reply is checked to come from the node that was asked.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import hashlib
from typing import Annotated

from ledger import (
    PUBLIC_KEY_BYTES, BlockBody, BlockType, Bytes, DecodeError, Items, Range, Sealed,
    SignedMessage, Text, TradePayload, open_checked, open_envelope,
)
from ledger.block import MAX_BLOCK_BYTES

__all__ = [
    "Kind", "MAX_PEER_MESSAGE_BYTES", "PeerReply", "PeerRequest", "ReplayGuard", "Status",
    "check_proposal", "check_reply", "parse_request",
]

TRADE_ID_BYTES = 16
NONCE_BYTES = 16
MAX_BLOCKS = 2
MAX_RECORD_BLOCKS = 48   # a RECORD page (its bytes are bounded by MAX_PEER_MESSAGE_BYTES)
MAX_SEALED_BLOCK_BYTES = MAX_BLOCK_BYTES + 96  # envelope and signature
MAX_PEER_MESSAGE_BYTES = 8192
MAX_REASON_CHARS = 64
MAX_ENDPOINT_CHARS = 256
U63 = Annotated[int, Range(0, 2**63 - 1)]
PubKey = Annotated[bytes, Bytes(PUBLIC_KEY_BYTES)]
Blocks = Annotated[tuple[Annotated[bytes, Bytes(max=MAX_SEALED_BLOCK_BYTES)], ...],
                   Items(MAX_BLOCKS)]
ReplyBlocks = Annotated[tuple[Annotated[bytes, Bytes(max=MAX_SEALED_BLOCK_BYTES)], ...],
                        Items(MAX_RECORD_BLOCKS)]


class Kind(enum.IntEnum):
    REQUEST = 1   # buy energy_wh of offer_id at price: the seller proposes or denies; blocks =
                  # up to 2 of the buyer's DEPOSIT blocks, its credit (p2pnode.trading.credit)
    CONFIRM = 2   # blocks = (buyer's agreement to the seller's trade proposal,)
    SETTLE = 3    # blocks = (buyer's trade agreement, buyer's settlement proposal)
    DELIVER = 4   # from the seller: blocks = (DELIVERY settlement proposal, seller's MINT block)
    RECORD = 5    # to a seller: a page of its chain from from_seq (its track record)


class Status(enum.IntEnum):
    ACCEPTED = 1  # REQUEST accepted: blocks = (seller's trade proposal,), energy_wh granted
    DENIED = 2    # refused; reason says why (the buyer moves on)
    DONE = 3      # CONFIRM stored / SETTLE or DELIVER agreed: blocks = (its agreement,);
                  # RECORD: energy_wh = the seller's head seq, blocks = the page


@dataclasses.dataclass(frozen=True)
class PeerRequest(SignedMessage):
    TYPE = 60
    SIGNER = "sender"
    MAX_BYTES = MAX_PEER_MESSAGE_BYTES
    sender: PubKey
    recipient: PubKey
    kind: Kind
    trade_id: Annotated[bytes, Bytes(TRADE_ID_BYTES)]
    nonce: Annotated[bytes, Bytes(NONCE_BYTES)]
    sent_at_ms: U63
    offer_id: Annotated[bytes, Bytes(max=32)]
    interval_start_s: U63
    energy_wh: U63
    price_micro_per_kwh: U63
    blocks: Blocks = ()
    reply_to: Annotated[str, Text(MAX_ENDPOINT_CHARS)] = ""   # the sender's peer endpoint
    from_seq: U63 = 0   # RECORD: the first block asked (0: the seller's recent window)

    def validate(self) -> str | None:
        if self.sender == self.recipient:
            return "sender and recipient are the same key"
        expected = {Kind.REQUEST: None, Kind.CONFIRM: 1, Kind.SETTLE: 2, Kind.DELIVER: 2,
                    Kind.RECORD: 0}[self.kind]
        if expected is not None and len(self.blocks) != expected:
            return f"a {self.kind.name} carries {expected} block(s), got {len(self.blocks)}"
        if self.kind is Kind.REQUEST and self.energy_wh == 0:
            return "a REQUEST asks for at least 1 Wh"
        return None


@dataclasses.dataclass(frozen=True)
class PeerReply(SignedMessage):
    TYPE = 61
    SIGNER = "sender"
    MAX_BYTES = MAX_PEER_MESSAGE_BYTES
    sender: PubKey
    recipient: PubKey
    trade_id: Annotated[bytes, Bytes(TRADE_ID_BYTES)]
    nonce: Annotated[bytes, Bytes(NONCE_BYTES)]   # the request's nonce: ties reply to request
    status: Status
    reason: Annotated[str, Text(MAX_REASON_CHARS)] = ""
    energy_wh: U63 = 0
    blocks: ReplyBlocks = ()


# -- checks ------------------------------------------------------------------------------------

def parse_request(raw: bytes) -> Sealed[PeerRequest] | str:
    """The sealed request in ``raw``, or the name of the reason it is dropped."""
    return open_checked(raw, PeerRequest, MAX_PEER_MESSAGE_BYTES)


def check_reply(raw: bytes, request: PeerRequest) -> Sealed[PeerReply] | str:
    """The reply to ``request`` in ``raw``, or why it is not one (forged, for another request)."""
    sealed = open_checked(raw, PeerReply, MAX_PEER_MESSAGE_BYTES)
    if isinstance(sealed, str):
        return sealed
    reply = sealed.message
    if (reply.sender, reply.recipient, reply.trade_id, reply.nonce) != (
            request.recipient, request.sender, request.trade_id, request.nonce):
        return "not_the_reply"
    return sealed


def check_proposal(raw: bytes, request: PeerRequest, granted_wh: int) -> Sealed[BlockBody] | str:
    """The seller's TRADE proposal in an ACCEPTED reply, if it is exactly what was asked for.

    The buyer agrees to nothing it did not request: same trade id, seller, buyer, interval,
    offer and price, and an energy of at most the requested amount (a seller may grant less).
    """
    try:
        block, signature_ok = open_envelope(raw, BlockBody)
    except DecodeError:
        return "malformed_block"
    body = block.message
    if not signature_ok or body.author != request.recipient:
        return "bad_block_signature"
    if body.type is not BlockType.TRADE or not body.is_proposal or body.link_key != request.sender:
        return "not_a_trade_proposal"
    trade: TradePayload = body.payload
    expected = (request.trade_id, request.recipient, request.sender, request.interval_start_s,
                request.price_micro_per_kwh, request.offer_id, granted_wh)
    actual = (trade.trade_id, trade.seller, trade.buyer, trade.interval_start_s,
              trade.price_micro_per_kwh, trade.offer_id, trade.energy_wh)
    if actual != expected or not 0 < trade.energy_wh <= request.energy_wh:
        return "proposal_differs"
    return block


# -- replay guard ------------------------------------------------------------------------------

class ReplayGuard:
    """Remembers recent requests by nonce: answers retransmissions, refuses replays.

    ``admit(request, now_ms)`` returns ``None`` for a new request (the caller handles it, then
    calls ``remember`` with its reply), the cached reply bytes for a retransmission of a request
    already answered, or a drop reason: ``stale``/``future`` when the sender's clock is more than
    ``window_ms`` off, ``nonce_reused`` when a nonce comes back with different content,
    ``in_progress`` while the first copy is still being handled, ``busy`` when *this sender*
    already has ``max_per_sender`` live entries (a flood from one key).

    A flood from many keys cannot lock honest senders out: when the guard holds
    ``max_entries``, the oldest entry is forgotten (counted in ``evicted``) to admit the new
    request.  A forgotten request could be replayed while still fresh -- and is then answered by
    the ledger, which is idempotent by trade id (a replayed REQUEST is denied
    ``trade_id_reused``, a replayed CONFIRM or SETTLE changes nothing), so nothing is settled
    twice; before, a full guard answered every honest request ``busy`` (about 420 signed requests
    per second from fresh keys kept it full).

    ``replay_of(raw, now_ms)`` answers a retransmission from its bytes alone, before they are
    decoded or their signature checked: only the very bytes of a request that was admitted --
    after its signature was checked -- and answered have a reply to give back, so the same
    bytes are never checked twice.
    """

    def __init__(self, window_ms: int, max_entries: int = 100_000, max_per_sender: int = 256):
        if window_ms <= 0 or max_entries <= 0 or max_per_sender <= 0:
            raise ValueError("ReplayGuard needs window_ms, max_entries and max_per_sender > 0")
        self.window_ms, self.max_entries = window_ms, max_entries
        self.max_per_sender = max_per_sender
        self.evicted = 0
        # nonce -> [expiry_ms, request hash, reply bytes or None while in progress, sender]
        self._seen: collections.OrderedDict[bytes, list] = collections.OrderedDict()
        self._answered: dict[bytes, bytes] = {}   # request hash -> nonce, once a reply is known
        self._per_sender: collections.Counter[bytes] = collections.Counter()

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, request: Sealed[PeerRequest], now_ms: int) -> bytes | str | None:
        message = request.message
        if message.sent_at_ms < now_ms - self.window_ms:
            return "stale"
        if message.sent_at_ms > now_ms + self.window_ms:
            return "future"
        entry = self._seen.get(message.nonce)
        if entry is not None:
            if entry[1] != request.hash:
                return "nonce_reused"
            return entry[2] if entry[2] is not None else "in_progress"
        self._expire(now_ms)
        if self._per_sender[message.sender] >= self.max_per_sender:
            return "busy"
        while len(self._seen) >= self.max_entries:
            self._drop(next(iter(self._seen)))
            self.evicted += 1
        # kept until no copy of this request can be fresh any more
        self._seen[message.nonce] = [message.sent_at_ms + self.window_ms, request.hash, None,
                                     message.sender]
        self._per_sender[message.sender] += 1
        return None

    def replay_of(self, raw: bytes, now_ms: int) -> bytes | None:
        """The reply given to exactly these request bytes, while they are fresh; else None."""
        digest = hashlib.sha256(raw).digest()
        entry = self._seen.get(self._answered.get(digest, b""))
        if entry is None or entry[1] != digest or entry[0] < now_ms:   # unknown, or stale now
            return None
        return entry[2]

    def remember(self, request: Sealed[PeerRequest], reply: bytes) -> None:
        entry = self._seen.get(request.message.nonce)
        if entry is not None and entry[1] == request.hash:
            entry[2] = reply
            self._answered[request.hash] = request.message.nonce

    def forget(self, request: Sealed[PeerRequest]) -> None:
        """Drop an entry whose handling failed, so a retransmission is handled afresh."""
        entry = self._seen.get(request.message.nonce)
        if entry is not None and entry[1] == request.hash and entry[2] is None:
            self._drop(request.message.nonce)

    def _drop(self, nonce: bytes) -> None:
        entry = self._seen.pop(nonce)
        self._answered.pop(entry[1], None)
        self._per_sender[entry[3]] -= 1
        if not self._per_sender[entry[3]]:
            del self._per_sender[entry[3]]

    def _expire(self, now_ms: int) -> None:
        # entries are inserted in arrival order; expiry follows sent_at_ms, close to that order
        while self._seen:
            nonce, entry = next(iter(self._seen.items()))
            if entry[0] >= now_ms:
                break
            self._drop(nonce)
