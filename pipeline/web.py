"""The HTTP surfaces' common ground (the edge's control interface, and the console as it moves):
an ASGI app served by uvicorn on a thread of its own, behind a guard that answers what must never
reach a route, before any of it is read:

- a ``Host`` that is not one the server answers to (DNS rebinding): 421;
- an ``Origin`` from anywhere but the server itself (a web page posting cross-site): 403;
- a body over the limit, whether it says so (``Content-Length``) or streams past it: 413;
- a body that is not JSON where JSON is expected (``json_only``): 415.

uvicorn brings what ``http.server`` lacked: a real listen backlog (2,048), keep-alive timeouts,
bounded headers, concurrency on an event loop instead of a thread per connection. What it lacks, a
deadline on reading a request (a client that sends half its headers, or a body shorter than its
``Content-Length``, would hold its connection for ever), ``_ReadDeadline`` adds.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BACKLOG = 2048
READ_DEADLINE_S = 10.0  # a request's headers, and its body, each within this (up to twice it)
MAX_CONNECTIONS = 4096  # open at once; more are answered 503 at once (uvicorn's limit_concurrency)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def send_json(send: Send, status: int, body: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """A whole JSON answer from ASGI, without a framework (the guard answers before any route)."""
    data = json.dumps(body).encode() + b"\n"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class BodyTooLarge(Exception):
    """A request body went past the limit while it was read."""


class Guard:
    """ASGI middleware: Host, Origin, body size and (``json_only``) Content-Type, checked first.

    ``hosts``: the ``Host`` values the server answers to (``host:port``, lower case); ``origins``:
    the ``Origin`` values allowed (its own, for a browser-facing server; none for an API)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hosts: set[str],
        origins: set[str],
        max_body: int,
        json_only: bool = False,
        any_numeric: bool = False,
    ) -> None:
        """``any_numeric``: also answer ``Host`` values that are IP addresses (a server bound to every
        interface: its addresses are not known here, and a numeric host cannot be rebound)."""
        self.app = app
        self.any_numeric = any_numeric
        self.hosts = {h.lower() for h in hosts}
        self.origins = {o.lower() for o in origins}
        self.max_body = max_body
        self.json_only = json_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if host not in self.hosts and not (self.any_numeric and numeric_host(host)):
            await send_json(send, 421, {"error": "unknown host: this server answers to its own address only"})
            return
        origin = headers.get(b"origin")
        if origin is not None and origin.decode("latin-1").lower() not in self.origins:
            await send_json(send, 403, {"error": "cross-origin request refused"})
            return
        method = scope.get("method", "GET")
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if length is not None and not length.isdigit():
            await send_json(send, 400, {"error": "Content-Length is not a number of bytes"})
            return
        n = int(length) if length is not None else 0
        if n > self.max_body:
            await send_json(send, 413, {"error": f"the request body is over {self.max_body} bytes"})
            return
        has_body = n > 0 or chunked
        if has_body and method not in BODY_METHODS:
            await send_json(send, 400, {"error": f"a {method} request takes no body"})
            return
        if has_body and self.json_only:
            kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if kind != b"application/json":
                await send_json(
                    send, 415, {"error": "the body must be JSON (Content-Type: application/json)"}
                )
                return
        await self.app(scope, self._limited(receive), send)

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(f"the request body is over {self.max_body} bytes")
            return message

        return limited


def loopback_hosts(host: str, port: int, names: Iterable[str] = ()) -> set[str]:
    """The ``Host`` values a server bound to ``host:port`` answers to: its own address, every loopback
    name when bound to loopback, and ``names`` (the names it is reached by, ``NAME`` or ``NAME:PORT``)."""
    import ipaddress

    out = {f"[{host}]:{port}" if ":" in host else f"{host}:{port}"}
    try:
        loop = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loop = False
    if loop:
        out |= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
    for name in names:
        name = name.strip().lower()
        bare_ipv6 = name.count(":") > 1 and not name.startswith("[")
        has_port = not bare_ipv6 and name.rsplit(":", 1)[-1].isdigit() and ":" in name
        out.add(name if has_port else f"[{name}]:{port}" if bare_ipv6 else f"{name}:{port}")
    return out


def numeric_host(value: str) -> bool:
    """Whether a ``Host`` value names an IP address (``10.0.4.11:8089``, ``[fd00::5]:8089``): such a
    host cannot be rebound by DNS, so a server bound to every interface may answer it."""
    import ipaddress

    host = value.rsplit(":", 1)[0] if not value.endswith("]") else value
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _read_deadline_protocol() -> type:
    """uvicorn's HTTP/1.1 protocol, with a connection closed when, at two checks in a row, its client
    owed the same part of a request (the headers, or the body), or had read nothing of what it was
    sent (its answers wait, paused, for a client that never reads them): slow clients cannot pile up."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class _ReadDeadline(H11Protocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._owed: tuple[Any, Any] | None = None
            self._drained = 0  # how often the client's reading let a paused answer go on
            self._seen: tuple[bool, int] = (False, 0)
            self._watch = self.loop.call_later(READ_DEADLINE_S, self._check)

        def resume_writing(self) -> None:
            self._drained += 1
            super().resume_writing()

        def _check(self) -> None:
            if self.transport.is_closing():
                return
            owed = (self.conn.their_state, self.cycle)
            sending = owed[0] in (h11.IDLE, h11.SEND_BODY) and owed == self._owed
            reading = self.flow.write_paused and self._seen == (True, self._drained)
            if sending or reading:
                log.debug(
                    "closing a connection whose client %s",
                    "sent no whole request" if sending else "reads nothing",
                )
                self.transport.close()
                return
            self._owed, self._seen = owed, (self.flow.write_paused, self._drained)
            self._watch = self.loop.call_later(READ_DEADLINE_S, self._check)

        def connection_lost(self, exc: Exception | None) -> None:
            self._watch.cancel()
            super().connection_lost(exc)

    return _ReadDeadline


class Served:
    """An ASGI app served by uvicorn on its own thread, on a socket bound here (so a port of 0 is
    known at once, and a port that cannot be taken is an error before anything starts)."""

    def __init__(self, app: ASGIApp, host: str, port: int, *, name: str, what: str) -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as err:
            self.sock.close()
            from .errors import ConfigError

            raise ConfigError(f"{what}: cannot listen on {host}:{port}: {err.strerror or err}") from None
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=BACKLOG,
            http=_read_deadline_protocol(),
            proxy_headers=False,  # (else a loopback client names its own address in X-Forwarded-For)
            limit_concurrency=MAX_CONNECTIONS,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=3,
            h11_max_incomplete_event_size=64 * 1024,  # headers
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except Exception:  # noqa: BLE001 - logged; the owner sees the server gone
            log.exception("%s: the HTTP server stopped", self._thread.name)

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout_s)
        self.sock.close()
