"""The OpenAPI 3.1 document of the node's local API (served at ``/api/v1/openapi.json``).

Every JSON response of :mod:`p2pnode.api` is described here with ``additionalProperties:
false``, so a field added to a view without being documented fails the API tests.  OpenAPI 3.1
schemas are JSON Schema 2020-12: a client can validate with any JSON Schema library.
"""

from __future__ import annotations

import copy

__all__ = ["openapi_document", "API_PREFIX"]

API_PREFIX = "/api/v1"

HEX = {"type": "string", "pattern": "^[0-9a-f]*$"}
KEY = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
INT = {"type": "integer"}
NAT = {"type": "integer", "minimum": 0}
NUM = {"type": "number"}
STR = {"type": "string"}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(properties: dict, optional: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": [name for name in properties if name not in optional]}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


BALANCE_STATE = {"type": "string", "enum": ["balanced", "surplus", "deficit"]}

SCHEMAS = {
    "Error": _obj({"error": STR, "field": _nullable(STR)}),
    "Health": _obj({"ok": {"type": "boolean"}, "dht": {"type": "boolean"},
                    "peer": {"type": "boolean"}, "mode": {"enum": ["trading", "grid_only"]},
                    "peers_reachable": _nullable(NAT), "intervals_without_peers": NAT,
                    "trades_settled": {"type": "boolean"}, "overdue_settlements": NAT}),
    "Status": _obj({
        "public_key": KEY, "peer_id": STR, "node_id": HEX, "feeder": STR, "location": STR,
        "peer_endpoint": STR, "dht_address": STR, "uptime_s": NUM, "node_time_s": NUM,
        "interval_s": NAT, "current_interval_start_s": NAT, "balance_state": BALANCE_STATE,
        "credit_micro": INT, "ledger_head_seq": NAT}),
    "Reading": _obj({"interval_start_s": NAT, "interval_s": NAT, "generation_wh": NAT,
                     "consumption_wh": NAT, "net_wh": INT,
                     "soc": _nullable({"type": "number", "minimum": 0, "maximum": 1})}),
    "ReadingResponse": _obj({"reading": _nullable(_ref("Reading"))}),
    "Interval": _obj({
        "interval_start_s": NAT, "balance_state": BALANCE_STATE,
        "generation_wh": _nullable(NAT), "consumption_wh": _nullable(NAT), "surplus_wh": NAT,
        "deficit_wh": NAT, "sold_wh": NAT, "bought_wh": NAT, "grid_import_wh": NAT,
        "grid_export_wh": NAT}),
    "Intervals": _obj({"intervals": {"type": "array", "items": _ref("Interval")}}),
    "Balance": _obj({
        "balance_state": BALANCE_STATE, "credit_micro": INT, "credit": NUM,
        "tokens": {"type": "array", "items": _obj({"interval_start_s": NAT, "tokens_wh": INT})}}),
    "Offer": _obj({
        "seller": KEY, "offer_id": HEX, "seq": NAT, "energy_wh": NAT, "price_micro_per_kwh": NAT,
        "feeder": STR, "interval_start_s": NAT, "expires_at_s": NAT, "endpoint": STR,
        "location": _nullable(STR), "offered_wh": _nullable(NAT)}),
    "Offers": _obj({"offers": {"type": "array", "items": _ref("Offer")}}),
    "Trade": _obj({
        "trade_id": HEX, "role": {"type": "string", "enum": ["seller", "buyer"]},
        "counterparty": KEY, "interval_start_s": NAT, "energy_wh": NAT,
        "price_micro_per_kwh": NAT, "cost_micro": NAT,
        "status": {"type": "string", "enum": ["proposed", "agreed", "settling", "settled"]},
        "delivered_wh": _nullable(NAT), "block_seq": NAT, "decision_ms": _nullable(NUM),
        "messages": _nullable(NAT)}),
    "Trades": _obj({"total": NAT, "trades": {"type": "array", "items": _ref("Trade")}}),
    "Block": {
        "type": "object", "additionalProperties": False,
        "required": ["author", "seq", "hash", "raw"],
        "properties": {
            "author": KEY, "seq": NAT, "hash": HEX, "prev": HEX,
            "type": {"type": "string",
                     "enum": ["MINT", "DEPOSIT", "TRADE", "SETTLEMENT", "GRID"]},
            "payload": {"type": "object"}, "link_key": HEX, "link_seq": NAT, "link_hash": HEX,
            "time_ms": NAT, "role": {"type": "string", "enum": ["proposal", "agreement", "single"]},
            "signature": HEX, "signature_valid": {"type": "boolean"}, "error": STR, "raw": HEX}},
    "Blocks": _obj({"author": KEY, "head_seq": NAT,
                    "blocks": {"type": "array", "items": _ref("Block")},
                    "next_after": _nullable(NAT)}),
    "Ledger": _obj({
        "blocks": NAT, "authors": NAT, "forks": NAT, "head_seq": NAT, "head_hash": HEX,
        "audit": _obj({"ok": {"type": "boolean"}, "blocks_checked": NAT, "problem_count": NAT,
                       "problems": {"type": "array", "items": STR},
                       "pending_proposals": NAT})}),
    "Market": _obj({
        "tariffs": _obj({"frame": STR, "retail_micro_per_kwh": NAT, "feed_in_micro_per_kwh": NAT}),
        "discovery": _nullable(_obj({
            "keys": NAT, "keys_timed_out": NAT, "responses": NAT, "failures": NAT,
            "dropped": {"type": "object", "additionalProperties": NAT},
            "offers": {"type": "array", "items": _ref("Offer")}, "energy_wh": NAT,
            "min_price_micro_per_kwh": _nullable(NAT),
            "median_price_micro_per_kwh": _nullable(NAT),
            "max_price_micro_per_kwh": _nullable(NAT)})),
        "dht_stored_offers": NAT}),
    "FeederNetwork": _obj({
        "converged": {"type": "boolean"}, "vm_min_pu": NUM, "vm_min_bus": NAT, "vm_max_pu": NUM,
        "vm_max_bus": NAT, "buses_outside_limits": {"type": "array", "items": NAT},
        "trafo_loading_percent": NUM, "technical_loss_wh": NUM, "expected_transformer_wh": NUM}),
    "FeederInterval": _obj({
        "interval_start_s": NAT, "interval_s": NAT, "members_reporting": NAT,
        "members_missing": NAT, "generation_wh": NAT, "consumption_wh": NAT,
        "transformer_wh": _nullable(INT), "local_wh": NAT, "shared_wh": NAT, "surplus_wh": NAT,
        "deficit_wh": NAT, "loss_wh": _nullable(INT), "alert": {"type": "boolean"},
        "loss_streak": NAT, "network": _nullable(_ref("FeederNetwork")),
        "minted_wh": NAT, "mint_excess_wh": _nullable(INT),
        "flagged": {"type": "array", "items": {"type": "array", "items": STR,
                                               "minItems": 2, "maxItems": 2}}}),
    "Feeder": _obj({
        "feeder": STR, "interval_s": NAT, "loss_threshold_kwh": NUM, "persistence": NAT,
        "grace_s": NUM, "network": _nullable(STR), "members_configured": _nullable(NAT),
        "members_known": NAT, "alert": {"type": "boolean"}, "loss_streak": NAT,
        "open_intervals": {"type": "array", "items": _obj({"interval_start_s": NAT,
                                                           "reports": NAT})},
        "reports": _obj({"accepted": NAT, "duplicate": NAT,
                         "dropped": {"type": "object", "additionalProperties": NAT}}),
        "intervals_closed": NAT, "latest": _nullable(_ref("FeederInterval")),
        "mint_flags": {"type": "object", "additionalProperties": NAT},
        "flagged_members": {"type": "object", "additionalProperties": NAT},
        "intervals": {"type": "array", "items": _ref("FeederInterval")}}),
    "Settings": _obj({
        "min_sell_price_per_kwh": {"type": "number", "minimum": 0, "maximum": 100},
        "max_buy_price_per_kwh": {"type": "number", "minimum": 0, "maximum": 100},
        "reserve_wh": {"type": "integer", "minimum": 0, "maximum": 10**9},
        "max_trade_wh": {"type": "integer", "minimum": 1, "maximum": 10**9},
        "opt_out": {"type": "string", "enum": ["none", "selling", "buying", "all"]}}),
}


def _json(schema_name: str, description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(schema_name)}}}


