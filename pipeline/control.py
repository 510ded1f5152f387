"""The control interface of a running edge: health, cameras changed live, models swapped live (HTTP + JSON).

    GET    /health           liveness and readiness (200 ready, 503 not), for systemd and Kubernetes
    GET    /cameras          each camera: its config, state and counts
    POST   /cameras          add a camera (its config, as under ``cameras:``)
    PATCH  /cameras/{id}     change some of a camera's settings (zones, rules, schedule, rate ...)
    DELETE /cameras/{id}     remove a camera (its open incidents end: ``camera_removed``)
    POST   /reload           read the config file again and apply what changed in its cameras
    GET    /cameras/{id}/preview.mjpeg   the camera live with what the pipeline sees drawn on it
                             (MJPEG, at most 5 frames/s; ``?frames=N`` ends after N frames)
    GET    /cameras/{id}/preview.jpg     one such frame
    GET    /models           each detector: the version it runs, and a swap on probation
    POST   /models/{id}      swap detector {id} for another version live: {"name": "fall-yolov8@2"} (or
                             "path"), checked first (classes, export, warm-up, latency; 409 refused)
    POST   /models/{id}/rollback   take back the swap on probation
    POST   /models/{id}/shadow     run another model beside detector {id} on a share of the batches,
                             recorded, never sent: {"name": "fall-yolov8@2", "share": 0.25}
    DELETE /models/{id}/shadow     stop it (``safecity models shadow-report`` reads what it recorded)

A change is checked as the config loader checks a file and refused whole with its one-line error
(400); it is applied between batches, and cameras it does not name never pause. Bound to loopback
it needs nothing; bound elsewhere every request needs ``Authorization: Bearer TOKEN`` (the token
file's content). Changes made here are not written back to the config file: a reload returns to it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config
from .detect.swap import SwapRefused
from .errors import ConfigError
from .live import camera_dicts, with_cameras

if TYPE_CHECKING:
    from .config import ModelConfig
    from .runner import Runner

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
PREVIEW_PATH = re.compile(r"/cameras/(?P<id>[A-Za-z0-9_.\-]{1,64})/preview\.(?P<kind>mjpeg|jpg)")
MODEL_PATH = re.compile(r"/models/(?P<id>[A-Za-z0-9_.\-]{1,64})(?:/(?P<action>rollback|shadow))?")
PREVIEW_WAIT_S = 10.0  # a watched camera with no frame drawn for this long ends its stream
PREVIEW_SEND_TIMEOUT_S = 10.0  # a viewer that takes no frame for this long is let go
BOUNDARY = "safecity-frame"


def _frames_asked(path: str) -> int | None:
    """``?frames=N`` on a preview request: how many frames to send before ending (None: no end)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    raw = query.get("frames", [""])[0]
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or int(raw) < 1:
        raise ConfigError(f"frames={raw[:20]!r}: expected a number of frames, 1 to 999999999")
    return int(raw)


