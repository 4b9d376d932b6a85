"""DHT request time-outs from measured round trips (RFC 6298 timer), on real loopback UDP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math

import pytest

from ledger import SigningKey
from p2pnode.dht import wire
from p2pnode.dht.rtt import RetransmitTimer
from tests.dhtkit import FAST, run, swarm


def test_without_samples_the_floor_is_the_timeout_and_resends_back_off():
    timer = RetransmitTimer(0.5, 4.0)
    assert [timer.timeout_s(a) for a in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_fast_replies_keep_the_floor():
    timer = RetransmitTimer(0.5, 4.0)
    for _ in range(50):
        timer.sample(0.002)
    assert timer.timeout_s() == 0.5
    assert timer.srtt_s == pytest.approx(0.002)


def test_slow_replies_raise_the_timeout_to_srtt_plus_four_variations_capped():
    timer = RetransmitTimer(0.5, 4.0)
    timer.sample(0.8)                        # first sample: srtt = r, rttvar = r / 2
    assert timer.timeout_s() == pytest.approx(0.8 + 4 * 0.4)
    timer.sample(1.6)
    # rttvar = 3/4 * 0.4 + 1/4 * |0.8 - 1.6| = 0.5; srtt = 7/8 * 0.8 + 1/8 * 1.6 = 0.9
    assert timer.srtt_s == pytest.approx(0.9) and timer.rttvar_s == pytest.approx(0.5)
    assert timer.timeout_s() == pytest.approx(2.9)
    assert timer.timeout_s(1) == 4.0         # doubled, then capped by the ceiling
    for _ in range(200):
        timer.sample(0.9)                     # steady: the variation decays, srtt converges
    assert timer.timeout_s() == pytest.approx(0.9, abs=0.01)


def test_nonsense_samples_are_ignored_and_bad_bounds_refused():
    timer = RetransmitTimer(0.25, 1.0)
    for bad in (-1.0, math.nan):
        timer.sample(bad)
    assert timer.samples == 0 and timer.timeout_s() == 0.25
    with pytest.raises(ValueError):
        RetransmitTimer(0.5, 0.25)
    with pytest.raises(ValueError):
        RetransmitTimer(0.0, 1.0)


class SlowPeer(asyncio.DatagramProtocol):
    """Answers every ping after ``delay_s`` (a busy or distant node), with a valid reply."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.key = SigningKey.from_seed(bytes(range(32)))
        self.transport = None
        self.requests = 0

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        kind, msg_id, payload = wire.decode_datagram(data)
        assert kind == wire.REQUEST and wire.parse_request(payload)[0] == "ping"
        self.requests += 1
        reply = wire.encode_reply(msg_id, self.key.public, None)
        asyncio.get_running_loop().call_later(self.delay_s, self.transport.sendto, reply, addr)


@contextlib.asynccontextmanager
async def slow_peer(delay_s: float):
    """A :class:`SlowPeer` on 127.0.0.1 (OS-chosen port): yields (peer, its address)."""
    transport, peer = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: SlowPeer(delay_s), local_addr=("127.0.0.1", 0))
    try:
        yield peer, transport.get_extra_info("sockname")[:2]
    finally:
        transport.close()


def test_a_slow_peer_is_answered_once_the_timer_has_measured_it():
    settings = dataclasses.replace(FAST, rpc_timeout_s=0.2, rpc_max_timeout_s=3.0, rpc_attempts=3)

    async def main():
        async with slow_peer(0.3) as (peer, address), swarm(1, settings=settings) as (node,):
            protocol = node.server.protocol
            # the first ping times out at least once (0.2 s < 0.3 s) and is resent; the first
            # attempt's reply still answers it, and its round trip is measured
            assert await protocol.ping_address(address) is not None
            assert node.counters()["rpc_timeout"] >= 1 and peer.requests >= 2
            assert protocol.timer.samples >= 1 and protocol.timer.srtt_s >= 0.29
            assert protocol.timer.timeout_s() >= 0.87          # srtt + 4 rttvar = 3 x 0.3 s
            await asyncio.sleep(1.0)
            assert node.counters()["unexpected_reply"] >= 1    # the resend's answer, too late
            # now the time-out covers the round trip: no resend, no time-out
            timeouts, requests = node.counters()["rpc_timeout"], peer.requests
            for _ in range(3):
                assert await protocol.ping_address(address) is not None
            assert node.counters()["rpc_timeout"] == timeouts
            assert peer.requests == requests + 3
    run(main())


def test_a_reply_after_giving_up_is_counted_late_and_measured():
    settings = dataclasses.replace(FAST, rpc_timeout_s=0.1, rpc_max_timeout_s=0.1, rpc_attempts=1)

    async def main():
        async with slow_peer(0.3) as (_, address), swarm(1, settings=settings) as (node,):
            protocol = node.server.protocol
            assert await protocol.ping_address(address) is None      # gave up at 0.1 s
            assert protocol.timer.samples == 0
            await asyncio.sleep(0.6)
            assert node.counters()["late_reply"] == 1
            assert protocol.timer.srtt_s >= 0.29
    run(main())
