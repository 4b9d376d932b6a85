"""Parameter sweeps over scenarios: many real swarms, one results table, plots, the best one.

    from simulator.sweep import load_sweep, run_sweep
    result = run_sweep(load_sweep("examples/sweep.toml"), "runs/sweep")
    result.table            # pandas DataFrame, one row per run
    result.configs          # one row per parameter set: mean objectives, pareto, distance
    result.pareto()         # the non-dominated parameter sets
    result.best_scenario    # a Scenario, also written to DIR/best.toml

``run_sweep`` writes::

    DIR/sweep.json          the sweep's identity and hash; a DIR of another sweep is refused
    DIR/points/<id>/        each run's directory (summary.json, tables, report.html, ledgers)
    DIR/results.csv         one row per finished run (see simulator.sweep_table), rewritten
                            atomically after every run, so a killed sweep leaves a whole table
    DIR/results.parquet     the same table (written at the end when pyarrow is installed)
    DIR/sensitivity.png     each varied parameter against each objective
    DIR/pareto.png          the non-dominated configurations over the first two objectives
    DIR/best.toml           the best configuration's scenario (first seed), a valid scenario file

Rerun into the same DIR and every run that finished ``ok`` is skipped (failed ones run
again): a sweep is resumable, and changing only the objectives of a grid or random sweep
recomputes the plots and the best configuration without running anything.  Spec and layout:
:mod:`simulator.sweep_spec`; points and ids: :mod:`simulator.sweep_points`; NSGA-II:
:mod:`simulator.sweep_nsga2`; engines (local processes, Dask, Ray):
:mod:`simulator.sweep_engines`; table and best: :mod:`simulator.sweep_table`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import Problem, ScenarioError
from simulator.report import png_bytes
from simulator.scenario import Scenario
from simulator.sweep_engines import Evaluator, PointTask, Simulation, open_engine
from simulator.sweep_nsga2 import evolve
from simulator.sweep_plots import plot_pareto, plot_sensitivity
from simulator.sweep_points import Point, expand, planned_points, point_scenario, seeds
from simulator.sweep_scenario import scenario_to_raw, scenario_toml
from simulator.sweep_spec import SweepError, SweepSpec, load_sweep
from simulator.sweep_table import (
    best_config, columns, config_scores, latest, result_row, top_text,
)

__all__ = ["SweepError", "SweepResult", "SweepSpec", "load_results", "load_sweep", "plan",
           "run_sweep"]

SWEEP_FILE = "sweep.json"
RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
SENSITIVITY_PNG = "sensitivity.png"
PARETO_PNG = "pareto.png"
BEST_TOML = "best.toml"
POINTS_DIR = "points"


@dataclass(eq=False)
class SweepResult:
    """A sweep's table and what follows from it (see the module docstring)."""

    spec: SweepSpec
    out_dir: Path
    table: pd.DataFrame
    ran: int = 0
    skipped: int = 0
    configs: pd.DataFrame = field(init=False)

    def __post_init__(self):
        self.configs = config_scores(self.table, self.paths, self.spec.objectives) \
            if len(self.table) else pd.DataFrame()

    @property
    def paths(self) -> list[str]:
        return [p.path for p in self.spec.parameters]

    @property
    def failed(self) -> int:
        return int((self.table["status"] != "ok").sum()) if len(self.table) else 0

    @property
    def unhealthy(self) -> int:
        """Runs that failed, or whose ledgers were invalid or settled a trade twice."""
        table = self.table
        if not len(table):
            return 0
        bad = table["status"] != "ok"
        if "ledgers_valid" in table:
            bad |= table["ledgers_valid"].astype(str).str.lower().eq("false")
        if "double_settlements" in table:
            bad |= pd.to_numeric(table["double_settlements"], errors="coerce").fillna(0) > 0
        return int(bad.sum())

    def pareto(self) -> pd.DataFrame:
        """The configurations no other one beats on every objective, best first."""
        return self.configs[self.configs["pareto"]] if len(self.configs) else self.configs

    @property
    def best(self) -> pd.Series | None:
        return best_config(self.configs) if len(self.configs) else None

    @property
    def best_point(self) -> Point | None:
        """The best configuration with the first seed: the run ``best.toml`` describes."""
        best = self.best
        if best is None:
            return None
        params = tuple((p.path, _typed(p, best[p.path])) for p in self.spec.parameters)
        return Point(params, seeds(self.spec)[0])

    @property
    def best_scenario(self) -> Scenario | None:
        point = self.best_point
        return None if point is None else point_scenario(self.spec, point)

    def top(self, count: int = 10) -> str:
        return top_text(self.configs, self.paths, self.spec.objectives, count) \
            if len(self.configs) else "(no finished runs)"


