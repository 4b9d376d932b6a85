"""Peer links: HTTP (:mod:`p2pnode.peer`) or libp2p (Noise over TCP, yamux).

:func:`make_peer_transport` builds the node's peer server and client for ``[network] transport``.
Importing this package does not import libp2p (about 70 MB); choosing ``"libp2p"`` does.

Modules: :mod:`.address` (endpoints in offers, pure), :mod:`.bridge` (a Trio thread called
from asyncio), :mod:`.libp2p_setup` (a py-libp2p host built our way), :mod:`.libp2p_host` (one
host per node: our request/reply protocols, limits, counters), :mod:`.libp2p_peer` (the server
and client over it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # offers.py imports .address from this package: keep its import light
    from ledger import SigningKey
    from p2pnode.config import NodeConfig
    from p2pnode.dht.faults import FaultPlan

__all__ = ["make_peer_transport"]


def make_peer_transport(config: NodeConfig, key: SigningKey,
                        handler: Callable[[bytes], bytes | None],
                        faults: FaultPlan | None = None):
    """``(server, client)`` of the peer links chosen by ``config.network.transport``."""
    stream = key.public.hex()
    if config.network.transport == "libp2p":
        from p2pnode.negotiation import MAX_PEER_MESSAGE_BYTES
        from p2pnode.transport.libp2p_host import Libp2pHost
        from p2pnode.transport.libp2p_peer import Libp2pPeerClient, Libp2pPeerServer
        host = Libp2pHost(key, MAX_PEER_MESSAGE_BYTES)
        return Libp2pPeerServer(host, handler), Libp2pPeerClient(host, faults, stream=stream)
    from p2pnode.peer import PeerClient, PeerServer
    return PeerServer(handler), PeerClient(faults, stream=stream)
