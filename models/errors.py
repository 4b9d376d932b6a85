"""Errors of the models package.

    ModelError
    ├── FeatureError        feature input has the wrong shape or a value out of range (named)
    ├── SchemaError         a model file's feature schema differs from this code's
    └── ModelFileError      a model file is missing, corrupt, or holds unexpected types
        └── ModelVersionError  it was written in another format version
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
