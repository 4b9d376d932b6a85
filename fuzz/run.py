"""Run one fuzz target under atheris (libFuzzer): ``python fuzz/run.py TARGET [libFuzzer args]``.

Instruments the project's packages (ledger, p2pnode, optimizer, simulator) for coverage, then
fuzzes ``fuzz.targets.TARGETS[TARGET]``; libFuzzer's arguments follow the name, e.g.
``-max_total_time=60 fuzz/corpus/offer_record``.  A crash writes ``crash-<sha1>`` (the input)
into ``-artifact_prefix`` and exits non-zero; ``fuzz/regressions/`` is where such inputs are kept
and replayed by ``tests/test_fuzz.py``.  ``make fuzz`` and ``benchmarks/fuzz.py`` run every
target this way, one process each.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["ledger", "p2pnode", "optimizer", "simulator", "fuzz"]):
    from fuzz.targets import TARGETS, prepare
    if len(sys.argv) > 1 and sys.argv[1] in TARGETS:
        prepare(sys.argv[1])


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} TARGET [libFuzzer args]; targets: {', '.join(TARGETS)}")
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
