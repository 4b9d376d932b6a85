"""Dependencies run one way: ledger <- optimizer, models <- p2pnode <- simulator <- benchmarks.

The node package and what it runs on never import the simulator, and a running node loads none
of the heavy libraries of the ``[sim]``/``[train]`` extras; the simulator's commands reach the
``p2pnode`` command through an entry point, and a missing extra is named.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from p2pnode.cli import build_parser, command_modules
from p2pnode.extras import EXTRA_OF_MODULE

ROOT = Path(__file__).resolve().parent.parent
NODE_LAYERS = ("p2pnode", "ledger", "optimizer/selection", "models")
TRAINING_ONLY = {"models/train.py"}     # needs the [train] extra; imports it inside functions
HEAVY = ("simulator", "pandas", "matplotlib", "sklearn", "scipy", "pvlib", "pandapower",
         "pyarrow", "skops", "ray", "distributed", "dask", "threadpoolctl", "demandlib",
         "moocore")   # moocore: deap.tools loads it (25 MB); the node uses deap.base only


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level) of every import in a file."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(name.partition(".")[0], id(node) in top_level) for name in names]
    return found


def test_node_layers_never_import_the_simulator_nor_heavy_libraries_at_module_level():
    problems = []
    for layer in NODE_LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for module, at_top in _imports(path):
                if module == "simulator":
                    problems.append(f"{relative} imports simulator")
                elif module in HEAVY and at_top and relative not in TRAINING_ONLY:
                    problems.append(f"{relative} imports {module} at module level")
    assert problems == []


def test_a_node_process_loads_no_simulator_nor_heavy_library():
    probe = (
        "import sys, json\n"
        "import p2pnode.node, p2pnode.commands.run, p2pnode.cli, p2pnode.api\n"
        "import p2pnode.feeder_role, p2pnode.feeder_report, p2pnode.feeder\n"
        "from optimizer.selection import select_offers\n"
        "p2pnode.node.default_predictor()\n"
        "p2pnode.cli.build_parser(['run'])\n"
        "print(json.dumps(sorted({m.partition('.')[0] for m in sys.modules})))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    loaded = set(json.loads(out.stdout))
    assert {"p2pnode", "models", "ledger", "numpy"} <= loaded       # the probe did import
    assert sorted(loaded & set(HEAVY)) == []


def test_simulator_commands_come_from_the_entry_point_group():
    modules = command_modules()
    for name in ("simulate", "sweep", "market", "powerflow", "meter-node", "health"):
        assert modules[name].startswith("simulator.cli."), name
    for name in ("run", "keygen", "id", "voucher", "ledger", "train"):
        assert modules[name].startswith("p2pnode.commands."), name
    registered = build_parser()._subparsers._group_actions[0].choices
    assert sorted(registered) == sorted(modules)      # every name is the command it registers
    assert not (ROOT / "p2pnode" / "commands" / "simulate.py").exists()


@pytest.mark.parametrize("argv, blocked, extra", [
    (["simulate", "examples/quickstart.toml", "--out", "{tmp}/run"], ("pandas", "pvlib"), "sim"),
    (["sweep", "examples/sweep.toml", "--out", "{tmp}/sweep"], ("pandas",), "sim"),
    (["train", "--out", "{tmp}/m.npz", "--rows", "600"], ("sklearn",), "train"),
])
def test_a_command_without_its_extra_names_the_extra(tmp_path, argv, blocked, extra):
    # a module set to None in sys.modules cannot be imported: as if it were not installed
    block = "; ".join(f"sys.modules[{name!r}] = None" for name in blocked)
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    code = f"import sys; {block}; from p2pnode.cli import main; sys.exit(main({argv!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert f"needs the [{extra}] extra" in out.stderr
    assert f"pip install 'p2p-energy[{extra}]'" in out.stderr
    assert "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_every_heavy_library_maps_to_an_extra_of_pyproject():
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    base = " ".join(project["dependencies"])
    for module, extra in EXTRA_OF_MODULE.items():
        distribution = {"sklearn": "scikit-learn", "dask": "distributed"}.get(module, module)
        assert any(req.startswith(distribution) for req in extras[extra]), module
        assert distribution not in base, module
    assert "p2p-energy[sim,cluster,train]" in extras["dev"]
