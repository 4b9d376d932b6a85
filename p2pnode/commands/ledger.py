"""``p2pnode ledger verify``, ``p2pnode ledger export`` and ``p2pnode ledger recover``."""

from __future__ import annotations

import sys
from pathlib import Path

from ledger import LedgerRules, LedgerStore, StoreError, audit
from ledger.export import export_lines
from ledger.recover import recover_tails
from ledger.verify import ForkProof


def register(sub) -> None:
    group = sub.add_parser("ledger", help="verify or export ledger databases",
                           description="Audit and export hash-chained ledger databases.")
    cmds = group.add_subparsers(dest="ledger_command", metavar="SUBCOMMAND", required=True)

    verify = cmds.add_parser(
        "verify", help="check every block, chain, cross-link and fork",
        description="Verify all chains and cross-links in one or more ledger databases "
                    "(blocks of the same author in several files are merged, so forks between "
                    "files are found). Exit 0 when everything is valid, 1 with one line per "
                    "problem otherwise, 2 when a file cannot be read.")
    verify.add_argument("dbs", nargs="+", type=Path, metavar="DB", help="ledger database file")
    verify.add_argument("--trusted-issuer", action="append", default=None, metavar="HEXKEY",
                        help="accept credit vouchers only from this issuer key (repeatable)")
    verify.add_argument("--trusted-meter", action="append", default=None, metavar="HEXKEY",
                        help="accept MINT blocks only from readings signed by this meter key "
                             "(repeatable; a node's self-signed readings are then refused)")
    verify.add_argument("--trusted-meter-file", type=Path, metavar="FILE",
                        help="like --trusted-meter, for every key in FILE (one hex key a line)")
    verify.add_argument("--quiet", action="store_true", help="print problems only, no summary")
    verify.set_defaults(func=_verify)

    recover = cmds.add_parser(
        "recover", help="restore the lost tail of a chain from other ledgers",
        description="A node refuses to start when its chain is shorter than the head marked "
                    "beside the database (DB.head): a deleted -wal file, an old backup. This "
                    "copies the missing blocks, in order and checked, from other ledger "
                    "databases that hold them (the counterparties' ledgers, a backup). Exit 0 "
                    "when every chain is whole again, 1 when blocks are still missing.")
    recover.add_argument("db", type=Path, metavar="DB", help="the damaged ledger database")
    recover.add_argument("--from", dest="sources", type=Path, action="append", default=[],
                         metavar="SOURCE", help="a ledger database holding the lost blocks "
                                                "(repeatable)")
    recover.add_argument("--accept-loss", action="store_true",
                         help="when blocks stay missing, accept the shorter chain (its "
                              "counterparties hold the lost blocks: new blocks at those "
                              "sequence numbers are forks they refuse; retire the key instead "
                              "unless you know better)")
    recover.set_defaults(func=_recover)

    export = cmds.add_parser(
        "export", help="write every block as JSON lines for auditors",
        description="Write one JSON object per block (bytes as hex, with the raw signed bytes).")
    export.add_argument("db", type=Path, metavar="DB", help="ledger database file")
    export.add_argument("--out", type=Path, help="output file (default: standard output)")
    export.set_defaults(func=_export)


def _open(path: Path) -> LedgerStore:
    if not path.is_file():
        raise StoreError(f"{path}: no such ledger database")
    return LedgerStore(path)


def _recover(args) -> int:
    if args.db.exists() and args.db.stat().st_size == 0:
        args.db.unlink()   # a 0-byte file holds nothing: recover into a new database
    sources = [_open(path) for path in args.sources]
    try:
        with LedgerStore(args.db) as store:
            results = recover_tails(store, sources)
            missing = [r for r in results if not r.complete]
            for r in results:
                state = "whole" if r.complete else f"{r.marked - r.head_after} blocks still missing"
                print(f"{r.author.hex()[:16]}…: head {r.head_before} -> {r.head_after} of "
                      f"{r.marked}: {state}")
            if not results:
                print(f"{args.db}: no chain is behind its marker; nothing to recover")
            if missing and args.accept_loss:
                for r in missing:
                    store.reset_mark(r.author, r.head_after)
                print("accepted the loss: the node will write from the shorter head; its "
                      "counterparties refuse blocks that fork the chain they hold",
                      file=sys.stderr)
                return 0
    finally:
        for source in sources:
            source.close()
    if missing:
        print("blocks are still missing: add --from with more ledgers that hold them "
              "(each counterparty holds the blocks of its trades), or --accept-loss",
              file=sys.stderr)
        return 1
    return 0


def _keys(values: list[str] | None, option: str) -> frozenset[bytes] | None:
    if values is None:
        return None
    keys = set()
    for value in values:
        try:
            key = bytes.fromhex(value)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise StoreError(f"{option} {value!r}: expected a hex public key (64 hex digits)")
        keys.add(key)
    return frozenset(keys)


def _meter_file(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    from p2pnode.errors import ConfigError
    from p2pnode.files import CONFIG_MAX_BYTES, read_bounded
    try:
        text = read_bounded(path, CONFIG_MAX_BYTES, "meter key file").decode("utf-8")
    except (OSError, ConfigError, UnicodeDecodeError) as exc:
        raise StoreError(f"--trusted-meter-file {path}: cannot read ({exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _rules(args) -> LedgerRules:
    listed = getattr(args, "trusted_meter", None)
    from_file = _meter_file(getattr(args, "trusted_meter_file", None))
    if from_file is not None:
        listed = (listed or []) + from_file
    meters = _keys(listed, "--trusted-meter")
    return LedgerRules(trusted_issuers=_keys(args.trusted_issuer, "--trusted-issuer"),
                       trusted_meters=meters or frozenset(), require_trusted_meter=bool(meters))


def _verify(args) -> int:
    rows, forks = [], []
    for path in args.dbs:
        with _open(path) as store:
            rows.extend(store.raw_blocks())
            forks.extend(ForkProof(f.raw_kept, f.raw_other) for f in store.forks())
    report = audit(rows, _rules(args), forks)
    damaged = []
    for path in args.dbs:
        with _open(path) as store:
            damaged += [f"{path}: database damaged: {p}" for p in store.integrity_problems()]
    for problem in [*damaged, *report.problems]:
        print(problem)
    if not args.quiet:
        verdict = "valid" if report.ok else f"INVALID: {len(report.problems)} problem(s)"
        print(f"{report.blocks} blocks, {report.full_chains} full and {report.partial_chains} "
              f"partial chains, {report.pending_proposals} pending proposals, "
              f"{len(report.forks)} forks: {verdict}", file=sys.stderr)
    return 0 if report.ok and not damaged else 1


def _export(args) -> int:
    with _open(args.db) as store:
        out = args.out.open("w") if args.out else sys.stdout
        try:
            for line in export_lines(store.raw_blocks()):
                out.write(line + "\n")
        finally:
            if args.out:
                out.close()
    return 0
