"""Local ledger damage is found and refused: a lost tail, a 0-byte file, damaged pages, forks."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from ledger import BlockRejected, Ledger, LedgerStore, MeterReading, StoreError, audit, seal
from ledger.headmark import LostTail, marker_path
from p2pnode.cli import main
from tests.chainkit import (
    BANK, BUYER, INTERVAL, SELLER, deposit_payload, grid_payload, settlement_payload,
    trade_payload,
)


def _two_ledgers(tmp_path):
    seller = Ledger(LedgerStore(tmp_path / "seller.db"), SELLER)
    buyer = Ledger(LedgerStore(tmp_path / "buyer.db"), BUYER)
    seller.mint(seal(MeterReading(SELLER.public, INTERVAL, 900, 9000, 1000), SELLER), 8000, 1)
    buyer.deposit(seal(deposit_payload(BUYER).voucher, BANK), 1)
    return seller, buyer


def _trade(seller: Ledger, buyer: Ledger, n: int) -> None:
    proposal = seller.propose_trade(trade_payload(n), 10 * n)
    seller.accept_agreement(buyer.agree(proposal.raw, 10 * n + 1).raw)
    settle = buyer.propose_settlement(settlement_payload(n), 10 * n + 2)
    buyer.accept_agreement(seller.agree(settle.raw, 10 * n + 3).raw)


def test_a_lost_wal_is_found_on_open_and_recovered_from_a_counterparty(tmp_path, capsys):
    seller, buyer = _two_ledgers(tmp_path)
    _trade(seller, buyer, 1)
    seller.store.close()                 # checkpointed: seq 1..3 are in the database file
    seller = Ledger(LedgerStore(tmp_path / "seller.db"), SELLER)
    _trade(seller, buyer, 2)             # seq 4, 5 live in the -wal file only
    _trade(seller, buyer, 3)             # seq 6, 7
    assert seller.state.seq == 7
    shutil.copy(tmp_path / "seller.db", tmp_path / "lost.db")    # the WAL is not copied
    shutil.copy(marker_path(tmp_path / "seller.db"), marker_path(tmp_path / "lost.db"))
    with pytest.raises(LostTail, match=r"ends at block 3 but block 7 was written.*ledger recover"):
        Ledger(LedgerStore(tmp_path / "lost.db"), SELLER)
    buyer.store.close()
    # the buyer holds every block of the seller's trades (proposals and agreements)
    assert main(["ledger", "recover", str(tmp_path / "lost.db"),
                 "--from", str(tmp_path / "buyer.db")]) == 0
    assert "head 3 -> 7 of 7: whole" in capsys.readouterr().out
    recovered = Ledger(LedgerStore(tmp_path / "lost.db"), SELLER)
    assert recovered.state.seq == 7 and recovered.state.head == seller.state.head


def test_a_tail_nobody_holds_stays_refused_unless_the_loss_is_accepted(tmp_path, capsys):
    seller, buyer = _two_ledgers(tmp_path)
    _trade(seller, buyer, 1)
    buyer.store.close()
    buyer = Ledger(LedgerStore(tmp_path / "buyer.db"), BUYER)
    buyer.record_grid(grid_payload(), 99)   # seq 4: the buyer's alone
    shutil.copy(tmp_path / "buyer.db", tmp_path / "lost.db")
    shutil.copy(marker_path(tmp_path / "buyer.db"), marker_path(tmp_path / "lost.db"))
    seller.store.close()
    args = ["ledger", "recover", str(tmp_path / "lost.db"), "--from", str(tmp_path / "seller.db")]
    assert main(args) == 1
    assert "1 blocks still missing" in capsys.readouterr().out
    with pytest.raises(LostTail):
        Ledger(LedgerStore(tmp_path / "lost.db"), BUYER)
    assert main([*args, "--accept-loss"]) == 0
    assert Ledger(LedgerStore(tmp_path / "lost.db"), BUYER).state.seq == 3


def test_an_empty_file_that_held_blocks_is_refused_and_a_fresh_one_is_a_new_ledger(tmp_path):
    seller, _ = _two_ledgers(tmp_path)
    seller.store.close()
    (tmp_path / "seller.db").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"seller.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError, match="empty .0 bytes. but held blocks"):
        LedgerStore(tmp_path / "seller.db")
    (tmp_path / "new.db").write_bytes(b"")   # a crash while the file was created
    assert Ledger(LedgerStore(tmp_path / "new.db"), SELLER).state.seq == 0


def test_verify_runs_sqlites_integrity_check(tmp_path, capsys):
    seller, buyer = _two_ledgers(tmp_path)
    for n in range(1, 4):
        _trade(seller, buyer, n)
    seller.store.close()
    buyer.store.close()
    path = tmp_path / "seller.db"
    assert main(["ledger", "verify", str(path), str(tmp_path / "buyer.db")]) == 0
    with sqlite3.connect(path) as db:
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name='blocks_by_link'"
                          ).fetchone()[0]
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(path.read_bytes())
    offset = (root - 1) * page_size
    cells = data[offset + 8:offset + page_size]   # after the b-tree page header
    start = offset + 8 + len(cells) - 40          # inside the last cell: an index key
    data[start:start + 8] = bytes(b ^ 0x5A for b in data[start:start + 8])
    path.write_bytes(bytes(data))
    with LedgerStore(path) as store:
        assert audit(store.raw_blocks()).ok       # the blocks themselves still read fine
    assert main(["ledger", "verify", str(path), str(tmp_path / "buyer.db")]) == 1
    assert "database damaged" in capsys.readouterr().out


def test_agree_refuses_a_proposer_that_forked(tmp_path):
    seller, buyer = _two_ledgers(tmp_path)
    _trade(seller, buyer, 1)             # the seller's seq 2 is trade 1's proposal
    seller.store.close()
    # the seller lost its tail and writes on from seq 1: a second block at seq 2
    shutil.copy(tmp_path / "seller.db", tmp_path / "old.db")
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute("DELETE FROM blocks WHERE author=? AND seq>1", (SELLER.public,))
    forked = Ledger(LedgerStore(tmp_path / "old.db"), SELLER)
    conflicting = forked.propose_trade(trade_payload(7), 100)
    assert conflicting.message.seq == 2
    with pytest.raises(BlockRejected, match="fork"):
        buyer.agree(conflicting.raw, 101)
    assert [f.seq for f in buyer.store.forks()] == [2]
    later = forked.propose_trade(trade_payload(8), 102)      # seq 3: no conflict by itself
    with pytest.raises(BlockRejected, match="equivocated"):
        buyer.agree(later.raw, 103)
    report = audit(buyer.store.raw_blocks())
    assert report.ok, report.problems        # the honest chain stays valid


def test_the_head_marker_follows_every_commit_in_place(tmp_path):
    from ledger.headmark import read_marks
    seller, buyer = _two_ledgers(tmp_path)
    path = marker_path(tmp_path / "seller.db")
    first = path.stat().st_ino
    for n in range(1, 4):
        _trade(seller, buyer, n)
        assert read_marks(tmp_path / "seller.db") == {SELLER.public: seller.state.seq}
    assert path.stat().st_ino == first   # overwritten, not replaced by a rename per commit
    assert seller.state.seq == 7 and len(path.read_bytes()) == 64 + 1 + 20 + 1
    # a marker from before (unpadded digits) is read, and replaced on the next commit
    seller.store.close()
    path.write_text(f"{SELLER.public.hex()} 7\n")
    seller = Ledger(LedgerStore(tmp_path / "seller.db"), SELLER)
    _trade(seller, buyer, 4)
    assert read_marks(tmp_path / "seller.db") == {SELLER.public: 9}
