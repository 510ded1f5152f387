"""A throwaway PostgreSQL server for the tests and the fleet harness: Debian's ``postgresql`` binaries,
a cluster in a temporary folder, TCP on loopback only, trust authentication (nothing else reaches it).
Run as root it runs as the ``postgres`` user, which PostgreSQL insists on."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .util import free_port


def binaries() -> Path | None:
    """The folder of the newest installed PostgreSQL's initdb and pg_ctl, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Postgres:
    """``url(name)``: a new database on the server; ``close()`` stops it and removes its files."""

    def __init__(self, bindir: Path, *, fsync: bool = True) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="safecity-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "safecity", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            f"-c max_connections=300 -c fsync={'on' if fsync else 'off'}"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"
        )
        self._databases = 0

    def _run(self, tool: str, *args: str) -> None:
        # into a file, not a pipe: a server it starts keeps its inherited descriptors open
        with tempfile.TemporaryFile("w+") as out:
            code = subprocess.run(
                [*self._as, str(self.bindir / tool), *args], stdout=out, stderr=out
            ).returncode
            out.seek(0)
            said = out.read()[-2000:]
        if code != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({code}): {said}\n{log}")

    def url(self, name: str | None = None) -> str:
        """A new, empty database (``name`` or the next of db1, db2 ...), as a URL."""
        import psycopg

        self._databases += 1
        name = name or f"db{self._databases}"
        with psycopg.connect(f"postgresql://safecity@127.0.0.1:{self.port}/postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://safecity@127.0.0.1:{self.port}/{name}"

    def restart(self) -> None:
        """A fast restart: every connection is dropped, as in a failover of the database."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "-t", "60", "restart"
        )

    def close(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
