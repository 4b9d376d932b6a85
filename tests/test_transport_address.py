"""Endpoints in offers: host:port or the seller's own libp2p multiaddr (pure checks)."""

from __future__ import annotations

import pytest

from ledger import EncodeError, Envelope, seal
from p2pnode.identity import peer_id
from p2pnode.offers import Drop, check_record
from p2pnode.transport.address import (
    Libp2pEndpoint, endpoint_problem, libp2p_endpoint, parse_libp2p_endpoint,
)
from tests.dhtkit import NOW, key, record

SELLER, OTHER = key("seller"), key("other")


def test_a_libp2p_endpoint_names_the_host_port_and_the_sellers_peer_id():
    text = libp2p_endpoint("127.0.0.1", 4001, SELLER.public)
    assert text == f"/ip4/127.0.0.1/tcp/4001/p2p/{peer_id(SELLER.public)}"
    assert parse_libp2p_endpoint(text) == Libp2pEndpoint("ip4", "127.0.0.1", 4001,
                                                         peer_id(SELLER.public))
    assert libp2p_endpoint("::1", 1, SELLER.public).startswith("/ip6/::1/tcp/1/p2p/12D3KooW")
    assert libp2p_endpoint("meter-7.local", 1, SELLER.public).startswith("/dns/meter-7.local/")


def test_the_libp2p_peer_id_is_the_one_libp2p_derives_from_the_node_key():
    from p2pnode.transport.libp2p_setup import libp2p_key_pair
    from libp2p.peer.id import ID
    assert ID.from_pubkey(libp2p_key_pair(SELLER).public_key).to_base58() == peer_id(SELLER.public)


def test_an_offer_carrying_its_sellers_multiaddr_checks():
    offer = seal(record(SELLER, endpoint=libp2p_endpoint("10.0.0.7", 7401, SELLER.public)), SELLER)
    assert check_record(offer.raw, NOW).message == offer.message


def test_an_offer_naming_another_peer_is_malformed():
    """A seller cannot send buyers to a peer that is not itself."""
    own = libp2p_endpoint("10.0.0.7", 7401, SELLER.public)
    other = libp2p_endpoint("10.0.0.7", 7401, OTHER.public)
    assert "another peer" in endpoint_problem(other, SELLER.public)
    with pytest.raises(EncodeError, match="another peer"):   # our own code cannot build one
        record(SELLER, endpoint=other)
    assert len(own) == len(other)     # a hostile seller's bytes: same layout, signed
    body = record(SELLER, endpoint=own).encode().replace(own.encode(), other.encode())
    assert check_record(Envelope(body, SELLER.sign(body)).encode(), NOW) is Drop.MALFORMED


@pytest.mark.parametrize("text, problem", [
    ("/ip4/127.0.0.1/tcp/4001", "is not /ip4"),
    ("/ip4/127.0.0.1/udp/4001/p2p/x", "is not /ip4"),
    ("/ip4/::1/tcp/4001/p2p/x", "not an ip4 address"),
    ("/ip6/10.0.0.1/tcp/4001/p2p/x", "not an ip6 address"),
    ("/ip4/300.0.0.1/tcp/4001/p2p/x", "not an ip4 address"),
    ("/unix/x/tcp/4001/p2p/x", "is not one of"),
    ("/dns/bad host/tcp/4001/p2p/x", "not a host name"),
    ("/ip4/127.0.0.1/tcp/0/p2p/x", "no valid port"),
    ("/ip4/127.0.0.1/tcp/99999/p2p/x", "no valid port"),
    ("/ip4/127.0.0.1/tcp/1/p2p/not-base58!", "not a peer id"),
])
def test_malformed_multiaddrs_say_what_is_wrong(text, problem):
    assert problem in parse_libp2p_endpoint(text)
    assert problem in endpoint_problem(text, SELLER.public)


def test_host_port_endpoints_are_still_accepted():
    assert endpoint_problem("127.0.0.1:9000", SELLER.public) is None
    assert "host:port" in endpoint_problem("no-port", SELLER.public)
