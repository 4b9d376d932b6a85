"""Track records as evidence (p2pnode.trackrecord) and the reputation built from them.

Real ledgers: a seller and buyers trade ahead of delivery and co-sign DELIVERY settlements; the
seller's page of its chain is verified by a buyer, and every way of cheating -- leaving a bad
settlement out, reordering, cutting the record short, rewriting it, serving another key's chain,
forging an agreement -- is caught with its reason.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import pytest

from ledger import (
    BlockBody, CreditVoucher, DeliveryPayload, Ledger, LedgerStore, MeterReading, TradePayload,
    open_envelope, seal,
)
from p2pnode.negotiation import MAX_RECORD_BLOCKS
from p2pnode.reputation import (
    MAX_SETTLEMENTS_PER_COUNTERPARTY, NEW_KEY_SHARE, TRUSTED_VOLUME_WH,
    VOLUME_PER_COUNTERPARTY_WH, Reputation,
)
from p2pnode.trackrecord import RecordCursor, Settlement, page_for, verify_page
from tests.chainkit import key

DAY = 1_700_006_400 - 1_700_006_400 % 86400
INTERVAL_S = 900
PRICE = 200_000


class Market:
    """A seller and buyers on real ledgers (temporary stores)."""

    def __init__(self, tmp_path, buyers: int = 2, seller: str = "track-seller"):
        self.tmp = tmp_path
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.seller_key = key(seller)
        self.seller = self._ledger(self.seller_key)
        self.buyer_keys = [key(f"track-buyer-{i}") for i in range(buyers)]
        self.buyers = [self._ledger(k) for k in self.buyer_keys]
        bank = key("track-bank")
        for i, (k, ledger) in enumerate(zip(self.buyer_keys, self.buyers)):
            voucher = seal(CreditVoucher(bank.public, k.public, bytes([i]) * 16, 10**9), bank)
            ledger.deposit(voucher, DAY * 1000)
        self.clock_ms = DAY * 1000 + 1
        self.trades = 0

    def _ledger(self, k) -> Ledger:
        return Ledger(LedgerStore(self.tmp / f"{k.public.hex()[:8]}.db", sync="normal"), k)

    def trade(self, slot: int, agreed: int, delivered: int, buyer: int = 0,
              cosign: bool = True, spot: bool = False, price: int = PRICE) -> None:
        """A forward trade of interval ``slot`` and its DELIVERY settlement; ``spot``: a trade
        agreed once the interval was over (the balancing round)."""
        self.trades += 1
        self.clock_ms += 1000
        start = DAY + slot * INTERVAL_S
        if spot:
            self.clock_ms = max(self.clock_ms, (start + INTERVAL_S) * 1000)
        b_key, b_ledger = self.buyer_keys[buyer], self.buyers[buyer]
        trade_id = self.trades.to_bytes(16, "big")
        payload = TradePayload(trade_id, self.seller_key.public, b_key.public, start, agreed,
                               price, b"offer")
        proposal = self.seller.propose_trade(payload, self.clock_ms)
        self.seller.accept_agreement(b_ledger.agree(proposal.raw, self.clock_ms))
        if start not in self.seller.state.minted:
            reading = seal(MeterReading(self.seller_key.public, start, INTERVAL_S, 100_000, 0),
                           self.seller_key)
            self.seller.mint(reading, 100_000, self.clock_ms)
        delivery = DeliveryPayload(trade_id, self.seller_key.public, b_key.public, agreed,
                                   delivered, price, 60_000, 0)
        settled = self.seller.propose_settlement(delivery, self.clock_ms)
        if cosign:
            self.seller.accept_agreement(b_ledger.agree(settled.raw, self.clock_ms))

    def page(self, from_seq: int = 1) -> list[bytes]:
        store = self.seller.store
        chain = store.chain(self.seller_key.public, from_seq)[:MAX_RECORD_BLOCKS]
        return page_for(chain, lambda seq: store.linked_to(self.seller_key.public, seq),
                        7000, MAX_RECORD_BLOCKS)

    def verify(self, raws, *, buyer: int = 0, from_seq: int = 1, claimed: int | None = None,
               cursor: RecordCursor | None = None, seller: bytes | None = None):
        seller = seller or self.seller_key.public
        store = self.buyers[buyer].store
        return verify_page(seller, raws, from_seq=from_seq,
                           claimed_head=self.seller.state.seq if claimed is None else claimed,
                           cursor=cursor or RecordCursor(seller),
                           known=lambda seq: store.get(seller, seq), known_head=store.head(seller),
                           now_s=DAY + 86400, interval_s=INTERVAL_S)


def seqs(raws, author: bytes) -> list[int]:
    return [open_envelope(r, BlockBody)[0].message.seq for r in raws
            if open_envelope(r, BlockBody)[0].message.author == author]


def test_an_honest_record_verifies_with_every_cosigned_settlement(tmp_path):
    market = Market(tmp_path)
    market.trade(0, 1000, 1000, buyer=0)
    market.trade(1, 800, 400, buyer=1)
    check = market.verify(market.page())
    assert check.problem is None
    assert [(s.agreed_wh, s.delivered_wh, s.cosigned) for s in check.settlements] == [
        (1000, 1000, True), (800, 400, True)]
    assert check.cursor.head_seq == market.seller.state.seq
    assert check.overdue == ()


def test_a_record_is_paged_and_the_next_page_links_to_the_last(tmp_path):
    market = Market(tmp_path, buyers=1)
    for slot in range(12):
        market.trade(slot, 500, 500 - 20 * slot)
    first = market.page()
    check = market.verify(first)
    assert check.problem is None and check.cursor.head_seq < market.seller.state.seq
    settlements, cursor = list(check.settlements), check.cursor
    while cursor.head_seq < market.seller.state.seq:
        follow = market.verify(market.page(cursor.head_seq + 1), from_seq=cursor.head_seq + 1,
                               cursor=cursor)
        assert follow.problem is None and follow.overdue == ()
        settlements += follow.settlements
        cursor = follow.cursor
    assert [s.delivered_wh for s in settlements] == [500 - 20 * slot for slot in range(12)]
    # a "next page" that does not continue the verified chain is caught
    stranger = Market(tmp_path / "other", buyers=1)
    assert stranger.seller_key.public == market.seller_key.public   # same key, another chain
    for slot in range(12):
        stranger.trade(slot, 500, 500)
    forged = stranger.page(check.cursor.head_seq + 1)
    assert market.verify(forged, from_seq=check.cursor.head_seq + 1, cursor=check.cursor,
                         buyer=0).problem in ("broken_chain", "fork")


def test_a_seller_hiding_a_bad_settlement_is_caught(tmp_path):
    market = Market(tmp_path)
    market.trade(0, 1000, 1000, buyer=1)
    market.trade(1, 1000, 100, buyer=0)       # the bad one: buyer 0 co-signed it
    market.trade(2, 1000, 1000, buyer=1)
    page = market.page()
    me = market.seller_key.public
    bad_seq = next(open_envelope(r, BlockBody)[0].message.seq for r in page
                   if open_envelope(r, BlockBody)[0].message.author == me
                   and getattr(open_envelope(r, BlockBody)[0].message.payload, "delivered_wh", 0) == 100)
    # left out of the middle: the chain's links break
    omitted = [r for r in page if not (open_envelope(r, BlockBody)[0].message.author == me
                                       and open_envelope(r, BlockBody)[0].message.seq == bad_seq)]
    assert market.verify(omitted, buyer=1).problem == "gap"
    # cut short before it, claiming an earlier head: buyer 0 holds the later block
    short = [r for r in page if open_envelope(r, BlockBody)[0].message.seq < bad_seq
             or open_envelope(r, BlockBody)[0].message.author != me and
             open_envelope(r, BlockBody)[0].message.link_seq < bad_seq]
    assert market.verify(short, buyer=0, claimed=bad_seq - 1).problem == "truncated"
    # reordered
    mine = [r for r in page if open_envelope(r, BlockBody)[0].message.author == me]
    assert market.verify(mine[::-1], buyer=1).problem == "reordered"
    # rewritten (a fork): buyer 0 holds the original block at that seq
    rewritten_market = Market(tmp_path / "fork")
    rewritten_market.trade(0, 1000, 1000, buyer=1)
    rewritten_market.trade(1, 1000, 1000, buyer=0)
    assert market.verify(rewritten_market.page(), buyer=0,
                         claimed=rewritten_market.seller.state.seq).problem in ("fork",
                                                                                "truncated")


def test_forged_and_foreign_records_are_rejected(tmp_path):
    market = Market(tmp_path)
    market.trade(0, 1000, 900)
    page = market.page()
    # a flipped byte in a block: its signature no longer verifies (or it no longer decodes)
    broken = bytearray(page[0])
    broken[-70] ^= 0x01
    assert market.verify([bytes(broken), *page[1:]]).problem in ("bad_signature", "malformed")
    # another key's chain served as this seller's record
    other = Market(tmp_path / "other")
    other.seller_key = key("someone-else")
    assert market.verify(page, seller=key("someone-else").public).problem in (
        "foreign_block", "truncated")
    # an agreement "signed" by a key that is not the settlement's buyer
    agreement_at = next(i for i, r in enumerate(page)
                        if open_envelope(r, BlockBody)[0].message.author != market.seller_key.public
                        and open_envelope(r, BlockBody)[0].message.link_seq > 0)
    real = open_envelope(page[agreement_at], BlockBody)[0].message
    impostor = key("impostor")
    forged = seal(dataclasses.replace(real, author=impostor.public), impostor).raw
    tampered = list(page)
    tampered[agreement_at] = forged
    assert market.verify(tampered).problem == "bad_agreement"


def test_an_unsigned_settlement_counts_only_its_shortfall_and_overdue_trades_count(tmp_path):
    market = Market(tmp_path, buyers=1)
    market.trade(0, 1000, 1000, cosign=False)     # delivered in full, but not co-signed
    market.trade(1, 1000, 500, cosign=False)      # admits a shortfall of 500
    check = market.verify(market.page())
    assert check.problem is None and [s.cosigned for s in check.settlements] == [False, False]
    view = Reputation()
    view.add_verified(market.seller_key.public, check.cursor, check.settlements, check.overdue,
                      DAY + 86400)
    assert view.quality(market.seller_key.public) == 0.0   # 0 credited of 500 admitted missing
    assert view.participation(market.seller_key.public) == 0
    # a trade proposed and never settled is overdue once the seller's chain went on long after
    ledger, k = market.seller, market.seller_key
    ledger.propose_trade(TradePayload((99).to_bytes(16, "big"), k.public,
                                      market.buyer_keys[0].public, DAY, 700, PRICE, b"o"),
                         market.clock_ms + 1)
    market.clock_ms = (DAY + 4 * 3600) * 1000
    market.trade(20, 100, 100)
    later = market.verify(market.page(check.cursor.head_seq + 1),
                          from_seq=check.cursor.head_seq + 1, cursor=check.cursor)
    assert later.problem is None and later.overdue == (((99).to_bytes(16, "big"), 700),)
    view.add_verified(market.seller_key.public, later.cursor, later.settlements, later.overdue,
                      DAY + 86400)
    # 100 of 100 co-signed; 500 admitted missing; half of the 700 overdue
    assert view.quality(market.seller_key.public) == pytest.approx(100 / (100 + 500 + 350))


def settlement(n: int, seller: bytes, buyer: bytes, agreed: int, delivered: int,
               cosigned: bool = True) -> Settlement:
    return Settlement(n.to_bytes(16, "big"), seller, buyer, agreed, delivered, 30_000 + n,
                      1_000 * (n + 1), cosigned)


def test_reputation_is_multidimensional_and_caps_new_keys_and_sybils():
    view = Reputation()
    seller, honest, newcomer = b"s" * 32, b"h" * 32, b"n" * 32
    assert math.isnan(view.quality(newcomer)) and view.share_cap(newcomer) == NEW_KEY_SHARE
    for n in range(10):
        view.add(settlement(n, honest, bytes([n]) * 32, 1000, 1000))
    assert view.quality(honest) == 1.0 and view.participation(honest) == 10
    assert view.volume_wh(honest) == 10 * VOLUME_PER_COUNTERPARTY_WH
    assert view.share_cap(honest) == 1.0
    assert view.mean_duration_s(honest) == pytest.approx(30.0045)
    assert view.age_s(honest, 100.0) == pytest.approx(99.0)   # the oldest settlement at 1 s
    # a seller padding its record with many perfect trades with one (own) key: that key's
    # settlements count MAX_SETTLEMENTS_PER_COUNTERPARTY times at most
    for n in range(5):
        view.add(settlement(1000 + n, seller, b"real-buyer".ljust(32), 1000, 200))
    for n in range(500):
        view.add(settlement(2000 + n, seller, b"sybil".ljust(32), 1000, 1000))
    expected = (5 * 200 + MAX_SETTLEMENTS_PER_COUNTERPARTY * 1000) / (
        (5 + MAX_SETTLEMENTS_PER_COUNTERPARTY) * 1000)
    assert view.quality(seller) == pytest.approx(expected)
    # ... nor buy itself trust: one counterparty's deliveries count a bounded volume
    assert view.volume_wh(seller) == 2 * VOLUME_PER_COUNTERPARTY_WH < TRUSTED_VOLUME_WH
    assert NEW_KEY_SHARE < view.share_cap(seller) < 1.0
    # the same settlement seen twice (own ledger and the seller's record) counts once
    again = settlement(1, honest, bytes([1]) * 32, 1000, 1000)
    view.add(again)
    assert view.participation(honest) == 10
    # new evidence after a look: the figures follow it (they are added up once per change)
    view.add(settlement(99, honest, b"late-buyer".ljust(32), 1000, 0))
    assert view.participation(honest) == 11
    assert view.quality(honest) == pytest.approx(10_000 / 11_000)
    assert view.volume_wh(honest) == 10 * VOLUME_PER_COUNTERPARTY_WH   # it delivered nothing


def test_spot_trades_count_as_participation_not_as_delivery_evidence(tmp_path):
    """A trade agreed once its interval was metered is delivered in full at once: it adds to
    participation and volume, not to quality, duration or the evidence behind the expected
    share -- and one claimed spot but delivered short still counts against the seller."""
    market = Market(tmp_path, buyers=2)
    market.trade(0, 1000, 400)
    for slot in (1, 2):
        market.trade(slot, 200, 200, buyer=1, spot=True)
    check = market.verify(market.page())
    assert check.problem is None
    assert [s.spot for s in check.settlements] == [False, True, True]
    view = Reputation()
    seller = market.seller_key.public
    view.add_verified(seller, check.cursor, check.settlements, check.overdue, DAY + 86400)
    assert view.quality(seller) == pytest.approx(0.4)          # not (400 + 400) / 1400
    assert view.mean_duration_s(seller) == pytest.approx(60.0)
    assert view.participation(seller) == 3 and view.volume_wh(seller) == 250 + 250
    assert view.expected_share(seller) == 1.0   # one settlement ahead: not yet evidence
    short = settlement(7, seller, b"x" * 32, 1000, 500)
    view.add(dataclasses.replace(short, spot=True))
    assert view.quality(seller) == pytest.approx(900 / 2000)


def test_spot_trades_cannot_push_a_shortfall_out_of_the_window():
    view = Reputation()
    seller, buyer = b"s" * 32, b"b" * 32
    view.add(settlement(0, seller, buyer, 1000, 100))
    for n in range(1, 3 * MAX_SETTLEMENTS_PER_COUNTERPARTY):
        view.add(dataclasses.replace(settlement(n, seller, buyer, 1000, 1000), spot=True))
    assert view.quality(seller) == pytest.approx(0.1)
    assert view.participation(seller) == MAX_SETTLEMENTS_PER_COUNTERPARTY


def test_a_penalised_seller_is_no_candidate_and_loses_its_cursor():
    view = Reputation()
    seller = b"p" * 32
    view.add_verified(seller, RecordCursor(seller, 5, b"h" * 32, 1), (), (), 100.0)
    view.penalise(seller, "truncated", 100.0)
    assert view.penalised(seller, 200.0) and view.cursor(seller) is None
    assert not view.penalised(seller, 100.0 + 86_400 + 1)
    assert view.problems["truncated"] == 1


def test_the_view_is_rebuilt_from_the_buyers_ledger(tmp_path):
    market = Market(tmp_path, buyers=1)
    market.trade(0, 1000, 1000)
    market.trade(1, 1000, 250)
    market.trade(2, 500, 500, spot=True)     # bought in the balancing round
    path = market.buyers[0].store.path
    market.buyers[0].store.close()
    reopened = Ledger(LedgerStore(path, sync="normal"), market.buyer_keys[0])
    view = Reputation.from_ledger(reopened, INTERVAL_S)
    seller = market.seller_key.public
    assert view.quality(seller) == pytest.approx(1250 / 2000)
    assert view.participation(seller) == 3 and view.sellers[seller].trades == 3
    assert view.mean_duration_s(seller) == pytest.approx(60.0)


def test_a_restart_keeps_what_each_sellers_dear_trades_delivered(tmp_path):
    market = Market(tmp_path, buyers=1)
    for slot in range(3):
        market.trade(slot, 1000, 1000, price=100_000)
    for slot in range(3, 6):
        market.trade(slot, 1000, 200, price=380_000)
    path = market.buyers[0].store.path
    market.buyers[0].store.close()
    view = Reputation.from_ledger(Ledger(LedgerStore(path, sync="normal"), market.buyer_keys[0]),
                                  INTERVAL_S)
    seller = market.seller_key.public
    assert sorted(s.price_micro_per_kwh for s in view.sellers[seller].settlements.values()) \
        == [100_000] * 3 + [380_000] * 3
    assert view.expected_share(seller, 100_000) == pytest.approx(3600 / 6000)
    assert view.expected_share(seller, 300_000) == pytest.approx(0.2)


def test_candidates_take_participation_and_the_share_cap_from_the_reputation():
    from models import Predictor
    from p2pnode.offers import OfferRecord
    from p2pnode.ranking import MarketContext, candidates_from_offers
    trusted, newcomer, liar = b"t" * 32, b"n" * 32, b"l" * 32
    view = Reputation()
    for n in range(8):
        view.add(settlement(n, trusted, bytes([n]) * 32, 500, 500))
        view.add(settlement(100 + n, liar, bytes([n]) * 32, 500, 100))
    records = [OfferRecord(seller, bytes([i]) * 16, 1, 4000, 200_000, "F", DAY, DAY + 900,
                           "127.0.0.1:1") for i, seller in enumerate((trusted, newcomer, liar))]
    candidates = candidates_from_offers(records, 2000, view, MarketContext(), Predictor.default())
    by_seller = {c.seller: c for c in candidates}
    assert by_seller[trusted].available_wh == 4000 and by_seller[trusted].participation == 8
    assert by_seller[newcomer].available_wh == 1000 and by_seller[newcomer].participation == 0
    assert by_seller[liar].predicted_quality < by_seller[trusted].predicted_quality - 0.3
    uncapped = candidates_from_offers(records, 2000, view, MarketContext(), Predictor.default(),
                                      capped=False)
    assert {c.available_wh for c in uncapped} == {4000}


def test_an_informed_buyer_counts_the_energy_a_record_says_arrives():
    """With C5 > 0 an overseller's big offer no longer covers the deficit alone (the
    fewest-sellers rule would force it), and a seller under the floor is passed over."""
    from models import Predictor
    from optimizer.selection import SelectionConfig
    from p2pnode.offers import OfferRecord
    from p2pnode.ranking import MarketContext, candidates_from_offers, rank, reliable_records
    honest_a, honest_b, overseller, newcomer = b"a" * 32, b"b" * 32, b"o" * 32, b"n" * 32
    view = Reputation()
    for n in range(8):
        view.add(settlement(n, honest_a, bytes([n]) * 32, 500, 450))
        view.add(settlement(20 + n, honest_b, bytes([n]) * 32, 500, 450))
        view.add(settlement(40 + n, overseller, bytes([n]) * 32, 500, 150))
    view.add(settlement(60, newcomer, b"x" * 32, 500, 100))   # too little evidence yet
    assert view.expected_share(honest_a) == pytest.approx(0.9)
    assert view.expected_share(overseller) == pytest.approx(0.3)
    assert view.expected_share(newcomer) == 1.0
    records = [OfferRecord(seller, bytes([i]) * 16, 1, energy, 100_000, "F", DAY, DAY + 900,
                           "127.0.0.1:1")
               for i, (seller, energy) in enumerate(((overseller, 3000), (honest_a, 1200),
                                                     (honest_b, 1200)))]
    blind = candidates_from_offers(records, 2000, view, MarketContext(), Predictor.default())
    informed = candidates_from_offers(records, 2000, view, MarketContext(), Predictor.default(),
                                      expect=True)
    assert {c.seller: c.available_wh for c in informed} == {
        overseller: 900, honest_a: 1080, honest_b: 1080}
    config = SelectionConfig()
    assert [i.candidate.seller for i in rank(2000, 300_000, blind, config, 1).items] \
        == [overseller]                               # the only single seller covering 2 kWh
    assert {i.candidate.seller for i in rank(2000, 300_000, informed, config, 1).items} \
        == {honest_a, honest_b}
    assert [r.seller for r in reliable_records(records, view)] == [honest_a, honest_b]
    assert [r.seller for r in reliable_records(records[:1], view)] == [overseller]   # no other


def test_a_sellers_buyers_together_buy_the_share_of_its_offer_that_arrives():
    """The expected share is of the whole offer (``offered_wh``), not of what is left: a seller
    whose record says 60 % arrives, with 600 of its 1000 Wh already held, has nothing left
    worth buying ahead; one short of it has the difference."""
    from p2pnode.offers import OfferRecord
    from p2pnode.ranking import expected_wh, spread_records
    seller, other = b"s" * 32, b"o" * 32
    view = Reputation()
    for n in range(8):
        view.add(settlement(n, seller, bytes([n]) * 32, 500, 300))      # delivers 60 %

    def offer(who: bytes, left: int, offered: int | None) -> OfferRecord:
        return OfferRecord(who, b"i" * 16, 2, left, 100_000, "F", DAY, DAY + 900,
                           "127.0.0.1:1", offered_wh=offered)

    assert expected_wh(offer(seller, 1000, 1000), view) == 600         # nothing sold yet
    assert expected_wh(offer(seller, 700, 1000), view) == 300          # 300 held: 300 more
    assert expected_wh(offer(seller, 400, 1000), view) == 0            # 600 held: no more
    assert expected_wh(offer(seller, 400, None), view) == 240          # an offer without it
    assert expected_wh(offer(other, 400, 1000), view) == 400           # no record: all of it
    full = [offer(seller, 400, 1000), offer(other, 400, 1000)]
    assert spread_records(full, view, 100, b"x") == [full[1]]          # drawn last, if at all
    with pytest.raises(ValueError, match="offered_wh 300 is below energy_wh 400"):
        offer(other, 400, 300)


def test_a_sellers_dear_trades_are_expected_to_arrive_as_its_dear_trades_did():
    """A seller's long shots (offers near retail: a high quantile of its forecast) arrive less
    often than its cheap trades; the share expected of an offer is that of the seller's trades
    at its price or dearer (at least the QUALITY_EVIDENCE dearest), never above its quality."""
    from p2pnode.offers import OfferRecord
    from p2pnode.ranking import expected_wh, reliable_records
    seller, steady = b"s" * 32, b"t" * 32
    view = Reputation()
    for n in range(6):   # cheap trades arrive in full, dear ones a tenth
        view.add(dataclasses.replace(settlement(n, seller, bytes([n]) * 32, 1000, 1000),
                                     price_micro_per_kwh=100_000))
        view.add(dataclasses.replace(    # its dear trades arrive in full, cheap ones 60 %
            settlement(10 + n, steady, bytes([n]) * 32, 1000, 600 + 400 * (n % 2)),
            price_micro_per_kwh=100_000 + 50_000 * (n % 2)))
    for n in range(4):
        view.add(dataclasses.replace(settlement(20 + n, seller, bytes([n]) * 32, 1000, 100),
                                     price_micro_per_kwh=350_000 + 10_000 * n))
    assert view.quality(seller) == pytest.approx(6400 / 10_000)
    assert view.expected_share(seller) == pytest.approx(0.64)              # no price: quality
    assert view.expected_share(seller, 100_000) == pytest.approx(0.64)     # all of them
    assert view.expected_share(seller, 200_000) == pytest.approx(0.1)      # the four dear ones
    # dearer than all but one: the three dearest still decide (one is no evidence)
    assert view.expected_share(seller, 380_000) == pytest.approx(0.1)
    assert view.expected_share(steady, 150_000) == pytest.approx(0.8)     # never above quality
    assert view.expected_share(b"n" * 32, 400_000) == 1.0                  # no record: newcomer

    def offer(who: bytes, price: int) -> OfferRecord:
        return OfferRecord(who, who[:16], 1, 1000, price, "F", DAY, DAY + 900, "127.0.0.1:1",
                           offered_wh=1000)

    assert expected_wh(offer(seller, 100_000), view) == 640
    assert expected_wh(offer(seller, 360_000), view) == 100
    assert expected_wh(offer(steady, 360_000), view) == 800
    # near retail the long-shot seller falls below the floor the steady one sets; cheap, not
    dear, cheap = [offer(seller, 360_000), offer(steady, 360_000)], \
        [offer(seller, 100_000), offer(steady, 100_000)]
    assert [r.seller for r in reliable_records(dear, view)] == [steady]
    assert [r.seller for r in reliable_records(cheap, view)] == [seller, steady]


def test_a_verified_settlement_keeps_its_agreed_price(tmp_path):
    market = Market(tmp_path, buyers=1)
    market.trade(0, 1000, 400)
    check = market.verify(market.page())
    assert check.problem is None
    (only,) = check.settlements
    assert only.price_micro_per_kwh == PRICE > 0


def test_an_informed_buyer_draws_sellers_in_proportion_to_their_expected_energy():
    """Buyers that all see the same offers must not all pick the same sellers (these sell out
    on their forecast): each draws sellers, the chance of each in proportion to the energy
    its record says arrives (at most the median candidate's), until they cover twice its
    need."""
    from p2pnode.offers import OfferRecord
    from p2pnode.ranking import SPREAD_COVER, spread_records
    big, mid, small, overseller = b"b" * 32, b"m" * 32, b"s" * 32, b"o" * 32
    view = Reputation()
    for n in range(8):
        view.add(settlement(n, overseller, bytes([n]) * 32, 500, 125))   # delivers a quarter
    records = [OfferRecord(seller, bytes([i]) * 16, 1, energy, 100_000, "F", DAY, DAY + 900,
                           "127.0.0.1:1")
               for i, (seller, energy) in enumerate(((big, 3000), (mid, 2000), (small, 1000),
                                                     (overseller, 4000)))]
    firsts = collections.Counter()
    for buyer in range(4000):
        seed = buyer.to_bytes(4, "big")
        drawn = spread_records(records, view, 500, seed)
        assert drawn == spread_records(records, view, 500, seed)          # repeatable
        assert [r.seller for r in drawn] == [r.seller for r in records if r in drawn]
        assert len(drawn) == 1        # each alone is expected to cover 2 x 500 Wh
        firsts[drawn[0].seller] += 1
    # expected energy 3000 : 2000 : 1000 : 1000 (the overseller's 4000 at its share 0.25),
    # at most the median, 1500: chances 0.3, 0.3, 0.2, 0.2
    for seller, chance in ((big, 0.3), (mid, 0.3), (small, 0.2), (overseller, 0.2)):
        assert firsts[seller] / 4000 == pytest.approx(chance, abs=0.03)
    need = 1600   # no seller alone covers SPREAD_COVER x 1600 Wh: drawn until they do
    for buyer in range(50):
        drawn = spread_records(records, view, need, buyer.to_bytes(4, "big"))
        expected = sum(r.energy_wh * view.expected_share(r.seller) for r in drawn)
        assert expected >= SPREAD_COVER * need or len(drawn) == len(records)
        assert len(drawn) >= 2
    assert spread_records([], view, 500, b"x") == []


def test_a_flood_of_fresh_keys_gets_a_bounded_share_of_the_candidates():
    from models import Predictor
    from p2pnode.offers import OfferRecord
    from p2pnode.ranking import (
        MAX_NEWCOMER_CANDIDATES, MarketContext, bounded_newcomers, candidates_from_offers,
    )
    traded, recorded, unsigned = b"t" * 32, b"r" * 32, b"u" * 32
    view = Reputation()
    view.record_trade(traded)                                    # our own trade with it
    view.add(settlement(1, recorded, b"b" * 32, 500, 500))       # co-signed, in its record
    view.add(settlement(2, unsigned, b"b" * 32, 500, 500, cosigned=False))   # its word only
    assert view.known(traded) and view.known(recorded)
    assert not view.known(unsigned) and not view.known(b"x" * 32)
    fresh = [bytes([i]) * 32 for i in range(20)]
    # the flood is cheaper than the known sellers: it comes first in the price order
    order = fresh[:10] + [unsigned] + fresh[10:] + [traded, recorded]
    records = [OfferRecord(seller, i.to_bytes(16, "big"), 1, 500, 100_000 + i, "F", DAY,
                           DAY + 900, "127.0.0.1:1") for i, seller in enumerate(order)]
    kept = bounded_newcomers(records, view)
    assert [r.seller for r in kept] == fresh[:MAX_NEWCOMER_CANDIDATES] + [traded, recorded]
    candidates = candidates_from_offers(records, 2000, view, MarketContext(), Predictor.default())
    assert {c.seller for c in candidates} == {r.seller for r in kept}
    # without the first newcomers (the buyer's next round), the next ones come in
    later = bounded_newcomers([r for r in records if r.seller not in fresh[:4]], view, limit=2)
    assert [r.seller for r in later] == fresh[4:6] + [traded, recorded]
