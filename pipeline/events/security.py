"""CurveZMQ for the edge -> sink link: keypairs, the sink's allowlist of edges, and what each edge may
report (its source id and its cameras)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
import zmq
import zmq.auth
from pydantic import Field, ValidationError
from zmq.auth.thread import ThreadAuthenticator

from ..config import Strict
from ..errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EdgeGrant:
    source: str
    public_key: str  # Z85
    cameras: frozenset[str] | None  # None: any camera of this source


def generate_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """A Curve keypair as ``name.key`` (public, to give to the other side) and ``name.key_secret``."""
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(directory, name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def load_keypair(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a ``.key_secret`` certificate file."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable Curve certificate: {err}") from None
    if secret is None:
        raise ConfigError(f"{path}: holds no secret key (use the .key_secret file)")
    return public, secret


def load_public_key(value: str) -> bytes:
    """A Z85 public key given inline (40 characters) or as a ``.key`` certificate file."""
    if len(value) == 40 and not Path(value).exists():
        return value.encode()
    try:
        public, _ = zmq.auth.load_certificate(value)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"{value}: neither a 40-character Z85 key nor a readable .key file: {err}"
        ) from None
    return public


class AllowedEdge(Strict):
    """One edge the sink admits: its source id, its Curve public key (Z85, or a ``.key`` file beside
    the allowlist) and the cameras it may report (``'*'``: any)."""

    source: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    public_key: Annotated[str, Field(min_length=1, max_length=4096)]
    cameras: (
        Literal["*"]
        | Annotated[
            list[Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]],
            Field(min_length=1),
        ]
    ) = "*"


class Allowlist(Strict):
    edges: Annotated[list[AllowedEdge], Field(min_length=1)]


def load_allowlist(path: Path) -> dict[str, EdgeGrant]:
    """The sink's allowlist: ``edges: [{source, public_key (Z85 or .key file), cameras: [...] or '*'}]``,
    read strictly: a wrong shape (``cameras: gate-3``, a string where a list belongs) is a one-line
    error naming the field, never read some other way."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{path}: cannot read the allowlist: {getattr(err, 'strerror', None) or err}"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: the allowlist is not valid YAML: {str(err).splitlines()[0]}") from None
    try:
        allow = Allowlist.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<top>"
        hint = " (a list of camera ids, or '*' for any)" if "cameras" in where else ""
        raise ConfigError(
            f"{path}: {where}: {first['msg']}{hint}; expected edges: [{{source, public_key, cameras}}]"
        ) from None
    grants: dict[str, EdgeGrant] = {}
    sources: set[str] = set()
    for i, e in enumerate(allow.edges):
        key_value = e.public_key
        if not Path(key_value).is_absolute() and (path.parent / key_value).exists():
            key_value = str(path.parent / key_value)
        key = load_public_key(key_value).decode()
        if key in grants:
            raise ConfigError(f"{path}: edges.{i}: the same public key as edge {grants[key].source!r}")
        if e.source in sources:
            raise ConfigError(f"{path}: edges.{i}: source {e.source!r} is listed twice")
        sources.add(e.source)
        grants[key] = EdgeGrant(e.source, key, None if e.cameras == "*" else frozenset(e.cameras))
    return grants


class _Provider:
    def __init__(self, grants: dict[str, EdgeGrant], on_denied: Any) -> None:
        self.grants = grants
        self.on_denied = on_denied

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key.decode(errors="replace") in self.grants
        if not ok:
            log.warning("Curve handshake refused: unknown client key %s", key[:8].decode(errors="replace"))
            self.on_denied()
        return ok


def start_authenticator(
    ctx: zmq.Context, grants: dict[str, EdgeGrant], on_denied: Any
) -> ThreadAuthenticator:
    """A ZAP handler that admits only the allowlisted edge keys."""
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_Provider(grants, on_denied))
    return auth
