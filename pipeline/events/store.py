"""The sink's store: SQLite (embedded, the default) or PostgreSQL (one store shared by several sinks).

The schema is versioned: ``schema_migrations`` records each migration applied; a sink opening the
store applies the ones it lacks, in order, in one transaction (in PostgreSQL under an advisory lock,
so replicas starting together migrate once). Each migration means the same in both dialects.

``events.id`` is the order events were stored in; the console and the bridges read past it. In
PostgreSQL the replicas take turns to store events (a transaction-scoped advisory lock taken just
before the insert, held to the commit), so ids become visible in increasing order and a reader past
id N never misses an event committed later with a smaller id.

The few statements the sink, console and bridges run are written once, with ``?`` placeholders;
``PgDb`` gives a psycopg connection the same ``execute``/``executemany`` as a ``sqlite3.Connection``.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StorageError
from ..urls import redact as redact_secrets
from .clip_fetch import CLIP_SCHEMA
from .heartbeat import HEARTBEAT_SCHEMA
from .outbox import check_kind, describe_db_error, open_durable

try:
    import psycopg
except ImportError:  # pragma: no cover - a dependency; without it only SQLite stores open
    psycopg = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

SINK_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    incident_id TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    emitted_at TEXT NOT NULL,
    received_at REAL NOT NULL,
    snapshot_sha256 TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE TABLE IF NOT EXISTS snapshots (
    sha256 TEXT PRIMARY KEY,
    jpeg BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_wanted (
    sha256 TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    wanted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshot_wanted_order ON snapshot_wanted (wanted_at);
"""

# what a store error is, whichever the dialect: the store refused or lost the statement
DB_ERRORS: tuple[type[Exception], ...] = (
    (sqlite3.Error,) if psycopg is None else (sqlite3.Error, psycopg.Error)
)

LOCK_TIMEOUT = "10s"  # (PgDb)
IDLE_IN_TRANSACTION = "60s"
EVENTS_LOCK = 0x5AFE_C17E  # the advisory lock PostgreSQL replicas take in turn to store events
MIGRATE_LOCK = 0x5AFE_C17F  # ... and to migrate the schema


def is_url(target: str | Path) -> bool:
    """A PostgreSQL connection URL (else a SQLite file)."""
    return isinstance(target, str) and target.lower().startswith(("postgresql://", "postgres://"))


_URL = re.compile(r"^(?P<scheme>[A-Za-z]+://)(?P<user>[^:@]*):(?P<password>.*)@(?P<rest>[^@]*)$", re.S)


def _password(url: str) -> str | None:
    """The password a URL carries, as written (libpq takes ``#``, ``?`` and ``/`` in it unescaped)."""
    m = _URL.match(url)
    return m["password"] if m and m["password"] else None


def redact(url: str) -> str:
    """The URL without its password, for messages and logs: the user info's as libpq reads it (up to
    the last '@', '/' and all), then what ``urls.redact`` hides in any URL (``password=`` ...)."""
    m = _URL.match(url)
    if m and m["password"]:
        url = f"{m['scheme']}{m['user']}:***@{m['rest']}"
    return redact_secrets(url)


StoreTarget = Path | str  # a SQLite file, or a PostgreSQL URL


_DSN = re.compile(r"^\s*(host|hostaddr|port|dbname|user|password|service|sslmode)\s*=", re.I)


def store_target(text: str, option: str = "--db") -> StoreTarget:
    """What ``--db`` names: a PostgreSQL URL (checked: ``check_url``), or a SQLite file. Anything that
    looks like neither (another scheme, a key=value connection string) is a ConfigError: taken for a
    file name it would quietly split a shared store into local ones."""
    if not text.strip():
        raise ConfigError(f"{option}: empty; give a SQLite file or postgresql://USER@HOST/DB")
    if is_url(text):
        scheme, rest = text.split("://", 1)
        return check_url(f"{scheme.lower()}://{rest}", option)
    if "://" in text or _DSN.match(text) or text.lower().startswith(("postgres:", "postgresql:")):
        raise ConfigError(
            f"{option} {redact(text)!r}: neither a SQLite file nor a postgresql://USER@HOST[:PORT]/DB URL"
        )
    return Path(text)


def check_url(url: str, option: str = "--db") -> str:
    """A PostgreSQL URL libpq can read, without a password in it (that goes in PGPASSWORD or a pgpass
    file: a URL shows in process lists, logs and error messages); ConfigError otherwise. libpq's own
    complaint is not repeated: it can quote any part of the URL."""
    if _password(url) or re.search(r"(?i)[?&]password=", url):
        raise ConfigError(
            f"{option} {redact(url)}: put the password in PGPASSWORD or a pgpass file (PGPASSFILE), "
            "not in the URL (a URL shows in process lists and logs)"
        )
    if psycopg is not None:
        from psycopg.conninfo import conninfo_to_dict

        try:
            parts = conninfo_to_dict(url)
            if not all(p.isdigit() for p in str(parts.get("port", "5432")).split(",")):
                raise psycopg.ProgrammingError("port")
        except psycopg.Error:
            raise ConfigError(
                f"{option} {redact(url)}: not a URL PostgreSQL reads; expected "
                "postgresql://USER@HOST[:PORT]/DB[?sslmode=...]"
            ) from None
    return url


