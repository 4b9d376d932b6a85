"""The seller's half of the node shell: publish offers, answer buyers, deliver and settle.

The decisions are in :mod:`p2pnode.trading.seller` and :mod:`p2pnode.trading.settlement`; this
mixin of :class:`p2pnode.node.Node` does their I/O (DHT, peer messages, ledger, meter).

Settlement is the seller's: after an interval it reads its meter, mints its measured surplus,
proposes one DELIVERY per confirmed trade (all in one commit) and pushes each to its buyer, who
agrees.  What it sold and has not seen agreed is kept in ``_undelivered`` (rebuilt from the
ledger on start, so a restart loses nothing): a DELIVERY already written is resent as it is --
the delivery is measured once and a trade is settled once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

from ledger import (
    BlockBody, BlockRejected, BlockType, DecodeError, LedgerError, Sealed,
    TradePayload, cost_micro, decode_envelope, seal,
)
from p2pnode.meter import Reading
from p2pnode.minting import mint_reading
from p2pnode.negotiation import Kind, PeerReply, PeerRequest, Status
from p2pnode.offers import (
    OfferRecord, OfferRejected, price_band, query_keys,
)
from p2pnode.pricing import dynamic_price
from p2pnode.config import micro
from p2pnode.trading.schedule import balancing_gate_s, day_gate_s, gate_s
from p2pnode.trading.hedging import (
    chance_offer_wh, day_ahead_quantity_wh, seller_quantity_wh,
)
from p2pnode.trading.credit import CreditEvidence, proven_credit
from p2pnode.trading.seller import Offer
from p2pnode.trading.settlement import SoldTrade, deliveries

__all__ = ["SellerSide"]

log = logging.getLogger(__name__)

OFFER_REFRESH_DELAY_S = 0.02
CREDIT_CACHE_ENTRIES = 1024   # buyers' credit evidence already checked (two signatures a block)


class SellerSide:
    """Selling: offers, the answers to REQUEST/CONFIRM, and :meth:`settle` (deliveries)."""

    # -- publishing --------------------------------------------------------------------------
    async def _open_selling(self, start: int, surplus_wh: int, *, day_ahead: bool = False,
                            balancing: bool = False) -> None:
        """Price ``surplus_wh`` of the interval and publish a signed offer for it; in the
        day-ahead market the offer's gate is the day's (:func:`day_gate_s`), in the balancing
        round the round's (:func:`balancing_gate_s`)."""
        config = self.config
        supply, demand = self._market_view
        if demand <= 0:   # no market view yet: ask the middle of the range
            supply = demand = 1
        offered, price = self._ask(start, surplus_wh, supply, demand, day_ahead=day_ahead)
        gate = day_gate_s(config, start - start % 86400) if day_ahead \
            else balancing_gate_s(config, start) if balancing else gate_s(config, start)
        offer = self.book.open(start, surplus_wh, offered, price or 0, gate_s=gate,
                               day_ahead=day_ahead, balancing=balancing)
        if not config.constraints.sells or price is None or offered <= 0:
            offer.available_wh = 0
            return
        record = OfferRecord(
            seller=self.public, offer_id=os.urandom(16), seq=1, energy_wh=offered,
            price_micro_per_kwh=price, feeder=config.feeder, interval_start_s=start,
            expires_at_s=int(gate) + 1, endpoint=self.endpoint,
            location=str(self.location) if config.location else None, offered_wh=offered)
        offer.record = seal(record, self.key)
        try:
            await self.dht.publish(offer.record)
            self.counters["offers_published"] += 1
        except OfferRejected as exc:
            self.counters["offers_rejected"] += 1
            if exc.reason == "not_stored":   # no node took it (busy or refusing): it stays
                # ours and is published again with the next update or republish; counted
                # (offers_not_stored, the DHT's store_refused / store_unanswered), not a warning
                # per record
                self.counters["offers_not_stored"] += 1
                log.info("offer for %s not stored yet: %s", start, exc)
            else:   # our own record is one the DHT refuses: a defect
                log.warning("offer for %s not published: %s", start, exc)

    def _chance_offer(self, start: int, residual_wh: int) -> bool:
        """Whether to offer the interval although its forecast net ``residual_wh`` is below the
        surplus threshold: the newsvendor quantity of that forecast at the price the market
        last showed reaches it (:func:`~p2pnode.trading.hedging.chance_offer_wh`).  The price
        step then sizes the offer again at the interval's own price, as any offer."""
        config = self.config
        if config.market.mode == "ex_post" or not config.constraints.sells \
                or residual_wh >= config.detection.enter_wh:
            return False
        supply, demand = self._market_view
        if demand <= 0:   # no market view yet: the middle of the range, the median forecast
            supply = demand = 1
        hour = (start % 86400) / 3600
        price = dynamic_price(supply, demand, hour, config.tariffs,
                              micro(config.constraints.min_sell_price_per_kwh))
        if price is None:
            return False
        offered = chance_offer_wh(residual_wh, self._possible_generation(start),
                                  self.error_scale.value, price,
                                  config.tariffs.frame_at(hour).retail_micro_per_kwh,
                                  config.tariffs.feed_in_micro_per_kwh, config.detection.enter_wh)
        if offered > config.constraints.reserve_wh:
            self.counters["chance_offers"] += 1
            return True
        return False

    def _ask(self, start: int, surplus_wh: int, supply_wh: int, demand_wh: int, *,
             day_ahead: bool = False) -> tuple[int, int | None]:
        """(energy to offer, price) for a surplus of ``surplus_wh`` with ``supply_wh`` offered and
        ``demand_wh`` wanted on the feeder: the price from their ratio (FR-07,
        :func:`~p2pnode.pricing.dynamic_price`; None: the user's minimum is above retail), the
        quantity the newsvendor quantile of the forecast at that price less the user's reserve
        (ahead of delivery; ex post the unsold minted tokens)."""
        config = self.config
        offered = max(0, surplus_wh - config.constraints.reserve_wh)
        hour = (start % 86400) / 3600
        price = dynamic_price(supply_wh, demand_wh, hour, config.tariffs,
                              micro(config.constraints.min_sell_price_per_kwh))
        if start in self.ledger.state.minted:   # ex post: what the reading minted, unsold
            return min(offered, self.ledger.tokens_wh(start)), price
        if day_ahead:   # a position: a low quantile of the day-ahead forecast
            return day_ahead_quantity_wh(offered, self.day_ahead_scale.value), price
        if price is not None and config.market.mode != "ex_post":
            retail = config.tariffs.frame_at(hour).retail_micro_per_kwh
            # the newsvendor quantity at that price: in a glut (near feed-in) less than the
            # median forecast, when supply is scarce (near retail, where a shortfall costs the
            # seller little and its buyers nothing: trading.delivery) more
            offered = max(0, seller_quantity_wh(surplus_wh, self.error_scale.value, price, retail,
                                                config.tariffs.feed_in_micro_per_kwh)
                          - config.constraints.reserve_wh)
        return offered, price

    async def price_interval(self, start: int) -> int | None:
        """The real-time market's price step: read the interval's offers and bids (the feeder's
        supply and demand for it), price our offer from their ratio (the SDR pool price) and
        publish it again if its price or quantity changed.  Returns the new price (None: no
        offer of ours for the interval)."""
        offer = self.book.offers.get(start)
        if offer is None or offer.record is None or offer.closed:
            return None
        config, record = self.config, offer.record.message
        retail = config.tariffs.frame_at((start % 86400) / 3600).retail_micro_per_kwh
        feed_in = config.tariffs.feed_in_micro_per_kwh
        seen = await self.dht.find_offers(query_keys(config.feeder, start, retail, feed_in))
        self.counters["market_lookups"] += 1
        demand = sum(r.message.energy_wh for r in seen.bids
                     if r.message.interval_start_s == start)
        supply = sum(r.message.energy_wh for r in seen.offers
                     if r.message.interval_start_s == start and r.message.seller != self.public)
        supply += record.energy_wh
        self._market_view = (supply, demand)   # also the next interval's first ask
        offered, price = self._ask(start, offer.surplus_wh, supply, demand)
        if price is None or (price, offered) == (offer.price_micro_per_kwh, record.energy_wh):
            return offer.price_micro_per_kwh
        self.book.reprice(start, offered, price)
        moved = price_band(price) != price_band(record.price_micro_per_kwh)
        if moved:   # an offer id keeps its price band: withdraw it, publish a new one
            task = self._refreshing.pop(record.offer_id, None)
            if task is not None:
                task.cancel()
            await self._publish_quietly(self.dht.withdraw(record.offer_id))
        offer.record = seal(dataclasses.replace(
            record, offer_id=os.urandom(16) if moved else record.offer_id,
            seq=1 if moved else record.seq + 1, energy_wh=max(offer.available_wh, 0),
            offered_wh=offer.offered_wh, price_micro_per_kwh=price), self.key)
        await self._publish_quietly(self.dht.publish(offer.record))
        self.counters["offers_repriced"] += 1
        return price

    async def _publish_quietly(self, publishing) -> None:
        try:
            await publishing
        except OfferRejected as exc:
            log.info("offer update not published: %s", exc)

    def _mint(self, reading: Reading, *, measured_only: bool = False) -> None:
        """Tokens for the surplus of a metered interval, from its signed reading (once; see
        :func:`p2pnode.minting.mint_reading`: with ``[meter] trusted_keys`` only a reading its
        meter signed counts, a refusal is counted as ``mint_refused_<reason>``).

        ``measured_only``: mint even without a surplus (0 tokens): the signed reading is the
        proof a DELIVERY carries that the seller measured the interval.
        """
        start = reading.interval_start_s
        if start in self.ledger.state.minted or start in self._mint_refused \
                or (reading.net_wh <= 0 and not measured_only):
            return
        minted = mint_reading(self.ledger, reading, self.key, self._now_ms(),
                              measured_only=measured_only)
        if isinstance(minted, str):   # e.g. [meter] trusted_keys and a reading it did not sign
            self.counters[f"mint_refused_{minted}"] += 1   # once per interval: the same
            self._mint_refused.add(start)                  # reading is refused again
            return
        self._mint_seqs[start] = minted.message.seq

    def _schedule_refresh(self, offer: Offer) -> None:
        """Republish the offer with what is left (a newer seq; 0 Wh withdraws it), coalesced."""
        key = offer.record.message.offer_id
        task = self._refreshing.get(key)
        if task is None or task.done():
            self._refreshing[key] = self.tasks.spawn(
                self._refresh_offer(offer), name=f"refresh {offer.interval_start_s}")

    async def _refresh_offer(self, offer: Offer) -> None:
        await asyncio.sleep(OFFER_REFRESH_DELAY_S)
        current = offer.record.message
        if current.energy_wh == offer.available_wh or current.expires_at_s <= self.clock():
            return
        offer.record = seal(dataclasses.replace(current, seq=current.seq + 1,
                                                energy_wh=max(offer.available_wh, 0),
                                                offered_wh=offer.offered_wh), self.key)
        try:
            await self.dht.publish(offer.record)
            self.counters["offers_updated"] += 1
        except OfferRejected as exc:
            log.info("offer update not published: %s", exc)

    # -- answering buyers --------------------------------------------------------------------
    def _answer_request(self, request: PeerRequest) -> PeerReply:
        self.book.expire(self._now_ms())
        tokens = None
        if request.interval_start_s in self.ledger.state.minted:
            tokens = self.ledger.tokens_wh(request.interval_start_s)
        limits = self.config.constraints
        credit = self._buyer_credit(request)
        if isinstance(credit, str):
            return self._reply(request, Status.DENIED, credit)
        decision = self.book.decide(
            request, now_s=self.clock(), sells=limits.sells, max_trade_wh=limits.max_trade_wh,
            trade_known=request.trade_id in self.ledger.state.trades, tokens_wh=tokens,
            credit=credit, owed_micro=self._owed_micro(request.sender))
        if isinstance(decision, str):
            return self._reply(request, Status.DENIED, decision)
        payload = TradePayload(request.trade_id, self.public, request.sender,
                               request.interval_start_s, decision, request.price_micro_per_kwh,
                               request.offer_id)
        try:
            proposal = self.ledger.propose_trade(payload, self._now_ms())
        except BlockRejected as exc:
            log.warning("cannot propose %s: %s", request.trade_id.hex(), exc)
            return self._reply(request, Status.DENIED, "ledger_refused")
        if request.reply_to:   # where to deliver: stored with the proposal, in its commit
            self.ledger.store.set_endpoint(request.trade_id, request.sender, request.reply_to)
        offer = self.book.granted(request, decision, self._now_ms(), credit_seq=credit.last_seq)
        self.counters["trades_proposed"] += 1
        self._schedule_refresh(offer)
        return self._reply(request, Status.ACCEPTED, energy_wh=decision, blocks=(proposal.raw,))

    def _buyer_credit(self, request: PeerRequest) -> CreditEvidence | str:
        """What the REQUEST's deposit blocks prove (checked once per set of blocks)."""
        key = (request.sender, request.blocks)
        credit = self._credit_checked.get(key)
        if credit is None:
            credit = proven_credit(request.blocks, request.sender, self.ledger.rules.trusted_issuers)
            if len(self._credit_checked) >= CREDIT_CACHE_ENTRIES:
                self._credit_checked.pop(next(iter(self._credit_checked)))
            self._credit_checked[key] = credit
        return credit

    def _owed_micro(self, buyer: bytes) -> int:
        """What ``buyer`` owes us: its confirmed trades not yet delivered."""
        trades = self.ledger.state.trades
        return sum(cost_micro(state.payload.energy_wh, state.payload.price_micro_per_kwh)
                   for state in (trades.get(tid) for tid in self._undelivered)
                   if state is not None and state.payload.buyer == buyer)

    def _answer_confirm(self, request: PeerRequest) -> PeerReply:
        """Store the buyer's agreement to our trade proposal (idempotent)."""
        try:
            agreement, _ = decode_envelope(request.blocks[0], BlockBody)
        except DecodeError:
            return self._reply(request, Status.DENIED, "bad_agreement")
        body = agreement.message
        if body.author != request.sender or body.type is not BlockType.TRADE \
                or body.payload.trade_id != request.trade_id:
            return self._reply(request, Status.DENIED, "bad_agreement")
        problem = self.book.agreement_problem(body.payload.interval_start_s, request.trade_id,
                                              body.seq)
        if problem is not None:
            return self._reply(request, Status.DENIED, problem)
        try:
            self.ledger.accept_agreement(request.blocks[0])
        except (BlockRejected, LedgerError) as exc:
            log.warning("refused agreement %s: %s", request.trade_id.hex(), exc)
            return self._reply(request, Status.DENIED, "bad_agreement")
        trade: TradePayload = body.payload
        self._undelivered.add(trade.trade_id)
        if self.book.confirmed(trade.interval_start_s, trade.trade_id, trade.buyer, trade.energy_wh):
            self.counters["late_agreements"] += 1
        return self._reply(request, Status.DONE)

    # -- 3. settle: measure, deliver, have it co-signed ------------------------------------
    @property
    def _balancing_round(self) -> bool:
        """Whether intervals have a balancing round (ahead of delivery, ``[market] balancing``;
        :mod:`p2pnode.trading.schedule`)."""
        return self.config.market.balancing and self.config.market.mode != "ex_post"

    async def settle_interval(self, start_s: int) -> int:
        """The settle step: deliver the interval's trades (:meth:`settle`), then, with a
        balancing round, offer the surplus measured and left unsold (:meth:`_offer_unsold`)."""
        agreed = await self.settle(start_s)
        if self._balancing_round and not self.failsafe.health.grid_only:
            await self._offer_unsold(start_s)
        return agreed

    async def _offer_unsold(self, start_s: int) -> None:
        """Publish an offer of the interval's measured surplus that no trade took (its unsold
        tokens, less what confirmed trades not yet delivered will take): energy already
        metered, sold in the balancing round and delivered in full."""
        config = self.config
        if not config.constraints.sells:
            return
        self._mint(self._reading(start_s))   # its tokens (none without a surplus)
        trades = self.ledger.state.trades
        owed = sum(state.payload.energy_wh for state in (trades.get(t) for t in self._undelivered)
                   if state is not None and not state.settled
                   and state.payload.interval_start_s == start_s)
        unsold = self.ledger.tokens_wh(start_s) - owed
        if unsold < max(config.detection.enter_wh, 1):
            return
        await self._open_selling(start_s, unsold, balancing=True)
        self.counters["balancing_offers"] += 1

    async def settle(self, start_s: int | None = None) -> int:
        """Deliver our sold trades (of ``start_s`` and before; all when None); returns how many
        deliveries the buyers agreed to.  Two commits however many trades."""
        due = self._due_deliveries(start_s)
        if not due:
            return 0
        with self.ledger.batch():
            proposals = self._propose_deliveries(due)
        sending = [(p, mint) for p, mint in proposals if p is not None]
        replies = await asyncio.gather(*(self._push_delivery(p, mint) for p, mint in sending))
        agreed = 0
        with self.ledger.batch():
            for (proposal, _), reply in zip(sending, replies):
                agreed += self._accept_delivery(proposal, reply)
        return agreed

    def _due_deliveries(self, start_s: int | None) -> list:
        me = self.public
        due = []
        for trade_id in list(self._undelivered):
            state = self.ledger.state.trades.get(trade_id)
            if state is None or state.payload.seller != me:
                self._undelivered.discard(trade_id)
                continue
            interval = state.payload.interval_start_s
            if start_s is not None and interval > start_s:
                continue
            if self._now_ms() < (interval + self.config.interval_s) * 1000:
                continue   # still being delivered
            due.append(state)
        return sorted(due, key=lambda s: s.seq)

    def _propose_deliveries(self, due: list) -> list[tuple[Sealed | None, bytes]]:
        """Our DELIVERY proposal of each due trade (written now, or the one written before)."""
        out, fresh = [], {}
        for state in due:
            if state.settled:
                out.append((state, self.ledger.own_block(state.settlement_seq)))
            else:   # sold ahead of delivery, or of metered energy (ex post, balancing round)
                fresh.setdefault((state.payload.interval_start_s, state.forward), []).append(state)
                out.append((state, None))
        made = {}
        for (interval, forward), states in fresh.items():
            made.update(self._measure_and_propose(interval, states, forward=forward))
        result = []
        for state, block in out:
            block = block or made.get(state.payload.trade_id)
            mint = self._mint_block(state.payload.interval_start_s)
            result.append((block, mint) if block is not None and mint is not None else (None, b""))
            if block is not None and mint is None:
                self.counters["delivery_no_mint"] += 1
        return result

    def _measure_and_propose(self, interval: int, states: list, *, forward: bool
                             ) -> dict[bytes, Sealed]:
        reading = self._reading(interval)
        self._mint(reading, measured_only=True)
        substeps = self._surplus_substeps(interval)
        retail = self.config.tariffs.frame_at((interval % 86400) / 3600).retail_micro_per_kwh
        sold = [SoldTrade(s.payload, self.ledger.own_block(s.seq).message.time_ms) for s in states]
        payloads = deliveries(sold, substeps, interval_start_s=interval,
                              interval_s=self.config.interval_s,
                              minted_wh=self.ledger.tokens_wh(interval), retail_micro_per_kwh=retail,
                              credit_micro=self.ledger.credit_micro,
                              ex_post=not forward)
        made = {}
        for payload in payloads:
            try:
                made[payload.trade_id] = self.ledger.propose_settlement(payload, self._now_ms())
                self._sold_wh[interval] += payload.delivered_wh
            except BlockRejected as exc:
                log.error("cannot propose delivery %s: %s", payload.trade_id.hex(), exc)
                self.counters["delivery_refused"] += 1
        return made

    def _mint_block(self, interval: int) -> bytes | None:
        seq = self._mint_seqs.get(interval)
        return self.ledger.store.get(self.public, seq) if seq is not None else None

    async def _push_delivery(self, proposal: Sealed, mint: bytes) -> PeerReply | None:
        payload = proposal.message.payload
        endpoint = self.ledger.store.endpoint(payload.trade_id)
        if not endpoint:
            self.counters["delivery_no_endpoint"] += 1
            return None
        trade = self.ledger.state.trades[payload.trade_id].payload
        request = self._request(Kind.DELIVER, payload.buyer, payload.trade_id, trade.offer_id,
                                trade.interval_start_s, payload.delivered_wh,
                                payload.price_micro_per_kwh, (proposal.raw, mint))
        reply, _ = await self._exchange(endpoint, request)
        return reply

    def _accept_delivery(self, proposal: Sealed, reply: PeerReply | None) -> int:
        payload = proposal.message.payload
        if reply is None or reply.status is not Status.DONE or len(reply.blocks) != 1:
            self.counters["delivery_pending"] += 1
            if reply is not None and reply.status is Status.DENIED:
                self.counters[f"delivery_denied_{reply.reason}"] += 1
            return 0
        try:
            self.ledger.accept_agreement(reply.blocks[0])
        except (BlockRejected, LedgerError) as exc:
            log.warning("buyer's delivery agreement refused: %s", exc)
            self.counters["delivery_bad_agreement"] += 1
            return 0
        self._undelivered.discard(payload.trade_id)
        self.counters["deliveries_settled"] += 1
        return 1
