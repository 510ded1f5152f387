"""Shared fixtures: a tiny YOLO exported to ONNX, generated clips, real footage and model when fetched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
# the edges the tests start keep their control token here (made at the first start), and the
# clients (`safecity cameras`, control.request) read it there: never the checkout's data folder
_TOKENS = __import__("tempfile").mkdtemp(prefix="safecity-tests-")
os.environ.setdefault("SAFECITY_CONTROL_TOKEN_FILE", os.path.join(_TOKENS, "control.token"))

import pytest  # noqa: E402
import torch  # noqa: E402

from .util import free_port  # noqa: E402, F401 - the tests import it from here

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SAFECITY_DATA", REPO / "data"))
FALL_MODEL = DATA / "models" / "fall-yolov8" / "fall-yolov8.onnx"
COCO_DIR = DATA / "models" / "yolov3-tiny-coco"
FOOTAGE = DATA / "footage"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``needs_cuda`` tests skip without a GPU, and fail instead when FAIL_WITHOUT_CUDA=1."""
    if "needs_cuda" in item.keywords and not torch.cuda.is_available():
        if os.environ.get("FAIL_WITHOUT_CUDA") == "1":
            pytest.fail("needs a CUDA GPU and FAIL_WITHOUT_CUDA=1, but torch sees none")
        pytest.skip("needs a CUDA GPU")


class SinkThread:
    """A real sink serving on a loopback port in a thread of the test process."""

    def __init__(self, port: int, db: Path | str, **sink_options: Any) -> None:
        """``sink_options``: further Sink arguments (Curve keys, allowlist, message size limit)."""
        import threading

        from pipeline.events.sink import Sink

        self.stop = threading.Event()
        self.sink = Sink(bind=f"tcp://127.0.0.1:{port}", store=db, **sink_options)
        self.thread = threading.Thread(target=self.sink.serve, args=(self.stop,), daemon=True)
        self.thread.start()
        assert self.sink.ready.wait(5) and self.sink.error is None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YOLO11n built from its YAML (random weights, no download) exported to ONNX, dynamic batch, 320 px.

    The class-score biases are raised and the last class-score weights widened so that the untrained
    head yields many overlapping boxes with distinct scores: decode and NMS get real work to do, and
    no two backends can agree by luck on how to break ties.
    """
    from ultralytics import YOLO

    from pipeline.registry import export_onnx

    torch.manual_seed(0)
    model = YOLO("yolo11n.yaml")
    head = model.model.model[-1]
    with torch.no_grad():
        for seq in head.cv3:
            seq[-1].bias.uniform_(-4.0, 0.5)
            seq[-1].weight.normal_(0.0, 0.05)
    out = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    pt = out.with_suffix(".pt")
    model.save(str(pt))
    return export_onnx(pt, out, imgsz=320)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from pipeline.footage import generate_clip

    d = tmp_path_factory.mktemp("clips")
    return [
        generate_clip(d / f"cam{i}.mp4", width=320, height=240, fps=25, seconds=2.0, gop=25, seed=i)
        for i in range(3)
    ]


@pytest.fixture(scope="session")
def fall_model() -> Path:
    if not FALL_MODEL.is_file():
        pytest.skip(f"real model not fetched ({FALL_MODEL}); run `safecity models fetch fall-yolov8`")
    return FALL_MODEL


@pytest.fixture(scope="session")
def coco_model() -> Path:
    """The COCO-80 YOLOv3-tiny (its ONNX export; cfg, weights and names beside it)."""
    path = COCO_DIR / "yolov3-tiny-coco.onnx"
    if not path.is_file():
        pytest.skip(f"COCO model not fetched ({path}); run `safecity models fetch yolov3-tiny-coco`")
    return path


def unavailable(what: str, how: str) -> NoReturn:
    """A test's real dependency is missing: skipped here, failed in CI (``SAFECITY_CI=1``), where
    ``.ci/run`` provides it (``how``: what gets it)."""
    if os.environ.get("SAFECITY_CI") == "1":
        pytest.fail(f"{what}: CI gets it ({how})")
    pytest.skip(f"{what} ({how})")


@pytest.fixture(scope="session")
def vtest() -> Path:
    """OpenCV's vtest.avi (768x576, 10 fps, people on a campus path, a parked van and car)."""
    path = FOOTAGE / "vtest.avi"
    if not path.is_file():
        unavailable(f"{path} not fetched", "safecity footage samples, with apt-get")
    return path


@pytest.fixture(scope="session")
def samples() -> dict[str, Path]:
    out = {n: FOOTAGE / n for n in ("bikes.mp4", "carphone_pristine.mp4")}
    if not all(p.is_file() for p in out.values()):
        pytest.skip("sample footage not fetched; run `safecity footage samples`")
    return out


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def ml_dataset(tmp_path_factory: pytest.TempPathFactory, coco_model: Path, vtest: Path, samples) -> Path:
    """A dataset of vtest (79 s) every 8 s and bikes every 4 s, people labelled by the COCO teacher as
    the fall model's Normal (its Fall unlabelled): the fall model's classes, so fine-tuning keeps its head."""
    from pipeline.ml import dataset as ds

    teacher, _ = ds.teacher_model("yolov3-tiny-coco", conf=0.3)
    teacher.mapping = {"person": 0}
    dest = tmp_path_factory.mktemp("ml") / "ds"
    ds.extract([vtest, samples["bikes.mp4"]], dest, every_s=8.0, teacher=teacher, names=["Normal", "Fall"])
    return dest


@pytest.fixture(scope="session")
def fall_version(tmp_path_factory: pytest.TempPathFactory, ml_dataset: Path, fall_model: Path):
    """fall-yolov8@1: fall-yolov8 fine-tuned for one epoch at 128 px on ``ml_dataset``, in a registry of
    the session's own ($SAFECITY_VERSIONS, set for the rest of the session)."""
    from pipeline.ml.train import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAFECITY_VERSIONS", str(tmp_path_factory.mktemp("versions")))
        yield train("fall-yolov8", ml_dataset, epochs=1, imgsz=128, batch=4)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """Curve keys for a sink, edge-1 and a stranger; allow.yaml lets edge-1 report its cam1 only."""
    from pipeline.events.security import generate_keys

    d = tmp_path / "keys"
    out = {}
    for name in ("sink", "edge-1", "stranger"):
        out[name] = generate_keys(d, name)[1]
    (tmp_path / "allow.yaml").write_text(
        "edges:\n  - {source: edge-1, public_key: keys/edge-1.key, cameras: [cam1]}\n"
    )
    return out


@pytest.fixture(scope="session")
def postgres() -> Any:
    """A real PostgreSQL server for the session (``tests/postgres.py``); ``postgres.url()`` is a new
    database on it."""
    from .postgres import Postgres, binaries

    bindir = binaries()
    if bindir is None:
        unavailable("PostgreSQL is not installed", "apt-get install postgresql")
    server = Postgres(bindir)
    yield server
    server.close()
