"""A pytest plugin: with ``CI=true`` (as CI sets it) a skipped test is a failed test.

A test that needs a binary or a package must find it in CI (``.ci/run`` and the ``[dev]``
extra install them), so a skip there means something is missing.  Locally a skip stays a skip.
Loaded by ``tests/conftest.py``; covers skips in a test's setup, call and teardown and
module-level skips at collection (``pytest.importorskip``, ``pytestmark = skipif``).
"""

from __future__ import annotations

import os

import pytest

CI_VALUES = ("1", "true", "yes")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in CI_VALUES


def _reason(longrepr) -> str:
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail(report) -> None:
    report.longrepr = (f"skipped in CI (CI=true turns a skip into a failure): "
                       f"{_reason(report.longrepr)}")
    report.outcome = "failed"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        _fail(report)
