"""Service settings, read once from the environment."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def normalise_database_url(url: str) -> str:
    """Accept the URL forms people paste and give SQLAlchemy the asyncpg one.

    `postgres://`, `postgresql://` and `postgresql+asyncpg://` all work; libpq's
    `sslmode=` becomes asyncpg's `ssl=`.
    """
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            url = "postgresql+asyncpg://" + url[len(prefix) :]
            break
    if not url.startswith("postgresql+asyncpg://"):
        raise ValueError("DATABASE_URL must be a PostgreSQL URL (postgresql://user:pass@host:port/db)")
    parts = urlsplit(url)
    query = [
        ("ssl" if key == "sslmode" else key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="/")))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # Unset: the CLI starts an embedded PostgreSQL under `embedded_postgres_dir`.
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"
    # Connections per process; uvicorn workers each get their own pool. No overflow by
    # default: under load, overflow connections are opened and closed over and over (a
    # new backend per request), which halves throughput; waiting for a pooled one is cheaper.
    db_pool_size: int = Field(20, ge=1, le=1000)
    db_max_overflow: int = Field(0, ge=0, le=1000)
    embedded_postgres_dir: Path = Path(".data/postgres")
    # Resolved configs kept in memory per process (0 disables the cache), and their
    # lifetime: a safety net only, since changes invalidate entries at once.
    resolve_cache_size: int = Field(100_000, ge=0)
    resolve_cache_ttl_seconds: float = Field(60.0, gt=0)
    # Mount the baselines `make bench` compares against (never in production).
    bench_routes: bool = False
    # Bodies larger than this are refused with 413 (the contract's 4 MiB).
    max_body_bytes: int = 4 * 1024 * 1024

    @field_validator("database_url")
    @classmethod
    def _normalise(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        return normalise_database_url(value.strip())

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"critical", "error", "warning", "info", "debug", "trace"}:
            raise ValueError("LOG_LEVEL must be one of critical, error, warning, info, debug, trace")
        return value
