"""Datagram parsing and fault injection (no sockets): peers' garbage is a WireError, nothing else."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from p2pnode.dht import FaultPlan, FaultyTransport
from p2pnode.dht import wire

from tests.dhtkit import run as strict_run

MSG_ID = b"m" * 20


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_random_bytes_decode_or_raise_wire_error(data):
    try:
        kind, msg_id, payload = wire.decode_datagram(data)
    except wire.WireError:
        return
    assert kind in (wire.REQUEST, wire.REPLY) and len(msg_id) == 20


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.binary(max_size=40)
                    | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12))
@settings(max_examples=300)
def test_any_payload_parses_or_raises_wire_error(payload):
    for parse in (wire.parse_request, wire.parse_reply, wire.parse_nodes, wire.parse_find_value):
        try:
            parse(payload)
        except wire.WireError:
            pass


def test_requests_round_trip_and_bad_ones_are_named():
    data = wire.encode_request(MSG_ID, "find_node", [b"p" * 32, b"k" * 20])
    kind, msg_id, payload = wire.decode_datagram(data)
    assert (kind, msg_id) == (wire.REQUEST, MSG_ID)
    assert wire.parse_request(payload) == ("find_node", [b"p" * 32, b"k" * 20])
    for bad, why in [(["nope", []], "unknown request"), (["ping", [1, 2]], "takes 1"),
                     ({"a": 1}, "is \\[name, args\\]")]:
        with pytest.raises(wire.WireError, match=why):
            wire.parse_request(bad)
    with pytest.raises(wire.WireError, match="kind"):
        wire.decode_datagram(b"\x07" + MSG_ID + msgpack.packb(1))
    with pytest.raises(wire.WireError, match="bytes"):
        wire.decode_datagram(b"\x00" * (wire.MAX_DATAGRAM_BYTES + 1))
    with pytest.raises(wire.WireError, match="msgpack"):
        wire.decode_datagram(wire.REQUEST + MSG_ID + b"\xc1")


@pytest.mark.parametrize("nodes", [
    [[b"i" * 19, "127.0.0.1", 9]], [[b"i" * 20, "", 9]], [[b"i" * 20, "h", 0]],
    [[b"i" * 20, "h", True]], [[b"i" * 20, "h"]], [[b"i" * 20, "h", 1]] * 33, "nodes",
])
def test_bad_contact_lists_are_refused(nodes):
    with pytest.raises(wire.WireError):
        wire.parse_nodes(nodes)


def test_find_value_replies_are_checked_field_by_field():
    good = {"nodes": [[b"i" * 20, "127.0.0.1", 9000]], "records": [b"r"], "more": None}
    assert wire.parse_find_value(good).nodes == [(b"i" * 20, "127.0.0.1", 9000)]
    for bad in [dict(good, extra=1), dict(good, records=[None]), dict(good, more=b"x"),
                dict(good, records=["str"]), dict(good, records=[b"r"] * 65)]:
        with pytest.raises(wire.WireError):
            wire.parse_find_value(bad)


# -- fault injection -------------------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.sent, self.closed = [], False

    def sendto(self, data, addr):
        self.sent.append(data)

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1) if name == "sockname" else default


def test_fault_plans_are_validated():
    for bad in [dict(loss=1.5), dict(duplicate=-0.1), dict(delay_min_s=0.2, delay_max_s=0.1)]:
        with pytest.raises(ValueError):
            FaultPlan(**bad)


def test_loss_and_duplication_follow_the_plan_and_the_seed():
    def run(seed):
        inner = Recorder()
        transport = FaultyTransport(inner, FaultPlan(loss=0.1, duplicate=0.2, seed=seed), "n")
        for i in range(5000):
            transport.sendto(i.to_bytes(2, "big"), ("127.0.0.1", 1))
        return inner.sent, transport
    sent, transport = run(7)
    assert 400 < transport.lost < 600 and 800 < transport.duplicated < 1000
    assert len(sent) == 5000 - transport.lost + transport.duplicated
    assert run(7)[0] == sent and run(8)[0] != sent
    assert transport.get_extra_info("sockname") == ("127.0.0.1", 1)


def test_no_plan_passes_everything_and_a_plan_can_be_switched_on():
    inner = Recorder()
    transport = FaultyTransport(inner, None, "n")
    transport.sendto(b"a", None)
    transport.set_plan(FaultPlan(loss=1.0))
    transport.sendto(b"b", None)
    assert inner.sent == [b"a"] and transport.lost == 1


def test_delayed_datagrams_arrive_later_and_close_cancels_them():
    async def main():
        inner = Recorder()
        transport = FaultyTransport(
            inner, FaultPlan(delay_min_s=0.01, delay_max_s=0.03, seed=1), "n")
        for i in range(20):
            transport.sendto(bytes([i]), None)
        assert inner.sent == []
        await asyncio.sleep(0.1)
        assert sorted(inner.sent) == [bytes([i]) for i in range(20)]
        transport.sendto(b"late", None)
        transport.close()
        await asyncio.sleep(0.05)
        assert b"late" not in inner.sent and inner.closed
    strict_run(main(), timeout_s=60)


def test_a_full_find_value_reply_with_long_contacts_fits_a_datagram():
    nodes = [[b"i" * 20, "f" * 64, 65535] for _ in range(20)]
    budget = wire.record_budget(nodes)
    records = [b"r" * 990] * (budget // 990) + [b"r" * 200] * ((budget % 990) // 200)
    reply = wire.find_value_reply(nodes, tuple(records), b"c" * 48)
    assert len(wire.encode_reply(MSG_ID, b"p" * 32, reply)) <= wire.MAX_DATAGRAM_BYTES
    many = [b"r" * 100] * 64
    assert len(wire.encode_reply(MSG_ID, b"p" * 32, wire.find_value_reply(
        [], tuple(many), b"c" * 48))) <= wire.MAX_DATAGRAM_BYTES