def _query(name: str, description: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


LIMIT = _query("limit", "how many items (default 50)", {"type": "integer", "minimum": 1,
                                                         "maximum": 500})
UNAUTHORIZED = _json("Error", "no token, or a wrong one")
BAD = _json("Error", "a bad parameter or body; `field` names it")


def _get(summary: str, schema: str, *, params=(), public: bool = False, more=None) -> dict:
    responses = {"200": _json(schema, summary)}
    if params:
        responses["400"] = BAD
    if not public:
        responses["401"] = UNAUTHORIZED
    responses.update(more or {})
    operation = {"summary": summary, "responses": responses}
    if params:
        operation["parameters"] = list(params)
    if public:
        operation["security"] = []
    return {"get": operation}


PATHS = {
    "/health": _get("DHT and peer endpoint are up, peers reachable, trades settled (no token "
                    "needed)", "Health", public=True,
                    more={"503": _json("Health", "the DHT or the peer endpoint is down, or the "
                                       "node is grid-only (no peer reachable)")}),
    "/status": _get("identity, addresses, uptime, interval and balance state", "Status"),
    "/reading": _get("the latest meter reading", "ReadingResponse"),
    "/intervals": _get("energy flows of the last closed intervals, oldest first", "Intervals",
                       params=(LIMIT,)),
    "/balance": _get("credit and energy tokens per interval", "Balance"),
    "/offers": _get("this node's open offers", "Offers"),
    "/trades": _get("trades bought and sold, newest first, with settlement state", "Trades",
                    params=(LIMIT,)),
    "/blocks": _get("a page of one chain's blocks (default: the node's own chain)", "Blocks",
                    params=(_query("author", "public key (hex) of the chain", KEY),
                            _query("after", "blocks with seq above this (default 0)", NAT),
                            LIMIT)),
    "/ledger": _get("ledger counts, head and the audit of every stored block", "Ledger"),
    "/market": _get("the last discovery's offers and prices, tariffs, DHT storage", "Market"),
    "/feeder": _get("the feeder role's books: generation G, consumption C, transformer supply "
                    "T, loss = T + G - C (Wh), alert, members reporting and missing, voltages "
                    "and transformer loading of recent intervals, oldest first", "Feeder",
                    params=(_query("limit", "how many closed intervals (default 96)",
                                   {"type": "integer", "minimum": 1, "maximum": 672}),),
                    more={"404": _json("Error", "this node does not run the feeder role")}),
    "/settings": {
        **_get("the user constraints (FR-14)", "Settings"),
        "put": {
            "summary": "replace the user constraints (every field required; nothing changes "
                       "on error)",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("Settings")}}},
            "responses": {"200": _json("Settings", "the new constraints, in force"),
                          "400": BAD, "401": UNAUTHORIZED}},
    },
    "/openapi.json": {"get": {"summary": "this document", "security": [], "responses": {
        "200": {"description": "OpenAPI 3.1", "content": {
            "application/json": {"schema": {"type": "object"}}}}}}},
}


def openapi_document(server_url: str = "") -> dict:
    paths = {API_PREFIX + path: copy.deepcopy(item) for path, item in PATHS.items()}
    paths["/metrics"] = {"get": {
        "summary": "Prometheus metrics (text exposition format)",
        "responses": {"200": {"description": "metrics", "content": {"text/plain": {
            "schema": {"type": "string"}}}}, "401": UNAUTHORIZED}}}
    paths["/"] = {"get": {"summary": "the dashboard page (asks for the token itself)",
                          "security": [], "responses": {"200": {
                              "description": "HTML", "content": {"text/html": {
                                  "schema": {"type": "string"}}}}}}}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "p2p-energy node local API", "version": "1",
                 "description": "The local API of one meter node: state, history, settings. "
                                "Bound to 127.0.0.1 by default; every endpoint but health, "
                                "this document and the page needs `Authorization: Bearer "
                                "<token>`."},
        "paths": paths,
        "components": {"schemas": copy.deepcopy(SCHEMAS), "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document
