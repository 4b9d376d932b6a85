"""Training data from ledgers: one row per co-signed DELIVERY settlement, held-out evaluation.

    dataset = rows_from_ledgers([Path("runs/x/node-0.db"), ...])
    report = evaluate_by_day(dataset)          # train on the first days, test on the last

Every settlement whose buyer's agreement is stored (in any of the ledgers) is one row, counted
once however many ledgers hold it.  Where trades were agreed ahead of delivery, those agreed
once their interval had ended (the balancing round: metered energy, delivered in full at once)
are left out as rows, and count in a seller's history as participation only: their outcome was
known when they were agreed (as :class:`p2pnode.reputation.Reputation` counts them).  The
labels are what the seller's meter measured: quality = delivered / agreed, duration = the
settlement's ``duration_ms``.  The features
(:data:`~models.features.FEATURES`) are what a buyer knew when it traded -- the time of the
seller's TRADE proposal:

=====================  ==========================================================================
transaction            agreed energy, price (the TRADE payload)
weather                estimated irradiance: the clear-sky irradiance at the traded interval's
                       middle (:mod:`models.clearsky`, at ``latitude``/``longitude``) times the
                       *clearness* of the latest interval measured before the trade -- the
                       generation in the ledgers' MINT readings over its clear-sky irradiation,
                       relative to the highest such ratio in the data (the fleet's size); 1
                       when nothing was measured in the :data:`CLEARNESS_LOOKBACK_S` before.
                       Temperature is not in a ledger: :data:`UNKNOWN_TEMPERATURE_C` (constant)
technical / location   ``locations`` (seller key -> (efficiency, distance m, zone)) when the caller
                       knows them (the simulator does); else the unknown-distance estimate
history                the seller's settlements completed before the trade: mean delivered share
                       and mean duration of those that show a delivery (NaN without), count of all
market                 sellers / buyers trading in the interval (a ledger has no view of the
                       offers; this is the nearest market-side measure it has)
=====================  ==========================================================================

Pure apart from reading the ledger files.  Training and evaluation use :mod:`models.train` (the
``[train]`` extra).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ledger import (
    BlockBody, BlockType, DeliveryPayload, LedgerStore, agreed_after, decode_envelope,
)
from models.clearsky import clear_sky_energy_wh_m2, clear_sky_ghi
from models.dataset import Dataset
from models.errors import ModelError
from models.forecast import DEFAULT_UTC_OFFSET_S   # the node clock minus UTC: the simulator's

__all__ = ["LedgerDataset", "evaluate_by_day", "evaluate_by_seller", "fit_all",
           "rows_from_ledgers"]

UNKNOWN_TEMPERATURE_C = 20.0
UNKNOWN_DISTANCE_M = 250.0       # as p2pnode.ranking assumes for a seller without coordinates
LOSS_PER_KM = 0.04
DEFAULT_LATITUDE, DEFAULT_LONGITUDE = 36.1, -79.9   # p2pnode.config.MarketConfig's defaults
MIN_DURATION_S = 0.001
CLEARNESS_LOOKBACK_S = 3 * 3600
MIN_CLEAR_SKY_WH_M2 = 25.0    # per interval: intervals darker than this say nothing of clouds
MAX_CLEARNESS = 1.2
HELD_OUT_SELLERS = 0.25
MIN_ROWS = 50


@dataclasses.dataclass(frozen=True, eq=False)
class LedgerDataset:
    """The rows (a :class:`~models.dataset.Dataset`) and each row's day (unix days)."""

    data: Dataset
    day: np.ndarray
    sellers: tuple[bytes, ...]   # seller ids of ``data.seller`` index this
    interval_s: np.ndarray | None = None   # each row's traded interval start (unix s)

    def __len__(self) -> int:
        return len(self.data)


@dataclasses.dataclass
class _Seen:
    # keyed by (seller, trade id): a trade id is the buyer's random choice, unique per seller
    trades: dict = dataclasses.field(default_factory=dict)        # -> (payload, time ms)
    deliveries: dict = dataclasses.field(default_factory=dict)    # -> (payload, time, seq)
    agreed: set = dataclasses.field(default_factory=set)          # (seller, seq) co-signed
    generation: dict = dataclasses.field(default_factory=dict)    # (meter, interval) -> Wh


def _scan(paths: Sequence[Path]) -> _Seen:
    seen = _Seen()
    for path in paths:
        store = LedgerStore(path, sync="normal")
        try:
            for author, seq, _, raw in store.raw_blocks():
                body = decode_envelope(raw, BlockBody)[0].message
                payload = body.payload
                if body.type is BlockType.MINT:
                    reading = payload.reading
                    seen.generation[(reading.meter, reading.interval_start_s)] = \
                        reading.generation_wh
                elif body.type is BlockType.TRADE and body.is_proposal:
                    seen.trades.setdefault((payload.seller, payload.trade_id),
                                           (payload, body.time_ms))
                elif body.type is BlockType.SETTLEMENT and isinstance(payload, DeliveryPayload):
                    if body.is_proposal:
                        seen.deliveries.setdefault((payload.seller, payload.trade_id),
                                                   (payload, body.time_ms, seq))
                    else:
                        seen.agreed.add((body.link_key, body.link_seq))
        finally:
            store.close()
    return seen


