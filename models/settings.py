"""Process settings, all from the environment (`GONGJI_…`) with the embedded default when absent.

Lives in `models` because every layer needs it and `models` is the layer everyone may import."""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# `gongji_request`: " [<request id>]" while a request or a stored webhook is being handled, else empty
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s%(gongji_request)s: %(message)s"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _dev_key(label: str) -> str:
    """A deterministic development key, only used when the matching env var is absent (embedded mode)."""
    return base64.b64encode(hashlib.sha256(b"gongji-dev:" + label.encode()).digest()).decode()


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    # AES-256-GCM keys for ID numbers and names: {key_id: base64 key}; the first id encrypts new values.
    pii_keys: dict[str, str]
    pii_active_key: str
    # HMAC-SHA256 key of the look-up columns (separate from the encryption key).
    lookup_key: str
    secret_key: str
    # a look-up key being retired (GONGJI_LOOKUP_KEY_RETIRED): still tried by look-ups until `gongji pii rekey`
    # has rewritten the digests it made; None when no rotation is under way
    lookup_retired: str | None = None
    sweep_interval_s: float = 1.0
    sweep_batch: int = 500
    dev_mode: bool = False
    # where platforms and the face-verification provider reach this deployment (callback URLs)
    public_url: str = "http://127.0.0.1:8000"
    # reverse proxies in front of `gongji web` whose X-Forwarded-For/-Proto to trust (sign-in rate limits)
    proxy_hops: int = 0
    # a bearer token `/metrics` then asks for (Prometheus' `authorization` setting); None: open (loopback, dev)
    metrics_token: str | None = None
    extra: dict = field(default_factory=dict)

    @staticmethod
    def from_env(*, var_dir: str | Path | None = None) -> "Settings":
        """From the environment; a missing or malformed value is a SettingsError naming the variable (and
        never echoing a key)."""
        var = Path(var_dir or _env("GONGJI_VAR_DIR", "var")).resolve()
        db = _env("GONGJI_DATABASE_URL")
        dev = db is None
        if db is None:
            db = f"sqlite:///{var / 'gongji.db'}"
        else:
            _check_url("GONGJI_DATABASE_URL", db)
        keys_spec = _env("GONGJI_PII_KEYS")  # "k2:base64,k1:base64" — first one encrypts
        if keys_spec:
            keys, active = _pii_keys(keys_spec)
        else:
            if not dev:
                raise SettingsError("GONGJI_PII_KEYS is required when GONGJI_DATABASE_URL is set")
            keys, active = {"dev1": _dev_key("pii")}, "dev1"
        lookup = _env("GONGJI_LOOKUP_KEY") or (_dev_key("lookup") if dev else None)
        secret = _env("GONGJI_SECRET_KEY") or (_dev_key("secret") if dev else None)
        if lookup is None or secret is None:
            raise SettingsError("GONGJI_LOOKUP_KEY and GONGJI_SECRET_KEY are required when GONGJI_DATABASE_URL is set")
        if not _long_enough_key(lookup):
            raise SettingsError("GONGJI_LOOKUP_KEY is the base64 of 32 random bytes (openssl rand -base64 32)")
        retired = _env("GONGJI_LOOKUP_KEY_RETIRED")
        if retired is not None and not _long_enough_key(retired):
            raise SettingsError("GONGJI_LOOKUP_KEY_RETIRED is the look-up key being retired: the base64 of 32 bytes")
        if retired is not None and retired == lookup:
            raise SettingsError("GONGJI_LOOKUP_KEY_RETIRED is the previous look-up key, not the active one again")
        if len(secret) < 16:
            raise SettingsError("GONGJI_SECRET_KEY has at least 16 characters (a random string)")
        public_url = _env("GONGJI_PUBLIC_URL") or ("http://127.0.0.1:8000" if dev else None)
        if public_url is None:  # the face provider calls back there: a loopback default fails every session
            raise SettingsError("GONGJI_PUBLIC_URL is required when GONGJI_DATABASE_URL is set: the address "
                                "platforms and the face-verification provider reach this deployment at")
        if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", public_url):
            raise SettingsError("GONGJI_PUBLIC_URL is an http:// or https:// address (e.g. https://gongji.example.cn)")
        metrics_token = _env("GONGJI_METRICS_TOKEN", "") or None
        if metrics_token is None and not dev:  # platform ids, traffic and backlogs are nobody else's business
            raise SettingsError("GONGJI_METRICS_TOKEN is required when GONGJI_DATABASE_URL is set: the bearer "
                                "token Prometheus sends for /metrics (a random string)")
        if metrics_token is not None and len(metrics_token) < 16:
            raise SettingsError("GONGJI_METRICS_TOKEN has at least 16 characters (a random string)")
        redis_url = _env("GONGJI_REDIS_URL")
        if redis_url:
            _check_url("GONGJI_REDIS_URL", redis_url)
        return Settings(
            database_url=db,
            redis_url=redis_url,
            pii_keys=keys,
            pii_active_key=active,
            lookup_key=lookup,
            secret_key=secret,
            lookup_retired=retired,
            sweep_interval_s=number("GONGJI_SWEEP_INTERVAL_S", 1.0, minimum=0.05, maximum=3600),
            sweep_batch=int(number("GONGJI_SWEEP_BATCH", 500, minimum=1, maximum=100_000, integer=True)),
            dev_mode=dev,
            public_url=public_url.rstrip("/"),
            proxy_hops=int(number("GONGJI_PROXY_HOPS", 0, minimum=0, maximum=10, integer=True)),
            metrics_token=metrics_token,
        )


