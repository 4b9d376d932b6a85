"""Predictors: the synthetic history, held-out skill against naive baselines, the numpy
export that equals scikit-learn, safe files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models import (
    DEFAULT_MODEL_PATH, FEATURES, FeatureError, ModelFileError, ModelVersionError, Predictor,
    SchemaError, TransactionFeatures, export, generate, train,
)
from models import store
from models.features import CURRENT_SCHEMA, check_ranges
from models.train import DEFAULT_SEED, fit, split


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
    path = tmp_path / "p.npz"
    predictor.save(path)
    loaded = Predictor.load(path)
    rows = generate(50, seed=5).features
    for mine, theirs in zip(predictor.predict(rows), loaded.predict(rows)):
        assert np.array_equal(mine, theirs)
    assert loaded.metrics == predictor.metrics and loaded.trained == {"rows": 6000, "seed": 1}


def _contents(path) -> dict:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _rewrite(path, meta_changes=None, **arrays):
    """Rewrite a saved model with changed meta entries and/or replaced arrays."""
    contents = _contents(path)
    meta = json.loads(str(contents.pop("meta"))) | (meta_changes or {})
    contents.update(arrays)
    np.savez(path, meta=np.array(json.dumps(meta)), **contents)


def test_exported_trees_equal_scikit_learn_on_held_out_rows():
    dataset = generate(4000, seed=11)
    train_set, test_set = split(dataset, DEFAULT_SEED)
    quality, duration = fit(train_set)
    rows = test_set.features
    assert np.isnan(rows).any(), "held-out rows must include sellers without history (NaN)"
    for estimator in (quality, duration):
        ours = export(estimator)
        assert ours.trees == estimator.n_iter_
        difference = np.abs(ours.predict(rows) - estimator.predict(rows))
        assert difference.max() <= 1e-6
    extreme = rows[:50].copy()
    extreme[:, FEATURES.index("energy_wh")] = 1e9          # beyond every threshold seen
    extreme[:, FEATURES.index("seller_past_quality")] = np.nan
    assert np.abs(export(quality).predict(extreme) - quality.predict(extreme)).max() <= 1e-6


def test_export_refuses_what_it_cannot_express():
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    with pytest.raises(ValueError, match="not a fitted"):
        export(HistGradientBoostingRegressor())
    data = generate(400, seed=2)
    labels = (data.quality > 0.5).astype(int)
    classifier = HistGradientBoostingClassifier(max_iter=3).fit(data.features, labels)
    with pytest.raises(ValueError, match="identity link"):
        export(classifier)


def test_schema_mismatch_is_a_clear_error(trained, tmp_path):
    path = tmp_path / "p.npz"
    trained[0].save(path)
    names = [n for n in CURRENT_SCHEMA.names if n != "distance_m"] + ["wind_speed"]
    _rewrite(path, {"schema": {"version": CURRENT_SCHEMA.version, "names": names}})
    with pytest.raises(SchemaError, match=r"missing \['distance_m'\], unexpected \['wind_speed'\]"):
        Predictor.load(path)
    _rewrite(path, {"schema": {"version": CURRENT_SCHEMA.version + 1,
                               "names": list(CURRENT_SCHEMA.names)}})
    with pytest.raises(SchemaError, match="schema version"):
        Predictor.load(path)


@pytest.mark.parametrize("version", [1, 99, "2"])
def test_unknown_format_version_is_a_clear_error(trained, tmp_path, version):
    path = tmp_path / "p.npz"
    trained[0].save(path)
    _rewrite(path, {"format_version": version})
    with pytest.raises(ModelVersionError, match=f"format version {version!r}, this code reads "
                                                f"{store.FORMAT_VERSION}; retrain"):
        Predictor.load(path)


def test_corrupt_missing_and_foreign_files_are_refused(trained, tmp_path):
    path = tmp_path / "p.npz"
    with pytest.raises(ModelFileError, match="no model file"):
        Predictor.load(path)
    trained[0].save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a readable p2p-energy-predictor file"):
        Predictor.load(path)
    path.write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="not a readable"):
        Predictor.load(path)
    np.savez(tmp_path / "o.npz", meta=np.array(json.dumps({"format": "something-else"})))
    with pytest.raises(ModelFileError, match="not a p2p-energy-predictor file"):
        Predictor.load(tmp_path / "o.npz")
    np.savez(tmp_path / "code.npz", meta=np.array([{"format": store.FORMAT}], dtype=object))
    with pytest.raises(ModelFileError, match="not a readable"):       # pickles are never loaded
        Predictor.load(tmp_path / "code.npz")


@pytest.mark.parametrize("array, change, message", [
    ("quality.left", lambda a: np.where(a > 0, a - 1, a), "children must follow"),
    ("duration.feature", lambda a: a + len(FEATURES), "feature outside"),
    ("quality.roots", lambda a: a + 10**6, "root is outside"),
    ("duration.value", lambda a: np.where(a != 0, np.inf, a), "finite"),
    ("quality.threshold", lambda a: a[:-1], "shape"),
])
def test_damaged_trees_are_refused(trained, tmp_path, array, change, message):
    path = tmp_path / "p.npz"
    trained[0].save(path)
    _rewrite(path, **{array: change(_contents(path)[array])})
    with pytest.raises(ModelFileError, match=message):
        Predictor.load(path)


def test_a_model_lacking_an_array_is_refused(trained, tmp_path):
    path = tmp_path / "p.npz"
    trained[0].save(path)
    contents = _contents(path)
    del contents["duration.right"]
    np.savez(path, **contents)
    with pytest.raises(ModelFileError, match=r"duration model lacks \['right'\]"):
        Predictor.load(path)


def test_default_is_read_not_trained_and_nothing_is_written(tmp_path):
    before = DEFAULT_MODEL_PATH.read_bytes()
    predictor = Predictor.default()
    assert predictor.trained == {"rows": 20000, "seed": 0}
    quality, duration = predictor.predict(generate(20, seed=1).features)
    assert ((quality >= 0) & (quality <= 1)).all() and (duration > 0).all()
    assert DEFAULT_MODEL_PATH.read_bytes() == before
    missing = tmp_path / "default.npz"
    with pytest.raises(ModelFileError, match="no model file"):
        Predictor.default(missing)
    assert list(tmp_path.iterdir()) == []
