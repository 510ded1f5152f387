"""GPU benchmark (run by scripts/gpu_check.sh on a GPU machine): streams per GPU, NVDEC, inference.

Side by side in one run, on the clips prepared by scripts/gpu_prepare.py:
(1) PyNvVideoCodec alone: N threads, each demuxing and decoding its own copy of the clip flat out;
(2) the model alone: torch fp16 inference on full batches;
(3) the pipeline flat out on the same N streams (decode throughput vs (1));
(4) the pipeline in real time with a growing number of streams: a level is sustained when every
    stream decodes at >= 95 % of its frame rate and under 1 % of sampled frames are dropped.
Writes JSON, Markdown and a PNG plot.

``--device cpu`` rehearses the whole benchmark on a CPU machine (PyAV decoding, torch fp32 on the CPU,
a few streams): it checks the benchmark and its reports end to end before device time is spent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402

from pipeline.config import parse_config  # noqa: E402
from pipeline.metrics import Metrics  # noqa: E402
from pipeline.runner import Runner  # noqa: E402


def decode_alone(clip: Path, *, streams: int, seconds: float, gpu: bool) -> float:
    """Frames per second that ``streams`` decoders in as many threads reach, each on its own copy of the
    clip: PyNvVideoCodec's demuxer and decoder (one per thread, flushed and reused at each loop, as the
    pipeline does), or PyAV on the CPU (the rehearsal, or a machine where NVDEC cannot be reached)."""
    counts = [0] * streams
    passed = [False] * streams
    started = threading.Barrier(streams + 1, timeout=120)  # the clock starts when every decoder has a frame
    go = threading.Event()
    stop = [float("inf")]

    def count(k: int, n: int) -> bool:
        """Count frames once the clock runs; a thread's first frames wait there for all the others."""
        if not passed[k]:
            passed[k] = True
            started.wait()
            go.wait()
            return True
        counts[k] += n
        return time.monotonic() < stop[0]

    def worker(k: int) -> None:
        try:
            decode(k)
        except BaseException:
            started.abort()  # the others and the clock do not wait for this one for ever
            raise

    def decode(k: int) -> None:
        if not gpu:
            import av

            while True:
                with av.open(str(clip)) as container:
                    for _ in container.decode(video=0):
                        if not count(k, 1):
                            return
        from pipeline.sources.nvdec import load_nvc

        nvc = load_nvc()
        torch.cuda.set_device(0)
        stream = torch.cuda.Stream()
        dec = None
        while True:
            dmx = nvc.CreateDemuxer(filename=str(clip))
            if dec is None:
                dec = nvc.CreateDecoder(
                    gpuid=0,
                    codec=dmx.GetNvCodecId(),
                    cudacontext=0,
                    cudastream=stream.cuda_stream,
                    usedevicememory=True,
                )
            for packet in dmx:
                frames = len(dec.Decode(packet))
                if frames and not count(k, frames):
                    return
            flush = nvc.PacketData()
            flush.bsl = 0
            count(k, len(dec.Decode(flush)))

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(streams)]
    for t in threads:
        t.start()
    started.wait()
    t0 = time.monotonic()
    stop[0] = t0 + seconds
    go.set()
    for t in threads:
        t.join(seconds + 30)
    return sum(counts) / (time.monotonic() - t0)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def inference_alone(model: Path, *, batch: int, seconds: float, device: str) -> float:
    from pipeline.detect.torch_backend import TorchDetector

    det = TorchDetector(
        model, name="m", imgsz=640, conf_threshold=0.25, iou_threshold=0.7, max_det=300, device=device
    )
    x = torch.rand(batch, 3, 384, 640, device=device, dtype=det.input_dtype)
    for _ in range(2):
        det.infer(x)
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        det.infer(x)
        n += batch
    _sync(device)
    return n / (time.perf_counter() - t0)