def plan(spec: SweepSpec) -> list[Point]:
    """The points of a grid or random sweep, each scenario checked (ScenarioError naming the
    point if a combination is invalid); for nsga2 the first generation's points."""
    if spec.method == "nsga2":
        from simulator.sweep_nsga2 import decode

        genes = np.random.default_rng(spec.seed).random((spec.population, len(spec.parameters)))
        points = expand(spec, decode(spec, genes))
    else:
        points = planned_points(spec)
        for point in points:
            point_scenario(spec, point)
    return points


def run_sweep(spec: SweepSpec, out_dir: str | Path, *, evaluate: Evaluator | None = None,
              progress: bool = True, log: Callable[[str], None] = lambda line: None
              ) -> SweepResult:
    """Run every point not finished yet into ``out_dir``, then write the table, plots and
    ``best.toml``.  ``evaluate(scenario, run_dir) -> summary`` replaces the real swarm
    (for tests and other simulators); it must be picklable for more than one worker."""
    from tqdm import tqdm

    total = len(plan(spec)) if spec.method != "nsga2" else \
        spec.population * (spec.generations + 1) * spec.repeats   # checks every scenario
    out = Path(out_dir)
    claim(out, spec)
    evaluate = evaluate or Simulation(spec.processes_per_point, spec.mechanisms)
    state = _State(spec, out, evaluate, _read_rows(out / RESULTS_CSV), log)
    where = f"{spec.cluster.engine} cluster {spec.cluster.address}" if spec.cluster \
        else f"{spec.workers} local worker(s)"
    engine = open_engine(spec.cluster, spec.workers)

    state.bar = tqdm(total=total, unit="run", disable=not progress, dynamic_ncols=True,
                     desc=f"sweep ({spec.method})")
    try:
        log(f"{spec.method} sweep: {total} run(s) at most, on {where}")
        if spec.method == "nsga2":
            evolve(spec, lambda configs, generation: state.scores(configs, generation, engine))
        else:
            state.run(planned_points(spec), engine)
    finally:
        state.bar.close()
        engine.close()
    return finish(spec, out, ran=state.ran, skipped=state.skipped)


def load_results(spec: SweepSpec, out_dir: str | Path) -> SweepResult:
    """The results of a sweep already run into ``out_dir`` (nothing runs)."""
    out = Path(out_dir)
    claim(out, spec, create=False)
    return SweepResult(spec, out, read_table(out / RESULTS_CSV))


def finish(spec: SweepSpec, out: Path, *, ran: int = 0, skipped: int = 0) -> SweepResult:
    """Write ``results.parquet``, the plots and ``best.toml`` from the table."""
    result = SweepResult(spec, out, read_table(out / RESULTS_CSV), ran, skipped)
    _write_parquet(result.table, out / RESULTS_PARQUET)
    paths = [p.path for p in spec.parameters]
    if len(result.table):
        figure = plot_sensitivity(result.table, spec.parameters, spec.objectives,
                                  f"{spec.method} sweep of {', '.join(paths)}")
        _write_atomic(out / SENSITIVITY_PNG, png_bytes(figure))
    best = result.best
    pareto = plot_pareto(result.configs, spec.objectives,
                         None if best is None else best["config_id"], paths=paths) \
        if len(result.configs) else None
    _replace_or_remove(out / PARETO_PNG, None if pareto is None else png_bytes(pareto))
    scenario = result.best_scenario
    text = None if scenario is None else scenario_toml(
        scenario_to_raw(scenario), f"Best configuration of the sweep {spec.source or ''} "
        f"(point {result.best_point.id}):\n" + result.best_point.label())
    _replace_or_remove(out / BEST_TOML, None if text is None else text.encode("utf-8"))
    return result


# -- the state of one run of a sweep ----------------------------------------------------------

