"""Predictors trained on ledger data (models.ledger_data, ``p2pnode train --ledgers``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models import Predictor
from models.errors import ModelError
from models.features import FEATURES
from models.ledger_data import evaluate_by_day, evaluate_by_seller, rows_from_ledgers
from p2pnode.cli import main
from tests.test_trackrecord import Market

RELIABILITY = {"good": 1.0, "bad": 0.4, "fair": 0.8}
PER_DAY = 96


def markets(tmp_path, days: int = 2, per_day: int = 24) -> list[Market]:
    out = []
    for name, share in RELIABILITY.items():
        market = Market(tmp_path / name, buyers=2, seller=f"seller-{name}")
        for d in range(days):
            for i in range(per_day):
                agreed = 200 + 37 * i
                market.trade(d * PER_DAY + 20 + i, agreed, int(agreed * share), buyer=i % 2)
        out.append(market)
    return out


def files(found: list[Market]) -> list:
    paths = []
    for market in found:
        paths += [market.seller.store.path] + [b.store.path for b in market.buyers]
    return paths


def test_rows_are_the_cosigned_settlements_once_with_history_before_the_trade(tmp_path):
    found = markets(tmp_path, days=1, per_day=5)
    found[0].trade(30, 500, 500, cosign=False)    # not co-signed: no row
    dataset = rows_from_ledgers(files(found))
    assert len(dataset) == 15                      # each held by seller and buyer: counted once
    data = dataset.data
    past = data.column("seller_past_quality")
    participation = data.column("seller_participation")
    for seller in range(3):
        mine = np.flatnonzero(data.seller == seller)
        assert math.isnan(past[mine[0]]) and participation[mine[0]] == 0
        assert list(participation[mine]) == [0, 1, 2, 3, 4]
        assert past[mine[-1]] == pytest.approx(data.quality[mine[:-1]].sum()
                                               / len(mine[:-1]), abs=0.01)
    assert sorted(set(np.round(data.quality, 2))) == [0.4, 0.8, 1.0]
    assert (data.duration_s == 60.0).all()
    assert data.features.shape[1] == len(FEATURES)


def test_trades_agreed_once_their_interval_was_metered_are_left_out_beside_trades_ahead(
        tmp_path):
    """A balancing-round trade (agreed after its interval ended, delivered in full at once) has
    no outcome to learn; among trades made ahead it is no row, and in the seller's history it
    counts as participation only (as the live reputation counts it).  Ledgers of the ex-post
    market alone (every trade metered) still give their rows."""
    from tests.test_trackrecord import DAY, INTERVAL_S
    found = markets(tmp_path, days=1, per_day=5)
    bad = found[1]                                   # delivers 0.4 of what it sells ahead
    bad.clock_ms = (DAY + 40 * INTERVAL_S) * 1000    # interval 30 is over
    bad.trade(30, 500, 500)
    bad.trade(60, 500, 200)                          # ahead again
    dataset = rows_from_ledgers(files(found))
    assert len(dataset) == 16   # the trade agreed after its interval is no row
    data = dataset.data
    last = np.flatnonzero(data.seller == data.seller[np.argmin(data.quality)])[-1]
    assert data.column("seller_participation")[last] == 6          # 5 ahead + 1 metered
    assert data.column("seller_past_quality")[last] == pytest.approx(0.4, abs=0.01)
    assert data.column("seller_past_duration_s")[last] == pytest.approx(60.0)
    late = Market(tmp_path / "late", buyers=1, seller="seller-late")
    late.clock_ms = (DAY + 40 * INTERVAL_S) * 1000
    for slot in (30, 31, 32):
        late.trade(slot, 300, 300)
    assert len(rows_from_ledgers(files([late]))) == 3


def test_irradiance_is_the_clear_sky_at_the_node_clocks_local_time(tmp_path):
    """Ledger times are the node clock, local standard time (UTC-5 by default): a trade at local
    noon sees the midday sun, one at local 01:00 sees none (read as UTC, the sun would peak at
    local 12:00 + 5 h)."""
    market = Market(tmp_path / "sun", buyers=1, seller="seller-sun")
    slots = {"night": 4, "morning": 28, "noon": 48, "evening": 68}    # local 01:00 ... 17:00
    for slot in slots.values():
        market.trade(slot, 500, 500)
    dataset = rows_from_ledgers([market.seller.store.path, market.buyers[0].store.path])
    sun = dict(zip(slots, dataset.data.column("irradiance_w_m2")))
    assert sun["night"] == 0.0
    assert sun["noon"] > 1.5 * max(sun["morning"], sun["evening"]) > 0
    shifted = rows_from_ledgers([market.seller.store.path], utc_offset_s=0)
    assert dict(zip(slots, shifted.data.column("irradiance_w_m2")))["evening"] > sun["evening"]


def test_held_out_day_and_sellers_against_the_baselines(tmp_path):
    dataset = rows_from_ledgers(files(markets(tmp_path)))
    by_day = evaluate_by_day(dataset)
    assert by_day["ledger_rows_test"] == 3 * 24 and by_day["ledger_rows_train"] == 3 * 24
    # the sellers' reliabilities are the signal; the training mean knows nothing of them
    assert by_day["quality_r2_ledger"] > by_day["quality_r2_ledger_mean"] + 0.5
    assert by_day["quality_r2_ledger_baseline"] == max(by_day["quality_r2_ledger_mean"],
                                                       by_day["quality_r2_ledger_seller_past"])
    by_seller = evaluate_by_seller(dataset)
    assert by_seller["rows_test_by_seller"] == 2 * 24   # one seller of three held out
    with pytest.raises(ModelError, match="too few"):
        evaluate_by_day(rows_from_ledgers(files(markets(tmp_path / "small", days=2, per_day=3))))


def test_train_command_on_ledgers_writes_a_versioned_model(tmp_path, capsys):
    found = markets(tmp_path)
    out = tmp_path / "ledger-model.npz"
    for market in found:
        for ledger in (market.seller, *market.buyers):
            ledger.store.close()
    assert main(["train", "--ledgers", *[str(tmp_path / n) for n in RELIABILITY],
                 "--out", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["ledger_rows"] == 3 * 2 * 24 and "quality_r2_ledger" in metrics
    predictor = Predictor.load(out)
    assert predictor.trained["source"] == "ledgers" and predictor.trained["rows"] == 144
    assert predictor.metrics["quality_r2_ledger"] == metrics["quality_r2_ledger"]
    assert main(["train", "--ledgers", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["train", "--ledgers", str(tmp_path / "good"), "--utc-offset-h", "-25",
                 "--out", str(out)]) == 2
    assert "--utc-offset-h" in capsys.readouterr().err


def test_the_ensemble_is_chosen_on_the_training_rows_by_blocks_of_time():
    """Labels that are noise: cross-validation prefers a smaller ensemble than the default
    (which would fit the noise); labels that follow a feature: the choice keeps the signal."""
    from models.dataset import Dataset
    from models.ledger_data import CANDIDATE_PARAMS, choose_params
    rng = np.random.default_rng(3)
    rows = 400
    features = rng.uniform(0, 1, (rows, len(FEATURES)))
    blocks = np.repeat(np.arange(20), rows // 20)
    noise = Dataset(features, rng.uniform(0, 1, rows), rng.uniform(100, 200, rows),
                    np.zeros(rows, dtype=int))
    quality_params, duration_params = choose_params(noise, blocks, seed=0)
    duration_params = {k: v for k, v in duration_params.items() if k != "monotonic_cst"}
    assert quality_params != CANDIDATE_PARAMS[0] and duration_params != CANDIDATE_PARAMS[0]
    # duration falls with irradiance (column 2), as the duration ensemble is constrained to
    signal = Dataset(features, features[:, 0], 200 - 100 * features[:, 2], np.zeros(rows, dtype=int))
    from threadpoolctl import threadpool_limits

    from models.train import _regressor
    chosen = choose_params(signal, blocks, seed=0)
    with threadpool_limits(1, user_api="openmp"):
        models = [_regressor(0, params).fit(features[:300], column[:300])
                  for params, column in zip(chosen, (signal.quality, np.log(signal.duration_s)))]
    for model, column in zip(models, (signal.quality, np.log(signal.duration_s))):
        residual = model.predict(features[300:]) - column[300:]
        assert np.mean(residual ** 2) < 0.1 * np.var(column[300:])


def test_the_duration_ensemble_cannot_invert_the_physical_effects():
    """Training rows where duration *rises* with irradiance (noise of one day, say): the
    constrained ensemble still does not predict longer deliveries in more sun."""
    from models.dataset import Dataset
    from models.ledger_data import choose_params
    from models.train import fit
    rng = np.random.default_rng(5)
    rows = 400
    features = rng.uniform(0, 1, (rows, len(FEATURES)))
    column = FEATURES.index("irradiance_w_m2")
    backwards = Dataset(features, rng.uniform(0, 1, rows), 100 + 100 * features[:, column],
                        np.zeros(rows, dtype=int))
    params = choose_params(backwards, np.repeat(np.arange(20), rows // 20), seed=0)
    assert params[1]["monotonic_cst"][column] == -1
    _, duration = fit(backwards, 0, *params)
    sweep = np.tile(features[:1], (11, 1))
    sweep[:, column] = np.linspace(0, 1, 11)
    assert (np.diff(duration.predict(sweep)) <= 1e-12).all()
    unconstrained = fit(backwards, 0)[1].predict(sweep)
    assert unconstrained[-1] > unconstrained[0]   # the data alone would have said the opposite