def stages_alone(*, batch: int, seconds: float, device: str) -> dict[str, float]:
    """What the GPU does per frame without any decoder: NV12 1080p frames (made on the device) through
    the pipeline's letterbox + colour conversion, and JPEG encoding of one frame (nvJPEG on a GPU)."""
    from torchvision.io import encode_jpeg

    from pipeline.preprocess import letterbox_batch
    from pipeline.types import ColorSpec

    spec = ColorSpec("bt709", False)
    frames = [torch.randint(16, 235, (1620, 1920), dtype=torch.uint8, device=device) for _ in range(batch)]
    rgb = torch.randint(0, 255, (3, 1080, 1920), dtype=torch.uint8, device=device)
    out: dict[str, float] = {}
    for name, work, per in (
        ("preprocess_fps", lambda: letterbox_batch(frames, size=640, nv12=[spec] * batch), batch),
        ("jpeg_fps", lambda: encode_jpeg(rgb, quality=85), 1),
    ):
        work()
        _sync(device)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            work()
            n += per
        _sync(device)
        out[name] = round(n / (time.perf_counter() - t0), 1)
    return out


def have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def pipeline_run(
    clip: Path,
    model: Path,
    *,
    streams: int,
    seconds: float,
    realtime: bool,
    batch: int,
    fps: float,
    tmp: Path,
    device: str,
    decoder: str,
) -> dict[str, Any]:
    gpu = device.startswith("cuda")
    cfg = parse_config(
        {
            "edge_id": "gpu-bench",
            "device": device,
            "decoder": decoder,
            "cameras": [
                {
                    "id": f"c{k:03d}",
                    "source": str(clip),
                    "loop": True,
                    "realtime": realtime,
                    "analytics_fps": fps,
                }
                for k in range(streams)
            ],
            "model": {"backend": "torch", "path": str(model), "imgsz": 640},
            "batching": {
                "max_batch_size": batch,
                "timeout_ms": 20,
                "queue_frames": max(4 * batch, streams * 2),
            },
            "sink": {
                "endpoint": "tcp://127.0.0.1:5999",
                "outbox": str(tmp / f"outbox-{streams}.sqlite"),
                "insecure": True,
            },
            "status_interval_seconds": 3600,
        }
    )
    metrics = Metrics()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    runner = Runner(cfg, metrics=metrics)
    runner.start()
    # warm-up: every decoder open and past its first frame (created lazily, 288 of them take a while),
    # then a second to settle; a camera that started late would otherwise look too slow
    t_start = time.monotonic()
    while time.monotonic() - t_start < 30 and any(c.decoded == 0 for c in runner.stats.cameras.values()):
        time.sleep(0.1)
    warmup = time.monotonic() - t_start
    time.sleep(1.0)
    s0 = {k: (c.decoded, c.analysed, c.dropped) for k, c in runner.stats.cameras.items()}
    dets = [m.detector for m in runner.detector.members]

    def moved() -> tuple[int, int]:  # device -> host bytes and batches, over the set's detectors
        return sum(getattr(d, "bytes_to_host", 0) for d in dets), max(
            getattr(d, "batches_run", 0) for d in dets
        )

    b0, n0 = moved()
    lat0 = metrics.registry.get_sample_value("safecity_frame_latency_seconds_count") or 0
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    s1 = {k: (c.decoded, c.analysed, c.dropped) for k, c in runner.stats.cameras.items()}
    used_gib = None
    if gpu:  # the whole device: NVDEC surfaces, decoder pools and contexts are not torch's allocations
        free, total = torch.cuda.mem_get_info()
        used_gib = round((total - free) / 2**30, 2)
    b1, n1 = moved()
    p95 = _histogram_quantile(metrics, "safecity_frame_latency_seconds", 0.95)
    runner.request_stop()
    runner.stop()
    decoded = sum(s1[k][0] - s0[k][0] for k in s1)
    analysed = sum(s1[k][1] - s0[k][1] for k in s1)
    dropped = sum(s1[k][2] - s0[k][2] for k in s1)
    slowest = min((s1[k][0] - s0[k][0]) / elapsed for k in s1)
    return {
        "streams": streams,
        "decode_fps": round(decoded / elapsed, 1),
        "slowest_stream_fps": round(slowest, 2),
        "analysed_fps": round(analysed / elapsed, 1),
        "dropped_fraction": round(dropped / max(analysed + dropped, 1), 4),
        "frame_latency_p95_seconds": p95,
        "gpu_memory_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
        "gpu_memory_used_gib": used_gib,
        "warmup_seconds": round(warmup, 1),
        "device_to_host_bytes_per_batch": round((b1 - b0) / max(n1 - n0, 1), 1),
        "latency_samples": (metrics.registry.get_sample_value("safecity_frame_latency_seconds_count") or 0)
        - lat0,
    }


