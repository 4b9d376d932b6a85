"""Write the committed seed corpus: ``python fuzz/make_corpus.py`` (deterministic).

Valid and nearly valid inputs of every target (see :mod:`fuzz.targets` for the input format of
each: the first byte of a signed message's input picks "as sent" (even) or "sign this body"
(odd)).  Seeds are what the fuzzer mutates first, so each one reaches deep into its decoder.
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402

from fuzz.targets import FEEDER, FUZZ_KEY, NOW_S, OTHER_KEY, REQUEST  # noqa: E402
from ledger import (  # noqa: E402
    BlockType, CreditVoucher, Ledger, LedgerStore, MeterReading, TradePayload, seal,
)
from p2pnode.dht import wire  # noqa: E402
from p2pnode.feeder_report import FeederReport  # noqa: E402
from p2pnode.negotiation import Kind, PeerReply, PeerRequest, Status  # noqa: E402
from p2pnode.offers import OfferRecord  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus"
START = NOW_S - 3600
MSG_ID = bytes(range(20))


def _offer(**changes) -> OfferRecord:
    fields = dict(seller=FUZZ_KEY.public, offer_id=bytes(16), seq=1, energy_wh=1500,
                  price_micro_per_kwh=200_000, feeder=FEEDER, interval_start_s=START,
                  expires_at_s=NOW_S + 600, endpoint="127.0.0.1:4000", location="1/2/3")
    fields.update(changes)
    return OfferRecord(**fields)


def _both(message) -> list[bytes]:
    """The sealed bytes as sent (even first byte) and the body to sign (odd first byte)."""
    return [b"\x00" + seal(message, FUZZ_KEY).raw, b"\x01" + message.signing_bytes()]


def dht_seeds() -> list[bytes]:
    record = seal(_offer(), FUZZ_KEY).raw
    public, key = FUZZ_KEY.public, bytes(20)
    return [
        wire.encode_request(MSG_ID, "ping", [public]),
        wire.encode_request(MSG_ID, "store", [public, key, [record]]),
        wire.encode_request(MSG_ID, "find_node", [public, key]),
        wire.encode_request(MSG_ID, "find_value", [public, key, None]),
        wire.encode_reply(MSG_ID, public, None),
        wire.encode_reply(MSG_ID, public, [[key, "127.0.0.1", 4000]]),
        wire.encode_reply(MSG_ID, public, wire.find_value_reply([], (record,), None)),
    ]


def offer_seeds() -> list[bytes]:
    return [*_both(_offer()), *_both(_offer(energy_wh=0, seq=2, location=None)),
            *_both(_offer(expires_at_s=NOW_S - 1))]


def _proposal_block() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(LedgerStore(Path(tmp) / "seed.db"), FUZZ_KEY)
        reading = seal(MeterReading(FUZZ_KEY.public, START, 900, 3000, 500), FUZZ_KEY)
        ledger.mint(reading, 2500, NOW_S * 1000)
        trade = TradePayload(REQUEST.trade_id, FUZZ_KEY.public, OTHER_KEY.public, START, 500,
                             REQUEST.price_micro_per_kwh, REQUEST.offer_id)
        block = ledger.propose_trade(trade, NOW_S * 1000 + 1)
        ledger.store.close()
        return block.raw


def peer_seeds() -> list[bytes]:
    proposal = _proposal_block()
    request = PeerRequest(
        sender=FUZZ_KEY.public, recipient=OTHER_KEY.public, kind=Kind.REQUEST,
        trade_id=bytes(16), nonce=bytes(range(16)), sent_at_ms=NOW_S * 1000, offer_id=bytes(16),
        interval_start_s=START, energy_wh=500, price_micro_per_kwh=200_000)
    confirm = PeerRequest(
        sender=FUZZ_KEY.public, recipient=OTHER_KEY.public, kind=Kind.CONFIRM,
        trade_id=bytes(16), nonce=bytes(range(16)), sent_at_ms=NOW_S * 1000, offer_id=bytes(16),
        interval_start_s=START, energy_wh=500, price_micro_per_kwh=200_000, blocks=(proposal,))
    reply = PeerReply(sender=FUZZ_KEY.public, recipient=OTHER_KEY.public,
                      trade_id=REQUEST.trade_id, nonce=REQUEST.nonce, status=Status.ACCEPTED,
                      energy_wh=500, blocks=(proposal,))
    denied = PeerReply(sender=FUZZ_KEY.public, recipient=OTHER_KEY.public,
                       trade_id=REQUEST.trade_id, nonce=REQUEST.nonce, status=Status.DENIED,
                       reason="sold_out")
    seeds = [b"\x00" + s for s in _both(request) + _both(confirm)]
    seeds += [b"\x01" + s for s in _both(reply) + _both(denied)]
    seeds += [b"\x02\x00" + proposal]
    return seeds


def feeder_seeds() -> list[bytes]:
    start = NOW_S - 1800
    reading = MeterReading(FUZZ_KEY.public, start, 900, 3000, 500)
    meter_sig = FUZZ_KEY.sign(reading.signing_bytes())
    return [*_both(FeederReport(FUZZ_KEY.public, FEEDER, start, 900, 3000, 500, 2500,
                                FUZZ_KEY.public, meter_sig)),
            *_both(FeederReport(FUZZ_KEY.public, FEEDER, start, 900, 3000, 500, 9000)),
            *_both(FeederReport(FUZZ_KEY.public, "other", start, 900, 0, 10**6))]


def _ledger_db() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seed.db"
        ledger = Ledger(LedgerStore(path), FUZZ_KEY)
        ledger.mint(seal(MeterReading(FUZZ_KEY.public, START, 900, 3000, 500), FUZZ_KEY), 2500,
                    NOW_S * 1000)
        issuer = OTHER_KEY
        ledger.deposit(seal(CreditVoucher(issuer.public, FUZZ_KEY.public, bytes(16), 10**6),
                            issuer), NOW_S * 1000 + 1)
        ledger.store.close()
        with sqlite3.connect(path) as db:   # fold the WAL into the file: one self-contained file
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("PRAGMA journal_mode=DELETE")
        return path.read_bytes()


def ledger_block_seeds() -> list[bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(LedgerStore(Path(tmp) / "seed.db"), FUZZ_KEY)
        blocks = [ledger.mint(seal(MeterReading(FUZZ_KEY.public, START, 900, 3000, 500),
                                   FUZZ_KEY), 2500, NOW_S * 1000).raw]
        trade = TradePayload(bytes(16), FUZZ_KEY.public, OTHER_KEY.public, START, 500, 200_000,
                             bytes(16))
        blocks.append(ledger.propose_trade(trade, NOW_S * 1000 + 1).raw)
        ledger.store.close()

    def rows(raws, odd=False) -> bytes:
        out = b""
        for raw in raws:
            item = raw if not odd else b"\x01" + _body_of(raw)
            out += len(item).to_bytes(2, "big") + item
        return out

    return [rows(blocks), rows(blocks, odd=True), rows(blocks[:1])]


def _body_of(raw: bytes) -> bytes:
    return msgpack.unpackb(raw)["body"]


def api_seeds() -> list[bytes]:
    return [b'{"min_sell_price_per_kwh": 0.1, "max_buy_price_per_kwh": 0.3, "reserve_wh": 0, '
            b'"max_trade_wh": 5000, "opt_out": "none"}',
            b'{"min_sell_price_per_kwh": -1, "max_buy_price_per_kwh": 0.3, "reserve_wh": 1e3, '
            b'"max_trade_wh": 5000, "opt_out": "all"}', b"[]", b"{}"]


def config_seeds() -> list[bytes]:
    return [
        b'key_file = "node.key"\nledger = "node.db"\nfeeder = "f1"\ninterval_s = 900\n'
        b'[meter]\npath = "m.csv"\ntrusted_keys = ["' + FUZZ_KEY.public.hex().encode() + b'"]\n'
        b'[network]\nbootstrap = ["127.0.0.1:4000"]\n[constraints]\nreserve_wh = 10\n'
        b'[timing]\nbuy_delay_s = 5\nwindow_s = 300\n[tariffs]\nfeed_in_per_kwh = 0.08\n'
        b'[tariffs.frames.peak]\nstart_hour = 17\nend_hour = 21\nretail_per_kwh = 0.4\n'
        b'[selection]\nstrategy = "greedy"\n[selection.weights]\ntrade_surplus = 2\n',
        b'[feeder_role]\nenabled = true\ntransformer_meter = "t.csv"\nnetwork = "x"\n'
        b'members = ["00"]\n[feeder_role.buses]\nab = 3\n[api]\nenabled = true\n',
    ]


def scenario_seeds() -> list[bytes]:
    return [(ROOT / "examples" / name).read_bytes()
            for name in ("quickstart.toml", "hostile.toml") if (ROOT / "examples" / name).exists()]


def csv_seeds() -> list[bytes]:
    return [b"interval_start_s,generation_wh,consumption_wh,soc\n0,100,50,0.5\n900,0,20,\n",
            b"interval_start_s,generation_wh,consumption_wh\n0,x,1\n"]


SEEDS = {
    "dht_datagram": dht_seeds, "offer_record": offer_seeds, "peer_message": peer_seeds,
    "feeder_report": feeder_seeds, "ledger_blocks": ledger_block_seeds,
    "ledger_file": lambda: [_ledger_db()], "api_json": api_seeds, "config_toml": config_seeds,
    "scenario_toml": scenario_seeds, "meter_csv": csv_seeds,
}


def main() -> None:
    for name, make in SEEDS.items():
        folder = CORPUS / name
        folder.mkdir(parents=True, exist_ok=True)
        for seed in make():
            (folder / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        print(f"{name}: {len(list(folder.iterdir()))} seeds")


if __name__ == "__main__":
    main()
