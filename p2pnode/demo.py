"""The ledger demo behind ``make run`` until the swarm simulator lands.

A street of households, each with its own Ed25519 key and its own ledger database, trades one
day in 15-minute intervals.  Every interval each house mints tokens for its surplus from a
reading signed by its key; houses short of energy buy from houses with surplus (the largest
surplus first, at a price between the feed-in and the retail tariff); every trade is a real
co-signed pair of half-blocks exchanged as bytes between the two databases, followed by a
co-signed settlement; the rest comes from the grid and is recorded.  At the end every database is
audited, separately and all together.

The generation and load curves here are simple documented shapes (a clear-sky PV bell scaled per
house and a two-peak household load), NOT measured data: the real profiles, the DHT, negotiation
over the network and the optimizer arrive with the simulator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import random
from pathlib import Path

from ledger import (
    CreditVoucher, GridPayload, Ledger, LedgerStore, MeterReading, SettlementPayload, SigningKey,
    TradePayload, audit, seal,
)

INTERVAL_S = 900
DAY_START_S = 1_782_864_000  # 2026-07-01 00:00 UTC
FEED_IN_MICRO = 80_000  # 0.08 per kWh
RETAIL_MICRO = 300_000  # 0.30 per kWh


@dataclasses.dataclass
class House:
    name: str
    key: SigningKey
    ledger: Ledger
    pv_kwp: float
    load_kwh_per_day: float


@dataclasses.dataclass
class DemoReport:
    houses: int = 0
    intervals: int = 0
    trades: int = 0
    local_wh: int = 0
    grid_import_wh: int = 0
    grid_export_wh: int = 0
    surplus_wh: int = 0
    deficit_wh: int = 0
    matchable_wh: int = 0  # sum over intervals of min(surplus, deficit): the most trading can do
    blocks: int = 0
    problems: list = dataclasses.field(default_factory=list)
    databases: list = dataclasses.field(default_factory=list)


def pv_wh(kwp: float, hour: float) -> int:
    """Clear-sky bell between 05:00 and 21:00, peak 0.8 kW per kWp at 13:00."""
    if not 5 <= hour <= 21:
        return 0
    return int(800 * kwp * math.sin(math.pi * (hour - 5) / 16) ** 2 * INTERVAL_S / 3600)


def load_wh(kwh_per_day: float, hour: float, rng: random.Random) -> int:
    """Base load plus morning and evening peaks, with per-interval noise."""
    shape = 0.6 + 1.2 * math.exp(-((hour - 7.5) / 1.2) ** 2) + 2.0 * math.exp(-((hour - 19) / 2) ** 2)
    mean_w = kwh_per_day * 1000 / 24 * shape / 1.4
    return max(0, int(mean_w * rng.uniform(0.7, 1.3) * INTERVAL_S / 3600))


def make_street(run_dir: Path, houses: int, seed: int) -> tuple[list[House], SigningKey]:
    rng = random.Random(seed)
    bank = SigningKey.from_seed(hashlib.sha256(f"bank/{seed}".encode()).digest())
    street = []
    for i in range(houses):
        key = SigningKey.from_seed(hashlib.sha256(f"house/{seed}/{i}".encode()).digest())
        ledger = Ledger(LedgerStore(run_dir / f"house-{i:03d}.db"), key)
        pv = rng.choice([0.0, 0.0, 4.0, 6.0, 8.0, 10.0]) * rng.uniform(0.8, 1.2)
        street.append(House(f"house-{i:03d}", key, ledger, pv, rng.uniform(6, 14)))
        voucher = CreditVoucher(bank.public, key.public, os.urandom(16), 20_000_000)
        ledger.deposit(seal(voucher, bank), 0)
    return street, bank


def trade(seller: House, buyer: House, interval: int, energy_wh: int, price: int, now_ms: int,
          rng: random.Random) -> int:
    """One co-signed trade and its settlement; returns the energy delivered."""
    payload = TradePayload(os.urandom(16), seller.key.public, buyer.key.public, interval,
                           energy_wh, price, b"")
    proposal = seller.ledger.propose_trade(payload, now_ms)
    agreement = buyer.ledger.agree(proposal.raw, now_ms)  # bytes cross between the databases
    seller.ledger.accept_agreement(agreement.raw)
    delivered = energy_wh if rng.random() > 0.1 else int(energy_wh * rng.uniform(0.8, 1.0))
    settlement = SettlementPayload(payload.trade_id, payload.seller, payload.buyer, energy_wh,
                                   delivered, price)
    proposal = buyer.ledger.propose_settlement(settlement, now_ms)
    buyer.ledger.accept_agreement(seller.ledger.agree(proposal.raw, now_ms).raw)
    return delivered


def run_interval(street: list[House], index: int, rng: random.Random, report: DemoReport) -> None:
    interval = DAY_START_S + index * INTERVAL_S
    hour, now_ms = index * INTERVAL_S / 3600, (DAY_START_S + (index + 1) * INTERVAL_S) * 1000
    surplus, deficit = {}, {}
    for house in street:
        gen, use = pv_wh(house.pv_kwp, hour), load_wh(house.load_kwh_per_day, hour, rng)
        if gen > use:
            reading = seal(MeterReading(house.key.public, interval, INTERVAL_S, gen, use), house.key)
            house.ledger.mint(reading, gen - use, now_ms)
            surplus[house.name] = gen - use
        elif use > gen:
            deficit[house.name] = use - gen
    report.surplus_wh += sum(surplus.values())
    report.deficit_wh += sum(deficit.values())
    report.matchable_wh += min(sum(surplus.values()), sum(deficit.values()))
    by_name = {house.name: house for house in street}
    ratio = sum(surplus.values()) / max(1, sum(deficit.values()))
    price = int(FEED_IN_MICRO + (RETAIL_MICRO - FEED_IN_MICRO) / (1 + ratio))
    imports = dict(deficit)
    for buyer_name in sorted(deficit, key=deficit.get, reverse=True):
        for seller_name in sorted(surplus, key=surplus.get, reverse=True):
            need = imports[buyer_name]
            if need == 0 or surplus[seller_name] == 0:
                continue
            energy = min(need, surplus[seller_name])
            trade(by_name[seller_name], by_name[buyer_name], interval, energy, price, now_ms, rng)
            surplus[seller_name] -= energy
            imports[buyer_name] -= energy
            report.trades += 1
            report.local_wh += energy
    for name in set(imports) | set(surplus):
        imp, exp = imports.get(name, 0), surplus.get(name, 0)
        if imp or exp:
            by_name[name].ledger.record_grid(
                GridPayload(interval, imp, exp, RETAIL_MICRO, FEED_IN_MICRO, "fallback"), now_ms)
            report.grid_import_wh += imp
            report.grid_export_wh += exp


def audit_street(street: list[House], report: DemoReport) -> None:
    rows = []
    for house in street:
        house_rows = list(house.ledger.store.raw_blocks())
        report.problems += audit(house_rows).problems
        rows += house_rows
        report.databases.append(house.ledger.store.path)
    report.problems += audit(rows).problems
    report.blocks = sum(house.ledger.state.seq for house in street)
