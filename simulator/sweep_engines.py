"""Where a sweep's points run: local processes, a Dask cluster or a Ray cluster.

Every engine maps :func:`run_point` over a batch of :class:`PointTask` s and yields each
``(task, row)`` as soon as that point finishes, so the caller can record it at once.

* **local** (default): ``workers`` spawned processes (``concurrent.futures`` with the spawn
  start method; its workers are not daemonic, so a point whose swarm uses several processes can
  start them).  ``workers = 1`` runs the points one after another in this process.
* **dask**: ``distributed.Client(address)`` of a running scheduler; the cluster decides how many
  points run at once.
* **ray**: ``ray.init(address=...)``: ``"auto"`` or ``"host:port"`` of a running cluster,
  ``"ray://host:10001"`` through Ray Client, or ``"local"`` for a fresh one-machine instance.

On a cluster each point's run directory is written at the same path on the worker that ran it
(a shared file system keeps them together); the results table is written here either way,
because the summary comes back with the result.
"""

from __future__ import annotations

import copy
import multiprocessing
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from simulator.scenario import Scenario, scenario_from_dict
from simulator.sweep_points import Point
from simulator.sweep_spec import Cluster, SweepError
from simulator.errors import Problem
from simulator.sweep_table import result_row

Evaluator = Callable[[Scenario, Path], Mapping]
"""``evaluate(scenario, run_dir)`` -> the run's summary (``summary.json`` content)."""
ERROR_FILE = "error.txt"


@dataclass(frozen=True)
class Simulation:
    """The real evaluator: one swarm of real nodes per point (:func:`simulator.run.simulate`)
    with at most ``processes`` OS processes, baselines ``mechanisms``, no plots."""

    processes: int = 1
    mechanisms: tuple[str, ...] = ("double_auction",)

    def __call__(self, scenario: Scenario, run_dir: Path) -> Mapping:
        from simulator.run import simulate

        shutil.rmtree(run_dir / "ledgers", ignore_errors=True)   # a run starts with empty ledgers
        return simulate(scenario, run_dir, processes=min(self.processes, scenario.meters),
                        mechanisms=self.mechanisms, progress=False, plots=False)


@dataclass(frozen=True)
class PointTask:
    """What a worker needs to run one point: everything plain data, so any engine ships it."""

    point: Point
    scenario: dict          # the point's scenario document (see sweep_spec.scenario_to_raw)
    run_dir: str
    evaluate: Evaluator
    source: str = ""


def run_point(task: PointTask) -> dict:
    """Run one point and return its table row; a failure becomes a ``failed`` row (its
    traceback also in ``<run_dir>/error.txt``), never an exception."""
    started = time.perf_counter()
    run_dir = Path(task.run_dir)
    try:
        scenario = scenario_from_dict(copy.deepcopy(task.scenario), task.source)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
        summary = task.evaluate(scenario, run_dir)
        return result_row(task.point, summary, time.perf_counter() - started)
    except Exception as exc:   # a broken point is a result of the sweep, not its end
        try:
            (run_dir / ERROR_FILE).write_text(traceback.format_exc(), encoding="utf-8")
        except OSError:
            pass
        return result_row(task.point, None, time.perf_counter() - started,
                          error=f"{type(exc).__name__}: {exc}")


class LocalEngine:
    def __init__(self, workers: int):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def map(self, tasks: Iterable[PointTask]) -> Iterator[tuple[PointTask, dict]]:
        tasks = list(tasks)
        if self.workers == 1:
            for task in tasks:
                yield task, run_point(task)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("spawn"))
        futures = {self._pool.submit(run_point, task): task for task in tasks}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskEngine:
    def __init__(self, address: str, timeout_s: float = 30.0):
        try:
            from distributed import Client
        except ImportError as exc:
            raise _missing("dask", "distributed") from exc
        try:
            self.client = Client(address, timeout=timeout_s)
        except (OSError, TimeoutError) as exc:
            raise _unreachable(address, exc) from exc

    def map(self, tasks: Iterable[PointTask]) -> Iterator[tuple[PointTask, dict]]:
        from distributed import as_completed as dask_completed

        futures = {self.client.submit(run_point, task, pure=False): task for task in tasks}
        try:
            for future in dask_completed(futures):
                yield futures[future], future.result()
        finally:
            self.client.cancel(list(futures))

    def close(self) -> None:
        self.client.close()


class RayEngine:
    def __init__(self, address: str, workers: int):
        try:
            import ray
        except ImportError as exc:
            raise _missing("ray", "ray") from exc
        self.ray = ray
        options = {"num_cpus": workers} if address == "local" else {}
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise _unreachable(address, exc) from exc
        self.remote = ray.remote(run_point)

    def map(self, tasks: Iterable[PointTask]) -> Iterator[tuple[PointTask, dict]]:
        refs = {self.remote.remote(task): task for task in tasks}
        pending = list(refs)
        try:
            while pending:
                done, pending = self.ray.wait(pending, num_returns=1)
                yield refs[done[0]], self.ray.get(done[0])
        finally:
            for ref in pending:
                self.ray.cancel(ref)

    def close(self) -> None:
        self.ray.shutdown()


def open_engine(cluster: Cluster | None, workers: int):
    """The engine for ``[cluster]`` (or local processes); call ``close()`` when done."""
    if cluster is None:
        return LocalEngine(workers)
    if cluster.engine == "dask":
        return DaskEngine(cluster.address, cluster.timeout_s)
    return RayEngine(cluster.address, workers)


def _missing(engine: str, package: str) -> SweepError:
    return SweepError([Problem("cluster", "engine", engine, f"needs the `{package}` package: "
                               "pip install 'p2p-energy[cluster]'")])


def _unreachable(address: str, exc: Exception) -> SweepError:
    return SweepError([Problem("cluster", "address", address, f"cannot connect: {exc}")])
