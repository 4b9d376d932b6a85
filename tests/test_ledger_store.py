"""The durable store, the own-chain Ledger, auditing and the `p2pnode ledger` commands."""

import hashlib
import json
import os
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ledger import (
    AddResult, BlockRejected, BlockType, ChainState, Ledger, LedgerStore, MeterReading, SigningKey,
    audit, check_fork_proof, seal,
)
from ledger.verify import ForkProof
from p2pnode.cli import main
from tests.chainkit import (
    BANK, BUYER, INTERVAL, PRICE, SELLER, block, deposit_payload, grid_payload, settlement_payload,
    trade_payload,
)


def make_trading_db(path, trades=3):
    """Seller and buyer chains in one file: mint, deposit, trades with settlements, grid."""
    store = LedgerStore(path)
    seller, buyer = Ledger(store, SELLER), Ledger(store, BUYER)
    reading = seal(MeterReading(SELLER.public, INTERVAL, 900, 9000, 1000), SELLER)
    seller.mint(reading, 8000, 1)
    voucher = deposit_payload(BUYER)
    buyer.deposit(seal(voucher.voucher, BANK), 1)
    for n in range(1, trades + 1):
        proposal = seller.propose_trade(trade_payload(n), 10 * n)
        seller.accept_agreement(buyer.agree(proposal.raw, 10 * n + 1).raw)
        settle = buyer.propose_settlement(settlement_payload(n), 10 * n + 2)
        buyer.accept_agreement(seller.agree(settle.raw, 10 * n + 3).raw)
    buyer.record_grid(grid_payload(), 100)
    return store, seller, buyer


def test_a_full_trading_day_audits_clean(tmp_path):
    store, seller, buyer = make_trading_db(tmp_path / "l.db")
    report = audit(store.raw_blocks())
    assert report.ok, report.problems
    assert (report.blocks, report.full_chains, report.pending_proposals) == (2 + 12 + 1, 2, 0)
    assert seller.credit_micro == 3 * 1200 * PRICE // 1000
    assert seller.tokens_wh(INTERVAL) == 8000 - 3 * 1500


# SHA-256 over the raw blocks of make_trading_db (deterministic keys, clocks and signatures), as
# written by the ledger code of commit 922b961: the wire format of blocks must never change.
REFERENCE_TRADING_DB_SHA256 = "5d728b927edd8ae40905e00e1de98f6d0fed0c7f30ee77007c8ecc4a06c1fb5e"


def test_block_bytes_are_those_of_the_reference_encoding(tmp_path):
    store, _, _ = make_trading_db(tmp_path / "l.db")
    digest = hashlib.sha256(b"".join(raw for _, _, _, raw in store.raw_blocks()))
    assert digest.hexdigest() == REFERENCE_TRADING_DB_SHA256


@pytest.mark.parametrize("batch", [1, 2, 4, 512])
def test_bad_signatures_are_found_whatever_the_signature_batch(tmp_path, monkeypatch, batch):
    monkeypatch.setattr("ledger.verify.SIGNATURE_BATCH", batch)
    store, _, _ = make_trading_db(tmp_path / "l.db")
    rows = list(store.raw_blocks())
    heads = {}  # a chain's last block: no other block holds its hash
    for index, (author, seq, _, _) in enumerate(rows):
        heads[author] = index
    for index in heads.values():
        author, seq, _, raw = rows[index]
        forged = raw[:-10] + bytes([raw[-10] ^ 1]) + raw[-9:]  # a bit of the signature
        rows[index] = (author, seq, hashlib.sha256(forged).digest(), forged)
    problems = audit(rows).problems
    assert sorted((p.rule, p.author, p.seq) for p in problems) == sorted(
        ("signature", rows[index][0], rows[index][1]) for index in heads.values())


def test_reopening_replays_the_same_state(tmp_path):
    store, seller, buyer = make_trading_db(tmp_path / "l.db")
    store.close()
    again = LedgerStore(tmp_path / "l.db")
    assert Ledger(again, BUYER).credit_micro == buyer.credit_micro
    assert Ledger(again, SELLER).state.head == seller.state.head


def test_adding_the_same_block_twice_is_a_no_op(tmp_path):
    store, seller, _ = make_trading_db(tmp_path / "l.db")
    head = seller.own_block(seller.state.seq)
    before = store.count()
    assert store.add([head]) == [AddResult.DUPLICATE]
    assert store.count() == before


def test_agreeing_twice_returns_the_same_agreement(tmp_path):
    store, seller, buyer = make_trading_db(tmp_path / "l.db", trades=0)
    proposal = seller.propose_trade(trade_payload(7), 205)
    first = buyer.agree(proposal.raw, 206)
    credit = buyer.credit_micro
    assert buyer.agree(proposal.raw, 207).hash == first.hash
    assert buyer.credit_micro == credit  # paid once
    assert seller.propose_trade(trade_payload(7), 208).hash == proposal.hash
    seller.accept_agreement(first.raw)
    seller.accept_agreement(first.raw)
    assert audit(store.raw_blocks()).ok


def test_forged_proposal_is_rejected(tmp_path):
    store, seller, buyer = make_trading_db(tmp_path / "l.db", trades=0)
    proposal = seller.propose_trade(trade_payload(8), 5)
    forged = bytearray(proposal.raw)
    forged[-10] ^= 1  # inside the signature (the envelope ends with sig, then "t": 1)
    with pytest.raises(BlockRejected, match="signature"):
        buyer.agree(bytes(forged), 6)


def test_rejected_append_leaves_nothing_behind(tmp_path):
    store, seller, _ = make_trading_db(tmp_path / "l.db", trades=0)
    count, state = store.count(), seller.state.seq
    with pytest.raises(BlockRejected, match="token-balance"):
        seller.propose_trade(trade_payload(9, energy=9999), 5)
    assert (store.count(), seller.state.seq) == (count, state)


