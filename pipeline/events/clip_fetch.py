"""The sink's side of evidence clips: the clips its stored events name are fetched from their edges in
chunks, a few clips at a time, after the events (which are acknowledged first and never wait for a
clip). What is still wanted survives restarts (``clip_wanted``), and a clip half fetched goes on from
where it got to (``ClipStore`` keeps the part)."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zmq

from .clip_store import ClipStore

if TYPE_CHECKING:
    from .store import Db

log = logging.getLogger(__name__)

CLIP_SCHEMA = """
CREATE TABLE IF NOT EXISTS clip_wanted (
    sha256 TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    wanted_at REAL NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS clip_wanted_order ON clip_wanted (wanted_at);
"""
CLIP_WINDOW = 4  # clips fetched at once (one chunk of each in flight)
CLIP_TIMEOUT_S = 10.0  # a chunk not answered by then is asked for again
MAX_CLIP_BYTES = 2 << 30  # a clip an event says is bigger is not fetched
MAX_ATTEMPTS = 3  # a clip whose bytes do not match its digest this often is given up


def clip_of(event: dict[str, Any]) -> tuple[str, int] | None:
    """The sha256 and size of the clip an event names, if any (the event is valid: both are there)."""
    evidence = event.get("evidence") or {}
    clip = evidence.get("clip") if isinstance(evidence, dict) else None
    return (clip["sha256"], int(clip["bytes"])) if isinstance(clip, dict) else None


@dataclass
class _Asked:
    at: float  # time.monotonic()
    ident: bytes  # the edge's routing id: only its answer counts
    size: int  # what the event said


class ClipFetcher:
    def __init__(self, store: ClipStore, *, fetched: Any, missing: Any, store_errors: Any) -> None:
        self.store = store
        self.fetched = fetched  # counters
        self.missing = missing
        self.store_errors = store_errors
        self._last_error_log = float("-inf")
        self.asked: dict[str, _Asked] = {}
        self.known: set[str] = set()  # clips asked for in this run: their late MISS is theirs, no snapshot's
        self.failures: dict[str, int] = {}  # clips that came with the wrong digest -> how often
        self.done: list[str] = []  # fetched or given up: their rows go with the next commit
        self.want = True  # clip_wanted may have rows

    def wanted(self, db: Db, items: list[tuple[str, int, str]], now: float) -> None:
        """Note the clips (sha256, bytes, source) of newly stored events, in the open transaction."""
        rows = []
        for sha, size, source in items:
            if size > MAX_CLIP_BYTES:
                log.warning("clip %s of %s: %d bytes is too big to fetch", sha[:16], source, size)
            elif not self.store.has(sha):
                rows.append((sha, source, now, size))
        if rows:
            db.executemany(
                "INSERT INTO clip_wanted (sha256, source, wanted_at, bytes) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                rows,
            )
            self.want = True

    def forget_done(self, db: Db) -> None:
        """In the open transaction: the clips fetched (or missing) since the last commit."""
        if self.done:
            db.executemany("DELETE FROM clip_wanted WHERE sha256 = ?", [(s,) for s in self.done])
            self.done.clear()

    def request(self, db: Db, sock: zmq.Socket, peers: dict[str, bytes]) -> None:
        """Ask the connected edges for the next chunk of up to ``CLIP_WINDOW`` clips (again after a
        timeout); an edge that is away holds up nobody else's clips."""
        now = time.monotonic()
        for sha, a in list(self.asked.items()):
            if now - a.at > CLIP_TIMEOUT_S:
                del self.asked[sha]
        if not self.want or len(self.asked) >= CLIP_WINDOW or not peers:
            return
        sources = list(peers)[:500]
        marks = ",".join("?" * len(sources))
        rows = db.execute(
            f"SELECT sha256, source, bytes FROM clip_wanted WHERE source IN ({marks}) "
            "ORDER BY wanted_at LIMIT ?",
            (*sources, CLIP_WINDOW * 4),
        ).fetchall()
        if not rows:  # (none of the edges connected has any: others may)
            self.want = bool(db.execute("SELECT EXISTS (SELECT 1 FROM clip_wanted)").fetchone()[0])
        for sha, source, size in rows:
            if len(self.asked) >= CLIP_WINDOW:
                break
            if sha in self.asked or sha in self.done:
                continue
            if self.store.has(sha):
                self.done.append(sha)
                continue
            self._ask(sock, peers[source], sha, size)

    def _ask(self, sock: zmq.Socket, ident: bytes, sha: str, size: int) -> None:
        offset = self.store.part_size(sha)
        if offset > size:  # more than the clip has: start again
            try:
                self.store.drop_part(sha)
            except OSError as err:
                self._store_failed(err)
                return
            offset = 0
        try:
            sock.send_multipart([ident, b"GETC", sha.encode(), str(offset).encode()], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            return
        self.asked[sha] = _Asked(time.monotonic(), ident, size)
        self.known.add(sha)

    def is_answer(self, frames: list[bytes]) -> bool:
        """Whether a message from an edge answers a clip request (a MISS may be a snapshot's)."""
        if frames[0] == b"CLIP":
            return True
        return frames[0] == b"MISS" and len(frames) == 2 and frames[1].decode(errors="replace") in self.known

    def on_answer(self, frames: list[bytes], ident: bytes, sock: zmq.Socket) -> None:
        """``[CLIP, sha, offset, size, bytes]`` or ``[MISS, sha]`` from the edge ``ident``: the chunk
        kept and the next asked for. Anything that does not fit what was asked (another edge, another
        size, past the end) is dropped; the request is made again after its timeout."""
        sha = frames[1].decode(errors="replace") if len(frames) > 1 else ""
        asked = self.asked.get(sha)
        if asked is None or asked.ident != ident:
            return  # not asked for (any more), or not of this edge: a late or stray answer
        if frames[0] == b"MISS" and len(frames) == 2:
            del self.asked[sha]
            log.warning("clip %s: the edge no longer has it", sha[:16])
            self._give_up(sha)
            return
        try:
            offset, size = int(frames[2]), int(frames[3])
        except (IndexError, ValueError):
            return
        if len(frames) != 5 or size != asked.size or offset + len(frames[4]) > size or not frames[4]:
            return
        del self.asked[sha]
        try:
            got = self.store.append_part(sha, offset, frames[4])
            if got is None:
                return  # not the next chunk: asked again
            if got < size:
                self._ask(sock, ident, sha, size)
                return
            whole = self.store.finish_part(sha)
        except OSError as err:  # a full or read-only disk: events go on, the clip is asked for later
            self._store_failed(err)
            return
        if whole:
            self.fetched.inc()
            self.failures.pop(sha, None)
            self.done.append(sha)
            self.known.discard(sha)
            return
        n = self.failures[sha] = self.failures.get(sha, 0) + 1
        log.warning(
            "clip %s: what the edge sent does not match its digest (%d of %d tries)",
            sha[:16],
            n,
            MAX_ATTEMPTS,
        )
        if n >= MAX_ATTEMPTS:
            self._give_up(sha)

    def _store_failed(self, err: OSError) -> None:
        self.store_errors.inc()
        now = time.monotonic()
        if now - self._last_error_log >= 60.0:
            self._last_error_log = now
            log.error(
                "cannot keep evidence clips in %s (%s): events are stored all the same; the clips are "
                "fetched again later",
                self.store.root,
                err.strerror or err,
            )

    def _give_up(self, sha: str) -> None:
        self.missing.inc()
        with contextlib.suppress(OSError):
            self.store.drop_part(sha)
        self.failures.pop(sha, None)
        self.known.discard(sha)
        self.done.append(sha)
