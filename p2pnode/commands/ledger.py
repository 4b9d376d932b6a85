"""``p2pnode ledger verify`` and ``p2pnode ledger export``."""

from __future__ import annotations

import sys
from pathlib import Path

from ledger import LedgerRules, LedgerStore, StoreError, audit
from ledger.export import export_lines
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
    for problem in report.problems:
        print(problem)
    if not args.quiet:
        verdict = "valid" if report.ok else f"INVALID: {len(report.problems)} problem(s)"
        print(f"{report.blocks} blocks, {report.full_chains} full and {report.partial_chains} "
              f"partial chains, {report.pending_proposals} pending proposals, "
              f"{len(report.forks)} forks: {verdict}", file=sys.stderr)
    return 0 if report.ok else 1


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
