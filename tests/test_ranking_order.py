"""The order in which a buyer meets sellers: cheapest first, ties in a buyer's own order."""

from __future__ import annotations

from p2pnode.ranking import best_offer_per_seller, bounded_newcomers
from p2pnode.reputation import Reputation
from tests.dhtkit import INTERVAL, key, sealed

SELLERS = [key(f"seller {i}") for i in range(12)]


def offers(price_of=lambda i: 150_000, interval=INTERVAL):
    return [sealed(s, price=price_of(i), interval=interval) for i, s in enumerate(SELLERS)]


def test_cheapest_first_whoever_asks():
    found = offers(lambda i: 100_000 + 1_000 * (i % 3))
    for buyer in (key("buyer a"), key("buyer b")):
        prices = [r.price_micro_per_kwh for r in best_offer_per_seller(found, buyer.public,
                                                                        10**6)]
        assert prices == sorted(prices)


def test_sellers_of_one_price_come_in_each_buyers_own_order():
    """With one pool price, buyers must not all start at the same sellers (the newcomer
    bound gives each ranking only the first few)."""
    found = offers()
    firsts = set()
    for i in range(20):
        buyer = key(f"buyer {i}").public
        order = [r.seller for r in best_offer_per_seller(found, buyer, 10**6)]
        assert order == [r.seller for r in best_offer_per_seller(found, buyer, 10**6)]
        assert sorted(order) == sorted(s.public for s in SELLERS)
        firsts.add(tuple(r.seller for r in bounded_newcomers(
            best_offer_per_seller(found, buyer, 10**6), Reputation())))
    assert len(firsts) >= 15   # 20 buyers, 12 sellers, 4 newcomers each: nearly all differ
    later = [r.seller for r in best_offer_per_seller(offers(interval=INTERVAL + 900),
                                                     key("buyer 0").public, 10**6)]
    assert later != [r.seller for r in best_offer_per_seller(found, key("buyer 0").public,
                                                             10**6)]   # and anew each interval


def test_own_withdrawn_and_too_dear_offers_are_left_out():
    buyer = SELLERS[0]
    found = offers(lambda i: 500_000 if i == 1 else 150_000)
    found.append(sealed(SELLERS[2], 2, energy_wh=0))
    kept = {r.seller for r in best_offer_per_seller(found, buyer.public, 300_000)}
    assert buyer.public not in kept and SELLERS[1].public not in kept
    assert SELLERS[2].public in kept   # its live offer stays; the tombstone is another offer
