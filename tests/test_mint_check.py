"""The feeder's cross-check of minted tokens against signed reports and the transformer."""

from __future__ import annotations

import dataclasses
import hashlib

import msgpack

from ledger import SigningKey
from optimizer.markets import LossWatch
from p2pnode.feeder import FeederBook, FeederSettings
from p2pnode.feeder_report import FeederReport, report_for
from p2pnode.meter import Reading
from p2pnode.mint_check import MemberMint, cross_check, reading_verified

START, STEP = 1_782_907_200, 900


def _key(name: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(name.encode()).digest())


HONEST, LIAR, BUYER = _key("honest"), _key("liar"), _key("buyer")
METERS = {HONEST: _key("meter honest"), LIAR: _key("meter liar"), BUYER: _key("meter buyer")}
TRUSTED = frozenset(m.public for m in METERS.values())
# true readings: honest +1500, liar +1000, buyer -2600; the transformer imports the rest
TRUE = {HONEST: (2000, 500), LIAR: (1500, 500), BUYER: (0, 2600)}
TECH_LOSS_WH = 30
T_WH = sum(c - g for g, c in TRUE.values()) + TECH_LOSS_WH        # = 130


def _mint(node, generation_wh=None, signed=True) -> MemberMint:
    g, c = TRUE[node]
    reading = Reading(START, STEP, g, c).signed_by(METERS[node]) if signed else Reading(START, STEP, g, c)
    if generation_wh is not None:          # the node changes its reading after the meter signed
        reading = dataclasses.replace(reading, generation_wh=generation_wh)
    minted = max(0, reading.generation_wh - reading.consumption_wh)
    return MemberMint(node.public, START, STEP, reading.generation_wh, reading.consumption_wh,
                      minted, reading.meter_key, reading.meter_sig)


def test_honest_feeder_has_no_flags():
    mints = [_mint(n) for n in (HONEST, LIAR, BUYER)]
    assert all(reading_verified(m, TRUSTED) for m in mints)
    check = cross_check(mints, T_WH, tolerance_wh=100, trusted_meters=TRUSTED)
    assert check.flags == () and check.minted_wh == 2500
    assert check.excess_wh == 2500 - (2600 - T_WH) - 100 == TECH_LOSS_WH - 100
    # without meter keys too: the balance holds
    unsigned = [_mint(n, signed=False) for n in (HONEST, LIAR, BUYER)]
    assert cross_check(unsigned, T_WH, tolerance_wh=100).flags == ()


def test_an_inflated_reading_is_caught_by_the_transformer_balance():
    mints = [_mint(HONEST, signed=False), _mint(LIAR, generation_wh=4500, signed=False),
             _mint(BUYER, signed=False)]
    check = cross_check(mints, T_WH, tolerance_wh=100)
    assert check.excess_wh == 3000 + TECH_LOSS_WH - 100        # the 3000 Wh made up
    # without meter keys every minting member is a suspect: the liar and a false alarm
    assert set(check.flags) == {(LIAR.public, "mint_over_transformer"),
                                (HONEST.public, "mint_over_transformer")}


def test_meter_keys_pin_the_liar():
    mints = [_mint(HONEST), _mint(LIAR, generation_wh=4500), _mint(BUYER)]
    check = cross_check(mints, T_WH, tolerance_wh=100, trusted_meters=TRUSTED)
    assert set(check.flags) == {(LIAR.public, "unverified_reading"),
                                (LIAR.public, "mint_over_transformer")}


def test_minting_beyond_the_own_report_is_flagged():
    mint = dataclasses.replace(_mint(HONEST), minted_wh=1600)
    check = cross_check([mint], None, tolerance_wh=100, trusted_meters=TRUSTED)
    assert check.flags == ((HONEST.public, "mint_over_report"),) and check.excess_wh is None


