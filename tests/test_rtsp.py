"""RTSP cameras against a real RTSP server: GStreamer's gst-rtsp-server (``tests/gst_rtsp.py``),
H.264 and HEVC over RTP/TCP and RTP/UDP, with digest authentication. A server that restarts, a
stream that stalls with its connection open, wrong credentials; and the password never shown."""

from __future__ import annotations

import logging
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.control import ControlServer
from pipeline.footage import generate_clip
from pipeline.metrics import Metrics
from pipeline.runner import Runner

from .conftest import unavailable
from .util import free_port, scripted, wait_until, write_config

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("gst_rtsp.py")
PASSWORD = "s3cret-Pw"


def gst_available() -> bool:
    if not Path(SYSTEM_PYTHON).is_file():
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


@pytest.fixture(scope="module", autouse=True)
def _gstreamer() -> None:
    if not gst_available():
        unavailable("GStreamer's RTSP server is not installed", "python3-gi, gir1.2-gst-rtsp-server-1.0 ...")


@pytest.fixture(scope="module")
def long_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """30 s clips: the server plays a file once per client (a camera that reaches its end reconnects)."""
    d = tmp_path_factory.mktemp("rtsp-clips")
    return {
        "h264": generate_clip(d / "h264.mp4", width=320, height=240, fps=25, seconds=30, gop=25, seed=3),
        "h265": generate_clip(
            d / "h265.mp4", width=320, height=240, fps=25, seconds=30, gop=25, seed=4, codec="libx265"
        ),
    }


class GstRtsp:
    """One gst-rtsp-server process on a fixed port: stop it, freeze it (SIGSTOP), start it again."""

    def __init__(
        self, clip: Path, *, codec: str = "h264", user: str | None = "admin", password: str = PASSWORD
    ) -> None:
        self.port = free_port()
        self.args = [
            SYSTEM_PYTHON,
            str(SERVER),
            "--port",
            str(self.port),
            "--clip",
            str(clip),
            "--codec",
            codec,
        ]
        if user:
            self.args += ["--user", user, "--password", password]
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def url(self, user: str | None = "admin", password: str = PASSWORD) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready"), line

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


def edge(tmp_path: Path, cameras: list[dict]) -> Runner:
    cfg = load_config(
        write_config(
            tmp_path / "c.yaml",
            cameras=cameras,
            model={
                "backend": "scripted",
                "scripted_detections": str(scripted(tmp_path / "s.jsonl", [], ["person"], 0)),
            },
            sink={
                "endpoint": f"tcp://127.0.0.1:{free_port()}",
                "outbox": str(tmp_path / "o.sqlite"),
                "insecure": True,
            },
            status_interval_seconds=0.5,
        )
    )
    return Runner(cfg, metrics=Metrics())


def rtsp_camera(cid: str, url: str, **kw: object) -> dict:
    return {
        "id": cid,
        "source": url,
        "analytics_fps": 5,
        "read_timeout_seconds": 2,
        "reconnect_initial_seconds": 0.3,
        "reconnect_max_seconds": 1,
        **kw,
    }


