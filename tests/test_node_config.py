"""Node configuration files: every value checked, every error naming its table and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from p2pnode.config import Constraints, load_config, micro
from p2pnode.errors import ConfigError

FULL = """
key_file = "keys/node.key"
ledger = "node.db"
feeder = "feeder-7"
location = "3/120/40"
interval_s = 900

[network]
host = "127.0.0.1"
dht_port = 8468
peer_port = 8470
advertise = "192.0.2.10:8470"
bootstrap = ["127.0.0.1:8468", "localhost:9000"]

[meter]
path = "readings.csv"

[detection]
enter_wh = 40
exit_wh = 10

[tariffs]
feed_in_per_kwh = 0.07
[tariffs.frames.night]
start_hour = 20
end_hour = 8
retail_per_kwh = 0.2
[tariffs.frames.day]
start_hour = 8
end_hour = 20
retail_per_kwh = 0.35

[constraints]
min_sell_price_per_kwh = 0.1
max_buy_price_per_kwh = 0.3
reserve_wh = 100
max_trade_wh = 2000
opt_out = "buying"

[selection]
strategy = "exact"
[selection.weights]
transaction_quality = 3.0

[timing]
buy_delay_s = 2
window_s = 120

[credit]
vouchers = ["v1.bin"]
trusted_issuers = ["%s"]
""" % ("ab" * 32)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_a_full_file_loads_with_paths_relative_to_it(tmp_path):
    config = load_config(write(tmp_path, FULL))
    assert config.key_file == tmp_path / "keys/node.key"
    assert config.meter.path == tmp_path / "readings.csv"
    assert config.credit.vouchers == (tmp_path / "v1.bin",)
    assert config.network.bootstrap_addresses() == [("127.0.0.1", 8468), ("localhost", 9000)]
    assert config.tariffs.feed_in_micro_per_kwh == 70_000
    assert config.tariffs.frame_at(22).retail_micro_per_kwh == micro(0.2)
    assert config.constraints == Constraints(0.1, 0.3, 100, 2000, "buying")
    assert not config.constraints.buys and config.constraints.sells
    assert config.selection.strategy == "exact"
    assert config.selection.weights.transaction_quality == 3.0
    assert config.timing.window_s == 120 and config.detection.enter_wh == 40


def test_an_empty_file_gives_the_defaults(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config.meter is None and config.constraints == Constraints()
    assert config.selection.strategy == "ga"


@pytest.mark.parametrize("text, message", [
    ('feedr = "x"', 'feedr = "x": unknown key; did you mean "feeder"?'),
    ("[constraints]\nreserve_wh = -5", "[constraints] reserve_wh = -5: must be between 0 and 1000000000"),
    ("[constraints]\nmax_buy_price_per_kwh = true", "[constraints] max_buy_price_per_kwh = true: must be a number"),
    ('[constraints]\nopt_out = "sometimes"', '[constraints] opt_out = "sometimes": must be one of none'),
    ("[constraints]\nmax_trade_wh = 0", "[constraints] max_trade_wh = 0: must be between 1"),
    ("[network]\ndht_port = 70000", "[network] dht_port = 70000: must be between 0 and 65535"),
    ('[network]\nbootstrap = ["nohost"]', '[network] bootstrap = "nohost": must be host:port'),
    ("interval_s = 700", "interval_s = 700: must divide a day"),
    ("[timing]\nwindow_s = 1000", "[timing] window_s = 1000: must not exceed interval_s (900)"),
    ("[timing]\nbuy_delay_s = 400", "[timing] buy_delay_s = 400: must be less than window_s"),
    ('[selection]\nstrategy = "magic"', '[selection] strategy = "magic": must be one of ga'),
    ("[selection.weights]\ntrade_surplus = -1", "[selection.weights] trade_surplus = -1: must be at least 0"),
    ("[detection]\nenter_wh = 10\nexit_wh = 10", "detection.exit_wh = 10"),
    ("[tariffs]\nfeed_in_per_kwh = 0.5", "below the feed-in tariff"),
    ("[tariffs.frames.day]\nstart_hour = 0\nend_hour = 12\nretail_per_kwh = 0.3",
     "hours 12-23 belong to no frame"),
    ('[credit]\ntrusted_issuers = ["zz"]', '[credit] trusted_issuers = "zz": must be 64 hex digits'),
    ("[meter]\nkind = \"csv\"", "[meter] path: is required"),
    ("network = 5", "network = 5: must be a table"),
    ('[market]\nbalancing = "yes"', '[market] balancing = "yes": must be true or false'),
])
def test_every_bad_value_is_named(tmp_path, text, message):
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text))
    assert message in str(raised.value)
    assert str(raised.value).startswith(str(tmp_path / "node.toml"))


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="file: cannot be read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "key = [unclosed"))


def test_the_exact_strategy_without_scipy_names_the_extra(tmp_path):
    path = write(tmp_path, '[selection]\nstrategy = "exact"')
    code = ("import sys; sys.modules['scipy'] = None\n"      # as if scipy were not installed
            "from p2pnode.config import load_config\n"
            f"load_config({str(path)!r})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1
    assert '[selection] strategy = "exact": the exact solver needs scipy' in out.stderr
    assert "pip install 'p2p-energy[sim]'" in out.stderr
    assert load_config(path).selection.strategy == "exact"      # here scipy is installed
