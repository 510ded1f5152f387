"""Cameras changed while the edge runs: through the control interface (real HTTP) and SIGHUP, with
the untouched cameras' analysis measured across every change."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import load_config, parse_config
from pipeline.control import ControlServer, request
from pipeline.errors import ConfigError
from pipeline.runner import Runner

from .util import free_port, scripted, wait_until, write_config

ZONE = {"name": "footpath", "polygon": [[0, 150], [320, 150], [320, 240], [0, 240]]}
FPS = 5


def camera(cid: str, clip: Path, **kw: Any) -> dict[str, Any]:
    return {"id": cid, "source": str(clip), "loop": True, "realtime": True, "analytics_fps": FPS, **kw}


def edge(tmp_path: Path, clips: list[Path], cameras: list[dict[str, Any]]) -> Path:
    # a person stands on camera a's footpath the whole time (the clips loop every 2 s)
    rows = [
        {"camera": cid, "t": round(k * 0.1, 2), "boxes": [[100, 120, 140, 220, 0.9, 0]]}
        for cid in ("a", "b", "d")
        for k in range(20)
    ]
    return write_config(
        tmp_path / "edge.yaml",
        cameras=cameras,
        model={
            "backend": "scripted",
            "scripted_detections": str(scripted(tmp_path / "s.jsonl", rows, ["person"], 2.0)),
        },
        rules={
            "encroachment": {
                "dwell_seconds": 0.5,
                "stationary_seconds": 0.2,
                "confirm_seconds": 0.2,
                "update_seconds": 60,
            }
        },
        sink={
            "endpoint": f"tcp://127.0.0.1:{free_port()}",
            "outbox": str(tmp_path / "o.sqlite"),
            "insecure": True,
        },
        status_interval_seconds=0.5,
        # the clips a control client may add as cameras, and the folder of camera passwords it may name
        sources={"roots": [str(clips[0].parent)], "secrets": [str(tmp_path / "camera-secrets")]},
    )


class Watch:
    """Samples each camera's analysed count every 50 ms: a camera's longest stall, per window."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            counts = {cid: c.analysed for cid, c in list(self.runner.stats.cameras.items())}
            self.samples.append((time.monotonic(), counts))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def rate_and_stall(self, cid: str, t0: float, t1: float) -> tuple[float, float]:
        pts = [(t, c[cid]) for t, c in self.samples if t0 <= t <= t1 and cid in c]
        stall, last_change = 0.0, pts[0][0]
        for (_, n0), (t, n1) in zip(pts, pts[1:], strict=False):
            if n1 != n0:
                stall, last_change = max(stall, t - last_change), t
        stall = max(stall, pts[-1][0] - last_change)
        return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]), stall


