"""``p2pnode market auction|pool|nsga2`` and ``p2pnode powerflow`` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from p2pnode.cli import main

ORDERS = """id,side,kwh,price,frame
S1,sell,5,0.10,normal
S2,sell,4,0.15,normal
S3,sell,3,0.30,normal
B1,buy,3,0.28,normal
B2,buy,4,0.20,normal
B3,buy,5,0.12,normal
P1,sell,2,0.12,peak
P2,buy,2,0.35,peak
"""

READINGS = """node,generation_kwh,consumption_kwh
A,5,2
B,1,4
C,0,3
D,2,2
"""


def run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return str(path)


def test_auction_per_frame(tmp_path, capsys):
    code, out, _ = run(capsys, "market", "auction", write(tmp_path, "o.csv", ORDERS),
                       "--grid-tariff", "0.25")
    assert code == 0
    normal, peak = out["frames"]["normal"], out["frames"]["peak"]
    assert normal["mcp"] == pytest.approx(0.175) and normal["matched_kwh"] == 7
    assert normal["trades"] == [{"seller": "S1", "buyer": "B1", "kwh": 3},
                                {"seller": "S1", "buyer": "B2", "kwh": 2},
                                {"seller": "S2", "buyer": "B2", "kwh": 2}]
    assert normal["matrix"] == {"sellers": ["S1", "S2"], "buyers": ["B1", "B2"],
                                "kwh": [[3, 2], [0, 2]]}
    assert peak["mcp"] == pytest.approx((0.12 + 0.25) / 2)  # the 0.35 bid counts as the tariff
    assert out["frames"]["off_peak"]["mcp"] is None


def test_auction_continuous_and_k(tmp_path, capsys):
    path = write(tmp_path, "o.csv", ORDERS)
    _, out, _ = run(capsys, "market", "auction", path, "--grid-tariff", "0.25", "--k", "1")
    assert out["frames"]["normal"]["mcp"] == pytest.approx(0.20)
    _, out, _ = run(capsys, "market", "auction", path, "--grid-tariff", "0.25", "--continuous")
    normal = out["frames"]["normal"]
    # B1 arrives after the asks: lifts S1 at 0.10; B2 takes S1's rest at 0.10 then S2 at 0.15.
    assert [(t["seller"], t["buyer"], t["kwh"], t["price"]) for t in normal["trades"]] == [
        ("S1", "B1", 3, 0.10), ("S1", "B2", 2, 0.10), ("S2", "B2", 2, 0.15)]


def test_pool(tmp_path, capsys):
    code, out, _ = run(capsys, "market", "pool", write(tmp_path, "r.csv", READINGS),
                       "--transformer-kwh", "3.4", "--loss-threshold-kwh", "0.3",
                       "--feed-in-tariff", "0.08", "--retail-tariff", "0.30")
    assert code == 0
    assert {k: out[k] for k in ("generation_kwh", "consumption_kwh", "local_kwh", "surplus_kwh",
                                "deficit_kwh")} == {"generation_kwh": 8, "consumption_kwh": 11,
                                                    "local_kwh": 8, "surplus_kwh": 0, "deficit_kwh": 3}
    assert out["loss_kwh"] == pytest.approx(0.4) and out["alert"] is True
    assert out["pool_price"]["supply_demand_ratio"] == 0.5
    b = next(a for a in out["allocations"] if a["node"] == "B")
    assert (b["self_kwh"], b["from_pool_kwh"], b["import_kwh"]) == (1, 1.5, 1.5)
    _, out, _ = run(capsys, "market", "pool", write(tmp_path, "r.csv", READINGS), "--transformer-kwh", "3.4")
    assert out["loss_threshold_kwh"] == pytest.approx(1.1) and out["alert"] is False  # 10 % of C


@pytest.mark.parametrize("text, message", [
    ("id,side,kwh,frame\nS1,sell,5,normal\n", "line 1: missing column(s) 'price'"),
    (ORDERS.replace("S2,sell,4,", "S2,sell,four,"), "line 3 (row 2), column 'kwh': expected a number, got 'four'"),
    (ORDERS.replace("S2,sell,4,", "S2,sell,-4,"), "line 3 (row 2), column 'kwh': expected a number > 0"),
    (ORDERS.replace("S2,sell,4,0.15", "S2,sell,4,nan"), "column 'price': expected a finite number"),
    (ORDERS.replace("B1,buy", "B1,bid"), "line 5 (row 4), column 'side': expected 'sell' or 'buy'"),
    (ORDERS.replace("0.10,normal", "0.10,night"), "line 2 (row 1), column 'frame': expected one of off_peak"),
    (ORDERS.replace("S3,", "S1,"), "line 4 (row 3), column 'id': duplicate id 'S1' (first on line 2)"),
    (ORDERS + "X,sell,1,0.1,normal,extra\n", "line 10: more fields than columns"),
    (ORDERS + "Y,sell\n", "line 10 (row 9), column 'kwh': expected a number, got ''"),
])
def test_bad_order_files_name_line_and_column(tmp_path, capsys, text, message):
    code, _, err = run(capsys, "market", "auction", write(tmp_path, "o.csv", text))
    assert code == 2
    assert message in err


def test_bad_reading_files_and_options(tmp_path, capsys):
    bad = READINGS.replace("C,0,3", "C,0,-3")
    code, _, err = run(capsys, "market", "pool", write(tmp_path, "r.csv", bad), "--transformer-kwh", "1")
    assert code == 2 and "line 4 (row 3), column 'consumption_kwh': expected a number >= 0" in err
    dup = READINGS.replace("D,2,2", "A,2,2")
    code, _, err = run(capsys, "market", "pool", write(tmp_path, "r.csv", dup), "--transformer-kwh", "1")
    assert code == 2 and "column 'node': duplicate node 'A'" in err
    code, _, err = run(capsys, "market", "pool", write(tmp_path, "r.csv", READINGS),
                       "--transformer-kwh", "1", "--feed-in-tariff", "0.1")
    assert code == 2 and "give both or neither" in err
    code, _, err = run(capsys, "market", "pool", write(tmp_path, "r.csv", READINGS),
                       "--transformer-kwh", "1", "--loss-threshold-kwh", "-1")
    assert code == 2 and "loss_threshold_kwh" in err
    code, _, err = run(capsys, "market", "pool", str(tmp_path / "missing.csv"), "--transformer-kwh", "1")
    assert code == 2 and "missing.csv: cannot read" in err
    code, _, err = run(capsys, "market", "pool", write(tmp_path, "b.csv", b"\xff\xfe\x00node"),
                       "--transformer-kwh", "1")
    assert code == 2 and "not UTF-8" in err


def test_nsga2_on_a_named_feeder(tmp_path, capsys):
    orders = ORDERS.replace("id,side,kwh,price,frame", "id,side,kwh,price,frame,bus")
    orders = "\n".join(line + ("," if n else "") + (str(n + 1) if n else "")
                       for n, line in enumerate(orders.strip().splitlines()))
    code, out, _ = run(capsys, "market", "nsga2", write(tmp_path, "o.csv", orders + "\n"),
                       "--feeder", "case33bw", "--grid-tariff", "0.25", "--seed", "4",
                       "--population", "16", "--generations", "25")
    assert code == 0
    assert out["buses"]["S1"] == 2 and set(out["frames"]) == {"normal", "peak"}
    normal = out["frames"]["normal"]
    assert normal["status"] == "feasible" and normal["rounds"] == 1 and normal["hours"] == 12
    assert 0.9 * 0.75 <= normal["chosen"]["social_welfare"] <= 0.75 + 1e-9  # auction optimum 0.75
    sold = {}
    for trade in normal["chosen"]["trades"]:
        sold[trade["seller"]] = sold.get(trade["seller"], 0) + trade["kwh"]
    assert sold.get("S1", 0) <= 5 + 1e-9 and "S3" not in sold  # S3 asks above the tariff
    assert len(normal["chosen"]["voltages"]["vm_pu"]) == 33
    assert all(p["feasible"] for p in normal["front"])


def test_nsga2_bad_bus_and_feeder(tmp_path, capsys):
    orders = "id,side,kwh,price,frame,bus\nS,sell,1,0.1,normal,999\nB,buy,1,0.2,normal,1\n"
    code, _, err = run(capsys, "market", "nsga2", write(tmp_path, "o.csv", orders), "--feeder", "case33bw")
    assert code == 2 and "feeder case33bw: no bus 999" in err
    code, _, err = run(capsys, "market", "nsga2", write(tmp_path, "o.csv", ORDERS), "--feeder", "atlantis")
    assert code == 2 and "unknown name 'atlantis'" in err


def test_powerflow(capsys):
    code, out, _ = run(capsys, "powerflow", "case33bw", "--check")
    assert code == 0
    assert (out["min_vm_bus"], round(out["min_vm_pu"], 4), round(out["loss_kw"], 1)) == (17, 0.9131, 202.7)
    assert out["pandapower"]["max_dv_pu"] <= 1e-6
    assert 17 in out["buses_outside_limits"] and out["converged"]
    code, out, _ = run(capsys, "powerflow", "kerber_dorfnetz", "--load-scale", "0.5")
    assert out["trafo_loading_percent"][0] < 50 and out["buses_outside_limits"] == []
    code, _, err = run(capsys, "powerflow", "nowhere")
    assert code == 2 and "unknown name 'nowhere'" in err


def test_help_does_not_import_heavy_libraries():
    probe = ("import sys; from p2pnode.cli import build_parser; build_parser(); "
             "print(sorted(m for m in ('pandapower', 'deap', 'scipy', 'optimizer.markets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["market"], ["market", "auction"], ["market", "pool"],
                                  ["market", "nsga2"], ["powerflow"]])
def test_every_help_renders(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    assert "usage: p2pnode" in capsys.readouterr().out


@pytest.mark.slow
def test_compare_trades_the_scenario_in_each_market_mode(tmp_path, capsys):
    """``market compare --modes``: one real swarm per mode on the same profiles; ex post
    delivers everything it agreed, ahead of delivery the sellers' meters decide."""
    scenario = tmp_path / "tiny.toml"
    scenario.write_text('name = "tiny"\nseed = 5\nmeters = 6\nprocesses = 1\nfeeder = "none"\n'
                        "[time]\nacceleration = 1000000.0\n")
    assert main(["market", "compare", str(scenario), "--mechanisms", "double_auction",
                 "--modes", "ex_post,real_time", "--out", str(tmp_path / "modes"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    post, real = out["modes"]["ex_post"], out["modes"]["real_time"]
    for row in (post, real):
        assert row["ledgers_valid"] and row["double_settlements"] == 0 and row["trades"] > 0
        assert row["perfect_foresight_match_kwh"] == pytest.approx(out["optimum_match_kwh"],
                                                                   rel=1e-3)
    assert (post["delivered_share"], post["shortfall_kwh"]) == (1.0, 0.0)
    assert real["delivered_share"] < 1.0 and real["trade_duration_s_p50"] > 0
    assert (tmp_path / "modes" / "real_time" / "shortfalls.png").exists()
    assert main(["market", "compare", str(scenario), "--modes", "ex_post,hourly"]) == 2
    assert "--modes ex_post,hourly" in capsys.readouterr().err
