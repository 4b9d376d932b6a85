"""Every async test runs on the strict runner (``tests/dhtkit.run``).

That runner fails a test on an exception reported to the loop (a handler's, a stray task's), on
a task left running when the test's coroutine returns, and after its time limit.  A plain
``asyncio.run`` would let all three pass silently, so no test file calls it (or a loop's
``run_until_complete``) except the runner itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
RUNNER = TESTS / "dhtkit.py"
LOOP_ENTRIES = {"run", "run_until_complete"}


def _loop_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in LOOP_ENTRIES and isinstance(node.func.value, ast.Name) \
                and (node.func.value.id == "asyncio" or node.func.attr == "run_until_complete"):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_test_runs_an_event_loop_but_the_strict_runner():
    calls = [call for path in sorted(TESTS.glob("*.py")) if path != RUNNER
             for call in _loop_calls(path)]
    assert calls == [], "use tests.dhtkit.run (strict_run) instead of: " + ", ".join(calls)


def test_the_check_finds_a_plain_asyncio_run(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text("import asyncio\n\ndef test_x():\n    asyncio.run(main())\n"
                      "    loop.run_until_complete(main())\n")
    assert _loop_calls(sample) == ["test_sample.py:4", "test_sample.py:5"]
