"""The hash-chained ledger and the signed-record primitives the whole system shares.

Canonical encoding (:mod:`ledger.codec`), Ed25519 keys (:mod:`ledger.keys`) and signed envelopes
(:mod:`ledger.sealed`) live here because the ledger is the lowest layer: DHT offer records and
node-to-node messages use the same primitives.
"""

from ledger.codec import Bytes, Items, Message, Range, Text
from ledger.errors import (
    BlockRejected, DecodeError, EncodeError, LedgerError, SignatureError, StoreError,
)
from ledger.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SigningKey, is_valid_signature, verify
from ledger.sealed import Envelope, Sealed, SignedMessage, seal, unseal

__all__ = [
    "BlockRejected", "Bytes", "DecodeError", "EncodeError", "Envelope", "Items", "LedgerError",
    "Message", "PUBLIC_KEY_BYTES", "Range", "SIGNATURE_BYTES", "Sealed", "SignatureError",
    "SignedMessage", "SigningKey", "StoreError", "Text", "is_valid_signature", "seal", "unseal",
    "verify",
]