@pytest.mark.slow
def test_h264_and_hevc_over_tcp_and_udp_with_digest_auth_and_no_password_shown(
    tmp_path: Path, long_clips: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    servers = {codec: GstRtsp(clip, codec=codec) for codec, clip in long_clips.items()}
    cams = [
        rtsp_camera(f"{codec}-{transport}", servers[codec].url(), rtsp_transport=transport)
        for codec in ("h264", "h265")
        for transport in ("tcp", "udp")
    ]
    wrong = GstRtsp(long_clips["h264"])
    cams.append(rtsp_camera("wrong-password", wrong.url(password="not-it"), reconnect_max_seconds=5))
    runner = edge(tmp_path, cams)
    control = ControlServer(runner, "127.0.0.1:0")
    control.start()
    status: list[str] = []
    caplog.set_level(logging.INFO)
    runner.start()
    try:
        analysed = lambda cid: runner.stats.cameras[cid].analysed  # noqa: E731
        assert wait_until(lambda: all(analysed(c["id"]) >= 15 for c in cams[:4]), 30), runner.status_line()
        status.append(runner.status_line())
        time.sleep(6.0)  # the wrong password: retried at reconnect_max_seconds, not in a storm
        status.append(runner.status_line())
        errors = runner.stats.cameras["wrong-password"].errors
        assert 1 <= errors <= 3, errors  # ~8 s at one try per 5 s
        import urllib.request

        req = urllib.request.Request(
            control.url + "/cameras", headers={"Authorization": f"Bearer {control.token}"}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            listing = r.read().decode()
    finally:
        runner.request_stop()
        runner.stop()
        control.close()
        for s in [*servers.values(), wrong]:
            s.stop()
    assert runner.stats.cameras["wrong-password"].analysed == 0
    scraped = "".join(
        f"{s.name}{s.labels}{s.value}\n" for m in runner.metrics.registry.collect() for s in m.samples
    )
    shown = "\n".join([*status, listing, scraped, caplog.text])
    assert "refused the user name or password" in caplog.text
    # the server repeats SPS/PPS before each keyframe (as cameras do): no timestamp jump for that
    assert "timestamps jumped" not in caplog.text
    assert PASSWORD not in shown and "not-it" not in shown
    assert "rtsp://admin:***@127.0.0.1" in caplog.text or "rtsp://admin:***@127.0.0.1" in listing


ODD_PASSWORD = "p@ss:w/rd #%?&"  # each of these would move the host or the path if put in a URL raw


@pytest.mark.slow
def test_a_camera_password_from_a_file_or_the_environment_never_shown(
    tmp_path: Path, long_clips: dict[str, Path], caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    """The config names where the password is (a Secret mount, a variable), the edge puts it in the
    URL only to open the stream: the cameras stream, and the password is in no listing, log line or
    metric."""
    server = GstRtsp(long_clips["h264"], password=ODD_PASSWORD)
    secret = tmp_path / "secrets" / "gate-3"
    secret.parent.mkdir()
    secret.write_text(ODD_PASSWORD + "\n")
    monkeypatch.setenv("SAFECITY_CAMERA_PW", ODD_PASSWORD)
    url = f"rtsp://admin@127.0.0.1:{server.port}/cam"
    cams = [
        rtsp_camera("from-file", url, credentials={"password_file": str(secret)}),
        rtsp_camera("from-env", url, credentials={"password_env": "SAFECITY_CAMERA_PW"}),
        rtsp_camera("unset", url, credentials={"password_env": "SAFECITY_NOT_SET"}, reconnect_max_seconds=5),
    ]
    runner = edge(tmp_path, cams)
    control = ControlServer(runner, "127.0.0.1:0")
    control.start()
    caplog.set_level(logging.INFO)
    runner.start()
    try:
        analysed = lambda cid: runner.stats.cameras[cid].analysed  # noqa: E731
        assert wait_until(lambda: analysed("from-file") >= 10 and analysed("from-env") >= 10, 30), (
            runner.status_line()
        )
        import urllib.request

        req = urllib.request.Request(
            control.url + "/cameras", headers={"Authorization": f"Bearer {control.token}"}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            listing = r.read().decode()
        status = runner.status_line()
    finally:
        runner.request_stop()
        runner.stop()
        control.close()
        server.stop()
    scraped = "".join(
        f"{s.name}{s.labels}{s.value}\n" for m in runner.metrics.registry.collect() for s in m.samples
    )
    assert "credentials.password_env SAFECITY_NOT_SET: empty or unset" in caplog.text
    assert runner.stats.cameras["unset"].analysed == 0
    assert str(secret) in listing and "SAFECITY_CAMERA_PW" in listing  # where, never what
    for shown in (listing, status, scraped, caplog.text):
        assert ODD_PASSWORD not in shown and "p@ss" not in shown and "p%40ss" not in shown


@pytest.mark.slow
def test_a_camera_survives_its_server_stalling_and_restarting(
    tmp_path: Path, long_clips: dict[str, Path], clips: list[Path]
) -> None:
    server = GstRtsp(long_clips["h264"])
    runner = edge(
        tmp_path,
        [
            {"id": "file", "source": str(clips[0]), "loop": True, "analytics_fps": 5},
            rtsp_camera("rtsp", server.url()),
        ],
    )
    reg = runner.metrics.registry

    def value(name: str, cam: str) -> float:
        return reg.get_sample_value(name, {"camera": cam}) or 0.0

    runner.start()
    try:
        assert wait_until(lambda: value("safecity_frames_analysed_total", "rtsp") >= 20, 30)
        # the stream stalls with its connection open: the watchdog (read_timeout_seconds 2) reconnects
        server.freeze()
        assert wait_until(lambda: value("safecity_camera_errors_total", "rtsp") >= 1, 10)
        file_before = value("safecity_frames_analysed_total", "file")
        time.sleep(1.0)
        assert value("safecity_frames_analysed_total", "file") > file_before  # the other camera goes on
        server.thaw()
        analysed = value("safecity_frames_analysed_total", "rtsp")
        assert wait_until(lambda: value("safecity_frames_analysed_total", "rtsp") >= analysed + 5, 15)
        # the server restarts: down, retried, back by itself
        server.stop()
        assert wait_until(lambda: value("safecity_camera_up", "rtsp") == 0, 10)
        errors = value("safecity_camera_errors_total", "rtsp")
        assert wait_until(
            lambda: value("safecity_camera_errors_total", "rtsp") > errors, 10
        )  # retried while down
        server.start()
        analysed = value("safecity_frames_analysed_total", "rtsp")
        assert wait_until(lambda: value("safecity_camera_up", "rtsp") == 1, 20)
        assert wait_until(lambda: value("safecity_frames_analysed_total", "rtsp") >= analysed + 5, 5.0)
    finally:
        runner.request_stop()
        runner.stop()
        server.stop()
    assert runner.error is None


def test_the_server_script_is_there_for_ci() -> None:
    assert SERVER.is_file() and shutil.which("python3") is not None


@pytest.mark.slow
def test_a_resolution_change_mid_stream_goes_on_without_a_reconnect(tmp_path: Path) -> None:
    """An MPEG-TS stream whose picture size changes (320x240, then 416x240 after 4 s): the camera goes
    on analysing at the new size, with no error and no reconnect."""
    d = tmp_path / "clips"
    a = generate_clip(d / "a.ts", width=320, height=240, fps=25, seconds=4.0, gop=25, seed=5)
    b = generate_clip(d / "b.ts", width=416, height=240, fps=25, seconds=20.0, gop=25, seed=6)
    both = d / "ab.ts"
    both.write_bytes(a.read_bytes() + b.read_bytes())
    server = GstRtsp(both, user=None)
    runner = edge(tmp_path, [rtsp_camera("cam", server.url(user=None))])
    widths: list[int] = []
    runner.start()
    try:

        def seen() -> bool:
            last = runner.per_camera["cam"].last
            if last is not None and (not widths or widths[-1] != last[2].width):
                widths.append(last[2].width)
            return widths[-1:] == [416]

        assert wait_until(seen, 30, interval_s=0.1), widths
        analysed = runner.stats.cameras["cam"].analysed
        assert wait_until(lambda: runner.stats.cameras["cam"].analysed >= analysed + 10, 10)
    finally:
        runner.request_stop()
        runner.stop()
        server.stop()
    assert widths == [320, 416], widths
    assert runner.stats.cameras["cam"].errors == 0 and runner.error is None


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_a_live_cameras_clip_is_its_own_packets_from_a_keyframe(
    tmp_path: Path, long_clips: dict[str, Path], codec: str
) -> None:
    """The packets an RTSP camera sends (RTP, Annex B, parameter sets in band), kept and remuxed: the
    clip starts with a keyframe, covers the window asked for, decodes whole, and its packets are the
    camera's own, byte for byte (nothing decoded and encoded again)."""
    import threading

    import av
    from av.bitstream import BitStreamFilterContext

    from pipeline.config import CameraConfig
    from pipeline.events.clips import remux
    from pipeline.sources.cpu import CameraSource
    from pipeline.sources.packets import CLIP_CODECS, PacketRing

    server = GstRtsp(long_clips[codec], codec=codec)
    ring = PacketRing("c", max_seconds=60, max_bytes=64 << 20)
    stop = threading.Event()
    frames: list[float] = []
    cam = CameraConfig(id="c", source=server.url(), analytics_fps=25)
    src = CameraSource(
        cam, emit=lambda f, b: frames.append(f.pts_seconds) or True, stop_event=stop, packets=ring
    )
    try:
        src.start()
        assert wait_until(lambda: len(frames) > 140, 30)  # 5.6 s of video
    finally:
        stop.set()
        src.join(10)
        server.stop()
    w = ring.window(4.0, pre_roll=2.0, post_roll=1.0)
    assert w is not None and w.complete and w.packets[0].keyframe and w.start <= 2.0
    remux(w, tmp_path / "live.mp4")
    with av.open(str(tmp_path / "live.mp4")) as c:
        stream = c.streams.video[0]
        name = stream.codec_context.name
        bsf = BitStreamFilterContext(CLIP_CODECS[name], in_stream=stream)
        packets = [bytes(a) for p in c.demux(stream) if p.size for a in bsf.filter(p)]
    with av.open(str(tmp_path / "live.mp4")) as c:
        decoded = sum(1 for _ in c.decode(video=0))
    assert name == {"h264": "h264", "h265": "hevc"}[codec]
    assert len(packets) == len(w.packets) and decoded == len(w.packets)

    def pictures(data: bytes) -> list[bytes]:
        """The NAL units of a packet but its parameter sets (the filters put those in as they see
        fit); start codes of 3 or 4 bytes and trailing zeros aside."""
        units = [u.rstrip(b"\x00") for u in re.split(b"\x00\x00\x01", data)]
        kind = (lambda u: u[0] & 0x1F) if name == "h264" else (lambda u: (u[0] >> 1) & 0x3F)
        return [u for u in units if u and kind(u) not in ({7, 8} if name == "h264" else {32, 33, 34})]

    assert [pictures(p) for p in packets] == [pictures(p.data) for p in w.packets]
    assert decoded >= round((5.0 - w.start) * 25)
