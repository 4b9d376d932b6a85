"""Predictors: the synthetic history, held-out skill against naive baselines, safe files."""

from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import FunctionTransformer

from models import (
    FEATURES, FeatureError, ModelFileError, ModelVersionError, Predictor, SchemaError,
    TransactionFeatures, generate, train,
)
from models import store
from models.features import CURRENT_SCHEMA, check_ranges


@pytest.fixture(scope="module")
def trained():
    return train(rows=6000, seed=1)


def test_dataset_is_seeded_and_in_range():
    first, again, other = generate(500, seed=3), generate(500, seed=3), generate(500, seed=4)
    assert np.array_equal(first.features, again.features, equal_nan=True)
    assert np.array_equal(first.quality, again.quality)
    assert not np.array_equal(first.quality, other.quality)
    check_ranges(first.features)
    assert ((first.quality >= 0) & (first.quality <= 1)).all() and (first.duration_s > 0).all()
    newcomer = first.column("seller_participation") == 0
    assert np.isnan(first.column("seller_past_quality")[newcomer]).all()
    assert not np.isnan(first.column("seller_past_quality")[~newcomer]).any()


def test_predictions_beat_naive_baselines_on_held_out_rows(trained):
    _, evaluation = trained
    for target in ("quality", "duration_s"):
        scores = evaluation.scores[target]
        for baseline in ("mean", "seller_past"):
            assert scores["model"].r2 >= scores[baseline].r2 + 0.3, (target, baseline)
            assert scores["model"].mae < 0.75 * scores[baseline].mae, (target, baseline)
    assert "quality" in evaluation.table() and "seller_past" in evaluation.table()


def test_predict_accepts_dataclasses_and_arrays_alike(trained):
    predictor, _ = trained
    rows = generate(30, seed=9).features
    objects = [TransactionFeatures(*row) for row in rows]
    quality, duration = predictor.predict(rows)
    assert np.array_equal(quality, predictor.predict(objects)[0])
    assert ((quality >= 0) & (quality <= 1)).all() and (duration > 0).all()
    assert predictor.predict(np.zeros((0, len(FEATURES))))[0].shape == (0,)


def test_bad_features_are_named(trained):
    predictor, _ = trained
    rows = generate(5, seed=2).features
    with pytest.raises(FeatureError, match="shape"):
        predictor.predict(rows[:, :-1])
    broken = rows.copy()
    broken[2, FEATURES.index("line_efficiency")] = 1.7
    with pytest.raises(FeatureError, match="line_efficiency"):
        predictor.predict(broken)
    broken = rows.copy()
    broken[0, FEATURES.index("energy_wh")] = math.nan
    with pytest.raises(FeatureError, match="energy_wh"):
        predictor.predict(broken)


def test_save_and_load_round_trip(trained, tmp_path):
    predictor, _ = trained
    path = tmp_path / "p.skops"
    predictor.save(path)
    loaded = Predictor.load(path)
    rows = generate(50, seed=5).features
    for mine, theirs in zip(predictor.predict(rows), loaded.predict(rows)):
        assert np.array_equal(mine, theirs)
    assert loaded.metrics == predictor.metrics and loaded.trained == {"rows": 6000, "seed": 1}


def _rewrite(path, **changes):
    payload = skops.io.load(path, trusted=sorted(store.EXPECTED_TYPES))
    payload.update(changes)
    skops.io.dump(payload, path)


def test_schema_mismatch_is_a_clear_error(trained, tmp_path):
    path = tmp_path / "p.skops"
    trained[0].save(path)
    names = [n for n in CURRENT_SCHEMA.names if n != "distance_m"] + ["wind_speed"]
    _rewrite(path, schema={"version": CURRENT_SCHEMA.version, "names": names})
    with pytest.raises(SchemaError, match=r"missing \['distance_m'\], unexpected \['wind_speed'\]"):
        Predictor.load(path)
    _rewrite(path, schema={"version": CURRENT_SCHEMA.version + 1, "names": list(CURRENT_SCHEMA.names)})
    with pytest.raises(SchemaError, match="schema version"):
        Predictor.load(path)


@pytest.mark.parametrize("changes, message", [
    ({"format_version": 99}, "format version 99"),
    ({"sklearn": "0.1"}, "scikit-learn 0.1"),
])
def test_version_mismatch_is_a_clear_error(trained, tmp_path, changes, message):
    path = tmp_path / "p.skops"
    trained[0].save(path)
    _rewrite(path, **changes)
    with pytest.raises(ModelVersionError, match=message):
        Predictor.load(path)


def test_corrupt_missing_and_foreign_files_are_refused(trained, tmp_path):
    path = tmp_path / "p.skops"
    with pytest.raises(ModelFileError, match="no model file"):
        Predictor.load(path)
    trained[0].save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a readable skops model file"):
        Predictor.load(path)
    with zipfile.ZipFile(tmp_path / "z.skops", "w") as archive:
        archive.writestr("schema.json", "{not json")
    with pytest.raises(ModelFileError):
        Predictor.load(tmp_path / "z.skops")
    skops.io.dump({"format": store.FORMAT, "quality": FunctionTransformer(func=eval)}, tmp_path / "f.skops")
    with pytest.raises(ModelFileError, match=r"unexpected types \['builtins.eval'\]"):
        Predictor.load(tmp_path / "f.skops")
    trained[0].save(path)
    _rewrite(path, duration=LinearRegression())
    with pytest.raises(ModelFileError, match="duration model is LinearRegression"):
        Predictor.load(path)
    skops.io.dump({"format": "something-else"}, tmp_path / "o.skops")
    with pytest.raises(ModelFileError, match="not a p2p-energy-predictor file"):
        Predictor.load(tmp_path / "o.skops")


def test_default_is_trained_and_written_when_missing(tmp_path):
    path = tmp_path / "default.skops"
    created = Predictor.default(path, rows=2000)
    assert path.is_file()
    rows = generate(20, seed=1).features
    assert np.array_equal(created.predict(rows)[1], Predictor.default(path).predict(rows)[1])
    path.write_bytes(b"garbage")
    assert Predictor.default(path, write=False, rows=2000).predict(rows)[0].shape == (20,)
    assert path.read_bytes() == b"garbage"
