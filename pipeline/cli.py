"""`safecity run | sink | demo | models | dataset | footage | bench | console | users` (models and dataset:
``ml/cli.py``; console and users: ``console/cli.py``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, SafeCityError, SourceError
from .process import settle_heap

if TYPE_CHECKING:
    from .events.store import Db

log = logging.getLogger("safecity")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# signals this process was started ignoring (`nohup` ignores SIGHUP, a shell's `&` SIGINT): left so
_INHERITED_IGNORED = frozenset(s for s in STOP_SIGNALS if signal.getsignal(s) is signal.SIG_IGN)


class Interrupted(BaseException):
    """A stop signal before a command runs its own stop handling (start-up: imports, model load; or a
    command that has none): the process ends at once."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _setup_logging(verbose: bool) -> None:
    from .urls import RedactingFilter

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:  # no password of a camera URL reaches a log
        handler.addFilter(RedactingFilter())


def _install_handler(handler: Callable[[int, object], None]) -> None:
    for sig in STOP_SIGNALS:
        if sig not in _INHERITED_IGNORED:
            signal.signal(sig, handler)


def _install_startup_signals() -> None:
    """Until a command is running, a stop signal ends the process with a one-line message."""

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    _install_handler(handler)


def _install_stop_signals(stop: threading.Event, reload: threading.Event | None = None) -> None:
    """Once running, SIGINT and SIGTERM stop it cleanly: intake stops, in-flight work finishes, the
    outbox drains, the summary is printed. SIGHUP asks for ``reload`` (the config file read again,
    its cameras' changes applied), as service managers expect; without ``reload`` it stops too."""

    def handler(signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP and reload is not None:
            log.warning("SIGHUP: reloading the config file")
            reload.set()
            return
        log.warning("%s: stopping", signal.Signals(signum).name)
        stop.set()

    _install_handler(handler)


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .config import Config, load_config
    from .metrics import Metrics, serve_metrics
    from .report import summary_table
    from .runner import Runner

    def config() -> Config:  # the file, with the command line's overrides (again at each reload)
        cfg = load_config(args.config)
        if args.metrics_port is not None:
            cfg.metrics_port = args.metrics_port
        if args.duration is not None:
            cfg.duration_seconds = args.duration
        return cfg

    cfg = config()
    metrics = Metrics()
    if cfg.metrics_port is not None:
        port = serve_metrics(metrics.registry, cfg.metrics_port)
        print(f"metrics on http://127.0.0.1:{port}/metrics", file=sys.stderr, flush=True)
    runner = Runner(cfg, metrics=metrics, status_stream=None if args.quiet else sys.stderr)
    runner.reload_config = config
    control = None
    if args.control:
        from .control import ControlServer

        token = Path(args.control_token_file) if args.control_token_file else None
        base = Path(args.config).resolve().parent
        control = ControlServer(
            runner,
            args.control,
            token_file=token,
            reload_config=config,
            base_dir=base,
            hosts=args.control_host,
        )
        runner.serving = True
        control.start()
        print(
            f"control interface on {control.url} (its token: {control.token_path})",
            file=sys.stderr,
            flush=True,
        )
    settle_heap()
    _install_stop_signals(runner.stop_event, runner.reload_requested)
    try:
        stats = runner.run(cfg.duration_seconds)
    finally:
        if control is not None:
            control.close()
    Console(stderr=True, width=120).print(summary_table(runner, stats))
    if runner.error is not None:
        raise runner.error
    if all(c.state == "failed" for c in stats.cameras.values()):
        raise SourceError("no camera could be read (each was tried 3 times; see the warnings above)")
    return 0


def cmd_sink(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from .events.sink import Sink, format_event
    from .metrics import serve_metrics

    registry = CollectorRegistry()
    if args.metrics_port is not None:
        port = serve_metrics(registry, args.metrics_port)
        print(f"sink metrics on http://127.0.0.1:{port}/metrics", file=sys.stderr, flush=True)

    def show(event: dict, is_new: bool) -> None:
        if not args.quiet:
            print(("" if is_new else "(duplicate) ") + format_event(event), flush=True)

    from .events.security import load_allowlist, load_keypair

    if args.secret_key and args.allowlist:
        curve, allow = load_keypair(Path(args.secret_key)), load_allowlist(Path(args.allowlist))
    elif args.insecure:
        curve, allow = None, None
    else:
        raise ConfigError("safecity sink: give --secret-key and --allowlist (Curve), or --insecure")
    from .events.store import describe, is_url, store_target

    target = store_target(args.db)
    if is_url(target) and not args.clips:
        raise ConfigError("safecity sink: a PostgreSQL --db needs --clips DIR (a volume the replicas share)")
    if args.http and is_url(target) and not args.console_db:
        raise ConfigError("safecity sink: --http with a PostgreSQL --db needs --console-db FILE")
    sink = Sink(
        bind=args.bind,
        store=target,
        clips=Path(args.clips) if args.clips else None,
        registry=registry,
        on_event=show,
        curve_keypair=curve,
        allowlist=allow,
        clips_max_bytes=int(args.clips_max_gb * 2**30),
    )
    stop = threading.Event()
    _install_stop_signals(stop)
    settle_heap()
    t = threading.Thread(target=sink.serve, args=(stop,), daemon=True)
    t.start()
    while not sink.ready.wait(0.5) and t.is_alive():  # (opening a store may take a while: a migration)
        pass
    if sink.error is not None:
        stop.set()
        raise sink.error
    if sink.ready.is_set():
        where = describe(target)
        print(f"sink listening on {sink.bound_endpoint}, storing to {where}", file=sys.stderr, flush=True)
        if curve is None:
            print("warning: --insecure: accepting unencrypted, unauthenticated incidents", file=sys.stderr)
    console = None
    try:
        if args.http:
            from .console.cli import start_console

            console = start_console(args, registry=registry)
        while t.is_alive() and not stop.is_set():
            t.join(0.2)
            if console is not None and not console.feed.is_alive():
                log.error("the console's feed stopped: stopping")
                break
    finally:
        failed = not stop.is_set()  # the sink thread ended on its own: an error, already logged
        stop.set()
        t.join(5)
        if console is not None:
            console.close()
    return 1 if failed else 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number above 0")
    return value


def cmd_events(args: argparse.Namespace) -> int:
    from .events.sink import format_event
    from .events.store import local_file, open_reader, store_target

    target = store_target(args.db)
    db = open_reader(target)
    if db is None:
        raise ConfigError(f"no sink database at {args.db}")
    try:
        if args.snapshot is not None:
            prefix = _digest_prefix(args.snapshot, "--snapshot")
            rows = db.execute(
                "SELECT sha256, jpeg FROM snapshots WHERE sha256 LIKE ? LIMIT 2", (prefix + "%",)
            ).fetchall()
            if len(rows) != 1:
                wanted = _count(db, "snapshot_wanted", prefix)
                return _not_found("snapshot", args.snapshot, ambiguous=bool(rows), fetching=wanted > 0)
            sha, jpeg = rows[0]
            return _write_out(Path(args.out or f"{sha}.jpg"), jpeg)
        if args.clip is not None:
            from .events.clip_store import SUFFIX, clips_dir

            prefix = _digest_prefix(args.clip, "--clip")
            clips = local_file(target, args.clips, clips_dir, "--clips DIR")
            found = sorted(clips.glob(f"{prefix}*{SUFFIX}"))
            if len(found) != 1:
                wanted = _count(db, "clip_wanted", prefix)
                return _not_found("clip", args.clip, ambiguous=bool(found), fetching=wanted > 0)
            return _write_out(Path(args.out or found[0].name), found[0].read_bytes())
        recent = db.execute(
            "SELECT body FROM events ORDER BY received_at DESC, seq DESC LIMIT ?", (args.last,)
        ).fetchall()
        for (body,) in reversed(recent):
            event = json.loads(body)
            evidence = event.get("evidence") or {}
            sha, clip = evidence.get("sha256"), (evidence.get("clip") or {}).get("sha256")
            print(
                format_event(event)
                + (f" sha256={sha[:16]}" if sha else "")
                + (f" clip={clip[:16]}" if clip else "")
            )
    finally:
        db.close()
    return 0


def _digest_prefix(text: str, option: str) -> str:
    """A sha256 or a prefix of it, as given (``sha256:`` in front, as events write it, allowed)."""
    prefix = text.strip().lower().removeprefix("sha256:")
    if not 1 <= len(prefix) <= 64 or any(c not in "0123456789abcdef" for c in prefix):
        raise ConfigError(f"{option} {text!r}: expected a sha256 (64 hex digits) or the start of one")
    return prefix


def _count(db: Db, table: str, prefix: str) -> int:
    """Rows of ``table`` (snapshot_wanted, clip_wanted) whose sha256 starts with ``prefix``."""
    return int(db.execute(f"SELECT COUNT(*) FROM {table} WHERE sha256 LIKE ?", (prefix + "%",)).fetchone()[0])


def _not_found(what: str, given: str, *, ambiguous: bool, fetching: bool) -> int:
    why = (
        "is ambiguous" if ambiguous else "is still being fetched from its edge" if fetching else "is unknown"
    )
    print(f"{what} {given} {why}", file=sys.stderr)
    return 1


def _write_out(dest: Path, data: bytes) -> int:
    """Write a snapshot or clip to ``dest``: never over another file (the same bytes there already are
    fine), never half (a temporary file renamed)."""
    if dest.is_dir():
        raise ConfigError(f"-o {dest}: is a folder; give a file name")
    if dest.exists():
        if dest.is_file() and dest.read_bytes() == data:
            print(f"{dest} ({len(data)} B, already there)")
            return 0
        raise ConfigError(f"-o {dest}: a file is there already; give another name or remove it first")
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"-o {dest}: cannot write it: {err.strerror or err}") from None
    print(f"{dest} ({len(data)} B)")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from .events.security import generate_keys

    public, secret = generate_keys(Path(args.dir), args.name)
    print(f"public key (give it to the other side): {public}\nsecret key (keep it here, mode 600): {secret}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Fetch the model and footage, start a sink process, run the demo config, show what the sink got."""
    from .config import load_config
    from .footage import fetch_samples
    from .registry import REPO_ROOT, data_dir, fetch_model

    config_path = Path(args.config or REPO_ROOT / "configs" / "demo.yaml")
    cfg = load_config(config_path)
    print("== fetching models and footage (reused when present)", flush=True)
    for m in cfg.models:
        if m.name:
            print(f"model {m.name}: {fetch_model(m.name)}", flush=True)
    for name, p in fetch_samples().items():
        print(f"footage {name}: {p}", flush=True)
    run_dir = data_dir() / "demo"
    run_dir.mkdir(parents=True, exist_ok=True)
    db = run_dir / "sink.sqlite"
    for p in run_dir.glob("*.sqlite*"):
        p.unlink()
    bind = cfg.sink.endpoint if isinstance(cfg.sink.endpoint, str) else cfg.sink.endpoint[0]
    print(f"== starting the ICCC sink on {bind}", flush=True)
    sink_log = run_dir / "sink.log"
    with sink_log.open("w") as logf:
        sink = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "sink", "--bind", bind, "--db", str(db), "--insecure"],
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(1.0)
        if sink.poll() is not None:
            print(sink_log.read_text(), file=sys.stderr)
            print(f"error: the sink exited (is {bind} in use?)", file=sys.stderr)
            return 1
        print(
            f"== running the pipeline on {len(cfg.cameras)} cameras for {cfg.duration_seconds} s", flush=True
        )
        edge = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(config_path)])

        def forward(signum: int, _frame: object) -> None:  # the edge stops cleanly, then we show what came
            edge.send_signal(signal.SIGTERM)

        _install_handler(forward)
        rc = edge.wait()
        if rc != 0:
            return rc
    finally:
        sink.send_signal(signal.SIGTERM)
        try:
            sink.wait(10)
        except subprocess.TimeoutExpired:
            sink.kill()
    print("== incidents received by the sink:", flush=True)
    received = [line for line in sink_log.read_text().splitlines() if "camera=" in line]
    for line in received:
        print("  " + line)
    print(f"== {len(received)} incident events received (sink store: {db})")
    if received:
        saved = save_start_snapshots(db, run_dir / "snapshots")
        print(f"== snapshots of the {len(saved)} incidents that started (objects and zone drawn on them):")
        for p in saved:
            print(f"   {p}")
        print(f"   all events and snapshots: safecity events --db {db} [--snapshot SHA256]")
    return 0 if received else 1