def _histogram_quantile(metrics: Metrics, name: str, q: float) -> float | None:
    buckets = []
    for metric in metrics.registry.collect():
        for s in metric.samples:
            if s.name == f"{name}_bucket":
                buckets.append((float(s.labels["le"]), s.value))
    if not buckets:
        return None
    buckets.sort()
    total = buckets[-1][1]
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return None


def clip_fps(clip: Path, *, nvdec: bool) -> float:
    if not nvdec:
        import av

        with av.open(str(clip)) as container:
            return float(container.streams.video[0].average_rate or 30.0)
    from pipeline.sources.nvdec import load_nvc

    return float(load_nvc().CreateDemuxer(filename=str(clip)).FrameRate() or 30.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="data/gpu")
    ap.add_argument("--out", default="benchmarks/results")
    # two real-time levels per codec, at and below the targets (>= 170 H.264, >= 280 HEVC): with the
    # flat-out runs, six runner start/stops fit the check's time with margin
    ap.add_argument("--h264-streams", default="128,176")
    ap.add_argument("--hevc-streams", default="224,288")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--analytics-fps", type=float, default=5.0)
    ap.add_argument("--device", default="cuda:0", help="cpu: rehearse on a CPU machine (PyAV, torch fp32)")
    ap.add_argument(
        "--decoder",
        choices=["nvdec", "pyav"],
        default=None,
        help="pyav: decode on the CPU cores (where NVDEC cannot be reached); default: nvdec on a GPU",
    )
    args = ap.parse_args(argv)
    device = args.device
    gpu = device.startswith("cuda")
    decoder = args.decoder or ("nvdec" if gpu else "pyav")
    nvdec = decoder == "nvdec"
    ref, out = Path(args.ref), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = ref / "fall-yolov8.pt"
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0) if gpu else "CPU rehearsal (no GPU)",
        "model": f"{model.name} (torch {'fp16' if gpu else 'fp32'}, 640 px)",
        "decoder": "PyNvVideoCodec (NVDEC)" if nvdec else "PyAV (CPU)",
        "nvdec_unavailable": gpu and not nvdec,
        "analytics_fps_per_stream": args.analytics_fps,
        "batch": args.batch,
    }

    def save() -> None:  # after every measurement: a check killed at its time limit keeps what it measured
        (out / "gpu.json").write_text(json.dumps(report, indent=2))
        _write_markdown(report, out / "gpu.md")
        _plot(report, out / "gpu.png")

    report["inference_alone_fps"] = round(
        inference_alone(model, batch=args.batch, seconds=5, device=device), 1
    )
    report.update(stages_alone(batch=args.batch, seconds=3, device=device))
    save()
    if not nvdec and not have_pyav():
        report["no_decoder"] = "neither NVDEC nor PyAV on this machine: only the stages above were measured"
        save()
        print(json.dumps(report, indent=2))
        return 0
    with tempfile.TemporaryDirectory() as tmpdir:
        for codec, levels in (("h264", args.h264_streams), ("hevc", args.hevc_streams)):
            clip = ref / f"cctv1080_{codec}.mp4"
            fps = clip_fps(clip, nvdec=nvdec)
            n_max = max(int(x) for x in levels.split(","))
            r: dict[str, Any] = {"clip": f"{clip.name}, 1920x1080 at {fps:g} fps", "levels": []}
            report[codec] = r
            r["nvdec_alone_fps"] = round(
                decode_alone(clip, streams=n_max, seconds=args.seconds / 2, gpu=nvdec), 1
            )
            flat = pipeline_run(
                clip,
                model,
                streams=n_max,
                seconds=args.seconds / 2,
                realtime=False,
                batch=args.batch,
                fps=args.analytics_fps,
                tmp=Path(tmpdir),
                device=device,
                decoder=decoder,
            )
            r["pipeline_flat_out"] = flat
            r["decode_vs_nvdec_alone"] = round(flat["decode_fps"] / r["nvdec_alone_fps"], 3)
            save()
            for n in (int(x) for x in levels.split(",")):
                lvl = pipeline_run(
                    clip,
                    model,
                    streams=n,
                    seconds=args.seconds,
                    realtime=True,
                    batch=args.batch,
                    fps=args.analytics_fps,
                    tmp=Path(tmpdir),
                    device=device,
                    decoder=decoder,
                )
                lvl["sustained"] = lvl["slowest_stream_fps"] >= 0.95 * fps and lvl["dropped_fraction"] <= 0.01
                r["levels"].append(lvl)
                print(codec, lvl, flush=True)
                save()
            ok = [lv["streams"] for lv in r["levels"] if lv["sustained"]]
            r["streams_sustained"] = max(ok) if ok else 0
            save()
    print(json.dumps(report, indent=2))
    return 0


