"""``p2pnode keygen`` and ``p2pnode id``."""

from __future__ import annotations

import json
from pathlib import Path

from p2pnode.identity import create_key_file, load_key_file, node_id, passphrase_from, peer_id

DEFAULT_KEY = Path("node.key")


def register(sub) -> None:
    keygen = sub.add_parser(
        "keygen", help="create an Ed25519 node key file (mode 0600)",
        description="Create a new Ed25519 key for a node and write it as PEM with mode 0600.",
    )
    keygen.add_argument("--key", type=Path, default=DEFAULT_KEY, help="key file (default: node.key)")
    keygen.add_argument("--force", action="store_true", help="replace an existing key file")
    _passphrase_args(keygen, "encrypt the key (PKCS#8) with the passphrase in")
    keygen.set_defaults(func=_keygen)

    ident = sub.add_parser(
        "id", help="print the node's public key, DHT node id and libp2p peer id",
        description="Print the identity derived from a key file.",
    )
    ident.add_argument("--key", type=Path, default=DEFAULT_KEY, help="key file (default: node.key)")
    ident.add_argument("--json", action="store_true", help="print JSON instead of text")
    _passphrase_args(ident, "the encrypted key's passphrase is in")
    ident.set_defaults(func=_id)


def _passphrase_args(parser, what: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--passphrase-file", type=Path, metavar="FILE",
                       help=f"{what} FILE (first line; mode 0600)")
    group.add_argument("--passphrase-env", default="", metavar="VAR",
                       help=f"{what} environment variable VAR")


def _passphrase(args) -> bytes | None:
    return passphrase_from(args.passphrase_file, args.passphrase_env)


def _describe(public: bytes) -> dict:
    return {"public_key": public.hex(), "node_id": node_id(public).hex(), "peer_id": peer_id(public)}


def _keygen(args) -> int:
    passphrase = _passphrase(args)
    key = create_key_file(args.key, overwrite=args.force, passphrase=passphrase)
    print(f"wrote {args.key} (mode 0600{', encrypted' if passphrase else ''})")
    for name, value in _describe(key.public).items():
        print(f"{name:11} {value}")
    return 0


def _id(args) -> int:
    info = _describe(load_key_file(args.key, _passphrase(args)).public)
    if args.json:
        print(json.dumps(info))
    else:
        for name, value in info.items():
            print(f"{name:11} {value}")
    return 0
