"""A node's configuration: frozen dataclasses, validated when built, loaded from TOML.

Every key is optional except where noted; unknown keys are errors (with a "did you mean"), and
every error names the table and key, e.g. ``node.toml: [constraints] reserve_wh = -5: must be
at least 0``.  Prices are in currency units per kWh here (what a person writes); the node turns
them into the ledger's integer µ per kWh.  Layout::

    key_file = "node.key"        ledger = "node.db"        feeder = "feeder-1"
    key_passphrase_file = "node.pass"   or   key_passphrase_env = "P2P_KEY_PASSPHRASE"
                                 # an encrypted (PKCS#8) key file's passphrase: at most one
    location = "3/120/40"        # optional: zone/x_m/y_m, for distance and the predictors
    interval_s = 900
    [network]      host, dht_port, peer_port, advertise ("host:port" buyers reach us at),
                   transport = "http" | "libp2p" (peer links; see p2pnode.transport),
                   bootstrap = ["host:port", ...]
    [meter]        kind = "csv", path (CSV: interval_start_s,generation_wh,consumption_wh)
                   or kind = "mqtt", host, port, topic, format = "json" | "senml", client_id,
                   username, password_file, stale_after_s, keepalive_s, reconnect_max_s
                   or kind = "external" (a meter given in code: firmware, the simulator);
                   any kind: key_file (the meter's own signing key: a replay meter signs as a
                   real one), trusted_keys = ["hex public keys"] (mint only from readings they
                   signed)
    [detection]    enter_wh, exit_wh                          (FR-01 hysteresis)
    [tariffs]      feed_in_per_kwh, [tariffs.frames.NAME] start_hour, end_hour, retail_per_kwh
    [constraints]  min_sell_price_per_kwh, max_buy_price_per_kwh, reserve_wh, max_trade_wh,
                   opt_out = "none" | "selling" | "buying" | "all"          (FR-14)
    [selection]    strategy = "ga" | "exact" | "greedy", [selection.weights] the six weights
    [timing]       buy_delay_s, window_s, request_timeout_s, attempts, max_rounds,
                   failsafe_intervals
    [market]       mode = "real_time" | "day_ahead" | "ex_post", balancing, lead_intervals,
                   gate_hour, substep_s,
                   latitude, longitude (for the forecasts' clear-sky irradiance)
    [credit]       vouchers = ["voucher files"], trusted_issuers = ["hex public keys"],
                   trust_any_issuer = false (true: any issuer's voucher counts; tests only)
    [api]          enabled = false, host = "127.0.0.1", port = 0, token_file     (FR-15)
    [feeder_role]  report_to = the feeder node's peer endpoint (a member: report readings to it):
                   its multiaddr "/ip4/../tcp/../p2p/.." over libp2p, "http://host:port" over http
                   or enabled = true, transformer_meter (CSV: interval_start_s,transformer_wh),
                   loss_threshold_kwh, persistence, grace_s, network, members = ["hex keys"],
                   [feeder_role.buses] "hex key" = bus                 (feeder accounting)
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from optimizer.selection import STRATEGIES, SelectionConfig, SelectionConfigError, Weights
from p2pnode.balance import DetectionConfig
from p2pnode.checks import Checker, Problem, TomlFileError, read_toml, toml_repr, unknown_keys
from p2pnode.errors import ConfigError
from p2pnode.extras import MissingExtra
from p2pnode.pricing import DEFAULT_FRAMES, Frame, Tariffs

__all__ = [
    "ApiConfig", "Constraints", "CreditConfig", "FeederRoleConfig", "MARKET_MODES", "MarketConfig",
    "MeterConfig", "NetworkConfig",
    "NodeConfig", "Timing", "load_config", "micro", "OPT_OUT", "report_transport",
]

OPT_OUT = ("none", "selling", "buying", "all")
METER_KINDS = ("csv", "mqtt", "external")
TRANSPORTS = ("http", "libp2p")
# A config file (``p2pnode run``) without ``[network] transport`` gets libp2p (feeder reports
# too: [feeder_role] report_to is then the feeder node's multiaddr).  ``NodeConfig()`` in code
# (embedding, tests, the simulator) keeps NetworkConfig's "http".
DEPLOYED_TRANSPORT = "libp2p"
MAX_PRICE_PER_KWH = 100.0


def micro(per_kwh: float) -> int:
    """Currency units per kWh -> the ledger's integer µ per kWh."""
    return int(round(per_kwh * 1_000_000))


