"""Blocks of the hash-chained ledger and their payloads.

Every key has its own append-only chain (TrustChain style).  A block names its author, its
sequence number on the author's chain (1, 2, ...), the hash of the author's previous block
(:data:`GENESIS_HASH` for the first), a payload, an optional link to the counterparty's block and
the author's clock.  The block hash is the SHA-256 of its sealed (signed) bytes.

Unit conventions: energy in integer watt-hours (one energy token = 1 Wh), money in integer
micro-units of the currency ("µ"), prices in µ per kWh.  The cost of ``wh`` at ``price`` is
``wh * price // 1000`` µ (:func:`cost_micro`).

Kinds of block
    MINT        tokens for the surplus of one interval, from a signed meter reading
    DEPOSIT     credit paid in from outside, from a voucher signed by an issuer
    TRADE       a linked pair: the seller's *proposal* (spends tokens of the interval) and the
                buyer's *agreement* (spends credit); the payloads are identical
    SETTLEMENT  a linked pair after delivery: delivered vs agreed energy (transaction quality);
                the buyer is refunded the undelivered part, the seller is paid the delivered part.
                Two payloads: :class:`SettlementPayload` (proposed by the buyer: the ex-post
                market of ledger files written before forward trading) and
                :class:`DeliveryPayload` (proposed by the seller, whose meter measured the
                delivery: it also carries the duration and the seller's imbalance charge)
    GRID        the grid fallback of one interval: import and export
A *proposal* has ``link_seq == 0`` and names the counterparty in ``link_key``; an *agreement*
names the proposal by ``link_key``/``link_seq``/``link_hash``.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Annotated

from ledger.codec import Bytes, Message, Range, Text
from ledger.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from ledger.sealed import SignedMessage

__all__ = [
    "GENESIS_HASH", "BlockType", "BlockBody", "MeterReading", "CreditVoucher", "MintPayload",
    "DepositPayload", "TradePayload", "SettlementPayload", "DeliveryPayload", "GridPayload",
    "Payload",
    "cost_micro", "MAX_BLOCK_BYTES",
]

GENESIS_HASH = bytes(32)
MAX_BLOCK_BYTES = 2048
TRADE_ID_BYTES = 16
U63 = Range(0, 2**63 - 1)
PubKey = Annotated[bytes, Bytes(PUBLIC_KEY_BYTES)]
Signature = Annotated[bytes, Bytes(SIGNATURE_BYTES)]
Hash = Annotated[bytes, Bytes(32)]
TradeId = Annotated[bytes, Bytes(TRADE_ID_BYTES)]
Count = Annotated[int, U63]


def cost_micro(energy_wh: int, price_micro_per_kwh: int) -> int:
    """Money for ``energy_wh`` at a price per kWh, rounded down to whole µ."""
    return energy_wh * price_micro_per_kwh // 1000


def agreed_after(interval_start_s: int, interval_s: int, time_ms: int) -> bool:
    """Whether a trade of the interval starting at ``interval_start_s``, proposed or agreed at
    ``time_ms``, was traded once the interval was over: on metered energy (the ex-post market,
    the balancing round), so delivered in full at once."""
    return time_ms >= (interval_start_s + interval_s) * 1000


class BlockType(enum.IntEnum):
    MINT = 1
    DEPOSIT = 2
    TRADE = 3
    SETTLEMENT = 4
    GRID = 5


@dataclasses.dataclass(frozen=True)
class MeterReading(SignedMessage):
    """What a meter measured over one trading interval, signed by the meter's key."""

    TYPE = 10
    SIGNER = "meter"
    meter: PubKey
    interval_start_s: Count
    interval_s: Annotated[int, Range(1, 86400)]
    generation_wh: Count
    consumption_wh: Count


@dataclasses.dataclass(frozen=True)
class CreditVoucher(SignedMessage):
    """Credit paid in for ``account``, signed by an issuer (utility, payment provider)."""

    TYPE = 11
    SIGNER = "issuer"
    issuer: PubKey
    account: PubKey
    voucher_id: Annotated[bytes, Bytes(16)]
    amount_micro: Count


@dataclasses.dataclass(frozen=True)
class MintPayload(Message):
    """Tokens from a meter reading.

    A reading from a separate meter key carries that meter's signature in ``reading_sig``.  When
    the node is its own meter (``reading.meter`` is the block's author) the block signature is
    the meter's signature over the reading and ``reading_sig`` is empty.
    """

    TYPE = 20
    reading: MeterReading
    reading_sig: Annotated[bytes, Bytes(max=SIGNATURE_BYTES)]
    tokens_wh: Count

    def validate(self):
        surplus = self.reading.generation_wh - self.reading.consumption_wh
        if self.tokens_wh > max(surplus, 0):
            return f"tokens_wh {self.tokens_wh} exceeds the reading's surplus {max(surplus, 0)}"
        return None


