"""Batches sampled frames of many cameras, like DeepStream's nvstreammux: on size or on timeout."""

from __future__ import annotations

import queue
import threading
import time

from ..types import Frame, FrameBatch


class Muxer:
    """A bounded frame queue shared by all cameras, read out in batches.

    A batch is emitted when it holds ``max_batch_size`` frames or ``timeout_ms`` after its first
    frame arrived, whichever comes first, so a slow or dead camera never stalls the others.
    """

    def __init__(self, *, max_batch_size: int, timeout_ms: float, queue_frames: int) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_ms / 1000.0
        self._q: queue.Queue[Frame] = queue.Queue(maxsize=queue_frames)
        self.dropped = 0
        self._lock = threading.Lock()

    def put(self, frame: Frame, *, block: bool, timeout_s: float = 0.1) -> bool:
        """Queue a frame. Live cameras don't block (a full queue drops the frame and counts it)."""
        try:
            self._q.put(frame, block=block, timeout=timeout_s if block else None)
            return True
        except queue.Full:
            if not block:
                with self._lock:
                    self.dropped += 1
            return False

    def qsize(self) -> int:
        return self._q.qsize()

    def next_batch(self, *, wait_s: float) -> FrameBatch | None:
        """Wait up to ``wait_s`` for a first frame, then fill the batch until size or timeout."""
        try:
            first = self._q.get(timeout=wait_s)
        except queue.Empty:
            return None
        frames = [first]
        deadline = time.monotonic() + self.timeout_s
        while len(frames) < self.max_batch_size:
            left = deadline - time.monotonic()
            try:
                frames.append(self._q.get(timeout=left) if left > 0 else self._q.get_nowait())
            except queue.Empty:
                break
        return FrameBatch(frames)
