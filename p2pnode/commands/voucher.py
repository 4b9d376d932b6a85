"""``p2pnode voucher``: an issuer signs credit for a node (a CreditVoucher file)."""

from __future__ import annotations

import os
from pathlib import Path

from p2pnode.errors import ConfigError

MAX_AMOUNT = 1_000_000.0


def register(sub) -> None:
    parser = sub.add_parser(
        "voucher", help="sign a credit voucher for a node (as the issuer)",
        description="Write a sealed CreditVoucher: AMOUNT currency units of credit for the node "
                    "with the given public key, signed by the issuer's key. A node deposits it "
                    "on start when its file is listed in [credit] vouchers; each voucher can be "
                    "deposited once.",
    )
    parser.add_argument("--issuer-key", type=Path, required=True, help="the issuer's key file")
    parser.add_argument("--to", required=True, help="the node's public key (64 hex digits, "
                                                    "see `p2pnode id`)")
    parser.add_argument("--amount", type=float, required=True, help="currency units, e.g. 50")
    parser.add_argument("--out", type=Path, required=True, help="voucher file to write")
    parser.set_defaults(func=_voucher)


def _voucher(args) -> int:
    from ledger import CreditVoucher, seal
    from p2pnode.identity import load_key_file

    try:
        account = bytes.fromhex(args.to)
    except ValueError:
        account = b""
    if len(account) != 32:
        raise ConfigError(f"--to {args.to!r}: must be a public key of 64 hex digits")
    if not 0 < args.amount <= MAX_AMOUNT:
        raise ConfigError(f"--amount {args.amount}: must be in (0, {MAX_AMOUNT:g}]")
    issuer = load_key_file(args.issuer_key)
    voucher = CreditVoucher(issuer.public, account, os.urandom(16), int(round(args.amount * 1e6)))
    try:
        args.out.write_bytes(seal(voucher, issuer).raw)
    except OSError as exc:
        raise ConfigError(f"--out {args.out}: cannot write ({exc.strerror})") from exc
    print(f"wrote {args.out}: {args.amount:g} for {args.to[:16]}… from issuer {issuer.public.hex()[:16]}…")
    return 0
