"""The meter install: the wheel without extras brings no heavy package, and two nodes trade.

Builds the wheel of this tree, installs it into a fresh venv without extras (pip resolves the
wheel's own dependency metadata), then, with that venv's python from outside the source tree:
two nodes trade once each way on loopback with the bundled predictor, a simulator command says
which extra it needs, and ``p2pnode train`` says the same.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests import slimkit

pytestmark = pytest.mark.slow

NODE_DISTRIBUTIONS = ("p2p-energy", "aiohttp", "cryptography", "msgpack", "kademlia", "deap",
                      "numpy")
HEAVY_MODULES = ("simulator", "pandas", "matplotlib", "sklearn", "scipy", "pvlib", "pandapower",
                 "pyarrow", "ray", "dask", "skops")


@pytest.fixture(scope="module")
def slim(tmp_path_factory):
    return slimkit.slim_venv(tmp_path_factory.mktemp("slim"))


def test_the_base_install_brings_none_of_the_heavy_packages(slim):
    installed = slimkit.distributions(slim)
    assert set(NODE_DISTRIBUTIONS) <= set(installed)
    assert [name for name in slimkit.HEAVY_DISTRIBUTIONS if name in installed] == []
    size_mb = slimkit.tree_mb(slimkit.site_packages(slim))
    assert size_mb < 300, f"site-packages of the slim venv: {size_mb:.0f} MiB"
    model = slimkit.site_packages(slim) / "models" / "default_predictor.npz"
    assert model.is_file()


def test_two_nodes_trade_both_ways_from_the_slim_venv(slim, tmp_path):
    out = subprocess.run([str(slim), str(slimkit.ROOT / "tests" / "slim_trade.py")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["p2pnode_file"].startswith(str(slimkit.site_packages(slim)))
    first, second = result["intervals"]
    assert first == [{"bought_wh": 0, "sold_wh": 300}, {"bought_wh": 300, "sold_wh": 0}]
    assert second == [{"bought_wh": 300, "sold_wh": 0}, {"bought_wh": 0, "sold_wh": 300}]
    assert all(c["trades_settled"] == 1 and c["deliveries_settled"] == 1   # bought one, sold one
               for c in result["counters"])
    assert result["predictor"] == "models.predictor"
    assert [m for m in HEAVY_MODULES if m in result["modules"]] == []


@pytest.mark.parametrize("argv, extra", [
    (["simulate", "scenario.toml"], "sim"),
    (["market", "compare", "scenario.toml"], "sim"),
    (["train", "--out", "m.npz"], "train"),
])
def test_commands_of_other_extras_say_what_to_install(slim, tmp_path, argv, extra):
    p2pnode = slim.parent / "p2pnode"
    out = subprocess.run([str(p2pnode), *argv], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    assert f"pip install 'p2p-energy[{extra}]'" in out.stderr
    assert "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []
