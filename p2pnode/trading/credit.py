"""A buyer's credit, from evidence the seller can check (pure: no I/O, no clock).

A seller reserves energy for a buyer only as far as the buyer's credit covers it.  The seller
cannot see the buyer's chain, so the buyer shows evidence with its REQUEST: up to
:data:`MAX_CREDIT_BLOCKS` DEPOSIT blocks of its own chain (signed by the buyer), each holding a
voucher signed by an issuer (the utility, a payment provider).  :func:`proven_credit` checks
each: the block's signature, that the buyer wrote it, that it is a DEPOSIT, the voucher's
signature, that the voucher is made out to the buyer and that its issuer is one the *seller*
trusts (``[credit] trusted_issuers``).  What the vouchers add up to is the buyer's proven
credit; the seller (:meth:`p2pnode.trading.seller.SellerBook.decide`) grants no more than that
credit covers after what the buyer already owes it (its reservations and its confirmed, not yet
delivered trades), else ``no_credit``.

What it proves and what it does not: a key without a voucher of a trusted issuer gets nothing
(the report: a key with an empty ledger was granted the seller's whole surplus).  A buyer that
holds a voucher may have spent it elsewhere; each seller bounds what that buyer can owe *it*
by the voucher -- at most the vouchers' sum outstanding per seller, never more -- and the
buyer's own ledger refuses to agree to a trade its credit does not cover (the rule
``credit-balance``).  The seller also refuses a CONFIRM whose agreement comes before the
deposits shown (``agreement_before_credit``: a chain cannot spend before it was paid in).
"""

from __future__ import annotations

import dataclasses

from ledger import BlockBody, BlockType, DecodeError, is_valid_signature, open_envelope

__all__ = ["CreditEvidence", "MAX_CREDIT_BLOCKS", "proven_credit"]

MAX_CREDIT_BLOCKS = 2      # DEPOSIT blocks a REQUEST carries (the largest vouchers)


@dataclasses.dataclass(frozen=True)
class CreditEvidence:
    """What a REQUEST's blocks prove: credit paid in, and the buyer's chain position then."""

    credit_micro: int = 0
    last_seq: int = 0          # the latest deposit's sequence number on the buyer's chain


NO_EVIDENCE = CreditEvidence()


def proven_credit(blocks: tuple[bytes, ...], buyer: bytes,
                  trusted_issuers: frozenset[bytes] | None) -> CreditEvidence | str:
    """The credit ``blocks`` prove ``buyer`` was paid, or why they prove nothing
    (``bad_credit_proof``: a block is not a valid deposit of the buyer's).
    ``trusted_issuers``: the seller's (None: any issuer)."""
    if len(blocks) > MAX_CREDIT_BLOCKS:
        return "bad_credit_proof"
    credit, last_seq, vouchers = 0, 0, set()
    for raw in blocks:
        try:
            block, signature_ok = open_envelope(raw, BlockBody)
        except DecodeError:
            return "bad_credit_proof"
        body = block.message
        if not signature_ok or body.author != buyer or body.type is not BlockType.DEPOSIT:
            return "bad_credit_proof"
        voucher, signature = body.payload.voucher, body.payload.voucher_sig
        if voucher.account != buyer or voucher.voucher_id in vouchers \
                or not is_valid_signature(voucher.issuer, signature, voucher.signing_bytes()):
            return "bad_credit_proof"
        vouchers.add(voucher.voucher_id)
        if trusted_issuers is None or voucher.issuer in trusted_issuers:
            credit += voucher.amount_micro
            last_seq = max(last_seq, body.seq)
    return CreditEvidence(credit, last_seq)
