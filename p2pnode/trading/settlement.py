"""Settling delivered trades, pure: the seller's DELIVERY payloads and the buyer's check.

After the interval the seller reads its meter (the interval's signed reading and its
sub-steps), mints the tokens of its measured surplus, and proposes one DELIVERY settlement per
confirmed trade of the interval with the energy :func:`~p2pnode.trading.delivery.allocate`
gave it (:func:`deliveries`).  It pushes each one to its buyer with the MINT block that proves
the measurement; the buyer agrees only to a settlement that is exactly its trade, delivers no
more than the seller's meter measured and charges no more imbalance than the rule allows
(:func:`check_delivery`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ledger import (
    BlockBody, BlockType, DecodeError, DeliveryPayload, MintPayload, Sealed, TradePayload,
    cost_micro, open_envelope,
)
from p2pnode.trading.delivery import allocate, imbalance_micro

__all__ = ["SoldTrade", "deliveries", "check_delivery"]


@dataclasses.dataclass(frozen=True)
class SoldTrade:
    payload: TradePayload
    proposed_at_ms: int


def deliveries(trades: Sequence[SoldTrade], surplus_substeps_wh: Sequence[int], *,
               interval_start_s: int, interval_s: int, minted_wh: int, retail_micro_per_kwh: int,
               credit_micro: int, ex_post: bool) -> list[DeliveryPayload]:
    """One DELIVERY per trade, in ``trades`` order (see :mod:`p2pnode.trading.delivery`).

    ``minted_wh``: the tokens the interval's reading minted; no more is allocated in all.  In the
    ex-post market the energy was metered before it was sold: every trade is delivered in full
    when it is agreed.
    """
    steps = max(1, len(surplus_substeps_wh))
    substep_ms = interval_s * 1000 // steps
    start_ms = interval_start_s * 1000
    if ex_post:
        agreed = [t.payload.energy_wh for t in trades]
        shares = allocate([sum(agreed)], agreed)
    else:
        shares = allocate(_capped(surplus_substeps_wh, minted_wh),
                          [t.payload.energy_wh for t in trades])
    out, holds = [], credit_micro
    for trade, share in zip(trades, shares):
        p = trade.payload
        paid = cost_micro(share.delivered_wh, p.price_micro_per_kwh)
        charge = imbalance_micro(p.energy_wh, share.delivered_wh, p.price_micro_per_kwh,
                                 retail_micro_per_kwh, holds + paid)
        holds += paid - charge
        duration = 0 if ex_post else share.duration_ms(trade.proposed_at_ms, start_ms,
                                                       substep_ms, steps)
        out.append(DeliveryPayload(p.trade_id, p.seller, p.buyer, p.energy_wh,
                                   share.delivered_wh, p.price_micro_per_kwh, duration, charge))
    return out


def _capped(substeps: Sequence[int], budget_wh: int) -> list[int]:
    """The sub-steps' surplus, no more than ``budget_wh`` in all (earliest first)."""
    out = []
    for value in substeps:
        take = max(0, min(int(value), budget_wh))
        budget_wh -= take
        out.append(take)
    return out


def check_delivery(proposal_raw: bytes, mint_raw: bytes, trade: TradePayload | None, *,
                   retail_micro_per_kwh: int) -> Sealed[BlockBody] | str:
    """The seller's DELIVERY proposal if the buyer should agree to it, else the reason not.

    ``trade``: the buyer's own trade of that id (None: it has none).
    """
    try:
        proposal, proposal_ok = open_envelope(proposal_raw, BlockBody)
        mint, mint_ok = open_envelope(mint_raw, BlockBody)
    except DecodeError:
        return "malformed_block"
    body = proposal.message
    if not proposal_ok or not mint_ok:
        return "bad_block_signature"
    payload = body.payload
    if body.type is not BlockType.SETTLEMENT or not body.is_proposal \
            or not isinstance(payload, DeliveryPayload):
        return "not_a_delivery"
    if trade is None or trade.trade_id != payload.trade_id:
        return "unknown_trade"
    if (body.author, payload.seller, payload.buyer, payload.agreed_wh,
            payload.price_micro_per_kwh) != (trade.seller, trade.seller, trade.buyer,
                                             trade.energy_wh, trade.price_micro_per_kwh):
        return "delivery_differs"
    mint_body = mint.message
    if mint_body.author != trade.seller or mint_body.type is not BlockType.MINT \
            or not isinstance(mint_body.payload, MintPayload) \
            or mint_body.payload.reading.interval_start_s != trade.interval_start_s:
        return "no_measurement"
    if payload.delivered_wh > mint_body.payload.tokens_wh:
        return "more_than_measured"
    most = imbalance_micro(payload.agreed_wh, payload.delivered_wh, payload.price_micro_per_kwh,
                           retail_micro_per_kwh, 2**62)
    if payload.imbalance_micro > most:
        return "imbalance_too_high"
    return proposal