def _fail(section: str, key: str, value, reason: str) -> typing.NoReturn:
    raise ConfigError(Problem(section, key, value, reason).render())


def _number(section: str, key: str, value, low: float = 0.0, high: float = math.inf,
            integer: bool = False) -> None:
    """The shared field check (:class:`p2pnode.checks.Checker`), raising at once."""
    check = Checker(section)
    bound = None if high == math.inf else high
    if integer:
        check.integer(key, value, low, bound)
    else:
        check.number(key, value, low, bound)
    check.done()


@dataclass(frozen=True)
class NetworkConfig:
    host: str = "127.0.0.1"
    dht_port: int = 0          # 0: the OS picks
    peer_port: int = 0
    advertise: str = ""        # "host:port" of the peer endpoint as others reach it
    bootstrap: tuple[str, ...] = ()
    # DHT contacts of one IP address per bucket and lookup (p2pnode.dht.protocol); 0: no limit,
    # for several daemons on one machine.  Used when the Node is given no DHTSettings.
    max_peers_per_host: int = 2
    transport: str = "http"    # peer links: "http" (clear) or "libp2p" (Noise, yamux); a
                               # config file without the key: DEPLOYED_TRANSPORT (see below)

    def __post_init__(self):
        if self.transport not in TRANSPORTS:
            _fail("network", "transport", self.transport, f"must be one of {', '.join(TRANSPORTS)}")
        for key in ("dht_port", "peer_port"):
            _number("network", key, getattr(self, key), 0, 65535, integer=True)
        _number("network", "max_peers_per_host", self.max_peers_per_host, 0, 64, integer=True)
        for key, value in [("advertise", self.advertise)] * bool(self.advertise) + \
                [("bootstrap", b) for b in self.bootstrap]:
            parse_hostport(value, f"[network] {key}")

    def bootstrap_addresses(self) -> list[tuple[str, int]]:
        return [parse_hostport(b, "[network] bootstrap") for b in self.bootstrap]


def parse_hostport(text: str, where: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"{where} = {toml_repr(text)}: must be host:port with a port in 1..65535")
    return host, int(port)


@dataclass(frozen=True)
class MeterConfig:
    """``[meter]``: a CSV replay (``path``), a live meter over MQTT (p2pnode/meter_mqtt.py) or
    one given in code (``"external"``: firmware, the simulator).

    MQTT: the broker at ``host:port``, the meter's register samples on ``topic`` in ``format``
    ("json" or "senml", see p2pnode/meter_feed.py); a reading older than ``stale_after_s`` does
    not stand for an interval boundary; reconnects back off up to ``reconnect_max_s``.
    """

    kind: str = "csv"
    path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 1883
    topic: str = ""
    format: str = "json"
    client_id: str = ""
    username: str = ""
    password_file: Path | None = None
    stale_after_s: float = 300.0
    keepalive_s: int = 30
    reconnect_max_s: float = 30.0
    key_file: Path | None = None
    trusted_keys: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in METER_KINDS:
            _fail("meter", "kind", self.kind, f"must be one of {', '.join(METER_KINDS)}")
        for key in self.trusted_keys:
            if not _is_public_key(key):
                _fail("meter", "trusted_keys", key, "must be 64 hex digits (a public key)")
        if self.key_file is not None and self.kind != "csv":
            _fail("meter", "key_file", str(self.key_file), 'is for kind = "csv" (a replay meter '
                  "signing as a smart meter would; other meters sign their own readings)")
        if self.kind == "csv":
            if self.path is None:
                _fail("meter", "path", None, "is required for a csv meter")
        elif self.kind == "mqtt":
            self._check_mqtt()

    def _check_mqtt(self) -> None:
        if self.path is not None:
            _fail("meter", "path", str(self.path), "is for kind = \"csv\"")
        if not isinstance(self.host, str) or not self.host or not self.host.isprintable():
            _fail("meter", "host", self.host, "must be the broker's host name or address")
        _number("meter", "port", self.port, 1, 65535, integer=True)
        if not isinstance(self.topic, str) or not self.topic or "#" in self.topic \
                or "+" in self.topic or len(self.topic.encode()) > 1024:
            _fail("meter", "topic", self.topic, "is required: the meter's topic (no wildcards)")
        from p2pnode.meter_feed import FORMATS
        if self.format not in FORMATS:
            _fail("meter", "format", self.format, f"must be one of {', '.join(FORMATS)}")
        for key in ("client_id", "username"):
            value = getattr(self, key)
            if not isinstance(value, str) or len(value) > 128 or not value.isprintable():
                _fail("meter", key, value, "must be a printable string of at most 128 characters")
        _number("meter", "stale_after_s", self.stale_after_s, 1, 86400)
        _number("meter", "keepalive_s", self.keepalive_s, 5, 3600, integer=True)
        _number("meter", "reconnect_max_s", self.reconnect_max_s, 0.5, 3600)


