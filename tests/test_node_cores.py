"""Pure cores of the node: meters, surplus/deficit detection, dynamic pricing."""

import pytest

from p2pnode.balance import Balance, DetectionConfig, next_balance
from p2pnode.errors import ConfigError
from p2pnode.meter import CsvReplayMeter, ProfileMeter, Reading
from p2pnode.pricing import Frame, Tariffs, dynamic_price

CONFIG = DetectionConfig(enter_wh=50, exit_wh=20)


def run(nets, start=Balance.BALANCED):
    states, state = [], start
    for net in nets:
        state = next_balance(state, net, CONFIG)
        states.append(state.value[0])
    return "".join(states)


def test_hysteresis_keeps_a_hovering_surplus_stable():
    assert run([60, 40, 25, 45, 10, 30]) == "ssssbb"
    assert run([-60, -30, -19, -49, -50]) == "ddbbd"
    assert run([49, -49, 0]) == "bbb"


def test_detection_config_names_the_bad_field():
    with pytest.raises(ConfigError, match="exit_wh = 60: must be >= 0 and below enter_wh"):
        DetectionConfig(enter_wh=50, exit_wh=60)


def test_price_follows_supply_and_demand_within_tariffs():
    tariffs = Tariffs()
    noon, evening = 12, 19
    assert dynamic_price(1000, 1000, noon, tariffs) == 190_000  # midpoint of 80k..300k
    assert dynamic_price(0, 1000, noon, tariffs) == 300_000  # scarce: retail
    assert dynamic_price(10**9, 1, noon, tariffs) == 80_000  # glut: feed-in
    assert dynamic_price(1000, 1000, evening, tariffs) == 240_000  # peak frame
    # symmetric in log(S/D) and steep: 3x the supply needed asks a tenth of the spread above
    # feed-in (a buyer hedges to its 90 % quantile), a third of it nine tenths
    assert dynamic_price(3000, 1000, noon, tariffs) == 80_000 + 22_000
    assert dynamic_price(1000, 3000, noon, tariffs) == 80_000 + 198_000
    prices = [dynamic_price(s, 1000, noon, tariffs) for s in range(0, 10_000, 250)]
    assert prices == sorted(prices, reverse=True)   # more supply never asks more
    assert dynamic_price(1000, 0, noon, tariffs) == 80_000  # nobody buying
    assert dynamic_price(10**9, 1, noon, tariffs, min_sell_micro_per_kwh=150_000) == 150_000
    assert dynamic_price(1, 1, noon, tariffs, min_sell_micro_per_kwh=350_000) is None


def test_tariff_frames_must_cover_the_day_once():
    with pytest.raises(ConfigError, match="hour 6 belongs to no frame"):
        Tariffs(frames=(Frame("night", 22, 6, 200_000), Frame("day", 7, 22, 300_000)))
    assert Tariffs().frame_at(23.5).name == "off-peak"


def test_profile_meter_reads_by_interval():
    meter = ProfileMeter(1000, 900, [0, 500], [300, 100])
    assert meter.read(1900, 900) == Reading(1900, 900, 500, 100)
    assert meter.read(1900, 900).net_wh == 400
    with pytest.raises(ConfigError, match="no interval starting at 1950"):
        meter.read(1950, 900)


def test_csv_replay_meter_and_its_errors(tmp_path):
    good = tmp_path / "m.csv"
    good.write_text("interval_start_s,generation_wh,consumption_wh,soc\n0,10,5,0.5\n900,0,7,\n")
    meter = CsvReplayMeter(good, 900)
    assert meter.read(900, 900) == Reading(900, 900, 0, 7, None)
    assert meter.read(0, 900).soc == 0.5
    bad = tmp_path / "bad.csv"
    bad.write_text("interval_start_s,generation_wh,consumption_wh\n0,10,5\n900,x,7\n")
    with pytest.raises(ConfigError, match=r"bad.csv:3: column 'generation_wh': expected an integer"):
        CsvReplayMeter(bad, 900)
    negative = tmp_path / "neg.csv"
    negative.write_text("interval_start_s,generation_wh,consumption_wh\n0,-1,5\n")
    with pytest.raises(ConfigError, match="neg.csv:2: Reading.generation_wh must not be negative"):
        CsvReplayMeter(negative, 900)
    missing = tmp_path / "missing.csv"
    missing.write_text("interval_start_s,generation_wh\n0,1\n")
    with pytest.raises(ConfigError, match="missing column 'consumption_wh'"):
        CsvReplayMeter(missing, 900)
