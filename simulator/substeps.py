"""Sub-interval readings (default one minute) derived from the interval profiles.

Trading ahead of delivery measures a seller's actual surplus in sub-steps of the interval.  The
profiles (:mod:`simulator.profiles`) hold one energy per house and 15-minute interval; this module
spreads each interval's energy over its sub-steps with realistic, seeded variability.  The
sub-steps of an interval sum **exactly** to the interval's whole-Wh energy, so interval totals,
every interval-level baseline and the perfect-foresight optimum are unchanged.  Pure numpy:
arrays and a ``numpy.random.Generator`` in, integer arrays ``[house, interval, sub-step]`` out.

**PV: clouds under a clear-sky envelope.**

1. *Envelope.* ``clear_sky_wh_m2[i, j]`` is the clear-sky irradiation of sub-step ``j`` of
   interval ``i`` (:func:`clear_sky_substeps`, from :mod:`models.clearsky` at the site).  Each
   house's clear-sky capacity ``c_h`` is its largest ratio of interval energy to clear-sky
   irradiation over the intervals with the sun well up (clear-sky irradiation at least
   ``SUNNY_SHARE`` of the run's peak), so on the clearest interval of the run the house is at
   its envelope.  The envelope of a sub-step is ``c_h * clear_sky_wh_m2[i, j]``, raised for an
   interval to that interval's own energy where the roof's orientation makes it produce more
   than ``c_h`` times the horizontal clear sky.  The capacity is learnt from the run itself, so
   a run of a single overcast day would have a low envelope and flicker little: given the
   houses' ``pv_kwp``, ``c_h`` is at least ``PERFORMANCE_RATIO * kWp``.
2. *Clear-sky index.* ``k = E / envelope`` of the interval (0 overcast .. 1 clear).
3. *Clouds.* A standard normal AR(1) process per house over the sub-steps of the whole run,
   correlation time ``CLOUD_CORRELATION_S`` (cloud passages last minutes), continuous across
   interval borders; a share ``SHARED_CLOUDS`` of its variance is common to all houses (they are
   neighbours under the same clouds).  A sub-step's index is ``clip(k + CLOUD_AMPLITUDE *
   sqrt(k (1 - k)) z, 0, 1)``: no flicker under a clear or a fully overcast sky, the most under
   broken clouds (``k`` near 0.5), where the index swings between shade and full sun.
4. *Exact energy.* The interval's energy is split in proportion to envelope x index, any share
   above a sub-step's envelope moved to the other sub-steps in proportion to their headroom
   (so no sub-step exceeds its envelope), then rounded to whole Wh on the running sum (each
   part within 1 Wh of its share).  The envelope therefore holds to within the 1 Wh of
   rounding.

Without ``clear_sky_wh_m2`` there is no cloud model: PV follows the interval energies linearly
interpolated between interval midpoints (a smooth ramp) and is rounded the same way.

**Load: base plus appliance spikes.**  A house's base load (fridge, standby) is its
``BASE_QUANTILE`` quantile of interval energy over the run, spread evenly; the rest of an
interval's energy comes from ``1 + Poisson(SPIKES_MEAN)`` appliance events (at most
``MAX_SPIKES``), each switched on at a uniform sub-step for a uniform whole number of sub-steps
up to ``SPIKE_MAX_S`` (one to six minutes at one-minute sub-steps; cut at the interval's end)
with a uniform random share of that energy at constant power: a kettle, an oven cycle, a
washing-machine heater.  Then the same exact rounding.

Speed: 1000 houses x 96 intervals x 15 sub-steps take about 0.2-0.3 s of CPU
(``substeps_cpu_ms`` of ``benchmarks/forecast.py``).
"""

from __future__ import annotations

import numpy as np

from models.clearsky import clear_sky_energy_wh_m2

DEFAULT_SUBSTEPS = 15
CLOUD_CORRELATION_S = 300.0
CLOUD_AMPLITUDE = 1.0
SHARED_CLOUDS = 0.7
SUNNY_SHARE = 0.3
BASE_QUANTILE = 0.1
SPIKES_MEAN = 1.0
MAX_SPIKES = 3
SPIKE_MAX_S = 360
PERFORMANCE_RATIO = 0.8
"""Wh per Wh/m2 of clear-sky irradiation per installed kWp (PVWatts' 14 % losses and 96 %
inverter efficiency, before temperature losses): the floor ``pv_kwp`` puts under a capacity."""