@dataclass(frozen=True)
class Constraints:
    """The user's limits (FR-14); checked by the node on every offer, request and trade."""

    min_sell_price_per_kwh: float = 0.0
    max_buy_price_per_kwh: float = MAX_PRICE_PER_KWH   # capped by the grid tariff anyway
    reserve_wh: int = 0            # surplus kept back from every interval's offer
    max_trade_wh: int = 1_000_000  # largest single trade, as seller and as buyer
    opt_out: str = "none"

    def __post_init__(self):
        _number("constraints", "min_sell_price_per_kwh", self.min_sell_price_per_kwh, 0,
                MAX_PRICE_PER_KWH)
        _number("constraints", "max_buy_price_per_kwh", self.max_buy_price_per_kwh, 0,
                MAX_PRICE_PER_KWH)
        _number("constraints", "reserve_wh", self.reserve_wh, 0, 10**9, integer=True)
        _number("constraints", "max_trade_wh", self.max_trade_wh, 1, 10**9, integer=True)
        if self.opt_out not in OPT_OUT:
            _fail("constraints", "opt_out", self.opt_out, f"must be one of {', '.join(OPT_OUT)}")

    @property
    def sells(self) -> bool:
        return self.opt_out not in ("selling", "all")

    @property
    def buys(self) -> bool:
        return self.opt_out not in ("buying", "all")


@dataclass(frozen=True)
class Timing:
    """When, within the trading window after an interval, things happen (seconds of node time).

    ``buy_delay_s``: buyers start after sellers had this long to publish; ``window_s``: the
    window closes, trades are settled and the rest goes to the grid; ``request_timeout_s`` and
    ``attempts``: per negotiation message (wall seconds); ``max_rounds``: select-and-negotiate
    rounds a buyer runs per interval while offers remain and progress is made;
    ``failsafe_intervals``: intervals in a row with no reachable peer before the node trades
    grid-only until a peer answers again (p2pnode/failsafe.py); ``clock_offset_s``: node
    seconds added to the daemon's clock (``p2pnode run``): a meter whose clock is known to be
    off, or a test injecting clock skew (nodes tolerate at least 30 s between them).
    """

    buy_delay_s: float = 5.0
    window_s: float = 300.0
    request_timeout_s: float = 2.0
    attempts: int = 4
    max_rounds: int = 6
    failsafe_intervals: int = 3
    clock_offset_s: float = 0.0

    def __post_init__(self):
        _number("timing", "buy_delay_s", self.buy_delay_s, 0, 86400)
        _number("timing", "window_s", self.window_s, 0.001, 86400)
        if self.buy_delay_s >= self.window_s:
            _fail("timing", "buy_delay_s", self.buy_delay_s,
                  f"must be less than window_s ({self.window_s})")
        _number("timing", "request_timeout_s", self.request_timeout_s, 0.001, 600)
        _number("timing", "attempts", self.attempts, 1, 20, integer=True)
        _number("timing", "max_rounds", self.max_rounds, 1, 100, integer=True)
        _number("timing", "failsafe_intervals", self.failsafe_intervals, 1, 10_000, integer=True)
        _number("timing", "clock_offset_s", self.clock_offset_s, -86400, 86400)


MARKET_MODES = ("ex_post", "real_time", "day_ahead")


