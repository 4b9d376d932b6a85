"""Ledger benchmark: verification cost vs raw Ed25519, durable trade rate, crash trials.

    python benchmarks/ledger.py [--quick] [--json PATH]

Every rate is measured in this run next to its baseline, so the ratios hold on a noisy machine.

* ``ed25519_verify_per_s``: raw ``cryptography`` verify of one 300-byte message (the baseline).
* ``chain_verify_blocks_per_s``: a full audit (strict decoding, signatures, every rule,
  cross-links) of a seller's and a buyer's chains from a trading day; ``verify_ratio`` is the
  second over the first (1.0 would mean verification costs nothing beyond the signatures; MINT
  and DEPOSIT blocks carry two signatures each).
* ``durable_trades_per_s``: trade pairs (seller's proposal, buyer's agreement: two signatures,
  the proposal's signature checked, every rule) made durable with SQLite WAL +
  ``synchronous=FULL``, committed in groups of up to ``GROUP`` trades (group commit: no trade is
  acknowledged before its group's fsync); ``durable_trades_per_s_unbatched``: one fsync per trade;
  ``fsync_commits_per_s``: empty-ish commits of the same database (the disk's own limit).
* ``crash_trials``, ``crash_lost_committed``, ``crash_invalid_chains``: SIGKILL a writer at random
  instants (see ``ledger/durability.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger import (  # noqa: E402
    CreditVoucher, Ledger, LedgerStore, MeterReading, SettlementPayload, SigningKey, TradePayload,
    audit, seal,
)
from ledger.durability import run_crash_trials  # noqa: E402
from ledger.keys import forget_signatures  # noqa: E402
from report import emit  # noqa: E402

GROUP = 16
INTERVAL_S = 900


REPEATS = 7  # verification rates: best of REPEATS interleaved rounds (noise only slows down)


def ed25519_round(count: int) -> float:
    """Raw verifies per second of one 300-byte message, ``count`` times."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    message = os.urandom(300)
    signature = private.sign(message)
    started = time.perf_counter()
    for _ in range(count):
        public.verify(signature, message)
    return count / (time.perf_counter() - started)


class Day:
    """A seller and a buyer trading: 1 mint and 5 settled trades per interval."""

    def __init__(self, path: Path):
        self.store = LedgerStore(path)
        self.seller_key, self.buyer_key, bank = (SigningKey.generate() for _ in range(3))
        self.seller, self.buyer = Ledger(self.store, self.seller_key), Ledger(self.store, self.buyer_key)
        voucher = seal(CreditVoucher(bank.public, self.buyer_key.public, os.urandom(16), 10**12), bank)
        self.buyer.deposit(voucher, 1)
        self.interval, self.clock = 1_700_000_000, 2

    def next_interval(self, tokens_wh: int) -> None:
        self.interval += INTERVAL_S
        reading = MeterReading(self.seller_key.public, self.interval, INTERVAL_S, tokens_wh + 500, 500)
        self.seller.mint(seal(reading, self.seller_key), tokens_wh, self.clock)

    def trade(self, energy_wh: int, settle: bool) -> None:
        self.clock += 1
        trade = TradePayload(os.urandom(16), self.seller_key.public, self.buyer_key.public,
                             self.interval, energy_wh, 200_000, b"")
        proposal = self.seller.propose_trade(trade, self.clock)
        self.buyer.agree(proposal.raw, self.clock)  # checks the seller's signature, stores both
        if settle:
            settlement = SettlementPayload(trade.trade_id, trade.seller, trade.buyer, energy_wh,
                                           energy_wh, 200_000)
            ack = self.seller.agree(self.buyer.propose_settlement(settlement, self.clock).raw, self.clock)
            self.buyer.accept_agreement(ack.raw)


def verification_rates(workdir: Path, intervals: int) -> tuple[float, float, int]:
    """(raw verifies/s, audited blocks/s, blocks): best of interleaved rounds of each."""
    day = Day(workdir / "verify.db")
    with day.store.group():
        for _ in range(intervals):
            day.next_interval(5 * 500)
            for _ in range(5):
                day.trade(500, settle=True)
    rows = list(day.store.raw_blocks())
    raw_best = chain_best = 0.0
    for _ in range(REPEATS):
        raw_best = max(raw_best, ed25519_round(len(rows)))
        forget_signatures()   # time every check, not the memo of the ones made before
        started = time.perf_counter()
        report = audit(rows)
        chain_best = max(chain_best, len(rows) / (time.perf_counter() - started))
        if not report.ok:
            raise SystemExit(f"benchmark chain did not verify: {report.problems[:3]}")
    return raw_best, chain_best, len(rows)


def durable_trades_per_s(workdir: Path, trades: int, group: int, name: str) -> float:
    day = Day(workdir / f"{name}.db")
    day.next_interval(trades * 10)
    started = time.perf_counter()
    for first in range(0, trades, group):
        with day.store.group():  # one fsync'd commit for the whole group
            for _ in range(min(group, trades - first)):
                day.trade(10, settle=False)
    return trades / (time.perf_counter() - started)


def fsync_commits_per_s(workdir: Path, commits: int) -> float:
    import sqlite3
    db = sqlite3.connect(workdir / "fsync.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (x BLOB)")
    started = time.perf_counter()
    for _ in range(commits):
        db.execute("INSERT INTO t VALUES (?)", (b"x" * 600,))
    return commits / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (under a minute)")
    parser.add_argument("--json", type=Path, help="write the results as a flat JSON object")
    parser.add_argument("--crash-trials", type=int, default=200)
    args = parser.parse_args()
    scale = 1 if args.quick else 4
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        workdir = Path(tmp)
        raw_rate, rate, blocks = verification_rates(workdir, 40 * scale)
        results["ed25519_verify_per_s"] = raw_rate
        results["chain_verify_blocks_per_s"] = rate
        results["chain_verify_blocks"] = blocks
        results["verify_ratio"] = rate / results["ed25519_verify_per_s"]
        results["durable_trades_per_s"] = durable_trades_per_s(workdir, 2000 * scale, GROUP, "group")
        results["durable_trades_per_s_unbatched"] = durable_trades_per_s(workdir, 500 * scale, 1, "single")
        results["fsync_commits_per_s"] = fsync_commits_per_s(workdir, 500 * scale)
        crash = run_crash_trials(workdir, trials=args.crash_trials, seed=1)
        results.update(crash_trials=crash.trials, crash_committed_blocks=crash.committed_blocks,
                       crash_lost_committed=crash.lost_committed,
                       crash_invalid_chains=crash.invalid_chains, crash_seconds=crash.seconds)
    emit(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
