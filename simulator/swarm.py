"""The swarm runner: real :class:`~p2pnode.node.Node` s trading a scenario's days on loopback.

Every house of the profiles gets a real node: its own Ed25519 key, SQLite ledger, UDP socket in
the offer DHT and HTTP peer endpoint, all on 127.0.0.1 with ports chosen by the OS.  The nodes
are spread over ``scenario.processes`` OS processes (one asyncio loop each; with one process
everything runs in this one).  A coordinator walks the simulated clock through each interval's
steps -- open (read, mint, publish), buy (discover, select, negotiate), settle, close (grid) --
and every process runs the step on all its nodes (at most :data:`STEP_CONCURRENCY` at a time)
before the next step starts, so every node sees the same simulated time (:class:`VirtualClock`).  ``scenario.acceleration`` caps the
pace: an interval never takes less than ``interval_s / acceleration`` wall seconds.  As the
daemon's loop does (:meth:`Node.run`), a node's follow-ups run too: a buyer whose need is not
covered looks for offers again a little later (:class:`Agenda`).  With ``[faults]
clock_skew_share`` some nodes' clocks are off (:class:`SkewedClock`): each runs its steps when
its own clock reads their time, so a buyer ahead of the sellers looks before they published.

The ledgers are written with ``ledger_sync="normal"``: SQLite WAL without an fsync per commit
survives the death of a process but not a power cut, which a simulation does not need to survive;
a meter's node keeps the default ("full").

The meters measure at the grid connection, after self-consumption and the house battery: a
house's reading is its net surplus or deficit of the interval (whole Wh).  Credit comes from one
issuer key per run (a voucher per house, deposited before trading).  Datagram faults of the
scenario apply to the DHT and to negotiation messages alike.  Churn and malicious houses
(``[faults] churn_share``, ``malicious_share``) follow the seeded plan of
:mod:`simulator.faults`: a churned node is stopped for its outages and restarted on its key,
ledger and ports (see :class:`SwarmWorker`); a malicious house runs an
:class:`~simulator.attack.Attacker` instead of a node and has no ledger.  With ``[faults]
meter_keys`` every house's meter signs its readings and its node mints only from them; a lying
house (``lying_share``) inflates its readings (:mod:`simulator.mint_audit`), and at the end the
feeder's cross-check of minted tokens runs over every interval (``SwarmRun.mint_check``).

At the end each process reads the trades back from its nodes' ledgers (only co-signed, settled
trades count) and the coordinator audits every database together.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import heapq
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ledger import (
    BlockBody, BlockType, CreditVoucher, LedgerRules, LedgerStore, agreed_after, audit,
    decode_envelope, open_envelope, seal,
)
from ledger.rules import READING
from p2pnode.config import MeterConfig
from p2pnode.dht.faults import FaultPlan
from p2pnode.dht.server import DHTSettings
from p2pnode.errors import NodeError
from p2pnode.offers import OfferRecord
from p2pnode.meter import ProfileMeter, SigningMeter
from p2pnode.mint_check import MemberMint
from p2pnode.node import Node, default_predictor
from p2pnode.trading.schedule import STEPS, events
from simulator.attack import FORGED_PREFIX, Attacker, Prices
from simulator.errors import SimulatorError
from simulator.faults import FaultSchedule, fault_schedule
from simulator.mint_audit import HouseReport, LyingMeter, meter_key, summarise
from simulator.optimum import max_local_match_wh
from simulator.nodes import (
    fault_plan, house_key, issuer_key, node_config, node_tariffs,
)
from simulator.scenario import Scenario
from simulator.strategic import strategic_node, strategic_roles

__all__ = ["SkewedClock", "SwarmRun", "VirtualClock", "node_tariffs", "run_swarm", "STEPS"]

CREDIT_MICRO = 200_000_000            # each house's voucher: 200 currency units
SWARM_DHT = DHTSettings(ksize=10, rpc_timeout_s=0.5, rpc_attempts=2, lookup_timeout_s=4.0,
                        publish_timeout_s=5.0,
                        max_contacts_per_host=None)   # every node shares 127.0.0.1
STEP_CONCURRENCY = 48
"""Nodes of one process that run a step at the same moment.  All of a process's nodes share one
event loop, which also answers every DHT and peer request addressed to them; started all at
once, a few hundred nodes' lookups and signatures delay those answers past the RPC time-outs
(measured at 1000 meters: discoveries found 2 of ~240 offers).  The rest wait their turn, as
real meters would be spread over the trading window."""


class VirtualClock:
    """Node time in unix seconds, set by the coordinator (it does not run by itself)."""

    def __init__(self, now_s: float = 0.0):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


class SkewedClock:
    """A node's clock: the swarm's virtual clock plus this node's ``offset_s`` (clock skew)."""

    def __init__(self, base: VirtualClock, offset_s: float = 0.0):
        self.base, self.offset_s = base, offset_s

    def __call__(self) -> float:
        return self.base() + self.offset_s