@dataclass(frozen=True)
class MarketConfig:
    """When an interval is traded (see :mod:`p2pnode.trading.schedule`).

    ``mode``: ``"real_time"`` trades interval ``t`` during ``t - lead_intervals`` on the node's
    forecast and measures the delivery during ``t`` in ``substep_s`` sub-steps; ``"day_ahead"``
    also trades the next day's intervals before ``gate_hour`` (local) on day-ahead forecasts,
    the real-time market then trading the difference; ``"ex_post"`` trades ``t`` after it
    ended, on metered energy (the comparison baseline).
    ``balancing``: ahead of delivery, a balancing round after each interval: what sellers
    measured and did not sell is offered to the neighbours whose metered need their trades did
    not cover, before the grid takes the rest (see :mod:`p2pnode.trading.schedule`).
    ``latitude``/``longitude``: the node's place, for the clear-sky irradiance its generation
    forecast uses (default: the shipped weather file's site).
    """

    mode: str = "real_time"
    balancing: bool = True
    lead_intervals: int = 1
    gate_hour: int = 12
    substep_s: int = 60
    latitude: float = 36.1
    longitude: float = -79.9

    def __post_init__(self):
        if self.mode not in MARKET_MODES:
            _fail("market", "mode", self.mode, f"must be one of {', '.join(MARKET_MODES)}")
        if not isinstance(self.balancing, bool):
            _fail("market", "balancing", self.balancing, "must be true or false")
        _number("market", "lead_intervals", self.lead_intervals, 1, 96, integer=True)
        _number("market", "gate_hour", self.gate_hour, 1, 23, integer=True)
        _number("market", "substep_s", self.substep_s, 1, 86400, integer=True)
        _number("market", "latitude", self.latitude, -90, 90)
        _number("market", "longitude", self.longitude, -180, 180)


@dataclass(frozen=True)
class CreditConfig:
    """Credit: vouchers to deposit, and whose vouchers count.

    A voucher is credit only when its issuer is trusted: listed in ``trusted_issuers``.  With
    none listed no voucher counts (the node warns on start) -- anybody can make a key and sign
    vouchers with it, so trusting any issuer lets a buyer pay with credit it printed itself.
    ``trust_any_issuer = true`` restores that for tests and closed experiments.
    """

    vouchers: tuple[Path, ...] = ()          # sealed CreditVoucher files to deposit on start
    trusted_issuers: tuple[str, ...] = ()    # hex public keys of the issuers whose credit counts
    trust_any_issuer: bool = False

    def issuer_keys(self) -> frozenset[bytes] | None:
        """The trusted issuer keys for the ledger rules (None: any issuer)."""
        if self.trust_any_issuer:
            return None
        return frozenset(bytes.fromhex(issuer) for issuer in self.trusted_issuers)

    def __post_init__(self):
        if not isinstance(self.trust_any_issuer, bool):
            _fail("credit", "trust_any_issuer", self.trust_any_issuer, "must be true or false")
        if self.trust_any_issuer and self.trusted_issuers:
            _fail("credit", "trust_any_issuer", True, "contradicts the trusted_issuers listed")
        for issuer in self.trusted_issuers:
            try:
                ok = len(bytes.fromhex(issuer)) == 32
            except ValueError:
                ok = False
            if not ok:
                _fail("credit", "trusted_issuers", issuer, "must be 64 hex digits (a public key)")


@dataclass(frozen=True)
class ApiConfig:
    """The owner's local HTTP API (see p2pnode/api.py); off unless ``enabled``."""

    enabled: bool = False
    host: str = "127.0.0.1"     # loopback: only this machine reaches it
    port: int = 0               # 0: the OS picks (the daemon prints the URL)
    token_file: Path | None = None   # the bearer token, readable by its owner only

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            _fail("api", "enabled", self.enabled, "must be true or false")
        if not isinstance(self.host, str) or not self.host or not self.host.isprintable():
            _fail("api", "host", self.host, "must be a host name or address")
        _number("api", "port", self.port, 0, 65535, integer=True)
        if self.enabled and self.token_file is None:
            _fail("api", "token_file", None, "is required when the API is enabled")


def _is_public_key(text) -> bool:
    try:
        return isinstance(text, str) and len(bytes.fromhex(text)) == 32
    except ValueError:
        return False


