"""Evidence clips on disk, one MP4 file per clip named by its sha256, beside the edge's outbox
(``OUTBOX.clips/``) and the sink's store (``STORE.clips/``).

A clip is written to a temporary file, flushed to disk and renamed to its digest before any event
names it, so an event never references a clip that a crash lost. Disk use is bounded: past
``max_bytes`` the oldest clips are deleted (and logged), and ``prune`` deletes those older than the
retention. The sink assembles a clip fetched in chunks in ``SHA.part`` and keeps it only if its
digest matches.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from ..errors import StorageError

log = logging.getLogger(__name__)

SUFFIX = ".mp4"
CHUNK_BYTES = 1 << 20  # one message of a clip sent to the sink (the sink takes messages up to 4 MiB)


def clips_dir(db_path: Path) -> Path:
    """Where the clips of the outbox or sink store at ``db_path`` live."""
    return db_path.with_name(db_path.name + ".clips")


def is_digest(sha: str) -> bool:
    """A sha256 as the events and stores write it: 64 lower-case hex digits, nothing else."""
    return len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)


def _digest_synced(path: Path) -> str:
    """The file's sha256, read once, the file flushed to disk on the way."""
    digest = hashlib.sha256()
    with open(path, "rb+") as f:
        while block := f.read(1 << 20):
            digest.update(block)
        os.fsync(f.fileno())
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ClipStore:
    """The folder is made when the first clip goes in (``ensure`` checks it can be, at start)."""

    def __init__(self, root: Path, *, max_bytes: int | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def ensure(self) -> None:
        """Make the folder, or a StorageError saying why it cannot be."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise StorageError(f"evidence clips go in {self.root}, which is a file, not a folder") from None
        except OSError as err:
            raise StorageError(
                f"evidence clips cannot be kept in {self.root}: {err.strerror or err}"
            ) from None

    def path(self, sha: str) -> Path:
        if not is_digest(sha):
            raise ValueError(f"not a sha256 digest: {sha[:80]!r}")
        return self.root / f"{sha}{SUFFIX}"

    def temp_path(self) -> Path:
        """A new file to write a clip into before ``add`` names it by its digest."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f".clip-{os.getpid()}-{time.monotonic_ns()}.tmp"

    def has(self, sha: str) -> bool:
        return is_digest(sha) and self.path(sha).is_file()

    def size(self, sha: str) -> int | None:
        try:
            return self.path(sha).stat().st_size if is_digest(sha) else None
        except OSError:
            return None

    def read(self, sha: str, offset: int, n: int = CHUNK_BYTES) -> tuple[bytes, int] | None:
        """Up to ``n`` bytes of the clip from ``offset``, and its size; None when it is not here."""
        if not is_digest(sha) or offset < 0:
            return None
        try:
            with open(self.path(sha), "rb") as f:
                total = os.fstat(f.fileno()).st_size
                if offset > total:
                    return None
                f.seek(offset)
                return f.read(n), total
        except (OSError, ValueError, OverflowError):
            return None

    def add(self, tmp: Path) -> tuple[str, int]:
        """Name a written clip by its digest (flushed to disk first); returns (sha256, bytes). The
        oldest other clips go when the store would be over its bound."""
        sha = _digest_synced(tmp)
        return sha, self._name(tmp, sha)

    def _name(self, tmp: Path, sha: str) -> int:
        size = tmp.stat().st_size
        os.replace(tmp, self.path(sha))
        _fsync_dir(self.root)
        if self.max_bytes is not None:
            self._bound(keep=sha)
        return size

    def _clips(self) -> list[tuple[float, int, Path]]:
        out = []
        for p in self.root.glob(f"*{SUFFIX}"):
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((st.st_mtime, st.st_size, p))
        return sorted(out)

    def _bound(self, *, keep: str) -> None:
        assert self.max_bytes is not None
        clips = self._clips()
        total = sum(size for _, size, _ in clips)
        removed = 0
        for _, size, p in clips:
            if total <= self.max_bytes:
                break
            if p.stem == keep:
                continue
            p.unlink(missing_ok=True)
            total -= size
            removed += 1
        if removed:
            log.warning(
                "clip store %s is over its %.1f MiB: deleted the %d oldest clips",
                self.root,
                self.max_bytes / 2**20,
                removed,
            )

    def prune(self, *, retention_s: float) -> int:
        """Delete clips (and abandoned temporary files) older than ``retention_s``; how many clips."""
        cutoff = time.time() - retention_s
        n = 0
        for mtime, _, p in self._clips():
            if mtime < cutoff:
                p.unlink(missing_ok=True)
                n += 1
        for p in [*self.root.glob(".clip-*.tmp"), *self.root.glob("*.part")]:
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
            except OSError:
                continue
        return n

    @property
    def nbytes(self) -> int:
        return sum(size for _, size, _ in self._clips())

    # -- the sink: a clip fetched in chunks ------------------------------------------------
    def part_size(self, sha: str) -> int:
        try:
            return (self.root / f"{sha}.part").stat().st_size if is_digest(sha) else 0
        except OSError:
            return 0

    def drop_part(self, sha: str) -> None:
        if is_digest(sha):
            (self.root / f"{sha}.part").unlink(missing_ok=True)

    def append_part(self, sha: str, offset: int, data: bytes) -> int | None:
        """Write a chunk at ``offset`` of the clip being fetched; its new size, or None when the chunk
        is not the next one (a stale answer: the next request asks again from the right place)."""
        self.root.mkdir(parents=True, exist_ok=True)
        part = self.root / f"{sha}.part"
        with open(part, "ab") as f:
            if f.tell() != offset:
                return None
            f.write(data)
            return f.tell()

    def finish_part(self, sha: str) -> bool:
        """The fetched clip is whole: kept if its digest is ``sha`` (else deleted, to fetch again)."""
        tmp = self.temp_path()
        os.replace(self.root / f"{sha}.part", tmp)
        if _digest_synced(tmp) != sha:
            tmp.unlink(missing_ok=True)
            return False
        self._name(tmp, sha)
        return True
