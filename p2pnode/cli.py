"""The ``p2pnode`` command.

Each command group lives in its own module and exposes ``register(subparsers)``; it sets
``func`` on its parser to a handler ``func(args) -> int``.  The node's own commands are in
:mod:`p2pnode.commands`; commands of other layers (the simulator's ``simulate``, ``sweep``,
``market``, ``powerflow``, ``meter-node``, ``health``) register themselves through the ``p2pnode.commands``
entry-point group, so this package never imports them.

Only the module of the command being run is imported (``p2pnode run`` must not pay for the
simulator's imports); ``p2pnode --help`` imports them all.  A command whose optional
dependencies are not installed fails with the extra to install, e.g. ``pip install
'p2p-energy[sim]'``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ledger import LedgerError
from p2pnode.errors import NodeError
from p2pnode.extras import MissingExtra, missing_extra

ENTRY_POINT_GROUP = "p2pnode.commands"
NODE_COMMANDS = {        # command name -> module that registers it
    "keygen": "p2pnode.commands.identity",
    "id": "p2pnode.commands.identity",
    "run": "p2pnode.commands.run",
    "voucher": "p2pnode.commands.voucher",
    "ledger": "p2pnode.commands.ledger",
    "train": "p2pnode.commands.train",
}


def command_modules() -> dict[str, str]:
    """Command name -> the module that registers it: the node's, then the entry points'."""
    from importlib.metadata import entry_points
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return NODE_COMMANDS | {name: module for name, module in found.items()
                            if name not in NODE_COMMANDS}


def _requested(argv: list[str] | None, modules: dict[str, str]) -> list[str]:
    """The one module to import when argv names a command, else all of them (for help)."""
    first = next((arg for arg in argv or () if not arg.startswith("-")), None)
    if first in modules:
        return [modules[first]]
    return list(dict.fromkeys(modules.values()))


def _register_missing(sub, names: list[str], problem: MissingExtra) -> None:
    """A placeholder parser per command of a module that cannot be imported here; it takes
    any arguments and fails with the extra to install."""
    for name in names:
        parser = sub.add_parser(name, help=f"(needs {problem.install})", add_help=False)
        parser.set_defaults(func=_fail_with(problem), any_arguments=True)


def _fail_with(problem: MissingExtra):
    def handler(args) -> int:
        raise problem
    return handler


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv`` (only its command registered), or for every command."""
    parser = argparse.ArgumentParser(
        prog="p2pnode",
        description="Peer-to-peer energy trading node: one per smart meter.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    first = next((arg for arg in argv or () if not arg.startswith("-")), None)
    # a node command needs no entry-point scan (importlib.metadata: a daemon need not load it)
    modules = {first: NODE_COMMANDS[first]} if first in NODE_COMMANDS else command_modules()
    for module in _requested(argv, modules):
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as exc:
            problem = missing_extra(exc)
            if problem is None:
                raise
            _register_missing(sub, [n for n, m in modules.items() if m == module], problem)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "any_arguments", False):
        parser.error("unrecognized arguments: " + " ".join(unknown))
    try:
        return int(args.func(args) or 0)
    except (NodeError, LedgerError) as exc:
        print(f"p2pnode {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        problem = missing_extra(exc)
        if problem is None:
            raise
        print(f"p2pnode {args.command}: error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
