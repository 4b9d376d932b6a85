"""The node owner's local HTTP API (FR-15): state, history, settings, metrics and the dashboard.

::

    api = ApiServer(node, load_token(Path("api.token")))
    await api.start("127.0.0.1", 0)          # port 0: the OS picks; api.url says where
    ...
    await api.stop()

Separate from the peer endpoint (:mod:`p2pnode.peer`), bound to 127.0.0.1 by default.  Every
route needs ``Authorization: Bearer <token>`` -- compared in constant time -- except
``/api/v1/health``, ``/api/v1/openapi.json`` and the dashboard's static files (``/`` and
``/dashboard/...``), which hold no data: the page asks for the token and sends it to this
origin only.  A missing or wrong token gets 401 with a JSON error.  The token lives in a file
that must be private to its owner (like the node key, see :mod:`p2pnode.identity`).

JSON under ``/api/v1`` (described by :mod:`p2pnode.api_schema`, built by
:mod:`p2pnode.api_views`): ``status reading intervals balance offers trades blocks ledger market
settings health``, and ``feeder`` on a node that runs the feeder role (404 elsewhere).
``PUT /api/v1/settings`` replaces the user constraints (FR-14) as a whole:
the body is validated completely before ``node.config`` is replaced (one assignment of a new
frozen config), so a bad value gets 400 naming the field and changes nothing.  With a
``settings`` store (``p2pnode run`` passes one, :mod:`p2pnode.settings_store`) the new
constraints are saved before the node uses them and survive a restart.  Prometheus
metrics are at ``/metrics`` (:mod:`p2pnode.api_metrics`).

Errors: :class:`ApiError` (a :class:`~p2pnode.errors.NodeError`) when the API cannot start --
bad token file, port taken.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import os
import secrets
import time
from pathlib import Path

from aiohttp import web

from ledger import audit
from ledger.verify import ForkProof
from p2pnode import api_views as views
from p2pnode.api_metrics import CONTENT_TYPE_LATEST, metrics_text, node_registry
from p2pnode.api_schema import API_PREFIX, openapi_document
from p2pnode.connguard import ConnectionLimits, GuardedSite, SiteRef
from p2pnode.errors import ConfigError, FileLimitError, NodeError
from p2pnode.files import TOKEN_FILE_MAX_BYTES, read_private

__all__ = ["ApiError", "ApiServer", "DASHBOARD_DIR", "MIN_TOKEN_CHARS", "create_token_file",
           "load_token"]

log = logging.getLogger(__name__)

DASHBOARD_DIR = Path(__file__).parent / "dashboard"
MIN_TOKEN_CHARS = 16
MAX_BODY_BYTES = 64 * 1024
API_CONNECTIONS = ConnectionLimits(max_connections=64, idle_s=15.0, request_s=30.0)
DEFAULT_PAGE = 50
PUBLIC_PATHS = frozenset({"/", f"{API_PREFIX}/health", f"{API_PREFIX}/openapi.json"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
TOKEN_HINT = ("create one readable by its owner only: umask 077; python3 -c "
              "'import secrets; print(secrets.token_urlsafe(32))' > {path}")


class ApiError(NodeError):
    """The local API cannot start: its token file is unusable or its socket cannot be bound."""


# -- the token ---------------------------------------------------------------------------------

def load_token(path: Path) -> str:
    """Read the bearer token, refusing a missing, empty, weak or group/other-accessible file."""
    path = Path(path)
    try:
        text = read_private(path, TOKEN_FILE_MAX_BYTES, "API token file").decode("utf-8")
    except FileNotFoundError:
        raise ApiError(f"API token file {path} does not exist; "
                       + TOKEN_HINT.format(path=path)) from None
    except FileLimitError as exc:
        raise ApiError(str(exc)) from None
    except UnicodeDecodeError:
        raise ApiError(f"API token file {path} is not UTF-8 text") from None
    token = text.strip()
    if not token:
        raise ApiError(f"API token file {path} is empty; " + TOKEN_HINT.format(path=path))
    if len(token) < MIN_TOKEN_CHARS or not token.isprintable() or any(c.isspace() for c in token):
        raise ApiError(f"API token file {path}: the token must be one word of at least "
                       f"{MIN_TOKEN_CHARS} printable characters")
    return token


def create_token_file(path: Path) -> str:
    """Write a new random token to ``path`` (mode 0600, never overwriting); returns it."""
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ApiError(f"API token file {path} already exists") from None
    except OSError as exc:
        raise ApiError(f"cannot create API token file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    return token


def _bearer_ok(header: str | None, token: bytes) -> bool:
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token)


def _json(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    return _json({"error": message, "field": field}, status)


# -- the server --------------------------------------------------------------------------------

class ApiServer:
    """The local API of ``node`` (a started :class:`~p2pnode.node.Node`).

    Wraps ``node.meter`` in a :class:`~p2pnode.api_views.RecordingMeter` (same readings, the
    recent ones kept for the energy-flow view).  ``feeder``: the node's
    :class:`~p2pnode.feeder_role.FeederRole`, if it runs one.
    """

    def __init__(self, node, token: str, *, feeder=None, settings=None, monotonic=time.monotonic):
        if len(token) < MIN_TOKEN_CHARS:
            raise ApiError(f"the API token must have at least {MIN_TOKEN_CHARS} characters")
        self.node, self.feeder = node, feeder
        self.settings = settings     # a p2pnode.settings_store.SettingsStore: PUTs survive restarts
        self._token = token.encode("utf-8")
        if not isinstance(node.meter, views.RecordingMeter):
            node.meter = views.RecordingMeter(node.meter)
        self.meter: views.RecordingMeter = node.meter
        self.monotonic = monotonic
        self.started_at = monotonic()
        self.registry = node_registry(node, feeder)
        self.runner: web.AppRunner | None = None
        self.host, self.port = "", 0
        self._audit_lock = asyncio.Lock()
        self._audit_cache: tuple[tuple[int, int], object] | None = None
        self.app = self._build_app()

    def _build_app(self) -> web.Application:
        self._site_ref = SiteRef()
        app = web.Application(client_max_size=MAX_BODY_BYTES,
                              middlewares=[self._site_ref.middleware, self._headers,
                                           self._errors, self._auth])
        get = {"status": self.status, "reading": self.reading, "intervals": self.intervals,
               "balance": self.balance, "offers": self.offers, "trades": self.trades,
               "blocks": self.blocks, "ledger": self.ledger, "market": self.market,
               "settings": self.get_settings, "health": self.health, "feeder": self.feeder_books,
               "openapi.json": self.openapi}
        for name, handler in get.items():
            app.router.add_get(f"{API_PREFIX}/{name}", handler, allow_head=False)
        app.router.add_put(f"{API_PREFIX}/settings", self.put_settings)
        app.router.add_get("/metrics", self.metrics, allow_head=False)
        app.router.add_get("/", self.index)
        app.router.add_static("/dashboard/", DASHBOARD_DIR, follow_symlinks=False)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        try:
            await GuardedSite(self.runner, host, port, ref=self._site_ref,
                              limits=API_CONNECTIONS, reuse_address=True).start()
        except OSError as exc:
            await self.runner.cleanup()
            self.runner = None
            raise ApiError(f"cannot bind the local API to {host}:{port}: {exc.strerror}") from exc
        self.host, self.port = self.runner.addresses[0][:2]
        self.started_at = self.monotonic()
        if host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("the local API listens on %s, not only on this machine", host)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def __aenter__(self) -> ApiServer:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # -- middlewares ---------------------------------------------------------------------------
    @web.middleware
    async def _headers(self, request: web.Request, handler):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(SECURITY_HEADERS)
            raise
        response.headers.update(SECURITY_HEADERS)
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        """JSON errors for the API routes: 400 naming the field, 404/405 and 500."""
        api = request.path.startswith(API_PREFIX) or request.path == "/metrics"
        try:
            return await handler(request)
        except views.BadRequest as exc:
            return _error(400, str(exc), exc.field)
        except web.HTTPException as exc:
            if not api or exc.status < 400:
                raise
            return _error(exc.status, exc.reason)
        except Exception:
            log.exception("local API: %s %s failed", request.method, request.path)
            return _error(500, "internal error (logged by the node)")

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        path = request.path
        protected = path == "/metrics" or path.startswith(f"{API_PREFIX}/")
        if not protected or path in PUBLIC_PATHS:   # the page's files hold no data
            return await handler(request)
        if not _bearer_ok(request.headers.get("Authorization"), self._token):
            log.info("local API: refused %s %s from %s (no valid token)", request.method, path,
                     request.remote)
            response = _error(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
            response.headers["WWW-Authenticate"] = 'Bearer realm="p2p-energy node"'
            return response
        return await handler(request)

    # -- handlers --------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ())
        dht = self.node.dht.server.transport is not None
        peer = self.node.peer_server.serving
        body = views.health_view(self.node, dht, peer)
        return _json(body, 200 if body["ok"] else 503)

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(openapi_document(self.url.rstrip("/")))

    async def status(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ())
        return _json(views.status_view(self.node, self.monotonic() - self.started_at))

    async def reading(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ())
        return _json(views.reading_view(self.meter))

    async def intervals(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ("limit",))
        limit = views.query_int(request.query, "limit", DEFAULT_PAGE, 1, views.MAX_PAGE)
        return _json(views.intervals_view(self.node, self.meter, limit))

    async def balance(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ())
        return _json(views.balance_view(self.node))

    async def offers(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ())
        return _json(views.offers_view(self.node))

    async def trades(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ("limit",))
        limit = views.query_int(request.query, "limit", DEFAULT_PAGE, 1, views.MAX_PAGE)
        return _json(views.trades_view(self.node, limit))

    async def blocks(self, request: web.Request) -> web.Response:
        query = request.query
        views.check_query(query, ("author", "after", "limit"))
        author = self.node.public
        if "author" in query:
            try:
                author = bytes.fromhex(query["author"])
            except ValueError:
                author = b""
            if len(author) != 32:
                raise views.BadRequest(f"author = {query['author']!r}: must be a public key "
                                       "(64 hex digits)", "author")
        after = views.query_int(query, "after", 0, 0, 2**63 - 1)
        limit = views.query_int(query, "limit", DEFAULT_PAGE, 1, views.MAX_PAGE)
        return _json(views.blocks_view(self.node, author, after, limit))

    async def ledger(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ())
        return _json(views.ledger_view(self.node, await self._audit()))

    async def _audit(self):
        """The audit of every stored block, redone only when blocks or forks were added."""
        store = self.node.ledger.store
        async with self._audit_lock:
            forks = store.forks()
            key = (store.count(), len(forks))
            if self._audit_cache is None or self._audit_cache[0] != key:
                rows = list(store.raw_blocks())
                proofs = [ForkProof(f.raw_kept, f.raw_other) for f in forks]
                report = await asyncio.get_running_loop().run_in_executor(
                    None, audit, rows, self.node.ledger.rules, proofs)
                self._audit_cache = (key, report)
            return self._audit_cache[1]

    async def market(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ())
        return _json(views.market_view(self.node))

    async def feeder_books(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ("limit",))
        limit = views.query_int(request.query, "limit", views.FEEDER_PAGE, 1, views.MAX_FEEDER_PAGE)
        if self.feeder is None:
            return _error(404, "this node does not run the feeder role ([feeder_role] enabled "
                               "= false in its configuration)")
        return _json(views.feeder_view(self.feeder, limit))

    async def get_settings(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ())
        return _json(views.settings_view(self.node.config.constraints))

    async def put_settings(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ())
        if request.content_length is not None and request.content_length > views.MAX_BODY_BYTES:
            raise views.BadRequest(f"body is over {views.MAX_BODY_BYTES} bytes")
        constraints = views.parse_settings_body(await request.content.read(views.MAX_BODY_BYTES + 1))
        try:
            config = dataclasses.replace(self.node.config, constraints=constraints)
        except ConfigError as exc:
            raise views.BadRequest(str(exc)) from None
        if self.settings is not None:
            try:
                self.settings.save(constraints)      # durable before the node uses it
            except OSError as exc:
                return _error(500, f"cannot save the settings to {self.settings.path}: {exc}")
        self.node.config = config   # one assignment: the node sees the old or the new, whole
        log.info("constraints set through the local API: %s", views.settings_view(constraints))
        return _json(views.settings_view(constraints))

    async def metrics(self, request: web.Request) -> web.Response:
        views.check_query(request.query, ())
        return web.Response(body=metrics_text(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST,
                                     "Cache-Control": "no-store"})

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(DASHBOARD_DIR / "index.html",
                                headers={"Cache-Control": "no-store"})
