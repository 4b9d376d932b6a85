"""What the local API shows: a running node's state as JSON-ready dicts, and the settings parser.

No sockets and no event loop here: every function reads the node (its ledger store included)
and returns plain dicts, lists, numbers and hex strings, exactly as the OpenAPI document of
:mod:`p2pnode.api_schema` describes them.  Bytes are lowercase hex, energy integer Wh, money
integer µ (with a float in currency units beside it where a person reads it), times unix seconds.

:class:`RecordingMeter` wraps the node's meter to keep its recent readings: the node forgets a
reading once its interval is closed, but the energy-flow view needs generation and consumption
of recent intervals.  :func:`parse_constraints` turns a PUT body into a new
:class:`~p2pnode.config.Constraints` or a :class:`BadRequest` naming the field.
:func:`feeder_view` shows the books of a node's feeder role (:mod:`p2pnode.feeder_role`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import statistics
from collections.abc import Mapping

from ledger import BlockBody, DecodeError, cost_micro, open_envelope
from ledger.export import export_lines
from p2pnode.config import Constraints
from p2pnode.identity import peer_id
from p2pnode.meter import Meter, Reading
from p2pnode.offers import OfferRecord

__all__ = [
    "BadRequest", "RecordingMeter", "RECENT_READINGS", "MAX_PAGE", "FEEDER_PAGE", "MAX_FEEDER_PAGE",
    "balance_view", "blocks_view", "check_query", "drop_counters", "feeder_view", "health_view",
    "intervals_view", "ledger_view", "market_view", "offer_view",
    "offers_view", "parse_constraints", "query_int", "reading_view", "settings_view",
    "status_view", "trades_view",
]

RECENT_READINGS = 96    # one day of 15-minute intervals
MAX_PAGE = 500          # largest page of blocks, trades or intervals
MAX_TOKEN_INTERVALS = 96
FEEDER_PAGE = 96        # closed feeder intervals shown by default: a day of 15-minute ones
MAX_FEEDER_PAGE = 672   # a week of 15-minute intervals (the feeder role keeps a week)
# Counter names of the node that count an invalid message dropped (prefix -> source label).
NODE_DROP_PREFIXES = {"peer_dropped_": "peer", "reply_dropped_": "reply", "dropped_": "proposal"}
# DHT counters that are not invalid messages but failures to get an answer.
DHT_FAILURES = frozenset({"rpc_timeout", "no_reply", "publish_timeout", "socket_error"})


MAX_BODY_BYTES = 16 * 1024     # a settings body is about 150 bytes
MAX_JSON_DEPTH = 8
MAX_NUMBER_CHARS = 40


class BadRequest(ValueError):
    """A request the API refuses (400); ``field`` names the offending field or parameter."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class RecordingMeter(Meter):
    """Passes readings through from ``meter`` and keeps the latest :data:`RECENT_READINGS`."""

    def __init__(self, meter: Meter, keep: int = RECENT_READINGS):
        self.meter = meter
        self.recent: collections.OrderedDict[int, Reading] = collections.OrderedDict()
        self.keep = keep

    def read(self, interval_start_s: int, interval_s: int) -> Reading:
        reading = self.meter.read(interval_start_s, interval_s)
        self.recent[interval_start_s] = reading
        self.recent.move_to_end(interval_start_s)
        while len(self.recent) > self.keep:
            self.recent.popitem(last=False)
        return reading

    def latest(self) -> Reading | None:
        return next(reversed(self.recent.values()), None)


# -- query parameters ---------------------------------------------------------------------------

def query_int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 18 or not low <= int(text) <= high:
        raise BadRequest(f"{name} = {text!r}: must be an integer between {low} and {high}", name)
    return int(text)


