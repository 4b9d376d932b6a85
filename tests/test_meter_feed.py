"""Register samples -> interval readings (p2pnode/meter_feed.py): payloads, drops, boundaries."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.meter_feed import (
    MAX_PAYLOAD_BYTES, MeterNoData, MeterStale, PayloadError, RegisterFeed, Sample, parse_payload,
)

T0 = 1_782_907_200          # an interval boundary (900 s)
NOW = T0 + 10_000


def js(time_s, gen, cons, **extra) -> bytes:
    return json.dumps({"time_s": time_s, "generation_wh": gen, "consumption_wh": cons,
                       **extra}).encode()


def senml(time_s, gen, cons, soc=None, unit="Wh") -> bytes:
    records = [{"bn": "urn:dev:mac:0024befffe804ff1:", "bt": time_s - 5, "t": 5,
                "n": "generation", "u": unit, "s": gen},
               {"n": "consumption", "u": unit, "s": cons, "t": 5}]
    if soc is not None:
        records.append({"n": "soc", "u": "%", "v": soc, "t": 5})
    records.append({"n": "voltage", "u": "V", "v": 231.0, "t": 5})     # ignored
    return json.dumps(records).encode()


def test_json_and_senml_give_the_same_sample():
    assert parse_payload(js(T0, 10.5, 20, soc=0.5), "json") == Sample(T0, 10.5, 20.0, 0.5)
    assert parse_payload(senml(T0, 10.5, 20, soc=50), "senml") == Sample(T0, 10.5, 20.0, 0.5)
    assert parse_payload(senml(T0, 1.5, 2, unit="kWh"), "senml") == Sample(T0, 1500.0, 2000.0)


@pytest.mark.parametrize("payload, fmt, reason, words", [
    (b"\xff\xfe", "json", "malformed", "not UTF-8 JSON"),
    (b"{nope", "json", "malformed", "not UTF-8 JSON"),
    (b"[1, 2]", "json", "malformed", "must be an object"),
    (json.dumps({"time_s": T0, "generation_wh": 1}).encode(), "json", "bad_field",
     "consumption_wh is missing"),
    (js(T0, -1, 0), "json", "bad_field", "generation_wh = -1: must be between"),
    (js(T0, "12", 0), "json", "bad_field", "generation_wh = '12': must be a number"),
    (js(T0, True, 0), "json", "bad_field", "generation_wh = True: must be a number"),
    (js(T0, 1, 0, soc=1.5), "json", "bad_field", "soc = 1.5"),
    (b'{"time_s": NaN, "generation_wh": 1, "consumption_wh": 1}', "json", "bad_field", "time_s"),
    (b"x" * (MAX_PAYLOAD_BYTES + 1), "json", "oversize", "at most"),
    (b"{}", "senml", "malformed", "non-empty array"),
    (json.dumps([{"n": "generation", "u": "W", "s": 1, "bt": T0},
                 {"n": "consumption", "u": "Wh", "s": 1}]).encode(), "senml", "bad_field",
     "[0].u = 'W'"),
    (json.dumps([{"n": "generation", "u": "Wh", "v": 1, "bt": T0},
                 {"n": "consumption", "u": "Wh", "s": 1}]).encode(), "senml", "bad_field",
     "must be a sum"),
    (json.dumps([{"n": "generation", "u": "Wh", "s": 1, "bt": T0}]).encode(), "senml",
     "bad_field", "no record named 'consumption'"),
    (json.dumps([{"n": "generation", "u": "Wh", "s": 1, "bt": T0},
                 {"n": "consumption", "u": "Wh", "s": 1, "t": 60}]).encode(), "senml",
     "bad_field", "share one time"),
    (b"[" * 100_000, "senml", "oversize", "bytes"),
    (b"[" * 4000, "senml", "malformed", "not UTF-8 JSON"),
])
def test_bad_payloads_name_what_is_wrong(payload, fmt, reason, words):
    with pytest.raises(PayloadError) as caught:
        parse_payload(payload, fmt)
    assert caught.value.reason == reason and words in str(caught.value)
    feed = RegisterFeed(fmt)
    assert feed.offer(payload, NOW) == reason
    assert feed.counters == {f"samples_dropped_{reason}": 1} and feed.samples == []


def test_an_interval_is_cut_at_its_boundaries_by_interpolation():
    feed = RegisterFeed()
    for t, g, c in [(T0 - 100, 1000, 5000), (T0 + 100, 1200, 5100), (T0 + 800, 1900, 5800),
                    (T0 + 1000, 2100, 6000)]:
        assert feed.offer(js(t, g, c), NOW) == "accepted"
    reading = feed.reading(T0, 900, NOW)
    # at T0: 1100 / 5050; at T0 + 900: 2000 / 5900
    assert (reading.generation_wh, reading.consumption_wh) == (900, 850)
    assert feed.frozen[T0] == (1100.0, 5050.0) and feed.frozen[T0 + 900] == (2000.0, 5900.0)


def test_without_a_sample_after_the_end_the_latest_is_held_then_the_rest_comes_next():
    feed = RegisterFeed(stale_after_s=300)
    feed.offer(js(T0 + 10, 100, 0), NOW)
    feed.offer(js(T0 + 850, 500, 0), NOW)
    first = feed.reading(T0, 900, T0 + 905)        # held at T0 + 850: 500 - 100
    assert first.generation_wh == 400
    feed.offer(js(T0 + 950, 700, 0), T0 + 960)      # T0 + 900 is frozen at 500: no change
    feed.offer(js(T0 + 1850, 1600, 0), T0 + 1860)
    second = feed.reading(T0 + 900, 900, T0 + 1860)
    assert second.generation_wh == 1550 - 500      # T0 + 1800 interpolated: 700 .. 1600
    assert first.generation_wh + second.generation_wh == 1550 - 100   # nothing lost or doubled
    assert feed.offer(js(T0 + 880, 450, 0), T0 + 1860) == "late"


def test_stale_and_missing_readings_are_errors_not_zeros():
    feed = RegisterFeed(stale_after_s=120)
    with pytest.raises(MeterNoData):
        feed.reading(T0, 900, NOW)
    feed.offer(js(T0 + 100, 1, 1), NOW)
    with pytest.raises(MeterStale, match=r"latest reading is 800 s old \(stale after 120 s\)"):
        feed.reading(T0, 900, T0 + 900)
    assert T0 not in feed.frozen and T0 + 900 not in feed.frozen   # nothing frozen on failure
    feed.offer(js(T0 + 1000, 11, 21), T0 + 1001)                     # the meter is back
    assert feed.reading(T0, 900, T0 + 1001).generation_wh == 8       # 1 .. 9 interpolated


def test_duplicates_conflicts_regressions_floods_and_the_future_are_counted():
    feed = RegisterFeed()
    assert feed.offer(js(T0, 100, 100), NOW) == "accepted"
    assert feed.offer(js(T0, 100, 100), NOW) == "duplicate"
    assert feed.offer(js(T0, 101, 100), NOW) == "conflict"
    assert feed.offer(js(T0 + 60, 99, 120), NOW) == "not_monotonic"     # generation went down
    assert feed.offer(js(T0 + 60, 130, 120), NOW) == "accepted"
    assert feed.offer(js(T0 + 30, 140, 110), NOW) == "not_monotonic"    # above the later one
    assert feed.offer(js(T0 + 30, 110, 110), NOW) == "accepted"         # out of order is fine
    assert feed.offer(js(T0 + 30.5, 111, 110), NOW) == "too_frequent"
    assert feed.offer(js(NOW + 60, 200, 200), NOW) == "future"
    assert feed.counters == {"samples_accepted": 3, "samples_duplicate": 1,
                             "samples_dropped_conflict": 1, "samples_dropped_not_monotonic": 2,
                             "samples_dropped_too_frequent": 1, "samples_dropped_future": 1}
    assert [s.time_s for s in feed.samples] == [T0, T0 + 30, T0 + 60]


def test_a_flood_is_bounded():
    feed = RegisterFeed(max_samples=50)
    for i in range(2000):
        feed.offer(js(T0 + i * 0.25, i, i), NOW)
    assert len(feed.samples) == 50
    assert feed.counters["samples_dropped_too_frequent"] == 1500
    assert feed.counters["samples_pruned"] == 450


def test_soc_is_the_latest_known_in_the_interval():
    feed = RegisterFeed("senml")
    feed.offer(senml(T0 + 10, 0, 0, soc=40), NOW)
    feed.offer(senml(T0 + 500, 5, 5, soc=45), NOW)
    feed.offer(senml(T0 + 890, 9, 9), NOW)
    assert feed.reading(T0, 900, T0 + 950).soc == 0.45


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(2, 60), intervals=st.integers(1, 5))
def test_any_arrival_order_counts_every_wh_once(seed, count, intervals):
    """Samples arriving shuffled and repeated give the same readings as in order, and the
    readings add up to the registers' difference."""
    rng = random.Random(seed)
    span = intervals * 900
    times = sorted(rng.sample(range(T0 - 50, T0 + span + 50), count))
    gen = consumption = 0.0
    samples = []
    for t in times:
        gen += rng.uniform(0, 50)
        consumption += rng.uniform(0, 50)
        samples.append(js(t, round(gen, 3), round(consumption, 3)))
    ordered, shuffled = RegisterFeed(stale_after_s=1e6), RegisterFeed(stale_after_s=1e6)
    for raw in samples:
        ordered.offer(raw, NOW)
    mixed = samples + rng.sample(samples, len(samples) // 3)
    rng.shuffle(mixed)
    for raw in mixed:
        shuffled.offer(raw, NOW)
    assert shuffled.samples == ordered.samples
    got = [shuffled.reading(T0 + k * 900, 900, NOW) for k in range(intervals)]
    assert got == [ordered.reading(T0 + k * 900, 900, NOW) for k in range(intervals)]
    first, last = shuffled.frozen[T0], shuffled.frozen[T0 + span]
    assert sum(r.generation_wh for r in got) == math.floor(last[0]) - math.floor(first[0])
    assert sum(r.consumption_wh for r in got) == math.floor(last[1]) - math.floor(first[1])
