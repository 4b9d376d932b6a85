"""The hash-chained ledger and the signed-record primitives the whole system shares.

Canonical encoding (:mod:`ledger.codec`), Ed25519 keys (:mod:`ledger.keys`) and signed envelopes
(:mod:`ledger.sealed`) live here because the ledger is the lowest layer: DHT offer records and
node-to-node messages use the same primitives.  Blocks (:mod:`ledger.block`), validation rules
(:mod:`ledger.rules`), storage (:mod:`ledger.store`), a node's own chain (:mod:`ledger.ledger`)
and auditing (:mod:`ledger.verify`) make up the ledger proper.
"""

from ledger.block import (
    GENESIS_HASH, BlockBody, BlockType, CreditVoucher, DeliveryPayload, DepositPayload, GridPayload,
    MeterReading, MintPayload, SettlementPayload, TradePayload, agreed_after, cost_micro,
)
from ledger.codec import Bytes, Items, Message, Range, Text
from ledger.errors import (
    BlockRejected, DecodeError, EncodeError, LedgerError, SignatureError, StoreError,
)
from ledger.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SigningKey, is_valid_signature, verify
from ledger.ledger import Ledger
from ledger.rules import RULES, ChainState, LedgerRules, Problem, check_block, check_pair
from ledger.sealed import (
    Envelope, Sealed, SignedMessage, decode_envelope, open_checked, open_envelope, seal, unseal,
)
from ledger.store import SYNC_MODES, AddResult, LedgerStore
from ledger.verify import AuditReport, ForkProof, audit, check_fork_proof

__all__ = [
    "AddResult", "AuditReport", "BlockBody", "BlockRejected", "BlockType", "Bytes", "ChainState",
    "CreditVoucher", "DecodeError", "DeliveryPayload", "DepositPayload", "EncodeError", "Envelope", "ForkProof",
    "GENESIS_HASH", "GridPayload", "Items", "Ledger", "LedgerError", "LedgerRules", "LedgerStore",
    "Message", "MeterReading", "MintPayload", "PUBLIC_KEY_BYTES", "Problem", "RULES", "Range",
    "SIGNATURE_BYTES", "SYNC_MODES", "Sealed", "SettlementPayload", "SignatureError",
    "SignedMessage", "SigningKey", "StoreError", "Text", "TradePayload", "agreed_after", "audit",
    "check_block", "check_fork_proof", "check_pair", "cost_micro", "decode_envelope",
    "is_valid_signature", "open_checked", "open_envelope", "seal", "unseal", "verify",
]
