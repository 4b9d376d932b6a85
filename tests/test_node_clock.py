"""Clock skew between daemons: two ``p2pnode run`` daemons started apart, with clocks off, trade.

The report: a buyer 5.5 s ahead of the seller never traded, daemons' clocks lagged the wall
clock by their start-up time, and the README's ``--speed 900`` example traded nothing between
two daemons.  Here every pair is started the way the README says -- the same ``--start``,
``--speed`` and ``--epoch`` -- the second daemon 30 s after the first, in either order, and one
clock 30 s (of node time, ``[timing] clock_offset_s``) ahead of or behind the other.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timezone

import pytest

from ledger import BlockBody, BlockType, CreditVoucher, LedgerRules, LedgerStore, SigningKey, audit, \
    open_envelope, seal
from p2pnode.commands.run import ReplayClock, daemon_clock
from p2pnode.config import config_from_dict
from p2pnode.identity import create_key_file
from tests.dhtkit import run

START = 1_782_907_200          # 2026-07-01 12:00 UTC
INTERVAL_S = 900
SPEED = 90.0                   # an interval in 10 s
INTERVALS = 2
APART_S = 30.0                 # wall seconds between the two daemons' starts
SKEW_S = 30.0                  # node seconds between their clocks
ISSUER = SigningKey.from_seed(bytes(range(32)))
UP_TIMEOUT_S = 60


def write_node(path, name: str, feeder: str, *, generation: int, consumption: int,
               offset_s: float, bootstrap: str | None):
    """A node directory as the README's daemon section has it (key, voucher, CSV, node.toml)."""
    path.mkdir()
    create_key_file(path / "node.key")
    from p2pnode.identity import load_key_file
    public = load_key_file(path / "node.key").public
    voucher = seal(CreditVoucher(ISSUER.public, public, name.encode().ljust(16, b"."),
                                 50_000_000), ISSUER)
    (path / "credit.bin").write_bytes(voucher.raw)
    rows = [f"{START + i * INTERVAL_S},{generation},{consumption}" for i in range(-2, 8)]
    (path / "readings.csv").write_text("interval_start_s,generation_wh,consumption_wh\n"
                                       + "\n".join(rows) + "\n")
    boot = f'bootstrap = ["{bootstrap}"]\n' if bootstrap else ""
    (path / "node.toml").write_text(
        f'key_file = "node.key"\nledger = "node.db"\nfeeder = "{feeder}"\n'
        f'[network]\nhost = "127.0.0.1"\ndht_port = 0\npeer_port = 0\nmax_peers_per_host = 0\n'
        f'{boot}'
        f'[meter]\npath = "readings.csv"\n'
        f'[credit]\nvouchers = ["credit.bin"]\ntrusted_issuers = ["{ISSUER.public.hex()}"]\n'
        f'[timing]\nrequest_timeout_s = 0.5\nclock_offset_s = {offset_s}\n')
    return public


async def start_daemon(path, epoch: float):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "p2pnode.cli", "run", "--config", str(path / "node.toml"),
        "--speed", str(SPEED), "--start", "2026-07-01T12:00:00Z", "--epoch", str(epoch),
        "--intervals", str(INTERVALS), "--log-level", "WARNING",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(process.stdout.readline(), UP_TIMEOUT_S)
    assert line.startswith(b"{"), (await process.stderr.read()).decode()[-2000:]
    return process, json.loads(line)


async def finish(process) -> dict:
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().splitlines()[-1])


async def pair(tmp, name: str, buyer_first: bool, buyer_offset_s: float, epoch: float):
    """Start the first daemon, the second ``APART_S`` later bootstrapping to it; both stopped."""
    roles = [("buyer", 0, 600, buyer_offset_s), ("seller", 1500, 100, 0.0)]
    if not buyer_first:
        roles.reverse()
    first_role, *first = roles[0]
    write_node(tmp / f"{name}-{first_role}", name, name, generation=first[0],
               consumption=first[1], offset_s=first[2], bootstrap=None)
    first_process, up = await start_daemon(tmp / f"{name}-{first_role}", epoch)
    await asyncio.sleep(APART_S)
    second_role, *second = roles[1]
    write_node(tmp / f"{name}-{second_role}", name + "2", name, generation=second[0],
               consumption=second[1], offset_s=second[2], bootstrap=up["dht"])
    second_process, _ = await start_daemon(tmp / f"{name}-{second_role}", epoch)
    stopped = await asyncio.gather(finish(first_process), finish(second_process))
    return dict(zip((first_role, second_role), stopped))


