"""Prometheus metrics of a running node, collected from its state at every scrape.

One :class:`NodeCollector` per node in its own registry (no global state): nothing is counted
twice, the numbers are read from what the node already keeps -- its counters, its ledger's chain
state, its interval reports, the trades it bought and its DHT.  Counters that come from the
node's memory (``*_events_total``, energy, negotiation latency) start again at 0 when the daemon
restarts, as Prometheus counters may; those read from the ledger (``p2p_ledger_*``) survive it.

==================================== =========================================================
``p2p_ledger_trades_total{side}``    TRADE blocks of the node's chain, as seller or buyer (a
                                     seller's proposal counts even if never confirmed)
``p2p_ledger_settlements_total``     SETTLEMENT blocks of the node's chain, by side
``p2p_ledger_blocks``                blocks stored (own chain and counterparty halves)
``p2p_energy_kwh_total{flow}``       per closed interval: sold, bought, grid_import,
                                     grid_export, surplus, deficit
``p2p_intervals_total``              intervals closed
``p2p_credit_micro``                 credit on the ledger (µ)
``p2p_own_offers``                   offers this node has open
``p2p_dht_stored_offers`` / ``_keys`` offer records (keys) held in this node's DHT storage
``p2p_discoveries_total``            parallel offer discoveries (each looks up several keys)
``p2p_last_discovery_offers``        offers the last discovery found
``p2p_negotiation_seconds``          histogram: discovery start to agreed trade, bought trades
``p2p_dropped_messages_total``       invalid messages dropped, by source and reason
``p2p_failsafe_grid_only``           1 while the node trades grid-only (no peer reachable for
                                     ``[timing] failsafe_intervals``), else 0
``p2p_failsafe_entered_total``       times the node went grid-only since it started
``p2p_peers_reachable``              peers that answered the latest probe (one per interval)
``p2p_intervals_without_peers``      intervals in a row without a reachable peer
``p2p_overdue_settlements``          bought trades of earlier intervals not settled yet
``p2p_meter_events_total{event}``    a live meter's counters (p2pnode/meter_mqtt.py: connects,
                                     disconnects, samples accepted and dropped by reason)
``p2p_node_events_total{event}``     every counter of the node (trades, denials, drops, ...)
``p2p_dht_events_total{event}``      every counter of the DHT (drops, timeouts, failures)
==================================== =========================================================

A node with the feeder role (:mod:`p2pnode.feeder_role`) adds, from its latest closed interval
(absent until one is closed; loss absent when the transformer had no reading):

==================================== =========================================================
``p2p_feeder_loss_kwh``              unaccounted energy T + G - C of the latest interval
``p2p_feeder_alert``                 1 while the persistent-loss alert is raised, else 0
``p2p_feeder_energy_kwh{flow}``      generation, consumption, transformer, local (latest)
``p2p_feeder_members{state}``        reporting, missing (latest interval)
``p2p_feeder_vm_pu{bound}`` /        min and max bus voltage and the transformer loading of
``p2p_feeder_trafo_loading_percent`` the latest interval (with a network)
``p2p_feeder_reports_total{outcome}`` reports accepted and duplicates answered again
``p2p_feeder_reports_dropped_total`` reports refused, by reason
``p2p_feeder_mint_flags_total{reason}`` members flagged for minting more than was measured
                                     (p2pnode/mint_check.py), by reason
``p2p_feeder_intervals_total``       intervals closed
==================================== =========================================================
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from p2pnode.api_views import drop_counters

__all__ = ["CONTENT_TYPE_LATEST", "FeederCollector", "LATENCY_BUCKETS_S", "NodeCollector",
           "histogram_buckets", "metrics_text", "node_registry"]

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
MAX_METER_WRAPPERS = 4


def histogram_buckets(values_s: list[float], bounds: tuple[float, ...] = LATENCY_BUCKETS_S
                      ) -> list[tuple[str, float]]:
    """Cumulative (le, count) buckets of ``values_s``, ending with +Inf."""
    out = [(repr(bound), float(sum(1 for v in values_s if v <= bound))) for bound in bounds]
    return out + [("+Inf", float(len(values_s)))]


class NodeCollector:
    """A prometheus_client collector reading one :class:`~p2pnode.node.Node`."""

    def __init__(self, node):
        self.node = node

    def describe(self):
        return []   # collected fresh at every scrape; nothing to declare ahead

    def collect(self):
        yield from self._ledger()
        yield from self._energy()
        yield from self._dht()
        yield from self._negotiation()
        yield from self._failsafe()
        yield from self._meter()
        yield from self._events()

    def _meter(self):
        meter = self.node.meter
        for _ in range(MAX_METER_WRAPPERS):     # the API's and the feeder role's pass-throughs
            if hasattr(meter, "stats") or not hasattr(meter, "meter"):
                break
            meter = meter.meter
        if not hasattr(meter, "stats"):
            return
        events = CounterMetricFamily("p2p_meter_events", "a live meter's connection and sample "
                                     "counters", labels=["event"])
        for name, count in meter.stats().items():
            events.add_metric([name], count)
        yield events

    def _failsafe(self):
        health = self.node.failsafe.health
        yield GaugeMetricFamily("p2p_failsafe_grid_only", "1 while the node trades grid-only "
                                "(no peer reachable)", value=int(health.grid_only))
        yield CounterMetricFamily("p2p_failsafe_entered", "times the node went grid-only",
                                  value=health.entered)
        if health.peers_reachable is not None:
            yield GaugeMetricFamily("p2p_peers_reachable", "peers that answered the latest "
                                    "probe", value=health.peers_reachable)
        yield GaugeMetricFamily("p2p_intervals_without_peers", "intervals in a row without a "
                                "reachable peer", value=health.intervals_without_peers)
        yield GaugeMetricFamily("p2p_overdue_settlements", "bought trades of earlier intervals "
                                "not settled yet", value=health.overdue_settlements)

    def _ledger(self):
        node = self.node
        trades = CounterMetricFamily("p2p_ledger_trades", "TRADE blocks of this node's chain "
                                     "(a seller's proposal counts even if never confirmed)",
                                     labels=["side"])
        settlements = CounterMetricFamily("p2p_ledger_settlements",
                                          "SETTLEMENT blocks of this node's chain", labels=["side"])
        sides = {"seller": [0, 0], "buyer": [0, 0]}
        for trade in node.ledger.state.trades.values():
            side = sides["seller" if trade.payload.seller == node.public else "buyer"]
            side[0] += 1
            side[1] += trade.settled
        for name, (count, settled) in sides.items():
            trades.add_metric([name], count)
            settlements.add_metric([name], settled)
        yield trades
        yield settlements
        yield GaugeMetricFamily("p2p_ledger_blocks", "blocks stored in the local ledger",
                                value=node.ledger.store.count())
        yield GaugeMetricFamily("p2p_credit_micro", "credit on the ledger (µ)",
                                value=node.ledger.state.credit_micro)

    def _energy(self):
        reports = self.node.reports
        energy = CounterMetricFamily("p2p_energy_kwh", "energy per flow over closed intervals",
                                     labels=["flow"])
        for flow in ("sold", "bought", "grid_import", "grid_export", "surplus", "deficit"):
            energy.add_metric([flow], sum(getattr(r, f"{flow}_wh") for r in reports) / 1000)
        yield energy
        yield CounterMetricFamily("p2p_intervals", "trading intervals closed", value=len(reports))

    def _dht(self):
        node = self.node
        yield GaugeMetricFamily("p2p_own_offers", "offers this node has open",
                                value=len(node.own_offers()))
        yield GaugeMetricFamily("p2p_dht_stored_offers", "offer records held in this node's DHT "
                                "storage (for any seller)", value=len(node.dht.storage))
        yield GaugeMetricFamily("p2p_dht_stored_keys", "keys held in this node's DHT storage",
                                value=len(node.dht.storage.keys()))
        yield CounterMetricFamily("p2p_discoveries", "parallel offer discoveries run",
                                  value=node.counters["discoveries"])
        last = node.last_discovery
        yield GaugeMetricFamily("p2p_last_discovery_offers", "offers found by the last discovery",
                                value=len(last.offers) if last else 0)

    def _negotiation(self):
        latencies = [t.decision_ms / 1000 for t in self.node.bought.values()]
        histogram = HistogramMetricFamily(
            "p2p_negotiation_seconds", "time from the start of discovery to an agreed trade "
            "(trades this node bought)", buckets=histogram_buckets(latencies),
            sum_value=sum(latencies))
        yield histogram

    def _events(self):
        node = self.node
        dht = node.dht.counters()
        dropped = CounterMetricFamily("p2p_dropped_messages", "invalid messages dropped",
                                      labels=["source", "reason"])
        for source, reason, count in drop_counters(node.counters, dht):
            dropped.add_metric([source, reason], count)
        yield dropped
        events = CounterMetricFamily("p2p_node_events", "every counter of the node",
                                     labels=["event"])
        for name, count in sorted(node.counters.items()):
            events.add_metric([name], count)
        yield events
        dht_events = CounterMetricFamily("p2p_dht_events", "every drop and failure of the DHT",
                                         labels=["event"])
        for name, count in sorted(dht.items()):
            dht_events.add_metric([name], count)
        yield dht_events


class FeederCollector:
    """A prometheus_client collector reading one :class:`~p2pnode.feeder_role.FeederRole`."""

    def __init__(self, role):
        self.role = role

    def describe(self):
        return []

    def collect(self):
        book = self.role.book
        counters = book.counters if book is not None else {}
        reports = CounterMetricFamily("p2p_feeder_reports", "member reports booked, and "
                                      "duplicates answered again", labels=["outcome"])
        reports.add_metric(["accepted"], counters.get("reports_accepted", 0))
        reports.add_metric(["duplicate"], counters.get("reports_duplicate", 0))
        yield reports
        dropped = CounterMetricFamily("p2p_feeder_reports_dropped", "member reports refused",
                                      labels=["reason"])
        prefix = "reports_dropped_"
        for name, count in sorted(counters.items()):
            if name.startswith(prefix):
                dropped.add_metric([name[len(prefix):]], count)
        yield dropped
        flags = CounterMetricFamily("p2p_feeder_mint_flags", "members flagged for minting more "
                                    "than was measured, by reason", labels=["reason"])
        for name, count in sorted(counters.items()):
            if name.startswith("mint_flagged_"):
                flags.add_metric([name[len("mint_flagged_"):]], count)
        yield flags
        yield CounterMetricFamily("p2p_feeder_intervals", "feeder intervals closed",
                                  value=counters.get("intervals_closed", 0))
        if book is not None and book.history:
            yield from self._latest(book.history[-1], book.history)

    def _latest(self, booked, history=()):
        measured = next((b for b in reversed(history) if b.loss_wh is not None), booked)
        if measured.loss_wh is not None:   # an interval without a transformer reading has none
            yield GaugeMetricFamily("p2p_feeder_loss_kwh", "unaccounted energy T + G - C of the "
                                    "latest closed interval that has a transformer reading",
                                    value=measured.loss_wh / 1000)
        yield GaugeMetricFamily("p2p_feeder_alert", "1 while the persistent-loss alert is raised",
                                value=int(booked.alert))
        energy = GaugeMetricFamily("p2p_feeder_energy_kwh", "the latest closed interval's energy",
                                   labels=["flow"])
        for flow in ("generation", "consumption", "transformer", "local"):
            value = getattr(booked, f"{flow}_wh")
            if value is not None:
                energy.add_metric([flow], value / 1000)
        yield energy
        members = GaugeMetricFamily("p2p_feeder_members", "members of the latest closed interval",
                                    labels=["state"])
        members.add_metric(["reporting"], booked.members_reporting)
        members.add_metric(["missing"], booked.members_missing)
        yield members
        if booked.network is not None:
            voltage = GaugeMetricFamily("p2p_feeder_vm_pu", "bus voltage of the latest closed "
                                        "interval (per unit)", labels=["bound"])
            voltage.add_metric(["min"], booked.network.vm_min_pu)
            voltage.add_metric(["max"], booked.network.vm_max_pu)
            yield voltage
            yield GaugeMetricFamily("p2p_feeder_trafo_loading_percent", "transformer loading of "
                                    "the latest closed interval",
                                    value=booked.network.max_trafo_loading_percent)


def metrics_text(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def node_registry(node, feeder=None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    if feeder is not None:
        registry.register(FeederCollector(feeder))
    return registry
