"""Evidence clips: each camera's packets kept in a ring, an incident's window remuxed into an MP4 (no
re-encode: its frames decode to exactly the pixels the camera's own did), written by the publish
stage, fetched by the sink in chunks, bounded in memory and on disk."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import pytest
import torch

from pipeline.cli import main
from pipeline.config import CameraConfig, load_config
from pipeline.events import transport
from pipeline.events.clip_store import ClipStore, clips_dir
from pipeline.events.clips import remux
from pipeline.events.schema import validate_event
from pipeline.runner import Runner
from pipeline.sources import nvdec
from pipeline.sources.cpu import CameraSource, Pixels
from pipeline.sources.packets import PacketRing, StreamParams
from pipeline.types import ColorSpec

from . import nvc_standin as nvc
from .conftest import SinkThread, free_port
from .util import scripted, write_config

FPS, GOP, SECONDS = 25, 25, 10.0  # a keyframe every second


@pytest.fixture(scope="module", params=["libx264", "libx265"])
def footage(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.footage import generate_clip

    d = tmp_path_factory.mktemp("footage")
    return generate_clip(
        d / f"{request.param}.mp4",
        width=320,
        height=240,
        fps=FPS,
        seconds=SECONDS,
        gop=GOP,
        codec=request.param,
    )


def frames_of(path: Path, ring: PacketRing | None = None) -> list[tuple[float, np.ndarray]]:
    """(media time, RGB pixels) of every frame, as the pipeline's own camera source decodes them."""
    out: list[tuple[float, np.ndarray]] = []
    cam = CameraConfig(id="c", source=str(path), realtime=False, analytics_fps=FPS)

    def emit(f: Any, block: bool) -> bool:
        out.append((f.pts_seconds, f.data.numpy().copy()))
        return True

    CameraSource(cam, emit=emit, stop_event=threading.Event(), packets=ring).run()
    return out


def assert_same_video(
    clip: list[tuple[float, np.ndarray]], source: list[tuple[float, np.ndarray]], start: float, end: float
) -> None:
    """The clip's frames are the source's from ``start`` (a keyframe) to at least ``end``, pixel for
    pixel: nothing was decoded and encoded again. (With B-frames a clip may show a few frames past
    ``end``: those decoded before the last one it needs.)"""
    by_frame = {round(t * FPS): px for t, px in source}
    shown = [round((t + start) * FPS) for t, _ in clip]
    assert shown == sorted(shown) and shown[0] == round(start * FPS)
    assert set(range(round(start * FPS), round(end * FPS) + 1)) <= set(shown)
    assert max(shown) <= round(end * FPS) + 4
    assert all(np.array_equal(px, by_frame[i]) for i, (_, px) in zip(shown, clip, strict=True))


def packets_of(path: Path) -> list[Any]:
    with av.open(str(path)) as c:
        return [(p.is_keyframe, p.pts, p.dts) for p in c.demux(video=0) if p.size]


def test_a_window_remuxed_is_the_cameras_own_video_from_a_keyframe(footage: Path, tmp_path: Path) -> None:
    ring = PacketRing("c", max_seconds=60, max_bytes=64 << 20)
    source = frames_of(footage, ring)
    assert ring.closed and len(source) == FPS * SECONDS
    w = ring.window(5.5, pre_roll=2.0, post_roll=3.0)
    assert w is not None and w.complete and w.packets[0].keyframe
    assert w.start == pytest.approx(3.0)  # the last keyframe at or before 5.5 - 2
    assert 8.5 - 1.0 / FPS <= w.end <= 8.5 + 4.0 / FPS
    out = tmp_path / "clip.mp4"
    remux(w, out)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == footage.stem.replace("lib", "").replace("x264", "h264").replace(
            "x265", "hevc"
        )
    packets = packets_of(out)
    assert packets[0][0], "the clip starts with a keyframe"
    assert sum(k for k, _, _ in packets) == 6  # keyframes at 3, 4, ... 8 s
    clip = frames_of(out)
    # every frame from 3.0 s to 8.5 s, pixel for pixel: nothing was decoded and encoded again
    assert_same_video(clip, source, 3.0, 8.48)