def local_file(target: StoreTarget, given: str | None, derive: Callable[[Path], Path], option: str) -> Path:
    """A file or folder kept beside the store (clips, the console's store, bridge cursors): ``given``,
    else derived from a SQLite store's path; a PostgreSQL store has no beside: ``option`` is needed."""
    if given:
        return Path(given)
    if is_url(target):
        raise ConfigError(f"the sink store is PostgreSQL ({describe(target)}): give {option}")
    return derive(Path(target))


def describe(target: str | Path) -> str:
    return redact(str(target)) if is_url(target) else str(target)


@functools.lru_cache(maxsize=256)
def _pg_sql(sql: str, mark: str = "%s") -> str:
    """``?`` placeholders as psycopg's ``%s`` (or ``%b``: sent in binary), a literal ``%`` doubled."""
    return sql.replace("%", "%%").replace("?", mark)


class PgDb:
    """A psycopg connection in autocommit mode (transactions are explicit: ``BEGIN`` ... ``COMMIT``),
    with the ``sqlite3.Connection`` methods the sink, console and bridges use.

    A connection the server dropped (a restart, a failover) is made again at the next ``BEGIN`` or
    statement outside a transaction; inside one, every statement until the ``ROLLBACK`` fails, so
    nothing of a transaction runs on its own. A ``COMMIT`` that PostgreSQL answered with a rollback
    (the transaction had failed) is an error too.

    The sink's sessions give up waiting for a lock after ``LOCK_TIMEOUT`` (a replica frozen while
    holding the events lock stalls the others that long, not for ever), are ended by the server when
    idle in a transaction for ``IDLE_IN_TRANSACTION``, keep TCP keepalives (a replica cut off is
    noticed in about a minute) and commit synchronously whatever the server's default: an event is
    acknowledged only once it is durable."""

    def __init__(self, url: str, *, read_only: bool) -> None:
        self.url = url
        self.where = redact(url)
        self.read_only = read_only
        self._in_transaction = False
        self.conn = self._connect()

    def _connect(self) -> Any:
        conn = psycopg.connect(
            self.url, autocommit=True, connect_timeout=10, application_name="safecity",
            keepalives=1, keepalives_idle=20, keepalives_interval=5, keepalives_count=4,
        )  # fmt: skip
        settings = [
            ("lock_timeout", LOCK_TIMEOUT),
            ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION),
            ("synchronous_commit", "on"),
        ]
        if self.read_only:
            settings.append(("default_transaction_read_only", "on"))
        for name, value in settings:
            conn.execute(f"SET {name} = '{value}'")
        return conn

    def _live(self, sql: str) -> Any:
        if self.conn.broken or self.conn.closed:
            if self._in_transaction:  # the transaction went with the connection
                raise psycopg.OperationalError("the connection to the store was lost in a transaction")
            self.conn = self._connect()  # a psycopg.Error while the server is away: a store error
            log.warning("sink store %s: connected again", self.where)
        return self.conn

    def execute(self, sql: str, params: Sequence[Any] = (), *, binary: bool = False) -> Any:
        """``binary``: the parameters go in PostgreSQL's binary format (arrays of JSON text need no
        escaping: several times cheaper for a batch of events)."""
        if sql == "ROLLBACK":
            self._in_transaction = False
            if self.conn.broken or self.conn.closed:
                return None
        conn = self._live(sql)
        try:
            cur = (
                conn.execute(_pg_sql(sql, "%b" if binary else "%s"), params) if params else conn.execute(sql)
            )
        finally:
            if sql == "COMMIT":
                self._in_transaction = False
        if sql.startswith("BEGIN"):
            self._in_transaction = True
        elif sql == "COMMIT" and cur.statusmessage != "COMMIT":
            raise psycopg.OperationalError(f"the transaction was not committed ({cur.statusmessage})")
        return cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            with self._live(sql).cursor() as cur:
                cur.executemany(_pg_sql(sql), rows)

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    def close(self) -> None:
        self.conn.close()


Db = sqlite3.Connection | PgDb


