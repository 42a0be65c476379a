"""A throwaway PostgreSQL server for the eventsourcing scenario: Debian's binaries, a temporary
data directory, a free port on 127.0.0.1, fsync on; stopped and removed at the end.

PostgreSQL refuses to run as root, and CI runs as root: then the data directory belongs to the
`postgres` user and initdb and pg_ctl run through `runuser -u postgres --`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from esdb.benchmarks.figures import ProcessUsage
from esdb.benchmarks.stack import process_usage
from esdb.services.supervisor.nats_server import free_port_block

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
SERVER_USER = "postgres"
"""The OS user the server runs as when the bench runs as root, and the database superuser."""
PROCESS_ROW = "postgres (all)"
"""The server's processes, summed, in the memory and CPU tables."""

_START_TIMEOUT_S = 60
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class PostgresError(RuntimeError):
    """The bench's PostgreSQL server could not be started or used."""


@dataclass
class PgServer:
    """A running PostgreSQL server in `root` (data in `root/data`), on `port`."""

    root: Path
    port: int
    version: str
    host: str = "127.0.0.1"
    user: str = SERVER_USER

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @classmethod
    def start(cls, bin_dir: Path = BIN_DIR) -> PgServer:
        """initdb a fresh cluster in a temporary directory and start it (fsync on)."""
        if not (bin_dir / "pg_ctl").exists():
            raise PostgresError(
                f"no PostgreSQL 15 in {bin_dir}: install Debian's `postgresql` package"
            )
        root = Path(tempfile.mkdtemp(prefix="esdb-bench-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, user=SERVER_USER)
        server = cls(root=root, port=free_port_block(1), version=_version(bin_dir))
        try:
            _run(
                bin_dir / "initdb",
                "-D", str(server.data_dir), "-U", SERVER_USER, "--auth=trust", "-E", "UTF8",
                "--no-instructions",
            )  # fmt: skip
            options = (
                f"-p {server.port} -c listen_addresses={server.host} -k {root} -c fsync=on "
                "-c synchronous_commit=on"
            )
            _run(
                bin_dir / "pg_ctl",
                "-D", str(server.data_dir), "-l", str(root / "server.log"), "-w",
                "-t", str(_START_TIMEOUT_S), "-o", options, "start",
            )  # fmt: skip
        except BaseException:
            server.stop(bin_dir)
            raise
        return server

    def stop(self, bin_dir: Path = BIN_DIR) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        if (self.data_dir / "postmaster.pid").exists():
            try:
                _run(bin_dir / "pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
            except PostgresError:
                _run(bin_dir / "pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self, dbname: str, pool_size: int) -> dict[str, str]:
        """The eventsourcing settings of `eventsourcing.postgres` for database `dbname`, with
        a connection pool of `pool_size` and no overflow."""
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": "trust",  # trust auth: any password does
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": "0",
        }

    def create_database(self, name: str) -> None:
        """Create an empty database."""
        self._admin("CREATE DATABASE {}", name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any connection still on it."""
        self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)

    def _admin(self, template: str, name: str) -> None:
        # psycopg comes with the `bench` extra; the other scenarios run without it.
        import psycopg
        from psycopg import sql

        statement = sql.SQL(template).format(sql.Identifier(name))
        try:
            with psycopg.connect(
                host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
            ) as conn:
                conn.execute(statement)
        except psycopg.Error as e:
            raise PostgresError(f"{statement.as_string(None)}: {e}") from e

    def usage(self) -> ProcessUsage | None:
        """The postmaster and its children summed: memory now, and CPU time including the
        children that have exited (the postmaster's cutime and cstime)."""
        postmaster = _postmaster_pid(self.data_dir)
        if postmaster is None:
            return None
        own = process_usage(PROCESS_ROW, postmaster)
        if own is None:
            return None
        reaped = _reaped_children_s(postmaster)
        for child in _children(postmaster):
            usage = process_usage(PROCESS_ROW, child)
            if usage is not None:
                own.rss_kib += usage.rss_kib
                own.anon_kib += usage.anon_kib
                own.cpu_s += usage.cpu_s
        own.cpu_s = round(own.cpu_s + reaped, 3)
        return own


def _run(*argv: str | Path) -> None:
    command = [str(arg) for arg in argv]
    if os.geteuid() == 0:
        command = ["runuser", "-u", SERVER_USER, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()
        raise PostgresError(f"{Path(argv[0]).name} exited with {done.returncode}: {output}")


def _version(bin_dir: Path) -> str:
    """`postgres --version`'s number, e.g. `15.18` of `postgres (PostgreSQL) 15.18 (Debian ...)`."""
    words = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    return words[2] if len(words) > 2 else "?"


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the server's backends and background workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _reaped_children_s(pid: int) -> float:
    """CPU seconds of `pid`'s children that have exited and been waited for."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    after_comm = stat[stat.rindex(")") + 2 :].split()
    return (int(after_comm[13]) + int(after_comm[14])) / _CLOCK_TICKS
