"""The hostile example against its calm twin, over a window of its day.

    python benchmarks/hostile_window.py [SCENARIO] [--meters N] [--first I] [--count N] [--json PATH]

``p2pnode simulate examples/hostile.toml`` trades a whole day; under attack that took over an
hour on the shared 2-core machine.  This runs the scenario's swarm (its churn, attacker
machines and skewed clocks; ``[faults]``) and its twin with ``malicious_share = 0`` and no
clock skew (the same churn) on the same profiles, over intervals ``first`` ..
``first + count - 1`` of the day, with the nodes' forecasters having seen the week before, and
prints the honest trading of both: settled trades, delivered kWh met by a deficit and
``forward_match_ratio`` (of the window's perfect-foresight optimum; as ``p2pnode simulate``
counts them, the optimum including the attackers' houses), ``delivered_share``, the skewed nodes' trading
(``clock_skewed_*``), ``rediscoveries``, offers no node stored (``offers_not_stored``; the
stores behind them ``dht_store_refused`` / ``dht_store_unanswered``), ledgers valid.

``--meters`` scales the swarm down; the attacker share is raised so that each kind of
``malicious_kinds`` still has one machine.  storage_fill and ground_ids start in the window's
third interval (:data:`simulator.attack.DHT_ATTACK_AFTER`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KEYS = ("forward_match_ratio", "delivered_share", "delivered_local_kwh",
        "perfect_foresight_match_kwh", "rediscoveries", "offers_rejected", "offers_not_stored",
        "dht_publish_timeout", "dht_store_refused", "dht_store_unanswered", "malicious_nodes",
        "clock_skewed_nodes", "clock_skew_max_s", "clock_skewed_traded_nodes",
        "clock_skewed_trades", "clock_skewed_bought_kwh_per_buyer",
        "clock_other_bought_kwh_per_buyer")


def scaled(scenario, meters: int | None):
    """The scenario at ``meters`` (every attack kind keeps a machine)."""
    if meters is None:
        return scenario
    faults = scenario.faults
    share = faults.malicious_share
    if share:
        share = max(share, len(faults.malicious_kinds) / meters)
    return dataclasses.replace(scenario, meters=meters, processes=min(scenario.processes, meters),
                               faults=dataclasses.replace(faults, malicious_share=share))


def measure(scenario, profiles, history, out: Path) -> dict:
    from simulator.run import run_stats, within_deficits
    from simulator.swarm import run_swarm

    started = time.perf_counter()
    swarm = run_swarm(scenario, profiles, out, progress=False, history=history)
    extra = run_stats(swarm, within_deficits(swarm.trades, profiles)).extra   # as simulate
    row = {"trades": len(swarm.trades), "ledgers_valid": not swarm.audit_problems,
           "double_settlements": swarm.double_settlements,
           "wall_s": round(time.perf_counter() - started, 1)}
    row.update({k: extra[k] for k in KEYS if k in extra})
    return row


def main(argv=None) -> dict:
    from simulator.run import run_profiles
    from simulator.scenario import load_scenario

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", default=str(ROOT / "examples" / "hostile.toml"))
    parser.add_argument("--meters", type=int, default=None)
    parser.add_argument("--first", type=int, default=28, help="first interval (28: 07:00)")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    hostile = scaled(load_scenario(args.scenario), args.meters)
    calm = dataclasses.replace(hostile, faults=dataclasses.replace(
        hostile.faults, malicious_share=0.0, clock_skew_share=0.0))
    day, history = run_profiles(hostile)
    profiles = day.window(args.first, args.count)
    result = {"meters": hostile.meters, "first": args.first, "count": args.count}
    with tempfile.TemporaryDirectory() as tmp:
        for name, scenario in (("hostile", hostile), ("calm", calm)):
            result[name] = measure(scenario, profiles, history, Path(tmp) / name)
            print(name, json.dumps(result[name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
