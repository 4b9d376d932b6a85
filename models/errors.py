"""Errors of the models package.

    ModelError
    ├── FeatureError        feature input has the wrong shape or a value out of range (named)
    ├── SchemaError         a model file's feature schema differs from this code's
    ├── ModelFileError      a model file is missing, corrupt, or holds unexpected types
    │   └── ModelVersionError  it was written in another format version
    └── ForecastError       the forecaster cannot take a reading or answer a request
        ├── ReadingError           a reading refused (``reason``: duplicate, out_of_order,
        │                          misaligned, bad_value), for the node to count
        └── ForecastRequestError   a forecast asked for outside what the history allows
"""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error raised by :mod:`models`."""


class FeatureError(ModelError, ValueError):
    """Feature rows cannot be used; the message names the feature."""


class SchemaError(ModelError):
    """The model was trained on other features than the ones this code provides."""


class ModelFileError(ModelError):
    """The model file cannot be read safely."""


class ModelVersionError(ModelFileError):
    """The model file was written in another format version."""


class ForecastError(ModelError):
    """Base of the forecaster's errors (:mod:`models.forecast`)."""


class ReadingError(ForecastError, ValueError):
    """A reading the forecaster refuses; ``reason`` is a short fixed word to count by."""

    REASONS = ("duplicate", "out_of_order", "misaligned", "bad_value")

    def __init__(self, reason: str, message: str):
        if reason not in self.REASONS:
            raise ValueError(f"unknown ReadingError reason {reason!r}")
        super().__init__(message)
        self.reason = reason


class ForecastRequestError(ForecastError, ValueError):
    """A forecast was asked for a target or issue time the forecaster cannot answer for."""
