"""The console's HTTP server: pages, the JSON API, the live event stream (Server-Sent Events), the
evidence (snapshots from the sink's store, clips from its clip folder, streamed with byte ranges).

Served by FastAPI on uvicorn (``web.Served``), behind ``web.Guard``: a ``Host`` that is not the
console's own (DNS rebinding) is 421, an ``Origin`` from elsewhere 403, a body over 64 KiB 413,
before any route runs. Every page and API needs a session; every POST needs the session's CSRF token
(the log-in form its own, double-submitted); roles decide who may act, manage users or push zones.
Every answer carries a strict Content-Security-Policy and is not cached unless it says so."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..control import is_loopback, parse_bind
from ..errors import ConfigError, SafeCityError
from ..events.clip_store import SUFFIX, clips_dir, is_digest
from ..events.store import Db, StoreTarget, local_file, open_reader
from ..web import BodyTooLarge, Guard, Message, Receive, Scope, Send, Served
from . import auth, pages
from .auth import LoginBusy, Session, Throttle, Users, csrf_ok
from .edges import EdgeControl
from .feed import Feed, camera_health
from .store import STATES, VERDICTS, Action, ActionRefused, ConsoleStore
from .verdicts import register, since_days
from .zones import checked, export_yaml, normalised

log = logging.getLogger(__name__)

COOKIE = "safecity_session"
LOGIN_COOKIE = "safecity_login"
MAX_BODY = 64 * 1024
STREAM_KEEPALIVE_S = 15.0
STREAM_RECHECK_S = 30.0
STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
READERS = 4  # readers of the sink's store kept open between requests
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class Console:
    """The console for the sink store at ``sink_db`` (its own store at ``console_db``; the evidence
    clips in ``clips``, by default beside a SQLite sink store)."""

    def __init__(
        self,
        sink_db: StoreTarget,
        console_db: Path,
        bind: str = "127.0.0.1:8080",
        *,
        clips: Path | None = None,
        public_url: str | None = None,
        edges: dict[str, EdgeControl] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """``public_url``: where browsers reach it when that is not ``bind`` (a TLS proxy in front:
        https:// there makes the session cookie Secure). Other Host headers are refused (DNS rebinding)."""
        host, port = parse_bind(bind)
        self.sink_db = sink_db
        self._readers: list[Db] = []  # the sink store's readers between requests (``sink``)
        self._readers_lock = threading.Lock()
        self.clips = clips if clips is not None else local_file(sink_db, None, clips_dir, "--clips")
        self.edges = edges or {}  # edge id -> its control interface (zones loaded and pushed)
        self.secure_cookies = False
        public = None
        if public_url:
            public = urlsplit(public_url)
            if public.scheme not in ("http", "https") or not public.netloc:
                raise ConfigError(f"--public-url {public_url!r}: expected http(s)://HOST[:PORT]")
            self.secure_cookies = public.scheme == "https"
        self.store = ConsoleStore(console_db)
        self._registry = registry
        self._collector = register(self.store, registry) if registry is not None else None
        self.users = Users(self.store)
        self.throttle = Throttle()
        self.feed = Feed(sink_db, self.store)
        self.closing = False
        self._notices: dict[str, str] = {}  # session's CSRF token -> a message for its next page
        self._throttle_logged: dict[str, float] = {}
        self._guard = Guard(_Headers(build_app(self)), hosts=set(), origins=set(), max_body=MAX_BODY)
        try:
            self._served = Served(self._guard, host, port, name="console", what="console")
        except ConfigError:
            self.store.close()
            raise
        self.port = self._served.port
        self.url = f"http://{host}:{self.port}" if ":" not in host else f"http://[{host}]:{self.port}"
        self.hosts = {urlsplit(self.url).netloc}
        if is_loopback(host):
            self.hosts |= {f"{h}:{self.port}" for h in ("localhost", "127.0.0.1", "[::1]")}
        if public is not None:
            self.hosts.add(public.netloc)
        self._guard.hosts = {h.lower() for h in self.hosts}
        self._guard.origins = {f"{scheme}://{h}".lower() for h in self.hosts for scheme in ("http", "https")}
        if not is_loopback(host):
            log.warning("console listening beyond loopback (%s): put TLS in front of it", self.url)

    def start(self) -> None:
        self.feed.start()
        self._served.start()
        log.info("console on %s", self.url)

    def close(self) -> None:
        self.closing = True
        self.feed.stop()
        self._served.close()
        if self._registry is not None and self._collector is not None:
            self._registry.unregister(self._collector)
        self.store.close()
        with self._readers_lock:
            for db in self._readers:
                db.close()
            self._readers.clear()

    def notice(self, session: Session, text: str) -> None:
        """A message the session's next page shows (never carried in the URL: nobody can forge one)."""
        if len(self._notices) > 10_000:
            self._notices.clear()
        self._notices[session.csrf] = text[:500]

    def take_notice(self, session: Session) -> str:
        return self._notices.pop(session.csrf, "")

    def worth_recording(self, key: str) -> bool:
        """Whether a repeated refusal (a throttled log-in, a denied route) for ``key`` is worth an
        audit row now: once a minute per key, so a flood fills neither the disk nor the audit page."""
        now = time.monotonic()
        if now - self._throttle_logged.get(key, float("-inf")) < 60.0:
            return False
        if len(self._throttle_logged) > 10_000:
            self._throttle_logged.clear()
        self._throttle_logged[key] = now
        return True

    @contextlib.contextmanager
    def sink(self) -> Iterator[Db | None]:
        """A reader of the sink's store (None while it does not exist), kept for the next request:
        up to READERS of them; one that failed under a request is closed, not kept."""
        with self._readers_lock:
            db = self._readers.pop() if self._readers else None
        if db is None:
            db = open_reader(self.sink_db)
        if db is None:
            yield None
            return
        try:
            yield db
        except BaseException:
            db.close()
            raise
        with self._readers_lock:
            if len(self._readers) < READERS and not self.closing:
                self._readers.append(db)
                return
        db.close()

    def snapshot(self, sha: str) -> bytes | None:
        with self.sink() as db:
            if db is None:
                return None
            row = db.execute("SELECT jpeg FROM snapshots WHERE sha256 = ?", (sha,)).fetchone()
        return None if row is None else bytes(row[0])

    def clip_path(self, sha: str) -> Path:
        return self.clips / f"{sha}{SUFFIX}"

    def cameras(self) -> list[dict[str, Any]]:
        with self.sink() as db:
            return camera_health(db, self.store, time.time())


class _Headers:
    """ASGI middleware: every answer carries the security headers, and ``Cache-Control: no-store``
    unless it says otherwise."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                headers += [h for h in SECURITY_HEADERS if h[0] not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class Refused(Exception):
    """An answer decided before the route's work: a status, a message, and whether the client is an
    API client (JSON) or a browser (a page)."""

    def __init__(self, status: int, message: str, session: Session | None, api: bool) -> None:
        super().__init__(message)
        self.status, self.session, self.api = status, session, api


def build_app(c: Console) -> FastAPI:
    """The console's routes: pages, API, stream and evidence."""
    app = FastAPI(title="safecity console", docs_url=None, redoc_url=None, openapi_url=None)

    # -- plumbing -------------------------------------------------------------------------------
    def client(request: Request) -> str:
        return request.client.host if request.client else "?"

    def html(status: int, page: str, cookies: list[str] | None = None) -> HTMLResponse:
        r = HTMLResponse(page, status_code=status)
        for cookie in cookies or []:
            r.headers.append("set-cookie", cookie)
        return r

    def as_json(status: int, value: Any) -> Response:
        return Response(pages.to_json(value), status_code=status, media_type="application/json")

    def redirect(where: str, cookies: list[str] | None = None) -> RedirectResponse:
        r = RedirectResponse(where, status_code=303)
        for cookie in cookies or []:
            r.headers.append("set-cookie", cookie)
        return r

    def error(status: int, message: str, session: Session | None, api: bool) -> Response:
        return (
            as_json(status, {"error": message})
            if api
            else html(status, pages.error_page(session, status, message))
        )

    def session_cookie(token: str, max_age: int) -> str:
        secure = "; Secure" if c.secure_cookies else ""
        return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"

    def session_of(request: Request, *, touch: bool = True) -> Session | None:
        return c.users.session(request.cookies.get(COOKIE), touch=touch)

    async def body_of(request: Request) -> dict[str, Any]:
        """A form's or a JSON object's fields; ValueError when it is neither."""
        raw = await request.body()
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind == "application/json":
            value = json.loads(raw or b"{}")
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
        return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "strict"), keep_blank_values=True).items()}

    def needed(request: Request) -> tuple[Session, bool]:
        """The request's session (a GET); Refused: 401 for the API, a redirect to the log-in page."""
        api = request.url.path.startswith("/api/")
        if c.closing:
            raise Refused(503, "the console is stopping", None, api)
        session = session_of(request)
        if session is None:
            if api:
                raise Refused(401, "log in first", None, True)
            raise Refused(303, "/login", None, False)
        return session, api

    async def posted(request: Request) -> tuple[Session, dict[str, Any], bool]:
        """A POST's session, body and CSRF token checked (the Guard checked its Origin already)."""
        api = request.url.path.startswith("/api/")
        if c.closing:
            raise Refused(503, "the console is stopping", None, api)
        session = session_of(request)
        if session is None:
            raise Refused(401, "log in first", None, True)
        try:
            body = await body_of(request)
        except (ValueError, UnicodeDecodeError) as err:
            raise Refused(400, f"bad request body: {err}", session, api) from None
        except RecursionError:
            raise Refused(400, "bad request body: nested too deeply", session, api) from None
        given = request.headers.get("x-csrf-token") or body.get("csrf")
        if not csrf_ok(session, given if isinstance(given, str) else None):
            log.warning(
                "console: POST %s without a valid CSRF token from %s", request.url.path, client(request)
            )
            raise Refused(403, "missing or wrong CSRF token: reload the page", session, api)
        return session, body, api

    @app.exception_handler(Refused)
    async def refused(request: Request, err: Refused) -> Response:
        if err.status == 403 and err.session is not None:  # a user reaching past their role: audited
            where = f"{request.method} {request.url.path}"[:200]
            route = getattr(request.scope.get("route"), "path", request.url.path)
            if c.worth_recording(f"denied:{err.session.user}:{request.method} {route}"):
                c.store.audit(err.session.user, "denied", where, str(err), client=client(request))
        if err.status == 303:
            return redirect(str(err))
        if err.status == 401:
            return as_json(401, {"error": str(err)})
        return error(err.status, str(err), err.session, err.api)

    @app.exception_handler(StarletteHTTPException)
    async def not_there(request: Request, err: StarletteHTTPException) -> Response:
        api = request.url.path.startswith("/api/")
        if err.status_code in (404, 405):
            session = session_of(request, touch=False)
            if session is None and not request.url.path.startswith("/static/"):
                if api or request.method != "GET":
                    return as_json(401, {"error": "log in first"})
                return redirect("/login")
            return error(
                err.status_code, "not found" if err.status_code == 404 else "method not allowed", session, api
            )
        return error(err.status_code, str(err.detail), None, api)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, err: BodyTooLarge) -> Response:
        return error(413, str(err), None, request.url.path.startswith("/api/"))

    @app.exception_handler(ClientDisconnect)
    async def gone(_: Request, err: ClientDisconnect) -> Response:
        return Response(status_code=400)  # the client left (or was cut off) mid-body: nobody to tell

    @app.exception_handler(SafeCityError)
    async def bad(request: Request, err: SafeCityError) -> Response:
        return error(400, str(err), None, request.url.path.startswith("/api/"))

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception) -> Response:
        if c.closing:  # its store closed under a request in flight: nothing to report
            return as_json(503, {"error": "the console is stopping"})
        log.exception("console: %s %s failed", request.method, request.url.path)
        return error(500, "internal error (logged)", None, request.url.path.startswith("/api/"))

    # -- log-in ---------------------------------------------------------------------------------
    def login_form(request: Request, message: str = "", name: str = "", status: int = 200) -> Response:
        # double-submitted: the cookie and the form must agree. One token per browser, kept: another
        # tab's (or the favicon's) visit to the log-in page does not expire this form
        token = request.cookies.get(LOGIN_COOKIE) or ""
        if not re.fullmatch(r"[A-Za-z0-9_\-]{32}", token):
            token = secrets.token_urlsafe(24)
        cookie = f"{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600"
        return html(status, pages.login_page(error=message, login_csrf=token, name=name), [cookie])

    @app.get("/login")
    def login_page(request: Request) -> Response:
        return login_form(request)

    @app.post("/login")
    async def login(request: Request) -> Response:
        try:
            body = await body_of(request)
        except (ValueError, UnicodeDecodeError):
            return login_form(request, "bad request", status=400)
        expected = request.cookies.get(LOGIN_COOKIE)
        given = body.get("csrf")
        if (
            not expected
            or not isinstance(given, str)
            or not secrets.compare_digest(expected.encode(), given.encode())
        ):
            return login_form(request, "the log-in form expired: try again", status=403)
        name, password = str(body.get("name", ""))[:64], str(body.get("password", ""))
        user_key, client_key = f"user:{name.lower()}", f"client:{client(request)}"
        pair_key = f"pair:{name.lower()}|{client(request)}"
        wait, mark = c.throttle.attempt(user_key, pair_key, client_key)
        if wait > 0:
            if c.worth_recording(user_key):  # once a minute per name: a flood fills neither disk nor log
                c.store.audit(name or "?", "login.throttled", client=client(request))
                log.warning("console: log-in for %r from %s throttled (%.0f s)", name, client(request), wait)
            return login_form(
                request, f"Too many failed log-ins: try again in {wait:.0f} s.", name, status=429
            )
        try:
            role = await _threaded(c.users.verify, name, password)  # Argon2: off the event loop
        except LoginBusy as err:
            return login_form(request, str(err), name, status=503)
        if role is None:
            c.store.audit(name or "?", "login.failed", client=client(request))
            log.warning("console: failed log-in for %r from %s", name, client(request))
            return login_form(request, "Wrong user name or password.", name, status=401)
        c.throttle.succeeded(user_key, pair_key, client_key, mark=mark)
        token, session = c.users.start_session(name, role)
        c.store.audit(name, "login", client=client(request))
        max_age = int(session.expires_at - auth._now())
        return redirect("/", [session_cookie(token, max_age), f"{LOGIN_COOKIE}=; Path=/login; Max-Age=0"])

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session, _, _ = await posted(request)
        c.users.end_session(request.cookies.get(COOKIE))
        c.store.audit(session.user, "logout", client=client(request))
        return redirect("/login", [session_cookie("", 0)])

    # -- static files and evidence ----------------------------------------------------------------
    @app.get("/static/{name}")
    def static(name: str) -> Response:
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
            return as_json(404, {"error": "not found"})
        return Response(
            path.read_bytes(), media_type=_TYPES[path.suffix], headers={"cache-control": "no-cache"}
        )

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(b"", status_code=404, media_type="text/plain")

    @app.get("/snapshots/{sha}")
    def snapshot(request: Request, sha: str) -> Response:
        session, api = needed(request)
        if not is_digest(sha):
            return error(404, "not found", session, api)
        jpeg = c.snapshot(sha)
        if jpeg is None:
            return error(404, "no such snapshot (yet)", session, api)
        return Response(jpeg, media_type="image/jpeg", headers={"cache-control": "private, max-age=86400"})

    @app.get("/clips/{sha}")
    def clip(request: Request, sha: str) -> Response:
        """An evidence clip, streamed from its file with byte ranges (browsers seek with them): the
        memory a viewer costs is a buffer, whatever the clip's size."""
        session, api = needed(request)
        path = c.clip_path(sha) if is_digest(sha) else None
        if path is None or not path.is_file():
            return error(404, "no such clip (yet)", session, False)
        return FileResponse(path, media_type="video/mp4", headers={"cache-control": "private, max-age=86400"})

    # -- pages --------------------------------------------------------------------------------------
    @app.get("/")
    def queue(request: Request) -> Response:
        session, _ = needed(request)
        return html(200, pages.queue_page(session))

    @app.get("/incidents/{source}/{incident_id}")
    def incident(request: Request, source: str, incident_id: str) -> Response:
        session, api = needed(request)
        inc = c.store.incident(source, incident_id)
        if inc is None:
            return error(404, "no such incident", session, api)
        sha = ((inc["event"].get("evidence") or {}).get("clip") or {}).get("sha256", "")
        exists = is_digest(sha) and c.clip_path(sha).exists()
        return html(200, pages.incident_page(session, inc, clip_exists=exists, notice=c.take_notice(session)))

    @app.get("/cameras")
    def cameras_page(request: Request) -> Response:
        session, _ = needed(request)
        return html(200, pages.cameras_page(session, c.store.false_alarms(since_days(7))))

    @app.get("/zones")
    def zones(request: Request) -> Response:
        session, _ = needed(request)
        cams = sorted({(x["source"], x["camera_id"]) for x in c.cameras()})
        return html(200, pages.zones_index(session, cams))

    @app.get("/zones/{source}/{camera}")
    def zone_editor(request: Request, source: str, camera: str) -> Response:
        session, _ = needed(request)
        snap = c.store.latest_snapshot(source, camera)
        push = source in c.edges and session.may("admin")
        return html(200, pages.zone_editor(session, source, camera, snap, push=push))

    @app.get("/users")
    def users_page(request: Request) -> Response:
        session, api = needed(request)
        if not session.may("admin"):
            raise Refused(403, "admins only", session, api)
        return html(200, pages.users_page(session, c.users.list(), c.take_notice(session)))

    @app.get("/audit")
    def audit_page(request: Request) -> Response:
        session, api = needed(request)
        if not session.may("admin"):
            raise Refused(403, "admins only", session, api)
        return html(200, pages.audit_page(session, c.store.audit_log(500)))

    # -- the API ------------------------------------------------------------------------------------
    @app.get("/api/incidents")
    def incidents(request: Request) -> Response:
        needed(request)
        q = {k: v for k, v in request.query_params.items()}

        def many(key: str) -> list[str] | None:
            return [v for v in q.get(key, "").split(",") if v] or None

        states = many("state")
        if states and not set(states) <= set(STATES):
            raise ConfigError(f"state: expected some of {', '.join(STATES)}")
        try:
            limit = min(max(int(q.get("limit", "200")), 1), 1000)
        except ValueError:
            raise ConfigError("limit: expected a whole number") from None
        return as_json(
            200,
            c.store.incidents(
                types=many("type"),
                severities=many("severity"),
                states=states,
                camera=q.get("camera") or None,
                edge=q.get("edge") or None,
                since=q.get("since") or None,
                until=q.get("until") or None,
                limit=limit,
            ),
        )

    @app.get("/api/incidents/{source}/{incident_id}")
    def incident_api(request: Request, source: str, incident_id: str) -> Response:
        needed(request)
        inc = c.store.incident(source, incident_id)
        return as_json(200, inc) if inc else as_json(404, {"error": "no such incident"})

    @app.get("/api/cameras")
    def cameras_api(request: Request) -> Response:
        needed(request)
        return as_json(200, c.cameras())

    @app.get("/api/false-alarms")
    def false_alarms(request: Request) -> Response:
        needed(request)
        try:
            days = float(request.query_params.get("days", "7"))
        except ValueError:
            days = float("nan")
        if not 0 <= days <= 366:  # (NaN too)
            raise ConfigError("days: expected a number of days from 0 to 366")
        return as_json(200, c.store.false_alarms(since_days(days)))

    @app.get("/api/verdicts")
    def verdicts(request: Request) -> Response:
        session, api = needed(request)
        if not session.may("operator"):
            return error(404, "not found", session, api)
        verdict = request.query_params.get("verdict") or None
        if verdict is not None and verdict not in VERDICTS.values():
            raise ConfigError(f"verdict: expected one of {', '.join(VERDICTS.values())}")
        return as_json(200, c.store.verdicts(verdict=verdict))

    @app.get("/api/me")
    def me(request: Request) -> Response:
        session, _ = needed(request)
        return as_json(200, {"user": session.user, "role": session.role})

    @app.get("/api/zones/{source}/{camera}")
    def current_zones(request: Request, source: str, camera: str) -> Response:
        """The camera's zones and lines as its edge runs them, normalised for the editor."""
        session, api = needed(request)
        if not session.may("operator"):
            return error(404, "not found", session, api)
        edge = c.edges.get(source)
        if edge is None:
            return as_json(404, {"error": f"edge {source!r} is not in the console's --edges file"})
        try:
            cfg = edge.camera(camera)
        except ConfigError as err:
            return as_json(502, {"error": str(err)})
        if cfg is None:
            return as_json(404, {"error": f"edge {source} has no camera {camera!r}"})
        drawn = cfg.get("zones_drawn_on")  # the pixels the camera's zones are in, where it says
        if isinstance(drawn, list) and len(drawn) == 2 and all(isinstance(v, int) and v > 0 for v in drawn):
            w, h = int(drawn[0]), int(drawn[1])
        else:
            w, h = c.store.frame_size(source, camera)
        return as_json(
            200,
            {"zones": normalised(cfg.get("zones") or [], "polygon", w, h),
             "lines": normalised(cfg.get("lines") or [], "points", w, h)},
        )  # fmt: skip

    @app.api_route("/api/stream", methods=["GET", "HEAD"])
    def stream(request: Request) -> Response:
        """Server-Sent Events: ``incident`` and ``camera`` changes as they happen, until the session
        ends (checked every STREAM_RECHECK_S) or the console stops."""
        needed(request)
        headers = {
            "content-type": "text/event-stream",
            "cache-control": "no-store",
            "x-accel-buffering": "no",
        }
        if request.method == "HEAD":
            return Response(b"", headers=headers)
        return StreamingResponse(_events(c, request.cookies.get(COOKIE)), headers=headers)

    # -- actions ------------------------------------------------------------------------------------
    async def act(request: Request, source: str, incident_id: str) -> Response:
        session, body, api = await posted(request)
        if not session.may("operator"):
            raise Refused(403, "viewers cannot act on incidents", session, api)
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            return error(400, "reason: expected a word (detection or behaviour)", session, api)
        action = Action(
            str(body.get("action", "")),
            str(body.get("comment") or ""),
            str(body["expected"]) if body.get("expected") else None,
            reason,
        )
        try:
            inc = c.store.act(source, incident_id, session.user, action)
        except ActionRefused as err:
            if api:
                return as_json(err.status, {"error": str(err)})
            c.notice(session, str(err))
            return redirect(pages.incident_href(source, incident_id))
        return as_json(200, inc) if api else redirect(pages.incident_href(source, incident_id))

    app.add_api_route("/incidents/{source}/{incident_id}/act", act, methods=["POST"])
    app.add_api_route("/api/incidents/{source}/{incident_id}/act", act, methods=["POST"])

    @app.post("/api/zones/push")
    async def push_zones(request: Request) -> Response:
        """The drawn zones and lines replace the camera's on its edge (admins: it changes the edge)."""
        session, body, _ = await posted(request)
        if not session.may("admin"):
            raise Refused(403, "only admins change an edge's zones", session, True)
        source, camera = str(body.get("source", "")), str(body.get("camera_id", ""))
        edge = c.edges.get(source)
        if edge is None:
            return as_json(404, {"error": f"edge {source!r} is not in the console's --edges file"})
        try:
            patch = checked(camera, body)
            status, answer = await _threaded(edge.patch_camera, camera, patch)
        except ConfigError as err:
            return as_json(400 if "cannot reach" not in str(err) else 502, {"error": str(err)})
        shapes = f"{len(patch['zones'])} zones, {len(patch['lines'])} lines"
        c.store.audit(
            session.user,
            "zones.push",
            f"{source}/{camera}",
            f"{shapes}: edge answered {status}",
            client=client(request),
        )
        if status != 200:
            message = answer.get("error", answer) if isinstance(answer, dict) else answer
            return as_json(502 if status >= 500 else 400, {"error": f"edge {source}: {message}"})
        return as_json(200, {"pushed": shapes, "edge": answer})

    @app.post("/api/zones/export")
    async def export_zones(request: Request) -> Response:
        session, body, api = await posted(request)
        if not session.may("operator"):
            raise Refused(403, "viewers cannot edit zones", session, api)
        try:
            text = export_yaml(str(body.get("camera_id", "")), body)
        except ConfigError as err:
            return as_json(400, {"error": str(err)})
        c.store.audit(session.user, "zones.export", str(body.get("camera_id", "")), client=client(request))
        return as_json(200, {"yaml": text})

    def notice(session: Session, text: str, where: str) -> Response:
        c.notice(session, text)
        return redirect(where)

    @app.post("/users")
    async def add_user(request: Request) -> Response:
        session, body, api = await posted(request)
        if not session.may("admin"):
            raise Refused(403, "admins only", session, api)
        try:  # Argon2 and the strength estimate take tens of milliseconds: off the event loop
            await _threaded(
                c.users.add,
                str(body.get("name", "")),
                str(body.get("role", "")),
                str(body.get("password", "")),
                by=session.user,
            )
        except ConfigError as err:
            return notice(session, str(err), "/users")
        return notice(session, f"added {body.get('name')}", "/users")

    @app.post("/users/{name}")
    async def change_user(request: Request, name: str) -> Response:
        session, body, api = await posted(request)
        if not session.may("admin"):
            raise Refused(403, "admins only", session, api)
        try:
            what = body.get("do")
            if what == "role":
                c.users.set_role(name, str(body.get("role", "")), by=session.user)
            elif what in ("disable", "enable"):
                if name == session.user:
                    raise ConfigError("you cannot disable yourself")
                c.users.set_disabled(name, what == "disable", by=session.user)
            elif what == "unlock":  # failed log-ins forgotten: the user may try again at once
                c.throttle.clear(name)
                c.store.audit(session.user, "user.unlock", name, client=client(request))
            else:
                raise ConfigError("expected do=role, disable, enable or unlock")
        except ConfigError as err:
            return notice(session, str(err), "/users")
        return notice(session, f"changed {name}", "/users")

    return app