def test_the_feeder_book_flags_and_counts_a_lying_member():
    settings = FeederSettings("f", STEP, LossWatch(0.1, 4), trusted_meters=TRUSTED)
    book = FeederBook(settings, START)
    for node in (HONEST, LIAR, BUYER):
        g, c = TRUE[node]
        reading = Reading(START, STEP, g, c).signed_by(METERS[node])
        if node is LIAR:
            reading = dataclasses.replace(reading, generation_wh=4500)
        answer = book.submit(report_for(reading, "f", node, max(0, reading.net_wh)).raw,
                             START + STEP)
        assert answer.status == 200
    booked = book.close(START, T_WH)
    assert booked.minted_wh == 1500 + 4000
    assert {member for member, _ in booked.flagged} == {LIAR.public.hex()}
    assert book.counters["mint_flagged_unverified_reading"] == 1
    assert book.counters["mint_flagged_mint_over_transformer"] == 1
    assert book.flagged == {LIAR.public.hex(): 2}


def test_report_carries_minted_tokens_and_the_meter_signature():
    reading = Reading(START, STEP, 2000, 500).signed_by(METERS[HONEST])
    report = report_for(reading, "f", HONEST, 1500).message
    assert isinstance(report, FeederReport)
    assert (report.minted_wh, report.meter, report.meter_sig) == (
        1500, METERS[HONEST].public, reading.meter_sig)
    assert FeederReport.decode(report.encode()) == report


def test_the_reporter_sends_what_the_node_minted_once_it_minted():
    """The report is sealed when sent, after the node minted from the reading it reports; a
    retry sends the same bytes."""
    import asyncio

    from aiohttp import web

    from p2pnode.feeder_report import FEEDER_REPORT_PATH, FeederReporter
    from tests.dhtkit import run

    book = FeederBook(FeederSettings("f", STEP, LossWatch(0.1, 4), trusted_meters=TRUSTED), START)
    minted: dict[int, int] = {}
    bodies = []

    async def on_report(request):
        raw = await request.read()
        bodies.append(raw)
        answer = book.submit(raw, START + STEP)
        return web.Response(status=answer.status, body=answer.body)

    async def main():
        app = web.Application()
        app.router.add_post(FEEDER_REPORT_PATH, on_report)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        reporter = FeederReporter(HONEST, "f", f"http://127.0.0.1:{port}",
                                  minted=lambda start: minted.get(start, 0))
        await reporter.start()
        try:
            reading = Reading(START, STEP, 2000, 500).signed_by(METERS[HONEST])
            reporter.reading(reading)
            minted[START] = 1500                 # the node mints before the reporter runs
            await asyncio.wait_for(reporter.send_pending(), 5)
            assert reporter.counters["feeder_report_accepted"] == 1
        finally:
            await reporter.stop()
            await runner.cleanup()

    run(main())
    report = FeederReport.decode(msgpack.unpackb(bodies[0])["body"])
    assert report.minted_wh == 1500 and report.meter == METERS[HONEST].public
    assert book.close(START, None).flagged == ()


def test_the_flags_survive_a_feeder_node_restart(tmp_path):
    """The flags are booked with the closed interval, which the feeder's books store keeps: a
    restarted feeder node shows the same flagged members."""
    from tests.test_feeder_role import A, B, C, FEEDER, START as T0, STEP as T_STEP
    from tests.test_feeder_store import Clock, role_config, started

    # truth: A +1500, B -1200 (the transformer exports the 300 Wh left); A claims 4000 Wh
    config = role_config(tmp_path, {T0: -300})
    clock = Clock(T0 + 1)
    role = started(config, C, clock)
    clock.now = T0 + T_STEP + 1
    lie = report_for(Reading(T0, T_STEP, 4000, 500), FEEDER, A, 3500)
    assert role.on_report(lie.raw)[0] == 200
    assert role.on_report(report_for(Reading(T0, T_STEP, 0, 1200), FEEDER, B).raw)[0] == 200
    clock.now += 120
    (booked,) = role.close_due()
    assert booked.flagged == ((A.public.hex(), "mint_over_transformer"),)
    assert role.book.flagged == {A.public.hex(): 1}
    role.close()
    again = started(config, C, clock)
    assert again.book.history[-1] == booked
    assert again.book.flagged == {A.public.hex(): 1}
    assert again.book.counters["mint_flagged_mint_over_transformer"] == 1
    again.close()
