"""The console's HTTP server: pages, the JSON API, the live event stream (Server-Sent Events), the
evidence (snapshots from the sink's store, clips from its clip folder). Every page and API needs a
session; every POST needs the session's CSRF token (and a same-origin Origin when one is sent)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from prometheus_client import CollectorRegistry

from ..control import is_loopback, parse_bind
from ..errors import ConfigError, SafeCityError
from ..events.clip_store import SUFFIX, clips_dir, is_digest
from ..events.store import Db, StoreTarget, local_file, open_reader
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
        self.store = ConsoleStore(console_db)
        self._registry = registry
        self._collector = register(self.store, registry) if registry is not None else None
        self.users = Users(self.store)
        self.throttle = Throttle()
        self.feed = Feed(sink_db, self.store)
        handler = type("Handler", (_Handler,), {"console": self})
        family = {"address_family": socket.AF_INET6} if ":" in host else {}
        try:
            self.httpd = type("Server", (ThreadingHTTPServer,), family)((host, port), handler)
        except OSError as err:
            self.store.close()
            raise ConfigError(f"console: cannot listen on {bind}: {err.strerror or err}") from None
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://{host}:{self.port}" if ":" not in host else f"http://[{host}]:{self.port}"
        self.hosts = {urlsplit(self.url).netloc}
        if is_loopback(host):
            self.hosts |= {f"{h}:{self.port}" for h in ("localhost", "127.0.0.1", "[::1]")}
        self.secure_cookies = False
        if public_url:
            u = urlsplit(public_url)
            if u.scheme not in ("http", "https") or not u.netloc:
                raise ConfigError(f"--public-url {public_url!r}: expected http(s)://HOST[:PORT]")
            self.hosts.add(u.netloc)
            self.secure_cookies = u.scheme == "https"
        self.closing = False
        self._notices: dict[str, str] = {}  # session's CSRF token -> a message for its next page
        self._throttle_logged: dict[str, float] = {}
        if not is_loopback(host):
            log.warning("console listening beyond loopback (%s): put TLS in front of it", self.url)
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="console", daemon=True)

    def start(self) -> None:
        self.feed.start()
        self._thread.start()
        log.info("console on %s", self.url)

    def close(self) -> None:
        self.closing = True
        self.feed.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
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

    def note_throttled(self, key: str) -> bool:
        """Whether a throttled log-in for ``key`` is worth recording (once a minute per key)."""
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
        a PostgreSQL connection is not made again for every snapshot and camera poll."""
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
            db.close()  # (it may be what failed)
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


