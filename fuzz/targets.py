"""Fuzz targets: every decoder and handler of the node that takes untrusted bytes.

A target is ``name(data: bytes) -> None``.  It feeds ``data`` to the code under test and lets
through only the outcome that code promises for bad input (a drop reason, or its package's
declared error: :class:`ledger.DecodeError`, :class:`p2pnode.dht.wire.WireError`,
:class:`p2pnode.errors.ConfigError`, :class:`simulator.errors.ScenarioError`, ...).  Any other
exception -- a ``KeyError``, ``RecursionError``, ``OverflowError``, a crash in a C extension --
propagates, and the fuzzer (or the regression test replaying the corpus) reports it.

Signed messages: random bytes almost never carry a valid signature, so a fuzzer would stop at
the signature check.  Targets of signed messages therefore take two kinds of input, chosen by
the first byte: even -- the bytes as a peer sends them (envelope and all); odd -- the rest is a
message *body*, which the harness signs with :data:`FUZZ_KEY` when it decodes and names that key
as its signer, so everything behind the signature check is reached too.  The committed corpus
(``fuzz/corpus/<target>/``, written by ``fuzz/make_corpus.py``) has seeds of both kinds.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
import tomllib
from pathlib import Path

from ledger import (
    BlockBody, DecodeError, EncodeError, Envelope, LedgerError, Message, audit, open_envelope,
)
from ledger.keys import SigningKey
from ledger.sealed import Sealed, SignedMessage
from p2pnode.dht import wire
from p2pnode.offers import OfferMerge, OfferRecord, RecordCache, check_record
from p2pnode.negotiation import Kind, PeerReply, PeerRequest, ReplayGuard, check_proposal, \
    check_reply, parse_request
from p2pnode.errors import ConfigError

__all__ = ["FUZZ_KEY", "NEEDS", "NOW_S", "TARGETS", "prepare", "sign_body"]

# What each target imports besides the light modules above.  ``fuzz/run.py`` imports them
# (``prepare``) inside atheris' instrumentation, so they are covered, and a target's process
# does not pay for the others' imports (the simulator's pandas and pvlib take seconds).
NEEDS = {
    "feeder_report": ("p2pnode.feeder", "p2pnode.feeder_report", "optimizer.markets"),
    "ledger_file": ("ledger.store",),
    "api_json": ("p2pnode.api_views",),
    "config_toml": ("p2pnode.config",),
    "scenario_toml": ("simulator.scenario", "simulator.errors"),
    "meter_csv": ("p2pnode.meter",),
}


def prepare(name: str) -> None:
    """Import what target ``name`` needs (call it where the imports should be instrumented)."""
    for module in NEEDS.get(name, ()):
        importlib.import_module(module)

FUZZ_KEY = SigningKey.from_seed(hashlib.sha256(b"p2p-energy fuzz key").digest())
OTHER_KEY = SigningKey.from_seed(hashlib.sha256(b"p2p-energy fuzz peer").digest())
NOW_S = 1_782_907_200 + 3600          # 2026-07-01 13:00 UTC, what the seeds are made for
FEEDER = "fuzz-feeder"
_TMP = Path(os.environ.get("FUZZ_TMP", "/dev/shm" if os.path.isdir("/dev/shm") else
                           tempfile.gettempdir()))


def sign_body(body: bytes, cls: type[SignedMessage]) -> Sealed | None:
    """``body`` decoded as ``cls`` and sealed by :data:`FUZZ_KEY` when it names that key as its
    signer (None otherwise): the signed path of a target."""
    try:
        message = cls.decode(body)
    except DecodeError:
        return None
    if message.signer() != FUZZ_KEY.public:
        return None
    signature = FUZZ_KEY.sign(body)
    return Sealed(message, signature, Envelope(body, signature).encode())


def _split(data: bytes, cls: type[SignedMessage]) -> bytes | None:
    """The wire bytes a target sees: ``data[1:]`` as is, or signed (see the module doc)."""
    if not data:
        return None
    if data[0] % 2 == 0:
        return data[1:]
    sealed = sign_body(data[1:], cls)
    return None if sealed is None else sealed.raw


# -- DHT ---------------------------------------------------------------------------------------

def dht_datagram(data: bytes) -> None:
    """A datagram as the DHT protocol parses it: framing, request arguments, reply values."""
    try:
        kind, _, payload = wire.decode_datagram(data)
        if kind == wire.REQUEST:
            name, args = wire.parse_request(payload)
            wire.want_public(args[0])
            if name in ("store", "find_node", "find_value"):
                wire.want_key(args[1])
            if name == "store":
                for raw in wire.want_records(args[2], wire.MAX_RECORDS_PER_STORE):
                    check_record(raw, NOW_S)
            if name == "find_value":
                wire.want_cursor(args[2])
        else:
            _, value = wire.parse_reply(payload)
            if isinstance(value, dict):
                reply = wire.parse_find_value(value)
                merge = OfferMerge(NOW_S)
                for raw in reply.records:
                    merge.add(raw, None)
                merge.offers()
            elif isinstance(value, list):
                wire.parse_nodes(value)
    except wire.WireError:
        pass


_CACHE = RecordCache(max_entries=64)


def offer_record(data: bytes) -> None:
    """A stored offer record: the checks, the cache and the merge of discovery."""
    raw = _split(data, OfferRecord)
    if raw is None:
        return
    result = check_record(raw, NOW_S)
    assert _CACHE.check(raw, NOW_S) == result or not isinstance(result, str)
    merge = OfferMerge(NOW_S, _CACHE)
    merge.add(raw, None)
    for sealed in merge.offers(include_withdrawn=True):
        assert sealed.message.seller == sealed.message.signer()


# -- peer messages -----------------------------------------------------------------------------

# the buyer's request that the replies and proposals under test answer (the seller is FUZZ_KEY)
REQUEST = PeerRequest(
    sender=OTHER_KEY.public, recipient=FUZZ_KEY.public, kind=Kind.REQUEST, trade_id=bytes(16),
    nonce=bytes(16), sent_at_ms=NOW_S * 1000, offer_id=bytes(16), interval_start_s=NOW_S - 3600,
    energy_wh=500, price_micro_per_kwh=200_000)
_REQUEST = REQUEST


def peer_message(data: bytes) -> None:
    """Every peer message: a request (as the seller sees it, through the replay guard), a reply
    and the TRADE proposal it carries (as the buyer sees them)."""
    if not data:
        return
    which, rest = data[0] % 3, data[1:]
    if which == 0:
        raw = _split(rest, PeerRequest)
        if raw is not None:
            sealed = parse_request(raw)
            if not isinstance(sealed, str):
                guard = ReplayGuard(60_000, max_entries=8)
                guard.admit(sealed, NOW_S * 1000)
                guard.replay_of(raw, NOW_S * 1000)
    elif which == 1:
        raw = _split(rest, PeerReply)
        if raw is not None:
            reply = check_reply(raw, _REQUEST)
            if not isinstance(reply, str):
                for block in reply.message.blocks:
                    check_proposal(block, _REQUEST, reply.message.energy_wh)
    else:
        raw = _split(rest, BlockBody)
        if raw is not None:
            check_proposal(raw, _REQUEST, 500)


# -- feeder reports ----------------------------------------------------------------------------

def feeder_report(data: bytes) -> None:
    """A member's report as the feeder node books it, then the interval closed (the books and
    the cross-check of minted tokens, :mod:`p2pnode.mint_check`)."""
    from optimizer.markets import LossWatch
    from p2pnode.feeder import FeederBook, FeederSettings
    from p2pnode.feeder_report import FeederReport
    raw = _split(data, FeederReport)
    if raw is None:
        return
    book = FeederBook(FeederSettings(FEEDER, 900, LossWatch(1.0, 4),
                                     trusted_meters=frozenset({FUZZ_KEY.public})), NOW_S - 1800)
    answer = book.submit(raw, NOW_S)
    assert answer.status in (200, 400, 403, 409, 410, 413, 425, 503)
    assert book.submit(raw, NOW_S).status == answer.status or answer.status != 200
    for start in book.due(NOW_S + 1800):
        book.close(start, 1000)


# -- ledger ------------------------------------------------------------------------------------

def ledger_blocks(data: bytes) -> None:
    """Blocks read back from a ledger file: decoding and the whole audit (rules, links, forks).

    ``data`` is a sequence of ``[2-byte length][block bytes]`` records, as rows of one file."""
    rows, offset = [], 0
    while offset + 2 <= len(data) and len(rows) < 32:
        size = int.from_bytes(data[offset:offset + 2], "big")
        chunk = data[offset + 2:offset + 2 + size]
        offset += 2 + size
        if chunk[:1] and chunk[0] % 2:   # a body: sign it (the signed path)
            sealed = sign_body(chunk[1:], BlockBody)
            chunk = sealed.raw if sealed is not None else chunk[1:]
        try:
            block, _ = open_envelope(chunk, BlockBody)
            rows.append((block.message.author, block.message.seq, block.hash, chunk))
        except DecodeError:
            rows.append((bytes(32), len(rows) + 1, bytes(32), chunk))
    report = audit(rows)
    assert report.blocks == len(rows)


def ledger_file(data: bytes) -> None:
    """A whole ledger database file as the node opens it: a StoreError, or blocks to audit."""
    from ledger import LedgerStore, StoreError
    path = _TMP / f"fuzz-ledger-{os.getpid()}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(data)
    try:
        store = LedgerStore(path)
    except StoreError:
        return
    try:
        audit(list(store.raw_blocks()))
    except StoreError:
        pass
    finally:
        store.close()


# -- local API and configuration ---------------------------------------------------------------

def api_json(data: bytes) -> None:
    """A JSON body of the local API (PUT /api/v1/settings) as the handler parses it."""
    from p2pnode import api_views
    try:
        api_views.parse_settings_body(data)
    except api_views.BadRequest:
        pass


def config_toml(data: bytes) -> None:
    """A node.toml: TOML, then every table's validation (ConfigError naming the field)."""
    from p2pnode.config import config_from_dict
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return
    try:
        config_from_dict(raw, base=Path("/nonexistent"))
    except ConfigError:
        pass


