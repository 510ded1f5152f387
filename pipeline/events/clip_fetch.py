"""The sink's side of evidence clips: the clips its stored events name are fetched from their edges in
chunks, a few clips at a time, after the events (which are acknowledged first and never wait for a
clip). What is still wanted survives restarts (``clip_wanted``), and a clip half fetched goes on from
where it got to (``ClipStore`` keeps the part)."""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

import zmq

from .clip_store import ClipStore

log = logging.getLogger(__name__)

CLIP_SCHEMA = """
CREATE TABLE IF NOT EXISTS clip_wanted (
    sha256 TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    wanted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS clip_wanted_order ON clip_wanted (wanted_at);
"""
CLIP_WINDOW = 4  # clips fetched at once (one chunk of each in flight)
CLIP_TIMEOUT_S = 10.0  # a chunk not answered by then is asked for again


def clip_of(event: dict[str, Any]) -> str | None:
    """The sha256 of the clip an event names, if any."""
    evidence = event.get("evidence") or {}
    clip = evidence.get("clip") if isinstance(evidence, dict) else None
    return clip.get("sha256") if isinstance(clip, dict) else None


class ClipFetcher:
    def __init__(self, store: ClipStore, *, fetched: Any, missing: Any) -> None:
        self.store = store
        self.fetched = fetched  # counters
        self.missing = missing
        self.asked: dict[str, tuple[float, bytes]] = {}  # sha -> (when, the edge's routing id)
        self.done: list[str] = []  # fetched or given up: their rows go with the next commit
        self.want = True  # clip_wanted may have rows

    def wanted(self, db: sqlite3.Connection, items: list[tuple[str, str]], now: float) -> None:
        """Note the clips (sha256, source) of newly stored events, in the open transaction."""
        rows = [(sha, source, now) for sha, source in items if not self.store.has(sha)]
        if rows:
            db.executemany(
                "INSERT INTO clip_wanted (sha256, source, wanted_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
            self.want = True

    def forget_done(self, db: sqlite3.Connection) -> None:
        """In the open transaction: the clips fetched (or missing) since the last commit."""
        if self.done:
            db.executemany("DELETE FROM clip_wanted WHERE sha256 = ?", [(s,) for s in self.done])
            self.done.clear()

    def request(self, db: sqlite3.Connection, sock: zmq.Socket, peers: dict[str, bytes]) -> None:
        """Ask for the next chunk of up to ``CLIP_WINDOW`` clips (again after a timeout)."""
        now = time.monotonic()
        for sha, (asked, _) in list(self.asked.items()):
            if now - asked > CLIP_TIMEOUT_S:
                del self.asked[sha]
        if not self.want or len(self.asked) >= CLIP_WINDOW or not peers:
            return
        rows = db.execute(
            "SELECT sha256, source FROM clip_wanted ORDER BY wanted_at LIMIT ?", (CLIP_WINDOW * 4,)
        ).fetchall()
        self.want = bool(rows)
        for sha, source in rows:
            if len(self.asked) >= CLIP_WINDOW:
                break
            ident = peers.get(source)
            if ident is None or sha in self.asked or sha in self.done:
                continue
            if self.store.has(sha):
                self.done.append(sha)
                continue
            self._ask(sock, ident, sha)

    def _ask(self, sock: zmq.Socket, ident: bytes, sha: str) -> None:
        offset = self.store.part_size(sha)
        try:
            sock.send_multipart([ident, b"GETC", sha.encode(), str(offset).encode()], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            return
        self.asked[sha] = (time.monotonic(), ident)

    def is_answer(self, frames: list[bytes]) -> bool:
        """Whether a message from an edge answers a clip request (a MISS may be a snapshot's)."""
        if frames[0] == b"CLIP":
            return True
        return frames[0] == b"MISS" and len(frames) == 2 and frames[1].decode(errors="replace") in self.asked

    def on_answer(self, frames: list[bytes], sock: zmq.Socket) -> None:
        """``[CLIP, sha, offset, size, bytes]`` or ``[MISS, sha]``: the chunk kept, the next asked for."""
        sha = frames[1].decode(errors="replace") if len(frames) > 1 else ""
        asked = self.asked.pop(sha, None)
        if asked is None:
            return  # not asked for (any more): a late answer
        if frames[0] == b"MISS" or len(frames) != 5:
            log.warning("clip %s: the edge no longer has it", sha[:16])
            self.missing.inc()
            self.done.append(sha)
            return
        try:
            offset, size = int(frames[2]), int(frames[3])
        except ValueError:
            return
        got = self.store.append_part(sha, offset, frames[4])
        if got is None or not frames[4] and got < size:
            return  # stale or empty: asked again after the timeout
        if got < size:
            self._ask(sock, asked[1], sha)
            return
        if self.store.finish_part(sha):
            self.fetched.inc()
        else:
            log.warning("clip %s: what the edge sent does not match its digest; fetching it again", sha[:16])
            self.missing.inc()
            return
        self.done.append(sha)