def substep_readings(generation_wh, consumption_wh, rng: np.random.Generator,
                     substeps_per_interval: int = DEFAULT_SUBSTEPS, *, interval_s: int = 900,
                     clear_sky_wh_m2: np.ndarray | None = None,
                     pv_kwp: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sub-step generation and consumption, int64 arrays ``[house, interval, sub-step]``.

    ``generation_wh``/``consumption_wh``: whole, non-negative Wh per ``[house, interval]``;
    ``clear_sky_wh_m2``: ``[interval, sub-step]`` clear-sky irradiation (enables the cloud
    model; see the module docstring); ``pv_kwp``: the houses' installed PV, a floor under the
    clear-sky capacity learnt from the run.  Draws: clouds first, then load spikes.
    """
    generation = _whole("generation_wh", generation_wh)
    consumption = _whole("consumption_wh", consumption_wh)
    if generation.shape != consumption.shape:
        raise ValueError(f"generation_wh {generation.shape} and consumption_wh "
                         f"{consumption.shape} differ in shape")
    if not isinstance(substeps_per_interval, int) or substeps_per_interval < 1 \
            or interval_s % substeps_per_interval:
        raise ValueError(f"substeps_per_interval={substeps_per_interval!r}: must be a positive "
                         f"integer dividing interval_s={interval_s}")
    steps = substeps_per_interval
    if clear_sky_wh_m2 is None:
        pv = allocate(generation, _ramp(generation, steps))
    else:
        clear_sky = np.asarray(clear_sky_wh_m2, dtype=np.float64)
        if clear_sky.shape != (generation.shape[1], steps):
            raise ValueError(f"clear_sky_wh_m2 has shape {clear_sky.shape}, expected "
                             f"{(generation.shape[1], steps)} (intervals, sub-steps)")
        floor = None if pv_kwp is None else \
            PERFORMANCE_RATIO * np.broadcast_to(np.asarray(pv_kwp, dtype=np.float64),
                                                generation.shape[:1])
        pv = cloudy_pv(generation, clear_sky, rng, interval_s // steps, floor)
    return pv, appliance_load(consumption, steps, rng, interval_s // steps)


def clear_sky_substeps(interval_start_utc_s, interval_s: int, substeps_per_interval: int,
                       latitude: float, longitude: float) -> np.ndarray:
    """Clear-sky irradiation (Wh/m2) per ``[interval, sub-step]`` for the cloud model.

    ``interval_start_utc_s`` are unix seconds in UTC (the simulator's naive local standard
    times minus the site's UTC offset).
    """
    step_s = interval_s // substeps_per_interval
    starts = np.asarray(interval_start_utc_s, dtype=np.float64)[:, None] \
        + np.arange(substeps_per_interval) * step_s
    return clear_sky_energy_wh_m2(starts, step_s, latitude, longitude, points=2)


def cloudy_pv(generation: np.ndarray, clear_sky: np.ndarray, rng: np.random.Generator,
              step_s: float, capacity_floor: np.ndarray | None = None) -> np.ndarray:
    """PV sub-steps under a clear-sky envelope with AR(1) clouds (module docstring, PV)."""
    envelope = _envelope(generation.astype(np.float64), clear_sky, capacity_floor)
    total = envelope.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.clip(np.where(total > 0, generation / total, 0.0), 0.0, 1.0)
    houses, intervals, steps = envelope.shape
    z = _clouds(rng, houses, intervals * steps, step_s).reshape(envelope.shape)
    index = np.clip(k[..., None] + CLOUD_AMPLITUDE * np.sqrt(k * (1 - k))[..., None] * z, 0, 1)
    weights = envelope * index
    flat = weights.sum(axis=2, keepdims=True) <= 0
    weights = np.where(flat, envelope, weights)
    shares = _proportional(generation.astype(np.float64), weights)
    return allocate(generation, _capped(shares, envelope))


def appliance_load(consumption: np.ndarray, steps: int, rng: np.random.Generator,
                   step_s: float) -> np.ndarray:
    """Load sub-steps: even base load plus rectangular appliance spikes (module docstring)."""
    energy = consumption.astype(np.float64)
    houses, intervals = energy.shape
    base_wh = np.minimum(energy, np.quantile(energy, BASE_QUANTILE, axis=1, keepdims=True))
    spiky_wh = energy - base_wh
    count = np.minimum(1 + rng.poisson(SPIKES_MEAN, (houses, intervals)), MAX_SPIKES)
    longest = max(1, int(round(SPIKE_MAX_S / step_s)))
    start = rng.integers(0, steps, (houses, intervals, MAX_SPIKES))
    length = rng.integers(1, longest + 1, (houses, intervals, MAX_SPIKES))
    share = (1.0 - rng.random((houses, intervals, MAX_SPIKES))) \
        * (np.arange(MAX_SPIKES) < count[..., None])
    share /= share.sum(axis=2, keepdims=True)
    j = np.arange(steps)
    on = (j >= start[..., None]) & (j < (start + length)[..., None])       # [h, i, spike, j]
    power = share / on.sum(axis=3)
    weights = (base_wh / steps)[..., None] + spiky_wh[..., None] * np.einsum("hik,hikj->hij",
                                                                             power, on)
    return allocate(consumption, weights)


def allocate(total_wh: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Whole-Wh split of each ``total_wh[h, i]`` over the last axis of ``weights``: in
    proportion to the weights (evenly where they are all zero), rounded on the running sum
    (each part is the difference of consecutive rounded partial sums), so every part is within
    1 Wh of its exact share, none is negative, a zero weight gets nothing and the parts sum
    exactly to the total."""
    total = np.asarray(total_wh, dtype=np.int64)
    running = np.cumsum(_proportional(total.astype(np.float64), weights), axis=-1)
    rounded = np.floor(running + 0.5).astype(np.int64)
    rounded[..., -1] = total                    # the float sum may be off by far less than 0.5
    return np.diff(rounded, axis=-1, prepend=0)


def _proportional(total: np.ndarray, weights: np.ndarray) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    sums = weights.sum(axis=-1, keepdims=True)
    even = np.full_like(weights, 1.0 / weights.shape[-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = np.where(sums > 0, weights / sums, even)
    return total[..., None] * fractions


def _capped(shares: np.ndarray, envelope: np.ndarray) -> np.ndarray:
    """Move what exceeds the envelope to the other sub-steps in proportion to their headroom."""
    excess = np.maximum(shares - envelope, 0).sum(axis=-1, keepdims=True)
    capped = np.minimum(shares, envelope)
    headroom = envelope - capped
    room = headroom.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return capped + np.where(room > 0, excess * headroom / room, 0.0)


def _envelope(generation: np.ndarray, clear_sky: np.ndarray,
              capacity_floor: np.ndarray | None = None) -> np.ndarray:
    """Clear-sky energy per ``[house, interval, sub-step]``, never below the interval's energy."""
    per_interval = clear_sky.sum(axis=1)
    sunny = per_interval >= SUNNY_SHARE * per_interval.max(initial=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(per_interval > 0, generation / per_interval, 0.0)
        capacity = np.where(sunny, ratio, 0.0).max(axis=1, initial=0.0)
        if capacity_floor is not None:
            capacity = np.maximum(capacity, capacity_floor)
        scale = np.maximum(capacity[:, None], ratio)
    envelope = scale[..., None] * clear_sky[None, :, :]
    no_sun = (per_interval <= 0)[None, :] & (generation > 0)
    envelope[no_sun] = generation[no_sun][:, None] / clear_sky.shape[1]
    return envelope


def _clouds(rng: np.random.Generator, houses: int, steps: int, step_s: float) -> np.ndarray:
    """Unit-variance AR(1) noise [house, step], a share SHARED_CLOUDS common to all houses.

    ``x[t] = phi x[t-1] + sqrt(1 - phi^2) e[t]`` computed as a convolution with the impulse
    response ``phi^n`` cut where it falls below 1e-6, after as many warm-up steps (FFT).
    """
    phi = float(np.exp(-step_s / CLOUD_CORRELATION_S))
    taps = max(1, int(np.ceil(np.log(1e-6) / np.log(phi)))) if phi > 0 else 1
    innovations = rng.standard_normal((houses + 1, steps + taps)) * np.sqrt(1 - phi * phi)
    size = 1 << int(np.ceil(np.log2(steps + 2 * taps)))
    kernel = np.fft.rfft(phi ** np.arange(taps), size)
    series = np.fft.irfft(np.fft.rfft(innovations, size, axis=1) * kernel, size, axis=1)
    series = series[:, taps:taps + steps]
    return np.sqrt(SHARED_CLOUDS) * series[:1] + np.sqrt(1 - SHARED_CLOUDS) * series[1:]


def _ramp(generation: np.ndarray, steps: int) -> np.ndarray:
    """Mean power linearly interpolated between interval midpoints, per sub-step (>= 0)."""
    energy = generation.astype(np.float64)
    before = np.concatenate([energy[:, :1], energy[:, :-1]], axis=1)
    after = np.concatenate([energy[:, 1:], energy[:, -1:]], axis=1)
    u = (np.arange(steps) + 0.5) / steps - 0.5
    rising = energy[..., None] + u * (energy - before)[..., None]
    falling = energy[..., None] + u * (after - energy)[..., None]
    return np.maximum(np.where(u < 0, rising, falling), 0.0)


def _whole(name: str, values) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a [house, interval] array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)) \
            or np.any(array < 0) or np.any(array != np.floor(array)):
        raise ValueError(f"{name} must hold whole, non-negative Wh")
    return array.astype(np.int64)