@pytest.mark.slow
def test_cameras_added_changed_and_removed_live_while_the_others_never_pause(
    tmp_path: Path, clips: list[Path]
) -> None:
    cfg = load_config(
        edge(
            tmp_path,
            clips,
            [camera("a", clips[0], zones=[ZONE]), camera("b", clips[1]), camera("c", clips[2])],
        )
    )
    runner = Runner(cfg)
    control = ControlServer(runner, "127.0.0.1:0")
    runner.serving = True
    control.start()
    url = control.url
    runner.start()
    watch = Watch(runner)
    marks: list[tuple[str, float]] = []
    try:
        assert wait_until(lambda: all(c.analysed >= 10 for c in runner.stats.cameras.values()), 20)
        code, health = request(url + "/health", "GET")
        assert code == 200 and health["ready"] and health["cameras"]["total"] == 3
        time.sleep(2.0)
        marks.append(("before", time.monotonic()))
        # add d; change b's zones and rate; remove c; each refused change leaves everything as it was
        code, reply = request(url + "/cameras", "POST", camera("d", clips[1], zones=[ZONE]))
        assert code == 201 and reply["added"] == ["d"], reply
        time.sleep(2.0)
        marks.append(("added d", time.monotonic()))
        code, reply = request(url + "/cameras/b", "PATCH", {"zones": [ZONE], "analytics_fps": 2})
        assert code == 200 and reply["reconfigured"] == ["b"], reply
        time.sleep(2.0)
        marks.append(("changed b", time.monotonic()))
        code, reply = request(url + "/cameras/c", "DELETE")
        assert code == 200 and reply["removed"] == ["c"], reply
        time.sleep(2.0)
        marks.append(("removed c", time.monotonic()))
        # refused whole, with the loader's one-line errors
        code, reply = request(url + "/cameras", "POST", camera("a", clips[0]))
        expected = parse_config_error(
            {**yaml.safe_load((tmp_path / "edge.yaml").read_text()), "cameras": [camera("a", clips[0])] * 2}
        )
        assert code == 400 and reply["error"] == expected.replace("config:", "POST /cameras:", 1), reply
        code, reply = request(
            url + "/cameras/a", "PATCH", {"zones": [{"name": "z", "polygon": [[0, 0], [1, 1]]}]}
        )
        assert code == 400 and "PATCH /cameras/a: cameras.0.zones.0.polygon" in reply["error"], reply
        code, reply = request(url + "/cameras/zz", "DELETE")
        assert code == 404
        code, cams = request(url + "/cameras", "GET")
        assert [c["id"] for c in cams["cameras"]] == ["a", "b", "d"]
        assert cams["cameras"][1]["config"]["analytics_fps"] == 2
        time.sleep(1.0)
        # remove a: its open encroachment ends with the reason
        assert any(
            i.type == "encroachment" and i.status == "start" and i.camera_id == "a" for i in runner.incidents
        )
        code, _ = request(url + "/cameras/a", "DELETE")
        assert code == 200
        assert wait_until(
            lambda: any(
                i.camera_id == "a" and i.status == "end" and i.details.get("end_reason") == "camera_removed"
                for i in runner.incidents
            ),
            10,
        )
        # d, added live, analyses and raises its own incident
        assert wait_until(
            lambda: any(i.camera_id == "d" and i.status == "start" for i in runner.incidents), 10
        )
    finally:
        watch.stop()
        runner.request_stop()
        runner.stop()
        control.close()
    assert runner.error is None
    # the untouched camera a, and b outside its own change, never paused: its rate held and no stall
    # longer than a second (5 fps: a frame every 0.2 s)
    for (_, t0), (what, t1) in zip(marks, marks[1:], strict=False):
        rate, stall = watch.rate_and_stall("a", t0, t1)
        assert rate >= 0.8 * FPS and stall < 1.0, (what, rate, stall)
        if what != "changed b":
            rate_b, stall_b = watch.rate_and_stall("b", t0, t1)
            assert stall_b < 1.0, (what, rate_b, stall_b)
    # its new rate, over 3 s (b goes on past "removed c"): over a shorter window one frame more or
    # less than the window holds on average is already a rate outside these bounds
    rate_b, _ = watch.rate_and_stall("b", marks[-2][1] + 0.5, marks[-1][1] + 1.0)
    assert 1.5 <= rate_b <= 2.5, rate_b


def parse_config_error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    return str(err.value)