def parse_bind(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ConfigError saying what is wrong."""
    host, sep, port = spec.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--control {spec!r}: expected HOST:PORT, e.g. 127.0.0.1:8089")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: Path, option: str = "--control-token-file") -> str:
    """A shared secret from a file (a control token, a webhook's HMAC key): 16 characters at least."""
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{option} {path}: cannot read it: {getattr(err, 'strerror', None) or err}"
        ) from None
    if len(token) < 16:
        raise ConfigError(f"{option} {path}: the secret is under 16 characters")
    return token


class ControlServer:
    """Serves the control interface for ``runner`` on its own threads; ``reload_config`` reads the
    config file again (with the command line's overrides)."""

    def __init__(
        self,
        runner: Runner,
        bind: str,
        *,
        token_file: Path | None = None,
        reload_config: Callable[[], Config] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        host, port = parse_bind(bind)
        if token_file is None and not is_loopback(host):
            raise ConfigError(
                f"--control {bind}: bound beyond loopback it needs --control-token-file (a secret shared "
                "with its clients)"
            )
        self.runner = runner
        self.token = read_token(token_file) if token_file else None
        self.reload_config = reload_config
        self.base_dir = base_dir  # relative camera sources are relative to the config file, as at load
        handler = type("Handler", (_Handler,), {"control": self})
        family = {"address_family": socket.AF_INET6} if ":" in host else {}
        self.httpd = type("Server", (ThreadingHTTPServer,), family)((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://{host}:{self.port}" if ":" not in host else f"http://[{host}]:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="control", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("control interface on %s", self.url)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- what the requests do -------------------------------------------------------------
    def health(self) -> tuple[int, dict[str, Any]]:
        r = self.runner
        states = [c.state for c in list(r.stats.cameras.values())]
        up = sum(s == "up" for s in states)
        ready = r.error is None and not r.stop_event.is_set() and r.running
        body = {
            "live": r.error is None,
            "ready": ready,
            "error": None if r.error is None else str(r.error),
            "cameras": {"total": len(states), "up": up, "down": len(states) - up},
            "outbox_writable": r.publisher.writable,
            "sink_connected": r.sender.connected,
        }
        return (200 if ready else 503), body

    def cameras(self) -> list[dict[str, Any]]:
        r = self.runner
        out = []
        for cam in list(r.cfg.cameras):
            c = r.stats.cameras.get(cam.id)
            out.append(
                {
                    "id": cam.id,
                    "state": c.state if c else "stopped",
                    "decoded": c.decoded if c else 0,
                    "analysed": c.analysed if c else 0,
                    "dropped": c.dropped if c else 0,
                    "incidents": c.incidents if c else 0,
                    "behind": c.behind if c else False,
                    "config": _redacted(cam.model_dump(mode="json", exclude_unset=True)),
                }
            )
        return out

    def change(
        self, what: str, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Apply ``edit`` to the running camera list: read, checked whole and applied under the
        runner's change lock (ConfigError: refused, nothing changed)."""

        def new(cfg: Config) -> Config:
            return with_cameras(cfg, edit(camera_dicts(cfg)), source=what, base_dir=self.base_dir)

        return self.runner.apply(new).summary()

    def _model(self, what: str, key: str, body: Any) -> ModelConfig:
        """The model a request's body names for detector ``key``: its other settings the running one's."""
        from .config import ModelConfig

        r = self.runner
        if not isinstance(body, dict) or not ({"name", "path"} & set(body)) or "id" in body:
            raise ConfigError(
                f'{what}: the body must be a JSON object naming the model: {{"name": "NAME@N"}} '
                'or {"path": "model.onnx"} (and any other model settings; not id)'
            )
        running = next((m for m in r.cfg.models if m.key == key), None)
        if running is None:
            raise ModelNotFound(key, [m.key for m in r.cfg.models])
        settings = running.model_dump(exclude={"name", "path", "precision", "id"}, exclude_unset=True)
        try:
            return ModelConfig.model_validate({**settings, **body, "id": key})
        except ValueError as err:
            raise ConfigError(f"{what}: {err}") from None

    def swap(self, key: str, body: Any) -> dict[str, Any]:
        """Swap detector ``key`` for the model ``body`` names."""
        return self.runner.swap_model(key, self._model(f"POST /models/{key}", key, body))

    def shadow(self, key: str, body: Any) -> dict[str, Any]:
        """Run the model ``body`` names (and ``share``, default 0.25) in the shadow of detector ``key``."""
        what = f"POST /models/{key}/shadow"
        share = body.pop("share", 0.25) if isinstance(body, dict) else 0.25
        if not isinstance(share, (int, float)) or isinstance(share, bool):
            raise ConfigError(f"{what}: share: got {share!r}; expected a number, 0 < share <= 1")
        return self.runner.start_shadow(key, self._model(what, key, body), float(share))

    def reload(self) -> dict[str, Any]:
        if self.reload_config is None:
            raise ConfigError("POST /reload: this edge was not started from a config file")
        return self.runner.apply(self.reload_config()).summary()


class ModelNotFound(Exception):
    def __init__(self, key: str, keys: list[str]) -> None:
        super().__init__(f"no detector {key!r} (detectors: {', '.join(keys)})")


def _patched(cid: str, patch: dict[str, Any]) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """The camera list with camera ``cid``'s settings in ``patch`` replaced (each key whole)."""

    def edit(cams: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**x, **patch} if x["id"] == cid else x for x in cams]

    return edit


def _redacted(cam: dict[str, Any]) -> dict[str, Any]:
    from .urls import redact

    if "source" in cam:
        cam["source"] = redact(cam["source"])
    return cam


def request(
    url: str, method: str, body: Any = None, *, token: str | None = None, timeout_s: float = 30.0
) -> tuple[int, Any]:
    """One call to a control interface: (HTTP status, decoded JSON body). ``safecity cameras``."""
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw or b"null")
        except json.JSONDecodeError:
            return err.code, {"error": raw.decode(errors="replace")[:200]}
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(f"cannot reach the control interface at {url}: {reason}") from None


class _Handler(BaseHTTPRequestHandler):
    control: ControlServer
    server_version = "safecity-control"
    timeout = 30  # a client that stalls mid-request does not hold a thread for ever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("control: " + format, *args)

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body, indent=1).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        token = self.control.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
        self._send(401, {"error": "a valid Authorization: Bearer token is needed"})
        return False

    def _body(self) -> Any:
        raw_n = self.headers.get("Content-Length") or "0"
        if not (raw_n.isascii() and raw_n.isdigit()):
            raise ConfigError(f"Content-Length {raw_n!r} is not a number of bytes")
        n = int(raw_n)
        if n > MAX_BODY:
            raise ConfigError(f"request body of {n} bytes is over {MAX_BODY}")
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"null")
        except json.JSONDecodeError as err:
            raise ConfigError(f"request body is not JSON: {err.msg} (line {err.lineno})") from None
        except UnicodeDecodeError:
            raise ConfigError("request body is not UTF-8 JSON") from None
        except RecursionError:
            raise ConfigError("request body is nested too deeply") from None

    def _preview(self, cid: str, kind: str, frames: int | None) -> None:
        """The camera's annotated frames, as they are drawn: one JPEG, or an MJPEG stream (multipart/
        x-mixed-replace, as browsers and players show it) until the viewer leaves or the camera goes."""
        watch = self.control.runner.watch
        if not watch.join(cid):
            self._send(503, {"error": "too many viewers already; try again later"})
            return
        try:
            self.connection.settimeout(PREVIEW_SEND_TIMEOUT_S)  # a viewer that stops reading is let go
            got = self._next_frame(cid, 0)
            if got is None:
                self._send(503, {"error": f"camera {cid!r} has no analysed frame to show (is it up?)"})
                return
            self.send_response(200)
            if kind == "jpg":
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(got[1])))
                self.end_headers()
                self.wfile.write(got[1])
                return
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.close_connection = True
            sent = 0
            while got is not None:
                seq, jpeg = got
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                self.wfile.flush()
                sent += 1
                if frames is not None and sent >= frames:
                    break
                got = self._next_frame(cid, seq)
        finally:
            watch.leave(cid)

    def _next_frame(self, cid: str, after: int) -> tuple[int, bytes] | None:
        """The camera's next drawn frame; None when none comes within ``PREVIEW_WAIT_S`` or the camera
        is removed meanwhile (looked at every second)."""
        runner = self.control.runner
        deadline = time.monotonic() + PREVIEW_WAIT_S
        while time.monotonic() < deadline:
            if cid not in {cam.id for cam in runner.cfg.cameras}:
                return None
            got = runner.watch.next_jpeg(cid, after, 1.0)
            if got is not None:
                return got
        return None

    def _camera_id(self) -> str | None:
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        return parts[1] if len(parts) == 2 and parts[0] == "cameras" and parts[1] else None

    def _route(self, method: str) -> None:
        if not self._authorised():
            return
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        c = self.control
        try:
            if method == "GET" and path == "/health":
                self._send(*c.health())
            elif method == "GET" and path == "/cameras":
                self._send(200, {"cameras": c.cameras()})
            elif method == "POST" and path == "/cameras":
                body = self._body()
                if not isinstance(body, dict):
                    raise ConfigError("POST /cameras: the body must be one camera (a JSON object)")
                self._send(201, c.change("POST /cameras", lambda cams: [*cams, body]))
            elif method in ("PATCH", "DELETE") and (cid := self._camera_id()) is not None:
                if cid not in {cam.id for cam in c.runner.cfg.cameras}:
                    self._send(404, {"error": f"no camera {cid!r}"})
                elif method == "DELETE":
                    self._send(
                        200,
                        c.change(f"DELETE /cameras/{cid}", lambda cams: [x for x in cams if x["id"] != cid]),
                    )
                else:
                    patch = self._body()
                    if not isinstance(patch, dict) or "id" in patch:
                        raise ConfigError(
                            f"PATCH /cameras/{cid}: the body must be a JSON object of settings (not id)"
                        )
                    self._send(200, c.change(f"PATCH /cameras/{cid}", _patched(cid, patch)))
            elif method == "POST" and path == "/reload":
                self._send(200, c.reload())
            elif method == "GET" and path == "/models":
                shadow = c.runner.shadow
                self._send(200, {"models": c.runner.swaps.state(), "shadow": shadow and shadow.summary()})
            elif method == "POST" and (m := MODEL_PATH.fullmatch(path)) is not None:
                if m["action"] == "rollback":
                    self._send(200, c.runner.swaps.rollback(m["id"]))
                elif m["action"] == "shadow":
                    self._send(201, c.shadow(m["id"], self._body()))
                else:
                    self._send(200, c.swap(m["id"], self._body()))
            elif (
                method == "DELETE"
                and (m := MODEL_PATH.fullmatch(path)) is not None
                and m["action"] == "shadow"
            ):
                self._send(200, c.runner.stop_shadow(m["id"]))
            elif method == "GET" and (m := PREVIEW_PATH.fullmatch(path)) is not None:
                if m["id"] not in {cam.id for cam in c.runner.cfg.cameras}:
                    self._send(404, {"error": f"no camera {m['id']!r}"})
                else:
                    self._preview(m["id"], m["kind"], _frames_asked(self.path))
            else:
                known = path in ("/health", "/cameras", "/reload", "/models") or self._camera_id() is not None
                known = (
                    known
                    or PREVIEW_PATH.fullmatch(path) is not None
                    or MODEL_PATH.fullmatch(path) is not None
                )
                self._send(405 if known else 404, {"error": f"no {method} {path}"})
        except ModelNotFound as err:
            self._send(404, {"error": str(err)})
        except SwapRefused as err:
            self._send(409, {"error": str(err)})
        except ConfigError as err:
            self._send(400, {"error": str(err)})
        except RecursionError:
            self._send(400, {"error": "the request is nested too deeply"})
        except OSError as err:  # the client stalled past the timeout or went away: nothing to answer
            log.debug("control: %s %s: %s", method, path, err)
            self.close_connection = True
        except Exception as err:  # noqa: BLE001 - a request must not take the edge down
            log.exception("control: %s %s failed", method, path)
            self._send(500, {"error": f"{type(err).__name__}: {err}"})

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_PUT(self) -> None:  # noqa: N802 - answered (405) in JSON like every other request
        self._route("PUT")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._route("OPTIONS")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("HEAD")
