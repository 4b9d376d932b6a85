"""Predictors of transaction quality (share delivered) and duration for candidate offers.

    from models import Predictor, TransactionFeatures
    predictor = Predictor.default()
    quality, duration_s = predictor.predict([TransactionFeatures(...), ...])

Modules: :mod:`~models.features` (the schema), :mod:`~models.dataset` (the seeded synthetic
history), :mod:`~models.train` (fit and held-out evaluation vs baselines),
:mod:`~models.trees` (tree ensembles as numpy arrays, exported from scikit-learn),
:mod:`~models.store` (``.npz`` files, versioned and checked), :mod:`~models.predictor`.

At run time only numpy is needed; :mod:`~models.train` needs the ``[train]`` extra.

Errors::

    ModelError
    ├── FeatureError        bad feature input (names the feature)
    ├── SchemaError         the file's feature schema differs from this code's
    ├── ModelFileError      missing, corrupt or unexpected model file
    │   └── ModelVersionError  another format version
    └── ForecastError       the forecaster cannot take a reading or answer a request
        ├── ReadingError           duplicate, out-of-order, misaligned or bad reading (.reason)
        └── ForecastRequestError   a forecast outside what the history allows

Forecasts of a node's own generation and consumption: :class:`NodeForecaster`
(:mod:`~models.forecast`, with :mod:`~models.clearsky` for the clear-sky irradiance).
"""

from models.dataset import Dataset, generate
from models.errors import (
    FeatureError, ForecastError, ForecastRequestError, ModelError, ModelFileError,
    ModelVersionError, ReadingError, SchemaError,
)
from models.features import (
    CURRENT_SCHEMA, FEATURES, SCHEMA_VERSION, ZONES, FeatureSchema, TransactionFeatures,
    feature_matrix,
)
from models.forecast import Forecast, NodeForecaster
from models.predictor import DEFAULT_MODEL_PATH, Predictor
from models.train import Evaluation, Scores, evaluate, train
from models.trees import TreeEnsemble, export

__all__ = [
    "CURRENT_SCHEMA", "DEFAULT_MODEL_PATH", "Dataset", "Evaluation", "FEATURES", "FeatureError",
    "FeatureSchema", "ModelError", "ModelFileError", "ModelVersionError", "Predictor",
    "SCHEMA_VERSION", "SchemaError", "Scores", "TransactionFeatures", "TreeEnsemble", "ZONES",
    "evaluate", "export", "feature_matrix", "generate", "train",
    "Forecast", "ForecastError", "ForecastRequestError", "NodeForecaster", "ReadingError",
]
