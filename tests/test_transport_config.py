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


@pytest.mark.parametrize("role", [{"report_to": "http://127.0.0.1:7401"},
                                  {"enabled": True, "transformer_meter": "t.csv"}])
def test_a_node_in_a_feeder_role_defaults_to_http_and_refuses_libp2p(role, tmp_path):
    assert config_from_dict({"feeder_role": role}, tmp_path).network.transport == "http"
    with pytest.raises(ConfigError, match=r"\[network\] transport = \"libp2p\": must be \"http\" "
                                          r"for a node in a \[feeder_role\]"):
        config_from_dict({"feeder_role": role, "network": {"transport": "libp2p"}}, tmp_path)


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
