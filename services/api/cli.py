"""The `agent-variants` command: `serve` and `migrate`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from services.api import embedded, migrate
from services.api.settings import Settings

log = logging.getLogger("agent_variants")

EMBEDDED_DATABASE = "agent_variants"


def _database_url(settings: Settings) -> str:
    """DATABASE_URL, or an embedded PostgreSQL's URL when it is unset."""
    if settings.database_url is not None:
        return settings.database_url
    server = embedded.start(settings.embedded_postgres_dir)
    url = embedded.ensure_database(server, EMBEDDED_DATABASE)
    log.info("DATABASE_URL is unset: using the embedded PostgreSQL in %s", settings.embedded_postgres_dir)
    return url


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
    uvicorn.run(
        "services.api.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        workers=args.workers,
        log_level=settings.log_level,
        loop="uvloop",
        http="httptools",
        proxy_headers=True,
    )
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    url = _database_url(settings)
    asyncio.run(migrate.upgrade(url, args.revision))
    print(f"database at {args.revision} ({migrate.head_revision()})")
    return 0


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
    args = parser.parse_args(argv)

    try:
        settings = Settings()
    except Exception as error:  # noqa: BLE001 - a bad environment is a usage error
        print(f"agent-variants: bad configuration: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper() if settings.log_level != "trace" else "DEBUG",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The embedded server's wrapper logs every pg_ctl call at INFO.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, logging.getLogger().level))
    return {"serve": _serve, "migrate": _migrate}[args.command](args, settings)


if __name__ == "__main__":
    sys.exit(main())
