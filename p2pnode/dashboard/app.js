// Dashboard of one meter node: polls the node's local API (same origin only) with the bearer
// token and renders it.  The token comes from the URL fragment (#token=...), which is removed
// from the address bar at once, or from the form; it is kept in sessionStorage (this tab only)
// and sent nowhere but this origin's /api/v1 endpoints.  Data is put in the page with
// textContent only, never as HTML.
"use strict";

const POLL_MS = 5000;
const TOKEN_KEY = "p2p-energy-api-token";
const COLORS = {
  generation: "#2e9d4f", consumption: "#e07b39", sold: "#2f6fd6", export: "#9fd3a8",
  bought: "#8a4fd0", import: "#9aa3ad", transformer: "#d4a017", loss: "#d13f8f",
};
const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

let token = null;
let timer = null;
let settingsLoaded = false;

class Unauthorized extends Error {}

function takeToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

// options.missingOk: a 404 (an endpoint this node does not serve, e.g. feeder) gives null
async function api(path, { missingOk = false, ...options } = {}) {
  const response = await fetch("/api/v1/" + path, {
    ...options, cache: "no-store", credentials: "omit", redirect: "error",
    headers: { ...(options.headers || {}), Authorization: "Bearer " + token },
  });
  if (response.status === 401) throw new Unauthorized("the node refused the token");
  if (response.status === 404 && missingOk) return null;
  const body = await response.json();
  if (!response.ok) {
    const error = new Error(body.error || response.statusText);
    error.field = body.field;
    throw error;
  }
  return body;
}

// -- formatting ----------------------------------------------------------------------------------
const wh = (n) => (n === null || n === undefined ? "–" : n.toLocaleString("en") + "");
const price = (micro) => (micro === null || micro === undefined ? "–" : (micro / 1e6).toFixed(3));
const money = (micro) => (micro / 1e6).toFixed(2);
const short = (hex) => (hex ? hex.slice(0, 12) + "…" : "–");
const clock = (s) => new Date(s * 1000).toISOString().slice(11, 16);
const when = (s) => new Date(s * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return (d ? d + " d " : "") + (d || h ? h + " h " : "") + m + " min";
}

function text(id, value) { $(id).textContent = value; }

function fillTable(id, rows, rowClass) {
  const body = $(id).tBodies[0];
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    if (rowClass) tr.className = rowClass;
    for (const cell of cells) {
      const td = document.createElement("td");
      const [value, cls, title] = Array.isArray(cell) ? cell : [cell];
      td.textContent = value;
      if (cls) td.className = cls;
      if (title) td.title = title;
      tr.appendChild(td);
    }
    return tr;
  }));
  return body;
}

// -- sections ------------------------------------------------------------------------------------
function renderStatus(status, reading) {
  text("public-key", status.public_key);
  text("peer-id", status.peer_id);
  text("feeder", status.feeder + (status.location ? " · " + status.location : ""));
  text("feeder-name", status.feeder);
  text("peer-endpoint", status.peer_endpoint);
  text("dht-address", status.dht_address);
  text("node-time", when(status.node_time_s));
  text("interval", status.interval_s / 60 + " min, current from " + clock(status.current_interval_start_s));
  text("uptime", duration(status.uptime_s));
  const state = $("balance-state");
  state.textContent = status.balance_state;
  state.className = "badge " + status.balance_state;
  const r = reading.reading;
  text("reading", r ? `${clock(r.interval_start_s)}: ${wh(r.generation_wh)} Wh generated, ` +
       `${wh(r.consumption_wh)} Wh used (net ${wh(r.net_wh)})` +
       (r.soc === null ? "" : `, battery ${(r.soc * 100).toFixed(0)} %`) : "none yet");
}

function svg(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  parent.appendChild(node);
  return node;
}

function bar(parent, x, width, y0, height, color, label) {
  if (height <= 0) return;
  const rect = svg("rect", { x, width, y: y0, height, fill: color }, parent);
  svg("title", {}, rect).textContent = label;
}