class _State:
    def __init__(self, spec: SweepSpec, out: Path, evaluate: Evaluator, rows: list[dict],
                 log: Callable[[str], None]):
        self.spec, self.out, self.evaluate, self.log = spec, out, evaluate, log
        self.rows = {row["point_id"]: row for row in rows}
        self.attempted: set[str] = set()
        self.ran = self.skipped = 0
        self.bar = None

    def run(self, points: Sequence[Point], engine) -> None:
        """Run the points not finished ok before (nor tried in this run already)."""
        todo, tasks = [], []
        for point in points:
            if self._done(point):
                self.skipped += 1
                self.bar.update(1)
                continue
            self.attempted.add(point.id)
            try:
                scenario = point_scenario(self.spec, point)
            except ScenarioError as exc:   # only nsga2 gets here: grid/random checked up front
                self._record(result_row(point, None, 0.0, error=f"ScenarioError: {exc}"))
                continue
            todo.append(point)
            tasks.append(PointTask(point, scenario_to_raw(scenario),
                                   str(self.out / POINTS_DIR / point.id), self.evaluate,
                                   scenario.source))
        for _, row in engine.map(tasks):
            self.ran += 1
            self._record(row)

    def scores(self, configs: list[tuple], generation: int, engine) -> np.ndarray:
        """Evaluate one nsga2 generation: mean objectives (signed) per configuration."""
        self.run(expand(self.spec, configs, generation), engine)
        out = np.full((len(configs), len(self.spec.objectives)), np.nan)
        paths = [p.path for p in self.spec.parameters]
        for i, values in enumerate(configs):
            runs = [self.rows.get(Point(tuple(zip(paths, values)), seed).id)
                    for seed in seeds(self.spec)]
            if all(row is not None and row["status"] == "ok" for row in runs):
                out[i] = [o.sign * np.mean([_number(row.get(o.metric)) for row in runs])
                          for o in self.spec.objectives]
        return out

    def _done(self, point: Point) -> bool:
        row = self.rows.get(point.id)
        return (row is not None and row["status"] == "ok") or point.id in self.attempted

    def _record(self, row: dict) -> None:
        self.rows[row["point_id"]] = row
        write_rows(self.out / RESULTS_CSV, list(self.rows.values()),
                   [p.path for p in self.spec.parameters])
        self.bar.update(1)
        if row["status"] != "ok":
            self.log(f"point {row['point_id']} failed: {row['error']}")


# -- the output directory ---------------------------------------------------------------------

def claim(out: Path, spec: SweepSpec, *, create: bool = True) -> None:
    """Make ``out`` this sweep's directory, or refuse one that belongs to another sweep."""
    marker = out / SWEEP_FILE
    identity = {"spec_hash": spec.spec_hash(), "source": spec.source,
                "identity": spec.identity()}
    if marker.exists():
        try:
            stored = json.loads(marker.read_text(encoding="utf-8"))["spec_hash"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _dir_error(out, f"{SWEEP_FILE} is unreadable ({exc})") from None
        if stored != identity["spec_hash"]:
            raise _dir_error(out, f"belongs to another sweep (spec hash {stored}, this one "
                             f"{identity['spec_hash']}): choose another --out, or delete it "
                             "to start over")
        return
    if not create:
        raise _dir_error(out, f"holds no sweep ({SWEEP_FILE} missing)")
    if out.exists() and any(out.iterdir()):
        raise _dir_error(out, "is not empty and holds no sweep: choose an empty or new "
                         "directory")
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(marker, (json.dumps(identity, indent=2) + "\n").encode("utf-8"))


def _dir_error(out: Path, reason: str) -> SweepError:
    return SweepError([Problem("", "--out", str(out), reason)])


def write_rows(path: Path, rows: list[dict], paths: Sequence[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns(rows, paths), restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v
                         for k, v in row.items()})
    _write_atomic(path, buffer.getvalue().encode("utf-8"))


def read_table(path: Path) -> pd.DataFrame:
    """The results table (empty when no run has finished yet); one row per point."""
    if not path.exists():
        return pd.DataFrame(columns=["point_id", "config_id", "status"])
    table = pd.read_csv(path, keep_default_na=False, na_values=[""],
                        dtype={"point_id": str, "config_id": str, "status": str, "error": str})
    table["error"] = table["error"].fillna("")
    return table.drop_duplicates("point_id", keep="last").reset_index(drop=True)


def _read_rows(path: Path) -> list[dict]:
    table = read_table(path)
    return latest(table.to_dict("records")) if len(table) else []


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    """The table as Parquet when pyarrow is installed (a mixed-type column as text)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return
    frame = table.copy()
    for name in frame.columns[frame.dtypes == object]:
        if len({type(v) for v in frame[name]}) > 1:
            frame[name] = frame[name].astype(str)
    temporary = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(temporary, index=False)
    os.replace(temporary, path)


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _replace_or_remove(path: Path, data: bytes | None) -> None:
    if data is None:
        path.unlink(missing_ok=True)   # no stale file of an earlier analysis
    else:
        _write_atomic(path, data)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _typed(parameter, value):
    """A table cell back as the parameter's own value (a listed value, an int or a float)."""
    if not parameter.is_range:
        for option in parameter.values:
            if value == option or str(value) == str(option):
                return option
        raise SweepError([Problem("parameters", parameter.path, value,
                                  "value in the results table is not one of the listed values "
                                  "(the table belongs to another sweep)")])
    return int(value) if parameter.integer else float(value)

