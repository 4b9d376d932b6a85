"""Errors of the ledger package.

    LedgerError
    ├── DecodeError        bytes from outside did not decode to a declared message
    ├── EncodeError        a message could not be built or encoded (our own misuse)
    ├── SignatureError     a signature does not verify
    ├── BlockRejected      a block broke one or more validation rules (carries them all)
    └── StoreError         the database file is unusable (corrupt, wrong schema, locked)
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error raised by the ledger package."""


class DecodeError(LedgerError):
    """Bytes received from a peer or read from disk are not a valid message."""


class EncodeError(LedgerError, ValueError):
    """A message field has a value the schema does not allow."""


class SignatureError(LedgerError):
    """A signature does not verify against the claimed public key."""


class BlockRejected(LedgerError):
    """A block broke validation rules; ``problems`` lists every one of them."""

    def __init__(self, problems):
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class StoreError(LedgerError):
    """The ledger database cannot be opened or read."""