def test_without_a_keyframe_far_enough_back_the_clip_starts_at_the_first_kept(footage: Path) -> None:
    ring = PacketRing("c", max_seconds=60, max_bytes=64 << 20)
    frames_of(footage, ring)
    w = ring.window(0.5, pre_roll=5.0, post_roll=20.0)
    assert w is not None and w.packets[0].keyframe and w.start == 0.0
    assert not w.complete  # the video ends at 10 s, before 0.5 + 20


def test_the_ring_is_bounded_in_seconds_unless_a_clip_needs_it_and_always_in_bytes(footage: Path) -> None:
    ring = PacketRing("c", max_seconds=3.0, max_bytes=64 << 20)
    frames_of(footage, ring)
    span = ring.packets[-1].dts - ring.packets[0].dts
    assert span <= 3.0 and span > 2.5
    pinned = PacketRing("c", max_seconds=3.0, max_bytes=64 << 20)
    pinned.pin("incident", 2.5)  # a clip waits for video from 2.5 s: kept from the keyframe at 2 s
    frames_of(footage, pinned)
    assert pinned.packets[0].pts == pytest.approx(2.0) and pinned.packets[0].keyframe
    pinned.unpin("incident")
    tight = PacketRing("c", max_seconds=60, max_bytes=20_000)
    tight.pin("incident", 0.0)
    frames_of(footage, tight)
    assert tight.nbytes <= 20_000 and tight.dropped_for_bytes > 0


def test_a_stream_of_another_resolution_starts_a_new_epoch_and_a_clip_never_spans_two() -> None:
    ring = PacketRing("c", max_seconds=60, max_bytes=1 << 20)
    ring.begin(StreamParams("h264", 320, 240), period_s=0.04)
    ring.anchor(0.0, 0.0)
    for i in range(50):
        ring.add(i * 0.04, i * 0.04, i % 25 == 0, b"a")
    ring.begin(StreamParams("h264", 640, 480), period_s=0.04)
    ring.anchor(0.0, 2.0)
    for i in range(50):
        ring.add(i * 0.04, i * 0.04, i % 25 == 0, b"b")
    before = ring.window(1.5, pre_roll=1.0, post_roll=5.0)
    after = ring.window(3.5, pre_roll=5.0, post_roll=0.2)
    assert before is not None and {p.data for p in before.packets} == {b"a"} and not before.complete
    assert before.params.width == 320
    assert after is not None and {p.data for p in after.packets} == {b"b"} and after.params.width == 640
    assert after.packets[0].dts == 2.0


def test_the_clip_store_keeps_its_bound_and_its_retention(tmp_path: Path) -> None:
    store = ClipStore(tmp_path / "c", max_bytes=2500)
    shas = []
    for i in range(4):
        tmp = store.temp_path()
        tmp.write_bytes(bytes([i]) * 1000)
        shas.append(store.add(tmp)[0])
    assert [store.has(s) for s in shas] == [False, False, True, True]  # the oldest went
    assert store.read(shas[3], 990, 100) == (bytes([3]) * 10, 1000)
    assert store.read("../../etc/passwd", 0) is None
    assert store.prune(retention_s=3600) == 0 and store.prune(retention_s=0) == 2


