"""``CI=true`` turns every kind of skip into a failure; without it a skip stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIPPING = {
    "test_call.py": "import pytest\n\ndef test_x():\n    pytest.skip('no tool')\n",
    "test_mark.py": "import pytest\n\n@pytest.mark.skipif(True, reason='no tool')\n"
                    "def test_x():\n    pass\n",
    "test_module.py": "import pytest\n\npytest.importorskip('no_such_module_here')\n\n"
                      "def test_x():\n    pass\n",
    "test_fixture.py": "import pytest\n\n@pytest.fixture\ndef tool():\n    pytest.skip('no tool')\n\n"
                       "def test_x(tool):\n    pass\n",
}


def _pytest(tmp_path: Path, name: str, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / name).write_text(SKIPPING[name])
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(ROOT)}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.ci_skips", "-p", "no:cacheprovider",
         "-q", "-rA", "-c", str(tmp_path / "pytest.ini"), str(tmp_path / name)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("name", sorted(SKIPPING))
def test_a_skip_fails_in_ci(tmp_path, name):
    result = _pytest(tmp_path, name, "true")
    assert result.returncode in (1, 2), result.stdout     # failed / failed at collection
    assert "skipped in CI (CI=true turns a skip into a failure)" in result.stdout
    assert " skipped" not in result.stdout.splitlines()[-1]


@pytest.mark.parametrize("name", sorted(SKIPPING))
def test_a_skip_stays_a_skip_outside_ci(tmp_path, name):
    result = _pytest(tmp_path, name, None)
    assert result.returncode in (0, 5), result.stdout     # 5: a skipped module collects nothing
    assert "1 skipped" in result.stdout.splitlines()[-1]
