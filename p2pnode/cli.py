"""The ``p2pnode`` command.

Each command group lives in its own module under :mod:`p2pnode.commands` and exposes
``register(subparsers)``; it sets ``func`` on its parser to a handler ``func(args) -> int``.
Handlers import heavy libraries inside themselves so ``p2pnode --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ledger import LedgerError
from p2pnode.errors import NodeError

COMMAND_MODULES = (
    "p2pnode.commands.identity",
    "p2pnode.commands.run",
    "p2pnode.commands.meternode",
    "p2pnode.commands.voucher",
    "p2pnode.commands.ledger",
    "p2pnode.commands.simulate",
    "p2pnode.commands.sweep",
    "p2pnode.commands.market",
    "p2pnode.commands.train",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pnode",
        description="Peer-to-peer energy trading node: one per smart meter.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (NodeError, LedgerError) as exc:
        print(f"p2pnode {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