@dataclasses.dataclass
class SwarmRun:
    """What the runner collected: the trades, what the nodes counted, and the audit."""

    trades: list[dict]
    counters: dict[str, int]
    ledger_paths: list[Path]
    audit_problems: list[str]
    double_settlements: int
    wall_s: float
    processes: int
    step_wall_s: dict[str, float]
    attackers: tuple[str, ...] = ()     # the malicious houses' public keys (hex)
    reachable_optimum_wh: float | None = None
    """With churn or attackers: the most energy the honest nodes that are up could match
    (attackers' and offline intervals' surplus and deficit left out); None without."""
    optimum_wh: float = 0.0   # the perfect-foresight optimum of locally matched energy
    forecast_skill: dict[str, float] = dataclasses.field(default_factory=dict)
    forecast_wh: np.ndarray | None = None   # [2, interval]: the nodes' forecast surplus, deficit
    mint_check: dict[str, int] | None = None
    lying: tuple[int, ...] = ()         # houses whose node lied about its meter
    """With lying houses or meter keys: the feeder's cross-check (simulator.mint_audit)."""
    roles: dict[int, tuple[str, float]] = dataclasses.field(default_factory=dict)
    """Strategic and unreliable sellers: house -> (role, parameter) (:mod:`simulator.strategic`)."""
    skewed: dict[int, float] = dataclasses.field(default_factory=dict)
    """Houses whose node clock is off: house -> seconds ahead (``[faults] clock_skew_share``)."""


# -- one process's share of the swarm ---------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    scenario: Scenario
    houses: tuple[int, ...]
    generation_wh: np.ndarray    # [len(houses), intervals], whole Wh: what the meters read at the
    consumption_wh: np.ndarray   # grid connection (after self-consumption and the battery): the
    # net surplus as generation, the net deficit as consumption (measured: nodes forecast this
    # net split better than the gross registers with a battery's charge in the consumption)
    start_s: int                 # first interval start, unix seconds
    run_dir: Path
    schedule: FaultSchedule | None = None   # churn and attackers (None: nobody)
    substeps: tuple[np.ndarray, np.ndarray] | None = None   # [house, interval, sub-step] Wh
    history: tuple[int, np.ndarray, np.ndarray] | None = None   # first start, past surplus,
    # past deficit [house, interval]: what each node's forecaster saw before the run
    roles: dict[int, tuple[str, float]] | None = None   # strategic sellers (simulator.strategic)


