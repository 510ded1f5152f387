"""A camera never goes blind: corrupt packets, timestamps that jump, streams that are not what they
seem, cameras that hang, and secrets in URLs. Each test runs one real CameraSource (PyAV) on real
bytes: generated clips, damaged copies of them, a local HTTP server, sockets that never answer."""

from __future__ import annotations

import functools
import http.server
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.config import CameraConfig
from pipeline.footage import generate_clip
from pipeline.sources.cpu import CameraSource, CameraState
from pipeline.types import Frame

from .util import free_port


def run_source(
    cfg: dict, *, seconds: float = 20.0, stop_after: float | None = None
) -> tuple[CameraSource, list[Frame], float]:
    """Run one camera until it ends by itself (or ``stop_after`` seconds, then stop it); returns the
    source, the frames it emitted and how long it ran."""
    frames: list[Frame] = []
    stop = threading.Event()

    def emit(f: Frame, block: bool) -> bool:
        frames.append(f)
        return True

    src = CameraSource(CameraConfig(**{"id": "cam", **cfg}), emit=emit, stop_event=stop)
    t0 = time.monotonic()
    src.start()
    src.join(stop_after if stop_after is not None else seconds)
    stop.set()
    src.join(10)
    assert not src.is_alive()
    return src, frames, time.monotonic() - t0


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_clip(
        tmp_path_factory.mktemp("long") / "long.mp4",
        width=320,
        height=240,
        fps=25,
        seconds=8.0,
        gop=25,
        seed=3,
    )


def corrupt_copy(clip: Path, out: Path, *, nbytes: int) -> Path:
    """A copy of an MP4 with ``nbytes`` of random bytes written over the middle of its video data."""
    data = bytearray(clip.read_bytes())
    mdat = data.find(b"mdat")
    moov = data.find(b"moov")
    end = moov if moov > mdat else len(data)
    at = mdat + (end - mdat) // 2
    data[at : at + nbytes] = np.random.default_rng(7).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data))
    return out


def test_corrupt_packets_are_skipped_to_the_next_keyframe_and_the_file_is_analysed_to_its_end(
    long_clip: Path, tmp_path: Path
) -> None:
    bad = corrupt_copy(long_clip, tmp_path / "bad.mp4", nbytes=20_000)
    src, frames, _ = run_source({"source": str(bad), "realtime": False, "analytics_fps": 5})
    assert src.state == CameraState.FINISHED
    assert src.decode_errors >= 1 and src.errors == 0  # counted, and the stream was never reopened
    times = [f.pts_seconds for f in frames]
    assert times == sorted(times) and times[-1] > 7.5  # analysed to the end of the 8 s clip
    assert 30 <= len(frames) <= 40  # 5 fps over 8 s, less the second or so skipped to a keyframe


def ts_clip(path: Path, seed: int) -> Path:
    return generate_clip(path, width=320, height=240, fps=25, seconds=3.0, gop=25, seed=seed)


def test_timestamps_that_go_backwards_do_not_blind_the_camera(tmp_path: Path) -> None:
    """Two MPEG-TS encodes back to back, both starting at 0, as after an encoder restart."""
    a, b = ts_clip(tmp_path / "a.ts", 1), ts_clip(tmp_path / "b.ts", 2)
    joined = tmp_path / "restart.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    src, frames, _ = run_source({"source": str(joined), "realtime": False, "analytics_fps": 5})
    assert src.state == CameraState.FINISHED and src.timestamp_jumps >= 1
    times = [f.pts_seconds for f in frames]
    assert times == sorted(times)
    assert len(frames) >= 28  # 6 s of video at 5 fps, analysed through the restart
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 0.3


def test_an_audio_only_file_is_a_clear_error_and_given_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16_000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16_000, i * 1024
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    with caplog.at_level(logging.WARNING):
        src, frames, _ = run_source({"source": str(path), "reconnect_initial_seconds": 0.05})
    assert src.state == CameraState.FAILED and not frames and src.errors == 3
    assert src.last_error == f"no video stream in {path} (its streams: audio)"
    assert "Traceback" not in caplog.text and "IndexError" not in caplog.text


def test_a_missing_file_is_given_up_and_named_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        src, _, _ = run_source({"source": str(tmp_path / "gone.mp4"), "reconnect_initial_seconds": 0.05})
    assert src.state == CameraState.FAILED
    assert "camera cam: file not found:" in caplog.text and "camera cam: camera cam" not in caplog.text


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word (a hung camera)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except (TimeoutError, OSError):
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    stop.set()
    srv.close()
    for c in held:
        c.close()


def test_a_camera_stuck_in_ffmpeg_stops_at_once(silent_server: int) -> None:
    cfg = {
        "source": f"rtsp://127.0.0.1:{silent_server}/cam",
        "open_timeout_seconds": 30,
        "read_timeout_seconds": 30,
    }
    frames: list[Frame] = []
    stop = threading.Event()
    src = CameraSource(
        CameraConfig(id="cam", **cfg), emit=lambda f, b: frames.append(f) or True, stop_event=stop
    )
    src.start()
    time.sleep(1.0)  # inside avformat_open_input, waiting for an answer that never comes
    t0 = time.monotonic()
    stop.set()
    src.join(3.0)
    assert not src.is_alive(), "the camera thread is still blocked in FFmpeg"
    assert time.monotonic() - t0 < 1.0
    assert src.state == CameraState.STOPPED


def test_a_silent_server_is_reported_as_a_timeout(silent_server: int) -> None:
    cfg = {
        "source": f"rtsp://127.0.0.1:{silent_server}/cam",
        "open_timeout_seconds": 1,
        "read_timeout_seconds": 1,
    }
    src, _, _ = run_source(cfg, stop_after=1.6)
    assert src.errors >= 1
    assert "no answer within 1 s" in src.last_error, src.last_error