@dataclasses.dataclass(frozen=True)
class DepositPayload(Message):
    TYPE = 21
    voucher: CreditVoucher
    voucher_sig: Signature


@dataclasses.dataclass(frozen=True)
class TradePayload(Message):
    TYPE = 22
    trade_id: TradeId
    seller: PubKey
    buyer: PubKey
    interval_start_s: Count
    energy_wh: Count
    price_micro_per_kwh: Count
    offer_id: Annotated[bytes, Bytes(max=32)]

    def validate(self):
        if self.seller == self.buyer:
            return "seller and buyer are the same key"
        return None


class _Settles:
    """What a settlement of agreed energy means in money: paid for what was delivered, the rest
    of the escrow refunded; never more delivered than agreed."""

    def validate(self):
        if self.delivered_wh > self.agreed_wh:
            return f"delivered_wh {self.delivered_wh} exceeds agreed_wh {self.agreed_wh}"
        return None

    @property
    def paid_micro(self) -> int:
        return cost_micro(self.delivered_wh, self.price_micro_per_kwh)

    @property
    def refund_micro(self) -> int:
        return cost_micro(self.agreed_wh, self.price_micro_per_kwh) - self.paid_micro


@dataclasses.dataclass(frozen=True)
class SettlementPayload(_Settles, Message):
    TYPE = 23
    trade_id: TradeId
    seller: PubKey
    buyer: PubKey
    agreed_wh: Count
    delivered_wh: Count
    price_micro_per_kwh: Count


@dataclasses.dataclass(frozen=True)
class DeliveryPayload(_Settles, Message):
    """The seller's measured delivery of one trade (see :mod:`p2pnode.trading.delivery`).

    ``duration_ms``: from the seller's trade proposal to the moment the agreed energy had
    arrived (or the end of the interval when it never did); ``imbalance_micro``: what the seller
    pays the buyer for the shortfall (``agreed_wh - delivered_wh``), which the buyer had to buy
    from the grid instead.
    """

    TYPE = 25
    trade_id: TradeId
    seller: PubKey
    buyer: PubKey
    agreed_wh: Count
    delivered_wh: Count
    price_micro_per_kwh: Count
    duration_ms: Count
    imbalance_micro: Count


@dataclasses.dataclass(frozen=True)
class GridPayload(Message):
    TYPE = 24
    interval_start_s: Count
    import_wh: Count
    export_wh: Count
    import_price_micro_per_kwh: Count
    export_price_micro_per_kwh: Count
    note: Annotated[str, Text(64)]


Payload = (MintPayload | DepositPayload | TradePayload | SettlementPayload | DeliveryPayload
           | GridPayload)
PAYLOAD_OF = {   # the payload classes each kind of block may carry
    BlockType.MINT: (MintPayload,), BlockType.DEPOSIT: (DepositPayload,),
    BlockType.TRADE: (TradePayload,), BlockType.SETTLEMENT: (SettlementPayload, DeliveryPayload),
    BlockType.GRID: (GridPayload,),
}
PAIRED = frozenset({BlockType.TRADE, BlockType.SETTLEMENT})


@dataclasses.dataclass(frozen=True)
class BlockBody(SignedMessage):
    """The signed part of a block."""

    TYPE = 2
    SIGNER = "author"
    MAX_BYTES = MAX_BLOCK_BYTES
    author: PubKey
    seq: Annotated[int, Range(1, 2**63 - 1)]
    prev: Hash
    type: BlockType
    payload: Payload
    link_key: Annotated[bytes, Bytes(max=PUBLIC_KEY_BYTES)]
    link_seq: Count
    link_hash: Annotated[bytes, Bytes(max=32)]
    time_ms: Count

    def validate(self):
        if type(self.payload) not in PAYLOAD_OF[self.type]:
            return f"a {self.type.name} block cannot carry {type(self.payload).__name__}"
        if self.type not in PAIRED:
            if self.link_key or self.link_seq or self.link_hash:
                return f"a {self.type.name} block has no counterparty link"
            return None
        if len(self.link_key) != PUBLIC_KEY_BYTES:
            return f"a {self.type.name} block must name its counterparty (link_key)"
        if (self.link_seq == 0) != (self.link_hash == b""):
            return "link_seq and link_hash must both be set (agreement) or both empty (proposal)"
        if self.link_hash and len(self.link_hash) != 32:
            return "link_hash must be 32 bytes"
        return None

    @property
    def is_proposal(self) -> bool:
        return self.type in PAIRED and self.link_seq == 0

    @property
    def is_agreement(self) -> bool:
        return self.type in PAIRED and self.link_seq > 0
