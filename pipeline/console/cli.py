"""``safecity console`` (the operator console on a sink's store) and ``safecity users ...``."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def add_console_options(p: argparse.ArgumentParser, *, default: str | None) -> None:
    p.add_argument(
        "--http",
        metavar="HOST:PORT",
        default=default,
        help="serve the operator console here (loopback unless told otherwise), e.g. 127.0.0.1:8080",
    )
    p.add_argument(
        "--console-db",
        metavar="FILE",
        help="the console's users, sessions and audit log (default: beside --db)",
    )
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="where browsers reach the console if not at --http (a TLS proxy: https://iccc.example)",
    )


def start_console(args: argparse.Namespace, *, registry: Any = None) -> Any:
    """The console for ``args.db`` on ``args.http``, started; the caller closes it. ``registry``: the
    Prometheus registry its false-alarm gauge joins (the sink's, when the sink serves the console)."""
    from ..events.clip_store import clips_dir
    from ..events.store import local_file, store_target
    from .server import Console
    from .store import console_path

    db = store_target(args.db)
    own = local_file(db, args.console_db, console_path, "--console-db FILE (the console's own store)")
    console = Console(
        db,
        own,
        args.http,
        clips=local_file(db, args.clips, clips_dir, "--clips DIR (where the sinks keep evidence clips)"),
        public_url=args.public_url,
        registry=registry,
    )
    console.start()
    if not console.users.list():
        print(
            f"console: no users yet; add one with `safecity users add NAME --role admin --console-db {own}`",
            file=sys.stderr,
        )
    print(f"console on {console.url}", file=sys.stderr, flush=True)
    return console


def cmd_console(args: argparse.Namespace) -> int:
    from ..cli import _install_stop_signals
    from ..events.store import is_url, store_target

    if not is_url(store_target(args.db)) and not Path(args.db).exists():
        print(
            f"console: {args.db} does not exist yet; showing incidents once the sink creates it",
            file=sys.stderr,
        )
    registry = None
    if args.metrics_port is not None:
        from prometheus_client import CollectorRegistry

        from ..metrics import serve_metrics

        registry = CollectorRegistry()
        port = serve_metrics(registry, args.metrics_port)
        print(f"console metrics on http://127.0.0.1:{port}/metrics", file=sys.stderr, flush=True)
    console = start_console(args, registry=registry)
    stop = threading.Event()
    _install_stop_signals(stop)
    try:
        while not stop.wait(0.5):
            if not console.feed.is_alive():
                print("console: its feed stopped", file=sys.stderr)
                return 1
    finally:
        console.close()
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise ConfigError("give the password on standard input with --password-stdin (no terminal to ask on)")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the passwords differ")
    return first


def cli_actor() -> str:
    """Who the audit log names for a change made at the command line: the account and the host."""
    try:
        account = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container): its number
        account = f"uid{os.getuid()}"
    return f"cli:{account}@{socket.gethostname()}"


def cmd_users(args: argparse.Namespace) -> int:
    from ..events.store import local_file, store_target
    from .auth import Users
    from .store import ConsoleStore, console_path

    path = local_file(store_target(args.db), args.console_db, console_path, "--console-db FILE")
    store = ConsoleStore(path)
    try:
        users = Users(store)
        if args.action == "add":
            users.add(args.name, args.role, _password(args), by=cli_actor())
            print(f"added {args.name} ({args.role}) to {path}")
        elif args.action == "password":
            users.set_password(args.name, _password(args), by=cli_actor())
            print(f"password of {args.name} changed; their sessions ended")
        elif args.action == "role":
            users.set_role(args.name, args.role, by=cli_actor())
            print(f"{args.name} is now {args.role}")
        elif args.action in ("disable", "enable"):
            users.set_disabled(args.name, args.action == "disable", by=cli_actor())
            print(f"{args.name} {args.action}d")
        else:
            for u in users.list():
                print(f"{u['name']:<24} {u['role']:<9} {'disabled' if u['disabled'] else 'active'}")
    finally:
        store.close()
    return 0


def add_parsers(sub: Any) -> None:
    c = sub.add_parser("console", help="serve the ICCC operator console on a sink's store")
    c.add_argument(
        "--db", default="events.sqlite", help="the sink's store: a SQLite file or a PostgreSQL URL"
    )
    c.add_argument("--clips", metavar="DIR", help="the sinks' evidence clips (default: beside a SQLite --db)")
    c.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics here (false alarms per camera and type)",
    )
    add_console_options(c, default="127.0.0.1:8080")
    c.set_defaults(func=cmd_console)

    u = sub.add_parser("users", help="the console's operators: add, list, password, role, disable, enable")
    us = u.add_subparsers(dest="action", required=True)
    for name, helptext in (
        ("add", "add an operator"),
        ("list", "list the operators"),
        ("password", "set an operator's password (ends their sessions)"),
        ("role", "change an operator's role"),
        ("disable", "stop an operator logging in (ends their sessions)"),
        ("enable", "let a disabled operator log in again"),
    ):
        a = us.add_parser(name, help=helptext)
        if name != "list":
            a.add_argument("name")
        if name in ("add", "role"):
            a.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
        if name in ("add", "password"):
            a.add_argument(
                "--password-stdin", action="store_true", help="read the password from standard input"
            )
        a.add_argument(
            "--db", default="events.sqlite", help="the sink's store (the console's store is beside it)"
        )
        a.add_argument("--console-db", metavar="FILE", help="the console's store, if not beside --db")
        a.set_defaults(func=cmd_users)