def test_the_control_interface_always_needs_its_token(tmp_path: Path, clips: list[Path]) -> None:
    """On loopback too (anyone local, and every web page, reached it before): the token is made at
    the first start (mode 600) and every request, health included, needs it."""
    import stat

    cfg = load_config(edge(tmp_path, clips, [camera("a", clips[0])]))
    runner = Runner(cfg)
    try:
        made = tmp_path / "state" / "control.token"
        control = ControlServer(runner, "127.0.0.1:0", token_file=made)
        try:
            assert stat.S_IMODE(made.stat().st_mode) == 0o600 and len(control.token) >= 32
            control.start()
            for path in ("/cameras", "/health", "/models", "/openapi.json"):
                assert request(control.url + path, "GET", token="")[0] == 401, path
                assert request(control.url + path, "GET", token="wrong-token-of-length")[0] == 401, path
            code, body = request(control.url + "/cameras", "GET", token=control.token)
            assert code == 200 and body["cameras"][0]["id"] == "a"
            assert request(control.url + "/health", "GET", token=control.token)[0] == 503  # not started
            code, schema = request(control.url + "/openapi.json", "GET", token=control.token)
            assert code == 200 and "/cameras/{cid}" in schema["paths"] and "/models/{key}" in schema["paths"]
        finally:
            control.close()
        token = tmp_path / "token"
        token.write_text("correct-horse-battery-staple\n")
        token.chmod(0o644)
        with pytest.raises(ConfigError, match="readable by others"):
            ControlServer(runner, "127.0.0.1:0", token_file=token)
        token.chmod(0o600)
        control = ControlServer(runner, "0.0.0.0:0", token_file=token)  # beyond loopback: the same token
        control.start()
        try:  # bound to every interface: any IP address answers, a name only if it was given
            url = f"http://127.0.0.1:{control.port}"
            assert request(url + "/cameras", "GET", token="correct-horse-battery-staple")[0] == 200
            assert request(url + "/cameras", "GET", token="")[0] == 401
            url = f"http://localhost:{control.port}"
            assert request(url + "/cameras", "GET", token="correct-horse-battery-staple")[0] == 421
        finally:
            control.close()
    finally:
        runner.stop()


def test_a_web_page_and_a_rebound_host_get_nothing_from_the_control_interface(
    tmp_path: Path, clips: list[Path]
) -> None:
    """A cross-site text/plain POST added a camera (201) and a foreign Host (DNS rebinding) read every
    camera's config: both are refused before anything is read, even with a valid token."""
    import http.client

    runner = Runner(load_config(edge(tmp_path, clips, [camera("a", clips[0])])))
    control = ControlServer(runner, "127.0.0.1:0")
    control.start()

    def raw(method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", control.port, timeout=10)
        conn.putrequest(method, path, skip_host=True)
        given = {"Host": f"127.0.0.1:{control.port}", "Authorization": f"Bearer {control.token}"}
        given |= {"Content-Length": str(len(body))} if body else {}
        for k, v in (given | {k.replace("_", "-"): v for k, v in headers.items()}).items():
            conn.putheader(k, v)
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, r.read().decode()

    cam = json.dumps(camera("evil", clips[1])).encode()
    try:
        assert raw("POST", "/cameras", cam, Content_Type="text/plain")[0] == 415
        assert (
            raw("POST", "/cameras", cam, Content_Type="application/json", Origin="http://evil.example")[0]
            == 403
        )
        assert raw("POST", "/reload", Origin="null")[0] == 403
        assert raw("GET", "/cameras", Host="attacker.example:8089")[0] == 421
        assert raw("GET", "/cameras/a/preview.jpg", Host="attacker.example")[0] == 421
        assert [c.id for c in runner.cfg.cameras] == ["a"]  # nothing changed, nothing read
        assert raw("POST", "/cameras", cam, Content_Type="application/json")[0] == 201  # the real client
        for host in (f"localhost:{control.port}", f"[::1]:{control.port}"):
            assert raw("GET", "/cameras", Host=host)[0] == 200
    finally:
        control.close()
        runner.stop()


@pytest.mark.slow
def test_sighup_reloads_the_config_file_and_the_thin_client_sees_it(
    tmp_path: Path, clips: list[Path]
) -> None:
    path = edge(tmp_path, clips, [camera("a", clips[0]), camera("b", clips[1])])
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(path), "--control", f"127.0.0.1:{port}", "--quiet"],
        stderr=subprocess.PIPE,
        text=True,
        # as a service manager starts it: SIGHUP not ignored (under `nohup` the edge keeps it ignored)
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    url = f"http://127.0.0.1:{port}"
    lines: list[str] = []  # its log, read as it comes (a pipe nobody reads would stall the edge)
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: request(url + "/health", "GET")[0] == 200, 60, ignore=(ConfigError,))
        data = yaml.safe_load(path.read_text())
        data["cameras"] = [camera("a", clips[0]), camera("c", clips[2])]  # b goes, c comes
        path.write_text(yaml.safe_dump(data))
        proc.send_signal(signal.SIGHUP)
        assert wait_until(
            lambda: [c["id"] for c in request(url + "/cameras", "GET")[1]["cameras"]] == ["a", "c"], 30
        ), "".join(lines[-40:])
        out = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "cameras", "--control", f"127.0.0.1:{port}", "list"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and out.stdout.split()[0] == "a" and "\nc " in out.stdout, out
        # a reload that changes more than cameras is refused whole; the edge goes on
        data["batching"] = {"max_batch_size": 2}
        path.write_text(yaml.safe_dump(data))
        proc.send_signal(signal.SIGHUP)
        bad = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "cameras", "--control", f"127.0.0.1:{port}", "reload"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (
            bad.returncode == 2
            and "only cameras can change while the edge runs; changed: batching" in bad.stderr
        )
        assert request(url + "/health", "GET")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert "SIGHUP: reloading the config file" in err and "reload refused, nothing changed" in err


