"""benchmarks/swarm.py's driver: scenario files, their sizes and key names, bad files refused."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))   # its sibling module report
    spec = importlib.util.spec_from_file_location("bench_swarm", ROOT / "benchmarks" / "swarm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scenario_files_run_at_their_size_under_their_name(tmp_path, monkeypatch):
    bench = load_bench(monkeypatch)
    calls = []

    def fake_child(meters, quick, progress, timeout_s, mode=None, scenario_path=None):
        calls.append((meters, mode, scenario_path))
        return {"forward_match_ratio": 0.5 + meters / 1000}

    monkeypatch.setattr(bench, "run_child", fake_child)
    small = tmp_path / "small.toml"
    small.write_text('name = "small"\nmeters = 7\n')
    out = tmp_path / "modes.json"
    results = bench.run_sizes(None, False, False, 60.0, out, ["real_time", "day_ahead"],
                              [ROOT / "examples" / "winter.toml", small])
    assert calls == [(100, "real_time", ROOT / "examples" / "winter.toml"),
                     (100, "day_ahead", ROOT / "examples" / "winter.toml"),
                     (7, "real_time", small), (7, "day_ahead", small)]
    assert results["winter_real_time_m100_forward_match_ratio"] == 0.6
    assert results["small_day_ahead_m7_forward_match_ratio"] == 0.507
    assert "m100_wall_per_meter_vs_100" not in results and out.exists()


def test_a_bad_scenario_file_is_refused_naming_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('meters = "many"\n')
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "swarm.py"),
                           "--scenario", str(bad)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "meters" in done.stderr and "must be an integer" in done.stderr