class _Handler(BaseHTTPRequestHandler):
    console: Console
    server_version = "safecity-console"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that stalls (slow body, idle keep-alive, a stream it stopped reading) is dropped
    _consumed = True  # the request's body has been read (or it had none)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("console %s %s", self.address_string(), format % args)

    # -- plumbing -------------------------------------------------------------------------
    def _cookies(self) -> SimpleCookie:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except CookieError:
            pass
        return jar

    def _cookie(self, name: str) -> str | None:
        morsel = self._cookies().get(name)
        return None if morsel is None else morsel.value

    def _session(self, *, touch: bool = True) -> Session | None:
        return self.console.users.session(self._cookie(COOKIE), touch=touch)

    def _respond(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        cookies: list[str] | None = None,
    ) -> None:
        self.send_response(status)
        if not self._consumed:  # a body left unread would be taken for the next request: close instead
            self.close_connection = True
            self.send_header("Connection", "close")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "same-origin")
        if "Cache-Control" not in (headers or {}):
            self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        for c in cookies or []:
            self.send_header("Set-Cookie", c)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _html(self, status: int, html: str, cookies: list[str] | None = None) -> None:
        self._respond(status, html.encode(), "text/html; charset=utf-8", cookies=cookies)

    def _json(self, status: int, value: Any) -> None:
        self._respond(status, pages.to_json(value), "application/json")

    def _redirect(self, where: str, cookies: list[str] | None = None) -> None:
        self._respond(303, b"", "text/plain", {"Location": where}, cookies)

    def _notice(self, session: Session, text: str, where: str) -> None:
        self.console.notice(session, text)
        self._redirect(where)

    def _error(self, status: int, message: str, session: Session | None, api: bool) -> None:
        if api:
            self._json(status, {"error": message})
        else:
            self._html(status, pages.error_page(session, status, message))

    def _body(self) -> dict[str, Any]:
        """A form's or a JSON body's fields; ValueError when it is too big or not either."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise ValueError("chunked bodies are not accepted: send Content-Length")
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError(f"the request body is over {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b""
        self._consumed = True
        kind = self.headers.get("Content-Type", "").split(";")[0].strip()
        if kind == "application/json":
            value = json.loads(raw or b"{}")
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
        return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "strict"), keep_blank_values=True).items()}

    def _same_origin(self) -> bool:
        origin = self.headers.get("Origin")
        if origin is None:  # browsers send it with every POST; other clients carry the CSRF token
            return True
        return origin in (f"http://{self.headers.get('Host', '')}", f"https://{self.headers.get('Host', '')}")

    def _client(self) -> str:
        return str(self.client_address[0])

    def _session_cookie(self, token: str, max_age: int) -> str:
        secure = "; Secure" if self.console.secure_cookies else ""
        return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"

    # -- routing ----------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._route("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def _route(self, method: str) -> None:
        length = self.headers.get("Content-Length", "0").strip()
        self._consumed = "Transfer-Encoding" not in self.headers and length in ("", "0")
        if self.console.closing:
            self._consumed = False
            return self._respond(503, b"the console is stopping\n", "text/plain")
        if self.headers.get("Host") not in self.console.hosts:  # DNS rebinding, or a wrong --public-url
            self._consumed = False
            return self._respond(
                421, b"unknown host: the console answers to its own address only\n", "text/plain"
            )
        url = urlsplit(self.path)
        path = url.path
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        api = path.startswith("/api/")
        try:
            if path.startswith("/static/") and method == "GET":
                return self._static(path[len("/static/") :])
            if path == "/favicon.ico":
                return self._respond(404, b"", "text/plain")
            if path == "/login":
                return self._login_form() if method == "GET" else self._login()
            session = self._session()
            if session is None:
                if api or method != "GET":
                    return self._json(401, {"error": "log in first"})
                return self._redirect("/login")
            if method == "POST":
                if not self._same_origin():
                    return self._error(403, "cross-origin request refused", session, api)
                try:
                    body = self._body()
                except (ValueError, UnicodeDecodeError) as err:
                    return self._error(400, f"bad request body: {err}", session, api)
                given = self.headers.get("X-CSRF-Token") or body.get("csrf")
                if not csrf_ok(session, given if isinstance(given, str) else None):
                    log.warning("console: POST %s without a valid CSRF token from %s", path, self._client())
                    return self._error(403, "missing or wrong CSRF token: reload the page", session, api)
                return self._post(session, parts, body, api)
            return self._get(session, parts, url.query, api)
        except (BrokenPipeError, ConnectionResetError):
            return
        except SafeCityError as err:
            self._error(400, str(err), None, api)
        except Exception:
            if self.console.closing:  # its store closed under a request in flight: nothing to report
                return
            log.exception("console: %s %s failed", method, path)
            self._error(500, "internal error (logged)", None, api)

    def _get(self, session: Session, parts: list[str], query: str, api: bool) -> None:
        c = self.console
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        match parts:
            case []:
                return self._html(200, pages.queue_page(session))
            case ["incidents", source, incident_id]:
                inc = c.store.incident(source, incident_id)
                if inc is None:
                    return self._error(404, "no such incident", session, api)
                clip = ((inc["event"].get("evidence") or {}).get("clip") or {}).get("sha256", "")
                exists = is_digest(clip) and c.clip_path(clip).exists()
                return self._html(
                    200, pages.incident_page(session, inc, clip_exists=exists, notice=c.take_notice(session))
                )
            case ["cameras"]:
                return self._html(200, pages.cameras_page(session, c.store.false_alarms(since_days(7))))
            case ["api", "false-alarms"]:
                try:
                    days = float(q.get("days", "7"))
                except ValueError:
                    days = float("nan")
                if not 0 <= days <= 366:  # (NaN too)
                    raise ConfigError("days: expected a number of days from 0 to 366")
                return self._json(200, c.store.false_alarms(since_days(days)))
            case ["api", "verdicts"] if session.may("operator"):
                verdict = q.get("verdict") or None
                if verdict is not None and verdict not in VERDICTS.values():
                    raise ConfigError(f"verdict: expected one of {', '.join(VERDICTS.values())}")
                return self._json(200, c.store.verdicts(verdict=verdict))
            case ["zones"]:
                cams = sorted({(x["source"], x["camera_id"]) for x in c.cameras()})
                return self._html(200, pages.zones_index(session, cams))
            case ["zones", source, camera]:
                snapshot = c.store.latest_snapshot(source, camera)
                push = source in c.edges and session.may("admin")
                return self._html(200, pages.zone_editor(session, source, camera, snapshot, push=push))
            case ["api", "zones", source, camera] if session.may("operator"):
                return self._current_zones(source, camera)
            case ["users"] if session.may("admin"):
                return self._html(200, pages.users_page(session, c.users.list(), c.take_notice(session)))
            case ["audit"] if session.may("admin"):
                return self._html(200, pages.audit_page(session, c.store.audit_log(500)))
            case ["users"] | ["audit"]:
                return self._error(403, "admins only", session, api)
            case ["snapshots", sha] if is_digest(sha):
                jpeg = c.snapshot(sha)
                if jpeg is None:
                    return self._error(404, "no such snapshot (yet)", session, api)
                return self._respond(200, jpeg, "image/jpeg", {"Cache-Control": "private, max-age=86400"})
            case ["clips", sha] if is_digest(sha):
                return self._clip(c.clip_path(sha), session)
            case ["api", "incidents"]:
                return self._json(200, self._incidents(q))
            case ["api", "incidents", source, incident_id]:
                inc = c.store.incident(source, incident_id)
                return self._json(200, inc) if inc else self._json(404, {"error": "no such incident"})
            case ["api", "cameras"]:
                return self._json(200, c.cameras())
            case ["api", "stream"]:
                return self._stream()
            case ["api", "me"]:
                return self._json(200, {"user": session.user, "role": session.role})
        return self._error(404, "not found", session, api)

    def _incidents(self, q: dict[str, str]) -> list[dict[str, Any]]:
        def many(key: str) -> list[str] | None:
            return [v for v in q.get(key, "").split(",") if v] or None

        states = many("state")
        if states and not set(states) <= set(STATES):
            raise ConfigError(f"state: expected some of {', '.join(STATES)}")
        try:
            limit = min(max(int(q.get("limit", "200")), 1), 1000)
        except ValueError:
            raise ConfigError("limit: expected a whole number") from None
        return self.console.store.incidents(
            types=many("type"),
            severities=many("severity"),
            states=states,
            camera=q.get("camera") or None,
            edge=q.get("edge") or None,
            since=q.get("since") or None,
            until=q.get("until") or None,
            limit=limit,
        )

    def _post(self, session: Session, parts: list[str], body: dict[str, Any], api: bool) -> None:
        c = self.console
        match parts:
            case ["logout"]:
                c.users.end_session(self._cookie(COOKIE))
                c.store.audit(session.user, "logout", client=self._client())
                return self._redirect("/login", [self._session_cookie("", 0)])
            case ["incidents", source, incident_id, "act"] | ["api", "incidents", source, incident_id, "act"]:
                if not session.may("operator"):
                    return self._error(403, "viewers cannot act on incidents", session, api)
                reason = body.get("reason", "")
                if not isinstance(reason, str):
                    return self._error(400, "reason: expected a word (detection or behaviour)", session, api)
                act = Action(
                    str(body.get("action", "")),
                    str(body.get("comment") or ""),
                    str(body["expected"]) if body.get("expected") else None,
                    reason,
                )
                try:
                    inc = c.store.act(source, incident_id, session.user, act)
                except ActionRefused as err:
                    if api:
                        return self._json(err.status, {"error": str(err)})
                    href = pages.incident_href(source, incident_id)
                    c.notice(session, str(err))
                    return self._redirect(href)
                if api:
                    return self._json(200, inc)
                return self._redirect(pages.incident_href(source, incident_id))
            case ["api", "zones", "push"]:
                return self._push_zones(session, body)
            case ["api", "zones", "export"]:
                if not session.may("operator"):
                    return self._error(403, "viewers cannot edit zones", session, api)
                try:
                    text = export_yaml(str(body.get("camera_id", "")), body)
                except ConfigError as err:
                    return self._json(400, {"error": str(err)})
                c.store.audit(
                    session.user, "zones.export", str(body.get("camera_id", "")), client=self._client()
                )
                return self._json(200, {"yaml": text})
            case ["users"] if session.may("admin"):
                try:
                    c.users.add(
                        str(body.get("name", "")),
                        str(body.get("role", "")),
                        str(body.get("password", "")),
                        by=session.user,
                    )
                except ConfigError as err:
                    return self._notice(session, str(err), "/users")
                return self._notice(session, f"added {body.get('name')}", "/users")
            case ["users", name] if session.may("admin"):
                try:
                    what = body.get("do")
                    if what == "role":
                        c.users.set_role(name, str(body.get("role", "")), by=session.user)
                    elif what in ("disable", "enable"):
                        if name == session.user:
                            raise ConfigError("you cannot disable yourself")
                        c.users.set_disabled(name, what == "disable", by=session.user)
                    else:
                        raise ConfigError("expected do=role, disable or enable")
                except ConfigError as err:
                    return self._notice(session, str(err), "/users")
                return self._notice(session, f"changed {name}", "/users")
            case ["users"] | ["users", _]:
                return self._error(403, "admins only", session, api)
        return self._error(404, "not found", session, api)

    # -- zones on the edges -----------------------------------------------------------------------
    def _current_zones(self, source: str, camera: str) -> None:
        """The camera's zones and lines as its edge runs them, normalised for the editor."""
        edge = self.console.edges.get(source)
        if edge is None:
            return self._json(404, {"error": f"edge {source!r} is not in the console's --edges file"})
        try:
            cfg = edge.camera(camera)
        except ConfigError as err:
            return self._json(502, {"error": str(err)})
        if cfg is None:
            return self._json(404, {"error": f"edge {source} has no camera {camera!r}"})
        drawn = cfg.get("zones_drawn_on")  # the pixels the camera's zones are in, where it says
        if isinstance(drawn, list) and len(drawn) == 2 and all(isinstance(v, int) and v > 0 for v in drawn):
            w, h = int(drawn[0]), int(drawn[1])
        else:
            w, h = self.console.store.frame_size(source, camera)
        return self._json(
            200,
            {"zones": normalised(cfg.get("zones") or [], "polygon", w, h),
             "lines": normalised(cfg.get("lines") or [], "points", w, h)},
        )  # fmt: skip

    def _push_zones(self, session: Session, body: dict[str, Any]) -> None:
        """The drawn zones and lines replace the camera's on its edge (admins: it changes the edge)."""
        if not session.may("admin"):
            return self._json(403, {"error": "only admins change an edge's zones"})
        source, camera = str(body.get("source", "")), str(body.get("camera_id", ""))
        edge = self.console.edges.get(source)
        if edge is None:
            return self._json(404, {"error": f"edge {source!r} is not in the console's --edges file"})
        try:
            patch = checked(camera, body)
            status, answer = edge.patch_camera(camera, patch)
        except ConfigError as err:
            return self._json(400 if "cannot reach" not in str(err) else 502, {"error": str(err)})
        shapes = f"{len(patch['zones'])} zones, {len(patch['lines'])} lines"
        detail = f"{shapes}: edge answered {status}"
        self.console.store.audit(
            session.user, "zones.push", f"{source}/{camera}", detail, client=self._client()
        )
        if status != 200:
            error = answer.get("error", answer) if isinstance(answer, dict) else answer
            return self._json(502 if status >= 500 else 400, {"error": f"edge {source}: {error}"})
        return self._json(200, {"pushed": shapes, "edge": answer})

    # -- log-in ---------------------------------------------------------------------------------
    def _login_form(self, error: str = "", name: str = "", status: int = 200) -> None:
        # double-submitted: the cookie and the form must agree. One token per browser, kept: another
        # tab's (or the favicon's) visit to the log-in page does not expire this form
        token = self._cookie(LOGIN_COOKIE) or ""
        if not re.fullmatch(r"[A-Za-z0-9_\-]{32}", token):
            token = secrets.token_urlsafe(24)
        cookie = f"{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600"
        self._html(status, pages.login_page(error=error, login_csrf=token, name=name), [cookie])

    def _login(self) -> None:
        c = self.console
        try:
            body = self._body()
        except (ValueError, UnicodeDecodeError):
            return self._login_form("bad request", status=400)
        expected = self._cookie(LOGIN_COOKIE)
        given = body.get("csrf")
        if (
            not self._same_origin()
            or not expected
            or not isinstance(given, str)
            or not secrets.compare_digest(expected.encode(), given.encode())
        ):
            return self._login_form("the log-in form expired: try again", status=403)
        name, password = str(body.get("name", ""))[:64], str(body.get("password", ""))
        user_key, client_key = f"user:{name.lower()}", f"client:{self._client()}"
        wait, mark = c.throttle.attempt(user_key, client_key)
        if wait > 0:
            if c.note_throttled(user_key):  # once a minute per name: a flood fills neither disk nor log
                c.store.audit(name or "?", "login.throttled", client=self._client())
                log.warning("console: log-in for %r from %s throttled (%.0f s)", name, self._client(), wait)
            self._login_form(f"Too many failed log-ins: try again in {wait:.0f} s.", name, status=429)
            return
        try:
            role = c.users.verify(name, password)
        except LoginBusy as err:
            return self._login_form(str(err), name, status=503)
        if role is None:
            c.store.audit(name or "?", "login.failed", client=self._client())
            log.warning("console: failed log-in for %r from %s", name, self._client())
            return self._login_form("Wrong user name or password.", name, status=401)
        c.throttle.succeeded(user_key, client_key, mark=mark)
        token, session = c.users.start_session(name, role)
        c.store.audit(name, "login", client=self._client())
        max_age = int(session.expires_at - auth._now())
        self._redirect(
            "/", [self._session_cookie(token, max_age), f"{LOGIN_COOKIE}=; Path=/login; Max-Age=0"]
        )

    # -- content ----------------------------------------------------------------------------------
    def _static(self, name: str) -> None:
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
            return self._json(404, {"error": "not found"})
        self._respond(200, path.read_bytes(), _TYPES[path.suffix], {"Cache-Control": "no-cache"})

    def _clip(self, path: Path, session: Session) -> None:
        """An evidence clip, with byte ranges (browsers seek in a video with them)."""
        try:
            f = path.open("rb")
        except OSError:
            return self._error(404, "no such clip (yet)", session, False)
        with f:
            size = os.fstat(f.fileno()).st_size
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
            if not (m and (m.group(1) or m.group(2))):
                return self._respond(200, f.read(), "video/mp4", {"Accept-Ranges": "bytes"})
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start, end = max(size - int(m.group(2)), 0), size - 1
            if start >= size or start > end:
                return self._respond(416, b"", "video/mp4", {"Content-Range": f"bytes */{size}"})
            f.seek(start)
            headers = {"Content-Range": f"bytes {start}-{end}/{size}", "Accept-Ranges": "bytes"}
            self._respond(206, f.read(end - start + 1), "video/mp4", headers)

    def _stream(self) -> None:
        """Server-Sent Events: ``incident`` and ``camera`` changes as they happen, until the session
        ends (checked every STREAM_RECHECK_S) or the console stops."""
        feed = self.console.feed
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        if self.command == "HEAD":
            return
        self.close_connection = True
        after = feed.latest
        checked = time.monotonic()
        self.wfile.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
        self.wfile.flush()
        while not feed.stop_event.is_set():
            changes = feed.wait(after, STREAM_KEEPALIVE_S)
            out = []
            if changes and changes[0][0] > after + 1:  # it fell behind what the feed keeps: start over
                out.append(f"id: {changes[-1][0]}\nevent: reload\ndata: {{}}\n\n")
                after, changes = changes[-1][0], []
            for number, kind, data in changes:
                after = number
                out.append(f"id: {number}\nevent: {kind}\ndata: {json.dumps(data, default=str)}\n\n")
            if time.monotonic() - checked > STREAM_RECHECK_S:
                checked = time.monotonic()
                if self._session(touch=False) is None:
                    self.wfile.write(b"event: logout\ndata: {}\n\n")
                    return
            self.wfile.write(("".join(out) or ": keep-alive\n\n").encode())
            self.wfile.flush()
