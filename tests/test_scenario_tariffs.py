"""Time-of-day tariffs: the price of every interval."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import ScenarioError, Tariffs, TimeFrame


def starts(*hhmm: str) -> np.ndarray:
    return np.array([f"2023-06-30T{t}" for t in hhmm], dtype="datetime64[s]")


def test_default_frames_price_every_hour():
    tariffs = Tariffs(retail_per_kwh=0.30, feed_in_per_kwh=0.08)
    times = starts("00:00", "05:45", "06:00", "17:45", "18:00", "21:45", "22:00", "23:45")
    np.testing.assert_allclose(tariffs.retail_prices(times),
                               [0.24, 0.24, 0.30, 0.30, 0.39, 0.39, 0.24, 0.24])
    np.testing.assert_allclose(tariffs.feed_in_prices(times), 0.08)
    names = [tariffs.frames[k].name for k in tariffs.frame_index(times)]
    assert names == ["off_peak", "off_peak", "normal", "normal", "peak", "peak", "off_peak",
                     "off_peak"]


def test_custom_frames_and_export_limit():
    tariffs = Tariffs(retail_per_kwh=0.2, feed_in_per_kwh=0.05, export_limit_kw=4.0,
                      frames=(TimeFrame("flat", 0, 24, 1.0),))
    np.testing.assert_allclose(tariffs.retail_prices(starts("03:00", "19:00")), [0.2, 0.2])
    assert tariffs.export_limit_wh(900) == pytest.approx(1000.0)
    assert Tariffs().export_limit_wh(900) is None


def test_overlapping_frames_are_rejected():
    with pytest.raises(ScenarioError, match=r"every hour must be in exactly one frame; hour 6 is in both a and b"):
        Tariffs(frames=(TimeFrame("a", 0, 10, 1.0), TimeFrame("b", 6, 24, 1.0)))
