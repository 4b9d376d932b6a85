"""The offer DHT: signed, expiring, multi-record offers on top of the `kademlia` package.

Modules, one idea each:

    storage   OfferStorage: validated records per key, caps, sequence rules, absolute expiry (pure)
    wire      datagram framing and strict parsing of every request and reply (pure)
    protocol  OfferProtocol: kademlia's protocol with validated stores and merged lookups
    routing   OfferRoutingTable: exact neighbours, quiet full buckets, per-address diversity
    admission which offers a node holds for others, and whose go first when full (pure)
    budget    TokenBucket: work an unknown peer may cause per second (pure)
    crawler   NodeLookup / OfferLookup: steady lookups that merge the record sets of all responders
    server    OfferServer (kademlia's Server subclass) and OfferDHT, the node's interface
    faults    FaultPlan / FaultyTransport: seeded datagram loss, duplication and delay
    tasks     TaskRegistry: owner of every background task
"""

from p2pnode.dht.faults import FaultPlan, FaultyTransport
from p2pnode.dht.server import (
    MAX_PARALLEL_QUERIES, MAX_QUERY_KEYS, DHTError, DHTSettings, Discovery, OfferDHT, OfferServer,
)
from p2pnode.dht.storage import (
    MAX_KEYS, MAX_RECORDS_PER_KEY, MAX_RECORDS_PER_SELLER, OfferStorage,
)

__all__ = [
    "DHTError", "DHTSettings", "Discovery", "FaultPlan", "FaultyTransport", "MAX_KEYS",
    "MAX_PARALLEL_QUERIES", "MAX_QUERY_KEYS", "MAX_RECORDS_PER_KEY", "MAX_RECORDS_PER_SELLER",
    "OfferDHT", "OfferServer", "OfferStorage",
]