def test_the_nvdec_path_keeps_the_packets_it_feeds_the_decoder(
    footage: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """NVDEC gets Annex B packets from PyAV's demuxer; the ring keeps those same packets (a stand-in
    decoder here: one frame per packet, as no GPU is at hand)."""
    monkeypatch.setattr(nvdec, "load_nvc", lambda: nvc.module())
    monkeypatch.setattr(
        nvdec.NvdecCameraSource,
        "_copy",
        lambda self, frame, spec: Pixels(torch.zeros((4, 6, 3), dtype=torch.uint8), "rgb24", ColorSpec()),
    )
    ring = PacketRing("cam", max_seconds=60, max_bytes=64 << 20)
    cam = CameraConfig(id="cam", source=str(footage), realtime=False)
    src = nvdec.NvdecCameraSource(
        cam, device=torch.device("cuda:0"), emit=lambda f, b: True, stop_event=threading.Event(), packets=ring
    )
    monkeypatch.setattr(src, "_cuda_stream", lambda: SimpleNamespace(cuda_stream=0))
    src.run()
    assert src.decoder == "nvdec" and len(ring.packets) == FPS * SECONDS
    w = ring.window(1.0, pre_roll=0.0, post_roll=2.0)
    assert w is not None
    remux(w, tmp_path / "n.mp4")
    clip = frames_of(tmp_path / "n.mp4")
    assert_same_video(clip, frames_of(footage), 1.0, 3.0)


def run_with_clips(
    tmp_path: Path, footage: Path, rows: list[dict], *, sink: bool = True, **clips: Any
) -> tuple[Runner, list[dict], Path]:
    port = free_port()
    cfg = load_config(
        write_config(
            tmp_path / "c.yaml",
            cameras=[
                {
                    "id": "cam0",
                    "source": str(footage),
                    "realtime": False,
                    "analytics_fps": 10,
                    "zones": [{"name": "footpath", "polygon": [[0, 150], [320, 150], [320, 240], [0, 240]]}],
                }
            ],
            model={
                "backend": "scripted",
                "scripted_detections": str(scripted(tmp_path / "s.jsonl", rows, ["person"], 0)),
            },
            rules={
                "encroachment": {
                    "dwell_seconds": 0.5,
                    "stationary_seconds": 0.2,
                    "confirm_seconds": 0.2,
                    "clear_seconds": 0.3,
                    "update_seconds": 60,
                }
            },
            clips={"pre_roll_seconds": 1.0, "post_roll_seconds": 2.0, **clips},
            sink={
                "endpoint": f"tcp://127.0.0.1:{port}",
                "outbox": str(tmp_path / "outbox.sqlite"),
                "insecure": True,
                "drain_seconds": 10 if sink else 0,  # no sink: nothing to wait for
            },
        )
    )
    thread = SinkThread(port, tmp_path / "sink.sqlite") if sink else None
    try:
        runner = Runner(cfg)
        runner.run(60)
    finally:
        if thread is not None:
            thread.close()
    with sqlite3.connect(tmp_path / "outbox.sqlite") as c:
        events = [json.loads(b) for (b,) in c.execute("SELECT body FROM outbox ORDER BY seq")]
    return runner, events, tmp_path / "sink.sqlite"


def person(t0: float, t1: float) -> list[dict]:
    """A person standing on the footpath from ``t0`` to ``t1`` s of the video."""
    return [
        {
            "camera": "cam0",
            "t": round(k * 0.1, 2),
            "boxes": [[100, 160, 140, 230, 0.9, 0]] if t0 <= k * 0.1 < t1 else [],
        }
        for k in range(int(SECONDS * 10))
    ]


def test_an_incident_carries_a_playable_clip_fetched_by_the_sink(
    footage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person stands from 4 s to 9 s: the incident (started at 4 s) is still open when the camera has
    played 2 s past its start, so an update carries the clip; the sink fetches it in 4 KiB chunks."""
    monkeypatch.setattr(transport, "CHUNK_BYTES", 4096)
    _, events, sink_db = run_with_clips(tmp_path, footage, person(4.0, 9.0))
    for e in events:
        validate_event(e)
    assert [e["status"] for e in events] == ["start", "update", "end"]
    start, update, end = events
    clip = update["evidence"]["clip"]
    assert "clip" not in (start["evidence"] or {}) and "clip" not in (end["evidence"] or {})
    assert clip["complete"] and clip["content_type"] == "video/mp4"
    # the incident started a little after 4 s; its clip from the keyframe at 3 s to 2 s after the start
    pre_roll = clip["pre_roll_seconds"]
    assert 1.0 <= pre_roll < 1.0 + GOP / FPS
    assert pre_roll + 2.0 - 1.5 / FPS <= clip["duration_seconds"] <= pre_roll + 2.0 + 5.0 / FPS
    with sqlite3.connect(sink_db) as c:
        assert c.execute("SELECT COUNT(*) FROM clip_wanted").fetchone()[0] == 0
    path = ClipStore(clips_dir(sink_db)).path(clip["sha256"])
    data = path.read_bytes()
    assert len(data) == clip["bytes"] > 4096 * 3 and hashlib.sha256(data).hexdigest() == clip["sha256"]
    packets = packets_of(path)
    assert packets[0][0]  # keyframe first
    out = tmp_path / "evidence.mp4"  # as an operator gets it out of the sink's store
    assert main(["events", "--db", str(sink_db), "--clip", clip["sha256"][:12], "-o", str(out)]) == 0
    assert out.read_bytes() == data
    got = frames_of(path)
    end = 3.0 + clip["duration_seconds"]
    assert_same_video(got, frames_of(footage), 3.0, end - 4.0 / FPS)


def test_an_incident_that_ends_before_its_post_roll_gets_the_clip_with_its_end(
    footage: Path, tmp_path: Path
) -> None:
    _, events, _ = run_with_clips(tmp_path, footage, person(4.0, 5.0), sink=False)
    assert [e["status"] for e in events] == ["start", "end"]
    clip = events[1]["evidence"]["clip"]
    assert clip["complete"]
    assert 2.0 - 1.5 / FPS <= clip["duration_seconds"] - clip["pre_roll_seconds"] <= 2.0 + 5.0 / FPS
    assert ClipStore(clips_dir(tmp_path / "outbox.sqlite")).has(clip["sha256"])


def test_a_camera_that_stops_gives_a_shorter_clip_marked_incomplete(footage: Path, tmp_path: Path) -> None:
    """The video ends 1.5 s after the incident starts (it stays open: a recording that ends is no
    reason to end it): the clip comes with what there was."""
    _, events, _ = run_with_clips(tmp_path, footage, person(8.5, 10.0), sink=False)
    assert [e["status"] for e in events] == ["start", "update"]
    clip = events[1]["evidence"]["clip"]
    assert not clip["complete"] and clip["duration_seconds"] < clip["pre_roll_seconds"] + 2.0 - 0.2


def test_with_clips_off_nothing_is_kept(footage: Path, tmp_path: Path) -> None:
    runner, events, _ = run_with_clips(tmp_path, footage, person(4.0, 5.0), sink=False, enabled=False)
    assert [e["status"] for e in events] == ["start", "end"]
    assert all("clip" not in e["evidence"] for e in events)
    assert runner.rings is None and not list(clips_dir(tmp_path / "outbox.sqlite").glob("*.mp4"))


def test_the_schema_takes_a_clip_and_refuses_a_malformed_one(footage: Path, tmp_path: Path) -> None:
    from pipeline.errors import SchemaError

    _, events, _ = run_with_clips(tmp_path, footage, person(4.0, 5.0), sink=False)
    end = events[-1]
    validate_event(end)
    for field, bad in [("content_type", "video/avi"), ("sha256", "xyz"), ("bytes", 0), ("clip", "http://x")]:
        broken = json.loads(json.dumps(end))
        broken["evidence"]["clip"][field] = bad
        with pytest.raises(SchemaError, match="clip"):
            validate_event(broken)


def test_packets_after_a_jump_in_timestamps_wait_for_a_frame_of_their_own_timeline() -> None:
    """Timestamps go back (a TS stream restarted) and later leap an hour ahead; the decoder still
    gives a few frames of the old timeline after the jumped packets came in. No packet is timed by
    the wrong timeline: media time goes on without a gap and nothing is evicted."""
    ring = PacketRing("c", max_seconds=30, max_bytes=1 << 20)
    ring.begin(StreamParams("h264", 320, 240), period_s=0.04)
    delay = 3  # packets demuxed before their frame comes out of the decoder
    raw = (
        [i * 0.04 for i in range(100)]
        + [i * 0.04 for i in range(100)]
        + [3600 + i * 0.04 for i in range(100)]
    )
    media = [i * 0.04 for i in range(300)]  # what the clock makes of it: on, one period a frame
    for i, r in enumerate(raw):
        ring.add(r, r, i % 25 == 0, bytes([i % 256]))
        if i >= delay:  # the frame of packet i - delay comes out
            ring.anchor(raw[i - delay], media[i - delay])
    dts = [p.dts for p in ring.packets]
    assert len(dts) == 300 and dts == sorted(dts)
    assert max(b - a for a, b in zip(dts, dts[1:], strict=False)) < 0.05  # no gap, no leap
    assert dts[-1] == pytest.approx(299 * 0.04)


def test_a_camera_restarted_keeps_its_old_ring_at_hand_for_steps_in_flight() -> None:
    from pipeline.sources.packets import PacketRings

    rings = PacketRings(30, 1 << 20)
    old = rings.open("c", 1)
    new = rings.open("c", 2)
    assert old.closed and not new.closed
    assert rings.get("c", 1) is old and rings.get("c", 2) is new and rings.get("c") is new
    assert rings.get("c", 7) is None


class Socket:
    """Records what the fetcher sends (the sink's ROUTER socket in the pipeline)."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []

    def send_multipart(self, frames: list[bytes], flags: int = 0) -> None:
        self.sent.append(frames)


def test_the_sink_takes_only_what_it_asked_for_and_gives_up_a_clip_that_never_matches(tmp_path: Path) -> None:
    from prometheus_client import Counter

    from pipeline.events.clip_fetch import CLIP_SCHEMA, ClipFetcher

    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(CLIP_SCHEMA)
    store = ClipStore(tmp_path / "clips")
    fetched, missing = Counter("f", "f", registry=None), Counter("m", "m", registry=None)
    fetcher = ClipFetcher(
        store, fetched=fetched, missing=missing, store_errors=Counter("e", "e", registry=None)
    )
    good = b"x" * 10
    sha = hashlib.sha256(good).hexdigest()
    fetcher.wanted(db, [(sha, 10, "edge-1"), ("f" * 64, 3 << 30, "edge-1")], 0.0)  # one too big
    sock = Socket()
    fetcher.request(db, sock, {"edge-2": b"id2"})  # its edge is away: nothing asked of anyone
    assert sock.sent == []
    fetcher.request(db, sock, {"edge-1": b"id1"})
    assert sock.sent == [[b"id1", b"GETC", sha.encode(), b"0"]]
    fetcher.on_answer([b"CLIP", sha.encode(), b"0", b"10", good], b"id9", sock)  # another edge
    fetcher.on_answer([b"CLIP", sha.encode(), b"0", b"99", good], b"id1", sock)  # another size
    fetcher.on_answer([b"CLIP", sha.encode(), b"5", b"10", good], b"id1", sock)  # past the end
    assert store.part_size(sha) == 0 and not store.has(sha)
    for _ in range(3):  # the edge sends other bytes of the right size, again and again
        fetcher.asked.clear()
        fetcher.request(db, sock, {"edge-1": b"id1"})
        fetcher.on_answer([b"CLIP", sha.encode(), b"0", b"10", b"y" * 10], b"id1", sock)
        assert not store.has(sha)
    assert missing._value.get() == 1 and sha in fetcher.done and store.part_size(sha) == 0
    fetcher.forget_done(db)
    assert db.execute("SELECT COUNT(*) FROM clip_wanted").fetchone()[0] == 0


def test_a_garbled_chunk_request_is_answered_missing(tmp_path: Path) -> None:
    store = ClipStore(tmp_path / "c")
    tmp = store.temp_path()
    tmp.write_bytes(b"clip")
    sha, _ = store.add(tmp)
    assert store.read(sha, 10**30) is None and store.read(sha, 5) is None and store.read(sha, -1) is None
    assert store.read(sha, 4) == (b"", 4)


def test_a_clip_whose_pre_roll_the_ring_no_longer_holds_is_marked_incomplete(
    footage: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera whose bitrate outgrows buffer_max_mb: its clip starts late; it says so."""
    from pipeline.events.clips import Clips, PendingClip, Step
    from pipeline.types import FrameSize, Incident

    ring = PacketRing("c", max_seconds=60, max_bytes=footage.stat().st_size // 3)  # about 3 of its 10 s
    frames_of(footage, ring)
    assert ring.dropped_for_bytes > 0
    inc = Incident("i", "encroachment", "start", "medium", "c", None, 9.0, 9.0, None)
    clips = Clips(ClipStore(footage.parent / "short"), pre_roll=5.0, post_roll=0.5)
    pending = PendingClip(ring, 9.0, 9.5, 0.0, None, Step(inc, FrameSize("c", 320, 240), None, None))
    with caplog.at_level("WARNING"):
        clip = clips._write(pending)
    assert clip is not None and not clip.complete and clip.pre_roll < 5.0
    assert "outgrew clips.buffer_max_mb" in caplog.text


def test_a_sink_whose_disk_refuses_a_chunk_goes_on_and_fetches_it_later(tmp_path: Path) -> None:
    from prometheus_client import Counter

    from pipeline.events.clip_fetch import CLIP_SCHEMA, ClipFetcher

    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(CLIP_SCHEMA)
    (tmp_path / "clips").write_text("a file where the folder should be")
    errors = Counter("e", "e", registry=None)
    fetcher = ClipFetcher(
        ClipStore(tmp_path / "clips"),
        fetched=Counter("f", "f", registry=None),
        missing=Counter("m", "m", registry=None),
        store_errors=errors,
    )
    data = b"clip bytes"
    sha = hashlib.sha256(data).hexdigest()
    fetcher.wanted(db, [(sha, len(data), "edge-1")], 0.0)
    sock = Socket()
    fetcher.request(db, sock, {"edge-1": b"id1"})
    fetcher.on_answer([b"CLIP", sha.encode(), b"0", str(len(data)).encode(), data], b"id1", sock)
    assert errors._value.get() == 1 and sha not in fetcher.done  # still wanted: asked again later
    assert db.execute("SELECT COUNT(*) FROM clip_wanted").fetchone()[0] == 1


def test_a_file_where_the_clips_go_is_a_one_line_error_at_start(footage: Path, tmp_path: Path) -> None:
    from pipeline.errors import StorageError

    clips_dir(tmp_path / "outbox.sqlite").write_text("not a folder")
    with pytest.raises(StorageError, match="which is a file, not a folder"):
        run_with_clips(tmp_path, footage, person(4.0, 5.0), sink=False)


def test_an_operator_gets_a_clip_out_but_never_over_another_file(tmp_path: Path) -> None:
    from pipeline.errors import ConfigError
    from pipeline.events.store import open_store

    db = tmp_path / "sink.sqlite"
    open_store(db).close()
    store = ClipStore(clips_dir(db))
    store.ensure()
    tmp = store.temp_path()
    tmp.write_bytes(b"an mp4")
    sha, _ = store.add(tmp)
    out = tmp_path / "out.mp4"
    assert main(["events", "--db", str(db), "--clip", f"sha256:{sha}", "-o", str(out)]) == 0
    assert out.read_bytes() == b"an mp4"
    assert main(["events", "--db", str(db), "--clip", sha[:8], "-o", str(out)]) == 0  # the same: fine
    (tmp_path / "precious").write_bytes(b"do not overwrite")
    for bad, why in [
        ([sha[:8], "-o", str(tmp_path / "precious")], "a file is there already"),
        ([sha[:8], "-o", str(tmp_path)], "is a folder"),
        ([sha[:8], "-o", str(tmp_path / "nowhere" / "x.mp4")], "cannot write it"),
        (["%"], "expected a sha256"),
        ([""], "expected a sha256"),
    ]:
        with pytest.raises(ConfigError, match=why):
            from pipeline.cli import build_parser, cmd_events

            cmd_events(build_parser().parse_args(["events", "--db", str(db), "--clip", *bad]))
    assert (tmp_path / "precious").read_bytes() == b"do not overwrite"
