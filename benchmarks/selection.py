"""Selection benchmark: GA and greedy against the exact optimum; predictor skill and speed.

    python benchmarks/selection.py [--quick] [--json PATH]

For n = 20, 50 and 200 candidate offers, seeded instances (half household-sized: the deficit
needs 1 to 4 sellers; half community-sized: tens of sellers; see
``optimizer/selection/instances.py``) are solved by the exact MILP, the GA and greedy with the
default weights.  The gap of a strategy on an instance is 1 − f(strategy)/f(exact).

* ``ga_gap_mean_<n>``, ``ga_gap_max_<n>``, ``greedy_gap_mean_<n>``, ``greedy_gap_max_<n>``
* ``ga_ms_p50_<n>``, ``greedy_ms_p50_<n>``, ``exact_ms_p50_<n>``: wall time per instance
* ``quality_r2``, ``duration_r2``: the default predictor on fresh held-out synthetic trades
  (another seed than its training data); ``baseline_quality_r2`` / ``baseline_duration_r2``: the
  better of the two naive baselines (training mean; the seller's past average), both also
  reported separately
* ``predict_200_ms``: median time of one ``Predictor.predict`` call on 200 candidates

Targets (issue 4): ga_gap_mean_<n> <= 0.003, ga_gap_max_<n> <= greedy_gap_max_<n>,
ga_ms_p50_200 <= 50, predict_200_ms <= 5.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from models import Predictor, generate  # noqa: E402
from models.train import DEFAULT_SEED, evaluate, split  # noqa: E402
from optimizer.selection import random_instance, select_offers  # noqa: E402
from report import emit  # noqa: E402

SIZES = (20, 50, 200)
SCALES = ("household", "community")
HELD_OUT_SEED = 20_240_501
PREDICT_REPEATS = 300


def _timed(function):
    started = time.perf_counter()
    result = function()
    return result, (time.perf_counter() - started) * 1000


def selection_results(n: int, per_scale: int) -> dict[str, float]:
    gaps = {"ga": [], "greedy": []}
    times = {"ga": [], "greedy": [], "exact": []}
    for scale_index, scale in enumerate(SCALES):
        for index in range(per_scale):
            seed = 1000 * n + 100 * scale_index + index
            request, candidates = random_instance(random.Random(seed), n, scale)
            exact, times_exact = _timed(lambda: select_offers(request, candidates, strategy="exact"))
            times["exact"].append(times_exact)
            for strategy in ("ga", "greedy"):
                plan, elapsed = _timed(lambda: select_offers(request, candidates, strategy=strategy, seed=seed))
                times[strategy].append(elapsed)
                gaps[strategy].append(1.0 - plan.score / exact.score)
    out = {"instances_%d" % n: float(len(gaps["ga"]))}
    for strategy, values in gaps.items():
        out[f"{strategy}_gap_mean_{n}"] = statistics.mean(values)
        out[f"{strategy}_gap_max_{n}"] = max(values)
    for strategy, values in times.items():
        out[f"{strategy}_ms_p50_{n}"] = statistics.median(values)
    out[f"ga_ms_p90_{n}"] = float(np.percentile(times["ga"], 90))
    return out


def predictor_results(held_out_rows: int) -> dict[str, float]:
    predictor = Predictor.default()
    train_set, _ = split(generate(int(predictor.trained.get("rows", 20_000)), DEFAULT_SEED), DEFAULT_SEED)
    test_set = generate(held_out_rows, HELD_OUT_SEED)
    scores = evaluate(lambda x: predictor.predict(x), train_set, test_set).scores
    out = {}
    for target, short in (("quality", "quality"), ("duration_s", "duration")):
        out[f"{short}_r2"] = scores[target]["model"].r2
        out[f"baseline_{short}_r2_mean"] = scores[target]["mean"].r2
        out[f"baseline_{short}_r2_seller_past"] = scores[target]["seller_past"].r2
        out[f"baseline_{short}_r2"] = max(scores[target]["mean"].r2, scores[target]["seller_past"].r2)
    rows = generate(200, HELD_OUT_SEED + 1).features
    predictor.predict(rows)
    samples = [_timed(lambda: predictor.predict(rows))[1] for _ in range(PREDICT_REPEATS)]
    out["predict_200_ms"] = statistics.median(samples)
    out["predict_200_ms_p90"] = float(np.percentile(samples, 90))
    return out


def _targets(results: dict[str, float]) -> list[str]:
    failed = [f"ga_gap_mean_{n}" for n in SIZES if results[f"ga_gap_mean_{n}"] > 0.003]
    failed += [f"ga_gap_max_{n}" for n in SIZES if results[f"ga_gap_max_{n}"] > results[f"greedy_gap_max_{n}"]]
    failed += [name for name, limit in (("ga_ms_p50_200", 50.0), ("predict_200_ms", 5.0)) if results[name] > limit]
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="15 instances per scale and size (30 per n)")
    parser.add_argument("--json", type=Path, help="write the results as a flat JSON object")
    args = parser.parse_args()
    per_scale = 15 if args.quick else 50
    results: dict[str, float] = {}
    for n in SIZES:
        results |= selection_results(n, per_scale)
    results |= predictor_results(4000 if args.quick else 20_000)
    emit(dict(sorted(results.items())), args.json)
    failed = _targets(results)
    print("targets: " + ("all met" if not failed else "MISSED " + ", ".join(failed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
