"""Track records between real nodes: fetched and verified before ranking, kept over a restart,
and a seller caught hiding a bad settlement is penalised (no more trades with it)."""

from __future__ import annotations

from ledger import BlockBody, BlockType, open_envelope
from p2pnode.negotiation import PeerReply
from p2pnode.node import Node
from tests.dhtkit import run as strict_run
from tests.nodekit import DHT, INTERVAL_S, START, PerfectForesight, key, swarm


def run(coro):
    return strict_run(coro, timeout_s=240)


class Overstating(PerfectForesight):
    """An overselling seller: forecasts ``factor`` times what its meter will measure."""

    def __init__(self, meter, factor: float):
        super().__init__(meter)
        self.factor = factor

    def predict(self, target_start_s: int, issued_at_s: float) -> tuple[int, int]:
        generation, consumption = super().predict(target_start_s, issued_at_s)
        return int(generation * self.factor), consumption


def trades_with(node, seller: bytes, interval_start_s: int) -> int:
    out = 0
    for _, _, _, raw in node.ledger.store.raw_blocks():
        body = open_envelope(raw, BlockBody)[0].message
        if body.author == node.public and body.type is BlockType.TRADE \
                and body.payload.seller == seller and body.payload.interval_start_s == interval_start_s:
            out += 1
    return out


def hiding_shortfalls(node):
    """``node`` answers RECORD with its chain minus its short DELIVERY blocks (and their
    agreements): a seller hiding its bad settlements."""
    honest = node._answer_record

    def answer(request) -> PeerReply:
        reply = honest(request)
        hidden, kept = set(), []
        for raw in reply.blocks:
            body = open_envelope(raw, BlockBody)[0].message
            payload = body.payload
            if body.author == node.public and body.type is BlockType.SETTLEMENT \
                    and payload.delivered_wh < payload.agreed_wh:
                hidden.add(body.seq)
            elif not (body.author != node.public and body.link_seq in hidden):
                kept.append(raw)
        return PeerReply(reply.sender, reply.recipient, reply.trade_id, reply.nonce,
                         reply.status, reply.reason, reply.energy_wh, tuple(kept))

    node._answer_record = answer


def test_records_are_verified_kept_over_a_restart_and_hiding_is_caught(tmp_path):
    async def main():
        # an overseller, an honest seller, a buyer short of about what both offer: the price
        # stays near mid-spread, so the overseller (whose forecast errors make its hedge scale
        # large) still offers; in a glut it would offer nothing and nobody would ask its record
        nets = [[200] * 4, [800] * 4, [-1500] * 4]
        async with swarm(nets, tmp_path) as s:
            overseller, honest, buyer = s.nodes
            overseller.forecaster = Overstating(overseller.meter, 4.0)
            await s.intervals([0, 1])
            assert buyer.counters["record_pages_verified"] >= 2
            assert overseller.counters["records_served"] >= 1 and honest.counters["records_served"] >= 1
            view = buyer.history
            assert 0 < view.quality(overseller.public) < 1 and view.quality(honest.public) == 1.0
            assert view.participation(honest.public) >= 1
            before = (view.quality(overseller.public), view.participation(overseller.public),
                      view.quality(honest.public), view.participation(honest.public))

            # a restart keeps what the buyer's own co-signed settlements say
            await buyer.stop()
            again = Node(buyer.config, buyer.meter, key=key(2), clock=s.clock, dht_settings=DHT,
                         forecaster=PerfectForesight(buyer.meter))
            await again.start()
            s.nodes[2] = again
            await again.dht.bootstrap([honest.dht.address])
            after = again.history
            assert (after.quality(overseller.public), after.participation(overseller.public),
                    after.quality(honest.public), after.participation(honest.public)) == before

            # the overseller now hides its short deliveries from the record it serves
            hiding_shortfalls(overseller)
            await s.intervals([2, 3])
            assert again.counters["record_rejected_gap"] >= 1
            assert again.history.penalised(overseller.public, s.clock())
            assert trades_with(again, overseller.public, START + 3 * INTERVAL_S) == 0
            assert trades_with(again, honest.public, START + 3 * INTERVAL_S) == 1

    run(main())


def test_a_passed_over_seller_still_sells_what_the_reliable_ones_cannot(tmp_path):
    """An informed buyer passes over a seller far below the others' delivered share while those
    can sell; once they are sold out and the buyer still lacks energy, it buys from the
    passed-over seller (unbought, that surplus would be exported; what it fails to deliver the
    grid supplies, as it would have all of it)."""
    async def main():
        nets = [[300] * 8, [200] * 8, [-2000] * 8]
        async with swarm(nets, tmp_path) as s:
            reliable, overseller, buyer = s.nodes
            overseller.forecaster = Overstating(overseller.meter, 4.0)
            await s.intervals(range(7))
            view = buyer.history   # the overseller is far below the reliable seller
            assert view.expected_share(overseller.public) < 0.75 * 0.5 * (
                view.expected_share(overseller.public) + view.expected_share(reliable.public))
            last = START + 6 * INTERVAL_S
            assert trades_with(buyer, reliable.public, last) >= 1
            assert trades_with(buyer, overseller.public, last) >= 1
            assert buyer.counters["passed_over_bought_from"] >= 1

    run(main())
