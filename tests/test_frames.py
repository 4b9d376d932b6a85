"""The one time-of-day frame model: hours, wrapping midnight, and the day covered once."""

from __future__ import annotations

import pytest

from optimizer.frames import TimeFrame, day_coverage_problem
from optimizer.markets import TimeFrames
from p2pnode.pricing import Frame, Tariffs
from simulator.tariffs import TimeFrame as ScenarioFrame


def test_hours_wrap_midnight_and_equal_hours_cover_the_day():
    assert TimeFrame("night", 22, 6).hours() == (22, 23, 0, 1, 2, 3, 4, 5)
    assert TimeFrame("day", 6, 22).length_h == 16
    assert TimeFrame("all", 0, 24).hours() == tuple(range(24))
    assert TimeFrame("all", 7, 7).length_h == 24
    night = TimeFrame("night", 22, 6)
    assert night.contains(23.99) and night.contains(0) and night.contains(5.5)
    assert not night.contains(6) and not night.contains(21.99)


@pytest.mark.parametrize("frames, problem", [
    ((TimeFrame("a", 0, 12), TimeFrame("b", 12, 0)), None),
    ((TimeFrame("a", 0, 12),), "hours 12-23 belong to no frame"),
    ((TimeFrame("a", 0, 12), TimeFrame("b", 13, 0)), "hour 12 belongs to no frame"),
    ((TimeFrame("a", 0, 13), TimeFrame("b", 12, 0)), "hour 12 is in both a and b"),
])
def test_the_day_must_be_covered_once(frames, problem):
    found = day_coverage_problem(frames)
    assert found == problem if problem is None else found.endswith(problem)


def test_node_simulator_and_market_frames_are_the_one_model():
    for frame in (Frame("peak", 18, 22, 400_000), ScenarioFrame("peak", 18, 22, 1.3)):
        assert isinstance(frame, TimeFrame) and frame.hours() == (18, 19, 20, 21)
    assert Tariffs().frame_at(23.5).name == "off-peak"
    markets = TimeFrames()
    assert [markets.frame_of(h) for h in (23.5, 6, 21.9)] == ["off_peak", "normal", "peak"]
    assert markets.hours("off_peak") == 8