def save_start_snapshots(db_path: Path, out: Path) -> list[Path]:
    """The snapshot of each incident's start event in a sink store, as TYPE-CAMERA-N.jpg files."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jpg"):
        old.unlink()
    saved = []
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT e.body, s.jpeg FROM events e JOIN snapshots s ON s.sha256 = e.snapshot_sha256 "
            "WHERE e.status = 'start' ORDER BY e.received_at, e.seq"
        ).fetchall()
    for n, (body, jpeg) in enumerate(rows, 1):
        event = json.loads(body)
        p = out / f"{event['type']}-{event['camera_id']}-{n}.jpg"
        p.write_bytes(jpeg)
        saved.append(p)
    return saved


def control_target(args: argparse.Namespace) -> tuple[str | None, str]:
    """The token (``--token-file``) and base URL (``--control``) of a running edge's control interface."""
    from .control import default_token_path, read_token

    path = Path(args.token_file) if args.token_file else default_token_path()
    token = read_token(path, "--token-file")
    base = args.control.rstrip("/")
    return token, base if base.startswith(("http://", "https://")) else f"http://{base}"


def cmd_cameras(args: argparse.Namespace) -> int:
    """A thin client of a running edge's control interface."""
    import yaml

    from .control import request

    token, base = control_target(args)

    def body_of(path: str) -> object:
        try:
            return yaml.safe_load(Path(path).read_text() if path != "-" else sys.stdin.read())
        except OSError as err:
            raise ConfigError(f"{path}: cannot read it: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML or JSON: {str(err).splitlines()[0]}") from None

    calls = {
        "health": ("GET", "/health", None),
        "list": ("GET", "/cameras", None),
        "add": ("POST", "/cameras", body_of(args.file) if args.action == "add" else None),
        "patch": ("PATCH", f"/cameras/{args.id}", body_of(args.file) if args.action == "patch" else None),
        "remove": ("DELETE", f"/cameras/{args.id}", None),
        "reload": ("POST", "/reload", None),
    }
    method, path, body = calls[args.action]
    code, reply = request(base + path, method, body, token=token)
    if code >= 400:
        print(f"error: {(reply or {}).get('error', code)}", file=sys.stderr)
        return 2 if code == 400 else 1
    if args.action == "list":
        for cam in reply["cameras"]:
            behind = " BEHIND" if cam["behind"] else ""
            print(
                f"{cam['id']:20} {cam['state']:9} analysed={cam['analysed']} dropped={cam['dropped']} "
                f"incidents={cam['incidents']}{behind}  {cam['config'].get('source')}"
            )
    else:
        print(json.dumps(reply, indent=1))
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from .config import load_config
    from .preview import preview

    cfg = load_config(args.config)
    out = Path(args.out)
    with Progress(transient=True) as bar:
        task = bar.add_task("analysing and drawing", total=args.seconds)
        frames, cam = preview(
            cfg, args.camera, out, seconds=args.seconds, progress=lambda t: bar.update(task, completed=t)
        )
    print(f"{out}: {frames} frames of camera {cam.id} at {cam.analytics_fps:g} fps, annotated")
    return 0


