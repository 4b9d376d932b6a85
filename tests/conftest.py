"""Shared pytest setup: in CI a skip is a failure (see :mod:`tests.ci_skips`)."""

pytest_plugins = ["tests.ci_skips"]
