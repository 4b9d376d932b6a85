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
``p2p_node_events_total{event}``     every counter of the node (trades, denials, drops, ...)
``p2p_dht_events_total{event}``      every counter of the DHT (drops, timeouts, failures)
==================================== =========================================================
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from p2pnode.api_views import drop_counters

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS_S", "NodeCollector", "histogram_buckets",
           "metrics_text", "node_registry"]

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


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
        yield from self._events()

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


def metrics_text(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def node_registry(node) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return registry