function renderFlows(intervals) {
  const chart = $("flows");
  chart.replaceChildren();
  $("flows-empty").hidden = intervals.length > 0;
  const W = 1000, left = 48, top = 8, split = 142, base2 = 228, bottom = 312;
  const n = Math.max(intervals.length, 1), slot = (W - left - 8) / n;
  const maxA = Math.max(1, ...intervals.map((i) => Math.max(i.generation_wh || 0, i.consumption_wh || 0)));
  const maxB = Math.max(1, ...intervals.map((i) => Math.max(i.surplus_wh, i.deficit_wh)));
  const scaleA = (split - top) / maxA, scaleB = (base2 - split - 14) / maxB;
  for (const [y, label] of [[top, wh(maxA)], [base2 - maxB * scaleB, "+" + wh(maxB)],
                            [base2 + maxB * scaleB, "−" + wh(maxB)]]) {
    svg("line", { x1: left, x2: W, y1: y, y2: y, class: "grid" }, chart);
    svg("text", { x: 2, y: y + 4 }, chart).textContent = label;
  }
  svg("line", { x1: left, x2: W, y1: split, y2: split, class: "axis" }, chart);
  svg("line", { x1: left, x2: W, y1: base2, y2: base2, class: "axis" }, chart);
  intervals.forEach((i, k) => {
    const x = left + k * slot, w = Math.max(slot * 0.4, 1), t = clock(i.interval_start_s);
    bar(chart, x + slot * 0.1, w, split - (i.generation_wh || 0) * scaleA,
        (i.generation_wh || 0) * scaleA, COLORS.generation, `${t} generation ${wh(i.generation_wh)} Wh`);
    bar(chart, x + slot * 0.5, w, split - (i.consumption_wh || 0) * scaleA,
        (i.consumption_wh || 0) * scaleA, COLORS.consumption, `${t} consumption ${wh(i.consumption_wh)} Wh`);
    const bw = slot * 0.8, bx = x + slot * 0.1;
    const sold = i.sold_wh * scaleB, exported = i.grid_export_wh * scaleB;
    bar(chart, bx, bw, base2 - sold, sold, COLORS.sold, `${t} sold ${wh(i.sold_wh)} Wh`);
    bar(chart, bx, bw, base2 - sold - exported, exported, COLORS.export, `${t} exported ${wh(i.grid_export_wh)} Wh`);
    const bought = i.bought_wh * scaleB, imported = i.grid_import_wh * scaleB;
    bar(chart, bx, bw, base2, bought, COLORS.bought, `${t} bought ${wh(i.bought_wh)} Wh`);
    bar(chart, bx, bw, base2 + bought, imported, COLORS.import, `${t} imported ${wh(i.grid_import_wh)} Wh`);
    if (n <= 24 || k % Math.ceil(n / 24) === 0) {
      svg("text", { x: x + slot * 0.1, y: bottom + 6 }, chart).textContent = t;
    }
  });
  const sum = (key) => intervals.reduce((a, i) => a + i[key], 0);
  fillTable("flow-totals", [[intervals.length, wh(sum("surplus_wh")), wh(sum("sold_wh")),
    wh(sum("grid_export_wh")), wh(sum("deficit_wh")), wh(sum("bought_wh")), wh(sum("grid_import_wh"))]]);
}

function renderBalance(balance) {
  text("credit", money(balance.credit_micro) + " credit");
  fillTable("tokens", balance.tokens.slice(0, 6).map((t) => [when(t.interval_start_s), [wh(t.tokens_wh), "num"]]));
}

function renderOffers(offers) {
  fillTable("offers", offers.offers.map((o) => [clock(o.interval_start_s), [wh(o.energy_wh), "num"],
    [price(o.price_micro_per_kwh), "num"], o.seq, [short(o.offer_id), "", o.offer_id]]), "offer-row");
}

