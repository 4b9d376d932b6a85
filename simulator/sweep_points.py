"""The points of a sweep: parameter sets, their seeds, stable ids and their scenarios (pure).

A *configuration* is one value for every varied parameter; a *point* is a configuration run
with one scenario seed (``repeats`` points per configuration).  A point's id is a hash of its
parameter values and seed only, so the same point gets the same id -- and the same run
directory, ``DIR/points/<id>`` -- in every rerun, whatever order the points are made in.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

import numpy as np

from simulator.errors import toml_repr
from simulator.scenario import Scenario
from simulator.sweep_scenario import apply
from simulator.sweep_spec import Parameter, SweepSpec, canonical_json

ID_LENGTH = 12
RANGE_DIGITS = 4
"""Values drawn from a float range are rounded to this many decimals: readable in the table,
and nearby draws of nsga2 become the same point instead of near-duplicates."""


@dataclass(frozen=True)
class Point:
    """One run of a sweep: ``params`` (path -> value, in the spec's parameter order) and seed."""

    params: tuple[tuple[str, object], ...]
    seed: int
    generation: int = field(default=0, compare=False)

    @property
    def id(self) -> str:
        return point_id(dict(self.params), self.seed)

    @property
    def config_id(self) -> str:
        """The same for every repeat of one configuration."""
        return config_id(dict(self.params))

    def label(self) -> str:
        return ", ".join(f"{path}={toml_repr(value)}" for path, value in self.params)


def point_id(params: dict, seed: int) -> str:
    return _digest({"params": params, "seed": seed})


def config_id(params: dict) -> str:
    return _digest({"params": params})


def _digest(body: dict) -> str:
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:ID_LENGTH]


def seeds(spec: SweepSpec) -> tuple[int, ...]:
    """The scenario seeds of each configuration: the base scenario's, then the next ones."""
    first = int(spec.base["seed"])
    return tuple(first + r for r in range(spec.repeats))


def expand(spec: SweepSpec, configs, generation: int = 0) -> list[Point]:
    """Each configuration (a tuple of values in parameter order) once per seed; duplicates
    (the same configuration drawn twice) are dropped, the first kept."""
    points, seen = [], set()
    paths = [p.path for p in spec.parameters]
    for values in configs:
        params = tuple(zip(paths, values))
        for seed in seeds(spec):
            point = Point(params, seed, generation)
            if point.id not in seen:
                seen.add(point.id)
                points.append(point)
    return points


def grid_configs(spec: SweepSpec) -> list[tuple]:
    """The cartesian product of the parameters' values, first parameter slowest."""
    return list(itertools.product(*(p.values for p in spec.parameters)))


def random_configs(spec: SweepSpec) -> list[tuple]:
    """``spec.samples`` configurations drawn with ``spec.seed``: each parameter independently,
    uniform over its list or its range."""
    rng = np.random.default_rng(spec.seed)
    return [tuple(draw(p, rng) for p in spec.parameters) for _ in range(spec.samples)]


def draw(parameter: Parameter, rng: np.random.Generator):
    if not parameter.is_range:
        return parameter.values[int(rng.integers(len(parameter.values)))]
    return from_unit(parameter, float(rng.random()))


def from_unit(parameter: Parameter, u: float):
    """Map ``u`` in [0, 1] onto the parameter: a list index, an integer or a rounded float."""
    u = min(max(u, 0.0), 1.0)
    if not parameter.is_range:
        return parameter.values[min(int(u * len(parameter.values)), len(parameter.values) - 1)]
    if parameter.integer:
        return int(parameter.low + min(int(u * (parameter.high - parameter.low + 1)),
                                       parameter.high - parameter.low))
    value = round(parameter.low + u * (parameter.high - parameter.low), RANGE_DIGITS)
    return min(max(value, parameter.low), parameter.high)


def planned_points(spec: SweepSpec) -> list[Point]:
    """Every point of a grid or random sweep (nsga2 makes its points as it goes)."""
    if spec.method == "grid":
        return expand(spec, grid_configs(spec))
    if spec.method == "random":
        return expand(spec, random_configs(spec))
    raise ValueError("an nsga2 sweep has no plan: its points depend on the results")


def point_scenario(spec: SweepSpec, point: Point) -> Scenario:
    """The base scenario with the point's values and seed, named ``<base name>-<id>``;
    :class:`~simulator.errors.ScenarioError` (naming the point) if the combination is invalid."""
    values = {**dict(point.params), "seed": point.seed,
              "name": f"{spec.base['name']}-{point.id}"}
    return apply(spec.base, values, source=f"{spec.source or 'sweep'} point {point.id} "
                                           f"({point.label()})")
