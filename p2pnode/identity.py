"""The node's identity: an Ed25519 key file, the Kademlia node id and the libp2p peer id.

The key file is PEM (PKCS#8, unencrypted) and must be readable by its owner only: it is created
with mode 0600 and refused when group or others can read or write it.  The 160-bit Kademlia node
id is a hash of the public key, so a node cannot choose where it sits in the DHT.  The peer id
is the libp2p form for Ed25519 keys (identity multihash of the protobuf public key, base58btc),
so other libp2p tooling can name our nodes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ledger import DecodeError, SigningKey
from p2pnode.errors import IdentityError

__all__ = ["NODE_ID_BYTES", "create_key_file", "load_key_file", "node_id", "peer_id"]

NODE_ID_BYTES = 20  # Kademlia's 160-bit id space
NODE_ID_DOMAIN = b"p2p-energy/node-id/v1"
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def node_id(public: bytes) -> bytes:
    """The 160-bit DHT id bound to ``public``."""
    return hashlib.sha256(NODE_ID_DOMAIN + public).digest()[:NODE_ID_BYTES]


def peer_id(public: bytes) -> str:
    """libp2p peer id of an Ed25519 public key (starts with ``12D3KooW``)."""
    protobuf = b"\x08\x01\x12\x20" + public  # PublicKey{Type: Ed25519, Data: 32 bytes}
    multihash = b"\x00" + bytes([len(protobuf)]) + protobuf  # identity hash
    return _base58(multihash)


def _base58(data: bytes) -> str:
    number, out = int.from_bytes(data, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        out = _BASE58[digit] + out
    leading_zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * leading_zeros + out


def create_key_file(path: Path, *, overwrite: bool = False) -> SigningKey:
    """Generate a key and write it to ``path`` with owner-only permissions."""
    path = Path(path)
    key = SigningKey.generate()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise IdentityError(f"{path} already exists; pass --force to replace it") from None
    except OSError as exc:
        raise IdentityError(f"cannot create key file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(key.to_pem())
        out.flush()
        os.fsync(out.fileno())
    return key


def load_key_file(path: Path) -> SigningKey:
    """Read the node key, refusing a file that others can read or write."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(f"key file {path} does not exist; create it with `p2pnode keygen`") from None
    except OSError as exc:
        raise IdentityError(f"cannot read key file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(
            f"key file {path} is accessible by others (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        return SigningKey.from_pem(data)
    except DecodeError as exc:
        raise IdentityError(f"key file {path} is not usable: {exc}") from exc
