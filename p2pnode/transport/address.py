"""Peer endpoints as written into offers: ``host:port`` (HTTP) or a libp2p multiaddr.

A libp2p endpoint names the address *and* the key: ``/ip4/<a.b.c.d>/tcp/<port>/p2p/<peer id>``
(``/ip6/`` and ``/dns4/``, ``/dns6/``, ``/dns/`` hosts too).  The peer id is derived from the
seller's Ed25519 public key (:func:`p2pnode.identity.peer_id`), so an offer can carry only its
own seller's peer id (:func:`endpoint_problem` checks it) and a buyer dialling it is
authenticated to exactly that seller by the Noise handshake.

A pure core: string checks, no sockets and no libp2p import.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from p2pnode.identity import peer_id

__all__ = ["Libp2pEndpoint", "endpoint_problem", "libp2p_endpoint", "parse_libp2p_endpoint"]

HOST_PROTOCOLS = ("ip4", "ip6", "dns4", "dns6", "dns")
MAX_HOST_CHARS = 63


@dataclasses.dataclass(frozen=True)
class Libp2pEndpoint:
    protocol: str   # ip4, ip6, dns4, dns6, dns
    host: str
    port: int
    peer_id: str

    def __str__(self) -> str:
        return f"/{self.protocol}/{self.host}/tcp/{self.port}/p2p/{self.peer_id}"


def libp2p_endpoint(host: str, port: int, public: bytes) -> str:
    """The multiaddr of ``public``'s peer endpoint at ``host:port``."""
    return str(Libp2pEndpoint(_host_protocol(host), host, port, peer_id(public)))


def _host_protocol(host: str) -> str:
    try:
        return "ip6" if ipaddress.ip_address(host).version == 6 else "ip4"
    except ValueError:
        return "dns"


def parse_libp2p_endpoint(text: str) -> Libp2pEndpoint | str:
    """The parsed endpoint, or a sentence saying what is wrong with ``text``."""
    parts = text.split("/")
    if len(parts) != 7 or parts[0] or parts[3] != "tcp" or parts[5] != "p2p":
        return f"endpoint {text!r} is not /ip4|ip6|dns4|dns6|dns/<host>/tcp/<port>/p2p/<peer id>"
    _, protocol, host, _, port, _, pid = parts
    if protocol not in HOST_PROTOCOLS:
        return f"endpoint {text!r}: {protocol!r} is not one of {', '.join(HOST_PROTOCOLS)}"
    if protocol in ("ip4", "ip6"):
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return f"endpoint {text!r}: {host!r} is not an {protocol} address"
        if address.version != int(protocol[-1]):
            return f"endpoint {text!r}: {host!r} is not an {protocol} address"
    elif not host or len(host) > MAX_HOST_CHARS or not host.replace("-", "").replace(".", "").isalnum():
        return f"endpoint {text!r}: {host!r} is not a host name"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"endpoint {text!r} has no valid port"
    if not pid.isalnum():
        return f"endpoint {text!r}: {pid!r} is not a peer id"
    return Libp2pEndpoint(protocol, host, int(port), pid)


def endpoint_problem(endpoint: str, seller: bytes) -> str | None:
    """What is wrong with an offer's ``endpoint`` for this ``seller``, or None.

    ``host:port`` for HTTP; a libp2p multiaddr whose peer id must be the seller's own.
    """
    if endpoint.startswith("/"):
        parsed = parse_libp2p_endpoint(endpoint)
        if isinstance(parsed, str):
            return parsed
        if parsed.peer_id != peer_id(seller):
            return f"endpoint {endpoint!r} names another peer than the seller"
        return None
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not host.isprintable() or " " in host:
        return f"endpoint {endpoint!r} is not host:port"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"endpoint {endpoint!r} has no valid port"
    return None