def rows_from_ledgers(paths: Sequence[Path], *, interval_s: int = 900,
                      latitude: float = DEFAULT_LATITUDE, longitude: float = DEFAULT_LONGITUDE,
                      locations: Callable[[bytes], tuple[float, float, int]] | None = None,
                      half_life_s: float | None = None,
                      utc_offset_s: int = DEFAULT_UTC_OFFSET_S) -> LedgerDataset:
    """The co-signed DELIVERY settlements in the ledger files ``paths`` as training rows.

    Ledger times are the node clock; ``utc_offset_s`` is that clock minus UTC (the simulator's
    local standard time by default; 0 for daemons on the wall clock), which places the sun.
    """
    seen = _scan([Path(p) for p in paths])
    settled = []
    for key, (delivery, time_ms, seq) in seen.deliveries.items():
        trade = seen.trades.get(key)
        if trade is None or (delivery.seller, seq) not in seen.agreed or delivery.agreed_wh <= 0:
            continue
        settled.append((trade[1], time_ms, trade[0], delivery))
    if not settled:
        raise ModelError("the ledgers hold no co-signed DELIVERY settlement")
    spot = {s[2].trade_id for s in settled
            if agreed_after(s[2].interval_start_s, interval_s, s[0])}
    completed = sorted(((t_settled, d, d.trade_id in spot and d.delivered_wh >= d.agreed_wh)
                        for _, t_settled, _, d in settled), key=lambda s: s[0])
    # trades agreed once their interval was metered (the balancing round) were delivered in
    # full at once: beside trades made ahead they are no rows (their history counts them)
    if len(spot) < len(settled):
        settled = [s for s in settled if s[2].trade_id not in spot]
    settled.sort(key=lambda s: s[0])   # by the time the buyer decided
    by_interval: dict[int, tuple[set, set]] = {}
    for _, _, trade, _ in settled:
        sellers, buyers = by_interval.setdefault(trade.interval_start_s, (set(), set()))
        sellers.add(trade.seller)
        buyers.add(trade.buyer)
    clearness = _clearness(seen.generation, interval_s, latitude, longitude, utc_offset_s)
    measured = sorted(clearness)
    # seller -> [agreed, delivered, count, duration sum, time ms of the sums, count of the
    # sums]; with a half-life the sums decay with the time since each settlement
    history: dict[bytes, list[float]] = {}
    done = 0
    seller_ids: dict[bytes, int] = {}
    rows, quality, duration, seller_col, day, starts = [], [], [], [], [], []
    for decided_ms, _, trade, delivery in settled:
        while done < len(completed) and completed[done][0] < decided_ms:
            at, d, metered = completed[done]
            h = history.setdefault(d.seller, [0.0, 0.0, 0, 0.0, at, 0])
            _decay(h, at, half_life_s)
            h[2] += 1
            if not metered:
                h[0] += d.agreed_wh
                h[1] += d.delivered_wh
                h[3] += d.duration_ms / 1000
                h[5] += 1
            done += 1
        h = history.get(trade.seller)
        if h is not None:
            h = list(h)
            _decay(h, decided_ms, half_life_s)
            h[2] = history[trade.seller][2]
        middle = trade.interval_start_s + interval_s / 2
        efficiency, distance, zone = locations(trade.seller) if locations else (
            1 - LOSS_PER_KM * UNKNOWN_DISTANCE_M / 1000, UNKNOWN_DISTANCE_M, 0)
        sellers, buyers = by_interval[trade.interval_start_s]
        sky = _latest(clearness, measured, decided_ms / 1000 - interval_s)
        rows.append((trade.energy_wh, trade.price_micro_per_kwh / 1e6,
                     sky * float(clear_sky_ghi(middle - utc_offset_s, latitude, longitude)), UNKNOWN_TEMPERATURE_C,
                     efficiency, distance, zone,
                     h[1] / h[0] if h and h[0] else math.nan, h[2] if h else 0,
                     h[3] / h[5] if h and h[5] else math.nan, len(sellers) / len(buyers)))
        quality.append(delivery.delivered_wh / delivery.agreed_wh)
        duration.append(max(MIN_DURATION_S, delivery.duration_ms / 1000))
        seller_col.append(seller_ids.setdefault(trade.seller, len(seller_ids)))
        day.append(trade.interval_start_s // 86400)
        starts.append(trade.interval_start_s)
    data = Dataset(np.array(rows, dtype=np.float64), np.array(quality), np.array(duration),
                   np.array(seller_col))
    return LedgerDataset(data, np.array(day), tuple(seller_ids), np.array(starts))


def _decay(h: list, now_ms: float, half_life_s: float | None) -> None:
    if half_life_s:
        factor = 0.5 ** (max(0.0, now_ms - h[4]) / 1000 / half_life_s)
        h[0] *= factor
        h[1] *= factor
        h[4] = now_ms


def _clearness(generation: dict, interval_s: int, latitude: float, longitude: float,
               utc_offset_s: int) -> dict[int, float]:
    """Interval start -> measured generation over clear-sky irradiation, scaled to 0..1.2."""
    total: dict[int, int] = {}
    for (_, start), wh in generation.items():
        total[start] = total.get(start, 0) + wh
    if not total:
        return {}
    starts = np.array(sorted(total))
    sky = clear_sky_energy_wh_m2(starts - utc_offset_s, interval_s, latitude, longitude)
    lit = sky >= MIN_CLEAR_SKY_WH_M2
    if not lit.any():
        return {}
    ratio = np.array([total[s] for s in starts])[lit] / sky[lit]
    scale = float(ratio.max()) or 1.0
    return {int(s): min(MAX_CLEARNESS, r / scale) for s, r in zip(starts[lit], ratio)}


def _latest(clearness: dict[int, float], measured: list[int], before_s: float) -> float:
    """The clearness of the latest interval that started before ``before_s`` (1 if none
    within :data:`CLEARNESS_LOOKBACK_S`)."""
    import bisect
    i = bisect.bisect_right(measured, before_s) - 1
    if i < 0 or measured[i] < before_s - CLEARNESS_LOOKBACK_S:
        return 1.0
    return clearness[measured[i]]


# Ensembles tried for the few hundred rows of a ledger, the first being models.train's default;
# :func:`choose_params` picks one per target by cross-validation on the training rows only.
# The last two, smaller still, were added when a benchmark run's quality margin over the best
# baseline was 0.065 (another run's -0.02): on two kept sets of benchmark ledgers
# (benchmarks/reputation.py --quick --repeats 3 --keep), quality margin 0.315 -> 0.297 and
# 0.065 -> 0.183, duration margin 0.442 -> 0.413 and 0.403 -> 0.403.
CANDIDATE_PARAMS = (
    {},
    {"max_iter": 100, "max_leaf_nodes": 7, "learning_rate": 0.05, "min_samples_leaf": 20},
    {"max_iter": 60, "max_leaf_nodes": 4, "learning_rate": 0.05, "min_samples_leaf": 30},
    {"max_iter": 40, "max_leaf_nodes": 4, "learning_rate": 0.05, "min_samples_leaf": 40},
    {"max_iter": 30, "max_leaf_nodes": 3, "learning_rate": 0.05, "min_samples_leaf": 60},
)
# Physically signed effects the duration ensemble must respect (scikit-learn's ``monotonic_cst``:
# +1 increasing, -1 decreasing): more sun and a better record mean delivery completes sooner, a
# bigger trade later.  A training day or two cannot show how a cloudier day behaves; with the
# constraints the trees do not invert these effects between days.  Measured on five sets of
# benchmark ledgers (benchmarks/reputation.py --keep), held-out duration R2 minus the best
# baseline, mean over the five: -0.50 without, -0.36 with (better on two, worse on three by
# less).  Constraining quality the same way made it slightly worse on four of five: not done.
MONOTONE = {"quality": {},
            "duration": {"irradiance_w_m2": -1, "seller_past_quality": -1, "energy_wh": 1}}
CV_FOLDS = 4
CV_BLOCK_S = 3 * 3600      # rows are held out in contiguous blocks of time (weather persists)


def _monotone(target: str, params: dict) -> dict:
    from models.features import FEATURES
    signs = MONOTONE[target]
    if not signs:
        return dict(params)
    return {**params, "monotonic_cst": [signs.get(name, 0) for name in FEATURES]}


def choose_params(train: Dataset, blocks: np.ndarray, seed: int) -> tuple[dict, dict]:
    """(quality params, duration params) from :data:`CANDIDATE_PARAMS` with the best mean R2
    over :data:`CV_FOLDS` folds of ``train`` grouped by ``blocks`` (the held-out data are not
    looked at)."""
    from sklearn.metrics import r2_score
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, user_api="openmp"):   # as models.train.fit (small data)
        return _choose(train, blocks, seed, r2_score)


