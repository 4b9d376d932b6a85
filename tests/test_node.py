"""Real nodes on loopback: trading, user constraints, hostile messages, a faulty 50-node swarm."""

from __future__ import annotations

import asyncio
import collections
import os

import numpy as np
import pytest

from ledger import BlockBody, BlockType, cost_micro, open_envelope, seal
from p2pnode.config import Constraints, MarketConfig, NodeConfig
from p2pnode.errors import ConfigError
from p2pnode.meter import ProfileMeter
from p2pnode.dht.faults import FaultPlan
from p2pnode.node import Node, step_times
from p2pnode.trading.schedule import day_gate_s, events
from p2pnode.negotiation import Kind, PeerRequest, parse_request
from p2pnode.peer import PeerClient
from simulator.swarm import audit_ledgers
from tests.dhtkit import run as strict_run
from tests.nodekit import CREDIT_MICRO, INTERVAL_S, START, PerfectForesight, key, swarm


def run(coro):
    return strict_run(coro, timeout_s=240)


def blocks(node, kind=None):
    out = []
    for _, _, _, raw in node.ledger.store.raw_blocks():
        block = open_envelope(raw, BlockBody)[0]
        if kind is None or block.message.type is kind:
            out.append(block.message)
    return out


def own(node, kind):
    return [b for b in blocks(node, kind) if b.author == node.public]


def test_two_nodes_trade_settle_and_leave_the_rest_to_the_grid(tmp_path):
    async def main():
        async with swarm([[800], [-300]], tmp_path) as s:
            seller, buyer = s.nodes
            published, publish = [], seller.dht.publish

            async def capture(record):
                published.append(record.message)
                return await publish(record)

            seller.dht.publish = capture
            for at, step, start in events(seller.config, [START]):   # s.interval(0), with time
                s.clock.now_s = max(s.clock.now_s, at)    # for the seller's coalesced republish
                await asyncio.gather(*(node.step(step, start) for node in s.nodes))
                await asyncio.sleep(0.05)
            # the offer is put up again with what is left, stating what it put up in all
            assert (800, 800) in {(r.energy_wh, r.offered_wh) for r in published}
            assert (500, 800) in {(r.energy_wh, r.offered_wh) for r in published}
            trade = own(seller, BlockType.TRADE)[0].payload
            assert (trade.seller, trade.buyer, trade.energy_wh) == (seller.public, buyer.public, 300)
            assert trade.interval_start_s == START
            for node in (seller, buyer):   # both halves of both pairs, in both ledgers
                assert len(blocks(node, BlockType.TRADE)) == 2
                assert len(blocks(node, BlockType.SETTLEMENT)) == 2
            price = trade.price_micro_per_kwh
            feed_in, retail = 80_000, 300_000
            assert feed_in <= price <= retail
            assert buyer.ledger.credit_micro == CREDIT_MICRO - cost_micro(300, price)
            assert seller.ledger.credit_micro == CREDIT_MICRO + cost_micro(300, price)
            grid = own(seller, BlockType.GRID)[0].payload
            assert (grid.import_wh, grid.export_wh) == (0, 500)
            assert own(buyer, BlockType.GRID) == []           # fully covered by the trade
            assert buyer.reports[0].bought_wh == 300 and seller.reports[0].sold_wh == 300
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


