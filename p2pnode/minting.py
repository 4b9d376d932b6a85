"""Minting energy tokens from a meter reading (FR-02), and the rules that say whose readings count.

A node mints an interval's surplus from a *signed* reading.  Without meter keys the node signs
the reading itself (``MeterReading.meter`` is the node key): nothing stops it from inflating its
generation.  A smart meter that signs its readings with its own key (:class:`p2pnode.meter.
SigningMeter`, or real firmware filling ``Reading.meter_key``/``meter_sig``) closes that: with
``[meter] trusted_keys`` set, the node's ledger rules (:func:`ledger_rules`) accept a MINT only
from a reading signed by one of those keys, so a reading the node changed or made up is refused,
by the node's own ledger, by ``p2pnode ledger verify --trusted-meter`` and by any auditor.

The seller side calls :func:`mint_reading` when it has read an interval's meter (p2pnode/
node_seller.py, ``SellerSide._mint``); it returns the MINT block or the reason nothing was minted
(the node counts it as ``mint_refused_<reason>``).
"""

from __future__ import annotations

from ledger import (
    BlockBody, BlockRejected, Envelope, LedgerRules, MeterReading, Sealed, SigningKey,
    is_valid_signature, seal,
)
from p2pnode.meter import Reading

Block = Sealed[BlockBody]

__all__ = ["MINT_REFUSALS", "ledger_rules", "mint_reading", "sealed_reading", "trusted_meter_keys"]

# reasons mint_reading returns instead of minting
MINT_REFUSALS = ("no_surplus", "already_minted", "bad_meter_signature", "untrusted_meter",
                 "unsigned_reading", "rejected")


def trusted_meter_keys(config) -> frozenset[bytes]:
    """``[meter] trusted_keys`` of a :class:`~p2pnode.config.NodeConfig` as raw keys."""
    meter = getattr(config, "meter", None)
    keys = meter.trusted_keys if meter is not None else ()
    return frozenset(bytes.fromhex(k) for k in keys)


def ledger_rules(config) -> LedgerRules:
    """The ledger rules of a node: trusted voucher issuers (``[credit]``: none listed, none
    count; ``trust_any_issuer``: any) and trusted meter keys (``[meter] trusted_keys``)."""
    meters = trusted_meter_keys(config)
    return LedgerRules(trusted_issuers=config.credit.issuer_keys(), trusted_meters=meters,
                       require_trusted_meter=bool(meters))


def sealed_reading(reading: Reading, node_key: SigningKey) -> Sealed[MeterReading] | str:
    """The reading as the ledger mints it: the meter's signature when the reading carries one
    (checked here: a reading whose values were changed after the meter signed them is
    ``"bad_meter_signature"``), else signed by the node key itself."""
    if not reading.meter_sig:
        return seal(reading.meter_reading(node_key.public), node_key)
    message = reading.meter_reading(reading.meter_key)
    signed = message.signing_bytes()
    if not is_valid_signature(reading.meter_key, reading.meter_sig, signed):
        return "bad_meter_signature"
    return Sealed(message, reading.meter_sig, Envelope(signed, reading.meter_sig).encode())


def _refusal(sealed: Sealed[MeterReading], node_key: SigningKey, rules: LedgerRules) -> str | None:
    meter = sealed.message.meter
    if meter == node_key.public:
        return "unsigned_reading" if rules.require_trusted_meter and \
            meter not in rules.trusted_meters else None
    return None if meter in rules.trusted_meters else "untrusted_meter"


def mint_reading(ledger, reading: Reading, node_key: SigningKey, time_ms: int, *,
                 measured_only: bool = False) -> Block | str:
    """Mint ``reading``'s surplus on ``ledger`` (a :class:`ledger.Ledger` of ``node_key``).

    ``measured_only``: mint even without a surplus (0 tokens: the signed reading is the proof a
    DELIVERY settlement carries that the seller measured the interval).  Returns the MINT block,
    or why none was minted: one of :data:`MINT_REFUSALS`.
    """
    surplus = reading.net_wh
    if surplus <= 0 and not measured_only:
        return "no_surplus"
    if reading.interval_start_s in ledger.state.minted:
        return "already_minted"
    sealed = sealed_reading(reading, node_key)
    if isinstance(sealed, str):
        return sealed
    refusal = _refusal(sealed, node_key, ledger.rules)
    if refusal is not None:
        return refusal
    try:
        return ledger.mint(sealed, max(0, surplus), time_ms)
    except BlockRejected:
        return "rejected"
