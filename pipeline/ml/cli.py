"""``safecity models ...`` and ``safecity dataset ...``: the model registry and the retraining loop.

safecity models list | fetch NAME | quantize NAME --calibrate FOOTAGE...
safecity models train --base NAME --data DATASET --epochs N     -> NAME@N in the local registry
safecity models versions                                        the versions made here
safecity models eval NAME@N --data DATASET                      mAP (Ultralytics' validation)
safecity models compare A B --config C ANNOTATION...            incident accuracy, side by side
safecity dataset extract FOOTAGE... --out DIR --every S         frames + teacher labels
safecity dataset import DATASET EXPORT                          corrected labels (CVAT, Label Studio)
safecity dataset hash DATASET
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError

TEACHER = "yolov3-tiny-coco"
SWAP_WAIT_S = 600.0  # a swap loads and checks the model before it answers (a TensorRT build takes minutes)


def add_parsers(sub: Any) -> None:
    m = sub.add_parser("models", help="the model registry: fetch, quantize, train, evaluate, compare")
    ms = m.add_subparsers(dest="action", required=True, metavar="ACTION")
    ms.add_parser("list", help="the manifest's models and whether they are fetched").set_defaults(
        func=cmd_list
    )
    f = ms.add_parser("fetch", help="download, verify and export a manifest model")
    f.add_argument("name")
    f.add_argument(
        "--allow-unpinned", action="store_true", help="accept a model with no sha256 in the manifest"
    )
    f.add_argument("--imgsz", type=int, default=None)
    f.add_argument(
        "--torchscript-batch", type=int, default=None, help="also export TorchScript for this batch"
    )
    f.set_defaults(func=cmd_fetch)
    q = ms.add_parser("quantize", help="the INT8 export of a manifest model, if it agrees with the float one")
    q.add_argument("name")
    q.add_argument("--calibrate", nargs="+", metavar="FOOTAGE", help="recordings of your own cameras")
    q.set_defaults(func=cmd_quantize)
    t = ms.add_parser("train", help="fine-tune a model on a dataset into a new version NAME@N")
    t.add_argument("--base", required=True, help="a fetched manifest model (fall-yolov8) or a version NAME@N")
    t.add_argument("--data", required=True, type=Path, help="a dataset (`safecity dataset extract`)")
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--imgsz", type=int, default=None, help="training image size (default: the model's)")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--device", default="cpu", help="cpu, or a CUDA device index such as 0")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--lr0", type=float, default=None, help="initial learning rate (SGD); default: Ultralytics'"
    )
    t.set_defaults(func=cmd_train)
    ms.add_parser("versions", help="the versions made here").set_defaults(func=cmd_versions)
    sr = ms.add_parser(
        "shadow-report", help="what a shadow run recorded: agreement, incidents only one raised"
    )
    sr.add_argument("--db", type=Path, required=True, help="shadow.sqlite (beside the edge's outbox)")
    sr.add_argument("--run", type=int, default=None, help="which run (default: the latest)")
    sr.add_argument("--json", action="store_true", help="the report as JSON")
    sr.set_defaults(func=cmd_shadow_report)
    e = ms.add_parser("eval", help="mAP of a model on a dataset (Ultralytics' validation)")
    e.add_argument("model", help="NAME@N, or a fetched manifest model")
    e.add_argument("--data", required=True, type=Path)
    e.add_argument("--split", default="val", choices=["val", "train"])
    e.add_argument("--imgsz", type=int, default=None)
    e.set_defaults(func=cmd_eval)
    c = ms.add_parser("compare", help="incident accuracy of two models on annotated footage, side by side")
    c.add_argument("a", help="the model now (a manifest name or NAME@N)")
    c.add_argument("b", help="the candidate")
    c.add_argument("annotations", nargs="+", type=Path, help="annotation files (see the README)")
    c.add_argument("--config", required=True, type=Path, help="the edge config whose cameras and rules run")
    c.add_argument("--iou", type=float, default=None, help="temporal IoU for a match (default 0.3)")
    c.add_argument("--json", type=Path, default=None, help="also write the comparison as JSON here")
    c.set_defaults(func=cmd_compare)

    for action, text in (
        ("swap", "swap a running edge's detector for another version, live (checked, then on probation)"),
        ("rollback", "take back a swap on probation on a running edge"),
        ("running", "what each detector of a running edge runs, a swap on probation, a shadow"),
        ("shadow", "run another model beside a running edge's detector, recorded, never sent"),
        ("shadow-stop", "stop the shadow on a running edge"),
    ):
        w = ms.add_parser(action, help=text)
        if action != "running":
            w.add_argument("id", help="the detector's id in the edge's config (e.g. fall-yolov8)")
        if action in ("swap", "shadow"):
            w.add_argument("model", help="a registered version, NAME@N (`safecity models versions`)")
        if action == "shadow":
            w.add_argument("--share", type=float, default=0.25, help="share of the batches it runs on")
        w.add_argument("--control", default="127.0.0.1:8089", help="the edge's --control address")
        w.add_argument(
            "--token-file", help="the edge's --control-token-file (default: control.token in the data folder)"
        )
        w.set_defaults(func=cmd_live)

    d = sub.add_parser("dataset", help="datasets from footage for fine-tuning (YOLO format)")
    ds = d.add_subparsers(dest="action", required=True, metavar="ACTION")
    x = ds.add_parser("extract", help="sample frames of recordings into a dataset, labels by a teacher model")
    x.add_argument("footage", nargs="+", type=Path)
    x.add_argument("--out", required=True, type=Path, help="the new dataset's directory")
    x.add_argument("--every", type=float, default=2.0, help="seconds between sampled frames")
    x.add_argument(
        "--teacher",
        default=TEACHER,
        help=f"the manifest model that pre-fills labels (default {TEACHER}; none)",
    )
    x.add_argument(
        "--classes",
        default=None,
        help="the dataset's classes, comma-separated; NAME=TEACHER_CLASS[|...] labels NAME from the "
        "teacher's classes (Normal=person), NAME= a class it does not label (Fall=); default: the teacher's "
        "classes its roles name",
    )
    x.add_argument("--conf", type=float, default=0.3, help="the teacher's confidence threshold")
    x.add_argument("--split", default="time", choices=["time", "camera"], help="never by random frame")
    x.add_argument("--val", type=float, default=0.2, help="share of samples (or recordings) for validation")
    x.set_defaults(func=cmd_extract)
    i = ds.add_parser("import", help="take corrected labels from a CVAT or Label Studio YOLO export")
    i.add_argument("dataset", type=Path)
    i.add_argument("export", type=Path, help="the export: a directory or a .zip")
    i.set_defaults(func=cmd_import)
    n = ds.add_parser(
        "negatives",
        help="add the frames of the false alarms operators marked in the console, as hard negatives",
    )
    n.add_argument("dataset", type=Path)
    n.add_argument("--db", required=True, help="the sink's store (it keeps the frames): SQLite file or URL")
    n.add_argument("--console-db", metavar="FILE", help="the console's store, if not beside --db")
    n.add_argument(
        "--reason",
        default="detection",
        help="which false alarms: detection (the model saw something not there; the default), "
        "behaviour (the objects were right), or any",
    )
    n.set_defaults(func=cmd_negatives)
    h = ds.add_parser("hash", help="a dataset's content hash (class names, images, labels)")
    h.add_argument("dataset", type=Path)
    h.set_defaults(func=cmd_hash)


def cmd_list(args: argparse.Namespace) -> int:
    from ..registry import load_manifest, onnx_path
    from .versions import all_versions

    for name, e in load_manifest().items():
        have = "fetched" if onnx_path(name).is_file() else "not fetched"
        print(f"{name:18} {e.get('licence', '?')[:24]:24} {have:12} {e.get('description', '')}")
    for v in all_versions():
        print(
            f"{v.ref:18} {'(made here)':24} {'version':12} fine-tuned from {v.base} on "
            f"{Path(v.dataset['path']).name}"
        )
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from ..registry import fetch_model

    path = fetch_model(
        args.name,
        allow_unpinned=args.allow_unpinned,
        imgsz=args.imgsz,
        torchscript_batch=args.torchscript_batch,
    )
    print(path)
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    """The INT8 export, if it agrees with the float model on held-out frames."""
    from ..detect.quantize import quantize
    from ..registry import int8_path, load_manifest, onnx_path

    if args.name not in load_manifest():
        raise ConfigError(f"models quantize: {args.name!r} is not in the manifest")
    if not onnx_path(args.name).is_file():
        raise ConfigError(f"models quantize: fetch it first: safecity models fetch {args.name}")
    if not args.calibrate:
        raise ConfigError("models quantize: give --calibrate FOOTAGE... (recordings of your own cameras)")
    footage = [Path(p) for p in args.calibrate]
    missing = [str(p) for p in footage if not p.is_file()]
    if missing:
        raise ConfigError(f"models quantize --calibrate: not found: {', '.join(missing)}")
    dest = int8_path(args.name)
    r = quantize(onnx_path(args.name), footage, dest)
    print(
        f"{dest}: agrees with the float model on {r.frames} held-out frames (recall {r.recall:.3f}, "
        f"precision {r.precision:.3f}); {r.candidate_ms} ms a frame against {r.reference_ms} ms here. "
        f"Use it with models: [{{name: {args.name}, precision: int8}}]"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    device = args.device if args.device == "cpu" or args.device.isdigit() else None
    if device is None:
        raise ConfigError(f"--device: got {args.device!r}; expected cpu or a CUDA device index (0, 1 ...)")
    v = train(
        args.base,
        args.data,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device=device,
        seed=args.seed,
        lr0=args.lr0,
    )
    metrics = ", ".join(f"{k} {x:.3f}" for k, x in v.metrics.items()) or "no metrics"
    check = v.export_check
    print(
        f"{v.ref}: fine-tuned from {v.base} on {args.data} (hash {v.dataset['hash'][:12]}); {metrics}; "
        f"ONNX export agrees with the checkpoint (recall {check['recall']:.3f}, precision "
        f"{check['precision']:.3f} on {check['frames']} frames). Use it with models: [{{name: {v.ref}}}]"
    )
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from .versions import all_versions

    versions = all_versions()
    if not versions:
        print("no versions yet: make one with `safecity models train --base NAME --data DATASET --epochs N`")
    for v in versions:
        metrics = ", ".join(f"{k} {x:.3f}" for k, x in v.metrics.items())
        print(
            f"{v.ref:20} {v.created}  from {v.base}; data {Path(v.dataset['path']).name} "
            f"({v.dataset['hash'][:12]}); classes {', '.join(v.class_names)}; {metrics}"
        )
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    """``models swap | rollback | running``: through a running edge's control interface."""
    import sys

    from ..cli import control_target
    from ..control import request

    token, base = control_target(args)
    if args.action == "running":
        code, reply = request(f"{base}/models", "GET", token=token)
    elif args.action == "rollback":
        code, reply = request(f"{base}/models/{args.id}/rollback", "POST", token=token)
    elif args.action == "shadow-stop":
        code, reply = request(f"{base}/models/{args.id}/shadow", "DELETE", token=token)
    else:
        body: dict[str, Any] = {"name": args.model}
        path = f"{base}/models/{args.id}"
        if args.action == "shadow":
            body["share"], path = args.share, f"{path}/shadow"
        code, reply = request(path, "POST", body, token=token, timeout_s=SWAP_WAIT_S)
    if code >= 400:
        print(f"error: {(reply or {}).get('error', code)}", file=sys.stderr)
        return 2 if code == 400 else 1
    print(json.dumps(reply, indent=1))
    return 0


