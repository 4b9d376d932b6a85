"""``p2pnode train`` writes a loadable model and reports metrics against the baselines."""

from __future__ import annotations

import json

from models import Predictor
from p2pnode.cli import main


def test_train_command_writes_model_and_metrics(tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(["train", "--out", str(out), "--rows", "1500", "--seed", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["out"] == str(out)
    assert report["quality_model_r2"] > report["quality_mean_r2"]
    assert report["duration_s_model_r2"] > report["duration_s_seller_past_r2"]
    assert Predictor.load(out).trained == {"rows": 1500, "seed": 3}


def test_train_command_rejects_too_few_rows(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "m.npz"), "--rows", "5"]) == 2
    assert "--rows" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()
