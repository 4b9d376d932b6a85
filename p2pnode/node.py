"""The meter node: one per smart meter, embeddable in firmware as ``async with Node(...)``.

::

    async with Node(config, meter, key=key) as node:    # DHT, peer endpoint, ledger open
        await node.run()                                 # trade every interval until cancelled

A trading interval ``[t, t + interval_s)`` is traded in a window right after it ends, when its
meter reading exists (node time, ``e = t + interval_s``):

``e``                 :meth:`open_interval`: read the meter, detect surplus/deficit with
                      hysteresis (FR-01); on surplus mint tokens from the signed reading (FR-02),
                      price them between feed-in and retail tariff (FR-07) and publish a signed
                      offer in the DHT (FR-03)
``e + buy_delay_s``   :meth:`buy`: on deficit look up the price-band keys in parallel (FR-13),
                      rank the sellers (selection over the six criteria with the predictors,
                      FR-04/05) and negotiate in plan order, the next candidate on denial or
                      timeout (SRS 3.2.7); rounds repeat while offers remain and trades succeed
``e + window_s``      :meth:`settle`: the buyer settles each trade with the delivered energy
                      (co-signed SETTLEMENT pair; pending settlements are retried next time)
``e + close``         :meth:`close_interval`: the rest goes to the grid (FR-08), recorded as GRID

A restart loses no trade: :meth:`start` reloads the pending settlements from the ledger
(:mod:`p2pnode.recovery`: bought trades the seller has not co-settled, a settlement proposal
already written is resent as it is) with the seller's endpoint, stored beside the agreement in
the same commit.  A seller that came back on another endpoint is reached once a discovery has
seen its new offer; until then the trade stays in :meth:`unsettled`.  A seller needs nothing
reloaded: it answers a SETTLE from its ledger.

The swarm simulator calls these four steps itself on a shared simulated clock; :meth:`run`
sleeps to the moments above on the node's clock.  Counters (:attr:`counters`) count every
dropped or refused message by reason.

Durability and cost of the trade path
    Every ledger append happens on the event loop, synchronously (no concurrent writer).  What
    one step writes is one transaction (``Ledger.batch``), durable before the step's message
    leaves: the seller's reply to a REQUEST/CONFIRM/SETTLE is sealed only after its commit, the
    buyer sends CONFIRM after its agreement is committed, and :meth:`settle` commits all its
    settlement proposals at once before any SETTLE goes out (and the sellers' agreements at
    once when the replies are in).  A trade costs the seller 3 commits and the buyer 1 plus 2
    per :meth:`settle` call.  With ``ledger_sync="full"`` (the default) each commit is an
    fsync that survives a power loss; ``"normal"`` (simulations of many nodes in one process)
    survives a process kill only (see :mod:`ledger.store`).  The commits stay on the loop:
    the seller's happen inside the peer handler, which the peer endpoint calls synchronously,
    so a thread could take only the buyer's share of the fsyncs.
    Every signature is checked once: each signed message by its receiver, each counterparty
    block once, by the ledger or by the negotiation check whose verified ``Sealed`` the ledger
    reuses; blocks this node signed are never checked again, and a retransmitted request is
    answered from its bytes without a check -- 10 checks per trade.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ledger import (
    SYNC_MODES, BlockBody, BlockRejected, BlockType, CreditVoucher, DecodeError, GridPayload,
    Ledger, LedgerError, LedgerStore, Sealed, SettlementPayload,
    SigningKey, TradePayload, decode_envelope, open_envelope, seal, unseal,
)
from p2pnode.balance import Balance, next_balance
from p2pnode.config import NodeConfig, micro
from p2pnode.dht.faults import FaultPlan
from p2pnode.dht.server import DHTSettings, OfferDHT
from p2pnode.dht.tasks import TaskRegistry
from p2pnode.errors import ConfigError, NodeError
from p2pnode.files import VOUCHER_MAX_BYTES, read_bounded
from p2pnode.identity import load_node_key
from p2pnode.minting import ledger_rules, mint_reading
from p2pnode.meter import Meter, Reading
from p2pnode.negotiation import (
    Kind, PeerReply, PeerRequest, ReplayGuard, Status, check_proposal, check_reply, parse_request,
)
from p2pnode.offers import OfferRecord, OfferRejected, query_keys
from p2pnode.peer import PeerClient, PeerServer
from p2pnode.pricing import dynamic_price
from p2pnode.recovery import pending_purchases
from p2pnode.ranking import (
    Location, MarketContext, SellerHistory, best_offer_per_seller, candidates_from_offers, rank,
)

__all__ = ["Node", "Trade", "IntervalReport", "step_times"]

log = logging.getLogger(__name__)

REPLAY_WINDOW_MS = 120_000
OFFER_REFRESH_DELAY_S = 0.02
GIVE_UP_REASONS = frozenset({"sold_out", "unknown_offer", "closed", "not_selling",
                             "price_below_ask", "trade_id_reused"})


def step_times(config: NodeConfig, start_s: int) -> dict[str, float]:
    """Node time of each step of the interval starting at ``start_s`` (see the module doc)."""
    end = start_s + config.interval_s
    timing = config.timing
    return {"open": end, "buy": end + timing.buy_delay_s, "settle": end + timing.window_s,
            "close": end + (timing.window_s + config.interval_s) / 2}


@functools.cache
def default_predictor():
    """The bundled predictor, loaded once per process (every node of a swarm shares it)."""
    from models import Predictor
    return Predictor.default()


@dataclasses.dataclass
class Trade:
    """A trade this node bought, from agreement to settlement (the buyer's bookkeeping)."""

    payload: TradePayload
    endpoint: str
    agreement_raw: bytes
    decision_ms: float
    messages: int
    delivered_wh: int | None = None   # set once the settlement is co-signed

    @property
    def settled(self) -> bool:
        return self.delivered_wh is not None


@dataclasses.dataclass
class _Selling:
    record: Sealed[OfferRecord] | None
    surplus_wh: int
    available_wh: int
    price_micro_per_kwh: int
    proposed: dict[bytes, int] = dataclasses.field(default_factory=dict)   # trade id -> Wh
    confirmed: dict[bytes, int] = dataclasses.field(default_factory=dict)
    requested_wh: int = 0
    closed: bool = False
    refresh: asyncio.Task | None = None


@dataclasses.dataclass
class _Buying:
    deficit_wh: int
    remaining_wh: int
    trades: list[Trade] = dataclasses.field(default_factory=list)
    excluded: set[bytes] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(frozen=True)
class IntervalReport:
    """What one interval came to for this node (returned by :meth:`Node.close_interval`)."""

    interval_start_s: int
    balance: Balance
    surplus_wh: int
    deficit_wh: int
    sold_wh: int
    bought_wh: int
    grid_import_wh: int
    grid_export_wh: int


class Node:
    """A trading node for one meter.  See the module docstring for the interval's steps.

    ``key``: the node's Ed25519 key (else ``config.key_file`` is loaded); ``clock``: node time in
    unix seconds (the simulator passes an accelerated one); ``predictor``: the quality/duration
    model (default: the bundled one); ``delivery(trade) -> delivered Wh`` measures a bought trade
    (default: as agreed); ``faults`` inject datagram and message faults (tests, simulator);
    ``ledger_sync``: ``"full"`` (a meter: commits survive power loss) or ``"normal"``
    (simulations: commits survive a process kill, not a power loss; see :mod:`ledger.store`).
    """

    def __init__(self, config: NodeConfig, meter: Meter, *, key: SigningKey | None = None,
                 clock: Callable[[], float] = time.time, predictor=None,
                 delivery: Callable[[Trade], int] | None = None,
                 dht_settings: DHTSettings | None = None, faults: FaultPlan | None = None,
                 weather: Callable[[int], tuple[float, float]] | None = None,
                 ledger_sync: str = "full"):
        if ledger_sync not in SYNC_MODES:
            raise ConfigError(
                f"ledger_sync must be one of {sorted(SYNC_MODES)}, got {ledger_sync!r}")
        if key is None:
            if config.key_file is None:
                raise ConfigError("key_file = None: a node needs a key (key_file or key=)")
            key = load_node_key(config)
        self.config, self.meter, self.key, self.clock = config, meter, key, clock
        self.public = key.public
        self.delivery = delivery or (lambda trade: trade.payload.energy_wh)
        self.weather = weather
        self._predictor = predictor
        self.faults = faults
        self.ledger_sync = ledger_sync
        self.dht = OfferDHT(key, settings=dht_settings, clock=clock, faults=faults)
        self.peer_server = PeerServer(self._handle_peer)
        self.client = PeerClient(faults, stream=key.public.hex())
        self.guard = ReplayGuard(REPLAY_WINDOW_MS)
        self.counters: collections.Counter[str] = collections.Counter()
        self.history = SellerHistory()
        self.location = Location.parse(config.location)
        self.tasks = TaskRegistry(f"node {key.public.hex()[:8]}")
        self.ledger: Ledger | None = None
        self.balance = Balance.BALANCED
        self.reports: list[IntervalReport] = []
        self._selling: dict[int, _Selling] = {}
        self._buying: dict[int, _Buying] = {}
        self._readings: dict[int, Reading] = {}
        self._unsettled: dict[bytes, Trade] = {}
        self.bought: dict[bytes, Trade] = {}   # every trade bought since start, by trade id
        self.last_discovery = None             # the latest Discovery: the market as last seen
        self._market_view = (0, 0)   # (my offered Wh, Wh requested from me) last interval sold
        self._started = False
        self._speed = 1.0

    # -- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            raise RuntimeError("the node is already started")
        self._started = True
        self.ledger = Ledger(LedgerStore(self.config.ledger, sync=self.ledger_sync), self.key,
                             ledger_rules(self.config))
        for path in self.config.credit.vouchers:
            self.deposit_file(path)
        for item in pending_purchases(self.ledger):   # a restart: finish what was pending
            self._unsettled[item.payload.trade_id] = Trade(
                item.payload, item.endpoint or "", item.agreement_raw, 0.0, 0)
        if self._unsettled:
            self.counters["settlements_recovered"] += len(self._unsettled)
        net = self.config.network
        try:
            await self.dht.start(net.host, net.dht_port)
            await self.peer_server.start(net.host, net.peer_port)
            await self.client.start()
        except BaseException:
            await self.stop()
            raise
        if net.bootstrap:
            await self.dht.bootstrap(net.bootstrap_addresses())
        if self._predictor is None and self.config.constraints.buys:
            # loaded now, not inside the first buy's trading window
            self._predictor = await asyncio.get_running_loop().run_in_executor(None, default_predictor)

    async def stop(self) -> None:
        await self.tasks.close()
        await self.client.stop()
        await self.peer_server.stop()
        await self.dht.stop()
        if self.ledger is not None:
            self.ledger.store.close()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    @property
    def endpoint(self) -> str:
        """``host:port`` of the peer endpoint, as written into offers."""
        return self.config.network.advertise or f"{self.config.network.host}:{self.peer_server.port}"

    @property
    def predictor(self):
        if self._predictor is None:
            self._predictor = default_predictor()
        return self._predictor

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- credit ------------------------------------------------------------------------------
    def deposit(self, voucher: Sealed[CreditVoucher]) -> None:
        """Pay in credit from a voucher (idempotent: a voucher is deposited once)."""
        if voucher.message.voucher_id in self.ledger.state.vouchers:
            return
        self.ledger.deposit(voucher, self._now_ms())

    def deposit_file(self, path: Path) -> None:
        try:
            voucher = unseal(read_bounded(Path(path), VOUCHER_MAX_BYTES, "voucher"), CreditVoucher)
        except OSError as exc:
            raise ConfigError(f"[credit] vouchers: {path}: cannot read ({exc.strerror})") from exc
        except LedgerError as exc:
            raise ConfigError(f"[credit] vouchers: {path}: not a valid signed voucher: {exc}") from exc
        self.deposit(voucher)

    # -- 1. open: read, detect, mint, price, publish ----------------------------------------
    async def open_interval(self, start_s: int) -> Balance:
        config = self.config
        reading = self.meter.read(start_s, config.interval_s)
        self._readings[start_s] = reading
        net = reading.net_wh
        self.balance = next_balance(self.balance, net, config.detection)
        if self.balance is Balance.SURPLUS and net > 0:
            await self._open_selling(reading)
        elif self.balance is Balance.DEFICIT and net < 0 and config.constraints.buys:
            self._buying[start_s] = _Buying(-net, -net)
        return self.balance

    async def _open_selling(self, reading: Reading) -> None:
        start, config = reading.interval_start_s, self.config
        surplus = reading.net_wh
        if start not in self.ledger.state.minted:
            minted = mint_reading(self.ledger, reading, self.key, self._now_ms())
            if isinstance(minted, str):
                self.counters[f"mint_refused_{minted}"] += 1
        offered = min(self.ledger.tokens_wh(start), max(0, surplus - config.constraints.reserve_wh))
        hour = (start % 86400) / 3600
        supply, demand = self._market_view
        if demand <= 0:   # no market view yet: ask the middle of the range
            supply = demand = 1
        price = dynamic_price(supply, demand, hour, config.tariffs,
                              micro(config.constraints.min_sell_price_per_kwh))
        state = _Selling(None, surplus, offered, price or 0)
        self._selling[start] = state
        if not config.constraints.sells or price is None or offered <= 0:
            state.available_wh = 0
            return
        record = OfferRecord(
            seller=self.public, offer_id=os.urandom(16), seq=1, energy_wh=offered,
            price_micro_per_kwh=price, feeder=config.feeder, interval_start_s=start,
            expires_at_s=start + config.interval_s + int(config.timing.window_s) + 1,
            endpoint=self.endpoint, location=str(self.location) if config.location else None)
        state.record = seal(record, self.key)
        try:
            await self.dht.publish(state.record)
            self.counters["offers_published"] += 1
        except OfferRejected as exc:
            log.warning("offer for %s not published: %s", start, exc)
            self.counters["offers_rejected"] += 1

    # -- 2. buy: discover, rank, negotiate ----------------------------------------------------
    async def buy(self, start_s: int) -> int:
        """Buy what this interval lacks; returns the energy bought now (Wh).

        One parallel discovery per interval (every seller published when the interval
        opened); then rounds of ranking and negotiating over the sellers not yet excluded (sold
        out, unreachable, refused) while the deficit remains and a round made progress.
        """
        state = self._buying.get(start_s)
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
        self.last_discovery = discovery
        records = [r for r in best_offer_per_seller(discovery.offers, self.public, max_price)
                   if r.interval_start_s == start_s]
        bought = 0
        for _ in range(self.config.timing.max_rounds):
            records = [r for r in records if r.seller not in state.excluded]
            if state.remaining_wh <= 0 or not records or self.ledger.credit_micro <= 0:
                break
            plan = await self._rank(start_s, state.remaining_wh, max_price, records)
            by_seller = {r.seller: r for r in records}
            progress, excluded = 0, len(state.excluded)
            for candidate in [item.candidate for item in plan.items] + list(plan.fallbacks):
                if state.remaining_wh <= 0:
                    break
                progress += await self._negotiate(by_seller[candidate.seller], state, started)
            bought += progress
            if progress == 0 and len(state.excluded) == excluded:
                break   # nothing bought and nothing learned: another round would repeat this one
        return bought

    def _max_buy_price(self, start_s: int) -> int:
        retail = self.config.tariffs.frame_at((start_s % 86400) / 3600).retail_micro_per_kwh
        return min(retail, micro(self.config.constraints.max_buy_price_per_kwh))

    async def _rank(self, start_s: int, deficit_wh: int, max_price: int, records: list):
        irradiance, temperature = self.weather(start_s) if self.weather else (0.0, 20.0)
        context = MarketContext(self.location, irradiance, temperature)
        loop = asyncio.get_running_loop()
        seed = int.from_bytes(self.public[:4], "big") ^ start_s

        def work():
            candidates = candidates_from_offers(records, deficit_wh, self.history, context,
                                                self.predictor)
            return rank(deficit_wh, max_price, candidates, self.config.selection, seed)

        return await loop.run_in_executor(None, work)

    async def _negotiate(self, record: OfferRecord, state: _Buying, started: float) -> int:
        """One trade with ``record``'s seller; returns the energy agreed (0 on denial/failure)."""
        limits = self.config.constraints
        affordable = self.ledger.credit_micro * 1000 // max(record.price_micro_per_kwh, 1)
        want = min(state.remaining_wh, record.energy_wh, limits.max_trade_wh, affordable)
        if want <= 0:
            return 0
        request = self._request(Kind.REQUEST, record.seller, os.urandom(16), record.offer_id,
                                record.interval_start_s, want, record.price_micro_per_kwh)
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
            agreement = self.ledger.agree(proposal, self._now_ms(),   # checked: not again
                                          endpoint=record.endpoint)  # for a restart: recovery
        except BlockRejected as exc:
            self.counters["agreement_refused"] += 1
            log.info("not agreeing to %s: %s", proposal.message.payload.trade_id.hex(), exc)
            state.excluded.add(record.seller)
            return 0
        payload: TradePayload = proposal.message.payload
        trade = Trade(payload, record.endpoint, agreement.raw,
                      (time.perf_counter() - started) * 1000, sent)
        state.trades.append(trade)
        state.remaining_wh -= payload.energy_wh
        self._unsettled[payload.trade_id] = trade
        self.bought[payload.trade_id] = trade
        self.history.record_trade(record.seller, trade.decision_ms / 1000)
        self.counters["trades_bought"] += 1
        confirm = self._request(Kind.CONFIRM, record.seller, payload.trade_id, record.offer_id,
                                payload.interval_start_s, payload.energy_wh,
                                payload.price_micro_per_kwh, (agreement.raw,))
        done, sent = await self._exchange(record.endpoint, confirm)
        trade.messages += sent
        if done is None or done.status is not Status.DONE:
            self.counters["unconfirmed"] += 1  # the settlement carries the agreement again
        return payload.energy_wh

    def _request(self, kind: Kind, seller: bytes, trade_id: bytes, offer_id: bytes,
                 interval_start_s: int, energy_wh: int, price: int,
                 blocks: tuple[bytes, ...] = ()) -> Sealed[PeerRequest]:
        return seal(PeerRequest(self.public, seller, kind, trade_id, os.urandom(16),
                                self._now_ms(), offer_id, interval_start_s, energy_wh, price,
                                blocks), self.key)

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

    # -- the seller's side of negotiation ----------------------------------------------------
    def _handle_peer(self, raw: bytes) -> bytes | None:
        """Answer one peer request (sync: one ledger step, no awaits); None drops it."""
        cached = self.guard.replay_of(raw, self._now_ms())   # bytes already checked and answered
        if cached is not None:
            self.counters["retransmissions_answered"] += 1
            return cached
        request = parse_request(raw)
        if isinstance(request, str):
            return self._drop(request)
        message = request.message
        if message.recipient != self.public:
            return self._drop("wrong_recipient")
        admitted = self.guard.admit(request, self._now_ms())
        if isinstance(admitted, bytes):
            self.counters["retransmissions_answered"] += 1
            return admitted
        if isinstance(admitted, str):
            return self._drop(admitted)
        try:
            with self.ledger.batch():   # the step's writes: one commit, before the reply exists
                reply = self._answer(message)
        except Exception:
            self.guard.forget(request)
            raise
        sealed = seal(reply, self.key).raw
        self.guard.remember(request, sealed)
        return sealed

    def _drop(self, reason: str) -> None:
        self.counters[f"peer_dropped_{reason}"] += 1
        return None

    def _reply(self, request: PeerRequest, status: Status, reason: str = "", energy_wh: int = 0,
               blocks: tuple[bytes, ...] = ()) -> PeerReply:
        if status is Status.DENIED:
            self.counters[f"denied_to_peer_{reason}"] += 1
        return PeerReply(self.public, request.sender, request.trade_id, request.nonce, status,
                         reason, energy_wh, blocks)

    def _answer(self, request: PeerRequest) -> PeerReply:
        if request.kind is Kind.REQUEST:
            return self._answer_request(request)
        if request.kind is Kind.CONFIRM:
            return self._answer_confirm(request)
        return self._answer_settle(request)

    def _answer_request(self, request: PeerRequest) -> PeerReply:
        state = self._selling.get(request.interval_start_s)
        if not self.config.constraints.sells:
            return self._reply(request, Status.DENIED, "not_selling")
        if state is None or state.record is None or state.record.message.offer_id != request.offer_id:
            return self._reply(request, Status.DENIED, "unknown_offer")
        state.requested_wh += request.energy_wh
        if state.closed:
            return self._reply(request, Status.DENIED, "closed")
        if request.price_micro_per_kwh < state.price_micro_per_kwh:
            return self._reply(request, Status.DENIED, "price_below_ask")
        if request.trade_id in state.proposed or request.trade_id in self.ledger.state.trades:
            return self._reply(request, Status.DENIED, "trade_id_reused")
        grant = min(request.energy_wh, state.available_wh, self.config.constraints.max_trade_wh,
                    self.ledger.tokens_wh(request.interval_start_s))
        if grant <= 0:
            return self._reply(request, Status.DENIED, "sold_out")
        payload = TradePayload(request.trade_id, self.public, request.sender,
                               request.interval_start_s, grant, request.price_micro_per_kwh,
                               request.offer_id)
        try:
            proposal = self.ledger.propose_trade(payload, self._now_ms())
        except BlockRejected as exc:
            log.warning("cannot propose %s: %s", request.trade_id.hex(), exc)
            return self._reply(request, Status.DENIED, "ledger_refused")
        state.available_wh -= grant
        state.proposed[request.trade_id] = grant
        self.counters["trades_proposed"] += 1
        self._schedule_refresh(request.interval_start_s, state)
        return self._reply(request, Status.ACCEPTED, energy_wh=grant, blocks=(proposal.raw,))

    def _answer_confirm(self, request: PeerRequest) -> PeerReply:
        if not self._store_agreement(request, request.blocks[0]):
            return self._reply(request, Status.DENIED, "bad_agreement")
        return self._reply(request, Status.DONE)

    def _answer_settle(self, request: PeerRequest) -> PeerReply:
        if not self._store_agreement(request, request.blocks[0]):
            return self._reply(request, Status.DENIED, "bad_agreement")
        try:
            proposal, signature_ok = open_envelope(request.blocks[1], BlockBody)
        except DecodeError:
            return self._reply(request, Status.DENIED, "malformed_block")
        body = proposal.message
        if not signature_ok or body.author != request.sender or body.type is not BlockType.SETTLEMENT \
                or body.payload.trade_id != request.trade_id:
            return self._reply(request, Status.DENIED, "not_a_settlement")
        try:
            agreement = self.ledger.agree(proposal, self._now_ms())   # checked above: not again
        except BlockRejected as exc:
            log.warning("cannot agree to settlement %s: %s", request.trade_id.hex(), exc)
            return self._reply(request, Status.DENIED, "ledger_refused")
        self.counters["settlements_agreed"] += 1
        return self._reply(request, Status.DONE, energy_wh=body.payload.delivered_wh,
                           blocks=(agreement.raw,))

    def _store_agreement(self, request: PeerRequest, raw: bytes) -> bool:
        """Store the buyer's agreement to our trade proposal (idempotent).

        The shape is checked here; the signature by the ledger, which skips it when the same
        bytes are already stored (a SETTLE carries the agreement its CONFIRM stored).
        """
        try:
            agreement, _ = decode_envelope(raw, BlockBody)
        except DecodeError:
            return False
        body = agreement.message
        if body.author != request.sender or body.type is not BlockType.TRADE \
                or body.payload.trade_id != request.trade_id:
            return False
        try:
            self.ledger.accept_agreement(raw)
        except (BlockRejected, LedgerError) as exc:
            log.warning("refused agreement %s: %s", request.trade_id.hex(), exc)
            return False
        trade: TradePayload = body.payload
        state = self._selling.get(trade.interval_start_s)
        if state is not None and trade.trade_id not in state.confirmed:
            state.confirmed[trade.trade_id] = trade.energy_wh
            if state.closed:
                self.counters["late_agreements"] += 1
        return True

    def _schedule_refresh(self, start_s: int, state: _Selling) -> None:
        """Republish the offer with what is left (a newer seq; 0 Wh withdraws it), coalesced."""
        if state.refresh is None or state.refresh.done():
            state.refresh = self.tasks.spawn(self._refresh_offer(state), name=f"refresh {start_s}")

    async def _refresh_offer(self, state: _Selling) -> None:
        await asyncio.sleep(OFFER_REFRESH_DELAY_S)
        current = state.record.message
        if current.energy_wh == state.available_wh or current.expires_at_s <= self.clock():
            return
        state.record = seal(dataclasses.replace(current, seq=current.seq + 1,
                                                energy_wh=max(state.available_wh, 0)), self.key)
        try:
            await self.dht.publish(state.record)
            self.counters["offers_updated"] += 1
        except OfferRejected as exc:
            log.info("offer update not published: %s", exc)

    # -- 3. settle ----------------------------------------------------------------------------
    async def settle(self, start_s: int | None = None) -> int:
        """Settle our bought trades (of ``start_s``, plus any still pending); returns how many.

        Two commits however many trades: every settlement proposal in one (durable before any
        SETTLE is sent), every seller's agreement in another once the replies are in.
        """
        due = [t for t in self._unsettled.values()
               if start_s is None or t.payload.interval_start_s <= start_s]
        if not due:
            return 0
        with self.ledger.batch():
            self._follow_sellers(due)
            proposed = [(trade, self._propose_settlement(trade)) for trade in due]
        sending = [(trade, proposal) for trade, proposal in proposed
                   if proposal is not None and trade.endpoint]
        if len(sending) < len(proposed):   # trades agreed before endpoints were stored
            self.counters["settlement_no_endpoint"] += sum(
                1 for trade, proposal in proposed if proposal is not None and not trade.endpoint)
        replies = await asyncio.gather(*(self._exchange(trade.endpoint, self._settle_request(
            trade, proposal)) for trade, proposal in sending))
        with self.ledger.batch():
            accepted = [self._accept_settlement(trade, reply, sent)
                        for (trade, _), (reply, sent) in zip(sending, replies)]
        for (trade, proposal), ok in zip(sending, accepted):
            if ok:   # durable now: the node's own bookkeeping follows the ledger
                self._settled(trade, proposal.message.payload.delivered_wh)
        return sum(accepted)

    def _follow_sellers(self, trades: list[Trade]) -> None:
        """A seller that came back on another endpoint is reached there: its offer in the
        latest discovery (signed by the seller, newer than the trade) names it; stored too."""
        if self.last_discovery is None:
            return
        current = {r.message.seller: r.message.endpoint for r in self.last_discovery.offers}
        for trade in trades:
            endpoint = current.get(trade.payload.seller)
            if endpoint and endpoint != trade.endpoint:
                trade.endpoint = endpoint
                self.ledger.store.set_endpoint(trade.payload.trade_id, trade.payload.seller,
                                               endpoint)
                self.counters["settlement_endpoint_moved"] += 1

    def _propose_settlement(self, trade: Trade) -> Sealed[BlockBody] | None:
        """Append the settlement proposal of ``trade`` with the delivered energy measured.

        A proposal already written (a retry, or pending across a restart) is resent as it
        is: the delivered energy is measured once, and a trade is settled once.
        """
        payload = trade.payload
        state = self.ledger.state.trades.get(payload.trade_id)
        if state is not None and state.settled:
            return self.ledger.own_block(state.settlement_seq)
        delivered = max(0, min(int(self.delivery(trade)), payload.energy_wh))
        settlement = SettlementPayload(payload.trade_id, payload.seller, payload.buyer,
                                       payload.energy_wh, delivered, payload.price_micro_per_kwh)
        try:
            return self.ledger.propose_settlement(settlement, self._now_ms())
        except BlockRejected as exc:
            log.error("cannot propose settlement %s: %s", payload.trade_id.hex(), exc)
            self.counters["settlement_refused"] += 1
            return None

    def _settle_request(self, trade: Trade, proposal: Sealed[BlockBody]) -> Sealed[PeerRequest]:
        payload = trade.payload
        return self._request(Kind.SETTLE, payload.seller, payload.trade_id, payload.offer_id,
                             payload.interval_start_s, payload.energy_wh,
                             payload.price_micro_per_kwh, (trade.agreement_raw, proposal.raw))

    def _accept_settlement(self, trade: Trade, reply: PeerReply | None, sent: int) -> bool:
        """Store the seller's agreement to our settlement proposal from its reply."""
        trade.messages += sent
        if reply is None or reply.status is not Status.DONE or len(reply.blocks) != 1:
            self.counters["settlement_pending"] += 1
            return False
        try:
            self.ledger.accept_agreement(reply.blocks[0])
        except (BlockRejected, LedgerError) as exc:
            log.warning("seller's settlement agreement refused: %s", exc)
            self.counters["settlement_bad_agreement"] += 1
            return False
        return True

    def _settled(self, trade: Trade, delivered_wh: int) -> None:
        trade.delivered_wh = delivered_wh
        self._unsettled.pop(trade.payload.trade_id, None)
        self.history.record_settlement(trade.payload.seller, trade.payload.energy_wh, delivered_wh)
        self.counters["trades_settled"] += 1

    # -- 4. close: the grid takes the rest ----------------------------------------------------
    async def close_interval(self, start_s: int) -> IntervalReport:
        reading = self._readings.pop(start_s, None)
        selling, buying = self._selling.pop(start_s, None), self._buying.pop(start_s, None)
        sold = bought = export = imported = 0
        if selling is not None:
            selling.closed = True
            if selling.refresh is not None:
                selling.refresh.cancel()
            sold = sum(selling.confirmed.values())
            export = max(0, selling.surplus_wh - sold)
            self.counters["unconfirmed_proposals"] += len(selling.proposed) - len(selling.confirmed)
            self._market_view = (selling.available_wh + sum(selling.proposed.values()),
                                 selling.requested_wh)
        elif reading is not None and reading.net_wh > 0:
            export = reading.net_wh
        if buying is not None:
            bought = sum(t.delivered_wh if t.settled else t.payload.energy_wh
                         for t in buying.trades)
            imported = max(0, buying.deficit_wh - bought)
        elif reading is not None and reading.net_wh < 0:
            imported = -reading.net_wh
        if (imported or export) and start_s not in self.ledger.state.grid_intervals:
            frame = self.config.tariffs.frame_at((start_s % 86400) / 3600)
            self.ledger.record_grid(GridPayload(start_s, imported, export,
                                                frame.retail_micro_per_kwh,
                                                self.config.tariffs.feed_in_micro_per_kwh,
                                                "fallback"), self._now_ms())
        report = IntervalReport(start_s, self.balance, max(reading.net_wh, 0) if reading else 0,
                                max(-reading.net_wh, 0) if reading else 0, sold, bought,
                                imported, export)
        self.reports.append(report)
        return report

    # -- the daemon loop ----------------------------------------------------------------------
    async def run(self, *, until_s: float | None = None, speed: float = 1.0) -> None:
        """Trade every interval on the node's clock until cancelled (or ``until_s``).

        ``speed``: node seconds per wall second of the clock (an accelerated replay runs its
        clock ``speed`` times faster than the wall; the waits here shrink to match).
        """
        self._speed = speed
        interval = self.config.interval_s
        while until_s is None or self.clock() < until_s:
            end = (int(self.clock()) // interval + 1) * interval   # the next interval boundary
            start = end - interval
            at = step_times(self.config, start)
            try:
                await self._sleep_until(at["open"])
                await self.open_interval(start)
                await self._sleep_until(at["buy"])
                await self.buy(start)
                await self._sleep_until(at["settle"])
                await self.settle(start)
                await self._sleep_until(at["close"])
                await self.close_interval(start)
            except (NodeError, LedgerError) as exc:
                log.error("interval %s failed: %s", start, exc)
                self.counters["intervals_failed"] += 1
                self._selling.pop(start, None)
                self._buying.pop(start, None)

    async def _sleep_until(self, node_time_s: float) -> None:
        delay = node_time_s - self.clock()
        if delay > 0:
            await asyncio.sleep(delay / self._speed)

    # -- views -------------------------------------------------------------------------------
    def unsettled(self) -> list[Trade]:
        return list(self._unsettled.values())

    def own_offers(self) -> list[OfferRecord]:
        return [state.record.message for state in self._selling.values() if state.record]