class SettingsError(RuntimeError):
    """A setting missing or malformed: the process stops at start, with this message (the command line
    prints it without a traceback)."""


def number(name: str, default: float, *, minimum: float, maximum: float, integer: bool = False) -> float:
    """A numeric setting within [minimum, maximum] (finite), or its default when unset."""
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not minimum <= value <= maximum:
        kind = "an integer" if integer else "a number"
        raise SettingsError(f"{name} is {kind} from {minimum:g} to {maximum:g}, not {raw!r}")
    return value


def schedule(name: str, default: tuple, *, minimum: float, maximum: float) -> tuple:
    """A comma-separated list of seconds (each within [minimum, maximum]), or the default when unset."""
    raw = _env(name)
    if raw is None:
        return default
    try:
        values = tuple(float(x) for x in raw.split(","))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) and minimum <= v <= maximum for v in values):
        raise SettingsError(f"{name} is seconds from {minimum:g} to {maximum:g}, comma separated, not {raw!r}")
    return values


def _long_enough_key(key: str) -> bool:
    """At least 32 bytes: base64 of them, or (keys set before this check) a raw string of 32 characters."""
    try:
        return len(base64.b64decode(key, validate=True)) >= 32 or len(key) >= 32
    except (binascii.Error, ValueError):
        return len(key) >= 32


def _check_url(name: str, url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None
    if parsed is None or not parsed.drivername:
        raise SettingsError(f"{name} is not a URL (e.g. postgresql+psycopg://user:password@host/db, redis://host:6379/0)")
    if name == "GONGJI_DATABASE_URL" and parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise SettingsError("GONGJI_DATABASE_URL is a PostgreSQL URL (postgresql+psycopg://user:password@host/db)")


def _pii_keys(spec: str) -> tuple[dict[str, str], str]:
    """GONGJI_PII_KEYS: `id:base64,…`, each the base64 of 32 bytes (AES-256); the first one encrypts."""
    keys: dict[str, str] = {}
    for n, part in enumerate((p for p in spec.split(",") if p.strip()), start=1):
        kid, sep, b64 = (x.strip() for x in part.partition(":"))
        try:
            size = len(base64.b64decode(b64, validate=True)) if sep and kid else None
        except (binascii.Error, ValueError):
            size = None
        if size != 32:
            raise SettingsError(f"GONGJI_PII_KEYS part {n} is not <key id>:<base64 of 32 bytes> (AES-256); "
                                "e.g. k1:$(openssl rand -base64 32)")
        if kid in keys:  # one id for two keys: one of them would silently stop decrypting what it sealed
            raise SettingsError(f"GONGJI_PII_KEYS names key id {kid!r} twice: give the new key a new id")
        keys[kid] = b64
    if not keys:
        raise SettingsError("GONGJI_PII_KEYS names no key")
    return keys, next(iter(keys))


def log_level() -> str:
    """GONGJI_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR, CRITICAL; default INFO), upper case; a name logging
    does not know stops the process at start instead of leaving it silent."""
    level = (_env("GONGJI_LOG_LEVEL", "INFO") or "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise SettingsError(f"GONGJI_LOG_LEVEL={level!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)")
    return level


def configure_logging(request_id: Callable[[], str | None] | None = None) -> str:
    """Every Gongji process's logging: GONGJI_LOG_LEVEL on the root logger, one line a record on stderr.
    Where a host already set a handler (dramatiq's worker processes log through a pipe to their parent),
    that handler stays, its lines also naming the request. `request_id`: what names the request being
    handled (`workflows.correlation`, passed in by the composition roots: `models` imports no other layer),
    put on every record as `gongji_request` (LOG_FORMAT). Returns the level."""
    level = log_level()
    if request_id is not None:
        _name_requests(request_id)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()  # stderr
        handler.setFormatter(logging.Formatter(LOG_FORMAT, defaults={"gongji_request": ""}))
        root.addHandler(handler)
    elif request_id is not None:
        for handler in root.handlers:
            if not isinstance(handler.formatter, _NamingRequests):
                handler.setFormatter(_NamingRequests(handler.formatter or logging.Formatter()))
    root.setLevel(level)
    return level


class _NamingRequests(logging.Formatter):
    """A host's formatter (dramatiq's) whose message starts with the request's id when there is one."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        named = getattr(record, "gongji_request", "")
        if not named:
            return self.inner.format(record)
        copy = logging.makeLogRecord(record.__dict__)  # other handlers see the record as it was
        copy.msg, copy.args = f"{named.strip()} {record.getMessage()}", None
        return self.inner.format(copy)


def _name_requests(request_id: Callable[[], str | None]) -> None:
    """Every log record gets `gongji_request` (" [req_…]" or ""): a record factory, so records of every logger
    and handler have it, whatever formats them. Installed once a process (configure_logging may run again)."""
    made = logging.getLogRecordFactory()
    if getattr(made, "gongji_requests", False):
        made = made.wrapped  # type: ignore[attr-defined]

    def factory(*args, **kwargs):
        record = made(*args, **kwargs)
        found = request_id()
        record.gongji_request = f" [{found}]" if found else ""
        return record
    factory.gongji_requests, factory.wrapped = True, made  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