def test_two_changes_at_once_both_take_effect(tmp_path: Path, clips: list[Path]) -> None:
    """Each request reads, changes and applies the camera list under one lock: neither undoes the other."""
    runner = Runner(load_config(edge(tmp_path, clips, [camera("a", clips[0])])))
    control = ControlServer(runner, "127.0.0.1:0")
    control.start()
    try:
        codes: list[int] = []
        posts = [
            threading.Thread(
                target=lambda c=c: codes.append(
                    request(control.url + "/cameras", "POST", camera(c, clips[1]))[0]
                )
            )
            for c in ("x", "y", "z")
        ]
        for t in posts:
            t.start()
        for t in posts:
            t.join(30)
        assert codes == [201, 201, 201]
        assert sorted(c.id for c in runner.cfg.cameras) == ["a", "x", "y", "z"]
        assert sorted(s.cam.id for s in runner.sources) == ["a", "x", "y", "z"]
        code, reply = request(control.url + "/cameras/a", "PATCH", {"rtsp_transport": "udp"})
        assert code == 200 and reply["restarted"] == ["a"], reply  # a source setting: the camera restarts
        missing = str(clips[1].parent / "missing.mp4")
        code, _ = request(control.url + "/cameras", "POST", {**camera("w", clips[1]), "source": missing})
        assert code == 201  # under the source folders: checked when it opens (and fails that camera only)
    finally:
        control.close()
        runner.stop()