function renderTrades(trades) {
  text("trade-total", `(${trades.total} in the ledger, newest first)`);
  const body = fillTable("trades", trades.trades.map((t) => [
    [short(t.trade_id), "", t.trade_id], t.role === "seller" ? "sold" : "bought",
    when(t.interval_start_s), [wh(t.energy_wh), "num"], [price(t.price_micro_per_kwh), "num"],
    [money(t.cost_micro), "num"], [t.status, "status-" + t.status],
    [wh(t.delivered_wh), "num"], [short(t.counterparty), "", t.counterparty],
    t.decision_ms === null ? "–" : (t.decision_ms / 1000).toFixed(2) + " s"]), "trade-row");
  [...body.rows].forEach((row, k) => { row.dataset.tradeId = trades.trades[k].trade_id; });
}

function renderMarket(market) {
  const t = market.tariffs;
  text("tariffs", `Tariffs now (${t.frame}): retail ${price(t.retail_micro_per_kwh)}, ` +
       `feed-in ${price(t.feed_in_micro_per_kwh)} per kWh · ${market.dht_stored_offers} ` +
       "offer records held in this node's DHT storage");
  const d = market.discovery;
  if (!d) {
    text("discovery-summary", "No discovery yet (the node looks for offers when it has a deficit).");
    fillTable("market", []);
    return;
  }
  const count = d.offers.length === 1 ? "1 offer" : `${d.offers.length} offers`;
  text("discovery-summary", `Last discovery: ${count}, ${wh(d.energy_wh)} Wh, ` +
       `price ${price(d.min_price_micro_per_kwh)} – ${price(d.max_price_micro_per_kwh)} ` +
       `(median ${price(d.median_price_micro_per_kwh)}); ${d.keys} keys, ${d.responses} replies, ` +
       `${d.failures} failed`);
  fillTable("market", d.offers.map((o) => [[short(o.seller), "", o.seller], clock(o.interval_start_s),
    [wh(o.energy_wh), "num"], [price(o.price_micro_per_kwh), "num"]]), "market-row");
}

function renderLedger(ledger, blocks) {
  text("ledger-blocks", `${ledger.blocks} (${ledger.authors} chains, ${ledger.forks} forks)`);
  text("ledger-head", `${ledger.head_seq} blocks`);
  text("ledger-hash", ledger.head_hash);
  const audit = $("ledger-audit");
  audit.textContent = ledger.audit.ok
    ? `ok: ${ledger.audit.blocks_checked} blocks verified`
    : `${ledger.audit.problem_count} problems: ${ledger.audit.problems.join("; ")}`;
  audit.className = ledger.audit.ok ? "ok" : "bad";
  fillTable("blocks", blocks.blocks.slice().reverse().map((b) => [b.seq, b.type || "?",
    b.role || "", [short(b.hash), "", b.hash]]), "block-row");
}

const kwh = (n) => (n === null || n === undefined ? "–" : (n / 1000).toFixed(2) + " kWh");
const pu = (v) => v.toFixed(3);

