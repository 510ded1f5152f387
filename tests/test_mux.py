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


def test_a_full_queue_drops_only_that_cameras_live_frames_and_blocks_its_file_frames() -> None:
    mux = Muxer(max_batch_size=2, timeout_ms=10, queue_frames=4, camera_frames=2)
    assert mux.put(frame("a"), block=False) and mux.put(frame("a"), block=False)
    assert not mux.put(frame("a"), block=False)  # a's own queue is full: a's frame is dropped
    assert mux.dropped == 1
    assert mux.put(frame("b"), block=False)  # another camera still has room
    assert mux.put(frame("b"), block=False)
    assert not mux.put(frame("b"), block=True, timeout_s=0.05)
    assert mux.dropped == 1  # a blocking put that times out is retried by its camera, not dropped

    got: list[list[str]] = []

    def consumer() -> None:
        b = mux.next_batch(wait_s=1)
        got.append(b.camera_ids if b else [])

    th = threading.Thread(target=consumer)
    th.start()
    assert mux.put(frame("b"), block=True, timeout_s=2)  # room once a batch took one of b's frames
    th.join(2)
    assert got == [["a", "b"]]  # one frame of each camera in turn


def test_the_default_share_of_the_queue_is_split_between_cameras() -> None:
    mux = Muxer(max_batch_size=2, timeout_ms=10, queue_frames=8)
    assert all(mux.put(frame("a"), block=False) for _ in range(8))  # alone, a camera may use it all
    assert not mux.put(frame("a"), block=False)
    assert mux.put(frame("b"), block=False)  # a second camera always gets in; a's share is now 4


def test_a_greedy_camera_cannot_starve_the_others() -> None:
    """Per tick a greedy camera offers 5 frames, a modest one 1 every 4th tick; inference takes 2 a
    tick. The modest camera must get every frame analysed; the greedy one loses only its own."""
    mux = Muxer(max_batch_size=2, timeout_ms=0.1, queue_frames=16)
    taken = {"greedy": 0, "modest": 0}
    offered = {"greedy": 0, "modest": 0}
    for tick in range(200):
        for _ in range(5):
            offered["greedy"] += 1
            mux.put(frame("greedy"), block=False)
        if tick % 4 == 0:
            offered["modest"] += 1
            mux.put(frame("modest"), block=False)
        batch = mux.next_batch(wait_s=0.01)
        for cam in batch.camera_ids if batch else []:
            taken[cam] += 1
    assert taken["modest"] == offered["modest"] == 50
    assert taken["greedy"] == 400 - 50  # every batch was full: the rest of the capacity went to it
    assert mux.dropped == offered["greedy"] - taken["greedy"] - mux.qsize()


def test_with_more_cameras_than_a_batch_holds_every_camera_gets_its_turn() -> None:
    """64 cameras, batches of 8: 63 always have frames waiting, one sends a frame every 16th batch.
    Taking turns across batches, the modest camera is analysed every time it sends."""
    mux = Muxer(max_batch_size=8, timeout_ms=0.1, queue_frames=64)
    cams = [f"c{i:02d}" for i in range(64)]
    for c in cams:
        mux.put(frame(c), block=False)
    sent = taken = 0
    for tick in range(400):
        for c in cams[1:]:
            mux.put(frame(c), block=False)
        if tick % 16 == 0:
            sent += mux.put(frame(cams[0]), block=False)
        batch = mux.next_batch(wait_s=0.01)
        taken += batch.camera_ids.count(cams[0]) if batch else 0
    assert sent >= 25 and taken >= sent  # each frame it sent was analysed (one may still wait)


def test_batch_takes_cameras_in_turn_and_the_next_batch_starts_with_the_next_camera() -> None:
    mux = Muxer(max_batch_size=4, timeout_ms=20, queue_frames=16)
    for cam in ["a", "a", "a", "b", "c", "a", "b"]:
        mux.put(frame(cam), block=False)
    b = mux.next_batch(wait_s=1)
    assert b is not None and b.camera_ids == ["a", "b", "c", "a"]
    b = mux.next_batch(wait_s=1)
    assert b is not None and b.camera_ids == ["b", "a", "a"]  # c has nothing left: a fills in


def test_a_camera_removed_while_its_thread_waits_for_room_adds_nothing() -> None:
    """A recording's thread waits in put() for room; the camera is removed meanwhile (which frees room
    for the others): its frame must not be queued, and the count of queued frames must stay true."""
    mux = Muxer(max_batch_size=4, timeout_ms=10, queue_frames=4)
    for cam in ("a", "b"):
        assert mux.put(frame(cam, 0), block=False) and mux.put(frame(cam, 1), block=False)  # 2 each: full
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(mux.put(frame("a", 2), block=True, timeout_s=2.0)))
    waiter.start()
    time.sleep(0.2)
    mux.forget("a", closed=True)
    waiter.join(3)
    assert result == [False] and mux.qsize() == 2
    batch = mux.next_batch(wait_s=0.5)
    assert batch is not None and batch.camera_ids == ["b", "b"] and mux.qsize() == 0
    assert mux.next_batch(wait_s=0.1) is None  # and nothing spins on an empty queue
    assert not mux.put(frame("a", 3), block=False)  # a closed camera's late frames are refused
    mux.open("a")
    assert mux.put(frame("a", 4), block=False)
