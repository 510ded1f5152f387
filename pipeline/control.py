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
    POST   /models/{id}      swap detector {id} for a registered version live: {"name": "fall-yolov8@2"},
                             checked first (its files' digests, classes, export, warm-up, latency; 409)
    POST   /models/{id}/rollback   take back the swap on probation
    POST   /models/{id}/shadow     run a registered version beside detector {id} on a share of the
                             batches, recorded, never sent: {"name": "fall-yolov8@2", "share": 0.25}
    DELETE /models/{id}/shadow     stop it (``safecity models shadow-report`` reads what it recorded)
    GET    /openapi.json     this API, described for integrators (OpenAPI 3)

Every request needs ``Authorization: Bearer TOKEN``: the token is made at the first start (a file of
mode 600; ``--control-token-file`` says where, else ``control.token`` in the data folder) and the
CLI client (``safecity cameras``) reads it there. Requests with another ``Host`` than the interface's
own (DNS rebinding), with an ``Origin`` (a web page), with a body that is not JSON or is over 1 MiB
are refused before anything is read (``web.Guard``). A model is never loaded from a path a client
gives: swaps and shadows name a version of the local registry, whose files must match the digests
it recorded. A camera a client adds or changes may read files only under the config's
``sources.roots`` and URLs only of ``sources.schemes``; anything else is "refused", whatever it is.

A change is checked as the config loader checks a file and refused whole with its one-line error
(400); it is applied between batches, and cameras it does not name never pause. Changes made here
are not written back to the config file: a reload returns to it. Served by FastAPI on uvicorn.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .config import Config, CredentialsConfig
from .detect.swap import SwapRefused
from .errors import ConfigError
from .live import camera_dicts, with_cameras
from .web import BodyTooLarge, Guard, Served, loopback_hosts

if TYPE_CHECKING:
    from .config import ModelConfig
    from .runner import Runner

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
PREVIEW_WAIT_S = 10.0  # a watched camera with no frame drawn for this long ends its stream
BOUNDARY = "safecity-frame"
ID = r"^[A-Za-z0-9_.\-]{1,64}$"
VERSION = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}@[1-9][0-9]{0,5}$"
TOKEN_FILE = "control.token"