function renderFeeder(feeder) {
  const card = $("feeder-card"), badge = $("feeder-alert");
  $("feeder-role").hidden = feeder !== null;
  $("feeder-books").hidden = feeder === null;
  card.classList.toggle("wide", feeder !== null);
  badge.hidden = feeder === null;
  if (feeder === null) return;
  badge.textContent = feeder.alert ? `loss alert (${feeder.loss_streak} intervals)` : "no loss alert";
  badge.className = "badge " + (feeder.alert ? "alert" : "ok");
  const last = feeder.latest;
  text("feeder-summary", `${feeder.feeder}` + (feeder.network ? ` · network ${feeder.network}` : "") +
       ` · alert above ${feeder.loss_threshold_kwh} kWh for ${feeder.persistence} intervals`);
  text("feeder-members", last
    ? `${last.members_reporting} reporting, ${last.members_missing} missing` +
      (feeder.members_configured === null ? ` (any signed report; ${feeder.members_known} known)`
                                          : ` of ${feeder.members_configured} configured`)
    : `${feeder.members_known} known, no interval closed yet`);
  text("feeder-latest", last ? `${clock(last.interval_start_s)}: G ${kwh(last.generation_wh)}, ` +
       `C ${kwh(last.consumption_wh)}, T ${kwh(last.transformer_wh)}, loss ${kwh(last.loss_wh)}` : "–");
  const net = last && last.network;
  text("feeder-voltage", net ? `${pu(net.vm_min_pu)} (bus ${net.vm_min_bus}) – ${pu(net.vm_max_pu)} ` +
       `(bus ${net.vm_max_bus}); ${net.buses_outside_limits.length} buses outside limits` : "no network configured");
  text("feeder-loading", net ? `${net.trafo_loading_percent.toFixed(1)} % loaded, technical loss ` +
       `${wh(Math.round(net.technical_loss_wh))} Wh` : "–");
  const dropped = Object.entries(feeder.reports.dropped).map(([k, v]) => `${v} ${k}`).join(", ");
  text("feeder-reports", `${feeder.reports.accepted} accepted, ${feeder.reports.duplicate} duplicates` +
       (dropped ? `, refused: ${dropped}` : ", none refused"));
  renderFeederChart(feeder.intervals);
  fillTable("feeder-intervals", feeder.intervals.slice(-8).reverse().map((i) => [
    clock(i.interval_start_s), [wh(i.generation_wh), "num"], [wh(i.consumption_wh), "num"],
    [wh(i.transformer_wh), "num"], [wh(i.loss_wh), "num"],
    `${i.members_reporting} / ${i.members_reporting + i.members_missing}`,
    i.network ? `${pu(i.network.vm_min_pu)} – ${pu(i.network.vm_max_pu)}` : "–",
    [i.network ? i.network.trafo_loading_percent.toFixed(1) + " %" : "–", "num"],
    i.alert ? ["ALERT", "bad"] : ["–", ""]]), "feeder-row");
}

function renderFeederChart(intervals) {
  const chart = $("feeder-chart");
  chart.replaceChildren();
  const W = 1000, left = 56, top = 8, bottom = 216;
  const n = Math.max(intervals.length, 1), slot = (W - left - 8) / n;
  const values = intervals.flatMap((i) => [i.generation_wh, i.consumption_wh, i.transformer_wh || 0, i.loss_wh || 0]);
  const hi = Math.max(1, ...values), lo = Math.min(0, ...values);
  const y = (v) => top + (hi - v) * (bottom - top) / (hi - lo);
  for (const [v, label] of [[hi, wh(hi)], [0, "0"], ...(lo < 0 ? [[lo, wh(lo)]] : [])]) {
    svg("line", { x1: left, x2: W, y1: y(v), y2: y(v), class: v === 0 ? "axis" : "grid" }, chart);
    svg("text", { x: 2, y: y(v) + 4 }, chart).textContent = label;
  }
  const points = [];
  intervals.forEach((i, k) => {
    const x = left + k * slot, w = Math.max(slot * 0.26, 1), t = clock(i.interval_start_s);
    const column = (offset, value, color, label) => {
      if (value === null) return;
      bar(chart, x + slot * offset, w, Math.min(y(value), y(0)), Math.abs(y(value) - y(0)), color,
          `${t} ${label} ${wh(value)} Wh`);
    };
    column(0.1, i.generation_wh, COLORS.generation, "generation");
    column(0.37, i.consumption_wh, COLORS.consumption, "consumption");
    column(0.64, i.transformer_wh, COLORS.transformer, "transformer supply");
    if (i.loss_wh !== null) points.push([x + slot * 0.5, y(i.loss_wh), t, i.loss_wh]);
    if (n <= 24 || k % Math.ceil(n / 24) === 0) {
      svg("text", { x: x + slot * 0.1, y: bottom + 18 }, chart).textContent = t;
    }
  });
  if (points.length > 1) {
    svg("polyline", { points: points.map(([px, py]) => `${px},${py}`).join(" "), class: "loss" }, chart);
  }
  for (const [px, py, t, loss] of points) {
    const dot = svg("circle", { cx: px, cy: py, r: 6, fill: COLORS.loss }, chart);
    svg("title", {}, dot).textContent = `${t} loss ${wh(loss)} Wh`;
  }
}

