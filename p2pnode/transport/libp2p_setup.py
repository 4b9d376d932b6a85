"""Building a py-libp2p 0.8.1 host the way our nodes need it (used by :mod:`.libp2p_host`).

Our key as the libp2p identity; Noise only and yamux only; py-libp2p's own habits switched off
where they hurt a meter node (auto-dialling known peers, retrying dials, resolvers that raise
without nameservers); every failed connection upgrade counted by reason.
"""

from __future__ import annotations

import collections
import contextlib

import dns.resolver
from cryptography.hazmat.primitives import serialization

from ledger import SigningKey

__all__ = ["build_host", "libp2p_key_pair", "tolerant_dns"]


@contextlib.contextmanager
def tolerant_dns():
    """py-libp2p 0.8.1 builds DNS resolvers when imported (``libp2p.discovery.bootstrap``) and
    in every swarm, which raise where /etc/resolv.conf names no nameserver (a network namespace,
    a minimal container).  Our nodes dial addresses from offers, mostly IPs: within this
    context a resolver without nameservers is built unconfigured instead (a /dns/ address then
    fails to resolve, as it would anyway)."""
    original = dns.resolver.BaseResolver.__init__

    def tolerant(self, filename="/etc/resolv.conf", configure=True):
        try:
            original(self, filename, configure)
        except dns.resolver.NoResolverConfiguration:
            original(self, filename, configure=False)

    dns.resolver.BaseResolver.__init__ = tolerant
    try:
        yield
    finally:
        dns.resolver.BaseResolver.__init__ = original


with tolerant_dns():
    import libp2p  # noqa: F401

from libp2p import new_host  # noqa: E402
from libp2p.crypto.ed25519 import create_new_key_pair  # noqa: E402
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair  # noqa: E402
from libp2p.network.config import ConnectionConfig, RetryConfig  # noqa: E402
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID  # noqa: E402
from libp2p.security.noise.transport import Transport as NoiseTransport  # noqa: E402
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID  # noqa: E402
from libp2p.stream_muxer.yamux.yamux import Yamux  # noqa: E402


def libp2p_key_pair(key: SigningKey):
    """The libp2p key pair of the node key (same Ed25519 key, so the same peer id)."""
    private = serialization.load_pem_private_key(key.to_pem(), password=None)
    return create_new_key_pair(private.private_bytes_raw())


class _CountingUpgrader:
    """Wraps the swarm's upgrader: every failed upgrade is counted by reason, then re-raised."""

    def __init__(self, inner, counters: collections.Counter):
        self._inner, self._counters = inner, counters

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def upgrade_security(self, raw_conn, is_initiator: bool, peer_id=None):
        try:
            return await self._inner.upgrade_security(raw_conn, is_initiator, peer_id)
        except Exception as exc:
            self._counters[f"libp2p_{_failure_reason(exc)}"] += 1
            raise

    async def upgrade_connection(self, conn, peer_id):
        try:
            return await self._inner.upgrade_connection(conn, peer_id)
        except Exception:
            self._counters["libp2p_muxer_refused"] += 1
            raise


def _failure_reason(exc: BaseException) -> str:
    chain, seen = [], exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    names = " ".join(type(e).__name__ + " " + str(e) for e in chain)
    if "PeerIDMismatch" in names or "Peer ID mismatch" in names:
        return "peer_id_mismatch"
    if "Multiselect" in names or "negotiate the secure protocol" in names:
        return "security_refused"
    return "handshake_failed"


def build_host(key: SigningKey, counters: collections.Counter, *, max_connections: int,
               max_connections_per_peer: int, upgrade_timeout_s: float):
    """A py-libp2p host with our key: Noise only (no plaintext, secio or TLS), yamux only,
    our limits, no auto-dialling, no retries (the node has its own), failures counted."""
    key_pair = libp2p_key_pair(key)
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    with tolerant_dns():
        host = new_host(
            key_pair=key_pair, sec_opt={NOISE_PROTOCOL_ID: noise},
            muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
            connection_config=ConnectionConfig(
                min_connections=0, low_watermark=0,
                max_connections=max_connections,
                max_connections_per_peer=max_connections_per_peer,
                inbound_upgrade_timeout=upgrade_timeout_s,
                outbound_upgrade_timeout=upgrade_timeout_s))
    network = host.get_network()
    network.upgrader = _CountingUpgrader(network.upgrader, counters)
    network.retry_config = RetryConfig(max_retries=0)
    network.auto_connector.maybe_connect = _never
    return host


async def _never() -> None:
    """py-libp2p's auto-connector would dial up to 150 peers from the peerstore to keep a
    connection count up; a node dials only the sellers it trades with."""
