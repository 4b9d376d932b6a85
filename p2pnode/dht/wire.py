"""The DHT's datagrams: framing, strict decoding and the shapes of requests and replies.

Pure functions, no sockets.  The framing is rpcudp's: one byte kind (``0x00`` request, ``0x01``
reply), a 20-byte message id, then msgpack -- ``[name, [args...]]`` for a request, the value for
a reply.  Everything coming from a peer goes through a ``parse_*`` function here, which raises
:class:`WireError` on any deviation (wrong type, size, count), so the protocol drops and counts
bad input instead of crashing on it.

Requests carry the caller's 32-byte public key first; every reply is ``[public, value]`` with
the responder's public key.  Each side derives the other's node id from that key with
:func:`p2pnode.identity.node_id` and never trusts a claimed id::

    ping       [public]                      -> None
    store      [public, key, [record, ...]]  -> number of records accepted
    find_node  [public, key]                 -> [[id, ip, port], ...]
    find_value [public, key, cursor|None]    -> {"nodes": [...], "records": [...], "more": cursor|None}
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack

from ledger import PUBLIC_KEY_BYTES
from p2pnode.offers import OFFER_ID_BYTES

__all__ = [
    "FindValueReply", "MAX_DATAGRAM_BYTES", "MAX_NODES_PER_REPLY", "MAX_RECORDS_PER_STORE",
    "REPLY", "REQUEST", "WireError", "decode_datagram", "encode_reply", "encode_request",
    "parse_find_value", "parse_nodes", "parse_reply", "parse_request", "want_bytes", "want_public",
]

REQUEST, REPLY = b"\x00", b"\x01"
MSG_ID_BYTES = 20
KEY_BYTES = 20
MAX_DATAGRAM_BYTES = 8192
MAX_NODES_PER_REPLY = 32
MAX_RECORDS_PER_STORE = 32
MAX_RECORDS_PER_REPLY = 64
REPLY_OVERHEAD_BYTES = 600   # framing, keys, the responder's key and per-record headers
MAX_HOST_CHARS = 64
CURSOR_BYTES = PUBLIC_KEY_BYTES + OFFER_ID_BYTES
REQUEST_ARITY = {"ping": 1, "store": 3, "find_node": 2, "find_value": 3}


class WireError(ValueError):
    """A datagram from a peer is malformed; the message says how."""


class FindValueReply(NamedTuple):
    nodes: list[tuple[bytes, str, int]]
    records: list[bytes]
    more: bytes | None


def encode_request(msg_id: bytes, name: str, args: list) -> bytes:
    return REQUEST + msg_id + msgpack.packb([name, args], use_bin_type=True)


def encode_reply(msg_id: bytes, public: bytes, value: Any) -> bytes:
    return REPLY + msg_id + msgpack.packb([public, value], use_bin_type=True)


def parse_reply(payload: Any) -> tuple[bytes, Any]:
    """(responder's public key, value) of a reply payload."""
    if type(payload) is not list or len(payload) != 2:
        raise WireError("a reply is [public, value]")
    return want_public(payload[0]), payload[1]


def decode_datagram(data: bytes) -> tuple[bytes, bytes, Any]:
    """(kind, msg_id, payload) of a datagram; WireError if it is not one of ours."""
    if not MSG_ID_BYTES + 2 <= len(data) <= MAX_DATAGRAM_BYTES:
        raise WireError(f"datagram of {len(data)} bytes")
    kind, msg_id = data[:1], data[1:MSG_ID_BYTES + 1]
    if kind not in (REQUEST, REPLY):
        raise WireError(f"unknown datagram kind {kind!r}")
    try:
        payload = msgpack.unpackb(data[MSG_ID_BYTES + 1:], raw=False, strict_map_key=True,
                                  use_list=True, max_bin_len=MAX_DATAGRAM_BYTES)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"malformed msgpack: {exc}") from exc
    return kind, msg_id, payload


def parse_request(payload: Any) -> tuple[str, list]:
    """(name, args) of a request payload with the right number of arguments."""
    if type(payload) is not list or len(payload) != 2:
        raise WireError("a request is [name, args]")
    name, args = payload
    if type(name) is not str or name not in REQUEST_ARITY:
        raise WireError(f"unknown request {name!r}")
    if type(args) is not list or len(args) != REQUEST_ARITY[name]:
        raise WireError(f"{name} takes {REQUEST_ARITY[name]} arguments")
    return name, args


def want_bytes(value: Any, size: int, what: str) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise WireError(f"{what} must be {size} bytes")
    return value


def want_public(value: Any) -> bytes:
    return want_bytes(value, PUBLIC_KEY_BYTES, "public key")


def want_key(value: Any) -> bytes:
    return want_bytes(value, KEY_BYTES, "key")


def want_cursor(value: Any) -> bytes | None:
    return None if value is None else want_bytes(value, CURSOR_BYTES, "cursor")


def want_records(value: Any, limit: int) -> list[bytes]:
    """A list of opaque records; each is judged (and an oversize one counted) by its receiver."""
    if type(value) is not list or len(value) > limit:
        raise WireError(f"records must be a list of at most {limit}")
    if any(type(raw) is not bytes for raw in value):
        raise WireError("each record must be bytes")
    return value


def parse_nodes(value: Any) -> list[tuple[bytes, str, int]]:
    """A peer's list of contacts: [[id (20 bytes), ip, port], ...]."""
    if type(value) is not list or len(value) > MAX_NODES_PER_REPLY:
        raise WireError(f"nodes must be a list of at most {MAX_NODES_PER_REPLY}")
    out = []
    for item in value:
        if type(item) is not list or len(item) != 3:
            raise WireError("a node is [id, ip, port]")
        node_id, ip, port = item
        want_bytes(node_id, KEY_BYTES, "node id")
        if type(ip) is not str or not 0 < len(ip) <= MAX_HOST_CHARS:
            raise WireError("node ip must be a short string")
        if type(port) is not int or not 1 <= port <= 65535:
            raise WireError("node port must be within 1..65535")
        out.append((node_id, ip, port))
    return out


def parse_find_value(value: Any) -> FindValueReply:
    if type(value) is not dict or set(value) != {"nodes", "records", "more"}:
        raise WireError("a find_value reply is {nodes, records, more}")
    return FindValueReply(parse_nodes(value["nodes"]),
                          want_records(value["records"], MAX_RECORDS_PER_REPLY),
                          want_cursor(value["more"]))


def record_budget(nodes: list) -> int:
    """Bytes of records a find_value reply carrying ``nodes`` can hold within a datagram."""
    return MAX_DATAGRAM_BYTES - REPLY_OVERHEAD_BYTES - len(msgpack.packb(nodes, use_bin_type=True))


def find_value_reply(nodes: list, records: tuple[bytes, ...], more: bytes | None) -> dict:
    return {"nodes": nodes, "records": list(records), "more": more}
