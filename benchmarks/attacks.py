"""The attack suite: a small swarm of real nodes under each attack in turn, against its own
unattacked run.

    python benchmarks/attacks.py [--quick] [--json PATH] [--only NAME ...]

One swarm shape (:class:`simulator.hostile_swarm.Shape`: 3 sellers, 3 buyers, every honest node
on its own loopback address, the attacker on another) trades interval by interval on a virtual
clock.  The same swarm runs once unattacked (the baseline, in the same run) and once per attack
of :data:`simulator.hostile_swarm.ATTACKS`, the attack active from interval
``WARMUP_INTERVALS`` on (before, sellers earn their standing in the DHT).  Per attack:

* ``intervals_lost_<attack>``: attacked intervals in which honest trades fell below half of
  the baseline's trades in the same interval;
* ``honest_trades_<attack>``: trades honest buyers made in the attacked intervals (the
  baseline's in ``honest_trades_baseline``);
* ``ledgers_valid_<attack>``: every node's ledger audited together (signatures, chains,
  cross-links, credit and token balances, fork proofs) and SQLite's ``integrity_check``;

``storage_fill_cold`` is active from the first interval (a cold swarm: no seller has standing
yet), so its intervals are all of them, and its baseline is
``honest_trades_baseline_storage_fill_cold``;

and the attack's own measures: ``amplification_max`` (bytes sent back per byte of pings from
unknown keys; the report measured x6,150 for the hand-over), ``storage_fill_evicted``,
``ground_ids_contacts_refused``, ``wal_loss_refused_start``, ``idle_connections_closed``,
``clock_skew_rediscoveries`` (buyers 30 s ahead of the sellers looked again),
``no_credit_granted_wh`` (what sellers granted a key without credit: 0), ...

An attack is one class in :data:`simulator.hostile_swarm.ATTACKS` (``begin(swarm, index)``
before each attacked interval, ``end(swarm) -> dict``): a new entry is a new row here.
``--quick`` trades 5 intervals (2 attacked), the full run 8 (5 attacked).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import emit  # noqa: E402
from simulator.hostile_swarm import (  # noqa: E402
    ATTACKS, WARMUP_INTERVALS, Shape, first_attacked, run_swarm,
)

LOST_BELOW = 0.5     # an interval is lost when honest trades fall below half the baseline's


def intervals_lost(baseline: list[int], attacked: list[int],
                   first: int = WARMUP_INTERVALS) -> int:
    return sum(1 for i in range(first, len(baseline))
               if attacked[i] < LOST_BELOW * baseline[i])


async def suite(names: list[str], shape: Shape) -> dict:
    results: dict = {"intervals": shape.intervals, "attacked_intervals":
                     shape.intervals - WARMUP_INTERVALS}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        base = await run_swarm(Path(tmp) / "baseline", shape)
        results["honest_trades_baseline"] = sum(base["trades"][WARMUP_INTERVALS:])
        results["ledgers_valid_baseline"] = base["valid"]
        results["seconds_baseline"] = round(time.perf_counter() - started, 1)
        for name in names:
            started = time.perf_counter()
            attack = ATTACKS[name]()
            first = first_attacked(attack)
            out = await run_swarm(Path(tmp) / name, shape, attack)
            results[f"intervals_lost_{name}"] = intervals_lost(base["trades"], out["trades"], first)
            results[f"honest_trades_{name}"] = sum(out["trades"][first:])
            if first != WARMUP_INTERVALS:   # its own baseline: the same intervals unattacked
                results[f"honest_trades_baseline_{name}"] = sum(base["trades"][first:])
            results[f"ledgers_valid_{name}"] = out["valid"]
            results.update(out["extra"])
            results[f"seconds_{name}"] = round(time.perf_counter() - started, 1)
            for problem in out["problems"]:
                print(f"{name}: {problem}", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 intervals, 2 of them attacked")
    parser.add_argument("--json", type=Path, help="write the results as a flat JSON object")
    parser.add_argument("--only", nargs="+", choices=sorted(ATTACKS), default=list(ATTACKS),
                        metavar="ATTACK", help=f"attacks to run (default all: {', '.join(ATTACKS)})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    shape = Shape(intervals=WARMUP_INTERVALS + (2 if args.quick else 5))
    emit(asyncio.run(suite(args.only, shape)), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
