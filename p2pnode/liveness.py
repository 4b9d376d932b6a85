"""The shell of the fail-safe (:mod:`p2pnode.failsafe`): probe peers once per interval, observe.

:func:`reachable_peers` pings up to :data:`MAX_PINGS` contacts of the node's DHT routing table
(those nearest its own id: the neighbourhood its lookups start from); when none answers -- or
none is known, every contact having been dropped after failing -- it pings the configured
bootstrap addresses and joins again through any that answers, so a node that was cut off finds
the swarm again on its own.  Dead contacts leave the routing table as their pings fail (the
DHT protocol removes a contact that does not reply).

:func:`observe_interval` is what the node calls at the start of every interval: it probes,
counts the bought trades of earlier intervals still unsettled, feeds the fail-safe one
:class:`~p2pnode.failsafe.Observation`, and logs and counts a change of mode
(``failsafe_entered`` / ``failsafe_left`` in the node's counters).  A probe is bounded by
:data:`PROBE_TIMEOUT_S`: it runs while the node waits for the interval to open.
"""

from __future__ import annotations

import asyncio
import logging

from kademlia.node import Node as Contact

from p2pnode.failsafe import Health, Observation

__all__ = ["MAX_PINGS", "PROBE_TIMEOUT_S", "observe_interval", "reachable_peers"]

log = logging.getLogger(__name__)

MAX_PINGS = 3
PROBE_TIMEOUT_S = 1.5       # wall seconds; a probe that takes longer found no peer


async def reachable_peers(dht, bootstrap: list[tuple[str, int]], limit: int = MAX_PINGS) -> int:
    """How many peers answered: contacts pinged, else bootstrap nodes joined through."""
    protocol = dht.server.protocol
    if protocol is None:
        return 0
    contacts = protocol.router.find_neighbors(Contact(dht.node_id), k=limit)
    answered = sum(await asyncio.gather(*(protocol.call_ping(c) for c in contacts)))
    if answered or not bootstrap:
        return answered
    return await dht.bootstrap(bootstrap)


async def observe_interval(node, start_s: int) -> Health:
    """Probe, then feed ``node.failsafe`` the observation of the interval ``start_s``."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            reachable = await reachable_peers(node.dht, node.config.network.bootstrap_addresses())
    except (TimeoutError, OSError):
        reachable = 0
    except Exception:                   # a probe never stops trading: logged, counted
        log.exception("fail-safe: the peer probe failed")
        node.counters["failsafe_probe_errors"] += 1
        reachable = 0
    overdue = sum(1 for trade in node.unsettled() if trade.payload.interval_start_s < start_s)
    health, changed = node.failsafe.observe(Observation(start_s, reachable, overdue))
    if changed and health.grid_only:
        node.counters["failsafe_entered"] += 1
        log.warning("fail-safe: no peer reachable for %d intervals; grid only from interval %d "
                    "(probing every interval)", health.intervals_without_peers, start_s)
    elif changed:
        node.counters["failsafe_left"] += 1
        log.warning("fail-safe: %d peer(s) reachable again; trading from interval %d",
                    reachable, start_s)
    return health
