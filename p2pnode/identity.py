"""The node's identity: an Ed25519 key file, the Kademlia node id and the libp2p peer id.

The key file is PEM PKCS#8, unencrypted or encrypted with a passphrase (key at rest: the
passphrase comes from a file or an environment variable, see :func:`passphrase_from`).  It must
belong to the user running the node and be readable by its owner only: it is created with mode
0600 and refused when group or others can read or write it, when another user owns it (even when
running as root) and when it is not a regular file or over :data:`KEY_FILE_MAX_BYTES`.  The 160-bit Kademlia node
id is a hash of the public key, so a node cannot choose where it sits in the DHT.  The peer id
is the libp2p form for Ed25519 keys (identity multihash of the protobuf public key, base58btc),
so other libp2p tooling can name our nodes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ledger import DecodeError, SigningKey
from p2pnode.errors import FileLimitError, IdentityError
from p2pnode.files import KEY_FILE_MAX_BYTES, read_private

__all__ = [
    "NODE_ID_BYTES", "create_key_file", "load_key_file", "load_node_key", "node_id",
    "passphrase_from", "peer_id",
]
MAX_PASSPHRASE_BYTES = 1024

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


def passphrase_from(file: Path | None = None, env: str = "") -> bytes | None:
    """The key passphrase from ``file`` (its first line) or environment variable ``env``.

    None when neither is set; an :class:`IdentityError` names the source when it is set but
    unusable (missing, empty, not private).
    """
    if file is not None and env:
        raise IdentityError("give the key passphrase by a file or by an environment variable, "
                            "not both")
    if file is not None:
        try:
            text = read_private(Path(file), MAX_PASSPHRASE_BYTES, "key passphrase file")
        except FileNotFoundError:
            raise IdentityError(f"key passphrase file {file} does not exist") from None
        except FileLimitError as exc:
            raise IdentityError(str(exc)) from None
        secret = text.splitlines()[0] if text.strip() else b""
        where = f"key passphrase file {file}"
    elif env:
        value = os.environ.get(env)
        if value is None:
            raise IdentityError(f"environment variable {env} (the key passphrase) is not set")
        secret, where = value.encode(), f"environment variable {env}"
    else:
        return None
    if not secret.strip():
        raise IdentityError(f"{where}: the key passphrase is empty")
    return secret


def create_key_file(path: Path, *, overwrite: bool = False,
                    passphrase: bytes | None = None) -> SigningKey:
    """Generate a key and write it to ``path`` with owner-only permissions.

    With ``passphrase`` the PEM is encrypted (PKCS#8, the ``cryptography`` package's best
    available scheme).
    """
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
        out.write(key.to_pem(passphrase))
        out.flush()
        os.fsync(out.fileno())
    return key


def load_key_file(path: Path, passphrase: bytes | None = None) -> SigningKey:
    """Read a key file, refusing one that is not private, too big, or not a key."""
    path = Path(path)
    try:
        data = read_private(path, KEY_FILE_MAX_BYTES, "key file")
    except FileNotFoundError:
        raise IdentityError(f"key file {path} does not exist; create it with `p2pnode keygen`") from None
    except FileLimitError as exc:
        raise IdentityError(str(exc)) from None
    try:
        return SigningKey.from_pem(data, passphrase)
    except DecodeError as exc:
        raise IdentityError(f"key file {path} is not usable: {exc}") from exc


def load_node_key(config) -> SigningKey:
    """The key of a :class:`~p2pnode.config.NodeConfig`: ``key_file`` with its passphrase
    (``key_passphrase_file`` or ``key_passphrase_env``) when one is configured."""
    passphrase = passphrase_from(config.key_passphrase_file, config.key_passphrase_env)
    return load_key_file(config.key_file, passphrase)