def _choose(train: Dataset, blocks: np.ndarray, seed: int, r2_score) -> tuple[dict, dict]:
    from models.train import _regressor
    groups = np.unique(blocks)
    folds = [groups[i::CV_FOLDS] for i in range(CV_FOLDS)]
    best = []
    for target, label in (("quality", train.quality), ("duration", np.log(train.duration_s))):
        scores = []
        for params in CANDIDATE_PARAMS:
            fold_scores = []
            for held in folds:
                test = np.isin(blocks, held)
                if test.sum() < 2 or (~test).sum() < MIN_ROWS // 2:
                    continue
                model = _regressor(seed, _monotone(target, params)).fit(
                    train.features[~test], label[~test])
                predicted = model.predict(train.features[test])
                truth = label[test]
                if target == "duration":
                    predicted, truth = np.exp(predicted), np.exp(truth)
                fold_scores.append(r2_score(truth, predicted))
            scores.append(np.mean(fold_scores) if fold_scores else -math.inf)
        best.append(_monotone(target, CANDIDATE_PARAMS[int(np.argmax(scores))]))
    return best[0], best[1]


def _fit_and_score(train: Dataset, test: Dataset, seed: int,
                   blocks: np.ndarray | None = None) -> dict:
    from models.predictor import Predictor
    from models.train import evaluate, fit
    from models.trees import export
    params = choose_params(train, blocks, seed) if blocks is not None else (
        _monotone("quality", {}), _monotone("duration", {}))
    quality, duration = fit(train, seed, *params)
    predictor = Predictor(export(quality), export(duration))
    evaluation = evaluate(lambda x: predictor.predict(x, check=False), train, test)
    out = {"rows_train": len(train), "rows_test": len(test)}
    for target, short in (("quality", "quality"), ("duration_s", "duration")):
        scores = evaluation.scores[target]
        out[f"{short}_r2"] = round(scores["model"].r2, 4)
        out[f"{short}_r2_mean"] = round(scores["mean"].r2, 4)
        out[f"{short}_r2_seller_past"] = round(scores["seller_past"].r2, 4)
        out[f"{short}_r2_baseline"] = max(out[f"{short}_r2_mean"], out[f"{short}_r2_seller_past"])
    return out


