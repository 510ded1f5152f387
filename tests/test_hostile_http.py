"""Both HTTP surfaces, the edge's control interface and the ICCC console, as a hostile client and a
crowd would use them: a thousand clients at once, clients that stall half-way, bodies that are
truncated, huge or nested without end, foreign Host and Origin headers, every route with each role
and with none, and the memory a console costs while big clips stream.

What each test asserts is an answer (or a closed connection), never a wall time: the p99 of the
crowd is printed for the record (``pytest -s``)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from pipeline import web
from pipeline.config import load_config
from pipeline.control import ControlServer
from pipeline.runner import Runner

from .iccc import Client, Iccc
from .util import free_port, scripted, write_config

CROWD = 1000


@dataclass
class Surface:
    """One HTTP surface: where it listens, and the headers that make a request of its most
    privileged client (a control token; an admin's session and CSRF token)."""

    name: str
    port: int
    auth: dict[str, str]
    get_path: str  # a GET any authorised client may make: 200
    post_path: str  # a POST that reads a JSON body

    def raw(self, head: str, body: bytes = b"", *, host: str | None = None) -> bytes:
        lines = [head, f"Host: {f'127.0.0.1:{self.port}' if host is None else host}"]
        lines += [f"{k}: {v}" for k, v in self.auth.items()]
        return ("\r\n".join(lines) + "\r\n").encode() + body


def control_surface(tmp_path: Path, clip: Path, *, run: bool = False) -> Iterator[Surface]:
    detections = scripted(tmp_path / "s.jsonl", [], ["person"], 0)
    sink = {
        "endpoint": f"tcp://127.0.0.1:{free_port()}",
        "outbox": str(tmp_path / "o.sqlite"),
        "insecure": True,
    }
    cfg = write_config(
        tmp_path / "edge.yaml",
        cameras=[{"id": "a", "source": str(clip), "loop": True}],
        model={"backend": "scripted", "scripted_detections": str(detections)},
        sink=sink,
    )
    runner = Runner(load_config(cfg))
    control = ControlServer(runner, "127.0.0.1:0")
    control.start()
    try:
        yield Surface(
            "control", control.port, {"Authorization": f"Bearer {control.token}"}, "/cameras", "/cameras"
        )
    finally:
        control.close()


def console_surface(tmp_path: Path) -> Iterator[Surface]:
    iccc = Iccc(tmp_path, free_port())
    try:
        admin = iccc.client("admin")
        cookie = "; ".join(f"{c.name}={c.value}" for c in admin.jar)
        auth = {"Cookie": cookie, "X-CSRF-Token": admin.csrf}
        yield Surface("console", int(iccc.url.rsplit(":", 1)[1]), auth, "/api/me", "/api/zones/export")
    finally:
        iccc.close()


@pytest.fixture(params=["control", "console"])
def surface(request: pytest.FixtureRequest, tmp_path: Path, clips: list[Path]) -> Iterator[Surface]:
    made = control_surface(tmp_path, clips[0]) if request.param == "control" else console_surface(tmp_path)
    yield from made


async def _ask(port: int, data: bytes, timeout: float) -> tuple[int | None, float]:
    """One request on its own connection: the status it got (None: none) and how long it took."""
    began = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(data)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        writer.close()
    except (OSError, asyncio.TimeoutError):
        return None, time.perf_counter() - began
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", line)
    return (int(m.group(1)) if m else None), time.perf_counter() - began


def test_a_thousand_clients_at_once_are_all_answered(surface: Surface) -> None:
    """The listen backlog was 5: 93 of 200 console clients and 61 of 200 control clients got no
    answer within 30 s. Now a burst of a thousand connections, all at once, is answered whole."""
    request = surface.raw(f"GET {surface.get_path} HTTP/1.1") + b"Connection: close\r\n\r\n"

    async def crowd() -> list[tuple[int | None, float]]:
        return await asyncio.gather(*(_ask(surface.port, request, 60.0) for _ in range(CROWD)))

    answers = asyncio.run(crowd())
    statuses = [s for s, _ in answers]
    assert statuses.count(200) == CROWD, {s: statuses.count(s) for s in set(statuses)}
    took = sorted(t for _, t in answers)
    print(
        f"\n{surface.name}: {CROWD} clients at once, all answered 200: "
        f"p50 {took[CROWD // 2] * 1000:.0f} ms, p99 {took[int(CROWD * 0.99)] * 1000:.0f} ms, "
        f"slowest {took[-1] * 1000:.0f} ms"
    )


def test_stalled_clients_are_cut_off_and_hold_nobody_up(
    surface: Surface, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Half a request line, half the headers, a body shorter than its Content-Length: each such
    connection is closed once it has owed the same part for a check period, and meanwhile every
    other client is answered. Nothing of it is an error in the log."""
    monkeypatch.setattr(web, "READ_DEADLINE_S", 0.5)  # (read when each connection is made)
    caplog.set_level(logging.WARNING)
    stalls = [
        b"",
        b"GET / HT",
        surface.raw(f"GET {surface.get_path} HTTP/1.1"),  # the blank line never comes
        surface.raw(f"POST {surface.post_path} HTTP/1.1")
        + b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"id": ',
    ]
    stalled = []
    for data in stalls * 25:
        s = socket.create_connection(("127.0.0.1", surface.port))
        s.sendall(data)
        stalled.append(s)
    try:
        ok = Client(f"http://127.0.0.1:{surface.port}")
        status, _, _ = ok.request("GET", surface.get_path, headers=surface.auth)
        assert status == 200  # answered while a hundred connections stall
        closed = 0
        for s in stalled:
            s.settimeout(10.0)
            try:
                got = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                continue
            closed += got == b"" or got.startswith(b"HTTP/1.1 4")
        assert closed == len(stalled)
    finally:
        for s in stalled:
            s.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


def test_huge_truncated_and_deeply_nested_bodies_get_a_4xx_and_no_traceback(
    surface: Surface, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    json_head = f"POST {surface.post_path} HTTP/1.1"

    def ask(data: bytes) -> int | None:
        return asyncio.run(_ask(surface.port, data, 30.0))[0]

    def post(body: bytes, *, length: int | None = None, kind: str = "application/json") -> bytes:
        size = len(body) if length is None else length
        return (
            surface.raw(json_head) + f"Content-Type: {kind}\r\nContent-Length: {size}\r\n\r\n".encode() + body
        )

    deep = b"[" * 30000 + b"]" * 30000  # 60 KB: under the size limit, past any parser's recursion
    assert ask(post(deep)) == 400
    assert ask(post(b'{"a": ' * 9000 + b"1" + b"}" * 9000)) == 400
    assert ask(post(b"\xff\xfe not utf-8")) in (400, 415)
    assert ask(post(b"{}", length=50 * 1024 * 1024)) == 413  # says it is huge: refused unread
    chunked = surface.raw(json_head) + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"x" * 65536
    streamed = chunked + (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * 32 + b"0\r\n\r\n"  # 2 MiB
    assert ask(streamed) == 413  # streams past the limit without saying so
    # cut off mid-body: the client is gone, nothing to answer and nothing to log
    s = socket.create_connection(("127.0.0.1", surface.port))
    s.sendall(post(b'{"id": "x"', length=400))
    s.close()
    time.sleep(0.5)
    # malformed HTTP itself
    assert ask(b"GARBAGE\r\n\r\n") == 400
    assert ask(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 200_000 + b"\r\n\r\n") in (
        400,
        431,
        None,
    )
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]
    assert ask(surface.raw(f"GET {surface.get_path} HTTP/1.1") + b"Connection: close\r\n\r\n") == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io:{port}", "localhost.evil.example", ""]
)
def test_a_foreign_host_is_refused_before_any_route(surface: Surface, host: str) -> None:
    """DNS rebinding: a page on evil.example whose name now points at the edge. Every route, with
    valid credentials even, answers 421 (or 400 for no Host at all)."""
    request = surface.raw(f"GET {surface.get_path} HTTP/1.1", host=host.format(port=surface.port))
    status = asyncio.run(_ask(surface.port, request + b"Connection: close\r\n\r\n", 10.0))[0]
    assert status in ((400, 421) if not host else (421,))


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1", "file://"])
def test_a_post_from_another_origin_is_refused(surface: Surface, origin: str) -> None:
    body = json.dumps({"id": "x", "source": "rtsp://10.0.0.1/1", "camera_id": "a"}).encode()
    request = (
        surface.raw(f"POST {surface.post_path} HTTP/1.1")
        + (
            f"Origin: {origin}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
    )
    assert asyncio.run(_ask(surface.port, request + body, 10.0))[0] == 403


# -- every route, each role ---------------------------------------------------------------------------
# What each role gets from each route of the console: "ok" is any answer of the route itself (2xx,
# 3xx to a page, or a 4xx about the dummy request: 400, 404, 409, 502), "deny" 403, "login" 401 for the
# API and POSTs or a redirect to /login for pages. A route missing from this table fails the test: a new
# route gets its row before it ships.
ROLES = ("none", "viewer", "operator", "admin")
CONSOLE_ROUTES = {
    ("GET", "/login"): ("ok", "ok", "ok", "ok"),
    ("POST", "/login"): ("form", "form", "form", "form"),  # its own CSRF cookie: 403 without it
    ("POST", "/logout"): ("login", "ok", "ok", "ok"),
    ("GET", "/static/{name}"): ("ok", "ok", "ok", "ok"),
    ("GET", "/favicon.ico"): ("ok", "ok", "ok", "ok"),
    ("GET", "/snapshots/{sha}"): ("login", "ok", "ok", "ok"),
    ("GET", "/clips/{sha}"): ("login", "ok", "ok", "ok"),
    ("GET", "/"): ("login", "ok", "ok", "ok"),
    ("GET", "/incidents/{source}/{incident_id}"): ("login", "ok", "ok", "ok"),
    ("GET", "/cameras"): ("login", "ok", "ok", "ok"),
    ("GET", "/zones"): ("login", "ok", "ok", "ok"),
    ("GET", "/zones/{source}/{camera}"): ("login", "ok", "ok", "ok"),
    ("GET", "/users"): ("login", "deny", "deny", "ok"),
    ("GET", "/audit"): ("login", "deny", "deny", "ok"),
    ("GET", "/api/incidents"): ("login", "ok", "ok", "ok"),
    ("GET", "/api/incidents/{source}/{incident_id}"): ("login", "ok", "ok", "ok"),
    ("GET", "/api/cameras"): ("login", "ok", "ok", "ok"),
    ("GET", "/api/false-alarms"): ("login", "ok", "ok", "ok"),
    ("GET", "/api/verdicts"): ("login", "ok", "ok", "ok"),
    ("GET", "/api/me"): ("login", "ok", "ok", "ok"),
    ("GET", "/api/zones/{source}/{camera}"): ("login", "ok", "ok", "ok"),
    ("GET", "/api/stream"): ("login", "ok", "ok", "ok"),
    ("POST", "/incidents/{source}/{incident_id}/act"): ("login", "deny", "ok", "ok"),
    ("POST", "/api/incidents/{source}/{incident_id}/act"): ("login", "deny", "ok", "ok"),
    ("POST", "/api/zones/push"): ("login", "deny", "deny", "ok"),
    ("POST", "/api/zones/export"): ("login", "deny", "ok", "ok"),
    ("POST", "/users"): ("login", "deny", "deny", "ok"),
    ("POST", "/users/{name}"): ("login", "deny", "deny", "ok"),
}
DUMMY = {
    "name": "nobody", "sha": "0" * 64, "source": "edge-1", "incident_id": "x", "camera": "cam-1",
}  # fmt: skip


def _routes(app: object) -> set[tuple[str, str]]:
    out = set()
    for r in app.routes:  # type: ignore[attr-defined]
        for method in getattr(r, "methods", None) or ():
            if method != "HEAD":
                out.add((method, r.path))
    return out


def _verdict(method: str, path: str, status: int, location: str | None) -> str:
    if method == "POST" and path == "/login":
        return "form" if status == 403 else f"HTTP {status}"
    if status == 401 or (status == 303 and location == "/login"):
        return "login"
    if status == 403:
        return "deny"
    return "ok" if status < 500 else f"HTTP {status}"


def test_every_console_route_answers_each_role_as_its_table_says(tmp_path: Path) -> None:
    from pipeline.console.server import build_app

    iccc = Iccc(tmp_path, free_port())
    try:
        assert _routes(build_app(iccc.console)) == set(CONSOLE_ROUTES), "a route without its row in the table"
        users = {"viewer": "viewer", "operator": "oper", "admin": "admin"}
        clients = {"none": Client(iccc.url)} | {role: iccc.client(name) for role, name in users.items()}
        body = {"action": "acknowledge", "camera_id": "cam-1", "zones": [], "lines": []}
        wrong = []
        for (method, path), expected in CONSOLE_ROUTES.items():
            url = "/static/app.js" if path == "/static/{name}" else path.format(**DUMMY)
            for role, want in zip(ROLES, expected, strict=True):
                if path == "/logout" and role != "none":
                    continue  # (it would end the session the rest of the table uses)
                c = clients[role]
                status, headers, _ = c.request(
                    "HEAD" if path == "/api/stream" else method,  # (the stream itself never ends)
                    url,
                    body=body if method == "POST" else None,
                    headers={"X-CSRF-Token": c.csrf} if c.csrf else {},
                )
                got = _verdict(method, path, status, headers.get("Location"))
                if got != want:
                    wrong.append(f"{method} {url} as {role}: HTTP {status}, expected {want}")
        assert wrong == []
    finally:
        iccc.close()


def test_every_control_route_needs_the_token(tmp_path: Path, clips: list[Path]) -> None:
    """No route of the edge answers without its token, or with another; each answers with it."""
    from types import SimpleNamespace

    from pipeline.control import build_app

    routes = _routes(build_app(SimpleNamespace(token="unused")))  # type: ignore[arg-type]
    assert len(routes) >= 12
    for s in control_surface(tmp_path, clips[0], run=True):  # (running: its previews have frames)
        base = f"http://127.0.0.1:{s.port}"
        wrong = []
        for method, path in sorted(routes, key=lambda r: (r[0] == "DELETE", r)):  # (camera a gone last)
            url = path.replace("{cid}", "a").replace("{key}", "nothing").replace("{kind}", "mjpeg?frames=1")
            for headers, want in (
                ({}, 401),
                ({"Authorization": "Bearer " + "x" * 43}, 401),
                ({"Authorization": s.auth["Authorization"].lower()}, 401),
                (s.auth, None),
            ):
                try:
                    status, _, _ = Client(base).request(
                        method, url, body={} if method in ("POST", "PATCH") else None, headers=headers
                    )
                except TimeoutError:
                    status = 0
                if (want is not None and status != want) or (want is None and status in (401, 403, 500)):
                    wrong.append(f"{method} {url} with {headers or 'nothing'}: HTTP {status}")
        assert wrong == []


def test_memory_stays_bounded_while_eight_viewers_stream_a_big_clip(tmp_path: Path) -> None:
    """A clip was read whole per request: eight viewers of a 300 MB clip took the console from 0.9
    to 3.3 GB. Streamed from its file, eight slow viewers of a 256 MB clip cost a few buffers."""
    iccc = Iccc(tmp_path, free_port())
    try:
        sha = "cd" * 32
        path = iccc.console.clip_path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        size = 256 * 1024 * 1024
        with open(path, "wb") as f:
            f.truncate(size)  # sparse: no disk, but every byte is read and sent
        viewer = iccc.client("viewer")
        cookie = "; ".join(f"{c.name}={c.value}" for c in viewer.jar)
        proc = psutil.Process()
        before = proc.memory_info().rss
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], proc.memory_info().rss)

        def watch(received: list[int]) -> None:
            s = socket.create_connection(("127.0.0.1", int(iccc.url.rsplit(":", 1)[1])))
            s.sendall(
                f"GET /clips/{sha} HTTP/1.1\r\nHost: {iccc.url.split('//')[1]}\r\nCookie: {cookie}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            total = 0
            while chunk := s.recv(1 << 20):
                total += len(chunk)
                if total < 32 * 1024 * 1024:
                    time.sleep(0.01)  # slow at first: the server must hold back, not buffer ahead
            s.close()
            received.append(total)

        received: list[int] = []
        threads = [threading.Thread(target=sample)] + [
            threading.Thread(target=watch, args=(received,)) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads[1:]:
            t.join(300)
        done.set()
        threads[0].join()
        assert len(received) == 8 and all(r > size for r in received)  # each got it whole (and headers)
        grew = (peak[0] - before) / 2**20
        print(f"\nconsole: 8 viewers of a {size >> 20} MB clip: memory grew {grew:.0f} MB at most")
        assert grew < 200  # (a whole copy each would be 2 GB)
    finally:
        iccc.close()
