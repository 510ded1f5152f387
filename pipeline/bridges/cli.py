"""``safecity bridge mqtt | webhook | dead-letters``: run a bridge from a sink's store."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def _common(p: argparse.ArgumentParser, default_name: str) -> None:
    p.add_argument(
        "--db", default="events.sqlite", help="the sink's store: a SQLite file or a PostgreSQL URL"
    )
    p.add_argument("--name", default=default_name, help="this bridge's name (its cursor and dead letters)")
    p.add_argument("--state", metavar="FILE", help="cursors and dead letters (default: beside --db)")


def _state(args: argparse.Namespace) -> Any:
    from ..events.store import local_file, store_target
    from .state import BridgeState, state_path

    return BridgeState(local_file(store_target(args.db), args.state, state_path, "--state FILE"), args.name)


def cmd_bridge(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from ..cli import _install_stop_signals
    from ..metrics import serve_metrics

    state = _state(args)
    try:
        if args.kind == "dead-letters":
            for d in state.dead_letters():
                print(f"#{d['id']} event {d['event_id']} after {d['attempts']} attempts: {d['reason']}")
            return 0
        registry = CollectorRegistry()
        from ..events.store import describe, store_target

        db = store_target(args.db)
        bridge: Any
        if args.kind == "mqtt":
            from .mqtt import MqttBridge, parse_broker

            password = None
            if args.password_file:
                try:
                    password = Path(args.password_file).read_text().strip()
                except OSError as err:
                    raise ConfigError(
                        f"--password-file {args.password_file}: {err.strerror or err}"
                    ) from None
            bridge = MqttBridge(db, state, parse_broker(args.broker, password), prefix=args.topic_prefix,
                                registry=registry)  # fmt: skip
            where = args.broker
        else:
            from .webhook import WebhookBridge, read_secret, redacted

            bridge = WebhookBridge(db, state, args.url, read_secret(Path(args.secret_file)),
                                   max_attempts=args.max_attempts, registry=registry)  # fmt: skip
            where = redacted(args.url)
        if not state.exists():
            state.start_at(bridge.start_position(db, args.from_start))
        if args.metrics_port is not None:
            port = serve_metrics(registry, args.metrics_port)
            print(f"bridge metrics on http://127.0.0.1:{port}/metrics", file=sys.stderr, flush=True)
        stop = threading.Event()
        _install_stop_signals(stop)
        t = threading.Thread(target=bridge.run, name=f"bridge-{args.name}", daemon=True)
        t.start()
        position, _ = state.cursor()
        print(
            f"bridge {args.name}: {describe(db)} -> {where}, from event #{position}",
            file=sys.stderr,
            flush=True,
        )
        while t.is_alive() and not stop.wait(0.2):
            pass
        bridge.stop()
        t.join(15)
        return 0 if stop.is_set() else 1
    finally:
        state.close()


def add_parsers(sub: Any) -> None:
    b = sub.add_parser("bridge", help="deliver the sink's stored events into MQTT or webhooks")
    bs = b.add_subparsers(dest="kind", required=True)
    m = bs.add_parser("mqtt", help="publish events (QoS 1) and camera availability (retained) to a broker")
    _common(m, "mqtt")
    m.add_argument("--broker", required=True, help="mqtt://[user@]host[:port] or mqtts://...")
    m.add_argument("--password-file", help="the broker password, in a file")
    m.add_argument("--topic-prefix", default="safecity")
    w = bs.add_parser("webhook", help="POST each event, HMAC-signed, with retries and dead letters")
    _common(w, "webhook")
    w.add_argument("--url", required=True)
    w.add_argument(
        "--secret-file", required=True, help="the shared HMAC secret (16 bytes or more), in a file"
    )
    w.add_argument("--max-attempts", type=int, default=8, help="answers of 5xx/408/429 before a dead letter")
    for p in (m, w):
        p.add_argument(
            "--from-start",
            action="store_true",
            help="a new bridge starts at the store's first event (default: at its end, new events only)",
        )
        p.add_argument("--metrics-port", type=int, default=None)
    d = bs.add_parser("dead-letters", help="list the events a bridge gave up on")
    _common(d, "webhook")
    for p in (m, w, d):
        p.set_defaults(func=cmd_bridge)
