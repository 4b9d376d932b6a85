"""The fuzz targets replayed on the committed corpus and on every crash the fuzzer found.

``fuzz/corpus/<target>/`` holds the seeds (and what ``make fuzz`` keeps is not committed);
``fuzz/regressions/<target>-<name>`` holds inputs that once crashed a target.  Each must now run
through its target without an exception other than the one the decoder promises.  The crashes
found, and the API body crashes of issue 13, are also pinned below as plain tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fuzz.targets import TARGETS
from p2pnode.api_views import BadRequest, parse_settings_body
from p2pnode.config import config_from_dict
from p2pnode.errors import ConfigError

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
CASES = sorted(
    [(name, path) for name in TARGETS for path in (FUZZ / "corpus" / name).iterdir()]
    + [(path.name.split("-")[0], path) for path in (FUZZ / "regressions").iterdir()
       if path.is_file() and path.name.split("-")[0] in TARGETS])


def test_every_target_has_a_corpus():
    assert {name for name, _ in CASES} == set(TARGETS)


@pytest.mark.parametrize("name,path", CASES, ids=[f"{n}/{p.name[:12]}" for n, p in CASES])
def test_corpus_input_runs_clean(name, path):
    TARGETS[name](path.read_bytes())


SETTINGS = {"min_sell_price_per_kwh": 0.1, "max_buy_price_per_kwh": 0.3, "reserve_wh": 0,
            "max_trade_wh": 5000, "opt_out": "none"}


def test_settings_body_deep_nesting_is_a_bad_request():
    # issue 13: a 20k-deep array gave a 500 with a traceback (RecursionError)
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_settings_body(b"[" * 5_000 + b"]" * 5_000)
    with pytest.raises(BadRequest, match="over 16384 bytes"):
        parse_settings_body(b"[" * 20_000 + b"]" * 20_000)


def test_settings_body_huge_integer_is_a_bad_request():
    # issue 13: a 5000-digit integer raised ValueError from int() (4300-digit limit): a 500
    body = json.dumps(SETTINGS).replace('"reserve_wh": 0', '"reserve_wh": ' + "9" * 5000)
    with pytest.raises(BadRequest, match="more than 40 characters"):
        parse_settings_body(body.encode())


def test_settings_body_integer_too_big_for_a_float_names_the_field():
    # found while writing the api_json/config_toml targets: 10**400 passed int parsing, then
    # math.isfinite raised OverflowError in the range check (a traceback, not a ConfigError)
    with pytest.raises(ConfigError, match=r"\[constraints\] reserve_wh = .*must be between"):
        config_from_dict({"constraints": {"reserve_wh": 10**400}})
    body = dict(SETTINGS, reserve_wh=10**30)
    with pytest.raises(BadRequest, match="reserve_wh"):
        parse_settings_body(json.dumps(body).encode())
    assert parse_settings_body(json.dumps(SETTINGS).encode()).max_trade_wh == 5000


def test_settings_body_rejects_nan_and_non_utf8():
    with pytest.raises(BadRequest, match="NaN is not a number"):
        parse_settings_body(json.dumps(dict(SETTINGS, reserve_wh=float("nan"))).encode())
    with pytest.raises(BadRequest, match="not UTF-8"):
        parse_settings_body(b'{"\xff": 1}')
