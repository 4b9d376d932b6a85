"""Recovering a chain that lost its tail, from the blocks other ledgers hold of it.

A node's blocks live in its own database and, for every trade, in its counterparty's: a seller
holds the buyer's agreements and settlement proposals, a buyer holds the seller's trade
proposals and settlement agreements.  A backup of the database holds everything up to its
time.  :func:`recover_tails` copies, for every chain whose head is behind its marker
(:mod:`ledger.headmark`), the missing blocks from such source databases, in order, each one
only if it is validly signed and links to the block before it.  It stops at the first block no
source has: a chain is never extended past a gap.
"""

from __future__ import annotations

import dataclasses

from ledger.block import GENESIS_HASH, BlockBody
from ledger.errors import DecodeError
from ledger.sealed import open_envelope
from ledger.store import LedgerStore

__all__ = ["TailRecovery", "recover_tails"]


@dataclasses.dataclass(frozen=True)
class TailRecovery:
    author: bytes
    head_before: int
    head_after: int
    marked: int

    @property
    def complete(self) -> bool:
        return self.head_after >= self.marked


def recover_tails(store: LedgerStore, sources: list[LedgerStore]) -> list[TailRecovery]:
    """Restore what ``sources`` hold of every chain of ``store`` shorter than its marker."""
    out = []
    for author, marked in sorted(store.marks.items()):
        before = store.head(author)
        if before >= marked:
            continue
        head = before
        prev = _hash_of(store, author, head)
        while head < marked:
            block = _next_block(sources, author, head + 1, prev)
            if block is None:
                break
            store.add([block])
            head, prev = head + 1, block.hash
        out.append(TailRecovery(author, before, head, marked))
    return out


def _hash_of(store: LedgerStore, author: bytes, seq: int) -> bytes:
    if seq == 0:
        return GENESIS_HASH
    raw = store.get(author, seq)
    return open_envelope(raw, BlockBody)[0].hash


def _next_block(sources, author: bytes, seq: int, prev: bytes):
    for source in sources:
        raw = source.get(author, seq)
        if raw is None:
            continue
        try:
            block, signature_ok = open_envelope(raw, BlockBody)
        except DecodeError:
            continue
        body = block.message
        if signature_ok and body.author == author and body.seq == seq and body.prev == prev:
            return block
    return None
