import threading
import time

import torch

from pipeline.sources.mux import Muxer
from pipeline.types import Frame


def frame(cam: str, t: float = 0.0) -> Frame:
    return Frame(cam, torch.zeros((4, 6, 3), dtype=torch.uint8), t, 0, time.time())


def test_batch_on_size() -> None:
    mux = Muxer(max_batch_size=3, timeout_ms=5_000, queue_frames=16)
    for i in range(7):
        assert mux.put(frame(f"c{i % 2}"), block=False)
    t0 = time.monotonic()
    b = mux.next_batch(wait_s=1)
    assert b is not None and len(b) == 3
    assert time.monotonic() - t0 < 1.0  # did not wait for the timeout


def test_batch_on_timeout_when_other_cameras_are_silent() -> None:
    mux = Muxer(max_batch_size=8, timeout_ms=50, queue_frames=16)
    mux.put(frame("alive"), block=False)
    t0 = time.monotonic()
    b = mux.next_batch(wait_s=1)
    waited = time.monotonic() - t0
    assert b is not None and b.camera_ids == ["alive"]
    assert 0.04 <= waited < 0.5


def test_no_frames_returns_none() -> None:
    mux = Muxer(max_batch_size=2, timeout_ms=10, queue_frames=4)
    assert mux.next_batch(wait_s=0.05) is None


def test_full_queue_drops_live_frames_and_blocks_file_frames() -> None:
    mux = Muxer(max_batch_size=2, timeout_ms=10, queue_frames=2)
    assert mux.put(frame("a"), block=False) and mux.put(frame("a"), block=False)
    assert not mux.put(frame("a"), block=False)
    assert mux.dropped == 1
    assert not mux.put(frame("b"), block=True, timeout_s=0.05)
    assert mux.dropped == 1  # a blocking put that times out is retried by its camera, not dropped

    got: list[int] = []

    def consumer() -> None:
        b = mux.next_batch(wait_s=1)
        got.append(len(b) if b else 0)

    th = threading.Thread(target=consumer)
    th.start()
    assert mux.put(frame("b"), block=True, timeout_s=2)
    th.join(2)
    assert got == [2]


def test_batch_mixes_cameras_in_arrival_order() -> None:
    mux = Muxer(max_batch_size=4, timeout_ms=20, queue_frames=8)
    for cam in ["a", "b", "c", "a"]:
        mux.put(frame(cam), block=False)
    b = mux.next_batch(wait_s=1)
    assert b is not None and b.camera_ids == ["a", "b", "c", "a"]
