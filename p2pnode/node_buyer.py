"""The buyer's half of the node shell: credit, discover, rank, negotiate; agree to deliveries.

The decisions are in :mod:`p2pnode.trading.buyer` and :mod:`p2pnode.trading.settlement`; this
mixin of :class:`p2pnode.node.Node` does their I/O (DHT, peer messages, ledger).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time

from pathlib import Path

from ledger import BlockRejected, CreditVoucher, LedgerError, Sealed, agreed_after, seal, unseal
from p2pnode.config import micro
from p2pnode.errors import ConfigError
from p2pnode.files import VOUCHER_MAX_BYTES, read_bounded
from p2pnode.negotiation import Kind, PeerReply, PeerRequest, Status, check_proposal, check_reply
from p2pnode.offers import BidRecord, OfferRecord, OfferRejected, query_keys
from p2pnode.ranking import (MarketContext, best_offer_per_seller, candidates_from_offers,
                             expected_wh, rank, reliable_records, spread_records)
from p2pnode.trackrecord import Settlement
from p2pnode.trading.buyer import GIVE_UP_REASONS, Buying, Purchase, Unconfirmed, want_wh
from p2pnode.trading.hedging import buyer_quantity_wh
from p2pnode.trading.credit import MAX_CREDIT_BLOCKS
from p2pnode.trading.schedule import CLOCK_SKEW_S, gate_s, rediscover_at
from p2pnode.trading.settlement import check_delivery

__all__ = ["BuyerSide"]

log = logging.getLogger(__name__)


class BuyerSide:
    """Buying: credit (:meth:`deposit`), :meth:`buy` (step 2 of an interval), :meth:`rebuy`
    (the balancing round) and the answer to a seller's DELIVER."""

    async def buy(self, start_s: int) -> int:
        """Buy what this interval lacks; returns the energy bought now (Wh).

        One parallel discovery; then rounds of ranking and negotiating over the sellers not yet
        excluded (sold out, unreachable, refused) while the need remains and a round made
        progress.  A host that keeps its own schedule runs it again at
        :meth:`next_discovery_at` while the need is not covered (clock skew: the sellers may
        not have published yet).
        """
        return await self._buy(start_s, self._buying.get(start_s))

    async def rebuy(self, start_s: int) -> int:
        """The balancing round (step ``rebuy``; :mod:`p2pnode.trading.schedule`): buy what the
        interval's metered deficit lacks after what its trades delivered (a trade not yet
        settled counts as agreed) from the surplus sellers measured and did not sell.  That
        energy is metered: it is bought as it is, without hedging or expecting a shortfall.
        Returns the energy bought."""
        config = self.config
        if not self._balancing_round or not config.constraints.buys \
                or self.failsafe.health.grid_only:
            return 0
        reading = self._reading(start_s)
        covered = sum(p.received_wh
                      for state in (self._buying.get(start_s), self._buying_ahead.get(start_s))
                      if state is not None for p in state.trades)
        need = -reading.net_wh - covered
        if need < max(config.detection.enter_wh, 1):
            return 0
        state = self._rebuying[start_s] = Buying(need, need, measured=True)
        self.counters["balancing_needs"] += 1
        bought = await self._buy(start_s, state)
        self.counters["balancing_bought_wh"] += bought
        return bought

    async def _bid(self, start_s: int, need_wh: int) -> None:
        """Publish what we forecast to lack for the interval (a signed bid: the demand the
        sellers price the interval from, :meth:`price_interval`)."""
        bid = BidRecord(seller=self.public, offer_id=os.urandom(16), seq=1, energy_wh=need_wh,
                        price_micro_per_kwh=self._max_buy_price(start_s),
                        feeder=self.config.feeder, interval_start_s=start_s,
                        expires_at_s=int(gate_s(self.config, start_s)) + 1,
                        endpoint=self.endpoint)
        try:
            await self.dht.publish(seal(bid, self.key))
            self.counters["bids_published"] += 1
        except OfferRejected as exc:
            log.info("bid for %s not published: %s", start_s, exc)
            self.counters["bids_rejected"] += 1

    def next_discovery_at(self, start_s: int) -> float | None:
        """Node time at which to run :meth:`buy` of the interval again, or None: its need is
        covered, or no discovery is left (:func:`~p2pnode.trading.schedule.rediscover_at`)."""
        state = self._buying.get(start_s)
        if state is None or state.remaining_wh <= 0 or self.ledger.credit_micro <= 0 \
                or self.failsafe.health.grid_only:
            return None
        return rediscover_at(self.config, start_s, state.discoveries, self.clock(),
                             found_offers=state.found_offers, found_new=state.found_new)

    async def _buy(self, start_s: int, state: Buying | None) -> int:
        if state is None:
            return 0
        max_price = self._max_buy_price(start_s)
        floor = self.config.tariffs.feed_in_micro_per_kwh   # no seller asks less than the grid pays
        if state.remaining_wh <= 0 or max_price < floor or self.ledger.credit_micro <= 0:
            return 0
        started = time.perf_counter()
        discovery = await self.dht.find_offers(
            query_keys(self.config.feeder, start_s, max_price, floor))
        self.counters["discoveries"] += 1
        state.discoveries += 1
        if state.discoveries > 1:
            self.counters["rediscoveries"] += 1
        self.last_discovery = discovery
        if state.discoveries == 1 and not state.measured:   # the feeder's supply and demand
            # as seen: the first ask of this node's next offer, were it to sell (a chance offer
            # judges its price by it)
            self._market_view = (
                sum(r.message.energy_wh for r in discovery.offers
                    if r.message.interval_start_s == start_s),
                sum(r.message.energy_wh for r in discovery.bids
                    if r.message.interval_start_s == start_s))
        records = [r for r in best_offer_per_seller(discovery.offers, self.public, max_price)
                   if r.interval_start_s == start_s]
        # records of the sellers this interval's looks had not found before (a look again
        # finds mostly the same sellers, whose records the first look refreshed)
        unseen = {r.seller: r.endpoint for r in records if r.seller not in state.offered_wh}
        state.found(records)
        await self.refresh_records(unseen)
        records = [r for r in records if not self.history.penalised(r.seller, self.clock())]
        passed_over: list[OfferRecord] = []
        informed = self._informed and not state.measured   # metered energy arrives in full
        if informed:   # the quality criterion weighs: pass over sellers that under-deliver,
            kept = [r for r in reliable_records(records, self.history)   # and offers sold as
                    if expected_wh(r, self.history) > 0]                 # far as they arrive
            passed_over = [r for r in records if r not in kept]   # while the others can sell
            records = kept
        if records and not state.measured:   # how much to buy on the forecast, at these
            # prices (trading.hedging)
            retail = self.config.tariffs.frame_at((start_s % 86400) / 3600).retail_micro_per_kwh
            state.hedge(buyer_quantity_wh(state.deficit_wh, self.error_scale.value,
                                          min(r.price_micro_per_kwh for r in records), retail,
                                          floor))
        bought, capped, spread = 0, True, informed
        for _ in range(self.config.timing.max_rounds):
            records = [r for r in records if r.seller not in state.excluded]
            if not records and passed_over:   # the reliable sellers sold out or refused: the
                # passed-over ones next (what they fail to deliver the grid supplies, as it
                # would all of it without them; unbought, their surplus is exported)
                records, passed_over, spread = passed_over, [], False
                self.counters["passed_over_bought_from"] += 1
                continue
            if state.remaining_wh <= 0 or not records or self.ledger.credit_micro <= 0:
                break
            capped = capped and len(records) > 1   # a lone seller: no alternative to cap for
            ranked = spread_records(records, self.history, state.remaining_wh,
                                    self.public + start_s.to_bytes(8, "big")
                                    + state.discoveries.to_bytes(4, "big")) \
                if spread else records   # the first round: sellers drawn by expected energy
            plan = await self._rank(start_s, state.remaining_wh, max_price, ranked, capped)
            by_seller = {r.seller: r for r in records}
            progress, excluded = 0, len(state.excluded)
            for candidate in [item.candidate for item in plan.items] + list(plan.fallbacks):
                if state.remaining_wh <= 0:
                    break
                progress += await self._negotiate(by_seller[candidate.seller], state, started,
                                                  capped)
            bought += progress
            if spread and len(ranked) < len(records):   # the others in the next round
                spread = False
                continue
            spread = False
            if progress == 0 and len(state.excluded) == excluded:
                if capped:   # the reputation caps held the rest back: the others cannot supply
                    capped = False
                    continue
                if passed_over and state.remaining_wh > 0:   # the reliable ones cannot supply
                    records = []
                    continue
                break   # nothing bought and nothing learned: another round would repeat this one
        return bought

    @property
    def _informed(self) -> bool:
        """Whether this buyer weighs transaction quality (C5 > 0): then it buys from a seller
        at most the share of its offer that the seller's verified record says arrives, passes
        over sellers far below the others (:func:`~p2pnode.ranking.reliable_records`) and
        first ranks sellers drawn in proportion to their expected energy
        (:func:`~p2pnode.ranking.spread_records`)."""
        return self.config.selection.weights.transaction_quality > 0

    def _max_buy_price(self, start_s: int) -> int:
        retail = self.config.tariffs.frame_at((start_s % 86400) / 3600).retail_micro_per_kwh
        return min(retail, micro(self.config.constraints.max_buy_price_per_kwh))

    async def _rank(self, start_s: int, deficit_wh: int, max_price: int, records: list,
                    capped: bool = True):
        irradiance, temperature = self.weather(start_s) if self.weather else (0.0, 20.0)
        context = MarketContext(self.location, irradiance, temperature, self.feeder_paths)
        seed = int.from_bytes(self.public[:4], "big") ^ start_s

        def work():
            candidates = candidates_from_offers(records, deficit_wh, self.history, context,
                                                self.predictor, capped=capped,
                                                expect=self._informed)
            return rank(deficit_wh, max_price, candidates, self.config.selection, seed)

        return await asyncio.get_running_loop().run_in_executor(None, work)

    async def _negotiate(self, record: OfferRecord, state: Buying, started: float,
                         capped: bool = False) -> int:
        """One trade with ``record``'s seller; returns the energy agreed (0 on denial/failure).

        ``capped``: buy at most the seller's reputation share of the need
        (:meth:`~p2pnode.reputation.Reputation.share_cap`); :meth:`_buy` caps while other
        sellers can supply the rest."""
        offered = min(record.energy_wh, self._seller_limit_wh(record.seller, state)) \
            if capped else record.energy_wh
        if self._informed and not state.measured:   # no more than its record says arrives
            offered = min(offered, expected_wh(record, self.history))
        want = want_wh(state.remaining_wh, offered, self.config.constraints.max_trade_wh,
                       self.ledger.credit_micro, record.price_micro_per_kwh)
        if want <= 0:
            return 0
        request = self._request(Kind.REQUEST, record.seller, os.urandom(16), record.offer_id,
                                record.interval_start_s, want, record.price_micro_per_kwh,
                                self.credit_evidence())
        reply, sent = await self._exchange(record.endpoint, request)
        if reply is None:
            self.counters["no_reply"] += 1
            state.excluded.add(record.seller)
            return 0
        if reply.status is not Status.ACCEPTED or len(reply.blocks) != 1:
            reason = reply.reason or "denied"
            self.counters[f"denied_{reason}"] += 1
            if reason in GIVE_UP_REASONS:
                state.excluded.add(record.seller)
            return 0
        proposal = check_proposal(reply.blocks[0], request.message, reply.energy_wh)
        if isinstance(proposal, str):
            self.counters[f"dropped_{proposal}"] += 1
            state.excluded.add(record.seller)
            return 0
        try:
            agreement = self.ledger.agree(proposal, self._now_ms(), endpoint=record.endpoint)
        except BlockRejected as exc:
            self.counters["agreement_refused"] += 1
            log.info("not agreeing to %s: %s", proposal.message.payload.trade_id.hex(), exc)
            state.excluded.add(record.seller)
            return 0
        payload = proposal.message.payload
        purchase = Purchase(payload, record.endpoint, agreement.raw,
                            (time.perf_counter() - started) * 1000, sent)
        state.bought(purchase)
        self.bought[payload.trade_id] = purchase
        self.history.record_trade(record.seller)
        self.counters["trades_bought"] += 1
        confirm = self._request(Kind.CONFIRM, record.seller, payload.trade_id, record.offer_id,
                                payload.interval_start_s, payload.energy_wh,
                                payload.price_micro_per_kwh, (agreement.raw,))
        done, sent = await self._exchange(record.endpoint, confirm)
        purchase.messages += sent
        if done is None or done.status is not Status.DONE:
            self.counters["unconfirmed"] += 1
            self._unconfirmed[payload.trade_id] = Unconfirmed(record.endpoint, record.offer_id)
        return payload.energy_wh

    async def reconfirm(self) -> int:
        """Send our agreements whose CONFIRM got no DONE again (a fresh request, the same
        agreement block; the seller stores it idempotently, late or not, and delivers what it
        holds at its next settle).  Until then our credit for the trade stays escrowed, so an
        agreement is not given up after one lost message (:class:`~p2pnode.trading.buyer.
        Unconfirmed`: counted ``reconfirmed`` or, refused or never answered, ``unconfirmed_given_up``
        and logged).  Returns how many the sellers now hold."""
        held = 0
        for trade_id, pending in list(self._unconfirmed.items()):
            purchase = self.bought.get(trade_id)
            if purchase is None or purchase.settled:   # delivered meanwhile: the seller had it
                del self._unconfirmed[trade_id]
                continue
            payload = purchase.payload
            confirm = self._request(Kind.CONFIRM, payload.seller, trade_id, pending.offer_id,
                                    payload.interval_start_s, payload.energy_wh,
                                    payload.price_micro_per_kwh, (purchase.agreement_raw,))
            reply, sent = await self._exchange(pending.endpoint, confirm)
            purchase.messages += sent
            outcome = pending.answered(None if reply is None else reply.status is Status.DONE)
            if outcome == "retry":
                continue
            del self._unconfirmed[trade_id]
            self.counters[outcome] += 1
            held += outcome == "reconfirmed"
            if outcome == "unconfirmed_given_up":
                log.warning("trade %s: the seller never took our agreement (%s); its credit "
                            "stays escrowed", trade_id.hex(), reply.reason if reply else "no reply")
        return held

    def _seller_limit_wh(self, seller: bytes, state: Buying) -> int:
        """What ``seller`` may still supply of this interval's need (its reputation's share)."""
        cap = math.ceil(self.history.share_cap(seller) * state.deficit_wh)
        return cap - sum(p.payload.energy_wh for p in state.trades if p.payload.seller == seller)

    def deposit(self, voucher: Sealed[CreditVoucher]) -> None:
        """Pay in credit from a voucher (idempotent: a voucher is deposited once)."""
        if voucher.message.voucher_id in self.ledger.state.vouchers:
            return
        block = self.ledger.deposit(voucher, self._now_ms())
        self._deposits.append((voucher.message.amount_micro, block.raw))

    def deposit_file(self, path: Path) -> None:
        try:
            voucher = unseal(read_bounded(Path(path), VOUCHER_MAX_BYTES, "voucher"), CreditVoucher)
        except OSError as exc:
            raise ConfigError(f"[credit] vouchers: {path}: cannot read ({exc.strerror})") from exc
        except LedgerError as exc:
            raise ConfigError(
                f"[credit] vouchers: {path}: not a valid signed voucher: {exc}") from exc
        trusted = self.config.credit.issuer_keys()
        if trusted is not None and voucher.message.issuer not in trusted:
            raise ConfigError(f"[credit] vouchers: {path}: issuer {voucher.message.issuer.hex()} "
                              f"is not in [credit] trusted_issuers")
        self.deposit(voucher)

    def credit_evidence(self) -> tuple[bytes, ...]:
        """Our DEPOSIT blocks with the largest vouchers: the credit a REQUEST shows a seller
        (:mod:`p2pnode.trading.credit`)."""
        ranked = sorted(self._deposits, key=lambda d: d[0], reverse=True)
        return tuple(raw for _, raw in ranked[:MAX_CREDIT_BLOCKS])

    def _request(self, kind: Kind, recipient: bytes, trade_id: bytes, offer_id: bytes,
                 interval_start_s: int, energy_wh: int, price: int,
                 blocks: tuple[bytes, ...] = ()) -> Sealed[PeerRequest]:
        return seal(PeerRequest(self.public, recipient, kind, trade_id, os.urandom(16),
                                self._now_ms(), offer_id, interval_start_s, energy_wh, price,
                                blocks, self.endpoint), self.key)

    async def _exchange(self, endpoint: str, request: Sealed[PeerRequest]
                        ) -> tuple[PeerReply | None, int]:
        """Send ``request`` (the same bytes on every attempt) until a valid reply comes."""
        timing = self.config.timing
        for attempt in range(1, timing.attempts + 1):
            self.counters["messages_sent"] += 1
            raw = await self.client.send(endpoint, request.raw, timing.request_timeout_s)
            if raw is None:
                continue
            reply = check_reply(raw, request.message)
            if isinstance(reply, str):
                self.counters[f"reply_dropped_{reply}"] += 1
                continue
            return reply.message, attempt
        return None, timing.attempts

    # -- a seller's DELIVER ------------------------------------------------------------------
    def _answer_deliver(self, request: PeerRequest) -> PeerReply:
        """Agree to the seller's measured delivery of one of our trades (idempotent)."""
        state = self.ledger.state.trades.get(request.trade_id)
        trade = state.payload if state is not None and state.payload.buyer == self.public \
            and state.payload.seller == request.sender else None
        retail = self.config.tariffs.frame_at(
            ((trade.interval_start_s if trade else 0) % 86400) / 3600).retail_micro_per_kwh
        proposal = check_delivery(request.blocks[0], request.blocks[1], trade,
                                  retail_micro_per_kwh=retail)
        if isinstance(proposal, str):
            return self._reply(request, Status.DENIED, proposal)
        ends_s = trade.interval_start_s + self.config.interval_s - CLOCK_SKEW_S   # a seller's
        if self._now_ms() < ends_s * 1000 \
                and proposal.message.payload.delivered_wh < trade.energy_wh:   # clock may lead
            return self._reply(request, Status.DENIED, "interval_not_over")
        try:
            agreement = self.ledger.agree(proposal, self._now_ms())
        except (BlockRejected, LedgerError) as exc:
            log.warning("cannot agree to delivery %s: %s", request.trade_id.hex(), exc)
            return self._reply(request, Status.DENIED, "ledger_refused")
        self._delivered(trade, proposal.message.payload)
        return self._reply(request, Status.DONE, energy_wh=proposal.message.payload.delivered_wh,
                           blocks=(agreement.raw,))

    def _delivered(self, trade, delivery) -> None:
        purchase = self.bought.get(trade.trade_id)
        if purchase is not None and purchase.settled:
            return
        if purchase is not None:
            purchase.delivered_wh = delivery.delivered_wh
            purchase.duration_ms = delivery.duration_ms
            purchase.imbalance_micro = delivery.imbalance_micro
        agreement = self.ledger.own_block(self.ledger.state.trades[trade.trade_id].seq)
        spot = agreed_after(trade.interval_start_s, self.config.interval_s,
                            agreement.message.time_ms)
        self.history.add(Settlement.of(delivery, self._now_ms(), cosigned=True, spot=spot))
        self.counters["trades_settled"] += 1