@dataclass(frozen=True)
class FeederRoleConfig:
    """The feeder (transformer) role: members report, one node books (p2pnode/feeder_role.py).

    A member sets ``report_to``, the peer endpoint of the feeder node (its multiaddr over
    libp2p, ``http://host:port`` over HTTP: the node's ``[network] transport``), and signs a
    report of every interval's reading to it.  The feeder node sets ``enabled``: it takes the reports,
    reads the transformer's meter (``transformer_meter``, a CSV replay) and, ``grace_s`` after an
    interval ends, books generation, consumption, transformer supply and the loss; ``|loss|``
    above ``loss_threshold_kwh`` for ``persistence`` intervals in a row raises the alert.
    ``network`` names a load-flow feeder (``optimizer.powerflow.FEEDERS``) for voltages and
    transformer loading; members sit on its houses in the order of ``members`` (else of their
    first report) unless ``buses`` places them.  With ``members`` only those keys (and the
    feeder node's own) are counted; without, any validly signed report is.  A member (or any
    node) with ``network`` and its own key in ``buses`` takes the transfer efficiency (X3) of a
    trade with a placed seller from the path losses between their buses (p2pnode/transfer.py).
    """

    enabled: bool = False
    report_to: str = ""
    transformer_meter: Path | None = None
    loss_threshold_kwh: float = 1.0
    persistence: int = 4
    grace_s: float = 120.0
    network: str = ""
    members: tuple[str, ...] = ()
    buses: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            _fail("feeder_role", "enabled", self.enabled, "must be true or false")
        if self.report_to:
            _check_report_url(self.report_to)
        _number("feeder_role", "loss_threshold_kwh", self.loss_threshold_kwh, 0, 1e6)
        _number("feeder_role", "persistence", self.persistence, 1, 10_000, integer=True)
        _number("feeder_role", "grace_s", self.grace_s, 0, 86400)
        if self.network:
            from optimizer.powerflow import FEEDERS
            if self.network not in FEEDERS:
                _fail("feeder_role", "network", self.network, f"must be one of {', '.join(FEEDERS)}")
        for member in self.members:
            if not _is_public_key(member):
                _fail("feeder_role", "members", member, "must be 64 hex digits (a public key)")
        self._check_buses()
        if self.enabled:
            if self.report_to:
                _fail("feeder_role", "report_to", self.report_to,
                      "is for members; the feeder node (enabled = true) books its own reading")
            if self.transformer_meter is None:
                _fail("feeder_role", "transformer_meter", None, "is required when enabled = true")
            return
        for key in ("transformer_meter", "members"):   # network, buses: a member's X3
            value = getattr(self, key)
            if value:
                shown = str(value) if isinstance(value, Path) else dict(value) if key == "buses" \
                    else list(value) if key == "members" else value
                _fail("feeder_role", key, shown, "is only used with enabled = true")

    def _check_buses(self) -> None:
        for member, bus in self.buses:
            if not _is_public_key(member):
                _fail("feeder_role.buses", member, bus, "the key must be 64 hex digits (a public key)")
            if self.members and member not in self.members:
                _fail("feeder_role.buses", member, bus, "is not one of [feeder_role] members")
            _number("feeder_role.buses", member, bus, 0, 10**9, integer=True)
        if self.buses and not self.network:
            _fail("feeder_role", "buses", dict(self.buses), "needs a network to place members on")


REPORT_TO_PROBLEM = ("must be the feeder node's peer endpoint: its multiaddr "
                     "/ip4/<host>/tcp/<port>/p2p/<peer id> (libp2p) or http://host:port (http)")


def report_transport(report_to: str) -> str:
    """The peer transport a ``[feeder_role] report_to`` endpoint is reached over."""
    return "libp2p" if report_to.startswith("/") else "http"


def _check_report_url(url) -> None:
    from urllib.parse import urlsplit
    problem = REPORT_TO_PROBLEM
    if not isinstance(url, str):
        _fail("feeder_role", "report_to", url, problem)
    if report_transport(url) == "libp2p":
        from p2pnode.transport.address import parse_libp2p_endpoint
        parsed = parse_libp2p_endpoint(url)
        if isinstance(parsed, str):
            _fail("feeder_role", "report_to", url, f"{problem} ({parsed})")
        return
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        _fail("feeder_role", "report_to", url, problem)
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None \
            or parts.path not in ("", "/") or parts.query or parts.fragment:
        _fail("feeder_role", "report_to", url, problem)


