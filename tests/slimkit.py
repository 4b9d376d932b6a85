"""A fresh virtualenv with the wheel of this tree installed without extras (the meter install).

Used by ``tests/test_slim_install.py`` and ``benchmarks/node_rss.py``.  The wheel is built from
a copy of the package sources (the tree stays clean); the venv is made without pip and filled by
this interpreter's pip (``pip --python``), which resolves the wheel's own dependency metadata:
what arrives is what ``pip install p2p-energy`` brings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "p2pnode", "ledger", "optimizer", "models", "simulator")
HEAVY_DISTRIBUTIONS = ("pandas", "pvlib", "pandapower", "matplotlib", "pyarrow", "scipy",
                       "scikit-learn", "ray", "dask", "distributed", "skops", "demandlib")
INSTALL_TIMEOUT_S = 900


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                            **kwargs)
    if result.returncode:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({result.returncode}):\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def build_wheel(workdir: Path, source: Path = ROOT) -> Path:
    """The wheel of ``source``'s package, built in ``workdir`` from a copy of its sources."""
    tree = workdir / "src"
    tree.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, tree / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, tree / name)
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
          str(workdir / "dist"), str(tree)])
    (wheel,) = (workdir / "dist").glob("*.whl")
    return wheel


def make_venv(workdir: Path, requirement: str) -> Path:
    """A new venv at ``workdir / "venv"`` with ``requirement`` installed; its python."""
    venv = workdir / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
          requirement])
    return python


def slim_venv(workdir: Path, source: Path = ROOT) -> Path:
    """Build the wheel and install it without extras into a fresh venv; its python."""
    return make_venv(workdir, str(build_wheel(workdir, source)))


def distributions(python: Path) -> list[str]:
    """Lower-case names of every distribution installed in ``python``'s environment."""
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps(sorted({d.metadata['Name'].lower() for d in m.distributions()})))")
    return json.loads(_run([str(python), "-c", code]).stdout)


def site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(_run([str(python), "-c", code]).stdout.strip())


def tree_mb(path: Path) -> float:
    """Bytes of the files under ``path`` in MiB (what the install occupies)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) \
        / 2**20