def blocks(db) -> list[BlockBody]:
    with LedgerStore(db) as store:
        return [open_envelope(raw, BlockBody)[0].message for *_, raw in store.raw_blocks()]


@pytest.mark.timeout(300)
def test_two_daemons_started_30_s_apart_in_either_order_with_clocks_30_s_off_trade(tmp_path):
    epoch = time.time() + APART_S + 30      # both are up by then (the README's --epoch)

    async def main():
        return await asyncio.gather(
            pair(tmp_path, "seller-first", False, +SKEW_S, epoch),   # the buyer ahead
            pair(tmp_path, "buyer-first", True, -SKEW_S, epoch))     # the buyer behind

    results = run(main())
    for name, stopped in zip(("seller-first", "buyer-first"), results):
        bought = stopped["buyer"]["counters"].get("trades_bought", 0)
        assert bought >= INTERVALS, (name, stopped)   # a need may take two trades (a second look)
        assert stopped["seller"]["counters"].get("trades_proposed", 0) == bought, stopped
        assert stopped["seller"]["counters"].get("deliveries_settled", 0) == bought, stopped
        if name == "seller-first":   # the buyer ahead found no offer at its first look (in the
            # first interval both daemons open at the epoch, a race: it may find it at once)
            assert stopped["buyer"]["counters"].get("rediscoveries", 0) >= INTERVALS - 1, stopped
        for side in ("buyer", "seller"):                 # nothing 'stale' or 'future'
            counters = stopped[side]["counters"]
            assert counters.get("peer_dropped_stale", 0) == 0, counters
            assert counters.get("peer_dropped_future", 0) == 0, counters
        buyer = blocks(tmp_path / f"{name}-buyer" / "node.db")
        seller = blocks(tmp_path / f"{name}-seller" / "node.db")
        bought = {b.payload.interval_start_s for b in buyer
                  if b.type is BlockType.TRADE and b.author == b.payload.buyer}
        # every interval of the run and no other: in the real-time market (the default) the
        # first is the one starting at the next boundary after --start, whose gate is ahead
        assert bought == {START + INTERVAL_S, START + 2 * INTERVAL_S}, name
        with LedgerStore(tmp_path / f"{name}-buyer" / "node.db") as a, \
                LedgerStore(tmp_path / f"{name}-seller" / "node.db") as b:
            report = audit([*a.raw_blocks(), *b.raw_blocks()],
                           LedgerRules(trusted_issuers=frozenset({ISSUER.public})))
        assert report.ok, report.problems[:5]
        assert len(seller) > 0


def test_the_daemon_clock_is_the_wall_clock_or_a_shared_replay():
    """No --start/--speed: node time is wall time (plus the configured offset), not the time
    since the node came up; a replay given --epoch is the same function of the wall clock in
    every daemon, and one started before the epoch holds at --start."""
    class Args:
        start, speed, epoch = None, 1.0, None

    config = config_from_dict({"timing": {"clock_offset_s": 12.5}})
    clock = daemon_clock(Args, config)
    assert abs(clock() - (time.time() + 12.5)) < 0.5
    Args.start, Args.speed = "2026-07-01T12:00:00Z", 900.0
    Args.epoch = str(time.time() - 2.0)                    # the replay began 2 s ago
    shared = daemon_clock(Args, config_from_dict({}))
    later = daemon_clock(Args, config_from_dict({}))       # another daemon, started later
    assert abs(shared() - (START + 1800)) < 0.5 * 900 and abs(shared() - later()) < 0.1 * 900
    Args.epoch = datetime.fromtimestamp(time.time() + 60, timezone.utc).isoformat()
    assert daemon_clock(Args, config_from_dict({}))() < START   # before its epoch
    own = ReplayClock(START, 900.0, running=False)
    assert own() == START                                  # one's own replay: held until up
    own.start()
    assert own() >= START
