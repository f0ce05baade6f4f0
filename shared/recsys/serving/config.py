"""Service configuration: environment variables read once into a frozen dataclass.

Every field has a documented default; `Settings.from_env()` fails at start-up with a message
naming the variable when a value does not parse, and `require()` does the same for an
address a service cannot run without. docs/configuration.md's settings table mirrors `FIELDS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from recsys.limits import MAX_PREDICT_BATCH


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
    # Port of the gateway's HTTP/JSON API and its try-it page (docs/http.md), on BIND_HOST,
    # HTTPS when TLS_CERT_FILE is set; 0: off (docker-compose and deploy/ set 8080).
    http_port: int = 0
    # Interface the servers bind to; 0.0.0.0 in containers.
    bind_host: str = "127.0.0.1"
    # Where the gateway finds its upstreams, host:port.
    feature_addr: str = ""
    model_addr: str = ""
    # Redis for the feature service, e.g. redis://user:password@host:6379/0 (a secret: never
    # shown in reprs or logs).
    redis_url: str = field(default="", repr=False)
    # Prefix of every Redis key (several deployments can share one Redis).
    redis_key_prefix: str = "recsys"
    # REDIS_URL names a node of a Redis Cluster (1 / true / yes).
    redis_cluster: bool = False
    # Redis Sentinel: the sentinels, comma-separated host:port (set: Sentinel mode; REDIS_URL
    # then gives only the user, password and database, its host is not used), the name
    # they know the master by, and the sentinels' own password (a secret; empty: none).
    redis_sentinels: str = ""
    redis_sentinel_master: str = "mymaster"
    redis_sentinel_password: str = field(default="", repr=False)
    # After each write, WAIT for this many replicas to confirm it (-1: 1 with
    # REDIS_SENTINELS, else 0 = no wait), at most REDIS_WAIT_TIMEOUT_S seconds; a write not
    # confirmed in time is answered UNAVAILABLE (applied on the master, maybe lost in a
    # failover; a retry is safe). Not with REDIS_CLUSTER.
    redis_wait_replicas: int = -1
    redis_wait_timeout_s: float = 0.1
    # Model versions directory, and an optional pinned version (default: the newest).
    model_dir: str = "artifacts"
    model_version: str = ""
    # Seconds between looks for a newer version in MODEL_DIR (0: never; ignored when
    # MODEL_VERSION pins one). A newer version is loaded beside the old one, then swapped in.
    model_poll_s: float = 5.0
    # Dynamic batching of Predict: most calls per matrix product (1: no batching, the default:
    # measured no faster on 2 cores, see docs/decisions.md), how long a call waits for
    # company (µs, 0: only calls already waiting), most calls waiting (beyond it:
    # RESOURCE_EXHAUSTED).
    model_batch_size: int = 1
    model_batch_wait_us: int = 0
    model_queue_limit: int = 512
    # Coalescing in the gateway: most client requests per batch call to an upstream (1..256),
    # and most batch calls under way to each upstream at once; a batch leaves when fewer are
    # under way, with whatever requests are waiting (no timer).
    coalesce_max_batch: int = 64
    coalesce_max_in_flight: int = 1
    # Threads each service's BLAS (OpenBLAS under NumPy and SciPy) may use; 0: its default
    # (one per core). 1 by default: a service's products are small, and idle OpenBLAS
    # threads spin, which cost the model service 8× its CPU per call (docs/architecture.md).
    blas_threads: int = 1
    # Deadline of a gateway → upstream call when the caller set none, seconds.
    upstream_timeout_s: float = 2.0
    # Redis socket connect / read timeout of the feature service, seconds: well below the
    # callers' deadlines (the gateway's upstream calls get at most UPSTREAM_TIMEOUT_S), so
    # that a hung Redis is answered UNAVAILABLE, not DEADLINE_EXCEEDED. Offline jobs
    # (load-features) use their own, longer timeout.
    redis_timeout_s: float = 0.25
    # Largest gRPC message sent or received, bytes.
    max_message_bytes: int = 16 * 1024 * 1024
    # How long in-flight calls may finish after SIGTERM, seconds.
    grace_s: float = 5.0
    # DEBUG, INFO, WARNING, ERROR.
    log_level: str = "INFO"
    # Most RPCs a server handles at once; beyond it RESOURCE_EXHAUSTED. 0: no limit.
    max_concurrent_rpcs: int = 1000
    # HTTP/2 keepalive pings on idle connections (servers and the gateway's channels), seconds:
    # sent every KEEPALIVE_TIME_S, connection dropped if unanswered within KEEPALIVE_TIMEOUT_S.
    keepalive_time_s: float = 30.0
    keepalive_timeout_s: float = 10.0
    # TLS (see recsys.serving.tls): this service's PEM certificate chain and key (TLS on when
    # both are set; also presented as the client certificate on the gateway's upstream calls),
    # the PEM CA bundle that verifies peers (TLS_CA_FILE set: upstream calls use TLS), and
    # TLS_CLIENT_AUTH=1 to require client certificates signed by that CA (mutual TLS).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    tls_client_auth: bool = False
    # Bearer tokens (comma-separated, secrets) a server accepts on write RPCs, and on reads too
    # with AUTH_READS=1 (see recsys.serving.auth); empty: no authentication.
    auth_tokens: str = field(default="", repr=False)
    auth_reads: bool = False
    # The token the gateway sends to the feature and model services (a secret).
    upstream_token: str = field(default="", repr=False)
    # OpenTelemetry tracing (1 / true / yes), off by default; spans go over OTLP/gRPC to
    # OTEL_EXPORTER_OTLP_ENDPOINT (empty: the exporter's default, http://localhost:4317).
    otel_enabled: bool = False
    otel_exporter_otlp_endpoint: str = ""

    def __post_init__(self):
        for name in ("feature_port", "model_port", "gateway_port", "metrics_port", "http_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name.upper()}={getattr(self, name)} is not a port (0-65535)")
        for name in ("upstream_timeout_s", "redis_timeout_s", "redis_wait_timeout_s"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ConfigError(f"{name.upper()}={getattr(self, name)} must be > 0 and finite")
        if self.redis_sentinels:
            from recsys.redis_client import sentinel_addresses

            try:
                if not sentinel_addresses(self.redis_sentinels):
                    raise ValueError("no address")
            except ValueError as exc:
                raise ConfigError(f"REDIS_SENTINELS={self.redis_sentinels!r}: {exc}") from None
            if self.redis_cluster:
                raise ConfigError("REDIS_SENTINELS and REDIS_CLUSTER exclude each other")
            if not self.redis_sentinel_master:
                raise ConfigError("REDIS_SENTINEL_MASTER must name the master")
        if self.redis_wait_replicas < -1:
            raise ConfigError(f"REDIS_WAIT_REPLICAS={self.redis_wait_replicas} must be ≥ -1")
        if self.redis_cluster and self.redis_wait_replicas > 0:
            raise ConfigError("REDIS_WAIT_REPLICAS needs one Redis or Sentinel, not a Cluster")
        if self.wait_replicas and self.redis_wait_timeout_s >= self.redis_timeout_s:
            raise ConfigError(
                f"REDIS_WAIT_TIMEOUT_S={self.redis_wait_timeout_s} must be below "
                f"REDIS_TIMEOUT_S={self.redis_timeout_s} (WAIT blocks the connection)"
            )
        if not 0 <= self.grace_s < float("inf"):
            raise ConfigError(f"GRACE_S={self.grace_s} must be ≥ 0 and finite")
        if not 0 <= self.model_poll_s < float("inf"):
            raise ConfigError(f"MODEL_POLL_S={self.model_poll_s} must be ≥ 0 and finite")
        if not 1 <= self.model_batch_size <= 1024:
            raise ConfigError(f"MODEL_BATCH_SIZE={self.model_batch_size} must be in 1..1024")
        if not 0 <= self.model_batch_wait_us <= 1_000_000:
            raise ConfigError(
                f"MODEL_BATCH_WAIT_US={self.model_batch_wait_us} must be in 0..1000000"
            )
        if not 1 <= self.coalesce_max_batch <= MAX_PREDICT_BATCH:
            raise ConfigError(
                f"COALESCE_MAX_BATCH={self.coalesce_max_batch} must be in 1..{MAX_PREDICT_BATCH}"
            )
        if self.coalesce_max_in_flight < 1:
            raise ConfigError(f"COALESCE_MAX_IN_FLIGHT={self.coalesce_max_in_flight} must be ≥ 1")
        if self.blas_threads < 0:
            raise ConfigError(f"BLAS_THREADS={self.blas_threads} must be ≥ 0")
        if self.model_queue_limit < 1:
            raise ConfigError(f"MODEL_QUEUE_LIMIT={self.model_queue_limit} must be ≥ 1")
        if self.max_message_bytes <= 0:
            raise ConfigError(f"MAX_MESSAGE_BYTES={self.max_message_bytes} must be positive")
        if self.max_concurrent_rpcs < 0:
            raise ConfigError(f"MAX_CONCURRENT_RPCS={self.max_concurrent_rpcs} must be ≥ 0")
        for name in ("keepalive_time_s", "keepalive_timeout_s"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ConfigError(f"{name.upper()}={getattr(self, name)} must be > 0 and finite")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither")
        if self.tls_client_auth and not (self.tls_cert_file and self.tls_ca_file):
            raise ConfigError("TLS_CLIENT_AUTH needs TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE")

    @property
    def wait_replicas(self) -> int:
        """Replicas each write waits for: REDIS_WAIT_REPLICAS, its -1 resolved."""
        if self.redis_wait_replicas >= 0:
            return self.redis_wait_replicas
        return 1 if self.redis_sentinels else 0

    @property
    def tokens(self) -> tuple[str, ...]:
        """The accepted bearer tokens of AUTH_TOKENS (blank entries dropped)."""
        return tuple(t.strip() for t in self.auth_tokens.split(",") if t.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {}
        for setting in fields(cls):
            name = setting.name.upper()
            if name not in environ:
                continue
            raw = environ[name]
            kind = type(setting.default)
            try:
                values[setting.name] = _parse(kind, raw)
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