function renderSettings(settings) {
  const form = $("settings");
  if (form.contains(document.activeElement) && settingsLoaded) return;  // the user is editing
  for (const [name, value] of Object.entries(settings)) form.elements[name].value = value;
  settingsLoaded = true;
}

async function saveSettings(event) {
  event.preventDefault();
  const form = $("settings"), message = $("settings-message");
  const body = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    el.classList.remove("invalid");
    body[el.name] = el.type === "number" ? (el.value === "" ? null : Number(el.value)) : el.value;
  }
  try {
    renderSettings(await api("settings", { method: "PUT", body: JSON.stringify(body),
                                           headers: { "Content-Type": "application/json" } }));
    message.textContent = "Saved: in force from now on.";
    message.className = "ok";
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
    message.textContent = error.message;
    message.className = "error";
    if (error.field && form.elements[error.field]) form.elements[error.field].classList.add("invalid");
  }
}

// The fail-safe (p2pnode/failsafe.py): grid-only after intervals with no reachable peer.
function renderFailsafe(health) {
  const badge = $("failsafe");
  badge.hidden = health.mode === undefined;
  if (badge.hidden) return;
  const overdue = health.overdue_settlements ? ` · ${health.overdue_settlements} settlement(s) overdue` : "";
  if (health.mode === "grid_only") {
    badge.textContent = `grid only: no peer for ${health.intervals_without_peers} intervals` + overdue;
    badge.className = "badge down";
  } else {
    const peers = health.peers_reachable === null ? "peers not probed yet"
      : `${health.peers_reachable} peer(s) reachable`;
    badge.textContent = "trading · " + peers + overdue;
    badge.className = "badge " + (overdue ? "alert" : "ok");
  }
  badge.dataset.mode = health.mode;
}

// -- polling ---------------------------------------------------------------------------------------
async function refresh() {
  try {
    const health = await fetch("/api/v1/health", { cache: "no-store", credentials: "omit" })
      .then((r) => r.json()).catch(() => ({ ok: false }));
    const badge = $("health");
    badge.textContent = health.ok ? "DHT and peer endpoint up" : "node down";
    badge.className = "badge " + (health.ok ? "ok" : "down");
    renderFailsafe(health);
    const [status, reading, intervals, balance, offers, trades, ledger, market, settings, feeder] =
      await Promise.all(["status", "reading", "intervals?limit=48", "balance", "offers",
                         "trades?limit=20", "ledger", "market", "settings", "feeder?limit=48"]
        .map((p) => api(p, { missingOk: p.startsWith("feeder") })));
    const blocks = await api("blocks?after=" + Math.max(0, ledger.head_seq - 8) + "&limit=8");
    $("login").hidden = true;
    $("main").hidden = false;
    $("logout").hidden = false;
    renderStatus(status, reading);
    renderFlows(intervals.intervals);
    renderBalance(balance);
    renderOffers(offers);
    renderTrades(trades);
    renderMarket(market);
    renderLedger(ledger, blocks);
    renderSettings(settings);
    renderFeeder(feeder);
    text("updated", "updated " + new Date().toLocaleTimeString());
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
    text("updated", "update failed: " + error.message);
  }
}

function showLogin(reason) {
  clearInterval(timer);
  timer = null;
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  text("login-error", reason || "");
  $("token-input").focus();
}

function connect(newToken) {
  token = newToken;
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    $("token-input").value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    connect(value);
  });
  $("logout").addEventListener("click", () => showLogin("Token forgotten."));
  $("settings").addEventListener("submit", saveSettings);
  const saved = takeToken();
  if (saved) connect(saved); else showLogin("");
});
