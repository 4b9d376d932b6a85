"""Crash trials: kill a ledger writer with SIGKILL at random instants and check what survived.

A writer process trades between two keys as fast as it can (mint, propose, agree, accept,
settle, ...) and, after every durable commit, reports the blocks it committed through a pipe.
The parent kills it with SIGKILL at a random moment, reopens the database and checks that every
reported block is there with the same hash and that all chains verify.  Several trials share a
database file, so a writer also restarts on a chain that was cut short by the previous kill.

Used by the test suite and ``benchmarks/ledger.py``; runs on the machine's real disk, so it is
also a way to check a meter's storage.  ``sync`` is the store's durability mode: a SIGKILL is a
process crash, which both ``"full"`` and ``"normal"`` must survive (a power loss, which only
``"full"`` survives, cannot be staged this way).
"""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import random
import signal
import struct
import time
from pathlib import Path

from ledger.block import CreditVoucher, MeterReading, SettlementPayload, TradePayload
from ledger.keys import SigningKey
from ledger.ledger import Ledger
from ledger.sealed import Sealed, seal
from ledger.store import SYNC_MODES, LedgerStore
from ledger.verify import audit

__all__ = ["CrashReport", "run_crash_trials"]

ACK = struct.Struct(">32sQ32s")  # author, seq, hash of one committed block (atomic pipe write)
INTERVAL_S = 900


@dataclasses.dataclass
class CrashReport:
    trials: int = 0
    committed_blocks: int = 0  # blocks the writers reported as durable before being killed
    lost_committed: int = 0  # of those, missing or changed after reopening
    invalid_chains: int = 0  # databases whose audit found a problem after a kill
    seconds: float = 0.0


def _keys(tag: str) -> tuple[SigningKey, SigningKey, SigningKey]:
    return tuple(SigningKey.from_seed(hashlib.sha256(f"{tag}/{who}".encode()).digest())
                 for who in ("seller", "buyer", "bank"))


def _ack(conn, blocks: list[Sealed]) -> None:
    """Report durable blocks: one small pipe write each, which a kill cannot tear."""
    for block in blocks:
        conn.send_bytes(ACK.pack(block.message.author, block.message.seq, block.hash))


def _writer(db_path: str, tag: str, ack_fd, sync: str) -> None:
    """Trade forever between two keys, acknowledging every durable commit."""
    seller_key, buyer_key, bank = _keys(tag)
    store = LedgerStore(db_path, sync=sync)
    seller, buyer = Ledger(store, seller_key), Ledger(store, buyer_key)
    clock = max(seller.state.time_ms, buyer.state.time_ms) + 1
    interval = max(seller.state.minted, default=1_700_000_000)
    if buyer.state.seq == 0:
        voucher = CreditVoucher(bank.public, buyer_key.public, os.urandom(16), 10**11)
        _ack(ack_fd, [buyer.deposit(seal(voucher, bank), clock)])
    while True:
        clock += 1
        interval += INTERVAL_S
        reading = seal(MeterReading(seller_key.public, interval, INTERVAL_S, 5000, 1000), seller_key)
        _ack(ack_fd, [seller.mint(reading, 4000, clock)])
        trade = TradePayload(os.urandom(16), seller_key.public, buyer_key.public, interval, 1000,
                             200_000, b"")
        proposal = seller.propose_trade(trade, clock)
        _ack(ack_fd, [proposal])
        agreement = buyer.agree(proposal.raw, clock)
        _ack(ack_fd, [proposal, agreement])
        with buyer.batch():   # one commit for two appends, acknowledged after it
            settle = buyer.propose_settlement(SettlementPayload(
                trade.trade_id, trade.seller, trade.buyer, 1000, 990, 200_000), clock)
            closing = seller.agree(settle.raw, clock)
        _ack(ack_fd, [settle, closing])


def _read_acks(conn) -> dict[tuple[bytes, int], bytes]:
    acks = {}
    while True:
        try:
            author, seq, digest = ACK.unpack(conn.recv_bytes())
        except EOFError:
            return acks
        acks[(author, seq)] = digest


def _one_trial(ctx, db_path: Path, tag: str, rng: random.Random, max_delay_s: float, sync: str):
    reader, writer = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_writer, args=(str(db_path), tag, writer, sync), daemon=True)
    process.start()
    writer.close()
    time.sleep(rng.uniform(0.0, max_delay_s))
    try:
        os.kill(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it died on its own: caught by the exit code check below
    process.join()
    if process.exitcode != -signal.SIGKILL:
        raise RuntimeError(f"crash-trial writer exited with {process.exitcode}, not by SIGKILL")
    acks = _read_acks(reader)
    reader.close()
    with LedgerStore(db_path) as store:
        stored = {(a, s): h for a, s, h, _ in store.raw_blocks()}
        lost = sum(1 for slot, digest in acks.items() if stored.get(slot) != digest)
        report = audit(store.raw_blocks())
    return len(acks), lost, not report.ok


def run_crash_trials(directory: Path, trials: int = 200, *, trials_per_db: int = 10,
                     seed: int = 0, max_delay_s: float = 0.08, sync: str = "full") -> CrashReport:
    """Run ``trials`` kill-and-check rounds under ``directory`` with stores in ``sync`` mode."""
    if sync not in SYNC_MODES:
        raise ValueError(f"sync must be one of {sorted(SYNC_MODES)}, got {sync!r}")
    rng = random.Random(seed)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["ledger"])
    report = CrashReport()
    started = time.perf_counter()
    for trial in range(trials):
        db_index = trial // trials_per_db
        committed, lost, invalid = _one_trial(
            ctx, Path(directory) / f"crash-{db_index}.db", f"{seed}/{db_index}", rng, max_delay_s,
            sync)
        report.trials += 1
        report.committed_blocks += committed
        report.lost_committed += lost
        report.invalid_chains += int(invalid)
    report.seconds = time.perf_counter() - started
    return report