@dataclass(frozen=True)
class NodeConfig:
    ledger: Path = Path("node.db")
    key_file: Path | None = None   # None: the key is passed to Node in code
    key_passphrase_file: Path | None = None   # encrypted key file: its passphrase's file
    key_passphrase_env: str = ""              # ... or the environment variable holding it
    feeder: str = "default"
    location: str = ""
    interval_s: int = 900
    network: NetworkConfig = field(default_factory=NetworkConfig)
    meter: MeterConfig | None = None
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    tariffs: Tariffs = field(default_factory=Tariffs)
    constraints: Constraints = field(default_factory=Constraints)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    timing: Timing = field(default_factory=Timing)
    market: MarketConfig = field(default_factory=MarketConfig)
    credit: CreditConfig = field(default_factory=CreditConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    feeder_role: FeederRoleConfig = field(default_factory=FeederRoleConfig)

    def __post_init__(self):
        if not self.feeder or len(self.feeder) > 32 or not self.feeder.isprintable():
            _fail("", "feeder", self.feeder, "must be a printable name of 1..32 characters")
        if len(self.location) > 32:
            _fail("", "location", self.location, "must be at most 32 characters")
        _number("", "interval_s", self.interval_s, 60, 86400, integer=True)
        if 86400 % self.interval_s:
            _fail("", "interval_s", self.interval_s, "must divide a day (86400 s) evenly")
        if self.timing.window_s > self.interval_s:
            _fail("timing", "window_s", self.timing.window_s,
                  f"must not exceed interval_s ({self.interval_s})")
        if self.key_passphrase_file is not None and self.key_passphrase_env:
            _fail("", "key_passphrase_env", self.key_passphrase_env,
                  "give key_passphrase_file or key_passphrase_env, not both")
        if self.key_passphrase_env and not self.key_passphrase_env.isidentifier():
            _fail("", "key_passphrase_env", self.key_passphrase_env,
                  "must be an environment variable name")
        if self.interval_s % self.market.substep_s:
            _fail("market", "substep_s", self.market.substep_s,
                  f"must divide interval_s ({self.interval_s}) evenly")
        if self.feeder_role.grace_s >= self.interval_s:
            _fail("feeder_role", "grace_s", self.feeder_role.grace_s,
                  f"must be less than interval_s ({self.interval_s})")
        report_to = self.feeder_role.report_to
        if report_to and report_transport(report_to) != self.network.transport:
            wanted = ("the feeder node's multiaddr /ip4/<host>/tcp/<port>/p2p/<peer id>"
                      if self.network.transport == "libp2p" else "http://host:port")
            _fail("feeder_role", "report_to", report_to,
                  f"must be {wanted}: this node's [network] transport is "
                  f"\"{self.network.transport}\"")


# -- TOML --------------------------------------------------------------------------------------

def load_config(path: str | Path) -> NodeConfig:
    """Read and validate a node configuration file; relative paths are relative to the file."""
    path = Path(path)
    try:
        raw = read_toml(path)
    except TomlFileError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        return config_from_dict(raw, base=path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_from_dict(raw: dict, base: Path = Path(".")) -> NodeConfig:
    raw = dict(raw)
    sections = {
        "network": _build(NetworkConfig, _network_table(raw), "network", base),
        "detection": _build(DetectionConfig, raw.pop("detection", {}), "detection", base),
        "tariffs": _tariffs(raw.pop("tariffs", {})),
        "constraints": _build(Constraints, raw.pop("constraints", {}), "constraints", base),
        "selection": _selection(raw.pop("selection", {})),
        "timing": _build(Timing, raw.pop("timing", {}), "timing", base),
        "market": _build(MarketConfig, raw.pop("market", {}), "market", base),
        "credit": _build(CreditConfig, raw.pop("credit", {}), "credit", base),
        "api": _build(ApiConfig, raw.pop("api", {}), "api", base),
        "feeder_role": _feeder_role(raw.pop("feeder_role", {}), base),
    }
    if "meter" in raw:
        sections["meter"] = _build(MeterConfig, raw.pop("meter"), "meter", base)
    top = {f.name for f in dataclasses.fields(NodeConfig)} - set(sections) - {"meter"}
    _reject_unknown(raw, top, "")
    values = {k: _convert(NodeConfig, k, v, "", base) for k, v in raw.items()}
    return NodeConfig(**values, **sections)


def _network_table(raw: dict) -> dict:
    """``[network]`` with the deployed default transport filled in (see DEPLOYED_TRANSPORT)."""
    table = raw.pop("network", {})
    if not isinstance(table, dict):
        return table   # _build names the problem
    if "transport" not in table:
        return {**table, "transport": DEPLOYED_TRANSPORT}
    return table


def _build(cls, table, section: str, base: Path):
    if not isinstance(table, dict):
        _fail("", section, table, f"must be a table ([{section}])")
    names = {f.name for f in dataclasses.fields(cls)}
    _reject_unknown(table, names, section)
    return cls(**{k: _convert(cls, k, v, section, base) for k, v in table.items()})


def _convert(cls, key: str, value, section: str, base: Path):
    """TOML value -> the field's Python type (paths, tuples); numbers are checked by the class."""
    hint = typing.get_type_hints(cls)[key]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if Path in options:
        if not isinstance(value, str) or not value:
            _fail(section, key, value, "must be a path (a non-empty string)")
        return base / value
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            _fail(section, key, value, "must be a list of strings")
        item = typing.get_args(hint)[0]
        return tuple(base / v if item is Path else v for v in value)
    if str in options and not isinstance(value, str):
        _fail(section, key, value, "must be a string")
    return value


def _tariffs(table) -> Tariffs:
    if not isinstance(table, dict):
        _fail("", "tariffs", table, "must be a table ([tariffs])")
    _reject_unknown(table, {"feed_in_per_kwh", "frames"}, "tariffs")
    feed_in = table.get("feed_in_per_kwh", Tariffs().feed_in_micro_per_kwh / 1e6)
    _number("tariffs", "feed_in_per_kwh", feed_in, 0, MAX_PRICE_PER_KWH)
    frames = DEFAULT_FRAMES
    if "frames" in table:
        frames = []
        for name, frame in table["frames"].items():
            section = f"tariffs.frames.{name}"
            if not isinstance(frame, dict):
                _fail("tariffs.frames", name, frame, "must be a table")
            _reject_unknown(frame, {"start_hour", "end_hour", "retail_per_kwh"}, section)
            for key in ("start_hour", "end_hour", "retail_per_kwh"):
                if key not in frame:
                    _fail(section, key, None, "is required")
            _number(section, "start_hour", frame["start_hour"], 0, 23, integer=True)
            _number(section, "end_hour", frame["end_hour"], 0, 24, integer=True)
            _number(section, "retail_per_kwh", frame["retail_per_kwh"], 0, MAX_PRICE_PER_KWH)
            frames.append(Frame(name, frame["start_hour"], frame["end_hour"] % 24,
                                micro(frame["retail_per_kwh"])))
    try:
        return Tariffs(micro(feed_in), tuple(frames))
    except ConfigError as exc:
        raise ConfigError(f"[tariffs] {exc}") from None


def _feeder_role(table, base: Path) -> FeederRoleConfig:
    if not isinstance(table, dict):
        _fail("", "feeder_role", table, "must be a table ([feeder_role])")
    table = dict(table)
    buses = table.pop("buses", {})
    if not isinstance(buses, dict):
        _fail("feeder_role", "buses", buses, 'must be a table of "public key" = bus')
    config = _build(FeederRoleConfig, table, "feeder_role", base)
    return dataclasses.replace(config, buses=tuple(buses.items())) if buses else config


def _selection(table) -> SelectionConfig:
    if not isinstance(table, dict):
        _fail("", "selection", table, "must be a table ([selection])")
    _reject_unknown(table, {"strategy", "weights"}, "selection")
    strategy = table.get("strategy", "ga")
    if strategy not in STRATEGIES:
        _fail("selection", "strategy", strategy, f"must be one of {', '.join(STRATEGIES)}")
    if strategy == "exact" and importlib.util.find_spec("scipy") is None:
        _fail("selection", "strategy", strategy, "the exact solver needs scipy, which the base "
              f"install lacks: {MissingExtra('scipy', 'sim').install}")
    weights = table.get("weights", {})
    if not isinstance(weights, dict):
        _fail("selection", "weights", weights, "must be a table ([selection.weights])")
    _reject_unknown(weights, Weights.names(), "selection.weights")
    try:
        return SelectionConfig(weights=Weights(**weights), strategy=strategy)
    except SelectionConfigError as exc:     # the one check of the six weights
        key, value, reason = exc.problems[0]
        _fail("selection.weights", key, value, reason)


def _reject_unknown(table: dict, allowed, section: str) -> None:
    """The shared unknown-key check (:func:`p2pnode.checks.unknown_keys`), raising the first."""
    for problem in unknown_keys(table, sorted(allowed), section)[:1]:
        raise ConfigError(problem.render())
