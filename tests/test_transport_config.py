"""``[network] transport``: what config files, code and the CLI default to; the factory."""

from __future__ import annotations

import pytest

from p2pnode.config import NetworkConfig, NodeConfig, config_from_dict
from p2pnode.errors import ConfigError
from p2pnode.peer import PeerClient, PeerServer
from p2pnode.transport import make_peer_transport
from tests.dhtkit import key
from tests.dhtkit import run as strict_run

KEY = key("transport config")


def test_a_config_file_defaults_to_libp2p_code_to_http():
    assert config_from_dict({}).network.transport == "libp2p"          # p2pnode run
    assert config_from_dict({"network": {"transport": "http"}}).network.transport == "http"
    assert NetworkConfig().transport == "http"                          # NodeConfig() in code


FEEDER_ADDR = "/ip4/127.0.0.1/tcp/7401/p2p/12D3KooWPeuigMJXMh8hCPQxjaB5b9Gu6vBisyyeF6AbP9NkFqSX"


@pytest.mark.parametrize("role", [{"report_to": FEEDER_ADDR},
                                  {"enabled": True, "transformer_meter": "t.csv"}])
def test_a_node_in_a_feeder_role_defaults_to_libp2p_too(role, tmp_path):
    """Feeder reports are a libp2p protocol as well: a feeder-role node is no exception."""
    assert config_from_dict({"feeder_role": role}, tmp_path).network.transport == "libp2p"
    http = {"feeder_role": role, "network": {"transport": "http"}}
    if "enabled" in role:
        assert config_from_dict(http, tmp_path).network.transport == "http"


def test_report_to_must_match_the_transport_and_says_what_it_wants(tmp_path):
    with pytest.raises(ConfigError, match=r'\[feeder_role\] report_to = "http://127.0.0.1:7401": '
                                          r"must be the feeder node's multiaddr /ip4/<host>/tcp/"
                                          r'<port>/p2p/<peer id>: this node\'s \[network\] '
                                          r'transport is "libp2p"'):
        config_from_dict({"feeder_role": {"report_to": "http://127.0.0.1:7401"}}, tmp_path)
    with pytest.raises(ConfigError, match=r'report_to = "/ip4/.*": must be http://host:port: '
                                          r'this node\'s \[network\] transport is "http"'):
        config_from_dict({"feeder_role": {"report_to": FEEDER_ADDR},
                          "network": {"transport": "http"}}, tmp_path)
    ok = config_from_dict({"feeder_role": {"report_to": "http://127.0.0.1:7401"},
                           "network": {"transport": "http"}}, tmp_path)
    assert ok.feeder_role.report_to == "http://127.0.0.1:7401"


def test_an_unknown_transport_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"\[network\] transport = \"quic\": must be one of "
                                          r"http, libp2p"):
        config_from_dict({"network": {"transport": "quic"}})


def test_the_factory_builds_the_chosen_transport():
    from p2pnode.transport.libp2p_peer import Libp2pPeerClient, Libp2pPeerServer

    def handler(body):
        return body

    server, client = make_peer_transport(NodeConfig(), KEY, handler)
    assert type(server) is PeerServer and type(client) is PeerClient
    server, client = make_peer_transport(
        NodeConfig(network=NetworkConfig(transport="libp2p")), KEY, handler)
    assert isinstance(server, Libp2pPeerServer) and isinstance(client, Libp2pPeerClient)
    assert server.libp2p is client.libp2p        # one host: one identity, listens and dials
    assert server.handler is handler


def test_a_libp2p_endpoint_on_a_taken_port_is_refused_like_http():
    """py-libp2p listens with SO_REUSEPORT: without the check a second node would share it."""
    import asyncio
    import socket

    from p2pnode.peer import PeerError
    from p2pnode.transport.libp2p_host import Libp2pHost
    from p2pnode.transport.libp2p_peer import Libp2pPeerServer

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        server = Libp2pPeerServer(Libp2pHost(KEY, 4096), lambda body: body)
        with pytest.raises(PeerError, match="cannot bind the libp2p peer endpoint"):
            strict_run(server.start("127.0.0.1", taken.getsockname()[1]), timeout_s=30)
    finally:
        taken.close()