def cmd_shadow_report(args: argparse.Namespace) -> int:
    from .shadow_report import format_report, shadow_report

    rep = shadow_report(args.db, run=args.run)
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    r = evaluate(args.model, args.data, imgsz=args.imgsz, split=args.split)
    print(json.dumps(r, indent=2))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..accuracy.annotations import load
    from ..accuracy.score import DEFAULT_IOU
    from ..config import load_config
    from .evaluate import compare

    cfg = load_config(args.config)
    anns = [load(p) for p in args.annotations]
    iou = DEFAULT_IOU if args.iou is None else args.iou
    result = compare(cfg, args.a, args.b, anns, iou=iou)
    table = Table(title=f"incidents on {len(anns)} annotated file(s): {args.a} against {args.b}")
    for col in ("type", "model", "true", "TP", "FP", "FN", "precision", "recall", "F1"):
        table.add_column(col, no_wrap=True)
    for t in sorted(set(result.scores[args.a]) | set(result.scores[args.b])):
        for ref in (args.a, args.b):
            s = result.scores[ref].get(t)
            row = s.summary() if s else None
            table.add_row(
                t,
                ref,
                *(str(row[k]) if row else "-" for k in ("true", "tp", "fp", "fn")),
                *(_num(row[k]) if row else "-" for k in ("precision", "recall", "f1")),
            )
    console = Console()
    console.print(table)
    console.print(
        f"verdict: {args.b} is [bold]{result.verdict}[/] than {args.a}"
        if result.verdict != "same"
        else "verdict: the same incidents, right and wrong"
    )
    for line in result.differences:
        console.print(f"  {line}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "a": args.a,
                    "b": args.b,
                    "verdict": result.verdict,
                    "types": {
                        ref: [s.summary() for s in scores.values()] for ref, scores in result.scores.items()
                    },
                    "differences": result.differences,
                },
                indent=2,
            )
        )
    return 0


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def parse_classes(
    spec: str | None, teacher_names: list[str], default: list[str]
) -> tuple[list[str], dict[str, int]]:
    """``--classes``: the dataset's class names, and which teacher class labels which of them."""
    items = [c.strip() for c in spec.split(",") if c.strip()] if spec else default
    names: list[str] = []
    mapping: dict[str, int] = {}
    for item in items:
        name, _, sources = item.partition("=")
        name = name.strip()
        if not name or name in names:
            raise ConfigError(f"--classes: {item!r}: each class once, with a name")
        names.append(name)
        if "=" in item and not sources.strip():  # NAME=: a class the teacher does not label
            continue
        for src in (s.strip() for s in (sources.split("|") if sources else [name])):
            if teacher_names and src not in teacher_names:
                raise ConfigError(
                    f"--classes: {src!r} is not a class of the teacher; its classes: "
                    f"{', '.join(teacher_names[:20])}{' ...' if len(teacher_names) > 20 else ''}"
                )
            mapping[src] = len(names) - 1
    return names, mapping


