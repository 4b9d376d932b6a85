"""JSON-lines export of stored blocks for auditors (one object per block, bytes as hex)."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator

from ledger.block import BlockBody
from ledger.codec import Message
from ledger.verify import decode_block

__all__ = ["export_lines"]


def _plain(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, Message):
        return {name: _plain(getattr(value, name)) for name, _ in value._schema().fields}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def export_lines(rows: Iterable[tuple[bytes, int, bytes, bytes]]) -> Iterator[str]:
    """One JSON line per stored row; undecodable rows are exported with their error."""
    for author, seq, stored_hash, raw in rows:
        block, signature_ok, problem = decode_block(author, seq, stored_hash, raw)
        line = {"author": author.hex(), "seq": seq, "hash": stored_hash.hex()}
        if block is not None:
            body: BlockBody = block.message
            line.update(_plain(body))
            line["role"] = ("proposal" if body.is_proposal else
                            "agreement" if body.is_agreement else "single")
            line["signature"] = block.signature.hex()
            line["signature_valid"] = signature_ok
        if problem is not None:
            line["error"] = str(problem)
        line["raw"] = raw.hex()
        yield json.dumps(line, sort_keys=True)
