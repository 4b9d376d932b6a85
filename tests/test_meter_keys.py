"""Readings a node cannot forge: meter keys, minting only from trusted meters, the audit."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import Ledger, LedgerStore, SigningKey, audit
from ledger.rules import DOUBLE_SPEND, READING as READING_RULE
from p2pnode.config import MeterConfig, config_from_dict
from p2pnode.errors import ConfigError, IdentityError
from p2pnode.meter import ProfileMeter, Reading, SigningMeter
from p2pnode.minting import ledger_rules, mint_reading, sealed_reading
from tests.dhtkit import run
from tests.nodekit import INTERVAL_S, START, swarm


def _key(name: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(name.encode()).digest())


NODE, METER, OTHER_METER = _key("node"), _key("meter"), _key("other meter")
READING = Reading(START, INTERVAL_S, 3000, 1000)


def _config(trusted=()):
    raw = {"meter": {"kind": "external", "trusted_keys": [k.public.hex() for k in trusted]}}
    return config_from_dict(raw)


def _ledger(tmp_path, trusted=()) -> Ledger:
    return Ledger(LedgerStore(tmp_path / "n.db"), NODE, ledger_rules(_config(trusted)))


def test_config_meter_table():
    config = _config([METER])
    assert config.meter.trusted_keys == (METER.public.hex(),)
    assert ledger_rules(config).require_trusted_meter
    assert not ledger_rules(config_from_dict({})).require_trusted_meter
    with pytest.raises(ConfigError, match=r'\[meter\] trusted_keys = "abc": must be 64 hex'):
        MeterConfig(kind="external", trusted_keys=("abc",))
    with pytest.raises(ConfigError, match=r'\[meter\] kind = "modbus"'):
        MeterConfig(kind="modbus")
    with pytest.raises(ConfigError, match=r'\[meter\] key_file = .*is for kind = "csv"'):
        MeterConfig(kind="external", key_file=Path("meter.key"))


def test_trusted_meter_reading_mints(tmp_path):
    ledger = _ledger(tmp_path, [METER])
    minted = mint_reading(ledger, READING.signed_by(METER), NODE, 1)
    assert minted.message.payload.tokens_wh == 2000
    assert ledger.tokens_wh(START) == 2000
    block = ledger.own_block(1).message
    assert block.payload.reading.meter == METER.public and block.payload.reading_sig
    assert mint_reading(ledger, READING.signed_by(METER), NODE, 2) == "already_minted"


def test_untrusted_readings_are_refused(tmp_path):
    ledger = _ledger(tmp_path, [METER])
    assert mint_reading(ledger, READING, NODE, 1) == "unsigned_reading"      # self-signed
    assert mint_reading(ledger, READING.signed_by(OTHER_METER), NODE, 1) == "untrusted_meter"
    inflated = dataclasses.replace(READING.signed_by(METER), generation_wh=9000)
    assert mint_reading(ledger, inflated, NODE, 1) == "bad_meter_signature"
    assert mint_reading(ledger, Reading(START, INTERVAL_S, 0, 10), NODE, 1) == "no_surplus"
    assert ledger.state.seq == 0 and ledger.tokens_wh(START) == 0


def test_a_measured_only_mint_proves_a_deficit_reading(tmp_path):
    # what a seller writes before a DELIVERY when its meter measured no surplus: 0 tokens
    ledger = _ledger(tmp_path, [METER])
    deficit = Reading(START, INTERVAL_S, 0, 10)
    assert mint_reading(ledger, deficit, NODE, 1, measured_only=True) == "unsigned_reading"
    minted = mint_reading(ledger, deficit.signed_by(METER), NODE, 1, measured_only=True)
    assert minted.message.payload.tokens_wh == 0 and minted.message.payload.reading_sig
    assert START in ledger.state.minted and ledger.tokens_wh(START) == 0


def test_without_meter_keys_a_node_mints_its_own_reading(tmp_path):
    ledger = _ledger(tmp_path)
    assert mint_reading(ledger, READING, NODE, 1).message.payload.tokens_wh == 2000
    assert ledger.own_block(1).message.payload.reading.meter == NODE.public


def test_audit_refuses_self_signed_mints_when_meters_are_trusted(tmp_path):
    ledger = _ledger(tmp_path)                    # a node that mints its own readings
    mint_reading(ledger, READING, NODE, 1)
    rows = list(ledger.store.raw_blocks())
    assert audit(rows).ok
    strict = ledger_rules(_config([METER]))
    assert [p.rule for p in audit(rows, strict).problems] == [READING_RULE]


def test_audit_finds_one_meter_reading_minted_on_two_chains(tmp_path):
    signed = READING.signed_by(METER)
    trusted = ledger_rules(_config([METER]))
    rows = []
    for name in ("a", "b"):
        key = _key(name)
        ledger = Ledger(LedgerStore(tmp_path / f"{name}.db"), key, trusted)
        assert mint_reading(ledger, signed, key, 1).message.payload.tokens_wh == 2000
        rows += list(ledger.store.raw_blocks())
    problems = audit(rows, trusted).problems
    assert [p.rule for p in problems] == [DOUBLE_SPEND]
    assert "also minted by" in problems[0].detail


def test_ledger_verify_cli_trusted_meter(tmp_path):
    ledger = _ledger(tmp_path)
    mint_reading(ledger, READING, NODE, 1)
    ledger.store.close()
    run = [sys.executable, "-m", "p2pnode.cli", "ledger", "verify", str(tmp_path / "n.db")]
    assert subprocess.run(run, capture_output=True).returncode == 0
    strict = subprocess.run([*run, "--trusted-meter", METER.public.hex()], capture_output=True,
                            text=True)
    assert strict.returncode == 1 and "reading: the reading is signed by the node itself" in strict.stdout
    bad = subprocess.run([*run, "--trusted-meter", "zz"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--trusted-meter 'zz'" in bad.stderr
    listed = tmp_path / "meters.txt"
    listed.write_text(f"{OTHER_METER.public.hex()}\n\n{METER.public.hex()}\n")
    from_file = subprocess.run([*run, "--trusted-meter-file", str(listed)], capture_output=True,
                               text=True)
    assert from_file.returncode == 1 and "signed by the node itself" in from_file.stdout
    missing = subprocess.run([*run, "--trusted-meter-file", str(tmp_path / "nope")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "--trusted-meter-file" in missing.stderr


def test_sealed_reading_keeps_the_meter_signature():
    sealed = sealed_reading(READING.signed_by(METER), NODE)
    assert sealed.message.meter == METER.public
    assert sealed.signature == READING.signed_by(METER).meter_sig


def test_a_node_lying_about_its_meter_mints_nothing_and_sells_nothing(tmp_path):
    """Two sellers with signing meters and trusted keys, one buyer; seller 1 inflates its
    reading after the meter signed it.  Its mint is refused, it delivers nothing, the honest
    seller trades, and every ledger verifies under the strict rules.  (Real time: the liar
    offers on its forecast, and a buyer splits its need between two sellers without a record,
    :meth:`p2pnode.reputation.Reputation.share_cap`, so it may agree a trade with the liar.)"""
    meters = {0: _key("meter 0"), 1: _key("meter 1")}
    trusted = [m.public.hex() for m in meters.values()]

    class Inflating(SigningMeter):
        def read(self, start, interval):
            reading = super().read(start, interval)
            return dataclasses.replace(reading, generation_wh=reading.generation_wh + 5000)

    def configure(i, config, meter):
        config = dataclasses.replace(config, meter=MeterConfig(kind="external",
                                                               trusted_keys=tuple(trusted)))
        if i in meters:
            meter = (Inflating if i == 1 else SigningMeter)(meter, meters[i])
        return config, meter

    async def scenario():
        async with swarm([[2000], [1500], [-1800]], tmp_path, configure=configure) as s:
            await s.interval(0)
            honest, liar, buyer = s.nodes
            from_liar = [t for t in buyer.bought.values() if t.payload.seller == liar.public]
            # refused once (before delivering, or offering in the balancing round, or at the
            # close): no DELIVERY proposal goes out without the interval's MINT
            assert liar.counters["mint_refused_bad_meter_signature"] == 1
            assert liar.counters["delivery_no_mint"] == len(from_liar)
            assert not any(t.settled for t in from_liar)
            assert liar.ledger.tokens_wh(START) == 0 and liar.ledger.state.minted == set()
            assert honest.ledger.state.minted == {START}
            delivered = [t for t in buyer.bought.values() if t.settled]
            assert sum(t.delivered_wh for t in delivered) > 0
            assert {t.payload.seller for t in delivered} == {honest.public}
            strict = ledger_rules(honest.config)
            report = audit(s.rows(), strict)
            assert report.ok, report.problems

    run(scenario())


def test_the_daemon_replay_meter_signs_with_the_meter_key_file(tmp_path):
    from ledger import is_valid_signature
    from p2pnode.commands.run import replay_meter
    from p2pnode.config import load_config
    from p2pnode.identity import create_key_file

    meter_key = create_key_file(tmp_path / "meter.key")
    (tmp_path / "meter.csv").write_text(
        f"interval_start_s,generation_wh,consumption_wh\n{START},3000,1000\n")
    (tmp_path / "node.toml").write_text(
        'key_file = "node.key"\n[meter]\npath = "meter.csv"\nkey_file = "meter.key"\n'
        f'trusted_keys = ["{meter_key.public.hex()}"]\n')
    config = load_config(tmp_path / "node.toml")
    reading = replay_meter(config).read(START, INTERVAL_S)
    assert reading.meter_key == meter_key.public
    assert is_valid_signature(meter_key.public, reading.meter_sig,
                              reading.meter_reading(meter_key.public).signing_bytes())
    ledger = Ledger(LedgerStore(tmp_path / "n.db"), NODE, ledger_rules(config))
    assert mint_reading(ledger, reading, NODE, 1).message.payload.tokens_wh == 2000
    (tmp_path / "meter.key").chmod(0o644)
    with pytest.raises(IdentityError, match="accessible by others"):
        replay_meter(config)