def parse_bind(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ConfigError saying what is wrong."""
    host, sep, port = spec.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--control {spec!r}: expected HOST:PORT, e.g. 127.0.0.1:8089")
    return host, int(port)


def is_loopback(host: str) -> bool:
    import ipaddress

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


def default_token_path() -> Path:
    """Where an edge keeps its control token when no ``--control-token-file`` says:
    ``$SAFECITY_CONTROL_TOKEN_FILE``, else ``control.token`` in the data folder (``$SAFECITY_DATA``),
    where the CLI client and the Kubernetes probes look for it too."""
    from .registry import data_dir

    given = os.environ.get("SAFECITY_CONTROL_TOKEN_FILE")
    return Path(given) if given else data_dir() / TOKEN_FILE


def ensure_token(path: Path) -> str:
    """The token in ``path``; made there (mode 600, a new folder 700) when there is none yet."""
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it just now
        except OSError as err:
            raise ConfigError(f"control token {path}: cannot make it: {err.strerror or err}") from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"control token {path}: readable by others (mode {mode:o}); make it private: chmod 600 {path}"
        )
    return read_token(path)


class SwapBody(BaseModel):
    """What a swap names: a version of the local registry (never a path, a backend or settings)."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(pattern=VERSION, description="a registered version, NAME@N")]


class ShadowBody(SwapBody):
    share: Annotated[float, Field(gt=0, le=1, description="the share of batches it runs on")] = 0.25


def _version_model(running: ModelConfig, key: str, body: SwapBody) -> ModelConfig:
    """The running detector's settings with its model replaced by the registered version ``body``
    names (the swap checks its files against the registry's digests before loading anything)."""
    from .config import ModelConfig

    settings = running.model_dump(exclude={"name", "path", "precision", "id"}, exclude_unset=True)
    return ModelConfig.model_validate({**settings, "name": body.name, "id": key})


def _frames_asked(raw: str | None) -> int | None:
    """``?frames=N`` on a preview request: how many frames to send before ending (None: no end)."""
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or int(raw) < 1:
        raise ConfigError(f"frames={raw[:20]!r}: expected a number of frames, 1 to 999999999")
    return int(raw)


class ControlServer:
    """Serves the control interface for ``runner`` on its own thread; ``reload_config`` reads the
    config file again (with the command line's overrides)."""

    def __init__(
        self,
        runner: Runner,
        bind: str,
        *,
        token_file: Path | None = None,
        reload_config: Callable[[], Config] | None = None,
        base_dir: Path | None = None,
        hosts: list[str] | None = None,
    ) -> None:
        """``hosts``: the names clients reach it by beyond its address (``--control-host``); bound to
        every interface (0.0.0.0, ::) it also answers any IP address."""
        host, port = parse_bind(bind)
        self.runner = runner
        self.token_path = token_file if token_file is not None else default_token_path()
        self.token = ensure_token(self.token_path)
        self.reload_config = reload_config
        self.base_dir = base_dir  # relative camera sources are relative to the config file, as at load
        # a web page never talks to this interface: no Origin is allowed; the Host must be its own
        wildcard = host in ("0.0.0.0", "::")
        self._guard = Guard(
            build_app(self),
            hosts=set(),
            origins=set(),
            max_body=MAX_BODY,
            json_only=True,
            any_numeric=wildcard,
        )
        self._served = Served(self._guard, host, port, name="control", what="--control")
        self.port = self._served.port
        self._guard.hosts = loopback_hosts(host, self.port, hosts or [])
        self.url = f"http://{host}:{self.port}" if ":" not in host else f"http://[{host}]:{self.port}"

    def start(self) -> None:
        self._served.start()
        log.info("control interface on %s (token in %s)", self.url, self.token_path)

    def close(self) -> None:
        self._served.close()

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
        """Apply ``edit`` to the running camera list: read, checked whole (a source a client may not
        give refused) and applied under the runner's change lock (ConfigError: refused, nothing
        changed)."""

        def new(cfg: Config) -> Config:
            before = {c.id: (c.source, c.credentials) for c in cfg.cameras}
            out = with_cameras(cfg, edit(camera_dicts(cfg)), source=what, base_dir=self.base_dir)
            for cam in out.cameras:
                if before.get(cam.id) != (cam.source, cam.credentials):  # a client's choice: the policy
                    allowed_source(cfg, cam.source, what=f"{what}: camera {cam.id}")
                    if cam.credentials is not None:
                        allowed_credentials(cfg, cam.credentials, what=f"{what}: camera {cam.id}")
            return out

        return self.runner.apply(new).summary()

    def model(self, key: str, body: SwapBody) -> ModelConfig:
        running = next((m for m in self.runner.cfg.models if m.key == key), None)
        if running is None:
            raise ModelNotFound(key, [m.key for m in self.runner.cfg.models])
        return _version_model(running, key, body)

    def reload(self) -> dict[str, Any]:
        if self.reload_config is None:
            raise ConfigError("POST /reload: this edge was not started from a config file")
        return self.runner.apply(self.reload_config()).summary()

    def preview(self, cid: str, kind: str, frames: int | None) -> tuple[int, Any]:
        """The camera's annotated frames: (status, one JPEG or an iterator of MJPEG parts)."""
        watch = self.runner.watch
        if not watch.join(cid):
            return 503, {"error": "too many viewers already; try again later"}
        try:
            got = self._next_frame(cid, 0)
        except BaseException:
            watch.leave(cid)
            raise
        if got is None:
            watch.leave(cid)
            return 503, {"error": f"camera {cid!r} has no analysed frame to show (is it up?)"}
        if kind == "jpg":
            watch.leave(cid)
            return 200, got[1]
        return 200, self._mjpeg(cid, got, frames)

    def _mjpeg(self, cid: str, got: tuple[int, bytes] | None, frames: int | None) -> Iterator[bytes]:
        sent = 0
        try:
            while got is not None:
                seq, jpeg = got
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                yield head.encode() + jpeg + b"\r\n"
                sent += 1
                if frames is not None and sent >= frames:
                    break
                got = self._next_frame(cid, seq)
        finally:
            self.runner.watch.leave(cid)

    def _next_frame(self, cid: str, after: int) -> tuple[int, bytes] | None:
        """The camera's next drawn frame; None when none comes within ``PREVIEW_WAIT_S`` or the camera
        is removed meanwhile (looked at every second)."""
        runner = self.runner
        deadline = time.monotonic() + PREVIEW_WAIT_S
        while time.monotonic() < deadline:
            if cid not in {cam.id for cam in runner.cfg.cameras}:
                return None
            got = runner.watch.next_jpeg(cid, after, 1.0)
            if got is not None:
                return got
        return None


def allowed_source(cfg: Config, source: str, *, what: str) -> None:
    """A camera source a control client gives: a file only under ``sources.roots``, a URL only of
    ``sources.schemes``. Decided on the name alone, before anything is opened, and refused in the
    same words whatever the reason: a client learns nothing of the edge's files."""
    from .urls import scheme

    policy = cfg.sources
    s = scheme(source)
    streams = ", ".join(policy.schemes) or "no scheme"
    files = " and files under the edge's source folders" if policy.roots else ""
    refused = ConfigError(f"{what}: source refused (a control client may give streams of {streams}{files})")
    if s is not None and s != "file":
        if s not in policy.schemes:
            raise refused
        return
    path = source[len("file://") :] if s == "file" else source
    if not _under(path, policy.roots):
        raise refused


def allowed_credentials(cfg: Config, creds: CredentialsConfig, *, what: str) -> None:
    """A camera password a control client points to: a file only under ``sources.secrets``, never
    an environment variable (the edge's own, PGPASSWORD among them, would go to the client's camera)."""
    refused = ConfigError(
        f"{what}: credentials refused (a control client may name password files under the edge's "
        "secret folders only)"
    )
    if creds.password_file is None or not _under(str(creds.password_file), cfg.sources.secrets):
        raise refused


def _under(path: str, roots: list[Path]) -> bool:
    """``path`` is absolute, names no '..', and is in one of ``roots`` (links followed: a link in a
    root to a file outside it is outside)."""
    target = os.path.normpath(path)
    if not os.path.isabs(target) or ".." in Path(target).parts:
        return False
    for root in roots:
        base = os.path.normpath(str(root))
        if os.path.commonpath([base, target]) == base and os.path.realpath(target).startswith(
            os.path.realpath(base) + os.sep
        ):
            return True
    return False


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


def build_app(c: ControlServer) -> FastAPI:
    """The routes, with the token checked on each (a dependency) and errors answered as JSON."""

    def authorised(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {c.token}".encode()):
            raise HTTPException(401, "a valid Authorization: Bearer token is needed")

    app = FastAPI(
        title="safecity edge control",
        version="1",
        description=(__doc__ or "").split("\n\n")[0],
        dependencies=[Depends(authorised)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind the token like every other route
    )

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers={"cache-control": "no-store"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return error(err.status_code, str(err.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        said = [
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg', 'invalid')}"
            for e in err.errors()[:3]
        ]
        return error(400, f"{request.method} {request.url.path}: {'; '.join(said) or 'invalid'}")

    @app.exception_handler(ConfigError)
    async def refused(_: Request, err: ConfigError) -> JSONResponse:
        return error(400, str(err))

    @app.exception_handler(ModelNotFound)
    async def not_found(_: Request, err: ModelNotFound) -> JSONResponse:
        return error(404, str(err))

    @app.exception_handler(SwapRefused)
    async def swap_refused(_: Request, err: SwapRefused) -> JSONResponse:
        return error(409, str(err))

    @app.exception_handler(BodyTooLarge)
    async def too_large(_: Request, err: BodyTooLarge) -> JSONResponse:
        return error(413, str(err))

    @app.exception_handler(RecursionError)
    async def too_deep(_: Request, err: RecursionError) -> JSONResponse:
        return error(400, "the request is nested too deeply")

    @app.exception_handler(ClientDisconnect)
    async def gone(_: Request, err: ClientDisconnect) -> Response:
        return Response(status_code=400)  # the client left (or was cut off) mid-body: nobody to tell

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception) -> JSONResponse:
        log.exception("control: %s %s failed", request.method, request.url.path)
        return error(500, "internal error (logged on the edge)")

    async def json_body(request: Request, what: str) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw or b"null")
        except json.JSONDecodeError as err:
            raise ConfigError(f"{what}: the body is not JSON: {err.msg} (line {err.lineno})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{what}: the body is not UTF-8 JSON") from None
        except RecursionError:
            raise ConfigError(f"{what}: the body is nested too deeply") from None

    def known(cid: str) -> None:
        if cid not in {cam.id for cam in c.runner.cfg.cameras}:
            raise HTTPException(404, f"no camera {cid!r}")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/health", summary="liveness and readiness (200 ready, 503 not)")
    def health() -> JSONResponse:
        status, body = c.health()
        return JSONResponse(body, status_code=status)

    @app.get("/cameras", summary="each camera: its config (passwords hidden), state and counts")
    def cameras() -> dict[str, Any]:
        return {"cameras": c.cameras()}

    @app.post("/cameras", status_code=201, summary="add a camera (its config, as under cameras:)")
    async def add(request: Request) -> JSONResponse:
        body = await json_body(request, "POST /cameras")
        if not isinstance(body, dict):
            raise ConfigError("POST /cameras: the body must be one camera (a JSON object)")
        reply = await _threaded(c.change, "POST /cameras", lambda cams: [*cams, body])
        return JSONResponse(reply, status_code=201)

    @app.patch("/cameras/{cid}", summary="change some of a camera's settings (each key whole)")
    async def patch(cid: Annotated[str, PathParam(pattern=ID)], request: Request) -> dict[str, Any]:
        known(cid)
        body = await json_body(request, f"PATCH /cameras/{cid}")
        if not isinstance(body, dict) or "id" in body:
            raise ConfigError(f"PATCH /cameras/{cid}: the body must be a JSON object of settings (not id)")
        return await _threaded(c.change, f"PATCH /cameras/{cid}", _patched(cid, body))

    @app.delete("/cameras/{cid}", summary="remove a camera (its open incidents end)")
    def delete(cid: Annotated[str, PathParam(pattern=ID)]) -> dict[str, Any]:
        known(cid)
        return c.change(f"DELETE /cameras/{cid}", lambda cams: [x for x in cams if x["id"] != cid])

    @app.post("/reload", summary="read the config file again and apply what changed in its cameras")
    def reload() -> dict[str, Any]:
        return c.reload()

    @app.get("/models", summary="each detector: the version it runs, and a swap on probation")
    def models() -> dict[str, Any]:
        shadow = c.runner.shadow
        return {"models": c.runner.swaps.state(), "shadow": shadow and shadow.summary()}

    @app.post("/models/{key}", summary="swap a detector for a registered version, checked first")
    def swap(key: Annotated[str, PathParam(pattern=ID)], body: SwapBody) -> dict[str, Any]:
        return c.runner.swap_model(key, c.model(key, body))

    @app.post("/models/{key}/rollback", summary="take back the swap on probation")
    def rollback(key: Annotated[str, PathParam(pattern=ID)]) -> dict[str, Any]:
        return c.runner.swaps.rollback(key)

    @app.post("/models/{key}/shadow", status_code=201, summary="run a registered version beside a detector")
    def shadow(key: Annotated[str, PathParam(pattern=ID)], body: ShadowBody) -> JSONResponse:
        model = c.model(key, SwapBody(name=body.name))
        return JSONResponse(c.runner.start_shadow(key, model, body.share), status_code=201)

    @app.delete("/models/{key}/shadow", summary="stop the shadow")
    def stop_shadow(key: Annotated[str, PathParam(pattern=ID)]) -> dict[str, Any]:
        return c.runner.stop_shadow(key)

    @app.get("/cameras/{cid}/preview.{kind}", summary="the camera live, drawn (jpg: one frame; mjpeg)")
    def preview(cid: Annotated[str, PathParam(pattern=ID)], kind: str, frames: str | None = None) -> Response:
        if kind not in ("jpg", "mjpeg"):
            raise HTTPException(404, f"no preview.{kind} (preview.jpg or preview.mjpeg)")
        known(cid)
        status, got = c.preview(cid, kind, _frames_asked(frames))
        if status != 200:
            return error(status, got["error"])
        if kind == "jpg":
            return Response(got, media_type="image/jpeg", headers={"cache-control": "no-store"})
        return StreamingResponse(
            got,
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"cache-control": "no-store"},
        )

    return app


def openapi_schema() -> dict[str, Any]:
    """The control API's OpenAPI document (``docs/control-openapi.json`` is this, written by
    ``python -m pipeline.control > docs/control-openapi.json``)."""
    from types import SimpleNamespace

    app = build_app(SimpleNamespace(token="unused"))  # type: ignore[arg-type]
    return app.openapi()


async def _threaded(fn: Callable[..., Any], *args: Any) -> Any:
    """A blocking call (a camera change waits for the batch in hand) off the event loop."""
    return await run_in_threadpool(fn, *args)


def request(
    url: str, method: str, body: Any = None, *, token: str | None = None, timeout_s: float = 30.0
) -> tuple[int, Any]:
    """One call to a control interface: (HTTP status, decoded JSON body). ``safecity cameras``.
    ``token``: None reads the edge's default token file (if there is one); "" sends none."""
    import urllib.error
    import urllib.request

    if token is None:
        try:
            token = read_token(default_token_path())
        except ConfigError:
            token = ""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through HTTP_PROXY
    try:
        with direct.open(req, timeout=timeout_s) as resp:
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


__all__ = [
    "ControlServer",
    "default_token_path",
    "ensure_token",
    "is_loopback",
    "parse_bind",
    "read_token",
    "request",
]


if __name__ == "__main__":
    print(json.dumps(openapi_schema(), indent=1, sort_keys=True))