def test_credentials_never_reach_the_log_or_the_error(caplog: pytest.LogCaptureFixture) -> None:
    url = f"rtsp://admin:s3cret-pw@127.0.0.1:{free_port()}/Streaming/Channels/101"
    with caplog.at_level(logging.INFO):
        src, _, _ = run_source({"source": url, "reconnect_initial_seconds": 0.1}, stop_after=1.0)
    assert src.errors >= 2  # connection refused, retried
    assert "s3cret" not in caplog.text and "s3cret" not in src.last_error
    assert "rtsp://admin:***@127.0.0.1" in src.last_error


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_dir(tmp_path_factory: pytest.TempPathFactory, clips: list[Path]) -> Iterator[tuple[str, Path]]:
    """A folder served over HTTP by Python's server (which answers no range requests), holding a clip
    with its index at the end (as encoded) and a copy remuxed with the index first (faststart)."""
    folder = tmp_path_factory.mktemp("http")
    (folder / "index-at-end.mp4").write_bytes(clips[0].read_bytes())
    with (
        av.open(str(clips[0])) as src,
        av.open(str(folder / "faststart.mp4"), "w", options={"movflags": "+faststart"}) as out,
    ):
        stream = out.add_stream_from_template(src.streams.video[0])
        for pkt in src.demux(src.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = stream
                out.mux(pkt)
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


def test_a_file_over_http_is_a_recording_paced_at_its_frame_rate(http_dir: tuple[str, Path]) -> None:
    cfg = {"source": f"{http_dir[0]}/faststart.mp4", "analytics_fps": 5}
    assert not CameraConfig(id="cam", **cfg).is_live
    src, frames, took = run_source(cfg)
    assert src.state == CameraState.FINISHED and src.errors == 0  # no "stream ended", no reconnects
    assert took >= 1.7  # the 2 s clip took its time, as a recording played in real time
    assert 9 <= len(frames) <= 11  # 5 analysed a second, not every decoded frame


def test_an_mp4_with_its_index_at_the_end_over_http_says_what_to_do(http_dir: tuple[str, Path]) -> None:
    cfg = {"source": f"{http_dir[0]}/index-at-end.mp4", "reconnect_initial_seconds": 0.05}
    src, frames, _ = run_source(cfg, stop_after=1.0)
    assert src.errors >= 2 and not frames  # a network source is retried, never given up
    assert "range requests" in src.last_error and "+faststart" in src.last_error, src.last_error


class _MjpegCamera(http.server.BaseHTTPRequestHandler):
    """An IP camera's MJPEG stream over HTTP (multipart/x-mixed-replace), 10 JPEGs a second, with
    no end; each connection is dropped after ``serve_s`` seconds, as a flaky network would."""

    serve_s = 1.5

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        import torch
        from torchvision.io import encode_jpeg

        jpeg = encode_jpeg(torch.full((3, 64, 96), 128, dtype=torch.uint8)).numpy().tobytes()
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < self.serve_s:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                self.wfile.write(f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                time.sleep(0.1)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


def test_an_mjpeg_camera_over_http_is_live_and_reconnected() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MjpegCamera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
        src, frames, _ = run_source({"source": url, "reconnect_initial_seconds": 0.1}, stop_after=4.0)
    finally:
        server.shutdown()
    assert src.live  # settled when it opened: no duration, a streaming format
    assert src.errors >= 1 and src.last_error.startswith(("stream lost", "stream ended"))  # reconnected
    assert src.state == CameraState.STOPPED  # never "finished" like a recording
    assert len(frames) >= 10  # about 5 a second, timed by the wall clock, across the reconnects


def test_a_recording_whose_frames_fail_midway_ends_there_instead_of_replaying(
    clips: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.sources.cpu as cpu

    real, converted = cpu.to_rgb24, [0]

    def failing(frame: av.VideoFrame, spec: object) -> np.ndarray:
        converted[0] += 1
        if converted[0] > 3:
            raise ValueError("a frame that cannot be converted")
        return real(frame, spec)  # type: ignore[arg-type]

    monkeypatch.setattr(cpu, "to_rgb24", failing)
    src, frames, _ = run_source({"source": str(clips[0]), "realtime": False, "analytics_fps": 5})
    assert src.state == CameraState.FINISHED and len(frames) == 3 and src.errors == 1


def test_an_analytics_rate_above_the_streams_is_capped_with_a_warning(
    clips: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        src, frames, _ = run_source({"source": str(clips[0]), "realtime": False, "analytics_fps": 60})
    assert src.analytics_fps == 25.0
    assert "analytics_fps 60 is above the stream's 25 frames/s" in caplog.text
    assert len(frames) == 50  # every frame of the 2 s clip, once


def test_rotated_video_is_analysed_as_players_show_it(tmp_path: Path) -> None:
    """A phone-style clip, 64x32 coded with a 90 degree display rotation: the frames analysed (and
    the zones drawn on them) are 32 wide and 64 high, as FFmpeg and players show it."""
    path = tmp_path / "rotated.mp4"
    coded = np.zeros((32, 64, 3), np.uint8)
    coded[:16, :32] = 255  # top-left quadrant white
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)
        for _ in range(10):
            for pkt in stream.encode(av.VideoFrame.from_ndarray(coded, format="rgb24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    _, frames, _ = run_source({"source": str(path), "realtime": False, "analytics_fps": 25})
    assert frames and frames[0].width == 32 and frames[0].height == 64
    shown = frames[0].data.numpy().mean(axis=2)
    assert shown[48:, :16].mean() > 200 and shown[:32].mean() < 60  # the quadrant is now bottom-left