def scenario_toml(data: bytes) -> None:
    """A scenario file: TOML, then the scenario's validation (ScenarioError listing problems)."""
    from simulator.errors import ScenarioError
    from simulator.scenario import scenario_from_dict
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return
    try:
        scenario_from_dict(raw, "fuzz.toml")
    except ScenarioError:
        pass


def meter_csv(data: bytes) -> None:
    """A meter CSV as the replay meter loads it (ConfigError naming the line and column)."""
    from p2pnode.meter import CsvReplayMeter
    path = _TMP / f"fuzz-meter-{os.getpid()}.csv"
    path.write_bytes(data)
    try:
        meter = CsvReplayMeter(path, 900)
    except ConfigError:
        return
    for start, reading in list(meter.readings.items())[:4]:
        assert meter.read(start, 900) == reading


TARGETS = {
    "dht_datagram": dht_datagram,
    "offer_record": offer_record,
    "peer_message": peer_message,
    "feeder_report": feeder_report,
    "ledger_blocks": ledger_blocks,
    "ledger_file": ledger_file,
    "api_json": api_json,
    "config_toml": config_toml,
    "scenario_toml": scenario_toml,
    "meter_csv": meter_csv,
}

# silence unused-import checkers: these name what targets may raise
_ = (EncodeError, LedgerError, Message, json)