def test_failed_batch_rolls_back_disk_and_memory(tmp_path):
    store, seller, buyer = make_trading_db(tmp_path / "l.db", trades=0)
    count, tokens = store.count(), seller.tokens_wh(INTERVAL)
    with pytest.raises(RuntimeError):
        with seller.batch():
            seller.propose_trade(trade_payload(20), 5)
            raise RuntimeError("power cut in the middle of the batch")
    assert (store.count(), seller.tokens_wh(INTERVAL)) == (count, tokens)


def test_equivocation_gives_a_verifiable_fork_proof(tmp_path):
    store, seller, _ = make_trading_db(tmp_path / "l.db", trades=0)
    other = block(SELLER, ChainState(SELLER.public), BlockType.GRID, grid_payload())  # another #1
    assert store.add([other]) == [AddResult.FORK]
    [fork] = store.forks()
    proof = ForkProof(fork.raw_kept, fork.raw_other)
    assert check_fork_proof(proof)
    assert not check_fork_proof(ForkProof(fork.raw_kept, fork.raw_kept))
    report = audit(store.raw_blocks(), stored_forks=[proof])
    assert [p.rule for p in report.problems] == ["fork"]


def test_fork_between_two_databases_is_found(tmp_path):
    store, seller, _ = make_trading_db(tmp_path / "a.db", trades=0)
    other_db = LedgerStore(tmp_path / "b.db")
    other_db.add([block(SELLER, ChainState(SELLER.public), BlockType.GRID, grid_payload())])
    rows = list(store.raw_blocks()) + list(other_db.raw_blocks())
    assert "fork" in {p.rule for p in audit(rows).problems}


def rows_of(tmp_path_factory):
    store, _, _ = make_trading_db(tmp_path_factory.mktemp("p") / "l.db", trades=1)
    return list(store.raw_blocks())


@pytest.fixture(scope="module")
def clean_rows(tmp_path_factory):
    return rows_of(tmp_path_factory)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), rehash=st.booleans())
def test_any_single_byte_change_of_a_stored_block_is_detected(clean_rows, data, rehash):
    index = data.draw(st.integers(0, len(clean_rows) - 1))
    author, seq, stored_hash, raw = clean_rows[index]
    offset = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != raw[offset]))
    changed = raw[:offset] + bytes([value]) + raw[offset + 1:]
    # rehash: the attacker also rewrote the hash column to match the changed bytes
    new_hash = hashlib.sha256(changed).digest() if rehash else stored_hash
    rows = list(clean_rows)
    rows[index] = (author, seq, new_hash, changed)
    assert not audit(rows).ok


def test_cli_verify_and_export(tmp_path, capsys):
    path = tmp_path / "l.db"
    store, _, _ = make_trading_db(path)
    store.close()
    assert main(["ledger", "verify", str(path)]) == 0
    assert "valid" in capsys.readouterr().err
    assert main(["ledger", "export", str(path), "--out", str(tmp_path / "x.jsonl")]) == 0
    lines = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert len(lines) == 15 and {line["type"] for line in lines} == {
        "MINT", "DEPOSIT", "TRADE", "SETTLEMENT", "GRID"}
    assert all(line["signature_valid"] for line in lines)
    with sqlite3.connect(path) as db:  # tamper: a trade of 1500 Wh becomes 1501 Wh
        raw = db.execute("SELECT raw FROM blocks WHERE author=? AND seq=2", (SELLER.public,)).fetchone()[0]
        assert b"\xcd\x05\xdc" in raw
        db.execute("UPDATE blocks SET raw=? WHERE author=? AND seq=2",
                   (raw.replace(b"\xcd\x05\xdc", b"\xcd\x05\xdd"), SELLER.public))
    capsys.readouterr()
    assert main(["ledger", "verify", str(path), "--quiet"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out and all(": " in line for line in out)


def test_cli_verify_refuses_missing_and_corrupt_files(tmp_path, capsys):
    assert main(["ledger", "verify", str(tmp_path / "none.db")]) == 2
    assert "no such ledger database" in capsys.readouterr().err
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    assert main(["ledger", "verify", str(junk)]) == 2
    assert "not a usable ledger database" in capsys.readouterr().err


def test_trusted_issuer_option(tmp_path, capsys):
    path = tmp_path / "l.db"
    make_trading_db(path)[0].close()
    stranger = SigningKey.generate().public.hex()
    assert main(["ledger", "verify", str(path), "--trusted-issuer", stranger]) == 1
    assert "voucher issuer is not trusted" in capsys.readouterr().out
    assert main(["ledger", "verify", str(path), "--trusted-issuer", BANK.public.hex()]) == 0


@pytest.mark.parametrize("sync, level", [("full", 2), ("normal", 1)])
def test_sync_mode_sets_the_pragma_and_only_writing_commits_count(tmp_path, sync, level):
    store = LedgerStore(tmp_path / "l.db", sync=sync)
    assert store.sync == sync
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == level  # per connection
    seller = Ledger(store, SELLER)
    mint = seller.mint(seal(MeterReading(SELLER.public, INTERVAL, 900, 9000, 1000), SELLER), 8000, 1)
    with seller.batch():                                  # two appends, one commit
        seller.propose_trade(trade_payload(1), 2)
        seller.record_grid(grid_payload(), 3)
    assert store.add([mint]) == [AddResult.DUPLICATE]     # wrote nothing: not a commit
    assert store.commits == 2
    store.close()


def test_unknown_sync_mode_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="sync must be one of"):
        LedgerStore(tmp_path / "l.db", sync="off")
