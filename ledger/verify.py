"""Auditing a set of chains: every block, every chain, every cross-link, every fork.

Pure: takes stored rows ``(author, seq, hash, raw)`` from any number of databases and returns an
:class:`AuditReport` listing every problem.  A chain that starts at seq 1 with no gap is
validated in full (balances, double spends, ...); a *partial* chain (a node keeps only the
counterparty half-blocks of other authors) is checked for signatures, structure and the hash
links between consecutive blocks it has.  Two different blocks with the same author and seq are
a fork: the pair is a :class:`ForkProof` anyone can check with :func:`check_fork_proof`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from ledger.block import BlockBody
from ledger.errors import DecodeError
from ledger.rules import (
    FORK, LINK, MALFORMED, PREVIOUS_HASH, SIGNATURE, DOUBLE_SPEND, ChainState, LedgerRules,
    Problem, check_block, check_pair,
)
from ledger.sealed import Sealed, open_envelope

__all__ = ["AuditReport", "ForkProof", "audit", "check_fork_proof", "decode_block"]

Block = Sealed[BlockBody]


@dataclasses.dataclass(frozen=True)
class ForkProof:
    """Two validly signed, different blocks by one author at one sequence number."""

    raw_a: bytes
    raw_b: bytes


def check_fork_proof(proof: ForkProof) -> bool:
    """True when the proof shows equivocation: same author and seq, both signed, different."""
    try:
        a, ok_a = open_envelope(proof.raw_a, BlockBody)
        b, ok_b = open_envelope(proof.raw_b, BlockBody)
    except DecodeError:
        return False
    same_slot = (a.message.author, a.message.seq) == (b.message.author, b.message.seq)
    return ok_a and ok_b and same_slot and a.hash != b.hash


@dataclasses.dataclass
class AuditReport:
    problems: list[Problem] = dataclasses.field(default_factory=list)
    forks: list[ForkProof] = dataclasses.field(default_factory=list)
    blocks: int = 0
    full_chains: int = 0
    partial_chains: int = 0
    pending_proposals: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def decode_block(author: bytes, seq: int, stored_hash: bytes, raw: bytes):
    """(block, signature_ok, problem) for one stored row; block is None if undecodable."""
    try:
        block, signature_ok = open_envelope(raw, BlockBody)
    except DecodeError as exc:
        return None, False, Problem(MALFORMED, author, seq, str(exc))
    body = block.message
    if (body.author, body.seq, block.hash) != (author, seq, stored_hash):
        return block, signature_ok, Problem(
            MALFORMED, author, seq, "stored author/seq/hash columns disagree with the block bytes")
    return block, signature_ok, None


def audit(rows: Iterable[tuple[bytes, int, bytes, bytes]], rules: LedgerRules = LedgerRules(),
          stored_forks: Iterable[ForkProof] = ()) -> AuditReport:
    """Check every row, chain, link and fork; collect every problem."""
    report = AuditReport()
    chains: dict[bytes, dict[int, tuple[Block, bool]]] = {}
    for author, seq, stored_hash, raw in rows:
        report.blocks += 1
        block, signature_ok, problem = decode_block(author, seq, stored_hash, raw)
        if problem:
            report.problems.append(problem)
            continue
        slot = chains.setdefault(author, {})
        known = slot.get(seq)
        if known is None:
            slot[seq] = (block, signature_ok)
        elif known[0].hash != block.hash:
            _record_fork(report, ForkProof(known[0].raw, block.raw))
    for proof in stored_forks:
        _record_fork(report, proof)
    for author, blocks in chains.items():
        _audit_chain(report, author, blocks, rules)
    _audit_links(report, chains)
    return report


def _record_fork(report: AuditReport, proof: ForkProof) -> None:
    if not check_fork_proof(proof):
        return  # not evidence of anything: a forged or malformed second block
    a, _ = open_envelope(proof.raw_a, BlockBody)
    report.forks.append(proof)
    report.problems.append(Problem(FORK, a.message.author, a.message.seq,
                                   "two different signed blocks at this sequence number"))


def _audit_chain(report: AuditReport, author: bytes, blocks: dict, rules: LedgerRules) -> None:
    seqs = sorted(blocks)
    if seqs[0] == 1 and seqs[-1] == len(seqs):
        report.full_chains += 1
        state = ChainState(author)
        for seq in seqs:
            block, signature_ok = blocks[seq]
            report.problems.extend(check_block(block, signature_ok, state, rules))
            state.apply(block)
        return
    report.partial_chains += 1
    for seq in seqs:
        block, signature_ok = blocks[seq]
        if not signature_ok:
            report.problems.append(Problem(SIGNATURE, author, seq, "signature does not verify"))
        previous = blocks.get(seq - 1)
        if previous is not None and block.message.prev != previous[0].hash:
            report.problems.append(Problem(
                PREVIOUS_HASH, author, seq, "prev does not match the hash of the previous block"))


def _audit_links(report: AuditReport, chains: dict) -> None:
    agreements_of: dict[tuple[bytes, int], int] = {}
    for blocks in chains.values():
        for block, _ in blocks.values():
            body = block.message
            if not body.is_agreement:
                continue
            target = (body.link_key, body.link_seq)
            agreements_of[target] = agreements_of.get(target, 0) + 1
            proposal = chains.get(body.link_key, {}).get(body.link_seq)
            if proposal is None:
                report.problems.append(Problem(
                    LINK, body.author, body.seq, "the proposal it agrees to is not in the ledger"))
            else:
                report.problems.extend(check_pair(proposal[0], block))
    for author, blocks in chains.items():
        for seq, (block, _) in blocks.items():
            count = agreements_of.get((author, seq), 0)
            if block.message.is_proposal and count == 0:
                report.pending_proposals += 1
            if count > 1:
                report.problems.append(Problem(
                    DOUBLE_SPEND, author, seq, f"proposal has {count} agreements"))

