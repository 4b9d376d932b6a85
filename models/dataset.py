"""A seeded synthetic trade history: ground truth plus noise, standing in for real history.

Until nodes have ledger history of their own, the predictors learn from this process.  Every
draw comes from ``numpy.random.default_rng(seed)``, so a seed gives the same rows.

**Sellers.**  Each seller has a latent reliability r ~ Beta(9, 1.2) (mean 0.88), a latent speed
factor v ~ LogNormal(0, 0.35) (how fast its inverter/controller executes trades), a zone, and a
typical participation level λ ~ Exponential(40).  Each zone has a small quality offset
N(0, 0.03) and a congestion factor LogNormal(0, 0.2) on durations.

**Trades.**  energy ~ LogUniform(100, 8000) Wh, price ~ U(0.08, 0.35), irradiance
clip(N(450, 280), 0, 1000) W/m², temperature N(14, 7) + 0.012·irradiance °C, distance
~ LogUniform(20, 3000) m, line efficiency 0.995 − 2e-5·distance − U(0, 0.05), supply/demand
ratio LogNormal(0, 0.5).  The seller's participation at the time is Poisson(λ).

**Duration** (s) = v · congestion · (6 + energy/25 · (1 + 5·(0.99 − efficiency)) + distance/150)
· (1 + 0.5·max(0, 1 − ratio)) · LogNormal(0, 0.15).

**Quality** (share delivered) = clip(r + zone offset − 0.3·σ(4·(energy/(250 + 9·irradiance) − 1))
− 0.005·max(0, temperature − 28) − 1.5·max(0, 0.96 − efficiency) − 0.1·max(0, 1 − ratio)
− 0.05·duration/300 + N(0, 0.03), 0, 1); with probability 0.02 + 0.06·(risk term above) the
trade fails part-way and quality is U(0, 0.5).  σ is the logistic function: a trade large for
the current sunshine risks partial delivery.

**History.**  The seller's past quality is its reliability seen through its participation:
clip(r + zone offset + N(0, 0.15/√p), 0, 1) − 0.04 (past trades were made in average conditions),
and its past duration v · congestion · 110 s · LogNormal(0, 0.4/√p); both NaN when p = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.features import FEATURES, ZONES

SELLERS_PER_ROW = 1 / 25
MIN_SELLERS = 20
FAILURE_BASE, FAILURE_RISK = 0.02, 0.06


@dataclass(frozen=True, eq=False)
class Dataset:
    """Feature rows (columns as :data:`~models.features.FEATURES`), labels and seller ids."""

    features: np.ndarray
    quality: np.ndarray
    duration_s: np.ndarray
    seller: np.ndarray

    def __len__(self) -> int:
        return len(self.quality)

    def subset(self, index: np.ndarray) -> "Dataset":
        return Dataset(self.features[index], self.quality[index], self.duration_s[index], self.seller[index])

    def column(self, name: str) -> np.ndarray:
        return self.features[:, FEATURES.index(name)]


def _log_uniform(rng: np.random.Generator, low: float, high: float, size: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def _sellers(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    zone_offset, zone_congestion = rng.normal(0, 0.03, ZONES), rng.lognormal(0, 0.2, ZONES)
    zone = rng.integers(0, ZONES, count)
    return {"reliability": rng.beta(9, 1.2, count), "speed": rng.lognormal(0, 0.35, count),
            "zone": zone, "zone_offset": zone_offset[zone], "congestion": zone_congestion[zone],
            "level": rng.exponential(40, count)}


def _trades(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    irradiance = np.clip(rng.normal(450, 280, rows), 0, 1000)
    distance = _log_uniform(rng, 20, 3000, rows)
    return {"energy_wh": _log_uniform(rng, 100, 8000, rows), "price_per_kwh": rng.uniform(0.08, 0.35, rows),
            "irradiance_w_m2": irradiance, "temperature_c": rng.normal(14, 7, rows) + 0.012 * irradiance,
            "distance_m": distance,
            "line_efficiency": 0.995 - 2e-5 * distance - rng.uniform(0, 0.05, rows),
            "supply_demand_ratio": rng.lognormal(0, 0.5, rows)}


def _duration(rng, t, s) -> np.ndarray:
    work = 6 + t["energy_wh"] / 25 * (1 + 5 * (0.99 - t["line_efficiency"])) + t["distance_m"] / 150
    scarcity = 1 + 0.5 * np.maximum(0, 1 - t["supply_demand_ratio"])
    return s["speed"] * s["congestion"] * work * scarcity * rng.lognormal(0, 0.15, len(work))


def _quality(rng, t, s, duration) -> np.ndarray:
    sun_risk = 1 / (1 + np.exp(-4 * (t["energy_wh"] / (250 + 9 * t["irradiance_w_m2"]) - 1)))
    quality = (s["reliability"] + s["zone_offset"] - 0.3 * sun_risk
               - 0.005 * np.maximum(0, t["temperature_c"] - 28)
               - 1.5 * np.maximum(0, 0.96 - t["line_efficiency"])
               - 0.1 * np.maximum(0, 1 - t["supply_demand_ratio"])
               - 0.05 * duration / 300 + rng.normal(0, 0.03, len(duration)))
    failed = rng.random(len(duration)) < FAILURE_BASE + FAILURE_RISK * sun_risk
    quality = np.where(failed, rng.uniform(0, 0.5, len(duration)), quality)
    return np.clip(quality, 0, 1)


def _history(rng, s, rows) -> dict[str, np.ndarray]:
    trades = rng.poisson(s["level"])
    seen = np.maximum(trades, 1)
    quality = np.clip(s["reliability"] + s["zone_offset"] + rng.normal(0, 0.15 / np.sqrt(seen)), 0, 1) - 0.04
    duration = s["speed"] * s["congestion"] * 110 * rng.lognormal(0, 0.4 / np.sqrt(seen))
    none = trades == 0
    return {"seller_past_quality": np.where(none, np.nan, np.clip(quality, 0, 1)),
            "seller_participation": trades.astype(float),
            "seller_past_duration_s": np.where(none, np.nan, duration)}


def generate(rows: int, seed: int = 0) -> Dataset:
    """``rows`` synthetic trades drawn from the process in the module docstring."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be an int >= 1, got {rows!r}")
    rng = np.random.default_rng(seed)
    population = _sellers(rng, max(MIN_SELLERS, int(rows * SELLERS_PER_ROW)))
    seller = rng.integers(0, len(population["reliability"]), rows)
    s = {name: values[seller] for name, values in population.items()}
    t = _trades(rng, rows)
    duration = _duration(rng, t, s)
    quality = _quality(rng, t, s, duration)
    columns = t | _history(rng, s, rows) | {"zone": s["zone"].astype(float)}
    features = np.column_stack([columns[name] for name in FEATURES])
    return Dataset(np.ascontiguousarray(features), quality, duration, seller)