def check_query(query: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    for name in query:
        if name not in allowed:
            hint = f"allowed: {', '.join(allowed)}" if allowed else "this endpoint takes none"
            raise BadRequest(f"unknown query parameter {name!r}; {hint}", name)


# -- views ------------------------------------------------------------------------------------

def status_view(node, uptime_s: float) -> dict:
    host, port = node.dht.address
    interval = node.config.interval_s
    now = node.clock()
    state = node.ledger.state
    return {
        "public_key": node.public.hex(), "peer_id": peer_id(node.public),
        "node_id": node.dht.node_id.hex(), "feeder": node.config.feeder,
        "location": node.config.location, "peer_endpoint": node.endpoint,
        "dht_address": f"{host}:{port}", "uptime_s": round(uptime_s, 3),
        "node_time_s": now, "interval_s": interval,
        "current_interval_start_s": int(now) // interval * interval,
        "balance_state": node.balance.value, "credit_micro": state.credit_micro,
        "ledger_head_seq": state.seq,
    }


def health_view(node, dht_up: bool, peer_up: bool) -> dict:
    """Sockets up, and the fail-safe's view (:mod:`p2pnode.failsafe`): ``ok`` only when both
    sockets serve and the node is not grid-only."""
    health = node.failsafe.health
    return {"ok": dht_up and peer_up and not health.grid_only, "dht": dht_up, "peer": peer_up,
            "mode": health.mode.value, "peers_reachable": health.peers_reachable,
            "intervals_without_peers": health.intervals_without_peers,
            "trades_settled": health.trades_settled,
            "overdue_settlements": health.overdue_settlements}


def _reading(reading: Reading | None) -> dict | None:
    if reading is None:
        return None
    return {"interval_start_s": reading.interval_start_s, "interval_s": reading.interval_s,
            "generation_wh": reading.generation_wh, "consumption_wh": reading.consumption_wh,
            "net_wh": reading.net_wh, "soc": reading.soc}


def reading_view(meter: RecordingMeter) -> dict:
    return {"reading": _reading(meter.latest())}


def intervals_view(node, meter: RecordingMeter, limit: int) -> dict:
    """The last ``limit`` closed intervals, oldest first, with the meter's reading if kept."""
    out = []
    for report in node.reports[-limit:]:
        reading = meter.recent.get(report.interval_start_s)
        out.append({
            "interval_start_s": report.interval_start_s, "balance_state": report.balance.value,
            "generation_wh": reading.generation_wh if reading else None,
            "consumption_wh": reading.consumption_wh if reading else None,
            "surplus_wh": report.surplus_wh, "deficit_wh": report.deficit_wh,
            "sold_wh": report.sold_wh, "bought_wh": report.bought_wh,
            "grid_import_wh": report.grid_import_wh, "grid_export_wh": report.grid_export_wh,
        })
    return {"intervals": out}


def balance_view(node) -> dict:
    state = node.ledger.state
    tokens = sorted(((start, wh) for start, wh in state.tokens_wh.items() if wh), reverse=True)
    return {
        "balance_state": node.balance.value, "credit_micro": state.credit_micro,
        "credit": state.credit_micro / 1e6,
        "tokens": [{"interval_start_s": start, "tokens_wh": wh}
                   for start, wh in tokens[:MAX_TOKEN_INTERVALS]],
    }


def offer_view(record: OfferRecord) -> dict:
    return {"seller": record.seller.hex(), "offer_id": record.offer_id.hex(), "seq": record.seq,
            "energy_wh": record.energy_wh, "price_micro_per_kwh": record.price_micro_per_kwh,
            "feeder": record.feeder, "interval_start_s": record.interval_start_s,
            "expires_at_s": record.expires_at_s, "endpoint": record.endpoint,
            "location": record.location, "offered_wh": record.offered_wh}


def offers_view(node) -> dict:
    return {"offers": [offer_view(r) for r in node.own_offers()]}


def _countersigned(store, author: bytes, seq: int, counterparty: bytes) -> bool:
    """Whether ``counterparty`` stored an agreement to our block ``seq``."""
    for raw in store.linked_to(author, seq):
        try:
            block, signature_ok = open_envelope(raw, BlockBody)
        except DecodeError:
            continue
        if signature_ok and block.message.author == counterparty:
            return True
    return False


def trade_view(node, trade) -> dict:
    """One trade of the ledger (``trade``: its TradeState) with where it stands.

    A seller's trade is ``proposed`` until the buyer's agreement is stored, then ``agreed``; a
    buyer's is ``agreed`` once it signed.  After the interval the side that measured the delivery
    proposes the settlement (the seller's DELIVERY; the buyer in ledgers of the ex-post market
    before it): its trade is ``settling`` until the other side's countersignature is stored,
    then ``settled``; the countersigning side's trade is ``settled`` when it signs.
    """
    payload, me, store = trade.payload, node.public, node.ledger.store
    seller = payload.seller == me
    other = payload.buyer if seller else payload.seller
    delivered = settled = None
    if trade.settled:
        block = node.ledger.own_block(trade.settlement_seq).message
        delivered = block.payload.delivered_wh
        settled = block.is_agreement or _countersigned(store, me, trade.settlement_seq, other)
    if settled:
        status = "settled"
    elif trade.settled:
        status = "settling"
    elif not seller or _countersigned(store, me, trade.seq, other):
        status = "agreed"
    else:
        status = "proposed"
    bought = node.bought.get(payload.trade_id)
    return {
        "trade_id": payload.trade_id.hex(), "role": "seller" if seller else "buyer",
        "counterparty": other.hex(), "interval_start_s": payload.interval_start_s,
        "energy_wh": payload.energy_wh, "price_micro_per_kwh": payload.price_micro_per_kwh,
        "cost_micro": cost_micro(payload.energy_wh, payload.price_micro_per_kwh),
        "status": status, "delivered_wh": delivered, "block_seq": trade.seq,
        "decision_ms": round(bought.decision_ms, 3) if bought else None,
        "messages": bought.messages if bought else None,
    }


def trades_view(node, limit: int) -> dict:
    """The newest ``limit`` trades of this node's chain, newest first."""
    trades = list(node.ledger.state.trades.values())
    newest = sorted(trades, key=lambda t: t.seq, reverse=True)[:limit]
    return {"total": len(trades), "trades": [trade_view(node, t) for t in newest]}


def blocks_view(node, author: bytes, after: int, limit: int) -> dict:
    """Blocks of ``author``'s chain with seq > ``after``, at most ``limit``, in order.

    The node's own chain has no gaps, so it is read block by block (a page never loads the whole
    chain); a counterparty's partial chain holds only the half-blocks this node took part in.
    """
    store = node.ledger.store
    head = store.head(author)
    if author == node.public:
        rows = []
        for seq in range(after + 1, min(head, after + limit) + 1):
            raw = store.get(author, seq)
            rows.append((author, seq, raw))
    else:
        rows = [(author, None, raw) for raw in store.chain(author, after + 1)[:limit]]
    blocks = []
    for row_author, _, raw in rows:
        block, _ = open_envelope(raw, BlockBody)
        line = next(export_lines([(row_author, block.message.seq, block.hash, raw)]))
        blocks.append(json.loads(line))
    last = blocks[-1]["seq"] if blocks else after
    more = last < head and len(blocks) == limit
    return {"author": author.hex(), "head_seq": head, "blocks": blocks,
            "next_after": last if more else None}


def ledger_view(node, audit, max_problems: int = 20) -> dict:
    """Counts and head of the local ledger, with ``audit`` (an AuditReport of every stored block)."""
    store, state = node.ledger.store, node.ledger.state
    return {
        "blocks": store.count(), "authors": len(store.authors()), "forks": len(store.forks()),
        "head_seq": state.seq, "head_hash": state.head.hex(),
        "audit": {"ok": audit.ok, "blocks_checked": audit.blocks,
                  "problem_count": len(audit.problems),
                  "problems": [str(p) for p in audit.problems[:max_problems]],
                  "pending_proposals": audit.pending_proposals},
    }


def market_view(node) -> dict:
    """The market as the node last saw it: its latest discovery, the tariffs, the DHT it holds."""
    tariffs = node.config.tariffs
    now = node.clock()
    frame = tariffs.frame_at((now % 86400) / 3600)
    discovery = node.last_discovery
    found = None
    if discovery is not None:
        offers = [offer_view(sealed.message) for sealed in discovery.offers]
        prices = [o["price_micro_per_kwh"] for o in offers if o["energy_wh"] > 0]
        found = {
            "keys": discovery.keys, "keys_timed_out": discovery.keys_timed_out,
            "responses": discovery.responses, "failures": discovery.failures,
            "dropped": dict(discovery.dropped), "offers": offers,
            "energy_wh": sum(o["energy_wh"] for o in offers),
            "min_price_micro_per_kwh": min(prices) if prices else None,
            "median_price_micro_per_kwh": int(statistics.median(prices)) if prices else None,
            "max_price_micro_per_kwh": max(prices) if prices else None,
        }
    return {
        "tariffs": {"frame": frame.name, "retail_micro_per_kwh": frame.retail_micro_per_kwh,
                    "feed_in_micro_per_kwh": tariffs.feed_in_micro_per_kwh},
        "discovery": found, "dht_stored_offers": len(node.dht.storage),
    }


def feeder_interval_view(booked) -> dict:
    """One closed interval of the feeder's books (a :class:`~p2pnode.feeder.FeederInterval`)."""
    out = dataclasses.asdict(booked)
    if booked.network is not None:
        out["network"] = network_view(booked.network)
    return out


def network_view(state) -> dict:
    """The load flow of an interval (:class:`optimizer.markets.FeederState`, kWh) in the API's
    Wh, with the most loaded transformer."""
    return {"converged": state.converged, "vm_min_pu": state.vm_min_pu,
            "vm_min_bus": state.vm_min_bus, "vm_max_pu": state.vm_max_pu,
            "vm_max_bus": state.vm_max_bus, "buses_outside_limits": list(state.buses_outside_limits),
            "trafo_loading_percent": state.max_trafo_loading_percent,
            "technical_loss_wh": state.technical_loss_kwh * 1000,
            "expected_transformer_wh": state.expected_transformer_kwh * 1000}


def feeder_view(role, limit: int) -> dict:
    """The feeder role's settings, open intervals, report counts and the last ``limit`` closed
    intervals, oldest first (``role``: a :class:`~p2pnode.feeder_role.FeederRole`)."""
    settings, book = role.settings, role.book
    history = list(book.history)[-limit:] if book is not None else []
    counters = book.counters if book is not None else {}
    prefix = "reports_dropped_"
    return {
        "feeder": settings.feeder, "interval_s": settings.interval_s,
        "loss_threshold_kwh": settings.watch.threshold_kwh,
        "persistence": settings.watch.persistence, "grace_s": settings.grace_s,
        "network": settings.network or None,
        "members_configured": len(settings.members) if settings.members is not None else None,
        "members_known": len(book.known) if book is not None else 0,
        "alert": history[-1].alert if history else False,
        "loss_streak": book.streak if book is not None else 0,
        "open_intervals": [{"interval_start_s": start, "reports": len(reports)}
                           for start, reports in sorted(book.reports.items())] if book else [],
        "reports": {"accepted": counters.get("reports_accepted", 0),
                    "duplicate": counters.get("reports_duplicate", 0),
                    "dropped": {name[len(prefix):]: count for name, count in sorted(counters.items())
                                if name.startswith(prefix)}},
        "intervals_closed": counters.get("intervals_closed", 0),
        "mint_flags": {name[len("mint_flagged_"):]: count for name, count in sorted(counters.items())
                       if name.startswith("mint_flagged_")},
        "flagged_members": dict(sorted(book.flagged.items())) if book is not None else {},
        "latest": feeder_interval_view(history[-1]) if history else None,
        "intervals": [feeder_interval_view(booked) for booked in history],
    }


def settings_view(constraints: Constraints) -> dict:
    return dataclasses.asdict(constraints)


def parse_json_body(raw: bytes) -> object:
    """A request body as JSON, or :class:`BadRequest` (a 400) saying why.

    Bounded before any conversion: at most :data:`MAX_BODY_BYTES`, nested at most
    :data:`MAX_JSON_DEPTH` deep, numbers of at most :data:`MAX_NUMBER_CHARS` characters and no
    ``NaN``/``Infinity`` (a 5000-digit integer raised a ValueError in ``int()`` and a 20k-deep
    array a RecursionError: both were a 500)."""
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"body is over {MAX_BODY_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8 text") from None
    if _nesting(text) > MAX_JSON_DEPTH:
        raise BadRequest(f"body is nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    try:
        return json.loads(text, parse_int=_bounded(int), parse_float=_bounded(float),
                          parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:     # JSONDecodeError is a ValueError
        raise BadRequest(f"body is not valid JSON: {exc}") from None


def parse_settings_body(raw: bytes) -> Constraints:
    """The constraints of a ``PUT /api/v1/settings`` body (:func:`parse_json_body`)."""
    return parse_constraints(parse_json_body(raw))


def _nesting(text: str) -> int:
    """Upper bound of the JSON nesting depth (brackets inside strings count too)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _bounded(kind):
    def convert(text: str):
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number of {len(text)} characters (more than "
                             f"{MAX_NUMBER_CHARS} characters)")
        return kind(text)
    return convert


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


_INTEGER_FIELDS = frozenset(f.name for f in dataclasses.fields(Constraints) if f.type in (int, "int"))


def _integral(name: str, value):
    """672.0 for an integer field is 672: JSON (and JSON Schema's "integer") does not tell an
    integer from a float with no fraction (found by schemathesis)."""
    if name in _INTEGER_FIELDS and type(value) is float and value.is_integer():
        return int(value)
    return value


def parse_constraints(body: object) -> Constraints:
    """A whole new :class:`Constraints` from a JSON body; every field is required."""
    if not isinstance(body, dict):
        raise BadRequest(f"body must be a JSON object of the constraints, got {type(body).__name__}")
    names = [f.name for f in dataclasses.fields(Constraints)]
    for key in body:
        if key not in names:
            raise BadRequest(f"unknown field {key!r}; fields: {', '.join(names)}", key)
    body = {key: _integral(key, value) for key, value in body.items()}
    for name in names:
        if name not in body:
            raise BadRequest(f"field {name!r} is missing (PUT replaces every constraint)", name)
        try:   # each check of Constraints concerns one field: find the first bad one
            Constraints(**{name: body[name]})
        except (ValueError, TypeError) as exc:
            raise BadRequest(str(exc), name) from None
    return Constraints(**body)


# -- drops for the metrics ---------------------------------------------------------------------

def drop_counters(node_counters: Mapping[str, int], dht_counters: Mapping[str, int]
                  ) -> list[tuple[str, str, int]]:
    """(source, reason, count) of every invalid message dropped, node and DHT."""
    out = []
    for name, count in sorted(node_counters.items()):
        for prefix, source in NODE_DROP_PREFIXES.items():
            if name.startswith(prefix):
                out.append((source, name[len(prefix):], count))
                break
    for name, count in sorted(dht_counters.items()):
        if name in DHT_FAILURES:
            continue
        if name.startswith("stored_"):
            out.append(("dht_store", name[len("stored_"):], count))
        elif name.startswith("found_"):
            out.append(("dht_lookup", name[len("found_"):], count))
        else:
            out.append(("dht", name, count))
    return out
