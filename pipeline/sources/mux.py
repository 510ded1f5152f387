"""Batches sampled frames of many cameras, like DeepStream's nvstreammux: on size or on timeout,
sharing the batches fairly between cameras."""

from __future__ import annotations

import threading
import time
from collections import deque

from ..types import Frame, FrameBatch


class Muxer:
    """Frames of all cameras, waiting for inference, read out in batches.

    Each camera has its own small queue (``camera_frames``, default: ``queue_frames`` shared out
    between the cameras seen, at least 2), and a batch takes the cameras' oldest frames in turn
    (round robin), so a camera that produces more frames than its share, misconfigured or greedy,
    fills only its own queue and loses only its own frames: every other camera still gets a slot in
    each batch. A batch is emitted when it holds ``max_batch_size`` frames or ``timeout_ms`` after
    its first frame arrived, whichever comes first, so a slow or dead camera never stalls the others.
    """

    def __init__(
        self, *, max_batch_size: int, timeout_ms: float, queue_frames: int, camera_frames: int | None = None
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_ms / 1000.0
        self.queue_frames = queue_frames
        self.camera_frames = camera_frames
        self._queues: dict[str, deque[Frame]] = {}  # insertion order is the round-robin order
        self._turn = 0  # the camera after the last one served: where the next frame is looked for
        self._count = 0
        self._cond = threading.Condition()
        self.dropped = 0
        self._closed: set[str] = set()  # cameras removed while running: their late frames are refused

    def _limit(self) -> int:
        if self.camera_frames is not None:
            return self.camera_frames
        return max(2, self.queue_frames // max(len(self._queues), 1))

    def put(self, frame: Frame, *, block: bool, timeout_s: float = 0.1) -> bool:
        """Queue a frame. Live cameras don't block (a full queue of their own drops the frame and
        counts it); recordings analysed as fast as possible wait up to ``timeout_s`` for room."""
        with self._cond:
            if frame.camera_id in self._closed:
                return False
            q = self._queues.get(frame.camera_id)
            if q is None:
                q = self._queues[frame.camera_id] = deque()
            if len(q) >= self._limit():
                if not block:
                    self.dropped += 1
                    return False
                deadline = time.monotonic() + timeout_s
                while len(q) >= self._limit():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
                    if self._queues.get(frame.camera_id) is not q:  # forgotten while it waited
                        return False
            q.append(frame)
            self._count += 1
            self._cond.notify_all()
            return True

    def qsize(self) -> int:
        return self._count

    def forget(self, camera_id: str, *, closed: bool = False) -> None:
        """A camera that has stopped for good: its queued frames are dropped, its share freed;
        ``closed`` (removed while running): frames it still sends are refused until ``open``."""
        with self._cond:
            if closed:
                self._closed.add(camera_id)
            q = self._queues.pop(camera_id, None)
            if q:
                self._count -= len(q)
            self._cond.notify_all()

    def open(self, camera_id: str) -> None:
        """A camera added (again) while running."""
        with self._cond:
            self._closed.discard(camera_id)

    def _take(self, out: list[Frame]) -> None:
        """Fill ``out`` up to the batch size, one frame per camera in turn, carrying on from the
        camera after the last one served (in this batch or the one before): with more cameras than
        a batch holds, every camera still gets its turn."""
        names = list(self._queues)
        n = len(names)
        i = self._turn % n if n else 0
        idle = 0  # queues looked at in a row without a frame: a whole round of them ends the loop
        while len(out) < self.max_batch_size and self._count and idle < n:
            q = self._queues[names[i]]
            i = (i + 1) % n
            if q:
                out.append(q.popleft())
                self._count -= 1
                self._turn = i
                idle = 0
            else:
                idle += 1
        self._cond.notify_all()

    def next_batch(self, *, wait_s: float) -> FrameBatch | None:
        """Wait up to ``wait_s`` for a first frame, then fill the batch until size or timeout."""
        with self._cond:
            if not self._count and not self._cond.wait_for(lambda: self._count > 0, wait_s):
                return None
            frames: list[Frame] = []
            deadline = time.monotonic() + self.timeout_s
            self._take(frames)
            while len(frames) < self.max_batch_size:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait_for(lambda: self._count > 0, left):
                    break
                self._take(frames)
            return FrameBatch(frames)