def _check_split(train: Dataset, test: Dataset, what: str) -> None:
    if len(train) < MIN_ROWS or len(test) < MIN_ROWS // 5:
        raise ModelError(f"too few settlements to hold out {what}: {len(train)} to train, "
                         f"{len(test)} to test (need {MIN_ROWS} and {MIN_ROWS // 5})")


def _blocks(dataset: LedgerDataset, rows: np.ndarray) -> np.ndarray | None:
    if dataset.interval_s is None:
        return None
    return dataset.interval_s[rows] // CV_BLOCK_S


def evaluate_by_day(dataset: LedgerDataset, seed: int = 0) -> dict:
    """Train on every day but the last, score on the last: ``quality_r2_ledger`` etc."""
    last = dataset.day.max()
    train_rows = np.flatnonzero(dataset.day < last)
    test_rows = np.flatnonzero(dataset.day == last)
    train, test = dataset.data.subset(train_rows), dataset.data.subset(test_rows)
    _check_split(train, test, "the last day")
    scores = _fit_and_score(train, test, seed, _blocks(dataset, train_rows))
    return {f"{k.replace('_r2', '_r2_ledger', 1)}" if "_r2" in k else f"ledger_{k}": v
            for k, v in scores.items()}


def evaluate_by_seller(dataset: LedgerDataset, seed: int = 0) -> dict:
    """Train on 75 % of the sellers, score on the others' settlements (``*_by_seller``)."""
    sellers = np.unique(dataset.data.seller)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(sellers, max(1, int(len(sellers) * HELD_OUT_SELLERS)), replace=False))
    mask = np.array([s in held for s in dataset.data.seller])
    train, test = dataset.data.subset(np.flatnonzero(~mask)), dataset.data.subset(np.flatnonzero(mask))
    _check_split(train, test, "a quarter of the sellers")
    scores = _fit_and_score(train, test, seed, _blocks(dataset, np.flatnonzero(~mask)))
    return {f"{k}_by_seller": v for k, v in scores.items()}


def fit_all(dataset: LedgerDataset, seed: int = 0):
    """The :class:`~models.predictor.Predictor` fitted on every row (what ``p2pnode train
    --ledgers`` writes, in the versioned format of :mod:`models.store`)."""
    from models.predictor import Predictor
    from models.train import fit
    from models.trees import export
    if len(dataset) < MIN_ROWS:
        raise ModelError(f"too few settlements to train on: {len(dataset)} (need {MIN_ROWS})")
    everything = np.arange(len(dataset))
    quality, duration = fit(dataset.data, seed,
                            *choose_params(dataset.data, _blocks(dataset, everything), seed))
    return Predictor(export(quality), export(duration),
                     trained={"source": "ledgers", "rows": len(dataset), "seed": seed,
                              "sellers": len(dataset.sellers)})