def test_the_control_interface_answers_bad_requests_in_one_line(tmp_path: Path, clips: list[Path]) -> None:
    import http.client

    runner = Runner(load_config(edge(tmp_path, clips, [camera("a", clips[0])])))
    control = ControlServer(runner, "127.0.0.1:0")
    control.start()

    def raw(
        method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", control.port, timeout=10)
        conn.putrequest(method, path)
        given = {
            "Authorization": f"Bearer {control.token}",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
        }
        for k, v in {**given, **(headers or {})}.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, r.read().decode()

    try:
        assert raw("POST", "/cameras", b'{"id": "\xff\xfe"}')[1].count("not UTF-8 JSON") == 1
        assert raw("POST", "/cameras", b"[" * 100_000)[0] == 400
        code, body = raw("POST", "/cameras", b"{}", {"Content-Length": "\u00b2".encode().decode("latin-1")})
        assert code == 400  # (uvicorn refuses it before any of ours runs)
        assert raw("POST", "/cameras", b"{" + b" " * (2 << 20) + b"}")[0] == 413
        code, body = raw("PUT", "/cameras")
        assert code == 405 and json.loads(body) == {"error": "Method Not Allowed"}
        assert raw("GET", "/nothing")[0] == 404
        code, body = raw("POST", "/models/a", b'{"path": "/tmp/x.pt", "backend": "torch"}')
        assert code == 400 and "path" in body
        assert [c.id for c in runner.cfg.cameras] == ["a"]  # nothing changed
    finally:
        control.close()
        runner.stop()


def authed(control: ControlServer, path: str) -> Any:
    """A GET of the control interface with its token, for urllib."""
    import urllib.request

    return urllib.request.Request(control.url + path, headers={"Authorization": f"Bearer {control.token}"})


def read_mjpeg(url: Any, timeout_s: float = 20.0) -> tuple[str, list[bytes]]:
    """The content type and the JPEG parts of a multipart/x-mixed-replace stream, read to its end."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        ctype = resp.headers["Content-Type"]
        body = resp.read()
    boundary = b"--" + ctype.split("boundary=", 1)[1].encode()
    parts = []
    for chunk in body.split(boundary)[1:]:
        head, _, rest = chunk.partition(b"\r\n\r\n")
        n = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
        )
        parts.append(rest[:n])
    return ctype, parts


def test_a_camera_is_watched_live_as_mjpeg_with_what_the_pipeline_sees(
    tmp_path: Path, clips: list[Path]
) -> None:
    """GET /cameras/a/preview.mjpeg: camera a's analysed frames with its zone, the tracked person and
    the dwell timer drawn on them, while nobody watching costs nothing (nothing is drawn)."""
    import urllib.error
    import urllib.request

    import torch
    from torchvision.io import decode_jpeg

    cfg = load_config(edge(tmp_path, clips, [camera("a", clips[0], zones=[ZONE]), camera("b", clips[1])]))
    runner = Runner(cfg)
    control = ControlServer(runner, "127.0.0.1:0")
    runner.serving = True
    control.start()
    runner.start()
    try:
        assert wait_until(lambda: runner.stats.cameras["a"].analysed >= 5, 20)
        assert runner.watch.cameras == {}  # nobody watches: nothing drawn
        ctype, parts = read_mjpeg(authed(control, "/cameras/a/preview.mjpeg?frames=3"))
        assert ctype.startswith("multipart/x-mixed-replace") and len(parts) == 3
        images = [decode_jpeg(torch.frombuffer(bytearray(p), dtype=torch.uint8)) for p in parts]
        assert all(tuple(i.shape) == (3, 240, 320) for i in images)
        # the footpath zone outlined in its colour (255, 200, 0) along its top edge at y = 150
        edge_px = images[-1][:, 149:152, 20:300].float().mean(dim=(1, 2))
        assert (edge_px - torch.tensor([255.0, 200.0, 0.0])).abs().max() < 60, edge_px
        # the person's track box (green, or red once the incident is open) along x = 100
        box = images[-1][:, 130:210, 99:102].float().mean(dim=(1, 2))
        assert box[1] > 150 or box[0] > 180, box
        assert runner.watch.cameras == {}  # the viewer left
        with urllib.request.urlopen(authed(control, "/cameras/b/preview.jpg"), timeout=20) as resp:
            assert resp.headers["Content-Type"] == "image/jpeg" and resp.read()[:2] == b"\xff\xd8"
        for path, code in [
            ("/cameras/zz/preview.mjpeg", 404),
            ("/cameras/a/preview.mjpeg?frames=0", 400),
            ("/cameras/a/preview.mjpeg?frames=%C2%B2", 400),  # a digit to str.isdigit, not to int()
            ("/cameras/a/preview.mjpeg?frames=" + "9" * 5000, 400),
        ]:
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(authed(control, path), timeout=20)
            assert err.value.code == code
        for _ in range(8):  # the viewers a server takes at once
            assert runner.watch.join("b")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(authed(control, "/cameras/a/preview.jpg"), timeout=20)
        assert err.value.code == 503
    finally:
        control.close()
        runner.request_stop()
        runner.stop()
    assert runner.error is None


def test_a_control_client_can_open_no_file_or_url_it_was_not_given(tmp_path: Path, clips: list[Path]) -> None:
    """A camera whose source was a PNG in a private folder went up and its preview showed it; file://
    and http(s) sources made the edge read files and fetch internal URLs. Now a client may name files
    only under the config's source folders and streams only of its schemes, and every refusal says
    the same whatever the file (existing, missing, private): a client learns nothing of the edge."""
    runner = Runner(load_config(edge(tmp_path, clips, [camera("a", clips[0])])))
    control = ControlServer(runner, "127.0.0.1:0")
    control.start()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "secret.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    inside = clips[0].parent
    (inside / "link.mp4").symlink_to(private / "secret.png")
    try:
        said = set()
        for source in (
            str(private / "secret.png"),
            str(private / "missing.png"),
            f"file://{private / 'secret.png'}",
            str(inside / ".." / private.name / "secret.png"),
            str(inside / "link.mp4"),  # a link out of the source folders
            "/etc/passwd",
            "http://169.254.169.254/latest/meta-data",
            "https://intranet.example/cam.mp4",
            "ftp://files.example/cam.mp4",
            "udp://@:9999",  # the edge listening on a port of the client's choosing
        ):
            code, reply = request(
                control.url + "/cameras", "POST", camera("x", clips[0]) | {"source": source}
            )
            assert code == 400 and "source refused" in reply["error"], (source, reply)
            said.add(reply["error"])
            code, reply = request(control.url + "/cameras/a", "PATCH", {"source": source})
            assert code == 400 and "source refused" in reply["error"], (source, reply)
        assert len(said) == 1  # the same words whatever the file
        assert [c.id for c in runner.cfg.cameras] == ["a"] and [s.cam.id for s in runner.sources] == ["a"]
        ok = request(control.url + "/cameras", "POST", camera("x", clips[1]))
        assert ok[0] == 201, ok  # a recording under the source folders
        ok = request(
            control.url + "/cameras", "POST", camera("y", clips[1]) | {"source": "rtsp://10.0.0.9/1"}
        )
        assert ok[0] == 201, ok  # a camera stream
        # a password the client points to: only a file in the secret folders, never a variable
        (tmp_path / "camera-secrets").mkdir()
        (tmp_path / "camera-secrets" / "z").write_text("pw")
        (tmp_path / "camera-secrets" / "out").symlink_to("/etc/passwd")
        stream = camera("z", clips[1]) | {"source": "rtsp://admin@10.0.0.9/1"}
        for creds in (
            {"password_file": "/etc/shadow"},
            {"password_file": str(private / "secret.png")},
            {"password_file": str(tmp_path / "camera-secrets" / "out")},  # a link out of them
            {"password_file": "camera-secrets/z"},  # relative: to what?
            {"password_env": "PGPASSWORD"},
        ):
            code, reply = request(control.url + "/cameras", "POST", stream | {"credentials": creds})
            assert code == 400 and "credentials refused" in reply["error"], (creds, reply)
            code, reply = request(control.url + "/cameras/y", "PATCH", {"credentials": creds})
            assert code == 400 and "credentials refused" in reply["error"], (creds, reply)
        good = {"credentials": {"password_file": str(tmp_path / "camera-secrets" / "z")}}
        assert request(control.url + "/cameras", "POST", stream | good)[0] == 201
    finally:
        control.close()
        runner.stop()


def test_the_published_openapi_document_is_the_interfaces_own() -> None:
    """docs/control-openapi.json (for ICCC integrators) is what the edge serves at /openapi.json:
    regenerate it with `python -m pipeline.control > docs/control-openapi.json` when the API changes."""
    from pipeline.control import openapi_schema

    published = json.loads((Path(__file__).parent.parent / "docs" / "control-openapi.json").read_text())
    assert published == json.loads(json.dumps(openapi_schema()))
