"""Service configuration: environment variables read once into a frozen dataclass.

Every field has a documented default; `Settings.from_env()` fails at start-up with a message
naming the variable when a value does not parse, and `require()` does the same for an
address a service cannot run without. The README's "Configuration" table mirrors `FIELDS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    # Ports each server listens on (0 picks a free port).
    feature_port: int = 50051
    model_port: int = 50052
    gateway_port: int = 50050
    # Port of the Prometheus /metrics endpoint of a service; 0: no endpoint.
    metrics_port: int = 0
    # Interface the servers bind to; 0.0.0.0 in containers.
    bind_host: str = "127.0.0.1"
    # Where the gateway finds its upstreams, host:port.
    feature_addr: str = ""
    model_addr: str = ""
    # Redis for the feature service, e.g. redis://:password@host:6379/0.
    redis_url: str = ""
    # Prefix of every Redis key (several deployments can share one Redis).
    redis_key_prefix: str = "recsys"
    # REDIS_URL names a node of a Redis Cluster (1 / true / yes).
    redis_cluster: bool = False
    # Model versions directory, and an optional pinned version (default: the newest).
    model_dir: str = "artifacts"
    model_version: str = ""
    # Deadline of a gateway → upstream call when the caller set none, seconds.
    upstream_timeout_s: float = 2.0
    # Redis socket connect / read timeout, seconds.
    redis_timeout_s: float = 1.0
    # Largest gRPC message sent or received, bytes.
    max_message_bytes: int = 16 * 1024 * 1024
    # How long in-flight calls may finish after SIGTERM, seconds.
    grace_s: float = 5.0
    # DEBUG, INFO, WARNING, ERROR.
    log_level: str = "INFO"
    # OpenTelemetry tracing (1 / true / yes), off by default; spans go over OTLP/gRPC to
    # OTEL_EXPORTER_OTLP_ENDPOINT (empty: the exporter's default, http://localhost:4317).
    otel_enabled: bool = False
    otel_exporter_otlp_endpoint: str = ""

    def __post_init__(self):
        for name in ("feature_port", "model_port", "gateway_port", "metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name.upper()}={getattr(self, name)} is not a port (0-65535)")
        for name in ("upstream_timeout_s", "redis_timeout_s"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ConfigError(f"{name.upper()}={getattr(self, name)} must be > 0 and finite")
        if not 0 <= self.grace_s < float("inf"):
            raise ConfigError(f"GRACE_S={self.grace_s} must be ≥ 0 and finite")
        if self.max_message_bytes <= 0:
            raise ConfigError(f"MAX_MESSAGE_BYTES={self.max_message_bytes} must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            name = field.name.upper()
            if name not in environ:
                continue
            raw = environ[name]
            kind = type(field.default)
            try:
                values[field.name] = _parse(kind, raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
        settings = cls(**values)
        if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL={settings.log_level!r} is not a log level")
        return settings

    def require(self, *names: str) -> None:
        """Fail clearly when a setting a service cannot run without is empty."""
        missing = [name.upper() for name in names if not getattr(self, name)]
        if missing:
            raise ConfigError(f"missing required setting(s): {', '.join(missing)}")


def _parse(kind: type, raw: str):
    if kind is str:
        return raw
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(raw)
    return kind(raw)


ENV_NAMES = tuple(f.name.upper() for f in fields(Settings))