@pytest.mark.parametrize("nets, price", [
    ([[800], [-300]], 80_000 + 220_000 * 300**2 // (300**2 + 800**2)),   # a glut: toward feed-in
    ([[300], [-800]], 80_000 + 220_000 * 800**2 // (300**2 + 800**2)),   # scarce: toward retail
])
def test_the_price_follows_the_feeders_supply_and_demand_for_the_interval(tmp_path, nets, price):
    """The buyer publishes its forecast need as a bid; at the price step the seller reads the
    interval's offers and bids and prices from their ratio (the SDR pool price, between the
    feed-in 0.08 and retail 0.30 tariffs); the trade is agreed at that price.  (No balancing
    round: its discovery would be the buyer's last.)"""
    async def main():
        async with swarm(nets, tmp_path, market=MarketConfig(balancing=False)) as s:
            await s.interval(0)
            seller, buyer = s.nodes
            assert buyer.counters["bids_published"] == 1
            assert seller.counters["offers_repriced"] == 1 and seller.counters["market_lookups"] == 1
            assert len(buyer.last_discovery.bids) == 1       # its own, beside the offers
            # what the buyer's first look saw is its view of the market, should it sell next
            assert buyer._market_view == (nets[0][0], -nets[1][0])
            assert [o.message.seller for o in buyer.last_discovery.offers] == [seller.public]
            trade = own(seller, BlockType.TRADE)[0].payload
            assert trade.price_micro_per_kwh == price
            assert trade.energy_wh == min(-nets[1][0], nets[0][0])
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


def test_day_ahead_positions_then_real_time_for_the_difference(tmp_path):
    """Day ahead (perfect forecasts): the buyer takes 300 and 500 Wh for two intervals before
    the gate the day before; in real time only the difference is traded (the seller offers its
    remaining 500 Wh of the first interval, the buyer's last 200 Wh of the second come from the
    grid: nobody sells then); every trade is delivered, measured and co-signed once."""
    market = MarketConfig(mode="day_ahead")

    async def main():
        async with swarm([[800, 500], [-300, -700]], tmp_path, market=market) as s:
            await s.intervals([0, 1])
            seller, buyer = s.nodes
            gate = day_gate_s(seller.config, START - START % 86400) * 1000
            trades = [b for b in own(seller, BlockType.TRADE)]
            assert sorted(t.payload.energy_wh for t in trades) == [300, 500]
            assert all(t.time_ms <= gate for t in trades)              # all day-ahead
            assert {t.payload.interval_start_s for t in trades} == {START, START + INTERVAL_S}
            deliveries = own(seller, BlockType.SETTLEMENT)
            assert sorted(d.payload.delivered_wh for d in deliveries) == [300, 500]
            assert len(blocks(buyer, BlockType.SETTLEMENT)) == 4        # both halves, both trades
            first, second = buyer.reports
            assert (first.bought_wh, first.grid_import_wh) == (300, 0)
            assert (second.bought_wh, second.grid_import_wh) == (500, 200)
            assert seller.reports[0].grid_export_wh == 500            # offered again in real time
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


class BrokenSubsteps(ProfileMeter):
    """A meter whose sub-step readings lose one minute (or repeat one) of every interval."""

    def __init__(self, meter: ProfileMeter, fault: str):
        super().__init__(meter.start_s, meter.interval_s, meter.generation_wh,
                         meter.consumption_wh)
        self.fault = fault

    def substeps(self, interval_start_s, interval_s, substep_s):
        reading = self.read(interval_start_s, interval_s)
        count = interval_s // substep_s
        steps = [(g, 0) for g in flat_like(reading.generation_wh, count)]
        steps = [(g, c) for (g, _), c in zip(steps, flat_like(reading.consumption_wh, count))]
        return steps[:-1] if self.fault == "missing" else steps + [steps[-1]]


def flat_like(total: int, count: int) -> list[int]:
    return [total // count + (1 if i < total % count else 0) for i in range(count)]


@pytest.mark.parametrize("fault", ["missing", "duplicate"])
def test_a_sub_step_missing_or_twice_is_refused_counted_and_delivery_measured_flat(
        tmp_path, fault):
    """The seller's meter reports one sub-step too few (or one twice): the reading of the
    interval still measures the delivery (shared flat over the interval), the refusal is
    counted, and the trade settles once, in full."""
    def configure(i, config, meter):
        return config, (BrokenSubsteps(meter, fault) if i == 0 else meter)

    async def main():
        async with swarm([[800], [-300]], tmp_path, configure=configure) as s:
            await s.interval(0)
            seller, buyer = s.nodes
            assert seller.counters[f"substeps_refused_substep_{fault}"] == 1
            deliveries = own(seller, BlockType.SETTLEMENT)
            assert [d.payload.delivered_wh for d in deliveries] == [300]
            assert buyer.reports[0].bought_wh == 300
            # flat: 800 Wh over 15 minutes (54 Wh a minute, then 53) reach 300 Wh in the 6th
            trade = own(seller, BlockType.TRADE)[0]
            assert deliveries[0].payload.duration_ms == START * 1000 + 6 * 60_000 - trade.time_ms
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


@pytest.mark.parametrize("mode", ["real_time", "day_ahead"])
def test_a_node_that_starts_with_a_history_hedges_from_a_backtest(tmp_path, mode):
    """A forecaster that comes with days of readings (a meter that kept them, the simulator's
    warm-up) sizes the node's hedges before its first interval: the next-interval errors of
    the last day and, in the day-ahead market, the errors of the forecasts issued at its gate."""
    from models.forecast import NodeForecaster
    rng = np.random.default_rng(3)
    forecaster = NodeForecaster(interval_s=INTERVAL_S)
    first = START - START % 86400 - 9 * 86400
    for i in range(9 * 96):
        hour = (i % 96) / 4
        generation = max(0.0, 400 * np.sin(np.pi * (hour - 6) / 12)) * rng.uniform(0.5, 1.0)
        forecaster.observe(first + i * INTERVAL_S, float(int(generation)),
                           float(int(150 * rng.lognormal(0, 0.4))))
    config = NodeConfig(ledger=tmp_path / "n.db", market=MarketConfig(mode=mode))
    node = Node(config, ProfileMeter(START, INTERVAL_S, [0], [0]), key=key(0),
                forecaster=forecaster, clock=lambda: START - 86400)
    node._seed_error_scales()
    assert node.error_scale.samples == 96 and node.error_scale.value > 10   # the last day
    if mode == "day_ahead":
        assert node.day_ahead_scale.samples == 96
        assert node.day_ahead_scale.value > 10
    else:
        assert node.day_ahead_scale.samples == 0


def test_user_constraints_are_honoured(tmp_path):
    constraints = {
        0: Constraints(opt_out="selling"),                 # never sells
        1: Constraints(reserve_wh=200, max_trade_wh=150),  # keeps 200 Wh, sells <= 150 per trade
        3: Constraints(max_buy_price_per_kwh=0.05),        # below the feed-in tariff: never buys
    }

    async def main():
        async with swarm([[900], [600], [-500], [-400]], tmp_path, constraints=constraints) as s:
            await s.interval(0)
            opted_out, reserved, buyer, picky = s.nodes
            assert opted_out.counters["offers_published"] == 0
            assert own(opted_out, BlockType.GRID)[0].payload.export_wh == 900
            offered = own(reserved, BlockType.MINT)[0].payload.tokens_wh
            assert offered == 600
            sold = [b.payload.energy_wh for b in own(reserved, BlockType.TRADE)]
            assert sold and max(sold) <= 150 and sum(sold) <= 600 - 200
            bought = [b.payload.energy_wh for b in blocks(buyer, BlockType.TRADE)
                      if b.author == buyer.public]
            assert sum(bought) == sum(sold)
            assert own(picky, BlockType.TRADE) == [] and picky.counters["discoveries"] == 0
            assert own(picky, BlockType.GRID)[0].payload.import_wh == 400
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


def test_hostile_messages_are_dropped_counted_and_change_nothing(tmp_path):
    async def main():
        async with swarm([[800], [-300]], tmp_path) as s:
            seller, buyer = s.nodes
            s.clock.now_s = step_times(seller.config, START)["open"]
            await seller.open_interval(START)
            record = seller.own_offers()[0]
            client = PeerClient()
            await client.start()
            try:
                def request(sender=buyer.key, signer=None, **changes):
                    fields = dict(sender=sender.public, recipient=seller.public, kind=Kind.REQUEST,
                                  trade_id=os.urandom(16), nonce=os.urandom(16),
                                  sent_at_ms=int(s.clock() * 1000), offer_id=record.offer_id,
                                  interval_start_s=START, energy_wh=100,
                                  price_micro_per_kwh=record.price_micro_per_kwh,
                                  blocks=buyer.credit_evidence())     # the buyer's deposit
                    fields.update(changes)
                    return seal(PeerRequest(**fields), signer or sender)

                async def send(raw):
                    return await client.send(seller.endpoint, raw, 2.0)

                good = request()
                first = await send(good.raw)
                assert first is not None
                assert await send(good.raw) == first               # retransmission: same answer
                assert seller.counters["retransmissions_answered"] == 1
                stranger = key(99)
                forged = request(sender=stranger).raw.replace(stranger.public, buyer.public)
                hostile = {
                    "bad_signature": forged,
                    "malformed": b"\x93\x01\x02\x03",
                    "oversize": b"\x00" * 9000,
                    "wrong_recipient": request(recipient=buyer.public, sender=stranger).raw,
                    "stale": request(sent_at_ms=int(s.clock() * 1000) - 121_000).raw,
                    "future": request(sent_at_ms=int(s.clock() * 1000) + 121_000).raw,
                    "nonce_reused": request(nonce=good.message.nonce, energy_wh=5).raw,
                }
                for reason, raw in hostile.items():
                    assert await send(raw) is None, reason
                    assert seller.counters[f"peer_dropped_{reason}"] == 1, reason
            finally:
                await client.stop()
            assert len(own(seller, BlockType.TRADE)) == 1          # only the one good request
            assert seller.counters["trades_proposed"] == 1

    run(main())


def test_ledger_sync_reaches_the_store_and_is_checked(tmp_path):
    config = NodeConfig(ledger=tmp_path / "n.db")
    meter = ProfileMeter(START, 900, [0], [0])
    with pytest.raises(ConfigError, match="ledger_sync"):
        Node(config, meter, key=key(0), ledger_sync="off")

    async def main():
        for sync in ("normal", "full"):
            async with Node(config, meter, key=key(0), ledger_sync=sync) as node:
                assert node.ledger.store.sync == sync

    run(main())


@pytest.mark.slow
def test_fifty_nodes_with_lost_and_duplicated_messages_never_settle_twice(tmp_path):
    """25 sellers, 25 buyers, 3 intervals; 20 % of datagrams and HTTP messages lost, 20 %
    duplicated.  Every settled trade is in both ledgers, nothing is settled twice, nobody sells
    more than its surplus or buys more than its deficit, money adds up."""
    rng = __import__("random").Random(7)
    nets = [[rng.randint(200, 900) for _ in range(3)] for _ in range(25)]
    nets += [[-rng.randint(100, 600) for _ in range(3)] for _ in range(25)]
    faults = FaultPlan(loss=0.2, duplicate=0.2, seed=3)

    async def main():
        async with swarm(nets, tmp_path, faults=faults) as s:
            await s.intervals(range(3))
            await asyncio.gather(*(n.settle() for n in s.nodes))   # retry pending settlements
            held = {n.public: blocks(n) for n in s.nodes}
            return s.nodes, [n.config.ledger for n in s.nodes], held

    nodes, paths, held = strict_run(main(), timeout_s=280)
    problems, doubles = audit_ledgers(paths)
    assert problems == [] and doubles == 0
    counters = collections.Counter()
    for node in nodes:
        counters.update(node.counters)
    assert counters["retransmissions_answered"] > 0     # duplicates and retries really happened
    settled = {}
    for node in nodes:
        for block in held[node.public]:
            if block.type is BlockType.SETTLEMENT and block.author == node.public \
                    and block.payload.buyer == node.public:
                assert block.payload.trade_id not in settled
                settled[block.payload.trade_id] = block.payload
    assert len(settled) >= 20
    by_key = {n.public: n for n in nodes}
    sold, bought = collections.Counter(), collections.Counter()
    for trade_id, payload in settled.items():
        seller = by_key[payload.seller]
        seller_settlements = [b for b in held[seller.public] if b.type is BlockType.SETTLEMENT
                              and b.payload.trade_id == trade_id]
        assert len(seller_settlements) == 2               # the seller's DELIVERY, the agreement
        sold[payload.seller] += payload.delivered_wh
        bought[payload.buyer] += payload.delivered_wh
    for i, node in enumerate(nodes):
        surplus = sum(max(n, 0) for n in nets[i])
        deficit = sum(max(-n, 0) for n in nets[i])
        assert sold[node.public] <= surplus and bought[node.public] <= deficit
    total_money = sum(n.ledger.credit_micro for n in nodes)
    assert total_money == CREDIT_MICRO * len(nodes)      # credit only moves between nodes
    matchable = sum(min(sum(max(n[t], 0) for n in nets), sum(max(-n[t], 0) for n in nets))
                    for t in range(3))
    assert sum(bought.values()) >= 0.8 * matchable, dict(counters)


def test_a_node_that_opens_an_interval_too_late_trades_nothing_in_it(tmp_path):
    """The forecaster refuses an interval that already ended (a node late to open it): the
    node counts it and sits the interval out instead of failing."""
    class Late:
        def observe(self, *_):
            pass

        def predict(self, target_start_s, issued_at_s):
            from models.errors import ForecastRequestError
            raise ForecastRequestError(f"target_start_s={target_start_s}: already ended")

    async def main():
        async with swarm([[800]], tmp_path) as s:
            (node,) = s.nodes
            node.forecaster = Late()
            s.clock.now_s = step_times(node.config, START)["open"]
            assert await node.open_interval(START) is not None
            assert node.counters["forecast_refused"] == 1 and node.own_offers() == []

    run(main())


@pytest.mark.parametrize("possible_wh, offers", [(600.0, True), (0.0, False)])
def test_a_node_whose_median_forecast_is_no_surplus_offers_its_chance_of_one(
        tmp_path, possible_wh, offers):
    """The seller's median forecast is a deficit of 30 Wh (its load takes its PV) and its
    forecasts are 60 Wh off on average; the market it saw last wants energy and offers none
    (the price near retail).  If its PV may generate in the interval, the newsvendor quantity
    is a surplus worth offering: the buyer buys it and gets what the meter shows (100 Wh).
    A house whose PV cannot generate then (night, no PV) offers nothing ahead; the 100 Wh its
    meter then shows are sold in the balancing round instead, delivered in full."""
    class Unsure(PerfectForesight):
        def predict(self, target_start_s, issued_at_s):
            return 200, 230

        def clear_sky_generation(self, target_start_s, issued_at_s):
            return possible_wh

    async def main():
        async with swarm([[100], [-800]], tmp_path) as s:
            seller, buyer = s.nodes
            seller.forecaster = Unsure(seller.meter)
            seller.error_scale.value, seller._market_view = 60.0, (0, 800)
            await s.interval(0)
            assert seller.counters["chance_offers"] == int(offers)
            trades = own(seller, BlockType.TRADE)
            ahead = [b for b in trades if seller.ledger.state.trades[b.payload.trade_id].forward]
            assert bool(ahead) == offers
            assert seller.counters["balancing_offers"] == int(not offers)
            assert buyer.reports[0].bought_wh == 100   # what was metered, either way
            if offers:
                assert sum(b.payload.energy_wh for b in trades) > 100
            else:   # metered, so agreed and delivered alike
                assert [b.payload.energy_wh for b in trades] == [100]
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


class Blind(PerfectForesight):
    """Forecasts a balanced interval whatever the meter will show."""

    def predict(self, target_start_s, issued_at_s):
        return 0, 0

    def clear_sky_generation(self, target_start_s, issued_at_s):
        return 0.0


@pytest.mark.parametrize("balancing", [True, False])
def test_the_balancing_round_sells_metered_surplus_to_a_buyer_its_forecast_missed(
        tmp_path, balancing):
    """The buyer forecast a balanced interval, so it bought nothing ahead; its meter then shows
    a 300 Wh deficit, and nobody bought the seller's 500 Wh.  In the balancing round the seller
    offers what it measured and did not sell and the buyer buys its metered need: a trade of
    energy already metered (spent from the seller's tokens when agreed, not on delivery),
    delivered in full at close, counted once; the grid takes only the rest.  Without the round
    the buyer imports the 300 Wh and the seller exports its 500 Wh."""
    async def main():
        async with swarm([[500], [-300]], tmp_path,
                         market=MarketConfig(balancing=balancing)) as s:
            seller, buyer = s.nodes
            buyer.forecaster = Blind(buyer.meter)
            await s.interval(0)
            trades = own(seller, BlockType.TRADE)
            grid_in, grid_out = own(buyer, BlockType.GRID), own(seller, BlockType.GRID)
            if not balancing:
                assert trades == [] and buyer.counters["balancing_needs"] == 0
                assert grid_in[0].payload.import_wh == 300
                assert grid_out[0].payload.export_wh == 500
                return
            assert seller.counters["balancing_offers"] == buyer.counters["balancing_needs"] == 1
            assert [b.payload.energy_wh for b in trades] == [300]
            trade = seller.ledger.state.trades[trades[0].payload.trade_id]
            assert not trade.forward and trade.settled
            delivery = own(seller, BlockType.SETTLEMENT)[0].payload
            assert (delivery.agreed_wh, delivery.delivered_wh, delivery.imbalance_micro,
                    delivery.duration_ms) == (300, 300, 0, 0)
            assert buyer.reports[0].bought_wh == seller.reports[0].sold_wh == 300
            assert grid_in == [] and grid_out[0].payload.export_wh == 200
            assert seller.ledger.tokens_wh(START) == 200   # the unsold rest, exported
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


def test_a_seller_that_oversold_ahead_has_nothing_for_the_balancing_round(tmp_path):
    """The seller forecast 500 Wh and sold them ahead; its meter shows 200.  Its trade takes
    all 200 on delivery, so in the balancing round it offers nothing: the buyer, 300 Wh short
    of its metered deficit, looks, finds no offer and imports them from the grid."""
    class Optimist(PerfectForesight):
        def predict(self, target_start_s, issued_at_s):
            return 500, 0

    async def main():
        async with swarm([[200], [-500]], tmp_path) as s:
            seller, buyer = s.nodes
            seller.forecaster = Optimist(seller.meter)
            await s.interval(0)
            delivery, = own(seller, BlockType.SETTLEMENT)
            assert (delivery.payload.agreed_wh, delivery.payload.delivered_wh) == (500, 200)
            assert seller.counters["balancing_offers"] == 0 and seller.ledger.tokens_wh(START) == 0
            assert buyer.counters["balancing_needs"] == 1
            assert buyer.counters["balancing_bought_wh"] == 0
            assert own(buyer, BlockType.GRID)[0].payload.import_wh == 300
            assert len(own(seller, BlockType.TRADE)) == 1
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


def test_a_lost_confirm_is_sent_again_and_the_trade_settles(tmp_path):
    """Every CONFIRM of the buyer's trade in interval 0 is lost on the way: the seller never
    holds the agreement, so it cannot deliver, and the buyer's credit for the trade stays
    escrowed.  At its next open the buyer sends the agreement again; the seller takes it late,
    delivers at its next settle, and both ledgers settle the trade once."""
    async def main():
        async with swarm([[800, 0], [-300, 0]], tmp_path) as s:
            seller, buyer = s.nodes
            send = buyer.client.send
            lost = []

            async def lossy(endpoint, raw, timeout_s):
                request = parse_request(raw)
                if not isinstance(request, str) and request.message.kind is Kind.CONFIRM \
                        and not lost:
                    return None
                return await send(endpoint, raw, timeout_s)

            buyer.client.send = lossy
            await s.interval(0)
            assert buyer.counters["unconfirmed"] == 1
            trade = own(buyer, BlockType.TRADE)[0].payload
            assert len(blocks(seller, BlockType.TRADE)) == 1   # its proposal, not the agreement
            assert trade.trade_id not in seller._undelivered
            assert blocks(buyer, BlockType.SETTLEMENT) == []
            escrowed = buyer.ledger.credit_micro
            assert escrowed == CREDIT_MICRO - cost_micro(300, trade.price_micro_per_kwh)
            lost.append(True)                                         # the link works again
            await s.interval(1)
            assert buyer.counters["reconfirmed"] == 1
            assert seller.counters["late_agreements"] == 1
            for node in (seller, buyer):
                settled = [b.payload for b in blocks(node, BlockType.SETTLEMENT)]
                assert [p.trade_id for p in settled] == [trade.trade_id] * 2   # once, both halves
                assert settled[0].delivered_wh == 300
            assert buyer.unsettled() == [] and buyer._unconfirmed == {}
            assert audit_ledgers([n.config.ledger for n in s.nodes]) == ([], 0)

    run(main())


def test_a_forecast_knows_the_interval_that_ended_just_before_it(tmp_path):
    """In real time interval t opens the moment t - 2 ends; the buyer reads its meter for
    t - 2 only at its close and the seller at its settle, both later.  The node shows its
    forecaster the reading that just ended first, so the forecast of t is two intervals
    ahead, not three."""
    class Recording(PerfectForesight):
        def __init__(self, meter):
            super().__init__(meter)
            self.seen, self.knew = [], {}

        def observe(self, interval_start_s, generation_wh, consumption_wh):
            self.seen.append(interval_start_s)

        def predict(self, target_start_s, issued_at_s):
            self.knew[target_start_s] = max(self.seen, default=None)
            return super().predict(target_start_s, issued_at_s)

    async def main():
        async with swarm([[800, 700, 600, 500], [-300, -300, -300, -300]], tmp_path) as s:
            for node in s.nodes:
                node.forecaster = Recording(node.meter)
            await s.intervals(range(4))
            for node in s.nodes:
                knew = node.forecaster.knew
                assert knew[START + 2 * INTERVAL_S] == START   # t - 2, read at the open of t
                assert knew[START + 3 * INTERVAL_S] == START + INTERVAL_S
                # the opens of intervals 0 and 1 came before the meter's first interval ended
                assert node.counters["reading_not_ready"] == 2

    run(main())
