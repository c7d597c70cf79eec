"""Service settings, read once from the environment."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.api.principal import SCOPES


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
        ("ssl" if key == "sslmode" else key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="/")))


class RateLimit(BaseModel):
    """A token bucket: `per_second` sustained, bursts of up to `burst` requests."""

    model_config = {"extra": "forbid"}
    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


# The contract's defaults (1.1), generous enough for any honest client: a fleet of agents
# often shares one `resolve` key, so it gets 20,000/s; every other scope 1,000/s.
DEFAULT_RATE_LIMIT = RateLimit(per_second=1000, burst=2000)
DEFAULT_RESOLVE_RATE_LIMIT = RateLimit(per_second=20_000, burst=40_000)


def default_rate_limits() -> dict[str, RateLimit]:
    return {scope: DEFAULT_RESOLVE_RATE_LIMIT if scope == "resolve" else DEFAULT_RATE_LIMIT for scope in SCOPES}


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
    # Reads (resolution, GETs, the console's pages) have a pool of their own, so writes
    # queued on one agent's row lock can hold every write connection and reads still run.
    db_read_pool_size: int = Field(10, ge=1, le=1000)
    # Where the service keeps its files: the first admin key (`admin-key`), and the
    # embedded PostgreSQL unless EMBEDDED_POSTGRES_DIR says otherwise.
    data_dir: Path = Path(".data")
    embedded_postgres_dir: Path | None = None
    # A statement running longer is cancelled (503), so one slow query cannot hold a
    # pooled connection forever; a transaction left idle is ended after idle_* seconds.
    db_statement_timeout_seconds: float = Field(30.0, gt=0)
    db_idle_in_transaction_timeout_seconds: float = Field(60.0, gt=0)
    # Client-side bounds, which hold even when the server stops answering (the server's
    # statement_timeout cannot act then): opening a connection, waiting for a pooled one, and
    # waiting for a statement's answer (above the statement timeout, so a live server's slow
    # statement is cancelled by the server first).
    db_connect_timeout_seconds: float = Field(5.0, gt=0)
    db_pool_timeout_seconds: float = Field(2.0, gt=0)
    db_command_timeout_seconds: float = Field(35.0, gt=0)
    # A /v1 request whose answer has not begun after this long is answered 503
    # service_unavailable with Retry-After, whatever it was waiting for: under the SDK's
    # default 5 s timeout, so clients get an answer they can act on.
    request_timeout_seconds: float = Field(4.0, gt=0)
    # Auth is on unless explicitly disabled (local experiments only; warned at every start).
    auth_disabled: bool = False
    # Per-scope token buckets, as JSON: {"write": {"per_second": 50, "burst": 100}}.
    # Scopes left out keep the default.
    rate_limits: Annotated[dict[str, RateLimit], NoDecode] = Field(default_factory=default_rate_limits)
    # A watch stream sends a `: keepalive` comment after this long without an event (the
    # contract: at least every 15 s).
    watch_keepalive_seconds: float = Field(15.0, gt=0, le=15)
    # Origins browsers may call the API from (CORS). Empty: no cross-origin access at all.
    # A JSON list or comma-separated: https://a.example,https://b.example
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (the client's
    # address, which the refused-key limiter counts by, and the scheme): addresses or
    # networks, a JSON list or comma-separated, `*` for any. Empty: nobody is believed, so a
    # client cannot name its own address.
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Resolved configs kept in memory per process (0 disables the cache), and their
    # lifetime: a safety net only, since changes invalidate entries at once (and nothing is
    # served from the cache while the listener is down). Every expiry costs a query, so
    # with 100,000 agents a minute meant about 1,700 needless queries a second; five
    # minutes, about 330.
    # How often every replica looks for due rollout transitions (one replica performs each).
    rollout_tick_seconds: float = Field(1.0, gt=0, le=60)
    # Webhooks: how often every replica sends due deliveries, and whether private, loopback
    # and link-local targets are allowed (off: only public addresses).
    webhook_tick_seconds: float = Field(1.0, gt=0, le=60)
    webhooks_allow_private: bool = False
    resolve_cache_size: int = Field(100_000, ge=0)
    resolve_cache_ttl_seconds: float = Field(300.0, gt=0)
    # One line per request (`access_log.py`), at LOG_LEVEL info or below; written in
    # batches off the request's path, so it costs a hot request little (bench/README.md).
    access_log: bool = True
    # Bodies larger than this are refused with 413 (the contract's 4 MiB).
    max_body_bytes: int = 4 * 1024 * 1024
    # GET /metrics needs a `read` key unless this opens it to anyone who can reach the port
    # (a Prometheus without credentials, on a private network).
    metrics_open: bool = False
    # prometheus-client's multiprocess mode: the workers of one `serve --workers N` sum their
    # metrics through files here (`serve` makes a temporary one when N > 1 and it is unset).
    prometheus_multiproc_dir: Path | None = None

    @field_validator("database_url")
    @classmethod
    def _normalise(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        return normalise_database_url(value.strip())

    @field_validator("prometheus_multiproc_dir", mode="before")
    @classmethod
    def _multiproc_dir(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def postgres_dir(self) -> Path:
        """The embedded PostgreSQL's data directory."""
        return self.embedded_postgres_dir or self.data_dir / "postgres"

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _rate_limits(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError('RATE_LIMITS must be a JSON object like {"write": {"per_second": 50, "burst": 100}}')
        unknown = sorted(set(value) - set(SCOPES))
        if unknown:
            raise ValueError(f"RATE_LIMITS: unknown scope {', '.join(unknown)} (scopes: {', '.join(SCOPES)})")
        return {**default_rate_limits(), **value}

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [origin.strip() for origin in text.split(",") if origin.strip()]
        return value

    @field_validator("forwarded_allow_ips", mode="before")
    @classmethod
    def _proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if not isinstance(value, list):
            raise ValueError("FORWARDED_ALLOW_IPS must be addresses or networks, comma-separated or a JSON list")
        proxies = [str(item).strip() for item in value if str(item).strip()]
        for proxy in proxies:
            if proxy != "*":
                try:
                    ipaddress.ip_network(proxy, strict=False)
                except ValueError:
                    raise ValueError(f"FORWARDED_ALLOW_IPS: {proxy!r} is not an address, a network or *") from None
        # uvicorn trusts everyone only for a lone "*".
        return ["*"] if "*" in proxies else proxies

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"critical", "error", "warning", "info", "debug", "trace"}:
            raise ValueError("LOG_LEVEL must be one of critical, error, warning, info, debug, trace")
        return value
