"""Feeder reports over libp2p between two ``p2pnode run`` processes on loopback.

A feeder node and a member node, each its own ``p2pnode run`` process started from its config
file (no ``[network] transport``: the deployed default, libp2p).  The member's ``report_to`` is
the multiaddr the feeder printed; its signed readings travel on
``/p2p-energy/feeder/report/1.0.0`` (Noise, yamux) and the feeder books them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.test_feeder_role import (
    FEEDER, FEEDER_METER, MEMBER_METERS, START, STEP, TIMING, _meter_csv, _node_dir,
)

P2PNODE = str(Path(sys.executable).with_name("p2pnode"))
SPEED = 120.0                  # node s per wall s: an interval takes 7.5 s
INTERVALS = 2
UP_TIMEOUT_S = 60
RUN_TIMEOUT_S = 120


def _start(home: Path) -> subprocess.Popen:
    when = datetime.fromtimestamp(START, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    with (home / "node.log").open("wb") as log:   # the child keeps its own descriptor
        return subprocess.Popen(
            [P2PNODE, "run", "--config", str(home / "node.toml"), "--speed", str(SPEED),
             "--start", when, "--log-level", "WARNING"]
            + (["--intervals", str(INTERVALS)] if home.name != "feeder" else []),
            cwd=home, stdout=subprocess.PIPE, stderr=log, text=True)


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.timeout(RUN_TIMEOUT_S + UP_TIMEOUT_S + 60)
def test_a_member_process_reports_to_a_feeder_process_over_libp2p(tmp_path):
    feeder_home, _ = _node_dir(tmp_path, "feeder", FEEDER_METER + [(0, 100)] * 4)
    member_home, member_key = _node_dir(tmp_path, "member", MEMBER_METERS[0])
    (feeder_home / "transformer.csv").write_text(
        "interval_start_s,transformer_wh\n" + "".join(f"{START + i * STEP},500\n"
                                                     for i in range(4)))
    (feeder_home / "node.toml").write_text(
        f'key_file = "node.key"\nledger = "node.db"\nfeeder = "{FEEDER}"\n[meter]\n'
        f'path = "meter.csv"\n{TIMING}[feeder_role]\nenabled = true\n'
        f'transformer_meter = "transformer.csv"\ngrace_s = 600\n'
        f'members = ["{member_key.public.hex()}"]\n')
    feeder = _start(feeder_home)
    member = None
    try:
        up = json.loads(feeder.stdout.readline())
        assert up["feeder_role"] == "feeder"
        assert up["peer"].startswith("/ip4/127.0.0.1/tcp/")          # libp2p by default
        (member_home / "node.toml").write_text(
            f'key_file = "node.key"\nledger = "node.db"\nfeeder = "{FEEDER}"\n'
            f'[meter]\npath = "meter.csv"\n{TIMING}[network]\nbootstrap = ["{up["dht"]}"]\n'
            f'[feeder_role]\nreport_to = "{up["peer"]}"\n')
        member = _start(member_home)
        out, _ = member.communicate(timeout=RUN_TIMEOUT_S)
        assert member.returncode == 0, (member_home / "node.log").read_text()[-3000:]
        assert json.loads(out.splitlines()[0])["feeder_role"] == "member"
        counts = _last_json(out)["counters"]
        assert counts["feeder_report_accepted"] == counts["feeder_report_queued"] >= INTERVALS
        assert not [k for k in counts if k.startswith("feeder_report_rejected")]
    finally:
        if member is not None and member.poll() is None:
            member.kill()
            member.wait()
        feeder.send_signal(signal.SIGTERM)
        out, _ = feeder.communicate(timeout=60)
    assert feeder.returncode == 0, (feeder_home / "node.log").read_text()[-3000:]
    books = _last_json(out)["feeder"]
    # the member's reports and the feeder's own readings, none refused
    assert books["reports_accepted"] >= counts["feeder_report_accepted"] + 1
    assert not [k for k in books if k.startswith("reports_dropped")]