class SwarmWorker:
    """The nodes of one process and the steps it runs on them.

    Churn: a house whose outage starts at an interval is stopped (DHT socket and peer endpoint
    closed) before that interval's open step and takes part in none of its steps; when the
    outage ends a new :class:`Node` starts with the same key, ledger file and meter, on the same
    ports if they are free (a meter that rebooted), and joins the DHT again.  The new node
    rebuilds its pending settlements from its ledger (:mod:`p2pnode.recovery`); bought trades
    that still never settle are counted (``unsettled_after_restart``).  A malicious house runs an
    :class:`~simulator.attack.Attacker` instead of a node; it attacks during the buy step.
    """

    def __init__(self, spec: WorkerSpec, predictor=None):
        self.spec = spec
        self.clock = VirtualClock(spec.start_s - 86400)   # before any step (day-ahead: the day before)
        self.predictor = predictor
        self.schedule = spec.schedule or FaultSchedule(0, {}, {})
        self.online: dict[int, Node] = {}          # house -> its running node
        self.offline: dict[int, Node] = {}         # house -> the node that went down
        self.attackers: dict[int, Attacker] = {}
        self.entries: list[tuple[str, int]] = []
        self.retired: collections.Counter[str] = collections.Counter()
        self.memory: dict[bytes, object] = {}      # trades bought by any incarnation
        self.lost: set[bytes] = set()              # unsettled when their buyer went down
        self.ports: dict[int, tuple[int, int]] = {}   # house -> (DHT, peer) ports before it went down
        self.clocks = {h: SkewedClock(self.clock, self.schedule.clock_offset_s(h))
                       for h in spec.houses if self.schedule.clock_offset_s(h)}   # skewed nodes
        self.churned_until = -1                    # the last interval whose churn was applied
        self.running: dict[int, asyncio.Future] = {}   # launched steps by token (see launch)

    @property
    def nodes(self) -> list[Node]:
        return list(self.online.values())

    def _node(self, house: int, network=None) -> Node:
        spec, scenario = self.spec, self.spec.scenario
        row = spec.houses.index(house)
        config = node_config(scenario, house, spec.run_dir)
        if network is not None:
            config = dataclasses.replace(config, network=network)
        substeps = None if spec.substeps is None else (spec.substeps[0][row], spec.substeps[1][row])
        meter = ProfileMeter(spec.start_s, scenario.interval_s, spec.generation_wh[row],
                             spec.consumption_wh[row], substeps_wh=substeps)
        if scenario.faults.meter_keys:     # the meter signs; the node trusts its meter's key
            key = meter_key(scenario.seed, house)
            meter = SigningMeter(meter, key)
            config = dataclasses.replace(config, meter=MeterConfig(
                kind="external", trusted_keys=(key.public.hex(),)))
        if house in self.schedule.lying:   # it inflates the reading and trusts no meter key
            meter = LyingMeter(meter)
            config = dataclasses.replace(config, meter=None)
        meter, forecaster = strategic_node(meter, self._forecaster(row),
                                           (spec.roles or {}).get(house))
        return Node(config, meter, key=house_key(scenario.seed, house),
                    clock=self.clocks.get(house, self.clock), predictor=self.predictor, forecaster=forecaster,
                    dht_settings=SWARM_DHT, faults=fault_plan(scenario), ledger_sync="normal")

    def _forecaster(self, row: int):
        """The house's forecaster, having seen its readings before the run (and, for a node
        restarted after churn, the run's readings before now: a rebooted meter keeps them)."""
        spec = self.spec
        if spec.scenario.market.mode == "ex_post":
            return None
        from models.forecast import DEFAULT_UTC_OFFSET_S, NodeForecaster
        forecaster = NodeForecaster(interval_s=spec.scenario.interval_s,
                                    utc_offset_s=DEFAULT_UTC_OFFSET_S)
        interval = spec.scenario.interval_s
        if spec.history is not None:
            first, surplus, deficit = spec.history
            for i in range(surplus.shape[1]):
                forecaster.observe(first + i * interval, int(surplus[row, i]),
                                   int(deficit[row, i]))
        done = int(max(0, (self.clock() - spec.start_s) // interval - 1))
        for i in range(min(done, spec.generation_wh.shape[1])):
            forecaster.observe(spec.start_s + i * interval, int(spec.generation_wh[row, i]),
                               int(spec.consumption_wh[row, i]))
        return forecaster

    def _deposit(self, node: Node) -> None:
        """The house's voucher (idempotent: a restarted node deposits nothing twice)."""
        issuer = issuer_key(self.spec.scenario.seed)
        voucher = CreditVoucher(issuer.public, node.public,
                                hashlib.sha256(b"voucher" + node.public).digest()[:16],
                                CREDIT_MICRO)
        node.deposit(seal(voucher, issuer))

    async def start(self, bootstrap: tuple[str, int] | None) -> tuple[str, int]:
        """Start every node and join the DHT through ``bootstrap`` (or this process's first)."""
        spec, scenario = self.spec, self.spec.scenario
        if self.predictor is None:
            self.predictor = default_predictor()
        (spec.run_dir / "ledgers").mkdir(parents=True, exist_ok=True)
        tariffs = node_tariffs(scenario)
        prices = Prices(tariffs.feed_in_micro_per_kwh,
                        max(f.retail_micro_per_kwh for f in tariffs.frames))
        for house in spec.houses:
            kind = self.schedule.malicious.get(house)
            if kind is not None:
                attacker = Attacker(kind, house_key(scenario.seed, house), clock=self.clock,
                                    feeder=scenario.feeder, interval_s=scenario.interval_s,
                                    prices=prices, dht_settings=SWARM_DHT,
                                    seed=scenario.seed * 100_003 + house)
                await attacker.start()
                self.attackers[house] = attacker
                continue
            node = self._node(house)
            await node.start()
            self._deposit(node)
            self.online[house] = node
        dhts = [n.dht for n in self.online.values()] + [a.dht for a in self.attackers.values()]
        entry = bootstrap or dhts[0].address
        joiners = dhts if bootstrap else dhts[1:]
        for chunk in range(0, len(joiners), 32):
            await asyncio.gather(*(d.bootstrap([entry]) for d in joiners[chunk:chunk + 32]))
        return dhts[0].address

    async def rejoin(self, addresses: Sequence[tuple[str, int]]) -> None:
        """Refresh routing tables once everybody is up (nodes that joined early saw few peers)."""
        self.entries = list(addresses)
        dhts = [n.dht for n in self.online.values()] + [a.dht for a in self.attackers.values()]
        await asyncio.gather(*(d.bootstrap(list(addresses)) for d in dhts))

    async def set_time(self, now_s: float) -> None:
        """Advance this process's clock before any process runs the step (see the coordinator)."""
        self.clock.now_s = now_s

    async def step(self, name: str, start_s: int, now_s: float, offset_s: float = 0.0,
                   houses: Sequence[int] | None = None) -> tuple[int, list]:
        """Run one step on the online nodes whose clock is ``offset_s`` off (``now_s`` is the
        feeder's time: theirs reads ``now_s + offset_s``), or on ``houses`` (their follow-ups).

        Returns the energy bought (Wh; "buy" and "day_buy") and the follow-ups the nodes asked
        for (:meth:`Node.follow_up`: a buyer whose need is not covered looks again, as the
        daemon's loop does) as ``(feeder time, step, start, house)``."""
        self.clock.now_s = now_s
        if name == "open" and offset_s == 0 and houses is None:   # skewed nodes never churn
            await self._churn((start_s - self.spec.start_s) // self.spec.scenario.interval_s)
        if houses is None:
            nodes = {h: n for h, n in self.online.items()
                     if self.schedule.clock_offset_s(h) == offset_s}
        else:
            nodes = {h: self.online[h] for h in houses if h in self.online}
        gate = asyncio.Semaphore(STEP_CONCURRENCY)

        async def one(node: Node):
            async with gate:
                return await node.step(name, start_s)

        attacks = [a.attack(start_s) for a in self.attackers.values()] \
            if name == "buy" and houses is None and offset_s == 0 else []
        results = await asyncio.gather(*(one(node) for node in nodes.values()), *attacks)
        follow_ups = [(at - self.schedule.clock_offset_s(h), again, start, h)
                      for h, node in nodes.items() if h in self.online
                      for at, again, start in node.follow_up(name, start_s)]
        bought = sum(results[:len(nodes)]) if name in ("buy", "day_buy") else 0
        return bought, follow_ups

    async def launch(self, token: int, name: str, start_s: int, now_s: float,
                     offset_s: float = 0.0, houses: Sequence[int] | None = None) -> None:
        """Start :meth:`step` and return at once; :meth:`collect` awaits its result."""
        self.running[token] = asyncio.ensure_future(
            self.step(name, start_s, now_s, offset_s, houses))

    async def collect(self, tokens: Sequence[int]) -> list[tuple[int, list]]:
        return [await self.running.pop(token) for token in tokens]

    # -- churn -----------------------------------------------------------------------------
    async def _churn(self, interval: int) -> None:
        """Take down and bring back the houses of ``interval`` (once, at the unskewed nodes'
        open: skewed nodes never churn, :func:`simulator.faults.fault_schedule`)."""
        if interval <= self.churned_until:
            return
        self.churned_until = interval
        for house in self.schedule.going_down(interval):
            if house in self.online:
                await self._go_down(house)
        back = [h for h in self.schedule.coming_back(interval) if h in self.offline]
        await asyncio.gather(*(self._come_back(h) for h in back))

    async def _go_down(self, house: int) -> None:
        node = self.online.pop(house)
        self.ports[house] = (node.dht.port, node.peer_server.port)
        self.lost.update(t.payload.trade_id for t in node.unsettled())
        self._retire(node)
        await node.stop()
        self.offline[house] = node
        self.retired["churn_outages"] += 1

    def _retire(self, node: Node) -> None:
        self.retired.update(node.counters)
        self.retired.update({f"dht_{k}": v for k, v in node.dht.counters().items()})
        self.memory.update(node.bought)

    async def _come_back(self, house: int) -> None:
        old = self.offline.pop(house)
        dht_port, peer_port = self.ports[house]
        node = self._node(house, dataclasses.replace(old.config.network, dht_port=dht_port,
                                                     peer_port=peer_port))
        try:
            await node.start()
        except NodeError:   # a port was taken meanwhile: the OS picks new ones
            self.retired["restarts_on_new_ports"] += 1
            node = self._node(house)
            await node.start()
        self._deposit(node)
        await node.dht.bootstrap(self.entries or [n.dht.address for n in self.online.values()])
        self.online[house] = node
        self.retired["node_restarts"] += 1

    # -- the end ---------------------------------------------------------------------------
    async def finish(self) -> dict:
        """Settle what is pending, stop the nodes, read the trades back from their ledgers."""
        await asyncio.gather(*(node.settle() for node in self.online.values()))
        counters: collections.Counter[str] = collections.Counter(self.retired)
        memory = dict(self.memory)
        for node in self.online.values():
            counters.update(node.counters)
            counters.update({f"dht_{k}": v for k, v in node.dht.counters().items()})
            counters["unsettled_trades"] += len(node.unsettled())
            memory.update(node.bought)
        for attacker in self.attackers.values():
            counters.update(attacker.counters)
            counters.update({f"attacker_dht_{k}": v for k, v in attacker.dht.counters().items()})
        counters["forged_records_held"] = sum(forged_held(n) for n in self.online.values())
        errors = forecast_errors(list(self.online.values()))
        forecasts = forecasts_by_interval(list(self.online.values()), self.spec.start_s,
                                          self.spec.scenario.interval_s)
        mint_reports = self._mint_reports()
        for node in self.online.values():
            await node.stop()
        for attacker in self.attackers.values():
            await attacker.stop()
        seed = self.spec.scenario.seed
        house_of = {house_key(seed, h).public: h for h in range(self.spec.scenario.meters)}
        trades = []
        for node in self.online.values():
            trades += settled_trades(LedgerStore(node.config.ledger), node.public, memory,
                                     house_of, self.spec)
        settled = {bytes.fromhex(row["trade_id"]) for row in trades}
        counters["unsettled_after_restart"] = len(self.lost - settled)
        return {"trades": trades, "counters": dict(counters), "forecast_errors": errors,
                "forecasts": forecasts,
                "ledgers": [str(n.config.ledger) for n in self.online.values()],
                "attackers": [house_key(seed, h).public.hex() for h in self.attackers],
                "mint_reports": mint_reports}

    def _mint_reports(self) -> list[HouseReport]:
        """Every up interval of every node as its feeder report would say (the reading it traded
        with, the tokens its chain minted) next to the truth (empty unless meters matter)."""
        spec, scenario = self.spec, self.spec.scenario
        if not (scenario.faults.lying_share or scenario.faults.meter_keys):
            return []
        step = scenario.interval_s
        rows = []
        for house, node in self.online.items():
            row = spec.houses.index(house)
            for index in range(len(spec.generation_wh[row])):
                if self.schedule.is_offline(house, index):
                    continue
                start = spec.start_s + index * step
                reading = node.meter.read(start, step)
                mint = MemberMint(node.public, start, step, reading.generation_wh,
                                  reading.consumption_wh, node.ledger.state.minted_wh.get(start, 0),
                                  reading.meter_key, reading.meter_sig)
                rows.append(HouseReport(house, mint, int(spec.generation_wh[row][index]),
                                        int(spec.consumption_wh[row][index])))
        return rows


def forecasts_by_interval(nodes: Sequence[Node], first_s: int, interval_s: int
                          ) -> dict[int, list[int]]:
    """Interval index -> [forecast surplus, forecast deficit] (Wh) summed over the nodes: what
    they expected when they traded."""
    out: dict[int, list[int]] = {}
    for node in nodes:
        for report in node.reports:
            sums = out.setdefault((report.interval_start_s - first_s) // interval_s, [0, 0])
            sums[0] += max(report.forecast_net_wh, 0)
            sums[1] += max(-report.forecast_net_wh, 0)
    return out


def forecast_errors(nodes: Sequence[Node]) -> tuple[float, float]:
    """Summed absolute error of the nodes' net forecasts and of persistence at the same lead
    (the last reading a node had when it traded), over their intervals."""
    model = persistence = 0.0
    for node in nodes:
        lead = node.config.market.lead_intervals + 1
        actual = [r.surplus_wh - r.deficit_wh for r in node.reports]
        for i in range(lead, len(actual)):
            model += abs(node.reports[i].forecast_net_wh - actual[i])
            persistence += abs(actual[i - lead] - actual[i])
    return model, persistence


def forged_held(node: Node) -> int:
    """Records an attacker forged (offer id :data:`~simulator.attack.FORGED_PREFIX`) that the
    node holds in its DHT store or found in its latest discovery: must be 0."""
    found = [s.message for s in node.last_discovery.offers] if node.last_discovery else []
    for _, raws in node.dht.storage:
        found += [decode_envelope(raw, OfferRecord)[0].message for raw in raws]
    return sum(1 for record in found if record.offer_id.startswith(FORGED_PREFIX))


def settled_trades(store: LedgerStore, buyer: bytes, memory: dict, house_of: dict,
                   spec: WorkerSpec) -> list[dict]:
    """The co-signed, settled trades that ``buyer`` bought, read from its ledger, one row each:
    its agreements to its sellers' DELIVERY settlements (and, in ledgers of the ex-post market
    before them, its own settlement proposals the seller countersigned)."""
    rows, intervals, agreed_ms = [], {}, {}
    try:
        for raw in store.chain(buyer):
            body = open_envelope(raw, BlockBody)[0].message
            if body.type is BlockType.TRADE:
                intervals[body.payload.trade_id] = body.payload.interval_start_s
                agreed_ms[body.payload.trade_id] = body.time_ms
            if body.type is not BlockType.SETTLEMENT or body.payload.buyer != buyer:
                continue
            settlement = body.payload
            if body.is_proposal and not any(
                    open_envelope(r, BlockBody)[0].message.author == settlement.seller
                    for r in store.linked_to(buyer, body.seq)):
                continue  # the seller never agreed: not settled (yet)
            trade = memory.get(settlement.trade_id)
            start = intervals[settlement.trade_id]
            rows.append({
                "interval": (start - spec.start_s) // spec.scenario.interval_s,
                "seller": house_of.get(settlement.seller, -1), "buyer": house_of[buyer],
                "energy_wh": settlement.agreed_wh, "delivered_wh": settlement.delivered_wh,
                "price_per_kwh": settlement.price_micro_per_kwh / 1e6,
                "decision_ms": trade.decision_ms if trade else float("nan"),
                "messages": trade.messages if trade else 0,
                "trade_id": settlement.trade_id.hex(),
                "duration_s": getattr(settlement, "duration_ms", 0) / 1000,
                "imbalance_micro": getattr(settlement, "imbalance_micro", 0),
                # agreed once the interval was metered: ex post, or in the balancing round
                "after_delivery": agreed_after(start, spec.scenario.interval_s,
                                               agreed_ms[settlement.trade_id]),
            })
    finally:
        store.close()
    return rows


# -- drivers: the same worker in this process or in another ----------------------------------

class LocalDriver:
    """Runs a :class:`SwarmWorker` on the coordinator's own event loop."""

    def __init__(self, spec: WorkerSpec, predictor=None):
        self.worker = SwarmWorker(spec, predictor)

    async def call(self, command: str, *args):
        return await getattr(self.worker, command)(*args)

    def close(self) -> None:
        pass


class ProcessDriver:
    """Runs a :class:`SwarmWorker` in its own OS process, one command at a time over a pipe."""

    def __init__(self, spec: WorkerSpec):
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, spec), daemon=True,
                                       name=f"swarm-{spec.houses[0]}")
        self.process.start()
        child.close()

    async def call(self, command: str, *args):
        self.conn.send((command, args))
        status, value = await asyncio.get_running_loop().run_in_executor(None, self._receive)
        if status == "error":
            raise SimulatorError(f"swarm process {self.process.name} failed in {command}:\n{value}")
        return value

    def _receive(self):
        try:
            return self.conn.recv()
        except EOFError:
            return "error", f"the process exited (exit code {self.process.exitcode})"

    def close(self) -> None:
        self.conn.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def _worker_main(conn, spec: WorkerSpec) -> None:
    import traceback

    async def main():
        worker = SwarmWorker(spec)
        loop = asyncio.get_running_loop()
        while True:
            try:
                command, args = await loop.run_in_executor(None, conn.recv)
            except EOFError:
                return
            try:
                conn.send(("ok", await getattr(worker, command)(*args)))
            except Exception:
                conn.send(("error", traceback.format_exc()))
                return
            if command == "finish":
                return

    asyncio.run(main())


# -- the coordinator ---------------------------------------------------------------------------

class Agenda:
    """The coordinator's steps in feeder time: every step of every interval once per clock
    group (the nodes whose clock is off by the same ``offset_s`` run a step when *their* clock
    reads its time, at feeder time ``time - offset_s``; group 0 always runs, with the
    attackers and churn), and the follow-ups the nodes ask for (a buyer looking again), run on
    just those houses.  Pure: no I/O."""

    def __init__(self, config, starts, schedule: FaultSchedule | None):
        self.offsets = {0.0, *(schedule.skewed.values() if schedule else ())}
        self.skewed = dict(schedule.skewed) if schedule else {}
        self.queue = [(at - offset, STEPS.index(step), int(start), offset, ())
                      for at, step, start in events(config, starts) for offset in self.offsets]
        heapq.heapify(self.queue)
        self.first_s = self.queue[0][0] if self.queue else 0.0

    def __bool__(self) -> bool:
        return bool(self.queue)

    def pop(self) -> tuple[float, str, int, float, tuple[int, ...] | None]:
        """The next (feeder time, step, start, clock offset, houses or None: the group)."""
        at, index, start, offset, houses = heapq.heappop(self.queue)
        return at, STEPS[index], start, offset, houses or None

    def follow_up(self, follow_ups: Sequence[tuple[float, str, int, int]]) -> None:
        """Add the nodes' follow-ups ``(feeder time, step, start, house)``, one entry per
        moment and step."""
        grouped: dict[tuple, set[int]] = collections.defaultdict(set)
        for at, step, start, house in follow_ups:
            grouped[(at, STEPS.index(step), start)].add(house)
        for (at, index, start), houses in grouped.items():
            heapq.heappush(self.queue, (at, index, start, 0.0, tuple(sorted(houses))))

    def groups(self, offset: float, targets: tuple | None) -> frozenset[float]:
        """The clock groups an entry runs nodes of."""
        if targets is None:
            return frozenset({offset})
        return frozenset(self.skewed.get(h, 0.0) for h in targets)

    def concerns(self, houses: Sequence[int], offset: float, targets: tuple | None) -> bool:
        """Whether a process holding ``houses`` takes part in an entry."""
        if targets is not None:
            return not set(targets).isdisjoint(houses)
        return offset == 0 or any(self.skewed.get(h) == offset for h in houses)


async def _walk(agenda: Agenda, drivers: list, specs: list[WorkerSpec], acceleration: float,
                step_wall: dict[str, float], bar) -> None:
    """Run the agenda's entries in feeder-time order, paced by ``acceleration``.

    An entry with an unskewed node (clock group 0, or a follow-up of one) is a barrier: every
    step still running ends first, and it ends before time moves on -- so without skewed clocks
    every step of every node ends before the next starts.  A skewed group's entry only waits
    for its own group's running step and then runs while time moves on (a few nodes each,
    dozens of groups: one after the other, their waits on lookups and time-outs would add up
    to minutes per interval), as the nodes' own clocks would let it."""
    running: list[tuple[frozenset, str, dict[int, int]]] = []   # (groups, step, driver -> token)
    tokens, bought_wh, began, last = iter(range(1 << 62)), 0, time.perf_counter(), agenda.first_s

    async def collect(entries) -> None:
        nonlocal bought_wh
        for groups, step, held in entries:
            running.remove((groups, step, held))
            for index, token in held.items():
                (bought, follow_ups), = await drivers[index].call("collect", [token])
                agenda.follow_up(follow_ups)
                bought_wh += bought

    while agenda:
        at, step, start, offset, houses = agenda.pop()
        now = last = max(at, last)      # a follow-up learned late runs at once
        await asyncio.sleep(max(0.0, began + (now - agenda.first_s) / acceleration
                                - time.perf_counter()))
        t0 = time.perf_counter()
        groups = agenda.groups(offset, houses)
        barrier = 0.0 in groups
        await collect([e for e in list(running) if barrier or e[0] & groups])
        if len(drivers) > 1:   # every clock first: a process that starts the step
            # early must not reach one still at the previous step's time ("future")
            await asyncio.gather(*(d.call("set_time", now) for d in drivers))
        concerned = [i for i, spec in enumerate(specs)
                     if agenda.concerns(spec.houses, offset, houses)]
        held = {i: next(tokens) for i in concerned}
        await asyncio.gather(*(drivers[i].call("launch", held[i], step, start, now, offset,
                                               houses) for i in concerned))
        running.append((groups, step, held))
        if barrier:
            await collect([running[-1]])
        step_wall[step] += time.perf_counter() - t0
        if step == "close" and houses is None and offset == 0:
            bar.update(1)
            bar.set_postfix_str(f"local {bought_wh / 1000:.1f} kWh")
    await collect(list(running))


def unix_seconds(interval_start: np.ndarray) -> np.ndarray:
    """The profiles' naive interval starts as unix seconds (read as UTC, so hours match)."""
    return interval_start.astype("datetime64[s]").astype(np.int64)


def run_swarm(scenario: Scenario, profiles, run_dir: Path, *, processes: int | None = None,
              progress: bool = True, predictor=None, history=None) -> SwarmRun:
    """Trade every interval of ``profiles`` with one real node per house; see the module doc.

    ``history``: profiles of the days before (same houses), which the nodes' forecasters have
    seen when the run starts (real-time market); without it they start with no past.
    """
    processes = processes or scenario.processes
    if profiles.houses != scenario.meters or profiles.interval_s != scenario.interval_s:
        raise SimulatorError("the profiles were not built for this scenario "
                             f"({profiles.houses} houses of {profiles.interval_s} s intervals)")
    run_dir = Path(run_dir)
    # a new run starts from empty ledgers: the chains of an earlier run in the same directory
    # would end later than this run's first blocks (their time may not go back)
    shutil.rmtree(run_dir / "ledgers", ignore_errors=True)
    starts = unix_seconds(profiles.interval_start)
    schedule = fault_schedule(scenario.seed, scenario.meters, len(starts), scenario.faults)
    if scenario.faults.meter_keys:   # for `p2pnode ledger verify --trusted-meter-file`
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "meter_keys.txt").write_text("".join(
            meter_key(scenario.seed, h).public.hex() + "\n" for h in range(scenario.meters)))
    surplus = np.floor(profiles.surplus_wh).astype(np.int64)
    deficit = np.floor(profiles.deficit_wh).astype(np.int64)
    generation, consumption = surplus, deficit   # the meters measure at the connection
    steps = delivery_substeps(scenario, generation, consumption, starts)
    roles = strategic_roles(scenario.seed, surplus, scenario.households)
    past = None
    if history is not None:
        past = (int(unix_seconds(history.interval_start)[0]),
                np.floor(history.surplus_wh).astype(np.int64),
                np.floor(history.deficit_wh).astype(np.int64))
    specs = [WorkerSpec(scenario, tuple(int(h) for h in chunk), generation[chunk],
                        consumption[chunk],
                        int(starts[0]), run_dir, schedule,
                        substeps=(steps[0][chunk], steps[1][chunk]),
                        history=past and (past[0], past[1][chunk], past[2][chunk]),
                        roles=roles)
             for chunk in np.array_split(np.arange(scenario.meters), processes)]
    swarm = asyncio.run(_coordinate(scenario, specs, starts, processes, progress, predictor))
    swarm.roles, swarm.skewed = roles, dict(schedule.skewed)
    swarm.optimum_wh = float(max_local_match_wh(surplus, deficit).sum())
    if schedule.malicious or schedule.offline:
        up = schedule.taking_part(scenario.meters)
        swarm.reachable_optimum_wh = float(max_local_match_wh(surplus * up, deficit * up).sum())
    return swarm


def delivery_substeps(scenario: Scenario, generation: np.ndarray, consumption: np.ndarray,
                      starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The meters' one-minute readings, derived from the interval data with seeded variability
    (:mod:`simulator.substeps`: clouds over PV, appliance spikes in the load), summing to it."""
    from models.forecast import DEFAULT_LATITUDE, DEFAULT_LONGITUDE, DEFAULT_UTC_OFFSET_S
    from simulator.substeps import clear_sky_substeps, substep_readings

    per_interval = scenario.interval_s // node_config(scenario, 0, Path(".")).market.substep_s
    clear_sky = clear_sky_substeps(starts - DEFAULT_UTC_OFFSET_S, scenario.interval_s,
                                   per_interval, DEFAULT_LATITUDE, DEFAULT_LONGITUDE)
    rng = np.random.default_rng([scenario.seed, 0x5E7])
    return substep_readings(generation, consumption, rng, per_interval,
                            interval_s=scenario.interval_s, clear_sky_wh_m2=clear_sky)


async def _coordinate(scenario: Scenario, specs: list[WorkerSpec], starts: np.ndarray,
                      processes: int, progress: bool, predictor) -> SwarmRun:
    from tqdm import tqdm

    wall0 = time.perf_counter()
    drivers = [LocalDriver(specs[0], predictor)] if processes == 1 else \
        [ProcessDriver(spec) for spec in specs]
    step_wall = dict.fromkeys(STEPS, 0.0)
    try:
        first = await drivers[0].call("start", None)
        entries = [first] + list(await asyncio.gather(*(d.call("start", first)
                                                         for d in drivers[1:])))
        await asyncio.gather(*(d.call("rejoin", entries) for d in drivers))
        config = node_config(scenario, 0, specs[0].run_dir)
        bar = tqdm(total=len(starts), unit="interval", disable=not progress,
                   desc=f"{scenario.meters} nodes", dynamic_ncols=True)
        await _walk(Agenda(config, starts, specs[0].schedule), drivers, specs,
                    scenario.acceleration, step_wall, bar)
        bar.close()
        results = await asyncio.gather(*(d.call("finish") for d in drivers))
    finally:
        for driver in drivers:
            driver.close()
    trades = [row for result in results for row in result["trades"]]
    counters: collections.Counter[str] = collections.Counter()
    for result in results:
        counters.update(result["counters"])
    ledgers = [Path(p) for result in results for p in result["ledgers"]]
    meters = frozenset(meter_key(scenario.seed, h).public for h in range(scenario.meters)) \
        if scenario.faults.meter_keys else frozenset()
    problems, doubles = audit_ledgers(ledgers, trusted_meters=meters)
    attackers = tuple(key for result in results for key in result["attackers"])
    model = sum(r["forecast_errors"][0] for r in results)
    persistence = sum(r["forecast_errors"][1] for r in results)
    skill = {"forecast_skill_next_interval": round(1 - model / persistence, 4)} \
        if persistence and scenario.market.mode != "ex_post" else {}
    forecast_wh = None
    if scenario.market.mode != "ex_post":
        forecast_wh = np.zeros((2, len(starts)))
        for result in results:
            for index, (surplus, deficit) in result["forecasts"].items():
                if 0 <= index < len(starts):
                    forecast_wh[:, index] += (surplus, deficit)
    reports = [row for result in results for row in result["mint_reports"]]
    mint_check = None
    if reports:
        mint_check = summarise(reports, specs[0].schedule.lying, meters)
        if meters:
            mint_check["untrusted_mints"] = untrusted_mints(ledgers, meters)
    return SwarmRun(trades, dict(counters), ledgers, problems, doubles,
                    time.perf_counter() - wall0, processes, step_wall, attackers,
                    forecast_skill=skill, forecast_wh=forecast_wh, mint_check=mint_check,
                    lying=tuple(sorted(specs[0].schedule.lying)))


def _rows(paths: Sequence[Path]) -> list:
    rows = []
    for path in paths:
        store = LedgerStore(path)
        try:
            rows += list(store.raw_blocks())
        finally:
            store.close()
    return rows


def untrusted_mints(paths: Sequence[Path], meters: frozenset[bytes]) -> int:
    """MINT blocks whose reading no meter of ``meters`` signed (``ledger verify
    --trusted-meter``): a lying node's self-signed mints."""
    rules = LedgerRules(trusted_meters=meters, require_trusted_meter=True)
    return sum(1 for p in audit(_rows(paths), rules).problems if p.rule == READING)


def audit_ledgers(paths: Sequence[Path], max_problems: int = 50,
                  trusted_meters: frozenset[bytes] = frozenset()) -> tuple[list[str], int]:
    """Audit every ledger together (mints from ``trusted_meters``' signed readings are valid);
    also count trades settled more than once (distinct SETTLEMENT proposals for one trade id,
    anywhere)."""
    rows = _rows(paths)
    report = audit(rows, LedgerRules(trusted_meters=trusted_meters))
    settlements: dict[bytes, set[bytes]] = collections.defaultdict(set)
    for _, _, block_hash, raw in rows:
        body = open_envelope(raw, BlockBody)[0].message
        if body.type is BlockType.SETTLEMENT and body.is_proposal:
            settlements[body.payload.trade_id].add(block_hash)
    doubles = sum(len(hashes) - 1 for hashes in settlements.values())
    return [str(p) for p in report.problems[:max_problems]], doubles
