"""The meter node: one per smart meter, embeddable in firmware as ``async with Node(...)``.

::

    async with Node(config, meter, key=key) as node:    # DHT, peer endpoint, ledger open
        await node.run()                                 # trade every interval until cancelled

The node is a shell: the trading decisions are pure cores in :mod:`p2pnode.trading` (the
seller's book and grants, the buyer's asks, delivery allocation and settlement checks, the
schedule of each market mode); the shell wires them to the DHT, the peer endpoint, the ledger,
the meter, the forecaster and the clock.  Its halves are mixins: the buyer's I/O in
:mod:`p2pnode.node_buyer`, the seller's in :mod:`p2pnode.node_seller`, the day-ahead market in
:mod:`p2pnode.node_dayahead`, the peer endpoint in :mod:`p2pnode.node_peer`, track records in
:mod:`p2pnode.node_record`, readings and forecasts in :mod:`p2pnode.node_meter`.

An interval ``[t, t + interval_s)`` goes through six steps (times per mode in
:mod:`p2pnode.trading.schedule`).  In ``real_time`` (the default) it is traded *before* it
starts, on the node's forecast, and delivered during it:

``open``    forecast the interval (:mod:`models.forecast`), detect surplus/deficit with
            hysteresis (FR-01); a seller publishes a signed offer of its forecast surplus
            (FR-03), a buyer a signed bid of its forecast need
``price``   a seller reads the interval's offers and bids and prices its offer from the
            feeder's supply/demand ratio (FR-07, the SDR pool price; ex post: from what it saw
            the interval before), offering the newsvendor quantity of its forecast at that price
``buy``     on deficit: a parallel discovery (FR-13; again while the need is not covered,
            :func:`~p2pnode.trading.schedule.rediscover_at`), ranking over the six criteria
            with the predictors (FR-04/05), negotiation in plan order (SRS 3.2.7); the trade
            is co-signed before delivery
``settle``  after the interval the seller reads its meter, mints its measured surplus (FR-02),
            allocates what it measured in sub-steps to its trades and has each DELIVERY
            settlement co-signed by its buyer (delivered energy, duration, imbalance charge);
            it offers what it measured and did not sell
``rebuy``   the balancing round (``[market] balancing``): a buyer whose metered deficit its
            trades did not cover buys from those offers, energy already metered
``close``   balancing trades delivered; the grid takes the rest (FR-08), recorded as GRID

``ex_post`` trades an interval after it ended on the metered energy (every trade is delivered
in full): the comparison baseline.

Durability: every ledger append happens on the event loop; what one step writes is one
transaction (``Ledger.batch``), durable before the step's message leaves (a reply is sealed after
its commit).  A restart loses no trade: what a seller has not seen co-settled is rebuilt from its
ledger (:func:`p2pnode.recovery.undelivered_sales`) and delivered at the next settle.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import time
from collections.abc import Callable

from ledger import SYNC_MODES, GridPayload, Ledger, LedgerError, LedgerStore
from p2pnode.balance import Balance, next_balance
from p2pnode.config import NodeConfig
from p2pnode.dht.faults import FaultPlan
from p2pnode.dht.server import DHTSettings, OfferDHT
from p2pnode.dht.tasks import TaskRegistry
from p2pnode.errors import ConfigError, NodeError
from p2pnode.failsafe import FailSafe
from p2pnode.identity import load_node_key
from p2pnode.liveness import observe_interval
from p2pnode.minting import ledger_rules
from p2pnode.meter import Meter, Reading
from p2pnode.negotiation import ReplayGuard
from p2pnode.node_buyer import BuyerSide
from p2pnode.node_dayahead import DayAheadSide
from p2pnode.node_meter import MeterSide
from p2pnode.node_peer import PeerEndpointSide
from p2pnode.node_record import TrackRecordSide
from p2pnode.node_seller import SellerSide
from p2pnode.ranking import Location
from p2pnode.reputation import Reputation
from p2pnode.transfer import FeederPaths
from p2pnode.recovery import mint_seqs, own_deposits, undelivered_sales
from p2pnode.trading.buyer import Buying, Purchase, Unconfirmed
from p2pnode.trading.hedging import ErrorScale
from p2pnode.trading.schedule import event_order, events, first_interval, settles_by, step_times
from p2pnode.trading.seller import SellerBook
from p2pnode.transport import make_peer_transport

__all__ = ["Node", "Purchase", "IntervalReport", "step_times"]

log = logging.getLogger(__name__)

REPLAY_WINDOW_MS = 120_000


@functools.cache
def default_predictor():
    """The bundled predictor, loaded once per process (every node of a swarm shares it)."""
    from models import Predictor
    return Predictor.default()


def default_forecaster(config: NodeConfig):
    from models.forecast import NodeForecaster
    return NodeForecaster(config.market.latitude, config.market.longitude, config.interval_s)


@dataclasses.dataclass(frozen=True)
class IntervalReport:
    """What one interval came to for this node (returned by :meth:`Node.close_interval`)."""

    interval_start_s: int
    balance: Balance
    surplus_wh: int          # metered
    deficit_wh: int          # metered
    sold_wh: int             # delivered to buyers
    bought_wh: int           # delivered to us (agreed, while a delivery is not settled)
    grid_import_wh: int
    grid_export_wh: int
    forecast_net_wh: int = 0   # what the node expected when it traded (ex post: metered)


class Node(BuyerSide, SellerSide, DayAheadSide, PeerEndpointSide, TrackRecordSide,
           MeterSide):
    """A trading node for one meter.  See the module docstring for the interval's steps.

    ``key``: the node's Ed25519 key (else ``config.key_file`` is loaded); ``clock``: node time in
    unix seconds (the simulator passes an accelerated one); ``predictor``: the quality/duration
    model (default: the bundled one); ``forecaster``: generation/consumption forecasts for the
    real-time market (default: :class:`models.forecast.NodeForecaster` at the configured place);
    ``faults`` inject datagram and message faults (tests, simulator); ``ledger_sync``:
    ``"full"`` (a meter: commits survive power loss) or ``"normal"`` (simulations).
    """

    def __init__(self, config: NodeConfig, meter: Meter, *, key=None,
                 clock: Callable[[], float] = time.time, predictor=None, forecaster=None,
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
        self.weather, self.faults, self.ledger_sync = weather, faults, ledger_sync
        self._predictor = predictor
        self.forecaster = forecaster if forecaster is not None or config.market.mode == "ex_post" \
            else default_forecaster(config)
        if dht_settings is None:
            dht_settings = DHTSettings(
                max_contacts_per_host=config.network.max_peers_per_host or None)
        dht_settings = dataclasses.replace(dht_settings, admission=dataclasses.replace(  # feeder
            dht_settings.admission, feeder=config.feeder))
        self.dht = OfferDHT(key, settings=dht_settings, clock=clock, faults=faults)
        self.peer_server, self.client = make_peer_transport(config, key, self._handle_peer, faults)
        self.guard = ReplayGuard(REPLAY_WINDOW_MS)
        self.counters: collections.Counter[str] = collections.Counter()
        self.history = Reputation(key.public)   # rebuilt from the ledger on start
        self.feeder_paths = FeederPaths.from_config(config, key.public)   # X3 from topology
        self.location = Location.parse(config.location)
        self.tasks = TaskRegistry(f"node {key.public.hex()[:8]}")
        self.ledger: Ledger | None = None
        self.balance = Balance.BALANCED
        self.reports: list[IntervalReport] = []
        self.book = SellerBook()
        self._buying: dict[int, Buying] = {}
        self._buying_ahead: dict[int, Buying] = {}   # day-ahead needs and purchases
        self._rebuying: dict[int, Buying] = {}       # the balancing round's metered needs
        self._readings: dict[int, Reading] = {}
        self._forecast_net: dict[int, int] = {}
        self._refreshing: dict[bytes, asyncio.Task] = {}   # offer id -> its republishing
        self._undelivered: set[bytes] = set()     # sold, confirmed, delivery not co-signed
        self._mint_seqs: dict[int, int] = {}      # interval -> our MINT block
        self._mint_refused: set[int] = set()      # intervals whose reading minted nothing
        self._observed_s = -1                     # the last reading the forecaster saw
        self.error_scale = ErrorScale()           # recent forecast error: how much to hedge
        self.day_ahead_scale = ErrorScale()       # the same for the day-ahead forecasts
        self._forecast_ahead: dict[int, int] = {}   # interval -> its day-ahead forecast net
        self.bought: dict[bytes, Purchase] = {}   # every trade bought since start, by trade id
        self._unconfirmed: dict[bytes, Unconfirmed] = {}   # CONFIRMs no seller answered yet
        self._sold_wh: collections.Counter[int] = collections.Counter()  # measured deliveries
        self.last_discovery = None                # the latest Discovery: the market as last seen
        self._market_view = (0, 0)   # (supply, demand) Wh of the latest priced interval
        self._deposits: list[tuple[int, bytes]] = []   # (voucher µ, our DEPOSIT block): credit
        self._credit_checked: dict = {}   # (buyer, its deposit blocks) -> what they prove
        self._started = False
        self._speed = 1.0
        self.failsafe = FailSafe(config.timing.failsafe_intervals)   # see p2pnode/failsafe.py

    # -- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            raise RuntimeError("the node is already started")
        self._started = True
        rules = ledger_rules(self.config)   # trusted voucher issuers and meter keys
        if rules.trusted_issuers == frozenset():
            log.warning("[credit] trusted_issuers is empty: no voucher counts as credit (list "
                        "the issuers you trust, e.g. the utility's key)")
        self.ledger = Ledger(LedgerStore(self.config.ledger, sync=self.ledger_sync), self.key,
                             rules)
        self._deposits = own_deposits(self.ledger)
        for path in self.config.credit.vouchers:
            self.deposit_file(path)
        self._undelivered = undelivered_sales(self.ledger)   # a restart: finish deliveries
        self._mint_seqs = mint_seqs(self.ledger)
        self.history = Reputation.from_ledger(self.ledger, self.config.interval_s)   # evidence
        if self._undelivered:
            self.counters["deliveries_recovered"] += len(self._undelivered)
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
        self._seed_error_scales()
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
        """The peer endpoint as written into offers and requests (``host:port``, or a libp2p
        multiaddr)."""
        net = self.config.network
        return self.peer_server.endpoint(net.advertise or f"{net.host}:{self.peer_server.port}")

    @property
    def predictor(self):
        if self._predictor is None:
            self._predictor = default_predictor()
        return self._predictor

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- 1. open: forecast (or read), detect, price, publish -------------------------------
    async def open_interval(self, start_s: int) -> Balance:
        if self._unconfirmed:   # agreements a seller may not hold: send them again
            await self.reconfirm()
        net = self._forecast_net[start_s] = self._expected_net(start_s)
        self.balance = next_balance(self.balance, net, self.config.detection)
        if self.failsafe.health.grid_only:      # fail-safe: the grid takes the whole interval
            return self.balance
        # in the day-ahead market, what is left to trade after the day-ahead position
        residual = net - self.book.sold_ahead_wh(start_s) + self._bought_ahead_wh(start_s)
        surplus = self.balance is Balance.SURPLUS and residual > 0
        if surplus or self._chance_offer(start_s, residual):   # or a surplus is likely enough
            await self._open_selling(start_s, residual)
        elif self.balance is Balance.DEFICIT and residual < 0 and self.config.constraints.buys:
            self._buying[start_s] = Buying(-residual, -residual)
            if self.config.market.mode != "ex_post":   # the demand sellers price from
                await self._bid(start_s, -residual)
        return self.balance

    # -- 4. close: the grid takes the rest ----------------------------------------------------
    async def close_interval(self, start_s: int) -> IntervalReport:
        sold_late = self.book.balancing.get(start_s)
        if sold_late is not None and sold_late.confirmed:   # the balancing round's trades:
            await self.settle(start_s)                      # metered, delivered in full
        reading = self._reading(start_s)
        self._readings.pop(start_s, None)
        for book in (self.book.offers, self.book.ahead, self.book.balancing):   # no republishing
            offer = book.get(start_s)
            task = self._refreshing.pop(offer.record.message.offer_id, None) \
                if offer is not None and offer.record is not None else None
            if task is not None:
                task.cancel()
        offer = self.book.close(start_s)
        purchases = [p for state in (self._buying.pop(start_s, None),
                                     self._buying_ahead.pop(start_s, None),
                                     self._rebuying.pop(start_s, None))
                     if state is not None for p in state.trades]
        sold = self._sold_wh.pop(start_s, 0)
        if offer is not None and self.config.market.mode == "ex_post":   # no price step there
            self._market_view = (offer.available_wh + sum(offer.proposed.values()),
                                 offer.requested_wh)
        if offer is not None:
            self.counters["unconfirmed_proposals"] += len(offer.proposed) - len(offer.confirmed)
        bought = sum(t.received_wh for t in purchases)
        self._mint(reading)   # the interval's surplus as tokens (FR-02), sold or not
        self._mint_refused.discard(start_s)
        surplus, deficit = max(reading.net_wh, 0), max(-reading.net_wh, 0)
        export = max(0, surplus - sold) + max(0, bought - deficit)
        imported = max(0, deficit - bought)
        if (imported or export) and start_s not in self.ledger.state.grid_intervals:
            frame = self.config.tariffs.frame_at((start_s % 86400) / 3600)
            self.ledger.record_grid(GridPayload(start_s, imported, export,
                                                frame.retail_micro_per_kwh,
                                                self.config.tariffs.feed_in_micro_per_kwh,
                                                "fallback"), self._now_ms())
        report = IntervalReport(start_s, self.balance, surplus, deficit, sold, bought, imported,
                                export, self._forecast_net.pop(start_s, reading.net_wh))
        self.reports.append(report)
        return report

    # -- the daemon loop ----------------------------------------------------------------------
    async def run(self, *, until_s: float | None = None, speed: float = 1.0) -> None:
        """Trade every interval on the node's clock until cancelled (or ``until_s``).

        ``speed``: node seconds per wall second of the clock.  The steps of all intervals run
        in time order (in real time an interval opens while the one before is delivered); with
        ``until_s`` only the intervals that close by then are traded.
        """
        self._speed = speed
        interval = self.config.interval_s
        first = first_interval(self.config, self.clock())
        day = first - first % 86400 + 86400
        pending = [e for e in events(self.config, range(first, day, interval))
                   if not (e[1].startswith("day_") and e[0] < self.clock())]   # gate passed
        upcoming = events(self.config, range(day, day + 86400, interval))
        while until_s is None or self.clock() < until_s:
            while not pending or upcoming[0][0] <= pending[0][0]:   # the next day's first
                pending = sorted(pending + upcoming, key=event_order)   # events come earlier
                day += 86400
                upcoming = events(self.config, range(day, day + 86400, interval))
            at, name, start = pending.pop(0)
            if until_s is not None and at >= until_s:
                break
            if until_s is not None and not settles_by(self.config, name, start, until_s):
                continue   # it would be agreed and left undelivered when the run ends
            await self._sleep_until(at)
            try:
                if name == "open":
                    await observe_interval(self, start)   # peers reachable? (the fail-safe)
                await self.step(name, start)
            except (NodeError, LedgerError) as exc:
                log.error("interval %s, %s failed: %s", start, name, exc)
                self.counters["intervals_failed"] += 1
            pending = sorted(pending + self.follow_up(name, start), key=event_order)

    def follow_up(self, name: str, start_s: int) -> list[tuple[float, str, int]]:
        """Steps to add to the schedule after ``step(name, start_s)`` ran: a buy whose need is
        not covered runs again a little later (:meth:`next_discovery_at`), so a buyer whose
        clock is ahead of the sellers' still finds their offers.  Hosts that keep their own
        schedule call it after every step."""
        if name != "buy":
            return []
        again = self.next_discovery_at(start_s)
        return [] if again is None else [(again, "buy", start_s)]

    async def step(self, name: str, start_s: int):
        """Run one step (:data:`~p2pnode.trading.schedule.STEPS`) of the interval (or, for the
        day-ahead steps, of the day) starting at ``start_s``."""
        return await getattr(self, _STEP_METHODS[name])(start_s)

    async def _sleep_until(self, node_time_s: float) -> None:
        delay = node_time_s - self.clock()
        if delay > 0:
            await asyncio.sleep(delay / self._speed)

    # -- views -------------------------------------------------------------------------------
    def unsettled(self) -> list[Purchase]:
        return [p for p in self.bought.values() if not p.settled]

    def own_offers(self) -> list:
        return [offer.record.message for offer in self.book.offers.values() if offer.record]


_STEP_METHODS = {"day_open": "open_day", "day_buy": "buy_day", "open": "open_interval",
                 "price": "price_interval", "buy": "buy", "settle": "settle_interval",
                 "rebuy": "rebuy", "close": "close_interval"}