def rollback(db: Db) -> None:
    """Undo the open transaction, if a failed statement or commit left one open (SQLite ends it itself
    on some errors, a full disk among them; PostgreSQL's goes with a dropped connection)."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def connect_postgres(url: str, *, read_only: bool = False) -> PgDb:
    """A connection to the PostgreSQL store at ``url``; StorageError (password left out) when not."""
    where = redact(url)
    if psycopg is None:
        raise StorageError(
            f"the sink store {where} is PostgreSQL: install psycopg (pip install 'psycopg[binary]')"
        )
    check_url(url, "the sink store")
    try:
        return PgDb(url, read_only=read_only)
    except (psycopg.Error, ValueError) as err:  # (ValueError: a URL psycopg cannot even parse)
        # (check_url let no password through: libpq's message cannot quote one)
        reason = "; ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())
        raise StorageError(f"the sink store {where} cannot be used: {reason or type(err).__name__}") from None


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: str
    postgresql: str


def _postgres_types(sql: str) -> str:
    for sqlite_type, pg_type in (("REAL", "DOUBLE PRECISION"), ("BLOB", "BYTEA"), ("INTEGER", "BIGINT")):
        sql = re.sub(rf"\b{sqlite_type}\b", pg_type, sql)
    return sql


_V1 = SINK_SCHEMA + CLIP_SCHEMA + HEARTBEAT_SCHEMA
MIGRATIONS: tuple[Migration, ...] = (
    # (stores made before versioning have these tables already: IF NOT EXISTS leaves them as they are)
    Migration(1, "events, snapshots, clips to fetch, edge and camera health", _V1, _postgres_types(_V1)),
    Migration(
        2,
        "events.id: the order events were stored in, the cursor of the console and bridges",
        # SQLite's implicit rowid, which the cursors were before, is kept; VACUUM may renumber rowids
        "ALTER TABLE events ADD COLUMN id INTEGER; UPDATE events SET id = rowid; "
        "CREATE UNIQUE INDEX events_by_id ON events (id);",
        "ALTER TABLE events ADD COLUMN id BIGSERIAL; CREATE UNIQUE INDEX events_by_id ON events (id);",
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def schema_version(db: Db) -> int:
    """The last migration applied to the store (0: none, or an empty store)."""
    pg = isinstance(db, PgDb)
    exists = (
        "SELECT to_regclass('schema_migrations') IS NOT NULL"
        if pg
        else "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')"
    )
    if not db.execute(exists).fetchone()[0]:
        return 0
    return int(db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])


def migrate(db: Db, where: str) -> int:
    """Apply the migrations the store lacks, in one transaction; the version it had before."""
    pg = isinstance(db, PgDb)
    current = schema_version(db)
    if current == SCHEMA_VERSION:  # (nothing to create: a role without CREATE rights can run a sink)
        return current
    db.execute("BEGIN" if pg else "BEGIN IMMEDIATE")
    try:
        if pg:
            db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))
        table = (
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        db.execute(_postgres_types(table) if pg else table)
        before = int(db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])
        if before > SCHEMA_VERSION:
            raise StorageError(
                f"the sink store {where} has schema version {before}, newer than this safecity knows "
                f"({SCHEMA_VERSION}): run the version that wrote it, or a later one"
            )
        for m in MIGRATIONS[before:]:
            for statement in _statements(m.postgresql if pg else m.sqlite):
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (m.version, m.description, time.time()),
            )
            log.info("sink store %s: migrated to version %d (%s)", where, m.version, m.description)
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise
    return before


def backfill_ids(db: Db) -> None:
    """Events a sink from before ``events.id`` stored after the migration (a downgrade and back) get
    ids after the others, in the order they were stored, so the readers see them."""
    if db.execute("SELECT 1 FROM events WHERE id IS NULL LIMIT 1").fetchone():
        last = db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        db.execute("UPDATE events SET id = ? + rowid WHERE id IS NULL", (last,))
        log.warning("sink store: events stored without an id (by an older sink) numbered after the rest")


def open_store(target: str | Path) -> Db:
    """The sink's store, for writing: a SQLite file (created if need be) or a PostgreSQL URL,
    migrated to this version's schema. StorageError names the store and what is wrong."""
    where = describe(target)
    if is_url(target):
        db: Db = connect_postgres(str(target))
    else:  # 16 KiB pages: inserting ~600-byte events costs about 13 % less than with 4 KiB
        db = open_durable(Path(target), "", kind="sink store", page_size=16384)
    try:
        migrate(db, where)
        if not is_url(target):
            backfill_ids(db)
    except StorageError:
        db.close()
        raise
    except DB_ERRORS as err:
        db.close()
        raise StorageError(f"the sink store {where} cannot be migrated: {err}") from None
    return db


def open_reader(target: str | Path) -> Db | None:
    """The sink's store, read-only (the console, bridges, ``safecity events``, ``fleet status``);
    None while a SQLite store does not exist yet. StorageError when it is not a sink store, or one
    that the sink of this version has not migrated yet."""
    where = describe(target)
    if is_url(target):
        db: Db = connect_postgres(str(target), read_only=True)
    else:
        path = Path(target)
        if not path.exists():
            return None
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0, check_same_thread=False)
            check_kind(db, path, "sink store", new_ok=True)
        except sqlite3.Error as err:
            raise StorageError(f"the sink store {path} {describe_db_error(path, err)}") from None
    version = schema_version(db)
    if version < SCHEMA_VERSION:
        db.close()
        raise StorageError(
            f"the sink store {where} is at schema version {version}, not {SCHEMA_VERSION}: "
            "a sink of this version migrates it when it starts"
        )
    return db