def cmd_extract(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from .dataset import dataset_hash, extract, teacher_model

    teacher = None
    teacher_names: list[str] = []
    default: list[str] = []
    if args.teacher != "none":
        teacher, default = teacher_model(args.teacher, conf=args.conf)
        teacher_names = teacher.class_names
    elif not args.classes:
        raise ConfigError("--classes: with --teacher none, name the dataset's classes")
    names, mapping = parse_classes(args.classes, teacher_names, default)
    if teacher is not None:
        teacher.mapping = mapping
    with Progress(transient=True) as bar:
        task = bar.add_task("sampling frames", total=None)
        info = extract(
            args.footage,
            args.out,
            every_s=args.every,
            teacher=teacher,
            names=names,
            split=args.split,
            val_share=args.val,
            teacher_name=None if teacher is None else args.teacher,
            teacher_conf=None if teacher is None else args.conf,
            progress=lambda n: bar.advance(task, n),
        )
    print(
        f"{args.out}: {info.counts['train']} training and {info.counts['val']} validation images "
        f"(split by {info.split}), classes {', '.join(info.names)}, labels by "
        f"{args.teacher if teacher else 'nobody (empty)'}; hash {dataset_hash(args.out)[:12]}. Correct the "
        "labels (CVAT, Label Studio: YOLO format), then `safecity dataset import`"
    )
    return 0


def cmd_negatives(args: argparse.Namespace) -> int:
    from ..console.store import ConsoleStore, console_path
    from ..events.store import local_file, open_reader, store_target
    from .dataset import dataset_hash, load_info
    from .negatives import add_negatives, check_reason, describe

    reason = check_reason(args.reason)
    load_info(args.dataset)  # a dataset, before anything is opened
    target = store_target(args.db)
    path = local_file(target, args.console_db, console_path, "--console-db FILE (the console's own store)")
    if not Path(path).is_file():
        raise ConfigError(f"--console-db {path}: no console store there")
    store = ConsoleStore(Path(path))
    db = open_reader(target)
    if db is None:
        store.close()
        raise ConfigError(f"--db {args.db}: no sink store there")
    try:

        def frame(sha: str) -> bytes | None:
            row = db.execute("SELECT jpeg FROM snapshots WHERE sha256 = ?", (sha,)).fetchone()
            return None if row is None else bytes(row[0])

        result = add_negatives(args.dataset, store.verdicts(verdict="false_alarm"), frame, reason=reason)
    finally:
        db.close()
        store.close()
    print(describe(result, args.dataset) + f"; hash {dataset_hash(args.dataset)[:12]}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .dataset import dataset_hash, import_labels

    r = import_labels(args.dataset, args.export)
    print(
        f"{args.dataset}: {r.replaced} label files replaced from {args.export}; {len(r.kept)} images kept "
        f"their labels; {len(r.unknown)} label files of the export name no image here"
        + (f" (e.g. {r.unknown[0]})" if r.unknown else "")
        + f"; hash {dataset_hash(args.dataset)[:12]}"
    )
    return 0


def cmd_hash(args: argparse.Namespace) -> int:
    from .dataset import dataset_hash

    print(dataset_hash(args.dataset))
    return 0
