"""Shared output of the benchmarks: a two-column table on stdout and a flat JSON file."""

from __future__ import annotations

import json
from pathlib import Path


def _shown(value) -> str:
    if isinstance(value, float):
        if value and abs(value) < 1e-3:
            return f"{value:.3e}"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def emit(results: dict, json_path: Path | None) -> None:
    """Print ``results`` as a table and, when asked, write them as a flat JSON object."""
    width = max(map(len, results))
    print(f"{'metric':<{width}}  value")
    for name, value in results.items():
        print(f"{name:<{width}}  {_shown(value)}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
