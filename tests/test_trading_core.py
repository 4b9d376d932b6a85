"""The trading core (p2pnode/trading/), pure: plain calls, no event loop, no sockets.

Every refusal of the seller's book, reservations and their expiry, the delivery rule, the
seller's DELIVERY payloads and the buyer's check of them (every reason), the newsvendor
quantities, and the schedule of each market mode.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types

import pytest

from ledger import BlockType, ChainState, DeliveryPayload, MeterReading, MintPayload, seal
from p2pnode.config import MarketConfig, NodeConfig
from p2pnode.negotiation import Kind, PeerRequest
from p2pnode.trading.buyer import RECONFIRM_TRIES, Buying, Purchase, Unconfirmed, want_wh
from p2pnode.trading.delivery import (
    Allocation, allocate, flat_substeps, imbalance_micro, substep_problem,
)
from p2pnode.trading.hedging import (
    DAY_AHEAD_RATIO, ErrorScale, buyer_quantity_wh, chance_offer_wh, day_ahead_quantity_wh,
    quantile, seller_quantity_wh,
)
from p2pnode.trading.schedule import (
    CLOCK_SKEW_S, DAY_AHEAD_LEAD_S, EMPTY_LOOK_DELAY_S, MAX_DISCOVERIES, REDISCOVERY_DELAYS_S,
    SKEW_LOOKS, balancing_gate_s, day_gate_s, events, first_interval, gate_s, rediscover_at,
    settles_by, step_times,
)
from p2pnode.trading.seller import (
    MAX_OPEN_PROPOSALS_PER_BUYER, RESERVATION_MS, SellerBook,
)
from p2pnode.trading.settlement import SoldTrade, check_delivery, deliveries
from tests.chainkit import BUYER, OTHER, SELLER, block, trade_payload

START = 1_782_907_200   # 12:00 UTC, a boundary of 15-minute intervals
RETAIL, FEED_IN = 300_000, 80_000


# -- the seller's book -------------------------------------------------------------------------

class Record:   # what the book needs of a published Sealed[OfferRecord]
    def __init__(self, offer_id: bytes):
        self.message = type("R", (), {"offer_id": offer_id})()


def request(*, sender=BUYER, energy=300, price=150_000, offer=b"o" * 16, trade_id=None,
            interval=START) -> PeerRequest:
    return PeerRequest(sender.public, SELLER.public, Kind.REQUEST, trade_id or os.urandom(16),
                       os.urandom(16), 0, offer, interval, energy, price)


def book_with_offer(available=1000, price=120_000, gate=START) -> SellerBook:
    book = SellerBook()
    offer = book.open(START, available, available, price, gate_s=gate)
    offer.record = Record(b"o" * 16)
    return book


def decide(book, req, *, now_s=START - 600, sells=True, max_trade_wh=10_000, known=False,
           tokens=None):
    return book.decide(req, now_s=now_s, sells=sells, max_trade_wh=max_trade_wh,
                       trade_known=known, tokens_wh=tokens)


def test_every_refusal_of_the_seller_has_its_reason():
    book = book_with_offer()
    assert decide(book, request(), sells=False) == "not_selling"
    assert decide(book, request(offer=b"x" * 16)) == "unknown_offer"
    assert decide(book, request(interval=START + 900)) == "unknown_offer"
    assert decide(book, request(), now_s=START) == "gate_closed"        # the gate is the start
    assert decide(book, request(price=119_999)) == "price_below_ask"
    assert decide(book, request(), known=True) == "trade_id_reused"      # on the ledger already
    assert decide(book, request(), tokens=0) == "sold_out"               # ex post: nothing minted
    assert decide(book, request(energy=5000), max_trade_wh=250) == 250   # the user's limit
    assert decide(book, request(energy=5000), tokens=400) == 400         # ex post: what is minted


def test_grants_reserve_energy_and_a_buyer_holds_few_open_proposals():
    book = book_with_offer(available=1000)
    first = request(energy=300)
    assert decide(book, first) == 300
    book.granted(first, 300, now_ms=0)
    assert book.offers[START].available_wh == 700
    assert decide(book, request(trade_id=first.trade_id)) == "trade_id_reused"   # a replay
    for _ in range(MAX_OPEN_PROPOSALS_PER_BUYER - 1):
        more = request(energy=10)
        book.granted(more, decide(book, more), now_ms=0)
    assert decide(book, request(energy=10)) == "buyer_limit"     # unconfirmed proposals pile up
    assert decide(book, request(sender=OTHER, energy=10)) == 10  # another buyer is served
    late = request(energy=5000)
    assert decide(book, late) == "buyer_limit"


def test_unconfirmed_reservations_expire_and_a_late_confirmation_takes_them_again():
    book = book_with_offer(available=1000)
    req = request(energy=400)
    book.granted(req, 400, now_ms=1_000)
    assert book.expire(1_000 + RESERVATION_MS - 1) == 0
    assert book.expire(1_000 + RESERVATION_MS) == 1 and book.offers[START].available_wh == 1000
    assert book.expire(10 * RESERVATION_MS) == 0                          # released once
    assert not book.confirmed(START, req.trade_id, BUYER.public, 400)     # the buyer agreed
    assert book.offers[START].available_wh == 600                         # reserved again
    assert book.confirmed(START, b"?" * 16, BUYER.public, 5) is True      # not an open offer's
    closed = book.close(START)
    assert closed.closed and closed.confirmed == {req.trade_id: 400}
    assert book.confirmed(START, req.trade_id, BUYER.public, 400) is True  # after the close


def test_the_day_ahead_position_and_offers_are_kept_apart():
    book = book_with_offer(available=500)
    ahead = book.open(START, 800, 800, 100_000, gate_s=START - 86_400, day_ahead=True)
    ahead.record = Record(b"d" * 16)
    req = request(offer=b"d" * 16, energy=300)
    assert decide(book, req, now_s=START - 90_000) == 300
    book.granted(req, 300, now_ms=0)
    assert decide(book, request(offer=b"d" * 16), now_s=START - 86_400) == "gate_closed"
    assert decide(book, request(), now_s=START - 86_400) == 300   # the real-time offer: open
    book.confirmed(START, req.trade_id, BUYER.public, 300)
    assert book.sold_ahead_wh(START) == 300 and book.offers[START].available_wh == 500


# -- the buyer ---------------------------------------------------------------------------------

def test_the_buyer_asks_for_its_need_within_offer_limit_and_credit():
    assert want_wh(500, 800, 10_000, 10**9, 200_000) == 500
    assert want_wh(500, 300, 10_000, 10**9, 200_000) == 300
    assert want_wh(500, 800, 200, 10**9, 200_000) == 200
    assert want_wh(500, 800, 10_000, 40_000, 200_000) == 200      # 40,000 µ buy 200 Wh
    assert want_wh(500, 800, 10_000, 0, 200_000) == 0


def test_a_need_is_hedged_once_and_purchases_count_against_it():
    state = Buying(400, 400)
    state.hedge(450)
    state.hedge(900)                                                # once only
    assert (state.deficit_wh, state.remaining_wh) == (450, 450)
    state.bought(Purchase(trade_payload(energy=300), "h:1", b"", 1.0, 2))
    assert state.remaining_wh == 150 and not state.trades[0].settled


# -- delivery: the rule that shares measured energy --------------------------------------------

def test_measured_energy_is_shared_pro_rata_water_filled_in_whole_wh():
    # 10 Wh a minute for 15 and 5 agreed: 7.5 + 2.5 -> 8 + 2, then the first is full
    assert allocate([10, 10, 10], [15, 5]) == [Allocation(15, 1), Allocation(5, 1)]
    assert allocate([100], [15, 5]) == [Allocation(15, 0), Allocation(5, 0)]   # rest exported
    assert allocate([0, 0], [15]) == [Allocation(0, None)]                    # never arrived
    assert allocate([1, 1, 1], [2, 2]) == [Allocation(2, 1), Allocation(1, None)]
    shares = allocate([7] * 15, [60, 30, 9])
    assert sum(a.delivered_wh for a in shares) == 99 and all(a.completed_substep is not None
                                                             for a in shares)


def test_sub_step_readings_must_be_complete_non_negative_and_add_up():
    steps = [(10, 4), (12, 4), (8, 4)]
    assert substep_problem(steps, 3, 30, 12) is None
    assert substep_problem(steps[:2], 3, 30, 12) == "substep_missing"
    assert substep_problem(steps + [steps[-1]], 3, 38, 16) == "substep_duplicate"
    assert substep_problem([(10, 4), (-2, 4), (22, 4)], 3, 30, 12) == "substep_negative"
    assert substep_problem([(10, 4), (12, 4), (9, 4)], 3, 30, 12) == "substep_sum_mismatch"
    assert substep_problem(steps, 3, 30, 13) == "substep_sum_mismatch"   # consumption too


def test_a_flat_delivery_spreads_the_interval_in_whole_wh():
    assert flat_substeps(17, 5) == [4, 4, 3, 3, 3]
    assert flat_substeps(-5, 3) == [0, 0, 0]             # a deficit delivers nothing
    assert sum(flat_substeps(901, 15)) == 901


def test_duration_runs_from_the_proposal_to_completion_or_the_end():
    done, short = Allocation(10, 4), Allocation(3, None)
    start_ms = START * 1000
    assert done.duration_ms(start_ms - 600_000, start_ms, 60_000, 15) == 600_000 + 5 * 60_000
    assert short.duration_ms(start_ms - 600_000, start_ms, 60_000, 15) == 600_000 + 900_000


def test_the_imbalance_charge_is_the_shortfall_at_retail_less_the_price_capped_by_holdings():
    assert imbalance_micro(1000, 600, 200_000, RETAIL, 10**9) == 40_000   # 0.4 kWh x 0.1
    assert imbalance_micro(1000, 1000, 200_000, RETAIL, 10**9) == 0
    assert imbalance_micro(1000, 0, 200_000, RETAIL, 25_000) == 25_000
    assert imbalance_micro(1000, 0, 350_000, RETAIL, 10**9) == 0          # dearer than retail


def sold(n: int, energy: int, proposed_ms: int = (START - 600) * 1000) -> SoldTrade:
    return SoldTrade(trade_payload(n, energy=energy, interval=START), proposed_ms)


def test_the_sellers_deliveries_follow_the_meter_and_never_exceed_what_it_minted():
    payloads = deliveries([sold(1, 600), sold(2, 300)], [60] * 15, interval_start_s=START,
                          interval_s=900, minted_wh=700, retail_micro_per_kwh=RETAIL,
                          credit_micro=0, ex_post=False)
    assert [p.delivered_wh for p in payloads] == [467, 233]     # 700 of 900: short, pro rata
    assert sum(p.delivered_wh for p in payloads) == 700
    assert all(p.duration_ms == 600_000 + 900_000 for p in payloads)   # never completed
    paid = [p.paid_micro for p in payloads]
    assert payloads[0].imbalance_micro == min(133 * 100, paid[0])    # held only what it was paid
    full = deliveries([sold(1, 600)], [60] * 15, interval_start_s=START, interval_s=900,
                      minted_wh=900, retail_micro_per_kwh=RETAIL, credit_micro=0, ex_post=False)
    assert (full[0].delivered_wh, full[0].imbalance_micro) == (600, 0)
    assert full[0].duration_ms == 600_000 + 10 * 60_000                 # complete after 10 min
    metered = deliveries([sold(1, 600)], [], interval_start_s=START, interval_s=900, minted_wh=0,
                         retail_micro_per_kwh=RETAIL, credit_micro=0, ex_post=True)
    assert (metered[0].delivered_wh, metered[0].duration_ms) == (600, 0)


# -- the buyer's check of a DELIVERY -----------------------------------------------------------

def delivery_blocks(*, delivered=250, imbalance=0, tokens=400, author=SELLER,
                    interval=START, agreed=300):
    trade = trade_payload(energy=300, interval=START)
    payload = DeliveryPayload(trade.trade_id, SELLER.public, BUYER.public, agreed, delivered,
                              trade.price_micro_per_kwh, 60_000, imbalance)
    chain = ChainState(author.public)
    mint = block(author, chain, BlockType.MINT, MintPayload(
        MeterReading(author.public, interval, 900, tokens, 0), b"", tokens))
    chain.apply(mint)
    proposal = block(author, chain, BlockType.SETTLEMENT, payload, counterparty=BUYER.public)
    return trade, proposal, mint


def flip(raw: bytes) -> bytes:
    out = bytearray(raw)
    out[-10] ^= 1
    return bytes(out)


def test_the_buyer_agrees_only_to_its_trade_measured_by_the_seller():
    trade, proposal, mint = delivery_blocks()
    check = lambda p, m, t=trade: check_delivery(p, m, t, retail_micro_per_kwh=RETAIL)  # noqa
    assert check(proposal.raw, mint.raw).message.payload.delivered_wh == 250
    assert check(b"\x93garbage", mint.raw) == "malformed_block"
    assert check(flip(proposal.raw), mint.raw) == "bad_block_signature"
    assert check(proposal.raw, flip(mint.raw)) == "bad_block_signature"
    assert check(mint.raw, mint.raw) == "not_a_delivery"
    assert check(proposal.raw, mint.raw, None) == "unknown_trade"
    assert check(proposal.raw, mint.raw, dataclasses.replace(trade, energy_wh=301)) == \
        "delivery_differs"
    _, other_interval, wrong_mint = delivery_blocks(interval=START + 900)
    assert check(proposal.raw, wrong_mint.raw) == "no_measurement"
    _, more, low_mint = delivery_blocks(delivered=250, tokens=200)
    assert check(more.raw, low_mint.raw) == "more_than_measured"
    _, greedy, its_mint = delivery_blocks(delivered=250, imbalance=5_001)   # 50 Wh x 0.1 = 5000
    assert check(greedy.raw, its_mint.raw) == "imbalance_too_high"
    _, forged_author, forged_mint = delivery_blocks(author=OTHER)
    assert check(forged_author.raw, forged_mint.raw) == "delivery_differs"


# -- how much to trade on a forecast -----------------------------------------------------------

def test_quantities_follow_the_newsvendor_ratio_of_the_prices():
    assert quantile(100, 20, 0.5) == 100
    assert quantile(100, 20, 0.75) == pytest.approx(100 + 20 * math.log(2))
    assert quantile(100, 20, 0.25) == pytest.approx(100 - 20 * math.log(2))
    assert quantile(100, 20, 1.0) == pytest.approx(quantile(100, 20, 0.95))   # bounded tails
    # a glut (price near feed-in): buyers take more than the median, sellers offer less
    assert buyer_quantity_wh(300, 50, 90_000, RETAIL, FEED_IN) > 300
    assert seller_quantity_wh(300, 50, 90_000, RETAIL, FEED_IN) < 300
    # scarcity (price near retail): the other way round
    assert buyer_quantity_wh(300, 50, 290_000, RETAIL, FEED_IN) < 300
    assert seller_quantity_wh(300, 50, 290_000, RETAIL, FEED_IN) > 300
    # no forecast error (ex post: metered): exactly the need
    assert buyer_quantity_wh(300, 0, 90_000, RETAIL, FEED_IN) == 300
    assert seller_quantity_wh(300, 0.0, 290_000, RETAIL, FEED_IN) == 300


def test_a_chance_offer_needs_possible_generation_and_a_price_worth_the_risk():
    scarce, glut = 290_000, 90_000
    # a median net of -30 Wh (the load takes the PV), errors of 40 Wh: near retail worth
    # offering the high quantile, whatever the forecast generation, if the PV may generate
    assert chance_offer_wh(-30, 500.0, 40, scarce, RETAIL, FEED_IN, 2) \
        == seller_quantity_wh(-30, 40, scarce, RETAIL, FEED_IN) == round(-30 + 40 * math.log(10))
    assert chance_offer_wh(-30, 0.0, 40, scarce, RETAIL, FEED_IN, 2) == 0    # night, no PV
    assert chance_offer_wh(-30, 500.0, 40, glut, RETAIL, FEED_IN, 2) == 0    # not worth it
    assert chance_offer_wh(-30, 500.0, 0, scarce, RETAIL, FEED_IN, 2) == 0   # a certain deficit
    assert chance_offer_wh(-91, 500.0, 40, scarce, RETAIL, FEED_IN, 2) == 0  # 1 Wh < the threshold


def test_a_new_buyer_may_take_its_share_of_what_the_offer_puts_up():
    book = SellerBook(new_buyer_share=0.5)
    offer = book.open(START, -20, 200, 280_000, gate_s=START)   # a chance offer: median < 0
    offer.record = Record(b"o" * 16)
    first = request(energy=500, price=280_000)
    assert decide(book, first) == 100                 # half of the 200 Wh offered
    book.granted(first, 100, now_ms=0)
    assert decide(book, request(energy=500, price=280_000)) == "sold_out"   # its share is held
    assert decide(book, request(sender=OTHER, energy=500, price=280_000)) == 100


def test_the_error_scale_is_a_mean_then_exponentially_weighted():
    scale = ErrorScale(weight=0.5)
    scale.add(100, 90)
    assert scale.value == 10
    scale.add(0, 30)                       # second sample: weight max(0.5, 1/2)
    assert scale.value == 20
    scale.add(0, 0)
    assert scale.value == 10


def test_an_error_scale_seeded_from_a_backtest_continues_from_it():
    seeded, added = ErrorScale(weight=0.5), ErrorScale(weight=0.5)
    seeded.seed([10, float("nan"), 30, 0])          # unknown readings are skipped
    for error in (10, 30, 0):
        added.add(error, 0)
    assert (seeded.value, seeded.samples) == (added.value, added.samples) == (10, 3)
    seeded.seed([1000])                             # once it has samples, a seed changes nothing
    assert seeded.value == 10


def test_a_day_ahead_position_is_a_low_quantile_of_the_forecast():
    assert DAY_AHEAD_RATIO < 0.5
    assert day_ahead_quantity_wh(500, 0) == 500                  # no error known: the forecast
    assert day_ahead_quantity_wh(500, 100) == round(quantile(500, 100, DAY_AHEAD_RATIO)) < 500
    assert day_ahead_quantity_wh(50, 200) == 0                   # never negative


# -- the schedule --------------------------------------------------------------------------------

def config(mode: str) -> NodeConfig:
    return NodeConfig(market=MarketConfig(mode=mode))


def test_each_mode_has_its_steps_gates_and_first_interval():
    real, post, ahead = config("real_time"), config("ex_post"), config("day_ahead")
    times = step_times(real, START)
    assert (times["open"], times["price"], times["buy"]) == (START - 900, START - 897.5,
                                                              START - 895)
    assert "price" not in step_times(post, START)   # ex post: sellers price from the last view
    assert times["settle"] == START + 905 and times["close"] == START + 1200
    assert gate_s(real, START) == START and gate_s(post, START) == START + 1200
    assert step_times(post, START)["open"] == START + 900
    assert first_interval(real, START + 10) == START + 900
    assert first_interval(post, START + 10) == START
    day = START - START % 86_400
    assert day_gate_s(ahead, day) == day - 86_400 + 12 * 3600
    steps = events(ahead, [day, day + 900])
    assert [s for _, s, _ in steps[:2]] == ["day_open", "day_buy"]
    assert steps[0][0] == day_gate_s(ahead, day) - DAY_AHEAD_LEAD_S
    assert [t for t, _, _ in steps] == sorted(t for t, _, _ in steps)   # time order
    assert "day_open" not in {s for _, s, _ in events(real, [day])}


def test_a_run_that_ends_trades_only_what_it_can_settle():
    real, ahead = config("real_time"), config("day_ahead")
    closes = step_times(real, START)["close"]
    assert settles_by(real, "buy", START, closes) and not settles_by(real, "buy", START, closes - 1)
    assert settles_by(real, "open", START - 900, closes - 1)     # the interval before: yes
    day = START - START % 86_400
    last_close = step_times(ahead, day + 86_400 - 900)["close"]   # a day-ahead step: whole day
    assert settles_by(ahead, "day_buy", day, last_close)
    assert not settles_by(ahead, "day_buy", day, last_close - 1)


def test_intervals_overlap_in_real_time():
    steps = events(config("real_time"), [START, START + 900])
    order = [(step, start - START) for _, step, start in steps]
    # the next interval opens and trades while this one is delivered
    assert order.index(("open", 900)) < order.index(("settle", 0))


def test_the_balancing_round_comes_after_the_delivery_and_before_the_grid():
    real, post = config("real_time"), config("ex_post")
    times = step_times(real, START)
    # the sellers offer at settle; the buyers look a clock skew later, the gate is half-way on
    assert times["rebuy"] == times["settle"] + CLOCK_SKEW_S + real.timing.buy_delay_s
    assert balancing_gate_s(real, START) == (times["rebuy"] + times["close"]) / 2
    order = [step for _, step, start in events(real, [START]) if start == START]
    assert order[-3:] == ["settle", "rebuy", "close"]
    assert "rebuy" not in step_times(post, START)   # ex post every trade is metered already
    off = NodeConfig(market=MarketConfig(balancing=False))
    assert "rebuy" not in step_times(off, START)
    # a short window: the round still fits between the settle and the close
    short = dataclasses.replace(real, timing=dataclasses.replace(real.timing, buy_delay_s=1,
                                                                 window_s=10))
    at = step_times(short, START)
    assert at["settle"] < at["rebuy"] < balancing_gate_s(short, START) < at["close"]


def test_a_balancing_offer_is_a_third_offer_of_the_interval():
    book = book_with_offer()
    late = book.open(START, 200, 200, 90_000, gate_s=START + 1000, balancing=True)
    late.record = Record(b"b" * 16)
    assert book.offers[START].available_wh == 1000   # the forward offer is kept
    assert decide(book, request(offer=b"o" * 16), now_s=START + 100) == "gate_closed"
    assert decide(book, request(offer=b"b" * 16, energy=500), now_s=START + 100,
                  tokens=150) == 150                 # at most the unsold tokens
    req = request(offer=b"b" * 16, energy=150)
    book.granted(req, 150, 0)
    assert book.confirmed(START, req.trade_id, BUYER.public, 150) is False   # in an open offer
    assert book.close(START) is not None and late.closed and book.balancing == {}


def test_an_unanswered_confirm_is_retried_a_bounded_number_of_times():
    assert Unconfirmed("e", b"o").answered(True) == "reconfirmed"
    assert Unconfirmed("e", b"o").answered(False) == "unconfirmed_given_up"   # refused: final
    pending = Unconfirmed("e", b"o")
    outcomes = [pending.answered(None) for _ in range(RECONFIRM_TRIES)]
    assert outcomes == ["retry"] * (RECONFIRM_TRIES - 1) + ["unconfirmed_given_up"]


def test_a_buyer_that_found_no_offer_looks_once_more_after_the_skew():
    config, start = NodeConfig(), 900 * 100
    opened = start - 900 + 5
    # found offers but not enough: up to MAX_DISCOVERIES looks, REDISCOVERY_DELAYS_S apart
    times, now, looks = [], opened, 1
    while (now := rediscover_at(config, start, looks, now)) is not None:
        times.append(now)
        looks += 1
    assert looks == MAX_DISCOVERIES
    assert [b - a for a, b in zip([opened, *times], times)] == list(REDISCOVERY_DELAYS_S)
    # found nothing at all (night, or sellers behind our clock): one look after the skew
    again = rediscover_at(config, start, 1, opened, found_offers=False)
    assert again == opened + EMPTY_LOOK_DELAY_S and EMPTY_LOOK_DELAY_S > CLOCK_SKEW_S
    assert rediscover_at(config, start, 2, again, found_offers=False) is None
    assert rediscover_at(config, start, 1, start - 3, found_offers=False) is None   # gate near


def test_after_the_skew_a_buyer_looks_again_only_when_its_last_look_found_news():
    config, start = NodeConfig(), 900 * 100
    opened = start - 900 + 5
    # the looks up to CLOCK_SKEW_S after the first happen whatever they found
    assert sum(REDISCOVERY_DELAYS_S[:SKEW_LOOKS - 1]) >= CLOCK_SKEW_S
    assert sum(REDISCOVERY_DELAYS_S[:SKEW_LOOKS - 2]) < CLOCK_SKEW_S
    for looks in range(1, SKEW_LOOKS):
        assert rediscover_at(config, start, looks, opened, found_new=False) is not None
    assert rediscover_at(config, start, SKEW_LOOKS, opened, found_new=False) is None
    assert rediscover_at(config, start, SKEW_LOOKS, opened, found_new=True) is not None
    # what is news: a seller we may ask offering more than any earlier look showed
    offer = lambda seller, wh: types.SimpleNamespace(seller=seller, energy_wh=wh)   # noqa: E731
    state = Buying(deficit_wh=900, remaining_wh=900)
    state.found([offer(SELLER.public, 500)])
    assert state.found_offers and state.found_new
    state.found([offer(SELLER.public, 300)])        # it sold some: nothing new
    assert not state.found_new
    state.found([offer(SELLER.public, 300), offer(OTHER.public, 200)])   # a late seller
    assert state.found_new
    state.excluded.add(OTHER.public)
    state.found([offer(SELLER.public, 500), offer(OTHER.public, 900)])   # the same 500 again;
    assert not state.found_new                      # the refused seller's more does not count
    state.found([offer(SELLER.public, 600)])        # a lapsed reservation freed energy
    assert state.found_new
