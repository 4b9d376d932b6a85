"""Scenario files: the examples load, and every bad field gives an error naming file and field."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from simulator import (
    Faults, Households, ProfileSpec, Scenario, ScenarioError, Tariffs, TimeFrame, Weights,
    load_scenario,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(tmp_path: Path, text: str, name: str = "case.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(write(tmp_path, text))
    return caught.value


def test_quickstart_is_the_default():
    scenario = load_scenario(EXAMPLES / "quickstart.toml")
    assert scenario == Scenario.default()
    assert scenario.meters == 57 and scenario.days == 1 and scenario.interval_s == 900
    assert scenario.faults.loss == 0.0
    assert scenario.households.pv_share == 0.5 and scenario.households.battery_share == 0.1
    assert scenario.start_date.month in (6, 7, 8)
    assert scenario.source.endswith("quickstart.toml")


def test_other_examples_load():
    lossy = load_scenario(EXAMPLES / "lossy.toml")
    assert lossy.faults.loss == 0.1 and lossy.name == "lossy"
    assert Scenario(**{**vars(lossy), "name": "quickstart", "faults": Faults()}) \
        == Scenario.default()
    large = load_scenario(EXAMPLES / "large.toml")
    assert large.meters == 1000 and large.processes == 2
    winter = load_scenario(EXAMPLES / "winter.toml")
    assert winter.start_date == date(2023, 1, 3)
    from simulator.sweep import load_sweep
    for path in EXAMPLES.glob("*.toml"):           # every example is a scenario or a sweep
        if path.name.startswith("sweep"):
            assert load_sweep(path).base_scenario.meters > 0
        else:
            load_scenario(path)


def test_absent_keys_take_defaults(tmp_path):
    scenario = load_scenario(write(tmp_path, 'meters = 12\n[faults]\nloss = 0.2\n'))
    assert scenario.meters == 12 and scenario.faults.loss == 0.2
    assert scenario.weights == Weights() and scenario.tariffs == Tariffs()


def test_profile_spec_and_dict():
    scenario = Scenario.default()
    spec = scenario.profile_spec()
    assert spec == ProfileSpec(houses=57, day=scenario.start_date, days=1, interval_s=900,
                               pv_share=0.5, battery_share=0.1, seed=42)
    assert scenario.intervals == 96
    record = json.loads(json.dumps(scenario.as_dict()))
    assert record["tariffs"]["frames"]["peak"] == {"start_hour": 18, "end_hour": 22,
                                                   "multiplier": 1.3}
    assert record["start_date"] == scenario.start_date.isoformat()


def test_date_may_be_a_string(tmp_path):
    scenario = load_scenario(write(tmp_path, '[time]\nstart_date = "2023-03-01"\n'))
    assert scenario.start_date == date(2023, 3, 1)


BAD_FIELDS = [
    ("meters = 0", "meters = 0: must be between 1 and"),
    ("meters = true", "meters = true: must be an integer"),
    ("meters = 2.5", "meters = 2.5: must be an integer"),
    ("seed = -1", "seed = -1: must be at least 0"),
    ('name = ""', 'name = "": must be a non-empty string'),
    ('feeder = "autobahn"', 'feeder = "autobahn": must be one of "kerber_dorfnetz"'),
    ("processes = 0", "processes = 0: must be between 1 and"),
    ("meters = 4\nprocesses = 5", "processes = 5: must not exceed meters (4)"),
    ("[time]\nstart_date = 2023-06-30T12:00:00", "[time] start_date = "),
    ('[time]\nstart_date = "30.06.2023"', '[time] start_date = "30.06.2023": must be a date'),
    ("[time]\ndays = 0", "[time] days = 0: must be between 1 and 366"),
    ("[time]\ninterval_s = 7", "[time] interval_s = 7: must be between 60 and 86400"),
    ("[time]\ninterval_s = 7000", "[time] interval_s = 7000: must divide a day"),
    ("[time]\nacceleration = 0", "[time] acceleration = 0: must be greater than 0"),
    ('[time]\nacceleration = "fast"', '[time] acceleration = "fast": must be a number'),
    ("[households]\npv_share = 1.5", "[households] pv_share = 1.5: must be between 0 and 1"),
    ("[households]\npv_share = 0.2\nbattery_share = 0.3",
     "[households] battery_share = 0.3: must not exceed pv_share (0.2)"),
    ('[households]\nload_profile = "g0"', '[households] load_profile = "g0": must be one of'),
    ('[households]\nweather = "berlin"', '[households] weather = "berlin": must be one of'),
    ("[weights]\ntrade_surplus = -1", "[weights] trade_surplus = -1: must be at least 0"),
    ("[weights]\nsurplus_availability = 0",
     "[weights] surplus_availability = 0: must be greater than 0"),
    ("[weights]\ntrade_surplus = 0\ntransfer_efficiency = 0\ntransaction_duration = 0\n"
     "transaction_quality = 0\nmarket_participation = 0",
     "[weights] market_participation = 0: at least one of the weights C2..C6"),
    ('[selection]\nstrategy = "random"',
     '[selection] strategy = "random": must be one of "ga", "exact", "greedy"'),
    ("[tariffs]\nretail_per_kwh = 0", "[tariffs] retail_per_kwh = 0: must be greater than 0"),
    ("[tariffs]\nfeed_in_per_kwh = 0.25", "[tariffs] feed_in_per_kwh = 0.25: must be below"),
    ("[tariffs]\nexport_limit_kw = -1", "[tariffs] export_limit_kw = -1: must be at least 0"),
    ('[tariffs]\ncurrency = ""', '[tariffs] currency = "": must be a non-empty string'),
    ("[tariffs.frames.day]\nstart_hour = 6\nend_hour = 22\nmultiplier = 1.0",
     "[tariffs] frames = [\"day\"]: every hour must be in exactly one frame; hours 0-5, 22-23 belong to no frame"),
    ("[tariffs.frames.all]\nstart_hour = 0\nend_hour = 24\nmultiplier = 0",
     "[tariffs.frames.all] multiplier = 0: must be greater than 0"),
    ("[tariffs.frames.all]\nstart_hour = 0\nend_hour = 24",
     "[tariffs.frames.all] multiplier: is required"),
    ("[tariffs.frames.all]\nstart_hour = 25\nend_hour = 24\nmultiplier = 1",
     "[tariffs.frames.all] start_hour = 25: must be between 0 and 23"),
    ("[faults]\nloss = 1.5", "[faults] loss = 1.5: must be between 0 and 1"),
    ("[faults]\ndelay_ms = -5", "[faults] delay_ms = -5: must be between 0 and"),
    ("[faults]\nduplication = 2", "[faults] duplication = 2: must be between 0 and 1"),
    ("[faults]\nchurn_share = -0.1", "[faults] churn_share = -0.1: must be between 0 and 1"),
    ("[faults]\nmalicious_share = 1.1", "[faults] malicious_share = 1.1: must be between 0"),
    ('[faults]\nmalicious_kinds = ["forge", "spam"]',
     '[faults] malicious_kinds = ["forge", "spam"]: unknown kind(s) [\'spam\']'),
    ('[faults]\nmalicious_kinds = ["flood", "flood"]',
     '[faults] malicious_kinds = ["flood", "flood"]: must not repeat a kind'),
    ("[faults]\nmalicious_share = 0.1\nmalicious_kinds = []",
     "[faults] malicious_kinds = []: must name at least one kind"),
    ("[faults]\nmalicious_kinds = 3", "[faults] malicious_kinds = 3: must be a list of strings"),
    ("[faults]\nclock_skew_share = 1.5",
     "[faults] clock_skew_share = 1.5: must be between 0 and 1"),
    ("[faults]\nclock_skew_s = -1", "[faults] clock_skew_s = -1: must be between 0 and 300"),
    ("[faults]\nclock_skew_s = 301", "[faults] clock_skew_s = 301: must be between 0 and 300"),
    ('[faults]\nclock_skew_s = "30 s"', '[faults] clock_skew_s = "30 s": must be a number'),
    ("[faults]\nclock_skew_share = 0.2",
     "[faults] clock_skew_s = 0.0: must be greater than 0 when clock_skew_share > 0"),
]


@pytest.mark.parametrize("text, expected", BAD_FIELDS, ids=[b[1][:40] for b in BAD_FIELDS])
def test_bad_field_is_named_with_the_file(tmp_path, text, expected):
    error = error_of(tmp_path, text + "\n")
    assert len(error.problems) == 1, str(error)
    assert str(error) == f"{tmp_path / 'case.toml'}: " + str(error).split(": ", 1)[1]
    assert expected in str(error), str(error)


@pytest.mark.parametrize("text, expected", [
    ('feedr = "none"', 'feedr = "none": unknown key; did you mean "feeder"?'),
    ("[faults]\nlose = 0.1", '[faults] lose = 0.1: unknown key; did you mean "loss"?'),
    ("[faults]\nclock_skew = 30",
     '[faults] clock_skew = 30: unknown key; did you mean "clock_skew_s"?'),
    ("[time]\nstart = 2023-06-30", "[time] start = 2023-06-30: unknown key"),
    ("[wheights]\ntrade_surplus = 1", "wheights = {trade_surplus = 1}: unknown key; did you "
     'mean "weights"?'),
    ("[tariffs.frames.all]\nstart_hour = 0\nend_hour = 24\nmultiplier = 1\nprice = 2",
     "[tariffs.frames.all] price = 2: unknown key"),
    ("weights = 3", "weights = 3: must be a table ([weights])"),
])
def test_unknown_keys_and_misplaced_values_are_rejected(tmp_path, text, expected):
    error = error_of(tmp_path, text + "\n")
    assert expected in str(error), str(error)


def test_every_problem_is_reported_at_once(tmp_path):
    error = error_of(tmp_path, "meters = 0\nbogus = 1\n[faults]\nloss = 2\nduplication = -1\n")
    assert len(error.problems) == 4
    keys = {(p.section, p.key) for p in error.problems}
    assert keys == {("", "meters"), ("", "bogus"), ("faults", "loss"), ("faults", "duplication")}
    assert all(line.startswith(str(tmp_path)) for line in str(error).splitlines())


def test_invalid_toml_and_missing_file_name_the_file(tmp_path):
    error = error_of(tmp_path, "meters = \n")
    assert str(error).startswith(f"{tmp_path / 'case.toml'}: file: is not valid TOML")
    with pytest.raises(ScenarioError, match="nope.toml: file: cannot be read"):
        load_scenario(tmp_path / "nope.toml")


def test_dataclasses_validate_when_built_directly():
    with pytest.raises(ScenarioError, match=r"^\[faults\] loss = 2: must be between 0 and 1$"):
        Faults(loss=2)
    with pytest.raises(ScenarioError, match=r"\[households\] battery_share"):
        Households(pv_share=0.1, battery_share=0.2)
    with pytest.raises(ScenarioError, match=r"^meters = 0: "):
        Scenario(meters=0)
    with pytest.raises(ScenarioError, match="frame names must be unique"):
        Tariffs(frames=(TimeFrame("a", 0, 12, 1.0), TimeFrame("a", 12, 0, 1.0)))