async def _events(c: Console, cookie: str | None) -> AsyncIterator[bytes]:
    """The SSE stream of one browser: changes as the feed sees them, a keep-alive when there are
    none, ``logout`` when its session ends; it ends with the console. It waits on the event loop
    (the feed looked at four times a second), never holding a thread: a hundred open consoles cost
    no more than one."""
    feed = c.feed
    after = feed.latest
    checked_at = time.monotonic()
    yield b"retry: 2000\nevent: hello\ndata: {}\n\n"
    while not feed.stop_event.is_set() and not c.closing:
        changes = feed.wait(after, 0)
        quiet_until = time.monotonic() + STREAM_KEEPALIVE_S
        while not changes and time.monotonic() < quiet_until and not c.closing:
            await asyncio.sleep(0.25)
            changes = feed.wait(after, 0)
        out = []
        if changes and changes[0][0] > after + 1:  # it fell behind what the feed keeps: start over
            out.append(f"id: {changes[-1][0]}\nevent: reload\ndata: {{}}\n\n")
            after, changes = changes[-1][0], []
        for number, kind, data in changes:
            after = number
            out.append(f"id: {number}\nevent: {kind}\ndata: {json.dumps(data, default=str)}\n\n")
        if time.monotonic() - checked_at > STREAM_RECHECK_S:
            checked_at = time.monotonic()
            if c.users.session(cookie, touch=False) is None:
                yield b"event: logout\ndata: {}\n\n"
                return
        yield ("".join(out) or ": keep-alive\n\n").encode()


async def _threaded(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A blocking call (a password hash, an edge's answer) off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)