def _write_markdown(report: dict[str, Any], path: Path) -> None:
    lines = [
        f"# GPU benchmark ({report['date']}, {report['gpu']})",
        "",
        f"Model {report['model']}, batch {report['batch']}, "
        f"{report['analytics_fps_per_stream']} analysed fps "
        f"per stream; inference alone {report.get('inference_alone_fps', '-')} frames/s; NV12 1080p "
        f"letterbox + colour conversion {report.get('preprocess_fps', '-')} frames/s; JPEG encoding of a "
        f"1080p frame {report.get('jpeg_fps', '-')}/s.",
        "",
    ]
    if report.get("no_decoder"):
        lines += [f"**{report['no_decoder']}.**", ""]
    if report.get("nvdec_unavailable"):
        lines += [
            "**NVDEC could not be reached on this machine: frames were decoded by PyAV on the CPU.**",
            "",
        ]
    for codec in ("h264", "hevc"):
        r = report.get(codec)
        if not r:
            continue
        flat = r.get("pipeline_flat_out")
        lines += [
            f"## {codec.upper()}: {r['clip']}",
            "",
            f"Streams sustained in real time: **{r.get('streams_sustained', 'not measured yet')}**. "
            f"{report.get('decoder', 'Decoder')} alone: {r.get('nvdec_alone_fps', '-')} fps; "
            + (
                f"pipeline flat out: {flat['decode_fps']} fps "
                f"({r['decode_vs_nvdec_alone']:.0%} of the decoder alone)."
                if flat
                else "pipeline flat out: not measured yet."
            ),
            "",
            "| streams | decode fps | slowest stream fps | analysed fps | dropped | p95 latency s "
            "| GPU GiB (torch / device) | D2H bytes/batch | sustained |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|:-:|",
        ]
        for lv in r["levels"]:
            lines.append(
                f"| {lv['streams']} | {lv['decode_fps']} | {lv['slowest_stream_fps']} | {lv['analysed_fps']} "
                f"| {lv['dropped_fraction']:.2%} | {lv['frame_latency_p95_seconds']} | "
                f"{lv['gpu_memory_peak_gib'] if lv['gpu_memory_peak_gib'] is not None else '-'} / "
                f"{lv.get('gpu_memory_used_gib') if lv.get('gpu_memory_used_gib') is not None else '-'} | "
                f"{lv['device_to_host_bytes_per_batch']} | "
                f"{'yes' if lv['sustained'] else 'no'} |"
            )
        lines.append("")
    path.write_text("\n".join(lines))


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for codec in ("h264", "hevc"):
        r = report.get(codec)
        if r:
            xs = [lv["streams"] for lv in r["levels"]]
            ax.plot(xs, [lv["decode_fps"] for lv in r["levels"]], marker="o", label=f"{codec} decoded fps")
            ax.plot(xs, [x * float(r["clip"].split(" at ")[1].split()[0]) for x in xs], ls=":", color="grey")
    ax.set_xlabel("streams")
    ax.set_ylabel("frames / s")
    ax.set_title(f"{report['gpu']}: real-time decode (dotted: needed)", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