def cmd_footage(args: argparse.Namespace) -> int:
    from rich.progress import track

    from .footage import fetch_samples, generate_clip

    if args.action == "samples":
        for name, p in fetch_samples(Path(args.out) if args.out else None).items():
            print(f"{name}: {p}")
        return 0
    out = Path(args.out or "data/footage/generated")
    codec = {"h264": "libx264", "hevc": "libx265"}.get(args.codec, args.codec)
    for i in track(range(args.count), description="encoding clips"):
        p = out / f"cam{i:03d}.mp4"
        generate_clip(
            p,
            width=args.width,
            height=args.height,
            fps=args.fps,
            seconds=args.seconds,
            gop=args.gop,
            codec=codec,
            bitrate=args.bitrate,
            seed=i,
        )
        print(p)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``safecity bench [throughput | accuracy | capacity | levers | fleet] ...``: each parses its options."""
    rest = list(args.rest)
    if rest and rest[0] == "accuracy":
        from benchmarks.accuracy import main as accuracy_main

        return accuracy_main(rest[1:])
    if rest and rest[0] == "capacity":
        from benchmarks.capacity import main as capacity_main

        return capacity_main(rest[1:])
    if rest and rest[0] == "fleet":
        from benchmarks.fleet import main as fleet_main

        return fleet_main(rest[1:])
    if rest and rest[0] == "levers":
        from benchmarks.levers import main as levers_main

        return levers_main(rest[1:])
    if rest and rest[0] == "throughput":
        rest = rest[1:]
    from benchmarks.throughput import main as bench_main

    return bench_main(rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="safecity", description="Safe City video analytics")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run the pipeline for the cameras of a config")
    r.add_argument("config")
    r.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics (0: any free port)"
    )
    r.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    r.add_argument(
        "--control",
        metavar="HOST:PORT",
        help="serve the control interface (health, cameras changed live), e.g. 127.0.0.1:8089",
    )
    r.add_argument(
        "--control-token-file",
        metavar="FILE",
        help="the secret every control request must carry (Authorization: Bearer); made at the first "
        "start, mode 600 (default: control.token in the data folder, where `safecity cameras` looks)",
    )
    r.add_argument(
        "--control-host",
        metavar="NAME",
        action="append",
        default=[],
        help="a name clients reach the control interface by (its Host header; repeatable), e.g. a "
        "Kubernetes Service's; other names are refused (DNS rebinding)",
    )
    r.add_argument("--quiet", action="store_true", help="no per-second status line")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("sink", help="run the ICCC event sink")
    s.add_argument("--bind", default="tcp://127.0.0.1:5555")
    s.add_argument(
        "--db",
        default="events.sqlite",
        help="the store: a SQLite file, or postgresql://USER@HOST/DB shared by several sinks "
        "(the password from PGPASSWORD or a pgpass file, not the URL)",
    )
    s.add_argument(
        "--clips", metavar="DIR", help="where evidence clips are kept (default: beside a SQLite --db)"
    )
    s.add_argument("--metrics-port", type=int, default=None)
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--secret-key", help="the sink's Curve .key_secret file")
    s.add_argument("--allowlist", help="YAML: edges allowed (source, public_key, cameras)")
    s.add_argument(
        "--insecure", action="store_true", help="no Curve: plain text, anyone may send (prints a warning)"
    )
    s.add_argument(
        "--clips-max-gb",
        type=_positive_float,
        default=500.0,
        help="evidence clips kept (in --clips, or beside the store), at most; the oldest go first",
    )
    from .console.cli import add_console_options

    add_console_options(s, default=None)
    s.set_defaults(func=cmd_sink)

    e = sub.add_parser("events", help="what a sink stored: recent events, or one incident's snapshot or clip")
    e.add_argument(
        "--db", default="events.sqlite", help="the sink's store: a SQLite file or a PostgreSQL URL"
    )
    e.add_argument("--clips", metavar="DIR", help="the sinks' evidence clips (default: beside a SQLite --db)")
    e.add_argument("--last", type=int, default=20, help="show the last N events")
    e.add_argument("--snapshot", metavar="SHA256", help="write this snapshot's JPEG (a prefix will do)")
    e.add_argument("--clip", metavar="SHA256", help="copy this evidence clip's MP4 (a prefix will do)")
    e.add_argument(
        "-o", "--out", default=None, help="where to write the snapshot or clip (default: <sha256>.jpg/.mp4)"
    )
    e.set_defaults(func=cmd_events)

    k = sub.add_parser("keys", help="Curve keypairs for the sink and the edges")
    k.add_argument("action", choices=["generate"])
    k.add_argument("name", help="e.g. sink, or an edge id")
    k.add_argument("--dir", default="keys")
    k.set_defaults(func=cmd_keys)

    d = sub.add_parser("demo", help="fetch model + footage, start a sink, run the demo config")
    d.add_argument("--config", default=None)
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("cameras", help="a running edge's cameras, through its control interface")
    c.add_argument("--control", default="127.0.0.1:8089", help="the edge's --control address")
    c.add_argument(
        "--token-file", help="the edge's --control-token-file (default: control.token in the data folder)"
    )
    cs = c.add_subparsers(dest="action", required=True)
    cs.add_parser("health", help="liveness and readiness")
    cs.add_parser("list", help="each camera: state, counts, source")
    ca = cs.add_parser("add", help="add a camera (a YAML or JSON file of one camera; - for stdin)")
    ca.add_argument("file")
    cp = cs.add_parser("patch", help="change some of a camera's settings (a YAML or JSON file)")
    cp.add_argument("id")
    cp.add_argument("file")
    cr = cs.add_parser("remove", help="remove a camera")
    cr.add_argument("id")
    cs.add_parser("reload", help="read the edge's config file again")
    c.set_defaults(func=cmd_cameras, id=None, file=None)

    pv = sub.add_parser(
        "preview", help="a camera's video with zones, detections, tracks and rule states drawn on it"
    )
    pv.add_argument("config")
    pv.add_argument("--camera", help="the camera's id (default: the config's first)")
    pv.add_argument("-o", "--out", default="preview.mp4", help="the MP4 to write")
    pv.add_argument("--seconds", type=float, default=20.0, help="how much of the video")
    pv.set_defaults(func=cmd_preview)

    from .ml.cli import add_parsers

    add_parsers(sub)  # models, dataset
    from .console.cli import add_parsers as add_console_parsers

    add_console_parsers(sub)  # console, users
    from .bridges.cli import add_parsers as add_bridge_parsers

    add_bridge_parsers(sub)  # bridge
    from .fleet.cli import add_parsers as add_fleet_parsers

    add_fleet_parsers(sub)  # fleet

    f = sub.add_parser("footage", help="real sample clips, or generated CCTV-like clips")
    f.add_argument("action", choices=["samples", "generate"])
    f.add_argument("--out", default=None)
    f.add_argument("-n", "--count", type=int, default=4)
    f.add_argument("--width", type=int, default=1920)
    f.add_argument("--height", type=int, default=1080)
    f.add_argument("--fps", type=int, default=25)
    f.add_argument("--seconds", type=float, default=10.0)
    f.add_argument("--gop", type=int, default=50)
    f.add_argument("--codec", default="h264", choices=["h264", "hevc", "libx264", "libx265"])
    f.add_argument("--bitrate", type=int, default=4_000_000)
    f.set_defaults(func=cmd_footage)

    b = sub.add_parser(
        "bench",
        help="benchmarks: throughput (the default), accuracy, capacity, levers or fleet "
        "(`safecity bench capacity --help`)",
        add_help=False,
    )
    b.set_defaults(func=cmd_bench, rest=[])
    return p


def main(argv: list[str] | None = None) -> int:
    _install_startup_signals()  # first: a Ctrl-C while modules and models load is a clean exit too
    args: argparse.Namespace | None = None
    try:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if args.cmd == "bench":  # the benchmark parses its own options
            args.rest = extra
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        _setup_logging(args.verbose)
        return _run_command(args)
    except Interrupted as stop:
        starting = " while starting" if getattr(args, "cmd", None) in ("run", "sink") else ""
        print(f"interrupted ({signal.Signals(stop.signum).name}){starting}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


def _run_command(args: argparse.Namespace) -> int:
    from .urls import redact

    try:
        return int(args.func(args))
    except ConfigError as err:
        print(redact(f"config error: {err}"), file=sys.stderr)
        return 2
    except SafeCityError as err:
        print(redact(f"error: {err}"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
